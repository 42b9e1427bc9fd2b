//! Fuzz target `sync_message`: the checks are `tunlb::fuzzing::sync_message`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/sync_message/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::sync_message(data));

//! Fuzz target `gue_auth`: the checks are `tunlb::fuzzing::gue_auth`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/gue_auth/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::gue_auth(data));

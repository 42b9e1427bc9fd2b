//! Fuzz target `wire_views`: the checks are `tunlb::fuzzing::wire_views`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/wire_views/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::wire_views(data));

//! Fuzz target `gue_chance`: the checks are `tunlb::fuzzing::gue_chance`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/gue_chance/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::gue_chance(data));

//! Fuzz target `gue_gro`: the checks are `tunlb::fuzzing::gue_gro`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/gue_gro/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::gue_gro(data));

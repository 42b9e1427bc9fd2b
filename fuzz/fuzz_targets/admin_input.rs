//! Fuzz target `admin_input`: the checks are `tunlb::fuzzing::admin_input`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/admin_input/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::admin_input(data));

//! Fuzz target `control_request`: the checks are `tunlb::fuzzing::control_request`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/control_request/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::control_request(data));

//! Fuzz target `health_reply`: the checks are `tunlb::fuzzing::health_reply`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/health_reply/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::health_reply(data));

//! Fuzz target `metrics_request`: the checks are `tunlb::fuzzing::metrics_request`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/metrics_request/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::metrics_request(data));

//! Fuzz target `encap_strip`: the checks are `tunlb::fuzzing::encap_strip`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/encap_strip/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::encap_strip(data));

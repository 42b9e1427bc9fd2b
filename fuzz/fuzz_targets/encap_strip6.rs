//! Fuzz target `encap_strip6`: the checks are `tunlb::fuzzing::encap_strip6`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/encap_strip6/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::encap_strip6(data));

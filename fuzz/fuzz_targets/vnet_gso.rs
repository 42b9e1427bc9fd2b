//! Fuzz target `vnet_gso`: the checks are `tunlb::fuzzing::vnet_gso`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/vnet_gso/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::vnet_gso(data));

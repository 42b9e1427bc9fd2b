//! Fuzz target `vrrp_advert`: the checks are `tunlb::fuzzing::vrrp_advert`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/vrrp_advert/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::vrrp_advert(data));

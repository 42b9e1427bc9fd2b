//! Fuzz target `netlink`: the checks are `tunlb::fuzzing::netlink`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/netlink/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::netlink(data));

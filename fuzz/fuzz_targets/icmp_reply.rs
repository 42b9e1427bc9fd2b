//! Fuzz target `icmp_reply`: the checks are `tunlb::fuzzing::icmp_reply`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/icmp_reply/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::icmp_reply(data));

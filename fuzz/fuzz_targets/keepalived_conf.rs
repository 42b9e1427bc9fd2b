//! Fuzz target `keepalived_conf`: the checks are `tunlb::fuzzing::keepalived_conf`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/keepalived_conf/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::keepalived_conf(data));

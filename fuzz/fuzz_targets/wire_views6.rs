//! Fuzz target `wire_views6`: the checks are `tunlb::fuzzing::wire_views6`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/wire_views6/`, with the
//! etherparse oracle (`check_ipv4` hands IPv6 packets to `check_ipv6`) on every packet built.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunlb::fuzzing::wire_views6(data, tunlb_fuzz::oracle::check_ipv4)
});

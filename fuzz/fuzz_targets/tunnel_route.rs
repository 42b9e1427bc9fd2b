//! Fuzz target `tunnel_route`: the checks are `tunlb::fuzzing::tunnel_route`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/tunnel_route/`, with the etherparse oracle on every packet the
//! core emits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunlb::fuzzing::tunnel_route(data, tunlb_fuzz::oracle::check_ipv4)
});

//! Fuzz target `director_packet`: the checks are `tunlb::fuzzing::director_packet`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/director_packet/`, with the
//! etherparse oracle on every packet the core emits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunlb::fuzzing::director_packet(data, tunlb_fuzz::oracle::check_ipv4)
});

//! Fuzz target `snat`: the checks are `tunlb::fuzzing::snat`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/snat/`, with the etherparse oracle on every packet the
//! core emits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunlb::fuzzing::snat(data, tunlb_fuzz::oracle::check_ipv4)
});

//! Fuzz target `dr`: the checks are `tunlb::fuzzing::dr`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/dr/`, with the etherparse oracle on every packet the
//! core emits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunlb::fuzzing::dr(data, tunlb_fuzz::oracle::check_ipv4)
});

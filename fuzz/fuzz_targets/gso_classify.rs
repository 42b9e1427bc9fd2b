//! Fuzz target `gso_classify`: the checks are `tunlb::fuzzing::gso_classify`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/gso_classify/`, with the etherparse oracle on every packet the
//! core emits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tunlb::fuzzing::gso_classify(data, tunlb_fuzz::oracle::check_ipv4)
});

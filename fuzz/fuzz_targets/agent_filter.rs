//! Fuzz target `agent_filter`: the checks are `tunlb::fuzzing::agent_filter`, which `tests/fuzz_corpora.rs`
//! also runs on every file of `corpus/agent_filter/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::agent_filter(data));

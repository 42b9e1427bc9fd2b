//! Fuzz target `agent_merged`: the checks are `tunlb::fuzzing::agent_merged`, which
//! `tests/fuzz_corpora.rs` also runs on every file of `corpus/agent_merged/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tunlb::fuzzing::agent_merged(data));

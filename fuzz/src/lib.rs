//! What the fuzz binaries share beyond `tunlb::fuzzing`: the etherparse packet oracle, compiled
//! from the main crate's `src/fuzzing/oracle.rs` (etherparse is a dependency of this crate only,
//! never of tunlb's normal build).

#[path = "../../src/fuzzing/oracle.rs"]
pub mod oracle;

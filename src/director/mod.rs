//! The director: the sans-IO core that decides each packet, and the driver that moves bytes.

pub mod conn;
pub mod sched;
pub mod service;
mod verdict;

pub use verdict::{DropReason, Encap, Verdict};

//! Network-namespace integration tests.
//!
//! Run as root: `cargo test --test netns -- --test-threads=2`. [`harness`] has the RAII guards
//! and the lab topology (and a self-test that needs no director); [`tun_mode`] has the TUN-mode
//! scenarios, each run once per encapsulation (ipip, gre, gue); [`fragments`] sends datagrams
//! without DF that only fit the tunnel as outer fragments.

mod fragments;
mod harness;
mod tun_mode;

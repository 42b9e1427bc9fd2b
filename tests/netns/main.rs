//! Network-namespace integration tests.
//!
//! Run as root: `cargo test --test netns -- --test-threads=2`. [`harness`] has the RAII guards
//! and the lab topology (and a self-test that needs no director); [`tun_mode`] has the TUN-mode
//! scenarios, each run once per encapsulation (ipip, gre, gue); [`fragments`] sends datagrams
//! without DF that only fit the tunnel as outer fragments; [`director_lifecycle`] has the
//! daemons' life cycle: host settings restored on exit, `adm` without a director, `--announce`
//! on a LAN, `--config` with SIGHUP, and `adm -S`/`-R`; [`nat_mode`] has the NAT-mode (`-m`)
//! scenarios: both directions through the director, many concurrent flows, UDP and ICMP.

mod director_lifecycle;
mod fragments;
mod harness;
mod nat_mode;
mod tun_mode;

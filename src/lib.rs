//! tunlb: a userspace Linux Virtual Server.
//!
//! A director reads packets for virtual IPs (VIPs) from a TUN device, picks a real server with an
//! IPVS scheduler and forwards the packet: in TUN mode it wraps it in IPIP, GRE or GUE and a
//! real-server agent unwraps it on the other side, so the real server answers the client directly.
//!
//! # Layout
//!
//! A packet's path, in folder order:
//!
//! - [`wire`]: zero-copy views of IPv4, TCP, UDP and ICMP headers, and the Internet checksum.
//! - [`director`]: the sans-IO core. [`director::Director::handle_packet`] takes `(now, buf)` and
//!   returns a [`director::Verdict`]; services, schedulers ([`director::sched`]) and the
//!   connection table ([`director::conn`]) live here. [`director::driver`] moves bytes between
//!   the TUN device and the sockets, one worker thread per TUN queue.
//! - [`encap`]: build and strip the outer IPIP / GRE / GUE headers.
//! - [`realserver`]: the agent on a real server: hidden VIP on `lo`, tunnel receiver, allow-list,
//!   decapsulated packets into a TUN.
//! - [`control`]: `tunlb adm` (ipvsadm's command line), the per-namespace control socket, the
//!   TOML config.
//! - [`metrics`]: counters (drops by reason, ...).
//! - [`lab`]: stand-ins for the world around the balancer: `tunlb httpd` for real servers.
//! - [`sys`]: the only module with `unsafe`: TUN ioctls, raw sockets, batched syscalls.
//! - [`time`]: the [`time::Instant`] the core is driven with (no clock is read inside the core).
//!
//! Outside `src/`: `configs/` (example configs, each parsed by a test), `tests/netns/`
//! (network-namespace integration tests), `benches/` (criterion), `fuzz/` (cargo-fuzz targets).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod director;
pub mod encap;
pub mod lab;
pub mod metrics;
pub mod realserver;
#[allow(unsafe_code)]
pub mod sys;
pub mod time;
pub mod wire;

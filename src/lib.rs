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
//! - [`director`]: where a packet enters, is decided and leaves. [`director::io`] reads it
//!   from a TUN queue (one worker thread per queue, [`director::io::worker`]);
//!   [`director::Director::handle_packet`], the sans-IO core, takes `(now, buf)` and returns a
//!   [`director::Verdict`] using the services, schedulers ([`director::sched`]) and connection
//!   table ([`director::conn`]); the worker then sends it out ([`director::io::tx`]): a raw
//!   socket for tunnels, an AF_PACKET socket for DR frames ([`director::dr`] decides,
//!   [`director::io::resolver`] keeps real servers' MACs fresh), and the TUN itself for NAT
//!   ([`director::nat`] rewrites both ways; policy routing brings the real servers' replies
//!   into the TUN).
//! - [`daemon`]: the application layer, the only one importing `control`, `health` and
//!   `metrics`: `tunlb director`'s [`daemon::run()`], and the [`daemon::ControlPlane`] that
//!   applies `adm` requests and config reloads to the table the workers read.
//! - [`encap`]: build and strip the outer IPIP / GRE / GUE headers.
//! - [`realserver`]: the agent on a real server: hidden VIP on `lo`, tunnel receiver, allow-list,
//!   decapsulated packets into a TUN.
//! - [`control`]: `tunlb adm` (ipvsadm's command line), the per-namespace control socket, the
//!   TOML config.
//! - [`health`]: keepalived-compatible health checks (HTTP_GET, SSL_GET over rustls,
//!   TCP_CHECK, MISC_CHECK, UDP_CHECK, PING_CHECK):
//!   sans-IO checkers per real server, the probes that feed them, and the monitor that applies
//!   up/down/weight through a [`health::HealthPlane`] (the daemon's control plane).
//! - [`metrics`]: the Prometheus `/metrics` endpoint (`--metrics-listen`), node_exporter IPVS
//!   names plus `tunlb_*`, read from the workers' counters at scrape time.
//! - [`logging`]: the `log` facade's backend: one line per record on stderr, with journald
//!   priority prefixes when stderr is the journal; level from `-v`/`-q` or `RUST_LOG`.
//! - `lab` (cargo feature `lab`, on by default; `--no-default-features` leaves it out):
//!   `tunlb lab` (the classic four-node LVS lab in namespaces: up/down/demo), and the stand-ins
//!   it uses: `tunlb httpd` for real servers, `tunlb lab get` for clients, `tunlb udpblast`.
//! - [`sys`]: the only module with `unsafe`: TUN ioctls, raw and AF_PACKET sockets, netlink
//!   (routes, neighbours), batched syscalls.
//! - [`time`]: the [`time::Instant`] the core is driven with (no clock is read inside the core).
//!
//! Outside `src/`: `configs/` (example configs, each parsed by a test), `tests/netns/`
//! (network-namespace integration tests), `benches/` (criterion), `fuzz/` (cargo-fuzz targets,
//! whose bodies are the hidden `fuzzing` module; `tests/fuzz_corpora.rs` replays their corpora).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod control;
pub mod daemon;
pub mod director;
pub mod encap;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod health;
#[cfg(feature = "lab")]
pub mod lab;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod realserver;
#[cfg(test)]
mod sim;
#[allow(unsafe_code)]
pub mod sys;
pub mod time;
pub mod wire;

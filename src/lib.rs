//! tunlb: a userspace Linux Virtual Server.
//!
//! A director reads packets for virtual IPs (VIPs) from a TUN device, picks a real server with an
//! IPVS scheduler and forwards the packet: in TUN mode it wraps it in IPIP, GRE or GUE and a
//! real-server agent unwraps it on the other side, so the real server answers the client directly.
//!
//! # Layout
//!
//! Floors, each importing only the ones below it (`tests/layers.rs` checks the director's;
//! `docs/architecture.md` draws them):
//!
//! - [`wire`]: zero-copy views of IPv4, TCP, UDP, ICMP and Ethernet headers, the Internet
//!   checksum, virtio GSO headers and segmentation.
//! - [`hash`]: the one flow hash and the keyed multiply-fold hasher of the tables.
//! - [`encap`]: the typed [`encap::Tunnel`] (IPIP, GRE, GUE): build and strip outer headers.
//! - [`model`]: services, real servers, every validation rule once, and the [`model::Edit`]
//!   that `adm`, the TOML config and keepalived.conf all translate into.
//! - [`director`]: where a packet enters, is decided and leaves:
//!   - [`director::packet`] parses it once ([`director::packet::Parsed`]) and holds the
//!     [`director::Verdict`] and the worker's [`director::Counters`];
//!   - [`director::core`]: [`director::Director::handle_packet`], the sans-IO core (`(now,
//!     buf)` in, a verdict out), dispatches to [`director::modes`] (tunnel, dr, nat, snat,
//!     route, probe_pin), which never import it back; [`director::shared`], [`director::table`],
//!     [`director::sched`] and [`director::conn`] are the state it reads;
//!   - [`director::io`]: the worker loop, the TUN reader ([`director::io::rx`]) and one module
//!     per send path ([`director::io::tx`]), the neighbour resolver, the tunnel-route gateways.
//! - [`daemon`]: the application layer, the only one importing `control`, `health` and
//!   `metrics`: `tunlb director`'s [`daemon::run()`] and the [`daemon::ControlPlane`] that
//!   applies requests, reloads and health results to the table the workers read.
//! - [`control`]: `tunlb adm` (ipvsadm's grammar and client), the per-namespace control
//!   socket, the TOML config and keepalived.conf (syntax into the model).
//! - [`health`]: keepalived-compatible checks (HTTP_GET, SSL_GET over rustls, TCP_CHECK,
//!   MISC_CHECK, UDP_CHECK, PING_CHECK): sans-IO checkers, their probes, and the monitor that
//!   applies results through a [`health::HealthPlane`] (the daemon implements it).
//! - [`metrics`]: the Prometheus `/metrics` endpoint (`--metrics-listen`), read from the
//!   workers' counters at scrape time.
//! - [`realserver`]: the agent on a real server: hidden VIP on `lo`, tunnel receiver,
//!   allow-list, decapsulated packets into a TUN; `--gateway` for tunnel routes.
//! - [`logging`]: the `log` facade's backend: one line per record on stderr, journald priority
//!   prefixes when stderr is the journal; level from `-v`/`-q` or `RUST_LOG`.
//! - `lab` (default cargo feature `lab`; `--no-default-features` leaves it out): `tunlb lab`,
//!   `tunlb httpd`, `tunlb lab get`, `tunlb udpblast`.
//! - [`vrrp`]: VRRP v2/v3 (keepalived-compatible): the config model, the advert and the sans-IO
//!   state machine of one instance (the thread with the sockets is `daemon::vrrp`).
//! - [`sync`]: connection sync between directors: the message format and the sans-IO session
//!   (the thread with the socket is `daemon::sync`).
//! - [`sys`]: the only module with `unsafe`: TUN ioctls, raw and AF_PACKET sockets, netlink,
//!   batched syscalls.
//! - [`time`]: the [`time::Instant`] the core is driven with (no clock is read inside the core).
//! - `sim` (tests, and the `sim` feature for `examples/ecmp_scale.rs` and
//!   `examples/maglev_paper.rs`): director cores, agents and a virtual network on a virtual
//!   clock; `sim::scale`, ECMP groups at internet scale; `sim::maglev_paper`, the Maglev paper's
//!   consistent-hashing evaluation with the real `mh` table.
//!
//! Outside `src/`: `configs/` (example configs, each parsed by a test), `tests/netns/`
//! (network-namespace integration tests), `tests/layers.rs` (the import rules), `benches/`
//! (criterion), `fuzz/` (cargo-fuzz targets, whose bodies are the hidden `fuzzing` module;
//! `tests/fuzz_corpora.rs` replays their corpora), `docs/`.

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
#[cfg(any(test, feature = "sim"))]
#[doc(hidden)]
pub mod sim;
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
pub mod time;
pub mod vrrp;
pub mod wire;

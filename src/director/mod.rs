//! The director: the sans-IO core that decides each packet, and the io that moves bytes.
//!
//! # Where a packet is parsed, decided and sent
//!
//! The floors, each importing only the ones below it:
//!
//! - [`packet`]: what a decision knows and produces: [`packet::parse`] reads a packet's headers
//!   once through the wire views (IPv4, the TCP/UDP ports and flags, an ICMP message and the
//!   packet it quotes) into one [`packet::Parsed`]; the [`Verdict`] and the per-worker
//!   [`Counters`] the worker owns.
//! - [`shared`]: the state all workers share ([`Shared`]: the published [`Snapshot`], the
//!   persistence templates, the NAT flow table, the probe pins, the fragment tracker) and the
//!   helpers that keep a real server's connection counts in step with its flows.
//! - [`modes`]: one module per forwarding mode, each handed a small context
//!   ([`modes::context::Ctx`]) and the parsed packet: [`tunnel`](modes::tunnel) (TUN mode:
//!   IPIP/GRE/GUE), [`dr`] (an Ethernet frame to the real server's MAC), [`nat`] (in-place
//!   rewrites both ways, the policy routing of the replies), [`snat`] (the S-NAT gateway),
//!   [`route`] (tunnel routes) and [`probe_pin`] (health probes pinned to the server they
//!   check). A mode never imports the core.
//! - [`core`]: [`Director::handle_packet`] — one packet in, one [`Verdict`] out; no IO, no
//!   clock. It parses, decides which mode a packet belongs to (probe pin, tunnel route, S-NAT,
//!   NAT reply, later fragment, ICMP, then the connection table or the scheduler for a new
//!   flow) and dispatches to it.
//!
//! Connection sync and takeover ([`core`]'s `sync.rs`): while [`Shared::set_sync_emit`] is on,
//! workers queue a [`SyncRecord`] per new flow, state change and persistence template
//! ([`Director::take_sync`]); [`Director::dump_sync`] walks the tables for a bulk resync;
//! [`Director::install_synced`] installs a peer's records, finding real servers by address,
//! into [`Shared::synced`] where the first worker that sees a flow's packet takes it. With
//! [`DirectorConfig::sloppy_tcp`] a mid-flow TCP packet starts a flow (IPVS `sloppy_tcp`), which
//! with mh keeps flows on their servers across a takeover without sync.
//!
//! Beside them, the state the core reads: [`table`] (the immutable [`Snapshot`] of services
//! the workers read, and the [`Registry`] the control plane builds it with), [`sched`] (the
//! IPVS schedulers), [`conn`] (the connection table, states, templates) and [`stats`]
//! (per-real-server totals and rates, the counter types of the IO).
//!
//! Where packets enter and leave, and the control plane:
//!
//! - [`io`]: where packets enter and leave: the worker loop and the TUN reader
//!   ([`io::worker`], [`io::rx`]), one module per send path ([`io::tx`]: raw socket, AF_PACKET
//!   frames for DR and TUN, GUE trains), the neighbour resolver, TUN mode's frame links
//!   ([`io::tunnel_link`]) and the tunnel-route gateways ([`io::gateway`]).

pub mod conn;
pub mod core;
pub mod io;
pub mod modes;
pub mod packet;
pub mod sched;
pub mod shared;
pub mod stats;
pub mod table;

#[cfg(test)]
mod nat6_tests;
#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod snat6_tests;
#[cfg(test)]
mod snat_tests;
#[cfg(test)]
mod testkit;

pub use self::core::{Director, InstallStats};
pub use conn::{SyncRecord, SyncRecord6};
pub use modes::{dr, nat, nat6, probe_pin, route, snat, snat6};
pub use packet::counters::Counters;
pub use packet::verdict::{DropReason, Encap, Ether, Verdict, MAX_FRAGMENTS};
pub use shared::{DirectorConfig, Limits, Shared};
pub use stats::DestCounters;
pub use table::{Registry, Snapshot};

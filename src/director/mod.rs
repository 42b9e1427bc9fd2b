//! The director: the sans-IO core that decides each packet, and the io that moves bytes.
//!
//! - [`core`]: [`Director::handle_packet`] — one packet in, one [`Verdict`] out; no IO, no clock.
//! - [`table`]: the immutable [`Snapshot`] of services the workers read, and the [`Registry`]
//!   the control plane builds it with.
//! - [`sched`]: the IPVS schedulers. [`conn`]: the connection table, states, templates.
//! - [`service`]: the configuration types (what `adm` and the TOML config describe).
//! - [`dr`]: DR mode's decision (a frame to the real server's MAC); its IO is in [`io`] (the
//!   AF_PACKET send queue, the neighbour resolver, the on-link check when a server is added).
//! - [`nat`]: NAT mode (`-m`): in-place rewrites both ways, the shared NAT flow table and the
//!   policy routing that brings the real servers' replies back into the TUN.
//! - [`route`]: tunnel routes, whole prefixes tunnelled to a remote gateway untracked;
//!   [`io::gateway`]: the receiver of their return traffic.
//! - [`snat`]: the S-NAT gateway (`[[snat]]`): the real servers' own outbound connections
//!   masqueraded behind public addresses, mappings in a second NAT table.
//! - [`probe_pin`]: health probes through the data path (`check_through_tunnel`), pinned to
//!   the real server they check.
//! - [`io`]: where packets enter and leave: the worker loop, the TUN reader, one module per send
//!   path (raw socket, AF_PACKET frames, GUE trains), the neighbour resolver, the tunnel-route
//!   gateways.

pub mod conn;
pub mod core;
pub mod dr;
pub mod io;
pub mod nat;
pub mod probe_pin;
pub mod route;
pub mod sched;
pub mod service;
pub mod snat;
pub mod stats;
pub mod table;
mod verdict;

#[cfg(test)]
mod nat_tests;
#[cfg(test)]
mod snat_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use self::core::{Counters, DestCounters, Director, DirectorConfig, Shared};
pub use table::{Registry, Snapshot};
pub use verdict::{DropReason, Encap, Ether, Verdict, MAX_FRAGMENTS};

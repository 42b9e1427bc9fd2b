//! The forwarding modes, one module each, that the core dispatches a packet to once it knows
//! where the packet goes. Each gets a [`Ctx`](context::Ctx) (settings, counters, table, shared
//! state, time) and the packet with its [`Parsed`](crate::director::packet::Parsed) headers,
//! and returns a [`Verdict`](crate::director::Verdict). A mode never calls back into the core:
//! where a mode needs the core's forwarding (a NAT flow found by the client's tuple), it
//! returns what it found and the core forwards.
//!
//! - [`tunnel`]: TUN mode, IPIP/GRE/GUE encapsulation with its MTU handling (also for tunnel
//!   routes and pinned probes).
//! - [`dr`]: DR mode, an Ethernet frame to the real server's MAC.
//! - [`nat`]: NAT mode, in-place rewrites both ways, and the policy routing of the replies.
//! - [`nat6`]: NAT66, the same for an IPv6 VIP and IPv6 real servers (IPv4's flow code).
//! - [`snat`]: the S-NAT gateway, the inside hosts' own connections masqueraded.
//! - [`snat6`]: the same for IPv6 hosts (IPv4's mapping code, IPv6 rewrites).
//! - [`route`]: tunnel routes, whole prefixes tunnelled to a remote gateway untracked.
//! - [`probe_pin`]: health probes through the data path, pinned to the server they check.
//! - [`icmp_limit`]: the ICMP errors the modes send, rate-limited per worker.

pub mod context;
pub mod dr;
pub mod icmp_limit;
pub mod nat;
pub mod nat6;
pub mod probe_pin;
pub mod route;
pub mod snat;
pub mod snat6;
pub mod tunnel;

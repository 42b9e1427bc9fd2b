//! Where packets enter and leave the director: everything around the sans-IO core that moves
//! bytes. Nothing here decides a packet; the core does ([`Director::handle_packet`]).
//!
//! - [`rx`]: where a packet enters: a worker's TUN queue, and the virtio header of an
//!   offloading TUN (a GSO super-packet decided once, segmented first, or dropped).
//! - [`worker`]: the worker loop, one thread per TUN queue: read a batch, decide it under the
//!   core's lock, hand each [`Verdict`] to a send path, write replies back into the TUN.
//! - [`tx`]: where a packet leaves, one module per send path: [`tx::raw`] (the raw socket),
//!   [`tx::frames`] (the `AF_PACKET` socket: DR frames and TUN-mode frames) and
//!   [`tx::gue_train`] (GUE super-packets as UDP GSO trains).
//! - [`tunnel_link`]: which TUN-mode real servers the workers reach with Ethernet frames
//!   (`--tunnel-tx frames`), and the outer-header completion those frames need.
//! - [`resolver`]: the neighbour resolver thread (DR real servers' MACs, TUN-mode next hops)
//!   and the on-link check of new DR real servers.
//! - [`gateway`]: where tunnel routes' return traffic enters: a tunnel receiver per route
//!   encapsulation that writes the decapsulated packets into the TUN.
//!
//! The application layer (`crate::daemon`) starts all of these; nothing here imports it.
//!
//! [`Director::handle_packet`]: crate::director::Director::handle_packet
//! [`Verdict`]: crate::director::Verdict

pub mod gateway;
pub mod resolver;
pub mod rx;
pub mod tunnel_link;
pub mod tx;
pub mod worker;

#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod testkit;

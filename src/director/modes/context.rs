//! What the core hands a mode with each packet: the settings, this worker's counters, the
//! table it decides with, the shared state and the time. The packet itself travels beside it
//! (`buf` and its [`Parsed`](crate::director::packet::Parsed) headers).

use super::icmp_limit::IcmpLimiter;
use crate::director::packet::counters::Counters;
use crate::director::shared::{DirectorConfig, Shared};
use crate::director::table::Snapshot;
use crate::time::Instant;

/// The context of one decision (see the module documentation).
pub struct Ctx<'a> {
    /// The data path's settings (tunnel MTU, outer source address).
    pub config: &'a DirectorConfig,
    /// This worker's counters.
    pub counters: &'a mut Counters,
    /// The service table this packet is decided with.
    pub snap: &'a Snapshot,
    /// The state all workers share (NAT tables, templates, fragments, probe pins).
    pub shared: &'a Shared,
    /// The time of the packet.
    pub now: Instant,
    /// This worker's ICMP error budget.
    pub icmp: &'a mut IcmpLimiter,
}

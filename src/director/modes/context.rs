//! What the core hands a mode with each packet: the settings, this worker's counters, the
//! table it decides with, the shared state and the time. The packet itself travels beside it
//! (`buf` and its [`Parsed`](crate::director::packet::Parsed) headers).

use super::icmp_limit::IcmpLimiter;
use crate::director::packet::counters::Counters;
use crate::director::packet::verdict::{DropReason, Verdict};
use crate::director::shared::{DirectorConfig, Shared};
use crate::director::table::Snapshot;
use crate::encap::auth::LaneCounter;
use crate::time::Instant;
use crate::wire::{icmp, icmpv6};

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
    /// This worker's sequence numbers for authenticated GUE packets.
    pub auth_seq: &'a mut LaneCounter,
    /// The packet's second choice (second chance), set by the core for a flow that has one:
    /// a GUE tunnel carries it ([`crate::encap::chance`]).
    pub second_choice: Option<std::net::Ipv4Addr>,
}

impl Ctx<'_> {
    /// Answers the packet of `len` bytes in `buf` (DF set, bigger than `mtu` once forwarded) with
    /// an ICMP fragmentation-needed in place, if the worker's bucket allows; counts the `too_big`
    /// drop either way (once).
    pub fn frag_needed(&mut self, buf: &mut [u8], len: usize, mtu: u16) -> Verdict {
        if !self.icmp.allow(self.now) {
            self.counters.icmp_rate_limited += 1;
            // Counted as a too_big drop by the core, as the verdict says.
            return Verdict::Drop(DropReason::TooBig);
        }
        self.counters.drops[DropReason::TooBig as usize] += 1;
        match icmp::frag_needed_in_place(buf, len, mtu) {
            Some(len) => Verdict::Reply { len },
            None => Verdict::Drop(DropReason::TooBig),
        }
    }

    /// IPv6's [`frag_needed`](Self::frag_needed): answers the IPv6 packet of `len` bytes in
    /// `buf` (bigger than `mtu` once forwarded) with an ICMPv6 Packet Too Big advertising
    /// `mtu`, from `from` (the VIP), in place, if the worker's bucket allows; counts the
    /// `too_big` drop either way (once).
    pub fn packet_too_big(
        &mut self,
        buf: &mut [u8],
        len: usize,
        mtu: u16,
        from: std::net::Ipv6Addr,
    ) -> Verdict {
        if !self.icmp.allow(self.now) {
            self.counters.icmp_rate_limited += 1;
            return Verdict::Drop(DropReason::TooBig);
        }
        self.counters.drops[DropReason::TooBig as usize] += 1;
        match icmpv6::packet_too_big_in_place(buf, len, u32::from(mtu), from) {
            Some(len) => Verdict::Reply { len },
            None => Verdict::Drop(DropReason::TooBig),
        }
    }
}

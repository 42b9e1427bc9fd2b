//! The per-worker counters: plain integers the worker owns and increments without atomics; the
//! control plane and the metrics endpoint read (copies of) them between batches.

use super::verdict::DropReason;
use crate::director::conn::{DestId, Eviction};
use crate::director::stats::{BatchHistogram, DestCounters, EncapErrors, SendSocket};

/// Dropped packets by reason (`DropReason as usize`): an array that has a `Default` at any
/// length (the standard one stops at 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::COUNT]);

impl Default for DropCounts {
    fn default() -> Self {
        DropCounts([0; DropReason::COUNT])
    }
}

impl std::ops::Deref for DropCounts {
    type Target = [u64; DropReason::COUNT];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for DropCounts {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Per-worker counters, read by the control plane between batches.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Packets handed to the core.
    pub rx_packets: u64,
    /// Bytes handed to the core.
    pub rx_bytes: u64,
    /// Packets forwarded to a real server (encapsulated, or in a DR frame).
    pub tx_packets: u64,
    /// Bytes (inner packets) forwarded to a real server.
    pub tx_bytes: u64,
    /// Packets rewritten in place and written back into the TUN (NAT, both directions).
    pub rewritten: u64,
    /// ICMP errors generated (fragmentation needed).
    pub icmp_sent: u64,
    /// ICMP errors not sent because the worker's rate limit was reached (the packets are
    /// dropped as `too_big` all the same).
    pub icmp_rate_limited: u64,
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired or removed.
    pub conns_expired: u64,
    /// Flows evicted to make room for a new one above the table's high-water mark, by
    /// [`Eviction`] (index `reason as usize`; also counted in `conns_expired`).
    pub conns_evicted: [u64; Eviction::ALL.len()],
    /// S-NAT mappings evicted to make room for a new one above the S-NAT table's high-water
    /// mark, by [`Eviction`] (index `reason as usize`; also counted in `conns_expired`).
    pub snat_evicted: [u64; Eviction::ALL.len()],
    /// SYNs whose MSS option was clamped.
    pub mss_clamped: u64,
    /// Packets without DF too big for the tunnel MTU once encapsulated, sent as outer fragments
    /// (also counted in `tx_packets`).
    pub fragmented: u64,
    /// TUN offload: GSO super-packets decided whole (their segments count in `rx_packets`).
    pub gso_whole: u64,
    /// TUN offload: GSO super-packets the driver segmented before deciding each segment.
    pub gso_split: u64,
    /// Flows created by `sloppy_tcp` from a packet other than a SYN (also in
    /// `conns_created`).
    pub sloppy_created: u64,
    /// Of those, flows given a second choice (second chance: the service's previous `mh`
    /// table had another server for them, within `second_chance_window`).
    pub second_chance_marked: u64,
    /// Flows a peer director synced that this worker took over at their first packet
    /// ([`crate::director::shared::synced`]).
    pub sync_adopted: u64,
    /// Connection-sync records not queued because the worker's queue was full (the sync
    /// daemon did not drain it in time; the periodic refresh carries those flows later).
    pub sync_dropped: u64,
    /// Dropped packets, indexed by `DropReason as usize`.
    pub drops: DropCounts,
    /// Non-empty TUN reads by how many packets they returned.
    pub read_batches: BatchHistogram,
    /// Batches with packets written back into the TUN (NAT rewrites, ICMP errors) by how many
    /// packets they wrote, one `write` each.
    pub tun_writes: BatchHistogram,
    /// Batched sends by socket ([`SendSocket`] as index) and how many datagrams or frames
    /// (GUE trains: records) each carried.
    pub send_batches: [BatchHistogram; SendSocket::ALL.len()],
    /// Packets for real servers that did not leave, by forwarding type and reason (each is
    /// also counted in `drops`).
    pub encap_errors: EncapErrors,
    /// Traffic per real server, indexed by [`DestId::slot`] (grown when a new slot shows up,
    /// never per packet). An entry whose `id` differs from the server's current handle belongs
    /// to a deleted server.
    pub per_dest: Vec<DestCounters>,
}

impl Counters {
    /// The counters of real server `id`, reset if its slot last belonged to another server.
    #[inline]
    pub(crate) fn dest(&mut self, id: DestId) -> &mut DestCounters {
        let slot = usize::from(id.slot());
        if slot >= self.per_dest.len() {
            self.per_dest.resize(slot + 1, DestCounters::default());
        }
        let c = &mut self.per_dest[slot];
        if c.id != id {
            *c = DestCounters {
                id,
                ..DestCounters::default()
            };
        }
        c
    }

    /// Adds `other`'s totals into `self` (to total the workers' counters; `per_dest` is not
    /// merged: the control plane sums it by server).
    pub fn add(&mut self, other: &Counters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.rewritten += other.rewritten;
        self.icmp_sent += other.icmp_sent;
        self.icmp_rate_limited += other.icmp_rate_limited;
        self.conns_created += other.conns_created;
        self.conns_expired += other.conns_expired;
        for (e, o) in self
            .conns_evicted
            .iter_mut()
            .zip(other.conns_evicted.iter())
        {
            *e += o;
        }
        for (e, o) in self.snat_evicted.iter_mut().zip(other.snat_evicted.iter()) {
            *e += o;
        }
        self.mss_clamped += other.mss_clamped;
        self.fragmented += other.fragmented;
        self.gso_whole += other.gso_whole;
        self.gso_split += other.gso_split;
        self.sloppy_created += other.sloppy_created;
        self.second_chance_marked += other.second_chance_marked;
        self.sync_adopted += other.sync_adopted;
        self.sync_dropped += other.sync_dropped;
        for (d, o) in self.drops.iter_mut().zip(other.drops.iter()) {
            *d += o;
        }
        self.read_batches.add(&other.read_batches);
        self.tun_writes.add(&other.tun_writes);
        for (s, o) in self.send_batches.iter_mut().zip(other.send_batches.iter()) {
            s.add(o);
        }
        self.encap_errors.add(&other.encap_errors);
    }

    /// Counts one TUN read that returned `n` packets (nothing for an empty read).
    #[inline]
    pub fn count_read_batch(&mut self, n: usize) {
        self.read_batches.record(n);
    }

    /// Flows evicted for one reason.
    pub fn evicted(&self, why: Eviction) -> u64 {
        self.conns_evicted[why as usize]
    }

    /// Drops of one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

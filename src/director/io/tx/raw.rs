//! The raw socket (`IP_HDRINCL`): TUN-mode packets (IPIP, GRE, GUE) to real servers not
//! reached by frames, and every one with `--tunnel-tx raw`. The kernel routes each datagram.
//!
//! [`RawQueue`] collects a batch's datagrams: whole encapsulated packets, the outer IPv4
//! fragments of those the core marked for fragmentation (headers built into an array sized
//! for a whole batch of maximally fragmented packets), and the segments of GSO super-packets
//! (outer header, then the segment's own IPv4 + TCP headers, the payload left in the read
//! buffer); [`RawQueue::flush`] sends them all with one `sendmmsg`. Nothing is allocated per
//! packet.

use std::net::Ipv4Addr;
use std::ops::Range;

use super::{encap_segments, lost_packets, SendFailures, MAX_QUEUED_SEGMENTS};
use crate::director::stats::{BatchHistogram, EncapKind};
use crate::director::{Encap, MAX_FRAGMENTS};
use crate::encap::{self, IdentSeq, MAX_OUTER_HEADER};
use crate::sys::raw::RawSender;
use crate::sys::PacketBatch;
use crate::wire::gso::{Segmenter, MAX_SEGMENT_HEADER};

/// A worker's datagrams of one batch for the raw socket, and the socket.
pub struct RawQueue {
    sender: RawSender,
    pending: Vec<Pending>,
    segs: Vec<SegPending>,
}

impl RawQueue {
    /// Opens the raw socket; room for `batch_size` packets of up to [`MAX_FRAGMENTS`]
    /// fragments each and `segments` GSO segments (at most [`MAX_QUEUED_SEGMENTS`]), so
    /// queueing never allocates.
    pub fn new(batch_size: usize, segments: usize) -> std::io::Result<RawQueue> {
        Ok(RawQueue {
            sender: RawSender::new(batch_size.max(MAX_QUEUED_SEGMENTS))?,
            pending: Vec::with_capacity(batch_size * MAX_FRAGMENTS),
            segs: Vec::with_capacity(segments),
        })
    }

    /// Forgets the previous batch's datagrams.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.segs.clear();
    }

    /// Whether no datagram is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.segs.is_empty()
    }

    /// How many more GSO segments [`queue_gso`](Self::queue_gso) takes without allocating.
    pub fn segment_room(&self) -> usize {
        self.segs.capacity() - self.segs.len()
    }

    /// Queues the encapsulated packet `pkt` (batch slot `slot`) whole or in fragments, as the
    /// core decided (`queue_encap`). Returns false, queueing nothing, if that is impossible.
    pub fn queue(&mut self, idents: &mut IdentSeq, slot: usize, pkt: &[u8], e: &Encap) -> bool {
        queue_encap(&mut self.pending, idents, slot, pkt, e)
    }

    /// Queues every segment of the super-packet `pkt` (batch slot `slot`) that the core decided
    /// to encapsulate as `e` (`queue_gso_encap`). Returns false, queueing nothing, if that is
    /// impossible.
    pub fn queue_gso(&mut self, slot: usize, pkt: &[u8], e: &Encap, seg: &Segmenter) -> bool {
        queue_gso_encap(&mut self.segs, slot, pkt, e, seg)
    }

    /// Sends the queued datagrams (whole packets and fragments, then segments) with one
    /// `sendmmsg`, counted in `sizes`, and empties the queue; returns the packets the kernel
    /// refused (in whole or in one of their fragments), by the `type` they count under.
    pub fn flush(&mut self, batch: &PacketBatch, sizes: &mut BatchHistogram) -> SendFailures {
        let mut failed = SendFailures::default();
        // queue_encap and queue_gso_encap checked every range, so no item is skipped and
        // the failure positions are positions in `pending` followed by `segs`.
        let items = self.pending.iter().filter_map(|p| {
            let pkt = batch.get(p.slot)?.get(p.inner.clone())?;
            Some((p.dst, &p.header[..p.header_len as usize], pkt))
        });
        let segs = self.segs.iter().filter_map(|p| {
            let payload = batch.get(p.slot)?.get(p.payload.clone())?;
            Some((p.dst, &p.header[..p.header_len as usize], payload))
        });
        let report = self.sender.send_batch(items.chain(segs));
        sizes.record(report.sent + report.failed);
        if report.failed > 0 {
            let failures = self.sender.failures();
            let whole = failures.partition_point(|f| f.index < self.pending.len());
            for p in lost_packets(&self.pending, &failures[..whole], |p| p.slot) {
                failed.add(p.kind, 1);
            }
            for f in &failures[whole..] {
                let seg = f.index.checked_sub(self.pending.len());
                if let Some(s) = seg.and_then(|i| self.segs.get(i)) {
                    failed.add(s.kind, 1);
                }
            }
        }
        self.clear();
        failed
    }
}

/// An outgoing datagram (a whole encapsulated packet or one fragment of it) waiting for the
/// batch send: `header` then bytes `inner` of the packet in batch slot `slot`.
#[derive(Clone)]
struct Pending {
    slot: usize,
    dst: Ipv4Addr,
    /// The tunnel's kind, what a failed send counts under.
    kind: EncapKind,
    header: [u8; MAX_OUTER_HEADER],
    header_len: u8,
    inner: Range<usize>,
}

/// Queues the datagrams of one encapsulated packet (`pkt`, in batch slot `slot`): the packet
/// whole, or its fragments with the next identification of `idents`. Returns false, queueing
/// nothing, if it cannot be fragmented (the core checked that it can, so this does not happen).
///
/// Every queued `inner` range lies within `pkt`, so the send loop finds all of them.
fn queue_encap(
    pending: &mut Vec<Pending>,
    idents: &mut IdentSeq,
    slot: usize,
    pkt: &[u8],
    e: &Encap,
) -> bool {
    if e.len > pkt.len() {
        return false;
    }
    if e.frag_mtu == 0 {
        pending.push(Pending {
            slot,
            dst: e.dst,
            kind: e.tunnel.into(),
            header: e.header,
            header_len: e.header_len,
            inner: 0..e.len,
        });
        return true;
    }
    match encap::fragment(e.header(), e.len, e.frag_mtu, idents.next_ident()) {
        // `pending` has room for MAX_FRAGMENTS per packet of the batch: no reallocation.
        Ok(frags) if frags.len() <= MAX_FRAGMENTS => {
            pending.extend(frags.map(|f| Pending {
                slot,
                dst: e.dst,
                kind: e.tunnel.into(),
                header: f.header,
                header_len: f.header_len as u8,
                inner: f.inner,
            }));
            true
        }
        _ => false,
    }
}

/// One segment of a GSO super-packet waiting for the batch send: outer headers and the
/// segment's own IPv4 + TCP headers in `header`, then bytes `payload` of the super-packet in
/// batch slot `slot`.
#[derive(Clone)]
struct SegPending {
    slot: usize,
    dst: Ipv4Addr,
    /// The tunnel's kind, what a failed send counts under.
    kind: EncapKind,
    header: [u8; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
    header_len: u8,
    payload: Range<usize>,
}

/// Queues every segment of the super-packet `pkt` (batch slot `slot`) that the core decided
/// to encapsulate as `e`: the outer header is copied in front of each segment's headers and
/// fixed for its length ([`gso::fix_outer`]). Returns false, queueing nothing, if `segs` has no
/// room for them all, the core asked for fragments, or `seg` does not describe `pkt`.
fn queue_gso_encap(
    segs: &mut Vec<SegPending>,
    slot: usize,
    pkt: &[u8],
    e: &Encap,
    seg: &Segmenter,
) -> bool {
    if segs.capacity() - segs.len() < seg.count() || e.frag_mtu != 0 {
        return false;
    }
    let start = segs.len();
    let ok = encap_segments(pkt, e, seg, |header, payload| {
        let mut sp = SegPending {
            slot,
            dst: e.dst,
            kind: e.tunnel.into(),
            header: [0; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
            header_len: header.len() as u8,
            payload,
        };
        sp.header[..header.len()].copy_from_slice(header);
        segs.push(sp);
        true
    });
    if !ok {
        segs.truncate(start);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::io::rx::{classify, Offloaded};
    use crate::director::io::testkit::{gue_encap, super_packet, tcp_checksum_ok};
    use crate::wire::{checksum, Ipv4Packet};

    #[test]
    fn gso_encap_queues_one_valid_datagram_per_segment() {
        let (mut p, h) = super_packet(true);
        let Offloaded::Gso(seg, _) = classify(&h, &mut p, 64) else {
            panic!("not GSO")
        };
        let (params, e) = gue_encap(&p, &seg, 9);
        let n = usize::from(e.header_len);
        let mut segs = Vec::with_capacity(4);
        assert!(queue_gso_encap(&mut segs, 5, &p, &e, &seg));
        assert_eq!(segs.len(), 3);
        let mut inner_payload = Vec::new();
        for s in &segs {
            let mut dgram = s.header[..s.header_len as usize].to_vec();
            dgram.extend_from_slice(&p[s.payload.clone()]);
            let outer = Ipv4Packet::new_checked(&dgram[..]).unwrap();
            assert!(outer.verify_checksum());
            assert_eq!(outer.total_len() as usize, dgram.len());
            let udp = &dgram[20..];
            let sum = checksum::combine(&[
                checksum::pseudo_header_v4(params.src, params.dst, 17, udp.len() as u16),
                checksum::data(udp),
            ]);
            assert_eq!(sum, 0xffff, "outer UDP checksum");
            let inner = &dgram[n..];
            assert!(tcp_checksum_ok(inner));
            inner_payload.extend_from_slice(&inner[40..]);
        }
        assert_eq!(inner_payload, &p[40..]);
        // No room for another 3: nothing queued.
        assert!(!queue_gso_encap(&mut segs, 6, &p, &e, &seg));
        assert_eq!(segs.len(), 3);
    }
}

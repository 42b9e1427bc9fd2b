//! The `AF_PACKET` socket: Ethernet frames straight to a next hop's MAC, no route lookup.
//!
//! [`FrameQueue`], one per worker, collects a batch's frames and sends them with one
//! `sendmmsg`: DR packets ([`Verdict::Ether`](crate::director::Verdict::Ether), whole or split
//! into IPv4 fragments when the core asked for it), and with `--tunnel-tx frames` the
//! TUN-mode packets of real servers reached through an Ethernet interface
//! ([`tunnel_link`](crate::director::io::tunnel_link)), their outer header completed as the raw
//! socket's kernel path would have (source, ident, checksum). GSO super-packets go out whole
//! behind a virtio header on the `PACKET_VNET_HDR` socket when the kernel has it (it or the
//! veth segments them), else as one frame per segment. A frame whose interface is gone is
//! reported so the worker sends that server's packets by the raw socket until the next refresh.

use std::io;
use std::num::NonZeroU16;
use std::ops::Range;

use super::{encap_segments, lost_packets, SendFailures, MAX_QUEUED_SEGMENTS};
use crate::director::io::tunnel_link::{frame_outer, TunnelLink};
use crate::director::stats::{BatchHistogram, EncapKind};
use crate::director::{Encap, Ether, MAX_FRAGMENTS};
use crate::encap::{self, IdentSeq, MAX_OUTER_HEADER};
use crate::sys::packet::{FrameSender, LinkDst};
use crate::sys::raw::MsgError;
use crate::sys::PacketBatch;
use crate::wire::ethernet::{self, EtherType, EthernetRepr};
use crate::wire::gso::{Segmenter, VnetHdr, MAX_SEGMENT_HEADER, VNET_HDR_LEN};

/// One frame waiting for the batch send: `header` then bytes `range` of the packet in batch
/// slot `slot` (`header` is empty for a whole packet, a fragment's IPv4 header otherwise).
#[derive(Clone)]
struct Framed {
    slot: usize,
    to: LinkDst,
    /// The `type` its send failure counts under.
    kind: EncapKind,
    header: [u8; MAX_OUTER_HEADER],
    header_len: u8,
    range: Range<usize>,
}

/// One segment of a GSO super-packet waiting for the batch send: its IPv4 + TCP headers (after
/// an outer header in TUN mode), then bytes `payload` of the super-packet in batch slot `slot`.
#[derive(Clone)]
struct SegFrame {
    slot: usize,
    to: LinkDst,
    /// The `type` its send failure counts under.
    kind: EncapKind,
    header: [u8; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
    header_len: u8,
    payload: Range<usize>,
}

impl std::fmt::Debug for SegFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegFrame")
            .field("slot", &self.slot)
            .field("to", &self.to)
            .field("payload", &self.payload)
            .finish()
    }
}

/// A whole GSO super-packet waiting for the batch send on the `PACKET_VNET_HDR` socket: the
/// virtio header, then bytes `..len` of the packet in batch slot `slot`.
#[derive(Clone, Debug)]
struct GsoFrame {
    slot: usize,
    to: LinkDst,
    /// The virtio header, then the Ethernet header.
    head: [u8; VNET_HDR_LEN + ethernet::HEADER_LEN],
    len: usize,
    segs: u64,
}

/// The most gone interfaces one flush reports.
const MAX_GONE: usize = 8;

/// A worker's DR frames of one batch, and the sockets they leave by.
#[derive(Debug)]
pub struct FrameQueue {
    sender: FrameSender,
    /// With `PACKET_VNET_HDR`: super-packets go out whole and the kernel segments them (or a
    /// veth passes them on whole). `None` if the kernel refused the option: then they are
    /// segmented here.
    gso_sender: Option<FrameSender>,
    pending: Vec<Framed>,
    segs: Vec<SegFrame>,
    gso: Vec<GsoFrame>,
    /// Source MACs of the interfaces super-packets went out of (looked up once each).
    macs: Vec<(u32, [u8; 6])>,
    /// Interfaces the last flush found gone (`ENXIO`, `ENODEV`, `ENETDOWN`).
    gone: Vec<u32>,
}

impl std::fmt::Debug for Framed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framed")
            .field("slot", &self.slot)
            .field("to", &self.to)
            .field("range", &self.range)
            .finish()
    }
}

impl FrameQueue {
    /// Opens the packet socket; room for `batch_size` packets of up to [`MAX_FRAGMENTS`]
    /// fragments each, so queueing never allocates.
    pub fn new(batch_size: usize) -> io::Result<FrameQueue> {
        Ok(FrameQueue {
            sender: FrameSender::new(batch_size)?,
            gso_sender: FrameSender::with_vnet_hdr(batch_size).ok(),
            pending: Vec::with_capacity(batch_size.max(1) * MAX_FRAGMENTS),
            segs: Vec::with_capacity(MAX_QUEUED_SEGMENTS),
            gso: Vec::with_capacity(batch_size.max(1)),
            macs: Vec::with_capacity(8),
            gone: Vec::with_capacity(MAX_GONE),
        })
    }

    /// Forgets the previous batch's frames.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.segs.clear();
        self.gso.clear();
        self.gone.clear();
    }

    /// The interfaces a frame of the last [`flush`](Self::flush) could not leave by because
    /// they are gone or down (at most a few).
    pub fn gone_interfaces(&self) -> &[u32] {
        &self.gone
    }

    /// Queues the TUN-mode packet `pkt` (batch slot `slot`) that the core encapsulated as `e`,
    /// as frames to `link`: the outer header completed by [`frame_outer`], then the inner
    /// packet, whole or in fragments as the core decided. Returns false, queueing nothing, if
    /// that is impossible.
    pub fn queue_encap(
        &mut self,
        idents: &mut IdentSeq,
        slot: usize,
        pkt: &[u8],
        e: &Encap,
        link: &TunnelLink,
    ) -> bool {
        if e.len > pkt.len() {
            return false;
        }
        let kind = EncapKind::from(e.tunnel);
        let mut header = e.header;
        let hl = usize::from(e.header_len).min(MAX_OUTER_HEADER);
        let ident = if e.frag_mtu == 0 {
            idents.next_ident().get()
        } else {
            0
        };
        if !frame_outer(&mut header[..hl], e.tunnel, link.src, ident) {
            return false;
        }
        if e.frag_mtu == 0 {
            self.pending.push(Framed {
                slot,
                to: link.to,
                kind,
                header,
                header_len: hl as u8,
                range: 0..e.len,
            });
            return true;
        }
        match encap::fragment(&header[..hl], e.len, e.frag_mtu, idents.next_ident()) {
            // `pending` has room for MAX_FRAGMENTS per packet of the batch: no reallocation.
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {
                self.pending.extend(frags.map(|f| Framed {
                    slot,
                    to: link.to,
                    kind,
                    header: f.header,
                    header_len: f.header_len as u8,
                    range: f.inner,
                }));
                true
            }
            _ => false,
        }
    }

    /// Queues every segment of the super-packet `pkt` (batch slot `slot`) that the core
    /// decided to encapsulate as `e`, as frames to the TUN-mode real server's `link`: the outer
    /// header is completed for an `AF_PACKET` send first ([`frame_outer`]; every segment has
    /// DF set and shares the identification), then copied in front of each segment's headers
    /// (`encap_segments`). Returns false, queueing nothing, if they do not fit
    /// [`segment_room`](Self::segment_room), the core asked for fragments, or `seg` does not
    /// describe `pkt`.
    #[allow(clippy::too_many_arguments)]
    pub fn queue_gso_encap(
        &mut self,
        idents: &mut IdentSeq,
        slot: usize,
        pkt: &[u8],
        e: &Encap,
        seg: &Segmenter,
        link: &TunnelLink,
    ) -> bool {
        if self.segment_room() < seg.count() || e.frag_mtu != 0 {
            return false;
        }
        let mut e = *e;
        let hl = usize::from(e.header_len).min(MAX_OUTER_HEADER);
        if !frame_outer(
            &mut e.header[..hl],
            e.tunnel,
            link.src,
            idents.next_ident().get(),
        ) {
            return false;
        }
        let start = self.segments_len();
        let kind = EncapKind::from(e.tunnel);
        let ok = encap_segments(pkt, &e, seg, |header, payload| {
            self.push_segment(slot, link.to, kind, header, payload)
        });
        if !ok {
            self.truncate_segments(start);
        }
        ok
    }

    /// Frames queued whole or as fragments (tests look at it).
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Sends one frame right away on the `PACKET_VNET_HDR` socket: the concatenation of
    /// `parts`, the first starting with the virtio and Ethernet headers. `None` if there is no
    /// such socket.
    pub fn send_whole(&self, to: LinkDst, parts: &[&[u8]]) -> Option<io::Result<usize>> {
        Some(self.gso_sender.as_ref()?.send_parts(to, parts))
    }

    /// How many GSO segments are queued (a mark for
    /// [`truncate_segments`](Self::truncate_segments)).
    pub fn segments_len(&self) -> usize {
        self.segs.len()
    }

    /// Drops the segments queued after mark `len`.
    pub fn truncate_segments(&mut self, len: usize) {
        self.segs.truncate(len);
    }

    /// Queues one segment frame to `to`: `header` (at most an outer header and a segment's
    /// IPv4 + TCP headers), then bytes `payload` of the packet in batch slot `slot`. Returns
    /// false, queueing nothing, if there is no [`segment_room`](Self::segment_room) or the
    /// header is too long.
    pub fn push_segment(
        &mut self,
        slot: usize,
        to: LinkDst,
        kind: EncapKind,
        header: &[u8],
        payload: Range<usize>,
    ) -> bool {
        let mut f = SegFrame {
            slot,
            to,
            kind,
            header: [0; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
            header_len: header.len() as u8,
            payload,
        };
        let Some(dst) = f.header.get_mut(..header.len()) else {
            return false;
        };
        if self.segment_room() == 0 {
            return false;
        }
        dst.copy_from_slice(header);
        self.segs.push(f);
        true
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.segs.is_empty() && self.gso.is_empty()
    }

    /// How many more GSO segments [`queue_gso`](Self::queue_gso) takes without allocating.
    pub fn segment_room(&self) -> usize {
        self.segs.capacity() - self.segs.len()
    }

    /// Queues the TCP/IPv4 super-packet `pkt` (batch slot `slot`, read behind `vh`, its
    /// partial checksum untouched): whole behind a virtio header when the `PACKET_VNET_HDR`
    /// socket is there, else as `seg` cuts it, one frame per segment, each with its own headers
    /// and its payload left in the slot. Returns false, queueing nothing, if it does not fit
    /// [`segment_room`](Self::segment_room), the core asked for fragments, or `seg` does not
    /// describe `pkt`.
    pub fn queue_gso(
        &mut self,
        slot: usize,
        pkt: &[u8],
        e: &Ether,
        seg: &Segmenter,
        vh: &VnetHdr,
    ) -> bool {
        if seg.count() > self.segment_room() || e.frag_mtu != 0 || e.len > pkt.len() {
            return false;
        }
        let to = LinkDst {
            ifindex: e.ifindex,
            mac: e.dst_mac,
        };
        if let Some(src) = self.gso_source_mac(e.ifindex) {
            let mut head = [0u8; VNET_HDR_LEN + ethernet::HEADER_LEN];
            let (vnet, eth) = head.split_at_mut(VNET_HDR_LEN);
            if let Ok(vnet) = <&mut [u8; VNET_HDR_LEN]>::try_from(vnet) {
                VnetHdr {
                    hdr_len: (ethernet::HEADER_LEN + seg.header_len()) as u16,
                    csum_start: vh.csum_start + ethernet::HEADER_LEN as u16,
                    ..*vh
                }
                .emit(vnet);
            }
            let eth_repr = EthernetRepr {
                dst_addr: e.dst_mac,
                src_addr: src,
                ethertype: EtherType::IPV4,
            };
            // `eth` is exactly one header long: this cannot fail.
            let _ = eth_repr.emit(eth);
            self.gso.push(GsoFrame {
                slot,
                to,
                head,
                len: e.len,
                segs: seg.count() as u64,
            });
            return true;
        }
        let start = self.segs.len();
        for i in 0..seg.count() {
            let mut f = SegFrame {
                slot,
                to,
                kind: EncapKind::Dr,
                header: [0; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
                header_len: 0,
                payload: 0..0,
            };
            let Some(s) = seg.segment(pkt, i, &mut f.header) else {
                self.segs.truncate(start);
                return false;
            };
            f.header_len = s.header_len as u8;
            f.payload = s.payload;
            self.segs.push(f);
        }
        true
    }

    /// Queues the packet `pkt` (batch slot `slot`) as the core decided: whole, or as fragments
    /// identified by the packet's own IP ident (or the next of `idents` when it is 0). Returns
    /// false, queueing nothing, if that is impossible (the core checked it is not).
    ///
    /// Every queued range lies within `pkt`, so [`flush`](Self::flush) finds all of them.
    pub fn queue(&mut self, idents: &mut IdentSeq, slot: usize, pkt: &[u8], e: &Ether) -> bool {
        if e.len > pkt.len() || e.len < 20 {
            return false;
        }
        let to = LinkDst {
            ifindex: e.ifindex,
            mac: e.dst_mac,
        };
        if e.frag_mtu == 0 {
            self.pending.push(Framed {
                slot,
                to,
                kind: EncapKind::Dr,
                header: [0; MAX_OUTER_HEADER],
                header_len: 0,
                range: 0..e.len,
            });
            return true;
        }
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let ident = NonZeroU16::new(u16::from_be_bytes([pkt[4], pkt[5]]))
            .unwrap_or_else(|| idents.next_ident());
        let Some(header) = pkt.get(..ihl) else {
            return false;
        };
        match encap::fragment(header, e.len - ihl, e.frag_mtu, ident) {
            // `pending` has room for MAX_FRAGMENTS per packet of the batch: no reallocation.
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {
                self.pending.extend(frags.map(|f| Framed {
                    slot,
                    to,
                    kind: EncapKind::Dr,
                    header: f.header,
                    header_len: f.header_len as u8,
                    range: ihl + f.inner.start..ihl + f.inner.end,
                }));
                true
            }
            _ => false,
        }
    }

    /// Sends the queued frames with `sendmmsg` (one batch per socket, each counted in
    /// `sizes`); returns how many packets the kernel refused (in whole or in one of their
    /// fragments), by the `type` they count under. GSO segments count one each.
    pub fn flush(&mut self, batch: &PacketBatch, sizes: &mut BatchHistogram) -> SendFailures {
        let mut failed = SendFailures::default();
        failed.add(EncapKind::Dr, self.flush_gso(batch, sizes));
        if self.pending.is_empty() && self.segs.is_empty() {
            return failed;
        }
        // `queue` and `queue_gso` checked every range, so no item is skipped and the failure
        // positions are positions in `pending` followed by `segs`.
        let items = self.pending.iter().filter_map(|f| {
            let bytes = batch.get(f.slot)?.get(f.range.clone())?;
            Some((f.to, &f.header[..usize::from(f.header_len)], bytes))
        });
        let segs = self.segs.iter().filter_map(|f| {
            let bytes = batch.get(f.slot)?.get(f.payload.clone())?;
            Some((f.to, &f.header[..usize::from(f.header_len)], bytes))
        });
        let report = self.sender.send_batch(items.chain(segs));
        sizes.record(report.sent + report.failed);
        if report.failed == 0 {
            return failed;
        }
        let failures = self.sender.failures();
        for f in failures {
            if !matches!(f.errno, libc::ENXIO | libc::ENODEV | libc::ENETDOWN) {
                continue;
            }
            let to = match self.pending.get(f.index) {
                Some(p) => Some(p.to),
                None => self.segs.get(f.index - self.pending.len()).map(|s| s.to),
            };
            if let Some(to) = to {
                if !self.gone.contains(&to.ifindex) && self.gone.len() < MAX_GONE {
                    self.gone.push(to.ifindex);
                }
            }
        }
        let whole = failures.partition_point(|f| f.index < self.pending.len());
        failed_packets(&self.pending, &failures[..whole], &mut failed);
        for f in &failures[whole..] {
            if let Some(s) = self.segs.get(f.index - self.pending.len()) {
                failed.add(s.kind, 1);
            }
        }
        failed
    }

    /// The source MAC for a super-packet out of `ifindex`, if it can go whole: the
    /// `PACKET_VNET_HDR` socket exists, there is room, and the interface's address is known
    /// (looked up once per interface; never more than `macs` holds, so no allocation).
    fn gso_source_mac(&mut self, ifindex: u32) -> Option<[u8; 6]> {
        let sender = self.gso_sender.as_ref()?;
        if self.gso.len() >= self.gso.capacity() {
            return None;
        }
        if let Some((_, mac)) = self.macs.iter().find(|(i, _)| *i == ifindex) {
            return Some(*mac);
        }
        let mac = sender.interface_mac(ifindex).ok()?;
        if self.macs.len() == self.macs.capacity() {
            self.macs.clear();
        }
        self.macs.push((ifindex, mac));
        Some(mac)
    }

    /// Sends the queued super-packets on the `PACKET_VNET_HDR` socket (counted in `sizes`);
    /// returns how many segments the kernel refused.
    fn flush_gso(&mut self, batch: &PacketBatch, sizes: &mut BatchHistogram) -> u64 {
        let (Some(sender), false) = (self.gso_sender.as_mut(), self.gso.is_empty()) else {
            return 0;
        };
        let items = self.gso.iter().filter_map(|f| {
            let bytes = batch.get(f.slot)?.get(..f.len)?;
            Some((f.to, &f.head[..], bytes))
        });
        let report = sender.send_batch(items);
        sizes.record(report.sent + report.failed);
        if report.failed == 0 {
            return 0;
        }
        let gso = &self.gso;
        sender
            .failures()
            .iter()
            .filter_map(|f| gso.get(f.index).map(|g| g.segs))
            .sum()
    }
}

/// Adds to `out` how many packets the failed frames (positions in `pending`) belonged to,
/// by their `type`.
fn failed_packets(pending: &[Framed], failures: &[MsgError], out: &mut SendFailures) {
    for p in lost_packets(pending, failures, |p| p.slot) {
        out.add(p.kind, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_fragment_loses_its_packet_once() {
        let f = |slot| Framed {
            slot,
            to: LinkDst {
                ifindex: 1,
                mac: [0; 6],
            },
            kind: EncapKind::Dr,
            header: [0; MAX_OUTER_HEADER],
            header_len: 0,
            range: 0..1,
        };
        let pending = [f(0), f(1), f(1), f(1), f(2)];
        let err = |index| MsgError { index, errno: 1 };
        let lost = |failures: &[MsgError]| {
            let mut out = SendFailures::default();
            failed_packets(&pending, failures, &mut out);
            out
        };
        assert_eq!(lost(&[err(1), err(3)]).total(), 1);
        let three = lost(&[err(0), err(2), err(4)]);
        assert_eq!(three.total(), 3);
        assert_eq!(three.by_kind().collect::<Vec<_>>(), [(EncapKind::Dr, 3)]);
    }
}

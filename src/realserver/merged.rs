//! Tunnel packets the kernel merged before the raw socket saw them (IPIP / GRE GRO).
//!
//! The kernel's GRO knows IPIP and GRE (`ipip_gro_receive`, `gre_gro_receive`, built in even
//! without the tunnel modules): with GRO on the receiving NIC, consecutive tunnelled segments
//! of one TCP flow reach the raw socket as one packet. The outer and inner IPv4 headers are
//! fixed (lengths, checksums), but the inner TCP checksum is not a checksum of the whole: the
//! merged skb is `CHECKSUM_PARTIAL` and `tcp4_gro_complete` left the pseudo-header sum in
//! the field (the fraglist variant leaves the first segment's checksum). Written into the TUN
//! as is, the kernel's TCP counts a checksum error and drops it.
//!
//! **Signal.** A raw socket hands over no GSO metadata, so [`classify`] reads GRO's mark:
//! it leaves the pseudo-header sum in the inner TCP (or UDP) checksum field, where a packet
//! that came off a wire has its sender's full checksum. A packet without the mark keeps the
//! ordinary path untouched (the kernel checks its checksum); the test costs one
//! pseudo-header sum. A marked packet longer than the receiving interface's MTU is merged
//! (nothing longer comes off a wire; the receiver asks for `IP_PKTINFO` and [`MtuCache`]
//! maps the interface index to its MTU); a marked one that fits is verified in software and
//! taken for merged only if its checksum fails, so a wire packet whose full checksum
//! happens to equal the pseudo-header sum stays intact. Length alone is not enough: GRO also
//! merges segments that fit the MTU together (two 724-byte segments into a 1520-byte packet
//! on a 1600-byte link, seen in the namespace benchmark); and an outer packet reassembled
//! from fragments is longer than the MTU without being merged.
//!
//! **What is written** ([`MergedTcp`]): into a TUN with virtio headers, the packet whole
//! behind a header `GSO_TCPV4`, `NEEDS_CSUM` (`csum_start` = inner TCP header, `csum_offset`
//! 16, the field set to the pseudo-header sum), `gso_size` = the most payload one wire
//! packet could have carried (MTU − outer headers − inner headers; a payload within one such
//! segment, a merge that fits the MTU, gets `GSO_NONE`). The kernel takes it like
//! the GRO packet it was: TCP sees one large segment whose `gso_size` keeps its receive-MSS
//! estimate sane (a large packet without `gso_size` makes `tcp_measure_rcv_mss` warn about a
//! "suspect GRO implementation"), and a forwarding gateway re-segments it to wire size.
//! Without virtio headers the agent cuts it into segments of that size itself, each with a
//! full checksum. The real segment size is lost in the merge; the estimate is an upper bound
//! of it, which is all either use needs.
//!
//! **GRE checksums.** GRE GRO merges packets with the checksum (C) bit too, after verifying
//! each one's; the merged header keeps the first segment's checksum, which no longer covers
//! the payload. The agent therefore takes a GRE packet whose checksum fails when it carries
//! the mark ([`has_gro_mark`]) and drops it as `gre_bad_checksum` otherwise.
//!
//! A merged UDP packet (`UDP_GRO` forwarding, e.g. towards a QUIC server with `UDP_GRO` on
//! the VIP: its datagram boundaries cannot be recovered) is dropped and counted
//! ([`Merged::Unsupported`]).
//!
//! Not repaired: fraglist GRO (`rx-gro-list`, off by default) leaves the first segment's
//! checksum instead of the pseudo-header sum; such packets reach the kernel's TCP as before
//! and fail its checksum.

use std::time::{Duration, Instant};

use crate::wire::checksum;
use crate::wire::gso::{self, VnetHdr};
use crate::wire::{IpProtocol, Ipv4Packet};

/// How long a looked-up MTU is trusted before it is asked again.
pub const MTU_REFRESH: Duration = Duration::from_secs(1);

/// Interface index → MTU, asked once per interface and again every [`MTU_REFRESH`].
#[derive(Debug, Default)]
pub struct MtuCache {
    entries: Vec<(u32, u32)>,
    since: Option<Instant>,
}

impl MtuCache {
    /// An empty cache.
    pub fn new() -> MtuCache {
        MtuCache::default()
    }

    /// Forgets every entry once [`MTU_REFRESH`] has passed since the first was stored (call
    /// once per received batch).
    pub fn tick(&mut self, now: Instant) {
        match self.since {
            Some(t) if now.saturating_duration_since(t) >= MTU_REFRESH => {
                self.entries.clear();
                self.since = None;
            }
            _ => {}
        }
    }

    /// The MTU of `ifindex`, asking `fetch` on a miss. An interface whose MTU cannot be read
    /// counts as unlimited (nothing on it is taken for merged) until the next refresh.
    pub fn get(
        &mut self,
        ifindex: u32,
        now: Instant,
        fetch: impl FnOnce(u32) -> Option<u32>,
    ) -> u32 {
        if let Some(&(_, mtu)) = self.entries.iter().find(|(i, _)| *i == ifindex) {
            return mtu;
        }
        let mtu = fetch(ifindex).unwrap_or(u32::MAX);
        self.entries.push((ifindex, mtu));
        self.since.get_or_insert(now);
        mtu
    }
}

/// What the inner packet of a tunnel packet is, as far as GRO is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merged {
    /// TCP merged by GRO: repair it ([`MergedTcp`]).
    Tcp(MergedTcp),
    /// Merged by GRO, but not repairable: UDP merged by `UDP_GRO` forwarding (its datagram
    /// boundaries are lost), or a merged TCP packet with no room for a segment in the MTU.
    Unsupported,
    /// Not merged: it carries its sender's checksum (every wire packet, and outer packets
    /// reassembled from fragments), or is neither TCP nor UDP. Delivered as is; the kernel
    /// checks it.
    Intact,
}

/// Tells whether the inner packet `inner` of a tunnel packet was merged by GRO;
/// `max_inner` is the longest inner packet one wire packet could carry (the MTU of the
/// interface it arrived on minus the outer headers).
///
/// GRO leaves its mark in the L4 checksum field: the pseudo-header sum (`tcp4_gro_complete`,
/// and `udp4_gro_complete` when the checksum is not 0), where a packet that was not merged
/// has its full checksum. A packet without the mark is not merged (cost: one pseudo-header
/// sum). One with it is merged if it is longer than `max_inner` (no wire carries it); else
/// its checksum is verified in software, and only a packet that fails it is merged (a wire
/// packet whose full checksum happens to equal the pseudo-header sum stays intact).
pub fn classify(inner: &[u8], max_inner: usize) -> Merged {
    let Some(ihl) = inner.first().map(|b| usize::from(b & 0x0f) * 4) else {
        return Merged::Intact;
    };
    if inner.len() < 20 || inner[0] >> 4 != 4 || ihl < 20 {
        return Merged::Intact;
    }
    let (proto, at) = match inner[9] {
        IpProtocol::TCP => (IpProtocol::TCP, ihl + 16),
        IpProtocol::UDP => (IpProtocol::UDP, ihl + 6),
        _ => return Merged::Intact,
    };
    let (Some(field), Some(l4), Ok(l4_len)) = (
        inner.get(at..at + 2),
        inner.get(ihl..),
        u16::try_from(inner.len().saturating_sub(ihl)),
    ) else {
        return Merged::Intact;
    };
    let field = u16::from_be_bytes([field[0], field[1]]);
    let src = std::net::Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    let dst = std::net::Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
    let pseudo = checksum::pseudo_header_v4(src, dst, proto, l4_len);
    if field != pseudo || (proto == IpProtocol::UDP && field == 0) {
        return Merged::Intact;
    }
    if inner.len() <= max_inner && checksum::combine(&[pseudo, checksum::data(l4)]) == 0xffff {
        return Merged::Intact;
    }
    match proto {
        IpProtocol::TCP => {
            MergedTcp::new(inner, max_inner).map_or(Merged::Unsupported, Merged::Tcp)
        }
        _ => Merged::Unsupported,
    }
}

/// Whether the inner packet `inner` carries GRO's mark, the pseudo-header sum in its TCP (or
/// non-zero UDP) checksum field, whatever its length: what [`classify`] looks at first. The
/// agent asks it of a GRE packet whose checksum fails (see
/// [`Filter::check_ip`](super::filter::Filter::check_ip)).
pub fn has_gro_mark(inner: &[u8]) -> bool {
    // No wire packet is longer than 0 bytes: a marked packet never reaches the software
    // checksum and comes back as merged.
    classify(inner, 0) != Merged::Intact
}

/// TCP flag bit CWR.
const CWR: u8 = 0x80;

/// A merged TCP/IPv4 packet and the segment size it is delivered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergedTcp {
    ihl: usize,
    header_len: usize,
    gso_size: u16,
}

impl MergedTcp {
    /// Checks the inner packet `inner` of a merged tunnel packet (a whole TCP/IPv4 packet);
    /// `max_inner` is the longest inner packet one wire packet could carry (the MTU minus
    /// the outer headers). `None` if it is not such a packet or no payload fits `max_inner`.
    pub fn new(inner: &[u8], max_inner: usize) -> Option<MergedTcp> {
        let ihl = usize::from(*inner.first()? & 0x0f) * 4;
        if inner.len() < 20 || inner[0] >> 4 != 4 || ihl < 20 || inner[9] != IpProtocol::TCP {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([inner[2], inner[3]]));
        if total != inner.len() || u16::from_be_bytes([inner[6], inner[7]]) & 0x3fff != 0 {
            return None;
        }
        let doff = usize::from(*inner.get(ihl + 12)? >> 4) * 4;
        let header_len = ihl + doff;
        if doff < 20 || header_len >= total {
            return None;
        }
        let gso_size = max_inner
            .checked_sub(header_len)
            .filter(|&s| s > 0)
            .and_then(|s| u16::try_from(s).ok())?;
        Some(MergedTcp {
            ihl,
            header_len,
            gso_size,
        })
    }

    /// The payload bytes per segment: the most one wire packet could have carried.
    pub fn gso_size(&self) -> u16 {
        self.gso_size
    }

    /// Prepares `inner` (the packet [`new`](Self::new) checked) to be written behind the
    /// returned virtio header: the TCP checksum field gets the pseudo-header sum, the header
    /// says `NEEDS_CSUM` there and, if the payload is longer than one segment, `GSO_TCPV4`
    /// with [`gso_size`](Self::gso_size). `None` if `inner` is not that packet.
    pub fn vnet_hdr(&self, inner: &mut [u8]) -> Option<VnetHdr> {
        let partial = gso::partial_checksum(inner, inner.len())?;
        let at = self.ihl + 16;
        inner
            .get_mut(at..at + 2)?
            .copy_from_slice(&partial.to_be_bytes());
        let payload = inner.len().checked_sub(self.header_len)?;
        let gso_type = match payload > usize::from(self.gso_size) {
            false => gso::GSO_NONE,
            true if inner.get(self.ihl + 13)? & CWR != 0 => gso::GSO_TCPV4 | gso::GSO_ECN,
            true => gso::GSO_TCPV4,
        };
        Some(VnetHdr {
            flags: gso::F_NEEDS_CSUM,
            gso_type,
            hdr_len: u16::try_from(self.header_len).ok()?,
            gso_size: if gso_type == gso::GSO_NONE {
                0
            } else {
                self.gso_size
            },
            csum_start: u16::try_from(self.ihl).ok()?,
            csum_offset: 16,
        })
    }
}

/// "PROTO ADDR:PORT" of an inner IPv4 packet's destination, for a log line ("?" if it is not
/// a whole IPv4 packet).
pub fn describe_destination(p: &[u8]) -> String {
    let Ok(ip) = Ipv4Packet::new_checked(p) else {
        return "?".to_string();
    };
    let proto = match ip.protocol() {
        IpProtocol::UDP => "UDP",
        IpProtocol::TCP => "TCP",
        _ => return ip.dst_addr().to_string(),
    };
    match ip.payload().get(2..4) {
        Some(port) => format!(
            "{proto} {}:{}",
            ip.dst_addr(),
            u16::from_be_bytes([port[0], port[1]])
        ),
        None => format!("{proto} {}", ip.dst_addr()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gso::Segmenter;
    use crate::wire::testing::tcp_packet;
    use crate::wire::Ipv4Packet;
    use std::net::Ipv4Addr;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
    /// The receiving interface's MTU and the IPIP outer header.
    const MTU: usize = 1500;
    const OUTER: usize = 20;

    /// Whether the TCP checksum of the TCP/IPv4 packet `p` is valid.
    fn tcp_checksum_ok(p: &[u8]) -> bool {
        let Some(&b0) = p.first() else {
            return false;
        };
        let ihl = usize::from(b0 & 0x0f) * 4;
        let (Some(ip), Some(l4)) = (p.get(..20), p.get(ihl..)) else {
            return false;
        };
        let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let Ok(len) = u16::try_from(l4.len()) else {
            return false;
        };
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, len),
            checksum::data(l4),
        ]) == 0xffff
    }

    /// What the kernel's IPIP GRO hands the raw socket for `n` wire segments of `seg`
    /// payload bytes: the outer header (total length and checksum fixed), the inner packet
    /// with the first segment's headers (total length and IP checksum fixed) and the TCP
    /// checksum field as `stale` leaves it: the first segment's checksum (fraglist GRO) or
    /// the pseudo-header sum (`tcp4_gro_complete`). Returns it with the original segments.
    fn merged_ipip(n: usize, seg: usize, kernel_sum: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut whole = tcp_packet(CLIENT, 40000, VIP, 80, 0x10, n * seg);
        for (i, b) in whole[40..].iter_mut().enumerate() {
            *b = (i * 13 + 5) as u8;
        }
        let cut = Segmenter::new(&whole, seg as u16).unwrap();
        let segs: Vec<Vec<u8>> = (0..cut.count())
            .map(|i| {
                let mut o = vec![0u8; 2000];
                let len = cut.write_segment(&whole, i, &mut o).unwrap();
                o.truncate(len);
                o
            })
            .collect();
        // GRO: first segment's headers, every payload, lengths and IP checksum fixed.
        let mut inner = segs[0].clone();
        for s in &segs[1..] {
            inner.extend_from_slice(&s[40..]);
        }
        let total = inner.len() as u16;
        inner[2..4].copy_from_slice(&total.to_be_bytes());
        inner[10..12].copy_from_slice(&[0, 0]);
        let s = !checksum::data(&inner[..20]);
        inner[10..12].copy_from_slice(&s.to_be_bytes());
        if kernel_sum {
            let p = gso::partial_checksum(&inner, inner.len()).unwrap();
            inner[36..38].copy_from_slice(&p.to_be_bytes());
        }
        let mut outer = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 4, 0, 0, 192, 168, 1, 2, 192, 168, 1, 3,
        ];
        let len = (OUTER + inner.len()) as u16;
        outer[2..4].copy_from_slice(&len.to_be_bytes());
        let s = !checksum::data(&outer);
        outer[10..12].copy_from_slice(&s.to_be_bytes());
        outer.extend_from_slice(&inner);
        (outer, segs)
    }

    #[test]
    fn merges_that_fit_the_mtu_are_found_by_their_mark() {
        // Two 724-byte segments merged into a 1488-byte inner packet on a 1600-byte link.
        let (mut pkt, segs) = merged_ipip(2, 724, true);
        let max_inner = 1600 - OUTER;
        let inner = &mut pkt[OUTER..];
        assert!(inner.len() <= max_inner);
        let Merged::Tcp(plan) = classify(inner, max_inner) else {
            panic!("not found merged");
        };
        let vh = plan.vnet_hdr(inner).unwrap();
        // The payload fits one segment of the estimate: a partial checksum, no GSO.
        assert_eq!(
            (vh.gso_type, vh.gso_size, vh.flags),
            (gso::GSO_NONE, 0, gso::F_NEEDS_CSUM)
        );
        let mut done = inner.to_vec();
        gso::complete_checksum(&mut done, vh.csum_start, vh.csum_offset).unwrap();
        assert!(tcp_checksum_ok(&done));
        // A wire segment keeps its own checksum and its path.
        assert!(tcp_checksum_ok(&segs[0]));
        assert_eq!(classify(&segs[0], max_inner), Merged::Intact);
        // Even one whose full checksum equals the pseudo-header sum (data summing to zero).
        let mut zero = segs[0].clone();
        zero[36..38].copy_from_slice(&[0, 0]);
        let p = gso::partial_checksum(&zero, zero.len()).unwrap();
        zero[36..38].copy_from_slice(&p.to_be_bytes());
        let rest = checksum::combine(&[p, checksum::data(&zero[20..])]);
        // Adjust two payload bytes so that the whole sums to 0xffff with the field = p.
        let fix = checksum::combine(&[rest, !u16::from_be_bytes([zero[40], zero[41]])]);
        zero[40..42].copy_from_slice(&(!fix).to_be_bytes());
        assert!(tcp_checksum_ok(&zero));
        assert_eq!(u16::from_be_bytes([zero[36], zero[37]]), p);
        assert_eq!(classify(&zero, max_inner), Merged::Intact);
    }

    #[test]
    fn a_merged_packet_as_is_fails_the_tcp_checksum() {
        // The bug: what the kernel's TCP would see without the fix.
        for kernel_sum in [true, false] {
            let (pkt, _) = merged_ipip(4, 1000, kernel_sum);
            assert!(!tcp_checksum_ok(&pkt[OUTER..]), "kernel_sum={kernel_sum}");
        }
    }

    #[test]
    fn a_merged_tcp_packet_gets_a_gso_header_and_the_pseudo_header_sum() {
        for kernel_sum in [true, false] {
            let (mut pkt, segs) = merged_ipip(4, 1000, kernel_sum);
            let inner = &mut pkt[OUTER..];
            let plan = MergedTcp::new(inner, MTU - OUTER).unwrap();
            // 1500 − 20 outer − 20 IP − 20 TCP.
            assert_eq!(plan.gso_size(), 1440);
            let vh = plan.vnet_hdr(inner).unwrap();
            assert_eq!(vh.flags, gso::F_NEEDS_CSUM);
            assert_eq!(vh.gso_type, gso::GSO_TCPV4);
            assert_eq!(vh.gso_size, 1440);
            assert_eq!(vh.hdr_len, 40);
            assert_eq!((vh.csum_start, vh.csum_offset), (20, 16));
            vh.check(inner).unwrap();
            let partial = gso::partial_checksum(inner, inner.len()).unwrap();
            assert_eq!(inner[36..38], partial.to_be_bytes());
            // What the kernel does with NEEDS_CSUM gives a valid checksum ...
            let mut done = inner.to_vec();
            gso::complete_checksum(&mut done, vh.csum_start, vh.csum_offset).unwrap();
            assert!(tcp_checksum_ok(&done));
            assert!(Ipv4Packet::new_checked(&done[..])
                .unwrap()
                .verify_checksum());
            // ... and the bytes of the original segments.
            let data: Vec<u8> = segs.iter().flat_map(|s| s[40..].to_vec()).collect();
            assert_eq!(&done[40..], &data[..]);
        }
    }

    #[test]
    fn without_offload_the_segments_carry_full_checksums() {
        let (pkt, segs) = merged_ipip(5, 1200, true);
        let inner = &pkt[OUTER..];
        let plan = MergedTcp::new(inner, MTU - OUTER).unwrap();
        let cut = Segmenter::new(inner, plan.gso_size()).unwrap();
        // 6000 bytes in segments of at most 1440: 5 segments, each wire-sized.
        assert_eq!(cut.count(), 5);
        let mut data = Vec::new();
        let mut seq = u32::from_be_bytes(inner[24..28].try_into().unwrap());
        for i in 0..cut.count() {
            let mut o = vec![0u8; MTU];
            let n = cut.write_segment(inner, i, &mut o).unwrap();
            assert!(n + OUTER <= MTU);
            assert!(tcp_checksum_ok(&o[..n]), "segment {i}");
            assert!(Ipv4Packet::new_checked(&o[..n]).unwrap().verify_checksum());
            assert_eq!(u32::from_be_bytes(o[24..28].try_into().unwrap()), seq);
            seq = seq.wrapping_add((n - 40) as u32);
            data.extend_from_slice(&o[40..n]);
        }
        let orig: Vec<u8> = segs.iter().flat_map(|s| s[40..].to_vec()).collect();
        assert_eq!(data, orig);
    }

    #[test]
    fn gro_merged_tcp_is_told_from_reassembled_fragments_by_its_checksum_field() {
        let (pkt, _) = merged_ipip(3, 1400, true);
        let inner = &pkt[OUTER..];
        let plan = MergedTcp::new(inner, MTU - OUTER).unwrap();
        assert_eq!(classify(inner, MTU - OUTER), Merged::Tcp(plan));
        // The same bytes with a full checksum: an outer packet reassembled from fragments.
        let mut whole = inner.to_vec();
        whole[36..38].copy_from_slice(&[0, 0]);
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(CLIENT, VIP, 6, (whole.len() - 20) as u16),
            checksum::data(&whole[20..]),
        ]);
        whole[36..38].copy_from_slice(&(!sum).to_be_bytes());
        assert!(tcp_checksum_ok(&whole));
        assert_eq!(classify(&whole, MTU - OUTER), Merged::Intact);
        // Fraglist GRO's stale first-segment checksum is not repaired (documented).
        let (stale, _) = merged_ipip(3, 1400, false);
        assert_eq!(classify(&stale[OUTER..], MTU - OUTER), Merged::Intact);
        // GRO's mark, but no room for a payload byte in the MTU.
        assert_eq!(classify(inner, 40), Merged::Unsupported);
    }

    #[test]
    fn merged_udp_is_unsupported_and_other_oversize_packets_are_intact() {
        let (pkt, _) = merged_ipip(2, 1000, true);
        // UDP with GRO's pseudo-header sum in its checksum field.
        let mut udp = pkt[OUTER..].to_vec();
        udp[9] = IpProtocol::UDP;
        let l4 = (udp.len() - 20) as u16;
        udp[24..26].copy_from_slice(&l4.to_be_bytes());
        let p = checksum::pseudo_header_v4(CLIENT, VIP, IpProtocol::UDP, l4);
        udp[26..28].copy_from_slice(&p.to_be_bytes());
        assert_eq!(classify(&udp, MTU - OUTER), Merged::Unsupported);
        // UDP with a full (here: any other) checksum, or none: not merged by GRO.
        udp[26..28].copy_from_slice(&(p ^ 1).to_be_bytes());
        assert_eq!(classify(&udp, MTU - OUTER), Merged::Intact);
        udp[26..28].copy_from_slice(&[0, 0]);
        assert_eq!(classify(&udp, MTU - OUTER), Merged::Intact);
        let mut icmp = pkt[OUTER..].to_vec();
        icmp[9] = 1;
        assert_eq!(classify(&icmp, MTU - OUTER), Merged::Intact);
        for short in [&[][..], &[0x45], &pkt[OUTER..OUTER + 30]] {
            assert_eq!(classify(short, MTU - OUTER), Merged::Intact);
        }
    }

    #[test]
    fn malformed_merged_tcp_is_refused() {
        let (pkt, _) = merged_ipip(2, 1000, true);
        let mut frag = pkt[OUTER..].to_vec();
        frag[6] |= 0x20;
        assert!(MergedTcp::new(&frag, MTU - OUTER).is_none());
        // Total length disagreeing with the bytes received.
        assert!(MergedTcp::new(&pkt[OUTER..pkt.len() - 1], MTU - OUTER).is_none());
        assert!(MergedTcp::new(&[0x45], 1480).is_none());
        assert!(MergedTcp::new(&[], 1480).is_none());
    }

    #[test]
    fn the_mtu_is_asked_once_per_interface_and_again_after_the_refresh() {
        let mut c = MtuCache::new();
        let t0 = Instant::now();
        let mut asked = 0;
        let mut fetch = |i: u32| {
            asked += 1;
            (i == 2).then_some(1500)
        };
        assert_eq!(c.get(2, t0, &mut fetch), 1500);
        assert_eq!(c.get(2, t0, &mut fetch), 1500);
        // Unknown interface: unlimited, and not asked again before the refresh.
        assert_eq!(c.get(9, t0, &mut fetch), u32::MAX);
        assert_eq!(c.get(9, t0, &mut fetch), u32::MAX);
        c.tick(t0 + MTU_REFRESH / 2);
        assert_eq!(c.get(2, t0, &mut fetch), 1500);
        c.tick(t0 + MTU_REFRESH);
        assert_eq!(c.get(2, t0 + MTU_REFRESH, &mut fetch), 1500);
        assert_eq!(asked, 3);
    }

    #[test]
    fn a_log_line_names_the_inner_destination() {
        use crate::wire::testing::{tcp_packet, udp_packet};
        let vip = Ipv4Addr::new(10, 100, 0, 100);
        let client = Ipv4Addr::new(10, 1, 0, 2);
        let u = udp_packet(client, 40000, vip, 9000, 64);
        assert_eq!(describe_destination(&u), "UDP 10.100.0.100:9000");
        let t = tcp_packet(client, 40000, vip, 80, 0x10, 0);
        assert_eq!(describe_destination(&t), "TCP 10.100.0.100:80");
        let mut short = u[..22].to_vec();
        short[2..4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(describe_destination(&short), "UDP 10.100.0.100");
        assert_eq!(
            describe_destination(&u[..22]),
            "?",
            "total length beyond the bytes"
        );
        assert_eq!(describe_destination(&u[..10]), "?");
    }
}

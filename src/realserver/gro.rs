//! Rebuilding TCP super-packets from a `UDP_GRO` train of GUE records.
//!
//! With `UDP_GRO` on the GUE socket, the kernel hands over a train of datagrams of one UDP
//! flow as one buffer: back-to-back records of `gso_size` bytes (the last may be shorter),
//! each one GUE packet. [`records`] cuts it up; each record is then checked like any datagram.
//! When the accepted inner packets are consecutive segments of one TCP flow (the director cut
//! them from one super-packet), [`TcpMerge`] glues them back into one TCP/IPv4 super-packet:
//! the first segment's headers (total length fixed, the last segment's PSH/FIN), the payloads
//! in order, and a `virtio_net_hdr` (GSO_TCPV4, `gso_size` = the segments' payload size,
//! NEEDS_CSUM with the pseudo-header sum in the checksum field), which the agent writes into
//! its TUN in one go for the kernel to take whole.
//!
//! Each segment's TCP checksum is verified before it is merged (the kernel does not check a
//! NEEDS_CSUM packet, while it would have checked the segments written one by one); a segment
//! that fails, or does not continue the flow, ends the merge and goes on its own.

use crate::wire::checksum;
use crate::wire::gso::{self, VnetHdr};
use crate::wire::IpProtocol;

/// The records of a `UDP_GRO` buffer: `size`-byte pieces, the last possibly shorter (the
/// whole buffer as one record if `size` is 0).
pub fn records(buf: &[u8], size: u16) -> impl Iterator<Item = &[u8]> {
    let size = if size == 0 {
        buf.len().max(1)
    } else {
        usize::from(size)
    };
    buf.chunks(size)
}

/// TCP flag bits.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const URG: u8 = 0x20;
const CWR: u8 = 0x80;

/// The largest super-packet (an IPv4 total length).
const MAX_LEN: usize = 65_535;

/// Where the fields of a TCP/IPv4 segment are, once [`Segment::parse`] checked them.
#[derive(Clone, Copy, Debug)]
struct Segment {
    ihl: usize,
    header_len: usize,
    total: usize,
    seq: u32,
    flags: u8,
}

impl Segment {
    /// A whole (unfragmented) TCP/IPv4 packet with a payload and a valid TCP checksum, and
    /// without SYN, RST, URG or CWR; `None` for anything else (it then goes on its own).
    fn parse(p: &[u8]) -> Option<Segment> {
        let ihl = usize::from(*p.first()? & 0x0f) * 4;
        if p.len() < 20 || p[0] >> 4 != 4 || ihl < 20 || p[9] != IpProtocol::TCP {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 || total > p.len() {
            return None;
        }
        let doff = usize::from(*p.get(ihl + 12)? >> 4) * 4;
        let header_len = ihl + doff;
        if doff < 20 || header_len >= total {
            return None;
        }
        let flags = p[ihl + 13];
        if flags & (SYN | RST | URG | CWR) != 0 {
            return None;
        }
        let seq = u32::from_be_bytes(p.get(ihl + 4..ihl + 8)?.try_into().ok()?);
        let src = std::net::Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let dst = std::net::Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let l4 = p.get(ihl..total)?;
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, l4.len() as u16),
            checksum::data(l4),
        ]);
        if sum != 0xffff {
            return None;
        }
        Some(Segment {
            ihl,
            header_len,
            total,
            seq,
            flags,
        })
    }

    fn payload_len(&self) -> usize {
        self.total - self.header_len
    }
}

/// Whether `b` has the headers of `a` except what differs between segments of one
/// super-packet: IPv4 total length, ident and checksum; TCP sequence number, flags and
/// checksum.
fn same_flow(a: &[u8], sa: &Segment, b: &[u8], sb: &Segment) -> bool {
    if sa.ihl != sb.ihl || sa.header_len != sb.header_len {
        return false;
    }
    let (ihl, hl) = (sa.ihl, sa.header_len);
    let eq =
        |r: core::ops::Range<usize>| a.get(r.clone()).is_some() && a.get(r.clone()) == b.get(r);
    eq(0..2)
        && eq(6..10)
        && eq(12..ihl)
        && eq(ihl..ihl + 4)
        && eq(ihl + 8..ihl + 13)
        && eq(ihl + 14..ihl + 16)
        && eq(ihl + 18..hl)
}

/// Merges consecutive TCP segments of one flow into one super-packet (a buffer of 64 KB,
/// allocated once).
#[derive(Debug)]
pub struct TcpMerge {
    buf: Vec<u8>,
    len: usize,
    count: usize,
    first: Option<Segment>,
    /// Payload size of the first segment: the `gso_size`.
    mss: usize,
    /// Payload size and flags of the last segment merged, and the sequence number expected
    /// next.
    last_payload: usize,
    last_flags: u8,
    next_seq: u32,
}

impl Default for TcpMerge {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpMerge {
    /// An empty merge.
    pub fn new() -> TcpMerge {
        TcpMerge {
            buf: vec![0; MAX_LEN],
            len: 0,
            count: 0,
            first: None,
            mss: 0,
            last_payload: 0,
            last_flags: 0,
            next_seq: 0,
        }
    }

    /// How many segments are merged so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Adds the inner packet `p`. Returns false, taking nothing, if it cannot continue the
    /// current merge (another flow, a gap, a payload larger than the first one's, a segment
    /// after a short one or after PSH/FIN, a bad checksum, no room) or cannot start one (not
    /// a plain TCP/IPv4 data segment): the caller then [`take`](Self::take)s the merge and
    /// tries again, or writes `p` on its own.
    pub fn push(&mut self, p: &[u8]) -> bool {
        let Some(s) = Segment::parse(p) else {
            return false;
        };
        let Some(f) = self.first else {
            let Some(dst) = self.buf.get_mut(..s.total) else {
                return false;
            };
            dst.copy_from_slice(&p[..s.total]);
            self.len = s.total;
            self.count = 1;
            self.first = Some(s);
            self.mss = s.payload_len();
            self.last_payload = s.payload_len();
            self.last_flags = s.flags;
            self.next_seq = s.seq.wrapping_add(s.payload_len() as u32);
            return true;
        };
        let payload = s.payload_len();
        let ok = self.last_payload == self.mss
            && self.last_flags & (PSH | FIN) == 0
            && payload <= self.mss
            && s.seq == self.next_seq
            && s.flags & !(PSH | FIN) == f.flags & !(PSH | FIN)
            && same_flow(&self.buf[..f.header_len], &f, p, &s);
        if !ok {
            return false;
        }
        let Some(dst) = self.buf.get_mut(self.len..self.len + payload) else {
            return false;
        };
        dst.copy_from_slice(&p[s.header_len..s.total]);
        self.len += payload;
        self.count += 1;
        self.last_payload = payload;
        self.last_flags = s.flags;
        self.next_seq = s.seq.wrapping_add(payload as u32);
        true
    }

    /// Finishes the merge and empties it: the packet and the virtio header to write it
    /// behind. One segment comes back unchanged (header [`VnetHdr::NONE`]); several come back
    /// as one super-packet. `None` if nothing was pushed.
    pub fn take(&mut self) -> Option<(VnetHdr, &[u8])> {
        let f = self.first.take()?;
        let (count, len) = (self.count, self.len);
        self.count = 0;
        self.len = 0;
        let pkt = self.buf.get_mut(..len)?;
        if count == 1 {
            return Some((VnetHdr::NONE, pkt));
        }
        let total = u16::try_from(len).ok()?;
        pkt[2..4].copy_from_slice(&total.to_be_bytes());
        pkt[10..12].copy_from_slice(&[0, 0]);
        let ip_sum = !checksum::data(pkt.get(..f.ihl)?);
        pkt[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        // The first segment carried no PSH/FIN (else nothing would have been merged after
        // it); the super-packet ends with the last one's.
        pkt[f.ihl + 13] = f.flags | (self.last_flags & (PSH | FIN));
        let partial = gso::partial_checksum(pkt, len)?;
        pkt[f.ihl + 16..f.ihl + 18].copy_from_slice(&partial.to_be_bytes());
        let vh = VnetHdr {
            flags: gso::F_NEEDS_CSUM,
            gso_type: gso::GSO_TCPV4,
            hdr_len: f.header_len as u16,
            gso_size: self.mss as u16,
            csum_start: f.ihl as u16,
            csum_offset: 16,
        };
        Some((vh, pkt))
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

    /// The segments the director cuts a `len`-byte payload into (MSS 1000), PSH on the last.
    fn segments(len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut p = tcp_packet(CLIENT, 40000, VIP, 80, 0x18, len);
        for (i, b) in p[40..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let seg = Segmenter::new(&p, 1000).unwrap();
        let out = (0..seg.count())
            .map(|i| {
                let mut o = vec![0u8; 2000];
                let n = seg.write_segment(&p, i, &mut o).unwrap();
                o.truncate(n);
                o
            })
            .collect();
        (p, out)
    }

    /// What the kernel does with a NEEDS_CSUM packet: completes the checksum; then checks it.
    fn completed_checksum_ok(pkt: &[u8], vh: &VnetHdr) -> bool {
        let mut p = pkt.to_vec();
        gso::complete_checksum(&mut p, vh.csum_start, vh.csum_offset).unwrap();
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        let l4 = &p[20..];
        checksum::combine(&[
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, l4.len() as u16),
            checksum::data(l4),
        ]) == 0xffff
    }

    #[test]
    fn records_cut_a_train_into_segment_sized_pieces() {
        let buf = [0u8; 250];
        let lens: Vec<usize> = records(&buf, 100).map(<[u8]>::len).collect();
        assert_eq!(lens, [100, 100, 50]);
        assert_eq!(records(&buf, 0).count(), 1);
        assert_eq!(records(&[], 100).count(), 0);
    }

    #[test]
    fn consecutive_segments_become_one_super_packet() {
        let (orig, segs) = segments(3500);
        let mut m = TcpMerge::new();
        for s in &segs {
            assert!(m.push(s));
        }
        assert_eq!(m.count(), 4);
        let (vh, pkt) = m.take().unwrap();
        assert_eq!(vh.gso_type, gso::GSO_TCPV4);
        assert_eq!(vh.gso_size, 1000);
        assert_eq!(vh.hdr_len, 40);
        assert_eq!((vh.csum_start, vh.csum_offset), (20, 16));
        assert_eq!(pkt.len(), orig.len());
        let ip = Ipv4Packet::new_checked(pkt).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len() as usize, orig.len());
        assert_eq!(pkt[33], 0x18, "PSH of the last segment");
        assert_eq!(&pkt[40..], &orig[40..]);
        assert_eq!(
            &pkt[20..36],
            &orig[20..36],
            "ports, seq, ack, flags, window"
        );
        assert!(completed_checksum_ok(pkt, &vh));
        // The kernel's own segmentation gives back the director's segments.
        let seg = Segmenter::new(pkt, vh.gso_size).unwrap();
        for (i, s) in segs.iter().enumerate() {
            let mut o = vec![0u8; 2000];
            let n = seg.write_segment(pkt, i, &mut o).unwrap();
            assert_eq!(&o[..n], &s[..], "segment {i}");
        }
        assert!(m.take().is_none());
    }

    #[test]
    fn a_single_segment_comes_back_unchanged() {
        let (_, segs) = segments(500);
        let mut m = TcpMerge::new();
        assert!(m.push(&segs[0]));
        let (vh, pkt) = m.take().unwrap();
        assert_eq!(vh, VnetHdr::NONE);
        assert_eq!(pkt, &segs[0][..]);
    }

    #[test]
    fn gaps_other_flows_bad_checksums_and_control_segments_are_not_merged() {
        let (_, segs) = segments(3500);
        let mut m = TcpMerge::new();
        assert!(m.push(&segs[0]));
        // A gap (segment 2 without 1).
        assert!(!m.push(&segs[2]));
        // Another flow.
        let mut other = segs[1].clone();
        other[20] ^= 1;
        assert!(!m.push(&other));
        // A corrupted payload.
        let mut bad = segs[1].clone();
        bad[100] ^= 0xff;
        assert!(!m.push(&bad));
        assert!(m.push(&segs[1]));
        assert!(m.push(&segs[2]));
        assert!(m.push(&segs[3]));
        // Nothing after the short, PSH-carrying last segment.
        let (_, more) = segments(3500);
        assert!(!m.push(&more[0]));
        assert_eq!(m.take().unwrap().1.len(), 40 + 3500);
        // Nothing starts on a SYN, a fragment or a non-TCP packet.
        let syn = tcp_packet(CLIENT, 40000, VIP, 80, 0x02, 0);
        assert!(!m.push(&syn));
        let mut frag = segs[0].clone();
        frag[6] = 0x20;
        assert!(!m.push(&frag));
        assert!(!m.push(&[0x45, 0, 0]));
        assert!(m.take().is_none());
    }
}

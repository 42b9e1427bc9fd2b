//! The `virtio_net_hdr` a TUN device with `IFF_VNET_HDR` puts in front of every packet, and
//! software segmentation of the TCP/IPv4 and UDP/IPv4 super-packets (GRO/GSO, up to 64 KB) it
//! then hands out.
//!
//! - [`VnetHdr`] — parse and emit the 10-byte header (little-endian, as TUN uses on x86 and
//!   arm64 unless `TUNSETVNETBE` is set).
//! - [`complete_checksum`] — finish a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`: the
//!   field holds the pseudo-header sum, the sum over `csum_start..` is still to be added).
//! - [`partial_checksum`] — the pseudo-header sum a GSO packet written back into the TUN
//!   must carry after its addresses were rewritten (NAT).
//! - [`Segmenter`] — cuts a TCP/IPv4 super-packet into MSS-sized segments, or a UDP/IPv4 one
//!   (`GSO_UDP_L4`: UDP GRO forwarding) into its datagrams: per segment the IPv4 header (total
//!   length, ident + i, checksum) and the TCP header (sequence number, FIN and PSH only on the
//!   last, CWR only on the first, full checksum) or UDP header (length, full checksum) are
//!   written into a small buffer and the payload stays where it is, so a sender can go
//!   `[headers, payload]` without copying.
//! - [`fix_outer`] — adjusts an outer IPv4 (+ UDP, or + GRE with a checksum) header built for
//!   the whole super-packet to one segment ([`OuterTail`]: what follows the IPv4 header).
//!
//! Nothing here allocates or panics on untrusted bytes.

use core::ops::Range;

use super::checksum;
use super::IpProtocol;

/// Length of `struct virtio_net_hdr` (without `num_buffers`, which TUN leaves out by default).
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (see [`complete_checksum`]).
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (informational).
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`: an ordinary packet.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: a TCP/IPv4 super-packet.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UFO (IPv4 fragmentation offload, obsolete).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: a TCP/IPv6 super-packet.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: a UDP super-packet (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: OR-ed into `gso_type`; the first segment carries CWR.
pub const GSO_ECN: u8 = 0x80;

/// The longest IPv4 + TCP header pair a segment can have (60 + 60 bytes).
pub const MAX_SEGMENT_HEADER: usize = 120;

/// Why a virtio header or the super-packet behind it was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoError {
    /// Fewer than [`VNET_HDR_LEN`] bytes.
    Short,
    /// A `gso_type` this module does not know, or a GSO packet with `gso_size` 0.
    BadGsoType,
    /// `csum_start` / `csum_offset` point outside the packet.
    BadChecksumOffsets,
    /// The packet is not the TCP/IPv4 or UDP/IPv4 packet the header announces (bad IPv4,
    /// TCP or UDP header, a fragment, a total length beyond the data).
    NotTcpUdpIpv4,
}

impl core::fmt::Display for GsoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GsoError::Short => "virtio header shorter than 10 bytes",
            GsoError::BadGsoType => "unknown gso_type or gso_size 0",
            GsoError::BadChecksumOffsets => "csum_start/csum_offset outside the packet",
            GsoError::NotTcpUdpIpv4 => "GSO packet is not a valid TCP/IPv4 or UDP/IPv4 packet",
        })
    }
}

/// The fields of a `virtio_net_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers (IP + L4) of a GSO packet; a hint, not trusted.
    pub hdr_len: u16,
    /// Payload bytes per segment of a GSO packet (the MSS).
    pub gso_size: u16,
    /// Where the checksummed part starts (the L4 header) when `F_NEEDS_CSUM` is set.
    pub csum_start: u16,
    /// Where the checksum field sits, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// An all-zero header: no offload, an ordinary packet with complete checksums.
    pub const NONE: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads the first [`VNET_HDR_LEN`] bytes of `buf`. Checks only the header itself (a known
    /// `gso_type`, `gso_size` > 0 for GSO); [`check`](Self::check) relates it to the packet.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, GsoError> {
        let b: &[u8; VNET_HDR_LEN] = buf
            .get(..VNET_HDR_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(GsoError::Short)?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let h = VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        };
        match h.kind() {
            GSO_NONE => {}
            GSO_TCPV4 | GSO_TCPV6 | GSO_UDP | GSO_UDP_L4 if h.gso_size > 0 => {}
            _ => return Err(GsoError::BadGsoType),
        }
        Ok(h)
    }

    /// Writes the header into `out`.
    pub fn emit(&self, out: &mut [u8; VNET_HDR_LEN]) {
        out[0] = self.flags;
        out[1] = self.gso_type;
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    /// `gso_type` without the ECN bit.
    pub fn kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Whether the packet is a GSO super-packet.
    pub fn is_gso(&self) -> bool {
        self.kind() != GSO_NONE
    }

    /// Whether the L4 checksum is partial.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// Checks that a partial checksum's offsets lie inside `pkt` (the packet after the header).
    pub fn check(&self, pkt: &[u8]) -> Result<(), GsoError> {
        if self.needs_csum() {
            let end = usize::from(self.csum_start) + usize::from(self.csum_offset) + 2;
            if end > pkt.len() {
                return Err(GsoError::BadChecksumOffsets);
            }
        }
        Ok(())
    }
}

/// Finishes a partial checksum in place: the one's complement sum of `pkt[csum_start..]` (the
/// checksum field holds the pseudo-header sum and is included) is complemented and stored at
/// `csum_start + csum_offset`. A result of 0 is stored as `0xffff` (the same value in one's
/// complement, and what UDP requires).
pub fn complete_checksum(
    pkt: &mut [u8],
    csum_start: u16,
    csum_offset: u16,
) -> Result<(), GsoError> {
    let start = usize::from(csum_start);
    let at = start + usize::from(csum_offset);
    if at + 2 > pkt.len() {
        return Err(GsoError::BadChecksumOffsets);
    }
    let sum = checksum::data(&pkt[start..]);
    let c = !sum;
    let c = if c == 0 { 0xffff } else { c };
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The value the TCP or UDP checksum field of a partial-checksum (GSO) IPv4 packet holds: the
/// pseudo-header sum (addresses, the header's protocol, L4 length), not complemented. `ip` is
/// the IPv4 header. Returns `None` if it is too short.
pub fn partial_checksum(ip: &[u8], total_len: usize) -> Option<u16> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip.len() < 20 || ihl < 20 || total_len < ihl {
        return None;
    }
    let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = u16::try_from(total_len - ihl).ok()?;
    Some(checksum::pseudo_header_v4(src, dst, ip[9], l4))
}

/// Where the checksum field of an L4 header of protocol `proto` is (TCP 16, UDP 6).
pub fn l4_checksum_offset(proto: u8) -> Option<u16> {
    match proto {
        IpProtocol::TCP => Some(16),
        IpProtocol::UDP => Some(6),
        _ => None,
    }
}

/// Bytes of the fixed IPv6 header.
const IPV6_HEADER_LEN: usize = 40;

/// One segment [`Segmenter::segment`] described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Bytes of headers written (IPv4 + TCP or UDP).
    pub header_len: usize,
    /// The segment's payload: a range of the super-packet.
    pub payload: Range<usize>,
    /// The one's complement sum of the payload (not complemented), for outer checksums.
    pub payload_sum: u16,
}

/// How a TCP/IPv4 or UDP/IPv4 super-packet is cut into segments of at most `mss` payload
/// bytes (for UDP: datagrams of `mss` bytes, the `gso_size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segmenter {
    proto: u8,
    ihl: usize,
    header_len: usize,
    mss: usize,
    payload_len: usize,
    count: usize,
}

mod tcp_field {
    pub const SEQ: usize = 4;
    pub const FLAGS: usize = 13;
}

/// TCP flag bits in byte 13.
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

impl Segmenter {
    /// Plans the segmentation of `pkt` (an IPv4 packet, nothing in front) into segments of
    /// `mss` payload bytes. Refuses anything but an unfragmented TCP/IPv4 or UDP/IPv4 packet
    /// whose total length fits the data (bytes after it are ignored) and an `mss` of 0.
    pub fn new(pkt: &[u8], mss: u16) -> Result<Segmenter, GsoError> {
        let bad = GsoError::NotTcpUdpIpv4;
        if pkt.len() < 20 || mss == 0 {
            return Err(bad);
        }
        let (proto, ihl, total) = match pkt[0] >> 4 {
            4 => {
                let ihl = usize::from(pkt[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
                // MF set or a fragment offset: not a whole TCP segment.
                let frag = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff;
                if ihl < 20 || frag != 0 {
                    return Err(bad);
                }
                (pkt[9], ihl, total)
            }
            // IPv6 without extension headers (what the kernel's GSO hands a TUN).
            6 if pkt.len() >= IPV6_HEADER_LEN => {
                let plen = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
                (pkt[6], IPV6_HEADER_LEN, IPV6_HEADER_LEN + plen)
            }
            _ => return Err(bad),
        };
        if proto != IpProtocol::TCP && proto != IpProtocol::UDP {
            return Err(bad);
        }
        if total > pkt.len() {
            return Err(bad);
        }
        let l4_header = if proto == IpProtocol::UDP {
            8
        } else {
            let doff = usize::from(*pkt.get(ihl + 12).ok_or(bad)? >> 4) * 4;
            if doff < 20 {
                return Err(bad);
            }
            doff
        };
        let header_len = ihl + l4_header;
        if header_len > total {
            return Err(bad);
        }
        let payload_len = total - header_len;
        let mss = usize::from(mss);
        Ok(Segmenter {
            proto,
            ihl,
            header_len,
            mss,
            payload_len,
            count: payload_len.div_ceil(mss).max(1),
        })
    }

    /// How many segments.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The L4 protocol: TCP (6) or UDP (17).
    pub fn protocol(&self) -> u8 {
        self.proto
    }

    /// Bytes of IPv4 + TCP (or UDP) header in front of every segment's payload.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The IPv4 total length of the largest (the first) segment.
    pub fn max_segment_len(&self) -> usize {
        self.header_len + self.mss.min(self.payload_len)
    }

    /// Writes the IPv4 and TCP (or UDP) headers of segment `i` into `out` (at least
    /// [`header_len`](Self::header_len) bytes) and says where its payload is in `pkt`. `pkt`
    /// must be the packet [`new`](Self::new) planned; `None` if it is not or `i` is too large.
    ///
    /// IPv4: total length, ident + i, header checksum. TCP: sequence number + i × mss; FIN and
    /// PSH only on the last segment, CWR only on the first; the full checksum (pseudo-header,
    /// header, payload), whatever the super-packet's checksum field held. UDP: the length and
    /// the full checksum (0 sent as `0xffff`).
    pub fn segment(&self, pkt: &[u8], i: usize, out: &mut [u8]) -> Option<Segment> {
        if i >= self.count {
            return None;
        }
        let hl = self.header_len;
        let start = hl + i * self.mss;
        let end = (start + self.mss).min(hl + self.payload_len);
        let payload = pkt.get(start..end)?;
        let hdr = out.get_mut(..hl)?;
        hdr.copy_from_slice(pkt.get(..hl)?);
        let seg_len = u16::try_from(hl + payload.len()).ok()?;

        let (ip, l4) = hdr.split_at_mut(self.ihl);
        let v6 = ip[0] >> 4 == 6;
        if v6 {
            let plen = seg_len - IPV6_HEADER_LEN as u16;
            ip[4..6].copy_from_slice(&plen.to_be_bytes());
        } else {
            ip[2..4].copy_from_slice(&seg_len.to_be_bytes());
            let ident = u16::from_be_bytes([ip[4], ip[5]]).wrapping_add(i as u16);
            ip[4..6].copy_from_slice(&ident.to_be_bytes());
            ip[10..12].copy_from_slice(&[0, 0]);
            let ip_sum = !checksum::data(ip);
            ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        }

        let l4_len = u16::try_from(l4.len() + payload.len()).ok()?;
        if self.proto == IpProtocol::UDP {
            l4[4..6].copy_from_slice(&l4_len.to_be_bytes());
        } else {
            let seq_at = tcp_field::SEQ..tcp_field::SEQ + 4;
            let seq = u32::from_be_bytes(l4[seq_at.clone()].try_into().ok()?);
            let seq = seq.wrapping_add((i * self.mss) as u32);
            l4[seq_at].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < self.count {
                l4[tcp_field::FLAGS] &= !(FIN | PSH);
            }
            if i > 0 {
                l4[tcp_field::FLAGS] &= !CWR;
            }
        }
        let at = usize::from(l4_checksum_offset(self.proto)?);
        l4[at..at + 2].copy_from_slice(&[0, 0]);
        let payload_sum = checksum::data(payload);
        let pseudo = if v6 {
            let addr = |at: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[at..at + 16]);
                std::net::Ipv6Addr::from(a)
            };
            checksum::pseudo_header_v6(addr(8), addr(24), self.proto, u32::from(l4_len))
        } else {
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            checksum::pseudo_header_v4(src, dst, self.proto, l4_len)
        };
        let sum = !checksum::combine(&[pseudo, checksum::data(l4), payload_sum]);
        // UDP sends a computed 0 as 0xffff (0 means "no checksum"); TCP's 0 and 0xffff are
        // the same value in one's complement.
        let sum = if sum == 0 && self.proto == IpProtocol::UDP {
            0xffff
        } else {
            sum
        };
        l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        Some(Segment {
            header_len: hl,
            payload: start..end,
            payload_sum,
        })
    }

    /// Writes segment `i` whole (headers and payload) into `out`; returns its length, or
    /// `None` if `out` is too short (or as [`segment`](Self::segment)).
    pub fn write_segment(&self, pkt: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
        let seg = self.segment(pkt, i, out)?;
        let len = seg.header_len + seg.payload.len();
        out.get_mut(seg.header_len..len)?
            .copy_from_slice(pkt.get(seg.payload)?);
        Some(len)
    }
}

/// What follows an outer IPv4 header and changes with each segment: the sender knows it from
/// the tunnel it built the header for ([`crate::encap::Tunnel::outer_tail`]), nothing reads
/// it back from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OuterTail {
    /// Nothing (IPIP, GRE without a checksum).
    Plain,
    /// A UDP header (GUE): its length, and its checksum if `csum`.
    Udp {
        /// The UDP checksum is computed (else it is 0 and stays 0).
        csum: bool,
    },
    /// A GRE header with the checksum field (C bit) after its 4-byte base (RFC 2784).
    GreChecksum,
}

/// Adjusts outer headers built for a whole super-packet (`header`: IPv4, then what `tail`
/// says: the UDP header and what follows it, or the GRE header, as
/// [`encap::build_outer`](crate::encap::build_outer) makes them) to carry one segment of
/// `inner_len` bytes whose one's complement sum is `inner_sum`: IPv4 total length and header
/// checksum; for UDP the length, and the checksum when asked (a sender that asked for none
/// keeps none); for GRE with the C bit the checksum over the GRE header and the segment
/// (RFC 2784). Returns false if the header is not IPv4 or too short.
pub fn fix_outer(header: &mut [u8], tail: OuterTail, inner_len: usize, inner_sum: u16) -> bool {
    if header.len() < 20 || header[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(header[0] & 0x0f) * 4;
    let Ok(total) = u16::try_from(header.len() + inner_len) else {
        return false;
    };
    if ihl < 20 || ihl > header.len() {
        return false;
    }
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header[10..12].copy_from_slice(&[0, 0]);
    let sum = !checksum::data(&header[..ihl]);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    if let OuterTail::Udp { csum } = tail {
        let (ip, udp) = header.split_at_mut(ihl);
        if udp.len() < 8 {
            return false;
        }
        let udp_len = total - ihl as u16;
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        if csum {
            udp[6..8].copy_from_slice(&[0, 0]);
            let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            // `udp` (header + GUE) has an even length, so the inner sum adds unshifted.
            let sum = checksum::combine(&[
                checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, udp_len),
                checksum::data(udp),
                inner_sum,
            ]);
            let c = if !sum == 0 { 0xffff } else { !sum };
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }
    } else if tail == OuterTail::GreChecksum {
        // GRE with the C bit: the checksum field follows the 4-byte base header; the GRE
        // header (a multiple of 4 bytes) is the rest of `header`, so the inner sum adds
        // unshifted. As `encap::gre::fill_checksum`, which `wire` may not import.
        let gre = &mut header[ihl..];
        if gre.len() < 8 {
            return false;
        }
        gre[4..6].copy_from_slice(&[0, 0]);
        let c = !checksum::combine(&[checksum::data(gre), inner_sum]);
        gre[4..6].copy_from_slice(&c.to_be_bytes());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ipv4Packet, TcpPacket};
    use std::net::Ipv4Addr;

    /// A virtio header as TUN hands it out for a 3-segment TCP/IPv4 super-packet.
    static VNET_BYTES: [u8; 10] = [0x01, 0x81, 0x34, 0x00, 0xb4, 0x05, 0x14, 0x00, 0x10, 0x00];

    #[test]
    fn parse_fields() {
        let h = VnetHdr::parse(&VNET_BYTES).unwrap();
        assert_eq!(
            h,
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4 | GSO_ECN,
                hdr_len: 52,
                gso_size: 1460,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        assert!(h.is_gso() && h.needs_csum());
        assert_eq!(h.kind(), GSO_TCPV4);
        let mut out = [0u8; VNET_HDR_LEN];
        h.emit(&mut out);
        assert_eq!(out, VNET_BYTES);
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(VnetHdr::parse(&VNET_BYTES[..9]), Err(GsoError::Short));
        let mut b = VNET_BYTES;
        b[1] = 2; // no such gso_type
        assert_eq!(VnetHdr::parse(&b), Err(GsoError::BadGsoType));
        let mut b = VNET_BYTES;
        b[4] = 0;
        b[5] = 0; // GSO with gso_size 0
        assert_eq!(VnetHdr::parse(&b), Err(GsoError::BadGsoType));
        let h = VnetHdr::parse(&VNET_BYTES).unwrap();
        assert_eq!(h.check(&[0; 37]), Err(GsoError::BadChecksumOffsets));
        assert_eq!(h.check(&[0; 38]), Ok(()));
        assert_eq!(VnetHdr::parse(&[0; 10]), Ok(VnetHdr::NONE));
    }

    /// A TCP/IPv4 packet 10.0.0.1:40000 -> 10.0.0.2:80, DF, ident 0x1234, seq 1000, ack 1, flags
    /// as given, a 12-byte option block (NOP NOP timestamps), `payload_len` bytes of a pattern.
    /// Checksums left partial as TUN hands out a GSO packet: IPv4 complete, TCP = pseudo sum.
    fn super_packet(payload_len: usize, flags: u8) -> Vec<u8> {
        let total = 20 + 32 + payload_len;
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[1] = 0x02; // ECT(0)
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = IpProtocol::TCP;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = !checksum::data(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let t = &mut p[20..52];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[8..12].copy_from_slice(&1u32.to_be_bytes());
        t[12] = 8 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&502u16.to_be_bytes());
        t[20..24].copy_from_slice(&[1, 1, 8, 10]);
        for (i, b) in p[52..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let partial = partial_checksum(&p, total).unwrap();
        p[36..38].copy_from_slice(&partial.to_be_bytes());
        p
    }

    fn assert_valid_tcp(seg: &[u8]) {
        let ip = Ipv4Packet::new_checked(seg).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len() as usize, seg.len());
        let l4 = &seg[ip.header_len()..];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, l4.len() as u16),
            checksum::data(l4),
        ]);
        assert_eq!(sum, 0xffff, "TCP checksum does not verify");
    }

    #[test]
    fn segments_carry_the_right_headers_and_checksums() {
        // FIN|PSH|ACK|CWR on the super-packet: 3000 bytes at MSS 1400 -> 1400, 1400, 200.
        let p = super_packet(3000, FIN | PSH | 0x10 | CWR);
        let s = Segmenter::new(&p, 1400).unwrap();
        assert_eq!(
            (s.count(), s.header_len(), s.max_segment_len()),
            (3, 52, 1452)
        );
        let mut out = [0u8; 2048];
        let mut payload = Vec::new();
        for i in 0..3 {
            let len = s.write_segment(&p, i, &mut out).unwrap();
            let seg = &out[..len];
            assert_valid_tcp(seg);
            let ip = Ipv4Packet::new_checked(seg).unwrap();
            assert_eq!(ip.ident(), 0x1234 + i as u16);
            assert!(ip.dont_frag());
            assert_eq!(ip.dscp_ecn(), 0x02);
            let tcp = TcpPacket::new_checked(&seg[20..]).unwrap();
            assert_eq!(tcp.seq_number(), 1000 + 1400 * i as u32);
            assert_eq!(tcp.ack_number(), 1);
            assert_eq!(tcp.src_port(), 40000);
            // Byte-exact flags: CWR|ACK first, ACK middle, FIN|PSH|ACK last.
            assert_eq!(seg[33], [CWR | 0x10, 0x10, FIN | PSH | 0x10][i]);
            // The options are copied unchanged.
            assert_eq!(&seg[40..44], &[1, 1, 8, 10]);
            assert_eq!(len, [1452, 1452, 252][i]);
            payload.extend_from_slice(&seg[52..]);
        }
        assert_eq!(payload, &p[52..]);
        assert!(s.segment(&p, 3, &mut out).is_none());
    }

    #[test]
    fn ipv6_super_packets_are_cut_with_their_payload_lengths_and_checksums() {
        use std::net::Ipv6Addr;
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8:1::7".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        let mut p = crate::wire::testing::tcp6_packet(src, 40000, dst, 80, FIN | PSH | 0x10, 3000);
        for (i, b) in p[60..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let s = Segmenter::new(&p, 1400).unwrap();
        assert_eq!((s.count(), s.header_len()), (3, 60));
        let mut out = [0u8; 2048];
        let mut payload = Vec::new();
        for i in 0..3 {
            let len = s.write_segment(&p, i, &mut out).unwrap();
            let seg = &out[..len];
            assert_eq!(usize::from(u16::from_be_bytes([seg[4], seg[5]])), len - 40);
            assert_eq!(
                checksum::upper_layer_v6(src, dst, IpProtocol::TCP, &seg[40..]),
                0xffff,
                "segment {i}"
            );
            let tcp = TcpPacket::new_checked(&seg[40..]).unwrap();
            assert_eq!(tcp.seq_number(), 1000 + 1400 * i as u32);
            assert_eq!(seg[53], [0x10, 0x10, FIN | PSH | 0x10][i]);
            payload.extend_from_slice(&seg[60..]);
        }
        assert_eq!(payload, &p[60..]);
        // An IPv6 extension header in front of TCP: not cut here.
        let mut ext = p.clone();
        ext[6] = IpProtocol::HOPOPT;
        assert!(Segmenter::new(&ext, 1400).is_err());
    }

    #[test]
    fn zero_copy_segments_match_the_copied_ones() {
        let p = super_packet(2921, 0x10);
        let s = Segmenter::new(&p, 1460).unwrap();
        assert_eq!(s.count(), 3);
        for i in 0..3 {
            let mut hdr = [0u8; MAX_SEGMENT_HEADER];
            let seg = s.segment(&p, i, &mut hdr).unwrap();
            let mut whole = [0u8; 2048];
            let len = s.write_segment(&p, i, &mut whole).unwrap();
            assert_eq!(&whole[..seg.header_len], &hdr[..seg.header_len]);
            assert_eq!(&whole[seg.header_len..len], &p[seg.payload.clone()]);
            assert_eq!(seg.payload_sum, checksum::data(&p[seg.payload]));
        }
    }

    #[test]
    fn one_segment_or_no_payload_is_one_segment() {
        let p = super_packet(100, 0x18);
        let s = Segmenter::new(&p, 1460).unwrap();
        assert_eq!(s.count(), 1);
        let mut out = [0u8; 256];
        let len = s.write_segment(&p, 0, &mut out).unwrap();
        assert_eq!(&out[..len][..20], &p[..20]);
        assert_valid_tcp(&out[..len]);
        assert_eq!(out[33], 0x18, "PSH stays on the only segment");
        let p = super_packet(0, 0x10);
        assert_eq!(Segmenter::new(&p, 1460).unwrap().count(), 1);
    }

    #[test]
    fn non_tcp_fragments_and_short_packets_are_refused() {
        let p = super_packet(3000, 0x10);
        assert!(Segmenter::new(&p, 0).is_err());
        assert!(Segmenter::new(&p[..40], 1400).is_err());
        let mut q = p.clone();
        q[9] = IpProtocol::ICMP;
        assert!(Segmenter::new(&q, 1400).is_err());
        // UDP needs its 8-byte header inside the total length.
        let mut q = p[..26].to_vec();
        q[9] = IpProtocol::UDP;
        q[2..4].copy_from_slice(&26u16.to_be_bytes());
        assert!(Segmenter::new(&q, 1400).is_err());
        let mut q = p.clone();
        q[6] |= 0x20; // MF
        assert!(Segmenter::new(&q, 1400).is_err());
        let mut q = p.clone();
        q[32] = 0x40; // data offset 16 bytes
        assert!(Segmenter::new(&q, 1400).is_err());
        let mut q = p.clone();
        q[0] = 0x44;
        assert!(Segmenter::new(&q, 1400).is_err());
        // A too-small output buffer is refused, not a panic.
        let s = Segmenter::new(&p, 1400).unwrap();
        assert!(s.write_segment(&p, 0, &mut [0u8; 100]).is_none());
        assert!(s.segment(&p, 0, &mut [0u8; 51]).is_none());
        assert!(s.segment(&p[..100], 1, &mut [0u8; 120]).is_none());
    }

    /// A UDP super-packet as UDP GRO forwarding hands it over: one IPv4 + UDP header for all
    /// the datagrams' payloads back to back, the checksum field holding the pseudo-header sum.
    fn udp_super_packet(datagrams: usize, size: usize, last: usize) -> Vec<u8> {
        let payload_len = size * (datagrams - 1) + last;
        let mut p = crate::wire::testing::udp_packet(
            Ipv4Addr::new(10, 1, 0, 2),
            40000,
            Ipv4Addr::new(10, 100, 0, 100),
            443,
            payload_len,
        );
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = (i * 13 + 5) as u8;
        }
        let partial = partial_checksum(&p, p.len()).unwrap();
        p[26..28].copy_from_slice(&partial.to_be_bytes());
        p
    }

    fn assert_valid_udp(seg: &[u8]) {
        let ip = Ipv4Packet::new_checked(seg).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), seg.len());
        let udp = &seg[20..];
        assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
        assert_ne!(
            udp[6..8],
            [0, 0],
            "a computed UDP checksum is never sent as 0"
        );
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(
                ip.src_addr(),
                ip.dst_addr(),
                IpProtocol::UDP,
                udp.len() as u16,
            ),
            checksum::data(udp),
        ]);
        assert_eq!(sum, 0xffff, "UDP checksum");
    }

    #[test]
    fn a_udp_super_packet_is_cut_into_its_datagrams() {
        let p = udp_super_packet(5, 1200, 700);
        let s = Segmenter::new(&p, 1200).unwrap();
        assert_eq!(
            (s.protocol(), s.count(), s.header_len()),
            (IpProtocol::UDP, 5, 28)
        );
        assert_eq!(s.max_segment_len(), 1228);
        let mut joined = Vec::new();
        for i in 0..5 {
            let mut out = [0u8; 2000];
            let len = s.write_segment(&p, i, &mut out).unwrap();
            let seg = &out[..len];
            assert_eq!(len, 28 + if i == 4 { 700 } else { 1200 });
            assert_valid_udp(seg);
            // Ports, addresses, TTL and flags as in the super-packet; ident counts up.
            assert_eq!(seg[20..24], p[20..24]);
            assert_eq!(seg[6..10], p[6..10]);
            assert_eq!(seg[12..20], p[12..20]);
            let ident = u16::from_be_bytes([seg[4], seg[5]]);
            assert_eq!(
                ident,
                u16::from_be_bytes([p[4], p[5]]).wrapping_add(i as u16)
            );
            joined.extend_from_slice(&seg[28..]);
        }
        assert_eq!(
            joined,
            p[28..],
            "the datagrams' payloads are the super-packet's"
        );
        // The zero-copy form gives the same header and the payload's range.
        let mut hdr = [0u8; MAX_SEGMENT_HEADER];
        let seg = s.segment(&p, 1, &mut hdr).unwrap();
        assert_eq!((seg.header_len, seg.payload.clone()), (28, 1228..2428));
        assert_eq!(seg.payload_sum, checksum::data(&p[seg.payload]));
    }

    #[test]
    fn partial_checksums_follow_the_protocol() {
        let p = udp_super_packet(2, 100, 100);
        let want = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 1, 0, 2),
            Ipv4Addr::new(10, 100, 0, 100),
            IpProtocol::UDP,
            208,
        );
        assert_eq!(partial_checksum(&p, p.len()), Some(want));
        assert_eq!(l4_checksum_offset(IpProtocol::UDP), Some(6));
        assert_eq!(l4_checksum_offset(IpProtocol::TCP), Some(16));
        assert_eq!(l4_checksum_offset(IpProtocol::ICMP), None);
        // Completing the partial UDP checksum gives the whole datagram's checksum.
        let mut q = p.clone();
        complete_checksum(&mut q, 20, 6).unwrap();
        assert_valid_udp(&q);
    }

    #[test]
    fn completing_a_partial_checksum_gives_a_valid_packet() {
        let mut p = super_packet(333, 0x18);
        complete_checksum(&mut p, 20, 16).unwrap();
        assert_valid_tcp(&p);
        assert_eq!(
            complete_checksum(&mut p, 380, 16),
            Err(GsoError::BadChecksumOffsets)
        );
        assert_eq!(
            complete_checksum(&mut [0u8; 10], 0, 9),
            Err(GsoError::BadChecksumOffsets)
        );
    }

    #[test]
    fn outer_headers_follow_each_segment() {
        use crate::encap::{build_outer, OuterParams, Tunnel, MAX_OUTER_HEADER};
        let p = super_packet(3000, 0x10);
        let s = Segmenter::new(&p, 1400).unwrap();
        let tunnels = [
            Tunnel::Ipip,
            Tunnel::Gre {
                key: Some(5),
                csum: false,
            },
            Tunnel::Gre {
                key: None,
                csum: true,
            },
            Tunnel::Gre {
                key: Some(5),
                csum: true,
            },
            Tunnel::Gue {
                port: 6080,
                csum: false,
            },
            Tunnel::Gue {
                port: 6080,
                csum: true,
            },
        ];
        for tunnel in tunnels {
            let params = OuterParams {
                src: [192, 168, 1, 1].into(),
                dst: [192, 168, 1, 2].into(),
                tunnel,
                flow_hash: 7,
            };
            // Built once for the super-packet (its first segment's length, as the core does).
            let mut built = [0u8; MAX_OUTER_HEADER];
            let n = build_outer(&params, &p[..1452], &mut built).unwrap();
            for i in 0..s.count() {
                let mut whole = [0u8; 2048];
                let len = s.write_segment(&p, i, &mut whole).unwrap();
                // What build_outer makes for this segment alone ...
                let mut want = [0u8; MAX_OUTER_HEADER];
                assert_eq!(build_outer(&params, &whole[..len], &mut want), Ok(n));
                // ... equals the super-packet's outer header fixed up for it.
                let mut got = built;
                let mut hdr = [0u8; MAX_SEGMENT_HEADER];
                let seg = s.segment(&p, i, &mut hdr).unwrap();
                let inner_sum =
                    checksum::combine(&[checksum::data(&hdr[..seg.header_len]), seg.payload_sum]);
                assert!(fix_outer(
                    &mut got[..n],
                    tunnel.outer_tail(),
                    len,
                    inner_sum
                ));
                assert_eq!(got[..n], want[..n], "segment {i}, {tunnel:?}");
                // And the segment on the wire strips, its checksums verified.
                let mut wire = got[..n].to_vec();
                wire.extend_from_slice(&whole[..len]);
                if !matches!(tunnel, Tunnel::Gue { .. }) {
                    let (kind, key) = (tunnel.kind(), tunnel.gre_key());
                    let r = crate::encap::strip_ip(&wire, kind, key).unwrap();
                    assert_eq!(&wire[r.inner], &whole[..len]);
                }
            }
        }
        // A GRE checksum fixed for the wrong segment does not verify.
        let gre = OuterParams {
            src: [192, 168, 1, 1].into(),
            dst: [192, 168, 1, 2].into(),
            tunnel: Tunnel::Gre {
                key: None,
                csum: true,
            },
            flow_hash: 7,
        };
        let mut got = [0u8; MAX_OUTER_HEADER];
        let n = build_outer(&gre, &p[..1452], &mut got).unwrap();
        let mut whole = [0u8; 2048];
        let len = s.write_segment(&p, 1, &mut whole).unwrap();
        assert!(fix_outer(
            &mut got[..n],
            gre.tunnel.outer_tail(),
            len,
            0x1234
        ));
        let mut wire = got[..n].to_vec();
        wire.extend_from_slice(&whole[..len]);
        assert_eq!(
            crate::encap::strip_ip(&wire, crate::encap::TunnelType::Gre, None),
            Err(crate::encap::StripError::GreBadChecksum)
        );
        assert!(!fix_outer(&mut [0u8; 19], OuterTail::Plain, 10, 0));
        assert!(!fix_outer(&mut [0x60; 40], OuterTail::Plain, 10, 0));
        // GRE with the C bit but no room for the checksum field.
        let mut short = [0u8; 24];
        short[..n.min(24)].copy_from_slice(&got[..24]);
        assert!(!fix_outer(&mut short, OuterTail::GreChecksum, 10, 0));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x = 0x1234_5678u32;
        let mut buf = [0u8; 200];
        let mut out = [0u8; 300];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            buf[0] = 0x45 + (buf[0] & 1);
            buf[9] = IpProtocol::TCP;
            let len = (x as usize) % buf.len();
            let _ = VnetHdr::parse(&buf[..len]).map(|h| h.check(&buf[..len]));
            if let Ok(s) = Segmenter::new(&buf[..len], (x >> 8) as u16 % 300) {
                for i in 0..s.count().min(400) {
                    let _ = s.write_segment(&buf[..len], i, &mut out);
                }
            }
            let _ = complete_checksum(&mut buf[..len], x as u16 % 256, (x >> 16) as u16 % 64);
        }
    }
}

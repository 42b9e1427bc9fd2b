//! Fragmenting an outer datagram ourselves (RFC 791 section 3.2), for packets sent on an
//! `IP_HDRINCL` socket, where the kernel never fragments.
//!
//! When a client packet without DF no longer fits the tunnel MTU once encapsulated, Linux IPVS
//! sends it anyway and lets the kernel fragment the *outer* datagram (its DF follows the inner
//! DF). tunlb sends through a raw socket that refuses oversized datagrams with `EMSGSIZE`, so
//! [`fragment`] splits the datagram `[outer header, inner packet]` into pieces the driver sends
//! as `[fragment header, slice of the inner packet]` iovecs: nothing is allocated and the inner
//! packet is never copied.
//!
//! The fragment offsets count over the outer *payload*, which starts with the tunnel header (GRE,
//! or UDP + GUE), so the first fragment carries the whole outer header and later ones only an
//! IPv4 header. The receiving kernel reassembles the fragments before a raw socket or the GUE UDP
//! socket sees them. A GUE UDP header keeps the length (and checksum, if any) of the whole
//! datagram, which is what the receiver checks after reassembly.
//!
//! Every fragment of one datagram carries the same identification, which must differ from that
//! of any other datagram to the same real server still being reassembled: [`IdentSeq`] hands
//! out non-zero values from a range of its own to each worker thread.

use core::num::NonZeroU16;
use core::ops::Range;

use super::{MAX_OUTER_HEADER, MAX_OUTER_HEADER_V4};
use crate::wire::ipv4::HEADER_LEN;
use crate::wire::Ipv4Packet;

/// The smallest MTU an IPv4 link may have (RFC 791: every module forwards 68-byte datagrams).
pub const MIN_MTU: u16 = 68;

/// Why [`fragment`] refused to split a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum FragmentError {
    /// The MTU is below the IPv4 minimum of 68 bytes, so no fragment could be sent.
    #[error("MTU {0} is below the IPv4 minimum of 68")]
    MtuTooSmall(u16),
    /// The outer header is not an IPv4 header without options, followed by at most
    /// `MAX_OUTER_HEADER` bytes in all, whose total length is the header plus the inner packet.
    #[error("the outer header is not a plain IPv4 header matching the inner length")]
    BadHeader,
    /// The outer header has Don't Fragment set.
    #[error("the outer header has DF set")]
    DontFragment,
    /// The outer header already is a fragment (MF set or a non-zero offset).
    #[error("the outer header already is a fragment")]
    AlreadyFragment,
}

/// One piece of a fragmented datagram: send `header()` followed by `inner` of the inner packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The fragment's headers: the whole outer header (IPv4 + tunnel) for the first fragment,
    /// an IPv4 header alone for the others.
    pub header: [u8; MAX_OUTER_HEADER],
    /// How many bytes of `header` are used.
    pub header_len: usize,
    /// The bytes of the inner packet this fragment carries after its header.
    pub inner: Range<usize>,
}

impl Fragment {
    /// The header bytes.
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len]
    }
}

/// Splits the datagram `outer` + `inner_len` bytes of inner packet into fragments of at most
/// `mtu` bytes, all with identification `ident`.
///
/// `outer` is a header as [`build_outer`](super::build_outer) writes it: a 20-byte IPv4 header
/// (DF clear, not a fragment, total length `outer.len() + inner_len`) followed by the tunnel
/// header, if any. Each fragment but the last carries `(mtu - 20) & !7` bytes of the outer payload;
/// all get their own total length, MF (set on all but the last), offset, and header checksum.
/// A datagram that fits in `mtu` comes out as a single piece: itself with `ident` filled in.
///
/// The returned iterator computes each fragment when asked and knows how many remain
/// ([`ExactSizeIterator::len`]), so a caller can refuse a datagram that needs too many.
pub fn fragment(
    outer: &[u8],
    inner_len: usize,
    mtu: u16,
    ident: NonZeroU16,
) -> Result<Fragments<'_>, FragmentError> {
    if mtu < MIN_MTU {
        return Err(FragmentError::MtuTooSmall(mtu));
    }
    if outer.len() < HEADER_LEN || outer.len() > MAX_OUTER_HEADER_V4 {
        return Err(FragmentError::BadHeader);
    }
    let ip = Ipv4Packet::new_unchecked(outer);
    if ip.version() != 4
        || ip.header_len() != HEADER_LEN
        || ip.total_len() as usize != outer.len() + inner_len
    {
        return Err(FragmentError::BadHeader);
    }
    if ip.dont_frag() {
        return Err(FragmentError::DontFragment);
    }
    if ip.is_fragment() {
        return Err(FragmentError::AlreadyFragment);
    }
    // With mtu >= 68 a fragment carries at least 48 bytes, more than any tunnel header
    // (outer.len() - 20 <= MAX_OUTER_HEADER_V4 - 20 = 48), so the first fragment always holds
    // it whole.
    let chunk = (mtu as usize - HEADER_LEN) & !7;
    Ok(Fragments {
        outer,
        tunnel_len: outer.len() - HEADER_LEN,
        payload_len: outer.len() - HEADER_LEN + inner_len,
        chunk,
        next: Some(0),
        ident: ident.get(),
    })
}

/// The fragments of one datagram, in order (see [`fragment`]).
#[derive(Clone, Debug)]
pub struct Fragments<'a> {
    /// IPv4 header + tunnel header.
    outer: &'a [u8],
    /// Bytes of tunnel header after the IPv4 header (0 for IPIP).
    tunnel_len: usize,
    /// The outer payload: tunnel header + inner packet.
    payload_len: usize,
    /// Payload bytes per fragment but the last (a multiple of 8).
    chunk: usize,
    /// Payload offset of the next fragment, `None` once the last was given.
    next: Option<usize>,
    ident: u16,
}

impl Iterator for Fragments<'_> {
    type Item = Fragment;

    fn next(&mut self) -> Option<Fragment> {
        let start = self.next?;
        let end = (start + self.chunk).min(self.payload_len);
        let more = end < self.payload_len;
        self.next = more.then_some(end);

        let mut header = [0u8; MAX_OUTER_HEADER];
        let header_len = if start == 0 {
            self.outer.len()
        } else {
            HEADER_LEN
        };
        header[..header_len].copy_from_slice(&self.outer[..header_len]);
        let mut ip = Ipv4Packet::new_unchecked(&mut header[..HEADER_LEN]);
        // Lengths fit 16 bits: the total length field held outer + inner.
        ip.set_total_len((HEADER_LEN + end - start) as u16);
        ip.set_ident(self.ident);
        ip.set_flags_and_frag_offset(false, more, start as u16);
        ip.fill_checksum();
        // The payload starts with the tunnel header, which only the first fragment carries.
        let inner = start.saturating_sub(self.tunnel_len)..end - self.tunnel_len;
        Some(Fragment {
            header,
            header_len,
            inner,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self.next {
            None => 0,
            Some(start) => (self.payload_len - start).div_ceil(self.chunk).max(1),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Fragments<'_> {}

/// Identifications for fragmented datagrams: non-zero, wrapping, and disjoint between the
/// workers of one director, so two workers never fragment two datagrams with the same
/// identification at once.
///
/// Worker `w` of `n` hands out `1 + w + n * k` for `k = 0, 1, ...` up to the largest value that
/// fits 16 bits, then starts over (about `65535 / n` datagrams per cycle).
#[derive(Clone, Debug)]
pub struct IdentSeq {
    base: u16,
    step: u16,
    k: u16,
    per_cycle: u16,
}

impl IdentSeq {
    /// The sequence of worker `worker` out of `workers` (at least 1, at most 65535;
    /// `worker` is taken modulo `workers`).
    pub fn new(worker: usize, workers: usize) -> IdentSeq {
        let step = workers.clamp(1, u16::MAX as usize) as u16;
        IdentSeq {
            base: 1 + (worker % step as usize) as u16,
            step,
            k: 0,
            per_cycle: u16::MAX / step,
        }
    }

    /// The next identification.
    pub fn next_ident(&mut self) -> NonZeroU16 {
        // base + step * k <= step * per_cycle <= 65535.
        let v = self.base + self.step * self.k;
        self.k = (self.k + 1) % self.per_cycle;
        NonZeroU16::new(v).unwrap_or(NonZeroU16::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{params_for, EVERY_TUNNEL};
    use super::super::{build_outer, overhead, strip_gue, strip_ip, Tunnel, DEFAULT_GUE_PORT};
    use super::*;
    use crate::wire::checksum::tests::Rng;
    use crate::wire::testing::udp_packet;
    use crate::wire::UdpPacket;
    use std::net::Ipv4Addr;

    const ID: NonZeroU16 = match NonZeroU16::new(0x1234) {
        Some(id) => id,
        None => unreachable!(),
    };

    /// A UDP packet 10.0.0.1:40000 -> 10.0.0.100:53 with `payload` bytes (0, 1, 2, ...) and
    /// DF clear.
    fn inner_packet(payload: usize) -> Vec<u8> {
        let mut p = udp_packet(
            Ipv4Addr::new(10, 0, 0, 1),
            40000,
            Ipv4Addr::new(10, 0, 0, 100),
            53,
            payload,
        );
        for (i, b) in p[28..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_flags_and_frag_offset(false, false, 0);
        ip.fill_checksum();
        p
    }

    const GRE: Tunnel = Tunnel::Gre {
        key: None,
        csum: false,
    };

    const GRE_CSUM: Tunnel = Tunnel::Gre {
        key: None,
        csum: true,
    };

    const fn gue(csum: bool) -> Tunnel {
        Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum,
        }
    }

    /// The outer header for `inner` (DF clear) with the test params.
    fn outer_for(tun: Tunnel, inner: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_OUTER_HEADER];
        let n = build_outer(&params_for(tun), inner, &mut out).unwrap();
        out[..n].to_vec()
    }

    /// The datagram a fragment puts on the wire.
    fn wire(f: &Fragment, inner: &[u8]) -> Vec<u8> {
        let mut w = f.header().to_vec();
        w.extend_from_slice(&inner[f.inner.clone()]);
        w
    }

    /// Reassembles fragments as a receiver does (RFC 791 / RFC 815): every fragment's header is
    /// checked, its data placed at its offset; the result is the first fragment's IPv4 header
    /// with MF and offset cleared, total length and checksum recomputed, and the whole payload.
    fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![None; 65_536];
        let mut last_end = None;
        let mut first_header = None;
        for f in frags {
            let ip = Ipv4Packet::new_checked(&f[..]).expect("a valid IPv4 fragment");
            assert_eq!(ip.total_len() as usize, f.len());
            assert!(ip.verify_checksum(), "fragment header checksum");
            assert_eq!(ip.ident(), ID.get());
            assert!(!ip.dont_frag());
            let off = ip.frag_offset() as usize;
            if off == 0 {
                first_header = Some(f[..20].to_vec());
            }
            let data = ip.payload();
            if ip.more_frags() {
                assert_eq!(
                    data.len() % 8,
                    0,
                    "non-last fragment data is a multiple of 8"
                );
            } else {
                assert!(last_end.is_none(), "two last fragments");
                last_end = Some(off + data.len());
            }
            for (i, b) in data.iter().enumerate() {
                assert!(payload[off + i].is_none(), "overlap at {}", off + i);
                payload[off + i] = Some(*b);
            }
        }
        let end = last_end.expect("a last fragment");
        let mut out = first_header.expect("a first fragment");
        for (i, b) in payload[..end].iter().enumerate() {
            out.push(b.unwrap_or_else(|| panic!("hole at payload byte {i}")));
        }
        let total = out.len() as u16;
        let mut ip = Ipv4Packet::new_unchecked(&mut out[..]);
        ip.set_total_len(total);
        ip.set_ident(0);
        ip.set_flags_and_frag_offset(false, false, 0);
        ip.fill_checksum();
        out
    }

    /// Splits `inner` behind a `tun` header at `mtu`, checks every fragment, reassembles them
    /// and compares with the unfragmented datagram. Returns the fragments' wire bytes.
    fn split_and_reassemble(tun: Tunnel, inner: &[u8], mtu: u16) -> Vec<Vec<u8>> {
        let outer = outer_for(tun, inner);
        let frags: Vec<Fragment> = fragment(&outer, inner.len(), mtu, ID).unwrap().collect();
        let wires: Vec<Vec<u8>> = frags.iter().map(|f| wire(f, inner)).collect();
        for (i, (f, w)) in frags.iter().zip(&wires).enumerate() {
            assert!(
                w.len() <= mtu as usize,
                "fragment {i} is {} > {mtu}",
                w.len()
            );
            let expect_len = if i == 0 { outer.len() } else { 20 };
            assert_eq!(f.header_len, expect_len, "fragment {i} header");
            // Inner ranges are contiguous and in order.
            if i > 0 {
                assert_eq!(frags[i - 1].inner.end, f.inner.start);
            }
        }
        assert_eq!(frags[0].inner.start, 0);
        assert_eq!(frags.last().unwrap().inner.end, inner.len());

        let mut whole = outer.clone();
        whole.extend_from_slice(inner);
        assert_eq!(reassemble(&wires), whole, "{tun:?} at mtu {mtu}");
        // And the reassembled datagram strips back to the inner packet (checksums verified:
        // they were computed over the whole datagram before it was cut).
        let s = match tun {
            Tunnel::Gue { .. } => {
                let udp = UdpPacket::new_checked(&whole[20..]).unwrap();
                assert!(udp.verify_checksum(params_for(tun).src, params_for(tun).dst));
                strip_gue(udp.payload()).map(|r| r.start + 28..r.end + 28)
            }
            _ => strip_ip(&whole, tun.kind(), tun.gre_key()).map(|s| s.inner),
        }
        .unwrap();
        assert_eq!(&whole[s], inner);
        wires
    }

    /// GRE (no key), inner UDP packet of 100 bytes, MTU 68: 48 payload bytes per fragment, so
    /// 104 payload bytes (4 GRE + 100 inner) make fragments of 48, 48 and 8.
    static GRE_FRAGMENT_HEADERS: [[u8; 20]; 3] = [
        [
            0x45, 0x00, 0x00, 0x44, 0x12, 0x34, 0x20, 0x00, 0x40, 0x2f, 0xc4, 0xfb, //
            0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a,
        ],
        [
            0x45, 0x00, 0x00, 0x44, 0x12, 0x34, 0x20, 0x06, 0x40, 0x2f, 0xc4, 0xf5, //
            0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a,
        ],
        [
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x0c, 0x40, 0x2f, 0xe5, 0x17, //
            0xc0, 0xa8, 0x01, 0x01, 0xc0, 0xa8, 0x01, 0x0a,
        ],
    ];

    #[test]
    fn gre_fragments_match_bytes() {
        let inner = inner_packet(72);
        assert_eq!(inner.len(), 100);
        let wires = split_and_reassemble(GRE, &inner, 68);
        assert_eq!(wires.len(), 3);
        for (w, expect) in wires.iter().zip(&GRE_FRAGMENT_HEADERS) {
            assert_eq!(&w[..20], expect);
        }
        // The first fragment carries the GRE header (version 0, protocol 0x0800), then 44
        // inner bytes; the others 48 and 8 inner bytes.
        assert_eq!(&wires[0][20..24], &[0x00, 0x00, 0x08, 0x00]);
        assert_eq!(&wires[0][24..], &inner[..44]);
        assert_eq!(&wires[1][20..], &inner[44..92]);
        assert_eq!(&wires[2][20..], &inner[92..]);
    }

    /// GRE with checksum: the checksum is computed once over the whole GRE payload before
    /// the outer datagram is cut, so it rides in the first fragment only and verifies on the
    /// reassembled datagram (the receiver reassembles before it looks at GRE).
    #[test]
    fn gre_checksum_is_over_the_whole_datagram_and_rides_in_the_first_fragment() {
        let inner = inner_packet(72);
        let wires = split_and_reassemble(GRE_CSUM, &inner, 68);
        // 108 payload bytes (8 GRE + 100 inner) in fragments of 48, 48 and 12.
        assert_eq!(wires.len(), 3);
        assert_eq!(&wires[0][20..24], &[0x80, 0x00, 0x08, 0x00]);
        let whole: Vec<u8> = outer_for(GRE_CSUM, &inner)[20..]
            .iter()
            .chain(&inner)
            .copied()
            .collect();
        assert_eq!(crate::wire::checksum::data(&whole), 0xffff);
        assert_eq!(&wires[0][24..26], &whole[4..6]);
        assert_eq!(&wires[0][28..], &inner[..40]);
        // A fragment alone does not verify: it is not where the checksum is judged.
        let first = crate::wire::Ipv4Packet::new_checked(&wires[0][..]).unwrap();
        assert_ne!(crate::wire::checksum::data(first.payload()), 0xffff);
    }

    #[test]
    fn gue_packet_of_1500_bytes_splits_and_reassembles() {
        let inner = inner_packet(1472);
        assert_eq!(inner.len(), 1500);
        for udp_csum in [false, true] {
            let wires = split_and_reassemble(gue(udp_csum), &inner, 1500);
            // 1512 payload bytes: 1480 + 32.
            assert_eq!(wires.len(), 2);
            assert_eq!(wires[0].len(), 1500);
            assert_eq!(wires[1].len(), 20 + 32);
            // The UDP header in the first fragment keeps the whole datagram's length.
            assert_eq!(
                u16::from_be_bytes([wires[0][24], wires[0][25]]) as usize,
                8 + 4 + 1500
            );
        }
    }

    #[test]
    fn every_tunnel_and_many_mtus_reassemble() {
        let mut rng = Rng(21);
        for tun in EVERY_TUNNEL {
            for _ in 0..30 {
                let inner = inner_packet(rng.below(3000));
                let mtu = 68 + rng.below(1500) as u16;
                split_and_reassemble(tun, &inner, mtu);
            }
        }
    }

    #[test]
    fn a_datagram_that_fits_is_one_piece_with_the_ident() {
        for tun in EVERY_TUNNEL {
            let inner = inner_packet(1500 - 28 - overhead(&tun));
            let outer = outer_for(tun, &inner);
            assert_eq!(outer.len() + inner.len(), 1500);
            let frags = fragment(&outer, inner.len(), 1500, ID).unwrap();
            assert_eq!(frags.len(), 1);
            let only: Vec<Fragment> = frags.collect();
            assert_eq!(only[0].inner, 0..inner.len());
            let w = wire(&only[0], &inner);
            let ip = Ipv4Packet::new_checked(&w[..]).unwrap();
            assert!(!ip.is_fragment() && ip.verify_checksum());
            assert_eq!(ip.ident(), ID.get());
            let mut expect = outer.clone();
            expect[4..6].copy_from_slice(&ID.get().to_be_bytes());
            Ipv4Packet::new_unchecked(&mut expect[..]).fill_checksum();
            assert_eq!(only[0].header(), &expect[..]);
            // One byte more needs two fragments.
            let inner = inner_packet(1500 - 28 - overhead(&tun) + 1);
            let wires = split_and_reassemble(tun, &inner, 1500);
            assert_eq!(wires.len(), 2);
        }
    }

    #[test]
    fn len_counts_the_fragments_left() {
        let inner = inner_packet(1000);
        let outer = outer_for(gue(false), &inner);
        let mut frags = fragment(&outer, inner.len(), 100, ID).unwrap();
        // 12 + 1028 payload bytes in fragments of 80.
        let mut expect = 1040usize.div_ceil(80);
        assert_eq!(frags.len(), expect);
        while frags.next().is_some() {
            expect -= 1;
            assert_eq!(frags.len(), expect);
        }
        assert_eq!(frags.len(), 0);
        assert!(frags.next().is_none());
    }

    #[test]
    fn tiny_mtus_are_refused() {
        let inner = inner_packet(100);
        let outer = outer_for(gue(false), &inner);
        for mtu in [0, 1, 20, 28, 52, 67] {
            assert_eq!(
                fragment(&outer, inner.len(), mtu, ID).map(|f| f.len()),
                Err(FragmentError::MtuTooSmall(mtu)),
            );
        }
        // 68 is the smallest valid MTU: 48 bytes of payload per fragment.
        let wires = split_and_reassemble(gue(false), &inner, 68);
        assert_eq!(wires.len(), (12 + 128usize).div_ceil(48));
        assert_eq!(
            FragmentError::MtuTooSmall(60).to_string(),
            "MTU 60 is below the IPv4 minimum of 68"
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        let inner = inner_packet(100);
        let outer = outer_for(GRE, &inner);
        let n = inner.len();
        let bad = |o: &[u8], n: usize| fragment(o, n, 576, ID).map(|f| f.len());
        assert_eq!(bad(&outer[..19], n), Err(FragmentError::BadHeader));
        assert_eq!(bad(&outer, n + 1), Err(FragmentError::BadHeader));
        assert_eq!(bad(&[0x45; 33], n), Err(FragmentError::BadHeader));
        let mut v6 = outer.clone();
        v6[0] = 0x65;
        assert_eq!(bad(&v6, n), Err(FragmentError::BadHeader));
        let mut options = outer.clone();
        options[0] = 0x46;
        assert_eq!(bad(&options, n), Err(FragmentError::BadHeader));
        let mut df = outer.clone();
        df[6] = 0x40;
        assert_eq!(bad(&df, n), Err(FragmentError::DontFragment));
        let mut mf = outer.clone();
        mf[6] = 0x20;
        assert_eq!(bad(&mf, n), Err(FragmentError::AlreadyFragment));
        let mut off = outer.clone();
        off[7] = 1;
        assert_eq!(bad(&off, n), Err(FragmentError::AlreadyFragment));
        assert_eq!(bad(&outer, n), Ok(1));
    }

    #[test]
    fn largest_datagram_splits_within_the_offset_field() {
        let inner_len = 65_535 - 32;
        let mut inner = inner_packet(inner_len - 28);
        inner.truncate(inner_len);
        let wires = split_and_reassemble(gue(false), &inner, 68);
        assert_eq!(wires.len(), (65_535usize - 20).div_ceil(48));
    }

    #[test]
    fn ident_sequences_are_non_zero_wrapping_and_disjoint() {
        let mut seen = std::collections::HashSet::new();
        for w in 0..3 {
            let mut s = IdentSeq::new(w, 3);
            let first = s.next_ident();
            assert_eq!(first.get() as usize, 1 + w);
            assert!(seen.insert(first.get()));
            for _ in 1..(65_535 / 3) {
                assert!(
                    seen.insert(s.next_ident().get()),
                    "worker {w} repeats a value"
                );
            }
            // A full cycle later the sequence starts over.
            assert_eq!(s.next_ident(), first);
        }
        assert_eq!(seen.len(), 65_535);
        let mut one = IdentSeq::new(0, 1);
        assert_eq!(one.next_ident().get(), 1);
        for _ in 0..65_533 {
            one.next_ident();
        }
        assert_eq!(one.next_ident().get(), 65_535);
        assert_eq!(one.next_ident().get(), 1);
        // Degenerate arguments still give non-zero values.
        assert_eq!(IdentSeq::new(5, 0).next_ident().get(), 1);
        assert_eq!(IdentSeq::new(7, 4).next_ident().get(), 4);
    }
}

//! Tunnels over an IPv6 underlay (RFC 2473 and its GRE and UDP cousins): the outer header is
//! IPv6, the inner packet IPv4 or IPv6.
//!
//! | tunnel | outer next header | tunnel header | inner IPv4 | inner IPv6 |
//! |--------|-------------------|---------------|------------|------------|
//! | `ipip` | 4 or 41           | none          | 4 (4in6)   | 41 (ip6ip6)|
//! | `gre`  | 47                | GRE           | 0x0800     | 0x86DD     |
//! | `gue`  | 17                | UDP + GUE     | Proto 4    | Proto 41   |
//!
//! The outer header ([`OuterParams6`]): hop limit as given; traffic class copied from the
//! inner DSCP + ECN (IPv4 TOS or IPv6 traffic class), as Linux `ip6_tunnel` does with
//! `dsfield inherit` and IPVS does for its IPv4 tunnels (ECN copied whole: the decapsulator
//! is tunlb's agent, which hands the inner packet on as it is), or a fixed value; flow label
//! from the inner flow's hash (RFC 6438: 20 bits, never 0, so ECMP on the underlay spreads
//! flows while keeping each one on a path). No extension headers.
//!
//! UDP over IPv6 carries a checksum (RFC 8200 §8.1), computed by default whatever the tunnel's
//! `csum` option: one sum over the inner packet (the same sum a GRE checksum would need, never
//! both). A zero checksum (RFC 6935/6936) only where both ends opt in with
//! [`Udp6Zero::Allowed`]: the director then sends 0 unless the tunnel asks for `csum`, and the
//! agent accepts 0.
//!
//! Second chance ([`super::chance`]) names an IPv4 real server and is IPv4-underlay only: the
//! IPv6 builder has no second-chance parameter, so no IPv6 packet can carry one.
//!
//! Outer fragmentation ([`fragment6`]) splits a datagram whose inner packet is IPv4 without DF
//! (or IPv6 no longer than 1280 bytes, RFC 2473 §7.1) with a fragment header; otherwise the
//! core answers with Packet Too Big / fragmentation needed advertising [`inner_mtu`].

use core::num::NonZeroU32;
use core::ops::Range;
use std::net::Ipv6Addr;

use super::outer6;
use super::{
    auth, gre, gue, inner_at, ipip, offset, overhead_full, BuildError, Family, FragmentError,
    GreChecksum, Inner, StripError, Tail, Tunnel, TunnelType, IPV6_MIN_MTU, MAX_OUTER_HEADER,
};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr, HEADER_LEN};
use crate::wire::{self, checksum, IpProtocol, Ipv4Packet, UdpPacket};

/// Length of the fragment header (RFC 8200 §4.5).
const FRAG_HEADER_LEN: usize = 8;

/// The family of the outer header (the underlay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OuterFamily {
    /// IPv4 outer header ([`super::build_outer`]).
    Ipv4,
    /// IPv6 outer header ([`build_outer6`]).
    Ipv6,
}

/// The outer traffic class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TrafficClass {
    /// Copy the inner DSCP and ECN (IPv4 TOS or IPv6 traffic class): the default, as the
    /// IPv4 builder does.
    #[default]
    CopyInner,
    /// This value, whatever the inner packet says.
    Fixed(u8),
}

/// Whether a zero UDP checksum over IPv6 (RFC 6935/6936) is in use on a tunnel. Both ends must
/// agree: the director sends 0 only when allowed, the agent accepts 0 only when allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Udp6Zero {
    /// Never: every GUE datagram over IPv6 carries a computed checksum (RFC 8200).
    #[default]
    Never,
    /// Allowed: a GUE tunnel without `csum` sends 0, and 0 is accepted.
    Allowed,
}

/// Everything [`build_outer6`] needs besides the inner packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterParams6 {
    /// Outer source: the director's tunnel address.
    pub src: Ipv6Addr,
    /// Outer destination: the real server.
    pub dst: Ipv6Addr,
    /// Which tunnel, with its options.
    pub tunnel: Tunnel,
    /// A hash of the inner flow: the flow label ([`flow_label`]) and the GUE source port.
    pub flow_hash: u32,
    /// The hop limit ([`super::OUTER_TTL`] usually).
    pub hop_limit: u8,
    /// The traffic class.
    pub traffic_class: TrafficClass,
    /// Zero UDP checksums (GUE only).
    pub udp_zero: Udp6Zero,
}

/// The RFC 6438 flow label of a flow: 20 bits of its hash (the high bits folded onto the low
/// ones), never 0 (0 means "no label").
pub const fn flow_label(flow_hash: u32) -> u32 {
    let l = (flow_hash ^ (flow_hash >> 20)) & 0xf_ffff;
    if l == 0 {
        1
    } else {
        l
    }
}

/// Bytes of outer header a tunnel adds over IPv6: 40 for IPIP, 44-52 GRE, 52 GUE (+ 28 with
/// the authentication option when `authed`).
pub const fn overhead6(tunnel: &Tunnel, authed: bool) -> usize {
    HEADER_LEN + overhead_full(tunnel, authed, false) - wire::ipv4::HEADER_LEN
}

/// The MTU to advertise for inner packets of `inner` family (in ICMP "fragmentation needed"
/// or ICMPv6 Packet Too Big) on a tunnel of `tunnel_mtu` over an `outer` underlay: the tunnel
/// MTU less the outer overhead (with the authentication option when `authed`, the
/// second-chance field when `chance`, IPv4 underlay only), never below 68 for IPv4 and never
/// below 1280 for IPv6 (an IPv6 packet up to 1280 bytes is carried anyway, the outer datagram
/// fragmented: RFC 2473 §7.1).
pub fn inner_mtu(
    tunnel_mtu: u16,
    outer: OuterFamily,
    inner: Family,
    tunnel: &Tunnel,
    authed: bool,
    chance: bool,
) -> u16 {
    let over = match outer {
        OuterFamily::Ipv4 => overhead_full(tunnel, authed, chance),
        OuterFamily::Ipv6 => overhead6(tunnel, authed),
    };
    let mtu = (tunnel_mtu as usize).saturating_sub(over) as u16;
    match inner {
        Family::Ipv4 => mtu.max(super::fragment::MIN_MTU),
        Family::Ipv6 => mtu.max(IPV6_MIN_MTU),
    }
}

/// Builds an IPv6 outer header (+ GRE, or + UDP + GUE) for `inner` (an IPv4 or IPv6 packet,
/// told by its version nibble) into `out`; returns its length ([`overhead6`]). For a GUE
/// tunnel with a `seal`, the GUE header carries the authentication option, its MAC over the
/// IPv6 addresses ([`auth::OuterAddrs::V6`]); other tunnels ignore `seal`. See the module
/// documentation for the header fields.
pub fn build_outer6(
    p: &OuterParams6,
    inner: &[u8],
    seal: Option<&auth::Seal<'_>>,
    out: &mut [u8; MAX_OUTER_HEADER],
) -> Result<usize, BuildError> {
    let family = Family::of(inner).ok_or(BuildError::InnerNotIp)?;
    let tc = match (p.traffic_class, family) {
        (TrafficClass::Fixed(tc), _) => tc,
        (TrafficClass::CopyInner, Family::Ipv4) => inner[1],
        (TrafficClass::CopyInner, Family::Ipv6) => Ipv6Packet::new_unchecked(inner).traffic_class(),
    };
    let seal = seal.filter(|_| matches!(p.tunnel, Tunnel::Gue { .. }));
    let hdr_len = overhead6(&p.tunnel, seal.is_some());
    let payload_len = hdr_len - HEADER_LEN + inner.len();
    if payload_len > u16::MAX as usize {
        return Err(BuildError::TooBig);
    }
    let proto = super::outer_protocol(&p.tunnel, family);
    Ipv6Repr {
        src: p.src,
        dst: p.dst,
        next_header: proto,
        hop_limit: p.hop_limit,
        traffic_class: tc,
        flow_label: flow_label(p.flow_hash),
        payload_len,
    }
    .emit(&mut out[..])
    .map_err(|_| BuildError::TooBig)?;
    let udp_csum = match p.tunnel {
        Tunnel::Gue { csum, .. } => csum || p.udp_zero == Udp6Zero::Never,
        _ => false,
    };
    let tail = Tail {
        tunnel: p.tunnel,
        family,
        addrs: auth::OuterAddrs::V6(p.src, p.dst),
        seal,
        field: None,
        flow_hash: p.flow_hash,
        udp_len: payload_len as u16,
        udp_pseudo: udp_csum
            .then(|| checksum::pseudo_header_v6(p.src, p.dst, IpProtocol::UDP, payload_len as u32)),
    };
    tail.emit(&mut out[HEADER_LEN..], inner)?;
    Ok(hdr_len)
}

/// What [`strip_ip6`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stripped6 {
    /// Outer source: the director that sent it (check it against an allow-list).
    pub outer_src: Ipv6Addr,
    /// Outer destination: this real server's tunnel address.
    pub outer_dst: Ipv6Addr,
    /// The inner packet's bytes in the received buffer.
    pub inner: Range<usize>,
    /// The inner packet's family.
    pub family: Family,
}

/// Validates a tunnel packet that starts at its outer IPv6 header (from a TUN device or an
/// `AF_PACKET` socket, link header removed) and finds the inner packet: the outer header as
/// the module `outer6` reads it (extension headers walked, fragments refused), then
/// as [`strip_payload6`].
pub fn strip_ip6(
    packet: &[u8],
    tun: TunnelType,
    gre_key: Option<u32>,
    udp_zero: Udp6Zero,
) -> Result<Stripped6, StripError> {
    let outer = outer6::parse(packet)?;
    let payload = &packet[outer.payload.clone()];
    let inner = strip_payload6(
        payload,
        outer.src,
        outer.dst,
        outer.protocol,
        tun,
        gre_key,
        udp_zero,
    )?;
    Ok(Stripped6 {
        outer_src: outer.src,
        outer_dst: outer.dst,
        inner: offset(inner.range, outer.payload.start),
        family: inner.family,
    })
}

/// Validates the payload of an outer IPv6 packet as an `AF_INET6` raw socket delivers it
/// (without the IPv6 header; `src` and `dst` from `msg_name` and `IPV6_PKTINFO`,
/// `next_header` the socket's protocol) and finds the inner packet in it: IPIP next header 4
/// (IPv4) or 41 (IPv6); GRE 47 (as [`super::strip_ip`] checks it: version, flags, 0x0800 or
/// 0x86DD, checksum, key); GUE 17: UDP length equal to the payload's, the checksum verified
/// over the IPv6 pseudo-header (zero refused unless `udp_zero` allows it), then as
/// [`super::strip_gue`]. Any other next header is [`StripError::WrongProtocol`].
pub fn strip_payload6(
    payload: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    tun: TunnelType,
    gre_key: Option<u32>,
    udp_zero: Udp6Zero,
) -> Result<Inner, StripError> {
    match (tun, next_header) {
        (TunnelType::Ipip, proto) => ipip::strip(payload, proto),
        (TunnelType::Gre, IpProtocol::GRE) => gre::strip(payload, gre_key, GreChecksum::Verify),
        (TunnelType::Gue, IpProtocol::UDP) => {
            let udp = UdpPacket::new_checked(payload).map_err(|e| match e {
                wire::Error::Truncated => StripError::Truncated,
                _ => StripError::BadUdp,
            })?;
            if udp.len() as usize != payload.len() {
                return Err(StripError::BadUdp);
            }
            if udp.checksum() == 0 {
                if udp_zero == Udp6Zero::Never {
                    return Err(StripError::Udp6ZeroChecksum);
                }
            } else if !udp.verify_checksum_v6(src, dst) {
                return Err(StripError::BadUdpChecksum);
            }
            Ok(gue::strip(udp.payload())?.offset(wire::udp::HEADER_LEN))
        }
        _ => Err(StripError::WrongProtocol),
    }
}

/// Splits the datagram `outer` (an IPv6 header as [`build_outer6`] writes it, then the
/// tunnel header) + `inner` into IPv6 fragments of at most `mtu` bytes (RFC 8200 §4.5), all
/// with identification `ident`. Allowed only when `inner` is IPv4 without DF, or IPv6 of at
/// most 1280 bytes; otherwise [`FragmentError::DontFragment`] (the core answers with an ICMP
/// error advertising [`inner_mtu`]). The first fragment carries the IPv6 header, a fragment
/// header and the tunnel header; the others the IPv6 header and a fragment header. Each
/// fragment but the last carries `(mtu - 48) & !7` bytes of the fragmentable part (tunnel
/// header + inner). A datagram that fits comes out whole, unchanged (no fragment header). The
/// UDP checksum (GUE) stays that of the whole datagram, as the receiver checks it after
/// reassembly.
pub fn fragment6<'a>(
    outer: &'a [u8],
    inner: &[u8],
    mtu: u16,
    ident: NonZeroU32,
) -> Result<Fragments6<'a>, FragmentError> {
    if mtu < IPV6_MIN_MTU {
        return Err(FragmentError::MtuTooSmall(mtu));
    }
    if outer.len() < HEADER_LEN || outer.len() + FRAG_HEADER_LEN > MAX_OUTER_HEADER {
        return Err(FragmentError::BadHeader);
    }
    let plen = u16::from_be_bytes([outer[4], outer[5]]) as usize;
    if outer[0] >> 4 != 6 || HEADER_LEN + plen != outer.len() + inner.len() {
        return Err(FragmentError::BadHeader);
    }
    if outer[6] == IpProtocol::IPV6_FRAG {
        return Err(FragmentError::AlreadyFragment);
    }
    let may = match Family::of(inner) {
        Some(Family::Ipv4) => !Ipv4Packet::new_unchecked(inner).dont_frag(),
        Some(Family::Ipv6) => inner.len() <= IPV6_MIN_MTU as usize,
        None => false,
    };
    let whole = outer.len() + inner.len() <= mtu as usize;
    if !whole && !may {
        return Err(FragmentError::DontFragment);
    }
    Ok(Fragments6 {
        outer,
        tunnel_len: outer.len() - HEADER_LEN,
        payload_len: plen,
        chunk: (mtu as usize - HEADER_LEN - FRAG_HEADER_LEN) & !7,
        next: Some(0),
        whole,
        ident: ident.get(),
    })
}

/// The fragments of one datagram over IPv6, in order (see [`fragment6`]).
#[derive(Clone, Debug)]
pub struct Fragments6<'a> {
    outer: &'a [u8],
    /// Bytes of tunnel header after the IPv6 header.
    tunnel_len: usize,
    /// The fragmentable part: tunnel header + inner packet.
    payload_len: usize,
    /// Fragmentable bytes per fragment but the last (a multiple of 8).
    chunk: usize,
    next: Option<usize>,
    /// The datagram fits: one piece, no fragment header.
    whole: bool,
    ident: u32,
}

impl Iterator for Fragments6<'_> {
    type Item = super::Fragment;

    fn next(&mut self) -> Option<super::Fragment> {
        let start = self.next?;
        let mut header = [0u8; MAX_OUTER_HEADER];
        if self.whole {
            self.next = None;
            header[..self.outer.len()].copy_from_slice(self.outer);
            return Some(super::Fragment {
                header,
                header_len: self.outer.len(),
                inner: 0..self.payload_len - self.tunnel_len,
            });
        }
        let end = (start + self.chunk).min(self.payload_len);
        let more = end < self.payload_len;
        self.next = more.then_some(end);
        // The tunnel header is the first `tunnel_len` bytes of the fragmentable part; with
        // mtu >= 1280 the first fragment always holds it whole.
        let tunnel = &self.outer[HEADER_LEN + start.min(self.tunnel_len)..];
        let tunnel = &tunnel[..self.tunnel_len.saturating_sub(start)];
        let len = HEADER_LEN + FRAG_HEADER_LEN + tunnel.len();
        header[..HEADER_LEN].copy_from_slice(&self.outer[..HEADER_LEN]);
        let next_header = self.outer[6];
        let mut h = Ipv6Packet::new_unchecked(&mut header[..HEADER_LEN]);
        h.set_next_header(IpProtocol::IPV6_FRAG);
        h.set_payload_len((FRAG_HEADER_LEN + end - start) as u16);
        let f = &mut header[HEADER_LEN..HEADER_LEN + FRAG_HEADER_LEN];
        f[0] = next_header;
        f[1] = 0;
        f[2..4].copy_from_slice(&((start as u16) | more as u16).to_be_bytes());
        f[4..8].copy_from_slice(&self.ident.to_be_bytes());
        header[HEADER_LEN + FRAG_HEADER_LEN..len].copy_from_slice(tunnel);
        let inner_start = start.saturating_sub(self.tunnel_len);
        let inner_end = end - self.tunnel_len;
        Some(super::Fragment {
            header,
            header_len: len,
            inner: inner_start..inner_end,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self.next {
            None => 0,
            Some(_) if self.whole => 1,
            Some(s) => (self.payload_len - s).div_ceil(self.chunk),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Fragments6<'_> {}

/// The inner packet of a GUE payload of either family, with [`inner_at`]'s checks (the
/// authenticated path: the caller opened the header with [`auth::Keyring::open6`]).
pub fn inner_after(payload: &[u8], start: usize) -> Result<Inner, StripError> {
    inner_at(payload, start, None)
}

#[cfg(test)]
mod tests {
    use etherparse::{
        IpNumber, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, UdpSlice,
    };

    use super::super::tests::{params_for, EVERY_TUNNEL, INNER};
    use super::super::{build_outer, build_outer_sealed, strip_ip, OUTER_TTL};
    use super::*;
    use crate::encap::auth::{AuthError, Keyring, LaneCounter, OpenError, TunnelKey};

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);

    /// An IPv6/UDP packet 2001:db8:1::2 -> 2001:db8:100::100 port 53 with `len` bytes of
    /// payload, traffic class 0xb8, built by etherparse.
    fn inner6(len: usize) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0x20, 1, 0xd, 0xb8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            63,
        )
        .udp(40000, 53);
        let mut out = Vec::new();
        b.write(&mut out, &vec![0x70; len]).unwrap();
        out[0] = 0x6b; // traffic class 0xb8
        out[1] = 0x80 | (out[1] & 0x0f);
        out
    }

    fn params6(tunnel: Tunnel) -> OuterParams6 {
        OuterParams6 {
            src: SRC,
            dst: DST,
            tunnel,
            flow_hash: 0xdead_beef,
            hop_limit: OUTER_TTL,
            traffic_class: TrafficClass::CopyInner,
            udp_zero: Udp6Zero::Never,
        }
    }

    fn key() -> TunnelKey {
        TunnelKey::new(&[7; 32])
    }

    /// Every tunnel, inner IPv4 and IPv6, with and without a seal: etherparse reads the outer
    /// IPv6 header, the UDP checksum and the tunnel header back; both strip functions give
    /// the inner packet and its family back.
    #[test]
    fn built_over_ipv6_parses_and_strips() {
        let k = key();
        let mut lanes = LaneCounter::new(3, 100);
        for tunnel in EVERY_TUNNEL {
            for (inner, family) in [(INNER.to_vec(), Family::Ipv4), (inner6(100), Family::Ipv6)] {
                for sealed in [false, true] {
                    let seal = lanes.seal(&k);
                    let p = params6(tunnel);
                    let mut out = [0u8; MAX_OUTER_HEADER];
                    let n = build_outer6(&p, &inner, sealed.then_some(&seal), &mut out).unwrap();
                    let authed = sealed && matches!(tunnel, Tunnel::Gue { .. });
                    assert_eq!(n, overhead6(&tunnel, authed));
                    let pkt = [&out[..n], &inner[..]].concat();
                    let ip = Ipv6HeaderSlice::from_slice(&pkt).unwrap();
                    assert_eq!(ip.payload_length() as usize, pkt.len() - 40);
                    assert_eq!(ip.hop_limit(), OUTER_TTL);
                    assert_eq!(ip.traffic_class(), 0xb8);
                    assert_eq!(u32::from(ip.flow_label()), flow_label(p.flow_hash));
                    assert_eq!(ip.source_addr(), SRC);
                    assert_eq!(ip.destination_addr(), DST);
                    let nh = super::super::outer_protocol(&tunnel, family);
                    assert_eq!(ip.next_header(), IpNumber(nh));
                    let payload = &pkt[40..];
                    match tunnel {
                        Tunnel::Ipip => {
                            assert_eq!(nh, family.ip_protocol());
                            assert_eq!(payload, &inner[..]);
                        }
                        Tunnel::Gre { csum, key } => {
                            let h = gre::GreHeader::new_checked(payload).unwrap();
                            assert_eq!(h.protocol_type(), family.ethertype());
                            assert_eq!(h.key(), key);
                            assert_eq!(h.checksum_present(), csum);
                            assert!(h.verify_checksum());
                        }
                        Tunnel::Gue { port, .. } => {
                            let udp = UdpSlice::from_slice(payload).unwrap();
                            assert_eq!(udp.length() as usize, payload.len());
                            assert_eq!(udp.destination_port(), port);
                            let want = udp
                                .to_header()
                                .calc_checksum_ipv6_raw(SRC.octets(), DST.octets(), udp.payload())
                                .unwrap();
                            assert_ne!(udp.checksum(), 0, "UDP over IPv6 needs a checksum");
                            assert_eq!(udp.checksum(), want);
                            let g = gue::GueHeader::new_checked(udp.payload()).unwrap();
                            assert_eq!(g.proto_ctype(), family.ip_protocol());
                            assert_eq!(g.flags() & auth::AUTH_FLAG != 0, authed);
                        }
                    }
                    let s =
                        strip_ip6(&pkt, tunnel.kind(), tunnel.gre_key(), Udp6Zero::Never).unwrap();
                    assert_eq!(&pkt[s.inner.clone()], &inner[..]);
                    assert_eq!((s.outer_src, s.outer_dst, s.family), (SRC, DST, family));
                    let r = strip_payload6(
                        payload,
                        SRC,
                        DST,
                        nh,
                        tunnel.kind(),
                        tunnel.gre_key(),
                        Udp6Zero::Never,
                    )
                    .unwrap();
                    assert_eq!(&payload[r.range], &inner[..]);
                    assert_eq!(r.family, family);
                    if authed {
                        let udp = UdpPacket::new_checked(payload).unwrap();
                        let mut ring = Keyring::new(vec![key()]).unwrap();
                        let after = ring.open6(SRC, DST, udp.payload()).unwrap();
                        assert_eq!(&udp.payload()[after], &inner[..]);
                    }
                }
            }
        }
    }

    /// Over IPv4: IPv6 inside IPIP is protocol 41 (sit), GRE 0x86DD, GUE Proto 41; the
    /// outer TOS is the inner traffic class, DF set above 1280 bytes.
    #[test]
    fn ipv6_over_ipv4_parses_and_strips() {
        for tunnel in EVERY_TUNNEL {
            for len in [100, 1400] {
                let inner = inner6(len);
                let p = params_for(tunnel);
                let mut out = [0u8; MAX_OUTER_HEADER];
                let n = build_outer(&p, &inner, &mut out).unwrap();
                assert_eq!(n, super::super::overhead(&tunnel));
                let pkt = [&out[..n], &inner[..]].concat();
                let ip = Ipv4HeaderSlice::from_slice(&pkt).unwrap();
                assert_eq!(ip.total_len() as usize, pkt.len());
                assert_eq!(ip.dont_fragment(), inner.len() > 1280);
                assert_eq!(ip.dcp().value() << 2 | ip.ecn().value(), 0xb8);
                let want = match tunnel {
                    Tunnel::Ipip => 41,
                    Tunnel::Gre { .. } => 47,
                    Tunnel::Gue { .. } => 17,
                };
                assert_eq!(ip.protocol(), IpNumber(want));
                match tunnel {
                    Tunnel::Gre { .. } => {
                        let h = gre::GreHeader::new_checked(&pkt[20..]).unwrap();
                        assert_eq!(h.protocol_type(), 0x86dd);
                    }
                    Tunnel::Gue { .. } => assert_eq!(pkt[29], 41),
                    Tunnel::Ipip => {}
                }
                let s = strip_ip(&pkt, tunnel.kind(), tunnel.gre_key()).unwrap();
                assert_eq!(&pkt[s.inner], &inner[..]);
                assert_eq!(s.family, Family::Ipv6);
            }
        }
    }

    #[test]
    fn zero_udp_checksum_only_when_both_ends_allow_it() {
        let t = Tunnel::Gue {
            port: 6080,
            csum: false,
        };
        let p = OuterParams6 {
            udp_zero: Udp6Zero::Allowed,
            ..params6(t)
        };
        let mut out = [0u8; MAX_OUTER_HEADER];
        let n = build_outer6(&p, &INNER, None, &mut out).unwrap();
        let pkt = [&out[..n], &INNER[..]].concat();
        assert_eq!(&pkt[46..48], &[0, 0]);
        assert_eq!(
            strip_ip6(&pkt, TunnelType::Gue, None, Udp6Zero::Never),
            Err(StripError::Udp6ZeroChecksum)
        );
        assert!(strip_ip6(&pkt, TunnelType::Gue, None, Udp6Zero::Allowed).is_ok());
        // `csum` still asks for one; a wrong one is refused either way.
        let p = OuterParams6 {
            tunnel: Tunnel::Gue {
                port: 6080,
                csum: true,
            },
            ..p
        };
        let n = build_outer6(&p, &INNER, None, &mut out).unwrap();
        let mut pkt = [&out[..n], &INNER[..]].concat();
        assert_ne!(&pkt[46..48], &[0, 0]);
        pkt[70] ^= 1;
        for z in [Udp6Zero::Never, Udp6Zero::Allowed] {
            assert_eq!(
                strip_ip6(&pkt, TunnelType::Gue, None, z),
                Err(StripError::BadUdpChecksum)
            );
        }
    }

    #[test]
    fn fixed_traffic_class_and_flow_labels() {
        let p = OuterParams6 {
            traffic_class: TrafficClass::Fixed(0x20),
            ..params6(Tunnel::Ipip)
        };
        let mut out = [0u8; MAX_OUTER_HEADER];
        build_outer6(&p, &INNER, None, &mut out).unwrap();
        assert_eq!(Ipv6Packet::new_unchecked(&out[..40]).traffic_class(), 0x20);
        assert_eq!(flow_label(0), 1);
        assert_eq!(flow_label(0x0010_0001), 1);
        assert!((0..10_000u32).all(|h| {
            let l = flow_label(h.wrapping_mul(0x9e37_79b9));
            l != 0 && l <= 0xf_ffff
        }));
    }

    /// A MAC made over IPv4 addresses never verifies over IPv6 and the other way round, even
    /// with the same key, lane and sequence number and v4-mapped addresses.
    #[test]
    fn ipv4_and_ipv6_macs_are_domain_separated() {
        let k = key();
        let seal = auth::Seal {
            key: &k,
            lane: 1,
            seq: 5,
        };
        let gue = Tunnel::Gue {
            port: 6080,
            csum: false,
        };
        let p4 = params_for(gue);
        let mut out = [0u8; MAX_OUTER_HEADER];
        let n = build_outer_sealed(&p4, &INNER, Some(&seal), &mut out).unwrap();
        let v4 = [&out[28..n], &INNER[..]].concat();
        let (s4, d4) = (p4.src.to_ipv6_mapped(), p4.dst.to_ipv6_mapped());
        let mut ring = Keyring::new(vec![key()]).unwrap();
        assert_eq!(
            ring.open6(s4, d4, &v4),
            Err(OpenError::Auth(AuthError::BadMac))
        );
        let p6 = OuterParams6 {
            src: s4,
            dst: d4,
            ..params6(gue)
        };
        let n = build_outer6(&p6, &INNER, Some(&seal), &mut out).unwrap();
        let v6 = [&out[48..n], &INNER[..]].concat();
        // Same header bytes (proto, key id, lane, sequence): only the MAC differs.
        assert_eq!(v4[..16], v6[..16]);
        assert_ne!(v4[16..32], v6[16..32]);
        assert_eq!(
            ring.open(p4.src, p4.dst, &v6),
            Err(OpenError::Auth(AuthError::BadMac))
        );
        assert_eq!(
            ring.open6(s4, Ipv6Addr::LOCALHOST, &v6),
            Err(OpenError::Auth(AuthError::BadMac))
        );
        assert!(ring.open6(s4, d4, &v6).is_ok());
        assert!(ring.open(p4.src, p4.dst, &v4).is_ok());
    }

    /// Reassembles IPv6 fragments (checked by etherparse) into the datagram's payload.
    fn reassemble(frags: &[Vec<u8>], mtu: usize) -> (u8, Vec<u8>) {
        let mut whole = Vec::new();
        let mut nh = 0;
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= mtu);
            let ip = Ipv6HeaderSlice::from_slice(f).unwrap();
            assert_eq!(ip.payload_length() as usize, f.len() - 40);
            assert_eq!(ip.next_header(), IpNumber::IPV6_FRAGMENTATION_HEADER);
            let fh = Ipv6FragmentHeaderSlice::from_slice(&f[40..]).unwrap();
            assert_eq!(fh.identification(), 77);
            assert_eq!(fh.more_fragments(), i + 1 < frags.len());
            assert_eq!(fh.fragment_offset().byte_offset() as usize, whole.len());
            nh = fh.next_header().0;
            whole.extend_from_slice(&f[48..]);
        }
        (nh, whole)
    }

    #[test]
    fn fragments_over_ipv6() {
        let ident = NonZeroU32::new(77).unwrap();
        let gue = Tunnel::Gue {
            port: 6080,
            csum: true,
        };
        // Inner IPv4 without DF, 1400 bytes, over GUE: fragments that reassemble.
        let mut inner = crate::wire::testing::udp_packet(
            std::net::Ipv4Addr::new(10, 0, 0, 1),
            1000,
            std::net::Ipv4Addr::new(10, 0, 0, 100),
            53,
            1372,
        );
        Ipv4Packet::new_unchecked(&mut inner[..]).set_flags_and_frag_offset(false, false, 0);
        Ipv4Packet::new_unchecked(&mut inner[..]).fill_checksum();
        for tunnel in [gue, Tunnel::Ipip] {
            let mut out = [0u8; MAX_OUTER_HEADER];
            let n = build_outer6(&params6(tunnel), &inner, None, &mut out).unwrap();
            let frags: Vec<Vec<u8>> = fragment6(&out[..n], &inner, 1280, ident)
                .unwrap()
                .map(|f| [f.header(), &inner[f.inner.clone()]].concat())
                .collect();
            assert_eq!(frags.len(), 2);
            let (nh, payload) = reassemble(&frags, 1280);
            assert_eq!(nh, out[6]);
            let mut whole = out[..n].to_vec();
            whole.extend_from_slice(&inner);
            assert_eq!(payload, whole[40..]);
            assert_eq!(fragment6(&out[..n], &inner, 1280, ident).unwrap().len(), 2);
        }
        // DF, or IPv6 above 1280: refused; a datagram that fits: whole, no fragment header.
        let mut out = [0u8; MAX_OUTER_HEADER];
        let mut df = inner.clone();
        Ipv4Packet::new_unchecked(&mut df[..]).set_flags_and_frag_offset(true, false, 0);
        let n = build_outer6(&params6(gue), &df, None, &mut out).unwrap();
        assert_eq!(
            fragment6(&out[..n], &df, 1280, ident).err(),
            Some(FragmentError::DontFragment)
        );
        let big6 = inner6(1300);
        let n = build_outer6(&params6(gue), &big6, None, &mut out).unwrap();
        assert_eq!(
            fragment6(&out[..n], &big6, 1280, ident).err(),
            Some(FragmentError::DontFragment)
        );
        let small6 = inner6(1200);
        assert_eq!(small6.len(), 1248);
        let n = build_outer6(&params6(gue), &small6, None, &mut out).unwrap();
        let frags: Vec<_> = fragment6(&out[..n], &small6, 1280, ident)
            .unwrap()
            .collect();
        assert_eq!(
            frags.len(),
            2,
            "1248 + 52 > 1280: an IPv6 packet up to 1280 goes"
        );
        let n = build_outer6(&params6(gue), &INNER, None, &mut out).unwrap();
        let one: Vec<_> = fragment6(&out[..n], &INNER, 1280, ident).unwrap().collect();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].header(), &out[..n]);
        assert_eq!(one[0].inner, 0..INNER.len());
        assert_eq!(
            fragment6(&out[..n], &INNER, 1279, ident).err(),
            Some(FragmentError::MtuTooSmall(1279))
        );
        assert_eq!(
            fragment6(&out[..n - 1], &INNER, 1280, ident).err(),
            Some(FragmentError::BadHeader)
        );
    }

    #[test]
    fn inner_mtus() {
        let gue = Tunnel::Gue {
            port: 6080,
            csum: false,
        };
        use Family::{Ipv4 as I4, Ipv6 as I6};
        use OuterFamily::{Ipv4 as O4, Ipv6 as O6};
        assert_eq!(inner_mtu(1500, O4, I4, &Tunnel::Ipip, false, false), 1480);
        assert_eq!(inner_mtu(1500, O6, I4, &Tunnel::Ipip, false, false), 1460);
        assert_eq!(inner_mtu(1500, O6, I6, &gue, false, false), 1448);
        assert_eq!(inner_mtu(1500, O6, I6, &gue, true, false), 1420);
        assert_eq!(inner_mtu(1500, O4, I6, &gue, true, true), 1500 - 68);
        assert_eq!(inner_mtu(1300, O6, I6, &gue, true, false), 1280);
        assert_eq!(inner_mtu(1300, O6, I4, &gue, true, false), 1220);
        assert_eq!(inner_mtu(60, O4, I4, &gue, false, false), 68);
        for t in EVERY_TUNNEL {
            assert!(overhead6(&t, true) + FRAG_HEADER_LEN <= MAX_OUTER_HEADER);
        }
    }

    #[test]
    fn strip6_refusals() {
        let mut out = [0u8; MAX_OUTER_HEADER];
        let gre = Tunnel::Gre {
            key: Some(9),
            csum: true,
        };
        let n = build_outer6(&params6(gre), &INNER, None, &mut out).unwrap();
        let pkt = [&out[..n], &INNER[..]].concat();
        for k in 0..pkt.len() {
            assert!(
                strip_ip6(&pkt[..k], TunnelType::Gre, Some(9), Udp6Zero::Never).is_err(),
                "{k}"
            );
        }
        let strip = |p: &[u8], t, k| strip_ip6(p, t, k, Udp6Zero::Never).map(|s| s.inner);
        assert_eq!(strip(&pkt, TunnelType::Gre, Some(9)), Ok(n..pkt.len()));
        assert_eq!(
            strip(&pkt, TunnelType::Gre, None),
            Err(StripError::GreKeyMismatch)
        );
        assert_eq!(
            strip(&pkt, TunnelType::Gue, None),
            Err(StripError::WrongProtocol)
        );
        assert_eq!(
            strip(&pkt, TunnelType::Ipip, None),
            Err(StripError::WrongProtocol)
        );
        let mut b = pkt.clone();
        b[n + 4] ^= 0x20; // a flipped inner bit: only the GRE checksum can tell
        assert_eq!(
            strip(&b, TunnelType::Gre, Some(9)),
            Err(StripError::GreBadChecksum)
        );
        let mut b = pkt.clone();
        b[0] = 0x45;
        assert_eq!(
            strip(&b, TunnelType::Gre, Some(9)),
            Err(StripError::BadOuterHeader)
        );
        // Trailing link padding is ignored.
        let mut b = pkt.clone();
        b.extend_from_slice(&[0; 6]);
        assert_eq!(strip(&b, TunnelType::Gre, Some(9)), Ok(n..pkt.len()));
        // 4in6 with an IPv6 inner is refused, ip6ip6 with an IPv4 one too.
        let n = build_outer6(&params6(Tunnel::Ipip), &INNER, None, &mut out).unwrap();
        let mut b = [&out[..n], &INNER[..]].concat();
        assert_eq!(b[6], 4);
        b[6] = 41;
        assert_eq!(
            strip(&b, TunnelType::Ipip, None),
            Err(StripError::InnerWrongFamily)
        );
    }
}

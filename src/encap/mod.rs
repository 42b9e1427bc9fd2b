//! Outer headers for TUN mode: IPIP (RFC 2003, 2473, 4213), GRE (RFC 2784/2890) and GUE
//! variant 0 (over UDP), over an IPv4 or an IPv6 underlay ([`v6`]).
//!
//! Each tunnel type can *build* the outer header in front of an inner IPv4 or IPv6 packet
//! (director side; the family is the inner packet's version nibble, [`Family::of`]) and *strip*
//! it again (real-server side), reporting the inner family. Building writes into a small fixed array so the driver
//! can send `[outer header, inner packet]` as two iovecs: the inner packet is never copied.
//! Stripping returns the inner packet's range in the received buffer.
//!
//! - [`Tunnel`] — which tunnel, with the options of its kind (GRE key and checksum, GUE port
//!   and checksum); [`TunnelType`] is the bare kind the config and the command line name.
//! - [`build_outer`] — outer IPv4 (+ GRE, or + UDP + GUE) for an inner packet.
//! - [`strip_ip`] — validate a packet from a raw IP socket (outer IPv4 header first) and find
//!   the inner packet.
//! - [`strip_gue`] — the same for a UDP payload received on the GUE port.
//! - [`fragment()`] — split an encapsulated datagram that exceeds the tunnel MTU into IPv4
//!   fragments (DF clear), with [`IdentSeq`] for their identifications.
//! - [`v6`] — the IPv6 underlay: [`build_outer6`], [`strip_ip6`] (outer IPv6 header first),
//!   [`strip_payload6`] (an `AF_INET6` raw socket's payload), [`fragment6`], [`inner_mtu`].
//! - [`ipip`], [`gre`], [`gue`] — per-tunnel code: the [`gre::GreHeader`] and [`gue::GueHeader`]
//!   views and their `Repr`s.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;
use std::net::Ipv4Addr;

use crate::wire::{self, checksum, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket};

pub mod auth;
pub mod chance;
pub mod fragment;
pub mod gre;
pub mod gue;
pub mod ipip;
mod outer6;
pub mod v6;

pub use fragment::{fragment, Fragment, FragmentError, Fragments, IdentSeq};
pub use v6::{
    build_outer6, fragment6, inner_mtu, overhead6, strip_ip6, strip_payload6, OuterFamily,
    OuterParams6, Stripped6, TrafficClass, Udp6Zero,
};

/// The largest outer header any tunnel builds, and the largest fragment header
/// ([`fragment()`], [`fragment6`]): IPv6 (40) + UDP (8) + GUE with the authentication option
/// (4 + 28, [`auth`]) + 8 = 88, the 8 being the IPv6 fragment header of a first fragment (an
/// IPv6 outer carries no second-chance field, [`v6`]). Over IPv4 at most 68: IPv4 (20) + UDP
/// + GUE + option + the second-chance field (8, [`chance`]).
pub const MAX_OUTER_HEADER: usize = 88;

/// The largest outer header over IPv4: 68 (see [`MAX_OUTER_HEADER`]).
pub const MAX_OUTER_HEADER_V4: usize = 68;

/// The smallest MTU of an IPv6 link (RFC 8200 §5); an IPv6 tunnel carries any inner IPv6
/// packet up to this size, fragmenting the outer datagram if need be (RFC 2473 §7.1).
pub const IPV6_MIN_MTU: u16 = 1280;

/// The family of an inner (or outer) packet: what its version nibble says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
}

impl Family {
    /// The family of `packet` from its version nibble, if it is long enough for that family's
    /// fixed header (20 or 40 bytes); `None` otherwise. Lengths are not checked further.
    #[inline]
    pub fn of(packet: &[u8]) -> Option<Family> {
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= wire::ipv4::HEADER_LEN => Some(Family::Ipv4),
            Some(6) if packet.len() >= wire::ipv6::HEADER_LEN => Some(Family::Ipv6),
            _ => None,
        }
    }

    /// The IP protocol number of this family carried in IP: 4 (IPv4) or 41 (IPv6); the GUE
    /// Proto field of an inner packet of this family.
    pub const fn ip_protocol(self) -> u8 {
        match self {
            Family::Ipv4 => IpProtocol::IPIP,
            Family::Ipv6 => IpProtocol::IPV6,
        }
    }

    /// The EtherType (GRE protocol type) of this family: 0x0800 or 0x86DD.
    pub const fn ethertype(self) -> u16 {
        match self {
            Family::Ipv4 => gre::PROTO_IPV4,
            Family::Ipv6 => gre::PROTO_IPV6,
        }
    }

    /// `ipv4` or `ipv6`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// An inner packet found by a strip function: its bytes in the buffer and its family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inner {
    /// The inner packet's bytes (up to its own total length, no padding).
    pub range: Range<usize>,
    /// Its family.
    pub family: Family,
}

impl Inner {
    fn offset(self, by: usize) -> Inner {
        Inner {
            range: offset(self.range, by),
            family: self.family,
        }
    }
}

/// Default GUE destination port (as in Linux `fou` and IPVS `--tun-port`).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// How a TUN-mode real server is reached.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    /// IPv4-in-IPv4, IP protocol 4.
    #[default]
    Ipip,
    /// GRE, IP protocol 47, protocol type 0x0800, optional 32-bit key.
    Gre,
    /// Generic UDP Encapsulation variant 0, UDP destination port `--tun-port` (6080).
    Gue,
}

impl TunnelType {
    /// The name used on the command line, in configs and in `adm` output.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelType::Ipip => "ipip",
            TunnelType::Gre => "gre",
            TunnelType::Gue => "gue",
        }
    }

    /// The outer IPv4 protocol number this tunnel type is carried in.
    pub const fn ip_protocol(self) -> u8 {
        match self {
            TunnelType::Ipip => IpProtocol::IPIP,
            TunnelType::Gre => IpProtocol::GRE,
            TunnelType::Gue => IpProtocol::UDP,
        }
    }
}

impl fmt::Display for TunnelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TunnelType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ipip" => Ok(TunnelType::Ipip),
            "gre" => Ok(TunnelType::Gre),
            "gue" => Ok(TunnelType::Gue),
            other => Err(format!(
                "unknown tunnel type {other:?}: expected ipip, gre or gue"
            )),
        }
    }
}

/// The TTL of every outer header.
pub const OUTER_TTL: u8 = 64;

/// First UDP source port of the range GUE spreads flows over (the IANA dynamic range).
pub const GUE_SRC_PORT_BASE: u16 = 49152;

/// One tunnel to a real server (or a gateway): the kind and only the options that kind has,
/// so no field is "ignored otherwise". [`Tunnel::new`] builds it from the flat options the
/// config and `adm` carry; it is `Copy` and small, made to travel with a verdict to the
/// sender so that nothing has to read the kind back from header bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tunnel {
    /// IPv4-in-IPv4 (RFC 2003): no options.
    Ipip,
    /// GRE (RFC 2784/2890).
    Gre {
        /// The key to send (RFC 2890), or none.
        key: Option<u32>,
        /// Send the checksum (RFC 2784: C bit, checksum over the GRE header and payload).
        csum: bool,
    },
    /// GUE variant 0 over UDP.
    Gue {
        /// The UDP destination port (usually [`DEFAULT_GUE_PORT`]).
        port: u16,
        /// Compute the UDP checksum (else send 0).
        csum: bool,
    },
}

impl Tunnel {
    /// The tunnel of a `kind` from the flat options the config and `adm` carry
    /// (`--tun-port`, `--tun-csum`, `--gre-key`): each kind keeps the ones it has.
    pub const fn new(kind: TunnelType, port: u16, csum: bool, key: Option<u32>) -> Tunnel {
        match kind {
            TunnelType::Ipip => Tunnel::Ipip,
            TunnelType::Gre => Tunnel::Gre { key, csum },
            TunnelType::Gue => Tunnel::Gue { port, csum },
        }
    }

    /// The kind's name (`ipip`, `gre`, `gue`).
    pub const fn kind(&self) -> TunnelType {
        match self {
            Tunnel::Ipip => TunnelType::Ipip,
            Tunnel::Gre { .. } => TunnelType::Gre,
            Tunnel::Gue { .. } => TunnelType::Gue,
        }
    }

    /// The outer IPv4 protocol number.
    pub const fn ip_protocol(&self) -> u8 {
        self.kind().ip_protocol()
    }

    /// The GRE key, if this is GRE with one.
    pub const fn gre_key(&self) -> Option<u32> {
        match self {
            Tunnel::Gre { key, .. } => *key,
            _ => None,
        }
    }

    /// The GUE destination port, if this is GUE.
    pub const fn gue_port(&self) -> Option<u16> {
        match self {
            Tunnel::Gue { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// What follows the outer IPv4 header that each GSO segment changes
    /// ([`crate::wire::gso::fix_outer`]).
    pub const fn outer_tail(&self) -> wire::gso::OuterTail {
        match *self {
            Tunnel::Gue { csum, .. } => wire::gso::OuterTail::Udp { csum },
            Tunnel::Gre { csum: true, .. } => wire::gso::OuterTail::GreChecksum,
            Tunnel::Gre { csum: false, .. } | Tunnel::Ipip => wire::gso::OuterTail::Plain,
        }
    }

    /// Whether the tunnel sends a checksum (GRE or GUE with `csum`; IPIP has none).
    pub const fn csum(&self) -> bool {
        match self {
            Tunnel::Gre { csum, .. } | Tunnel::Gue { csum, .. } => *csum,
            Tunnel::Ipip => false,
        }
    }
}

/// Everything [`build_outer`] needs besides the inner packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OuterParams {
    /// Outer source: the director's tunnel address.
    pub src: Ipv4Addr,
    /// Outer destination: the real server.
    pub dst: Ipv4Addr,
    /// Which tunnel, with its options.
    pub tunnel: Tunnel,
    /// A hash of the inner flow; GUE derives the UDP source port from it so that ECMP and RSS
    /// on the way spread flows while keeping each one on a path.
    pub flow_hash: u32,
}

/// Bytes of outer header a tunnel adds: 20 IPIP; 24 GRE, + 4 with a key, + 4 with the
/// checksum; 32 GUE.
pub const fn overhead(tunnel: &Tunnel) -> usize {
    match *tunnel {
        Tunnel::Ipip => ipip::OVERHEAD,
        Tunnel::Gre { key, csum } => {
            wire::ipv4::HEADER_LEN + gre::header_len(csum, key.is_some(), false)
        }
        Tunnel::Gue { .. } => wire::ipv4::HEADER_LEN + wire::udp::HEADER_LEN + gue::HEADER_LEN,
    }
}

/// [`overhead`] of a tunnel whose packets carry the authentication option when `authed`
/// (GUE only: 28 bytes more).
pub const fn overhead_with(tunnel: &Tunnel, authed: bool) -> usize {
    match (*tunnel, authed) {
        (Tunnel::Gue { .. }, true) => overhead(tunnel) + auth::OPTION_LEN,
        _ => overhead(tunnel),
    }
}

/// [`overhead_with`], plus the second-chance field when `chance` (GUE only: 8 bytes more).
pub const fn overhead_full(tunnel: &Tunnel, authed: bool, chance: bool) -> usize {
    match (*tunnel, chance) {
        (Tunnel::Gue { .. }, true) => overhead_with(tunnel, authed) + chance::FIELD_LEN,
        _ => overhead_with(tunnel, authed),
    }
}

/// Builds the outer headers for `inner` (a valid IPv4 packet) into `out`, returns the header
/// length ([`overhead`]).
///
/// Outer IPv4: TTL 64, DF and TOS (DSCP + ECN) copied from the inner header, ident 0 (the
/// kernel fills it in on an `IP_HDRINCL` socket), total length = header + `inner.len()`,
/// header checksum filled. GRE: version 0, protocol 0x0800, the key if one is given, the
/// checksum (C bit, over the GRE header and `inner`) if asked, no sequence number. GUE: UDP
/// source port `49152 + flow_hash % 16384`, destination port `port`, checksum 0 unless
/// `csum` (then over the pseudo-header, UDP, GUE and `inner`); GUE variant 0 with C = 0,
/// Hlen = 0, Proto = 4 (IPIP), flags 0.
///
/// Checksums cover `inner` as given: a sender that cuts it into segments fixes them per
/// segment ([`crate::wire::gso::fix_outer`]); outer fragments keep the whole datagram's.
pub fn build_outer(
    p: &OuterParams,
    inner: &[u8],
    out: &mut [u8; MAX_OUTER_HEADER],
) -> Result<usize, BuildError> {
    build_outer_sealed(p, inner, None, out)
}

/// [`build_outer`], and for a GUE tunnel with a `seal` the GUE header carries the
/// authentication option ([`auth::emit`]: key id, lane, sequence number, MAC over the outer
/// addresses, the GUE header and `inner`); the UDP checksum, if asked, covers it. Other
/// tunnels ignore `seal` (they cannot carry a MAC). Returns [`overhead_with`] bytes.
pub fn build_outer_sealed(
    p: &OuterParams,
    inner: &[u8],
    seal: Option<&auth::Seal<'_>>,
    out: &mut [u8; MAX_OUTER_HEADER],
) -> Result<usize, BuildError> {
    build_outer_chance(p, inner, seal, None, out)
}

/// [`build_outer_sealed`], and for a GUE tunnel with a `chance` the GUE header carries the
/// second-chance field ([`chance`], after the authentication option, which then covers it).
/// Other tunnels ignore `chance` (no room for it). Returns [`overhead_full`] bytes.
pub fn build_outer_chance(
    p: &OuterParams,
    inner: &[u8],
    seal: Option<&auth::Seal<'_>>,
    second: Option<chance::SecondChance>,
    out: &mut [u8; MAX_OUTER_HEADER],
) -> Result<usize, BuildError> {
    let family = Family::of(inner).ok_or(BuildError::InnerNotIp)?;
    let (tos, dont_frag) = match family {
        Family::Ipv4 => {
            let h = Ipv4Packet::new_unchecked(inner);
            (h.dscp_ecn(), h.dont_frag())
        }
        // An IPv6 packet is never fragmented on the way: DF, unless it is no longer than the
        // IPv6 minimum MTU, which the tunnel must carry whatever its own MTU (RFC 2473 §7.1).
        Family::Ipv6 => (
            wire::Ipv6Packet::new_unchecked(inner).traffic_class(),
            inner.len() > IPV6_MIN_MTU as usize,
        ),
    };
    let seal = seal.filter(|_| matches!(p.tunnel, Tunnel::Gue { .. }));
    let field = second
        .filter(|_| matches!(p.tunnel, Tunnel::Gue { .. }))
        .map(chance::SecondChance::to_bytes);
    let hdr_len = overhead_full(&p.tunnel, seal.is_some(), field.is_some());
    let total = hdr_len + inner.len();
    if total > u16::MAX as usize {
        return Err(BuildError::TooBig);
    }
    let ip = Ipv4Repr {
        src: p.src,
        dst: p.dst,
        protocol: outer_protocol(&p.tunnel, family),
        tos,
        dont_frag,
        ttl: OUTER_TTL,
        payload_len: total - wire::ipv4::HEADER_LEN,
        ident: 0,
    };
    let (ip_hdr, rest) = out.split_at_mut(wire::ipv4::HEADER_LEN);
    ip.emit(ip_hdr).map_err(|_| BuildError::TooBig)?;
    let udp_len = (total - wire::ipv4::HEADER_LEN) as u16;
    let tail = Tail {
        tunnel: p.tunnel,
        family,
        addrs: auth::OuterAddrs::V4(p.src, p.dst),
        seal,
        field: field.as_ref(),
        flow_hash: p.flow_hash,
        udp_len,
        udp_pseudo: match p.tunnel {
            Tunnel::Gue { csum: true, .. } => Some(checksum::pseudo_header_v4(
                p.src,
                p.dst,
                IpProtocol::UDP,
                udp_len,
            )),
            _ => None,
        },
    };
    tail.emit(rest, inner)?;
    Ok(hdr_len)
}

/// The outer protocol (IPv4) or next header (IPv6) of `tunnel` carrying a `family` packet:
/// 4 or 41 for IPIP (IPv4-in-IP, IPv6-in-IP as sit and ip6ip6), 47 for GRE, 17 for GUE.
pub const fn outer_protocol(tunnel: &Tunnel, family: Family) -> u8 {
    match tunnel {
        Tunnel::Ipip => family.ip_protocol(),
        _ => tunnel.ip_protocol(),
    }
}

/// What follows the outer IP header, whichever its family: nothing (IPIP), GRE, or UDP + GUE
/// (with the authentication option and the second-chance field when asked).
struct Tail<'a> {
    tunnel: Tunnel,
    family: Family,
    addrs: auth::OuterAddrs,
    seal: Option<&'a auth::Seal<'a>>,
    field: Option<&'a [u8; chance::FIELD_LEN]>,
    flow_hash: u32,
    /// The UDP length (GUE): UDP header + GUE header + inner packet.
    udp_len: u16,
    /// The pseudo-header sum when the UDP checksum is to be computed, else `None` (sent as 0).
    udp_pseudo: Option<u16>,
}

impl Tail<'_> {
    /// Writes the tail into `rest` (which starts right after the outer IP header). The inner
    /// packet's bytes are summed at most once (GRE checksum or UDP checksum, never both).
    fn emit(&self, rest: &mut [u8], inner: &[u8]) -> Result<(), BuildError> {
        match self.tunnel {
            Tunnel::Ipip => {}
            Tunnel::Gre { key, csum } => {
                let repr = gre::GreRepr {
                    protocol: self.family.ethertype(),
                    checksum: csum,
                    key,
                    seq: None,
                };
                repr.emit(rest)?;
                if csum {
                    gre::fill_checksum(&mut rest[..repr.buffer_len()], checksum::data(inner));
                }
            }
            Tunnel::Gue { port, .. } => {
                let proto = self.family.ip_protocol();
                let (udp_hdr, gue_hdr) = rest.split_at_mut(wire::udp::HEADER_LEN);
                let base = match self.seal {
                    Some(seal) => {
                        let h: &mut [u8; auth::AUTH_HEADER_LEN] = (&mut gue_hdr
                            [..auth::AUTH_HEADER_LEN])
                            .try_into()
                            .map_err(|_| BuildError::BufferTooSmall)?;
                        auth::emit_for(seal, self.addrs, proto, self.field, inner, h);
                        auth::AUTH_HEADER_LEN
                    }
                    None => {
                        gue::GueRepr { proto_ctype: proto }.emit(gue_hdr)?;
                        if self.field.is_some() {
                            gue_hdr[0] = chance::FIELD_WORDS;
                            gue_hdr[2..4]
                                .copy_from_slice(&chance::SECOND_CHANCE_FLAG.to_be_bytes());
                        }
                        gue::HEADER_LEN
                    }
                };
                let gue_len = match self.field {
                    Some(f) => {
                        gue_hdr
                            .get_mut(base..base + chance::FIELD_LEN)
                            .ok_or(BuildError::BufferTooSmall)?
                            .copy_from_slice(f);
                        base + chance::FIELD_LEN
                    }
                    None => base,
                };
                let mut udp = UdpPacket::new_unchecked(&mut udp_hdr[..]);
                // Checksum 0 first: the port setters update a non-zero checksum incrementally.
                udp.set_checksum(0);
                udp.set_src_port(gue_src_port(self.flow_hash));
                udp.set_dst_port(port);
                udp.set_len(self.udp_len);
                if let Some(pseudo) = self.udp_pseudo {
                    let sum = checksum::combine(&[
                        pseudo,
                        checksum::data(udp_hdr),
                        checksum::data(&gue_hdr[..gue_len]),
                        checksum::data(inner),
                    ]);
                    UdpPacket::new_unchecked(&mut udp_hdr[..])
                        .set_checksum(wire::udp::nonzero_checksum(!sum));
                }
            }
        }
        Ok(())
    }
}

/// The GUE UDP source port for a flow: `49152 + flow_hash % 16384`.
pub const fn gue_src_port(flow_hash: u32) -> u16 {
    GUE_SRC_PORT_BASE + (flow_hash % 16384) as u16
}

/// What [`strip_ip`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stripped {
    /// Outer source: the director that sent it (check it against an allow-list).
    pub outer_src: Ipv4Addr,
    /// Outer destination: this real server's tunnel address.
    pub outer_dst: Ipv4Addr,
    /// The inner packet's bytes in the received buffer (its total length, no padding).
    pub inner: Range<usize>,
    /// The inner packet's family (IPv6 in an IPIP tunnel is protocol 41, as sit sends it).
    pub family: Family,
}

/// Validates a tunnel packet as a raw IP socket delivers it (starting at the outer IPv4
/// header) and finds the inner packet.
///
/// Checks the outer header (version, lengths, checksum, not a fragment, protocol 4 or 41 for
/// [`TunnelType::Ipip`], 47 for [`TunnelType::Gre`], 17 for [`TunnelType::Gue`]). GRE (RFC
/// 2784/2890): version 0, no RFC 1701 routing bits, protocol type 0x0800 or 0x86DD, the checksum
/// verified when present, the key equal to `gre_key` (a missing key when one is expected, or
/// a key when none is, is [`StripError::GreKeyMismatch`]), sequence numbers skipped. GUE: the
/// UDP length and a non-zero UDP checksum are checked (the port is the caller's business),
/// then as [`strip_gue`]. Finally the inner packet must be of the family the tunnel header
/// announces (protocol 4 / 41, 0x0800 / 0x86DD, GUE Proto 4 / 41) with sane header and total
/// lengths that fit the outer payload; [`Stripped::family`] says which it is.
pub fn strip_ip(
    packet: &[u8],
    tun: TunnelType,
    gre_key: Option<u32>,
) -> Result<Stripped, StripError> {
    strip_ip_with(packet, tun, gre_key, GreChecksum::Verify)
}

/// Whether [`strip_ip_with`] verifies a GRE checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GreChecksum {
    /// Verify it when the C bit is set (what [`strip_ip`] does).
    Verify,
    /// Do not: the receiver knows it was verified already, e.g. a packet the kernel's GRO
    /// merged (it checks each segment's GRE checksum before merging and leaves the first
    /// segment's in the merged header).
    Skip,
}

/// [`strip_ip`], with the GRE checksum verified or not as `csum` says.
pub fn strip_ip_with(
    packet: &[u8],
    tun: TunnelType,
    gre_key: Option<u32>,
    csum: GreChecksum,
) -> Result<Stripped, StripError> {
    let outer = Ipv4Packet::new_checked(packet).map_err(|e| match e {
        wire::Error::Truncated => StripError::Truncated,
        _ => StripError::BadOuterHeader,
    })?;
    if !outer.verify_checksum() {
        return Err(StripError::BadOuterChecksum);
    }
    if outer.is_fragment() {
        return Err(StripError::OuterFragment);
    }
    let payload = outer.payload();
    let inner = match (tun, outer.protocol()) {
        (TunnelType::Ipip, proto) => ipip::strip(payload, proto)?,
        (TunnelType::Gre, IpProtocol::GRE) => gre::strip(payload, gre_key, csum)?,
        (TunnelType::Gue, IpProtocol::UDP) => {
            let udp = UdpPacket::new_checked(payload).map_err(|e| match e {
                wire::Error::Truncated => StripError::Truncated,
                _ => StripError::BadUdp,
            })?;
            if !udp.verify_checksum(outer.src_addr(), outer.dst_addr()) {
                return Err(StripError::BadUdpChecksum);
            }
            gue::strip(udp.payload())?.offset(wire::udp::HEADER_LEN)
        }
        _ => return Err(StripError::WrongProtocol),
    };
    Ok(Stripped {
        outer_src: outer.src_addr(),
        outer_dst: outer.dst_addr(),
        inner: offset(inner.range, outer.header_len()),
        family: inner.family,
    })
}

/// Validates a UDP payload received on the GUE port and returns the inner packet's range in
/// it: GUE variant 0 data message (C = 0) carrying protocol 4 or 41 (extension fields skipped,
/// flags ignored), or variant 1 with an IPv4 or IPv6 packet directly (first nibble 4 or 6).
/// [`strip_gue_inner`] also says which family it is.
pub fn strip_gue(payload: &[u8]) -> Result<Range<usize>, StripError> {
    gue::strip(payload).map(|i| i.range)
}

/// [`strip_gue`], with the inner packet's family.
pub fn strip_gue_inner(payload: &[u8]) -> Result<Inner, StripError> {
    gue::strip(payload)
}

/// Shifts a range by `by`.
fn offset(r: Range<usize>, by: usize) -> Range<usize> {
    r.start + by..r.end + by
}

/// Checks that `buf[start..]` begins with a sane IPv4 or IPv6 packet and returns its range in
/// `buf` (up to its total length). The caller reads the family from the first byte, or uses
/// [`inner_at`].
pub(crate) fn inner_range(buf: &[u8], start: usize) -> Result<Range<usize>, StripError> {
    inner_at(buf, start, None).map(|i| i.range)
}

/// Checks that `buf[start..]` begins with a sane packet of the family `want` (either when
/// `None`): IPv4 with a valid header and total length, or IPv6 whose payload length (not 0: no
/// jumbograms) fits; returns its range in `buf` and family. A packet of the other family is
/// [`StripError::InnerWrongFamily`], of neither [`StripError::InnerNotIpv4`].
pub(crate) fn inner_at(
    buf: &[u8],
    start: usize,
    want: Option<Family>,
) -> Result<Inner, StripError> {
    let rest = buf.get(start..).ok_or(StripError::Truncated)?;
    let family = match rest.first().map(|b| b >> 4) {
        Some(4) => Family::Ipv4,
        Some(6) => Family::Ipv6,
        Some(_) => return Err(StripError::InnerNotIpv4),
        None => return Err(StripError::InnerMalformed),
    };
    if want.is_some_and(|w| w != family) {
        return Err(StripError::InnerWrongFamily);
    }
    let len = match family {
        Family::Ipv4 => {
            let inner = Ipv4Packet::new_checked(rest).map_err(|e| match e {
                wire::Error::BadVersion => StripError::InnerNotIpv4,
                _ => StripError::InnerMalformed,
            })?;
            inner.total_len() as usize
        }
        Family::Ipv6 => {
            let plen = match rest.get(4..6) {
                Some(b) if rest.len() >= wire::ipv6::HEADER_LEN => u16::from_be_bytes([b[0], b[1]]),
                _ => return Err(StripError::InnerMalformed),
            };
            let len = wire::ipv6::HEADER_LEN + plen as usize;
            if plen == 0 || len > rest.len() {
                return Err(StripError::InnerMalformed);
            }
            len
        }
    };
    Ok(Inner {
        range: start..start + len,
        family,
    })
}

macro_rules! labelled_enum {
    (
        $(#[$meta:meta])* $name:ident {
            $($(#[$doc:meta])* $variant:ident => $label:literal, $msg:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum $name {
            $($(#[$doc])* #[error($msg)] $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order (index = `self as usize`).
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// A stable snake_case label, used as a metric label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
        }
    };
}

labelled_enum! {
    /// Why a received tunnel packet was refused.
    StripError {
        /// Shorter than the outer IPv4 header or a tunnel header.
        Truncated => "truncated", "packet shorter than its headers",
        /// Outer header is not IPv4, or its header/total length is wrong.
        BadOuterHeader => "bad_outer_header", "malformed outer IPv4 header",
        /// Outer IPv4 header checksum does not verify.
        BadOuterChecksum => "bad_outer_checksum", "bad outer IPv4 header checksum",
        /// The outer packet is a fragment (reassembly is not done).
        OuterFragment => "outer_fragment", "outer packet is a fragment",
        /// The outer protocol does not match the tunnel type.
        WrongProtocol => "wrong_protocol", "outer protocol does not match the tunnel type",
        /// GRE version is not 0.
        GreBadVersion => "gre_bad_version", "GRE version is not 0",
        /// GRE has RFC 1701 bits set (routing, strict source route, recursion).
        GreBadFlags => "gre_bad_flags", "GRE header has RFC 1701 routing bits set",
        /// GRE protocol type is neither IPv4 (0x0800) nor IPv6 (0x86DD).
        GreBadProtocol => "gre_bad_protocol", "GRE protocol type is not IPv4 or IPv6",
        /// GRE checksum present (C bit, e.g. a director's `--tun-csum`) and wrong.
        GreBadChecksum => "gre_bad_checksum", "bad GRE checksum",
        /// GRE key missing, unexpected, or different from the configured one.
        GreKeyMismatch => "gre_key_mismatch", "GRE key does not match",
        /// UDP length field wrong (GUE over a raw socket).
        BadUdp => "bad_udp", "malformed UDP header",
        /// UDP checksum non-zero and wrong (GUE over a raw socket).
        BadUdpChecksum => "bad_udp_checksum", "bad UDP checksum",
        /// GUE variant is 2 or 3.
        GueBadVersion => "gue_bad_version", "unknown GUE variant",
        /// GUE control message (C bit), not data.
        GueControl => "gue_control", "GUE control message",
        /// GUE carries a protocol other than IPv4 (4) or IPv6 (41).
        GueBadProtocol => "gue_bad_protocol", "GUE payload protocol is not IPv4 or IPv6",
        /// The inner packet is not IPv4 (nor IPv6, where IPv6 is accepted).
        InnerNotIpv4 => "inner_not_ipv4", "inner packet is not IPv4",
        /// The inner header or total length is wrong, or does not fit the outer payload.
        InnerMalformed => "inner_malformed", "malformed inner packet",
        /// The inner packet's version is not the family its tunnel header announced (IPv6
        /// under protocol 4, 0x0800 or GUE 4; IPv4 under 41, 0x86DD or GUE 41).
        InnerWrongFamily => "inner_wrong_family", "inner packet's version differs from what the tunnel header announces",
        /// UDP over IPv6 with a zero checksum, not allowed on this tunnel (RFC 8200 §8.1; RFC
        /// 6935/6936 zero checksums only where [`Udp6Zero::Allowed`]).
        Udp6ZeroChecksum => "udp6_zero_checksum", "zero UDP checksum over IPv6",
    }
}

labelled_enum! {
    /// Why [`build_outer`] could not build a header.
    BuildError {
        /// The inner packet is neither IPv4 (20 bytes at least) nor IPv6 (40 at least).
        InnerNotIp => "inner_not_ip", "inner packet is not IPv4 or IPv6",
        /// Inner packet plus outer header exceed 65535 bytes.
        TooBig => "too_big", "encapsulated packet would exceed 65535 bytes",
        /// The output buffer is too small for the header (a `Repr::emit` into a short slice).
        BufferTooSmall => "buffer_too_small", "output buffer too small",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;

    /// The inner packet every tunnel test carries: UDP 10.0.0.1:40000 -> 10.0.0.100:53 "ping",
    /// TOS 0xb8 (EF), DF, TTL 63.
    pub(crate) static INNER: [u8; 32] = [
        0x45, 0xb8, 0x00, 0x20, 0x42, 0x42, 0x40, 0x00, 0x3f, 0x11, 0xe4, 0x6e, //
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x64, 0x9c, 0x40, 0x00, 0x35, //
        0x00, 0x0c, 0x70, 0x2b, 0x70, 0x69, 0x6e, 0x67,
    ];

    /// Director 192.168.1.1 to real server 192.168.1.10, flow hash 0xdeadbeef, `tunnel`.
    pub(crate) fn params_for(tunnel: Tunnel) -> OuterParams {
        OuterParams {
            src: Ipv4Addr::new(192, 168, 1, 1),
            dst: Ipv4Addr::new(192, 168, 1, 10),
            tunnel,
            flow_hash: 0xdead_beef,
        }
    }

    /// [`params_for`] the tunnel of kind `tun` with the defaults: no key, no checksum, GUE
    /// port 6080.
    pub(crate) fn params(tun: TunnelType) -> OuterParams {
        params_for(Tunnel::new(tun, DEFAULT_GUE_PORT, false, None))
    }

    const ALL_TUNNELS: [TunnelType; 3] = [TunnelType::Ipip, TunnelType::Gre, TunnelType::Gue];

    /// Every tunnel with every option a test may care about.
    pub(crate) const EVERY_TUNNEL: [Tunnel; 8] = [
        Tunnel::Ipip,
        Tunnel::Gre {
            key: None,
            csum: false,
        },
        Tunnel::Gre {
            key: Some(42),
            csum: false,
        },
        Tunnel::Gre {
            key: None,
            csum: true,
        },
        Tunnel::Gre {
            key: Some(42),
            csum: true,
        },
        Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum: false,
        },
        Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum: true,
        },
        Tunnel::Gue {
            port: 7000,
            csum: false,
        },
    ];

    #[test]
    fn overheads() {
        let o = |t| overhead(&t);
        assert_eq!(o(Tunnel::Ipip), 20);
        for (key, csum, want) in [
            (None, false, 24),
            (Some(1), false, 28),
            (None, true, 28),
            (Some(1), true, 32),
        ] {
            assert_eq!(o(Tunnel::Gre { key, csum }), want);
        }
        assert_eq!(
            o(Tunnel::Gue {
                port: 1,
                csum: false
            }),
            32
        );
        assert_eq!(
            o(Tunnel::Gue {
                port: 1,
                csum: true
            }),
            32
        );
        for t in EVERY_TUNNEL {
            assert!(overhead(&t) <= MAX_OUTER_HEADER);
        }
    }

    #[test]
    fn a_tunnel_keeps_the_options_of_its_kind() {
        for kind in ALL_TUNNELS {
            let t = Tunnel::new(kind, 7000, true, Some(9));
            assert_eq!(t.kind(), kind);
            assert_eq!(t.ip_protocol(), kind.ip_protocol());
        }
        assert_eq!(
            Tunnel::new(TunnelType::Ipip, 7000, true, Some(9)),
            Tunnel::Ipip
        );
        assert_eq!(
            Tunnel::new(TunnelType::Gre, 7000, true, Some(9)),
            Tunnel::Gre {
                key: Some(9),
                csum: true
            }
        );
        assert_eq!(
            Tunnel::new(TunnelType::Gue, 7000, true, Some(9)),
            Tunnel::Gue {
                port: 7000,
                csum: true
            }
        );
        assert_eq!(
            Tunnel::new(TunnelType::Gre, 1, false, Some(9)).gre_key(),
            Some(9)
        );
        assert_eq!(
            Tunnel::new(TunnelType::Gue, 1, false, Some(9)).gre_key(),
            None
        );
    }

    #[test]
    fn labels_are_unique_snake_case() {
        let labels = StripError::ALL
            .iter()
            .map(|e| e.as_str())
            .chain(BuildError::ALL.iter().map(|e| e.as_str()));
        for l in labels {
            assert!(l
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
        }
        for (i, e) in StripError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
            assert!(StripError::ALL[i + 1..]
                .iter()
                .all(|o| o.as_str() != e.as_str()));
        }
        assert_eq!(
            StripError::GreKeyMismatch.to_string(),
            "GRE key does not match"
        );
    }

    #[test]
    fn build_refuses_non_ip_and_oversize() {
        let mut out = [0u8; MAX_OUTER_HEADER];
        for t in EVERY_TUNNEL {
            let p = params_for(t);
            assert_eq!(
                build_outer(&p, &INNER[..19], &mut out),
                Err(BuildError::InnerNotIp)
            );
            // 32 bytes marked IPv6: shorter than an IPv6 header.
            let mut v6 = INNER;
            v6[0] = 0x60;
            assert_eq!(build_outer(&p, &v6, &mut out), Err(BuildError::InnerNotIp));
            let mut v5 = INNER;
            v5[0] = 0x55;
            assert_eq!(build_outer(&p, &v5, &mut out), Err(BuildError::InnerNotIp));
            let mut big = vec![0u8; 65_535 - overhead(&t) + 1];
            big[..32].copy_from_slice(&INNER);
            assert_eq!(build_outer(&p, &big, &mut out), Err(BuildError::TooBig));
            big.pop();
            assert_eq!(build_outer(&p, &big, &mut out), Ok(overhead(&t)));
        }
    }

    /// Whatever the flow hash, key, checksum option or TOS, a built header in front of the
    /// inner packet strips back to exactly that packet, and the outer header carries the
    /// inner TOS and DF.
    #[test]
    fn build_then_strip_round_trips() {
        let mut rng = Rng(11);
        let mut pkt = [0u8; MAX_OUTER_HEADER + 32];
        for round in 0..3_000 {
            let mut inner = INNER;
            inner[1] = rng.next_u64() as u8;
            inner[6] = if rng.below(2) == 0 { 0x40 } else { 0 };
            let csum = rng.below(2) == 0;
            let tunnel = Tunnel::new(
                ALL_TUNNELS[round % 3],
                rng.next_u64() as u16,
                csum,
                (rng.below(2) == 0).then(|| rng.next_u64() as u32),
            );
            let p = OuterParams {
                flow_hash: rng.next_u64() as u32,
                src: Ipv4Addr::from(rng.next_u64() as u32),
                ..params_for(tunnel)
            };
            let mut out = [0u8; MAX_OUTER_HEADER];
            let n = build_outer(&p, &inner, &mut out).unwrap();
            assert_eq!(n, overhead(&tunnel));
            pkt[..n].copy_from_slice(&out[..n]);
            pkt[n..n + 32].copy_from_slice(&inner);
            let outer = Ipv4Packet::new_checked(&pkt[..n + 32]).unwrap();
            assert_eq!(outer.dscp_ecn(), inner[1]);
            assert_eq!(outer.dont_frag(), inner[6] == 0x40);
            assert_eq!(outer.ttl(), OUTER_TTL);
            assert_eq!(outer.ident(), 0);
            let s = strip_ip(&pkt[..n + 32], tunnel.kind(), tunnel.gre_key()).unwrap();
            assert_eq!(s.inner, n..n + 32);
            assert_eq!((s.outer_src, s.outer_dst), (p.src, p.dst));
            match tunnel {
                Tunnel::Gue { port, csum } => {
                    let udp = UdpPacket::new_checked(outer.payload()).unwrap();
                    assert_eq!(udp.src_port(), gue_src_port(p.flow_hash));
                    assert_eq!(udp.dst_port(), port);
                    assert_eq!(udp.checksum() != 0, csum);
                }
                Tunnel::Gre { csum, .. } => {
                    let h = gre::GreHeader::new_checked(outer.payload()).unwrap();
                    assert_eq!(h.checksum_present(), csum);
                }
                Tunnel::Ipip => {}
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(12);
        let mut buf = [0u8; 96];
        for round in 0..30_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            // Make the garbage pass the early checks often enough to reach the deep ones.
            if n > 0 && round % 2 == 0 {
                buf[0] = 0x45;
            }
            for t in ALL_TUNNELS {
                let _ = strip_ip(&buf[..n], t, None);
                let _ = strip_ip(&buf[..n], t, Some(1));
            }
            let _ = strip_gue(&buf[..n]);
        }
    }
}

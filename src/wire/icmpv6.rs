//! ICMP for IPv6 (RFC 4443) and the Neighbor Discovery messages the director answers
//! (RFC 4861): the [`Icmpv6Packet`] view, Neighbor Solicitation / Advertisement parse
//! ([`parse_ndp`]) and build ([`NeighborSolicit`], [`NeighborAdvert`], with the Ethernet frame
//! for the VIPs' NDP responder), and ICMPv6 errors built in place over the offending packet
//! ([`packet_too_big_in_place`], [`dest_unreachable_in_place`]).
//!
//! The ICMPv6 checksum covers the IPv6 pseudo-header (RFC 4443 §2.3), so every checksum
//! method takes the addresses.

use std::net::Ipv6Addr;

use super::checksum;
use super::ethernet::{EtherType, EthernetRepr, HEADER_LEN as ETHERNET_HEADER_LEN};
use super::ipv6::{self, Ipv6Packet, Ipv6Repr};
use super::ipv6_ext;
use super::{get_u16, get_u32, put_u16, put_u32, Error, IpProtocol};

mod field {
    use core::ops::Range;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    /// NS/NA: the target address after the 4-byte flags/reserved word.
    pub const TARGET: Range<usize> = 8..24;
}

/// Length of the ICMPv6 header (type, code, checksum, the 4-byte type-specific word).
pub const HEADER_LEN: usize = field::REST.end;

/// Length of a Neighbor Solicitation or Advertisement without options.
pub const NDP_LEN: usize = field::TARGET.end;

/// Length of a source/target link-layer address option for Ethernet.
pub const LLADDR_OPTION_LEN: usize = 8;

/// ICMPv6 message types the data path knows.
pub mod msg_type {
    /// Destination unreachable (error).
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big (error), with the next-hop MTU.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded (error).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem (error), with a pointer.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router Solicitation (NDP).
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router Advertisement (NDP).
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbor Solicitation (NDP).
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor Advertisement (NDP).
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect (NDP).
    pub const REDIRECT: u8 = 137;

    /// Whether `t` is an error message (types 0..=127), which quotes the invoking packet.
    pub const fn is_error(t: u8) -> bool {
        t < 128
    }
}

/// Destination unreachable codes (RFC 4443 §3.1).
pub mod unreach_code {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Beyond the scope of the source address.
    pub const BEYOND_SCOPE: u8 = 2;
    /// Address unreachable.
    pub const ADDR_UNREACHABLE: u8 = 3;
    /// Port unreachable.
    pub const PORT_UNREACHABLE: u8 = 4;
    /// Source address failed ingress/egress policy.
    pub const POLICY_FAILED: u8 = 5;
    /// Reject route to destination.
    pub const REJECT_ROUTE: u8 = 6;
}

/// Parameter problem code: unrecognized IPv6 option (an error is due even to multicast).
pub const CODE_UNRECOGNIZED_OPTION: u8 = 2;

/// Hop limit of the errors this module builds.
pub const REPLY_HOP_LIMIT: u8 = 64;
/// Traffic class of the errors this module builds: DSCP CS6 (network control), like the
/// ICMPv4 errors ([`icmp::REPLY_TOS`](super::icmp::REPLY_TOS)).
pub const REPLY_TRAFFIC_CLASS: u8 = 0xc0;
/// Hop limit every Neighbor Discovery message has, sent and accepted (RFC 4861 §7.1).
pub const NDP_HOP_LIMIT: u8 = 255;

/// The all-nodes link-local multicast address, ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet address of [`ALL_NODES`], 33:33:00:00:00:01.
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The solicited-node multicast address of `addr` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX with
/// the address's low 24 bits; where a Neighbor Solicitation for `addr` is sent.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// Whether `addr` is a solicited-node multicast address (ff02::1:ff00:0/104).
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    let o = addr.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The Ethernet address of an IPv6 multicast address (RFC 2464 §7): 33:33 and its low 32
/// bits; for a solicited-node address 33:33:ff:XX:XX:XX.
pub fn multicast_mac(addr: Ipv6Addr) -> [u8; 6] {
    let o = addr.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// A view of an ICMPv6 message; the buffer is the upper-layer packet, exactly (its length is
/// the one the pseudo-header covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 8-byte header (every message RFC 4443
    /// and RFC 4861 define has at least that).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The message type (see [`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether the checksum over the IPv6 pseudo-header (`src`, `dst`, the buffer's length,
    /// next header 58) and the whole buffer is right.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::upper_layer_v6(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref()) == 0xffff
    }

    /// The 4 bytes after the checksum, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST.start)
    }

    /// Whether this is an error message (types 0..=127).
    pub fn is_error(&self) -> bool {
        msg_type::is_error(self.msg_type())
    }

    /// For Packet Too Big: the MTU of the next-hop link.
    pub fn mtu(&self) -> Option<u32> {
        (self.msg_type() == msg_type::PACKET_TOO_BIG).then(|| self.rest_of_header())
    }

    /// For Parameter Problem: the offset in the invoking packet where the problem was found.
    pub fn pointer(&self) -> Option<u32> {
        (self.msg_type() == msg_type::PARAM_PROBLEM).then(|| self.rest_of_header())
    }

    /// For echo request and reply: the identifier.
    pub fn echo_ident(&self) -> Option<u16> {
        self.is_echo()
            .then(|| get_u16(self.buffer.as_ref(), field::ECHO_IDENT.start))
    }

    /// For echo request and reply: the sequence number.
    pub fn echo_seq(&self) -> Option<u16> {
        self.is_echo()
            .then(|| get_u16(self.buffer.as_ref(), field::ECHO_SEQ.start))
    }

    fn is_echo(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY
        )
    }

    /// For an error message: the quoted (invoking) packet, an IPv6 header and as much of the
    /// rest as fitted. Its payload length usually exceeds the quote: parse the fixed header
    /// with [`Ipv6Packet::new_unchecked`] after checking the 40 bytes are there.
    pub fn invoking_packet(&self) -> Option<&[u8]> {
        self.is_error().then(|| self.data())
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the type. The checksum is not updated.
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    /// Sets the code. The checksum is not updated.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Sets the checksum field as given.
    pub fn set_checksum(&mut self, csum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Sets the 4 bytes after the checksum. The checksum is not updated.
    pub fn set_rest_of_header(&mut self, rest: u32) {
        put_u32(self.buffer.as_mut(), field::REST.start, rest);
    }

    /// Computes the checksum over the pseudo-header and the whole buffer and stores it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let sum = checksum::upper_layer_v6(src, dst, IpProtocol::ICMPV6, self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// Updates the checksum for an address of the pseudo-header that changed (NAT66).
    pub fn update_checksum_for_addr(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let c = checksum::update_addr_v6(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Everything after the 8-byte header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// Why [`parse_ndp`] refused a packet (RFC 4861 §7.1 validity checks). `as_str()` is the
/// drop-reason label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NdpError {
    /// Not an ICMPv6 Neighbor Solicitation or Advertisement (another protocol or type, or
    /// extension headers that do not walk).
    #[error("not a neighbor solicitation or advertisement")]
    NotNdp,
    /// Fragmented: NDP messages are never fragmented.
    #[error("fragmented NDP message")]
    Fragment,
    /// The IPv6 hop limit is not 255 (the message crossed a router).
    #[error("NDP hop limit not 255")]
    HopLimit,
    /// The ICMPv6 checksum does not verify.
    #[error("NDP bad checksum")]
    Checksum,
    /// The ICMPv6 code is not 0.
    #[error("NDP code not 0")]
    Code,
    /// The ICMPv6 message is shorter than 24 bytes.
    #[error("NDP message shorter than 24 bytes")]
    Length,
    /// The target address is multicast.
    #[error("NDP target is multicast")]
    TargetMulticast,
    /// An option of length 0, or one running past the message.
    #[error("NDP bad option")]
    Option,
    /// A solicitation from the unspecified address (duplicate address detection) not sent
    /// to a solicited-node address, or carrying a source link-layer address option.
    #[error("NDP bad duplicate address detection")]
    Dad,
    /// An advertisement to a multicast address with the Solicited flag set.
    #[error("NDP solicited advertisement to multicast")]
    SolicitedMulticast,
    /// A multicast source address (never valid, RFC 4291 §2.7).
    #[error("NDP from a multicast source")]
    SourceMulticast,
}

impl NdpError {
    /// A stable snake_case label, usable as a metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            NdpError::NotNdp => "ndp_not_ndp",
            NdpError::Fragment => "ndp_fragment",
            NdpError::HopLimit => "ndp_hop_limit",
            NdpError::Checksum => "ndp_checksum",
            NdpError::Code => "ndp_code",
            NdpError::Length => "ndp_length",
            NdpError::TargetMulticast => "ndp_target_multicast",
            NdpError::Option => "ndp_option",
            NdpError::Dad => "ndp_dad",
            NdpError::SolicitedMulticast => "ndp_solicited_multicast",
            NdpError::SourceMulticast => "ndp_source_multicast",
        }
    }

    /// Every refusal, for tests and for pre-registering metric labels.
    pub const ALL: [NdpError; 11] = [
        NdpError::NotNdp,
        NdpError::Fragment,
        NdpError::HopLimit,
        NdpError::Checksum,
        NdpError::Code,
        NdpError::Length,
        NdpError::TargetMulticast,
        NdpError::Option,
        NdpError::Dad,
        NdpError::SolicitedMulticast,
        NdpError::SourceMulticast,
    ];
}

/// NDP option types (RFC 4861 §4.6).
mod option_type {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
}

/// A Neighbor Solicitation (RFC 4861 §4.3): who asks, for which target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighborSolicit {
    /// IPv6 source (unspecified for duplicate address detection).
    pub src: Ipv6Addr,
    /// IPv6 destination (the target's solicited-node address, or the target for a unicast
    /// reachability probe).
    pub dst: Ipv6Addr,
    /// The address asked about.
    pub target: Ipv6Addr,
    /// The source link-layer address option (Ethernet), if present.
    pub source_mac: Option<[u8; 6]>,
}

/// A Neighbor Advertisement (RFC 4861 §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NeighborAdvert {
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination (the soliciting node, or all-nodes).
    pub dst: Ipv6Addr,
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in answer to a solicitation.
    pub solicited: bool,
    /// O: override an existing cache entry.
    pub override_: bool,
    /// The address advertised.
    pub target: Ipv6Addr,
    /// The target link-layer address option (Ethernet), if present.
    pub target_mac: Option<[u8; 6]>,
}

/// A parsed Neighbor Discovery message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ndp {
    /// Neighbor Solicitation.
    Solicit(NeighborSolicit),
    /// Neighbor Advertisement.
    Advert(NeighborAdvert),
}

const FLAG_ROUTER: u32 = 0x8000_0000;
const FLAG_SOLICITED: u32 = 0x4000_0000;
const FLAG_OVERRIDE: u32 = 0x2000_0000;

/// Parses a Neighbor Solicitation or Advertisement in `ip` with the validity checks of RFC
/// 4861 §7.1.1 and §7.1.2: hop limit 255, checksum, code 0, at least 24 bytes, target not
/// multicast, every option with a length > 0 inside the message; a solicitation from the
/// unspecified address goes to a solicited-node address without a source link-layer address
/// option; an advertisement to multicast has S clear; the source is not multicast. Extension headers are walked
/// ([`ipv6_ext::walk`]); a fragment is refused. Link-layer address options other than 6-byte
/// (8-byte option) Ethernet ones and unknown options are skipped.
pub fn parse_ndp<T: AsRef<[u8]>>(ip: &Ipv6Packet<T>) -> Result<Ndp, NdpError> {
    let chain = ipv6_ext::walk(ip).map_err(|_| NdpError::NotNdp)?;
    if chain.upper != IpProtocol::ICMPV6 {
        return Err(NdpError::NotNdp);
    }
    if chain.fragment.is_some() {
        return Err(NdpError::Fragment);
    }
    let msg = &ip.packet()[chain.upper_offset..];
    let icmp = Icmpv6Packet::new_checked(msg).map_err(|_| NdpError::NotNdp)?;
    let t = icmp.msg_type();
    if t != msg_type::NEIGHBOR_SOLICIT && t != msg_type::NEIGHBOR_ADVERT {
        return Err(NdpError::NotNdp);
    }
    if ip.hop_limit() != NDP_HOP_LIMIT {
        return Err(NdpError::HopLimit);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !icmp.verify_checksum(src, dst) {
        return Err(NdpError::Checksum);
    }
    if src.is_multicast() {
        return Err(NdpError::SourceMulticast);
    }
    if icmp.code() != 0 {
        return Err(NdpError::Code);
    }
    if msg.len() < NDP_LEN {
        return Err(NdpError::Length);
    }
    let target = ipv6::addr(&msg[field::TARGET]);
    if target.is_multicast() {
        return Err(NdpError::TargetMulticast);
    }
    let wanted = if t == msg_type::NEIGHBOR_SOLICIT {
        option_type::SOURCE_LLADDR
    } else {
        option_type::TARGET_LLADDR
    };
    let mut mac = None;
    let mut seen_lladdr = false;
    let mut opts = &msg[NDP_LEN..];
    while let [kind, len, ..] = *opts {
        let n = usize::from(len) * 8;
        if n == 0 || n > opts.len() {
            return Err(NdpError::Option);
        }
        if kind == wanted {
            seen_lladdr = true;
            if n == LLADDR_OPTION_LEN && mac.is_none() {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opts[2..8]);
                mac = Some(m);
            }
        }
        opts = &opts[n..];
    }
    if !opts.is_empty() {
        // One stray byte: an option cut short.
        return Err(NdpError::Option);
    }
    let flags = icmp.rest_of_header();
    if t == msg_type::NEIGHBOR_SOLICIT {
        if src.is_unspecified() && (!is_solicited_node(dst) || seen_lladdr) {
            return Err(NdpError::Dad);
        }
        Ok(Ndp::Solicit(NeighborSolicit {
            src,
            dst,
            target,
            source_mac: mac,
        }))
    } else {
        let solicited = flags & FLAG_SOLICITED != 0;
        if dst.is_multicast() && solicited {
            return Err(NdpError::SolicitedMulticast);
        }
        Ok(Ndp::Advert(NeighborAdvert {
            src,
            dst,
            router: flags & FLAG_ROUTER != 0,
            solicited,
            override_: flags & FLAG_OVERRIDE != 0,
            target,
            target_mac: mac,
        }))
    }
}

/// Writes an IPv6 header (hop limit 255) and an NS/NA body with an optional link-layer
/// address option into `buf`, checksum filled; returns the length.
fn emit_ndp(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    icmp_type: u8,
    flags: u32,
    target: Ipv6Addr,
    lladdr: Option<(u8, [u8; 6])>,
) -> Result<usize, Error> {
    let icmp_len = NDP_LEN
        + if lladdr.is_some() {
            LLADDR_OPTION_LEN
        } else {
            0
        };
    let len = ipv6::HEADER_LEN + icmp_len;
    let buf = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
    Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::ICMPV6,
        hop_limit: NDP_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
        payload_len: icmp_len,
    }
    .emit(buf)?;
    let msg = &mut buf[ipv6::HEADER_LEN..];
    msg[field::TARGET].copy_from_slice(&target.octets());
    if let Some((kind, mac)) = lladdr {
        msg[NDP_LEN] = kind;
        msg[NDP_LEN + 1] = 1;
        msg[NDP_LEN + 2..NDP_LEN + 8].copy_from_slice(&mac);
    }
    let mut icmp = Icmpv6Packet::new_unchecked(msg);
    icmp.set_msg_type(icmp_type);
    icmp.set_code(0);
    icmp.set_rest_of_header(flags);
    icmp.fill_checksum(src, dst);
    Ok(len)
}

/// Writes an Ethernet header and then what `body` writes after it; returns the frame length.
fn emit_frame(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    body: impl FnOnce(&mut [u8]) -> Result<usize, Error>,
) -> Result<usize, Error> {
    let eth = EthernetRepr {
        dst_addr: dst_mac,
        src_addr: src_mac,
        ethertype: EtherType::IPV6,
    };
    eth.emit(buf).map_err(|_| Error::BufferTooSmall)?;
    Ok(ETHERNET_HEADER_LEN + body(&mut buf[ETHERNET_HEADER_LEN..])?)
}

impl NeighborSolicit {
    /// A solicitation from `src` (with its MAC as source link-layer address option) for
    /// `target`, sent to the target's solicited-node address.
    pub fn for_target(src: Ipv6Addr, src_mac: [u8; 6], target: Ipv6Addr) -> NeighborSolicit {
        NeighborSolicit {
            src,
            dst: solicited_node(target),
            target,
            source_mac: Some(src_mac),
        }
    }

    /// Bytes [`emit`](Self::emit) writes: the IPv6 packet (40 + 24, + 8 with the option).
    pub fn buffer_len(&self) -> usize {
        ipv6::HEADER_LEN + NDP_LEN + self.source_mac.map_or(0, |_| LLADDR_OPTION_LEN)
    }

    /// Writes the IPv6 packet (hop limit 255, checksum filled) into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let opt = self.source_mac.map(|m| (option_type::SOURCE_LLADDR, m));
        let t = msg_type::NEIGHBOR_SOLICIT;
        emit_ndp(buf, self.src, self.dst, t, 0, self.target, opt)
    }

    /// Writes the Ethernet frame (to the multicast MAC of a multicast destination, else to
    /// `unicast_mac`) from `src_mac`; returns its length.
    pub fn emit_frame(
        &self,
        src_mac: [u8; 6],
        unicast_mac: [u8; 6],
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let dst_mac = if self.dst.is_multicast() {
            multicast_mac(self.dst)
        } else {
            unicast_mac
        };
        emit_frame(buf, dst_mac, src_mac, |b| self.emit(b))
    }
}

impl NeighborAdvert {
    /// The advertisement answering `ns` for its target with `our_mac` (RFC 4861 §7.2.4): from
    /// the target, S set and to the solicitation's source; to all-nodes with S clear if the
    /// source was unspecified (duplicate address detection). O set (a VIP is not an anycast
    /// address), R clear, the target link-layer address option always included.
    pub fn answering(ns: &NeighborSolicit, our_mac: [u8; 6]) -> NeighborAdvert {
        let dad = ns.src.is_unspecified();
        NeighborAdvert {
            src: ns.target,
            dst: if dad { ALL_NODES } else { ns.src },
            router: false,
            solicited: !dad,
            override_: true,
            target: ns.target,
            target_mac: Some(our_mac),
        }
    }

    /// An unsolicited advertisement of `target` at `mac` to all-nodes with O set (RFC 4861
    /// §7.2.6), sent at takeover so neighbours update their caches.
    pub fn unsolicited(target: Ipv6Addr, mac: [u8; 6]) -> NeighborAdvert {
        NeighborAdvert {
            src: target,
            dst: ALL_NODES,
            router: false,
            solicited: false,
            override_: true,
            target,
            target_mac: Some(mac),
        }
    }

    fn flags(&self) -> u32 {
        (if self.router { FLAG_ROUTER } else { 0 })
            | (if self.solicited { FLAG_SOLICITED } else { 0 })
            | (if self.override_ { FLAG_OVERRIDE } else { 0 })
    }

    /// Bytes [`emit`](Self::emit) writes: the IPv6 packet (40 + 24, + 8 with the option).
    pub fn buffer_len(&self) -> usize {
        ipv6::HEADER_LEN + NDP_LEN + self.target_mac.map_or(0, |_| LLADDR_OPTION_LEN)
    }

    /// Writes the IPv6 packet (hop limit 255, checksum filled) into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let opt = self.target_mac.map(|m| (option_type::TARGET_LLADDR, m));
        let t = msg_type::NEIGHBOR_ADVERT;
        emit_ndp(buf, self.src, self.dst, t, self.flags(), self.target, opt)
    }

    /// Writes the Ethernet frame to `dst_mac` from `src_mac` with [`emit`](Self::emit)'s
    /// packet; returns its length.
    pub fn emit_frame(
        &self,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        emit_frame(buf, dst_mac, src_mac, |b| self.emit(b))
    }
}

/// The Ethernet frame answering `ns` (which arrived in a frame from `ns_frame_src_mac`) for
/// its target at `our_mac`: [`NeighborAdvert::answering`], to the MAC of the solicitation's
/// source link-layer address option, else to 33:33:00:00:00:01 for all-nodes (duplicate
/// address detection), else to the frame's source MAC (a unicast probe without the option).
/// Returns the frame's length.
pub fn answer_frame(
    ns: &NeighborSolicit,
    ns_frame_src_mac: [u8; 6],
    our_mac: [u8; 6],
    buf: &mut [u8],
) -> Result<usize, Error> {
    let na = NeighborAdvert::answering(ns, our_mac);
    let dst_mac = match ns.source_mac {
        Some(m) if !na.dst.is_multicast() => m,
        _ if na.dst.is_multicast() => multicast_mac(na.dst),
        _ => ns_frame_src_mac,
    };
    na.emit_frame(dst_mac, our_mac, buf)
}

/// The Ethernet frame of an unsolicited advertisement of `target` at `our_mac` to all-nodes
/// (33:33:00:00:00:01), O set ([`NeighborAdvert::unsolicited`]). Returns its length.
pub fn unsolicited_frame(
    target: Ipv6Addr,
    our_mac: [u8; 6],
    buf: &mut [u8],
) -> Result<usize, Error> {
    NeighborAdvert::unsolicited(target, our_mac).emit_frame(ALL_NODES_MAC, our_mac, buf)
}

/// Turns `buf[..pkt_len]`, an IPv6 packet too big for the next hop, into an ICMPv6 Packet Too
/// Big advertising `mtu`, from `src`, in place. See [`error_in_place`].
pub fn packet_too_big_in_place(
    buf: &mut [u8],
    pkt_len: usize,
    mtu: u32,
    src: Ipv6Addr,
) -> Option<usize> {
    error_in_place(buf, pkt_len, msg_type::PACKET_TOO_BIG, 0, mtu, src)
}

/// Turns `buf[..pkt_len]`, an IPv6 packet, into an ICMPv6 Destination Unreachable with `code`
/// (see [`unreach_code`]), from `src`, in place. See [`error_in_place`].
pub fn dest_unreachable_in_place(
    buf: &mut [u8],
    pkt_len: usize,
    code: u8,
    src: Ipv6Addr,
) -> Option<usize> {
    error_in_place(buf, pkt_len, msg_type::DEST_UNREACHABLE, code, 0, src)
}

/// Turns `buf[..pkt_len]`, an IPv6 packet, into an ICMPv6 error about it, in place, and
/// returns the error's length (at the start of `buf`).
///
/// The error goes from `src` to the original source, hop limit [`REPLY_HOP_LIMIT`], traffic
/// class [`REPLY_TRAFFIC_CLASS`], with the given type, code and 4-byte word, and quotes as
/// much of the original packet as fits in [`ipv6::MIN_MTU`] bytes for the whole IPv6 packet
/// (RFC 4443 §2.4 (c)): up to 1232 bytes. `buf` must have room for it (a packet of 1280 bytes
/// or more always does).
///
/// Returns `None`, leaving `buf` untouched, when no error is due or possible (RFC 4443 §2.4
/// (e)): the packet is not a valid IPv6 packet or its extension headers do not walk; it is
/// an ICMPv6 error or a Redirect, or an ICMPv6 non-first fragment (its type unknown); it comes
/// from an unspecified, loopback or multicast address; it went to a multicast address (except
/// for Packet Too Big and Parameter Problem code 2); or `buf` is too small.
pub fn error_in_place(
    buf: &mut [u8],
    pkt_len: usize,
    icmp_type: u8,
    code: u8,
    rest_of_header: u32,
    src: Ipv6Addr,
) -> Option<usize> {
    let orig = Ipv6Packet::new_checked(buf.get(..pkt_len)?).ok()?;
    let (orig_src, orig_dst) = (orig.src_addr(), orig.dst_addr());
    if orig_src.is_unspecified() || orig_src.is_loopback() || orig_src.is_multicast() {
        return None;
    }
    let multicast_ok = icmp_type == msg_type::PACKET_TOO_BIG
        || (icmp_type == msg_type::PARAM_PROBLEM && code == CODE_UNRECOGNIZED_OPTION);
    if orig_dst.is_multicast() && !multicast_ok {
        return None;
    }
    let chain = ipv6_ext::walk(&orig).ok()?;
    if chain.upper == IpProtocol::ICMPV6 {
        if chain.fragment.is_some_and(|f| !f.is_first()) {
            return None;
        }
        let t = *orig.packet().get(chain.upper_offset)?;
        if msg_type::is_error(t) || t == msg_type::REDIRECT {
            return None;
        }
    }
    let quoted = orig
        .total_len()
        .min(ipv6::MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN);
    let icmp_len = HEADER_LEN + quoted;
    let reply_len = ipv6::HEADER_LEN + icmp_len;
    if buf.len() < reply_len {
        return None;
    }
    // Move the quote into place first (the regions overlap), then write the headers over the
    // start of the original.
    buf.copy_within(..quoted, ipv6::HEADER_LEN + HEADER_LEN);
    Ipv6Repr {
        src,
        dst: orig_src,
        next_header: IpProtocol::ICMPV6,
        hop_limit: REPLY_HOP_LIMIT,
        traffic_class: REPLY_TRAFFIC_CLASS,
        flow_label: 0,
        payload_len: icmp_len,
    }
    .emit(buf)
    .ok()?;
    let mut icmp = Icmpv6Packet::new_unchecked(&mut buf[ipv6::HEADER_LEN..reply_len]);
    icmp.set_msg_type(icmp_type);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest_of_header);
    icmp.fill_checksum(src, orig_src);
    Some(reply_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;
    use crate::wire::EthernetFrame;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    /// A Neighbor Solicitation fe80::1 -> ff02::1:ff00:100 for 2001:db8::100 with a source
    /// link-layer address option 02:00:00:00:00:01, written out by hand (RFC 4861 §4.3; the
    /// checksum computed once over the pseudo-header by the reference sum).
    static NS_BYTES: [u8; 72] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, //
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x01, 0x00, //
        0x87, 0x00, 0x49, 0x63, 0, 0, 0, 0, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, //
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    fn ns() -> NeighborSolicit {
        NeighborSolicit {
            src: a("fe80::1"),
            dst: a("ff02::1:ff00:100"),
            target: a("2001:db8::100"),
            source_mac: Some(PEER_MAC),
        }
    }

    /// The checksum of [`NS_BYTES`] the slow way: byte pairs over pseudo-header + message.
    fn reference_icmpv6_sum(p: &[u8]) -> u16 {
        let mut ph = Vec::new();
        ph.extend_from_slice(&p[8..40]);
        ph.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 58]);
        ph.extend_from_slice(&p[40..]);
        let mut acc = 0u32;
        for c in ph.chunks(2) {
            acc += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn ns_bytes_parse_field_by_field() {
        assert_eq!(reference_icmpv6_sum(&NS_BYTES), 0xffff);
        let ip = Ipv6Packet::new_checked(&NS_BYTES[..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(icmp.code(), 0);
        assert_eq!(icmp.checksum(), 0x4963);
        assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert!(!icmp.verify_checksum(ip.src_addr(), ALL_NODES));
        assert!(!icmp.is_error());
        assert_eq!(
            (icmp.mtu(), icmp.pointer(), icmp.echo_ident()),
            (None, None, None)
        );
        assert_eq!(parse_ndp(&ip), Ok(Ndp::Solicit(ns())));
    }

    #[test]
    fn ns_emit_matches_bytes() {
        let n = ns();
        assert_eq!(
            n,
            NeighborSolicit::for_target(a("fe80::1"), PEER_MAC, a("2001:db8::100"))
        );
        assert_eq!(n.buffer_len(), 72);
        let mut buf = [0u8; 72];
        assert_eq!(n.emit(&mut buf), Ok(72));
        assert_eq!(buf, NS_BYTES);
        assert_eq!(n.emit(&mut [0u8; 71]), Err(Error::BufferTooSmall));
        // In a frame: to the solicited-node MAC.
        let mut f = [0u8; 86];
        assert_eq!(n.emit_frame(PEER_MAC, [9; 6], &mut f), Ok(86));
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(eth.dst_addr(), [0x33, 0x33, 0xff, 0x00, 0x01, 0x00]);
        assert_eq!(eth.ethertype(), EtherType::IPV6);
        assert_eq!(eth.payload(), &NS_BYTES[..]);
    }

    #[test]
    fn multicast_helpers() {
        let t = a("2001:db8::aabb:ccdd");
        assert_eq!(solicited_node(t), a("ff02::1:ffbb:ccdd"));
        assert!(is_solicited_node(solicited_node(t)));
        assert!(!is_solicited_node(ALL_NODES));
        assert_eq!(
            multicast_mac(solicited_node(t)),
            [0x33, 0x33, 0xff, 0xbb, 0xcc, 0xdd]
        );
        assert_eq!(multicast_mac(ALL_NODES), ALL_NODES_MAC);
    }

    fn parse_frame(f: &[u8]) -> ([u8; 6], NeighborAdvert) {
        let eth = EthernetFrame::new_checked(f).unwrap();
        assert_eq!(eth.ethertype(), EtherType::IPV6);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.total_len(), eth.payload().len());
        match parse_ndp(&ip) {
            Ok(Ndp::Advert(na)) => (eth.dst_addr(), na),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answer_to_a_solicitation() {
        let mut buf = [0u8; 128];
        let n = answer_frame(&ns(), [7; 6], MAC, &mut buf).unwrap();
        assert_eq!(n, 14 + 72);
        let (dst_mac, na) = parse_frame(&buf[..n]);
        assert_eq!(dst_mac, PEER_MAC);
        assert_eq!(
            na,
            NeighborAdvert {
                src: a("2001:db8::100"),
                dst: a("fe80::1"),
                router: false,
                solicited: true,
                override_: true,
                target: a("2001:db8::100"),
                target_mac: Some(MAC),
            }
        );
        assert_eq!(&buf[6..12], &MAC);
        // Flags byte: S|O.
        assert_eq!(buf[14 + 40 + 4], 0x60);
        // etherparse reads the same NA.
        match etherparse::SlicedPacket::from_ethernet(&buf[..n])
            .unwrap()
            .transport
        {
            Some(etherparse::TransportSlice::Icmpv6(i)) => match i.icmp_type() {
                etherparse::Icmpv6Type::NeighborAdvertisement(h) => {
                    assert!(h.solicited && h.r#override && !h.router);
                }
                t => panic!("{t:?}"),
            },
            t => panic!("{t:?}"),
        }
        // Unicast probe without the option: to the frame's source MAC.
        let probe = NeighborSolicit {
            dst: a("2001:db8::100"),
            source_mac: None,
            ..ns()
        };
        let n = answer_frame(&probe, [7; 6], MAC, &mut buf).unwrap();
        assert_eq!(parse_frame(&buf[..n]).0, [7; 6]);
        // DAD: to all-nodes, S clear.
        let dad = NeighborSolicit {
            src: Ipv6Addr::UNSPECIFIED,
            source_mac: None,
            ..ns()
        };
        let n = answer_frame(&dad, [7; 6], MAC, &mut buf).unwrap();
        let (dst_mac, na) = parse_frame(&buf[..n]);
        assert_eq!(
            (dst_mac, na.dst, na.solicited),
            (ALL_NODES_MAC, ALL_NODES, false)
        );
        assert_eq!(
            answer_frame(&ns(), [7; 6], MAC, &mut buf[..85]),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            answer_frame(&ns(), [7; 6], MAC, &mut buf[..10]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn unsolicited_advert() {
        let mut buf = [0u8; 86];
        let n = unsolicited_frame(a("2001:db8::100"), MAC, &mut buf).unwrap();
        assert_eq!(n, 86);
        let (dst_mac, na) = parse_frame(&buf);
        assert_eq!(dst_mac, ALL_NODES_MAC);
        assert_eq!(na, NeighborAdvert::unsolicited(a("2001:db8::100"), MAC));
        assert!(na.override_ && !na.solicited && na.dst == ALL_NODES);
        assert_eq!(buf[14 + 40 + 4], 0x20);
        assert_eq!(&buf[14 + 64..14 + 72], &[2, 1, 2, 0, 0, 0, 0, 0x0b]);
    }

    /// Rewrites the NS bytes with `edit`, fixes the checksum, and parses.
    fn ndp_after(edit: impl Fn(&mut Vec<u8>)) -> Result<Ndp, NdpError> {
        let mut p = NS_BYTES.to_vec();
        edit(&mut p);
        let len = p.len() - 40;
        p[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        let (src, dst) = (ipv6::addr(&p[8..24]), ipv6::addr(&p[24..40]));
        if len >= 8 {
            Icmpv6Packet::new_unchecked(&mut p[40..]).fill_checksum(src, dst);
        }
        parse_ndp(&Ipv6Packet::new_checked(&p[..]).unwrap())
    }

    #[test]
    fn ndp_validity_rules() {
        assert!(ndp_after(|_| {}).is_ok());
        assert_eq!(ndp_after(|p| p[7] = 254), Err(NdpError::HopLimit));
        assert_eq!(ndp_after(|p| p[41] = 1), Err(NdpError::Code));
        assert_eq!(ndp_after(|p| p.truncate(40 + 20)), Err(NdpError::Length));
        assert_eq!(ndp_after(|p| p[48] = 0xff), Err(NdpError::TargetMulticast));
        assert_eq!(ndp_after(|p| p[65] = 0), Err(NdpError::Option));
        assert_eq!(ndp_after(|p| p[65] = 2), Err(NdpError::Option));
        assert_eq!(ndp_after(|p| p.push(1)), Err(NdpError::Option));
        assert_eq!(
            ndp_after(|p| p[40] = msg_type::ECHO_REQUEST),
            Err(NdpError::NotNdp)
        );
        assert_eq!(ndp_after(|p| p[6] = IpProtocol::UDP), Err(NdpError::NotNdp));
        assert_eq!(ndp_after(|p| p[8] = 0xff), Err(NdpError::SourceMulticast));
        let mut bad = NS_BYTES;
        bad[43] ^= 1;
        let ip = Ipv6Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(parse_ndp(&ip), Err(NdpError::Checksum));
        // DAD: unspecified source, with the option or to a non-solicited-node address.
        let dad = |p: &mut Vec<u8>| p[8..24].fill(0);
        assert_eq!(ndp_after(dad), Err(NdpError::Dad));
        let dad_ok = ndp_after(|p| {
            dad(p);
            p.truncate(64);
        });
        assert!(matches!(dad_ok, Ok(Ndp::Solicit(s)) if s.source_mac.is_none()));
        assert_eq!(
            ndp_after(|p| {
                dad(p);
                p.truncate(64);
                p[24..40].copy_from_slice(&ALL_NODES.octets());
            }),
            Err(NdpError::Dad)
        );
        // Unknown options are skipped, a longer link-layer option gives no MAC.
        let r = ndp_after(|p| {
            p[64] = 14;
            p.extend_from_slice(&[1, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]);
        });
        assert!(matches!(r, Ok(Ndp::Solicit(s)) if s.source_mac.is_none()));
        // An NA with S set to a multicast destination.
        let na = |p: &mut Vec<u8>| {
            p[40] = msg_type::NEIGHBOR_ADVERT;
            p[44] = 0x40;
        };
        assert_eq!(ndp_after(na), Err(NdpError::SolicitedMulticast));
        // A fragment, even atomic.
        let r = ndp_after(|p| {
            p[6] = IpProtocol::IPV6_FRAG;
            let frag = [IpProtocol::ICMPV6, 0, 0, 0, 0, 0, 0, 1];
            p.splice(40..40, frag);
        });
        assert_eq!(r, Err(NdpError::Fragment));
        // Behind a destination options header it parses.
        let mut p = NS_BYTES.to_vec();
        p[6] = IpProtocol::IPV6_OPTS;
        p.splice(40..40, [IpProtocol::ICMPV6, 0, 1, 4, 0, 0, 0, 0]);
        p[5] += 8;
        assert_eq!(
            parse_ndp(&Ipv6Packet::new_checked(&p[..]).unwrap()),
            Ok(Ndp::Solicit(ns()))
        );
    }

    #[test]
    fn ndp_labels_are_distinct() {
        let labels: std::collections::BTreeSet<_> =
            NdpError::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(labels.len(), NdpError::ALL.len());
        assert!(labels.iter().all(|l| l.starts_with("ndp_")));
    }

    /// An echo request 2001:db8::1 -> 2001:db8::100, ident 0x1234, seq 1, "abcd", built with
    /// etherparse.
    fn echo() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv6(
            a("2001:db8::1").octets(),
            a("2001:db8::100").octets(),
            64,
        )
        .icmpv6_echo_request(0x1234, 1);
        let mut out = Vec::new();
        b.write(&mut out, b"abcd").unwrap();
        out
    }

    #[test]
    fn echo_built_by_etherparse_parses() {
        let p = echo();
        let ip = Ipv6Packet::new_checked(&p[..]).unwrap();
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(icmp.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(
            (icmp.echo_ident(), icmp.echo_seq()),
            (Some(0x1234), Some(1))
        );
        assert_eq!(icmp.data(), b"abcd");
        assert_eq!(icmp.invoking_packet(), None);
        // Rebuilt by hand, same bytes; then a NAT66 address change, incrementally.
        let mut q = p.clone();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let mut icmp = Icmpv6Packet::new_unchecked(&mut q[40..]);
        icmp.set_checksum(0);
        icmp.fill_checksum(src, dst);
        assert_eq!(q, p);
        let new = a("fd00::7");
        Icmpv6Packet::new_unchecked(&mut q[40..]).update_checksum_for_addr(dst, new);
        assert!(Icmpv6Packet::new_unchecked(&q[40..]).verify_checksum(src, new));
    }

    /// A TCP packet of `payload` bytes 2001:db8::1:40000 -> 2001:db8::100:80 (etherparse).
    fn tcp(payload: usize) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv6(
            a("2001:db8::1").octets(),
            a("2001:db8::100").octets(),
            64,
        )
        .tcp(40000, 80, 1, 65535);
        let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
        let mut out = Vec::new();
        b.write(&mut out, &data).unwrap();
        out
    }

    fn check_error(reply: &[u8], t: u8, code: u8, rest: u32, orig: &[u8], src: Ipv6Addr) {
        assert!(reply.len() <= ipv6::MIN_MTU);
        let ip = Ipv6Packet::new_checked(reply).unwrap();
        assert_eq!(ip.total_len(), reply.len());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (src, a("2001:db8::1")));
        assert_eq!(
            (ip.hop_limit(), ip.traffic_class()),
            (REPLY_HOP_LIMIT, REPLY_TRAFFIC_CLASS)
        );
        assert_eq!(ip.next_header(), IpProtocol::ICMPV6);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(ip.src_addr(), ip.dst_addr()));
        assert_eq!(
            (icmp.msg_type(), icmp.code(), icmp.rest_of_header()),
            (t, code, rest)
        );
        let quote = icmp.invoking_packet().unwrap();
        assert_eq!(quote, &orig[..quote.len()]);
        assert_eq!(quote.len(), orig.len().min(1232));
        // etherparse agrees on the checksum and the type.
        let s = etherparse::SlicedPacket::from_ip(reply).unwrap();
        match s.transport {
            Some(etherparse::TransportSlice::Icmpv6(i)) => {
                let (src, dst) = (ip.src_addr().octets(), ip.dst_addr().octets());
                let want = i.icmp_type().calc_checksum(src, dst, i.payload()).unwrap();
                assert_eq!(want, icmp.checksum());
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn packet_too_big_quotes_up_to_1232_bytes() {
        let src = a("2001:db8::fe");
        let orig = tcp(1440);
        assert_eq!(orig.len(), 1500);
        let mut buf = orig.clone();
        let n = packet_too_big_in_place(&mut buf, 1500, 1400, src).unwrap();
        assert_eq!(n, 1280);
        check_error(&buf[..n], msg_type::PACKET_TOO_BIG, 0, 1400, &orig, src);
        assert_eq!(
            Icmpv6Packet::new_checked(&buf[40..n]).unwrap().mtu(),
            Some(1400)
        );
        // A short packet is quoted whole; the buffer needs room for 48 more bytes.
        let orig = tcp(10);
        let mut buf = orig.clone();
        assert_eq!(
            dest_unreachable_in_place(&mut buf, orig.len(), 4, src),
            None
        );
        assert_eq!(buf, orig, "untouched");
        buf.resize(orig.len() + 48, 0);
        let n =
            dest_unreachable_in_place(&mut buf, orig.len(), unreach_code::PORT_UNREACHABLE, src)
                .unwrap();
        assert_eq!(n, orig.len() + 48);
        check_error(&buf[..n], msg_type::DEST_UNREACHABLE, 4, 0, &orig, src);
    }

    #[test]
    fn no_error_when_none_is_due() {
        let src = a("2001:db8::fe");
        let base = tcp(1440);
        let refuse = |edit: &dyn Fn(&mut Vec<u8>), t: u8| {
            let mut b = base.clone();
            edit(&mut b);
            let before = b.clone();
            let n = b.len();
            assert_eq!(error_in_place(&mut b, n, t, 0, 1280, src), None);
            assert_eq!(b, before, "untouched");
        };
        let ptb = msg_type::PACKET_TOO_BIG;
        refuse(&|b| b[8..24].fill(0), ptb);
        refuse(
            &|b| b[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets()),
            ptb,
        );
        refuse(&|b| b[8..24].copy_from_slice(&ALL_NODES.octets()), ptb);
        refuse(
            &|b| b[24..40].copy_from_slice(&ALL_NODES.octets()),
            msg_type::DEST_UNREACHABLE,
        );
        refuse(&|b| b[0] = 0x40, ptb);
        refuse(&|b| b[5] = 0xff, ptb);
        // An ICMPv6 error or redirect is never answered; an echo request is.
        refuse(
            &|b| {
                b[6] = IpProtocol::ICMPV6;
                b[40] = msg_type::DEST_UNREACHABLE;
            },
            ptb,
        );
        refuse(
            &|b| {
                b[6] = IpProtocol::ICMPV6;
                b[40] = msg_type::REDIRECT;
            },
            ptb,
        );
        // Routing header with segments left: the walk refuses it, so no error.
        refuse(
            &|b| {
                b[6] = IpProtocol::IPV6_ROUTE;
                b[40..44].copy_from_slice(&[IpProtocol::TCP, 0, 4, 1]);
            },
            ptb,
        );
        let mut b = base.clone();
        b[6] = IpProtocol::ICMPV6;
        b[40] = msg_type::ECHO_REQUEST;
        assert!(packet_too_big_in_place(&mut b, 1500, 1280, src).is_some());
        // PTB goes even for a multicast destination.
        let mut b = base.clone();
        b[24..40].copy_from_slice(&ALL_NODES.octets());
        assert!(packet_too_big_in_place(&mut b, 1500, 1280, src).is_some());
        // pkt_len past the buffer.
        let mut b = base.clone();
        assert_eq!(packet_too_big_in_place(&mut b, 1501, 1280, src), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(0x58);
        let mut buf = [0u8; 200];
        let src = a("2001:db8::fe");
        for round in 0..20_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            if n >= 40 && round % 2 == 0 {
                buf[0] = 0x60;
                let pl = rng.below(n - 39) as u16;
                buf[4..6].copy_from_slice(&pl.to_be_bytes());
                buf[6] = [58, 0, 44, 60, 6][rng.below(5)];
                buf[7] = 255;
            }
            if let Ok(ip) = Ipv6Packet::new_checked(&buf[..n]) {
                let _ = parse_ndp(&ip);
            }
            if let Ok(p) = Icmpv6Packet::new_checked(&buf[..n]) {
                let _ = (p.invoking_packet(), p.mtu(), p.pointer(), p.echo_seq());
                let _ = p.verify_checksum(src, src);
            }
            let pkt_len = rng.below(n + 2);
            let room = n.max(rng.below(buf.len()));
            if let Some(len) = packet_too_big_in_place(&mut buf[..room], pkt_len, 1280, src) {
                let ip = Ipv6Packet::new_checked(&buf[..len]).unwrap();
                let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
                assert!(icmp.verify_checksum(src, ip.dst_addr()));
            }
        }
    }
}

//! What the agent accepts: tunnel packets from an allowed director (over an IPv4 or an IPv6
//! underlay), carrying an IPv4 or IPv6 packet for one of its VIPs (and, with `--vip-ports`, a protocol and port that VIP lists:
//! [`super::ports`]); or, for a gateway ([`Filter::gateway`]), carrying a packet whose source
//! is inside the prefixes routed to the peer that sent it. With tunnel keys
//! ([`Filter::with_keys`]) a GUE packet must also carry a valid MAC and a fresh sequence
//! number ([`crate::encap::auth`]). Plain logic over byte slices, no IO.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::merged;
use super::ports::{PortDrop, VipPorts};
use crate::encap::auth::{AuthError, Keyring, OpenError};
use crate::encap::{self, Family, GreChecksum, StripError, TunnelType, Udp6Zero};
use crate::wire::Ipv6Packet;

/// Why the agent dropped a received packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentDrop {
    /// The outer source is not in `--allow`: possibly spoofed, never delivered.
    NotAllowed,
    /// The inner destination is not one of the agent's VIPs.
    NotVip,
    /// Gateway: the inner source is not in the prefixes routed to the peer that sent it
    /// (spoofed, or a misconfigured peer).
    InnerSourceNotAllowed,
    /// The packet was longer than a receive buffer and arrived cut.
    Truncated,
    /// The tunnel headers or the inner packet did not validate.
    Strip(StripError),
    /// GUE with tunnel keys: no or a bad MAC, an unknown key, a replayed sequence number.
    Auth(AuthError),
    /// `--vip-ports`: TCP or UDP to a port the VIP does not list.
    PortNotAllowed,
    /// `--vip-ports`: a protocol the VIP does not list.
    ProtoNotAllowed,
    /// A malformed second-chance field ([`crate::encap::chance`]).
    Chance(crate::encap::chance::ChanceError),
}

impl AgentDrop {
    /// The counter label (`not_allowed`, `not_vip`, `inner_source_not_allowed`,
    /// `recv_truncated`, `port_not_allowed`, `proto_not_allowed`, or the strip or
    /// authentication error's label).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentDrop::NotAllowed => "not_allowed",
            AgentDrop::NotVip => "not_vip",
            AgentDrop::InnerSourceNotAllowed => "inner_source_not_allowed",
            AgentDrop::Truncated => "recv_truncated",
            AgentDrop::Strip(e) => e.as_str(),
            AgentDrop::Auth(e) => e.as_str(),
            AgentDrop::PortNotAllowed => "port_not_allowed",
            AgentDrop::ProtoNotAllowed => "proto_not_allowed",
            AgentDrop::Chance(e) => e.as_str(),
        }
    }
}

/// The directors the agent accepts tunnel packets from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<Ipv4Net>,
    nets6: Vec<Ipv6Net>,
}

impl AllowList {
    /// An allow-list of these networks (a single director is a `/32`).
    pub fn new(nets: &[Ipv4Net]) -> AllowList {
        AllowList {
            nets: nets.iter().map(Ipv4Net::trunc).collect(),
            nets6: Vec::new(),
        }
    }

    /// An allow-list of networks of either family (an IPv6 director is a `/128`).
    pub fn of(nets: &[IpNet]) -> AllowList {
        let mut a = AllowList::new(&[]);
        for n in nets {
            match n.trunc() {
                IpNet::V4(n) => a.nets.push(n),
                IpNet::V6(n) => a.nets6.push(n),
            }
        }
        a
    }

    /// Whether `addr` is inside one of the networks.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// Whether the IPv6 `addr` is inside one of the networks.
    pub fn contains6(&self, addr: Ipv6Addr) -> bool {
        self.nets6.iter().any(|n| n.contains(&addr))
    }

    /// Whether `addr`, of either family, is inside one of the networks.
    pub fn contains_ip(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.contains(a),
            IpAddr::V6(a) => self.contains6(a),
        }
    }
}

/// A gateway's tunnel peer: whom it accepts packets from, with which GRE key, and which inner
/// sources those packets may have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayPeer {
    /// The peer's outer (tunnel) addresses.
    pub outer: Ipv4Net,
    /// The GRE key it sends (GRE only).
    pub gre_key: Option<u32>,
    /// The prefixes behind it (IPv4 or IPv6): the only inner sources accepted from it.
    pub prefixes: Vec<IpNet>,
}

/// What the inner packet must be.
#[derive(Clone, Debug)]
enum Inner {
    /// Addressed to one of these VIPs (each list sorted): a real server.
    Vips(Vec<Ipv4Addr>, Vec<Ipv6Addr>),
    /// From a prefix behind the peer that sent it, to anywhere: a gateway.
    Gateway(Vec<GatewayPeer>),
}

/// What only some agents check.
#[derive(Debug, Default)]
struct Extra {
    keys: Option<Keyring>,
    ports: VipPorts,
    chance: Option<super::chance::Forwarder>,
}

/// The per-packet checks, configured once (the replay windows change with each packet).
#[derive(Debug)]
pub struct Filter {
    allow: AllowList,
    inner: Inner,
    tun: TunnelType,
    gre_key: Option<u32>,
    /// Tunnel keys and `--vip-ports`, boxed: most agents have neither.
    extra: Box<Extra>,
}

impl Filter {
    /// Accepts `tun` packets (GRE with `gre_key`, when given) from `allow` for `vips`.
    pub fn new(
        allow: AllowList,
        vips: &[Ipv4Addr],
        tun: TunnelType,
        gre_key: Option<u32>,
    ) -> Filter {
        let mut vips = vips.to_vec();
        vips.sort_unstable();
        vips.dedup();
        Filter {
            allow,
            inner: Inner::Vips(vips, Vec::new()),
            tun,
            gre_key,
            extra: Box::default(),
        }
    }

    /// Also accepts inner IPv6 packets for these VIPs (a real server; a gateway ignores it).
    pub fn with_vips6(mut self, vips6: &[Ipv6Addr]) -> Filter {
        if let Inner::Vips(_, v6) = &mut self.inner {
            v6.extend_from_slice(vips6);
            v6.sort_unstable();
            v6.dedup();
        }
        self
    }

    /// GUE packets must carry a MAC by one of `keys` and a fresh sequence number
    /// (`--tunnel-key`); the others are dropped by reason ([`AuthError`]).
    pub fn with_keys(mut self, keys: Keyring) -> Filter {
        self.extra.keys = Some(keys);
        self
    }

    /// GUE packets carrying a second choice are checked for a local socket and forwarded by
    /// `f` when there is none ([`super::chance`]).
    pub fn with_second_chance(mut self, f: super::chance::Forwarder) -> Filter {
        self.extra.chance = Some(f);
        self
    }

    /// Second chance for an accepted GUE payload: `true` if it was taken (forwarded or
    /// dropped), `false` to deliver it.
    pub fn take_second_chance(
        &mut self,
        payload: &[u8],
        inner: Range<usize>,
        me: Ipv4Addr,
        stats: &mut super::AgentStats,
    ) -> bool {
        match &mut self.extra.chance {
            Some(f) => f.take(payload, inner, me, stats),
            None => false,
        }
    }

    /// The first tunnel key, if any (what second-chance forwards are sealed with).
    pub fn first_key(&self) -> Option<crate::encap::auth::TunnelKey> {
        self.extra
            .keys
            .as_ref()
            .and_then(|k| k.first_key().cloned())
    }

    /// Packets to a VIP with a `--vip-ports` list must match it.
    pub fn with_ports(mut self, ports: VipPorts) -> Filter {
        self.extra.ports = ports;
        self
    }

    /// A gateway's checks: `tun` packets from the `peers` (each with its own GRE key) whose
    /// inner source is inside that peer's prefixes, to any destination.
    pub fn gateway(tun: TunnelType, peers: Vec<GatewayPeer>) -> Filter {
        let outer: Vec<Ipv4Net> = peers.iter().map(|p| p.outer).collect();
        Filter {
            allow: AllowList::new(&outer),
            inner: Inner::Gateway(peers),
            tun,
            gre_key: None,
            extra: Box::default(),
        }
    }

    /// The gateway peer a packet from `src` belongs to.
    fn peer(&self, src: Ipv4Addr) -> Option<&GatewayPeer> {
        match &self.inner {
            Inner::Gateway(peers) => peers.iter().find(|p| p.outer.contains(&src)),
            Inner::Vips(..) => None,
        }
    }

    /// Checks a packet from a raw IPIP or GRE socket (outer IPv4 header first) whose outer
    /// source is `src`, and returns where the inner packet is in it.
    pub fn check_ip(&self, packet: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop> {
        if !self.allow.contains(src) {
            return Err(AgentDrop::NotAllowed);
        }
        // `src` is the kernel's copy of the outer header's source, the same as `outer_src`.
        let key = self.peer(src).map_or(self.gre_key, |p| p.gre_key);
        let stripped = match encap::strip_ip(packet, self.tun, key) {
            Err(StripError::GreBadChecksum) => merged_gre(packet, self.tun, key)?,
            r => r.map_err(AgentDrop::Strip)?,
        };
        self.check_inner(packet, stripped.inner, src.into())
    }

    /// Checks the payload of an outer IPv6 packet as an `AF_INET6` raw socket for
    /// `next_header` delivers it (no IPv6 header: `src` from `msg_name`, `dst` from
    /// `IPV6_PKTINFO`): 4 or 41 (IPIP: 4in6, ip6ip6) or 47 (GRE); see
    /// [`encap::strip_payload6`]. Returns where the inner packet is in `payload`.
    pub fn check_payload6(
        &self,
        payload: &[u8],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next_header: u8,
    ) -> Result<Range<usize>, AgentDrop> {
        if !self.allow.contains6(src) {
            return Err(AgentDrop::NotAllowed);
        }
        let key = self.gre_key;
        let inner = encap::strip_payload6(
            payload,
            src,
            dst,
            next_header,
            self.tun,
            key,
            Udp6Zero::Never,
        )
        .map_err(AgentDrop::Strip)?;
        self.check_inner(payload, inner.range, src.into())
    }

    /// Checks the payload of a UDP datagram from `src` to `dst` (this host's address it was
    /// sent to) on the GUE port and returns where the inner packet is in it. With tunnel
    /// keys, the authentication option is checked (and its sequence number recorded) before
    /// anything else of the packet is looked at.
    pub fn check_gue(
        &mut self,
        payload: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Range<usize>, AgentDrop> {
        self.check_gue_ip(payload, src.into(), dst.into())
    }

    /// [`check_gue`](Self::check_gue) for a datagram that came over either family (an
    /// `AF_INET6` socket receives both; an IPv4-mapped address is IPv4 here). The MAC of an
    /// authenticated packet covers the outer addresses of the family it came over.
    pub fn check_gue_ip(
        &mut self,
        payload: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Range<usize>, AgentDrop> {
        let (src, dst) = (src.to_canonical(), dst.to_canonical());
        if !self.allow.contains_ip(src) {
            return Err(AgentDrop::NotAllowed);
        }
        let addrs = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => crate::encap::auth::OuterAddrs::V4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => crate::encap::auth::OuterAddrs::V6(s, d),
            _ => return Err(AgentDrop::NotAllowed),
        };
        let inner = match &mut self.extra.keys {
            None => encap::strip_gue(payload).map_err(AgentDrop::Strip)?,
            Some(keys) => {
                let after = keys.open_from(addrs, payload).map_err(|e| match e {
                    OpenError::Strip(e) => AgentDrop::Strip(e),
                    OpenError::Auth(e) => AgentDrop::Auth(e),
                })?;
                let r = encap::inner_range(payload, after.start).map_err(AgentDrop::Strip)?;
                // The MAC covered every byte after the header: no trailing bytes either.
                if r.end != payload.len() {
                    return Err(AgentDrop::Strip(StripError::InnerMalformed));
                }
                r
            }
        };
        self.check_inner(payload, inner, src)
    }

    /// A real server's inner packet must be addressed to one of the VIPs; a gateway's must
    /// come from a prefix behind the peer at `outer_src`.
    fn check_inner(
        &self,
        buf: &[u8],
        inner: Range<usize>,
        outer_src: IpAddr,
    ) -> Result<Range<usize>, AgentDrop> {
        let malformed = AgentDrop::Strip(StripError::InnerMalformed);
        let bytes = buf.get(inner.clone()).ok_or(malformed)?;
        if Family::of(bytes) == Some(Family::Ipv6) {
            return self.check_inner6(bytes, outer_src).map(|()| inner);
        }
        let addrs = bytes.get(12..20).ok_or(malformed)?;
        if bytes.first().map(|b| b >> 4) != Some(4) {
            return Err(AgentDrop::Strip(StripError::InnerNotIpv4));
        }
        let src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
        let dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
        match (&self.inner, outer_src) {
            (Inner::Vips(..), _) => self.check_vip4(dst, bytes)?,
            (Inner::Gateway(_), IpAddr::V4(outer_src)) => {
                let ok = self
                    .peer(outer_src)
                    .is_some_and(|p| p.prefixes.iter().any(|n| n.contains(&IpAddr::V4(src))));
                if !ok {
                    return Err(AgentDrop::InnerSourceNotAllowed);
                }
            }
            // A gateway's peers are IPv4.
            (Inner::Gateway(_), IpAddr::V6(_)) => return Err(AgentDrop::InnerSourceNotAllowed),
        }
        Ok(inner)
    }

    /// A real server's inner IPv4 packet to `dst`: a VIP, and a port it lists.
    fn check_vip4(&self, dst: Ipv4Addr, bytes: &[u8]) -> Result<(), AgentDrop> {
        match &self.inner {
            Inner::Vips(vips, _) if vips.binary_search(&dst).is_ok() => {
                self.extra.ports.check(dst, bytes).map_err(port_drop)
            }
            _ => Err(AgentDrop::NotVip),
        }
    }

    /// An inner IPv6 packet (the strip functions checked its length): a real server's must be
    /// addressed to one of its IPv6 VIPs and a port it lists; a gateway's must come from an
    /// IPv6 prefix behind the peer at `outer_src`.
    fn check_inner6(&self, bytes: &[u8], outer_src: IpAddr) -> Result<(), AgentDrop> {
        let p = Ipv6Packet::new_checked(bytes)
            .map_err(|_| AgentDrop::Strip(StripError::InnerMalformed))?;
        match &self.inner {
            Inner::Vips(_, vips6) => {
                let dst = p.dst_addr();
                if vips6.binary_search(&dst).is_err() {
                    return Err(AgentDrop::NotVip);
                }
                self.extra.ports.check(dst, bytes).map_err(port_drop)
            }
            Inner::Gateway(_) => {
                let src = IpAddr::V6(p.src_addr());
                let ok = match outer_src {
                    // A gateway's peers are IPv4.
                    IpAddr::V4(outer) => self
                        .peer(outer)
                        .is_some_and(|p| p.prefixes.iter().any(|n| n.contains(&src))),
                    IpAddr::V6(_) => false,
                };
                if ok {
                    Ok(())
                } else {
                    Err(AgentDrop::InnerSourceNotAllowed)
                }
            }
        }
    }
}

fn port_drop(e: PortDrop) -> AgentDrop {
    match e {
        PortDrop::Port => AgentDrop::PortNotAllowed,
        PortDrop::Protocol => AgentDrop::ProtoNotAllowed,
    }
}

/// A GRE packet whose checksum (RFC 2784, `--tun-csum`) does not verify is still taken when
/// the kernel's GRO merged it: `gre_gro_receive` verifies every segment's GRE checksum before
/// it merges them and leaves the first segment's in the merged header, which then covers
/// none of the merged payload. GRO's mark in the inner checksum field
/// ([`merged::has_gro_mark`], the same sign that [`merged`] repairs such packets by) tells it
/// from a packet corrupted on the way, which is dropped as `gre_bad_checksum`.
fn merged_gre(
    packet: &[u8],
    tun: TunnelType,
    key: Option<u32>,
) -> Result<encap::Stripped, AgentDrop> {
    let bad = AgentDrop::Strip(StripError::GreBadChecksum);
    let s = encap::strip_ip_with(packet, tun, key, GreChecksum::Skip).map_err(|_| bad)?;
    match packet.get(s.inner.clone()) {
        Some(inner) if merged::has_gro_mark(inner) => Ok(s),
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::{build_outer, OuterParams, Tunnel, MAX_OUTER_HEADER};

    const DIRECTOR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
    const RS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    /// A 28-byte IPv4/UDP packet from a client to `dst`, valid header checksum.
    fn inner(dst: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 198, 51, 100, 7, 0, 0, 0, 0, 0x30, 0x39,
            0, 80, 0, 8, 0, 0,
        ];
        p[16..20].copy_from_slice(&dst.octets());
        let mut sum = 0u32;
        for w in p[..20].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        p
    }

    /// `inner` wrapped in an outer header from `src`.
    fn wrap(tun: TunnelType, gre_key: Option<u32>, src: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
        let tunnel = Tunnel::new(tun, encap::DEFAULT_GUE_PORT, false, gre_key);
        wrap_in(tunnel, src, inner)
    }

    /// `inner` wrapped in a `tunnel` header from `src`.
    fn wrap_in(tunnel: Tunnel, src: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
        let mut hdr = [0u8; MAX_OUTER_HEADER];
        let params = OuterParams {
            src,
            dst: RS,
            tunnel,
            flow_hash: 7,
        };
        let n = build_outer(&params, inner, &mut hdr).unwrap();
        let mut p = hdr[..n].to_vec();
        p.extend_from_slice(inner);
        p
    }

    fn filter(tun: TunnelType, gre_key: Option<u32>) -> Filter {
        let allow = AllowList::new(&["192.168.1.0/29".parse().unwrap()]);
        Filter::new(allow, &[VIP, Ipv4Addr::new(10, 0, 0, 1)], tun, gre_key)
    }

    #[test]
    fn allow_list_matches_networks_and_single_hosts() {
        let allow = AllowList::new(&[
            "192.168.1.9/29".parse().unwrap(),
            "10.1.1.1/32".parse().unwrap(),
        ]);
        assert!(allow.contains(Ipv4Addr::new(192, 168, 1, 8)));
        assert!(allow.contains(Ipv4Addr::new(192, 168, 1, 15)));
        assert!(!allow.contains(Ipv4Addr::new(192, 168, 1, 16)));
        assert!(allow.contains(Ipv4Addr::new(10, 1, 1, 1)));
        assert!(!allow.contains(Ipv4Addr::new(10, 1, 1, 2)));
        assert!(!AllowList::new(&[]).contains(Ipv4Addr::new(10, 1, 1, 1)));
    }

    #[test]
    fn ipip_from_an_allowed_director_to_a_vip_is_delivered() {
        let inner = inner(VIP);
        let pkt = wrap(TunnelType::Ipip, None, DIRECTOR, &inner);
        let r = filter(TunnelType::Ipip, None)
            .check_ip(&pkt, DIRECTOR)
            .unwrap();
        assert_eq!(&pkt[r], &inner[..]);
    }

    #[test]
    fn gre_with_the_right_key_is_delivered_and_a_wrong_key_is_not() {
        let inner = inner(VIP);
        let pkt = wrap(TunnelType::Gre, Some(42), DIRECTOR, &inner);
        let r = filter(TunnelType::Gre, Some(42))
            .check_ip(&pkt, DIRECTOR)
            .unwrap();
        assert_eq!(&pkt[r], &inner[..]);
        assert_eq!(
            filter(TunnelType::Gre, Some(43)).check_ip(&pkt, DIRECTOR),
            Err(AgentDrop::Strip(StripError::GreKeyMismatch))
        );
    }

    /// GRE with `--tun-csum`: delivered when the checksum verifies, dropped as
    /// `gre_bad_checksum` when a byte under it changed on the way, unless the kernel's GRO
    /// merged the packet (its mark in the inner checksum field): GRO verified each segment.
    #[test]
    fn gre_with_a_checksum_is_verified() {
        let with_csum = Tunnel::Gre {
            key: Some(42),
            csum: true,
        };
        let f = filter(TunnelType::Gre, Some(42));
        let inner = inner(VIP);
        let pkt = wrap_in(with_csum, DIRECTOR, &inner);
        assert_eq!(pkt[20] & 0x80, 0x80, "C bit");
        let r = f.check_ip(&pkt, DIRECTOR).unwrap();
        assert_eq!(&pkt[r], &inner[..]);
        let mut bad = pkt.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        let drop = f.check_ip(&bad, DIRECTOR).unwrap_err();
        assert_eq!(drop, AgentDrop::Strip(StripError::GreBadChecksum));
        assert_eq!(drop.as_str(), "gre_bad_checksum");
        // The key is judged after the checksum.
        assert_eq!(
            filter(TunnelType::Gre, Some(43)).check_ip(&pkt, DIRECTOR),
            Err(AgentDrop::Strip(StripError::GreKeyMismatch))
        );

        // A TCP packet as GRO leaves it (pseudo-header sum in the checksum field) behind the
        // first segment's GRE checksum: taken, and classified as merged later.
        let src = Ipv4Addr::new(198, 51, 100, 7);
        let mut tcp = crate::wire::testing::tcp_packet(src, 40000, VIP, 80, 0x10, 100);
        let segment = wrap_in(with_csum, DIRECTOR, &tcp);
        tcp.extend_from_slice(&[7; 100]);
        let pseudo = crate::wire::checksum::pseudo_header_v4(src, VIP, 6, 220);
        tcp[36..38].copy_from_slice(&pseudo.to_be_bytes());
        let total = tcp.len() as u16;
        let mut ip = crate::wire::Ipv4Packet::new_unchecked(&mut tcp[..]);
        ip.set_total_len(total);
        ip.fill_checksum();
        let mut merged = wrap_in(with_csum, DIRECTOR, &tcp);
        merged[24..26].copy_from_slice(&segment[24..26]);
        let mut outer = crate::wire::Ipv4Packet::new_unchecked(&mut merged[..]);
        outer.set_total_len((32 + tcp.len()) as u16);
        outer.fill_checksum();
        assert_eq!(
            encap::strip_ip(&merged, TunnelType::Gre, Some(42)),
            Err(StripError::GreBadChecksum)
        );
        let r = f.check_ip(&merged, DIRECTOR).unwrap();
        assert_eq!(&merged[r], &tcp[..]);
        // Everything else is judged as ever: a merged packet with another key is dropped
        // (counted where its checksum failed first).
        assert_eq!(
            filter(TunnelType::Gre, Some(43)).check_ip(&merged, DIRECTOR),
            Err(AgentDrop::Strip(StripError::GreBadChecksum))
        );
        // Without the mark it is a corrupted packet.
        let mut unmarked = merged.clone();
        unmarked[32 + 36] ^= 0xff;
        assert_eq!(
            f.check_ip(&unmarked, DIRECTOR),
            Err(AgentDrop::Strip(StripError::GreBadChecksum))
        );
    }

    #[test]
    fn gue_payload_is_delivered() {
        let inner = inner(VIP);
        let pkt = wrap(TunnelType::Gue, None, DIRECTOR, &inner);
        // The UDP socket hands over the payload after IPv4 (20) and UDP (8).
        let payload = &pkt[28..];
        let r = filter(TunnelType::Gue, None)
            .check_gue(payload, DIRECTOR, RS)
            .unwrap();
        assert_eq!(&payload[r], &inner[..]);
    }

    #[test]
    fn a_source_outside_the_allow_list_is_dropped_before_parsing() {
        let stranger = Ipv4Addr::new(192, 168, 1, 99);
        let pkt = wrap(TunnelType::Ipip, None, stranger, &inner(VIP));
        let mut f = filter(TunnelType::Ipip, None);
        assert_eq!(f.check_ip(&pkt, stranger), Err(AgentDrop::NotAllowed));
        assert_eq!(f.check_ip(&[0xff; 3], stranger), Err(AgentDrop::NotAllowed));
        assert_eq!(f.check_gue(&[], stranger, RS), Err(AgentDrop::NotAllowed));
    }

    #[test]
    fn an_inner_destination_that_is_not_a_vip_is_dropped() {
        let pkt = wrap(
            TunnelType::Ipip,
            None,
            DIRECTOR,
            &inner(Ipv4Addr::new(10, 0, 0, 2)),
        );
        let f = filter(TunnelType::Ipip, None);
        assert_eq!(f.check_ip(&pkt, DIRECTOR), Err(AgentDrop::NotVip));
    }

    /// `inner` in an authenticated GUE payload sealed with key `[k; 32]`, lane 0, `seq`.
    fn sealed(k: u8, seq: u64, src: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
        use crate::encap::auth::{Seal, TunnelKey};
        let key = TunnelKey::new(&[k; 32]);
        let seal = Seal {
            key: &key,
            lane: 0,
            seq,
        };
        let params = OuterParams {
            src,
            dst: RS,
            tunnel: Tunnel::Gue {
                port: encap::DEFAULT_GUE_PORT,
                csum: false,
            },
            flow_hash: 7,
        };
        let mut hdr = [0u8; MAX_OUTER_HEADER];
        let n = encap::build_outer_sealed(&params, inner, Some(&seal), &mut hdr).unwrap();
        [&hdr[28..n], inner].concat()
    }

    fn keyed(keys: &[u8]) -> Filter {
        use crate::encap::auth::{Keyring, TunnelKey};
        let ring = Keyring::new(keys.iter().map(|k| TunnelKey::new(&[*k; 32])).collect());
        filter(TunnelType::Gue, None).with_keys(ring.unwrap())
    }

    #[test]
    fn with_a_key_only_authenticated_fresh_gue_is_delivered() {
        let inner = inner(VIP);
        let mut f = keyed(&[1]);
        let good = sealed(1, 10, DIRECTOR, &inner);
        let r = f.check_gue(&good, DIRECTOR, RS).unwrap();
        assert_eq!(&good[r], &inner[..]);
        // The same packet again: a replay.
        assert_eq!(
            f.check_gue(&good, DIRECTOR, RS),
            Err(AgentDrop::Auth(AuthError::Replayed))
        );
        // A plain GUE packet (a forger without the key), a wrong key, a changed inner packet,
        // another destination address than the one sealed.
        let plain = &wrap(TunnelType::Gue, None, DIRECTOR, &inner)[28..];
        assert_eq!(
            f.check_gue(plain, DIRECTOR, RS),
            Err(AgentDrop::Auth(AuthError::Missing))
        );
        assert_eq!(
            f.check_gue(&sealed(2, 11, DIRECTOR, &inner), DIRECTOR, RS),
            Err(AgentDrop::Auth(AuthError::UnknownKey))
        );
        let mut forged = sealed(1, 12, DIRECTOR, &inner);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            f.check_gue(&forged, DIRECTOR, RS),
            Err(AgentDrop::Auth(AuthError::BadMac))
        );
        assert_eq!(
            f.check_gue(&sealed(1, 13, DIRECTOR, &inner), DIRECTOR, VIP),
            Err(AgentDrop::Auth(AuthError::BadMac))
        );
        // The allow-list still comes first; the VIP check after the MAC.
        let stranger = Ipv4Addr::new(192, 168, 1, 99);
        assert_eq!(
            f.check_gue(&sealed(1, 14, stranger, &inner), stranger, RS),
            Err(AgentDrop::NotAllowed)
        );
        let other = sealed(1, 15, DIRECTOR, &self::inner(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(f.check_gue(&other, DIRECTOR, RS), Err(AgentDrop::NotVip));
        // Rotation: both keys are taken.
        let mut f = keyed(&[1, 2]);
        assert!(f
            .check_gue(&sealed(1, 20, DIRECTOR, &inner), DIRECTOR, RS)
            .is_ok());
        assert!(f
            .check_gue(&sealed(2, 20, DIRECTOR, &inner), DIRECTOR, RS)
            .is_ok());
        // Without a key the authenticated header is skipped: delivered.
        let mut open = filter(TunnelType::Gue, None);
        let r = open.check_gue(&good, DIRECTOR, RS).unwrap();
        assert_eq!(&good[r], &inner[..]);
    }

    #[test]
    fn vip_ports_limit_what_reaches_the_vip() {
        use super::super::ports::VipPorts;
        let ports = VipPorts::parse(&[format!("{VIP}=tcp:80")]).unwrap();
        let f = filter(TunnelType::Ipip, None).with_ports(ports);
        let tcp = |port| {
            crate::wire::testing::tcp_packet(
                Ipv4Addr::new(198, 51, 100, 7),
                4000,
                VIP,
                port,
                0x02,
                0,
            )
        };
        let web = wrap(TunnelType::Ipip, None, DIRECTOR, &tcp(80));
        assert!(f.check_ip(&web, DIRECTOR).is_ok());
        let ssh = wrap(TunnelType::Ipip, None, DIRECTOR, &tcp(22));
        assert_eq!(f.check_ip(&ssh, DIRECTOR), Err(AgentDrop::PortNotAllowed));
        // The UDP test packet (port 80) to the VIP: no UDP rule.
        let udp = wrap(TunnelType::Ipip, None, DIRECTOR, &inner(VIP));
        assert_eq!(f.check_ip(&udp, DIRECTOR), Err(AgentDrop::ProtoNotAllowed));
        // The other VIP has no list.
        let other = wrap(
            TunnelType::Ipip,
            None,
            DIRECTOR,
            &inner(Ipv4Addr::new(10, 0, 0, 1)),
        );
        assert!(f.check_ip(&other, DIRECTOR).is_ok());
        assert_eq!(AgentDrop::PortNotAllowed.as_str(), "port_not_allowed");
        assert_eq!(AgentDrop::Auth(AuthError::BadMac).as_str(), "auth_bad_mac");
    }

    fn gateway(tun: TunnelType, gre_key: Option<u32>) -> Filter {
        Filter::gateway(
            tun,
            vec![GatewayPeer {
                outer: Ipv4Net::from(DIRECTOR),
                gre_key,
                prefixes: vec!["198.51.100.0/24".parse().unwrap()],
            }],
        )
    }

    #[test]
    fn a_gateway_accepts_any_destination_from_the_peers_prefixes_only() {
        // `inner()` comes from 198.51.100.7, inside the peer's prefix.
        let to_anyone = inner(Ipv4Addr::new(172, 16, 8, 2));
        let pkt = wrap(TunnelType::Gre, Some(5), DIRECTOR, &to_anyone);
        let r = gateway(TunnelType::Gre, Some(5))
            .check_ip(&pkt, DIRECTOR)
            .unwrap();
        assert_eq!(&pkt[r], &to_anyone[..]);
        assert_eq!(
            gateway(TunnelType::Gre, None).check_ip(&pkt, DIRECTOR),
            Err(AgentDrop::Strip(StripError::GreKeyMismatch))
        );
        // A spoofed inner source, from the right peer.
        let mut spoofed = to_anyone.clone();
        spoofed[12..16].copy_from_slice(&[10, 1, 0, 2]);
        let sum = crate::wire::checksum::checksum(&{
            let mut h = spoofed[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        spoofed[10..12].copy_from_slice(&sum.to_be_bytes());
        let pkt = wrap(TunnelType::Ipip, None, DIRECTOR, &spoofed);
        assert_eq!(
            gateway(TunnelType::Ipip, None).check_ip(&pkt, DIRECTOR),
            Err(AgentDrop::InnerSourceNotAllowed)
        );
        // Another sender, even with a good inner source.
        let stranger = Ipv4Addr::new(192, 168, 1, 3);
        let pkt = wrap(TunnelType::Ipip, None, stranger, &to_anyone);
        assert_eq!(
            gateway(TunnelType::Ipip, None).check_ip(&pkt, stranger),
            Err(AgentDrop::NotAllowed)
        );
    }

    #[test]
    fn garbage_from_an_allowed_source_is_a_strip_error_not_a_panic() {
        let mut f = filter(TunnelType::Ipip, None);
        for len in 0..48 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x45) as u8).collect();
            assert!(matches!(
                f.check_ip(&junk, DIRECTOR),
                Err(AgentDrop::Strip(_))
            ));
            assert!(f.check_gue(&junk, DIRECTOR, RS).is_err());
        }
        assert_eq!(
            AgentDrop::Strip(StripError::Truncated).as_str(),
            "truncated"
        );
    }

    mod ipv6 {
        use super::*;
        use crate::encap::{build_outer6, OuterParams6, TrafficClass, OUTER_TTL};
        use crate::wire::ipv6::Ipv6Repr;
        use crate::wire::IpProtocol;

        const DIR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
        const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 10);
        const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);

        /// An IPv6/UDP packet from a client to `dst`:`port` (checksum not filled in: the
        /// filter does not read it).
        fn inner6(dst: Ipv6Addr, port: u16) -> Vec<u8> {
            let mut p = vec![0u8; 40 + 8 + 4];
            Ipv6Repr {
                src: "2001:db8:9::7".parse().unwrap(),
                dst,
                next_header: IpProtocol::UDP,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                payload_len: 12,
            }
            .emit(&mut p)
            .unwrap();
            p[40..42].copy_from_slice(&40000u16.to_be_bytes());
            p[42..44].copy_from_slice(&port.to_be_bytes());
            p[44..46].copy_from_slice(&12u16.to_be_bytes());
            p
        }

        fn filter6(tun: TunnelType) -> Filter {
            let allow = AllowList::of(&[
                "2001:db8:1::/64".parse().unwrap(),
                "192.168.1.0/29".parse().unwrap(),
            ]);
            Filter::new(allow, &[VIP], tun, None).with_vips6(&[VIP6])
        }

        /// `inner` in `tun` over IPv6 from `src`: the whole packet, and where its payload
        /// (what an AF_INET6 raw socket or the UDP socket hands) starts.
        fn wrap6(tun: TunnelType, src: Ipv6Addr, inner: &[u8]) -> (Vec<u8>, usize) {
            let p = OuterParams6 {
                src,
                dst: RS6,
                tunnel: Tunnel::new(tun, encap::DEFAULT_GUE_PORT, false, None),
                flow_hash: 9,
                hop_limit: OUTER_TTL,
                traffic_class: TrafficClass::CopyInner,
                udp_zero: Udp6Zero::Never,
            };
            let mut hdr = [0u8; MAX_OUTER_HEADER];
            let n = build_outer6(&p, inner, None, &mut hdr).unwrap();
            ([&hdr[..n], inner].concat(), 40)
        }

        #[test]
        fn every_tunnel_over_ipv6_with_either_inner_family_is_delivered() {
            for tun in [TunnelType::Ipip, TunnelType::Gre, TunnelType::Gue] {
                for inner in [inner6(VIP6, 80), super::inner(VIP)] {
                    let (pkt, at) = wrap6(tun, DIR6, &inner);
                    let payload = &pkt[at..];
                    let r = match tun {
                        TunnelType::Gue => {
                            let udp = &payload[8..];
                            let r = filter6(tun)
                                .check_gue_ip(udp, DIR6.into(), RS6.into())
                                .unwrap();
                            assert_eq!(&udp[r.clone()], &inner[..], "{tun}");
                            continue;
                        }
                        _ => filter6(tun)
                            .check_payload6(payload, DIR6, RS6, pkt[6])
                            .unwrap(),
                    };
                    assert_eq!(&payload[r], &inner[..], "{tun}");
                }
            }
        }

        #[test]
        fn ipv6_inner_over_ipv4_is_delivered_sit_gre_and_gue() {
            let inner = inner6(VIP6, 80);
            for tun in [TunnelType::Ipip, TunnelType::Gre] {
                let pkt = super::wrap(tun, None, DIRECTOR, &inner);
                let r = filter6(tun).check_ip(&pkt, DIRECTOR).unwrap();
                assert_eq!(&pkt[r], &inner[..], "{tun}");
            }
            let pkt = super::wrap(TunnelType::Gue, None, DIRECTOR, &inner);
            let udp = &pkt[28..];
            let r = filter6(TunnelType::Gue)
                .check_gue(udp, DIRECTOR, RS)
                .unwrap();
            assert_eq!(&udp[r], &inner[..]);
            // An IPv4-mapped source (an AF_INET6 socket receiving IPv4) is IPv4.
            let mapped = IpAddr::V6(DIRECTOR.to_ipv6_mapped());
            let r = filter6(TunnelType::Gue)
                .check_gue_ip(udp, mapped, RS.to_ipv6_mapped().into())
                .unwrap();
            assert_eq!(&udp[r], &inner[..]);
        }

        #[test]
        fn forged_sources_other_vips_and_ports_are_dropped_by_reason() {
            let forged: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
            let (pkt, at) = wrap6(TunnelType::Ipip, forged, &inner6(VIP6, 80));
            let f = filter6(TunnelType::Ipip);
            let e = f.check_payload6(&pkt[at..], forged, RS6, pkt[6]);
            assert_eq!(e, Err(AgentDrop::NotAllowed));
            assert_eq!(e.unwrap_err().as_str(), "not_allowed");
            let (pkt, at) = wrap6(TunnelType::Ipip, DIR6, &inner6(RS6, 80));
            let e = f.check_payload6(&pkt[at..], DIR6, RS6, pkt[6]);
            assert_eq!(e, Err(AgentDrop::NotVip));
            // An IPv4 allow-list entry does not let an IPv6 director in, nor the reverse.
            let v4only = Filter::new(
                AllowList::new(&["192.168.1.0/29".parse().unwrap()]),
                &[VIP],
                TunnelType::Ipip,
                None,
            )
            .with_vips6(&[VIP6]);
            let (pkt, at) = wrap6(TunnelType::Ipip, DIR6, &inner6(VIP6, 80));
            let e = v4only.check_payload6(&pkt[at..], DIR6, RS6, pkt[6]);
            assert_eq!(e, Err(AgentDrop::NotAllowed));
            // --vip-ports for an IPv6 VIP.
            let ports = super::super::VipPorts::parse(&["[2001:db8:a::1]=udp:53".into()]).unwrap();
            let f = filter6(TunnelType::Ipip).with_ports(ports);
            let (pkt, at) = wrap6(TunnelType::Ipip, DIR6, &inner6(VIP6, 80));
            let e = f.check_payload6(&pkt[at..], DIR6, RS6, pkt[6]);
            assert_eq!(e, Err(AgentDrop::PortNotAllowed));
            let (pkt, at) = wrap6(TunnelType::Ipip, DIR6, &inner6(VIP6, 53));
            assert!(f.check_payload6(&pkt[at..], DIR6, RS6, pkt[6]).is_ok());
            // Mixed families on a GUE datagram's addresses: refused.
            let (pkt, _) = wrap6(TunnelType::Gue, DIR6, &inner6(VIP6, 80));
            let e = filter6(TunnelType::Gue).check_gue_ip(&pkt[48..], DIR6.into(), RS.into());
            assert_eq!(e, Err(AgentDrop::NotAllowed));
        }

        #[test]
        fn a_gateway_takes_inner_ipv6_from_the_peers_ipv6_prefixes_only() {
            // `inner6()` comes from 2001:db8:9::7.
            let gw = |prefix: &str| {
                let peer = GatewayPeer {
                    outer: "192.168.1.2/32".parse().unwrap(),
                    gre_key: None,
                    prefixes: vec!["198.51.100.0/24".parse().unwrap(), prefix.parse().unwrap()],
                };
                Filter::gateway(TunnelType::Gre, vec![peer])
            };
            let inner = inner6(VIP6, 80);
            let pkt = super::wrap(TunnelType::Gre, None, DIRECTOR, &inner);
            let r = gw("2001:db8:9::/48").check_ip(&pkt, DIRECTOR).unwrap();
            assert_eq!(&pkt[r], &inner[..]);
            assert_eq!(
                gw("2001:db8:8::/48").check_ip(&pkt, DIRECTOR),
                Err(AgentDrop::InnerSourceNotAllowed)
            );
            // An IPv4 prefix never admits an IPv6 source, nor a stranger's packet.
            assert_eq!(
                gw("10.0.0.0/8").check_ip(&pkt, DIRECTOR),
                Err(AgentDrop::InnerSourceNotAllowed)
            );
            let stranger = Ipv4Addr::new(192, 168, 1, 3);
            let pkt = super::wrap(TunnelType::Gre, None, stranger, &inner);
            assert_eq!(
                gw("2001:db8:9::/48").check_ip(&pkt, stranger),
                Err(AgentDrop::NotAllowed)
            );
        }
    }
}

//! TUN mode's frame path: encapsulated packets leave as Ethernet frames on the workers'
//! `AF_PACKET` socket ([`FrameQueue`](super::tx::frames::FrameQueue)) instead of through an
//! `IP_HDRINCL` raw socket, which saves the kernel's route lookup and IP output path per packet.
//!
//! - [`decide`]: from the kernel's route to a real server and its output interface, whether
//!   frames can reach it: a unicast route out of an Ethernet interface (`ARPHRD_ETHER`) with a
//!   source address; the next hop is the gateway, or the server itself when it is on-link.
//!   Anything else (loopback, a TUN, a local address, no route) keeps the raw socket.
//! - [`TunnelLinks`]: the table the resolver ([`spawn_resolver`](super::resolver::spawn_resolver))
//!   publishes once per refresh: real server → interface, source and next-hop MACs, source
//!   address. A server is in it only while its next hop's MAC is known.
//! - [`LinkView`]: a worker's copy of the table, re-read when the resolver publishes, with the
//!   interfaces a send found gone (those servers take the raw socket until the next refresh).
//! - [`frame_outer`]: what the raw socket's kernel path filled into the outer IPv4 header and
//!   an `AF_PACKET` send does not: the source address (when the core left it 0), the
//!   identification, and then the header checksum (plus the GUE UDP checksum's pseudo-header
//!   part when the source changed). The total length is the core's already.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::director::nat::MixState;
use crate::encap::Tunnel;
use crate::sys::neigh::{Link, Route};
use crate::sys::packet::LinkDst;
use crate::wire::{checksum, Ipv4Packet};

/// How TUN-mode packets leave the director (`tunlb director --tunnel-tx`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TunnelTx {
    /// As Ethernet frames on the `AF_PACKET` socket to every real server reached through an
    /// Ethernet interface whose next hop's MAC is known; the raw socket for the others.
    #[default]
    Frames,
    /// Always through the `IP_HDRINCL` raw socket (the kernel routes every packet).
    Raw,
}

/// How frames reach one TUN-mode real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelLink {
    /// The output interface and the next hop's MAC.
    pub to: LinkDst,
    /// The interface's own MAC (the frames' source).
    pub src_mac: [u8; 6],
    /// The source address the kernel would give the outer packet (`RTA_PREFSRC`).
    pub src: Ipv4Addr,
}

/// Where frames to a real server go, before its next hop's MAC is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path {
    /// The output interface.
    pub ifindex: u32,
    /// The interface's MAC.
    pub src_mac: [u8; 6],
    /// The gateway, or the real server itself when it is on-link.
    pub next_hop: Ipv4Addr,
    /// The route's source address.
    pub src: Ipv4Addr,
}

/// Whether frames can reach real server `rip`, from the kernel's route to it and the route's
/// output interface (`None`: not looked up, e.g. because there is no route); `Err` says why it
/// keeps the raw socket.
pub fn decide(
    rip: Ipv4Addr,
    route: &io::Result<Route>,
    link: Option<&Link>,
) -> Result<Path, String> {
    let route = match route {
        Ok(r) => r,
        Err(e) => return Err(format!("no route to {rip} ({e})")),
    };
    if route.is_local() {
        return Err(format!("{rip} is an address of the director"));
    }
    if !route.is_unicast() || route.ifindex == 0 {
        return Err(format!("route type {} to {rip}", route.kind));
    }
    let Some(IpAddr::V4(src)) = route.prefsrc else {
        return Err(format!("the route to {rip} has no source address"));
    };
    // An IPv4 route's gateway is IPv4 (an IPv6 next hop would be `RTA_VIA`, not read).
    let next_hop = match route.gateway {
        None => rip,
        Some(IpAddr::V4(gateway)) => gateway,
        Some(IpAddr::V6(gateway)) => {
            return Err(format!("the route to {rip} has an IPv6 gateway {gateway}"))
        }
    };
    let Some(link) = link else {
        return Err(format!("interface {} unknown", route.ifindex));
    };
    match link.mac {
        Some(src_mac) if link.is_ethernet() => Ok(Path {
            ifindex: route.ifindex,
            src_mac,
            next_hop,
            src,
        }),
        _ => Err(format!(
            "interface {} is not Ethernet (type {})",
            route.ifindex, link.kind
        )),
    }
}

/// Framed real servers by address; hashed with the NAT table's multiply-fold hash, as a
/// worker looks one up for every tunnel packet it sends as a frame.
pub type LinkTable = HashMap<Ipv4Addr, TunnelLink, MixState>;

/// The resolver's table of framed real servers, shared with the workers.
#[derive(Debug, Default)]
pub struct TunnelLinks {
    /// Bumped by every [`publish`](Self::publish).
    generation: AtomicU64,
    table: Mutex<Arc<LinkTable>>,
}

impl TunnelLinks {
    /// An empty table: every real server takes the raw socket until the first publish.
    pub fn new() -> TunnelLinks {
        TunnelLinks::default()
    }

    /// Replaces the table (once per resolver refresh, whether or not it changed: a worker's
    /// [`LinkView`] forgets the interfaces it found gone when it re-reads it).
    pub fn publish(&self, table: LinkTable) {
        if let Ok(mut t) = self.table.lock() {
            *t = Arc::new(table);
        }
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn load(&self) -> (u64, Arc<LinkTable>) {
        let generation = self.generation.load(Ordering::Acquire);
        let table = self.table.lock().map(|t| t.clone()).unwrap_or_default();
        (generation, table)
    }
}

/// The most interfaces a worker remembers as gone between two refreshes.
const MAX_GONE: usize = 8;

/// A worker's view of [`TunnelLinks`]; [`sync`](Self::sync) once per batch.
#[derive(Debug)]
pub struct LinkView {
    links: Arc<TunnelLinks>,
    generation: u64,
    table: Arc<LinkTable>,
    /// Interfaces a frame send found gone since the table was read.
    gone: Vec<u32>,
}

impl LinkView {
    /// A view that reads `links` at the first [`sync`](Self::sync).
    pub fn new(links: Arc<TunnelLinks>) -> LinkView {
        LinkView {
            links,
            generation: u64::MAX,
            table: Arc::default(),
            gone: Vec::with_capacity(MAX_GONE),
        }
    }

    /// Re-reads the table if the resolver published since (one atomic load otherwise).
    pub fn sync(&mut self) {
        if self.links.generation.load(Ordering::Acquire) != self.generation {
            (self.generation, self.table) = self.links.load();
            self.gone.clear();
        }
    }

    /// How frames reach `dst`, if they do.
    pub fn get(&self, dst: Ipv4Addr) -> Option<&TunnelLink> {
        if self.table.is_empty() {
            return None;
        }
        self.table
            .get(&dst)
            .filter(|l| !self.gone.contains(&l.to.ifindex))
    }

    /// A send found interface `ifindex` gone: its servers take the raw socket until the next
    /// refresh. Returns whether that is news.
    pub fn mark_gone(&mut self, ifindex: u32) -> bool {
        if self.gone.contains(&ifindex) || self.gone.len() >= MAX_GONE {
            return false;
        }
        self.gone.push(ifindex);
        true
    }
}

/// Completes the outer header `header` (IPv4, then the header of `tunnel`, as
/// [`build_outer`](crate::encap::build_outer) made it) for an `AF_PACKET` send, where the
/// kernel fills nothing in: a 0 source becomes `src` (and a GUE UDP checksum follows it), a 0
/// identification becomes `ident`, and the header checksum is recomputed. Returns false if
/// `header` is not a 20-byte-header IPv4 packet's start.
pub fn frame_outer(header: &mut [u8], tunnel: Tunnel, src: Ipv4Addr, ident: u16) -> bool {
    if header.len() < 20 || header[0] != 0x45 {
        return false;
    }
    let (ip, rest) = header.split_at_mut(20);
    let mut ip = Ipv4Packet::new_unchecked(ip);
    if ip.src_addr().is_unspecified() {
        ip.set_src_addr(src);
        // GUE: the outer UDP checksum (if any) covered the 0 source in its pseudo-header.
        if let Tunnel::Gue { .. } = tunnel {
            if let Some(field) = rest.get_mut(6..8) {
                let old = u16::from_be_bytes([field[0], field[1]]);
                if old != 0 {
                    let new = checksum::update_addr(old, Ipv4Addr::UNSPECIFIED, src);
                    let new = if new == 0 { 0xffff } else { new };
                    field.copy_from_slice(&new.to_be_bytes());
                }
            }
        }
    }
    if ip.ident() == 0 {
        ip.set_ident(ident);
    }
    ip.fill_checksum();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::{build_outer, OuterParams, TunnelType, MAX_OUTER_HEADER};
    use crate::wire::testing::tcp_packet;
    use crate::wire::IpProtocol;
    use crate::wire::Ipv4Packet;

    const RIP: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 11);
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];

    fn route(kind: u8, gateway: Option<Ipv4Addr>, prefsrc: Option<Ipv4Addr>) -> io::Result<Route> {
        Ok(Route {
            kind,
            ifindex: 3,
            gateway: gateway.map(IpAddr::V4),
            prefsrc: prefsrc.map(IpAddr::V4),
        })
    }

    fn link(kind: u16, mac: Option<[u8; 6]>) -> Link {
        Link {
            kind,
            mtu: Some(1500),
            mac,
        }
    }

    /// A route answer, the interface, and the decision (or how its reason starts).
    type Case = (io::Result<Route>, Option<Link>, Result<Path, &'static str>);

    #[test]
    fn only_unicast_routes_out_of_ethernet_interfaces_take_frames() {
        let eth = link(libc::ARPHRD_ETHER, Some(MAC));
        let gw = Ipv4Addr::new(10, 3, 0, 1);
        let framed = |next_hop| Path {
            ifindex: 3,
            src_mac: MAC,
            next_hop,
            src: SRC,
        };
        let unicast = libc::RTN_UNICAST;
        let cases: [Case; 9] = [
            // On-link: the server is its own next hop; behind a router: the gateway.
            (route(unicast, None, Some(SRC)), Some(eth), Ok(framed(RIP))),
            (
                route(unicast, Some(gw), Some(SRC)),
                Some(eth),
                Ok(framed(gw)),
            ),
            (
                route(libc::RTN_LOCAL, None, Some(SRC)),
                Some(eth),
                Err("10.3.0.12 is an address of the director"),
            ),
            (
                route(libc::RTN_BLACKHOLE, None, None),
                None,
                Err("route type 6 to 10.3.0.12"),
            ),
            (
                Err(io::Error::from_raw_os_error(libc::ENETUNREACH)),
                None,
                Err("no route to 10.3.0.12"),
            ),
            (
                route(unicast, None, None),
                Some(eth),
                Err("the route to 10.3.0.12 has no source address"),
            ),
            (
                route(unicast, None, Some(SRC)),
                Some(link(libc::ARPHRD_LOOPBACK, Some([0; 6]))),
                Err("interface 3 is not Ethernet (type 772)"),
            ),
            (
                route(unicast, None, Some(SRC)),
                Some(link(libc::ARPHRD_NONE, None)),
                Err("interface 3 is not Ethernet (type 65534)"),
            ),
            (
                route(unicast, None, Some(SRC)),
                None,
                Err("interface 3 unknown"),
            ),
        ];
        for (i, (r, l, want)) in cases.iter().enumerate() {
            let got = decide(RIP, r, l.as_ref());
            match want {
                Ok(p) => assert_eq!(got, Ok(*p), "case {i}"),
                Err(why) => {
                    let err = got.expect_err(&format!("case {i}"));
                    assert!(err.starts_with(why), "case {i}: {err}");
                }
            }
        }
    }

    /// A 60-byte TCP packet in IPIP, DF set, outer source left to the kernel (0.0.0.0).
    static IPIP_OUTER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x50, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x0a, 0x03, 0x00, 0x0c,
    ];
    /// The same header as it goes into the frame: source, identification 0x1234, checksum.
    static IPIP_FRAMED: [u8; 20] = [
        0x45, 0x00, 0x00, 0x50, 0x12, 0x34, 0x40, 0x00, 0x40, 0x04, 0x14, 0x5a, 0x0a, 0x03, 0x00,
        0x0b, 0x0a, 0x03, 0x00, 0x0c,
    ];

    /// The core's parameters with no `--local-address`: the outer source is left 0.
    fn params(tun: TunnelType) -> OuterParams {
        OuterParams {
            src: Ipv4Addr::UNSPECIFIED,
            dst: RIP,
            // A UDP checksum for GUE; none for GRE.
            tunnel: Tunnel::new(tun, 6080, tun == TunnelType::Gue, None),
            flow_hash: 77,
        }
    }

    #[test]
    fn the_outer_header_is_completed_byte_for_byte() {
        let inner = tcp_packet(Ipv4Addr::new(10, 1, 0, 2), 40000, RIP, 80, 0x18, 20);
        assert_eq!(inner.len(), 60);
        let mut h = [0u8; MAX_OUTER_HEADER];
        let n = build_outer(&params(TunnelType::Ipip), &inner, &mut h).unwrap();
        // What the core hands over: checksum over a 0 source and identification.
        let mut core_hdr = IPIP_OUTER;
        let sum = !checksum::data(&core_hdr);
        core_hdr[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(&h[..n], &core_hdr);
        assert!(frame_outer(&mut h[..n], Tunnel::Ipip, SRC, 0x1234));
        assert_eq!(&h[..n], &IPIP_FRAMED);
        assert_eq!(checksum::data(&h[..n]), 0xffff, "header checksum");
        // A source and identification already there are kept.
        let mut again = IPIP_FRAMED;
        assert!(frame_outer(
            &mut again,
            Tunnel::Ipip,
            Ipv4Addr::new(1, 1, 1, 1),
            7
        ));
        assert_eq!(again, IPIP_FRAMED);
        assert!(!frame_outer(&mut [0x46; 24], Tunnel::Ipip, SRC, 1));
        assert!(!frame_outer(&mut [0x45; 19], Tunnel::Ipip, SRC, 1));
    }

    #[test]
    fn a_gue_checksum_follows_the_filled_in_source() {
        let inner = tcp_packet(Ipv4Addr::new(10, 1, 0, 2), 40000, RIP, 80, 0x18, 33);
        let mut h = [0u8; MAX_OUTER_HEADER];
        let p = params(TunnelType::Gue);
        let n = build_outer(&p, &inner, &mut h).unwrap();
        assert!(frame_outer(&mut h[..n], p.tunnel, SRC, 9));
        let mut dgram = h[..n].to_vec();
        dgram.extend_from_slice(&inner);
        assert!(Ipv4Packet::new_checked(&dgram[..])
            .unwrap()
            .verify_checksum());
        // Built with the source from the start: the same bytes but the identification.
        let mut want = [0u8; MAX_OUTER_HEADER];
        let m = build_outer(&OuterParams { src: SRC, ..p }, &inner, &mut want).unwrap();
        assert!(frame_outer(&mut want[..m], p.tunnel, SRC, 9));
        assert_eq!(&h[..n], &want[..m]);
        let udp = &dgram[20..];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(SRC, RIP, IpProtocol::UDP, udp.len() as u16),
            checksum::data(udp),
        ]);
        assert_eq!(sum, 0xffff, "outer UDP checksum");
    }

    #[test]
    fn a_view_rereads_the_table_and_forgets_gone_interfaces_then() {
        let links = Arc::new(TunnelLinks::new());
        let mut view = LinkView::new(links.clone());
        view.sync();
        assert_eq!(view.get(RIP), None);
        let l = TunnelLink {
            to: LinkDst {
                ifindex: 3,
                mac: MAC,
            },
            src_mac: MAC,
            src: SRC,
        };
        links.publish(LinkTable::from_iter([(RIP, l)]));
        assert_eq!(view.get(RIP), None, "not before sync");
        view.sync();
        assert_eq!(view.get(RIP), Some(&l));
        assert!(view.mark_gone(3));
        assert!(!view.mark_gone(3));
        assert_eq!(view.get(RIP), None);
        view.sync();
        assert_eq!(view.get(RIP), None, "until the next publish");
        links.publish(LinkTable::from_iter([(RIP, l)]));
        view.sync();
        assert_eq!(view.get(RIP), Some(&l));
    }
}

//! The IPv6 path of the core ([`super::v6`]): scheduling, the flow table, tunnels over IPv6,
//! Packet Too Big, persistence by prefix, ICMPv6 errors, drop reasons; DR to IPv6 servers.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use super::Director;
use crate::director::conn::Timeouts;
use crate::director::dr::NeighEntry;
use crate::director::{DirectorConfig, DropReason, Registry, Shared, Verdict};
use crate::encap::TunnelType;
use crate::model::{
    DestConfig, Forward, Netmask, Persistence, Protocol, SchedulerKind, ServiceConfig, ServiceKey,
    ServiceSet,
};
use crate::time::Instant;
use crate::wire::testing::{ipv6_packet, tcp6_packet, udp6_packet};
use crate::wire::{IpProtocol, Ipv6Packet};

const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const RS1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x12);
const RS2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x13);

fn client(n: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, n, 0, 0, 7)
}

fn set(tun: TunnelType, persistence: Option<u8>) -> ServiceSet {
    let dest = |a: Ipv6Addr| DestConfig {
        addr: IpAddr::V6(a),
        port: 80,
        weight: 1,
        forward: Forward::tunnel(tun),
        u_threshold: 0,
        l_threshold: 0,
    };
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: IpAddr::V6(VIP),
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Rr,
            persistence: persistence.map(|len| Persistence {
                timeout: 300,
                netmask: Netmask::V6(len),
            }),
            mss_clamp: Some(1300),
            dests: vec![dest(RS1), dest(RS2)],
            policy: Default::default(),
        }],
    }
}

fn director(set: &ServiceSet) -> Director {
    let snap = Registry::new().build(set, &Timeouts::default()).unwrap();
    Director::new(Arc::new(Shared::new(snap)), DirectorConfig::default())
}

/// The outer destination and next header of an encapsulated verdict.
fn outer(v: &Verdict) -> (Ipv6Addr, u8) {
    let Verdict::Encap(e) = v else {
        panic!("not encapsulated: {v:?}");
    };
    assert!(
        e.header().len() >= 40 && e.header()[0] >> 4 == 6,
        "an IPv6 outer header"
    );
    let h = Ipv6Packet::new_unchecked(e.header());
    (h.dst_addr(), h.next_header())
}

#[test]
fn rr_alternates_over_ipv6_servers_and_flows_stay_put() {
    let mut d = director(&set(TunnelType::Ipip, None));
    let now = Instant::ZERO;
    let mut first = Vec::new();
    for port in 0..6 {
        let mut syn = tcp6_packet(client(1), 40000 + port, VIP, 80, 0x02, 0);
        let (dst, next) = outer(&d.handle_packet(now, &mut syn));
        assert_eq!(next, IpProtocol::IPV6, "ip6ip6");
        first.push(dst);
    }
    assert_eq!(first, [RS1, RS2, RS1, RS2, RS1, RS2]);
    // Later packets of each flow follow it (not the rr position).
    for port in [1, 0, 3] {
        let mut ack = tcp6_packet(client(1), 40000 + port, VIP, 80, 0x10, 100);
        let (dst, _) = outer(&d.handle_packet(now, &mut ack));
        assert_eq!(dst, first[usize::from(port)]);
    }
    assert_eq!(d.conns6().len(), 6);
    assert_eq!(d.conns().len(), 0, "the IPv4 table is not used");
    assert_eq!(d.counters().conns_created, 6);
    // A non-SYN of no flow starts none.
    let mut stray = tcp6_packet(client(2), 1, VIP, 80, 0x10, 0);
    assert_eq!(
        d.handle_packet(now, &mut stray),
        Verdict::Drop(DropReason::NoConnection)
    );
}

#[test]
fn every_tunnel_gets_its_ipv6_outer_header() {
    for (tun, next) in [
        (TunnelType::Ipip, IpProtocol::IPV6),
        (TunnelType::Gre, IpProtocol::GRE),
        (TunnelType::Gue, IpProtocol::UDP),
    ] {
        let mut d = director(&set(tun, None));
        let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
        let v = d.handle_packet(Instant::ZERO, &mut syn);
        assert_eq!(outer(&v), (RS1, next), "{tun:?}");
        let Verdict::Encap(e) = v else { unreachable!() };
        let h = Ipv6Packet::new_unchecked(e.header());
        assert_eq!(
            usize::from(h.payload_len()),
            e.header().len() - 40 + e.len,
            "{tun:?}"
        );
        assert!(h.src_addr().is_unspecified(), "the send path fills it in");
    }
}

#[test]
fn a_packet_too_big_for_the_tunnel_gets_packet_too_big_with_the_overhead_taken() {
    let mut d = director(&set(TunnelType::Gue, None));
    let now = Instant::ZERO;
    let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
    let _ = d.handle_packet(now, &mut syn);
    // 1500 bytes do not fit a 1500-byte tunnel with 52 bytes of IPv6 + UDP + GUE.
    let mut big = tcp6_packet(client(1), 1, VIP, 80, 0x10, 1500 - 60);
    let Verdict::Reply { len } = d.handle_packet(now, &mut big) else {
        panic!("no Packet Too Big");
    };
    let ip = Ipv6Packet::new_checked(&big[..len]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, client(1)));
    let icmp = &big[40..len];
    assert_eq!(icmp[0], 2, "Packet Too Big");
    assert_eq!(
        u32::from_be_bytes(icmp[4..8].try_into().unwrap()),
        1500 - 52
    );
    assert_eq!(d.counters().drops[DropReason::TooBig as usize], 1);
    // 1448 bytes fit.
    let mut fits = tcp6_packet(client(1), 1, VIP, 80, 0x10, 1448 - 60);
    assert!(matches!(d.handle_packet(now, &mut fits), Verdict::Encap(_)));
}

#[test]
fn syns_get_their_mss_clamped() {
    let mut d = director(&set(TunnelType::Ipip, None));
    let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
    let _ = d.handle_packet(Instant::ZERO, &mut syn);
    assert_eq!(&syn[60..64], &[2, 4, 0x05, 0x14], "MSS 1300");
    assert_eq!(d.counters().mss_clamped, 1);
    let tcp = &syn[40..];
    assert_eq!(
        crate::wire::checksum::upper_layer_v6(client(1), VIP, 6, tcp),
        0xffff,
        "checksum still valid"
    );
}

#[test]
fn persistence_groups_clients_by_prefix_length() {
    let mut d = director(&set(TunnelType::Ipip, Some(48)));
    let now = Instant::ZERO;
    // client(n) differ in their fourth group: one /48, so one server for all.
    let mut dsts = Vec::new();
    for n in 0..4 {
        let mut syn = tcp6_packet(client(n), 1000 + n, VIP, 80, 0x02, 0);
        dsts.push(outer(&d.handle_packet(now, &mut syn)).0);
    }
    assert!(dsts.iter().all(|&a| a == dsts[0]), "{dsts:?}");
    // With /128 each client is its own group: rr goes on.
    let mut d = director(&set(TunnelType::Ipip, Some(128)));
    let mut dsts = Vec::new();
    for n in 0..4 {
        let mut syn = tcp6_packet(client(n), 1000 + n, VIP, 80, 0x02, 0);
        dsts.push(outer(&d.handle_packet(now, &mut syn)).0);
    }
    assert_eq!(dsts, [RS1, RS2, RS1, RS2]);
}

/// A Packet Too Big (MTU 1280) from a router to the VIP, quoting the server's answer
/// VIP:80 → client(1):2 (the flow of the second SYN the tests send).
fn too_big_about_port_2() -> Vec<u8> {
    let answer = tcp6_packet(VIP, 80, client(1), 2, 0x10, 1400);
    let mut icmp = vec![2, 0, 0, 0, 0, 0, 5, 0];
    icmp.extend(&answer[..1232]);
    let router = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);
    let sum = !crate::wire::checksum::upper_layer_v6(router, VIP, 58, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    ipv6_packet(router, VIP, IpProtocol::ICMPV6, &icmp)
}

#[test]
fn icmpv6_errors_about_a_flow_go_to_its_server() {
    let mut d = director(&set(TunnelType::Ipip, None));
    let now = Instant::ZERO;
    for port in [1, 2] {
        let mut syn = tcp6_packet(client(1), port, VIP, 80, 0x02, 0);
        let _ = d.handle_packet(now, &mut syn);
    }
    // A router between the server and the client says the server's answer is too big.
    let mut err = too_big_about_port_2();
    assert_eq!(outer(&d.handle_packet(now, &mut err)).0, RS2);
    // An echo request to the VIP is not served.
    let mut echo = ipv6_packet(
        client(1),
        VIP,
        IpProtocol::ICMPV6,
        &[128, 0, 0, 0, 0, 1, 0, 1],
    );
    assert_eq!(
        d.handle_packet(now, &mut echo),
        Verdict::Drop(DropReason::IcmpUnsupported)
    );
}

#[test]
fn what_is_not_served_is_dropped_by_reason() {
    let mut d = director(&set(TunnelType::Ipip, None));
    let now = Instant::ZERO;
    let mut udp = udp6_packet(client(1), 1, VIP, 80, 10);
    assert_eq!(
        d.handle_packet(now, &mut udp),
        Verdict::Drop(DropReason::NoService)
    );
    let mut other = tcp6_packet(client(1), 1, RS1, 80, 0x02, 0);
    assert_eq!(
        d.handle_packet(now, &mut other),
        Verdict::Drop(DropReason::NoService)
    );
    let mut short = vec![0x60, 0, 0, 0];
    assert_eq!(
        d.handle_packet(now, &mut short),
        Verdict::Drop(DropReason::MalformedIp)
    );
    // A later fragment (offset 8) carries no ports.
    let mut frag = vec![IpProtocol::TCP, 0, 0, 8, 0, 0, 0, 1];
    frag.extend([0u8; 16]);
    let mut later = ipv6_packet(client(1), VIP, IpProtocol::IPV6_FRAG, &frag);
    assert_eq!(
        d.handle_packet(now, &mut later),
        Verdict::Drop(DropReason::FragmentNoFlow)
    );
}

/// A fragment of a UDP datagram to the VIP: Fragment header (identification `ident`,
/// offset `offset`, M `more`) then `data`.
fn udp_fragment(sport: u16, ident: u32, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let mut f = vec![IpProtocol::UDP, 0];
    f.extend((offset | u16::from(more)).to_be_bytes());
    f.extend(ident.to_be_bytes());
    if offset == 0 {
        // The UDP header (its checksum is not checked by the director).
        f.extend(sport.to_be_bytes());
        f.extend(53u16.to_be_bytes());
        f.extend(((8 + 2 * data.len()) as u16).to_be_bytes());
        f.extend([0, 0]);
    }
    f.extend_from_slice(data);
    ipv6_packet(client(1), VIP, IpProtocol::IPV6_FRAG, &f)
}

#[test]
fn later_fragments_follow_the_first_ones_server_and_free_the_datagram() {
    let mut s = set(TunnelType::Ipip, None);
    s.services[0].key.port = 53;
    s.services[0].key.proto = Protocol::Udp;
    let mut d = director(&s);
    let now = Instant::ZERO;
    let dst = |v: Verdict| outer(&v).0;
    // Two datagrams of two flows, 8 + 16 bytes in the first fragment and 16 in the last.
    let mut servers = Vec::new();
    for (sport, ident) in [(5000, 7), (5001, 8)] {
        let mut first = udp_fragment(sport, ident, 0, true, &[1; 16]);
        let to = dst(d.handle_packet(now, &mut first));
        assert_eq!(d.shared().frags().len(), 1, "the datagram is tracked");
        let mut last = udp_fragment(sport, ident, 24, false, &[2; 16]);
        let v = d.handle_packet(now, &mut last);
        let Verdict::Encap(e) = &v else {
            panic!("the later fragment was not forwarded: {v:?}");
        };
        assert_eq!(e.len, last.len(), "the fragment goes whole");
        assert_eq!(dst(v), to, "the later fragment follows the first");
        assert!(d.shared().frags().is_empty(), "freed at the last byte");
        servers.push(to);
    }
    assert_eq!(servers, [RS1, RS2], "one flow each, rr");
    // A later fragment of a datagram whose first fragment was not seen, or after it was
    // freed: no flow.
    for ident in [9, 7] {
        let mut stray = udp_fragment(5000, ident, 24, false, &[2; 16]);
        assert_eq!(
            d.handle_packet(now, &mut stray),
            Verdict::Drop(DropReason::FragmentNoFlow)
        );
    }
}

#[test]
fn an_ipv6_vip_reaches_ipv4_servers_through_ipv4_tunnels() {
    for (tun, proto) in [
        (TunnelType::Ipip, IpProtocol::IPV6),
        (TunnelType::Gre, IpProtocol::GRE),
        (TunnelType::Gue, IpProtocol::UDP),
    ] {
        let mut s = set(tun, None);
        for (d, a) in s.services[0]
            .dests
            .iter_mut()
            .zip([[10, 3, 0, 12], [10, 3, 0, 13]])
        {
            d.addr = IpAddr::from(a);
        }
        let mut d = director(&s);
        let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
        let Verdict::Encap(e) = d.handle_packet(Instant::ZERO, &mut syn) else {
            panic!("{tun:?}: not encapsulated");
        };
        assert_eq!(e.dst, std::net::Ipv4Addr::new(10, 3, 0, 12), "{tun:?}");
        let outer = crate::wire::Ipv4Packet::new_unchecked(e.header());
        assert_eq!((outer.version(), outer.protocol()), (4, proto), "{tun:?}");
        let mut datagram = e.header().to_vec();
        datagram.extend_from_slice(&syn[..e.len]);
        crate::fuzzing::oracle::check_ipv4(&datagram, 6080).expect("a valid datagram");
        // Too big for 1500 less the IPv4 outer header: Packet Too Big with that MTU.
        let Forward::Tunnel(t) = Forward::tunnel(tun) else {
            unreachable!()
        };
        let over = crate::encap::overhead_full(&t, false, false);
        let mut big = tcp6_packet(client(1), 1, VIP, 80, 0x10, 1500 - 60 - over + 1);
        let Verdict::Reply { len } = d.handle_packet(Instant::ZERO, &mut big) else {
            panic!("{tun:?}: no Packet Too Big");
        };
        let mtu = u32::from_be_bytes(big[44..48].try_into().unwrap());
        assert_eq!(
            (big[40], mtu as usize, len > 48),
            (2, 1500 - over, true),
            "{tun:?}"
        );
    }
}

/// An IPv4 VIP whose real servers are IPv6 addresses: its packets leave in an IPv6 outer
/// header (4in6 for `ipip`, GRE 0x0800, GUE carrying IPv4).
mod ipv4_over_ipv6 {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::wire::testing::{tcp_packet, udp_packet};

    const VIP4: Ipv4Addr = Ipv4Addr::new(192, 168, 150, 100);
    const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);

    fn set4(tun: TunnelType) -> ServiceSet {
        let mut s = set(tun, None);
        s.services[0].key.vip = IpAddr::V4(VIP4);
        s.services[0].mss_clamp = None;
        s
    }

    #[test]
    fn every_tunnel_carries_ipv4_in_an_ipv6_outer_header() {
        for (tun, next) in [
            (TunnelType::Ipip, IpProtocol::IPIP),
            (TunnelType::Gre, IpProtocol::GRE),
            (TunnelType::Gue, IpProtocol::UDP),
        ] {
            let s = set4(tun);
            assert_eq!(crate::director::table::check_forwardable(&s), Ok(()));
            let mut d = director(&s);
            assert!(d.cuts_gso(), "GSO super-packets are cut first");
            let mut dsts = Vec::new();
            for port in 0..4 {
                let mut syn = tcp_packet(CLIENT4, 40000 + port, VIP4, 80, 0x02, 0);
                let v = d.handle_packet(Instant::ZERO, &mut syn);
                let (dst, nh) = outer(&v);
                assert_eq!(nh, next, "{tun:?}");
                dsts.push(dst);
                let Verdict::Encap(e) = v else { unreachable!() };
                assert_eq!(e.frag_mtu, 0);
                let mut datagram = e.header().to_vec();
                datagram.extend_from_slice(&syn[..e.len]);
                // With the source the send path fills in, the datagram checks out.
                datagram[8..24].copy_from_slice(&client(9).octets());
                if nh == IpProtocol::UDP {
                    let c = crate::wire::checksum::upper_layer_v6(
                        client(9),
                        dsts[usize::from(port)],
                        17,
                        &{
                            let mut u = datagram[40..].to_vec();
                            u[6..8].fill(0);
                            u
                        },
                    );
                    datagram[46..48].copy_from_slice(&(!c).to_be_bytes());
                }
                crate::fuzzing::oracle::check_ipv6(&datagram).expect("a valid datagram");
                // The inner packet is the client's, unchanged.
                assert_eq!(&datagram[e.header().len()..], &syn[..e.len], "{tun:?}");
            }
            assert_eq!(dsts, [RS1, RS2, RS1, RS2], "rr over the IPv6 servers");
            assert_eq!(d.conns().len(), 4, "IPv4 flows live in the IPv4 table");
        }
    }

    #[test]
    fn too_big_with_df_gets_frag_needed_for_the_ipv6_overhead_and_without_df_is_fragmented() {
        for (tun, over) in [
            (TunnelType::Ipip, 40),
            (TunnelType::Gre, 44),
            (TunnelType::Gue, 52),
        ] {
            let mut d = director(&set4(tun));
            let mut syn = tcp_packet(CLIENT4, 1, VIP4, 80, 0x02, 0);
            assert!(matches!(
                d.handle_packet(Instant::ZERO, &mut syn),
                Verdict::Encap(_)
            ));
            // Fits exactly: encapsulated whole.
            let mut fits = tcp_packet(CLIENT4, 1, VIP4, 80, 0x10, 1500 - over - 40);
            assert!(
                matches!(d.handle_packet(Instant::ZERO, &mut fits), Verdict::Encap(e) if e.frag_mtu == 0),
                "{tun:?}"
            );
            // One byte more with DF: fragmentation needed, MTU 1500 less the IPv6 outer header.
            let mut big = tcp_packet(CLIENT4, 1, VIP4, 80, 0x10, 1500 - over - 40 + 1);
            let Verdict::Reply { .. } = d.handle_packet(Instant::ZERO, &mut big) else {
                panic!("{tun:?}: no fragmentation needed");
            };
            // ICMP type 3 code 4, next-hop MTU in bytes 26..28 of the reply.
            let mtu = u16::from_be_bytes([big[26], big[27]]);
            assert_eq!(
                (big[20], big[21], mtu),
                (3, 4, 1500 - over as u16),
                "{tun:?}"
            );
            // Without DF (a UDP datagram): encapsulated, the outer datagram to be fragmented.
            let mut udp = udp_packet(CLIENT4, 5353, VIP4, 80, 1500);
            udp[6] &= !0x40;
            crate::wire::Ipv4Packet::new_unchecked(&mut udp[..]).fill_checksum();
            let mut s = set4(tun);
            s.services[0].key.proto = Protocol::Udp;
            let mut d = director(&s);
            let Verdict::Encap(e) = d.handle_packet(Instant::ZERO, &mut udp) else {
                panic!("{tun:?}: not encapsulated");
            };
            assert_eq!(e.frag_mtu, 1500, "{tun:?}");
            let pieces: Vec<_> = crate::encap::fragment6(
                e.header(),
                &udp[..e.len],
                e.frag_mtu,
                std::num::NonZeroU32::MIN,
            )
            .expect("fragmentable")
            .collect();
            assert_eq!(pieces.len(), 2, "{tun:?}");
            assert!(pieces.iter().all(|f| f.header_len + f.inner.len() <= 1500));
            assert_eq!(d.counters().fragmented, 1);
        }
    }

    #[test]
    fn authenticated_gue_and_super_packets_are_refused_by_reason() {
        let mut d = director(&set4(TunnelType::Gue));
        let mut syn = tcp_packet(CLIENT4, 1, VIP4, 80, 0x02, 0);
        let n = syn.len();
        assert_eq!(
            d.handle_gso(Instant::ZERO, &mut syn, n, 2),
            Verdict::Drop(DropReason::Ipv6SuperPacket)
        );
        // The MAC covers the outer source: without `--local-address6` there is none to cover.
        let key = crate::encap::auth::TunnelKey::new(&[7; 32]);
        d.shared()
            .set_tunnel_keys(crate::encap::auth::KeyMap::new(Some(key), []));
        let mut syn = tcp_packet(CLIENT4, 2, VIP4, 80, 0x02, 0);
        assert_eq!(
            d.handle_packet(Instant::ZERO, &mut syn),
            Verdict::Drop(DropReason::TunnelAuthNoSource)
        );
        assert_eq!(d.counters().dropped(DropReason::TunnelAuthNoSource), 1);
    }

    #[test]
    fn authenticated_gue_carries_ipv4_with_a_mac_over_the_ipv6_outer_addresses() {
        let mut d = super::auth::keyed(&set4(TunnelType::Gue), super::auth::global());
        let mut syn = tcp_packet(CLIENT4, 3, VIP4, 80, 0x02, 0);
        let v = d.handle_packet(Instant::ZERO, &mut syn);
        super::auth::assert_opens(&v, &syn, 4);
    }

    #[test]
    fn only_tables_with_such_servers_cut_gso() {
        let mut s = set4(TunnelType::Gue);
        for (d, a) in s.services[0]
            .dests
            .iter_mut()
            .zip([[10, 3, 0, 12], [10, 3, 0, 13]])
        {
            d.addr = IpAddr::from(a);
        }
        assert!(!director(&s).cuts_gso());
    }
}

const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const MAC2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x13];

/// A director whose two IPv6 real servers are DR servers, with their neighbour slots filled
/// as the resolver would (interface 4, `mtu`), or left empty with `mtu` 0.
fn dr_director(mtu: u16) -> (Arc<Shared>, Director) {
    let mut s = set(TunnelType::Ipip, None);
    for d in &mut s.services[0].dests {
        d.forward = Forward::Dr;
    }
    let snap = Registry::new().build(&s, &Timeouts::default()).unwrap();
    let shared = Arc::new(Shared::new(snap));
    if mtu > 0 {
        let snap = shared.snapshot();
        for id in &snap.services()[0].dest_ids {
            let d = snap.dest(*id).unwrap();
            let mac = if d.config.addr == IpAddr::V6(RS1) {
                MAC1
            } else {
                MAC2
            };
            d.state.neigh.set(Some(NeighEntry {
                ifindex: 4,
                mac,
                mtu,
            }));
        }
    }
    let d = Director::new(shared.clone(), DirectorConfig::default());
    (shared, d)
}

/// The frame an Ether verdict sends: (interface, MAC, length).
fn frame(v: &Verdict) -> (u32, [u8; 6], usize) {
    let Verdict::Ether(e) = v else {
        panic!("not a DR frame: {v:?}");
    };
    assert_eq!(e.frag_mtu, 0, "IPv6 is never fragmented");
    (e.ifindex, e.dst_mac, e.len)
}

#[test]
fn dr_hands_the_packet_unchanged_to_each_servers_mac_in_turn() {
    let (shared, mut d) = dr_director(1500);
    let now = Instant::ZERO;
    let mut macs = Vec::new();
    let mut syn_len = 0;
    for port in 0..4 {
        let mut syn = tcp6_packet(client(1), 40000 + port, VIP, 80, 0x02, 0);
        syn_len = syn.len();
        let (ifindex, mac, len) = frame(&d.handle_packet(now, &mut syn));
        assert_eq!((ifindex, len), (4, syn_len));
        macs.push(mac);
    }
    assert_eq!(macs, [MAC1, MAC2, MAC1, MAC2], "rr");
    // A later packet of a flow follows it, not one byte changed (hop limit, addresses, sum).
    let mut ack = tcp6_packet(client(1), 40001, VIP, 80, 0x10, 1000);
    let original = ack.clone();
    assert_eq!(frame(&d.handle_packet(now, &mut ack)), (4, MAC2, 1060));
    assert_eq!(ack, original);
    // The SYN's MSS is clamped as for a tunnel (the service has mss_clamp 1300).
    assert_eq!(d.counters().mss_clamped, 4);
    let c = d.counters();
    assert_eq!((c.tx_packets, c.conns_created), (5, 4));
    let snap = shared.snapshot();
    let ids = &snap.services()[0].dest_ids;
    let per = |i: usize| c.per_dest[usize::from(ids[i].slot())];
    assert_eq!((per(0).in_pkts, per(1).in_pkts), (2, 3));
    assert_eq!(per(1).in_bytes, 2 * syn_len as u64 + 1060);
}

#[test]
fn dr_drops_while_the_servers_mac_is_unknown() {
    let (shared, mut d) = dr_director(0);
    let now = Instant::ZERO;
    let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
    assert_eq!(
        d.handle_packet(now, &mut syn),
        Verdict::Drop(DropReason::NeighbourUnresolved)
    );
    assert_eq!(d.counters().dropped(DropReason::NeighbourUnresolved), 1);
    // The resolver fills the slot: the retransmitted SYN goes.
    let snap = shared.snapshot();
    let first = snap.dest(snap.services()[0].dest_ids[0]).unwrap();
    first.state.neigh.set(Some(NeighEntry {
        ifindex: 9,
        mac: MAC1,
        mtu: 1500,
    }));
    let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
    assert_eq!(frame(&d.handle_packet(now, &mut syn)).1, MAC1);
}

#[test]
fn dr_answers_a_packet_too_big_for_the_lan_with_the_lans_mtu() {
    use crate::director::stats::{EncapError, EncapKind};
    let (_shared, mut d) = dr_director(1400);
    let now = Instant::ZERO;
    let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
    let _ = d.handle_packet(now, &mut syn);
    // 1401 bytes: a Packet Too Big from the VIP advertising the LAN's 1400.
    let mut big = tcp6_packet(client(1), 1, VIP, 80, 0x10, 1401 - 60);
    let Verdict::Reply { len } = d.handle_packet(now, &mut big) else {
        panic!("no Packet Too Big");
    };
    let ip = Ipv6Packet::new_checked(&big[..len]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (VIP, client(1)));
    assert_eq!((big[40], big[41]), (2, 0), "Packet Too Big");
    assert_eq!(u32::from_be_bytes(big[44..48].try_into().unwrap()), 1400);
    assert_eq!(
        crate::wire::checksum::upper_layer_v6(VIP, client(1), 58, &big[40..len]),
        0xffff,
        "ICMPv6 checksum"
    );
    assert_eq!(d.counters().drops[DropReason::TooBig as usize], 1);
    let errors = &d.counters().encap_errors;
    assert_eq!(errors.get(EncapKind::Dr, EncapError::TooBig), 1);
    // 1400 bytes fit, whole.
    let mut fits = tcp6_packet(client(1), 1, VIP, 80, 0x10, 1400 - 60);
    assert_eq!(frame(&d.handle_packet(now, &mut fits)).2, 1400);
}

#[test]
fn an_icmpv6_error_about_a_dr_flow_goes_to_its_server() {
    let (_shared, mut d) = dr_director(1500);
    let now = Instant::ZERO;
    for port in [1, 2] {
        let mut syn = tcp6_packet(client(1), port, VIP, 80, 0x02, 0);
        let _ = d.handle_packet(now, &mut syn);
    }
    let mut err = too_big_about_port_2();
    assert_eq!(frame(&d.handle_packet(now, &mut err)).1, MAC2);
}

/// Authenticated GUE to IPv6 real servers: with `--local-address6` the outer source is that
/// address and the agent's keyring opens each packet (the MAC over the IPv6 outer addresses),
/// sequence numbers rising; a real server without a key of its own (only per-server keys set)
/// gets plain GUE from the same source.
mod auth {
    use super::*;
    use crate::encap::auth::{KeyMap, Keyring, TunnelKey};

    pub(super) const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

    pub(super) fn key() -> TunnelKey {
        TunnelKey::new(&[7; 32])
    }

    pub(super) fn global() -> KeyMap {
        KeyMap::new(Some(key()), [])
    }

    /// A director with `keys` and `--local-address6 LOCAL6`.
    pub(super) fn keyed(s: &ServiceSet, keys: KeyMap) -> Director {
        let snap = Registry::new().build(s, &Timeouts::default()).unwrap();
        let shared = Arc::new(Shared::new(snap));
        shared.set_tunnel_keys(keys);
        let config = DirectorConfig {
            local_addr6: LOCAL6,
            ..DirectorConfig::default()
        };
        Director::new(shared, config)
    }

    /// The GUE payload (after the outer IPv6 and UDP headers) of `v`, whose inner packet is
    /// the start of `buf`.
    fn gue_payload(v: &Verdict, buf: &[u8]) -> (Ipv6Addr, Ipv6Addr, Vec<u8>) {
        let Verdict::Encap(e) = v else {
            panic!("not encapsulated: {v:?}");
        };
        let h = Ipv6Packet::new_unchecked(e.header());
        assert_eq!(h.next_header(), IpProtocol::UDP);
        let mut payload = e.header()[48..].to_vec();
        payload.extend_from_slice(&buf[..e.len]);
        (h.src_addr(), h.dst_addr(), payload)
    }

    /// `v` comes from LOCAL6 and the agent's keyring opens it, its inner packet of family
    /// `version` whole after the option.
    pub(super) fn assert_opens(v: &Verdict, buf: &[u8], version: u8) {
        let (src, dst, payload) = gue_payload(v, buf);
        assert_eq!(src, LOCAL6, "the outer source is --local-address6");
        let mut ring = Keyring::new(vec![key()]).unwrap();
        let inner = ring.open6(src, dst, &payload).expect("the MAC verifies");
        assert_eq!(payload[inner.start] >> 4, version);
        assert_eq!(payload.len() - inner.start, buf.len());
        // Another source address (a forger's) does not verify.
        let mut ring = Keyring::new(vec![key()]).unwrap();
        assert!(ring.open6(RS1, dst, &payload).is_err());
    }

    #[test]
    fn ipv6_packets_carry_a_mac_over_the_ipv6_outer_addresses() {
        let mut d = keyed(&set(TunnelType::Gue, None), global());
        let mut ring = Keyring::new(vec![key()]).unwrap();
        for port in 0..4 {
            let mut syn = tcp6_packet(client(1), 40000 + port, VIP, 80, 0x02, 0);
            let v = d.handle_packet(Instant::ZERO, &mut syn);
            assert_opens(&v, &syn, 6);
            // One keyring over all of them: the sequence numbers rise (no replay refusal).
            let (src, dst, payload) = gue_payload(&v, &syn);
            ring.open6(src, dst, &payload).expect("in sequence");
        }
        assert_eq!(d.counters().dropped(DropReason::TunnelAuthNoSource), 0);
    }

    #[test]
    fn without_a_key_of_its_own_a_server_gets_plain_gue_from_the_local_address() {
        let keys = KeyMap::new(None, [(IpAddr::V6(RS1), key())]);
        let mut d = keyed(&set(TunnelType::Gue, None), keys);
        let mut plain = 0;
        for port in 0..2 {
            let mut syn = tcp6_packet(client(1), 40000 + port, VIP, 80, 0x02, 0);
            let v = d.handle_packet(Instant::ZERO, &mut syn);
            let (src, dst, payload) = gue_payload(&v, &syn);
            assert_eq!(src, LOCAL6);
            if dst == RS1 {
                assert_opens(&v, &syn, 6);
            } else {
                assert_eq!(crate::encap::strip_gue(&payload).map(|r| r.start), Ok(4));
                plain += 1;
            }
        }
        assert_eq!(plain, 1, "rr: one packet to each server");
    }

    #[test]
    fn a_keyed_server_of_a_family_without_a_source_address_is_dropped_by_reason() {
        // An IPv6 VIP over an IPv4 underlay: the director has --local-address6 only.
        let mut s = set(TunnelType::Gue, None);
        for (d, a) in s.services[0]
            .dests
            .iter_mut()
            .zip([[10, 3, 0, 12], [10, 3, 0, 13]])
        {
            d.addr = IpAddr::from(a);
        }
        let mut d = keyed(&s, global());
        let mut syn = tcp6_packet(client(1), 40000, VIP, 80, 0x02, 0);
        assert_eq!(
            d.handle_packet(Instant::ZERO, &mut syn),
            Verdict::Drop(DropReason::TunnelAuthNoSource)
        );
        assert_eq!(d.counters().dropped(DropReason::TunnelAuthNoSource), 1);
    }
}

/// IPv6 prefixes of `[[tunnel_route]]`: tunnelled as they are, untracked, over the route's
/// IPv4 underlay; a VIP inside a routed prefix is still served.
#[test]
fn ipv6_tunnel_routes_carry_any_packet_to_their_prefix_over_ipv4() {
    use crate::director::route::{RouteTable, TunnelRoute};
    use std::net::Ipv4Addr;
    let route = |p: &str, via: [u8; 4], tun| {
        TunnelRoute::new(p.parse::<ipnet::IpNet>().unwrap(), via.into(), tun)
    };
    let routes = [
        route("2001:db8::/48", [198, 51, 100, 2], TunnelType::Gre),
        route("2001:db8:8::/48", [198, 51, 100, 3], TunnelType::Gue),
        route("2001:db8:8:80::/57", [198, 51, 100, 4], TunnelType::Gre),
        route("172.16.0.0/12", [198, 51, 100, 5], TunnelType::Gre),
    ];
    let snap = Registry::new()
        .build(&set(TunnelType::Ipip, None), &Timeouts::default())
        .unwrap()
        .with_tunnel_routes(Arc::new(RouteTable::new(&routes)));
    let mut d = Director::new(Arc::new(Shared::new(snap)), DirectorConfig::default());
    let now = Instant::ZERO;
    let remote = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    for (dst, via, proto) in [
        ("2001:db8:8::9", [198, 51, 100, 3], IpProtocol::UDP),
        ("2001:db8:8:ff::9", [198, 51, 100, 4], IpProtocol::GRE),
    ] {
        // Any packet, no SYN needed, no service: UDP, then a TCP ACK, then ICMPv6.
        let mut udp = udp6_packet(client(1), 5000, remote(dst), 53, 5);
        let mut ack = tcp6_packet(client(1), 40000, remote(dst), 22, 0x10, 100);
        let mut echo = ipv6_packet(client(1), remote(dst), 58, &[128, 0, 0, 0, 0, 1, 0, 1]);
        for pkt in [&mut udp, &mut ack, &mut echo] {
            let Verdict::Encap(e) = d.handle_packet(now, pkt) else {
                panic!("{dst}: not encapsulated");
            };
            assert_eq!(e.dst, Ipv4Addr::from(via), "{dst}");
            let outer = crate::wire::Ipv4Packet::new_unchecked(e.header());
            assert_eq!((outer.version(), outer.protocol()), (4, proto), "{dst}");
            let mut datagram = e.header().to_vec();
            datagram.extend_from_slice(&pkt[..e.len]);
            crate::fuzzing::oracle::check_ipv4(&datagram, 6080).expect("a valid datagram");
        }
    }
    assert_eq!(d.conns6.len(), 0, "routed packets are not tracked");
    // The VIP (inside 2001:db8::/48) is served by its IPv6 real servers, not routed.
    let mut syn = tcp6_packet(client(1), 1, VIP, 80, 0x02, 0);
    assert_eq!(outer(&d.handle_packet(now, &mut syn)).0, RS1);
    // Outside every prefix: no service.
    let mut lost = udp6_packet(client(1), 5000, remote("2001:db9::1"), 53, 1);
    assert!(matches!(
        d.handle_packet(now, &mut lost),
        Verdict::Drop(DropReason::NoService)
    ));
    // Too big for 1500 less GRE over IPv4 (24 bytes): Packet Too Big with 1476.
    let mut big = tcp6_packet(
        client(1),
        1,
        remote("2001:db8:8:80::1"),
        80,
        0x10,
        1500 - 60 - 24 + 1,
    );
    let Verdict::Reply { len } = d.handle_packet(now, &mut big) else {
        panic!("no Packet Too Big");
    };
    let mtu = u32::from_be_bytes(big[44..48].try_into().unwrap());
    assert_eq!((big[40], mtu, len > 48), (2, 1476, true));
}

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};

use crate::encap::{Family, TunnelType};
use crate::realserver::filter::{AllowList, Filter, GatewayPeer};
use crate::realserver::ipv6::{self, Source};

/// The VIPs of the real-server filters.
const VIPS: [Ipv4Addr; 2] = [
    Ipv4Addr::new(10, 100, 0, 100),
    Ipv4Addr::new(10, 100, 0, 101),
];

/// What the agent accepts from its tunnel sockets (`realserver::filter`). The first byte
/// chooses the filter: bits 0-1 the tunnel (IPIP, GRE, GRE with key 42, GUE), bit 2 a real
/// server (`--allow 10.3.0.0/24`, the two VIPs) or a gateway (peers 10.3.0.1 with 10.20.0.0/16
/// and key 42, 10.3.0.2 with 10.30.0.0/16 and no key); the next 4 bytes are the outer source
/// the kernel reports, the rest what the socket returned (raw IPIP/GRE: the outer IPv4 packet;
/// GUE: the UDP payload). A packet taken: from an allowed source; its inner range inside the
/// buffer, an IPv4 header at least, whose total length is the range's; for a real server
/// addressed to a VIP; for a gateway from a prefix of the peer that sent it. A refused one
/// has a reason label. Never a panic.
///
/// Bit 3 set (and bit 2 clear): a real server on an IPv6 underlay (`--allow 2001:db8:3::/64`,
/// the IPv4 VIPs and [`VIPS6`]), checked as the agent's IPv6 loop does
/// (`realserver::ipv6::check`); the next 16 bytes are the outer source, the rest what the
/// AF_INET6 socket returned (raw: the payload after the IPv6 header, next header 4 or 41 by
/// bit 4 for IPIP, 47 for GRE; GUE: the UDP payload). An inner packet taken is either family,
/// for a VIP of its family.
pub fn agent_filter(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    if data[0] & 0x0c == 0x08 {
        agent_filter6(data);
        return;
    }
    let sel = data[0];
    let src = Ipv4Addr::new(data[1], data[2], data[3], data[4]);
    let buf = &data[5..];
    let (tun, key) = match sel & 3 {
        0 => (TunnelType::Ipip, None),
        1 => (TunnelType::Gre, None),
        2 => (TunnelType::Gre, Some(42)),
        _ => (TunnelType::Gue, None),
    };
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    let peers = vec![
        GatewayPeer {
            outer: net("10.3.0.1/32"),
            gre_key: Some(42),
            prefixes: vec![net("10.20.0.0/16").into()],
        },
        GatewayPeer {
            outer: net("10.3.0.2/32"),
            gre_key: None,
            prefixes: vec![net("10.30.0.0/16").into()],
        },
    ];
    let gateway = sel & 4 != 0;
    let allow = net("10.3.0.0/24");
    let mut filter = if gateway {
        Filter::gateway(tun, peers.clone())
    } else {
        Filter::new(AllowList::new(&[allow]), &VIPS, tun, key)
    };
    let got = match tun {
        TunnelType::Gue => filter.check_gue(buf, src, VIPS[0]),
        _ => filter.check_ip(buf, src),
    };
    let inner = match got {
        Err(reason) => {
            assert!(!reason.as_str().is_empty());
            return;
        }
        Ok(range) => range,
    };
    let Some(pkt) = buf.get(inner.clone()) else {
        panic!("inner range {inner:?} outside {} bytes", buf.len())
    };
    assert!(pkt.len() >= 20, "a {}-byte inner packet", pkt.len());
    assert_eq!(pkt[0] >> 4, 4, "inner not IPv4");
    assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), pkt.len());
    let inner_src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let inner_dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    if gateway {
        let peer = peers.iter().find(|p| p.outer.contains(&src));
        let peer = peer.unwrap_or_else(|| panic!("taken from {src}, not a peer"));
        assert!(
            peer.prefixes
                .iter()
                .any(|p| p.contains(&std::net::IpAddr::V4(inner_src))),
            "{inner_src} from peer {src}"
        );
    } else {
        assert!(allow.contains(&src), "taken from {src}");
        assert!(VIPS.contains(&inner_dst), "taken for {inner_dst}");
    }
}

/// The IPv6 VIPs of the IPv6-underlay filter.
const VIPS6: [Ipv6Addr; 1] = [Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 0x100)];

/// The IPv6-underlay half of [`agent_filter`]; whether the packet was taken.
fn agent_filter6(data: &[u8]) -> bool {
    let Some(src) = data.get(1..17) else {
        return false;
    };
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(src).unwrap());
    let buf = &data[17..];
    let sel = data[0];
    let (tun, key) = match sel & 3 {
        0 => (TunnelType::Ipip, None),
        1 => (TunnelType::Gre, None),
        2 => (TunnelType::Gre, Some(42)),
        _ => (TunnelType::Gue, None),
    };
    let allow: IpNet = "2001:db8:3::/64".parse().unwrap();
    let me: Ipv6Addr = "2001:db8:3::10".parse().unwrap();
    let mut filter = Filter::new(AllowList::of(&[allow]), &VIPS, tun, key).with_vips6(&VIPS6);
    // Through the agent's IPv6 loop's dispatch, as its sockets deliver.
    let source = match tun {
        TunnelType::Gue => Source::Gue6,
        TunnelType::Ipip => Source::Raw6(if sel & 16 != 0 { 41 } else { 4 }),
        TunnelType::Gre => Source::Raw6(47),
    };
    let got = ipv6::check(&mut filter, source, buf, src.into(), me.into());
    let inner = match got {
        Err(reason) => {
            assert!(!reason.as_str().is_empty());
            return false;
        }
        Ok(range) => range,
    };
    assert!(allow.contains(&IpAddr::V6(src)), "taken from {src}");
    let Some(pkt) = buf.get(inner.clone()) else {
        panic!("inner range {inner:?} outside {} bytes", buf.len())
    };
    match Family::of(pkt) {
        Some(Family::Ipv4) => {
            assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), pkt.len());
            let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
            assert!(VIPS.contains(&dst), "taken for {dst}");
        }
        Some(Family::Ipv6) => {
            assert_eq!(
                40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
                pkt.len()
            );
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&pkt[24..40]).unwrap());
            assert!(VIPS6.contains(&dst), "taken for {dst}");
        }
        None => panic!("an inner packet of no family"),
    }
    true
}

#[test]
fn the_ipv6_seeds_are_taken_but_the_forged_one() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/agent_filter");
    let mut seen = 0;
    for name in [
        "ip6ip6",
        "4in6",
        "gre_key",
        "gue",
        "gue_inner4",
        "not_allowed",
    ] {
        let data = std::fs::read(dir.join(format!("seed6_{name}"))).unwrap();
        assert_eq!(agent_filter6(&data), name != "not_allowed", "{name}");
        seen += 1;
    }
    assert_eq!(seen, 6);
}

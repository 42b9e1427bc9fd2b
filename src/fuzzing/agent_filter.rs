use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::encap::TunnelType;
use crate::realserver::filter::{AllowList, Filter, GatewayPeer};

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
pub fn agent_filter(data: &[u8]) {
    if data.len() < 5 {
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
            prefixes: vec![net("10.20.0.0/16")],
        },
        GatewayPeer {
            outer: net("10.3.0.2/32"),
            gre_key: None,
            prefixes: vec![net("10.30.0.0/16")],
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
            peer.prefixes.iter().any(|p| p.contains(&inner_src)),
            "{inner_src} from peer {src}"
        );
    } else {
        assert!(allow.contains(&src), "taken from {src}");
        assert!(VIPS.contains(&inner_dst), "taken for {inner_dst}");
    }
}

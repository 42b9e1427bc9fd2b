use std::net::Ipv6Addr;

use super::Oracle;
use crate::wire::icmpv6::{self, Icmpv6Packet, Ndp, NeighborAdvert};
use crate::wire::ipv6_ext::{self, MAX_EXT_HEADERS};
use crate::wire::{EthernetFrame, IpProtocol, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket};

const DIRECTOR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xfe);
const NAT: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0xa, 0xb, 0xc);
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// The IPv6 `wire` layer on arbitrary bytes taken as an IPv6 packet: the fixed header view and
/// `Ipv6Repr` round trip; the extension header walk stays in bounds; the ICMPv6, TCP and UDP
/// views at the upper-layer offset keep a valid checksum valid through a NAT66 address change
/// and MSS clamp; a parsed Neighbor Solicitation is answered with a frame that parses back as
/// the right advertisement; a Packet Too Big built from the input is checked by `oracle`
/// (etherparse), as are the advertisement and the re-emitted solicitation.
pub fn wire_views6(data: &[u8], oracle: Oracle) {
    let Ok(ip) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let _ = (
        ip.traffic_class(),
        ip.flow_label(),
        ip.hop_limit(),
        ip.payload(),
    );
    let repr = Ipv6Repr::parse(&ip).expect("a checked packet parses");
    let mut hdr = [0u8; 40];
    repr.emit(&mut hdr).expect("a parsed header emits");
    assert_eq!(hdr[..], data[..40], "Ipv6Repr round trip");
    let (src, dst) = (ip.src_addr(), ip.dst_addr());

    if let Ok(chain) = ipv6_ext::walk(&ip) {
        assert!(chain.upper_offset <= ip.total_len());
        assert!(usize::from(chain.count) <= MAX_EXT_HEADERS);
        if let Some(f) = chain.fragment {
            assert!(f.header_offset + 8 <= chain.upper_offset);
        }
        if !chain.is_fragment() {
            let mut upper = ip.packet()[chain.upper_offset..].to_vec();
            upper_layer(chain.upper, &mut upper, src, dst);
        }
    }

    match icmpv6::parse_ndp(&ip) {
        Ok(Ndp::Solicit(ns)) => {
            let mut frame = [0u8; 128];
            let n = icmpv6::answer_frame(&ns, [7; 6], MAC, &mut frame).expect("room");
            let eth = EthernetFrame::new_checked(&frame[..n]).unwrap();
            let na_ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
            oracle(na_ip.packet(), 0).expect("NA passes the oracle");
            match icmpv6::parse_ndp(&na_ip) {
                Ok(Ndp::Advert(na)) => assert_eq!(na, NeighborAdvert::answering(&ns, MAC)),
                other => panic!("answer does not parse back: {other:?}"),
            }
            let mut again = [0u8; 80];
            let n = ns.emit(&mut again).expect("room");
            oracle(&again[..n], 0).expect("re-emitted NS passes the oracle");
            let back = icmpv6::parse_ndp(&Ipv6Packet::new_checked(&again[..n]).unwrap());
            assert_eq!(back, Ok(Ndp::Solicit(ns)), "NS round trip");
        }
        Ok(Ndp::Advert(na)) => {
            let mut again = [0u8; 80];
            let n = na.emit(&mut again).expect("room");
            let back = icmpv6::parse_ndp(&Ipv6Packet::new_checked(&again[..n]).unwrap());
            assert_eq!(back, Ok(Ndp::Advert(na)), "NA round trip");
        }
        Err(e) => assert!(!e.as_str().is_empty()),
    }

    // Packet Too Big about the input, in a buffer with room for the reply.
    let mut buf = data.to_vec();
    buf.resize(data.len().max(ip.total_len() + 48), 0);
    let before = buf.clone();
    let mtu = u32::from(data[7]) * 8 + 1280;
    match icmpv6::packet_too_big_in_place(&mut buf, ip.total_len(), mtu, DIRECTOR) {
        Some(n) => {
            assert!(n <= 1280);
            oracle(&buf[..n], 0).expect("Packet Too Big passes the oracle");
            let reply = Ipv6Packet::new_checked(&buf[..n]).unwrap();
            assert_eq!((reply.src_addr(), reply.dst_addr()), (DIRECTOR, src));
            let icmp = Icmpv6Packet::new_checked(reply.payload()).unwrap();
            assert_eq!(icmp.mtu(), Some(mtu));
            let quote = icmp.invoking_packet().unwrap();
            assert_eq!(quote, &data[..quote.len()]);
        }
        None => assert_eq!(buf, before, "a refusal leaves the buffer untouched"),
    }
}

/// The upper-layer views on a copy of the upper-layer bytes.
fn upper_layer(proto: u8, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    match proto {
        IpProtocol::TCP => {
            let Ok(mut p) = TcpPacket::new_checked(buf) else {
                return;
            };
            let valid = p.verify_checksum_v6(src, dst);
            p.update_checksum_for_addr_v6(dst, NAT);
            assert_eq!(p.verify_checksum_v6(src, NAT), valid);
            let mss = p.mss();
            if p.clamp_mss(1220) {
                assert!(mss.is_some_and(|m| m > 1220));
            }
            assert_eq!(p.verify_checksum_v6(src, NAT), valid);
            p.fill_checksum_v6(src, dst);
            assert!(p.verify_checksum_v6(src, dst));
        }
        IpProtocol::UDP => {
            let Ok(mut p) = UdpPacket::new_checked(buf) else {
                return;
            };
            let valid = p.verify_checksum_v6(src, dst);
            p.update_checksum_for_addr_v6(src, NAT);
            assert_eq!(p.verify_checksum_v6(NAT, dst), valid);
            p.fill_checksum_v6(src, dst);
            assert!(p.verify_checksum_v6(src, dst) && p.checksum() != 0);
        }
        IpProtocol::ICMPV6 => {
            let Ok(mut p) = Icmpv6Packet::new_checked(buf) else {
                return;
            };
            let _ = (p.msg_type(), p.code(), p.mtu(), p.pointer(), p.echo_ident());
            let _ = (p.echo_seq(), p.is_error(), p.data());
            if let Some(inner) = p.invoking_packet() {
                let _ = Ipv6Packet::new_checked(inner).map(|q| q.payload().len());
            }
            let valid = p.verify_checksum(src, dst);
            p.update_checksum_for_addr(src, NAT);
            assert_eq!(p.verify_checksum(NAT, dst), valid);
            p.fill_checksum(src, dst);
            assert!(p.verify_checksum(src, dst));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/wire_views6")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The seeds reach the paths they are named after (not only "no panic").
    #[test]
    fn seeds_reach_their_paths() {
        let walk = |name: &str| {
            let p = seed(name);
            ipv6_ext::walk(&Ipv6Packet::new_checked(&p[..]).unwrap())
        };
        let c = walk("seed_ext_chain").unwrap();
        assert_eq!((c.upper, c.count), (IpProtocol::TCP, 5));
        assert!(c.fragment.unwrap().more);
        let c = walk("seed_fragment_nonfirst").unwrap();
        assert_eq!(c.fragment.unwrap().offset, 1448);
        assert_eq!(
            walk("seed_routing_segments_left"),
            Err(ipv6_ext::ExtError::RoutingHeader)
        );
        let ndp =
            |name: &str| icmpv6::parse_ndp(&Ipv6Packet::new_checked(&seed(name)[..]).unwrap());
        assert!(matches!(ndp("seed_ns"), Ok(Ndp::Solicit(s)) if s.source_mac.is_some()));
        assert!(matches!(ndp("seed_ns_dad"), Ok(Ndp::Solicit(s)) if s.src.is_unspecified()));
        assert!(matches!(ndp("seed_na_unsolicited"), Ok(Ndp::Advert(a)) if a.override_));
        let ptb = seed("seed_packet_too_big");
        let ip = Ipv6Packet::new_checked(&ptb[..]).unwrap();
        assert_eq!(
            Icmpv6Packet::new_checked(ip.payload()).unwrap().mtu(),
            Some(1400)
        );
        assert_eq!(seed("seed_tcp_1500").len(), 1500);
        for name in [
            "seed_tcp_syn",
            "seed_udp",
            "seed_icmpv6_echo",
            "seed_tcp_1500",
        ] {
            super::super::oracle::check_ipv6(&seed(name)).unwrap();
        }
    }
}

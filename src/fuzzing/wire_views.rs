use std::net::Ipv4Addr;

use crate::encap::gre::GreHeader;
use crate::encap::gue::GueHeader;
use crate::wire::{
    checksum, ArpPacket, ArpRepr, Icmpv4Packet, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
    UdpPacket,
};

const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

fn reference_sum(bytes: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for pair in bytes.chunks(2) {
        acc += ((pair[0] as u64) << 8) | pair.get(1).copied().unwrap_or(0) as u64;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn tcp(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, max: u16) {
    let Ok(mut p) = TcpPacket::new_checked(buf) else {
        return;
    };
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_number(),
        p.ack_number(),
        p.window(),
    );
    let _ = (
        p.urgent_ptr(),
        p.flags().to_string(),
        p.options(),
        p.payload(),
    );
    let mss = p.mss();
    let valid = p.verify_checksum(src, dst);
    if p.clamp_mss(max) {
        assert!(mss.is_some_and(|m| m > max));
        assert_eq!(p.mss(), Some(max));
    } else {
        assert_eq!(p.mss(), mss);
    }
    p.set_dst_port(max);
    p.set_src_port(max.rotate_left(3));
    p.update_checksum_for_addr(dst, src);
    assert_eq!(p.verify_checksum(src, src), valid);
}

fn udp(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, port: u16) {
    let Ok(mut p) = UdpPacket::new_checked(buf) else {
        return;
    };
    let _ = (p.src_port(), p.dst_port(), p.len(), p.payload());
    let valid = p.verify_checksum(src, dst);
    let zero = p.checksum() == 0;
    p.set_dst_port(port);
    assert_eq!(p.verify_checksum(src, dst), valid);
    assert_eq!(p.checksum() == 0, zero);
    p.fill_checksum(src, dst);
    assert!(p.verify_checksum(src, dst) && p.checksum() != 0);
}

fn icmp(buf: &mut [u8]) {
    let Ok(mut p) = Icmpv4Packet::new_checked(buf) else {
        return;
    };
    let _ = (p.msg_type(), p.code(), p.rest_of_header(), p.next_hop_mtu());
    let _ = (
        p.echo_ident(),
        p.echo_seq(),
        p.is_error(),
        p.verify_checksum(),
    );
    if let Some(inner) = p.invoking_packet() {
        let _ = Ipv4Packet::new_checked(inner).map(|q| q.payload().len());
    }
    p.fill_checksum();
    assert!(p.verify_checksum());
}

/// Every `wire` view and accessor on arbitrary bytes, plus the invariants the data path relies
/// on: MSS clamping and the incremental setters keep a valid checksum valid, and the fast
/// checksum equals the obvious one.
pub fn wire_views(data: &[u8]) {
    assert_eq!(checksum::data(data), reference_sum(data));
    let max = data.first().map_or(536, |&b| 500 + 4 * b as u16);
    let mut buf = data.to_vec();

    if let Ok(mut p) = Ipv4Packet::new_checked(&mut buf[..]) {
        let _ = (
            p.version(),
            p.dscp_ecn(),
            p.ident(),
            p.dont_frag(),
            p.more_frags(),
        );
        let _ = (
            p.frag_offset(),
            p.is_fragment(),
            p.checksum(),
            p.options(),
            p.packet(),
        );
        let _ = Ipv4Repr::parse(&p);
        let valid = p.verify_checksum();
        p.set_ttl(p.ttl().wrapping_sub(1));
        p.set_src_addr(DST);
        p.set_dst_addr(SRC);
        assert_eq!(p.verify_checksum(), valid);
        let (src, dst, proto) = (p.src_addr(), p.dst_addr(), p.protocol());
        let payload = p.payload_mut();
        match proto {
            IpProtocol::TCP => tcp(payload, src, dst, max),
            IpProtocol::UDP => udp(payload, src, dst, max),
            IpProtocol::ICMP => icmp(payload),
            _ => {}
        }
    }

    // Every view straight on the raw bytes too.
    tcp(&mut data.to_vec(), SRC, DST, max);
    udp(&mut data.to_vec(), SRC, DST, max);
    icmp(&mut data.to_vec());
    if let Ok(g) = GreHeader::new_checked(data) {
        let _ = (
            g.version(),
            g.protocol_type(),
            g.checksum(),
            g.key(),
            g.sequence(),
        );
        let _ = (g.verify_checksum(), g.payload());
    }
    if let Ok(g) = GueHeader::new_checked(data) {
        let _ = (g.variant(), g.control(), g.proto_ctype(), g.flags());
        let _ = (g.extension_fields(), g.payload());
    }
    if let Ok(a) = ArpPacket::new_checked(data) {
        let _ = (a.op(), a.target_mac(), a.is_gratuitous());
        let reply = ArpRepr::reply_to(&a, [2, 0, 0, 0, 0, 1]).emit();
        let back = ArpPacket::new_checked(&reply[..]).expect("a built reply parses");
        assert_eq!(back.sender_ip(), a.target_ip());
        assert_eq!(back.target_ip(), a.sender_ip());
        assert_eq!(back.target_mac(), a.sender_mac());
    }
}

use crate::wire::icmp::{self, error_in_place, frag_needed_in_place};
use crate::wire::{Icmpv4Packet, IpProtocol, Ipv4Packet};

/// `frag_needed_in_place` and `error_in_place` on arbitrary bytes: no panic, untouched buffer
/// when no reply is due, and every reply is a valid ICMP error quoting the original.
pub fn icmp_reply(data: &[u8]) {
    // Layout: 2 bytes MTU, 1 byte of room past the packet, then the packet.
    if data.len() < 3 {
        return;
    }
    let (head, pkt) = data.split_at(3);
    let mtu = u16::from_be_bytes([head[0], head[1]]);
    let mut before = pkt.to_vec();
    before.resize(pkt.len() + head[2] as usize, 0xee);

    for frag_needed in [true, false] {
        let mut buf = before.clone();
        let result = if frag_needed {
            frag_needed_in_place(&mut buf, pkt.len(), mtu)
        } else {
            let t = icmp::msg_type::TIME_EXCEEDED;
            error_in_place(&mut buf, pkt.len(), t, icmp::CODE_TTL_EXCEEDED, 0)
        };
        let Some(len) = result else {
            assert_eq!(buf, before, "no reply must leave the buffer alone");
            continue;
        };
        let orig = Ipv4Packet::new_checked(pkt).expect("only valid packets are answered");
        let ip = Ipv4Packet::new_checked(&buf[..len]).expect("reply must be IPv4");
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len() as usize, len);
        assert_eq!(ip.protocol(), IpProtocol::ICMP);
        assert_eq!(ip.src_addr(), orig.dst_addr());
        assert_eq!(ip.dst_addr(), orig.src_addr());
        let reply = Icmpv4Packet::new_checked(ip.payload()).expect("reply must hold ICMP");
        assert!(reply.verify_checksum());
        assert!(reply.is_error());
        if frag_needed {
            assert_eq!(reply.next_hop_mtu(), Some(mtu));
        }
        let want = orig.header_len() + orig.payload().len().min(8);
        assert_eq!(reply.invoking_packet(), Some(&pkt[..want]));
    }
}

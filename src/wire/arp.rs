//! ARP for IPv4 over Ethernet (RFC 826): the [`ArpPacket`] view over the 28-byte payload an
//! `AF_PACKET` `SOCK_DGRAM` socket hands over (no Ethernet header), and [`ArpRepr`], the builder
//! of the replies and gratuitous requests the director's ARP responder sends for its VIPs.

use std::net::Ipv4Addr;

use super::{get_u16, put_u16, Error};

mod field {
    use core::ops::Range;

    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = field::TPA.end;

/// The EtherType of ARP (`ETH_P_ARP`).
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// The ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArpOp {
    /// 1: who has TPA? tell SPA.
    Request,
    /// 2: SPA is at SHA.
    Reply,
}

impl ArpOp {
    fn to_u16(self) -> u16 {
        match self {
            ArpOp::Request => 1,
            ArpOp::Reply => 2,
        }
    }
}

/// A view of an ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` after checking it is an Ethernet (1) / IPv4 (0x0800) ARP packet with
    /// 6- and 4-byte addresses, at least [`PACKET_LEN`] bytes long (trailing padding is allowed).
    /// After it no accessor can panic.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if get_u16(b, field::HTYPE) != 1
            || get_u16(b, field::PTYPE) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::BadHeaderLen);
        }
        Ok(ArpPacket { buffer })
    }

    /// The operation, `None` for anything but request and reply.
    pub fn op(&self) -> Option<ArpOp> {
        match get_u16(self.buffer.as_ref(), field::OPER) {
            1 => Some(ArpOp::Request),
            2 => Some(ArpOp::Reply),
            _ => None,
        }
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::SPA])
    }

    /// Target hardware address.
    pub fn target_mac(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        ip(&self.buffer.as_ref()[field::TPA])
    }

    /// A gratuitous ARP: sender and target address are the same.
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0; 6];
    m.copy_from_slice(&b[..6]);
    m
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

/// An ARP packet to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// Request or reply.
    pub op: ArpOp,
    /// Sender hardware address.
    pub sender_mac: [u8; 6],
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: [u8; 6],
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// The reply to `request` saying `ip` is at `mac`.
    pub fn reply_to<T: AsRef<[u8]>>(request: &ArpPacket<T>, mac: [u8; 6]) -> ArpRepr {
        ArpRepr {
            op: ArpOp::Reply,
            sender_mac: mac,
            sender_ip: request.target_ip(),
            target_mac: request.sender_mac(),
            target_ip: request.sender_ip(),
        }
    }

    /// A gratuitous ARP as keepalived sends it: a broadcast request with sender and target
    /// address both `ip`, the target MAC all-ones.
    pub fn gratuitous(ip: Ipv4Addr, mac: [u8; 6]) -> ArpRepr {
        ArpRepr {
            op: ArpOp::Request,
            sender_mac: mac,
            sender_ip: ip,
            target_mac: [0xff; 6],
            target_ip: ip,
        }
    }

    /// The packet's bytes.
    pub fn emit(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        put_u16(&mut b, field::HTYPE, 1);
        put_u16(&mut b, field::PTYPE, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        put_u16(&mut b, field::OPER, self.op.to_u16());
        b[field::SHA].copy_from_slice(&self.sender_mac);
        b[field::SPA].copy_from_slice(&self.sender_ip.octets());
        b[field::THA].copy_from_slice(&self.target_mac);
        b[field::TPA].copy_from_slice(&self.target_ip.octets());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `who-has 192.168.150.100 tell 192.168.150.2` from 02:00:00:00:00:02.
    static REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 192,
        168, 150, 2, 0, 0, 0, 0, 0, 0, 192, 168, 150, 100,
    ];

    #[test]
    fn parses_a_request_field_by_field() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.op(), Some(ArpOp::Request));
        assert_eq!(p.sender_mac(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(p.sender_ip(), Ipv4Addr::new(192, 168, 150, 2));
        assert_eq!(p.target_mac(), [0; 6]);
        assert_eq!(p.target_ip(), Ipv4Addr::new(192, 168, 150, 100));
        assert!(!p.is_gratuitous());
    }

    #[test]
    fn builds_the_reply_byte_for_byte() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::reply_to(&p, [2, 0, 0, 0, 0, 0x11]).emit();
        let expected: [u8; 28] = [
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x11,
            192, 168, 150, 100, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 192, 168, 150, 2,
        ];
        assert_eq!(r, expected);
        let back = ArpPacket::new_checked(&r[..]).unwrap();
        assert_eq!(back.op(), Some(ArpOp::Reply));
    }

    #[test]
    fn gratuitous_request_names_the_vip_twice() {
        let vip = Ipv4Addr::new(10, 0, 0, 100);
        let g = ArpRepr::gratuitous(vip, [2, 0, 0, 0, 0, 0x11]).emit();
        let p = ArpPacket::new_checked(&g[..]).unwrap();
        assert!(p.is_gratuitous());
        assert_eq!(p.op(), Some(ArpOp::Request));
        assert_eq!(p.target_mac(), [0xff; 6]);
    }

    #[test]
    fn refuses_short_and_foreign_packets() {
        assert_eq!(
            ArpPacket::new_checked(&REQUEST[..27]),
            Err(Error::Truncated)
        );
        let mut ipv6ish = REQUEST;
        ipv6ish[5] = 16;
        assert!(ArpPacket::new_checked(&ipv6ish[..]).is_err());
        let mut odd = REQUEST;
        odd[7] = 9;
        assert_eq!(ArpPacket::new_checked(&odd[..]).unwrap().op(), None);
    }
}

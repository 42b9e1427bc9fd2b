//! Builders of well-formed packets for tests, benchmarks and fuzz seeds (not for the data path:
//! they allocate).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;

/// An IPv4 header (no options, DF set, TTL 64) around `l4` with protocol `proto`.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..].copy_from_slice(l4);
    p
}

fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> u16 {
    !checksum::combine(&[
        checksum::pseudo_header_v4(src, dst, proto, l4.len() as u16),
        checksum::data(l4),
    ])
}

/// A TCP segment in an IPv4 packet: `flags` as on the wire (0x02 SYN, 0x10 ACK, ...),
/// `payload_len` zero bytes of data, and an MSS option of 1460 on SYNs.
pub fn tcp_packet(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut t = tcp_segment(sport, dport, flags, payload_len);
    let c = l4_checksum(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4_packet(src, dst, 6, &t)
}

/// [`tcp_packet`] over IPv6.
pub fn tcp6_packet(
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    flags: u8,
    payload_len: usize,
) -> Vec<u8> {
    let mut t = tcp_segment(sport, dport, flags, payload_len);
    let c = !checksum::upper_layer_v6(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv6_packet(src, dst, 6, &t)
}

/// The TCP header and zero payload of [`tcp_packet`], checksum 0.
fn tcp_segment(sport: u16, dport: u16, flags: u8, payload_len: usize) -> Vec<u8> {
    let syn = flags & 0x02 != 0;
    let hl = if syn { 24 } else { 20 };
    let mut t = vec![0u8; hl + payload_len];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = ((hl / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    if syn {
        t[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    }
    t
}

/// A UDP datagram in an IPv4 packet with `payload_len` zero bytes.
pub fn udp_packet(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut u = udp_datagram(sport, dport, payload_len);
    let c = l4_checksum(src, dst, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4_packet(src, dst, 17, &u)
}

/// [`udp_packet`] over IPv6.
pub fn udp6_packet(
    src: Ipv6Addr,
    sport: u16,
    dst: Ipv6Addr,
    dport: u16,
    payload_len: usize,
) -> Vec<u8> {
    let mut u = udp_datagram(sport, dport, payload_len);
    let c = match !checksum::upper_layer_v6(src, dst, 17, &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6_packet(src, dst, 17, &u)
}

fn udp_datagram(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut u = vec![0u8; 8 + payload_len];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    u
}

/// An IPv6 header (hop limit 64, no extension headers) around `l4` with next header `next`.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(l4);
    p
}

/// An ICMP error (`icmp_type`/`code`, rest-of-header `rest`) from `src` to `dst` quoting the
/// first 28 bytes of `original`.
pub fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    icmp_type: u8,
    code: u8,
    rest: u32,
    original: &[u8],
) -> Vec<u8> {
    let quote = &original[..original.len().min(28)];
    let mut m = vec![0u8; 8 + quote.len()];
    m[0] = icmp_type;
    m[1] = code;
    m[4..8].copy_from_slice(&rest.to_be_bytes());
    m[8..].copy_from_slice(quote);
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4_packet(src, dst, 1, &m)
}

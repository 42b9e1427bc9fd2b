//! The packet oracle: an independent check, built on the `etherparse` crate and the RFCs rather
//! than on tunlb's own `wire`/`encap` code, that a packet the director core emitted has correct
//! IPv4, TCP, UDP and ICMP lengths and checksums, outer and inner for tunnels (IPIP, GRE, GUE are
//! stripped here, by hand from RFC 2003/2784/2890 and the GUE draft, and the inner packet checked
//! the same way).
//!
//! `etherparse` is only a dev-dependency of tunlb and a dependency of the fuzz crate, never part
//! of the normal build, so this file uses nothing but `etherparse` and `std` and is compiled in
//! three places: the library's own unit tests (`#[cfg(test)] mod oracle` in `fuzzing`, used by
//! `director::testkit` on every packet the scenario tests send), `tests/fuzz_corpora.rs` and
//! the fuzz crate (both `#[path]` it in). The fuzz target bodies in `tunlb::fuzzing` that emit
//! packets take it as an argument ([`check_ipv4`] has the `tunlb::fuzzing::Oracle` signature).

use etherparse::checksum::Sum16BitWords;
use etherparse::{Icmpv4Slice, IpNumber, Ipv4HeaderSlice, TcpSlice, UdpSlice};

/// How deep tunnels may nest before the oracle gives up (a tunnel in a tunnel is legal, a
/// crafted one could nest until the bytes run out).
const MAX_DEPTH: usize = 4;

/// Checks that `pkt` is exactly one IPv4 packet (total length = `pkt.len()`) with a valid
/// header checksum; unless it is a fragment, that its TCP/UDP/ICMP header, length and checksum
/// are valid; and for a tunnel (IPIP, GRE carrying IPv4, GUE to UDP port `gue_port` when it is
/// not 0), the same of the inner packet. The error says what is wrong, at which depth.
/// An IPv6 packet (version 6) is checked by [`check_ipv6`] instead: the name predates IPv6.
pub fn check_ipv4(pkt: &[u8], gue_port: u16) -> Result<(), String> {
    if pkt.first().map(|b| b >> 4) == Some(6) {
        return check_ipv6(pkt);
    }
    check_at(pkt, gue_port, 0)
}

/// Checks that `pkt` is exactly one IPv6 packet (40 + payload length = `pkt.len()`) whose
/// extension headers etherparse walks and, unless it is a fragment, whose TCP, UDP (non-zero,
/// RFC 8200 §8.1) or ICMPv6 length and checksum over the IPv6 pseudo-header are valid.
pub fn check_ipv6(pkt: &[u8]) -> Result<(), String> {
    let ip = etherparse::Ipv6Slice::from_slice(pkt).map_err(|e| format!("IPv6: {e}"))?;
    let h = ip.header();
    let total = 40 + usize::from(h.payload_length());
    if total != pkt.len() {
        return Err(format!("IPv6 length {total} != {} bytes", pkt.len()));
    }
    let p = ip.payload();
    if p.fragmented {
        return Ok(());
    }
    let (src, dst) = (h.source(), h.destination());
    let (stored, want) = match p.ip_number {
        IpNumber::TCP => {
            let t = TcpSlice::from_slice(p.payload).map_err(|e| format!("TCP: {e}"))?;
            let want = t.calc_checksum_ipv6(src, dst).map_err(|e| e.to_string())?;
            (t.checksum(), want)
        }
        IpNumber::UDP => {
            let u = UdpSlice::from_slice(p.payload).map_err(|e| format!("UDP: {e}"))?;
            if usize::from(u.length()) != p.payload.len() {
                return Err(format!("UDP length {} != {}", u.length(), p.payload.len()));
            }
            if u.checksum() == 0 {
                return Err("UDP over IPv6 without a checksum".into());
            }
            let want = u
                .to_header()
                .calc_checksum_ipv6_raw(src, dst, u.payload())
                .map_err(|e| e.to_string())?;
            (u.checksum(), want)
        }
        IpNumber::IPV6_ICMP => {
            let i = etherparse::Icmpv6Slice::from_slice(p.payload)
                .map_err(|e| format!("ICMPv6: {e}"))?;
            let want = i
                .icmp_type()
                .calc_checksum(src, dst, i.payload())
                .map_err(|e| e.to_string())?;
            (i.checksum(), want)
        }
        _ => return Ok(()),
    };
    if !same_checksum(stored, want) {
        return Err(format!(
            "{:?} checksum {stored:#06x}, want {want:#06x}",
            p.ip_number
        ));
    }
    Ok(())
}

/// Whether two 16-bit one's-complement checksums are the same number (0x0000 and 0xffff both
/// stand for zero: a receiver summing the packet accepts either).
fn same_checksum(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

fn check_at(pkt: &[u8], gue_port: u16, depth: usize) -> Result<(), String> {
    let at = |what: String| format!("depth {depth}: {what}");
    if depth > MAX_DEPTH {
        return Err(at("tunnels nested too deep".into()));
    }
    let header = Ipv4HeaderSlice::from_slice(pkt).map_err(|e| at(format!("IPv4 header: {e}")))?;
    let total = usize::from(header.total_len());
    if total != pkt.len() {
        return Err(at(format!(
            "IPv4 total length {total} != {} bytes",
            pkt.len()
        )));
    }
    let hlen = header.slice().len();
    if total < hlen {
        return Err(at(format!("IPv4 total length {total} < header {hlen}")));
    }
    // Summed over the header's bytes as they are (RFC 1071): etherparse's own
    // `calc_header_checksum` rebuilds the header from its fields and leaves out the reserved
    // flag bit, which a packet may carry and the core passes on.
    if Sum16BitWords::new()
        .add_slice(header.slice())
        .ones_complement()
        != 0
    {
        return Err(at(format!(
            "IPv4 header checksum {:#06x} does not verify (etherparse computes {:#06x})",
            header.header_checksum(),
            header.to_header().calc_header_checksum()
        )));
    }
    if header.is_fragmenting_payload() {
        // The transport header or checksum of a fragment cannot be checked on its own.
        return Ok(());
    }
    let payload = &pkt[hlen..];
    let (src, dst) = (header.source(), header.destination());
    match header.protocol() {
        IpNumber::TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|e| at(format!("TCP: {e}")))?;
            let want = tcp
                .calc_checksum_ipv4(src, dst)
                .map_err(|e| at(format!("TCP: {e}")))?;
            if !same_checksum(want, tcp.checksum()) {
                return Err(at(format!(
                    "TCP checksum {:#06x}, should be {want:#06x}",
                    tcp.checksum()
                )));
            }
        }
        IpNumber::UDP => {
            let udp = UdpSlice::from_slice(payload).map_err(|e| at(format!("UDP: {e}")))?;
            let len = usize::from(udp.length());
            if len != payload.len() {
                return Err(at(format!(
                    "UDP length {len} != {} bytes of IPv4 payload",
                    payload.len()
                )));
            }
            if udp.checksum() != 0 {
                let want = udp
                    .to_header()
                    .calc_checksum_ipv4_raw(src, dst, udp.payload())
                    .map_err(|e| at(format!("UDP: {e}")))?;
                if !same_checksum(want, udp.checksum()) {
                    return Err(at(format!(
                        "UDP checksum {:#06x}, should be {want:#06x}",
                        udp.checksum()
                    )));
                }
            }
            if gue_port != 0 && udp.destination_port() == gue_port {
                if let Some(inner) = strip_gue(udp.payload()).map_err(at)? {
                    return check_at(inner, gue_port, depth + 1);
                }
            }
        }
        IpNumber::ICMP => {
            let icmp = Icmpv4Slice::from_slice(payload).map_err(|e| at(format!("ICMP: {e}")))?;
            // The checksum covers the whole ICMP message; an error's quote is not descended
            // into (it is a cut original, its lengths and checksums are the sender's).
            let want = icmp.icmp_type().calc_checksum(icmp.payload());
            if !same_checksum(want, icmp.checksum()) {
                return Err(at(format!(
                    "ICMP checksum {:#06x}, should be {want:#06x}",
                    icmp.checksum()
                )));
            }
        }
        IpNumber::IPV4 => return check_at(payload, gue_port, depth + 1),
        IpNumber::GRE => {
            if let Some(inner) = strip_gre(payload).map_err(at)? {
                return check_at(inner, gue_port, depth + 1);
            }
        }
        _ => {}
    }
    Ok(())
}

/// RFC 2784 / 2890: the IPv4 packet a GRE payload carries (`None` for another protocol type),
/// after checking the version, the reserved bits and, with the C bit, the checksum over the GRE
/// header and payload.
fn strip_gre(gre: &[u8]) -> Result<Option<&[u8]>, String> {
    if gre.len() < 4 {
        return Err(format!("GRE: {} bytes, header needs 4", gre.len()));
    }
    let (c, k, s) = (gre[0] & 0x80 != 0, gre[0] & 0x20 != 0, gre[0] & 0x10 != 0);
    if gre[0] & 0x4f != 0 || gre[1] != 0 {
        return Err(format!(
            "GRE: reserved bits or version set ({:#04x} {:#04x})",
            gre[0], gre[1]
        ));
    }
    let len = 4 + 4 * (usize::from(c) + usize::from(k) + usize::from(s));
    if gre.len() < len {
        return Err(format!("GRE: {} bytes, header needs {len}", gre.len()));
    }
    if c && Sum16BitWords::new().add_slice(gre).ones_complement() != 0 {
        return Err("GRE: bad checksum".into());
    }
    let proto = u16::from_be_bytes([gre[2], gre[3]]);
    Ok((proto == 0x0800).then(|| &gre[len..]))
}

/// The GUE draft: the IPv4 packet a GUE payload carries (variant 0 data message with protocol
/// 4 after its extension fields, or variant 1 with an IPv4 header directly), `None` for a
/// control message or another protocol.
fn strip_gue(gue: &[u8]) -> Result<Option<&[u8]>, String> {
    let Some(&first) = gue.first() else {
        return Err("GUE: empty UDP payload".into());
    };
    match first >> 6 {
        0 => {
            if gue.len() < 4 {
                return Err(format!("GUE: {} bytes, header needs 4", gue.len()));
            }
            let len = 4 + 4 * usize::from(first & 0x1f);
            if gue.len() < len {
                return Err(format!("GUE: {} bytes, header needs {len}", gue.len()));
            }
            let control = first & 0x20 != 0;
            Ok((!control && gue[1] == 4).then(|| &gue[len..]))
        }
        1 => Ok((first >> 4 == 4).then_some(gue)),
        v => Err(format!("GUE: variant {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP packet from etherparse's own builder, which the oracle must take.
    fn udp_packet(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1000, 53);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn tcp_packet(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4([10, 1, 0, 2], [10, 100, 0, 100], 64)
            .tcp(40000, 80, 1, 65535);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn takes_valid_packets_and_refuses_a_flipped_bit() {
        for p in [udp_packet(b"hello"), tcp_packet(b"GET / HTTP/1.0\r\n\r\n")] {
            check_ipv4(&p, 0).unwrap();
            for bit in [8 * 10, 8 * 22, 8 * (p.len() - 1)] {
                let mut q = p.clone();
                q[bit / 8] ^= 1;
                assert!(check_ipv4(&q, 0).is_err(), "bit {bit} of {p:?}");
            }
            let mut longer = p.clone();
            longer.push(0);
            assert!(check_ipv4(&longer, 0).is_err(), "trailing byte");
        }
    }

    /// An outer IPv4 header for `payload` with protocol `proto`, etherparse's checksum.
    fn outer(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = etherparse::Ipv4Header::new(
            payload.len() as u16,
            64,
            IpNumber(proto),
            [10, 3, 0, 1],
            [10, 3, 0, 11],
        )
        .unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut out = h.to_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn descends_into_ipip_gre_and_gue() {
        let inner = tcp_packet(b"data");
        let mut bad = inner.clone();
        *bad.last_mut().unwrap() ^= 0x40;

        for inner_ok in [true, false] {
            let inner = if inner_ok { &inner } else { &bad };
            let ipip = outer(4, inner);
            let mut gre = vec![0, 0, 8, 0];
            gre.extend_from_slice(inner);
            let gre = outer(47, &gre);
            let mut gue_payload = vec![0, 4, 0, 0];
            gue_payload.extend_from_slice(inner);
            let b =
                etherparse::PacketBuilder::ipv4([10, 3, 0, 1], [10, 3, 0, 11], 64).udp(50000, 6080);
            let mut gue = Vec::new();
            b.write(&mut gue, &gue_payload).unwrap();
            for p in [ipip, gre, gue] {
                assert_eq!(check_ipv4(&p, 6080).is_ok(), inner_ok, "{p:?}");
            }
        }
    }

    /// RFC 1071 by hand: big-endian words, the odd byte padded, carries folded, complemented.
    fn rfc1071(bytes: &[u8]) -> [u8; 2] {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        (!(sum as u16)).to_be_bytes()
    }

    /// The reserved flag bit is carried as it is (etherparse's own header checksum would
    /// leave it out; the fuzzer found that with `gso_classify`).
    #[test]
    fn the_reserved_flag_bit_is_summed_as_it_is() {
        let mut p = udp_packet(b"x");
        p[6] |= 0x80;
        p[10..12].copy_from_slice(&[0, 0]);
        let c = rfc1071(&p[..20]);
        p[10..12].copy_from_slice(&c);
        check_ipv4(&p, 0).unwrap();
    }

    #[test]
    fn gre_checksum_is_verified() {
        let inner = tcp_packet(b"x");
        let mut gre = vec![0x80, 0, 8, 0, 0, 0, 0, 0];
        gre.extend_from_slice(&inner);
        let c = rfc1071(&gre);
        gre[4..6].copy_from_slice(&c);
        check_ipv4(&outer(47, &gre), 0).unwrap();
        gre[5] ^= 1;
        assert!(check_ipv4(&outer(47, &gre), 0).is_err());
    }
}

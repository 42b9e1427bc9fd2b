//! What the director core emitted, checked by an [`Oracle`]: the helper the core's scenario
//! tests (`director::testkit`) and the director fuzz targets call on every verdict.

use std::num::NonZeroU16;

use super::Oracle;
use crate::director::{Encap, Verdict};
use crate::encap;
use crate::wire::checksum;

/// Whether `pkt` is a packet the oracle takes as it is (then everything the core makes of it
/// must be too). Client packets are never tunnels here: no GUE port.
pub fn valid(oracle: Oracle, pkt: &[u8]) -> bool {
    oracle(pkt, 0).is_ok()
}

/// Checks the packet(s) a verdict emits, `buf` being the packet buffer after `handle_packet`:
/// an ICMP error the core wrote (`Reply`) always; a rewritten, encapsulated or DR packet when
/// the packet that went in was valid (`input_valid`, see [`valid`]): a valid packet in, valid
/// packets out, outer and inner, and every fragment of an encapsulated one has a valid IPv4
/// header and carries its share of the datagram. Panics with the oracle's reason and the bytes.
pub fn check_verdict(oracle: Oracle, input_valid: bool, v: &Verdict, buf: &[u8]) {
    let must = |what: &str, pkt: &[u8], gue_port: u16| {
        if let Err(e) = oracle(pkt, gue_port) {
            panic!("{what} the core emitted is wrong: {e}\nverdict {v:?}\npacket {pkt:02x?}");
        }
    };
    match v {
        Verdict::Reply { len } => must("ICMP reply", &buf[..*len], 0),
        Verdict::Rewrite { len } if input_valid => must("rewritten packet", &buf[..*len], 0),
        Verdict::Encap(e) if input_valid => {
            let port = e.tunnel.gue_port().unwrap_or(0);
            let mut datagram = e.header().to_vec();
            datagram.extend_from_slice(&buf[..e.len]);
            must("encapsulated datagram", &datagram, port);
            if e.frag_mtu != 0 {
                check_fragments(e, &datagram, buf, &must);
            }
        }
        Verdict::Ether(e) if input_valid => {
            must("DR packet", &buf[..e.len], 0);
            if e.frag_mtu != 0 {
                let ihl = usize::from(buf[0] & 0x0f) * 4;
                let ident = NonZeroU16::MIN;
                if let Ok(frags) = encap::fragment(&buf[..ihl], e.len - ihl, e.frag_mtu, ident) {
                    for f in frags {
                        let mut p = f.header().to_vec();
                        p.extend_from_slice(&buf[ihl + f.inner.start..ihl + f.inner.end]);
                        assert!(p.len() <= usize::from(e.frag_mtu), "DR fragment over MTU");
                        must("DR fragment", &p, 0);
                    }
                }
            }
        }
        _ => {}
    }
}

/// The fragments of an `Encap` with `frag_mtu`: each a valid IPv4 packet no longer than the
/// MTU, with the datagram's payload cut in order.
fn check_fragments(e: &Encap, datagram: &[u8], buf: &[u8], must: &dyn Fn(&str, &[u8], u16)) {
    let frags = match encap::fragment(e.header(), e.len, e.frag_mtu, NonZeroU16::MIN) {
        Ok(f) => f,
        Err(err) => panic!("the core asked for fragments it cannot have: {err:?}\n{e:?}"),
    };
    let mut payload = Vec::new();
    for f in frags {
        let mut p = f.header().to_vec();
        p.extend_from_slice(&buf[f.inner.clone()]);
        assert!(p.len() <= usize::from(e.frag_mtu), "fragment over the MTU");
        must("fragment", &p, 0);
        payload.extend_from_slice(&p[20..]);
    }
    assert_eq!(
        payload,
        datagram[20..],
        "fragments do not add up to the datagram"
    );
}

/// Makes `pkt` a packet the oracle takes, as far as its bytes allow: an IPv4 header with
/// version 4 and a plausible length gets total length = the buffer, its header checksum and,
/// unless it is a fragment, its TCP/UDP/ICMP checksum (and UDP length) filled in. The fuzz
/// targets use it (a flag per packet) so that most mutated packets still reach the paths a
/// valid packet takes. Uses tunlb's own checksum code: only the checking is independent.
pub fn repair(pkt: &mut [u8]) {
    let len = pkt.len();
    if len < 20 || len > usize::from(u16::MAX) || pkt[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    if ihl < 20 || ihl > len {
        return;
    }
    pkt[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    pkt[10..12].copy_from_slice(&[0, 0]);
    let c = !checksum::data(&pkt[..ihl]);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    // MF or a fragment offset.
    if pkt[6] & 0x3f != 0 || pkt[7] != 0 {
        return;
    }
    let src = std::net::Ipv4Addr::from([pkt[12], pkt[13], pkt[14], pkt[15]]);
    let dst = std::net::Ipv4Addr::from([pkt[16], pkt[17], pkt[18], pkt[19]]);
    let proto = pkt[9];
    let l4 = &mut pkt[ihl..];
    let l4_len = l4.len();
    let at = match proto {
        6 if l4_len >= 20 => 16,
        17 if l4_len >= 8 => {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            6
        }
        1 if l4_len >= 8 => 2,
        _ => return,
    };
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    let sum = if proto == 1 {
        checksum::data(l4)
    } else {
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, proto, l4_len as u16),
            checksum::data(l4),
        ])
    };
    let c = match !sum {
        0 if proto == 17 => 0xffff,
        c => c,
    };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

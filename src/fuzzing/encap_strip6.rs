use std::net::{Ipv4Addr, Ipv6Addr};

use crate::encap::auth::{Keyring, Seal, TunnelKey};
use crate::encap::{
    build_outer, build_outer6, strip_gue_inner, strip_ip, strip_ip6, strip_payload6, Family,
    OuterParams, OuterParams6, StripError, TrafficClass, Tunnel, TunnelType, Udp6Zero,
    DEFAULT_GUE_PORT, MAX_OUTER_HEADER, OUTER_TTL,
};
use crate::wire::Ipv4Packet;

/// The key the seeds' authenticated packets are sealed with.
const KEY: [u8; 32] = [0x5a; 32];

/// An accepted inner packet must be of the family reported, with a consistent length.
fn check_inner(bytes: &[u8], family: Family) {
    assert_eq!(Family::of(bytes), Some(family), "inner family");
    match family {
        Family::Ipv4 => {
            let p = Ipv4Packet::new_checked(bytes).expect("accepted inner must be IPv4");
            assert_eq!(p.total_len() as usize, bytes.len());
        }
        Family::Ipv6 => {
            let plen = u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
            assert!(plen > 0);
            assert_eq!(40 + plen, bytes.len());
        }
    }
}

fn addr6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(b);
    Ipv6Addr::from(a)
}

/// The IPv6 strip paths on arbitrary bytes: `strip_ip6` (whole outer IPv6 packet: IPIP as 4in6
/// and ip6ip6, GRE with and without a key, GUE with and without zero checksums allowed),
/// `strip_payload6` on the same bytes as a raw `AF_INET6` socket gives them (after the 40-byte
/// header, its next header and addresses), `strip_ip` (IPv4 outer, inner IPv6 accepted) and
/// `strip_gue_inner`: no panic, and whatever is accepted is an inner packet of the reported
/// family inside the input. When the input is itself a whole IPv4 or IPv6 packet, every tunnel
/// over IPv6 (GUE also sealed) and over IPv4 is built in front of it and stripped back.
pub fn encap_strip6(data: &[u8]) {
    let key = data
        .get(data.len().saturating_sub(4)..)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(42, u32::from_be_bytes);
    let kinds = [
        (TunnelType::Ipip, None),
        (TunnelType::Gre, None),
        (TunnelType::Gre, Some(42)),
        (TunnelType::Gre, Some(key)),
        (TunnelType::Gue, None),
    ];
    for (tun, k) in kinds {
        for z in [Udp6Zero::Never, Udp6Zero::Allowed] {
            if let Ok(s) = strip_ip6(data, tun, k, z) {
                assert!(s.inner.start >= 40 && s.inner.end <= data.len());
                check_inner(&data[s.inner], s.family);
            }
        }
        if data.len() >= 40 {
            let (src, dst, nh) = (addr6(&data[8..24]), addr6(&data[24..40]), data[6]);
            if let Ok(i) = strip_payload6(&data[40..], src, dst, nh, tun, k, Udp6Zero::Never) {
                check_inner(&data[40..][i.range], i.family);
            }
        }
        if let Ok(s) = strip_ip(data, tun, k) {
            check_inner(&data[s.inner], s.family);
        }
    }
    if let Ok(i) = strip_gue_inner(data) {
        check_inner(&data[i.range], i.family);
    }

    // Round trips when the input is a whole IPv4 or IPv6 packet.
    let Some(family) = Family::of(data) else {
        return;
    };
    let whole = match family {
        Family::Ipv4 => {
            Ipv4Packet::new_checked(data).is_ok_and(|p| p.total_len() as usize == data.len())
        }
        Family::Ipv6 => {
            let plen = u16::from_be_bytes([data[4], data[5]]) as usize;
            plen > 0 && 40 + plen == data.len()
        }
    };
    if !whole {
        return;
    }
    let gre_key = (key % 2 == 0).then_some(key);
    let csum = key % 3 == 0;
    let tk = TunnelKey::new(&KEY);
    let seal = Seal {
        key: &tk,
        lane: key as u16,
        seq: 1 + key as u64,
    };
    for tunnel in [
        Tunnel::Ipip,
        Tunnel::Gre { key: gre_key, csum },
        Tunnel::Gre {
            key: gre_key,
            csum: true,
        },
        Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum,
        },
    ] {
        let (kind, k) = (tunnel.kind(), tunnel.gre_key());
        for sealed in [false, true] {
            let p = OuterParams6 {
                src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
                tunnel,
                flow_hash: key,
                hop_limit: OUTER_TTL,
                traffic_class: TrafficClass::CopyInner,
                udp_zero: if csum {
                    Udp6Zero::Allowed
                } else {
                    Udp6Zero::Never
                },
            };
            let mut out = [0u8; MAX_OUTER_HEADER];
            let Ok(n) = build_outer6(&p, data, sealed.then_some(&seal), &mut out) else {
                assert!(data.len() + 80 > 65535);
                continue;
            };
            let mut pkt = out[..n].to_vec();
            pkt.extend_from_slice(data);
            let s = strip_ip6(&pkt, kind, k, p.udp_zero).expect("built packet must strip");
            assert_eq!(&pkt[s.inner], data);
            assert_eq!(s.family, family);
            if sealed && kind == TunnelType::Gue {
                let mut ring = Keyring::new(vec![TunnelKey::new(&KEY)]).expect("one key");
                let after = ring
                    .open6(p.src, p.dst, &pkt[48..])
                    .expect("sealed packet opens");
                assert_eq!(&pkt[48..][after], data);
            }
            if let Tunnel::Gre { csum: true, .. } = tunnel {
                let at = n + key as usize % data.len();
                pkt[at] ^= 1 << (key % 8);
                assert_eq!(
                    strip_ip6(&pkt, kind, k, p.udp_zero),
                    Err(StripError::GreBadChecksum)
                );
            }
        }
        let p = OuterParams {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            tunnel,
            flow_hash: key,
        };
        let mut out = [0u8; MAX_OUTER_HEADER];
        if let Ok(n) = build_outer(&p, data, &mut out) {
            let mut pkt = out[..n].to_vec();
            pkt.extend_from_slice(data);
            let s = strip_ip(&pkt, kind, k).expect("built packet must strip");
            assert_eq!(&pkt[s.inner], data);
            assert_eq!(s.family, family);
        }
    }
}

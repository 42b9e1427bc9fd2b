use std::net::Ipv4Addr;

use crate::encap::{
    build_outer, overhead, strip_gue, strip_ip, OuterParams, StripError, Tunnel, TunnelType,
    DEFAULT_GUE_PORT, MAX_OUTER_HEADER,
};
use crate::wire::{checksum, Ipv4Packet};

fn check_inner(data: &[u8], inner: &core::ops::Range<usize>) {
    let bytes = &data[inner.clone()];
    if bytes.first().map(|b| b >> 4) == Some(6) {
        // IPv6 inside (protocol 41, 0x86DD, GUE 41): `encap_strip6` checks those.
        let plen = u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
        assert_eq!(40 + plen, bytes.len());
        return;
    }
    let p = Ipv4Packet::new_checked(bytes).expect("accepted inner must be IPv4 or IPv6");
    assert_eq!(p.total_len() as usize, bytes.len());
}

/// `strip_ip` (IPIP, GRE with and without a key, GUE) and `strip_gue` on arbitrary bytes: no
/// panic, and whatever is accepted names a valid inner IPv4 packet inside the input (and a GRE
/// packet with the C bit a valid GRE checksum). When the input is itself a whole IPv4 packet,
/// building every outer header in front of it (GRE and GUE with and without checksums) and
/// stripping it again must give it back, and a GRE checksum must catch a flipped payload bit.
pub fn encap_strip(data: &[u8]) {
    let key = data
        .get(data.len().saturating_sub(4)..)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(42, u32::from_be_bytes);
    for (tun, k) in [
        (TunnelType::Ipip, None),
        (TunnelType::Gre, None),
        (TunnelType::Gre, Some(42)),
        (TunnelType::Gre, Some(key)),
        (TunnelType::Gue, None),
    ] {
        if let Ok(s) = strip_ip(data, tun, k) {
            check_inner(data, &s.inner);
            let outer = Ipv4Packet::new_checked(data).expect("accepted outer");
            let gre = outer.payload();
            if tun == TunnelType::Gre && gre[0] & 0x80 != 0 {
                assert_eq!(checksum::data(gre), 0xffff, "accepted a bad GRE checksum");
            }
        }
    }
    if let Ok(r) = strip_gue(data) {
        check_inner(data, &r);
    }

    // Round trip when the input is a whole IPv4 packet.
    let Ok(p) = Ipv4Packet::new_checked(data) else {
        return;
    };
    if p.total_len() as usize != data.len() {
        return;
    }
    let gre_key = (key % 2 == 0).then_some(key);
    let csum = key % 3 == 0;
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
        let params = OuterParams {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
            tunnel,
            flow_hash: key,
        };
        let mut out = [0u8; MAX_OUTER_HEADER];
        let Ok(n) = build_outer(&params, data, &mut out) else {
            assert!(data.len() + overhead(&tunnel) > 65535);
            continue;
        };
        let mut pkt = out[..n].to_vec();
        pkt.extend_from_slice(data);
        let (kind, k) = (tunnel.kind(), tunnel.gre_key());
        let s = strip_ip(&pkt, kind, k).expect("built packet must strip");
        assert_eq!(&pkt[s.inner], data);
        if let Tunnel::Gre { csum: true, .. } = tunnel {
            // One flipped bit in the inner packet: only the GRE checksum can tell.
            let at = n + key as usize % data.len();
            pkt[at] ^= 1 << (key % 8);
            assert_eq!(strip_ip(&pkt, kind, k), Err(StripError::GreBadChecksum));
        }
    }
}

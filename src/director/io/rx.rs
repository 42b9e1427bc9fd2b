//! Where a packet enters: a worker's TUN queue.
//!
//! With TUN offload (the default; `--no-offload` turns it off) a read returns a whole GRO/GSO
//! TCP super-packet of up to 64 KB behind a `virtio_net_hdr` ([`crate::wire::gso`]). `classify`
//! sorts each read: an ordinary packet gets its partial checksum completed and is decided as
//! before; a super-packet the core can take whole ([`Director::handle_gso`]: one flow) is
//! decided once and cut into segments by the send path; one it cannot take whole (no DF, odd
//! checksum offsets, no room in the batch) is segmented first and decided packet by packet;
//! a malformed virtio header is dropped as `bad_vnet_hdr`.
//!
//! [`Director::handle_gso`]: crate::director::Director::handle_gso

use crate::wire::gso::{self, Segmenter, VnetHdr, VNET_HDR_LEN};
use crate::wire::IpProtocol;

/// How a packet read from an offloading TUN is handled.
pub(crate) enum Offloaded {
    /// An ordinary packet (checksum completed if it was partial): decided as before.
    Plain,
    /// A TCP/IPv4 or UDP/IPv4 super-packet the core decides once; the driver segments it
    /// after (or hands it on whole).
    Gso(Segmenter, VnetHdr),
    /// A super-packet to cut into whole packets first, each then decided on its own (no DF, no
    /// partial checksum, checksum offsets not the L4 header's, or too many segments for this
    /// batch).
    Segment(u16),
    /// A malformed virtio header.
    Bad,
}

/// Looks at a packet's virtio header (`room`: how many more GSO segments this batch takes).
pub(crate) fn classify(hdr: &[u8; VNET_HDR_LEN], pkt: &mut [u8], room: usize) -> Offloaded {
    let Ok(vh) = VnetHdr::parse(hdr) else {
        return Offloaded::Bad;
    };
    if vh.check(pkt).is_err() {
        return Offloaded::Bad;
    }
    if !vh.is_gso() {
        if vh.needs_csum() && gso::complete_checksum(pkt, vh.csum_start, vh.csum_offset).is_err() {
            return Offloaded::Bad;
        }
        return Offloaded::Plain;
    }
    let v6 = pkt.first().is_some_and(|b| b >> 4 == 6);
    let proto = match vh.kind() {
        gso::GSO_TCPV4 if !v6 => IpProtocol::TCP,
        // IPv6 super-packets are cut first, then each segment decided (the send path builds
        // IPv4 outer headers per segment only).
        gso::GSO_TCPV6 if v6 => return segment_v6(pkt, &vh, IpProtocol::TCP),
        gso::GSO_UDP_L4 if v6 => return segment_v6(pkt, &vh, IpProtocol::UDP),
        // UDP GRO forwarding (TUN_F_USO4): datagrams of one flow, gso_size bytes each.
        gso::GSO_UDP_L4 => IpProtocol::UDP,
        // UFO and IPv6 UDP were not asked for.
        _ => return Offloaded::Bad,
    };
    let Ok(seg) = Segmenter::new(pkt, vh.gso_size) else {
        return Offloaded::Bad;
    };
    if seg.protocol() != proto {
        return Offloaded::Bad;
    }
    let ihl = usize::from(pkt.first().map_or(0, |b| b & 0x0f)) * 4;
    let dont_frag = pkt.get(6).is_some_and(|b| b & 0x40 != 0);
    let l4_csum = vh.needs_csum()
        && usize::from(vh.csum_start) == ihl
        && Some(vh.csum_offset) == gso::l4_checksum_offset(proto);
    if seg.count() == 1 && l4_csum {
        if gso::complete_checksum(pkt, vh.csum_start, vh.csum_offset).is_err() {
            return Offloaded::Bad;
        }
        return Offloaded::Plain;
    }
    if !l4_csum || !dont_frag || seg.count() > room {
        return Offloaded::Segment(vh.gso_size);
    }
    Offloaded::Gso(seg, vh)
}

/// An IPv6 super-packet: segmented before deciding, if it is what its virtio header says.
fn segment_v6(pkt: &[u8], vh: &VnetHdr, proto: u8) -> Offloaded {
    match Segmenter::new(pkt, vh.gso_size) {
        Ok(seg) if seg.protocol() == proto => Offloaded::Segment(vh.gso_size),
        _ => Offloaded::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::io::testkit::{gso_hdr, super_packet, tcp_checksum_ok, CLIENT, VIP};
    use crate::wire::testing::tcp_packet;

    #[test]
    fn classify_sorts_offloaded_packets() {
        let (mut p, h) = super_packet(true);
        assert!(matches!(classify(&h, &mut p, 64), Offloaded::Gso(s, _) if s.count() == 3));
        // No room for 3 segments, or no DF: segment first, then decide each.
        assert!(matches!(classify(&h, &mut p, 2), Offloaded::Segment(1400)));
        let (mut q, h2) = super_packet(false);
        assert!(matches!(
            classify(&h2, &mut q, 64),
            Offloaded::Segment(1400)
        ));
        // A UDP offload over a TCP packet, and offsets outside the packet: malformed.
        let mut bad = h;
        bad[1] = gso::GSO_UDP_L4;
        assert!(matches!(classify(&bad, &mut p, 64), Offloaded::Bad));
        // A UDP train (UDP GRO forwarding, TUN_F_USO4): decided once, 4 datagrams; a UDP
        // offload not asked for (UFO) is malformed; a TCP offload over UDP too.
        let mut u = crate::wire::testing::udp_packet(CLIENT, 40000, VIP, 443, 3 * 1200 + 500);
        let partial = gso::partial_checksum(&u, u.len()).unwrap();
        u[26..28].copy_from_slice(&partial.to_be_bytes());
        let uh = gso_hdr(gso::GSO_UDP_L4, 28, 1200, 6);
        assert!(matches!(classify(&uh, &mut u, 64), Offloaded::Gso(s, _)
            if s.count() == 4 && s.protocol() == crate::wire::IpProtocol::UDP));
        let mut ufo = uh;
        ufo[1] = gso::GSO_UDP;
        assert!(matches!(classify(&ufo, &mut u, 64), Offloaded::Bad));
        let mut tso = uh;
        tso[1] = gso::GSO_TCPV4;
        assert!(matches!(classify(&tso, &mut u, 64), Offloaded::Bad));
        // TCP's checksum offset on a UDP train: cut first, then each datagram decided.
        let mut odd = uh;
        odd[8..10].copy_from_slice(&16u16.to_le_bytes());
        assert!(matches!(
            classify(&odd, &mut u, 64),
            Offloaded::Segment(1200)
        ));
        let mut bad = h;
        bad[6..8].copy_from_slice(&5000u16.to_le_bytes());
        assert!(matches!(classify(&bad, &mut p, 64), Offloaded::Bad));
        // An ordinary packet with a partial checksum: completed, then the old path.
        let mut small = tcp_packet(CLIENT, 40000, VIP, 80, 0x18, 100);
        let partial = gso::partial_checksum(&small, small.len()).unwrap();
        small[36..38].copy_from_slice(&partial.to_be_bytes());
        assert!(!tcp_checksum_ok(&small));
        let plain = VnetHdr {
            flags: gso::F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::NONE
        };
        let mut hp = [0u8; VNET_HDR_LEN];
        plain.emit(&mut hp);
        assert!(matches!(classify(&hp, &mut small, 64), Offloaded::Plain));
        assert!(tcp_checksum_ok(&small));
    }
}

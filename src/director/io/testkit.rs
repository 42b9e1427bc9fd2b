//! Packets and verdicts the io tests share.

use std::net::Ipv4Addr;

use crate::director::Encap;
use crate::encap::{build_outer, OuterParams, Tunnel, MAX_OUTER_HEADER};
use crate::wire::checksum;
use crate::wire::gso::{self, Segmenter, VnetHdr, VNET_HDR_LEN};
use crate::wire::testing::tcp_packet;
use crate::wire::Ipv4Packet;

pub(crate) const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
pub(crate) const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

/// A 3-segment super-packet as TUN hands it out: TCP checksum = pseudo-header sum.
pub(crate) fn super_packet(df: bool) -> (Vec<u8>, [u8; VNET_HDR_LEN]) {
    let mut p = tcp_packet(CLIENT, 40000, VIP, 80, 0x18, 3000);
    if !df {
        p[6] = 0;
        p[10..12].copy_from_slice(&[0, 0]);
        let c = !checksum::data(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let partial = gso::partial_checksum(&p, p.len()).unwrap();
    p[36..38].copy_from_slice(&partial.to_be_bytes());
    (p, gso_hdr(gso::GSO_TCPV4, 40, 1400, 16))
}

/// The virtio header of a GSO packet with a partial checksum at `csum_offset` in the L4
/// header (after a 20-byte IPv4 header).
pub(crate) fn gso_hdr(
    gso_type: u8,
    hdr_len: u16,
    gso_size: u16,
    csum_offset: u16,
) -> [u8; VNET_HDR_LEN] {
    let vh = VnetHdr {
        flags: gso::F_NEEDS_CSUM,
        gso_type,
        hdr_len,
        gso_size,
        csum_start: 20,
        csum_offset,
    };
    let mut h = [0u8; VNET_HDR_LEN];
    vh.emit(&mut h);
    h
}

pub(crate) fn tcp_checksum_ok(seg: &[u8]) -> bool {
    let ip = Ipv4Packet::new_checked(seg).unwrap();
    let l4 = &seg[ip.header_len()..];
    checksum::combine(&[
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, l4.len() as u16),
        checksum::data(l4),
    ]) == 0xffff
}

/// The GUE verdict for super-packet `p` (outer header built for its first segment, as the
/// core does), from 10.3.0.11 to 10.3.0.12 with `flow_hash`.
pub(crate) fn gue_encap(p: &[u8], seg: &Segmenter, flow_hash: u32) -> (OuterParams, Encap) {
    let params = OuterParams {
        src: Ipv4Addr::new(10, 3, 0, 11),
        dst: Ipv4Addr::new(10, 3, 0, 12),
        tunnel: Tunnel::Gue {
            port: 6080,
            csum: true,
        },
        flow_hash,
    };
    let mut header = [0u8; MAX_OUTER_HEADER];
    let n = build_outer(&params, &p[..seg.max_segment_len()], &mut header).unwrap();
    let e = Encap {
        dst: params.dst,
        header,
        header_len: n as u8,
        len: p.len(),
        frag_mtu: 0,
        tunnel: params.tunnel,
    };
    (params, e)
}

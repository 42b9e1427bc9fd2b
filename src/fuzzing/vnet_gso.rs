use crate::encap::{build_outer, OuterParams, Tunnel, MAX_OUTER_HEADER};
use crate::wire::checksum;
use crate::wire::gso::{
    complete_checksum, fix_outer, Segmenter, VnetHdr, MAX_SEGMENT_HEADER, VNET_HDR_LEN,
};
use crate::wire::Ipv4Packet;

fn verify_l4(seg: &[u8]) {
    let ip = Ipv4Packet::new_checked(seg).expect("segment must be IPv4");
    assert!(ip.verify_checksum(), "segment IPv4 checksum");
    assert_eq!(ip.total_len() as usize, seg.len());
    let proto = seg[9];
    let l4 = &seg[ip.header_len()..];
    if proto == 17 {
        assert_eq!(
            usize::from(u16::from_be_bytes([l4[4], l4[5]])),
            l4.len(),
            "UDP length"
        );
        assert_ne!(l4[6..8], [0, 0], "a computed UDP checksum is never 0");
    }
    let sum = checksum::combine(&[
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), proto, l4.len() as u16),
        checksum::data(l4),
    ]);
    assert_eq!(sum, 0xffff, "segment L4 checksum");
}

/// A TUN read with offload on: a `virtio_net_hdr` then a packet. Parses the header, checks it
/// against the packet, completes a partial checksum, and cuts a TCP/IPv4 or UDP/IPv4
/// super-packet into segments both ways (headers only, payload in place; and whole). No panic,
/// and every segment is a valid TCP/IPv4 (UDP/IPv4) packet whose checksums verify, whose payloads add up to the
/// super-packet's, and whose zero-copy and copied forms agree. An outer GUE header fixed up
/// for each segment must carry a valid UDP checksum.
pub fn vnet_gso(data: &[u8]) {
    let Ok(vh) = VnetHdr::parse(data) else {
        return;
    };
    let mut pkt = data[VNET_HDR_LEN..].to_vec();
    if vh.check(&pkt).is_err() {
        return;
    }
    if vh.needs_csum() {
        let mut copy = pkt.clone();
        complete_checksum(&mut copy, vh.csum_start, vh.csum_offset).expect("checked offsets");
    }
    // Segment with the header's MSS, and with a small one so many segments come out.
    for mss in [vh.gso_size, 1 + vh.gso_size % 97] {
        let Ok(s) = Segmenter::new(&pkt, mss) else {
            continue;
        };
        assert!(s.count() >= 1);
        let mut whole = vec![0u8; s.max_segment_len()];
        let mut hdr = [0u8; MAX_SEGMENT_HEADER];
        let mut payload_total = 0;
        for i in 0..s.count() {
            let seg = s.segment(&pkt, i, &mut hdr).expect("planned segment");
            let len = s
                .write_segment(&pkt, i, &mut whole)
                .expect("fits max_segment_len");
            assert_eq!(&whole[..seg.header_len], &hdr[..seg.header_len]);
            assert_eq!(&whole[seg.header_len..len], &pkt[seg.payload.clone()]);
            verify_l4(&whole[..len]);
            payload_total += seg.payload.len();
            if i == 0 {
                let params = OuterParams {
                    src: [10, 0, 0, 1].into(),
                    dst: [10, 0, 0, 2].into(),
                    tunnel: Tunnel::Gue {
                        port: 6080,
                        csum: true,
                    },
                    flow_hash: 1,
                };
                let mut outer = [0u8; MAX_OUTER_HEADER];
                if let Ok(n) = build_outer(&params, &pkt[..s.max_segment_len()], &mut outer) {
                    let inner_sum = checksum::combine(&[
                        checksum::data(&hdr[..seg.header_len]),
                        seg.payload_sum,
                    ]);
                    assert!(fix_outer(
                        &mut outer[..n],
                        params.tunnel.outer_tail(),
                        len,
                        inner_sum
                    ));
                    let mut want = [0u8; MAX_OUTER_HEADER];
                    build_outer(&params, &whole[..len], &mut want).expect("segment fits");
                    assert_eq!(outer[..n], want[..n]);
                }
            }
        }
        let total = Ipv4Packet::new_checked(&pkt[..]).map_or(0, |p| p.total_len() as usize);
        assert_eq!(payload_total, total - s.header_len());
        assert!(s.segment(&pkt, s.count(), &mut hdr).is_none());
    }
    pkt.clear();
}

use crate::encap::strip_gue;
use crate::realserver::gro::{records, TcpMerge};
use crate::wire::gso::{complete_checksum, Segmenter};
use crate::wire::{checksum, Ipv4Packet};

fn check(m: &mut TcpMerge, pushed: &mut Vec<Vec<u8>>) {
    let n = m.count();
    let Some((vh, pkt)) = m.take() else {
        assert!(pushed.is_empty());
        return;
    };
    assert_eq!(n, pushed.len());
    if !vh.is_gso() {
        assert_eq!(n, 1);
        assert_eq!(pkt, &pushed[0][..]);
    } else {
        let ip = Ipv4Packet::new_checked(pkt).expect("IPv4");
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len() as usize, pkt.len());
        let mut full = pkt.to_vec();
        complete_checksum(&mut full, vh.csum_start, vh.csum_offset).expect("offsets");
        let l4 = &full[ip.header_len()..];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, l4.len() as u16),
            checksum::data(l4),
        ]);
        assert_eq!(sum, 0xffff, "completed TCP checksum");
        let seg = Segmenter::new(pkt, vh.gso_size).expect("a TCP/IPv4 super-packet");
        assert_eq!(seg.count(), n);
        let mut out = vec![0u8; 65_535];
        for (i, want) in pushed.iter().enumerate() {
            let len = seg.write_segment(pkt, i, &mut out).expect("segment");
            // Everything but the IPv4 ident and so the header checksum (the kernel numbers
            // segments from the first one's ident).
            assert_eq!(len, want.len());
            assert_eq!(out[..4], want[..4]);
            assert_eq!(out[6..10], want[6..10]);
            assert_eq!(out[12..len], want[12..], "segment {i}");
        }
    }
    pushed.clear();
}

/// A `UDP_GRO` train on the agent's GUE socket: 2 bytes of segment size, then the coalesced
/// buffer. Cuts it into records, strips GUE from each and feeds the inner packets through
/// `TcpMerge` as the receive loop does. No panic; a merged super-packet has a valid IPv4
/// header, a partial checksum that completes to a valid TCP checksum, and the kernel's
/// segmentation of it (`Segmenter` with its `gso_size`) gives back exactly the segments
/// that went in.
pub fn gue_gro(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let size = u16::from_be_bytes([data[0], data[1]]);
    let mut m = TcpMerge::new();
    let mut pushed: Vec<Vec<u8>> = Vec::new();
    for rec in records(&data[2..], size) {
        let Ok(r) = strip_gue(rec) else { continue };
        let Some(inner) = rec.get(r) else { continue };
        let whole = |p: &[u8]| {
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            p[..total].to_vec()
        };
        if m.push(inner) {
            pushed.push(whole(inner));
            continue;
        }
        check(&mut m, &mut pushed);
        if m.push(inner) {
            pushed.push(whole(inner));
        }
    }
    check(&mut m, &mut pushed);
}

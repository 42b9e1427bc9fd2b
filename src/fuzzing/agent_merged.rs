use crate::realserver::merged::{classify, Merged};
use crate::wire::gso::{complete_checksum, Segmenter};
use crate::wire::{checksum, Ipv4Packet};

fn tcp_checksum_ok(pkt: &[u8]) -> bool {
    let Ok(ip) = Ipv4Packet::new_checked(pkt) else {
        return false;
    };
    let l4 = &pkt[ip.header_len()..ip.total_len() as usize];
    let sum = checksum::combine(&[
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, l4.len() as u16),
        checksum::data(l4),
    ]);
    sum == 0xffff
}

/// The agent's test for IPIP/GRE packets the real server's GRO merged: 2 bytes of `max_inner`
/// (the longest inner packet one wire packet could carry), then an inner packet as the raw
/// socket would hand it over. No panic; a packet taken for merged TCP gets a virtio header
/// whose partial checksum completes to a valid TCP checksum, and cutting it at its segment
/// size (the `--no-offload` path) gives segments with valid checksums that together carry the
/// whole payload.
pub fn agent_merged(data: &[u8]) {
    let Some((max, inner)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max_inner = usize::from(u16::from_be_bytes(*max));
    let Merged::Tcp(plan) = classify(inner, max_inner) else {
        return;
    };
    assert!(plan.gso_size() > 0);

    // Offload path: virtio header, partial checksum that the kernel completes.
    let mut whole = inner.to_vec();
    if let Some(vh) = plan.vnet_hdr(&mut whole) {
        let mut done = whole.clone();
        complete_checksum(&mut done, vh.csum_start, vh.csum_offset).expect("offsets inside");
        assert!(tcp_checksum_ok(&done), "completed checksum valid");
        if vh.is_gso() {
            assert_eq!(vh.gso_size, plan.gso_size());
        }
    }

    // --no-offload path: segments with full checksums covering the payload.
    if let Ok(cut) = Segmenter::new(inner, plan.gso_size()) {
        let mut out = vec![0u8; 65_535];
        let mut payload = 0usize;
        for k in 0..cut.count() {
            let n = cut.write_segment(inner, k, &mut out).expect("segment fits");
            let seg = &out[..n];
            assert!(tcp_checksum_ok(seg), "segment {k} checksum");
            let ip = Ipv4Packet::new_checked(seg).expect("IPv4");
            let doff = usize::from(seg[ip.header_len() + 12] >> 4) * 4;
            payload += n - ip.header_len() - doff;
        }
        let ip = Ipv4Packet::new_checked(inner).expect("IPv4");
        let doff = usize::from(inner[ip.header_len() + 12] >> 4) * 4;
        assert_eq!(
            payload,
            inner.len() - ip.header_len() - doff,
            "payload covered"
        );
    }
}

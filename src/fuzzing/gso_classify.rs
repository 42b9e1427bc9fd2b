use crate::director::io::rx::{classify, Offloaded};
use crate::director::{Director, DirectorConfig, Encap, Verdict};
use crate::time::Instant;
use crate::wire::checksum;
use crate::wire::gso::{fix_outer, Segmenter, VnetHdr, MAX_SEGMENT_HEADER, VNET_HDR_LEN};

use super::director_packet::{check_bounds, shared};
use super::{emitted, Oracle};

/// A read from an offloading TUN as the worker sorts it (`director::io::rx::classify`): the
/// input is a 10-byte `virtio_net_hdr`, 1 byte of batch room (how many more GSO segments the
/// batch takes), 1 byte whose low bit asks for the packet to be made valid
/// ([`emitted::repair`]; a GSO packet then gets its pseudo-header partial checksum back), then
/// the packet. Whatever it is sorted into must hold, through the director core of
/// [`super::director_packet`] (every tunnel type, NAT, a 576-byte tunnel MTU) and `oracle`:
/// - `Plain`: the (completed) packet is decided like any other, its emitted packets valid;
/// - `Gso`: a DF TCP/UDP super-packet with the L4 partial checksum, within the room; each
///   segment the send path cuts is a valid packet, and with an `Encap` verdict of
///   `handle_gso` each segment behind its outer header fixed up as the send path does
///   (`fix_outer`) is a valid tunnel datagram;
/// - `Segment(mss)`: it cuts into segments, each decided on its own and valid;
/// - `Bad`: nothing else to check.
pub fn gso_classify(data: &[u8], oracle: Oracle) {
    if data.len() < VNET_HDR_LEN + 2 {
        return;
    }
    let hdr: [u8; VNET_HDR_LEN] = data[..VNET_HDR_LEN].try_into().unwrap();
    let room = usize::from(data[VNET_HDR_LEN]);
    let mut pkt = data[VNET_HDR_LEN + 2..].to_vec();
    if data[VNET_HDR_LEN + 1] & 1 != 0 {
        emitted::repair(&mut pkt);
        restore_partial(&hdr, &mut pkt);
    }
    let config = DirectorConfig {
        initial_conns: 64,
        max_conns: 256,
        tunnel_mtu: 576,
        ..DirectorConfig::default()
    };
    let mut d = Director::new(shared(), config);
    let now = Instant::from_secs(1);
    match classify(&hdr, &mut pkt, room) {
        Offloaded::Bad => {}
        Offloaded::Plain => decide(&mut d, now, pkt, oracle),
        Offloaded::Segment(mss) => {
            // The worker cuts these with the header's size before deciding each.
            let Ok(seg) = Segmenter::new(&pkt, mss) else {
                panic!("a super-packet sorted to be segmented does not segment (mss {mss})")
            };
            for i in 0..seg.count() {
                let mut out = vec![0u8; seg.max_segment_len()];
                let len = seg
                    .write_segment(&pkt, i, &mut out)
                    .expect("planned segment");
                out.truncate(len);
                if let Err(e) = oracle(&out, 0) {
                    panic!("segment {i} of {}: {e}", seg.count());
                }
                decide(&mut d, now, out, oracle);
            }
        }
        Offloaded::Gso(seg, vh) => {
            assert!(vh.is_gso() && vh.needs_csum());
            assert!(pkt[6] & 0x40 != 0, "a GSO packet decided whole without DF");
            assert!(
                seg.count() <= room,
                "{} segments, room for {room}",
                seg.count()
            );
            // The segments as they came in, whatever the core decides.
            check_segments(&seg, &pkt, None, oracle);
            let segs = seg.count() as u32;
            let v = d.handle_gso(now, &mut pkt, seg.max_segment_len(), segs);
            check_bounds(&v, &pkt);
            match &v {
                // Written back whole (an ICMP error the core made instead).
                Verdict::Reply { len } => {
                    if let Err(e) = oracle(&pkt[..*len], 0) {
                        panic!("ICMP reply to a super-packet: {e}");
                    }
                }
                // Cut after the verdict from the packet the core edited (MSS clamp, NAT).
                Verdict::Encap(e) => check_segments(&seg, &pkt, Some(e), oracle),
                Verdict::Rewrite { .. } | Verdict::Ether(_) => {
                    check_segments(&seg, &pkt, None, oracle)
                }
                Verdict::Drop(_) => {}
            }
        }
    }
}

/// Every segment `seg` cuts from `pkt` is a valid packet; with `encap`, also behind the outer
/// header fixed up for it as the send path does (`fix_outer`).
fn check_segments(seg: &Segmenter, pkt: &[u8], encap: Option<&Encap>, oracle: Oracle) {
    let mut hdr = [0u8; MAX_SEGMENT_HEADER];
    let mut whole = vec![0u8; seg.max_segment_len()];
    for i in 0..seg.count() {
        let s = seg.segment(pkt, i, &mut hdr).expect("planned segment");
        let len = seg.write_segment(pkt, i, &mut whole).expect("planned");
        if let Err(e) = oracle(&whole[..len], 0) {
            panic!("segment {i} of {}: {e}", seg.count());
        }
        if let Some(e) = encap {
            let mut outer = e.header().to_vec();
            let inner_sum =
                checksum::combine(&[checksum::data(&hdr[..s.header_len]), s.payload_sum]);
            assert!(fix_outer(&mut outer, e.tunnel.outer_tail(), len, inner_sum));
            outer.extend_from_slice(&whole[..len]);
            if let Err(err) = oracle(&outer, e.tunnel.gue_port().unwrap_or(0)) {
                panic!("segment {i} of {} in its tunnel: {err}", seg.count());
            }
        }
    }
}

/// One packet through the core, its emitted packets checked.
fn decide(d: &mut Director, now: Instant, mut pkt: Vec<u8>, oracle: Oracle) {
    let valid = emitted::valid(oracle, &pkt);
    let v = d.handle_packet(now, &mut pkt);
    check_bounds(&v, &pkt);
    emitted::check_verdict(oracle, valid, &v, &pkt);
}

/// After [`emitted::repair`], puts back what a GSO packet's L4 checksum field holds when TUN
/// hands it out: the pseudo-header sum (partial checksum), where the header says.
fn restore_partial(hdr: &[u8; VNET_HDR_LEN], pkt: &mut [u8]) {
    let Ok(vh) = VnetHdr::parse(hdr) else { return };
    if !vh.needs_csum() {
        return;
    }
    let at = usize::from(vh.csum_start) + usize::from(vh.csum_offset);
    if let Some(partial) = crate::wire::gso::partial_checksum(pkt, pkt.len()) {
        if let Some(field) = pkt.get_mut(at..at + 2) {
            field.copy_from_slice(&partial.to_be_bytes());
        }
    }
}

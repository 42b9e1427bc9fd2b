//! GUE super-packets as UDP GSO trains.
//!
//! A GUE super-packet skips the per-segment `sendmmsg`: its segments become back-to-back
//! records (GUE header, the segment's IPv4 + TCP headers, its payload) sent with one
//! `sendmsg` per up to 64 records on a UDP socket with `UDP_SEGMENT`
//! ([`crate::sys::udp_gso`]), so the kernel and veth carry one UDP GSO skb and the agent,
//! with `UDP_GRO`, receives it whole. Each worker has a pool of 16 such sockets on their own
//! source ports, picked by the flow's hash (the port the raw path would use, modulo 16), so a
//! flow keeps its port. If the kernel refuses the first train, the worker logs it once and
//! goes back to the raw path for good; `--no-offload` never uses the pool. A GUE super-packet
//! for a real server reached by frames skips the pool too: each train leaves as one frame on
//! the `PACKET_VNET_HDR` socket with a `GSO_UDP_L4` virtio header (`train_head`), so the
//! kernel does no route lookup for it either; if the kernel refuses the first such frame, the
//! worker logs it and uses the pool from then on.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::Range;

use super::frames::FrameQueue;
use crate::director::io::tunnel_link::{frame_outer, TunnelLink};
use crate::director::stats::BatchHistogram;
use crate::director::Encap;
use crate::encap::{self, gue, IdentSeq, Tunnel};
use crate::sys::udp_gso::{self, UdpGsoPool};
use crate::wire::checksum;
use crate::wire::ethernet::{self, EtherType, EthernetRepr};
use crate::wire::gso::{self, Segmenter, VnetHdr, MAX_SEGMENT_HEADER, VNET_HDR_LEN};

/// Bytes in front of one record's payload in a GUE train: the GUE header, then the segment's
/// own IPv4 and TCP headers.
const RECORD_HEADER: usize = gue::HEADER_LEN + MAX_SEGMENT_HEADER;

/// UDP sockets per worker for GUE trains (each its own source port, picked by flow hash).
const GUE_POOL_SOCKETS: usize = 16;

/// A GSO super-packet the core decided to send over GUE, waiting to go out as UDP trains.
#[derive(Clone)]
pub struct GueTrain {
    /// The super-packet's batch slot.
    pub slot: usize,
    /// The core's verdict (the outer header built for its first segment).
    pub encap: Encap,
    /// How the super-packet is cut.
    pub seg: Segmenter,
}

impl GueTrain {
    /// The outer fields a UDP socket sets itself: the destination (the verdict's address and
    /// GUE port), and, from the header the core built, the source address, TOS, the GUE
    /// header and the pool socket its source port maps to. `None` if the verdict is no GUE.
    fn outer(&self, pool_len: usize) -> Option<(SocketAddrV4, Ipv4Addr, u8, usize, [u8; 4])> {
        let Tunnel::Gue { port: dport, .. } = self.encap.tunnel else {
            return None;
        };
        let h = self.encap.header();
        let ihl = usize::from(*h.first()? & 0x0f) * 4;
        let udp = h.get(ihl..ihl + 8)?;
        let gue: [u8; 4] = h.get(ihl + 8..ihl + 8 + gue::HEADER_LEN)?.try_into().ok()?;
        let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let sock = usize::from(sport.wrapping_sub(encap::GUE_SRC_PORT_BASE)) % pool_len.max(1);
        Some((
            SocketAddrV4::new(self.encap.dst, dport),
            src,
            h[1],
            sock,
            gue,
        ))
    }
}

/// What became of a train handed to [`GueTrains::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainSend {
    /// Every record went out.
    Sent,
    /// A send failed: the super-packet's segments count as send errors.
    Lost,
    /// The kernel refused the first train: GUE super-packets take the raw path from now on,
    /// this one included.
    Refused,
}

/// A worker's means to send GUE trains: the pool of UDP sockets, and whether trains to real
/// servers reached by frames go out whole as frames.
pub struct GueTrains {
    /// UDP sockets for GUE trains; `None` without offload or once the kernel refused one.
    pool: Option<UdpGsoPool>,
    /// Whether a train has gone out (a refusal after that is a send error, not a fallback).
    sent: bool,
    /// Whether GUE trains to framed real servers go out whole as frames (until the kernel
    /// refuses the first one).
    frames: bool,
    /// Whether a GUE train has gone out as a frame (a refusal after that is a send error).
    frames_sent: bool,
    /// Record headers of one train send.
    records: Vec<[u8; RECORD_HEADER]>,
}

impl GueTrains {
    /// Worker `worker`'s trains: with `offload`, a pool of 16 UDP sockets
    /// (none, logged, if they cannot be opened); without, never used.
    pub fn new(worker: usize, offload: bool) -> GueTrains {
        let pool = if offload {
            match UdpGsoPool::new(GUE_POOL_SOCKETS) {
                Ok(p) => Some(p),
                Err(e) => {
                    log::warn!(
                        "tunlb director: worker {worker}: no UDP sockets for GUE trains ({e}); GUE super-packets are segmented"
                    );
                    None
                }
            }
        } else {
            None
        };
        GueTrains {
            pool,
            sent: false,
            frames: true,
            frames_sent: false,
            records: vec![[0u8; RECORD_HEADER]; if offload { udp_gso::MAX_SEGMENTS } else { 0 }],
        }
    }

    /// Whether GUE super-packets go out as trains (the pool is open).
    pub fn enabled(&self) -> bool {
        self.pool.is_some()
    }

    /// Sends the train `t` (super-packet `pkt`) now: as frames to `link` when the real server
    /// is reached by frames (and the kernel has not refused that), else on the pool, each send
    /// counted in `sizes`. The first refusal of each way is logged and that way given up.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        worker: usize,
        frames: &FrameQueue,
        idents: &mut IdentSeq,
        link: Option<TunnelLink>,
        pkt: &[u8],
        t: &GueTrain,
        sizes: &mut BatchHistogram,
    ) -> TrainSend {
        if let (Some(link), true) = (link, self.frames) {
            match send_train_frames(frames, &mut self.records, idents, pkt, t, &link, sizes) {
                Ok(()) => {
                    if !self.frames_sent {
                        self.frames_sent = true;
                        log::info!(
                            "tunlb director: worker {worker}: GUE trains leave whole as Ethernet frames (UDP segmentation offload)"
                        );
                    }
                    return TrainSend::Sent;
                }
                Err(e) if !self.frames_sent => {
                    log::warn!(
                        "tunlb director: worker {worker}: a GUE train as one frame refused ({e}); GUE super-packets go to the UDP sockets"
                    );
                    self.frames = false;
                }
                Err(_) => return TrainSend::Lost,
            }
        }
        let Some(pool) = self.pool.as_mut() else {
            return TrainSend::Refused;
        };
        match send_train(pool, &mut self.records, pkt, t, sizes) {
            Ok(()) => {
                self.sent = true;
                TrainSend::Sent
            }
            Err(e) if !self.sent && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EIO)) => {
                log::warn!(
                    "tunlb director: worker {worker}: UDP_SEGMENT refused ({e}); GUE super-packets are segmented and sent one by one"
                );
                self.pool = None;
                TrainSend::Refused
            }
            Err(_) => TrainSend::Lost,
        }
    }
}

/// How many records of `record` bytes (GUE + headers + one MSS of payload) one UDP GSO send
/// carries: at most [`udp_gso::MAX_SEGMENTS`] and [`udp_gso::MAX_PAYLOAD`] bytes.
fn records_per_send(record: usize) -> usize {
    (udp_gso::MAX_PAYLOAD / record.max(1)).clamp(1, udp_gso::MAX_SEGMENTS)
}

/// Builds the records of segments `range` of the super-packet `pkt`: for each, `gue` then the
/// segment's IPv4 and TCP headers (full checksums, [`Segmenter::segment`]) into the next
/// entry of `hdrs`, and two entries of `parts`: those headers and the payload (left in `pkt`).
/// Sent back to back with `UDP_SEGMENT` = the first record's length, every datagram is one
/// GUE packet. Returns the parts used and the first record's length; `None` if `hdrs` or
/// `parts` are too short or `seg` does not describe `pkt`.
fn gue_records<'a>(
    pkt: &'a [u8],
    seg: &Segmenter,
    gue_hdr: [u8; 4],
    range: Range<usize>,
    hdrs: &'a mut [[u8; RECORD_HEADER]],
    parts: &mut [&'a [u8]],
) -> Option<(usize, usize)> {
    let mut used = 0;
    let mut first = 0;
    let mut hdrs = hdrs.iter_mut();
    for i in range {
        let h = hdrs.next()?;
        h[..gue::HEADER_LEN].copy_from_slice(&gue_hdr);
        let s = seg.segment(pkt, i, &mut h[gue::HEADER_LEN..])?;
        let h: &'a [u8] = h.get(..gue::HEADER_LEN + s.header_len)?;
        let payload = pkt.get(s.payload)?;
        if used == 0 {
            first = h.len() + payload.len();
        }
        *parts.get_mut(used)? = h;
        *parts.get_mut(used + 1)? = payload;
        used += 2;
    }
    Some((used, first))
}

/// Sends every segment of `t` (super-packet `pkt`) as GUE records in UDP GSO trains, as many
/// records per `sendmsg` as [`records_per_send`] allows, each counted in `sizes`. Stops at
/// the first refused send.
fn send_train(
    pool: &mut UdpGsoPool,
    records: &mut [[u8; RECORD_HEADER]],
    pkt: &[u8],
    t: &GueTrain,
    sizes: &mut BatchHistogram,
) -> std::io::Result<()> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let (dst, src, tos, sock, gue_hdr) = t.outer(pool.len()).ok_or_else(bad)?;
    let record = gue::HEADER_LEN + t.seg.max_segment_len();
    let per_send = records_per_send(record).min(records.len());
    let mut i = 0;
    while i < t.seg.count() {
        let mut parts: [&[u8]; udp_gso::MAX_PARTS] = [&[]; udp_gso::MAX_PARTS];
        let end = (i + per_send).min(t.seg.count());
        let (used, first) =
            gue_records(pkt, &t.seg, gue_hdr, i..end, records, &mut parts).ok_or_else(bad)?;
        let size = u16::try_from(first).map_err(|_| bad())?;
        pool.send(sock, dst, src, tos, size, &parts[..used])?;
        sizes.record(end - i);
        i = end;
    }
    Ok(())
}

/// Bytes in front of a GUE train sent whole as one frame: the virtio header, the Ethernet
/// header, the outer IPv4 and UDP headers.
const TRAIN_HEAD: usize = VNET_HDR_LEN + ethernet::HEADER_LEN + 20 + 8;

/// The headers of a GUE train of `records` records (the first `record` bytes long, `len`
/// bytes in all) sent whole to `link` as one frame from the outer header `e.header()`: a
/// virtio header asking for UDP segmentation (`GSO_UDP_L4`, one record per datagram; none for
/// a single record) with the UDP checksum left partial (the pseudo-header sum, completed per
/// datagram), the Ethernet header, and the outer IPv4 header completed for an `AF_PACKET` send
/// ([`frame_outer`], identification `ident`). `None` if the verdict is no GUE, its outer
/// IPv4 header has options, or the train does not fit one UDP datagram.
fn train_head(
    e: &Encap,
    link: &TunnelLink,
    ident: u16,
    record: usize,
    records: usize,
    len: usize,
) -> Option<[u8; TRAIN_HEAD]> {
    let h = e.header();
    if h.first() != Some(&0x45) || !matches!(e.tunnel, Tunnel::Gue { .. }) {
        return None;
    }
    let udp_len = u16::try_from(8 + len).ok()?;
    let total = u16::try_from(20 + 8 + len).ok()?;
    let mut head = [0u8; TRAIN_HEAD];
    let (vnet, rest) = head.split_at_mut(VNET_HDR_LEN);
    let (eth, outer) = rest.split_at_mut(ethernet::HEADER_LEN);
    outer.copy_from_slice(h.get(..28)?);
    outer[2..4].copy_from_slice(&total.to_be_bytes());
    outer[24..26].copy_from_slice(&udp_len.to_be_bytes());
    outer[26..28].copy_from_slice(&[0, 0]);
    if !frame_outer(outer, e.tunnel, link.src, ident) {
        return None;
    }
    let src = Ipv4Addr::new(outer[12], outer[13], outer[14], outer[15]);
    let partial = checksum::pseudo_header_v4(src, e.dst, crate::wire::IpProtocol::UDP, udp_len);
    outer[26..28].copy_from_slice(&partial.to_be_bytes());
    EthernetRepr {
        dst_addr: link.to.mac,
        src_addr: link.src_mac,
        ethertype: EtherType::IPV4,
    }
    .emit(eth)
    .ok()?;
    let segmented = records > 1;
    let vh = VnetHdr {
        flags: gso::F_NEEDS_CSUM,
        gso_type: if segmented {
            gso::GSO_UDP_L4
        } else {
            gso::GSO_NONE
        },
        hdr_len: (ethernet::HEADER_LEN + 28) as u16,
        gso_size: if segmented {
            u16::try_from(record).ok()?
        } else {
            0
        },
        csum_start: (ethernet::HEADER_LEN + 20) as u16,
        csum_offset: 6,
    };
    vh.emit(<&mut [u8; VNET_HDR_LEN]>::try_from(vnet).ok()?);
    Some(head)
}

/// Sends every segment of `t` (super-packet `pkt`) as GUE records in frames to `link` on the
/// `PACKET_VNET_HDR` socket, as many records per frame as [`records_per_send`] allows, each
/// frame one UDP GSO super-packet (`train_head`), its records counted in `sizes` as a
/// `UDP_SEGMENT` send's are. Stops at the first refused send.
fn send_train_frames(
    frames: &FrameQueue,
    records: &mut [[u8; RECORD_HEADER]],
    idents: &mut IdentSeq,
    pkt: &[u8],
    t: &GueTrain,
    link: &TunnelLink,
    sizes: &mut BatchHistogram,
) -> std::io::Result<()> {
    let bad = || std::io::Error::from_raw_os_error(libc::EINVAL);
    let (_, _, _, _, gue_hdr) = t.outer(1).ok_or_else(bad)?;
    let record = gue::HEADER_LEN + t.seg.max_segment_len();
    let per_send = records_per_send(record).min(records.len());
    let mut i = 0;
    while i < t.seg.count() {
        let mut parts: [&[u8]; 1 + udp_gso::MAX_PARTS] = [&[]; 1 + udp_gso::MAX_PARTS];
        let end = (i + per_send).min(t.seg.count());
        let (used, first) =
            gue_records(pkt, &t.seg, gue_hdr, i..end, records, &mut parts[1..]).ok_or_else(bad)?;
        let len = parts[1..=used].iter().map(|p| p.len()).sum();
        let ident = idents.next_ident().get();
        let head = train_head(&t.encap, link, ident, first, end - i, len).ok_or_else(bad)?;
        parts[0] = &head;
        match frames.send_whole(link.to, &parts[..=used]) {
            Some(Ok(_)) => sizes.record(end - i),
            Some(Err(e)) => return Err(e),
            None => return Err(bad()),
        }
        i = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::io::rx::{classify, Offloaded};
    use crate::director::io::testkit::{gue_encap, super_packet, tcp_checksum_ok};
    use crate::wire::Ipv4Packet;

    #[test]
    fn gue_train_records_are_whole_gue_packets_of_one_size() {
        let (mut p, h) = super_packet(true);
        let Offloaded::Gso(seg, _) = classify(&h, &mut p, 64) else {
            panic!("not GSO")
        };
        let (params, encap) = gue_encap(&p, &seg, 16 * 1000 + 5);
        let t = GueTrain {
            slot: 0,
            encap,
            seg,
        };
        let (dst, src, tos, sock, gue_hdr) = t.outer(16).unwrap();
        assert_eq!(dst, SocketAddrV4::new(params.dst, 6080));
        assert_eq!(src, params.src);
        assert_eq!(tos, p[1]);
        assert_eq!(sock, 5, "the flow's source port picks the socket");
        assert_eq!(gue_hdr, [0, 4, 0, 0]);

        let mut hdrs = vec![[0u8; RECORD_HEADER]; 8];
        let mut parts: [&[u8]; 16] = [&[]; 16];
        let (used, first) = gue_records(&p, &seg, gue_hdr, 0..3, &mut hdrs, &mut parts).unwrap();
        assert_eq!(used, 6);
        assert_eq!(first, 4 + 40 + 1400);
        let train: Vec<u8> = parts[..used].concat();
        // What UDP_SEGMENT makes of it: datagrams of `first` bytes, the last shorter.
        let mut payload = Vec::new();
        let records: Vec<&[u8]> = train.chunks(first).collect();
        assert_eq!(records.len(), 3);
        for r in &records {
            assert_eq!(encap::strip_gue(r).unwrap(), 4..r.len());
            let inner = &r[4..];
            assert!(Ipv4Packet::new_checked(inner).unwrap().verify_checksum());
            assert!(tcp_checksum_ok(inner));
            payload.extend_from_slice(&inner[40..]);
        }
        assert_eq!(payload, &p[40..]);
        // Too few header slots: refused, not cut short.
        let mut few = vec![[0u8; RECORD_HEADER]; 2];
        let mut parts2: [&[u8]; 16] = [&[]; 16];
        assert!(gue_records(&p, &seg, gue_hdr, 0..3, &mut few, &mut parts2).is_none());
        assert_eq!(records_per_send(first), 45);
        assert_eq!(records_per_send(100), udp_gso::MAX_SEGMENTS);
    }

    #[test]
    fn a_gue_train_frame_has_virtio_ethernet_and_completable_outer_headers() {
        let (mut p, h) = super_packet(true);
        let Offloaded::Gso(seg, _) = classify(&h, &mut p, 64) else {
            panic!("not GSO")
        };
        let (params, encap) = gue_encap(&p, &seg, 9);
        let link = TunnelLink {
            to: crate::sys::packet::LinkDst {
                ifindex: 2,
                mac: [2, 0, 0, 0, 0, 0x01],
            },
            src_mac: [2, 0, 0, 0, 0, 0x0b],
            src: Ipv4Addr::new(192, 0, 2, 1),
        };
        let t = GueTrain {
            slot: 0,
            encap,
            seg,
        };
        let (_, _, _, _, gue_hdr) = t.outer(1).unwrap();
        let mut hdrs = vec![[0u8; RECORD_HEADER]; 8];
        let mut parts: [&[u8]; 16] = [&[]; 16];
        let (used, first) = gue_records(&p, &t.seg, gue_hdr, 0..3, &mut hdrs, &mut parts).unwrap();
        let train: Vec<u8> = parts[..used].concat();
        let head = train_head(&t.encap, &link, 0x0102, first, 3, train.len()).unwrap();
        // Virtio: needs checksum, UDP segmentation into records, headers 14 + 28 bytes,
        // checksum from the UDP header (offset 34 of the frame), field at 6.
        let record = first as u16;
        let mut want = vec![1, gso::GSO_UDP_L4, 42, 0];
        want.extend_from_slice(&record.to_le_bytes());
        want.extend_from_slice(&[34, 0, 6, 0]);
        // Ethernet: next hop's MAC, the interface's, IPv4.
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0x01, 2, 0, 0, 0, 0, 0x0b, 0x08, 0x00]);
        assert_eq!(&head[..VNET_HDR_LEN + ethernet::HEADER_LEN], &want[..]);
        // The outer IPv4 header: the whole train's length, the ident, the core's source (it
        // was set), a valid checksum; UDP: the train's length, the partial checksum.
        let ip = &head[VNET_HDR_LEN + ethernet::HEADER_LEN..];
        let udp_len = 8 + train.len() as u16;
        assert_eq!(&ip[2..4], &(20 + udp_len).to_be_bytes());
        assert_eq!(&ip[4..6], &[1, 2]);
        assert_eq!(&ip[12..16], &params.src.octets());
        assert_eq!(checksum::data(&ip[..20]), 0xffff);
        assert_eq!(&ip[24..26], &udp_len.to_be_bytes());
        let partial = checksum::pseudo_header_v4(params.src, params.dst, 17, udp_len);
        assert_eq!(&ip[26..28], &partial.to_be_bytes());

        // One record alone: no segmentation, and completing the checksum as the kernel does
        // gives a valid UDP datagram.
        let one = parts[..2].concat();
        let head = train_head(&t.encap, &link, 7, one.len(), 1, one.len()).unwrap();
        let vh = VnetHdr::parse(&head[..VNET_HDR_LEN]).unwrap();
        assert_eq!((vh.gso_type, vh.gso_size), (gso::GSO_NONE, 0));
        let mut pkt = head[VNET_HDR_LEN + ethernet::HEADER_LEN..].to_vec();
        pkt.extend_from_slice(&one);
        gso::complete_checksum(&mut pkt, 20, 6).unwrap();
        let udp = &pkt[20..];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(params.src, params.dst, 17, udp.len() as u16),
            checksum::data(udp),
        ]);
        assert_eq!(sum, 0xffff, "outer UDP checksum");
        assert_eq!(encap::strip_gue(udp.get(8..).unwrap()).unwrap().start, 4);
        // Not UDP (an IPIP header), or a train too long for one datagram: no head.
        let mut ipip = t.encap;
        ipip.tunnel = Tunnel::Ipip;
        assert!(train_head(&ipip, &link, 7, first, 3, train.len()).is_none());
        assert!(train_head(&t.encap, &link, 7, first, 60, 65_510).is_none());
    }
}

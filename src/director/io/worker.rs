//! The worker loop: one thread per TUN queue, owning that queue and one [`Director`] core.
//!
//! A worker reads a batch of packets ([`rx`](super::rx) sorts what an offloading TUN hands
//! out), decides them all under its core's lock (taken once per batch, so the control plane can
//! read counters and the connection table between batches), then hands each verdict to its
//! send path ([`tx`](super::tx)): encapsulated packets to the raw socket with one `sendmmsg`
//! ([`RawQueue`]) or, for TUN-mode real servers reached by frames ([`tunnel_link`]), to the
//! `AF_PACKET` socket with the DR frames ([`FrameQueue`], one `sendmmsg`); GUE super-packets as
//! UDP GSO trains ([`GueTrains`]); ICMP replies and NAT-rewritten packets back into the TUN (one
//! `write` each: a TUN device has no batched write). Nothing is allocated per packet.
//!
//! A super-packet the core decided whole is cut into MSS-sized segments by the send path, each
//! with its own IPv4/TCP headers (and outer header in TUN mode) while the payload stays in the
//! read buffer; a NAT-rewritten super-packet goes back into the TUN whole, behind its virtio
//! header, for the kernel to segment. Super-packets the core cannot take whole are segmented
//! into a spill batch first and decided packet by packet.
//!
//! [`tunnel_link`]: super::tunnel_link

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use super::rx::{classify, Offloaded};
use super::tunnel_link::LinkView;
use super::tx::frames::FrameQueue;
use super::tx::gue_train::{GueTrain, GueTrains, TrainSend};
use super::tx::raw::RawQueue;
use super::tx::MAX_QUEUED_SEGMENTS;
use crate::director::stats::{EncapKind, SendSocket};
use crate::director::{Director, DropReason, Verdict};
use crate::encap::{IdentSeq, Tunnel};
use crate::sys::raw_tx6::RawSender6;
use crate::sys::tun::TunQueue;
use crate::sys::{signal, PacketBatch, PacketMeta};
use crate::time::Clock;
use crate::wire::gso::{self, Segmenter, VNET_HDR_LEN};

/// A packet to write back into the TUN: batch slot, length, and the virtio header to put in
/// front of a GSO packet (`None`: an all-zero one).
type Reply = (usize, usize, Option<[u8; VNET_HDR_LEN]>);

/// What one worker owns besides its input batch.
struct Worker {
    index: usize,
    queue: Arc<TunQueue>,
    core: Arc<Mutex<Director>>,
    clock: Clock,
    idents: IdentSeq,
    replies: Vec<Reply>,
    /// Slots (and MSS) of super-packets to segment before deciding.
    deferred: Vec<(usize, u16)>,
    raw: RawQueue,
    /// Tunnel packets to IPv6 real servers, sent one by one; `None` if the host has no IPv6
    /// (they are then counted as send failures).
    raw6: Option<RawSender6>,
    frames: FrameQueue,
    /// The TUN-mode real servers reached by frames; `None` with `--tunnel-tx raw`.
    links: Option<LinkView>,
    /// TUN-mode packets queued as frames in this batch.
    tunnel_framed: usize,
    /// Whether this worker has logged its first tunnel frames.
    framed_logged: bool,
    /// GUE super-packets as UDP GSO trains.
    trains: GueTrains,
    /// Packets the last TUN read returned, counted (and reset) by the next `process` under the
    /// core's lock; 0 for a batch that does not come from a read (segmented super-packets).
    read_len: usize,
}

impl Worker {
    /// Decides packets `0..batch.len()` (with their virtio headers when the TUN offloads),
    /// sends what is to be sent, and writes replies back into the TUN. Super-packets to be
    /// segmented first are left in `self.deferred`.
    fn process(&mut self, batch: &mut PacketBatch, hdrs: Option<&[[u8; VNET_HDR_LEN]]>) {
        let n = batch.len();
        self.raw.clear();
        self.frames.clear();
        self.replies.clear();
        self.deferred.clear();
        self.tunnel_framed = 0;
        if let Some(v) = &mut self.links {
            v.sync();
        }
        // A handle of our own, so `self` stays free for the send helpers while it is locked.
        let core = self.core.clone();
        let Ok(mut d) = core.lock() else { return };
        d.count_read_batch(std::mem::take(&mut self.read_len));
        let now = self.clock.now();
        // Start every packet's connection-table load before deciding any, so the cache
        // misses of a large table overlap.
        for i in 0..n {
            if let Some(buf) = batch.get(i) {
                d.prefetch(buf);
            }
        }
        for i in 0..n {
            let Some(meta) = batch.meta(i).copied() else {
                continue;
            };
            if meta.truncated {
                d.count_drop(DropReason::Oversized);
                continue;
            }
            let Some(buf) = batch.get_mut(i) else {
                continue;
            };
            let kind = match hdrs.and_then(|h| h.get(i)) {
                None => Offloaded::Plain,
                Some(h) => {
                    let room = self.raw.segment_room().min(self.frames.segment_room());
                    match classify(h, buf, room) {
                        // With tunnel keys every GUE segment needs its own MAC: cut first.
                        // So does an IPv6 underlay (the outer headers are built per packet).
                        Offloaded::Gso(_, vh) if d.cuts_gso() => Offloaded::Segment(vh.gso_size),
                        k => k,
                    }
                }
            };
            let (v, gso) = match kind {
                Offloaded::Plain => (d.handle_packet(now, buf), None),
                Offloaded::Gso(seg, vh) => {
                    let segs = seg.count() as u32;
                    (
                        d.handle_gso(now, buf, seg.max_segment_len(), segs),
                        Some((seg, vh)),
                    )
                }
                Offloaded::Segment(mss) => {
                    d.count_gso_split();
                    self.deferred.push((i, mss));
                    continue;
                }
                Offloaded::Bad => {
                    d.count_drop(DropReason::BadVnetHdr);
                    continue;
                }
            };
            match (v, gso) {
                (Verdict::Encap(e), None) if e.header().first().is_some_and(|b| b >> 4 == 6) => {
                    // An IPv6 outer header (IPv6 real servers): one send each for now.
                    let sent = match (&mut self.raw6, buf.get(..e.len)) {
                        (Some(s), Some(inner)) if e.frag_mtu == 0 => {
                            s.send(e.header(), inner).is_ok()
                        }
                        (Some(s), Some(inner)) => {
                            s.send_fragmented(e.header(), inner, e.frag_mtu).is_ok()
                        }
                        _ => false,
                    };
                    if !sent {
                        d.count_send_errors(e.tunnel.into(), 1);
                    }
                }
                (Verdict::Encap(e), None) => {
                    let queued = match self.links.as_ref().and_then(|v| v.get(e.dst)) {
                        Some(link) => {
                            self.tunnel_framed += 1;
                            self.frames.queue_encap(&mut self.idents, i, buf, &e, link)
                        }
                        None => self.raw.queue(&mut self.idents, i, buf, &e),
                    };
                    if !queued {
                        d.count_send_errors(e.tunnel.into(), 1);
                    }
                }
                (Verdict::Encap(e), Some((seg, _)))
                    if self.trains.enabled()
                        && e.frag_mtu == 0
                        && matches!(e.tunnel, Tunnel::Gue { .. }) =>
                {
                    let t = GueTrain {
                        slot: i,
                        encap: e,
                        seg,
                    };
                    self.send_train_now(batch, &t, &mut d);
                }
                (Verdict::Encap(e), Some((seg, _))) => {
                    let queued = match self.links.as_ref().and_then(|v| v.get(e.dst)) {
                        Some(link) => {
                            self.tunnel_framed += 1;
                            let idents = &mut self.idents;
                            self.frames.queue_gso_encap(idents, i, buf, &e, &seg, link)
                        }
                        None => self.raw.queue_gso(i, buf, &e, &seg),
                    };
                    if !queued {
                        d.count_send_errors(e.tunnel.into(), u64::from(seg.count() as u32));
                    }
                }
                (Verdict::Ether(e), None) => {
                    if !self.frames.queue(&mut self.idents, i, buf, &e) {
                        d.count_send_errors(EncapKind::Dr, 1);
                    }
                }
                (Verdict::Ether(e), Some((seg, vh))) => {
                    if !self.frames.queue_gso(i, buf, &e, &seg, &vh) {
                        d.count_send_errors(EncapKind::Dr, u64::from(seg.count() as u32));
                    }
                }
                (Verdict::Rewrite { len }, Some((_, vh))) => {
                    // NAT rewrote addresses: the partial checksum (a pseudo-header sum) must
                    // follow them; the kernel completes it per segment. `classify` checked that
                    // the field lies inside the TCP or UDP header.
                    let at = usize::from(vh.csum_start) + usize::from(vh.csum_offset);
                    if let (Some(sum), Some(field)) =
                        (gso::partial_checksum(buf, len), buf.get_mut(at..at + 2))
                    {
                        field.copy_from_slice(&sum.to_be_bytes());
                    }
                    let mut h = [0u8; VNET_HDR_LEN];
                    vh.emit(&mut h);
                    self.replies.push((i, len, Some(h)));
                }
                (Verdict::Reply { len } | Verdict::Rewrite { len }, _) => {
                    self.replies.push((i, len, None))
                }
                (Verdict::Drop(_), _) => {}
            }
        }
        d.handle_timeout(now);
        if !self.raw.is_empty() {
            self.flush_raw(batch, &mut d);
        }
        if !self.frames.is_empty() {
            self.flush_frames(batch, &mut d);
        }
        d.count_tun_writes(self.replies.len());
        drop(d);
        for &(slot, len, hdr) in &self.replies {
            if let Some(pkt) = batch.get(slot).and_then(|p| p.get(..len)) {
                let _ = match hdr {
                    Some(h) => self.queue.send_vnet(&h, pkt),
                    None => self.queue.send(pkt),
                };
            }
        }
    }

    /// Sends the queued frames (DR and TUN mode) in one batch and empties the queue.
    fn flush_frames(&mut self, batch: &PacketBatch, d: &mut Director) {
        let failed = self
            .frames
            .flush(batch, d.send_batch_sizes(SendSocket::Packet));
        for (kind, n) in failed.by_kind() {
            d.count_send_errors(kind, n);
        }
        self.note_tunnel_frames(failed.total());
        self.frames.clear();
        self.tunnel_framed = 0;
    }

    /// After a frame flush: remembers the interfaces it found gone (their TUN-mode servers take
    /// the raw socket until the resolver's next refresh) and logs the first tunnel frames sent.
    fn note_tunnel_frames(&mut self, failed: u64) {
        let Some(view) = &mut self.links else { return };
        for &ifindex in self.frames.gone_interfaces() {
            if view.mark_gone(ifindex) {
                log::warn!(
                    "tunlb director: worker {}: interface {ifindex} is gone; its TUN real servers take the raw socket until the next refresh",
                    self.index
                );
            }
        }
        if self.tunnel_framed > 0 && failed == 0 && !self.framed_logged {
            self.framed_logged = true;
            log::info!(
                "tunlb director: worker {}: tunnel packets sent as Ethernet frames ({} in the first batch)",
                self.index, self.tunnel_framed
            );
        }
    }

    /// Sends the datagrams queued for the raw socket in one batch and empties the queue.
    fn flush_raw(&mut self, batch: &PacketBatch, d: &mut Director) {
        let failed = self.raw.flush(batch, d.send_batch_sizes(SendSocket::Raw));
        for (kind, n) in failed.by_kind() {
            d.count_send_errors(kind, n);
        }
    }

    /// Sends a GUE super-packet as UDP GSO trains, right away: what the raw socket and the
    /// frame queue hold from earlier packets of the batch goes first, so a flow's packets keep
    /// their order. If
    /// the kernel refuses the very first train (no `UDP_SEGMENT`, or a path MTU below the
    /// records), the pool is dropped with a log line and this and every later super-packet
    /// takes the raw path (segments queued in `segs`).
    fn send_train_now(&mut self, batch: &PacketBatch, t: &GueTrain, d: &mut Director) {
        let Some(pkt) = batch.get(t.slot) else { return };
        if self.trains.enabled() {
            if !self.raw.is_empty() {
                self.flush_raw(batch, d);
            }
            if !self.frames.is_empty() {
                self.flush_frames(batch, d);
            }
            let link = self
                .links
                .as_ref()
                .and_then(|v| v.get(t.encap.dst))
                .copied();
            let sizes = d.send_batch_sizes(SendSocket::UdpGso);
            let (frames, idents) = (&self.frames, &mut self.idents);
            match self
                .trains
                .send(self.index, frames, idents, link, pkt, t, sizes)
            {
                TrainSend::Sent => return,
                TrainSend::Lost => {
                    d.count_send_errors(EncapKind::Gue, t.seg.count() as u64);
                    return;
                }
                TrainSend::Refused => {}
            }
        }
        if !self.raw.queue_gso(t.slot, pkt, &t.encap, &t.seg) {
            d.count_send_errors(EncapKind::Gue, t.seg.count() as u64);
        }
    }

    /// Cuts the deferred super-packets of `batch` into whole packets in `spill` (as many at a
    /// time as it holds) and decides and sends those like packets read from the TUN.
    fn process_deferred(&mut self, batch: &PacketBatch, spill: &mut PacketBatch) {
        let deferred = std::mem::take(&mut self.deferred);
        for &(slot, mss) in &deferred {
            let Some(pkt) = batch.get(slot) else { continue };
            let Ok(seg) = Segmenter::new(pkt, mss) else {
                continue;
            };
            let mut k = 0;
            while k < seg.count() {
                spill.clear();
                let mut m = 0;
                while m < spill.capacity() && k < seg.count() {
                    let Some(out) = spill.slot_mut(m) else { break };
                    let (len, truncated) = match seg.write_segment(pkt, k, out) {
                        Some(len) => (len, false),
                        None => (0, true),
                    };
                    spill.set_meta(
                        m,
                        PacketMeta {
                            len,
                            src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                            truncated,
                        },
                    );
                    m += 1;
                    k += 1;
                }
                spill.set_filled(m);
                self.process(spill, None);
            }
        }
        // Hand the (empty) vector back so its capacity is kept.
        self.deferred = deferred;
        self.deferred.clear();
    }
}

/// Reads per batch when the TUN offloads: each may be a 64 KB super-packet.
const OFFLOAD_BATCH: usize = 16;
/// Slot size when the TUN offloads: the largest IPv4 packet.
const OFFLOAD_SLOT: usize = 65535;

/// What a worker thread starts with.
pub struct WorkerStart {
    /// Its number (for IP identifications of its own, and the log).
    pub index: usize,
    /// How many workers there are.
    pub workers: usize,
    /// Its TUN queue.
    pub queue: Arc<TunQueue>,
    /// Its core.
    pub core: Arc<Mutex<Director>>,
    /// The data path's clock.
    pub clock: Clock,
    /// Packets read per batch (`--batch`).
    pub batch_size: usize,
    /// The TUN-mode real servers reached by frames; `None` with `--tunnel-tx raw`.
    pub links: Option<LinkView>,
}

/// The worker loop: reads batches from its TUN queue and processes them until `stop` is set
/// (it looks every 100 ms). A socket it cannot open stops the director (SIGTERM to itself).
pub fn run(start: WorkerStart, stop: &AtomicBool) {
    let WorkerStart {
        index,
        workers,
        queue,
        core,
        clock,
        batch_size,
        links,
    } = start;
    let offload = queue.vnet_hdr();
    let mut batch = if offload {
        PacketBatch::new(batch_size.min(OFFLOAD_BATCH), OFFLOAD_SLOT)
    } else {
        PacketBatch::new(batch_size, 2048)
    };
    let mut hdrs = vec![[0u8; VNET_HDR_LEN]; batch.capacity()];
    // Super-packets segmented before deciding land here (2048-byte slots, as without offload).
    let mut spill = PacketBatch::new(if offload { batch_size } else { 1 }, 2048);
    let segments = if offload { MAX_QUEUED_SEGMENTS } else { 0 };
    let raw = match RawQueue::new(batch_size, segments) {
        Ok(r) => r,
        Err(e) => {
            log::error!("tunlb director: worker {index}: cannot open raw socket: {e}");
            signal::notify(signal::Signal::Terminate);
            return;
        }
    };
    let raw6 = RawSender6::new()
        .inspect_err(|e| {
            log::warn!("tunlb director: worker {index}: no IPv6 raw socket ({e}): IPv6 real servers cannot be reached");
        })
        .ok();
    let frames = match FrameQueue::new(batch_size) {
        Ok(f) => f,
        Err(e) => {
            log::error!("tunlb director: worker {index}: cannot open the DR packet socket: {e}");
            signal::notify(signal::Signal::Terminate);
            return;
        }
    };
    let mut w = Worker {
        index,
        queue,
        core,
        clock,
        idents: IdentSeq::new(index, workers),
        replies: Vec::with_capacity(batch_size),
        deferred: Vec::with_capacity(batch.capacity()),
        raw,
        raw6,
        frames,
        links,
        tunnel_framed: 0,
        framed_logged: false,
        trains: GueTrains::new(index, offload),
        read_len: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        let timeout = Some(StdDuration::from_millis(100));
        let read = if offload {
            w.queue.recv_batch_vnet(&mut batch, &mut hdrs, timeout)
        } else {
            w.queue.recv_batch(&mut batch, timeout)
        };
        if let Err(e) = read {
            log::warn!("tunlb director: worker {}: TUN read failed: {e}", w.index);
            std::thread::sleep(StdDuration::from_millis(10));
            continue;
        }
        w.read_len = batch.len();
        w.process(&mut batch, offload.then_some(&hdrs[..]));
        if !w.deferred.is_empty() {
            w.process_deferred(&batch, &mut spill);
        }
    }
}

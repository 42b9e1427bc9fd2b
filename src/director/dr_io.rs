//! DR mode's IO, around the sans-IO decision in [`dr`](super::dr):
//!
//! - [`FrameQueue`]: per worker, collects the [`Verdict::Ether`](super::Verdict::Ether) packets
//!   of one batch (split into IPv4 fragments when the core asked for it) and sends them with one
//!   `sendmmsg` on an `AF_PACKET` socket ([`FrameSender`]).
//! - [`spawn_resolver`]: one thread that keeps every DR real server's
//!   [`NeighSlot`](super::dr::NeighSlot) filled from the kernel's route and neighbour tables.
//!   It re-reads them every second, at once when the table of services changes, and within
//!   milliseconds of a neighbour notification about a real server. A server without a usable
//!   entry (unknown, failed) or with a stale one is handed to the kernel to resolve
//!   ([`Netlink::resolve`], at most once a second per server): the kernel sends the ARP
//!   requests, and the answer arrives as a notification.
//!   With `--tunnel-tx frames` it does the same for the next hops of the TUN-mode real
//!   servers and publishes their frame paths ([`tunnel_link`](super::tunnel_link)); the queue
//!   then carries their encapsulated packets too ([`FrameQueue::queue_encap`]).
//! - [`check_new_dr_servers`]: the control plane's check when DR real servers are added: each
//!   must be on a directly connected network (the kernel routes it without a gateway), since a
//!   frame cannot cross a router.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::dr::NeighEntry;
use super::service::{Forward, ServiceSet};
use super::stats::{BatchHistogram, EncapKind};
use super::table::Dest;
use super::tunnel_link::{decide, frame_outer, LinkTable, Path, TunnelLink, TunnelLinks};
use super::{Encap, Ether, Shared, Snapshot, MAX_FRAGMENTS};
use crate::encap::{self, IdentSeq, MAX_OUTER_HEADER};
use crate::sys::neigh::{NeighEvents, Neighbour, Netlink, Route};
use crate::sys::packet::{FrameSender, LinkDst};
use crate::sys::raw::MsgError;
use crate::sys::{poll_readable, PacketBatch};
use crate::wire::gso::{Segmenter, VnetHdr, MAX_SEGMENT_HEADER, VNET_HDR_LEN};

/// Prefix of the resolver's log lines.
const LOG: &str = "tunlb director:";

/// How often the resolver re-reads routes and the neighbour table without being woken.
const REFRESH: Duration = Duration::from_secs(1);
/// How often the resolver looks at the published table for new real servers.
const WAKE: Duration = Duration::from_millis(100);
/// The least time between two resolution requests for one real server.
const ASK_AGAIN: Duration = Duration::from_secs(1);

/// One frame waiting for the batch send: `header` then bytes `range` of the packet in batch
/// slot `slot` (`header` is empty for a whole packet, a fragment's IPv4 header otherwise).
#[derive(Clone)]
struct Framed {
    slot: usize,
    to: LinkDst,
    /// The `type` its send failure counts under.
    kind: EncapKind,
    header: [u8; MAX_OUTER_HEADER],
    header_len: u8,
    range: Range<usize>,
}

/// One segment of a GSO super-packet waiting for the batch send: its IPv4 + TCP headers (after
/// an outer header in TUN mode), then bytes `payload` of the super-packet in batch slot `slot`.
#[derive(Clone)]
struct SegFrame {
    slot: usize,
    to: LinkDst,
    /// The `type` its send failure counts under.
    kind: EncapKind,
    header: [u8; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
    header_len: u8,
    payload: Range<usize>,
}

impl std::fmt::Debug for SegFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegFrame")
            .field("slot", &self.slot)
            .field("to", &self.to)
            .field("payload", &self.payload)
            .finish()
    }
}

/// How many GSO segments one batch's [`FrameQueue`] holds (allocated once).
pub const MAX_QUEUED_SEGMENTS: usize = 1024;

/// A whole GSO super-packet waiting for the batch send on the `PACKET_VNET_HDR` socket: the
/// virtio header, then bytes `..len` of the packet in batch slot `slot`.
#[derive(Clone, Debug)]
struct GsoFrame {
    slot: usize,
    to: LinkDst,
    /// The virtio header, then the Ethernet header.
    head: [u8; VNET_HDR_LEN + ETH_HLEN],
    len: usize,
    segs: u64,
}

/// Length of an Ethernet header (destination, source, EtherType).
const ETH_HLEN: usize = 14;

/// The most gone interfaces one flush reports.
const MAX_GONE: usize = 8;

/// A worker's DR frames of one batch, and the sockets they leave by.
#[derive(Debug)]
pub struct FrameQueue {
    sender: FrameSender,
    /// With `PACKET_VNET_HDR`: super-packets go out whole and the kernel segments them (or a
    /// veth passes them on whole). `None` if the kernel refused the option: then they are
    /// segmented here.
    gso_sender: Option<FrameSender>,
    pending: Vec<Framed>,
    segs: Vec<SegFrame>,
    gso: Vec<GsoFrame>,
    /// Source MACs of the interfaces super-packets went out of (looked up once each).
    macs: Vec<(u32, [u8; 6])>,
    /// Interfaces the last flush found gone (`ENXIO`, `ENODEV`, `ENETDOWN`).
    gone: Vec<u32>,
}

impl std::fmt::Debug for Framed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framed")
            .field("slot", &self.slot)
            .field("to", &self.to)
            .field("range", &self.range)
            .finish()
    }
}

impl FrameQueue {
    /// Opens the packet socket; room for `batch_size` packets of up to [`MAX_FRAGMENTS`]
    /// fragments each, so queueing never allocates.
    pub fn new(batch_size: usize) -> io::Result<FrameQueue> {
        Ok(FrameQueue {
            sender: FrameSender::new(batch_size)?,
            gso_sender: FrameSender::with_vnet_hdr(batch_size).ok(),
            pending: Vec::with_capacity(batch_size.max(1) * MAX_FRAGMENTS),
            segs: Vec::with_capacity(MAX_QUEUED_SEGMENTS),
            gso: Vec::with_capacity(batch_size.max(1)),
            macs: Vec::with_capacity(8),
            gone: Vec::with_capacity(MAX_GONE),
        })
    }

    /// Forgets the previous batch's frames.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.segs.clear();
        self.gso.clear();
        self.gone.clear();
    }

    /// The interfaces a frame of the last [`flush`](Self::flush) could not leave by because
    /// they are gone or down (at most a few).
    pub fn gone_interfaces(&self) -> &[u32] {
        &self.gone
    }

    /// Queues the TUN-mode packet `pkt` (batch slot `slot`) that the core encapsulated as `e`,
    /// as frames to `link`: the outer header completed by [`frame_outer`], then the inner
    /// packet, whole or in fragments as the core decided. Returns false, queueing nothing, if
    /// that is impossible.
    pub fn queue_encap(
        &mut self,
        idents: &mut IdentSeq,
        slot: usize,
        pkt: &[u8],
        e: &Encap,
        link: &TunnelLink,
    ) -> bool {
        if e.len > pkt.len() {
            return false;
        }
        let kind = EncapKind::of_outer(e.header());
        let mut header = e.header;
        let hl = usize::from(e.header_len).min(MAX_OUTER_HEADER);
        let ident = if e.frag_mtu == 0 {
            idents.next_ident().get()
        } else {
            0
        };
        if !frame_outer(&mut header[..hl], link.src, ident) {
            return false;
        }
        if e.frag_mtu == 0 {
            self.pending.push(Framed {
                slot,
                to: link.to,
                kind,
                header,
                header_len: hl as u8,
                range: 0..e.len,
            });
            return true;
        }
        match encap::fragment(&header[..hl], e.len, e.frag_mtu, idents.next_ident()) {
            // `pending` has room for MAX_FRAGMENTS per packet of the batch: no reallocation.
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {
                self.pending.extend(frags.map(|f| Framed {
                    slot,
                    to: link.to,
                    kind,
                    header: f.header,
                    header_len: f.header_len as u8,
                    range: f.inner,
                }));
                true
            }
            _ => false,
        }
    }

    /// Sends one frame right away on the `PACKET_VNET_HDR` socket: the concatenation of
    /// `parts`, the first starting with the virtio and Ethernet headers. `None` if there is no
    /// such socket.
    pub fn send_whole(&self, to: LinkDst, parts: &[&[u8]]) -> Option<io::Result<usize>> {
        Some(self.gso_sender.as_ref()?.send_parts(to, parts))
    }

    /// How many GSO segments are queued (a mark for
    /// [`truncate_segments`](Self::truncate_segments)).
    pub fn segments_len(&self) -> usize {
        self.segs.len()
    }

    /// Drops the segments queued after mark `len`.
    pub fn truncate_segments(&mut self, len: usize) {
        self.segs.truncate(len);
    }

    /// Queues one segment frame to `to`: `header` (at most an outer header and a segment's
    /// IPv4 + TCP headers), then bytes `payload` of the packet in batch slot `slot`. Returns
    /// false, queueing nothing, if there is no [`segment_room`](Self::segment_room) or the
    /// header is too long.
    pub fn push_segment(
        &mut self,
        slot: usize,
        to: LinkDst,
        kind: EncapKind,
        header: &[u8],
        payload: Range<usize>,
    ) -> bool {
        let mut f = SegFrame {
            slot,
            to,
            kind,
            header: [0; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
            header_len: header.len() as u8,
            payload,
        };
        let Some(dst) = f.header.get_mut(..header.len()) else {
            return false;
        };
        if self.segment_room() == 0 {
            return false;
        }
        dst.copy_from_slice(header);
        self.segs.push(f);
        true
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.segs.is_empty() && self.gso.is_empty()
    }

    /// How many more GSO segments [`queue_gso`](Self::queue_gso) takes without allocating.
    pub fn segment_room(&self) -> usize {
        self.segs.capacity() - self.segs.len()
    }

    /// Queues the TCP/IPv4 super-packet `pkt` (batch slot `slot`, read behind `vh`, its
    /// partial checksum untouched): whole behind a virtio header when the `PACKET_VNET_HDR`
    /// socket is there, else as `seg` cuts it, one frame per segment, each with its own headers
    /// and its payload left in the slot. Returns false, queueing nothing, if it does not fit
    /// [`segment_room`](Self::segment_room), the core asked for fragments, or `seg` does not
    /// describe `pkt`.
    pub fn queue_gso(
        &mut self,
        slot: usize,
        pkt: &[u8],
        e: &Ether,
        seg: &Segmenter,
        vh: &VnetHdr,
    ) -> bool {
        if seg.count() > self.segment_room() || e.frag_mtu != 0 || e.len > pkt.len() {
            return false;
        }
        let to = LinkDst {
            ifindex: e.ifindex,
            mac: e.dst_mac,
        };
        if let Some(src) = self.gso_source_mac(e.ifindex) {
            let mut head = [0u8; VNET_HDR_LEN + ETH_HLEN];
            let (vnet, eth) = head.split_at_mut(VNET_HDR_LEN);
            if let Ok(vnet) = <&mut [u8; VNET_HDR_LEN]>::try_from(vnet) {
                VnetHdr {
                    hdr_len: (ETH_HLEN + seg.header_len()) as u16,
                    csum_start: vh.csum_start + ETH_HLEN as u16,
                    ..*vh
                }
                .emit(vnet);
            }
            eth[..6].copy_from_slice(&e.dst_mac);
            eth[6..12].copy_from_slice(&src);
            eth[12..14].copy_from_slice(&(libc::ETH_P_IP as u16).to_be_bytes());
            self.gso.push(GsoFrame {
                slot,
                to,
                head,
                len: e.len,
                segs: seg.count() as u64,
            });
            return true;
        }
        let start = self.segs.len();
        for i in 0..seg.count() {
            let mut f = SegFrame {
                slot,
                to,
                kind: EncapKind::Dr,
                header: [0; MAX_OUTER_HEADER + MAX_SEGMENT_HEADER],
                header_len: 0,
                payload: 0..0,
            };
            let Some(s) = seg.segment(pkt, i, &mut f.header) else {
                self.segs.truncate(start);
                return false;
            };
            f.header_len = s.header_len as u8;
            f.payload = s.payload;
            self.segs.push(f);
        }
        true
    }

    /// Queues the packet `pkt` (batch slot `slot`) as the core decided: whole, or as fragments
    /// identified by the packet's own IP ident (or the next of `idents` when it is 0). Returns
    /// false, queueing nothing, if that is impossible (the core checked it is not).
    ///
    /// Every queued range lies within `pkt`, so [`flush`](Self::flush) finds all of them.
    pub fn queue(&mut self, idents: &mut IdentSeq, slot: usize, pkt: &[u8], e: &Ether) -> bool {
        if e.len > pkt.len() || e.len < 20 {
            return false;
        }
        let to = LinkDst {
            ifindex: e.ifindex,
            mac: e.dst_mac,
        };
        if e.frag_mtu == 0 {
            self.pending.push(Framed {
                slot,
                to,
                kind: EncapKind::Dr,
                header: [0; MAX_OUTER_HEADER],
                header_len: 0,
                range: 0..e.len,
            });
            return true;
        }
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let ident = NonZeroU16::new(u16::from_be_bytes([pkt[4], pkt[5]]))
            .unwrap_or_else(|| idents.next_ident());
        let Some(header) = pkt.get(..ihl) else {
            return false;
        };
        match encap::fragment(header, e.len - ihl, e.frag_mtu, ident) {
            // `pending` has room for MAX_FRAGMENTS per packet of the batch: no reallocation.
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {
                self.pending.extend(frags.map(|f| Framed {
                    slot,
                    to,
                    kind: EncapKind::Dr,
                    header: f.header,
                    header_len: f.header_len as u8,
                    range: ihl + f.inner.start..ihl + f.inner.end,
                }));
                true
            }
            _ => false,
        }
    }

    /// Sends the queued frames with `sendmmsg` (one batch per socket, each counted in
    /// `sizes`); returns how many packets the kernel refused (in whole or in one of their
    /// fragments), by the `type` they count under. GSO segments count one each.
    pub fn flush(&mut self, batch: &PacketBatch, sizes: &mut BatchHistogram) -> SendFailures {
        let mut failed = SendFailures::default();
        failed.add(EncapKind::Dr, self.flush_gso(batch, sizes));
        if self.pending.is_empty() && self.segs.is_empty() {
            return failed;
        }
        // `queue` and `queue_gso` checked every range, so no item is skipped and the failure
        // positions are positions in `pending` followed by `segs`.
        let items = self.pending.iter().filter_map(|f| {
            let bytes = batch.get(f.slot)?.get(f.range.clone())?;
            Some((f.to, &f.header[..usize::from(f.header_len)], bytes))
        });
        let segs = self.segs.iter().filter_map(|f| {
            let bytes = batch.get(f.slot)?.get(f.payload.clone())?;
            Some((f.to, &f.header[..usize::from(f.header_len)], bytes))
        });
        let report = self.sender.send_batch(items.chain(segs));
        sizes.record(report.sent + report.failed);
        if report.failed == 0 {
            return failed;
        }
        let failures = self.sender.failures();
        for f in failures {
            if !matches!(f.errno, libc::ENXIO | libc::ENODEV | libc::ENETDOWN) {
                continue;
            }
            let to = match self.pending.get(f.index) {
                Some(p) => Some(p.to),
                None => self.segs.get(f.index - self.pending.len()).map(|s| s.to),
            };
            if let Some(to) = to {
                if !self.gone.contains(&to.ifindex) && self.gone.len() < MAX_GONE {
                    self.gone.push(to.ifindex);
                }
            }
        }
        let whole = failures.partition_point(|f| f.index < self.pending.len());
        failed_packets(&self.pending, &failures[..whole], &mut failed);
        for f in &failures[whole..] {
            if let Some(s) = self.segs.get(f.index - self.pending.len()) {
                failed.add(s.kind, 1);
            }
        }
        failed
    }

    /// The source MAC for a super-packet out of `ifindex`, if it can go whole: the
    /// `PACKET_VNET_HDR` socket exists, there is room, and the interface's address is known
    /// (looked up once per interface; never more than `macs` holds, so no allocation).
    fn gso_source_mac(&mut self, ifindex: u32) -> Option<[u8; 6]> {
        let sender = self.gso_sender.as_ref()?;
        if self.gso.len() >= self.gso.capacity() {
            return None;
        }
        if let Some((_, mac)) = self.macs.iter().find(|(i, _)| *i == ifindex) {
            return Some(*mac);
        }
        let mac = sender.interface_mac(ifindex).ok()?;
        if self.macs.len() == self.macs.capacity() {
            self.macs.clear();
        }
        self.macs.push((ifindex, mac));
        Some(mac)
    }

    /// Sends the queued super-packets on the `PACKET_VNET_HDR` socket (counted in `sizes`);
    /// returns how many segments the kernel refused.
    fn flush_gso(&mut self, batch: &PacketBatch, sizes: &mut BatchHistogram) -> u64 {
        let (Some(sender), false) = (self.gso_sender.as_mut(), self.gso.is_empty()) else {
            return 0;
        };
        let items = self.gso.iter().filter_map(|f| {
            let bytes = batch.get(f.slot)?.get(..f.len)?;
            Some((f.to, &f.head[..], bytes))
        });
        let report = sender.send_batch(items);
        sizes.record(report.sent + report.failed);
        if report.failed == 0 {
            return 0;
        }
        let gso = &self.gso;
        sender
            .failures()
            .iter()
            .filter_map(|f| gso.get(f.index).map(|g| g.segs))
            .sum()
    }
}

/// The packets the failed sends (positions in `queued`, ascending) belonged to, one queued
/// item of each: the fragments of one packet (same batch `slot`) sit side by side, and one
/// lost fragment loses the packet. Shared by the frame queue and the raw-socket queue.
pub(super) fn lost_packets<'a, T>(
    queued: &'a [T],
    failures: &'a [MsgError],
    slot: impl Fn(&T) -> usize + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    let mut last = None;
    failures.iter().filter_map(move |f| {
        let item = queued.get(f.index)?;
        (last.replace(slot(item)) != Some(slot(item))).then_some(item)
    })
}

/// Adds to `out` how many packets the failed frames (positions in `pending`) belonged to,
/// by their `type`.
fn failed_packets(pending: &[Framed], failures: &[MsgError], out: &mut SendFailures) {
    for p in lost_packets(pending, failures, |p| p.slot) {
        out.add(p.kind, 1);
    }
}

/// Packets a [`FrameQueue::flush`] lost, by the `type` label of `tunlb_encap_errors_total`
/// (DR frames and TUN-mode frames share the queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendFailures([u64; EncapKind::ALL.len()]);

impl SendFailures {
    /// Counts `n` more lost packets of `kind`.
    pub fn add(&mut self, kind: EncapKind, n: u64) {
        self.0[kind as usize] += n;
    }

    /// Lost packets of every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The kinds that lost any, with their counts.
    pub fn by_kind(&self) -> impl Iterator<Item = (EncapKind, u64)> + '_ {
        EncapKind::ALL
            .into_iter()
            .zip(self.0)
            .filter(|&(_, n)| n > 0)
    }
}

/// Why a real server cannot be reached in DR mode, from the kernel's route to it; `Ok` gives
/// the interface it is on.
pub fn on_link(rip: Ipv4Addr, route: io::Result<Route>) -> Result<u32, String> {
    let route = route.map_err(|e| {
        format!(
            "real server {rip}: no route to it ({e}): DR needs it on a directly connected network"
        )
    })?;
    if route.is_local() {
        return Err(format!(
            "real server {rip} is an address of the director itself: DR needs another host on the LAN"
        ));
    }
    if !route.is_unicast() || route.ifindex == 0 {
        return Err(format!(
            "real server {rip} is not reachable as a host on a LAN (route type {})",
            route.kind
        ));
    }
    if route.gateway.is_some() {
        return Err(format!(
            "real server {rip} is not on a directly connected network: DR cannot cross a router (use -i)"
        ));
    }
    Ok(route.ifindex)
}

/// The control plane's check before publishing `new`: every DR real server that `old` did not
/// have as one must be on a directly connected network (see [`on_link`]). The kernel is asked
/// to resolve the MAC of each accepted one right away, so it is usually known before the first
/// packet.
pub fn check_new_dr_servers(old: &ServiceSet, new: &ServiceSet) -> Result<(), String> {
    let existing: HashSet<_> = old
        .services
        .iter()
        .flat_map(|s| s.dests.iter().map(move |d| (s.key, d.addr, d.forward)))
        .filter(|(_, _, f)| *f == Forward::Dr)
        .collect();
    let added: Vec<Ipv4Addr> = new
        .services
        .iter()
        .flat_map(|s| s.dests.iter().map(move |d| (s.key, d.addr, d.forward)))
        .filter(|k| k.2 == Forward::Dr && !existing.contains(k))
        .map(|(_, addr, _)| addr)
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let mut nl = Netlink::open().map_err(|e| format!("cannot look up routes: {e}"))?;
    for rip in added {
        let ifindex = on_link(rip, nl.route_get(rip))?;
        // Best effort: the resolver asks again if this is lost.
        let _ = nl.resolve(ifindex, rip);
    }
    Ok(())
}

/// Starts the neighbour resolver thread; it stops within about 100 ms of `stop` being set.
/// With `tunnel` it also keeps the TUN-mode real servers' frame paths there (see
/// [`tunnel_link`](super::tunnel_link)), published once per refresh.
pub fn spawn_resolver(
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    tunnel: Option<Arc<TunnelLinks>>,
) -> io::Result<JoinHandle<()>> {
    let mut resolver = Resolver::new(tunnel)?;
    std::thread::Builder::new()
        .name("tunlb-neigh".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                resolver.step(&shared);
            }
        })
}

/// What the resolver knows between steps.
struct Resolver {
    nl: Netlink,
    events: NeighEvents,
    /// The snapshot generation last looked at.
    generation: u64,
    /// When routes and the neighbour table are re-read next without being woken.
    next_refresh: Instant,
    /// Each DR real server's interface and its MTU, or why it has none.
    routes: HashMap<Ipv4Addr, Result<(u32, u16), String>>,
    /// When the kernel was last asked to resolve each server.
    asked: HashMap<Ipv4Addr, Instant>,
    /// What was last logged about each server, to log changes only.
    logged: HashMap<Ipv4Addr, Result<NeighEntry, String>>,
    /// TUN mode's frame paths, when the workers send frames.
    tunnel: Option<TunnelState>,
}

/// What the resolver knows about the TUN-mode real servers between steps.
struct TunnelState {
    links: Arc<TunnelLinks>,
    /// Each TUN-mode real server's path, or why frames cannot reach it.
    paths: HashMap<Ipv4Addr, Result<Path, String>>,
    /// The next hops of those paths (a notification about one wakes the resolver).
    hops: HashSet<Ipv4Addr>,
    /// When the kernel was last asked to resolve each next hop.
    asked: HashMap<Ipv4Addr, Instant>,
    /// What was last logged about each server.
    logged: HashMap<Ipv4Addr, Result<TunnelLink, String>>,
}

impl Resolver {
    fn new(tunnel: Option<Arc<TunnelLinks>>) -> io::Result<Resolver> {
        Ok(Resolver {
            tunnel: tunnel.map(|links| TunnelState {
                links,
                paths: HashMap::new(),
                hops: HashSet::new(),
                asked: HashMap::new(),
                logged: HashMap::new(),
            }),
            nl: Netlink::open()?,
            events: NeighEvents::open()?,
            generation: u64::MAX,
            next_refresh: Instant::now(),
            routes: HashMap::new(),
            asked: HashMap::new(),
            logged: HashMap::new(),
        })
    }

    /// Waits up to [`WAKE`] for a neighbour notification, then refreshes the slots if a
    /// notification named a real server, the table changed, or a refresh is due.
    fn step(&mut self, shared: &Shared) {
        let mut woken = false;
        if let Ok(true) = poll_readable(std::os::fd::AsRawFd::as_raw_fd(&self.events), Some(WAKE)) {
            let routes = &self.routes;
            let hops = self.tunnel.as_ref().map(|t| &t.hops);
            let named =
                |a: &Ipv4Addr| routes.contains_key(a) || hops.is_some_and(|h| h.contains(a));
            match self.events.drain(|n| woken |= named(&n.addr)) {
                Ok(true) => {}
                // Notifications were lost: re-read everything.
                Ok(false) => woken = true,
                Err(e) => {
                    eprintln!("{LOG} reading neighbour notifications: {e}");
                    std::thread::sleep(WAKE);
                }
            }
        }
        let snap = shared.snapshot();
        let now = Instant::now();
        let changed = snap.generation != self.generation;
        let due = now >= self.next_refresh;
        if !(woken || changed || due) {
            return;
        }
        if changed || due {
            self.routes.clear();
            if let Some(t) = &mut self.tunnel {
                t.paths.clear();
            }
            self.next_refresh = now + REFRESH;
        }
        self.generation = snap.generation;
        self.refresh(&snap, now);
    }

    /// Fills every DR real server's slot and the TUN-mode frame paths from the kernel's
    /// tables, and asks the kernel to resolve the addresses without a usable entry.
    fn refresh(&mut self, snap: &Snapshot, now: Instant) {
        let dests = dr_dests(snap);
        let rips: HashSet<Ipv4Addr> = dests.iter().map(|d| d.config.addr).collect();
        self.routes.retain(|rip, _| rips.contains(rip));
        self.asked.retain(|rip, _| rips.contains(rip));
        self.logged.retain(|rip, _| rips.contains(rip));
        let tunnel_servers = match &self.tunnel {
            Some(_) => tunnel_servers(snap),
            None => BTreeMap::new(),
        };
        if dests.is_empty() && tunnel_servers.is_empty() {
            if let Some(t) = &mut self.tunnel {
                t.logged.clear();
                t.links.publish(LinkTable::default());
            }
            return;
        }
        for &rip in &rips {
            if !self.routes.contains_key(&rip) {
                let route = lookup(&mut self.nl, rip);
                self.routes.insert(rip, route);
            }
        }
        if let Some(t) = &mut self.tunnel {
            t.paths.retain(|rip, _| tunnel_servers.contains_key(rip));
            for &rip in tunnel_servers.keys() {
                if let Entry::Vacant(slot) = t.paths.entry(rip) {
                    slot.insert(tunnel_path(&mut self.nl, rip));
                }
            }
            t.hops = t.paths.values().flatten().map(|p| p.next_hop).collect();
        }
        let table: HashMap<(u32, Ipv4Addr), Neighbour> = match self.nl.neighbours() {
            Ok(list) => list.into_iter().map(|n| ((n.ifindex, n.addr), n)).collect(),
            Err(e) => {
                eprintln!("{LOG} reading the neighbour table: {e}");
                return;
            }
        };
        if let Some(t) = &mut self.tunnel {
            t.update(&mut self.nl, &tunnel_servers, &table, now);
        }
        self.update_dr(&dests, &rips, &table, now);
    }

    /// Fills the DR real servers' slots from the neighbour table `table`.
    fn update_dr(
        &mut self,
        dests: &[&Dest],
        rips: &HashSet<Ipv4Addr>,
        table: &HashMap<(u32, Ipv4Addr), Neighbour>,
        now: Instant,
    ) {
        for dest in dests {
            let rip = dest.config.addr;
            let entry = match &self.routes[&rip] {
                Ok((ifindex, mtu)) => {
                    table
                        .get(&(*ifindex, rip))
                        .and_then(Neighbour::mac)
                        .map(|mac| NeighEntry {
                            ifindex: *ifindex,
                            mac,
                            mtu: *mtu,
                        })
                }
                Err(_) => None,
            };
            if dest.state.neigh.get() != entry {
                dest.state.neigh.set(entry);
            }
        }
        for &rip in rips {
            let route = &self.routes[&rip];
            if let Ok((ifindex, _)) = route {
                let neigh = table.get(&(*ifindex, rip));
                let recently = self
                    .asked
                    .get(&rip)
                    .is_some_and(|at| now.duration_since(*at) < ASK_AGAIN);
                if neigh.map_or(true, Neighbour::wants_resolution) && !recently {
                    if let Err(e) = self.nl.resolve(*ifindex, rip) {
                        eprintln!("{LOG} asking the kernel to resolve real server {rip}: {e}");
                    }
                    self.asked.insert(rip, now);
                }
            }
            let state = match route {
                Ok((ifindex, mtu)) => match table.get(&(*ifindex, rip)).and_then(Neighbour::mac) {
                    Some(mac) => Ok(NeighEntry {
                        ifindex: *ifindex,
                        mac,
                        mtu: *mtu,
                    }),
                    None => Err(format!(
                        "real server {rip}: Ethernet address not known yet, resolving"
                    )),
                },
                Err(e) => Err(e.clone()),
            };
            if self.logged.get(&rip) != Some(&state) {
                match &state {
                    Ok(e) => eprintln!(
                        "{LOG} real server {rip} (DR) is at {} on interface {} (MTU {})",
                        mac_string(e.mac),
                        e.ifindex,
                        e.mtu
                    ),
                    Err(why) => eprintln!("{LOG} {why}"),
                }
                self.logged.insert(rip, state);
            }
        }
    }
}

impl TunnelState {
    /// Publishes the framed TUN-mode real servers (those whose next hop's MAC `table` holds),
    /// asks the kernel to resolve the other next hops, and logs each server's path when it
    /// changes.
    fn update(
        &mut self,
        nl: &mut Netlink,
        servers: &BTreeMap<Ipv4Addr, Vec<String>>,
        table: &HashMap<(u32, Ipv4Addr), Neighbour>,
        now: Instant,
    ) {
        self.asked.retain(|hop, _| self.hops.contains(hop));
        self.logged.retain(|rip, _| servers.contains_key(rip));
        let mut published = LinkTable::default();
        for (rip, services) in servers {
            let state = match self.paths.get(rip) {
                Some(Ok(p)) => {
                    let neigh = table.get(&(p.ifindex, p.next_hop));
                    let recently = self
                        .asked
                        .get(&p.next_hop)
                        .is_some_and(|at| now.duration_since(*at) < ASK_AGAIN);
                    if neigh.map_or(true, Neighbour::wants_resolution) && !recently {
                        if let Err(e) = nl.resolve(p.ifindex, p.next_hop) {
                            eprintln!("{LOG} asking the kernel to resolve {}: {e}", p.next_hop);
                        }
                        self.asked.insert(p.next_hop, now);
                    }
                    match neigh.and_then(Neighbour::mac) {
                        Some(mac) => Ok(TunnelLink {
                            to: LinkDst {
                                ifindex: p.ifindex,
                                mac,
                            },
                            src_mac: p.src_mac,
                            src: p.src,
                        }),
                        None => Err(format!(
                            "the Ethernet address of next hop {} is not known yet",
                            p.next_hop
                        )),
                    }
                }
                Some(Err(why)) => Err(why.clone()),
                None => continue,
            };
            if let Ok(link) = &state {
                published.insert(*rip, *link);
            }
            if self.logged.get(rip) != Some(&state) {
                let services = services.join(", ");
                match (&state, self.paths.get(rip)) {
                    (Ok(l), Some(Ok(p))) => eprintln!(
                        "{LOG} TUN real server {rip} ({services}): tunnel packets leave as Ethernet frames on interface {} to next hop {} at {}",
                        l.to.ifindex,
                        p.next_hop,
                        mac_string(l.to.mac)
                    ),
                    (Ok(_), _) => {}
                    (Err(why), _) => eprintln!(
                        "{LOG} TUN real server {rip} ({services}): tunnel packets take the raw socket: {why}"
                    ),
                }
                self.logged.insert(*rip, state);
            }
        }
        self.links.publish(published);
    }
}

/// The TUN-mode real servers of a snapshot, each with the services it serves (for the log).
fn tunnel_servers(snap: &Snapshot) -> BTreeMap<Ipv4Addr, Vec<String>> {
    let mut servers: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for s in snap.services() {
        for d in s.dest_ids.iter().filter_map(|id| snap.dest(*id)) {
            if matches!(d.config.forward, Forward::Tunnel { .. }) {
                servers
                    .entry(d.config.addr)
                    .or_default()
                    .push(s.config.key.to_string());
            }
        }
    }
    servers
}

/// Where frames to TUN-mode real server `rip` go, or why they cannot.
fn tunnel_path(nl: &mut Netlink, rip: Ipv4Addr) -> Result<Path, String> {
    let route = nl.route_get(rip);
    let link = match &route {
        Ok(r) if r.ifindex != 0 => nl.link(r.ifindex).ok(),
        _ => None,
    };
    decide(rip, &route, link.as_ref())
}

/// The DR real servers of a snapshot.
fn dr_dests(snap: &Snapshot) -> Vec<&Dest> {
    snap.services()
        .into_iter()
        .flat_map(|s| s.dest_ids.iter().filter_map(|id| snap.dest(*id)))
        .filter(|d| d.config.forward == Forward::Dr)
        .collect()
}

/// A real server's interface and that interface's MTU, or why DR cannot reach it.
fn lookup(nl: &mut Netlink, rip: Ipv4Addr) -> Result<(u32, u16), String> {
    let ifindex = on_link(rip, nl.route_get(rip))?;
    let mtu = nl
        .link_mtu(ifindex)
        .map_err(|e| format!("real server {rip}: reading the MTU of interface {ifindex}: {e}"))?;
    Ok((ifindex, mtu.min(u32::from(u16::MAX)) as u16))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kind: u8, ifindex: u32, gateway: Option<Ipv4Addr>) -> io::Result<Route> {
        Ok(Route {
            kind,
            ifindex,
            gateway,
            prefsrc: None,
        })
    }

    #[test]
    fn only_directly_connected_unicast_hosts_are_dr_servers() {
        let rip = Ipv4Addr::new(10, 3, 0, 12);
        assert_eq!(on_link(rip, route(libc::RTN_UNICAST, 3, None)), Ok(3));
        assert_eq!(
            on_link(
                rip,
                route(libc::RTN_UNICAST, 3, Some(Ipv4Addr::new(192, 168, 150, 1)))
            ),
            Err("real server 10.3.0.12 is not on a directly connected network: DR cannot cross a router (use -i)".into())
        );
        let local = on_link(rip, route(libc::RTN_LOCAL, 1, None)).unwrap_err();
        assert!(local.contains("address of the director itself"), "{local}");
        let none = on_link(rip, Err(io::Error::from_raw_os_error(libc::ENETUNREACH))).unwrap_err();
        assert!(
            none.starts_with("real server 10.3.0.12: no route to it"),
            "{none}"
        );
        let blackhole = on_link(rip, route(6, 0, None)).unwrap_err();
        assert!(blackhole.contains("route type 6"), "{blackhole}");
    }

    #[test]
    fn a_lost_fragment_loses_its_packet_once() {
        let f = |slot| Framed {
            slot,
            to: LinkDst {
                ifindex: 1,
                mac: [0; 6],
            },
            kind: EncapKind::Dr,
            header: [0; MAX_OUTER_HEADER],
            header_len: 0,
            range: 0..1,
        };
        let pending = [f(0), f(1), f(1), f(1), f(2)];
        let err = |index| MsgError { index, errno: 1 };
        let lost = |failures: &[MsgError]| {
            let mut out = SendFailures::default();
            failed_packets(&pending, failures, &mut out);
            out
        };
        assert_eq!(lost(&[err(1), err(3)]).total(), 1);
        let three = lost(&[err(0), err(2), err(4)]);
        assert_eq!(three.total(), 3);
        assert_eq!(three.by_kind().collect::<Vec<_>>(), [(EncapKind::Dr, 3)]);
    }

    #[test]
    fn the_mac_prints_as_ip_neigh_does() {
        assert_eq!(mac_string([2, 0, 0xab, 0, 0, 0x12]), "02:00:ab:00:00:12");
    }
}

/// DR mode's IO against a real kernel, inside a private network namespace (root only); run
/// with `cargo test --lib -- --ignored root_tests`.
#[cfg(test)]
mod root_tests {
    use std::net::{SocketAddrV4, UdpSocket};

    use super::*;
    use crate::director::service::{
        DestConfig, Protocol, SchedulerKind, ServiceConfig, ServiceKey,
    };
    use crate::sys::neigh::NeighEvents;
    use crate::sys::testing::{in_new_netns, ip, udp_packet};
    use crate::sys::PacketMeta;

    /// The index and MAC of an interface of this thread's namespace, from `ip -o link show`
    /// (`/sys` shows the namespace it was mounted in, not this one).
    fn link(name: &str) -> (u32, [u8; 6]) {
        let out = ip(&["-o", "link", "show", "dev", name]);
        let ifindex = out.split(':').next().unwrap().trim().parse().unwrap();
        let mac = out
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap();
        let mac: Vec<u8> = mac
            .split(':')
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        (ifindex, mac.try_into().unwrap())
    }

    /// Puts `pkts` into the slots of a batch, as a TUN read would.
    fn batch_of(pkts: &[&[u8]]) -> PacketBatch {
        let mut batch = PacketBatch::new(pkts.len(), 2048);
        for (i, p) in pkts.iter().enumerate() {
            batch.slot_mut(i).unwrap()[..p.len()].copy_from_slice(p);
            batch.set_meta(
                i,
                PacketMeta {
                    len: p.len(),
                    src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    truncated: false,
                },
            );
        }
        batch.set_filled(pkts.len());
        batch
    }

    fn dr_set(rip: Ipv4Addr) -> ServiceSet {
        ServiceSet {
            services: vec![ServiceConfig {
                key: ServiceKey {
                    vip: Ipv4Addr::new(10, 9, 9, 9),
                    port: 80,
                    proto: Protocol::Tcp,
                },
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
                dests: vec![DestConfig {
                    addr: rip,
                    port: 80,
                    weight: 1,
                    forward: Forward::Dr,
                    u_threshold: 0,
                    l_threshold: 0,
                }],
                policy: Default::default(),
            }],
        }
    }

    /// tlbv0 (10.9.3.1/24) and tlbv1 (10.9.3.2/32) are the two ends of one veth pair in the
    /// same namespace: a frame sent out of tlbv0 to tlbv1's MAC arrives on tlbv1.
    fn veth_pair() -> (u32, [u8; 6]) {
        ip(&[
            "link", "add", "tlbv0", "type", "veth", "peer", "name", "tlbv1",
        ]);
        ip(&["addr", "add", "10.9.3.1/24", "dev", "tlbv0"]);
        ip(&["addr", "add", "10.9.3.2/32", "dev", "tlbv1"]);
        ip(&["link", "set", "tlbv0", "up"]);
        ip(&["link", "set", "tlbv1", "up"]);
        for conf in ["all", "tlbv1"] {
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{conf}/rp_filter"), "0").unwrap();
        }
        (link("tlbv0").0, link("tlbv1").1)
    }

    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn frames_reach_the_mac_whole_and_in_fragments() {
        in_new_netns(|| {
            let (ifindex, mac) = veth_pair();
            let sock = UdpSocket::bind("10.9.3.2:7000").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let from = SocketAddrV4::new(Ipv4Addr::new(10, 9, 3, 7), 6000);
            let to = SocketAddrV4::new(Ipv4Addr::new(10, 9, 3, 2), 7000);
            // DF is clear in these packets.
            let small = udp_packet(from, to, b"whole");
            let big = udp_packet(from, to, &[0x5a; 1400]);
            let batch = batch_of(&[&small, &big]);

            let mut q = FrameQueue::new(4).unwrap();
            let mut idents = IdentSeq::new(0, 1);
            let frame = |len, frag_mtu| Ether {
                ifindex,
                dst_mac: mac,
                len,
                frag_mtu,
            };
            assert!(q.queue(&mut idents, 0, &small, &frame(small.len(), 0)));
            assert!(q.queue(&mut idents, 1, &big, &frame(big.len(), 576)));
            assert_eq!(
                q.pending.len(),
                1 + 3,
                "the 1428-byte packet in 3 fragments"
            );
            let mut sizes = BatchHistogram::default();
            assert_eq!(q.flush(&batch, &mut sizes).total(), 0);
            assert_eq!(
                (sizes.count(), sizes.sum),
                (1, 4),
                "one sendmmsg of 4 frames"
            );
            let mut buf = [0u8; 2048];
            let (n, src) = sock.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], src), (&b"whole"[..], from.into()));
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                &[0x5a; 1400][..],
                "reassembled from the fragments"
            );

            // A frame for an interface that does not exist is refused and counted.
            q.clear();
            assert!(q.queue(
                &mut idents,
                0,
                &small,
                &Ether {
                    ifindex: 99_999,
                    ..frame(small.len(), 0)
                }
            ));
            assert_eq!(q.flush(&batch, &mut sizes).total(), 1);
        });
    }

    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn tunnel_frames_arrive_whole_and_in_fragments_with_the_route_source() {
        in_new_netns(|| {
            let (ifindex, mac) = veth_pair();
            let mut rx = crate::sys::raw::RawReceiver::new(4).unwrap();
            let inner_from = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 6000);
            let inner_to = SocketAddrV4::new(Ipv4Addr::new(10, 100, 0, 100), 80);
            // DF is clear in these packets.
            let small = udp_packet(inner_from, inner_to, b"whole");
            let big = udp_packet(inner_from, inner_to, &[0x5a; 1400]);
            let batch = batch_of(&[&small, &big]);
            let encap = |inner: &[u8], frag_mtu| {
                let params = encap::OuterParams {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: Ipv4Addr::new(10, 9, 3, 2),
                    tunnel: encap::Tunnel::Ipip,
                    flow_hash: 0,
                };
                let mut header = [0u8; MAX_OUTER_HEADER];
                let n = encap::build_outer(&params, inner, &mut header).unwrap();
                Encap {
                    dst: params.dst,
                    header,
                    header_len: n as u8,
                    len: inner.len(),
                    frag_mtu,
                }
            };
            let link = TunnelLink {
                to: LinkDst { ifindex, mac },
                src_mac: [0; 6],
                // Not tlbv0's own address: the kernel drops arriving packets from a local source.
                src: Ipv4Addr::new(10, 9, 3, 7),
            };
            let mut q = FrameQueue::new(4).unwrap();
            let mut idents = IdentSeq::new(0, 1);
            assert!(q.queue_encap(&mut idents, 0, &small, &encap(&small, 0), &link));
            assert!(q.queue_encap(&mut idents, 1, &big, &encap(&big, 576), &link));
            assert_eq!(q.pending.len(), 1 + 3, "1448 bytes in 3 fragments");
            assert_eq!(q.flush(&batch, &mut BatchHistogram::default()).total(), 0);
            let mut got = Vec::new();
            let mut rb = PacketBatch::new(4, 2048);
            let deadline = Instant::now() + Duration::from_secs(2);
            while got.len() < 2 && Instant::now() < deadline {
                rx.recv_batch(&mut rb, Some(Duration::from_millis(200)))
                    .unwrap();
                got.extend(rb.iter().map(|(p, _)| p.to_vec()));
            }
            assert_eq!(got.len(), 2, "both tunnel packets arrive");
            for (outer, inner) in got.iter().zip([&small, &big]) {
                let s = encap::strip_ip(outer, encap::TunnelType::Ipip, None).unwrap();
                assert_eq!(
                    s.outer_src,
                    Ipv4Addr::new(10, 9, 3, 7),
                    "the source filled in"
                );
                assert_eq!(&outer[s.inner], &inner[..], "reassembled intact");
            }
            assert!(q.gone_interfaces().is_empty());

            // A frame for an interface that is gone is counted and the interface reported.
            q.clear();
            let gone = TunnelLink {
                to: LinkDst {
                    ifindex: 99_999,
                    mac,
                },
                ..link
            };
            assert!(q.queue_encap(&mut idents, 0, &small, &encap(&small, 0), &gone));
            let lost = q.flush(&batch, &mut BatchHistogram::default());
            let lost: Vec<_> = lost.by_kind().collect();
            assert_eq!(
                lost,
                [(EncapKind::Ipip, 1)],
                "counted as an IPIP error, not DR"
            );
            assert_eq!(q.gone_interfaces(), &[99_999]);
        });
    }

    #[test]
    #[ignore = "needs root (network namespaces)"]
    fn routes_decide_on_link_and_the_kernel_resolves_on_request() {
        in_new_netns(|| {
            let (ifindex, _) = veth_pair();
            ip(&["route", "add", "10.8.0.0/24", "via", "10.9.3.9"]);
            let mut nl = Netlink::open().unwrap();
            let on_lan = Ipv4Addr::new(10, 9, 3, 5);
            assert_eq!(on_link(on_lan, nl.route_get(on_lan)), Ok(ifindex));
            let far = Ipv4Addr::new(10, 8, 0, 1);
            let err = on_link(far, nl.route_get(far)).unwrap_err();
            assert!(err.contains("DR cannot cross a router (use -i)"), "{err}");
            let own = Ipv4Addr::new(10, 9, 3, 2);
            assert!(on_link(own, nl.route_get(own)).is_err());
            let nowhere = Ipv4Addr::new(172, 31, 0, 1);
            assert!(on_link(nowhere, nl.route_get(nowhere)).is_err());

            // The control plane's check: the router case is refused, the LAN host accepted.
            let empty = ServiceSet::default();
            let err = check_new_dr_servers(&empty, &dr_set(far)).unwrap_err();
            assert!(err.contains("not on a directly connected network"), "{err}");
            // An existing server is not checked again (routes may change under it).
            check_new_dr_servers(&dr_set(far), &dr_set(far)).unwrap();

            // Accepting 10.9.3.5 asked the kernel to resolve it: an entry appears without an
            // address; nobody answers, so after its one probe (a second) it fails, and a
            // notification says so.
            std::fs::write("/proc/sys/net/ipv4/neigh/tlbv0/mcast_solicit", "1").unwrap();
            let mut events = NeighEvents::open().unwrap();
            check_new_dr_servers(&empty, &dr_set(on_lan)).unwrap();
            let entry = nl
                .neighbours()
                .unwrap()
                .into_iter()
                .find(|n| n.addr == on_lan)
                .expect("an entry for 10.9.3.5");
            assert_eq!((entry.ifindex, entry.mac()), (ifindex, None));
            assert!(entry.wants_resolution());
            let mut named = false;
            let deadline = Instant::now() + Duration::from_secs(8);
            while !named && Instant::now() < deadline {
                poll_readable(std::os::fd::AsRawFd::as_raw_fd(&events), Some(WAKE)).unwrap();
                assert!(events.drain(|n| named |= n.addr == on_lan).unwrap());
            }
            assert!(named, "no neighbour notification about 10.9.3.5");
        });
    }
}

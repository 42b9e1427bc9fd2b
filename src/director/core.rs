//! The sans-IO director: one packet in, one [`Verdict`] out.
//!
//! Each worker thread owns a [`Director`] (and with it a connection table, as the kernel keeps a
//! flow on one TUN queue). Everything that must be global across workers lives in [`Shared`]:
//! the published [`Snapshot`] of services, the persistence templates and the fragment tracker.
//! Scheduling state (round-robin position, connection counts) is atomic inside the snapshot's
//! schedulers, so decisions are global without a lock on the packet path.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Cache};

use super::conn::{
    tcp_transition, template_key, Conn, ConnKey, ConnState, ConnTable, DestId, Direction,
    TemplateTable,
};
use super::nat::{self, NatTable};
use super::probe_pin::ProbePins;
use super::sched::FlowKey;
use super::service::{Forward, Protocol};
use super::snat;
use super::stats::{BatchHistogram, EncapError, EncapErrors, EncapKind, SendSocket};
use super::table::{Dest, Snapshot};
use super::verdict::{DropReason, Encap, Verdict, MAX_FRAGMENTS};
use crate::encap::{self, OuterParams, MAX_OUTER_HEADER};
use crate::time::{Duration, Instant};
use crate::wire::{icmp, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket};

/// Settings of the data path that are not part of the service table.
#[derive(Debug, Clone)]
pub struct DirectorConfig {
    /// Largest outer packet a tunnel may carry (the MTU of the path to the real servers).
    pub tunnel_mtu: u16,
    /// Outer source address; `0.0.0.0` lets the kernel fill in the route's source.
    pub local_addr: Ipv4Addr,
    /// Initial connection-table capacity per worker, in slots (see `ConnTable::slots_for`).
    pub initial_conns: usize,
    /// Maximum tracked flows per worker.
    pub max_conns: usize,
    /// Slots examined per expiry sweep step.
    pub sweep_budget: usize,
    /// Time between sweep steps.
    pub sweep_interval: Duration,
    /// Seed of the connection table's hash (randomise it in production).
    pub seed: u64,
}

impl Default for DirectorConfig {
    fn default() -> Self {
        DirectorConfig {
            tunnel_mtu: 1500,
            local_addr: Ipv4Addr::UNSPECIFIED,
            initial_conns: 4096,
            max_conns: 4 << 20,
            sweep_budget: 8192,
            sweep_interval: Duration::from_millis(100),
            seed: 0x7475_6e6c_6221,
        }
    }
}

/// How long the fragment tracker remembers a fragmented datagram.
const FRAG_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fragmented datagrams may be in flight at once.
const FRAG_MAX: usize = 4096;

/// Which real server the fragments of one datagram go to.
#[derive(Debug, Default)]
struct FragTable {
    map: HashMap<(Ipv4Addr, Ipv4Addr, u8, u16), (DestId, Instant)>,
}

/// State shared by all workers.
#[derive(Debug)]
pub struct Shared {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// Persistence templates (global, as persistence must hold whichever queue a flow lands on).
    pub templates: TemplateTable,
    /// NAT flows (global, as the two directions of a flow land on different queues).
    pub nat: NatTable,
    /// S-NAT gateway mappings (same table type; see [`super::snat`]).
    pub snat: NatTable,
    /// Health probes sent through the data path, pinned to the real server they check
    /// ([`super::probe_pin`]).
    pub probe_pins: Arc<ProbePins>,
    frags: Mutex<FragTable>,
}

impl Shared {
    /// Shared state starting from `snapshot`.
    pub fn new(snapshot: Snapshot) -> Shared {
        Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            templates: TemplateTable::new(),
            nat: NatTable::new(4 << 20, super::conn::random_seed()),
            snat: NatTable::new(4 << 20, super::conn::random_seed()),
            probe_pins: Arc::new(ProbePins::new()),
            frags: Mutex::new(FragTable::default()),
        }
    }

    /// Publishes a new table; workers pick it up at their next packet.
    pub fn publish(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The real server the later fragments of datagram `key` (source, destination, protocol,
    /// identification) follow, if its first fragment was seen.
    pub(super) fn fragment_dest(&self, key: &(Ipv4Addr, Ipv4Addr, u8, u16)) -> Option<DestId> {
        self.frags
            .lock()
            .ok()
            .and_then(|f| f.map.get(key).map(|(d, _)| *d))
    }

    /// Housekeeping that is not per worker: expire templates, fragment entries and probe pins.
    pub fn handle_timeout(&self, now: Instant) {
        self.templates.expire(now);
        self.probe_pins.expire(now);
        if let Ok(mut f) = self.frags.lock() {
            f.map.retain(|_, (_, exp)| *exp > now);
        }
    }
}

/// Per-worker counters, read by the control plane between batches.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Packets handed to the core.
    pub rx_packets: u64,
    /// Bytes handed to the core.
    pub rx_bytes: u64,
    /// Packets forwarded to a real server (encapsulated, or in a DR frame).
    pub tx_packets: u64,
    /// Bytes (inner packets) forwarded to a real server.
    pub tx_bytes: u64,
    /// Packets rewritten in place and written back into the TUN (NAT, both directions).
    pub rewritten: u64,
    /// ICMP errors generated (fragmentation needed).
    pub icmp_sent: u64,
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired or removed.
    pub conns_expired: u64,
    /// SYNs whose MSS option was clamped.
    pub mss_clamped: u64,
    /// Packets without DF too big for the tunnel MTU once encapsulated, sent as outer fragments
    /// (also counted in `tx_packets`).
    pub fragmented: u64,
    /// TUN offload: GSO super-packets decided whole (their segments count in `rx_packets`).
    pub gso_whole: u64,
    /// TUN offload: GSO super-packets the driver segmented before deciding each segment.
    pub gso_split: u64,
    /// Dropped packets, indexed by `DropReason as usize`.
    pub drops: [u64; DropReason::COUNT],
    /// Non-empty TUN reads by how many packets they returned.
    pub read_batches: BatchHistogram,
    /// Batches with packets written back into the TUN (NAT rewrites, ICMP errors) by how many
    /// packets they wrote, one `write` each.
    pub tun_writes: BatchHistogram,
    /// Batched sends by socket ([`SendSocket`] as index) and how many datagrams or frames
    /// (GUE trains: records) each carried.
    pub send_batches: [BatchHistogram; SendSocket::ALL.len()],
    /// Packets for real servers that did not leave, by forwarding type and reason (each is
    /// also counted in `drops`).
    pub encap_errors: EncapErrors,
    /// Traffic per real server, indexed by [`DestId::slot`] (grown when a new slot shows up,
    /// never per packet). An entry whose `id` differs from the server's current handle belongs
    /// to a deleted server.
    pub per_dest: Vec<DestCounters>,
}

/// What one worker forwarded to and from one real server: the `ipvsadm --stats` columns (in
/// TUN mode replies bypass the director, so only NAT servers have outgoing counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestCounters {
    /// The real server these counts belong to.
    pub id: DestId,
    /// Connections scheduled to it.
    pub conns: u64,
    /// Packets forwarded to it.
    pub in_pkts: u64,
    /// Bytes (inner packets) forwarded to it.
    pub in_bytes: u64,
    /// Packets from it forwarded to clients (NAT replies).
    pub out_pkts: u64,
    /// Bytes from it forwarded to clients.
    pub out_bytes: u64,
}

impl Counters {
    /// The counters of real server `id`, reset if its slot last belonged to another server.
    #[inline]
    pub(super) fn dest(&mut self, id: DestId) -> &mut DestCounters {
        let slot = usize::from(id.slot());
        if slot >= self.per_dest.len() {
            self.per_dest.resize(slot + 1, DestCounters::default());
        }
        let c = &mut self.per_dest[slot];
        if c.id != id {
            *c = DestCounters {
                id,
                ..DestCounters::default()
            };
        }
        c
    }

    /// Adds `other`'s totals into `self` (to total the workers' counters; `per_dest` is not
    /// merged: the control plane sums it by server).
    pub fn add(&mut self, other: &Counters) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.rewritten += other.rewritten;
        self.icmp_sent += other.icmp_sent;
        self.conns_created += other.conns_created;
        self.conns_expired += other.conns_expired;
        self.mss_clamped += other.mss_clamped;
        self.fragmented += other.fragmented;
        self.gso_whole += other.gso_whole;
        self.gso_split += other.gso_split;
        for (d, o) in self.drops.iter_mut().zip(other.drops.iter()) {
            *d += o;
        }
        self.read_batches.add(&other.read_batches);
        self.tun_writes.add(&other.tun_writes);
        for (s, o) in self.send_batches.iter_mut().zip(other.send_batches.iter()) {
            s.add(o);
        }
        self.encap_errors.add(&other.encap_errors);
    }

    /// Counts one TUN read that returned `n` packets (nothing for an empty read).
    #[inline]
    pub fn count_read_batch(&mut self, n: usize) {
        self.read_batches.record(n);
    }

    /// Drops of one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

/// The sans-IO director core of one worker.
pub struct Director {
    shared: Arc<Shared>,
    cache: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
    conns: ConnTable,
    config: DirectorConfig,
    counters: Counters,
    next_sweep: Instant,
}

impl core::fmt::Debug for Director {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Director")
            .field("conns", &self.conns.len())
            .field("counters", &self.counters)
            .finish()
    }
}

/// What the parser found in a packet's headers.
pub(super) struct Parsed {
    pub(super) proto: u8,
    pub(super) src: Ipv4Addr,
    pub(super) dst: Ipv4Addr,
    pub(super) len: usize,
    pub(super) ihl: usize,
    pub(super) dont_frag: bool,
    /// MF set and offset 0: the fragment that carries the ports.
    pub(super) first_fragment_of_many: bool,
    /// Offset non-zero: a fragment without ports.
    pub(super) later_fragment: bool,
    pub(super) ident: u16,
    /// The length the MTU checks use: `len`, or for a GSO super-packet the IPv4 length of its
    /// largest segment.
    pub(super) mtu_len: usize,
    /// How many packets this is on the wire: 1, or a GSO super-packet's segment count.
    pub(super) segs: u32,
}

impl Director {
    /// A worker core reading tables from `shared`.
    pub fn new(shared: Arc<Shared>, config: DirectorConfig) -> Director {
        let cache = Cache::new(shared.snapshot.clone());
        let conns = ConnTable::new(config.initial_conns, config.max_conns, config.seed);
        Director {
            shared,
            cache,
            conns,
            config,
            counters: Counters::default(),
            next_sweep: Instant::ZERO,
        }
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counts a drop decided outside the core (by the driver).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.drops[reason as usize] += 1;
    }

    /// Counts a GSO super-packet the driver segmented before deciding its segments one by one
    /// (see [`Counters::gso_split`]).
    pub fn count_gso_split(&mut self) {
        self.counters.gso_split += 1;
    }

    /// Counts encapsulated packets (or DR frames, `kind`) the kernel refused to send or the
    /// driver could not queue: they were counted as sent by `handle_packet`, so they move from
    /// `tx_packets` to the `send_failed` drops (and the encap errors of `kind`).
    pub fn count_send_errors(&mut self, kind: EncapKind, failed: u64) {
        self.counters.tx_packets = self.counters.tx_packets.saturating_sub(failed);
        self.counters.drops[DropReason::SendFailed as usize] += failed;
        self.counters
            .encap_errors
            .count(kind, EncapError::SendFailed, failed);
    }

    /// Counts one batch's `n` packets written back into the TUN (nothing if none)
    /// ([`Counters::tun_writes`]).
    pub fn count_tun_writes(&mut self, n: usize) {
        self.counters.tun_writes.record(n);
    }

    /// The batch size histogram of sends on `socket`, for the driver to record each batched
    /// send in ([`Counters::send_batches`]).
    pub fn send_batch_sizes(&mut self, socket: SendSocket) -> &mut BatchHistogram {
        &mut self.counters.send_batches[socket as usize]
    }

    /// Counts one TUN read of `n` packets in the batch size histogram
    /// ([`Counters::read_batches`]).
    pub fn count_read_batch(&mut self, n: usize) {
        self.counters.count_read_batch(n);
    }

    /// This worker's connection table.
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_sweep
    }

    /// Expires connections, a bounded number of table slots per call.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + self.config.sweep_interval;
        // At least `sweep_budget` slots, and enough that the whole table is visited about every
        // two seconds (20 steps of 100 ms), so expired flows leave the counts promptly.
        let sweep_budget = self.config.sweep_budget.max(self.conns.capacity() / 20);
        let snap = self.cache.load();
        let shared = &self.shared;
        let counters = &mut self.counters;
        self.conns.sweep(now, sweep_budget, |key, conn| {
            counters.conns_expired += 1;
            release(snap, shared, key, conn, now);
        });
        shared.nat.sweep_next(now, |c| {
            counters.conns_expired += 1;
            release(snap, shared, &c.key, &c.conn, now);
        });
        shared.snat.sweep_next(now, |_| counters.conns_expired += 1);
    }

    /// Starts loading the connection-table slot the packet in `buf` will look up. The driver
    /// calls it for every packet of a batch before [`handle_packet`](Self::handle_packet), so
    /// the cache misses of a large table overlap. Never fails: a packet it cannot parse is
    /// simply not prefetched.
    #[inline]
    pub fn prefetch(&self, buf: &[u8]) {
        if buf.len() < 24 || buf[0] >> 4 != 4 {
            return;
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let proto = buf[9];
        if !(proto == IpProtocol::TCP || proto == IpProtocol::UDP) || buf.len() < ihl + 4 {
            return;
        }
        let key = ConnKey {
            proto,
            flags: 0,
            caddr: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            cport: u16::from_be_bytes([buf[ihl], buf[ihl + 1]]),
            vaddr: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
            vport: u16::from_be_bytes([buf[ihl + 2], buf[ihl + 3]]),
        };
        self.conns.prefetch(&key);
    }

    /// Decides one packet read from the TUN device. `buf` holds exactly one IPv4 packet (its
    /// length is the read length); it may be edited in place (MSS clamp, ICMP reply).
    pub fn handle_packet(&mut self, now: Instant, buf: &mut [u8]) -> Verdict {
        self.handle(now, buf, None)
    }

    /// Decides a TCP/IPv4 GSO super-packet (one flow, `segs` segments, the largest
    /// `seg_len` bytes long as an IPv4 packet) once for all its segments. The verdict is the
    /// one a single packet gets, with these differences: the MTU checks (ICMP
    /// fragmentation-needed, fragmentation) use `seg_len`; an [`Encap`]'s outer header is built
    /// for the first `seg_len` bytes, and the driver fixes its lengths and checksums per
    /// segment ([`crate::wire::gso::fix_outer`]); packet counters count `segs` packets. Only
    /// for packets with DF set (the driver segments the others first and decides each).
    pub fn handle_gso(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seg_len: usize,
        segs: u32,
    ) -> Verdict {
        self.handle(now, buf, Some((seg_len, segs.max(1))))
    }

    fn handle(&mut self, now: Instant, buf: &mut [u8], gso: Option<(usize, u32)>) -> Verdict {
        let segs = u64::from(gso.map_or(1, |g| g.1));
        self.counters.gso_whole += u64::from(gso.is_some());
        self.counters.rx_packets += segs;
        self.counters.rx_bytes += buf.len() as u64;
        let v = self.decide(now, buf, gso);
        match v {
            Verdict::Drop(r) => self.counters.drops[r as usize] += segs,
            Verdict::Encap(e) => {
                self.counters.tx_packets += segs;
                self.counters.tx_bytes += e.len as u64;
            }
            Verdict::Ether(e) => {
                self.counters.tx_packets += segs;
                self.counters.tx_bytes += e.len as u64;
            }
            Verdict::Reply { .. } => self.counters.icmp_sent += 1,
            Verdict::Rewrite { .. } => self.counters.rewritten += segs,
        }
        v
    }

    fn decide(&mut self, now: Instant, buf: &mut [u8], gso: Option<(usize, u32)>) -> Verdict {
        let mut p = match parse_ip(buf) {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(r),
        };
        if let Some((seg_len, segs)) = gso {
            p.mtu_len = seg_len.min(p.len);
            p.segs = segs;
        }
        // A health probe of the director's own, through the data path to the server it checks
        // (one atomic load while no probe is in flight).
        if self.shared.probe_pins.is_source(p.src) {
            let pins = &self.shared.probe_pins;
            if let Some(v) =
                super::probe_pin::handle(&self.config, &mut self.counters, pins, buf, &p, now)
            {
                return v;
            }
        }
        let snap = self.cache.load();

        // A destination behind a tunnel route (and not a VIP): tunnel it as it is, untracked.
        if let Some(route) = super::route::route_for(snap, p.dst) {
            let hash = super::route::flow_hash(buf);
            let (to, forward) = (route.via, route.forward());
            return tunnel(&self.config, &mut self.counters, to, forward, buf, &p, hash);
        }

        // S-NAT gateway: the inside hosts' own connections out, and their replies back.
        if !snap.snat.is_empty() {
            let v = snat::handle(&mut self.counters, snap, &self.shared, buf, &p, now);
            if let Some(v) = v {
                return v;
            }
        }

        // With NAT real servers, what is not addressed to a VIP is one of their replies.
        if snap.has_nat() && !snap.is_vip(p.dst) {
            return nat::handle_from_server(&mut self.counters, snap, &self.shared, buf, &p, now);
        }

        // Non-first fragments carry no ports: they follow the first fragment's real server.
        let frag_key = (p.src, p.dst, p.proto, p.ident);
        if p.later_fragment {
            let dest = self
                .shared
                .frags
                .lock()
                .ok()
                .and_then(|f| f.map.get(&frag_key).map(|(d, _)| *d));
            return match dest.and_then(|d| snap.dest(d)) {
                Some(dest) => encapsulate(&self.config, &mut self.counters, dest, buf, &p, 0),
                None => Verdict::Drop(DropReason::FragmentNoFlow),
            };
        }

        let proto = match p.proto {
            IpProtocol::TCP => Protocol::Tcp,
            IpProtocol::UDP => Protocol::Udp,
            IpProtocol::ICMP => {
                return handle_icmp(
                    &self.config,
                    &mut self.counters,
                    snap,
                    &self.shared,
                    &mut self.conns,
                    buf,
                    &p,
                    now,
                )
            }
            _ => return Verdict::Drop(DropReason::UnsupportedProtocol),
        };
        let l4 = &buf[p.ihl..p.len];
        if l4.len() < if proto == Protocol::Tcp { 20 } else { 8 } {
            return Verdict::Drop(DropReason::MalformedL4);
        }
        let sport = u16::from_be_bytes([l4[0], l4[1]]);
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        let flags = if proto == Protocol::Tcp {
            match TcpPacket::new_checked(l4) {
                Ok(t) => t.flags(),
                Err(_) => return Verdict::Drop(DropReason::MalformedL4),
            }
        } else {
            TcpFlags::default()
        };
        let key = ConnKey {
            proto: p.proto,
            flags: 0,
            caddr: p.src,
            cport: sport,
            vaddr: p.dst,
            vport: dport,
        };
        let syn_only = flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK);

        // Established flow: the hot path.
        let mut reuse = false;
        if let Some(conn) = self.conns.get_mut(&key) {
            let live = conn.expires() > now;
            if live && !(syn_only && conn.state.is_closing()) {
                if let Some(dest) = snap.dest(conn.dest) {
                    if proto == Protocol::Tcp {
                        step_state(conn, dest, flags, Direction::InputOnly);
                    }
                    conn.set_expires(now + snap.timeouts.get(conn.state));
                    if p.first_fragment_of_many {
                        remember_fragment(&self.shared, frag_key, conn.dest, now);
                    }
                    let clamp = if syn_only {
                        mss_clamp_for(snap, proto, p.dst, dport)
                    } else {
                        None
                    };
                    return forward(
                        &self.config,
                        &mut self.counters,
                        dest,
                        buf,
                        &p,
                        clamp,
                        flow_hash(&key),
                    );
                }
                if snap.is_held(conn.dest) {
                    // expire_nodest_conn = false and the server's health check failed: keep
                    // the flow (without refreshing it) for the server's return.
                    return Verdict::Drop(DropReason::DestinationDown);
                }
                // expire_nodest_conn: the real server left the table; forget the flow. A TCP
                // packet other than a SYN cannot start a new flow and is lost; a UDP packet or
                // a SYN is rescheduled below as a new flow, as IPVS does.
                if proto == Protocol::Tcp && !syn_only {
                    let old = *conn;
                    self.conns.remove(&key);
                    self.counters.conns_expired += 1;
                    release(snap, &self.shared, &key, &old, now);
                    return Verdict::Drop(DropReason::DestinationGone);
                }
            }
            reuse = true;
        } else if snap.has_nat() {
            let (config, counters) = (&self.config, &mut self.counters);
            let shared = &self.shared;
            if let Some(v) =
                nat::handle_from_client(config, counters, snap, shared, &key, flags, buf, &p, now)
            {
                return v;
            }
        }
        if reuse {
            // Expired, or a new SYN reusing a closing flow's ports (IPVS conn_reuse_mode).
            if let Some(old) = self.conns.remove(&key) {
                self.counters.conns_expired += 1;
                release(snap, &self.shared, &key, &old, now);
            }
        }

        // A new flow.
        let Some(svc) = snap.service(proto, p.dst, dport) else {
            return Verdict::Drop(DropReason::NoService);
        };
        if proto == Protocol::Tcp && !syn_only {
            return Verdict::Drop(DropReason::NoConnection);
        }
        let flow = FlowKey {
            saddr: p.src,
            sport,
            daddr: p.dst,
            dport,
            proto: p.proto,
        };
        let pick = || {
            svc.scheduler
                .pick(&flow, &svc.sched_dests)
                .map(|i| svc.dest_ids[i])
        };
        let dest_id = match svc.persistence() {
            None => pick(),
            Some(pers) => {
                let tkey = template_key(p.proto, p.src, pers.netmask, p.dst, svc.config.key.port);
                let timeout = Duration::from_secs(pers.timeout as u64);
                // IPVS ip_vs_check_template: a template is of no use if its server left the
                // table (deleted, or held while down), or is quiesced (weight 0) and the
                // service has expire_quiescent_template.
                let quiescent = svc.config.policy.expire_quiescent_template;
                let usable = |id| {
                    snap.dest(id)
                        .is_some_and(|d| !(quiescent && d.config.weight == 0))
                };
                let templates = &self.shared.templates;
                match templates.get_or_create(tkey, now, timeout, pick) {
                    Some(id) if usable(id) => Some(id),
                    Some(stale) => {
                        // Expire it and choose again.
                        templates.release(&tkey, now);
                        if snap.dest_or_held(stale).is_none() {
                            // Deleted: none of its templates is of use any more.
                            templates.remove_dest(stale);
                        } else {
                            templates.remove_if_dest(&tkey, stale);
                        }
                        templates.get_or_create(tkey, now, timeout, pick)
                    }
                    None => None,
                }
            }
        };
        let Some(dest) = dest_id.and_then(|id| snap.dest(id)) else {
            return Verdict::Drop(DropReason::NoDestination);
        };
        let is_nat = dest.config.forward == Forward::Nat;
        let state = if proto == Protocol::Tcp {
            // NAT sees both directions; TUN (and DR) only the client's.
            let dir = if is_nat {
                Direction::Input
            } else {
                Direction::InputOnly
            };
            tcp_transition(ConnState::None, true, false, false, false, dir)
        } else {
            ConnState::Udp
        };
        let conn = Conn::new(dest.id, state, now + snap.timeouts.get(state));
        let inserted = if is_nat {
            nat::insert(snap, &self.shared, &mut self.counters, key, dest, conn, now)
        } else {
            self.conns
                .insert(key, conn)
                .map(drop)
                .map_err(|_| DropReason::ConnTableFull)
        };
        if let Err(reason) = inserted {
            if let Some(pers) = svc.persistence() {
                let tkey = template_key(p.proto, p.src, pers.netmask, p.dst, svc.config.key.port);
                self.shared.templates.release(&tkey, now);
            }
            return Verdict::Drop(reason);
        }
        self.counters.conns_created += 1;
        self.counters.dest(dest.id).conns += 1;
        add_count(&dest.state, state, 1);
        dest.state
            .update_overload(dest.config.u_threshold, dest.config.l_threshold);
        if p.first_fragment_of_many {
            remember_fragment(&self.shared, frag_key, dest.id, now);
        }
        let clamp = if syn_only { svc.config.mss_clamp } else { None };
        forward(
            &self.config,
            &mut self.counters,
            dest,
            buf,
            &p,
            clamp,
            flow_hash(&key),
        )
    }
}

fn parse_ip(buf: &[u8]) -> Result<Parsed, DropReason> {
    match buf.first().map(|b| b >> 4) {
        Some(4) => {}
        Some(_) => return Err(DropReason::NotIpv4),
        None => return Err(DropReason::MalformedIp),
    }
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| DropReason::MalformedIp)?;
    Ok(Parsed {
        proto: ip.protocol(),
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        len: ip.total_len() as usize,
        ihl: ip.header_len(),
        dont_frag: ip.dont_frag(),
        first_fragment_of_many: ip.more_frags() && ip.frag_offset() == 0,
        later_fragment: ip.frag_offset() != 0,
        ident: ip.ident(),
        mtu_len: ip.total_len() as usize,
        segs: 1,
    })
}

/// Remembers where the later fragments of a datagram go. When the tracker is full they will be
/// dropped as `fragment_no_flow`; the first fragment itself still goes through.
pub(super) fn remember_fragment(
    shared: &Shared,
    key: (Ipv4Addr, Ipv4Addr, u8, u16),
    dest: DestId,
    now: Instant,
) {
    let Ok(mut f) = shared.frags.lock() else {
        return;
    };
    if f.map.len() >= FRAG_MAX && !f.map.contains_key(&key) {
        f.map.retain(|_, (_, exp)| *exp > now);
        if f.map.len() >= FRAG_MAX {
            return;
        }
    }
    f.map.insert(key, (dest, now + FRAG_TIMEOUT));
}

fn mss_clamp_for(snap: &Snapshot, proto: Protocol, vip: Ipv4Addr, port: u16) -> Option<u16> {
    snap.service(proto, vip, port)
        .and_then(|s| s.config.mss_clamp)
}

/// Connection counts: ESTABLISHED is active, every other state inactive (as IPVS).
fn add_count(state: &super::sched::DestState, s: ConnState, delta: i32) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = if s.is_active() {
        &state.active
    } else {
        &state.inactive
    };
    if delta > 0 {
        c.fetch_add(delta as u32, Relaxed);
    } else {
        // Never wrap below zero, even if counts were lost across a table swap.
        let _ = c.fetch_update(Relaxed, Relaxed, |v| {
            Some(v.saturating_sub((-delta) as u32))
        });
    }
}

/// Moves a TCP flow's state for a packet with `flags` travelling in `dir`, keeping the real
/// server's active/inactive counts in step.
pub(super) fn step_state(conn: &mut Conn, dest: &Dest, flags: TcpFlags, dir: Direction) {
    let next = conn.state.after(flags, dir);
    if next != conn.state {
        move_counts(&dest.state, conn.state, next);
        conn.state = next;
    }
}

pub(super) fn move_counts(state: &super::sched::DestState, from: ConnState, to: ConnState) {
    if from.is_active() != to.is_active() {
        add_count(state, from, -1);
        add_count(state, to, 1);
    }
}

/// A connection is gone: give back its count and its hold on the persistence template.
pub(super) fn release(snap: &Snapshot, shared: &Shared, key: &ConnKey, conn: &Conn, now: Instant) {
    // A held server gets its counts back too: they are the ones it returns with.
    let Some(dest) = snap.dest_or_held(conn.dest) else {
        return;
    };
    add_count(&dest.state, conn.state, -1);
    dest.state
        .update_overload(dest.config.u_threshold, dest.config.l_threshold);
    let svc_key = dest.service;
    if let Some(svc) = snap.service(svc_key.proto, svc_key.vip, svc_key.port) {
        if let Some(pers) = svc.persistence() {
            let tkey = template_key(key.proto, key.caddr, pers.netmask, key.vaddr, svc_key.port);
            shared.templates.release_for(&tkey, conn.dest, now);
        }
    }
}

/// ICMP to a VIP: errors about a known flow go to that flow's real server (a NAT flow's are
/// translated first).
#[allow(clippy::too_many_arguments)]
fn handle_icmp(
    config: &DirectorConfig,
    counters: &mut Counters,
    snap: &Snapshot,
    shared: &Shared,
    conns: &mut ConnTable,
    buf: &mut [u8],
    p: &Parsed,
    now: Instant,
) -> Verdict {
    let icmp_bytes = &buf[p.ihl..p.len];
    let Ok(msg) = icmp::Icmpv4Packet::new_checked(icmp_bytes) else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    if !msg.is_error() {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    }
    // The embedded packet is one the real server sent from the VIP to the client.
    let Some(inner) = msg.invoking_packet() else {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    };
    if inner.len() < 20 || inner[0] >> 4 != 4 {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    }
    let ihl = ((inner[0] & 0x0f) as usize) * 4;
    if ihl < 20 || inner.len() < ihl + 4 {
        return Verdict::Drop(DropReason::IcmpUnsupported);
    }
    let proto = inner[9];
    let src = Ipv4Addr::new(inner[12], inner[13], inner[14], inner[15]);
    let dst = Ipv4Addr::new(inner[16], inner[17], inner[18], inner[19]);
    let sport = u16::from_be_bytes([inner[ihl], inner[ihl + 1]]);
    let dport = u16::from_be_bytes([inner[ihl + 2], inner[ihl + 3]]);
    let key = ConnKey {
        proto,
        flags: 0,
        caddr: dst,
        cport: dport,
        vaddr: src,
        vport: sport,
    };
    let Some(dest) = conns.get(&key).and_then(|c| snap.dest(c.dest)) else {
        if snap.has_nat() {
            return nat::icmp_from_client(counters, snap, shared, buf, p, now);
        }
        return Verdict::Drop(DropReason::IcmpNoFlow);
    };
    let hash = flow_hash(&key);
    forward(config, counters, dest, buf, p, None, hash)
}

pub(super) fn forward(
    config: &DirectorConfig,
    counters: &mut Counters,
    dest: &Dest,
    buf: &mut [u8],
    p: &Parsed,
    mss_clamp: Option<u16>,
    hash: u32,
) -> Verdict {
    if let Some(mss) = mss_clamp {
        if let Ok(mut tcp) = TcpPacket::new_checked(&mut buf[p.ihl..p.len]) {
            if tcp.clamp_mss(mss) {
                counters.mss_clamped += 1;
            }
        }
    }
    encapsulate(config, counters, dest, buf, p, hash)
}

fn encapsulate(
    config: &DirectorConfig,
    counters: &mut Counters,
    dest: &Dest,
    buf: &mut [u8],
    p: &Parsed,
    hash: u32,
) -> Verdict {
    if dest.config.forward == Forward::Dr {
        return super::dr::route(counters, dest, buf, p);
    }
    if dest.config.forward == Forward::Nat {
        return nat::to_server(config, counters, dest, buf, p);
    }
    let v = tunnel(
        config,
        counters,
        dest.config.addr,
        dest.config.forward,
        buf,
        p,
        hash,
    );
    if let Verdict::Encap(_) = v {
        let per_dest = counters.dest(dest.id);
        per_dest.in_pkts += u64::from(p.segs);
        per_dest.in_bytes += p.len as u64;
    }
    v
}

/// Encapsulates the packet to `to` with `forward`'s tunnel: ICMP fragmentation-needed if it
/// has DF and does not fit the tunnel MTU, outer fragments if it has no DF and does not fit.
pub(super) fn tunnel(
    config: &DirectorConfig,
    counters: &mut Counters,
    to: Ipv4Addr,
    forward: Forward,
    buf: &mut [u8],
    p: &Parsed,
    hash: u32,
) -> Verdict {
    let Forward::Tunnel {
        tun_type,
        tun_port,
        tun_csum,
        gre_key,
    } = forward
    else {
        return Verdict::Drop(DropReason::UnsupportedForward);
    };
    let tunnel = encap::Tunnel::new(tun_type, tun_port, tun_csum, gre_key);
    let overhead = encap::overhead(&tunnel);
    let too_big = p.mtu_len + overhead > config.tunnel_mtu as usize;
    if too_big && p.dont_frag {
        let mtu = config.tunnel_mtu.saturating_sub(overhead as u16);
        counters.drops[DropReason::TooBig as usize] += 1;
        let kind = EncapKind::from(tun_type);
        counters.encap_errors.count(kind, EncapError::TooBig, 1);
        return match icmp::frag_needed_in_place(buf, p.len, mtu) {
            Some(len) => Verdict::Reply { len },
            None => Verdict::Drop(DropReason::TooBig),
        };
    }
    let params = OuterParams {
        src: config.local_addr,
        dst: to,
        tunnel,
        flow_hash: hash,
    };
    let mut header = [0u8; MAX_OUTER_HEADER];
    // A GSO super-packet's header is built for its first segment (the driver fixes it per
    // segment); a whole one may not even fit an outer IPv4 length.
    let Ok(n) = encap::build_outer(&params, &buf[..p.mtu_len.min(p.len)], &mut header) else {
        return Verdict::Drop(DropReason::MalformedIp);
    };
    // DF clear and too big: as IPVS, send it and let the outer datagram be fragmented (the
    // driver splits it; here we only check that it can). The ident is the driver's to choose.
    let frag_mtu = if too_big {
        match encap::fragment(&header[..n], p.len, config.tunnel_mtu, NonZeroU16::MIN) {
            Ok(frags) if frags.len() <= MAX_FRAGMENTS => {}
            _ => {
                let (kind, segs) = (EncapKind::from(tun_type), u64::from(p.segs));
                counters
                    .encap_errors
                    .count(kind, EncapError::TooManyFragments, segs);
                return Verdict::Drop(DropReason::TooManyFragments);
            }
        }
        counters.fragmented += 1;
        config.tunnel_mtu
    } else {
        0
    };
    Verdict::Encap(Encap {
        dst: to,
        header,
        header_len: n as u8,
        len: p.len,
        frag_mtu,
    })
}

/// A cheap, well-mixed hash of the flow for the GUE source port (ECMP/RSS spreading).
fn flow_hash(k: &ConnKey) -> u32 {
    let a = u64::from(u32::from(k.caddr)) << 32 | u64::from(u32::from(k.vaddr));
    let b = u64::from(k.cport) << 16 | u64::from(k.vport) | u64::from(k.proto) << 32;
    let mut x = a ^ b.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 16) as u32
}

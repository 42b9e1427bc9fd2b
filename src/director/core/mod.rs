//! The sans-IO director: one packet in, one [`Verdict`] out.
//!
//! Each worker thread owns a [`Director`] (and with it a connection table, as the kernel keeps a
//! flow on one TUN queue). Everything that must be global across workers lives in [`Shared`]:
//! the published [`Snapshot`] of services, the persistence templates and the fragment tracker.
//! Scheduling state (round-robin position, connection counts) is atomic inside the snapshot's
//! schedulers, so decisions are global without a lock on the packet path.
//!
//! [`Director::handle_packet`] parses the packet once ([`packet::parse`]), then decides in this
//! order: a pinned health probe ([`probe_pin`]), a tunnel route ([`route`]), the S-NAT gateway
//! ([`snat`]), a NAT real server's reply ([`nat`]), a later fragment (the first fragment's
//! server), ICMP to a VIP, and finally TCP/UDP to a VIP: the connection table, or the scheduler
//! for a new flow. `forward` then hands the packet to the real server's mode.

#[cfg(test)]
mod chance_tests;
mod chances;
mod forward;
mod sync;
mod sync6;
#[cfg(test)]
mod sync6_tests;
#[cfg(test)]
mod sync_tests;
#[cfg(test)]
mod tests;
mod v6;
#[cfg(test)]
mod v6_tests;

use std::net::Ipv4Addr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};

use super::conn::ConnTable6;
use super::conn::DestId;
use super::conn::{template_key, Conn, ConnKey, ConnState, ConnTable, Direction, SyncRecord};
use super::modes::context::Ctx;
use super::modes::icmp_limit::IcmpLimiter;
use super::modes::{nat, probe_pin, route, snat, tunnel};
use super::packet;
use super::packet::counters::Counters;
use super::packet::verdict::{DropReason, Verdict};
use super::sched::FlowKey;
use super::shared::counts::{add_count, release, release6, step_state};
use super::shared::{DirectorConfig, Shared};
use super::stats::{BatchHistogram, EncapError, EncapKind, SendSocket};
use super::table::{Dest, Service, Snapshot};
use crate::encap::auth::LaneCounter;
use crate::encap::Tunnel;
use crate::hash::flow_hash;
use crate::model::{Forward, Protocol};
use crate::time::{Duration, Instant};
use crate::wire::{IpProtocol, TcpFlags};
use chances::Chances;
use forward::{forward, handle_icmp};
pub use sync::{InstallStats, SYNC_QUEUE_MAX};

/// The sans-IO director core of one worker.
pub struct Director {
    shared: Arc<Shared>,
    cache: Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
    conns: ConnTable,
    /// IPv6 flows (a table of their own, so IPv4 entries keep their size).
    conns6: ConnTable6,
    config: DirectorConfig,
    counters: Counters,
    next_sweep: Instant,
    /// Connection-sync records queued for [`Director::take_sync`].
    sync_out: Vec<SyncRecord>,
    /// IPv6 connection-sync records queued for [`Director::take_sync6`].
    sync_out6: Vec<super::conn::SyncRecord6>,
    /// This worker's ICMP error budget.
    icmp: IcmpLimiter,
    /// This worker's lane of sequence numbers for authenticated GUE.
    auth_seq: LaneCounter,
    /// Second chance: the flows picked up mid-way whose previous-table server differs from
    /// theirs, and that server (only such flows pay for an entry; checked only while any).
    chances: Chances,
}

impl core::fmt::Debug for Director {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Director")
            .field("conns", &self.conns.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Director {
    /// A worker core reading tables from `shared`.
    pub fn new(shared: Arc<Shared>, config: DirectorConfig) -> Director {
        let cache = Cache::new(shared.snapshot_cell().clone());
        let conns = ConnTable::new(config.initial_conns, config.max_conns, config.seed);
        // Grown on demand: a director without IPv6 services keeps it at its smallest.
        let conns6 = ConnTable6::new(0, config.max_conns, config.seed ^ 0x6666);
        let icmp = IcmpLimiter::new(config.icmp_rate, config.icmp_burst);
        let auth_seq = LaneCounter::new(shared.take_lane(), config.auth_seq_seed);
        Director {
            icmp,
            shared,
            cache,
            conns,
            conns6,
            config,
            counters: Counters::default(),
            next_sweep: Instant::ZERO,
            sync_out: Vec::new(),
            sync_out6: Vec::new(),
            auth_seq,
            chances: Chances::default(),
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

    /// Whether the driver must cut GSO super-packets before the core decides them: while
    /// tunnel keys are set (each authenticated GUE segment needs its own MAC and sequence
    /// number) or an IPv4 VIP has real servers behind an IPv6 underlay (whose outer headers
    /// are built for one packet).
    pub fn cuts_gso(&mut self) -> bool {
        self.shared.tunnel_auth() || self.cache.load().tunnels_ipv4_over_ipv6()
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

    /// This worker's IPv6 connection table.
    pub fn conns6(&self) -> &ConnTable6 {
        &self.conns6
    }

    /// This worker's connection table, for tests that plant flows in it.
    #[cfg(test)]
    pub fn conns_mut(&mut self) -> &mut ConnTable {
        &mut self.conns
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
            release(snap, &shared.templates, key, conn, now);
        });
        if !self.conns6.is_empty() {
            let budget6 = self.config.sweep_budget.max(self.conns6.capacity() / 20);
            self.conns6.sweep(now, budget6, |key, conn| {
                counters.conns_expired += 1;
                release6(snap, &shared.templates6, key, conn, now);
            });
        }
        shared.nat.sweep_next(now, |c| {
            counters.conns_expired += 1;
            release(snap, &shared.templates, &c.key, &c.conn, now);
        });
        shared.nat6.sweep_next(now, |c| {
            counters.conns_expired += 1;
            release6(snap, &shared.templates6, &c.key, &c.conn, now);
        });
        shared.snat.sweep_next(now, |_| counters.conns_expired += 1);
        shared
            .snat6
            .sweep_next(now, |_| counters.conns_expired += 1);
        if self.chances.queued() > 0 {
            let conns = &self.conns;
            self.chances.prune(sweep_budget, |k, p| {
                conns.get(k).is_some_and(|c| c.dest != p)
            });
        }
    }

    /// Flows that carry a second choice (second chance) in this worker.
    pub fn second_chances(&self) -> usize {
        self.chances.len()
    }

    /// Starts loading the connection-table slot the packet in `buf` will look up. The driver
    /// calls it for every packet of a batch before [`handle_packet`](Self::handle_packet), so
    /// the cache misses of a large table overlap. Never fails: a packet it cannot parse is
    /// simply not prefetched.
    #[inline]
    pub fn prefetch(&self, buf: &[u8]) {
        if buf.first().is_some_and(|b| b >> 4 == 6) {
            return self.prefetch6(buf);
        }
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

    /// [`prefetch`](Self::prefetch) for an IPv6 packet whose TCP or UDP header follows the
    /// fixed header (one with extension headers is not prefetched).
    fn prefetch6(&self, buf: &[u8]) {
        let proto = buf.get(6).copied().unwrap_or(0);
        if !(proto == IpProtocol::TCP || proto == IpProtocol::UDP) || buf.len() < 44 {
            return;
        }
        let addr = |at: usize| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&buf[at..at + 16]);
            std::net::Ipv6Addr::from(a)
        };
        let port = |at: usize| u16::from_be_bytes([buf[at], buf[at + 1]]);
        let key = super::conn::ConnKey6::new(proto, addr(8), port(40), addr(24), port(42));
        self.conns6.prefetch(&key);
    }

    /// Decides one packet read from the TUN device. `buf` holds exactly one IPv4 packet (its
    /// length is the read length); it may be edited in place (MSS clamp, ICMP reply).
    pub fn handle_packet(&mut self, now: Instant, buf: &mut [u8]) -> Verdict {
        self.handle(now, buf, None)
    }

    /// Decides a TCP/IPv4 GSO super-packet (one flow, `segs` segments, the largest
    /// `seg_len` bytes long as an IPv4 packet) once for all its segments. The verdict is the
    /// one a single packet gets, with these differences: the MTU checks (ICMP
    /// fragmentation-needed, fragmentation) use `seg_len`; an [`Encap`](super::Encap)'s outer header is built
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
        if buf.first().is_some_and(|b| b >> 4 == 6) {
            return self.decide6(now, buf);
        }
        let mut p = match packet::parse(buf) {
            Ok(p) => p,
            Err(r) => return Verdict::Drop(r),
        };
        if let Some((seg_len, segs)) = gso {
            p.mtu_len = seg_len.min(p.len);
            p.segs = segs;
        }
        let snap = self.cache.load();
        let mut cx = Ctx {
            config: &self.config,
            counters: &mut self.counters,
            snap,
            shared: &self.shared,
            now,
            icmp: &mut self.icmp,
            auth_seq: &mut self.auth_seq,
            second_choice: None,
        };
        // A health probe of the director's own, through the data path to the server it checks
        // (one atomic load while no probe is in flight).
        if cx.shared.probe_pins.is_source(p.src) {
            if let Some(v) = probe_pin::handle(&mut cx, buf, &p) {
                return v;
            }
        }

        // A destination behind a tunnel route (and not a VIP): tunnel it as it is, untracked.
        if let Some(r) = snap.tunnel_route(p.dst) {
            let hash = route::flow_hash(buf);
            return tunnel::encap(&mut cx, r.via, r.tunnel, buf, &p, hash);
        }

        // S-NAT gateway: the inside hosts' own connections out, and their replies back.
        if snap.snat.has::<std::net::Ipv4Addr>() {
            if let Some(v) = snat::handle(&mut cx, buf, &p) {
                return v;
            }
        }

        // With NAT real servers, what is not addressed to a VIP is one of their replies.
        if snap.has_nat() && !snap.is_vip(p.dst) {
            return nat::handle_from_server(&mut cx, buf, &p);
        }

        // Non-first fragments carry no ports: they follow the first fragment's real server.
        let frag_key = p.frag_key();
        if p.later_fragment {
            let dest =
                cx.shared
                    .follow_fragment(&frag_key, p.frag_offset, p.payload_len(), !p.more_frags);
            return match dest.and_then(|d| snap.dest(d)) {
                Some(dest) => forward(&mut cx, dest, buf, &p, None, 0),
                None => Verdict::Drop(DropReason::FragmentNoFlow),
            };
        }

        let proto = match p.proto {
            IpProtocol::TCP => Protocol::Tcp,
            IpProtocol::UDP => Protocol::Udp,
            IpProtocol::ICMP => return handle_icmp(&mut cx, &mut self.conns, buf, &p),
            _ => return Verdict::Drop(DropReason::UnsupportedProtocol),
        };
        let Some(l4) = p.l4 else {
            return Verdict::Drop(DropReason::MalformedL4);
        };
        let (sport, dport, flags) = (l4.sport, l4.dport, l4.flags);
        let key = ConnKey {
            proto: p.proto,
            flags: 0,
            caddr: p.src,
            cport: sport,
            vaddr: p.dst,
            vport: dport,
        };
        let hash = flow_hash(p.src, sport, p.dst, dport, p.proto);
        let syn_only = l4.syn_only();
        let rst = flags.contains(TcpFlags::RST);
        // IPVS sloppy_tcp: a TCP packet other than a SYN may start a flow (a RST never does);
        // not while connection sync has not filled the table yet (`Shared::table_synced`).
        let sloppy = self.config.sloppy_tcp && !rst && cx.shared.table_synced();

        // Established flow: the hot path.
        let mut reuse = false;
        let mut found = self.conns.get_mut(&key);
        if found.is_none() && !cx.shared.synced.is_empty() {
            // A flow a peer director synced, its first packet here.
            found = sync::adopt(&mut self.conns, cx.shared, snap, cx.counters, &key, now);
        }
        if let Some(conn) = found {
            let live = conn.expires() > now;
            if live && !(syn_only && conn.state.is_closing()) {
                if let Some(dest) = snap.dest(conn.dest) {
                    let (before, was_confirmed) = (conn.state, conn.is_confirmed());
                    if proto == Protocol::Tcp {
                        step_state(conn, dest, flags, Direction::InputOnly);
                        if l4.confirms() {
                            conn.confirm();
                        }
                    } else {
                        // A second UDP datagram.
                        conn.confirm();
                    }
                    let left = flow_timeout(snap, &self.config, conn);
                    conn.set_expires(now + left);
                    // A state change or the first client data: the backup hears of it (a
                    // confirmed flow keeps its state's whole timeout there too).
                    let changed = conn.state != before || conn.is_confirmed() != was_confirmed;
                    if changed && cx.shared.sync_emit() {
                        let rec = sync::record(dest, key, conn.state, left, conn.is_confirmed());
                        sync::queue(&mut self.sync_out, cx.counters, rec);
                    }
                    if p.first_fragment_of_many {
                        cx.shared
                            .remember_fragment(frag_key, conn.dest, p.payload_len(), now);
                    }
                    let clamp = if syn_only {
                        mss_clamp_for(snap, proto, p.dst, dport)
                    } else {
                        None
                    };
                    if !self.chances.is_empty() {
                        cx.second_choice = self
                            .chances
                            .get(&key)
                            .and_then(|id| snap.dest(id))
                            .and_then(Dest::addr4);
                    }
                    return forward(&mut cx, dest, buf, &p, clamp, hash);
                }
                if snap.is_held(conn.dest) {
                    // expire_nodest_conn = false and the server's health check failed: keep
                    // the flow (without refreshing it) for the server's return.
                    return Verdict::Drop(DropReason::DestinationDown);
                }
                // expire_nodest_conn: the real server left the table; forget the flow. A TCP
                // packet other than a SYN cannot start a new flow and is lost (unless
                // sloppy_tcp); a UDP packet or a SYN is rescheduled below as a new flow, as
                // IPVS does.
                if proto == Protocol::Tcp && !syn_only && !sloppy {
                    let old = *conn;
                    self.conns.remove(&key);
                    cx.counters.conns_expired += 1;
                    release(snap, &cx.shared.templates, &key, &old, now);
                    return Verdict::Drop(DropReason::DestinationGone);
                }
            }
            reuse = true;
        } else if snap.has_nat() {
            match nat::handle_from_client(&mut cx, &key, &l4, &p) {
                Some(nat::FromClient::Flow { dest, mss_clamp }) => {
                    return forward(&mut cx, dest, buf, &p, mss_clamp, 0);
                }
                Some(nat::FromClient::Drop(r)) => return Verdict::Drop(r),
                None => {}
            }
        }
        if reuse {
            // Expired, or a new SYN reusing a closing flow's ports (IPVS conn_reuse_mode).
            if let Some(old) = self.conns.remove(&key) {
                cx.counters.conns_expired += 1;
                release(snap, &cx.shared.templates, &key, &old, now);
            }
        }

        // A new flow.
        let Some(svc) = snap.service(proto, p.dst, dport) else {
            return Verdict::Drop(DropReason::NoService);
        };
        if let Err(why) = cx.shared.starts_flows() {
            return Verdict::Drop(why);
        }
        // Only a SYN starts a TCP flow, or with sloppy_tcp any packet but a RST.
        let picked_up = proto == Protocol::Tcp && !syn_only;
        if proto == Protocol::Tcp && (rst || (!syn_only && !sloppy)) {
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
        // Persistence: the live template's server, if it is still of use. The template is
        // made (or counted) only once the flow is in the table, below.
        let dest_id = match svc.persistence() {
            None => pick(),
            Some(pers) => {
                let tkey = template_key(
                    p.proto,
                    p.src,
                    pers.netmask.v4(),
                    p.dst,
                    svc.config.key.port,
                );
                templated(snap, svc, &cx.shared.templates, &tkey, now).or_else(pick)
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
            // A SYN: SYN_RECV; picked up mid-flow (sloppy_tcp): ESTABLISHED for an ACK, as
            // IPVS's table gives from NONE.
            ConnState::None.after(flags, dir)
        } else {
            ConnState::Udp
        };
        let mut conn = Conn::new(dest.id, state, now);
        if proto == Protocol::Tcp && l4.confirms() {
            // Picked up mid-flow (sloppy_tcp) on a segment with data.
            conn.confirm();
        }
        conn.set_expires(now + flow_timeout(snap, &self.config, &conn));
        let inserted = if is_nat {
            nat::insert(&mut cx, key, dest, conn)
        } else {
            // Over the high-water mark, a never-confirmed flow makes way for this one.
            let (counters, shared) = (&mut *cx.counters, cx.shared);
            self.conns.make_room(now, |k, c, why| {
                counters.conns_evicted[why as usize] += 1;
                counters.conns_expired += 1;
                release(snap, &shared.templates, k, c, now);
            });
            self.conns
                .insert(key, conn)
                .map(drop)
                .map_err(|_| DropReason::ConnTableFull)
        };
        if let Err(reason) = inserted {
            return Verdict::Drop(reason);
        }
        if !self.chances.is_empty() {
            self.chances.remove(&key);
        }
        if picked_up && !is_nat {
            let window = self.config.second_chance_window;
            if let Some(p2) = second_choice(svc, dest, &flow, now, window) {
                self.chances.insert(key, p2);
                cx.second_choice = snap.dest(p2).and_then(Dest::addr4);
                cx.counters.second_chance_marked += 1;
            }
        }
        if let Some(pers) = svc.persistence() {
            let tkey = template_key(
                p.proto,
                p.src,
                pers.netmask.v4(),
                p.dst,
                svc.config.key.port,
            );
            let timeout = Duration::from_secs(u64::from(pers.timeout));
            cx.shared.templates.bind(tkey, dest.id, now, timeout);
        }
        cx.counters.conns_created += 1;
        cx.counters.sloppy_created += u64::from(picked_up);
        cx.counters.dest(dest.id).conns += 1;
        add_count(&dest.state, state, 1);
        dest.state
            .update_overload(dest.config.u_threshold, dest.config.l_threshold);
        if !is_nat && cx.shared.sync_emit() {
            let left = flow_timeout(snap, &self.config, &conn);
            let rec = sync::record(dest, key, state, left, conn.is_confirmed());
            sync::queue(&mut self.sync_out, cx.counters, rec);
            if let Some(pers) = svc.persistence() {
                let tkey = template_key(
                    p.proto,
                    p.src,
                    pers.netmask.v4(),
                    p.dst,
                    svc.config.key.port,
                );
                let timeout = Duration::from_secs(u64::from(pers.timeout));
                let rec = sync::record(dest, tkey, ConnState::None, timeout, false);
                sync::queue(&mut self.sync_out, cx.counters, rec);
            }
        }
        if p.first_fragment_of_many {
            cx.shared
                .remember_fragment(frag_key, dest.id, p.payload_len(), now);
        }
        let clamp = if syn_only { svc.config.mss_clamp } else { None };
        forward(&mut cx, dest, buf, &p, clamp, hash)
    }
}

/// The real server of a persistent service's live template `tkey`, if it is still of use
/// (IPVS `ip_vs_check_template`): not if its server left the table (deleted, or held while
/// down), or is quiesced (weight 0) and the service has `expire_quiescent_template`. A template
/// of no use is expired (with every template of a deleted server) and `None` returned: the
/// caller schedules afresh. Both families' templates.
fn templated<K: super::conn::TableKey>(
    snap: &Snapshot,
    svc: &Service,
    templates: &super::conn::Templates<K>,
    tkey: &K,
    now: Instant,
) -> Option<DestId> {
    let quiescent = svc.config.policy.expire_quiescent_template;
    let usable = |id| {
        snap.dest(id)
            .is_some_and(|d| !(quiescent && d.config.weight == 0))
    };
    match templates.lookup(tkey, now) {
        Some(id) if usable(id) => Some(id),
        Some(stale) => {
            if snap.dest_or_held(stale).is_none() {
                templates.remove_dest(stale);
            } else {
                templates.remove_if_dest(tkey, stale);
            }
            None
        }
        None => None,
    }
}

/// How long `conn` lives after a packet ([`Conn::timeout`] with the configured cap).
/// Second chance: the server that the service's previous `mh` table gives a flow picked up
/// mid-way, if the table changed less than `window` ago, that server is still in the service
/// and it is not `dest` (the new table's); GUE real servers only (the only tunnel with room
/// for it).
fn second_choice(
    svc: &Service,
    dest: &Dest,
    flow: &FlowKey,
    now: Instant,
    window: Duration,
) -> Option<DestId> {
    if !matches!(dest.config.forward, Forward::Tunnel(Tunnel::Gue { .. })) {
        return None;
    }
    let (addr, port) = svc.previous_pick(flow, now, window)?;
    if (addr, port) == (dest.config.addr, dest.config.port) {
        return None;
    }
    svc.dest_id_of(addr, port)
}

fn flow_timeout(snap: &Snapshot, config: &DirectorConfig, conn: &Conn) -> Duration {
    conn.timeout(&snap.timeouts, config.unconfirmed_timeout)
}

fn mss_clamp_for(snap: &Snapshot, proto: Protocol, vip: Ipv4Addr, port: u16) -> Option<u16> {
    snap.service(proto, vip, port)
        .and_then(|s| s.config.mss_clamp)
}

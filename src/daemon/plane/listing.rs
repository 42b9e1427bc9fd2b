//! What `adm -L` shows: the table with live connection counts, counters and rates; `-L -c`:
//! every connection, NAT flow, S-NAT mapping and persistence template. And the rate ticker.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use super::ControlPlane;
use crate::control::format::{ConnEntry, ConnTableStatus, Listing, Rates, Stats};
#[cfg(doc)]
use crate::control::proto::Request;
use crate::control::proto::{Response, CONN_CHUNK};
use crate::director::conn::{Conn, ConnKey, ConnKey6, DestId, KEY_TEMPLATE};
use crate::director::snat;
use crate::director::stats::{self, Totals};
use crate::director::{Director, Shared, Snapshot};
use crate::model::{Protocol, ServiceSet};
use crate::time::Instant;

/// Connection-table slots `-L -c` reads per hold of a worker's lock (about 0.5 MB of
/// slots: tens of microseconds). A flow that moves across a piece boundary while the lock is
/// released (an insert, a removal or the table's growth in between) may be missed or listed
/// twice, as with any listing of a live table; a flow held in two tables at once is listed
/// once ([`ConnChunks`]).
const LIST_PIECE_SLOTS: usize = 16_384;

/// Flows `-L -c` looks up in another worker's table per hold of its lock (to list a flow
/// held twice once): tens of microseconds.
const LOOKUPS_PER_HOLD: usize = 1024;

impl ControlPlane {
    /// The workers' per-server counters, summed (each worker's lock is held only to read).
    pub(super) fn raw_stats(&self) -> HashMap<DestId, Totals> {
        let mut per_worker = Vec::with_capacity(self.cores.len());
        for core in &self.cores {
            if let Ok(d) = core.lock() {
                per_worker.push(d.counters().per_dest.clone());
            }
        }
        stats::sum(per_worker.iter().map(Vec::as_slice))
    }

    /// Runs the rate estimator when its interval is due; the driver calls it often.
    pub fn tick(&self) {
        let now = self.clock.now();
        let due = self.stats.lock().map(|b| b.due(now)).unwrap_or(false);
        if due {
            let raw = self.raw_stats();
            if let Ok(mut book) = self.stats.lock() {
                book.tick(now, &raw);
            }
        }
    }

    /// The table with live connection counts.
    pub fn listing(&self) -> Listing {
        let set = match self.state.lock() {
            Ok(st) => st.health.apply(&st.set).0,
            Err(_) => ServiceSet::default(),
        };
        let snap = self.shared.snapshot();
        let mut templates: HashMap<DestId, u32> = HashMap::new();
        for (_, dest, _, _) in self.shared.templates.snapshot(self.clock.now()) {
            *templates.entry(dest).or_default() += 1;
        }
        let raw = self.raw_stats();
        let book = self.stats.lock().ok();
        let mut listing = Listing::from_set(&set);
        for svc in &mut listing.services {
            let key = svc.config.key;
            let Some(live) = snap.service_of(&key) else {
                continue;
            };
            for d in &mut svc.dests {
                let found = live
                    .sched_dests
                    .iter()
                    .zip(&live.dest_ids)
                    .find(|(s, _)| s.addr == d.config.addr && s.port == d.config.port);
                if let Some((sd, id)) = found {
                    d.active_conns = sd.state.active();
                    d.inactive_conns = sd.state.inactive();
                    d.persistent_conns = templates.get(id).copied().unwrap_or(0);
                    if let Some(book) = &book {
                        let t = book.totals(&raw, *id);
                        let r = book.rate(*id);
                        d.stats = Stats {
                            conns: t.conns,
                            in_pkts: t.in_pkts,
                            out_pkts: t.out_pkts,
                            in_bytes: t.in_bytes,
                            out_bytes: t.out_bytes,
                        };
                        d.rates = Rates {
                            cps: r.cps.round() as u64,
                            in_pps: r.pps.round() as u64,
                            out_pps: r.out_pps.round() as u64,
                            in_bps: r.bps.round() as u64,
                            out_bps: r.out_bps.round() as u64,
                        };
                    }
                }
            }
            // A service's counters are its real servers' (only NAT replies flow back).
            for d in &svc.dests {
                svc.stats.conns += d.stats.conns;
                svc.stats.in_pkts += d.stats.in_pkts;
                svc.stats.in_bytes += d.stats.in_bytes;
                svc.stats.out_pkts += d.stats.out_pkts;
                svc.stats.out_bytes += d.stats.out_bytes;
                svc.rates.cps += d.rates.cps;
                svc.rates.in_pps += d.rates.in_pps;
                svc.rates.in_bps += d.rates.in_bps;
                svc.rates.out_pps += d.rates.out_pps;
                svc.rates.out_bps += d.rates.out_bps;
            }
        }
        listing.conn_table = Some(Box::new(self.conn_table_status()));
        listing
    }

    /// The bounded state's fill and evictions (each worker's lock held only to read its
    /// counters).
    pub fn conn_table_status(&self) -> ConnTableStatus {
        use crate::director::conn::Eviction;
        use crate::director::DropReason;
        let mut st = ConnTableStatus::default();
        for core in &self.cores {
            let Ok(d) = core.lock() else { continue };
            let c = d.counters();
            st.entries += d.conns().len() as u64;
            st.capacity += d.conns().max_entries() as u64;
            st.high_water += d.conns().high_water() as u64;
            st.evicted_expired += c.evicted(Eviction::Expired);
            st.evicted_unconfirmed += c.evicted(Eviction::Unconfirmed);
            st.refused_full += c.dropped(DropReason::ConnTableFull);
            st.icmp_rate_limited += c.icmp_rate_limited;
        }
        let (templates, frags) = (&self.shared.templates, self.shared.frags());
        st.nat_entries = (self.shared.nat.len() + self.shared.nat6.len()) as u64;
        st.templates = templates.len() as u64;
        st.template_capacity = templates.max() as u64;
        st.templates_evicted = templates.evicted();
        st.templates_refused = templates.refused();
        st.fragments = frags.len() as u64;
        st.fragment_capacity = frags.max() as u64;
        st.fragments_evicted = frags.evicted();
        st
    }

    /// Every worker's connections plus the persistence templates, as `-L -c` lists them, in
    /// one vector: [`ControlPlane::conn_chunks`] collected (for [`Request::ListConns`], the
    /// one-line answer older `adm` builds ask for).
    pub fn conn_entries(&self) -> Vec<ConnEntry> {
        self.conn_chunks()
            .flat_map(|r| match r {
                Response::ConnsChunk(c) => c,
                _ => Vec::new(),
            })
            .collect()
    }

    /// The streamed `-L -c` answer ([`Request::StreamConns`]), see [`ConnChunks`].
    pub fn conn_chunks(&self) -> ConnChunks {
        ConnChunks {
            shared: self.shared.clone(),
            cores: self.cores.clone(),
            now: self.clock.now(),
            snap: self.shared.snapshot(),
            phase: Phase::Worker { core: 0, at: 0 },
            pending: VecDeque::new(),
        }
    }
}

/// Where a streamed `-L -c` is in its walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Worker `core`'s table, from slot `at`.
    Worker { core: usize, at: usize },
    /// Worker `core`'s IPv6 table, from slot `at`.
    Worker6 { core: usize, at: usize },
    /// The flows peers synced that no worker has taken yet, from `cursor`.
    Synced { cursor: u64 },
    /// The IPv6 flows peers synced that no worker has taken yet, from `cursor`.
    Synced6 { cursor: u64 },
    /// The shared NAT flows, S-NAT mappings and persistence templates.
    Shared,
    /// Everything was listed: [`Response::ConnsEnd`] comes next.
    End,
    /// The answer is over.
    Done,
}

/// The streamed `-L -c` answer ([`Request::StreamConns`]): [`Response::ConnsChunk`]s of at
/// most [`CONN_CHUNK`] entries, then [`Response::ConnsEnd`], made as the socket takes them.
///
/// It walks each worker's table a piece of [`LIST_PIECE_SLOTS`] slots at a time (the worker
/// waits at most for one piece between two of its batches, never for the whole listing, and
/// never two workers at once), then the flows peers synced that no worker has taken yet, then
/// the shared NAT flows, S-NAT mappings and persistence templates (each a bounded table, copied
/// whole as before). It holds one piece's entries at a time, never the whole listing.
///
/// A flow is listed once: a former master's workers may hold a flow the new master synced back
/// into the shared table. Each copy is listed by its holder only when no other copy lives
/// longer (on a tie the first worker's wins, the synced table's last): the other holders are
/// asked with lookups, [`LOOKUPS_PER_HOLD`] per hold of a worker's lock.
pub struct ConnChunks {
    shared: Arc<Shared>,
    cores: Vec<Arc<Mutex<Director>>>,
    now: Instant,
    snap: Arc<Snapshot>,
    phase: Phase,
    pending: VecDeque<ConnEntry>,
}

impl Iterator for ConnChunks {
    type Item = Response;

    fn next(&mut self) -> Option<Response> {
        while self.pending.len() < CONN_CHUNK && !matches!(self.phase, Phase::End | Phase::Done) {
            self.step();
        }
        if !self.pending.is_empty() {
            let n = self.pending.len().min(CONN_CHUNK);
            return Some(Response::ConnsChunk(self.pending.drain(..n).collect()));
        }
        if self.phase == Phase::End {
            self.phase = Phase::Done;
            return Some(Response::ConnsEnd);
        }
        None
    }
}

impl ConnChunks {
    /// One step of the walk: one piece of a table into `pending`.
    fn step(&mut self) {
        match self.phase {
            Phase::Worker { core, at } => {
                let Some(worker) = self.cores.get(core) else {
                    self.phase = Phase::Worker6 { core: 0, at: 0 };
                    return;
                };
                let mut piece = Vec::new();
                let end = at.saturating_add(LIST_PIECE_SLOTS);
                let done = match worker.lock() {
                    Ok(d) => {
                        let conns = d.conns();
                        piece.extend(conns.entries_in(at, end).map(|(_, k, c)| (*k, *c)));
                        end >= conns.capacity()
                    }
                    Err(_) => true,
                };
                self.add_listed(core, &piece);
                self.phase = if done {
                    Phase::Worker {
                        core: core + 1,
                        at: 0,
                    }
                } else {
                    Phase::Worker { core, at: end }
                };
            }
            Phase::Worker6 { core, at } => {
                // An IPv6 flow lives in one worker's table; a synced copy no worker took is
                // listed (Synced6) only when no worker holds the flow.
                let Some(worker) = self.cores.get(core) else {
                    self.phase = Phase::Synced { cursor: 0 };
                    return;
                };
                let end = at.saturating_add(LIST_PIECE_SLOTS);
                let mut piece = Vec::new();
                let done = match worker.lock() {
                    Ok(d) => {
                        let conns = d.conns6();
                        piece.extend(conns.entries_in(at, end).map(|(_, k, c)| (*k, *c)));
                        end >= conns.capacity()
                    }
                    Err(_) => true,
                };
                for (k, c) in &piece {
                    if let Some(e) = conn_entry6(k, c, self.dest_addr(c.dest), self.now) {
                        self.pending.push_back(e);
                    }
                }
                self.phase = if done {
                    Phase::Worker6 {
                        core: core + 1,
                        at: 0,
                    }
                } else {
                    Phase::Worker6 { core, at: end }
                };
            }
            Phase::Synced { cursor } => {
                let mut piece = Vec::new();
                let next = self
                    .shared
                    .synced
                    .dump(cursor, LIST_PIECE_SLOTS, self.now, &mut piece);
                self.add_listed(self.cores.len(), &piece);
                self.phase = match next {
                    Some(cursor) => Phase::Synced { cursor },
                    None => Phase::Synced6 { cursor: 0 },
                };
            }
            Phase::Synced6 { cursor } => {
                let mut piece = Vec::new();
                let next = self
                    .shared
                    .synced6
                    .dump(cursor, LIST_PIECE_SLOTS, self.now, &mut piece);
                let now = self.now;
                for worker in &self.cores {
                    let Ok(d) = worker.lock() else { continue };
                    let conns = d.conns6();
                    if conns.is_empty() {
                        continue;
                    }
                    piece.retain(|(k, _)| conns.get(k).and_then(|c| secs_left(c, now)).is_none());
                }
                for (k, c) in &piece {
                    if let Some(e) = conn_entry6(k, c, self.dest_addr(c.dest), now) {
                        self.pending.push_back(e);
                    }
                }
                self.phase = match next {
                    Some(cursor) => Phase::Synced6 { cursor },
                    None => Phase::Shared,
                };
            }
            Phase::Shared => {
                self.add_shared();
                self.phase = Phase::End;
            }
            Phase::End | Phase::Done => {}
        }
    }

    /// The address of real server `id` (held ones too; 0.0.0.0:0 for one that left).
    fn dest_addr(&self, id: DestId) -> SocketAddr {
        self.snap
            .dest_or_held(id)
            .map(|d| SocketAddr::new(d.config.addr, d.config.port))
            .unwrap_or(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0))
    }

    /// Queues the flows of `piece`, from the table of rank `rank` (worker `rank`, or the
    /// synced table when `rank` is the number of workers), whose copy is the one listed.
    fn add_listed(&mut self, rank: usize, piece: &[(ConnKey, Conn)]) {
        let now = self.now;
        let mut listed: Vec<Option<u32>> = piece.iter().map(|(_, c)| secs_left(c, now)).collect();
        for (other, worker) in self.cores.iter().enumerate() {
            if other == rank {
                continue;
            }
            let batches = piece.chunks(LOOKUPS_PER_HOLD);
            for (flows, listed) in batches.zip(listed.chunks_mut(LOOKUPS_PER_HOLD)) {
                let Ok(d) = worker.lock() else { break };
                let conns = d.conns();
                if conns.is_empty() {
                    break;
                }
                for ((k, _), mine) in flows.iter().zip(listed.iter_mut()) {
                    let theirs = conns.get(k).and_then(|c| secs_left(c, now));
                    if mine.is_some_and(|m| beats(theirs, other, m, rank)) {
                        *mine = None;
                    }
                }
            }
        }
        let synced = self.cores.len();
        if rank != synced && !self.shared.synced.is_empty() {
            for ((k, _), mine) in piece.iter().zip(listed.iter_mut()) {
                let theirs = self.shared.synced.get(k).and_then(|c| secs_left(&c, now));
                if mine.is_some_and(|m| beats(theirs, synced, m, rank)) {
                    *mine = None;
                }
            }
        }
        for ((k, c), mine) in piece.iter().zip(listed) {
            if mine.is_none() {
                continue;
            }
            if let Some(e) = conn_entry(k, c, self.dest_addr(c.dest), now) {
                self.pending.push_back(e);
            }
        }
    }

    /// Queues the shared NAT flows (IPv4, then NAT66), S-NAT mappings and persistence
    /// templates.
    fn add_shared(&mut self) {
        let now = self.now;
        let nat = self.shared.nat.flows();
        self.pending.extend(nat.iter().filter_map(|f| {
            conn_entry(
                &f.key,
                &f.conn,
                SocketAddrV4::new(f.raddr, f.rport).into(),
                now,
            )
        }));
        let nat6 = self.shared.nat6.flows();
        self.pending.extend(nat6.iter().filter_map(|f| {
            let dest = SocketAddr::new(IpAddr::V6(f.raddr), f.rport);
            conn_entry6(&f.key, &f.conn, dest, now)
        }));
        for m in snat::mappings(&self.shared.snat) {
            let Some(proto) = Protocol::from_number(m.proto) else {
                continue;
            };
            if m.expires <= now {
                continue;
            }
            let addr = |(a, p): (Ipv4Addr, u16)| SocketAddrV4::new(a, p).into();
            self.pending.push_back(ConnEntry {
                proto,
                expires_secs: (m.expires - now).as_secs() as u32,
                state: m.state.as_str().to_string(),
                client: addr(m.host),
                vip: addr(m.public),
                dest: addr(m.remote),
            });
        }
        for m in snat::mappings(&self.shared.snat6) {
            let Some(proto) = Protocol::from_number(m.proto) else {
                continue;
            };
            if m.expires <= now {
                continue;
            }
            let addr = |(a, p): (std::net::Ipv6Addr, u16)| SocketAddr::new(IpAddr::V6(a), p);
            self.pending.push_back(ConnEntry {
                proto,
                expires_secs: (m.expires - now).as_secs() as u32,
                state: m.state.as_str().to_string(),
                client: addr(m.host),
                vip: addr(m.public),
                dest: addr(m.remote),
            });
        }
        for (k, dest, expires, _controlled) in self.shared.templates.snapshot(now) {
            let Some(proto) = Protocol::from_number(k.proto) else {
                continue;
            };
            debug_assert!(k.flags & KEY_TEMPLATE != 0);
            self.pending.push_back(ConnEntry {
                proto,
                expires_secs: expires.saturating_since(now).as_secs() as u32,
                state: "NONE".to_string(),
                client: SocketAddrV4::new(k.caddr, 0).into(),
                vip: SocketAddrV4::new(k.vaddr, k.vport).into(),
                dest: self.dest_addr(dest),
            });
        }
        for (k, dest, expires, _controlled) in self.shared.templates6.snapshot(now) {
            let Some(proto) = Protocol::from_number(k.proto) else {
                continue;
            };
            self.pending.push_back(ConnEntry {
                proto,
                expires_secs: expires.saturating_since(now).as_secs() as u32,
                state: "NONE".to_string(),
                client: SocketAddr::new(IpAddr::V6(k.caddr), 0),
                vip: SocketAddr::new(IpAddr::V6(k.vaddr), k.vport),
                dest: self.dest_addr(dest),
            });
        }
    }
}

/// The whole seconds flow `c` has left at `now` (what `-L -c` shows); `None` once expired.
fn secs_left(c: &Conn, now: Instant) -> Option<u32> {
    (c.expires() > now).then(|| (c.expires() - now).as_secs() as u32)
}

/// Whether another copy of a flow (`theirs` seconds left, `None` if absent or expired, in the
/// table of rank `their_rank`) is listed instead of ours (`mine`, rank `my_rank`): it lives
/// longer, or as long in a table listed earlier.
fn beats(theirs: Option<u32>, their_rank: usize, mine: u32, my_rank: usize) -> bool {
    theirs.is_some_and(|t| t > mine || (t == mine && their_rank < my_rank))
}

/// [`conn_entry`] for an IPv6 flow (a worker's IPv6 table or NAT66).
fn conn_entry6(k: &ConnKey6, c: &Conn, dest: SocketAddr, now: Instant) -> Option<ConnEntry> {
    let proto = Protocol::from_number(k.proto)?;
    let sock = |a, p| SocketAddr::new(IpAddr::V6(a), p);
    Some(ConnEntry {
        proto,
        expires_secs: secs_left(c, now)?,
        state: c.state.as_str().to_string(),
        client: sock(k.caddr, k.cport),
        vip: sock(k.vaddr, k.vport),
        dest,
    })
}

/// One connection of a worker's table or of the shared NAT flows, as `-L -c` lists it; `None`
/// for an expired one or a protocol the listing does not know.
fn conn_entry(k: &ConnKey, c: &Conn, dest: SocketAddr, now: Instant) -> Option<ConnEntry> {
    let proto = Protocol::from_number(k.proto)?;
    if c.expires() <= now {
        return None;
    }
    Some(ConnEntry {
        proto,
        expires_secs: (c.expires() - now).as_secs() as u32,
        state: c.state.as_str().to_string(),
        client: SocketAddrV4::new(k.caddr, k.cport).into(),
        vip: SocketAddrV4::new(k.vaddr, k.vport).into(),
        dest,
    })
}

//! Connection sync in the core: the records a master director queues, the dump a backup asks
//! for, and installing a peer's records.
//!
//! The sync daemon (`crate::daemon::sync`, another layer) moves records between directors;
//! here is everything about them that touches the tables, without IO and without a clock:
//!
//! - **Emitting** ([`Director::take_sync`]): while [`Shared::set_sync_emit`] is on, each worker
//!   queues a [`SyncRecord`] for every flow it creates, every TCP state change, the moment a
//!   flow is confirmed (its first client data, [`Conn::is_confirmed`]), and, for a
//!   persistent service, the template of every new flow. The queue is bounded
//!   ([`SYNC_QUEUE_MAX`]); what does not fit is counted in `Counters::sync_dropped` (the
//!   periodic refresh carries it later). Off, it costs one relaxed load per new flow or state
//!   change.
//! - **Dumping** ([`Director::dump_sync`]): every live flow of the worker, then the shared
//!   persistence templates and the synced flows no worker took yet, in pieces, for a
//!   backup's bulk request and the periodic refresh.
//! - **Installing** ([`Director::install_synced`]): a peer's records, its real servers found
//!   by address in the current [`Snapshot`]. A flow this worker already tracks is updated in
//!   place; any other waits in [`Shared::synced`] until the first worker that gets one of its
//!   packets takes it ([`adopt`]), since the kernel's multi-queue TUN chooses the worker. The
//!   real server's active/inactive counts are counted once, at install, and kept in step with
//!   later records; a persistent service's flow holds its template as a scheduled one does.
//!   A record of a confirmed flow installs it confirmed ([`SyncRecord::confirmed`]): it keeps
//!   its state's whole timeout once adopted (not `--unconfirmed-timeout`'s cap) and is never
//!   evicted for a flood, as on the master. An unconfirmed flow stays unconfirmed, so a flood
//!   against the master does not fill the backup with flows it cannot evict.
//!
//! How the sync daemon drives it (every call takes the worker's lock briefly):
//!
//! - master (`HaLink::is_sync_master`): `shared.set_sync_emit(true)`; every ~20 ms
//!   `take_sync(&mut batch)` on each worker; answer a bulk request or refresh with
//!   `dump_sync` on one worker and `dump_sync_conns` on the others (`limit` records per call,
//!   resuming at the returned cursor until `None`). On leaving master: `set_sync_emit(false)`.
//! - backup: `install_synced(now, &records)` on any one worker (calling it on every worker is
//!   harmless, only slower); the synced flows no worker holds yet are
//!   `shared.synced.entries()` for the `-L -c` listing. `Shared::handle_timeout` expires them.
//!
//! NAT flows are not synced: they live in the shared NAT table with their reverse mapping, and
//! a NAT real server's replies come back through the director that has the mapping. Records of
//! NAT servers are refused (`InstallStats::nat`) and NAT flows are never queued nor dumped.

use std::net::SocketAddrV4;

use super::Director;
use crate::director::conn::{template_key, Conn, ConnKey, ConnState, ConnTable, SyncRecord};
use crate::director::packet::counters::Counters;
use crate::director::shared::counts::{add_count, move_counts, release};
use crate::director::shared::Shared;
use crate::director::table::{Dest, Service, Snapshot};
use crate::model::{Forward, Protocol};
use crate::time::{Duration, Instant};
use crate::wire::IpProtocol;

/// Most records a worker queues between two [`Director::take_sync`] calls.
pub const SYNC_QUEUE_MAX: usize = 65536;

/// What [`Director::install_synced`] did with a batch of records: each record counts in one
/// field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstallStats {
    /// Installed or updated (a flow, or a persistence template).
    pub applied: usize,
    /// No service here for the record's protocol, VIP and port.
    pub no_service: usize,
    /// The service has no (available, not held) real server at the record's address and port.
    pub no_dest: usize,
    /// The synced-flow table is full.
    pub full: usize,
    /// The real server is a NAT one: NAT flows are not synced.
    pub nat: usize,
    /// Not a flow this director could have: a protocol other than TCP and UDP, or a state
    /// that is not one of the protocol's.
    pub invalid: usize,
}

impl InstallStats {
    /// Adds `other`'s counts (to total a batch over several calls).
    pub fn add(&mut self, other: &InstallStats) {
        self.applied += other.applied;
        self.no_service += other.no_service;
        self.no_dest += other.no_dest;
        self.full += other.full;
        self.nat += other.nat;
        self.invalid += other.invalid;
    }

    /// Records counted.
    pub fn total(&self) -> usize {
        self.applied + self.no_service + self.no_dest + self.full + self.nat + self.invalid
    }
}

/// A dump cursor's phase, in its top bits: the worker's flows, the templates, the synced flows.
const PHASE_SHIFT: u32 = 60;
const PHASE_TEMPLATES: u64 = 1;
const PHASE_SYNCED: u64 = 2;
const IN_PHASE: u64 = (1 << PHASE_SHIFT) - 1;

/// The record of a flow (or template) `key` to `dest`; `confirmed` says whether the flow
/// carried client data (false for a template). `None` for a real server reached over an IPv6
/// underlay, which the IPv4 sync message cannot name.
#[inline]
pub(super) fn record(
    dest: &Dest,
    key: ConnKey,
    state: ConnState,
    left: Duration,
    confirmed: bool,
) -> Option<SyncRecord> {
    Some(SyncRecord {
        key,
        dest: SocketAddrV4::new(dest.addr4()?, dest.config.port_in(dest.service)),
        state,
        timeout: left,
        confirmed,
    })
}

/// Queues `rec`, or counts it dropped when the queue is full.
#[inline]
pub(super) fn queue(out: &mut Vec<SyncRecord>, counters: &mut Counters, rec: Option<SyncRecord>) {
    let Some(rec) = rec else { return };
    if out.len() < SYNC_QUEUE_MAX {
        out.push(rec);
    } else {
        counters.sync_dropped += 1;
    }
}

/// On a connection-table miss: takes the flow `key` from the synced flows into `conns`, if a
/// peer synced it and it has not expired. Its counts were made when it was installed.
pub(super) fn adopt<'a>(
    conns: &'a mut ConnTable,
    shared: &Shared,
    snap: &Snapshot,
    counters: &mut Counters,
    key: &ConnKey,
    now: Instant,
) -> Option<&'a mut Conn> {
    let conn = shared.synced.take(key)?;
    if conn.is_expired(now) {
        counters.conns_expired += 1;
        release(snap, &shared.templates, key, &conn, now);
        return None;
    }
    conns.make_room(now, |k, c, why| {
        counters.conns_evicted[why as usize] += 1;
        counters.conns_expired += 1;
        release(snap, &shared.templates, k, c, now);
    });
    match conns.insert(*key, conn) {
        Ok(c) => {
            counters.sync_adopted += 1;
            Some(c)
        }
        Err(_) => {
            // No room: the flow is lost as a new one would be (`conn_table_full` is counted
            // when the packet then fails to start one).
            release(snap, &shared.templates, key, &conn, now);
            None
        }
    }
}

fn protocol(proto: u8) -> Option<Protocol> {
    match proto {
        IpProtocol::TCP => Some(Protocol::Tcp),
        IpProtocol::UDP => Some(Protocol::Udp),
        _ => None,
    }
}

/// The template key of flow `key` of service `svc`, if it is persistent, with its timeout.
fn template_of(svc: &Service, key: &ConnKey) -> Option<(ConnKey, Duration)> {
    let pers = svc.persistence()?;
    let tkey = template_key(
        key.proto,
        key.caddr,
        pers.netmask.v4(),
        key.vaddr,
        svc.config.key.port,
    );
    Some((tkey, Duration::from_secs(u64::from(pers.timeout))))
}

/// What installing records reads: the table, the shared state, the time.
struct Install<'a> {
    snap: &'a Snapshot,
    shared: &'a Shared,
    now: Instant,
}

impl Install<'_> {
    /// A synced flow `new` of `dest` (of service `svc`) replaced `old` (if any) under `key`:
    /// keeps the servers' counts and the persistence template's hold in step.
    fn rebind(&self, svc: &Service, dest: &Dest, key: &ConnKey, old: Option<Conn>, new: &Conn) {
        let now = self.now;
        match old {
            Some(old) if old.dest == new.dest && !old.is_expired(now) => {
                move_counts(&dest.state, old.state, new.state);
            }
            old => {
                if let Some(old) = old {
                    release(self.snap, &self.shared.templates, key, &old, now);
                }
                add_count(&dest.state, new.state, 1);
                if let Some((tkey, timeout)) = template_of(svc, key) {
                    self.shared.templates.adopt(tkey, dest.id, now, timeout);
                }
            }
        }
        dest.state
            .update_overload(dest.config.u_threshold, dest.config.l_threshold);
    }
}

impl Director {
    /// Moves the connection-sync records this worker queued (while
    /// [`Shared::set_sync_emit`] was on) to the end of `out`; returns how many. The sync
    /// daemon calls it on every worker every few tens of milliseconds.
    pub fn take_sync(&mut self, out: &mut Vec<SyncRecord>) -> usize {
        let n = self.sync_out.len();
        out.append(&mut self.sync_out);
        n
    }

    /// Records queued and not yet taken.
    pub fn sync_queued(&self) -> usize {
        self.sync_out.len()
    }

    /// Appends up to `limit` records of live flows to `out`, resuming at `cursor` (0 to
    /// start); returns the cursor of the next call, or `None` when the dump is complete. The
    /// dump holds this worker's flows, then the persistence templates and the synced flows no
    /// worker took yet (these two are shared by all workers: dumping every worker repeats
    /// them; dump the others with [`dump_sync_conns`](Self::dump_sync_conns), or merge by
    /// key). Each record's timeout is the time its flow has left at `now`.
    ///
    /// A paced walk: flows created or removed between two calls may be missed or repeated
    /// (the next refresh carries them), as may all of them if the table grew in between.
    pub fn dump_sync(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord>,
    ) -> Option<usize> {
        self.dump(cursor, limit, now, out, true)
    }

    /// [`dump_sync`](Self::dump_sync) without the shared templates and synced flows: this
    /// worker's own flows only.
    pub fn dump_sync_conns(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord>,
    ) -> Option<usize> {
        self.dump(cursor, limit, now, out, false)
    }

    fn dump(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord>,
        shared_too: bool,
    ) -> Option<usize> {
        let snap = self.shared.snapshot();
        let cursor = cursor as u64;
        let (mut phase, mut at) = (cursor >> PHASE_SHIFT, cursor & IN_PHASE);
        let mut n = 0;
        let at_phase = |phase: u64, at: u64| Some(((phase << PHASE_SHIFT) | at) as usize);
        if phase == 0 {
            for (i, key, conn) in self.conns.entries_from(at as usize) {
                if n == limit {
                    return at_phase(0, i as u64);
                }
                if conn.is_expired(now) {
                    continue;
                }
                if let Some(dest) = snap.dest(conn.dest) {
                    let left = conn.expires().saturating_since(now);
                    if let Some(rec) = record(dest, *key, conn.state, left, conn.is_confirmed()) {
                        out.push(rec);
                        n += 1;
                    }
                }
            }
            if !shared_too {
                return None;
            }
            (phase, at) = (PHASE_TEMPLATES, 0);
        }
        if phase == PHASE_TEMPLATES {
            let mut found = Vec::new();
            let next = self.shared.templates.dump(at, limit - n, now, &mut found);
            for (key, id, left) in found {
                if let Some(dest) = snap.dest(id) {
                    if dest.config.forward != Forward::Nat {
                        if let Some(rec) = record(dest, key, ConnState::None, left, false) {
                            out.push(rec);
                            n += 1;
                        }
                    }
                }
            }
            if let Some(next) = next {
                return at_phase(PHASE_TEMPLATES, next);
            }
            (phase, at) = (PHASE_SYNCED, 0);
        }
        if phase == PHASE_SYNCED {
            let mut found = Vec::new();
            let next = self.shared.synced.dump(at, limit - n, now, &mut found);
            for (key, conn) in found {
                if let Some(dest) = snap.dest(conn.dest) {
                    let left = conn.expires().saturating_since(now);
                    out.extend(record(dest, key, conn.state, left, conn.is_confirmed()));
                }
            }
            if let Some(next) = next {
                return at_phase(PHASE_SYNCED, next);
            }
        }
        None
    }

    /// Installs records a peer director sent: each names its real server by address and port,
    /// found in the current table's service for the record's protocol, VIP and port
    /// ([`Snapshot::find_dest`]). A flow expires `timeout` after `now`, like one of this
    /// director's own; a template binds its client (network) to the server for `timeout`.
    ///
    /// A flow this worker tracks is updated in place (state, expiry, server); any other is put
    /// in the shared synced-flow table for whichever worker first sees a packet of it. So one
    /// call on any one worker installs for all of them; calling it on every worker with the
    /// same records is harmless (the second call only refreshes). The real servers'
    /// active/inactive counts follow (counted once per flow), and so do the persistence
    /// templates' holds.
    pub fn install_synced(&mut self, now: Instant, recs: &[SyncRecord]) -> InstallStats {
        let snap = self.shared.snapshot();
        let mut stats = InstallStats::default();
        for rec in recs {
            let key = rec.key;
            let Some(proto) = protocol(key.proto) else {
                stats.invalid += 1;
                continue;
            };
            let template = key.is_template();
            let state_fits = match proto {
                Protocol::Tcp => rec.state.is_tcp(),
                Protocol::Udp => rec.state == ConnState::Udp || template,
            };
            if !state_fits {
                stats.invalid += 1;
                continue;
            }
            let Some(svc) = snap.service(proto, key.vaddr, key.vport) else {
                stats.no_service += 1;
                continue;
            };
            let Some(dest) = snap.find_dest(proto, key.vaddr, key.vport, rec.dest) else {
                stats.no_dest += 1;
                continue;
            };
            if dest.config.forward == Forward::Nat {
                stats.nat += 1;
                continue;
            }
            if template {
                let timeout = svc
                    .persistence()
                    .map_or(rec.timeout, |p| Duration::from_secs(u64::from(p.timeout)));
                self.shared
                    .templates
                    .install(key, dest.id, now, rec.timeout, timeout);
                stats.applied += 1;
                continue;
            }
            let mut new = Conn::new(dest.id, rec.state, now + rec.timeout);
            if rec.confirmed {
                new.confirm();
            }
            let old = if let Some(c) = self.conns.get_mut(&key) {
                // A flow this worker saw carry data to the same server stays confirmed.
                if c.is_confirmed() && c.dest == dest.id && !c.is_expired(now) {
                    new.confirm();
                }
                Some(core::mem::replace(c, new))
            } else {
                match self.shared.synced.upsert(key, new) {
                    Ok(old) => old,
                    Err(_) => {
                        stats.full += 1;
                        continue;
                    }
                }
            };
            let cx = Install {
                snap: &snap,
                shared: &self.shared,
                now,
            };
            cx.rebind(svc, dest, &key, old, &new);
            stats.applied += 1;
        }
        stats
    }
}

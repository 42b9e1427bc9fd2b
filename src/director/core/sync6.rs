//! Connection sync of IPv6 flows and persistence templates: [`super::sync`]'s three duties
//! (emitting, dumping, installing) over the worker's `conns6`, [`Shared::templates6`] and
//! [`Shared::synced6`], with the same semantics: a record of a confirmed flow installs it
//! confirmed, a synced flow waits in [`Shared::synced6`] for the first worker that sees one of
//! its packets ([`adopt6`]), a real server's counts are counted once at install, a NAT66 flow
//! is never synced (it lives in the shared NAT66 table, as IPv4's NAT flows) and a record of a
//! NAT server is refused (`InstallStats::nat`).
//!
//! The sync daemon drives it as the IPv4 side: [`Director::take_sync6`] beside `take_sync`,
//! [`Director::dump_sync6`] / [`Director::dump_sync6_conns`] after the IPv4 dump of every
//! worker, [`Director::install_synced6`] for received Conns6 records.

use std::net::{IpAddr, SocketAddr};

use super::sync::{InstallStats, SYNC_QUEUE_MAX};
use super::Director;
use crate::director::conn::{template_key6, Conn, ConnKey6, ConnState, ConnTable6, SyncRecord6};
use crate::director::packet::counters::Counters;
use crate::director::shared::counts::{add_count, move_counts, release6};
use crate::director::shared::Shared;
use crate::director::table::{Dest, Service, Snapshot};
use crate::model::{Forward, Protocol};
use crate::time::{Duration, Instant};
use crate::wire::IpProtocol;

/// A dump cursor's phase, in its top bits (as IPv4's): the worker's flows, the templates, the
/// synced flows.
const PHASE_SHIFT: u32 = 60;
const PHASE_TEMPLATES: u64 = 1;
const PHASE_SYNCED: u64 = 2;
const IN_PHASE: u64 = (1 << PHASE_SHIFT) - 1;

/// The record of IPv6 flow (or template) `key` to `dest` (an IPv6 real server, or an IPv4 one
/// an IPv6 VIP reaches over IPv4).
#[inline]
pub(super) fn record6(
    dest: &Dest,
    key: ConnKey6,
    state: ConnState,
    left: Duration,
    confirmed: bool,
) -> SyncRecord6 {
    SyncRecord6 {
        key,
        dest: SocketAddr::new(dest.config.addr, dest.config.port_in(dest.service)),
        state,
        timeout: left,
        confirmed,
    }
}

/// Queues `rec`, or counts it dropped when the queue is full.
#[inline]
pub(super) fn queue6(out: &mut Vec<SyncRecord6>, counters: &mut Counters, rec: SyncRecord6) {
    if out.len() < SYNC_QUEUE_MAX {
        out.push(rec);
    } else {
        counters.sync_dropped += 1;
    }
}

/// On a `conns6` miss: takes the flow `key` from the synced IPv6 flows into `conns`, if a peer
/// synced it and it has not expired (as IPv4's `adopt`).
pub(super) fn adopt6<'a>(
    conns: &'a mut ConnTable6,
    shared: &Shared,
    snap: &Snapshot,
    counters: &mut Counters,
    key: &ConnKey6,
    now: Instant,
) -> Option<&'a mut Conn> {
    let conn = shared.synced6.take(key)?;
    if conn.is_expired(now) {
        counters.conns_expired += 1;
        release6(snap, &shared.templates6, key, &conn, now);
        return None;
    }
    conns.make_room(now, |k, c, why| {
        counters.conns_evicted[why as usize] += 1;
        counters.conns_expired += 1;
        release6(snap, &shared.templates6, k, c, now);
    });
    match conns.insert(*key, conn) {
        Ok(c) => {
            counters.sync_adopted += 1;
            Some(c)
        }
        Err(_) => {
            release6(snap, &shared.templates6, key, &conn, now);
            None
        }
    }
}

/// The template key of IPv6 flow `key` of service `svc`, if it is persistent, with its
/// timeout.
pub(super) fn template_of6(svc: &Service, key: &ConnKey6) -> Option<(ConnKey6, Duration)> {
    let pers = svc.persistence()?;
    let tkey = template_key6(
        key.proto,
        key.caddr,
        pers.netmask.prefix_len_v6(),
        key.vaddr,
        svc.config.key.port,
    );
    Some((tkey, Duration::from_secs(u64::from(pers.timeout))))
}

impl Director {
    /// [`take_sync`](Self::take_sync) for IPv6 flows and templates.
    pub fn take_sync6(&mut self, out: &mut Vec<SyncRecord6>) -> usize {
        let n = self.sync_out6.len();
        out.append(&mut self.sync_out6);
        n
    }

    /// [`dump_sync`](Self::dump_sync) for IPv6: this worker's IPv6 flows, then the shared IPv6
    /// templates and the synced IPv6 flows no worker took yet.
    pub fn dump_sync6(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord6>,
    ) -> Option<usize> {
        self.dump6(cursor, limit, now, out, true)
    }

    /// [`dump_sync6`](Self::dump_sync6) without the shared state: this worker's IPv6 flows.
    pub fn dump_sync6_conns(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord6>,
    ) -> Option<usize> {
        self.dump6(cursor, limit, now, out, false)
    }

    fn dump6(
        &self,
        cursor: usize,
        limit: usize,
        now: Instant,
        out: &mut Vec<SyncRecord6>,
        shared_too: bool,
    ) -> Option<usize> {
        let snap = self.shared.snapshot();
        let cursor = cursor as u64;
        let (mut phase, mut at) = (cursor >> PHASE_SHIFT, cursor & IN_PHASE);
        let mut n = 0;
        let at_phase = |phase: u64, at: u64| Some(((phase << PHASE_SHIFT) | at) as usize);
        if phase == 0 {
            for (i, key, conn) in self.conns6.entries_from(at as usize) {
                if n == limit {
                    return at_phase(0, i as u64);
                }
                if conn.is_expired(now) {
                    continue;
                }
                if let Some(dest) = snap.dest(conn.dest) {
                    let left = conn.expires().saturating_since(now);
                    out.push(record6(dest, *key, conn.state, left, conn.is_confirmed()));
                    n += 1;
                }
            }
            if !shared_too {
                return None;
            }
            (phase, at) = (PHASE_TEMPLATES, 0);
        }
        if phase == PHASE_TEMPLATES {
            let mut found = Vec::new();
            let next = self.shared.templates6.dump(at, limit - n, now, &mut found);
            for (key, id, left) in found {
                if let Some(dest) = snap.dest(id) {
                    if dest.config.forward != Forward::Nat {
                        out.push(record6(dest, key, ConnState::None, left, false));
                        n += 1;
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
            let next = self.shared.synced6.dump(at, limit - n, now, &mut found);
            for (key, conn) in found {
                if let Some(dest) = snap.dest(conn.dest) {
                    let left = conn.expires().saturating_since(now);
                    out.push(record6(dest, key, conn.state, left, conn.is_confirmed()));
                }
            }
            if let Some(next) = next {
                return at_phase(PHASE_SYNCED, next);
            }
        }
        None
    }

    /// [`install_synced`](Self::install_synced) for IPv6 records: the same checks and
    /// semantics, into `conns6`, [`Shared::synced6`] and [`Shared::templates6`].
    pub fn install_synced6(&mut self, now: Instant, recs: &[SyncRecord6]) -> InstallStats {
        let snap = self.shared.snapshot();
        let mut stats = InstallStats::default();
        for rec in recs {
            let key = rec.key;
            let proto = match key.proto {
                IpProtocol::TCP => Protocol::Tcp,
                IpProtocol::UDP => Protocol::Udp,
                _ => {
                    stats.invalid += 1;
                    continue;
                }
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
            let vip = IpAddr::V6(key.vaddr);
            let Some(svc) = snap.service(proto, vip, key.vport) else {
                stats.no_service += 1;
                continue;
            };
            let Some(dest) = snap.find_dest(proto, vip, key.vport, rec.dest) else {
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
                    .templates6
                    .install(key, dest.id, now, rec.timeout, timeout);
                stats.applied += 1;
                continue;
            }
            let mut new = Conn::new(dest.id, rec.state, now + rec.timeout);
            if rec.confirmed {
                new.confirm();
            }
            let old = if let Some(c) = self.conns6.get_mut(&key) {
                // A flow this worker saw carry data to the same server stays confirmed.
                if c.is_confirmed() && c.dest == dest.id && !c.is_expired(now) {
                    new.confirm();
                }
                Some(core::mem::replace(c, new))
            } else {
                match self.shared.synced6.upsert(key, new) {
                    Ok(old) => old,
                    Err(_) => {
                        stats.full += 1;
                        continue;
                    }
                }
            };
            // The server's counts and the template's hold follow the flow (as IPv4's).
            match old {
                Some(old) if old.dest == new.dest && !old.is_expired(now) => {
                    move_counts(&dest.state, old.state, new.state);
                }
                old => {
                    if let Some(old) = old {
                        release6(&snap, &self.shared.templates6, &key, &old, now);
                    }
                    add_count(&dest.state, new.state, 1);
                    if let Some((tkey, timeout)) = template_of6(svc, &key) {
                        self.shared.templates6.adopt(tkey, dest.id, now, timeout);
                    }
                }
            }
            dest.state
                .update_overload(dest.config.u_threshold, dest.config.l_threshold);
            stats.applied += 1;
        }
        stats
    }
}

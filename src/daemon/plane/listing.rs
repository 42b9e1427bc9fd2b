//! What `adm -L` shows: the table with live connection counts, counters and rates; `-L -c`:
//! every connection, NAT flow, S-NAT mapping and persistence template. And the rate ticker.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::ControlPlane;
use crate::control::format::{ConnEntry, ConnTableStatus, Listing, Rates, Stats};
use crate::director::conn::{Conn, ConnKey, DestId, KEY_TEMPLATE};
use crate::director::snat;
use crate::director::stats::{self, Totals};
use crate::model::{Protocol, ServiceSet};
use crate::time::Instant;

/// Connection-table slots `-L -c` reads per hold of a worker's lock (about 0.5 MB of
/// slots: tens of microseconds). A flow that moves across a piece boundary while the lock is
/// released (an insert, a removal or the table's growth in between) may be missed or listed
/// twice, as with any listing of a live table; [`FlowsByKey`] lists each key once.
const LIST_PIECE_SLOTS: usize = 16_384;

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
            let Some(live) = snap.service(key.proto, key.vip, key.port) else {
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
        st.nat_entries = self.shared.nat.len() as u64;
        st.templates = templates.len() as u64;
        st.template_capacity = templates.max() as u64;
        st.templates_evicted = templates.evicted();
        st.templates_refused = templates.refused();
        st.fragments = frags.len() as u64;
        st.fragment_capacity = frags.max() as u64;
        st.fragments_evicted = frags.evicted();
        st
    }

    /// Every worker's connections plus the persistence templates, as `-L -c` lists them.
    pub fn conn_entries(&self) -> Vec<ConnEntry> {
        let now = self.clock.now();
        let snap = self.shared.snapshot();
        let mut out = Vec::new();
        let dest_addr = |id| {
            snap.dest_or_held(id)
                .map(|d| SocketAddrV4::new(d.config.addr, d.config.port))
                .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
        };
        // A flow is listed once: a former master's workers may hold a flow the new master
        // synced back into the shared table.
        let mut flows = FlowsByKey::default();
        for core in &self.cores {
            // A bounded piece of one worker's table at a time: the worker waits at most for
            // one piece (a few tens of microseconds) between two of its batches, never for
            // the whole listing, and never two workers at once.
            let mut at: usize = 0;
            loop {
                let Ok(d) = core.lock() else { break };
                let conns = d.conns();
                let end = at.saturating_add(LIST_PIECE_SLOTS);
                for (_, k, c) in conns.entries_from(at).take_while(|(i, _, _)| *i < end) {
                    if let Some(e) = conn_entry(k, c, dest_addr(c.dest), now) {
                        flows.add(*k, e);
                    }
                }
                let done = end >= conns.capacity();
                drop(d);
                if done {
                    break;
                }
                at = end;
            }
        }
        // Flows a peer synced that no worker has taken yet (a backup's, mostly).
        for (k, c) in self.shared.synced.entries() {
            if let Some(e) = conn_entry(&k, &c, dest_addr(c.dest), now) {
                flows.add(k, e);
            }
        }
        out.extend(flows.into_entries());
        out.extend(
            self.shared.nat.flows().iter().filter_map(|f| {
                conn_entry(&f.key, &f.conn, SocketAddrV4::new(f.raddr, f.rport), now)
            }),
        );
        for m in snat::mappings(&self.shared.snat) {
            let Some(proto) = Protocol::from_number(m.proto) else {
                continue;
            };
            if m.expires <= now {
                continue;
            }
            let addr = |(a, p): (Ipv4Addr, u16)| SocketAddrV4::new(a, p);
            out.push(ConnEntry {
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
            out.push(ConnEntry {
                proto,
                expires_secs: expires.saturating_since(now).as_secs() as u32,
                state: "NONE".to_string(),
                client: SocketAddrV4::new(k.caddr, 0),
                vip: SocketAddrV4::new(k.vaddr, k.vport),
                dest: dest_addr(dest),
            });
        }
        out
    }
}

/// The workers' flows and the synced ones, each key once: a flow in a worker and also in the
/// shared synced table (a former master's flow its peer synced back) is listed once, with the
/// copy that lives longest (the one the packets or the records keep fresh).
#[derive(Default)]
struct FlowsByKey {
    at: HashMap<ConnKey, usize>,
    entries: Vec<ConnEntry>,
}

impl FlowsByKey {
    fn add(&mut self, key: ConnKey, e: ConnEntry) {
        match self.at.entry(key) {
            std::collections::hash_map::Entry::Occupied(i) => {
                let old = &mut self.entries[*i.get()];
                if e.expires_secs > old.expires_secs {
                    *old = e;
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(self.entries.len());
                self.entries.push(e);
            }
        }
    }

    fn into_entries(self) -> Vec<ConnEntry> {
        self.entries
    }
}

/// One connection of a worker's table or of the shared NAT flows, as `-L -c` lists it; `None`
/// for an expired one or a protocol the listing does not know.
fn conn_entry(k: &ConnKey, c: &Conn, dest: SocketAddrV4, now: Instant) -> Option<ConnEntry> {
    let proto = Protocol::from_number(k.proto)?;
    if c.expires() <= now {
        return None;
    }
    Some(ConnEntry {
        proto,
        expires_secs: (c.expires() - now).as_secs() as u32,
        state: c.state.as_str().to_string(),
        client: SocketAddrV4::new(k.caddr, k.cport),
        vip: SocketAddrV4::new(k.vaddr, k.vport),
        dest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::conn::ConnState;

    #[test]
    fn a_flow_in_every_worker_is_listed_once_with_its_longest_lived_copy() {
        let key = ConnKey::new(
            6,
            Ipv4Addr::new(10, 0, 0, 1),
            4000,
            Ipv4Addr::new(10, 9, 9, 9),
            80,
        );
        let other = ConnKey { cport: 4001, ..key };
        let dest = SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 1), 80);
        let entry = |k: &ConnKey, secs: u64, state| {
            let c = Conn::new(DestId(1), state, Instant::from_secs(secs));
            conn_entry(k, &c, dest, Instant::ZERO).unwrap()
        };
        let mut flows = FlowsByKey::default();
        flows.add(key, entry(&key, 100, ConnState::Established));
        flows.add(other, entry(&other, 50, ConnState::Established));
        flows.add(key, entry(&key, 900, ConnState::Established));
        flows.add(key, entry(&key, 200, ConnState::FinWait));
        let got = flows.into_entries();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].client.port(), 4000);
        assert_eq!(got[0].expires_secs, 900);
        assert_eq!(got[0].state, "ESTABLISHED");
        assert_eq!(got[1].client.port(), 4001);
    }
}

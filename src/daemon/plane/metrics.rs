//! What a `/metrics` scrape reads from the control plane.

use std::sync::Arc;

use super::ControlPlane;
use crate::director::stats::{self, Totals};
use crate::health::Health;

impl ControlPlane {
    /// Connection sync's counters, reported by every later scrape (set once, when sync starts).
    pub fn set_sync_stats(&self, stats: Arc<crate::sync::SyncStats>) {
        let _ = self.sync_stats.set(stats);
    }

    /// What a `/metrics` scrape reports ([`crate::metrics`]): the running table with each real
    /// server's counters since the start (`-Z` does not reset them), the configured servers'
    /// health, the probes' durations, the workers' counters added up and the connection tables'
    /// fill. Each worker's lock is taken once, briefly.
    pub fn metrics_sample(&self) -> crate::metrics::DirectorSample {
        use crate::metrics::{Backend, DirectorSample};
        let mut sample = DirectorSample::default();
        let mut per_worker = Vec::with_capacity(self.cores.len());
        for core in &self.cores {
            let Ok(d) = core.lock() else { continue };
            sample.counters.add(d.counters());
            sample.conns += d.conns().len() as u64;
            sample.conn_capacity += d.conns().max_entries() as u64;
            per_worker.push(d.counters().per_dest.clone());
        }
        let raw = stats::sum(per_worker.iter().map(Vec::as_slice));
        for t in raw.values() {
            sample.instance.conns += t.conns;
            sample.instance.in_pkts += t.in_pkts;
            sample.instance.in_bytes += t.in_bytes;
            sample.instance.out_pkts += t.out_pkts;
            sample.instance.out_bytes += t.out_bytes;
        }
        sample.nat_flows = (self.shared.nat.len() + self.shared.nat6.len()) as u64;
        let (templates, frags) = (&self.shared.templates, self.shared.frags());
        sample.bounded = crate::metrics::BoundedSample {
            templates: templates.len() as u64,
            template_capacity: templates.max() as u64,
            templates_evicted: templates.evicted(),
            templates_refused: templates.refused(),
            fragments: frags.len() as u64,
            fragment_capacity: frags.max() as u64,
            fragments_evicted: frags.evicted(),
        };
        sample.checks = self.check_durations.snapshot();
        if let Some(v) = self.vrrp.lock().ok().and_then(|v| v.clone()) {
            sample.vrrp = v.metrics();
        }
        sample.sync = self.sync_stats.get().map(|s| s.snapshot());
        let (configured, overlay) = match self.state.lock() {
            Ok(st) => (st.set.clone(), st.health.dests.clone()),
            Err(_) => return sample,
        };
        let snap = self.shared.snapshot();
        for svc in &configured.services {
            let key = svc.key;
            let live = snap.service_of(&key);
            for d in &svc.dests {
                let port = d.port_in(key);
                let health = overlay.get(&(key, d.addr, port));
                let found = live.and_then(|l| {
                    l.sched_dests
                        .iter()
                        .zip(&l.dest_ids)
                        .find(|(s, _)| s.addr == d.addr && s.port == d.port)
                });
                let mut b = Backend {
                    service: key,
                    addr: d.addr,
                    port,
                    weight: 0,
                    active: 0,
                    inactive: 0,
                    totals: Totals::default(),
                    up: !matches!(health, Some(Health::Down) | Some(Health::Weight(0))),
                    in_table: false,
                };
                if let Some((sd, id)) = found {
                    b.in_table = true;
                    b.weight = sd.weight;
                    b.active = sd.state.active();
                    b.inactive = sd.state.inactive();
                    b.totals = raw.get(id).copied().unwrap_or_default();
                }
                sample.backends.push(b);
            }
        }
        sample
    }
}

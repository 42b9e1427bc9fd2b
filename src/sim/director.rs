//! A director node: the control plane's [`Registry`] and [`Shared`] table, and worker cores
//! that turn each packet's [`Verdict`] into what leaves the box.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::{
    flow_hash, Director, DirectorConfig, DropReason, Flow, FlowKey, Forward, InstallStats, Instant,
    IpProtocol, NeighEntry, Protocol, Registry, SchedOptions, ServiceKey, ServiceSet, Shared,
    Snapshot, SyncRecord, Timeouts, Verdict,
};

/// What the director sends after one packet.
#[derive(Debug)]
pub(crate) enum Out {
    /// An IPv4 packet, routed by its destination (tunnel packets, NAT rewrites, ICMP replies).
    Ip(Vec<u8>),
    /// A DR frame to `mac` on interface `ifindex`.
    Ether {
        ifindex: u32,
        mac: [u8; 6],
        pkt: Vec<u8>,
    },
}

/// A director node.
#[derive(Debug)]
pub(crate) struct SimDirector {
    /// Its address: the tunnels' outer source, the NAT servers' gateway.
    pub(crate) addr: Ipv4Addr,
    /// The interface its DR real servers are on.
    pub(crate) ifindex: u32,
    /// The config its workers were built with (to build a replacement).
    pub(crate) config: DirectorConfig,
    /// The service table it serves.
    pub(crate) set: ServiceSet,
    registry: Registry,
    /// The table the workers share.
    pub(crate) shared: Arc<Shared>,
    /// The worker cores (TUN queues); a packet goes to one by flow hash.
    pub(crate) workers: Vec<Director>,
    /// Encapsulated packets the simulator does not fragment (`frag_mtu` set).
    pub(crate) unsent_fragments: u64,
}

impl SimDirector {
    /// A fresh director process at `addr` serving `set` with `workers` cores. A `local_addr`
    /// of `0.0.0.0` becomes `addr`, as the kernel fills in the route's source.
    pub(crate) fn new(
        addr: Ipv4Addr,
        ifindex: u32,
        set: &ServiceSet,
        config: DirectorConfig,
        workers: usize,
    ) -> SimDirector {
        SimDirector::with_sched_options(addr, ifindex, set, config, workers, Default::default())
    }

    /// [`SimDirector::new`] with scheduler options (`mh` table size, `mh-port`, ...).
    pub(crate) fn with_sched_options(
        addr: Ipv4Addr,
        ifindex: u32,
        set: &ServiceSet,
        mut config: DirectorConfig,
        workers: usize,
        sched_options: SchedOptions,
    ) -> SimDirector {
        if config.local_addr.is_unspecified() {
            config.local_addr = addr;
        }
        let mut registry = Registry::new();
        registry.sched_options = sched_options;
        let snap = registry
            .build(set, &Timeouts::default())
            .expect("a table the registry can build");
        let shared = Arc::new(Shared::new(snap));
        let workers = (0..workers.max(1))
            .map(|_| Director::new(shared.clone(), config.clone()))
            .collect();
        SimDirector {
            addr,
            ifindex,
            config,
            set: set.clone(),
            registry,
            shared,
            workers,
            unsent_fragments: 0,
        }
    }

    /// Publishes `set`, the servers in `held` out of the table but their flows kept, as the
    /// control plane does after an edit or a failed health check.
    pub(crate) fn publish(&mut self, set: &ServiceSet, held: &[(ServiceKey, super::DestConfig)]) {
        let snap = self
            .registry
            .build_with_held(set, held, &Timeouts::default())
            .expect("a table the registry can build");
        self.set = set.clone();
        self.shared.publish(snap);
    }

    /// The published table.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot()
    }

    /// The real server this director's table gives a new connection of `flow` (what sloppy
    /// pickup gives a flow it has no entry for), by address; None if no service or server.
    pub(crate) fn table_pick(&self, flow: &Flow) -> Option<Ipv4Addr> {
        let snap = self.snapshot();
        let proto = match flow.proto {
            IpProtocol::TCP => Protocol::Tcp,
            IpProtocol::UDP => Protocol::Udp,
            _ => return None,
        };
        let svc = snap.service(proto, flow.vip, flow.vport)?;
        let key = FlowKey {
            saddr: flow.client,
            sport: flow.cport,
            daddr: flow.vip,
            dport: flow.vport,
            proto: flow.proto,
        };
        let i = svc.scheduler.pick(&key, &svc.sched_dests)?;
        match svc.sched_dests[i].addr {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        }
    }

    /// Fills the DR servers' neighbour slots as the driver's resolver does: `mac_of` gives a
    /// server's MAC on this director's LAN, if it is there.
    pub(crate) fn resolve_neighbours(&self, mac_of: impl Fn(Ipv4Addr) -> Option<[u8; 6]>) {
        let snap = self.snapshot();
        for svc in snap.services() {
            for (cfg, sd) in svc.config.dests.iter().zip(&svc.sched_dests) {
                if let (Forward::Dr, std::net::IpAddr::V4(rip)) = (cfg.forward, sd.addr) {
                    let entry = mac_of(rip).map(|mac| NeighEntry {
                        ifindex: self.ifindex,
                        mac,
                        mtu: 1500,
                    });
                    sd.state.neigh.set(entry);
                }
            }
        }
    }

    /// Decides one packet on the worker its flow hashes to.
    pub(crate) fn handle(&mut self, now: Instant, mut pkt: Vec<u8>) -> Option<Out> {
        let w = (flow_hash(&pkt, 0x7175_6575) % self.workers.len() as u64) as usize;
        match self.workers[w].handle_packet(now, &mut pkt) {
            Verdict::Encap(e) if e.frag_mtu != 0 => {
                self.unsent_fragments += 1;
                None
            }
            Verdict::Encap(e) => {
                let mut out = Vec::with_capacity(e.header().len() + e.len);
                out.extend_from_slice(e.header());
                out.extend_from_slice(&pkt[..e.len]);
                Some(Out::Ip(out))
            }
            Verdict::Ether(e) if e.frag_mtu != 0 => {
                self.unsent_fragments += 1;
                None
            }
            Verdict::Ether(e) => {
                pkt.truncate(e.len);
                Some(Out::Ether {
                    ifindex: e.ifindex,
                    mac: e.dst_mac,
                    pkt,
                })
            }
            Verdict::Rewrite { len } | Verdict::Reply { len } => {
                pkt.truncate(len);
                Some(Out::Ip(pkt))
            }
            Verdict::Drop(_) => None,
        }
    }

    /// The earliest time any worker wants its `handle_timeout`.
    pub(crate) fn poll_timeout(&self) -> Instant {
        self.workers
            .iter()
            .map(Director::poll_timeout)
            .min()
            .unwrap_or(Instant::ZERO)
    }

    /// Runs the due timers of every worker and the shared housekeeping.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for w in &mut self.workers {
            w.handle_timeout(now);
        }
        self.shared.handle_timeout(now);
    }

    /// Packets dropped for `reason`, over all workers.
    pub(crate) fn dropped(&self, reason: DropReason) -> u64 {
        self.workers
            .iter()
            .map(|w| w.counters().dropped(reason))
            .sum()
    }

    /// Every drop, by reason (only reasons that occurred).
    pub(crate) fn drops(&self) -> BTreeMap<DropReason, u64> {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.dropped(r)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// Packets handed to the cores.
    pub(crate) fn rx_packets(&self) -> u64 {
        self.workers.iter().map(|w| w.counters().rx_packets).sum()
    }

    /// Packets rewritten in place (NAT, both ways).
    pub(crate) fn rewritten(&self) -> u64 {
        self.workers.iter().map(|w| w.counters().rewritten).sum()
    }

    /// Connections tracked by the workers (TUN and DR flows) plus NAT flows.
    pub(crate) fn conns(&self) -> usize {
        self.workers.iter().map(|w| w.conns().len()).sum::<usize>() + self.shared.nat.len()
    }

    /// Persistence templates (shared by the workers).
    pub(crate) fn templates(&self) -> usize {
        self.shared.templates.len()
    }

    /// NAT flows (shared by the workers).
    pub(crate) fn nat_flows(&self) -> usize {
        self.shared.nat.len()
    }

    /// Connection sync: whether the workers queue records (on while this director is the
    /// sync master).
    pub(crate) fn set_sync_emit(&self, on: bool) {
        self.shared.set_sync_emit(on);
    }

    /// The records every worker queued since the last call, as the sync daemon drains them.
    pub(crate) fn take_sync(&mut self) -> Vec<SyncRecord> {
        let mut out = Vec::new();
        for w in &mut self.workers {
            w.take_sync(&mut out);
        }
        out
    }

    /// A whole dump (bulk resync) in pieces of `limit` records: the first worker's flows with
    /// the shared templates and synced flows, then the other workers' own flows.
    pub(crate) fn dump_sync(&self, now: Instant, limit: usize) -> Vec<SyncRecord> {
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            let mut cursor = 0;
            loop {
                let next = if i == 0 {
                    w.dump_sync(cursor, limit, now, &mut out)
                } else {
                    w.dump_sync_conns(cursor, limit, now, &mut out)
                };
                match next {
                    Some(c) => cursor = c,
                    None => break,
                }
            }
        }
        out
    }

    /// Installs a peer's records (through the first worker: the others adopt the flows they
    /// get packets of).
    pub(crate) fn install_synced(&mut self, now: Instant, recs: &[SyncRecord]) -> InstallStats {
        self.workers[0].install_synced(now, recs)
    }

    /// Flows picked up mid-flow by `sloppy_tcp`, over all workers.
    pub(crate) fn sloppy_created(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.counters().sloppy_created)
            .sum()
    }
}

//! The snapshot the data path reads: services, their schedulers and real servers, timeouts.
//!
//! The control plane owns a [`Registry`] and builds a new [`Snapshot`] from a [`ServiceSet`]
//! whenever the configuration (or, later, health) changes, then publishes it with one atomic
//! swap. Workers never lock it. Live per-server counters ([`DestState`]) and per-service
//! scheduler positions ([`SchedState`]) are kept in the registry and shared by consecutive
//! snapshots, so an edit does not reset connection counts or the round-robin position.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::conn::{DestId, Timeouts};
use ipnet::IpNet;

use super::modes::route::{RouteTable, TunnelRoute};
use super::sched::{DestState, FlowKey, SchedDest, SchedOptions, SchedState, Scheduler};
use crate::model::SchedulerKind;
use crate::model::{
    DestConfig, Family, Forward, Persistence, ServiceConfig, ServiceKey, ServiceSet,
};
use crate::time::{Duration, Instant};

/// A real server as the data path sees it.
#[derive(Debug, Clone)]
pub struct Dest {
    /// Stable handle; connections store it.
    pub id: DestId,
    /// The service it belongs to.
    pub service: ServiceKey,
    /// Its configuration.
    pub config: DestConfig,
    /// Live counters, shared across snapshots and workers.
    pub state: Arc<DestState>,
    /// Out of the table because its health check failed, its flows kept for its return
    /// (`expire_nodest_conn = false`): not schedulable, not listed, and
    /// [`Snapshot::dest`] does not return it ([`Snapshot::is_held`] tells).
    pub held: bool,
}

impl Dest {
    /// Whether it may take new flows: weight above zero and not over its upper threshold.
    pub fn is_available(&self) -> bool {
        self.config.weight > 0 && !self.state.is_overloaded()
    }

    /// Its address if it is IPv4 (every DR and NAT server of an IPv4 VIP is: the model
    /// mixes families only through tunnels).
    #[inline]
    pub fn addr4(&self) -> Option<Ipv4Addr> {
        match self.config.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

/// A virtual service as the data path sees it.
#[derive(Debug)]
pub struct Service {
    /// Its configuration (the real servers are in `dests`, same order).
    pub config: ServiceConfig,
    /// The scheduler, built over `sched_dests`.
    pub scheduler: Scheduler,
    /// What the scheduler sees of each real server.
    pub sched_dests: Vec<SchedDest>,
    /// Handles of the real servers, index-aligned with `sched_dests`.
    pub dest_ids: Vec<DestId>,
    /// An `mh` service's table before its server set last changed, for second chance
    /// ([`PreviousTable`]); `None` until the set first changes, and for other schedulers.
    pub previous: Option<Arc<PreviousTable>>,
}

/// The scheduler an `mh` service had before its real-server set (addresses, ports, weights)
/// last changed, and when that was: a flow picked up mid-way (`sloppy_tcp`) within the
/// director's second-chance window is looked up in it too, and if its server there differs
/// from the new table's, that server is the packet's second choice (docs/scale-out.md,
/// "Second chance").
#[derive(Debug)]
pub struct PreviousTable {
    /// The previous scheduler, built over `sched_dests`.
    pub scheduler: Scheduler,
    /// What it was built over.
    pub sched_dests: Vec<SchedDest>,
    /// When the table changed ([`Registry::now`] at that build).
    pub changed_at: Instant,
}

impl Service {
    /// The real server (address, port) that the previous table gives `flow`, if the table
    /// changed less than `window` before `now`.
    pub fn previous_pick(
        &self,
        flow: &FlowKey,
        now: Instant,
        window: Duration,
    ) -> Option<(IpAddr, u16)> {
        let prev = self.previous.as_ref()?;
        if now.saturating_since(prev.changed_at) >= window {
            return None;
        }
        let i = prev.scheduler.pick(flow, &prev.sched_dests)?;
        let d = &prev.sched_dests[i];
        Some((d.addr, d.port))
    }

    /// The handle of this service's real server `addr`:`port`, if it is in the table.
    pub fn dest_id_of(&self, addr: IpAddr, port: u16) -> Option<DestId> {
        let i = self
            .sched_dests
            .iter()
            .position(|d| d.addr == addr && d.port == port)?;
        Some(self.dest_ids[i])
    }
}

impl Service {
    /// Persistence settings, if any.
    pub fn persistence(&self) -> Option<Persistence> {
        self.config.persistence
    }
}

/// An immutable view of the whole table.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every published snapshot.
    pub generation: u64,
    services: HashMap<ServiceKey, Service>,
    vips: HashSet<IpAddr>,
    dests: Vec<Option<Dest>>,
    /// Connection timeouts (`adm --set`).
    pub timeouts: Timeouts,
    /// Every NAT real server's endpoint, sorted, without duplicates.
    nat_endpoints: Vec<NatEndpoint>,
    /// Whether any of them is IPv4, IPv6 (NAT66).
    nat4: bool,
    nat6: bool,
    /// Prefixes tunnelled to remote gateways (`[[tunnel_route]]`).
    tunnel_routes: Arc<RouteTable>,
    /// The S-NAT gateway's rules (set by the control plane after building).
    pub snat: Arc<SnatRules>,
    /// Whether an IPv4 VIP has a real server with an IPv6 address (see
    /// [`Self::tunnels_ipv4_over_ipv6`]).
    v4_over_v6: bool,
}

/// Where a NAT (`-m`) real server answers from: its replies carry this source, so the director
/// routes them back into its TUN (see [`super::nat`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatEndpoint {
    /// TCP or UDP.
    pub proto: crate::model::Protocol,
    /// The real server's address (RIP); IPv6 for NAT66.
    pub addr: IpAddr,
    /// The real server's port; 0 when it answers on the client's port (port-zero service).
    pub port: u16,
}

impl Snapshot {
    /// The service for a packet to `vip:port`: an exact match first, then a port-zero
    /// (all ports) service, as IPVS does.
    pub fn service(
        &self,
        proto: crate::model::Protocol,
        vip: impl Into<IpAddr>,
        port: u16,
    ) -> Option<&Service> {
        if self.services.is_empty() {
            return None;
        }
        let vip = vip.into();
        self.services
            .get(&ServiceKey { vip, port, proto })
            .or_else(|| {
                self.services.get(&ServiceKey {
                    vip,
                    port: 0,
                    proto,
                })
            })
    }

    /// The service with the control plane's `key`, if it is in this snapshot.
    pub fn service_of(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key)
    }

    /// Whether `addr` is the VIP of any service.
    #[inline]
    pub fn is_vip(&self, addr: impl Into<IpAddr>) -> bool {
        self.vips.contains(&addr.into())
    }

    /// All VIPs, both families.
    pub fn vips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.vips.iter().copied()
    }

    /// The IPv4 VIPs.
    pub fn vips4(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.vips.iter().filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
    }

    /// The IPv6 VIPs.
    pub fn vips6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.vips.iter().filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
    }

    /// The real server behind a handle, unless it was deleted since or is held
    /// ([`Snapshot::is_held`]).
    #[inline]
    pub fn dest(&self, id: DestId) -> Option<&Dest> {
        self.dest_or_held(id).filter(|d| !d.held)
    }

    /// Whether the real server behind a handle is held: out of the table while its health
    /// check fails, its flows kept (dropped at each packet, `destination_down`) because its
    /// service has `expire_nodest_conn = false`.
    #[inline]
    pub fn is_held(&self, id: DestId) -> bool {
        self.dest_or_held(id).is_some_and(|d| d.held)
    }

    /// The real server behind a handle, held or not, unless it was deleted since (to give back
    /// a held server's counts when one of its flows ends).
    #[inline]
    pub fn dest_or_held(&self, id: DestId) -> Option<&Dest> {
        match self.dests.get(slot_of(id)) {
            Some(Some(d)) if d.id == id => Some(d),
            _ => None,
        }
    }

    /// The real server at `dest` (address and port as [`DestConfig::port_in`] gives it) of the
    /// service a packet to `vip:port` belongs to ([`Snapshot::service`]), unless it is held or
    /// absent: how a connection-sync record, which names its server by address, finds it.
    pub fn find_dest(
        &self,
        proto: crate::model::Protocol,
        vip: impl Into<IpAddr>,
        port: u16,
        dest: impl Into<std::net::SocketAddr>,
    ) -> Option<&Dest> {
        let dest = dest.into();
        let svc = self.service(proto, vip, port)?;
        svc.dest_ids
            .iter()
            .filter_map(|&id| self.dest(id))
            .find(|d| d.config.addr == dest.ip() && d.config.port_in(d.service) == dest.port())
    }

    /// Services in a stable order (by key).
    pub fn services(&self) -> Vec<&Service> {
        let mut v: Vec<&Service> = self.services.values().collect();
        v.sort_by_key(|s| s.config.key);
        v
    }

    /// Number of services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Whether any IPv4 real server is reached by NAT (then replies come back through the
    /// TUN).
    #[inline]
    pub fn has_nat(&self) -> bool {
        self.nat4
    }

    /// Whether any IPv6 real server is reached by NAT (NAT66: then IPv6 replies come back
    /// through the TUN).
    #[inline]
    pub fn has_nat6(&self) -> bool {
        self.nat6
    }

    /// Whether an IPv4 VIP has a real server behind an IPv6 underlay: then the driver cuts
    /// GSO super-packets before deciding them.
    #[inline]
    pub fn tunnels_ipv4_over_ipv6(&self) -> bool {
        self.v4_over_v6
    }

    /// The endpoints of every NAT real server, sorted.
    pub fn nat_endpoints(&self) -> &[NatEndpoint] {
        &self.nat_endpoints
    }

    /// The tunnel routes.
    #[inline]
    pub fn tunnel_routes(&self) -> &RouteTable {
        &self.tunnel_routes
    }

    /// The tunnel route for a packet to `dst`: none when there are no routes or `dst` is a VIP
    /// (services win over routes).
    #[inline]
    pub fn tunnel_route(&self, dst: Ipv4Addr) -> Option<&TunnelRoute> {
        let table = self.tunnel_routes();
        if table.is_empty() || self.is_vip(dst) {
            return None;
        }
        table.lookup(dst)
    }

    /// The tunnel route for an IPv6 packet to `dst`: none when there are no IPv6 routes or
    /// `dst` is a VIP (services win over routes).
    #[inline]
    pub fn tunnel_route6(&self, dst: Ipv6Addr) -> Option<&TunnelRoute> {
        let table = self.tunnel_routes();
        if table.is_empty6() || self.is_vip(dst) {
            return None;
        }
        table.lookup6(dst)
    }

    /// This snapshot with `routes` as its tunnel routes (the control plane sets them after
    /// [`Registry::build`]).
    pub fn with_tunnel_routes(mut self, routes: Arc<RouteTable>) -> Snapshot {
        self.tunnel_routes = routes;
        self
    }
}

fn slot_of(id: DestId) -> usize {
    (id.0 & 0xffff) as usize
}

type DestKey = (ServiceKey, IpAddr, u16);

/// Owned by the control plane: allocates [`DestId`]s and keeps live state across snapshots.
#[derive(Debug, Default)]
pub struct Registry {
    dests: HashMap<DestKey, (DestId, Arc<DestState>)>,
    services: HashMap<ServiceKey, Arc<SchedState>>,
    /// Generation of each slot; bumped when a slot is freed so old ids never match.
    slot_gen: Vec<u16>,
    free: Vec<u16>,
    generation: u64,
    /// Scheduler options applied to every service.
    pub sched_options: SchedOptions,
    /// The time the next build happens at (the control plane sets it from its clock): what
    /// a changed `mh` table records as [`PreviousTable::changed_at`].
    pub now: Instant,
    /// Each `mh` service's last table, to keep as the previous one when its set changes.
    last_mh: HashMap<ServiceKey, LastTable>,
}

/// An `mh` service's last built table and the server set it was built from.
#[derive(Debug)]
struct LastTable {
    /// (address, port, weight) of each server, sorted.
    servers: Vec<(IpAddr, u16, u32)>,
    scheduler: Scheduler,
    sched_dests: Vec<SchedDest>,
    previous: Option<Arc<PreviousTable>>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// More than 65535 real servers in total.
    #[error("too many real servers (at most 65535 in all services)")]
    TooManyDests,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Builds the snapshot for `set`. Real servers that disappeared from `set` lose their
    /// handle (connections to them then find no destination).
    pub fn build<A: Family>(
        &mut self,
        set: &ServiceSet<A>,
        timeouts: &Timeouts,
    ) -> Result<Snapshot, BuildError> {
        self.build_with_held(set, &[], timeouts)
    }

    /// Like [`Registry::build`], and the real servers in `held` (service, server), out of
    /// `set` because their health check failed, keep their handle and live counts as held
    /// slots ([`Dest::held`]): their flows are kept until they time out or the server comes
    /// back. An entry whose service is not in `set`, or that is also in `set`, is ignored.
    pub fn build_with_held<A: Family>(
        &mut self,
        set: &ServiceSet<A>,
        held: &[(crate::model::ServiceKey<A>, crate::model::DestConfig<A>)],
        timeouts: &Timeouts,
    ) -> Result<Snapshot, BuildError> {
        // The data path reads the control plane's types (both families).
        let set = &set.widen();
        let held: Vec<(ServiceKey, DestConfig)> =
            held.iter().map(|(k, d)| (k.widen(), d.widen())).collect();
        let mut services = HashMap::with_capacity(set.services.len());
        let mut vips = HashSet::new();
        let mut dest_slots: Vec<Option<Dest>> = Vec::new();

        // Free the handles of real servers that are gone first, so their slots can be reused.
        let mut wanted: HashSet<DestKey> = set
            .services
            .iter()
            .flat_map(|s| {
                s.dests
                    .iter()
                    .map(move |d| (s.key, d.addr, d.port_in(s.key)))
            })
            .collect();
        // Held servers: of a service in `set`, and not in it themselves.
        let held: Vec<(&ServiceConfig, &DestConfig)> = held
            .iter()
            .filter_map(|(k, d)| {
                let svc = set.services.iter().find(|s| s.key == *k)?;
                let key = (svc.key, d.addr, d.port_in(svc.key));
                wanted.insert(key).then_some((svc, d))
            })
            .collect();
        let gone: Vec<DestKey> = self
            .dests
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some((id, _)) = self.dests.remove(&k) {
                let slot = slot_of(id);
                self.slot_gen[slot] = self.slot_gen[slot].wrapping_add(1);
                self.free.push(slot as u16);
            }
        }
        self.services
            .retain(|k, _| set.services.iter().any(|s| s.key == *k));

        let mut nat_endpoints = Vec::new();
        for svc in &set.services {
            vips.insert(svc.key.vip);
            let sched_state = self.services.entry(svc.key).or_default().clone();
            let mut sched_dests = Vec::with_capacity(svc.dests.len());
            let mut dest_ids = Vec::with_capacity(svc.dests.len());
            for d in &svc.dests {
                let (id, state) = self.place(svc, d, false, &mut dest_slots, &mut nat_endpoints)?;
                sched_dests.push(SchedDest {
                    addr: d.addr,
                    port: d.port_in(svc.key),
                    weight: d.weight,
                    state,
                });
                dest_ids.push(id);
            }
            // Held servers get their slot (and, for NAT, their reply endpoint, else replies
            // would reach the client from the RIP) but are not scheduled.
            for &(_, d) in held.iter().filter(|(s, _)| s.key == svc.key) {
                self.place(svc, d, true, &mut dest_slots, &mut nat_endpoints)?;
            }
            let scheduler =
                Scheduler::new(svc.scheduler, &sched_dests, sched_state, self.sched_options);
            let previous = self.previous_table(svc, &scheduler, &sched_dests);
            services.insert(
                svc.key,
                Service {
                    config: svc.clone(),
                    scheduler,
                    sched_dests,
                    dest_ids,
                    previous,
                },
            );
        }
        self.last_mh.retain(|k, _| services.contains_key(k));
        self.generation += 1;
        nat_endpoints.sort_unstable();
        nat_endpoints.dedup();
        let nat4 = nat_endpoints.iter().any(|e| e.addr.is_ipv4());
        let nat6 = nat_endpoints.iter().any(|e| e.addr.is_ipv6());
        Ok(Snapshot {
            generation: self.generation,
            services,
            vips,
            dests: dest_slots,
            timeouts: timeouts.clone(),
            nat_endpoints,
            nat4,
            nat6,
            tunnel_routes: Arc::default(),
            snat: Arc::default(),
            v4_over_v6: set
                .services
                .iter()
                .flat_map(|s| s.dests.iter().map(move |d| (s.key, d)))
                .chain(held.iter().map(|&(s, d)| (s.key, d)))
                .any(|(k, d)| k.vip.is_ipv4() && d.addr.is_ipv6()),
        })
    }

    /// Records `svc`'s new `mh` table; returns the table it had before its server set last
    /// changed (the one just replaced, if this build changed the set; else the one kept).
    fn previous_table(
        &mut self,
        svc: &ServiceConfig,
        scheduler: &Scheduler,
        sched_dests: &[SchedDest],
    ) -> Option<Arc<PreviousTable>> {
        if svc.scheduler != SchedulerKind::Mh {
            self.last_mh.remove(&svc.key);
            return None;
        }
        let mut servers: Vec<(IpAddr, u16, u32)> = sched_dests
            .iter()
            .map(|d| (d.addr, d.port, d.weight))
            .collect();
        servers.sort_unstable();
        let previous = match self.last_mh.remove(&svc.key) {
            Some(last) if last.servers == servers => last.previous,
            Some(last) => Some(Arc::new(PreviousTable {
                scheduler: last.scheduler,
                sched_dests: last.sched_dests,
                changed_at: self.now,
            })),
            None => None,
        };
        self.last_mh.insert(
            svc.key,
            LastTable {
                servers,
                scheduler: scheduler.clone(),
                sched_dests: sched_dests.to_vec(),
                previous: previous.clone(),
            },
        );
        previous
    }

    /// The handle and live counts of real server `d` of `svc`, allocated if it is new.
    /// Puts real server `d` of `svc` in its slot of `dest_slots` (and its NAT reply endpoint
    /// in `nat_endpoints`); returns its handle and live state.
    fn place(
        &mut self,
        svc: &ServiceConfig,
        d: &DestConfig,
        held: bool,
        dest_slots: &mut Vec<Option<Dest>>,
        nat_endpoints: &mut Vec<NatEndpoint>,
    ) -> Result<(DestId, Arc<DestState>), BuildError> {
        let (id, state) = self.handle(svc, d)?;
        let slot = slot_of(id);
        if dest_slots.len() <= slot {
            dest_slots.resize(slot + 1, None);
        }
        let mut config = d.clone();
        config.port = d.port_in(svc.key);
        if config.forward == Forward::Nat {
            nat_endpoints.push(NatEndpoint {
                proto: svc.key.proto,
                addr: config.addr,
                port: config.port,
            });
        }
        dest_slots[slot] = Some(Dest {
            id,
            service: svc.key,
            config,
            state: state.clone(),
            held,
        });
        Ok((id, state))
    }

    fn handle(
        &mut self,
        svc: &ServiceConfig,
        d: &DestConfig,
    ) -> Result<(DestId, Arc<DestState>), BuildError> {
        let key = (svc.key, d.addr, d.port_in(svc.key));
        if let Some(v) = self.dests.get(&key) {
            return Ok(v.clone());
        }
        let id = self.alloc()?;
        let v = (id, Arc::new(DestState::default()));
        self.dests.insert(key, v.clone());
        Ok(v)
    }

    fn alloc(&mut self) -> Result<DestId, BuildError> {
        let slot = match self.free.pop() {
            Some(s) => s as usize,
            None => {
                if self.slot_gen.len() >= 0xffff {
                    return Err(BuildError::TooManyDests);
                }
                self.slot_gen.push(0);
                self.slot_gen.len() - 1
            }
        };
        Ok(DestId(((self.slot_gen[slot] as u32) << 16) | slot as u32))
    }
}

/// A service the data path cannot take yet: an IPv6 service or real server in a mode this
/// director does not forward over IPv6. `Display`, e.g. `TCP [2001:db8::1]:80: this director
/// does not forward IPv6 yet (real server 2001:db8::10: NAT66)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{service}: this director does not forward IPv6 yet{}", server_note(*server, what))]
pub struct Ipv6NotForwarded {
    /// The service.
    pub service: ServiceKey,
    /// The real server, if one is the reason.
    pub server: Option<IpAddr>,
    /// What is not forwarded (a mode, a family combination).
    pub what: &'static str,
}

fn server_note(server: Option<IpAddr>, what: &str) -> String {
    match server {
        Some(a) => format!(" (real server {a}: {what})"),
        None if what.is_empty() => String::new(),
        None => format!(" ({what})"),
    }
}

/// The boundary between what the control plane accepts (both families, every mode) and what
/// the data path forwards today: IPv4 services in every mode; IPv6 services whose real servers
/// are reached through a tunnel, over either underlay, are IPv6 hosts on a shared LAN (DR) or
/// are reached by NAT66 (`-m`); IPv4 services whose IPv6 real servers are reached through a
/// tunnel. Everything else with IPv6 in it (DR and NAT between families) is refused here,
/// before a table is built, naming the service and server.
pub fn check_forwardable(set: &ServiceSet) -> Result<(), Ipv6NotForwarded> {
    for s in &set.services {
        let refuse = |server: Option<IpAddr>, what| {
            Err(Ipv6NotForwarded {
                service: s.key,
                server,
                what,
            })
        };
        for d in &s.dests {
            let what = match (s.key.vip, d.addr, d.forward) {
                (IpAddr::V4(_), IpAddr::V4(_), _) => continue,
                (_, _, Forward::Tunnel(_)) => continue,
                (IpAddr::V6(_), IpAddr::V6(_), Forward::Dr | Forward::Nat) => continue,
                (IpAddr::V6(_), IpAddr::V4(_), _) => "only through a tunnel",
                (IpAddr::V4(_), IpAddr::V6(_), _) => "only through a tunnel",
            };
            return refuse(Some(d.addr), what);
        }
    }
    Ok(())
}

/// One `[[snat]]` entry: hosts of `source` leave behind the addresses `to`, all of the
/// source's family (the config loader checks it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SnatRule {
    /// The inside prefix whose forwarded packets are masqueraded (IPv4 or IPv6).
    pub source: IpNet,
    /// The public addresses (at least one, of the source's family).
    pub to: Vec<IpAddr>,
}

/// One [`SnatRule`] of one family, as the data path reads it: `to` typed as `A`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnatRuleOf<A> {
    /// The inside prefix.
    pub source: IpNet,
    /// The public addresses (at least one).
    pub to: Vec<A>,
}

/// An address family S-NAT translates: [`Ipv4Addr`] or [`Ipv6Addr`] (NAT66 source translation).
pub trait SnatAddr: Copy + Eq + Ord + Into<IpAddr> + core::fmt::Debug {
    /// The rules of this family.
    fn rules(r: &SnatRules) -> &[SnatRuleOf<Self>];
    /// The public addresses of this family, sorted, without duplicates.
    fn public(r: &SnatRules) -> &[Self];
    /// 32 bits of the address (IPv6: its four words folded), which choose a host's public
    /// address.
    fn word(self) -> u32;
}

impl SnatAddr for Ipv4Addr {
    fn rules(r: &SnatRules) -> &[SnatRuleOf<Ipv4Addr>] {
        &r.v4
    }
    fn public(r: &SnatRules) -> &[Ipv4Addr] {
        &r.public4
    }
    fn word(self) -> u32 {
        u32::from(self)
    }
}

impl SnatAddr for Ipv6Addr {
    fn rules(r: &SnatRules) -> &[SnatRuleOf<Ipv6Addr>] {
        &r.v6
    }
    fn public(r: &SnatRules) -> &[Ipv6Addr] {
        &r.public6
    }
    fn word(self) -> u32 {
        let x = u128::from(self);
        (x >> 96) as u32 ^ (x >> 64) as u32 ^ (x >> 32) as u32 ^ x as u32
    }
}

/// The S-NAT rules as the data path reads them (part of the [`Snapshot`]; S-NAT itself is
/// [`crate::director::snat`]), split by family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnatRules {
    rules: Vec<SnatRule>,
    v4: Vec<SnatRuleOf<Ipv4Addr>>,
    v6: Vec<SnatRuleOf<Ipv6Addr>>,
    public: Vec<IpAddr>,
    public4: Vec<Ipv4Addr>,
    public6: Vec<Ipv6Addr>,
}

impl SnatRules {
    /// The rules `rules` (assumed validated: prefixes do not overlap, each has an address of
    /// its source's family; an address of the other family is ignored).
    pub fn new(rules: Vec<SnatRule>) -> SnatRules {
        fn of<A: Copy>(r: &SnatRule, pick: impl Fn(IpAddr) -> Option<A>) -> SnatRuleOf<A> {
            SnatRuleOf {
                source: r.source,
                to: r.to.iter().filter_map(|a| pick(*a)).collect(),
            }
        }
        let v4: Vec<_> = rules
            .iter()
            .filter(|r| r.source.addr().is_ipv4())
            .map(|r| {
                of(r, |a| match a {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
            })
            .filter(|r| !r.to.is_empty())
            .collect();
        let v6: Vec<_> = rules
            .iter()
            .filter(|r| r.source.addr().is_ipv6())
            .map(|r| {
                of(r, |a| match a {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                })
            })
            .filter(|r| !r.to.is_empty())
            .collect();
        fn sorted<A: Ord + Copy>(rules: &[SnatRuleOf<A>]) -> Vec<A> {
            let mut all: Vec<A> = rules.iter().flat_map(|r| r.to.iter().copied()).collect();
            all.sort();
            all.dedup();
            all
        }
        let (public4, public6) = (sorted(&v4), sorted(&v6));
        let public = public4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(public6.iter().map(|a| IpAddr::V6(*a)))
            .collect();
        SnatRules {
            rules,
            v4,
            v6,
            public,
            public4,
            public6,
        }
    }

    /// Whether there is no rule.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether there is a rule of family `A`.
    #[inline]
    pub fn has<A: SnatAddr>(&self) -> bool {
        !A::rules(self).is_empty()
    }

    /// The rules, as configured.
    pub fn rules(&self) -> &[SnatRule] {
        &self.rules
    }

    /// Every public address of both families, IPv4 first, without duplicates.
    pub fn public(&self) -> &[IpAddr] {
        &self.public
    }

    /// Whether `addr` is a public address.
    #[inline]
    pub fn is_public<A: SnatAddr>(&self, addr: A) -> bool {
        A::public(self).contains(&addr)
    }

    /// The rule whose source holds `addr`.
    #[inline]
    pub fn rule_for<A: SnatAddr>(&self, addr: A) -> Option<&SnatRuleOf<A>> {
        let a: IpAddr = addr.into();
        A::rules(self).iter().find(|r| r.source.contains(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::TunnelType;
    use crate::model::Protocol;

    fn set(vip: &str, rip: &str, forward: Forward) -> ServiceSet {
        ServiceSet {
            services: vec![ServiceConfig {
                key: ServiceKey {
                    vip: vip.parse().unwrap(),
                    port: 80,
                    proto: Protocol::Tcp,
                },
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
                dests: vec![DestConfig {
                    addr: rip.parse().unwrap(),
                    port: 80,
                    weight: 1,
                    forward,
                    u_threshold: 0,
                    l_threshold: 0,
                }],
                policy: Default::default(),
            }],
        }
    }

    #[test]
    fn the_data_path_takes_what_it_forwards_and_names_what_it_refuses() {
        let tun = Forward::tunnel(TunnelType::Ipip);
        for forward in [tun, Forward::Dr, Forward::Nat] {
            assert_eq!(
                check_forwardable(&set("10.0.0.1", "10.0.1.1", forward)),
                Ok(())
            );
        }
        assert_eq!(
            check_forwardable(&set("2001:db8::1", "2001:db8:1::1", tun)),
            Ok(())
        );
        let refused = |vip, rip, forward| {
            check_forwardable(&set(vip, rip, forward))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check_forwardable(&set("2001:db8::1", "2001:db8:1::1", Forward::Dr)),
            Ok(())
        );
        // DR hands the client's packet on unchanged: both ends must be of one family.
        assert_eq!(
            refused("2001:db8::1", "10.0.1.1", Forward::Dr),
            "TCP [2001:db8::1]:80: this director does not forward IPv6 yet (real server 10.0.1.1: only through a tunnel)"
        );
        assert_eq!(
            check_forwardable(&set("2001:db8::1", "2001:db8:1::1", Forward::Nat)),
            Ok(())
        );
        assert!(
            refused("2001:db8::1", "10.0.1.1", Forward::Nat).ends_with("only through a tunnel)")
        );
        assert_eq!(
            check_forwardable(&set("2001:db8::1", "10.0.1.1", tun)),
            Ok(())
        );
        // An IPv4 VIP over an IPv6 underlay: through a tunnel only.
        assert_eq!(
            check_forwardable(&set("10.0.0.1", "2001:db8:1::1", tun)),
            Ok(())
        );
        assert!(refused("10.0.0.1", "2001:db8:1::1", Forward::Dr)
            .ends_with("(real server 2001:db8:1::1: only through a tunnel)"));
        // A table of both families builds; its VIPs are listed by family.
        let mut both = set("10.0.0.1", "10.0.1.1", tun);
        both.services
            .extend(set("2001:db8::1", "2001:db8:1::1", tun).services);
        let snap = Registry::new().build(&both, &Timeouts::default()).unwrap();
        assert_eq!(
            snap.vips4().collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 0, 0, 1)]
        );
        assert_eq!(
            snap.vips6().collect::<Vec<_>>(),
            ["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
        );
        let v6 = snap
            .service(Protocol::Tcp, "2001:db8::1".parse::<IpAddr>().unwrap(), 80)
            .expect("the IPv6 service");
        assert_eq!(
            v6.sched_dests[0].addr,
            "2001:db8:1::1".parse::<IpAddr>().unwrap()
        );
    }
}

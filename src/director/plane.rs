//! The director's control plane: applies `adm` requests and config reloads to the running table.
//!
//! Every change is computed on a copy of the [`ServiceSet`], turned into a new [`Snapshot`] and
//! published with one atomic swap; on any error nothing is published and the running table stays
//! as it was. Workers keep their connection tables across swaps, so established flows keep their
//! real server unless it left the table (then they are forgotten at their next packet: IPVS's
//! `expire_nodest_conn`; a server out because its check failed is held instead, its flows kept,
//! when its service has `expire_nodest_conn = false`).

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use ipnet::Ipv4Net;

use super::conn::{DestId, Timeouts as ConnTimeouts, KEY_TEMPLATE};
use super::nat::ReplyRouting;
use super::route::{RouteTable, TunnelRoute};
use super::service::{DestConfig, Forward, Protocol, ServiceKey, ServiceSet};
use super::snat::{self, SnatRouting, SnatRule, SnatRules};
use super::stats::{self, StatsBook, Totals};
use super::{Director, Registry, Shared, Snapshot};
use crate::control::config::{self, DirectorSettings};
use crate::control::format::{ConnEntry, Listing, Rates, Stats};
use crate::control::ops::Timeouts;
use crate::control::proto::{Request, Response};
use crate::control::socket;
use crate::health::config::HealthConfig;
use crate::model::Edit as Command;
use crate::sys::netcfg::{neigh_key, NetChanges};
use crate::time::{Clock, Duration};

/// Owns the configured table and everything the director changed on the host.
pub struct ControlPlane {
    shared: Arc<Shared>,
    cores: Vec<Arc<Mutex<Director>>>,
    clock: Clock,
    state: Mutex<PlaneState>,
    tun_name: String,
    announce: Vec<String>,
    config_path: Option<PathBuf>,
    stats: Mutex<StatsBook>,
    /// What `--save-config` reports besides the table ([`ControlPlane::set_settings`]).
    settings: Mutex<DirectorSettings>,
    /// The `--keepalived-conf` file, re-read on reload when there is no `--config`.
    keepalived_path: Mutex<Option<PathBuf>>,
    /// The health checks to run and a generation counted up at every change
    /// ([`ControlPlane::set_health_config`]); the health monitor restarts its checkers when the
    /// generation moves.
    health_config: Mutex<(u64, HealthConfig)>,
    /// The health probes' durations, recorded by the probe threads, read by the scrapes.
    check_durations: crate::metrics::CheckDurations,
}

struct PlaneState {
    set: ServiceSet,
    timeouts: Timeouts,
    registry: Registry,
    net: NetChanges,
    routed: BTreeSet<Ipv4Addr>,
    /// What the health checkers changed on top of `set` (the configured table).
    health: HealthOverlay,
    /// The policy routing that brings NAT real servers' replies into the TUN.
    nat_routing: ReplyRouting,
    /// `[[tunnel_route]]`s, put in every snapshot; their prefixes are routed into the TUN.
    routes: Arc<RouteTable>,
    routed_prefixes: BTreeSet<Ipv4Net>,
    /// The S-NAT gateway's rules (`[[snat]]`), published with every snapshot.
    snat: Arc<SnatRules>,
    /// The routing S-NAT needs.
    snat_routing: SnatRouting,
}

/// A real server's state as the health checkers see it ([`ControlPlane::set_dest_health`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// In the table with its configured weight.
    Up,
    /// Out of the table. Its flows are forgotten at their next packet (the service's
    /// `expire_nodest_conn`, the default), or, with `expire_nodest_conn = false`, kept and
    /// their packets dropped until it comes back or they time out.
    Down,
    /// In the table with this weight (0 = `inhibit_on_failure`: no new flows, old ones kept;
    /// other values: MISC_CHECK dynamic weights).
    Weight(u32),
}

/// A service's sorry server as the health checkers set it ([`ControlPlane::set_sorry_server`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sorry {
    /// The sorry server.
    pub addr: SocketAddrV4,
    /// In use: the quorum is lost, it replaces the real servers (weight 1).
    pub active: bool,
    /// `sorry_server_inhibit`: while not in use it stays in the table with weight 0.
    pub inhibit: bool,
}

/// The health checkers' edits, applied over the configured table at every publish, so that
/// `adm` edits and reloads of the configured table keep them.
#[derive(Default)]
struct HealthOverlay {
    dests: HashMap<(ServiceKey, Ipv4Addr, u16), Health>,
    sorry: HashMap<ServiceKey, Sorry>,
}

impl HealthOverlay {
    /// Records the health of real server `addr:port` of `service` (port 0 = the service's;
    /// matched in [`HealthOverlay::apply`] by [`dest_port`]). Returns the previous health.
    fn set_dest(&mut self, service: ServiceKey, addr: Ipv4Addr, port: u16, h: Health) -> Health {
        let k = (service, addr, normalize_port(service, port));
        let old = match h {
            Health::Up => self.dests.remove(&k),
            h => self.dests.insert(k, h),
        };
        old.unwrap_or(Health::Up)
    }

    /// The table the data path gets: `set` with the health edits, and the real servers it
    /// holds ([`Registry::build_with_held`]): those out because they are down, of services
    /// with `expire_nodest_conn = false`.
    fn apply(&self, set: &ServiceSet) -> (ServiceSet, Vec<(ServiceKey, DestConfig)>) {
        let mut out = set.clone();
        let mut held = Vec::new();
        if self.dests.is_empty() && self.sorry.is_empty() {
            return (out, held);
        }
        for svc in &mut out.services {
            let key = svc.key;
            if !svc.policy.expire_nodest_conn {
                held.extend(
                    svc.dests
                        .iter()
                        .filter(|d| {
                            self.dests.get(&(key, d.addr, dest_port(key, d))) == Some(&Health::Down)
                        })
                        .map(|d| (key, d.clone())),
                );
            }
            let forward = svc.dests.first().map(|d| d.forward);
            let sorry = self.sorry.get(&key);
            if sorry.is_some_and(|s| s.active) {
                svc.dests.clear();
            }
            svc.dests.retain_mut(
                |d| match self.dests.get(&(key, d.addr, dest_port(key, d))) {
                    None | Some(Health::Up) => true,
                    Some(Health::Down) => false,
                    Some(Health::Weight(w)) => {
                        d.weight = *w;
                        true
                    }
                },
            );
            if let Some(s) = sorry {
                let present = svc
                    .dests
                    .iter()
                    .any(|d| d.addr == *s.addr.ip() && d.port == s.addr.port());
                if (s.active || s.inhibit) && !present {
                    svc.dests.push(DestConfig {
                        addr: *s.addr.ip(),
                        port: s.addr.port(),
                        weight: u32::from(s.active),
                        forward: forward.unwrap_or_else(|| Forward::tunnel(Default::default())),
                        u_threshold: 0,
                        l_threshold: 0,
                    });
                }
            }
        }
        (out, held)
    }
}

/// The port a real server of `service` is known by in health edits
/// ([`ControlPlane::set_dest_health`]): the service's port when the server has none (0, as a
/// table entry may hold) or cannot have another (tunnel and DR keep the port), else its own.
pub fn dest_port(service: ServiceKey, dest: &DestConfig) -> u16 {
    match dest.forward {
        Forward::Tunnel { .. } | Forward::Dr => service.port,
        Forward::Nat => normalize_port(service, dest.port),
    }
}

/// `port`, or the service's port when `port` is 0.
fn normalize_port(service: ServiceKey, port: u16) -> u16 {
    if port == 0 {
        service.port
    } else {
        port
    }
}

/// Where the director lives on the host: what the control plane routes and announces.
pub struct HostSetup {
    /// Changes made so far (ip_forward, ...); VIP routes are added to it.
    pub net: NetChanges,
    /// The TUN device VIPs are routed into.
    pub tun_name: String,
    /// LAN interfaces on which VIPs are answered by proxy ARP.
    pub announce: Vec<String>,
    /// The `--config` file, re-read on reload.
    pub config_path: Option<PathBuf>,
}

/// The data path's timeouts for `adm --set` values.
pub fn conn_timeouts(t: &Timeouts) -> ConnTimeouts {
    let mut c = ConnTimeouts::default();
    c.set_tcp(Duration::from_secs(t.tcp.into()));
    c.set_tcp_fin(Duration::from_secs(t.tcpfin.into()));
    c.set_udp(Duration::from_secs(t.udp.into()));
    c
}

impl ControlPlane {
    /// A control plane over `cores`, starting from `set` (empty, or the `--config` file's).
    pub fn new(
        shared: Arc<Shared>,
        cores: Vec<Arc<Mutex<Director>>>,
        clock: Clock,
        host: HostSetup,
        set: ServiceSet,
        timeouts: Timeouts,
    ) -> anyhow::Result<ControlPlane> {
        let HostSetup {
            mut net,
            tun_name,
            announce,
            config_path,
        } = host;
        for iface in &announce {
            net.set_sysctl(&neigh_key(iface, "proxy_delay"), "0")
                .with_context(|| format!("setting proxy_delay 0 on {iface}"))?;
        }
        let queues = cores.len();
        let plane = ControlPlane {
            shared,
            cores,
            clock,
            state: Mutex::new(PlaneState {
                set: ServiceSet::default(),
                timeouts,
                registry: Registry::new(),
                net,
                routed: BTreeSet::new(),
                health: HealthOverlay::default(),
                nat_routing: ReplyRouting::default(),
                routes: Arc::default(),
                routed_prefixes: BTreeSet::new(),
                snat: Arc::default(),
                snat_routing: SnatRouting::default(),
            }),
            keepalived_path: Mutex::new(None),
            check_durations: crate::metrics::CheckDurations::default(),
            settings: Mutex::new(DirectorSettings {
                queues,
                tun_name: tun_name.clone(),
                announce: announce.clone(),
                timeouts,
                ..DirectorSettings::default()
            }),
            tun_name,
            announce,
            config_path,
            stats: Mutex::new(StatsBook::new()),
            health_config: Mutex::new((0, HealthConfig::default())),
        };
        plane
            .replace(set, timeouts, None)
            .map_err(anyhow::Error::msg)?;
        Ok(plane)
    }

    /// Starts the per-namespace control socket.
    pub fn serve(self: Arc<Self>) -> std::io::Result<()> {
        let plane = self.clone();
        socket::serve(Arc::new(move |req| plane.handle(req)))?;
        Ok(())
    }

    /// Answers one `adm` request.
    pub fn handle(&self, req: Request) -> Response {
        match req {
            Request::Apply(cmds) => self.apply(&cmds),
            Request::List => Response::Listing(self.listing()),
            Request::ListConns => Response::Conns(self.conn_entries()),
            Request::GetTimeouts => match self.state.lock() {
                Ok(st) => Response::Timeouts(st.timeouts),
                Err(_) => Response::error("Memory allocation problem"),
            },
            Request::Config => match self.config_toml() {
                Some(toml) => Response::Config { toml },
                None => Response::error("Memory allocation problem"),
            },
            Request::Reload => self.handle_reload(),
        }
    }

    /// Records the director's effective settings (command line over config file over
    /// defaults) for `adm --save-config`. The values the control plane knows itself win over
    /// those of `s`: `queues` (the number of workers), `tun_name`, `announce` and the running
    /// timeouts; so only `tunnel_mtu` and `local_address` come from `s`.
    pub fn set_settings(&self, s: DirectorSettings) {
        if let Ok(mut mine) = self.settings.lock() {
            mine.tunnel_mtu = s.tunnel_mtu;
            mine.local_address = s.local_address.filter(|a| !a.is_unspecified());
        }
    }

    /// The running table, timeouts and settings as the TOML `tunlb director --config` loads;
    /// `None` if a lock is poisoned.
    pub fn config_toml(&self) -> Option<String> {
        let (set, timeouts) = {
            let st = self.state.lock().ok()?;
            (st.set.clone(), st.timeouts)
        };
        let mut settings = self.settings.lock().ok()?.clone();
        settings.timeouts = timeouts;
        settings.snat = self.state.lock().ok()?.snat.rules().to_vec();
        Some(config::to_toml(&set, &settings))
    }

    /// `adm --reload`: [`ControlPlane::reload`], logged as SIGHUP's is.
    fn handle_reload(&self) -> Response {
        match self.reload() {
            Ok(message) => {
                eprintln!("tunlb director: adm --reload: {message}");
                Response::Reloaded { message }
            }
            Err(e) => {
                let message = format!("reload rejected, running table kept: {e:#}");
                eprintln!("tunlb director: adm --reload: {message}");
                Response::error(message)
            }
        }
    }

    fn apply(&self, cmds: &[Command]) -> Response {
        let Ok(mut st) = self.state.lock() else {
            return Response::error("Memory allocation problem");
        };
        let mut set = st.set.clone();
        let mut timeouts = st.timeouts;
        let applied = match set.apply_batch(&mut timeouts, cmds) {
            Ok(applied) => applied,
            Err(e) => return Response::from_batch_error(&e),
        };
        if let Err(msg) = self.publish(&mut st, set, timeouts) {
            return Response::error(msg);
        }
        if !applied.zero.is_empty() {
            self.zero_stats(&applied.zero);
        }
        Response::Ok
    }

    /// The workers' per-server counters, summed (each worker's lock is held only to read).
    fn raw_stats(&self) -> HashMap<DestId, Totals> {
        let mut per_worker = Vec::with_capacity(self.cores.len());
        for core in &self.cores {
            if let Ok(d) = core.lock() {
                per_worker.push(d.counters().per_dest.clone());
            }
        }
        stats::sum(per_worker.iter().map(Vec::as_slice))
    }

    /// `-Z`: restart the counters of these services (`None`: all).
    fn zero_stats(&self, which: &[Option<ServiceKey>]) {
        let raw = self.raw_stats();
        let snap = self.shared.snapshot();
        let ids: Vec<DestId> = snap
            .services()
            .into_iter()
            .filter(|s| which.iter().any(|w| w.map_or(true, |k| k == s.config.key)))
            .flat_map(|s| s.dest_ids.iter().copied())
            .collect();
        if let Ok(mut book) = self.stats.lock() {
            book.zero(&raw, ids);
        }
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

    /// Replaces the whole table (config load or reload), and the S-NAT rules when given, all
    /// or nothing.
    fn replace(
        &self,
        set: ServiceSet,
        timeouts: Timeouts,
        snat: Option<Vec<SnatRule>>,
    ) -> Result<(), String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "control plane poisoned".to_string())?;
        let Some(rules) = snat else {
            return self.publish(&mut st, set, timeouts);
        };
        let old = std::mem::replace(&mut st.snat, Arc::new(SnatRules::new(rules)));
        let result = self.publish(&mut st, set, timeouts);
        if result.is_err() {
            st.snat = old;
        }
        result
    }

    /// Sets the S-NAT gateway's rules (`[[snat]]`, validated by the config loader) and
    /// publishes; on an error (a public address is a VIP, routing failed) the old rules stay.
    /// Mappings of sources no longer configured expire as usual.
    pub fn set_snat(&self, rules: Vec<SnatRule>) -> Result<(), String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "control plane poisoned".to_string())?;
        let new = Arc::new(SnatRules::new(rules));
        if *new == *st.snat {
            return Ok(());
        }
        let old = std::mem::replace(&mut st.snat, new);
        let (set, timeouts) = (st.set.clone(), st.timeouts);
        if let Err(e) = self.publish(&mut st, set, timeouts) {
            st.snat = old;
            return Err(e);
        }
        for r in st.snat.rules() {
            let to: Vec<String> = r.to.iter().map(Ipv4Addr::to_string).collect();
            eprintln!("tunlb director: S-NAT {} to {}", r.source, to.join(", "));
        }
        Ok(())
    }

    fn publish(
        &self,
        st: &mut PlaneState,
        set: ServiceSet,
        timeouts: Timeouts,
    ) -> Result<(), String> {
        Self::check_new_servers(&st.set, &set)?;
        let (table, held) = st.health.apply(&set);
        let mut snap = st
            .registry
            .build_with_held(&table, &held, &conn_timeouts(&timeouts))
            .map_err(|e| e.to_string())?
            .with_tunnel_routes(st.routes.clone());
        if let Some(a) = st.snat.public().iter().find(|a| snap.is_vip(**a)) {
            return Err(format!("S-NAT address {a} is also a VIP"));
        }
        snap.snat = st.snat.clone();
        self.sync_routes(st, &snap)?;
        self.log_changes(&st.set, &set);
        st.set = set;
        st.timeouts = timeouts;
        self.shared.publish(snap);
        Ok(())
    }

    /// Refuses real servers the data path could not reach, before anything is published:
    /// DR servers must be on a directly connected network.
    fn check_new_servers(old: &ServiceSet, new: &ServiceSet) -> Result<(), String> {
        super::dr_io::check_new_dr_servers(old, new)
    }

    /// Replaces the tunnel routes (`[[tunnel_route]]`): routes their prefixes into the TUN,
    /// withdraws the prefixes that are gone and publishes a snapshot with them.
    pub fn set_tunnel_routes(&self, routes: &[TunnelRoute]) -> Result<(), String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "control plane poisoned".to_string())?;
        let wanted: BTreeSet<Ipv4Net> = routes.iter().map(|r| r.prefix.trunc()).collect();
        for prefix in wanted.difference(&st.routed_prefixes.clone()) {
            st.net
                .add_route(*prefix, &self.tun_name)
                .map_err(|e| format!("routing {prefix} into {}: {e}", self.tun_name))?;
            st.routed_prefixes.insert(*prefix);
        }
        for prefix in st.routed_prefixes.clone().difference(&wanted) {
            if let Err(e) = st.net.del_route(*prefix, &self.tun_name) {
                eprintln!("tunlb director: withdrawing tunnel route {prefix}: {e}");
            }
            st.routed_prefixes.remove(prefix);
        }
        let table = RouteTable::new(routes);
        if *st.routes != table {
            for r in table.routes() {
                eprintln!(
                    "tunlb director: tunnel route {} via {} ({})",
                    r.prefix, r.via, r.encap
                );
            }
        }
        st.routes = Arc::new(table);
        if let Ok(mut settings) = self.settings.lock() {
            settings.tunnel_routes = routes.to_vec();
        }
        let (set, timeouts) = (st.set.clone(), st.timeouts);
        self.publish(&mut st, set, timeouts)
    }

    /// Routes every VIP into the TUN (and announces it), and withdraws VIPs that are gone.
    fn sync_routes(&self, st: &mut PlaneState, snap: &Snapshot) -> Result<(), String> {
        let wanted: BTreeSet<Ipv4Addr> = snap.vips().collect();
        for vip in wanted.difference(&st.routed.clone()) {
            let net = ipnet::Ipv4Net::new(*vip, 32).map_err(|e| e.to_string())?;
            st.net
                .add_route(net, &self.tun_name)
                .map_err(|e| format!("routing VIP {vip} into {}: {e}", self.tun_name))?;
            for iface in &self.announce {
                st.net
                    .add_proxy_neigh(*vip, iface)
                    .map_err(|e| format!("announcing VIP {vip} on {iface}: {e}"))?;
            }
            st.routed.insert(*vip);
        }
        for vip in st.routed.clone().difference(&wanted) {
            let net = ipnet::Ipv4Net::new(*vip, 32).map_err(|e| e.to_string())?;
            if let Err(e) = st.net.del_route(net, &self.tun_name) {
                eprintln!("tunlb director: withdrawing VIP {vip}: {e}");
            }
            st.routed.remove(vip);
        }
        st.nat_routing.sync(&mut st.net, snap, &self.tun_name)?;
        st.snat_routing
            .sync(&mut st.net, &snap.snat, &self.tun_name)
    }

    fn log_changes(&self, old: &ServiceSet, new: &ServiceSet) {
        for s in &new.services {
            match old.services.iter().find(|o| o.key == s.key) {
                None => eprintln!(
                    "tunlb director: service {} added ({} real servers, {})",
                    s.key,
                    s.dests.len(),
                    s.scheduler
                ),
                Some(o) => {
                    for d in &s.dests {
                        if !o.dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                            eprintln!("tunlb director: service {}: real server {}:{} added (weight {}, {})", s.key, d.addr, d.port, d.weight, d.forward.ipvsadm_name());
                        }
                    }
                    for d in &o.dests {
                        if !s.dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                            eprintln!(
                                "tunlb director: service {}: real server {}:{} removed",
                                s.key, d.addr, d.port
                            );
                        }
                    }
                }
            }
        }
        for o in &old.services {
            if !new.services.iter().any(|s| s.key == o.key) {
                eprintln!("tunlb director: service {} removed", o.key);
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
        listing
    }

    /// Where the health probes record their durations (read by [`ControlPlane::metrics_sample`]).
    pub fn check_durations(&self) -> &crate::metrics::CheckDurations {
        &self.check_durations
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
        sample.nat_flows = self.shared.nat.len() as u64;
        sample.checks = self.check_durations.snapshot();
        let (configured, overlay) = match self.state.lock() {
            Ok(st) => (st.set.clone(), st.health.dests.clone()),
            Err(_) => return sample,
        };
        let snap = self.shared.snapshot();
        for svc in &configured.services {
            let key = svc.key;
            let live = snap.service(key.proto, key.vip, key.port);
            for d in &svc.dests {
                let port = dest_port(key, d);
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
        for core in &self.cores {
            let Ok(d) = core.lock() else { continue };
            for (k, c) in d.conns().iter() {
                let Some(proto) = Protocol::from_number(k.proto) else {
                    continue;
                };
                if c.expires() <= now {
                    continue;
                }
                out.push(ConnEntry {
                    proto,
                    expires_secs: (c.expires() - now).as_secs() as u32,
                    state: c.state.as_str().to_string(),
                    client: SocketAddrV4::new(k.caddr, k.cport),
                    vip: SocketAddrV4::new(k.vaddr, k.vport),
                    dest: dest_addr(c.dest),
                });
            }
        }
        for f in self.shared.nat.flows() {
            let (k, c) = (f.key, f.conn);
            let Some(proto) = Protocol::from_number(k.proto) else {
                continue;
            };
            if c.expires() <= now {
                continue;
            }
            out.push(ConnEntry {
                proto,
                expires_secs: (c.expires() - now).as_secs() as u32,
                state: c.state.as_str().to_string(),
                client: SocketAddrV4::new(k.caddr, k.cport),
                vip: SocketAddrV4::new(k.vaddr, k.vport),
                dest: SocketAddrV4::new(f.raddr, f.rport),
            });
        }
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

    /// Remembers the `--keepalived-conf` file so that a reload re-reads it.
    pub fn set_keepalived_path(&self, path: PathBuf) {
        if let Ok(mut p) = self.keepalived_path.lock() {
            *p = Some(path);
        }
    }

    /// Re-reads the `--config` file (or the `--keepalived-conf` file: its virtual servers and
    /// checkers); a bad file is rejected whole and the table kept.
    pub fn reload(&self) -> anyhow::Result<String> {
        let keepalived = self.keepalived_path.lock().ok().and_then(|p| p.clone());
        let (path, (settings, set)) = match (&self.config_path, keepalived) {
            (Some(path), _) => (path.clone(), config::load(path)?),
            (None, Some(path)) => {
                let k = crate::control::keepalived::load_reporting(&path)?;
                let settings = DirectorSettings {
                    health: k.health,
                    ..DirectorSettings::default()
                };
                (path, (settings, k.services))
            }
            (None, None) => anyhow::bail!(
                "the director was started without --config: there is no file to reload"
            ),
        };
        let timeouts = settings.timeouts;
        let n = set.services.len();
        self.replace(set, timeouts, Some(settings.snat))
            .map_err(anyhow::Error::msg)?;
        self.set_tunnel_routes(&settings.tunnel_routes)
            .map_err(anyhow::Error::msg)?;
        self.set_health_config(settings.health);
        Ok(format!("reloaded {} ({n} services)", path.display()))
    }

    /// Replaces the health checks to run (at start and at every reload); the health monitor
    /// ([`crate::health::HealthMonitor`]) sees the new generation and restarts its checkers.
    pub fn set_health_config(&self, health: HealthConfig) {
        if let Ok(mut h) = self.health_config.lock() {
            *h = (h.0 + 1, health);
        }
    }

    /// The generation of the health config: it changes at every
    /// [`ControlPlane::set_health_config`].
    pub fn health_generation(&self) -> u64 {
        self.health_config.lock().map(|h| h.0).unwrap_or(0)
    }

    /// The health checks to run and their generation.
    pub fn health_config(&self) -> (u64, HealthConfig) {
        self.health_config
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The configured table (without the health checkers' edits).
    pub fn configured(&self) -> ServiceSet {
        self.state
            .lock()
            .map(|st| st.set.clone())
            .unwrap_or_default()
    }

    /// Health checking: puts real server `addr:port` of `service` up, down or at a weight, over
    /// the configured table, and publishes at once. Returns whether anything changed. The
    /// server is matched by [`dest_port`], so port 0 here or in the table means the service's.
    pub fn set_dest_health(
        &self,
        service: ServiceKey,
        addr: Ipv4Addr,
        port: u16,
        health: Health,
    ) -> Result<bool, String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "control plane poisoned".to_string())?;
        let old = st.health.set_dest(service, addr, port, health);
        if old == health {
            return Ok(false);
        }
        let (set, timeouts) = (st.set.clone(), st.timeouts);
        if let Err(e) = self.publish(&mut st, set, timeouts) {
            st.health.set_dest(service, addr, port, old);
            return Err(e);
        }
        Ok(true)
    }

    /// Health checking: sets (or with `None` clears) the sorry server of `service` and
    /// publishes. Returns whether anything changed.
    pub fn set_sorry_server(
        &self,
        service: ServiceKey,
        sorry: Option<Sorry>,
    ) -> Result<bool, String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "control plane poisoned".to_string())?;
        let old = st.health.sorry.get(&service).copied();
        if old == sorry {
            return Ok(false);
        }
        match sorry {
            Some(s) => st.health.sorry.insert(service, s),
            None => st.health.sorry.remove(&service),
        };
        let (set, timeouts) = (st.set.clone(), st.timeouts);
        if let Err(e) = self.publish(&mut st, set, timeouts) {
            match old {
                Some(s) => st.health.sorry.insert(service, s),
                None => st.health.sorry.remove(&service),
            };
            return Err(e);
        }
        Ok(true)
    }

    /// The pins of health probes sent through the data path ([`super::probe_pin`]).
    pub fn probe_pins(&self) -> Arc<super::probe_pin::ProbePins> {
        self.shared.probe_pins.clone()
    }

    /// The data path's clock (the workers' and the probe pins' deadlines are on it).
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Lets the answers to probes through the data path in on `iface`: they come from the VIP,
    /// which the director routes into its TUN, so strict reverse-path filtering (1) on `iface`
    /// or `all` would drop them; both are set to loose (2) where strict, and restored on exit.
    pub fn accept_probe_replies(&self, iface: &str) -> Result<(), String> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| "control plane poisoned".to_string())?;
        for conf in ["all", iface] {
            let key = crate::sys::netcfg::conf_key(conf, "rp_filter");
            let now = crate::sys::netcfg::NetOps::read_sysctl(&mut st.net.ops().clone(), &key);
            if now.is_ok_and(|v| v.trim() == "1") {
                st.net
                    .set_sysctl(&key, "2")
                    .map_err(|e| format!("loosening rp_filter on {conf}: {e}"))?;
                eprintln!(
                    "tunlb director: health: rp_filter on {conf} set to 2 (loose) for probes through the tunnel"
                );
            }
        }
        Ok(())
    }

    /// Undoes every change to the host (routes, proxy neighbours, sysctls).
    pub fn shutdown(&self) {
        if let Ok(mut st) = self.state.lock() {
            if let Err(e) = st.net.restore() {
                eprintln!("tunlb director: restoring network settings: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::service::{SchedulerKind, ServiceConfig};
    use crate::director::{DirectorConfig, Snapshot};

    /// A control plane with two workers and no services (so it touches no route), reading its
    /// config from `config_path`.
    fn plane(config_path: Option<PathBuf>) -> ControlPlane {
        let shared = Arc::new(Shared::new(Snapshot::default()));
        let cores = (0..2)
            .map(|_| {
                Arc::new(Mutex::new(Director::new(
                    shared.clone(),
                    DirectorConfig::default(),
                )))
            })
            .collect();
        let host = HostSetup {
            net: NetChanges::new(),
            tun_name: "tlbtest0".to_string(),
            announce: Vec::new(),
            config_path,
        };
        let timeouts = Timeouts {
            tcp: 600,
            tcpfin: 60,
            udp: 30,
        };
        ControlPlane::new(
            shared,
            cores,
            Clock::new(),
            host,
            ServiceSet::default(),
            timeouts,
        )
        .expect("control plane")
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("tunlb-plane-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write a temp file");
        path
    }

    #[test]
    fn config_reports_the_running_settings() {
        let plane = plane(None);
        plane.set_settings(DirectorSettings {
            queues: 7,
            tun_name: "ignored".to_string(),
            tunnel_mtu: 1400,
            local_address: Some(Ipv4Addr::new(10, 2, 0, 2)),
            ..DirectorSettings::default()
        });
        let Response::Config { toml } = plane.handle(Request::Config) else {
            panic!("no config answer");
        };
        let (settings, set) = config::load_str(&toml, "saved.toml").expect("loads back");
        assert!(set.services.is_empty());
        assert_eq!(
            settings,
            DirectorSettings {
                queues: 2,
                tun_name: "tlbtest0".to_string(),
                tunnel_mtu: 1400,
                local_address: Some(Ipv4Addr::new(10, 2, 0, 2)),
                announce: Vec::new(),
                timeouts: Timeouts {
                    tcp: 600,
                    tcpfin: 60,
                    udp: 30
                },
                health: Default::default(),
                tunnel_routes: Vec::new(),
                snat: Vec::new(),
            }
        );
        // `--set` shows in the next save; an unspecified local address is left out.
        let set_cmd = Command::SetTimeouts(Timeouts {
            tcp: 900,
            tcpfin: 0,
            udp: 0,
        });
        assert_eq!(plane.handle(Request::Apply(vec![set_cmd])), Response::Ok);
        plane.set_settings(DirectorSettings {
            local_address: Some(Ipv4Addr::UNSPECIFIED),
            ..DirectorSettings::default()
        });
        let toml = plane.config_toml().expect("config");
        let (settings, _) = config::load_str(&toml, "saved.toml").expect("loads back");
        assert_eq!(settings.timeouts.tcp, 900);
        assert_eq!(settings.local_address, None);
    }

    /// A real server stored with port 0 (the service's) and one stored with the service port
    /// are both found by a health edit naming either port.
    #[test]
    fn health_edits_match_a_real_server_stored_with_port_zero() {
        let key = ServiceKey {
            vip: Ipv4Addr::new(10, 100, 0, 100),
            port: 80,
            proto: Protocol::Tcp,
        };
        let dest = |last: u8, port: u16, forward: Forward| DestConfig {
            addr: Ipv4Addr::new(10, 3, 0, last),
            port,
            weight: 1,
            forward,
            u_threshold: 0,
            l_threshold: 0,
        };
        let tunnel = Forward::tunnel(Default::default());
        let set = ServiceSet {
            services: vec![ServiceConfig {
                key,
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
                dests: vec![
                    dest(12, 0, tunnel),
                    dest(13, 80, tunnel),
                    dest(14, 0, Forward::Nat),
                    dest(15, 8080, Forward::Nat),
                ],
                policy: Default::default(),
            }],
        };
        let ports: Vec<u16> = set.services[0]
            .dests
            .iter()
            .map(|d| dest_port(key, d))
            .collect();
        assert_eq!(ports, [80, 80, 80, 8080]);
        let mut overlay = HealthOverlay::default();
        let rip = |last| Ipv4Addr::new(10, 3, 0, last);
        // The monitor names the service port; the table holds 0 (and the other way round).
        assert_eq!(overlay.set_dest(key, rip(12), 80, Health::Down), Health::Up);
        assert_eq!(
            overlay.set_dest(key, rip(13), 0, Health::Weight(0)),
            Health::Up
        );
        assert_eq!(overlay.set_dest(key, rip(14), 80, Health::Down), Health::Up);
        assert_eq!(
            overlay.set_dest(key, rip(15), 8080, Health::Weight(3)),
            Health::Up
        );
        let (out, held) = overlay.apply(&set);
        assert!(held.is_empty(), "expire_nodest_conn holds nothing");
        let left: Vec<(Ipv4Addr, u32)> = out.services[0]
            .dests
            .iter()
            .map(|d| (d.addr, d.weight))
            .collect();
        assert_eq!(left, [(rip(13), 0), (rip(15), 3)]);
        // Up again under the other spelling of the port restores the configured table.
        assert_eq!(overlay.set_dest(key, rip(12), 0, Health::Up), Health::Down);
        assert_eq!(
            overlay.set_dest(key, rip(13), 80, Health::Up),
            Health::Weight(0)
        );
        assert_eq!(overlay.set_dest(key, rip(14), 0, Health::Up), Health::Down);
        assert_eq!(
            overlay.set_dest(key, rip(15), 8080, Health::Up),
            Health::Weight(3)
        );
        assert_eq!(overlay.apply(&set), (set.clone(), Vec::new()));
        // With expire_nodest_conn = false a server that is down is held, one at weight 0 is not
        // (it stays in the table).
        let mut keep = set;
        keep.services[0].policy.expire_nodest_conn = false;
        overlay.set_dest(key, rip(12), 80, Health::Down);
        overlay.set_dest(key, rip(13), 80, Health::Weight(0));
        let (out, held) = overlay.apply(&keep);
        assert_eq!(held, [(key, keep.services[0].dests[0].clone())]);
        assert_eq!(out.services[0].dests.len(), 3);
    }

    #[test]
    fn reload_answers_with_the_outcome() {
        let without = plane(None);
        assert_eq!(
            without.handle(Request::Reload),
            Response::error(
                "reload rejected, running table kept: the director was started without \
                 --config: there is no file to reload"
            )
        );

        let path = temp_file("reload.toml", "[timeouts]\ntcp = 0\n");
        let plane = plane(Some(path.clone()));
        let Response::Error { message, .. } = plane.handle(Request::Reload) else {
            panic!("a bad file must be refused");
        };
        let at = format!("{}:2:7: timeouts.tcp", path.display());
        assert!(message.contains(&at), "{message}");
        assert_eq!(
            plane.handle(Request::GetTimeouts),
            Response::Timeouts(Timeouts {
                tcp: 600,
                tcpfin: 60,
                udp: 30
            })
        );

        assert_eq!(
            plane.health_generation(),
            0,
            "a rejected file changes no checks"
        );
        let checked = "[timeouts]\ntcp = 100\n[[service]]\nvip = \"10.100.0.100\"\nport = 80\n\
                       delay_loop = 2\n";
        let (want, _) = config::load_str(checked, "h.toml").expect("valid");
        assert_eq!(want.health.services.len(), 1);
        std::fs::write(&path, "[timeouts]\ntcp = 100\n").expect("rewrite");
        plane.set_health_config(want.health.clone());
        assert_eq!(plane.health_config(), (1, want.health));
        assert_eq!(
            plane.handle(Request::Reload),
            Response::Reloaded {
                message: format!("reloaded {} (0 services)", path.display())
            }
        );
        assert!(matches!(
            plane.handle(Request::GetTimeouts),
            Response::Timeouts(t) if t.tcp == 100
        ));
        // The reload hands the health monitor the file's checks (here: none) as a new generation.
        assert_eq!(plane.health_config(), (2, HealthConfig::default()));
        let _ = std::fs::remove_file(&path);
    }
}

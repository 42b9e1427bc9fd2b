//! The director's control plane: applies `adm` requests and config reloads to the running table.
//!
//! Every change is computed on a copy of the [`ServiceSet`], turned into a new
//! [`Snapshot`](crate::director::Snapshot) and published with one atomic swap; on any error
//! ([`PlaneError`]) nothing is published and the running table stays as it was. Workers keep their connection tables across swaps, so established flows keep their
//! real server unless it left the table (then they are forgotten at their next packet: IPVS's
//! `expire_nodest_conn`; a server out because its check failed is held instead, its flows kept,
//! when its service has `expire_nodest_conn = false`).
//!
//! - [`requests`]: `adm` requests (apply, list, `--save-config`, `--reload`).
//! - [`reload`]: replacing the whole table from the `--config` or `--keepalived-conf` file.
//! - [`host`]: what the table changes on the host: VIP routes and their ARP answers, tunnel routes,
//!   the NAT and S-NAT policy routing, rp_filter for probes through the data path.
//! - [`health`]: the health checkers' overlay over the configured table (the control plane
//!   is their [`HealthPlane`](crate::health::HealthPlane)).
//! - [`listing`]: `-L` listings with counters and rates, `-L -c` connections, the rate ticker.
//! - [`metrics`]: the sample a `/metrics` scrape renders.

pub mod health;
pub mod host;
pub mod listing;
pub mod metrics;
pub mod reload;
pub mod requests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

use self::health::HealthOverlay;
use crate::control::config::DirectorSettings;
use crate::control::ops::Timeouts;
use crate::control::socket;
use crate::daemon::announce::Announcer;
use crate::daemon::vrrp::VrrpStatus;
use crate::director::conn::Timeouts as ConnTimeouts;
use crate::director::io::resolver::{self, DrServerError};
use crate::director::nat::ReplyRouting;
use crate::director::route::RouteTable;
use crate::director::snat::{SnatRouting, SnatRules};
use crate::director::stats::StatsBook;
use crate::director::table::{check_forwardable, BuildError, Ipv6NotForwarded};
use crate::director::{Director, Registry, Shared};
use crate::health::config::HealthConfig;
use crate::model::ServiceSet;
use crate::sys::netcfg::{NetChanges, NetError};
use crate::time::{Clock, Duration};

/// Owns the configured table and everything the director changed on the host.
pub struct ControlPlane {
    shared: Arc<Shared>,
    cores: Vec<Arc<Mutex<Director>>>,
    clock: Clock,
    state: Mutex<PlaneState>,
    tun_name: String,
    announce: Vec<String>,
    /// The ARP responder answering for the VIPs on the `announce` interfaces.
    announcer: Arc<Announcer>,
    /// `--announce-table`: VIPs with a live real server are routed into it too.
    announce_table: Option<u32>,
    config_path: Option<PathBuf>,
    stats: Mutex<StatsBook>,
    /// What `--save-config` reports besides the table ([`ControlPlane::set_settings`]).
    settings: Mutex<DirectorSettings>,
    /// The `--keepalived-conf` file, re-read on reload when there is no `--config`.
    keepalived_path: Mutex<Option<PathBuf>>,
    /// The health checks to run and a generation counted up at every change
    /// ([`ControlPlane::set_health_config`]); the health monitor rebuilds its checkers when the
    /// generation moves, keeping those whose checks did not change.
    health_config: Mutex<(u64, HealthConfig)>,
    /// The health probes' durations, recorded by the probe threads, read by the scrapes.
    check_durations: crate::metrics::CheckDurations,
    /// The VRRP driver's published state, when VRRP runs.
    vrrp: Mutex<Option<Arc<VrrpStatus>>>,
    /// Connection sync's counters, when it runs ([`ControlPlane::set_sync_stats`]).
    sync_stats: std::sync::OnceLock<Arc<crate::sync::SyncStats>>,
}

struct PlaneState {
    set: ServiceSet,
    timeouts: Timeouts,
    registry: Registry,
    net: NetChanges,
    routed: BTreeSet<IpAddr>,
    /// Whether the TUN was readied for IPv6 VIPs or tunnel-route prefixes
    /// ([`NetChanges::tun_ipv6`]).
    tun_ipv6: bool,
    /// The VIPs routed into the announce table (`--announce-table`): those with a live real
    /// server.
    announced: BTreeSet<IpAddr>,
    /// What the health checkers changed on top of `set` (the configured table).
    health: HealthOverlay,
    /// The policy routing that brings NAT real servers' replies into the TUN.
    nat_routing: ReplyRouting,
    /// `[[tunnel_route]]`s, put in every snapshot; their prefixes are routed into the TUN.
    routes: Arc<RouteTable>,
    routed_prefixes: BTreeSet<IpNet>,
    /// The S-NAT gateway's rules (`[[snat]]`), published with every snapshot.
    snat: Arc<SnatRules>,
    /// The routing S-NAT needs.
    snat_routing: SnatRouting,
}

/// Where the director lives on the host: what the control plane routes and announces.
pub struct HostSetup {
    /// Changes made so far (ip_forward, ...); VIP routes are added to it.
    pub net: NetChanges,
    /// The TUN device VIPs are routed into.
    pub tun_name: String,
    /// LAN interfaces on which every VIP is answered (ARP), always.
    pub announce: Vec<String>,
    /// The ARP responder (shared with the VRRP driver, which announces its VIPs while MASTER).
    pub announcer: Arc<Announcer>,
    /// `--announce-table`: the table into which live VIPs are routed for BIRD to announce.
    pub announce_table: Option<u32>,
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

/// Why the control plane refused a change; nothing was published, the running table stays.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    /// A thread panicked while holding the control plane's lock.
    #[error("control plane poisoned")]
    Poisoned,
    /// A new DR real server cannot be reached with frames.
    #[error(transparent)]
    DrServer(#[from] DrServerError),
    /// The table could not be turned into a snapshot.
    #[error(transparent)]
    Table(#[from] BuildError),
    /// A service with an IPv6 VIP or real server: the data path forwards IPv4 only for now.
    #[error(transparent)]
    Ipv6(#[from] Ipv6NotForwarded),
    /// An S-NAT public address is also a VIP.
    #[error("S-NAT address {0} is also a VIP")]
    SnatIsVip(std::net::IpAddr),
    /// A VIP could not be routed into the TUN.
    #[error("routing VIP {vip} into {tun}: {error}")]
    RouteVip {
        /// The VIP.
        vip: IpAddr,
        /// The TUN device.
        tun: String,
        /// What the kernel said.
        error: NetError,
    },
    /// A VIP could not be routed into the announce table (`--announce-table`).
    #[error("routing VIP {vip} into {tun} in the announce table {table}: {error}")]
    AnnounceRoute {
        /// The VIP.
        vip: IpAddr,
        /// The TUN device.
        tun: String,
        /// The `--announce-table`.
        table: u32,
        /// What the kernel said.
        error: NetError,
    },
    /// The VIPs could not be announced (ARP responder) on a LAN interface.
    #[error("announcing the VIPs on {iface}: {error}")]
    AnnounceVip {
        /// The `--announce` interface.
        iface: String,
        /// What the kernel said.
        error: std::io::Error,
    },
    /// A tunnel route's prefix could not be routed into the TUN.
    #[error("routing {prefix} into {tun}: {error}")]
    RoutePrefix {
        /// The `[[tunnel_route]]` prefix.
        prefix: IpNet,
        /// The TUN device.
        tun: String,
        /// What the kernel said.
        error: NetError,
    },
    /// The NAT reply routing or the S-NAT routing could not be set up (their own message).
    #[error("{0}")]
    Routing(String),
    /// rp_filter could not be loosened for probes through the data path.
    #[error("loosening rp_filter on {conf}: {error}")]
    RpFilter {
        /// `all` or the interface.
        conf: String,
        /// What the kernel said.
        error: NetError,
    },
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
            net,
            tun_name,
            announce,
            announcer,
            announce_table,
            config_path,
        } = host;
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
                tun_ipv6: false,
                announced: BTreeSet::new(),
                health: HealthOverlay::default(),
                nat_routing: ReplyRouting::default(),
                routes: Arc::default(),
                routed_prefixes: BTreeSet::new(),
                snat: Arc::default(),
                snat_routing: SnatRouting::default(),
            }),
            keepalived_path: Mutex::new(None),
            check_durations: crate::metrics::CheckDurations::default(),
            vrrp: Mutex::new(None),
            sync_stats: std::sync::OnceLock::new(),
            settings: Mutex::new(DirectorSettings {
                queues,
                tun_name: tun_name.clone(),
                announce: announce.clone(),
                timeouts,
                ..DirectorSettings::default()
            }),
            tun_name,
            announce,
            announcer,
            announce_table,
            config_path,
            stats: Mutex::new(StatsBook::new()),
            health_config: Mutex::new((0, HealthConfig::default())),
        };
        plane.replace(set, timeouts, None)?;
        Ok(plane)
    }

    /// Answers on the per-namespace control socket (bound early with
    /// [`socket::Listener::bind`]); the socket file goes when the returned server is dropped.
    pub fn serve(self: Arc<Self>, listener: socket::Listener) -> std::io::Result<socket::Server> {
        let plane = self.clone();
        listener.serve(Arc::new(move |req| plane.answer(req)))
    }

    fn publish(
        &self,
        st: &mut PlaneState,
        set: ServiceSet,
        timeouts: Timeouts,
    ) -> Result<(), PlaneError> {
        // IPv6 stops here, before anything is checked or published (all or nothing).
        check_forwardable(&set)?;
        Self::check_new_servers(&st.set, &set)?;
        let (table, held) = st.health.apply(&set);
        // A changed mh table remembers when (second chance, `--second-chance-window`).
        st.registry.now = self.clock.now();
        let mut snap = st
            .registry
            .build_with_held(&table, &held, &conn_timeouts(&timeouts))?
            .with_tunnel_routes(st.routes.clone());
        if let Some(a) = st.snat.public().iter().find(|a| snap.is_vip(**a)) {
            return Err(PlaneError::SnatIsVip(*a));
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
    fn check_new_servers(old: &ServiceSet, new: &ServiceSet) -> Result<(), DrServerError> {
        resolver::check_new_dr_servers(old, new)
    }

    fn log_changes(&self, old: &ServiceSet, new: &ServiceSet) {
        for s in &new.services {
            match old.services.iter().find(|o| o.key == s.key) {
                None => log::info!(
                    "tunlb director: service {} added ({} real servers, {})",
                    s.key,
                    s.dests.len(),
                    s.scheduler
                ),
                Some(o) => {
                    for d in &s.dests {
                        if !o.dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                            log::info!(
                                "tunlb director: service {}: real server {} added (weight {}, {})",
                                s.key,
                                crate::model::fmt_addr_port(d.addr, d.port),
                                d.weight,
                                d.forward.ipvsadm_name()
                            );
                        }
                    }
                    for d in &o.dests {
                        if !s.dests.iter().any(|x| x.addr == d.addr && x.port == d.port) {
                            log::info!(
                                "tunlb director: service {}: real server {} removed",
                                s.key,
                                crate::model::fmt_addr_port(d.addr, d.port)
                            );
                        }
                    }
                }
            }
        }
        for o in &old.services {
            if !new.services.iter().any(|s| s.key == o.key) {
                log::info!("tunlb director: service {} removed", o.key);
            }
        }
    }

    /// Lets `adm --vrrp` and `/metrics` show the VRRP driver's instances.
    pub fn set_vrrp_status(&self, status: Arc<VrrpStatus>) {
        if let Ok(mut v) = self.vrrp.lock() {
            *v = Some(status);
        }
    }

    /// The VRRP instances for `adm --vrrp` (empty without VRRP).
    pub fn vrrp_entries(&self) -> Vec<crate::control::vrrp_status::VrrpEntry> {
        let status = self.vrrp.lock().ok().and_then(|v| v.clone());
        status.map(|s| s.entries()).unwrap_or_default()
    }

    /// Undoes every change to the host (routes, sysctls) and stops answering ARP.
    pub fn shutdown(&self) {
        self.announcer
            .clear_owner(crate::daemon::announce::ANNOUNCE_OWNER);
        // Also after a thread panicked holding the lock: the host must be restored.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = st.net.restore() {
            log::error!("tunlb director: restoring network settings: {e}");
        }
    }
}

//! The neighbour resolver, and the on-link check of new DR real servers.
//!
//! - [`spawn_resolver`]: one thread that keeps every DR real server's
//!   [`NeighSlot`](crate::director::dr::NeighSlot) filled from the kernel's route and neighbour
//!   tables. It re-reads them every second, at once when the table of services changes, and
//!   within milliseconds of a neighbour notification about a real server. A server without a
//!   usable entry (unknown, failed) or with a stale one is handed to the kernel to resolve
//!   ([`Netlink::resolve`], at most once a second per server): the kernel sends the ARP
//!   requests (Neighbor Solicitations for an IPv6 server), and the answer arrives as a
//!   notification. IPv4 and IPv6 DR servers take the same path.
//!   With `--tunnel-tx frames` it does the same for the next hops of the TUN-mode real
//!   servers and publishes their frame paths ([`tunnel_link`](super::tunnel_link)); the
//!   workers' [`FrameQueue`](super::tx::frames::FrameQueue) then carries their encapsulated
//!   packets too.
//! - [`check_new_dr_servers`]: the control plane's check when DR real servers are added: each
//!   must be on a directly connected network (the kernel routes it without a gateway), since a
//!   frame cannot cross a router ([`on_link`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::tunnel_link::{decide, LinkTable, Path, TunnelLink, TunnelLinks};
use crate::director::dr::NeighEntry;
use crate::director::table::Dest;
use crate::director::{Shared, Snapshot};
use crate::model::Forward;
use crate::sys::neigh::{NeighEvents, Neighbour, Netlink, Route};
use crate::sys::packet::LinkDst;
use crate::sys::poll_readable;

/// Prefix of the resolver's log lines.
const LOG: &str = "tunlb director:";

/// How often the resolver re-reads routes and the neighbour table without being woken.
const REFRESH: Duration = Duration::from_secs(1);
/// How often the resolver looks at the published table for new real servers.
const WAKE: Duration = Duration::from_millis(100);
/// The least time between two resolution requests for one real server.
const ASK_AGAIN: Duration = Duration::from_secs(1);

/// Why a real server cannot be a DR real server ([`on_link`], [`check_new_dr_servers`]).
#[derive(Debug, thiserror::Error)]
pub enum DrServerError {
    /// The kernel has no route to it.
    #[error(
        "real server {rip}: no route to it ({error}): DR needs it on a directly connected network"
    )]
    NoRoute {
        /// The real server.
        rip: IpAddr,
        /// What the kernel said.
        error: io::Error,
    },
    /// It is one of the director's own addresses.
    #[error(
        "real server {rip} is an address of the director itself: DR needs another host on the LAN"
    )]
    Local {
        /// The real server.
        rip: IpAddr,
    },
    /// Its route is not a unicast route out of an interface (blackhole, unreachable, ...).
    #[error("real server {rip} is not reachable as a host on a LAN (route type {kind})")]
    NotUnicast {
        /// The real server.
        rip: IpAddr,
        /// The route's `rtm_type`.
        kind: u8,
    },
    /// It is reached through a gateway: a frame cannot cross a router.
    #[error("real server {rip} is not on a directly connected network: DR cannot cross a router (use -i)")]
    BehindRouter {
        /// The real server.
        rip: IpAddr,
    },
    /// The netlink socket to ask the kernel could not be opened.
    #[error("cannot look up routes: {0}")]
    Netlink(io::Error),
}

/// Why a real server cannot be reached in DR mode, from the kernel's route to it; `Ok` gives
/// the interface it is on.
pub fn on_link(rip: impl Into<IpAddr>, route: io::Result<Route>) -> Result<u32, DrServerError> {
    let rip = rip.into();
    let route = route.map_err(|error| DrServerError::NoRoute { rip, error })?;
    if route.is_local() {
        return Err(DrServerError::Local { rip });
    }
    if !route.is_unicast() || route.ifindex == 0 {
        return Err(DrServerError::NotUnicast {
            rip,
            kind: route.kind,
        });
    }
    if route.gateway.is_some() {
        return Err(DrServerError::BehindRouter { rip });
    }
    Ok(route.ifindex)
}

/// The control plane's check before publishing `new`: every DR real server that `old` did not
/// have as one must be on a directly connected network (see [`on_link`]). The kernel is asked
/// to resolve the MAC of each accepted one right away, so it is usually known before the first
/// packet.
pub fn check_new_dr_servers(
    old: &crate::model::ServiceSet,
    new: &crate::model::ServiceSet,
) -> Result<(), DrServerError> {
    let existing: HashSet<_> = old
        .services
        .iter()
        .flat_map(|s| s.dests.iter().map(move |d| (s.key, d.addr, d.forward)))
        .filter(|(_, _, f)| *f == Forward::Dr)
        .collect();
    let added: Vec<IpAddr> = new
        .services
        .iter()
        .flat_map(|s| s.dests.iter().map(move |d| (s.key, d.addr, d.forward)))
        .filter(|k| k.2 == Forward::Dr && !existing.contains(k))
        .map(|(_, addr, _)| addr)
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let mut nl = Netlink::open().map_err(DrServerError::Netlink)?;
    for rip in added {
        let ifindex = on_link(rip, nl.route_get(rip))?;
        // Best effort: the resolver asks again if this is lost.
        let _ = nl.resolve(ifindex, rip);
    }
    Ok(())
}

/// Starts the neighbour resolver thread; it stops within about 100 ms of `stop` being set.
/// With `tunnel` it also keeps the TUN-mode real servers' frame paths there (see
/// [`tunnel_link`](super::tunnel_link)), published once per refresh.
pub fn spawn_resolver(
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    tunnel: Option<Arc<TunnelLinks>>,
) -> io::Result<JoinHandle<()>> {
    let mut resolver = Resolver::new(tunnel)?;
    std::thread::Builder::new()
        .name("tunlb-neigh".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                resolver.step(&shared);
            }
        })
}

/// What the resolver knows between steps.
struct Resolver {
    nl: Netlink,
    events: NeighEvents,
    /// The snapshot generation last looked at.
    generation: u64,
    /// When routes and the neighbour table are re-read next without being woken.
    next_refresh: Instant,
    /// Each DR real server's interface and its MTU, or why it has none.
    routes: HashMap<IpAddr, Result<(u32, u16), String>>,
    /// When the kernel was last asked to resolve each server.
    asked: HashMap<IpAddr, Instant>,
    /// What was last logged about each server, to log changes only.
    logged: HashMap<IpAddr, Result<NeighEntry, String>>,
    /// TUN mode's frame paths, when the workers send frames.
    tunnel: Option<TunnelState>,
}

/// What the resolver knows about the TUN-mode real servers between steps.
struct TunnelState {
    links: Arc<TunnelLinks>,
    /// Each TUN-mode real server's path, or why frames cannot reach it.
    paths: HashMap<Ipv4Addr, Result<Path, String>>,
    /// The next hops of those paths (a notification about one wakes the resolver).
    hops: HashSet<Ipv4Addr>,
    /// When the kernel was last asked to resolve each next hop.
    asked: HashMap<Ipv4Addr, Instant>,
    /// What was last logged about each server.
    logged: HashMap<Ipv4Addr, Result<TunnelLink, String>>,
}

impl Resolver {
    fn new(tunnel: Option<Arc<TunnelLinks>>) -> io::Result<Resolver> {
        Ok(Resolver {
            tunnel: tunnel.map(|links| TunnelState {
                links,
                paths: HashMap::new(),
                hops: HashSet::new(),
                asked: HashMap::new(),
                logged: HashMap::new(),
            }),
            nl: Netlink::open()?,
            events: NeighEvents::open()?,
            generation: u64::MAX,
            next_refresh: Instant::now(),
            routes: HashMap::new(),
            asked: HashMap::new(),
            logged: HashMap::new(),
        })
    }

    /// Waits up to [`WAKE`] for a neighbour notification, then refreshes the slots if a
    /// notification named a real server, the table changed, or a refresh is due.
    fn step(&mut self, shared: &Shared) {
        let mut woken = false;
        if let Ok(true) = poll_readable(std::os::fd::AsRawFd::as_raw_fd(&self.events), Some(WAKE)) {
            let routes = &self.routes;
            let hops = self.tunnel.as_ref().map(|t| &t.hops);
            let named = |a: &IpAddr| {
                routes.contains_key(a)
                    || match a {
                        IpAddr::V4(a) => hops.is_some_and(|h| h.contains(a)),
                        IpAddr::V6(_) => false,
                    }
            };
            match self.events.drain(|n| woken |= named(&n.addr)) {
                Ok(true) => {}
                // Notifications were lost: re-read everything.
                Ok(false) => woken = true,
                Err(e) => {
                    log::warn!("{LOG} reading neighbour notifications: {e}");
                    std::thread::sleep(WAKE);
                }
            }
        }
        let snap = shared.snapshot();
        let now = Instant::now();
        let changed = snap.generation != self.generation;
        let due = now >= self.next_refresh;
        if !(woken || changed || due) {
            return;
        }
        if changed || due {
            self.routes.clear();
            if let Some(t) = &mut self.tunnel {
                t.paths.clear();
            }
            self.next_refresh = now + REFRESH;
        }
        self.generation = snap.generation;
        self.refresh(&snap, now);
    }

    /// Fills every DR real server's slot and the TUN-mode frame paths from the kernel's
    /// tables, and asks the kernel to resolve the addresses without a usable entry.
    fn refresh(&mut self, snap: &Snapshot, now: Instant) {
        let dests = dr_dests(snap);
        let rips: HashSet<IpAddr> = dests.iter().map(|d| d.config.addr).collect();
        self.routes.retain(|rip, _| rips.contains(rip));
        self.asked.retain(|rip, _| rips.contains(rip));
        self.logged.retain(|rip, _| rips.contains(rip));
        let tunnel_servers = match &self.tunnel {
            Some(_) => tunnel_servers(snap),
            None => BTreeMap::new(),
        };
        if dests.is_empty() && tunnel_servers.is_empty() {
            if let Some(t) = &mut self.tunnel {
                t.logged.clear();
                t.links.publish(LinkTable::default());
            }
            return;
        }
        for &rip in &rips {
            if !self.routes.contains_key(&rip) {
                let route = lookup(&mut self.nl, rip);
                self.routes.insert(rip, route);
            }
        }
        if let Some(t) = &mut self.tunnel {
            t.paths.retain(|rip, _| tunnel_servers.contains_key(rip));
            for &rip in tunnel_servers.keys() {
                if let Entry::Vacant(slot) = t.paths.entry(rip) {
                    slot.insert(tunnel_path(&mut self.nl, rip));
                }
            }
            t.hops = t.paths.values().flatten().map(|p| p.next_hop).collect();
        }
        let table: HashMap<(u32, IpAddr), Neighbour> = match self.nl.neighbours() {
            Ok(list) => list.into_iter().map(|n| ((n.ifindex, n.addr), n)).collect(),
            Err(e) => {
                log::warn!("{LOG} reading the neighbour table: {e}");
                return;
            }
        };
        if let Some(t) = &mut self.tunnel {
            t.update(&mut self.nl, &tunnel_servers, &table, now);
        }
        self.update_dr(&dests, &rips, &table, now);
    }

    /// Fills the DR real servers' slots from the neighbour table `table`.
    fn update_dr(
        &mut self,
        dests: &[&Dest],
        rips: &HashSet<IpAddr>,
        table: &HashMap<(u32, IpAddr), Neighbour>,
        now: Instant,
    ) {
        for dest in dests {
            let rip = dest.config.addr;
            let entry = match &self.routes[&rip] {
                Ok((ifindex, mtu)) => {
                    table
                        .get(&(*ifindex, rip))
                        .and_then(Neighbour::mac)
                        .map(|mac| NeighEntry {
                            ifindex: *ifindex,
                            mac,
                            mtu: *mtu,
                        })
                }
                Err(_) => None,
            };
            if dest.state.neigh.get() != entry {
                dest.state.neigh.set(entry);
            }
        }
        for &rip in rips {
            let route = &self.routes[&rip];
            if let Ok((ifindex, _)) = route {
                let neigh = table.get(&(*ifindex, rip));
                let recently = self
                    .asked
                    .get(&rip)
                    .is_some_and(|at| now.duration_since(*at) < ASK_AGAIN);
                if neigh.is_none_or(Neighbour::wants_resolution) && !recently {
                    if let Err(e) = self.nl.resolve(*ifindex, rip) {
                        log::warn!("{LOG} asking the kernel to resolve real server {rip}: {e}");
                    }
                    self.asked.insert(rip, now);
                }
            }
            let state = match route {
                Ok((ifindex, mtu)) => match table.get(&(*ifindex, rip)).and_then(Neighbour::mac) {
                    Some(mac) => Ok(NeighEntry {
                        ifindex: *ifindex,
                        mac,
                        mtu: *mtu,
                    }),
                    None => Err(format!(
                        "real server {rip}: Ethernet address not known yet, resolving"
                    )),
                },
                Err(e) => Err(e.clone()),
            };
            if self.logged.get(&rip) != Some(&state) {
                match &state {
                    Ok(e) => log::info!(
                        "{LOG} real server {rip} (DR) is at {} on interface {} (MTU {})",
                        mac_string(e.mac),
                        e.ifindex,
                        e.mtu
                    ),
                    Err(why) => log::warn!("{LOG} {why}"),
                }
                self.logged.insert(rip, state);
            }
        }
    }
}

impl TunnelState {
    /// Publishes the framed TUN-mode real servers (those whose next hop's MAC `table` holds),
    /// asks the kernel to resolve the other next hops, and logs each server's path when it
    /// changes.
    fn update(
        &mut self,
        nl: &mut Netlink,
        servers: &BTreeMap<Ipv4Addr, Vec<String>>,
        table: &HashMap<(u32, IpAddr), Neighbour>,
        now: Instant,
    ) {
        self.asked.retain(|hop, _| self.hops.contains(hop));
        self.logged.retain(|rip, _| servers.contains_key(rip));
        let mut published = LinkTable::default();
        for (rip, services) in servers {
            let state = match self.paths.get(rip) {
                Some(Ok(p)) => {
                    let neigh = table.get(&(p.ifindex, IpAddr::V4(p.next_hop)));
                    let recently = self
                        .asked
                        .get(&p.next_hop)
                        .is_some_and(|at| now.duration_since(*at) < ASK_AGAIN);
                    if neigh.is_none_or(Neighbour::wants_resolution) && !recently {
                        if let Err(e) = nl.resolve(p.ifindex, p.next_hop) {
                            log::warn!("{LOG} asking the kernel to resolve {}: {e}", p.next_hop);
                        }
                        self.asked.insert(p.next_hop, now);
                    }
                    match neigh.and_then(Neighbour::mac) {
                        Some(mac) => Ok(TunnelLink {
                            to: LinkDst {
                                ifindex: p.ifindex,
                                mac,
                            },
                            src_mac: p.src_mac,
                            src: p.src,
                        }),
                        None => Err(format!(
                            "the Ethernet address of next hop {} is not known yet",
                            p.next_hop
                        )),
                    }
                }
                Some(Err(why)) => Err(why.clone()),
                None => continue,
            };
            if let Ok(link) = &state {
                published.insert(*rip, *link);
            }
            if self.logged.get(rip) != Some(&state) {
                let services = services.join(", ");
                match (&state, self.paths.get(rip)) {
                    (Ok(l), Some(Ok(p))) => log::info!(
                        "{LOG} TUN real server {rip} ({services}): tunnel packets leave as Ethernet frames on interface {} to next hop {} at {}",
                        l.to.ifindex,
                        p.next_hop,
                        mac_string(l.to.mac)
                    ),
                    (Ok(_), _) => {}
                    (Err(why), _) => log::info!(
                        "{LOG} TUN real server {rip} ({services}): tunnel packets take the raw socket: {why}"
                    ),
                }
                self.logged.insert(*rip, state);
            }
        }
        self.links.publish(published);
    }
}

/// The TUN-mode real servers of a snapshot, each with the services it serves (for the log).
fn tunnel_servers(snap: &Snapshot) -> BTreeMap<Ipv4Addr, Vec<String>> {
    let mut servers: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for s in snap.services() {
        for d in s.dest_ids.iter().filter_map(|id| snap.dest(*id)) {
            // IPv6 real servers are reached through the IPv6 raw socket.
            if let (Forward::Tunnel(_), Some(rip)) = (d.config.forward, d.addr4()) {
                servers
                    .entry(rip)
                    .or_default()
                    .push(s.config.key.to_string());
            }
        }
    }
    servers
}

/// Where frames to TUN-mode real server `rip` go, or why they cannot.
fn tunnel_path(nl: &mut Netlink, rip: Ipv4Addr) -> Result<Path, String> {
    let route = nl.route_get(rip);
    let link = match &route {
        Ok(r) if r.ifindex != 0 => nl.link(r.ifindex).ok(),
        _ => None,
    };
    decide(rip, &route, link.as_ref())
}

/// The DR real servers of a snapshot.
fn dr_dests(snap: &Snapshot) -> Vec<&Dest> {
    snap.services()
        .into_iter()
        .flat_map(|s| s.dest_ids.iter().filter_map(|id| snap.dest(*id)))
        .filter(|d| d.config.forward == Forward::Dr)
        .collect()
}

/// A real server's interface and that interface's MTU, or why DR cannot reach it.
fn lookup(nl: &mut Netlink, rip: IpAddr) -> Result<(u32, u16), String> {
    let ifindex = on_link(rip, nl.route_get(rip)).map_err(|e| e.to_string())?;
    let mtu = nl
        .link_mtu(ifindex)
        .map_err(|e| format!("real server {rip}: reading the MTU of interface {ifindex}: {e}"))?;
    Ok((ifindex, mtu.min(u32::from(u16::MAX)) as u16))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kind: u8, ifindex: u32, gateway: Option<IpAddr>) -> io::Result<Route> {
        Ok(Route {
            kind,
            ifindex,
            gateway,
            prefsrc: None,
        })
    }

    #[test]
    fn only_directly_connected_unicast_hosts_are_dr_servers() {
        let rip = Ipv4Addr::new(10, 3, 0, 12);
        assert_eq!(on_link(rip, route(libc::RTN_UNICAST, 3, None)).unwrap(), 3);
        let gateway = Some(Ipv4Addr::new(192, 168, 150, 1).into());
        assert_eq!(
            on_link(rip, route(libc::RTN_UNICAST, 3, gateway)).unwrap_err().to_string(),
            "real server 10.3.0.12 is not on a directly connected network: DR cannot cross a router (use -i)"
        );
        let local = on_link(rip, route(libc::RTN_LOCAL, 1, None))
            .unwrap_err()
            .to_string();
        assert!(local.contains("address of the director itself"), "{local}");
        let unreachable = Err(io::Error::from_raw_os_error(libc::ENETUNREACH));
        let none = on_link(rip, unreachable).unwrap_err().to_string();
        assert!(
            none.starts_with("real server 10.3.0.12: no route to it"),
            "{none}"
        );
        let blackhole = on_link(rip, route(6, 0, None)).unwrap_err().to_string();
        assert!(blackhole.contains("route type 6"), "{blackhole}");
    }

    #[test]
    fn an_ipv6_server_is_judged_the_same_way() {
        let rip: std::net::Ipv6Addr = "2001:db8:3::12".parse().unwrap();
        assert_eq!(on_link(rip, route(libc::RTN_UNICAST, 4, None)).unwrap(), 4);
        // IPv6 routers are link-local gateways.
        let gateway = Some("fe80::1".parse().unwrap());
        assert_eq!(
            on_link(rip, route(libc::RTN_UNICAST, 4, gateway)).unwrap_err().to_string(),
            "real server 2001:db8:3::12 is not on a directly connected network: DR cannot cross a router (use -i)"
        );
        let local = on_link(rip, route(libc::RTN_LOCAL, 1, None)).unwrap_err();
        assert!(matches!(local, DrServerError::Local { rip: IpAddr::V6(_) }));
    }

    #[test]
    fn the_mac_prints_as_ip_neigh_does() {
        assert_eq!(mac_string([2, 0, 0xab, 0, 0, 0x12]), "02:00:ab:00:00:12");
    }
}

//! What the table changes on the host: VIPs routed into the TUN (and answered by the ARP
//! responder on the `--announce` interfaces; with `--announce-table`, the VIPs that have a live
//! real server also routed into that table for BIRD to announce: [`live_vips`]), tunnel
//! routes' prefixes, the NAT reply routing and the S-NAT routing, rp_filter for probes through
//! the data path. Every change is recorded in [`NetChanges`](crate::sys::netcfg::NetChanges)
//! and undone at exit.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::{ControlPlane, PlaneError, PlaneState};
use crate::daemon::announce::ANNOUNCE_OWNER;
use crate::director::route::{RouteTable, TunnelRoute};
use crate::director::snat::{SnatRule, SnatRules};
use crate::director::Snapshot;

impl ControlPlane {
    /// Sets the S-NAT gateway's rules (`[[snat]]`, validated by the config loader) and
    /// publishes; on an error (a public address is a VIP, routing failed) the old rules stay.
    /// Mappings of sources no longer configured expire as usual.
    pub fn set_snat(&self, rules: Vec<SnatRule>) -> Result<(), PlaneError> {
        let mut st = self.state.lock().map_err(|_| PlaneError::Poisoned)?;
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
            let to: Vec<String> = r.to.iter().map(IpAddr::to_string).collect();
            log::info!("tunlb director: S-NAT {} to {}", r.source, to.join(", "));
        }
        Ok(())
    }

    /// Replaces the tunnel routes (`[[tunnel_route]]`): routes their prefixes into the TUN,
    /// withdraws the prefixes that are gone and publishes a snapshot with them.
    pub fn set_tunnel_routes(&self, routes: &[TunnelRoute]) -> Result<(), PlaneError> {
        let mut st = self.state.lock().map_err(|_| PlaneError::Poisoned)?;
        let wanted: BTreeSet<IpNet> = routes.iter().map(|r| r.prefix.trunc()).collect();
        let first6 = wanted.iter().find(|n| matches!(n, IpNet::V6(_)));
        if let Some(first6) = first6.filter(|_| !st.tun_ipv6) {
            // IPv6 on the TUN and forwarding on (undone on exit), as for IPv6 VIPs.
            st.net
                .tun_ipv6(&self.tun_name)
                .map_err(|error| PlaneError::RoutePrefix {
                    prefix: *first6,
                    tun: self.tun_name.clone(),
                    error,
                })?;
            st.tun_ipv6 = true;
        }
        for prefix in wanted.difference(&st.routed_prefixes.clone()) {
            st.net
                .add_route_ip(*prefix, &self.tun_name)
                .map_err(|error| PlaneError::RoutePrefix {
                    prefix: *prefix,
                    tun: self.tun_name.clone(),
                    error,
                })?;
            st.routed_prefixes.insert(*prefix);
        }
        for prefix in st.routed_prefixes.clone().difference(&wanted) {
            if let Err(e) = st.net.del_route_ip(*prefix, &self.tun_name) {
                log::warn!("tunlb director: withdrawing tunnel route {prefix}: {e}");
            }
            st.routed_prefixes.remove(prefix);
        }
        let table = RouteTable::new(routes);
        if *st.routes != table {
            for r in table.routes() {
                log::info!(
                    "tunlb director: tunnel route {} via {} ({})",
                    r.prefix,
                    r.via,
                    r.tunnel.kind()
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

    /// Routes every VIP into the TUN (and answers ARP for it on the `--announce` interfaces),
    /// and withdraws VIPs that are gone.
    pub(super) fn sync_routes(
        &self,
        st: &mut PlaneState,
        snap: &Snapshot,
    ) -> Result<(), PlaneError> {
        let wanted: BTreeSet<IpAddr> = snap.vips().collect();
        // The first IPv6 VIP or IPv6 S-NAT address (routed into the TUN as well).
        let first6 = wanted
            .iter()
            .chain(snap.snat.public())
            .find(|a| a.is_ipv6())
            .copied();
        if let Some(first6) = first6.filter(|_| !st.tun_ipv6) {
            // IPv6 on the TUN and forwarding on (undone on exit).
            st.net
                .tun_ipv6(&self.tun_name)
                .map_err(|error| PlaneError::RouteVip {
                    vip: first6,
                    tun: self.tun_name.clone(),
                    error,
                })?;
            st.tun_ipv6 = true;
        }
        for vip in wanted.difference(&st.routed.clone()) {
            let net = IpNet::from(*vip);
            st.net
                .add_route_ip(net, &self.tun_name)
                .map_err(|error| PlaneError::RouteVip {
                    vip: *vip,
                    tun: self.tun_name.clone(),
                    error,
                })?;
            st.routed.insert(*vip);
        }
        for vip in st.routed.clone().difference(&wanted) {
            let net = IpNet::from(*vip);
            if let Err(e) = st.net.del_route_ip(net, &self.tun_name) {
                log::warn!("tunlb director: withdrawing VIP {vip}: {e}");
            }
            st.routed.remove(vip);
        }
        if let Some(table) = self.announce_table {
            self.sync_announced(st, snap, table)?;
        }
        for iface in &self.announce {
            // ARP for the IPv4 VIPs, Neighbor Discovery for the IPv6 ones (whose unsolicited
            // advertisements the announcer sends itself).
            let new = self
                .announcer
                .announce(ANNOUNCE_OWNER, iface, &wanted)
                .map_err(|error| PlaneError::AnnounceVip {
                    iface: iface.clone(),
                    error,
                })?;
            // Tell the LAN at once: a client that resolved the VIP elsewhere moves here.
            for vip in new.into_iter().filter_map(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }) {
                if let Err(e) = self.announcer.gratuitous_arp(iface, vip) {
                    log::warn!("tunlb director: gratuitous ARP for {vip} on {iface}: {e}");
                }
            }
        }
        st.nat_routing
            .sync(&mut st.net, snap, &self.tun_name)
            .map_err(PlaneError::Routing)?;
        st.snat_routing
            .sync(&mut st.net, &snap.snat, &self.tun_name)
            .map_err(PlaneError::Routing)
    }

    /// `--announce-table`: routes into `table` every VIP with a live real server
    /// ([`live_vips`]) and withdraws the others, so that BIRD, learning that table, announces
    /// exactly those (docs/scale-out.md). The routes go through the TUN device: they vanish
    /// with it when the director dies, however it dies.
    fn sync_announced(
        &self,
        st: &mut PlaneState,
        snap: &Snapshot,
        table: u32,
    ) -> Result<(), PlaneError> {
        let live = live_vips(snap);
        for vip in live.difference(&st.announced.clone()) {
            st.net
                .add_table_route_ip(IpNet::from(*vip), &self.tun_name, table)
                .map_err(|error| PlaneError::AnnounceRoute {
                    vip: *vip,
                    tun: self.tun_name.clone(),
                    table,
                    error,
                })?;
            st.announced.insert(*vip);
            log::info!(
                "tunlb director: announcing VIP {vip}: routed into {} in table {table} (a \
                 service of it has a live real server)",
                self.tun_name
            );
        }
        for vip in st.announced.clone().difference(&live) {
            if let Err(e) = st
                .net
                .del_table_route_ip(IpNet::from(*vip), &self.tun_name, table)
            {
                log::warn!("tunlb director: withdrawing VIP {vip} from table {table}: {e}");
            }
            st.announced.remove(vip);
            log::info!(
                "tunlb director: withdrawing VIP {vip} from table {table}: no service of it has \
                 a live real server"
            );
        }
        Ok(())
    }

    /// Lets the answers to probes through the data path in on `iface`: they come from the VIP,
    /// which the director routes into its TUN, so strict reverse-path filtering (1) on `iface`
    /// or `all` would drop them; both are set to loose (2) where strict, and restored on exit.
    pub fn accept_probe_replies(&self, iface: &str) -> Result<(), PlaneError> {
        let mut st = self.state.lock().map_err(|_| PlaneError::Poisoned)?;
        for conf in ["all", iface] {
            let key = crate::sys::netcfg::conf_key(conf, "rp_filter");
            let now = crate::sys::netcfg::NetOps::read_sysctl(&mut st.net.ops().clone(), &key);
            if now.is_ok_and(|v| v.trim() == "1") {
                st.net
                    .set_sysctl(&key, "2")
                    .map_err(|error| PlaneError::RpFilter {
                        conf: conf.to_string(),
                        error,
                    })?;
                log::info!(
                    "tunlb director: health: rp_filter on {conf} set to 2 (loose) for probes through the tunnel"
                );
            }
        }
        Ok(())
    }
}

/// The VIPs worth announcing: those with at least one service that has a live real server,
/// one in the table (its health check passing, or none) with a weight above zero. A VIP whose
/// every server is down, held or quiesced (weight 0) is not.
pub fn live_vips(snap: &Snapshot) -> BTreeSet<IpAddr> {
    snap.services()
        .into_iter()
        .filter(|s| {
            s.dest_ids
                .iter()
                .filter_map(|&id| snap.dest(id))
                .any(|d| d.config.weight > 0)
        })
        .map(|s| s.config.key.vip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::conn::Timeouts;
    use crate::director::Registry;
    use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
    use crate::model::{Forward, Protocol};
    use std::net::Ipv4Addr;

    fn service(vip: [u8; 4], port: u16, weights: &[u32]) -> ServiceConfig {
        let key = ServiceKey {
            vip: Ipv4Addr::from(vip),
            port,
            proto: Protocol::Tcp,
        };
        ServiceConfig {
            key,
            scheduler: crate::model::SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
            dests: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| DestConfig {
                    addr: Ipv4Addr::new(10, 3, 0, 10 + i as u8),
                    port: 0,
                    weight,
                    forward: Forward::tunnel(Default::default()),
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
            policy: Default::default(),
        }
    }

    #[test]
    fn only_vips_with_a_live_real_server_are_announced() {
        let set = ServiceSet {
            services: vec![
                // Live.
                service([192, 168, 150, 100], 80, &[1, 0]),
                // Every server quiesced on :80, but :443 has a live one: still announced.
                service([192, 168, 150, 101], 80, &[0, 0]),
                service([192, 168, 150, 101], 443, &[0, 3]),
                // No server, or all at weight 0: not announced.
                service([192, 168, 150, 102], 80, &[]),
                service([192, 168, 150, 103], 80, &[0]),
            ],
        };
        let snap = Registry::new()
            .build(&set, &Timeouts::default())
            .expect("snapshot");
        let live: Vec<IpAddr> = live_vips(&snap).into_iter().collect();
        assert_eq!(
            live,
            [
                IpAddr::from([192, 168, 150, 100]),
                IpAddr::from([192, 168, 150, 101])
            ]
        );
        assert!(live_vips(&Snapshot::default()).is_empty());
    }
}

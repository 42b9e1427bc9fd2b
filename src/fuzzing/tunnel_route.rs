use std::net::Ipv4Addr;
use std::sync::Arc;

use super::director_packet::run_workers;
use super::Oracle;
use crate::director::conn::Timeouts;
use crate::director::route::{RouteTable, TunnelRoute};
use crate::director::{DirectorConfig, Registry, Shared, Verdict};
use crate::encap::{Tunnel, TunnelType};
use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};

/// The tunnel routes (site-to-site): 10.20.0.0/16 over IPIP, 10.20.5.0/24 (more specific,
/// inside it) over GRE with a key, 10.30.0.0/16 over GUE port 6080, 172.16.0.0/12 over GRE
/// without a key; IPv6: 2001:db8:20::/48 over GRE with a key, 2001:db8:20:80::/57 (inside it)
/// over GUE; and one service, TCP 10.20.0.80:80 (a VIP inside a routed prefix: the
/// service wins).
/// The VIP inside a routed prefix.
pub(super) const VIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 80);

pub(super) fn routes() -> Vec<TunnelRoute> {
    let route = |prefix: &str, via: [u8; 4], tunnel| TunnelRoute {
        prefix: prefix.parse().unwrap(),
        via: Ipv4Addr::from(via),
        tunnel,
    };
    vec![
        route("10.20.0.0/16", [198, 51, 100, 2], Tunnel::Ipip),
        route(
            "10.20.5.0/24",
            [198, 51, 100, 3],
            Tunnel::Gre {
                key: Some(7),
                csum: false,
            },
        ),
        route(
            "10.30.0.0/16",
            [198, 51, 100, 4],
            Tunnel::new(TunnelType::Gue, 6080, false, None),
        ),
        route(
            "172.16.0.0/12",
            [198, 51, 100, 5],
            Tunnel::Gre {
                key: None,
                csum: false,
            },
        ),
        // IPv6 prefixes over the same IPv4 underlay.
        route(
            "2001:db8:20::/48",
            [198, 51, 100, 6],
            Tunnel::Gre {
                key: Some(8),
                csum: false,
            },
        ),
        route(
            "2001:db8:20:80::/57",
            [198, 51, 100, 7],
            Tunnel::new(TunnelType::Gue, 6080, false, None),
        ),
    ]
}

/// Tunnel routes on arbitrary packets (the [`super::director_packet`] input format): packets
/// to the routed prefixes are encapsulated to their gateway (longest prefix), a VIP inside a
/// prefix is served, the MTU rules (576-byte tunnel MTU: ICMP fragmentation-needed with DF,
/// outer fragments without) apply. Never a panic; every packet emitted passes `oracle`, an
/// `Encap` of a routed packet goes to the route's gateway in its tunnel.
pub fn tunnel_route(data: &[u8], oracle: Oracle) {
    let shared = shared();
    let config = DirectorConfig {
        initial_conns: 16,
        max_conns: 64,
        tunnel_mtu: 576,
        ..DirectorConfig::default()
    };
    let vip = VIP;
    let routes = routes();
    let routed = |input: &[u8], v: &Verdict, _: &[u8]| {
        // A routed packet goes to its route's gateway in that route's tunnel; only routed
        // packets go to a gateway.
        let Verdict::Encap(e) = v else { return };
        let table = RouteTable::new(&routes);
        let (dst, route): (std::net::IpAddr, _) = match input.first().map(|b| b >> 4) {
            Some(6) => {
                let Some(dst) = super::snat::addr6(input, 24) else {
                    return;
                };
                (dst.into(), table.lookup6(dst))
            }
            _ => {
                let Some(dst) = super::snat::addr(input, 16) else {
                    return;
                };
                (dst.into(), table.lookup(dst).filter(|_| dst != vip))
            }
        };
        match route {
            Some(r) => assert_eq!((e.dst, e.tunnel), (r.via, r.tunnel), "packet to {dst}"),
            None => assert!(
                routes.iter().all(|r| r.via != e.dst),
                "{dst} is not routed but went to {}",
                e.dst
            ),
        }
    };
    run_workers(data, oracle, &shared, config, &routed);
}

/// The table of [`tunnel_route`] (also the seeds').
pub(super) fn shared() -> Arc<Shared> {
    let set = ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: VIP,
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: Some(1200),
            dests: vec![DestConfig {
                addr: Ipv4Addr::new(10, 3, 0, 10),
                port: 0,
                weight: 1,
                forward: Forward::tunnel(TunnelType::Gue),
                u_threshold: 0,
                l_threshold: 0,
            }],
            policy: Default::default(),
        }],
    };
    let routes = routes();
    let table = RouteTable::new(&routes);
    for r in &routes {
        let probe = r.prefix.network();
        let got = match probe {
            std::net::IpAddr::V4(a) => table.lookup(a),
            std::net::IpAddr::V6(a) => table.lookup6(a),
        }
        .expect("a route's own network is routed");
        assert!(got.prefix.contains(&probe));
        assert!(got.prefix.prefix_len() >= r.prefix.prefix_len());
    }
    let snap = Registry::new()
        .build(&set, &Timeouts::default())
        .unwrap()
        .with_tunnel_routes(Arc::new(table));
    Arc::new(Shared::new(snap))
}

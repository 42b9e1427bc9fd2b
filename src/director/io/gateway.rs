//! The director's receiver for the return traffic of its tunnel routes ([`crate::director::route`]).
//!
//! A remote `tunlb realserver --gateway` tunnels its LAN's packets back to the director. For
//! each tunnel type (and GUE port) among the routes, a thread runs the agent's receive loop
//! ([`crate::realserver::tunnel::serve`]) with a gateway [`Filter`]: only the routes' `via`
//! addresses may send, each with its route's GRE key, and an inner packet must come from a
//! prefix routed to the peer that sent it (else `inner_source_not_allowed`). Accepted packets
//! are written into the director's TUN; the kernel (`ip_forward=1`) forwards them to their
//! destination on the director's side. The filter follows the published [`Snapshot`](crate::director::Snapshot): a
//! reload that changes the routes changes it at the next batch (a tunnel type that had no
//! receiver at start needs a restart).

use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use ipnet::Ipv4Net;

use crate::director::route::{RouteTable, TunnelRoute};
use crate::director::Shared;
use crate::encap::TunnelType;
use crate::realserver::filter::{AgentDrop, Filter, GatewayPeer};
use crate::realserver::tunnel::{serve, Accept, Receiver, ServeOptions};
use crate::realserver::AgentStats;
use crate::sys::tun::TunQueue;

/// Prefix of the receivers' log lines.
const LOG: &str = "tunlb director: tunnel routes:";

/// The gateway filter for the routes of one receiver (one tunnel type, one GUE port).
pub fn gateway_filter(table: &RouteTable, encap: TunnelType, gue_port: u16) -> Filter {
    let mut peers: Vec<GatewayPeer> = Vec::new();
    let mine = table.routes().iter().filter(|r| {
        r.tunnel.kind() == encap && r.tunnel.gue_port().unwrap_or(gue_port) == gue_port
    });
    for r in mine {
        match peers.iter_mut().find(|p| p.outer.addr() == r.via) {
            Some(p) => p.prefixes.push(r.prefix),
            None => peers.push(GatewayPeer {
                outer: Ipv4Net::from(r.via),
                gre_key: r.tunnel.gre_key(),
                prefixes: vec![r.prefix],
            }),
        }
    }
    Filter::gateway(encap, peers)
}

/// A gateway filter rebuilt whenever a new snapshot was published.
struct SnapshotFilter {
    shared: Arc<Shared>,
    encap: TunnelType,
    gue_port: u16,
    generation: u64,
    filter: Filter,
}

impl Accept for SnapshotFilter {
    fn refresh(&mut self) {
        let snap = self.shared.snapshot();
        if snap.generation != self.generation {
            self.generation = snap.generation;
            self.filter = gateway_filter(snap.tunnel_routes(), self.encap, self.gue_port);
        }
    }

    fn check_ip(&self, packet: &[u8], src: Ipv4Addr) -> Result<Range<usize>, AgentDrop> {
        self.filter.check_ip(packet, src)
    }

    fn check_gue(
        &mut self,
        payload: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Range<usize>, AgentDrop> {
        self.filter.check_gue(payload, src, dst)
    }
}

/// Starts one receiver thread per tunnel type (GUE: per port) among `routes`, writing into
/// `tun`, until `stop`. Each prints its counters when it ends. None when there are no routes.
pub fn spawn(
    routes: &[TunnelRoute],
    shared: &Arc<Shared>,
    tun: &Arc<TunQueue>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut kinds: Vec<(TunnelType, u16)> = Vec::new();
    for r in routes {
        let kind = (r.tunnel.kind(), r.tunnel.gue_port().unwrap_or(0));
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let mut threads = Vec::new();
    for (encap, gue_port) in kinds {
        let mut rx = Receiver::open(encap, gue_port)
            .with_context(|| format!("open the {encap} receiver for the tunnel routes"))?;
        let mut filter = SnapshotFilter {
            shared: shared.clone(),
            encap,
            gue_port,
            generation: u64::MAX,
            filter: Filter::gateway(encap, Vec::new()),
        };
        filter.refresh();
        log::info!(
            "{LOG} receiving return traffic via {encap} ({})",
            rx.describe()
        );
        let (tun, stop) = (tun.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("tunlb-gw-{encap}"))
            .spawn(move || {
                let mut stats = AgentStats::default();
                let opts = ServeOptions {
                    batch: 32,
                    stats_interval: None,
                    log: LOG,
                    publish: None,
                };
                let mut stop = || stop.load(Ordering::Relaxed);
                if let Err(e) = serve(&mut rx, &tun, &mut filter, opts, &mut stats, &mut stop) {
                    log::error!("{LOG} {encap} receiver failed: {e:#}");
                }
                log::info!("{LOG} {encap} receiver at exit: {stats}");
            })
            .context("start a tunnel-route receiver thread")?;
        threads.push(handle);
    }
    Ok(threads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::Tunnel;

    #[test]
    fn peers_are_grouped_by_via_and_tunnel_type() {
        let gre = |p: &str, via: [u8; 4]| TunnelRoute {
            tunnel: Tunnel::Gre {
                key: Some(3),
                csum: false,
            },
            ..TunnelRoute::new(
                p.parse::<ipnet::IpNet>().unwrap(),
                via.into(),
                TunnelType::Gre,
            )
        };
        let table = RouteTable::new(&[
            gre("172.16.8.0/22", [10, 99, 0, 2]),
            gre("172.17.0.0/16", [10, 99, 0, 2]),
            gre("2001:db8:8::/48", [10, 99, 0, 2]),
            TunnelRoute::new(
                "172.18.0.0/16".parse::<Ipv4Net>().unwrap(),
                [10, 99, 0, 3].into(),
                TunnelType::Ipip,
            ),
        ]);
        let f = gateway_filter(&table, TunnelType::Gre, 0);
        let text = format!("{f:?}");
        assert!(text.contains("172.16.8.0/22") && text.contains("172.17.0.0/16"));
        assert!(!text.contains("172.18.0.0/16"), "{text}");
        assert!(text.contains("2001:db8:8::/48"), "{text}");

        // Inner IPv6 from the peer's IPv6 prefix is accepted; from elsewhere, or from a
        // peer that has no such prefix, it is not.
        let inner6 = |src: &str| {
            let mut p = vec![0u8; 48];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&8u16.to_be_bytes());
            p[6] = 17;
            p[7] = 64;
            let s: std::net::Ipv6Addr = src.parse().unwrap();
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(
                &"2001:db8:1::5"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            p[40..42].copy_from_slice(&1234u16.to_be_bytes());
            p[42..44].copy_from_slice(&53u16.to_be_bytes());
            p[44..46].copy_from_slice(&8u16.to_be_bytes());
            p
        };
        let wrap = |from: [u8; 4], inner: &[u8]| {
            let params = crate::encap::OuterParams {
                src: from.into(),
                dst: [10, 0, 0, 1].into(),
                tunnel: Tunnel::Gre {
                    key: Some(3),
                    csum: false,
                },
                flow_hash: 0,
            };
            let mut h = [0u8; crate::encap::MAX_OUTER_HEADER];
            let n = crate::encap::build_outer(&params, inner, &mut h).unwrap();
            let mut pkt = h[..n].to_vec();
            pkt.extend_from_slice(inner);
            pkt
        };
        let good = inner6("2001:db8:8::7");
        let pkt = wrap([10, 99, 0, 2], &good);
        let r = f.check_ip(&pkt, [10, 99, 0, 2].into()).unwrap();
        assert_eq!(&pkt[r], &good[..]);
        let pkt = wrap([10, 99, 0, 2], &inner6("2001:db8:9::7"));
        assert_eq!(
            f.check_ip(&pkt, [10, 99, 0, 2].into()),
            Err(AgentDrop::InnerSourceNotAllowed)
        );
        // An IPv4 inner source inside no IPv4 prefix of the peer's, nor an IPv6 one.
        let other = RouteTable::new(&[gre("172.16.8.0/22", [10, 99, 0, 2])]);
        let f = gateway_filter(&other, TunnelType::Gre, 0);
        let pkt = wrap([10, 99, 0, 2], &good);
        assert_eq!(
            f.check_ip(&pkt, [10, 99, 0, 2].into()),
            Err(AgentDrop::InnerSourceNotAllowed)
        );
    }
}

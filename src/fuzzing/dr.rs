use std::net::Ipv4Addr;
use std::sync::Arc;

use super::director_packet::run_workers;
use super::Oracle;
use crate::director::conn::Timeouts;
use crate::director::shared::neigh::NeighEntry;
use crate::director::{DirectorConfig, Registry, Shared, Verdict};
use crate::encap::TunnelType;
use crate::model::v4::{DestConfig, Persistence, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};

/// The DR real servers: resolved on an interface of MTU 1500, resolved on one of MTU 576 (so
/// packets get fragments or ICMP fragmentation-needed), and one never resolved.
pub(super) const SERVERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 168, 150, 12),
    Ipv4Addr::new(192, 168, 150, 13),
    Ipv4Addr::new(192, 168, 150, 14),
];

/// Direct routing on arbitrary packets (the [`super::director_packet`] input format): TCP
/// port 80 (three DR real servers, one not resolved yet, one behind a 576-byte MTU, with
/// persistence), UDP port 53 (DR and an IPIP real server mixed) on VIP 192.168.150.100.
/// `Ether` verdicts (whole or to fragment), drops and ICMP errors: never a panic, and every
/// packet emitted passes `oracle` (a DR fragment too).
pub fn dr(data: &[u8], oracle: Oracle) {
    let shared = shared();
    let config = DirectorConfig {
        initial_conns: 16,
        max_conns: 64,
        ..DirectorConfig::default()
    };
    let framed = |input: &[u8], v: &Verdict, buf: &[u8]| {
        // A frame goes to a resolved server's MAC with the packet unchanged.
        if let Verdict::Ether(e) = v {
            assert!(
                [SERVERS[0], SERVERS[1]]
                    .iter()
                    .any(|a| e.dst_mac == [2, 0, 0, 0, 0, a.octets()[3]]),
                "a frame to {:02x?}",
                e.dst_mac
            );
            assert_eq!(e.ifindex, 4);
            assert_eq!(buf[..e.len], input[..e.len], "DR changed the packet");
            assert!(e.frag_mtu == 0 || usize::from(e.frag_mtu) < e.len);
        }
    };
    run_workers(data, oracle, &shared, config, &framed);
}

/// The table of [`dr`] (also the seeds').
pub(super) fn shared() -> Arc<Shared> {
    let vip = Ipv4Addr::new(192, 168, 150, 100);
    let dest = |addr, forward| DestConfig {
        addr,
        port: 0,
        weight: 1,
        forward,
        u_threshold: 0,
        l_threshold: 0,
    };
    let svc = |port, proto, pers: bool, dests| ServiceConfig {
        key: ServiceKey { vip, port, proto },
        scheduler: SchedulerKind::Rr,
        persistence: pers.then_some(Persistence {
            timeout: 30,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
        }),
        mss_clamp: None,
        dests,
        policy: Default::default(),
    };
    let set = ServiceSet {
        services: vec![
            svc(
                80,
                Protocol::Tcp,
                true,
                SERVERS.iter().map(|&a| dest(a, Forward::Dr)).collect(),
            ),
            svc(
                53,
                Protocol::Udp,
                false,
                vec![
                    dest(SERVERS[1], Forward::Dr),
                    dest(
                        Ipv4Addr::new(10, 3, 0, 10),
                        Forward::tunnel(TunnelType::Ipip),
                    ),
                ],
            ),
        ],
    };
    let snap = Registry::new().build(&set, &Timeouts::default()).unwrap();
    for svc in snap.services() {
        for id in &svc.dest_ids {
            let d = snap.dest(*id).unwrap();
            let mtu = match d.config.addr {
                a if a == SERVERS[0] => 1500,
                a if a == SERVERS[1] => 576,
                _ => continue,
            };
            d.state.neigh.set(Some(NeighEntry {
                ifindex: 4,
                mac: [2, 0, 0, 0, 0, d.addr4().map_or(0, |a| a.octets()[3])],
                mtu,
            }));
        }
    }
    Arc::new(Shared::new(snap))
}

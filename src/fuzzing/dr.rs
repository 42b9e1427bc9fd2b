use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// The IPv6 DR real servers: resolved on an interface of MTU 1500, on one of MTU 1280 (so
/// packets get a Packet Too Big), and one never resolved.
pub(super) const SERVERS6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x12),
    Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x13),
    Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x14),
];

/// The MAC the table gives a resolved real server: its last address byte, `0x60` before it
/// for an IPv6 one.
fn mac_of(addr: IpAddr) -> [u8; 6] {
    match addr {
        IpAddr::V4(a) => [2, 0, 0, 0, 0, a.octets()[3]],
        IpAddr::V6(a) => [2, 0, 0, 0, 0x60, a.octets()[15]],
    }
}

/// Direct routing on arbitrary packets (the [`super::director_packet`] input format): TCP
/// port 80 (three DR real servers, one not resolved yet, one behind a 576-byte MTU, with
/// persistence), UDP port 53 (DR and an IPIP real server mixed) on VIP 192.168.150.100, and
/// TCP [2001:db8::100]:80 to three IPv6 DR servers (one not resolved, one behind a 1280-byte
/// MTU). `Ether` verdicts (whole or, IPv4 only, to fragment), drops and ICMP errors (a Packet
/// Too Big for IPv6): never a panic, and every packet emitted passes `oracle` (a DR fragment
/// too).
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
            let resolved = [SERVERS[0], SERVERS[1]].map(IpAddr::V4);
            let resolved6 = [SERVERS6[0], SERVERS6[1]].map(IpAddr::V6);
            let ipv6 = input.first().is_some_and(|b| b >> 4 == 6);
            let to = if ipv6 { resolved6 } else { resolved };
            assert!(
                to.iter().any(|a| e.dst_mac == mac_of(*a)),
                "a frame to {:02x?}",
                e.dst_mac
            );
            assert_eq!(e.ifindex, 4);
            assert_eq!(buf[..e.len], input[..e.len], "DR changed the packet");
            assert!(e.frag_mtu == 0 || usize::from(e.frag_mtu) < e.len);
            if ipv6 {
                let mtu = if e.dst_mac == mac_of(resolved6[1]) {
                    1280
                } else {
                    1500
                };
                assert!(
                    e.frag_mtu == 0 && e.len <= mtu,
                    "an IPv6 frame over the MTU"
                );
            }
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
    let mut set = set.widen();
    let vip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
    set.services.push(crate::model::ServiceConfig {
        key: crate::model::ServiceKey {
            vip: vip6,
            port: 80,
            proto: Protocol::Tcp,
        },
        scheduler: SchedulerKind::Rr,
        persistence: None,
        mss_clamp: None,
        dests: SERVERS6
            .iter()
            .map(|&a| crate::model::DestConfig {
                addr: IpAddr::V6(a),
                port: 0,
                weight: 1,
                forward: Forward::Dr,
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
        policy: Default::default(),
    });
    let snap = Registry::new().build(&set, &Timeouts::default()).unwrap();
    for svc in snap.services() {
        for id in &svc.dest_ids {
            let d = snap.dest(*id).unwrap();
            let mtu = match d.config.addr {
                a if a == SERVERS[0] => 1500,
                a if a == SERVERS[1] => 576,
                a if a == SERVERS6[0] => 1500,
                a if a == SERVERS6[1] => 1280,
                _ => continue,
            };
            d.state.neigh.set(Some(NeighEntry {
                ifindex: 4,
                mac: mac_of(d.config.addr),
                mtu,
            }));
        }
    }
    Arc::new(Shared::new(snap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Instant;

    /// The IPv6 seed reaches every IPv6 DR branch: frames, a Packet Too Big, an unresolved
    /// server's drop.
    #[test]
    fn the_ipv6_seed_reaches_frames_packet_too_big_and_unresolved() {
        let seed = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dr/seed_ipv6_dr"),
        )
        .unwrap();
        let mut d = crate::director::Director::new(shared(), DirectorConfig::default());
        let (mut frames, mut too_big, mut unresolved) = (0, 0, 0);
        for mut p in super::super::director_packet::packets(&seed) {
            match d.handle_packet(Instant::from_secs(1), &mut p) {
                Verdict::Ether(_) => frames += 1,
                Verdict::Reply { .. } => too_big += 1,
                Verdict::Drop(crate::director::DropReason::NeighbourUnresolved) => unresolved += 1,
                v => panic!("unexpected {v:?}"),
            }
        }
        assert_eq!((frames, too_big, unresolved), (3, 1, 2));
    }
}

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

use super::director_packet::run_workers;
use super::Oracle;
use crate::director::conn::Timeouts;
use crate::director::snat::{SnatRule, SnatRules};
use crate::director::{DirectorConfig, Registry, Shared, Verdict};
use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};

/// The inside hosts 10.0.0.0/24 leave as 192.0.2.10 or .11; 10.0.1.0/24 as 192.0.2.20.
pub(super) const PUBLIC: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 10),
    Ipv4Addr::new(192, 0, 2, 11),
    Ipv4Addr::new(192, 0, 2, 20),
];

/// The IPv6 inside hosts (S-NAT for IPv6), leaving as [`PUBLIC6`].
pub(super) const SOURCE6: &str = "2001:db8:10::/64";
/// The public IPv6 address of [`SOURCE6`].
pub(super) const PUBLIC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0x10);

/// The S-NAT gateway on arbitrary packets (the [`super::director_packet`] input format): two
/// workers over one table with two S-NAT rules (one prefix leaving behind two public
/// addresses, one behind one; an IPv6 one, [`SOURCE6`] behind [`PUBLIC6`]) and a NAT service VIP 10.100.0.100:80 whose real server
/// 10.0.0.11:8080 is also an inside host, a small connection table (64 entries) so the port
/// allocator and the NAT table fill up. Outbound packets from the inside, replies and ICMP
/// errors to the public addresses, anything else: a verdict, never a panic, and every packet
/// emitted passes `oracle`.
pub fn snat(data: &[u8], oracle: Oracle) {
    let shared = shared();
    let config = DirectorConfig {
        initial_conns: 16,
        max_conns: 64,
        ..DirectorConfig::default()
    };
    let rules = [("10.0.0.0/24", &PUBLIC[..2]), ("10.0.1.0/24", &PUBLIC[2..])];
    let masqueraded = |input: &[u8], v: &Verdict, buf: &[u8]| {
        // A packet leaving with a public source came from inside that address's rule.
        let Verdict::Rewrite { len } = *v else { return };
        if input.first().is_some_and(|b| b >> 4 == 6) {
            let (Some(old), Some(new)) = (addr6(input, 8), addr6(&buf[..len], 8)) else {
                return;
            };
            if new == PUBLIC6 && old != new {
                let prefix: Ipv6Net = SOURCE6.parse().unwrap();
                assert!(prefix.contains(&old), "{old} left as {new}, not its rule's");
            }
            return;
        }
        let (Some(old), Some(new)) = (addr(input, 12), addr(&buf[..len], 12)) else {
            return;
        };
        if old == new {
            return;
        }
        if let Some((prefix, _)) = rules.iter().find(|(_, to)| to.contains(&new)) {
            let prefix: Ipv4Net = prefix.parse().unwrap();
            assert!(prefix.contains(&old), "{old} left as {new}, not its rule's");
        }
    };
    run_workers(data, oracle, &shared, config, &masqueraded);
}

/// The IPv4 address at `at` in `pkt`, if it is that long.
pub(super) fn addr(pkt: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = pkt.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

/// The IPv6 address at `at` in `pkt`, if it is that long.
pub(super) fn addr6(pkt: &[u8], at: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = pkt.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

/// The table of [`snat`] (also the seeds').
pub(super) fn shared() -> Arc<Shared> {
    let set = ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: Ipv4Addr::new(10, 100, 0, 100),
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
            dests: vec![DestConfig {
                addr: Ipv4Addr::new(10, 0, 0, 11),
                port: 8080,
                weight: 1,
                forward: Forward::Nat,
                u_threshold: 0,
                l_threshold: 0,
            }],
            policy: Default::default(),
        }],
    };
    let mut registry = Registry::new();
    let mut snap = registry.build(&set, &Timeouts::default()).unwrap();
    snap.snat = Arc::new(SnatRules::new(vec![
        SnatRule {
            source: "10.0.0.0/24".parse().unwrap(),
            to: PUBLIC[..2].iter().map(|&a| a.into()).collect(),
        },
        SnatRule {
            source: "10.0.1.0/24".parse().unwrap(),
            to: vec![PUBLIC[2].into()],
        },
        SnatRule {
            source: SOURCE6.parse().unwrap(),
            to: vec![PUBLIC6.into()],
        },
    ]));
    Arc::new(Shared::new(snap))
}

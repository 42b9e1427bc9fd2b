use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use crate::director::conn::Timeouts;
use crate::director::{Director, DirectorConfig, Registry, Shared, Verdict};
use crate::encap::TunnelType;
use crate::model::v4::{DestConfig, Persistence, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::time::{Duration, Instant};

use super::{emitted, Oracle};

pub(super) fn table() -> ServiceSet {
    let vip = Ipv4Addr::new(10, 100, 0, 100);
    let dests = |tun| {
        (0..3)
            .map(|i| DestConfig {
                addr: Ipv4Addr::new(10, 3, 0, 10 + i),
                port: 0,
                weight: 1 + i as u32,
                forward: Forward::tunnel(tun),
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect::<Vec<_>>()
    };
    let svc = |port, proto, sched, tun, pers: bool| ServiceConfig {
        key: ServiceKey { vip, port, proto },
        scheduler: sched,
        persistence: pers.then_some(Persistence {
            timeout: 30,
            netmask: Ipv4Addr::new(255, 255, 255, 0),
        }),
        mss_clamp: Some(1200),
        dests: dests(tun),
        policy: Default::default(),
    };
    let mut nat = svc(
        8080,
        Protocol::Tcp,
        SchedulerKind::Rr,
        TunnelType::Ipip,
        false,
    );
    for d in &mut nat.dests {
        d.forward = Forward::Nat;
        d.port = 8081;
    }
    ServiceSet {
        services: vec![
            nat,
            svc(
                80,
                Protocol::Tcp,
                SchedulerKind::Rr,
                TunnelType::Ipip,
                false,
            ),
            svc(443, Protocol::Tcp, SchedulerKind::Mh, TunnelType::Gre, true),
            svc(
                53,
                Protocol::Udp,
                SchedulerKind::Wlc,
                TunnelType::Gue,
                false,
            ),
            svc(0, Protocol::Udp, SchedulerKind::Sh, TunnelType::Ipip, true),
        ],
    }
}

/// `v4` and three IPv6 services: TCP [2001:db8::100]:80 persistent per /64 over ip6ip6, UDP
/// [2001:db8::100]:53 over GUE, and TCP [2001:db8::100]:8080 by NAT66 to port 8081, each to
/// three IPv6 real servers (2001:db8:3::10 to ::12).
fn with_ipv6(v4: ServiceSet) -> crate::model::ServiceSet {
    use std::net::{IpAddr, Ipv6Addr};
    let mut set = v4.widen();
    let vip = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100));
    let svc = |port, proto, tun, persistence| crate::model::ServiceConfig {
        key: crate::model::ServiceKey { vip, port, proto },
        scheduler: SchedulerKind::Rr,
        persistence,
        mss_clamp: Some(1200),
        dests: (0..3)
            .map(|i| crate::model::DestConfig {
                addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 10 + i)),
                port: 0,
                weight: 1,
                forward: Forward::tunnel(tun),
                u_threshold: 0,
                l_threshold: 0,
            })
            .collect(),
        policy: Default::default(),
    };
    let pers = crate::model::Persistence {
        timeout: 30,
        netmask: crate::model::Netmask::V6(64),
    };
    set.services
        .push(svc(80, Protocol::Tcp, TunnelType::Ipip, Some(pers)));
    set.services
        .push(svc(53, Protocol::Udp, TunnelType::Gue, None));
    // NAT66 with a port mapping: [VIP]:8080 → [RIP]:8081.
    let mut nat = svc(8080, Protocol::Tcp, TunnelType::Ipip, None);
    for d in &mut nat.dests {
        d.forward = Forward::Nat;
        d.port = 8081;
    }
    set.services.push(nat);
    set
}

pub(super) fn shared() -> Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let snap = Registry::new()
                .build(&with_ipv6(table()), &Timeouts::default())
                .unwrap();
            Arc::new(Shared::new(snap))
        })
        .clone()
}

/// The director core on arbitrary packets: the input is split into packets (2-byte big-endian
/// length prefixes) and fed to two workers sharing one table of TCP and UDP services in every
/// tunnel type and NAT (with a port mapping), with persistence and MSS clamping, IPv6 services
/// over IPv6 tunnels among them, while the
/// virtual clock moves forward. Whatever the bytes, `handle_packet` must return a verdict (never
/// panic), an `Encap` must describe bytes inside the buffer, and a `Reply` or `Rewrite` must fit
/// the buffer; every packet emitted passes `oracle` (see [`emitted::check_verdict`]: an ICMP
/// reply always, the others when the packet that went in passed it).
///
/// The length prefix: its low 15 bits modulo 1600 are the length; the top bit asks for the
/// packet to be made valid first ([`emitted::repair`]: lengths and checksums filled in), so
/// that mutated packets still reach the paths of valid ones.
pub fn director_packet(data: &[u8], oracle: Oracle) {
    let config = DirectorConfig {
        initial_conns: 64,
        max_conns: 256,
        tunnel_mtu: 576,
        ..DirectorConfig::default()
    };
    run_workers(data, oracle, &shared(), config, &|_, _, _| {});
}

/// A target's own rule on one verdict: the packet that went in, the verdict, the buffer after.
pub(super) type VerdictCheck<'a> = dyn Fn(&[u8], &Verdict, &[u8]) + 'a;

/// Feeds the packets of `data` ([`packets`]) alternately to two workers over `shared` while the
/// virtual clock moves 700 ms a packet, and checks each verdict: in bounds, a drop reason with
/// a label, and every packet emitted passing `oracle` ([`emitted::check_verdict`]); then
/// `extra` (the packet that went in, the verdict, the buffer after) for a target's own rules.
pub(super) fn run_workers(
    data: &[u8],
    oracle: Oracle,
    shared: &Arc<Shared>,
    config: DirectorConfig,
    extra: &VerdictCheck<'_>,
) {
    let mut workers = [
        Director::new(shared.clone(), config.clone()),
        Director::new(shared.clone(), config),
    ];
    let mut now = Instant::from_secs(1);
    for (i, mut buf) in packets(data).enumerate() {
        let w = &mut workers[i % 2];
        let input = buf.clone();
        let valid = emitted::valid(oracle, &buf);
        let v = w.handle_packet(now, &mut buf);
        check_bounds(&v, &buf);
        emitted::check_verdict(oracle, valid, &v, &buf);
        extra(&input, &v, &buf);
        now += Duration::from_millis(700);
        w.handle_timeout(now);
    }
    shared.handle_timeout(now);
}

/// A verdict describes bytes inside the buffer, a drop has a label.
pub(super) fn check_bounds(v: &Verdict, buf: &[u8]) {
    match v {
        Verdict::Encap(e) => {
            assert!(e.len <= buf.len());
            assert!(e.header().len() >= 20);
        }
        Verdict::Ether(e) => assert!(e.len <= buf.len()),
        Verdict::Reply { len } | Verdict::Rewrite { len } => assert!(*len <= buf.len()),
        Verdict::Drop(r) => assert!(!r.as_str().is_empty()),
    }
}

/// The packets of a director target's input: 2-byte big-endian length prefixes, the low 15
/// bits modulo 1600 the length (cut to what is left), the top bit: [`emitted::repair`] it.
pub(super) fn packets(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 2 {
            return None;
        }
        let prefix = u16::from_be_bytes([rest[0], rest[1]]);
        let len = (usize::from(prefix & 0x7fff) % 1600).min(rest.len() - 2);
        let mut buf = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        if prefix & 0x8000 != 0 {
            emitted::repair(&mut buf);
        }
        Some(buf)
    })
}

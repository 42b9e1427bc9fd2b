use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use crate::director::conn::Timeouts;
use crate::director::{Director, DirectorConfig, Registry, Shared, Verdict};
use crate::encap::TunnelType;
use crate::model::{
    DestConfig, Forward, Persistence, Protocol, SchedulerKind, ServiceConfig, ServiceKey,
    ServiceSet,
};
use crate::time::{Duration, Instant};

fn table() -> ServiceSet {
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

fn shared() -> Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let snap = Registry::new()
                .build(&table(), &Timeouts::default())
                .unwrap();
            Arc::new(Shared::new(snap))
        })
        .clone()
}

/// The director core on arbitrary packets: the input is split into packets (2-byte big-endian
/// length prefixes) and fed to two workers sharing one table of TCP and UDP services in every
/// tunnel type and NAT (with a port mapping), with persistence and MSS clamping, while the
/// virtual clock moves forward. Whatever the bytes, `handle_packet` must return a verdict (never
/// panic), an `Encap` must describe bytes inside the buffer, and a `Reply` or `Rewrite` must fit
/// the buffer.
pub fn director_packet(data: &[u8]) {
    let config = DirectorConfig {
        initial_conns: 64,
        max_conns: 256,
        tunnel_mtu: 576,
        ..DirectorConfig::default()
    };
    let mut workers = [
        Director::new(shared(), config.clone()),
        Director::new(shared(), config),
    ];
    let mut now = Instant::from_secs(1);
    let mut rest = data;
    let mut i = 0usize;
    while rest.len() >= 2 {
        let len = (usize::from(u16::from_be_bytes([rest[0], rest[1]])) % 1600).min(rest.len() - 2);
        let mut buf = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        let w = &mut workers[i % 2];
        match w.handle_packet(now, &mut buf) {
            Verdict::Encap(e) => {
                assert!(e.len <= buf.len());
                assert!(e.header().len() >= 20);
            }
            Verdict::Ether(e) => assert!(e.len <= buf.len()),
            Verdict::Reply { len } | Verdict::Rewrite { len } => assert!(len <= buf.len()),
            Verdict::Drop(r) => assert!(!r.as_str().is_empty()),
        }
        now += Duration::from_millis(700);
        w.handle_timeout(now);
        i += 1;
    }
    shared().handle_timeout(now);
}

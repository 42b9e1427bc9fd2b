//! Core-path benchmarks: the sans-IO director without sockets.
//!
//! - `established/1M`: ns per packet for an established flow with 1M flows in the table;
//! - `new_flow`: ns per new flow (schedule + insert), table pre-filled to 1M;
//! - `maglev_build/65537`: time to build a Maglev table of 65537 entries for 10 servers;
//! - bytes per tracked flow are printed before the benchmarks run.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tunlb::director::conn::Timeouts;
use tunlb::director::sched::{SchedDest, SchedOptions, SchedState, Scheduler};
use tunlb::director::service::{
    DestConfig, Forward, Protocol, SchedulerKind, ServiceConfig, ServiceKey, ServiceSet,
};
use tunlb::director::{Director, DirectorConfig, Registry, Shared, Verdict};
use tunlb::encap::TunnelType;
use tunlb::time::Instant;
use tunlb::wire::testing::tcp_packet;

const FLOWS: u32 = 1_000_000;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);

fn director() -> Director {
    let set = ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: VIP,
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Wlc,
            persistence: None,
            mss_clamp: None,
            dests: (0..4)
                .map(|i| DestConfig {
                    addr: Ipv4Addr::new(10, 3, 0, 10 + i),
                    port: 80,
                    weight: 1,
                    forward: Forward::tunnel(TunnelType::Ipip),
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
        }],
    };
    let snap = Registry::new().build(&set, &Timeouts::default()).unwrap();
    let config = DirectorConfig {
        initial_conns: 1 << 20,
        max_conns: 4 << 20,
        ..DirectorConfig::default()
    };
    Director::new(Arc::new(Shared::new(snap)), config)
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0b00_0000 + (i >> 4)),
        1024 + (i & 0xf) as u16,
    )
}

fn filled() -> Director {
    let mut d = director();
    let now = Instant::from_secs(1);
    for i in 0..FLOWS {
        let (a, p) = client(i);
        let mut syn = tcp_packet(a, p, VIP, 80, 0x02, 0);
        assert!(matches!(d.handle_packet(now, &mut syn), Verdict::Encap(_)));
    }
    d
}

fn benches(c: &mut Criterion) {
    let mut d = filled();
    let bytes = d.conns().heap_bytes();
    println!(
        "conn table: {} flows, {} bytes allocated, {:.1} bytes/flow",
        d.conns().len(),
        bytes,
        bytes as f64 / d.conns().len() as f64
    );

    // Established: ACKs of flows spread over the whole table.
    let now = Instant::from_secs(2);
    let mut pkts: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| {
            let (a, p) = client(i.wrapping_mul(2_654_435_761) % FLOWS);
            tcp_packet(a, p, VIP, 80, 0x10, 64)
        })
        .collect();
    let mut i = 0usize;
    c.bench_function("established/1M", |b| {
        b.iter(|| {
            let pkt = &mut pkts[i & 4095];
            i += 1;
            black_box(d.handle_packet(now, pkt))
        })
    });

    let mut next = FLOWS;
    c.bench_function("new_flow", |b| {
        b.iter_batched_ref(
            || {
                let (a, p) = client(next);
                next += 1;
                tcp_packet(a, p, VIP, 80, 0x02, 0)
            },
            |syn| black_box(d.handle_packet(now, syn)),
            BatchSize::SmallInput,
        )
    });

    let dests: Vec<SchedDest> = (0..10)
        .map(|i| SchedDest {
            addr: Ipv4Addr::new(10, 3, 0, 10 + i),
            port: 80,
            weight: 1 + (i as u32 % 3),
            state: Default::default(),
        })
        .collect();
    c.bench_function("maglev_build/65537", |b| {
        b.iter(|| {
            black_box(Scheduler::new(
                SchedulerKind::Mh,
                &dests,
                Arc::new(SchedState::default()),
                SchedOptions::default(),
            ))
        })
    });
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(core);

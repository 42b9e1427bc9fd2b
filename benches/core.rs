//! Core-path benchmarks: the sans-IO director without sockets.
//!
//! - `established_1M/{hot,random,random_batch32}`: an established flow's packet with 1M flows
//!   in the table: a hot working set, uniformly random flows, and random flows in prefetched
//!   batches of 32 (what the driver does; time per batch, divide by 32);
//! - `new_flow/1M`: ns per new flow (lookup miss + schedule + insert + encap) into a table
//!   holding 1M flows, in prefetched batches of 32;
//! - `established_1M_v6/...` and `new_flow_v6/1M`: the same with IPv6 clients, VIP and real
//!   servers (ip6ip6), the IPv6 flow table;
//! - `slot_array_2M/{small_pages,huge_pages}`: 32 random 28-byte slot reads out of 2^21 (the
//!   1M-flow table's slot array), prefetched first, from a plain `Vec` and from the
//!   [`HugeArray`](tunlb::sys::huge::HugeArray) the table uses: the TLB part of a lookup;
//! - `conn_table/{v4,v6}/{lookup_batch32,insert_batch32}`: the connection table alone, IPv4
//!   ([`ConnTable`]) and IPv6 ([`tunlb::director::conn::ConnTable6`]) keys, 1M flows: random
//!   lookups and inserts of new flows, each in prefetched batches of 32 (time per batch, divide
//!   by 32);
//! - `maglev_build/65537`: time to build a Maglev table of 65537 entries for 10 servers;
//! - `gue_encap/{plain,mac}/{64,1400}`: an established flow's packet (64 or 1400 bytes of
//!   IPv4) to a GUE real server, without and with a tunnel key (authenticated GUE: one
//!   HMAC-SHA-256 over the packet, [`tunlb::encap::auth`]), 4096 hot flows: what the MAC
//!   costs per packet;
//! - `encap_build/{v4_gue,v4_gue_csum,v6_gue}/{64,1400}`: the outer header builders alone
//!   (no director): GUE over IPv4 without and with the UDP checksum, and GUE over IPv6, whose
//!   UDP checksum is mandatory (RFC 8200): what that sum over the inner packet costs;
//! - bytes per tracked flow are printed before the benchmarks run.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tunlb::director::conn::{
    Conn, ConnKey, ConnKey6, ConnState, ConnTable, DestId, FlowTable, TableKey, Timeouts,
};
use tunlb::director::sched::{SchedDest, SchedOptions, SchedState, Scheduler};
use tunlb::director::{Director, DirectorConfig, Registry, Shared, Verdict};
use tunlb::encap::TunnelType;
use tunlb::model::{
    DestConfig, Forward, Protocol, SchedulerKind, ServiceConfig, ServiceKey, ServiceSet,
};
use tunlb::time::Instant;
use tunlb::wire::testing::{tcp6_packet, tcp_packet};

const FLOWS: u32 = 1_000_000;
const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x100);

fn director() -> Director {
    director_with(Forward::tunnel(TunnelType::Ipip), None)
}

fn director_with(forward: Forward, key: Option<tunlb::encap::auth::TunnelKey>) -> Director {
    let rips = (0..4).map(|i| IpAddr::V4(Ipv4Addr::new(10, 3, 0, 10 + i)));
    director_over(IpAddr::V4(VIP), rips, forward, key)
}

/// A director with one TCP service `vip`:80 (wlc) to the real servers `rips`, reached by
/// `forward`, with `key` as the tunnel key if any; its table pre-sized for 2M flows.
fn director_over(
    vip: IpAddr,
    rips: impl Iterator<Item = IpAddr>,
    forward: Forward,
    key: Option<tunlb::encap::auth::TunnelKey>,
) -> Director {
    let set = ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip,
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Wlc,
            persistence: None,
            mss_clamp: None,
            dests: rips
                .map(|addr| DestConfig {
                    addr,
                    port: 80,
                    weight: 1,
                    forward,
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect(),
            policy: Default::default(),
        }],
    };
    let snap = Registry::new().build(&set, &Timeouts::default()).unwrap();
    let config = DirectorConfig {
        initial_conns: 1 << 21,
        max_conns: 4 << 20,
        ..DirectorConfig::default()
    };
    let shared = Arc::new(Shared::new(snap));
    if let Some(k) = key {
        shared.set_tunnel_keys(tunlb::encap::auth::KeyMap::new(Some(k), []));
    }
    Director::new(shared, config)
}

/// `gue_encap/{plain,mac}/{64,1400}` (see the module documentation).
fn gue_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("gue_encap");
    for (name, key) in [
        ("plain", None),
        ("mac", Some(tunlb::encap::auth::TunnelKey::new(&[7; 32]))),
    ] {
        let mut d = director_with(Forward::tunnel(TunnelType::Gue), key);
        let now = Instant::from_secs(1);
        for i in 0..4096 {
            let (a, p) = client(i);
            let mut syn = tcp_packet(a, p, VIP, 80, 0x02, 0);
            assert!(matches!(d.handle_packet(now, &mut syn), Verdict::Encap(_)));
        }
        for size in [64usize, 1400] {
            let mut pkts: Vec<Vec<u8>> = (0..4096)
                .map(|i| {
                    let (a, p) = client(i);
                    tcp_packet(a, p, VIP, 80, 0x10, size - 40)
                })
                .collect();
            let header = match d.handle_packet(now, &mut pkts[0]) {
                Verdict::Encap(e) => e.header_len,
                v => panic!("{v:?}"),
            };
            assert_eq!(header, if name == "mac" { 60 } else { 32 });
            group.throughput(Throughput::Elements(1));
            let mut i = 0usize;
            group.bench_function(format!("{name}/{size}"), |b| {
                b.iter(|| {
                    let pkt = &mut pkts[i & 4095];
                    i += 1;
                    black_box(d.handle_packet(now, pkt))
                })
            });
        }
    }
    group.finish();
}

/// `encap_build/{v4_gue,v4_gue_csum,v6_gue}/{64,1400}` (see the module documentation).
fn encap_build_benches(c: &mut Criterion) {
    use tunlb::encap::{
        build_outer, build_outer6, OuterParams, OuterParams6, Tunnel, MAX_OUTER_HEADER,
    };
    let mut group = c.benchmark_group("encap_build");
    let gue = |csum| Tunnel::Gue { port: 6080, csum };
    let v4 = |csum| OuterParams {
        src: Ipv4Addr::new(192, 168, 1, 1),
        dst: Ipv4Addr::new(192, 168, 1, 10),
        tunnel: gue(csum),
        flow_hash: 0xdead_beef,
    };
    let v6 = OuterParams6 {
        src: "2001:db8::1".parse().unwrap(),
        dst: "2001:db8::a".parse().unwrap(),
        tunnel: gue(false),
        flow_hash: 0xdead_beef,
        hop_limit: 64,
        traffic_class: Default::default(),
        udp_zero: Default::default(),
    };
    for size in [64usize, 1400] {
        let (a, p) = client(1);
        let pkt = tcp_packet(a, p, VIP, 80, 0x10, size - 40);
        group.throughput(Throughput::Elements(1));
        for (name, csum) in [("v4_gue", false), ("v4_gue_csum", true)] {
            let params = v4(csum);
            group.bench_function(format!("{name}/{size}"), |b| {
                let mut out = [0u8; MAX_OUTER_HEADER];
                b.iter(|| black_box(build_outer(&params, black_box(&pkt), &mut out)))
            });
        }
        group.bench_function(format!("v6_gue/{size}"), |b| {
            let mut out = [0u8; MAX_OUTER_HEADER];
            b.iter(|| black_box(build_outer6(&v6, black_box(&pkt), None, &mut out)))
        });
    }
    group.finish();
}

fn client(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(0x0b00_0000 + (i >> 4)),
        1024 + (i & 0xf) as u16,
    )
}

fn client6(i: u32) -> (Ipv6Addr, u16) {
    (
        Ipv6Addr::from(0x2001_0db8_0001_0000_0000_0000_0000_0000u128 + u128::from(i >> 4)),
        1024 + (i & 0xf) as u16,
    )
}

/// One address family's packets for the director benches: a director with one TCP service to
/// 4 IPIP real servers, client `i`'s SYN and ACK to it, and where a packet's source address
/// and port are (to aim a buffer at another client in place).
struct Family {
    director: fn() -> Director,
    packet: fn(u32, u8) -> Vec<u8>,
    aim: fn(&mut [u8], u32),
    flows: fn(&Director) -> usize,
}

const V4: Family = Family {
    director,
    packet: |i, flags| {
        let (a, p) = client(i);
        tcp_packet(a, p, VIP, 80, flags, 0)
    },
    aim: |pkt, i| {
        let (a, p) = client(i);
        pkt[12..16].copy_from_slice(&a.octets());
        pkt[20..22].copy_from_slice(&p.to_be_bytes());
    },
    flows: |d| d.conns().len(),
};

const V6: Family = Family {
    director: director6,
    packet: |i, flags| {
        let (a, p) = client6(i);
        tcp6_packet(a, p, VIP6, 80, flags, 0)
    },
    aim: |pkt, i| {
        let (a, p) = client6(i);
        pkt[8..24].copy_from_slice(&a.octets());
        pkt[40..42].copy_from_slice(&p.to_be_bytes());
    },
    flows: |d| d.conns6().len(),
};

/// The IPv6 counterpart of [`director`]: `[VIP6]:80` to 4 IPv6 real servers over ip6ip6.
fn director6() -> Director {
    let rips = (0..4).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 10 + i)));
    director_over(
        IpAddr::V6(VIP6),
        rips,
        Forward::tunnel(TunnelType::Ipip),
        None,
    )
}

fn filled(f: &Family) -> Director {
    let mut d = (f.director)();
    let now = Instant::from_secs(1);
    for i in 0..FLOWS {
        let mut syn = (f.packet)(i, 0x02);
        assert!(matches!(d.handle_packet(now, &mut syn), Verdict::Encap(_)));
    }
    d
}

fn benches(c: &mut Criterion) {
    director_benches(c, "", &V4);
    director_benches(c, "_v6", &V6);
}

/// `established_1M{suffix}` and `new_flow{suffix}` for one address family.
fn director_benches(c: &mut Criterion, suffix: &str, f: &Family) {
    let mut d = filled(f);
    let bytes = d.conns().heap_bytes() + d.conns6().heap_bytes();
    println!(
        "conn table{suffix}: {} flows, {} bytes allocated, {:.1} bytes/flow",
        (f.flows)(&d),
        bytes,
        bytes as f64 / (f.flows)(&d) as f64
    );

    // Established flows. "hot": 4096 flows of the 1M carry the traffic (their slots stay in
    // cache). "random": every packet hits a random one of the 1M flows (a cache miss each),
    // one at a time, and in batches of 32 that are prefetched first, as the driver does.
    let now = Instant::from_secs(2);
    let ack = |i: u32| (f.packet)(i, 0x10);
    let mut hot: Vec<Vec<u8>> = (0..4096u32)
        .map(|i| ack(i.wrapping_mul(2_654_435_761) % FLOWS))
        .collect();
    // The random benches rewrite the client address and port of a small, cache-hot set of
    // packet buffers (as a TUN read leaves them) instead of reading 1M cold packets.
    let mut batch: Vec<Vec<u8>> = (0..32).map(ack).collect();
    let aim = |pkt: &mut [u8], n: u32| (f.aim)(pkt, n.wrapping_mul(2_654_435_761) % FLOWS);
    let mut group = c.benchmark_group(format!("established_1M{suffix}"));
    let mut i = 0usize;
    group.bench_function("hot", |b| {
        b.iter(|| {
            let pkt = &mut hot[i & 4095];
            i += 1;
            black_box(d.handle_packet(now, pkt))
        })
    });
    let mut n = 0u32;
    group.bench_function("random", |b| {
        b.iter(|| {
            let pkt = &mut batch[0];
            aim(pkt, n);
            n = n.wrapping_add(1);
            black_box(d.handle_packet(now, pkt))
        })
    });
    group.throughput(Throughput::Elements(32));
    group.bench_function("random_batch32", |b| {
        b.iter(|| {
            for pkt in batch.iter_mut() {
                aim(pkt, n);
                n = n.wrapping_add(1);
                d.prefetch(pkt);
            }
            for pkt in batch.iter_mut() {
                let _ = black_box(d.handle_packet(now, pkt));
            }
        })
    });
    group.finish();

    // New flows: SYNs of unseen clients into a table already holding 1M flows. Each sample
    // starts from a freshly filled director so the table never grows past its 1M-flow size
    // class (criterion is asked for at most ~300k flows per sample).
    let mut group = c.benchmark_group(format!("new_flow{suffix}"));
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(1));
    group.bench_function("1M", |b| {
        b.iter_custom(|iters| {
            let mut d = filled(f);
            let mut syns: Vec<Vec<u8>> = (0..32u32).map(|i| (f.packet)(i, 0x02)).collect();
            let mut next = FLOWS;
            let rounds = iters.div_ceil(32);
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                for syn in syns.iter_mut() {
                    (f.aim)(syn, next);
                    next += 1;
                    d.prefetch(syn);
                }
                for syn in syns.iter_mut() {
                    let _ = black_box(d.handle_packet(now, syn));
                }
            }
            // Scale to `iters` flows (the last batch may overshoot by up to 31).
            let elapsed = start.elapsed().mul_f64(iters as f64 / (rounds * 32) as f64);
            assert_eq!((f.flows)(&d) as u64, u64::from(next));
            elapsed
        })
    });
    group.finish();
}

fn slot_array_benches(c: &mut Criterion) {
    // The slot array alone, on 4 KB pages and on transparent huge pages.
    const SLOTS: usize = 1 << 21;
    let small: Vec<[u8; 28]> = vec![[1; 28]; SLOTS];
    let huge = tunlb::sys::huge::HugeArray::new(SLOTS, [1u8; 28]);
    println!("huge pages advised: {}", huge.is_advised_huge());
    let mut group = c.benchmark_group("slot_array_2M");
    group.throughput(Throughput::Elements(32));
    let mut k = 0u64;
    let mut read32 = |slots: &[[u8; 28]]| {
        let mut at = [0usize; 32];
        for a in at.iter_mut() {
            k = k.wrapping_add(1);
            *a = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize & (SLOTS - 1);
            tunlb::sys::prefetch(&slots[*a]);
        }
        at.iter().map(|&a| u32::from(slots[a][a & 15])).sum::<u32>()
    };
    group.bench_function("small_pages", |b| b.iter(|| black_box(read32(&small))));
    group.bench_function("huge_pages", |b| b.iter(|| black_box(read32(&huge))));
    group.finish();
    drop((small, huge));

    // The per-packet lookup of a TUN real server's frame link among 64 servers: std's
    // SipHash map (the baseline, as it was) against the LinkTable's multiply-fold hash.
    let link = |i: u32| tunlb::director::io::tunnel_link::TunnelLink {
        to: tunlb::sys::packet::LinkDst {
            ifindex: 2,
            mac: [2, 0, 0, 0, 0, i as u8],
        },
        src_mac: [2, 0, 0, 0, 0, 1],
        src: Ipv4Addr::new(10, 2, 0, 2),
    };
    let rips: Vec<Ipv4Addr> = (0..64u32)
        .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 3, 0, 10)) + i))
        .collect();
    let sip: std::collections::HashMap<Ipv4Addr, _> = rips
        .iter()
        .enumerate()
        .map(|(i, r)| (*r, link(i as u32)))
        .collect();
    let mix: tunlb::director::io::tunnel_link::LinkTable = rips
        .iter()
        .enumerate()
        .map(|(i, r)| (*r, link(i as u32)))
        .collect();
    let mut group = c.benchmark_group("tunnel_link_lookup_64");
    group.throughput(Throughput::Elements(rips.len() as u64));
    group.bench_function("siphash", |b| {
        b.iter(|| {
            rips.iter()
                .map(|r| sip.get(black_box(r)).map_or(0, |l| l.to.mac[5]))
                .fold(0u8, u8::wrapping_add)
        })
    });
    group.bench_function("link_table", |b| {
        b.iter(|| {
            rips.iter()
                .map(|r| mix.get(black_box(r)).map_or(0, |l| l.to.mac[5]))
                .fold(0u8, u8::wrapping_add)
        })
    });
    group.finish();

    let dests: Vec<SchedDest> = (0..10)
        .map(|i| SchedDest {
            addr: Ipv4Addr::new(10, 3, 0, 10 + i).into(),
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

/// The IPv4 key of table flow `i` (distinct for every `i` below 2^32).
fn key4(i: u32) -> ConnKey {
    let (a, p) = client(i);
    ConnKey::new(6, a, p, VIP, 80)
}

/// The IPv6 key of table flow `i`: 16 ports of each client, clients spread over /64s.
fn key6(i: u32) -> ConnKey6 {
    let c = Ipv6Addr::new(0x2001, 0xdb8, (i >> 20) as u16, (i >> 4) as u16, 0, 0, 0, 1);
    ConnKey6::new(6, c, 1024 + (i & 0xf) as u16, VIP6, 80)
}

/// `conn_table/{v4,v6}/*` (see the module documentation).
fn table_benches(c: &mut Criterion) {
    table_bench(c, "conn_table/v4", key4);
    table_bench(c, "conn_table/v6", key6);
}

fn table_bench<K: TableKey>(c: &mut Criterion, name: &str, key: fn(u32) -> K) {
    let conn = |i: u32| {
        Conn::new(
            DestId(i & 3),
            ConnState::Established,
            Instant::from_secs(900),
        )
    };
    let fill = || {
        let mut t = FlowTable::<K>::new(ConnTable::slots_for(FLOWS as usize), 4 << 20, 7);
        for i in 0..FLOWS {
            t.insert(key(i), conn(i)).unwrap();
        }
        t
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(32));
    let mut t = fill();
    println!(
        "{name}: {:.1} bytes/flow at {} flows",
        t.heap_bytes() as f64 / t.len() as f64,
        t.len()
    );
    let mut n = 0u32;
    group.bench_function("lookup_batch32", |b| {
        b.iter(|| {
            let mut keys = [key(0); 32];
            for k in keys.iter_mut() {
                *k = key(n.wrapping_mul(2_654_435_761) % FLOWS);
                n = n.wrapping_add(1);
                t.prefetch(k);
            }
            keys.iter()
                .map(|k| t.get_mut(k).map_or(0, |c| c.dest.0))
                .fold(0u32, u32::wrapping_add)
        })
    });
    drop(t);
    // New flows into a table holding 1M: a fresh table every 512k inserts (not timed), so it
    // never grows past its 1M-flow size class.
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(1));
    group.bench_function("insert_batch32", |b| {
        b.iter_custom(|batches| {
            let mut elapsed = std::time::Duration::ZERO;
            let mut left = batches;
            while left > 0 {
                let rounds = left.min(1 << 14);
                left -= rounds;
                let mut t = fill();
                let mut next = FLOWS;
                let start = std::time::Instant::now();
                for _ in 0..rounds {
                    let keys: [K; 32] = std::array::from_fn(|j| key(next + j as u32));
                    next += 32;
                    for k in &keys {
                        t.prefetch(k);
                    }
                    for k in keys {
                        black_box(t.insert(k, conn(next)).is_ok());
                    }
                }
                elapsed += start.elapsed();
                assert_eq!(t.len() as u64, u64::from(next));
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group! {
    name = core;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = benches, slot_array_benches, gue_benches, encap_build_benches, table_benches
}
criterion_main!(core);

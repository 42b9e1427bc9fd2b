//! Second chance in the core: a flow picked up mid-way (`sloppy_tcp`) within the window after
//! an `mh` table change, whose previous-table server is still in the service and differs from
//! the new one, carries that server as second choice in its GUE header, on every packet.

use std::net::Ipv4Addr;

use crate::director::testkit::Lab;
use crate::director::{DirectorConfig, Verdict};
use crate::encap::chance::{self, SecondChance};
use crate::encap::TunnelType;
use crate::model::v4::{DestConfig, ServiceConfig, ServiceKey, ServiceSet};
use crate::model::{Forward, Protocol, SchedulerKind};
use crate::time::{Duration, Instant};
use crate::wire::testing::tcp_packet;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FLOWS: u32 = 1000;

fn rs(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 3, 0, 10 + i)
}

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0000 + i)
}

fn set(servers: &[u8], tun: TunnelType) -> ServiceSet {
    let dests = servers
        .iter()
        .map(|&i| DestConfig {
            addr: rs(i),
            port: 0,
            weight: 1,
            forward: Forward::tunnel(tun),
            u_threshold: 0,
            l_threshold: 0,
        })
        .collect();
    ServiceSet {
        services: vec![ServiceConfig {
            key: ServiceKey {
                vip: VIP,
                port: 80,
                proto: Protocol::Tcp,
            },
            scheduler: SchedulerKind::Mh,
            persistence: None,
            mss_clamp: None,
            dests,
            policy: Default::default(),
        }],
    }
}

fn config(window: u64) -> DirectorConfig {
    DirectorConfig {
        sloppy_tcp: true,
        second_chance_window: Duration::from_secs(window),
        ..DirectorConfig::default()
    }
}

/// Where a packet went and the second choice it carries.
fn sent(v: Verdict) -> (Ipv4Addr, Option<SecondChance>) {
    match v {
        Verdict::Encap(e) => {
            let h = &e.header[..e.header_len as usize];
            // IPv4 (20) + UDP (8) for GUE; IPIP has no GUE header at all.
            let c = if h.len() > 28 && h[9] == 17 {
                chance::parse(&h[28..]).unwrap().unwrap()
            } else {
                None
            };
            (e.dst, c)
        }
        other => panic!("expected Encap, got {other:?}"),
    }
}

/// The server each client's flow gets from the table of `servers` (a SYN on a fresh lab).
fn table(servers: &[u8], tun: TunnelType) -> Vec<Ipv4Addr> {
    let mut lab = Lab::with_config(1, set(servers, tun), config(600));
    let now = Instant::from_secs(1);
    (0..FLOWS)
        .map(|i| sent(lab.send(0, now, &mut tcp_packet(client(i), 5000, VIP, 80, SYN, 0))).0)
        .collect()
}

/// A lab whose table was `before`, then `after` published at t = 10 s.
fn changed(before: &[u8], after: &[u8], tun: TunnelType, window: u64) -> Lab {
    let mut lab = Lab::with_config(1, set(before, tun), config(window));
    lab.registry.now = Instant::from_secs(10);
    lab.publish(&set(after, tun));
    lab
}

#[test]
fn only_sloppy_pickups_whose_tables_disagree_get_a_second_choice() {
    let gue = TunnelType::Gue;
    let old = table(&[1, 2, 3], gue);
    let new = table(&[1, 2, 3, 4], gue);
    let mut lab = changed(&[1, 2, 3], &[1, 2, 3, 4], gue, 600);
    let now = Instant::from_secs(20);
    let mut marked = 0;
    for i in 0..FLOWS {
        // A mid-flow ACK of a flow this director never saw: the new table's server, and the
        // old one's as second choice when they differ.
        let (to, c) = sent(lab.send(0, now, &mut tcp_packet(client(i), 5000, VIP, 80, ACK, 10)));
        assert_eq!(to, new[i as usize]);
        let want = (old[i as usize] != to).then(|| SecondChance::new(old[i as usize]));
        assert_eq!(c, want, "flow {i}");
        // Its next packet carries it too (the entry remembers it).
        let (to2, c2) = sent(lab.send(0, now, &mut tcp_packet(client(i), 5000, VIP, 80, ACK, 0)));
        assert_eq!((to2, c2), (to, want), "flow {i}, next packet");
        // A new connection (SYN) from the same client never gets one.
        let (_, c3) = sent(lab.send(0, now, &mut tcp_packet(client(i), 6000, VIP, 80, SYN, 0)));
        assert_eq!(c3, None);
        marked += u64::from(want.is_some());
    }
    // The table moved some flows (to the new server and between the others), not most.
    assert!(marked > 100 && marked < 500, "{marked}");
    assert_eq!(lab.workers[0].counters().second_chance_marked, marked);
    assert_eq!(lab.workers[0].second_chances() as u64, marked);
    // Republishing the same set keeps the previous table (a reload changes nothing).
    lab.registry.now = Instant::from_secs(30);
    lab.publish(&set(&[1, 2, 3, 4], gue));
    let moved = (0..FLOWS)
        .find(|&i| old[i as usize] != new[i as usize])
        .unwrap();
    let now = Instant::from_secs(40);
    let (_, c) = sent(lab.send(
        0,
        now,
        &mut tcp_packet(client(moved), 7000, VIP, 80, ACK, 10),
    ));
    assert_eq!(c, Some(SecondChance::new(old[moved as usize])));
    // Once the window (from the change at 10 s) is over: none for new pickups...
    let late = Instant::from_secs(10 + 600);
    let (_, c) = sent(lab.send(
        0,
        late,
        &mut tcp_packet(client(moved), 7001, VIP, 80, ACK, 10),
    ));
    assert_eq!(c, None);
    // ...but a flow marked within it keeps its second choice.
    let (_, c) = sent(lab.send(
        0,
        late,
        &mut tcp_packet(client(moved), 5000, VIP, 80, ACK, 0),
    ));
    assert_eq!(c, Some(SecondChance::new(old[moved as usize])));
}

#[test]
fn no_second_choice_for_a_removed_server_ipip_or_a_zero_window() {
    let gue = TunnelType::Gue;
    let old = table(&[1, 2, 3, 4], gue);
    let new = table(&[1, 2, 3], gue);
    let mut lab = changed(&[1, 2, 3, 4], &[1, 2, 3], gue, 600);
    let now = Instant::from_secs(20);
    let (mut gone, mut marked) = (0, 0);
    for i in 0..FLOWS {
        let (to, c) = sent(lab.send(0, now, &mut tcp_packet(client(i), 5000, VIP, 80, ACK, 10)));
        assert_eq!(to, new[i as usize]);
        let p = old[i as usize];
        if p == rs(4) {
            // Its server left: nowhere to give it a second chance.
            assert_eq!(c, None);
            gone += 1;
        } else if p != to {
            assert_eq!(c, Some(SecondChance::new(p)));
            marked += 1;
        } else {
            assert_eq!(c, None);
        }
    }
    // (Maglev moves few flows between the servers that stayed: `marked` may well be 0.)
    assert!(gone > 100, "{gone}");
    assert_eq!(lab.workers[0].counters().second_chance_marked, marked);
    // IPIP has no room for it; a zero window turns it off.
    for (tun, window) in [(TunnelType::Ipip, 600), (gue, 0)] {
        let mut lab = changed(&[1, 2, 3], &[1, 2, 3, 4], tun, window);
        for i in 0..FLOWS {
            let pkt = &mut tcp_packet(client(i), 5000, VIP, 80, ACK, 10);
            assert_eq!(sent(lab.send(0, now, pkt)).1, None);
        }
        assert_eq!(lab.workers[0].counters().second_chance_marked, 0);
    }
    // Without a change (first build): none.
    let mut lab = Lab::with_config(1, set(&[1, 2, 3], gue), config(600));
    for i in 0..FLOWS {
        let pkt = &mut tcp_packet(client(i), 5000, VIP, 80, ACK, 10);
        assert_eq!(sent(lab.send(0, now, pkt)).1, None);
    }
}

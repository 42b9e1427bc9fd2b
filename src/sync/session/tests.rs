//! The session on a virtual clock: a master and a backup wired back to back, a fake table.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};

use super::*;
use crate::director::conn::{ConnKey, ConnKey6, ConnState};

fn rec(i: u32) -> SyncRecord {
    SyncRecord {
        key: ConnKey::new(
            6,
            Ipv4Addr::from(0x0a00_0000 + i),
            (i % 60000) as u16 + 1024,
            Ipv4Addr::new(10, 9, 9, 9),
            80,
        ),
        dest: SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 1), 80),
        state: ConnState::Established,
        timeout: Duration::from_secs(900),
        confirmed: false,
    }
}

fn table(n: u32) -> Vec<SyncRecord> {
    (0..n).map(rec).collect()
}

fn rec6(i: u32) -> SyncRecord6 {
    SyncRecord6 {
        key: ConnKey6::new(
            6,
            Ipv6Addr::from((0x2001_0db8_0001_u128 << 80) | u128::from(i)),
            (i % 60000) as u16 + 1024,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100),
            80,
        ),
        dest: SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 1).into(), 80),
        state: ConnState::Established,
        timeout: Duration::from_secs(900),
        confirmed: false,
    }
}

fn cfg(sender: u32) -> SessionConfig {
    SessionConfig::new(3, 1472, None, sender)
}

fn ms(t: u64) -> Instant {
    Instant::from_millis(t)
}

/// Answers the session's dump demands from `table`, then `table6` (one core, cursor = index
/// in both together), as the daemon's cursor does.
#[derive(Default)]
struct Dumper {
    pass: u64,
    at: usize,
}

impl Dumper {
    fn pump(
        &mut self,
        s: &mut SyncSession,
        now: Instant,
        table: &[SyncRecord],
        table6: &[SyncRecord6],
    ) {
        while let Some(d) = s.poll_dump() {
            if d.pass != self.pass {
                *self = Dumper {
                    pass: d.pass,
                    at: 0,
                };
            }
            let total = table.len() + table6.len();
            let end = (self.at + d.limit).min(total);
            let v4 = &table[self.at.min(table.len())..end.min(table.len())];
            let v6 =
                &table6[self.at.max(table.len()) - table.len()..end.max(table.len()) - table.len()];
            self.at = end;
            s.push_dump6(d.pass, v6);
            s.push_dump(now, d.pass, v4, end == total);
        }
    }
}

/// A master and a backup exchanging every message at once.
struct Pair {
    now: Instant,
    master: SyncSession,
    backup: SyncSession,
    table: Vec<SyncRecord>,
    table6: Vec<SyncRecord6>,
    dumper: Dumper,
    /// What the backup installed: key -> record, and how many records arrived in all.
    installed: HashMap<ConnKey, SyncRecord>,
    installed6: HashMap<ConnKey6, SyncRecord6>,
    records_in: usize,
    /// Messages the master sent that the backup never gets (by index in `sent`).
    lose: Vec<usize>,
    /// Messages the master sent, with the time.
    sent: Vec<(Instant, MessageType, usize)>,
    ready_at: Option<Instant>,
}

impl Pair {
    fn new(n: u32) -> Pair {
        let now = ms(1000);
        let mut master = SyncSession::new(cfg(1), now);
        master.set_master(now, true);
        Pair {
            now,
            master,
            backup: SyncSession::new(cfg(2), now),
            table: table(n),
            table6: Vec::new(),
            dumper: Dumper::default(),
            installed: HashMap::new(),
            installed6: HashMap::new(),
            records_in: 0,
            lose: Vec::new(),
            sent: Vec::new(),
            ready_at: None,
        }
    }

    fn step(&mut self) {
        let now = self.now;
        self.master.handle_timeout(now);
        self.backup.handle_timeout(now);
        self.dumper
            .pump(&mut self.master, now, &self.table, &self.table6);
        while let Some(m) = self.backup.poll_transmit() {
            assert!(matches!(
                self.master.handle_message(now, &m),
                Ok(Incoming::Handled(MessageType::BulkRequest))
            ));
        }
        self.dumper
            .pump(&mut self.master, now, &self.table, &self.table6);
        while let Some(m) = self.master.poll_transmit() {
            assert!(m.len() <= 1472);
            let view = Message::new_checked(&m).unwrap();
            self.sent.push((now, view.kind(), view.count() as usize));
            if self.lose.contains(&(self.sent.len() - 1)) {
                continue;
            }
            match self.backup.handle_message(now, &m).unwrap() {
                Incoming::Records(rs) => {
                    for r in rs {
                        self.records_in += 1;
                        self.installed.insert(r.key, r);
                    }
                }
                Incoming::Records6(rs) => {
                    for r in rs {
                        self.records_in += 1;
                        self.installed6.insert(r.key, r);
                    }
                }
                Incoming::Handled(_) => {}
            }
        }
        if self.backup.is_ready() && self.ready_at.is_none() {
            self.ready_at = Some(now);
        }
    }

    /// Runs every timer up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.step();
            let next = [self.master.poll_timeout(), self.backup.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => self.now = t.max(self.now),
                _ => break,
            }
        }
        self.now = until;
        self.step();
    }
}

#[test]
fn a_starting_backup_gets_the_whole_table_and_is_ready_at_once() {
    let mut p = Pair::new(1_500);
    assert!(!p.backup.is_ready());
    p.run_until(ms(3000));
    assert_eq!(p.installed.len(), 1_500);
    assert_eq!(p.records_in, 1_500, "one bulk pass, nothing twice");
    assert_eq!(
        p.ready_at,
        Some(ms(1000)),
        "1,500 flows fit one tick's budget"
    );
    let ends: Vec<_> = p
        .sent
        .iter()
        .filter(|(_, k, _)| *k == MessageType::BulkEnd)
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(p.master.counters().bulk_passes, 1);
    assert_eq!(p.installed[&rec(42).key], rec(42));
}

#[test]
fn a_large_bulk_pass_is_paced_and_ends_within_two_seconds() {
    // 300,000 flows at 32 messages of 55 per 5 ms tick: 171 ticks, under a second.
    let mut p = Pair::new(300_000);
    p.run_until(ms(3000));
    assert_eq!(p.installed.len(), 300_000);
    let ready = p.ready_at.expect("ready");
    assert!(ready > ms(1000) && ready <= ms(2000), "ready at {ready:?}");
    let first_tick = p.sent.iter().filter(|(t, _, _)| *t == ms(1000)).count();
    assert_eq!(first_tick, 32, "one tick's budget at start");
}

#[test]
fn without_an_answer_the_backup_repeats_its_request_then_gives_up_after_two_seconds() {
    let mut b = SyncSession::new(cfg(2), ms(0));
    let mut requests = Vec::new();
    let mut now = ms(0);
    while !b.is_ready() {
        b.handle_timeout(now);
        while let Some(m) = b.poll_transmit() {
            assert_eq!(
                Message::new_checked(&m).unwrap().kind(),
                MessageType::BulkRequest
            );
            requests.push(now);
        }
        now = b.poll_timeout().unwrap_or(now);
        assert!(now <= ms(2000));
    }
    assert_eq!(requests, vec![ms(0), ms(500), ms(1000), ms(1500)]);
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn changes_leave_in_full_messages_at_once_and_the_rest_within_the_flush_interval() {
    let mut m = SyncSession::new(cfg(1), ms(0));
    m.set_master(ms(0), true);
    m.queue(ms(0), &table(60));
    let first = m.poll_transmit().expect("a full message at once");
    assert_eq!(Message::new_checked(&first).unwrap().count(), 55);
    assert!(m.poll_transmit().is_none());
    assert_eq!(m.poll_timeout(), Some(ms(20)));
    m.handle_timeout(ms(19));
    assert!(m.poll_transmit().is_none());
    m.handle_timeout(ms(20));
    let rest = m.poll_transmit().expect("the rest after 20 ms");
    let rest = Message::new_checked(&rest).unwrap();
    assert_eq!(rest.count(), 5);
    assert_eq!(rest.records().next(), Some(rec(55)));
    assert_eq!(m.counters().records_sent, 60);
    assert_eq!(m.counters().messages_sent, 2);
}

#[test]
fn confirmed_and_unconfirmed_changes_leave_in_separate_messages_in_order() {
    let confirmed = |i: u32| SyncRecord {
        confirmed: true,
        ..rec(i)
    };
    let mut m = SyncSession::new(cfg(1), ms(0));
    m.set_master(ms(0), true);
    // Flow 0 unconfirmed (its handshake's ACK), then confirmed (its data), among others.
    let mut changes = vec![rec(0)];
    changes.extend((1..55).map(confirmed));
    changes.push(confirmed(0));
    m.queue(ms(0), &changes);
    // The 55th confirmed change fills a message: flow 0's older unconfirmed record leaves
    // first, in a message of its own.
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| m.poll_transmit()).collect();
    assert_eq!(got.len(), 2);
    let first = Message::new_checked(&got[0]).unwrap();
    assert!(!first.is_confirmed());
    assert_eq!(first.records().collect::<Vec<_>>(), vec![rec(0)]);
    let second = Message::new_checked(&got[1]).unwrap();
    assert!(second.is_confirmed());
    assert_eq!(second.count(), 55);
    assert!(second.records().all(|r| r.confirmed));
    assert_eq!(second.records().last(), Some(confirmed(0)));
    // A flush sends each kind in its own message, the unconfirmed ones first.
    m.queue(ms(30), &[confirmed(7), rec(8), confirmed(9)]);
    m.handle_timeout(ms(50));
    let got: Vec<_> = std::iter::from_fn(|| m.poll_transmit()).collect();
    let kinds: Vec<(bool, u16)> = got
        .iter()
        .map(|b| Message::new_checked(b).unwrap())
        .map(|v| (v.is_confirmed(), v.count()))
        .collect();
    assert_eq!(kinds, vec![(false, 1), (true, 2)]);
    // A backup hands the records on with their confirmation.
    let mut b = SyncSession::new(cfg(2), ms(0));
    b.set_master(ms(0), false);
    match b.handle_message(ms(50), &got[1]).unwrap() {
        Incoming::Records(rs) => {
            assert_eq!(rs.collect::<Vec<_>>(), vec![confirmed(7), confirmed(9)]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refresh_pass_keeps_confirmed_flows_confirmed() {
    let mut p = Pair::new(0);
    p.table = (0..200)
        .map(|i| SyncRecord {
            confirmed: i % 3 == 0,
            ..rec(i)
        })
        .collect();
    p.run_until(ms(3000));
    assert_eq!(p.installed.len(), 200);
    for i in 0..200 {
        assert_eq!(p.installed[&rec(i).key].confirmed, i % 3 == 0, "flow {i}");
    }
}

#[test]
fn a_backup_queues_nothing_and_a_full_queue_drops_and_counts() {
    let mut b = SyncSession::new(cfg(2), ms(0));
    b.handle_timeout(ms(0));
    while b.poll_transmit().is_some() {}
    b.queue(ms(0), &table(10));
    assert!(b.poll_transmit().is_none());
    let mut m = SyncSession::new(
        SessionConfig {
            queue_limit: 2,
            ..SessionConfig::new(3, 200, None, 1)
        },
        ms(0),
    );
    m.set_master(ms(0), true);
    assert_eq!(m.records_per_message(), 6);
    m.queue(ms(0), &table(5)); // 5 queued
    m.queue(ms(0), &table(20)); // 1 fills a message, 6 more a second, then 13 dropped
    assert_eq!(m.counters().dropped, 13);
    assert!(m.poll_transmit().is_some());
    m.queue(ms(0), &table(1)); // room again
    assert_eq!(m.counters().dropped, 13);
    let mut bad = rec(1);
    bad.key.proto = 47;
    m.queue(ms(0), &[bad]);
    assert_eq!(m.counters().dropped, 14, "a record the wire cannot carry");
}

#[test]
fn the_master_refreshes_the_whole_table_paced_over_half_the_interval() {
    let mut p = Pair::new(20_000);
    p.master.cfg.refresh = Duration::from_secs(10);
    p.run_until(ms(1100)); // bulk done: 12 ticks of 1760 records
    assert_eq!(p.records_in, 20_000);
    assert_eq!(p.ready_at, Some(ms(1055)));
    let bulk_end = p.sent.len();
    p.run_until(ms(1000 + 10_000 + 6000));
    let refresh: Vec<_> = p.sent[bulk_end..].to_vec();
    let records: usize = refresh.iter().map(|(_, _, n)| n).sum();
    assert_eq!(records, 20_000, "one refresh pass");
    assert!(refresh.iter().all(|(_, k, _)| *k == MessageType::Conns));
    let (first, last) = (refresh[0].0, refresh[refresh.len() - 1].0);
    assert_eq!(first, ms(11_055), "refresh due 10 s after the bulk pass");
    let spread = last - first;
    assert!(
        spread >= Duration::from_millis(4000) && spread <= Duration::from_millis(5100),
        "spread over {spread:?}"
    );
    assert_eq!(p.master.counters().refresh_passes, 1);
    assert_eq!(
        p.master.poll_timeout(),
        Some(last + Duration::from_secs(10))
    );
}

#[test]
fn refresh_interval_is_half_the_shortest_timeout_within_one_and_sixty_seconds() {
    assert_eq!(
        refresh_interval(Duration::from_secs(900)),
        Duration::from_secs(60)
    );
    assert_eq!(
        refresh_interval(Duration::from_secs(60)),
        Duration::from_secs(30)
    );
    assert_eq!(
        refresh_interval(Duration::from_millis(500)),
        Duration::from_secs(1)
    );
}

fn conns_message(sender: u32, seq: u64, key: Option<&Key>) -> Vec<u8> {
    let mut out = Vec::new();
    let hdr = Header {
        syncid: 3,
        sender,
        sequence: seq,
    };
    wire::build(
        &hdr,
        Body::Conns(&[rec(seq as u32 % 1_000_000)]),
        key,
        &mut out,
    );
    out
}

#[test]
fn replays_duplicates_and_own_messages_are_refused() {
    let mut b = SyncSession::new(cfg(2), ms(0));
    let ok = |b: &mut SyncSession, m: &[u8]| b.handle_message(ms(0), m).map(|_| ());
    assert_eq!(ok(&mut b, &conns_message(9, 100, None)), Ok(()));
    assert_eq!(
        ok(&mut b, &conns_message(9, 100, None)),
        Err(Refused::Replay)
    );
    assert_eq!(
        ok(&mut b, &conns_message(9, 98, None)),
        Ok(()),
        "late, in the window"
    );
    assert_eq!(
        ok(&mut b, &conns_message(9, 98, None)),
        Err(Refused::Replay)
    );
    assert_eq!(ok(&mut b, &conns_message(9, 200, None)), Ok(()));
    assert_eq!(ok(&mut b, &conns_message(9, 137, None)), Ok(()), "63 back");
    assert_eq!(
        ok(&mut b, &conns_message(9, 136, None)),
        Err(Refused::Replay),
        "64 back"
    );
    assert_eq!(
        ok(&mut b, &conns_message(10, 1, None)),
        Ok(()),
        "another sender"
    );
    assert_eq!(ok(&mut b, &conns_message(2, 1, None)), Err(Refused::Own));
}

#[test]
fn a_sequence_at_the_top_of_u64_is_handled_not_overflowed() {
    // Found by the sync_message fuzzer: the gap check added 1 to the highest sequence seen.
    let mut b = SyncSession::new(cfg(2), ms(0));
    let ok = |b: &mut SyncSession, m: &[u8]| b.handle_message(ms(0), m).map(|_| ());
    assert_eq!(ok(&mut b, &conns_message(9, 1, None)), Ok(()));
    assert_eq!(ok(&mut b, &conns_message(9, u64::MAX, None)), Ok(()));
    assert_eq!(
        ok(&mut b, &conns_message(9, u64::MAX, None)),
        Err(Refused::Replay)
    );
}

#[test]
fn the_replay_window_forgets_the_least_recently_heard_sender() {
    let mut b = SyncSession::new(cfg(2), ms(0));
    for s in 0..MAX_SENDERS as u32 {
        let now = ms(u64::from(s));
        b.handle_message(now, &conns_message(100 + s, 5, None))
            .unwrap();
    }
    b.handle_message(ms(100), &conns_message(100, 6, None))
        .unwrap(); // 100 heard again
    b.handle_message(ms(101), &conns_message(999, 1, None))
        .unwrap(); // evicts 101
    assert_eq!(b.windows.len(), MAX_SENDERS);
    assert!(b.windows.iter().all(|w| w.sender != 101));
    assert_eq!(
        b.handle_message(ms(102), &conns_message(100, 6, None))
            .map(|_| ()),
        Err(Refused::Replay)
    );
}

#[test]
fn a_keyed_session_refuses_unauthenticated_and_wrongly_keyed_messages() {
    let key = Key::new(b"the key");
    let mut b = SyncSession::new(SessionConfig::new(3, 1472, Some(key.clone()), 2), ms(0));
    let refuse =
        |b: &mut SyncSession, m: &[u8]| b.handle_message(ms(0), m).map(|_| ()).unwrap_err();
    assert_eq!(refuse(&mut b, &conns_message(9, 1, None)), Refused::Auth);
    assert_eq!(
        refuse(&mut b, &conns_message(9, 1, Some(&Key::new(b"other")))),
        Refused::Auth
    );
    assert!(b
        .handle_message(ms(0), &conns_message(9, 1, Some(&key)))
        .is_ok());
    assert_eq!(
        refuse(&mut b, &conns_message(9, 1, Some(&key))),
        Refused::Replay
    );
    let mut wrong_id = conns_message(9, 2, None);
    wrong_id[6] = 4;
    assert_eq!(refuse(&mut b, &wrong_id), Refused::Syncid);
    assert_eq!(refuse(&mut b, b"TLB"), Refused::Truncated);
    // A keyed master's messages carry one record fewer.
    assert_eq!(b.records_per_message(), 54);
}

#[test]
fn a_bulk_end_for_someone_else_does_not_make_a_backup_ready() {
    let mut b = SyncSession::new(cfg(2), ms(0));
    let mut out = Vec::new();
    let hdr = Header {
        syncid: 3,
        sender: 1,
        sequence: 1,
    };
    wire::build(&hdr, Body::BulkEnd(&[7]), None, &mut out);
    b.handle_message(ms(0), &out).unwrap();
    assert!(!b.is_ready());
    wire::build(
        &Header { sequence: 2, ..hdr },
        Body::BulkEnd(&[7, 2]),
        None,
        &mut out,
    );
    b.handle_message(ms(0), &out).unwrap();
    assert!(b.is_ready());
    assert_eq!(b.poll_timeout(), None, "no more requests");
}

#[test]
fn a_second_backup_asking_during_a_bulk_pass_gets_a_pass_of_its_own() {
    let mut m = SyncSession::new(cfg(1), ms(0));
    m.set_master(ms(0), true);
    let request = |sender: u32, seq: u64| {
        let mut out = Vec::new();
        let hdr = Header {
            syncid: 3,
            sender,
            sequence: seq,
        };
        wire::build(&hdr, Body::BulkRequest, None, &mut out);
        out
    };
    m.handle_message(ms(0), &request(2, 1)).unwrap();
    let d = m.poll_dump().unwrap();
    m.push_dump(ms(0), d.pass, &table(10), false);
    m.handle_message(ms(0), &request(2, 2)).unwrap(); // a repeat: ignored
    m.handle_message(ms(0), &request(3, 1)).unwrap(); // another backup: after this pass
    assert_eq!(m.poll_dump().map(|d| d.pass), Some(d.pass));
    m.push_dump(ms(0), d.pass, &table(20)[10..], true);
    let d2 = m.poll_dump().expect("a second pass");
    assert_ne!(d2.pass, d.pass);
    m.push_dump(ms(0), d2.pass, &table(20), true);
    let ends: Vec<Vec<u32>> = std::iter::from_fn(|| m.poll_transmit())
        .filter_map(|b| {
            let v = Message::new_checked(&b).unwrap();
            (v.kind() == MessageType::BulkEnd).then(|| v.requesters().collect())
        })
        .collect();
    assert_eq!(ends, vec![vec![2], vec![3]]);
    assert_eq!(m.counters().records_sent, 40);
    // A stale answer for a finished pass is ignored.
    m.push_dump(ms(0), d.pass, &table(5), true);
    assert!(m.poll_transmit().is_none());
}

#[test]
fn a_bulk_request_during_a_refresh_pass_restarts_it_as_a_bulk_pass() {
    let mut m = SyncSession::new(cfg(1), ms(0));
    m.set_master(ms(0), true);
    m.handle_timeout(ms(60_000));
    let refresh = m.poll_dump().expect("refresh pass");
    let mut out = Vec::new();
    let hdr = Header {
        syncid: 3,
        sender: 2,
        sequence: 1,
    };
    wire::build(&hdr, Body::BulkRequest, None, &mut out);
    m.handle_message(ms(60_001), &out).unwrap();
    let bulk = m.poll_dump().unwrap();
    assert_ne!(bulk.pass, refresh.pass);
    assert_eq!(bulk.limit, 32 * 55);
}

#[test]
fn roles_records_reach_only_a_backup_and_a_master_is_ready() {
    let mut s = SyncSession::new(cfg(2), ms(0));
    assert!(matches!(
        s.handle_message(ms(0), &conns_message(9, 1, None)),
        Ok(Incoming::Records(_))
    ));
    s.set_master(ms(0), true);
    assert!(s.is_ready() && s.is_master());
    // For 2 s after taking over, a new master still installs what the replaced one sends
    // (its last changes, flushed as it steps down), and holds sloppy pickup for 500 ms.
    assert!(matches!(
        s.handle_message(ms(1999), &conns_message(9, 2, None)),
        Ok(Incoming::Records(_))
    ));
    assert!(s.pickup_held(ms(499)) && !s.pickup_held(ms(500)));
    assert!(matches!(
        s.handle_message(ms(2000), &conns_message(9, 3, None)),
        Ok(Incoming::Handled(MessageType::Conns))
    ));
    // A master sends what it holds at once when told to (it is stepping down).
    s.queue(ms(2000), &table(2));
    s.flush();
    assert!(s.poll_transmit().is_some(), "flushed");
    assert!(s.poll_transmit().is_none());
    s.queue(ms(0), &table(3));
    s.set_master(ms(1), false);
    assert!(s.is_ready(), "a master that steps down keeps its table");
    s.handle_timeout(ms(100));
    assert!(
        s.poll_transmit().is_none(),
        "unsent changes dropped with the role"
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_backup_that_lost_part_of_the_bulk_answer_asks_again() {
    let mut p = Pair::new(1_500);
    // Start the bulk by hand and lose the second message of the answer.
    p.backup.handle_timeout(p.now);
    let req = p.backup.poll_transmit().unwrap();
    p.master.handle_message(p.now, &req).unwrap();
    p.dumper.pump(&mut p.master, p.now, &p.table, &p.table6);
    let mut n = 0;
    while let Some(m) = p.master.poll_transmit() {
        n += 1;
        if n == 2 {
            continue;
        }
        let _ = p.backup.handle_message(p.now, &m).unwrap();
    }
    assert!(!p.backup.is_ready(), "a gap: not ready on the BulkEnd");
    assert_eq!(p.backup.counters().bulk_retries, 1);
    assert_eq!(p.backup.poll_timeout(), Some(p.now), "asks again at once");
    p.run_until(ms(1500));
    assert!(p.backup.is_ready());
    assert_eq!(p.installed.len(), 1_500);
    assert_eq!(p.master.counters().bulk_passes, 2);
}

// IPv6 records (Conns6).

#[test]
fn a_starting_backup_gets_the_ipv4_and_ipv6_tables_then_the_bulk_end() {
    let mut p = Pair::new(1_000);
    p.table6 = (0..500).map(rec6).collect();
    p.run_until(ms(3000));
    assert_eq!(p.installed.len(), 1_000);
    assert_eq!(p.installed6.len(), 500);
    assert_eq!(p.records_in, 1_500, "one bulk pass, nothing twice");
    assert_eq!(p.ready_at, Some(ms(1000)));
    assert_eq!(p.installed6[&rec6(42).key], rec6(42));
    let conns6: Vec<_> = p
        .sent
        .iter()
        .filter(|(_, k, _)| *k == MessageType::Conns6)
        .collect();
    // 500 records, 23 a message: 21 full ones and one of 17.
    assert_eq!(conns6.len(), 22);
    assert!(conns6.iter().all(|(_, _, n)| *n <= 23));
    let end = p
        .sent
        .iter()
        .position(|(_, k, _)| *k == MessageType::BulkEnd)
        .unwrap();
    let last6 = p
        .sent
        .iter()
        .rposition(|(_, k, _)| *k == MessageType::Conns6)
        .unwrap();
    assert!(last6 < end, "the IPv6 records leave before the BulkEnd");
}

#[test]
fn a_backup_that_lost_an_ipv6_message_of_the_bulk_answer_asks_again() {
    let mut p = Pair::new(100);
    p.table6 = (0..100).map(rec6).collect();
    // Messages of the first pass: Conns6 × 4 (23 each), Conns (55), then the rest: Conns
    // (45), Conns6 (8), BulkEnd. The fourth is lost: the fifth Conns6 shows the gap.
    p.lose = vec![3];
    p.run_until(ms(3000));
    assert_eq!(p.sent[3].1, MessageType::Conns6);
    assert_eq!(p.installed6.len(), 100, "the second pass filled the gap");
    assert_eq!(p.backup.counters().bulk_retries, 1);
    assert_eq!(p.master.counters().bulk_passes, 2);
    assert_eq!(p.ready_at.map(|t| t < ms(3000)), Some(true));
}

#[test]
fn ipv6_changes_leave_in_conns6_messages_of_their_own_stream() {
    let now = ms(1000);
    let mut m = SyncSession::new(cfg(0x0102_0304), now);
    m.set_master(now, true);
    assert_eq!(m.records6_per_message(), 23);
    // 23 IPv6 changes fill a message: it leaves at once; IPv4 ones wait for the flush.
    m.queue(now, &[rec(1)]);
    m.queue6(now, &(0..23).map(rec6).collect::<Vec<_>>());
    let full = m.poll_transmit().expect("a full Conns6");
    assert!(m.poll_transmit().is_none());
    m.queue6(
        now,
        &[
            SyncRecord6 {
                confirmed: true,
                ..rec6(99)
            },
            rec6(100),
        ],
    );
    m.handle_timeout(now + Duration::from_millis(20));
    let mut got = vec![full];
    while let Some(x) = m.poll_transmit() {
        got.push(x);
    }
    let views: Vec<_> = got
        .iter()
        .map(|b| Message::new_checked(b).unwrap())
        .collect();
    let kinds: Vec<_> = views
        .iter()
        .map(|v| {
            (
                v.kind(),
                v.sender(),
                v.sequence(),
                v.count(),
                v.is_confirmed(),
            )
        })
        .collect();
    let (s4, s6) = (0x0102_0304, wire::stream6(0x0102_0304));
    assert_eq!(
        kinds,
        [
            (MessageType::Conns6, s6, 1, 23, false),
            (MessageType::Conns, s4, 1, 1, false),
            (MessageType::Conns6, s6, 2, 1, false),
            (MessageType::Conns6, s6, 3, 1, true),
        ],
        "each stream numbered from 1, unconfirmed before confirmed"
    );
    assert_eq!(m.counters().records_sent, 26);
    // A backup takes them (the two streams' windows apart), refuses them as its own, and
    // a master past its handover ignores them.
    let mut b = SyncSession::new(cfg(9), now);
    for x in &got {
        assert!(b.handle_message(now, x).is_ok());
    }
    let mut own = SyncSession::new(cfg(0x0102_0304), now);
    assert_eq!(own.handle_message(now, &got[0]).err(), Some(Refused::Own));
    let later = now + Duration::from_secs(10);
    m.set_master(later, false);
    let mut other = SyncSession::new(cfg(9), now);
    other.set_master(now, true);
    assert!(matches!(
        other.handle_message(later, &got[2]),
        Ok(Incoming::Handled(MessageType::Conns6))
    ));
    // A backup queues nothing.
    let mut idle = SyncSession::new(cfg(5), now);
    idle.queue6(now, &[rec6(1)]);
    idle.flush();
    assert!(idle.poll_transmit().is_none());
}

#[test]
fn what_an_older_receiver_makes_of_conns6_leaves_its_replay_window_alone() {
    // An older receiver does not know type 4: as for any unknown type it refuses the message
    // in `new_checked`, before the replay check. Type 9 stands for it here.
    let now = ms(0);
    let mut b = SyncSession::new(cfg(2), now);
    let mut m = conns_message(7, 5, None);
    m[5] = 9;
    assert_eq!(b.handle_message(now, &m).err(), Some(Refused::Type));
    assert!(b.handle_message(now, &conns_message(7, 5, None)).is_ok());
    // The IPv4 stream a newer master sends has no gap for the Conns6 messages between its
    // messages (they are numbered apart), so an older backup sees no loss in its bulk resync.
    let mut master = SyncSession::new(cfg(7), now);
    master.set_master(now, true);
    master.queue(now, &[rec(1)]);
    master.flush();
    master.queue6(now, &[rec6(1)]);
    master.flush();
    master.queue(now, &[rec(2)]);
    master.flush();
    let seqs: Vec<_> = std::iter::from_fn(|| master.poll_transmit())
        .map(|x| {
            let v = Message::new_checked(&x).unwrap();
            (v.kind(), v.sequence())
        })
        .filter(|(k, _)| *k == MessageType::Conns)
        .collect();
    assert_eq!(seqs, [(MessageType::Conns, 1), (MessageType::Conns, 2)]);
}

#[test]
fn a_flows_confirmed_record_never_overtakes_its_unconfirmed_one() {
    // Flow 0's handshake ACK (unconfirmed), its data (confirmed), then enough unconfirmed
    // changes of other flows to fill a message: the unconfirmed queue must not leave after the
    // confirmed record (the backup would end with flow 0 unconfirmed). Both families.
    let now = ms(0);
    let mut m = SyncSession::new(cfg(1), now);
    m.set_master(now, true);
    let mut v4 = vec![
        rec(0),
        SyncRecord {
            confirmed: true,
            ..rec(0)
        },
    ];
    v4.extend((1..60).map(rec));
    m.queue(now, &v4);
    let mut v6 = vec![
        rec6(0),
        SyncRecord6 {
            confirmed: true,
            ..rec6(0)
        },
    ];
    v6.extend((1..30).map(rec6));
    m.queue6(now, &v6);
    m.flush();
    let mut b = SyncSession::new(cfg(2), now);
    let (mut last4, mut last6) = (None, None);
    while let Some(x) = m.poll_transmit() {
        match b.handle_message(now, &x).unwrap() {
            Incoming::Records(rs) => {
                for r in rs.filter(|r| r.key == rec(0).key) {
                    last4 = Some(r.confirmed);
                }
            }
            Incoming::Records6(rs) => {
                for r in rs.filter(|r| r.key == rec6(0).key) {
                    last6 = Some(r.confirmed);
                }
            }
            Incoming::Handled(_) => {}
        }
    }
    assert_eq!((last4, last6), (Some(true), Some(true)));
}

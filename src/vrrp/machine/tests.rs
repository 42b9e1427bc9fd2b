//! The instance rules with a virtual clock: a tiny in-memory LAN that delivers every advert at
//! once to every other running instance.

use super::*;
use crate::vrrp::config::{InstanceConfig, VirtualIp};
use std::net::Ipv4Addr;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 14));
const C: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100));

/// `payload` in the IP header the kernel would put around it, either family.
fn wrap(src: IpAddr, dst: IpAddr, ttl: u8, payload: &[u8], out: &mut Vec<u8>) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => wire::wrap_ipv4(s, d, ttl, payload, out),
        (IpAddr::V6(s), IpAddr::V6(d)) => wire::wrap_ipv6(s, d, ttl, payload, out),
        _ => panic!("mixed families {src} {dst}"),
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

fn cfg(priority: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new("VI_1", "eth0", 51);
    c.priority = priority;
    c.vips = vec![VirtualIp {
        addr: VIP,
        prefix: 32,
        dev: None,
        label: None,
    }];
    c
}

fn v3(priority: u8, advert_int_ms: u64) -> InstanceConfig {
    let mut c = cfg(priority);
    c.version = Version::V3;
    c.advert_int = Duration::from_millis(advert_int_ms);
    c
}

/// One transition seen on the LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    at: Instant,
    node: usize,
    to: State,
    reason: &'static str,
}

/// Instances on one link, a clock, and what happened.
struct Lan {
    nodes: Vec<Instance>,
    up: Vec<bool>,
    now: Instant,
    transitions: Vec<Seen>,
    /// (time, sender, priority) of every advert sent.
    adverts: Vec<(Instant, usize, u8)>,
    garps: Vec<(Instant, usize, u32)>,
    refused: Vec<Refusal>,
}

impl Lan {
    fn new(cfgs: &[(InstanceConfig, IpAddr)]) -> Lan {
        Lan {
            nodes: cfgs.iter().map(|(c, a)| Instance::new(c, *a)).collect(),
            up: vec![false; cfgs.len()],
            now: Instant::ZERO,
            transitions: Vec::new(),
            adverts: Vec::new(),
            garps: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn start(&mut self, i: usize) {
        self.up[i] = true;
        self.nodes[i].start(self.now);
        self.drain();
    }

    /// The node dies without a word (SIGKILL).
    fn crash(&mut self, i: usize) {
        self.up[i] = false;
    }

    fn shutdown(&mut self, i: usize) {
        self.nodes[i].shutdown(self.now);
        self.drain();
        self.up[i] = false;
    }

    fn with(&mut self, i: usize, f: impl FnOnce(&mut Instance, Instant)) {
        f(&mut self.nodes[i], self.now);
        self.drain();
    }

    /// Executes every pending action, delivering adverts to the other running nodes.
    fn drain(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.nodes.len() {
                while let Some(action) = self.nodes[i].poll_action() {
                    any = true;
                    match action {
                        Action::Transition { to, reason, .. } => self.transitions.push(Seen {
                            at: self.now,
                            node: i,
                            to,
                            reason,
                        }),
                        Action::SendAdvert { priority } => {
                            self.adverts.push((self.now, i, priority));
                            if self.up[i] {
                                self.deliver(i, priority);
                            }
                        }
                        Action::GarpBurst { repeat } => self.garps.push((self.now, i, repeat)),
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    fn deliver(&mut self, from: usize, priority: u8) {
        let mut payload = Vec::new();
        let mut pkt = Vec::new();
        let sender = &self.nodes[from];
        let dsts = sender.destinations().to_vec();
        for dst in dsts {
            self.nodes[from].build_advert(priority, dst, &mut payload);
            wrap(self.nodes[from].src(), dst, 255, &payload, &mut pkt);
            for j in 0..self.nodes.len() {
                if j != from && self.up[j] {
                    if let Err(r) = self.nodes[j].handle_advert(self.now, &pkt) {
                        self.refused.push(r);
                    }
                }
            }
        }
    }

    /// Runs every timer up to `end`, then sets the clock to `end`.
    fn run_until(&mut self, end: Instant) {
        loop {
            let next = (0..self.nodes.len())
                .filter(|&i| self.up[i])
                .filter_map(|i| self.nodes[i].poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for i in 0..self.nodes.len() {
                        if self.up[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now)
                        {
                            self.nodes[i].handle_timeout(self.now);
                        }
                    }
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn state(&self, i: usize) -> State {
        self.nodes[i].state()
    }

    /// When node `i` last became MASTER.
    fn mastered_at(&self, i: usize) -> Option<Instant> {
        self.transitions
            .iter()
            .rev()
            .find(|s| s.node == i && s.to == State::Master)
            .map(|s| s.at)
    }

    fn masters(&self) -> usize {
        (0..self.nodes.len())
            .filter(|&i| self.up[i] && self.state(i) == State::Master)
            .count()
    }
}

// ---- timing ----

#[test]
fn lone_backup_becomes_master_after_three_intervals_and_skew() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.start(0);
    assert_eq!(lan.state(0), State::Backup);
    assert_eq!(lan.transitions[0].reason, reason::INIT);
    // 3 × 1 s + (256 − 100)/256 s = 3.609375 s, in whole milliseconds.
    assert_eq!(lan.nodes[0].poll_timeout(), Some(ms(3609)));
    lan.run_until(ms(3608));
    assert_eq!(lan.state(0), State::Backup);
    lan.run_until(ms(3609));
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.transitions[1].reason, reason::MASTER_DOWN);
    assert_eq!(lan.nodes[0].master(), Some(A));
    assert_eq!(lan.nodes[0].last_transition(), Some(ms(3609)));
    // The advert goes out before the GARPs (the old master drops the VIPs first).
    assert_eq!(lan.adverts, vec![(ms(3609), 0, 100)]);
    assert_eq!(lan.garps, vec![(ms(3609), 0, 5)]);
    // Then one advert per interval.
    lan.run_until(ms(6609));
    let times: Vec<u64> = lan.adverts.iter().map(|a| a.0.total_millis()).collect();
    assert_eq!(times, [3609, 4609, 5609, 6609]);
}

#[test]
fn owner_is_master_at_once_and_keeps_255() {
    let mut lan = Lan::new(&[(cfg(255), A)]);
    lan.start(0);
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.transitions[0].reason, reason::OWNER);
    lan.with(0, |i, now| i.set_priority_delta(now, -50));
    assert_eq!(lan.nodes[0].priority(), 255);
}

#[test]
fn higher_priority_wins_the_election_and_backup_waits() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(50), B)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(20_000));
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.state(1), State::Backup);
    assert_eq!(lan.mastered_at(0), Some(ms(3609)));
    assert_eq!(lan.nodes[1].master(), Some(A));
    assert_eq!(lan.nodes[1].master_priority(), Some(100));
    assert!(lan.refused.is_empty(), "{:?}", lan.refused);
    // The backup's deadline is always the last advert + 3 s + (256 − 50)/256 s.
    let last = lan.adverts.last().unwrap().0;
    assert_eq!(
        lan.nodes[1].poll_timeout(),
        Some(last + Duration::from_millis(3804))
    );
}

#[test]
fn crashed_master_is_replaced_after_master_down_interval() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(50), B)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(10_000));
    let last = lan.adverts.last().unwrap().0;
    lan.crash(0);
    lan.run_until(ms(30_000));
    assert_eq!(lan.state(1), State::Master);
    // 3 × 1 s + 206/256 s = 3.8046875 s after the last advert.
    assert_eq!(lan.mastered_at(1), Some(last + Duration::from_millis(3804)));
}

#[test]
fn shutdown_sends_priority_zero_and_backup_takes_over_after_skew() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(50), B)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(10_100));
    lan.shutdown(0);
    assert_eq!(lan.adverts.last(), Some(&(ms(10_100), 0, 0)));
    assert_eq!(lan.state(0), State::Init);
    assert_eq!(lan.transitions.last().unwrap().reason, reason::SHUTDOWN);
    assert_eq!(lan.nodes[0].poll_timeout(), None);
    lan.run_until(ms(20_000));
    // Skew only: 206/256 s.
    assert_eq!(lan.mastered_at(1), Some(ms(10_100 + 804)));
}

#[test]
fn v3_backup_learns_the_masters_interval() {
    // The master advertises every 100 ms; the backup is configured with 1 s.
    let mut lan = Lan::new(&[(v3(100, 100), A), (v3(50, 1000), B)]);
    lan.start(0);
    // A alone first: 3 × 100 ms + 156 × 100/256 ms = 360.9375 ms.
    assert_eq!(lan.nodes[0].poll_timeout(), Some(ms(360)));
    lan.run_until(ms(1000));
    assert_eq!(lan.state(0), State::Master);
    lan.start(1);
    lan.run_until(ms(2000));
    assert!(
        lan.refused.is_empty(),
        "v3 takes another interval: {:?}",
        lan.refused
    );
    assert_eq!(lan.nodes[1].master_advert_int(), Duration::from_millis(100));
    let last = lan.adverts.last().unwrap().0;
    lan.crash(0);
    lan.run_until(ms(5000));
    // 3 × 100 ms + 206 × 100/256 ms = 380.46875 ms.
    assert_eq!(lan.mastered_at(1), Some(last + Duration::from_millis(380)));
    // As master it advertises at its own interval again.
    assert_eq!(lan.nodes[1].master_advert_int(), Duration::from_secs(1));
}

// ---- preemption ----

#[test]
fn higher_priority_backup_preempts_a_lower_master() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(50), B)]);
    lan.start(1);
    lan.run_until(ms(10_000));
    assert_eq!(lan.state(1), State::Master);
    lan.start(0);
    lan.run_until(ms(20_000));
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.state(1), State::Backup);
    // A ignores B's lower adverts, so its first master-down timer simply runs out.
    assert_eq!(lan.mastered_at(0), Some(ms(10_000 + 3609)));
    let b_back = lan.transitions.iter().rev().find(|s| s.node == 1).unwrap();
    assert_eq!(
        (b_back.to, b_back.reason),
        (State::Backup, reason::HIGHER_PRIORITY)
    );
    assert_eq!(b_back.at, ms(13_609));
    assert_eq!(lan.masters(), 1);
}

#[test]
fn nopreempt_backup_leaves_a_lower_master_alone() {
    let mut a = cfg(100);
    a.preempt = false;
    let mut lan = Lan::new(&[(a, A), (cfg(50), B)]);
    lan.start(1);
    lan.run_until(ms(10_000));
    lan.start(0);
    lan.run_until(ms(60_000));
    assert_eq!(lan.state(0), State::Backup);
    assert_eq!(lan.state(1), State::Master);
    // It still takes over when the master goes.
    lan.shutdown(1);
    lan.run_until(ms(70_000));
    assert_eq!(lan.state(0), State::Master);
}

#[test]
fn preempt_delay_postpones_preemption() {
    let mut a = cfg(100);
    a.preempt_delay = Duration::from_secs(10);
    let mut lan = Lan::new(&[(a, A), (cfg(50), B)]);
    lan.start(1);
    lan.run_until(ms(10_000));
    lan.start(0);
    lan.run_until(ms(20_000));
    assert_eq!(lan.state(0), State::Backup, "still within the delay");
    lan.run_until(ms(40_000));
    assert_eq!(lan.state(0), State::Master);
    // B advertises at k + 0.804 s. The delay starts with its first advert after A started
    // (10.804 s) and ends at 20.804 s; that advert and the later ones are ignored, so the
    // master-down timer armed by the last accepted one (19.804 s) runs out 3.609 s later.
    assert_eq!(lan.mastered_at(0), Some(ms(19_804 + 3609)));
}

#[test]
fn equal_priority_higher_address_wins() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(100), B)]);
    lan.start(0);
    lan.run_until(ms(10_000));
    assert_eq!(lan.state(0), State::Master);
    lan.start(1);
    lan.run_until(ms(20_000));
    // A backup accepts adverts of its own priority (keepalived: prio >= ours), whatever the
    // address: the running master stays.
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.state(1), State::Backup);
    // If both become master at once (split brain healed), the higher address keeps it.
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(100), B)]);
    lan.start(0);
    lan.start(1);
    lan.crash(0);
    lan.crash(1);
    lan.up = vec![true, false];
    lan.run_until(ms(5000));
    lan.up = vec![false, true];
    lan.run_until(ms(10_000));
    assert_eq!(lan.masters(), 1);
    lan.up = vec![true, true];
    lan.run_until(ms(12_000));
    assert_eq!(lan.state(0), State::Backup);
    assert_eq!(lan.state(1), State::Master);
}

/// An advert from `src` with `priority`, as `cfg(_)` expects it.
fn advert_from(src: IpAddr, priority: u8) -> Vec<u8> {
    let mut payload = Vec::new();
    wire::build(
        Version::V2,
        51,
        priority,
        Duration::from_secs(1),
        &[VIP],
        None,
        src,
        G,
        &mut payload,
    );
    let mut pkt = Vec::new();
    wrap(src, G, 255, &payload, &mut pkt);
    pkt
}

#[test]
fn master_answers_a_lower_or_stopping_advert_at_once() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.start(0);
    lan.run_until(ms(4000));
    assert_eq!(lan.state(0), State::Master);
    let now = ms(4100);
    for prio in [50, 0] {
        lan.nodes[0]
            .handle_advert(now, &advert_from(B, prio))
            .unwrap();
        assert_eq!(
            lan.nodes[0].poll_action(),
            Some(Action::SendAdvert { priority: 100 })
        );
        assert_eq!(lan.nodes[0].poll_action(), None);
        assert_eq!(
            lan.nodes[0].poll_timeout(),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(lan.state(0), State::Master);
    }
    // The same priority from a higher address wins; from a lower one it is answered.
    lan.nodes[0]
        .handle_advert(now, &advert_from(Ipv4Addr::new(192, 168, 1, 5).into(), 100))
        .unwrap();
    assert_eq!(
        lan.nodes[0].poll_action(),
        Some(Action::SendAdvert { priority: 100 })
    );
    lan.nodes[0]
        .handle_advert(now, &advert_from(C, 100))
        .unwrap();
    assert_eq!(
        lan.nodes[0].poll_action(),
        Some(Action::Transition {
            from: State::Master,
            to: State::Backup,
            reason: reason::HIGHER_PRIORITY
        })
    );
    assert_eq!(lan.nodes[0].master(), Some(C));
    assert_eq!(
        lan.nodes[0].poll_timeout(),
        Some(now + Duration::from_millis(3609))
    );
}

#[test]
fn backup_priority_zero_shortens_the_wait_to_the_skew() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.start(0);
    lan.nodes[0]
        .handle_advert(ms(1000), &advert_from(B, 0))
        .unwrap();
    assert_eq!(lan.nodes[0].poll_timeout(), Some(ms(1609)));
}

#[test]
fn two_owners_one_steps_down() {
    let mut lan = Lan::new(&[(cfg(255), A)]);
    lan.start(0);
    lan.nodes[0]
        .handle_advert(ms(10), &advert_from(B, 255))
        .unwrap();
    lan.drain();
    assert_eq!(lan.state(0), State::Backup);
    assert_eq!(lan.nodes[0].priority(), 254);
}

// ---- tracking ----

#[test]
fn track_weight_moves_mastership_and_back() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(80), B)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(10_000));
    assert_eq!(lan.state(0), State::Master);
    // A script with weight -30 fails on A: 70 < 80, B preempts.
    lan.with(0, |i, now| i.set_priority_delta(now, -30));
    assert_eq!(lan.nodes[0].priority(), 70);
    lan.run_until(ms(20_000));
    assert_eq!(lan.state(1), State::Master);
    assert_eq!(lan.state(0), State::Backup);
    // It recovers: A preempts back.
    lan.with(0, |i, now| i.set_priority_delta(now, 0));
    lan.run_until(ms(30_000));
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.state(1), State::Backup);
    // Clamped to 1..=254.
    lan.with(1, |i, now| i.set_priority_delta(now, -500));
    assert_eq!(lan.nodes[1].priority(), 1);
    lan.with(1, |i, now| i.set_priority_delta(now, 500));
    assert_eq!(lan.nodes[1].priority(), 254);
}

#[test]
fn priority_change_moves_the_backup_deadline_by_the_skew() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.start(0);
    assert_eq!(lan.nodes[0].poll_timeout(), Some(ms(3609)));
    // Priority 200: skew 56/256 s = 218.75 ms.
    lan.with(0, |i, now| i.set_priority_delta(now, 100));
    assert_eq!(lan.nodes[0].poll_timeout(), Some(ms(3609 - 609 + 218)));
}

#[test]
fn fault_from_master_sends_priority_zero_and_recovers_as_backup() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(50), B)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(10_000));
    lan.with(0, |i, now| i.set_fault(now, true));
    assert_eq!(lan.state(0), State::Fault);
    assert_eq!(lan.adverts.last(), Some(&(ms(10_000), 0, 0)));
    assert_eq!(lan.nodes[0].poll_timeout(), None);
    assert_eq!(lan.nodes[0].master(), None);
    lan.run_until(ms(10_804));
    assert_eq!(lan.state(1), State::Master, "priority 0 → skew only");
    // Adverts are ignored in FAULT.
    lan.run_until(ms(15_000));
    assert_eq!(lan.state(0), State::Fault);
    lan.with(0, |i, now| i.set_fault(now, false));
    let last = lan.transitions.last().unwrap();
    assert_eq!(
        (last.to, last.reason),
        (State::Backup, reason::FAULT_CLEARED)
    );
    lan.run_until(ms(30_000));
    assert_eq!(lan.state(0), State::Master, "and preempts again");
}

#[test]
fn fault_before_start_starts_in_fault() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.with(0, |i, now| i.set_fault(now, true));
    assert!(lan.transitions.is_empty());
    lan.start(0);
    assert_eq!(lan.state(0), State::Fault);
    assert_eq!(lan.transitions[0].reason, reason::INIT);
    assert!(lan.nodes[0].is_faulted());
}

#[test]
fn hold_preempt_keeps_a_live_master_until_released() {
    let mut lan = Lan::new(&[(cfg(100), A), (cfg(50), B)]);
    lan.start(1);
    lan.run_until(ms(10_000));
    lan.with(0, |i, now| i.hold_preempt(now, true));
    lan.start(0);
    lan.run_until(ms(30_000));
    assert_eq!(lan.state(0), State::Backup);
    assert_eq!(lan.state(1), State::Master);
    lan.with(0, |i, now| i.hold_preempt(now, false));
    lan.run_until(ms(40_000));
    assert_eq!(lan.state(0), State::Master);
    // The last accepted advert was at 29.804 s.
    assert_eq!(lan.mastered_at(0), Some(ms(29_804 + 3609)));
}

#[test]
fn hold_preempt_does_not_stop_taking_over_from_nobody() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.with(0, |i, now| i.hold_preempt(now, true));
    lan.start(0);
    lan.run_until(ms(5000));
    assert_eq!(lan.state(0), State::Master);
}

// ---- gratuitous ARP ----

#[test]
fn garp_bursts_at_takeover_after_delay_and_on_refresh() {
    let mut c = cfg(100);
    c.garp.master_delay = Duration::from_secs(5);
    c.garp.master_repeat = 3;
    c.garp.master_refresh = Some(Duration::from_secs(60));
    c.garp.master_refresh_repeat = 2;
    let mut lan = Lan::new(&[(c, A)]);
    lan.start(0);
    lan.run_until(ms(3609 + 5000 + 120_000));
    let g: Vec<(u64, u32)> = lan
        .garps
        .iter()
        .map(|g| (g.0.total_millis(), g.2))
        .collect();
    assert_eq!(
        g,
        [(3609, 3), (8609, 3), (68_609, 2), (128_609, 2)],
        "takeover, master_delay, refreshes"
    );
}

#[test]
fn garp_without_delay_is_one_burst() {
    let mut c = cfg(100);
    c.garp.master_delay = Duration::ZERO;
    let mut lan = Lan::new(&[(c, A)]);
    lan.start(0);
    lan.run_until(ms(60_000));
    assert_eq!(lan.garps, vec![(ms(3609), 0, 5)]);
}

// ---- sync groups ----

#[test]
fn sync_to_moves_members_and_group_fault_clears() {
    let mut lan = Lan::new(&[(cfg(100), A)]);
    lan.start(0);
    lan.with(0, |i, now| i.sync_to(now, State::Master));
    assert_eq!(lan.state(0), State::Master);
    assert_eq!(lan.transitions.last().unwrap().reason, reason::SYNC_GROUP);
    lan.with(0, |i, now| i.sync_to(now, State::Master));
    assert_eq!(lan.transitions.len(), 2, "no-op when already there");
    lan.with(0, |i, now| i.sync_to(now, State::Fault));
    assert_eq!(lan.state(0), State::Fault);
    assert_eq!(lan.adverts.last().unwrap().2, 0);
    lan.with(0, |i, now| i.sync_to(now, State::Backup));
    assert_eq!(lan.state(0), State::Backup);
    // Its own fault is not lifted by the group.
    lan.with(0, |i, now| i.set_fault(now, true));
    lan.with(0, |i, now| i.sync_to(now, State::Master));
    assert_eq!(lan.state(0), State::Fault);
}

// ---- refusals ----

/// A valid advert from B to the group for `cfg(100)`, then `edit` applied to the payload
/// (the checksum refreshed unless `keep_csum`).
fn packet(
    version: Version,
    edit: impl FnOnce(&mut Vec<u8>),
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
) -> Vec<u8> {
    let mut payload = Vec::new();
    wire::build(
        version,
        51,
        50,
        Duration::from_secs(1),
        &[VIP],
        None,
        src,
        dst,
        &mut payload,
    );
    edit(&mut payload);
    let mut pkt = Vec::new();
    wrap(src, dst, ttl, &payload, &mut pkt);
    pkt
}

fn refresh_csum(p: &mut [u8], version: Version, src: IpAddr, dst: IpAddr) {
    use crate::wire::checksum;
    p[6] = 0;
    p[7] = 0;
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v4(s, d, wire::PROTOCOL, p.len() as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(s, d, wire::PROTOCOL, p.len() as u32)
        }
        _ => panic!("mixed families"),
    };
    let sum = match version {
        Version::V2 => checksum::data(p),
        Version::V3 => checksum::combine(&[pseudo, checksum::data(p)]),
    };
    p[6..8].copy_from_slice(&(!sum).to_be_bytes());
}

fn refusal(inst_cfg: InstanceConfig, pkt: &[u8]) -> Result<(), Refusal> {
    let mut i = Instance::new(&inst_cfg, A);
    i.start(Instant::ZERO);
    i.handle_advert(Instant::ZERO, pkt)
}

const G: IpAddr = IpAddr::V4(wire::MULTICAST_GROUP);

#[test]
fn valid_adverts_pass() {
    assert_eq!(
        refusal(cfg(100), &packet(Version::V2, |_| {}, B, G, 255)),
        Ok(())
    );
    let mut c = cfg(100);
    c.version = Version::V3;
    assert_eq!(refusal(c, &packet(Version::V3, |_| {}, B, G, 255)), Ok(()));
}

#[test]
fn every_refusal() {
    let v2 = Version::V2;
    let fix = |p: &mut Vec<u8>| refresh_csum(p, Version::V2, B, G);
    let cases: Vec<(Refusal, InstanceConfig, Vec<u8>)> = vec![
        (Refusal::Ttl, cfg(100), packet(v2, |_| {}, B, G, 254)),
        (
            Refusal::Checksum,
            cfg(100),
            packet(v2, |p| p[7] ^= 1, B, G, 255),
        ),
        (
            Refusal::Version,
            {
                let mut c = cfg(100);
                c.version = Version::V3;
                c
            },
            packet(v2, |_| {}, B, G, 255),
        ),
        (
            Refusal::Version,
            cfg(100),
            packet(v2, |p| p[0] = 0x11, B, G, 255),
        ),
        (
            Refusal::Type,
            cfg(100),
            packet(
                v2,
                |p| {
                    p[0] = 0x22;
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (
            Refusal::Truncated,
            cfg(100),
            packet(v2, |p| p.truncate(p.len() - 1), B, G, 255),
        ),
        (
            Refusal::Length,
            cfg(100),
            packet(v2, |p| p.push(0), B, G, 255),
        ),
        (
            Refusal::AuthType,
            cfg(100),
            packet(
                v2,
                |p| {
                    p[4] = wire::AUTH_PASS;
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (
            Refusal::AuthType,
            cfg(100),
            packet(
                v2,
                |p| {
                    p[4] = 7;
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (
            Refusal::Auth,
            {
                let mut c = cfg(100);
                c.auth_pass = Some(*b"1111\0\0\0\0");
                c
            },
            packet(
                v2,
                |p| {
                    p[4] = wire::AUTH_PASS;
                    let n = p.len();
                    p[n - 8..].copy_from_slice(b"2222\0\0\0\0");
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (
            Refusal::Interval,
            cfg(100),
            packet(
                v2,
                |p| {
                    p[5] = 2;
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (
            Refusal::VipList,
            {
                let mut c = cfg(100);
                c.vips.push(VirtualIp {
                    addr: Ipv4Addr::new(192, 168, 1, 101).into(),
                    prefix: 32,
                    dev: None,
                    label: None,
                });
                c
            },
            packet(v2, |_| {}, B, G, 255),
        ),
        (
            Refusal::VipList,
            cfg(100),
            packet(
                v2,
                |p| {
                    p[11] = 99;
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (
            Refusal::Vrid,
            cfg(100),
            packet(
                v2,
                |p| {
                    p[1] = 52;
                    fix(p)
                },
                B,
                G,
                255,
            ),
        ),
        (Refusal::Own, cfg(100), packet(v2, |_| {}, A, G, 255)),
        (
            Refusal::Destination,
            cfg(100),
            packet(v2, |_| {}, B, A, 255),
        ),
        (
            Refusal::Destination,
            {
                let mut c = cfg(100);
                c.unicast_peers = vec![B];
                c
            },
            packet(v2, |_| {}, B, G, 255),
        ),
    ];
    for (want, c, pkt) in cases {
        assert_eq!(refusal(c, &pkt), Err(want), "{want:?}");
    }
    // Not VRRP at all.
    let mut udp = packet(v2, |_| {}, B, G, 255);
    udp[9] = 17;
    assert_eq!(refusal(cfg(100), &udp), Err(Refusal::Protocol));
    assert_eq!(refusal(cfg(100), &udp[..10]), Err(Refusal::Truncated));
}

#[test]
fn v2_password_accepted_and_v3_ignores_auth() {
    let mut c = cfg(100);
    c.auth_pass = Some(*b"1111\0\0\0\0");
    let i = Instance::new(&c, B);
    let mut payload = Vec::new();
    i.build_advert(50, G, &mut payload);
    let mut pkt = Vec::new();
    wrap(B, G, 255, &payload, &mut pkt);
    assert_eq!(refusal(c.clone(), &pkt), Ok(()));
    c.version = Version::V3;
    let i = Instance::new(&c, B);
    i.build_advert(50, G, &mut payload);
    assert_eq!(
        payload.len(),
        wire::advert_len(Version::V3, wire::Family::V4, 1)
    );
    wrap(B, G, 255, &payload, &mut pkt);
    assert_eq!(refusal(c, &pkt), Ok(()));
}

#[test]
fn unicast_accepts_any_ttl_and_checks_the_v3_pseudo_header_with_the_peer() {
    let mut c = v3(100, 1000);
    c.unicast_peers = vec![B];
    let mut b = v3(50, 1000);
    b.unicast_peers = vec![A];
    let sender = Instance::new(&b, B);
    assert_eq!(sender.destinations(), &[A]);
    let mut payload = Vec::new();
    sender.build_advert(50, A, &mut payload);
    let mut pkt = Vec::new();
    wrap(B, A, 64, &payload, &mut pkt);
    assert_eq!(refusal(c.clone(), &pkt), Ok(()));
    // Built for another destination: the pseudo-header differs.
    sender.build_advert(50, C, &mut payload);
    wrap(B, A, 64, &payload, &mut pkt);
    assert_eq!(refusal(c.clone(), &pkt), Err(Refusal::Checksum));
    // Built with the multicast group in the pseudo-header (keepalived's old unicast
    // checksum): accepted, as keepalived's compatibility mode does.
    sender.build_advert(50, G, &mut payload);
    wrap(B, A, 64, &payload, &mut pkt);
    assert_eq!(refusal(c, &pkt), Ok(()));
}

#[test]
fn vips_order_does_not_matter() {
    let extra = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 101));
    let mut c = cfg(100);
    c.vips.push(VirtualIp {
        addr: extra,
        prefix: 32,
        dev: None,
        label: None,
    });
    let mut payload = Vec::new();
    wire::build(
        Version::V2,
        51,
        50,
        Duration::from_secs(1),
        &[extra, VIP],
        None,
        B,
        G,
        &mut payload,
    );
    let mut pkt = Vec::new();
    wrap(B, G, 255, &payload, &mut pkt);
    assert_eq!(refusal(c, &pkt), Ok(()));
}

#[test]
fn state_labels() {
    let all = [State::Init, State::Backup, State::Master, State::Fault];
    let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["INIT", "BACKUP", "MASTER", "FAULT"]);
    let vals: Vec<u8> = all.iter().map(|s| s.as_u8()).collect();
    assert_eq!(vals, [0, 1, 2, 3]);
}

// ---- VRRPv3 over IPv6 ----

const A6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11));
const B6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x14));
const G6: IpAddr = IpAddr::V6(wire::MULTICAST_GROUP6);

fn cfg6(priority: u8) -> InstanceConfig {
    let mut c = cfg(priority);
    c.vips[0].addr = "2001:db8::100".parse().unwrap();
    c.vips[0].prefix = 128;
    c.advert_int = Duration::from_millis(100);
    // An IPv6 instance runs v3 whatever the config says.
    c.version = Version::V2;
    c
}

#[test]
fn ipv6_instances_elect_over_ff02_12_and_fail_over() {
    let mut lan = Lan::new(&[(cfg6(100), A6), (cfg6(50), B6)]);
    assert_eq!(lan.nodes[0].version(), Version::V3);
    assert_eq!(lan.nodes[0].destinations(), &[G6]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(2000));
    assert_eq!((lan.state(0), lan.state(1)), (State::Master, State::Backup));
    assert_eq!(lan.nodes[1].master(), Some(A6));
    assert!(lan.refused.is_empty(), "{:?}", lan.refused);
    // v3 over IPv6: 3 × 0.1 s + (256 − 50) × 0.1 s / 256 after the last advert.
    lan.crash(0);
    let t0 = lan.now;
    lan.run_until(ms(3000));
    assert_eq!(lan.state(1), State::Master);
    let took = lan.mastered_at(1).unwrap().total_millis() - t0.total_millis();
    assert!(took <= 381, "took {took} ms");
    // Equal priorities: the higher link-local address wins.
    let mut lan = Lan::new(&[(cfg6(100), A6), (cfg6(100), B6)]);
    lan.start(0);
    lan.start(1);
    lan.run_until(ms(2000));
    assert_eq!((lan.state(0), lan.state(1)), (State::Backup, State::Master));
}

fn packet6(edit: impl FnOnce(&mut Vec<u8>), src: IpAddr, dst: IpAddr, hops: u8) -> Vec<u8> {
    let mut payload = Vec::new();
    let vip: IpAddr = "2001:db8::100".parse().unwrap();
    wire::build(
        Version::V3,
        51,
        50,
        Duration::from_millis(100),
        &[vip],
        None,
        src,
        dst,
        &mut payload,
    );
    edit(&mut payload);
    let mut pkt = Vec::new();
    wrap(src, dst, hops, &payload, &mut pkt);
    pkt
}

#[test]
fn every_ipv6_refusal() {
    let refuse6 = |c: InstanceConfig, pkt: &[u8]| {
        let mut i = Instance::new(&c, A6);
        i.start(Instant::ZERO);
        i.handle_advert(Instant::ZERO, pkt)
    };
    assert_eq!(refuse6(cfg6(100), &packet6(|_| {}, B6, G6, 255)), Ok(()));
    let global: IpAddr = "2001:db8::14".parse().unwrap();
    // An advert from B6 edited by `edit`, its checksum made right again.
    let resealed = |edit: fn(&mut Vec<u8>)| {
        packet6(
            |p| {
                edit(p);
                refresh_csum(p, Version::V3, B6, G6);
            },
            B6,
            G6,
            255,
        )
    };
    let cases: Vec<(Refusal, Vec<u8>)> = vec![
        (Refusal::Ttl, packet6(|_| {}, B6, G6, 254)),
        (Refusal::Source, packet6(|_| {}, global, G6, 255)),
        (Refusal::Checksum, packet6(|p| p[7] ^= 1, B6, G6, 255)),
        (Refusal::Own, packet6(|_| {}, A6, G6, 255)),
        (Refusal::Destination, packet6(|_| {}, B6, A6, 255)),
        (Refusal::Vrid, packet6(|p| p[1] = 52, B6, G6, 255)),
        (Refusal::Version, resealed(|p| p[0] = 0x21)),
        (Refusal::Type, resealed(|p| p[0] = 0x32)),
        (Refusal::VipList, resealed(|p| p[23] = 0x99)),
        (Refusal::Length, packet6(|p| p.push(0), B6, G6, 255)),
        // An IPv4 advert reaching an IPv6 instance.
        (Refusal::IpHeader, packet(Version::V3, |_| {}, B, G, 255)),
    ];
    for (want, pkt) in cases {
        assert_eq!(refuse6(cfg6(100), &pkt), Err(want), "{want:?}");
    }
    // Unicast: any hop limit, any source scope, the pseudo-header with the peer (or the group).
    let mut c = cfg6(100);
    c.unicast_peers = vec![global];
    assert_eq!(refuse6(c.clone(), &packet6(|_| {}, global, A6, 64)), Ok(()));
    let old_style = packet6(|p| refresh_csum(p, Version::V3, global, G6), global, A6, 64);
    assert_eq!(refuse6(c.clone(), &old_style), Ok(()));
    assert_eq!(
        refuse6(c, &packet6(|_| {}, global, G6, 255)),
        Err(Refusal::Destination)
    );
}

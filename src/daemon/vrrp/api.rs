//! TEMPORARY stand-in for `crate::vrrp::{machine, wire}` (the plan's API, being written by
//! another helper): just enough behaviour to drive the daemon before the real machine lands.
//! Deleted once `crate::vrrp::machine` is merged.
#![allow(dead_code, clippy::collapsible_match)]

use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::vrrp::config::{InstanceConfig, Version};

/// An instance's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started.
    Init,
    /// Waiting for the master to go.
    Backup,
    /// Answering for the VIPs.
    Master,
    /// A tracked interface or script failed.
    Fault,
}

impl State {
    /// keepalived's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What the daemon must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The state changed.
    Transition {
        /// Before.
        from: State,
        /// After.
        to: State,
        /// Why.
        reason: &'static str,
    },
    /// Send one advert with this priority.
    SendAdvert {
        /// Priority to advertise.
        priority: u8,
    },
    /// Send `repeat` gratuitous ARPs per VIP.
    GarpBurst {
        /// ARPs per VIP.
        repeat: u32,
    },
}

/// Why an advert was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than its headers.
    Truncated,
    /// TTL not 255.
    Ttl,
    /// Another virtual router.
    Vrid,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Truncated => "truncated",
            Refusal::Ttl => "ttl",
            Refusal::Vrid => "vrid",
        }
    }
}

/// Builds a VRRP payload (v2 only in this stand-in).
#[allow(clippy::too_many_arguments)]
pub fn build(
    version: Version,
    vrid: u8,
    priority: u8,
    interval: Duration,
    vips: &[Ipv4Addr],
    auth_pass: Option<[u8; 8]>,
    _src: Ipv4Addr,
    _dst: Ipv4Addr,
    out: &mut Vec<u8>,
) {
    out.clear();
    let v = match version {
        Version::V2 => 2u8,
        Version::V3 => 3,
    };
    out.push((v << 4) | 1);
    out.push(vrid);
    out.push(priority);
    out.push(vips.len() as u8);
    out.push(if auth_pass.is_some() { 1 } else { 0 });
    out.push(interval.as_secs().max(1) as u8);
    out.extend_from_slice(&[0, 0]);
    for a in vips {
        out.extend_from_slice(&a.octets());
    }
    out.extend_from_slice(&auth_pass.unwrap_or([0; 8]));
    let sum = crate::wire::checksum::data(out);
    let c = !sum;
    out[6..8].copy_from_slice(&c.to_be_bytes());
}

const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// Stand-in for `crate::vrrp::group::SyncGroup`.
#[derive(Debug)]
pub struct SyncGroup {
    name: String,
    members: Vec<(String, State, bool)>,
    state: State,
}

impl SyncGroup {
    /// A group in INIT.
    pub fn new(cfg: &crate::vrrp::config::SyncGroupConfig) -> SyncGroup {
        SyncGroup {
            name: cfg.name.clone(),
            members: cfg
                .members
                .iter()
                .map(|m| (m.clone(), State::Init, false))
                .collect(),
            state: State::Init,
        }
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Group state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Member names.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.0.as_str())
    }

    /// Records a member's transition; the state every member must follow, if any.
    pub fn handle_transition(&mut self, member: &str, to: State, why: &str) -> Option<State> {
        let m = self.members.iter_mut().find(|m| m.0 == member)?;
        m.1 = to;
        if why == "sync_group" {
            return None;
        }
        m.2 = to == State::Fault;
        if to == State::Init {
            return None;
        }
        if self.members.iter().any(|m| m.2) {
            let changed = self.state != State::Fault;
            self.state = State::Fault;
            return (changed || to != State::Fault).then_some(State::Fault);
        }
        if self.state == to {
            return None;
        }
        self.state = to;
        Some(to)
    }
}

/// A minimal VRRP instance.
#[derive(Debug)]
pub struct Instance {
    vrid: u8,
    base: u8,
    delta: i32,
    src: Ipv4Addr,
    interval: Duration,
    state: State,
    fault: bool,
    master: Option<Ipv4Addr>,
    timer: Option<Instant>,
    last: Option<Instant>,
    actions: std::collections::VecDeque<Action>,
}

impl Instance {
    /// A new instance.
    pub fn new(cfg: &InstanceConfig, src: Ipv4Addr) -> Instance {
        Instance {
            vrid: cfg.vrid,
            base: cfg.priority,
            delta: 0,
            src,
            interval: cfg.advert_int,
            state: State::Init,
            fault: false,
            master: None,
            timer: None,
            last: None,
            actions: Default::default(),
        }
    }

    fn go(&mut self, now: Instant, to: State, reason: &'static str) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.last = Some(now);
        self.actions
            .push_back(Action::Transition { from, to, reason });
        match to {
            State::Master => {
                self.master = Some(self.src);
                self.actions.push_back(Action::SendAdvert {
                    priority: self.priority(),
                });
                self.actions.push_back(Action::GarpBurst { repeat: 5 });
                self.timer = Some(now + self.interval);
            }
            State::Backup => self.timer = Some(now + self.down_interval()),
            _ => self.timer = None,
        }
    }

    fn down_interval(&self) -> Duration {
        self.interval * 3 + self.interval * (256 - self.priority() as u32) / 256
    }

    /// Starts as BACKUP.
    pub fn start(&mut self, now: Instant) {
        if self.fault {
            self.go(now, State::Fault, "start");
        } else {
            self.go(now, State::Backup, "start");
        }
    }

    /// Feeds a received IPv4 packet.
    pub fn handle_advert(&mut self, now: Instant, ip: &[u8]) -> Result<(), Refusal> {
        let ihl = (ip.first().ok_or(Refusal::Truncated)? & 0xf) as usize * 4;
        if ip.len() < ihl + 8 || ihl < 20 {
            return Err(Refusal::Truncated);
        }
        if ip[8] != 255 {
            return Err(Refusal::Ttl);
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let v = &ip[ihl..];
        if v[1] != self.vrid {
            return Err(Refusal::Vrid);
        }
        let prio = v[2];
        match self.state {
            State::Backup => {
                if prio == 0 {
                    self.timer = Some(now + self.interval / 4);
                } else if prio >= self.priority() {
                    self.master = Some(src);
                    self.timer = Some(now + self.down_interval());
                }
            }
            State::Master => {
                if prio > self.priority() || (prio == self.priority() && src > self.src) {
                    self.master = Some(src);
                    self.go(now, State::Backup, "higher priority advert");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(t) = self.timer else { return };
        if now < t {
            return;
        }
        match self.state {
            State::Backup => self.go(now, State::Master, "master down"),
            State::Master => {
                self.actions.push_back(Action::SendAdvert {
                    priority: self.priority(),
                });
                self.timer = Some(now + self.interval);
            }
            _ => self.timer = None,
        }
    }

    /// Next timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// Next action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Tracked failure.
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        self.fault = fault;
        if fault {
            if self.state == State::Master {
                self.actions.push_back(Action::SendAdvert { priority: 0 });
            }
            self.go(now, State::Fault, "fault");
        } else if self.state == State::Fault {
            self.go(now, State::Backup, "fault cleared");
        }
    }

    /// Track weights.
    pub fn set_priority_delta(&mut self, _now: Instant, delta: i32) {
        self.delta = delta;
    }

    /// Sync's bulk resync.
    pub fn hold_preempt(&mut self, _now: Instant, _hold: bool) {}

    /// Priority 0 advert when MASTER.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state == State::Master {
            self.actions.push_back(Action::SendAdvert { priority: 0 });
        }
        self.go(now, State::Init, "shutdown");
        self.timer = None;
    }

    /// Moved by the sync group.
    pub fn sync_to(&mut self, now: Instant, to: State) {
        match to {
            State::Fault => self.go(now, State::Fault, "sync_group"),
            State::Master if self.state == State::Backup => {
                self.go(now, State::Master, "sync_group")
            }
            State::Backup if self.state != State::Backup && !self.fault => {
                self.go(now, State::Backup, "sync_group")
            }
            _ => {}
        }
    }

    /// Where adverts go.
    pub fn destinations(&self) -> &[Ipv4Addr] {
        std::slice::from_ref(&GROUP)
    }

    /// Writes an advert.
    pub fn build_advert(&self, priority: u8, dst: Ipv4Addr, out: &mut Vec<u8>) -> usize {
        build(
            Version::V2,
            self.vrid,
            priority,
            self.interval,
            &[],
            None,
            self.src,
            dst,
            out,
        );
        out.len()
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Effective priority.
    pub fn priority(&self) -> u8 {
        if self.base == 255 {
            return 255;
        }
        (self.base as i32 + self.delta).clamp(1, 254) as u8
    }

    /// Current master.
    pub fn master(&self) -> Option<Ipv4Addr> {
        self.master
    }

    /// Last transition.
    pub fn last_transition(&self) -> Option<Instant> {
        self.last
    }
}

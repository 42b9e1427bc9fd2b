//! The sans-IO state machine of one VRRP instance (RFC 3768 / RFC 5798 as keepalived 2.2 runs
//! them): received adverts, timer expiries and tracking changes in, [`Action`]s out, time
//! passed in as [`Instant`]. It opens no socket and reads no clock; the driver
//! (`crate::daemon::vrrp`) sends the adverts, answers ARP for the VIPs and runs the scripts.
//!
//! # Rules (keepalived's, from `vrrp.c` / `vrrp_scheduler.c`)
//! - Start: BACKUP, waiting the master-down time `3 × Master_Adver_Interval + Skew`, where
//!   `Skew = (256 − priority) / 256` s in v2 and `(256 − priority) × Master_Adver_Interval / 256`
//!   in v3. Priority 255 (address owner) becomes MASTER at once. `state MASTER` in the config
//!   does not shorten the wait (keepalived only uses it for owners and sync groups).
//! - BACKUP accepts an advert when it runs `nopreempt`, when the advert's priority is ≥ its
//!   own, while a `preempt_delay` runs, or while [`Instance::hold_preempt`] holds it: the
//!   master-down timer restarts (v3 learns the master's interval). A lower-priority advert
//!   is otherwise ignored, so the timer runs out and the higher-priority backup takes over.
//!   Priority 0 (the master is stopping): the timer becomes `Skew`.
//! - MASTER sends an advert every `advert_int`. Receiving priority 0 or a lower priority (or the
//!   same priority from a lower address) it answers with an advert at once; a higher priority
//!   (or the same from a higher address) makes it BACKUP.
//! - Taking over: one advert, then a gratuitous-ARP burst of `garp.master_repeat`, another
//!   after `garp.master_delay` (if not zero), refresh bursts every `garp.master_refresh`.
//! - FAULT (a tracked interface down, a weight-0 script failing, a sync-group peer in fault):
//!   a MASTER sends priority 0 first. Leaving FAULT is BACKUP with a fresh master-down timer.
//! - Stop ([`Instance::shutdown`]): a MASTER sends priority 0 so a backup takes over after
//!   `Skew` instead of the whole master-down time.
//!
//! Deviations: keepalived restarts the master's advert timer on every received packet; here
//! only when an advert was sent in answer. A v3 advert interval of 0 is taken as 1 cs.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::net::IpAddr;

use super::config::{Garp, InstanceConfig, Version};
use super::wire::{self, Advert, Family, IpInfo, Refusal};
use crate::time::{Duration, Instant};

/// The state of an instance (keepalived's names, [`as_str`](State::as_str)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped.
    Init,
    /// Waiting for the master to go away.
    Backup,
    /// Answering for the VIPs and advertising.
    Master,
    /// A tracked interface or script is down: neither answers nor advertises.
    Fault,
}

impl State {
    /// `"INIT"`, `"BACKUP"`, `"MASTER"`, `"FAULT"` (keepalived's log and notify words).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }

    /// The metric value of `tunlb_vrrp_state`: 0 init, 1 backup, 2 master, 3 fault.
    pub const fn as_u8(self) -> u8 {
        match self {
            State::Init => 0,
            State::Backup => 1,
            State::Master => 2,
            State::Fault => 3,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened (the `reason` of [`Action::Transition`]).
pub mod reason {
    /// [`Instance::start`](super::Instance::start): BACKUP or FAULT at start.
    pub const INIT: &str = "init";
    /// Priority 255: MASTER at once (at start or when a fault clears).
    pub const OWNER: &str = "owner";
    /// The master-down timer ran out (no master, a lower-priority one, or priority 0 seen).
    pub const MASTER_DOWN: &str = "master_down";
    /// A MASTER received a higher-priority advert (or the same from a higher address).
    pub const HIGHER_PRIORITY: &str = "higher_priority";
    /// A tracked interface or script went down.
    pub const FAULT: &str = "fault";
    /// The fault cleared.
    pub const FAULT_CLEARED: &str = "fault_cleared";
    /// [`Instance::shutdown`](super::Instance::shutdown).
    pub const SHUTDOWN: &str = "shutdown";
    /// Moved by its sync group ([`Instance::sync_to`](super::Instance::sync_to)).
    pub const SYNC_GROUP: &str = "sync_group";
}

/// What the driver must do, in order, after feeding the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// The state changed: log `(NAME) Entering TO STATE`, run notify scripts, announce the
    /// VIPs (MASTER) or stop announcing them (any other state; INIT means stopped).
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// A [`reason`] constant.
        reason: &'static str,
    },
    /// Send one advert with this priority (0 = stopping) to the group or every unicast peer:
    /// [`Instance::build_advert`] writes it.
    SendAdvert {
        /// The priority to advertise.
        priority: u8,
    },
    /// Send `repeat` gratuitous ARPs for each VIP (`garp.interval` apart).
    GarpBurst {
        /// ARPs per VIP.
        repeat: u32,
    },
}

/// One VRRP instance. See the [module docs](self) for the rules.
#[derive(Debug)]
pub struct Instance {
    name: String,
    vrid: u8,
    version: Version,
    base_priority: u8,
    /// The configured interval, normalised to what goes on the wire.
    adver_int: Duration,
    preempt: bool,
    preempt_delay: Duration,
    auth_pass: Option<[u8; wire::AUTH_LEN]>,
    vips: Vec<IpAddr>,
    peers: Vec<IpAddr>,
    /// The multicast group of the instance's family (224.0.0.18 or ff02::12).
    group: IpAddr,
    garp: Garp,
    src: IpAddr,

    state: State,
    delta: i32,
    effective: u8,
    master_adver_int: Duration,
    master: Option<IpAddr>,
    master_priority: Option<u8>,
    /// BACKUP: the master-down deadline; MASTER: the next advert.
    deadline: Option<Instant>,
    /// When a running preempt_delay allows preempting.
    preempt_at: Option<Instant>,
    garp_delay_at: Option<Instant>,
    garp_refresh_at: Option<Instant>,
    fault: bool,
    group_fault: bool,
    hold: bool,
    last_transition: Option<Instant>,
    actions: VecDeque<Action>,
}

/// The interval as it goes on the wire (v2 whole seconds, v3 centiseconds).
fn wire_interval(version: Version, interval: Duration) -> Duration {
    let field = wire::interval_field(version, interval) as u64;
    match version {
        Version::V2 => Duration::from_secs(field),
        Version::V3 => Duration::from_millis(field * 10),
    }
}

impl Instance {
    /// An instance in INIT for `cfg`, advertising from `src` (`unicast_src`, else the
    /// interface's primary IPv4 address or, for an IPv6 instance, its link-local address).
    /// `src`'s family is the instance's: an IPv6 instance runs VRRPv3 whatever `cfg` says,
    /// and VIPs and peers of the other family are left out (the config refuses them).
    pub fn new(cfg: &InstanceConfig, src: IpAddr) -> Instance {
        let family = Family::of(src);
        let version = match family {
            Family::V4 => cfg.version,
            Family::V6 => Version::V3,
        };
        let adver_int = wire_interval(version, cfg.advert_int);
        let base_priority = cfg.priority.max(1);
        Instance {
            name: cfg.name.clone(),
            vrid: cfg.vrid,
            version,
            base_priority,
            adver_int,
            preempt: cfg.preempt,
            preempt_delay: cfg.preempt_delay,
            // keepalived ignores auth in v3.
            auth_pass: match version {
                Version::V2 => cfg.auth_pass,
                Version::V3 => None,
            },
            vips: cfg
                .vips
                .iter()
                .map(|v| v.addr)
                .filter(|a| Family::of(*a) == family)
                .take(wire::MAX_ADDRS)
                .collect(),
            peers: cfg
                .unicast_peers
                .iter()
                .copied()
                .filter(|a| Family::of(*a) == family)
                .collect(),
            group: family.group(),
            garp: cfg.garp,
            src,
            state: State::Init,
            delta: 0,
            effective: base_priority,
            master_adver_int: adver_int,
            master: None,
            master_priority: None,
            deadline: None,
            preempt_at: None,
            garp_delay_at: None,
            garp_refresh_at: None,
            fault: false,
            group_fault: false,
            hold: false,
            last_transition: None,
            actions: VecDeque::new(),
        }
    }

    // ---- inputs ----

    /// Starts the instance: FAULT when a fault is set, MASTER at once for priority 255,
    /// BACKUP otherwise. No-op unless in INIT.
    pub fn start(&mut self, now: Instant) {
        if self.state != State::Init {
            return;
        }
        self.master_adver_int = self.adver_int;
        if self.faulted() {
            self.transition(now, State::Fault, reason::INIT);
        } else if self.is_owner() {
            self.become_master(now, reason::OWNER);
        } else {
            self.enter_backup(now, reason::INIT);
        }
    }

    /// Validates a whole received IPv4 or IPv6 packet against this instance (every rule of
    /// [`wire`], then those of [`handle_payload`](Self::handle_payload)) and acts on it.
    pub fn handle_advert(&mut self, now: Instant, ip_packet: &[u8]) -> Result<(), Refusal> {
        let (ip, payload) = wire::check_any(ip_packet)?;
        self.handle_payload(now, ip, payload)
    }

    /// Validates a received advert (`payload`, the VRRP message, with `ip`, what its IP
    /// header said: the daemon's IPv6 socket gives them apart) against this instance: the
    /// instance's family, VRID, TTL / hop limit 255 and (IPv6) a link-local source on
    /// multicast, our own address, version, v2 auth type / password / interval, type, VIP
    /// list, checksum, multicast vs unicast; then acts on it. Adverts arriving in INIT or
    /// FAULT are validated, then ignored.
    pub fn handle_payload(
        &mut self,
        now: Instant,
        ip: IpInfo,
        payload: &[u8],
    ) -> Result<(), Refusal> {
        let family = Family::of(self.src);
        if Family::of(ip.src) != family || Family::of(ip.dst) != family {
            return Err(Refusal::IpHeader);
        }
        if payload.len() > 1 && payload[1] != self.vrid {
            return Err(Refusal::Vrid);
        }
        let advert = Advert::new_checked_in(payload, family)?;
        if advert.vrid() != self.vrid {
            return Err(Refusal::Vrid);
        }
        let unicast = !self.peers.is_empty();
        if !unicast && ip.ttl != wire::TTL {
            return Err(Refusal::Ttl);
        }
        if let (false, IpAddr::V6(src)) = (unicast, ip.src) {
            if !src.is_unicast_link_local() {
                return Err(Refusal::Source);
            }
        }
        if ip.src == self.src {
            return Err(Refusal::Own);
        }
        if advert.version() != self.version {
            return Err(Refusal::Version);
        }
        if self.version == Version::V2 {
            let want = if self.auth_pass.is_some() {
                wire::AUTH_PASS
            } else {
                wire::AUTH_NONE
            };
            if advert.auth_type() != want {
                return Err(Refusal::AuthType);
            }
            if let Some(pass) = &self.auth_pass {
                if advert.auth_data() != Some(pass) {
                    return Err(Refusal::Auth);
                }
            }
            if advert.interval() != self.adver_int {
                return Err(Refusal::Interval);
            }
        }
        if advert.kind() != wire::TYPE_ADVERT {
            return Err(Refusal::Type);
        }
        if advert.count() as usize != self.vips.len() {
            return Err(Refusal::VipList);
        }
        // keepalived's unicast v3 compatibility: older releases put the multicast group in
        // the pseudo-header of unicast adverts too; it accepts both, and so do we.
        let csum_ok = advert.verify_checksum(ip.src, ip.dst)
            || (unicast && advert.verify_checksum(ip.src, self.group));
        if !csum_ok {
            return Err(Refusal::Checksum);
        }
        if ip.dst.is_multicast() == unicast {
            return Err(Refusal::Destination);
        }
        if !self.vips.iter().all(|v| advert.addrs().any(|a| a == *v)) {
            return Err(Refusal::VipList);
        }
        match self.state {
            State::Backup => self.backup_rx(now, ip.src, &advert),
            State::Master => self.master_rx(now, ip.src, &advert),
            State::Init | State::Fault => {}
        }
        Ok(())
    }

    /// Runs what is due at `now`: BACKUP's master-down timer, MASTER's advert and GARP timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Backup => {
                if self.deadline.is_some_and(|d| d <= now) {
                    self.become_master(now, reason::MASTER_DOWN);
                }
            }
            State::Master => {
                if self.garp_delay_at.is_some_and(|t| t <= now) {
                    self.garp_delay_at = None;
                    self.garp_burst(self.garp.master_repeat);
                }
                if self.garp_refresh_at.is_some_and(|t| t <= now) {
                    self.garp_refresh_at = self.garp.master_refresh.map(|r| now + r);
                    self.garp_burst(self.garp.master_refresh_repeat);
                }
                if self.deadline.is_some_and(|d| d <= now) {
                    self.send_advert(now);
                }
            }
            State::Init | State::Fault => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Backup => self.deadline,
            State::Master => [self.deadline, self.garp_delay_at, self.garp_refresh_at]
                .into_iter()
                .flatten()
                .min(),
            State::Init | State::Fault => None,
        }
    }

    /// The next action for the driver, in the order they arose.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Sets or clears the instance's own fault (a tracked interface down, a weight-0 script
    /// failing). A MASTER sends priority 0 and goes to FAULT; clearing it goes to BACKUP
    /// (MASTER at once for priority 255). Before [`start`](Self::start) it is only recorded.
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        self.fault = fault;
        self.apply_fault(now, reason::FAULT, reason::FAULT_CLEARED);
    }

    /// Sets the sum of the weights of the tracked interfaces and scripts: the effective
    /// priority is `priority + delta` clamped to 1..=254; priority 255 (owner) never changes.
    /// A BACKUP's master-down deadline moves with its skew, as keepalived does.
    pub fn set_priority_delta(&mut self, now: Instant, delta: i32) {
        let _ = now;
        self.delta = delta;
        if self.is_owner() {
            return;
        }
        let new = (self.base_priority as i32 + delta).clamp(1, 254) as u8;
        if new == self.effective {
            return;
        }
        let old_down = self.down_interval();
        self.effective = new;
        let new_down = self.down_interval();
        if self.state == State::Backup {
            if let Some(d) = self.deadline {
                let ms = d.total_millis() + new_down.as_millis() as u64;
                let ms = ms.saturating_sub(old_down.as_millis() as u64);
                self.deadline = Some(Instant::from_millis(ms));
            }
        }
    }

    /// Holds a BACKUP from preempting a live lower-priority master (adverts it would ignore
    /// are accepted) while `hold` is true: the driver holds it until connection sync's bulk
    /// resync is done. A master that goes silent is still taken over.
    pub fn hold_preempt(&mut self, now: Instant, hold: bool) {
        let _ = now;
        self.hold = hold;
    }

    /// Stops the instance: a MASTER sends one advert with priority 0 so a backup takes over
    /// after its skew; the state becomes INIT (nothing announced). [`start`](Self::start) may
    /// run it again.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state == State::Master {
            self.actions.push_back(Action::SendAdvert { priority: 0 });
        }
        if self.state != State::Init {
            self.transition(now, State::Init, reason::SHUTDOWN);
        }
        self.clear_timers();
        self.master = None;
    }

    /// Moves the instance where its sync group goes (see
    /// [`SyncGroup`](super::group::SyncGroup)): MASTER takes over from BACKUP (or from a
    /// group-imposed FAULT), BACKUP leaves MASTER or a group-imposed FAULT, FAULT faults the
    /// instance until the group says otherwise. An instance in its own FAULT, or in INIT,
    /// stays put; a state it is already in is a no-op.
    pub fn sync_to(&mut self, now: Instant, to: State) {
        match to {
            State::Fault => {
                self.group_fault = true;
                self.apply_fault(now, reason::SYNC_GROUP, reason::SYNC_GROUP);
            }
            State::Backup | State::Master => {
                if self.group_fault {
                    self.group_fault = false;
                    if self.fault {
                        return;
                    }
                    if self.state == State::Fault {
                        if to == State::Master {
                            self.become_master(now, reason::SYNC_GROUP);
                        } else {
                            self.enter_backup(now, reason::SYNC_GROUP);
                        }
                        return;
                    }
                }
                match (self.state, to) {
                    (State::Backup, State::Master) => self.become_master(now, reason::SYNC_GROUP),
                    (State::Master, State::Backup) => self.enter_backup(now, reason::SYNC_GROUP),
                    _ => {}
                }
            }
            State::Init => {}
        }
    }

    // ---- outputs and accessors ----

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority (configured + track weights, 1..=254; 255 for an owner).
    pub fn priority(&self) -> u8 {
        self.effective
    }

    /// The configured priority.
    pub fn base_priority(&self) -> u8 {
        self.base_priority
    }

    /// The current master's address: ours in MASTER, the last advertiser seen in BACKUP.
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master => Some(self.src),
            State::Backup => self.master,
            State::Init | State::Fault => None,
        }
    }

    /// The master's last advertised priority (BACKUP), ours in MASTER.
    pub fn master_priority(&self) -> Option<u8> {
        match self.state {
            State::Master => Some(self.effective),
            State::Backup => self.master_priority,
            State::Init | State::Fault => None,
        }
    }

    /// When the state last changed.
    pub fn last_transition(&self) -> Option<Instant> {
        self.last_transition
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The virtual router ID.
    pub fn vrid(&self) -> u8 {
        self.vrid
    }

    /// The VRRP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The address adverts are sent from.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    /// The advertised VIPs (at most 255, in config order).
    pub fn vips(&self) -> &[IpAddr] {
        &self.vips
    }

    /// Where adverts go: the unicast peers, or [`wire::MULTICAST_GROUP`]
    /// ([`wire::MULTICAST_GROUP6`] for an IPv6 instance).
    pub fn destinations(&self) -> &[IpAddr] {
        if self.peers.is_empty() {
            std::slice::from_ref(&self.group)
        } else {
            &self.peers
        }
    }

    /// Our advert interval as it goes on the wire.
    pub fn advert_int(&self) -> Duration {
        self.adver_int
    }

    /// The interval the master-down timer is counted in (v3: learned from the master).
    pub fn master_advert_int(&self) -> Duration {
        self.master_adver_int
    }

    /// Whether the instance's own fault is set.
    pub fn is_faulted(&self) -> bool {
        self.fault
    }

    /// Writes the advert for [`Action::SendAdvert`] to `dst` (one of
    /// [`destinations`](Self::destinations)) into `out`; returns its length.
    pub fn build_advert(&self, priority: u8, dst: IpAddr, out: &mut Vec<u8>) -> usize {
        wire::build(
            self.version,
            self.vrid,
            priority,
            self.adver_int,
            &self.vips,
            self.auth_pass.as_ref(),
            self.src,
            dst,
            out,
        )
    }

    // ---- internals ----

    fn is_owner(&self) -> bool {
        self.base_priority == 255
    }

    fn faulted(&self) -> bool {
        self.fault || self.group_fault
    }

    /// keepalived's skew: v2 `(256 − prio)/256` s, v3 `(256 − prio) × Master_Adver_Interval / 256`.
    fn skew(&self) -> Duration {
        let pri = 256 - self.effective as u64;
        match self.version {
            Version::V2 => Duration::from_micros(pri * 1_000_000 / 256),
            Version::V3 => {
                let centis = self.master_adver_int.as_millis() as u64 / 10;
                Duration::from_micros(pri * centis * 625 / 16)
            }
        }
    }

    /// `3 × Master_Adver_Interval + Skew`.
    fn down_interval(&self) -> Duration {
        self.master_adver_int * 3 + self.skew()
    }

    fn clear_timers(&mut self) {
        self.deadline = None;
        self.preempt_at = None;
        self.garp_delay_at = None;
        self.garp_refresh_at = None;
    }

    fn transition(&mut self, now: Instant, to: State, reason: &'static str) {
        let from = self.state;
        self.state = to;
        self.last_transition = Some(now);
        self.actions
            .push_back(Action::Transition { from, to, reason });
    }

    fn garp_burst(&mut self, repeat: u32) {
        if repeat > 0 && !self.vips.is_empty() {
            self.actions.push_back(Action::GarpBurst { repeat });
        }
    }

    fn send_advert(&mut self, now: Instant) {
        self.actions.push_back(Action::SendAdvert {
            priority: self.effective,
        });
        self.deadline = Some(now + self.adver_int);
    }

    fn become_master(&mut self, now: Instant, reason: &'static str) {
        self.clear_timers();
        self.master_adver_int = self.adver_int;
        // The old master drops the VIPs on our advert before our GARPs go out.
        self.send_advert(now);
        self.transition(now, State::Master, reason);
        self.garp_burst(self.garp.master_repeat);
        if !self.garp.master_delay.is_zero() {
            self.garp_delay_at = Some(now + self.garp.master_delay);
        }
        self.garp_refresh_at = self
            .garp
            .master_refresh
            .map(|r| now + self.garp.master_delay + r);
        self.master = Some(self.src);
        self.master_priority = None;
    }

    fn enter_backup(&mut self, now: Instant, reason: &'static str) {
        self.clear_timers();
        self.deadline = Some(now + self.down_interval());
        self.transition(now, State::Backup, reason);
        self.master = None;
        self.master_priority = None;
    }

    fn apply_fault(
        &mut self,
        now: Instant,
        fault_reason: &'static str,
        clear_reason: &'static str,
    ) {
        match (self.faulted(), self.state) {
            (true, State::Master) => {
                self.actions.push_back(Action::SendAdvert { priority: 0 });
                self.clear_timers();
                self.transition(now, State::Fault, fault_reason);
            }
            (true, State::Backup) => {
                self.clear_timers();
                self.transition(now, State::Fault, fault_reason);
            }
            (false, State::Fault) => {
                self.master_adver_int = self.adver_int;
                if self.is_owner() {
                    self.become_master(now, reason::OWNER);
                } else {
                    self.enter_backup(now, clear_reason);
                }
            }
            _ => {}
        }
    }

    /// A v3 advert's interval becomes Master_Adver_Interval (RFC 5798 §6.4.2).
    fn learn_interval(&mut self, advert: &Advert<'_>) {
        if self.version == Version::V3 {
            self.master_adver_int = advert.interval().max(Duration::from_millis(10));
        }
    }

    fn preempt_delay_running(&self, now: Instant) -> bool {
        !self.preempt_delay.is_zero() && self.preempt_at.is_none_or(|t| t > now)
    }

    fn backup_rx(&mut self, now: Instant, src: IpAddr, advert: &Advert<'_>) {
        let prio = advert.priority();
        if prio == 0 {
            self.deadline = Some(now + self.skew());
            return;
        }
        let accept =
            !self.preempt || prio >= self.effective || self.hold || self.preempt_delay_running(now);
        self.master = Some(src);
        self.master_priority = Some(prio);
        if !accept {
            // Ignored: the master-down timer keeps running, so we preempt when it expires.
            return;
        }
        self.learn_interval(advert);
        self.deadline = Some(now + self.down_interval());
        if !self.preempt_delay.is_zero() {
            if prio >= self.effective {
                self.preempt_at = None;
            } else if self.preempt_at.is_none() {
                self.preempt_at = Some(now + self.preempt_delay);
            }
        }
    }

    fn master_rx(&mut self, now: Instant, src: IpAddr, advert: &Advert<'_>) {
        let prio = advert.priority();
        if prio == 0 {
            // The other one is stopping: show we are here.
            self.send_advert(now);
            return;
        }
        // Addresses of one family compare as the unsigned numbers they are (RFC 5798 §6.4.3).
        let cmp = src.cmp(&self.src);
        if prio == 255 && self.effective == 255 {
            // Two address owners: keepalived 2.2 steps down to 254 and reports the conflict.
            self.base_priority = 254;
            self.effective = 254;
        }
        let higher = prio > self.effective || (prio == self.effective && cmp == Ordering::Greater);
        if higher {
            self.learn_interval(advert);
            self.enter_backup(now, reason::HIGHER_PRIORITY);
            self.master = Some(src);
            self.master_priority = Some(prio);
        } else {
            // A lower priority (or a lower address): force a new election at once.
            self.send_advert(now);
        }
    }
}

#[cfg(test)]
mod tests;

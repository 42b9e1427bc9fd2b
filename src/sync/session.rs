//! [`SyncSession`]: connection sync without IO. Received bytes and the cores' records in,
//! messages to send and records to install out, driven by a [`crate::time::Instant`] the caller
//! passes in.
//!
//! - **Master** ([`SyncSession::set_master`]): [`queue`](SyncSession::queue) takes the cores'
//!   changes; they leave in full messages at once, and what is left [`SessionConfig::flush`]
//!   after it was queued. A BulkRequest starts a *bulk pass*: the whole table, fetched by the
//!   driver from the cores as [`poll_dump`](SyncSession::poll_dump) asks and handed back with
//!   [`push_dump`](SyncSession::push_dump), then a BulkEnd naming the requesters. Every
//!   [`SessionConfig::refresh`] a *refresh pass* re-sends the whole table, paced so that it takes
//!   about half the interval, so a backup's copies of long-lived idle flows never expire.
//! - **Backup**: sends a BulkRequest at start and every [`SessionConfig::bulk_retry`] until a
//!   BulkEnd naming it arrives (if a sequence gap showed a lost message meanwhile, it asks
//!   again at once), or [`SessionConfig::bulk_deadline`] passes: then it is
//!   [ready](SyncSession::is_ready) (the VRRP driver holds preemption until then). Received
//!   records are handed to the caller ([`Incoming::Records`]) to install.
//!
//! Every received message passes [`Message::new_checked`], [`Message::verify`] and a replay
//! window per sender (64 sequence numbers, as IPsec's); a refusal is returned as [`Refused`].
//!
//! IPv6 flows go the same way beside the IPv4 ones: [`queue6`](SyncSession::queue6),
//! [`push_dump6`](SyncSession::push_dump6) (before the pass's last
//! [`push_dump`](SyncSession::push_dump), which ends it), [`Incoming::Records6`]. They leave in
//! Conns6 messages numbered as a stream of their own, under the sender id
//! [`wire::stream6`]: a receiver keeps a replay window for each stream, and a gap in either
//! during the bulk resync makes a backup ask again.

use std::collections::VecDeque;

use super::wire::{
    self, Body, Header, Key, Message, MessageType, Policy, Records, Records6, Refused, WireKey,
};
use crate::director::conn::{SyncRecord, SyncRecord6};
use crate::time::{Duration, Instant};

/// How a session behaves; [`SessionConfig::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// `lvs_sync_daemon ... id N`: messages with another id are refused.
    pub syncid: u8,
    /// The longest message sent or accepted (UDP payload bytes).
    pub maxlen: usize,
    /// Authenticate with HMAC-SHA256 when set; refuse messages without a good MAC.
    pub key: Option<Key>,
    /// Our sender id (random per start, so a restarted director starts a new replay window).
    pub sender: u32,
    /// A change waits at most this long for a full message (20 ms).
    pub flush: Duration,
    /// A backup repeats its BulkRequest this often until answered (500 ms).
    pub bulk_retry: Duration,
    /// A backup is ready this long after start even without a BulkEnd (2 s).
    pub bulk_deadline: Duration,
    /// How often the master re-sends the whole table ([`refresh_interval`]).
    pub refresh: Duration,
    /// The pace of a pass: its budget is refilled this often (5 ms, so a bulk pass leaves in
    /// bursts a receive buffer holds).
    pub pace_tick: Duration,
    /// Messages a bulk pass may send per [`pace_tick`](Self::pace_tick) (32: 6,400 messages,
    /// about 350,000 records a second at 1472 bytes, so 700,000 flows resync within the 2 s).
    pub bulk_messages_per_tick: usize,
    /// While this many messages wait for [`SyncSession::poll_transmit`], new changes are
    /// dropped and counted (1024; the driver drains the queue every turn of its loop).
    pub queue_limit: usize,
    /// A new master still installs the records it receives this long after taking over
    /// (2 s): the last changes of the master it replaces, which sends what it held when it
    /// steps down ([`SyncSession::flush`]) — at a preemption they arrive after the takeover.
    pub handover: Duration,
    /// A new master picks up no mid-flow packet of a flow it does not know (`sloppy_tcp`)
    /// for this long after taking over (500 ms): the replaced master's last records may be
    /// on their way, and the client retransmits a dropped segment after its RTO (≥ 200 ms).
    pub pickup_hold: Duration,
}

impl SessionConfig {
    /// The defaults for a sync id, message size, key and sender id.
    pub fn new(syncid: u8, maxlen: usize, key: Option<Key>, sender: u32) -> SessionConfig {
        SessionConfig {
            syncid,
            maxlen,
            key,
            sender,
            flush: Duration::from_millis(20),
            bulk_retry: Duration::from_millis(500),
            bulk_deadline: Duration::from_secs(2),
            refresh: Duration::from_secs(60),
            pace_tick: Duration::from_millis(5),
            bulk_messages_per_tick: 32,
            queue_limit: 1024,
            handover: Duration::from_secs(2),
            pickup_hold: Duration::from_millis(500),
        }
    }
}

/// The refresh interval for a table whose shortest configured flow timeout is `shortest`:
/// half of it, at most 60 s (at least 1 s), so a backup's copy is refreshed at least twice in
/// its lifetime.
pub fn refresh_interval(shortest: Duration) -> Duration {
    (shortest / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// What a received message asks of the caller.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// Records to install into every core (a backup's; zero-copy over the received bytes).
    Records(Records<'a>),
    /// IPv6 records to install, as [`Incoming::Records`].
    Records6(Records6<'a>),
    /// A message handled inside the session (a BulkRequest the master answers, a BulkEnd) or
    /// not for our role (records reaching a master): nothing to do.
    Handled(MessageType),
}

/// What the driver should fetch from the cores for the current pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpDemand {
    /// The pass number: when it changes, start again from the first core's first flow.
    pub pass: u64,
    /// At most this many records now.
    pub limit: usize,
}

/// Counters the session keeps (the driver publishes them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Messages built for sending.
    pub messages_sent: u64,
    /// Records in them.
    pub records_sent: u64,
    /// Changes dropped: the queue was full, or the wire cannot carry the record.
    pub dropped: u64,
    /// Bulk passes completed (master).
    pub bulk_passes: u64,
    /// Refresh passes completed (master).
    pub refresh_passes: u64,
    /// Bulk requests a backup repeated because part of the answer was lost.
    pub bulk_retries: u64,
}

/// A pass over the whole table.
#[derive(Debug)]
struct Pass {
    id: u64,
    /// A bulk pass ends with a BulkEnd naming `requesters`; a refresh pass does not.
    bulk: bool,
    requesters: Vec<u32>,
    /// A BulkRequest from a sender not in `requesters` arrived during the pass: run another.
    again: Vec<u32>,
    /// Records still allowed in the current tick.
    budget: usize,
    next_tick: Instant,
    started: Instant,
    records: usize,
}

/// 64 sequence numbers below the highest seen, as a bitmap (RFC 4303's window).
#[derive(Clone, Copy, Debug)]
struct ReplayWindow {
    sender: u32,
    top: u64,
    seen: u64,
    last: Instant,
}

impl ReplayWindow {
    /// Marks `seq` seen; false when it was already, or is too old to tell.
    fn accept(&mut self, seq: u64) -> bool {
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
            return true;
        }
        let back = self.top - seq;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// Senders remembered for the replay check; the least recently heard is forgotten first.
const MAX_SENDERS: usize = 16;

/// Records of one family waiting for a message, unconfirmed and confirmed flows apart (index
/// `confirmed as usize`: a message carries one kind, [`wire::FLAG_CONFIRMED`]).
type Held<K> = [Vec<SyncRecord<K>>; 2];

/// What the session does with each family's records: put them in a message.
trait Family: WireKey {
    fn body(records: &[SyncRecord<Self>]) -> Body<'_>;
}

impl Family for crate::director::conn::ConnKey {
    fn body(records: &[SyncRecord]) -> Body<'_> {
        Body::Conns(records)
    }
}

impl Family for crate::director::conn::ConnKey6 {
    fn body(records: &[SyncRecord6]) -> Body<'_> {
        Body::Conns6(records)
    }
}

/// One director's connection sync, without IO. See the [module docs](self).
#[derive(Debug)]
pub struct SyncSession {
    cfg: SessionConfig,
    policy: Policy,
    /// Records per message.
    per_msg: usize,
    /// IPv6 records per message.
    per_msg6: usize,
    master: bool,
    sequence: u64,
    /// The Conns6 stream's message counter (its sender id is [`wire::stream6`]).
    sequence6: u64,
    /// Changes not yet in a message, unconfirmed and confirmed flows apart (index
    /// `confirmed as usize`: a message carries one kind, [`wire::FLAG_CONFIRMED`]), and when
    /// the oldest was queued.
    changes: Held<crate::director::conn::ConnKey>,
    /// IPv6 changes, apart as `changes`.
    changes6: Held<crate::director::conn::ConnKey6>,
    oldest: Option<Instant>,
    pass: Option<Pass>,
    passes: u64,
    /// Dump records not yet in a message, apart as `changes`.
    dumped: Held<crate::director::conn::ConnKey>,
    /// IPv6 dump records, apart as `changes`.
    dumped6: Held<crate::director::conn::ConnKey6>,
    /// Records of the last completed pass (paces the next refresh).
    last_pass_records: usize,
    next_refresh: Option<Instant>,
    /// When this session last became master (records are still installed for
    /// [`SessionConfig::handover`]).
    took_over: Option<Instant>,
    ready: bool,
    /// A message was lost (a sequence gap) while waiting for the bulk answer.
    lost_during_bulk: bool,
    bulk_deadline: Option<Instant>,
    next_bulk_request: Option<Instant>,
    windows: Vec<ReplayWindow>,
    out: VecDeque<Vec<u8>>,
    counters: SessionCounters,
}

impl SyncSession {
    /// A session starting at `now` as a backup that is not ready: it asks for the whole table.
    pub fn new(cfg: SessionConfig, now: Instant) -> SyncSession {
        let per_msg = wire::records_per_message(cfg.maxlen, cfg.key.is_some()).max(1);
        let per_msg6 = wire::records6_per_message(cfg.maxlen, cfg.key.is_some()).max(1);
        let policy = Policy {
            syncid: cfg.syncid,
            maxlen: cfg.maxlen,
            key: cfg.key.clone(),
        };
        SyncSession {
            bulk_deadline: Some(now + cfg.bulk_deadline),
            next_bulk_request: Some(now),
            cfg,
            policy,
            per_msg,
            per_msg6,
            master: false,
            sequence: 0,
            sequence6: 0,
            changes: [Vec::new(), Vec::new()],
            changes6: [Vec::new(), Vec::new()],
            oldest: None,
            pass: None,
            passes: 0,
            dumped: [Vec::new(), Vec::new()],
            dumped6: [Vec::new(), Vec::new()],
            last_pass_records: 0,
            next_refresh: None,
            took_over: None,
            ready: false,
            lost_during_bulk: false,
            windows: Vec::new(),
            out: VecDeque::new(),
            counters: SessionCounters::default(),
        }
    }

    /// Whether this session sends (its director is the sync instance's MASTER).
    pub fn is_master(&self) -> bool {
        self.master
    }

    /// Whether the bulk resync is done (or given up on, or we are master).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether `sloppy_tcp` pickup must wait: until the bulk resync is done ([`is_ready`](Self::is_ready)),
    /// and for [`SessionConfig::pickup_hold`] after becoming master.
    pub fn pickup_held(&self, now: Instant) -> bool {
        !self.ready
            || self
                .took_over
                .is_some_and(|t| now < t + self.cfg.pickup_hold)
    }

    /// The counters so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Records per message with this config.
    pub fn records_per_message(&self) -> usize {
        self.per_msg
    }

    /// IPv6 records per (Conns6) message with this config.
    pub fn records6_per_message(&self) -> usize {
        self.per_msg6
    }

    /// Becomes master (send changes, answer bulk requests, refresh) or backup (install). A
    /// master is ready; a master that steps down stays ready (it has the table) and drops what
    /// it had not sent.
    pub fn set_master(&mut self, now: Instant, master: bool) {
        if master == self.master {
            return;
        }
        self.master = master;
        self.changes.iter_mut().for_each(Vec::clear);
        self.changes6.iter_mut().for_each(Vec::clear);
        self.oldest = None;
        self.pass = None;
        self.dumped.iter_mut().for_each(Vec::clear);
        self.dumped6.iter_mut().for_each(Vec::clear);
        self.next_bulk_request = None;
        self.bulk_deadline = None;
        self.ready = true;
        self.next_refresh = master.then(|| now + self.cfg.refresh);
        self.took_over = master.then_some(now);
    }

    /// A master queues the cores' changes (ignored on a backup). Full messages are built at
    /// once, the rest within [`SessionConfig::flush`].
    pub fn queue(&mut self, now: Instant, records: &[SyncRecord]) {
        let mut changes = std::mem::take(&mut self.changes);
        self.queue_family(now, records, &mut changes, self.per_msg);
        self.changes = changes;
        self.settle_oldest();
    }

    /// [`queue`](Self::queue) for IPv6 changes (they leave in Conns6 messages).
    pub fn queue6(&mut self, now: Instant, records: &[SyncRecord6]) {
        let mut changes = std::mem::take(&mut self.changes6);
        self.queue_family(now, records, &mut changes, self.per_msg6);
        self.changes6 = changes;
        self.settle_oldest();
    }

    /// No change waits: the flush timer stops.
    fn settle_oldest(&mut self) {
        if self.changes.iter().all(Vec::is_empty) && self.changes6.iter().all(Vec::is_empty) {
            self.oldest = None;
        }
    }

    fn queue_family<K: Family>(
        &mut self,
        now: Instant,
        records: &[SyncRecord<K>],
        changes: &mut Held<K>,
        per_msg: usize,
    ) {
        if !self.master {
            return;
        }
        for r in records {
            if self.out.len() >= self.cfg.queue_limit || !wire::encodable(r) {
                self.counters.dropped += 1;
                continue;
            }
            let kind = usize::from(r.confirmed);
            // A flow's records arrive in order (its unconfirmed ones before its confirmed
            // one): when the other kind's queue holds a record of this flow, that queue
            // leaves first. So a flow's waiting records are all in one queue, and the two
            // queues may leave in any order.
            if changes[1 - kind].iter().any(|o| o.key == r.key) {
                let older = std::mem::take(&mut changes[1 - kind]);
                self.send_records(&older);
            }
            changes[kind].push(*r);
            self.oldest.get_or_insert(now);
            if changes[kind].len() >= per_msg {
                let full: Vec<SyncRecord<K>> = changes[kind].drain(..per_msg).collect();
                self.send_records(&full);
            }
        }
    }

    /// Checks a received message and acts on it: the refusal reason, or what the caller has
    /// to do ([`Incoming`]).
    pub fn handle_message<'a>(
        &mut self,
        now: Instant,
        bytes: &'a [u8],
    ) -> Result<Incoming<'a>, Refused> {
        let m = Message::new_checked(bytes)?;
        m.verify(&self.policy)?;
        if m.sender() == self.cfg.sender || m.sender() == wire::stream6(self.cfg.sender) {
            return Err(Refused::Own);
        }
        let gap = self.check_replay(now, m.sender(), m.sequence())?;
        if gap && !self.ready {
            self.lost_during_bulk = true;
        }
        match m.kind() {
            MessageType::Conns
                if !self.master || self.took_over.is_some_and(|t| now < t + self.cfg.handover) =>
            {
                Ok(Incoming::Records(m.records()))
            }
            MessageType::Conns => Ok(Incoming::Handled(MessageType::Conns)),
            MessageType::Conns6
                if !self.master || self.took_over.is_some_and(|t| now < t + self.cfg.handover) =>
            {
                Ok(Incoming::Records6(m.records6()))
            }
            MessageType::Conns6 => Ok(Incoming::Handled(MessageType::Conns6)),
            MessageType::BulkRequest => {
                if self.master {
                    self.bulk_requested(now, m.sender());
                }
                Ok(Incoming::Handled(MessageType::BulkRequest))
            }
            MessageType::BulkEnd => {
                if !self.master && !self.ready && m.requesters().any(|s| s == self.cfg.sender) {
                    if self.lost_during_bulk {
                        // Part of the answer was lost: ask again at once (the deadline stands).
                        self.lost_during_bulk = false;
                        self.next_bulk_request = Some(now);
                        self.counters.bulk_retries += 1;
                    } else {
                        self.ready = true;
                        self.next_bulk_request = None;
                        self.bulk_deadline = None;
                    }
                }
                Ok(Incoming::Handled(MessageType::BulkEnd))
            }
        }
    }

    /// The replay check; `Ok(true)` when messages of this sender were skipped (lost).
    fn check_replay(&mut self, now: Instant, sender: u32, seq: u64) -> Result<bool, Refused> {
        if let Some(w) = self.windows.iter_mut().find(|w| w.sender == sender) {
            w.last = now;
            let gap = seq > w.top.saturating_add(1);
            return if w.accept(seq) {
                Ok(gap)
            } else {
                Err(Refused::Replay)
            };
        }
        if self.windows.len() >= MAX_SENDERS {
            if let Some(i) = (0..self.windows.len()).min_by_key(|&i| self.windows[i].last) {
                self.windows.swap_remove(i);
            }
        }
        self.windows.push(ReplayWindow {
            sender,
            top: seq,
            seen: 1,
            last: now,
        });
        Ok(false)
    }

    /// A BulkRequest from `sender`: starts a bulk pass, or adds `sender` to the next one
    /// when a bulk pass that does not name it is running (its repeats are ignored). At most
    /// [`MAX_SENDERS`] requesters wait, so a BulkEnd always fits a message.
    fn bulk_requested(&mut self, now: Instant, sender: u32) {
        match &mut self.pass {
            Some(p) if p.bulk && p.requesters.contains(&sender) => {}
            Some(p) if p.bulk => {
                if !p.again.contains(&sender) && p.again.len() < MAX_SENDERS {
                    p.again.push(sender);
                }
            }
            // A refresh pass in progress, or none: start a bulk pass from the beginning.
            _ => self.start_pass(now, true, vec![sender]),
        }
    }

    fn start_pass(&mut self, now: Instant, bulk: bool, requesters: Vec<u32>) {
        self.passes += 1;
        self.dumped.iter_mut().for_each(Vec::clear);
        self.dumped6.iter_mut().for_each(Vec::clear);
        let mut pass = Pass {
            id: self.passes,
            bulk,
            requesters,
            again: Vec::new(),
            budget: 0,
            next_tick: now,
            started: now,
            records: 0,
        };
        let (tick, budget) = self.pace(&pass, now);
        pass.budget = budget;
        pass.next_tick = now + tick;
        self.pass = Some(pass);
    }

    /// A pass's tick and the records it may fetch per tick. A bulk pass goes as fast as
    /// configured. A refresh pass is spread over half the refresh interval by the last pass's
    /// size, at least a message per tick (the tick lengthens instead); at bulk pace when that
    /// size is unknown (the first pass) or the half interval is over (the table grew).
    fn pace(&self, pass: &Pass, now: Instant) -> (Duration, usize) {
        let bulk = (
            self.cfg.pace_tick,
            self.cfg.bulk_messages_per_tick.max(1) * self.per_msg,
        );
        let span = self.cfg.refresh / 2;
        if pass.bulk || self.last_pass_records == 0 || now.saturating_since(pass.started) > span {
            return bulk;
        }
        let n = self.last_pass_records as u128;
        let span_ms = span.as_millis().max(1);
        let messages = n.div_ceil(self.per_msg as u128).max(1);
        let tick_ms = (span_ms / messages).max(self.cfg.pace_tick.as_millis().max(1));
        let per_tick = (n * tick_ms).div_ceil(span_ms) as usize;
        (
            Duration::from_millis(tick_ms as u64),
            per_tick.clamp(self.per_msg, bulk.1),
        )
    }

    /// What the driver should fetch from the cores now, if a pass is running and its pace
    /// allows.
    pub fn poll_dump(&self) -> Option<DumpDemand> {
        let p = self.pass.as_ref()?;
        (p.budget > 0).then_some(DumpDemand {
            pass: p.id,
            limit: p.budget,
        })
    }

    /// The driver's answer to [`poll_dump`](Self::poll_dump): the records fetched for `pass`,
    /// and whether the table ended. Records of an older pass are ignored.
    pub fn push_dump(&mut self, now: Instant, pass: u64, records: &[SyncRecord], end: bool) {
        let mut dumped = std::mem::take(&mut self.dumped);
        let current = self.push_family(pass, records, &mut dumped, self.per_msg);
        self.dumped = dumped;
        if current && end {
            self.end_pass(now);
        }
    }

    /// The IPv6 records fetched for `pass` (their budget is the same as IPv4's: a
    /// [`DumpDemand`]'s limit counts both). Push them before the pass's last
    /// [`push_dump`](Self::push_dump), the one that ends it.
    pub fn push_dump6(&mut self, pass: u64, records: &[SyncRecord6]) {
        let mut dumped = std::mem::take(&mut self.dumped6);
        self.push_family(pass, records, &mut dumped, self.per_msg6);
        self.dumped6 = dumped;
    }

    /// Counts `records` in the pass `pass` and sends the full messages; false when `pass` is
    /// not the current one.
    fn push_family<K: Family>(
        &mut self,
        pass: u64,
        records: &[SyncRecord<K>],
        dumped: &mut Held<K>,
        per_msg: usize,
    ) -> bool {
        let Some(p) = self.pass.as_mut().filter(|p| p.id == pass) else {
            return false;
        };
        p.budget = p.budget.saturating_sub(records.len());
        p.records += records.len();
        for r in records.iter().filter(|r| wire::encodable(*r)) {
            let kind = usize::from(r.confirmed);
            dumped[kind].push(*r);
            if dumped[kind].len() >= per_msg {
                let full: Vec<SyncRecord<K>> = dumped[kind].drain(..).collect();
                self.send_records(&full);
            }
        }
        true
    }

    fn end_pass(&mut self, now: Instant) {
        for kind in 0..2 {
            let rest = std::mem::take(&mut self.dumped[kind]);
            if !rest.is_empty() {
                self.send_records(&rest);
            }
            let rest = std::mem::take(&mut self.dumped6[kind]);
            if !rest.is_empty() {
                self.send_records(&rest);
            }
        }
        let Some(p) = self.pass.take() else { return };
        self.last_pass_records = p.records;
        if p.bulk {
            self.counters.bulk_passes += 1;
            self.send(Body::BulkEnd(&p.requesters));
        } else {
            self.counters.refresh_passes += 1;
        }
        // A full pass refreshes everything: the next refresh counts from here.
        self.next_refresh = Some(now + self.cfg.refresh);
        if !p.again.is_empty() {
            self.start_pass(now, true, p.again);
        }
    }

    /// A master sends the changes it holds now, without waiting for
    /// [`SessionConfig::flush`]: the last ones before it steps down.
    pub fn flush(&mut self) {
        if !self.master {
            return;
        }
        // Unconfirmed first: a flow's older records leave before its newer ones.
        for kind in 0..2 {
            let all = std::mem::take(&mut self.changes[kind]);
            for chunk in all.chunks(self.per_msg) {
                self.send_records(chunk);
            }
            let all = std::mem::take(&mut self.changes6[kind]);
            for chunk in all.chunks(self.per_msg6) {
                self.send_records(chunk);
            }
        }
        self.oldest = None;
    }

    /// Runs the timers due at `now`: the change flush, the pass pace, the refresh, a backup's
    /// BulkRequest repeats and its deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.master {
            if self.oldest.is_some_and(|t| now >= t + self.cfg.flush) {
                self.flush();
            }
            if let Some(p) = &self.pass {
                if now >= p.next_tick {
                    let (tick, budget) = self.pace(p, now);
                    if let Some(p) = self.pass.as_mut() {
                        p.budget = budget;
                        p.next_tick = now + tick;
                    }
                }
            } else if self.next_refresh.is_some_and(|t| now >= t) {
                self.next_refresh = None;
                self.start_pass(now, false, Vec::new());
            }
            return;
        }
        if self.ready {
            return;
        }
        if self.bulk_deadline.is_some_and(|t| now >= t) {
            self.ready = true;
            self.next_bulk_request = None;
            self.bulk_deadline = None;
            return;
        }
        if self.next_bulk_request.is_some_and(|t| now >= t) {
            self.send(Body::BulkRequest);
            self.next_bulk_request = Some(now + self.cfg.bulk_retry);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if self.master {
            at(self.oldest.map(|o| o + self.cfg.flush));
            match &self.pass {
                Some(p) => at(Some(p.next_tick)),
                None => at(self.next_refresh),
            }
        } else if !self.ready {
            at(self.next_bulk_request);
            at(self.bulk_deadline);
        }
        t
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn send_records<K: Family>(&mut self, records: &[SyncRecord<K>]) {
        self.counters.records_sent += records.len() as u64;
        self.send(K::body(records));
    }

    fn send(&mut self, body: Body<'_>) {
        // Conns6 messages are a stream of their own (see the module docs).
        let (sender, sequence) = if let Body::Conns6(_) = body {
            self.sequence6 += 1;
            (wire::stream6(self.cfg.sender), self.sequence6)
        } else {
            self.sequence += 1;
            (self.cfg.sender, self.sequence)
        };
        let hdr = Header {
            syncid: self.cfg.syncid,
            sender,
            sequence,
        };
        let mut buf = Vec::with_capacity(self.cfg.maxlen.min(65535));
        wire::build(&hdr, body, self.cfg.key.as_ref(), &mut buf);
        self.counters.messages_sent += 1;
        self.out.push_back(buf);
    }
}

#[cfg(test)]
mod tests;

//! Connection sync between directors (keepalived's `lvs_sync_daemon`, IPVS's sync daemon, in
//! its own format): the VRRP master sends its connection-table changes, a bulk answer to a
//! starting backup and a periodic refresh; the backups install them, so flows survive a
//! failover.
//!
//! - [`wire`]: the message format ([`wire::Message`] view, [`wire::build`]), versioned,
//!   bounded by `maxlen`, optionally authenticated with HMAC-SHA256; refusals are
//!   [`wire::Refused`].
//! - [`session`]: [`SyncSession`], the sans-IO protocol: batching, bulk resync, refresh,
//!   readiness, replay window.
//! - [`SyncStats`]: the counters the daemon's thread (`crate::daemon::sync`) keeps and the
//!   metrics read.
//!
//! Nothing here does IO or reads a clock; the thread with the socket is in the daemon.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub mod session;
pub mod wire;

pub use session::{Incoming, SessionConfig, SyncSession};
pub use wire::{Key, Refused};

/// What connection sync has done since start; shared by its thread (writer) and the metrics
/// (reader). Relaxed atomics: each counter is monotonic on its own.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Records sent.
    pub records_sent: AtomicU64,
    /// Messages received and accepted.
    pub received: AtomicU64,
    /// Records received in accepted messages.
    pub records_received: AtomicU64,
    /// Records messages installed into the cores (a backup's).
    pub applied: AtomicU64,
    /// Records installed (counted once per record, not per core).
    pub records_applied: AtomicU64,
    /// Records not installed: no such service.
    pub no_service: AtomicU64,
    /// Records not installed: the service has no such real server.
    pub no_dest: AtomicU64,
    /// Records not installed: a core's connection table is full.
    pub full: AtomicU64,
    /// Records not installed: a NAT real server's (NAT flows are not synced).
    pub nat: AtomicU64,
    /// Records not installed: a protocol or state no director could have.
    pub invalid: AtomicU64,
    /// Changes a master dropped (its send queue full, or a record the wire cannot carry).
    pub dropped: AtomicU64,
    /// Send errors (the socket refused a message).
    pub send_errors: AtomicU64,
    /// Refused messages by reason, in [`Refused::ALL`] order.
    refused: [AtomicU64; Refused::ALL.len()],
    /// Whether this director is currently the sync master.
    pub master: AtomicBool,
    /// Whether the bulk resync is done.
    pub ready: AtomicBool,
}

impl SyncStats {
    /// Counts one refused message.
    pub fn count_refused(&self, r: Refused) {
        if let Some(i) = Refused::ALL.iter().position(|x| *x == r) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Messages refused for `r`.
    pub fn refused(&self, r: Refused) -> u64 {
        Refused::ALL
            .iter()
            .position(|x| *x == r)
            .map_or(0, |i| self.refused[i].load(Ordering::Relaxed))
    }

    /// A plain copy for a metrics sample.
    pub fn snapshot(&self) -> SyncCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SyncCounts {
            sent: l(&self.sent),
            records_sent: l(&self.records_sent),
            received: l(&self.received),
            records_received: l(&self.records_received),
            applied: l(&self.applied),
            records_applied: l(&self.records_applied),
            no_service: l(&self.no_service),
            no_dest: l(&self.no_dest),
            full: l(&self.full),
            nat: l(&self.nat),
            invalid: l(&self.invalid),
            dropped: l(&self.dropped),
            send_errors: l(&self.send_errors),
            refused: Refused::ALL.map(|r| self.refused(r)),
            master: self.master.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Relaxed),
        }
    }
}

/// A copy of [`SyncStats`] at one moment (what a metrics scrape reads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Messages sent.
    pub sent: u64,
    /// Records sent.
    pub records_sent: u64,
    /// Messages received and accepted.
    pub received: u64,
    /// Records in them.
    pub records_received: u64,
    /// Records messages installed.
    pub applied: u64,
    /// Records installed.
    pub records_applied: u64,
    /// Not installed: no such service.
    pub no_service: u64,
    /// Not installed: no such real server.
    pub no_dest: u64,
    /// Not installed: a connection table full.
    pub full: u64,
    /// Not installed: a NAT real server's.
    pub nat: u64,
    /// Not installed: a protocol or state that does not fit.
    pub invalid: u64,
    /// Changes a master dropped.
    pub dropped: u64,
    /// Messages the socket refused to send.
    pub send_errors: u64,
    /// Refused messages by reason, in [`Refused::ALL`] order ([`SyncCounts::refused`]).
    pub refused: [u64; Refused::ALL.len()],
    /// Whether this director is the sync master.
    pub master: bool,
    /// Whether the bulk resync is done.
    pub ready: bool,
}

impl SyncCounts {
    /// Every refusal reason with its count.
    pub fn refused(&self) -> impl Iterator<Item = (Refused, u64)> + '_ {
        Refused::ALL
            .iter()
            .copied()
            .zip(self.refused.iter().copied())
    }
}

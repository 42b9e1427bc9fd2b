//! What the VRRP driver and connection sync tell each other, and nothing else: the sync
//! instance's role and whether the bulk resync is done.

use std::sync::atomic::{AtomicBool, Ordering};

/// Shared by the VRRP driver and connection sync.
#[derive(Debug, Default)]
pub struct HaLink {
    /// Set by the VRRP driver: the sync instance is MASTER, so this director sends its
    /// connection-table changes; otherwise it installs what the master sends.
    sync_master: AtomicBool,
    /// Set by connection sync once the bulk resync at start finished (or was given up on after
    /// its deadline): until then the VRRP driver does not preempt.
    sync_ready: AtomicBool,
}

impl HaLink {
    /// A link with no sync configured: ready at once, never master.
    pub fn without_sync() -> HaLink {
        let l = HaLink::default();
        l.set_sync_ready(true);
        l
    }

    /// Whether this director is the sync instance's MASTER.
    pub fn is_sync_master(&self) -> bool {
        self.sync_master.load(Ordering::Acquire)
    }

    /// Called by the VRRP driver on each transition of the sync instance.
    pub fn set_sync_master(&self, master: bool) {
        self.sync_master.store(master, Ordering::Release);
    }

    /// Whether the bulk resync is done (the VRRP driver may preempt).
    pub fn is_sync_ready(&self) -> bool {
        self.sync_ready.load(Ordering::Acquire)
    }

    /// Called by connection sync when the bulk resync finished or its deadline passed.
    pub fn set_sync_ready(&self, ready: bool) {
        self.sync_ready.store(ready, Ordering::Release);
    }
}

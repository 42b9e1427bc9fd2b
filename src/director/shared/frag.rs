//! The fragment tracker: which real server the later fragments of a datagram follow (they
//! carry no ports, so only the first fragment's decision can place them).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::director::conn::DestId;
use crate::time::{Duration, Instant};

/// How long the fragment tracker remembers a fragmented datagram.
const FRAG_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fragmented datagrams may be in flight at once.
const FRAG_MAX: usize = 4096;

/// A datagram: source, destination, protocol, identification.
pub type FragKey = (Ipv4Addr, Ipv4Addr, u8, u16);

/// Which real server the fragments of one datagram go to (shared by all workers).
#[derive(Debug, Default)]
pub struct FragTable {
    map: Mutex<HashMap<FragKey, (DestId, Instant)>>,
}

impl FragTable {
    /// The real server the later fragments of datagram `key` follow, if its first fragment
    /// was seen.
    pub fn dest(&self, key: &FragKey) -> Option<DestId> {
        self.map
            .lock()
            .ok()
            .and_then(|f| f.get(key).map(|(d, _)| *d))
    }

    /// Remembers where the later fragments of a datagram go. When the tracker is full they
    /// will be dropped as `fragment_no_flow`; the first fragment itself still goes through.
    pub fn remember(&self, key: FragKey, dest: DestId, now: Instant) {
        let Ok(mut f) = self.map.lock() else {
            return;
        };
        if f.len() >= FRAG_MAX && !f.contains_key(&key) {
            f.retain(|_, (_, exp)| *exp > now);
            if f.len() >= FRAG_MAX {
                return;
            }
        }
        f.insert(key, (dest, now + FRAG_TIMEOUT));
    }

    /// Forgets the datagrams expired at `now`.
    pub fn expire(&self, now: Instant) {
        if let Ok(mut f) = self.map.lock() {
            f.retain(|_, (_, exp)| *exp > now);
        }
    }
}

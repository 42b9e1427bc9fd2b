//! The connection table: flows by 5-tuple, IPVS states and timeouts, persistence templates.
//!
//! - [`ConnKey`], [`ConnKey6`], [`TableKey`] (`key.rs`): flow keys of IPv4 and IPv6 flows, and
//!   what the tables need of a key.
//! - [`ConnTable`], [`ConnTable6`] (`table.rs`): one per worker thread and address family, the
//!   per-packet lookup. A [`FlowTable`], an open-addressing Robin Hood hash table with a keyed
//!   hash, 28-byte slots for IPv4 (52 for IPv6) and incremental expiry sweeping.
//! - [`ConnState`], [`tcp_transition`], [`Timeouts`] (`state.rs`): IPVS's TCP state machine and
//!   its per-state timeouts.
//! - [`TemplateTable`], [`TemplateTable6`] (`template.rs`): persistence templates shared by all
//!   workers.
//!
//! Nothing here reads a clock: every method that needs the time takes a [`crate::time::Instant`].

use crate::time::{Duration, Instant};

mod key;
mod record;
mod state;
mod table;
mod template;

pub use key::{ConnKey, ConnKey6, TableKey, KEY_TEMPLATE};
pub use record::{SyncKey, SyncRecord, SyncRecord6};
pub use state::{tcp_transition, ConnState, Direction, Timeouts};
pub use table::{random_seed, ConnTable, ConnTable6, Eviction, FlowTable, TableFull};
pub use template::{
    ipv6_prefix, template_key, template_key6, TemplateTable, TemplateTable6, Templates,
};

/// A stable handle on a real server: slot in the low 16 bits, generation in the high 16 (so a
/// conn never follows a slot reused by another server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DestId(pub u32);

impl DestId {
    /// The handle for `slot` in its `generation`.
    pub const fn new(slot: u16, generation: u16) -> DestId {
        DestId(((generation as u32) << 16) | slot as u32)
    }

    /// The real server's slot (low 16 bits).
    pub const fn slot(self) -> u16 {
        self.0 as u16
    }

    /// The slot's generation (high 16 bits).
    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

/// Expiry resolution: a [`Conn`] stores its expiry in units of this many milliseconds.
const EXPIRY_UNIT_MS: u64 = 100;

/// One tracked flow: where it goes, its state and when it expires.
///
/// 12 bytes. The expiry is kept in deciseconds since the [`Instant`] epoch (a `u32`, so about
/// 13.6 years), rounded up: a flow never expires before the instant it was given.
///
/// A flow is *confirmed* once the client's side has shown it is a real conversation: a TCP
/// segment other than a SYN or RST carrying payload, a second UDP datagram. The director of a
/// TUN/DR service sees only the client's half of a connection, so a spoofed SYN followed by a
/// spoofed ACK looks like a handshake; what a flood cannot cheaply fake at volume is a flow
/// that keeps talking. Unconfirmed flows get shorter timeouts and are the first (and only)
/// ones evicted when the table nears its limit ([`FlowTable::make_room`]).
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    /// The real server the flow is bound to.
    pub dest: DestId,
    /// The flow's IPVS state.
    pub state: ConnState,
    /// Whether the flow has carried client payload (see [`Conn::is_confirmed`]).
    confirmed: bool,
    /// When the flow entered its table, as the low 16 bits of the table's insert count: the
    /// tie-break of eviction between flows of the same expiry tenth (older goes first). Not
    /// part of the flow's identity (ignored by `==`).
    age: u16,
    /// Expiry in deciseconds since the epoch, rounded up, saturating.
    expires_ds: u32,
}

impl PartialEq for Conn {
    fn eq(&self, other: &Conn) -> bool {
        (self.dest, self.state, self.confirmed, self.expires_ds)
            == (other.dest, other.state, other.confirmed, other.expires_ds)
    }
}

impl Eq for Conn {}

impl Conn {
    /// A flow bound to `dest`, in `state`, expiring at `expires`; not confirmed yet.
    pub fn new(dest: DestId, state: ConnState, expires: Instant) -> Conn {
        Conn {
            dest,
            state,
            confirmed: false,
            age: 0,
            expires_ds: to_deciseconds(expires),
        }
    }

    /// Whether the flow has carried client payload (TCP data, or a second UDP datagram): such a
    /// flow is never evicted to make room for new ones, only expired.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Marks the flow confirmed (it carried client payload).
    pub fn confirm(&mut self) {
        self.confirmed = true;
    }

    /// How long the flow lives after a packet: its state's timeout in `timeouts`, at most
    /// `unconfirmed` for a TCP flow not confirmed yet.
    pub fn timeout(&self, timeouts: &Timeouts, unconfirmed: Duration) -> Duration {
        let t = timeouts.get(self.state);
        if self.state.is_tcp() && !self.confirmed {
            t.min(unconfirmed)
        } else {
            t
        }
    }

    /// When the flow expires (its expiry instant rounded up to a tenth of a second).
    pub fn expires(&self) -> Instant {
        Instant::from_millis(u64::from(self.expires_ds) * EXPIRY_UNIT_MS)
    }

    /// Moves the expiry to `t` (rounded up to a tenth of a second).
    pub fn set_expires(&mut self, t: Instant) {
        self.expires_ds = to_deciseconds(t);
    }

    /// Whether the flow has expired at `now` (`expires() <= now`).
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires() <= now
    }
}

fn to_deciseconds(t: Instant) -> u32 {
    let ds = t.total_millis().div_ceil(EXPIRY_UNIT_MS);
    u32::try_from(ds).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn dest_id_packs_slot_and_generation() {
        let d = DestId::new(7, 3);
        assert_eq!(d, DestId(0x0003_0007));
        assert_eq!(d.slot(), 7);
        assert_eq!(d.generation(), 3);
        assert_ne!(DestId::new(7, 4), d);
    }

    #[test]
    fn conn_expiry_rounds_up_to_deciseconds() {
        let mut c = Conn::new(
            DestId(1),
            ConnState::Established,
            Instant::from_millis(1234),
        );
        assert_eq!(c.expires(), Instant::from_millis(1300));
        assert!(!c.is_expired(Instant::from_millis(1299)));
        assert!(c.is_expired(Instant::from_millis(1300)));
        c.set_expires(Instant::from_secs(900));
        assert_eq!(c.expires(), Instant::from_secs(900));
        c.set_expires(Instant::from_millis(u64::MAX));
        assert_eq!(c.expires(), Instant::from_millis(u64::from(u32::MAX) * 100));
    }

    #[test]
    fn conn_is_twelve_bytes() {
        assert_eq!(core::mem::size_of::<Conn>(), 12);
        assert_eq!(core::mem::size_of::<ConnKey>(), 14);
    }

    #[test]
    fn key_flags() {
        let k = ConnKey::new(
            6,
            Ipv4Addr::new(10, 0, 0, 1),
            1234,
            Ipv4Addr::new(10, 9, 9, 9),
            80,
        );
        assert!(!k.is_template());
        assert_eq!(k.to_string(), "proto 6 10.0.0.1:1234 -> 10.9.9.9:80");
    }
}

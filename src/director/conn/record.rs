//! [`SyncRecord`]: one connection as connection sync carries it between directors; an IPv4
//! flow's ([`SyncRecord`], the default) or an IPv6 one's ([`SyncRecord6`]).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{ConnKey, ConnKey6, ConnState, TableKey};

/// A flow key connection sync carries, and how it names the real server: an IPv4 flow's
/// ([`ConnKey`]) goes to an IPv4 server; an IPv6 flow's ([`ConnKey6`]) to an IPv6 one, or to
/// an IPv4 one (an IPv6 VIP tunnelled over IPv4).
pub trait SyncKey: TableKey {
    /// The real server's address and port.
    type Dest: Copy + core::fmt::Debug + PartialEq + Eq;
}

impl SyncKey for ConnKey {
    type Dest = SocketAddrV4;
}

impl SyncKey for ConnKey6 {
    type Dest = SocketAddr;
}

/// One connection (or persistence template, `key.flags & KEY_TEMPLATE`) as a peer director
/// needs it to install it: the real server is named by address and port, since a
/// [`DestId`](super::DestId) is local to one director's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRecord<K: SyncKey = ConnKey> {
    /// The flow as the client sent it (or the template key).
    pub key: K,
    /// The real server's address and port as configured in the service.
    pub dest: K::Dest,
    /// The flow's IPVS state.
    pub state: ConnState,
    /// How long the flow had left to live when the record was made.
    pub timeout: Duration,
    /// Whether the flow is [confirmed](super::Conn::is_confirmed) (it carried client data):
    /// the peer installs it confirmed. False for a template. On the wire it is a message flag
    /// (`crate::sync::wire::FLAG_CONFIRMED`), not a record field.
    pub confirmed: bool,
}

/// An IPv6 flow's (or IPv6 persistence template's) record.
pub type SyncRecord6 = SyncRecord<ConnKey6>;

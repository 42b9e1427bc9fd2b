//! [`SyncRecord`]: one connection as connection sync carries it between directors.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::{ConnKey, ConnState};

/// One connection (or persistence template, `key.flags & KEY_TEMPLATE`) as a peer director
/// needs it to install it: the real server is named by address and port, since a
/// [`DestId`](super::DestId) is local to one director's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRecord {
    /// The flow as the client sent it (or the template key).
    pub key: ConnKey,
    /// The real server's address and port as configured in the service.
    pub dest: SocketAddrV4,
    /// The flow's IPVS state.
    pub state: ConnState,
    /// How long the flow had left to live when the record was made.
    pub timeout: Duration,
    /// Whether the flow is [confirmed](super::Conn::is_confirmed) (it carried client data):
    /// the peer installs it confirmed. False for a template. On the wire it is a message flag
    /// (`crate::sync::wire::FLAG_CONFIRMED`), not a record field.
    pub confirmed: bool,
}

//! The application layer: the `tunlb director` process around the packet path.
//!
//! It is the only layer that imports [`crate::control`] (the `adm` protocol, the TOML config,
//! keepalived.conf), [`crate::health`] and [`crate::metrics`]; the director
//! ([`crate::director`]: the sans-IO core and its io) knows none of them.
//!
//! - [`run`](mod@run): [`DirectorArgs`] (the command line) and [`run()`](fn@run): start the
//!   TUN, the cores, the workers and everything below, wait for signals, clean up.
//! - [`announce`]: the VIPs' ARP and NDP responder (AF_PACKET), gratuitous ARPs and
//!   unsolicited Neighbor Advertisements, for VRRP and `--announce`; [`ndp`]: its IPv6
//!   decisions (which solicitation is answered, the takeover bursts).
//! - [`vrrp`]: the VRRP driver thread (sockets, timers, scripts, ARP answers of a MASTER).
//! - [`plane`]: the [`ControlPlane`]: `adm` requests, reloads, the host routing that follows the
//!   table (VIP routes, tunnel routes, NAT and S-NAT policy routing), the health checkers'
//!   overlay, listings and the metrics sample.
//! - [`sync`](mod@sync): the connection-sync thread (socket, cores' changes out, received
//!   flows into every core) around [`crate::sync::SyncSession`].

pub mod announce;
pub mod ha;
pub mod ndp;
pub mod plane;
pub mod run;
pub mod sync;
pub mod vrrp;

pub use plane::{ControlPlane, HostSetup, PlaneError};
pub use run::{run, DirectorArgs};

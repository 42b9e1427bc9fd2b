//! VRRP (RFC 3768 v2, RFC 5798 v3), wire-compatible with keepalived 2.2: two or more directors
//! share the VIPs; the MASTER answers for them, the BACKUPs stand ready.
//!
//! - [`config`]: what an instance is configured with (from keepalived.conf or the TOML config).
//! - [`wire`]: the advert, zero-copy view and builder, checksums, every validity rule.
//! - [`machine`]: the sans-IO state machine of one instance: adverts and timers in, actions out,
//!   time passed in.
//! - [`group`]: `vrrp_sync_group`, which members follow a member's transition.
//!
//! The sockets, the ARP answering and the scripts live in the daemon (`crate::daemon::vrrp`).

pub mod config;
pub mod group;
pub mod machine;
pub mod wire;

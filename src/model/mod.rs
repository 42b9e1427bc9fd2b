//! The service model: virtual services, real servers and the rules they follow, behind three
//! syntaxes.
//!
//! `tunlb adm` (ipvsadm's command line), the TOML config and keepalived.conf only translate
//! their syntax into this model ([`control`](crate::control)); the director reads it.
//!
//! - [`service`]: the data: [`ServiceSet`], [`ServiceConfig`], [`DestConfig`], [`Forward`],
//!   [`Persistence`], [`ExpirePolicy`], [`Timeouts`], and the numeric limits. Addresses are
//!   [`IpAddr`](std::net::IpAddr) (either family, [`Netmask`] for persistence); the same
//!   types over [`Ipv4Addr`](std::net::Ipv4Addr) ([`Family`]) serve IPv4-only code.
//! - [`validate`]: every rule, once (port 0 needs persistence, TUN/DR keep the port, thresholds
//!   in order, contiguous netmasks, IPv6 prefix lengths, a real server of its VIP's family
//!   unless tunnelled, no duplicate real server, ...).
//! - [`edit`]: [`Edit`], one change to the table, and [`ServiceSet::apply`] /
//!   [`ServiceSet::apply_batch`], which the director runs for every change, whoever asked.
//! - [`script`]: [`ScriptUser`] and [`ScriptPolicy`]: who runs a configured script.
//! - [`error`]: [`RuleError`] (a broken rule; each front end words it) and [`EditError`]
//!   (ipvsadm's text for a refused edit).

pub mod edit;
pub mod error;
pub mod script;
pub mod service;
pub mod validate;

pub use edit::{Applied, Edit, ServiceOptions};
pub use error::{BatchError, EditError, RuleError};
pub use script::{ScriptPolicy, ScriptUser};
pub use service::{
    family_name, fmt_addr_port, DestConfig, ExpirePolicy, Family, Forward, Netmask, Persistence,
    Protocol, SchedulerKind, ServiceConfig, ServiceKey, ServiceSet, Timeouts, UnknownScheduler,
    HOST_NETMASK, HOST_PREFIX_V6, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT, MIN_MSS_CLAMP,
};

/// The model's types over IPv4 only: a shorthand for code and tests that know their table is
/// IPv4 (the director's [`Registry`](crate::director::Registry) takes either and widens it).
pub mod v4 {
    use std::net::Ipv4Addr;

    /// [`super::ServiceKey`] over IPv4.
    pub type ServiceKey = super::ServiceKey<Ipv4Addr>;
    /// [`super::DestConfig`] over IPv4.
    pub type DestConfig = super::DestConfig<Ipv4Addr>;
    /// [`super::ServiceConfig`] over IPv4.
    pub type ServiceConfig = super::ServiceConfig<Ipv4Addr>;
    /// [`super::ServiceSet`] over IPv4.
    pub type ServiceSet = super::ServiceSet<Ipv4Addr>;
    /// [`super::Persistence`] over IPv4 (a dotted netmask).
    pub type Persistence = super::Persistence<Ipv4Addr>;
}

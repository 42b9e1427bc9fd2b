//! The service model: virtual services, real servers and the rules they follow, behind three
//! syntaxes.
//!
//! `tunlb adm` (ipvsadm's command line), the TOML config and keepalived.conf only translate
//! their syntax into this model ([`control`](crate::control)); the director reads it.
//!
//! - [`service`]: the data: [`ServiceSet`], [`ServiceConfig`], [`DestConfig`], [`Forward`],
//!   [`Persistence`], [`ExpirePolicy`], [`Timeouts`], and the numeric limits.
//! - [`validate`]: every rule, once (port 0 needs persistence, TUN/DR keep the port, thresholds
//!   in order, contiguous netmasks, no duplicate real server, ...).
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
    DestConfig, ExpirePolicy, Forward, Persistence, Protocol, SchedulerKind, ServiceConfig,
    ServiceKey, ServiceSet, Timeouts, UnknownScheduler, HOST_NETMASK, MAX_THRESHOLD, MAX_TIMEOUT,
    MAX_WEIGHT, MIN_MSS_CLAMP,
};

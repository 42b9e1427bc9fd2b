//! The control plane: `tunlb adm`, the per-namespace control socket, the TOML config, keepalived.conf.
//!
//! # Layout
//!
//! - [`adm`]: ipvsadm 1.31's command line. [`adm::parse`] turns arguments into an
//!   [`adm::Command`]; [`adm::main`] is `tunlb adm` (parse, ask the director, print).
//! - [`ops`]: what a command does to the table: [`ServiceSet::apply`](crate::model::ServiceSet::apply),
//!   one command at a time or as an all-or-nothing batch, with ipvsadm's error texts ([`ops::AdmError`]).
//! - [`format`](mod@format): ipvsadm's output, byte for byte (`-L -n`, `-c`, `--stats`, `--rate`, `-S`, ...),
//!   from the listing types the director fills in ([`format::Listing`], [`format::ConnEntry`]).
//! - [`proto`]: the requests and responses exchanged over the control socket, as JSON lines.
//! - [`socket`]: the control socket itself, a Unix stream socket in the abstract namespace, so each
//!   network namespace has its own director (`ip netns exec NS tunlb adm -ln` just works).
//! - [`config`]: the director's TOML config: load, validate (every problem, with file:line:column),
//!   and write back ([`config::to_toml`]).
//! - [`keepalived`]: keepalived.conf as an input format ([`keepalived::load`]): virtual servers
//!   and their checkers become a table and health settings, VRRP blocks are checked and ignored;
//!   `tunlb check-config FILE` ([`keepalived::check_config`]).

pub mod adm;
pub mod config;
pub mod format;
pub mod keepalived;
pub mod ops;
pub mod proto;
pub mod socket;

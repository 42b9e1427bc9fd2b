//! The control plane: `tunlb adm`, the per-namespace control socket, the TOML config, keepalived.conf.
//!
//! # Layout
//!
//! Each syntax only translates into the model ([`crate::model`]), which owns the rules and
//! applies the edits.
//!
//! - [`adm`]: ipvsadm 1.31's command line. [`adm::parse`] turns arguments into an
//!   [`adm::Command`] (`adm/grammar.rs`, with ipvsadm's option table in `adm/options.rs`);
//!   [`adm::main`] is `tunlb adm` (`adm/client.rs`: parse, ask the director, print).
//!   A table-changing command holds the model's [`Edit`](crate::model::Edit)
//!   ([`adm::Command::Edit`]).
//! - [`ops`]: the names (`AdmError`, `Timeouts`, ...) kept from before the model existed, and the
//!   tests of what adm's edits do to a table.
//! - [`format`](mod@format): ipvsadm's output, byte for byte (`-L -n`, `-c`, `--stats`, `--rate`, `-S`, ...),
//!   from the listing types the director fills in ([`format::Listing`], [`format::ConnEntry`]).
//! - [`proto`]: the requests and responses exchanged over the control socket, as JSON lines.
//! - [`vrrp_status`]: `adm --vrrp`'s entries ([`vrrp_status::VrrpEntry`]) and table.
//! - [`socket`]: the control socket itself, a Unix stream socket in the root-only `/run/tunlb`
//!   named after the network namespace, so each network namespace has its own director
//!   (`ip netns exec NS tunlb adm -ln` just works) and no other user can take its place.
//! - [`config`]: the director's TOML config: serde types (`raw.rs`), validation into the model
//!   (every problem, with file:line:column; `validate.rs`, `network.rs`, `checks.rs`), and the
//!   way back ([`config::to_toml`], `writer.rs`).
//! - [`keepalived`]: keepalived.conf as an input format ([`keepalived::load`]): the syntax
//!   (`syntax.rs`), then virtual servers (`lvs.rs`) and their checkers (`checkers.rs`) become a
//!   table and health settings, the VRRP blocks (`vrrp.rs`) a `VrrpConfig`;
//!   `tunlb check-config FILE` ([`keepalived::check_config`]).

pub mod adm;
pub mod config;
pub mod format;
pub mod keepalived;
pub mod ops;
pub mod proto;
pub mod socket;
pub mod vrrp_status;

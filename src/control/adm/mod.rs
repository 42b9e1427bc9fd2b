//! `tunlb adm`: ipvsadm 1.31's command line, talking to the director of this network namespace.
//!
//! [`parse`] reads ipvsadm's arguments (short and long options, combined short flags such as
//! `-lnc`, `-p` with or without its value) into a [`Command`], checking them as ipvsadm does and
//! failing with ipvsadm's messages ([`ParseError`]). [`main`] then sends the command to the
//! director over the control socket and prints the answer as ipvsadm would.
//!
//! Differences from ipvsadm, all refused with a clear message: fwmark, SCTP and IPv6 services,
//! persistence engines, one-packet scheduling, scheduler flags, the sync daemon and
//! `--tun-remcsum`. Addresses must be numeric (no DNS). A tunnel or direct-routing real server on
//! a port other than the service's is an error (ipvsadm silently changes the port).
//! Extensions: `--json` on listings, `--mss-clamp N` on services, `--gre-key K` on GRE servers;
//! `--tun-port` defaults to 6080 for GUE instead of being required; `--save-config FILE` writes
//! the running table and settings as the director's TOML config (`-` is stdout), and `--reload`
//! makes the director re-read its `--config` file, as SIGHUP does; `--vrrp` lists the VRRP
//! instances (state, priority, master, VIPs).
//!
//! # Layout
//!
//! - `grammar.rs`: the command line into a [`Command`] ([`parse`], [`parse_restore`],
//!   [`ParseError`]); the option table it reads (ipvsadm's commands, options and which
//!   command takes which) is `options.rs`.
//! - `client.rs`: [`main`] / [`run`]: send the command to the director, print the answer.

mod client;
mod grammar;
mod options;
#[cfg(test)]
mod tests;

pub use client::{main, run};
pub use grammar::{parse, parse_restore, parse_with, ParseError, RestoreError};
use options::Cmd;

use crate::control::format::ListFormat;
use crate::model::{Edit, ServiceKey};

pub use crate::model::{ServiceOptions, MIN_MSS_CLAMP};

/// What `-L` lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListTarget {
    /// The whole table (`-L`).
    #[default]
    Table,
    /// One service (`-L -t VIP:PORT`).
    Service(ServiceKey),
    /// The connection entries (`-L -c`).
    Connections,
    /// The timeouts (`-L --timeout`).
    Timeouts,
}

/// The options of `-L` / `-l`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListOptions {
    /// What to list.
    pub target: ListTarget,
    /// How to print it.
    pub format: ListFormat,
    /// `--json`: print the director's answer as JSON instead (tunlb extension).
    pub json: bool,
}

/// One ipvsadm command, parsed and checked: a change to the director's table (the model's
/// [`Edit`], the same type the TOML config and keepalived.conf translate into) or one of the
/// commands that only read or run locally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `-A -E -D -C -a -e -d --set -Z`: a table edit, sent as
    /// [`Request::Apply`](crate::control::proto::Request::Apply). The grammar resolves a real
    /// server's port: it is never 0 unless the service's is.
    Edit(Edit),
    /// `-L` / `-l`: list.
    List(ListOptions),
    /// `-S [-n]`: print the table as commands.
    Save {
        /// `-n`: numeric ports.
        numeric: bool,
    },
    /// `-R`: read commands from stdin, one per line, and apply them all or none.
    Restore,
    /// `--save-config FILE`: write the running table, timeouts and director settings as the
    /// TOML `tunlb director --config` loads; `-` is stdout (tunlb extension).
    SaveConfig {
        /// Where to write: a file (replaced atomically) or `-`.
        path: String,
    },
    /// `--reload`: the director re-reads its `--config` file, as on SIGHUP (tunlb extension).
    Reload,
    /// `--vrrp [--json]`: the director's VRRP instances, state, priority, master (tunlb
    /// extension).
    Vrrp {
        /// `--json`: print the entries as JSON.
        json: bool,
    },
    /// `-h`: print the help.
    Help,
    /// `-v`: print the version.
    Version,
}

impl Command {
    /// The table edit this command is (`-A -E -D -C -a -e -d --set -Z`), or `None` for the
    /// commands that only read or run locally (`-L`, `-S`, `-R`, `--save-config`, `--reload`,
    /// `--vrrp`, `-h`, `-v`).
    pub fn edit(&self) -> Option<&Edit> {
        match self {
            Command::Edit(edit) => Some(edit),
            _ => None,
        }
    }

    /// True for the commands that change the director's state (`-A -E -D -C -a -e -d --set -Z`):
    /// what is sent as [`Request::Apply`](crate::control::proto::Request::Apply) and what a `-R`
    /// file may contain.
    pub fn is_table_edit(&self) -> bool {
        self.edit().is_some()
    }

    /// ipvsadm's name of the command (`add-service`, `list`, ...).
    pub fn name(&self) -> &'static str {
        let cmd = match self {
            Command::Edit(edit) => match edit {
                Edit::AddService(_) => Cmd::Add,
                Edit::EditService(_) => Cmd::Edit,
                Edit::DeleteService(_) => Cmd::Del,
                Edit::Clear => Cmd::Flush,
                Edit::AddServer { .. } => Cmd::AddDest,
                Edit::EditServer { .. } => Cmd::EditDest,
                Edit::DeleteServer { .. } => Cmd::DelDest,
                Edit::SetTimeouts(_) => Cmd::Set,
                Edit::Zero(_) => Cmd::Zero,
            },
            Command::List(_) => Cmd::List,
            Command::Save { .. } => Cmd::Save,
            Command::Restore => Cmd::Restore,
            Command::SaveConfig { .. } => Cmd::SaveConfig,
            Command::Reload => Cmd::Reload,
            Command::Vrrp { .. } => Cmd::Vrrp,
            Command::Help => Cmd::Help,
            Command::Version => Cmd::Version,
        };
        cmd.name()
    }
}

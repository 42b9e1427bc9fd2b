//! Who runs the configured scripts: keepalived's `script_user USER [GROUP]` (`global_defs`) and
//! `user USER [GROUP]` (MISC_CHECK, `vrrp_script`), and the TOML config's equivalents. Plain
//! names here; `crate::sys::script` looks them up when a script starts.

use serde::{Deserialize, Serialize};

/// A user and optionally a group to run a script as (default group: the user's primary one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptUser {
    /// The user's name.
    pub user: String,
    /// The group's name, if not the user's primary group.
    #[serde(default)]
    pub group: Option<String>,
}

impl std::fmt::Display for ScriptUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{} {g}", self.user),
            None => write!(f, "{}", self.user),
        }
    }
}

/// The global script settings: keepalived's `global_defs` `script_user USER [GROUP]` and
/// `enable_script_security`, or the TOML config's `[scripts]` table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptPolicy {
    /// Who runs scripts that name no `user` of their own (`None`: `keepalived_script` if that
    /// user exists, else `nobody`).
    #[serde(default)]
    pub user: Option<ScriptUser>,
    /// `enable_script_security`: refuse a script that runs as root (or group root) unless it
    /// and every directory above it are root's and writable by no one else.
    #[serde(default)]
    pub security: bool,
}

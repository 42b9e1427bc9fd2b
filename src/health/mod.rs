//! Keepalived-compatible health checking of real servers.
//!
//! [`config`] holds the settings (plain data from the TOML config or a keepalived.conf).

pub mod checker;
pub mod config;

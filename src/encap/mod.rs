//! Outer headers for TUN mode: IPIP (RFC 2003), GRE (RFC 2784/2890) and GUE variant 0 (over UDP).
//!
//! Each tunnel type can *build* the outer header in front of an inner IPv4 packet (director side)
//! and *strip* it again (real-server side). Building writes into a small fixed array so the driver
//! can send `[outer header, inner packet]` as two iovecs: the inner packet is never copied.

use core::fmt;
use core::str::FromStr;

/// The largest outer header any tunnel type builds: IPv4 (20) + UDP (8) + GUE (4) = 32,
/// IPv4 (20) + GRE with key (8) = 28.
pub const MAX_OUTER_HEADER: usize = 32;

/// Default GUE destination port (as in Linux `fou` and IPVS `--tun-port`).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// How a TUN-mode real server is reached.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TunnelType {
    /// IPv4-in-IPv4, IP protocol 4.
    #[default]
    Ipip,
    /// GRE, IP protocol 47, protocol type 0x0800, optional 32-bit key.
    Gre,
    /// Generic UDP Encapsulation variant 0, UDP destination port `--tun-port` (6080).
    Gue,
}

impl TunnelType {
    /// The name used on the command line, in configs and in `adm` output.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelType::Ipip => "ipip",
            TunnelType::Gre => "gre",
            TunnelType::Gue => "gue",
        }
    }
}

impl fmt::Display for TunnelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TunnelType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ipip" => Ok(TunnelType::Ipip),
            "gre" => Ok(TunnelType::Gre),
            "gue" => Ok(TunnelType::Gue),
            other => Err(format!(
                "unknown tunnel type {other:?}: expected ipip, gre or gue"
            )),
        }
    }
}

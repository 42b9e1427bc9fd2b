//! `tunlb adm --vrrp`: what the director says about its VRRP instances, and the table `adm`
//! prints from it.

use std::fmt::Write;
use std::net::IpAddr;

/// One VRRP instance as `adm --vrrp` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VrrpEntry {
    /// The instance's name (`vrrp_instance VI_1`).
    pub name: String,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
    /// The priority advertised now (configured plus track weights).
    pub priority: u8,
    /// The configured priority.
    pub base_priority: u8,
    /// The virtual router id.
    pub vrid: u8,
    /// The interface adverts go out on.
    pub interface: String,
    /// VRRP version, 2 or 3.
    pub version: u8,
    /// The address of the current master, when known (this director's own while MASTER).
    pub master: Option<IpAddr>,
    /// Milliseconds since the last state change, `None` before the first.
    pub since_ms: Option<u64>,
    /// The virtual addresses (all IPv4, or all IPv6 for VRRPv3 over IPv6).
    pub vips: Vec<IpAddr>,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Adverts received and accepted.
    pub adverts_received: u64,
}

/// The `adm --vrrp` table: one line per instance.
pub fn list_vrrp(entries: &[VrrpEntry]) -> String {
    if entries.is_empty() {
        return "No VRRP instance configured\n".to_string();
    }
    let header = [
        "Instance",
        "State",
        "Prio",
        "VRID",
        "Interface",
        "Master",
        "Since",
        "VIPs",
    ];
    let rows: Vec<[String; 8]> = entries
        .iter()
        .map(|e| {
            let prio = if e.priority == e.base_priority {
                e.priority.to_string()
            } else {
                format!("{} ({})", e.priority, e.base_priority)
            };
            let vips: Vec<String> = e.vips.iter().map(IpAddr::to_string).collect();
            [
                e.name.clone(),
                e.state.clone(),
                prio,
                e.vrid.to_string(),
                e.interface.clone(),
                e.master.map_or("-".to_string(), |m| m.to_string()),
                e.since_ms.map_or("-".to_string(), ago),
                vips.join(","),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header);
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&cells);
    }
    out
}

/// `1.5s ago`, `3m12s ago`, `2h05m ago`.
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{}.{}s ago", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s ago", s / 60, s % 60)
    } else {
        format!("{}h{:02}m ago", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    pub(crate) fn entry() -> VrrpEntry {
        VrrpEntry {
            name: "VI_1".into(),
            state: "MASTER".into(),
            priority: 100,
            base_priority: 100,
            vrid: 51,
            interface: "eth0".into(),
            version: 2,
            master: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 150, 11))),
            since_ms: Some(12_345),
            vips: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 150, 100))],
            adverts_sent: 12,
            adverts_received: 0,
        }
    }

    #[test]
    fn the_table_has_a_line_per_instance() {
        let mut backup = entry();
        backup.name = "VI_LONG_NAME".into();
        backup.state = "BACKUP".into();
        backup.priority = 40;
        backup.base_priority = 50;
        backup.master = None;
        backup.since_ms = Some(192_000);
        assert_eq!(
            list_vrrp(&[entry(), backup]),
            "Instance      State   Prio     VRID  Interface  Master          Since      VIPs\n\
             VI_1          MASTER  100      51    eth0       192.168.150.11  12.3s ago  192.168.150.100\n\
             VI_LONG_NAME  BACKUP  40 (50)  51    eth0       -               3m12s ago  192.168.150.100\n"
        );
        assert_eq!(list_vrrp(&[]), "No VRRP instance configured\n");
        assert_eq!(ago(7_300_000), "2h01m ago");
    }
}

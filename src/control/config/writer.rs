//! The config written back: [`to_toml`] is what `--save-config` and `adm --save-config`
//! write, and what [`load_str`](super::load_str) reads back as the same table and settings.

use super::DirectorSettings;
use std::fmt::Write as _;

use crate::model::HOST_NETMASK;
use crate::model::{ExpirePolicy, Forward, Protocol, ServiceSet};

/// The config that [`load_str`](super::load_str) reads back as `settings` and `set`.
pub fn to_toml(set: &ServiceSet, settings: &DirectorSettings) -> String {
    let mut out = String::new();
    let s = settings;
    let _ = writeln!(out, "[director]");
    let _ = writeln!(out, "queues = {}", s.queues);
    let _ = writeln!(out, "tun_name = {}", quote(&s.tun_name));
    let _ = writeln!(out, "tunnel_mtu = {}", s.tunnel_mtu);
    if let Some(a) = s.local_address {
        let _ = writeln!(out, "local_address = \"{a}\"");
    }
    if !s.announce.is_empty() {
        let list: Vec<String> = s.announce.iter().map(|i| quote(i)).collect();
        let _ = writeln!(out, "announce = [{}]", list.join(", "));
    }
    let t = s.timeouts;
    let _ = writeln!(
        out,
        "\n[timeouts]\ntcp = {}\ntcpfin = {}\nudp = {}",
        t.tcp, t.tcpfin, t.udp
    );
    for r in &s.tunnel_routes {
        let _ = writeln!(
            out,
            "\n[[tunnel_route]]\nprefix = \"{}\"\nvia = \"{}\"\nencap = \"{}\"",
            r.prefix,
            r.via,
            r.tunnel.kind()
        );
        if let Some(k) = r.tunnel.gre_key() {
            let _ = writeln!(out, "gre_key = {k}");
        }
        if let Some(port) = r.tunnel.gue_port() {
            let _ = writeln!(out, "gue_port = {port}");
        }
    }
    for svc in &set.services {
        let k = svc.key;
        let proto = match k.proto {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let _ = writeln!(
            out,
            "\n[[service]]\nvip = \"{}\"\nport = {}\nprotocol = \"{proto}\"\nscheduler = \"{}\"",
            k.vip, k.port, svc.scheduler
        );
        if let Some(p) = svc.persistence {
            let _ = writeln!(out, "persistence = {}", p.timeout);
            if p.netmask != HOST_NETMASK {
                let _ = writeln!(out, "netmask = \"{}\"", p.netmask);
            }
        }
        if let Some(mss) = svc.mss_clamp {
            let _ = writeln!(out, "mss_clamp = {mss}");
        }
        let policy = svc.policy;
        if policy.expire_nodest_conn != ExpirePolicy::default().expire_nodest_conn {
            let _ = writeln!(out, "expire_nodest_conn = {}", policy.expire_nodest_conn);
        }
        if policy.expire_quiescent_template != ExpirePolicy::default().expire_quiescent_template {
            let _ = writeln!(
                out,
                "expire_quiescent_template = {}",
                policy.expire_quiescent_template
            );
        }
        for d in &svc.dests {
            let _ = writeln!(
                out,
                "\n  [[service.real_server]]\n  address = \"{}\"\n  port = {}\n  weight = {}",
                d.addr, d.port, d.weight
            );
            match d.forward {
                Forward::Tunnel(tunnel) => {
                    let kind = tunnel.kind();
                    let _ = writeln!(out, "  forward = \"tunnel\"\n  tun_type = \"{kind}\"");
                    if let Some(port) = tunnel.gue_port() {
                        let _ = writeln!(out, "  tun_port = {port}");
                    }
                    if tunnel.csum() {
                        let _ = writeln!(out, "  tun_csum = true");
                    }
                    if let Some(key) = tunnel.gre_key() {
                        let _ = writeln!(out, "  gre_key = {key}");
                    }
                }
                Forward::Dr => {
                    let _ = writeln!(out, "  forward = \"dr\"");
                }
                Forward::Nat => {
                    let _ = writeln!(out, "  forward = \"nat\"");
                }
            }
            if d.u_threshold != 0 {
                let _ = writeln!(out, "  u_threshold = {}", d.u_threshold);
            }
            if d.l_threshold != 0 {
                let _ = writeln!(out, "  l_threshold = {}", d.l_threshold);
            }
        }
    }
    for r in &s.snat {
        let to: Vec<String> = r.to.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = writeln!(
            out,
            "\n[[snat]]\nsource = \"{}\"\nto = [{}]",
            r.source,
            to.join(", ")
        );
    }
    out
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// --- What the file says, before checking ------------------------------------------------------
//
// Everything that can be wrong in a way worth reporting together is read loosely (numbers as
// i64, enums and addresses as strings, required keys as options) and checked by `Validator`.

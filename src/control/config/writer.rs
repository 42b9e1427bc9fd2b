//! The config written back: [`to_toml`] is what `--save-config` and `adm --save-config`
//! write, and what [`load_str`](super::load_str) reads back as the same table and settings.

use super::DirectorSettings;
use std::fmt::Write as _;

use crate::model::Netmask;
use crate::model::{ExpirePolicy, Forward, Protocol, ServiceSet};
use crate::vrrp::config::{auth_pass_text, Garp, Notify, VrrpConfig};
use std::time::Duration;

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
    if let Some(a) = s.local_address6 {
        let _ = writeln!(out, "local_address6 = \"{a}\"");
    }
    if !s.announce.is_empty() {
        let list: Vec<String> = s.announce.iter().map(|i| quote(i)).collect();
        let _ = writeln!(out, "announce = [{}]", list.join(", "));
    }
    if let Some(t) = s.announce_table {
        let _ = writeln!(out, "announce_table = {t}");
    }
    if let Some(b) = s.sloppy_tcp {
        let _ = writeln!(out, "sloppy_tcp = {b}");
    }
    if let Some(b) = s.sloppy_sctp {
        let _ = writeln!(out, "sloppy_sctp = {b}");
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
            match p.netmask {
                m if m.is_host() => {}
                Netmask::V4(m) => {
                    let _ = writeln!(out, "netmask = \"{m}\"");
                }
                Netmask::V6(len) => {
                    let _ = writeln!(out, "netmask = {len}");
                }
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
                    if let Some(path) = s.tunnel_keys.get(&d.addr) {
                        let _ =
                            writeln!(out, "  tunnel_key = {}", quote(&path.display().to_string()));
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
    write_vrrp(&mut out, &s.vrrp);
    out
}

/// Seconds as TOML: an integer when whole, else a float.
fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{}", d.as_secs_f64())
    }
}

fn notify(out: &mut String, n: &Notify) {
    for (key, v) in n.scripts() {
        let Some(s) = v else { continue };
        let _ = match &s.user {
            None => writeln!(out, "{key} = {}", quote(&s.command)),
            Some(u) => {
                let group = u
                    .group
                    .as_ref()
                    .map_or(String::new(), |g| format!(", group = {}", quote(g)));
                writeln!(
                    out,
                    "{key} = {{ script = {}, user = {}{group} }}",
                    quote(&s.command),
                    quote(&u.user)
                )
            }
        };
    }
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(", "))
}

/// The VRRP sections: every instance with its version and garp settings written out (the
/// `[vrrp]` defaults are folded into each instance when read).
fn write_vrrp(out: &mut String, v: &VrrpConfig) {
    // `[vrrp] garp_interval` has no per-instance key: every instance has the global one.
    let garp_interval = v
        .instances
        .first()
        .map_or(Duration::ZERO, |i| i.garp.interval);
    if v.router_id.is_some() || !garp_interval.is_zero() {
        let _ = writeln!(out, "\n[vrrp]");
        if let Some(id) = &v.router_id {
            let _ = writeln!(out, "router_id = {}", quote(id));
        }
        if !garp_interval.is_zero() {
            let _ = writeln!(out, "garp_interval = {}", secs(garp_interval));
        }
    }
    let defaults = Garp::default();
    for i in &v.instances {
        let (state, version) = (i.initial.as_str(), i.version.number());
        let _ = writeln!(
            out,
            "\n[[vrrp_instance]]\nname = {}\nstate = \"{state}\"\ninterface = {}\nvirtual_router_id = {}\npriority = {}\nadvert_int = {}\nversion = {version}",
            quote(&i.name),
            quote(&i.interface),
            i.vrid,
            i.priority,
            secs(i.advert_int)
        );
        if !i.preempt {
            let _ = writeln!(out, "nopreempt = true");
        }
        if !i.preempt_delay.is_zero() {
            let _ = writeln!(out, "preempt_delay = {}", secs(i.preempt_delay));
        }
        if let Some(p) = &i.auth_pass {
            let _ = writeln!(
                out,
                "auth_type = \"PASS\"\nauth_pass = {}",
                quote(&auth_pass_text(p))
            );
        }
        let _ = writeln!(
            out,
            "virtual_ipaddress = {}",
            list(i.vips.iter().map(|v| quote(&v.to_line())))
        );
        if let Some(a) = i.unicast_src {
            let _ = writeln!(out, "unicast_src_ip = \"{a}\"");
        }
        if !i.unicast_peers.is_empty() {
            let _ = writeln!(
                out,
                "unicast_peer = {}",
                list(i.unicast_peers.iter().map(|a| format!("\"{a}\"")))
            );
        }
        if !i.track_interfaces.is_empty() {
            let _ = writeln!(
                out,
                "track_interface = {}",
                list(i.track_interfaces.iter().map(|t| match t.weight {
                    None => quote(&t.name),
                    Some(w) => format!("{{ name = {}, weight = {w} }}", quote(&t.name)),
                }))
            );
        }
        if !i.track_scripts.is_empty() {
            let _ = writeln!(
                out,
                "track_script = {}",
                list(i.track_scripts.iter().map(|t| match t.weight {
                    None => quote(&t.name),
                    Some(w) => format!("{{ name = {}, weight = {w} }}", quote(&t.name)),
                }))
            );
        }
        notify(out, &i.notify);
        let g = i.garp;
        if g.master_delay != defaults.master_delay {
            let _ = writeln!(out, "garp_master_delay = {}", g.master_delay.as_secs());
        }
        if g.master_repeat != defaults.master_repeat {
            let _ = writeln!(out, "garp_master_repeat = {}", g.master_repeat);
        }
        if let Some(r) = g.master_refresh {
            let _ = writeln!(out, "garp_master_refresh = {}", r.as_secs());
        }
        if g.master_refresh_repeat != defaults.master_refresh_repeat {
            let _ = writeln!(
                out,
                "garp_master_refresh_repeat = {}",
                g.master_refresh_repeat
            );
        }
    }
    for sc in &v.scripts {
        let _ = writeln!(
            out,
            "\n[[vrrp_script]]\nname = {}\nscript = {}\ninterval = {}\ntimeout = {}\nweight = {}\nrise = {}\nfall = {}",
            quote(&sc.name),
            quote(&sc.script),
            secs(sc.interval),
            secs(sc.timeout),
            sc.weight,
            sc.rise,
            sc.fall
        );
    }
    for g in &v.sync_groups {
        let _ = writeln!(
            out,
            "\n[[vrrp_sync_group]]\nname = {}\ngroup = {}",
            quote(&g.name),
            list(g.members.iter().map(|m| quote(m)))
        );
        notify(out, &g.notify);
    }
    if let Some(s) = &v.sync {
        let _ = writeln!(
            out,
            "\n[sync]\ninterface = {}\ninstance = {}\nid = {}\nport = {}\nttl = {}\ngroup = \"{}\"\nmaxlen = {}",
            quote(&s.interface),
            quote(&s.instance),
            s.id,
            s.port,
            s.ttl,
            s.group,
            s.maxlen
        );
        if !s.peers.is_empty() {
            let _ = writeln!(
                out,
                "peers = {}",
                list(s.peers.iter().map(|a| format!("\"{a}\"")))
            );
        }
        if let Some(k) = &s.key {
            match std::str::from_utf8(k) {
                Ok(text) => {
                    let _ = writeln!(out, "key = {}", quote(text));
                }
                Err(_) => {
                    let _ = writeln!(out, "# key: not written (not UTF-8 text): set key_file");
                }
            }
        }
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// --- What the file says, before checking ------------------------------------------------------
//
// Everything that can be wrong in a way worth reporting together is read loosely (numbers as
// i64, enums and addresses as strings, required keys as options) and checked by `Validator`.

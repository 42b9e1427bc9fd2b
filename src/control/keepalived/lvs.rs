//! The LVS part of keepalived.conf: `virtual_server_group`, `virtual_server`, `real_server`,
//! the checkers, and `global_defs` (its VRRP keys are read in [`super::vrrp`], the others
//! accepted and ignored).
//!
//! keepalived's semantics kept here: `lb_kind` (alias `lvs_method`) defaults to NAT; `lb_kind
//! TUN type gue port N csum` selects the tunnel; a `real_server` may override the service's
//! method with `lvs_method`; checker settings (`connect_timeout`, `retry`, `delay_before_retry`,
//! `warmup`, `virtualhost`) are inherited checker ← real_server ← virtual_server, and so are
//! `delay_loop` and `alpha` (the virtual_server's are the service's defaults, a real_server's
//! or checker's are that check's own); a virtual server without real servers is dropped with
//! a warning. Checkers: HTTP_GET, SSL_GET (`enable_sni`, `sni_name`), TCP_CHECK, MISC_CHECK,
//! UDP_CHECK (`payload`, `require_reply`, `min_reply_length`, `max_reply_length`) and
//! PING_CHECK.
//!
//! One tunlb extension inside `HTTP_GET`, `SSL_GET` and `TCP_CHECK` blocks:
//! `check_through_tunnel [true|false]` probes the VIP through the director's own data path
//! (see [`crate::health::target`]); refused for NAT real servers, with `connect_ip` and in the
//! other checkers ([`CheckSpec::through_tunnel_refusals`](crate::health::config::CheckSpec::through_tunnel_refusals), shared with the TOML config).
//!
//! Two tunlb extensions in a `virtual_server`, IPVS's sysctls of the same names made per
//! service ([`ExpirePolicy`]): `expire_nodest_conn [true|false]` (default true; `false` keeps
//! the flows of a real server whose check fails until it comes back) and
//! `expire_quiescent_template [true|false]` (default false; no value = true: a persistence
//! template to a server quiesced by `inhibit_on_failure` is expired at its next use).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use super::checkers::{check, Inherited};
use super::syntax::{Loc, Node};
use super::Ctx;
use crate::encap::{Tunnel, TunnelType, DEFAULT_GUE_PORT};
use crate::health::config::{DestHealth, HealthConfig, ServiceHealth};
use crate::model::validate::{self, TunnelOption};
use crate::model::RuleError;
use crate::model::{
    family_name, DestConfig, ExpirePolicy, Forward, Netmask, Persistence, Protocol, SchedulerKind,
    ServiceConfig, ServiceKey, ServiceSet, MAX_TIMEOUT, MAX_WEIGHT,
};

/// Top-level keywords keepalived knows that tunlb accepts and ignores.
const IGNORED_TOP: &[&str] = &[
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "SSL",
    "linkbeat_interfaces",
    "garp_group",
    "track_file",
    "vrrp_track_file",
    "vrrp_track_process",
    "bfd_instance",
    "net_namespace",
    "net_namespace_ipvs",
    "namespace_with_ipsets",
    "instance",
    "use_pid_dir",
    "child_wait_time",
    "vrrp_version",
];

/// The most services one `virtual_server_group` may stand for.
const MAX_GROUP_ENTRIES: usize = 1024;

/// Builds the services and their health settings from the top-level statements.
pub fn build(nodes: &[Node], cx: &mut Ctx) -> (ServiceSet, HealthConfig) {
    let mut groups: Vec<(String, Vec<(IpAddr, u16)>)> = Vec::new();
    for node in nodes {
        if node.name.text == "virtual_server_group" {
            if let Some(g) = group(node, cx) {
                if groups.iter().any(|(n, _)| *n == g.0) {
                    cx.error(
                        node.name.at,
                        format!("virtual_server_group {}: defined twice", g.0),
                    );
                } else {
                    groups.push(g);
                }
            }
        }
    }
    let mut set = ServiceSet::default();
    let mut health = HealthConfig::default();
    let mut seen: HashMap<ServiceKey, usize> = HashMap::new();
    for node in nodes {
        match node.name.text.as_str() {
            "virtual_server" => {
                let Some((keys, svc, svc_health)) = virtual_server(node, &groups, cx) else {
                    continue;
                };
                for key in keys {
                    if let Some(line) = seen.get(&key) {
                        cx.error(
                            node.name.at,
                            format!("virtual_server: {key} is already defined on line {line}"),
                        );
                        continue;
                    }
                    seen.insert(key, node.name.at.line);
                    let mut svc = ServiceConfig { key, ..svc.clone() };
                    // A group of both families: each service gets its own family's default.
                    if let Some(p) = &mut svc.persistence {
                        if !p.netmask.fits(key.vip) {
                            p.netmask = Netmask::host(key.vip);
                        }
                    }
                    set.services.push(svc);
                    health.services.push((key, svc_health.clone()));
                }
            }
            "global_defs" => {
                cx.no_block_args(node);
                for field in cx.block(node) {
                    let name = &field.name.text;
                    if super::vrrp::GLOBAL_KEYS.contains(&name.as_str())
                        || super::scripts::GLOBAL_KEYS.contains(&name.as_str())
                    {
                        continue;
                    }
                    cx.warn_once(
                        &format!("global_defs {name}"),
                        field.name.at,
                        format!("global_defs: {name} ignored (tunlb has no such global setting)"),
                    );
                }
            }
            "virtual_server_group" | "vrrp_instance" | "vrrp_script" | "vrrp_sync_group" => {}
            other if IGNORED_TOP.contains(&other) => cx.warn(
                node.name.at,
                format!("{other} ignored: keepalived knows it, tunlb does not support it"),
            ),
            _ => cx.unknown(node, "the top level"),
        }
    }
    (set, health)
}

/// A port number 0..=65535.
fn port(cx: &mut Ctx, node: &Node, i: usize) -> Option<u16> {
    cx.uint(node, i, 0, 65_535).map(|p| p as u16)
}

/// `IP` or keepalived's ranges: `A.B.C.D-E` (last octet from D to E, decimal) and
/// `X:...:Y-Z` (last 16-bit group from Y to Z, hexadecimal, as keepalived's `inet_stor`).
fn addr_range(cx: &mut Ctx, node: &Node, i: usize) -> Vec<IpAddr> {
    let Some(w) = cx.arg(node, i, "an IPv4 or IPv6 address") else {
        return Vec::new();
    };
    let bad = |cx: &mut Ctx| {
        cx.error(
            w.at,
            format!(
                "expected an IPv4 address like 192.0.2.1 or a range like 192.0.2.1-10, or an \
                 IPv6 address like 2001:db8::1 or a range like 2001:db8::1-1f, found '{}'",
                w.text
            ),
        );
        Vec::new()
    };
    let Some((first, last)) = w.text.split_once('-') else {
        return match w.text.parse::<IpAddr>() {
            Ok(a) => vec![a],
            Err(_) => bad(cx),
        };
    };
    if let Ok(a) = first.parse::<Ipv4Addr>() {
        return match last.parse::<u8>() {
            Ok(end) if end >= a.octets()[3] => {
                let [x, y, z, start] = a.octets();
                (start..=end)
                    .map(|d| IpAddr::V4(Ipv4Addr::new(x, y, z, d)))
                    .collect()
            }
            _ => bad(cx),
        };
    }
    match (first.parse::<Ipv6Addr>(), u16::from_str_radix(last, 16)) {
        (Ok(a), Ok(end)) if !last.starts_with('+') && end >= a.segments()[7] => {
            let mut seg = a.segments();
            // Bounded by MAX_GROUP_ENTRIES at the caller; collect lazily up to one past it.
            (seg[7]..=end)
                .take(MAX_GROUP_ENTRIES + 1)
                .map(|g| {
                    seg[7] = g;
                    IpAddr::V6(Ipv6Addr::from(seg))
                })
                .collect()
        }
        _ => bad(cx),
    }
}

fn group(node: &Node, cx: &mut Ctx) -> Option<(String, Vec<(IpAddr, u16)>)> {
    let name = cx.arg(node, 0, "a group name")?.text.clone();
    cx.at_most_args(node, 1);
    let mut entries = Vec::new();
    for entry in cx.block(node) {
        if entry.name.text == "fwmark" {
            cx.error(
                entry.name.at,
                "virtual_server_group: fwmark entries are not supported by tunlb".to_string(),
            );
            continue;
        }
        let as_node = Node {
            name: entry.name.clone(),
            args: std::iter::once(entry.name.clone())
                .chain(entry.args.iter().cloned())
                .collect(),
            block: None,
        };
        let addrs = addr_range(cx, &as_node, 0);
        let Some(port) = port(cx, &as_node, 1) else {
            continue;
        };
        cx.at_most(&as_node, 2);
        if entry.block.is_some() {
            cx.no_block(entry);
        }
        if entries.len() + addrs.len() > MAX_GROUP_ENTRIES {
            cx.error(
                entry.name.at,
                format!("virtual_server_group {name}: more than {MAX_GROUP_ENTRIES} addresses"),
            );
            break;
        }
        entries.extend(addrs.into_iter().map(|a| (a, port)));
    }
    if entries.is_empty() {
        cx.warn(
            node.name.at,
            format!("virtual_server_group {name} has no entries (keepalived removes it)"),
        );
    }
    Some((name, entries))
}

/// A forwarding method read from `lb_kind` / `lvs_method`.
fn forwarding(node: &Node, cx: &mut Ctx) -> Option<Forward> {
    let w = cx.arg(node, 0, "NAT, DR or TUN")?;
    let kind = node.name.text.as_str();
    let method = match w.text.as_str() {
        "NAT" => Forward::Nat,
        "DR" => Forward::Dr,
        "TUN" => Forward::tunnel(TunnelType::Ipip),
        other => {
            cx.error(
                w.at,
                format!("{kind}: expected NAT, DR or TUN, found '{other}'")
                    + &super::slash_hint(other, false),
            );
            return None;
        }
    };
    if !matches!(method, Forward::Tunnel(_)) {
        cx.at_most(node, 1);
        return Some(method);
    }
    // keepalived.conf has no GRE key.
    let (mut tun_type, mut tun_csum) = (TunnelType::Ipip, false);
    // keepalived: `TUN [type ipip|gue|gre] [port N] [csum|nocsum|remcsum]`.
    let mut port: Option<(u16, Loc)> = None;
    let mut csum_at = None;
    let mut i = 1;
    let mut ok = true;
    while let Some(opt) = node.args.get(i) {
        match opt.text.as_str() {
            "type" => match node.args.get(i + 1).map(|w| w.text.as_str()) {
                Some("ipip") => tun_type = TunnelType::Ipip,
                Some("gue") => tun_type = TunnelType::Gue,
                Some("gre") => tun_type = TunnelType::Gre,
                _ => {
                    cx.error(
                        opt.at,
                        format!("{kind} TUN type: expected ipip, gue or gre after it"),
                    );
                    ok = false;
                }
            },
            "port" => match cx.uint(node, i + 1, 1, 65_535) {
                Some(p) => port = Some((p as u16, opt.at)),
                None => ok = false,
            },
            "csum" | "nocsum" => {
                tun_csum = opt.text == "csum";
                csum_at = Some(opt.at);
                i += 1;
                continue;
            }
            "remcsum" => {
                cx.error(
                    opt.at,
                    format!(
                        "{kind} TUN remcsum: remote checksum offload is not supported by tunlb"
                    ),
                );
                ok = false;
                i += 1;
                continue;
            }
            other => {
                cx.error(
                    opt.at,
                    format!(
                        "{kind} TUN: unexpected '{other}' (expected type, port, csum or nocsum)"
                    ) + &super::slash_hint(other, false),
                );
                ok = false;
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    cx.no_block(node);
    if !ok {
        return None;
    }
    let tun_port = match (tun_type, port) {
        (TunnelType::Gue, Some((p, _))) => p,
        (TunnelType::Gue, None) => {
            cx.error(
                node.name.at,
                format!(
                    "{kind} TUN type gue: expected `port N` (keepalived: gue tunnels require port)"
                ),
            );
            return None;
        }
        (_, Some((_, at))) if !validate::tunnel_option_allowed(tun_type, TunnelOption::Port) => {
            cx.error(at, format!("{kind} TUN port: only valid with type gue"));
            return None;
        }
        (_, Some((p, _))) => p,
        (_, None) => DEFAULT_GUE_PORT,
    };
    let csum_allowed = validate::tunnel_option_allowed(tun_type, TunnelOption::Checksum);
    if let (false, Some(at), true) = (csum_allowed, csum_at, tun_csum) {
        cx.error(
            at,
            format!("{kind} TUN csum: ipip tunnels have no checksum option"),
        );
        return None;
    }
    Some(Forward::Tunnel(Tunnel::new(
        tun_type, tun_port, tun_csum, None,
    )))
}

type Built = (Vec<ServiceKey>, ServiceConfig, ServiceHealth);

fn virtual_server(
    node: &Node,
    groups: &[(String, Vec<(IpAddr, u16)>)],
    cx: &mut Ctx,
) -> Option<Built> {
    // `virtual_server IP PORT`, `virtual_server group NAME`, `virtual_server fwmark N`.
    let first = cx.arg(
        node,
        0,
        "an IPv4 or IPv6 address and a port, or `group NAME`",
    )?;
    let mut addrs: Vec<(IpAddr, u16)> = Vec::new();
    let mut name_ok = true;
    match first.text.as_str() {
        "group" => {
            let g = cx.arg(node, 1, "a virtual_server_group name")?;
            match groups.iter().find(|(n, _)| *n == g.text) {
                Some((_, entries)) => addrs.clone_from(entries),
                None => {
                    cx.error(
                        g.at,
                        format!(
                            "virtual_server group: no virtual_server_group named '{}'",
                            g.text
                        ),
                    );
                    name_ok = false;
                }
            }
        }
        "fwmark" => {
            cx.error(
                first.at,
                "virtual_server fwmark: firewall-mark services are not supported by tunlb"
                    .to_string(),
            );
            return None;
        }
        _ => {
            let a = cx.ip(node, 0);
            let p = port(cx, node, 1);
            match (a, p) {
                (Some(a), Some(p)) => addrs.push((a, p)),
                _ => name_ok = false,
            }
        }
    }
    cx.at_most_args(node, 2);
    let what = match node.args.get(1) {
        Some(second) => format!("virtual_server {} {}", first.text, second.text),
        None => format!("virtual_server {}", first.text),
    };

    let mut scheduler = None;
    let mut forward = None;
    let mut protocol = Protocol::Tcp;
    let mut persistence: Option<u32> = None;
    let mut granularity: Option<Netmask> = None;
    // The family the addresses give (keepalived's `af`); IPv4 when there are none.
    let family_v6 = addrs.first().is_some_and(|a| a.0.is_ipv6());
    let mut health = ServiceHealth::default();
    let mut policy = ExpirePolicy::default();
    let mut inherited = Inherited::default();
    let mut real_servers: Vec<&Node> = Vec::new();
    for field in cx.block(node) {
        let kw = field.name.text.as_str();
        // delay_loop and alpha here are the service's (the checks' defaults), not inherited.
        if !matches!(kw, "delay_loop" | "alpha") && inherited.handle(field, cx) {
            continue;
        }
        match kw {
            "lb_algo" | "lvs_sched" => {
                if let Some(w) = cx.arg(field, 0, "a scheduler (rr wrr lc wlc sh dh sed nq mh)") {
                    match w.text.parse::<SchedulerKind>() {
                        Ok(s) => scheduler = Some(s),
                        Err(e) => cx.error(w.at, format!("{kw}: {e}")),
                    }
                }
                cx.at_most(field, 1);
            }
            "lb_kind" | "lvs_method" => forward = forwarding(field, cx).or(forward),
            "protocol" => {
                if let Some(w) = cx.arg(field, 0, "TCP or UDP") {
                    match w.text.to_ascii_uppercase().as_str() {
                        "TCP" => protocol = Protocol::Tcp,
                        "UDP" => protocol = Protocol::Udp,
                        "SCTP" => cx.error(w.at, "protocol SCTP is not supported by tunlb".into()),
                        _ => cx.error(
                            w.at,
                            format!("protocol: expected TCP or UDP, found '{}'", w.text),
                        ),
                    }
                }
                cx.at_most(field, 1);
            }
            "persistence_timeout" => {
                // keepalived: no value = 300 s; 0 is "persistence_timeout invalid".
                if field.args.first().is_some_and(|w| w.text == "0") {
                    cx.warn(
                        field.args[0].at,
                        "persistence_timeout 0: keepalived reports \"persistence_timeout \
                         invalid\" and leaves persistence off; so does tunlb (remove the line)"
                            .to_string(),
                    );
                    persistence = None;
                } else if field.args.is_empty() {
                    persistence = Some(300);
                } else {
                    persistence = cx
                        .uint(field, 0, 1, u64::from(MAX_TIMEOUT))
                        .map(|t| t as u32)
                        .or(persistence);
                }
                cx.at_most(field, 1);
            }
            "persistence_granularity" => {
                // keepalived: a prefix length 1..128 for an IPv6 service, else a netmask.
                if family_v6 {
                    if let Some(len) = cx.uint(field, 0, 1, 128) {
                        granularity = Some(Netmask::V6(len as u8));
                    }
                } else if let Some(mask) = cx.ipv4(field, 0) {
                    match validate::netmask(mask) {
                        Ok(mask) => granularity = Some(Netmask::V4(mask)),
                        Err(e) => cx.error(field.args[0].at, rule_message(&what, &e)),
                    }
                }
                cx.at_most(field, 1);
            }
            "delay_loop" => {
                if let Some(d) = cx.seconds(field, 0, 0.001, f64::from(MAX_TIMEOUT)) {
                    health.delay_loop = d;
                }
                cx.at_most(field, 1);
            }
            "ha_suspend" => {
                health.ha_suspend = true;
                cx.warn(
                    field.name.at,
                    format!(
                        "{what}: ha_suspend accepted, acted on once VRRP exists (until then the \
                         checks always run)"
                    ),
                );
                cx.at_most(field, 0);
            }
            "alpha" | "omega" => {
                let on = !matches!(
                    field.args.first().map(|w| w.text.as_str()),
                    Some("false" | "off" | "no")
                );
                if kw == "alpha" {
                    health.alpha = on;
                } else {
                    health.omega = on;
                }
                cx.at_most(field, 1);
            }
            "quorum" => {
                if let Some(q) = cx.uint(field, 0, 1, u64::from(u32::MAX)) {
                    health.quorum = q as u32;
                }
                cx.at_most(field, 1);
            }
            "hysteresis" => {
                if let Some(h) = cx.uint(field, 0, 0, u64::from(u32::MAX)) {
                    health.hysteresis = h as u32;
                }
                cx.at_most(field, 1);
            }
            "quorum_up" | "quorum_down" => {
                if let Some(s) = super::scripts::notify_script(field, &what, cx) {
                    // One user per service runs both (`ServiceHealth::script_user`).
                    match (&s.user, &health.script_user) {
                        (Some(u), Some(other)) if u != other => cx.error(
                            field.args[1].at,
                            format!(
                                "{what}: {kw} runs as {u}, the other quorum script as {other}: tunlb runs both quorum scripts of a service as one user"
                            ),
                        ),
                        (Some(u), _) => health.script_user = Some(u.clone()),
                        (None, _) => {}
                    }
                    if kw == "quorum_up" {
                        health.quorum_up = Some(s.command);
                    } else {
                        health.quorum_down = Some(s.command);
                    }
                }
            }
            "sorry_server" => {
                let a = cx.ipv4(field, 0);
                let p = port(cx, field, 1);
                if let (Some(a), Some(p)) = (a, p) {
                    health.sorry_server = Some(SocketAddrV4::new(a, p));
                }
                cx.at_most(field, 2);
            }
            "sorry_server_inhibit" => {
                health.sorry_server_inhibit = true;
                cx.at_most(field, 1);
            }
            "ip_family" => {
                // keepalived: inet or inet6, which must be the addresses' family.
                if let Some(w) = cx.arg(field, 0, "inet or inet6") {
                    let v6 = match w.text.as_str() {
                        "inet" => Some(false),
                        "inet6" => Some(true),
                        other => {
                            cx.error(
                                w.at,
                                format!(
                                    "ip_family: unknown address family '{other}' (expected inet or inet6)"
                                ),
                            );
                            None
                        }
                    };
                    let clash = v6.and_then(|v6| addrs.iter().find(|a| a.0.is_ipv6() != v6));
                    if let Some((a, _)) = clash {
                        cx.error(
                            w.at,
                            format!(
                                "{what}: ip_family {} conflicts with the virtual server's address \
                                 family ({a} is {})",
                                w.text,
                                family_name(*a)
                            ),
                        );
                    }
                }
                cx.at_most(field, 1);
            }
            "expire_nodest_conn" => {
                if let Some(on) = flag(field, cx) {
                    policy.expire_nodest_conn = on;
                }
            }
            "expire_quiescent_template" => {
                if let Some(on) = flag(field, cx) {
                    policy.expire_quiescent_template = on;
                }
            }
            "real_server" => real_servers.push(field),
            "smtp_alert"
            | "snmp_name"
            | "persistence_engine"
            | "sorry_server_lvs_method"
            | "hashed"
            | "ops"
            | "flag-1"
            | "flag-2"
            | "flag-3"
            | "sh-port"
            | "sh-fallback"
            | "mh-port"
            | "mh-fallback"
            | "weight" => {
                cx.no_block(field);
                cx.warn(
                    field.name.at,
                    format!("{what}: {kw} ignored (not supported by tunlb)"),
                );
            }
            _ => cx.unknown(field, &what),
        }
    }
    node.block.as_ref()?;
    if real_servers.is_empty() {
        cx.warn(
            node.name.at,
            format!("{what} has no real servers: keepalived ignores it, and so does tunlb"),
        );
        return None;
    }
    let persistence = match (persistence, granularity) {
        (None, None) => None,
        // keepalived: a granularity without a timeout turns persistence on with 300 s.
        (t, g) => Some(Persistence {
            timeout: t.unwrap_or(300),
            netmask: g.unwrap_or(Netmask::host(
                addrs.first().map_or(Ipv4Addr::UNSPECIFIED.into(), |a| a.0),
            )),
        }),
    };
    let service_port = addrs.first().map_or(0, |a| a.1);
    let zero_port = addrs
        .iter()
        .find_map(|a| validate::service_port(a.1, persistence.as_ref()).err());
    if let (true, Some(e)) = (name_ok, zero_port) {
        cx.error(node.name.at, rule_message(&what, &e));
    }
    let forward = forward.unwrap_or(Forward::Nat);
    let mut dests: Vec<DestConfig> = Vec::new();
    for rs in real_servers {
        let Some((dest, dh)) = real_server(rs, &what, service_port, forward, &inherited, cx) else {
            continue;
        };
        // keepalived skips a real server of the other family unless it is tunnelled; tunlb
        // refuses it (every VIP of a group is checked).
        let mismatch = addrs
            .iter()
            .find_map(|a| validate::dest_family(a.0, dest.addr, &dest.forward).err());
        if let Some(e) = mismatch {
            cx.error(rs.name.at, rule_message(&what, &e));
            continue;
        }
        if let Err(e) = validate::unique_dest(&dests, dest.addr, dest.port) {
            cx.error(rs.name.at, rule_message(&what, &e));
            continue;
        }
        if !dh.checks.is_empty() || dh.inhibit_on_failure {
            health.per_dest.push(((dest.addr, dest.port), dh));
        }
        dests.push(dest);
    }
    if !name_ok {
        return None;
    }
    let keys = addrs
        .into_iter()
        .map(|(vip, port)| ServiceKey {
            vip,
            port,
            proto: protocol,
        })
        .collect();
    let svc = ServiceConfig {
        key: ServiceKey {
            vip: Ipv4Addr::UNSPECIFIED.into(),
            port: service_port,
            proto: protocol,
        },
        // keepalived's default scheduler when lb_algo is absent is wlc, as ipvsadm's.
        scheduler: scheduler.unwrap_or_default(),
        persistence,
        mss_clamp: None,
        dests,
        policy,
    };
    Some((keys, svc, health))
}

/// A broken model rule in keepalived.conf's words; `what` is the `virtual_server ...` or
/// `... real_server ...` it is about.
fn rule_message(what: &str, e: &RuleError) -> String {
    match e {
        RuleError::ZeroPortNeedsPersistence => {
            format!("{what}: port 0 (every port) needs persistence_timeout")
        }
        RuleError::NetmaskNotContiguous(mask) => format!(
            "persistence_granularity: expected a contiguous netmask like 255.255.255.0, found {mask}"
        ),
        RuleError::ThresholdsOutOfOrder { lower, upper } => {
            format!("{what}: lthreshold ({lower}) must not exceed uthreshold ({upper})")
        }
        RuleError::DestPortMismatch { service_port } => format!(
            "{what}: port must be {service_port} (the service's port): TUN and DR cannot change the port"
        ),
        RuleError::DuplicateDest { addr, port } => {
            let rs = crate::model::fmt_addr_port(*addr, port);
            format!("{what}: real_server {rs} is listed twice")
        }
        RuleError::Ipv6PrefixLen(len) => format!(
            "persistence_granularity: expected an IPv6 prefix length 1 to 128, found {len}"
        ),
        RuleError::NetmaskFamily { .. } | RuleError::FamilyMismatch { .. } => {
            format!("{what}: {e}")
        }
        // Ranges are checked where the number is read, with the keyword's own bounds.
        RuleError::PersistenceTimeout(_) | RuleError::Weight(_) | RuleError::Threshold(_) => {
            format!("{what}: {e}")
        }
    }
}

/// A switch `KEYWORD [true|false]` (also on/off, yes/no, 1/0): no value is true.
fn flag(field: &Node, cx: &mut Ctx) -> Option<bool> {
    cx.at_most(field, 1);
    match field.args.first().map(|w| w.text.as_str()) {
        None | Some("true" | "on" | "yes" | "1") => Some(true),
        Some("false" | "off" | "no" | "0") => Some(false),
        Some(other) => {
            cx.error(
                field.args[0].at,
                format!(
                    "{}: expected true or false, found '{other}'",
                    field.name.text
                ),
            );
            None
        }
    }
}

fn real_server(
    node: &Node,
    vs: &str,
    service_port: u16,
    forward: Forward,
    vs_inherited: &Inherited,
    cx: &mut Ctx,
) -> Option<(DestConfig, DestHealth)> {
    let addr = cx.ip(node, 0);
    let port = match node.args.get(1) {
        Some(_) => port(cx, node, 1),
        None => Some(service_port),
    };
    cx.at_most_args(node, 2);
    let what = format!(
        "{vs} real_server {}",
        node.args
            .iter()
            .take(2)
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut weight = 1u32;
    let mut forward = forward;
    let mut u_threshold = 0u32;
    let mut l_threshold = 0u32;
    let mut inherited = Inherited::default();
    let mut check_nodes: Vec<&Node> = Vec::new();
    for field in cx.block(node) {
        if inherited.handle(field, cx) {
            continue;
        }
        let kw = field.name.text.as_str();
        match kw {
            "weight" => {
                if let Some(w) = cx.uint(field, 0, 0, u64::from(MAX_WEIGHT)) {
                    weight = w as u32;
                }
                cx.at_most(field, 1);
            }
            "lvs_method" => forward = forwarding(field, cx).unwrap_or(forward),
            "uthreshold" | "lthreshold" => {
                let t = cx
                    .uint(field, 0, 0, u64::from(i32::MAX as u32))
                    .unwrap_or(0) as u32;
                if kw == "uthreshold" {
                    u_threshold = t;
                } else {
                    l_threshold = t;
                }
                cx.at_most(field, 1);
            }
            "HTTP_GET" | "SSL_GET" | "TCP_CHECK" | "MISC_CHECK" | "UDP_CHECK" | "PING_CHECK" => {
                check_nodes.push(field)
            }
            "SMTP_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                cx.error(
                    field.name.at,
                    format!("{what}: {kw} is not supported by tunlb (use HTTP_GET, SSL_GET, TCP_CHECK, MISC_CHECK, UDP_CHECK or PING_CHECK)"),
                );
            }
            "notify_up" | "notify_down" | "smtp_alert" | "snmp_name" => {
                cx.no_block(field);
                cx.warn(
                    field.name.at,
                    format!("{what}: {kw} ignored (not supported by tunlb per real server)"),
                );
            }
            _ => cx.unknown(field, &what),
        }
    }
    if let Err(e) = validate::thresholds(u_threshold, l_threshold) {
        cx.error(node.name.at, rule_message(&what, &e));
    }
    let port = port?;
    let port = validate::real_server_port(service_port, &forward, validate::zero_is_unset(port))
        .unwrap_or_else(|e| {
            cx.error(
                node.args.get(1).map_or(node.name.at, |w| w.at),
                rule_message(&what, &e),
            );
            port
        });
    let inherited = vs_inherited.under(&inherited);
    let checks = check_nodes
        .into_iter()
        .filter_map(|c| check(c, &what, addr, forward == Forward::Nat, &inherited, cx))
        .collect();
    let dest = DestConfig {
        addr: addr?,
        port,
        weight,
        forward,
        u_threshold,
        l_threshold,
    };
    let dh = DestHealth {
        checks,
        inhibit_on_failure: inherited.inhibit_on_failure,
    };
    Some((dest, dh))
}

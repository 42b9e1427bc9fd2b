//! The VRRP part of keepalived.conf into [`VrrpConfig`]: `vrrp_instance`, `vrrp_script`,
//! `vrrp_sync_group`, and in `global_defs` `router_id`, `vrrp_version`, `vrrp_garp_*` and
//! `lvs_sync_daemon`.
//!
//! Read as keepalived 2.2 reads them (keepalived's vrrp_parser.c, global_parser.c and the
//! checks of vrrp.c's `vrrp_complete_instance`): the same keywords, ranges and defaults
//! (`priority` 100, or 255 for a `state MASTER` instance without one; `advert_int` 1 s;
//! `garp_master_delay` 5 s; `lvs_sync_daemon`'s `id` defaults to the instance's VRID). What
//! keepalived corrects with a message (auth in VRRPv3, `nopreempt` with `state MASTER`) is
//! corrected with a warning; what it refuses, and what tunlb cannot run (AH authentication,
//! VMACs, `track_file`...), is an error naming the keyword; harmless keywords tunlb does not
//! implement (`smtp_alert`, `debug`, `garp_lower_prio_*`...) are warnings. Cross references
//! (track_script, sync group members, the sync instance) are checked by
//! [`VrrpConfig::finish`], shared with the TOML config.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::syntax::{Loc, Node, Word};
use super::Ctx;
use crate::vrrp::config::{
    auth_pass_bytes, is_ifname, parse_seconds, parse_vip, Garp, InitialState, InstanceConfig,
    Notify, NotifyScript, ScriptConfig, Subject, SyncConfig, SyncGroupConfig, TrackInterface,
    TrackScript, Version, VrrpConfig,
};

/// `global_defs` keywords read here; [`super::lvs`] warns about the others.
pub const GLOBAL_KEYS: &[&str] = &[
    "router_id",
    "vrrp_version",
    "vrrp_garp_master_delay",
    "vrrp_garp_master_repeat",
    "vrrp_garp_master_refresh",
    "vrrp_garp_master_refresh_repeat",
    "vrrp_garp_interval",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
    "lvs_sync_daemon",
];

/// Instance keywords keepalived knows that change nothing tunlb does: accepted with a warning.
const IGNORED_INSTANCE: &[&str] = &[
    "debug",
    "smtp_alert",
    "notify_priority_changes",
    "notify_deleted",
    "notify_master_rx_lower_pri",
    "dont_track_primary",
    "skip_check_adv_addr",
    "strict_mode",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "kernel_rx_buf_size",
    "promote_secondaries",
    "linkbeat_use_polling",
    "accept",
    "no_accept",
    "track_src_ip",
    "check_unicast_src",
    "unicast_fault_no_peer",
    "old_unicast_checksum",
    "vmac_garp_intvl",
    "garp_extra_if",
    "timer_expired_backup",
    "owner_ignore_adverts",
    "no_virtual_ipaddress",
];

/// Instance keywords keepalived knows that would change the wire or the addresses in ways
/// tunlb does not implement: errors, so a peer is never silently out of step.
const UNSUPPORTED_INSTANCE: &[&str] = &[
    "use_vmac",
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "native_ipv6",
    "vrf",
    "track_file",
    "track_process",
    "track_bfd",
    "mcast_dst_ip",
    "unicast_ttl",
    "virtual_routes",
    "virtual_rules",
    "v3_checksum_as_v2",
    "down_timer_adverts",
    "auth_hmac",
];

/// Whether a `virtual_ipaddress` entry (`ADDR[/LEN]`) is IPv6 (`Some(true)`), IPv4
/// (`Some(false)`), or not an address at all (`None`, left to [`parse_vip`]'s error).
fn vip_is_ipv6(spec: &str) -> Option<bool> {
    let ip = spec.split_once('/').map_or(spec, |(ip, _)| ip);
    if ip.parse::<std::net::Ipv6Addr>().is_ok() {
        Some(true)
    } else if ip.parse::<Ipv4Addr>().is_ok() {
        Some(false)
    } else {
        None
    }
}

/// Where each part of the config was written, to place [`VrrpConfig::finish`]'s issues.
#[derive(Default)]
struct Places {
    instances: Vec<InstancePlaces>,
    scripts: Vec<Loc>,
    groups: Vec<(Loc, Vec<Loc>)>,
    sync_instance: Loc,
}

#[derive(Default)]
struct InstancePlaces {
    name: Loc,
    fields: Vec<(&'static str, Loc)>,
    track_scripts: Vec<Loc>,
    track_interfaces: Vec<Loc>,
}

impl Places {
    fn of(&self, subject: Subject) -> Loc {
        let inst = |i: usize| self.instances.get(i);
        let found = match subject {
            Subject::Instance(i) => inst(i).map(|p| p.name),
            Subject::Field(i, kw) => inst(i).map(|p| {
                p.fields
                    .iter()
                    .find(|(k, _)| *k == kw)
                    .map_or(p.name, |(_, at)| *at)
            }),
            Subject::TrackScript(i, j) => inst(i).and_then(|p| p.track_scripts.get(j).copied()),
            Subject::TrackInterface(i, j) => {
                inst(i).and_then(|p| p.track_interfaces.get(j).copied())
            }
            Subject::Script(k) => self.scripts.get(k).copied(),
            Subject::SyncGroup(g) => self.groups.get(g).map(|(at, _)| *at),
            Subject::Member(g, m) => self.groups.get(g).and_then(|(_, ms)| ms.get(m).copied()),
            Subject::SyncInstance => Some(self.sync_instance),
        };
        found.unwrap_or_default()
    }
}

/// The global VRRP settings of `global_defs`.
struct Globals {
    router_id: Option<String>,
    version: Version,
    garp: Garp,
    /// The sync settings and whether `id` was given.
    sync: Option<(SyncConfig, bool)>,
}

/// Builds the VRRP config from the top-level statements, reporting every problem in `cx`.
pub fn build(nodes: &[Node], cx: &mut Ctx) -> VrrpConfig {
    let mut places = Places::default();
    let mut globals = Globals {
        router_id: None,
        version: Version::V2,
        garp: Garp::default(),
        sync: None,
    };
    for node in nodes.iter().filter(|n| n.name.text == "global_defs") {
        let Some(block) = &node.block else { continue };
        for field in &block.children {
            global_key(field, &mut globals, &mut places, cx);
        }
    }
    let mut vrrp = VrrpConfig {
        router_id: globals.router_id.clone(),
        ..VrrpConfig::default()
    };
    for node in nodes {
        let kind = node.name.text.as_str();
        if !matches!(kind, "vrrp_instance" | "vrrp_script" | "vrrp_sync_group") {
            continue;
        }
        let Some(name) = cx.arg(node, 0, "a name").map(|w| w.text.clone()) else {
            cx.block(node);
            continue;
        };
        if let Some(extra) = node.args.get(1) {
            cx.error(
                extra.at,
                format!("{kind} {name}: unexpected '{}' (expected '{{')", extra.text),
            );
        }
        let body = cx.block(node);
        match kind {
            "vrrp_instance" => {
                let mut p = InstancePlaces {
                    name: node.name.at,
                    ..InstancePlaces::default()
                };
                let (version, garp) = (globals.version, globals.garp);
                let inst = instance(
                    &name,
                    body,
                    node,
                    (version, garp),
                    &mut p,
                    &mut globals.sync,
                    cx,
                );
                vrrp.instances.push(inst);
                places.instances.push(p);
            }
            "vrrp_script" => {
                vrrp.scripts.push(script(&name, body, node, cx));
                places.scripts.push(node.name.at);
            }
            _ => {
                let (group, at) = sync_group(&name, body, cx);
                vrrp.sync_groups.push(group);
                places.groups.push((node.name.at, at));
            }
        }
    }
    if let Some((mut sync, id_given)) = globals.sync.take() {
        if !id_given {
            if let Some(i) = vrrp.instance(&sync.instance) {
                sync.id = i.vrid;
            }
        }
        vrrp.sync = Some(sync);
    }
    for issue in vrrp.finish() {
        let at = places.of(issue.subject);
        if issue.error {
            cx.error(at, issue.message);
        } else {
            cx.warn(at, issue.message);
        }
    }
    vrrp
}

/// A `global_defs` keyword, if it is one of [`GLOBAL_KEYS`].
fn global_key(field: &Node, g: &mut Globals, places: &mut Places, cx: &mut Ctx) {
    let what = format!("global_defs {}", field.name.text);
    match field.name.text.as_str() {
        "router_id" => {
            if let Some(w) = cx.arg(field, 0, "a name") {
                g.router_id = Some(w.text.clone());
            }
            cx.at_most(field, 1);
        }
        "vrrp_version" => {
            if let Some(v) = cx.uint(field, 0, 2, 3) {
                g.version = if v == 3 { Version::V3 } else { Version::V2 };
            }
            cx.at_most(field, 1);
        }
        "vrrp_garp_master_delay" => {
            if let Some(s) = cx.uint(field, 0, 0, u64::from(u32::MAX)) {
                g.garp.master_delay = Duration::from_secs(s);
            }
            cx.at_most(field, 1);
        }
        "vrrp_garp_master_repeat" => {
            if let Some(n) = cx.uint(field, 0, 1, u64::from(u32::MAX)) {
                g.garp.master_repeat = n as u32;
            }
            cx.at_most(field, 1);
        }
        "vrrp_garp_master_refresh" => {
            if let Some(s) = cx.uint(field, 0, 0, u64::from(u32::MAX)) {
                g.garp.master_refresh = (s > 0).then(|| Duration::from_secs(s));
            }
            cx.at_most(field, 1);
        }
        "vrrp_garp_master_refresh_repeat" => {
            if let Some(n) = cx.uint(field, 0, 1, u64::from(u32::MAX)) {
                g.garp.master_refresh_repeat = n as u32;
            }
            cx.at_most(field, 1);
        }
        "vrrp_garp_interval" => {
            if let Some(d) = seconds(
                field,
                0,
                Duration::from_micros(1),
                Duration::from_secs(60),
                cx,
            ) {
                g.garp.interval = d;
            }
            cx.at_most(field, 1);
        }
        "vrrp_mcast_group4" => {
            if let Some(a) = cx.ipv4(field, 0) {
                if a != Ipv4Addr::new(224, 0, 0, 18) {
                    cx.error(
                        field.args[0].at,
                        format!("{what}: only 224.0.0.18 (VRRP's group) is supported by tunlb, found {a}"),
                    );
                }
            }
            cx.at_most(field, 1);
        }
        "vrrp_mcast_group6" => {
            if let Some(a) = cx.ip(field, 0) {
                if a != crate::vrrp::wire::MULTICAST_GROUP6 {
                    cx.error(
                        field.args[0].at,
                        format!("{what}: only ff02::12 (VRRP's IPv6 group) is supported by tunlb, found {a}"),
                    );
                }
            }
            cx.at_most(field, 1);
        }
        "lvs_sync_daemon" => lvs_sync_daemon(field, g, places, cx),
        _ => {}
    }
}

/// `lvs_sync_daemon IF [inst] INSTANCE [id N] [maxlen L] [port P] [ttl T] [group ADDR]`.
fn lvs_sync_daemon(field: &Node, g: &mut Globals, places: &mut Places, cx: &mut Ctx) {
    cx.no_block(field);
    if g.sync.is_some() {
        cx.error(
            field.name.at,
            "lvs_sync_daemon: given twice (keepalived ignores the second)".to_string(),
        );
        return;
    }
    let Some(ifname) = cx.arg(field, 0, "an interface and a vrrp_instance") else {
        return;
    };
    if !is_ifname(&ifname.text) {
        cx.error(
            ifname.at,
            format!(
                "lvs_sync_daemon: '{}' is not an interface name (1 to 15 characters, no '/', ':' or spaces)",
                ifname.text
            ),
        );
    }
    let mut sync = SyncConfig::new(&ifname.text, "");
    let mut instance: Option<&Word> = None;
    let mut id_given = false;
    let args = &field.args;
    let mut i = 1;
    while let Some(w) = args.get(i) {
        let value = args.get(i + 1);
        let need = |cx: &mut Ctx, what: &str| {
            if value.is_none() {
                cx.error(
                    w.at,
                    format!("lvs_sync_daemon: expected {what} after '{}'", w.text),
                );
            }
            value
        };
        let num = |cx: &mut Ctx, v: &Word, min: u64, max: u64| -> Option<u64> {
            match v.text.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    cx.error(
                        v.at,
                        format!(
                            "lvs_sync_daemon {}: expected an integer from {min} to {max}, found '{}'",
                            w.text, v.text
                        ),
                    );
                    None
                }
            }
        };
        match w.text.as_str() {
            "inst" => {
                if let Some(v) = need(cx, "a vrrp_instance name") {
                    if instance.is_some() {
                        cx.error(
                            v.at,
                            "lvs_sync_daemon: the instance is given twice".to_string(),
                        );
                    }
                    instance = Some(v);
                }
                i += 2;
            }
            "id" => {
                if let Some(v) = need(cx, "a sync id (0 to 255)") {
                    if let Some(n) = num(cx, v, 0, 255) {
                        sync.id = n as u8;
                        id_given = true;
                    }
                }
                i += 2;
            }
            "maxlen" => {
                if let Some(v) = need(cx, "a length (1 to 65507)") {
                    if let Some(n) = num(cx, v, 1, 65_535 - 20 - 8) {
                        sync.maxlen = n as u16;
                    }
                }
                i += 2;
            }
            "port" => {
                if let Some(v) = need(cx, "a port (1 to 65535)") {
                    if let Some(n) = num(cx, v, 1, 65_535) {
                        sync.port = n as u16;
                    }
                }
                i += 2;
            }
            "ttl" => {
                if let Some(v) = need(cx, "a TTL (1 to 255)") {
                    if let Some(n) = num(cx, v, 1, 255) {
                        sync.ttl = n as u8;
                    }
                }
                i += 2;
            }
            "group" => {
                if let Some(v) = need(cx, "a multicast group address") {
                    match v.text.parse::<Ipv4Addr>() {
                        Ok(a) if a.is_multicast() => sync.group = a,
                        _ => cx.error(
                            v.at,
                            format!(
                                "lvs_sync_daemon group: expected an IPv4 multicast address like 224.0.0.81, found '{}'",
                                v.text
                            ),
                        ),
                    }
                }
                i += 2;
            }
            // keepalived's old form: `lvs_sync_daemon IF INSTANCE [SYNCID]`.
            _ if i == 1 => {
                instance = Some(w);
                i += 1;
            }
            text if i == 2 && instance.is_some() && text.bytes().all(|b| b.is_ascii_digit()) => {
                if let Some(n) = num(cx, w, 0, 255) {
                    cx.warn(
                        w.at,
                        "lvs_sync_daemon: write `id N` for the sync id (keepalived asks for the keyword too)"
                            .to_string(),
                    );
                    sync.id = n as u8;
                    id_given = true;
                }
                i += 1;
            }
            other => {
                cx.error(
                    w.at,
                    format!(
                        "lvs_sync_daemon: unexpected '{other}' (expected inst, id, maxlen, port, ttl or group)"
                    ) + &super::slash_hint(other, false),
                );
                break;
            }
        }
    }
    let Some(instance) = instance else {
        cx.error(
            field.name.at,
            "lvs_sync_daemon: expected the vrrp_instance whose MASTER sends after the interface (lvs_sync_daemon eth0 VI_1)"
                .to_string(),
        );
        return;
    };
    sync.instance = instance.text.clone();
    places.sync_instance = instance.at;
    g.sync = Some((sync, id_given));
}

/// A time in seconds (keepalived's decimal syntax) within `min..=max`.
fn seconds(node: &Node, i: usize, min: Duration, max: Duration, cx: &mut Ctx) -> Option<Duration> {
    let w = cx.arg(node, i, "a time in seconds")?;
    match parse_seconds(&w.text) {
        Some(d) if d >= min && d <= max => Some(d),
        _ => {
            cx.error(
                w.at,
                format!(
                    "{}: expected a time in seconds from {} to {}, found '{}'",
                    node.name.text,
                    min.as_secs_f64(),
                    max.as_secs_f64(),
                    w.text
                ),
            );
            None
        }
    }
}

/// A weight from -253 to 253 at `args[i]`; `reverse` after it is refused.
fn weight(node_what: &str, args: &[Word], i: usize, cx: &mut Ctx, at: Loc) -> Option<i32> {
    let Some(w) = args.get(i) else {
        cx.error(
            at,
            format!("{node_what}: expected a weight from -253 to 253 after 'weight'"),
        );
        return None;
    };
    let v = match w.text.parse::<i32>() {
        Ok(v) if (-253..=253).contains(&v) => Some(v),
        _ => {
            cx.error(
                w.at,
                format!(
                    "{node_what}: weight: expected an integer from -253 to 253, found '{}'",
                    w.text
                ),
            );
            None
        }
    };
    if let Some(extra) = args.get(i + 1) {
        if extra.text == "reverse" {
            cx.error(
                extra.at,
                format!("{node_what}: weight ... reverse is not supported by tunlb"),
            );
        } else {
            cx.error(
                extra.at,
                format!("{node_what}: unexpected '{}' after the weight", extra.text)
                    + &super::slash_hint(&extra.text, false),
            );
        }
    }
    v
}

/// The rest of a line as one command (`script /path/script arg`, or quoted).
fn command(field: &Node, what: &str, cx: &mut Ctx) -> Option<String> {
    cx.no_block(field);
    if field.args.is_empty() {
        cx.error(
            field.name.at,
            format!("{what}: {}: expected a command after it", field.name.text),
        );
        return None;
    }
    let words: Vec<&str> = field.args.iter().map(|w| w.text.as_str()).collect();
    Some(words.join(" "))
}

fn set_notify(slot: &mut Option<NotifyScript>, field: &Node, what: &str, cx: &mut Ctx) {
    if let Some(c) = super::scripts::notify_script(field, what, cx) {
        if slot.is_some() {
            cx.error(
                field.name.at,
                format!(
                    "{what}: {} given twice (keepalived ignores the second)",
                    field.name.text
                ),
            );
        } else {
            *slot = Some(c);
        }
    }
}

/// `notify_*` of an instance or a sync group; false if `field` is not one.
fn notify_key(notify: &mut Notify, field: &Node, what: &str, cx: &mut Ctx) -> bool {
    let slot = match field.name.text.as_str() {
        "notify_master" => &mut notify.master,
        "notify_backup" => &mut notify.backup,
        "notify_fault" => &mut notify.fault,
        "notify_stop" => &mut notify.stop,
        "notify" => &mut notify.any,
        _ => return false,
    };
    set_notify(slot, field, what, cx);
    true
}

fn instance(
    name: &str,
    body: &[Node],
    node: &Node,
    (version, garp): (Version, Garp),
    p: &mut InstancePlaces,
    sync: &mut Option<(SyncConfig, bool)>,
    cx: &mut Ctx,
) -> InstanceConfig {
    let what = format!("vrrp_instance {name}");
    let mut inst = InstanceConfig::new(name, "", 0);
    inst.version = version;
    inst.garp = garp;
    let mut vrid = false;
    let mut priority_set = false;
    let mut state_set = false;
    let mut interface = false;
    // The first address of `virtual_ipaddress` and whether it is IPv6: keepalived makes the
    // instance that family and refuses the other.
    let mut family: Option<(bool, String)> = None;
    let mut seen: Vec<&str> = Vec::new();
    for field in body {
        let kw = field.name.text.as_str();
        // Keywords that take one value are refused twice (keepalived silently keeps the last
        // or, for `state`, the MASTER one).
        if matches!(
            kw,
            "state"
                | "interface"
                | "virtual_router_id"
                | "priority"
                | "advert_int"
                | "version"
                | "preempt_delay"
                | "unicast_src_ip"
                | "mcast_src_ip"
                | "authentication"
                | "garp_master_delay"
                | "garp_master_repeat"
                | "garp_master_refresh"
                | "garp_master_refresh_repeat"
        ) {
            if seen.contains(&kw) {
                cx.error(field.name.at, format!("{what}: {kw} given twice"));
                continue;
            }
            seen.push(kw);
        }
        let place = match kw {
            "state" | "priority" | "advert_int" | "authentication" | "nopreempt"
            | "preempt_delay" | "virtual_ipaddress" | "virtual_router_id" | "unicast_src_ip"
            | "mcast_src_ip" | "unicast_peer" => Some(match kw {
                "state" => "state",
                "unicast_src_ip" | "mcast_src_ip" => "unicast_src_ip",
                "unicast_peer" => "unicast_peer",
                "priority" => "priority",
                "advert_int" => "advert_int",
                "authentication" => "authentication",
                "nopreempt" => "nopreempt",
                "preempt_delay" => "preempt_delay",
                "virtual_ipaddress" => "virtual_ipaddress",
                _ => "virtual_router_id",
            }),
            _ => None,
        };
        if let Some(k) = place {
            p.fields.push((k, field.name.at));
        }
        match kw {
            "state" => {
                state_set = true;
                if let Some(w) = cx.arg(field, 0, "MASTER or BACKUP") {
                    match w.text.as_str() {
                        "MASTER" => inst.initial = InitialState::Master,
                        "BACKUP" => inst.initial = InitialState::Backup,
                        other => cx.error(
                            w.at,
                            format!("{what}: state: expected MASTER or BACKUP, found '{other}'"),
                        ),
                    }
                }
                cx.at_most(field, 1);
            }
            "interface" => {
                interface = true;
                if let Some(w) = cx.arg(field, 0, "an interface name") {
                    if is_ifname(&w.text) {
                        inst.interface = w.text.clone();
                    } else {
                        cx.error(
                            w.at,
                            format!("{what}: interface: '{}' is not an interface name (1 to 15 characters, no '/', ':' or spaces)", w.text),
                        );
                    }
                }
                cx.at_most(field, 1);
            }
            "virtual_router_id" => {
                vrid = true;
                if let Some(v) = cx.uint(field, 0, 1, 255) {
                    inst.vrid = v as u8;
                }
                cx.at_most(field, 1);
            }
            "priority" => {
                priority_set = true;
                if let Some(v) = cx.uint(field, 0, 1, 255) {
                    inst.priority = v as u8;
                }
                cx.at_most(field, 1);
            }
            "advert_int" => {
                if let Some(d) = seconds(
                    field,
                    0,
                    Duration::from_millis(10),
                    Duration::from_secs(255),
                    cx,
                ) {
                    inst.advert_int = d;
                }
                cx.at_most(field, 1);
            }
            "version" => {
                if let Some(v) = cx.uint(field, 0, 2, 3) {
                    inst.version = if v == 3 { Version::V3 } else { Version::V2 };
                }
                cx.at_most(field, 1);
            }
            "nopreempt" => {
                inst.preempt = false;
                cx.at_most(field, 0);
            }
            "preempt" => {
                inst.preempt = true;
                cx.at_most(field, 0);
            }
            "preempt_delay" => {
                if let Some(d) = seconds(field, 0, Duration::ZERO, Duration::from_secs(1000), cx) {
                    inst.preempt_delay = d;
                }
                cx.at_most(field, 1);
            }
            "authentication" => {
                cx.no_block_args(field);
                authentication(cx.block(field), &what, field, &mut inst, cx);
            }
            "virtual_ipaddress" => {
                cx.no_block_args(field);
                for line in cx.block(field) {
                    let spec = line.name.text.as_str();
                    if let Some(v6) = vip_is_ipv6(spec) {
                        match &family {
                            Some((first_v6, first)) if *first_v6 != v6 => {
                                let fam = if *first_v6 { "IPv6" } else { "IPv4" };
                                cx.error(
                                    line.name.at,
                                    format!("{what}: virtual_ipaddress {spec}: address family must match VRRP instance (its first address {first} is {fam}; keepalived ignores this address, tunlb refuses it)"),
                                );
                                cx.no_block(line);
                                continue;
                            }
                            Some(_) => {}
                            None => family = Some((v6, spec.to_string())),
                        }
                    }
                    let mut words = vec![spec];
                    words.extend(line.args.iter().map(|w| w.text.as_str()));
                    match parse_vip(&words) {
                        Ok(vip) => {
                            if inst.vips.iter().any(|v| v.addr == vip.addr) {
                                cx.error(
                                    line.name.at,
                                    format!(
                                        "{what}: virtual_ipaddress: {} is listed twice",
                                        vip.addr
                                    ),
                                );
                            } else {
                                inst.vips.push(vip);
                            }
                        }
                        Err((i, message)) => {
                            let at = if i == 0 {
                                line.name.at
                            } else {
                                line.args.get(i - 1).map_or(line.name.at, |w| w.at)
                            };
                            let hint = words
                                .get(i)
                                .map_or(String::new(), |w| super::slash_hint(w, false));
                            cx.error(at, format!("{what}: virtual_ipaddress: {message}") + &hint);
                        }
                    }
                    cx.no_block(line);
                }
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                if let Some(a) = cx.ip(field, 0) {
                    inst.unicast_src = Some(a);
                }
                cx.at_most(field, 1);
            }
            "unicast_peer" => {
                cx.no_block_args(field);
                for peer in cx.block(field) {
                    let as_node = Node {
                        name: Word {
                            text: format!("{what}: unicast_peer"),
                            at: peer.name.at,
                        },
                        args: vec![peer.name.clone()],
                        block: None,
                    };
                    if let Some(a) = cx.ip(&as_node, 0) {
                        if inst.unicast_peers.contains(&a) {
                            cx.error(
                                peer.name.at,
                                format!("{what}: unicast_peer {a} is listed twice"),
                            );
                        } else {
                            inst.unicast_peers.push(a);
                        }
                    }
                    if let Some(opt) = peer.args.first() {
                        if matches!(opt.text.as_str(), "min_ttl" | "max_ttl") {
                            cx.warn(
                                opt.at,
                                format!("{what}: unicast_peer {}: {} ignored (tunlb checks TTL 255 as VRRP requires)", peer.name.text, opt.text),
                            );
                        } else {
                            cx.error(
                                opt.at,
                                format!(
                                    "{what}: unicast_peer: unexpected '{}' after the address",
                                    opt.text
                                ) + &super::slash_hint(&opt.text, false),
                            );
                        }
                    }
                    cx.no_block(peer);
                }
            }
            "track_interface" => {
                cx.no_block_args(field);
                for t in cx.block(field) {
                    let tw = format!("{what}: track_interface {}", t.name.text);
                    if !is_ifname(&t.name.text) {
                        cx.error(
                            t.name.at,
                            format!("{tw}: not an interface name (1 to 15 characters, no '/', ':' or spaces)"),
                        );
                    }
                    let weight = track_weight(t, &tw, cx);
                    p.track_interfaces.push(t.name.at);
                    inst.track_interfaces.push(TrackInterface {
                        name: t.name.text.clone(),
                        // keepalived: weight 0 is the same as none (FAULT when down).
                        weight: weight.filter(|w| *w != 0),
                    });
                    cx.no_block(t);
                }
            }
            "track_script" => {
                cx.no_block_args(field);
                for t in cx.block(field) {
                    let tw = format!("{what}: track_script {}", t.name.text);
                    let weight = track_weight(t, &tw, cx);
                    p.track_scripts.push(t.name.at);
                    inst.track_scripts.push(TrackScript {
                        name: t.name.text.clone(),
                        weight,
                    });
                    cx.no_block(t);
                }
            }
            "garp_master_delay" => {
                if let Some(s) = cx.uint(field, 0, 0, u64::from(u32::MAX)) {
                    inst.garp.master_delay = Duration::from_secs(s);
                }
                cx.at_most(field, 1);
            }
            "garp_master_repeat" => {
                if let Some(n) = cx.uint(field, 0, 1, u64::from(u32::MAX)) {
                    inst.garp.master_repeat = n as u32;
                }
                cx.at_most(field, 1);
            }
            "garp_master_refresh" => {
                if let Some(s) = cx.uint(field, 0, 0, u64::from(u32::MAX)) {
                    inst.garp.master_refresh = (s > 0).then(|| Duration::from_secs(s));
                }
                cx.at_most(field, 1);
            }
            "garp_master_refresh_repeat" => {
                if let Some(n) = cx.uint(field, 0, 1, u64::from(u32::MAX)) {
                    inst.garp.master_refresh_repeat = n as u32;
                }
                cx.at_most(field, 1);
            }
            "lvs_sync_daemon_interface" => {
                cx.warn(
                    field.name.at,
                    format!("{what}: lvs_sync_daemon_interface is deprecated (keepalived says so too): write `lvs_sync_daemon IF {name}` in global_defs"),
                );
                if let Some(w) = cx.arg(field, 0, "an interface name") {
                    if sync.is_some() {
                        cx.error(
                            field.name.at,
                            format!("{what}: lvs_sync_daemon_interface: connection sync is already configured"),
                        );
                    } else if !is_ifname(&w.text) {
                        cx.error(
                            w.at,
                            format!(
                                "{what}: lvs_sync_daemon_interface: '{}' is not an interface name",
                                w.text
                            ),
                        );
                    } else {
                        *sync = Some((SyncConfig::new(&w.text, name), false));
                    }
                }
                cx.at_most(field, 1);
            }
            kw if notify_key(&mut inst.notify, field, &what, cx) => {
                let _ = kw;
            }
            kw if IGNORED_INSTANCE.contains(&kw) => {
                cx.warn(
                    field.name.at,
                    format!("{what}: {kw} ignored (tunlb does not implement it; it changes nothing it does)"),
                );
            }
            "virtual_ipaddress_excluded" => {
                cx.error(
                    field.name.at,
                    format!("{what}: virtual_ipaddress_excluded is not supported by tunlb"),
                );
            }
            kw if UNSUPPORTED_INSTANCE.contains(&kw) => {
                cx.error(
                    field.name.at,
                    format!("{what}: {kw} is not supported by tunlb"),
                );
            }
            _ => cx.unknown(field, &what),
        }
    }
    if node.block.is_some() {
        if !vrid {
            cx.error(
                node.name.at,
                format!("{what}: expected virtual_router_id (1 to 255)"),
            );
        }
        if !interface {
            cx.error(
                node.name.at,
                format!("{what}: expected interface (where adverts go and the VIPs are answered)"),
            );
        }
    }
    if !priority_set && state_set && inst.initial == InitialState::Master {
        // keepalived: no priority and state MASTER make the address owner.
        inst.priority = 255;
        cx.warn(
            node.name.at,
            format!("{what}: no priority: keepalived makes a state MASTER instance the address owner (priority 255); write the priority"),
        );
    }
    inst
}

/// `weight N` after a tracked name; `None` without one.
fn track_weight(t: &Node, what: &str, cx: &mut Ctx) -> Option<i32> {
    let first = t.args.first()?;
    if first.text != "weight" {
        cx.error(
            first.at,
            format!("{what}: unexpected '{}' (expected weight N)", first.text)
                + &super::slash_hint(&first.text, false),
        );
        return None;
    }
    weight(what, &t.args, 1, cx, first.at)
}

fn authentication(
    block: &[Node],
    what: &str,
    field: &Node,
    inst: &mut InstanceConfig,
    cx: &mut Ctx,
) {
    let mut kind: Option<&Word> = None;
    let mut pass: Option<&Word> = None;
    for a in block {
        match a.name.text.as_str() {
            "auth_type" => {
                if let Some(w) = cx.arg(a, 0, "PASS or AH") {
                    match w.text.as_str() {
                        "PASS" => kind = Some(w),
                        "AH" => cx.error(
                            w.at,
                            format!("{what}: auth_type AH (IPsec AH) is not supported by tunlb; use PASS or none"),
                        ),
                        other => cx.error(
                            w.at,
                            format!("{what}: auth_type: expected PASS or AH, found '{other}'"),
                        ),
                    }
                }
                cx.at_most(a, 1);
            }
            "auth_pass" => {
                if let Some(w) = cx.arg(a, 0, "a password") {
                    if w.text.len() > 8 {
                        cx.warn(
                            w.at,
                            format!("{what}: auth_pass longer than 8 characters: only the first 8 are used, as keepalived does"),
                        );
                    }
                    pass = Some(w);
                }
                cx.at_most(a, 1);
            }
            _ => cx.unknown(a, &format!("{what} authentication")),
        }
    }
    match (kind, pass) {
        (Some(_), Some(p)) => inst.auth_pass = auth_pass_bytes(&p.text),
        (Some(k), None) => cx.error(
            k.at,
            format!(
                "{what}: auth_type PASS without auth_pass (keepalived ignores the authentication)"
            ),
        ),
        (None, Some(p)) => cx.warn(
            p.at,
            format!("{what}: auth_pass without auth_type PASS: ignored, as keepalived does"),
        ),
        (None, None) => {
            if field.block.is_some() && block.is_empty() {
                cx.warn(field.name.at, format!("{what}: empty authentication block"));
            }
        }
    }
}

fn script(name: &str, body: &[Node], node: &Node, cx: &mut Ctx) -> ScriptConfig {
    let what = format!("vrrp_script {name}");
    let mut s = ScriptConfig {
        name: name.to_string(),
        script: String::new(),
        interval: Duration::from_secs(1),
        timeout: Duration::ZERO,
        weight: 0,
        rise: 1,
        fall: 1,
        user: None,
    };
    let mut timeout_set = false;
    let mut script_at = None;
    for field in body {
        match field.name.text.as_str() {
            "script" => {
                if let Some(c) = command(field, &what, cx) {
                    s.script = c;
                    script_at = Some(field.name.at);
                }
            }
            "user" => s.user = super::scripts::user(field, &what, cx),
            "interval" => {
                if let Some(d) = seconds(
                    field,
                    0,
                    Duration::from_millis(1),
                    Duration::from_secs(u64::from(u32::MAX) / 1000),
                    cx,
                ) {
                    s.interval = d;
                }
                cx.at_most(field, 1);
            }
            "timeout" => {
                if let Some(d) = seconds(
                    field,
                    0,
                    Duration::from_millis(1),
                    Duration::from_secs(u64::from(u32::MAX) / 1000),
                    cx,
                ) {
                    s.timeout = d;
                    timeout_set = true;
                }
                cx.at_most(field, 1);
            }
            "weight" => {
                if let Some(v) = weight(&what, &field.args, 0, cx, field.name.at) {
                    s.weight = v;
                }
                cx.no_block(field);
            }
            "rise" | "fall" => {
                if let Some(v) = cx.uint(field, 0, 1, i32::MAX as u64) {
                    if field.name.text == "rise" {
                        s.rise = v as u32;
                    } else {
                        s.fall = v as u32;
                    }
                }
                cx.at_most(field, 1);
            }
            "init_fail" => {
                cx.warn(
                    field.name.at,
                    format!(
                        "{what}: {} ignored (tunlb starts a script as not yet failed)",
                        field.name.text
                    ),
                );
                cx.no_block(field);
            }
            _ => cx.unknown(field, &what),
        }
    }
    if !timeout_set {
        s.timeout = s.interval;
    }
    if let Some(at) = script_at {
        super::scripts::vet(
            cx,
            at,
            &format!("{what} script"),
            &s.script,
            s.user.as_ref(),
        );
    }
    if s.script.is_empty() && node.block.is_some() {
        cx.error(
            node.name.at,
            format!("{what}: expected a `script` line (the command to run)"),
        );
    }
    s
}

fn sync_group(name: &str, body: &[Node], cx: &mut Ctx) -> (SyncGroupConfig, Vec<Loc>) {
    let what = format!("vrrp_sync_group {name}");
    let mut group = SyncGroupConfig {
        name: name.to_string(),
        members: Vec::new(),
        notify: Notify::default(),
    };
    let mut at = Vec::new();
    let mut seen_group = false;
    for field in body {
        let kw = field.name.text.as_str();
        match kw {
            "group" => {
                cx.no_block_args(field);
                if seen_group {
                    cx.error(field.name.at, format!("{what}: group given twice"));
                    continue;
                }
                seen_group = true;
                for line in cx.block(field) {
                    for w in std::iter::once(&line.name).chain(&line.args) {
                        group.members.push(w.text.clone());
                        at.push(w.at);
                    }
                    cx.no_block(line);
                }
            }
            _ if notify_key(&mut group.notify, field, &what, cx) => {}
            "smtp_alert" | "global_tracking" | "sync_group_tracking_weight"
            | "notify_priority_changes" => cx.warn(
                field.name.at,
                format!("{what}: {kw} ignored (tunlb does not implement it; it changes nothing it does)"),
            ),
            "track_interface" | "track_script" | "track_file" | "track_process" | "track_bfd" => {
                cx.error(
                    field.name.at,
                    format!("{what}: {kw} in a sync group is not supported by tunlb: write it in each vrrp_instance"),
                )
            }
            _ => cx.unknown(field, &what),
        }
    }
    (group, at)
}

//! The VRRP part of keepalived.conf: `vrrp_instance`, `vrrp_script` and `vrrp_sync_group` are
//! checked (so a file that works with keepalived keeps working when tunlb learns VRRP) and
//! ignored with a warning: tunlb has no VRRP yet.

use super::syntax::Node;
use super::Ctx;

/// `vrrp_instance` keywords keepalived knows; those with a check below are validated, the rest
/// accepted as they are.
const INSTANCE_KEYWORDS: &[&str] = &[
    "use_vmac",
    "use_vmac_addr",
    "vmac_xmit_base",
    "use_ipvlan",
    "unicast_peer",
    "unicast_fault_no_peer",
    "check_unicast_src",
    "old_unicast_checksum",
    "native_ipv6",
    "vrf",
    "dont_track_primary",
    "track_interface",
    "track_script",
    "track_file",
    "track_process",
    "track_bfd",
    "mcast_src_ip",
    "unicast_src_ip",
    "mcast_dst_ip",
    "track_src_ip",
    "unicast_ttl",
    "version",
    "virtual_routes",
    "virtual_rules",
    "accept",
    "no_accept",
    "skip_check_adv_addr",
    "strict_mode",
    "preempt",
    "nopreempt",
    "preempt_delay",
    "debug",
    "notify_backup",
    "notify_master",
    "notify_fault",
    "notify_stop",
    "notify_deleted",
    "notify",
    "notify_master_rx_lower_pri",
    "smtp_alert",
    "notify_priority_changes",
    "lvs_sync_daemon_interface",
    "garp_master_delay",
    "garp_master_refresh",
    "garp_master_repeat",
    "garp_master_refresh_repeat",
    "garp_lower_prio_delay",
    "garp_lower_prio_repeat",
    "down_timer_adverts",
    "timer_expired_backup",
    "garp_extra_if",
    "vmac_garp_intvl",
    "lower_prio_no_advert",
    "higher_prio_send_advert",
    "owner_ignore_adverts",
    "kernel_rx_buf_size",
    "promote_secondaries",
    "linkbeat_use_polling",
    "v3_checksum_as_v2",
    "no_virtual_ipaddress",
];

/// Checks one top-level statement if it is a VRRP block, and warns that it is ignored.
pub fn top_level(node: &Node, cx: &mut Ctx) {
    let kind = node.name.text.as_str();
    if !matches!(kind, "vrrp_instance" | "vrrp_script" | "vrrp_sync_group") {
        return;
    }
    let Some(name) = cx.arg(node, 0, "a name").map(|w| w.text.clone()) else {
        return;
    };
    if let Some(extra) = node.args.get(1) {
        cx.error(
            extra.at,
            format!("{kind} {name}: unexpected '{}' (expected '{{')", extra.text),
        );
    }
    let what = format!("{kind} {name}");
    let body = cx.block(node);
    match kind {
        "vrrp_instance" => instance(body, &what, node, cx),
        "vrrp_script" => script(body, &what, cx),
        _ => sync_group(body, &what, cx),
    }
    cx.warn(
        node.name.at,
        format!("VRRP not yet supported in tunlb: {what} ignored"),
    );
}

fn instance(body: &[Node], what: &str, node: &Node, cx: &mut Ctx) {
    let mut router_id = false;
    let mut state_master = false;
    let mut priority = None;
    for field in body {
        let kw = field.name.text.as_str();
        match kw {
            "state" => {
                if let Some(w) = cx.arg(field, 0, "MASTER or BACKUP") {
                    match w.text.as_str() {
                        "MASTER" => state_master = true,
                        "BACKUP" => {}
                        other => cx.error(
                            w.at,
                            format!("{what}: state: expected MASTER or BACKUP, found '{other}'"),
                        ),
                    }
                }
                cx.at_most(field, 1);
            }
            "interface" => {
                if let Some(w) = cx.arg(field, 0, "an interface name") {
                    if w.text.len() > 15 || w.text.contains('/') {
                        cx.error(
                            w.at,
                            format!("{what}: interface: '{}' is not an interface name (at most 15 characters, no '/')", w.text),
                        );
                    }
                }
                cx.at_most(field, 1);
            }
            "virtual_router_id" => {
                router_id = true;
                cx.uint(field, 0, 1, 255);
                cx.at_most(field, 1);
            }
            "priority" => {
                priority = cx.uint(field, 0, 1, 255).map(|p| (p, field.name.at));
                cx.at_most(field, 1);
            }
            "advert_int" => {
                cx.seconds(field, 0, 0.01, 255.0);
                cx.at_most(field, 1);
            }
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                cx.no_block_args(field);
                for addr in cx.block(field) {
                    ip_line(addr, what, cx);
                }
            }
            "authentication" => {
                cx.no_block_args(field);
                for a in cx.block(field) {
                    match a.name.text.as_str() {
                        "auth_type" => {
                            if let Some(w) = cx.arg(a, 0, "PASS or AH") {
                                if !matches!(w.text.as_str(), "PASS" | "AH") {
                                    cx.error(
                                        w.at,
                                        format!(
                                            "{what}: auth_type: expected PASS or AH, found '{}'",
                                            w.text
                                        ),
                                    );
                                }
                            }
                            cx.at_most(a, 1);
                        }
                        "auth_pass" => {
                            if let Some(w) = cx.arg(a, 0, "a password") {
                                if w.text.len() > 8 {
                                    cx.warn(
                                        w.at,
                                        format!("{what}: auth_pass longer than 8 characters: keepalived truncates it"),
                                    );
                                }
                            }
                            cx.at_most(a, 1);
                        }
                        _ => cx.unknown(a, &format!("{what} authentication")),
                    }
                }
            }
            "unicast_peer" => {
                cx.no_block_args(field);
                for peer in cx.block(field) {
                    let as_node = Node {
                        name: peer.name.clone(),
                        args: vec![peer.name.clone()],
                        block: None,
                    };
                    cx.ipv4(&as_node, 0);
                }
            }
            kw if INSTANCE_KEYWORDS.contains(&kw) => {}
            _ => cx.unknown(field, what),
        }
    }
    if node.block.is_some() && !router_id {
        cx.error(
            node.name.at,
            format!("{what}: expected virtual_router_id (1 to 255)"),
        );
    }
    if let Some((255, at)) = priority {
        if !state_master {
            cx.error(
                at,
                format!(
                    "{what}: priority 255 is for the address owner, which must be state MASTER"
                ),
            );
        }
    }
}

/// `IP[/len] [brd IP] [dev IF] [scope S] [label L] [flags...]` in `virtual_ipaddress`.
fn ip_line(addr: &Node, what: &str, cx: &mut Ctx) {
    let text = &addr.name.text;
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (text.as_str(), None),
    };
    let ok = ip.parse::<std::net::Ipv4Addr>().is_ok()
        && len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= 32));
    if !ok {
        cx.error(
            addr.name.at,
            format!(
                "{what}: virtual_ipaddress: expected an address like 192.0.2.1/24, found '{text}'"
            ),
        );
    }
    let mut i = 0;
    while let Some(w) = addr.args.get(i) {
        match w.text.as_str() {
            "dev" | "brd" | "broadcast" | "scope" | "label" | "preferred_lft" | "track_group" => {
                if addr.args.get(i + 1).is_none() {
                    cx.error(
                        w.at,
                        format!(
                            "{what}: virtual_ipaddress: expected a value after '{}'",
                            w.text
                        ),
                    );
                }
                i += 2;
            }
            "home" | "-nodad" | "nodad" | "noprefixroute" | "autojoin" | "no_track" => i += 1,
            other => {
                cx.error(
                    w.at,
                    format!("{what}: virtual_ipaddress: unexpected '{other}' (expected dev, brd, scope, label or a flag)")
                        + &super::slash_hint(other, false),
                );
                break;
            }
        }
    }
    cx.no_block(addr);
}

fn script(body: &[Node], what: &str, cx: &mut Ctx) {
    let mut has_script = false;
    for field in body {
        match field.name.text.as_str() {
            "script" => {
                has_script = cx.arg(field, 0, "a command").is_some();
                cx.no_block(field);
            }
            "interval" | "timeout" => {
                cx.seconds(field, 0, 0.001, 86_400.0 * 31.0);
                cx.at_most(field, 1);
            }
            "weight" => {
                if let Some(w) = cx.arg(field, 0, "a weight from -253 to 253") {
                    if !w
                        .text
                        .parse::<i32>()
                        .is_ok_and(|v| (-253..=253).contains(&v))
                    {
                        cx.error(
                            w.at,
                            format!(
                                "{what}: weight: expected an integer from -253 to 253, found '{}'",
                                w.text
                            ),
                        );
                    }
                }
                // keepalived accepts `weight N reverse`.
                if field.args.get(1).is_some_and(|w| w.text == "reverse") {
                    cx.at_most(field, 2);
                } else {
                    cx.at_most(field, 1);
                }
            }
            "rise" | "fall" => {
                cx.uint(field, 0, 1, u64::from(u32::MAX));
                cx.at_most(field, 1);
            }
            "user" | "init_fail" => cx.no_block(field),
            _ => cx.unknown(field, what),
        }
    }
    if !has_script && !body.is_empty() {
        if let Some(first) = body.first() {
            cx.error(first.name.at, format!("{what}: expected a `script` line"));
        }
    }
}

fn sync_group(body: &[Node], what: &str, cx: &mut Ctx) {
    for field in body {
        match field.name.text.as_str() {
            "group" => {
                cx.no_block_args(field);
                if cx.block(field).is_empty() && field.block.is_some() {
                    cx.error(
                        field.name.at,
                        format!("{what}: group: expected the names of vrrp_instances"),
                    );
                }
            }
            "notify_backup"
            | "notify_master"
            | "notify_fault"
            | "notify_stop"
            | "notify"
            | "smtp_alert"
            | "global_tracking"
            | "sync_group_tracking_weight"
            | "notify_priority_changes"
            | "track_interface"
            | "track_script"
            | "track_file"
            | "track_process"
            | "track_bfd" => {}
            _ => cx.unknown(field, what),
        }
    }
}

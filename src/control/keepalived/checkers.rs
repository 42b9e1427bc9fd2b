//! The checkers of a `real_server` (HTTP_GET, SSL_GET, TCP_CHECK, MISC_CHECK, UDP_CHECK,
//! PING_CHECK) into the health model, and the checker settings a `virtual_server` and a
//! `real_server` pass down to them ([`Inherited`]).

use std::time::Duration;

use super::syntax::{Loc, Node};
use super::Ctx;
use crate::health::config::{parse_hex, CheckKind, CheckSpec, ReplyPattern, UdpCheck, UrlSpec};
use crate::model::MAX_TIMEOUT;

/// Checker settings that a real server or a virtual server passes down.
#[derive(Clone, Default)]
pub(super) struct Inherited {
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    virtualhost: Option<String>,
    pub(super) inhibit_on_failure: bool,
    delay_loop: Option<Duration>,
    alpha: Option<bool>,
}

impl Inherited {
    /// Handles one of the inheritable keywords; false if `node` is not one.
    pub(super) fn handle(&mut self, node: &Node, cx: &mut Ctx) -> bool {
        let max = f64::from(MAX_TIMEOUT);
        match node.name.text.as_str() {
            "connect_timeout" => {
                self.connect_timeout = cx.seconds(node, 0, 0.001, max).or(self.connect_timeout);
            }
            "retry" | "nb_get_retry" => {
                if node.name.text == "nb_get_retry" {
                    cx.warn(
                        node.name.at,
                        "nb_get_retry is deprecated in keepalived: use retry".to_string(),
                    );
                }
                self.retry = cx
                    .uint(node, 0, 0, u64::from(u32::MAX))
                    .map(|r| r as u32)
                    .or(self.retry);
            }
            "delay_before_retry" => {
                self.delay_before_retry = cx.seconds(node, 0, 0.0, max).or(self.delay_before_retry);
            }
            "warmup" => self.warmup = cx.seconds(node, 0, 0.0, max).or(self.warmup),
            "delay_loop" => self.delay_loop = cx.seconds(node, 0, 0.001, max).or(self.delay_loop),
            "alpha" => {
                // keepalived: `alpha [<BOOL>]`, no value meaning on.
                match node.args.first().map(|w| w.text.as_str()) {
                    None | Some("true" | "on" | "yes") => self.alpha = Some(true),
                    Some("false" | "off" | "no") => self.alpha = Some(false),
                    Some(other) => {
                        let at = node.args[0].at;
                        cx.error(
                            at,
                            format!("alpha: expected true or false, found '{other}'"),
                        );
                    }
                }
            }
            "virtualhost" => {
                self.virtualhost = cx
                    .arg(node, 0, "a host name")
                    .map(|w| w.text.clone())
                    .or(self.virtualhost.take());
            }
            "inhibit_on_failure" => {
                // keepalived accepts an optional true/false.
                match node.args.first().map(|w| w.text.as_str()) {
                    None | Some("true" | "on" | "yes") => self.inhibit_on_failure = true,
                    Some("false" | "off" | "no") => self.inhibit_on_failure = false,
                    Some(_) => {
                        let w = &node.args[0];
                        cx.error(
                            w.at,
                            format!(
                                "inhibit_on_failure: expected true or false, found '{}'",
                                w.text
                            ),
                        );
                    }
                }
                cx.at_most(node, 1);
                return true;
            }
            _ => return false,
        }
        cx.at_most(node, 1);
        true
    }

    pub(super) fn apply(&self, spec: &mut CheckSpec) {
        if let Some(t) = self.connect_timeout {
            spec.connect_timeout = t;
        }
        if let Some(r) = self.retry {
            spec.retry = r;
        }
        if self.delay_before_retry.is_some() {
            spec.delay_before_retry = self.delay_before_retry;
        }
        if self.warmup.is_some() {
            spec.warmup = self.warmup;
        }
        if self.delay_loop.is_some() {
            spec.delay_loop = self.delay_loop;
        }
        if self.alpha.is_some() {
            spec.alpha = self.alpha;
        }
        if let Some(v) = &self.virtualhost {
            if let CheckKind::HttpGet { virtualhost, .. } | CheckKind::SslGet { virtualhost, .. } =
                &mut spec.kind
            {
                *virtualhost = Some(v.clone());
            }
        }
    }

    /// `self` with the settings `inner` gives overriding it.
    pub(super) fn under(&self, inner: &Inherited) -> Inherited {
        Inherited {
            connect_timeout: inner.connect_timeout.or(self.connect_timeout),
            retry: inner.retry.or(self.retry),
            delay_before_retry: inner.delay_before_retry.or(self.delay_before_retry),
            warmup: inner.warmup.or(self.warmup),
            virtualhost: inner.virtualhost.clone().or(self.virtualhost.clone()),
            inhibit_on_failure: inner.inhibit_on_failure || self.inhibit_on_failure,
            delay_loop: inner.delay_loop.or(self.delay_loop),
            alpha: inner.alpha.or(self.alpha),
        }
    }
}

pub(super) fn check(
    node: &Node,
    rs: &str,
    rip: Option<std::net::IpAddr>,
    nat: bool,
    inherited: &Inherited,
    cx: &mut Ctx,
) -> Option<CheckSpec> {
    let kw = node.name.text.as_str();
    cx.no_block_args(node);
    let what = format!("{rs} {kw}");
    let mut urls: Vec<UrlSpec> = Vec::new();
    let mut misc_path: Option<(String, Loc)> = None;
    let mut misc_timeout = None;
    let mut misc_dynamic = false;
    let mut misc_user = None;
    let mut enable_sni = false;
    let mut sni_name: Option<String> = None;
    let mut udp = UdpCheck::default();
    let mut own = Inherited::default();
    let mut spec = CheckSpec::new(CheckKind::Tcp);
    // Where `check_through_tunnel` and `bindto` were given: their refusals are reported there.
    let mut through_at = None;
    let mut bindto_at = None;
    let http = matches!(kw, "HTTP_GET" | "SSL_GET");
    for field in cx.block(node) {
        let f = field.name.text.as_str();
        if f != "inhibit_on_failure" && own.handle(field, cx) {
            if f == "virtualhost" && !http {
                cx.error(
                    field.name.at,
                    format!("{what}: virtualhost is only for HTTP_GET and SSL_GET"),
                );
            }
            continue;
        }
        match f {
            "connect_ip" | "bindto" => {
                let a = cx.ip(field, 0);
                if f == "connect_ip" {
                    spec.connect_ip = a;
                } else {
                    spec.bindto = a;
                    bindto_at = Some(field.name.at);
                }
                cx.at_most(field, 1);
            }
            "connect_port" | "bind_port" => {
                let p = cx.uint(field, 0, 1, 65_535).map(|p| p as u16);
                if f == "connect_port" {
                    spec.connect_port = p;
                } else {
                    spec.bind_port = p;
                }
                cx.at_most(field, 1);
            }
            // A tunlb extension (keepalived has no such keyword): probe the VIP through the
            // director's data path instead of the real server's own address.
            "check_through_tunnel" => {
                through_at = Some(field.name.at);
                match field.args.first().map(|w| w.text.as_str()) {
                    None | Some("true" | "on" | "yes") => spec.check_through_tunnel = true,
                    Some("false" | "off" | "no") => spec.check_through_tunnel = false,
                    Some(_) => {
                        let w = &field.args[0];
                        cx.error(
                            w.at,
                            format!(
                                "check_through_tunnel: expected true or false, found '{}'",
                                w.text
                            ),
                        );
                    }
                }
                cx.no_block(field);
                cx.at_most(field, 1);
            }
            "url" if http => {
                cx.no_block_args(field);
                if let Some(u) = url(field, &what, cx) {
                    urls.push(u);
                }
            }
            "misc_path" if kw == "MISC_CHECK" => {
                if cx.arg(field, 0, "a command").is_some() {
                    let cmd: Vec<&str> = field.args.iter().map(|w| w.text.as_str()).collect();
                    misc_path = Some((cmd.join(" "), field.name.at));
                }
                cx.no_block(field);
            }
            "misc_timeout" if kw == "MISC_CHECK" => {
                misc_timeout = cx.seconds(field, 0, 0.001, f64::from(MAX_TIMEOUT));
                cx.at_most(field, 1);
            }
            "user" if kw == "MISC_CHECK" => {
                misc_user = super::scripts::user(field, &what, cx);
            }
            "misc_dynamic" if kw == "MISC_CHECK" => {
                misc_dynamic = true;
                cx.at_most(field, 0);
            }
            "enable_sni" if kw == "SSL_GET" => {
                enable_sni = true;
                cx.at_most(field, 0);
            }
            "sni_name" if kw == "SSL_GET" => {
                sni_name = cx.arg(field, 0, "a host name").map(|w| w.text.clone());
                cx.at_most(field, 1);
            }
            "payload" if kw == "UDP_CHECK" => {
                if let Some(w) = cx.arg(field, 0, "a hex string like 01 ab 3f") {
                    let at = w.at;
                    match parse_hex(&words(field), false) {
                        Some(p) => udp.payload = p.bytes,
                        None => cx.error(
                            at,
                            format!("{what} payload: expected hex digits like 01 ab 3f"),
                        ),
                    }
                }
                cx.no_block(field);
            }
            "require_reply" if kw == "UDP_CHECK" => {
                udp.require_reply = match field.args.first() {
                    None => Some(ReplyPattern::default()),
                    Some(w) => {
                        let at = w.at;
                        let p = parse_hex(&words(field), true);
                        if p.is_none() {
                            cx.error(
                                at,
                                format!("{what} require_reply: expected hex digits (x for any nibble) like 01 xx"),
                            );
                        }
                        p
                    }
                };
                cx.no_block(field);
            }
            "min_reply_length" | "max_reply_length" if kw == "UDP_CHECK" => {
                if let Some(n) = cx.uint(field, 0, 0, 65_535) {
                    if f == "min_reply_length" {
                        udp.min_reply_length = n as u16;
                    } else {
                        udp.max_reply_length = n as u16;
                    }
                }
                cx.at_most(field, 1);
            }
            "bind_if" | "fwmark" | "log_all_failures" | "http_protocol" | "fast_recovery"
            | "tls_compliant" | "user" => {
                cx.no_block(field);
                cx.warn(
                    field.name.at,
                    format!("{what}: {f} ignored (not supported by tunlb)"),
                );
            }
            _ => cx.unknown(field, &what),
        }
    }
    node.block.as_ref()?;
    spec.kind = match kw {
        "HTTP_GET" | "SSL_GET" => {
            if urls.is_empty() {
                cx.error(
                    node.name.at,
                    format!("{what}: expected at least one url {{ path ... }} block"),
                );
                return None;
            }
            if kw == "HTTP_GET" {
                CheckKind::HttpGet {
                    urls,
                    virtualhost: None,
                }
            } else {
                CheckKind::SslGet {
                    urls,
                    virtualhost: None,
                    enable_sni,
                    sni_name,
                }
            }
        }
        "UDP_CHECK" => {
            if let Err(e) = udp.reply_lengths() {
                cx.error(node.name.at, format!("{what}: {e}"));
                return None;
            }
            CheckKind::Udp(udp)
        }
        "PING_CHECK" => CheckKind::Ping,
        "MISC_CHECK" => {
            let Some((path, at)) = misc_path else {
                cx.error(node.name.at, format!("{what}: expected misc_path"));
                return None;
            };
            super::scripts::vet(
                cx,
                at,
                &format!("{what} misc_path"),
                &path,
                misc_user.as_ref(),
            );
            CheckKind::Misc {
                path,
                timeout: misc_timeout,
                dynamic: misc_dynamic,
                user: misc_user,
            }
        }
        _ => CheckKind::Tcp,
    };
    inherited.under(&own).apply(&mut spec);
    if let Some(rip) = rip {
        if let Some(e) = spec.family_mismatch(rip) {
            cx.error(bindto_at.unwrap_or(node.name.at), format!("{what}: {e}"));
        }
        for why in spec.through_tunnel_refusals(nat, rip) {
            let at = through_at.unwrap_or(node.name.at);
            cx.error(at, format!("{what}: check_through_tunnel: {why}"));
        }
    }
    Some(spec)
}

/// A keyword's arguments joined by spaces (keepalived reads a hex string across words).
pub(super) fn words(node: &Node) -> String {
    node.args
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn url(node: &Node, what: &str, cx: &mut Ctx) -> Option<UrlSpec> {
    let mut u = UrlSpec::default();
    let mut path = None;
    for field in cx.block(node) {
        let f = field.name.text.as_str();
        match f {
            "path" => {
                path = cx.arg(field, 0, "a path like /").map(|w| w.text.clone());
                cx.at_most(field, 1);
            }
            "status_code" => {
                u.status_code = cx.uint(field, 0, 100, 599).map(|c| c as u16);
                if field.args.first().is_some_and(|w| w.text.contains('-')) {
                    // (already reported as not an integer; say why)
                    cx.error(
                        field.args[0].at,
                        "status_code: ranges are not supported by tunlb, give one code".into(),
                    );
                }
                cx.at_most(field, 1);
            }
            "digest" => {
                if let Some(w) = cx.arg(field, 0, "an MD5 digest (32 hex digits)") {
                    if w.text.len() == 32 && w.text.chars().all(|c| c.is_ascii_hexdigit()) {
                        u.digest = Some(w.text.to_ascii_lowercase());
                    } else {
                        cx.error(
                            w.at,
                            format!(
                                "digest: expected 32 hex digits (an MD5 digest), found '{}'",
                                w.text
                            ),
                        );
                    }
                }
                cx.at_most(field, 1);
            }
            "virtualhost" | "regex" | "regex_no_match" | "regex_options" | "regex_min_offset"
            | "regex_max_offset" | "regex_stack" => {
                cx.no_block(field);
                cx.warn(
                    field.name.at,
                    format!("{what} url: {f} ignored (not supported by tunlb)"),
                );
            }
            _ => cx.unknown(field, &format!("{what} url")),
        }
    }
    node.block.as_ref()?;
    match path {
        Some(p) => {
            u.path = p;
            Some(u)
        }
        None => {
            cx.error(node.name.at, format!("{what} url: expected a path"));
            None
        }
    }
}

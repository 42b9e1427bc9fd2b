//! A service's health settings and its real servers' checks, checked with their places into
//! the health model ([`crate::health::config`]).

use super::raw::*;
use super::validate::Validator;
use std::net::{IpAddr, SocketAddrV4};
use std::ops::Range;
use std::time::Duration;

use crate::health::config::{
    parse_hex, CheckKind, CheckSpec, DestHealth, ReplyPattern, ServiceHealth, UdpCheck, UrlSpec,
};
use crate::model::ServiceKey;

impl Validator<'_> {
    pub(super) fn seconds(
        &mut self,
        v: Option<i64>,
        span: &Range<usize>,
        what: &str,
    ) -> Option<Duration> {
        match v {
            None => None,
            Some(n) if (0..=86_400).contains(&n) => Some(Duration::from_secs(n as u64)),
            Some(n) => {
                self.report(
                    span.clone(),
                    format!("{what}: expected seconds from 0 to 86400, found {n}"),
                );
                None
            }
        }
    }

    /// The health settings of one service, added to `self.health` when it has any.
    pub(super) fn service_health(
        &mut self,
        s: &RawService,
        span: &std::ops::Range<usize>,
        what: &str,
        key: ServiceKey,
    ) {
        let mut h = ServiceHealth::default();
        let mut any = false;
        if s.delay_loop.is_some() {
            any = true;
            let n = self.int(&s.delay_loop, &format!("{what}.delay_loop"), 1, 86_400, 60);
            h.delay_loop = Duration::from_secs(n as u64);
        }
        h.alpha = s.alpha.unwrap_or(false);
        h.omega = s.omega.unwrap_or(false);
        h.quorum = self.int(&s.quorum, &format!("{what}.quorum"), 1, u32::MAX.into(), 1) as u32;
        h.hysteresis = self.int(
            &s.hysteresis,
            &format!("{what}.hysteresis"),
            0,
            u32::MAX.into(),
            0,
        ) as u32;
        h.quorum_up = s.quorum_up.clone();
        h.quorum_down = s.quorum_down.clone();
        h.script_user = self.scripts.user.clone();
        for (key, line) in [("quorum_up", &h.quorum_up), ("quorum_down", &h.quorum_down)] {
            if let Some(line) = line {
                self.vet_script(span, &format!("{what}.{key}"), line, None);
            }
        }
        if let Some(ss) = &s.sorry_server {
            match ss.get_ref().parse::<SocketAddrV4>() {
                Ok(a) => h.sorry_server = Some(a),
                Err(_) => self.report(
                    ss.span(),
                    format!(
                        "{what}.sorry_server: expected \"ip:port\" like \"192.0.2.9:80\", found {:?}",
                        ss.get_ref()
                    ),
                ),
            }
        }
        h.sorry_server_inhibit = s.sorry_server_inhibit.unwrap_or(false);
        h.ha_suspend = s.ha_suspend.unwrap_or(false);
        any |= s.alpha.is_some()
            || s.quorum.is_some()
            || s.hysteresis.is_some()
            || h.sorry_server.is_some()
            || h.quorum_up.is_some()
            || h.quorum_down.is_some();
        for (j, rs) in s.real_server.iter().enumerate() {
            let r = rs.get_ref();
            let what = format!("{what}.real_server[{j}]");
            let Some(Ok(addr)) = r
                .address
                .as_ref()
                .map(|a| a.get_ref().parse::<std::net::IpAddr>())
            else {
                continue;
            };
            let port = match r.port.as_ref().map(|p| *p.get_ref()) {
                Some(p) if (1..=65_535).contains(&p) => p as u16,
                _ => key.port,
            };
            let mut dh = DestHealth {
                checks: Vec::new(),
                inhibit_on_failure: r.inhibit_on_failure.unwrap_or(false),
            };
            let nat = r.forward.as_ref().is_some_and(|f| f.get_ref() == "nat");
            if let Some(checks) = &r.check {
                for (k, c) in checks.as_slice().iter().enumerate() {
                    let what = format!("{what}.check[{k}]");
                    let Some(spec) = self.check(c, &rs.span(), &what) else {
                        continue;
                    };
                    let (vs, real) = (
                        crate::model::fmt_addr_port(key.vip, key.port),
                        crate::model::fmt_addr_port(addr, port),
                    );
                    if let Some(e) = spec.family_mismatch(addr) {
                        self.report(
                            rs.span(),
                            format!("{what}.bindto: virtual server {vs} real server {real}: {e}"),
                        );
                    }
                    for why in spec.through_tunnel_refusals(nat, addr) {
                        self.report(
                            rs.span(),
                            format!(
                                "{what}.check_through_tunnel: virtual server {vs} real server \
                                 {real}: {why}"
                            ),
                        );
                    }
                    dh.checks.push(spec);
                }
            }
            if !dh.checks.is_empty() || dh.inhibit_on_failure {
                any = true;
                h.per_dest.push(((addr, port), dh));
            }
        }
        if any {
            self.health.services.push((key, h));
        }
    }

    pub(super) fn check(
        &mut self,
        c: &RawCheck,
        span: &Range<usize>,
        what: &str,
    ) -> Option<CheckSpec> {
        let port = |v: &mut Self, p: Option<i64>, name: &str| match p {
            None => None,
            Some(p) if (1..=65_535).contains(&p) => Some(p as u16),
            Some(p) => {
                v.report(
                    span.clone(),
                    format!("{what}.{name}: expected a port from 1 to 65535, found {p}"),
                );
                None
            }
        };
        let status = |v: &mut Self, p: Option<i64>| match p {
            None => None,
            Some(p) if (100..=599).contains(&p) => Some(p as u16),
            Some(p) => {
                v.report(
                    span.clone(),
                    format!("{what}.status_code: expected 100 to 599, found {p}"),
                );
                None
            }
        };
        let mut urls: Vec<UrlSpec> = Vec::new();
        if let Some(u) = &c.url {
            urls.push(UrlSpec {
                path: u.clone(),
                status_code: status(self, c.status_code),
                digest: c.digest.clone(),
            });
        }
        for u in &c.urls {
            urls.push(UrlSpec {
                path: u.path.clone(),
                status_code: status(self, u.status_code),
                digest: u.digest.clone(),
            });
        }
        let kind = match c.kind.as_deref() {
            Some("http_get") | Some("ssl_get") => {
                if urls.is_empty() {
                    self.report(span.clone(), format!("{what}: needs `url` or `urls`"));
                    return None;
                }
                let virtualhost = c.virtualhost.clone();
                if c.kind.as_deref() == Some("http_get") {
                    CheckKind::HttpGet { urls, virtualhost }
                } else {
                    CheckKind::SslGet {
                        urls,
                        virtualhost,
                        enable_sni: c.enable_sni,
                        sni_name: c.sni_name.clone(),
                    }
                }
            }
            Some("udp") => CheckKind::Udp(self.udp_check(c, span, what)),
            Some("ping") => CheckKind::Ping,
            Some("tcp") => CheckKind::Tcp,
            Some("misc") => {
                let Some(path) = c.misc_path.clone() else {
                    self.report(
                        span.clone(),
                        format!("{what}: type \"misc\" needs `misc_path`"),
                    );
                    return None;
                };
                let own = self.script_user(&c.user, &c.group, span, what);
                self.vet_script(span, &format!("{what}.misc_path"), &path, own.as_ref());
                CheckKind::Misc {
                    path,
                    timeout: self.seconds(c.misc_timeout, span, &format!("{what}.misc_timeout")),
                    dynamic: c.misc_dynamic,
                    user: own.or_else(|| self.scripts.user.clone()),
                }
            }
            other => {
                self.report(
                    span.clone(),
                    format!(
                        "{what}.type: expected \"http_get\", \"ssl_get\", \"tcp\", \"misc\", \"udp\" or \"ping\", found {other:?}"
                    ),
                );
                return None;
            }
        };
        let addr = |v: &mut Self, a: &Option<String>, name: &str| match a {
            None => None,
            Some(a) => match a.parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    v.report(
                        span.clone(),
                        format!("{what}.{name}: expected an IPv4 or IPv6 address, found {a:?}"),
                    );
                    None
                }
            },
        };
        let mut spec = CheckSpec::new(kind);
        spec.connect_ip = addr(self, &c.connect_ip, "connect_ip");
        spec.bindto = addr(self, &c.bindto, "bindto");
        spec.bind_port = port(self, c.bind_port, "bind_port");
        spec.connect_port = port(self, c.connect_port, "connect_port");
        if let Some(t) = self.seconds(c.connect_timeout, span, &format!("{what}.connect_timeout")) {
            spec.connect_timeout = t;
        }
        match c.retry.or(c.nb_get_retry) {
            None => {}
            Some(n) if (0..=1000).contains(&n) => spec.retry = n as u32,
            Some(n) => self.report(
                span.clone(),
                format!("{what}.retry: expected 0 to 1000, found {n}"),
            ),
        }
        spec.delay_before_retry = self.seconds(
            c.delay_before_retry,
            span,
            &format!("{what}.delay_before_retry"),
        );
        spec.warmup = self.seconds(c.warmup, span, &format!("{what}.warmup"));
        spec.check_through_tunnel = c.check_through_tunnel;
        spec.delay_loop = match c.delay_loop {
            Some(0) => {
                self.report(
                    span.clone(),
                    format!("{what}.delay_loop: expected seconds from 1 to 86400, found 0"),
                );
                None
            }
            d => self.seconds(d, span, &format!("{what}.delay_loop")),
        };
        spec.alpha = c.alpha;
        if (c.enable_sni || c.sni_name.is_some()) && c.kind.as_deref() != Some("ssl_get") {
            self.report(
                span.clone(),
                format!("{what}: enable_sni and sni_name are only for type \"ssl_get\""),
            );
        }
        let udp_keys = c.payload.is_some()
            || c.require_reply.is_some()
            || c.min_reply_length.is_some()
            || c.max_reply_length.is_some();
        if udp_keys && c.kind.as_deref() != Some("udp") {
            self.report(
                span.clone(),
                format!(
                    "{what}: payload, require_reply, min_reply_length and max_reply_length are \
                     only for type \"udp\""
                ),
            );
        }
        Some(spec)
    }

    /// The UDP_CHECK settings of a `type = "udp"` check.
    pub(super) fn udp_check(&mut self, c: &RawCheck, span: &Range<usize>, what: &str) -> UdpCheck {
        let mut u = UdpCheck::default();
        if let Some(p) = &c.payload {
            match parse_hex(p, false) {
                Some(h) => u.payload = h.bytes,
                None => self.report(
                    span.clone(),
                    format!("{what}.payload: expected hex digits like \"01 ab 3f\", found {p:?}"),
                ),
            }
        }
        u.require_reply = match &c.require_reply {
            None | Some(RequireReply::Any(false)) => None,
            Some(RequireReply::Any(true)) => Some(ReplyPattern::default()),
            Some(RequireReply::Pattern(p)) => match parse_hex(p, true) {
                Some(h) => Some(h),
                None => {
                    self.report(
                        span.clone(),
                        format!(
                            "{what}.require_reply: expected true or hex digits (x for any \
                             nibble) like \"01 xx\", found {p:?}"
                        ),
                    );
                    None
                }
            },
        };
        let len = |v: &mut Self, l: Option<i64>, name: &str, default: u16| match l {
            None => default,
            Some(l) if (0..=65_535).contains(&l) => l as u16,
            Some(l) => {
                v.report(
                    span.clone(),
                    format!("{what}.{name}: expected 0 to 65535, found {l}"),
                );
                default
            }
        };
        u.min_reply_length = len(self, c.min_reply_length, "min_reply_length", 0);
        u.max_reply_length = len(self, c.max_reply_length, "max_reply_length", 255);
        if let Err(e) = u.reply_lengths() {
            self.report(span.clone(), format!("{what}: {e}"));
        }
        u
    }
}

//! The raw TOML into the model: every value checked with its place, every problem collected
//! ([`Validator`]); the model's rules ([`crate::model::validate`]) in the config's words
//! ([`rule_message`]). The `[[snat]]` and `[[tunnel_route]]` sections are read in
//! `network.rs`, health checks in `checks.rs`.

use super::raw::*;
use super::{DirectorSettings, Problem, MAX_QUEUES};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use toml::Spanned;

use crate::encap::{Tunnel, TunnelType, DEFAULT_GUE_PORT};
use crate::health::config::HealthConfig;
use crate::model::validate::{self, TunnelOption};
use crate::model::{
    DestConfig, ExpirePolicy, Forward, Netmask, Persistence, Protocol, SchedulerKind,
    ServiceConfig, ServiceKey, ServiceSet,
};
use crate::model::{RuleError, ScriptPolicy, ScriptUser};
use crate::model::{Timeouts, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT, MIN_MSS_CLAMP};

pub(super) fn problem(text: &str, offset: usize, message: String) -> Problem {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Problem {
        line,
        column,
        message,
    }
}

/// Collects every problem while building the result.
pub(super) struct Validator<'a> {
    /// The whole config text (for line numbers).
    pub(super) text: &'a str,
    /// Every problem found so far.
    pub(super) problems: Vec<Problem>,
    /// The health settings, built along with the services.
    pub(super) health: HealthConfig,
    /// `[scripts]`, read first: who runs scripts and whether they are vetted.
    pub(super) scripts: ScriptPolicy,
    /// The real servers' tunnel key files (`tunnel_key`), built along with the services.
    pub(super) tunnel_keys: std::collections::BTreeMap<IpAddr, std::path::PathBuf>,
}

impl Validator<'_> {
    pub(super) fn report(&mut self, span: Range<usize>, message: String) {
        let p = problem(self.text, span.start, message);
        self.problems.push(p);
    }

    /// An integer in `min..=max`, or the default when absent.
    pub(super) fn int(
        &mut self,
        value: &Option<Spanned<i64>>,
        what: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> i64 {
        match value {
            None => default,
            Some(v) if (min..=max).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.report(
                    v.span(),
                    format!(
                        "{what}: expected an integer from {min} to {max}, found {}",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn ipv4(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        match value.get_ref().parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.report(
                    value.span(),
                    format!(
                        "{what}: expected an IPv4 address like \"192.0.2.1\", found {:?}",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn unicast(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        let addr = self.ipv4(value, what)?;
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            self.report(
                value.span(),
                format!("{what}: expected a unicast IPv4 address, found {addr}"),
            );
            return None;
        }
        Some(addr)
    }

    /// A unicast IPv6 address (an outer source address).
    pub(super) fn unicast6(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv6Addr> {
        match value.get_ref().parse::<Ipv6Addr>() {
            Ok(a) if !a.is_unspecified() && !a.is_multicast() => Some(a),
            _ => {
                self.report(
                    value.span(),
                    format!(
                        "{what}: expected a unicast IPv6 address like \"2001:db8::1\", found {:?}",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A unicast address of either family (a VIP, a real server).
    pub(super) fn ip_unicast(&mut self, value: &Spanned<String>, what: &str) -> Option<IpAddr> {
        let addr = match value.get_ref().parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.report(
                    value.span(),
                    format!(
                        "{what}: expected an IPv4 address like \"192.0.2.1\" or an IPv6 address \
                         like \"2001:db8::1\", found {:?}",
                        value.get_ref()
                    ),
                );
                return None;
            }
        };
        let unicast = match addr {
            IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
            IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
        };
        if !unicast {
            self.report(
                value.span(),
                format!("{what}: expected a unicast address, found {addr}"),
            );
            return None;
        }
        Some(addr)
    }

    /// A service's `netmask` for a VIP of `vip`'s family.
    fn netmask(&mut self, m: &Spanned<RawNetmask>, vip: IpAddr, what: &str) -> Option<Netmask> {
        let mask = match (m.get_ref(), vip) {
            (RawNetmask::Dotted(text), IpAddr::V4(_)) => match text.parse::<Ipv4Addr>() {
                Ok(mask) => Netmask::V4(mask),
                Err(_) => {
                    self.report(
                        m.span(),
                        format!(
                            "{what}.netmask: expected a netmask like \"255.255.255.0\", found {text:?}"
                        ),
                    );
                    return None;
                }
            },
            (RawNetmask::Prefix(len), IpAddr::V6(_)) => {
                match u32::try_from(*len).map(validate::prefix_len_v6) {
                    Ok(Ok(len)) => Netmask::V6(len),
                    _ => {
                        self.report(
                            m.span(),
                            format!(
                                "{what}.netmask: expected an IPv6 prefix length 1 to 128, found {len}"
                            ),
                        );
                        return None;
                    }
                }
            }
            (RawNetmask::Prefix(_), IpAddr::V4(_)) | (RawNetmask::Dotted(_), IpAddr::V6(_)) => {
                self.report(
                    m.span(),
                    rule_message(what, &RuleError::NetmaskFamily { vip }),
                );
                return None;
            }
        };
        match validate::service_netmask(vip, mask) {
            Ok(mask) => Some(mask),
            Err(e) => {
                self.report(m.span(), rule_message(what, &e));
                None
            }
        }
    }

    pub(super) fn config(&mut self, raw: &RawConfig) -> (DirectorSettings, ServiceSet) {
        let mut settings = DirectorSettings::default();
        if let Some(s) = &raw.scripts {
            let r = s.get_ref();
            self.scripts = ScriptPolicy {
                user: self.script_user(&r.user, &r.group, &s.span(), "scripts"),
                security: r.enable_script_security,
            };
        }
        if let Some(d) = &raw.director {
            self.director(d, &mut settings);
        }
        if let Some(t) = &raw.timeouts {
            let max = i64::from(MAX_TIMEOUT);
            let defaults = Timeouts::default();
            settings.timeouts = Timeouts {
                tcp: self.int(&t.tcp, "timeouts.tcp", 1, max, defaults.tcp.into()) as u32,
                tcpfin: self.int(&t.tcpfin, "timeouts.tcpfin", 1, max, defaults.tcpfin.into())
                    as u32,
                udp: self.int(&t.udp, "timeouts.udp", 1, max, defaults.udp.into()) as u32,
            };
        }
        let mut set = ServiceSet::default();
        let mut first_seen: Vec<(ServiceKey, usize)> = Vec::new();
        for (i, svc) in raw.service.iter().enumerate() {
            let Some(config) = self.service(svc, i) else {
                continue;
            };
            let key = config.key;
            let at = svc.get_ref().vip.as_ref().map_or(svc.span(), Spanned::span);
            if let Some((_, line)) = first_seen.iter().find(|(k, _)| *k == key) {
                let line = *line;
                self.report(
                    at,
                    format!("service[{i}]: duplicate service {key} (first defined on line {line})"),
                );
                continue;
            }
            first_seen.push((key, problem(self.text, at.start, String::new()).line));
            set.services.push(config);
        }
        settings.tunnel_routes = self.tunnel_routes(&raw.tunnel_route);
        settings.snat = self.snat(&raw.snat);
        settings.vrrp = self.vrrp(super::vrrp::RawVrrpSections {
            vrrp: raw.vrrp.as_ref(),
            instances: &raw.vrrp_instance,
            scripts: &raw.vrrp_script,
            groups: &raw.vrrp_sync_group,
            sync: raw.sync.as_ref(),
        });
        settings.vrrp.script_user = self.scripts.user.clone();
        (settings, set)
    }
}

impl Validator<'_> {
    /// `user` / `group` keys of a script (a group needs a user).
    pub(super) fn script_user(
        &mut self,
        user: &Option<String>,
        group: &Option<String>,
        span: &Range<usize>,
        what: &str,
    ) -> Option<ScriptUser> {
        match (user, group) {
            (Some(u), g) => Some(ScriptUser {
                user: u.clone(),
                group: g.clone(),
            }),
            (None, Some(_)) => {
                self.report(
                    span.clone(),
                    format!("{what}: `group` needs `user` (the user the script runs as)"),
                );
                None
            }
            (None, None) => None,
        }
    }

    /// Checks a script line ([`crate::sys::script::vet`]): refused with its place, or a
    /// warning logged.
    pub(super) fn vet_script(
        &mut self,
        span: &Range<usize>,
        what: &str,
        line: &str,
        own: Option<&ScriptUser>,
    ) {
        match crate::sys::script::vet(line, own, &self.scripts) {
            Ok(None) => {}
            Ok(Some(w)) => log::warn!("{what} {line:?}: {w}"),
            Err(e) => self.report(span.clone(), format!("{what} {line:?}: {e}")),
        }
    }

    /// [`Self::vet_script`] for each `notify*` script, run as its own user, else the global
    /// one.
    pub(super) fn vet_notify(
        &mut self,
        n: &crate::vrrp::config::Notify,
        span: &Range<usize>,
        what: &str,
    ) {
        for (key, script) in n.scripts() {
            if let Some(s) = script {
                let at = format!("{what}.{key}");
                self.vet_script(span, &at, &s.command, s.user.as_ref());
            }
        }
    }

    pub(super) fn director(&mut self, d: &RawDirector, settings: &mut DirectorSettings) {
        settings.queues = self.int(&d.queues, "director.queues", 1, MAX_QUEUES as i64, 1) as usize;
        settings.tunnel_mtu =
            self.int(&d.tunnel_mtu, "director.tunnel_mtu", 576, 65_535, 1500) as u16;
        if let Some(name) = &d.tun_name {
            let n = name.get_ref();
            let valid = !n.is_empty()
                && n.len() < 16
                && n != "."
                && n != ".."
                && !n.contains(|c: char| c == '/' || c.is_whitespace() || c == ':');
            if valid {
                settings.tun_name = n.clone();
            } else {
                self.report(
                    name.span(),
                    format!(
                        "director.tun_name: expected an interface name of 1 to 15 characters \
                         without '/', ':' or spaces, found {n:?}"
                    ),
                );
            }
        }
        if let Some(a) = &d.local_address {
            settings.local_address = self.unicast(a, "director.local_address");
        }
        if let Some(a) = &d.local_address6 {
            settings.local_address6 = self.unicast6(a, "director.local_address6");
        }
        if let Some(announce) = &d.announce {
            settings.announce = announce.clone();
        }
        if let Some(t) = &d.announce_table {
            match super::announce_table(*t.get_ref()) {
                Ok(table) => settings.announce_table = Some(table),
                Err(e) => self.report(t.span(), format!("director.announce_table: {e}")),
            }
        }
        settings.sloppy_tcp = d.sloppy_tcp;
        settings.sloppy_sctp = d.sloppy_sctp;
    }

    pub(super) fn service(&mut self, svc: &Spanned<RawService>, i: usize) -> Option<ServiceConfig> {
        let at = svc.span();
        let s = svc.get_ref();
        let what = format!("service[{i}]");
        let vip = match &s.vip {
            Some(v) => self.ip_unicast(v, &format!("{what}.vip")),
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `vip` (an IPv4 or IPv6 address)"),
                );
                None
            }
        };
        let port = match &s.port {
            Some(_) => self.int(&s.port, &format!("{what}.port"), 0, 65_535, 0) as u16,
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `port` (0 to 65535; 0 = every port)"),
                );
                0
            }
        };
        let proto = match &s.protocol {
            None => Protocol::Tcp,
            Some(p) => match p.get_ref().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                other => {
                    self.report(
                        p.span(),
                        format!("{what}.protocol: expected \"tcp\" or \"udp\", found {other:?}"),
                    );
                    Protocol::Tcp
                }
            },
        };
        let scheduler = match &s.scheduler {
            None => SchedulerKind::default(),
            Some(name) => {
                name.get_ref()
                    .parse()
                    .unwrap_or_else(|e: crate::model::UnknownScheduler| {
                        self.report(name.span(), format!("{what}.scheduler: {e}"));
                        SchedulerKind::default()
                    })
            }
        };
        let persistence = s.persistence.as_ref().map(|_| Persistence {
            timeout: self.int(
                &s.persistence,
                &format!("{what}.persistence"),
                1,
                MAX_TIMEOUT.into(),
                300,
            ) as u32,
            netmask: Netmask::host(vip.unwrap_or(Ipv4Addr::UNSPECIFIED.into())),
        });
        let persistence = match (persistence, &s.netmask) {
            (p, None) => p,
            (None, Some(m)) => {
                self.report(
                    m.span(),
                    format!("{what}.netmask: only meaningful with `persistence`; add it or remove the netmask"),
                );
                None
            }
            (Some(mut p), Some(m)) => {
                if let Some(vip) = vip {
                    if let Some(mask) = self.netmask(m, vip, &what) {
                        p.netmask = mask;
                    }
                }
                Some(p)
            }
        };
        if let (Some(p), Err(e)) = (&s.port, validate::service_port(port, persistence.as_ref())) {
            self.report(p.span(), rule_message(&what, &e));
        }
        let mss_clamp = s.mss_clamp.as_ref().map(|_| {
            self.int(
                &s.mss_clamp,
                &format!("{what}.mss_clamp"),
                MIN_MSS_CLAMP.into(),
                65_535,
                1460,
            ) as u16
        });

        let key = ServiceKey {
            vip: vip.unwrap_or(Ipv4Addr::UNSPECIFIED.into()),
            port,
            proto,
        };
        let mut dests: Vec<DestConfig> = Vec::new();
        for (j, rs) in s.real_server.iter().enumerate() {
            let what = format!("{what}.real_server[{j}]");
            let Some(d) = self.real_server(rs, &what, key) else {
                continue;
            };
            if let Err(e) = validate::unique_dest(&dests, d.addr, d.port) {
                let span = rs
                    .get_ref()
                    .address
                    .as_ref()
                    .map_or(rs.span(), Spanned::span);
                self.report(span, rule_message(&what, &e));
                continue;
            }
            dests.push(d);
        }
        self.service_health(s, &at, &what, key);
        vip?;
        Some(ServiceConfig {
            key,
            scheduler,
            persistence,
            mss_clamp,
            dests,
            policy: ExpirePolicy {
                expire_nodest_conn: s
                    .expire_nodest_conn
                    .unwrap_or(ExpirePolicy::default().expire_nodest_conn),
                expire_quiescent_template: s
                    .expire_quiescent_template
                    .unwrap_or(ExpirePolicy::default().expire_quiescent_template),
            },
        })
    }
}

impl Validator<'_> {
    /// A real server's `tunnel_key`: only for GUE (IPIP and GRE cannot carry a MAC), a key
    /// file that loads ([`crate::encap::auth::TunnelKey::load`]: 64 hex characters, mode
    /// 0600, owned by tunlb's user), one key per real server address.
    fn tunnel_key(&mut self, k: &Spanned<String>, what: &str, addr: Option<IpAddr>, gue: bool) {
        if !gue {
            self.report(
                k.span(),
                format!("{what}.tunnel_key: only valid with tun_type = \"gue\" (IPIP and GRE cannot carry a MAC: use GUE, or IPsec)"),
            );
            return;
        }
        let path = std::path::PathBuf::from(k.get_ref());
        if let Err(e) = crate::encap::auth::TunnelKey::load(&path) {
            self.report(k.span(), format!("{what}.tunnel_key: {e}"));
            return;
        }
        let Some(addr) = addr else {
            return;
        };
        match self.tunnel_keys.get(&addr) {
            Some(other) if *other != path => self.report(
                k.span(),
                format!(
                    "{what}.tunnel_key: real server {addr} already has tunnel_key {:?}; one key per real server",
                    other.display()
                ),
            ),
            _ => {
                self.tunnel_keys.insert(addr, path);
            }
        }
    }

    pub(super) fn real_server(
        &mut self,
        rs: &Spanned<RawRealServer>,
        what: &str,
        svc: ServiceKey,
    ) -> Option<DestConfig> {
        let r = rs.get_ref();
        let addr = match &r.address {
            Some(a) => self.ip_unicast(a, &format!("{what}.address")),
            None => {
                self.report(
                    rs.span(),
                    format!("{what}: missing key `address` (an IPv4 or IPv6 address)"),
                );
                None
            }
        };
        let weight = self.int(
            &r.weight,
            &format!("{what}.weight"),
            0,
            MAX_WEIGHT.into(),
            1,
        ) as u32;
        let max_t = i64::from(MAX_THRESHOLD);
        let u_threshold =
            self.int(&r.u_threshold, &format!("{what}.u_threshold"), 0, max_t, 0) as u32;
        let l_threshold =
            self.int(&r.l_threshold, &format!("{what}.l_threshold"), 0, max_t, 0) as u32;
        if let Err(e) = validate::thresholds(u_threshold, l_threshold) {
            let span = r.l_threshold.as_ref().map_or(rs.span(), Spanned::span);
            self.report(span, rule_message(what, &e));
        }

        #[derive(PartialEq)]
        enum Method {
            Tunnel,
            Dr,
            Nat,
        }
        let method = match &r.forward {
            None => Method::Tunnel,
            Some(f) => match f.get_ref().as_str() {
                "tunnel" => Method::Tunnel,
                "dr" => Method::Dr,
                "nat" => Method::Nat,
                other => {
                    self.report(
                        f.span(),
                        format!("{what}.forward: expected \"tunnel\", \"dr\" or \"nat\", found {other:?}"),
                    );
                    Method::Tunnel
                }
            },
        };
        let tun_type = match &r.tun_type {
            None => TunnelType::default(),
            Some(t) => t.get_ref().parse().unwrap_or_else(|e: String| {
                self.report(t.span(), format!("{what}.tun_type: {e}"));
                TunnelType::default()
            }),
        };
        // Tunnel keys only where they mean something.
        let tunnel_keys: [(&str, Option<Range<usize>>, bool); 4] = [
            (
                "tun_type",
                r.tun_type.as_ref().map(Spanned::span),
                method == Method::Tunnel,
            ),
            (
                "tun_port",
                r.tun_port.as_ref().map(Spanned::span),
                method == Method::Tunnel
                    && validate::tunnel_option_allowed(tun_type, TunnelOption::Port),
            ),
            (
                "tun_csum",
                r.tun_csum.as_ref().map(Spanned::span),
                method == Method::Tunnel
                    && validate::tunnel_option_allowed(tun_type, TunnelOption::Checksum),
            ),
            (
                "gre_key",
                r.gre_key.as_ref().map(Spanned::span),
                method == Method::Tunnel
                    && validate::tunnel_option_allowed(tun_type, TunnelOption::GreKey),
            ),
        ];
        for (key, span, allowed) in tunnel_keys {
            if let (Some(span), false) = (span, allowed) {
                let only = match key {
                    "tun_type" => "forward = \"tunnel\"",
                    "tun_port" => "tun_type = \"gue\"",
                    "tun_csum" => "tun_type = \"gue\" or \"gre\"",
                    _ => "tun_type = \"gre\"",
                };
                self.report(span, format!("{what}.{key}: only valid with {only}"));
            }
        }
        let tun_port = self.int(
            &r.tun_port,
            &format!("{what}.tun_port"),
            1,
            65_535,
            DEFAULT_GUE_PORT.into(),
        ) as u16;
        let gre_key = r.gre_key.as_ref().map(|_| {
            self.int(
                &r.gre_key,
                &format!("{what}.gre_key"),
                0,
                u32::MAX.into(),
                0,
            ) as u32
        });
        if let Some(k) = &r.tunnel_key {
            self.tunnel_key(
                k,
                what,
                addr,
                method == Method::Tunnel && tun_type == TunnelType::Gue,
            );
        }
        let forward = match method {
            Method::Tunnel => Forward::Tunnel(Tunnel::new(
                tun_type,
                tun_port,
                r.tun_csum.as_ref().is_some_and(|c| *c.get_ref()),
                gre_key,
            )),
            Method::Dr => Forward::Dr,
            Method::Nat => Forward::Nat,
        };

        let port = match &r.port {
            None => svc.port,
            Some(p) => {
                let port = self.int(&r.port, &format!("{what}.port"), 0, 65_535, 0) as u16;
                validate::real_server_port(svc.port, &forward, validate::zero_is_unset(port))
                    .unwrap_or_else(|e| {
                        self.report(p.span(), rule_message(what, &e));
                        svc.port
                    })
            }
        };
        let addr = addr?;
        if let Err(e) = validate::dest_family(svc.vip, addr, &forward) {
            // A VIP that did not parse stands as 0.0.0.0: no second complaint then.
            if !svc.vip.is_unspecified() {
                let span = r.address.as_ref().map_or(rs.span(), Spanned::span);
                self.report(span, rule_message(what, &e));
            }
        }
        Some(DestConfig {
            addr,
            port,
            weight,
            forward,
            u_threshold,
            l_threshold,
        })
    }
}

/// A broken model rule in the config's words; `what` is the service or real server
/// (`service[0]`, `service[0].real_server[1]`) and the key is named after it.
pub(super) fn rule_message(what: &str, e: &RuleError) -> String {
    match e {
        RuleError::ZeroPortNeedsPersistence => {
            format!("{what}.port: port 0 (every port) needs `persistence`")
        }
        RuleError::NetmaskNotContiguous(mask) => format!(
            "{what}.netmask: expected a contiguous netmask like \"255.255.255.0\", found {mask}"
        ),
        RuleError::ThresholdsOutOfOrder { upper, .. } => {
            format!("{what}.l_threshold: must not exceed u_threshold ({upper})")
        }
        RuleError::DestPortMismatch { service_port } => format!(
            "{what}.port: expected {service_port} (the service's port) or nothing: \
             tunnel and dr cannot change the port"
        ),
        RuleError::DuplicateDest { addr, port } => {
            let addr = crate::model::fmt_addr_port(*addr, port);
            format!("{what}: duplicate real server {addr}")
        }
        RuleError::Ipv6PrefixLen(len) => {
            format!("{what}.netmask: expected an IPv6 prefix length 1 to 128, found {len}")
        }
        RuleError::NetmaskFamily { vip: IpAddr::V4(_) } => {
            format!("{what}.netmask: expected a netmask like \"255.255.255.0\" for an IPv4 vip")
        }
        RuleError::NetmaskFamily { vip: IpAddr::V6(_) } => {
            format!("{what}.netmask: expected a prefix length like 64 for an IPv6 vip")
        }
        RuleError::FamilyMismatch { .. } => format!("{what}.address: {e}"),
        // Ranges are checked where the number is read, with the key's own bounds.
        RuleError::PersistenceTimeout(_) | RuleError::Weight(_) | RuleError::Threshold(_) => {
            format!("{what}: {e}")
        }
    }
}

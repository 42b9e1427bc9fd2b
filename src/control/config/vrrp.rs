//! `[vrrp]`, `[[vrrp_instance]]`, `[[vrrp_script]]`, `[[vrrp_sync_group]]` and `[sync]`: the
//! TOML twin of keepalived.conf's VRRP blocks and `lvs_sync_daemon`, into the same
//! [`VrrpConfig`], with the same checks ([`VrrpConfig::finish`]). Keys are keepalived's
//! keywords; what keepalived.conf only warns about (and corrects) is an error here, the
//! native format has no use for a setting that is ignored.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::validate::Validator;
use crate::model::ScriptUser;
use crate::vrrp::config::{
    auth_pass_bytes, is_ifname, parse_vip, Garp, InitialState, InstanceConfig, Notify,
    NotifyScript, ScriptConfig, Subject, SyncConfig, SyncGroupConfig, TrackInterface, TrackScript,
    Version, VrrpConfig,
};

/// Seconds as an integer or a float (`advert_int = 1` or `0.1`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawSeconds {
    Int(i64),
    Float(f64),
}

/// `[vrrp]`: global_defs' VRRP keys.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVrrp {
    pub(super) router_id: Option<String>,
    pub(super) version: Option<Spanned<i64>>,
    pub(super) garp_master_delay: Option<Spanned<i64>>,
    pub(super) garp_master_repeat: Option<Spanned<i64>>,
    pub(super) garp_master_refresh: Option<Spanned<i64>>,
    pub(super) garp_master_refresh_repeat: Option<Spanned<i64>>,
    pub(super) garp_interval: Option<Spanned<RawSeconds>>,
}

/// `track_interface = ["eth1", { name = "eth2", weight = -10 }]`, the same for `track_script`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawTrack {
    Name(String),
    Weighted(RawWeighted),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeighted {
    pub(super) name: String,
    pub(super) weight: Option<i64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInstance {
    pub(super) name: Option<Spanned<String>>,
    pub(super) state: Option<Spanned<String>>,
    pub(super) interface: Option<Spanned<String>>,
    pub(super) virtual_router_id: Option<Spanned<i64>>,
    pub(super) priority: Option<Spanned<i64>>,
    pub(super) advert_int: Option<Spanned<RawSeconds>>,
    pub(super) version: Option<Spanned<i64>>,
    pub(super) nopreempt: Option<Spanned<bool>>,
    pub(super) preempt_delay: Option<Spanned<RawSeconds>>,
    pub(super) auth_type: Option<Spanned<String>>,
    pub(super) auth_pass: Option<Spanned<String>>,
    pub(super) virtual_ipaddress: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) unicast_src_ip: Option<Spanned<String>>,
    pub(super) unicast_peer: Option<Vec<Spanned<String>>>,
    pub(super) track_interface: Option<Vec<Spanned<RawTrack>>>,
    pub(super) track_script: Option<Vec<Spanned<RawTrack>>>,
    pub(super) notify_master: Option<RawNotify>,
    pub(super) notify_backup: Option<RawNotify>,
    pub(super) notify_fault: Option<RawNotify>,
    pub(super) notify_stop: Option<RawNotify>,
    pub(super) notify: Option<RawNotify>,
    pub(super) garp_master_delay: Option<Spanned<i64>>,
    pub(super) garp_master_repeat: Option<Spanned<i64>>,
    pub(super) garp_master_refresh: Option<Spanned<i64>>,
    pub(super) garp_master_refresh_repeat: Option<Spanned<i64>>,
}

/// A `notify*` value: the command line, or `{ script = "...", user = "...", group = "..." }`
/// (keepalived's `notify_master SCRIPT USER [GROUP]`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawNotify {
    Line(String),
    Full(RawNotifyFull),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifyFull {
    script: String,
    user: Option<String>,
    group: Option<String>,
}

/// The model's script of a raw `notify*` value (a `group` without a `user` is reported by
/// [`Validator::vet_notify`]).
fn notify_script(raw: &Option<RawNotify>) -> Option<NotifyScript> {
    raw.as_ref().map(|r| match r {
        RawNotify::Line(l) => NotifyScript::from(l.as_str()),
        RawNotify::Full(f) => NotifyScript {
            command: f.script.clone(),
            user: f.user.clone().map(|user| ScriptUser {
                user,
                group: f.group.clone(),
            }),
        },
    })
}

/// Whether a raw `notify*` value names a group without a user.
fn group_without_user(raw: &Option<RawNotify>) -> bool {
    matches!(raw, Some(RawNotify::Full(f)) if f.user.is_none() && f.group.is_some())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScript {
    pub(super) name: Option<Spanned<String>>,
    pub(super) script: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<RawSeconds>>,
    pub(super) timeout: Option<Spanned<RawSeconds>>,
    pub(super) weight: Option<Spanned<i64>>,
    pub(super) rise: Option<Spanned<i64>>,
    pub(super) fall: Option<Spanned<i64>>,
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSyncGroup {
    pub(super) name: Option<Spanned<String>>,
    pub(super) group: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) notify_master: Option<RawNotify>,
    pub(super) notify_backup: Option<RawNotify>,
    pub(super) notify_fault: Option<RawNotify>,
    pub(super) notify_stop: Option<RawNotify>,
    pub(super) notify: Option<RawNotify>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) interface: Option<Spanned<String>>,
    pub(super) instance: Option<Spanned<String>>,
    pub(super) id: Option<Spanned<i64>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) ttl: Option<Spanned<i64>>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) maxlen: Option<Spanned<i64>>,
    pub(super) peers: Option<Vec<Spanned<String>>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) key_file: Option<Spanned<String>>,
}

/// The shortest sync key accepted (HMAC-SHA256 wants at least this much secret).
pub const MIN_SYNC_KEY: usize = 16;

/// The TOML sections of [`VrrpConfig`].
pub(super) struct RawVrrpSections<'r> {
    pub(super) vrrp: Option<&'r Spanned<RawVrrp>>,
    pub(super) instances: &'r [Spanned<RawInstance>],
    pub(super) scripts: &'r [Spanned<RawScript>],
    pub(super) groups: &'r [Spanned<RawSyncGroup>],
    pub(super) sync: Option<&'r Spanned<RawSync>>,
}

/// Where an instance and its parts were written.
struct InstanceSpans {
    name: Range<usize>,
    fields: Vec<(&'static str, Range<usize>)>,
    track_scripts: Vec<Range<usize>>,
    track_interfaces: Vec<Range<usize>>,
}

/// Where each part was written, for [`VrrpConfig::finish`]'s issues.
#[derive(Default)]
struct Spans {
    instances: Vec<InstanceSpans>,
    scripts: Vec<Range<usize>>,
    groups: Vec<(Range<usize>, Vec<Range<usize>>)>,
    sync_instance: Range<usize>,
}

impl Spans {
    fn of(&self, s: Subject) -> Range<usize> {
        let inst = |i: usize| self.instances.get(i);
        let found = match s {
            Subject::Instance(i) => inst(i).map(|p| p.name.clone()),
            Subject::Field(i, kw) => inst(i).map(|p| {
                p.fields
                    .iter()
                    .find(|(k, _)| *k == kw)
                    .map_or(p.name.clone(), |(_, r)| r.clone())
            }),
            Subject::TrackScript(i, j) => inst(i).and_then(|p| p.track_scripts.get(j).cloned()),
            Subject::TrackInterface(i, j) => {
                inst(i).and_then(|p| p.track_interfaces.get(j).cloned())
            }
            Subject::Script(k) => self.scripts.get(k).cloned(),
            Subject::SyncGroup(g) => self.groups.get(g).map(|p| p.0.clone()),
            Subject::Member(g, m) => self.groups.get(g).and_then(|p| p.1.get(m).cloned()),
            Subject::SyncInstance => Some(self.sync_instance.clone()),
        };
        found.unwrap_or(0..0)
    }
}

fn span_of<T>(v: &Option<Spanned<T>>, or: &Range<usize>) -> Range<usize> {
    v.as_ref().map_or(or.clone(), Spanned::span)
}

impl Validator<'_> {
    fn seconds_value(
        &mut self,
        v: &Spanned<RawSeconds>,
        what: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let d = match v.get_ref() {
            RawSeconds::Int(i) => u64::try_from(*i).ok().map(Duration::from_secs),
            RawSeconds::Float(f) if f.is_finite() && *f >= 0.0 && *f < 1e9 => {
                Some(Duration::from_micros((f * 1e6).round() as u64))
            }
            RawSeconds::Float(_) => None,
        };
        match d {
            Some(d) if d >= min && d <= max => Some(d),
            _ => {
                let shown = match v.get_ref() {
                    RawSeconds::Int(i) => i.to_string(),
                    RawSeconds::Float(f) => f.to_string(),
                };
                self.report(
                    v.span(),
                    format!(
                        "{what}: expected a time in seconds from {} to {}, found {shown}",
                        min.as_secs_f64(),
                        max.as_secs_f64()
                    ),
                );
                None
            }
        }
    }

    fn ifname(&mut self, v: &Spanned<String>, what: &str) -> Option<String> {
        if is_ifname(v.get_ref()) {
            Some(v.get_ref().clone())
        } else {
            self.report(
                v.span(),
                format!(
                    "{what}: expected an interface name of 1 to 15 characters without '/', ':' or spaces, found {:?}",
                    v.get_ref()
                ),
            );
            None
        }
    }

    fn name(&mut self, v: &Option<Spanned<String>>, at: &Range<usize>, what: &str) -> String {
        match v {
            Some(n) if !n.get_ref().is_empty() && !n.get_ref().contains(char::is_whitespace) => {
                n.get_ref().clone()
            }
            Some(n) => {
                self.report(
                    n.span(),
                    format!(
                        "{what}.name: expected a name without spaces, found {:?}",
                        n.get_ref()
                    ),
                );
                String::new()
            }
            None => {
                self.report(at.clone(), format!("{what}: missing key `name`"));
                String::new()
            }
        }
    }

    fn garp(&mut self, garp: &mut Garp, keys: [&Option<Spanned<i64>>; 4], what: &str) {
        let max = i64::from(u32::MAX);
        if keys[0].is_some() {
            let s = self.int(keys[0], &format!("{what}garp_master_delay"), 0, max, 5);
            garp.master_delay = Duration::from_secs(s as u64);
        }
        if keys[1].is_some() {
            garp.master_repeat =
                self.int(keys[1], &format!("{what}garp_master_repeat"), 1, max, 5) as u32;
        }
        if keys[2].is_some() {
            let s = self.int(keys[2], &format!("{what}garp_master_refresh"), 0, max, 0);
            garp.master_refresh = (s > 0).then(|| Duration::from_secs(s as u64));
        }
        if keys[3].is_some() {
            garp.master_refresh_repeat = self.int(
                keys[3],
                &format!("{what}garp_master_refresh_repeat"),
                1,
                max,
                1,
            ) as u32;
        }
    }

    /// The VRRP sections into the model; every problem reported.
    pub(super) fn vrrp(&mut self, raw: RawVrrpSections<'_>) -> VrrpConfig {
        let mut out = VrrpConfig::default();
        let mut version = Version::V2;
        let mut garp = Garp::default();
        if let Some(v) = raw.vrrp {
            let g = v.get_ref();
            out.router_id = g.router_id.clone();
            if g.version.is_some() {
                version = match self.int(&g.version, "vrrp.version", 2, 3, 2) {
                    3 => Version::V3,
                    _ => Version::V2,
                };
            }
            self.garp(
                &mut garp,
                [
                    &g.garp_master_delay,
                    &g.garp_master_repeat,
                    &g.garp_master_refresh,
                    &g.garp_master_refresh_repeat,
                ],
                "vrrp.",
            );
            if let Some(i) = &g.garp_interval {
                if let Some(d) = self.seconds_value(
                    i,
                    "vrrp.garp_interval",
                    Duration::ZERO,
                    Duration::from_secs(60),
                ) {
                    garp.interval = d;
                }
            }
        }
        let mut spans = Spans::default();
        for (i, entry) in raw.instances.iter().enumerate() {
            let (inst, s) = self.instance(entry, i, version, garp);
            out.instances.push(inst);
            spans.instances.push(s);
        }
        for (k, entry) in raw.scripts.iter().enumerate() {
            out.scripts.push(self.script(entry, k));
            spans
                .scripts
                .push(span_of(&entry.get_ref().name, &entry.span()));
        }
        for (g, entry) in raw.groups.iter().enumerate() {
            let what = format!("vrrp_sync_group[{g}]");
            let e = entry.get_ref();
            let name = self.name(&e.name, &entry.span(), &what);
            let mut members = Vec::new();
            let mut at = Vec::new();
            match &e.group {
                Some(list) => {
                    for m in list.get_ref() {
                        members.push(m.get_ref().clone());
                        at.push(m.span());
                    }
                }
                None => self.report(
                    entry.span(),
                    format!("{what}: missing key `group` (the names of its vrrp_instances)"),
                ),
            }
            out.sync_groups.push(SyncGroupConfig {
                name,
                members,
                notify: Notify {
                    master: notify_script(&e.notify_master),
                    backup: notify_script(&e.notify_backup),
                    fault: notify_script(&e.notify_fault),
                    stop: notify_script(&e.notify_stop),
                    any: notify_script(&e.notify),
                },
            });
            if let Some(g) = out.sync_groups.last() {
                let notify = g.notify.clone();
                self.vet_notify(&notify, &entry.span(), &what);
                let raws = [
                    &e.notify_master,
                    &e.notify_backup,
                    &e.notify_fault,
                    &e.notify_stop,
                    &e.notify,
                ];
                if raws.into_iter().any(group_without_user) {
                    self.report(
                        entry.span(),
                        format!("{what}: a notify script's `group` needs a `user`"),
                    );
                }
            }
            let gspan = e.group.as_ref().map_or(entry.span(), Spanned::span);
            spans.groups.push((span_of(&e.name, &gspan), at));
        }
        if let Some(s) = raw.sync {
            if let Some(sync) = self.sync(s, &out) {
                spans.sync_instance = span_of(&s.get_ref().instance, &s.span());
                out.sync = Some(sync);
            }
        }
        for issue in out.finish() {
            let message = if issue.error {
                issue.message
            } else {
                // keepalived.conf warns and corrects; the native format says it instead.
                format!(
                    "{} (an error in the TOML config: fix the setting)",
                    issue.message
                )
            };
            self.report(spans.of(issue.subject), message);
        }
        out
    }

    fn instance(
        &mut self,
        entry: &Spanned<RawInstance>,
        i: usize,
        version: Version,
        garp: Garp,
    ) -> (InstanceConfig, InstanceSpans) {
        let at = entry.span();
        let r = entry.get_ref();
        let what = format!("vrrp_instance[{i}]");
        let name = self.name(&r.name, &at, &what);
        let mut inst = InstanceConfig::new(&name, "", 0);
        inst.version = version;
        inst.garp = garp;
        let mut fields: Vec<(&'static str, Range<usize>)> = Vec::new();
        let mut field = |k: &'static str, span: Option<Range<usize>>| {
            if let Some(s) = span {
                fields.push((k, s));
            }
        };
        field("state", r.state.as_ref().map(Spanned::span));
        field("priority", r.priority.as_ref().map(Spanned::span));
        field("advert_int", r.advert_int.as_ref().map(Spanned::span));
        field(
            "authentication",
            r.auth_pass
                .as_ref()
                .or(r.auth_type.as_ref())
                .map(Spanned::span),
        );
        field("nopreempt", r.nopreempt.as_ref().map(Spanned::span));
        field("preempt_delay", r.preempt_delay.as_ref().map(Spanned::span));
        field(
            "virtual_ipaddress",
            r.virtual_ipaddress.as_ref().map(Spanned::span),
        );
        field(
            "virtual_router_id",
            r.virtual_router_id.as_ref().map(Spanned::span),
        );
        field(
            "unicast_src_ip",
            r.unicast_src_ip.as_ref().map(Spanned::span),
        );
        field(
            "unicast_peer",
            r.unicast_peer
                .as_ref()
                .and_then(|v| v.first())
                .map(Spanned::span),
        );
        let name_span = span_of(&r.name, &at);

        if let Some(s) = &r.state {
            match s.get_ref().as_str() {
                "MASTER" => inst.initial = InitialState::Master,
                "BACKUP" => inst.initial = InitialState::Backup,
                other => self.report(
                    s.span(),
                    format!("{what}.state: expected \"MASTER\" or \"BACKUP\", found {other:?}"),
                ),
            }
        }
        match &r.interface {
            Some(v) => {
                if let Some(n) = self.ifname(v, &format!("{what}.interface")) {
                    inst.interface = n;
                }
            }
            None => self.report(
                at.clone(),
                format!(
                    "{what}: missing key `interface` (where adverts go and the VIPs are answered)"
                ),
            ),
        }
        match &r.virtual_router_id {
            Some(_) => {
                inst.vrid = self.int(
                    &r.virtual_router_id,
                    &format!("{what}.virtual_router_id"),
                    1,
                    255,
                    1,
                ) as u8
            }
            None => self.report(
                at.clone(),
                format!("{what}: missing key `virtual_router_id` (1 to 255)"),
            ),
        }
        match &r.priority {
            Some(_) => inst.priority = self.int(&r.priority, &format!("{what}.priority"), 1, 255, 100) as u8,
            None if inst.initial == InitialState::Master => self.report(
                r.state.as_ref().map_or(at.clone(), Spanned::span),
                format!(
                    "{what}: state = \"MASTER\" without `priority`: write it (keepalived would make the instance the address owner, priority 255)"
                ),
            ),
            None => {}
        }
        if let Some(v) = &r.advert_int {
            if let Some(d) = self.seconds_value(
                v,
                &format!("{what}.advert_int"),
                Duration::from_millis(10),
                Duration::from_secs(255),
            ) {
                inst.advert_int = d;
            }
        }
        if r.version.is_some() {
            inst.version = match self.int(&r.version, &format!("{what}.version"), 2, 3, 2) {
                3 => Version::V3,
                _ => Version::V2,
            };
        }
        if let Some(n) = &r.nopreempt {
            inst.preempt = !n.get_ref();
        }
        if let Some(v) = &r.preempt_delay {
            if let Some(d) = self.seconds_value(
                v,
                &format!("{what}.preempt_delay"),
                Duration::ZERO,
                Duration::from_secs(1000),
            ) {
                inst.preempt_delay = d;
            }
        }
        if let Some(t) = &r.auth_type {
            match t.get_ref().as_str() {
                "PASS" => {}
                "AH" => self.report(
                    t.span(),
                    format!("{what}.auth_type: AH (IPsec AH) is not supported by tunlb; use \"PASS\" or none"),
                ),
                other => self.report(
                    t.span(),
                    format!("{what}.auth_type: expected \"PASS\", found {other:?}"),
                ),
            }
        }
        if let Some(p) = &r.auth_pass {
            let text = p.get_ref();
            if text.is_empty() || text.len() > 8 {
                self.report(
                    p.span(),
                    format!("{what}.auth_pass: expected 1 to 8 characters (VRRPv2's PASS field), found {} ", text.len()),
                );
            } else {
                inst.auth_pass = auth_pass_bytes(text);
            }
        } else if let Some(t) = &r.auth_type {
            self.report(
                t.span(),
                format!("{what}.auth_type: `auth_pass` is missing"),
            );
        }
        match &r.virtual_ipaddress {
            None => {}
            Some(list) => {
                for (j, v) in list.get_ref().iter().enumerate() {
                    let words: Vec<&str> = v.get_ref().split_whitespace().collect();
                    match parse_vip(&words) {
                        Ok(vip) if inst.vips.iter().any(|o| o.addr == vip.addr) => self.report(
                            v.span(),
                            format!(
                                "{what}.virtual_ipaddress[{j}]: {} is listed twice",
                                vip.addr
                            ),
                        ),
                        Ok(vip) => inst.vips.push(vip),
                        Err((_, m)) => {
                            self.report(v.span(), format!("{what}.virtual_ipaddress[{j}]: {m}"))
                        }
                    }
                }
            }
        }
        if let Some(a) = &r.unicast_src_ip {
            inst.unicast_src = self.ip_unicast(a, &format!("{what}.unicast_src_ip"));
        }
        for (j, p) in r.unicast_peer.iter().flatten().enumerate() {
            if let Some(a) = self.ip_unicast(p, &format!("{what}.unicast_peer[{j}]")) {
                if inst.unicast_peers.contains(&a) {
                    self.report(
                        p.span(),
                        format!("{what}.unicast_peer[{j}]: {a} is listed twice"),
                    );
                } else {
                    inst.unicast_peers.push(a);
                }
            }
        }
        let mut ts_spans = Vec::new();
        for (j, t) in r.track_script.iter().flatten().enumerate() {
            let (name, weight) = self.track(t, &format!("{what}.track_script[{j}]"));
            ts_spans.push(t.span());
            inst.track_scripts.push(TrackScript { name, weight });
        }
        let mut ti_spans = Vec::new();
        for (j, t) in r.track_interface.iter().flatten().enumerate() {
            let w = format!("{what}.track_interface[{j}]");
            let (name, weight) = self.track(t, &w);
            if !is_ifname(&name) {
                self.report(
                    t.span(),
                    format!("{w}: expected an interface name of 1 to 15 characters without '/', ':' or spaces, found {name:?}"),
                );
            }
            ti_spans.push(t.span());
            inst.track_interfaces.push(TrackInterface {
                name,
                weight: weight.filter(|w| *w != 0),
            });
        }
        inst.notify = Notify {
            master: notify_script(&r.notify_master),
            backup: notify_script(&r.notify_backup),
            fault: notify_script(&r.notify_fault),
            stop: notify_script(&r.notify_stop),
            any: notify_script(&r.notify),
        };
        let raws = [
            &r.notify_master,
            &r.notify_backup,
            &r.notify_fault,
            &r.notify_stop,
            &r.notify,
        ];
        if raws.into_iter().any(group_without_user) {
            self.report(
                entry.span(),
                format!("{what}: a notify script's `group` needs a `user`"),
            );
        }
        self.vet_notify(&inst.notify, &entry.span(), &what);
        self.garp(
            &mut inst.garp,
            [
                &r.garp_master_delay,
                &r.garp_master_repeat,
                &r.garp_master_refresh,
                &r.garp_master_refresh_repeat,
            ],
            &format!("{what}."),
        );
        let spans = InstanceSpans {
            name: name_span,
            fields,
            track_scripts: ts_spans,
            track_interfaces: ti_spans,
        };
        (inst, spans)
    }

    fn track(&mut self, t: &Spanned<RawTrack>, what: &str) -> (String, Option<i32>) {
        match t.get_ref() {
            RawTrack::Name(n) => (n.clone(), None),
            RawTrack::Weighted(w) => {
                let weight = w.weight.map(|v| {
                    if (-253..=253).contains(&v) {
                        v as i32
                    } else {
                        self.report(
                            t.span(),
                            format!(
                                "{what}.weight: expected an integer from -253 to 253, found {v}"
                            ),
                        );
                        0
                    }
                });
                (w.name.clone(), weight)
            }
        }
    }

    fn script(&mut self, entry: &Spanned<RawScript>, k: usize) -> ScriptConfig {
        let at = entry.span();
        let r = entry.get_ref();
        let what = format!("vrrp_script[{k}]");
        let name = self.name(&r.name, &at, &what);
        let max = Duration::from_secs(u64::from(u32::MAX) / 1000);
        let script = match &r.script {
            Some(s) if !s.get_ref().trim().is_empty() => s.get_ref().clone(),
            Some(s) => {
                self.report(
                    s.span(),
                    format!("{what}.script: expected a command, found an empty string"),
                );
                String::new()
            }
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `script` (the command to run)"),
                );
                String::new()
            }
        };
        let interval = r
            .interval
            .as_ref()
            .and_then(|v| {
                self.seconds_value(
                    v,
                    &format!("{what}.interval"),
                    Duration::from_millis(1),
                    max,
                )
            })
            .unwrap_or(Duration::from_secs(1));
        let timeout = r
            .timeout
            .as_ref()
            .and_then(|v| {
                self.seconds_value(v, &format!("{what}.timeout"), Duration::from_millis(1), max)
            })
            .unwrap_or(interval);
        let own = self.script_user(&r.user, &r.group, &at, &what);
        if !script.is_empty() {
            self.vet_script(&at, &format!("{what}.script"), &script, own.as_ref());
        }
        ScriptConfig {
            name,
            script,
            interval,
            timeout,
            weight: self.int(&r.weight, &format!("{what}.weight"), -253, 253, 0) as i32,
            rise: self.int(&r.rise, &format!("{what}.rise"), 1, i64::from(i32::MAX), 1) as u32,
            fall: self.int(&r.fall, &format!("{what}.fall"), 1, i64::from(i32::MAX), 1) as u32,
            user: own.or_else(|| self.scripts.user.clone()),
        }
    }

    fn sync(&mut self, entry: &Spanned<RawSync>, vrrp: &VrrpConfig) -> Option<SyncConfig> {
        let at = entry.span();
        let r = entry.get_ref();
        let interface = match &r.interface {
            Some(v) => self.ifname(v, "sync.interface"),
            None => {
                self.report(at.clone(), "sync: missing key `interface`".to_string());
                None
            }
        };
        let instance = match &r.instance {
            Some(v) => Some(v.get_ref().clone()),
            None => {
                self.report(
                    at.clone(),
                    "sync: missing key `instance` (the vrrp_instance whose MASTER sends)"
                        .to_string(),
                );
                None
            }
        };
        let mut s = SyncConfig::new(
            interface.as_deref().unwrap_or(""),
            instance.as_deref().unwrap_or(""),
        );
        s.id = match &r.id {
            Some(_) => self.int(&r.id, "sync.id", 0, 255, 0) as u8,
            // keepalived: the instance's VRID.
            None => vrrp.instance(&s.instance).map_or(0, |i| i.vrid),
        };
        s.port = self.int(&r.port, "sync.port", 1, 65_535, 8848) as u16;
        s.ttl = self.int(&r.ttl, "sync.ttl", 1, 255, 1) as u8;
        s.maxlen = self.int(&r.maxlen, "sync.maxlen", 1, 65_535 - 20 - 8, 1472) as u16;
        if let Some(g) = &r.group {
            match g.get_ref().parse::<Ipv4Addr>() {
                Ok(a) if a.is_multicast() => s.group = a,
                _ => self.report(
                    g.span(),
                    format!("sync.group: expected an IPv4 multicast address like \"224.0.0.81\", found {:?}", g.get_ref()),
                ),
            }
        }
        for (j, p) in r.peers.iter().flatten().enumerate() {
            if let Some(a) = self.unicast(p, &format!("sync.peers[{j}]")) {
                if s.peers.contains(&a) {
                    self.report(p.span(), format!("sync.peers[{j}]: {a} is listed twice"));
                } else {
                    s.peers.push(a);
                }
            }
        }
        let key = match (&r.key, &r.key_file) {
            (Some(k), Some(_)) => {
                self.report(
                    k.span(),
                    "sync: give `key` or `key_file`, not both".to_string(),
                );
                None
            }
            (Some(k), None) => Some((k.span(), k.get_ref().as_bytes().to_vec())),
            (None, Some(f)) => match std::fs::read(f.get_ref()) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    Some((f.span(), bytes))
                }
                Err(e) => {
                    self.report(f.span(), format!("sync.key_file: {}: {e}", f.get_ref()));
                    None
                }
            },
            (None, None) => None,
        };
        if let Some((span, k)) = key {
            if k.len() < MIN_SYNC_KEY {
                self.report(
                    span,
                    format!(
                        "sync: the key has {} bytes, expected at least {MIN_SYNC_KEY}",
                        k.len()
                    ),
                );
            } else {
                s.key = Some(k);
            }
        }
        (interface.is_some() && instance.is_some()).then_some(s)
    }
}

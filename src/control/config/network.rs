//! `[[snat]]` and `[[tunnel_route]]`: the director's network settings, checked with their
//! places.

use super::raw::*;
use super::validate::{problem, Validator};
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;
use toml::Spanned;

use crate::director::route::{self, TunnelRoute};
use crate::director::snat::SnatRule;
use crate::encap::{Tunnel, TunnelType, DEFAULT_GUE_PORT};

impl Validator<'_> {
    /// The `[[snat]]` entries: a source prefix each (IPv4 or IPv6), not overlapping another,
    /// and at least one unicast address of the source's family to leave behind, none twice.
    pub(super) fn snat(&mut self, raw: &[Spanned<RawSnat>]) -> Vec<SnatRule> {
        let mut out: Vec<(SnatRule, usize)> = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let what = format!("snat[{i}]");
            let e = entry.get_ref();
            let source = match &e.source {
                None => {
                    self.report(
                        entry.span(),
                        format!(
                            "{what}: missing key `source` (a prefix like \"10.0.0.0/24\" or \"2001:db8:10::/64\")"
                        ),
                    );
                    None
                }
                Some(v) => self.prefix(v, &format!("{what}.source")),
            };
            let mut to: Vec<IpAddr> = Vec::new();
            match &e.to {
                None => self.report(
                    entry.span(),
                    format!("{what}: missing key `to` (a list of public addresses)"),
                ),
                Some(list) if list.get_ref().is_empty() => self.report(
                    list.span(),
                    format!("{what}.to: expected at least one address, found an empty list"),
                ),
                Some(list) => {
                    for (j, a) in list.get_ref().iter().enumerate() {
                        let Some(addr) = self.ip_unicast(a, &format!("{what}.to[{j}]")) else {
                            continue;
                        };
                        if let Some(s) = source.filter(|s| s.addr().is_ipv4() != addr.is_ipv4()) {
                            let (fam, sfam) = if addr.is_ipv4() {
                                ("IPv4", "IPv6")
                            } else {
                                ("IPv6", "IPv4")
                            };
                            self.report(
                                a.span(),
                                format!(
                                    "{what}.to[{j}]: {addr} is an {fam} address but the source {s} is {sfam}; an entry translates one family"
                                ),
                            );
                            continue;
                        }
                        if to.contains(&addr) {
                            self.report(
                                a.span(),
                                format!("{what}.to[{j}]: duplicate address {addr}"),
                            );
                            continue;
                        }
                        to.push(addr);
                    }
                }
            }
            let Some(source) = source else { continue };
            let at = e.source.as_ref().map_or(entry.span(), Spanned::span);
            let line = problem(self.text, at.start, String::new()).line;
            let clash = out
                .iter()
                .find(|(r, _)| r.source.contains(&source) || source.contains(&r.source));
            if let Some((r, first)) = clash {
                let msg = format!(
                    "{what}.source: {source} overlaps {} (line {first}); a host must have one S-NAT rule",
                    r.source
                );
                self.report(at, msg);
                continue;
            }
            if !to.is_empty() {
                out.push((SnatRule { source, to }, line));
            }
        }
        out.into_iter().map(|(r, _)| r).collect()
    }

    /// An IPv4 prefix `a.b.c.d/len` or an IPv6 prefix `x:y::/len`, without host bits.
    pub(super) fn prefix(&mut self, value: &Spanned<String>, what: &str) -> Option<IpNet> {
        let text = value.get_ref();
        let Ok(net) = text.parse::<IpNet>() else {
            self.report(
                value.span(),
                format!(
                    "{what}: expected an IPv4 prefix like \"10.0.0.0/24\" or an IPv6 prefix like \"2001:db8:10::/64\", found {text:?}"
                ),
            );
            return None;
        };
        if net.trunc() != net {
            self.report(
                value.span(),
                format!(
                    "{what}: {net} has host bits set; the prefix is {}",
                    net.trunc()
                ),
            );
            return None;
        }
        Some(net)
    }

    /// Every `[[tunnel_route]]`; overlapping prefixes are refused.
    pub(super) fn tunnel_routes(&mut self, raw: &[Spanned<RawTunnelRoute>]) -> Vec<TunnelRoute> {
        let mut out: Vec<TunnelRoute> = Vec::new();
        let mut spans: Vec<Range<usize>> = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            let Some(route) = self.tunnel_route(r, i) else {
                continue;
            };
            let at = r.get_ref().prefix.as_ref().map_or(r.span(), Spanned::span);
            if let Some(j) = out
                .iter()
                .position(|o| o.prefix.contains(&route.prefix) || route.prefix.contains(&o.prefix))
            {
                let line = problem(self.text, spans[j].start, String::new()).line;
                self.report(
                    at,
                    format!(
                        "tunnel_route[{i}].prefix: {} overlaps {} (line {line}); tunnel-route prefixes must not overlap",
                        route.prefix, out[j].prefix
                    ),
                );
                continue;
            }
            if let Some(o) = out
                .iter()
                .find(|o| o.via == route.via && o.tunnel != route.tunnel)
            {
                self.report(
                    at,
                    format!(
                        "tunnel_route[{i}]: via {} is already reached with {} (prefix {}); every route to one gateway must use the same encap, gre_key and gue_port",
                        route.via, o.tunnel.kind(), o.prefix
                    ),
                );
                continue;
            }
            spans.push(at);
            out.push(route);
        }
        debug_assert!(route::find_overlap(&out).is_none());
        out
    }

    pub(super) fn tunnel_route(
        &mut self,
        r: &Spanned<RawTunnelRoute>,
        i: usize,
    ) -> Option<TunnelRoute> {
        let at = r.span();
        let t = r.get_ref();
        let what = format!("tunnel_route[{i}]");
        let prefix = match &t.prefix {
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `prefix` (a CIDR like \"172.16.8.0/22\")"),
                );
                None
            }
            Some(p) => match p.get_ref().parse::<IpNet>() {
                Ok(net) if net.trunc() == net && net.prefix_len() > 0 => Some(net),
                Ok(net) if net.prefix_len() == 0 => {
                    self.report(
                        p.span(),
                        format!("{what}.prefix: a default route (/0) would swallow everything, tunnel address included"),
                    );
                    None
                }
                Ok(net) => {
                    self.report(
                        p.span(),
                        format!(
                            "{what}.prefix: {net} has host bits set; did you mean {}?",
                            net.trunc()
                        ),
                    );
                    None
                }
                Err(_) => {
                    self.report(
                        p.span(),
                        format!(
                            "{what}.prefix: expected a CIDR like \"172.16.8.0/22\" or \"2001:db8:8::/48\", found {:?}",
                            p.get_ref()
                        ),
                    );
                    None
                }
            },
        };
        let via = match &t.via {
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `via` (the gateway's IPv4 tunnel address)"),
                );
                None
            }
            Some(v) => self.unicast(v, &format!("{what}.via")),
        };
        let encap = match &t.encap {
            None => {
                self.report(
                    at.clone(),
                    format!("{what}: missing key `encap` (\"ipip\", \"gre\" or \"gue\")"),
                );
                None
            }
            Some(e) => match e.get_ref().parse::<TunnelType>() {
                Ok(tt) => Some(tt),
                Err(msg) => {
                    self.report(e.span(), format!("{what}.encap: {msg}"));
                    None
                }
            },
        };
        let gre_key = t.gre_key.as_ref().map(|_| {
            self.int(
                &t.gre_key,
                &format!("{what}.gre_key"),
                0,
                u32::MAX.into(),
                0,
            ) as u32
        });
        if let (Some(k), Some(e)) = (&t.gre_key, encap) {
            if e != TunnelType::Gre {
                self.report(
                    k.span(),
                    format!("{what}.gre_key: only with encap = \"gre\""),
                );
            }
        }
        let gue_port = self.int(
            &t.gue_port,
            &format!("{what}.gue_port"),
            1,
            65_535,
            DEFAULT_GUE_PORT.into(),
        ) as u16;
        if let (Some(p), Some(e)) = (&t.gue_port, encap) {
            if e != TunnelType::Gue {
                self.report(
                    p.span(),
                    format!("{what}.gue_port: only with encap = \"gue\""),
                );
            }
        }
        if let (Some(IpNet::V6(net)), Some(TunnelType::Ipip)) = (prefix, encap) {
            // The return traffic would be protocol 41, which the director's ipip receiver
            // (protocol 4) does not read.
            let span = t.encap.as_ref().map_or(at.clone(), Spanned::span);
            self.report(
                span,
                format!("{what}.encap: an IPv6 prefix ({net}) needs \"gre\" or \"gue\"; \"ipip\" carries IPv4 prefixes only"),
            );
            return None;
        }
        if let (Some(prefix), Some(via)) = (prefix, via) {
            if prefix.contains(&IpAddr::V4(via)) {
                let span = t.via.as_ref().map_or(at.clone(), Spanned::span);
                self.report(
                    span,
                    format!("{what}.via: {via} is inside the prefix {prefix} it would carry"),
                );
                return None;
            }
        }
        let encap = encap?;
        Some(TunnelRoute {
            tunnel: Tunnel::new(encap, gue_port, false, gre_key),
            ..TunnelRoute::new(prefix?, via?, encap)
        })
    }
}

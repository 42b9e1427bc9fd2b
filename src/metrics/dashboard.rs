//! Tests of `configs/grafana-dashboard.json`, the Grafana dashboard over this module's metrics:
//! it is a well-formed dashboard, and every metric its queries name is one the director or the
//! agent exposes, so renaming a metric without the dashboard fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use super::{agent_registry, director_registry, encode, CheckDurations, DirectorSample, Format};
use crate::realserver::AgentStats;

const DASHBOARD: &str = include_str!("../../configs/grafana-dashboard.json");

/// Metrics the dashboard must chart (a histogram by its base name).
const KEY_METRICS: [&str; 5] = [
    "node_ipvs_incoming_packets_total",
    "tunlb_backend_up",
    "tunlb_drops_total",
    "tunlb_encap_errors_total",
    "tunlb_check_duration_seconds",
];

/// Histogram series suffixes: a query names `X_bucket`, `X_sum` or `X_count` of histogram `X`.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("configs/grafana-dashboard.json is JSON")
}

/// Every panel, those nested in collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels is an array") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL expression: the panels' targets and the template variables' queries.
fn exprs(dashboard: &Value) -> Vec<String> {
    let mut out: Vec<String> = panels(dashboard)
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .map(|t| t["expr"].as_str().unwrap_or_default().to_string())
        .collect();
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let query = v["query"]["query"].as_str().or(v["query"].as_str());
        out.push(query.expect("a query variable has a query").to_string());
    }
    out
}

/// The metric names an expression uses: the identifiers starting `node_ipvs_` or `tunlb_`.
fn metric_names(expr: &str) -> Vec<&str> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| is_ident(c)) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let ident = &tail[..end];
        if ident.starts_with("node_ipvs_") || ident.starts_with("tunlb_") {
            out.push(ident);
        }
        rest = &tail[end..];
    }
    out
}

/// The metrics a director and an agent expose, by the name and type of their `# TYPE` lines.
fn exposed() -> BTreeMap<String, String> {
    let checks = CheckDurations::default();
    let sample = super::tests::sample();
    let svc = sample.backends[0].service;
    checks.record(
        svc,
        Ipv4Addr::new(10, 0, 1, 1).into(),
        80,
        "tcp",
        Duration::from_millis(3),
    );
    let director = DirectorSample {
        checks: checks.snapshot(),
        ..sample
    };
    let pages = [
        encode(&director_registry(&director), Format::Prometheus),
        encode(&agent_registry(&AgentStats::default()), Format::Prometheus),
    ];
    pages
        .iter()
        .flat_map(|page| page.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// The exposed metric a name in a query stands for: itself, or the histogram of its
/// `_bucket`/`_sum`/`_count` series. None: the exporters have no such metric.
fn resolve<'e>(name: &str, exposed: &'e BTreeMap<String, String>) -> Option<&'e str> {
    if let Some((metric, _)) = exposed.get_key_value(name) {
        return Some(metric);
    }
    HISTOGRAM_SUFFIXES
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .filter_map(|base| exposed.get_key_value(base))
        .find(|(_, kind)| *kind == "histogram")
        .map(|(metric, _)| metric.as_str())
}

/// Fails unless the brackets of `expr` pair up (a cheap guard against a broken edit).
fn assert_balanced(expr: &str) {
    let mut open = Vec::new();
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '(' | '{' | '[' => open.push(c),
            ')' | '}' | ']' => {
                let want = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                assert_eq!(open.pop(), Some(want), "unbalanced: {expr}");
            }
            _ => {}
        }
    }
    assert!(open.is_empty() && !in_string, "unbalanced: {expr}");
}

/// The dashboard variables `$name` in `expr`, Grafana's own `$__…` left out.
fn used_variables(expr: &str) -> Vec<&str> {
    expr.split('$')
        .skip(1)
        .map(|s| {
            let end = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            &s[..end]
        })
        .filter(|name| !name.starts_with("__"))
        .collect()
}

#[test]
fn dashboard_is_a_grafana_dashboard() {
    let d = dashboard();
    for key in ["title", "uid"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "no {key}");
    }
    assert!(d["schemaVersion"].as_u64().is_some(), "no schemaVersion");
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input"
    );
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for v in ["datasource", "instance", "vip", "port"] {
        assert!(vars.contains(v), "no variable {v}");
    }

    let panels = panels(&d);
    assert!(panels.len() > 1, "no panels");
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"));
        assert!(ids.insert(id), "{title}: id {id} used twice");
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_u64(), pos["w"].as_u64());
        assert!(
            x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24),
            "{title}: gridPos {pos}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: a target without expr");
        }
    }
    for expr in exprs(&d) {
        assert_balanced(&expr);
        for var in used_variables(&expr) {
            assert!(vars.contains(var), "unknown variable ${var} in {expr}");
        }
    }
}

#[test]
fn dashboard_queries_only_exposed_metrics() {
    let exposed = exposed();
    // The exporters' own names, as a sanity check of the `# TYPE` parse.
    assert_eq!(
        exposed
            .get("tunlb_check_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert!(
        exposed.contains_key("tunlb_agent_drops_total"),
        "{exposed:?}"
    );
    let d = dashboard();
    let mut used = BTreeSet::new();
    for expr in exprs(&d) {
        for name in metric_names(&expr) {
            let metric = resolve(name, &exposed)
                .unwrap_or_else(|| panic!("{name} is not exposed (in {expr})"));
            used.insert(metric);
        }
    }
    for key in KEY_METRICS {
        assert!(used.contains(key), "no panel charts {key}");
    }
}

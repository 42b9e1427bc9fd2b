//! Metrics of the data path, for Prometheus: the `/metrics` endpoint of `tunlb director
//! --metrics-listen ADDR:PORT`.
//!
//! Nothing is counted here: the workers already keep plain per-worker counters
//! ([`crate::director::Counters`], per real server [`crate::director::DestCounters`]). A scrape
//! asks the control plane for a [`DirectorSample`] (it takes each worker's lock once, briefly,
//! between two batches), builds a fresh `prometheus-client` registry from it and encodes it.
//! Counters since the director started: `adm -Z` zeroes what `adm -L --stats` shows, not these
//! (Prometheus counters only go up).
//!
//! The format is negotiated ([`Format::from_accept`]): OpenMetrics text (ending in `# EOF`)
//! when the `Accept` header asks for `application/openmetrics-text`, else the Prometheus text
//! format 0.0.4.
//!
//! # Metrics
//!
//! The `node_ipvs_*` names and label sets are those of node_exporter's IPVS collector, so its
//! dashboards and alerts work unchanged. Backend labels: `local_address`, `local_port` (the
//! service's VIP and port), `remote_address`, `remote_port` (the real server), `proto` (`TCP`
//! or `UDP`, as `/proc/net/ip_vs` spells it) and `local_mark` (always empty: no fwmark
//! services), written "backend" below.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `node_ipvs_connections_total` | counter | | connections scheduled, whole director |
//! | `node_ipvs_incoming_packets_total` | counter | | packets forwarded to real servers |
//! | `node_ipvs_outgoing_packets_total` | counter | | packets from real servers to clients (NAT) |
//! | `node_ipvs_incoming_bytes_total` | counter | | bytes forwarded to real servers |
//! | `node_ipvs_outgoing_bytes_total` | counter | | bytes from real servers to clients (NAT) |
//! | `node_ipvs_backend_connections_active` | gauge | "backend" | connections in an active state |
//! | `node_ipvs_backend_connections_inactive` | gauge | "backend" | other connections |
//! | `node_ipvs_backend_weight` | gauge | "backend" | the scheduler's weight |
//! | `tunlb_backend_connections_total` | counter | "backend" | connections scheduled to it |
//! | `tunlb_backend_incoming_packets_total` | counter | "backend" | packets forwarded to it |
//! | `tunlb_backend_incoming_bytes_total` | counter | "backend" | bytes forwarded to it |
//! | `tunlb_backend_outgoing_packets_total` | counter | "backend" | its packets to clients (NAT) |
//! | `tunlb_backend_outgoing_bytes_total` | counter | "backend" | its bytes to clients (NAT) |
//! | `tunlb_backend_up` | gauge | "backend" | 1, or 0 while the health checkers hold it down |
//! | `tunlb_check_duration_seconds` | histogram | "backend", `check` | wall time of each health probe (`http_get`, `ssl_get`, `tcp`, `misc`, `udp`, `ping`), buckets 1 ms … 10 s |
//! | `tunlb_drops_total` | counter | `reason` | dropped packets, every [`DropReason`] label |
//! | `tunlb_received_packets_total` | counter | | packets read from the TUN |
//! | `tunlb_tun_read_batch_size` | histogram | | packets per non-empty TUN read, buckets 1, 2, 4 … 256 |
//! | `tunlb_tun_write_batch_size` | histogram | | packets written back into the TUN (NAT rewrites, ICMP errors) per batch that wrote any; each is its own `write` (a TUN has no batched write), buckets as above |
//! | `tunlb_send_batch_size` | histogram | `socket` | datagrams or frames per batched send: `raw` (IPIP/GRE/GUE datagrams on the raw socket: `--tunnel-tx raw` or a real server without an Ethernet route; one batch of one or more `sendmmsg` per TUN batch), `packet` (DR frames and TUN-mode frames, likewise per `AF_PACKET` socket), `udp_gso` (GUE records per `UDP_SEGMENT` `sendmsg` or per `GSO_UDP_L4` train frame); buckets as above |
//! | `tunlb_send_errors_total` | counter | | encapsulated packets or DR frames the kernel refused to send or the driver could not queue (the `send_failed` drops; split by type in `tunlb_encap_errors_total`) |
//! | `tunlb_encap_errors_total` | counter | `type`, `reason` | packets for real servers that did not leave, by `type` (`ipip`, `gre`, `gue`, `dr`) and `reason`: `send_failed`, `too_big` (DF set, ICMP fragmentation-needed sent), `too_many_fragments` (DF clear but it cannot be split); each also counts in `tunlb_drops_total` under that reason, 0 included |
//! | `tunlb_conn_table_entries` | gauge | | flows in the workers' connection tables |
//! | `tunlb_conn_table_capacity` | gauge | | most flows the tables will hold (`--max-conns` × workers) |
//! | `tunlb_conn_table_evictions_total` | counter | | flows removed from the connection tables (expired or swept) |
//! | `tunlb_conn_evictions_total` | counter | `table`, `reason` | entries evicted to make room: `flows` `expired` / `unconfirmed` (above the high-water mark, 7/8 of `--max-conns`), `snat` `expired` / `unconfirmed` (S-NAT mappings, IPv4 and IPv6 together, above 7/8 of their table), `templates` `idle`, `fragments` `oldest`; 0 included |
//! | `tunlb_icmp_rate_limited_total` | counter | | ICMP errors not sent, over `--icmp-rate` / `--icmp-burst` (the packets still count as `too_big` drops) |
//! | `tunlb_conn_templates_refused_total` | counter | | new persistence templates not made, the table full of templates in use |
//! | `tunlb_conn_templates` | gauge | | persistence templates held |
//! | `tunlb_conn_templates_capacity` | gauge | | `--max-templates` |
//! | `tunlb_conn_fragments` | gauge | | fragmented datagrams tracked |
//! | `tunlb_conn_fragments_capacity` | gauge | | `--max-fragments` |
//! | `tunlb_gso_packets_total` | counter | `path` | TUN offload: GSO super-packets decided `whole` or `split` into segments |
//! | `tunlb_nat_flow_entries` | gauge | | flows in the shared NAT flow table |
//! | `tunlb_sync_messages_total` | counter | `direction` | connection sync (when configured): messages `sent`, `received` (accepted) and `applied` (their records installed) |
//! | `tunlb_sync_records_total` | counter | `direction` | the records in them: `sent`, `received`, `applied` (installed, once per record however many workers) |
//! | `tunlb_sync_refused_total` | counter | `reason` | received messages refused: every [`crate::sync::Refused`] label (`truncated`, `magic`, `version`, `type`, `length`, `bad_record`, `too_long`, `syncid`, `auth`, `replay`, `own`), 0 included |
//! | `tunlb_sync_install_skipped_total` | counter | `reason` | received records not installed: `no_service`, `no_dest`, `full`, `nat` (NAT flows are not synced), `invalid` |
//! | `tunlb_sync_dropped_total` | counter | | changes the sync master dropped (a worker's queue or the send queue full) |
//! | `tunlb_sync_adopted_total` | counter | | synced flows a worker took over at their first packet (after a failover) |
//! | `tunlb_sloppy_created_total` | counter | | flows created from a mid-flow packet (`sloppy_tcp`) |
//! | `tunlb_second_chance_marked_total` | counter | | of those, flows given a second choice (the previous `mh` table's server, docs/scale-out.md) |
//! | `tunlb_sync_send_errors_total` | counter | | sync messages the socket refused |
//! | `tunlb_sync_master` | gauge | | 1 while this director sends its changes |
//! | `tunlb_sync_ready` | gauge | | 1 once the bulk resync is done (or its 2 s passed) |
//! | `tunlb_build_info` | gauge (info) | `version` | 1 |
//!
//! `tunlb realserver --metrics-listen ADDR:PORT` (TUN mode) serves the agent's counters
//! ([`crate::realserver::AgentStats`], copied by its loop once per received batch):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tunlb_agent_received_packets_total` | counter | | tunnel packets received |
//! | `tunlb_agent_delivered_packets_total` | counter | | inner packets written into the TUN |
//! | `tunlb_agent_gro_super_packets_total` | counter | | TCP super-packets written whole into the TUN, merged from consecutive segments of one flow (a GUE `UDP_GRO` train, or separate IPIP/GRE/GUE packets of one receive batch; their segments count in delivered) |
//! | `tunlb_agent_kernel_merged_packets_total` | counter | | IPIP/GRE: packets the kernel's GRO had merged (their inner checksum unfinished); TCP is repaired before delivery, UDP dropped |
//! | `tunlb_agent_drops_total` | counter | `reason` | dropped: `not_allowed` (allow-list), `not_vip`, `inner_source_not_allowed`, `recv_truncated`, `tun_write_error`, `merged_unsupported` (UDP the kernel's GRO merged in an IPIP/GRE packet) and every decapsulation error ([`crate::encap::StripError`] labels), 0 included |
//! | `tunlb_build_info` | gauge (info) | `version` | 1 |
//!
//! The incoming counters of the whole director include real servers deleted since; the
//! `tunlb_backend_*` ones cover the servers in the table. Down servers are out of the
//! table (as in IPVS), so only `tunlb_backend_up` lists them.

#[cfg(test)]
mod dashboard;
pub mod http;

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::director::conn::Eviction;
use crate::director::stats::{
    bucket_index, BatchHistogram, EncapError, EncapKind, SendSocket, Totals, BATCH_BUCKETS,
};
use crate::director::{Counters, DropReason};
use crate::encap::StripError;
use crate::model::{Protocol, ServiceKey};
use crate::realserver::AgentStats;
use crate::sync::SyncCounts;

/// The exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    /// The format an `Accept` header value asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (with a non-zero `q`), else Prometheus text.
    pub fn from_accept(accept: &str) -> Format {
        let wants_om = accept.split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("");
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        });
        if wants_om {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// Encodes `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; a failing metric would only truncate the page.
    let _ = match format {
        Format::OpenMetrics => text::encode(&mut out, registry),
        Format::Prometheus => prometheus_text::encode(&mut out, registry),
    };
    out
}

/// One real server of one service, as a scrape sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// The service.
    pub service: ServiceKey,
    /// The real server's address (either family: labels print it plainly).
    pub addr: IpAddr,
    /// The real server's port (the service's when it keeps the port).
    pub port: u16,
    /// Its weight in the running table.
    pub weight: u32,
    /// Connections in an active state.
    pub active: u32,
    /// Other connections.
    pub inactive: u32,
    /// Its counters since the director started.
    pub totals: Totals,
    /// False while the health checkers hold it down (out of the table, or inhibited).
    pub up: bool,
    /// In the running table (false: only `tunlb_backend_up` lists it).
    pub in_table: bool,
}

/// Everything a director scrape reports, read from the control plane
/// ([`crate::daemon::ControlPlane::metrics_sample`]).
#[derive(Clone, Debug, Default)]
pub struct DirectorSample {
    /// The real servers, configured ones first in table order.
    pub backends: Vec<Backend>,
    /// Per-server counters of the whole director (deleted servers included).
    pub instance: Totals,
    /// The workers' counters added up.
    pub counters: Counters,
    /// Flows in the workers' connection tables.
    pub conns: u64,
    /// Most flows the workers' tables will hold.
    pub conn_capacity: u64,
    /// Flows in the NAT flow table.
    pub nat_flows: u64,
    /// Bounded shared state: persistence templates and fragment tracker.
    pub bounded: BoundedSample,
    /// The health probes' durations ([`CheckDurations::snapshot`]).
    pub checks: Vec<CheckSeries>,
    /// The VRRP instances (none when VRRP is not configured).
    pub vrrp: Vec<VrrpSample>,
    /// Connection sync's counters, when it runs.
    pub sync: Option<SyncCounts>,
}

/// The shared tables' fill and evictions (`tunlb_conn_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundedSample {
    /// Persistence templates held.
    pub templates: u64,
    /// Most templates held (`--max-templates`).
    pub template_capacity: u64,
    /// Idle templates evicted for new ones.
    pub templates_evicted: u64,
    /// New templates not made: the table was full of templates in use.
    pub templates_refused: u64,
    /// Fragmented datagrams tracked.
    pub fragments: u64,
    /// Most datagrams tracked (`--max-fragments`).
    pub fragment_capacity: u64,
    /// Datagrams evicted (the oldest) for new ones.
    pub fragments_evicted: u64,
}

/// One VRRP instance in a scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VrrpSample {
    /// The instance's name.
    pub instance: String,
    /// `tunlb_vrrp_state`: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.
    pub state: u8,
    /// Transitions by the state entered (`INIT`, `BACKUP`, `MASTER`, `FAULT`).
    pub transitions: Vec<(&'static str, u64)>,
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Adverts received and accepted.
    pub adverts_received: u64,
    /// Adverts refused, by reason.
    pub refused: Vec<(&'static str, u64)>,
}

/// The upper bounds (seconds) of the `tunlb_check_duration_seconds` buckets; a last `+Inf`
/// bucket follows.
pub const CHECK_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations over [`CHECK_BUCKETS`]: plain counts, per bucket (not cumulative).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DurationHistogram {
    /// Observations per bucket, the last one `+Inf`.
    pub buckets: [u64; CHECK_BUCKETS.len() + 1],
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// How many observations.
    pub count: u64,
}

impl DurationHistogram {
    /// Counts one observation of `d`.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(b) = self.buckets.get_mut(bucket_index(&CHECK_BUCKETS, secs)) {
            *b += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

/// The probe durations of one check of one real server.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckSeries {
    /// The service.
    pub service: ServiceKey,
    /// The real server's address.
    pub addr: IpAddr,
    /// The real server's port.
    pub port: u16,
    /// The check's type: `http_get`, `ssl_get`, `tcp`, `misc`, `udp` or `ping`.
    pub check: &'static str,
    /// Its durations.
    pub hist: DurationHistogram,
}

/// The health probes' durations, shared by the probe threads (which record one observation
/// per probe) and the scrapes (which copy them): a mutex over a short list, taken once per
/// probe, never on the data path.
#[derive(Debug, Default)]
pub struct CheckDurations {
    series: Mutex<Vec<CheckSeries>>,
}

impl CheckDurations {
    /// Records that a `check` probe of real server `addr:port` of `service` took `took`.
    pub fn record(
        &self,
        service: ServiceKey,
        addr: IpAddr,
        port: u16,
        check: &'static str,
        took: Duration,
    ) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let found = series
            .iter_mut()
            .find(|s| (s.service, s.addr, s.port, s.check) == (service, addr, port, check));
        match found {
            Some(s) => s.hist.observe(took),
            None => {
                let mut hist = DurationHistogram::default();
                hist.observe(took);
                series.push(CheckSeries {
                    service,
                    addr,
                    port,
                    check,
                    hist,
                });
            }
        }
    }

    /// A copy of every series recorded so far.
    pub fn snapshot(&self) -> Vec<CheckSeries> {
        self.series.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One series of a [`FixedHistograms`]: labels (none: an unlabelled histogram), sum, count
/// and per-bucket counts (not cumulative, one more than the bounds: `+Inf`).
type FixedSeries = (Option<Labels>, f64, u64, Vec<u64>);

/// Histograms built from counts kept elsewhere (prometheus-client's own histogram only
/// observes): the bucket bounds and every series.
#[derive(Debug)]
struct FixedHistograms(Vec<f64>, Vec<FixedSeries>);

impl TypedMetric for FixedHistograms {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FixedHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, sum, count, counts) in &self.1 {
            let buckets: Vec<(f64, u64)> = self
                .0
                .iter()
                .copied()
                .chain(std::iter::once(f64::INFINITY))
                .zip(counts.iter().copied())
                .collect();
            match labels {
                Some(l) => encoder
                    .encode_family(l)?
                    .encode_histogram::<NoLabelSet>(*sum, *count, &buckets, None)?,
                None => encoder.encode_histogram::<NoLabelSet>(*sum, *count, &buckets, None)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type Labels = Vec<(&'static str, String)>;

/// Histograms with the [`BATCH_BUCKETS`] bounds, one series per labelled [`BatchHistogram`].
fn batch_histograms<'a>(
    series: impl IntoIterator<Item = (Option<Labels>, &'a BatchHistogram)>,
) -> FixedHistograms {
    FixedHistograms(
        BATCH_BUCKETS.iter().map(|b| *b as f64).collect(),
        series
            .into_iter()
            .map(|(labels, h)| (labels, h.sum as f64, h.count(), h.buckets.to_vec()))
            .collect(),
    )
}

/// A metric's name, help and how to read its value.
type Described<F> = (&'static str, &'static str, F);
/// Reads a gauge's value off a real server.
type BackendValue = fn(&Backend) -> u64;
/// Reads a counter's value off a real server's totals.
type TotalsValue = fn(&Totals) -> u64;

fn proto_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// node_exporter's backend labels for `b`.
fn backend_labels(b: &Backend) -> Labels {
    server_labels(b.service, b.addr, b.port)
}

/// node_exporter's backend labels for real server `addr:port` of `service`.
fn server_labels(service: ServiceKey, addr: IpAddr, port: u16) -> Labels {
    vec![
        ("local_address", service.vip.to_string()),
        ("local_port", service.port.to_string()),
        ("remote_address", addr.to_string()),
        ("remote_port", port.to_string()),
        ("proto", proto_label(service.proto).to_string()),
        ("local_mark", String::new()),
    ]
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// The registry of one director scrape.
pub fn director_registry(s: &DirectorSample) -> Registry {
    let mut r = Registry::default();
    // node_exporter's IPVS collector: totals of the whole instance, no labels.
    counter(
        &mut r,
        "node_ipvs_connections",
        "The total number of connections made.",
        s.instance.conns,
    );
    counter(
        &mut r,
        "node_ipvs_incoming_packets",
        "The total number of incoming packets.",
        s.instance.in_pkts,
    );
    counter(
        &mut r,
        "node_ipvs_outgoing_packets",
        "The total number of outgoing packets.",
        s.instance.out_pkts,
    );
    counter(
        &mut r,
        "node_ipvs_incoming_bytes",
        "The total amount of incoming data.",
        s.instance.in_bytes,
    );
    counter(
        &mut r,
        "node_ipvs_outgoing_bytes",
        "The total amount of outgoing data.",
        s.instance.out_bytes,
    );
    let in_table: Vec<Backend> = s.backends.iter().filter(|b| b.in_table).cloned().collect();
    let gauges: [Described<BackendValue>; 3] = [
        (
            "node_ipvs_backend_connections_active",
            "The current active connections by local and remote address.",
            |b| b.active.into(),
        ),
        (
            "node_ipvs_backend_connections_inactive",
            "The current inactive connections by local and remote address.",
            |b| b.inactive.into(),
        ),
        (
            "node_ipvs_backend_weight",
            "The current backend weight by local and remote address.",
            |b| b.weight.into(),
        ),
    ];
    for (name, help, value) in gauges {
        let family: Family<Labels, Gauge> = Family::default();
        for b in &in_table {
            family
                .get_or_create(&backend_labels(b))
                .set(i64::try_from(value(b)).unwrap_or(i64::MAX));
        }
        r.register(name, help, family);
    }
    let counters: [Described<TotalsValue>; 5] = [
        (
            "tunlb_backend_connections",
            "Connections scheduled to the real server.",
            |t| t.conns,
        ),
        (
            "tunlb_backend_incoming_packets",
            "Packets forwarded to the real server.",
            |t| t.in_pkts,
        ),
        (
            "tunlb_backend_incoming_bytes",
            "Bytes forwarded to the real server.",
            |t| t.in_bytes,
        ),
        (
            "tunlb_backend_outgoing_packets",
            "Packets from the real server forwarded to clients (NAT).",
            |t| t.out_pkts,
        ),
        (
            "tunlb_backend_outgoing_bytes",
            "Bytes from the real server forwarded to clients (NAT).",
            |t| t.out_bytes,
        ),
    ];
    for (name, help, value) in counters {
        let family: Family<Labels, Counter> = Family::default();
        for b in &in_table {
            family
                .get_or_create(&backend_labels(b))
                .inc_by(value(&b.totals));
        }
        r.register(name, help, family);
    }
    let up: Family<Labels, Gauge> = Family::default();
    for b in &s.backends {
        up.get_or_create(&backend_labels(b)).set(i64::from(b.up));
    }
    r.register(
        "tunlb_backend_up",
        "1 if the real server is up, 0 while the health checkers hold it down.",
        up,
    );
    let checks = s
        .checks
        .iter()
        .map(|c| {
            let mut labels = server_labels(c.service, c.addr, c.port);
            labels.push(("check", c.check.to_string()));
            (
                Some(labels),
                c.hist.sum,
                c.hist.count,
                c.hist.buckets.to_vec(),
            )
        })
        .collect();
    r.register(
        "tunlb_check_duration_seconds",
        "Wall time of the health probes, by real server and check type.",
        FixedHistograms(CHECK_BUCKETS.to_vec(), checks),
    );

    let drops: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    for reason in DropReason::ALL {
        drops
            .get_or_create(&vec![("reason", reason.as_str())])
            .inc_by(s.counters.dropped(*reason));
    }
    r.register(
        "tunlb_drops",
        "Packets the data path dropped, by reason.",
        drops,
    );
    counter(
        &mut r,
        "tunlb_send_errors",
        "Encapsulated packets or DR frames the kernel refused to send (also counted in tunlb_drops_total{reason=\"send_failed\"}).",
        s.counters.dropped(DropReason::SendFailed),
    );
    counter(
        &mut r,
        "tunlb_received_packets",
        "Packets read from the TUN device.",
        s.counters.rx_packets,
    );
    let encap: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    for kind in EncapKind::ALL {
        for why in EncapError::ALL {
            encap
                .get_or_create(&vec![("type", kind.as_str()), ("reason", why.as_str())])
                .inc_by(s.counters.encap_errors.get(kind, why));
        }
    }
    r.register(
        "tunlb_encap_errors",
        "Packets for real servers that did not leave, by forwarding type (ipip, gre, gue, dr) and reason (send_failed, too_big, too_many_fragments: the tunlb_drops_total reason they also count under).",
        encap,
    );
    r.register(
        "tunlb_tun_read_batch_size",
        "Packets returned by each non-empty TUN read.",
        batch_histograms([(None, &s.counters.read_batches)]),
    );
    r.register(
        "tunlb_tun_write_batch_size",
        "Packets written back into the TUN (NAT rewrites, ICMP errors) per processed batch that wrote any; a TUN has no batched write, so each is its own write(2).",
        batch_histograms([(None, &s.counters.tun_writes)]),
    );
    let sends = SendSocket::ALL.into_iter().map(|socket| {
        let labels = vec![("socket", socket.as_str().to_string())];
        (Some(labels), &s.counters.send_batches[socket as usize])
    });
    r.register(
        "tunlb_send_batch_size",
        "Datagrams or frames per batched send (one batch: one or more sendmmsg) by socket: raw (IPIP/GRE/GUE on the raw socket), packet (DR and TUN-mode Ethernet frames), udp_gso (GUE records per UDP_SEGMENT sendmsg or GSO_UDP_L4 train frame).",
        batch_histograms(sends),
    );
    gauge(
        &mut r,
        "tunlb_conn_table_entries",
        "Flows in the workers' connection tables.",
        s.conns,
    );
    gauge(
        &mut r,
        "tunlb_conn_table_capacity",
        "Most flows the workers' connection tables will hold.",
        s.conn_capacity,
    );
    counter(
        &mut r,
        "tunlb_conn_table_evictions",
        "Flows removed from the workers' connection tables (expired or swept).",
        s.counters.conns_expired,
    );
    bounded_metrics(&mut r, s);
    let gso: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    gso.get_or_create(&vec![("path", "whole")])
        .inc_by(s.counters.gso_whole);
    gso.get_or_create(&vec![("path", "split")])
        .inc_by(s.counters.gso_split);
    r.register(
        "tunlb_gso_packets",
        "TUN offload: GSO super-packets decided whole or split into segments.",
        gso,
    );
    gauge(
        &mut r,
        "tunlb_nat_flow_entries",
        "Flows in the shared NAT flow table.",
        s.nat_flows,
    );
    vrrp_metrics(&mut r, &s.vrrp);
    counter(
        &mut r,
        "tunlb_sloppy_created",
        "Flows created from a mid-flow packet (sloppy_tcp / sloppy_sctp pickup).",
        s.counters.sloppy_created,
    );
    counter(
        &mut r,
        "tunlb_second_chance_marked",
        "Flows picked up mid-way given a second choice (the previous mh table's server).",
        s.counters.second_chance_marked,
    );
    if let Some(sync) = &s.sync {
        sync_metrics(&mut r, sync, &s.counters);
    }
    build_info(&mut r);
    r
}

/// `tunlb_conn_*`: evictions of the bounded tables by reason, the shared tables' fill.
fn bounded_metrics(r: &mut Registry, s: &DirectorSample) {
    let b = &s.bounded;
    let evictions: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    for why in Eviction::ALL {
        evictions
            .get_or_create(&vec![("table", "flows"), ("reason", why.as_str())])
            .inc_by(s.counters.evicted(why));
        evictions
            .get_or_create(&vec![("table", "snat"), ("reason", why.as_str())])
            .inc_by(s.counters.snat_evicted[why as usize]);
    }
    evictions
        .get_or_create(&vec![("table", "templates"), ("reason", "idle")])
        .inc_by(b.templates_evicted);
    evictions
        .get_or_create(&vec![("table", "fragments"), ("reason", "oldest")])
        .inc_by(b.fragments_evicted);
    r.register(
        "tunlb_conn_evictions",
        "Entries evicted to make room for new ones, by table and reason: flows expired or never confirmed (no client payload) above the connection table's high-water mark (7/8 of --max-conns), S-NAT mappings expired or never confirmed (no traffic both ways) above 7/8 of the S-NAT table, idle persistence templates (--max-templates), the oldest fragmented datagrams (--max-fragments).",
        evictions,
    );
    counter(
        r,
        "tunlb_icmp_rate_limited",
        "ICMP errors (fragmentation-needed) not sent because the worker's rate limit (--icmp-rate, --icmp-burst) was reached; the packets count as too_big drops all the same.",
        s.counters.icmp_rate_limited,
    );
    counter(
        r,
        "tunlb_conn_templates_refused",
        "New persistence templates not made because the template table was full of templates in use (the flow was scheduled without persistence).",
        b.templates_refused,
    );
    gauge(
        r,
        "tunlb_conn_templates",
        "Persistence templates held.",
        b.templates,
    );
    gauge(
        r,
        "tunlb_conn_templates_capacity",
        "Most persistence templates held (--max-templates).",
        b.template_capacity,
    );
    gauge(
        r,
        "tunlb_conn_fragments",
        "Fragmented datagrams whose later fragments the director tracks.",
        b.fragments,
    );
    gauge(
        r,
        "tunlb_conn_fragments_capacity",
        "Most fragmented datagrams tracked (--max-fragments).",
        b.fragment_capacity,
    );
}

/// `tunlb_vrrp_*`: one series per VRRP instance (none without VRRP).
fn vrrp_metrics(r: &mut Registry, instances: &[VrrpSample]) {
    if instances.is_empty() {
        return;
    }
    let state: Family<Labels, Gauge> = Family::default();
    let transitions: Family<Labels, Counter> = Family::default();
    let sent: Family<Labels, Counter> = Family::default();
    let received: Family<Labels, Counter> = Family::default();
    let refused: Family<Labels, Counter> = Family::default();
    for v in instances {
        let inst = || vec![("instance", v.instance.clone())];
        state.get_or_create(&inst()).set(i64::from(v.state));
        for to in ["INIT", "BACKUP", "MASTER", "FAULT"] {
            let n = v
                .transitions
                .iter()
                .find(|(k, _)| *k == to)
                .map_or(0, |x| x.1);
            let mut l = inst();
            l.push(("to", to.to_string()));
            transitions.get_or_create(&l).inc_by(n);
        }
        sent.get_or_create(&inst()).inc_by(v.adverts_sent);
        received.get_or_create(&inst()).inc_by(v.adverts_received);
        for (reason, n) in &v.refused {
            let mut l = inst();
            l.push(("reason", reason.to_string()));
            refused.get_or_create(&l).inc_by(*n);
        }
    }
    r.register(
        "tunlb_vrrp_state",
        "State of the VRRP instance: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.",
        state,
    );
    r.register(
        "tunlb_vrrp_transitions",
        "State changes of the VRRP instance, by the state entered.",
        transitions,
    );
    r.register(
        "tunlb_vrrp_adverts_sent",
        "VRRP adverts sent (one per destination).",
        sent,
    );
    r.register(
        "tunlb_vrrp_adverts_received",
        "VRRP adverts received and accepted.",
        received,
    );
    r.register(
        "tunlb_vrrp_adverts_refused",
        "VRRP adverts refused, by reason (ttl, checksum, version, auth, interval, vip_list, ...); adverts of other virtual routers are not counted.",
        refused,
    );
}

/// The `tunlb_sync_*` families.
fn sync_metrics(r: &mut Registry, s: &SyncCounts, workers: &Counters) {
    let by = |pairs: &[(&'static str, &'static str, u64)]| {
        let f: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
        for (label, value, n) in pairs {
            f.get_or_create(&vec![(*label, *value)]).inc_by(*n);
        }
        f
    };
    r.register(
        "tunlb_sync_messages",
        "Connection-sync messages sent, received (accepted) and applied (records installed into the cores).",
        by(&[
            ("direction", "sent", s.sent),
            ("direction", "received", s.received),
            ("direction", "applied", s.applied),
        ]),
    );
    r.register(
        "tunlb_sync_records",
        "Connection records sent, received and installed (once per record, not per core).",
        by(&[
            ("direction", "sent", s.records_sent),
            ("direction", "received", s.records_received),
            ("direction", "applied", s.records_applied),
        ]),
    );
    let refused: Vec<_> = s
        .refused()
        .map(|(r, n)| ("reason", r.as_str(), n))
        .collect();
    r.register(
        "tunlb_sync_refused",
        "Received connection-sync messages refused, by reason.",
        by(&refused),
    );
    r.register(
        "tunlb_sync_install_skipped",
        "Received records not installed: no such service, no such real server, synced-flow table full, a NAT real server's, a protocol or state that does not fit.",
        by(&[
            ("reason", "no_service", s.no_service),
            ("reason", "no_dest", s.no_dest),
            ("reason", "full", s.full),
            ("reason", "nat", s.nat),
            ("reason", "invalid", s.invalid),
        ]),
    );
    counter(
        r,
        "tunlb_sync_dropped",
        "Connection changes the sync master dropped (a worker's or the sender's queue full; the refresh carries them later).",
        s.dropped + workers.sync_dropped,
    );
    counter(
        r,
        "tunlb_sync_adopted",
        "Synced flows a worker took over when their first packet reached it.",
        workers.sync_adopted,
    );
    counter(
        r,
        "tunlb_sync_send_errors",
        "Connection-sync messages the socket refused to send.",
        s.send_errors,
    );
    gauge(
        r,
        "tunlb_sync_master",
        "1 while this director sends its connection changes (the sync instance's MASTER).",
        u64::from(s.master),
    );
    gauge(
        r,
        "tunlb_sync_ready",
        "1 once the bulk resync at start is done (or its 2 s deadline passed).",
        u64::from(s.ready),
    );
}

/// The registry of one agent scrape.
pub fn agent_registry(s: &AgentStats) -> Registry {
    let mut r = Registry::default();
    counter(
        &mut r,
        "tunlb_agent_received_packets",
        "Tunnel packets received.",
        s.received,
    );
    counter(
        &mut r,
        "tunlb_agent_delivered_packets",
        "Inner packets written into the TUN device.",
        s.delivered,
    );
    counter(
        &mut r,
        "tunlb_agent_gro_super_packets",
        "TCP super-packets written whole into the TUN, merged from consecutive segments of one flow (a UDP_GRO train, or packets of one receive batch).",
        s.gro_super_packets,
    );
    counter(
        &mut r,
        "tunlb_agent_kernel_merged_packets",
        "IPIP/GRE packets the kernel's GRO had merged (their inner checksum unfinished); TCP is repaired before delivery, UDP dropped (merged_unsupported).",
        s.kernel_merged,
    );
    counter(
        &mut r,
        "tunlb_agent_chance_checked_packets",
        "Second chance: TCP non-SYN packets carrying a second choice, checked for a local socket.",
        s.chance_checked,
    );
    counter(
        &mut r,
        "tunlb_agent_chance_forwarded_packets",
        "Second chance: packets with no local socket, sent on in GUE to their second choice.",
        s.chance_forwarded,
    );
    let drops: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
    let fixed = [
        ("not_allowed", s.not_allowed),
        ("not_vip", s.not_vip),
        ("inner_source_not_allowed", s.inner_source_not_allowed),
        ("recv_truncated", s.recv_truncated),
        ("tun_write_error", s.tun_write_error),
        ("merged_unsupported", s.merged_unsupported),
        ("port_not_allowed", s.port_not_allowed),
        ("proto_not_allowed", s.proto_not_allowed),
    ];
    let strip = StripError::ALL
        .iter()
        .map(|e| (e.as_str(), s.strip.get(*e as usize).copied().unwrap_or(0)));
    let auth = crate::encap::auth::AuthError::ALL
        .iter()
        .zip(s.auth)
        .map(|(e, n)| (e.as_str(), n));
    let chance = crate::encap::chance::ChanceError::ALL
        .iter()
        .zip(s.chance)
        .map(|(e, n)| (e.as_str(), n));
    for (reason, n) in fixed.into_iter().chain(strip).chain(auth).chain(chance) {
        drops.get_or_create(&vec![("reason", reason)]).inc_by(n);
    }
    r.register(
        "tunlb_agent_drops",
        "Packets the agent dropped, by reason.",
        drops,
    );
    build_info(&mut r);
    r
}

fn build_info(r: &mut Registry) {
    r.register(
        "tunlb_build",
        "The tunlb version.",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A director with one real server up and one held down.
    pub(super) fn sample() -> DirectorSample {
        let service = ServiceKey {
            vip: Ipv4Addr::new(10, 0, 0, 100).into(),
            port: 80,
            proto: Protocol::Tcp,
        };
        let mut counters = Counters::default();
        counters.drops[DropReason::NoConnection as usize] = 3;
        let backend = Backend {
            service,
            addr: Ipv4Addr::new(10, 0, 1, 1).into(),
            port: 80,
            weight: 2,
            active: 1,
            inactive: 4,
            totals: Totals {
                conns: 5,
                in_pkts: 30,
                in_bytes: 3000,
                out_pkts: 0,
                out_bytes: 0,
            },
            up: true,
            in_table: true,
        };
        let down = Backend {
            addr: Ipv4Addr::new(10, 0, 1, 2).into(),
            up: false,
            in_table: false,
            totals: Totals::default(),
            ..backend.clone()
        };
        DirectorSample {
            instance: backend.totals,
            backends: vec![backend, down],
            counters,
            conns: 7,
            conn_capacity: 100,
            nat_flows: 0,
            bounded: BoundedSample {
                templates: 3,
                template_capacity: 1000,
                templates_evicted: 4,
                templates_refused: 5,
                fragments: 6,
                fragment_capacity: 4096,
                fragments_evicted: 8,
            },
            checks: Vec::new(),
            vrrp: Vec::new(),
            sync: None,
        }
    }

    /// Fails, showing `text`, unless every one of `lines` is a line of it.
    fn assert_lines<S: AsRef<str>>(text: &str, lines: impl IntoIterator<Item = S>) {
        for line in lines {
            let line = line.as_ref();
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }

    const LABELS: &str = "local_address=\"10.0.0.100\",local_port=\"80\",remote_address=\"10.0.1.1\",remote_port=\"80\",proto=\"TCP\",local_mark=\"\"";

    #[test]
    fn vrrp_instances_have_state_transitions_and_advert_counters() {
        let mut s = sample();
        s.vrrp = vec![VrrpSample {
            instance: "VI_1".into(),
            state: 2,
            transitions: vec![("BACKUP", 1), ("MASTER", 1)],
            adverts_sent: 7,
            adverts_received: 3,
            refused: vec![("ttl", 2)],
        }];
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "tunlb_vrrp_state{instance=\"VI_1\"} 2",
                "tunlb_vrrp_transitions_total{instance=\"VI_1\",to=\"MASTER\"} 1",
                "tunlb_vrrp_transitions_total{instance=\"VI_1\",to=\"FAULT\"} 0",
                "tunlb_vrrp_adverts_sent_total{instance=\"VI_1\"} 7",
                "tunlb_vrrp_adverts_received_total{instance=\"VI_1\"} 3",
                "tunlb_vrrp_adverts_refused_total{instance=\"VI_1\",reason=\"ttl\"} 2",
            ],
        );
        let without = encode(&director_registry(&sample()), Format::Prometheus);
        assert!(!without.contains("tunlb_vrrp"));
    }

    #[test]
    fn prometheus_text_has_node_exporter_names() {
        let text = encode(&director_registry(&sample()), Format::Prometheus);
        assert_lines(
            &text,
            [
                "node_ipvs_connections_total 5".to_string(),
                "node_ipvs_incoming_packets_total 30".to_string(),
                "node_ipvs_outgoing_bytes_total 0".to_string(),
                format!("node_ipvs_backend_connections_active{{{LABELS}}} 1"),
                format!("node_ipvs_backend_connections_inactive{{{LABELS}}} 4"),
                format!("node_ipvs_backend_weight{{{LABELS}}} 2"),
                format!("tunlb_backend_connections_total{{{LABELS}}} 5"),
                format!("tunlb_backend_incoming_packets_total{{{LABELS}}} 30"),
                format!("tunlb_backend_up{{{LABELS}}} 1"),
                "tunlb_drops_total{reason=\"no_connection\"} 3".to_string(),
                "tunlb_drops_total{reason=\"malformed_ip\"} 0".to_string(),
                "tunlb_conn_table_entries 7".to_string(),
                "tunlb_conn_table_capacity 100".to_string(),
                format!(
                    "tunlb_build_info{{version=\"{}\"}} 1",
                    env!("CARGO_PKG_VERSION")
                ),
                "# TYPE node_ipvs_connections_total counter".to_string(),
            ],
        );
        // The down server is only in tunlb_backend_up.
        assert_eq!(text.matches("10.0.1.2").count(), 1, "{text}");
        assert!(!text.contains("# EOF"));
        for reason in DropReason::ALL {
            assert!(text.contains(&format!("reason=\"{}\"", reason.as_str())));
        }
    }

    #[test]
    fn bounded_state_evictions_by_table_and_reason() {
        let mut s = sample();
        s.counters.conns_evicted[Eviction::Unconfirmed as usize] = 11;
        s.counters.snat_evicted[Eviction::Unconfirmed as usize] = 13;
        s.counters.icmp_rate_limited = 12;
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "tunlb_conn_evictions_total{table=\"flows\",reason=\"unconfirmed\"} 11",
                "tunlb_conn_evictions_total{table=\"flows\",reason=\"expired\"} 0",
                "tunlb_conn_evictions_total{table=\"snat\",reason=\"unconfirmed\"} 13",
                "tunlb_conn_evictions_total{table=\"snat\",reason=\"expired\"} 0",
                "tunlb_conn_evictions_total{table=\"templates\",reason=\"idle\"} 4",
                "tunlb_conn_evictions_total{table=\"fragments\",reason=\"oldest\"} 8",
                "tunlb_conn_templates_refused_total 5",
                "tunlb_conn_templates 3",
                "tunlb_conn_templates_capacity 1000",
                "tunlb_conn_fragments 6",
                "tunlb_conn_fragments_capacity 4096",
                "tunlb_icmp_rate_limited_total 12",
            ],
        );
    }

    #[test]
    fn sync_counters_when_sync_runs() {
        let text = encode(&director_registry(&sample()), Format::Prometheus);
        assert!(!text.contains("tunlb_sync"), "no sync, no sync metrics");
        let stats = crate::sync::SyncStats::default();
        stats.count_refused(crate::sync::Refused::Auth);
        stats.count_refused(crate::sync::Refused::Auth);
        stats
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut counts = stats.snapshot();
        counts.sent = 4;
        counts.records_applied = 110;
        counts.no_dest = 1;
        counts.dropped = 2;
        let mut s = DirectorSample {
            sync: Some(counts),
            ..sample()
        };
        s.counters.sync_dropped = 3;
        s.counters.sync_adopted = 5;
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "tunlb_sync_messages_total{direction=\"sent\"} 4",
                "tunlb_sync_messages_total{direction=\"received\"} 0",
                "tunlb_sync_records_total{direction=\"applied\"} 110",
                "tunlb_sync_refused_total{reason=\"auth\"} 2",
                "tunlb_sync_refused_total{reason=\"replay\"} 0",
                "tunlb_sync_install_skipped_total{reason=\"no_dest\"} 1",
                "tunlb_sync_dropped_total 5",
                "tunlb_sync_adopted_total 5",
                "tunlb_sloppy_created_total 0",
                "tunlb_sync_master 0",
                "tunlb_sync_ready 1",
            ],
        );
        for r in crate::sync::Refused::ALL {
            assert!(text.contains(&format!(
                "tunlb_sync_refused_total{{reason=\"{}\"}}",
                r.as_str()
            )));
        }
    }

    #[test]
    fn evictions_gso_paths_and_send_errors() {
        let mut s = sample();
        s.counters.conns_expired = 11;
        s.counters.gso_whole = 4;
        s.counters.gso_split = 2;
        s.counters.drops[DropReason::SendFailed as usize] = 6;
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "# TYPE tunlb_conn_table_evictions_total counter",
                "tunlb_conn_table_evictions_total 11",
                "# TYPE tunlb_gso_packets_total counter",
                "tunlb_gso_packets_total{path=\"whole\"} 4",
                "tunlb_gso_packets_total{path=\"split\"} 2",
                "tunlb_send_errors_total 6",
                "tunlb_drops_total{reason=\"send_failed\"} 6",
            ],
        );
    }

    #[test]
    fn check_durations_land_in_buckets() {
        let d = CheckDurations::default();
        let svc = sample().backends[0].service;
        let rs = Ipv4Addr::new(10, 0, 1, 1).into();
        d.record(svc, rs, 80, "tcp", Duration::from_micros(500));
        d.record(svc, rs, 80, "tcp", Duration::from_millis(30));
        d.record(svc, rs, 80, "tcp", Duration::from_secs(20));
        d.record(svc, rs, 80, "http_get", Duration::from_millis(2));
        let checks = d.snapshot();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].hist.count, 3);
        assert_eq!(checks[0].hist.buckets[0], 1);
        assert_eq!(checks[0].hist.buckets[5], 1); // le 0.05
        assert_eq!(checks[0].hist.buckets[CHECK_BUCKETS.len()], 1); // +Inf
        let s = DirectorSample { checks, ..sample() };
        let text = encode(&director_registry(&s), Format::Prometheus);
        let tcp = format!("{LABELS},check=\"tcp\"");
        assert_lines(
            &text,
            [
                "# TYPE tunlb_check_duration_seconds histogram".to_string(),
                format!("tunlb_check_duration_seconds_count{{{tcp}}} 3"),
                format!("tunlb_check_duration_seconds_bucket{{{tcp},le=\"0.001\"}} 1"),
                format!("tunlb_check_duration_seconds_bucket{{{tcp},le=\"0.025\"}} 1"),
                format!("tunlb_check_duration_seconds_bucket{{{tcp},le=\"0.05\"}} 2"),
                format!("tunlb_check_duration_seconds_bucket{{{tcp},le=\"10\"}} 2"),
                format!("tunlb_check_duration_seconds_bucket{{{tcp},le=\"+Inf\"}} 3"),
                format!("tunlb_check_duration_seconds_count{{{LABELS},check=\"http_get\"}} 1"),
            ],
        );
        let om = encode(&director_registry(&s), Format::OpenMetrics);
        assert!(
            om.contains("# TYPE tunlb_check_duration_seconds histogram"),
            "{om}"
        );
    }

    #[test]
    fn check_durations_of_an_ipv6_real_server() {
        // node_exporter's labels carry the address and the port apart: the IPv6 address
        // is bare, as in every other per-real-server series.
        let d = CheckDurations::default();
        let svc = ServiceKey {
            vip: "2001:db8::100".parse::<Ipv6Addr>().expect("vip").into(),
            port: 80,
            proto: Protocol::Tcp,
        };
        let rs: IpAddr = "2001:db8:1::1".parse().expect("rs");
        d.record(svc, rs, 8080, "http_get", Duration::from_millis(2));
        let s = DirectorSample {
            checks: d.snapshot(),
            ..sample()
        };
        let text = encode(&director_registry(&s), Format::Prometheus);
        let want = "tunlb_check_duration_seconds_count{local_address=\"2001:db8::100\",\
                    local_port=\"80\",remote_address=\"2001:db8:1::1\",remote_port=\"8080\",\
                    proto=\"TCP\",local_mark=\"\",check=\"http_get\"} 1";
        assert!(text.lines().any(|l| l == want), "{text}");
    }

    #[test]
    fn tun_read_batch_sizes() {
        let mut s = sample();
        for n in [0, 1, 3, 3, 64, 300] {
            s.counters.count_read_batch(n);
        }
        let mut other = Counters::default();
        other.count_read_batch(2);
        s.counters.add(&other);
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "# TYPE tunlb_tun_read_batch_size histogram",
                "tunlb_tun_read_batch_size_bucket{le=\"1\"} 1",
                "tunlb_tun_read_batch_size_bucket{le=\"2\"} 2",
                "tunlb_tun_read_batch_size_bucket{le=\"4\"} 4",
                "tunlb_tun_read_batch_size_bucket{le=\"32\"} 4",
                "tunlb_tun_read_batch_size_bucket{le=\"64\"} 5",
                "tunlb_tun_read_batch_size_bucket{le=\"256\"} 5",
                "tunlb_tun_read_batch_size_bucket{le=\"+Inf\"} 6",
                "tunlb_tun_read_batch_size_sum 373.0",
                "tunlb_tun_read_batch_size_count 6",
            ],
        );
    }

    #[test]
    fn encap_errors_by_type_and_reason() {
        let mut s = sample();
        let e = &mut s.counters.encap_errors;
        e.count(EncapKind::Gre, EncapError::SendFailed, 2);
        e.count(EncapKind::Dr, EncapError::TooBig, 1);
        let mut other = Counters::default();
        let o = &mut other.encap_errors;
        o.count(EncapKind::Gre, EncapError::SendFailed, 3);
        o.count(EncapKind::Gue, EncapError::TooManyFragments, 4);
        s.counters.add(&other);
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "# TYPE tunlb_encap_errors_total counter",
                "tunlb_encap_errors_total{type=\"gre\",reason=\"send_failed\"} 5",
                "tunlb_encap_errors_total{type=\"dr\",reason=\"too_big\"} 1",
                "tunlb_encap_errors_total{type=\"gue\",reason=\"too_many_fragments\"} 4",
                "tunlb_encap_errors_total{type=\"ipip\",reason=\"send_failed\"} 0",
            ],
        );
        assert_eq!(text.matches("tunlb_encap_errors_total{").count(), 12);
    }

    #[test]
    fn tun_write_and_send_batch_sizes() {
        let mut s = sample();
        for n in [0, 1, 1, 5] {
            s.counters.tun_writes.record(n);
        }
        let mut other = Counters::default();
        for n in [64, 3, 300] {
            other.send_batches[SendSocket::Raw as usize].record(n);
        }
        other.send_batches[SendSocket::UdpGso as usize].record(45);
        s.counters.add(&other);
        let text = encode(&director_registry(&s), Format::Prometheus);
        assert_lines(
            &text,
            [
                "# TYPE tunlb_tun_write_batch_size histogram",
                "tunlb_tun_write_batch_size_bucket{le=\"1\"} 2",
                "tunlb_tun_write_batch_size_bucket{le=\"4\"} 2",
                "tunlb_tun_write_batch_size_bucket{le=\"8\"} 3",
                "tunlb_tun_write_batch_size_sum 7.0",
                "tunlb_tun_write_batch_size_count 3",
                "# TYPE tunlb_send_batch_size histogram",
                "tunlb_send_batch_size_bucket{socket=\"raw\",le=\"2\"} 0",
                "tunlb_send_batch_size_bucket{socket=\"raw\",le=\"4\"} 1",
                "tunlb_send_batch_size_bucket{socket=\"raw\",le=\"64\"} 2",
                "tunlb_send_batch_size_bucket{socket=\"raw\",le=\"256\"} 2",
                "tunlb_send_batch_size_bucket{socket=\"raw\",le=\"+Inf\"} 3",
                "tunlb_send_batch_size_sum{socket=\"raw\"} 367.0",
                "tunlb_send_batch_size_count{socket=\"raw\"} 3",
                "tunlb_send_batch_size_count{socket=\"packet\"} 0",
                "tunlb_send_batch_size_bucket{socket=\"udp_gso\",le=\"32\"} 0",
                "tunlb_send_batch_size_bucket{socket=\"udp_gso\",le=\"64\"} 1",
                "tunlb_send_batch_size_count{socket=\"udp_gso\"} 1",
            ],
        );
    }

    #[test]
    fn openmetrics_text_ends_with_eof() {
        let text = encode(&director_registry(&sample()), Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE node_ipvs_connections counter"));
        assert!(text.contains("node_ipvs_connections_total 5"));
    }

    #[test]
    fn agent_page_lists_every_drop_reason() {
        let stats = AgentStats {
            received: 9,
            delivered: 7,
            not_allowed: 2,
            gro_super_packets: 3,
            ..AgentStats::default()
        };
        let text = encode(&agent_registry(&stats), Format::Prometheus);
        assert_lines(
            &text,
            [
                "tunlb_agent_received_packets_total 9",
                "tunlb_agent_delivered_packets_total 7",
                "tunlb_agent_gro_super_packets_total 3",
                "tunlb_agent_drops_total{reason=\"not_allowed\"} 2",
                "tunlb_agent_drops_total{reason=\"not_vip\"} 0",
            ],
        );
        for e in StripError::ALL {
            assert!(
                text.contains(&format!("reason=\"{}\"", e.as_str())),
                "{text}"
            );
        }
    }

    #[test]
    fn accept_header_negotiation() {
        assert_eq!(Format::from_accept(""), Format::Prometheus);
        assert_eq!(Format::from_accept("*/*"), Format::Prometheus);
        assert_eq!(
            Format::from_accept(
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
            ),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_accept("application/openmetrics-text;q=0"),
            Format::Prometheus
        );
    }
}

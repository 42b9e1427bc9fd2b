//! Per-real-server traffic totals and rates (`adm -L --stats`, `--rate`, `-Z`), computed by
//! the control plane from the workers' counters.
//!
//! Workers only increment plain per-worker counters ([`DestCounters`]); this module sums them
//! by server when asked, subtracts what `-Z` zeroed, and keeps IPVS-style rate estimates: every
//! two seconds the rate over the last interval is folded into a moving average with weight 1/4
//! (as the kernel's `ip_vs_est` does).
//!
//! It also holds the plain per-worker counter types of the data path's IO that the metrics
//! endpoint sums at scrape time: batch size histograms ([`BatchHistogram`]: TUN reads and
//! writes, batched sends by [`SendSocket`]) and packets that could not leave for their real
//! server by forwarding type and reason ([`EncapErrors`]).

use std::collections::HashMap;

use super::conn::DestId;
use super::packet::verdict::DropReason;
use crate::encap::{Tunnel, TunnelType};
use crate::time::{Duration, Instant};

/// What one worker forwarded to and from one real server: the `ipvsadm --stats` columns (in
/// TUN mode replies bypass the director, so only NAT servers have outgoing counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DestCounters {
    /// The real server these counts belong to.
    pub id: DestId,
    /// Connections scheduled to it.
    pub conns: u64,
    /// Packets forwarded to it.
    pub in_pkts: u64,
    /// Bytes (inner packets) forwarded to it.
    pub in_bytes: u64,
    /// Packets from it forwarded to clients (NAT replies).
    pub out_pkts: u64,
    /// Bytes from it forwarded to clients.
    pub out_bytes: u64,
}

/// How often the rate estimator samples (IPVS: 2 s).
pub const ESTIMATOR_INTERVAL: Duration = Duration::from_secs(2);

/// Cumulative counters of one real server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections scheduled to it.
    pub conns: u64,
    /// Packets forwarded to it.
    pub in_pkts: u64,
    /// Bytes forwarded to it.
    pub in_bytes: u64,
    /// Packets from it forwarded to clients (NAT).
    pub out_pkts: u64,
    /// Bytes from it forwarded to clients (NAT).
    pub out_bytes: u64,
}

impl Totals {
    fn saturating_sub(self, o: Totals) -> Totals {
        Totals {
            conns: self.conns.saturating_sub(o.conns),
            in_pkts: self.in_pkts.saturating_sub(o.in_pkts),
            in_bytes: self.in_bytes.saturating_sub(o.in_bytes),
            out_pkts: self.out_pkts.saturating_sub(o.out_pkts),
            out_bytes: self.out_bytes.saturating_sub(o.out_bytes),
        }
    }
}

/// Per-second rates of one real server.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Connections per second.
    pub cps: f64,
    /// Packets per second.
    pub pps: f64,
    /// Bytes per second.
    pub bps: f64,
    /// Packets per second from it (NAT replies).
    pub out_pps: f64,
    /// Bytes per second from it.
    pub out_bps: f64,
}

/// Sums the workers' per-server counters (entries of deleted servers included; callers look
/// up the ids they know).
pub fn sum<'a>(workers: impl IntoIterator<Item = &'a [DestCounters]>) -> HashMap<DestId, Totals> {
    let mut out: HashMap<DestId, Totals> = HashMap::new();
    for per_dest in workers {
        for c in per_dest {
            if c.conns == 0 && c.in_pkts == 0 && c.out_pkts == 0 {
                continue;
            }
            let t = out.entry(c.id).or_default();
            t.conns += c.conns;
            t.in_pkts += c.in_pkts;
            t.in_bytes += c.in_bytes;
            t.out_pkts += c.out_pkts;
            t.out_bytes += c.out_bytes;
        }
    }
    out
}

/// Zeroing baselines and rate estimates, owned by the control plane.
#[derive(Debug, Default)]
pub struct StatsBook {
    baseline: HashMap<DestId, Totals>,
    last: HashMap<DestId, Totals>,
    rates: HashMap<DestId, Rate>,
    last_tick: Option<Instant>,
}

impl StatsBook {
    /// An empty book.
    pub fn new() -> StatsBook {
        StatsBook::default()
    }

    /// The totals of `id` since it was last zeroed.
    pub fn totals(&self, raw: &HashMap<DestId, Totals>, id: DestId) -> Totals {
        let now = raw.get(&id).copied().unwrap_or_default();
        now.saturating_sub(self.baseline.get(&id).copied().unwrap_or_default())
    }

    /// The estimated rates of `id`.
    pub fn rate(&self, id: DestId) -> Rate {
        self.rates.get(&id).copied().unwrap_or_default()
    }

    /// `-Z`: counting starts again from the current totals for these servers (rates too).
    pub fn zero(&mut self, raw: &HashMap<DestId, Totals>, ids: impl IntoIterator<Item = DestId>) {
        for id in ids {
            self.baseline
                .insert(id, raw.get(&id).copied().unwrap_or_default());
            self.rates.remove(&id);
        }
    }

    /// Whether [`tick`](Self::tick) wants to run at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.last_tick
            .is_none_or(|t| now.saturating_since(t) >= ESTIMATOR_INTERVAL)
    }

    /// Folds the rates since the last tick into the moving averages.
    pub fn tick(&mut self, now: Instant, raw: &HashMap<DestId, Totals>) {
        let Some(prev) = self.last_tick.replace(now) else {
            self.last = raw.clone();
            return;
        };
        let secs = now.saturating_since(prev).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        for (id, t) in raw {
            let before = self.last.get(id).copied().unwrap_or_default();
            let d = t.saturating_sub(before);
            let r = self.rates.entry(*id).or_default();
            let sample = Rate {
                cps: d.conns as f64 / secs,
                pps: d.in_pkts as f64 / secs,
                bps: d.in_bytes as f64 / secs,
                out_pps: d.out_pkts as f64 / secs,
                out_bps: d.out_bytes as f64 / secs,
            };
            r.cps += (sample.cps - r.cps) / 4.0;
            r.pps += (sample.pps - r.pps) / 4.0;
            r.bps += (sample.bps - r.bps) / 4.0;
            r.out_pps += (sample.out_pps - r.out_pps) / 4.0;
            r.out_bps += (sample.out_bps - r.out_bps) / 4.0;
        }
        // Servers that sent nothing this interval decay towards zero.
        for (id, r) in self.rates.iter_mut() {
            if !raw.contains_key(id) {
                r.cps -= r.cps / 4.0;
                r.pps -= r.pps / 4.0;
                r.bps -= r.bps / 4.0;
                r.out_pps -= r.out_pps / 4.0;
                r.out_bps -= r.out_bps / 4.0;
            }
        }
        self.last = raw.clone();
        self.baseline.retain(|id, _| raw.contains_key(id));
    }
}

/// The upper bounds of the batch size buckets of a [`BatchHistogram`].
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// The histogram bucket `v` falls in: the index of the first upper bound in `bounds` (in
/// ascending order) that is not below it, `bounds.len()` for the `+Inf` bucket.
pub fn bucket_index<T: PartialOrd>(bounds: &[T], v: T) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

/// How many packets (or frames, or records) batches of one kind carried: a plain per-worker
/// histogram, summed by the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchHistogram {
    /// Batches per bucket of [`BATCH_BUCKETS`] (plain counts, not cumulative), the last one for
    /// larger batches.
    pub buckets: [u64; BATCH_BUCKETS.len() + 1],
    /// Packets in the counted batches (the histogram's sum).
    pub sum: u64,
}

impl BatchHistogram {
    /// Counts one batch of `n` packets (nothing for an empty one).
    #[inline]
    pub fn record(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let n = n as u64;
        if let Some(b) = self.buckets.get_mut(bucket_index(&BATCH_BUCKETS, n)) {
            *b += 1;
        }
        self.sum += n;
    }

    /// Adds `other`'s counts into `self`.
    pub fn add(&mut self, other: &BatchHistogram) {
        for (b, o) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *b += o;
        }
        self.sum += other.sum;
    }

    /// Batches counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The sockets the driver sends batches on: the `socket` label of `tunlb_send_batch_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SendSocket {
    /// The `IP_HDRINCL` raw socket: encapsulated datagrams (IPIP, GRE, GUE, outer fragments,
    /// GSO segments), one `sendmmsg` batch per TUN batch.
    Raw,
    /// The `AF_PACKET` sockets: DR frames (fragments, segments and whole super-packets behind
    /// a virtio header count one each), one `sendmmsg` batch per socket and TUN batch.
    Packet,
    /// The UDP sockets of GUE trains: GUE records per `UDP_SEGMENT` `sendmsg`.
    UdpGso,
}

impl SendSocket {
    /// Every socket, in declaration order (index = `self as usize`).
    pub const ALL: [SendSocket; 3] = [SendSocket::Raw, SendSocket::Packet, SendSocket::UdpGso];

    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            SendSocket::Raw => "raw",
            SendSocket::Packet => "packet",
            SendSocket::UdpGso => "udp_gso",
        }
    }
}

/// How a packet leaves for its real server: the `type` label of `tunlb_encap_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EncapKind {
    /// IPv4-in-IPv4.
    Ipip,
    /// GRE.
    Gre,
    /// GUE (UDP).
    Gue,
    /// A DR frame (the packet unchanged in an Ethernet frame).
    Dr,
}

impl EncapKind {
    /// Every kind, in declaration order (index = `self as usize`).
    pub const ALL: [EncapKind; 4] = [
        EncapKind::Ipip,
        EncapKind::Gre,
        EncapKind::Gue,
        EncapKind::Dr,
    ];

    /// The metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            EncapKind::Ipip => "ipip",
            EncapKind::Gre => "gre",
            EncapKind::Gue => "gue",
            EncapKind::Dr => "dr",
        }
    }
}

impl From<TunnelType> for EncapKind {
    fn from(t: TunnelType) -> EncapKind {
        match t {
            TunnelType::Ipip => EncapKind::Ipip,
            TunnelType::Gre => EncapKind::Gre,
            TunnelType::Gue => EncapKind::Gue,
        }
    }
}

impl From<Tunnel> for EncapKind {
    fn from(t: Tunnel) -> EncapKind {
        t.kind().into()
    }
}

/// Why a packet for a real server was not sent: the `reason` label of
/// `tunlb_encap_errors_total`, each the [`DropReason`] it is also dropped as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EncapError {
    /// The kernel refused the send, or the driver could not queue it
    /// ([`DropReason::SendFailed`]).
    SendFailed,
    /// DF set and too big once encapsulated, or for the DR real server's LAN: an ICMP
    /// fragmentation-needed went back ([`DropReason::TooBig`]).
    TooBig,
    /// DF clear and too big, but it cannot be split into few enough fragments
    /// ([`DropReason::TooManyFragments`]).
    TooManyFragments,
}

impl EncapError {
    /// Every reason, in declaration order (index = `self as usize`).
    pub const ALL: [EncapError; 3] = [
        EncapError::SendFailed,
        EncapError::TooBig,
        EncapError::TooManyFragments,
    ];

    /// The drop reason the packet is counted under as well.
    pub const fn drop_reason(self) -> DropReason {
        match self {
            EncapError::SendFailed => DropReason::SendFailed,
            EncapError::TooBig => DropReason::TooBig,
            EncapError::TooManyFragments => DropReason::TooManyFragments,
        }
    }

    /// The metric label value (the drop reason's).
    pub const fn as_str(self) -> &'static str {
        self.drop_reason().as_str()
    }
}

/// Packets for real servers that did not leave, by [`EncapKind`] and [`EncapError`]: plain
/// per-worker counts, summed by the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncapErrors {
    counts: [[u64; EncapError::ALL.len()]; EncapKind::ALL.len()],
}

impl EncapErrors {
    /// Counts `n` packets of `kind` lost for `why`.
    #[inline]
    pub fn count(&mut self, kind: EncapKind, why: EncapError, n: u64) {
        self.counts[kind as usize][why as usize] += n;
    }

    /// The packets of `kind` lost for `why`.
    pub fn get(&self, kind: EncapKind, why: EncapError) -> u64 {
        self.counts[kind as usize][why as usize]
    }

    /// Adds `other`'s counts into `self`.
    pub fn add(&mut self, other: &EncapErrors) {
        for (row, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            for (c, n) in row.iter_mut().zip(o.iter()) {
                *c += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(id: u32, conns: u64, pkts: u64, bytes: u64) -> DestCounters {
        DestCounters {
            id: DestId(id),
            conns,
            in_pkts: pkts,
            in_bytes: bytes,
            out_pkts: pkts / 2,
            out_bytes: bytes * 3,
        }
    }

    #[test]
    fn sums_workers_by_server_and_zeroes() {
        let w1 = [counters(0, 2, 10, 1000), counters(1, 1, 5, 500)];
        let w2 = [counters(0, 1, 4, 400)];
        let raw = sum([&w1[..], &w2[..]]);
        let mut book = StatsBook::new();
        assert_eq!(
            book.totals(&raw, DestId(0)),
            Totals {
                conns: 3,
                in_pkts: 14,
                in_bytes: 1400,
                out_pkts: 7,
                out_bytes: 4200,
            }
        );
        book.zero(&raw, [DestId(0)]);
        assert_eq!(book.totals(&raw, DestId(0)), Totals::default());
        assert_eq!(book.totals(&raw, DestId(1)).in_pkts, 5);
        let w1 = [counters(0, 3, 20, 2000), counters(1, 1, 5, 500)];
        let raw = sum([&w1[..], &w2[..]]);
        assert_eq!(book.totals(&raw, DestId(0)).in_pkts, 10);
    }

    #[test]
    fn rates_converge_like_ipvs_estimator() {
        let mut book = StatsBook::new();
        let mut t = Instant::from_secs(0);
        let mut pkts = 0;
        for _ in 0..40 {
            let raw = sum([&[counters(7, pkts / 100, pkts, pkts * 100)][..]]);
            assert!(book.due(t));
            book.tick(t, &raw);
            t += ESTIMATOR_INTERVAL;
            pkts += 2000; // 1000 packets per second
        }
        let r = book.rate(DestId(7));
        assert!((r.pps - 1000.0).abs() < 1.0, "{r:?}");
        assert!((r.bps - 100_000.0).abs() < 100.0, "{r:?}");
        assert!((r.cps - 10.0).abs() < 0.1, "{r:?}");
        assert!((r.out_pps - 500.0).abs() < 1.0, "{r:?}");
        assert!((r.out_bps - 300_000.0).abs() < 300.0, "{r:?}");
        // Traffic stops: the estimate decays by a quarter per interval.
        pkts -= 2000;
        let raw = sum([&[counters(7, pkts / 100, pkts, pkts * 100)][..]]);
        book.tick(t, &raw);
        assert!(book.rate(DestId(7)).pps < 800.0);
        assert!(!book.due(t + Duration::from_secs(1)));
    }

    #[test]
    fn batch_histogram_buckets_and_sums() {
        let mut h = BatchHistogram::default();
        for n in [0, 1, 2, 3, 256, 257] {
            h.record(n);
        }
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum, 519);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[2], 1);
        assert_eq!(h.buckets[BATCH_BUCKETS.len() - 1], 1);
        assert_eq!(h.buckets[BATCH_BUCKETS.len()], 1);
        let mut total = h;
        total.add(&h);
        assert_eq!((total.count(), total.sum), (10, 1038));
    }

    #[test]
    fn encap_kinds_and_their_indices() {
        assert_eq!(EncapKind::from(TunnelType::Gue), EncapKind::Gue);
        let gre = Tunnel::Gre {
            key: None,
            csum: false,
        };
        assert_eq!(EncapKind::from(gre), EncapKind::Gre);
        assert_eq!(EncapKind::from(Tunnel::Ipip), EncapKind::Ipip);
        for (i, k) in EncapKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        for (i, e) in EncapError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        for (i, s) in SendSocket::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        let mut e = EncapErrors::default();
        e.count(EncapKind::Gre, EncapError::TooBig, 2);
        let mut sum = e;
        sum.add(&e);
        assert_eq!(sum.get(EncapKind::Gre, EncapError::TooBig), 4);
        assert_eq!(sum.get(EncapKind::Dr, EncapError::TooBig), 0);
        assert_eq!(EncapError::TooManyFragments.as_str(), "too_many_fragments");
    }
}

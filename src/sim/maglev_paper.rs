//! The consistent-hashing evaluation of the Maglev paper (Eisenbud et al., NSDI 2016, §5.3) run
//! with tunlb's own `mh` table builder (the one the scheduler uses), next to Karger and
//! Rendezvous hashing (docs/scale-out.md, "Against the Maglev paper";
//! `cargo run --release --features sim --example maglev_paper`).
//!
//! As in the paper, with 1,000 backends and tables of M = 65537 and 655373 entries:
//! - **Balance** (its Figure 11): one table filled by each method; entries per backend, the
//!   largest and smallest as a percent of M, and the overprovisioning the paper's text quotes,
//!   `max / mean − 1` (how much more than its fair share every backend must be able to carry
//!   for the busiest to cope). Methods: tunlb `mh`; Karger consistent hashing, a ring with
//!   1,000 points ("views") per backend, entry `j`'s key hashed onto the ring and owned by the
//!   next point clockwise; Rendezvous hashing, entry `j` owned by the backend with the highest
//!   hash of (`j`, backend).
//! - **Resilience** (its Figure 12): `k` backends chosen at random fail at once, the table is
//!   rebuilt, and the entries whose backend changed are counted (percent of M); repeated
//!   (200 times in the paper) for each `k`. The minimum is the failed backends' own entries.
//!   Karger and Rendezvous reach it by construction; here they are rebuilt from scratch to
//!   check that, with fewer repetitions.
//! - **Build time** of the `mh` table for 1,000 backends (median of several builds).
//!
//! Each repetition draws its failures from its own seed (M, k, repetition and the run's seed),
//! so the result does not depend on how the repetitions are split over threads.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rng::splitmix64;
use super::{mh_table, DestState, Rng, SchedDest};

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaperParams {
    /// Backends (real servers, weight 1 each).
    pub backends: usize,
    /// Table sizes M.
    pub table_sizes: Vec<u32>,
    /// Points on the Karger ring per backend.
    pub karger_views: usize,
    /// Numbers of backends failing at once.
    pub failures: Vec<usize>,
    /// Repetitions per (M, k) for `mh`.
    pub reps: usize,
    /// Repetitions per (M, k) for Karger and Rendezvous (a check, not a measurement).
    pub check_reps: usize,
    /// Tables drawn per (method, M) with other hash salts, for the spread of Karger's and
    /// Rendezvous's balance (one table's busiest backend is one random draw).
    pub salts: u64,
    /// `mh` builds timed per M.
    pub timed_builds: usize,
    /// Threads for the repetitions.
    pub threads: usize,
    /// Seeds the failures.
    pub seed: u64,
}

impl PaperParams {
    /// The paper's protocol: 1,000 backends, M = 65537 and 655373, 1,000 views, 200
    /// repetitions; k = 1 and 1 % to 10 % of the backends.
    pub fn paper() -> PaperParams {
        PaperParams {
            backends: 1000,
            table_sizes: vec![65537, 655373],
            karger_views: 1000,
            failures: [1].into_iter().chain((1..=10).map(|p| p * 10)).collect(),
            reps: 200,
            check_reps: 2,
            salts: 5,
            timed_builds: 21,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            seed: 53,
        }
    }
}

/// A consistent-hashing method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// tunlb's `mh` scheduler (weighted Maglev, equal weights here).
    Mh,
    /// Karger et al.'s ring with virtual nodes.
    Karger,
    /// Rendezvous (highest random weight) hashing.
    Rendezvous,
}

impl Method {
    /// Its name in the tables.
    pub fn label(&self, views: usize) -> String {
        match self {
            Method::Mh => "tunlb `mh` (Maglev)".into(),
            Method::Karger => format!("Karger, {views} views per backend"),
            Method::Rendezvous => "Rendezvous".into(),
        }
    }

    /// The overprovisioning the paper's text gives for a table size, in percent.
    pub fn paper_overprovisioning(&self, m: u32) -> Option<f64> {
        match (self, m) {
            (Method::Karger, 65537) => Some(29.7),
            (Method::Karger, 655373) => Some(10.3),
            (Method::Rendezvous, 65537) => Some(49.5),
            (Method::Rendezvous, 655373) => Some(12.3),
            _ => None,
        }
    }
}

/// The paper's `mh` table generation time for a table size (its §5.3).
pub fn paper_build_time(m: u32) -> Option<Duration> {
    match m {
        65537 => Some(Duration::from_micros(1800)),
        655373 => Some(Duration::from_micros(22_900)),
        _ => None,
    }
}

/// One 64-bit hash of one 64-bit value (a SplitMix64 step: a bijection, well mixed).
fn mix(x: u64) -> u64 {
    let mut s = x;
    splitmix64(&mut s)
}

/// Backend `i`'s address: 10.1.0.1, 10.1.0.2, ...
fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0a01_0001 + i as u32)
}

/// A backend's identity for Karger and Rendezvous: a hash of its address (and a salt, to draw
/// other tables).
fn backend_hash(i: usize, salt: u64) -> u64 {
    mix(u64::from(u32::from(addr(i))) ^ 0x6261_636b_656e_6421 ^ mix(salt))
}

/// Table entry `j`'s key for Karger and Rendezvous.
fn entry_hash(j: usize, salt: u64) -> u64 {
    mix(j as u64 ^ 0x656e_7472_7921_0000 ^ mix(salt))
}

/// A table: entry -> backend number (into the full list of `backends`).
type Table = Vec<u32>;

/// Builds the table of `method` for the backends numbered `alive` (ascending); `salt` changes
/// the hashes of Karger and Rendezvous (`mh` has fixed keys).
fn build(method: Method, alive: &[usize], m: u32, views: usize, salt: u64) -> Table {
    match method {
        Method::Mh => {
            let dests: Vec<SchedDest> = alive
                .iter()
                .map(|&i| SchedDest {
                    addr: addr(i).into(),
                    port: 80,
                    weight: 1,
                    state: Arc::new(DestState::default()),
                })
                .collect();
            mh_table(&dests, m)
                .into_iter()
                .map(|d| alive[d as usize] as u32)
                .collect()
        }
        Method::Karger => {
            let mut ring: Vec<(u64, u32)> = alive
                .iter()
                .flat_map(|&i| {
                    let b = backend_hash(i, salt);
                    (0..views as u64).map(move |v| (mix(b ^ mix(v)), i as u32))
                })
                .collect();
            ring.sort_unstable();
            (0..m as usize)
                .map(|j| {
                    let e = entry_hash(j, salt);
                    let at = ring.partition_point(|&(h, _)| h < e);
                    ring[at % ring.len()].1
                })
                .collect()
        }
        Method::Rendezvous => rendezvous(alive, 0..m as usize, salt),
    }
}

/// Rendezvous owners of the entries `entries`.
fn rendezvous(alive: &[usize], entries: std::ops::Range<usize>, salt: u64) -> Table {
    let backends: Vec<(u64, u32)> = alive
        .iter()
        .map(|&i| (backend_hash(i, salt), i as u32))
        .collect();
    entries
        .map(|j| {
            let e = entry_hash(j, salt);
            backends
                .iter()
                .map(|&(b, i)| (mix(e ^ b), i))
                .max()
                .map_or(u32::MAX, |(_, i)| i)
        })
        .collect()
}

/// Entries per backend of one table.
#[derive(Clone, Debug, PartialEq)]
pub struct Balance {
    pub method: Method,
    pub m: u32,
    /// Most entries any backend has.
    pub max: usize,
    /// Fewest entries any backend has.
    pub min: usize,
    pub backends: usize,
}

impl Balance {
    fn of(method: Method, table: &[u32], backends: usize, m: u32) -> Balance {
        let mut per = vec![0usize; backends];
        for &b in table {
            per[b as usize] += 1;
        }
        Balance {
            method,
            m,
            max: per.iter().copied().max().unwrap_or(0),
            min: per.iter().copied().min().unwrap_or(0),
            backends,
        }
    }

    /// The largest share, percent of the entries.
    pub fn max_pct(&self) -> f64 {
        100.0 * self.max as f64 / f64::from(self.m)
    }

    /// The smallest share, percent of the entries.
    pub fn min_pct(&self) -> f64 {
        100.0 * self.min as f64 / f64::from(self.m)
    }

    /// `max / mean − 1`, in percent.
    pub fn overprovisioning_pct(&self) -> f64 {
        100.0 * (self.max as f64 * self.backends as f64 / f64::from(self.m) - 1.0)
    }
}

/// Entries changed by failures, over the repetitions of one (method, M, k).
#[derive(Clone, Debug, PartialEq)]
pub struct Resilience {
    pub method: Method,
    pub m: u32,
    /// Backends failing at once.
    pub k: usize,
    /// Per repetition: entries whose backend changed.
    pub changed: Vec<usize>,
    /// Per repetition: entries the failed backends had (the least that must change).
    pub minimum: Vec<usize>,
}

impl Resilience {
    fn pct(&self, n: usize) -> f64 {
        100.0 * n as f64 / f64::from(self.m)
    }

    fn mean_pct(&self, v: &[usize]) -> f64 {
        self.pct(v.iter().sum::<usize>()) / v.len().max(1) as f64
    }

    /// Mean changed entries, percent of M (what the paper plots).
    pub fn mean_changed_pct(&self) -> f64 {
        self.mean_pct(&self.changed)
    }

    /// Fewest and most changed entries over the repetitions, percent of M.
    pub fn range_changed_pct(&self) -> (f64, f64) {
        let min = self.changed.iter().copied().min().unwrap_or(0);
        let max = self.changed.iter().copied().max().unwrap_or(0);
        (self.pct(min), self.pct(max))
    }

    /// Mean entries of the failed backends, percent of M.
    pub fn mean_minimum_pct(&self) -> f64 {
        self.mean_pct(&self.minimum)
    }

    /// Mean entries of the surviving backends that moved, percent of M.
    pub fn mean_extra_pct(&self) -> f64 {
        self.mean_changed_pct() - self.mean_minimum_pct()
    }

    /// Repetitions that changed more than the failed backends' entries.
    pub fn reps_above_minimum(&self) -> usize {
        self.changed
            .iter()
            .zip(&self.minimum)
            .filter(|(c, m)| c > m)
            .count()
    }
}

/// `f(0..n)` on `threads` threads (each takes every `threads`-th index), results in order.
fn par_map<T: Send>(n: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, n.max(1));
    let f = &f;
    let mut parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || (t..n).step_by(threads).map(|i| (i, f(i))).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    let mut all: Vec<(usize, T)> = parts.iter_mut().flat_map(std::mem::take).collect();
    all.sort_by_key(|&(i, _)| i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// The backends failing in one repetition: `k` of `n`, drawn from its own seed.
fn failed(n: usize, k: usize, seed: u64) -> Vec<bool> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut out = vec![false; n];
    for i in 0..k.min(n) {
        let j = i + rng.below((n - i) as u64) as usize;
        order.swap(i, j);
        out[order[i]] = true;
    }
    out
}

/// Balance of a method for one M (`salt` 0 is the table the resilience runs use).
pub fn balance(p: &PaperParams, method: Method, m: u32, salt: u64) -> Balance {
    let all: Vec<usize> = (0..p.backends).collect();
    let table = match method {
        // Rendezvous costs M × backends hashes: split the entries over the threads.
        Method::Rendezvous => {
            let chunk = (m as usize).div_ceil(p.threads.max(1));
            par_map(p.threads.max(1), p.threads, |t| {
                rendezvous(&all, t * chunk..((t + 1) * chunk).min(m as usize), salt)
            })
            .concat()
        }
        _ => build(method, &all, m, p.karger_views, salt),
    };
    Balance::of(method, &table, p.backends, m)
}

/// Resilience of a method for one M and k over `reps` repetitions.
pub fn resilience(p: &PaperParams, method: Method, m: u32, k: usize, reps: usize) -> Resilience {
    let all: Vec<usize> = (0..p.backends).collect();
    let full = build(method, &all, m, p.karger_views, 0);
    let runs = par_map(reps, p.threads, |rep| {
        let seed = p.seed ^ mix(u64::from(m) << 40 ^ (k as u64) << 20 ^ rep as u64);
        let down = failed(p.backends, k, seed);
        let alive: Vec<usize> = all.iter().copied().filter(|&i| !down[i]).collect();
        let after = build(method, &alive, m, p.karger_views, 0);
        let changed = full.iter().zip(&after).filter(|(a, b)| a != b).count();
        let minimum = full.iter().filter(|&&a| down[a as usize]).count();
        (changed, minimum)
    });
    Resilience {
        method,
        m,
        k,
        changed: runs.iter().map(|r| r.0).collect(),
        minimum: runs.iter().map(|r| r.1).collect(),
    }
}

/// Median time to build the `mh` table of all backends at size M.
pub fn build_time(p: &PaperParams, m: u32) -> Duration {
    let all: Vec<usize> = (0..p.backends).collect();
    let dests: Vec<SchedDest> = all
        .iter()
        .map(|&i| SchedDest {
            addr: addr(i).into(),
            port: 80,
            weight: 1,
            state: Arc::new(DestState::default()),
        })
        .collect();
    let mut times: Vec<Duration> = (0..p.timed_builds.max(1))
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(mh_table(&dests, m));
            t0.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Everything measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub balance: Vec<Balance>,
    /// Per row of `balance`: the overprovisioning (%) of each salt's table, salt 0 first.
    pub spread: Vec<Vec<f64>>,
    pub resilience: Vec<Resilience>,
    /// (M, median build time).
    pub build_times: Vec<(u32, Duration)>,
    /// Wall time of each part: balance, mh resilience, checks of Karger and Rendezvous.
    pub wall: [Duration; 3],
}

const METHODS: [Method; 3] = [Method::Mh, Method::Karger, Method::Rendezvous];

/// Runs everything, build times first (nothing else running), reporting progress.
pub fn run(p: &PaperParams, progress: &mut dyn FnMut(String)) -> Report {
    let build_times: Vec<(u32, Duration)> = p
        .table_sizes
        .iter()
        .map(|&m| {
            let t = build_time(p, m);
            progress(format!("mh build, M = {m}: median {t:?}"));
            (m, t)
        })
        .collect();

    let t0 = Instant::now();
    let mut bal = Vec::new();
    let mut spread = Vec::new();
    for &m in &p.table_sizes {
        for method in METHODS {
            let salts = if method == Method::Mh {
                1
            } else {
                p.salts.max(1)
            };
            let all: Vec<Balance> = (0..salts).map(|salt| balance(p, method, m, salt)).collect();
            spread.push(all.iter().map(Balance::overprovisioning_pct).collect());
            let b = all[0].clone();
            progress(format!(
                "balance {method:?} M = {m}: max {} min {} (+{:.1} %)",
                b.max,
                b.min,
                b.overprovisioning_pct()
            ));
            bal.push(b);
        }
    }
    let t1 = Instant::now();
    let mut res = Vec::new();
    let mut check = Vec::new();
    let mut check_wall = Duration::ZERO;
    for &m in &p.table_sizes {
        for &k in &p.failures {
            let r = resilience(p, Method::Mh, m, k, p.reps);
            progress(format!(
                "mh M = {m} k = {k}: {:.3} % changed (minimum {:.3} %), {:?} so far",
                r.mean_changed_pct(),
                r.mean_minimum_pct(),
                t1.elapsed()
            ));
            res.push(r);
        }
    }
    let mh_wall = t1.elapsed();
    for &m in &p.table_sizes {
        for method in [Method::Karger, Method::Rendezvous] {
            for &k in &p.failures {
                let t = Instant::now();
                let r = resilience(p, method, m, k, p.check_reps);
                check_wall += t.elapsed();
                progress(format!(
                    "{method:?} M = {m} k = {k}: {} of {} repetitions above the minimum",
                    r.reps_above_minimum(),
                    r.changed.len()
                ));
                check.push(r);
            }
        }
    }
    res.extend(check);
    Report {
        balance: bal,
        spread,
        resilience: res,
        build_times,
        wall: [t1 - t0, mh_wall, check_wall],
    }
}

/// The report as Markdown: the three tables of docs/scale-out.md.
pub fn markdown(p: &PaperParams, r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let n = p.backends;
    let _ = writeln!(
        s,
        "**Balance** (paper's Figure 11): one table, {n} backends; entries per backend.\n"
    );
    let _ = writeln!(
        s,
        "| method | M | max entries (% of M) | min entries (% of M) | overprovisioning, max / mean − 1 | same, {} tables (hash seeds): min – max | paper (text) |",
        p.salts
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|");
    for (b, over) in r.balance.iter().zip(&r.spread) {
        let lo = over.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = over.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let range = if over.len() > 1 {
            format!("{lo:.1} – {hi:.1} %")
        } else {
            "–".into()
        };
        let paper = match b.method {
            Method::Mh => "\"almost perfect\"".to_string(),
            m => m
                .paper_overprovisioning(b.m)
                .map_or("–".into(), |v| format!("{v:.1} %")),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} ({:.4} %) | {} ({:.4} %) | {:.1} % | {range} | {paper} |",
            b.method.label(p.karger_views),
            b.m,
            b.max,
            b.max_pct(),
            b.min,
            b.min_pct(),
            b.overprovisioning_pct()
        );
    }

    let _ = writeln!(
        s,
        "\n**Resilience** (paper's Figure 12): k of {n} backends fail at once, the table is \
         rebuilt; entries whose backend changed, % of M. `mh`: mean [min – max] of {} \
         repetitions; minimum = the failed backends' own entries (mean); Karger and \
         Rendezvous: rebuilt from scratch {} times per k, repetitions that changed more than \
         the minimum.\n",
        p.reps, p.check_reps
    );
    let mut head = "| k failed | minimum".to_string();
    let mut rule = "|--:|--:".to_string();
    for &m in &p.table_sizes {
        let _ = write!(head, " | `mh` M = {m} | extra");
        rule.push_str("|--:|--:");
    }
    for &m in &p.table_sizes {
        let _ = write!(head, " | Karger / Rendezvous M = {m}: above minimum");
        rule.push_str("|--:");
    }
    let _ = writeln!(s, "{head} |\n{rule}|");
    let find = |method: Method, m: u32, k: usize| {
        r.resilience
            .iter()
            .find(|x| x.method == method && x.m == m && x.k == k)
    };
    for &k in &p.failures {
        let minimum = find(Method::Mh, p.table_sizes[0], k).map_or(0.0, |x| x.mean_minimum_pct());
        let _ = write!(
            s,
            "| {k} ({:.1} %) | {minimum:.2} %",
            100.0 * k as f64 / n as f64
        );
        for &m in &p.table_sizes {
            match find(Method::Mh, m, k) {
                Some(x) => {
                    let (lo, hi) = x.range_changed_pct();
                    let _ = write!(
                        s,
                        " | {:.2} % [{lo:.2} – {hi:.2}] | {:.2} %",
                        x.mean_changed_pct(),
                        x.mean_extra_pct()
                    );
                }
                None => s.push_str(" | – | –"),
            }
        }
        for &m in &p.table_sizes {
            let cell = |method| {
                find(method, m, k).map_or("–".into(), |x: &Resilience| {
                    format!("{}/{}", x.reps_above_minimum(), x.changed.len())
                })
            };
            let _ = write!(
                s,
                " | {} / {}",
                cell(Method::Karger),
                cell(Method::Rendezvous)
            );
        }
        s.push_str(" |\n");
    }

    let _ = writeln!(
        s,
        "\n**Table build time**, `mh`, {n} backends, median of {} builds on one core:\n",
        p.timed_builds
    );
    let _ = writeln!(s, "| M | tunlb | paper |\n|--:|--:|--:|");
    for &(m, t) in &r.build_times {
        let paper = paper_build_time(m).map_or("–".into(), |d| format!("{:.1} ms", ms(d)));
        let _ = writeln!(s, "| {m} | {:.1} ms | {paper} |", ms(t));
    }
    let _ = writeln!(
        s,
        "\nWall time on {} threads: balance {:.1} s, `mh` resilience {:.1} s, Karger and \
         Rendezvous checks {:.1} s.",
        p.threads,
        r.wall[0].as_secs_f64(),
        r.wall[1].as_secs_f64(),
        r.wall[2].as_secs_f64()
    );
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's protocol scaled down: 50 backends, M = 503 and 5003, 5 failing.
    fn small() -> PaperParams {
        PaperParams {
            backends: 50,
            table_sizes: vec![503, 5003],
            karger_views: 100,
            failures: vec![1, 5],
            reps: 12,
            check_reps: 3,
            salts: 2,
            timed_builds: 1,
            threads: 2,
            seed: 7,
        }
    }

    #[test]
    fn mh_balances_within_one_entry_and_the_others_do_not() {
        let p = small();
        for &m in &p.table_sizes {
            let mh = balance(&p, Method::Mh, m, 0);
            assert!(mh.max - mh.min <= 1, "{mh:?}");
            assert_eq!(mh.max, (m as usize).div_ceil(p.backends), "{mh:?}");
            for method in [Method::Karger, Method::Rendezvous] {
                let b = balance(&p, method, m, 0);
                assert!(b.max - b.min > 1, "{b:?}");
                assert!(
                    b.overprovisioning_pct() > mh.overprovisioning_pct(),
                    "{b:?}"
                );
            }
        }
        // A larger table evens Karger and Rendezvous out.
        for method in [Method::Karger, Method::Rendezvous] {
            let (a, b) = (balance(&p, method, 503, 0), balance(&p, method, 5003, 0));
            assert!(
                b.overprovisioning_pct() < a.overprovisioning_pct(),
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn karger_and_rendezvous_move_exactly_the_failed_entries_mh_at_least_those() {
        let p = small();
        for &m in &p.table_sizes {
            for &k in &p.failures {
                for method in [Method::Karger, Method::Rendezvous] {
                    let r = resilience(&p, method, m, k, p.check_reps);
                    assert_eq!(r.changed, r.minimum, "{method:?} M = {m} k = {k}");
                    assert!(r.minimum.iter().all(|&x| x > 0));
                }
                let r = resilience(&p, Method::Mh, m, k, p.reps);
                assert_eq!(r.changed.len(), p.reps);
                for (c, min) in r.changed.iter().zip(&r.minimum) {
                    assert!(c >= min && *min > 0, "M = {m} k = {k}: {c} < {min}");
                }
                // Maglev moves some entries of the backends that stayed.
                assert!(r.reps_above_minimum() > 0);
            }
        }
        // More failures change more; the larger table has less extra.
        let r = |m, k| resilience(&p, Method::Mh, m, k, p.reps);
        for m in [503, 5003] {
            assert!(r(m, 5).mean_changed_pct() > r(m, 1).mean_changed_pct());
        }
        for k in [1, 5] {
            let (small, large) = (r(503, k), r(5003, k));
            assert!(
                large.mean_extra_pct() < small.mean_extra_pct(),
                "k = {k}: {} vs {}",
                large.mean_extra_pct(),
                small.mean_extra_pct()
            );
        }
    }

    #[test]
    fn repetitions_do_not_depend_on_threads() {
        let mut p = small();
        let two = resilience(&p, Method::Mh, 503, 5, 6);
        p.threads = 1;
        let one = resilience(&p, Method::Mh, 503, 5, 6);
        assert_eq!(one, two);
        // And the failures drawn are k distinct backends.
        let down = failed(50, 5, 99);
        assert_eq!(down.iter().filter(|&&d| d).count(), 5);
    }

    #[test]
    fn the_report_has_every_table() {
        let mut p = small();
        p.failures = vec![1];
        p.reps = 2;
        p.check_reps = 1;
        let r = run(&p, &mut |_| {});
        assert_eq!(r.balance.len(), 6);
        assert_eq!(
            r.spread.iter().map(Vec::len).sum::<usize>(),
            2 * (1 + 2 + 2)
        );
        assert_eq!(r.resilience.len(), 2 + 4);
        let md = markdown(&p, &r);
        assert!(md.contains("| tunlb `mh` (Maglev) | 503 |"), "{md}");
        assert!(md.contains("| 1 (2.0 %) |"), "{md}");
        assert!(md.contains("| 5003 |"), "{md}");
    }
}

//! The Maglev paper's consistent-hashing evaluation (Eisenbud et al., NSDI 2016, §5.3, Figures
//! 11 and 12) with tunlb's `mh` table builder, next to Karger and Rendezvous hashing: balance
//! of one table, entries changed when k of 1,000 backends fail (200 repetitions), and the
//! table's build time (docs/scale-out.md, "Against the Maglev paper").
//!
//! ```text
//! cargo run --release --features sim --example maglev_paper [-- REPS [CHECK_REPS [THREADS]]]
//! ```
//!
//! Defaults: the paper's 200 repetitions for `mh`, 5 for the check that Karger and Rendezvous
//! move only the failed backends' entries, one thread per core. Progress lines go to stderr,
//! the Markdown tables to stdout.

use tunlb::sim::maglev_paper::{markdown, run, PaperParams};

fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: maglev_paper [REPS [CHECK_REPS [THREADS]]]";
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{USAGE}: {e}"))?;
    anyhow::ensure!(args.len() <= 3, USAGE);
    let mut p = PaperParams::paper();
    for (i, &v) in args.iter().enumerate() {
        match i {
            0 => p.reps = v.max(1),
            1 => p.check_reps = v.max(1),
            _ => p.threads = v.max(1),
        }
    }
    eprintln!(
        "maglev_paper: {} backends, M = {:?}, k = {:?}, {} repetitions ({} for the check), {} threads",
        p.backends, p.table_sizes, p.failures, p.reps, p.check_reps, p.threads
    );
    let started = std::time::Instant::now();
    let report = run(&p, &mut |line| eprintln!("{line}"));
    eprintln!(
        "maglev_paper: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    print!("{}", markdown(&p, &report));
    println!(
        "\nTotal wall time {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

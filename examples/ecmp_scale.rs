//! Issue 14 at internet scale: 100 directors behind one ECMP route, 1,000 real servers, 10⁶ TCP
//! flows through the director cores of the in-memory simulator; prints, for each change (a
//! director, a real server, a tenth of the real servers removed or added), the fraction of
//! flows that change director and real server, as the Markdown table of docs/scale-out.md.
//!
//! ```text
//! cargo run --release --features sim --example ecmp_scale [-- [--second-chance] DIRECTORS SERVERS FLOWS [M [SEED]]]
//! ```
//!
//! `--second-chance` runs only the changes where flows move between directors after a server
//! change, with second chance on (GUE; the agents forward to the previous server).
//!
//! Progress lines go to stderr, the table to stdout.

use tunlb::sim::scale::{markdown, run, run_change_with, Change, ScaleParams};

fn main() -> anyhow::Result<()> {
    let mut second_chance = false;
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| {
            let flag = a == "--second-chance";
            second_chance |= flag;
            !flag
        })
        .map(|a| a.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow::anyhow!("usage: ecmp_scale [DIRECTORS SERVERS FLOWS [M [SEED]]]: {e}")
        })?;
    let mut p = ScaleParams::INTERNET;
    anyhow::ensure!(
        args.len() <= 5,
        "usage: ecmp_scale [DIRECTORS SERVERS FLOWS [M [SEED]]]"
    );
    for (i, &v) in args.iter().enumerate() {
        match i {
            0 => p.directors = v as usize,
            1 => p.servers = v as usize,
            2 => p.flows = v as usize,
            3 => p.table_size = v as u32,
            _ => p.seed = v,
        }
    }
    anyhow::ensure!(
        tunlb::director::sched::is_valid_mh_table_size(p.table_size),
        "M = {} is not a prime up to {}",
        p.table_size,
        tunlb::director::sched::MAX_MH_TABLE_SIZE
    );
    eprintln!(
        "ecmp_scale: {} directors, {} real servers, {} flows, M = {}",
        p.directors, p.servers, p.flows, p.table_size
    );
    let started = std::time::Instant::now();
    let mut progress = |line: String| eprintln!("{line}");
    let outcomes = if second_chance {
        eprintln!(
            "ecmp_scale: second chance on: the server changes followed by a director leaving"
        );
        Change::all(&p)
            .into_iter()
            .filter(|c| {
                matches!(
                    c,
                    Change::RemoveServersThenDirector(_) | Change::AddServersThenDirector(_)
                )
            })
            .map(|c| run_change_with(&p, c, true, &mut progress))
            .collect()
    } else {
        run(&p, &mut progress)
    };
    eprintln!(
        "ecmp_scale: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    print!("{}", markdown(&p, &outcomes));
    if second_chance {
        for o in &outcomes {
            println!(
                "{:?}: {} segments forwarded by an agent to the second choice",
                o.change, o.forwarded
            );
        }
    }
    Ok(())
}

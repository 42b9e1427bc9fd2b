//! Replays every committed fuzz input, `fuzz/corpus/<target>/*`, through the same checks the
//! fuzz target runs (`tunlb::fuzzing`), so a regression on a saved input fails `cargo test`.
//! A target without a corpus folder, an empty folder, or a folder or `fuzz/fuzz_targets/` file
//! without a target fails too. The targets that run the director core get the etherparse
//! oracle (`src/fuzzing/oracle.rs`, compiled here: etherparse is a dev-dependency, never in the
//! library's normal build), so a saved input whose emitted packets it refuses fails as well.

use std::collections::BTreeSet;
use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use tunlb::fuzzing::{Target, ORACLE_TARGETS, TARGETS};

#[path = "../src/fuzzing/oracle.rs"]
#[allow(dead_code)]
mod oracle;

/// A target's body ready to run on an input.
type Body = Box<dyn Fn(&[u8]) + std::panic::RefUnwindSafe>;

/// Every target by name with its body, the oracle ones given the etherparse oracle.
fn all_targets() -> Vec<(&'static str, Body)> {
    let plain = TARGETS
        .iter()
        .map(|&(name, run): &(&str, Target)| (name, Box::new(run) as Body));
    let checked = ORACLE_TARGETS.iter().map(|&(name, run)| {
        let f = move |data: &[u8]| run(data, oracle::check_ipv4);
        (name, Box::new(f) as Body)
    });
    plain.chain(checked).collect()
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The names in `dir` (hidden files skipped: git ignores them in the corpora), sorted.
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.starts_with('.'))
        .collect()
}

#[test]
fn every_corpus_input_passes_its_target() {
    let mut failed = Vec::new();
    for (target, run) in all_targets() {
        let dir = fuzz_dir().join("corpus").join(target);
        assert!(dir.is_dir(), "{target}: no corpus folder {}", dir.display());
        let inputs = names(&dir);
        assert!(
            !inputs.is_empty(),
            "{target}: empty corpus {}",
            dir.display()
        );
        for name in &inputs {
            let path = dir.join(name);
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if panic::catch_unwind(|| run(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
        println!("{target}: replayed {} inputs", inputs.len());
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their target:\n{}",
        failed.join("\n")
    );
}

#[test]
fn targets_corpora_and_fuzz_binaries_match() {
    let targets: BTreeSet<String> = all_targets()
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        targets.len(),
        TARGETS.len() + ORACLE_TARGETS.len(),
        "a name in both TARGETS and ORACLE_TARGETS"
    );
    let corpora = names(&fuzz_dir().join("corpus"));
    assert_eq!(
        corpora, targets,
        "fuzz/corpus/ folders vs tunlb::fuzzing::TARGETS"
    );
    let binaries: BTreeSet<String> = names(&fuzz_dir().join("fuzz_targets"))
        .into_iter()
        .map(|file| file.strip_suffix(".rs").unwrap_or(&file).to_string())
        .collect();
    assert_eq!(
        binaries, targets,
        "fuzz/fuzz_targets/ files vs tunlb::fuzzing::TARGETS"
    );
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in &targets {
        let bin = format!("name = \"{target}\"\npath = \"fuzz_targets/{target}.rs\"");
        assert!(
            manifest.contains(&bin),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
    }
}

//! The binary's logger as a user meets it: plain lines by default, journald priority prefixes
//! only when stderr is the journal stream `JOURNAL_STREAM` names, `-q` silencing.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const TUNLB: &str = env!("CARGO_BIN_EXE_tunlb");

/// Runs `tunlb ARGS check-config /nonexistent` (an error at startup) with stderr into a file,
/// `JOURNAL_STREAM` set to `journal(file)` when given; returns the exit code and stderr.
fn run(args: &[&str], journal: Option<fn(&File) -> String>) -> (i32, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "tunlb-logging-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::create(&path).unwrap();
    let mut cmd = Command::new(TUNLB);
    cmd.args(args)
        .args(["check-config", "/nonexistent/tunlb.conf"])
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(file.try_clone().unwrap());
    if let Some(name) = journal {
        cmd.env("JOURNAL_STREAM", name(&file));
    }
    let code = cmd.status().unwrap().code().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    (code, text)
}

fn same_file(f: &File) -> String {
    let m = f.metadata().unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

fn other_file(f: &File) -> String {
    let m = f.metadata().unwrap();
    format!("{}:{}", m.dev(), m.ino() + 1)
}

#[test]
fn errors_are_plain_lines_off_the_journal() {
    let (code, text) = run(&[], None);
    assert_eq!(code, 1);
    assert!(
        text.starts_with("tunlb: /nonexistent/tunlb.conf"),
        "{text:?}"
    );
    let (_, text) = run(&[], Some(other_file));
    assert!(
        text.starts_with("tunlb: "),
        "another stream named: {text:?}"
    );
}

#[test]
fn errors_carry_priority_3_when_stderr_is_the_journal() {
    let (code, text) = run(&[], Some(same_file));
    assert_eq!(code, 1);
    assert!(
        text.starts_with("<3>tunlb: /nonexistent/tunlb.conf"),
        "{text:?}"
    );
    assert!(text.lines().all(|l| l.starts_with("<3>")), "{text:?}");
}

#[test]
fn quiet_flags_silence_levels_in_turn() {
    let (_, text) = run(&["-qq"], None);
    assert!(text.starts_with("tunlb: "), "-qq keeps errors: {text:?}");
    let (code, text) = run(&["-qqq"], None);
    assert_eq!((code, text.as_str()), (1, ""), "-qqq: nothing");
}

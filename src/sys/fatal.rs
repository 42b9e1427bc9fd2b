//! A failure that must end the daemon: a thread that panicked, or a worker that quit.
//!
//! A panicking worker thread would otherwise die alone: its TUN queue would never be read again
//! while the process looks alive to its supervisor. [`install_panic_hook`] makes every panic
//! (in any thread) record why ([`raise`]) and ask the run loop to stop, as SIGTERM does
//! ([`signal::notify`]); the daemon then stops the other threads, restores the host and exits
//! with a non-zero status naming the thread ([`reason`]), so a supervisor restarts it.
//!
//! A panic in the main thread itself unwinds it (the host changes it owns are restored on the
//! way out when nothing else holds them); anything left is in the journal
//! ([`crate::sys::journal`]) for the next start.

use std::sync::Mutex;

use super::signal::{self, Signal};

/// The first fatal failure, if any.
static REASON: Mutex<Option<String>> = Mutex::new(None);

/// Records a fatal failure (the first one wins) and asks the run loop to stop.
pub fn raise(reason: String) {
    record(reason);
    signal::notify(Signal::Terminate);
}

/// Keeps `reason` unless one is recorded already.
fn record(reason: String) {
    let mut r = REASON.lock().unwrap_or_else(|e| e.into_inner());
    if r.is_none() {
        *r = Some(reason);
    }
}

/// Why the process must fail, once [`raise`] was called.
pub fn reason() -> Option<String> {
    REASON.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Installs a panic hook (after the default one, which prints the message and location) that
/// logs `<prefix> thread <name> panicked: <message>; stopping` and [`raise`]s it.
pub fn install_panic_hook(prefix: &'static str) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let why = describe(
            std::thread::current().name().unwrap_or("unnamed"),
            info.payload(),
            info.location().map(ToString::to_string),
        );
        log::error!("{prefix} {why}; stopping");
        raise(why);
    }));
}

/// `thread NAME panicked at FILE:LINE: MESSAGE`.
fn describe(
    thread: &str,
    payload: &(dyn std::any::Any + Send),
    location: Option<String>,
) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    match location {
        Some(at) => format!("thread {thread} panicked at {at}: {msg}"),
        None => format!("thread {thread} panicked: {msg}"),
    }
}

/// Tests only (debug builds): panics when `TUNLB_TEST_PANIC` is `<what>` (at once) or
/// `<what>:<file>` (once that file exists, looked for every 20 ms), so a namespace test can
/// watch a worker die. Compiled out of release builds.
#[cfg(debug_assertions)]
pub fn test_trigger(what: &str) {
    let Ok(v) = std::env::var("TUNLB_TEST_PANIC") else {
        return;
    };
    let (name, file) = match v.split_once(':') {
        Some((name, file)) => (name, Some(file)),
        None => (v.as_str(), None),
    };
    if name != what {
        return;
    }
    if let Some(file) = file {
        while !std::path::Path::new(file).exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    panic!("TUNLB_TEST_PANIC asked {what} to panic");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_described_with_its_thread_place_and_message() {
        let p: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(
            describe("tunlb-worker-1", p.as_ref(), Some("src/x.rs:3:5".into())),
            "thread tunlb-worker-1 panicked at src/x.rs:3:5: boom"
        );
        let p: Box<dyn std::any::Any + Send> = Box::new(format!("index {}", 7));
        assert_eq!(
            describe("w", p.as_ref(), None),
            "thread w panicked: index 7"
        );
        let p: Box<dyn std::any::Any + Send> = Box::new(3u8);
        assert!(describe("w", p.as_ref(), None).ends_with("(no message)"));
    }

    #[test]
    fn the_first_reason_is_kept() {
        // `raise` also marks SIGTERM pending (signal.rs's tests cover `notify`); calling it
        // here would stop other tests' loops, so only the recording is tested.
        record("thread a panicked: first".into());
        record("thread b panicked: second".into());
        assert_eq!(reason().as_deref(), Some("thread a panicked: first"));
    }
}

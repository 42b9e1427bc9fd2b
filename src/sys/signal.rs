//! SIGINT, SIGTERM and SIGHUP as a flag a run loop looks at, so it can leave its loop, undo its
//! network changes and exit 0.
//!
//! [`install`] sets handlers that only record the signal in an atomic bit set and write one byte
//! to a self-pipe (both async-signal-safe). Worker loops call [`pending`] between batches (their
//! `poll` timeouts bound how long that takes); a thread that sleeps in `poll` can add
//! [`wake_fd`] to its set to wake at once.
//!
//! SIGINT and SIGTERM are handled once: their handlers reset to the default action after the first
//! delivery, so a second Ctrl-C kills a process whose clean-up hangs.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// A signal that asks the process to stop (or, for SIGHUP, to stop or reload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP.
    Hangup,
}

impl Signal {
    /// Checked in this order when several are pending.
    const ALL: [Signal; 3] = [Signal::Terminate, Signal::Interrupt, Signal::Hangup];

    /// The signal number.
    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Hangup => libc::SIGHUP,
        }
    }

    /// The usual name, `SIGINT` etc.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    fn bit(self) -> u64 {
        1 << self.number()
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bit `n` set: signal `n` arrived and was not taken yet.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// Write end of the self-pipe, -1 before `install`.
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Read end of the self-pipe, set once by `install`.
static WAKE_READ: OnceLock<RawFd> = OnceLock::new();

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: reading the thread's errno location is async-signal-safe; the handler restores
    // errno before returning so the interrupted code sees its own value.
    let saved = unsafe { *libc::__errno_location() };
    if (0..64).contains(&sig) {
        PENDING.fetch_or(1 << sig, Ordering::SeqCst);
    }
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = [sig as u8];
        // SAFETY: write(2) is async-signal-safe; `byte` is a valid 1-byte buffer. A full pipe
        // (EAGAIN) is fine: the reader is already due to wake.
        unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = saved };
}

/// Installs the handlers for SIGINT, SIGTERM and SIGHUP (idempotent).
pub fn install() -> io::Result<()> {
    if WAKE_READ.get().is_some() {
        return Ok(());
    }
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if WAKE_READ.set(fds[0]).is_err() {
        // Another thread installed meanwhile: keep its pipe.
        for fd in fds {
            // SAFETY: both descriptors were just opened here and are closed once.
            unsafe { libc::close(fd) };
        }
        return Ok(());
    }
    WAKE_WRITE.store(fds[1], Ordering::SeqCst);
    for sig in Signal::ALL {
        // SAFETY: all-zero is a valid sigaction (empty mask, no flags) before we fill it.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        if sig != Signal::Hangup {
            action.sa_flags |= libc::SA_RESETHAND;
        }
        // SAFETY: `action.sa_mask` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised and the handler only does async-signal-safe work.
        if unsafe { libc::sigaction(sig.number(), &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The first pending signal (SIGTERM, then SIGINT, then SIGHUP), left pending.
pub fn pending() -> Option<Signal> {
    let bits = PENDING.load(Ordering::SeqCst);
    Signal::ALL.into_iter().find(|s| bits & s.bit() != 0)
}

/// Takes the first pending signal (same order as [`pending`]) and drains the wake pipe.
pub fn take() -> Option<Signal> {
    drain_wake_pipe();
    let sig = pending()?;
    PENDING.fetch_and(!sig.bit(), Ordering::SeqCst);
    Some(sig)
}

/// Marks `sig` as pending from inside the process, as if it had arrived: how one worker that
/// fails asks every other loop to stop.
pub fn notify(sig: Signal) {
    PENDING.fetch_or(sig.bit(), Ordering::SeqCst);
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: writing one byte from a valid buffer into our own non-blocking pipe.
        unsafe { libc::write(fd, [0u8].as_ptr().cast(), 1) };
    }
}

/// A descriptor that becomes readable when a signal arrives (after [`install`]); [`take`]
/// drains it.
pub fn wake_fd() -> Option<RawFd> {
    WAKE_READ.get().copied()
}

fn drain_wake_pipe() {
    let Some(&fd) = WAKE_READ.get() else { return };
    let mut buf = [0u8; 64];
    // SAFETY: reading into a valid local buffer from our own non-blocking pipe, until empty.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_raised_sighup_becomes_pending_and_wakes_the_pipe() {
        install().unwrap();
        install().unwrap();
        // SAFETY: raise(2) delivers SIGHUP to this thread; our handler is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
        assert_eq!(pending(), Some(Signal::Hangup));
        let fd = wake_fd().unwrap();
        assert!(super::super::poll_readable(fd, Some(Duration::from_millis(100))).unwrap());
        assert_eq!(take(), Some(Signal::Hangup));
        assert_eq!(pending(), None);
        assert!(!super::super::poll_readable(fd, Some(Duration::ZERO)).unwrap());
        notify(Signal::Terminate);
        assert_eq!(take(), Some(Signal::Terminate));
        assert_eq!(take(), None);
    }
}

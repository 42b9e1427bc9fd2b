//! The journal of host changes: what a daemon changed on the host, written down (and fsync'd)
//! *before* the change is made, so that whoever starts next can undo what a killed process
//! left behind.
//!
//! A daemon that changes the host (the director, an agent) opens its journal in the runtime
//! directory ([`crate::sys::rundir`]: root-only, one file per network namespace) and holds an
//! exclusive `flock` on it while it runs; the kernel drops the lock when the process dies, however
//! it dies. [`Journal::open`] therefore tells a live owner (the lock is taken: refuse to start)
//! from a dead one (the lock is free: the records it left are handed back to be undone).
//!
//! The file is text, one record per line, written whole with one `write` and fsync'd:
//!
//! ```text
//! # tunlb director journal: host changes to undo if this process dies (pid 4242)
//! +1 sysctl net/ipv4/ip_forward 0
//! +2 route-add 10.100.0.100/32 tunlb0
//! -2
//! ```
//!
//! `+N RECORD` is a change about to be made, `-N` cancels record N (the change turned out to be
//! in place already, it failed, or it was itself undone). Only lines ending in a newline count,
//! so a record torn by a crash in the middle of its `write` (whose change was therefore never
//! made) is ignored. What a record means is up to the caller
//! ([`NetChanges`](crate::sys::netcfg::NetChanges)); this module only keeps them.
//!
//! The file is rewritten (a new file, locked, fsync'd, renamed over the old one) when it has
//! grown to several times the records still live, and emptied after a clean restore; the
//! daemon removes it when it exits with nothing left to undo.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::rundir;

/// Why a journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another live process holds the journal's lock: a daemon of the same kind already runs in
    /// this network namespace.
    #[error(
        "{}: another tunlb {role}{} holds this journal: one is still running in this network \
         namespace (stop it first)",
        path.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy {
        /// The journal.
        path: PathBuf,
        /// Which kind of daemon (`director`, `realserver`).
        role: String,
        /// The pid its header names, if readable.
        pid: Option<u32>,
    },
    /// The file is not something this process may trust (a symlink, not a regular file, owned
    /// by another user, readable or writable by others).
    #[error("{}: {why}; refusing to use it", path.display())]
    Unsafe {
        /// The journal.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file operation failed.
    #[error("journal {}: {error}", path.display())]
    Io {
        /// The journal.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

/// What a dead process left in a journal: its live records, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leftover {
    /// The pid the journal's header names (the process that wrote it), if any.
    pub pid: Option<u32>,
    /// `(sequence number, record)` of every record not cancelled, in the order written.
    pub records: Vec<(u64, String)>,
    /// Lines that were neither a record, a cancellation nor a comment (skipped).
    pub unreadable: usize,
}

/// An open, locked journal (see the module docs).
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    role: String,
    next_seq: u64,
    /// Records (and cancellations) in the file, to decide when to rewrite it.
    lines: usize,
    /// Records not cancelled.
    live: usize,
}

/// How many lines beyond twice the live records trigger a rewrite.
const REWRITE_SLACK: usize = 64;

impl Journal {
    /// The journal of a `role` daemon in this network namespace:
    /// `<run_dir>/<stem>.<netns id>` (see [`rundir::netns_file`]).
    pub fn path_for(stem: &str) -> Result<PathBuf, JournalError> {
        rundir::netns_file(stem).map_err(|error| JournalError::Io {
            path: PathBuf::from(rundir::RUN_DIR).join(stem),
            error,
        })
    }

    /// Opens (creating it `0600` if missing) and locks the journal at `path` for a `role`
    /// daemon. Refuses with [`JournalError::Busy`] if a live process holds it, and returns the
    /// records a dead one left (an empty [`Leftover`] for a new file). The records stay in the
    /// file until [`rewrite`](Journal::rewrite) replaces them, so a crash while undoing them
    /// loses nothing.
    pub fn open(path: &Path, role: &str) -> Result<(Journal, Leftover), JournalError> {
        let io_err = |error| JournalError::Io {
            path: path.to_owned(),
            error,
        };
        // The file can be unlinked (by its owner exiting cleanly) between our open and our
        // lock: then the lock is on a file nobody will look at, so check and try again.
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::ELOOP) => JournalError::Unsafe {
                        path: path.to_owned(),
                        why: "a symlink".into(),
                    },
                    _ => io_err(e),
                })?;
            let meta = file.metadata().map_err(io_err)?;
            check_trusted(path, &meta)?;
            if !try_lock(&file).map_err(io_err)? {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(JournalError::Busy {
                    path: path.to_owned(),
                    role: role.to_owned(),
                    pid: parse(&text).pid,
                });
            }
            match fs::symlink_metadata(path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(e)),
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_err)?;
            let left = parse(&String::from_utf8_lossy(&bytes));
            let max_seq = left.records.iter().map(|(s, _)| *s).max().unwrap_or(0);
            let journal = Journal {
                file,
                path: path.to_owned(),
                role: role.to_owned(),
                next_seq: max_seq + 1,
                lines: left.records.len(),
                live: left.records.len(),
            };
            return Ok((journal, left));
        }
        Err(io_err(io::Error::other(
            "the file kept being replaced while opening it",
        )))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records are live (written and not cancelled).
    pub fn live(&self) -> usize {
        self.live
    }

    /// Whether the file has grown enough beyond its live records to be worth a
    /// [`rewrite`](Journal::rewrite).
    pub fn wants_rewrite(&self) -> bool {
        self.lines > 2 * self.live + REWRITE_SLACK
    }

    /// Appends a record and fsyncs it; returns its sequence number (for
    /// [`cancel`](Journal::cancel)). A record must be one line.
    pub fn append(&mut self, record: &str) -> Result<u64, JournalError> {
        debug_assert!(!record.contains('\n'));
        let seq = self.next_seq;
        self.write_line(&format!("+{seq} {record}\n"))?;
        self.next_seq += 1;
        self.live += 1;
        Ok(seq)
    }

    /// Cancels record `seq` (fsync'd).
    pub fn cancel(&mut self, seq: u64) -> Result<(), JournalError> {
        self.write_line(&format!("-{seq}\n"))?;
        self.live = self.live.saturating_sub(1);
        Ok(())
    }

    fn write_line(&mut self, line: &str) -> Result<(), JournalError> {
        let r = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        r.map_err(|error| JournalError::Io {
            path: self.path.clone(),
            error,
        })?;
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file's content with these records (oldest first) under a fresh header
    /// naming this process, and returns their new sequence numbers. Atomic: a new file is
    /// written, fsync'd and locked, then renamed over the old one, so a crash leaves either
    /// the old records or the new ones, and the lock is never let go in between.
    pub fn rewrite(&mut self, records: &[String]) -> Result<Vec<u64>, JournalError> {
        let io_err = |error| JournalError::Io {
            path: self.path.clone(),
            error,
        };
        let mut tmp_name = self.path.clone().into_os_string();
        tmp_name.push(".new");
        let tmp = PathBuf::from(tmp_name);
        // Only the holder of the journal's lock writes its `.new` file: one left over is from
        // a rewrite a crash interrupted.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_err)?;
        let mut text = format!(
            "# tunlb {} journal: host changes to undo if this process dies (pid {})\n",
            self.role,
            std::process::id()
        );
        let mut seqs = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            debug_assert!(!r.contains('\n'));
            let seq = i as u64 + 1;
            text.push_str(&format!("+{seq} {r}\n"));
            seqs.push(seq);
        }
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| try_lock(&file))
            .and_then(|locked| {
                if locked {
                    Ok(())
                } else {
                    Err(io::Error::other("cannot lock the new journal file"))
                }
            })
            .and_then(|()| fs::rename(&tmp, &self.path))
            .and_then(|()| sync_dir(&self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(e));
        }
        // The old file (and its lock) goes when its descriptor closes here.
        self.file = file;
        self.next_seq = records.len() as u64 + 1;
        self.lines = records.len();
        self.live = records.len();
        Ok(seqs)
    }
}

#[cfg(test)]
impl Journal {
    /// Tests: closes the file as a killed process would, keeping it and its records.
    pub(crate) fn crash(mut self) {
        self.live = usize::MAX;
    }
}

impl Drop for Journal {
    /// Removes the file when nothing in it is left to undo (the daemon restored everything);
    /// keeps it otherwise, for the next start or `--cleanup`.
    fn drop(&mut self) {
        if self.live == 0 {
            // Still locked here: nobody else can be using it.
            if let Err(e) = fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("tunlb: removing journal {}: {e}", self.path.display());
                }
            }
        }
    }
}

/// Refuses a journal file that is not a regular file of ours, private to us.
fn check_trusted(path: &Path, meta: &fs::Metadata) -> Result<(), JournalError> {
    let why = if !meta.file_type().is_file() {
        Some("not a regular file".to_owned())
    } else if meta.uid() != rundir::effective_uid() {
        Some(format!(
            "owned by uid {}, not {}",
            meta.uid(),
            rundir::effective_uid()
        ))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "mode {:o} lets others read or write it",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match why {
        Some(why) => Err(JournalError::Unsafe {
            path: path.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: Ok(false) if another open file description holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor this `File` owns and keeps open; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// fsyncs the directory holding `path`, so a rename in it is durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Reads a journal's text: the header's pid and the live records. Lines without their final
/// newline (a write a crash cut short) are ignored.
pub fn parse(text: &str) -> Leftover {
    let mut records = BTreeMap::new();
    let mut left = Leftover::default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end + 1],
        None => "",
    };
    for line in complete.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(pid) = comment
                .rsplit_once("(pid ")
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .and_then(|p| p.parse().ok())
            {
                left.pid = Some(pid);
            }
        } else if let Some(rest) = line.strip_prefix('+') {
            match rest.split_once(' ').map(|(s, r)| (s.parse::<u64>(), r)) {
                Some((Ok(seq), record)) if !record.is_empty() => {
                    records.insert(seq, record.to_owned());
                }
                _ => left.unreadable += 1,
            }
        } else if let Some(seq) = line.strip_prefix('-') {
            match seq.parse::<u64>() {
                Ok(seq) => {
                    records.remove(&seq);
                }
                Err(_) => left.unreadable += 1,
            }
        } else if !line.is_empty() {
            left.unreadable += 1;
        }
    }
    left.records = records.into_iter().collect();
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A private directory for one test, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("tunlb-journal-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir(&d).unwrap();
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
            Dir(d)
        }
        fn file(&self) -> PathBuf {
            self.0.join("director.journal.1")
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn parse_keeps_live_records_in_order_and_skips_torn_lines() {
        let text = "# tunlb director journal: host changes to undo if this process dies (pid 77)\n\
                    +1 sysctl net/ipv4/ip_forward 0\n\
                    +2 route-add 10.0.0.1/32 tunlb0\n\
                    +3 addr-add 10.0.0.1/32 lo\n\
                    -2\n\
                    garbage\n\
                    +x nope\n\
                    +4 route-add 10.0.0.2/32 tun";
        let left = parse(text);
        assert_eq!(left.pid, Some(77));
        assert_eq!(
            left.records,
            [
                (1, "sysctl net/ipv4/ip_forward 0".to_owned()),
                (3, "addr-add 10.0.0.1/32 lo".to_owned())
            ]
        );
        assert_eq!(left.unreadable, 2);
        assert_eq!(parse(""), Leftover::default());
        assert_eq!(parse("+1 torn without newline").records, []);
    }

    #[test]
    fn a_second_opener_is_refused_while_the_first_holds_the_lock() {
        let dir = Dir::new("busy");
        let (mut j, left) = Journal::open(&dir.file(), "director").unwrap();
        assert_eq!(left, Leftover::default());
        j.rewrite(&[]).unwrap();
        let err = Journal::open(&dir.file(), "director").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, JournalError::Busy { pid: Some(p), .. } if p == std::process::id()));
        assert!(msg.contains("another tunlb director"), "{msg}");
        assert!(msg.contains("still running"), "{msg}");
        drop(j);
        // Clean exit with nothing live: the file is gone and the next open starts afresh.
        assert!(!dir.file().exists());
        let (_j, left) = Journal::open(&dir.file(), "director").unwrap();
        assert!(left.records.is_empty());
    }

    #[test]
    fn records_survive_a_dead_owner_and_cancels_and_rewrites_apply() {
        let dir = Dir::new("leftover");
        let (mut j, _) = Journal::open(&dir.file(), "realserver").unwrap();
        j.rewrite(&[]).unwrap();
        let a = j.append("sysctl net/ipv4/conf/all/arp_ignore 0").unwrap();
        let b = j.append("addr-add 10.0.0.1/32 lo").unwrap();
        let c = j.append("route-add 10.0.0.2/32 tun0").unwrap();
        j.cancel(b).unwrap();
        assert_eq!(j.live(), 2);
        // A process that dies keeps its records: leave without Drop's clean-up (the leaked
        // descriptor keeps the lock in this test process, so read the file directly).
        std::mem::forget(j);
        let text = fs::read_to_string(dir.file()).unwrap();
        let left = parse(&text);
        assert_eq!(
            left.records,
            [
                (a, "sysctl net/ipv4/conf/all/arp_ignore 0".to_owned()),
                (c, "route-add 10.0.0.2/32 tun0".to_owned())
            ]
        );
        assert_eq!(left.pid, Some(std::process::id()));
    }

    #[test]
    fn reopening_after_the_owner_closed_returns_its_records_and_rewrite_compacts() {
        let dir = Dir::new("reopen");
        {
            let (mut j, _) = Journal::open(&dir.file(), "director").unwrap();
            j.rewrite(&[]).unwrap();
            for i in 0..100 {
                let s = j.append(&format!("route-add 10.0.0.{i}/32 tun0")).unwrap();
                if i % 10 != 0 {
                    j.cancel(s).unwrap();
                }
            }
            assert!(j.wants_rewrite());
            let live: Vec<String> = (0..10)
                .map(|i| format!("route-add 10.0.0.{}/32 tun0", i * 10))
                .collect();
            assert_eq!(j.rewrite(&live).unwrap(), (1..=10).collect::<Vec<_>>());
            assert!(!j.wants_rewrite());
            j.append("sysctl net/ipv4/ip_forward 0").unwrap();
            // Closed with records live: the file stays (as after SIGKILL).
        }
        let (mut j, left) = Journal::open(&dir.file(), "director").unwrap();
        assert_eq!(left.records.len(), 11);
        assert_eq!(
            left.records[0],
            (1, "route-add 10.0.0.0/32 tun0".to_owned())
        );
        assert_eq!(
            left.records[10],
            (11, "sysctl net/ipv4/ip_forward 0".to_owned())
        );
        assert!(!PathBuf::from(format!("{}.new", dir.file().display())).exists());
        let mode = fs::metadata(dir.file()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // New appends follow the old sequence numbers, so a cancel never hits an old record.
        assert_eq!(j.append("x y").unwrap(), 12);
        j.rewrite(&[]).unwrap();
        drop(j);
        assert!(!dir.file().exists());
    }

    #[test]
    fn untrusted_files_are_refused() {
        let dir = Dir::new("unsafe");
        fs::write(dir.file(), "").unwrap();
        fs::set_permissions(dir.file(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = Journal::open(&dir.file(), "director").unwrap_err();
        assert!(err.to_string().contains("lets others read"), "{err}");
        fs::remove_file(dir.file()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.file()).unwrap();
        let err = Journal::open(&dir.file(), "director").unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}

//! The control socket: a Unix stream socket file in the root-only runtime directory, one per
//! network namespace.
//!
//! The director listens on `/run/tunlb/director.sock.<netns id>` ([`socket_path`]; the id is
//! the network namespace's cookie, see [`rundir`](crate::sys::rundir)), so a director started in
//! namespace NS has "its" socket and `ip netns exec NS tunlb adm` reaches that one with no flag,
//! as ipvsadm reaches the IPVS table of its namespace.
//!
//! Three locks keep everyone else out:
//! - **The directory.** `/run/tunlb` is created `0700` and owned by root, and the director
//!   refuses one that is a symlink, owned by someone else or writable by group or others: no
//!   unprivileged user can create, replace or even reach the socket (an abstract name, which
//!   tunlb used before, can be bound by any local user before the director starts).
//! - **The server checks the client** with `SO_PEERCRED` and answers everyone but root with
//!   [`Response::PermissionDenied`], then closes the connection without reading anything.
//! - **The client checks the server** with `SO_PEERCRED` before it sends anything: the
//!   process that listens must be root (or the client's own user when the client is not root),
//!   otherwise [`ClientError::Impostor`]. `--save-config` therefore never writes what a
//!   squatter answers.
//!
//! A director that dies leaves its socket file behind: the next one removes it, but only after
//! checking that it is a socket and that nothing answers on it; if a director (a root process)
//! answers, the new one refuses to start ([`BindError::Running`]); a socket served by anyone
//! else is removed and taken over. A clean exit removes the file ([`Server`]).
//!
//! Every request line must arrive whole within [`REQUEST_DEADLINE`] (a client that sends a byte
//! at a time, or nothing, loses its connection), lines are at most
//! [`MAX_LINE`](crate::control::proto::MAX_LINE) bytes, an answer must be taken within
//! [`WRITE_DEADLINE`], and at most [`MAX_CLIENTS`] connections are served at once.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::control::format::ConnEntry;
use crate::control::proto::{Request, Response, MAX_LINE};
use crate::sys::cred::{peer_cred, PeerCred};
use crate::sys::rundir;

/// The socket's file name in the runtime directory, before the namespace id:
/// `director.sock.<netns id in hex>`.
pub const SOCKET_STEM: &str = "director.sock";

/// How long a client waits for each read or write of an answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server waits for a whole request line, counted from the connection or the
/// previous answer: an idle or trickling client is disconnected after it.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long the server gives a client to take a whole answer.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// How long the server spends telling a refused client why, before closing.
const DENY_DEADLINE: Duration = Duration::from_secs(1);

/// The server's deadlines ([`REQUEST_DEADLINE`], [`WRITE_DEADLINE`]; shorter in tests).
#[derive(Clone, Copy, Debug)]
struct Limits {
    request: Duration,
    write: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request: REQUEST_DEADLINE,
            write: WRITE_DEADLINE,
        }
    }
}

/// The most clients served at once; more are answered "too many clients".
pub const MAX_CLIENTS: usize = 16;

/// What the director does with a request. Each client connection has its own thread, so the
/// handler may run concurrently for different clients and must serialize edits itself (a
/// mutex around the table).
pub type Handler = Arc<dyn Fn(Request) -> Answer + Send + Sync>;

/// A handler's answer to one request.
pub enum Answer {
    /// One line.
    One(Response),
    /// Lines written one at a time as the iterator makes them (the streamed `-L -c`), each
    /// within [`WRITE_DEADLINE`]; the last one ends the answer. The server holds one line at
    /// a time, never the whole answer.
    Stream(Box<dyn Iterator<Item = Response> + Send>),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Answer {
        Answer::One(r)
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the control socket of this network namespace.
    #[error("no director is running in this network namespace (start one with: tunlb director)")]
    NotRunning,
    /// The socket exists but this user may not reach it (the runtime directory is root's).
    #[error("permission denied on {}: only root may talk to the director", path.display())]
    NotPermitted {
        /// The control socket.
        path: PathBuf,
    },
    /// The process listening on the control socket is not root (nor this user): something
    /// else took the socket, and nothing was sent to it.
    #[error(
        "refusing to talk to {}: it is served by uid {uid} (pid {pid}), not by root; \
         something other than the director holds the control socket",
        path.display()
    )]
    Impostor {
        /// The control socket.
        path: PathBuf,
        /// The listening process's effective uid, as the kernel recorded it.
        uid: u32,
        /// The listening process's pid.
        pid: i32,
    },
    /// The runtime directory is not one only root can write to.
    #[error("{0}")]
    UnsafeRunDir(io::Error),
    /// The socket failed (connect, read, write, timeout).
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The answer was not a [`Response`].
    #[error("invalid answer from the director: {0}")]
    BadResponse(serde_json::Error),
    /// The director closed the connection without answering.
    #[error("the director closed the connection without answering")]
    Closed,
    /// The director closed the connection in the middle of a streamed answer.
    #[error("the director closed the connection before the end of its answer")]
    Truncated,
}

/// Why the director could not take its control socket.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A director already answers on the socket of this network namespace.
    #[error(
        "a director is already running in this network namespace (it answers on {})",
        path.display()
    )]
    Running {
        /// The control socket.
        path: PathBuf,
    },
    /// Something that is not a socket has the socket's name; it is left alone.
    #[error("{} exists and is not a socket; refusing to remove it", path.display())]
    NotASocket {
        /// The control socket's path.
        path: PathBuf,
    },
    /// The runtime directory is unusable, or binding failed.
    #[error("control socket {}: {source}", path.display())]
    Io {
        /// The control socket's path (or the runtime directory).
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// Only root may talk to the director, as only root may change IPVS.
pub fn authorize(cred: &PeerCred) -> Result<(), Response> {
    if cred.uid == 0 {
        Ok(())
    } else {
        Err(Response::PermissionDenied)
    }
}

/// Whether a client running as `client_euid` trusts a server whose credentials are `server`:
/// root always, and the client's own user (a director a user runs for tests with its own
/// `TUNLB_RUN_DIR`).
pub fn trusted_server(server: &PeerCred, client_euid: u32) -> bool {
    server.uid == 0 || server.uid == client_euid
}

/// The control socket's file name in the runtime directory, for this network namespace.
fn socket_file_name() -> io::Result<String> {
    Ok(format!("{SOCKET_STEM}.{:x}", rundir::netns_id()?))
}

/// Where the control socket of this network namespace is, without creating anything:
/// `<run dir>/director.sock.<netns id>` (the run directory is `/run/tunlb` or `$TUNLB_RUN_DIR`).
pub fn socket_path() -> io::Result<PathBuf> {
    Ok(configured_run_dir().join(socket_file_name()?))
}

fn configured_run_dir() -> PathBuf {
    std::env::var_os(rundir::RUN_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(rundir::RUN_DIR))
}

/// The client's check of the runtime directory: a real directory, owned by root or this user,
/// writable by nobody else (so no one else can have put a socket in it). `Ok(false)` if it does
/// not exist (then no director runs).
fn check_client_dir(dir: &Path, euid: u32) -> Result<bool, ClientError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(ClientError::UnsafeRunDir(io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.display()),
            )))
        }
    };
    let bad = |why: String| {
        Err(ClientError::UnsafeRunDir(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; refusing to look for the control socket there",
                dir.display()
            ),
        )))
    };
    if !meta.file_type().is_dir() {
        return bad("not a directory (a symlink?)".into());
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return bad(format!("owned by uid {}, not root", meta.uid()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return bad("writable by group or others".into());
    }
    Ok(true)
}

/// A bound control socket, not yet served: [`Listener::bind`] claims the namespace's socket
/// early (before the director changes anything on the host), [`Listener::serve`] answers on it.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we bound, so that we only ever remove our own.
    id: (u64, u64),
    limits: Limits,
}

impl Listener {
    /// Binds [`socket_path`] in the runtime directory (created `0700` and checked by
    /// [`rundir::run_dir`]). A stale socket left by a dead director is removed; a live one
    /// makes this fail with [`BindError::Running`].
    pub fn bind() -> Result<Listener, BindError> {
        let dir = rundir::run_dir().map_err(|source| BindError::Io {
            path: configured_run_dir(),
            source,
        })?;
        let name = socket_file_name().map_err(|source| BindError::Io {
            path: dir.clone(),
            source,
        })?;
        Listener::bind_at(&dir.join(name))
    }

    /// [`Listener::bind`] at a given path (tests; the directory is the caller's to check).
    pub fn bind_at(path: &Path) -> Result<Listener, BindError> {
        let io_err = |source| BindError::Io {
            path: path.to_owned(),
            source,
        };
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                remove_stale(path)?;
                UnixListener::bind(path).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        };
        // The directory is root's already; the socket itself is too.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
        Ok(Listener {
            listener,
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
            limits: Limits::default(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests with `handler`: the returned [`Server`]'s thread accepts connections and
    /// starts one thread per client (at most [`MAX_CLIENTS`]); only root is answered.
    pub fn serve(self, handler: Handler) -> io::Result<Server> {
        self.serve_with(handler, authorize)
    }

    /// [`Listener::serve`] with the peer check passed in.
    fn serve_with(
        self,
        handler: Handler,
        check: fn(&PeerCred) -> Result<(), Response>,
    ) -> io::Result<Server> {
        let Listener {
            listener,
            path,
            id,
            limits,
        } = self;
        let thread = std::thread::Builder::new()
            .name("tunlb-control".into())
            .spawn(move || accept_loop(&listener, &handler, check, limits))?;
        Ok(Server {
            path,
            id,
            _thread: thread,
        })
    }
}

/// Removes the socket file at `path` if it is a socket nobody answers on (a dead director's).
fn remove_stale(path: &Path) -> Result<(), BindError> {
    let io_err = |source| BindError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(stream) => {
            let server = peer_cred(&stream).map_err(io_err)?;
            if trusted_server(&server, rundir::effective_uid()) {
                return Err(BindError::Running {
                    path: path.to_owned(),
                });
            }
            // Only root can write here, but if a user's process got a socket in (a directory
            // that was open once), it is no director: take the name back.
            log::warn!(
                "tunlb director: removing the control socket {}: it is served by uid {} (pid {}), \
                 not by a director",
                path.display(),
                server.uid,
                server.pid
            );
            std::fs::remove_file(path).map_err(io_err)
        }
        // A socket this process may not even connect to (without CAP_DAC_OVERRIDE, a socket
        // file owned by another user and not writable by us) is no director's: a director's
        // socket is its own. Take the name back, as for a non-root server.
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied
                && meta.uid() != rundir::effective_uid() =>
        {
            log::warn!(
                "tunlb director: removing the control socket {}: it belongs to uid {}, not to a director",
                path.display(),
                meta.uid()
            );
            std::fs::remove_file(path).map_err(io_err)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::warn!(
                "tunlb director: removing the stale control socket {} (its director is gone)",
                path.display()
            );
            std::fs::remove_file(path).map_err(io_err)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// The running control socket. Dropping it removes the socket file (if it is still ours), so
/// a director that exits cleanly leaves nothing in the runtime directory; the accept thread
/// ends with the process.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    id: (u64, u64),
    _thread: JoinHandle<()>,
}

impl Server {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Takes this namespace's control socket and serves it with `handler` ([`Listener::bind`] then
/// [`Listener::serve`]).
pub fn serve(handler: Handler) -> Result<Server, BindError> {
    let listener = Listener::bind()?;
    let path = listener.path().to_owned();
    listener
        .serve(handler)
        .map_err(|source| BindError::Io { path, source })
}

fn accept_loop(
    listener: &UnixListener,
    handler: &Handler,
    check: fn(&PeerCred) -> Result<(), Response>,
    limits: Limits,
) {
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                // One thread per client, so a client that stalls only delays itself.
                if open.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    let _ = write_line_by(
                        &stream,
                        &Response::error("too many clients"),
                        Instant::now() + DENY_DEADLINE,
                    );
                    continue;
                }
                let handler = handler.clone();
                let slot = Slot(open.clone());
                let spawned = std::thread::Builder::new()
                    .name("tunlb-control-client".into())
                    .spawn(move || {
                        let _slot = slot;
                        // A client that misbehaves only loses its own connection.
                        let _ = serve_conn(stream, &handler, check, limits);
                    });
                // On failure the closure (and its slot) was dropped: the count is back.
                drop(spawned);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One of the [`MAX_CLIENTS`] places, given back when the client's thread ends (even by a panic).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves the requests of one connection, in order, until the client closes it, misses a
/// deadline or sends a line too long. A client that is not allowed gets
/// [`Response::PermissionDenied`] at once and is disconnected; nothing it sends is read.
fn serve_conn(
    stream: UnixStream,
    handler: &Handler,
    check: fn(&PeerCred) -> Result<(), Response>,
    limits: Limits,
) -> io::Result<()> {
    let cred = peer_cred(&stream)?;
    if let Err(denied) = check(&cred) {
        log::warn!(
            "tunlb director: control socket: refused uid {} (pid {}): only root may talk to the director",
            cred.uid,
            cred.pid
        );
        let _ = write_line_by(&stream, &denied, Instant::now() + DENY_DEADLINE);
        return stream.shutdown(std::net::Shutdown::Both);
    }
    let mut lines = LineReader::default();
    loop {
        let deadline = Instant::now() + limits.request;
        let Some(line) = lines.read_line(&mut &stream, Some(deadline))? else {
            return Ok(());
        };
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(req) => std::panic::catch_unwind(AssertUnwindSafe(|| handler(req)))
                .unwrap_or_else(|_| Response::error("internal error in the director").into()),
            Err(e) => Response::error(format!("invalid request: {e}")).into(),
        };
        match answer {
            Answer::One(resp) => write_line_by(&stream, &resp, Instant::now() + limits.write)?,
            Answer::Stream(mut lines) => loop {
                let next = std::panic::catch_unwind(AssertUnwindSafe(|| lines.next()))
                    .unwrap_or_else(|_| Some(Response::error("internal error in the director")));
                let Some(resp) = next else { break };
                write_line_by(&stream, &resp, Instant::now() + limits.write)?;
                if matches!(resp, Response::Error { .. }) {
                    break;
                }
            },
        }
    }
}

/// Sends one request to the director of this network namespace and waits for the answer. A
/// streamed answer ([`Request::StreamConns`]) is read line by line and returned assembled, as
/// one [`Response::Conns`].
pub fn request(req: &Request) -> Result<Response, ClientError> {
    let path = socket_path()?;
    let euid = rundir::effective_uid();
    if let Some(dir) = path.parent() {
        if !check_client_dir(dir, euid)? {
            return Err(ClientError::NotRunning);
        }
    }
    request_at(&path, req)
}

/// [`request`] to the socket at `path`: the server must be root or this process's user.
pub fn request_at(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let euid = rundir::effective_uid();
    request_checked(path, req, &|cred| trusted_server(cred, euid))
}

/// [`request_at`] with the check of the server's credentials passed in; nothing is sent to a
/// server it refuses.
fn request_checked(
    path: &Path,
    req: &Request,
    trusted: &dyn Fn(&PeerCred) -> bool,
) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ClientError::NotRunning,
        io::ErrorKind::PermissionDenied => ClientError::NotPermitted {
            path: path.to_owned(),
        },
        _ => ClientError::Io(e),
    })?;
    let server = peer_cred(&stream)?;
    if !trusted(&server) {
        return Err(ClientError::Impostor {
            path: path.to_owned(),
            uid: server.uid,
            pid: server.pid,
        });
    }
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let sent = write_line(&mut &stream, req);
    // A server that refuses us answers first and closes: its answer is still there to read.
    let mut lines = LineReader::default();
    let mut assembled: Option<Vec<ConnEntry>> = None;
    loop {
        let resp: Response = match lines.read_line(&mut &stream, None) {
            Ok(Some(line)) => serde_json::from_str(&line).map_err(ClientError::BadResponse)?,
            Ok(None) if assembled.is_some() => return Err(ClientError::Truncated),
            Ok(None) => return Err(sent.err().map_or(ClientError::Closed, ClientError::Io)),
            Err(e) => return Err(ClientError::Io(sent.err().unwrap_or(e))),
        };
        match resp {
            Response::ConnsChunk(mut chunk) => match &mut assembled {
                Some(all) => all.append(&mut chunk),
                None => assembled = Some(chunk),
            },
            Response::ConnsEnd => return Ok(Response::Conns(assembled.unwrap_or_default())),
            other => return Ok(other),
        }
    }
}

/// A byte source whose next read can be bounded in time.
trait TimedRead: Read {
    /// Makes the next read fail with `WouldBlock`/`TimedOut` after `left`.
    fn set_timeout(&mut self, left: Duration) -> io::Result<()>;
}

impl TimedRead for &UnixStream {
    fn set_timeout(&mut self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))
    }
}

#[cfg(test)]
impl TimedRead for &[u8] {
    fn set_timeout(&mut self, _left: Duration) -> io::Result<()> {
        Ok(())
    }
}

/// Reads newline-terminated lines of at most [`MAX_LINE`] bytes, keeping what it read past a
/// line for the next one.
#[derive(Default)]
struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line, without its newline; the last line may lack one; `None` at end of stream.
    /// With a `deadline`, the whole line must arrive before it (`TimedOut` otherwise), however
    /// the client spreads its bytes.
    fn read_line(
        &mut self,
        src: &mut impl TimedRead,
        deadline: Option<Instant>,
    ) -> io::Result<Option<String>> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                if end > MAX_LINE {
                    return Err(too_long());
                }
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                return utf8(line).map(Some);
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_LINE {
                return Err(too_long());
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out());
                }
                src.set_timeout(left)?;
            }
            let mut chunk = [0u8; 8192];
            let room = (MAX_LINE + 1 - self.buf.len()).min(chunk.len());
            let n = match src.read(&mut chunk[..room]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(timed_out()),
                Err(e) => return Err(e),
            };
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return utf8(std::mem::take(&mut self.buf)).map(Some);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn too_long() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "line too long")
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "timed out waiting for a whole line",
    )
}

fn utf8(line: Vec<u8>) -> io::Result<String> {
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

fn write_line(writer: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    writer.flush()
}

/// Writes `value` as one line, all of it before `deadline` (a client that does not read its
/// answer cannot hold the server's thread longer).
fn write_line_by(
    stream: &UnixStream,
    value: &impl serde::Serialize,
    deadline: Instant,
) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut rest = &line[..];
    let mut writer = stream;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take its answer in time",
            ));
        }
        stream.set_write_timeout(Some(left))?;
        match writer.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::adm::parse;
    use crate::control::format::Listing;
    use crate::control::ops::Timeouts;
    use crate::control::proto::CONN_CHUNK;
    use crate::model::ServiceSet;
    use std::sync::Mutex;

    /// A private folder for one test's sockets, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "tunlb-sock-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            TempDir(dir)
        }

        fn sock(&self) -> PathBuf {
            self.0.join("director.sock.1")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A tiny director: a table behind a mutex, edited with `apply_batch`.
    fn table_handler() -> Handler {
        let state = Arc::new(Mutex::new((ServiceSet::default(), Timeouts::default())));
        Arc::new(move |req| {
            let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
            let (set, timeouts) = &mut *guard;
            match req {
                Request::Apply(cmds) => match set.apply_batch(timeouts, &cmds) {
                    Ok(_) => Response::Ok,
                    Err(e) => Response::from_batch_error(&e),
                },
                Request::List => Response::Listing(Listing::from_set(set)),
                Request::ListConns => Response::Conns(Vec::new()),
                Request::GetTimeouts => Response::Timeouts(*timeouts),
                Request::StreamConns => return streamed(conn_entries(2500), false),
                Request::Config | Request::Reload | Request::ListVrrp => {
                    Response::error("not in this test")
                }
            }
            .into()
        })
    }

    /// `n` distinct connection entries.
    fn conn_entries(n: u16) -> Vec<ConnEntry> {
        (0..n)
            .map(|i| ConnEntry {
                proto: crate::model::Protocol::Tcp,
                expires_secs: 900,
                state: "ESTABLISHED".into(),
                client: std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 1), i).into(),
                vip: "10.9.9.9:80".parse().unwrap(),
                dest: "172.16.0.1:80".parse().unwrap(),
            })
            .collect()
    }

    /// `entries` as a streamed answer in chunks of [`CONN_CHUNK`]; with `panics`, the stream
    /// panics after its first chunk.
    fn streamed(entries: Vec<ConnEntry>, panics: bool) -> Answer {
        let chunks: Vec<Response> = entries
            .chunks(CONN_CHUNK)
            .map(|c| Response::ConnsChunk(c.to_vec()))
            .collect();
        let mut n = 0;
        let lines = chunks
            .into_iter()
            .chain(std::iter::once(Response::ConnsEnd))
            .inspect(move |_| {
                n += 1;
                assert!(!(panics && n == 2), "stream bug");
            });
        Answer::Stream(Box::new(lines))
    }

    fn serve_at(path: &Path, handler: Handler) -> Server {
        Listener::bind_at(path)
            .expect("bind")
            .serve(handler)
            .expect("serve")
    }

    fn serve_short(path: &Path, handler: Handler, deadline: Duration) -> Server {
        let mut l = Listener::bind_at(path).expect("bind");
        l.limits = Limits {
            request: deadline,
            write: deadline,
        };
        l.serve_with(handler, |_| Ok(())).expect("serve")
    }

    fn cmd(line: &str) -> crate::model::Edit {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        parse(&args).expect(line).edit().expect(line).clone()
    }

    fn we_are_root() -> bool {
        rundir::effective_uid() == 0
    }

    fn cred(uid: u32) -> PeerCred {
        PeerCred {
            pid: 7,
            uid,
            gid: uid,
        }
    }

    #[test]
    fn only_root_is_authorized() {
        assert_eq!(authorize(&cred(0)), Ok(()));
        assert_eq!(authorize(&cred(1000)), Err(Response::PermissionDenied));
    }

    #[test]
    fn the_client_trusts_root_or_itself_only() {
        assert!(trusted_server(&cred(0), 0));
        assert!(trusted_server(&cred(0), 1000));
        assert!(trusted_server(&cred(1000), 1000));
        assert!(!trusted_server(&cred(65534), 0));
        assert!(!trusted_server(&cred(65534), 1000));
    }

    #[test]
    fn socket_path_is_in_the_run_dir_and_names_the_namespace() {
        let path = socket_path().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            name,
            format!("director.sock.{:x}", rundir::netns_id().unwrap())
        );
        assert_eq!(path.parent().unwrap(), configured_run_dir());
    }

    #[test]
    fn request_round_trip_through_the_socket() {
        let dir = TempDir::new();
        let _server = serve_at(&dir.sock(), table_handler());
        let mode = std::fs::symlink_metadata(dir.sock()).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600, "the socket is root's only");
        let resp = request_at(
            &dir.sock(),
            &Request::Apply(vec![cmd("-A -t 10.0.0.1:80 -s rr")]),
        )
        .expect("answer");
        if !we_are_root() {
            assert_eq!(resp, Response::PermissionDenied);
            return;
        }
        assert_eq!(resp, Response::Ok);
        let again = request_at(&dir.sock(), &Request::Apply(vec![cmd("-A -t 10.0.0.1:80")]))
            .expect("answer");
        assert_eq!(
            again,
            Response::Error {
                message: "Service already exists".into(),
                index: Some(0)
            }
        );
        match request_at(&dir.sock(), &Request::List).expect("answer") {
            Response::Listing(l) => assert_eq!(l.services.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn several_requests_on_one_connection() {
        let dir = TempDir::new();
        let _server = serve_at(&dir.sock(), table_handler());
        let stream = UnixStream::connect(dir.sock()).unwrap();
        let mut lines = LineReader::default();
        for req in [
            Request::GetTimeouts,
            Request::ListConns,
            Request::GetTimeouts,
        ] {
            write_line(&mut &stream, &req).unwrap();
            let line = lines
                .read_line(&mut &stream, None)
                .unwrap()
                .expect("a line");
            let resp: Response = serde_json::from_str(&line).unwrap();
            if we_are_root() {
                assert_ne!(resp, Response::PermissionDenied);
            }
        }
    }

    #[test]
    fn denied_peer_is_answered_and_disconnected_at_once() {
        let dir = TempDir::new();
        let called = Arc::new(AtomicUsize::new(0));
        let seen = called.clone();
        let handler: Handler = Arc::new(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            Response::Ok.into()
        });
        let _server = Listener::bind_at(&dir.sock())
            .unwrap()
            .serve_with(handler, |_| Err(Response::PermissionDenied))
            .unwrap();
        // Through the client: the answer is read even if the server closed before our write.
        let resp = request_at(&dir.sock(), &Request::Apply(vec![cmd("-C")])).expect("answer");
        assert_eq!(resp, Response::PermissionDenied);
        // A peer that sends nothing gets the answer, then end of stream, at once.
        let start = Instant::now();
        let mut stream = UnixStream::connect(dir.sock()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut all = String::new();
        stream.read_to_string(&mut all).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let resp: Response = serde_json::from_str(all.trim_end()).unwrap();
        assert_eq!(resp, Response::PermissionDenied);
        assert_eq!(called.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_server_that_is_not_trusted_gets_nothing() {
        let dir = TempDir::new();
        let listener = UnixListener::bind(dir.sock()).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut got = Vec::new();
            let _ = conn.read_to_end(&mut got);
            got.len()
        });
        // This process is the "impostor": a client that trusts only another uid refuses it.
        let me = rundir::effective_uid();
        let err = request_checked(&dir.sock(), &Request::List, &|c| c.uid != me).unwrap_err();
        match &err {
            ClientError::Impostor { path, uid, pid } => {
                assert_eq!(path, &dir.sock());
                assert_eq!(*uid, me);
                assert_eq!(*pid as u32, std::process::id());
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("not by root"), "{err}");
        assert_eq!(server.join().unwrap(), 0, "the client sent nothing");
    }

    #[test]
    fn nothing_listening_is_not_running() {
        let dir = TempDir::new();
        let err = request_at(&dir.sock(), &Request::List).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning), "{err:?}");
        // A socket file left by a dead director: not running either.
        drop(UnixListener::bind(dir.sock()).unwrap());
        let err = request_at(&dir.sock(), &Request::List).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning), "{err:?}");
    }

    #[test]
    fn client_checks_the_run_dir() {
        let dir = TempDir::new();
        let me = rundir::effective_uid();
        assert!(check_client_dir(&dir.0, me).unwrap());
        assert!(!check_client_dir(&dir.0.join("missing"), me).unwrap());
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_client_dir(&dir.0, me).unwrap_err();
        assert!(
            err.to_string().contains("writable by group or others"),
            "{err}"
        );
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&dir.0, &link).unwrap();
        let err = check_client_dir(&link, me).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        if me == 0 {
            // A folder owned by another user is refused, even by root.
            std::os::unix::fs::lchown(&dir.0, Some(65534), None).unwrap();
            let err = check_client_dir(&dir.0, me).unwrap_err();
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        }
    }

    #[test]
    fn a_live_director_keeps_its_socket() {
        let dir = TempDir::new();
        let _server = serve_at(&dir.sock(), table_handler());
        let err = Listener::bind_at(&dir.sock()).unwrap_err();
        assert!(matches!(err, BindError::Running { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("a director is already running in this network namespace"),
            "{err}"
        );
        // Still served.
        assert!(request_at(&dir.sock(), &Request::GetTimeouts).is_ok());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_other_files_are_not() {
        let dir = TempDir::new();
        drop(UnixListener::bind(dir.sock()).unwrap());
        assert!(dir.sock().exists());
        let server = serve_at(&dir.sock(), table_handler());
        assert!(request_at(&dir.sock(), &Request::GetTimeouts).is_ok());
        // A clean exit removes the socket file.
        drop(server);
        assert!(!dir.sock().exists());

        std::fs::write(dir.sock(), "not a socket").unwrap();
        let err = Listener::bind_at(&dir.sock()).unwrap_err();
        assert!(matches!(err, BindError::NotASocket { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(dir.sock()).unwrap(), "not a socket");
    }

    #[test]
    fn dropping_a_server_leaves_a_successor_socket_alone() {
        let dir = TempDir::new();
        let server = serve_at(&dir.sock(), table_handler());
        // Someone (root) replaced the file since: it is not ours to remove.
        std::fs::remove_file(dir.sock()).unwrap();
        let other = UnixListener::bind(dir.sock()).unwrap();
        drop(server);
        assert!(dir.sock().exists());
        drop(other);
    }

    #[test]
    fn slow_and_silent_clients_are_disconnected_at_the_deadline() {
        let dir = TempDir::new();
        let deadline = Duration::from_millis(300);
        let _server = serve_short(&dir.sock(), table_handler(), deadline);
        // Silent: connected, sends nothing.
        let start = Instant::now();
        let mut silent = UnixStream::connect(dir.sock()).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = Vec::new();
        silent.read_to_end(&mut buf).unwrap();
        assert!(buf.is_empty());
        let took = start.elapsed();
        assert!(
            took >= deadline && took < Duration::from_secs(3),
            "{took:?}"
        );
        // Slowloris: a byte every 50 ms never completes a line in time, though each read is quick.
        let start = Instant::now();
        let mut slow = UnixStream::connect(dir.sock()).unwrap();
        let cut = loop {
            if slow.write_all(b" ").is_err() {
                break start.elapsed();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "never disconnected"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(cut >= deadline && cut < Duration::from_secs(3), "{cut:?}");
        // The deadline is per request: a client that asks in time is served again and again.
        let stream = UnixStream::connect(dir.sock()).unwrap();
        let mut lines = LineReader::default();
        for _ in 0..3 {
            std::thread::sleep(deadline / 2);
            write_line(&mut &stream, &Request::GetTimeouts).unwrap();
            assert!(lines.read_line(&mut &stream, None).unwrap().is_some());
        }
    }

    #[test]
    fn garbage_and_panics_get_an_error_answer() {
        let dir = TempDir::new();
        let handler: Handler = Arc::new(|req| match req {
            Request::List => panic!("handler bug"),
            Request::StreamConns => streamed(conn_entries(CONN_CHUNK as u16 * 2), true),
            _ => Response::Ok.into(),
        });
        let _server = Listener::bind_at(&dir.sock())
            .unwrap()
            .serve_with(handler, |_| Ok(()))
            .unwrap();
        let stream = UnixStream::connect(dir.sock()).unwrap();
        (&stream).write_all(b"{not json\n").unwrap();
        let mut lines = LineReader::default();
        let resp: Response =
            serde_json::from_str(&lines.read_line(&mut &stream, None).unwrap().unwrap()).unwrap();
        assert!(
            matches!(&resp, Response::Error { message, .. } if message.starts_with("invalid request")),
            "{resp:?}"
        );
        // The server survives a panicking handler and keeps serving.
        assert!(matches!(
            request_at(&dir.sock(), &Request::List).unwrap(),
            Response::Error { .. }
        ));
        assert_eq!(
            request_at(&dir.sock(), &Request::ListConns).unwrap(),
            Response::Ok
        );
        // A stream that panics midway: its first chunk, then an error that ends the answer;
        // the client reports the error, not a short listing, and the server serves on.
        assert!(matches!(
            request_at(&dir.sock(), &Request::StreamConns).unwrap(),
            Response::Error { message, .. } if message == "internal error in the director"
        ));
        assert_eq!(
            request_at(&dir.sock(), &Request::ListConns).unwrap(),
            Response::Ok
        );
    }

    #[test]
    fn a_streamed_answer_comes_in_chunks_and_is_assembled() {
        let dir = TempDir::new();
        let _server = serve_at(&dir.sock(), table_handler());
        // On the wire: three chunk lines (1024 + 1024 + 452), then the end, then the next
        // request's answer on the same connection.
        let stream = UnixStream::connect(dir.sock()).unwrap();
        write_line(&mut &stream, &Request::StreamConns).unwrap();
        write_line(&mut &stream, &Request::GetTimeouts).unwrap();
        let mut lines = LineReader::default();
        let mut sizes = Vec::new();
        loop {
            let line = lines.read_line(&mut &stream, None).unwrap().unwrap();
            match serde_json::from_str(&line).unwrap() {
                Response::ConnsChunk(c) => sizes.push(c.len()),
                Response::ConnsEnd => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sizes, [1024, 1024, 452]);
        let line = lines.read_line(&mut &stream, None).unwrap().unwrap();
        assert!(line.starts_with(r#"{"timeouts""#), "{line}");
        // Through the client: one answer with every entry, in order.
        assert_eq!(
            request_at(&dir.sock(), &Request::StreamConns).unwrap(),
            Response::Conns(conn_entries(2500))
        );
    }

    #[test]
    fn long_lines_are_refused() {
        let data = vec![b'x'; MAX_LINE + 10];
        let err = LineReader::default()
            .read_line(&mut &data[..], None)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut data = vec![b'x'; MAX_LINE + 1];
        data.push(b'\n');
        let err = LineReader::default()
            .read_line(&mut &data[..], None)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut data = vec![b'x'; MAX_LINE];
        data.push(b'\n');
        let line = LineReader::default()
            .read_line(&mut &data[..], None)
            .unwrap();
        assert_eq!(line.map(|l| l.len()), Some(MAX_LINE));
        let mut ok = LineReader::default();
        let mut src = &b"abc\ndef"[..];
        assert_eq!(
            ok.read_line(&mut src, None).unwrap().as_deref(),
            Some("abc")
        );
        assert_eq!(
            ok.read_line(&mut src, None).unwrap().as_deref(),
            Some("def")
        );
        assert_eq!(ok.read_line(&mut src, None).unwrap(), None);
        let err = LineReader::default()
            .read_line(&mut &b"\xff\n"[..], None)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}

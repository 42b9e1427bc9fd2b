//! The control socket: a Unix stream socket in the abstract namespace, one per network namespace.
//!
//! Abstract Unix socket names belong to the network namespace of the socket, so a director
//! started in namespace NS listens on "its" `tunlb-director`, and `ip netns exec NS tunlb adm`
//! reaches that one with no flag, as ipvsadm reaches the IPVS table of its namespace. There is
//! no file to clean up after a crash either.
//!
//! Abstract sockets have no permissions, so the server asks the kernel who is connecting
//! (`SO_PEERCRED`) and answers everyone but root with [`Response::PermissionDenied`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::control::proto::{Request, Response, MAX_LINE};
use crate::sys::cred::{peer_cred, PeerCred};

/// The abstract socket name the director listens on.
pub const SOCKET_NAME: &str = "tunlb-director";

/// How long the server waits for a client's next request, and a client for its answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The most clients served at once; more are answered "too many clients".
pub const MAX_CLIENTS: usize = 16;

/// What the director does with a request. Each client connection has its own thread, so the
/// handler may run concurrently for different clients and must serialize edits itself (a
/// mutex around the table).
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the control socket of this network namespace.
    #[error("no director is running in this network namespace (start one with: tunlb director)")]
    NotRunning,
    /// The socket failed (connect, read, write, timeout).
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The answer was not a [`Response`].
    #[error("invalid answer from the director: {0}")]
    BadResponse(serde_json::Error),
    /// The director closed the connection without answering.
    #[error("the director closed the connection without answering")]
    Closed,
}

/// Only root may talk to the director, as only root may change IPVS.
pub fn authorize(cred: &PeerCred) -> Result<(), Response> {
    if cred.uid == 0 {
        Ok(())
    } else {
        Err(Response::PermissionDenied)
    }
}

/// Listens on [`SOCKET_NAME`] and serves requests with `handler`: the returned thread accepts
/// connections and starts one thread per client (at most [`MAX_CLIENTS`]).
///
/// Fails with `AddrInUse` if a director already runs in this network namespace.
pub fn serve(handler: Handler) -> io::Result<JoinHandle<()>> {
    serve_on(SOCKET_NAME, handler)
}

/// [`serve`] on another abstract name (tests, or several directors in one namespace).
pub fn serve_on(name: &str, handler: Handler) -> io::Result<JoinHandle<()>> {
    serve_with(name, handler, authorize)
}

/// [`serve_on`] with the peer check passed in.
fn serve_with(
    name: &str,
    handler: Handler,
    check: fn(&PeerCred) -> Result<(), Response>,
) -> io::Result<JoinHandle<()>> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    std::thread::Builder::new()
        .name("tunlb-control".into())
        .spawn(move || accept_loop(&listener, &handler, check))
}

fn accept_loop(
    listener: &UnixListener,
    handler: &Handler,
    check: fn(&PeerCred) -> Result<(), Response>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                // One thread per client, so a client that stalls only delays itself.
                if open.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    open.fetch_sub(1, Ordering::AcqRel);
                    let mut stream = stream;
                    let _ = write_line(&mut stream, &Response::error("too many clients"));
                    continue;
                }
                let handler = handler.clone();
                let open_now = open.clone();
                let spawned = std::thread::Builder::new()
                    .name("tunlb-control-client".into())
                    .spawn(move || {
                        // A client that misbehaves only loses its own connection.
                        let _ = serve_conn(stream, &handler, check);
                        open_now.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Serves the requests of one connection, in order, until the client closes it.
fn serve_conn(
    stream: UnixStream,
    handler: &Handler,
    check: fn(&PeerCred) -> Result<(), Response>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let allowed = check(&peer_cred(&stream)?);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(line) = read_line(&mut reader)? {
        let resp = match &allowed {
            Err(denied) => denied.clone(),
            Ok(()) => match serde_json::from_str::<Request>(&line) {
                Ok(req) => std::panic::catch_unwind(AssertUnwindSafe(|| handler(req)))
                    .unwrap_or_else(|_| Response::error("internal error in the director")),
                Err(e) => Response::error(format!("invalid request: {e}")),
            },
        };
        write_line(&mut writer, &resp)?;
    }
    Ok(())
}

/// Sends one request to the director of this network namespace and waits for the answer.
pub fn request(req: &Request) -> Result<Response, ClientError> {
    request_to(SOCKET_NAME, req)
}

/// [`request`] to another abstract name.
pub fn request_to(name: &str, req: &Request) -> Result<Response, ClientError> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let stream = UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ClientError::NotRunning,
        _ => ClientError::Io(e),
    })?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    write_line(&mut writer, req)?;
    let mut reader = BufReader::new(stream);
    let line = read_line(&mut reader)?.ok_or(ClientError::Closed)?;
    serde_json::from_str(&line).map_err(ClientError::BadResponse)
}

/// One line of at most [`MAX_LINE`] bytes, without its newline; `None` at end of stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

fn write_line(writer: &mut impl Write, value: &impl serde::Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::adm::parse;
    use crate::control::format::Listing;
    use crate::control::ops::Timeouts;
    use crate::model::ServiceSet;
    use std::sync::Mutex;

    /// A name no other test (or director) uses.
    fn unique_name() -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        format!(
            "tunlb-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
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
                Request::Config | Request::Reload | Request::ListVrrp => {
                    Response::error("not in this test")
                }
            }
        })
    }

    fn cmd(line: &str) -> crate::model::Edit {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        parse(&args).expect(line).edit().expect(line).clone()
    }

    fn we_are_root() -> bool {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        peer_cred(&a).expect("cred").uid == 0
    }

    #[test]
    fn only_root_is_authorized() {
        let root = PeerCred {
            pid: 1,
            uid: 0,
            gid: 0,
        };
        let user = PeerCred {
            pid: 2,
            uid: 1000,
            gid: 1000,
        };
        assert_eq!(authorize(&root), Ok(()));
        assert_eq!(authorize(&user), Err(Response::PermissionDenied));
    }

    #[test]
    fn request_round_trip_through_the_socket() {
        let name = unique_name();
        serve_on(&name, table_handler()).expect("bind");
        let resp = request_to(&name, &Request::Apply(vec![cmd("-A -t 10.0.0.1:80 -s rr")]))
            .expect("answer");
        if !we_are_root() {
            assert_eq!(resp, Response::PermissionDenied);
            return;
        }
        assert_eq!(resp, Response::Ok);
        let again =
            request_to(&name, &Request::Apply(vec![cmd("-A -t 10.0.0.1:80")])).expect("answer");
        assert_eq!(
            again,
            Response::Error {
                message: "Service already exists".into(),
                index: Some(0)
            }
        );
        match request_to(&name, &Request::List).expect("answer") {
            Response::Listing(l) => assert_eq!(l.services.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn several_requests_on_one_connection() {
        let name = unique_name();
        serve_on(&name, table_handler()).expect("bind");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let stream = UnixStream::connect_addr(&addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        for req in [
            Request::GetTimeouts,
            Request::ListConns,
            Request::GetTimeouts,
        ] {
            write_line(&mut writer, &req).unwrap();
            let line = read_line(&mut reader).unwrap().expect("a line");
            let resp: Response = serde_json::from_str(&line).unwrap();
            if we_are_root() {
                assert_ne!(resp, Response::PermissionDenied);
            }
        }
    }

    #[test]
    fn denied_peer_never_reaches_the_handler() {
        let name = unique_name();
        let called = Arc::new(AtomicUsize::new(0));
        let seen = called.clone();
        let handler: Handler = Arc::new(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            Response::Ok
        });
        serve_with(&name, handler, |_| Err(Response::PermissionDenied)).expect("bind");
        let resp = request_to(&name, &Request::Apply(vec![cmd("-C")])).expect("answer");
        assert_eq!(resp, Response::PermissionDenied);
        assert_eq!(called.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn nothing_listening_is_not_running() {
        let err = request_to(&unique_name(), &Request::List).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning), "{err:?}");
    }

    #[test]
    fn second_director_in_the_namespace_cannot_bind() {
        let name = unique_name();
        serve_on(&name, table_handler()).expect("bind");
        let err = serve_on(&name, table_handler()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn garbage_and_panics_get_an_error_answer() {
        let name = unique_name();
        let handler: Handler = Arc::new(|req| match req {
            Request::List => panic!("handler bug"),
            _ => Response::Ok,
        });
        serve_with(&name, handler, |_| Ok(())).expect("bind");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let stream = UnixStream::connect_addr(&addr).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer.write_all(b"{not json\n").unwrap();
        let resp: Response =
            serde_json::from_str(&read_line(&mut reader).unwrap().unwrap()).unwrap();
        assert!(
            matches!(&resp, Response::Error { message, .. } if message.starts_with("invalid request")),
            "{resp:?}"
        );
        // The server survives a panicking handler and keeps serving.
        assert!(matches!(
            request_to(&name, &Request::List).unwrap(),
            Response::Error { .. }
        ));
        assert_eq!(
            request_to(&name, &Request::ListConns).unwrap(),
            Response::Ok
        );
    }

    #[test]
    fn long_lines_are_refused() {
        let data = vec![b'x'; MAX_LINE + 10];
        let mut reader = BufReader::new(&data[..]);
        let err = read_line(&mut reader).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let mut ok = BufReader::new(&b"abc\ndef"[..]);
        assert_eq!(read_line(&mut ok).unwrap().as_deref(), Some("abc"));
        assert_eq!(read_line(&mut ok).unwrap().as_deref(), Some("def"));
        assert_eq!(read_line(&mut ok).unwrap(), None);
    }
}

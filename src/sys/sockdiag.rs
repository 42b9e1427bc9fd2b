//! Is there a local TCP socket for this exact 4-tuple? One `NETLINK_SOCK_DIAG` request
//! (`inet_diag_req_v2` without `NLM_F_DUMP`: the kernel's exact lookup, as `ss` does for one
//! socket), for the real-server agent's second chance ([`crate::realserver::chance`]).
//!
//! The kernel's exact lookup (`inet_diag_find_one_icsk`) also finds the *listening* socket of
//! the local address and port when no connection matches, so an answer in state LISTEN means
//! "no connection". A socket in TIME_WAIT or any other state counts as one.

use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::neigh::messages;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states (4), then the socket id:
/// sport, dport (big-endian), src[4], dst[4], if, cookie[2].
const REQ_LEN: usize = 56;
const TCP_LISTEN: u8 = 10;
const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);

/// A `NETLINK_SOCK_DIAG` socket.
#[derive(Debug)]
pub struct SockDiag {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// The request for the TCP socket with local address `local` and peer `remote`.
pub fn request(
    seq: u32,
    local: SocketAddrV4,
    remote: SocketAddrV4,
) -> [u8; NLMSG_HDRLEN + REQ_LEN] {
    let mut m = [0u8; NLMSG_HDRLEN + REQ_LEN];
    m[..4].copy_from_slice(&((NLMSG_HDRLEN + REQ_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    let r = &mut m[NLMSG_HDRLEN..];
    r[0] = libc::AF_INET as u8;
    r[1] = libc::IPPROTO_TCP as u8;
    r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    r[8..10].copy_from_slice(&local.port().to_be_bytes());
    r[10..12].copy_from_slice(&remote.port().to_be_bytes());
    r[12..16].copy_from_slice(&local.ip().octets());
    r[28..32].copy_from_slice(&remote.ip().octets());
    // if = 0 (any), cookie = INET_DIAG_NOCOOKIE (no check).
    r[48..56].fill(0xff);
    m
}

/// Reads the answer to request `seq`: `Ok(true)` for a socket that is not listening,
/// `Ok(false)` for none (ENOENT) or only the listener; other errors as they come.
pub fn answer(buf: &[u8], seq: u32) -> Option<io::Result<bool>> {
    for (hdr, payload) in messages(buf) {
        if hdr.seq != seq {
            continue;
        }
        return Some(match hdr.kind {
            NLMSG_ERROR => {
                let errno = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                match errno {
                    Some(0) => Ok(false),
                    Some(e) if -e == libc::ENOENT => Ok(false),
                    Some(e) => Err(io::Error::from_raw_os_error(-e)),
                    None => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated NLMSG_ERROR",
                    )),
                }
            }
            SOCK_DIAG_BY_FAMILY => match payload.get(1) {
                Some(&state) => Ok(state != TCP_LISTEN),
                None => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated inet_diag_msg",
                )),
            },
            _ => Ok(false),
        });
    }
    None
}

impl SockDiag {
    /// Opens the socket; answers time out after 200 ms.
    pub fn open() -> io::Result<SockDiag> {
        let sock = Socket::new(
            Domain::from(libc::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("open sock_diag socket: {e}")))?;
        sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(SockDiag {
            sock,
            seq: 0,
            buf: vec![0; 8192],
        })
    }

    /// Whether a TCP socket (not a listener) exists with local address `local` and peer
    /// `remote`.
    pub fn tcp_socket_exists(
        &mut self,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> io::Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        (&self.sock).write_all(&request(seq, local, remote))?;
        loop {
            let n = loop {
                match (&self.sock).read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if let Some(r) = answer(&self.buf[..n], seq) {
                return r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    use super::*;

    #[test]
    fn the_request_names_the_tuple_and_skips_the_cookie() {
        let local = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80);
        let remote = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 40000);
        let m = request(7, local, remote);
        assert_eq!(
            &m[NLMSG_HDRLEN + 8..NLMSG_HDRLEN + 12],
            &[0, 80, 0x9c, 0x40]
        );
        assert_eq!(&m[NLMSG_HDRLEN + 12..NLMSG_HDRLEN + 16], &[10, 0, 0, 100]);
        assert_eq!(&m[NLMSG_HDRLEN + 28..NLMSG_HDRLEN + 32], &[192, 0, 2, 1]);
        assert_eq!(&m[NLMSG_HDRLEN + 48..], &[0xff; 8]);
        // Answers: ENOENT, a listener, a connection, someone else's sequence number.
        let msg = |kind: u16, seq: u32, body: &[u8]| {
            let mut v = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
            v.extend_from_slice(&kind.to_ne_bytes());
            v.extend_from_slice(&0u16.to_ne_bytes());
            v.extend_from_slice(&seq.to_ne_bytes());
            v.extend_from_slice(&[0; 4]);
            v.extend_from_slice(body);
            v
        };
        let enoent = msg(NLMSG_ERROR, 7, &(-libc::ENOENT).to_ne_bytes());
        assert!(!answer(&enoent, 7).unwrap().unwrap());
        assert!(answer(&enoent, 8).is_none());
        assert!(!answer(&msg(SOCK_DIAG_BY_FAMILY, 7, &[2, TCP_LISTEN]), 7)
            .unwrap()
            .unwrap());
        assert!(answer(&msg(SOCK_DIAG_BY_FAMILY, 7, &[2, 1]), 7)
            .unwrap()
            .unwrap());
        assert!(answer(&msg(SOCK_DIAG_BY_FAMILY, 7, &[]), 7)
            .unwrap()
            .is_err());
        assert!(answer(&[1, 2, 3], 7).is_none());
    }

    /// On loopback, no privilege needed: a connection is found, its mirror with another peer
    /// port is not (only the listener matches it).
    #[test]
    fn a_loopback_connection_is_found_and_another_tuple_is_not() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_s, _) = l.accept().unwrap();
        let local = match l.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let remote = match c.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let mut d = SockDiag::open().unwrap();
        assert!(d.tcp_socket_exists(local, remote).unwrap());
        let other = SocketAddrV4::new(*remote.ip(), remote.port().wrapping_add(1).max(1));
        assert!(!d.tcp_socket_exists(local, other).unwrap());
    }
}

//! Credentials of the process at the other end of a Unix stream socket (`SO_PEERCRED`).
//!
//! Both ends of the control socket ask: the director refuses every client but root, as the
//! kernel refuses ipvsadm's `setsockopt` calls without `CAP_NET_ADMIN`, and `tunlb adm` refuses
//! a server that is not root (someone else's process holding the socket's name). For a
//! listening socket the kernel records the credentials of the process that called `listen()`.

use std::io;
use std::os::fd::AsRawFd;

/// Who is connected at the other end of a Unix socket, as the kernel recorded it at `connect()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id of the peer.
    pub pid: i32,
    /// Effective user id of the peer.
    pub uid: u32,
    /// Effective group id of the peer.
    pub gid: u32,
}

/// Reads `SO_PEERCRED` from a connected Unix stream socket.
pub fn peer_cred(sock: &impl AsRawFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = core::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable `ucred` and `len` holds its exact size, which is what
    // `getsockopt(SOL_SOCKET, SO_PEERCRED)` fills; the fd is borrowed from a live socket.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != core::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "SO_PEERCRED returned a short ucred",
        ));
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn socketpair_peer_is_this_process() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let cred = peer_cred(&a).expect("SO_PEERCRED");
        assert_eq!(cred.pid as u32, std::process::id());
        // The effective uid, as /proc reports it (second field of the Uid: line).
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        let euid: u32 = uid_line
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .expect("euid");
        assert_eq!(cred.uid, euid);
    }
}

//! Helpers for connection sync's UDP socket: the interface index its multicast group is joined
//! on, and a receive buffer larger than `rmem_max`.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

/// The kernel's index of interface `name` (`if_nametoindex`).
pub fn interface_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// Sets the receive buffer to `bytes` with `SO_RCVBUFFORCE` (root may exceed
/// `net.core.rmem_max`), falling back to `SO_RCVBUF` (capped there) without the privilege.
pub fn force_recv_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: `v` is a c_int that lives across the call and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                core::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::SO_RCVBUFFORCE).or_else(|_| set(libc::SO_RCVBUF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_a_missing_name_none() {
        assert!(interface_index("lo").unwrap() > 0);
        assert!(interface_index("no-such-if0").is_err());
        assert!(interface_index("a\0b").is_err());
    }

    #[test]
    fn a_receive_buffer_is_set() {
        use std::os::fd::AsRawFd;
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        force_recv_buffer(s.as_raw_fd(), 1 << 20).unwrap();
        assert!(force_recv_buffer(-1, 1 << 20).is_err());
    }
}

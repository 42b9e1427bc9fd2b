//! Tunnel sockets received one packet at a time, with the addresses each packet carried: the
//! real-server agent's IPv6 receivers (and its sit-style IPv4 protocol 41 one).
//!
//! - [`TunnelSocket::raw6`]: `socket(AF_INET6, SOCK_RAW, 4 | 41 | 47)`. The kernel hands the
//!   payload behind the IPv6 header and its extension headers (no IPv6 header): the outer
//!   source comes from `msg_name`, the destination from `IPV6_PKTINFO`. While it is open the
//!   kernel stops answering those next headers with ICMPv6 parameter problems.
//! - [`TunnelSocket::udp6`]: an `IPV6_V6ONLY` UDP socket on `[::]:port` (GUE over IPv6), beside
//!   the agent's IPv4 one, which stays as it is (batched, `UDP_GRO`).
//! - [`TunnelSocket::raw4`]: `socket(AF_INET, SOCK_RAW, proto)`, outer IPv4 header included
//!   (`IP_PKTINFO` for the destination), for protocols the batched [`super::raw::RawReceiver`]
//!   is not opened for.
//!
//! One `recvmsg` per packet: these paths start without batching or GRO.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for (the kernel caps it at `rmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// Room for one `IPV6_PKTINFO` (20 bytes) or `IP_PKTINFO` (12 bytes) control message.
const CONTROL_LEN: usize = 64;

/// What one receive learned besides the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes stored in the buffer.
    pub len: usize,
    /// The outer source address.
    pub src: IpAddr,
    /// The address the packet was sent to (`IPV6_PKTINFO` / `IP_PKTINFO`; the unspecified
    /// address of the socket's family if the kernel did not say).
    pub dst: IpAddr,
    /// The packet was longer than the buffer and was cut: it must be dropped.
    pub truncated: bool,
}

/// One tunnel socket, IPv4 or IPv6, read with [`recv`](Self::recv).
pub struct TunnelSocket {
    sock: Socket,
    v6: bool,
}

impl std::fmt::Debug for TunnelSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSocket")
            .field("fd", &self.sock.as_raw_fd())
            .field("v6", &self.v6)
            .finish()
    }
}

impl TunnelSocket {
    /// `socket(AF_INET6, SOCK_RAW, next_header)`, non-blocking, `IPV6_RECVPKTINFO` on.
    pub fn raw6(next_header: u8) -> io::Result<TunnelSocket> {
        let sock = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(next_header))),
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open an IPv6 raw socket for next header {next_header}: {e}"),
            )
        })?;
        TunnelSocket::finish(sock, true)
    }

    /// `socket(AF_INET, SOCK_RAW, proto)`, non-blocking, `IP_PKTINFO` on.
    pub fn raw4(proto: u8) -> io::Result<TunnelSocket> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(proto))),
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open a raw socket for IP protocol {proto}: {e}"),
            )
        })?;
        TunnelSocket::finish(sock, false)
    }

    /// A UDP socket bound to `[::]:port`, IPv6 only (`IPV6_V6ONLY`: the IPv4 socket on the
    /// same port keeps IPv4), non-blocking, `IPV6_RECVPKTINFO` on.
    pub fn udp6(port: u16) -> io::Result<TunnelSocket> {
        let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_only_v6(true)?;
        let addr = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0);
        sock.bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("bind UDP [::]:{port}: {e}")))?;
        TunnelSocket::finish(sock, true)
    }

    fn finish(sock: Socket, v6: bool) -> io::Result<TunnelSocket> {
        sock.set_nonblocking(true)?;
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let fd = sock.as_raw_fd();
        if v6 {
            super::set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?;
        } else {
            super::set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        }
        Ok(TunnelSocket { sock, v6 })
    }

    /// Whether it is an `AF_INET6` socket.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The bound port (UDP; 0 for a raw socket).
    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.sock.local_addr()?.as_socket().map_or(0, |a| a.port()))
    }

    /// Takes one waiting packet into `buf` without blocking: `Ok(None)` when none is waiting
    /// (or a signal interrupted the call).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        // SAFETY: all-zero is a valid sockaddr_storage (a plain C struct).
        let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut control = [0u64; CONTROL_LEN / 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = ptr::addr_of_mut!(name).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL_LEN;
        // SAFETY: `msg` points at `name`, `iov` (which points at `buf`, `buf.len()` bytes) and
        // `control` (CONTROL_LEN bytes), all alive and not otherwise borrowed during the call;
        // MSG_DONTWAIT keeps it from blocking.
        let rc = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(err),
            };
        }
        let len = (rc as usize).min(buf.len());
        let truncated = msg.msg_flags & libc::MSG_TRUNC != 0;
        let src = source(&name, msg.msg_namelen);
        let unspecified = if self.v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let src = src.unwrap_or(unspecified);
        let dst = pktinfo_dst(&msg).unwrap_or(unspecified);
        Ok(Some(Received {
            len,
            src,
            dst,
            truncated,
        }))
    }
}

impl AsRawFd for TunnelSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// The address in a `msg_name` the kernel filled (`namelen` bytes of it).
fn source(name: &libc::sockaddr_storage, namelen: libc::socklen_t) -> Option<IpAddr> {
    let namelen = namelen as usize;
    match i32::from(name.ss_family) {
        libc::AF_INET6 if namelen >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which fits in it
            // (sockaddr_storage is the largest, suitably aligned).
            let a = unsafe { &*ptr::addr_of!(*name).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)))
        }
        libc::AF_INET if namelen >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: as above, for a sockaddr_in.
            let a = unsafe { &*ptr::addr_of!(*name).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))))
        }
        _ => None,
    }
}

/// The destination address in the `IPV6_PKTINFO` or `IP_PKTINFO` control message of `msg`.
fn pktinfo_dst(msg: &libc::msghdr) -> Option<IpAddr> {
    if msg.msg_control.is_null() || msg.msg_controllen < mem::size_of::<libc::cmsghdr>() {
        return None;
    }
    let mut dst = None;
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // the buffer `msg_control` points at; CMSG_FIRSTHDR / CMSG_NXTHDR stay inside it, and each
    // payload is read unaligned only after checking that the message's length covers it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in6_pktinfo>() as u32) as usize
            {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                dst = Some(IpAddr::V6(Ipv6Addr::from(v.ipi6_addr.s6_addr)));
            } else if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                dst = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v.ipi_addr.s_addr))));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    dst
}

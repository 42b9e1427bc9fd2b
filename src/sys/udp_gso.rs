//! UDP segmentation offload for GUE: one `sendmsg` carries a train of equally sized UDP
//! datagrams (`UDP_SEGMENT`, Linux ≥ 4.18), which the kernel and veth move as one GSO skb and
//! cut into datagrams as late as possible (or never, when the receiver has `UDP_GRO`).
//!
//! [`UdpGsoPool`] is a small set of UDP sockets, each bound to its own ephemeral source port:
//! the director picks one by the flow's hash, so a flow keeps its source port (ECMP and RSS
//! entropy on the way, as the per-flow port of the raw path). The outer source address is set
//! per send with `IP_PKTINFO` (none: the kernel picks the route's source, as on the raw path)
//! and the outer TOS with `IP_TOS`.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::ptr;

use socket2::{Domain, Protocol, Socket, Type};

use super::mmsg::{iovec_of, send_msg};

/// `UDP_SEGMENT` (linux/udp.h): the `SOL_UDP` option and control message giving the segment
/// size of a send.
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): the `SOL_UDP` option that lets a socket receive coalesced trains,
/// and the control message giving their segment size.
pub const UDP_GRO: libc::c_int = 104;

/// The most datagrams one send may carry (`UDP_MAX_SEGMENTS` of older kernels; newer ones take
/// 128).
pub const MAX_SEGMENTS: usize = 64;
/// The most UDP payload bytes one send may carry (a UDP length field of 65535).
pub const MAX_PAYLOAD: usize = 65_535 - 8 - 20;
/// The most buffers one send gathers.
pub const MAX_PARTS: usize = 2 * MAX_SEGMENTS;

/// Control buffer: UDP_SEGMENT (u16), IP_TOS (int), IP_PKTINFO, each in a padded cmsghdr.
const CONTROL_LEN: usize = 128;

/// A pool of UDP sockets on distinct ephemeral ports, sending GSO trains.
pub struct UdpGsoPool {
    socks: Vec<Socket>,
    ports: Vec<u16>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `iovs` are scratch values rewritten before every `sendmsg` and
// never read after it returns.
unsafe impl Send for UdpGsoPool {}

impl std::fmt::Debug for UdpGsoPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpGsoPool")
            .field("ports", &self.ports)
            .finish()
    }
}

impl UdpGsoPool {
    /// Opens `n` (at least 1) UDP sockets, each bound to `0.0.0.0:0` (an ephemeral port).
    pub fn new(n: usize) -> io::Result<UdpGsoPool> {
        let n = n.max(1);
        let mut socks = Vec::with_capacity(n);
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            sock.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
            let _ = sock.set_send_buffer_size(4 << 20);
            // Nothing is ever read from these sockets.
            let _ = sock.set_recv_buffer_size(4096);
            let port = sock.local_addr()?.as_socket_ipv4().map_or(0, |a| a.port());
            socks.push(sock);
            ports.push(port);
        }
        Ok(UdpGsoPool {
            socks,
            ports,
            iovs: Vec::with_capacity(MAX_PARTS),
        })
    }

    /// How many sockets.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Whether the pool is empty (never: [`new`](Self::new) opens at least one).
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// The source port of socket `i`.
    pub fn port(&self, i: usize) -> Option<u16> {
        self.ports.get(i).copied()
    }

    /// Sends the concatenation of `parts` (at most [`MAX_PARTS`], at most [`MAX_PAYLOAD`]
    /// bytes) from socket `sock % len()` to `dst` as UDP datagrams of `segment` bytes each (the
    /// last may be shorter), with outer source `src` (unspecified: the route's) and TOS `tos`.
    /// Returns the bytes sent; `EMSGSIZE` if `parts` are too many.
    pub fn send(
        &mut self,
        sock: usize,
        dst: SocketAddrV4,
        src: Ipv4Addr,
        tos: u8,
        segment: u16,
        parts: &[&[u8]],
    ) -> io::Result<usize> {
        if parts.len() > MAX_PARTS || self.socks.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        let fd = self.socks[sock % self.socks.len()].as_raw_fd();
        self.iovs.clear();
        self.iovs.extend(parts.iter().map(|p| iovec_of(p)));
        let mut addr = sockaddr_v4(dst);
        let mut control = [0u64; CONTROL_LEN / 8];
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_name = ptr::addr_of_mut!(addr).cast();
        msg.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = self.iovs.as_mut_ptr();
        msg.msg_iovlen = self.iovs.len();
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL_LEN;
        let tos = libc::c_int::from(tos);
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        // SAFETY: `control` is CONTROL_LEN bytes, 8-aligned, and the three messages take
        // CMSG_SPACE(2) + CMSG_SPACE(4) + CMSG_SPACE(12) = 16 + 16 + 32 bytes of it, so
        // CMSG_FIRSTHDR / CMSG_NXTHDR return headers inside it (checked non-null) and each
        // CMSG_DATA write of `len` bytes stays inside the message's space.
        let used = unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            let mut used = 0usize;
            let mut put = |c: *mut libc::cmsghdr, level, ty, data: *const u8, len: usize| {
                if c.is_null() {
                    return false;
                }
                (*c).cmsg_level = level;
                (*c).cmsg_type = ty;
                (*c).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
                ptr::copy_nonoverlapping(data, libc::CMSG_DATA(c), len);
                used += libc::CMSG_SPACE(len as u32) as usize;
                true
            };
            let mut ok = put(
                c,
                libc::SOL_UDP,
                UDP_SEGMENT,
                segment.to_ne_bytes().as_ptr(),
                2,
            );
            // CMSG_NXTHDR reads cmsg_len of the current header to find the next one, and
            // checks it against msg_controllen.
            c = libc::CMSG_NXTHDR(&msg, c);
            ok &= put(
                c,
                libc::IPPROTO_IP,
                libc::IP_TOS,
                ptr::addr_of!(tos).cast(),
                mem::size_of::<libc::c_int>(),
            );
            if !src.is_unspecified() {
                c = libc::CMSG_NXTHDR(&msg, c);
                ok &= put(
                    c,
                    libc::IPPROTO_IP,
                    libc::IP_PKTINFO,
                    ptr::addr_of!(info).cast(),
                    mem::size_of::<libc::in_pktinfo>(),
                );
            }
            if ok {
                used
            } else {
                0
            }
        };
        if used == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        msg.msg_controllen = used;
        // SAFETY: `msg` points at `addr`, `iovs` (which point at the caller's slices) and
        // `control`, all alive for the call.
        unsafe { send_msg(fd, &msg) }
    }
}

fn sockaddr_v4(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn a_train_arrives_as_datagrams_of_the_segment_size() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let mut pool = UdpGsoPool::new(2).unwrap();
        assert_ne!(pool.port(0), pool.port(1));
        let a = [1u8; 100];
        let b = [2u8; 150];
        let c = [3u8; 50];
        let sent = pool
            .send(1, to, Ipv4Addr::LOCALHOST, 0x10, 120, &[&a, &b, &c])
            .unwrap();
        assert_eq!(sent, 300);
        let mut buf = [0u8; 2048];
        let mut lens = Vec::new();
        for _ in 0..3 {
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(from.port(), pool.port(1).unwrap());
            lens.push(n);
        }
        assert_eq!(lens, [120, 120, 60]);
    }
}

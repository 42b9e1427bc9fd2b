//! Raw IPv4 sockets for tunnel traffic, moved in batches.
//!
//! - [`RawSender`]: `socket(AF_INET, SOCK_RAW, IPPROTO_RAW)`, which implies `IP_HDRINCL`: the
//!   caller builds the outer IPv4 header. Each packet goes out as two iovecs, outer header and
//!   inner packet, so the inner packet is never copied; a batch is one `sendmmsg` call.
//! - [`RawReceiver`]: `socket(AF_INET, SOCK_RAW, 4 or 47)`, the director's IPIP or GRE packets
//!   on a real server, outer IPv4 header included. While it is open the kernel stops answering
//!   tunnel packets with ICMP protocol-unreachable.
//! - [`UdpReceiver`]: a UDP socket for GUE; gives each datagram's payload and source.
//!
//! The `mmsghdr` / `iovec` / `sockaddr_in` arrays are allocated once and refilled on every call.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::mmsg::{empty_iovec, empty_mmsghdr, send_gather, SendBatch};
use super::{poll_readable, PacketBatch, PacketMeta, SendReport};

/// Socket buffer size asked for on every tunnel socket (the kernel caps it at `*mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// One packet [`RawSender::send_batch`] could not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsgError {
    /// Position of the packet in the batch.
    pub index: usize,
    /// The `errno` the kernel gave for it.
    pub errno: i32,
}

impl MsgError {
    /// `EMSGSIZE`: the packet is larger than the route's MTU allows (`IP_HDRINCL` never
    /// fragments).
    pub fn is_too_big(&self) -> bool {
        self.errno == libc::EMSGSIZE
    }

    /// The error as an [`io::Error`], for logging.
    pub fn to_io_error(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno)
    }
}

/// Sends IPv4 packets whose header the caller built, in batches.
///
/// One sender per worker thread: the internal arrays make `send_batch` take `&mut self`.
pub struct RawSender {
    sock: Socket,
    batch: SendBatch<libc::sockaddr_in>,
}

impl std::fmt::Debug for RawSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSender")
            .field("fd", &self.sock.as_raw_fd())
            .field("max_batch", &self.batch.max_batch())
            .finish()
    }
}

impl RawSender {
    /// Opens the raw socket; each `sendmmsg` call carries up to `max_batch` packets (at least
    /// 1; larger batches are split).
    pub fn new(max_batch: usize) -> io::Result<RawSender> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("open raw IPv4 socket: {e}")))?;
        // Best effort: a small buffer only means more ENOBUFS under load.
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        Ok(RawSender {
            sock,
            batch: SendBatch::new(max_batch, sockaddr_v4(Ipv4Addr::UNSPECIFIED, 0)),
        })
    }

    /// The largest number of packets one `sendmmsg` carries.
    pub fn max_batch(&self) -> usize {
        self.batch.max_batch()
    }

    /// Sends every `(destination, outer header, inner packet)`: the datagram on the wire is the
    /// header followed by the packet. The header must be a complete IPv4 header (the kernel fills
    /// in total length and checksum, and the ID when it is 0).
    ///
    /// Never fails as a whole: packets the kernel refuses are counted in the report and listed,
    /// with their position, in [`failures`](RawSender::failures) until the next call.
    pub fn send_batch<'a, I>(&mut self, items: I) -> SendReport
    where
        I: IntoIterator<Item = (Ipv4Addr, &'a [u8], &'a [u8])>,
    {
        let fd = self.sock.as_raw_fd();
        let items = items
            .into_iter()
            .map(|(dst, header, inner)| (sockaddr_v4(dst, 0), header, inner));
        self.batch.send(fd, items)
    }

    /// The packets the last [`send_batch`](RawSender::send_batch) could not send.
    pub fn failures(&self) -> &[MsgError] {
        self.batch.failures()
    }

    /// Sends one packet (outer header then inner packet) with `sendmsg`; returns the bytes sent.
    pub fn send(&self, dst: Ipv4Addr, header: &[u8], inner: &[u8]) -> io::Result<usize> {
        let mut iovs = [empty_iovec(); 2];
        let fd = self.sock.as_raw_fd();
        send_gather(fd, sockaddr_v4(dst, 0), &[header, inner], &mut iovs)
    }
}

impl AsRawFd for RawSender {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// The `recvmmsg` scratch arrays shared by the receivers, grown once to the batch size.
struct RecvArrays {
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    /// Per-message control buffers, only when `UDP_GRO` is on (else empty).
    control: Vec<[u64; GRO_CONTROL_LEN / 8]>,
    /// Per-message `UDP_GRO` segment size of the last receive (0: none given).
    gro: Vec<u16>,
    /// Per-message receiving interface (`IP_PKTINFO`) of the last receive (0: none given).
    ifindex: Vec<u32>,
    /// Per-message destination address of the IP header (`IP_PKTINFO`'s `ipi_addr`) of the
    /// last receive (unspecified: none given).
    dst: Vec<Ipv4Addr>,
    want_gro: bool,
    want_pktinfo: bool,
}

/// Control buffer per received message: room for one `UDP_GRO` message (an int) and one
/// `IP_PKTINFO` message (12 bytes), each with its header.
const GRO_CONTROL_LEN: usize = 64;

// SAFETY: see `RawSender`: the pointers are rewritten before every `recvmmsg` and not used after.
unsafe impl Send for RecvArrays {}

impl RecvArrays {
    fn new() -> RecvArrays {
        RecvArrays {
            msgs: Vec::new(),
            iovs: Vec::new(),
            addrs: Vec::new(),
            control: Vec::new(),
            gro: Vec::new(),
            ifindex: Vec::new(),
            dst: Vec::new(),
            want_gro: false,
            want_pktinfo: false,
        }
    }

    /// Waits up to `timeout` for `fd` to be readable, then fills `batch` with one `recvmmsg`.
    fn recv(
        &mut self,
        fd: RawFd,
        batch: &mut PacketBatch,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        batch.clear();
        if !poll_readable(fd, timeout)? {
            return Ok(0);
        }
        let cap = batch.capacity();
        if self.msgs.len() < cap {
            self.msgs.resize_with(cap, empty_mmsghdr);
            self.iovs.resize_with(cap, empty_iovec);
            self.addrs
                .resize_with(cap, || sockaddr_v4(Ipv4Addr::UNSPECIFIED, 0));
            self.gro.resize(cap, 0);
            self.ifindex.resize(cap, 0);
            self.dst.resize(cap, Ipv4Addr::UNSPECIFIED);
            if self.want_gro || self.want_pktinfo {
                self.control.resize(cap, [0; GRO_CONTROL_LEN / 8]);
            }
        }
        let slot_size = batch.slot_size();
        let stride = batch.stride();
        let base = batch.base_ptr();
        for i in 0..cap {
            self.iovs[i] = libc::iovec {
                // In bounds: the storage holds `cap * stride` bytes, `stride > slot_size`.
                iov_base: base.wrapping_add(i * stride).cast(),
                iov_len: slot_size,
            };
            let msg = &mut self.msgs[i];
            *msg = empty_mmsghdr();
            msg.msg_hdr.msg_name = ptr::addr_of_mut!(self.addrs[i]).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[i]);
            msg.msg_hdr.msg_iovlen = 1;
            if let Some(c) = self.control.get_mut(i) {
                msg.msg_hdr.msg_control = c.as_mut_ptr().cast();
                msg.msg_hdr.msg_controllen = GRO_CONTROL_LEN;
            }
        }
        // SAFETY: messages `0..cap` point at `addrs`, `iovs`, `control` (when set) and the
        // batch's slots (each `slot_size` bytes inside the batch's storage), all alive and not
        // otherwise borrowed during the call; MSG_DONTWAIT keeps it from blocking.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                cap as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        let n = (rc as usize).min(cap);
        for i in 0..n {
            let msg = &self.msgs[i];
            let (gro, ifindex, dst) = control_info(&msg.msg_hdr);
            self.gro[i] = if self.want_gro { gro } else { 0 };
            self.ifindex[i] = ifindex;
            self.dst[i] = dst;
            let addr = &self.addrs[i];
            batch.set_meta(
                i,
                PacketMeta {
                    len: msg.msg_len as usize,
                    src: SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                        u16::from_be(addr.sin_port),
                    ),
                    truncated: msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                },
            );
        }
        batch.set_filled(n);
        Ok(n)
    }
}

/// The `UDP_GRO` segment size and the `IP_PKTINFO` interface index and header destination
/// address of the control messages in `msg` (after `recvmmsg` filled it); 0 for what is not
/// there.
fn control_info(msg: &libc::msghdr) -> (u16, u32, Ipv4Addr) {
    let (mut gro, mut ifindex, mut dst) = (0, 0, Ipv4Addr::UNSPECIFIED);
    if msg.msg_control.is_null() || msg.msg_controllen < mem::size_of::<libc::cmsghdr>() {
        return (gro, ifindex, dst);
    }
    // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control messages into
    // the buffer `msg_control` points at; CMSG_FIRSTHDR / CMSG_NXTHDR stay inside it (they
    // return null past its end), and each payload is read unaligned only after checking that
    // the message's length covers it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if level == libc::SOL_UDP
                && kind == crate::sys::udp_gso::UDP_GRO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::c_int>() as u32) as usize
            {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                gro = u16::try_from(v).unwrap_or(0);
            } else if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && len >= libc::CMSG_LEN(mem::size_of::<libc::in_pktinfo>() as u32) as usize
            {
                let v = ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                ifindex = u32::try_from(v.ipi_ifindex).unwrap_or(0);
                dst = Ipv4Addr::from(u32::from_be(v.ipi_addr.s_addr));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    (gro, ifindex, dst)
}

/// Receives every IPv4 packet of one IP protocol (4 = IPIP, 47 = GRE) addressed to this host,
/// outer header included.
pub struct RawReceiver {
    sock: Socket,
    arrays: RecvArrays,
}

impl std::fmt::Debug for RawReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawReceiver")
            .field("fd", &self.sock.as_raw_fd())
            .finish()
    }
}

impl RawReceiver {
    /// Opens `socket(AF_INET, SOCK_RAW, proto)` in non-blocking mode.
    pub fn new(proto: u8) -> io::Result<RawReceiver> {
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(proto))),
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("open raw socket for IP protocol {proto}: {e}"),
            )
        })?;
        sock.set_nonblocking(true)?;
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        Ok(RawReceiver {
            sock,
            arrays: RecvArrays::new(),
        })
    }

    /// Turns on `IP_PKTINFO`: from the next receive on, [`ifindex`](Self::ifindex) tells on
    /// which interface each packet arrived.
    pub fn enable_pktinfo(&mut self) -> io::Result<()> {
        super::set_int_option(self.sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        self.arrays.want_pktinfo = true;
        // Grown to the batch size, with control buffers, at the next receive.
        self.arrays.msgs.clear();
        Ok(())
    }

    /// The index of the interface packet `i` of the last receive arrived on, once
    /// [`enable_pktinfo`](Self::enable_pktinfo) is on; else `None`.
    pub fn ifindex(&self, i: usize) -> Option<u32> {
        self.arrays.ifindex.get(i).copied().filter(|&x| x > 0)
    }

    /// Waits up to `timeout` (`None`: forever) for a packet, then stores as many as are ready,
    /// up to the batch's capacity. Each packet starts with its outer IPv4 header;
    /// [`PacketMeta::src`] is the outer source with port 0. Returns how many it stored; 0 on
    /// timeout or when a signal arrived.
    pub fn recv_batch(
        &mut self,
        batch: &mut PacketBatch,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.arrays.recv(self.sock.as_raw_fd(), batch, timeout)
    }
}

impl AsRawFd for RawReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// Receives UDP datagrams (GUE) on one port.
pub struct UdpReceiver {
    sock: Socket,
    arrays: RecvArrays,
}

impl std::fmt::Debug for UdpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpReceiver")
            .field("fd", &self.sock.as_raw_fd())
            .finish()
    }
}

impl UdpReceiver {
    /// Binds a non-blocking UDP socket to `addr` (e.g. `0.0.0.0:6080`).
    pub fn bind(addr: SocketAddrV4) -> io::Result<UdpReceiver> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_nonblocking(true)?;
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        sock.bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("bind UDP {addr}: {e}")))?;
        Ok(UdpReceiver {
            sock,
            arrays: RecvArrays::new(),
        })
    }

    /// The bound address (with the port the kernel chose when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddrV4> {
        self.sock
            .local_addr()?
            .as_socket_ipv4()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// Turns on `UDP_GRO`: the kernel may hand a train of datagrams of one flow over as one
    /// buffer of back-to-back payloads, all of [`gro_size`](Self::gro_size) bytes but the
    /// last. Fails on a kernel without it (the socket then stays as it was).
    pub fn enable_gro(&mut self) -> io::Result<()> {
        super::set_int_option(
            self.sock.as_raw_fd(),
            libc::SOL_UDP,
            crate::sys::udp_gso::UDP_GRO,
            1,
        )?;
        self.arrays.want_gro = true;
        // Grown to the batch size at the next receive.
        self.arrays.msgs.clear();
        Ok(())
    }

    /// Turns on `IP_PKTINFO`: from the next receive on, [`dst_addr`](Self::dst_addr) tells
    /// the address each datagram was sent to.
    pub fn enable_pktinfo(&mut self) -> io::Result<()> {
        super::set_int_option(self.sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        self.arrays.want_pktinfo = true;
        // Grown to the batch size, with control buffers, at the next receive.
        self.arrays.msgs.clear();
        Ok(())
    }

    /// The destination address of datagram `i` of the last receive, once
    /// [`enable_pktinfo`](Self::enable_pktinfo) is on; else `None`.
    pub fn dst_addr(&self, i: usize) -> Option<Ipv4Addr> {
        self.arrays
            .dst
            .get(i)
            .copied()
            .filter(|a| !a.is_unspecified())
    }

    /// The segment size of packet `i` of the last receive if the kernel coalesced a train
    /// into it (`UDP_GRO`), else `None`.
    pub fn gro_size(&self, i: usize) -> Option<u16> {
        self.arrays.gro.get(i).copied().filter(|&s| s > 0)
    }

    /// Waits up to `timeout` (`None`: forever) for a datagram, then stores as many as are
    /// ready, up to the batch's capacity: each slot holds the UDP payload, [`PacketMeta::src`]
    /// its source. Returns how many it stored; 0 on timeout or when a signal arrived.
    pub fn recv_batch(
        &mut self,
        batch: &mut PacketBatch,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.arrays.recv(self.sock.as_raw_fd(), batch, timeout)
    }
}

impl AsRawFd for UdpReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn sockaddr_v4(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn sockaddr_is_in_network_order() {
        let a = sockaddr_v4(Ipv4Addr::new(10, 1, 2, 3), 6080);
        assert_eq!(a.sin_addr.s_addr.to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!(a.sin_port.to_ne_bytes(), 6080u16.to_be_bytes());
    }

    #[test]
    fn udp_receiver_batches_datagrams_with_their_source() {
        let mut rx = UdpReceiver::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = tx.local_addr().unwrap();
        tx.send_to(b"one", to).unwrap();
        tx.send_to(b"two!", to).unwrap();
        tx.send_to(&[7u8; 40], to).unwrap();
        let mut batch = PacketBatch::new(8, 16);
        let mut got = Vec::new();
        for _ in 0..10 {
            rx.recv_batch(&mut batch, Some(Duration::from_millis(200)))
                .unwrap();
            for (p, m) in batch.iter() {
                assert_eq!(std::net::SocketAddr::V4(m.src), from);
                got.push((p.to_vec(), m.truncated));
            }
            if got.len() == 3 {
                break;
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (b"one".to_vec(), false));
        assert_eq!(got[1], (b"two!".to_vec(), false));
        assert_eq!(got[2], (vec![7u8; 16], true));
        // Nothing left: a short timeout returns 0.
        assert_eq!(
            rx.recv_batch(&mut batch, Some(Duration::from_millis(1)))
                .unwrap(),
            0
        );
    }

    #[test]
    fn udp_gro_gives_a_train_whole_with_its_segment_size() {
        let mut rx = UdpReceiver::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        rx.enable_gro().unwrap();
        let to = rx.local_addr().unwrap();
        let mut pool = crate::sys::udp_gso::UdpGsoPool::new(1).unwrap();
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        pool.send(0, to, Ipv4Addr::UNSPECIFIED, 0, 300, &[&data])
            .unwrap();
        let mut batch = PacketBatch::new(4, 4096);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..10 {
            let n = rx
                .recv_batch(&mut batch, Some(Duration::from_millis(200)))
                .unwrap();
            for i in 0..n {
                got.extend_from_slice(batch.get(i).unwrap());
                sizes.push(rx.gro_size(i));
            }
            if got.len() >= data.len() {
                break;
            }
        }
        assert_eq!(got, data);
        assert_eq!(sizes, [Some(300)]);
    }
}

//! The VRRP sockets of one interface: IP protocol 112 raw sockets as keepalived opens them.
//!
//! - The receiver is bound to the interface (`SO_BINDTODEVICE`), joined to 224.0.0.18 there and
//!   reads whole IPv4 packets (header included, so the TTL can be checked), non-blocking.
//! - The sender is bound to the interface and to the advert's source address, sends with TTL
//!   255 (unicast and multicast), TOS 0xc0 (network control), multicast loop off, the kernel
//!   adding the IPv4 header. It receives nothing: a socket filter drops every packet.
//! - Over IPv6 (an instance whose source is IPv6) the same pair is `AF_INET6`: the receiver
//!   joins ff02::12 on the interface and asks for the hop limit and the destination as
//!   ancillary data (`IPV6_RECVHOPLIMIT`, `IPV6_RECVPKTINFO`: a raw IPv6 socket never shows
//!   the header), [`VrrpSocket::recv6`]; the sender is bound to the source (usually the
//!   link-local address, with its scope; `IPV6_FREEBIND` so a tentative address does not fail
//!   the start), hop limit 255, traffic class 0xc0. The checksum is ours (no `IPV6_CHECKSUM`:
//!   the receiver verifies it itself and counts the failures).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;

/// The multicast group of VRRP adverts (RFC 3768 / 5798).
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// The IPv6 multicast group of VRRP adverts (RFC 5798 §5.1.2.2).
pub const VRRP_GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Both VRRP sockets of one interface.
#[derive(Debug)]
pub struct VrrpSocket {
    rx: Socket,
    tx: Socket,
    /// The interface index (IPv6 link-local destinations need it as their scope).
    ifindex: u32,
}

/// One advert read by [`VrrpSocket::recv6`]: its length in the buffer (the VRRP message, no
/// IPv6 header) and what the header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received6 {
    /// Bytes of the VRRP message.
    pub len: usize,
    /// The sender.
    pub src: Ipv6Addr,
    /// The destination (ff02::12 or our unicast address); unspecified if the kernel did not say.
    pub dst: Ipv6Addr,
    /// The hop limit it arrived with; 0 if the kernel did not say.
    pub hop_limit: u8,
}

fn context<'a>(what: &str, iface: &'a str) -> impl FnOnce(io::Error) -> io::Error + 'a {
    let what = what.to_string();
    move |e| io::Error::new(e.kind(), format!("{what} on {iface}: {e}"))
}

impl VrrpSocket {
    /// Opens the receiver and the sender on `iface` (needs `CAP_NET_RAW`), adverts leaving from
    /// `src` (an address of this host): IPv4 sockets for an IPv4 `src`, IPv6 ones otherwise.
    pub fn open(iface: &str, src: IpAddr) -> io::Result<VrrpSocket> {
        match src {
            IpAddr::V4(a) => Self::open4(iface, a),
            IpAddr::V6(a) => Self::open6(iface, a),
        }
    }

    fn open4(iface: &str, src: Ipv4Addr) -> io::Result<VrrpSocket> {
        let ifindex = super::iface::index(iface).map_err(context("interface", iface))?;
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let rx =
            Socket::new(Domain::IPV4, Type::RAW, proto).map_err(context("raw socket", iface))?;
        rx.bind_device(Some(iface.as_bytes()))
            .map_err(context("SO_BINDTODEVICE", iface))?;
        rx.join_multicast_v4_n(&VRRP_GROUP, &InterfaceIndexOrAddress::Index(ifindex))
            .map_err(context("joining 224.0.0.18", iface))?;
        rx.set_nonblocking(true)?;

        let tx =
            Socket::new(Domain::IPV4, Type::RAW, proto).map_err(context("raw socket", iface))?;
        // A classic BPF program of one instruction, `ret #0`: accept nothing.
        tx.attach_filter(&[SockFilter::new(
            (libc::BPF_RET | libc::BPF_K) as u16,
            0,
            0,
            0,
        )])
        .map_err(context("socket filter", iface))?;
        tx.bind_device(Some(iface.as_bytes()))
            .map_err(context("SO_BINDTODEVICE", iface))?;
        tx.bind(&SocketAddrV4::new(src, 0).into())
            .map_err(context(&format!("binding to {src}"), iface))?;
        tx.set_multicast_if_v4(&src)
            .map_err(context("IP_MULTICAST_IF", iface))?;
        tx.set_multicast_ttl_v4(255)?;
        tx.set_ttl_v4(255)?;
        tx.set_tos_v4(0xc0)?;
        tx.set_multicast_loop_v4(false)?;
        tx.set_nonblocking(true)?;
        Ok(VrrpSocket { rx, tx, ifindex })
    }

    fn open6(iface: &str, src: Ipv6Addr) -> io::Result<VrrpSocket> {
        let ifindex = super::iface::index(iface).map_err(context("interface", iface))?;
        let proto = Some(Protocol::from(IPPROTO_VRRP));
        let rx =
            Socket::new(Domain::IPV6, Type::RAW, proto).map_err(context("raw socket", iface))?;
        rx.bind_device(Some(iface.as_bytes()))
            .map_err(context("SO_BINDTODEVICE", iface))?;
        rx.join_multicast_v6(&VRRP_GROUP6, ifindex)
            .map_err(context("joining ff02::12", iface))?;
        rx.set_recv_hoplimit_v6(true)
            .map_err(context("IPV6_RECVHOPLIMIT", iface))?;
        set_int_option(&rx, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
            .map_err(context("IPV6_RECVPKTINFO", iface))?;
        rx.set_nonblocking(true)?;

        let tx =
            Socket::new(Domain::IPV6, Type::RAW, proto).map_err(context("raw socket", iface))?;
        tx.attach_filter(&[SockFilter::new(
            (libc::BPF_RET | libc::BPF_K) as u16,
            0,
            0,
            0,
        )])
        .map_err(context("socket filter", iface))?;
        tx.bind_device(Some(iface.as_bytes()))
            .map_err(context("SO_BINDTODEVICE", iface))?;
        tx.set_freebind_v6(true)
            .map_err(context("IPV6_FREEBIND", iface))?;
        let scope = if src.is_unicast_link_local() {
            ifindex
        } else {
            0
        };
        tx.bind(&SocketAddrV6::new(src, 0, 0, scope).into())
            .map_err(context(&format!("binding to {src}"), iface))?;
        tx.set_multicast_if_v6(ifindex)
            .map_err(context("IPV6_MULTICAST_IF", iface))?;
        tx.set_multicast_hops_v6(255)?;
        tx.set_unicast_hops_v6(255)?;
        tx.set_tclass_v6(0xc0)?;
        tx.set_multicast_loop_v6(false)?;
        tx.set_nonblocking(true)?;
        Ok(VrrpSocket { rx, tx, ifindex })
    }

    /// Sends one VRRP message (the IP payload) to `dst`: 224.0.0.18, ff02::12 or a unicast
    /// peer of the sockets' family.
    pub fn send(&self, payload: &[u8], dst: IpAddr) -> io::Result<usize> {
        let to = match dst {
            IpAddr::V4(a) => SockAddr::from(SocketAddrV4::new(a, 0)),
            IpAddr::V6(a) => {
                let scoped = a.is_multicast() || a.is_unicast_link_local();
                let scope = if scoped { self.ifindex } else { 0 };
                SockAddr::from(SocketAddrV6::new(a, 0, 0, scope))
            }
        };
        self.tx.send_to(payload, &to)
    }

    /// Reads one advert received by the IPv6 receiver into `buf` (the VRRP message) with its
    /// source, destination and hop limit; `None` when there is none waiting.
    pub fn recv6(&self, buf: &mut [u8]) -> io::Result<Option<Received6>> {
        // SAFETY: all-zero is a valid sockaddr_in6.
        let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        // u64 words keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr; the pointers set below stay valid for the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` points at `from`, `buf` (through `iov`) and `control`, all live and of
        // the lengths given; the kernel writes at most that much into each.
        let n = unsafe { libc::recvmsg(self.rx.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let mut got = Received6 {
            len: (n as usize).min(buf.len()),
            src: Ipv6Addr::from(from.sin6_addr.s6_addr),
            dst: Ipv6Addr::UNSPECIFIED,
            hop_limit: 0,
        };
        // SAFETY: `msg` was filled by recvmsg: CMSG_FIRSTHDR / CMSG_NXTHDR walk the control
        // bytes it reported within `control`, and each header's data is read unaligned with
        // the size its type has.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
                let data = libc::CMSG_DATA(c);
                if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT {
                    let hops: libc::c_int = std::ptr::read_unaligned(data.cast());
                    got.hop_limit = hops.clamp(0, 255) as u8;
                } else if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    got.dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(Some(got))
    }

    /// Reads one received IPv4 packet into `buf`; `None` when there is none waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: an initialised `[u8]` is a valid `[MaybeUninit<u8>]` of the same length, and
        // recv only writes initialised bytes into it.
        let uninit: &mut [MaybeUninit<u8>] =
            unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
        match self.rx.recv(uninit) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The receiver's descriptor, to poll.
    pub fn rx_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

/// `setsockopt(level, name, value)` for an `int` option socket2 does not wrap.
fn set_int_option(sock: &Socket, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a c_int that lives across the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

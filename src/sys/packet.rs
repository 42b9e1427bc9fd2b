//! Sending IPv4 packets in Ethernet frames to a chosen MAC address (DR mode), in batches.
//!
//! [`FrameSender`] is a `socket(AF_PACKET, SOCK_DGRAM, 0)`: for each packet the caller names
//! the interface and the destination MAC, and the kernel builds the Ethernet header (source MAC
//! of the interface, EtherType IPv4) in front of the bytes given. The IP packet itself goes out
//! exactly as given: no TTL change, no checksum change, no routing. Protocol 0 at creation
//! means the socket receives nothing. Each packet is two iovecs (a header, e.g. a fragment's
//! IPv4 header, and a slice of the packet), so nothing is copied; a batch is one `sendmmsg`.
//! The `mmsghdr` / `iovec` / `sockaddr_ll` arrays are allocated once.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr;

use socket2::{Domain, Socket, Type};

use super::raw::MsgError;
use super::{errno, SendReport};

/// Socket buffer size asked for (the kernel caps it at `wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// Where a frame goes: the interface and the next hop's Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkDst {
    /// Interface index.
    pub ifindex: u32,
    /// Destination MAC.
    pub mac: [u8; 6],
}

/// Sends IPv4 packets as Ethernet frames to given MAC addresses, in batches.
///
/// One sender per worker thread: the internal arrays make `send_batch` take `&mut self`.
pub struct FrameSender {
    sock: Socket,
    max_batch: usize,
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<[libc::iovec; 2]>,
    addrs: Vec<libc::sockaddr_ll>,
    failures: Vec<MsgError>,
}

// SAFETY: the raw pointers inside `msgs` / `iovs` are scratch values, rewritten before every
// `sendmmsg` and never read after it returns, so moving the sender to another thread cannot
// make anything dangle or race.
unsafe impl Send for FrameSender {}

impl std::fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSender")
            .field("fd", &self.sock.as_raw_fd())
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl FrameSender {
    /// Opens the packet socket (needs `CAP_NET_RAW`); each `sendmmsg` carries up to
    /// `max_batch` frames (at least 1; larger batches are split).
    pub fn new(max_batch: usize) -> io::Result<FrameSender> {
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, None)
            .map_err(|e| io::Error::new(e.kind(), format!("open AF_PACKET socket: {e}")))?;
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        let max_batch = max_batch.max(1);
        Ok(FrameSender {
            sock,
            max_batch,
            msgs: (0..max_batch).map(|_| empty_mmsghdr()).collect(),
            iovs: (0..max_batch).map(|_| [empty_iovec(); 2]).collect(),
            addrs: (0..max_batch)
                .map(|_| {
                    sockaddr_ll(LinkDst {
                        ifindex: 0,
                        mac: [0; 6],
                    })
                })
                .collect(),
            failures: Vec::with_capacity(max_batch),
        })
    }

    /// Sends every `(destination, header, rest)`: the IPv4 packet on the wire is `header`
    /// followed by `rest` (either may be empty), in an Ethernet frame to the destination.
    ///
    /// Never fails as a whole: frames the kernel refuses (`EMSGSIZE` beyond the interface MTU,
    /// `ENXIO` for an interface that is gone, `ENOBUFS`, ...) are counted in the report and
    /// listed, with their position, in [`failures`](FrameSender::failures) until the next call.
    pub fn send_batch<'a, I>(&mut self, items: I) -> SendReport
    where
        I: IntoIterator<Item = (LinkDst, &'a [u8], &'a [u8])>,
    {
        self.failures.clear();
        let mut report = SendReport::default();
        let mut base = 0;
        let mut n = 0;
        for (dst, header, rest) in items {
            self.fill(n, dst, header, rest);
            n += 1;
            if n == self.max_batch {
                self.flush(base, n, &mut report);
                base += n;
                n = 0;
            }
        }
        if n > 0 {
            self.flush(base, n, &mut report);
        }
        report
    }

    /// The frames the last [`send_batch`](FrameSender::send_batch) could not send.
    pub fn failures(&self) -> &[MsgError] {
        &self.failures
    }

    /// Points message `i` at one frame. The pointers stay valid until `flush`, because the
    /// slices live for `'a`, beyond the `send_batch` call.
    fn fill(&mut self, i: usize, dst: LinkDst, header: &[u8], rest: &[u8]) {
        self.addrs[i] = sockaddr_ll(dst);
        self.iovs[i] = [iovec_of(header), iovec_of(rest)];
        let msg = &mut self.msgs[i];
        *msg = empty_mmsghdr();
        msg.msg_hdr.msg_name = ptr::addr_of_mut!(self.addrs[i]).cast();
        msg.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_hdr.msg_iov = self.iovs[i].as_mut_ptr();
        msg.msg_hdr.msg_iovlen = 2;
    }

    /// Sends messages `0..n` (batch positions `base..base + n`). `sendmmsg` stops at the first
    /// refused message and returns how many went before it; the refused one is then retried
    /// alone, which returns its error, and skipped.
    fn flush(&mut self, base: usize, n: usize, report: &mut SendReport) {
        let fd = self.sock.as_raw_fd();
        let mut i = 0;
        while i < n {
            // SAFETY: messages `i..n` were filled by `fill` in this `send_batch` call; their
            // pointers lead to `addrs`, `iovs` and the caller's slices, all alive here.
            let rc = unsafe {
                libc::sendmmsg(fd, self.msgs[i..n].as_mut_ptr(), (n - i) as libc::c_uint, 0)
            };
            if rc > 0 {
                report.sent += rc as usize;
                i += rc as usize;
                continue;
            }
            let e = if rc == 0 { libc::EIO } else { errno() };
            if e == libc::EINTR {
                continue;
            }
            report.fail(e);
            self.failures.push(MsgError {
                index: base + i,
                errno: e,
            });
            i += 1;
        }
    }
}

impl AsRawFd for FrameSender {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

/// The link-layer address of one frame: interface, EtherType IPv4, destination MAC.
fn sockaddr_ll(dst: LinkDst) -> libc::sockaddr_ll {
    let mut addr = [0u8; 8];
    addr[..6].copy_from_slice(&dst.mac);
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::c_ushort,
        sll_protocol: (libc::ETH_P_IP as u16).to_be(),
        sll_ifindex: dst.ifindex as libc::c_int,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: addr,
    }
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: all-zero is a valid mmsghdr: null pointers, zero lengths and flags.
    unsafe { mem::zeroed() }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }
}

/// An iovec over a slice the kernel will only read.
fn iovec_of(buf: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_address_names_interface_ethertype_and_mac() {
        let a = sockaddr_ll(LinkDst {
            ifindex: 7,
            mac: [2, 0, 0, 0, 0, 0x12],
        });
        assert_eq!(a.sll_family, libc::AF_PACKET as u16);
        assert_eq!(a.sll_protocol.to_ne_bytes(), [0x08, 0x00]);
        assert_eq!(a.sll_ifindex, 7);
        assert_eq!(a.sll_halen, 6);
        assert_eq!(a.sll_addr, [2, 0, 0, 0, 0, 0x12, 0, 0]);
    }
}

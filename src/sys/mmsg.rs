//! The batched send both packet senders share ([`RawSender`](super::raw::RawSender) for
//! tunnels, [`FrameSender`](super::packet::FrameSender) for DR frames): each message is a
//! destination address and two iovecs (`[header, rest]`, so nothing is copied), up to
//! `max_batch` messages go out per `sendmmsg`, and the arrays are allocated once. With `()` as
//! the address type the messages carry no address, for connected sockets.
//!
//! [`send_gather`] sends one message of any number of buffers with `sendmsg` (one frame or
//! packet right away); [`send_msg`] is its retry loop, also used for messages with control
//! data.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr;

use super::raw::MsgError;
use super::{errno, SendReport};

/// Scratch arrays for batched sends to addresses of type `A` (a `sockaddr_*`).
pub(super) struct SendBatch<A: Copy> {
    max_batch: usize,
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<[libc::iovec; 2]>,
    addrs: Vec<A>,
    failures: Vec<MsgError>,
}

// SAFETY: the raw pointers inside `msgs` / `iovs` are scratch values, rewritten before every
// `sendmmsg` and never read after it returns, so moving the arrays to another thread cannot
// make anything dangle or race.
unsafe impl<A: Copy + Send> Send for SendBatch<A> {}

impl<A: Copy> SendBatch<A> {
    /// Arrays for `max_batch` messages (at least 1); `blank` fills the address slots.
    pub(super) fn new(max_batch: usize, blank: A) -> SendBatch<A> {
        let max_batch = max_batch.max(1);
        SendBatch {
            max_batch,
            msgs: (0..max_batch).map(|_| empty_mmsghdr()).collect(),
            iovs: (0..max_batch).map(|_| [empty_iovec(); 2]).collect(),
            addrs: vec![blank; max_batch],
            failures: Vec::with_capacity(max_batch),
        }
    }

    /// The largest number of messages one `sendmmsg` carries.
    pub(super) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The messages the last [`send`](Self::send) could not send.
    pub(super) fn failures(&self) -> &[MsgError] {
        &self.failures
    }

    /// Sends every `(address, header, rest)` on `fd`, `max_batch` per `sendmmsg`. Never fails
    /// as a whole: refused messages are counted in the report and listed, with their position,
    /// in [`failures`](Self::failures) until the next call.
    pub(super) fn send<'a, I>(&mut self, fd: RawFd, items: I) -> SendReport
    where
        I: IntoIterator<Item = (A, &'a [u8], &'a [u8])>,
    {
        self.failures.clear();
        let mut report = SendReport::default();
        let mut base = 0;
        let mut n = 0;
        for (addr, header, rest) in items {
            self.fill(n, addr, header, rest);
            n += 1;
            if n == self.max_batch {
                self.flush(fd, base, n, &mut report);
                base += n;
                n = 0;
            }
        }
        if n > 0 {
            self.flush(fd, base, n, &mut report);
        }
        report
    }

    /// Points message `i` at one datagram. The pointers stay valid until `flush`, because the
    /// slices live for `'a`, beyond the `send` call.
    fn fill(&mut self, i: usize, addr: A, header: &[u8], rest: &[u8]) {
        self.addrs[i] = addr;
        self.iovs[i] = [iovec_of(header), iovec_of(rest)];
        let msg = &mut self.msgs[i];
        *msg = empty_mmsghdr();
        // A zero-sized `A` (`()`) means a connected socket: no address at all.
        if mem::size_of::<A>() > 0 {
            msg.msg_hdr.msg_name = ptr::addr_of_mut!(self.addrs[i]).cast();
            msg.msg_hdr.msg_namelen = mem::size_of::<A>() as libc::socklen_t;
        }
        msg.msg_hdr.msg_iov = self.iovs[i].as_mut_ptr();
        msg.msg_hdr.msg_iovlen = 2;
    }

    /// Sends messages `0..n` (batch positions `base..base + n`). `sendmmsg` stops at the first
    /// refused message and returns how many went before it; the refused one is then retried
    /// alone, which returns its error, and skipped.
    fn flush(&mut self, fd: RawFd, base: usize, n: usize, report: &mut SendReport) {
        let mut i = 0;
        while i < n {
            // SAFETY: messages `i..n` were filled by `fill` in this `send` call; their pointers
            // lead to `addrs`, `iovs` and the caller's slices, all alive here.
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

/// An all-zero `mmsghdr`.
pub(super) fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: all-zero is a valid mmsghdr: null pointers, zero lengths and flags.
    unsafe { mem::zeroed() }
}

/// An empty `iovec`.
pub(super) fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }
}

/// An iovec over a slice the kernel will only read.
pub(super) fn iovec_of(buf: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    }
}

/// Sends one message to `addr` (a `sockaddr_*`) gathering `bufs` with `sendmsg`, using `iovs`
/// as scratch (at least `bufs.len()` entries, else `EMSGSIZE`); retries when interrupted.
/// Returns the bytes sent.
pub(super) fn send_gather<A: Copy>(
    fd: RawFd,
    addr: A,
    bufs: &[&[u8]],
    iovs: &mut [libc::iovec],
) -> io::Result<usize> {
    let Some(iovs) = iovs.get_mut(..bufs.len()) else {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    };
    for (iov, buf) in iovs.iter_mut().zip(bufs) {
        *iov = iovec_of(buf);
    }
    let mut addr = addr;
    // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = ptr::addr_of_mut!(addr).cast();
    msg.msg_namelen = mem::size_of::<A>() as libc::socklen_t;
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = iovs.len();
    // SAFETY: `msg` points at `addr` and `iovs`, whose entries point at `bufs`; all of them
    // outlive the call.
    unsafe { send_msg(fd, &msg) }
}

/// `sendmsg(fd, msg, 0)`, retried when interrupted; returns the bytes sent.
///
/// # Safety
///
/// Every pointer in `msg` (name, iovecs and the buffers they point at, control) must be valid
/// for reads of the length given with it for the duration of the call.
pub(super) unsafe fn send_msg(fd: RawFd, msg: &libc::msghdr) -> io::Result<usize> {
    loop {
        // SAFETY: the caller guarantees the pointers in `msg`; the kernel only reads them.
        let rc = unsafe { libc::sendmsg(fd, msg, 0) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

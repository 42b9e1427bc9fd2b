//! Everything that talks to the kernel through `unsafe`: TUN, raw sockets, batched syscalls.
//! Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! - [`batch`]: [`PacketBatch`], the reusable buffers batched receives fill.
//! - [`blast`]: connected UDP sockets sending one datagram many times per `sendmmsg` (the
//!   benchmark's load generator).
//! - [`caps`]: the capabilities the daemons keep (`capset`, bounding set, `no_new_privs`).
//! - [`cred`]: the credentials of a Unix-socket peer (`SO_PEERCRED`).
//! - [`huge`]: arrays advised for transparent huge pages (the connection table's slots).
//! - [`mcast`]: interface indexes for multicast sockets (connection sync).
//! - [`tun`]: multi-queue TUN devices.
//! - [`raw`]: the raw IPv4 sender (`IP_HDRINCL`, `sendmmsg`), the raw and UDP tunnel receivers
//!   (`recvmmsg`).
//! - [`tunsock`]: tunnel sockets of either family read one packet at a time with the
//!   addresses it carried (`IPV6_PKTINFO`): the agent's IPv6 receivers.
//! - [`netcfg`]: host network changes (routes, addresses, sysctls) undone on drop.
//! - [`journal`]: the crash journal of those changes under `/run/tunlb` (flock'd while the
//!   daemon runs), undone by the next start or `--cleanup`.
//! - [`fatal`]: a panicking thread ends the daemon (stop flag, clean restore, exit status 1).
//! - [`packet`]: the AF_PACKET sender for DR mode (IPv4 packets in Ethernet frames, `sendmmsg`).
//! - [`neigh`]: rtnetlink route lookups and the neighbour table (DR mode's MAC resolution).
//! - [`udp_gso`]: UDP sockets sending GSO trains (`UDP_SEGMENT`), for GUE.
//! - [`iface`]: an interface's index, first IPv4 address, MAC, up/down (`ioctl`).
//! - [`vrrp`]: the VRRP sockets of an interface (IP protocol 112, 224.0.0.18, TTL 255).
//! - [`arp`]: the `AF_PACKET` ARP socket the VIPs' ARP responder answers through.
//! - [`ndp`]: the `AF_PACKET` IPv6 socket (BPF: Neighbor Solicitations only, solicited-node
//!   groups joined) the responder answers IPv6 VIPs through.
//! - [`signal`]: SIGINT / SIGTERM / SIGHUP as a flag a run loop polls.
//! - [`script`]: scripts run as their user in a session of their own; keepalived's
//!   `enable_script_security` check.
//! - [`rundir`]: the runtime directory `/run/tunlb` (root-only) and the network namespace's id
//!   that names the files in it.

pub mod arp;
pub mod batch;
pub mod blast;
pub mod caps;
pub mod cred;
pub mod fatal;
pub mod huge;
pub mod iface;
pub mod journal;
pub mod mcast;
mod mmsg;
pub mod ndp;
pub mod neigh;
pub mod netcfg;
pub mod packet;
pub mod raw;
pub mod raw_tx6;
pub mod rundir;
pub mod script;
pub mod signal;
pub mod sockdiag;
pub mod tun;
pub mod tunsock;
pub mod udp_gso;
pub mod vrrp;

#[cfg(test)]
mod root_tests;
#[cfg(test)]
pub(crate) mod testing;

pub use batch::{PacketBatch, PacketMeta};

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What a batched send did with each packet: how many went out and why the others did not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Packets the kernel accepted.
    pub sent: usize,
    /// Packets refused, for any reason (`too_big` included).
    pub failed: usize,
    /// Packets refused with `EMSGSIZE`: larger than the route's MTU allows.
    pub too_big: usize,
    /// The `errno` of the last refused packet, if any.
    pub last_errno: Option<i32>,
}

impl SendReport {
    /// Counts one refused packet.
    fn fail(&mut self, errno: i32) {
        self.failed += 1;
        if errno == libc::EMSGSIZE {
            self.too_big += 1;
        }
        self.last_errno = Some(errno);
    }

    /// The last refusal as an [`io::Error`], for logging.
    pub fn last_error(&self) -> Option<io::Error> {
        self.last_errno.map(io::Error::from_raw_os_error)
    }
}

/// Waits until `fd` is readable or `timeout` passes (`None`: wait forever).
///
/// Returns `Ok(false)` on timeout and when a signal interrupted the wait, so the caller gets a
/// chance to look at [`signal::pending`].
pub fn poll_readable(fd: RawFd, timeout: Option<Duration>) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = match timeout {
        None => -1,
        // Round up so a 100 µs timeout does not become a busy loop of zero-millisecond polls.
        Some(t) => t.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    };
    // SAFETY: `pfd` is a valid pollfd that lives across the call, and the count is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(rc > 0)
}

/// Waits until one of `fds` is readable or `timeout` passes; fills `ready` with the readable
/// positions. A signal ends the wait early with nothing ready.
pub fn poll_any(
    fds: &[RawFd],
    timeout: std::time::Duration,
    ready: &mut Vec<usize>,
) -> io::Result<()> {
    ready.clear();
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout
        .as_micros()
        .div_ceil(1000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfds.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(());
        }
        return Err(err);
    }
    ready.extend(
        pfds.iter()
            .enumerate()
            .filter(|(_, p)| p.revents != 0)
            .map(|(i, _)| i),
    );
    Ok(())
}

/// Moves the calling thread (only it, and threads it creates later) into a new, empty network
/// namespace, which the kernel deletes when nothing uses it any more. Needs root
/// (`CAP_SYS_ADMIN`). Meant for tests: a thread gets a private network that cannot leak.
pub fn unshare_net_namespace() -> io::Result<()> {
    // SAFETY: unshare(2) takes only flags and changes the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setsockopt(fd, level, name, &v, sizeof(int))`: the integer socket options socket2 has no
/// setter for (`IP_PKTINFO`, `UDP_GRO`, `PACKET_VNET_HDR`).
pub(crate) fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` is a live c_int and the length passed is its size; a bad `fd` is an error
    // return, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The current thread's `errno`.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Asks the CPU to start loading the cache line holding `value`, without waiting for it: the
/// data path calls it for every packet of a batch before deciding any, so the table lookups'
/// cache misses overlap instead of queueing one after another. A hint only: it never faults and
/// changes nothing observable.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; a prefetch does not access
    // memory architecturally (it cannot fault), and the pointer comes from a live reference.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_report_counts_too_big_separately() {
        let mut r = SendReport::default();
        r.fail(libc::EMSGSIZE);
        r.fail(libc::ENOBUFS);
        assert_eq!((r.failed, r.too_big), (2, 1));
        assert_eq!(r.last_errno, Some(libc::ENOBUFS));
        assert!(r.last_error().is_some());
    }

    #[test]
    fn poll_times_out_on_an_idle_pipe() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!poll_readable(fds[0], Some(Duration::from_millis(1))).unwrap());
        // SAFETY: writing one byte from a valid buffer into the pipe's write end.
        assert_eq!(unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) }, 1);
        assert!(poll_readable(fds[0], Some(Duration::from_millis(1))).unwrap());
        for fd in fds {
            // SAFETY: both descriptors were opened above and are closed once.
            unsafe { libc::close(fd) };
        }
    }
}

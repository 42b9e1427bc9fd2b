//! Multi-queue TUN devices.
//!
//! The device is created with the `tun-rs` crate (it does the `TUNSETIFF` ioctl with
//! `IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`, opens one descriptor per queue with
//! [`tun_rs::SyncDevice::try_clone`], and sets MTU and link state); packets are then moved with
//! plain `poll` / `read` / `write` on each queue's descriptor so a batch read costs no allocation
//! and a worker can wake up on a timeout. `tun-rs` also knows `IFF_VNET_HDR` + `TUNSETOFFLOAD`
//! (its `offload` option), which is where GSO/GRO support will plug in: see [`TunConfig`].
//!
//! The device is not persistent: it disappears when the last queue is closed.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::{errno, poll_readable, PacketBatch, PacketMeta, SendReport};

/// How to create a TUN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunConfig {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Number of queues (descriptors); more than 1 sets `IFF_MULTI_QUEUE`.
    pub queues: usize,
    /// Interface MTU.
    pub mtu: u16,
    /// Keep the 4-byte packet-information prefix (flags + ethertype) on every packet, i.e. do
    /// not set `IFF_NO_PI`. Off by default: packets are bare IP.
    pub packet_info: bool,
    /// Bring the link up after creating it.
    pub up: bool,
}

impl TunConfig {
    /// A config with `IFF_NO_PI`, the link brought up.
    pub fn new(name: &str, queues: usize, mtu: u16) -> TunConfig {
        TunConfig {
            name: name.to_owned(),
            queues,
            mtu,
            packet_info: false,
            up: true,
        }
    }
}

/// A TUN device and its queues.
#[derive(Debug)]
pub struct TunDevice {
    name: String,
    queues: Vec<TunQueue>,
}

impl TunDevice {
    /// Creates TUN device `name` with `queues` queues, `IFF_NO_PI`, the given MTU, link up.
    pub fn create(name: &str, queues: usize, mtu: u16) -> io::Result<TunDevice> {
        TunDevice::with_config(&TunConfig::new(name, queues, mtu))
    }

    /// Creates a TUN device as `config` says.
    pub fn with_config(config: &TunConfig) -> io::Result<TunDevice> {
        if config.queues == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TUN device needs at least one queue",
            ));
        }
        if config.name.is_empty() || config.name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TUN device name {:?} must be 1 to 15 bytes long",
                    config.name
                ),
            ));
        }
        let first = tun_rs::DeviceBuilder::new()
            .name(config.name.clone())
            .mtu(config.mtu)
            .multi_queue(config.queues > 1)
            .packet_information(config.packet_info)
            .enable(config.up)
            .build_sync()
            .map_err(|e| with_context(e, &format!("create TUN device {}", config.name)))?;
        let name = first.name().unwrap_or_else(|_| config.name.clone());
        let mut queues = Vec::with_capacity(config.queues);
        queues.push(TunQueue::new(first)?);
        for i in 1..config.queues {
            let next = queues[0]
                .dev
                .try_clone()
                .map_err(|e| with_context(e, &format!("open queue {i} of TUN device {name}")))?;
            queues.push(TunQueue::new(next)?);
        }
        Ok(TunDevice { name, queues })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index.
    pub fn index(&self) -> io::Result<u32> {
        match self.queues.first() {
            Some(q) => q.dev.if_index(),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Hands out the queues, one per worker thread. The device lives as long as any queue.
    pub fn queues(self) -> Vec<TunQueue> {
        self.queues
    }
}

/// One queue of a TUN device: a descriptor in non-blocking mode.
pub struct TunQueue {
    dev: tun_rs::SyncDevice,
}

impl std::fmt::Debug for TunQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunQueue")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl TunQueue {
    fn new(dev: tun_rs::SyncDevice) -> io::Result<TunQueue> {
        dev.set_nonblocking(true)?;
        Ok(TunQueue { dev })
    }

    /// Waits up to `timeout` (`None`: forever) for a packet, then reads as many as are ready
    /// without blocking, up to the batch's capacity. Returns how many it stored (also
    /// `batch.len()`); 0 on timeout or when a signal arrived.
    ///
    /// A packet longer than the batch's slot size is stored cut and marked
    /// [`PacketMeta::truncated`].
    pub fn recv_batch(
        &self,
        batch: &mut PacketBatch,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        batch.clear();
        let fd = self.as_raw_fd();
        if !poll_readable(fd, timeout)? {
            return Ok(0);
        }
        let mut n = 0;
        while n < batch.capacity() {
            let max = batch.slot_size();
            // One byte longer than the slot: TUN reads cut silently, so a read that fills the
            // spare byte is how a too-long packet shows.
            let Some(slot) = batch.slot_mut(n) else { break };
            let cap = slot.len();
            // SAFETY: `slot` is a writable buffer of `cap` bytes borrowed for the call.
            let rc = unsafe { libc::read(fd, slot.as_mut_ptr().cast(), cap) };
            if rc < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => break,
                    // Report a failure only when nothing was read; else it recurs next call.
                    _ if n == 0 => return Err(err),
                    _ => break,
                }
            }
            let len = rc as usize;
            batch.set_meta(
                n,
                PacketMeta {
                    len: len.min(max),
                    src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                    truncated: len > max,
                },
            );
            n += 1;
        }
        batch.set_filled(n);
        Ok(n)
    }

    /// Writes one packet into the device (the kernel then routes it as if it had arrived on
    /// this interface).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        // SAFETY: `packet` is a readable buffer of `packet.len()` bytes borrowed for the call.
        let rc = unsafe { libc::write(self.as_raw_fd(), packet.as_ptr().cast(), packet.len()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Writes every packet, one `write` each (TUN has no batched write without `IFF_VNET_HDR`),
    /// and reports how many the kernel took.
    pub fn send_batch<'a, I>(&self, packets: I) -> SendReport
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let fd = self.as_raw_fd();
        let mut report = SendReport::default();
        for packet in packets {
            loop {
                // SAFETY: `packet` is a readable buffer of `packet.len()` bytes for the call.
                let rc = unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
                if rc >= 0 {
                    report.sent += 1;
                    break;
                }
                let e = errno();
                if e != libc::EINTR {
                    report.fail(e);
                    break;
                }
            }
        }
        report
    }

    /// The underlying `tun-rs` device (for ioctls this module does not wrap).
    pub fn device(&self) -> &tun_rs::SyncDevice {
        &self.dev
    }
}

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.as_raw_fd()
    }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_and_zero_queues_before_touching_the_kernel() {
        assert!(TunDevice::create("", 1, 1500).is_err());
        assert!(TunDevice::create("a-name-longer-than-15", 1, 1500).is_err());
        assert!(TunDevice::create("tunlb-x", 0, 1500).is_err());
    }
}

//! Where a DR real server is on the LAN ([`NeighEntry`]), in a slot the neighbour resolver
//! writes and every worker reads without a lock ([`NeighSlot`]).

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Where a DR real server is on the LAN: resolved from the kernel's route and neighbour tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighEntry {
    /// The interface the kernel routes the real server through (directly connected).
    pub ifindex: u32,
    /// The real server's Ethernet address.
    pub mac: [u8; 6],
    /// That interface's MTU: the largest IP packet a frame on it carries.
    pub mtu: u16,
}

/// A real server's [`NeighEntry`], written by the resolver thread and read by every worker for
/// every packet, without a lock: a sequence lock over two atomics. A reader never sees half of
/// one entry and half of another; it retries in the rare case a write overlaps its read.
#[derive(Debug, Default)]
pub struct NeighSlot {
    /// Even: stable; odd: a write is in progress.
    seq: AtomicU32,
    /// 0: no entry.
    ifindex: AtomicU32,
    /// MAC in the low 48 bits, MTU in the high 16.
    mac_mtu: AtomicU64,
}

impl NeighSlot {
    /// The current entry, if the server's MAC is known.
    #[inline]
    pub fn get(&self) -> Option<NeighEntry> {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let ifindex = self.ifindex.load(Ordering::Relaxed);
            let mac_mtu = self.mac_mtu.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) != before {
                continue;
            }
            if ifindex == 0 {
                return None;
            }
            let b = mac_mtu.to_le_bytes();
            return Some(NeighEntry {
                ifindex,
                mac: [b[0], b[1], b[2], b[3], b[4], b[5]],
                mtu: u16::from_le_bytes([b[6], b[7]]),
            });
        }
    }

    /// Replaces the entry (`None`: unresolved). An entry with interface index 0 counts as none.
    pub fn set(&self, entry: Option<NeighEntry>) {
        let (ifindex, mac_mtu) = match entry {
            Some(e) => {
                let mut b = [0u8; 8];
                b[..6].copy_from_slice(&e.mac);
                b[6..].copy_from_slice(&e.mtu.to_le_bytes());
                (e.ifindex, u64::from_le_bytes(b))
            }
            None => (0, 0),
        };
        // Take the write side: make the sequence odd (writers exclude each other here).
        let mut seq = self.seq.load(Ordering::Relaxed);
        loop {
            if seq & 1 == 1 {
                std::hint::spin_loop();
                seq = self.seq.load(Ordering::Relaxed);
                continue;
            }
            match self.seq.compare_exchange_weak(
                seq,
                seq.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => seq = now,
            }
        }
        // Readers that see the new values below also see the odd sequence above.
        fence(Ordering::Release);
        self.ifindex.store(ifindex, Ordering::Relaxed);
        self.mac_mtu.store(mac_mtu, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

//! A fixed set of packet buffers that batched receives fill and the data path reads and edits in
//! place.
//!
//! One contiguous allocation holds `capacity` slots of `slot_size` bytes each (plus one spare
//! byte per slot, which lets a plain `read` notice a packet longer than the slot); a receive call
//! fills slots `0..len()` and records each packet's length and source. Nothing is allocated after
//! [`PacketBatch::new`].

use std::net::{Ipv4Addr, SocketAddrV4};

/// What a receive call learned about one packet besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// Number of bytes of the slot that hold the packet.
    pub len: usize,
    /// Where the datagram came from, for socket receivers (port 0 for raw sockets);
    /// `0.0.0.0:0` for TUN reads.
    pub src: SocketAddrV4,
    /// The packet was longer than the slot and was cut to `len` bytes: it must be dropped.
    pub truncated: bool,
}

impl PacketMeta {
    const EMPTY: PacketMeta = PacketMeta {
        len: 0,
        src: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        truncated: false,
    };
}

/// Buffers for up to `capacity` packets of up to `slot_size` bytes each.
#[derive(Debug)]
pub struct PacketBatch {
    storage: Vec<u8>,
    slot_size: usize,
    /// Distance between slots: `slot_size + 1`.
    stride: usize,
    meta: Vec<PacketMeta>,
    len: usize,
}

impl PacketBatch {
    /// Allocates `capacity` slots of `slot_size` bytes (both at least 1).
    pub fn new(capacity: usize, slot_size: usize) -> PacketBatch {
        let capacity = capacity.max(1);
        let slot_size = slot_size.max(1);
        let stride = slot_size + 1;
        PacketBatch {
            storage: vec![0; capacity * stride],
            slot_size,
            stride,
            meta: vec![PacketMeta::EMPTY; capacity],
            len: 0,
        }
    }

    /// How many packets the batch can hold.
    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    /// The size of one slot: the largest packet a receive can store whole.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// How many packets the last receive stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the last receive stored no packet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets the stored packets (the slots keep their bytes).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Packet `i` (`i < len()`), or `None`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let meta = self.meta.get(..self.len)?.get(i)?;
        let start = i * self.stride;
        self.storage.get(start..start + meta.len)
    }

    /// Packet `i` (`i < len()`) for in-place edits, or `None`.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let meta = self.meta.get(..self.len)?.get(i)?;
        let start = i * self.stride;
        self.storage.get_mut(start..start + meta.len)
    }

    /// Everything known about packet `i` (`i < len()`), or `None`.
    pub fn meta(&self, i: usize) -> Option<&PacketMeta> {
        self.meta.get(..self.len)?.get(i)
    }

    /// The stored packets with their metadata, in receive order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &PacketMeta)> + '_ {
        self.storage
            .chunks_exact(self.stride)
            .zip(&self.meta)
            .take(self.len)
            .map(|(slot, meta)| (&slot[..meta.len.min(slot.len())], meta))
    }

    /// The stored packets with their metadata, for in-place edits.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&mut [u8], &PacketMeta)> + '_ {
        self.storage
            .chunks_exact_mut(self.stride)
            .zip(&self.meta)
            .take(self.len)
            .map(|(slot, meta)| {
                let len = meta.len.min(slot.len());
                (&mut slot[..len], meta)
            })
    }

    /// Sets packet `i`'s length after an in-place edit that shortened or lengthened it (up to the
    /// slot size). Returns false, changing nothing, when `i` or `len` is out of range.
    pub fn set_len(&mut self, i: usize, len: usize) -> bool {
        if len > self.slot_size {
            return false;
        }
        match self.meta.get_mut(..self.len).and_then(|m| m.get_mut(i)) {
            Some(meta) => {
                meta.len = len;
                true
            }
            None => false,
        }
    }

    /// Whole slot `i` (`i < capacity()`) for a receive call to fill, spare byte included
    /// (`slot_size() + 1` bytes): a read that fills it all got a packet longer than the slot.
    pub(crate) fn slot_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let start = i.checked_mul(self.stride)?;
        self.storage.get_mut(start..start + self.stride)
    }

    /// Distance in bytes between the starts of two slots (`slot_size() + 1`).
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Raw pointer to the first slot; slot `i` starts `i * stride()` bytes further. Taken
    /// once per receive call so the iovecs built from it all derive from one borrow.
    pub(crate) fn base_ptr(&mut self) -> *mut u8 {
        self.storage.as_mut_ptr()
    }

    /// Records what a receive call stored in slot `i` (`i < capacity()`).
    pub(crate) fn set_meta(&mut self, i: usize, meta: PacketMeta) {
        if let Some(m) = self.meta.get_mut(i) {
            *m = PacketMeta {
                len: meta.len.min(self.slot_size),
                ..meta
            };
        }
    }

    /// Sets how many slots hold packets (clamped to the capacity).
    pub(crate) fn set_filled(&mut self, n: usize) {
        self.len = n.min(self.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_slots_are_visible_in_order() {
        let mut b = PacketBatch::new(3, 8);
        assert!(b.is_empty());
        b.slot_mut(0).unwrap()[..2].copy_from_slice(&[1, 2]);
        b.set_meta(
            0,
            PacketMeta {
                len: 2,
                ..PacketMeta::EMPTY
            },
        );
        b.slot_mut(1).unwrap()[..3].copy_from_slice(&[3, 4, 5]);
        b.set_meta(
            1,
            PacketMeta {
                len: 3,
                ..PacketMeta::EMPTY
            },
        );
        b.set_filled(2);
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(0), Some(&[1, 2][..]));
        assert_eq!(b.get(1), Some(&[3, 4, 5][..]));
        assert_eq!(b.get(2), None);
        let all: Vec<&[u8]> = b.iter().map(|(p, _)| p).collect();
        assert_eq!(all, vec![&[1, 2][..], &[3, 4, 5][..]]);
        b.get_mut(1).unwrap()[0] = 9;
        assert!(b.set_len(1, 1));
        assert_eq!(b.get(1), Some(&[9][..]));
        assert!(!b.set_len(1, 9));
        assert!(!b.set_len(2, 1));
        b.clear();
        assert_eq!(b.iter().count(), 0);
    }

    #[test]
    fn lengths_are_clamped_to_the_slot() {
        let mut b = PacketBatch::new(1, 4);
        b.set_meta(
            0,
            PacketMeta {
                len: 100,
                truncated: true,
                ..PacketMeta::EMPTY
            },
        );
        b.set_filled(5);
        assert_eq!(b.len(), 1);
        assert_eq!(b.get(0).map(<[u8]>::len), Some(4));
        assert!(b.meta(0).unwrap().truncated);
        assert_eq!(b.slot_mut(0).map(|s| s.len()), Some(5));
        assert!(b.slot_mut(1).is_none());
    }
}

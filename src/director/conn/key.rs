//! Flow keys: [`ConnKey`] (IPv4), [`ConnKey6`] (IPv6) and [`TableKey`], what the connection
//! table and the persistence templates need of a key.
//!
//! The two families live in separate tables ([`ConnTable`](super::ConnTable) and
//! [`ConnTable6`](super::ConnTable6), [`TemplateTable`](super::TemplateTable) and
//! [`TemplateTable6`](super::TemplateTable6)) rather than one table of a key wide enough for
//! both: an IPv4 flow keeps its 28-byte slot (58.7 bytes per flow at 1M flows), and each
//! table is a plain instantiation of one generic type, with no enum in its slots and no
//! dynamic dispatch.

use core::fmt;
use core::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::hash::{ConnHash4, ConnHash6};

/// [`ConnKey::flags`] (and [`ConnKey6::flags`]) bit marking a persistence template key
/// (cport 0, caddr masked).
pub const KEY_TEMPLATE: u8 = 0x01;

/// What [`FlowTable`](super::FlowTable) and [`Templates`](super::Templates) need of a key: a
/// small `Copy` value compared with `==`, and a keyed hash (its keys drawn from the table's
/// secret seed, so that no client can aim flows at one run of slots).
///
/// Implemented by [`ConnKey`] and [`ConnKey6`]; every method is resolved at compile time.
pub trait TableKey: Copy + Eq + Hash + fmt::Debug + fmt::Display {
    /// The keyed hash of this kind of key.
    type Hasher: Copy + fmt::Debug;

    /// A value for empty slots. Never compared: a lookup stops at an empty slot.
    const EMPTY: Self;

    /// The keyed hash's keys, drawn from `seed`.
    fn keyed_hasher(seed: u64) -> Self::Hasher;

    /// The key's hash under `h`'s keys: all 64 bits well mixed (the table takes its home slot
    /// from the low bits and a fingerprint from the top byte).
    fn keyed_hash(&self, h: &Self::Hasher) -> u64;

    /// Whether this is a persistence template key (`flags & KEY_TEMPLATE`).
    fn is_template(&self) -> bool;
}

/// IPv4 flow key as the client sent it. `flags & KEY_TEMPLATE` marks a persistence template
/// key (cport 0, caddr masked). 14 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub proto: u8,
    /// Key flags: [`KEY_TEMPLATE`].
    pub flags: u8,
    /// Client address (source of the client's packets).
    pub caddr: Ipv4Addr,
    /// Client port.
    pub cport: u16,
    /// Virtual address (destination of the client's packets).
    pub vaddr: Ipv4Addr,
    /// Virtual port.
    pub vport: u16,
}

impl ConnKey {
    /// The key of an ordinary flow (no flags).
    pub const fn new(proto: u8, caddr: Ipv4Addr, cport: u16, vaddr: Ipv4Addr, vport: u16) -> Self {
        ConnKey {
            proto,
            flags: 0,
            caddr,
            cport,
            vaddr,
            vport,
        }
    }

    /// Whether this is a persistence template key.
    pub const fn is_template(&self) -> bool {
        self.flags & KEY_TEMPLATE != 0
    }
}

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proto {} {}:{} -> {}:{}",
            self.proto, self.caddr, self.cport, self.vaddr, self.vport
        )
    }
}

impl TableKey for ConnKey {
    type Hasher = ConnHash4;

    const EMPTY: ConnKey = ConnKey::new(0, Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::UNSPECIFIED, 0);

    fn keyed_hasher(seed: u64) -> ConnHash4 {
        ConnHash4::from_seed(seed)
    }

    /// The key in two words: client address, port, protocol and flags; virtual address and
    /// port.
    #[inline(always)]
    fn keyed_hash(&self, h: &ConnHash4) -> u64 {
        let lo = u64::from(u32::from(self.caddr))
            | u64::from(self.cport) << 32
            | u64::from(self.proto) << 48
            | u64::from(self.flags) << 56;
        let hi = u64::from(u32::from(self.vaddr)) | u64::from(self.vport) << 32;
        h.hash(lo, hi)
    }

    fn is_template(&self) -> bool {
        ConnKey::is_template(self)
    }
}

/// IPv6 flow key as the client sent it; the same fields as [`ConnKey`] with IPv6 addresses.
/// 38 bytes, 2-byte aligned (the addresses are byte arrays): a table slot of 52 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey6 {
    /// IP protocol number (6 TCP, 17 UDP, 58 ICMPv6), the upper-layer header's.
    pub proto: u8,
    /// Key flags: [`KEY_TEMPLATE`].
    pub flags: u8,
    /// Client address (source of the client's packets).
    pub caddr: Ipv6Addr,
    /// Client port.
    pub cport: u16,
    /// Virtual address (destination of the client's packets).
    pub vaddr: Ipv6Addr,
    /// Virtual port.
    pub vport: u16,
}

impl ConnKey6 {
    /// The key of an ordinary flow (no flags).
    pub const fn new(proto: u8, caddr: Ipv6Addr, cport: u16, vaddr: Ipv6Addr, vport: u16) -> Self {
        ConnKey6 {
            proto,
            flags: 0,
            caddr,
            cport,
            vaddr,
            vport,
        }
    }

    /// Whether this is a persistence template key.
    pub const fn is_template(&self) -> bool {
        self.flags & KEY_TEMPLATE != 0
    }
}

impl fmt::Display for ConnKey6 {
    /// Addresses in brackets, as ipvsadm prints IPv6 endpoints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proto {} [{}]:{} -> [{}]:{}",
            self.proto, self.caddr, self.cport, self.vaddr, self.vport
        )
    }
}

impl TableKey for ConnKey6 {
    type Hasher = ConnHash6;

    const EMPTY: ConnKey6 = ConnKey6::new(0, Ipv6Addr::UNSPECIFIED, 0, Ipv6Addr::UNSPECIFIED, 0);

    fn keyed_hasher(seed: u64) -> ConnHash6 {
        ConnHash6::from_seed(seed)
    }

    /// The two addresses, then one word of ports, protocol and flags.
    #[inline(always)]
    fn keyed_hash(&self, h: &ConnHash6) -> u64 {
        let rest = u64::from(self.cport)
            | u64::from(self.vport) << 16
            | u64::from(self.proto) << 32
            | u64::from(self.flags) << 40;
        h.hash(u128::from(self.caddr), u128::from(self.vaddr), rest)
    }

    fn is_template(&self) -> bool {
        ConnKey6::is_template(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sizes() {
        assert_eq!(core::mem::size_of::<ConnKey>(), 14);
        assert_eq!(core::mem::size_of::<ConnKey6>(), 38);
        assert_eq!(core::mem::align_of::<ConnKey6>(), 2);
    }

    #[test]
    fn ipv6_key_prints_addresses_in_brackets() {
        let k = ConnKey6::new(
            17,
            "2001:db8::10".parse().unwrap(),
            5353,
            "2001:db8::1".parse().unwrap(),
            53,
        );
        assert!(!k.is_template());
        assert_eq!(
            k.to_string(),
            "proto 17 [2001:db8::10]:5353 -> [2001:db8::1]:53"
        );
        let t = ConnKey6 {
            flags: KEY_TEMPLATE,
            ..k
        };
        assert!(t.is_template() && TableKey::is_template(&t));
    }

    /// Every field takes part in the hash: changing any one changes it (for these keys), and
    /// the client and virtual sides are not interchangeable.
    #[test]
    fn every_field_moves_the_hash() {
        let h = ConnKey::keyed_hasher(3);
        let k = ConnKey::new(
            6,
            Ipv4Addr::new(10, 0, 0, 1),
            1234,
            Ipv4Addr::new(10, 9, 9, 9),
            80,
        );
        let variants = [
            ConnKey { proto: 17, ..k },
            ConnKey { flags: 1, ..k },
            ConnKey {
                caddr: Ipv4Addr::new(10, 0, 0, 2),
                ..k
            },
            ConnKey { cport: 1235, ..k },
            ConnKey {
                vaddr: Ipv4Addr::new(10, 9, 9, 8),
                ..k
            },
            ConnKey { vport: 81, ..k },
            ConnKey::new(6, k.vaddr, k.vport, k.caddr, k.cport),
        ];
        for v in variants {
            assert_ne!(v.keyed_hash(&h), k.keyed_hash(&h), "{v}");
        }
        assert_eq!(k.keyed_hash(&h), { k }.keyed_hash(&h));

        let h = ConnKey6::keyed_hasher(3);
        let c: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let v: Ipv6Addr = "2001:db8:2::1".parse().unwrap();
        let k = ConnKey6::new(6, c, 1234, v, 80);
        let bit = |a: Ipv6Addr, n: u32| Ipv6Addr::from(u128::from(a) ^ 1 << n);
        let mut variants = vec![
            ConnKey6 { proto: 17, ..k },
            ConnKey6 { flags: 1, ..k },
            ConnKey6 { cport: 1235, ..k },
            ConnKey6 { vport: 81, ..k },
            ConnKey6::new(6, v, 80, c, 1234),
        ];
        for n in [0, 31, 32, 63, 64, 95, 96, 127] {
            variants.push(ConnKey6 {
                caddr: bit(c, n),
                ..k
            });
            variants.push(ConnKey6 {
                vaddr: bit(v, n),
                ..k
            });
        }
        for x in variants {
            assert_ne!(x.keyed_hash(&h), k.keyed_hash(&h), "{x}");
        }
        // Another seed, another hash.
        assert_ne!(k.keyed_hash(&ConnKey6::keyed_hasher(4)), k.keyed_hash(&h));
    }
}

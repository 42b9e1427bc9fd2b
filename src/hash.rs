//! The flow hashes, each written once: key material from a seed ([`splitmix64`]), the keyed
//! multiply-fold of table lookups ([`folded_mul`], [`MixState`]; the connection table's
//! [`ConnHash4`] and [`ConnHash6`]) and the flow hash that spreads
//! tunnelled packets over ECMP paths and receive queues ([`flow_hash`], [`packet_flow_hash`]).
//!
//! None is cryptographic. The keyed ones take secret keys drawn from a random seed, so an
//! attacker who does not know it cannot aim flows at one bucket; the flow hashes are unkeyed
//! (the GUE source port a flow gets must not change across restarts).

use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;

/// One step of splitmix64: turns a seed into well-spread key material (advances `state`).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 128-bit product of `a` and `b`, its halves xored.
#[inline(always)]
pub fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A keyed multiply-fold hash for hash maps with small keys (fast for one or two words; the
/// secret keys keep an attacker from aiming flows at one bucket): the NAT table's shards and
/// the per-packet lookup of a TUN real server's frame link, where std's SipHash cost more.
#[derive(Clone, Copy, Debug)]
pub struct MixState {
    k0: u64,
    k1: u64,
}

impl MixState {
    /// Keys drawn from `seed`.
    pub fn from_seed(seed: u64) -> MixState {
        let mut s = seed;
        MixState {
            k0: splitmix64(&mut s),
            k1: splitmix64(&mut s) | 1,
        }
    }
}

impl Default for MixState {
    /// Fixed keys: for tables whose keys the operator chose (real-server addresses), which no
    /// client can aim at one bucket.
    fn default() -> Self {
        MixState::from_seed(0x7475_6e6c_622d_6c6b)
    }
}

/// The hasher [`MixState`] builds.
pub struct Mix {
    h: u64,
    k: u64,
}

impl BuildHasher for MixState {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix {
            h: self.k0,
            k: self.k1,
        }
    }
}

impl Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline(always)]
    fn write_u64(&mut self, n: u64) {
        self.h = folded_mul(self.h ^ n, self.k);
    }

    /// An `Ipv4Addr` hashes as its `u32`: one multiply, not the byte loop.
    #[inline(always)]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        self.h
    }
}

/// The connection table's keyed hash of an IPv4 flow key packed in two words: a folded
/// multiply of the two halves with secret keys, then a second folded multiply to spread the
/// result over all 64 bits. Fast, not cryptographic: without the seed an attacker cannot aim
/// flows at one run of slots.
#[derive(Clone, Copy, Debug)]
pub struct ConnHash4 {
    k0: u64,
    k1: u64,
    k2: u64,
}

impl ConnHash4 {
    /// Keys drawn from `seed`.
    pub fn from_seed(seed: u64) -> ConnHash4 {
        let mut s = seed;
        ConnHash4 {
            k0: splitmix64(&mut s),
            k1: splitmix64(&mut s),
            k2: splitmix64(&mut s) | 1,
        }
    }

    /// The hash of the key `(lo, hi)`.
    #[inline(always)]
    pub fn hash(&self, lo: u64, hi: u64) -> u64 {
        let x = folded_mul(lo ^ self.k0, hi ^ self.k1);
        folded_mul(x, self.k2)
    }
}

/// The connection table's keyed hash of an IPv6 flow key: two 128-bit addresses and a word of
/// ports, protocol and flags. The same construction as [`ConnHash4`], one level deeper: each
/// address is folded with its own pair of keys (the two multiplies run side by side), the
/// rest word joins the client's half, the halves are folded together, and a last folded
/// multiply spreads the result. Four multiplies, three deep, against two for IPv4.
#[derive(Clone, Copy, Debug)]
pub struct ConnHash6 {
    k: [u64; 6],
}

impl ConnHash6 {
    /// Keys drawn from `seed`.
    pub fn from_seed(seed: u64) -> ConnHash6 {
        let mut s = seed;
        let mut k = [0; 6];
        for k in k.iter_mut() {
            *k = splitmix64(&mut s);
        }
        k[5] |= 1;
        ConnHash6 { k }
    }

    /// The hash of the key `(caddr, vaddr, rest)`, addresses as big-endian integers.
    #[inline(always)]
    pub fn hash(&self, caddr: u128, vaddr: u128, rest: u64) -> u64 {
        let k = &self.k;
        let c = folded_mul((caddr >> 64) as u64 ^ k[0], caddr as u64 ^ k[1]);
        let v = folded_mul((vaddr >> 64) as u64 ^ k[2], vaddr as u64 ^ k[3]);
        let x = folded_mul(c ^ rest, v ^ k[4]);
        folded_mul(x, k[5])
    }
}

/// The flow hash's final mix (murmur3's fmix64 after a constant), its middle 32 bits.
#[inline(always)]
fn mix32(mut x: u64) -> u32 {
    x ^= 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 16) as u32
}

/// A cheap, well-mixed hash of a flow (client address and port, virtual address and port,
/// protocol) for the GUE source port (ECMP/RSS spreading). Unkeyed: a flow keeps its port.
#[inline]
pub fn flow_hash(caddr: Ipv4Addr, cport: u16, vaddr: Ipv4Addr, vport: u16, proto: u8) -> u32 {
    let a = u64::from(u32::from(caddr)) << 32 | u64::from(u32::from(vaddr));
    let b = u64::from(cport) << 16 | u64::from(vport) | u64::from(proto) << 32;
    mix32(a ^ b.rotate_left(29))
}

/// A hash of an IPv4 packet's flow (addresses, protocol, and ports unless it is a later
/// fragment), for the GUE source port of untracked traffic (tunnel routes, the gateway's
/// return path). Reads only what the packet has (never panics).
pub fn packet_flow_hash(packet: &[u8]) -> u32 {
    let word = |at: usize| -> u64 {
        packet.get(at..at + 4).map_or(0, |b| {
            u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        })
    };
    let ihl = packet.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
    let proto = packet.get(9).copied().unwrap_or(0);
    let later_fragment = packet
        .get(6..8)
        .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & 0x1fff != 0);
    let ports = if !later_fragment && (proto == 6 || proto == 17) {
        word(ihl)
    } else {
        0
    };
    mix32((word(12) << 32 | word(16)) ^ ports.rotate_left(29) ^ u64::from(proto) << 56)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values these hashes had before they moved here: GUE source ports and table keys
    /// must not change with a refactor.
    #[test]
    fn outputs_are_pinned() {
        let mut s = 0;
        assert_eq!(splitmix64(&mut s), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut s), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(
            folded_mul(u64::MAX, 3),
            (3u128 * u128::from(u64::MAX)) as u64 ^ 2
        );
        let (c, v) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 100, 0, 100));
        let old = |caddr: Ipv4Addr, cport: u16, vaddr: Ipv4Addr, vport: u16, proto: u8| {
            let a = u64::from(u32::from(caddr)) << 32 | u64::from(u32::from(vaddr));
            let b = u64::from(cport) << 16 | u64::from(vport) | u64::from(proto) << 32;
            let mut x = a ^ b.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            (x >> 16) as u32
        };
        for port in [0, 1, 80, 40000, u16::MAX] {
            assert_eq!(flow_hash(c, port, v, 80, 6), old(c, port, v, 80, 6));
            assert_eq!(flow_hash(c, 53, v, port, 17), old(c, 53, v, port, 17));
        }
    }

    /// The IPv4 connection table's hash kept its values when it moved here from the table
    /// (a table's layout for a seed is unchanged).
    #[test]
    fn conn_hash4_is_the_tables_former_hash() {
        let old = |seed: u64, lo: u64, hi: u64| {
            let mut s = seed;
            let (k0, k1, k2) = (
                splitmix64(&mut s),
                splitmix64(&mut s),
                splitmix64(&mut s) | 1,
            );
            folded_mul(folded_mul(lo ^ k0, hi ^ k1), k2)
        };
        for seed in [0, 1, 0xdead_beef] {
            let h = ConnHash4::from_seed(seed);
            for (lo, hi) in [(0, 0), (1, 2), (u64::MAX, 0x0050_c000_0201)] {
                assert_eq!(h.hash(lo, hi), old(seed, lo, hi));
            }
        }
    }

    /// A tiny xorshift for the statistical tests.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// Each input bit flips about half of the output bits (avalanche), for both table hashes:
    /// over 256 random keys every input bit's mean is within 40-60% of 64 bits.
    #[test]
    fn conn_hashes_avalanche() {
        let h4 = ConnHash4::from_seed(11);
        let h6 = ConnHash6::from_seed(11);
        let mut s = 0x1234_5678_9abc_def1u64;
        // Input bits: IPv4 (lo, hi) as 128 bits; IPv6 (caddr, vaddr, rest) as 304 bits.
        let mut flips4 = [0u32; 128];
        let mut flips6 = [0u32; 304];
        let rounds = 256;
        for _ in 0..rounds {
            let (lo, hi) = (next(&mut s), next(&mut s));
            let base = h4.hash(lo, hi);
            for (bit, f) in flips4.iter_mut().enumerate() {
                let (l, h) = if bit < 64 {
                    (lo ^ 1 << bit, hi)
                } else {
                    (lo, hi ^ 1 << (bit - 64))
                };
                *f += (h4.hash(l, h) ^ base).count_ones();
            }
            let c = u128::from(next(&mut s)) << 64 | u128::from(next(&mut s));
            let v = u128::from(next(&mut s)) << 64 | u128::from(next(&mut s));
            let r = next(&mut s) & 0xffff_ffff_ffff;
            let base = h6.hash(c, v, r);
            for (bit, f) in flips6.iter_mut().enumerate() {
                let out = match bit {
                    0..128 => h6.hash(c ^ 1 << bit, v, r),
                    128..256 => h6.hash(c, v ^ 1 << (bit - 128), r),
                    _ => h6.hash(c, v, r ^ 1 << (bit - 256)),
                };
                *f += (out ^ base).count_ones();
            }
        }
        for (name, flips) in [("v4", &flips4[..]), ("v6", &flips6[..])] {
            for (bit, &f) in flips.iter().enumerate() {
                let mean = f64::from(f) / f64::from(rounds) / 64.0;
                assert!((0.4..0.6).contains(&mean), "{name} bit {bit}: {mean}");
            }
        }
    }

    /// Keys that differ in few bits (one /64's clients, consecutive ports) spread over a
    /// table's home slots as random values would, and over the fingerprint byte.
    #[test]
    fn conn_hash6_spreads_structured_keys() {
        let h = ConnHash6::from_seed(5);
        let vip = 0x2001_0db8_0000_0000_0000_0000_0000_0001u128;
        let n = 1 << 16;
        let mut homes = vec![false; n];
        let mut fps = [0u32; 256];
        for i in 0..n as u128 {
            let client = 0x2001_0db8_0001_0002_0000_0000_0000_0000u128 | (i >> 4);
            let rest = (1024 + (i as u64 & 0xf)) | (80 << 16) | (6 << 32);
            let x = h.hash(client, vip, rest);
            homes[x as usize & (n - 1)] = true;
            fps[(x >> 56) as usize] += 1;
        }
        // n keys into n slots: 1 - 1/e of the slots are used, 41,427 on average.
        let used = homes.iter().filter(|u| **u).count();
        assert!(used.abs_diff(41_427) < 800, "{used}");
        // 256 keys per fingerprint on average.
        assert!(fps.iter().all(|&c| (160..360).contains(&c)), "{fps:?}");
    }

    #[test]
    fn mix_state_hashes_an_address_as_its_u32() {
        let s = MixState::from_seed(7);
        let mut a = s.build_hasher();
        a.write_u32(0x0a00_0001);
        let mut b = s.build_hasher();
        b.write_u64(0x0a00_0001);
        assert_eq!(a.finish(), b.finish());
    }
}

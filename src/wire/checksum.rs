//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums here are 16-bit one's complement sums, *not* complemented: [`data`] and
//! [`pseudo_header_v4`] return partial sums, [`combine`] adds partial sums, and the value written
//! into a header is `!combine(&[...])`. A buffer whose stored checksum is right sums to `0xffff`.
//!
//! The update helpers take the checksum *as stored in the header* and return the new stored
//! value after a field changed from `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`),
//! so rewriting an address or a port costs a few additions instead of a pass over the payload.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Folds a 64-bit one's complement accumulator down to 16 bits.
#[inline]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Adds `word` to a 64-bit one's complement accumulator (end-around carry).
#[inline]
fn add64(acc: u64, word: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(word);
    sum + carry as u64
}

/// The one's complement sum of `bytes` taken as big-endian 16-bit words, an odd last byte padded
/// with a zero byte. Not complemented.
///
/// Sums 8 bytes at a time in native byte order and swaps once at the end (RFC 1071 §2(B): the
/// sum is byte-order independent up to a final swap). All words are 8-byte aligned relative to
/// the start of `bytes`, so the even/odd byte positions are preserved.
pub fn data(bytes: &[u8]) -> u16 {
    // Two independent accumulators keep the carry chains short.
    let (mut a, mut b) = (0u64, 0u64);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        a = add64(a, word(&c[..8]));
        b = add64(b, word(&c[8..]));
    }
    let rest = chunks.remainder();
    if rest.len() >= 8 {
        a = add64(a, word(&rest[..8]));
    }
    let mut tail = &rest[rest.len() & !7..];
    if let Some((w, r)) = tail.split_first_chunk::<4>() {
        b = add64(b, u64::from(u32::from_ne_bytes(*w)));
        tail = r;
    }
    if let Some((w, r)) = tail.split_first_chunk::<2>() {
        a = add64(a, u64::from(u16::from_ne_bytes(*w)));
        tail = r;
    }
    if let Some(&last) = tail.first() {
        a = add64(a, u64::from(u16::from_ne_bytes([last, 0])));
    }
    u16::from_be(fold(add64(a, b)))
}

/// Eight bytes as a native-endian word (`c` is exactly 8 bytes long).
#[inline]
fn word(c: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(c);
    u64::from_ne_bytes(w)
}

/// Adds partial sums (from [`data`], [`pseudo_header_v4`] or this function).
pub fn combine(sums: &[u16]) -> u16 {
    let acc: u64 = sums.iter().map(|&s| s as u64).sum();
    fold(acc)
}

/// The partial sum of the IPv4 pseudo-header for TCP/UDP: source, destination, zero, protocol,
/// and the transport `length` (header + payload).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let acc = (s >> 16) as u64
        + (s & 0xffff) as u64
        + (d >> 16) as u64
        + (d & 0xffff) as u64
        + protocol as u64
        + length as u64;
    fold(acc)
}

/// The checksum to store for `bytes` alone: `!data(bytes)`.
pub fn checksum(bytes: &[u8]) -> u16 {
    !data(bytes)
}

/// New stored checksum after a 16-bit word covered by it changed from `old` to `new`.
///
/// The word must sit at an even offset from the start of the checksummed data; for an odd
/// offset pass both values byte-swapped (see [`update_u16_at`]).
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    // RFC 1624 eqn. 3.
    !combine(&[!csum, !old, new])
}

/// Like [`update_u16`] for a 16-bit field at byte offset `offset` of the checksummed data,
/// which may be odd (a TCP option can put the MSS value anywhere).
#[inline]
pub fn update_u16_at(csum: u16, offset: usize, old: u16, new: u16) -> u16 {
    if offset.is_multiple_of(2) {
        update_u16(csum, old, new)
    } else {
        update_u16(csum, old.swap_bytes(), new.swap_bytes())
    }
}

/// New stored checksum after a 32-bit field (at an even offset) changed from `old` to `new`.
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    !combine(&[
        !csum,
        !(old >> 16) as u16,
        !(old as u16),
        (new >> 16) as u16,
        new as u16,
    ])
}

/// New stored checksum after an IPv4 address (in the header, or in a pseudo-header) changed.
#[inline]
pub fn update_addr(csum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(csum, u32::from(old), u32::from(new))
}

/// The partial sum of the IPv6 pseudo-header (RFC 8200 §8.1) for TCP, UDP and ICMPv6: source,
/// destination, the 32-bit upper-layer packet `length` (header + payload) and `next_header`
/// (the upper-layer protocol, not that of an extension header in between).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let acc = addr_v6_sum(src)
        + addr_v6_sum(dst)
        + (length >> 16) as u64
        + (length & 0xffff) as u64
        + next_header as u64;
    fold(acc)
}

/// The eight 16-bit words of an IPv6 address, added up (not folded).
#[inline]
fn addr_v6_sum(a: Ipv6Addr) -> u64 {
    a.segments().iter().map(|&w| w as u64).sum()
}

/// The sum (not complemented) of an IPv6 upper-layer packet `data` (TCP, UDP, ICMPv6 header
/// and payload) with its pseudo-header: what its checksum field verifies against (`0xffff`)
/// or, complemented, is filled with.
pub fn upper_layer_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, data: &[u8]) -> u16 {
    combine(&[
        pseudo_header_v6(src, dst, next_header, data.len() as u32),
        self::data(data),
    ])
}

/// New stored checksum after an IPv6 address covered by it (in a pseudo-header) changed from
/// `old` to `new`: RFC 1624 eqn. 3 over the eight 16-bit words, so NAT66 rewrites a TCP, UDP
/// or ICMPv6 checksum without a pass over the payload.
#[inline]
pub fn update_addr_v6(csum: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    // ~old summed word by word is 8 × 0xffff minus the sum of old: add the complements.
    let acc = (!csum) as u64
        + old.segments().iter().map(|&w| (!w) as u64).sum::<u64>()
        + addr_v6_sum(new);
    !fold(acc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny deterministic PRNG (xorshift64*) so tests need no extra crates.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
        pub(crate) fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                *b = self.next_u64() as u8;
            }
        }
    }

    /// The obvious byte-pair implementation, as a reference.
    fn slow_sum(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let hi = pair[0] as u32;
            let lo = pair.get(1).copied().unwrap_or(0) as u32;
            acc += (hi << 8) | lo;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// RFC 1071 §3's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    static RFC1071_BYTES: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    #[test]
    fn rfc1071_example() {
        assert_eq!(data(&RFC1071_BYTES), 0xddf2);
        assert_eq!(checksum(&RFC1071_BYTES), !0xddf2);
    }

    #[test]
    fn fast_sum_matches_reference_for_every_length_and_alignment() {
        let mut rng = Rng(1);
        let mut buf = [0u8; 300];
        rng.fill(&mut buf);
        for start in 0..8 {
            for end in start..buf.len() {
                assert_eq!(data(&buf[start..end]), slow_sum(&buf[start..end]));
            }
        }
        let ones = [0xffu8; 257];
        for n in 0..ones.len() {
            assert_eq!(data(&ones[..n]), slow_sum(&ones[..n]), "len {n}");
        }
    }

    #[test]
    fn combine_is_sum_of_parts() {
        let mut rng = Rng(2);
        let mut buf = [0u8; 100];
        rng.fill(&mut buf);
        // Split at even offsets only: an odd split would shift the second half's bytes.
        for cut in (0..=buf.len()).step_by(2) {
            assert_eq!(combine(&[data(&buf[..cut]), data(&buf[cut..])]), data(&buf));
        }
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(198, 51, 100, 200);
        let mut ph = [0u8; 12];
        ph[..4].copy_from_slice(&src.octets());
        ph[4..8].copy_from_slice(&dst.octets());
        ph[9] = 6;
        ph[10..12].copy_from_slice(&1480u16.to_be_bytes());
        assert_eq!(pseudo_header_v4(src, dst, 6, 1480), data(&ph));
    }

    /// Incremental updates of random 16-bit words (even and odd offsets), 32-bit words and
    /// addresses agree with a full recompute, up to the 0x0000/0xffff ambiguity of one's
    /// complement zero (both verify).
    #[test]
    fn incremental_update_equals_full_recompute() {
        let mut rng = Rng(0x5eed);
        let mut buf = [0u8; 64];
        for round in 0..20_000 {
            let len = 8 + rng.below(buf.len() - 8);
            rng.fill(&mut buf[..len]);
            // Checksum stored at 0..2, covering the whole buffer.
            buf[0] = 0;
            buf[1] = 0;
            let c = checksum(&buf[..len]);
            buf[..2].copy_from_slice(&c.to_be_bytes());
            let stored = u16::from_be_bytes([buf[0], buf[1]]);
            let updated = match round % 3 {
                0 => {
                    let at = 2 + rng.below(len - 3);
                    let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
                    let new = rng.next_u64() as u16;
                    buf[at..at + 2].copy_from_slice(&new.to_be_bytes());
                    update_u16_at(stored, at, old, new)
                }
                1 => {
                    let at = 2 + 2 * rng.below((len - 5) / 2);
                    let old = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
                    let new = rng.next_u64() as u32;
                    buf[at..at + 4].copy_from_slice(&new.to_be_bytes());
                    update_u32(stored, old, new)
                }
                _ => {
                    let at = 2 + 2 * rng.below((len - 5) / 2);
                    let old: [u8; 4] = buf[at..at + 4].try_into().unwrap();
                    let new = Ipv4Addr::from(rng.next_u64() as u32);
                    buf[at..at + 4].copy_from_slice(&new.octets());
                    update_addr(stored, Ipv4Addr::from(old), new)
                }
            };
            buf[..2].copy_from_slice(&updated.to_be_bytes());
            assert_eq!(
                data(&buf[..len]),
                0xffff,
                "round {round}: update must verify"
            );
            buf[0] = 0;
            buf[1] = 0;
            let full = checksum(&buf[..len]);
            assert!(
                updated == full
                    || (updated == 0 && full == 0xffff)
                    || (updated == 0xffff && full == 0),
                "round {round}: incremental {updated:#06x} vs full {full:#06x}"
            );
        }
    }
    #[test]
    fn pseudo_header_v6_matches_bytes() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:ffff::ffff:fffe".parse().unwrap();
        for len in [0u32, 20, 1440, 65_535, 70_000, u32::MAX] {
            let mut ph = [0u8; 40];
            ph[..16].copy_from_slice(&src.octets());
            ph[16..32].copy_from_slice(&dst.octets());
            ph[32..36].copy_from_slice(&len.to_be_bytes());
            ph[39] = 58;
            assert_eq!(pseudo_header_v6(src, dst, 58, len), data(&ph), "len {len}");
        }
    }

    /// Rewriting an IPv6 address of the pseudo-header with [`update_addr_v6`] agrees with a
    /// full recompute (up to 0x0000/0xffff), for random addresses and payloads.
    #[test]
    fn update_addr_v6_equals_full_recompute() {
        let mut rng = Rng(0x66);
        let mut payload = [0u8; 61];
        for round in 0..20_000 {
            rng.fill(&mut payload);
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            rng.fill(&mut a);
            rng.fill(&mut b);
            if round % 7 == 0 {
                b = [0xff; 16];
            }
            let (old, new, other) = (Ipv6Addr::from(a), Ipv6Addr::from(b), Ipv6Addr::LOCALHOST);
            let sum = |x: Ipv6Addr| combine(&[pseudo_header_v6(x, other, 6, 61), data(&payload)]);
            let stored = !sum(old);
            let updated = update_addr_v6(stored, old, new);
            assert_eq!(combine(&[sum(new), updated]), 0xffff, "round {round}");
            let full = !sum(new);
            assert!(
                updated == full
                    || (updated == 0 && full == 0xffff)
                    || (updated == 0xffff && full == 0),
                "round {round}: {updated:#06x} vs {full:#06x}"
            );
        }
    }
}

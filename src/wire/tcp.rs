//! TCP (RFC 9293): the [`TcpPacket`] view, [`TcpFlags`], and the MSS option read and clamp.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::{get_u16, get_u32, put_u16, put_u32, Error, IpProtocol};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// TCP option kinds this module reads.
pub mod option_kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No-operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size (length 4).
    pub const MSS: u8 = 2;
}

/// The eight TCP flag bits (the byte at offset 13).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    const NAMES: [(TcpFlags, &'static str); 8] = [
        (Self::FIN, "FIN"),
        (Self::SYN, "SYN"),
        (Self::RST, "RST"),
        (Self::PSH, "PSH"),
        (Self::ACK, "ACK"),
        (Self::URG, "URG"),
        (Self::ECE, "ECE"),
        (Self::CWR, "CWR"),
    ];

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// FIN is set.
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// SYN is set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// RST is set.
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }

    /// ACK is set.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// A connection-opening SYN: SYN without ACK, RST or FIN.
    pub const fn is_initial_syn(self) -> bool {
        self.syn() && !self.intersects(TcpFlags(Self::ACK.0 | Self::RST.0 | Self::FIN.0))
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Flag names joined by `|` (`SYN|ACK`), `-` when none is set.
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// A view of a TCP segment; the buffer is the IPv4 payload (header, options and data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 20-byte header and that the data offset
    /// is at least 20 and within the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks of [`new_checked`](Self::new_checked).
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN || hlen > len {
            return Err(Error::BadHeaderLen);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::DATA_OFF] >> 4) as usize) * 4
    }

    /// The flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// Receive window (unscaled).
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW.start)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The urgent pointer.
    pub fn urgent_ptr(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options bytes (between the fixed header and the data).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the pseudo-header and the whole buffer is right.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, data.len() as u16),
            checksum::data(data),
        ]) == 0xffff
    }

    /// Whether the checksum over the IPv6 pseudo-header (RFC 8200 §8.1: 32-bit length, next
    /// header 6) and the whole buffer is right.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::upper_layer_v6(src, dst, IpProtocol::TCP, self.buffer.as_ref()) == 0xffff
    }

    /// The MSS option's value, if the options carry a well-formed one.
    pub fn mss(&self) -> Option<u16> {
        let at = find_option(self.options(), option_kind::MSS, 4)?;
        Some(get_u16(self.options(), at + 2))
    }
}

/// Offset in `opts` of the first option of `kind` whose length byte is `len`. Walks the list
/// as a receiver would and stops, never panicking, at END, a truncated option or a length
/// byte below 2 or past the end.
fn find_option(opts: &[u8], kind: u8, len: usize) -> Option<usize> {
    let mut i = 0;
    while let Some(&k) = opts.get(i) {
        match k {
            option_kind::END => return None,
            option_kind::NOP => i += 1,
            _ => {
                let l = *opts.get(i + 1)? as usize;
                if l < 2 || i + l > opts.len() {
                    return None;
                }
                if k == kind && l == len {
                    return Some(i);
                }
                i += l;
            }
        }
    }
    None
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn rewrite_u16(&mut self, at: usize, new: u16) {
        let buf = self.buffer.as_mut();
        let old = get_u16(buf, at);
        put_u16(buf, at, new);
        let c = checksum::update_u16_at(get_u16(buf, field::CHECKSUM.start), at, old, new);
        put_u16(buf, field::CHECKSUM.start, c);
    }

    /// Sets the source port, updating the checksum incrementally.
    pub fn set_src_port(&mut self, port: u16) {
        self.rewrite_u16(field::SRC_PORT.start, port);
    }

    /// Sets the destination port, updating the checksum incrementally.
    pub fn set_dst_port(&mut self, port: u16) {
        self.rewrite_u16(field::DST_PORT.start, port);
    }

    /// Updates the checksum for an IPv4 address of the pseudo-header that changed from `old`
    /// to `new` (call it next to [`Ipv4Packet::set_src_addr`](super::Ipv4Packet::set_src_addr)
    /// or `set_dst_addr` when rewriting addresses).
    pub fn update_checksum_for_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update_addr(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Updates the checksum for an IPv6 address of the pseudo-header that changed from `old`
    /// to `new` (NAT66: next to [`Ipv6Packet::set_src_addr`](super::Ipv6Packet::set_src_addr)
    /// or `set_dst_addr`).
    pub fn update_checksum_for_addr_v6(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let c = checksum::update_addr_v6(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Rewrites the MSS option to `max` if it announces more, updating the checksum
    /// incrementally (RFC 1624). Returns whether the segment changed. Malformed options are
    /// left alone. Callers normally clamp SYN and SYN-ACK segments only.
    pub fn clamp_mss(&mut self, max: u16) -> bool {
        let Some(at) = find_option(self.options(), option_kind::MSS, 4) else {
            return false;
        };
        let value_at = HEADER_LEN + at + 2;
        if get_u16(self.buffer.as_ref(), value_at) <= max {
            return false;
        }
        self.rewrite_u16(value_at, max);
        true
    }

    /// Sets the sequence number. The checksum is not updated.
    pub fn set_seq_number(&mut self, seq: u32) {
        put_u32(self.buffer.as_mut(), field::SEQ_NUM.start, seq);
    }

    /// Sets the acknowledgment number. The checksum is not updated.
    pub fn set_ack_number(&mut self, ack: u32) {
        put_u32(self.buffer.as_mut(), field::ACK_NUM.start, ack);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60). The checksum is not updated.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (((len / 4) as u8) << 4) | (*b & 0x0f);
    }

    /// Sets the flags. The checksum is not updated.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window. The checksum is not updated.
    pub fn set_window(&mut self, window: u16) {
        put_u16(self.buffer.as_mut(), field::WINDOW.start, window);
    }

    /// Sets the urgent pointer. The checksum is not updated.
    pub fn set_urgent_ptr(&mut self, ptr: u16) {
        put_u16(self.buffer.as_mut(), field::URGENT.start, ptr);
    }

    /// Sets the checksum field as given.
    pub fn set_checksum(&mut self, csum: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, csum);
    }

    /// Computes the checksum over the pseudo-header and the whole buffer and stores it.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, data.len() as u16),
            checksum::data(data),
        ]);
        self.set_checksum(!sum);
    }

    /// Computes the checksum over the IPv6 pseudo-header and the whole buffer and stores it.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let sum = checksum::upper_layer_v6(src, dst, IpProtocol::TCP, self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// The options bytes, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The data after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::tests::Rng;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

    /// A Linux-style SYN 40000 -> 80: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    static SYN_BYTES: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, //
        0xa0, 0x02, 0xfa, 0xf0, 0x31, 0x6a, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, //
        0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, //
        0x01, 0x03, 0x03, 0x07,
    ];

    /// An ACK with 3 data bytes, 80 -> 40000, no options.
    static DATA_BYTES: [u8; 23] = [
        0x00, 0x50, 0x9c, 0x40, 0xab, 0xcd, 0xef, 0x01, 0x12, 0x34, 0x56, 0x79, //
        0x50, 0x18, 0x01, 0xf5, 0x35, 0x00, 0x00, 0x00, 0x61, 0x62, 0x63,
    ];

    #[test]
    fn parse_syn_fields() {
        let p = TcpPacket::new_checked(&SYN_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x1234_5678);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::SYN);
        assert!(p.flags().is_initial_syn());
        assert_eq!(p.window(), 64240);
        assert_eq!(p.urgent_ptr(), 0);
        assert_eq!(p.options().len(), 20);
        assert_eq!(p.payload(), &[] as &[u8]);
        assert_eq!(p.mss(), Some(1460));
        assert_eq!(p.checksum(), 0x316a);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, Ipv4Addr::new(10, 0, 0, 101)));
    }

    #[test]
    fn parse_data_fields() {
        let p = TcpPacket::new_checked(&DATA_BYTES[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.flags(), TcpFlags::ACK | TcpFlags::PSH);
        assert!(!p.flags().is_initial_syn());
        assert_eq!(p.flags().to_string(), "PSH|ACK");
        assert_eq!(p.ack_number(), 0x1234_5679);
        assert_eq!(p.window(), 501);
        assert_eq!(p.checksum(), 0x3500);
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(p.payload(), b"abc");
        assert_eq!(p.mss(), None);
    }

    #[test]
    fn build_matches_bytes() {
        let mut buf = [0u8; 40];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(40000);
        p.set_dst_port(80);
        p.set_seq_number(0x1234_5678);
        p.set_ack_number(0);
        p.set_header_len(40);
        p.set_flags(TcpFlags::SYN);
        p.set_window(64240);
        p.set_urgent_ptr(0);
        p.options_mut().copy_from_slice(&SYN_BYTES[20..]);
        p.fill_checksum(SRC, DST);
        assert_eq!(buf, SYN_BYTES);
        let mut buf = [0u8; 23];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        p.set_src_port(80);
        p.set_dst_port(40000);
        p.set_seq_number(0xabcd_ef01);
        p.set_ack_number(0x1234_5679);
        p.set_header_len(20);
        p.set_flags(TcpFlags::PSH | TcpFlags::ACK);
        p.set_window(501);
        p.payload_mut().copy_from_slice(b"abc");
        p.fill_checksum(SRC, DST);
        assert_eq!(buf, DATA_BYTES);
    }

    #[test]
    fn clamp_mss_rewrites_and_keeps_checksum_valid() {
        let mut b = SYN_BYTES;
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert!(!p.clamp_mss(1460));
        assert!(!p.clamp_mss(1500));
        assert!(p.clamp_mss(1440));
        assert_eq!(p.mss(), Some(1440));
        assert!(p.verify_checksum(SRC, DST));
        assert_eq!(p.checksum(), 0x317e); // the full recompute's value
        let mut expected = SYN_BYTES;
        expected[16..18].copy_from_slice(&[0x31, 0x7e]);
        expected[22..24].copy_from_slice(&1440u16.to_be_bytes());
        assert_eq!(b, expected);
    }

    /// The MSS option at an odd offset (after one NOP) straddles two checksum words.
    #[test]
    fn clamp_mss_at_odd_offset() {
        let mut b = [0u8; 28];
        b[..20].copy_from_slice(&SYN_BYTES[..20]);
        b[12] = 0x70;
        b[20..28].copy_from_slice(&[1, 2, 4, 0x23, 0x28, 1, 1, 0]);
        TcpPacket::new_unchecked(&mut b[..]).fill_checksum(SRC, DST);
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.mss(), Some(9000));
        assert!(p.clamp_mss(1380));
        assert_eq!(p.mss(), Some(1380));
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn malformed_options_are_left_alone() {
        for opts in [
            [2u8, 0, 0, 0, 0, 0, 0, 0],  // length 0
            [2, 1, 5, 0xb4, 0, 0, 0, 0], // length 1
            [3, 9, 2, 4, 5, 0xb4, 0, 0], // runs past the end
            [0, 2, 4, 5, 0xb4, 0, 0, 0], // after END
            [2, 3, 5, 1, 1, 1, 1, 1],    // MSS with length 3
            [1, 1, 1, 1, 1, 1, 2, 4],    // truncated MSS at the end
            [1, 1, 1, 1, 1, 1, 1, 2],    // kind without a length byte
        ] {
            let mut b = [0u8; 28];
            b[..20].copy_from_slice(&SYN_BYTES[..20]);
            b[12] = 0x70;
            b[20..].copy_from_slice(&opts);
            let before = b;
            let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
            assert_eq!(p.mss(), None, "{opts:?}");
            assert!(!p.clamp_mss(100));
            assert_eq!(b, before);
        }
    }

    #[test]
    fn prefixes_and_bad_offsets_are_rejected() {
        for n in 0..SYN_BYTES.len() {
            assert!(TcpPacket::new_checked(&SYN_BYTES[..n]).is_err(), "{n}");
        }
        let mut b = DATA_BYTES;
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(Error::BadHeaderLen));
        b[12] = 0x60;
        assert_eq!(TcpPacket::new_checked(&b[..]), Err(Error::BadHeaderLen));
    }

    #[test]
    fn port_and_address_rewrites_keep_checksum_valid() {
        let mut rng = Rng(21);
        let mut b = DATA_BYTES;
        let (mut src, mut dst) = (SRC, DST);
        for _ in 0..5_000 {
            let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
            match rng.below(4) {
                0 => p.set_src_port(rng.next_u64() as u16),
                1 => p.set_dst_port(rng.next_u64() as u16),
                2 => {
                    let new = Ipv4Addr::from(rng.next_u64() as u32);
                    p.update_checksum_for_addr(src, new);
                    src = new;
                }
                _ => {
                    let new = Ipv4Addr::from(rng.next_u64() as u32);
                    p.update_checksum_for_addr(dst, new);
                    dst = new;
                }
            }
            assert!(p.verify_checksum(src, dst));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(22);
        let mut buf = [0u8; 80];
        for _ in 0..20_000 {
            let n = rng.below(buf.len());
            rng.fill(&mut buf[..n]);
            if let Ok(mut p) = TcpPacket::new_checked(&mut buf[..n]) {
                let _ = (p.mss(), p.payload().len(), p.flags().to_string());
                let max = rng.next_u64() as u16;
                if p.clamp_mss(max) {
                    assert_eq!(p.mss(), Some(max));
                }
            }
        }
    }

    #[test]
    fn flags_helpers() {
        let sa = TcpFlags::SYN | TcpFlags::ACK;
        assert!(sa.syn() && sa.ack() && !sa.fin() && !sa.rst());
        assert!(!sa.is_initial_syn());
        assert!(sa.contains(TcpFlags::SYN));
        assert!(!TcpFlags::SYN.contains(sa));
        assert_eq!(format!("{:?}", TcpFlags(0)), "-");
        assert_eq!(
            TcpFlags(0xff).to_string(),
            "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
        );
    }

    /// A SYN over IPv6 built by etherparse verifies; fill, NAT66 rewrite and MSS clamp keep
    /// the checksum valid.
    #[test]
    fn ipv6_checksums() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
            .tcp(40000, 80, 7, 1000)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1440)])
            .unwrap()
            .write(&mut out, b"hi")
            .unwrap();
        let mut seg = out[40..].to_vec();
        let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
        assert!(p.verify_checksum_v6(src, dst));
        assert!(!p.verify_checksum_v6(src, src));
        let stored = p.checksum();
        p.fill_checksum_v6(src, dst);
        assert_eq!(p.checksum(), stored);
        let nat: Ipv6Addr = "fd00::a:b:c:d".parse().unwrap();
        p.update_checksum_for_addr_v6(dst, nat);
        assert!(p.verify_checksum_v6(src, nat));
        assert!(p.clamp_mss(1220));
        assert!(p.verify_checksum_v6(src, nat));
        assert_eq!(p.mss(), Some(1220));
    }
}

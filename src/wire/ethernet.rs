//! Ethernet II (IEEE 802.3 framing as Linux sends it): the [`EthernetFrame`] view and the
//! [`EthernetRepr`] builder for the 14-byte header the director puts in front of its frames on
//! the `AF_PACKET` socket (DR frames, TUN-mode frames, GUE trains).

use super::{get_u16, put_u16, Error};

mod field {
    use core::ops::Range;

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
}

/// Length of an Ethernet header (destination, source, EtherType).
pub const HEADER_LEN: usize = field::ETHERTYPE.end;

/// EtherType numbers the director sends, as `u16` constants: `EtherType::IPV4`.
#[allow(non_snake_case)]
pub mod EtherType {
    /// Internet Protocol version 4 (`ETH_P_IP`).
    pub const IPV4: u16 = 0x0800;
    /// Internet Protocol version 6 (`ETH_P_IPV6`).
    pub const IPV6: u16 = 0x86dd;
}

/// A view of an Ethernet frame: header, then payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checks; accessors panic if it is shorter than the header. Use
    /// for buffers this process built itself.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// The check of [`new_checked`](Self::new_checked): at least [`HEADER_LEN`] bytes.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination MAC address.
    pub fn dst_addr(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source MAC address.
    pub fn src_addr(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The EtherType field.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    m
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    /// Sets the EtherType field.
    pub fn set_ethertype(&mut self, ethertype: u16) {
        put_u16(self.buffer.as_mut(), field::ETHERTYPE.start, ethertype);
    }

    /// The bytes after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The fields of an Ethernet header, to build one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Destination MAC (the next hop's).
    pub dst_addr: [u8; 6],
    /// Source MAC (the output interface's).
    pub src_addr: [u8; 6],
    /// EtherType of the payload.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of `frame`.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> EthernetRepr {
        EthernetRepr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            ethertype: frame.ethertype(),
        }
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the start of `buf`; `Truncated` if it is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), Error> {
        let mut f = EthernetFrame::new_checked(buf)?;
        f.set_dst_addr(self.dst_addr);
        f.set_src_addr(self.src_addr);
        f.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame from 02:00:00:00:00:0b to 02:00:00:00:00:01 carrying IPv4 (the start of a
    /// header only).
    static BYTES: [u8; 16] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x08, 0x00, 0x45,
        0x00,
    ];

    fn repr() -> EthernetRepr {
        EthernetRepr {
            dst_addr: [2, 0, 0, 0, 0, 0x01],
            src_addr: [2, 0, 0, 0, 0, 0x0b],
            ethertype: EtherType::IPV4,
        }
    }

    #[test]
    fn parse_fields() {
        let f = EthernetFrame::new_checked(&BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 0x01]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 0x0b]);
        assert_eq!(f.ethertype(), 0x0800);
        assert_eq!(f.payload(), &[0x45, 0x00]);
        assert_eq!(EthernetRepr::parse(&f), repr());
    }

    #[test]
    fn emit_matches_bytes() {
        let mut buf = [0u8; 16];
        buf[14..].copy_from_slice(&[0x45, 0x00]);
        assert_eq!(repr().buffer_len(), 14);
        repr().emit(&mut buf).unwrap();
        assert_eq!(buf, BYTES);
        assert_eq!(repr().emit(&mut [0u8; 13]), Err(Error::Truncated));
    }

    #[test]
    fn build_with_setters_matches_bytes() {
        let mut buf = [0u8; 16];
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst_addr([2, 0, 0, 0, 0, 0x01]);
        f.set_src_addr([2, 0, 0, 0, 0, 0x0b]);
        f.set_ethertype(EtherType::IPV4);
        f.payload_mut().copy_from_slice(&[0x45, 0x00]);
        assert_eq!(f.into_inner(), &BYTES[..]);
    }

    #[test]
    fn every_short_prefix_is_rejected_not_panicking() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&BYTES[..n]),
                Err(Error::Truncated)
            );
        }
        assert!(EthernetFrame::new_checked(&BYTES[..HEADER_LEN]).is_ok());
    }
}

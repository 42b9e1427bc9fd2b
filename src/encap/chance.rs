//! GLB-style second chance on the wire: a GUE extension field naming the real server that had
//! a flow before the service's `mh` table changed (docs/scale-out.md, "Second chance").
//!
//! ```text
//! GUE variant 0, flags has SECOND_CHANCE_FLAG (0x0002); the field follows the
//! authentication option (flag 0x0001) when that is present, as GUE orders fields by flag bit:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |                 Second choice: IPv4 address                   |
//! |     Hops      |                 Reserved (0)                  |
//! ```
//!
//! Hops is 1 when the director sends it (the receiving agent may forward once) and 0 once an
//! agent forwarded the packet (never forwarded twice). With a tunnel key the field is covered
//! by the MAC: [`super::auth`] MACs everything after its option, this field included.

use core::fmt;
use std::net::Ipv4Addr;

use super::auth;
use super::gue::{GueHeader, HEADER_LEN};
use super::StripError;

/// The GUE flag announcing the second-chance field (tunlb's own; both ends are tunlb).
pub const SECOND_CHANCE_FLAG: u16 = 0x0002;
/// Length of the field: address 4, hops 1, reserved 3.
pub const FIELD_LEN: usize = 8;
/// The field's length in GUE Hlen words.
pub const FIELD_WORDS: u8 = (FIELD_LEN / 4) as u8;
/// Flags tunlb understands; a header with any other flag set is not tunlb's.
const KNOWN_FLAGS: u16 = auth::AUTH_FLAG | SECOND_CHANCE_FLAG;

/// The second choice a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecondChance {
    /// The real server the flow had before the table changed.
    pub server: Ipv4Addr,
    /// Forwards left: 1 from a director, 0 once forwarded.
    pub hops: u8,
}

impl SecondChance {
    /// What a director sends: `server` with one forward left.
    pub const fn new(server: Ipv4Addr) -> SecondChance {
        SecondChance { server, hops: 1 }
    }

    /// Writes the field into `out`.
    pub fn emit(&self, out: &mut [u8; FIELD_LEN]) {
        out[..4].copy_from_slice(&self.server.octets());
        out[4] = self.hops;
        out[5..].fill(0);
    }

    /// The field's bytes.
    pub fn to_bytes(self) -> [u8; FIELD_LEN] {
        let mut b = [0u8; FIELD_LEN];
        self.emit(&mut b);
        b
    }
}

/// Why a second-chance field was refused. `as_str()` is the drop label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChanceError {
    /// The flag is set but Hlen does not match the fields the flags announce.
    BadLength,
    /// Hops above 1, or reserved bytes not 0.
    BadField,
    /// The address cannot be a real server (unspecified, loopback, multicast, broadcast).
    BadAddress,
}

impl ChanceError {
    /// Every reason, in declaration order.
    pub const ALL: [ChanceError; 3] = [
        ChanceError::BadLength,
        ChanceError::BadField,
        ChanceError::BadAddress,
    ];

    /// The drop label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChanceError::BadLength => "chance_bad_length",
            ChanceError::BadField => "chance_bad_field",
            ChanceError::BadAddress => "chance_bad_address",
        }
    }
}

impl fmt::Display for ChanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the field starts in a GUE payload whose flags are `flags`.
const fn field_offset(flags: u16) -> usize {
    if flags & auth::AUTH_FLAG != 0 {
        auth::AUTH_HEADER_LEN
    } else {
        HEADER_LEN
    }
}

/// The second choice a GUE payload carries: `Ok(None)` if the header is not a tunlb variant 0
/// data header with [`SECOND_CHANCE_FLAG`] (other flags: no field); the field is refused if
/// Hlen is not exactly what the flags announce, or the field is malformed. A header that is
/// itself malformed is a [`StripError`].
pub fn parse(payload: &[u8]) -> Result<Result<Option<SecondChance>, ChanceError>, StripError> {
    let h = GueHeader::new_checked(payload)?;
    if h.variant() != 0 || h.control() || h.flags() & SECOND_CHANCE_FLAG == 0 {
        return Ok(Ok(None));
    }
    let flags = h.flags();
    let at = field_offset(flags);
    if flags & !KNOWN_FLAGS != 0 || h.header_len() != at + FIELD_LEN {
        return Ok(Err(ChanceError::BadLength));
    }
    let f = &payload[at..at + FIELD_LEN];
    if f[4] > 1 || f[5..] != [0, 0, 0] {
        return Ok(Err(ChanceError::BadField));
    }
    let server = Ipv4Addr::new(f[0], f[1], f[2], f[3]);
    if server.is_unspecified()
        || server.is_loopback()
        || server.is_multicast()
        || server.is_broadcast()
    {
        return Ok(Err(ChanceError::BadAddress));
    }
    Ok(Ok(Some(SecondChance { server, hops: f[4] })))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{params_for, INNER};
    use super::super::*;
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const P: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

    fn gue() -> Tunnel {
        Tunnel::Gue {
            port: DEFAULT_GUE_PORT,
            csum: true,
        }
    }

    fn build(seal: Option<&auth::Seal<'_>>, chance: Option<SecondChance>) -> Vec<u8> {
        let mut h = [0u8; MAX_OUTER_HEADER];
        let mut p = params_for(gue());
        p.src = SRC;
        p.dst = DST;
        let n = build_outer_chance(&p, &INNER, seal, chance, &mut h).unwrap();
        assert_eq!(
            n,
            overhead_full(&gue(), seal.is_some(), chance.is_some()),
            "{seal:?} {chance:?}"
        );
        let mut v = h[..n].to_vec();
        v.extend_from_slice(&INNER);
        v
    }

    #[test]
    fn the_field_round_trips_with_and_without_a_key() {
        let sc = SecondChance::new(P);
        // Keyless: Hlen 2, flags 0x0002; a keyless agent strips it as any GUE packet.
        let pkt = build(None, Some(sc));
        let s = strip_ip(&pkt, TunnelType::Gue, None).unwrap();
        assert_eq!(&pkt[s.inner], &INNER[..]);
        let gue = &pkt[28..];
        assert_eq!(&gue[..4], &[0x02, 4, 0x00, 0x02]);
        assert_eq!(parse(gue), Ok(Ok(Some(sc))));
        // Without the field: nothing.
        let plain = build(None, None);
        assert_eq!(parse(&plain[28..]), Ok(Ok(None)));
        // With a key: the option, then the field; the MAC covers the field.
        let k = auth::tests_support::key(7);
        let seal = auth::Seal {
            key: &k,
            lane: 1,
            seq: 10,
        };
        let pkt = build(Some(&seal), Some(sc));
        let gue = &pkt[28..];
        assert_eq!(&gue[..4], &[9, 4, 0x00, 0x03]);
        assert_eq!(parse(gue), Ok(Ok(Some(sc))));
        let mut ring = auth::Keyring::new(vec![k.clone()]).unwrap();
        let r = ring.open(SRC, DST, gue).unwrap();
        assert_eq!(r.start, auth::AUTH_HEADER_LEN + FIELD_LEN);
        assert_eq!(&gue[r], &INNER[..]);
        // A field changed on the way (hops reset to forward again, another server): bad MAC.
        for at in [auth::AUTH_HEADER_LEN, auth::AUTH_HEADER_LEN + 4] {
            let mut bad = gue.to_vec();
            bad[at] ^= 1;
            let mut ring = auth::Keyring::new(vec![k.clone()]).unwrap();
            assert_eq!(
                ring.open(SRC, DST, &bad),
                Err(auth::OpenError::Auth(auth::AuthError::BadMac))
            );
        }
        // An authenticated packet without the field still opens.
        let pkt = build(Some(&seal), None);
        let mut ring = auth::Keyring::new(vec![k]).unwrap();
        assert_eq!(
            ring.open(SRC, DST, &pkt[28..]).unwrap().start,
            auth::AUTH_HEADER_LEN
        );
    }

    #[test]
    fn malformed_fields_are_refused() {
        let sc = SecondChance::new(P);
        let pkt = build(None, Some(sc));
        let base = pkt[28..].to_vec();
        let with = |i: usize, v: u8| {
            let mut b = base.clone();
            b[i] = v;
            parse(&b)
        };
        assert_eq!(with(0, 0x01), Ok(Err(ChanceError::BadLength)));
        assert_eq!(with(0, 0x03), Ok(Err(ChanceError::BadLength)));
        assert_eq!(with(3, 0x06), Ok(Err(ChanceError::BadLength)));
        assert_eq!(with(8, 2), Ok(Err(ChanceError::BadField)));
        assert_eq!(with(9, 1), Ok(Err(ChanceError::BadField)));
        assert_eq!(with(11, 1), Ok(Err(ChanceError::BadField)));
        for a in [[0, 0, 0, 0], [127, 0, 0, 1], [224, 0, 0, 5], [255; 4]] {
            let mut b = base.clone();
            b[4..8].copy_from_slice(&a);
            assert_eq!(parse(&b), Ok(Err(ChanceError::BadAddress)), "{a:?}");
        }
        // Hops 0 (already forwarded) is valid.
        assert_eq!(
            with(8, 0),
            Ok(Ok(Some(SecondChance { server: P, hops: 0 })))
        );
        // A truncated header is the strip error.
        assert_eq!(parse(&base[..7]), Err(StripError::Truncated));
        for e in ChanceError::ALL {
            assert!(e.as_str().starts_with("chance_"));
        }
    }
}

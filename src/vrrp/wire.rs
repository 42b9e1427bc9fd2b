//! The VRRP advertisement on the wire (RFC 3768 v2, RFC 5798 v3, IPv4 only), byte-compatible
//! with keepalived 2.2.
//!
//! ```text
//!  0               1               2               3
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IPvX Addr|
//! v2: | Auth Type   | Adver Int (s) |          Checksum             |
//! v3: |(rsvd)| Max Adver Int (cs, 12 bits)|       Checksum           |
//! |                  IPv4 address 1 ... Count                        |
//! v2 only: |            Authentication data (8 bytes)                |
//! ```
//!
//! - [`check_ip`] takes a whole received IPv4 packet (what a raw `IPPROTO_VRRP` socket reads)
//!   and returns its addresses and the VRRP payload, refusing a wrong protocol, a TTL other
//!   than 255, and lengths that do not add up.
//! - [`Advert::new_checked`] wraps the payload after the structural checks (known version,
//!   exact length for the address count); after it no accessor can panic.
//!   [`Advert::verify_checksum`] checks the checksum (v2: the VRRP message alone; v3: with the
//!   IPv4 pseudo-header, as measured against keepalived here).
//! - [`build`] writes an advert's payload; the kernel adds the IP header (TTL 255 and TOS 0xc0
//!   are socket options, [`TTL`] and [`TOS`]).
//!
//! The instance-level rules (our VRID, version, auth, interval, VIP list, our own address) are
//! applied by [`Instance::handle_advert`](super::machine::Instance::handle_advert); every
//! refusal is a [`Refusal`] whose [`as_str`](Refusal::as_str) is the metric label.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::config::Version;
use crate::wire::checksum;
use crate::wire::Ipv4Packet;

mod field {
    use core::ops::Range;

    pub const VER_TYPE: usize = 0;
    pub const VRID: usize = 1;
    pub const PRIORITY: usize = 2;
    pub const COUNT: usize = 3;
    /// v2: auth type.
    pub const AUTH_TYPE: usize = 4;
    /// v2: advert interval in seconds.
    pub const ADVER_INT_V2: usize = 5;
    /// v3: 4 reserved bits and the 12-bit interval in centiseconds.
    pub const ADVER_INT_V3: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const ADDRS: usize = 8;
}

/// The IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The multicast group adverts are sent to (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The TTL every advert is sent with, and the only one accepted on multicast.
pub const TTL: u8 = 255;
/// The TOS keepalived sends adverts with (DSCP CS6, network control).
pub const TOS: u8 = 0xc0;
/// The fixed part of an advert, before the addresses.
pub const HEADER_LEN: usize = field::ADDRS;
/// The v2 authentication data after the addresses (always present in v2, zero without auth).
pub const AUTH_LEN: usize = 8;
/// The only packet type: ADVERTISEMENT.
pub const TYPE_ADVERT: u8 = 1;
/// Most addresses an advert can carry (the count is a byte).
pub const MAX_ADDRS: usize = 255;
/// v2 auth type: none.
pub const AUTH_NONE: u8 = 0;
/// v2 auth type: simple text password (keepalived's `auth_type PASS`).
pub const AUTH_PASS: u8 = 1;
/// v2 auth type: IPsec AH (keepalived's `auth_type AH`; not supported by tunlb).
pub const AUTH_AH: u8 = 2;
/// Largest v3 interval in centiseconds (12 bits).
const MAX_CENTIS: u16 = 0x0fff;

/// Why a received VRRP packet was not acted on. [`as_str`](Refusal::as_str) is the metric
/// label; [`is_error`](Refusal::is_error) says whether it is worth a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// Shorter than the IPv4 header, the VRRP header, or the addresses (+ auth data) its count
    /// announces.
    #[error("packet too short")]
    Truncated,
    /// Longer than the advert its count announces, or the IPv4 total length disagrees with
    /// what was read (keepalived 2.2 accepts no slack either).
    #[error("packet length does not match the advert")]
    Length,
    /// Not an IPv4 header (version, header length).
    #[error("malformed IPv4 header")]
    IpHeader,
    /// The IPv4 protocol is not 112.
    #[error("not VRRP (IP protocol)")]
    Protocol,
    /// A multicast advert whose TTL is not 255 (it crossed a router).
    #[error("TTL is not 255")]
    Ttl,
    /// Not the VRRP version this instance runs (or not 2 or 3 at all).
    #[error("VRRP version differs from ours")]
    Version,
    /// Not an ADVERTISEMENT (type 1).
    #[error("not an advertisement")]
    Type,
    /// The checksum does not verify.
    #[error("bad checksum")]
    Checksum,
    /// Another virtual router's advert (counted separately, not an error).
    #[error("another VRID")]
    Vrid,
    /// v2: the auth type is unknown or differs from ours.
    #[error("auth type differs from ours")]
    AuthType,
    /// v2 PASS: the password differs.
    #[error("wrong password")]
    Auth,
    /// v2: the advert interval differs from ours (keepalived drops these to prevent two
    /// masters in one VRID).
    #[error("advert interval differs from ours")]
    Interval,
    /// The address count or the addresses differ from our VIPs.
    #[error("VIP list differs from ours")]
    VipList,
    /// Sent to a multicast address while we run unicast peers, or the reverse.
    #[error("multicast/unicast destination differs from ours")]
    Destination,
    /// Our own advert looped back (source is our address).
    #[error("our own advert")]
    Own,
}

impl Refusal {
    /// A stable snake_case label, usable as a metric label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::Truncated => "truncated",
            Refusal::Length => "length",
            Refusal::IpHeader => "ip_header",
            Refusal::Protocol => "protocol",
            Refusal::Ttl => "ttl",
            Refusal::Version => "version",
            Refusal::Type => "type",
            Refusal::Checksum => "checksum",
            Refusal::Vrid => "vrid",
            Refusal::AuthType => "auth_type",
            Refusal::Auth => "auth",
            Refusal::Interval => "interval",
            Refusal::VipList => "vip_list",
            Refusal::Destination => "destination",
            Refusal::Own => "own",
        }
    }

    /// Every refusal, for tests and for pre-registering metric labels.
    pub const ALL: [Refusal; 15] = [
        Refusal::Truncated,
        Refusal::Length,
        Refusal::IpHeader,
        Refusal::Protocol,
        Refusal::Ttl,
        Refusal::Version,
        Refusal::Type,
        Refusal::Checksum,
        Refusal::Vrid,
        Refusal::AuthType,
        Refusal::Auth,
        Refusal::Interval,
        Refusal::VipList,
        Refusal::Destination,
        Refusal::Own,
    ];

    /// Whether the refusal points at a misconfiguration or a bad peer worth logging: false for
    /// another VRID on the same link and for our own adverts looped back.
    pub const fn is_error(self) -> bool {
        !matches!(self, Refusal::Vrid | Refusal::Own)
    }
}

/// What [`check_ip`] keeps of the IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    /// The sender (the advertising router's primary address).
    pub src: Ipv4Addr,
    /// 224.0.0.18 or a unicast peer address.
    pub dst: Ipv4Addr,
    /// The received TTL.
    pub ttl: u8,
}

/// Checks a whole received IPv4 packet as keepalived does before looking at VRRP: a valid
/// IPv4 header, protocol 112, total length equal to what was read, TTL 255. Returns the
/// addresses and the VRRP payload (unchecked: pass it to [`Advert::new_checked`]).
pub fn check_ip(packet: &[u8]) -> Result<(IpInfo, &[u8]), Refusal> {
    let (info, payload) = check_ip_any_ttl(packet)?;
    if info.ttl != TTL {
        return Err(Refusal::Ttl);
    }
    Ok((info, payload))
}

/// [`check_ip`] without the TTL rule: keepalived checks the TTL only on multicast, a unicast
/// peer may be routed.
pub fn check_ip_any_ttl(packet: &[u8]) -> Result<(IpInfo, &[u8]), Refusal> {
    let ip = Ipv4Packet::new_checked(packet).map_err(|e| match e {
        crate::wire::Error::Truncated => Refusal::Truncated,
        crate::wire::Error::BadLength => Refusal::Length,
        _ => Refusal::IpHeader,
    })?;
    if ip.protocol() != PROTOCOL {
        return Err(Refusal::Protocol);
    }
    if ip.total_len() as usize != packet.len() {
        return Err(Refusal::Length);
    }
    let info = IpInfo {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        ttl: ip.ttl(),
    };
    Ok((info, &packet[ip.header_len()..]))
}

/// The VRID of a received IPv4 packet carrying VRRP, for routing it to its instance before
/// any other check (as keepalived does); `None` when there is no VRRP header to read.
pub fn vrid_of(packet: &[u8]) -> Option<u8> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.protocol() != PROTOCOL {
        return None;
    }
    ip.payload().get(field::VRID).copied()
}

/// The length of an advert of `version` carrying `count` addresses.
pub const fn advert_len(version: Version, count: usize) -> usize {
    let base = HEADER_LEN + 4 * count;
    match version {
        Version::V2 => base + AUTH_LEN,
        Version::V3 => base,
    }
}

/// A zero-copy view of a VRRP advert (the IPv4 payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert<'a> {
    buf: &'a [u8],
    version: Version,
}

impl<'a> Advert<'a> {
    /// Wraps a VRRP payload after the structural checks: the fixed header is there, the
    /// version is 2 or 3, and the length is exactly the advert its address count announces
    /// (v2 with its 8 bytes of auth data). Type, checksum and everything instance-specific
    /// are left to [`verify_checksum`](Self::verify_checksum) and the instance.
    pub fn new_checked(payload: &'a [u8]) -> Result<Advert<'a>, Refusal> {
        if payload.len() < HEADER_LEN {
            return Err(Refusal::Truncated);
        }
        let version = match payload[field::VER_TYPE] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            _ => return Err(Refusal::Version),
        };
        let want = advert_len(version, payload[field::COUNT] as usize);
        if payload.len() < want {
            return Err(Refusal::Truncated);
        }
        if payload.len() > want {
            return Err(Refusal::Length);
        }
        Ok(Advert {
            buf: payload,
            version,
        })
    }

    /// The whole advert.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The VRRP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The type field (1 = ADVERTISEMENT, the only one defined).
    pub fn kind(&self) -> u8 {
        self.buf[field::VER_TYPE] & 0x0f
    }

    /// The virtual router ID.
    pub fn vrid(&self) -> u8 {
        self.buf[field::VRID]
    }

    /// The sender's priority (0 = the master is stopping, 255 = address owner).
    pub fn priority(&self) -> u8 {
        self.buf[field::PRIORITY]
    }

    /// The address count.
    pub fn count(&self) -> u8 {
        self.buf[field::COUNT]
    }

    /// v2: the auth type ([`AUTH_NONE`], [`AUTH_PASS`], [`AUTH_AH`]); v3 has none (0).
    pub fn auth_type(&self) -> u8 {
        match self.version {
            Version::V2 => self.buf[field::AUTH_TYPE],
            Version::V3 => AUTH_NONE,
        }
    }

    /// v2: the 8 bytes of authentication data after the addresses; v3: `None`.
    pub fn auth_data(&self) -> Option<&'a [u8; AUTH_LEN]> {
        match self.version {
            Version::V2 => self.buf[self.buf.len() - AUTH_LEN..].try_into().ok(),
            Version::V3 => None,
        }
    }

    /// The advert interval field as sent: v2 seconds, v3 centiseconds (12 bits).
    pub fn interval_raw(&self) -> u16 {
        match self.version {
            Version::V2 => self.buf[field::ADVER_INT_V2] as u16,
            Version::V3 => {
                let r = field::ADVER_INT_V3;
                u16::from_be_bytes([self.buf[r.start], self.buf[r.start + 1]]) & MAX_CENTIS
            }
        }
    }

    /// The advert interval (v2 whole seconds, v3 centiseconds).
    pub fn interval(&self) -> Duration {
        match self.version {
            Version::V2 => Duration::from_secs(self.interval_raw() as u64),
            Version::V3 => Duration::from_millis(self.interval_raw() as u64 * 10),
        }
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let r = field::CHECKSUM;
        u16::from_be_bytes([self.buf[r.start], self.buf[r.start + 1]])
    }

    /// The addresses, in packet order.
    pub fn addrs(&self) -> impl ExactSizeIterator<Item = Ipv4Addr> + 'a {
        let end = HEADER_LEN + 4 * self.count() as usize;
        self.buf[HEADER_LEN..end]
            .chunks_exact(4)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }

    /// Whether the checksum verifies: v2 over the VRRP message (auth data included), v3 over
    /// the IPv4 pseudo-header (`src`, `dst`, 112, length) and the message.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        sum(self.version, self.buf, src, dst) == 0xffff
    }
}

/// The one's complement sum the checksum covers (not complemented).
fn sum(version: Version, msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    match version {
        Version::V2 => checksum::data(msg),
        Version::V3 => checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, PROTOCOL, msg.len() as u16),
            checksum::data(msg),
        ]),
    }
}

/// The interval field for `interval`: v2 whole seconds (1..=255, truncated as keepalived
/// does), v3 centiseconds (1..=4095).
pub fn interval_field(version: Version, interval: Duration) -> u16 {
    match version {
        Version::V2 => interval.as_secs().clamp(1, 255) as u16,
        Version::V3 => (interval.as_millis() / 10).clamp(1, MAX_CENTIS as u128) as u16,
    }
}

/// Writes an advert's VRRP payload into `out` (cleared first) and returns its length.
///
/// `vips` beyond [`MAX_ADDRS`] are not advertised (keepalived does the same). `auth_pass`
/// is used in v2 only (auth type PASS + the 8 bytes); v3 has no auth and ignores it, as
/// keepalived does. `src` and `dst` are the IPv4 addresses the packet will carry: v3's
/// checksum covers them (`dst` is [`MULTICAST_GROUP`] or the unicast peer).
#[allow(clippy::too_many_arguments)]
pub fn build(
    version: Version,
    vrid: u8,
    priority: u8,
    interval: Duration,
    vips: &[Ipv4Addr],
    auth_pass: Option<&[u8; AUTH_LEN]>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    out: &mut Vec<u8>,
) -> usize {
    let vips = &vips[..vips.len().min(MAX_ADDRS)];
    out.clear();
    let ver = version.number();
    out.extend_from_slice(&[ver << 4 | TYPE_ADVERT, vrid, priority, vips.len() as u8]);
    let int = interval_field(version, interval);
    match version {
        Version::V2 => {
            let auth = if auth_pass.is_some() {
                AUTH_PASS
            } else {
                AUTH_NONE
            };
            out.extend_from_slice(&[auth, int as u8]);
        }
        Version::V3 => out.extend_from_slice(&int.to_be_bytes()),
    }
    out.extend_from_slice(&[0, 0]);
    for vip in vips {
        out.extend_from_slice(&vip.octets());
    }
    if version == Version::V2 {
        out.extend_from_slice(auth_pass.unwrap_or(&[0; AUTH_LEN]));
    }
    let csum = !sum(version, out, src, dst);
    out[field::CHECKSUM].copy_from_slice(&csum.to_be_bytes());
    out.len()
}

/// Wraps an advert payload in the IPv4 header the kernel would put around it (20 bytes, TOS
/// 0xc0, no DF, valid header checksum) into `out` (cleared first): for tests, the simulator
/// and the fuzz seeds; the daemon never builds IP headers itself.
pub fn wrap_ipv4(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(crate::wire::ipv4::HEADER_LEN, 0);
    out[0] = 0x45;
    out[1] = TOS;
    let total = (crate::wire::ipv4::HEADER_LEN + payload.len()).min(u16::MAX as usize) as u16;
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out[8] = ttl;
    out[9] = PROTOCOL;
    out[12..16].copy_from_slice(&src.octets());
    out[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(out);
    out[10..12].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 100);

    /// A VRRPv2 advert as keepalived 2.2 sends it: VRID 51, priority 100, one VIP
    /// 192.168.1.100, auth PASS "1111", advert_int 1; checksum over the message alone.
    static V2_PASS: [u8; 20] = [
        0x21, 0x33, 0x64, 0x01, // v2 advert, vrid 51, prio 100, 1 address
        0x01, 0x01, 0x00, 0x00, // auth PASS, 1 s, checksum (filled by the test below)
        192, 168, 1, 100, // VIP
        b'1', b'1', b'1', b'1', 0, 0, 0, 0, // password, NUL padded
    ];

    fn v2_pass() -> Vec<u8> {
        let mut b = V2_PASS.to_vec();
        let c = checksum::checksum(&b);
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
    }

    #[test]
    fn v2_checksum_is_over_the_message_only() {
        // The 16-bit words 2133 6401 0101 0000 c0a8 0164 3131 3131 0000 0000 fold to 0xaaa4;
        // the checksum is its complement, and the addresses play no part.
        assert_eq!(checksum::checksum(&V2_PASS), 0x555b);
        let b = v2_pass();
        assert_eq!(&b[6..8], &[0x55, 0x5b]);
    }

    #[test]
    fn parse_v2_field_by_field() {
        let b = v2_pass();
        let a = Advert::new_checked(&b).unwrap();
        assert_eq!(a.version(), Version::V2);
        assert_eq!(a.kind(), TYPE_ADVERT);
        assert_eq!(a.vrid(), 51);
        assert_eq!(a.priority(), 100);
        assert_eq!(a.count(), 1);
        assert_eq!(a.auth_type(), AUTH_PASS);
        assert_eq!(a.auth_data(), Some(b"1111\0\0\0\0"));
        assert_eq!(a.interval(), Duration::from_secs(1));
        assert_eq!(a.addrs().collect::<Vec<_>>(), vec![VIP]);
        assert_eq!(a.checksum(), 0x555b);
        // v2 ignores the addresses: any pair verifies.
        assert!(a.verify_checksum(SRC, MULTICAST_GROUP));
        assert!(a.verify_checksum(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
    }

    #[test]
    fn build_v2_matches_the_capture() {
        let mut out = Vec::new();
        let n = build(
            Version::V2,
            51,
            100,
            Duration::from_secs(1),
            &[VIP],
            Some(b"1111\0\0\0\0"),
            SRC,
            MULTICAST_GROUP,
            &mut out,
        );
        assert_eq!(n, 20);
        assert_eq!(out, v2_pass());
    }

    /// A VRRPv3 advert: VRID 51, priority 150, advert_int 0.1 s (10 cs), VIPs .100 and .101,
    /// from 192.168.1.11 to 224.0.0.18; checksum over the pseudo-header too.
    static V3_BYTES: [u8; 16] = [
        0x31, 0x33, 0x96, 0x02, // v3 advert, vrid 51, prio 150, 2 addresses
        0x00, 0x0a, 0x12, 0x5f, // 10 cs, checksum
        192, 168, 1, 100, //
        192, 168, 1, 101,
    ];

    #[test]
    fn v3_checksum_covers_the_pseudo_header() {
        // Pseudo-header words c0a8 010b e000 0012 0070 0010 plus the message words
        // 3133 9602 000a 0000 c0a8 0164 c0a8 0165: folded sum 0xeda0 -> checksum 0x125f.
        let a = Advert::new_checked(&V3_BYTES).unwrap();
        assert!(a.verify_checksum(SRC, MULTICAST_GROUP));
        assert!(!a.verify_checksum(SRC, Ipv4Addr::new(192, 168, 1, 14)));
        assert_eq!(a.version(), Version::V3);
        assert_eq!(a.priority(), 150);
        assert_eq!(a.interval_raw(), 10);
        assert_eq!(a.interval(), Duration::from_millis(100));
        assert_eq!(a.auth_type(), AUTH_NONE);
        assert_eq!(a.auth_data(), None);
        assert_eq!(a.addrs().len(), 2);
    }

    #[test]
    fn build_v3_matches_and_ignores_auth() {
        let mut out = Vec::new();
        let vips = [VIP, Ipv4Addr::new(192, 168, 1, 101)];
        build(
            Version::V3,
            51,
            150,
            Duration::from_millis(100),
            &vips,
            Some(b"secret\0\0"),
            SRC,
            MULTICAST_GROUP,
            &mut out,
        );
        assert_eq!(out, V3_BYTES);
    }

    #[test]
    fn v3_reserved_bits_are_masked() {
        let mut b = V3_BYTES;
        b[4] |= 0xf0;
        let a = Advert::new_checked(&b).unwrap();
        assert_eq!(a.interval_raw(), 10);
    }

    #[test]
    fn structural_refusals() {
        assert_eq!(Advert::new_checked(&[]), Err(Refusal::Truncated));
        assert_eq!(Advert::new_checked(&V3_BYTES[..7]), Err(Refusal::Truncated));
        assert_eq!(
            Advert::new_checked(&V3_BYTES[..12]),
            Err(Refusal::Truncated)
        );
        let mut long = V3_BYTES.to_vec();
        long.push(0);
        assert_eq!(Advert::new_checked(&long), Err(Refusal::Length));
        let b = v2_pass();
        // v2 without its auth data is short.
        assert_eq!(Advert::new_checked(&b[..12]), Err(Refusal::Truncated));
        for v in [0u8, 1, 4, 15] {
            let mut b = V3_BYTES;
            b[0] = v << 4 | 1;
            assert_eq!(
                Advert::new_checked(&b),
                Err(Refusal::Version),
                "version {v}"
            );
        }
    }

    #[test]
    fn interval_field_rounds_like_keepalived() {
        assert_eq!(interval_field(Version::V2, Duration::from_millis(1900)), 1);
        assert_eq!(interval_field(Version::V2, Duration::ZERO), 1);
        assert_eq!(interval_field(Version::V2, Duration::from_secs(1000)), 255);
        assert_eq!(interval_field(Version::V3, Duration::from_millis(15)), 1);
        assert_eq!(interval_field(Version::V3, Duration::from_secs(100)), 4095);
    }

    #[test]
    fn build_caps_the_address_count() {
        let vips: Vec<Ipv4Addr> = (0..300u32).map(Ipv4Addr::from).collect();
        let mut out = Vec::new();
        let n = build(
            Version::V3,
            1,
            1,
            Duration::from_secs(1),
            &vips,
            None,
            SRC,
            MULTICAST_GROUP,
            &mut out,
        );
        assert_eq!(n, advert_len(Version::V3, 255));
        let a = Advert::new_checked(&out).unwrap();
        assert_eq!(a.count(), 255);
        assert!(a.verify_checksum(SRC, MULTICAST_GROUP));
    }

    fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        wrap_ipv4(src, dst, ttl, payload, &mut p);
        p
    }

    #[test]
    fn check_ip_rules() {
        let p = ip_packet(SRC, MULTICAST_GROUP, 255, &V3_BYTES);
        let (info, payload) = check_ip(&p).unwrap();
        assert_eq!(info.src, SRC);
        assert_eq!(info.dst, MULTICAST_GROUP);
        assert_eq!(info.ttl, 255);
        assert_eq!(payload, V3_BYTES);
        assert_eq!(vrid_of(&p), Some(51));

        let low = ip_packet(SRC, MULTICAST_GROUP, 254, &V3_BYTES);
        assert_eq!(check_ip(&low), Err(Refusal::Ttl));
        assert!(check_ip_any_ttl(&low).is_ok());

        let mut udp = p.clone();
        udp[9] = 17;
        assert_eq!(check_ip(&udp), Err(Refusal::Protocol));
        assert_eq!(vrid_of(&udp), None);

        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 4]);
        assert_eq!(check_ip(&padded), Err(Refusal::Length));
        assert_eq!(check_ip(&p[..19]), Err(Refusal::Truncated));
        assert_eq!(check_ip(&p[..30]), Err(Refusal::Length));
        let mut v6 = p.clone();
        v6[0] = 0x65;
        assert_eq!(check_ip(&v6), Err(Refusal::IpHeader));
    }

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Refusal::ALL {
            let l = r.as_str();
            assert!(
                l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
            assert!(seen.insert(l), "duplicate {l}");
        }
        assert!(!Refusal::Vrid.is_error());
        assert!(!Refusal::Own.is_error());
        assert!(Refusal::Checksum.is_error());
    }
}

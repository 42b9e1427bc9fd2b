//! The VRRP advertisement on the wire (RFC 3768 v2 over IPv4, RFC 5798 v3 over IPv4 and IPv6),
//! byte-compatible with keepalived 2.2.
//!
//! ```text
//!  0               1               2               3
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IPvX Addr|
//! v2: | Auth Type   | Adver Int (s) |          Checksum             |
//! v3: |(rsvd)| Max Adver Int (cs, 12 bits)|       Checksum           |
//! |       IPvX address 1 ... Count (4 bytes each, 16 over IPv6)      |
//! v2 only: |            Authentication data (8 bytes)                |
//! ```
//!
//! The address family of the instance decides the address size ([`Family`]): an IPv6 advert
//! is always v3, sent to [`MULTICAST_GROUP6`] (ff02::12) from the interface's link-local
//! address with hop limit 255, its checksum over the IPv6 pseudo-header (RFC 5798 §5.2.8).
//!
//! - [`check_ip`] takes a whole received IPv4 packet (what a raw `IPPROTO_VRRP` socket reads)
//!   and returns its addresses and the VRRP payload, refusing a wrong protocol, a TTL other
//!   than 255, and lengths that do not add up.
//! - [`check_ipv6`] does the same for a whole IPv6 packet (tests, the simulator, fuzzing: the
//!   daemon's raw IPv6 socket gives the payload, and the hop limit and addresses as ancillary
//!   data, straight to [`IpInfo`]).
//! - [`Advert::new_checked`] (IPv4) and [`Advert::new_checked_in`] (either family) wrap the
//!   payload after the structural checks (known version, v3 over IPv6, exact length for the
//!   address count); after it no accessor can panic. [`Advert::verify_checksum`] checks the
//!   checksum (v2: the VRRP message alone; v3: with the IPv4 or IPv6 pseudo-header, as
//!   measured against keepalived here).
//! - [`build`] writes an advert's payload; the kernel adds the IP header (TTL 255 and TOS 0xc0
//!   are socket options, [`TTL`] and [`TOS`]).
//!
//! The instance-level rules (our VRID, version, auth, interval, VIP list, our own address) are
//! applied by [`Instance::handle_advert`](super::machine::Instance::handle_advert); every
//! refusal is a [`Refusal`] whose [`as_str`](Refusal::as_str) is the metric label.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::config::Version;
use crate::wire::checksum;
use crate::wire::{Ipv4Packet, Ipv6Packet};

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
/// The IPv6 multicast group adverts are sent to (RFC 5798 §5.1.2.2).
pub const MULTICAST_GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
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

/// The address family an advert carries: it decides the size of each address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// 4-byte addresses, v2 or v3.
    V4,
    /// 16-byte addresses, v3 only.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub const fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per address: 4 or 16.
    pub const fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The multicast group of this family: 224.0.0.18 or ff02::12.
    pub const fn group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(MULTICAST_GROUP),
            Family::V6 => IpAddr::V6(MULTICAST_GROUP6),
        }
    }
}

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
    /// Not an IPv4 or IPv6 header (version, header length), or not the instance's family.
    #[error("malformed IP header")]
    IpHeader,
    /// The IPv4 protocol (IPv6 next header) is not 112.
    #[error("not VRRP (IP protocol)")]
    Protocol,
    /// A multicast advert whose TTL (IPv6 hop limit) is not 255 (it crossed a router).
    #[error("TTL is not 255")]
    Ttl,
    /// A multicast IPv6 advert whose source is not a link-local address (RFC 5798 §5.1.2.1).
    #[error("IPv6 source is not link-local")]
    Source,
    /// Not the VRRP version this instance runs (or not 2 or 3 at all, or v2 over IPv6).
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
            Refusal::Source => "source",
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
    pub const ALL: [Refusal; 16] = [
        Refusal::Truncated,
        Refusal::Length,
        Refusal::IpHeader,
        Refusal::Protocol,
        Refusal::Ttl,
        Refusal::Source,
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

/// What [`check_ip`] / [`check_ipv6`] keep of the IP header (for IPv6 the daemon's socket
/// gives the same as ancillary data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    /// The sender (the advertising router's primary or link-local address).
    pub src: IpAddr,
    /// 224.0.0.18, ff02::12 or a unicast peer address.
    pub dst: IpAddr,
    /// The received TTL (IPv6 hop limit).
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
        src: IpAddr::V4(ip.src_addr()),
        dst: IpAddr::V4(ip.dst_addr()),
        ttl: ip.ttl(),
    };
    Ok((info, &packet[ip.header_len()..]))
}

/// [`check_ip`] for a whole IPv6 packet: a valid IPv6 header, next header 112 (no extension
/// headers: VRRP sends none), payload length equal to what was read, hop limit 255.
pub fn check_ipv6(packet: &[u8]) -> Result<(IpInfo, &[u8]), Refusal> {
    let (info, payload) = check_ipv6_any_hop(packet)?;
    if info.ttl != TTL {
        return Err(Refusal::Ttl);
    }
    Ok((info, payload))
}

/// [`check_ipv6`] without the hop-limit rule (a unicast peer may be routed).
pub fn check_ipv6_any_hop(packet: &[u8]) -> Result<(IpInfo, &[u8]), Refusal> {
    let ip = Ipv6Packet::new_checked(packet).map_err(|e| match e {
        crate::wire::Error::Truncated => Refusal::Truncated,
        crate::wire::Error::BadLength => Refusal::Length,
        _ => Refusal::IpHeader,
    })?;
    if ip.next_header() != PROTOCOL {
        return Err(Refusal::Protocol);
    }
    if ip.total_len() != packet.len() {
        return Err(Refusal::Length);
    }
    let info = IpInfo {
        src: IpAddr::V6(ip.src_addr()),
        dst: IpAddr::V6(ip.dst_addr()),
        ttl: ip.hop_limit(),
    };
    Ok((info, &packet[crate::wire::ipv6::HEADER_LEN..]))
}

/// [`check_ip_any_ttl`] or [`check_ipv6_any_hop`], by the packet's version nibble.
pub fn check_any(packet: &[u8]) -> Result<(IpInfo, &[u8]), Refusal> {
    match packet.first().map(|b| b >> 4) {
        Some(6) => check_ipv6_any_hop(packet),
        Some(_) => check_ip_any_ttl(packet),
        None => Err(Refusal::Truncated),
    }
}

/// The VRID of a received IPv4 packet carrying VRRP, for routing it to its instance before
/// any other check (as keepalived does); `None` when there is no VRRP header to read. (Over
/// IPv6 the socket gives the payload: its VRID is byte 1.)
pub fn vrid_of(packet: &[u8]) -> Option<u8> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.protocol() != PROTOCOL {
        return None;
    }
    ip.payload().get(field::VRID).copied()
}

/// The length of an advert of `version` carrying `count` addresses of `family`.
pub const fn advert_len(version: Version, family: Family, count: usize) -> usize {
    let base = HEADER_LEN + family.addr_len() * count;
    match version {
        Version::V2 => base + AUTH_LEN,
        Version::V3 => base,
    }
}

/// A zero-copy view of a VRRP advert (the IP payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert<'a> {
    buf: &'a [u8],
    version: Version,
    family: Family,
}

impl<'a> Advert<'a> {
    /// [`new_checked_in`](Self::new_checked_in) for an advert carried over IPv4.
    pub fn new_checked(payload: &'a [u8]) -> Result<Advert<'a>, Refusal> {
        Self::new_checked_in(payload, Family::V4)
    }

    /// Wraps a VRRP payload carried over `family` after the structural checks: the fixed
    /// header is there, the version is 2 or 3 (3 over IPv6), and the length is exactly the
    /// advert its address count announces (v2 with its 8 bytes of auth data). Type, checksum
    /// and everything instance-specific are left to [`verify_checksum`](Self::verify_checksum)
    /// and the instance.
    pub fn new_checked_in(payload: &'a [u8], family: Family) -> Result<Advert<'a>, Refusal> {
        if payload.len() < HEADER_LEN {
            return Err(Refusal::Truncated);
        }
        let version = match (payload[field::VER_TYPE] >> 4, family) {
            (2, Family::V4) => Version::V2,
            (3, _) => Version::V3,
            _ => return Err(Refusal::Version),
        };
        let want = advert_len(version, family, payload[field::COUNT] as usize);
        if payload.len() < want {
            return Err(Refusal::Truncated);
        }
        if payload.len() > want {
            return Err(Refusal::Length);
        }
        Ok(Advert {
            buf: payload,
            version,
            family,
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

    /// The address family it carries.
    pub fn family(&self) -> Family {
        self.family
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

    /// The addresses, in packet order (all of the advert's family).
    pub fn addrs(&self) -> impl ExactSizeIterator<Item = IpAddr> + 'a {
        let len = self.family.addr_len();
        let end = HEADER_LEN + len * self.count() as usize;
        self.buf[HEADER_LEN..end]
            .chunks_exact(len)
            .map(|a| match <[u8; 16]>::try_from(a) {
                Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
                Err(_) => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            })
    }

    /// Whether the checksum verifies: v2 over the VRRP message (auth data included), v3 over
    /// the IPv4 or IPv6 pseudo-header (`src`, `dst`, 112, length) and the message. Addresses
    /// of another family than the advert's never verify a v3 checksum.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        sum(self.version, self.buf, src, dst) == Some(0xffff)
    }
}

/// The one's complement sum the checksum covers (not complemented); `None` for v3 with
/// addresses of two families.
fn sum(version: Version, msg: &[u8], src: IpAddr, dst: IpAddr) -> Option<u16> {
    let pseudo = match (version, src, dst) {
        (Version::V2, _, _) => return Some(checksum::data(msg)),
        (Version::V3, IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_v4(s, d, PROTOCOL, msg.len() as u16)
        }
        (Version::V3, IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_v6(s, d, PROTOCOL, msg.len() as u32)
        }
        _ => return None,
    };
    Some(checksum::combine(&[pseudo, checksum::data(msg)]))
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
/// `src` and `dst` are the addresses the packet will carry: v3's checksum covers them (`dst`
/// is [`MULTICAST_GROUP`], [`MULTICAST_GROUP6`] or the unicast peer), and `src`'s family is
/// the advert's: `vips` of the other family are left out, and over IPv6 the advert is v3
/// whatever `version` says. `vips` beyond [`MAX_ADDRS`] are not advertised (keepalived does
/// the same). `auth_pass` is used in v2 only (auth type PASS + the 8 bytes); v3 has no auth
/// and ignores it, as keepalived does.
#[allow(clippy::too_many_arguments)]
pub fn build(
    version: Version,
    vrid: u8,
    priority: u8,
    interval: Duration,
    vips: &[IpAddr],
    auth_pass: Option<&[u8; AUTH_LEN]>,
    src: IpAddr,
    dst: IpAddr,
    out: &mut Vec<u8>,
) -> usize {
    let family = Family::of(src);
    let version = match family {
        Family::V4 => version,
        Family::V6 => Version::V3,
    };
    let vips = || {
        vips.iter()
            .filter(move |v| Family::of(**v) == family)
            .take(MAX_ADDRS)
    };
    out.clear();
    let ver = version.number();
    let count = vips().count() as u8;
    out.extend_from_slice(&[ver << 4 | TYPE_ADVERT, vrid, priority, count]);
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
    for vip in vips() {
        match vip {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    if version == Version::V2 {
        out.extend_from_slice(auth_pass.unwrap_or(&[0; AUTH_LEN]));
    }
    // A v3 `dst` of the other family has no pseudo-header: the checksum is left at zero and
    // will not verify anywhere.
    let csum = sum(version, out, src, dst).map_or(0, |s| !s);
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

/// [`wrap_ipv4`] for IPv6: the 40-byte header the kernel would put around an advert (traffic
/// class 0xc0, next header 112), for tests, the simulator and the fuzz seeds.
pub fn wrap_ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.resize(crate::wire::ipv6::HEADER_LEN, 0);
    out[0] = 0x60 | TOS >> 4;
    out[1] = (TOS & 0x0f) << 4;
    let len = payload.len().min(u16::MAX as usize) as u16;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    out[6] = PROTOCOL;
    out[7] = hop_limit;
    out[8..24].copy_from_slice(&src.octets());
    out[24..40].copy_from_slice(&dst.octets());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);
    const SRC: IpAddr = IpAddr::V4(SRC4);
    const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100));
    const GROUP: IpAddr = IpAddr::V4(MULTICAST_GROUP);

    fn v4(a: Ipv4Addr) -> IpAddr {
        IpAddr::V4(a)
    }

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
        assert!(a.verify_checksum(SRC, GROUP));
        assert!(a.verify_checksum(v4(Ipv4Addr::UNSPECIFIED), v4(Ipv4Addr::BROADCAST)));
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
            GROUP,
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
        assert!(a.verify_checksum(SRC, GROUP));
        assert!(!a.verify_checksum(SRC, v4(Ipv4Addr::new(192, 168, 1, 14))));
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
        let vips = [VIP, v4(Ipv4Addr::new(192, 168, 1, 101))];
        build(
            Version::V3,
            51,
            150,
            Duration::from_millis(100),
            &vips,
            Some(b"secret\0\0"),
            SRC,
            GROUP,
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
        let vips: Vec<IpAddr> = (0..300u32).map(|a| v4(Ipv4Addr::from(a))).collect();
        let mut out = Vec::new();
        let n = build(
            Version::V3,
            1,
            1,
            Duration::from_secs(1),
            &vips,
            None,
            SRC,
            GROUP,
            &mut out,
        );
        assert_eq!(n, advert_len(Version::V3, Family::V4, 255));
        let a = Advert::new_checked(&out).unwrap();
        assert_eq!(a.count(), 255);
        assert!(a.verify_checksum(SRC, GROUP));
    }

    fn ip_packet(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        wrap_ipv4(src, dst, ttl, payload, &mut p);
        p
    }

    #[test]
    fn check_ip_rules() {
        let p = ip_packet(SRC4, MULTICAST_GROUP, 255, &V3_BYTES);
        let (info, payload) = check_ip(&p).unwrap();
        assert_eq!(info.src, SRC);
        assert_eq!(info.dst, GROUP);
        assert_eq!(info.ttl, 255);
        assert_eq!(payload, V3_BYTES);
        assert_eq!(vrid_of(&p), Some(51));

        let low = ip_packet(SRC4, MULTICAST_GROUP, 254, &V3_BYTES);
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

    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
    const GROUP6: IpAddr = IpAddr::V6(MULTICAST_GROUP6);

    /// A VRRPv3 advert over IPv6 as keepalived 2.2 sends it: VRID 51, priority 150,
    /// advert_int 1 s (100 cs), one VIP 2001:db8::100, from fe80::11 to ff02::12.
    static V6_BYTES: [u8; 24] = [
        0x31, 0x33, 0x96, 0x01, // v3 advert, vrid 51, prio 150, 1 address
        0x00, 0x64, 0x0b, 0x7f, // 100 cs, checksum
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // 2001:db8::100
    ];

    #[test]
    fn v6_checksum_covers_the_ipv6_pseudo_header() {
        // Pseudo-header words fe80 0011 (source), ff02 0012 (group), 0000 0018 (length 24),
        // 0000 0070 (next header 112) sum to 0x1fe2d; the message words 3133 9601 0064 0000
        // 2001 0db8 0100 to 0xf651. 0x1fe2d + 0xf651 = 0x2f47e, folded 0xf480, complemented
        // 0x0b7f.
        let a = Advert::new_checked_in(&V6_BYTES, Family::V6).unwrap();
        assert_eq!(a.checksum(), 0x0b7f);
        assert!(a.verify_checksum(IpAddr::V6(LL), GROUP6));
        // Another source, or IPv4 addresses, do not verify.
        let other = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x14);
        assert!(!a.verify_checksum(IpAddr::V6(other), GROUP6));
        assert!(!a.verify_checksum(SRC, GROUP));
    }

    #[test]
    fn parse_v6_field_by_field() {
        let a = Advert::new_checked_in(&V6_BYTES, Family::V6).unwrap();
        assert_eq!((a.version(), a.family()), (Version::V3, Family::V6));
        assert_eq!(
            (a.kind(), a.vrid(), a.priority(), a.count()),
            (1, 51, 150, 1)
        );
        assert_eq!(a.interval(), Duration::from_secs(1));
        assert_eq!(a.auth_data(), None);
        assert_eq!(a.addrs().collect::<Vec<_>>(), vec![IpAddr::V6(VIP6)]);
        // Read as IPv4, the same bytes are 4 addresses too many.
        assert_eq!(Advert::new_checked(&V6_BYTES), Err(Refusal::Length));
    }

    #[test]
    fn build_v6_matches_and_is_always_v3() {
        let mut out = Vec::new();
        for version in [Version::V2, Version::V3] {
            // An IPv4 VIP in the list is left out: the source decides the family.
            let vips = [VIP, IpAddr::V6(VIP6)];
            let n = build(
                version,
                51,
                150,
                Duration::from_secs(1),
                &vips,
                Some(b"secret\0\0"),
                IpAddr::V6(LL),
                GROUP6,
                &mut out,
            );
            assert_eq!(n, advert_len(Version::V3, Family::V6, 1));
            assert_eq!(out, V6_BYTES);
        }
    }

    #[test]
    fn v6_structural_refusals() {
        fn v6(b: &[u8]) -> Result<Advert<'_>, Refusal> {
            Advert::new_checked_in(b, Family::V6)
        }
        assert_eq!(v6(&V6_BYTES[..7]), Err(Refusal::Truncated));
        assert_eq!(v6(&V6_BYTES[..20]), Err(Refusal::Truncated));
        let mut long = V6_BYTES.to_vec();
        long.extend_from_slice(&[0; 4]);
        assert_eq!(v6(&long), Err(Refusal::Length));
        // Version 2 does not exist over IPv6.
        let mut b = V6_BYTES;
        b[0] = 0x21;
        assert_eq!(v6(&b), Err(Refusal::Version));
        // A count of 2 with one address is short.
        let mut b = V6_BYTES;
        b[3] = 2;
        assert_eq!(v6(&b), Err(Refusal::Truncated));
    }

    #[test]
    fn check_ipv6_rules() {
        let group = MULTICAST_GROUP6;
        let mut p = Vec::new();
        wrap_ipv6(LL, group, 255, &V6_BYTES, &mut p);
        assert_eq!(p.len(), 64);
        assert_eq!((p[0], p[1]), (0x6c, 0x00), "traffic class 0xc0");
        let (info, payload) = check_ipv6(&p).unwrap();
        assert_eq!(
            (info.src, info.dst, info.ttl),
            (IpAddr::V6(LL), GROUP6, 255)
        );
        assert_eq!(payload, V6_BYTES);
        assert_eq!(check_any(&p), Ok((info, payload)));

        let mut low = Vec::new();
        wrap_ipv6(LL, group, 64, &V6_BYTES, &mut low);
        assert_eq!(check_ipv6(&low), Err(Refusal::Ttl));
        assert!(check_ipv6_any_hop(&low).is_ok());

        let mut udp = p.clone();
        udp[6] = 17;
        assert_eq!(check_ipv6(&udp), Err(Refusal::Protocol));
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 4]);
        assert_eq!(check_ipv6(&padded), Err(Refusal::Length));
        assert_eq!(check_ipv6(&p[..39]), Err(Refusal::Truncated));
        assert!(check_ipv6(&p[..50]).is_err());
        let mut v4 = p.clone();
        v4[0] = 0x4c;
        assert_eq!(check_ipv6(&v4), Err(Refusal::IpHeader));
        assert_eq!(check_any(&[]), Err(Refusal::Truncated));
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

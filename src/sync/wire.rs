//! The connection-sync message: a [`Message`] view over received bytes and [`build`] for the
//! ones we send.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        magic "TLBS"                           |
//! +---------------+---------------+---------------+---------------+
//! |  version (1)  |     type      |    syncid     |     flags     |
//! +---------------+---------------+---------------+---------------+
//! |                          sender id                            |
//! +---------------------------------------------------------------+
//! |                       sequence (64 bits)                      |
//! |                                                               |
//! +-------------------------------+-------------------------------+
//! |             count             |         reserved (0)          |
//! +-------------------------------+-------------------------------+
//! |  Conns: count × 26-byte records; Conns6: count × 62-byte      |
//! |  records; BulkRequest: nothing; BulkEnd: count × 4-byte       |
//! |  sender ids of the requests answered                          |
//! +---------------------------------------------------------------+
//! |  HMAC-SHA256 of everything before it (flags & AUTH), 32 bytes |
//! +---------------------------------------------------------------+
//!
//! record: proto(1) flags(1) state(1) reserved(1) caddr(4) vaddr(4) daddr(4)
//!         cport(2) vport(2) dport(2) timeout_ms(4)
//! record6: proto(1) flags(1) state(1) reserved(1) caddr(16) vaddr(16) daddr(16)
//!          cport(2) vport(2) dport(2) timeout_ms(4)
//! ```
//!
//! IPv6 flows and templates travel in Conns6 messages (type 4), never mixed with IPv4 ones:
//! the record is IPv4's with 16-byte addresses (62 bytes). The real server of an IPv6 flow may
//! be an IPv4 one (an IPv6 VIP tunnelled over IPv4): its daddr is then IPv4-mapped
//! (`::ffff:a.b.c.d`). ICMPv6 is protocol 58 there (an ICMP template's protocol).
//!
//! Conns6 was added after version 1 was deployed, without a new version: a receiver that does
//! not know type 4 refuses the message in [`Message::new_checked`] ([`Refused::Type`], counted
//! and logged at most every 10 s) before its replay check, and keeps installing the IPv4
//! records. A sender numbers its Conns6 messages as a stream of their own, under the sender id
//! [`stream6`] (its id with the top bit flipped), so that an older receiver sees no gap in
//! the IPv4 stream (a gap during the bulk resync makes a backup ask for it again) and a newer
//! one checks each stream's replay window and gaps on its own.
//!
//! Header flags: [`FLAG_AUTH`] (a MAC follows), [`FLAG_CONFIRMED`] (every record of this
//! Conns message is of a confirmed flow). A receiver ignores flag bits it does not know, so a
//! flag that only adds information can be added without a new version: an older receiver
//! takes the message as it did before. (A record's own flags and reserved byte are checked:
//! a bit there that a receiver does not know refuses the whole message.)
//!
//! All fields are big-endian. The sender id is random per director start, the sequence counts
//! that sender's messages from 1; the receiver refuses a sequence it has seen (the replay window
//! is the session's, [`super::session`]). A message never exceeds the configured `maxlen` (IPVS's
//! name: the UDP payload, 1472 bytes by default: 55 records, 54 with a MAC; of IPv6 records
//! (1472 − 24) / 62 = 23, (1472 − 24 − 32) / 62 = 22 with a MAC). The smallest `maxlen` the
//! daemon uses is one keyed IPv6 record: 24 + 62 + 32 = 118 bytes.
//!
//! [`Message::new_checked`] checks the structure (after it no accessor can panic and every
//! record decodes); [`Message::verify`] checks what depends on the receiver's config: syncid,
//! length limit and the MAC. Each refusal is a [`Refused`] whose [`Refused::as_str`] is the
//! metric label.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ring::hmac;

use crate::director::conn::{
    ConnKey, ConnKey6, ConnState, SyncKey, SyncRecord, SyncRecord6, KEY_TEMPLATE,
};

mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const SYNCID: usize = 6;
    pub const FLAGS: usize = 7;
    pub const SENDER: Range<usize> = 8..12;
    pub const SEQUENCE: Range<usize> = 12..20;
    pub const COUNT: Range<usize> = 20..22;
    pub const RESERVED: Range<usize> = 22..24;

    /// Offsets inside one record.
    pub mod rec {
        use core::ops::Range;

        pub const PROTO: usize = 0;
        pub const FLAGS: usize = 1;
        pub const STATE: usize = 2;
        pub const RESERVED: usize = 3;
        pub const CADDR: Range<usize> = 4..8;
        pub const VADDR: Range<usize> = 8..12;
        pub const DADDR: Range<usize> = 12..16;
        pub const CPORT: Range<usize> = 16..18;
        pub const VPORT: Range<usize> = 18..20;
        pub const DPORT: Range<usize> = 20..22;
        pub const TIMEOUT: Range<usize> = 22..26;
    }

    /// Offsets inside one IPv6 record (the first four bytes are [`rec`]'s).
    pub mod rec6 {
        use core::ops::Range;

        pub const CADDR: Range<usize> = 4..20;
        pub const VADDR: Range<usize> = 20..36;
        pub const DADDR: Range<usize> = 36..52;
        pub const CPORT: Range<usize> = 52..54;
        pub const VPORT: Range<usize> = 54..56;
        pub const DPORT: Range<usize> = 56..58;
        pub const TIMEOUT: Range<usize> = 58..62;
    }
}

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"TLBS";
/// The version this code speaks.
pub const VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = field::RESERVED.end;
/// Length of one record.
pub const RECORD_LEN: usize = field::rec::TIMEOUT.end;
/// Length of one IPv6 record (Conns6).
pub const RECORD6_LEN: usize = field::rec6::TIMEOUT.end;
/// What [`stream6`] flips in a sender id.
const STREAM6_BIT: u32 = 0x8000_0000;

/// The sender id a director with id `sender` numbers its Conns6 messages under (a sequence
/// of their own): `sender` with the top bit flipped.
pub const fn stream6(sender: u32) -> u32 {
    sender ^ STREAM6_BIT
}
/// Length of the HMAC-SHA256 trailer.
pub const MAC_LEN: usize = 32;
/// [`Message::flags`] bit: an HMAC-SHA256 trailer follows the records.
pub const FLAG_AUTH: u8 = 0x01;
/// [`Message::flags`] bit of a Conns message: every record in it is of a
/// [confirmed](crate::director::conn::Conn::is_confirmed) flow (one that carried client data),
/// so the backup installs it confirmed: ESTABLISHED's whole timeout, never evicted for a
/// flood. [`build`] sets it when every record says so; [`SyncSession`](super::SyncSession)
/// sends confirmed and unconfirmed records in separate messages. Added after version 1 was
/// deployed: an older receiver ignores it and installs the records unconfirmed, as before.
pub const FLAG_CONFIRMED: u8 = 0x02;
/// The longest timeout a record carries (a day; IPVS's longest default is 15 minutes). Longer
/// ones are clamped when built and refused when received.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// Connection records: changes, a bulk answer or a periodic refresh.
    Conns,
    /// A starting backup asks the master for its whole table.
    BulkRequest,
    /// The master's whole-table answer is complete; it names the sender ids of the requests
    /// it answered.
    BulkEnd,
    /// IPv6 connection records (as Conns), sent under the sender id [`stream6`].
    Conns6,
}

impl MessageType {
    /// The byte on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            MessageType::Conns => 1,
            MessageType::BulkRequest => 2,
            MessageType::BulkEnd => 3,
            MessageType::Conns6 => 4,
        }
    }

    /// The type of a wire byte, `None` for an unknown one.
    pub const fn from_u8(b: u8) -> Option<MessageType> {
        match b {
            1 => Some(MessageType::Conns),
            2 => Some(MessageType::BulkRequest),
            3 => Some(MessageType::BulkEnd),
            4 => Some(MessageType::Conns6),
            _ => None,
        }
    }

    /// Lower-case name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Conns => "conns",
            MessageType::BulkRequest => "bulk_request",
            MessageType::BulkEnd => "bulk_end",
            MessageType::Conns6 => "conns6",
        }
    }
}

/// Why a received message was refused. [`Refused::as_str`] is the `reason` label of
/// `tunlb_sync_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Shorter than the header.
    Truncated,
    /// Not "TLBS": not a tunlb sync message (IPVS's own sync daemon uses the same port).
    Magic,
    /// A version this code does not speak.
    Version,
    /// An unknown message type.
    Type,
    /// The length is not header + what the count says (+ MAC).
    Length,
    /// A record with an unknown state, flag bits or protocol, or a timeout over [`MAX_TIMEOUT`].
    BadRecord,
    /// Longer than the configured `maxlen`.
    TooLong,
    /// Another sync id (`lvs_sync_daemon ... id N`).
    Syncid,
    /// A key is configured and the MAC is missing or wrong, or no key is configured and the
    /// message carries one (the two directors' configs differ).
    Auth,
    /// A sequence number this sender already used (a replay or a duplicate).
    Replay,
    /// Our own message (multicast loopback, or our address among the unicast peers).
    Own,
}

impl Refused {
    /// Every reason, for metrics that list all labels.
    pub const ALL: [Refused; 11] = [
        Refused::Truncated,
        Refused::Magic,
        Refused::Version,
        Refused::Type,
        Refused::Length,
        Refused::BadRecord,
        Refused::TooLong,
        Refused::Syncid,
        Refused::Auth,
        Refused::Replay,
        Refused::Own,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refused::Truncated => "truncated",
            Refused::Magic => "magic",
            Refused::Version => "version",
            Refused::Type => "type",
            Refused::Length => "length",
            Refused::BadRecord => "bad_record",
            Refused::TooLong => "too_long",
            Refused::Syncid => "syncid",
            Refused::Auth => "auth",
            Refused::Replay => "replay",
            Refused::Own => "own",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shared key messages are authenticated with (HMAC-SHA256).
#[derive(Clone)]
pub struct Key(hmac::Key);

impl Key {
    /// A key from the configured secret bytes.
    pub fn new(secret: &[u8]) -> Key {
        Key(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// What a receiver checks beyond the structure ([`Message::verify`]).
#[derive(Clone, Debug)]
pub struct Policy {
    /// Our sync id.
    pub syncid: u8,
    /// The longest message accepted.
    pub maxlen: usize,
    /// The key, when messages must be authenticated.
    pub key: Option<Key>,
}

/// A checked view of a received message.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buffer: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks the structure: header, magic, version, type, length and every record. After it
    /// no accessor panics.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Message<'a>, Refused> {
        if buffer.len() < HEADER_LEN {
            return Err(Refused::Truncated);
        }
        let m = Message { buffer };
        if buffer[field::MAGIC] != MAGIC {
            return Err(Refused::Magic);
        }
        if buffer[field::VERSION] != VERSION {
            return Err(Refused::Version);
        }
        let Some(kind) = MessageType::from_u8(buffer[field::TYPE]) else {
            return Err(Refused::Type);
        };
        let mac = if m.flags() & FLAG_AUTH != 0 {
            MAC_LEN
        } else {
            0
        };
        if buffer.len() != HEADER_LEN + m.body_len(kind) + mac {
            return Err(Refused::Length);
        }
        // A BulkRequest carries nothing: a count there would be ignored, so it is refused.
        if kind == MessageType::BulkRequest && m.count() != 0 {
            return Err(Refused::Length);
        }
        if m.raw_records()
            .chunks_exact(RECORD_LEN)
            .any(|r| decode(r).is_none())
            || m.raw_records6()
                .chunks_exact(RECORD6_LEN)
                .any(|r| decode6(r).is_none())
        {
            return Err(Refused::BadRecord);
        }
        Ok(m)
    }

    /// Checks what depends on the receiver: the length limit, the sync id and the MAC.
    pub fn verify(&self, policy: &Policy) -> Result<(), Refused> {
        if self.buffer.len() > policy.maxlen {
            return Err(Refused::TooLong);
        }
        if self.syncid() != policy.syncid {
            return Err(Refused::Syncid);
        }
        match (&policy.key, self.is_authenticated()) {
            (None, false) => Ok(()),
            (Some(key), true) => {
                let split = self.buffer.len() - MAC_LEN;
                hmac::verify(&key.0, &self.buffer[..split], &self.buffer[split..])
                    .map_err(|_| Refused::Auth)
            }
            _ => Err(Refused::Auth),
        }
    }

    /// The message type.
    pub fn kind(&self) -> MessageType {
        MessageType::from_u8(self.buffer[field::TYPE]).unwrap_or(MessageType::Conns)
    }

    /// The sync id.
    pub fn syncid(&self) -> u8 {
        self.buffer[field::SYNCID]
    }

    /// The flags byte ([`FLAG_AUTH`], [`FLAG_CONFIRMED`]; unknown bits are ignored).
    pub fn flags(&self) -> u8 {
        self.buffer[field::FLAGS]
    }

    /// Whether a MAC trailer is present.
    pub fn is_authenticated(&self) -> bool {
        self.flags() & FLAG_AUTH != 0
    }

    /// Whether the records (of a Conns or Conns6 message) are of confirmed flows
    /// ([`FLAG_CONFIRMED`]).
    pub fn is_confirmed(&self) -> bool {
        self.flags() & FLAG_CONFIRMED != 0
    }

    /// The sender's id (random per director start).
    pub fn sender(&self) -> u32 {
        u32::from_be_bytes(self.buffer[field::SENDER].try_into().unwrap_or_default())
    }

    /// The sender's message counter.
    pub fn sequence(&self) -> u64 {
        u64::from_be_bytes(self.buffer[field::SEQUENCE].try_into().unwrap_or_default())
    }

    /// Number of records (Conns, Conns6) or requester ids (BulkEnd).
    pub fn count(&self) -> u16 {
        u16::from_be_bytes([
            self.buffer[field::COUNT.start],
            self.buffer[field::COUNT.start + 1],
        ])
    }

    /// Bytes between the header and the MAC the count says a message of this type has.
    fn body_len(&self, kind: MessageType) -> usize {
        let count = self.count() as usize;
        match kind {
            MessageType::Conns => count * RECORD_LEN,
            MessageType::BulkRequest => 0,
            MessageType::BulkEnd => count * 4,
            MessageType::Conns6 => count * RECORD6_LEN,
        }
    }

    fn raw_records(&self) -> &'a [u8] {
        if self.kind() != MessageType::Conns {
            return &[];
        }
        let end = HEADER_LEN + self.count() as usize * RECORD_LEN;
        self.buffer.get(HEADER_LEN..end).unwrap_or(&[])
    }

    fn raw_records6(&self) -> &'a [u8] {
        if self.kind() != MessageType::Conns6 {
            return &[];
        }
        let end = HEADER_LEN + self.count() as usize * RECORD6_LEN;
        self.buffer.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The records of a Conns message (none for the other types), decoded one by one; each
    /// is [`confirmed`](SyncRecord::confirmed) when the message is ([`FLAG_CONFIRMED`]).
    pub fn records(&self) -> Records<'a> {
        Records {
            chunks: self.raw_records().chunks_exact(RECORD_LEN),
            confirmed: self.is_confirmed(),
            family: core::marker::PhantomData,
        }
    }

    /// The records of a Conns6 message (none for the other types), as
    /// [`records`](Self::records).
    pub fn records6(&self) -> Records6<'a> {
        Records {
            chunks: self.raw_records6().chunks_exact(RECORD6_LEN),
            confirmed: self.is_confirmed(),
            family: core::marker::PhantomData,
        }
    }

    /// The sender ids a BulkEnd answered (none for the other types).
    pub fn requesters(&self) -> impl Iterator<Item = u32> + 'a {
        let ids = if self.kind() == MessageType::BulkEnd {
            let end = HEADER_LEN + self.count() as usize * 4;
            self.buffer.get(HEADER_LEN..end).unwrap_or(&[])
        } else {
            &[]
        };
        ids.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// A key the wire carries: how its records are laid out ([`ConnKey`]'s in Conns messages,
/// [`ConnKey6`]'s in Conns6).
pub trait WireKey: SyncKey {
    /// The message type that carries these records.
    const TYPE: MessageType;
    /// Bytes per record.
    const RECORD_LEN: usize;
    /// Decodes one record; `None` when it is invalid.
    fn decode(b: &[u8]) -> Option<SyncRecord<Self>>;
    /// Appends one record (the timeout clamped to [`MAX_TIMEOUT`]).
    fn encode(r: &SyncRecord<Self>, out: &mut Vec<u8>);
}

impl WireKey for ConnKey {
    const TYPE: MessageType = MessageType::Conns;
    const RECORD_LEN: usize = RECORD_LEN;
    fn decode(b: &[u8]) -> Option<SyncRecord> {
        decode(b)
    }
    fn encode(r: &SyncRecord, out: &mut Vec<u8>) {
        encode(r, out);
    }
}

impl WireKey for ConnKey6 {
    const TYPE: MessageType = MessageType::Conns6;
    const RECORD_LEN: usize = RECORD6_LEN;
    fn decode(b: &[u8]) -> Option<SyncRecord6> {
        decode6(b)
    }
    fn encode(r: &SyncRecord6, out: &mut Vec<u8>) {
        encode6(r, out);
    }
}

/// The records of a [`Message`] (IPv4 ones by default; [`Records6`]).
#[derive(Clone, Debug)]
pub struct Records<'a, K = ConnKey> {
    chunks: core::slice::ChunksExact<'a, u8>,
    confirmed: bool,
    family: core::marker::PhantomData<K>,
}

/// The records of a Conns6 [`Message`].
pub type Records6<'a> = Records<'a, ConnKey6>;

impl<K: WireKey> Iterator for Records<'_, K> {
    type Item = SyncRecord<K>;

    fn next(&mut self) -> Option<SyncRecord<K>> {
        // new_checked decoded every record once: none is skipped here.
        let mut r = self.chunks.find_map(K::decode)?;
        r.confirmed = self.confirmed;
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

fn addr(b: &[u8], r: core::ops::Range<usize>) -> Ipv4Addr {
    Ipv4Addr::new(b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3])
}

fn port(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

fn addr6(b: &[u8], r: core::ops::Range<usize>) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[r]);
    Ipv6Addr::from(o)
}

/// The first four bytes and the timeout of a record of `len` bytes whose timeout is at
/// `timeout_at`, checked: its state and timeout, or `None`. `icmp` is the protocol number of
/// the family's ICMP.
fn decode_common(
    b: &[u8],
    len: usize,
    icmp: u8,
    timeout_at: core::ops::Range<usize>,
) -> Option<(ConnState, Duration)> {
    use field::rec;
    if b.len() != len || b[rec::FLAGS] & !KEY_TEMPLATE != 0 || b[rec::RESERVED] != 0 {
        return None;
    }
    let proto = b[rec::PROTO];
    let state = *ConnState::ALL.get(b[rec::STATE] as usize)?;
    let template = b[rec::FLAGS] & KEY_TEMPLATE != 0;
    let ok = match proto {
        6 => state != ConnState::Udp && state != ConnState::Icmp,
        17 => state == ConnState::Udp || template,
        p if p == icmp => state == ConnState::Icmp || template,
        _ => false,
    };
    if !ok {
        return None;
    }
    let t = &b[timeout_at];
    let timeout_ms = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    (timeout <= MAX_TIMEOUT).then_some((state, timeout))
}

/// Decodes one IPv6 record; `None` when it is invalid (as [`decode`]'s, ICMPv6 for ICMP).
fn decode6(b: &[u8]) -> Option<SyncRecord6> {
    use field::{rec, rec6};
    let (state, timeout) = decode_common(b, RECORD6_LEN, 58, rec6::TIMEOUT)?;
    let daddr = addr6(b, rec6::DADDR);
    let daddr = match daddr.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(daddr),
    };
    Some(SyncRecord {
        key: ConnKey6 {
            proto: b[rec::PROTO],
            flags: b[rec::FLAGS],
            caddr: addr6(b, rec6::CADDR),
            cport: port(b, rec6::CPORT),
            vaddr: addr6(b, rec6::VADDR),
            vport: port(b, rec6::VPORT),
        },
        dest: SocketAddr::new(daddr, port(b, rec6::DPORT)),
        state,
        timeout,
        confirmed: false,
    })
}

/// Appends one IPv6 record (the timeout clamped to [`MAX_TIMEOUT`]; an IPv4 real server
/// IPv4-mapped).
fn encode6(r: &SyncRecord6, out: &mut Vec<u8>) {
    let timeout = r.timeout.min(MAX_TIMEOUT).as_millis() as u32;
    out.extend_from_slice(&[r.key.proto, r.key.flags, r.state as u8, 0]);
    out.extend_from_slice(&r.key.caddr.octets());
    out.extend_from_slice(&r.key.vaddr.octets());
    let daddr = match r.dest.ip() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    out.extend_from_slice(&daddr.octets());
    out.extend_from_slice(&r.key.cport.to_be_bytes());
    out.extend_from_slice(&r.key.vport.to_be_bytes());
    out.extend_from_slice(&r.dest.port().to_be_bytes());
    out.extend_from_slice(&timeout.to_be_bytes());
}

/// Decodes one record; `None` when it is invalid.
fn decode(b: &[u8]) -> Option<SyncRecord> {
    use field::rec;
    let (state, timeout) = decode_common(b, RECORD_LEN, 1, rec::TIMEOUT)?;
    Some(SyncRecord {
        key: ConnKey {
            proto: b[rec::PROTO],
            flags: b[rec::FLAGS],
            caddr: addr(b, rec::CADDR),
            cport: port(b, rec::CPORT),
            vaddr: addr(b, rec::VADDR),
            vport: port(b, rec::VPORT),
        },
        dest: SocketAddrV4::new(addr(b, rec::DADDR), port(b, rec::DPORT)),
        state,
        timeout,
        confirmed: false,
    })
}

/// Appends one record (the timeout clamped to [`MAX_TIMEOUT`]).
fn encode(r: &SyncRecord, out: &mut Vec<u8>) {
    let timeout = r.timeout.min(MAX_TIMEOUT).as_millis() as u32;
    out.extend_from_slice(&[r.key.proto, r.key.flags, r.state as u8, 0]);
    out.extend_from_slice(&r.key.caddr.octets());
    out.extend_from_slice(&r.key.vaddr.octets());
    out.extend_from_slice(&r.dest.ip().octets());
    out.extend_from_slice(&r.key.cport.to_be_bytes());
    out.extend_from_slice(&r.key.vport.to_be_bytes());
    out.extend_from_slice(&r.dest.port().to_be_bytes());
    out.extend_from_slice(&timeout.to_be_bytes());
}

/// Whether [`build`] can put `r` in a message: the wire carries TCP, UDP and ICMP (ICMPv6)
/// flows and templates only, with the key flags it knows.
pub fn encodable<K: WireKey>(r: &SyncRecord<K>) -> bool {
    let mut b = Vec::with_capacity(K::RECORD_LEN);
    K::encode(r, &mut b);
    K::decode(&b).is_some()
}

/// The header fields of a message we send (the type comes from the [`Body`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Our sync id.
    pub syncid: u8,
    /// Our sender id.
    pub sender: u32,
    /// Our message counter.
    pub sequence: u64,
}

/// How many records fit in a message of at most `maxlen` bytes (with a MAC when `auth`).
pub const fn records_per_message(maxlen: usize, auth: bool) -> usize {
    fit(maxlen, auth, RECORD_LEN)
}

/// How many IPv6 records fit in a Conns6 message of at most `maxlen` bytes (with a MAC when
/// `auth`).
pub const fn records6_per_message(maxlen: usize, auth: bool) -> usize {
    fit(maxlen, auth, RECORD6_LEN)
}

const fn fit(maxlen: usize, auth: bool, record_len: usize) -> usize {
    let fixed = HEADER_LEN + if auth { MAC_LEN } else { 0 };
    let n = maxlen.saturating_sub(fixed) / record_len;
    if n > u16::MAX as usize {
        u16::MAX as usize
    } else {
        n
    }
}

/// What a message we send carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// Connection records (the caller keeps to [`records_per_message`] and [`encodable`]).
    Conns(&'a [SyncRecord]),
    /// Ask the master for its whole table.
    BulkRequest,
    /// The whole table was sent for these requesters' sender ids.
    BulkEnd(&'a [u32]),
    /// IPv6 connection records (the caller keeps to [`records6_per_message`] and
    /// [`encodable`], and sends them under the sender id [`stream6`]).
    Conns6(&'a [SyncRecord6]),
}

impl Body<'_> {
    /// The message type.
    pub fn kind(&self) -> MessageType {
        match self {
            Body::Conns(_) => MessageType::Conns,
            Body::BulkRequest => MessageType::BulkRequest,
            Body::BulkEnd(_) => MessageType::BulkEnd,
            Body::Conns6(_) => MessageType::Conns6,
        }
    }
}

/// Writes a message into `out` (cleared first): the header, the body and the MAC when a key
/// is given. A Conns (Conns6) message whose records are all
/// [confirmed](SyncRecord::confirmed) (and not none) carries [`FLAG_CONFIRMED`]; in a mixed one
/// the confirmed records lose the bit.
pub fn build(hdr: &Header, body: Body<'_>, key: Option<&Key>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    let mut flags = if key.is_some() { FLAG_AUTH } else { 0 };
    let confirmed = match body {
        Body::Conns(r) => !r.is_empty() && r.iter().all(|r| r.confirmed),
        Body::Conns6(r) => !r.is_empty() && r.iter().all(|r| r.confirmed),
        Body::BulkRequest | Body::BulkEnd(_) => false,
    };
    if confirmed {
        flags |= FLAG_CONFIRMED;
    }
    out.extend_from_slice(&[VERSION, body.kind().to_u8(), hdr.syncid, flags]);
    out.extend_from_slice(&hdr.sender.to_be_bytes());
    out.extend_from_slice(&hdr.sequence.to_be_bytes());
    let count = match body {
        Body::Conns(r) => r.len(),
        Body::BulkRequest => 0,
        Body::BulkEnd(ids) => ids.len(),
        Body::Conns6(r) => r.len(),
    };
    debug_assert!(count <= u16::MAX as usize);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    match body {
        Body::Conns(records) => records.iter().for_each(|r| encode(r, out)),
        Body::BulkRequest => {}
        Body::BulkEnd(ids) => ids
            .iter()
            .for_each(|id| out.extend_from_slice(&id.to_be_bytes())),
        Body::Conns6(records) => records.iter().for_each(|r| encode6(r, out)),
    }
    if let Some(key) = key {
        let tag = hmac::sign(&key.0, out);
        out.extend_from_slice(tag.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> SyncRecord {
        SyncRecord {
            key: ConnKey::new(
                6,
                Ipv4Addr::new(192, 168, 1, 2),
                40000,
                Ipv4Addr::new(10, 0, 0, 100),
                80,
            ),
            dest: SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 1), 8080),
            state: ConnState::Established,
            timeout: Duration::from_millis(899_900),
            confirmed: false,
        }
    }

    const HDR: Header = Header {
        syncid: 7,
        sender: 0x0102_0304,
        sequence: 5,
    };

    /// A Conns message with one record, no MAC, as `build` writes it.
    static BYTES: [u8; 50] = [
        b'T', b'L', b'B', b'S', 1, 1, 7, 0, // magic, version, type, syncid, flags
        1, 2, 3, 4, // sender
        0, 0, 0, 0, 0, 0, 0, 5, // sequence
        0, 1, 0, 0, // count, reserved
        6, 0, 1, 0, // proto, flags, state, reserved
        192, 168, 1, 2, 10, 0, 0, 100, 172, 16, 0, 1, // caddr vaddr daddr
        0x9c, 0x40, 0, 80, 0x1f, 0x90, // cport vport dport
        0x00, 0x0d, 0xbb, 0x3c, // timeout 899900 ms
    ];

    fn policy(key: Option<Key>) -> Policy {
        Policy {
            syncid: 7,
            maxlen: 1472,
            key,
        }
    }

    #[test]
    fn parses_the_captured_message_field_by_field() {
        let m = Message::new_checked(&BYTES).unwrap();
        assert_eq!(m.kind(), MessageType::Conns);
        assert_eq!(m.syncid(), 7);
        assert!(!m.is_authenticated());
        assert_eq!(m.sender(), 0x0102_0304);
        assert_eq!(m.sequence(), 5);
        assert_eq!(m.count(), 1);
        assert_eq!(m.records().collect::<Vec<_>>(), vec![rec()]);
        assert_eq!(m.verify(&policy(None)), Ok(()));
    }

    #[test]
    fn builds_the_captured_message() {
        let mut out = Vec::new();
        build(&HDR, Body::Conns(&[rec()]), None, &mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn round_trips_every_kind_with_and_without_a_key() {
        let key = Key::new(b"secret");
        let mut recs = vec![rec()];
        let mut t = rec();
        t.key.flags = KEY_TEMPLATE;
        t.key.cport = 0;
        t.state = ConnState::None;
        recs.push(t);
        let mut u = rec();
        u.key.proto = 17;
        u.state = ConnState::Udp;
        recs.push(u);
        let ids = [7u32, 0xdead_beef];
        for key in [None, Some(&key)] {
            for body in [Body::Conns(&recs), Body::BulkRequest, Body::BulkEnd(&ids)] {
                let mut out = Vec::new();
                build(&HDR, body, key, &mut out);
                let m = Message::new_checked(&out).unwrap();
                assert_eq!(m.kind(), body.kind());
                assert_eq!(m.is_authenticated(), key.is_some());
                assert_eq!(m.sequence(), HDR.sequence);
                let (r, i): (&[SyncRecord], &[u32]) = match body {
                    Body::Conns(r) => (r, &[]),
                    Body::Conns6(_) => unreachable!("not in this test"),
                    Body::BulkRequest => (&[], &[]),
                    Body::BulkEnd(i) => (&[], i),
                };
                assert_eq!(m.records().collect::<Vec<_>>(), r);
                assert_eq!(m.requesters().collect::<Vec<_>>(), i);
                assert_eq!(m.verify(&policy(key.cloned())), Ok(()));
            }
        }
    }

    #[test]
    fn messages_fill_maxlen_exactly() {
        assert_eq!(records_per_message(1472, false), 55);
        assert_eq!(records_per_message(1472, true), 54);
        assert_eq!(records_per_message(10, true), 0);
        let key = Key::new(b"k");
        let recs = vec![rec(); 54];
        let mut out = Vec::new();
        build(&HDR, Body::Conns(&recs), Some(&key), &mut out);
        assert!(out.len() <= 1472);
        assert_eq!(out.len(), HEADER_LEN + 54 * RECORD_LEN + MAC_LEN);
    }

    #[test]
    fn timeouts_are_clamped_when_built() {
        let mut r = rec();
        r.timeout = Duration::from_secs(10 * 24 * 3600);
        assert!(encodable(&r));
        let mut out = Vec::new();
        build(&HDR, Body::Conns(&[r]), None, &mut out);
        let got = Message::new_checked(&out)
            .unwrap()
            .records()
            .next()
            .unwrap();
        assert_eq!(got.timeout, MAX_TIMEOUT);
    }

    #[test]
    fn confirmed_records_travel_as_a_message_flag_an_older_receiver_ignores() {
        let confirmed = SyncRecord {
            confirmed: true,
            ..rec()
        };
        let mut out = Vec::new();
        build(&HDR, Body::Conns(&[confirmed]), None, &mut out);
        // The captured message with only the header flag added: the record bytes an older
        // receiver decodes are the same, and it looks at FLAG_AUTH only.
        let mut want = BYTES;
        want[7] = FLAG_CONFIRMED;
        assert_eq!(out, want);
        let m = Message::new_checked(&out).unwrap();
        assert!(m.is_confirmed() && !m.is_authenticated());
        assert_eq!(m.records().collect::<Vec<_>>(), vec![confirmed]);
        assert_eq!(m.verify(&policy(None)), Ok(()));
        // With a key: the flag is under the MAC.
        let key = Key::new(b"secret");
        build(&HDR, Body::Conns(&[confirmed]), Some(&key), &mut out);
        let m = Message::new_checked(&out).unwrap();
        assert_eq!(m.flags(), FLAG_AUTH | FLAG_CONFIRMED);
        assert_eq!(m.verify(&policy(Some(key.clone()))), Ok(()));
        let mut forged = out.clone();
        forged[7] = FLAG_AUTH;
        let m = Message::new_checked(&forged).unwrap();
        assert_eq!(m.verify(&policy(Some(key))), Err(Refused::Auth));
        // A mixed batch is sent unconfirmed (the session never builds one).
        build(&HDR, Body::Conns(&[confirmed, rec()]), None, &mut out);
        let m = Message::new_checked(&out).unwrap();
        assert!(!m.is_confirmed());
        assert!(m.records().all(|r| !r.confirmed));
        // No records, no flag.
        build(&HDR, Body::Conns(&[]), None, &mut out);
        assert!(!Message::new_checked(&out).unwrap().is_confirmed());
    }

    #[test]
    fn unknown_header_flag_bits_are_ignored() {
        // What lets a later version add a header flag (as FLAG_CONFIRMED was) compatibly.
        for bit in [0x04u8, 0x08, 0x10, 0x20, 0x40, 0x80] {
            let mut b = BYTES;
            b[7] = bit;
            let m = Message::new_checked(&b).unwrap();
            assert_eq!(m.verify(&policy(None)), Ok(()), "flag {bit:#x}");
            assert_eq!(m.records().collect::<Vec<_>>(), vec![rec()]);
        }
    }

    fn refused(bytes: &[u8]) -> Refused {
        Message::new_checked(bytes).unwrap_err()
    }

    #[test]
    fn every_structural_refusal() {
        assert_eq!(refused(&BYTES[..HEADER_LEN - 1]), Refused::Truncated);
        let mut b = BYTES;
        b[0] = b'X';
        assert_eq!(refused(&b), Refused::Magic);
        let mut b = BYTES;
        b[4] = 2;
        assert_eq!(refused(&b), Refused::Version);
        let mut b = BYTES;
        b[5] = 9;
        assert_eq!(refused(&b), Refused::Type);
        let mut b = BYTES;
        b[5] = MessageType::BulkEnd.to_u8();
        assert_eq!(refused(&b), Refused::Length, "a BulkEnd with a record");
        let mut b = BYTES;
        b[5] = MessageType::BulkRequest.to_u8();
        assert_eq!(refused(&b), Refused::Length, "a BulkRequest with a record");
        let mut b = BYTES[..HEADER_LEN].to_vec();
        b[5] = MessageType::BulkRequest.to_u8();
        assert_eq!(
            refused(&b),
            Refused::Length,
            "a BulkRequest counting a record it lacks"
        );
        b[20..22].copy_from_slice(&[0, 0]);
        assert!(Message::new_checked(&b).is_ok(), "an empty BulkRequest");
        assert_eq!(refused(&BYTES[..BYTES.len() - 1]), Refused::Length);
        let mut b = BYTES.to_vec();
        b.push(0);
        assert_eq!(refused(&b), Refused::Length);
        let mut b = BYTES;
        b[7] = FLAG_AUTH; // says MAC, has none
        assert_eq!(refused(&b), Refused::Length);
        for (at, val) in [(24, 50), (25, 0x80), (26, 13), (27, 1), (26, 11)] {
            let mut b = BYTES;
            b[at] = val;
            assert_eq!(refused(&b), Refused::BadRecord, "byte {at} = {val}");
        }
        let mut b = BYTES;
        b[46..50].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(refused(&b), Refused::BadRecord, "timeout over a day");
    }

    #[test]
    fn every_policy_refusal() {
        let key = Key::new(b"secret");
        let m = Message::new_checked(&BYTES).unwrap();
        assert_eq!(
            m.verify(&Policy {
                maxlen: 49,
                ..policy(None)
            }),
            Err(Refused::TooLong)
        );
        assert_eq!(
            m.verify(&Policy {
                syncid: 8,
                ..policy(None)
            }),
            Err(Refused::Syncid)
        );
        assert_eq!(m.verify(&policy(Some(key.clone()))), Err(Refused::Auth));
        let mut out = Vec::new();
        build(&HDR, Body::Conns(&[rec()]), Some(&key), &mut out);
        let m = Message::new_checked(&out).unwrap();
        assert_eq!(
            m.verify(&policy(None)),
            Err(Refused::Auth),
            "MAC but no key"
        );
        assert_eq!(
            m.verify(&policy(Some(Key::new(b"other")))),
            Err(Refused::Auth)
        );
        for i in [0, 8, 30, out.len() - 1] {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            let verdict =
                Message::new_checked(&bad).and_then(|m| m.verify(&policy(Some(key.clone()))));
            assert!(verdict.is_err(), "flipped byte {i} accepted");
        }
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::BTreeSet<_> =
            Refused::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Refused::ALL.len());
    }

    fn rec6() -> SyncRecord6 {
        SyncRecord6 {
            key: ConnKey6::new(
                6,
                "2001:db8:1::2".parse().unwrap(),
                40000,
                "2001:db8::100".parse().unwrap(),
                80,
            ),
            dest: "[2001:db8:3::12]:80".parse().unwrap(),
            state: ConnState::Established,
            timeout: Duration::from_millis(899_900),
            confirmed: false,
        }
    }

    /// A Conns6 message with one record, no MAC, as `build` writes it (sender: the IPv4
    /// stream's 0x01020304 with the top bit flipped).
    static BYTES6: [u8; 86] = [
        b'T', b'L', b'B', b'S', 1, 4, 7, 0, // magic, version, type Conns6, syncid, flags
        0x81, 2, 3, 4, // sender (stream6)
        0, 0, 0, 0, 0, 0, 0, 5, // sequence
        0, 1, 0, 0, // count, reserved
        6, 0, 1, 0, // proto, flags, state, reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // caddr
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, // vaddr
        0x20, 0x01, 0x0d, 0xb8, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, // daddr
        0x9c, 0x40, 0, 80, 0, 80, // cport vport dport
        0x00, 0x0d, 0xbb, 0x3c, // timeout 899900 ms
    ];

    const HDR6: Header = Header {
        sender: stream6(0x0102_0304),
        ..HDR
    };

    #[test]
    fn parses_and_builds_the_captured_conns6_message() {
        assert_eq!(RECORD6_LEN, 62);
        let m = Message::new_checked(&BYTES6).unwrap();
        assert_eq!(m.kind(), MessageType::Conns6);
        assert_eq!(m.sender(), 0x8102_0304);
        assert_eq!(m.count(), 1);
        assert_eq!(m.records6().collect::<Vec<_>>(), vec![rec6()]);
        assert_eq!(
            m.records().count(),
            0,
            "no IPv4 records in a Conns6 message"
        );
        assert_eq!(m.verify(&policy(None)), Ok(()));
        let mut out = Vec::new();
        build(&HDR6, Body::Conns6(&[rec6()]), None, &mut out);
        assert_eq!(out, BYTES6);
        // And a Conns message has no IPv6 records.
        assert_eq!(Message::new_checked(&BYTES).unwrap().records6().count(), 0);
    }

    #[test]
    fn conns6_round_trips_flows_templates_ipv4_servers_and_the_confirmed_flag() {
        let key = Key::new(b"secret");
        let mut t = rec6();
        t.key.flags = KEY_TEMPLATE;
        t.key.cport = 0;
        t.state = ConnState::None;
        let mut u = rec6();
        u.key.proto = 17;
        u.state = ConnState::Udp;
        // An IPv6 VIP tunnelled to an IPv4 server: the daddr travels IPv4-mapped.
        let mut over4 = rec6();
        over4.dest = "10.3.0.12:80".parse().unwrap();
        let mut icmp = rec6();
        icmp.key.proto = 58;
        icmp.state = ConnState::Icmp;
        let recs = [rec6(), t, u, over4, icmp];
        for key in [None, Some(&key)] {
            for confirmed in [false, true] {
                let recs: Vec<_> = recs
                    .iter()
                    .map(|r| SyncRecord6 { confirmed, ..*r })
                    .collect();
                let mut out = Vec::new();
                build(&HDR6, Body::Conns6(&recs), key, &mut out);
                assert_eq!(
                    out.len(),
                    HEADER_LEN + 5 * RECORD6_LEN + key.map_or(0, |_| MAC_LEN)
                );
                let m = Message::new_checked(&out).unwrap();
                assert_eq!(m.is_confirmed(), confirmed);
                assert_eq!(m.records6().collect::<Vec<_>>(), recs);
                assert_eq!(m.verify(&policy(key.cloned())), Ok(()));
                assert!(recs.iter().all(encodable));
            }
        }
        let mut b = Vec::new();
        build(&HDR6, Body::Conns6(&[over4]), None, &mut b);
        assert_eq!(&b[HEADER_LEN + 36..HEADER_LEN + 52], &{
            let mut m = [0u8; 16];
            m[10] = 0xff;
            m[11] = 0xff;
            m[12..].copy_from_slice(&[10, 3, 0, 12]);
            m
        });
    }

    #[test]
    fn conns6_messages_fill_maxlen_exactly() {
        assert_eq!(records6_per_message(1472, false), 23);
        assert_eq!(records6_per_message(1472, true), 22);
        assert_eq!(
            records6_per_message(HEADER_LEN + RECORD6_LEN + MAC_LEN, true),
            1
        );
        assert_eq!(
            records6_per_message(HEADER_LEN + RECORD6_LEN + MAC_LEN - 1, true),
            0
        );
        assert_eq!(records6_per_message(usize::MAX, false), u16::MAX as usize);
        let key = Key::new(b"k");
        for (auth, n) in [(false, 23), (true, 22)] {
            let recs = vec![rec6(); n];
            let mut out = Vec::new();
            build(&HDR6, Body::Conns6(&recs), auth.then_some(&key), &mut out);
            assert!(out.len() <= 1472);
            assert!(out.len() + RECORD6_LEN > 1472, "one more would not fit");
            let m = Message::new_checked(&out).unwrap();
            let p = Policy {
                key: auth.then(|| key.clone()),
                ..policy(None)
            };
            assert_eq!(m.verify(&p), Ok(()));
            assert_eq!(
                m.verify(&Policy {
                    maxlen: out.len() - 1,
                    ..p
                }),
                Err(Refused::TooLong)
            );
        }
    }

    #[test]
    fn every_conns6_refusal() {
        // Type 4 is known; an unknown type (what an older receiver makes of type 4) is
        // refused before anything else is looked at.
        for t in [0u8, 5, 0xff] {
            let mut b = BYTES6;
            b[5] = t;
            assert_eq!(refused(&b), Refused::Type, "type {t}");
        }
        // Lengths: a record short or long, a count the body does not hold, a MAC announced
        // and missing, an IPv4 record's length under the Conns6 type.
        assert_eq!(refused(&BYTES6[..BYTES6.len() - 1]), Refused::Length);
        let mut b = BYTES6.to_vec();
        b.push(0);
        assert_eq!(refused(&b), Refused::Length);
        let mut b = BYTES6;
        b[21] = 2;
        assert_eq!(refused(&b), Refused::Length);
        let mut b = BYTES6;
        b[7] = FLAG_AUTH;
        assert_eq!(refused(&b), Refused::Length);
        let mut b = BYTES;
        b[5] = MessageType::Conns6.to_u8();
        assert_eq!(refused(&b), Refused::Length, "a 26-byte record as Conns6");
        let mut b = BYTES6;
        b[5] = MessageType::Conns.to_u8();
        assert_eq!(refused(&b), Refused::Length, "a 62-byte record as Conns");
        // Records: protocol, flag bits, state, reserved byte, a state the protocol cannot
        // have, ICMP (1) is IPv4's, a timeout over a day.
        for (at, val) in [
            (24, 50),
            (24, 1),
            (25, 0x80),
            (25, 0x02),
            (26, 13),
            (27, 1),
            (26, 11),
        ] {
            let mut b = BYTES6;
            b[at] = val;
            assert_eq!(refused(&b), Refused::BadRecord, "byte {at} = {val}");
        }
        let mut b = BYTES6;
        b[82..86].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(refused(&b), Refused::BadRecord, "timeout over a day");
        // Policy: syncid, a missing or wrong MAC.
        let m = Message::new_checked(&BYTES6).unwrap();
        assert_eq!(
            m.verify(&Policy {
                syncid: 8,
                ..policy(None)
            }),
            Err(Refused::Syncid)
        );
        assert_eq!(m.verify(&policy(Some(Key::new(b"k")))), Err(Refused::Auth));
        let mut out = Vec::new();
        build(
            &HDR6,
            Body::Conns6(&[rec6()]),
            Some(&Key::new(b"k")),
            &mut out,
        );
        for i in [5, 9, 30, 70, out.len() - 1] {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            let verdict =
                Message::new_checked(&bad).and_then(|m| m.verify(&policy(Some(Key::new(b"k")))));
            assert!(verdict.is_err(), "flipped byte {i} accepted");
        }
    }

    #[test]
    fn the_fuzz_seeds_are_what_their_names_say() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sync_message");
        let key = Key::new(crate::fuzzing::FUZZ_KEY);
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let bytes = std::fs::read(&path).unwrap();
            let policy = Policy {
                syncid: if name.contains("syncid_9") { 9 } else { 0 },
                maxlen: 1472,
                key: name.starts_with("keyed_").then(|| key.clone()),
            };
            let verdict = Message::new_checked(&bytes).and_then(|m| m.verify(&policy));
            match name.as_str() {
                "conns_bad_state" => assert_eq!(verdict, Err(Refused::BadRecord)),
                "conns6_bad_protocol" => assert_eq!(verdict, Err(Refused::BadRecord)),
                "conns6_as_ipv4_length" => assert_eq!(verdict, Err(Refused::Length)),
                "ipvs_v1_header_not_ours" => assert_eq!(verdict, Err(Refused::Magic)),
                "keyed_bad_mac" => assert_eq!(verdict, Err(Refused::Auth)),
                "regress_bulk_request_with_count" => assert_eq!(verdict, Err(Refused::Length)),
                _ => assert_eq!(verdict, Ok(()), "{name}"),
            }
        }
    }
}

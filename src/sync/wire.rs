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
//! |  Conns: count × 26-byte records; BulkRequest: nothing;        |
//! |  BulkEnd: count × 4-byte sender ids of the requests answered  |
//! +---------------------------------------------------------------+
//! |  HMAC-SHA256 of everything before it (flags & AUTH), 32 bytes |
//! +---------------------------------------------------------------+
//!
//! record: proto(1) flags(1) state(1) reserved(1) caddr(4) vaddr(4) daddr(4)
//!         cport(2) vport(2) dport(2) timeout_ms(4)
//! ```
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
//! name: the UDP payload, 1472 bytes by default: 55 records, 54 with a MAC).
//!
//! [`Message::new_checked`] checks the structure (after it no accessor can panic and every
//! record decodes); [`Message::verify`] checks what depends on the receiver's config: syncid,
//! length limit and the MAC. Each refusal is a [`Refused`] whose [`Refused::as_str`] is the
//! metric label.

use core::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ring::hmac;

use crate::director::conn::{ConnKey, ConnState, SyncRecord, KEY_TEMPLATE};

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
}

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"TLBS";
/// The version this code speaks.
pub const VERSION: u8 = 1;
/// Length of the header.
pub const HEADER_LEN: usize = field::RESERVED.end;
/// Length of one record.
pub const RECORD_LEN: usize = field::rec::TIMEOUT.end;
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
}

impl MessageType {
    /// The byte on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            MessageType::Conns => 1,
            MessageType::BulkRequest => 2,
            MessageType::BulkEnd => 3,
        }
    }

    /// The type of a wire byte, `None` for an unknown one.
    pub const fn from_u8(b: u8) -> Option<MessageType> {
        match b {
            1 => Some(MessageType::Conns),
            2 => Some(MessageType::BulkRequest),
            3 => Some(MessageType::BulkEnd),
            _ => None,
        }
    }

    /// Lower-case name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Conns => "conns",
            MessageType::BulkRequest => "bulk_request",
            MessageType::BulkEnd => "bulk_end",
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

    /// Whether the records are of confirmed flows ([`FLAG_CONFIRMED`]).
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

    /// Number of records (Conns) or requester ids (BulkEnd).
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
        }
    }

    fn raw_records(&self) -> &'a [u8] {
        if self.kind() != MessageType::Conns {
            return &[];
        }
        let end = HEADER_LEN + self.count() as usize * RECORD_LEN;
        self.buffer.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The records of a Conns message (none for the other types), decoded one by one; each
    /// is [`confirmed`](SyncRecord::confirmed) when the message is ([`FLAG_CONFIRMED`]).
    pub fn records(&self) -> Records<'a> {
        Records {
            chunks: self.raw_records().chunks_exact(RECORD_LEN),
            confirmed: self.is_confirmed(),
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

/// The records of a [`Message`].
#[derive(Clone, Debug)]
pub struct Records<'a> {
    chunks: core::slice::ChunksExact<'a, u8>,
    confirmed: bool,
}

impl Iterator for Records<'_> {
    type Item = SyncRecord;

    fn next(&mut self) -> Option<SyncRecord> {
        // new_checked decoded every record once: none is skipped here.
        let mut r = self.chunks.find_map(decode)?;
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

/// Decodes one record; `None` when it is invalid.
fn decode(b: &[u8]) -> Option<SyncRecord> {
    use field::rec;
    if b.len() != RECORD_LEN || b[rec::FLAGS] & !KEY_TEMPLATE != 0 || b[rec::RESERVED] != 0 {
        return None;
    }
    let proto = b[rec::PROTO];
    let state = *ConnState::ALL.get(b[rec::STATE] as usize)?;
    let ok = match proto {
        6 => state != ConnState::Udp && state != ConnState::Icmp,
        17 => state == ConnState::Udp || b[rec::FLAGS] & KEY_TEMPLATE != 0,
        1 => state == ConnState::Icmp || b[rec::FLAGS] & KEY_TEMPLATE != 0,
        _ => false,
    };
    if !ok {
        return None;
    }
    let timeout_ms = u32::from_be_bytes([
        b[rec::TIMEOUT.start],
        b[rec::TIMEOUT.start + 1],
        b[rec::TIMEOUT.start + 2],
        b[rec::TIMEOUT.start + 3],
    ]);
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    if timeout > MAX_TIMEOUT {
        return None;
    }
    Some(SyncRecord {
        key: ConnKey {
            proto,
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

/// Whether [`build`] can put `r` in a message: the wire carries TCP, UDP and ICMP flows and
/// templates only, with the key flags it knows.
pub fn encodable(r: &SyncRecord) -> bool {
    let mut b = Vec::with_capacity(RECORD_LEN);
    encode(r, &mut b);
    decode(&b).is_some()
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
    let fixed = HEADER_LEN + if auth { MAC_LEN } else { 0 };
    let n = maxlen.saturating_sub(fixed) / RECORD_LEN;
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
}

impl Body<'_> {
    /// The message type.
    pub fn kind(&self) -> MessageType {
        match self {
            Body::Conns(_) => MessageType::Conns,
            Body::BulkRequest => MessageType::BulkRequest,
            Body::BulkEnd(_) => MessageType::BulkEnd,
        }
    }
}

/// Writes a message into `out` (cleared first): the header, the body and the MAC when a key
/// is given. A Conns message whose records are all [confirmed](SyncRecord::confirmed) (and
/// not none) carries [`FLAG_CONFIRMED`]; in a mixed one the confirmed records lose the bit.
pub fn build(hdr: &Header, body: Body<'_>, key: Option<&Key>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    let mut flags = if key.is_some() { FLAG_AUTH } else { 0 };
    if let Body::Conns(r) = body {
        if !r.is_empty() && r.iter().all(|r| r.confirmed) {
            flags |= FLAG_CONFIRMED;
        }
    }
    out.extend_from_slice(&[VERSION, body.kind().to_u8(), hdr.syncid, flags]);
    out.extend_from_slice(&hdr.sender.to_be_bytes());
    out.extend_from_slice(&hdr.sequence.to_be_bytes());
    let count = match body {
        Body::Conns(r) => r.len(),
        Body::BulkRequest => 0,
        Body::BulkEnd(ids) => ids.len(),
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
                "ipvs_v1_header_not_ours" => assert_eq!(verdict, Err(Refused::Magic)),
                "keyed_bad_mac" => assert_eq!(verdict, Err(Refused::Auth)),
                "regress_bulk_request_with_count" => assert_eq!(verdict, Err(Refused::Length)),
                _ => assert_eq!(verdict, Ok(()), "{name}"),
            }
        }
    }
}

//! Authenticated GUE: a keyed MAC and a sequence number in a GUE option, so a real server's
//! agent can tell the director's packets from forged ones (outer source spoofed) and replays.
//!
//! ```text
//! GUE variant 0, Hlen = 7, flags = AUTH_FLAG (0x0001):
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |0 0|0|    7    |  Proto = 4    |      Flags = 0x0001           |
//! |            Key id             |             Lane              |
//! |                  Sequence number (64 bits)                    |
//! |                                                               |
//! |          MAC: HMAC-SHA-256 truncated to 128 bits              |
//! |                          (4 words)                            |
//! ```
//!
//! The MAC covers the outer source and destination addresses, the GUE header up to the MAC
//! (base header, key id, lane, sequence number) and the inner packet: exactly what the agent
//! receives, one datagram (one GSO segment) at a time. HMAC-SHA-256-128 (as IPsec's RFC 4868)
//! from `ring`, a maintained and reviewed crate tunlb already links: it has no nonce, so a
//! sequence number that ever repeated (a wall clock stepped back between two director starts)
//! weakens only the replay check, never the MAC; an AEAD tag (GMAC, Poly1305) would be
//! cheaper per byte but breaks down if a (key, nonce) pair repeats.
//!
//! - [`TunnelKey`]: a 32-byte secret, from a key file ([`TunnelKey::load`]: 64 hex characters,
//!   mode 0600 or stricter, owned by the effective user) and its key id (derived from the
//!   key, so the director and the agent agree without configuring one).
//! - [`Seal`]: what the director adds per packet (the key, its lane, the next sequence number).
//! - [`Keyring`]: the agent's one or two keys (rotation) and its replay windows, one per
//!   (director address, key id, lane), [`REPLAY_WINDOW`] packets wide, as IPsec's.
//!
//! Lanes: each director worker numbers its packets on its own lane (the worker index), so
//! workers never share a counter; each lane starts at the director's wall clock in
//! nanoseconds ([`seq_seed`]), which a restarted director's new counters are above (a lane
//! sends far less than one packet per nanosecond), so the agent's windows need no reset.

use core::fmt;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::Path;

use ring::hmac;

use super::gue::{GueHeader, HEADER_LEN};
use super::StripError;

/// The GUE flag that announces the authentication option (tunlb's own; both ends are tunlb).
pub const AUTH_FLAG: u16 = 0x0001;
/// Length of the option (the GUE extension fields): key id 2, lane 2, sequence 8, MAC 16.
pub const OPTION_LEN: usize = 28;
/// The GUE Hlen of an authenticated header (option length in 32-bit words).
pub const HLEN: u8 = (OPTION_LEN / 4) as u8;
/// The whole authenticated GUE header: base header + option.
pub const AUTH_HEADER_LEN: usize = HEADER_LEN + OPTION_LEN;
/// Bytes of MAC sent (HMAC-SHA-256 truncated, as RFC 4868's HMAC-SHA-256-128).
pub const MAC_LEN: usize = 16;
/// Bytes of the GUE header the MAC covers: all but the MAC itself.
const MACED_HEADER: usize = AUTH_HEADER_LEN - MAC_LEN;
/// Width of each replay window in packets (a bitmap of this many bits, as IPsec's).
pub const REPLAY_WINDOW: u64 = 1024;
/// The most replay windows an agent keeps (lanes of every director and key); a window is
/// only created by a packet whose MAC verified.
pub const MAX_WINDOWS: usize = 4096;
/// Length of a key in bytes (64 hex characters in a key file).
pub const KEY_LEN: usize = 32;

/// A tunnel key: the secret and its id.
///
/// Packets with an IPv6 outer header are MACed with a key of their own, derived from the
/// secret (`HMAC(secret, "tunlb GUE IPv6 outer")`), over 16-byte addresses: domain
/// separation by key, so no IPv4 packet's MAC can ever verify as an IPv6 one's (or the other
/// way round) whatever bytes an attacker lines up; the IPv4 MAC is unchanged.
#[derive(Clone)]
pub struct TunnelKey {
    key: hmac::Key,
    key6: hmac::Key,
    id: u16,
}

/// The outer addresses a MAC covers: IPv4 (4 + 4 bytes, the secret's own key) or IPv6 (16 +
/// 16 bytes, the derived IPv6 key, see [`TunnelKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OuterAddrs {
    /// An IPv4 outer header's source and destination.
    V4(Ipv4Addr, Ipv4Addr),
    /// An IPv6 outer header's source and destination.
    V6(Ipv6Addr, Ipv6Addr),
}

impl OuterAddrs {
    /// The source address.
    pub fn src(&self) -> IpAddr {
        match *self {
            OuterAddrs::V4(s, _) => s.into(),
            OuterAddrs::V6(s, _) => s.into(),
        }
    }
}

impl fmt::Debug for TunnelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TunnelKey {{ id: {:#06x} }}", self.id)
    }
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// It cannot be opened or read.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        err: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error("{path}: mode {mode:04o} lets group or others read it; chmod 600 it")]
    Mode {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Someone other than the effective user owns it.
    #[error("{path}: owned by uid {uid}, not by the user tunlb runs as (uid {euid})")]
    Owner {
        /// The file.
        path: String,
        /// Its owner.
        uid: u32,
        /// tunlb's effective user.
        euid: u32,
    },
    /// Not 64 hex characters (surrounding whitespace is ignored).
    #[error("{path}: expected 64 hex characters (32 bytes, e.g. `openssl rand -hex 32`), {what}")]
    Format {
        /// The file.
        path: String,
        /// What was found instead.
        what: String,
    },
}

impl TunnelKey {
    /// A key from its 32 secret bytes.
    pub fn new(secret: &[u8; KEY_LEN]) -> TunnelKey {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, b"tunlb GUE key id");
        let id = u16::from_be_bytes([tag.as_ref()[0], tag.as_ref()[1]]);
        let sub = hmac::sign(&key, b"tunlb GUE IPv6 outer");
        let key6 = hmac::Key::new(hmac::HMAC_SHA256, sub.as_ref());
        TunnelKey { key, key6, id }
    }

    /// Parses a key file's text: 64 hex characters, whitespace around them ignored.
    pub fn from_hex(text: &str) -> Result<TunnelKey, String> {
        let t = text.trim();
        if t.len() != 2 * KEY_LEN {
            return Err(format!("found {} characters", t.chars().count()));
        }
        let mut secret = [0u8; KEY_LEN];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = t
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a non-hex character near position {}", 2 * i + 1))?;
        }
        Ok(TunnelKey::new(&secret))
    }

    /// Reads a key file: refused unless owned by the effective user and not readable or
    /// writable by group or others (mode & 0o077 == 0), and holding 64 hex characters.
    pub fn load(path: &Path) -> Result<TunnelKey, KeyFileError> {
        use std::os::unix::fs::MetadataExt;
        let name = path.display().to_string();
        let io = |err| KeyFileError::Io {
            path: name.clone(),
            err,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if meta.mode() & 0o077 != 0 {
            return Err(KeyFileError::Mode {
                path: name,
                mode: meta.mode() & 0o7777,
            });
        }
        let euid = crate::sys::rundir::effective_uid();
        if meta.uid() != euid {
            return Err(KeyFileError::Owner {
                path: name,
                uid: meta.uid(),
                euid,
            });
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(&file, 4096), &mut text)
            .map_err(io)?;
        TunnelKey::from_hex(&text).map_err(|what| KeyFileError::Format { path: name, what })
    }

    /// The key id sent with every packet: 16 bits of an HMAC of a fixed label, so it names
    /// the key without revealing it.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The truncated MAC of a packet (see the module documentation).
    fn mac(&self, addrs: OuterAddrs, header: &[u8], fields: &[u8], inner: &[u8]) -> [u8; MAC_LEN] {
        let mut ctx = match addrs {
            OuterAddrs::V4(src, dst) => {
                let mut ctx = hmac::Context::with_key(&self.key);
                ctx.update(&src.octets());
                ctx.update(&dst.octets());
                ctx
            }
            OuterAddrs::V6(src, dst) => {
                let mut ctx = hmac::Context::with_key(&self.key6);
                ctx.update(&src.octets());
                ctx.update(&dst.octets());
                ctx
            }
        };
        ctx.update(header);
        ctx.update(fields);
        ctx.update(inner);
        let tag = ctx.sign();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
        out
    }
}

/// The first sequence number of every lane of a director started at `wall_ns` nanoseconds
/// since the Unix epoch (above any number the previous run of that director sent).
pub fn seq_seed(wall_ns: u64) -> u64 {
    wall_ns.max(1)
}

/// What the director adds to one packet.
#[derive(Clone, Copy, Debug)]
pub struct Seal<'a> {
    /// The key of the real server.
    pub key: &'a TunnelKey,
    /// The sending worker's lane.
    pub lane: u16,
    /// This packet's sequence number on the lane.
    pub seq: u64,
}

/// Writes the authenticated GUE header (base header with `proto`, the option with its MAC)
/// into `out` for `inner` sent from `src` to `dst`.
pub fn emit(
    seal: &Seal<'_>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    inner: &[u8],
    out: &mut [u8; AUTH_HEADER_LEN],
) {
    emit_with(seal, src, dst, proto, None, inner, out)
}

/// [`emit`], followed on the wire by a second-chance field (`chance`, [`super::chance`]):
/// the flags and Hlen announce it and the MAC covers it (it is MACed as the first bytes after
/// the option, as everything after the option is). The caller writes the field after `out`.
pub fn emit_with(
    seal: &Seal<'_>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    chance: Option<&[u8; super::chance::FIELD_LEN]>,
    inner: &[u8],
    out: &mut [u8; AUTH_HEADER_LEN],
) {
    emit_for(seal, OuterAddrs::V4(src, dst), proto, chance, inner, out)
}

/// [`emit_with`] for outer addresses of either family ([`OuterAddrs`]).
pub fn emit_for(
    seal: &Seal<'_>,
    addrs: OuterAddrs,
    proto: u8,
    chance: Option<&[u8; super::chance::FIELD_LEN]>,
    inner: &[u8],
    out: &mut [u8; AUTH_HEADER_LEN],
) {
    let (hlen, flags) = match chance {
        Some(_) => (
            HLEN + super::chance::FIELD_WORDS,
            AUTH_FLAG | super::chance::SECOND_CHANCE_FLAG,
        ),
        None => (HLEN, AUTH_FLAG),
    };
    out[0] = hlen;
    out[1] = proto;
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[4..6].copy_from_slice(&seal.key.id.to_be_bytes());
    out[6..8].copy_from_slice(&seal.lane.to_be_bytes());
    out[8..16].copy_from_slice(&seal.seq.to_be_bytes());
    let mac = seal.key.mac(
        addrs,
        &out[..MACED_HEADER],
        chance.map_or(&[][..], |c| &c[..]),
        inner,
    );
    out[MACED_HEADER..].copy_from_slice(&mac);
}

/// The director's keys: one per real server address (the TOML `tunnel_key` of a real
/// server), else the global one (`--tunnel-key`). Shared by the workers, replaced whole on a
/// reload.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    global: Option<std::sync::Arc<TunnelKey>>,
    servers: HashMap<IpAddr, std::sync::Arc<TunnelKey>>,
}

impl KeyMap {
    /// A map with the `global` key (if any) and the `servers`' own keys.
    pub fn new(
        global: Option<TunnelKey>,
        servers: impl IntoIterator<Item = (IpAddr, TunnelKey)>,
    ) -> KeyMap {
        KeyMap {
            global: global.map(std::sync::Arc::new),
            servers: servers
                .into_iter()
                .map(|(a, k)| (a, std::sync::Arc::new(k)))
                .collect(),
        }
    }

    /// The same global key with other per-server keys (a reload re-reads only those).
    pub fn with_servers(&self, servers: impl IntoIterator<Item = (IpAddr, TunnelKey)>) -> KeyMap {
        KeyMap {
            global: self.global.clone(),
            ..KeyMap::new(None, servers)
        }
    }

    /// Loads the real servers' key files (`tunnel_key` of the config).
    pub fn load_servers<'a>(
        files: impl IntoIterator<Item = (&'a IpAddr, &'a std::path::PathBuf)>,
    ) -> Result<Vec<(IpAddr, TunnelKey)>, KeyFileError> {
        files
            .into_iter()
            .map(|(a, p)| TunnelKey::load(p).map(|k| (*a, k)))
            .collect()
    }

    /// Whether packets sealed with these keys can be built, given whether the director has an
    /// IPv4 (`local4`) and an IPv6 (`local6`) outer source address: the MAC covers the outer
    /// source, which must be known when the packet is built. A real server's own key needs
    /// the source of its family; the global key needs at least one, and without the other the
    /// GUE packets to that family's real servers are dropped (`tunnel_auth_no_source`): the
    /// `Ok` then says so, for the log.
    pub fn check_sources(&self, local4: bool, local6: bool) -> Result<Option<String>, String> {
        let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
        let flag = |v4: bool| {
            if v4 {
                "local_address"
            } else {
                "local_address6"
            }
        };
        for (v4, have) in [(true, local4), (false, local6)] {
            if !have && self.servers.keys().any(|a| a.is_ipv4() == v4) {
                return Err(format!(
                    "tunnel_key on an {} real server needs the director's {} (--{}): the MAC covers the outer source address, which must be known when the packet is built",
                    family(v4),
                    flag(v4),
                    flag(v4).replace('_', "-"),
                ));
            }
        }
        if self.global.is_none() {
            return Ok(None);
        }
        Ok(match (local4, local6) {
            (false, false) => return Err(
                "--tunnel-key needs --local-address or --local-address6 (local_address, local_address6 in the config): the MAC covers the outer source address, which must be known when the packet is built".to_string(),
            ),
            (true, true) => None,
            (v4, _) => Some(format!(
                "--tunnel-key without --{}: GUE packets to {} real servers cannot carry a MAC and are dropped (tunnel_auth_no_source)",
                flag(!v4).replace('_', "-"),
                family(!v4),
            )),
        })
    }

    /// Whether it holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.global.is_none() && self.servers.is_empty()
    }

    /// The key packets to `server` are sealed with.
    #[inline]
    pub fn get(&self, server: impl Into<IpAddr>) -> Option<&TunnelKey> {
        if self.servers.is_empty() {
            return self.global.as_deref();
        }
        self.servers
            .get(&server.into())
            .or(self.global.as_ref())
            .map(|k| &**k)
    }
}

/// A worker's sequence numbers: its lane and the next number on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneCounter {
    lane: u16,
    next: u64,
}

impl LaneCounter {
    /// Lane `lane`, starting at `seed` ([`seq_seed`]).
    pub fn new(lane: u16, seed: u64) -> LaneCounter {
        LaneCounter { lane, next: seed }
    }

    /// The seal of the next packet with `key`.
    #[inline]
    pub fn seal<'a>(&mut self, key: &'a TunnelKey) -> Seal<'a> {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        Seal {
            key,
            lane: self.lane,
            seq,
        }
    }
}

/// Why an authenticated agent refused a GUE packet. `as_str()` is the counter label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthError {
    /// No authentication option (a keyless or forged sender, or IPIP/GRE-style variant 1).
    Missing,
    /// The option names a key id the agent does not hold.
    UnknownKey,
    /// The MAC does not verify: forged or corrupted.
    BadMac,
    /// The sequence number was seen already or is older than the replay window.
    Replayed,
    /// A valid packet on a new lane, but the agent already keeps [`MAX_WINDOWS`] windows.
    TooManyLanes,
}

impl AuthError {
    /// Every reason, in declaration order.
    pub const ALL: [AuthError; 5] = [
        AuthError::Missing,
        AuthError::UnknownKey,
        AuthError::BadMac,
        AuthError::Replayed,
        AuthError::TooManyLanes,
    ];

    /// The counter label.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::UnknownKey => "auth_unknown_key",
            AuthError::BadMac => "auth_bad_mac",
            AuthError::Replayed => "auth_replayed",
            AuthError::TooManyLanes => "auth_too_many_lanes",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A zero-copy view of the authentication option of a GUE header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthOption<'a> {
    /// The key id.
    pub key_id: u16,
    /// The sender's lane.
    pub lane: u16,
    /// The sequence number.
    pub seq: u64,
    /// The MAC as received.
    pub mac: &'a [u8],
    /// The bytes the MAC covers of the header.
    pub maced: &'a [u8],
}

/// Finds the authentication option of a GUE payload: variant 0, data, Hlen 7, flags exactly
/// [`AUTH_FLAG`] (or Hlen 9 with the second-chance flag too, [`super::chance`]); anything else is [`AuthError::Missing`] (a malformed header is a
/// [`StripError`]).
pub fn parse(payload: &[u8]) -> Result<Result<AuthOption<'_>, AuthError>, StripError> {
    let h = GueHeader::new_checked(payload)?;
    let chance = AUTH_FLAG | super::chance::SECOND_CHANCE_FLAG;
    let ok = match h.flags() {
        AUTH_FLAG => h.hlen() == HLEN,
        // The second-chance field follows the option; the MAC covers it with the inner packet.
        f if f == chance => h.hlen() == HLEN + super::chance::FIELD_WORDS,
        _ => false,
    };
    if h.variant() != 0 || h.control() || !ok {
        return Ok(Err(AuthError::Missing));
    }
    let b = &payload[..AUTH_HEADER_LEN];
    Ok(Ok(AuthOption {
        key_id: u16::from_be_bytes([b[4], b[5]]),
        lane: u16::from_be_bytes([b[6], b[7]]),
        seq: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
        mac: &b[MACED_HEADER..],
        maced: &b[..MACED_HEADER],
    }))
}

/// An IPsec-style anti-replay window: the highest sequence number seen and a bitmap of the
/// [`REPLAY_WINDOW`] numbers below and including it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u64,
    bits: [u64; (REPLAY_WINDOW / 64) as usize],
}

impl ReplayWindow {
    /// A window that has seen only `seq`.
    pub fn new(seq: u64) -> ReplayWindow {
        let mut w = ReplayWindow {
            top: seq,
            bits: [0; (REPLAY_WINDOW / 64) as usize],
        };
        w.accept(seq);
        w
    }

    /// Bit index of `seq`, if it lies inside the window (at or below `top`).
    fn bit(&self, seq: u64) -> Option<usize> {
        let age = self.top.checked_sub(seq)?;
        (age < REPLAY_WINDOW).then_some((seq % REPLAY_WINDOW) as usize)
    }

    /// Whether `seq` would be accepted (new, and not older than the window). Changes nothing:
    /// call [`accept`](Self::accept) once the MAC verified.
    pub fn check(&self, seq: u64) -> bool {
        if seq > self.top {
            return true;
        }
        match self.bit(seq) {
            Some(b) => self.bits[b / 64] & (1 << (b % 64)) == 0,
            None => false,
        }
    }

    /// Records `seq` (checked with [`check`](Self::check)), sliding the window up if it is the
    /// new highest.
    pub fn accept(&mut self, seq: u64) {
        if seq > self.top {
            let shift = seq - self.top;
            if shift >= REPLAY_WINDOW {
                self.bits = [0; (REPLAY_WINDOW / 64) as usize];
            } else {
                for s in self.top + 1..seq {
                    let b = (s % REPLAY_WINDOW) as usize;
                    self.bits[b / 64] &= !(1 << (b % 64));
                }
            }
            self.top = seq;
        }
        if let Some(b) = self.bit(seq) {
            self.bits[b / 64] |= 1 << (b % 64);
        }
    }
}

/// The agent's keys (one, or two during a rotation) and replay windows.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<TunnelKey>,
    windows: HashMap<(IpAddr, u16, u16), ReplayWindow>,
}

impl Keyring {
    /// A keyring of `keys`; refused if two share a key id (regenerate one of them).
    pub fn new(keys: Vec<TunnelKey>) -> Result<Keyring, String> {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(format!(
                    "two tunnel keys have the same key id {:#06x} (the same key twice, or a 1 in 65536 clash: generate another)",
                    k.id
                ));
            }
        }
        Ok(Keyring {
            keys,
            windows: HashMap::new(),
        })
    }

    /// The key ids held, for the log.
    pub fn ids(&self) -> Vec<u16> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// The first key (the one an agent seals what it forwards with).
    pub fn first_key(&self) -> Option<&TunnelKey> {
        self.keys.first()
    }

    /// Replay windows kept.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// Checks a GUE payload from `src` to `dst`: the option, the key id, the replay window,
    /// the MAC (in constant time); then records the sequence number. Returns the range of the
    /// inner packet's bytes the caller must still validate (after the authenticated header).
    pub fn open(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
    ) -> Result<Range<usize>, OpenError> {
        self.open_from(OuterAddrs::V4(src, dst), payload)
    }

    /// [`open`](Self::open) for a payload that came over IPv6 from `src` to `dst`.
    pub fn open6(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        payload: &[u8],
    ) -> Result<Range<usize>, OpenError> {
        self.open_from(OuterAddrs::V6(src, dst), payload)
    }

    /// [`open`](Self::open) for outer addresses of either family.
    pub fn open_from(
        &mut self,
        addrs: OuterAddrs,
        payload: &[u8],
    ) -> Result<Range<usize>, OpenError> {
        let src = addrs.src();
        let opt = parse(payload)??;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == opt.key_id)
            .ok_or(AuthError::UnknownKey)?;
        let slot = (src, opt.key_id, opt.lane);
        if let Some(w) = self.windows.get(&slot) {
            if !w.check(opt.seq) {
                return Err(AuthError::Replayed.into());
            }
        }
        let inner = &payload[AUTH_HEADER_LEN..];
        let want = key.mac(addrs, opt.maced, &[], inner);
        if !constant_time_eq(&want, opt.mac) {
            return Err(AuthError::BadMac.into());
        }
        let full = self.windows.len() >= MAX_WINDOWS;
        match self.windows.get_mut(&slot) {
            Some(w) => w.accept(opt.seq),
            None if full => return Err(AuthError::TooManyLanes.into()),
            None => {
                self.windows.insert(slot, ReplayWindow::new(opt.seq));
            }
        }
        Ok(GueHeader::new_unchecked(payload).header_len()..payload.len())
    }
}

/// Why [`Keyring::open`] refused a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The GUE header itself is malformed.
    Strip(StripError),
    /// The authentication failed.
    Auth(AuthError),
}

impl From<StripError> for OpenError {
    fn from(e: StripError) -> Self {
        OpenError::Strip(e)
    }
}

impl From<AuthError> for OpenError {
    fn from(e: AuthError) -> Self {
        OpenError::Auth(e)
    }
}

/// Compares two MACs without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encap::tests::INNER;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);

    use super::tests_support::key;

    fn packet(k: &TunnelKey, lane: u16, seq: u64) -> Vec<u8> {
        let mut h = [0u8; AUTH_HEADER_LEN];
        let seal = Seal { key: k, lane, seq };
        emit(&seal, SRC, DST, 4, &INNER, &mut h);
        let mut p = h.to_vec();
        p.extend_from_slice(&INNER);
        p
    }

    /// The header for key `[7; 32]`, lane 3, sequence 0x0102030405060708, pinned: a change
    /// of the layout or the MAC breaks interoperation with running agents.
    #[test]
    fn header_bytes_are_pinned() {
        let k = key(7);
        let p = packet(&k, 3, 0x0102_0304_0506_0708);
        assert_eq!(&p[..4], &[0x07, 0x04, 0x00, 0x01]);
        assert_eq!(&p[4..6], &k.id().to_be_bytes());
        assert_eq!(&p[6..16], &[0, 3, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&p[AUTH_HEADER_LEN..], &INNER[..]);
        // The MAC recomputed independently: HMAC over src, dst, header[..16], inner.
        let mut msg = Vec::new();
        msg.extend_from_slice(&SRC.octets());
        msg.extend_from_slice(&DST.octets());
        msg.extend_from_slice(&p[..16]);
        msg.extend_from_slice(&INNER);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]), &msg);
        assert_eq!(&p[16..32], &tag.as_ref()[..16]);
        // The strip path of a keyless agent skips the option and finds the inner packet.
        assert_eq!(
            crate::encap::strip_gue(&p),
            Ok(AUTH_HEADER_LEN..AUTH_HEADER_LEN + 32)
        );
    }

    #[test]
    fn a_sealed_packet_opens_once() {
        let k = key(1);
        let mut ring = Keyring::new(vec![key(1)]).unwrap();
        let p = packet(&k, 0, 100);
        assert_eq!(ring.open(SRC, DST, &p), Ok(AUTH_HEADER_LEN..p.len()));
        assert_eq!(ring.open(SRC, DST, &p), Err(AuthError::Replayed.into()));
        // Another lane, or another director address, has its own window.
        assert!(ring.open(SRC, DST, &packet(&k, 1, 100)).is_ok());
        assert_eq!(ring.windows(), 2);
    }

    #[test]
    fn forgeries_are_refused_by_reason() {
        let k = key(1);
        let mut ring = Keyring::new(vec![key(1)]).unwrap();
        let p = packet(&k, 0, 100);
        // Other addresses than the ones sealed: the MAC covers them.
        assert_eq!(
            ring.open(Ipv4Addr::new(6, 6, 6, 6), DST, &p),
            Err(AuthError::BadMac.into())
        );
        assert_eq!(
            ring.open(SRC, Ipv4Addr::new(192, 168, 1, 11), &p),
            Err(AuthError::BadMac.into())
        );
        // Any flipped bit of the header or the inner packet.
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] ^= 0x10;
            let r = ring.open(SRC, DST, &q);
            assert!(r.is_err(), "byte {i}");
        }
        // Another key with the same id cannot exist in practice; an unknown id is named.
        assert_eq!(
            ring.open(SRC, DST, &packet(&key(2), 0, 100)),
            Err(AuthError::UnknownKey.into())
        );
        // A plain GUE header (what a forger without the key or a keyless director sends).
        let mut plain = vec![0, 4, 0, 0];
        plain.extend_from_slice(&INNER);
        assert_eq!(ring.open(SRC, DST, &plain), Err(AuthError::Missing.into()));
        assert_eq!(ring.open(SRC, DST, &INNER), Err(AuthError::Missing.into()));
        assert_eq!(
            ring.open(SRC, DST, &[0x1f, 4, 0, 1]),
            Err(OpenError::Strip(StripError::Truncated))
        );
        // Nothing forged opened a window; the real packet still opens.
        assert_eq!(ring.windows(), 0);
        assert!(ring.open(SRC, DST, &p).is_ok());
    }

    #[test]
    fn two_keys_are_accepted_during_a_rotation() {
        let mut ring = Keyring::new(vec![key(1), key(2)]).unwrap();
        assert!(ring.open(SRC, DST, &packet(&key(1), 0, 5)).is_ok());
        assert!(ring.open(SRC, DST, &packet(&key(2), 0, 5)).is_ok());
        assert!(ring.open(SRC, DST, &packet(&key(3), 0, 5)).is_err());
        assert!(Keyring::new(vec![key(1), key(1)]).is_err());
    }

    #[test]
    fn the_replay_window_accepts_reordering_and_refuses_repeats_and_old() {
        let mut w = ReplayWindow::new(5000);
        assert!(!w.check(5000));
        for s in [5005, 5001, 5003, 5002, 5004] {
            assert!(w.check(s), "{s}");
            w.accept(s);
            assert!(!w.check(s), "{s}");
        }
        // The oldest number still inside the window, and one just outside.
        assert!(w.check(5005 - REPLAY_WINDOW + 1));
        assert!(!w.check(5005 - REPLAY_WINDOW));
        // A jump beyond the window forgets everything below it.
        w.accept(5005 + 3 * REPLAY_WINDOW);
        assert!(!w.check(5005));
        assert!(w.check(5005 + 3 * REPLAY_WINDOW - 1));
        // Bits reused after a slide are clear: every number of the new range is fresh.
        let mut w = ReplayWindow::new(0);
        for s in 1..=3 * REPLAY_WINDOW {
            assert!(w.check(s), "{s}");
            w.accept(s);
        }
        for s in 2 * REPLAY_WINDOW + 1..=3 * REPLAY_WINDOW {
            assert!(!w.check(s));
        }
        // Near u64::MAX nothing overflows.
        let mut w = ReplayWindow::new(u64::MAX - 1);
        assert!(w.check(u64::MAX));
        w.accept(u64::MAX);
        assert!(!w.check(u64::MAX));
        assert!(!w.check(0));
    }

    /// A director restart: the new run's lanes start at its wall clock, above anything the
    /// old run sent; the agent keeps its windows and takes the new numbers.
    #[test]
    fn a_restarted_director_is_not_refused() {
        let k = key(1);
        let mut ring = Keyring::new(vec![key(1)]).unwrap();
        let first = seq_seed(1_000_000_000);
        for i in 0..50 {
            assert!(ring.open(SRC, DST, &packet(&k, 0, first + i)).is_ok());
        }
        let second = seq_seed(1_000_000_000 + 2_000_000); // 2 ms later
        assert!(second > first + 50);
        assert!(ring.open(SRC, DST, &packet(&k, 0, second)).is_ok());
        // The old run's packets, replayed now, are refused.
        assert!(ring.open(SRC, DST, &packet(&k, 0, first + 10)).is_err());
    }

    #[test]
    fn windows_are_bounded() {
        let k = key(1);
        let mut ring = Keyring::new(vec![key(1)]).unwrap();
        for i in 0..MAX_WINDOWS {
            let src = Ipv4Addr::from(0x0a00_0000 + i as u32);
            let mut h = [0u8; AUTH_HEADER_LEN];
            emit(
                &Seal {
                    key: &k,
                    lane: 0,
                    seq: 1,
                },
                src,
                DST,
                4,
                &INNER,
                &mut h,
            );
            let p = [&h[..], &INNER[..]].concat();
            assert!(ring.open(src, DST, &p).is_ok());
        }
        assert_eq!(
            ring.open(SRC, DST, &packet(&k, 0, 1)),
            Err(AuthError::TooManyLanes.into())
        );
        assert_eq!(ring.windows(), MAX_WINDOWS);
    }

    #[test]
    fn key_files_are_hex_and_private() {
        use std::os::unix::fs::PermissionsExt;
        assert!(TunnelKey::from_hex(&format!("  {}\n", "ab".repeat(32))).is_ok());
        assert!(TunnelKey::from_hex(&"ab".repeat(31)).is_err());
        assert!(TunnelKey::from_hex(&format!("{}zz", "ab".repeat(31))).is_err());
        assert!(TunnelKey::from_hex(&"é".repeat(32)).is_err());
        assert_eq!(
            TunnelKey::from_hex(&"07".repeat(32)).unwrap().id(),
            key(7).id()
        );
        let dir = std::env::temp_dir().join(format!("tunlb-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        std::fs::write(&path, format!("{}\n", "07".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = TunnelKey::load(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::Mode { mode: 0o640, .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(TunnelKey::load(&path).unwrap().id(), key(7).id());
        std::fs::write(&path, "short").unwrap();
        let e = TunnelKey::load(&path).unwrap_err();
        assert!(e.to_string().contains("64 hex characters"), "{e}");
        let e = TunnelKey::load(&dir.join("missing")).unwrap_err();
        assert!(matches!(e, KeyFileError::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for e in AuthError::ALL {
            assert!(seen.insert(e.as_str()));
            assert!(e.as_str().starts_with("auth_"));
        }
    }
}

#[cfg(test)]
mod build_tests {
    use super::tests_support::*;
    use super::*;
    use crate::encap::tests::{params_for, INNER};
    use crate::encap::{build_outer_sealed, overhead_with, strip_ip, Tunnel, TunnelType};
    use crate::wire::{Ipv4Packet, UdpPacket};

    /// A sealed GUE packet, with and without the UDP checksum: a keyless agent strips it, a
    /// keyed one opens it; IPIP and GRE ignore the seal.
    #[test]
    fn sealed_outer_headers_round_trip() {
        let k = key(9);
        let seal = Seal {
            key: &k,
            lane: 2,
            seq: 77,
        };
        for csum in [false, true] {
            let t = Tunnel::Gue { port: 6080, csum };
            let p = params_for(t);
            let mut out = [0u8; crate::encap::MAX_OUTER_HEADER];
            let n = build_outer_sealed(&p, &INNER, Some(&seal), &mut out).unwrap();
            assert_eq!(n, overhead_with(&t, true));
            assert_eq!(n, 60);
            let pkt = [&out[..n], &INNER[..]].concat();
            let s = strip_ip(&pkt, TunnelType::Gue, None).unwrap();
            assert_eq!(&pkt[s.inner], &INNER[..]);
            let outer = Ipv4Packet::new_checked(&pkt[..]).unwrap();
            let udp = UdpPacket::new_checked(outer.payload()).unwrap();
            assert_eq!(udp.checksum() != 0, csum);
            let mut ring = Keyring::new(vec![key(9)]).unwrap();
            let r = ring.open(p.src, p.dst, udp.payload()).unwrap();
            assert_eq!(&udp.payload()[r], &INNER[..]);
        }
        for t in [
            Tunnel::Ipip,
            Tunnel::Gre {
                key: None,
                csum: true,
            },
        ] {
            let mut a = [0u8; crate::encap::MAX_OUTER_HEADER];
            let mut b = a;
            let p = params_for(t);
            let n = build_outer_sealed(&p, &INNER, Some(&seal), &mut a).unwrap();
            assert_eq!(Ok(n), crate::encap::build_outer(&p, &INNER, &mut b));
            assert_eq!(a, b);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A key of 32 bytes `b`.
    pub(crate) fn key(b: u8) -> TunnelKey {
        TunnelKey::new(&[b; KEY_LEN])
    }

    #[test]
    fn keys_need_the_outer_source_of_their_family() {
        let v4 = IpAddr::from([10, 0, 2, 12]);
        let v6 = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0x12));
        assert_eq!(KeyMap::default().check_sources(false, false), Ok(None));
        let own = |a| KeyMap::new(None, [(a, key(1))]);
        assert_eq!(own(v4).check_sources(true, false), Ok(None));
        assert!(own(v4)
            .check_sources(false, true)
            .unwrap_err()
            .contains("(--local-address)"));
        assert_eq!(own(v6).check_sources(false, true), Ok(None));
        assert!(own(v6)
            .check_sources(true, false)
            .unwrap_err()
            .contains("(--local-address6)"));
        let global = KeyMap::new(Some(key(1)), []);
        assert!(global.check_sources(false, false).is_err());
        assert_eq!(global.check_sources(true, true), Ok(None));
        let w = global.check_sources(true, false).unwrap().unwrap();
        assert!(
            w.contains("IPv6 real servers") && w.contains("tunnel_auth_no_source"),
            "{w}"
        );
        let w = global.check_sources(false, true).unwrap().unwrap();
        assert!(
            w.contains("IPv4 real servers") && w.contains("--local-address:"),
            "{w}"
        );
    }
}

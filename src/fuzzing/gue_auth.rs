//! Fuzz target `gue_auth`: the authenticated GUE parse ([`crate::encap::auth`]) and the
//! agent's keyed filter over arbitrary payloads, and a seal/open round trip.

use std::net::Ipv4Addr;

use crate::encap::auth::{self, AuthError, Keyring, OpenError, Seal, TunnelKey};
use crate::encap::TunnelType;
use crate::realserver::{AllowList, Filter};

/// The key the target's agent holds (the seeds in `fuzz/corpus/gue_auth/` are sealed with it).
pub const GUE_AUTH_KEY: [u8; 32] = [0x42; 32];

const SRC: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
const DST: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 100);

/// Checks that:
/// - opening any payload never panics; what opens says where the inner packet starts (after
///   the authenticated header) and opens only once (the replay window);
/// - the keyed filter never panics, and what it delivers opened;
/// - the input taken as an inner packet, sealed, opens back to exactly it, and any one
///   changed byte (picked by the input) is refused.
pub fn gue_auth(data: &[u8]) {
    let key = || TunnelKey::new(&GUE_AUTH_KEY);
    let mut ring = Keyring::new(vec![key()]).expect("one key");
    match ring.open(SRC, DST, data) {
        Ok(r) => {
            // After the authenticated header and a second-chance field if the flags say so.
            let h = crate::encap::gue::GueHeader::new_unchecked(data).header_len();
            assert!(h >= auth::AUTH_HEADER_LEN);
            assert_eq!(r, h..data.len());
            assert_eq!(
                ring.open(SRC, DST, data),
                Err(OpenError::Auth(AuthError::Replayed))
            );
        }
        Err(_) => assert_eq!(ring.windows(), 0, "a refused packet opened a window"),
    }

    let allow = AllowList::new(&[SRC.into()]);
    let mut filter = Filter::new(allow, &[VIP], TunnelType::Gue, None)
        .with_keys(Keyring::new(vec![key()]).expect("one key"));
    if let Ok(r) = filter.check_gue(data, SRC, DST) {
        assert!(r.start >= auth::AUTH_HEADER_LEN && r.end <= data.len());
        let mut again = Keyring::new(vec![key()]).expect("one key");
        assert!(again.open(SRC, DST, data).is_ok());
    }

    // Round trip: the input as the inner packet.
    let k = key();
    let (lane, seq) = match data {
        [a, b, c, ..] => (u16::from_be_bytes([*a, *b]), u64::from(*c) << 40),
        _ => (0, 1),
    };
    let mut header = [0u8; auth::AUTH_HEADER_LEN];
    auth::emit(&Seal { key: &k, lane, seq }, SRC, DST, 4, data, &mut header);
    let sealed = [&header[..], data].concat();
    let mut ring = Keyring::new(vec![key()]).expect("one key");
    assert_eq!(
        ring.open(SRC, DST, &sealed),
        Ok(auth::AUTH_HEADER_LEN..sealed.len())
    );
    if let Some(&pick) = data.first() {
        let mut bad = sealed.clone();
        let i = usize::from(pick) % bad.len();
        bad[i] ^= 0x01;
        let mut ring = Keyring::new(vec![key()]).expect("one key");
        assert!(
            ring.open(SRC, DST, &bad).is_err(),
            "byte {i} changed, still opened"
        );
    }
}

use crate::sync::session::{Incoming, SessionConfig, SyncSession};
use crate::sync::wire::{self, Body, Header, Key, Message, MessageType, Policy};
use crate::time::Instant;

/// The key the keyed checks and the `keyed_*` seeds use.
pub const FUZZ_KEY: &[u8] = b"fuzz";

/// A received sync message: `Message::new_checked` and every accessor, `verify` with and
/// without a key, a rebuild that must give the same bytes (MAC included when the key is
/// [`FUZZ_KEY`]), and two sessions (backup, master just taken over) handling it twice (the
/// second time a replay): no panic, and a refusal never comes with records.
pub fn sync_message(data: &[u8]) {
    let key = Key::new(FUZZ_KEY);
    if let Ok(m) = Message::new_checked(data) {
        let records: Vec<_> = m.records().collect();
        let records6: Vec<_> = m.records6().collect();
        let ids: Vec<u32> = m.requesters().collect();
        match m.kind() {
            MessageType::Conns => assert_eq!(records.len(), m.count() as usize),
            MessageType::Conns6 => assert_eq!(records6.len(), m.count() as usize),
            MessageType::BulkRequest => assert!(records.is_empty() && ids.is_empty()),
            MessageType::BulkEnd => assert_eq!(ids.len(), m.count() as usize),
        }
        assert!(m.kind() == MessageType::Conns || records.is_empty());
        assert!(m.kind() == MessageType::Conns6 || records6.is_empty());
        assert!(records.iter().all(wire::encodable));
        assert!(records6.iter().all(wire::encodable));
        let body = match m.kind() {
            MessageType::Conns => Body::Conns(&records),
            MessageType::Conns6 => Body::Conns6(&records6),
            MessageType::BulkRequest => Body::BulkRequest,
            MessageType::BulkEnd => Body::BulkEnd(&ids),
        };
        let hdr = Header {
            syncid: m.syncid(),
            sender: m.sender(),
            sequence: m.sequence(),
        };
        let keyed = Policy {
            syncid: m.syncid(),
            maxlen: usize::MAX,
            key: Some(key.clone()),
        };
        let mut again = Vec::new();
        wire::build(&hdr, body, m.is_authenticated().then_some(&key), &mut again);
        // The reserved bytes and unknown flag bits are not kept, nor FLAG_CONFIRMED on a
        // message without records.
        let mut norm = data.to_vec();
        let confirmed = !records.is_empty() || !records6.is_empty();
        norm[7] &= wire::FLAG_AUTH | if confirmed { wire::FLAG_CONFIRMED } else { 0 };
        assert!(records.iter().all(|r| r.confirmed == m.is_confirmed()));
        assert!(records6.iter().all(|r| r.confirmed == m.is_confirmed()));
        norm[22] = 0;
        norm[23] = 0;
        if m.is_authenticated() && m.verify(&keyed).is_ok() {
            let n = norm.len();
            norm[n - wire::MAC_LEN..].copy_from_slice(&again[n - wire::MAC_LEN..]);
        }
        if !m.is_authenticated() || m.verify(&keyed).is_ok() {
            assert_eq!(again, norm, "rebuild differs");
        }
        let rebuilt = Message::new_checked(&again).expect("a rebuilt message parses");
        if m.is_authenticated() {
            assert_eq!(rebuilt.verify(&keyed), Ok(()));
        }
        let plain = Policy { key: None, ..keyed };
        let _ = m.verify(&plain);
    }
    let now = Instant::from_secs(1);
    for master in [false, true] {
        for k in [None, Some(key.clone())] {
            let mut s = SyncSession::new(SessionConfig::new(0, 1472, k, 0xfffe_fffe), now);
            s.set_master(now, master);
            for _ in 0..2 {
                match s.handle_message(now, data) {
                    Ok(Incoming::Records(rs)) => {
                        // A backup installs records, and so does a master within its handover
                        // window (this one took over at `now`): the last changes of the
                        // master it replaces.
                        assert!(rs.count() <= wire::records_per_message(1472, false));
                    }
                    Ok(Incoming::Records6(rs)) => {
                        assert!(rs.count() <= wire::records6_per_message(1472, false));
                    }
                    Ok(Incoming::Handled(_)) | Err(_) => {}
                }
            }
            s.handle_timeout(Instant::from_secs(2));
            while let Some(d) = s.poll_dump() {
                s.push_dump6(d.pass, &[]);
                s.push_dump(now, d.pass, &[], true);
            }
            while let Some(out) = s.poll_transmit() {
                assert!(out.len() <= 1472);
                Message::new_checked(&out).expect("we send what we parse");
            }
        }
    }
}

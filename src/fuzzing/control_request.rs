use crate::control::format::Listing;
use crate::control::proto::{Request, Response};
use crate::director::conn::Timeouts as ConnTimeouts;
use crate::director::Registry;
use crate::model::{ServiceSet, Timeouts};

/// Lines read from the control socket, as the director parses them (one JSON [`Request`] per
/// line, several per connection) and as `tunlb adm` parses an answer ([`Response`]: the client
/// must not trust whatever listens on the socket either). A request that parses serializes
/// back to a line that parses to the same request; an `Apply` batch goes through
/// `ServiceSet::apply_batch` against the connection's table as the director runs it: applied
/// whole (the table then builds a data-path snapshot and lists) or refused with the failing
/// command's index inside the batch and the table unchanged. Never a panic.
pub fn control_request(data: &[u8]) {
    let mut set = ServiceSet::default();
    let mut timeouts = Timeouts::default();
    for line in data.split(|&b| b == b'\n') {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        if let Ok(resp) = serde_json::from_str::<Response>(line) {
            let again = serde_json::to_string(&resp).expect("a response serializes");
            assert_eq!(
                serde_json::from_str::<Response>(&again).ok(),
                Some(resp),
                "{again}"
            );
        }
        let Ok(req) = serde_json::from_str::<Request>(line) else {
            continue;
        };
        let again = serde_json::to_string(&req).expect("a request serializes");
        assert!(!again.contains('\n'), "a request line has no newline");
        assert_eq!(
            serde_json::from_str::<Request>(&again).ok().as_ref(),
            Some(&req),
            "{again}"
        );
        let Request::Apply(edits) = req else {
            continue;
        };
        let before = (set.clone(), timeouts);
        match set.apply_batch(&mut timeouts, &edits) {
            Ok(_) => {
                if crate::director::table::check_forwardable(&set).is_ok() {
                    let _ = Registry::new().build(&set, &ConnTimeouts::default());
                }
                let _ = Listing::from_set(&set);
            }
            Err(e) => {
                assert!(
                    e.index < edits.len(),
                    "error index {} of {}",
                    e.index,
                    edits.len()
                );
                assert!(
                    (set.clone(), timeouts) == before,
                    "a refused batch changed the table"
                );
                let _ = Response::from_batch_error(&e);
            }
        }
    }
}

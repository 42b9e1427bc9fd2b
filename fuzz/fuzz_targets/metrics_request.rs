//! The `/metrics` endpoint's request-head parser and content negotiation: whatever a scraper
//! (or anyone who can reach the port) sends, an answer or `None`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunlb::metrics::http::parse_head;
use tunlb::metrics::Format;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(head) = parse_head(text) {
        assert!(!head.method.is_empty());
        let _ = Format::from_accept(head.accept).content_type();
    }
});

use crate::metrics::http::parse_head;
use crate::metrics::Format;

/// The `/metrics` endpoint's request-head parser and content negotiation: whatever a scraper
/// (or anyone who can reach the port) sends, an answer or `None`, never a panic.
pub fn metrics_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(head) = parse_head(text) {
        assert!(!head.method.is_empty());
        let _ = Format::from_accept(head.accept).content_type();
    }
}

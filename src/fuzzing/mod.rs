//! The bodies of the fuzz targets in `fuzz/`, one function per target, each taking the raw
//! input and panicking when an invariant breaks.
//!
//! They live in the library so that two callers run the same checks: the cargo-fuzz binaries
//! in `fuzz/fuzz_targets/` (one line each) and `tests/fuzz_corpora.rs`, which replays every
//! committed input in `fuzz/corpus/<target>/` as part of `cargo test`. Not an API.

mod admin_input;
mod agent_merged;
mod director_packet;
mod encap_strip;
mod gue_auth;
mod gue_gro;
mod icmp_reply;
mod keepalived_conf;
mod metrics_request;
mod sync_message;
mod vnet_gso;
mod vrrp_advert;
mod wire_views;

pub use admin_input::admin_input;
pub use agent_merged::agent_merged;
pub use director_packet::director_packet;
pub use encap_strip::encap_strip;
pub use gue_auth::{gue_auth, GUE_AUTH_KEY};
pub use gue_gro::gue_gro;
pub use icmp_reply::icmp_reply;
pub use keepalived_conf::keepalived_conf;
pub use metrics_request::metrics_request;
pub use sync_message::{sync_message, FUZZ_KEY};
pub use vnet_gso::vnet_gso;
pub use vrrp_advert::vrrp_advert;
pub use wire_views::wire_views;

/// A target's body: the raw input, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the name is its binary in `fuzz/Cargo.toml`, its file in
/// `fuzz/fuzz_targets/` and its corpus folder in `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("admin_input", admin_input),
    ("agent_merged", agent_merged),
    ("director_packet", director_packet),
    ("encap_strip", encap_strip),
    ("gue_auth", gue_auth),
    ("gue_gro", gue_gro),
    ("icmp_reply", icmp_reply),
    ("keepalived_conf", keepalived_conf),
    ("metrics_request", metrics_request),
    ("sync_message", sync_message),
    ("vnet_gso", vnet_gso),
    ("vrrp_advert", vrrp_advert),
    ("wire_views", wire_views),
];

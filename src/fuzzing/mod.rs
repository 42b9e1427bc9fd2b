//! The bodies of the fuzz targets in `fuzz/`, one function per target, each taking the raw
//! input and panicking when an invariant breaks.
//!
//! They live in the library so that two callers run the same checks: the cargo-fuzz binaries
//! in `fuzz/fuzz_targets/` (one line each) and `tests/fuzz_corpora.rs`, which replays every
//! committed input in `fuzz/corpus/<target>/` as part of `cargo test`. Not an API.
//!
//! The targets that run the director core check every packet it emits with an [`Oracle`], an
//! independent parser passed in by the caller: `oracle.rs` (etherparse) is not compiled into
//! the library's normal build (etherparse is a dev-dependency and a fuzz-crate dependency
//! only); the unit tests, `tests/fuzz_corpora.rs` and the fuzz crate each compile it and pass
//! its `check_ipv4`. Those targets are listed in [`ORACLE_TARGETS`], the others in [`TARGETS`].

mod admin_input;
mod agent_filter;
mod agent_merged;
mod control_request;
mod director_packet;
mod dr;
pub mod emitted;
mod encap_strip;
mod encap_strip6;
mod gso_classify;
mod gue_auth;
mod gue_chance;
mod gue_gro;
mod health_reply;
mod icmp_reply;
mod keepalived_conf;
mod metrics_request;
mod netlink;
#[cfg(test)]
pub(crate) mod oracle;
#[cfg(test)]
mod seeds;
mod snat;
mod sync_message;
mod tunnel_route;
mod vnet_gso;
mod vrrp_advert;
mod wire_views;
mod wire_views6;

pub use admin_input::admin_input;
pub use agent_filter::agent_filter;
pub use agent_merged::agent_merged;
pub use control_request::control_request;
pub use director_packet::director_packet;
pub use dr::dr;
pub use encap_strip::encap_strip;
pub use encap_strip6::encap_strip6;
pub use gso_classify::gso_classify;
pub use gue_auth::{gue_auth, GUE_AUTH_KEY};
pub use gue_chance::gue_chance;
pub use gue_gro::gue_gro;
pub use health_reply::health_reply;
pub use icmp_reply::icmp_reply;
pub use keepalived_conf::keepalived_conf;
pub use metrics_request::metrics_request;
pub use netlink::netlink;
pub use snat::snat;
pub use sync_message::{sync_message, FUZZ_KEY};
pub use tunnel_route::tunnel_route;
pub use vnet_gso::vnet_gso;
pub use vrrp_advert::vrrp_advert;
pub use wire_views::wire_views;
pub use wire_views6::wire_views6;

/// A target's body: the raw input, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// An independent check of one IPv4 packet the core emitted: `Ok`, or what is wrong. The
/// second argument is the UDP port whose datagrams carry GUE (0: none). `oracle::check_ipv4`
/// (etherparse, see the module doc) is the one every caller passes.
pub type Oracle = fn(&[u8], u16) -> Result<(), String>;

/// The body of a target that checks emitted packets: the raw input and the oracle.
pub type OracleTarget = fn(&[u8], Oracle);

/// Every target by name: the name is its binary in `fuzz/Cargo.toml`, its file in
/// `fuzz/fuzz_targets/` and its corpus folder in `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("admin_input", admin_input),
    ("agent_filter", agent_filter),
    ("agent_merged", agent_merged),
    ("control_request", control_request),
    ("encap_strip", encap_strip),
    ("encap_strip6", encap_strip6),
    ("gue_auth", gue_auth),
    ("gue_chance", gue_chance),
    ("gue_gro", gue_gro),
    ("health_reply", health_reply),
    ("icmp_reply", icmp_reply),
    ("keepalived_conf", keepalived_conf),
    ("metrics_request", metrics_request),
    ("netlink", netlink),
    ("sync_message", sync_message),
    ("vnet_gso", vnet_gso),
    ("vrrp_advert", vrrp_advert),
    ("wire_views", wire_views),
];

/// The targets whose body takes an [`Oracle`] (named as in [`TARGETS`]; the two lists are
/// disjoint).
pub const ORACLE_TARGETS: &[(&str, OracleTarget)] = &[
    ("director_packet", director_packet),
    ("dr", dr),
    ("gso_classify", gso_classify),
    ("snat", snat),
    ("tunnel_route", tunnel_route),
    ("wire_views6", wire_views6),
];

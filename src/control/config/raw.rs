//! The TOML as written: serde types that refuse unknown keys (`deny_unknown_fields`) and keep
//! each value's place ([`Spanned`]) for the messages of [`validate`](super::validate).

use toml::Spanned;

use super::vrrp::{RawInstance, RawScript, RawSync, RawSyncGroup, RawVrrp};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) director: Option<RawDirector>,
    pub(super) timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub(super) service: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub(super) tunnel_route: Vec<Spanned<RawTunnelRoute>>,
    #[serde(default)]
    pub(super) snat: Vec<Spanned<RawSnat>>,
    pub(super) vrrp: Option<Spanned<RawVrrp>>,
    #[serde(default)]
    pub(super) vrrp_instance: Vec<Spanned<RawInstance>>,
    #[serde(default)]
    pub(super) vrrp_script: Vec<Spanned<RawScript>>,
    #[serde(default)]
    pub(super) vrrp_sync_group: Vec<Spanned<RawSyncGroup>>,
    pub(super) sync: Option<Spanned<RawSync>>,
    pub(super) scripts: Option<Spanned<RawScripts>>,
}

/// `[scripts]`: keepalived's `script_user USER [GROUP]` and `enable_script_security`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScripts {
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
    #[serde(default)]
    pub(super) enable_script_security: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnelRoute {
    pub(super) prefix: Option<Spanned<String>>,
    pub(super) via: Option<Spanned<String>>,
    pub(super) encap: Option<Spanned<String>>,
    pub(super) gre_key: Option<Spanned<i64>>,
    pub(super) gue_port: Option<Spanned<i64>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSnat {
    pub(super) source: Option<Spanned<String>>,
    pub(super) to: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirector {
    pub(super) queues: Option<Spanned<i64>>,
    pub(super) tun_name: Option<Spanned<String>>,
    pub(super) tunnel_mtu: Option<Spanned<i64>>,
    pub(super) local_address: Option<Spanned<String>>,
    pub(super) local_address6: Option<Spanned<String>>,
    pub(super) announce: Option<Vec<String>>,
    pub(super) announce_table: Option<Spanned<i64>>,
    pub(super) sloppy_tcp: Option<bool>,
    pub(super) sloppy_sctp: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub(super) tcp: Option<Spanned<i64>>,
    pub(super) tcpfin: Option<Spanned<i64>>,
    pub(super) udp: Option<Spanned<i64>>,
}

/// A service's `netmask`: a dotted IPv4 mask (`"255.255.255.0"`) or an IPv6 prefix length
/// (`64`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RawNetmask {
    /// `netmask = "255.255.255.0"`.
    Dotted(String),
    /// `netmask = 64`.
    Prefix(i64),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) vip: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) scheduler: Option<Spanned<String>>,
    pub(super) persistence: Option<Spanned<i64>>,
    pub(super) netmask: Option<Spanned<RawNetmask>>,
    pub(super) mss_clamp: Option<Spanned<i64>>,
    pub(super) expire_nodest_conn: Option<bool>,
    pub(super) expire_quiescent_template: Option<bool>,
    #[serde(default)]
    pub(super) real_server: Vec<Spanned<RawRealServer>>,
    pub(super) delay_loop: Option<Spanned<i64>>,
    pub(super) alpha: Option<bool>,
    pub(super) omega: Option<bool>,
    pub(super) quorum: Option<Spanned<i64>>,
    pub(super) hysteresis: Option<Spanned<i64>>,
    pub(super) quorum_up: Option<String>,
    pub(super) quorum_down: Option<String>,
    pub(super) sorry_server: Option<Spanned<String>>,
    pub(super) sorry_server_inhibit: Option<bool>,
    pub(super) ha_suspend: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub(super) fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) url: Option<String>,
    pub(super) status_code: Option<i64>,
    pub(super) digest: Option<String>,
    #[serde(default)]
    pub(super) urls: Vec<RawUrl>,
    pub(super) virtualhost: Option<String>,
    pub(super) connect_ip: Option<String>,
    pub(super) connect_port: Option<i64>,
    pub(super) bindto: Option<String>,
    pub(super) bind_port: Option<i64>,
    pub(super) connect_timeout: Option<i64>,
    pub(super) retry: Option<i64>,
    pub(super) nb_get_retry: Option<i64>,
    pub(super) delay_before_retry: Option<i64>,
    pub(super) warmup: Option<i64>,
    #[serde(default)]
    pub(super) check_through_tunnel: bool,
    pub(super) misc_path: Option<String>,
    pub(super) user: Option<String>,
    pub(super) group: Option<String>,
    pub(super) misc_timeout: Option<i64>,
    #[serde(default)]
    pub(super) misc_dynamic: bool,
    #[serde(default)]
    pub(super) enable_sni: bool,
    pub(super) sni_name: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) require_reply: Option<RequireReply>,
    pub(super) min_reply_length: Option<i64>,
    pub(super) max_reply_length: Option<i64>,
    pub(super) delay_loop: Option<i64>,
    pub(super) alpha: Option<bool>,
}

/// `require_reply = true` (any reply) or `require_reply = "HEX"` (a pattern).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum RequireReply {
    Any(bool),
    Pattern(String),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUrl {
    pub(super) path: String,
    pub(super) status_code: Option<i64>,
    pub(super) digest: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRealServer {
    pub(super) address: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) weight: Option<Spanned<i64>>,
    pub(super) forward: Option<Spanned<String>>,
    pub(super) tun_type: Option<Spanned<String>>,
    pub(super) tun_port: Option<Spanned<i64>>,
    pub(super) tun_csum: Option<Spanned<bool>>,
    pub(super) gre_key: Option<Spanned<i64>>,
    pub(super) tunnel_key: Option<Spanned<String>>,
    pub(super) u_threshold: Option<Spanned<i64>>,
    pub(super) l_threshold: Option<Spanned<i64>>,
    pub(super) inhibit_on_failure: Option<bool>,
    pub(super) check: Option<OneOrMany<RawCheck>>,
}

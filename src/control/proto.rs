//! What `adm` and the director say to each other: one JSON object per line, each way.
//!
//! A client writes a [`Request`] line and reads one [`Response`] line; it may send several
//! requests on one connection. One request is answered with several lines:
//! [`Request::StreamConns`] (`-L -c`), whose connections come in [`Response::ConnsChunk`]s of at
//! most [`CONN_CHUNK`] entries and end with [`Response::ConnsEnd`], so neither side holds the
//! whole listing as one line. Every change goes through [`Request::Apply`], a batch the director
//! applies all or nothing ([`ServiceSet::apply_batch`](crate::model::ServiceSet::apply_batch)),
//! so `-R` and a single `-a` follow the same path.

use crate::control::format::{ConnEntry, Listing};
use crate::control::vrrp_status::VrrpEntry;
use crate::model::{BatchError, Edit, Timeouts};

/// The longest request or response line either side accepts (a large `-R` batch fits).
pub const MAX_LINE: usize = 16 << 20;

/// The most connection entries in one [`Response::ConnsChunk`] line (about 150 kB of JSON).
pub const CONN_CHUNK: usize = 1024;

/// A request from `adm` to the director.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Apply these table edits in order, all or none (`-A -E -D -C -a -e -d --set -Z`).
    /// Answer: [`Response::Ok`] or [`Response::Error`].
    Apply(Vec<Edit>),
    /// The whole table with its counters (`-L`, `-L -t`, `-S`). Answer: [`Response::Listing`].
    List,
    /// The connection entries (`-L -c`) in one line. Answer: [`Response::Conns`]. For `adm`
    /// builds from before [`Request::StreamConns`]; today's `adm` asks that first.
    ListConns,
    /// The timeouts (`-L --timeout`). Answer: [`Response::Timeouts`].
    GetTimeouts,
    /// The running table, timeouts and director settings as the TOML that
    /// `tunlb director --config` loads (`--save-config`). Answer: [`Response::Config`].
    Config,
    /// Re-read the director's `--config` file, as SIGHUP does (`--reload`). Answer:
    /// [`Response::Reloaded`], or [`Response::Error`] with the table unchanged.
    Reload,
    /// The VRRP instances (`--vrrp`). Answer: [`Response::Vrrp`].
    ListVrrp,
    /// The connection entries (`-L -c`), streamed. Answer: zero or more
    /// [`Response::ConnsChunk`] lines, then [`Response::ConnsEnd`] (or [`Response::Error`],
    /// which ends the answer too). A director from before it answers [`Response::Error`]
    /// (`invalid request: ...`); the client then asks [`Request::ListConns`].
    StreamConns,
}

/// The director's answer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The batch was applied.
    Ok,
    /// The request failed and changed nothing.
    Error {
        /// ipvsadm's text for the error (`Service already exists`, ...).
        message: String,
        /// For a batch, the index of the failing command.
        index: Option<usize>,
    },
    /// The peer is not root: nothing was read or changed.
    PermissionDenied,
    /// The table.
    Listing(Listing),
    /// The connection entries.
    Conns(Vec<ConnEntry>),
    /// Some of the connection entries of a streamed answer ([`Request::StreamConns`]); more
    /// lines follow.
    ConnsChunk(Vec<ConnEntry>),
    /// The last line of a streamed answer ([`Request::StreamConns`]).
    ConnsEnd,
    /// The timeouts.
    Timeouts(Timeouts),
    /// The running configuration as TOML ([`config::to_toml`](crate::control::config::to_toml)).
    Config {
        /// The text of the file.
        toml: String,
    },
    /// The `--config` file was re-read and is now the running table.
    Reloaded {
        /// What was loaded (`reloaded FILE (N services)`).
        message: String,
    },
    /// The VRRP instances, in config order (empty when none is configured).
    Vrrp(Vec<VrrpEntry>),
}

impl Response {
    /// The answer to a failed batch.
    pub fn from_batch_error(e: &BatchError) -> Response {
        Response::Error {
            message: e.error.to_string(),
            index: Some(e.index),
        }
    }

    /// An answer for a request the director could not serve at all.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
            index: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::adm::parse;
    use crate::control::ops::AdmError;
    use crate::model::ServiceSet;

    fn cmd(line: &str) -> Edit {
        let args: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        parse(&args).expect(line).edit().expect(line).clone()
    }

    #[test]
    fn requests_survive_json_on_one_line() {
        let req = Request::Apply(vec![
            cmd("-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0 --mss-clamp 1400"),
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 7000 --tun-csum"),
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --gre-key 42"),
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.3:8080 -m -w 0 -x 10 -y 5"),
            cmd("-e -t 10.0.0.1:80 -r 10.0.1.4"),
            cmd("-d -t 10.0.0.1:80 -r 10.0.1.4"),
            cmd("--set 1 2 3"),
            cmd("-Z"),
            cmd("-D -u 10.0.0.1:53"),
            cmd("-C"),
        ]);
        for r in [
            req,
            Request::List,
            Request::ListConns,
            Request::GetTimeouts,
            Request::Config,
            Request::Reload,
            Request::ListVrrp,
            Request::StreamConns,
        ] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            let back: Request = serde_json::from_str(&line).unwrap();
            assert_eq!(back, r);
        }
    }

    /// What `adm` writes on the socket for a batch: an `adm` and a director of different builds
    /// must still understand each other, so these bytes do not change.
    #[test]
    fn apply_request_json_is_stable() {
        let req = Request::Apply(vec![
            cmd("-A -t 10.0.0.1:80 -s rr -p 600 -M 255.255.255.0 --mss-clamp 1400"),
            cmd("-E -u 10.0.0.1:53"),
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 7000 --tun-csum"),
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gre --gre-key 42"),
            cmd("-a -t 10.0.0.1:80 -r 10.0.1.3:8080 -m -w 0 -x 10 -y 5"),
            cmd("-e -t 10.0.0.1:80 -r 10.0.1.4 -g"),
            cmd("-d -t 10.0.0.1:80 -r 10.0.1.4"),
            cmd("--set 1 2 3"),
            cmd("-Z"),
            cmd("-Z -t 10.0.0.1:80"),
            cmd("-D -u 10.0.0.1:53"),
            cmd("-C"),
        ]);
        let json = serde_json::to_string(&req).unwrap();
        let expected = concat!(
            r#"{"apply":["#,
            r#"{"add_service":{"key":{"vip":"10.0.0.1","port":80,"proto":"tcp"},"scheduler":"rr","persistence":{"timeout":600,"netmask":"255.255.255.0"},"mss_clamp":1400}},"#,
            r#"{"edit_service":{"key":{"vip":"10.0.0.1","port":53,"proto":"udp"},"scheduler":"wlc","persistence":null,"mss_clamp":null}},"#,
            r#"{"add_server":{"service":{"vip":"10.0.0.1","port":80,"proto":"tcp"},"dest":{"addr":"10.0.1.1","port":80,"weight":1,"method":"tunnel","tun_type":"gue","tun_port":7000,"tun_csum":true,"gre_key":null,"u_threshold":0,"l_threshold":0}}},"#,
            r#"{"add_server":{"service":{"vip":"10.0.0.1","port":80,"proto":"tcp"},"dest":{"addr":"10.0.1.2","port":80,"weight":1,"method":"tunnel","tun_type":"gre","tun_port":6080,"tun_csum":false,"gre_key":42,"u_threshold":0,"l_threshold":0}}},"#,
            r#"{"add_server":{"service":{"vip":"10.0.0.1","port":80,"proto":"tcp"},"dest":{"addr":"10.0.1.3","port":8080,"weight":0,"method":"nat","u_threshold":10,"l_threshold":5}}},"#,
            r#"{"edit_server":{"service":{"vip":"10.0.0.1","port":80,"proto":"tcp"},"dest":{"addr":"10.0.1.4","port":80,"weight":1,"method":"dr","u_threshold":0,"l_threshold":0}}},"#,
            r#"{"delete_server":{"service":{"vip":"10.0.0.1","port":80,"proto":"tcp"},"addr":"10.0.1.4","port":80}},"#,
            r#"{"set_timeouts":{"tcp":1,"tcpfin":2,"udp":3}},"#,
            r#"{"zero":null},"#,
            r#"{"zero":{"vip":"10.0.0.1","port":80,"proto":"tcp"}},"#,
            r#"{"delete_service":{"vip":"10.0.0.1","port":53,"proto":"udp"}},"#,
            r#""clear""#,
            r#"]}"#,
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn responses_survive_json() {
        let mut set = ServiceSet::default();
        set.apply(&cmd("-A -t 10.0.0.1:80")).unwrap();
        set.apply(&cmd("-a -t 10.0.0.1:80 -r 10.0.1.1 -i")).unwrap();
        for r in [
            Response::Ok,
            Response::PermissionDenied,
            Response::from_batch_error(&BatchError {
                index: 2,
                error: AdmError::DestExists,
            }),
            Response::Listing(Listing::from_set(&set)),
            Response::Conns(vec![]),
            Response::Timeouts(Timeouts::default()),
            Response::Config {
                toml: "[director]\nqueues = 1\n".to_string(),
            },
            Response::Reloaded {
                message: "reloaded /etc/tunlb.toml (1 services)".to_string(),
            },
            Response::Vrrp(vec![vrrp_entry()]),
            Response::ConnsChunk(vec![]),
            Response::ConnsEnd,
        ] {
            let line = serde_json::to_string(&r).unwrap();
            let back: Response = serde_json::from_str(&line).unwrap();
            assert_eq!(back, r);
        }
    }

    fn vrrp_entry() -> VrrpEntry {
        VrrpEntry {
            name: "VI_1".into(),
            state: "MASTER".into(),
            priority: 90,
            base_priority: 100,
            vrid: 51,
            interface: "eth0".into(),
            version: 2,
            master: Some("192.168.150.11".parse().unwrap()),
            since_ms: Some(1500),
            vips: vec!["192.168.150.100".parse().unwrap()],
            adverts_sent: 3,
            adverts_received: 0,
        }
    }

    /// What `adm --vrrp` asks and the director answers: scripts read `adm --vrrp --json`'s
    /// The streamed `-L -c`: what an `adm` and a director of different builds exchange.
    #[test]
    fn streamed_conns_json_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::StreamConns).unwrap(),
            r#""stream_conns""#
        );
        let entry = ConnEntry {
            proto: crate::model::Protocol::Tcp,
            expires_secs: 899,
            state: "ESTABLISHED".into(),
            client: "10.0.0.1:4000".parse().unwrap(),
            vip: "10.9.9.9:80".parse().unwrap(),
            dest: "172.16.0.1:80".parse().unwrap(),
        };
        assert_eq!(
            serde_json::to_string(&Response::ConnsChunk(vec![entry])).unwrap(),
            concat!(
                r#"{"conns_chunk":[{"proto":"tcp","expires_secs":899,"state":"ESTABLISHED","#,
                r#""client":"10.0.0.1:4000","vip":"10.9.9.9:80","dest":"172.16.0.1:80"}]}"#
            )
        );
        assert_eq!(
            serde_json::to_string(&Response::ConnsEnd).unwrap(),
            r#""conns_end""#
        );
    }

    /// fields, and an `adm` and a director of different builds must understand each other.
    #[test]
    fn vrrp_json_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::ListVrrp).unwrap(),
            r#""list_vrrp""#
        );
        assert_eq!(
            serde_json::to_string(&Response::Vrrp(vec![vrrp_entry()])).unwrap(),
            concat!(
                r#"{"vrrp":[{"name":"VI_1","state":"MASTER","priority":90,"base_priority":100,"#,
                r#""vrid":51,"interface":"eth0","version":2,"master":"192.168.150.11","#,
                r#""since_ms":1500,"vips":["192.168.150.100"],"adverts_sent":3,"adverts_received":0}]}"#
            )
        );
    }
}

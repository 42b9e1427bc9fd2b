use std::net::Ipv4Addr;

use super::*;
use crate::control::config;
use crate::control::proto::{Request, Response};
use crate::director::{DirectorConfig, Snapshot};
use crate::health::{Health, HealthPlane};
use crate::model::Edit;
use crate::model::{DestConfig, Forward, Protocol, SchedulerKind, ServiceConfig, ServiceKey};

/// A control plane with two workers and no services (so it touches no route), reading its
/// config from `config_path`.
fn plane(config_path: Option<PathBuf>) -> ControlPlane {
    let shared = Arc::new(Shared::new(Snapshot::default()));
    let cores = (0..2)
        .map(|_| {
            Arc::new(Mutex::new(Director::new(
                shared.clone(),
                DirectorConfig::default(),
            )))
        })
        .collect();
    let host = HostSetup {
        net: NetChanges::new(),
        tun_name: "tlbtest0".to_string(),
        announce: Vec::new(),
        announcer: crate::daemon::announce::Announcer::new(),
        announce_table: None,
        config_path,
    };
    let timeouts = Timeouts {
        tcp: 600,
        tcpfin: 60,
        udp: 30,
    };
    ControlPlane::new(
        shared,
        cores,
        Clock::new(),
        host,
        ServiceSet::default(),
        timeouts,
    )
    .expect("control plane")
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tunlb-plane-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write a temp file");
    path
}

#[test]
fn config_reports_the_running_settings() {
    let plane = plane(None);
    plane.set_settings(DirectorSettings {
        queues: 7,
        tun_name: "ignored".to_string(),
        tunnel_mtu: 1400,
        local_address: Some(Ipv4Addr::new(10, 2, 0, 2)),
        ..DirectorSettings::default()
    });
    let Response::Config { toml } = plane.handle(Request::Config) else {
        panic!("no config answer");
    };
    let (settings, set) = config::load_str(&toml, "saved.toml").expect("loads back");
    assert!(set.services.is_empty());
    assert_eq!(
        settings,
        DirectorSettings {
            queues: 2,
            tun_name: "tlbtest0".to_string(),
            tunnel_mtu: 1400,
            local_address: Some(Ipv4Addr::new(10, 2, 0, 2)),
            announce: Vec::new(),
            timeouts: Timeouts {
                tcp: 600,
                tcpfin: 60,
                udp: 30
            },
            health: Default::default(),
            tunnel_routes: Vec::new(),
            snat: Vec::new(),
            ..DirectorSettings::default()
        }
    );
    // `--set` shows in the next save; an unspecified local address is left out.
    let set_cmd = Edit::SetTimeouts(Timeouts {
        tcp: 900,
        tcpfin: 0,
        udp: 0,
    });
    assert_eq!(plane.handle(Request::Apply(vec![set_cmd])), Response::Ok);
    plane.set_settings(DirectorSettings {
        local_address: Some(Ipv4Addr::UNSPECIFIED),
        ..DirectorSettings::default()
    });
    let toml = plane.config_toml().expect("config");
    let (settings, _) = config::load_str(&toml, "saved.toml").expect("loads back");
    assert_eq!(settings.timeouts.tcp, 900);
    assert_eq!(settings.local_address, None);
}

/// A real server stored with port 0 (the service's) and one stored with the service port
/// are both found by a health edit naming either port.
#[test]
fn health_edits_match_a_real_server_stored_with_port_zero() {
    let key = ServiceKey {
        vip: Ipv4Addr::new(10, 100, 0, 100).into(),
        port: 80,
        proto: Protocol::Tcp,
    };
    let dest = |last: u8, port: u16, forward: Forward| DestConfig {
        addr: Ipv4Addr::new(10, 3, 0, last).into(),
        port,
        weight: 1,
        forward,
        u_threshold: 0,
        l_threshold: 0,
    };
    let tunnel = Forward::tunnel(Default::default());
    let set = ServiceSet {
        services: vec![ServiceConfig {
            key,
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
            dests: vec![
                dest(12, 0, tunnel),
                dest(13, 80, tunnel),
                dest(14, 0, Forward::Nat),
                dest(15, 8080, Forward::Nat),
            ],
            policy: Default::default(),
        }],
    };
    let ports: Vec<u16> = set.services[0]
        .dests
        .iter()
        .map(|d| d.port_in(key))
        .collect();
    assert_eq!(ports, [80, 80, 80, 8080]);
    let mut overlay = HealthOverlay::default();
    let rip = |last| Ipv4Addr::new(10, 3, 0, last);
    // The monitor names the service port; the table holds 0 (and the other way round).
    assert_eq!(overlay.set_dest(key, rip(12), 80, Health::Down), Health::Up);
    assert_eq!(
        overlay.set_dest(key, rip(13), 0, Health::Weight(0)),
        Health::Up
    );
    assert_eq!(overlay.set_dest(key, rip(14), 80, Health::Down), Health::Up);
    assert_eq!(
        overlay.set_dest(key, rip(15), 8080, Health::Weight(3)),
        Health::Up
    );
    let (out, held) = overlay.apply(&set);
    assert!(held.is_empty(), "expire_nodest_conn holds nothing");
    let left: Vec<(std::net::IpAddr, u32)> = out.services[0]
        .dests
        .iter()
        .map(|d| (d.addr, d.weight))
        .collect();
    assert_eq!(left, [(rip(13).into(), 0), (rip(15).into(), 3)]);
    // Up again under the other spelling of the port restores the configured table.
    assert_eq!(overlay.set_dest(key, rip(12), 0, Health::Up), Health::Down);
    assert_eq!(
        overlay.set_dest(key, rip(13), 80, Health::Up),
        Health::Weight(0)
    );
    assert_eq!(overlay.set_dest(key, rip(14), 0, Health::Up), Health::Down);
    assert_eq!(
        overlay.set_dest(key, rip(15), 8080, Health::Up),
        Health::Weight(3)
    );
    assert_eq!(overlay.apply(&set), (set.clone(), Vec::new()));
    // With expire_nodest_conn = false a server that is down is held, one at weight 0 is not
    // (it stays in the table).
    let mut keep = set;
    keep.services[0].policy.expire_nodest_conn = false;
    overlay.set_dest(key, rip(12), 80, Health::Down);
    overlay.set_dest(key, rip(13), 80, Health::Weight(0));
    let (out, held) = overlay.apply(&keep);
    assert_eq!(held, [(key, keep.services[0].dests[0].clone())]);
    assert_eq!(out.services[0].dests.len(), 3);
}

#[test]
fn reload_answers_with_the_outcome() {
    let without = plane(None);
    assert_eq!(
        without.handle(Request::Reload),
        Response::error(
            "reload rejected, running table kept: the director was started without \
             --config: there is no file to reload"
        )
    );

    let path = temp_file("reload.toml", "[timeouts]\ntcp = 0\n");
    let plane = plane(Some(path.clone()));
    let Response::Error { message, .. } = plane.handle(Request::Reload) else {
        panic!("a bad file must be refused");
    };
    let at = format!("{}:2:7: timeouts.tcp", path.display());
    assert!(message.contains(&at), "{message}");
    assert_eq!(
        plane.handle(Request::GetTimeouts),
        Response::Timeouts(Timeouts {
            tcp: 600,
            tcpfin: 60,
            udp: 30
        })
    );

    assert_eq!(
        plane.health_generation(),
        0,
        "a rejected file changes no checks"
    );
    let checked = "[timeouts]\ntcp = 100\n[[service]]\nvip = \"10.100.0.100\"\nport = 80\n\
                   delay_loop = 2\n";
    let (want, _) = config::load_str(checked, "h.toml").expect("valid");
    assert_eq!(want.health.services.len(), 1);
    std::fs::write(&path, "[timeouts]\ntcp = 100\n").expect("rewrite");
    plane.set_health_config(want.health.clone());
    assert_eq!(plane.health_config(), (1, want.health));
    assert_eq!(
        plane.handle(Request::Reload),
        Response::Reloaded {
            message: format!("reloaded {} (0 services)", path.display())
        }
    );
    assert!(matches!(
        plane.handle(Request::GetTimeouts),
        Response::Timeouts(t) if t.tcp == 100
    ));
    // The reload hands the health monitor the file's checks (here: none) as a new generation.
    assert_eq!(plane.health_config(), (2, HealthConfig::default()));
    let _ = std::fs::remove_file(&path);
}

/// A flow key from client port `cport` to 10.9.9.9:80.
fn flow(cport: u16) -> crate::director::conn::ConnKey {
    crate::director::conn::ConnKey::new(
        6,
        Ipv4Addr::new(10, 0, 0, 1),
        cport,
        Ipv4Addr::new(10, 9, 9, 9),
        80,
    )
}

/// A flow to real server 1 in `state` that expires `secs` after `plane`'s now.
fn conn(
    plane: &ControlPlane,
    secs: u64,
    state: crate::director::conn::ConnState,
) -> crate::director::conn::Conn {
    let expires = plane.clock.now() + crate::time::Duration::from_secs(secs);
    crate::director::conn::Conn::new(crate::director::conn::DestId(1), state, expires)
}

#[test]
fn a_flow_in_several_tables_is_listed_once_with_its_longest_lived_copy() {
    use crate::director::conn::ConnState::{Established, FinWait};
    let plane = plane(None);
    let put = |core: usize, cport: u16, c| {
        let mut d = plane.cores[core].lock().expect("worker");
        d.conns_mut().insert(flow(cport), c).expect("room");
    };
    // 4000: in both workers and synced, the second worker's copy lives longest.
    put(0, 4000, conn(&plane, 100, Established));
    put(1, 4000, conn(&plane, 900, Established));
    let synced = |cport: u16, c| plane.shared.synced.upsert(flow(cport), c).expect("room");
    synced(4000, conn(&plane, 200, FinWait));
    // 4001: in the first worker only; 4002: synced, and an expired copy in a worker.
    put(0, 4001, conn(&plane, 50, Established));
    synced(4002, conn(&plane, 300, FinWait));
    put(1, 4002, conn(&plane, 0, Established));
    // 4003: the same expiry in both workers and synced: listed once (the first worker's).
    put(0, 4003, conn(&plane, 500, Established));
    put(1, 4003, conn(&plane, 500, FinWait));
    synced(4003, conn(&plane, 500, FinWait));

    let Response::Conns(mut got) = plane.handle(Request::ListConns) else {
        panic!("no connections");
    };
    got.sort_by_key(|e| e.client.port());
    let seen: Vec<(u16, &str)> = got
        .iter()
        .map(|e| (e.client.port(), e.state.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (4000, "ESTABLISHED"),
            (4001, "ESTABLISHED"),
            (4002, "FIN_WAIT"),
            (4003, "ESTABLISHED")
        ]
    );
    assert!(got[0].expires_secs > 800, "{:?}", got[0]);
}

#[test]
fn the_connection_listing_is_streamed_in_chunks() {
    use crate::control::proto::CONN_CHUNK;
    use crate::control::socket::Answer;
    let plane = plane(None);
    let flows = 2 * CONN_CHUNK as u16 + 500;
    for cport in 0..flows {
        let c = conn(&plane, 600, crate::director::conn::ConnState::Established);
        let mut d = plane.cores[usize::from(cport % 2)].lock().expect("worker");
        d.conns_mut().insert(flow(cport), c).expect("room");
    }
    let Answer::Stream(lines) = plane.answer(Request::StreamConns) else {
        panic!("not streamed");
    };
    let lines: Vec<Response> = lines.collect();
    let (last, chunks) = lines.split_last().expect("lines");
    assert_eq!(last, &Response::ConnsEnd);
    let mut ports = Vec::new();
    for c in chunks {
        let Response::ConnsChunk(entries) = c else {
            panic!("{c:?}");
        };
        assert!(!entries.is_empty() && entries.len() <= CONN_CHUNK);
        ports.extend(entries.iter().map(|e| e.client.port()));
    }
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    ports.sort_unstable();
    assert_eq!(ports, (0..flows).collect::<Vec<_>>(), "each flow once");
    // The one-line answer (older adm builds) lists the same.
    assert_eq!(plane.conn_entries().len(), usize::from(flows));
    assert!(matches!(
        plane.answer(Request::List),
        Answer::One(Response::Listing(_))
    ));
}

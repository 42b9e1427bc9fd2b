//! SSL_GET end to end in the [`tun_lab`]: the director reads a keepalived.conf whose rs1 has an
//! `SSL_GET` check on port 443, served by `tunlb httpd --tls` (a self-signed certificate made
//! at start, which keepalived's SSL_GET accepts and so does tunlb's). When that TLS server
//! stops, rs1 leaves the table and the VIP's requests all go to rs2; when it starts again,
//! rs1 is back and answers requests.
//!
//! Each real server runs an agent and a plain httpd on its RIP and the hidden VIP (port 80,
//! what clients reach through the tunnel); rs1 also runs the TLS httpd on RIP:443.
//!
//! The service also has `omega` and a `quorum_down` that creates a file: stopping the director
//! while the service has its quorum runs it (keepalived's omega: "on daemon shutdown consider
//! quorum ... down notifiers").

use std::time::{Duration, Instant};

use crate::harness::tun_lab::{self, DIRECTOR, RS1, RS2, VIP};
use crate::harness::{
    start_agent, start_director, start_httpd, wait_until, Netns, Pid, TempPath, STARTUP, TUNLB,
};
use crate::health::{
    get, weight_in, CONNECT_TIMEOUT, DELAY_BEFORE_RETRY, DELAY_LOOP, DETECT, RETRY,
};

/// VIP:80 over IPIP to both real servers; rs1 checked by SSL_GET on 443 with SNI; `omega`
/// with a `quorum_down` that creates `marker`.
fn keepalived_conf(marker: &str) -> String {
    format!(
        "! written by tests/netns/ssl_check.rs\n\
         ! quorum_down writes into root's temp folder: run scripts as root, as keepalived does\n\
         global_defs {{\n\
         \x20   script_user root\n\
         }}\n\
         virtual_server {VIP} 80 {{\n\
         \x20   delay_loop {DELAY_LOOP}\n\
         \x20   omega\n\
         \x20   quorum_down \"/bin/touch {marker}\"\n\
         \x20   lb_algo rr\n\
         \x20   lb_kind TUN\n\
         \x20   protocol TCP\n\
         \x20   real_server {RS1} 80 {{\n\
         \x20       weight 1\n\
         \x20       SSL_GET {{\n\
         \x20           url {{\n\
         \x20               path /\n\
         \x20               status_code 200\n\
         \x20           }}\n\
         \x20           connect_port 443\n\
         \x20           enable_sni\n\
         \x20           virtualhost rs1.lab.test\n\
         \x20           connect_timeout {CONNECT_TIMEOUT}\n\
         \x20           retry {RETRY}\n\
         \x20           delay_before_retry {DELAY_BEFORE_RETRY}\n\
         \x20           warmup 0\n\
         \x20       }}\n\
         \x20   }}\n\
         \x20   real_server {RS2} 80 {{\n\
         \x20       weight 1\n\
         \x20   }}\n\
         }}\n"
    )
}

/// Starts `tunlb httpd --tls` on `RS1:443` in `ns` and waits until it answers HTTPS.
fn start_tls_httpd(ns: &Netns) -> Pid {
    let listen = format!("{RS1}:443");
    let pid = ns.spawn(
        "httpd-tls",
        TUNLB,
        &["httpd", "--tls", "--listen", &listen, "--banner", "tls rs1"],
    );
    let url = format!("https://{listen}/");
    wait_until("the TLS httpd on rs1", STARTUP, || {
        ns.assert_running(pid);
        ns.try_exec("curl", &["-s", "-k", "--max-time", "1", &url])
            .status
            .success()
    });
    pid
}

/// `n` requests from the client to the VIP, each on a new connection; the banners.
fn get_many(client: &Netns, n: usize) -> Vec<Option<String>> {
    (0..n).map(|_| get(client)).collect()
}

/// An SSL_GET check takes rs1 out when its TLS server stops and puts it back when it returns.
#[test]
fn ssl_get_check_follows_the_tls_server() {
    let topo = tun_lab::build();
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        let ns = topo.ns(role);
        start_agent(ns, VIP, "ipip", &format!("{DIRECTOR}/32"));
        let vip = format!("{VIP}:80");
        start_httpd(
            ns,
            &format!("{rip}:80"),
            &format!("from {role}"),
            &["--listen", &vip],
        );
    }
    let rs1 = topo.ns("rs1");
    let tls = start_tls_httpd(rs1);
    let director = topo.ns("director");
    let file = TempPath::new(&format!("{}-ssl.conf", director.name()));
    let marker = TempPath::new(&format!("{}-quorum-down", director.name()));
    std::fs::write(file.path(), keepalived_conf(&marker.arg())).expect("write the config");
    let pid = start_director(director, &["--keepalived-conf", &file.arg()]);
    let client = topo.ns("client");

    // Both up: the check passes against the self-signed certificate.
    std::thread::sleep(DETECT);
    assert_eq!(
        weight_in(director, RS1),
        Some(1),
        "rs1 listed while TLS is up"
    );
    let mut answers: Vec<String> = get_many(client, 2).into_iter().flatten().collect();
    answers.sort();
    assert_eq!(answers, ["from rs1", "from rs2"], "rr over both");

    // The TLS server stops: the handshake is refused, rs1 leaves the table.
    let stopped_at = Instant::now();
    rs1.stop(tls);
    wait_until("rs1 to leave the table", DETECT * 2, || {
        director.assert_running(pid);
        weight_in(director, RS1).is_none()
    });
    let took = stopped_at.elapsed();
    eprintln!("rs1 left {took:?} after its TLS server stopped");
    assert!(
        took <= DETECT,
        "rs1 left after {took:?}, more than {DETECT:?}"
    );
    for answer in get_many(client, 4) {
        assert_eq!(answer.as_deref(), Some("from rs2"), "while rs1 is out");
    }
    let log = director.log(pid);
    assert!(
        log.contains(&format!(
            "real server {RS1}:80 down (connect to {RS1}:443: "
        )),
        "the reason names the check's target:\n{log}"
    );

    // It comes back: rs1 is listed again and answers.
    let _tls = start_tls_httpd(rs1);
    wait_until("rs1 to be back in the table", DETECT * 2, || {
        weight_in(director, RS1) == Some(1)
    });
    let answers: Vec<Option<String>> = get_many(client, 4);
    assert!(answers.iter().all(Option::is_some), "{answers:?}");
    assert!(
        answers.iter().any(|a| a.as_deref() == Some("from rs1")),
        "rs1 answers again: {answers:?}"
    );

    // omega: the service never lost its quorum (rs2 is unchecked), so quorum_down has not
    // run; stopping the director runs it.
    assert!(!marker.path().exists(), "quorum_down ran before shutdown");
    director.stop(pid);
    wait_until(
        "quorum_down to run at shutdown",
        Duration::from_secs(5),
        || marker.path().exists(),
    );
}

//! `tunlb director --keepalived-conf FILE`: the seed's keepalived.conf (section 7), its
//! virtual_server moved onto the TUN lab's addresses with `lb_kind TUN`, fills the table at start
//! and the VIP is balanced over both real servers. `tunlb check-config` shows the same table
//! first, and refuses the seed's original `//` notes with their places.

use crate::harness::{
    adm, start_agent, start_director, start_httpd, tun_lab, wait_until, Netns, Pid, TempPath, TUNLB,
};

/// The seed's virtual_server, on the TUN lab (VIP 10.100.0.100, real servers 10.3.0.12/13).
fn seed_conf() -> String {
    format!(
        "! the seed's keepalived.conf, mapped onto the TUN lab\n\
         vrrp_instance VI_1{{\n\
         \x20   state MASTER\n\
         \x20   interface eth0\n\
         \x20   virtual_router_id 51\n\
         \x20   priority 100\n\
         \x20   advert_int 1\n\
         \x20   virtual_ipaddress{{\n\
         \x20       {vip}/24 dev eth0 label eth0:3\n\
         \x20   }}\n\
         }}\n\
         virtual_server {vip} 80{{\n\
         \x20   delay_loop 6\n\
         \x20   lb_algo rr\n\
         \x20   lb_kind TUN          # the seed has DR; the lab is routed\n\
         \x20   protocol TCP\n\
         \x20   real_server {rs1} 80 {{\n\
         \x20       weight 1\n\
         \x20       HTTP_GET{{\n\
         \x20           url {{\n\
         \x20               path /\n\
         \x20               status_code 200\n\
         \x20           }}\n\
         \x20           connect_timeout 3\n\
         \x20           retry 3\n\
         \x20           delay_before_retry 3\n\
         \x20       }}\n\
         \x20   }}\n\
         \x20   real_server {rs2} 80 {{\n\
         \x20       weight 1\n\
         \x20       HTTP_GET{{\n\
         \x20           url {{\n\
         \x20               path /\n\
         \x20               status_code 200\n\
         \x20           }}\n\
         \x20           connect_timeout 3\n\
         \x20           retry 3\n\
         \x20           delay_before_retry 3\n\
         \x20       }}\n\
         \x20   }}\n\
         }}\n",
        vip = tun_lab::VIP,
        rs1 = tun_lab::RS1,
        rs2 = tun_lab::RS2,
    )
}

/// An IPIP agent for the VIP accepting tunnels from the director, and an httpd on VIP:80 (the
/// service) and RIP:80 (what the HTTP_GET checks probe) answering "from RIP". Returns the
/// agent's and the httpd's pids.
fn start_real_server(ns: &Netns, rip: &str) -> (Pid, Pid) {
    let agent = start_agent(
        ns,
        tun_lab::VIP,
        "ipip",
        &format!("{}/32", tun_lab::DIRECTOR),
    );
    let rip_listen = format!("{rip}:80");
    let httpd = start_httpd(
        ns,
        &format!("{}:80", tun_lab::VIP),
        &format!("from {rip}"),
        &["--listen", &rip_listen],
    );
    (agent, httpd)
}

#[test]
fn keepalived_conf_seed_balances_over_both_real_servers() {
    use tun_lab::{RS1, RS2, VIP};
    let lab = tun_lab::build();
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    for (role, rip) in [("rs1", RS1), ("rs2", RS2)] {
        start_real_server(lab.ns(role), rip);
    }
    let file = TempPath::new(&format!("{}-keepalived.conf", director.name()));
    std::fs::write(file.path(), seed_conf()).expect("write the keepalived.conf");

    // check-config prints the table it would make, then the VRRP instance.
    let out = director.try_exec(TUNLB, &["check-config", &file.arg()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("VRRP not yet supported"), "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("VRRP instance VI_1: MASTER priority 100, VRID 51 on eth0")),
        "{stdout}"
    );
    let service = format!("TCP  {VIP}:80 rr");
    assert!(stdout.lines().any(|l| l == service), "{stdout}");

    let _pid = start_director(director, &["--keepalived-conf", &file.arg()]);
    let listing = adm(director, "-L -n");
    assert!(listing.lines().any(|l| l == service), "{listing}");
    for rip in [RS1, RS2] {
        let dest = format!("  -> {rip}:80");
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(&dest) && l.contains("Tunnel")),
            "{listing}"
        );
    }
    let url = format!("http://{VIP}/");
    let mut answers: Vec<String> = (0..4)
        .map(|_| {
            let body = client.exec("curl", &["-s", "-f", "--max-time", "5", &url]);
            body.trim_end().to_owned()
        })
        .collect();
    answers.sort();
    let (a, b) = (format!("from {RS1}"), format!("from {RS2}"));
    assert_eq!(
        answers,
        [a.clone(), a, b.clone(), b],
        "rr over both real servers"
    );

    // `adm --reload` re-reads the keepalived file: a broken one is refused with its place and
    // the table stays; a changed one replaces the table.
    let before = adm(director, "-L -n");
    std::fs::write(
        file.path(),
        seed_conf().replace("lb_algo rr", "lb_algo nosuch"),
    )
    .expect("write");
    let out = director.try_exec(TUNLB, &["adm", "--reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad file must be refused");
    assert!(
        stderr.contains(&file.arg()),
        "the error names the file: {stderr}"
    );
    assert_eq!(adm(director, "-L -n"), before, "the running table stays");
    let moved = "10.3.0.99";
    std::fs::write(
        file.path(),
        seed_conf().replace(
            &format!("real_server {RS1} 80"),
            &format!("real_server {moved} 80"),
        ),
    )
    .expect("write");
    let out = director.try_exec(TUNLB, &["adm", "--reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = adm(director, "-L -n");
    assert!(after.contains(&format!("  -> {moved}:80")), "{after}");
    assert!(!after.contains(&format!("  -> {RS1}:80")), "{after}");
}

#[test]
fn check_config_refuses_the_seeds_double_slash_notes() {
    let ns = Netns::new("kconf");
    let file = TempPath::new(&format!("{}-notes.conf", ns.name()));
    let text = seed_conf().replace("lb_algo rr", "lb_algo rr\t\t//轮询");
    std::fs::write(file.path(), text).expect("write");
    let out = ns.try_exec(TUNLB, &["check-config", &file.arg()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(":14:17: error: lb_algo: unexpected '//轮询'")
            && stderr.contains("keepalived has no `//` comments"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no table for a bad file");
}

/// The seed's checkers at work: the same file with keepalived's timers shortened (delay_loop 1,
/// connect_timeout 1, retry 1, delay_before_retry 1); stopping rs1's web server takes it out of
/// the table within connect_timeout*(retry+1) + delay_before_retry*retry + delay_loop + 1 s
/// (= 5 s), and every request then goes to rs2 (seed section 7.3).
#[test]
fn keepalived_conf_checks_remove_a_dead_real_server() {
    use tun_lab::{RS1, RS2, VIP};
    let lab = tun_lab::build();
    let (director, client) = (lab.ns("director"), lab.ns("client"));
    let (_, httpd1) = start_real_server(lab.ns("rs1"), RS1);
    start_real_server(lab.ns("rs2"), RS2);
    let text = seed_conf()
        .replace("delay_loop 6", "delay_loop 1")
        .replace("connect_timeout 3", "connect_timeout 1")
        .replace("retry 3", "retry 1")
        .replace("delay_before_retry 3", "delay_before_retry 1");
    let file = TempPath::new(&format!("{}-fast.conf", director.name()));
    std::fs::write(file.path(), text).expect("write the keepalived.conf");
    let _pid = start_director(director, &["--keepalived-conf", &file.arg()]);
    let rs1_line = format!("  -> {RS1}:80");
    // Checks pass while both answer (warmup is at most one delay_loop).
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let listing = adm(director, "-L -n");
    assert!(listing.contains(&rs1_line), "{listing}");

    lab.ns("rs1").stop(httpd1);
    let t0 = std::time::Instant::now();
    wait_until(
        "rs1 to leave the table",
        std::time::Duration::from_secs(5),
        || !adm(director, "-L -n").contains(&rs1_line),
    );
    eprintln!("rs1 removed after {:?}", t0.elapsed());
    let url = format!("http://{VIP}/");
    for _ in 0..6 {
        let body = client.exec("curl", &["-s", "-f", "--max-time", "5", &url]);
        assert_eq!(body.trim_end(), format!("from {RS2}"));
    }
}

/// An IPv6 `virtual_ipaddress` makes the instance VRRPv3 over IPv6 (as keepalived does); an
/// IPv6 address in an IPv4 instance is an error at its place (keepalived ignores it: ignoring
/// it would leave the address unannounced without a word).
#[test]
fn check_config_refuses_mixed_vrrp_families_and_accepts_an_ipv6_instance() {
    let ns = Netns::new("kconf6");
    let file = TempPath::new(&format!("{}-v6vrrp.conf", ns.name()));
    let text = seed_conf().replace(
        "/24 dev eth0 label eth0:3",
        "/24 dev eth0 label eth0:3\n        2001:db8::1/64 dev eth0",
    );
    std::fs::write(file.path(), text).expect("write");
    let want = ":10:9: error: vrrp_instance VI_1: virtual_ipaddress 2001:db8::1/64: address family must match VRRP instance";
    let out = ns.try_exec(TUNLB, &["check-config", &file.arg()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(want), "{stderr}");
    assert!(out.stdout.is_empty(), "no table for a bad file");

    let vip_line = format!("{}/24 dev eth0 label eth0:3", tun_lab::VIP);
    let only_v6 = seed_conf().replace(&vip_line, "2001:db8::1/64 dev eth0");
    assert_ne!(only_v6, seed_conf(), "the VIP line moved");
    std::fs::write(file.path(), only_v6).expect("write");
    let out = ns.try_exec(TUNLB, &["check-config", &file.arg()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let line = stdout
        .lines()
        .chain(stderr.lines())
        .find(|l| l.contains("VRRP instance VI_1"))
        .unwrap_or_else(|| panic!("no VRRP line:\n{stdout}\n{stderr}"));
    assert!(
        line.contains(", v3 every") && line.contains("VIPs 2001:db8::1/64"),
        "{line}"
    );
}

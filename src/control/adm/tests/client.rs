//! `tunlb adm` running against an in-memory director ([`FakeDirector`]).

use super::*;

/// An in-memory director for `run`: the same `apply_batch` the real one uses.
struct FakeDirector {
    set: ServiceSet,
    timeouts: Timeouts,
    running: bool,
    root: bool,
    /// The text `--reload` loads, if the director had `--config`.
    config: Option<String>,
    /// How many `Apply` requests arrived.
    applies: usize,
    /// Its connections (`-L -c`).
    conns: Vec<crate::control::format::ConnEntry>,
    /// A director from before the streamed `-L -c`: it does not know `StreamConns`.
    old: bool,
    /// The requests that arrived.
    seen: Vec<Request>,
}

impl FakeDirector {
    fn new() -> FakeDirector {
        FakeDirector {
            set: ServiceSet::default(),
            timeouts: Timeouts::default(),
            running: true,
            root: true,
            config: None,
            applies: 0,
            conns: Vec::new(),
            old: false,
            seen: Vec::new(),
        }
    }

    fn handle(&mut self, req: &Request) -> Result<Response, ClientError> {
        if !self.running {
            return Err(ClientError::NotRunning);
        }
        if !self.root {
            return Ok(Response::PermissionDenied);
        }
        if matches!(req, Request::Apply(_)) {
            self.applies += 1;
        }
        self.seen.push(req.clone());
        Ok(match req {
            Request::Apply(cmds) => match self.set.apply_batch(&mut self.timeouts, cmds) {
                Ok(_) => Response::Ok,
                Err(e) => Response::from_batch_error(&e),
            },
            Request::List => Response::Listing(Listing::from_set(&self.set)),
            Request::ListConns => Response::Conns(self.conns.clone()),
            // What the socket client makes of the streamed answer.
            Request::StreamConns if !self.old => Response::Conns(self.conns.clone()),
            Request::StreamConns => {
                Response::error("invalid request: unknown variant `stream_conns`, expected ...")
            }
            Request::GetTimeouts => Response::Timeouts(self.timeouts),
            Request::Config => Response::Config {
                toml: to_toml(&self.set, &DirectorSettings::default()),
            },
            Request::ListVrrp => Response::Vrrp(vec![crate::control::vrrp_status::VrrpEntry {
                name: "VI_1".into(),
                state: "BACKUP".into(),
                priority: 50,
                base_priority: 50,
                vrid: 51,
                interface: "eth0".into(),
                version: 2,
                master: Some(Ipv4Addr::new(192, 168, 150, 11).into()),
                since_ms: Some(2500),
                vips: vec![Ipv4Addr::new(192, 168, 150, 100).into()],
                adverts_sent: 0,
                adverts_received: 9,
            }]),
            Request::Reload => match &self.config {
                None => Response::error("the director was started without --config"),
                Some(text) => match load_str(text, "fake.toml") {
                    Ok((settings, set)) => {
                        self.set = set;
                        self.timeouts = settings.timeouts;
                        Response::Reloaded {
                            message: "reloaded fake.toml".to_string(),
                        }
                    }
                    Err(e) => Response::error(e.to_string()),
                },
            },
        })
    }

    /// Runs `tunlb adm LINE` with `stdin`: (exit status, stdout, stderr).
    fn adm(&mut self, line: &str, stdin: &str) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = stdin.as_bytes();
        let code = run(
            &args(line),
            &PortNames::empty(),
            &mut |req: &Request| self.handle(req),
            &mut input,
            &mut out,
            &mut err,
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }
}

#[test]
fn adm_edits_then_lists() {
    let mut d = FakeDirector::new();
    assert_eq!(
        d.adm("-A -t 192.168.150.100:80 -s rr", ""),
        (0, String::new(), String::new())
    );
    assert_eq!(
        d.adm("-a -t 192.168.150.100:80 -r 192.168.150.12:80 -i", "")
            .0,
        0
    );
    let (code, out, _) = d.adm("-ln", "");
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().skip(3).collect::<Vec<_>>(),
        vec![
            "TCP  192.168.150.100:80 rr",
            "  -> 192.168.150.12:80            Tunnel  1      0          0         "
        ]
    );
    let (code, out, _) = d.adm("-S -n", "");
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "-A -t 192.168.150.100:80 -s rr\n\
         -a -t 192.168.150.100:80 -r 192.168.150.12:80 -i -w 1 --tun-type ipip\n"
    );
    let (code, out, _) = d.adm("-L --timeout", "");
    assert_eq!(
        (code, out.as_str()),
        (0, "Timeout (tcp tcpfin udp): 900 120 300\n")
    );
    assert_eq!(d.adm("--set 60 0 0", "").0, 0);
    assert_eq!(d.timeouts.tcp, 60);
    let (code, out, _) = d.adm("-lnc", "");
    assert_eq!(code, 0);
    assert!(out.starts_with("IPVS connection entries\n"));
}

#[test]
fn adm_reports_director_errors_and_touches_nothing() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80", "");
    let before = d.set.clone();
    let (code, out, err) = d.adm("-A -t 10.0.0.1:80 -s rr", "");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (255, "", "Service already exists\n")
    );
    let (code, _, err) = d.adm("-a -t 10.0.0.2:80 -r 10.0.1.1", "");
    assert_eq!((code, err.as_str()), (255, "Service not defined\n"));
    let (code, _, err) = d.adm("-L -n -t 10.0.0.9:80", "");
    assert_eq!((code, err.as_str()), (1, "No such service\n"));
    assert_eq!(d.set, before);
}

#[test]
fn adm_restore_is_all_or_nothing() {
    let mut d = FakeDirector::new();
    let good = "-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -i\n";
    let bad = "-A -t 10.0.0.2:80\n\n-a -t 10.0.0.2:80 -r 10.0.1.1 -i\n-a -t 10.0.0.2:80 -r 10.0.1.1:80 -i\n";
    assert_eq!(d.adm("-R", good).0, 0);
    let before = d.set.clone();
    let (code, _, err) = d.adm("-R", bad);
    assert_eq!(
        (code, err.as_str()),
        (255, "line 4: Destination already exists\n")
    );
    assert_eq!(d.set, before);
    let (code, _, err) = d.adm("-R", "-A -t 10.0.0.3:80\n-a -t 10.0.0.3:80 -r nope\n");
    assert_eq!(
        (code, err.as_str()),
        (2, "line 2: illegal real server address[:port] specified\n")
    );
    assert_eq!(d.set, before);
    // -S output restores to the same table.
    let (_, saved, _) = d.adm("-S -n", "");
    let mut d2 = FakeDirector::new();
    assert_eq!(d2.adm("-R", &saved).0, 0);
    assert_eq!(d2.set, d.set);
}

#[test]
fn adm_without_director_or_root() {
    let mut d = FakeDirector::new();
    d.running = false;
    let (code, _, err) = d.adm("-ln", "");
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "tunlb adm: no director is running in this network namespace \
         (start one with: tunlb director)\n"
    );
    d.running = true;
    d.root = false;
    let (code, _, err) = d.adm("-C", "");
    assert_eq!(
        (code, err.as_str()),
        (2, "Permission denied (you must be root)\n")
    );
}

/// `tunlb adm ARGS` when every request fails with `error()`: (exit status, stderr).
fn adm_failing(line: &str, error: impl Fn() -> ClientError) -> (u8, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(
        &args(line),
        &PortNames::empty(),
        &mut |_: &Request| Err(error()),
        &mut &b""[..],
        &mut out,
        &mut err,
    );
    assert!(out.is_empty());
    (code, String::from_utf8(err).unwrap())
}

#[test]
fn adm_refuses_a_socket_it_may_not_reach_or_an_impostor() {
    let path = std::path::PathBuf::from("/run/tunlb/director.sock.1");
    let (code, err) = adm_failing("-L -n", || ClientError::NotPermitted { path: path.clone() });
    assert_eq!(
        (code, err.as_str()),
        (2, "Permission denied (you must be root)\n")
    );
    let (code, err) = adm_failing("--save-config /tmp/x.toml", || ClientError::Impostor {
        path: path.clone(),
        uid: 65534,
        pid: 42,
    });
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "tunlb adm: refusing to talk to /run/tunlb/director.sock.1: it is served by uid 65534 \
         (pid 42), not by root; something other than the director holds the control socket\n"
    );
}

#[test]
fn adm_usage_errors_point_at_help() {
    let mut d = FakeDirector::new();
    let (code, _, err) = d.adm("-a -t 10.0.0.1:80", "");
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "You need to supply the 'real-server' option for the 'add-server' command\n\
         Try `tunlb adm -h' or 'tunlb adm --help' for more information.\n"
    );
    let (code, _, err) = d.adm("-A -f 1", "");
    assert_eq!(
        (code, err.as_str()),
        (2, "fwmark services are not supported by tunlb\n")
    );
    let (code, out, _) = d.adm("-h", "");
    assert_eq!(code, 0);
    assert!(out.contains("Usage:"));
}

#[test]
fn adm_json_listing() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    d.adm("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue", "");
    let (code, out, _) = d.adm("-ln --json", "");
    assert_eq!(code, 0);
    let listing: Listing = serde_json::from_str(&out).expect("JSON listing");
    assert_eq!(listing.to_set(), d.set);
    let (_, out, _) = d.adm("-L --timeout --json", "");
    let t: Timeouts = serde_json::from_str(&out).unwrap();
    assert_eq!(t, Timeouts::default());
}

#[test]
fn save_config_and_reload_forms() {
    assert_eq!(
        ok("--save-config /etc/tunlb/director.toml"),
        Command::SaveConfig {
            path: "/etc/tunlb/director.toml".into()
        }
    );
    assert_eq!(
        ok("--save-config=saved.toml"),
        Command::SaveConfig {
            path: "saved.toml".into()
        }
    );
    assert_eq!(
        ok("--save-config -"),
        Command::SaveConfig { path: "-".into() }
    );
    assert_eq!(ok("--reload"), Command::Reload);
    assert_eq!(
        err("--save-config"),
        ParseError::MissingArgument("--save-config".into())
    );
    assert_eq!(err("--save-config="), ParseError::NoConfigPath);
    assert_eq!(
        err("--reload=now"),
        ParseError::UnwantedArgument("--reload".into())
    );
    assert_eq!(err("--reload -S"), ParseError::MultipleCommands);
    assert_eq!(
        err("--save-config f.toml -n"),
        ParseError::IllegalOption {
            opt: "numeric",
            cmd: "save-config"
        }
    );
    assert_eq!(
        err("--reload -t 10.0.0.1:80"),
        ParseError::IllegalOption {
            opt: "service-address",
            cmd: "reload"
        }
    );
    assert_eq!(
        err("--save-config a.toml b.toml"),
        ParseError::UnexpectedArgument("b.toml".into())
    );
    for line in ["--reload", "--save-config x.toml"] {
        let e = parse_restore(line, &PortNames::empty()).unwrap_err();
        assert!(matches!(e.error, ParseError::NotRestorable(_)), "{e}");
    }
    assert!(!ok("--reload").is_table_edit());
}

/// Section 6 of the seed, with `tunlb adm` for ipvsadm and the lab's addresses: every
/// command parses as ipvsadm reads it.
#[test]
fn seed_section_6_commands_parse() {
    let vip = tcp("192.168.150.100:80");
    assert_eq!(
        edit("-A -t 192.168.150.100:80 -s rr"),
        Edit::AddService(ServiceOptions {
            key: vip,
            scheduler: SchedulerKind::Rr,
            persistence: None,
            mss_clamp: None,
        })
    );
    for rip in ["192.168.150.12", "192.168.150.13"] {
        // As in the seed (direct routing) and as tunlb runs it today (tunnel).
        for (flag, forward) in [
            ("-g", Forward::Dr),
            ("-i", Forward::tunnel(TunnelType::Ipip)),
        ] {
            let line = format!("-a -t 192.168.150.100:80 -r {rip} {flag} -w 1");
            assert_eq!(
                edit(&line),
                Edit::AddServer {
                    service: vip,
                    dest: DestConfig {
                        addr: rip.parse().unwrap(),
                        port: 80,
                        weight: 1,
                        forward,
                        u_threshold: 0,
                        l_threshold: 0,
                    }
                },
                "{line}"
            );
        }
    }
    assert!(matches!(ok("-ln"), Command::List(o) if o.target == ListTarget::Table));
    assert!(matches!(ok("-lnc"), Command::List(o) if o.target == ListTarget::Connections));
    assert_eq!(edit("-C"), Edit::Clear);
    // The seed's `192.168.100:80` is a typo that inet_aton would read as 192.168.0.100;
    // tunlb wants four numbers.
    assert_eq!(
        err("-A -t 192.168.100:80 -s rr"),
        ParseError::BadServiceAddress
    );
}

/// Every command and option of the list, run through `adm` against the in-memory
/// director: each succeeds, and every listing also comes as JSON.
#[test]
fn adm_takes_every_listed_option() {
    let mut d = FakeDirector::new();
    let good = [
        "-A -t 10.0.0.1:80 -s rr",
        "-E -t 10.0.0.1:80 -s wlc -p 600 -M 255.255.255.0",
        "-A -u 10.0.0.1:53 -s sh -p",
        "-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2 -x 100 -y 10 --tun-type ipip",
        "-a -t 10.0.0.1:80 -r 10.0.1.2 -i --tun-type gue --tun-port 6081 --tun-nocsum",
        "-a -t 10.0.0.1:80 -r 10.0.1.3 -i --tun-type gre --tun-csum",
        "-a -t 10.0.0.1:80 -r 10.0.1.4 -g -w 0",
        "-a -t 10.0.0.1:80 -r 10.0.1.5:8080 -m",
        "-e -t 10.0.0.1:80 -r 10.0.1.4 -g -w 5",
        "-a -u 10.0.0.1:53 -r 10.0.1.1 -i",
        "-d -u 10.0.0.1:53 -r 10.0.1.1",
        "--set 1000 100 200",
        "-Z",
        "-Z -t 10.0.0.1:80",
        "-L",
        "-l",
        "-ln",
        "-lnc",
        "-L -n --stats",
        "-L -n --stats --exact",
        "-L -n --rate",
        "-L -n --thresholds",
        "-L -n --persistent-conn",
        "-L -n --tun-info",
        "-L -n --sort",
        "-L --timeout",
        "-L -n -t 10.0.0.1:80",
        "-S",
        "-S -n",
    ];
    for line in good {
        let (code, _, err) = d.adm(line, "");
        assert_eq!((code, err.as_str()), (0, ""), "{line}");
    }
    assert_eq!(d.set.services.len(), 2);
    assert_eq!(d.set.services[0].dests.len(), 5);
    assert_eq!(d.set.services[1].dests.len(), 0);
    for line in [
        "-L -n --json",
        "-L -n --stats --json",
        "-L -n --rate --json",
        "-L -n -t 10.0.0.1:80 --json",
        "-lnc --json",
        "-L --timeout --json",
    ] {
        let (code, out, err) = d.adm(line, "");
        assert_eq!((code, err.as_str()), (0, ""), "{line}");
        let _: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{line}: {e}\n{out}"));
    }
    let (_, out, _) = d.adm("-L --timeout", "");
    assert_eq!(out, "Timeout (tcp tcpfin udp): 1000 100 200\n");
    let (_, out, _) = d.adm("-D -u 10.0.0.1:53", "");
    assert_eq!(out, "");
    assert_eq!(d.adm("-C", "").0, 0);
    assert!(d.set.services.is_empty());
}

/// Unknown or malformed arguments: a message on stderr, a non-zero exit, and the director
/// is never asked to change anything.
#[test]
fn bad_command_lines_never_reach_the_director() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    let (before, applies) = (d.set.clone(), d.applies);
    let cases: &[(&str, u8, &str)] = &[
        ("--bogus", 255, "--bogus: unknown option"),
        ("-A -t 10.0.0.2:80 -q", 255, "-q: unknown option"),
        ("-A -t", 255, "-t: missing argument"),
        ("-A -t 10.0.0.2:80 -s", 255, "-s: missing argument"),
        (
            "-A -t 10.0.0.2:80 -s nosuch",
            255,
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -f 7 -s rr",
            2,
            "fwmark services are not supported by tunlb",
        ),
        (
            "-A -t 10.0.0.256:80",
            2,
            "illegal virtual server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.x -i",
            2,
            "illegal real server address[:port] specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 70000",
            2,
            "illegal weight specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type vxlan",
            2,
            "illegal tunnel type specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 0",
            2,
            "illegal tunnel port specified",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -g --tun-type gre",
            2,
            "Tunnel options conflict with forward method",
        ),
        (
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-csum --tun-nocsum",
            2,
            "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gre' tunnel type",
        ),
        ("--set 1 2", 2, "--set option requires 3 timeout values"),
        (
            "-A -t 10.0.0.2:80 -p 1x",
            2,
            "invalid timeout value `1x' specified",
        ),
        ("-C extra", 2, "unexpected argument extra"),
        ("-t 10.0.0.2:80", 255, "no command specified"),
    ];
    for (line, code, message) in cases {
        let (got, out, err) = d.adm(line, "");
        assert_eq!(got, *code, "{line}: {err}");
        assert_eq!(out, "", "{line}");
        assert_eq!(err.lines().next(), Some(*message), "{line}");
    }
    assert_eq!(d.set, before);
    assert_eq!(d.applies, applies);
}

#[test]
fn adm_save_config_writes_the_toml_atomically() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    d.adm("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 3", "");
    let (code, stdout_toml, _) = d.adm("--save-config -", "");
    assert_eq!(code, 0);
    let (_, set) = load_str(&stdout_toml, "stdout").expect("the TOML loads");
    assert_eq!(set, d.set);

    let dir = std::env::temp_dir().join(format!("tunlb-adm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("director.toml");
    std::fs::write(&file, "old contents\n").unwrap();
    let line = format!("--save-config {}", file.display());
    let (code, out, err) = d.adm(&line, "");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), stdout_toml);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["director.toml"], "no temporary file is left behind");

    // A folder that does not exist: exit 1, and the message names the file.
    let missing = dir.join("no/such/dir.toml");
    let (code, _, err) = d.adm(&format!("--save-config {}", missing.display()), "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("tunlb adm: writing {}: ", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_config_never_follows_a_symlink_and_keeps_the_file_private() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    let dir = std::env::temp_dir().join(format!("tunlb-adm-link-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // A symlink planted where root will write: refused, and what it points to is untouched.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let link = dir.join("director.toml");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (code, _, err) = d.adm(&format!("--save-config {}", link.display()), "");
    assert_eq!(code, 1);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());

    // Not a regular file (a folder): refused.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let (code, _, err) = d.adm(&format!("--save-config {}", sub.display()), "");
    assert_eq!(code, 1);
    assert!(err.contains("not a regular file"), "{err}");

    // A new file is 0600, a replaced one too (it may hold VRRP passwords).
    let file = dir.join("new.toml");
    let (code, _, err) = d.adm(&format!("--save-config {}", file.display()), "");
    assert_eq!((code, err.as_str()), (0, ""));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, _) = d.adm(&format!("--save-config {}", file.display()), "");
    assert_eq!(code, 0);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn adm_reload_prints_the_outcome() {
    let mut d = FakeDirector::new();
    d.adm("-A -t 10.0.0.1:80 -s rr", "");
    let before = d.set.clone();
    let (code, _, err) = d.adm("--reload", "");
    assert_eq!(
        (code, err.as_str()),
        (255, "the director was started without --config\n")
    );
    d.config = Some("[[service]]\nvip = \"10.0.0.9\"\nport = 80\nscheduler = rr\n".into());
    let (code, out, err) = d.adm("--reload", "");
    assert_eq!((code, out.as_str()), (255, ""));
    assert!(err.starts_with("fake.toml:4:"), "{err}");
    assert_eq!(d.set, before);
    d.config = Some("[[service]]\nvip = \"10.0.0.9\"\nport = 80\nscheduler = \"rr\"\n".into());
    let (code, out, _) = d.adm("--reload", "");
    assert_eq!((code, out.as_str()), (0, "reloaded fake.toml\n"));
    assert_eq!(d.set.services[0].key, tcp("10.0.0.9:80"));
}

#[test]
fn adm_vrrp_lists_the_instances_as_a_table_or_json() {
    let mut d = FakeDirector::new();
    let (code, out, err) = d.adm("--vrrp", "");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "Instance  State   Prio  VRID  Interface  Master          Since     VIPs\n\
         VI_1      BACKUP  50    51    eth0       192.168.150.11  2.5s ago  192.168.150.100\n"
    );
    let (code, out, _) = d.adm("--vrrp --json", "");
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["state"], "BACKUP");
    assert_eq!(v[0]["master"], "192.168.150.11");
    assert_eq!(d.adm("--vrrp -t 10.0.0.1:80", "").0, 2);
}

#[test]
fn adm_lists_connections_streamed_or_from_an_older_director() {
    let entry = |port: u16, state: &str| crate::control::format::ConnEntry {
        proto: Protocol::Tcp,
        expires_secs: 899,
        state: state.into(),
        client: std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port).into(),
        vip: "192.168.150.100:80".parse().unwrap(),
        dest: "192.168.150.12:80".parse().unwrap(),
    };
    let mut d = FakeDirector::new();
    d.conns = vec![entry(4000, "ESTABLISHED"), entry(4001, "SYN_RECV")];
    let want = "IPVS connection entries\n\
                pro expire state       source             virtual            destination\n\
                TCP 14:59  ESTABLISHED 10.0.0.1:4000      192.168.150.100:80 192.168.150.12:80\n\
                TCP 14:59  SYN_RECV    10.0.0.1:4001      192.168.150.100:80 192.168.150.12:80\n";
    let (code, out, err) = d.adm("-L -n -c", "");
    assert_eq!((code, out.as_str(), err.as_str()), (0, want, ""));
    assert_eq!(d.seen, [Request::StreamConns]);
    let (_, json, _) = d.adm("-L -n -c --json", "");

    // An older director refuses the streamed request: adm asks the one-line listing, and
    // prints the same bytes.
    d.old = true;
    d.seen.clear();
    assert_eq!(d.adm("-L -n -c", ""), (0, want.to_string(), String::new()));
    assert_eq!(d.seen, [Request::StreamConns, Request::ListConns]);
    assert_eq!(d.adm("-L -n -c --json", "").1, json);
}

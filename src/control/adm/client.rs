//! `tunlb adm` running: parse, send the command to this namespace's director over the control
//! socket, print the answer as ipvsadm would.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use super::grammar::{parse_restore, parse_with, ParseError};
use super::{Command, ListOptions, ListTarget};
use crate::control::format::{self, PortNames};
use crate::control::proto::{Request, Response};
use crate::control::socket::{self, ClientError};
use crate::model::Edit;

// --- Running it -------------------------------------------------------------------------

pub(super) const TRY_HELP: &str = "Try `tunlb adm -h' or 'tunlb adm --help' for more information.";

pub(super) const NOT_RUNNING: &str = "tunlb adm: no director is running in this network namespace \
                           (start one with: tunlb director)";

/// What ipvsadm says to a user who is not root; the same whether the runtime directory kept
/// the user from the socket or the director refused the user's credentials.
pub(super) const PERMISSION_DENIED: &str = "Permission denied (you must be root)";

/// `tunlb adm ARGS...`: parse, ask this namespace's director, print as ipvsadm.
///
/// Exit status as ipvsadm: 0 on success, 2 for bad arguments, 255 when the director refuses a
/// change (the table is then untouched), 1 for `-L -t` of an unknown service; 2 when no
/// director is running.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let names = PortNames::system();
    let stdin = std::io::stdin();
    let code = run(
        &args,
        &names,
        &mut |req: &Request| socket::request(req),
        &mut stdin.lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// [`main`] with its inputs and outputs passed in: `send` carries a request to the director,
/// `input` is what `-R` reads. Returns the exit status.
pub fn run(
    args: &[OsString],
    names: &PortNames,
    send: &mut dyn FnMut(&Request) -> Result<Response, ClientError>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    match run_inner(args, names, send, input, out) {
        Ok(()) => 0,
        Err(Failure { message, code }) => {
            let _ = writeln!(err, "{message}");
            code
        }
    }
}

/// A message for stderr and the exit status that goes with it.
pub(super) struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    pub(super) fn new(message: impl Into<String>, code: u8) -> Failure {
        Failure {
            message: message.into(),
            code,
        }
    }
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Failure {
        let message = if e.is_usage() {
            format!("{e}\n{TRY_HELP}")
        } else {
            e.to_string()
        };
        Failure::new(message, e.exit_code())
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        match e {
            ClientError::NotRunning => Failure::new(NOT_RUNNING, 2),
            ClientError::NotPermitted { .. } => Failure::new(PERMISSION_DENIED, 2),
            other => Failure::new(format!("tunlb adm: {other}"), 2),
        }
    }
}

pub(super) fn run_inner(
    args: &[OsString],
    names: &PortNames,
    send: &mut dyn FnMut(&Request) -> Result<Response, ClientError>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let text = match parse_with(args, names)? {
        Command::Edit(edit) => return apply(send, vec![edit], &[]),
        Command::Help => USAGE.to_string(),
        Command::Version => format!(
            "tunlb adm {} (ipvsadm v1.31 command line, IPVS v{})\n",
            env!("CARGO_PKG_VERSION"),
            format::IPVS_VERSION
        ),
        Command::Restore => {
            let mut text = String::new();
            input
                .read_to_string(&mut text)
                .map_err(|e| Failure::new(format!("tunlb adm: reading stdin: {e}"), 2))?;
            let parsed = parse_restore(&text, names).map_err(|e| {
                let code = e.error.exit_code();
                Failure::new(e.to_string(), code)
            })?;
            let (lines, edits): (Vec<usize>, Vec<Edit>) = parsed.into_iter().unzip();
            apply(send, edits, &lines)?;
            String::new()
        }
        Command::List(opts) => list(send, &opts, names)?,
        Command::Save { numeric } => {
            let listing = match send(&Request::List)? {
                Response::Listing(l) => l,
                other => return Err(unexpected(other)),
            };
            format::save_rules(&listing.to_set(), numeric, names)
        }
        Command::SaveConfig { path } => {
            let toml = match send(&Request::Config)? {
                Response::Config { toml } => toml,
                other => return Err(unexpected(other)),
            };
            if path == "-" {
                toml
            } else {
                write_replacing(Path::new(&path), &toml)
                    .map_err(|e| Failure::new(format!("tunlb adm: writing {path}: {e}"), 1))?;
                String::new()
            }
        }
        Command::Reload => match send(&Request::Reload)? {
            Response::Reloaded { message } => format!("{message}\n"),
            other => return Err(unexpected(other)),
        },
        Command::Vrrp { json } => match send(&Request::ListVrrp)? {
            Response::Vrrp(entries) if json => to_json(&entries),
            Response::Vrrp(entries) => crate::control::vrrp_status::list_vrrp(&entries),
            other => return Err(unexpected(other)),
        },
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::new(format!("tunlb adm: writing output: {e}"), 1))
}

/// Writes `text` to `path` so that a reader (or a director reloading) sees the old file or the
/// new one, never half of one, and so that nothing planted at or beside `path` is followed:
/// refuses a `path` that is a symlink or not a regular file; writes a temporary file in the
/// same folder, created exclusively (`O_EXCL`, `O_NOFOLLOW`, mode 0600: the config may hold
/// VRRP passwords), syncs it, renames it over `path` and syncs the folder.
pub(super) fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::OpenOptionsExt;

    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "it is a symbolic link; refusing to write through it (name the file it points to)",
            ))
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "not a regular file; refusing to replace it",
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A name nobody else can have chosen for us; O_EXCL makes sure of it.
    let (tmp, mut file) = {
        let mut attempt = 0u32;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".tunlb-{}-{nanos:08x}.tmp", std::process::id()));
            let tmp = dir.join(tmp_name);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)
            {
                Ok(file) => break (tmp, file),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    };
    let written = (|| {
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

pub(super) fn apply(
    send: &mut dyn FnMut(&Request) -> Result<Response, ClientError>,
    edits: Vec<Edit>,
    lines: &[usize],
) -> Result<(), Failure> {
    match send(&Request::Apply(edits))? {
        Response::Ok => Ok(()),
        Response::Error { message, index } => {
            let at_line = index.and_then(|i| lines.get(i));
            Err(match at_line {
                Some(line) => Failure::new(format!("line {line}: {message}"), 255),
                None => Failure::new(message, 255),
            })
        }
        other => Err(unexpected(other)),
    }
}

pub(super) fn list(
    send: &mut dyn FnMut(&Request) -> Result<Response, ClientError>,
    opts: &ListOptions,
    names: &PortNames,
) -> Result<String, Failure> {
    Ok(match opts.target {
        ListTarget::Table | ListTarget::Service(_) => {
            let listing = match send(&Request::List)? {
                Response::Listing(l) => l,
                other => return Err(unexpected(other)),
            };
            match opts.target {
                ListTarget::Service(key) => {
                    let svc = listing
                        .find(&key)
                        .ok_or_else(|| Failure::new("No such service", 1))?;
                    if opts.json {
                        to_json(svc)
                    } else {
                        format::list_service(svc, &opts.format, names)
                    }
                }
                _ if opts.json => to_json(&listing),
                _ => format::list_table(&listing, &opts.format, names),
            }
        }
        ListTarget::Connections => {
            // Streamed in chunks by the director (see `Request::StreamConns`), assembled by
            // the socket client; a director from before the streamed answer gets the old
            // one-line request.
            let conns = match send(&Request::StreamConns)? {
                Response::Conns(conns) => conns,
                Response::Error { message, .. } if message.starts_with("invalid request") => {
                    match send(&Request::ListConns)? {
                        Response::Conns(conns) => conns,
                        other => return Err(unexpected(other)),
                    }
                }
                other => return Err(unexpected(other)),
            };
            if opts.json {
                to_json(&conns)
            } else {
                format::list_conns(&conns, &opts.format, names)
            }
        }
        ListTarget::Timeouts => match send(&Request::GetTimeouts)? {
            Response::Timeouts(t) if opts.json => to_json(&t),
            Response::Timeouts(t) => format::list_timeouts(&t),
            other => return Err(unexpected(other)),
        },
    })
}

/// `--json`: pretty JSON and a newline.
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

pub(super) fn unexpected(resp: Response) -> Failure {
    match resp {
        Response::PermissionDenied => Failure::new(PERMISSION_DENIED, 2),
        Response::Error { message, .. } => Failure::new(message, 255),
        _ => Failure::new("tunlb adm: unexpected answer from the director", 2),
    }
}

/// `tunlb adm -h`.
pub(super) const USAGE: &str = "\
tunlb adm: ipvsadm's command line for the tunlb director of this network namespace

Usage:
  tunlb adm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--mss-clamp mss]
  tunlb adm -D virtual-service
  tunlb adm -C
  tunlb adm -R
  tunlb adm -S [-n]
  tunlb adm -a|e virtual-service -r server-address [options]
  tunlb adm -d virtual-service -r server-address
  tunlb adm -L|l [virtual-service] [options]
  tunlb adm -Z [virtual-service]
  tunlb adm --set tcp tcpfin udp
  tunlb adm --save-config file
  tunlb adm --reload
  tunlb adm --vrrp [--json]
  tunlb adm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin (all or nothing)
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --save-config file          write the running table and settings as the
                              director's TOML config (- for stdout) (tunlb)
  --reload                    re-read the director's --config file (tunlb)
  --vrrp                      list the VRRP instances: state, priority,
                              master, VIPs (tunlb)
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is IPv4-address[:port]
  --udp-service|-u  service-address   service-address is IPv4-address[:port]

Options:
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|sh|dh|sed|nq|mh,
                                      the default scheduler is wlc.
  --persistent   -p [timeout]         persistent service (default timeout 300)
  --netmask      -M netmask           persistent granularity mask
  --mss-clamp       mss               clamp the MSS of client SYNs (tunlb)
  --real-server  -r server-address    server-address is IPv4-address[:port]
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                GUE destination port (default 6080)
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --gre-key       key                 GRE key (tunlb)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports
  --json                              JSON output of listings (tunlb)
";

//! `tunlb adm`: ipvsadm 1.31's command line, talking to the director of this network namespace.
//!
//! [`parse`] reads ipvsadm's arguments (short and long options, combined short flags such as
//! `-lnc`, `-p` with or without its value) into a [`Command`], checking them as ipvsadm does and
//! failing with ipvsadm's messages ([`ParseError`]). [`main`] then sends the command to the
//! director over the control socket and prints the answer as ipvsadm would.
//!
//! Differences from ipvsadm, all refused with a clear message: fwmark, SCTP and IPv6 services,
//! persistence engines, one-packet scheduling, scheduler flags, the sync daemon and
//! `--tun-remcsum`. Addresses must be numeric (no DNS). A tunnel or direct-routing real server on
//! a port other than the service's is an error (ipvsadm silently changes the port).
//! Extensions: `--json` on listings, `--mss-clamp N` on services, `--gre-key K` on GRE servers;
//! `--tun-port` defaults to 6080 for GUE instead of being required; `--save-config FILE` writes
//! the running table and settings as the director's TOML config (`-` is stdout), and `--reload`
//! makes the director re-read its `--config` file, as SIGHUP does.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::control::format::{self, ListFormat, PortNames};
use crate::control::proto::{Request, Response};
use crate::control::socket::{self, ClientError};
use crate::encap::{TunnelType, DEFAULT_GUE_PORT};
use crate::model::validate::{self, TunnelOption};
use crate::model::{DestConfig, Forward, Persistence, Protocol, SchedulerKind, ServiceKey};
use crate::model::{
    Edit, RuleError, Timeouts, HOST_NETMASK, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT,
};

pub use crate::model::{ServiceOptions, MIN_MSS_CLAMP};

/// What `-L` lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListTarget {
    /// The whole table (`-L`).
    #[default]
    Table,
    /// One service (`-L -t VIP:PORT`).
    Service(ServiceKey),
    /// The connection entries (`-L -c`).
    Connections,
    /// The timeouts (`-L --timeout`).
    Timeouts,
}

/// The options of `-L` / `-l`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListOptions {
    /// What to list.
    pub target: ListTarget,
    /// How to print it.
    pub format: ListFormat,
    /// `--json`: print the director's answer as JSON instead (tunlb extension).
    pub json: bool,
}

/// One ipvsadm command, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `-A`: add a virtual service.
    AddService(ServiceOptions),
    /// `-E`: replace a service's options (its real servers stay).
    EditService(ServiceOptions),
    /// `-D`: delete a virtual service.
    DeleteService(ServiceKey),
    /// `-C`: delete every service.
    Clear,
    /// `-a`: add a real server to a service.
    AddServer {
        /// The service.
        service: ServiceKey,
        /// The real server (its port already resolved: never 0 unless the service's is).
        dest: DestConfig,
    },
    /// `-e`: replace a real server's options.
    EditServer {
        /// The service.
        service: ServiceKey,
        /// The real server, found by address and port.
        dest: DestConfig,
    },
    /// `-d`: delete a real server.
    DeleteServer {
        /// The service.
        service: ServiceKey,
        /// The real server's address.
        addr: Ipv4Addr,
        /// The real server's port (the service's if `-r` had none).
        port: u16,
    },
    /// `-L` / `-l`: list.
    List(ListOptions),
    /// `--set TCP TCPFIN UDP`: connection timeouts (0 = unchanged).
    SetTimeouts(Timeouts),
    /// `-S [-n]`: print the table as commands.
    Save {
        /// `-n`: numeric ports.
        numeric: bool,
    },
    /// `-R`: read commands from stdin, one per line, and apply them all or none.
    Restore,
    /// `--save-config FILE`: write the running table, timeouts and director settings as the
    /// TOML `tunlb director --config` loads; `-` is stdout (tunlb extension).
    SaveConfig {
        /// Where to write: a file (replaced atomically) or `-`.
        path: String,
    },
    /// `--reload`: the director re-reads its `--config` file, as on SIGHUP (tunlb extension).
    Reload,
    /// `-Z [-t|-u VIP:PORT]`: zero the counters of one or every service.
    Zero(Option<ServiceKey>),
    /// `-h`: print the help.
    Help,
    /// `-v`: print the version.
    Version,
}

impl Command {
    /// True for the commands that change the director's state (`-A -E -D -C -a -e -d --set -Z`):
    /// what is sent as [`Request::Apply`] and what a `-R` file may contain.
    pub fn is_table_edit(&self) -> bool {
        matches!(
            self,
            Command::AddService(_)
                | Command::EditService(_)
                | Command::DeleteService(_)
                | Command::Clear
                | Command::AddServer { .. }
                | Command::EditServer { .. }
                | Command::DeleteServer { .. }
                | Command::SetTimeouts(_)
                | Command::Zero(_)
        )
    }

    /// ipvsadm's name of the command (`add-service`, `list`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Command::AddService(_) => Cmd::Add.name(),
            Command::EditService(_) => Cmd::Edit.name(),
            Command::DeleteService(_) => Cmd::Del.name(),
            Command::Clear => Cmd::Flush.name(),
            Command::AddServer { .. } => Cmd::AddDest.name(),
            Command::EditServer { .. } => Cmd::EditDest.name(),
            Command::DeleteServer { .. } => Cmd::DelDest.name(),
            Command::List(_) => Cmd::List.name(),
            Command::SetTimeouts(_) => Cmd::Set.name(),
            Command::Save { .. } => Cmd::Save.name(),
            Command::Restore => Cmd::Restore.name(),
            Command::SaveConfig { .. } => Cmd::SaveConfig.name(),
            Command::Reload => Cmd::Reload.name(),
            Command::Zero(_) => Cmd::Zero.name(),
            Command::Help => Cmd::Help.name(),
            Command::Version => Cmd::Version.name(),
        }
    }
}

/// A command line ipvsadm would refuse (or tunlb cannot honour). `Display` is ipvsadm's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An argument is not UTF-8.
    #[error("arguments must be valid UTF-8")]
    NotUtf8,
    /// An option ipvsadm does not know.
    #[error("{0}: unknown option")]
    UnknownOption(String),
    /// An option that needs a value came last.
    #[error("{0}: missing argument")]
    MissingArgument(String),
    /// `--flag=value` for an option without a value.
    #[error("{0}: option does not take an argument")]
    UnwantedArgument(String),
    /// Options but no command.
    #[error("no command specified")]
    NoCommand,
    /// Two commands (`-A -D`).
    #[error("multiple commands specified")]
    MultipleCommands,
    /// The same option twice (`-n -n`, or `-g -i`).
    #[error("multiple '{0}' options specified")]
    MultipleOptions(&'static str),
    /// A compulsory option is missing (`-a` without `-r`).
    #[error("You need to supply the '{opt}' option for the '{cmd}' command")]
    NeedOption {
        /// ipvsadm's name of the option.
        opt: &'static str,
        /// ipvsadm's name of the command.
        cmd: &'static str,
    },
    /// An option the command does not take (`-D ... -s rr`).
    #[error("Illegal '{opt}' option with the '{cmd}' command")]
    IllegalOption {
        /// ipvsadm's name of the option.
        opt: &'static str,
        /// ipvsadm's name of the command.
        cmd: &'static str,
    },
    /// Two options of which the command takes only one (`-L -c -t ...`).
    #[error("The option '{opt}' conflicts with the '{other}' option in the '{cmd}' command")]
    ConflictingOptions {
        /// The later option.
        opt: &'static str,
        /// The earlier one.
        other: &'static str,
        /// ipvsadm's name of the command.
        cmd: &'static str,
    },
    /// `-L -c --stats` and the like.
    #[error("options conflicts in the list command")]
    ListConflict,
    /// A stray word on the command line.
    #[error("unexpected argument {0}")]
    UnexpectedArgument(String),
    /// `--set` with fewer than three values.
    #[error("--set option requires 3 timeout values")]
    SetNeedsThree,
    /// `-t`/`-u` value that is not `ADDRESS[:PORT]` with a numeric IPv4 address.
    #[error("illegal virtual server address[:port] specified")]
    BadServiceAddress,
    /// `-r` value that is not `ADDRESS[:PORT]` with a numeric IPv4 address.
    #[error("illegal real server address[:port] specified")]
    BadServerAddress,
    /// `-M` value that is not a dotted-quad mask.
    #[error("illegal virtual server persistent mask specified")]
    BadNetmask,
    /// `-p` or `--set` value out of range.
    #[error("invalid timeout value `{0}' specified")]
    BadTimeout(String),
    /// `-w` outside 0..=65535.
    #[error("illegal weight specified")]
    BadWeight,
    /// `-x` outside 0..=INT_MAX.
    #[error("illegal u_threshold specified")]
    BadUThreshold,
    /// `-y` outside 0..=INT_MAX.
    #[error("illegal l_threshold specified")]
    BadLThreshold,
    /// `--tun-type` other than ipip, gue, gre.
    #[error("illegal tunnel type specified")]
    BadTunnelType,
    /// `--tun-port` outside 1..=65535.
    #[error("illegal tunnel port specified")]
    BadTunnelPort,
    /// `--mss-clamp` outside 88..=65535.
    #[error("illegal mss-clamp specified")]
    BadMssClamp,
    /// `--gre-key` not a 32-bit number.
    #[error("illegal gre-key specified")]
    BadGreKey,
    /// Tunnel options on a real server that is not `-i`.
    #[error("Tunnel options conflict with forward method")]
    TunnelOptionsConflict,
    /// A tunnel option the tunnel type does not take (`--tun-port` with ipip).
    #[error("Illegal '{opt}' option with the '{tun}' tunnel type")]
    IllegalTunnelOption {
        /// ipvsadm's name of the option.
        opt: &'static str,
        /// The tunnel type.
        tun: &'static str,
    },
    /// `--tun-csum` with `--tun-nocsum`.
    #[error("The option '{opt}' conflicts with the '{other}' option in the '{tun}' tunnel type")]
    ConflictingTunnelOptions {
        /// The later option.
        opt: &'static str,
        /// The earlier one.
        other: &'static str,
        /// The tunnel type.
        tun: &'static str,
    },
    /// A port-zero service without `-p`.
    #[error("Zero port specified for non-persistent service")]
    ZeroPortNotPersistent,
    /// `-s` names no scheduler tunlb has (the kernel's ENOENT in ipvsadm).
    #[error("Scheduler or persistence engine not found")]
    SchedulerNotFound(String),
    /// A tunnel or DR real server on another port than the service's.
    #[error(
        "The real server port must equal the virtual service port (or be omitted) \
         with tunneling and direct routing"
    )]
    DestPortMismatch,
    /// An ipvsadm feature tunlb does not have (fwmark, IPv6, sync daemon, ...).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A command other than a table edit in a `-R` file.
    #[error("the '{0}' command cannot be used in a restore file")]
    NotRestorable(&'static str),
    /// `--save-config` with an empty file name.
    #[error("--save-config needs a file name (or - for stdout)")]
    NoConfigPath,
}

impl ParseError {
    /// The exit status ipvsadm would end with: 255 for option-parsing failures and a missing
    /// scheduler (ipvsadm returns -1), 2 for everything ipvsadm reports through `fail(2, ...)`.
    pub fn exit_code(&self) -> u8 {
        match self {
            ParseError::UnknownOption(_)
            | ParseError::MissingArgument(_)
            | ParseError::UnwantedArgument(_)
            | ParseError::NoCommand
            | ParseError::SchedulerNotFound(_) => 255,
            _ => 2,
        }
    }

    /// True for errors about the shape of the command line, after which `adm` points at `-h`.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ParseError::UnknownOption(_)
                | ParseError::MissingArgument(_)
                | ParseError::UnwantedArgument(_)
                | ParseError::NoCommand
                | ParseError::MultipleCommands
                | ParseError::MultipleOptions(_)
                | ParseError::NeedOption { .. }
                | ParseError::IllegalOption { .. }
                | ParseError::ConflictingOptions { .. }
                | ParseError::ListConflict
                | ParseError::UnexpectedArgument(_)
                | ParseError::SetNeedsThree
        )
    }
}

impl From<RuleError> for ParseError {
    /// A broken model rule in ipvsadm's words.
    fn from(e: RuleError) -> ParseError {
        match e {
            RuleError::ZeroPortNeedsPersistence => ParseError::ZeroPortNotPersistent,
            RuleError::DestPortMismatch { .. } => ParseError::DestPortMismatch,
            RuleError::PersistenceTimeout(t) => ParseError::BadTimeout(t.to_string()),
            RuleError::NetmaskNotContiguous(_) => ParseError::BadNetmask,
            RuleError::Weight(_) => ParseError::BadWeight,
            RuleError::Threshold(_) => ParseError::BadUThreshold,
            RuleError::ThresholdsOutOfOrder { .. } => ParseError::BadLThreshold,
            // The parser sees one real server at a time; the director answers this one.
            RuleError::DuplicateDest { .. } => {
                ParseError::Unsupported("Destination already exists")
            }
        }
    }
}

/// A `-R` input line that does not parse. Nothing of the input was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct RestoreError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub error: ParseError,
}

/// Parses ipvsadm arguments (everything after `tunlb adm`), with ports by number only.
pub fn parse(args: &[OsString]) -> Result<Command, ParseError> {
    parse_with(args, &PortNames::empty())
}

/// Parses ipvsadm arguments, resolving port names (`-t 10.0.0.1:http`) with `names`.
///
/// No arguments at all is `-L` without `-n`, as with ipvsadm.
pub fn parse_with(args: &[OsString], names: &PortNames) -> Result<Command, ParseError> {
    if args.is_empty() {
        return Ok(Command::List(ListOptions::default()));
    }
    let mut strs = Vec::with_capacity(args.len());
    for a in args {
        strs.push(a.to_str().ok_or(ParseError::NotUtf8)?);
    }
    let mut raw = Raw::default();
    let mut i = 0;
    let mut only_positional = false;
    while let Some(&arg) = strs.get(i) {
        i += 1;
        if only_positional || arg == "-" || !arg.starts_with('-') {
            raw.positionals.push(arg.to_string());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let spelled = format!("--{name}");
            let spec = SPECS
                .iter()
                .find(|s| s.long == name)
                .ok_or_else(|| ParseError::UnknownOption(spelled.clone()))?;
            if let Flag::Unsupported(msg) = spec.flag {
                return Err(ParseError::Unsupported(msg));
            }
            let value = match spec.arg {
                Arg::None if inline.is_some() => {
                    return Err(ParseError::UnwantedArgument(spelled));
                }
                Arg::None => None,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => {
                        let v = strs.get(i).ok_or(ParseError::MissingArgument(spelled))?;
                        i += 1;
                        Some(*v)
                    }
                },
                Arg::Optional => match inline {
                    Some(v) => Some(v),
                    None => take_optional(&strs, &mut i),
                },
            };
            raw.handle(spec.flag, value, names)?;
        } else {
            let cluster = &arg[1..];
            for (pos, c) in cluster.char_indices() {
                let spec = SPECS
                    .iter()
                    .find(|s| s.short == Some(c))
                    .ok_or_else(|| ParseError::UnknownOption(format!("-{c}")))?;
                if let Flag::Unsupported(msg) = spec.flag {
                    return Err(ParseError::Unsupported(msg));
                }
                let rest = &cluster[pos + c.len_utf8()..];
                match spec.arg {
                    Arg::None => raw.handle(spec.flag, None, names)?,
                    Arg::Required => {
                        let value = if rest.is_empty() {
                            let v = strs
                                .get(i)
                                .ok_or_else(|| ParseError::MissingArgument(format!("-{c}")))?;
                            i += 1;
                            *v
                        } else {
                            rest
                        };
                        raw.handle(spec.flag, Some(value), names)?;
                        break;
                    }
                    Arg::Optional => {
                        let value = if rest.is_empty() {
                            take_optional(&strs, &mut i)
                        } else {
                            Some(rest)
                        };
                        raw.handle(spec.flag, value, names)?;
                        break;
                    }
                }
            }
        }
    }
    raw.build(names)
}

/// Parses `-R` input: one command per line, as ipvsadm-restore. Blank lines and `#` comments
/// are skipped, and so is a leading `ipvsadm` (or `tunlb adm`) word. Only table edits are
/// allowed; the first bad line fails the whole input. Each command comes with its 1-based line
/// number, as the model's [`Edit`] the director applies.
pub fn parse_restore(text: &str, names: &PortNames) -> Result<Vec<(usize, Edit)>, RestoreError> {
    let mut cmds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words.first().map_or(true, |w| w.starts_with('#')) {
            continue;
        }
        if words.first() == Some(&"ipvsadm") {
            words.remove(0);
        } else if words.starts_with(&["tunlb", "adm"]) {
            words.drain(..2);
        }
        if words.is_empty() {
            continue;
        }
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        let fail = |error| RestoreError { line: n + 1, error };
        let cmd = parse_with(&args, names).map_err(fail)?;
        let Some(edit) = cmd.edit() else {
            return Err(fail(ParseError::NotRestorable(cmd.name())));
        };
        cmds.push((n + 1, edit));
    }
    Ok(cmds)
}

/// An optional value (`-p [TIMEOUT]`) is the next word unless that looks like an option.
fn take_optional<'a>(strs: &[&'a str], i: &mut usize) -> Option<&'a str> {
    let next = strs.get(*i).copied().filter(|v| !v.starts_with('-'))?;
    *i += 1;
    Some(next)
}

// --- The option table ---------------------------------------------------------------------

/// ipvsadm's commands, with its names for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Set,
    Restore,
    Save,
    Zero,
    Help,
    Version,
    SaveConfig,
    Reload,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::Add => "add-service",
            Cmd::Edit => "edit-service",
            Cmd::Del => "delete-service",
            Cmd::Flush => "flush",
            Cmd::List => "list",
            Cmd::AddDest => "add-server",
            Cmd::DelDest => "delete-server",
            Cmd::EditDest => "edit-server",
            Cmd::Set => "set",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::Help => "help",
            Cmd::Version => "version",
            Cmd::SaveConfig => "save-config",
            Cmd::Reload => "reload",
        }
    }
}

/// The options that count in ipvsadm's command/option table, in its order (which decides
/// which error is reported first), then tunlb's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OptName {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Timeout,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Exact,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    Json,
    MssClamp,
    GreKey,
}

impl OptName {
    const ALL: [OptName; 26] = [
        OptName::Numeric,
        OptName::Connection,
        OptName::Service,
        OptName::Scheduler,
        OptName::Persistent,
        OptName::Netmask,
        OptName::Server,
        OptName::Forward,
        OptName::Weight,
        OptName::UThreshold,
        OptName::LThreshold,
        OptName::Timeout,
        OptName::Stats,
        OptName::Rate,
        OptName::Thresholds,
        OptName::PersistentConn,
        OptName::NoSort,
        OptName::Exact,
        OptName::TunInfo,
        OptName::TunType,
        OptName::TunPort,
        OptName::TunNocsum,
        OptName::TunCsum,
        OptName::Json,
        OptName::MssClamp,
        OptName::GreKey,
    ];

    fn name(self) -> &'static str {
        match self {
            OptName::Numeric => "numeric",
            OptName::Connection => "connection",
            OptName::Service => "service-address",
            OptName::Scheduler => "scheduler",
            OptName::Persistent => "persistent",
            OptName::Netmask => "netmask",
            OptName::Server => "real-server",
            OptName::Forward => "forwarding-method",
            OptName::Weight => "weight",
            OptName::UThreshold => "u-threshold",
            OptName::LThreshold => "l-threshold",
            OptName::Timeout => "timeout",
            OptName::Stats => "stats",
            OptName::Rate => "rate",
            OptName::Thresholds => "thresholds",
            OptName::PersistentConn => "persistent-conn",
            OptName::NoSort => "nosort",
            OptName::Exact => "exact",
            OptName::TunInfo => "tun-info",
            OptName::TunType => "tun-type",
            OptName::TunPort => "tun-port",
            OptName::TunNocsum => "tun-nocsum",
            OptName::TunCsum => "tun-csum",
            OptName::Json => "json",
            OptName::MssClamp => "mss-clamp",
            OptName::GreKey => "gre-key",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// How a command treats an option (ipvsadm's `commands_v_options` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// `+`: compulsory.
    Need,
    /// `x`: illegal.
    Illegal,
    /// `1`: at most one of the `1` options.
    OneOf,
    /// ` `: optional.
    May,
}

/// ipvsadm 1.31's command/option table, restricted to what tunlb supports.
fn rule(cmd: Cmd, opt: OptName) -> Rule {
    use OptName as O;
    match cmd {
        Cmd::Add | Cmd::Edit => match opt {
            O::Service => Rule::Need,
            O::Scheduler | O::Persistent | O::Netmask | O::MssClamp => Rule::May,
            _ => Rule::Illegal,
        },
        Cmd::Del => match opt {
            O::Service => Rule::Need,
            _ => Rule::Illegal,
        },
        Cmd::List => match opt {
            O::Connection | O::Service | O::Timeout => Rule::OneOf,
            O::Numeric
            | O::Stats
            | O::Rate
            | O::Thresholds
            | O::PersistentConn
            | O::NoSort
            | O::Exact
            | O::TunInfo
            | O::Json => Rule::May,
            _ => Rule::Illegal,
        },
        Cmd::AddDest | Cmd::EditDest => match opt {
            O::Service | O::Server => Rule::Need,
            O::Forward
            | O::Weight
            | O::UThreshold
            | O::LThreshold
            | O::TunType
            | O::TunPort
            | O::TunNocsum
            | O::TunCsum
            | O::GreKey => Rule::May,
            _ => Rule::Illegal,
        },
        Cmd::DelDest => match opt {
            O::Service | O::Server => Rule::Need,
            _ => Rule::Illegal,
        },
        Cmd::Save => match opt {
            O::Numeric => Rule::May,
            _ => Rule::Illegal,
        },
        Cmd::Zero => match opt {
            O::Service => Rule::May,
            _ => Rule::Illegal,
        },
        Cmd::Flush
        | Cmd::Set
        | Cmd::Restore
        | Cmd::Help
        | Cmd::Version
        | Cmd::SaveConfig
        | Cmd::Reload => Rule::Illegal,
    }
}

/// The tunnel options in ipvsadm's `tunnel_types_v_options` order, and how each tunnel type
/// treats them. GUE's `--tun-port` is optional in tunlb (default 6080).
fn tunnel_rule(tun: TunnelType, opt: OptName) -> Rule {
    let (option, given) = match opt {
        OptName::TunPort => (TunnelOption::Port, Rule::May),
        OptName::TunNocsum | OptName::TunCsum => (TunnelOption::Checksum, Rule::OneOf),
        OptName::GreKey => (TunnelOption::GreKey, Rule::May),
        _ => return Rule::Illegal,
    };
    if validate::tunnel_option_allowed(tun, option) {
        given
    } else {
        Rule::Illegal
    }
}

const TUNNEL_OPTS: [OptName; 4] = [
    OptName::TunPort,
    OptName::TunNocsum,
    OptName::TunCsum,
    OptName::GreKey,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    Cmd(Cmd),
    Opt(Opt),
    Unsupported(&'static str),
}

/// Every option as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Tcp,
    Udp,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Gatewaying,
    Ipip,
    Masquerading,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    Timeout,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    Json,
    MssClamp,
    GreKey,
}

impl Opt {
    /// The option this one counts as in ipvsadm's table (`-t` and `-u` are both the service,
    /// `-g`, `-i` and `-m` the forwarding method); `None` for `--sort`, which is not counted.
    fn counts_as(self) -> Option<OptName> {
        use OptName as O;
        Some(match self {
            Opt::Tcp | Opt::Udp => O::Service,
            Opt::Scheduler => O::Scheduler,
            Opt::Persistent => O::Persistent,
            Opt::Netmask => O::Netmask,
            Opt::RealServer => O::Server,
            Opt::Gatewaying | Opt::Ipip | Opt::Masquerading => O::Forward,
            Opt::Weight => O::Weight,
            Opt::UThreshold => O::UThreshold,
            Opt::LThreshold => O::LThreshold,
            Opt::Numeric => O::Numeric,
            Opt::Connection => O::Connection,
            Opt::Timeout => O::Timeout,
            Opt::Stats => O::Stats,
            Opt::Rate => O::Rate,
            Opt::Thresholds => O::Thresholds,
            Opt::PersistentConn => O::PersistentConn,
            Opt::NoSort => O::NoSort,
            Opt::Sort => return None,
            Opt::Exact => O::Exact,
            Opt::TunInfo => O::TunInfo,
            Opt::TunType => O::TunType,
            Opt::TunPort => O::TunPort,
            Opt::TunNocsum => O::TunNocsum,
            Opt::TunCsum => O::TunCsum,
            Opt::Json => O::Json,
            Opt::MssClamp => O::MssClamp,
            Opt::GreKey => O::GreKey,
        })
    }
}

struct Spec {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    flag: Flag,
}

/// A command: `--long` or `-short`, no argument.
const fn cmd(long: &'static str, short: Option<char>, cmd: Cmd) -> Spec {
    Spec {
        long,
        short,
        arg: Arg::None,
        flag: Flag::Cmd(cmd),
    }
}

/// An option tunlb has.
const fn opt(long: &'static str, short: Option<char>, arg: Arg, opt: Opt) -> Spec {
    Spec {
        long,
        short,
        arg,
        flag: Flag::Opt(opt),
    }
}

/// An ipvsadm option tunlb does not have: using it is an error saying `why`.
const fn unsupported(long: &'static str, short: Option<char>, arg: Arg, why: &'static str) -> Spec {
    Spec {
        long,
        short,
        arg,
        flag: Flag::Unsupported(why),
    }
}

/// Why the connection sync daemon's options are refused.
const SYNC_DAEMON: &str = "the connection sync daemon is not supported by tunlb";

const SPECS: &[Spec] = &[
    cmd("add-service", Some('A'), Cmd::Add),
    cmd("edit-service", Some('E'), Cmd::Edit),
    cmd("delete-service", Some('D'), Cmd::Del),
    cmd("clear", Some('C'), Cmd::Flush),
    cmd("list", Some('L'), Cmd::List),
    cmd("list", Some('l'), Cmd::List),
    cmd("zero", Some('Z'), Cmd::Zero),
    cmd("add-server", Some('a'), Cmd::AddDest),
    cmd("edit-server", Some('e'), Cmd::EditDest),
    cmd("delete-server", Some('d'), Cmd::DelDest),
    cmd("set", None, Cmd::Set),
    cmd("help", Some('h'), Cmd::Help),
    cmd("version", Some('v'), Cmd::Version),
    cmd("restore", Some('R'), Cmd::Restore),
    cmd("save", Some('S'), Cmd::Save),
    Spec {
        long: "save-config",
        short: None,
        arg: Arg::Required,
        flag: Flag::Cmd(Cmd::SaveConfig),
    },
    cmd("reload", None, Cmd::Reload),
    opt("tcp-service", Some('t'), Arg::Required, Opt::Tcp),
    opt("udp-service", Some('u'), Arg::Required, Opt::Udp),
    opt("scheduler", Some('s'), Arg::Required, Opt::Scheduler),
    opt("persistent", Some('p'), Arg::Optional, Opt::Persistent),
    opt("netmask", Some('M'), Arg::Required, Opt::Netmask),
    opt("real-server", Some('r'), Arg::Required, Opt::RealServer),
    opt("masquerading", Some('m'), Arg::None, Opt::Masquerading),
    opt("ipip", Some('i'), Arg::None, Opt::Ipip),
    opt("gatewaying", Some('g'), Arg::None, Opt::Gatewaying),
    opt("weight", Some('w'), Arg::Required, Opt::Weight),
    opt("u-threshold", Some('x'), Arg::Required, Opt::UThreshold),
    opt("l-threshold", Some('y'), Arg::Required, Opt::LThreshold),
    opt("numeric", Some('n'), Arg::None, Opt::Numeric),
    opt("connection", Some('c'), Arg::None, Opt::Connection),
    opt("timeout", None, Arg::None, Opt::Timeout),
    opt("stats", None, Arg::None, Opt::Stats),
    opt("rate", None, Arg::None, Opt::Rate),
    opt("thresholds", None, Arg::None, Opt::Thresholds),
    opt("persistent-conn", None, Arg::None, Opt::PersistentConn),
    opt("nosort", None, Arg::None, Opt::NoSort),
    opt("sort", None, Arg::None, Opt::Sort),
    opt("exact", Some('X'), Arg::None, Opt::Exact),
    opt("tun-info", None, Arg::None, Opt::TunInfo),
    opt("tun-type", None, Arg::Required, Opt::TunType),
    opt("tun-port", None, Arg::Required, Opt::TunPort),
    opt("tun-nocsum", None, Arg::None, Opt::TunNocsum),
    opt("tun-csum", None, Arg::None, Opt::TunCsum),
    opt("json", None, Arg::None, Opt::Json),
    opt("mss-clamp", None, Arg::Required, Opt::MssClamp),
    opt("gre-key", None, Arg::Required, Opt::GreKey),
    unsupported(
        "fwmark-service",
        Some('f'),
        Arg::Required,
        "fwmark services are not supported by tunlb",
    ),
    unsupported(
        "sctp-service",
        None,
        Arg::Required,
        "SCTP services are not supported by tunlb",
    ),
    unsupported(
        "ipv6",
        Some('6'),
        Arg::None,
        "IPv6 services are not supported by tunlb",
    ),
    unsupported(
        "ops",
        Some('o'),
        Arg::None,
        "one-packet scheduling is not supported by tunlb",
    ),
    unsupported(
        "pe",
        None,
        Arg::Required,
        "persistence engines are not supported by tunlb",
    ),
    unsupported(
        "sched-flags",
        Some('b'),
        Arg::Required,
        "scheduler flags are not supported by tunlb",
    ),
    unsupported(
        "tun-remcsum",
        None,
        Arg::None,
        "remote checksum offload (--tun-remcsum) is not supported by tunlb",
    ),
    unsupported("start-daemon", None, Arg::Required, SYNC_DAEMON),
    unsupported("stop-daemon", None, Arg::Required, SYNC_DAEMON),
    unsupported("daemon", None, Arg::None, SYNC_DAEMON),
    unsupported("syncid", None, Arg::Required, SYNC_DAEMON),
    unsupported("mcast-interface", None, Arg::Required, SYNC_DAEMON),
    unsupported("mcast-group", None, Arg::Required, SYNC_DAEMON),
    unsupported("mcast-port", None, Arg::Required, SYNC_DAEMON),
    unsupported("mcast-ttl", None, Arg::Required, SYNC_DAEMON),
    unsupported("sync-maxlen", None, Arg::Required, SYNC_DAEMON),
];

// --- Collecting and checking ----------------------------------------------------------------

/// The first option that breaks a [`Rule`] table ([`Raw::check_rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Violation {
    /// A compulsory option is not given.
    Missing(OptName),
    /// An illegal option is given.
    Illegal(OptName),
    /// `opt` is given after `other`, and only one of them may be.
    Conflict { opt: OptName, other: OptName },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Route,
    Tunnel,
    Masq,
}

/// Everything seen on the command line, before the per-command checks.
#[derive(Default)]
struct Raw {
    cmd: Option<Cmd>,
    seen: u32,
    proto: Option<Protocol>,
    service: Option<(Ipv4Addr, Option<u16>)>,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: Option<Ipv4Addr>,
    server: Option<String>,
    method: Option<Method>,
    weight: Option<u32>,
    u_threshold: Option<u32>,
    l_threshold: Option<u32>,
    format: ListFormat,
    json: bool,
    tun_type: Option<TunnelType>,
    tun_port: Option<u16>,
    tun_csum: Option<bool>,
    mss_clamp: Option<u16>,
    gre_key: Option<u32>,
    /// The value of `--save-config`.
    config_path: Option<String>,
    positionals: Vec<String>,
}

impl Raw {
    fn has(&self, opt: OptName) -> bool {
        self.seen & opt.bit() != 0
    }

    fn set_option(&mut self, opt: OptName) -> Result<(), ParseError> {
        if self.has(opt) {
            return Err(ParseError::MultipleOptions(opt.name()));
        }
        self.seen |= opt.bit();
        Ok(())
    }

    /// One option, in command-line order: value errors come out in the order ipvsadm finds them.
    fn handle(
        &mut self,
        flag: Flag,
        value: Option<&str>,
        names: &PortNames,
    ) -> Result<(), ParseError> {
        let opt = match flag {
            Flag::Unsupported(msg) => return Err(ParseError::Unsupported(msg)),
            Flag::Cmd(cmd) => {
                if self.cmd.is_some() {
                    return Err(ParseError::MultipleCommands);
                }
                self.cmd = Some(cmd);
                if cmd == Cmd::SaveConfig {
                    let path = value
                        .filter(|v| !v.is_empty())
                        .ok_or(ParseError::NoConfigPath)?;
                    self.config_path = Some(path.to_string());
                }
                return Ok(());
            }
            Flag::Opt(opt) => opt,
        };
        if let Some(name) = opt.counts_as() {
            self.set_option(name)?;
        }
        let v = value.unwrap_or("");
        match opt {
            Opt::Tcp | Opt::Udp => {
                let proto = if opt == Opt::Tcp {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                self.proto = Some(proto);
                self.service = Some(
                    parse_addr_port(v, proto, names)
                        .map_err(|e| e.unwrap_or(ParseError::BadServiceAddress))?,
                );
            }
            Opt::Scheduler => self.scheduler = Some(v.to_string()),
            Opt::Persistent => {
                self.persistent = Some(match value {
                    None => 300,
                    Some(t) => number(t, 1, MAX_TIMEOUT)
                        .ok_or_else(|| ParseError::BadTimeout(t.to_string()))?,
                });
            }
            Opt::Netmask => self.netmask = Some(v.parse().map_err(|_| ParseError::BadNetmask)?),
            Opt::RealServer => self.server = Some(v.to_string()),
            Opt::Gatewaying => self.method = Some(Method::Route),
            Opt::Ipip => self.method = Some(Method::Tunnel),
            Opt::Masquerading => self.method = Some(Method::Masq),
            Opt::Weight => {
                self.weight = Some(number(v, 0, MAX_WEIGHT).ok_or(ParseError::BadWeight)?);
            }
            Opt::UThreshold => {
                self.u_threshold =
                    Some(number(v, 0, MAX_THRESHOLD).ok_or(ParseError::BadUThreshold)?);
            }
            Opt::LThreshold => {
                self.l_threshold =
                    Some(number(v, 0, MAX_THRESHOLD).ok_or(ParseError::BadLThreshold)?);
            }
            // Counted only: they choose what `-L` lists.
            Opt::Connection | Opt::Timeout => {}
            Opt::Numeric => self.format.numeric = true,
            Opt::Stats => self.format.stats = true,
            Opt::Rate => self.format.rate = true,
            Opt::Thresholds => self.format.thresholds = true,
            Opt::PersistentConn => self.format.persistent_conn = true,
            Opt::NoSort => self.format.nosort = true,
            // Sorting is the default; ipvsadm keeps --sort as a no-op.
            Opt::Sort => {}
            Opt::Exact => self.format.exact = true,
            Opt::TunInfo => self.format.tun_info = true,
            Opt::TunType => {
                self.tun_type = Some(v.parse().map_err(|_| ParseError::BadTunnelType)?);
            }
            Opt::TunPort => {
                let port = number(v, 1, 65_535).ok_or(ParseError::BadTunnelPort)?;
                self.tun_port = Some(port as u16);
            }
            Opt::TunNocsum => self.tun_csum = Some(false),
            Opt::TunCsum => self.tun_csum = Some(true),
            Opt::Json => self.json = true,
            Opt::MssClamp => {
                let mss = number(v, MIN_MSS_CLAMP.into(), 65_535).ok_or(ParseError::BadMssClamp)?;
                self.mss_clamp = Some(mss as u16);
            }
            Opt::GreKey => {
                self.gre_key = Some(number(v, 0, u32::MAX).ok_or(ParseError::BadGreKey)?);
            }
        }
        Ok(())
    }

    fn build(self, names: &PortNames) -> Result<Command, ParseError> {
        let cmd = self.cmd.ok_or(ParseError::NoCommand)?;
        match cmd {
            Cmd::Help => return Ok(Command::Help),
            Cmd::Version => return Ok(Command::Version),
            _ => {}
        }
        let mut set_values = None;
        if cmd == Cmd::Set {
            let [tcp, tcpfin, udp, rest @ ..] = self.positionals.as_slice() else {
                return Err(ParseError::SetNeedsThree);
            };
            let timeout = |t: &String| {
                number(t, 0, MAX_TIMEOUT).ok_or_else(|| ParseError::BadTimeout(t.clone()))
            };
            set_values = Some(Timeouts {
                tcp: timeout(tcp)?,
                tcpfin: timeout(tcpfin)?,
                udp: timeout(udp)?,
            });
            if let Some(extra) = rest.first() {
                return Err(ParseError::UnexpectedArgument(extra.clone()));
            }
        } else if let Some(extra) = self.positionals.first() {
            return Err(ParseError::UnexpectedArgument(extra.clone()));
        }
        self.check_options(cmd)?;

        let proto = self.proto.unwrap_or(Protocol::Tcp);
        let service = self.service.map(|(vip, port)| ServiceKey {
            vip,
            port: port.unwrap_or(0),
            proto,
        });
        // `check_options` guarantees the service for the commands that need it.
        let need_service = || service.ok_or(ParseError::BadServiceAddress);

        Ok(match cmd {
            Cmd::Add | Cmd::Edit => {
                let key = need_service()?;
                if self.persistent.is_none() {
                    validate::service_port(key.port, None)?;
                }
                let scheduler = match &self.scheduler {
                    None => SchedulerKind::default(),
                    Some(s) => s
                        .parse()
                        .map_err(|_| ParseError::SchedulerNotFound(s.clone()))?,
                };
                let opts = ServiceOptions {
                    key,
                    scheduler,
                    persistence: self.persistent.map(|timeout| Persistence {
                        timeout,
                        netmask: self.netmask.unwrap_or(HOST_NETMASK),
                    }),
                    mss_clamp: self.mss_clamp,
                };
                if cmd == Cmd::Add {
                    Command::AddService(opts)
                } else {
                    Command::EditService(opts)
                }
            }
            Cmd::Del => Command::DeleteService(need_service()?),
            Cmd::Flush => Command::Clear,
            Cmd::AddDest | Cmd::EditDest => {
                let service = need_service()?;
                let dest = self.dest_config(service, names)?;
                if cmd == Cmd::AddDest {
                    Command::AddServer { service, dest }
                } else {
                    Command::EditServer { service, dest }
                }
            }
            Cmd::DelDest => {
                let service = need_service()?;
                let (addr, port) = self.server_addr(service, names)?;
                Command::DeleteServer {
                    service,
                    addr,
                    port: port.unwrap_or(service.port),
                }
            }
            Cmd::List => {
                if (self.has(OptName::Connection) || self.has(OptName::Timeout))
                    && (self.has(OptName::Stats)
                        || self.has(OptName::Rate)
                        || self.has(OptName::Thresholds))
                    || (self.has(OptName::Timeout) && self.has(OptName::PersistentConn))
                {
                    return Err(ParseError::ListConflict);
                }
                let target = if self.has(OptName::Connection) {
                    ListTarget::Connections
                } else if let Some(key) = service {
                    ListTarget::Service(key)
                } else if self.has(OptName::Timeout) {
                    ListTarget::Timeouts
                } else {
                    ListTarget::Table
                };
                Command::List(ListOptions {
                    target,
                    format: self.format,
                    json: self.json,
                })
            }
            Cmd::Set => Command::SetTimeouts(set_values.unwrap_or_default()),
            Cmd::Restore => Command::Restore,
            Cmd::Save => Command::Save {
                numeric: self.format.numeric,
            },
            Cmd::Zero => Command::Zero(service),
            Cmd::SaveConfig => Command::SaveConfig {
                path: self.config_path.ok_or(ParseError::NoConfigPath)?,
            },
            Cmd::Reload => Command::Reload,
            Cmd::Help => Command::Help,
            Cmd::Version => Command::Version,
        })
    }

    /// ipvsadm's `generic_opt_check`: compulsory, illegal and mutually exclusive options.
    fn check_options(&self, cmd: Cmd) -> Result<(), ParseError> {
        self.check_rules(OptName::ALL, |opt| rule(cmd, opt))
            .map_err(|v| match v {
                Violation::Missing(opt) => ParseError::NeedOption {
                    opt: opt.name(),
                    cmd: cmd.name(),
                },
                Violation::Illegal(opt) => ParseError::IllegalOption {
                    opt: opt.name(),
                    cmd: cmd.name(),
                },
                Violation::Conflict { opt, other } => ParseError::ConflictingOptions {
                    opt: opt.name(),
                    other: other.name(),
                    cmd: cmd.name(),
                },
            })
    }

    /// The first option of `order` that breaks `rule`: a `Need` one not given, an `Illegal` one
    /// given, or the second given of the `OneOf` ones.
    fn check_rules(
        &self,
        order: impl IntoIterator<Item = OptName>,
        rule: impl Fn(OptName) -> Rule,
    ) -> Result<(), Violation> {
        let mut first_of_one: Option<OptName> = None;
        for opt in order {
            match (rule(opt), self.has(opt)) {
                (Rule::Need, false) => return Err(Violation::Missing(opt)),
                (Rule::Illegal, true) => return Err(Violation::Illegal(opt)),
                (Rule::OneOf, true) => match first_of_one {
                    None => first_of_one = Some(opt),
                    Some(other) => return Err(Violation::Conflict { opt, other }),
                },
                _ => {}
            }
        }
        Ok(())
    }

    fn server_addr(
        &self,
        service: ServiceKey,
        names: &PortNames,
    ) -> Result<(Ipv4Addr, Option<u16>), ParseError> {
        let text = self.server.as_deref().ok_or(ParseError::BadServerAddress)?;
        parse_addr_port(text, service.proto, names)
            .map_err(|e| e.unwrap_or(ParseError::BadServerAddress))
    }

    /// The real server of `-a` / `-e`, with ipvsadm's defaults (`-g`, weight 1).
    fn dest_config(
        &self,
        service: ServiceKey,
        names: &PortNames,
    ) -> Result<DestConfig, ParseError> {
        let method = self.method.unwrap_or(Method::Route);
        let tunnel_opts = [OptName::TunType]
            .iter()
            .chain(TUNNEL_OPTS.iter())
            .any(|o| self.has(*o));
        if tunnel_opts && method != Method::Tunnel {
            return Err(ParseError::TunnelOptionsConflict);
        }
        let tun_type = self.tun_type.unwrap_or_default();
        let given = TUNNEL_OPTS.into_iter().filter(|opt| self.has(*opt));
        self.check_rules(given, |opt| tunnel_rule(tun_type, opt))
            .map_err(|v| match v {
                // Only the given options are checked, so none can be missing.
                Violation::Missing(opt) | Violation::Illegal(opt) => {
                    ParseError::IllegalTunnelOption {
                        opt: opt.name(),
                        tun: tun_type.as_str(),
                    }
                }
                Violation::Conflict { opt, other } => ParseError::ConflictingTunnelOptions {
                    opt: opt.name(),
                    other: other.name(),
                    tun: tun_type.as_str(),
                },
            })?;

        let (addr, port) = self.server_addr(service, names)?;
        let forward = match method {
            Method::Route => Forward::Dr,
            Method::Masq => Forward::Nat,
            Method::Tunnel => Forward::Tunnel {
                tun_type,
                tun_port: self.tun_port.unwrap_or(DEFAULT_GUE_PORT),
                tun_csum: self.tun_csum.unwrap_or(false),
                gre_key: self.gre_key,
            },
        };
        // An explicit `:0` is a port like any other here (ipvsadm's parser), unlike in the
        // table, where 0 means the service's.
        let port = validate::real_server_port(service.port, &forward, port)?;
        Ok(DestConfig {
            addr,
            port,
            weight: self.weight.unwrap_or(1),
            forward,
            u_threshold: self.u_threshold.unwrap_or(0),
            l_threshold: self.l_threshold.unwrap_or(0),
        })
    }
}

/// A decimal number in `min..=max` (ipvsadm's `string_to_number`).
fn number(s: &str, min: u32, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = s.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

/// `ADDRESS[:PORT]` with a numeric IPv4 address and a port number or name. `Err(Some(_))` is a
/// specific complaint (IPv6), `Err(None)` the caller's generic one.
fn parse_addr_port(
    s: &str,
    proto: Protocol,
    names: &PortNames,
) -> Result<(Ipv4Addr, Option<u16>), Option<ParseError>> {
    if s.starts_with('[') || s.matches(':').count() > 1 {
        return Err(Some(ParseError::Unsupported(
            "IPv6 services are not supported by tunlb",
        )));
    }
    let (addr, port) = match s.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: Ipv4Addr = addr.parse().map_err(|_| None)?;
    let port = match port {
        None => None,
        Some(p) => Some(match number(p, 0, 65_535) {
            Some(n) => n as u16,
            None => names.port(proto, p).ok_or(None)?,
        }),
    };
    Ok((addr, port))
}

// --- Running it -------------------------------------------------------------------------

const TRY_HELP: &str = "Try `tunlb adm -h' or 'tunlb adm --help' for more information.";

const NOT_RUNNING: &str = "tunlb adm: no director is running in this network namespace \
                           (start one with: tunlb director)";

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
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>, code: u8) -> Failure {
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
            other => Failure::new(format!("tunlb adm: {other}"), 2),
        }
    }
}

fn run_inner(
    args: &[OsString],
    names: &PortNames,
    send: &mut dyn FnMut(&Request) -> Result<Response, ClientError>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let cmd = parse_with(args, names)?;
    if let Some(edit) = cmd.edit() {
        return apply(send, vec![edit], &[]);
    }
    let text = match cmd {
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
        // The edits went to `apply` above.
        _ => String::new(),
    };
    out.write_all(text.as_bytes())
        .map_err(|e| Failure::new(format!("tunlb adm: writing output: {e}"), 1))
}

/// Writes `text` to `path.tmp`, flushes it to disk, then renames it over `path`: a reader (or a
/// director reloading) sees the old file or the new one, never half of one.
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn apply(
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

fn list(
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
        ListTarget::Connections => match send(&Request::ListConns)? {
            Response::Conns(conns) if opts.json => to_json(&conns),
            Response::Conns(conns) => format::list_conns(&conns, &opts.format, names),
            other => return Err(unexpected(other)),
        },
        ListTarget::Timeouts => match send(&Request::GetTimeouts)? {
            Response::Timeouts(t) if opts.json => to_json(&t),
            Response::Timeouts(t) => format::list_timeouts(&t),
            other => return Err(unexpected(other)),
        },
    })
}

/// `--json`: pretty JSON and a newline.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut s =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn unexpected(resp: Response) -> Failure {
    match resp {
        Response::PermissionDenied => Failure::new("Permission denied (you must be root)", 2),
        Response::Error { message, .. } => Failure::new(message, 255),
        _ => Failure::new("tunlb adm: unexpected answer from the director", 2),
    }
}

/// `tunlb adm -h`.
const USAGE: &str = "\
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::{load_str, to_toml, DirectorSettings};
    use crate::control::format::Listing;
    use crate::model::ServiceSet;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    fn ok(line: &str) -> Command {
        parse(&args(line)).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn err(line: &str) -> ParseError {
        match parse(&args(line)) {
            Ok(c) => panic!("{line}: parsed as {c:?}"),
            Err(e) => e,
        }
    }

    fn key(s: &str, proto: Protocol) -> ServiceKey {
        let (vip, port) = s.split_once(':').unwrap();
        ServiceKey {
            vip: vip.parse().unwrap(),
            port: port.parse().unwrap(),
            proto,
        }
    }

    fn tcp(s: &str) -> ServiceKey {
        key(s, Protocol::Tcp)
    }

    fn dest(line: &str) -> DestConfig {
        match ok(line) {
            Command::AddServer { dest, .. } | Command::EditServer { dest, .. } => dest,
            other => panic!("{other:?}"),
        }
    }

    fn svc_opts(line: &str) -> ServiceOptions {
        match ok(line) {
            Command::AddService(o) | Command::EditService(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_service_forms() {
        assert_eq!(
            ok("-A -t 192.168.150.100:80 -s rr"),
            Command::AddService(ServiceOptions {
                key: tcp("192.168.150.100:80"),
                scheduler: SchedulerKind::Rr,
                persistence: None,
                mss_clamp: None,
            })
        );
        for line in [
            "--add-service --tcp-service 10.0.0.1:80 --scheduler wrr",
            "--add-service --tcp-service=10.0.0.1:80 --scheduler=wrr",
            "-At 10.0.0.1:80 -s wrr",
            "-A -t10.0.0.1:80 -swrr",
        ] {
            let o = svc_opts(line);
            assert_eq!(
                (o.key, o.scheduler),
                (tcp("10.0.0.1:80"), SchedulerKind::Wrr),
                "{line}"
            );
        }
        assert_eq!(svc_opts("-A -t 10.0.0.1:80").scheduler, SchedulerKind::Wlc);
        assert_eq!(
            svc_opts("-A -u 10.0.0.1:53 -s sh").key,
            key("10.0.0.1:53", Protocol::Udp)
        );
        assert_eq!(
            svc_opts("-A -t 10.0.0.1:80 --mss-clamp 1400").mss_clamp,
            Some(1400)
        );
        assert!(matches!(
            ok("-E -t 10.0.0.1:80 -s rr"),
            Command::EditService(_)
        ));
        assert!(matches!(
            ok("--edit-service -t 10.0.0.1:80"),
            Command::EditService(_)
        ));
    }

    #[test]
    fn persistence_with_and_without_value() {
        let p = |line: &str| svc_opts(line).persistence.map(|p| (p.timeout, p.netmask));
        let host = Ipv4Addr::BROADCAST;
        let c = Ipv4Addr::new(255, 255, 255, 0);
        assert_eq!(p("-A -t 10.0.0.1:80 -p"), Some((300, host)));
        assert_eq!(p("-A -t 10.0.0.1:80 -p -s rr"), Some((300, host)));
        assert_eq!(p("-A -t 10.0.0.1:80 -s rr -p 600"), Some((600, host)));
        assert_eq!(p("-A -t 10.0.0.1:80 -p600"), Some((600, host)));
        assert_eq!(p("-A -t 10.0.0.1:80 --persistent=600"), Some((600, host)));
        assert_eq!(
            p("-A -t 10.0.0.1:80 --persistent 600 -M 255.255.255.0"),
            Some((600, c))
        );
        assert_eq!(p("-A -t 10.0.0.1:80 -M 255.255.255.0 -p"), Some((300, c)));
        assert_eq!(
            p("-A -t 10.0.0.1:0 -p --netmask 255.255.255.0"),
            Some((300, c))
        );
        // -M without -p has nothing to apply to.
        assert_eq!(p("-A -t 10.0.0.1:80 -M 255.255.255.0"), None);
        assert_eq!(
            err("-A -t 10.0.0.1:80 -p 0"),
            ParseError::BadTimeout("0".into())
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -p 2678401"),
            ParseError::BadTimeout("2678401".into())
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -p -M 255.255.255.x"),
            ParseError::BadNetmask
        );
    }

    #[test]
    fn delete_and_clear() {
        assert_eq!(
            ok("-D -t 10.0.0.1:80"),
            Command::DeleteService(tcp("10.0.0.1:80"))
        );
        assert_eq!(
            ok("--delete-service --udp-service 10.0.0.1:53"),
            Command::DeleteService(key("10.0.0.1:53", Protocol::Udp))
        );
        assert_eq!(ok("-C"), Command::Clear);
        assert_eq!(ok("--clear"), Command::Clear);
    }

    #[test]
    fn add_server_defaults_as_ipvsadm() {
        let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1");
        assert_eq!(d.addr, Ipv4Addr::new(10, 0, 1, 1));
        assert_eq!(d.port, 80);
        assert_eq!(d.weight, 1);
        assert_eq!(d.forward, Forward::Dr);
        assert_eq!((d.u_threshold, d.l_threshold), (0, 0));
        match ok("--add-server --tcp-service 10.0.0.1:80 --real-server 10.0.1.1:80 --ipip") {
            Command::AddServer { service, dest } => {
                assert_eq!(service, tcp("10.0.0.1:80"));
                assert_eq!(dest.forward, Forward::tunnel(TunnelType::Ipip));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_server_options() {
        let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1 -i -w 3 -x 100 -y 10");
        assert_eq!((d.weight, d.u_threshold, d.l_threshold), (3, 100, 10));
        let d =
            dest("-a -t 10.0.0.1:80 -r 10.0.1.1 --ipip --weight 0 --u-threshold 5 --l-threshold 1");
        assert_eq!((d.weight, d.u_threshold, d.l_threshold), (0, 5, 1));
        assert_eq!(
            dest("-a -t 10.0.0.1:80 -r 10.0.1.1 --gatewaying").forward,
            Forward::Dr
        );
        let d = dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m");
        assert_eq!((d.port, d.forward), (8080, Forward::Nat));
        assert_eq!(
            dest("-a -t 10.0.0.1:80 -r 10.0.1.1 --masquerading").port,
            80
        );
        assert!(matches!(
            ok("-e -t 10.0.0.1:80 -r 10.0.1.1 -i -w 2"),
            Command::EditServer { .. }
        ));
        assert!(matches!(
            ok("--edit-server -t 10.0.0.1:80 -r 10.0.1.1"),
            Command::EditServer { .. }
        ));
    }

    #[test]
    fn tunnel_options() {
        let tunnel = |line: &str| match dest(line).forward {
            Forward::Tunnel {
                tun_type,
                tun_port,
                tun_csum,
                gre_key,
            } => (tun_type, tun_port, tun_csum, gre_key),
            other => panic!("{other:?}"),
        };
        let base = "-a -t 10.0.0.1:80 -r 10.0.1.1 -i";
        assert_eq!(tunnel(base), (TunnelType::Ipip, 6080, false, None));
        assert_eq!(
            tunnel(&format!("{base} --tun-type ipip")),
            (TunnelType::Ipip, 6080, false, None)
        );
        assert_eq!(
            tunnel(&format!("{base} --tun-type gue")),
            (TunnelType::Gue, 6080, false, None)
        );
        assert_eq!(
            tunnel(&format!("{base} --tun-type gue --tun-port 7000 --tun-csum")),
            (TunnelType::Gue, 7000, true, None)
        );
        assert_eq!(
            tunnel(&format!(
                "{base} --tun-type gue --tun-port=7000 --tun-nocsum"
            )),
            (TunnelType::Gue, 7000, false, None)
        );
        assert_eq!(
            tunnel(&format!("{base} --tun-type gre --tun-csum --gre-key 42")),
            (TunnelType::Gre, 6080, true, Some(42))
        );
    }

    #[test]
    fn tunnel_option_errors_as_ipvsadm() {
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -g --tun-type gue"),
            ParseError::TunnelOptionsConflict
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 --tun-csum"),
            ParseError::TunnelOptionsConflict
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-port 7000"),
            ParseError::IllegalTunnelOption {
                opt: "tun-port",
                tun: "ipip"
            }
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gre --tun-csum --tun-nocsum"),
            ParseError::ConflictingTunnelOptions {
                opt: "tun-csum",
                other: "tun-nocsum",
                tun: "gre"
            }
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --gre-key 1"),
            ParseError::IllegalTunnelOption {
                opt: "gre-key",
                tun: "gue"
            }
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type vxlan"),
            ParseError::BadTunnelType
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-port 0"),
            ParseError::BadTunnelPort
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-type gue --tun-remcsum"),
            ParseError::Unsupported(
                "remote checksum offload (--tun-remcsum) is not supported by tunlb"
            )
        );
        assert_eq!(
            ParseError::IllegalTunnelOption {
                opt: "tun-port",
                tun: "ipip"
            }
            .to_string(),
            "Illegal 'tun-port' option with the 'ipip' tunnel type"
        );
    }

    #[test]
    fn server_port_must_match_for_tunnel_and_dr() {
        assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:80 -i").port, 80);
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -i"),
            ParseError::DestPortMismatch
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1:8080"),
            ParseError::DestPortMismatch
        );
        assert_eq!(dest("-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m").port, 8080);
    }

    #[test]
    fn delete_server() {
        assert_eq!(
            ok("-d -t 10.0.0.1:80 -r 10.0.1.1"),
            Command::DeleteServer {
                service: tcp("10.0.0.1:80"),
                addr: Ipv4Addr::new(10, 0, 1, 1),
                port: 80
            }
        );
        assert_eq!(
            ok("--delete-server -t 10.0.0.1:80 -r 10.0.1.1:8080"),
            Command::DeleteServer {
                service: tcp("10.0.0.1:80"),
                addr: Ipv4Addr::new(10, 0, 1, 1),
                port: 8080
            }
        );
        assert_eq!(
            err("-d -t 10.0.0.1:80 -r 10.0.1.1 -w 2"),
            ParseError::IllegalOption {
                opt: "weight",
                cmd: "delete-server"
            }
        );
    }

    #[test]
    fn list_forms_and_combined_flags() {
        let list = |line: &str| match ok(line) {
            Command::List(o) => o,
            other => panic!("{line}: {other:?}"),
        };
        let numeric = ListFormat {
            numeric: true,
            ..ListFormat::default()
        };
        for line in [
            "-L -n",
            "-l -n",
            "-ln",
            "-Ln",
            "-nL",
            "--list --numeric",
            "-L --numeric",
        ] {
            assert_eq!(
                list(line),
                ListOptions {
                    target: ListTarget::Table,
                    format: numeric,
                    json: false
                },
                "{line}"
            );
        }
        for line in [
            "-lnc",
            "-Lnc",
            "-L -n -c",
            "-l -c -n",
            "--list --connection -n",
            "-Lcn",
        ] {
            let o = list(line);
            assert_eq!(o.target, ListTarget::Connections, "{line}");
            assert!(o.format.numeric, "{line}");
        }
        assert_eq!(list("-L").format, ListFormat::default());
        assert_eq!(list("-L --timeout").target, ListTarget::Timeouts);
        assert_eq!(
            list("-L -n -t 10.0.0.1:80").target,
            ListTarget::Service(tcp("10.0.0.1:80"))
        );
        let f = list("-L -n --stats --exact --nosort --sort").format;
        assert!(f.stats && f.exact && f.nosort && f.numeric);
        assert!(list("-Ln --rate").format.rate);
        assert!(list("-Ln --thresholds").format.thresholds);
        assert!(list("-Ln --persistent-conn").format.persistent_conn);
        assert!(list("-Ln --tun-info").format.tun_info);
        assert!(list("-Ln --json").json);
        assert!(list("-lnc --json").json);
        // No arguments at all lists the table, as plain `ipvsadm`.
        assert_eq!(parse(&[]), Ok(Command::List(ListOptions::default())));
    }

    #[test]
    fn list_conflicts_as_ipvsadm() {
        assert_eq!(
            err("-L -c -t 10.0.0.1:80"),
            ParseError::ConflictingOptions {
                opt: "service-address",
                other: "connection",
                cmd: "list"
            }
        );
        assert_eq!(
            err("-L -c --timeout"),
            ParseError::ConflictingOptions {
                opt: "timeout",
                other: "connection",
                cmd: "list"
            }
        );
        assert_eq!(err("-L -c --stats"), ParseError::ListConflict);
        assert_eq!(
            err("-L --timeout --persistent-conn"),
            ParseError::ListConflict
        );
        assert_eq!(
            err("-L -r 10.0.0.1"),
            ParseError::IllegalOption {
                opt: "real-server",
                cmd: "list"
            }
        );
        assert_eq!(
            ParseError::ConflictingOptions {
                opt: "service-address",
                other: "connection",
                cmd: "list"
            }
            .to_string(),
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command"
        );
    }

    #[test]
    fn set_save_restore_zero_help() {
        assert_eq!(
            ok("--set 900 120 300"),
            Command::SetTimeouts(Timeouts {
                tcp: 900,
                tcpfin: 120,
                udp: 300
            })
        );
        assert_eq!(
            ok("--set 0 0 60"),
            Command::SetTimeouts(Timeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 60
            })
        );
        assert_eq!(err("--set 900 120"), ParseError::SetNeedsThree);
        assert_eq!(
            err("--set 900 120 300 7"),
            ParseError::UnexpectedArgument("7".into())
        );
        assert_eq!(err("--set 900 x 300"), ParseError::BadTimeout("x".into()));
        assert_eq!(ok("-S"), Command::Save { numeric: false });
        assert_eq!(ok("-S -n"), Command::Save { numeric: true });
        assert_eq!(ok("-Sn"), Command::Save { numeric: true });
        assert_eq!(ok("--save --numeric"), Command::Save { numeric: true });
        assert_eq!(ok("-R"), Command::Restore);
        assert_eq!(ok("--restore"), Command::Restore);
        assert_eq!(ok("-Z"), Command::Zero(None));
        assert_eq!(ok("--zero"), Command::Zero(None));
        assert_eq!(
            ok("-Z -t 10.0.0.1:80"),
            Command::Zero(Some(tcp("10.0.0.1:80")))
        );
        assert_eq!(ok("-h"), Command::Help);
        assert_eq!(ok("--help"), Command::Help);
        assert_eq!(ok("-v"), Command::Version);
        assert_eq!(
            err("-S -c"),
            ParseError::IllegalOption {
                opt: "connection",
                cmd: "save"
            }
        );
        assert_eq!(
            err("-C -n"),
            ParseError::IllegalOption {
                opt: "numeric",
                cmd: "flush"
            }
        );
    }

    #[test]
    fn command_line_shape_errors() {
        assert_eq!(err("-t 10.0.0.1:80"), ParseError::NoCommand);
        assert_eq!(err("-A -D -t 10.0.0.1:80"), ParseError::MultipleCommands);
        assert_eq!(err("-L -n -n"), ParseError::MultipleOptions("numeric"));
        assert_eq!(
            err("-a -t 10.0.0.1:80 -r 10.0.1.1 -g -i"),
            ParseError::MultipleOptions("forwarding-method")
        );
        assert_eq!(
            err("-A -t 10.0.0.1:80 -u 10.0.0.1:80"),
            ParseError::MultipleOptions("service-address")
        );
        assert_eq!(
            err("-a -t 10.0.0.1:80"),
            ParseError::NeedOption {
                opt: "real-server",
                cmd: "add-server"
            }
        );
        assert_eq!(
            err("-A -s rr"),
            ParseError::NeedOption {
                opt: "service-address",
                cmd: "add-service"
            }
        );
        assert_eq!(
            err("-D -t 10.0.0.1:80 -s rr"),
            ParseError::IllegalOption {
                opt: "scheduler",
                cmd: "delete-service"
            }
        );
        assert_eq!(err("--foo"), ParseError::UnknownOption("--foo".into()));
        assert_eq!(err("-L -q"), ParseError::UnknownOption("-q".into()));
        assert_eq!(err("-A -t"), ParseError::MissingArgument("-t".into()));
        assert_eq!(
            err("-A --tcp-service"),
            ParseError::MissingArgument("--tcp-service".into())
        );
        assert_eq!(
            err("-L --numeric=yes"),
            ParseError::UnwantedArgument("--numeric".into())
        );
        assert_eq!(
            err("-L extra"),
            ParseError::UnexpectedArgument("extra".into())
        );
        assert_eq!(err("-L -- -n"), ParseError::UnexpectedArgument("-n".into()));
        assert_eq!(
            ParseError::NeedOption {
                opt: "real-server",
                cmd: "add-server"
            }
            .to_string(),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            ParseError::IllegalOption {
                opt: "scheduler",
                cmd: "delete-service"
            }
            .to_string(),
            "Illegal 'scheduler' option with the 'delete-service' command"
        );
        assert_eq!(err("--foo").to_string(), "--foo: unknown option");
        assert_eq!(
            err("-A -t 10.0.0.1:80 -n -n").to_string(),
            "multiple 'numeric' options specified"
        );
    }

    /// Every option counts once, under ipvsadm's name for it, and a repeat is reported before
    /// its value is read; `--sort` is a no-op that may repeat.
    #[test]
    fn each_option_may_be_given_once() {
        let cases: &[(&str, &str)] = &[
            ("-t 10.0.0.1:80 -t bad", "service-address"),
            ("-u 10.0.0.1:80 -t bad", "service-address"),
            ("-s rr -s bad", "scheduler"),
            ("-p 10 -p bad", "persistent"),
            ("-p -p", "persistent"),
            ("-M 255.255.255.0 -M bad", "netmask"),
            ("-r 10.0.1.1 -r bad", "real-server"),
            ("-g -i", "forwarding-method"),
            ("-m -m", "forwarding-method"),
            ("-w 1 -w bad", "weight"),
            ("-x 1 -x bad", "u-threshold"),
            ("-y 1 -y bad", "l-threshold"),
            ("-n --numeric", "numeric"),
            ("-c -c", "connection"),
            ("--timeout --timeout", "timeout"),
            ("--stats --stats", "stats"),
            ("--rate --rate", "rate"),
            ("--thresholds --thresholds", "thresholds"),
            ("--persistent-conn --persistent-conn", "persistent-conn"),
            ("--nosort --nosort", "nosort"),
            ("-X --exact", "exact"),
            ("--tun-info --tun-info", "tun-info"),
            ("--tun-type ipip --tun-type bad", "tun-type"),
            ("--tun-port 1 --tun-port bad", "tun-port"),
            ("--tun-nocsum --tun-nocsum", "tun-nocsum"),
            ("--tun-csum --tun-csum", "tun-csum"),
            ("--json --json", "json"),
            ("--mss-clamp 536 --mss-clamp bad", "mss-clamp"),
            ("--gre-key 1 --gre-key bad", "gre-key"),
        ];
        for (opts, name) in cases {
            let line = format!("-L {opts}");
            assert_eq!(err(&line), ParseError::MultipleOptions(name), "{line}");
        }
        assert!(matches!(ok("-L --sort --sort -n"), Command::List(_)));
    }

    #[test]
    fn value_errors_use_ipvsadm_words() {
        let cases: &[(&str, &str)] = &[
            (
                "-A -t web:80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 10.0.0.1:http",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 10.0.0.1:65536",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 80",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-A -t 10.0.0.1:",
                "illegal virtual server address[:port] specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r realserver1",
                "illegal real server address[:port] specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -w 65536",
                "illegal weight specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -w -1",
                "illegal weight specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -x 2147483648",
                "illegal u_threshold specified",
            ),
            (
                "-a -t 10.0.0.1:80 -r 10.0.1.1 -y abc",
                "illegal l_threshold specified",
            ),
            (
                "-A -t 10.0.0.1:80 -s foo",
                "Scheduler or persistence engine not found",
            ),
            (
                "-A -t 10.0.0.1",
                "Zero port specified for non-persistent service",
            ),
            (
                "-A -t 10.0.0.1:0 -s rr",
                "Zero port specified for non-persistent service",
            ),
            (
                "-A -t 10.0.0.1:80 -p 5x",
                "invalid timeout value `5x' specified",
            ),
            (
                "-A -t 10.0.0.1:80 -p -M 10.0.0.300",
                "illegal virtual server persistent mask specified",
            ),
            (
                "-A -t 10.0.0.1:80 --mss-clamp 20",
                "illegal mss-clamp specified",
            ),
        ];
        for (line, msg) in cases {
            assert_eq!(err(line).to_string(), *msg, "{line}");
        }
        assert_eq!(err("-A -t 10.0.0.1:80 -s foo").exit_code(), 255);
        assert_eq!(err("-A -t web:80").exit_code(), 2);
        assert_eq!(err("--foo").exit_code(), 255);
    }

    #[test]
    fn unsupported_ipvsadm_features_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "-A -f 1 -s rr",
                "fwmark services are not supported by tunlb",
            ),
            (
                "-A --fwmark-service 1",
                "fwmark services are not supported by tunlb",
            ),
            (
                "-A --sctp-service 10.0.0.1:80",
                "SCTP services are not supported by tunlb",
            ),
            (
                "-A -t [2001:db8::1]:80",
                "IPv6 services are not supported by tunlb",
            ),
            (
                "-A -t 2001:db8::1",
                "IPv6 services are not supported by tunlb",
            ),
            (
                "-A -t 10.0.0.1:80 --pe sip",
                "persistence engines are not supported by tunlb",
            ),
            (
                "-A -u 10.0.0.1:53 -o",
                "one-packet scheduling is not supported by tunlb",
            ),
            (
                "-A -t 10.0.0.1:80 -s sh -b sh-port",
                "scheduler flags are not supported by tunlb",
            ),
            (
                "--start-daemon master",
                "the connection sync daemon is not supported by tunlb",
            ),
            (
                "-L --daemon",
                "the connection sync daemon is not supported by tunlb",
            ),
        ];
        for (line, msg) in cases {
            assert_eq!(err(line).to_string(), *msg, "{line}");
        }
        for line in [
            "--stop-daemon master",
            "--syncid 1",
            "--mcast-interface eth0",
            "--mcast-group 224.0.0.81",
            "--mcast-port 8848",
            "--mcast-ttl 1",
            "--sync-maxlen 1472",
            "-a -t 10.0.0.1:80 -r 10.0.1.1 -i --tun-remcsum",
        ] {
            assert!(
                matches!(err(line), ParseError::Unsupported(_)),
                "{line}: {}",
                err(line)
            );
        }
    }

    #[test]
    fn port_names_resolve_with_a_table() {
        let names = PortNames::parse("http 80/tcp www\ndomain 53/udp\n");
        let c = parse_with(&args("-A -t 10.0.0.1:http -s rr"), &names).unwrap();
        assert!(matches!(c, Command::AddService(o) if o.key.port == 80));
        let c = parse_with(&args("-a -u 10.0.0.1:domain -r 10.0.1.1:domain -i"), &names).unwrap();
        assert!(matches!(c, Command::AddServer { dest, .. } if dest.port == 53));
        // Names are per protocol.
        assert!(parse_with(&args("-A -u 10.0.0.1:http"), &names).is_err());
    }

    #[test]
    fn restore_input_as_ipvsadm_restore() {
        let text = "\
# saved by ipvsadm-save
-A -t 10.0.0.1:80 -s rr

ipvsadm -a -t 10.0.0.1:80 -r 10.0.1.1:80 -i -w 1 --tun-type ipip
   -a -t 10.0.0.1:80 -r 10.0.1.2 -i
--set 900 120 300
-Z
";
        let cmds = parse_restore(text, &PortNames::empty()).unwrap();
        let lines: Vec<usize> = cmds.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7]);
        assert!(matches!(cmds[1].1, Edit::AddServer { .. }));
        let bad = "-A -t 10.0.0.1:80\n-a -t 10.0.0.1:80 -r host\n";
        let e = parse_restore(bad, &PortNames::empty()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: illegal real server address[:port] specified"
        );
        let e = parse_restore("-C\n-L -n\n", &PortNames::empty()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: the 'list' command cannot be used in a restore file"
        );
        let e = parse_restore("-R\n", &PortNames::empty()).unwrap_err();
        assert_eq!(e.line, 1);
    }

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
            Ok(match req {
                Request::Apply(cmds) => match self.set.apply_batch(&mut self.timeouts, cmds) {
                    Ok(_) => Response::Ok,
                    Err(e) => Response::from_batch_error(&e),
                },
                Request::List => Response::Listing(Listing::from_set(&self.set)),
                Request::ListConns => Response::Conns(Vec::new()),
                Request::GetTimeouts => Response::Timeouts(self.timeouts),
                Request::Config => Response::Config {
                    toml: to_toml(&self.set, &DirectorSettings::default()),
                },
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
            ok("-A -t 192.168.150.100:80 -s rr"),
            Command::AddService(ServiceOptions {
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
                    ok(&line),
                    Command::AddServer {
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
        assert_eq!(ok("-C"), Command::Clear);
        // The seed's `192.168.100:80` is a typo that inet_aton would read as 192.168.0.100;
        // tunlb wants four numbers.
        assert_eq!(
            err("-A -t 192.168.100:80 -s rr"),
            ParseError::BadServiceAddress
        );
    }

    /// Every command and option of the issue's list, run through `adm` against the in-memory
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
            ("-A -t 10.0.0.2:80 -p 1x", 2, "invalid timeout value `1x' specified"),
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
}

//! ipvsadm's command line into a [`Command`]: collect the options ([`Raw`]), check them as
//! ipvsadm does (the tables in `options.rs`), build the command.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};

use super::options::*;
use super::{Command, ListOptions, ListTarget, ServiceOptions};
use crate::control::format::{ListFormat, PortNames};
use crate::encap::{Tunnel, TunnelType, DEFAULT_GUE_PORT};
use crate::model::validate;
use crate::model::{
    DestConfig, Edit, Forward, Netmask, Persistence, Protocol, RuleError, SchedulerKind,
    ServiceKey, Timeouts, MAX_THRESHOLD, MAX_TIMEOUT, MAX_WEIGHT, MIN_MSS_CLAMP,
};

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
    /// `-t`/`-u` value that is not `ADDRESS[:PORT]` or `[IPV6]:PORT` with a numeric address.
    #[error("illegal virtual server address[:port] specified")]
    BadServiceAddress,
    /// `-r` value that is not `ADDRESS[:PORT]` or `[IPV6][:PORT]` with a numeric address.
    #[error("illegal real server address[:port] specified")]
    BadServerAddress,
    /// `-M` value that is not a dotted-quad mask (IPv4 service).
    #[error("illegal virtual server persistent mask specified")]
    BadNetmask,
    /// `-M` value that is not a prefix length 1..128 (IPv6 service).
    #[error("illegal ipv6 netmask specified")]
    BadIpv6Netmask,
    /// `-6` before (or without) `-f`. ipvsadm's message ends in a newline of its own.
    #[error("-6 used before -f\n")]
    Ipv6BeforeFwmark,
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
    /// A DR or NAT real server of the other family than the VIP's.
    #[error("{0}")]
    FamilyMismatch(crate::model::EditError),
    /// An ipvsadm feature tunlb does not have (fwmark, sync daemon, ...).
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
            RuleError::Ipv6PrefixLen(_) => ParseError::BadIpv6Netmask,
            RuleError::NetmaskFamily { vip } => match vip {
                IpAddr::V4(_) => ParseError::BadNetmask,
                IpAddr::V6(_) => ParseError::BadIpv6Netmask,
            },
            // ipvsadm leaves this to the kernel (EINVAL); tunlb names both addresses.
            RuleError::FamilyMismatch { vip, addr } => {
                ParseError::FamilyMismatch(crate::model::EditError::FamilyMismatch { vip, addr })
            }
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
        if words.first().is_none_or(|w| w.starts_with('#')) {
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
        match parse_with(&args, names).map_err(fail)? {
            Command::Edit(edit) => cmds.push((n + 1, edit)),
            other => return Err(fail(ParseError::NotRestorable(other.name()))),
        }
    }
    Ok(cmds)
}

/// An optional value (`-p [TIMEOUT]`) is the next word unless that looks like an option.
fn take_optional<'a>(strs: &[&'a str], i: &mut usize) -> Option<&'a str> {
    let next = strs.get(*i).copied().filter(|v| !v.starts_with('-'))?;
    *i += 1;
    Some(next)
}

// --- Collecting and checking ----------------------------------------------------------------

/// The first option that breaks a [`Rule`] table ([`Raw::check_rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Violation {
    /// A compulsory option is not given.
    Missing(OptName),
    /// An illegal option is given.
    Illegal(OptName),
    /// `opt` is given after `other`, and only one of them may be.
    Conflict { opt: OptName, other: OptName },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Method {
    Route,
    Tunnel,
    Masq,
}

/// Everything seen on the command line, before the per-command checks.
#[derive(Default)]
pub(super) struct Raw {
    cmd: Option<Cmd>,
    seen: u32,
    proto: Option<Protocol>,
    service: Option<(IpAddr, Option<u16>)>,
    scheduler: Option<String>,
    persistent: Option<u32>,
    netmask: Option<Netmask>,
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
    pub(super) fn has(&self, opt: OptName) -> bool {
        self.seen & opt.bit() != 0
    }

    pub(super) fn set_option(&mut self, opt: OptName) -> Result<(), ParseError> {
        if self.has(opt) {
            return Err(ParseError::MultipleOptions(opt.name()));
        }
        self.seen |= opt.bit();
        Ok(())
    }

    /// One option, in command-line order: value errors come out in the order ipvsadm finds them.
    pub(super) fn handle(
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
                let (vip, port) =
                    parse_addr_port(v, proto, names, false).ok_or(ParseError::BadServiceAddress)?;
                // As ipvsadm: an IPv6 service resets the persistence granularity to /128
                // (a `-M` given before `-t` is dropped).
                if vip.is_ipv6() {
                    self.netmask = None;
                }
                self.service = Some((vip, port));
            }
            Opt::Scheduler => self.scheduler = Some(v.to_string()),
            Opt::Persistent => {
                self.persistent = Some(match value {
                    None => 300,
                    Some(t) => number(t, 1, MAX_TIMEOUT)
                        .ok_or_else(|| ParseError::BadTimeout(t.to_string()))?,
                });
            }
            // As ipvsadm: read by the family of the service given so far (IPv4 if none).
            Opt::Netmask => {
                self.netmask = Some(match self.service {
                    Some((IpAddr::V6(_), _)) => {
                        Netmask::V6(number(v, 1, 128).ok_or(ParseError::BadIpv6Netmask)? as u8)
                    }
                    _ => Netmask::V4(v.parse().map_err(|_| ParseError::BadNetmask)?),
                });
            }
            // Only with `-f`, which tunlb refuses as soon as it sees it.
            Opt::Ipv6 => return Err(ParseError::Ipv6BeforeFwmark),
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

    pub(super) fn build(self, names: &PortNames) -> Result<Command, ParseError> {
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
                    validate::service_port::<std::net::IpAddr>(key.port, None)?;
                }
                let scheduler = match &self.scheduler {
                    None => SchedulerKind::default(),
                    Some(s) => s
                        .parse()
                        .map_err(|_| ParseError::SchedulerNotFound(s.clone()))?,
                };
                if let (Some(_), Some(mask)) = (self.persistent, self.netmask) {
                    validate::service_netmask(key.vip, mask)?;
                }
                let opts = ServiceOptions {
                    key,
                    scheduler,
                    persistence: self.persistent.map(|timeout| Persistence {
                        timeout,
                        netmask: self.netmask.unwrap_or(Netmask::host(key.vip)),
                    }),
                    mss_clamp: self.mss_clamp,
                };
                Command::Edit(if cmd == Cmd::Add {
                    Edit::AddService(opts)
                } else {
                    Edit::EditService(opts)
                })
            }
            Cmd::Del => Command::Edit(Edit::DeleteService(need_service()?)),
            Cmd::Flush => Command::Edit(Edit::Clear),
            Cmd::AddDest | Cmd::EditDest => {
                let service = need_service()?;
                let dest = self.dest_config(service, names)?;
                Command::Edit(if cmd == Cmd::AddDest {
                    Edit::AddServer { service, dest }
                } else {
                    Edit::EditServer { service, dest }
                })
            }
            Cmd::DelDest => {
                let service = need_service()?;
                let (addr, port) = self.server_addr(service, names)?;
                Command::Edit(Edit::DeleteServer {
                    service,
                    addr,
                    port: port.unwrap_or(service.port),
                })
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
            Cmd::Set => Command::Edit(Edit::SetTimeouts(set_values.unwrap_or_default())),
            Cmd::Restore => Command::Restore,
            Cmd::Save => Command::Save {
                numeric: self.format.numeric,
            },
            Cmd::Zero => Command::Edit(Edit::Zero(service)),
            Cmd::SaveConfig => Command::SaveConfig {
                path: self.config_path.ok_or(ParseError::NoConfigPath)?,
            },
            Cmd::Reload => Command::Reload,
            Cmd::Vrrp => Command::Vrrp { json: self.json },
            Cmd::Help => Command::Help,
            Cmd::Version => Command::Version,
        })
    }

    /// ipvsadm's `generic_opt_check`: compulsory, illegal and mutually exclusive options.
    pub(super) fn check_options(&self, cmd: Cmd) -> Result<(), ParseError> {
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
    pub(super) fn check_rules(
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

    pub(super) fn server_addr(
        &self,
        service: ServiceKey,
        names: &PortNames,
    ) -> Result<(IpAddr, Option<u16>), ParseError> {
        let text = self.server.as_deref().ok_or(ParseError::BadServerAddress)?;
        parse_addr_port(text, service.proto, names, true).ok_or(ParseError::BadServerAddress)
    }

    /// The real server of `-a` / `-e`, with ipvsadm's defaults (`-g`, weight 1).
    pub(super) fn dest_config(
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
            Method::Tunnel => Forward::Tunnel(Tunnel::new(
                tun_type,
                self.tun_port.unwrap_or(DEFAULT_GUE_PORT),
                self.tun_csum.unwrap_or(false),
                self.gre_key,
            )),
        };
        // An explicit `:0` is a port like any other here (ipvsadm's parser), unlike in the
        // table, where 0 means the service's.
        let port = validate::real_server_port(service.port, &forward, port)?;
        validate::dest_family(service.vip, addr, &forward)?;
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
pub(super) fn number(s: &str, min: u32, max: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = s.parse().ok()?;
    (min..=max).contains(&n).then_some(n)
}

/// An endpoint as ipvsadm's `parse_service` reads it: `ADDRESS[:PORT]` with a numeric IPv4
/// address, `[IPV6]:PORT`, or a bare IPv6 address (no port); the port a number or a name.
/// `bare_brackets` also takes `[IPV6]` without a port (tunlb's `-r [2001:db8::10]`, which
/// ipvsadm refuses).
pub(super) fn parse_addr_port(
    s: &str,
    proto: Protocol,
    names: &PortNames,
    bare_brackets: bool,
) -> Option<(IpAddr, Option<u16>)> {
    let (addr, port): (IpAddr, Option<&str>) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() && bare_brackets => None,
            None => return None,
        };
        (IpAddr::V6(inside.parse().ok()?), port)
    } else if let Ok(v6) = s.parse::<std::net::Ipv6Addr>() {
        (IpAddr::V6(v6), None)
    } else {
        let (addr, port) = match s.rsplit_once(':') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        (IpAddr::V4(addr.parse::<Ipv4Addr>().ok()?), port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(match number(p, 0, 65_535) {
            Some(n) => n as u16,
            None => names.port(proto, p)?,
        }),
    };
    Some((addr, port))
}

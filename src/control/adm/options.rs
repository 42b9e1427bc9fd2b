//! ipvsadm's option table: its commands, its options (long, short, with or without a value,
//! or refused by tunlb), and which command and tunnel type takes which option.

use crate::encap::TunnelType;
use crate::model::validate::{self, TunnelOption};

// --- The option table ---------------------------------------------------------------------

/// ipvsadm's commands, with its names for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmd {
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
    Vrrp,
}

impl Cmd {
    pub(super) fn name(self) -> &'static str {
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
            Cmd::Vrrp => "vrrp",
        }
    }
}

/// The options that count in ipvsadm's command/option table, in its order (which decides
/// which error is reported first), then tunlb's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OptName {
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
    pub(super) const ALL: [OptName; 26] = [
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

    pub(super) fn name(self) -> &'static str {
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

    pub(super) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// How a command treats an option (ipvsadm's `commands_v_options` keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rule {
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
pub(super) fn rule(cmd: Cmd, opt: OptName) -> Rule {
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
        Cmd::Vrrp => match opt {
            O::Json | O::Numeric => Rule::May,
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
pub(super) fn tunnel_rule(tun: TunnelType, opt: OptName) -> Rule {
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

pub(super) const TUNNEL_OPTS: [OptName; 4] = [
    OptName::TunPort,
    OptName::TunNocsum,
    OptName::TunCsum,
    OptName::GreKey,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arg {
    None,
    Required,
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flag {
    Cmd(Cmd),
    Opt(Opt),
    Unsupported(&'static str),
}

/// Every option as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Opt {
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
    /// `-6`: the fwmark service (`-f`) is IPv6. Not counted (ipvsadm does not either).
    Ipv6,
}

impl Opt {
    /// The option this one counts as in ipvsadm's table (`-t` and `-u` are both the service,
    /// `-g`, `-i` and `-m` the forwarding method); `None` for `--sort`, which is not counted.
    pub(super) fn counts_as(self) -> Option<OptName> {
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
            Opt::Sort | Opt::Ipv6 => return None,
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

pub(super) struct Spec {
    pub(super) long: &'static str,
    pub(super) short: Option<char>,
    pub(super) arg: Arg,
    pub(super) flag: Flag,
}

/// A command: `--long` or `-short`, no argument.
pub(super) const fn cmd(long: &'static str, short: Option<char>, cmd: Cmd) -> Spec {
    Spec {
        long,
        short,
        arg: Arg::None,
        flag: Flag::Cmd(cmd),
    }
}

/// An option tunlb has.
pub(super) const fn opt(long: &'static str, short: Option<char>, arg: Arg, opt: Opt) -> Spec {
    Spec {
        long,
        short,
        arg,
        flag: Flag::Opt(opt),
    }
}

/// An ipvsadm option tunlb does not have: using it is an error saying `why`.
pub(super) const fn unsupported(
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    why: &'static str,
) -> Spec {
    Spec {
        long,
        short,
        arg,
        flag: Flag::Unsupported(why),
    }
}

/// Why the connection sync daemon's options are refused.
pub(super) const SYNC_DAEMON: &str = "the connection sync daemon is not supported by tunlb";

pub(super) const SPECS: &[Spec] = &[
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
    cmd("vrrp", None, Cmd::Vrrp),
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
    opt("ipv6", Some('6'), Arg::None, Opt::Ipv6),
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

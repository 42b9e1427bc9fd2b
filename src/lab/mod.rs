//! `tunlb lab`: the classic four-node LVS tutorial (this project's seed), built out of network namespaces on this one
//! machine in one command, plus the tools that play the world around a load balancer.
//!
//! - `tunlb lab up [--mode tun|dr|nat] [--encap ipip|gre|gue] [--prefix P]` builds the
//!   namespaces `P-client`, `P-router`, `P-director`, `P-rs1`, `P-rs2` and `P-backup`
//!   ([`topology`]: where the real servers live depends on the mode), starts
//!   `tunlb director --announce eth0` in the director, `tunlb httpd` on each real server (and
//!   `tunlb realserver` before it in TUN and DR mode), configures the service with `tunlb adm` commands it
//!   prints as it runs them, sends a dozen requests from the client, prints the service and
//!   connection tables and how to step in, and leaves it all running ([`run()`]).
//! - `tunlb lab down [--prefix P]` stops those processes and removes the namespaces and the
//!   state folder `/run/tunlb-lab/P/` ([`state`]).
//! - `tunlb lab demo` is `up`, then `down`; it exits 0 when both real servers answered.
//! - `tunlb lab up --ipv6` / `demo --ipv6` make the lab dual-stack: an IPv6 VIP
//!   [2001:db8:150::100]:80 beside the IPv4 one, in the same mode ([`topology::plan_ipv6`]);
//!   the demo then needs both real servers to answer over IPv6 too.
//! - `tunlb lab up --ha` / `demo --ha` run two directors, MASTER and BACKUP, from keepalived.conf
//!   files with VRRP and connection sync; the demo kills the master under long-lived
//!   connections and brings it back ([`ha`]).
//! - `tunlb lab up --mode ecmp [--directors N]` / `demo --mode ecmp` run N directors (3 by
//!   default) behind a router whose BIRD merges their BGP announcements of the VIP into one
//!   multipath route; the demo kills one director under 60 long-lived connections and shows
//!   the route shrink and every connection continuing ([`ecmp`]).
//! - `tunlb lab clients --to VIP:PORT` holds keep-alive connections carrying requests and
//!   probes new connections, then prints what a failover cost ([`clients`]).
//! - `tunlb lab get URL` is a one-shot HTTP GET ([`get`]), used when curl is not installed.
//! - `tunlb lab synflood --to VIP:PORT` (hidden) sends spoofed SYN + ACK pairs from a
//!   black-holed range, bounded in count and time: the flood of the namespace test `flood`
//!   and of `scripts/soak.sh` ([`synflood`]).
//! - `tunlb udpblast send|sink` (hidden) is the benchmark's UDP packet-rate generator and
//!   sink ([`udpblast`]).
//!
//! Modules: [`topology`] (the network as data: addresses, names, the `ip` commands),
//! [`host`] (running `ip` and programs inside namespaces), [`process`] (detached processes,
//! stopped by pid from another invocation), [`state`] (the state folder), [`run`](mod@run) (the
//! subcommands), [`get`] and [`httpd`] (a tiny HTTP client and server).

pub mod clients;
pub mod ecmp;
pub mod get;
pub mod ha;
pub mod host;
pub mod httpd;
pub mod process;
pub mod run;
pub mod state;
pub mod synflood;
pub mod topology;
pub mod udpblast;

use crate::encap::TunnelType;

pub use run::run;

/// Arguments of `tunlb lab`.
#[derive(Debug, Clone, clap::Args)]
pub struct LabArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LabCommand,
}

/// The subcommands of `tunlb lab`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum LabCommand {
    /// Build the classic LVS lab in network namespaces, start the director, agents and httpds,
    /// configure the service with `tunlb adm`, show requests and tables; leave it running.
    Up(UpArgs),
    /// Stop the lab's processes, delete its namespaces and its state folder.
    Down(DownArgs),
    /// `up`, then `down`: exits 0 when both real servers answered.
    Demo(UpArgs),
    /// Fetch a URL with one HTTP GET and print the body (a curl stand-in for the lab:
    /// `ip netns exec tunlb-client tunlb lab get http://192.168.150.100/`).
    Get(get::GetArgs),
    /// Hold keep-alive connections carrying requests and probe new connections, then print a
    /// JSON summary (connections lost, new-connection outages): the client side of a failover
    /// (`ip netns exec tunlb-client tunlb lab clients --to 192.168.150.100:80`).
    Clients(clients::ClientsArgs),
    /// A bounded flood of spoofed TCP SYN + ACK pairs (tests of the connection table's
    /// defences; only inside a named network namespace).
    #[command(hide = true)]
    Synflood(synflood::SynfloodArgs),
}

/// How the director forwards to the real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// IP tunnelling (`ipvsadm -i`): the real servers live in another network.
    Tun,
    /// Direct routing (`ipvsadm -g`), the tutorial's mode: the real servers on the LAN.
    Dr,
    /// NAT (`ipvsadm -m`): the real servers on a private LAN behind the director, port 8080.
    Nat,
    /// Several directors (`--directors`) behind a router's ECMP route announced over BGP by
    /// BIRD, TUN mode (IPIP) to the real servers ([`ecmp`]).
    Ecmp,
}

impl Mode {
    /// The mode's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Tun => "tun",
            Mode::Dr => "dr",
            Mode::Nat => "nat",
            Mode::Ecmp => "ecmp",
        }
    }
}

/// Which lab: the namespace prefix.
#[derive(Debug, Clone, clap::Args)]
pub struct PrefixArgs {
    /// Prefix of the namespace names (`<prefix>-client`, `<prefix>-director`, ...) and of the
    /// state folder `/run/tunlb-lab/<prefix>`; ASCII letters, digits, `_`, `-`. Use another
    /// one to run a second lab side by side.
    #[arg(long, value_name = "P", default_value = topology::Names::DEFAULT_PREFIX)]
    pub prefix: String,
}

/// Arguments of `tunlb lab up` and `tunlb lab demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Forwarding method: `tun` (`-i`, real servers in another network), `dr` (`-g`, the
    /// seed's layout: one LAN), `nat` (`-m`, real servers on a private LAN behind the
    /// director) or `ecmp` (several directors behind a router's multipath route announced
    /// by BIRD over BGP, TUN mode to the real servers; needs bird2).
    #[arg(long, value_enum, default_value_t = Mode::Tun)]
    pub mode: Mode,
    /// Tunnel between the director and the real servers in TUN mode: ipip (the default), gre
    /// or gue.
    #[arg(long, value_name = "ipip|gre|gue")]
    pub encap: Option<TunnelType>,
    /// Scheduler of the virtual service (`tunlb adm -A ... -s SCHEDULER`).
    #[arg(long, value_name = "NAME", default_value = "rr")]
    pub scheduler: String,
    /// Two directors instead of one: the director (.11, VRRP MASTER, priority 100) and the
    /// backup (.14, BACKUP, priority 50), each run from a keepalived.conf with a vrrp_instance
    /// for the VIP and connection sync (`lvs_sync_daemon`); `demo --ha` then kills the master
    /// under 50 long-lived connections, restarts it and prints the timeline. TUN mode only.
    #[arg(long)]
    pub ha: bool,
    /// `--mode ecmp`: how many directors (`P-director1` … `P-directorN`), 1 to 9; default 3.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=ecmp::MAX_DIRECTORS as i64))]
    pub directors: Option<u8>,
    /// How many requests the client sends to show who answers.
    #[arg(long, value_name = "N", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub requests: u32,
    /// Dual-stack: every link also gets an IPv6 address (2001:db8::/32, `nodad`), the router
    /// forwards IPv6, and an IPv6 VIP [2001:db8:150::100]:80 with the real servers' IPv6
    /// addresses is configured beside the IPv4 one, in the same mode (TUN over the IPv6
    /// underlay, DR with NDP answered by the director, NAT66); the requests go to both VIPs.
    /// Not with --ha or --mode ecmp.
    #[arg(long)]
    pub ipv6: bool,
    /// Which lab.
    #[command(flatten)]
    pub prefix: PrefixArgs,
}

impl UpArgs {
    /// The tunnel type in TUN mode: `--encap`, else ipip.
    pub fn encap(&self) -> TunnelType {
        self.encap.unwrap_or_default()
    }
}

/// Arguments of `tunlb lab down`.
#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Which lab.
    #[command(flatten)]
    pub prefix: PrefixArgs,
}

//! The `tunlb` binary: one command, several roles.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

/// A userspace Linux Virtual Server: director, real-server agent and ipvsadm-compatible admin.
#[derive(Parser, Debug)]
#[command(name = "tunlb", version, about, propagate_version = true)]
struct Cli {
    /// More log lines: -v adds debug, -vv trace (before the subcommand: `tunlb -v director`;
    /// wins over RUST_LOG).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Fewer log lines: -q warnings and errors only, -qq errors only, -qqq none (before the
    /// subcommand; wins over RUST_LOG).
    #[arg(short, long, action = ArgAction::Count)]
    quiet: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the director: read VIP packets from a TUN device and forward them to real servers.
    Director(tunlb::daemon::DirectorArgs),
    /// Run the real-server agent: hidden VIP on lo, decapsulate tunnel packets into a TUN.
    Realserver(tunlb::realserver::AgentArgs),
    /// Administer the director of this network namespace with ipvsadm's syntax (`tunlb adm -ln`).
    #[command(disable_help_flag = true)]
    Adm {
        /// ipvsadm arguments, e.g. `-A -t 192.168.150.100:80 -s rr`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// A small HTTP server for labs and tests (banner, deterministic blobs, upload hashes).
    #[cfg(feature = "lab")]
    Httpd(tunlb::lab::httpd::HttpdArgs),
    /// Check a config (keepalived.conf, or TOML if it ends in .toml) and print the table it makes.
    CheckConfig {
        /// The file to check.
        file: std::path::PathBuf,
    },
    /// The classic four-node LVS lab in network namespaces: `tunlb lab demo`, `up`, `down`.
    #[cfg(feature = "lab")]
    Lab(tunlb::lab::LabArgs),
    /// Bounded UDP packet-rate generator and sink for the namespace benchmark.
    #[cfg(feature = "lab")]
    #[command(hide = true)]
    Udpblast(tunlb::lab::udpblast::UdpblastArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tunlb::logging::init(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Adm { args } => return tunlb::control::adm::main(args),
        Command::Director(args) => tunlb::daemon::run(args),
        Command::Realserver(args) => tunlb::realserver::run(args),
        #[cfg(feature = "lab")]
        Command::Httpd(args) => tunlb::lab::httpd::run(args),
        #[cfg(feature = "lab")]
        Command::Lab(args) => tunlb::lab::run(args),
        #[cfg(feature = "lab")]
        Command::Udpblast(args) => tunlb::lab::udpblast::run(args),
        Command::CheckConfig { file } => tunlb::control::keepalived::check_config(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("tunlb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

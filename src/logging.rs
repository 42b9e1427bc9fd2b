//! The logger: the backend behind the [`log`] facade that every module logs through
//! (`log::info!`, `log::warn!`, ...). [`init`] installs it once, at the start of `main`.
//!
//! - **One line per record on stderr, the message exactly**: no timestamp, no level word, so
//!   the lines read as they always have (`tunlb director: health: ...`) and whatever collects
//!   stderr (journald, a supervisor, a test's log file) adds the time.
//! - **When stderr is the systemd journal**, each line starts with its syslog priority, the
//!   sd-daemon(3) convention journald reads: `<3>` error, `<4>` warn, `<6>` info, `<7>` debug
//!   and trace ([`priority`]), so `journalctl -p warning` shows the warnings. systemd tells a
//!   service its stderr is the journal with `JOURNAL_STREAM=DEV:INODE` (systemd.exec(5));
//!   the prefix is written only when that names stderr itself, not when a child of the service
//!   redirected stderr to a file and inherited the variable ([`parse_journal_stream`]).
//! - **Level**: `info` by default. `RUST_LOG` overrides it with a level (`error`, `warn`,
//!   `info`, `debug`, `trace`, `off`) and/or `target=level` pairs, env_logger style:
//!   `RUST_LOG=warn,tunlb::health=debug` ([`Filter::parse`]; a target covers its sub-modules,
//!   the longest matching target wins). The command line wins over both: `tunlb -v` debug,
//!   `-vv` trace, `-q` warn, `-qq` error, `-qqq` nothing ([`Filter::from_flags`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The syslog priority journald files a line of `level` under (sd-daemon(3)): error 3
/// (`LOG_ERR`), warn 4 (`LOG_WARNING`), info 6 (`LOG_INFO`), debug and trace 7 (`LOG_DEBUG`).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The device and inode in `JOURNAL_STREAM`'s value `DEV:INODE` (both decimal, as systemd
/// writes them), or `None` when it is not of that form.
pub fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Whether stderr is the journal: `JOURNAL_STREAM` is set and names the device and inode of
/// the file stderr is open on.
pub fn stderr_is_journal() -> bool {
    let Some(want) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| parse_journal_stream(&v))
    else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => (meta.dev(), meta.ino()) == want,
        Err(_) => false,
    }
}

/// A `RUST_LOG` value that is not a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A level that is not `error`, `warn`, `info`, `debug`, `trace` or `off`.
    #[error("unknown level {0:?} (error, warn, info, debug, trace or off)")]
    Level(String),
    /// A `target=level` pair without the target.
    #[error("no target before '=' in {0:?}")]
    Target(String),
}

/// Which records are written: a default level and per-target levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The level for targets no pair names.
    default: LevelFilter,
    /// `(target, level)` pairs: a target covers itself and its sub-modules (`tunlb::health`
    /// covers `tunlb::health::probe`).
    targets: Vec<(String, LevelFilter)>,
}

impl Default for Filter {
    /// `info` for everything.
    fn default() -> Self {
        Filter::new(LevelFilter::Info)
    }
}

impl Filter {
    /// `level` for every target.
    pub fn new(level: LevelFilter) -> Self {
        Filter {
            default: level,
            targets: Vec::new(),
        }
    }

    /// Parses a `RUST_LOG` value: comma-separated items, each a level (the default level), a
    /// `target=level` pair, or a bare target (all its records, as env_logger reads it). Level
    /// names are case-insensitive; empty items are skipped; the default stays `info` when no
    /// item sets it.
    pub fn parse(spec: &str) -> Result<Filter, FilterError> {
        let level = |s: &str| {
            s.trim()
                .parse::<LevelFilter>()
                .map_err(|_| FilterError::Level(s.trim().to_owned()))
        };
        let mut filter = Filter::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.split_once('=') {
                Some((target, lvl)) => {
                    let target = target.trim();
                    if target.is_empty() {
                        return Err(FilterError::Target(item.to_owned()));
                    }
                    filter.targets.push((target.to_owned(), level(lvl)?));
                }
                None => match item.parse::<LevelFilter>() {
                    Ok(l) => filter.default = l,
                    Err(_) => filter.targets.push((item.to_owned(), LevelFilter::Trace)),
                },
            }
        }
        Ok(filter)
    }

    /// The filter `-v`/`-q` ask for, counted: `None` when neither was given (then `RUST_LOG`
    /// or the default decides). Each `-v` is one level more than info (debug, trace), each `-q`
    /// one less (warn, error, off).
    pub fn from_flags(verbose: u8, quiet: u8) -> Option<Filter> {
        if verbose == 0 && quiet == 0 {
            return None;
        }
        const LADDER: [LevelFilter; 6] = [
            LevelFilter::Off,
            LevelFilter::Error,
            LevelFilter::Warn,
            LevelFilter::Info,
            LevelFilter::Debug,
            LevelFilter::Trace,
        ];
        let at = (3 + i32::from(verbose) - i32::from(quiet)).clamp(0, 5);
        Some(Filter::new(LADDER[at as usize]))
    }

    /// The filter for this process: the flags' if given, else `RUST_LOG`'s if set and valid,
    /// else info. A `RUST_LOG` that does not parse is returned as the error beside the
    /// default filter, for the caller to report once the logger is up.
    pub fn choose(verbose: u8, quiet: u8, rust_log: Option<&str>) -> (Filter, Option<FilterError>) {
        if let Some(f) = Filter::from_flags(verbose, quiet) {
            return (f, None);
        }
        match rust_log.map(Filter::parse) {
            None => (Filter::default(), None),
            Some(Ok(f)) => (f, None),
            Some(Err(e)) => (Filter::default(), Some(e)),
        }
    }

    /// The level for records of `target`: the longest pair's that covers it, else the default.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| {
                target == t
                    || (target.starts_with(t.as_str()) && target[t.len()..].starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |&(_, level)| level)
    }

    /// The most verbose level any target gets (for [`log::set_max_level`]).
    pub fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|&(_, l)| l)
            .fold(self.default, Ord::max)
    }
}

/// The [`log::Log`] implementation: a [`Filter`], and whether to write journald priorities.
#[derive(Debug)]
pub struct Logger {
    filter: Filter,
    journal: bool,
}

impl Logger {
    /// A logger writing the records `filter` lets through, with `<N>` priorities when
    /// `journal`.
    pub fn new(filter: Filter, journal: bool) -> Self {
        Logger { filter, journal }
    }

    /// The bytes written for `record`: its message and a newline; with the priority in front
    /// of each line when writing to the journal (journald reads every line on its own).
    pub fn format(&self, record: &Record<'_>) -> String {
        let mut line = String::new();
        if self.journal {
            let prefix = format!("<{}>", priority(record.level()));
            let message = record.args().to_string();
            for l in message.split('\n') {
                let _ = writeln!(line, "{prefix}{l}");
            }
        } else {
            let _ = writeln!(line, "{}", record.args());
        }
        line
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.filter.level_for(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write per record, so lines of concurrent threads do not interleave.
            let _ = std::io::stderr()
                .lock()
                .write_all(self.format(record).as_bytes());
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger for this process: level from `-v` (`verbose` times) and `-q` (`quiet`
/// times), else `RUST_LOG`, else info; journald priorities when stderr is the journal. A
/// second call does nothing. An unparsable `RUST_LOG` is reported as a warning and ignored.
pub fn init(verbose: u8, quiet: u8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, bad) = Filter::choose(verbose, quiet, rust_log.as_deref());
    let max = filter.max_level();
    let logger: &'static Logger = Box::leak(Box::new(Logger::new(filter, stderr_is_journal())));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
        if let Some(e) = bad {
            log::warn!("tunlb: ignoring RUST_LOG: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_line(logger: &Logger, level: Level, message: &str) -> String {
        logger.format(
            &Record::builder()
                .level(level)
                .target("tunlb::health")
                .args(format_args!("{message}"))
                .build(),
        )
    }

    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
        assert_eq!(priority(Level::Trace), 7);
    }

    #[test]
    fn plain_lines_are_the_message_only() {
        let plain = Logger::new(Filter::default(), false);
        for level in [Level::Error, Level::Warn, Level::Info, Level::Debug] {
            assert_eq!(
                record_line(&plain, level, "tunlb director: health: up"),
                "tunlb director: health: up\n"
            );
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_on_every_line() {
        let journal = Logger::new(Filter::default(), true);
        assert_eq!(record_line(&journal, Level::Error, "boom"), "<3>boom\n");
        assert_eq!(record_line(&journal, Level::Warn, "hm"), "<4>hm\n");
        assert_eq!(record_line(&journal, Level::Info, "ok"), "<6>ok\n");
        assert_eq!(record_line(&journal, Level::Trace, "t"), "<7>t\n");
        assert_eq!(
            record_line(&journal, Level::Warn, "one\ntwo"),
            "<4>one\n<4>two\n"
        );
    }

    #[test]
    fn journal_stream_is_dev_colon_inode() {
        assert_eq!(parse_journal_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_journal_stream("64769:98765\n"), Some((64769, 98765)));
        assert_eq!(parse_journal_stream(""), None);
        assert_eq!(parse_journal_stream("8"), None);
        assert_eq!(parse_journal_stream("8:"), None);
        assert_eq!(parse_journal_stream(":9"), None);
        assert_eq!(parse_journal_stream("a:9"), None);
        assert_eq!(parse_journal_stream("-1:9"), None);
    }

    #[test]
    fn rust_log_levels_and_targets() {
        assert_eq!(Filter::parse("").unwrap(), Filter::new(LevelFilter::Info));
        assert_eq!(
            Filter::parse("debug").unwrap(),
            Filter::new(LevelFilter::Debug)
        );
        assert_eq!(
            Filter::parse("WARN").unwrap(),
            Filter::new(LevelFilter::Warn)
        );
        assert_eq!(Filter::parse("off").unwrap(), Filter::new(LevelFilter::Off));

        let f = Filter::parse("warn, tunlb::health=debug,tunlb::health::probe=trace").unwrap();
        assert_eq!(f.level_for("tunlb::director"), LevelFilter::Warn);
        assert_eq!(f.level_for("tunlb::health"), LevelFilter::Debug);
        assert_eq!(f.level_for("tunlb::health::tls"), LevelFilter::Debug);
        assert_eq!(f.level_for("tunlb::health::probe"), LevelFilter::Trace);
        assert_eq!(
            f.level_for("tunlb::healthy"),
            LevelFilter::Warn,
            "module boundary"
        );
        assert_eq!(f.max_level(), LevelFilter::Trace);

        // A bare target gets everything; the default stays info.
        let f = Filter::parse("tunlb::realserver").unwrap();
        assert_eq!(f.level_for("tunlb::realserver::tunnel"), LevelFilter::Trace);
        assert_eq!(f.level_for("tunlb::metrics"), LevelFilter::Info);

        assert_eq!(
            Filter::parse("tunlb=loud"),
            Err(FilterError::Level("loud".into()))
        );
        assert_eq!(
            Filter::parse("=debug"),
            Err(FilterError::Target("=debug".into()))
        );
    }

    #[test]
    fn flags_win_over_rust_log() {
        assert_eq!(Filter::from_flags(0, 0), None);
        let level = |v, q| Filter::from_flags(v, q).unwrap().max_level();
        assert_eq!(level(1, 0), LevelFilter::Debug);
        assert_eq!(level(2, 0), LevelFilter::Trace);
        assert_eq!(level(9, 0), LevelFilter::Trace);
        assert_eq!(level(0, 1), LevelFilter::Warn);
        assert_eq!(level(0, 2), LevelFilter::Error);
        assert_eq!(level(0, 3), LevelFilter::Off);
        assert_eq!(level(0, 200), LevelFilter::Off);

        assert_eq!(
            Filter::choose(0, 1, Some("trace")),
            (Filter::new(LevelFilter::Warn), None)
        );
        assert_eq!(
            Filter::choose(0, 0, Some("debug")),
            (Filter::new(LevelFilter::Debug), None)
        );
        assert_eq!(Filter::choose(0, 0, None), (Filter::default(), None));
        assert_eq!(
            Filter::choose(0, 0, Some("nonsense=x")),
            (Filter::default(), Some(FilterError::Level("x".into())))
        );
    }

    #[test]
    fn the_logger_filters_by_target() {
        let logger = Logger::new(Filter::parse("warn,tunlb::health=debug").unwrap(), false);
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        assert!(logger.enabled(&meta(Level::Debug, "tunlb::health::probe")));
        assert!(!logger.enabled(&meta(Level::Trace, "tunlb::health::probe")));
        assert!(!logger.enabled(&meta(Level::Info, "tunlb::realserver")));
        assert!(logger.enabled(&meta(Level::Warn, "tunlb::realserver")));
    }
}

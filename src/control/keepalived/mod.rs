//! keepalived.conf as an input format: `tunlb check-config FILE` and
//! `tunlb director --keepalived-conf FILE`.
//!
//! The file is read as keepalived 2.x reads it ([`syntax`]: words, `{ }` blocks glued or not,
//! `!`/`#` comments, quotes, `include` globs), then given meaning ([`lvs`]: `virtual_server`,
//! `virtual_server_group`, `real_server` and its checkers become a [`ServiceSet`] and a
//! [`HealthConfig`]; [`vrrp`]: `vrrp_instance`, `vrrp_script`, `vrrp_sync_group` and the VRRP
//! keys of `global_defs`, `lvs_sync_daemon` included, become a [`VrrpConfig`]; [`scripts`]:
//! `script_user`, `enable_script_security` and the `user` of each script).
//!
//! Where keepalived logs a problem and carries on (an unknown keyword, a bad value), tunlb
//! refuses the file: `keepalived --config-test` fails on the same lines, and a balancer that
//! silently runs half a config is worse than one that does not start. What keepalived accepts
//! but tunlb cannot do and that changes nothing it does (most global settings, SMTP alerts) is a
//! warning; what would change behaviour (AH authentication, VMACs) is an error. Every
//! problem in the file is reported at once, each as `file:line:column: message`.

mod checkers;
pub mod lvs;
pub mod scripts;
pub mod syntax;
pub mod vrrp;

use std::fmt;
use std::path::Path;

use crate::control::config;
use crate::control::format::{self, ListFormat, Listing, PortNames};
use crate::health::config::{CheckKind, HealthConfig};
use crate::model::{ScriptPolicy, ServiceSet};
use crate::vrrp::config::VrrpConfig;

use syntax::{Loc, Node, Sources, Word};

/// A warning or an error, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as named on the command line or by `include`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A warning: keepalived accepts it, tunlb ignores it.
pub type Warning = Diagnostic;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// What a keepalived.conf configures in tunlb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepalivedConfig {
    /// The virtual services and their real servers.
    pub services: ServiceSet,
    /// The health checks of each service.
    pub health: HealthConfig,
    /// The VRRP instances, scripts, sync groups and connection sync (`lvs_sync_daemon`).
    pub vrrp: VrrpConfig,
    /// Everything accepted but ignored, in file order.
    pub warnings: Vec<Warning>,
}

/// Why a keepalived.conf could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeepalivedError {
    /// The main file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file has errors: every one found, in file order (warnings too, for context).
    #[error("{}", DiagList(errors))]
    Invalid {
        /// The errors.
        errors: Vec<Diagnostic>,
        /// The warnings found on the way.
        warnings: Vec<Warning>,
    },
    /// [`load_reporting`] printed the errors (and warnings); this is the summary line.
    #[error("{path}: {count} error{}", if *count == 1 { "" } else { "s" })]
    Reported {
        /// The file.
        path: String,
        /// How many errors were printed.
        count: usize,
    },
}

struct DiagList<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads a keepalived.conf and the files it includes.
pub fn load(path: impl AsRef<Path>) -> Result<KeepalivedConfig, KeepalivedError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeepalivedError::Read {
        path: shown.clone(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse_with(&text, &shown, dir, &mut syntax::FsIncluder)
}

/// Parses keepalived.conf text on its own; `name` only names it in messages, and `include`
/// lines are errors (there is no directory to resolve them in).
pub fn parse_str(text: &str, name: &str) -> Result<KeepalivedConfig, KeepalivedError> {
    parse_with(text, name, Path::new("."), &mut syntax::NoIncluder)
}

fn parse_with(
    text: &str,
    name: &str,
    dir: &Path,
    includer: &mut dyn syntax::Includer,
) -> Result<KeepalivedConfig, KeepalivedError> {
    let mut sources = Sources::default();
    let nodes = syntax::parse(text, name, dir, includer, &mut sources);
    let mut cx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
        warned_once: Vec::new(),
        scripts: ScriptPolicy::default(),
    };
    cx.scripts = scripts::policy(&nodes, &mut cx);
    let (services, mut health) = lvs::build(&nodes, &mut cx);
    let mut vrrp = vrrp::build(&nodes, &mut cx);
    // Scripts without a `user` of their own run as `script_user` (resolved when they start).
    let global = cx.scripts.user.clone();
    for (_, s) in &mut health.services {
        if s.script_user.is_none() {
            s.script_user = global.clone();
        }
        for (_, d) in &mut s.per_dest {
            for c in &mut d.checks {
                if let CheckKind::Misc { user: u @ None, .. } = &mut c.kind {
                    *u = global.clone();
                }
            }
        }
    }
    vrrp.script_user = global.clone();
    for s in &mut vrrp.scripts {
        if s.user.is_none() {
            s.user = global.clone();
        }
    }
    let diag = |(at, message): (Loc, String)| sources.diag(at, message);
    let mut errors: Vec<Diagnostic> = sources.errors.clone();
    errors.extend(cx.errors.into_iter().map(diag));
    let mut warnings: Vec<Warning> = sources.warnings.clone();
    warnings.extend(cx.warnings.into_iter().map(diag));
    // File order: by file index (first seen), line, column.
    let order = |d: &Diagnostic| {
        let f = sources.files.iter().position(|n| *n == d.file);
        (f, d.line, d.col)
    };
    errors.sort_by_key(order);
    warnings.sort_by_key(order);
    if errors.is_empty() {
        Ok(KeepalivedConfig {
            services,
            health,
            vrrp,
            warnings,
        })
    } else {
        Err(KeepalivedError::Invalid { errors, warnings })
    }
}

/// [`load`] for a program: prints the warnings (and errors) to stderr, one per line; the
/// error returned counts the errors.
pub fn load_reporting(path: &Path) -> Result<KeepalivedConfig, KeepalivedError> {
    match load(path) {
        Ok(conf) => {
            print_diagnostics(&conf.warnings, &[]);
            Ok(conf)
        }
        Err(KeepalivedError::Invalid { errors, warnings }) => {
            print_diagnostics(&warnings, &errors);
            Err(KeepalivedError::Reported {
                path: path.display().to_string(),
                count: errors.len(),
            })
        }
        Err(e) => Err(e),
    }
}

fn print_diagnostics(warnings: &[Warning], errors: &[Diagnostic]) {
    for w in warnings {
        eprintln!("{}:{}:{}: warning: {}", w.file, w.line, w.col, w.message);
    }
    for e in errors {
        eprintln!("{}:{}:{}: error: {}", e.file, e.line, e.col, e.message);
    }
}

/// `tunlb check-config FILE`: a `.toml` file goes through the TOML loader, anything else through
/// the keepalived parser. Prints the warnings (stderr), then the errors (stderr, and the result
/// is an error) or the table as `tunlb adm -L -n` would show it (stdout), followed by one
/// line per VRRP instance and one for connection sync ([`VrrpConfig::summary`]). Touches
/// nothing.
pub fn check_config(path: &Path) -> anyhow::Result<()> {
    let (set, vrrp) = if path.extension().is_some_and(|e| e == "toml") {
        let (settings, set) = config::load(path)?;
        (set, settings.vrrp)
    } else {
        let conf = load_reporting(path)?;
        (conf.services, conf.vrrp)
    };
    let fmt = ListFormat {
        numeric: true,
        ..ListFormat::default()
    };
    print!(
        "{}",
        format::list_table(&Listing::from_set(&set), &fmt, &PortNames::empty())
    );
    for line in vrrp.summary() {
        println!("{line}");
    }
    Ok(())
}

/// What the meaning pass found, with places (turned into [`Diagnostic`]s at the end).
pub struct Ctx {
    errors: Vec<(Loc, String)>,
    warnings: Vec<(Loc, String)>,
    warned_once: Vec<String>,
    /// `global_defs`' script settings, read first ([`scripts::policy`]).
    scripts: ScriptPolicy,
}

impl Ctx {
    /// An error at `at`.
    pub fn error(&mut self, at: Loc, message: String) {
        self.errors.push((at, message));
    }

    /// A warning at `at`.
    pub fn warn(&mut self, at: Loc, message: String) {
        self.warnings.push((at, message));
    }

    /// A warning given only the first time `key` is seen.
    pub fn warn_once(&mut self, key: &str, at: Loc, message: String) {
        if !self.warned_once.iter().any(|k| k == key) {
            self.warned_once.push(key.to_string());
            self.warn(at, message);
        }
    }

    /// The `i`th argument of `node` (0-based), or an error saying `what` was expected.
    pub fn arg<'n>(&mut self, node: &'n Node, i: usize, what: &str) -> Option<&'n Word> {
        let got = node.args.get(i);
        if got.is_none() {
            let at = node.args.last().map_or(node.name.at, |w| w.at);
            self.error(at, format!("{}: expected {what} after it", node.name.text));
        }
        got
    }

    /// Errors for arguments beyond the first `n` and for a block `node` should not have.
    pub fn at_most(&mut self, node: &Node, n: usize) {
        if let Some(extra) = node.args.get(n) {
            let hint = slash_hint(&extra.text, false);
            self.error(
                extra.at,
                format!(
                    "{}: unexpected '{}' (it takes {})",
                    node.name.text,
                    extra.text,
                    match n {
                        0 => "no argument".to_string(),
                        1 => "one argument".to_string(),
                        n => format!("{n} arguments"),
                    }
                ) + &hint,
            );
        }
        self.no_block(node);
    }

    /// Like [`Ctx::at_most`] but a block is allowed.
    pub fn at_most_args(&mut self, node: &Node, n: usize) {
        let stripped = Node {
            name: node.name.clone(),
            args: node.args.clone(),
            block: None,
        };
        self.at_most(&stripped, n);
    }

    /// An error for arguments after a block keyword that takes none (`url {`, `HTTP_GET {`).
    pub fn no_block_args(&mut self, node: &Node) {
        if let Some(extra) = node.args.first() {
            self.error(
                extra.at,
                format!(
                    "{}: unexpected '{}' (expected '{{' right after the keyword)",
                    node.name.text, extra.text
                ) + &slash_hint(&extra.text, false),
            );
        }
    }

    /// An error if `node` has a block.
    pub fn no_block(&mut self, node: &Node) {
        if let Some(b) = &node.block {
            self.error(b.open, format!("{}: takes no '{{' block", node.name.text));
        }
    }

    /// The block of `node`, or an error (keepalived: "Missing '{' at beginning of
    /// configuration block").
    pub fn block<'n>(&mut self, node: &'n Node) -> &'n [Node] {
        match &node.block {
            Some(b) => &b.children,
            None => {
                self.error(
                    node.name.at,
                    format!("{}: expected a '{{' block after it", node.name.text),
                );
                &[]
            }
        }
    }

    /// The error for a keyword not known in `context`.
    pub fn unknown(&mut self, node: &Node, context: &str) {
        let hint = slash_hint(&node.name.text, true);
        let extra = if hint.is_empty() {
            " (keepalived --config-test fails on it too: \"Unknown keyword\")".to_string()
        } else {
            hint
        };
        self.error(
            node.name.at,
            format!("unknown keyword '{}' in {context}", node.name.text) + &extra,
        );
    }

    /// An unsigned integer in `min..=max`.
    pub fn uint(&mut self, node: &Node, i: usize, min: u64, max: u64) -> Option<u64> {
        let w = self.arg(node, i, &format!("an integer from {min} to {max}"))?;
        match w.text.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.error(
                    w.at,
                    format!(
                        "{}: expected an integer from {min} to {max}, found '{}'",
                        node.name.text, w.text
                    ),
                );
                None
            }
        }
    }

    /// A time in seconds (fractions allowed, as keepalived's timers), at most `max` seconds.
    pub fn seconds(
        &mut self,
        node: &Node,
        i: usize,
        min: f64,
        max: f64,
    ) -> Option<std::time::Duration> {
        let w = self.arg(node, i, "a time in seconds")?;
        match w.text.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= min && v <= max && !w.text.starts_with(['+', '-']) => {
                Some(std::time::Duration::from_secs_f64(v))
            }
            _ => {
                self.error(
                    w.at,
                    format!(
                        "{}: expected a time in seconds from {min} to {max}, found '{}'",
                        node.name.text, w.text
                    ),
                );
                None
            }
        }
    }

    /// An IPv4 or IPv6 address (a VIP, a real server).
    pub fn ip(&mut self, node: &Node, i: usize) -> Option<std::net::IpAddr> {
        let w = self.arg(node, i, "an IPv4 or IPv6 address")?;
        match w.text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    w.at,
                    format!(
                        "{}: expected an IPv4 address like 192.0.2.1, found '{}' (or an IPv6 \
                         address like 2001:db8::1)",
                        node.name.text, w.text
                    ),
                );
                None
            }
        }
    }

    /// An IPv4 address.
    pub fn ipv4(&mut self, node: &Node, i: usize) -> Option<std::net::Ipv4Addr> {
        let w = self.arg(node, i, "an IPv4 address")?;
        match w.text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                let v6 = if w.text.contains(':') {
                    " (IPv6 is not supported by tunlb)"
                } else {
                    ""
                };
                self.error(
                    w.at,
                    format!(
                        "{}: expected an IPv4 address like 192.0.2.1, found '{}'{v6}",
                        node.name.text, w.text
                    ),
                );
                None
            }
        }
    }
}

/// The explanation for a word that looks like a `//` note, as a keyword or as an extra word.
fn slash_hint(word: &str, keyword: bool) -> String {
    if !word.starts_with("//") {
        return String::new();
    }
    let keepalived = if keyword {
        "keepalived --config-test fails on it too (\"Unknown keyword\") and the daemon skips the line"
    } else {
        "keepalived ignores extra words after most keywords, tunlb refuses them so a note \
         cannot hide a mistake"
    };
    format!(
        ": keepalived has no `//` comments, only `#` and `!` to the end of the line, so this note \
         is read as configuration ({keepalived}); write it after `#`"
    )
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vrrp_tests;

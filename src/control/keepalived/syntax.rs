//! keepalived's syntax, without meaning: words, `{ }` blocks, comments, quotes and `include`.
//!
//! What keepalived 2.x does (lib/parser.c), and so what this module does:
//!
//! - A line is cut at the first `!` or `#` outside double quotes (anywhere, not only at the start
//!   of a word); `\!` and `\#` stand for the characters themselves. `//` is *not* a comment: it
//!   is an ordinary word.
//! - A statement is one line: a keyword and its arguments. A `{` or `}` outside quotes also ends
//!   the statement before it and is a statement of its own, so `vrrp_instance VI_1{`,
//!   `url { path / }` and `HTTP_GET{` all work as they do in keepalived.
//! - Words are separated by whitespace; a word starting with `"` runs to the next `"` (quotes
//!   removed, `#`, `!` and braces inside are literal); a `"` inside a word ends the word.
//! - A line `include PATTERN` (or `includer`, ...) is replaced by the files the glob pattern
//!   matches, in sorted order, relative to the directory of the file that includes them.
//!
//! The result is a tree of [`Node`]s; a keyword followed by a `{` (on its line or a later one)
//! owns the block up to the matching `}`.

use std::path::{Path, PathBuf};

use super::Diagnostic;

/// Where a word starts: an index into [`Sources::files`], a line and a column (1-based, in
/// characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Loc {
    /// Index of the file in [`Sources::files`].
    pub file: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

/// A word of a statement, with its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The word, quotes removed.
    pub text: String,
    /// Where it starts.
    pub at: Loc,
}

/// A statement: a keyword, its arguments, and the block that follows it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The keyword.
    pub name: Word,
    /// The words after it on the same statement.
    pub args: Vec<Word>,
    /// The `{ ... }` block after it.
    pub block: Option<Block>,
}

/// A `{ ... }` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Where the `{` is.
    pub open: Loc,
    /// The statements inside.
    pub children: Vec<Node>,
}

/// The files read so far (the first is the main file) and the problems found in the syntax.
#[derive(Debug, Default)]
pub struct Sources {
    /// File names as shown in messages.
    pub files: Vec<String>,
    /// Syntax errors.
    pub errors: Vec<Diagnostic>,
    /// Syntax warnings.
    pub warnings: Vec<Diagnostic>,
}

impl Sources {
    /// A diagnostic at `at`.
    pub fn diag(&self, at: Loc, message: String) -> Diagnostic {
        Diagnostic {
            file: self.files.get(at.file).cloned().unwrap_or_default(),
            line: at.line,
            col: at.col,
            message,
        }
    }

    fn error(&mut self, at: Loc, message: String) {
        let d = self.diag(at, message);
        self.errors.push(d);
    }

    fn warn(&mut self, at: Loc, message: String) {
        let d = self.diag(at, message);
        self.warnings.push(d);
    }
}

/// Why an `include` could not be followed. `Display` is the end of the diagnostic
/// (`include FILE: <this>`).
#[derive(Debug, thiserror::Error)]
pub enum IncludeError {
    /// Text parsed without a file has nothing to include from ([`NoIncluder`]).
    #[error("include is not available when parsing text without a file")]
    NoFiles,
    /// [`NoIncluder`] asked for a file's text.
    #[error("include is not available")]
    NotAvailable,
    /// The file could not be read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
}

/// How `include` finds files: the filesystem, or nothing (text parsed on its own).
pub trait Includer {
    /// The files `pattern` matches, sorted, relative to `dir`; `Err` explains why none could
    /// be listed.
    fn expand(&mut self, dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, IncludeError>;
    /// The text of one file.
    fn read(&mut self, path: &Path) -> Result<String, IncludeError>;
}

/// Reads includes from the filesystem.
pub struct FsIncluder;

impl Includer for FsIncluder {
    fn expand(&mut self, dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, IncludeError> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            dir.join(pattern)
        };
        Ok(glob(&full))
    }

    fn read(&mut self, path: &Path) -> Result<String, IncludeError> {
        Ok(std::fs::read_to_string(path)?)
    }
}

/// Refuses every include (for text parsed without a file, e.g. by the fuzzer).
pub struct NoIncluder;

impl Includer for NoIncluder {
    fn expand(&mut self, _dir: &Path, _pattern: &str) -> Result<Vec<PathBuf>, IncludeError> {
        Err(IncludeError::NoFiles)
    }

    fn read(&mut self, _path: &Path) -> Result<String, IncludeError> {
        Err(IncludeError::NotAvailable)
    }
}

/// Deepest `include` nesting followed (keepalived has no limit but loops forever on a cycle).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Deepest `{` nesting accepted (keepalived's deepest real block is 4 levels).
const MAX_BLOCK_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokKind {
    Word(String),
    Open,
    Close,
    /// The end of a statement (end of line, or before/after a brace).
    End,
}

#[derive(Clone, Debug)]
struct Tok {
    kind: TokKind,
    at: Loc,
}

/// Parses `text` (named `name`, in directory `dir` for includes) into statements.
pub fn parse(
    text: &str,
    name: &str,
    dir: &Path,
    includer: &mut dyn Includer,
    sources: &mut Sources,
) -> Vec<Node> {
    let mut toks = Vec::new();
    let mut stack = vec![PathBuf::from(name)];
    lex_file(text, name, dir, includer, sources, &mut toks, &mut stack);
    let mut p = TreeParser {
        toks: &toks,
        pos: 0,
    };
    p.block(sources, 0, None)
}

#[allow(clippy::too_many_arguments)]
fn lex_file(
    text: &str,
    name: &str,
    dir: &Path,
    includer: &mut dyn Includer,
    sources: &mut Sources,
    toks: &mut Vec<Tok>,
    stack: &mut Vec<PathBuf>,
) {
    let file = sources.files.len();
    sources.files.push(name.to_string());
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let words = lex_line(line, file, line_no, sources, toks);
        if let Some((kind, pattern, at)) = words {
            include(&kind, &pattern, at, dir, includer, sources, toks, stack);
        }
    }
    toks.push(Tok {
        kind: TokKind::End,
        at: Loc {
            file,
            line: text.lines().count().max(1),
            col: 1,
        },
    });
}

#[allow(clippy::too_many_arguments)]
fn include(
    kind: &str,
    pattern: &str,
    at: Loc,
    dir: &Path,
    includer: &mut dyn Includer,
    sources: &mut Sources,
    toks: &mut Vec<Tok>,
    stack: &mut Vec<PathBuf>,
) {
    if pattern.is_empty() {
        sources.error(at, format!("{kind}: expected a file name or glob pattern"));
        return;
    }
    if stack.len() > MAX_INCLUDE_DEPTH {
        sources.error(
            at,
            format!("{kind} {pattern}: includes nested more than {MAX_INCLUDE_DEPTH} deep"),
        );
        return;
    }
    let paths = match includer.expand(dir, pattern) {
        Ok(p) => p,
        Err(e) => {
            sources.error(at, format!("{kind} {pattern}: {e}"));
            return;
        }
    };
    if paths.is_empty() {
        if kind == "include" {
            sources.warn(
                at,
                format!(
                    "include {pattern}: no file matches (keepalived skips this silently; \
                     `includer` makes it an error)"
                ),
            );
        } else {
            sources.error(at, format!("{kind} {pattern}: no file matches"));
        }
        return;
    }
    for path in paths {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if stack.contains(&key) {
            sources.error(
                at,
                format!(
                    "{kind} {pattern}: {} includes itself (directly or through other files)",
                    path.display()
                ),
            );
            continue;
        }
        match includer.read(&path) {
            Ok(text) => {
                let sub_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                stack.push(key);
                lex_file(
                    &text,
                    &path.display().to_string(),
                    &sub_dir,
                    includer,
                    sources,
                    toks,
                    stack,
                );
                stack.pop();
            }
            Err(e) => sources.error(at, format!("{kind} {}: {e}", path.display())),
        }
    }
}

/// Splits one line into tokens; returns `(keyword, pattern, place)` if it is an include.
fn lex_line(
    line: &str,
    file: usize,
    line_no: usize,
    sources: &mut Sources,
    toks: &mut Vec<Tok>,
) -> Option<(String, String, Loc)> {
    let chars: Vec<char> = line.chars().collect();
    let at = |i: usize| Loc {
        file,
        line: line_no,
        col: i + 1,
    };
    // keepalived recognises an include on the comment-stripped line, before braces.
    let first = chars.iter().position(|c| !c.is_whitespace());
    if let Some(start) = first {
        let rest: String = chars[start..].iter().collect();
        let stripped = strip_comment(&rest);
        let mut it = stripped.splitn(2, char::is_whitespace);
        let kw = it.next().unwrap_or("");
        if matches!(
            kw,
            "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
        ) {
            let pattern = it.next().unwrap_or("").trim().to_string();
            return Some((kw.to_string(), pattern, at(start)));
        }
    }

    let mut i = 0;
    let mut word = String::new();
    let mut word_start = 0;
    let flush = |word: &mut String, start: usize, toks: &mut Vec<Tok>| {
        if !word.is_empty() {
            toks.push(Tok {
                kind: TokKind::Word(std::mem::take(word)),
                at: at(start),
            });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '!' | '#' => break,
            '\\' if matches!(chars.get(i + 1), Some('!' | '#')) => {
                if word.is_empty() {
                    word_start = i;
                }
                word.push(chars[i + 1]);
                i += 2;
                continue;
            }
            '{' | '}' => {
                flush(&mut word, word_start, toks);
                toks.push(Tok {
                    kind: TokKind::End,
                    at: at(i),
                });
                toks.push(Tok {
                    kind: if c == '{' {
                        TokKind::Open
                    } else {
                        TokKind::Close
                    },
                    at: at(i),
                });
                toks.push(Tok {
                    kind: TokKind::End,
                    at: at(i),
                });
            }
            '"' => {
                flush(&mut word, word_start, toks);
                match chars[i + 1..].iter().position(|&q| q == '"') {
                    Some(len) => {
                        let text: String = chars[i + 1..i + 1 + len].iter().collect();
                        toks.push(Tok {
                            kind: TokKind::Word(text),
                            at: at(i),
                        });
                        i += len + 2;
                        continue;
                    }
                    None => {
                        sources.error(
                            at(i),
                            "unmatched '\"': expected a closing quote on the same line".to_string(),
                        );
                        break;
                    }
                }
            }
            c if c.is_whitespace() => flush(&mut word, word_start, toks),
            c => {
                if word.is_empty() {
                    word_start = i;
                }
                word.push(c);
            }
        }
        i += 1;
    }
    flush(&mut word, word_start, toks);
    toks.push(Tok {
        kind: TokKind::End,
        at: at(chars.len()),
    });
    None
}

/// The line up to its first `!` or `#` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '!' | '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

struct TreeParser<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl TreeParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn skip_ends(&mut self) {
        while matches!(
            self.peek(),
            Some(Tok {
                kind: TokKind::End,
                ..
            })
        ) {
            self.pos += 1;
        }
    }

    /// Statements up to the `}` closing a block opened at `open` (or the end at depth 0).
    fn block(&mut self, sources: &mut Sources, depth: usize, open: Option<Loc>) -> Vec<Node> {
        let mut nodes = Vec::new();
        loop {
            self.skip_ends();
            let Some(tok) = self.peek().cloned() else {
                if let Some(open) = open {
                    sources.error(
                        open,
                        "missing '}': this '{' is never closed (expected '}' before the end of \
                         the file)"
                            .to_string(),
                    );
                }
                return nodes;
            };
            self.pos += 1;
            match tok.kind {
                TokKind::End => {}
                TokKind::Close => {
                    if open.is_some() {
                        return nodes;
                    }
                    sources.error(
                        tok.at,
                        "unexpected '}': no block is open here (keepalived: \"Extra '}' found\")"
                            .to_string(),
                    );
                }
                TokKind::Open => {
                    sources.error(
                        tok.at,
                        "unexpected '{': expected a keyword before it".to_string(),
                    );
                    self.nested(sources, depth, tok.at);
                }
                TokKind::Word(text) => {
                    let name = Word { text, at: tok.at };
                    let mut args = Vec::new();
                    while let Some(Tok {
                        kind: TokKind::Word(w),
                        at,
                    }) = self.peek()
                    {
                        args.push(Word {
                            text: w.clone(),
                            at: *at,
                        });
                        self.pos += 1;
                    }
                    self.skip_ends();
                    let block = match self.peek() {
                        Some(Tok {
                            kind: TokKind::Open,
                            at,
                        }) => {
                            let at = *at;
                            self.pos += 1;
                            self.nested(sources, depth, at)
                                .map(|children| Block { open: at, children })
                        }
                        _ => None,
                    };
                    nodes.push(Node { name, args, block });
                }
            }
        }
    }

    /// The block opened at `at`; deeper than [`MAX_BLOCK_DEPTH`] it is skipped with an error.
    fn nested(&mut self, sources: &mut Sources, depth: usize, at: Loc) -> Option<Vec<Node>> {
        if depth + 1 < MAX_BLOCK_DEPTH {
            return Some(self.block(sources, depth + 1, Some(at)));
        }
        sources.error(
            at,
            format!("blocks nested more than {MAX_BLOCK_DEPTH} deep"),
        );
        let mut level = 1usize;
        while let Some(tok) = self.toks.get(self.pos) {
            self.pos += 1;
            match tok.kind {
                TokKind::Open => level += 1,
                TokKind::Close => {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// The files matching `pattern` (`*`, `?` and `[...]` in any component), sorted; a pattern
/// without wildcards matches itself if it exists.
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    use std::path::Component;
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in pattern.components() {
        let mut next = Vec::new();
        match comp {
            Component::Normal(part) => {
                let part = part.to_string_lossy();
                if part.contains(['*', '?', '[']) {
                    let pat: Vec<char> = part.chars().collect();
                    for base in &current {
                        let dir = if base.as_os_str().is_empty() {
                            Path::new(".")
                        } else {
                            base.as_path()
                        };
                        let Ok(entries) = std::fs::read_dir(dir) else {
                            continue;
                        };
                        let mut names: Vec<String> = entries
                            .filter_map(Result::ok)
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| !n.starts_with('.') || pat.first() == Some(&'.'))
                            .filter(|n| wildcard(&pat, &n.chars().collect::<Vec<_>>()))
                            .collect();
                        names.sort();
                        next.extend(names.into_iter().map(|n| base.join(n)));
                    }
                } else {
                    next = current.iter().map(|b| b.join(&*part)).collect();
                }
            }
            other => next = current.iter().map(|b| b.join(other.as_os_str())).collect(),
        }
        current = next;
    }
    current.retain(|p| p.is_file());
    current
}

/// Shell wildcard match: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`.
fn wildcard(pat: &[char], name: &[char]) -> bool {
    // Iterative matching with one backtrack point for the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pat.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some('?') => Some(p + 1),
            Some('[') => class(pat, p, name[n]),
            Some(&c) if c == name[n] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(np), _) => {
                p = np;
                n += 1;
            }
            (None, Some((sp, sn))) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `pat[start] == '['`; returns the index after it.
fn class(pat: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(pat.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pat.get(i)?;
        if lo == ']' && !first {
            break;
        }
        first = false;
        if pat.get(i + 1) == Some(&'-') && pat.get(i + 2).is_some_and(|&h| h != ']') {
            let hi = pat[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    (matched != negate).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> (Vec<Node>, Sources) {
        let mut s = Sources::default();
        let nodes = parse(text, "t.conf", Path::new("."), &mut NoIncluder, &mut s);
        (nodes, s)
    }

    fn show(nodes: &[Node]) -> String {
        let mut out = String::new();
        for n in nodes {
            out.push_str(&n.name.text);
            for a in &n.args {
                out.push(' ');
                out.push_str(&a.text);
            }
            if let Some(b) = &n.block {
                out.push_str(" {");
                out.push_str(&show(&b.children));
                out.push('}');
            }
            out.push(';');
        }
        out
    }

    #[test]
    fn braces_glued_to_words_are_their_own_tokens() {
        let (n, s) = tree(
            "vrrp_instance VI_1{\n state MASTER\n virtual_ipaddress{\n 10.0.0.1/24 dev eth0\n}}\n",
        );
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(
            show(&n),
            "vrrp_instance VI_1 {state MASTER;virtual_ipaddress {10.0.0.1/24 dev eth0;};};"
        );
        assert_eq!(n[0].block.as_ref().unwrap().open.col, 19);
    }

    #[test]
    fn a_brace_ends_the_statement_before_and_after_it() {
        let (n, _) = tree("url { path / } x 1\nbrace_on_next_line\n{\n a b\n}");
        assert_eq!(show(&n), "url {path /;};x 1;brace_on_next_line {a b;};");
    }

    #[test]
    fn comments_quotes_and_escapes() {
        let (n, s) = tree(
            "! a comment\n# another\nkey value # trailing\nk2 a#b\nnotify \"/bin/x # y { }\" z\nk3 \\#lit\nk4 // note\n",
        );
        assert!(s.errors.is_empty());
        assert_eq!(
            show(&n),
            "key value;k2 a;notify /bin/x # y { } z;k3 #lit;k4 // note;"
        );
        assert_eq!(n[2].args[0].at.col, 8);
    }

    #[test]
    fn unmatched_quote_and_braces_are_located() {
        let (_, s) = tree("a \"open\n}\nb {\n c 1\n");
        let got: Vec<(usize, usize)> = s.errors.iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(got, vec![(1, 3), (2, 1), (3, 3)], "{:?}", s.errors);
        assert!(s.errors[2].message.starts_with("missing '}'"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "a {".repeat(10_000);
        let (_, s) = tree(&text);
        assert!(!s.errors.is_empty());
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, n: &str| {
            wildcard(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("*.conf", "a.conf"));
        assert!(!m("*.conf", "a.conf.bak"));
        assert!(m("vs_?[0-9].conf", "vs_a7.conf"));
        assert!(!m("vs_[!a]*", "vs_a1"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("[", "["));
    }
}

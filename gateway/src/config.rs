//! Configuration: YAML text → raw structs ([`file`](mod@file)) → validated model ([`model`]).
//!
//! [`load_str`] is the only way to a [`model::Config`]. It collects *every* error it can find,
//! each with the field path and its `line:col`, so `gateway validate` and a failed reload print
//! the same list:
//!
//! ```text
//! gateway.yaml:14:15: routes[1].upstream: unknown upstream "paymnts"
//! ```
//!
//! Each section (every route, every upstream, each top-level block) is decoded on its own, so a
//! typo in one does not hide the errors in the others.
//!
//! ## Where things are
//! | file | holds |
//! |---|---|
//! | `config.rs` | the entry ([`load_file`], [`load_str`]), [`LoadError`] and [`FieldError`], the `Validator` core (`err`, `decode`) and the assembly of the top level |
//! | `config/yaml.rs` | [`yaml`]: YAML text → a value tree and the `line:col` of every field path |
//! | `config/file.rs` | [`file`](mod@file): the raw structs, the YAML as written (`deny_unknown_fields`) |
//! | `config/listeners.rs` | the checks of `listen`, `admin`, `tls`, `server`, `trusted_proxies`, `path_normalization` |
//! | `config/auth.rs` | the checks of `auth` |
//! | `config/upstreams.rs` | the checks of `upstreams` (targets, timeouts, retries, health checks, breakers) |
//! | `config/routes.rs` | the checks of `routes` (names, matches, targets, rewrites, route auth), [`parse_sticky`] |
//! | `config/rate_limits.rs` | the checks of `rate_limits` and of each route's `rate_limit` list |
//! | `config/observability.rs` | the checks of `observability` |
//! | `config/problem.rs` | [`Problem`]: what a check found wrong, one variant per kind of mistake |
//! | `config/defaults.rs` | [`defaults`]: every default, i.e. what a left-out key means |
//! | `config/duration.rs` | [`duration`]: durations as written (`250ms`, `1m30s`) |
//! | `config/model.rs` | [`model`]: the validated runtime model the proxy runs on |
//! | `config/fuzz.rs` | property tests (`fuzz_*`) of the whole loader, and issue 16's findings |
//!
//! Each section's checks are an `impl Validator` block in its own file, with that section's unit
//! tests at its end. A check records a [`FieldError`] (the field path and a [`Problem`]) and goes
//! on, so one run finds every problem; a section with problems yields no model.

mod auth;
mod cohorts;
pub mod defaults;
pub mod duration;
pub mod file;
#[cfg(test)]
mod fuzz;
mod listeners;
pub mod model;
mod observability;
pub mod problem;
mod rate_limits;
mod routes;
mod shadow;
mod upstreams;
pub mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use model::Config;
pub use problem::Problem;
pub use routes::parse_sticky;
use yaml::{Pos, Positions, join};

/// One problem in a config file: where, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub pos: Pos,
    /// `routes[2].upstream`; empty for file-level problems.
    pub path: String,
    /// What is wrong; its `Display` is the message after the path.
    pub reason: Problem,
}

/// `path: reason`, or only the reason for a file-level problem.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in one file. `Display` prints one `file:line:col: path: reason` per line.
#[derive(Debug)]
pub struct LoadError {
    pub file: String,
    pub errors: Vec<FieldError>,
}

impl LoadError {
    /// A problem with the file as a whole (unreadable, not YAML).
    fn whole_file(file: &str, pos: Pos, reason: Problem) -> Self {
        LoadError {
            file: file.to_string(),
            errors: vec![FieldError {
                pos,
                path: String::new(),
                reason,
            }],
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {e}", self.file, e.pos.line, e.pos.col)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// A validated config with the text it came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    pub source: String,
    /// `sha256:` + hex of the file's bytes.
    pub hash: String,
}

/// What `run` needs of the machine beyond the file itself. Implemented above `config` (by
/// `state::ThisMachine`, with the very code `run` uses), so that `config` stays plain data and
/// checks, and `gateway validate` and `run` agree by construction.
pub trait Host {
    /// The address `target` (`host:port`, already checked as text) resolves to, or why it
    /// does not. The load keeps it ([`Config::addresses`]), so the runtime built from the
    /// config does not look the name up again.
    fn resolve(&self, target: &str) -> Result<SocketAddr, String>;
    /// `Err`: why the access-log file cannot be opened for appending.
    fn open_access_log(&self, path: &Path) -> Result<(), String>;
}

/// The most problems one load lists; the rest are counted ([`Problem::MoreProblems`]). A
/// file with thousands of broken entries must not make thousands of lines (and their memory).
pub const MAX_PROBLEMS: usize = 100;

/// Reads (at most [`yaml::MAX_FILE_BYTES`]) and validates a config file, the file alone: for
/// `gateway explain` and `gateway validate --offline`.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    load_file_on(path, None)
}

/// [`load_file`], and with a [`Host`], also what the file needs of that machine (its problems
/// are reported with the file's, at their field).
pub fn load_file_on(path: &Path, host: Option<&dyn Host>) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let source = read_bounded(path)
        .map_err(|reason| LoadError::whole_file(&name, Pos { line: 1, col: 1 }, reason))?;
    let config = load(&name, &source, host)?;
    let hash = source_hash(&source);
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        source,
        hash,
    })
}

/// The file's text; never reads more than one byte past [`yaml::MAX_FILE_BYTES`].
/// The hash a loaded file is known by (`Loaded::hash`, `/admin/config`).
fn source_hash(source: &str) -> String {
    format!("sha256:{:x}", Sha256::digest(source.as_bytes()))
}

/// The hash of the file at `path` as it is now (`None`: unreadable or too large), to compare
/// with a loaded file's.
pub fn file_hash(path: &Path) -> Option<String> {
    read_bounded(path).ok().map(|s| source_hash(&s))
}

fn read_bounded(path: &Path) -> Result<String, Problem> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| Problem::Unreadable(e.to_string());
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(yaml::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > yaml::MAX_FILE_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(Problem::FileTooLarge {
            bytes: usize::try_from(size).unwrap_or(usize::MAX),
            max: yaml::MAX_FILE_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|_| Problem::Unreadable("the file is not UTF-8 text".into()))
}

/// Validates config text, the text alone; `file` is only used in error messages.
pub fn load_str(file: &str, source: &str) -> Result<Config, LoadError> {
    load(file, source, None)
}

fn load(file: &str, source: &str, host: Option<&dyn Host>) -> Result<Config, LoadError> {
    let (value, positions) =
        yaml::parse(source).map_err(|e| LoadError::whole_file(file, e.pos, e.reason))?;
    let mut v = Validator {
        positions: &positions,
        host,
        errors: Vec::new(),
        dropped: None,
        resolved: HashMap::new(),
    };
    let config = v.config(value);
    match config {
        Some(config) if v.count() == 0 => Ok(config),
        _ => {
            let mut errors = v.errors;
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            errors.dedup();
            if let Some((pos, more)) = v.dropped {
                errors.push(FieldError {
                    pos,
                    path: String::new(),
                    reason: Problem::MoreProblems(more),
                });
            }
            Err(LoadError {
                file: file.to_string(),
                errors,
            })
        }
    }
}

/// Collects the problems of one file. The sections' checks are `impl Validator` blocks in
/// their own files; each returns `None` where its section is invalid (the problems are
/// recorded here, not returned).
struct Validator<'a> {
    positions: &'a Positions,
    /// The machine to check the file against, if any.
    host: Option<&'a dyn Host>,
    /// At most [`MAX_PROBLEMS`].
    errors: Vec<FieldError>,
    /// Past [`MAX_PROBLEMS`]: where the first one left out is, and how many were.
    dropped: Option<(Pos, usize)>,
    /// Target names looked up so far (each once per load), with the lookup's outcome.
    resolved: HashMap<String, Result<SocketAddr, String>>,
}

impl Validator<'_> {
    fn err(&mut self, path: &str, reason: Problem) {
        let pos = self.positions.of(path);
        self.push(FieldError {
            pos,
            path: path.to_string(),
            reason,
        });
    }

    fn push(&mut self, e: FieldError) {
        if self.errors.len() < MAX_PROBLEMS {
            self.errors.push(e);
        } else {
            let (_, more) = self.dropped.get_or_insert((e.pos, 0));
            *more += 1;
        }
    }

    /// Whether `got` is in its documented `range`; records [`Problem::OutOfRange`] at `path`
    /// when it is not. Every number and duration of the file goes through here.
    fn within<T>(&mut self, path: &str, got: T, range: defaults::Range<T>) -> bool
    where
        T: PartialOrd + Copy + Into<problem::Quantity>,
    {
        if range.contains(got) {
            return true;
        }
        self.err(
            path,
            Problem::OutOfRange {
                min: range.min.into(),
                max: range.max.into(),
                got: got.into(),
            },
        );
        false
    }

    /// Problems found so far, listed or not: a section compares it before and after its checks.
    fn count(&self) -> usize {
        self.errors.len() + self.dropped.map_or(0, |(_, n)| n)
    }

    /// Deserialises one section; on failure records the error at the innermost path serde
    /// reached and returns `None`.
    fn decode<T: DeserializeOwned>(&mut self, value: serde_json::Value, path: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let mut full = match inner.as_str() {
                    "." | "" => path.to_string(),
                    inner => join(path, inner),
                };
                let message = e.into_inner().to_string();
                // `unknown field `x``: point at the key itself.
                let pos = match unknown_field(&message) {
                    Some(field) => {
                        if !full.ends_with(field) {
                            full = join(&full, field);
                        }
                        self.positions.key_of(&full)
                    }
                    None => self.positions.of(&full),
                };
                self.push(FieldError {
                    pos,
                    path: full,
                    reason: Problem::Decode(tidy(&message)),
                });
                None
            }
        }
    }

    /// The top level, section by section, in an order set by what each needs of another:
    /// rate limits need the auth block's identity headers; routes need the upstreams and
    /// whether there is an `auth:` block; the routes' rate-limit lists need the policies; the
    /// auth block then keeps the claims that routes and policies read by name.
    fn config(&mut self, value: serde_json::Value) -> Option<Config> {
        if !value.is_object() {
            self.err("", Problem::NotAMapping(file::kind(&value)));
            return None;
        }
        let top: file::Top = self.decode(value, "")?;

        let listen = self.listen(top.listen);
        let admin_listen = self.admin(top.admin);
        let tls = top.tls.and_then(|v| self.tls(v));
        let server = self.server(top.server);
        let trusted_proxies = self.trusted_proxies(top.trusted_proxies);
        let encoded_slashes = self.path_normalization(top.path_normalization);

        // Routes check against the block's presence: a broken block is reported once, not
        // again by every route that uses it.
        let auth_declared = top.auth.is_some();
        let mut auth = top.auth.and_then(|v| self.auth(v));
        let declared_policies = rate_limits::declared_policies(top.rate_limits.as_ref());
        let rate_limits = top
            .rate_limits
            .and_then(|v| self.rate_limits(v, auth.as_ref()));
        let upstreams = self.upstreams(top.upstreams.unwrap_or_default());
        let cohorts = self.cohorts(top.cohorts.unwrap_or_default());
        let observability = self.observability(top.observability);
        let routes = self.routes(
            top.routes.unwrap_or_default(),
            &upstreams,
            &cohorts,
            auth_declared,
        );

        self.route_rate_limits(&routes, rate_limits.as_ref(), declared_policies.as_deref());
        if let Some(a) = auth.as_mut() {
            a.kept_claims = auth::claims_read_by(&routes, rate_limits.as_ref());
        }

        Some(Config {
            listen: listen?,
            tls,
            admin_listen: admin_listen?,
            admin_token: None,
            migration_state: Default::default(),
            server: server?,
            trusted_proxies: trusted_proxies?,
            encoded_slashes,
            auth,
            rate_limits,
            upstreams: upstreams.valid,
            cohorts: cohorts.valid,
            routes,
            observability: observability?,
            addresses: self
                .resolved
                .iter()
                .filter_map(|(name, r)| Some((name.clone(), *r.as_ref().ok()?)))
                .collect(),
        })
    }
}

/// Upstream, route and policy names: letters, digits, `-` and `_`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The names a "did you mean" message lists: the first [`MAX_KNOWN_NAMES`] and `...` (a file
/// with thousands of names must not copy them all into every error).
fn some_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut names = names.into_iter();
    let mut out: Vec<String> = names.by_ref().take(MAX_KNOWN_NAMES).cloned().collect();
    if names.next().is_some() {
        out.push("...".to_string());
    }
    out
}

/// See [`some_names`].
const MAX_KNOWN_NAMES: usize = 20;

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// serde's messages, minus the noise that means nothing to a YAML author.
fn tidy(message: &str) -> String {
    message
        .replace("invalid type: map", "invalid type: mapping")
        .replace("invalid type: sequence", "invalid type: list")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One upstream `a` and one route `r` to it: append a block to test it.
    pub(super) const MINIMAL: &str = "upstreams:\n  a: { targets: [127.0.0.1:9] }\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: a }\n";

    /// The model of a file that must be valid.
    pub(super) fn load(src: &str) -> Config {
        load_str("gw.yaml", src).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The text `gateway validate` prints for a file that must be invalid (as `gw.yaml`).
    pub(super) fn errors(src: &str) -> String {
        load_str("gw.yaml", src).unwrap_err().to_string()
    }

    /// The problems of a file that must be invalid, as `(path, problem)` in file order.
    pub(super) fn problems(src: &str) -> Vec<(String, Problem)> {
        let e = load_str("gw.yaml", src).unwrap_err();
        e.errors.into_iter().map(|e| (e.path, e.reason)).collect()
    }

    /// The problem of `got` outside `range`.
    pub(super) fn out_of_range<T: Into<problem::Quantity>>(
        range: defaults::Range<T>,
        got: T,
    ) -> Problem {
        Problem::OutOfRange {
            min: range.min.into(),
            max: range.max.into(),
            got: got.into(),
        }
    }

    /// `[(path, problem)]` in the shape [`problems`] returns.
    pub(super) fn at<const N: usize>(expected: [(&str, Problem); N]) -> Vec<(String, Problem)> {
        expected
            .into_iter()
            .map(|(path, p)| (path.to_string(), p))
            .collect()
    }

    #[test]
    fn the_minimal_file_is_valid() {
        let c = load(MINIMAL);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.upstreams.len(), 1);
    }

    #[test]
    fn every_line_is_file_line_col_path_reason() {
        let e = LoadError {
            file: "gw.yaml".into(),
            errors: vec![
                FieldError {
                    pos: Pos { line: 1, col: 1 },
                    path: String::new(),
                    reason: Problem::NoRoutes,
                },
                FieldError {
                    pos: Pos { line: 3, col: 7 },
                    path: "server.threads".into(),
                    reason: out_of_range(defaults::SERVER_THREADS_RANGE, 0),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "gw.yaml:1:1: no routes: add at least one route (see config/gateway.yaml)\n\
             gw.yaml:3:7: server.threads: must be between 1 and 1024, got 0"
        );
    }

    #[test]
    fn the_file_must_be_a_yaml_mapping() {
        assert_eq!(
            errors("- a\n- b\n"),
            "gw.yaml:1:1: expected a mapping at the top level, found a list"
        );
        assert!(
            errors("a: [1\n").starts_with("gw.yaml:"),
            "syntax errors have a position"
        );
        assert_eq!(
            problems("a: [1\n").len(),
            1,
            "a syntax error is the only error"
        );
        assert!(matches!(problems("a: [1\n")[0].1, Problem::Yaml(_)));
    }

    #[test]
    fn an_unreadable_file_is_one_error_at_its_top() {
        let missing = std::env::temp_dir().join("gateway-config-test-no-such.yaml");
        let e = load_file(&missing).unwrap_err();
        assert_eq!(e.errors.len(), 1);
        assert_eq!(e.errors[0].pos, Pos { line: 1, col: 1 });
        assert!(matches!(e.errors[0].reason, Problem::Unreadable(_)));
        assert!(
            e.to_string().starts_with(&format!(
                "{}:1:1: cannot read the file: ",
                missing.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_loaded_file_carries_its_hash() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), MINIMAL).unwrap();
        let loaded = load_file(f.path()).unwrap();
        assert_eq!(loaded.source, MINIMAL);
        assert!(loaded.hash.starts_with("sha256:"));
        assert_eq!(loaded.hash.len(), "sha256:".len() + 64);
    }

    #[test]
    fn unknown_keys_point_at_the_key_and_types_at_the_value() {
        let src = format!("{MINIMAL}lisen: 1\n");
        let e = errors(&src);
        assert!(
            e.starts_with("gw.yaml:5:1: lisen: unknown field `lisen`, expected one of"),
            "{e}"
        );
        let src = "upstreams:\n  a: { targets: [127.0.0.1:9] }\nroutes: { r: 1 }\n";
        assert_eq!(
            errors(src),
            "gw.yaml:3:9: routes: invalid type: mapping, expected a sequence"
        );
    }

    #[test]
    fn a_file_without_routes_says_so() {
        assert_eq!(
            problems("upstreams:\n  a: { targets: [127.0.0.1:9] }\n"),
            at([("routes", Problem::NoRoutes)])
        );
    }
}

//! Settings: the YAML file mirrored by [`RawConfig`] (unknown keys are errors), command-line /
//! environment overrides in [`Overrides`], merged and validated into [`Settings`] in named steps.
//!
//! Precedence: flags > environment variables > file > defaults. clap resolves flag-over-env;
//! [`Settings::resolve`] applies the result over the file and the defaults. Validation returns
//! a [`ConfigError`] that names the field, never panics.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use service_kit::telemetry::OtlpSettings;

/// Path of the shipped config, used when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/auth-service.yaml";

/// The YAML file, field for field. Everything is optional: missing means "default".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub database_max_connections: Option<u32>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub access_ttl: Option<String>,
    pub refresh_ttl: Option<String>,
    pub signing_alg: Option<String>,
    pub jwks_max_age: Option<String>,
    pub key_reload_interval: Option<String>,
    pub scope: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub password_hash: Option<RawPasswordHash>,
    pub login_throttle: Option<RawThrottle>,
    pub otlp: Option<RawOtlp>,
}

/// `otlp: { endpoint, protocol, sample_ratio }`: span export (off when absent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    pub endpoint: String,
    pub protocol: Option<String>,
    pub sample_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPasswordHash {
    pub memory_kib: Option<u32>,
    pub iterations: Option<u32>,
    pub parallelism: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    pub free_failures: Option<u32>,
    pub base_delay: Option<String>,
    pub max_delay: Option<String>,
    pub ip_max_failures: Option<u32>,
    pub ip_window: Option<String>,
    pub max_entries: Option<usize>,
}

/// Values given on the command line or in the environment (clap merges the two).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub access_ttl: Option<String>,
    pub refresh_ttl: Option<String>,
    pub signing_alg: Option<String>,
    pub jwks_max_age: Option<String>,
    pub key_reload_interval: Option<String>,
}

/// Signing algorithms the service can issue tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Rs256,
    Es256,
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

    /// The JOSE name (`alg` header value).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }

    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlg::Rs256 => jsonwebtoken::Algorithm::RS256,
            SigningAlg::Es256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigningAlg::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unsupported signing algorithm {s:?} (expected RS256, ES256 or EdDSA)")
            })
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordHashSettings {
    /// OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        PasswordHashSettings {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Login throttling knobs (`login_throttle` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures per (account, client IP) allowed before a lockout starts.
    pub free_failures: u32,
    /// Lockout after the first failure beyond `free_failures`; doubles with each further one.
    pub base_delay: Duration,
    /// Cap on one lockout; also how long an idle failure record is remembered.
    pub max_delay: Duration,
    /// Failed logins from one client IP (any account) per `ip_window` before that IP gets 429.
    pub ip_max_failures: u32,
    pub ip_window: Duration,
    /// Bound on each in-memory table (per account+IP, per IP).
    pub max_entries: usize,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            ip_max_failures: 100,
            ip_window: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

/// The validated runtime settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub database_max_connections: u32,
    /// `iss` of every token; also the base of the URLs in the discovery document.
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Algorithm of newly generated signing keys.
    pub signing_alg: SigningAlg,
    /// `Cache-Control: max-age` of the JWKS, and part of the overlap window.
    pub jwks_max_age: Duration,
    /// How often a running server reloads the signing keys from the database.
    pub key_reload_interval: Duration,
    /// `scope` claim of access tokens (space-separated).
    pub scope: String,
    pub trusted_proxies: Vec<IpNet>,
    pub password_hash: PasswordHashSettings,
    pub login_throttle: ThrottleSettings,
    /// Span export; `None`: off. The `OTEL_EXPORTER_OTLP_*` environment variables override
    /// the file.
    pub otlp: Option<OtlpSettings>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8001";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/auth.db";

impl Settings {
    /// Defaults only (what an empty file gives).
    pub fn defaults() -> Settings {
        Settings::resolve(RawConfig::default(), Overrides::default())
            .expect("the built-in defaults are valid")
    }

    /// Loads the file (if any) and applies the overrides.
    ///
    /// `path`: an explicit `--config`; when `None`, [`DEFAULT_CONFIG_PATH`] is read if it exists.
    pub fn load(path: Option<&Path>, overrides: Overrides) -> Result<Settings, ConfigError> {
        let raw = match path {
            Some(p) => RawConfig::from_file(p)?,
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                RawConfig::from_file(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => RawConfig::default(),
        };
        let mut settings = Settings::resolve(raw, overrides)?;
        // The standard OpenTelemetry variables win over the file, like the AUTH_* ones.
        if let Some(otlp) = OtlpSettings::from_env().map_err(|e| ConfigError::field("otlp", e))? {
            settings.otlp = Some(otlp);
        }
        Ok(settings)
    }

    /// Merges overrides over the raw file and validates every field.
    pub fn resolve(raw: RawConfig, o: Overrides) -> Result<Settings, ConfigError> {
        let listen_s = o
            .listen
            .or(raw.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_s
            .parse()
            .map_err(|e| ConfigError::field("listen", format!("{listen_s:?}: {e}")))?;

        let database_url = o
            .database_url
            .or(raw.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::field(
                "database_url",
                "expected a sqlite:// or postgres:// URL".to_string(),
            ));
        }
        let database_max_connections = raw.database_max_connections.unwrap_or(10);
        if database_max_connections == 0 {
            return Err(ConfigError::field(
                "database_max_connections",
                "must be at least 1".into(),
            ));
        }

        let issuer = match o.issuer.or(raw.issuer) {
            Some(i) => i,
            None => default_issuer(listen),
        };
        let issuer = issuer.trim_end_matches('/').to_string();
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
            return Err(ConfigError::field(
                "issuer",
                format!("{issuer:?}: must be an http(s) URL"),
            ));
        }

        let audience = o
            .audience
            .or(raw.audience)
            .unwrap_or_else(|| "api".to_string());
        if audience.trim().is_empty() {
            return Err(ConfigError::field("audience", "must not be empty".into()));
        }

        let access_ttl = duration("access_ttl", o.access_ttl.or(raw.access_ttl), "15m")?;
        let refresh_ttl = duration("refresh_ttl", o.refresh_ttl.or(raw.refresh_ttl), "30d")?;
        let jwks_max_age = duration("jwks_max_age", o.jwks_max_age.or(raw.jwks_max_age), "300s")?;
        let key_reload_interval = duration(
            "key_reload_interval",
            o.key_reload_interval.or(raw.key_reload_interval),
            "5s",
        )?;
        for (name, d) in [
            ("access_ttl", access_ttl),
            ("refresh_ttl", refresh_ttl),
            ("key_reload_interval", key_reload_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::field(name, "must be greater than zero".into()));
            }
        }
        if access_ttl < Duration::from_secs(1) {
            return Err(ConfigError::field(
                "access_ttl",
                "must be at least 1s".into(),
            ));
        }

        let signing_alg = match o.signing_alg.or(raw.signing_alg) {
            Some(s) => s
                .parse()
                .map_err(|e| ConfigError::field("signing_alg", e))?,
            None => SigningAlg::Rs256,
        };

        let scope = raw.scope.unwrap_or_else(|| "api".to_string());

        let trusted_proxies = match raw.trusted_proxies {
            None => vec![
                IpNet::from_str("127.0.0.1/32").expect("valid"),
                IpNet::from_str("::1/128").expect("valid"),
            ],
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    parse_cidr(s)
                        .map_err(|e| ConfigError::field(&format!("trusted_proxies[{i}]"), e))
                })
                .collect::<Result<_, _>>()?,
        };

        let ph = raw.password_hash.unwrap_or_default();
        let password_hash = PasswordHashSettings {
            memory_kib: ph
                .memory_kib
                .unwrap_or(PasswordHashSettings::default().memory_kib),
            iterations: ph
                .iterations
                .unwrap_or(PasswordHashSettings::default().iterations),
            parallelism: ph
                .parallelism
                .unwrap_or(PasswordHashSettings::default().parallelism),
        };
        if password_hash.parallelism == 0 || password_hash.parallelism > 16 {
            return Err(ConfigError::field(
                "password_hash.parallelism",
                "must be 1..=16".into(),
            ));
        }
        if password_hash.memory_kib < 8 * password_hash.parallelism {
            return Err(ConfigError::field(
                "password_hash.memory_kib",
                "must be at least 8 × parallelism".into(),
            ));
        }
        if password_hash.iterations == 0 {
            return Err(ConfigError::field(
                "password_hash.iterations",
                "must be at least 1".into(),
            ));
        }

        let otlp = match raw.otlp {
            None => None,
            Some(o) => Some(
                OtlpSettings::new(
                    &o.endpoint,
                    o.protocol.as_deref().unwrap_or("grpc"),
                    o.sample_ratio.unwrap_or(1.0),
                )
                .map_err(|e| ConfigError::field("otlp", e))?,
            ),
        };

        let t = raw.login_throttle.unwrap_or_default();
        let d = ThrottleSettings::default();
        let login_throttle = ThrottleSettings {
            free_failures: t.free_failures.unwrap_or(d.free_failures),
            base_delay: duration("login_throttle.base_delay", t.base_delay, "1s")?,
            max_delay: duration("login_throttle.max_delay", t.max_delay, "15m")?,
            ip_max_failures: t.ip_max_failures.unwrap_or(d.ip_max_failures),
            ip_window: duration("login_throttle.ip_window", t.ip_window, "15m")?,
            max_entries: t.max_entries.unwrap_or(d.max_entries),
        };
        if login_throttle.max_entries == 0 {
            return Err(ConfigError::field(
                "login_throttle.max_entries",
                "must be at least 1".into(),
            ));
        }
        if login_throttle.base_delay > login_throttle.max_delay {
            return Err(ConfigError::field(
                "login_throttle.base_delay",
                "must not exceed login_throttle.max_delay".into(),
            ));
        }

        Ok(Settings {
            listen,
            database_url,
            database_max_connections,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
            signing_alg,
            jwks_max_age,
            key_reload_interval,
            scope,
            trusted_proxies,
            password_hash,
            login_throttle,
            otlp,
        })
    }

    /// How long a retired key stays in the JWKS: a token signed just before the rotation is
    /// valid for `access_ttl`, and a verifier may hold a JWKS without the new key for
    /// `jwks_max_age`; the old key must outlive both.
    pub fn key_overlap(&self) -> Duration {
        self.access_ttl + self.jwks_max_age
    }
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        RawConfig::from_yaml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses YAML text; an empty document is an empty config.
    pub fn from_yaml(text: &str) -> Result<RawConfig, String> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(RawConfig::default());
        }
        serde_saphyr::from_str::<RawConfig>(text).map_err(|e| e.to_string())
    }
}

fn default_issuer(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(host, listen.port()))
}

fn duration(field: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let s = value.unwrap_or_else(|| default.to_string());
    humantime::parse_duration(s.trim()).map_err(|e| {
        ConfigError::field(
            field,
            format!("invalid duration {s:?}: {e} (e.g. 250ms, 15m, 30d)"),
        )
    })
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
}

/// A configuration problem, naming the file or the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl ConfigError {
    fn field(field: &str, message: String) -> ConfigError {
        ConfigError::Field {
            field: field.to_string(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let s = Settings::defaults();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8001");
        assert_eq!(s.database_url, "sqlite://data/auth.db");
        assert_eq!(s.issuer, "http://127.0.0.1:8001");
        assert_eq!(s.audience, "api");
        assert_eq!(s.access_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(s.signing_alg, SigningAlg::Rs256);
        assert_eq!(s.jwks_max_age, Duration::from_secs(300));
        assert_eq!(s.key_reload_interval, Duration::from_secs(5));
        assert_eq!(s.password_hash, PasswordHashSettings::default());
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.key_overlap(), Duration::from_secs(1200));
    }

    #[test]
    fn shipped_config_file_is_valid_and_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/auth-service.yaml");
        let raw = RawConfig::from_file(&path).unwrap();
        let s = Settings::resolve(raw, Overrides::default()).unwrap();
        let d = Settings::defaults();
        assert_eq!(s.listen, d.listen);
        assert_eq!(s.database_url, d.database_url);
        assert_eq!(s.issuer, d.issuer);
        assert_eq!(s.audience, d.audience);
        assert_eq!(s.access_ttl, d.access_ttl);
        assert_eq!(s.refresh_ttl, d.refresh_ttl);
        assert_eq!(s.signing_alg, d.signing_alg);
        assert_eq!(s.jwks_max_age, d.jwks_max_age);
        assert_eq!(s.key_reload_interval, d.key_reload_interval);
        assert_eq!(s.trusted_proxies, d.trusted_proxies);
        assert_eq!(s.password_hash, d.password_hash);
        assert_eq!(s.login_throttle, d.login_throttle);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let raw = RawConfig::from_yaml("listen: 127.0.0.1:9000\naccess_ttl: 5m\naudience: file\n")
            .unwrap();
        let o = Overrides {
            access_ttl: Some("1m".into()),
            audience: Some("flag".into()),
            ..Overrides::default()
        };
        let s = Settings::resolve(raw, o).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(
            s.issuer, "http://127.0.0.1:9000",
            "issuer defaults to the listen address"
        );
        assert_eq!(s.access_ttl, Duration::from_secs(60));
        assert_eq!(s.audience, "flag");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = RawConfig::from_yaml("acess_ttl: 5m\n").unwrap_err();
        assert!(err.contains("acess_ttl"), "{err}");
        let err = RawConfig::from_yaml("password_hash: { memory: 5 }\n").unwrap_err();
        assert!(err.contains("memory"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            ("access_ttl: 15x\n", "access_ttl: invalid duration \"15x\""),
            ("listen: nowhere\n", "listen: \"nowhere\""),
            (
                "signing_alg: HS256\n",
                "signing_alg: unsupported signing algorithm \"HS256\"",
            ),
            (
                "database_url: mysql://x\n",
                "database_url: expected a sqlite:// or postgres:// URL",
            ),
            (
                "trusted_proxies: [10.0.0.0/8, bogus]\n",
                "trusted_proxies[1]: \"bogus\"",
            ),
            (
                "password_hash: { memory_kib: 4 }\n",
                "password_hash.memory_kib: must be at least",
            ),
            (
                "login_throttle: { base_delay: 1h, max_delay: 1m }\n",
                "login_throttle.base_delay",
            ),
            (
                "issuer: ftp://x\n",
                "issuer: \"ftp://x\": must be an http(s) URL",
            ),
        ];
        for (yaml, want) in cases {
            let raw = RawConfig::from_yaml(yaml).unwrap();
            let err = Settings::resolve(raw, Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(want),
                "{yaml:?}: got {err:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn signing_alg_parses_case_insensitively() {
        assert_eq!("rs256".parse::<SigningAlg>().unwrap(), SigningAlg::Rs256);
        assert_eq!("ES256".parse::<SigningAlg>().unwrap(), SigningAlg::Es256);
        assert_eq!("eddsa".parse::<SigningAlg>().unwrap(), SigningAlg::EdDsa);
    }
}

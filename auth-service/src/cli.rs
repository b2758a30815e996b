//! The command line: `auth-service [OPTIONS] <serve | keys rotate | keys list |
//! users grant-role EMAIL ROLE | users revoke-role EMAIL ROLE>`.
//!
//! Every option is global (it may stand before or after the subcommand) and has an
//! environment variable; every subcommand reads the same settings, so `keys rotate` and
//! `users grant-role` act on the database a running server uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use service_kit::serve::ServeError;
use service_kit::telemetry;

use crate::config::{ConfigError, Overrides, Settings};
use crate::db::{Db, DbError};
use crate::keys::{self, KeyError, KeyStatus};
use crate::state::{AppState, StartError};
use crate::users::{self, RoleError};

#[derive(Debug, Parser)]
#[command(
    name = "auth-service",
    version,
    about = "Accounts, JWTs, JWKS and key rotation"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings that override the config file (flags win over environment variables).
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// YAML config file [default: config/auth-service.yaml when it exists]
    #[arg(long, global = true, env = "AUTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8001]
    #[arg(long, global = true, env = "AUTH_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// sqlite://PATH (created if missing) or postgres://… [default: sqlite://data/auth.db]
    #[arg(long, global = true, env = "AUTH_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// `iss` of issued tokens and base of the discovery URLs (default: `http://` and the listen
    /// address; the help text below says so in clap's words, which rustdoc would read as HTML).
    #[arg(
        long,
        global = true,
        env = "AUTH_ISSUER",
        value_name = "URL",
        help = "`iss` of issued tokens and base of the discovery URLs [default: http://<listen>]"
    )]
    pub issuer: Option<String>,
    /// `aud` of issued tokens [default: api]
    #[arg(long, global = true, env = "AUTH_AUDIENCE")]
    pub audience: Option<String>,
    /// Access-token lifetime, e.g. 15m [default: 15m]
    #[arg(long, global = true, env = "AUTH_ACCESS_TTL", value_name = "DURATION")]
    pub access_ttl: Option<String>,
    /// Refresh-token lifetime, e.g. 30d [default: 30d]
    #[arg(long, global = true, env = "AUTH_REFRESH_TTL", value_name = "DURATION")]
    pub refresh_ttl: Option<String>,
    /// Algorithm of new signing keys: RS256, ES256 or EdDSA [default: RS256]
    #[arg(long, global = true, env = "AUTH_SIGNING_ALG", value_name = "ALG")]
    pub signing_alg: Option<String>,
    /// JWKS Cache-Control max-age [default: 300s]
    #[arg(
        long,
        global = true,
        env = "AUTH_JWKS_MAX_AGE",
        value_name = "DURATION"
    )]
    pub jwks_max_age: Option<String>,
    /// How often a running server reloads signing keys from the database [default: 5s]
    #[arg(
        long,
        global = true,
        env = "AUTH_KEY_RELOAD_INTERVAL",
        value_name = "DURATION"
    )]
    pub key_reload_interval: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve,
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage users' roles.
    #[command(subcommand)]
    Users(UsersCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new active signing key; the previous one stays published for the overlap window.
    Rotate,
    /// List keys: kid, alg, status (active / overlap until T / retired), created.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Grant ROLE to the user with EMAIL (it appears in tokens issued from now on).
    GrantRole { email: String, role: String },
    /// Revoke ROLE from the user with EMAIL.
    RevokeRole { email: String, role: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("config: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Runtime(std::io::Error),
}

impl SettingsArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            database_url: self.database_url.clone(),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_ttl: self.access_ttl.clone(),
            refresh_ttl: self.refresh_ttl.clone(),
            signing_alg: self.signing_alg.clone(),
            jwks_max_age: self.jwks_max_age.clone(),
            key_reload_interval: self.key_reload_interval.clone(),
        }
    }

    pub fn load(&self) -> Result<Settings, ConfigError> {
        Settings::load(self.config.as_deref(), self.overrides())
    }
}

/// Runs the parsed command line: sets up JSON logs on stderr (and span export for `serve`
/// when `otlp` is configured) and a tokio runtime, runs the command, and maps errors to an
/// exit code (1, or 2 for configuration errors).
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {}", CliError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let serving = matches!(cli.command, Command::Serve);
        // The config is read before logging starts: it says where spans go. A config error
        // is still logged (to plain JSON logs) below.
        let settings = cli.settings.load();
        let otlp = match (&settings, serving) {
            (Ok(s), true) => s.otlp.clone(),
            _ => None,
        };
        let level = if serving { "info" } else { "warn" };
        let telemetry = match telemetry::init(crate::SERVICE, level, otlp.as_ref()) {
            Ok(t) => Some(t),
            Err(e) => {
                // Without span export, logs still go out.
                eprintln!("warning: {e}");
                let _ = telemetry::init(crate::SERVICE, level, None);
                None
            }
        };
        let result = match settings {
            Ok(settings) => run(cli.command, settings).await,
            Err(e) => Err(e.into()),
        };
        if let Some(t) = telemetry {
            // Spans still queued go out before the process ends.
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "auth-service failed");
            eprintln!("error: {e}");
            match e {
                CliError::Config(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Runs one command with loaded settings.
pub async fn run(command: Command, settings: Settings) -> Result<(), CliError> {
    match command {
        Command::Serve => {
            let listen = settings.listen;
            let state = AppState::new(settings).await?;
            crate::server::serve(state, listen).await?;
        }
        Command::Keys(KeysCommand::Rotate) => {
            let db = Db::connect(&settings.database_url, 2).await?;
            let key = keys::rotate(&db, settings.signing_alg).await?;
            let overlap = settings.key_overlap();
            println!("new active signing key: {} ({})", key.kid, key.alg);
            if key.retired > 0 {
                println!(
                    "{} previous key(s) stay published for {} (access_ttl + jwks_max_age), until {}",
                    key.retired,
                    humantime::format_duration(overlap),
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now() + overlap),
                );
            }
            println!(
                "running servers switch to it within key_reload_interval ({})",
                humantime::format_duration(settings.key_reload_interval)
            );
        }
        Command::Keys(KeysCommand::List) => {
            let db = Db::connect(&settings.database_url, 2).await?;
            let list = keys::list(&db, settings.key_overlap()).await?;
            println!("{:<44} {:<6} {:<34} CREATED", "KID", "ALG", "STATUS");
            for k in list {
                let status = match k.status {
                    KeyStatus::Active => "active".to_string(),
                    KeyStatus::Overlap { until_ms } => {
                        format!("overlap until {}", fmt_ms(until_ms))
                    }
                    KeyStatus::Retired => "retired".to_string(),
                };
                println!(
                    "{:<44} {:<6} {:<34} {}",
                    k.kid,
                    k.alg,
                    status,
                    fmt_ms(k.created_at_ms)
                );
            }
        }
        Command::Users(UsersCommand::GrantRole { email, role }) => {
            let db = Db::connect(&settings.database_url, 2).await?;
            if users::grant_role(&db, &email, &role).await? {
                println!("granted {role} to {email}");
            } else {
                println!("{email} already has {role}");
            }
        }
        Command::Users(UsersCommand::RevokeRole { email, role }) => {
            let db = Db::connect(&settings.database_url, 2).await?;
            if users::revoke_role(&db, &email, &role).await? {
                println!("revoked {role} from {email}");
            } else {
                println!("{email} did not have {role}");
            }
        }
    }
    Ok(())
}

fn fmt_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--listen",
            "127.0.0.1:1",
            "keys",
            "rotate",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(cli.settings.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(cli.settings.database_url.as_deref(), Some("sqlite://x.db"));
        assert!(matches!(cli.command, Command::Keys(KeysCommand::Rotate)));
        let cli = Cli::try_parse_from(["auth-service", "users", "grant-role", "a@b.co", "admin"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Users(UsersCommand::GrantRole { .. })
        ));
    }
}

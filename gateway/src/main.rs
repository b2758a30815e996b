//! `gateway run | validate | explain`. Everything but argument parsing lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "API gateway for a monolith-to-microservices migration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with the routes in FILE; reloads on file change and on SIGHUP.
    Run {
        #[arg(long, short, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Check config files; prints every error as file:line:col: field.path: reason.
    ///
    /// Also checks what `run` needs of this machine: target names resolve, the access-log file
    /// opens (it is created when missing, as `run` would).
    Validate {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Check the files alone, for another machine or network (compose, Kubernetes): do not
        /// resolve target names or open the access-log file.
        #[arg(long)]
        offline: bool,
    },
    /// Show which route, upstream(s) and policies a request would get; on a split that places
    /// users by a key, the key, its bucket and the side for this request.
    Explain {
        #[arg(long, short, value_name = "FILE", env = "GATEWAY_CONFIG")]
        config: PathBuf,
        /// The method, case-sensitive as on the wire (`GET`, not `get`).
        method: String,
        /// The request-target as sent on the request line: `/path?query`, or an absolute URL.
        path: String,
        /// A request header, as NAME:VALUE (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
        headers: Vec<String>,
        /// A claim of the request's verified token, as NAME=VALUE (repeatable): for splits
        /// placed by `claim.NAME`. `sub=42` places like a token whose `sub` is "42" (or 42).
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// A cookie the request sends, as NAME=VALUE (repeatable): for `cookie.NAME` keys.
        #[arg(long = "cookie", value_name = "NAME=VALUE")]
        cookies: Vec<String>,
        /// The client address the gateway sees (after trusted_proxies): for `client_ip` keys.
        #[arg(long = "client-ip", value_name = "ADDR")]
        client_ip: Option<std::net::IpAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            init_logging();
            match gateway::server::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { files, offline } => {
            let mut ok = true;
            for f in &files {
                let loaded = if offline {
                    gateway::config::load_file(f)
                } else {
                    gateway::state::check_file(f)
                };
                match loaded {
                    Ok(_) => println!("{}: ok", f.display()),
                    Err(e) => {
                        ok = false;
                        eprintln!("{e}");
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Explain {
            config,
            method,
            path,
            headers,
            claims,
            cookies,
            client_ip,
        } => {
            // The file alone: explaining a request needs no DNS and opens no file other than
            // what the config itself reads (a TLS certificate, a cohort's pin secret).
            let loaded = match gateway::config::load_file(&config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let mut parsed = Vec::new();
            for h in &headers {
                match h.split_once(':') {
                    Some((k, v)) => parsed.push((k.to_string(), v.to_string())),
                    None => {
                        eprintln!("--header {h:?}: expected NAME:VALUE");
                        return ExitCode::from(2);
                    }
                }
            }
            let mut user = gateway::explain::User {
                client_ip,
                ..Default::default()
            };
            for (flag, given, into) in [
                ("--claim", &claims, &mut user.claims),
                ("--cookie", &cookies, &mut user.cookies),
            ] {
                for g in given {
                    match g.split_once('=') {
                        Some((k, v)) => into.push((k.to_string(), v.to_string())),
                        None => {
                            eprintln!("{flag} {g:?}: expected NAME=VALUE");
                            return ExitCode::from(2);
                        }
                    }
                }
            }
            match gateway::explain::explain_for(&loaded.config, &method, &path, &parsed, &user) {
                Ok((text, matched)) => {
                    print!("{text}");
                    if matched {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("gateway explain: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

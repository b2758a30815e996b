//! Test support shared by every crate's integration tests.
//!
//! Tests here run the real thing: real binaries on `127.0.0.1` ephemeral ports, real HTTP.
//! This crate gives them the few pieces they all need:
//!
//! - [`free_port`]: a port that was free a moment ago, never one an outgoing connection takes;
//! - [`cargo_bin`]: the path of a workspace binary (built by `cargo build --workspace --bins`,
//!   which `scripts/test.sh` runs before the tests);
//! - [`Proc`]: a child process with its output captured to files, killed by PID on drop;
//! - [`eventually`] (module [`wait`]): the one way to wait, for a condition with a deadline
//!   instead of a sleep; [`wait_http_ok`] is one such wait;
//! - [`prom`]: a gauge or counter out of a `/metrics` text, the usual thing to wait on;
//! - [`workspace_root`]: to find `config/` and the Python venv;
//! - [`pem`]: DER key material as PEM text (test and bench keys made with aws-lc-rs);
//! - [`otlp`]: a real OTLP trace receiver (gRPC and HTTP/protobuf), the `otlp-receiver` binary;
//! - [`layers`]: a crate's module layering (its `lib.rs` module map) checked against its imports.

pub mod layers;
pub mod otlp;
pub mod prom;
pub mod wait;

pub use wait::{Outcome, eventually, wait_http_ok};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A TCP port on 127.0.0.1 that was free when this returned.
///
/// Ports are taken from just below the kernel's ephemeral range (`ip_local_port_range`), where
/// no outgoing connection can take one between this call and the test's `bind` (a port from
/// `bind(0)` can: seen as a rare "connection refused" under `cargo test` load), and each is
/// handed out once per process, so two tests running side by side never get the same one.
/// Where the range leaves no room below it, the kernel picks.
pub fn free_port() -> u16 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    const SPAN: u32 = 12_000;
    static BELOW: OnceLock<Option<u32>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = *BELOW.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
        let first: u32 = range.split_whitespace().next()?.parse().ok()?;
        // Start each process at a different place, so concurrent test binaries rarely meet.
        NEXT.store(
            std::process::id().wrapping_mul(7919) % SPAN,
            Ordering::Relaxed,
        );
        first.checked_sub(SPAN).filter(|low| *low >= 1024)
    });
    if let Some(low) = low {
        for _ in 0..SPAN {
            let port = low + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
            let port = u16::try_from(port).expect("below the ephemeral range");
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// `der` as PEM with the given label (`PRIVATE KEY` for PKCS#8), 64 characters a line.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// The path of a binary built from this workspace, next to the running test executable.
///
/// Panics with the command to run when the binary has not been built.
pub fn cargo_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>  ->  target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The Python interpreter of the project's venv (`.venv/`, made by `scripts/python-env.sh`).
pub fn venv_python() -> PathBuf {
    let path = workspace_root().join(".venv/bin/python");
    assert!(
        path.exists(),
        "{} not found: run `scripts/python-env.sh` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A child process whose stdout and stderr go to files in its own temp dir.
/// Dropping it kills the process (by its PID, which only this handle knows).
pub struct Proc {
    name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `cmd` with its output captured. The command's other settings are kept.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Sends a signal (e.g. "HUP", "TERM") to the process by PID.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code (None: killed by a
    /// signal). Panics if it is still running then (its output is printed as it is dropped).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let what = format!("{} to exit", self.name);
        let child = self.child.as_mut().expect("process already reaped");
        let status: ExitStatus = eventually(&what, timeout, || {
            let polled = child.try_wait();
            async move {
                match polled {
                    Ok(Some(status)) => Ok(status),
                    Ok(None) => Err("running".to_string()),
                    Err(e) => Err(format!("try_wait: {e}")),
                }
            }
        })
        .await;
        self.child = None;
        status.code()
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
                self.name,
                tail(&self.stdout(), 4000),
                self.name,
                tail(&self.stderr(), 4000)
            );
        }
    }
}

fn tail(s: &str, max: usize) -> &str {
    let start = s.len().saturating_sub(max);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// A plain HTTP client for tests: no proxy from the environment, no connection reuse surprises.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let first: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            if first > 13_024 {
                assert!(
                    port < first,
                    "{port} is in the ephemeral range from {first}"
                );
            }
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}

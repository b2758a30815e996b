//! Hot reload: on a change to the config file (debounced) and on SIGHUP, validate the file and
//! swap it in atomically (see [`Shared::reload`]). A bad file never replaces a good one.
//!
//! The watch is on the file's *directory*, not the file: editors save by writing a new file and
//! renaming it over the old one, and Kubernetes updates a ConfigMap volume by swapping the
//! `..data` symlink; both replace the inode a file watch would be holding. Events are kept when
//! they touch the config's file name, the target of a symlinked config, or a `..`-prefixed
//! entry (the ConfigMap machinery).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::state::{Reloaded, Shared};

pub struct Reloader {
    shared: Arc<Shared>,
    debounce: Duration,
}

impl Reloader {
    pub fn new(shared: Arc<Shared>) -> Self {
        let debounce = shared.runtime().loaded.config.server.reload_debounce;
        Reloader { shared, debounce }
    }

    fn reload(&self, why: &str) {
        match self.shared.reload() {
            Ok(Reloaded::Changed { hash }) => {
                tracing::info!(trigger = why, %hash, "config reloaded")
            }
            Ok(Reloaded::Unchanged) => tracing::debug!(trigger = why, "config unchanged"),
            Err(e) => tracing::error!(
                trigger = why,
                "config reload failed; the previous config keeps serving:\n{e}"
            ),
        }
    }
}

/// The names in the config's directory (and its symlink target's) whose changes matter.
fn watched(config: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            out.push((dir.to_path_buf(), name.to_string_lossy().into_owned()));
        }
    };
    add(config);
    if let Ok(real) = std::fs::canonicalize(config)
        && real != config
    {
        add(&real);
    }
    out
}

fn relevant(event: &notify::Event, names: &[(PathBuf, String)]) -> bool {
    if event.kind.is_access() {
        return false;
    }
    event.paths.iter().any(|p| {
        p.file_name().is_some_and(|f| {
            let f = f.to_string_lossy();
            f.starts_with("..") || names.iter().any(|(_, n)| *n == f)
        })
    })
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = mpsc::channel::<()>(16);
        let names = watched(&self.shared.config_path);
        let filter = names.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res
                && relevant(&event, &filter)
            {
                let _ = tx.try_send(());
            }
        });
        let _watcher = match watcher {
            Ok(mut w) => {
                for (dir, _) in &names {
                    if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), "cannot watch the config directory ({e}); reload with SIGHUP");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!("file watching unavailable ({e}); reload with SIGHUP");
                None
            }
        };
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP: {e}");
                None
            }
        };
        // A file event arms a deadline; more events push it back (debounce). SIGHUP reloads at
        // once and disarms any pending file reload. A change made between the first load and
        // the watch starting sent no event: it is caught here, by the file's hash.
        let loaded = self.shared.runtime().loaded.hash.clone();
        let missed =
            crate::config::file_hash(&self.shared.config_path).is_some_and(|h| h != loaded);
        let mut due = missed.then(|| tokio::time::Instant::now() + self.debounce);
        loop {
            let wait_due = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = hup_recv => {
                    due = None;
                    self.reload("SIGHUP");
                }
                Some(()) = rx.recv() => {
                    self.shared.metrics.config_file_events.inc();
                    due = Some(tokio::time::Instant::now() + self.debounce);
                }
                () = wait_due => {
                    due = None;
                    self.reload("file change");
                }
            }
        }
    }
}

//! Hot reload: the config file is re-read when it changes (checked every
//! `scheduler.reload_interval`) or on SIGHUP. A file that fails validation
//! is rejected with the error (file, line, key) and the running schedules
//! stay as they were.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kairos_core::config::ConfigError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Settings;

/// Watches `path` and publishes the scheduler's settings of each valid new
/// config on `tx`. `load` reads and validates the whole file (every
/// section, not only the scheduler's: a file the other roles would refuse
/// is refused here too).
pub async fn watch_config<F>(path: PathBuf, load: F, tx: watch::Sender<Arc<Settings>>, shutdown: CancellationToken)
where
    F: Fn(&Path) -> Result<Settings, ConfigError> + Send + 'static,
{
    watch_file(
        path,
        load,
        |s: &Settings| s.scheduler.reload_interval,
        "schedules",
        tx,
        shutdown,
    )
    .await;
}

/// The watcher behind [`watch_config`], for any part of the config a role
/// reloads (the worker's nudge rules too): `load` reads and validates the
/// whole file into that part, published on `tx` when valid; `interval`
/// says from the current value how often the file is checked; `what`
/// names the part in the log line of a refused file.
pub async fn watch_file<T, F, I>(
    path: PathBuf,
    load: F,
    interval: I,
    what: &'static str,
    tx: watch::Sender<Arc<T>>,
    shutdown: CancellationToken,
) where
    T: Send + Sync + 'static,
    F: Fn(&Path) -> Result<T, ConfigError> + Send + 'static,
    I: Fn(&T) -> std::time::Duration + Send + 'static,
{
    let stamp = |p: &PathBuf| -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    // Unknown at first: the file may have changed between the initial load
    // and this task starting, so the first check always re-reads it.
    let mut last = None;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let every = interval(&tx.borrow());
        #[cfg(unix)]
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup_recv = std::future::pending::<()>();
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => false,
            _ = hup_recv => true,
        };
        let now = stamp(&path);
        if !forced && last.is_some() && now == last {
            continue;
        }
        let first = last.is_none();
        last = now;
        match load(&path) {
            Ok(new) => {
                if !first {
                    tracing::info!(file = %path.display(), part = what, "config reloaded");
                }
                tx.send_replace(Arc::new(new));
            }
            Err(e) => tracing::error!(error = %e, "config reload rejected; the previous {what} stay in force"),
        }
    }
}

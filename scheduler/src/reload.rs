//! Hot reload: the config file is re-read when it changes (checked every
//! `scheduler.reload_interval`) or on SIGHUP. A file that fails validation
//! is rejected with the error (file, line, key) and the running schedules
//! stay as they were.
//!
//! Editors and `cp` rewrite a file in place: truncate, then write. Caught in
//! between, the file is empty or cut short, and an empty file is a *valid*
//! config (every default: no rules, no schedules), so applying it would
//! drop every rule for one interval. So a change is applied only once the
//! file's size and modification time hold still for [`SETTLE`], and an
//! empty file is refused like an invalid one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kairos_core::config::ConfigError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Settings;

/// How long a changed file must stay unchanged before it is read.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(50);

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
        tokio::time::sleep(SETTLE).await;
        if stamp(&path) != now {
            // Still being written: `last` stays, so the next check sees the change again.
            continue;
        }
        let first = last.is_none();
        last = now;
        if now.is_some_and(|(_, len)| len == 0) {
            tracing::error!(file = %path.display(), "config reload rejected: the file is empty; the previous {what} stay in force");
            continue;
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A file truncated for a rewrite is never published: only the valid
    /// contents before and after it are.
    #[tokio::test]
    async fn an_emptied_file_is_refused_and_the_rewritten_one_applied() {
        let dir = std::env::temp_dir().join(format!("kairos-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("live.toml");
        std::fs::write(&path, "rules = 1\n").unwrap();
        // `load` stands for the config loader: the number after `rules =`, or
        // none for a file without it (an empty file would be all defaults).
        let load = |p: &Path| -> Result<u32, ConfigError> {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            Ok(text
                .trim()
                .strip_prefix("rules = ")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0))
        };
        let (tx, mut rx) = watch::channel(Arc::new(1u32));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watch_file(
            path.clone(),
            load,
            |_: &u32| Duration::from_millis(20),
            "rules",
            tx,
            shutdown.clone(),
        ));
        // The first check re-reads the file as it is.
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(**rx.borrow_and_update(), 1);
        // Truncated, left empty for several checks, then written.
        std::fs::write(&path, "").unwrap();
        tokio::time::sleep(SETTLE * 4).await;
        assert!(
            !rx.has_changed().unwrap(),
            "an empty file was published: {}",
            **rx.borrow()
        );
        std::fs::write(&path, "rules = 2\n").unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(**rx.borrow_and_update(), 2);
        shutdown.cancel();
        task.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

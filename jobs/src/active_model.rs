//! The cache every model-backed kind (`churn_score`, `sentiment`) keeps:
//! which version each tenant uses (re-checked at most every refresh
//! interval, so `kairos models activate` takes effect without a restart)
//! and each version's loaded model (loaded once per process).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Tenant → active version, version → loaded model `M`.
pub struct ActiveModelCache<M> {
    refresh: Duration,
    inner: Mutex<Inner<M>>,
}

struct Inner<M> {
    /// tenant → (active version, when it was read).
    active: HashMap<String, (Option<String>, Instant)>,
    /// version → model.
    models: HashMap<String, Arc<M>>,
}

impl<M> std::fmt::Debug for ActiveModelCache<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("ActiveModelCache")
            .field("refresh", &self.refresh)
            .field("versions", &inner.models.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<M> ActiveModelCache<M> {
    /// An empty cache re-reading a tenant's active version after `refresh`.
    pub fn new(refresh: Duration) -> Self {
        Self {
            refresh,
            inner: Mutex::new(Inner {
                active: HashMap::new(),
                models: HashMap::new(),
            }),
        }
    }

    // Every update leaves the maps consistent (single inserts), so a panic
    // elsewhere while holding the lock cannot leave them half-written.
    fn lock(&self) -> MutexGuard<'_, Inner<M>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The model `tenant_id`'s jobs use now, with its version, or `None`
    /// when no version is active. `active` reads the tenant's active
    /// version (awaited only when the cached one is older than the refresh
    /// interval); `load` loads a version not loaded yet. Their errors are
    /// returned as they are and nothing is cached then.
    pub async fn get<E, A, L, F>(&self, tenant_id: &str, active: A, load: L) -> Result<Option<(String, Arc<M>)>, E>
    where
        A: Future<Output = Result<Option<String>, E>>,
        L: FnOnce(String) -> F,
        F: Future<Output = Result<M, E>>,
    {
        let cached = {
            let inner = self.lock();
            inner
                .active
                .get(tenant_id)
                .filter(|(_, at)| at.elapsed() < self.refresh)
                .map(|(v, _)| v.clone())
        };
        let version = match cached {
            Some(v) => v,
            None => {
                let v = active.await?;
                self.lock()
                    .active
                    .insert(tenant_id.to_owned(), (v.clone(), Instant::now()));
                v
            }
        };
        let Some(version) = version else {
            return Ok(None);
        };
        if let Some(m) = self.lock().models.get(&version).cloned() {
            return Ok(Some((version, m)));
        }
        // Two jobs may load the same version at once; the second insert
        // replaces an equal model, which is harmless.
        let model = Arc::new(load(version.clone()).await?);
        self.lock().models.insert(version.clone(), model.clone());
        Ok(Some((version, model)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts reads of the active version and model loads.
    #[derive(Default)]
    struct Counts {
        reads: AtomicUsize,
        loads: AtomicUsize,
    }

    async fn get(cache: &ActiveModelCache<String>, counts: &Counts, active: &str) -> (String, Arc<String>) {
        cache
            .get(
                "t1",
                async {
                    counts.reads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(Some(active.to_owned()))
                },
                |v| async move {
                    counts.loads.fetch_add(1, Ordering::SeqCst);
                    Ok(format!("model {v}"))
                },
            )
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn within_the_refresh_interval_the_cached_version_is_used() {
        let (cache, counts) = (ActiveModelCache::new(Duration::from_secs(3600)), Counts::default());
        let (v, m) = get(&cache, &counts, "v1").await;
        assert_eq!((v.as_str(), m.as_str()), ("v1", "model v1"));
        let (v, _) = get(&cache, &counts, "v2").await;
        assert_eq!(v, "v1");
        assert_eq!(counts.reads.load(Ordering::SeqCst), 1);
        assert_eq!(counts.loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_active_version_is_re_read_and_each_version_loaded_once() {
        let (cache, counts) = (ActiveModelCache::new(Duration::ZERO), Counts::default());
        assert_eq!(get(&cache, &counts, "v1").await.0, "v1");
        assert_eq!(get(&cache, &counts, "v2").await.0, "v2");
        assert_eq!(get(&cache, &counts, "v1").await.0, "v1");
        assert_eq!(counts.reads.load(Ordering::SeqCst), 3);
        assert_eq!(counts.loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_are_returned_and_not_cached() {
        let cache = ActiveModelCache::<String>::new(Duration::from_secs(3600));
        let err = cache
            .get("t1", async { Err::<Option<String>, _>("store down") }, |_| async {
                Ok(String::new())
            })
            .await
            .unwrap_err();
        assert_eq!(err, "store down");
        let none = cache
            .get("t1", async { Ok::<_, &str>(None) }, |_| async { Ok(String::new()) })
            .await
            .unwrap();
        assert!(none.is_none());
    }
}

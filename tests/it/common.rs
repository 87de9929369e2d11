//! `spawn_app` and friends: start a Kairos process (in-process or as a real
//! child process) on a throwaway store and queue.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kairos::Config;
use kairos::{start, Roles, Running, Runtime};
use kairos_core::store::{JobRun, JobState};
use kairos_core::Store;
use kairos_models::churn::synthetic::{self, SyntheticAccount};
use kairos_models::churn::{self as models, ChurnModel, TrainConfig};
use serde_json::{json, Value};

pub fn pg_admin_url() -> String {
    std::env::var("KAIROS_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("KAIROS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Which deployment a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// SQLite store and SQLite queue.
    Embedded,
    /// Postgres store and Redis queue.
    Distributed,
}

/// Throwaway resources; removed on drop.
pub struct Env {
    pub deployment: Deployment,
    pub dir: tempfile::TempDir,
    pub store_url: String,
    pub queue_url: String,
    pub prefix: String,
    pg_db: Option<String>,
}

impl Env {
    pub async fn new(deployment: Deployment) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let prefix = format!("kt-{tag}");
        match deployment {
            Deployment::Embedded => {
                let db = dir.path().join("kairos.db");
                let url = format!("sqlite://{}", db.display());
                Env {
                    deployment,
                    store_url: url.clone(),
                    queue_url: url,
                    prefix,
                    pg_db: None,
                    dir,
                }
            }
            Deployment::Distributed => {
                let name = format!("kt_{tag}");
                let admin = Store::connect(&pg_admin_url(), 1).await.expect("postgres reachable");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = pg_admin_url();
                let store_url = match base.rfind('/') {
                    Some(i) => format!("{}/{name}", &base[..i]),
                    None => panic!("bad KAIROS_TEST_PG"),
                };
                Env {
                    deployment,
                    store_url,
                    queue_url: redis_url(),
                    prefix,
                    pg_db: Some(name),
                    dir,
                }
            }
        }
    }

    /// A config TOML for this environment; `extra` is appended (tables not
    /// set here: `[jobs.*]`, `[[rules]]`, `[api]`, `[worker]`...).
    pub fn config_toml(&self, extra: &str) -> String {
        let backend = match self.deployment {
            Deployment::Embedded => "sqlite",
            Deployment::Distributed => "redis",
        };
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[store]
url = "{store}"
max_connections = 8
migrate_on_start = true

[queue]
backend = "{backend}"
url = "{queue}"
prefix = "{prefix}"
fetch_wait = "200ms"
lease = "3s"
reclaim_interval = "300ms"

[scheduler]
dispatch_interval = "200ms"
dispatch_after = "1s"

{extra}
"#,
            store = self.store_url,
            queue = self.queue_url,
            prefix = self.prefix,
        )
    }

    pub fn config(&self, extra: &str) -> Config {
        Config::from_toml(&self.config_toml(extra), "test.toml", &[]).expect("valid test config")
    }

    /// Writes the config to a file for child processes.
    pub fn config_file(&self, extra: &str) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("config-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, self.config_toml(extra)).expect("write config");
        path
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let pg = self.pg_db.take();
        let prefix = self.prefix.clone();
        let deployment = self.deployment;
        // Async clean-up from a sync Drop: on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Some(name) = pg {
                    if let Ok(admin) = Store::connect(&pg_admin_url(), 1).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(admin.pool())
                            .await;
                    }
                }
                if deployment == Deployment::Distributed {
                    if let Ok(client) = redis::Client::open(redis_url()) {
                        if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                            let keys: Vec<String> = redis::cmd("KEYS")
                                .arg(format!("{prefix}:*"))
                                .query_async(&mut c)
                                .await
                                .unwrap_or_default();
                            if !keys.is_empty() {
                                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
                            }
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// An in-process Kairos with a tenant and its key.
pub struct TestApp {
    pub env: Env,
    pub base: String,
    pub key: String,
    pub tenant_id: String,
    pub store: Store,
    pub queue: std::sync::Arc<dyn kairos_core::Queue>,
    pub config: Config,
    pub http: reqwest::Client,
    pub running: Option<Running>,
}

/// Starts every role in-process on a fresh store and queue.
pub async fn spawn_app(deployment: Deployment, extra: &str) -> TestApp {
    spawn_app_with_roles(deployment, extra, Roles::ALL).await
}

pub async fn spawn_app_with_roles(deployment: Deployment, extra: &str, roles: Roles) -> TestApp {
    spawn_app_on(Env::new(deployment).await, extra, roles).await
}

/// The API and the scheduler, for tests whose workers are `kairos worker`
/// child processes ([`worker_proc`]).
pub const NO_WORKER: Roles = Roles {
    api: true,
    scheduler: true,
    worker: false,
};

/// Starts `roles` in-process on `env` (made by the caller: to write config
/// files for child processes first, or to point it at a queue of its own).
pub async fn spawn_app_on(env: Env, extra: &str, roles: Roles) -> TestApp {
    let config = env.config(extra);
    let rt = Runtime::open(config.clone()).await.expect("open runtime");
    let store = rt.store.clone();
    let queue = rt.queue.clone();
    let key = store.create_tenant("tenant-a", None).await.expect("create tenant");
    let running = start(rt, roles).await.expect("start roles");
    let base = running.addr.map(|a| format!("http://{a}")).unwrap_or_default();
    TestApp {
        env,
        base,
        key: key.secret,
        tenant_id: key.tenant.id,
        store,
        queue,
        config,
        http: reqwest::Client::new(),
        running: Some(running),
    }
}

impl TestApp {
    pub async fn post_events(&self, body: &Value) -> (u16, Value) {
        self.post_events_with_key(&self.key, body).await
    }

    pub async fn post_events_with_key(&self, key: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let value = resp.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let value = resp.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    /// Waits until every job in `ids` is in a terminal state; returns them.
    pub async fn wait_settled(&self, ids: &[String], timeout: Duration) -> Vec<JobRun> {
        wait_settled(&self.store, ids, timeout).await
    }

    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub async fn wait_settled(store: &Store, ids: &[String], timeout: Duration) -> Vec<JobRun> {
    let deadline = Instant::now() + timeout;
    loop {
        let jobs = store.jobs_by_ids(ids).await.expect("read jobs");
        let settled = |j: &JobRun| matches!(j.state, JobState::Succeeded | JobState::Dead);
        if jobs.len() == ids.len() && jobs.iter().all(settled) {
            return jobs;
        }
        if Instant::now() > deadline {
            let pending: Vec<_> = jobs
                .iter()
                .filter(|j| !settled(j))
                .take(5)
                .map(|j| format!("{} {} attempts={} err={:?}", j.id, j.state, j.attempts, j.last_error))
                .collect();
            panic!(
                "jobs not settled within {timeout:?}: {} of {} found; e.g. {pending:?}",
                jobs.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn event(id: &str, kind: &str, account: &str, data: Value) -> Value {
    json!({
        "id": id,
        "type": kind,
        "account_id": account,
        "occurred_at": "2026-11-20T10:00:00Z",
        "data": data,
    })
}

pub fn job_ids(resp: &Value) -> Vec<String> {
    resp["results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["job_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// A `kairos` child process.
pub struct Proc {
    pub child: tokio::process::Child,
    pub name: String,
    /// Kept from the spawn: the child's id is gone once it has been waited for.
    pid: i32,
}

pub fn kairos_cmd(config: &PathBuf, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"));
    cmd.arg("--config").arg(config).args(args);
    cmd.env("KAIROS_LOG", "warn");
    cmd
}

pub fn spawn_proc(config: &PathBuf, args: &[&str]) -> Proc {
    spawn_proc_with(config, args, &[])
}

/// [`spawn_proc`] with environment variables set on top of
/// [`kairos_cmd`]'s (`KAIROS_LOG`, `KAIROS__SERVER__LISTEN`, ...).
pub fn spawn_proc_with(config: &PathBuf, args: &[&str], env: &[(&str, String)]) -> Proc {
    let mut cmd = kairos_cmd(config, args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn kairos");
    let pid = child.id().map(|p| p as i32).expect("running child");
    Proc {
        child,
        name: args.join(" "),
        pid,
    }
}

/// A `kairos worker` child process that logs errors only.
pub fn worker_proc(config: &PathBuf) -> Proc {
    spawn_proc_with(config, &["worker"], &[("KAIROS_LOG", "error".into())])
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether `job` ran (or runs) on this process, by its last worker:
    /// worker ids carry `-PID-`.
    pub fn ran(&self, job: &JobRun) -> bool {
        let tag = format!("-{}-", self.pid);
        job.worker.as_deref().is_some_and(|w| w.contains(&tag))
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {timeout:?}", self.name))
            .expect("wait")
    }

    /// SIGKILLs the process and waits for it to be gone.
    pub async fn kill(&mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(10)).await;
    }
}

/// A free port on 127.0.0.1 (free when asked; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local address")
        .port()
}

/// The environment variable that makes a child process's API listen on `port`.
pub fn listen_on(port: u16) -> (&'static str, String) {
    ("KAIROS__SERVER__LISTEN", format!("127.0.0.1:{port}"))
}

/// Creates a tenant with `kairos tenants create`; returns its API key.
pub async fn cli_create_tenant(config: &PathBuf, name: &str) -> String {
    let (ok, out, err) = run_cli(config, &["tenants", "create", name]).await;
    assert!(ok, "{out}{err}");
    out.split_whitespace()
        .find(|w| w.starts_with("kairos_"))
        .map(String::from)
        .unwrap_or_else(|| panic!("no key in {out}"))
}

/// Runs a `kairos` CLI command to completion; returns (success, stdout).
pub async fn run_cli(config: &PathBuf, args: &[&str]) -> (bool, String, String) {
    let out = kairos_cmd(config, args).output().await.expect("run kairos");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A churn model fitted on synthetic `accounts` (account-feature schema),
/// quickly: one regularisation strength, no cross-validation.
pub fn synthetic_model(accounts: &[SyntheticAccount], version: &str) -> ChurnModel {
    let data = synthetic::to_dataset("synthetic", accounts).expect("synthetic dataset");
    let config = TrainConfig {
        cv_folds: 0,
        alphas: vec![1.0],
        version: Some(version.into()),
        ..TrainConfig::default()
    };
    models::train(&data, &config).expect("train").model
}

/// Waits until the API at `base` answers `/healthz` (30 s at most).
pub async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    assert!(
        wait_for(Duration::from_secs(30), || async {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        })
        .await,
        "API at {base} did not come up"
    );
}

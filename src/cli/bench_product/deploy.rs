//! The deployment under test: a Postgres cluster and a `redis-server` of the
//! benchmark's own (so their CPU and statement counts are ours alone, and
//! nothing shared is disturbed), or an SQLite file; a config file; and the
//! real `kairos` processes started from this binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kairos_core::Store;
use tokio::process::{Child, Command};

use super::Which;

/// The database the benchmark's own Postgres cluster serves.
const PG_DB: &str = "kbench";

/// A free TCP port on 127.0.0.1 (the listener is dropped at once).
pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A PostgreSQL cluster of the benchmark's own: `initdb` in a temporary
/// directory, default settings (fsync on) plus `pg_stat_statements`, its own
/// port. As root the server tools run as the `postgres` user.
pub(super) struct OwnPostgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

impl OwnPostgres {
    fn bin_dir() -> anyhow::Result<PathBuf> {
        if let Ok(dir) = std::env::var("KAIROS_BENCH_PG_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL server binaries under /usr/lib/postgresql (or set KAIROS_BENCH_PG_BIN)")?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("pg_ctl").exists().then_some((v, bin))
            })
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, b)| b).context("no PostgreSQL version with pg_ctl")
    }

    fn tool(&self, name: &str) -> std::process::Command {
        let path = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        };
        cmd.stdout(Stdio::null());
        cmd
    }

    /// Creates and starts the cluster in `dir` (which must be writable by
    /// the `postgres` user when running as root).
    pub(super) fn start(dir: &Path) -> anyhow::Result<OwnPostgres> {
        use std::os::unix::fs::MetadataExt;
        let as_postgres = std::fs::metadata("/proc/self")?.uid() == 0;
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)?;
        if as_postgres {
            let ok = std::process::Command::new("chown")
                .arg("postgres")
                .arg(&root)
                .status()?;
            anyhow::ensure!(ok.success(), "chown postgres {}", root.display());
        }
        let pg = OwnPostgres {
            port: free_port()?,
            bin: Self::bin_dir()?,
            data: root.join("data"),
            as_postgres,
        };
        let status = pg
            .tool("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stderr(Stdio::null())
            .status()
            .context("running initdb")?;
        anyhow::ensure!(status.success(), "initdb failed");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
            pg.port,
            root.display()
        );
        let status = pg
            .tool("pg_ctl")
            .arg("-D")
            .arg(&pg.data)
            .arg("-l")
            .arg(root.join("pg.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .status()
            .context("running pg_ctl start")?;
        anyhow::ensure!(
            status.success(),
            "pg_ctl start failed (log: {})",
            root.join("pg.log").display()
        );
        Ok(pg)
    }

    /// The maintenance database's URL.
    pub(super) fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The benchmark database's URL.
    pub(super) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{PG_DB}", self.port)
    }

    /// Creates the benchmark database and `pg_stat_statements` in it.
    pub(super) async fn create_db(&self) -> anyhow::Result<()> {
        let admin = Store::connect(&self.admin_url(), 1).await?;
        sqlx::query(&format!("CREATE DATABASE {PG_DB}"))
            .execute(admin.pool())
            .await?;
        admin.close().await;
        let db = Store::connect(&self.url(), 1).await?;
        sqlx::query("CREATE EXTENSION pg_stat_statements")
            .execute(db.pool())
            .await?;
        db.close().await;
        Ok(())
    }

    /// The postmaster's pid (first line of `postmaster.pid`).
    pub(super) fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of the benchmark's own: no persistence, its own port.
pub(super) struct OwnRedis {
    pub(super) port: u16,
    child: Child,
}

impl OwnRedis {
    pub(super) async fn start(dir: &Path) -> anyhow::Result<OwnRedis> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server")?;
        let r = OwnRedis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.connection().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "own redis-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(r)
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(super) async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(c)
    }
}

/// The store and queue of one deployment.
pub(super) enum Backing {
    Embedded { db: PathBuf },
    Distributed { pg: Box<OwnPostgres>, redis: Box<OwnRedis> },
}

impl Backing {
    pub(super) async fn start(which: Which, dir: &Path) -> anyhow::Result<Backing> {
        Ok(match which {
            Which::Embedded => Backing::Embedded {
                db: dir.join("kairos.db"),
            },
            Which::Distributed => {
                let pg = OwnPostgres::start(dir)?;
                pg.create_db().await?;
                let redis = OwnRedis::start(dir).await?;
                Backing::Distributed {
                    pg: Box::new(pg),
                    redis: Box::new(redis),
                }
            }
        })
    }

    pub(super) fn store_url(&self) -> String {
        match self {
            Backing::Embedded { db } => format!("sqlite://{}", db.display()),
            Backing::Distributed { pg, .. } => pg.url(),
        }
    }

    /// The config file every process of the deployment reads. Queue and
    /// worker settings are those of the shipped `config/default.toml`
    /// (embedded) and `config/distributed.example.toml`; only the rules
    /// (every event → one `activity` job) and the API's rate limit (raised
    /// out of the way) are the benchmark's.
    pub(super) fn config_toml(&self, port: u16) -> String {
        let (backend, queue_url, conns, fetch_batch, fetch_wait, concurrency) = match self {
            Backing::Embedded { .. } => ("sqlite", self.store_url(), 8, 128, "500ms", 16),
            Backing::Distributed { redis, .. } => ("redis", redis.url(), 16, 256, "1s", 32),
        };
        format!(
            r#"# Written by `kairos bench-product`.
[server]
listen = "127.0.0.1:{port}"

[store]
url = "{store}"
max_connections = {conns}
migrate_on_start = false

[queue]
backend = "{backend}"
url = "{queue_url}"
prefix = "kbench"
lease = "10s"
reclaim_interval = "5s"
fetch_batch = {fetch_batch}
fetch_wait = "{fetch_wait}"

[api]
max_batch = 1000
rate_per_second = 100000000
rate_burst = 100000000

[jobs.activity]
concurrency = {concurrency}
max_attempts = 5
timeout = "30s"

[[rules]]
on = "*"
run = ["activity"]
"#,
            store = self.store_url(),
        )
    }
}

/// One `kairos` child process.
pub(super) struct Proc {
    pub(super) name: String,
    child: Child,
}

impl Proc {
    /// Starts `kairos --config CONFIG ROLE`, logging to `DIR/NAME.log`.
    pub(super) fn spawn(config: &Path, role: &str, name: &str, dir: &Path) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("locating the kairos binary")?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .arg(role)
            .env_remove("KAIROS_CONFIG")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting kairos {role}"))?;
        Ok(Proc {
            name: name.into(),
            child,
        })
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Fails when the process has exited.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); see its log", self.name);
        }
        Ok(())
    }

    /// SIGKILL and reap: the benchmark's data is thrown away anyway.
    pub(super) async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Waits for `GET /healthz` to answer 2xx while every process stays up.
pub(super) async fn wait_healthy(http: &reqwest::Client, base: &str, procs: &mut [Proc]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for p in procs.iter_mut() {
            p.check_alive()?;
        }
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the API at {base} did not come up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

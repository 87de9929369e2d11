//! Real outside servers for tests, started per test on free ports and
//! stopped on drop: the OpenAI-compatible chat-completions server
//! (`tests/fixtures/llm_server.py`, Python's standard library) and the SMTP
//! server (`tests/fixtures/smtp_server.py`, aiosmtpd from
//! `scripts/fetch-test-tools`' venv) that writes each message, parsed, to a
//! directory. No mocks: the client under test speaks the real protocols.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kairos_jobs::llm::LlmConfig;
use kairos_jobs::mail::{SmtpConfig, TlsMode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `python script args…` and reads the `PORT <n>` line it prints first.
async fn start_python(python: &Path, script: &str, args: &[&str]) -> (Child, u16) {
    let mut child = Command::new(python)
        .arg(repo_root().join("tests/fixtures").join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {script} with {}: {e}", python.display()));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{script} did not print its port within 20 s"))
        .expect("read stdout")
        .unwrap_or_else(|| panic!("{script} exited before printing its port"));
    let port = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{script} printed {line:?}, not PORT <n>"));
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

/// In `dir`: a test CA (`ca.pem`) and a server certificate for 127.0.0.1
/// it signed (`cert.pem`, `key.pem`). webpki refuses a self-signed CA
/// certificate used as the server's own, hence two.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl {args:?} failed");
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "1",
            "-subj",
            "/CN=Kairos test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "cert.csr"],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The OpenAI-compatible fixture server (see `tests/fixtures/llm_server.py`).
pub struct LlmServer {
    _child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    http: reqwest::Client,
}

impl LlmServer {
    pub async fn start() -> LlmServer {
        let (child, port) = start_python(Path::new("python3"), "llm_server.py", &[]).await;
        LlmServer {
            _child: child,
            port,
            http: reqwest::Client::new(),
        }
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// `[llm]` for this server: generous quota, 5 s timeout, 2 retries.
    pub fn config(&self) -> LlmConfig {
        let mut c = LlmConfig::new(self.base_url(), "fixture-model");
        c.timeout = Duration::from_secs(5);
        c.max_retries = 2;
        c.requests_per_minute = 60_000;
        c.burst_requests = Some(1000);
        c.tokens_per_minute = 10_000_000;
        c
    }

    /// Sets the answers: `queue` in order, then `default` forever. An answer
    /// is `{"status", "content", "delay", "retry_after", "raw"}`.
    pub async fn script(&self, default: Value, queue: Vec<Value>) {
        self.http
            .post(format!("http://127.0.0.1:{}/_script", self.port))
            .json(&json!({ "default": default, "queue": queue }))
            .send()
            .await
            .expect("script the LLM fixture")
            .error_for_status()
            .expect("script accepted");
    }

    /// Always answers `content` (200, with usage).
    pub async fn reply(&self, content: &str) {
        self.script(json!({ "status": 200, "content": content }), vec![]).await;
    }

    /// Every chat request received: `{"t", "authorization", "body"}`.
    pub async fn requests(&self) -> Vec<Value> {
        self.http
            .get(format!("http://127.0.0.1:{}/_requests", self.port))
            .send()
            .await
            .expect("read the LLM fixture's requests")
            .json()
            .await
            .expect("requests JSON")
    }
}

/// The SMTP fixture server (see `tests/fixtures/smtp_server.py`).
pub struct SmtpServer {
    _child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// What it speaks.
    pub tls: TlsMode,
    /// Its certificate and, under `messages/`, `N.eml` and `N.json`.
    pub dir: tempfile::TempDir,
}

impl SmtpServer {
    /// A plain SMTP server.
    pub async fn start() -> SmtpServer {
        Self::start_with(TlsMode::None).await
    }

    /// A server speaking `tls` (STARTTLS required, or TLS from the first
    /// byte) with a fresh certificate for 127.0.0.1 signed by a fresh test
    /// CA ([`SmtpServer::ca_file`]; both made with the `openssl` command).
    pub async fn start_with(tls: TlsMode) -> SmtpServer {
        let python = repo_root().join(".cache/test-tools-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/fetch-test-tools (scripts/test does)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("messages");
        let out = out.to_str().expect("utf-8 temp path").to_owned();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let mut args = vec![out];
        if tls != TlsMode::None {
            make_certificates(dir.path());
            let flag = if tls == TlsMode::Tls { "--tls" } else { "--starttls" };
            args.extend([flag.to_owned(), path_str(&cert), path_str(&key)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (child, port) = start_python(&python, "smtp_server.py", &args).await;
        SmtpServer {
            _child: child,
            port,
            tls,
            dir,
        }
    }

    /// The CA that signed a TLS server's certificate (for `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("messages")
    }

    /// `[smtp]` for this server, sending as `from` (TLS servers: trusting
    /// their certificate).
    pub fn config(&self, from: &str) -> SmtpConfig {
        SmtpConfig {
            from: from.into(),
            tls: self.tls,
            ca_file: (self.tls != TlsMode::None).then(|| self.ca_file()),
            ..Self::config_for_port(self.port)
        }
    }

    /// `[smtp]` for a plain SMTP server on 127.0.0.1:`port`.
    pub fn config_for_port(port: u16) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: TlsMode::None,
            from: "reports@kairos.test".into(),
            username_env: None,
            password_env: None,
            timeout: Duration::from_secs(10),
            ca_file: None,
        }
    }

    /// The parsed messages received so far, in order.
    pub fn messages(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for n in 1.. {
            let path = self.out().join(format!("{n}.json"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                break;
            };
            out.push(serde_json::from_str(&text).expect("fixture JSON"));
        }
        out
    }

    /// Lets the server answer the DATA it is withholding (the first message
    /// to each `hold...@` recipient; see `tests/fixtures/smtp_server.py`).
    pub fn release(&self) {
        std::fs::write(self.out().join("release"), b"").expect("write the release file");
    }

    /// The raw bytes of message `n` (from 1).
    pub fn raw(&self, n: usize) -> Vec<u8> {
        std::fs::read(self.out().join(format!("{n}.eml"))).expect("raw message")
    }

    /// Whether message `n` (to a `hold...@` address) is held: received,
    /// written, and its sender still waiting for the answer to DATA.
    pub fn held(&self, n: usize) -> bool {
        self.out().join(format!("{n}.held")).exists()
    }

    /// Waits until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages after {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! A role started while its store is down waits for it (`[startup]`),
//! logging each attempt, and comes up once the store answers.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::common::*;

/// Forwards every connection on `listener` to `target`: Postgres "comes
/// up" on the proxy's port when this starts.
async fn proxy(listener: TcpListener, target: String) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_started_while_the_store_is_down_waits_for_it() {
    let rules = "[[rules]]\non = \"*\"\nrun = [\"activity\"]\n";
    // The API (and the database) on the real Postgres.
    let app = spawn_app_with_roles(
        Deployment::Distributed,
        rules,
        kairos::Roles {
            api: true,
            scheduler: true,
            worker: false,
        },
    )
    .await;

    // A port where nothing listens yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = url::Url::parse(&app.env.store_url).unwrap();
    let pg_target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let mut proxied = url.clone();
    proxied.set_port(Some(port)).unwrap();
    let config = app.env.config_file(&format!(
        "{rules}\n[startup]\nwait = \"60s\"\nbackoff_initial = \"200ms\"\nbackoff_max = \"1s\"\n"
    ));
    let mut cmd = kairos_cmd(&config, &["worker"]);
    cmd.env("KAIROS__STORE__URL", proxied.as_str())
        .env("KAIROS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn kairos worker");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("worker: {line}");
            sink.lock().unwrap().push(line);
        }
    });

    // The worker is waiting, not dead, and says so.
    let waiting = wait_for(Duration::from_secs(20), || {
        let lines = lines.clone();
        async move { lines.lock().unwrap().iter().any(|l| l.contains("not reachable yet")) }
    })
    .await;
    assert!(waiting, "no retry log line: {:?}", lines.lock().unwrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(child.try_wait().unwrap().is_none(), "the worker exited while waiting");

    // The store "comes back".
    let up_at = started.elapsed();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(proxy(listener, pg_target));

    let (s, b) = app.post_events(&event("s1", "user.logged_in", "acct", json!({}))).await;
    assert_eq!(s, 202, "{b}");
    let jobs = app.wait_settled(&job_ids(&b), Duration::from_secs(60)).await;
    assert_eq!(jobs[0].state.to_string(), "succeeded", "{:?}", jobs[0]);
    let retries = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("not reachable yet"))
        .count();
    println!(
        "start-up wait: store down for {up_at:?} ({retries} logged retries); worker up and the job done {:?} after start",
        started.elapsed()
    );
    child.kill().await.ok();
}

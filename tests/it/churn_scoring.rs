//! Churn models trained from a CSV, scored on new rows: by `kairos score
//! churn`, by `POST /v1/churn:score` and by an independent Python
//! re-implementation (`tests/fixtures/churn_score.py`) — all three must agree,
//! which proves the stored preprocessing is applied exactly as in training.
//! Also: `--test FILE`, the refit on every row, `models show` and `export`,
//! and the activation refusal naming the columns accounts do not have.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{run_cli, spawn_app, Deployment, Env};

/// A labelled CSV with numeric columns (some blank), a categorical one and
/// an id, from a fixed logistic process (a small LCG, so the file is the
/// same on every run).
fn write_csv(path: &Path, rows: usize, seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("customer,plan,seats,monthly_fee,tenure_months,churned\n");
    for i in 0..rows {
        let plan = ["basic", "pro", "enterprise"][(next() * 3.0) as usize % 3];
        let seats = 1 + (next() * 40.0) as u32;
        let fee = 20.0 + next() * 280.0;
        let tenure = (next() * 60.0) as u32;
        let z =
            -0.5 + if plan == "basic" { 0.9 } else { -0.4 } - 0.05 * tenure as f64 + 0.004 * fee - 0.02 * seats as f64;
        let churned = next() < 1.0 / (1.0 + (-z).exp());
        let fee_cell = if i % 17 == 3 {
            String::new()
        } else {
            format!("{fee:.2}")
        };
        out.push_str(&format!(
            "C{i:04},{plan},{seats},{fee_cell},{tenure},{}\n",
            if churned { "yes" } else { "no" }
        ));
    }
    std::fs::write(path, out).unwrap();
}

/// `id → probability` from `id,probability,...` CSV text (header skipped when present).
fn probabilities(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with("id,"))
        .map(|l| {
            let mut cells = l.split(',');
            let id = cells.next().unwrap().to_string();
            (id, cells.next().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

fn version_from(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("registered model "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in:\n{stdout}"))
        .to_string()
}

fn python_scores(model: &Path, rows: &Path) -> HashMap<String, f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/churn_score.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(rows)
        .arg("customer")
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    probabilities(&String::from_utf8_lossy(&out.stdout))
}

#[tokio::test]
async fn a_csv_trained_model_scores_the_same_by_cli_api_and_an_independent_python_implementation() {
    let app = spawn_app(Deployment::Embedded, "").await;
    let dir = app.env.dir.path().to_path_buf();
    let config = app.env.config_file("");
    let (train, new_rows) = (dir.join("train.csv"), dir.join("new.csv"));
    write_csv(&train, 600, 7);
    write_csv(&new_rows, 5, 99);

    // Train for the tenant: 20 % held out, then the shipped model refitted on all 600 rows.
    let (ok, stdout, stderr) = run_cli(
        &config,
        &[
            "train",
            "churn",
            "--csv",
            train.to_str().unwrap(),
            "--label",
            "churned",
            "--id-column",
            "customer",
            "--tenant",
            "tenant-a",
        ],
    )
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    let version = version_from(&stdout);
    assert!(stdout.contains("95 % CI"), "{stdout}");
    assert!(stdout.contains("shipped model fitted on 600 rows"), "{stdout}");
    assert!(stdout.contains("reliability (held-out):"), "{stdout}");

    // The artifact, exactly as stored; `models show` prints its preprocessing.
    let artifact = dir.join("model.json");
    let (ok, _, stderr) = run_cli(
        &config,
        &["models", "export", &version, "--out", artifact.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{stderr}");
    let model: Value = serde_json::from_slice(&std::fs::read(&artifact).unwrap()).unwrap();
    assert_eq!(model["training"]["final_fit_rows"], 600);
    let (ok, shown, _) = run_cli(&config, &["models", "show", &version]).await;
    assert!(ok);
    let fee = model["schema"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "monthly_fee")
        .unwrap();
    assert!(fee["missing_in_training"].as_u64().unwrap() > 0, "{fee}");
    for needle in [
        format!("{:.4}", fee["impute"].as_f64().unwrap()),
        format!("{:.4}", fee["mean"].as_f64().unwrap()),
        format!("{:.4}", fee["std"].as_f64().unwrap()),
        "basic, enterprise, pro".to_string(),
    ] {
        assert!(shown.contains(&needle), "`{needle}` not in models show:\n{shown}");
    }

    // CLI scores == Python's re-implementation, row by row.
    let scored = dir.join("scored.csv");
    let (ok, _, stderr) = run_cli(
        &config,
        &[
            "score",
            "churn",
            "--model",
            &version,
            "--csv",
            new_rows.to_str().unwrap(),
            "--id-column",
            "customer",
            "--out",
            scored.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let cli = probabilities(&std::fs::read_to_string(&scored).unwrap());
    let python = python_scores(&artifact, &new_rows);
    assert_eq!(cli.len(), 5);
    for (id, p) in &python {
        let q = cli[id];
        assert!((p - q).abs() <= 1e-12, "{id}: python {p} vs kairos {q}");
    }

    // The API, with the tenant's model named, answers the same for the same rows.
    let text = std::fs::read_to_string(&new_rows).unwrap();
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        ids.push(c[0].to_string());
        let fee = if c[3].is_empty() {
            Value::Null
        } else {
            json!(c[3].parse::<f64>().unwrap())
        };
        rows.push(
            json!({"plan": c[1], "seats": c[2].parse::<f64>().unwrap(), "monthly_fee": fee,
                         "tenure_months": c[4].parse::<f64>().unwrap()}),
        );
    }
    let resp = app
        .http
        .post(format!("{}/v1/churn:score", app.base))
        .bearer_auth(&app.key)
        .json(&json!({"model": version, "rows": rows, "explain": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["model_version"], version.as_str());
    for (i, id) in ids.iter().enumerate() {
        let p = body["scores"][i]["probability"].as_f64().unwrap();
        assert!((p - cli[id]).abs() <= 1e-12, "{id}: api {p} vs cli {}", cli[id]);
        assert!(body["scores"][i]["factors"].as_array().unwrap().len() <= 2);
    }

    // A typo is a 400 naming the row and column, not a silent "missing".
    let resp = app
        .http
        .post(format!("{}/v1/churn:score", app.base))
        .bearer_auth(&app.key)
        .json(&json!({"model": version, "rows": [{"plan": "pro"}, {"tenure_monhts": 3}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body.to_string().contains("rows[1].tenure_monhts"), "{body}");

    // No model is active for the tenant yet (CSV columns are not account features): 404, and the
    // activation refusal names every column accounts do not have.
    let resp = app
        .http
        .post(format!("{}/v1/churn:score", app.base))
        .bearer_auth(&app.key)
        .json(&json!({"rows": [{"plan": "pro"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let (ok, stdout, stderr) = run_cli(&config, &["models", "activate", &version]).await;
    assert!(!ok, "{stdout}");
    for column in ["`plan`", "`seats`", "`monthly_fee`", "`tenure_months`"] {
        assert!(stderr.contains(column), "{column} not in: {stderr}");
    }

    // Another tenant cannot use this tenant's model.
    let other = app.store.create_tenant("tenant-b", None).await.unwrap();
    let resp = app
        .http
        .post(format!("{}/v1/churn:score", app.base))
        .bearer_auth(&other.secret)
        .json(&json!({"model": version, "rows": [{"plan": "pro"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_separate_test_file_is_never_seen_by_the_model() {
    let env = Env::new(Deployment::Embedded).await;
    let dir: PathBuf = env.dir.path().to_path_buf();
    let config = env.config_file("");
    let (train, test) = (dir.join("train.csv"), dir.join("test.csv"));
    write_csv(&train, 500, 1);
    write_csv(&test, 200, 2);
    let (ok, stdout, stderr) = tokio::time::timeout(
        Duration::from_secs(120),
        run_cli(
            &config,
            &[
                "train",
                "churn",
                "--csv",
                train.to_str().unwrap(),
                "--test",
                test.to_str().unwrap(),
                "--label",
                "churned",
                "--id-column",
                "customer",
            ],
        ),
    )
    .await
    .unwrap();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("held-out (200 rows"), "{stdout}");
    assert!(stdout.contains("500 trained, 200 held out"), "{stdout}");
    assert!(stdout.contains("shipped model fitted on 500 rows"), "{stdout}");

    // A test file whose column changed kind is refused, naming the column.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "customer,plan,seats,monthly_fee,tenure_months,churned\nX1,pro,many,10,3,no\nX2,basic,2,10,3,yes\n",
    )
    .unwrap();
    let (ok, _, stderr) = run_cli(
        &config,
        &[
            "train",
            "churn",
            "--csv",
            train.to_str().unwrap(),
            "--test",
            bad.to_str().unwrap(),
            "--label",
            "churned",
            "--id-column",
            "customer",
        ],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("seats"), "{stderr}");
}

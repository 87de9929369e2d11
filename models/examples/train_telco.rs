//! Trains the churn model on the IBM Telco CSV and reports held-out metrics, training time and scoring
//! throughput; writes the model, the split and the held-out probabilities for `bench/churn/compare.py`.
//!
//! ```text
//! scripts/fetch-churn-data
//! cargo run --release -p kairos-models --example train_telco -- .cache/data/telco/Customer_Churn.csv \
//!     [--out .cache/churn/telco] [--seed 42] [--label Churn]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap in a test is a failed test

use std::error::Error;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use kairos_models::churn::{
    self, synthetic, ChurnModel, CsvOptions, Dataset, FeatureTable, FieldValue, Record, TrainConfig, TrainEvent,
};

struct Args {
    csv: PathBuf,
    out: PathBuf,
    seed: u64,
    label: String,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: train_telco CSV [--out DIR] [--seed N] [--label COLUMN]";
    let mut args = std::env::args().skip(1);
    let mut csv = None;
    let mut out = PathBuf::from(".cache/churn/telco");
    let mut seed = 42;
    let mut label = "Churn".to_string();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().ok_or(usage)?.into(),
            "--seed" => seed = args.next().ok_or(usage)?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--label" => label = args.next().ok_or(usage)?,
            "-h" | "--help" => return Err(usage.into()),
            _ if csv.is_none() => csv = Some(PathBuf::from(a)),
            _ => return Err(usage.into()),
        }
    }
    Ok(Args {
        csv: csv.ok_or(usage)?,
        out,
        seed,
        label,
    })
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

/// Runs `f` (which scores `n` accounts) repeatedly for at least a second; returns accounts per second.
fn throughput(n: usize, mut f: impl FnMut() -> Result<f64, Box<dyn Error>>) -> Result<f64, Box<dyn Error>> {
    let start = Instant::now();
    let mut scored = 0usize;
    let mut sink = 0.0;
    while start.elapsed().as_secs_f64() < 1.0 {
        sink += f()?;
        scored += n;
    }
    std::hint::black_box(sink);
    Ok(scored as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.out)?;

    let t = Instant::now();
    let data = Dataset::from_csv_path(&args.csv, &CsvOptions::new(args.label.clone()))?;
    println!(
        "loaded {} rows ({} churned) from {} in {:.3}s; {} feature columns; dropped: {:?}",
        data.len(),
        data.positives(),
        args.csv.display(),
        t.elapsed().as_secs_f64(),
        data.features().columns().len(),
        data.dropped()
            .iter()
            .map(|d| format!("{} ({:?})", d.name, d.reason))
            .collect::<Vec<_>>()
    );

    let config = TrainConfig {
        seed: args.seed,
        version: Some(format!("telco-seed{}", args.seed)),
        ..Default::default()
    };
    let mut on_event = |e: &TrainEvent| match e {
        TrainEvent::SearchStep { step, steps, .. } if step % 7 == 0 || step == steps => {
            eprint!("\r  search {step}/{steps}");
            if step == steps {
                eprintln!();
            }
        }
        TrainEvent::AlphaScored { alpha, mean_auc } => eprintln!("  alpha {alpha:>6}: CV AUC {mean_auc:.4}"),
        TrainEvent::FinalFit { alpha, rows, features } => {
            eprintln!("  final fit: alpha {alpha}, {rows} rows x {features} encoded features")
        }
        _ => {}
    };
    let outcome = churn::train_with_progress(&data, &config, &mut on_event)?;
    let model = &outcome.model;
    let m = model.metrics();
    let s = model.training();
    println!(
        "\n== held-out metrics ({} rows, {} churned; split 80/20 stratified, seed {}) ==",
        m.rows, m.positives, s.seed
    );
    println!("ROC AUC    {:.4}", m.auc);
    println!("accuracy   {:.4}   (threshold p > {})", m.accuracy, m.threshold);
    println!("precision  {}", opt(m.precision));
    println!("recall     {}", opt(m.recall));
    println!("F1         {}", opt(m.f1));
    println!(
        "Brier      {:.4}   log loss {:.4}   ECE {:.4}",
        m.brier, m.log_loss, m.expected_calibration_error
    );
    println!("confusion  {:?}", m.confusion);
    println!(
        "chosen alpha {} (sklearn C = {:.4}); training time {:.3}s",
        s.alpha,
        1.0 / s.alpha,
        s.training_seconds
    );
    println!("reliability (bin: n, mean predicted, observed):");
    for b in &m.reliability {
        println!(
            "  [{:.1},{:.1}) n={:<5} pred={} obs={}",
            b.lower,
            b.upper,
            b.count,
            opt(b.mean_predicted),
            opt(b.observed_rate)
        );
    }
    let mut coefs: Vec<(&String, f64)> = model
        .encoded_features()
        .iter()
        .zip(model.coefficients().iter().copied())
        .collect();
    coefs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    println!("largest coefficients (standardised / one-hot):");
    for (name, c) in coefs.iter().take(8) {
        println!("  {c:+.3}  {name}");
    }

    // Artifacts for the Python comparison.
    let model_path = args.out.join("model.json");
    model.save(&model_path)?;
    let table = data.features();
    outcome.split.write_csv(
        BufWriter::new(File::create(args.out.join("split.csv"))?),
        table.lines(),
        table.ids(),
    )?;
    let mut w = csv::Writer::from_path(args.out.join("test_predictions.csv"))?;
    w.write_record(["row", "probability"])?;
    for (r, p) in outcome.split.test.iter().zip(&outcome.test_probabilities) {
        w.write_record([r.to_string(), format!("{p:.17}")])?;
    }
    w.flush()?;

    // Round trip: the reloaded model must give identical held-out probabilities.
    let reloaded = ChurnModel::load(&model_path)?;
    let all = reloaded.score_table(table)?;
    let same = outcome
        .split
        .test
        .iter()
        .zip(&outcome.test_probabilities)
        .all(|(&r, &p)| all[r] == p);
    println!(
        "\nsaved {} (reload gives identical held-out probabilities: {same})",
        model_path.display()
    );

    // Explanation of the riskiest held-out customer.
    let (riskiest, p) = outcome
        .split
        .test
        .iter()
        .zip(&outcome.test_probabilities)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .ok_or("no held-out rows")?;
    let why = reloaded.explain_table_row(table, *riskiest, 5)?;
    let id = table.ids().map(|ids| ids[*riskiest].as_str()).unwrap_or("?");
    println!("riskiest held-out customer {id}: p={p:.3} {}", why.risk);
    for f in &why.factors {
        println!("  {:+.3}  {} = {}", f.contribution, f.feature, f.value);
    }

    // Throughput.
    println!("\n== scoring throughput (single thread) ==");
    let n = table.len();
    let rate = throughput(n, || Ok(reloaded.score_table(table)?.iter().sum()))?;
    println!("score_table (CSV schema, encode + score): {rate:>12.0} accounts/s");
    let records: Vec<Record> = (0..n)
        .map(|r| {
            table
                .columns()
                .iter()
                .map(|c| {
                    let v = match &c.data {
                        churn::ColumnData::Numeric(v) => FieldValue::from(v[r]),
                        churn::ColumnData::Categorical(v) => {
                            v[r].as_deref().map_or(FieldValue::Missing, FieldValue::from)
                        }
                    };
                    (c.name.clone(), v)
                })
                .collect()
        })
        .collect();
    let rate = throughput(n, || Ok(reloaded.score_records(&records)?.iter().sum()))?;
    println!("score_records (keyed JSON-like records):  {rate:>12.0} accounts/s");

    let accounts = synthetic::generate(&synthetic::SyntheticConfig {
        accounts: 100_000,
        seed: 1,
        missing_rate: 0.02,
    })?;
    let account_data = synthetic::to_dataset("synthetic", &accounts)?;
    let quick = TrainConfig {
        cv_folds: 0,
        alphas: vec![1.0],
        ..Default::default()
    };
    let account_model = churn::train(&account_data, &quick)?.model;
    let features: Vec<_> = accounts.iter().map(|a| a.features.clone()).collect();
    let rate = throughput(features.len(), || {
        Ok(account_model.score_accounts(&features)?.iter().sum())
    })?;
    println!("score_accounts (AccountFeatures, 15 numeric): {rate:>9.0} accounts/s");
    let account_table = FeatureTable::from_accounts("synthetic", &features, None)?;
    let rate = throughput(features.len(), || {
        Ok(account_model.score_table(&account_table)?.iter().sum())
    })?;
    println!("score_table (accounts table):             {rate:>12.0} accounts/s");
    println!(
        "(synthetic account model: held-out AUC {:.4}, n=100000)",
        account_model.metrics().auc
    );
    Ok(())
}

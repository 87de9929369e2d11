//! Kairos's models: **churn scoring** ([`churn`]) and **text models** ([`text`]: sentence embeddings on ONNX Runtime,
//! a trainable sentiment head, drop-in ONNX classifiers and es/en language detection; see that module for the API).
//!
//! # Churn scoring
//!
//! A churn model is an L2-regularised logistic regression (linfa) over standardised numeric and one-hot
//! categorical features. Logistic regression is deliberate: on tabular churn data it is as accurate as
//! trees in our measurements, it is calibrated enough to turn into risk levels, it scores millions of accounts
//! per second, and every prediction decomposes exactly into per-feature contributions.
//!
//! ```no_run
//! use std::path::Path;
//! use kairos_models::churn::{self, ChurnModel, CsvOptions, Dataset, FeatureTable, TrainConfig};
//!
//! # fn main() -> Result<(), churn::ChurnError> {
//! // 1. Load any labelled CSV (`--csv FILE --label COLUMN`).
//! let data = Dataset::from_csv_path(Path::new("customers.csv"), &CsvOptions::new("Churn").id_column("customerID"))?;
//! // 2. Train: stratified 80/20 split, 5-fold search of the L2 strength, held-out metrics.
//! let outcome = churn::train_with_progress(&data, &TrainConfig::default(), &mut |event| eprintln!("{event:?}"))?;
//! let model = outcome.model;
//! println!("held-out AUC {:.3}", model.metrics().auc);
//! // 3. Save / load a versioned, validated JSON artifact.
//! model.save(Path::new("churn-model.json"))?;
//! let model = ChurnModel::load(Path::new("churn-model.json"))?;
//! // 4. Score new rows read against the model's schema, with explanations.
//! let table = FeatureTable::from_csv_path_with_schema(Path::new("new.csv"), model.schema(), Some("customerID"))?;
//! let probabilities = model.score_table(&table)?;
//! let why = model.explain_table_row(&table, 0, 5)?;
//! println!("{:.2} {} {:?}", probabilities[0], why.risk, why.factors);
//! # Ok(()) }
//! ```
//!
//! ## Public API
//! * Data — [`churn::Dataset`] (features + labels; `from_csv_path`, `from_csv_reader`, `from_accounts`),
//!   [`churn::FeatureTable`] (features only; `from_csv_path_with_schema` for scoring, `from_accounts`, `new`),
//!   [`churn::CsvOptions`], [`churn::LabelMap`]. Column-kind, id-dropping and label rules are documented on
//!   [`churn::Dataset`].
//! * Encoding — [`churn::FeatureSchema`] (median imputation, standardisation, one-hot; unknown or blank
//!   category → all zeros), learned from training rows only and stored in the model.
//! * Training — [`churn::train`], [`churn::train_with_progress`] (callback of [`churn::TrainEvent`]s; the
//!   library prints nothing), [`churn::train_on_split`] (caller's split), [`churn::TrainConfig`],
//!   [`churn::Split`] (stratified, seeded, `write_csv` for other tools).
//! * Evaluation — [`churn::Metrics`] (AUC, accuracy, precision, recall, F1 at the threshold, Brier, log
//!   loss, ECE, 10-bin reliability table) and the functions [`churn::roc_auc`], [`churn::brier_score`],
//!   [`churn::reliability_table`], [`churn::Confusion`].
//! * The artifact — [`churn::ChurnModel`]: `save`/`load`/`from_json` (validated, format-versioned JSON with
//!   kind, version, schema, coefficients, intercept, threshold, risk thresholds, provenance and metrics);
//!   scoring by `score_table` (named columns), `score_records` (JSON-like [`churn::Record`]s),
//!   `score_numeric` (raw matrix, all-numeric models, fastest), `score_accounts`, `predict_encoded`;
//!   explanations by `explain_table_row`, `explain_record`, `explain_account` ([`churn::Explanation`],
//!   contribution = coefficient × standardised value, top-k by magnitude).
//! * Risk — [`churn::RiskLevel::from_probability`] (LOW / MEDIUM / HIGH / CRITICAL above 0.3 / 0.5 / 0.7),
//!   [`churn::RiskThresholds`] for other cut-offs.
//! * Kairos accounts — [`churn::AccountFeatures`] (the 15 signals of the product brief, all optional), and
//!   [`churn::synthetic`] (a seeded generator with a documented ground-truth churn process).

#![warn(missing_docs)]

pub mod churn;
pub mod text;

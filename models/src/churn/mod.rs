//! Churn scoring: tabular data → logistic-regression model → probabilities, risk levels and explanations.
//!
//! See the [crate docs](crate) for the walk-through; the pieces are:
//! [`Dataset`] / [`FeatureTable`] (loading), [`FeatureSchema`] (encoding), [`train()`] (fitting and held-out
//! evaluation), [`ChurnModel`] (the artifact: save, load, score, explain), [`Metrics`] (AUC, calibration),
//! [`RiskLevel`], [`AccountFeatures`] (Kairos's own schema) and [`synthetic`] (generated accounts).

mod account;
mod data;
mod error;
mod metrics;
mod model;
mod preprocess;
mod risk;
mod rng;
mod split;
pub mod synthetic;
mod train;

pub use account::{AccountFeatures, ACCOUNT_FEATURE_COUNT};
pub use data::{Column, ColumnData, CsvOptions, Dataset, DropReason, DroppedColumn, FeatureTable, LabelMap};
pub use error::{ChurnError, Result};
pub use metrics::{
    auc_bootstrap_interval, brier_score, log_loss, reliability_table, roc_auc, AucInterval, Confusion, Metrics,
    ReliabilityBin,
};
pub use model::{
    AlphaScore, ChurnModel, Explanation, Factor, FieldValue, ModelKind, Record, TrainingSummary, MODEL_FORMAT,
    MODEL_FORMAT_VERSION,
};
pub use preprocess::{FeatureEncoding, FeatureSchema, FeatureSpec};
pub use risk::{RiskLevel, RiskThresholds};
pub use split::Split;
pub use train::{train, train_on_split, train_with_progress, TrainConfig, TrainEvent, TrainOutcome};

//! The trained churn model: a versioned, self-describing artifact that scores and explains.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, ArrayView2};
use serde::{Deserialize, Serialize};

use super::account::AccountFeatures;
use super::data::{parse_number, ColumnData, DroppedColumn, FeatureTable};
use super::error::{ChurnError, Result};
use super::metrics::Metrics;
use super::preprocess::{FeatureEncoding, FeatureSchema};
use super::risk::{RiskLevel, RiskThresholds};

/// The `format` tag of a model file, so a stray JSON file is not mistaken for a model.
pub const MODEL_FORMAT: &str = "kairos.churn-model";
/// The artifact layout version this crate writes and reads. Bumped on incompatible changes; older readers
/// refuse newer files instead of misreading them.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// Which algorithm produced the coefficients. Only logistic regression today; a tagged field so that a later
/// kind (e.g. tree ensembles) can be added without guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// L2-regularised logistic regression on the encoded features.
    LogisticRegression,
}

/// Cross-validated score of one regularisation strength tried during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlphaScore {
    /// L2 strength (linfa's `alpha`: penalty `alpha/2 · ‖w‖²` added to the *summed* log-loss; scikit-learn's
    /// `C` is `1/alpha`).
    pub alpha: f64,
    /// Mean validation AUC over the folds.
    pub mean_auc: f64,
}

/// Where the model came from: data set, split and chosen hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Data set name (CSV file stem, or the caller's name).
    pub dataset: String,
    /// Rows in the data set.
    pub rows: usize,
    /// Churned rows in the data set.
    pub positives: usize,
    /// Label column.
    pub label_column: String,
    /// Rows used to fit.
    pub train_rows: usize,
    /// Held-out rows the [`Metrics`] were measured on.
    pub test_rows: usize,
    /// Requested held-out fraction.
    pub test_fraction: f64,
    /// Seed of the split and folds.
    pub seed: u64,
    /// Chosen L2 strength.
    pub alpha: f64,
    /// Every strength tried, with its validation AUC (empty when no search ran).
    pub alpha_search: Vec<AlphaScore>,
    /// Folds of the search (0 when no search ran).
    pub cv_folds: usize,
    /// Input columns that were not used, and why.
    pub dropped_columns: Vec<DroppedColumn>,
    /// Wall-clock seconds of the whole training (search, final fit, evaluation).
    pub training_seconds: f64,
    /// Rows the shipped coefficients were fitted on: `train_rows` + `test_rows` when the model was refitted
    /// on every row after its held-out evaluation, `train_rows` otherwise (and in older artifacts, where 0
    /// is read as `train_rows`).
    #[serde(default)]
    pub final_fit_rows: usize,
    /// The chosen strength was at the edge of the searched grid.
    #[serde(default)]
    pub alpha_at_edge: bool,
    /// What a data scientist should know about this training run.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One input value of a [`Record`]. In JSON: a number, a string, or `null` (missing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A number (a numeric feature, or a categorical level written as a number).
    Number(f64),
    /// Text (a categorical level, or a number written as text).
    Text(String),
    /// Missing: imputed for numeric features, all zeros for categorical ones.
    Missing,
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::Number(v)
    }
}

impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Text(v.to_string())
    }
}

impl From<Option<f64>> for FieldValue {
    fn from(v: Option<f64>) -> Self {
        v.map_or(FieldValue::Missing, FieldValue::Number)
    }
}

/// One account's raw input values keyed by feature name, e.g. from a JSON API body. A feature absent from the
/// map is missing; keys the model does not know are ignored.
pub type Record = HashMap<String, FieldValue>;

/// One feature's share of a prediction (see [`Explanation`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Feature (input column) name.
    pub feature: String,
    /// The account's value, for display (`"missing"` if blank; unseen categories say so).
    pub value: String,
    /// Whether the value was missing (numeric: the median was used; categorical: contributes 0).
    pub missing: bool,
    /// Contribution to the log-odds of churn: coefficient × standardised value for a numeric feature, the
    /// coefficient of the account's level for a categorical one. Positive pushes towards churn.
    pub contribution: f64,
}

/// Why the model scored an account as it did: `logit = intercept + Σ contributions` over all features,
/// `probability = σ(logit)`. Only the top factors are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Churn probability.
    pub probability: f64,
    /// Its risk level under the model's thresholds.
    pub risk: RiskLevel,
    /// Log-odds of churn.
    pub logit: f64,
    /// The model's intercept (the log-odds of an all-average account).
    pub intercept: f64,
    /// Largest factors by absolute contribution, largest first.
    pub factors: Vec<Factor>,
}

impl Explanation {
    /// Factors that push towards churn (positive contribution), largest first: the "top risk factors" that
    /// retention actions are chosen from.
    pub fn risk_factors(&self) -> impl Iterator<Item = &Factor> {
        self.factors.iter().filter(|f| f.contribution > 0.0)
    }
}

/// A trained churn model and everything needed to use and audit it: feature schema (with imputation and
/// standardisation parameters), coefficients, decision threshold, risk thresholds, provenance and held-out
/// metrics. Serialised as JSON by [`ChurnModel::save`]; [`ChurnModel::load`] refuses inconsistent files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedModel")]
pub struct ChurnModel {
    format: String,
    format_version: u32,
    kind: ModelKind,
    version: String,
    trained_at: String,
    schema: FeatureSchema,
    encoded_features: Vec<String>,
    coefficients: Vec<f64>,
    intercept: f64,
    threshold: f64,
    risk_thresholds: RiskThresholds,
    training: TrainingSummary,
    metrics: Metrics,
}

/// The serialised form before validation: every way of deserialising a [`ChurnModel`] goes through
/// [`ChurnModel::validate`], so an inconsistent model can never be scored.
#[derive(Deserialize)]
struct UncheckedModel {
    format: String,
    format_version: u32,
    kind: ModelKind,
    version: String,
    trained_at: String,
    schema: FeatureSchema,
    encoded_features: Vec<String>,
    coefficients: Vec<f64>,
    intercept: f64,
    threshold: f64,
    risk_thresholds: RiskThresholds,
    training: TrainingSummary,
    metrics: Metrics,
}

impl TryFrom<UncheckedModel> for ChurnModel {
    type Error = ChurnError;

    fn try_from(u: UncheckedModel) -> Result<Self> {
        let model = ChurnModel {
            format: u.format,
            format_version: u.format_version,
            kind: u.kind,
            version: u.version,
            trained_at: u.trained_at,
            schema: u.schema,
            encoded_features: u.encoded_features,
            coefficients: u.coefficients,
            intercept: u.intercept,
            threshold: u.threshold,
            risk_thresholds: u.risk_thresholds,
            training: u.training,
            metrics: u.metrics,
        };
        model.validate()?;
        Ok(model)
    }
}

/// One feature's raw value for one row, whatever the source.
enum Cell<'a> {
    Num(Option<f64>),
    Cat(Option<Cow<'a, str>>),
}

/// Logistic function, without overflow for large |z|.
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl ChurnModel {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        version: String,
        schema: FeatureSchema,
        coefficients: Vec<f64>,
        intercept: f64,
        threshold: f64,
        risk_thresholds: RiskThresholds,
        training: TrainingSummary,
        metrics: Metrics,
    ) -> Result<Self> {
        let model = ChurnModel {
            format: MODEL_FORMAT.into(),
            format_version: MODEL_FORMAT_VERSION,
            kind: ModelKind::LogisticRegression,
            version,
            trained_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            encoded_features: schema.encoded_names(),
            schema,
            coefficients,
            intercept,
            threshold,
            risk_thresholds,
            training,
            metrics,
        };
        model.validate()?;
        Ok(model)
    }

    /// Checks that the artifact is consistent: known format and version, one finite coefficient per encoded
    /// feature, valid schema, thresholds in range. [`ChurnModel::load`] calls it; scoring relies on it.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ChurnError::InvalidModel(m));
        if self.format != MODEL_FORMAT {
            return bad(format!("format is {:?}, expected {MODEL_FORMAT:?}", self.format));
        }
        if self.format_version != MODEL_FORMAT_VERSION {
            return bad(format!(
                "format version {} is not supported (this build reads {MODEL_FORMAT_VERSION})",
                self.format_version
            ));
        }
        if self.version.trim().is_empty() {
            return bad("the version string is blank".into());
        }
        self.schema.validate()?;
        if self.encoded_features != self.schema.encoded_names() {
            return bad("encoded feature names do not match the schema".into());
        }
        if self.coefficients.len() != self.schema.width() {
            return bad(format!(
                "{} coefficients for {} encoded features",
                self.coefficients.len(),
                self.schema.width()
            ));
        }
        if !self.intercept.is_finite() || self.coefficients.iter().any(|c| !c.is_finite()) {
            return bad("non-finite coefficient or intercept".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!("threshold {} is not in [0, 1]", self.threshold));
        }
        self.risk_thresholds
            .validate()
            .map_err(|e| ChurnError::InvalidModel(e.to_string()))
    }

    /// Writes the model as pretty JSON, atomically (temporary file, then rename), so a reader never sees half
    /// a model.
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| ChurnError::Io {
            path: path.into(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|source| ChurnError::Json {
            path: path.into(),
            source,
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads and validates a model written by [`ChurnModel::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ChurnError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_json(&bytes).map_err(|e| match e {
            ChurnError::Json { source, .. } => ChurnError::Json {
                path: path.into(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates a model from JSON bytes (for models kept in a database rather than a file).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        // Parse the unchecked form first so that validation failures stay typed (`InvalidModel`).
        let unchecked: UncheckedModel = serde_json::from_slice(bytes).map_err(|source| ChurnError::Json {
            path: "<bytes>".into(),
            source,
        })?;
        ChurnModel::try_from(unchecked)
    }

    /// The algorithm.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Version string (caller-supplied at training, or `churn-lr-<UTC timestamp>`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// When it was trained (RFC 3339, UTC).
    pub fn trained_at(&self) -> &str {
        &self.trained_at
    }

    /// The feature schema (input columns, encodings, imputation and standardisation).
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// Names of the encoded inputs, parallel to [`ChurnModel::coefficients`].
    pub fn encoded_features(&self) -> &[String] {
        &self.encoded_features
    }

    /// Coefficients on the standardised / one-hot inputs (log-odds per standard deviation, or per level).
    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    /// The coefficient of an encoded input by name (`"tenure"`, `"Contract=Two year"`).
    pub fn coefficient(&self, encoded_name: &str) -> Option<f64> {
        self.encoded_features
            .iter()
            .position(|n| n == encoded_name)
            .map(|i| self.coefficients[i])
    }

    /// Intercept (log-odds).
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Decision threshold: [`ChurnModel::predict_churn`] is `probability > threshold`.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Risk-level thresholds used by [`ChurnModel::risk_level`] and explanations.
    pub fn risk_thresholds(&self) -> RiskThresholds {
        self.risk_thresholds
    }

    /// Provenance: data set, split, seed, chosen regularisation.
    pub fn training(&self) -> &TrainingSummary {
        &self.training
    }

    /// Held-out metrics measured at training time (at `metrics().threshold`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The same model under another version string (e.g. the store's id for it).
    pub fn with_version(mut self, version: impl Into<String>) -> Result<Self> {
        self.version = version.into();
        self.validate()?;
        Ok(self)
    }

    /// The same model with another decision threshold. The stored metrics keep the threshold they were
    /// measured at.
    pub fn with_threshold(mut self, threshold: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(ChurnError::InvalidConfig(format!(
                "threshold {threshold} is not in [0, 1]"
            )));
        }
        self.threshold = threshold;
        Ok(self)
    }

    /// The same model with other risk thresholds.
    pub fn with_risk_thresholds(mut self, thresholds: RiskThresholds) -> Result<Self> {
        thresholds.validate()?;
        self.risk_thresholds = thresholds;
        Ok(self)
    }

    /// Risk level of a probability under this model's thresholds.
    pub fn risk_level(&self, probability: f64) -> RiskLevel {
        self.risk_thresholds.level(probability)
    }

    /// Whether a probability counts as predicted churn (`> threshold`).
    pub fn predict_churn(&self, probability: f64) -> bool {
        probability > self.threshold
    }

    /// Probabilities for an already-encoded matrix (rows × encoded features, in
    /// [`ChurnModel::encoded_features`] order, as [`FeatureSchema::encode_table`] produces).
    pub fn predict_encoded(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        if x.ncols() != self.coefficients.len() {
            return Err(ChurnError::SchemaMismatch(format!(
                "matrix has {} columns, the model has {} encoded features",
                x.ncols(),
                self.coefficients.len()
            )));
        }
        let w = ndarray::ArrayView1::from(&self.coefficients[..]);
        let mut z = x.dot(&w);
        z.mapv_inplace(|v| sigmoid(v + self.intercept));
        Ok(z)
    }

    /// Probabilities for every row of a table (columns matched by name; extra columns ignored). Encodes in
    /// blocks so memory stays bounded for large tables.
    pub fn score_table(&self, table: &FeatureTable) -> Result<Vec<f64>> {
        const BLOCK: usize = 8192;
        let mut out = Vec::with_capacity(table.len());
        let mut start = 0;
        while start < table.len() {
            let rows: Vec<usize> = (start..(start + BLOCK).min(table.len())).collect();
            let x = self.schema.encode_rows(table, &rows)?;
            out.extend(self.predict_encoded(x.view())?);
            start += BLOCK;
        }
        Ok(out)
    }

    /// Folds standardisation into the weights: `z = b' + Σ w'_j x_j` on raw numeric values.
    fn raw_weights(&self) -> Result<(Vec<(f64, f64)>, f64)> {
        if !self.schema.is_all_numeric() {
            return Err(ChurnError::SchemaMismatch(
                "raw numeric scoring needs a model whose features are all numeric".into(),
            ));
        }
        let mut bias = self.intercept;
        let mut weights = Vec::with_capacity(self.coefficients.len());
        for (spec, &w) in self.schema.features.iter().zip(&self.coefficients) {
            if let FeatureEncoding::Numeric { impute, mean, std, .. } = spec.encoding {
                bias -= w * mean / std;
                weights.push((w / std, impute));
            }
        }
        Ok((weights, bias))
    }

    /// Fast path for all-numeric models: probabilities for a matrix of **raw** values (rows × features in
    /// schema order, not standardised); NaN or infinite entries are missing and get the training median.
    pub fn score_numeric(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        let (weights, bias) = self.raw_weights()?;
        if x.ncols() != weights.len() {
            return Err(ChurnError::SchemaMismatch(format!(
                "matrix has {} columns, the model has {} features",
                x.ncols(),
                weights.len()
            )));
        }
        Ok(x.rows()
            .into_iter()
            .map(|row| {
                let z = row.iter().zip(&weights).fold(bias, |acc, (&v, &(w, impute))| {
                    acc + w * if v.is_finite() { v } else { impute }
                });
                sigmoid(z)
            })
            .collect())
    }

    /// Positions of the model's features among [`AccountFeatures::FEATURE_NAMES`].
    fn account_positions(&self) -> Result<Vec<usize>> {
        self.schema
            .features
            .iter()
            .map(|f| {
                AccountFeatures::FEATURE_NAMES
                    .iter()
                    .position(|n| *n == f.name)
                    .ok_or_else(|| {
                        ChurnError::SchemaMismatch(format!("model feature `{}` is not an account feature", f.name))
                    })
            })
            .collect()
    }

    /// Probabilities for Kairos accounts (the model must have been trained on [`AccountFeatures`], e.g. via
    /// [`crate::churn::Dataset::from_accounts`]; it may use a subset of the fields).
    pub fn score_accounts(&self, accounts: &[AccountFeatures]) -> Result<Vec<f64>> {
        let (weights, bias) = self.raw_weights()?;
        let positions = self.account_positions()?;
        Ok(accounts
            .iter()
            .map(|a| {
                let values = a.values();
                let z = positions.iter().zip(&weights).fold(bias, |acc, (&p, &(w, impute))| {
                    acc + w * values[p].filter(|v| v.is_finite()).unwrap_or(impute)
                });
                sigmoid(z)
            })
            .collect())
    }

    /// Probabilities for records keyed by feature name (see [`Record`]). A numeric feature accepts a number
    /// or numeric text; anything else is a [`ChurnError::BadValue`] naming the record and feature.
    pub fn score_records(&self, records: &[Record]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(records.len());
        let mut encoded = vec![0.0; self.coefficients.len()];
        for (row, record) in records.iter().enumerate() {
            let cells = self.record_cells(row, record)?;
            self.encode_cells(&cells, &mut encoded);
            let z = encoded
                .iter()
                .zip(&self.coefficients)
                .fold(self.intercept, |acc, (x, w)| acc + x * w);
            out.push(sigmoid(z));
        }
        Ok(out)
    }

    /// Explains one record: probability, risk level and the `k` largest contributions.
    pub fn explain_record(&self, record: &Record, k: usize) -> Result<Explanation> {
        let cells = self.record_cells(0, record)?;
        Ok(self.explain_cells(&cells, k))
    }

    /// Explains row `row` of a table.
    pub fn explain_table_row(&self, table: &FeatureTable, row: usize, k: usize) -> Result<Explanation> {
        if row >= table.len() {
            return Err(ChurnError::InvalidConfig(format!(
                "row {row} is beyond the table's {} rows",
                table.len()
            )));
        }
        let columns = self.schema.bind(table)?;
        let cells: Vec<Cell<'_>> = columns
            .iter()
            .map(|c| match c {
                ColumnData::Numeric(v) => Cell::Num(v[row]),
                ColumnData::Categorical(v) => Cell::Cat(v[row].as_deref().map(Cow::Borrowed)),
            })
            .collect();
        Ok(self.explain_cells(&cells, k))
    }

    /// Explains one Kairos account.
    pub fn explain_account(&self, account: &AccountFeatures, k: usize) -> Result<Explanation> {
        let positions = self.account_positions()?;
        let values = account.values();
        let cells: Vec<Cell<'_>> = positions
            .iter()
            .map(|&p| Cell::Num(values[p].filter(|v| v.is_finite())))
            .collect();
        Ok(self.explain_cells(&cells, k))
    }

    fn record_cells<'r>(&self, row: usize, record: &'r Record) -> Result<Vec<Cell<'r>>> {
        self.schema
            .features
            .iter()
            .map(|f| {
                let value = record.get(&f.name).unwrap_or(&FieldValue::Missing);
                let bad = |reason: String| ChurnError::BadValue {
                    row,
                    column: f.name.clone(),
                    reason,
                };
                Ok(match (&f.encoding, value) {
                    (_, FieldValue::Missing) => match f.encoding {
                        FeatureEncoding::Numeric { .. } => Cell::Num(None),
                        FeatureEncoding::Categorical { .. } => Cell::Cat(None),
                    },
                    (FeatureEncoding::Numeric { .. }, FieldValue::Number(v)) => {
                        if !v.is_finite() {
                            return Err(bad(format!("{v} is not a finite number")));
                        }
                        Cell::Num(Some(*v))
                    }
                    (FeatureEncoding::Numeric { .. }, FieldValue::Text(t)) => {
                        let t = t.trim();
                        if t.is_empty() {
                            Cell::Num(None)
                        } else {
                            Cell::Num(Some(
                                parse_number(t).ok_or_else(|| bad(format!("{t:?} is not a number")))?,
                            ))
                        }
                    }
                    (FeatureEncoding::Categorical { .. }, FieldValue::Text(t)) => {
                        let t = t.trim();
                        Cell::Cat((!t.is_empty()).then_some(Cow::Borrowed(t)))
                    }
                    (FeatureEncoding::Categorical { .. }, FieldValue::Number(v)) => {
                        Cell::Cat(Some(Cow::Owned(v.to_string())))
                    }
                })
            })
            .collect()
    }

    fn encode_cells(&self, cells: &[Cell<'_>], out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        let mut offset = 0;
        for (spec, cell) in self.schema.features.iter().zip(cells) {
            match (&spec.encoding, cell) {
                (FeatureEncoding::Numeric { .. }, Cell::Num(v)) => {
                    out[offset] = spec.standardise(*v).unwrap_or(0.0);
                }
                (FeatureEncoding::Categorical { levels }, Cell::Cat(Some(level))) => {
                    if let Some(i) = levels.iter().position(|l| l == level) {
                        out[offset + i] = 1.0;
                    }
                }
                _ => {}
            }
            offset += spec.width();
        }
    }

    fn explain_cells(&self, cells: &[Cell<'_>], k: usize) -> Explanation {
        let mut factors = Vec::with_capacity(cells.len());
        let mut logit = self.intercept;
        for ((spec, cell), offset) in self.schema.features.iter().zip(cells).zip(self.schema.offsets()) {
            let (value, missing, contribution) = match (&spec.encoding, cell) {
                (FeatureEncoding::Numeric { impute, .. }, Cell::Num(v)) => {
                    let c = self.coefficients[offset] * spec.standardise(*v).unwrap_or(0.0);
                    match v {
                        Some(v) => (v.to_string(), false, c),
                        None => (format!("missing (median {impute} used)"), true, c),
                    }
                }
                (FeatureEncoding::Categorical { levels }, Cell::Cat(Some(level))) => {
                    match levels.iter().position(|l| l == level) {
                        Some(i) => (level.to_string(), false, self.coefficients[offset + i]),
                        None => (format!("{level} (not seen in training)"), false, 0.0),
                    }
                }
                _ => ("missing".to_string(), true, 0.0),
            };
            logit += contribution;
            factors.push(Factor {
                feature: spec.name.clone(),
                value,
                missing,
                contribution,
            });
        }
        factors.sort_by(|a, b| {
            b.contribution
                .abs()
                .total_cmp(&a.contribution.abs())
                .then(a.feature.cmp(&b.feature))
        });
        factors.truncate(k);
        let probability = sigmoid(logit);
        Explanation {
            probability,
            risk: self.risk_level(probability),
            logit,
            intercept: self.intercept,
            factors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(-800.0) < 1e-300);
        assert_eq!(sigmoid(800.0), 1.0);
        assert!((sigmoid(2.0) + sigmoid(-2.0) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn field_values_from_json() {
        let r: Record = serde_json::from_str(r#"{"a": 1.5, "b": "x", "c": null}"#).unwrap();
        assert_eq!(r["a"], FieldValue::Number(1.5));
        assert_eq!(r["b"], FieldValue::Text("x".into()));
        assert_eq!(r["c"], FieldValue::Missing);
    }
}

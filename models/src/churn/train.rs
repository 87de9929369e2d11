//! Training: stratified split, regularisation search by cross-validation, final fit, held-out evaluation.

use std::time::Instant;

use linfa::prelude::Fit;
use linfa::DatasetBase;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};

use super::data::{Dataset, FeatureTable};
use super::error::{ChurnError, Result};
use super::metrics::{auc_bootstrap_interval, roc_auc, Metrics};
use super::model::{sigmoid, AlphaScore, ChurnModel, TrainingSummary};
use super::preprocess::FeatureSchema;
use super::risk::RiskThresholds;
use super::split::{stratified_folds, Split};

/// Training settings. `Default` is what the Telco benchmark uses: 80/20 split, seed 42, 5-fold search over
/// eleven L2 strengths (0.01 … 1000, five decades), threshold 0.5, 1,000 bootstrap resamples for the AUC
/// interval, and the final model refitted on every row.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Seed of the split and the folds: same seed, same data → same model.
    pub seed: u64,
    /// Held-out fraction (stratified).
    pub test_fraction: f64,
    /// Folds of the regularisation search on the training rows; 0 skips the search and uses `alphas[0]`.
    pub cv_folds: usize,
    /// L2 strengths to try (linfa's `alpha`, on the summed log-loss; scikit-learn `C = 1/alpha`).
    pub alphas: Vec<f64>,
    /// Decision threshold stored in the model and used for accuracy / precision / recall.
    pub threshold: f64,
    /// Risk-level thresholds stored in the model.
    pub risk_thresholds: RiskThresholds,
    /// L-BFGS iteration cap per fit.
    pub max_iterations: u64,
    /// L-BFGS gradient-norm tolerance.
    pub gradient_tolerance: f64,
    /// Model version; `None` gives `churn-lr-<UTC timestamp>`.
    pub version: Option<String>,
    /// After the held-out evaluation, fit the shipped model again on training *and* held-out rows with the
    /// chosen strength. The stored metrics stay those of the held-out evaluation (a slightly pessimistic
    /// estimate for the refitted model, which saw 25 % more data); without the refit the held-out rows would
    /// never reach the model a user runs. Off when the held-out rows are a separate test file that must stay
    /// unseen (`kairos train churn --test`).
    pub refit_on_all: bool,
    /// Bootstrap resamples for the held-out AUC's 95 % interval; 0 skips it.
    pub bootstrap_resamples: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 42,
            test_fraction: 0.2,
            cv_folds: 5,
            alphas: vec![0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0],
            threshold: 0.5,
            risk_thresholds: RiskThresholds::default(),
            max_iterations: 1000,
            gradient_tolerance: 1e-6,
            version: None,
            refit_on_all: true,
            bootstrap_resamples: 1000,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ChurnError::InvalidConfig(m));
        if self.alphas.is_empty() || self.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return bad("alphas must be a non-empty list of positive numbers".into());
        }
        if self.cv_folds == 1 {
            return bad("cv_folds must be 0 (no search) or at least 2".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return bad(format!("threshold {} is not in [0, 1]", self.threshold));
        }
        if self.max_iterations == 0 || !(self.gradient_tolerance.is_finite() && self.gradient_tolerance > 0.0) {
            return bad("max_iterations and gradient_tolerance must be positive".into());
        }
        self.risk_thresholds.validate()
    }
}

/// Progress of a training run, for a progress bar or a job log. The library prints nothing itself.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrainEvent {
    /// The split is made.
    Split {
        /// Training rows.
        train: usize,
        /// Held-out rows.
        test: usize,
    },
    /// A cross-validation fit finished (`step` of `steps`).
    SearchStep {
        /// 1-based step.
        step: usize,
        /// Total steps (folds × alphas).
        steps: usize,
        /// Strength just fitted.
        alpha: f64,
        /// 0-based fold.
        fold: usize,
    },
    /// One strength's mean validation AUC.
    AlphaScored {
        /// The strength.
        alpha: f64,
        /// Its mean AUC over the folds.
        mean_auc: f64,
    },
    /// The chosen strength is the smallest or largest of the grid: the best value may lie outside it, so
    /// the search should be widened (`alphas`). Also recorded in the model's training summary.
    AlphaAtEdge {
        /// The chosen strength.
        alpha: f64,
    },
    /// The fit on the training rows, evaluated on the held-out rows, is starting.
    FinalFit {
        /// Chosen strength.
        alpha: f64,
        /// Training rows.
        rows: usize,
        /// Encoded features.
        features: usize,
    },
    /// The shipped model is being refitted on every row (training and held-out) with the chosen strength.
    Refit {
        /// Rows of the refit.
        rows: usize,
    },
    /// Training and evaluation are done.
    Done {
        /// Held-out AUC.
        auc: f64,
        /// Wall-clock seconds.
        seconds: f64,
    },
}

/// A trained model plus what a caller needs to reproduce or audit its evaluation.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The model (its [`ChurnModel::metrics`] are the held-out metrics).
    pub model: ChurnModel,
    /// The split used.
    pub split: Split,
    /// Held-out probabilities, parallel to `split.test`.
    pub test_probabilities: Vec<f64>,
}

/// Trains a model with a stratified split made from `config` (no progress reporting).
pub fn train(data: &Dataset, config: &TrainConfig) -> Result<TrainOutcome> {
    train_with_progress(data, config, &mut |_| {})
}

/// [`train`] with a progress callback.
pub fn train_with_progress(
    data: &Dataset,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainOutcome> {
    config.validate()?;
    let split = Split::stratified(data.labels(), config.test_fraction, config.seed)?;
    train_on_split(data, split, config, progress)
}

/// Trains on a caller-chosen split (e.g. a time-based one, or one shared with another tool). The split's
/// seed also seeds the search folds. `config.seed` and `config.test_fraction` are not used.
pub fn train_on_split(
    data: &Dataset,
    split: Split,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&TrainEvent),
) -> Result<TrainOutcome> {
    let started = Instant::now();
    config.validate()?;
    let labels = data.labels();
    let n = labels.len();
    if split.train.iter().chain(&split.test).any(|&r| r >= n) {
        return Err(ChurnError::InvalidConfig(format!(
            "split names a row beyond the data's {n} rows"
        )));
    }
    for rows in [&split.train, &split.test] {
        let positives = rows.iter().filter(|&&r| labels[r]).count();
        if positives == 0 || positives == rows.len() {
            return Err(ChurnError::SingleClass {
                positives,
                negatives: rows.len() - positives,
            });
        }
    }
    progress(&TrainEvent::Split {
        train: split.train.len(),
        test: split.test.len(),
    });
    let table = data.features();

    let (alpha, alpha_search, search) = search_alpha(table, labels, &split.train, split.seed, config, progress)?;

    let mut warnings = Vec::new();
    let alpha_at_edge = search && {
        let lo = config.alphas.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = config.alphas.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        alpha == lo || alpha == hi
    };
    if alpha_at_edge {
        progress(&TrainEvent::AlphaAtEdge { alpha });
        warnings.push(format!(
            "the chosen L2 strength {alpha} is at the edge of the searched grid; the best value may lie beyond it \
             (widen the grid)"
        ));
    }

    // Fit on the training rows, evaluation on the held-out rows.
    let schema = FeatureSchema::fit(table, &split.train)?;
    let x_train = schema.encode_rows(table, &split.train)?;
    let y_train: Vec<bool> = split.train.iter().map(|&r| labels[r]).collect();
    progress(&TrainEvent::FinalFit {
        alpha,
        rows: split.train.len(),
        features: x_train.ncols(),
    });
    let (coefficients, intercept) = fit_logistic(&x_train, &y_train, alpha, config)?;
    let x_test = schema.encode_rows(table, &split.test)?;
    let y_test: Vec<bool> = split.test.iter().map(|&r| labels[r]).collect();
    let test_probabilities: Vec<f64> = linear_scores(&x_test, &coefficients, intercept)
        .into_iter()
        .map(sigmoid)
        .collect();
    let mut metrics = Metrics::compute(&test_probabilities, &y_test, config.threshold)?;
    if config.bootstrap_resamples > 0 {
        metrics.auc_interval =
            auc_bootstrap_interval(&test_probabilities, &y_test, config.bootstrap_resamples, split.seed);
    }

    // The shipped model: the same strength refitted on every row, so no labelled row is wasted.
    let (schema, coefficients, intercept, final_fit_rows) = if config.refit_on_all {
        let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
        all.sort_unstable();
        progress(&TrainEvent::Refit { rows: all.len() });
        let schema = FeatureSchema::fit(table, &all)?;
        let x_all = schema.encode_rows(table, &all)?;
        let y_all: Vec<bool> = all.iter().map(|&r| labels[r]).collect();
        let (w, b) = fit_logistic(&x_all, &y_all, alpha, config)?;
        (schema, w, b, all.len())
    } else {
        (schema, coefficients, intercept, split.train.len())
    };
    let seconds = started.elapsed().as_secs_f64();
    let auc = metrics.auc;

    let training = TrainingSummary {
        dataset: table.name().to_string(),
        rows: n,
        positives: data.positives(),
        label_column: data.label_column().to_string(),
        train_rows: split.train.len(),
        test_rows: split.test.len(),
        test_fraction: split.test_fraction,
        seed: split.seed,
        alpha,
        alpha_search,
        cv_folds: if search { config.cv_folds } else { 0 },
        dropped_columns: data.dropped().to_vec(),
        training_seconds: seconds,
        final_fit_rows,
        alpha_at_edge,
        warnings,
    };
    let version = config
        .version
        .clone()
        .unwrap_or_else(|| format!("churn-lr-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    let model = ChurnModel::from_parts(
        version,
        schema,
        coefficients,
        intercept,
        config.threshold,
        config.risk_thresholds,
        training,
        metrics,
    )?;
    progress(&TrainEvent::Done { auc, seconds });
    Ok(TrainOutcome {
        model,
        split,
        test_probabilities,
    })
}

/// The regularisation search: `config.cv_folds`-fold stratified cross-validation over `config.alphas` on
/// `rows`, each fold's schema fitted on its own fitting rows. Returns the chosen strength, every strength's
/// mean validation AUC, and whether a search ran (otherwise `alphas[0]`).
fn search_alpha(
    table: &FeatureTable,
    labels: &[bool],
    rows: &[usize],
    seed: u64,
    config: &TrainConfig,
    progress: &mut dyn FnMut(&TrainEvent),
) -> Result<(f64, Vec<AlphaScore>, bool)> {
    let mut alpha_search = Vec::new();
    let mut alpha = config.alphas[0];
    let search = config.cv_folds >= 2 && config.alphas.len() > 1;
    if search {
        let k = config.cv_folds;
        let train_pos = rows.iter().filter(|&&r| labels[r]).count();
        if train_pos < k || rows.len() - train_pos < k {
            return Err(ChurnError::InvalidConfig(format!(
                "{k}-fold search needs at least {k} rows of each class in the training set"
            )));
        }
        let folds = stratified_folds(labels, rows, k, seed);
        let mut sums = vec![0.0; config.alphas.len()];
        let steps = k * config.alphas.len();
        let mut step = 0;
        for (f, validation) in folds.iter().enumerate() {
            let mut fit_rows: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|(g, _)| *g != f)
                .flat_map(|(_, fold)| fold.iter().copied())
                .collect();
            fit_rows.sort_unstable();
            let schema = FeatureSchema::fit(table, &fit_rows)?;
            let x_fit = schema.encode_rows(table, &fit_rows)?;
            let y_fit: Vec<bool> = fit_rows.iter().map(|&r| labels[r]).collect();
            let x_val = schema.encode_rows(table, validation)?;
            let y_val: Vec<bool> = validation.iter().map(|&r| labels[r]).collect();
            for (a, &candidate) in config.alphas.iter().enumerate() {
                let (w, b) = fit_logistic(&x_fit, &y_fit, candidate, config)?;
                let scores = linear_scores(&x_val, &w, b);
                sums[a] += roc_auc(&scores, &y_val)?;
                step += 1;
                progress(&TrainEvent::SearchStep {
                    step,
                    steps,
                    alpha: candidate,
                    fold: f,
                });
            }
        }
        let mut best = f64::NEG_INFINITY;
        for (&candidate, sum) in config.alphas.iter().zip(sums) {
            let mean_auc = sum / k as f64;
            progress(&TrainEvent::AlphaScored {
                alpha: candidate,
                mean_auc,
            });
            // Ties (within noise) go to the stronger penalty: the simpler model.
            if mean_auc > best + 1e-9 || ((mean_auc - best).abs() <= 1e-9 && candidate > alpha) {
                best = mean_auc;
                alpha = candidate;
            }
            alpha_search.push(AlphaScore {
                alpha: candidate,
                mean_auc,
            });
        }
    }

    Ok((alpha, alpha_search, search))
}

/// `x · w + b` per row (log-odds).
fn linear_scores(x: &Array2<f64>, w: &[f64], b: f64) -> Vec<f64> {
    let w = ndarray::ArrayView1::from(w);
    x.dot(&w).into_iter().map(|z| z + b).collect()
}

/// Fits L2 logistic regression with linfa and returns (coefficients, intercept) for **P(churned)**.
///
/// linfa's binary model predicts the probability of its "positive" class, which it takes to be the *more
/// frequent* label — usually "not churned". We read which class it chose and flip the signs if needed, so the
/// stored coefficients always model churn.
fn fit_logistic(x: &Array2<f64>, y: &[bool], alpha: f64, config: &TrainConfig) -> Result<(Vec<f64>, f64)> {
    let targets = Array1::from(y.to_vec());
    // Column-major copy: linfa's loss and gradient run faster on it (matrixmultiply packs less).
    let x_cols = x.t().as_standard_layout().into_owned().reversed_axes();
    let dataset = DatasetBase::new(x_cols.view(), targets);
    let fitted = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(config.max_iterations)
        .gradient_tolerance(config.gradient_tolerance)
        .fit(&dataset)
        .map_err(|e| ChurnError::Fit(e.to_string()))?;
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let w: Vec<f64> = fitted.params().iter().map(|v| sign * v).collect();
    let b = sign * fitted.intercept();
    if !b.is_finite() || w.iter().any(|v| !v.is_finite()) {
        return Err(ChurnError::Fit("the solver produced non-finite coefficients".into()));
    }
    Ok((w, b))
}

//! Training a [`SentimentHead`]: read labelled files, embed, split, choose the regularisation by cross-validation on
//! the training split, fit, and evaluate on the held-out split, overall and per language.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;

use super::calibration::{
    calibration_from_set, expected_calibration_error, fit_calibration, negative_calibration_error, softmax,
    Calibration, CalibrationExample, CalibrationMethod, CalibrationReport, MethodScore,
};
use super::data::LabeledDataset;
use super::encoder::{Encoder, EncoderFingerprint, DEFAULT_BATCH_SIZE};
use super::error::TextError;
use super::head::{AlphaScore, DatasetSummary, HeadMetrics, Sentiment, SentimentHead, TrainingInfo};
use super::lang::detect_language;
use super::metrics::{evaluate, EvalMetrics};
use super::pooling::Embeddings;

/// The language key of examples whose language was neither given nor detected.
pub const UNDETERMINED_LANGUAGE: &str = "und";

/// How to train a head. The defaults are what `models/examples/sentiment_train.rs` reports numbers for.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Fraction of each (label, language) stratum held out for evaluation (0 < f < 1).
    pub test_fraction: f64,
    /// Seed of the split and of the folds: the same data and seed give the same head.
    pub seed: u64,
    /// L2 strengths tried (linfa's `alpha`, on the summed log-loss).
    pub alphas: Vec<f64>,
    /// Folds of the stratified cross-validation on the training split that picks the strength (≥ 2).
    pub folds: usize,
    /// L-BFGS iterations per fit.
    pub max_iterations: u64,
    /// Texts per encoder call while embedding.
    pub batch_size: usize,
    /// Reweight classes to equal total weight (by repeating minority-class examples) so that a rare class is
    /// predicted more often; the held-out metrics are computed on the untouched split either way. Off by default: on
    /// the fetched English + Spanish data it over-predicted neutral and lowered Spanish accuracy by ~0.11 on average
    /// over four splits (models/MODELS.md).
    pub balance_classes: bool,
    /// The version string stored in the artifact.
    pub version: String,
    /// Per-language calibration fitted on out-of-fold logits of the training split (`None`: off).
    pub calibration: Option<CalibrationMethod>,
    /// Fit the calibration on the final head's logits of the **held-out split** (its rows of `calibrate_on`) instead
    /// of out-of-fold logits of the training split. For an encoder adapted on the training rows
    /// (`models/finetune/`): it has seen those rows with their labels, so even out-of-fold logits of them are more
    /// confident than a new text's, and maps fitted on them make held-out probabilities worse (models/MODELS.md).
    /// The head's held-out report then includes the rows the maps were fitted on (it says so).
    pub calibrate_on_held_out: bool,
    /// Folds of the cross-validation that makes the out-of-fold logits (≥ 2).
    pub calibration_folds: usize,
    /// Fit the calibration only on examples of these data sets (by name; empty: all). Calibrating on the texts most
    /// like the users' (e.g. support tickets rather than film reviews) fits their class balance.
    pub calibrate_on: Vec<String>,
    /// A language gets its own calibration map only with at least this many calibration examples (else the pooled
    /// map applies).
    pub calibration_min_examples: usize,
    /// Data set name → how many times each of its training rows counts in every fit (default 1): gives texts like
    /// the users' (support tickets) more say than a large registry set of another domain (film reviews, tweets).
    /// Applied inside each fit, after the split and the folds, so no copy of a row reaches an evaluation row.
    pub dataset_weights: BTreeMap<String, usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            test_fraction: 0.2,
            seed: 42,
            alphas: vec![0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
            folds: 3,
            max_iterations: 300,
            batch_size: DEFAULT_BATCH_SIZE,
            balance_classes: false,
            version: "1".into(),
            calibration: Some(CalibrationMethod::TemperatureBias),
            calibrate_on_held_out: false,
            calibration_folds: 5,
            calibrate_on: Vec::new(),
            calibration_min_examples: 50,
            dataset_weights: BTreeMap::new(),
        }
    }
}

/// Progress of training, for a progress bar or a log; the library itself prints nothing.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrainEvent {
    /// The data sets were merged: examples kept and exact duplicates dropped.
    Prepared {
        /// Examples kept.
        examples: usize,
        /// Duplicate texts dropped.
        duplicates_removed: usize,
    },
    /// `done` of `total` texts embedded.
    Embedding {
        /// Texts embedded so far.
        done: usize,
        /// Texts to embed.
        total: usize,
    },
    /// One L2 strength was cross-validated.
    AlphaScored(AlphaScore),
    /// The final head was fitted on the whole training split.
    Fitted {
        /// The chosen strength.
        alpha: f64,
    },
    /// The held-out evaluation is done.
    Evaluated {
        /// Held-out accuracy.
        accuracy: f64,
        /// Held-out macro-F1.
        macro_f1: f64,
    },
}

/// Labelled examples with their embeddings: the input of [`fit_head`]. Built by [`embed_datasets`], or by hand
/// from embeddings computed elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedExamples {
    /// One row per example.
    pub embeddings: Embeddings,
    /// The label of each row.
    pub labels: Vec<Sentiment>,
    /// The language key of each row (`en`, `es`, another code, or `und`).
    pub languages: Vec<String>,
    /// What each data set contributed.
    pub datasets: Vec<DatasetSummary>,
    /// Exact duplicate texts dropped.
    pub duplicates_removed: usize,
}

/// Reads, merges, deduplicates and embeds `datasets`, and determines each example's language (given, else detected,
/// else `und`).
///
/// Exact duplicate texts (after trimming) are dropped, keeping the first: the public data sets contain some, and a
/// text in both the training and the test split would inflate the held-out metrics.
pub fn embed_datasets(
    encoder: &Encoder,
    datasets: &[LabeledDataset],
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<EmbeddedExamples, TextError> {
    embed_datasets_with(datasets, progress, &mut |texts, progress| {
        encoder.embed_batched(texts, config.batch_size, progress)
    })
}

/// What [`embed_datasets_with`] embeds with: the texts and a `(done, total)` progress callback → one row per text.
pub type EmbedFn<'a> = dyn FnMut(&[&str], &mut dyn FnMut(usize, usize)) -> Result<Embeddings, TextError> + 'a;

/// [`embed_datasets`] with the embedding done by `embed` (given the merged texts and a `(done, total)` progress
/// callback): e.g. an embedding cache in front of the encoder, so that re-running a training with a few texts added
/// embeds only those.
pub fn embed_datasets_with(
    datasets: &[LabeledDataset],
    progress: &mut dyn FnMut(TrainEvent),
    embed: &mut EmbedFn<'_>,
) -> Result<EmbeddedExamples, TextError> {
    let mut seen = HashSet::new();
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    let mut languages = Vec::new();
    let mut summaries = Vec::new();
    let mut duplicates_removed = 0;
    for dataset in datasets {
        let mut summary = DatasetSummary {
            name: dataset.name.clone(),
            examples: 0,
            per_label: BTreeMap::new(),
            per_language: BTreeMap::new(),
        };
        for example in &dataset.examples {
            if !seen.insert(example.text.as_str()) {
                duplicates_removed += 1;
                continue;
            }
            let language = example
                .lang
                .clone()
                .or_else(|| detect_language(&example.text).map(|l| l.code().to_string()))
                .unwrap_or_else(|| UNDETERMINED_LANGUAGE.to_string());
            summary.examples += 1;
            *summary.per_label.entry(example.label).or_insert(0) += 1;
            *summary.per_language.entry(language.clone()).or_insert(0) += 1;
            texts.push(example.text.as_str());
            labels.push(example.label);
            languages.push(language);
        }
        summaries.push(summary);
    }
    progress(TrainEvent::Prepared {
        examples: texts.len(),
        duplicates_removed,
    });
    let embeddings = embed(&texts, &mut |done, total| {
        progress(TrainEvent::Embedding { done, total })
    })?;
    if embeddings.len() != texts.len() {
        return Err(TextError::Training(format!(
            "{} embeddings for {} texts",
            embeddings.len(),
            texts.len()
        )));
    }
    Ok(EmbeddedExamples {
        embeddings,
        labels,
        languages,
        datasets: summaries,
        duplicates_removed,
    })
}

/// Trains a head from labelled data sets end to end: [`embed_datasets`] then [`fit_head`].
///
/// This is what a `kairos train sentiment --data FILE...` command calls; load files with
/// [`LabeledDataset::from_path`]. Synchronous and CPU-bound (embedding dominates: ~4,000 short texts take well under
/// a minute on two cores).
pub fn train_sentiment_head(
    encoder: &Encoder,
    datasets: &[LabeledDataset],
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<SentimentHead, TextError> {
    let examples = embed_datasets(encoder, datasets, config, progress)?;
    fit_head(&examples, encoder.fingerprint().clone(), config, progress)
}

/// Recalibrates a trained head on labelled texts kept apart from its training data (`datasets`): embeds them, chooses
/// the method by 5-fold cross-fitting on them (no map when none beats the head's softmax) and fits the per-language
/// maps on all of them ([`calibration_from_set`]), in place of the head's own. For heads whose training rows cannot
/// calibrate them honestly (an encoder adapted on those rows has seen them) and for calibrating to texts like the
/// users'. Returns the head and the cross-fitted scores the method was chosen by.
pub fn calibrate_on_datasets(
    head: SentimentHead,
    encoder: &Encoder,
    datasets: &[LabeledDataset],
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<(SentimentHead, Vec<MethodScore>), TextError> {
    head.check_encoder(encoder.fingerprint())?;
    let examples = embed_datasets(encoder, datasets, config, progress)?;
    let head = head.with_calibration(None)?;
    let labels = head.labels().to_vec();
    let mut rows = Vec::with_capacity(examples.labels.len());
    for (i, (label, language)) in examples.labels.iter().zip(&examples.languages).enumerate() {
        let truth = labels.iter().position(|l| l == label).ok_or_else(|| {
            TextError::Training(format!(
                "calibration texts are labelled {} but the head only knows {:?}",
                label.as_str(),
                labels.iter().map(|l| l.as_str()).collect::<Vec<_>>()
            ))
        })?;
        let embedding = examples
            .embeddings
            .get(i)
            .ok_or_else(|| TextError::Training("an embedding is missing".into()))?;
        rows.push(CalibrationExample {
            logits: head.logits(embedding)?,
            truth,
            language: language.clone(),
        });
    }
    if rows.is_empty() {
        return Err(TextError::Training("no calibration texts".into()));
    }
    let fitted_on = format!(
        "labelled texts kept apart from training ({}); {} examples",
        datasets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
        rows.len()
    );
    let (calibration, scores) = calibration_from_set(&rows, config.calibration_min_examples, fitted_on);
    Ok((head.with_calibration(calibration)?, scores))
}

/// Splits, cross-validates the L2 strength on the training split, fits, evaluates on the held-out split and returns
/// the head with its metrics. `encoder` is recorded in the artifact: pass the fingerprint of the encoder that made the
/// embeddings.
///
/// The head's labels are the labels present in the data (three when there are neutral examples, else two).
pub fn fit_head(
    examples: &EmbeddedExamples,
    encoder: EncoderFingerprint,
    config: &TrainConfig,
    progress: &mut dyn FnMut(TrainEvent),
) -> Result<SentimentHead, TextError> {
    validate_config(config)?;
    let n = examples.labels.len();
    if examples.embeddings.len() != n || examples.languages.len() != n {
        return Err(TextError::Training(format!(
            "{} embeddings, {} labels and {} languages do not line up",
            examples.embeddings.len(),
            n,
            examples.languages.len()
        )));
    }
    if examples.embeddings.dim() != encoder.dimension {
        return Err(TextError::Dimension {
            expected: encoder.dimension,
            got: examples.embeddings.dim(),
        });
    }
    let label_set: Vec<Sentiment> = examples
        .labels
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if label_set.len() < 2 {
        return Err(TextError::Training(format!(
            "the data has only the label(s) {label_set:?}; at least two are needed"
        )));
    }
    let targets: Vec<usize> = examples
        .labels
        .iter()
        .map(|l| label_set.iter().position(|x| x == l).unwrap_or(0))
        .collect();

    if let Some(name) = config
        .dataset_weights
        .keys()
        .find(|name| !examples.datasets.iter().any(|d| &d.name == *name))
    {
        return Err(TextError::Training(format!(
            "dataset_weights names an unknown data set {name:?}"
        )));
    }
    // Held-out split, stratified by (label, language) so every language is represented in proportion.
    let strata: Vec<(Sentiment, &str)> = examples
        .labels
        .iter()
        .zip(&examples.languages)
        .map(|(&label, language)| (label, language.as_str()))
        .collect();
    let (train, test) = stratified_split(&strata, config.test_fraction, config.seed);
    for (k, label) in label_set.iter().enumerate() {
        let count = train.iter().filter(|&&i| targets[i] == k).count();
        if count < config.folds {
            return Err(TextError::Training(format!(
                "label {label} has {count} training examples; at least {} (the number of folds) are needed",
                config.folds
            )));
        }
    }

    // Choose alpha by stratified k-fold cross-validation on the training split only.
    let folds = stratified_folds(&train, &strata, config.folds, config.seed ^ 0x5EED_F01D);
    let mut alpha_search = Vec::new();
    for &alpha in &config.alphas {
        let mut total = 0.0;
        for fold in 0..config.folds {
            let fit_rows = fold_rows(&train, &folds, |f| f != fold);
            let val_rows = fold_rows(&train, &folds, |f| f == fold);
            let (weights, intercepts) = fit_logistic(examples, &targets, &fit_rows, label_set.len(), alpha, config)?;
            let predicted = predict_rows(&examples.embeddings, &val_rows, &weights, &intercepts);
            let truth: Vec<usize> = val_rows.iter().map(|&i| targets[i]).collect();
            total += evaluate(&label_set, &truth, &predicted).macro_f1;
        }
        let score = AlphaScore {
            alpha,
            cv_macro_f1: total / config.folds as f64,
        };
        progress(TrainEvent::AlphaScored(score.clone()));
        alpha_search.push(score);
    }
    // Best score; on a tie the stronger regularisation (simpler model).
    let best = alpha_search
        .iter()
        .fold(None::<&AlphaScore>, |best, s| match best {
            Some(b) if b.cv_macro_f1 > s.cv_macro_f1 || (b.cv_macro_f1 == s.cv_macro_f1 && b.alpha >= s.alpha) => {
                Some(b)
            }
            _ => Some(s),
        })
        .map(|s| s.alpha)
        .ok_or_else(|| TextError::Training("no alpha to try".into()))?;

    let (weights, intercepts) = fit_logistic(examples, &targets, &train, label_set.len(), best, config)?;
    progress(TrainEvent::Fitted { alpha: best });

    let calibration = match config.calibration {
        Some(method) => Some(calibrate(
            examples,
            &targets,
            &train,
            &test,
            &strata,
            &label_set,
            best,
            method,
            config,
            &weights,
            &intercepts,
        )?),
        None => None,
    };

    // Held-out evaluation, overall and per language, of what the head serves (calibrated probabilities).
    let predicted: Vec<usize> = test
        .iter()
        .map(|&i| {
            let z = logits_of(&examples.embeddings, i, &weights, &intercepts);
            let p = match &calibration {
                Some(c) => c.for_language(Some(examples.languages[i].as_str())).apply(&z),
                None => z,
            };
            super::classifier::argmax(&p)
        })
        .collect();
    let truth: Vec<usize> = test.iter().map(|&i| targets[i]).collect();
    let overall = evaluate(&label_set, &truth, &predicted);
    let mut per_language: BTreeMap<String, EvalMetrics> = BTreeMap::new();
    let languages: BTreeSet<&str> = test.iter().map(|&i| examples.languages[i].as_str()).collect();
    for language in languages {
        let (t, p): (Vec<usize>, Vec<usize>) = test
            .iter()
            .zip(&predicted)
            .filter(|(&i, _)| examples.languages[i] == language)
            .map(|(&i, &p)| (targets[i], p))
            .unzip();
        per_language.insert(language.to_string(), evaluate(&label_set, &t, &p));
    }
    progress(TrainEvent::Evaluated {
        accuracy: overall.accuracy,
        macro_f1: overall.macro_f1,
    });

    SentimentHead::new(
        config.version.clone(),
        label_set,
        encoder,
        weights,
        intercepts,
        TrainingInfo {
            datasets: examples.datasets.clone(),
            seed: config.seed,
            test_fraction: config.test_fraction,
            train_examples: train.len(),
            test_examples: test.len(),
            duplicates_removed: examples.duplicates_removed,
            folds: config.folds,
            balanced: config.balance_classes,
            alpha: best,
            alpha_search,
            dataset_weights: config.dataset_weights.clone(),
        },
        HeadMetrics { overall, per_language },
        calibration,
    )
}

fn validate_config(config: &TrainConfig) -> Result<(), TextError> {
    let bad = |m: String| Err(TextError::Config(m));
    if !(config.test_fraction > 0.0 && config.test_fraction < 1.0) {
        return bad(format!("test_fraction must be in (0, 1), got {}", config.test_fraction));
    }
    if config.folds < 2 {
        return bad(format!("folds must be at least 2, got {}", config.folds));
    }
    if config.alphas.is_empty() || config.alphas.iter().any(|a| !a.is_finite() || *a < 0.0) {
        return bad(format!(
            "alphas must be non-empty, finite and ≥ 0, got {:?}",
            config.alphas
        ));
    }
    if config.max_iterations == 0 || config.batch_size == 0 {
        return bad("max_iterations and batch_size must be at least 1".into());
    }
    if config.dataset_weights.values().any(|&w| w == 0) {
        return bad(format!(
            "dataset_weights must be at least 1, got {:?}",
            config.dataset_weights
        ));
    }
    if config.calibration.is_some() && config.calibration_folds < 2 {
        return bad(format!(
            "calibration_folds must be at least 2, got {}",
            config.calibration_folds
        ));
    }
    Ok(())
}

/// Fits softmax regression on `rows`; returns `weights[class][feature]` and the intercepts.
fn fit_logistic(
    examples: &EmbeddedExamples,
    targets: &[usize],
    rows: &[usize],
    n_classes: usize,
    alpha: f64,
    config: &TrainConfig,
) -> Result<(Vec<Vec<f64>>, Vec<f64>), TextError> {
    // Class balancing by repetition: each example of class c appears round(max_count / count_c) times.
    let mut counts = vec![0usize; n_classes];
    for &i in rows {
        counts[targets[i]] += 1;
    }
    if counts.contains(&0) {
        return Err(TextError::Training(format!(
            "a class has no example in a training subset (counts {counts:?}): use fewer folds or more data"
        )));
    }
    let max = counts.iter().copied().max().unwrap_or(1);
    // The weight of each row's data set (`embed_datasets` appends them in order).
    let mut weight_of = Vec::with_capacity(targets.len());
    for summary in &examples.datasets {
        let weight = config.dataset_weights.get(&summary.name).copied().unwrap_or(1).max(1);
        weight_of.extend(std::iter::repeat_n(weight, summary.examples));
    }
    let mut expanded = Vec::with_capacity(rows.len() * 2);
    for &i in rows {
        let repeat = if config.balance_classes {
            ((max as f64 / counts[targets[i]] as f64).round() as usize).max(1)
        } else {
            1
        };
        expanded.extend(std::iter::repeat_n(i, repeat * weight_of.get(i).copied().unwrap_or(1)));
    }

    let dim = examples.embeddings.dim();
    let mut x = Vec::with_capacity(expanded.len() * dim);
    for &i in &expanded {
        if let Some(row) = examples.embeddings.get(i) {
            x.extend(row.iter().map(|&v| f64::from(v)));
        }
    }
    let x = ndarray::Array2::from_shape_vec((expanded.len(), dim), x)
        .map_err(|e| TextError::Training(format!("feature matrix: {e}")))?;
    let y = ndarray::Array1::from_iter(expanded.iter().map(|&i| targets[i]));
    let dataset = linfa::Dataset::new(x, y);
    let model = MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(config.max_iterations)
        .fit(&dataset)
        .map_err(|e| TextError::Training(format!("logistic regression (alpha {alpha}): {e}")))?;
    if model.classes() != (0..n_classes).collect::<Vec<_>>().as_slice() {
        return Err(TextError::Training(format!(
            "the fitted classes {:?} are not 0..{n_classes}",
            model.classes()
        )));
    }
    let params = model.params(); // [feature, class]
    let weights = (0..n_classes)
        .map(|c| (0..dim).map(|j| params[[j, c]]).collect())
        .collect();
    Ok((weights, model.intercept().to_vec()))
}

fn logits_of(embeddings: &Embeddings, i: usize, weights: &[Vec<f64>], intercepts: &[f64]) -> Vec<f64> {
    let x = embeddings.get(i).unwrap_or(&[]);
    weights
        .iter()
        .zip(intercepts)
        .map(|(w, b)| b + w.iter().zip(x).map(|(w, &v)| w * f64::from(v)).sum::<f64>())
        .collect()
}

/// Fits the per-language calibration on out-of-fold logits of the training split (each training example scored by
/// a head fitted on the other folds, with the chosen strength) or, with `calibrate_on_held_out`, on the final head's
/// logits of the held-out split, and reports ECE before/after on the held-out split.
#[allow(clippy::too_many_arguments)]
fn calibrate(
    examples: &EmbeddedExamples,
    targets: &[usize],
    train: &[usize],
    test: &[usize],
    strata: &[(Sentiment, &str)],
    label_set: &[Sentiment],
    alpha: f64,
    method: CalibrationMethod,
    config: &TrainConfig,
    weights: &[Vec<f64>],
    intercepts: &[f64],
) -> Result<Calibration, TextError> {
    // Which data set each row came from: `embed_datasets` appends them in order.
    let mut dataset_of = Vec::with_capacity(targets.len());
    for (d, summary) in examples.datasets.iter().enumerate() {
        dataset_of.extend(std::iter::repeat_n(d, summary.examples));
    }
    // The rows the maps are fitted on, and each row's logits: out-of-fold over the training split, or the final
    // head's on the held-out split.
    let source = if config.calibrate_on_held_out { test } else { train };
    let wanted: Vec<usize> = if config.calibrate_on.is_empty() {
        source.to_vec()
    } else {
        if dataset_of.len() != targets.len() {
            return Err(TextError::Training(format!(
                "calibrate_on needs the data sets' example counts to add up to the examples ({} vs {})",
                dataset_of.len(),
                targets.len()
            )));
        }
        for name in &config.calibrate_on {
            if !examples.datasets.iter().any(|d| &d.name == name) {
                return Err(TextError::Training(format!(
                    "calibrate_on names an unknown data set {name:?}"
                )));
            }
        }
        source
            .iter()
            .copied()
            .filter(|&i| config.calibrate_on.contains(&examples.datasets[dataset_of[i]].name))
            .collect()
    };
    let mut logits_by_row: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    if config.calibrate_on_held_out {
        for &i in &wanted {
            logits_by_row.insert(i, logits_of(&examples.embeddings, i, weights, intercepts));
        }
    } else {
        let folds = stratified_folds(train, strata, config.calibration_folds, config.seed ^ 0xCA11_B8A7);
        for fold in 0..config.calibration_folds {
            let fit_rows = fold_rows(train, &folds, |f| f != fold);
            let (w, b) = fit_logistic(examples, targets, &fit_rows, label_set.len(), alpha, config)?;
            for (&i, &f) in train.iter().zip(&folds) {
                if f == fold {
                    logits_by_row.insert(i, logits_of(&examples.embeddings, i, &w, &b));
                }
            }
        }
    }
    let labelled: Vec<CalibrationExample> = wanted
        .iter()
        .filter_map(|&i| {
            logits_by_row.get(&i).map(|logits| CalibrationExample {
                logits: logits.clone(),
                truth: targets[i],
                language: examples.languages[i].clone(),
            })
        })
        .collect();
    let fitted_on = format!(
        "{}{}; {} examples",
        if config.calibrate_on_held_out {
            "the head's logits of the held-out split (the report below includes these rows)".to_string()
        } else {
            format!(
                "out-of-fold logits of the training split ({} folds, alpha {alpha})",
                config.calibration_folds
            )
        },
        if config.calibrate_on.is_empty() {
            String::new()
        } else {
            format!(", data sets {}", config.calibrate_on.join(", "))
        },
        wanted.len()
    );
    let mut calibration = fit_calibration(&labelled, method, config.calibration_min_examples, fitted_on);
    let negative = label_set.iter().position(|l| *l == Sentiment::Negative).unwrap_or(0);
    let languages: BTreeSet<&str> = test.iter().map(|&i| examples.languages[i].as_str()).collect();
    for language in languages {
        let rows: Vec<usize> = test
            .iter()
            .copied()
            .filter(|&i| examples.languages[i] == language)
            .collect();
        let truth: Vec<usize> = rows.iter().map(|&i| targets[i]).collect();
        let logits: Vec<Vec<f64>> = rows
            .iter()
            .map(|&i| logits_of(&examples.embeddings, i, weights, intercepts))
            .collect();
        let raw: Vec<Vec<f64>> = logits.iter().map(|z| softmax(z)).collect();
        let calibrated: Vec<Vec<f64>> = logits
            .iter()
            .map(|z| calibration.for_language(Some(language)).apply(z))
            .collect();
        calibration.held_out.insert(
            language.to_string(),
            CalibrationReport {
                examples: rows.len(),
                ece_before: expected_calibration_error(&raw, &truth),
                ece_after: expected_calibration_error(&calibrated, &truth),
                negative_ece_before: negative_calibration_error(&raw, &truth, negative),
                negative_ece_after: negative_calibration_error(&calibrated, &truth, negative),
            },
        );
    }
    Ok(calibration)
}

fn predict_rows(embeddings: &Embeddings, rows: &[usize], weights: &[Vec<f64>], intercepts: &[f64]) -> Vec<usize> {
    rows.iter()
        .map(|&i| {
            let x = embeddings.get(i).unwrap_or(&[]);
            let scores: Vec<f64> = weights
                .iter()
                .zip(intercepts)
                .map(|(w, b)| b + w.iter().zip(x).map(|(w, &v)| w * f64::from(v)).sum::<f64>())
                .collect();
            super::classifier::argmax(&scores)
        })
        .collect()
}

/// Splits row indices into (train, test): within each stratum, a seeded shuffle and the first
/// `round(n · test_fraction)` rows to test, but never a stratum's last row (so that every stratum trains).
///
/// Each stratum is shuffled by its own generator, seeded from `seed` and the stratum's key, so that adding or removing
/// another stratum (say, a Spanish data set) does not change which examples of this one are held out: held-out
/// metrics of different data mixes stay comparable on the shared part.
pub fn stratified_split<K: Ord + Clone + std::fmt::Debug>(
    strata: &[K],
    test_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut groups: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, key) in strata.iter().enumerate() {
        groups.entry(key.clone()).or_default().push(i);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (key, mut rows) in groups {
        let mut rng = SplitMix64::new(seed ^ fnv1a(format!("{key:?}").as_bytes()));
        rng.shuffle(&mut rows);
        let n_test = ((rows.len() as f64 * test_fraction).round() as usize).min(rows.len().saturating_sub(1));
        test.extend_from_slice(&rows[..n_test]);
        train.extend_from_slice(&rows[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// FNV-1a, 64 bits: a hash whose value is fixed by its definition (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The rows of `rows` whose fold (`folds`, aligned with `rows`) passes `keep`.
fn fold_rows(rows: &[usize], folds: &[usize], keep: impl Fn(usize) -> bool) -> Vec<usize> {
    rows.iter()
        .zip(folds)
        .filter(|(_, &f)| keep(f))
        .map(|(&i, _)| i)
        .collect()
}

/// Fold number (0..folds) of each of `rows`, dealt round-robin within each stratum after a seeded shuffle.
fn stratified_folds<K: Ord + Clone>(rows: &[usize], strata: &[K], folds: usize, seed: u64) -> Vec<usize> {
    let mut groups: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (position, &i) in rows.iter().enumerate() {
        groups.entry(strata[i].clone()).or_default().push(position);
    }
    let mut rng = SplitMix64::new(seed);
    let mut fold_of = vec![0; rows.len()];
    let mut offset = 0;
    for (_, mut positions) in groups {
        rng.shuffle(&mut positions);
        for (k, &p) in positions.iter().enumerate() {
            fold_of[p] = (k + offset) % folds;
        }
        // Rotate the start so that small strata do not all land in fold 0.
        offset += positions.len();
    }
    fold_of
}

/// SplitMix64 (Steele, Lea & Flood 2014): a ten-line seeded generator whose output never changes with a dependency
/// upgrade, so that a recorded seed reproduces a split.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates with Lemire's multiply-shift for the index (bias below 2^-32 for our sizes).
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = ((self.next_u64() >> 32).wrapping_mul(i as u64 + 1) >> 32) as usize;
            items.swap(i, j);
        }
    }
}

/// A plain-text table of a head's held-out metrics (overall and per language: accuracy, macro-F1, per-class
/// precision / recall / F1 / support), for command-line tools and logs.
pub fn metrics_report(head: &SentimentHead) -> String {
    use std::fmt::Write;
    let t = head.training();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "held-out split: {} of {} examples ({:.0}% per label × language stratum, seed {}), trained on {}; alpha {} \
         ({}-fold CV macro-F1 on the training split){}",
        t.test_examples,
        t.test_examples + t.train_examples,
        t.test_fraction * 100.0,
        t.seed,
        t.train_examples,
        t.alpha,
        t.folds,
        if t.balanced { "; classes balanced" } else { "" }
    );
    let mut section = |name: &str, m: &EvalMetrics| {
        let _ = writeln!(
            out,
            "{name:<8} n={:<5} accuracy {:.3}  macro-F1 {:.3}",
            m.examples, m.accuracy, m.macro_f1
        );
        for (label, s) in &m.per_class {
            let _ = writeln!(
                out,
                "         {:<9} precision {:.3}  recall {:.3}  F1 {:.3}  (n={})",
                label.as_str(),
                s.precision,
                s.recall,
                s.f1,
                s.support
            );
        }
        let names: Vec<&str> = m.labels.iter().map(|l| l.as_str()).collect();
        let _ = writeln!(
            out,
            "         confusion (rows: true {}; columns: predicted) {:?}",
            names.join("/"),
            m.confusion
        );
    };
    section("overall", &head.metrics().overall);
    for (language, m) in &head.metrics().per_language {
        section(language, m);
    }
    if let Some(c) = head.calibration() {
        let _ = writeln!(out, "calibration ({:?}) fitted on {}", c.method, c.fitted_on);
        for (language, r) in &c.held_out {
            let _ = writeln!(
                out,
                "  {language:<6} held-out n={:<5} ECE {:.3} → {:.3}   P(negative) ECE {:.3} → {:.3}",
                r.examples, r.ece_before, r.ece_after, r.negative_ece_before, r.negative_ece_after
            );
        }
    }
    out
}

//! Per-language calibration of a sentiment head: the same raw logits do not mean the same in Spanish and English
//! (the head sees far more English reviews than Spanish support tickets), so P(negative) = 0.8 was a sure complaint
//! in one language and a question in the other. Each language gets its own affine map of the logits,
//! `z' = scale · z + bias` (temperature scaling with a per-class offset; `bias` all zero for plain temperature),
//! fitted by minimising the log-loss on **out-of-fold** logits of the training split (cross-validation: no text is
//! scored by a head that saw it) or on a **calibration set** kept apart from training ([`calibration_from_set`]:
//! for an encoder adapted on the training rows, whose out-of-fold logits are over-confident), and stored with the
//! head. Texts in a language without its own map (`und`, or a language with too few examples) use the map fitted on
//! every language pooled. Whether a map is worth having at all is decided by cross-fitting
//! ([`cross_fit_calibration`]): a map fitted on some texts always looks better on those same texts.
//!
//! Expected calibration error (ECE) is reported before and after on held-out data: [`expected_calibration_error`]
//! (top label, 10 equal-width bins) and [`negative_calibration_error`] (P(negative) against "is negative", what
//! alerting thresholds).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bins of the ECE estimates.
pub const ECE_BINS: usize = 10;

/// How logits are calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// One temperature per language: confidence changes, the predicted label never does.
    Temperature,
    /// A temperature and a per-class offset per language: also corrects a language's class balance, so the label
    /// may change (e.g. fewer English questions read as complaints).
    TemperatureBias,
}

/// One language's affine map of the logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    /// Multiplies the logits (1 / temperature).
    pub scale: f64,
    /// Added to each class's scaled logit (head label order; zeros for plain temperature).
    pub bias: Vec<f64>,
    /// Out-of-fold examples it was fitted on.
    pub examples: usize,
}

impl Calibrator {
    /// The identity (no change).
    pub fn identity(classes: usize) -> Self {
        Calibrator {
            scale: 1.0,
            bias: vec![0.0; classes],
            examples: 0,
        }
    }

    /// Calibrated probabilities of raw logits.
    pub fn apply(&self, logits: &[f64]) -> Vec<f64> {
        softmax(
            &logits
                .iter()
                .zip(&self.bias)
                .map(|(z, b)| self.scale * z + b)
                .collect::<Vec<_>>(),
        )
    }

    fn is_valid(&self, classes: usize) -> bool {
        self.scale.is_finite()
            && self.scale > 0.0
            && self.bias.len() == classes
            && self.bias.iter().all(|b| b.is_finite())
    }
}

/// ECE on one data set, before and after calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationReport {
    /// Examples.
    pub examples: usize,
    /// Top-label ECE of the raw probabilities.
    pub ece_before: f64,
    /// Top-label ECE of the calibrated probabilities.
    pub ece_after: f64,
    /// ECE of P(negative) as a probability of "is negative", raw.
    pub negative_ece_before: f64,
    /// The same, calibrated.
    pub negative_ece_after: f64,
}

/// A head's calibration: one map per language with enough data, one pooled map for the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The form of the maps.
    pub method: CalibrationMethod,
    /// What the maps were fitted on (e.g. "out-of-fold logits of the training split, 5 folds").
    pub fitted_on: String,
    /// Language code → its map.
    pub per_language: BTreeMap<String, Calibrator>,
    /// The map for every other language (`und` included).
    pub pooled: Calibrator,
    /// ECE before/after on the head's own held-out split, per language (filled by training).
    #[serde(default)]
    pub held_out: BTreeMap<String, CalibrationReport>,
}

impl Calibration {
    /// The map for `language` (`es`, `en`, ...; anything else gets the pooled one).
    pub fn for_language(&self, language: Option<&str>) -> &Calibrator {
        language.and_then(|l| self.per_language.get(l)).unwrap_or(&self.pooled)
    }

    pub(crate) fn validate(&self, classes: usize) -> Result<(), String> {
        if !self.pooled.is_valid(classes) {
            return Err("the pooled calibrator is invalid".into());
        }
        match self.per_language.iter().find(|(_, c)| !c.is_valid(classes)) {
            Some((language, _)) => Err(format!("the calibrator of {language} is invalid")),
            None => Ok(()),
        }
    }
}

/// One labelled text of a calibration set, as the head scores it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationExample {
    /// The head's raw logits of the text.
    pub logits: Vec<f64>,
    /// Index of its true class in the head's labels.
    pub truth: usize,
    /// Its language code (`und` never gets a map of its own).
    pub language: String,
}

/// Fits a head's calibration on labelled logits: one map on every example pooled, and one per language with at
/// least `min_examples` examples. The one place maps are fitted, whether on out-of-fold logits of the training split
/// (training) or on a calibration set written apart from training (an encoder adapted on the training rows has seen
/// them, so only texts it never saw say how confident it should be). `held_out` starts empty.
pub fn fit_calibration(
    examples: &[CalibrationExample],
    method: CalibrationMethod,
    min_examples: usize,
    fitted_on: String,
) -> Calibration {
    let all: Vec<&CalibrationExample> = examples.iter().collect();
    let pooled = fit_examples(&all, method);
    let per_language = by_language(examples)
        .into_iter()
        .filter(|(language, rows)| *language != super::train::UNDETERMINED_LANGUAGE && rows.len() >= min_examples)
        .map(|(language, rows)| (language.to_string(), fit_examples(&rows, method)))
        .collect();
    Calibration {
        method,
        fitted_on,
        per_language,
        pooled,
        held_out: BTreeMap::new(),
    }
}

/// The examples of each language, in their order.
fn by_language(examples: &[CalibrationExample]) -> BTreeMap<&str, Vec<&CalibrationExample>> {
    let mut grouped: BTreeMap<&str, Vec<&CalibrationExample>> = BTreeMap::new();
    for e in examples {
        grouped.entry(e.language.as_str()).or_default().push(e);
    }
    grouped
}

/// [`fit_calibrator`] on some of a set's examples.
fn fit_examples(rows: &[&CalibrationExample], method: CalibrationMethod) -> Calibrator {
    let logits: Vec<Vec<f64>> = rows.iter().map(|e| e.logits.clone()).collect();
    let truth: Vec<usize> = rows.iter().map(|e| e.truth).collect();
    fit_calibrator(&logits, &truth, method)
}

/// How well one calibration method did by cross-fitting (see [`cross_fit_calibration`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodScore {
    /// The method; `None` is no map (the head's softmax).
    pub method: Option<CalibrationMethod>,
    /// Language → mean log-loss of its examples, each scored by a map fitted without it.
    pub per_language: BTreeMap<String, f64>,
    /// Mean over languages (each language counts once, however many examples it has).
    pub mean: f64,
}

/// Cross-fitted log-loss of no map, temperature and temperature + bias on labelled logits: per language, the
/// examples are dealt into `folds` folds in order (example `i` to fold `i % folds`), and each fold is scored by a map
/// fitted on the others, so no example judges a map fitted on it. Chooses between methods on the same set the maps
/// are then fitted on without fooling itself: a map always lowers the log-loss of the texts it was fitted on.
pub fn cross_fit_calibration(examples: &[CalibrationExample], folds: usize) -> Vec<MethodScore> {
    let folds = folds.max(2);
    let by_language = by_language(examples);
    let classes = examples.first().map_or(0, |e| e.logits.len());
    [
        None,
        Some(CalibrationMethod::Temperature),
        Some(CalibrationMethod::TemperatureBias),
    ]
    .into_iter()
    .map(|method| {
        let per_language: BTreeMap<String, f64> = by_language
            .iter()
            .map(|(language, rows)| {
                let mut loss = 0.0;
                for fold in 0..folds {
                    let calibrator = match method {
                        Some(m) => {
                            let fit: Vec<&CalibrationExample> = rows
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| i % folds != fold)
                                .map(|(_, e)| *e)
                                .collect();
                            fit_examples(&fit, m)
                        }
                        None => Calibrator::identity(classes),
                    };
                    for e in rows
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % folds == fold)
                        .map(|(_, e)| e)
                    {
                        loss -= calibrator
                            .apply(&e.logits)
                            .get(e.truth)
                            .copied()
                            .unwrap_or(0.0)
                            .max(1e-12)
                            .ln();
                    }
                }
                (language.to_string(), loss / rows.len().max(1) as f64)
            })
            .collect();
        let mean = per_language.values().sum::<f64>() / per_language.len().max(1) as f64;
        MethodScore {
            method,
            per_language,
            mean,
        }
    })
    .collect()
}

/// Calibration of a head on labelled texts written apart from its training data (its raw logits in `examples`):
/// the method with the lowest cross-fitted mean log-loss ([`cross_fit_calibration`], 5 folds; no map when none
/// beats the head's softmax), then fitted on all of `examples`. Returns the calibration (`None`: serve the softmax)
/// and the scores it was chosen by.
pub fn calibration_from_set(
    examples: &[CalibrationExample],
    min_examples: usize,
    fitted_on: String,
) -> (Option<Calibration>, Vec<MethodScore>) {
    let scores = cross_fit_calibration(examples, 5);
    let best = scores
        .iter()
        .min_by(|a, b| a.mean.total_cmp(&b.mean))
        .and_then(|s| s.method);
    let calibration = best.map(|method| fit_calibration(examples, method, min_examples, fitted_on));
    (calibration, scores)
}

/// Numerically stable softmax.
pub(crate) fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Fits a map on raw logits and true class indices by minimising the mean log-loss (plus a small L2 pull of the
/// offsets towards 0 and of the scale towards 1, so that a tiny or one-class set cannot run away). The loss is
/// convex in (scale, bias); gradient descent with backtracking reaches its minimum in a few hundred steps.
pub fn fit_calibrator(logits: &[Vec<f64>], truth: &[usize], method: CalibrationMethod) -> Calibrator {
    let classes = logits.first().map_or(0, Vec::len);
    let n = logits.len();
    if n == 0 || classes == 0 {
        return Calibrator::identity(classes);
    }
    const RIDGE: f64 = 1e-3;
    let with_bias = method == CalibrationMethod::TemperatureBias;
    let loss = |scale: f64, bias: &[f64]| -> f64 {
        let mut total = 0.0;
        for (z, &y) in logits.iter().zip(truth) {
            let s: Vec<f64> = z.iter().zip(bias).map(|(z, b)| scale * z + b).collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + s.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            total += lse - s[y];
        }
        total / n as f64 + RIDGE * ((scale - 1.0).powi(2) + bias.iter().map(|b| b * b).sum::<f64>())
    };
    let gradient = |scale: f64, bias: &[f64]| -> (f64, Vec<f64>) {
        let (mut g_scale, mut g_bias) = (0.0, vec![0.0; classes]);
        for (z, &y) in logits.iter().zip(truth) {
            let s: Vec<f64> = z.iter().zip(bias).map(|(z, b)| scale * z + b).collect();
            let p = softmax(&s);
            for c in 0..classes {
                let d = p[c] - if c == y { 1.0 } else { 0.0 };
                g_scale += d * z[c];
                g_bias[c] += d;
            }
        }
        let g_scale = g_scale / n as f64 + 2.0 * RIDGE * (scale - 1.0);
        let g_bias = g_bias
            .iter()
            .zip(bias)
            .map(|(g, b)| if with_bias { g / n as f64 + 2.0 * RIDGE * b } else { 0.0 })
            .collect();
        (g_scale, g_bias)
    };
    let (mut scale, mut bias) = (1.0, vec![0.0; classes]);
    let mut current = loss(scale, &bias);
    let mut step = 1.0;
    for _ in 0..2000 {
        let (g_scale, g_bias) = gradient(scale, &bias);
        let norm2 = g_scale * g_scale + g_bias.iter().map(|g| g * g).sum::<f64>();
        if norm2 < 1e-14 {
            break;
        }
        // Backtracking (Armijo): halve the step until the loss drops enough; the scale stays positive.
        let mut accepted = false;
        for _ in 0..40 {
            let next_scale = scale - step * g_scale;
            let next_bias: Vec<f64> = bias.iter().zip(&g_bias).map(|(b, g)| b - step * g).collect();
            if next_scale > 1e-3 {
                let next = loss(next_scale, &next_bias);
                if next <= current - 0.5 * step * norm2 {
                    (scale, bias, current) = (next_scale, next_bias, next);
                    accepted = true;
                    break;
                }
            }
            step *= 0.5;
        }
        if !accepted {
            break;
        }
        step = (step * 2.0).min(16.0);
    }
    Calibrator {
        scale,
        bias,
        examples: n,
    }
}

/// Top-label expected calibration error: the weighted mean gap between confidence and accuracy over
/// [`ECE_BINS`] equal-width confidence bins. `probabilities[i]` are one example's class probabilities.
pub fn expected_calibration_error(probabilities: &[Vec<f64>], truth: &[usize]) -> f64 {
    let pairs = probabilities.iter().zip(truth).map(|(p, &y)| {
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        (p.get(best).copied().unwrap_or(0.0), best == y)
    });
    binned_gap(pairs, probabilities.len())
}

/// ECE of one class's probability (e.g. P(negative)) as the probability of "the text is of that class".
pub fn negative_calibration_error(probabilities: &[Vec<f64>], truth: &[usize], class: usize) -> f64 {
    let pairs = probabilities
        .iter()
        .zip(truth)
        .map(|(p, &y)| (p.get(class).copied().unwrap_or(0.0), y == class));
    binned_gap(pairs, probabilities.len())
}

fn binned_gap(pairs: impl Iterator<Item = (f64, bool)>, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let mut bins = vec![(0usize, 0.0f64, 0usize); ECE_BINS];
    for (confidence, hit) in pairs {
        let b = ((confidence * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        bins[b].0 += 1;
        bins[b].1 += confidence;
        bins[b].2 += usize::from(hit);
    }
    bins.iter()
        .filter(|(count, _, _)| *count > 0)
        .map(|&(count, sum, hits)| (sum / count as f64 - hits as f64 / count as f64).abs() * count as f64)
        .sum::<f64>()
        / n as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_fitting_undoes_overconfidence_and_lowers_ece() {
        // Logits 3× too confident: the true map has scale 1/3.
        let set = examples(&[("any", 3.0)], 3000, 12345);
        let logits: Vec<Vec<f64>> = set.iter().map(|e| e.logits.clone()).collect();
        let truth: Vec<usize> = set.iter().map(|e| e.truth).collect();
        let c = fit_calibrator(&logits, &truth, CalibrationMethod::Temperature);
        assert!((c.scale - 1.0 / 3.0).abs() < 0.05, "{c:?}");
        assert!(c.bias.iter().all(|b| *b == 0.0));
        let raw: Vec<Vec<f64>> = logits.iter().map(|z| softmax(z)).collect();
        let calibrated: Vec<Vec<f64>> = logits.iter().map(|z| c.apply(z)).collect();
        assert!(expected_calibration_error(&calibrated, &truth) < expected_calibration_error(&raw, &truth) / 2.0);
        let with_bias = fit_calibrator(&logits, &truth, CalibrationMethod::TemperatureBias);
        assert!(with_bias.bias.iter().all(|b| b.abs() < 0.2), "{with_bias:?}");
    }

    /// `n` examples per language whose logits are `factor` times the honest ones (labels drawn from the honest
    /// probabilities), seeded.
    fn examples(languages: &[(&str, f64)], n: usize, seed: u64) -> Vec<CalibrationExample> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut out = Vec::new();
        for (language, factor) in languages {
            for _ in 0..n {
                let z = vec![next() * 4.0 - 2.0, next() * 4.0 - 2.0, next() * 4.0 - 2.0];
                let p = softmax(&z);
                let u = next();
                let truth = if u < p[0] {
                    0
                } else if u < p[0] + p[1] {
                    1
                } else {
                    2
                };
                out.push(CalibrationExample {
                    logits: z.iter().map(|v| v * factor).collect(),
                    truth,
                    language: language.to_string(),
                });
            }
        }
        out
    }

    #[test]
    fn a_set_calibration_maps_each_language_only_when_cross_fitting_says_it_helps() {
        // Spanish 3× overconfident, English honest: cross-fitting must prefer a map, and the fitted Spanish map
        // must undo the overconfidence while the English one stays near the identity.
        let set = examples(&[("es", 3.0), ("en", 1.0)], 600, 7);
        let (calibration, scores) = calibration_from_set(&set, 50, "test set".into());
        assert_eq!(scores.len(), 3);
        let none = scores.iter().find(|s| s.method.is_none()).unwrap();
        let best = scores.iter().min_by(|a, b| a.mean.total_cmp(&b.mean)).unwrap();
        assert!(best.mean < none.mean, "{scores:?}");
        let c = calibration.expect("a map helps the overconfident language");
        assert!((c.per_language["es"].scale - 1.0 / 3.0).abs() < 0.08, "{c:?}");
        assert!((c.per_language["en"].scale - 1.0).abs() < 0.25, "{c:?}");
        assert_eq!(c.per_language["es"].examples, 600);
        assert_eq!(c.fitted_on, "test set");

        // Honest logits everywhere: a map only fits noise, so cross-fitting keeps the softmax.
        let honest = examples(&[("es", 1.0), ("en", 1.0)], 1000, 11);
        let (calibration, scores) = calibration_from_set(&honest, 50, "honest".into());
        assert!(calibration.is_none(), "{scores:?}");
    }

    #[test]
    fn a_language_with_too_few_examples_gets_the_pooled_map() {
        let mut set = examples(&[("es", 2.0)], 200, 3);
        set.extend(examples(&[("en", 2.0)], 20, 5));
        set.extend(examples(&[("und", 2.0)], 80, 9));
        let c = fit_calibration(&set, CalibrationMethod::Temperature, 50, "x".into());
        assert!(c.per_language.contains_key("es"));
        assert!(!c.per_language.contains_key("en"), "20 < 50 examples");
        assert!(!c.per_language.contains_key("und"), "und never gets a map of its own");
        assert_eq!(c.pooled.examples, 300);
        assert_eq!(c.for_language(Some("en")), &c.pooled);
    }
}

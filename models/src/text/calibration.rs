//! Per-language calibration of a sentiment head: the same raw logits do not mean the same in Spanish and English
//! (the head sees far more English reviews than Spanish support tickets), so P(negative) = 0.8 was a sure complaint
//! in one language and a question in the other. Each language gets its own affine map of the logits,
//! `z' = scale · z + bias` (temperature scaling with a per-class offset; `bias` all zero for plain temperature),
//! fitted by minimising the log-loss on **out-of-fold** logits of the training split (cross-validation: no text is
//! scored by a head that saw it), and stored with the head. Texts in a language without its own map (`und`, or a
//! language with too few training examples) use the map fitted on every language pooled.
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
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..3000 {
            let z = vec![next() * 4.0 - 2.0, next() * 4.0 - 2.0, next() * 4.0 - 2.0];
            let p = softmax(&z);
            let u = next();
            let y = if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            };
            logits.push(z.iter().map(|v| v * 3.0).collect::<Vec<_>>());
            truth.push(y);
        }
        let c = fit_calibrator(&logits, &truth, CalibrationMethod::Temperature);
        assert!((c.scale - 1.0 / 3.0).abs() < 0.05, "{c:?}");
        assert!(c.bias.iter().all(|b| *b == 0.0));
        let raw: Vec<Vec<f64>> = logits.iter().map(|z| softmax(z)).collect();
        let calibrated: Vec<Vec<f64>> = logits.iter().map(|z| c.apply(z)).collect();
        assert!(expected_calibration_error(&calibrated, &truth) < expected_calibration_error(&raw, &truth) / 2.0);
        let with_bias = fit_calibrator(&logits, &truth, CalibrationMethod::TemperatureBias);
        assert!(with_bias.bias.iter().all(|b| b.abs() < 0.2), "{with_bias:?}");
    }
}

//! Held-out evaluation: ROC AUC, threshold metrics and calibration.
//!
//! All functions take predicted churn probabilities and true labels (`true` = churned) of equal length.

use serde::{Deserialize, Serialize};

use super::error::{ChurnError, Result};

fn check(scores: &[f64], labels: &[bool]) -> Result<()> {
    if scores.len() != labels.len() {
        return Err(ChurnError::LengthMismatch {
            what: format!("{} scores for {} labels", scores.len(), labels.len()),
        });
    }
    if scores.is_empty() {
        return Err(ChurnError::NoRows);
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(ChurnError::InvalidConfig("scores must be finite".into()));
    }
    Ok(())
}

/// Area under the ROC curve: the probability that a random churned row scores higher than a random
/// non-churned one, ties counting one half (Mann–Whitney U with mid-ranks). Scores only need to be ordered,
/// not calibrated. Errors if either class is absent (AUC is undefined then).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    check(scores, labels)?;
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(ChurnError::SingleClass { positives, negatives });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        let tied_positives = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += mid_rank * tied_positives as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean squared difference between probability and outcome (0 is perfect; always predicting the base
/// rate `r` gives `r(1 − r)`). Measures calibration and sharpness together.
pub fn brier_score(scores: &[f64], labels: &[bool]) -> Result<f64> {
    check(scores, labels)?;
    let sum: f64 = scores
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - f64::from(u8::from(y))).powi(2))
        .sum();
    Ok(sum / scores.len() as f64)
}

/// Mean negative log-likelihood (natural log), probabilities clipped to `[1e-15, 1 − 1e-15]`.
pub fn log_loss(scores: &[f64], labels: &[bool]) -> Result<f64> {
    check(scores, labels)?;
    let sum: f64 = scores
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    Ok(sum / scores.len() as f64)
}

/// Counts at a decision threshold: a row is predicted churned when its probability is **strictly greater**
/// than the threshold (as the risk levels use `> 0.5` for HIGH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Churned and predicted churned.
    pub true_positives: usize,
    /// Not churned but predicted churned.
    pub false_positives: usize,
    /// Not churned and predicted not churned.
    pub true_negatives: usize,
    /// Churned but predicted not churned.
    pub false_negatives: usize,
}

impl Confusion {
    /// Counts predictions `p > threshold` against labels.
    pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> Result<Self> {
        check(scores, labels)?;
        let mut c = Confusion {
            true_positives: 0,
            false_positives: 0,
            true_negatives: 0,
            false_negatives: 0,
        };
        for (&p, &y) in scores.iter().zip(labels) {
            match (p > threshold, y) {
                (true, true) => c.true_positives += 1,
                (true, false) => c.false_positives += 1,
                (false, false) => c.true_negatives += 1,
                (false, true) => c.false_negatives += 1,
            }
        }
        Ok(c)
    }

    fn total(&self) -> usize {
        self.true_positives + self.false_positives + self.true_negatives + self.false_negatives
    }

    /// Share of rows classified correctly.
    pub fn accuracy(&self) -> f64 {
        (self.true_positives + self.true_negatives) as f64 / self.total().max(1) as f64
    }

    /// Share of predicted churners who churned; `None` when nothing was predicted churned.
    pub fn precision(&self) -> Option<f64> {
        let predicted = self.true_positives + self.false_positives;
        (predicted > 0).then(|| self.true_positives as f64 / predicted as f64)
    }

    /// Share of churners that were predicted; `None` when there were no churners.
    pub fn recall(&self) -> Option<f64> {
        let actual = self.true_positives + self.false_negatives;
        (actual > 0).then(|| self.true_positives as f64 / actual as f64)
    }

    /// Harmonic mean of precision and recall; `None` when either is undefined or both are 0.
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        (p + r > 0.0).then(|| 2.0 * p * r / (p + r))
    }
}

/// One bin of a reliability (calibration) table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the predicted-probability bin (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, except 1.0 for the last bin).
    pub upper: f64,
    /// Rows whose probability fell in the bin.
    pub count: usize,
    /// Mean predicted probability in the bin (`None` if empty).
    pub mean_predicted: Option<f64>,
    /// Observed churn rate in the bin (`None` if empty); well calibrated means close to `mean_predicted`.
    pub observed_rate: Option<f64>,
}

/// Equal-width reliability table with `bins` bins over [0, 1].
pub fn reliability_table(scores: &[f64], labels: &[bool], bins: usize) -> Result<Vec<ReliabilityBin>> {
    check(scores, labels)?;
    if bins == 0 {
        return Err(ChurnError::InvalidConfig(
            "reliability table needs at least one bin".into(),
        ));
    }
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &y) in scores.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += usize::from(y);
    }
    Ok(sums
        .into_iter()
        .enumerate()
        .map(|(b, (count, psum, ysum))| ReliabilityBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count,
            mean_predicted: (count > 0).then(|| psum / count as f64),
            observed_rate: (count > 0).then(|| ysum as f64 / count as f64),
        })
        .collect())
}

/// Held-out metrics of a model, stored in its artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows evaluated.
    pub rows: usize,
    /// Churned rows among them.
    pub positives: usize,
    /// ROC AUC.
    pub auc: f64,
    /// 95 % bootstrap interval of the AUC (percentile method over resamples of these rows; `None` in
    /// artifacts written before it was computed).
    #[serde(default)]
    pub auc_interval: Option<AucInterval>,
    /// Decision threshold the following four use (`p > threshold` = churned).
    pub threshold: f64,
    /// Accuracy at the threshold.
    pub accuracy: f64,
    /// Precision at the threshold (`None`: nothing predicted churned).
    pub precision: Option<f64>,
    /// Recall at the threshold.
    pub recall: Option<f64>,
    /// F1 at the threshold.
    pub f1: Option<f64>,
    /// Counts at the threshold.
    pub confusion: Confusion,
    /// Brier score.
    pub brier: f64,
    /// Log loss.
    pub log_loss: f64,
    /// Expected calibration error: count-weighted mean |observed − predicted| over the reliability bins.
    pub expected_calibration_error: f64,
    /// 10-bin reliability table.
    pub reliability: Vec<ReliabilityBin>,
}

impl Metrics {
    /// Computes every metric for the given probabilities, labels and threshold.
    pub fn compute(scores: &[f64], labels: &[bool], threshold: f64) -> Result<Self> {
        let confusion = Confusion::at_threshold(scores, labels, threshold)?;
        let reliability = reliability_table(scores, labels, 10)?;
        let rows = scores.len();
        let ece = reliability
            .iter()
            .filter_map(|b| Some(b.count as f64 * (b.observed_rate? - b.mean_predicted?).abs()))
            .sum::<f64>()
            / rows as f64;
        Ok(Metrics {
            rows,
            positives: labels.iter().filter(|&&l| l).count(),
            auc: roc_auc(scores, labels)?,
            auc_interval: None,
            threshold,
            accuracy: confusion.accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            confusion,
            brier: brier_score(scores, labels)?,
            log_loss: log_loss(scores, labels)?,
            expected_calibration_error: ece,
            reliability,
        })
    }
}

/// A bootstrap confidence interval of the ROC AUC.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AucInterval {
    /// Lower bound (2.5th percentile of the resampled AUCs).
    pub lower: f64,
    /// Upper bound (97.5th percentile).
    pub upper: f64,
    /// Resamples used (those with both classes present).
    pub resamples: usize,
}

/// 95 % percentile-bootstrap interval of the AUC: `resamples` draws of `scores.len()` rows with replacement
/// (seeded, so the same model and data give the same interval). A draw with only one class has no AUC and is
/// skipped. `None` when fewer than 100 usable draws remain (a test set too small to say anything).
pub fn auc_bootstrap_interval(scores: &[f64], labels: &[bool], resamples: usize, seed: u64) -> Option<AucInterval> {
    if scores.len() != labels.len() || scores.is_empty() {
        return None;
    }
    let mut rng = super::rng::SplitMix64::new(seed ^ 0xB007_57A9);
    let n = scores.len();
    let (mut s, mut l) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut aucs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        s.clear();
        l.clear();
        for _ in 0..n {
            let i = rng.below(n);
            s.push(scores[i]);
            l.push(labels[i]);
        }
        if let Ok(auc) = roc_auc(&s, &l) {
            aucs.push(auc);
        }
    }
    if aucs.len() < 100 {
        return None;
    }
    aucs.sort_by(f64::total_cmp);
    let at = |q: f64| aucs[((aucs.len() - 1) as f64 * q).round() as usize];
    Some(AucInterval {
        lower: at(0.025),
        upper: at(0.975),
        resamples: aucs.len(),
    })
}

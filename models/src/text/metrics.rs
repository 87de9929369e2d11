//! Held-out evaluation of a classifier: accuracy, per-class precision / recall / F1, macro-F1, confusion matrix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::head::Sentiment;

/// Precision, recall and F1 of one class, and how many test examples truly belong to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Of the examples predicted as this class, the fraction that are (0 when none was predicted).
    pub precision: f64,
    /// Of the examples of this class, the fraction predicted as such.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Test examples of this class.
    pub support: usize,
}

/// Metrics of predictions against the truth on one set of examples (all of the held-out split, or one language of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Number of examples.
    pub examples: usize,
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// Unweighted mean F1 over the classes present in the truth: a classifier that ignores a rare class scores low
    /// here even when its accuracy is high.
    pub macro_f1: f64,
    /// Scores of each class present in the truth (a class with no true example has no recall, so it is left out;
    /// the confusion matrix still shows predictions of it).
    pub per_class: BTreeMap<Sentiment, ClassScores>,
    /// The classes of the confusion matrix, in its row and column order.
    pub labels: Vec<Sentiment>,
    /// `confusion[truth][predicted]` counts, in `labels` order.
    pub confusion: Vec<Vec<usize>>,
}

/// Computes [`EvalMetrics`] from class indices into `labels`. Indices out of range are ignored (they cannot come
/// from a head, whose outputs are always in range).
pub fn evaluate(labels: &[Sentiment], truth: &[usize], predicted: &[usize]) -> EvalMetrics {
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut examples = 0;
    for (&t, &p) in truth.iter().zip(predicted) {
        if t < k && p < k {
            confusion[t][p] += 1;
            examples += 1;
        }
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let mut per_class = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        let support: usize = confusion[i].iter().sum();
        if support == 0 {
            continue;
        }
        let predicted_as: usize = (0..k).map(|t| confusion[t][i]).sum();
        let tp = confusion[i][i] as f64;
        let precision = if predicted_as == 0 {
            0.0
        } else {
            tp / predicted_as as f64
        };
        let recall = tp / support as f64;
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        per_class.insert(
            label,
            ClassScores {
                precision,
                recall,
                f1,
                support,
            },
        );
    }
    let macro_f1 = if per_class.is_empty() {
        0.0
    } else {
        per_class.values().map(|c| c.f1).sum::<f64>() / per_class.len() as f64
    };
    EvalMetrics {
        examples,
        accuracy: if examples == 0 {
            0.0
        } else {
            correct as f64 / examples as f64
        },
        macro_f1,
        per_class,
        labels: labels.to_vec(),
        confusion,
    }
}

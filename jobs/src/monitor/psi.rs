//! Population stability index: how far a week's inputs have moved from the
//! rows a model was trained on.
//!
//! A feature's reference is its training rows' deciles (so every bin holds
//! about a tenth of them) plus the share of missing values; a week's rows
//! are binned on the same edges and compared bin by bin:
//! `PSI = Σ (actual − expected) · ln(actual / expected)`. The usual reading:
//! below 0.1 stable, 0.1–0.25 moving, above 0.25 shifted. Empty bins are
//! floored at [`FLOOR`] so one empty bin does not make the index infinite.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The smallest share a bin counts with.
pub const FLOOR: f64 = 1e-4;

/// Quantile bins of one feature's reference rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBaseline {
    /// Upper bounds of every bin but the last (bins are `(-∞, e0]`,
    /// `(e0, e1]`, …, `(e_last, ∞)`), strictly increasing.
    pub edges: Vec<f64>,
    /// Share of the present values per bin (`edges.len() + 1` entries).
    pub fractions: Vec<f64>,
    /// Share of rows where the value is missing.
    pub missing: f64,
}

/// Every feature's reference, by name.
pub type Baseline = BTreeMap<String, FeatureBaseline>;

impl FeatureBaseline {
    /// Deciles of `values` (fewer bins when values repeat).
    pub fn fit(values: &[Option<f64>]) -> Self {
        let mut present: Vec<f64> = values.iter().flatten().copied().filter(|v| v.is_finite()).collect();
        present.sort_by(f64::total_cmp);
        let mut edges: Vec<f64> = Vec::new();
        if !present.is_empty() {
            for q in 1..10 {
                let e = present[(q * (present.len() - 1)) / 10];
                // Bins are (prev, e]: an edge at the maximum would leave the last bin empty by construction.
                if edges.last().is_none_or(|last| e > *last) && e < present[present.len() - 1] {
                    edges.push(e);
                }
            }
        }
        let mut b = Self {
            edges,
            fractions: Vec::new(),
            missing: 0.0,
        };
        let (fractions, missing) = b.distribution(values);
        b.fractions = fractions;
        b.missing = missing;
        b
    }

    /// Shares of `values` per bin of this reference, and the missing share.
    pub fn distribution(&self, values: &[Option<f64>]) -> (Vec<f64>, f64) {
        let mut counts = vec![0usize; self.edges.len() + 1];
        let mut missing = 0usize;
        for v in values {
            match v {
                Some(v) if v.is_finite() => counts[self.edges.partition_point(|e| e < v)] += 1,
                _ => missing += 1,
            }
        }
        let n = values.len().max(1) as f64;
        let present = (values.len() - missing).max(1) as f64;
        (
            counts.into_iter().map(|c| c as f64 / present).collect(),
            missing as f64 / n,
        )
    }

    /// PSI of `values` against this reference (present values' bins, plus
    /// the missing share as a bin of its own when either side has any).
    pub fn psi(&self, values: &[Option<f64>]) -> f64 {
        let (actual, missing) = self.distribution(values);
        // Present-value bins are shares of the present values; weigh them by
        // the present share so that all bins together sum to one.
        let weigh = |f: &[f64], m: f64| f.iter().map(|x| x * (1.0 - m)).collect::<Vec<_>>();
        let mut e = weigh(&self.fractions, self.missing);
        let mut a = weigh(&actual, missing);
        if self.missing > 0.0 || missing > 0.0 {
            e.push(self.missing);
            a.push(missing);
        }
        index(&e, &a)
    }
}

/// PSI of two distributions over the same bins.
pub fn index(expected: &[f64], actual: &[f64]) -> f64 {
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let (e, a) = (e.max(FLOOR), a.max(FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(range: std::ops::Range<i32>) -> Vec<Option<f64>> {
        range.map(|v| Some(f64::from(v))).collect()
    }

    #[test]
    fn the_same_population_is_stable_and_a_shifted_one_is_not() {
        let b = FeatureBaseline::fit(&values(0..1000));
        assert_eq!(b.fractions.len(), 10);
        assert!(b.fractions.iter().all(|f| (f - 0.1).abs() < 0.01), "{:?}", b.fractions);
        assert!(b.psi(&values(0..1000)) < 1e-9);
        // Every other row of the same range: stable.
        let sample: Vec<_> = values(0..1000).into_iter().step_by(2).collect();
        assert!(b.psi(&sample) < 0.01, "{}", b.psi(&sample));
        let half_up = b.psi(&values(500..1500));
        assert!(half_up > 0.25, "{half_up}");
        let slightly = b.psi(&values(30..1030));
        assert!(slightly < 0.1, "{slightly}");
    }

    #[test]
    fn missing_values_are_a_bin_of_their_own() {
        let b = FeatureBaseline::fit(&values(0..100));
        assert_eq!(b.missing, 0.0);
        let mut with_gaps = values(0..100);
        with_gaps.extend(std::iter::repeat_n(None, 100));
        assert!(b.psi(&with_gaps) > 0.25, "half the rows lost the value");
        let all_missing = vec![None; 10];
        let b = FeatureBaseline::fit(&all_missing);
        assert!(b.edges.is_empty() && b.missing == 1.0);
        assert!(b.psi(&all_missing).abs() < 1e-9);
    }

    #[test]
    fn repeated_values_make_fewer_bins() {
        let mut v = vec![Some(0.0); 90];
        v.extend(values(1..11));
        let b = FeatureBaseline::fit(&v);
        assert!(b.edges.len() < 9, "{:?}", b.edges);
        assert!((b.fractions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(b.psi(&v).abs() < 1e-9);
    }
}

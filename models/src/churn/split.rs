//! Stratified, seeded train/test split and cross-validation folds.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::error::{ChurnError, Result};
use super::rng::SplitMix64;

/// Which rows train the model and which are held out to measure it. Row indices are 0-based positions in the
/// [`crate::churn::Dataset`] (for a CSV: data row `i` is the `i`-th record after the header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Training rows, ascending.
    pub train: Vec<usize>,
    /// Held-out rows, ascending.
    pub test: Vec<usize>,
    /// Seed that produced the split.
    pub seed: u64,
    /// Requested held-out fraction.
    pub test_fraction: f64,
}

impl Split {
    /// Stratified split: each class is shuffled with the seed and `round(n_class × test_fraction)` of its rows
    /// are held out (at least one of each class on each side when the class has two or more rows), so the
    /// churn rate is the same on both sides. Deterministic for a given seed on every platform.
    pub fn stratified(labels: &[bool], test_fraction: f64, seed: u64) -> Result<Self> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(ChurnError::InvalidConfig(format!(
                "test fraction {test_fraction} is not in (0, 1)"
            )));
        }
        let mut rng = SplitMix64::new(seed);
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for class in [true, false] {
            let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
            rng.shuffle(&mut rows);
            let n = rows.len();
            let mut k = (n as f64 * test_fraction).round() as usize;
            if n >= 2 {
                k = k.clamp(1, n - 1);
            }
            test.extend_from_slice(&rows[..k]);
            train.extend_from_slice(&rows[k..]);
        }
        train.sort_unstable();
        test.sort_unstable();
        Ok(Split {
            train,
            test,
            seed,
            test_fraction,
        })
    }

    /// Writes the split as CSV `row,line,id,set` (`set` is `train` or `test`), one line per row in row order,
    /// so that another tool (the scikit-learn comparison) can reproduce it. `lines` and `ids` may be absent.
    pub fn write_csv<W: Write>(&self, writer: W, lines: Option<&[u64]>, ids: Option<&[String]>) -> Result<()> {
        let mut w = csv::Writer::from_writer(writer);
        let io = |e: csv::Error| ChurnError::csv(e);
        w.write_record(["row", "line", "id", "set"]).map_err(io)?;
        let mut rows: Vec<(usize, &str)> = self
            .train
            .iter()
            .map(|&r| (r, "train"))
            .chain(self.test.iter().map(|&r| (r, "test")))
            .collect();
        rows.sort_unstable();
        for (r, set) in rows {
            let line = lines.and_then(|l| l.get(r)).map(|l| l.to_string()).unwrap_or_default();
            let id = ids.and_then(|i| i.get(r)).map(String::as_str).unwrap_or("");
            w.write_record([r.to_string().as_str(), &line, id, set]).map_err(io)?;
        }
        w.flush().map_err(|e| ChurnError::csv(e.into()))?;
        Ok(())
    }
}

/// Splits `rows` into `k` stratified folds (by `labels[row]`), deterministically for the seed. Used by the
/// regularisation search.
pub(crate) fn stratified_folds(labels: &[bool], rows: &[usize], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix64::new(seed ^ 0x5EED_F01D);
    let mut folds = vec![Vec::new(); k];
    for class in [true, false] {
        let mut members: Vec<usize> = rows.iter().copied().filter(|&r| labels[r] == class).collect();
        rng.shuffle(&mut members);
        for (i, r) in members.into_iter().enumerate() {
            folds[i % k].push(r);
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    folds
}

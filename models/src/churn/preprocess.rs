//! The feature schema: how input columns become model inputs (rules on [`FeatureSchema`]).

use std::collections::{BTreeSet, HashMap};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::data::{ColumnData, FeatureTable};
use super::error::{ChurnError, Result};

/// Ordered list of the features a model reads, with their encoding parameters, learned from training rows
/// only. Saved inside the model so that scoring applies exactly the training-time transformation.
///
/// * Numeric feature → one input: `(value − mean) / std`, with a missing value replaced by the training
///   `impute` value (median) first. `mean`/`std` are those of the training column *after* imputation
///   (population std, as scikit-learn's `StandardScaler`); a constant column gets `std = 1`.
/// * Categorical feature → one input per training level (`name=level`, levels sorted), 1 for the row's level
///   and 0 elsewhere. A blank cell, or a level never seen in training, encodes as **all zeros**: the feature
///   then adds nothing to the log-odds, as if the model did not have it. (That is not the same as the most
///   common level; the model has no evidence about an unseen level, so it does not pretend to.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSchema {
    /// Features in model order.
    pub features: Vec<FeatureSpec>,
}

/// One input column and how it is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Column name.
    pub name: String,
    /// Encoding and its learned parameters.
    #[serde(flatten)]
    pub encoding: FeatureEncoding,
}

/// How one feature is encoded (see [`FeatureSchema`] for the rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureEncoding {
    /// Median-imputed, standardised number.
    Numeric {
        /// Value used for a missing cell (training median).
        impute: f64,
        /// Training mean (after imputation).
        mean: f64,
        /// Training population standard deviation (after imputation), 1 for a constant column.
        std: f64,
        /// How many training cells were missing (for the record: a feature imputed in most rows is weak).
        missing_in_training: usize,
    },
    /// One-hot over the training levels.
    Categorical {
        /// Levels, sorted; one model input each.
        levels: Vec<String>,
    },
}

impl FeatureSpec {
    /// Number of model inputs this feature produces.
    pub fn width(&self) -> usize {
        match &self.encoding {
            FeatureEncoding::Numeric { .. } => 1,
            FeatureEncoding::Categorical { levels } => levels.len(),
        }
    }

    /// Standardises a numeric value (imputing `None`); `None` for a categorical feature.
    pub(crate) fn standardise(&self, value: Option<f64>) -> Option<f64> {
        match self.encoding {
            FeatureEncoding::Numeric { impute, mean, std, .. } => Some((value.unwrap_or(impute) - mean) / std),
            FeatureEncoding::Categorical { .. } => None,
        }
    }
}

impl FeatureSchema {
    /// Learns the schema from the given rows of `table` (the training rows: medians, means, standard
    /// deviations and category levels never see held-out rows). A categorical level seen in the training rows
    /// becomes an input even if rare; callers with very high-cardinality columns should drop or bucket them.
    pub fn fit(table: &FeatureTable, rows: &[usize]) -> Result<Self> {
        if rows.is_empty() {
            return Err(ChurnError::NoRows);
        }
        if let Some(r) = rows.iter().find(|&&r| r >= table.len()) {
            return Err(ChurnError::InvalidConfig(format!(
                "row {r} is beyond the table's {} rows",
                table.len()
            )));
        }
        let mut features = Vec::with_capacity(table.columns().len());
        for column in table.columns() {
            let encoding = match &column.data {
                ColumnData::Numeric(values) => {
                    let mut present: Vec<f64> = rows.iter().filter_map(|&r| values[r]).collect();
                    let missing = rows.len() - present.len();
                    let impute = median(&mut present).unwrap_or(0.0);
                    let n = rows.len() as f64;
                    let mean = rows.iter().map(|&r| values[r].unwrap_or(impute)).sum::<f64>() / n;
                    let var = rows
                        .iter()
                        .map(|&r| (values[r].unwrap_or(impute) - mean).powi(2))
                        .sum::<f64>()
                        / n;
                    let std = var.sqrt();
                    let std = if std > 1e-12 * mean.abs().max(1.0) { std } else { 1.0 };
                    FeatureEncoding::Numeric {
                        impute,
                        mean,
                        std,
                        missing_in_training: missing,
                    }
                }
                ColumnData::Categorical(values) => {
                    let levels: BTreeSet<&str> = rows.iter().filter_map(|&r| values[r].as_deref()).collect();
                    FeatureEncoding::Categorical {
                        levels: levels.into_iter().map(String::from).collect(),
                    }
                }
            };
            features.push(FeatureSpec {
                name: column.name.clone(),
                encoding,
            });
        }
        Ok(FeatureSchema { features })
    }

    /// Total number of model inputs.
    pub fn width(&self) -> usize {
        self.features.iter().map(FeatureSpec::width).sum()
    }

    /// Names of the model inputs in order: the feature name for numeric features, `name=level` for each
    /// level of a categorical one. These label the coefficients.
    pub fn encoded_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width());
        for f in &self.features {
            match &f.encoding {
                FeatureEncoding::Numeric { .. } => names.push(f.name.clone()),
                FeatureEncoding::Categorical { levels } => {
                    names.extend(levels.iter().map(|l| format!("{}={}", f.name, l)));
                }
            }
        }
        names
    }

    /// Whether every feature is numeric (then [`crate::churn::ChurnModel::score_numeric`] applies).
    pub fn is_all_numeric(&self) -> bool {
        self.features
            .iter()
            .all(|f| matches!(f.encoding, FeatureEncoding::Numeric { .. }))
    }

    /// Offsets of each feature's first model input.
    pub(crate) fn offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.features
            .iter()
            .map(|f| {
                let o = at;
                at += f.width();
                o
            })
            .collect()
    }

    /// Finds each schema feature's column in `table`, checking kinds.
    pub(crate) fn bind<'t>(&self, table: &'t FeatureTable) -> Result<Vec<&'t ColumnData>> {
        self.features
            .iter()
            .map(|f| {
                let column = table
                    .column(&f.name)
                    .ok_or_else(|| ChurnError::MissingColumn { column: f.name.clone() })?;
                let ok = matches!(
                    (&f.encoding, &column.data),
                    (FeatureEncoding::Numeric { .. }, ColumnData::Numeric(_))
                        | (FeatureEncoding::Categorical { .. }, ColumnData::Categorical(_))
                );
                if !ok {
                    return Err(ChurnError::SchemaMismatch(format!(
                        "column `{}` is {} but the model reads it as {}",
                        f.name,
                        column.data.kind_name(),
                        if matches!(f.encoding, FeatureEncoding::Numeric { .. }) {
                            "numeric"
                        } else {
                            "categorical"
                        }
                    )));
                }
                Ok(&column.data)
            })
            .collect()
    }

    /// Encodes all rows of `table` into the model-input matrix (rows × [`FeatureSchema::width`]).
    pub fn encode_table(&self, table: &FeatureTable) -> Result<Array2<f64>> {
        let rows: Vec<usize> = (0..table.len()).collect();
        self.encode_rows(table, &rows)
    }

    /// Encodes the given rows of `table`.
    pub(crate) fn encode_rows(&self, table: &FeatureTable, rows: &[usize]) -> Result<Array2<f64>> {
        let columns = self.bind(table)?;
        let mut x = Array2::<f64>::zeros((rows.len(), self.width()));
        let mut offset = 0;
        for (spec, data) in self.features.iter().zip(columns) {
            match (&spec.encoding, data) {
                (FeatureEncoding::Numeric { impute, mean, std, .. }, ColumnData::Numeric(values)) => {
                    for (i, &r) in rows.iter().enumerate() {
                        x[[i, offset]] = (values[r].unwrap_or(*impute) - mean) / std;
                    }
                }
                (FeatureEncoding::Categorical { levels }, ColumnData::Categorical(values)) => {
                    let lookup: HashMap<&str, usize> =
                        levels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
                    for (i, &r) in rows.iter().enumerate() {
                        if let Some(level) = values[r].as_deref().and_then(|v| lookup.get(v)) {
                            x[[i, offset + level]] = 1.0;
                        }
                    }
                }
                // `bind` checked the kinds.
                _ => {
                    return Err(ChurnError::SchemaMismatch(format!(
                        "column `{}` changed kind",
                        spec.name
                    )))
                }
            }
            offset += spec.width();
        }
        Ok(x)
    }

    /// Checks internal consistency (used when loading a model).
    pub(crate) fn validate(&self) -> Result<()> {
        if self.features.is_empty() {
            return Err(ChurnError::InvalidModel("the schema has no features".into()));
        }
        let mut names = std::collections::HashSet::new();
        for f in &self.features {
            if !names.insert(f.name.as_str()) {
                return Err(ChurnError::InvalidModel(format!("feature `{}` appears twice", f.name)));
            }
            match &f.encoding {
                FeatureEncoding::Numeric { impute, mean, std, .. } => {
                    if !(impute.is_finite() && mean.is_finite() && std.is_finite() && *std > 0.0) {
                        return Err(ChurnError::InvalidModel(format!(
                            "feature `{}` has non-finite imputation/standardisation or std <= 0",
                            f.name
                        )));
                    }
                }
                FeatureEncoding::Categorical { levels } => {
                    let distinct: BTreeSet<&String> = levels.iter().collect();
                    if distinct.len() != levels.len() {
                        return Err(ChurnError::InvalidModel(format!(
                            "feature `{}` repeats a level",
                            f.name
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Median of the values (averaging the two middle ones for an even count, as NumPy does); `None` if empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}

//! Tabular data: loading a CSV, inferring column kinds, reading labels. The rules are documented on
//! [`Dataset`].

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{ChurnError, Result};
use super::preprocess::{FeatureEncoding, FeatureSchema};

/// Parses a trimmed, non-blank cell as a number; non-finite values (`NaN`, `inf`) do not count as numbers,
/// because they would poison means and coefficients.
pub(crate) fn parse_number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// How label cells map to churned (`true`) / not churned (`false`).
///
/// Matching is case-insensitive on the trimmed cell. The default accepts `yes`/`no`, `y`/`n`, `true`/`false`,
/// `t`/`f`, `1`/`0` (also `1.0`/`0.0`), `churned`/`retained`, `churn`/`stayed`, `positive`/`negative`, and
/// `not churned`/`active`. Anything else is an error: a label we are unsure about must not be guessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMap {
    positive: Vec<String>,
    negative: Vec<String>,
}

impl Default for LabelMap {
    fn default() -> Self {
        let positive = ["1", "yes", "y", "true", "t", "churned", "churn", "positive"];
        let negative = [
            "0",
            "no",
            "n",
            "false",
            "f",
            "retained",
            "stayed",
            "not churned",
            "active",
            "negative",
        ];
        LabelMap {
            positive: positive.iter().map(|s| s.to_string()).collect(),
            negative: negative.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl LabelMap {
    /// A custom mapping, for datasets whose labels use other words (e.g. `"cancelled"` / `"renewed"`).
    /// Fails if a spelling is blank or appears on both sides.
    pub fn new<P, N, S>(positive: P, negative: N) -> Result<Self>
    where
        P: IntoIterator<Item = S>,
        N: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let norm = |s: S| s.as_ref().trim().to_lowercase();
        let positive: Vec<String> = positive.into_iter().map(norm).collect();
        let negative: Vec<String> = negative.into_iter().map(norm).collect();
        if positive.is_empty() || negative.is_empty() || positive.iter().chain(&negative).any(|s| s.is_empty()) {
            return Err(ChurnError::InvalidConfig(
                "label map needs non-blank spellings on both sides".into(),
            ));
        }
        if let Some(both) = positive.iter().find(|p| negative.contains(p)) {
            return Err(ChurnError::InvalidConfig(format!(
                "label spelling {both:?} is both churned and not churned"
            )));
        }
        Ok(LabelMap { positive, negative })
    }

    /// Reads one label cell: `Some(true)` for churned, `Some(false)` for not churned, `None` when the cell
    /// is none of the accepted spellings.
    pub fn parse(&self, cell: &str) -> Option<bool> {
        let cell = cell.trim().to_lowercase();
        if self.positive.contains(&cell) {
            return Some(true);
        }
        if self.negative.contains(&cell) {
            return Some(false);
        }
        // Numeric spellings of the default 1/0 (e.g. "1.0").
        match parse_number(&cell) {
            Some(v) if v == 1.0 && self.positive.iter().any(|p| p == "1") => Some(true),
            Some(v) if v == 0.0 && self.negative.iter().any(|n| n == "0") => Some(false),
            _ => None,
        }
    }
}

/// The values of one feature column, already typed. `None` is a blank (missing) cell.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// Numbers; missing cells are imputed with the training median.
    Numeric(Vec<Option<f64>>),
    /// Category names; one-hot encoded, missing or unseen categories encode as all zeros.
    Categorical(Vec<Option<String>>),
}

impl ColumnData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Categorical(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `"numeric"` or `"categorical"`, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            ColumnData::Numeric(_) => "numeric",
            ColumnData::Categorical(_) => "categorical",
        }
    }
}

/// A named feature column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name (the CSV header, or the [`crate::churn::AccountFeatures`] field name).
    pub name: String,
    /// Its values.
    pub data: ColumnData,
}

/// Why a column of the input was not used as a feature; reported so that a surprising drop is visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedColumn {
    /// The column.
    pub name: String,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// See [`DroppedColumn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Named by the caller as an id column.
    IdColumn,
    /// Categorical with all values distinct: an identifier in all but name.
    AllDistinct,
    /// Blank in every row.
    AllBlank,
}

/// Feature columns of a set of rows (accounts), without labels: what a model scores.
///
/// Built from a CSV ([`Dataset::from_csv_reader`], [`FeatureTable::from_csv_reader_with_schema`]), from
/// [`crate::churn::AccountFeatures`], or from columns ([`FeatureTable::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTable {
    name: String,
    columns: Vec<Column>,
    ids: Option<Vec<String>>,
    lines: Option<Vec<u64>>,
    rows: usize,
}

impl FeatureTable {
    /// Assembles a table from columns of equal length with distinct names; `ids`, if given, name the rows.
    pub fn new(name: impl Into<String>, columns: Vec<Column>, ids: Option<Vec<String>>) -> Result<Self> {
        let rows = columns
            .first()
            .map(|c| c.data.len())
            .or(ids.as_ref().map(Vec::len))
            .unwrap_or(0);
        let mut seen = HashSet::new();
        for c in &columns {
            if !seen.insert(c.name.as_str()) {
                return Err(ChurnError::DuplicateColumn { column: c.name.clone() });
            }
            if c.data.len() != rows {
                return Err(ChurnError::LengthMismatch {
                    what: format!("column `{}` has {} rows, expected {rows}", c.name, c.data.len()),
                });
            }
        }
        if let Some(ids) = &ids {
            if ids.len() != rows {
                return Err(ChurnError::LengthMismatch {
                    what: format!("{} ids for {rows} rows", ids.len()),
                });
            }
        }
        Ok(FeatureTable {
            name: name.into(),
            columns,
            ids,
            lines: None,
            rows,
        })
    }

    /// The data set's name (file stem for CSVs), recorded in the model's metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The feature columns, in input order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Looks a column up by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Row identifiers (values of the id column), when the input had one.
    pub fn ids(&self) -> Option<&[String]> {
        self.ids.as_deref()
    }

    /// For tables read from a CSV, the 1-based line each row started on (to point people back at the file).
    pub fn lines(&self) -> Option<&[u64]> {
        self.lines.as_deref()
    }

    /// Reads a CSV to be scored by a model: the columns the `schema` names are read and typed as the schema
    /// says (a non-number in a numeric column is [`ChurnError::NotNumeric`] with line and column); other
    /// columns (the label, say) are ignored. `id_column`, if given, must exist and names the rows.
    pub fn from_csv_reader_with_schema<R: Read>(
        reader: R,
        name: impl Into<String>,
        schema: &FeatureSchema,
        id_column: Option<&str>,
        delimiter: u8,
    ) -> Result<Self> {
        let raw = read_raw(reader, delimiter)?;
        let index = |column: &str| {
            raw.header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| ChurnError::MissingColumn { column: column.into() })
        };
        let mut columns = Vec::with_capacity(schema.features.len());
        for feature in &schema.features {
            let at = index(&feature.name)?;
            let cells = &raw.columns[at];
            let data = match feature.encoding {
                FeatureEncoding::Numeric { .. } => {
                    let mut values = Vec::with_capacity(cells.len());
                    for (cell, &line) in cells.iter().zip(&raw.lines) {
                        if cell.is_empty() {
                            values.push(None);
                        } else {
                            let v = parse_number(cell).ok_or_else(|| ChurnError::NotNumeric {
                                line,
                                column: feature.name.clone(),
                                value: cell.clone(),
                            })?;
                            values.push(Some(v));
                        }
                    }
                    ColumnData::Numeric(values)
                }
                FeatureEncoding::Categorical { .. } => {
                    ColumnData::Categorical(cells.iter().map(|c| (!c.is_empty()).then(|| c.clone())).collect())
                }
            };
            columns.push(Column {
                name: feature.name.clone(),
                data,
            });
        }
        let ids = match id_column {
            Some(id) => Some(raw.columns[index(id)?].clone()),
            None => None,
        };
        let mut table = FeatureTable::new(name, columns, ids)?;
        table.rows = raw.lines.len();
        table.lines = Some(raw.lines);
        Ok(table)
    }

    /// [`FeatureTable::from_csv_reader_with_schema`] on a file (comma-separated); the table is named after
    /// the file stem.
    pub fn from_csv_path_with_schema(path: &Path, schema: &FeatureSchema, id_column: Option<&str>) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| ChurnError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_csv_reader_with_schema(file, stem(path), schema, id_column, b',')
    }
}

/// Options for reading a labelled CSV ([`Dataset::from_csv_path`]).
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The label column (`--label COLUMN`).
    pub label: String,
    /// Columns to drop as identifiers (e.g. `customerID`); each must exist.
    pub id_columns: Vec<String>,
    /// Also drop categorical columns whose values are all distinct (default on).
    pub auto_drop_ids: bool,
    /// How label cells map to churned / not churned.
    pub labels: LabelMap,
    /// Field delimiter (default `b','`).
    pub delimiter: u8,
    /// Columns read as categorical whatever their cells look like (see [`CsvOptions::like`]).
    pub categorical: Vec<String>,
}

impl CsvOptions {
    /// Defaults for the given label column: no explicit id columns, auto-drop on, default label map, commas.
    pub fn new(label: impl Into<String>) -> Self {
        CsvOptions {
            label: label.into(),
            id_columns: Vec::new(),
            auto_drop_ids: true,
            labels: LabelMap::default(),
            delimiter: b',',
            categorical: Vec::new(),
        }
    }

    /// Options for reading a separate test file of `train`: its categorical columns stay categorical even
    /// where the test file's cells all look like numbers (a `tier` column with `high` in training and only
    /// `1`, `2` in the test file), and nothing is auto-dropped as an identifier.
    pub fn like(&self, train: &Dataset) -> Self {
        let mut options = self.clone();
        options.auto_drop_ids = false;
        options.categorical = train
            .features
            .columns
            .iter()
            .filter(|c| matches!(c.data, ColumnData::Categorical(_)))
            .map(|c| c.name.clone())
            .collect();
        options
    }

    /// Adds an id column to drop.
    pub fn id_column(mut self, column: impl Into<String>) -> Self {
        self.id_columns.push(column.into());
        self
    }
}

/// Labelled training data: a [`FeatureTable`] plus churned / not-churned labels.
///
/// # CSV rules (the same for every CSV)
/// * Cells are trimmed; a cell that is empty after trimming is **blank** (missing).
/// * At training time a column is **numeric** if every non-blank cell parses as a finite `f64`, otherwise it
///   is **categorical** — a stray word in a numeric column turns the column categorical rather than failing.
///   At scoring time ([`FeatureTable::from_csv_reader_with_schema`]) the model's schema decides, and a
///   non-number in a numeric column is a [`ChurnError::NotNumeric`] naming line and column.
/// * Dropped: the columns named in [`CsvOptions::id_columns`]; columns that are blank everywhere; and (when
///   [`CsvOptions::auto_drop_ids`] is on) categorical columns whose non-blank values are all distinct, because
///   such a column is an identifier (one-hot encoding it would learn nothing that generalises). The first id
///   column (requested, else detected) is kept as the row identifier.
/// * The label column is mapped to churned / not churned by a [`LabelMap`]; a blank or unknown label is an
///   error naming line and column, never a silent guess.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    features: FeatureTable,
    labels: Vec<bool>,
    label_column: String,
    dropped: Vec<DroppedColumn>,
}

impl Dataset {
    /// Pairs features with labels (`true` = churned).
    pub fn new(features: FeatureTable, labels: Vec<bool>, label_column: impl Into<String>) -> Result<Self> {
        if labels.len() != features.len() {
            return Err(ChurnError::LengthMismatch {
                what: format!("{} labels for {} rows", labels.len(), features.len()),
            });
        }
        Ok(Dataset {
            features,
            labels,
            label_column: label_column.into(),
            dropped: Vec::new(),
        })
    }

    /// Appends a separate test set (e.g. a second CSV) after this training set and returns the combined data
    /// set with the split that keeps them apart: rows `0..self.len()` train, the appended rows are held out.
    /// Every training column must be in the test set with the same kind (a column that is numeric in one
    /// file and text in the other is an error naming it); extra test columns are ignored. Row ids are kept
    /// when both sets have them. `seed` seeds the cross-validation folds.
    pub fn with_test_set(self, test: Dataset, seed: u64) -> Result<(Dataset, super::split::Split)> {
        let (n_train, n_test) = (self.len(), test.len());
        let mut columns = Vec::with_capacity(self.features.columns.len());
        for column in self.features.columns {
            let other = test
                .features
                .column(&column.name)
                .ok_or_else(|| ChurnError::MissingColumn {
                    column: column.name.clone(),
                })?;
            let data = match (column.data, &other.data) {
                (ColumnData::Numeric(mut a), ColumnData::Numeric(b)) => {
                    a.extend_from_slice(b);
                    ColumnData::Numeric(a)
                }
                (ColumnData::Categorical(mut a), ColumnData::Categorical(b)) => {
                    a.extend_from_slice(b);
                    ColumnData::Categorical(a)
                }
                (a, b) => {
                    return Err(ChurnError::SchemaMismatch(format!(
                        "column `{}` is {} in the training set but {} in the test set",
                        column.name,
                        a.kind_name(),
                        b.kind_name()
                    )))
                }
            };
            columns.push(Column {
                name: column.name,
                data,
            });
        }
        let ids = match (self.features.ids, test.features.ids) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            _ => None,
        };
        let name = format!("{}+{}", self.features.name, test.features.name);
        let mut features = FeatureTable::new(name, columns, ids)?;
        if let (Some(mut a), Some(b)) = (self.features.lines, test.features.lines) {
            a.extend(b);
            features.lines = Some(a);
        }
        let mut labels = self.labels;
        labels.extend(test.labels);
        let split = super::split::Split {
            train: (0..n_train).collect(),
            test: (n_train..n_train + n_test).collect(),
            seed,
            test_fraction: n_test as f64 / (n_train + n_test) as f64,
        };
        Ok((
            Dataset {
                features,
                labels,
                label_column: self.label_column,
                dropped: self.dropped,
            },
            split,
        ))
    }

    /// Reads a labelled CSV file, following the rules [above](Dataset). The data set is named after
    /// the file stem.
    pub fn from_csv_path(path: &Path, options: &CsvOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| ChurnError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_csv_reader(file, stem(path), options)
    }

    /// Reads a labelled CSV from any reader (see [`Dataset::from_csv_path`]).
    pub fn from_csv_reader<R: Read>(reader: R, name: impl Into<String>, options: &CsvOptions) -> Result<Self> {
        let raw = read_raw(reader, options.delimiter)?;
        let position = |column: &str| {
            raw.header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| ChurnError::MissingColumn { column: column.into() })
        };
        let label_at = position(&options.label)?;
        let mut id_at = Vec::new();
        for id in &options.id_columns {
            id_at.push(position(id)?);
        }
        if raw.lines.is_empty() {
            return Err(ChurnError::NoRows);
        }

        let mut labels = Vec::with_capacity(raw.lines.len());
        for (cell, &line) in raw.columns[label_at].iter().zip(&raw.lines) {
            let label = options.labels.parse(cell).ok_or_else(|| ChurnError::BadLabel {
                line,
                column: options.label.clone(),
                value: cell.clone(),
            })?;
            labels.push(label);
        }

        let mut dropped: Vec<DroppedColumn> = id_at
            .iter()
            .map(|&i| DroppedColumn {
                name: raw.header[i].clone(),
                reason: DropReason::IdColumn,
            })
            .collect();
        let mut ids: Option<Vec<String>> = id_at.first().map(|&i| raw.columns[i].clone());
        let mut columns = Vec::new();
        for (at, (name, cells)) in raw.header.iter().zip(raw.columns).enumerate() {
            if at == label_at || id_at.contains(&at) {
                continue;
            }
            let non_blank = cells.iter().filter(|c| !c.is_empty()).count();
            if non_blank == 0 {
                dropped.push(DroppedColumn {
                    name: name.clone(),
                    reason: DropReason::AllBlank,
                });
                continue;
            }
            let numeric =
                !options.categorical.contains(name) && cells.iter().all(|c| c.is_empty() || parse_number(c).is_some());
            if numeric {
                let values = cells.iter().map(|c| parse_number(c)).collect();
                columns.push(Column {
                    name: name.clone(),
                    data: ColumnData::Numeric(values),
                });
                continue;
            }
            if options.auto_drop_ids && cells.len() >= 2 && non_blank == cells.len() {
                let distinct: HashSet<&str> = cells.iter().map(String::as_str).collect();
                if distinct.len() == cells.len() {
                    dropped.push(DroppedColumn {
                        name: name.clone(),
                        reason: DropReason::AllDistinct,
                    });
                    if ids.is_none() {
                        ids = Some(cells);
                    }
                    continue;
                }
            }
            let values = cells.into_iter().map(|c| (!c.is_empty()).then_some(c)).collect();
            columns.push(Column {
                name: name.clone(),
                data: ColumnData::Categorical(values),
            });
        }
        if columns.is_empty() {
            let names: Vec<&str> = dropped.iter().map(|d| d.name.as_str()).collect();
            return Err(ChurnError::NoFeatures {
                dropped: names.join(", "),
            });
        }
        let mut features = FeatureTable::new(name, columns, ids)?;
        features.lines = Some(raw.lines);
        Ok(Dataset {
            features,
            labels,
            label_column: options.label.clone(),
            dropped,
        })
    }

    /// The features.
    pub fn features(&self) -> &FeatureTable {
        &self.features
    }

    /// Labels, `true` = churned, one per row.
    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    /// Name of the label column (recorded in the model).
    pub fn label_column(&self) -> &str {
        &self.label_column
    }

    /// Columns of the input that were not used, and why.
    pub fn dropped(&self) -> &[DroppedColumn] {
        &self.dropped
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of churned rows.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }
}

/// A CSV read as trimmed strings, column-major, with the line each row started on.
struct RawCsv {
    header: Vec<String>,
    columns: Vec<Vec<String>>,
    lines: Vec<u64>,
}

fn read_raw<R: Read>(reader: R, delimiter: u8) -> Result<RawCsv> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(reader);
    let header: Vec<String> = rdr
        .headers()
        .map_err(ChurnError::csv)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.is_empty() {
        return Err(ChurnError::BadHeader { position: 0 });
    }
    let mut seen = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            return Err(ChurnError::BadHeader { position: i + 1 });
        }
        if seen.insert(h.as_str(), i).is_some() {
            return Err(ChurnError::DuplicateColumn { column: h.clone() });
        }
    }
    let mut columns: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    let mut lines = Vec::new();
    let mut record = csv::StringRecord::new();
    while rdr.read_record(&mut record).map_err(ChurnError::csv)? {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != header.len() {
            return Err(ChurnError::FieldCount {
                line,
                expected: header.len(),
                found: record.len(),
            });
        }
        for (column, cell) in columns.iter_mut().zip(record.iter()) {
            column.push(cell.trim().to_string());
        }
        lines.push(line);
    }
    Ok(RawCsv { header, columns, lines })
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_label_map() {
        let m = LabelMap::default();
        for yes in ["Yes", " TRUE ", "1", "1.0", "churned", "Y"] {
            assert_eq!(m.parse(yes), Some(true), "{yes}");
        }
        for no in ["no", "False", "0", "0.0", "Retained", "not churned"] {
            assert_eq!(m.parse(no), Some(false), "{no}");
        }
        for bad in ["", "maybe", "2", "yes please"] {
            assert_eq!(m.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn custom_label_map_rejects_overlap() {
        assert!(LabelMap::new(["cancelled"], ["renewed"]).is_ok());
        assert!(LabelMap::new(["x"], ["X"]).is_err());
        assert!(LabelMap::new(Vec::<&str>::new(), vec!["a"]).is_err());
    }
}

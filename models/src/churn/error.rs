//! The one error type of the churn pipeline.

use std::path::PathBuf;

/// Everything that can go wrong while loading data, training, saving, loading or scoring a churn model.
///
/// Errors caused by a particular cell of an input file carry the 1-based `line` of the file and the `column`
/// name, so that whoever fixes the file does not have to search for it. Errors caused by an in-memory record
/// carry its 0-based `row` index instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChurnError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV reader failed (invalid UTF-8, an I/O error while reading, …).
    #[error("CSV error{}: {source}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Csv {
        /// The line where the reader stopped, when it knows it.
        line: Option<u64>,
        /// The underlying error.
        source: csv::Error,
    },
    /// The CSV has no header row, or a header cell is blank.
    #[error("the CSV header is missing or has a blank column name (column {position})")]
    BadHeader {
        /// 1-based position of the offending header cell (0 when the header is missing altogether).
        position: usize,
    },
    /// Two header cells carry the same name, so columns could not be told apart by name.
    #[error("the CSV header names column `{column}` twice")]
    DuplicateColumn {
        /// The repeated name.
        column: String,
    },
    /// A column the caller (or the model's schema) needs is not in the data.
    #[error("column `{column}` is not in the data")]
    MissingColumn {
        /// The missing column.
        column: String,
    },
    /// A data row has a different number of fields from the header.
    #[error("line {line}: expected {expected} fields (as in the header), found {found}")]
    FieldCount {
        /// 1-based line of the row.
        line: u64,
        /// Number of header fields.
        expected: usize,
        /// Number of fields in this row.
        found: usize,
    },
    /// A label cell is blank or is not one of the accepted spellings (see [`crate::churn::LabelMap`]).
    #[error("line {line}, column `{column}`: cannot read label {value:?} as churned/not churned")]
    BadLabel {
        /// 1-based line of the row (or 0-based row index for in-memory data).
        line: u64,
        /// The label column.
        column: String,
        /// The offending cell.
        value: String,
    },
    /// A cell of a column the model treats as numeric is not a finite number (scoring-time check; at training
    /// time such a column would have been inferred as categorical instead).
    #[error(
        "line {line}, column `{column}`: {value:?} is not a finite number, and the model reads this column as numeric"
    )]
    NotNumeric {
        /// 1-based line of the row.
        line: u64,
        /// The column.
        column: String,
        /// The offending cell.
        value: String,
    },
    /// A value of an in-memory record cannot be used for its feature.
    #[error("record {row}, feature `{column}`: {reason}")]
    BadValue {
        /// 0-based index of the record in the batch.
        row: usize,
        /// The feature.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data has no rows at all.
    #[error("the data has no rows")]
    NoRows,
    /// After dropping the label, id and unusable columns, nothing is left to learn from.
    #[error("no usable feature columns are left (dropped: {dropped})")]
    NoFeatures {
        /// Comma-separated list of the dropped columns.
        dropped: String,
    },
    /// Training (or AUC) needs both churned and non-churned examples.
    #[error("need both classes, found {positives} churned and {negatives} not churned")]
    SingleClass {
        /// Number of churned examples.
        positives: usize,
        /// Number of non-churned examples.
        negatives: usize,
    },
    /// Two parallel inputs (e.g. scores and labels) have different lengths.
    #[error("length mismatch: {what}")]
    LengthMismatch {
        /// Description of the two lengths.
        what: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The data does not fit the model's feature schema (wrong column kind, wrong matrix width, …).
    #[error("data does not match the model's schema: {0}")]
    SchemaMismatch(String),
    /// The logistic-regression solver failed.
    #[error("logistic regression failed to fit: {0}")]
    Fit(String),
    /// A model file is not valid JSON or not a churn model.
    #[error("{path}: not a valid churn model file: {source}")]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A model artifact parsed but is inconsistent (e.g. coefficient count does not match the schema).
    #[error("invalid churn model: {0}")]
    InvalidModel(String),
}

/// Shorthand for results of the churn pipeline.
pub type Result<T, E = ChurnError> = std::result::Result<T, E>;

impl ChurnError {
    pub(crate) fn csv(source: csv::Error) -> Self {
        let line = source.position().map(|p| p.line());
        ChurnError::Csv { line, source }
    }
}

//! The one plain-text table every CLI listing prints: columns as wide as
//! their widest cell, numbers right-aligned, text left, cells separated by
//! ` | ` under a `-+-` rule. Plain ASCII so it survives pipes, logs and
//! copying into an issue.

use std::fmt;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// A column: its header and alignment.
#[derive(Debug, Clone)]
pub struct Column {
    header: String,
    align: Align,
}

/// A left-aligned (text) column.
pub fn left(header: &str) -> Column {
    Column {
        header: header.to_owned(),
        align: Align::Left,
    }
}

/// A right-aligned (numeric) column.
pub fn right(header: &str) -> Column {
    Column {
        header: header.to_owned(),
        align: Align::Right,
    }
}

/// Rows under headers; `Display` renders it, one line per row.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    indent: usize,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        Self {
            columns: columns.into_iter().collect(),
            rows: Vec::new(),
            indent: 0,
        }
    }

    /// Indents every line by `n` spaces (a table under an indented heading).
    pub fn indent(mut self, n: usize) -> Self {
        self.indent = n;
        self
    }

    /// Adds a row; missing trailing cells are blank, extra ones dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        debug_assert!(row.len() <= self.columns.len(), "more cells than columns: {row:?}");
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    fn line(&self, f: &mut fmt::Formatter<'_>, widths: &[usize], cells: &[&str]) -> fmt::Result {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths.iter().zip(&self.columns))
            .map(|(c, (&w, col))| match col.align {
                Align::Left => format!("{c:<w$}"),
                Align::Right => format!("{c:>w$}"),
            })
            .collect();
        writeln!(
            f,
            "{:indent$}{}",
            "",
            parts.join(" | ").trim_end(),
            indent = self.indent
        )
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.header.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let headers: Vec<&str> = self.columns.iter().map(|c| c.header.as_str()).collect();
        self.line(f, &widths, &headers)?;
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        writeln!(f, "{:indent$}{}", "", rule.join("-+-"), indent = self.indent)?;
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            self.line(f, &widths, &cells)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_columns_to_content_and_aligns_numbers_right() {
        let mut t = Table::new([left("a"), right("bb")]);
        t.row(["xyz", "1"]);
        t.row(["q", "1234"]);
        assert_eq!(t.to_string(), "a   |   bb\n----+-----\nxyz |    1\nq   | 1234\n");
    }

    #[test]
    fn trailing_text_is_not_padded_and_short_rows_are_blank_filled() {
        let mut t = Table::new([right("n"), left("note")]);
        t.row(["10", "a long note"]);
        t.row(["2"]);
        assert_eq!(t.to_string(), " n | note\n---+------------\n10 | a long note\n 2 |\n");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut t = Table::new([left("x"), left("y")]);
        t.row(["€€", "z"]);
        assert_eq!(t.to_string(), "x  | y\n---+--\n€€ | z\n");
    }

    #[test]
    fn indents_every_line() {
        let mut t = Table::new([left("k")]);
        t.row(["v"]);
        assert_eq!(t.indent(2).to_string(), "  k\n  -\n  v\n");
    }
}

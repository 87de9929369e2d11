//! The declared metrics, computed from `events` over a run of periods: one
//! bound query per event type a metric names (tenant-scoped, optionally one
//! account), bucketed by period here, so the SQL is the same on SQLite and
//! Postgres (no engine-specific JSON functions).

use std::collections::BTreeMap;

use kairos_core::Store;
use serde::Serialize;
use sqlx::Row;

use super::config::{Format, MetricDef, Op};
use super::period::Period;

/// One metric over the report's periods.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MetricFact {
    /// Name from config.
    pub name: String,
    /// Label in the report's language.
    pub label: String,
    /// `number` or `percent` (percent values are already × 100).
    pub format: Format,
    /// Whether a rise is good news.
    pub higher_is_better: bool,
    /// This period (None: undefined, e.g. a mean of nothing).
    pub current: Option<f64>,
    /// The period before.
    pub previous: Option<f64>,
    /// Change from previous to current, in percent of previous (None when
    /// either is undefined or previous is 0).
    pub change_pct: Option<f64>,
    /// The last periods, oldest first, ending with `current`.
    pub trend: Vec<Option<f64>>,
}

/// Rounds for people and for the facts an LLM may quote (2 decimals).
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Relative change in percent, 1 decimal.
pub fn change_pct(previous: Option<f64>, current: Option<f64>) -> Option<f64> {
    match (previous, current) {
        (Some(p), Some(c)) if p != 0.0 => Some((((c - p) / p.abs()) * 1000.0).round() / 10.0),
        _ => None,
    }
}

#[derive(Default, Clone)]
struct Acc {
    count: f64,
    sums: BTreeMap<String, (f64, f64)>,
}

/// Computes `defs` over `periods` (oldest first; the last is the report's).
pub async fn compute(
    store: &Store,
    tenant_id: &str,
    account_id: Option<&str>,
    defs: &[MetricDef],
    periods: &[Period],
    language: &str,
) -> Result<Vec<MetricFact>, sqlx::Error> {
    let (Some(first), Some(last)) = (periods.first(), periods.last()) else {
        return Ok(Vec::new());
    };
    // Which fields each event type needs.
    let mut types: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for d in defs {
        match &d.op {
            Op::Count { event } => {
                types.entry(event.as_str()).or_default();
            }
            Op::Sum { field, event } | Op::Mean { field, event } => {
                types.entry(event.as_str()).or_default().push(field.as_str())
            }
            Op::Ratio { .. } => {}
        }
    }
    let mut acc: BTreeMap<&str, Vec<Acc>> = BTreeMap::new();
    for (event, fields) in &types {
        let mut buckets = vec![Acc::default(); periods.len()];
        let data_col = if fields.is_empty() {
            "CAST('{}' AS TEXT)"
        } else {
            "data"
        };
        let rows = sqlx::query(&format!(
            "SELECT occurred_at, {data_col} AS data FROM events WHERE tenant_id = $1 AND type = $2 \
             AND occurred_at >= $3 AND occurred_at < $4 AND ($5 IS NULL OR account_id = $5)"
        ))
        .bind(tenant_id)
        .bind(*event)
        .bind(first.start_ms)
        .bind(last.end_ms)
        .bind(account_id)
        .fetch_all(store.pool())
        .await?;
        for r in &rows {
            let at: i64 = r.try_get("occurred_at")?;
            let Some(i) = periods.iter().position(|p| at >= p.start_ms && at < p.end_ms) else {
                continue;
            };
            let b = &mut buckets[i];
            b.count += 1.0;
            if fields.is_empty() {
                continue;
            }
            let data: String = r.try_get("data")?;
            let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(&data) else {
                continue;
            };
            for f in fields {
                if let Some(x) = obj.get(*f).and_then(serde_json::Value::as_f64) {
                    let e = b.sums.entry((*f).to_owned()).or_insert((0.0, 0.0));
                    e.0 += x;
                    e.1 += 1.0;
                }
            }
        }
        acc.insert(*event, buckets);
    }
    let mut raw: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let mut out = Vec::with_capacity(defs.len());
    for d in defs {
        let values: Vec<Option<f64>> = (0..periods.len())
            .map(|i| {
                let bucket = |e: &str| acc.get(e).and_then(|b| b.get(i));
                match &d.op {
                    Op::Count { event } => Some(bucket(event).map_or(0.0, |b| b.count)),
                    Op::Sum { field, event } => {
                        Some(bucket(event).and_then(|b| b.sums.get(field)).map_or(0.0, |s| s.0))
                    }
                    Op::Mean { field, event } => bucket(event)
                        .and_then(|b| b.sums.get(field))
                        .filter(|s| s.1 > 0.0)
                        .map(|s| s.0 / s.1),
                    Op::Ratio { numerator, denominator } => {
                        let get = |n: &str| raw.get(n).and_then(|v| v.get(i)).copied().flatten();
                        match (get(numerator), get(denominator)) {
                            (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                            _ => None,
                        }
                    }
                }
            })
            .collect();
        raw.insert(d.name.as_str(), values.clone());
        let shown: Vec<Option<f64>> = values
            .iter()
            .map(|v| {
                v.map(|x| match d.format {
                    Format::Percent => round2(x * 100.0),
                    Format::Number => round2(x),
                })
            })
            .collect();
        let current = shown.last().copied().flatten();
        let previous = shown.len().checked_sub(2).and_then(|i| shown[i]);
        out.push(MetricFact {
            name: d.name.clone(),
            label: d.label(language).to_owned(),
            format: d.format,
            higher_is_better: d.higher_is_better,
            current,
            previous,
            change_pct: change_pct(previous, current),
            trend: shown,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_is_relative_to_the_previous_period() {
        assert_eq!(change_pct(Some(4.0), Some(5.0)), Some(25.0));
        assert_eq!(change_pct(Some(3.0), Some(2.0)), Some(-33.3));
        assert_eq!(change_pct(Some(0.0), Some(2.0)), None);
        assert_eq!(change_pct(None, Some(2.0)), None);
    }
}

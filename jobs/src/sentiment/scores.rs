//! `sentiment_scores` (every scored comment and ticket) and the
//! `client_dissatisfaction` alerts with the notification jobs they queue:
//! written together in one transaction by the job, read by the API.

use kairos_core::enqueue::{insert_jobs, NewJob};
use kairos_core::profile::redact_alert_payload;
use kairos_core::store::{guard_subject, is_erased, raise_alert, NewAlert};
use kairos_core::Store;
use sqlx::Row;

/// One stored score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    /// The job that scored it (also the row id).
    pub job_id: String,
    /// Account id.
    pub account_id: String,
    /// The event scored.
    pub event_id: String,
    /// Its type (`comment.created`, `ticket.created`, ...).
    pub event_type: String,
    /// `negative`, `neutral` or `positive`.
    pub label: String,
    /// Confidence of the label.
    pub score: f64,
    /// P(positive) − P(negative).
    pub polarity: f64,
    /// `{label: probability}`.
    pub probabilities: serde_json::Value,
    /// `es`, `en`, or `None` when undetermined.
    pub language: Option<String>,
    /// 0–100.
    pub urgency: i64,
    /// Urgency keywords found.
    pub keywords: serde_json::Value,
    /// Model (head) version.
    pub model_version: String,
    /// Epoch ms.
    pub scored_at: i64,
    /// Windows the text was scored in (1 unless it was longer than the encoder's window; then the
    /// probabilities are their word-weighted mean and alerting used the most negative one).
    pub chunks: i64,
}

const COLUMNS: &str = "id, account_id, event_id, event_type, label, score, polarity, probabilities, language, \
                       urgency, keywords, model_version, scored_at, chunks";

/// Stores a score, and the alert and its notification jobs if any, in one
/// transaction (a re-run of the same job rewrites its row; the alert and
/// jobs are created once).
///
/// `user_id` is the author of the scored text. If they (or their account)
/// were erased — possibly while this job was running — the alert's text
/// excerpt is redacted before it is written, here and in `jobs`' payloads
/// (which the caller queues after commit), so personal data never comes
/// back. The check runs under the erasure lock (`guard_subject`), after the
/// first write.
pub async fn store(
    store: &Store,
    tenant_id: &str,
    user_id: Option<&str>,
    row: &ScoreRow,
    alert: Option<&NewAlert>,
    jobs: &mut [NewJob],
) -> Result<(), sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    guard_subject(&mut tx, store.engine(), tenant_id, &row.account_id).await?;
    sqlx::query(
        "INSERT INTO sentiment_scores (id, tenant_id, account_id, event_id, event_type, label, score, polarity, \
         probabilities, language, urgency, keywords, model_version, job_id, scored_at, chunks) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (id) DO UPDATE SET label = excluded.label, score = excluded.score, \
         polarity = excluded.polarity, probabilities = excluded.probabilities, language = excluded.language, \
         urgency = excluded.urgency, keywords = excluded.keywords, model_version = excluded.model_version, \
         scored_at = excluded.scored_at, chunks = excluded.chunks",
    )
    .bind(&row.job_id)
    .bind(tenant_id)
    .bind(&row.account_id)
    .bind(&row.event_id)
    .bind(&row.event_type)
    .bind(&row.label)
    .bind(row.score)
    .bind(row.polarity)
    .bind(row.probabilities.to_string())
    .bind(row.language.as_deref())
    .bind(row.urgency)
    .bind(row.keywords.to_string())
    .bind(&row.model_version)
    .bind(&row.job_id)
    .bind(row.scored_at)
    .bind(row.chunks)
    .execute(&mut *tx)
    .await?;
    let erased = is_erased(&mut tx, tenant_id, &row.account_id, user_id).await?;
    if let Some(a) = alert {
        let mut a = a.clone();
        if erased {
            redact_alert_payload(&mut a.payload);
            for job in jobs.iter_mut() {
                if let Ok(mut p) = serde_json::from_str::<serde_json::Value>(&job.payload) {
                    if p.get_mut("details").is_some_and(redact_alert_payload) {
                        job.payload = p.to_string();
                    }
                }
            }
        }
        raise_alert(&mut tx, tenant_id, &a).await?;
        insert_jobs(&mut tx, jobs, row.scored_at).await?;
    }
    tx.commit().await
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ScoreRow, sqlx::Error> {
    let json = |col: &str| -> Result<serde_json::Value, sqlx::Error> {
        let text: String = r.try_get(col)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(ScoreRow {
        job_id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        label: r.try_get("label")?,
        score: r.try_get("score")?,
        polarity: r.try_get("polarity")?,
        probabilities: json("probabilities")?,
        language: r.try_get("language")?,
        urgency: r.try_get("urgency")?,
        keywords: json("keywords")?,
        model_version: r.try_get("model_version")?,
        scored_at: r.try_get("scored_at")?,
        chunks: r.try_get("chunks")?,
    })
}

/// An account's most recent scores, newest first.
pub async fn recent(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    limit: i64,
) -> Result<Vec<ScoreRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sentiment_scores WHERE tenant_id = $1 AND account_id = $2 \
         ORDER BY scored_at DESC, id DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(account_id)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// A tenant's score of one event, if it was scored.
pub async fn for_event(store: &Store, tenant_id: &str, event_id: &str) -> Result<Option<ScoreRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sentiment_scores WHERE tenant_id = $1 AND event_id = $2 \
         ORDER BY scored_at DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(event_id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Rolling averages of an account's polarity: over the last `window_ms`
/// (as of `now`) and overall; `(avg, count)` each, `None` with no scores.
pub async fn averages(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    now: i64,
    window_ms: i64,
) -> Result<[(Option<f64>, i64); 2], sqlx::Error> {
    let row = sqlx::query(
        "SELECT AVG(CASE WHEN scored_at >= $3 THEN polarity END) AS window_avg, \
         COUNT(CASE WHEN scored_at >= $3 THEN 1 END) AS window_n, \
         AVG(polarity) AS all_avg, COUNT(*) AS all_n \
         FROM sentiment_scores WHERE tenant_id = $1 AND account_id = $2",
    )
    .bind(tenant_id)
    .bind(account_id)
    .bind(now - window_ms)
    .fetch_one(store.pool())
    .await?;
    Ok([
        (row.try_get("window_avg")?, row.try_get("window_n")?),
        (row.try_get("all_avg")?, row.try_get("all_n")?),
    ])
}

/// Scores of a tenant per (label, language): count and mean urgency, for
/// summaries (the demo, ops reports).
pub async fn summary(store: &Store, tenant_id: &str) -> Result<Vec<(String, Option<String>, i64, f64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT label, language, COUNT(*) AS n, AVG(CAST(urgency AS DOUBLE PRECISION)) AS u FROM sentiment_scores \
         WHERE tenant_id = $1 GROUP BY label, language ORDER BY label, language",
    )
    .bind(tenant_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("label")?,
                r.try_get("language")?,
                r.try_get("n")?,
                r.try_get("u")?,
            ))
        })
        .collect()
}

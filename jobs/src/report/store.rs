//! `reports` and `report_deliveries`: the stored, versioned reports and
//! who each was delivered to. The (tenant, account, period, version) key is
//! the idempotence point of generation; a delivery row committed before
//! the send is the idempotence point of delivery.

use kairos_core::Store;
use sqlx::Row;

/// Namespace of report ids (UUIDv5 of tenant|account|period|version).
const REPORT_NS: uuid::Uuid = uuid::Uuid::from_u128(0x6b61_6972_6f73_2d72_6570_6f72_7473_0001);

/// The id of a report version: the same on every replica and every retry.
pub fn report_id(tenant_id: &str, account_id: &str, period: &str, version: i64) -> String {
    uuid::Uuid::new_v5(
        &REPORT_NS,
        format!("{tenant_id}|{account_id}|{period}|{version}").as_bytes(),
    )
    .to_string()
}

/// A stored report.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Account ('' for the portfolio report).
    pub account_id: String,
    /// `account` | `tenant`.
    pub scope: String,
    /// `2026-W48`.
    pub period: String,
    /// 1 for the scheduled one; re-runs add versions.
    pub version: i64,
    /// Epoch ms.
    pub period_start: i64,
    /// Epoch ms.
    pub period_end: i64,
    /// IANA zone.
    pub time_zone: String,
    /// `es` | `en`.
    pub language: String,
    /// `template` | `llm`.
    pub narrative_source: String,
    /// Model, when an LLM wrote it.
    pub llm_model: Option<String>,
    /// Prompt tokens used (LLM).
    pub tokens_prompt: Option<i64>,
    /// Completion tokens used (LLM).
    pub tokens_completion: Option<i64>,
    /// Time to gather, write and render, ms.
    pub generation_ms: i64,
    /// Facts JSON.
    pub facts: String,
    /// Narrative JSON.
    pub narrative: String,
    /// HTML document.
    pub html: String,
    /// Markdown document.
    pub markdown: String,
    /// `pending` | `delivered` | `partial` | `failed` | `unknown` | `none`.
    pub delivery_state: String,
    /// The last delivery problem, for people.
    pub delivery_error: Option<String>,
    /// The job that generated it.
    pub job_id: String,
    /// Epoch ms.
    pub created_at: i64,
}

const COLUMNS: &str = "id, tenant_id, account_id, scope, period, version, period_start, period_end, time_zone, \
    language, narrative_source, llm_model, tokens_prompt, tokens_completion, generation_ms, facts, narrative, html, \
    markdown, delivery_state, delivery_error, job_id, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<StoredReport, sqlx::Error> {
    Ok(StoredReport {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        account_id: r.try_get("account_id")?,
        scope: r.try_get("scope")?,
        period: r.try_get("period")?,
        version: r.try_get("version")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
        time_zone: r.try_get("time_zone")?,
        language: r.try_get("language")?,
        narrative_source: r.try_get("narrative_source")?,
        llm_model: r.try_get("llm_model")?,
        tokens_prompt: r.try_get("tokens_prompt")?,
        tokens_completion: r.try_get("tokens_completion")?,
        generation_ms: r.try_get("generation_ms")?,
        facts: r.try_get("facts")?,
        narrative: r.try_get("narrative")?,
        html: r.try_get("html")?,
        markdown: r.try_get("markdown")?,
        delivery_state: r.try_get("delivery_state")?,
        delivery_error: r.try_get("delivery_error")?,
        job_id: r.try_get("job_id")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Inserts `r` unless its (tenant, account, period, version) exists.
/// Returns whether this call wrote it.
pub async fn insert(store: &Store, r: &StoredReport) -> Result<bool, sqlx::Error> {
    let placeholders: Vec<String> = (1..=23).map(|i| format!("${i}")).collect();
    let done = sqlx::query(&format!(
        "INSERT INTO reports ({COLUMNS}) VALUES ({}) ON CONFLICT (tenant_id, account_id, period, version) DO NOTHING",
        placeholders.join(", ")
    ))
    .bind(&r.id)
    .bind(&r.tenant_id)
    .bind(&r.account_id)
    .bind(&r.scope)
    .bind(&r.period)
    .bind(r.version)
    .bind(r.period_start)
    .bind(r.period_end)
    .bind(&r.time_zone)
    .bind(&r.language)
    .bind(&r.narrative_source)
    .bind(r.llm_model.as_deref())
    .bind(r.tokens_prompt)
    .bind(r.tokens_completion)
    .bind(r.generation_ms)
    .bind(&r.facts)
    .bind(&r.narrative)
    .bind(&r.html)
    .bind(&r.markdown)
    .bind(&r.delivery_state)
    .bind(r.delivery_error.as_deref())
    .bind(&r.job_id)
    .bind(r.created_at)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One version of a (tenant, account, period) report.
pub async fn find(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    period: &str,
    version: i64,
) -> Result<Option<StoredReport>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reports WHERE tenant_id = $1 AND account_id = $2 AND period = $3 AND version = $4"
    ))
    .bind(tenant_id)
    .bind(account_id)
    .bind(period)
    .bind(version)
    .fetch_optional(store.pool())
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The highest version of a (tenant, account, period) report, 0 if none.
pub async fn latest_version(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    period: &str,
) -> Result<i64, sqlx::Error> {
    let r = sqlx::query(
        "SELECT COALESCE(MAX(version), 0) AS v FROM reports WHERE tenant_id = $1 AND account_id = $2 AND period = $3",
    )
    .bind(tenant_id)
    .bind(account_id)
    .bind(period)
    .fetch_one(store.pool())
    .await?;
    r.try_get("v")
}

/// A report of the tenant by id (another tenant's is `None`).
pub async fn get(store: &Store, tenant_id: &str, id: &str) -> Result<Option<StoredReport>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reports WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(store.pool())
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Filters and page of a report list.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    /// Only this account.
    pub account_id: Option<String>,
    /// Only `account` or `tenant` reports.
    pub scope: Option<String>,
    /// Only this period.
    pub period: Option<String>,
    /// Page size (1–200).
    pub limit: u32,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Cursors are `created_at|id` of the last item, hex-encoded (opaque to
/// clients; newest first).
fn encode_cursor(r: &StoredReport) -> String {
    hex::encode(format!("{}|{}", r.created_at, r.id))
}

/// The position a cursor stands for; `Err` says why for a 400.
pub fn decode_cursor(c: &str) -> Result<(i64, String), String> {
    let bad = || "not a cursor returned by this API (pass `next_cursor` unchanged)".to_owned();
    let text = String::from_utf8(hex::decode(c).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

/// A page of the tenant's reports, newest first (with their bodies; the
/// API leaves them out of lists).
pub async fn list(
    store: &Store,
    tenant_id: &str,
    filter: &ReportFilter,
) -> Result<(Vec<StoredReport>, Option<String>), ListError> {
    let (at, id) = match &filter.cursor {
        Some(c) => decode_cursor(c).map_err(ListError::Cursor)?,
        None => (i64::MAX, String::new()),
    };
    let limit = filter.limit.clamp(1, 200);
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM reports WHERE tenant_id = $1 AND ($2 IS NULL OR account_id = $2) \
         AND ($3 IS NULL OR period = $3) AND (created_at < $4 OR (created_at = $4 AND ($5 = '' OR id < $5))) \
         AND ($7 IS NULL OR scope = $7) ORDER BY created_at DESC, id DESC LIMIT $6"
    ))
    .bind(tenant_id)
    .bind(filter.account_id.as_deref())
    .bind(filter.period.as_deref())
    .bind(at)
    .bind(&id)
    .bind(i64::from(limit) + 1)
    .bind(filter.scope.as_deref())
    .fetch_all(store.pool())
    .await?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(encode_cursor)
    } else {
        None
    };
    Ok((items, next))
}

/// Why a list failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The cursor was not one of ours.
    #[error("{0}")]
    Cursor(String),
    /// The store.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Records the report's overall delivery state.
pub async fn set_delivery(store: &Store, id: &str, state: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE reports SET delivery_state = $1, delivery_error = $2 WHERE id = $3")
        .bind(state)
        .bind(error)
        .bind(id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// What a delivery claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This attempt may send now (the intent row is committed).
    Claimed,
    /// Sent already: nothing to do.
    Sent,
    /// Refused for good earlier (recorded): nothing to do.
    Rejected,
    /// Another attempt holds the claim and its lease runs.
    InFlight,
    /// An attempt claimed it and vanished (crash) before recording the
    /// outcome: it may or may not have gone out, so it is not sent again.
    Unknown,
}

/// One delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    /// `email` | `webhook`.
    pub channel: String,
    /// Address or webhook key.
    pub recipient: String,
    /// Language sent in.
    pub language: String,
    /// Message-ID / delivery id.
    pub message_id: String,
    /// `sending` | `sent` | `failed` | `rejected` | `unknown`.
    pub state: String,
    /// Send attempts.
    pub attempts: i64,
    /// Last error.
    pub error: Option<String>,
}

/// A recipient to claim.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryKey<'a> {
    /// Report.
    pub report_id: &'a str,
    /// Channel.
    pub channel: &'a str,
    /// Address.
    pub recipient: &'a str,
}

/// Claims a recipient before sending: commits the intent (`sending`, a
/// lease) so that whatever happens next, no later attempt sends blindly.
/// A row left `sending` past its lease was claimed by an attempt that
/// died between claim and record; it becomes `unknown`, never re-sent.
pub async fn claim(
    store: &Store,
    key: DeliveryKey<'_>,
    language: &str,
    message_id: &str,
    lease_ms: i64,
    now: i64,
) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO report_deliveries (report_id, channel, recipient, language, message_id, state, attempts, \
         lease_until, updated_at) VALUES ($1, $2, $3, $4, $5, 'sending', 1, $6, $7) \
         ON CONFLICT (report_id, channel, recipient) DO NOTHING",
    )
    .bind(key.report_id)
    .bind(key.channel)
    .bind(key.recipient)
    .bind(language)
    .bind(message_id)
    .bind(now + lease_ms)
    .bind(now)
    .execute(store.pool())
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Claimed);
    }
    // A known failure (the send did not happen) may be retried; the
    // conditional update makes one attempt win.
    let retried = sqlx::query(
        "UPDATE report_deliveries SET state = 'sending', attempts = attempts + 1, lease_until = $1, updated_at = $2 \
         WHERE report_id = $3 AND channel = $4 AND recipient = $5 AND state = 'failed'",
    )
    .bind(now + lease_ms)
    .bind(now)
    .bind(key.report_id)
    .bind(key.channel)
    .bind(key.recipient)
    .execute(store.pool())
    .await?;
    if retried.rows_affected() == 1 {
        return Ok(Claim::Claimed);
    }
    let crashed = sqlx::query(
        "UPDATE report_deliveries SET state = 'unknown', updated_at = $1, \
         error = 'the attempt that sent it stopped before recording the outcome; not re-sent' \
         WHERE report_id = $2 AND channel = $3 AND recipient = $4 AND state = 'sending' AND lease_until <= $5",
    )
    .bind(now)
    .bind(key.report_id)
    .bind(key.channel)
    .bind(key.recipient)
    .bind(now)
    .execute(store.pool())
    .await?;
    if crashed.rows_affected() == 1 {
        return Ok(Claim::Unknown);
    }
    let state: Option<String> =
        sqlx::query("SELECT state FROM report_deliveries WHERE report_id = $1 AND channel = $2 AND recipient = $3")
            .bind(key.report_id)
            .bind(key.channel)
            .bind(key.recipient)
            .fetch_optional(store.pool())
            .await?
            .map(|r| r.try_get("state"))
            .transpose()?;
    Ok(match state.as_deref() {
        Some("sent") => Claim::Sent,
        Some("rejected") => Claim::Rejected,
        Some("unknown") => Claim::Unknown,
        _ => Claim::InFlight,
    })
}

/// Records a claimed delivery's outcome: `sent`, `failed` (may be retried)
/// or `rejected` (permanent).
pub async fn record(
    store: &Store,
    key: DeliveryKey<'_>,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE report_deliveries SET state = $1, error = $2, lease_until = NULL, updated_at = $3 \
         WHERE report_id = $4 AND channel = $5 AND recipient = $6",
    )
    .bind(state)
    .bind(error)
    .bind(now)
    .bind(key.report_id)
    .bind(key.channel)
    .bind(key.recipient)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// A report's deliveries.
pub async fn deliveries(store: &Store, report_id: &str) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query(
        "SELECT channel, recipient, language, message_id, state, attempts, error FROM report_deliveries \
         WHERE report_id = $1 ORDER BY channel, recipient",
    )
    .bind(report_id)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(DeliveryRow {
            channel: r.try_get("channel")?,
            recipient: r.try_get("recipient")?,
            language: r.try_get("language")?,
            message_id: r.try_get("message_id")?,
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            error: r.try_get("error")?,
        })
    })
    .collect()
}

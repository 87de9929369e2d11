//! The SQL of `nudges` and `nudge_deliveries`: planning (with its delivery
//! job, in one transaction), the claim that checks the caps and commits the
//! intent to send in one serialised transaction ([`claim`]), recording an
//! outcome with its attempts, and the reads the API serves. Every query is
//! scoped to a tenant.

use kairos_core::enqueue::{insert_jobs, NewJob};
use kairos_core::store::Engine;
use kairos_core::Store;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::config::Cap;
use super::guards::{utc_day_start, SentCounts};

/// A nudge as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NudgeRow {
    /// Id.
    pub id: String,
    /// The rule.
    pub rule: String,
    /// Account id.
    pub account_id: String,
    /// Person id.
    pub person_id: String,
    /// What fired the rule (JSON).
    pub trigger: serde_json::Value,
    /// `planned`, `delayed`, `sending` (claimed, going out now), `sent`,
    /// `unknown` (its sender died mid-send, or the mail relay did not answer
    /// after taking the message; never re-sent), `skipped`,
    /// `capped`, `dry_run` or `holdout`.
    pub status: String,
    /// The A/B variant, if the rule has variants.
    pub variant: Option<String>,
    /// Why it was delayed, skipped or capped ('' when sent as planned).
    pub reason: String,
    /// The channel it went (or would have gone) out on.
    pub channel: Option<String>,
    /// Language of the message.
    pub language: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Body.
    pub body: Option<String>,
    /// The rule's priority.
    pub priority: i64,
    /// Whether the rule may bypass quiet hours.
    pub urgent: bool,
    /// Whether the rule is a dry run.
    pub dry_run: bool,
    /// Not before (epoch ms).
    pub run_after: i64,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub updated_at: i64,
    /// Epoch ms.
    pub sent_at: Option<i64>,
    /// Epoch ms (in-app).
    pub read_at: Option<i64>,
    /// First `nudge.opened` (epoch ms).
    pub opened_at: Option<i64>,
    /// First `nudge.clicked`.
    pub clicked_at: Option<i64>,
    /// First `nudge.replied`.
    pub replied_at: Option<i64>,
    /// While `sending`: until when the claiming attempt may still record
    /// its outcome before the nudge counts as `unknown`.
    pub lease_until: Option<i64>,
    /// `template` or `llm`: who wrote the text.
    pub text_source: Option<String>,
    /// Why the template was used on a personalised rule (LLM down, a
    /// number not in the facts, ...).
    pub text_note: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    /// The delivery job's attempt.
    pub attempt: i64,
    /// The channel tried.
    pub channel: String,
    /// `sent`, `queued`, `failed`, `no_consent`, `no_address`, `not_configured`, `dry_run`.
    pub outcome: String,
    /// Detail (the SMTP answer, the reason).
    pub detail: String,
    /// Epoch ms.
    pub at: i64,
}

const COLUMNS: &str =
    "id, rule, account_id, person_id, trigger_info, status, variant, reason, channel, language, subject, \
                       body, priority, urgent, dry_run, run_after, created_at, updated_at, sent_at, read_at, \
                       opened_at, clicked_at, replied_at, lease_until, text_source, text_note";

/// A `COUNT` or `SUM` column of `r` as a count.
fn count(r: &sqlx::any::AnyRow, col: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = r.try_get(col)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<NudgeRow, sqlx::Error> {
    let trigger: String = r.try_get("trigger_info")?;
    Ok(NudgeRow {
        id: r.try_get("id")?,
        rule: r.try_get("rule")?,
        account_id: r.try_get("account_id")?,
        person_id: r.try_get("person_id")?,
        trigger: serde_json::from_str(&trigger).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        status: r.try_get("status")?,
        variant: r.try_get("variant")?,
        reason: r.try_get("reason")?,
        channel: r.try_get("channel")?,
        language: r.try_get("language")?,
        subject: r.try_get("subject")?,
        body: r.try_get("body")?,
        priority: r.try_get("priority")?,
        urgent: r.try_get::<i64, _>("urgent")? != 0,
        dry_run: r.try_get::<i64, _>("dry_run")? != 0,
        run_after: r.try_get("run_after")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        sent_at: r.try_get("sent_at")?,
        read_at: r.try_get("read_at")?,
        opened_at: r.try_get("opened_at")?,
        clicked_at: r.try_get("clicked_at")?,
        replied_at: r.try_get("replied_at")?,
        lease_until: r.try_get("lease_until")?,
        text_source: r.try_get("text_source")?,
        text_note: r.try_get("text_note")?,
    })
}

/// A nudge to plan.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Id (deterministic from tenant and dedupe key).
    pub id: String,
    /// Rule name.
    pub rule: String,
    /// Account.
    pub account_id: String,
    /// Person.
    pub person_id: String,
    /// Unique per tenant.
    pub dedupe_key: String,
    /// What fired it.
    pub trigger: serde_json::Value,
    /// `planned`, `delayed` or `holdout`.
    pub status: &'static str,
    /// The A/B variant.
    pub variant: Option<String>,
    /// Why delayed.
    pub reason: String,
    /// Priority.
    pub priority: i64,
    /// Urgent.
    pub urgent: bool,
    /// Dry run.
    pub dry_run: bool,
    /// Not before.
    pub run_after: i64,
}

/// Records `nudge` and its delivery `job` in one transaction; returns
/// whether it was new. A nudge whose (tenant, dedupe key) exists is left
/// alone and its job is not created: that is the dedupe.
pub async fn plan(
    store: &Store,
    tenant_id: &str,
    nudge: &Planned,
    job: Option<&NewJob>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO nudges (id, tenant_id, rule, account_id, person_id, dedupe_key, trigger_info, status, reason, \
         priority, urgent, dry_run, run_after, created_at, updated_at, variant) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15) \
         ON CONFLICT (tenant_id, dedupe_key) DO NOTHING",
    )
    .bind(&nudge.id)
    .bind(tenant_id)
    .bind(&nudge.rule)
    .bind(&nudge.account_id)
    .bind(&nudge.person_id)
    .bind(&nudge.dedupe_key)
    .bind(nudge.trigger.to_string())
    .bind(nudge.status)
    .bind(&nudge.reason)
    .bind(nudge.priority)
    .bind(i64::from(nudge.urgent))
    .bind(i64::from(nudge.dry_run))
    .bind(nudge.run_after)
    .bind(now)
    .bind(nudge.variant.as_deref())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if let (true, Some(job)) = (inserted, job) {
        insert_jobs(&mut tx, std::slice::from_ref(job), now).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// One nudge of the tenant.
pub async fn get(store: &Store, tenant_id: &str, id: &str) -> Result<Option<NudgeRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM nudges WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The caps a delivery checks.
#[derive(Debug, Clone, Copy)]
pub struct Caps<'a> {
    /// Per person.
    pub person: &'a [Cap],
    /// Per account.
    pub account: &'a [Cap],
    /// Per tenant per UTC day.
    pub tenant_daily: Option<u32>,
}

/// What the caps need: nudges sent — or claimed, or of unknown fate (they
/// may have gone out) — per person cap window, per account cap window, and
/// for the tenant since the start of the UTC day; `except` is left out (the
/// nudge being decided).
async fn counts_on(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    account_id: &str,
    person_id: &str,
    except: &str,
    caps: Caps<'_>,
    now: i64,
) -> Result<SentCounts, sqlx::Error> {
    const COUNTED: &str = "status IN ('sent', 'sending', 'unknown') AND sent_at >= $2 AND id <> $3";
    let since = |c: &Cap| now - i64::try_from(c.per.as_millis()).unwrap_or(i64::MAX / 4);
    let mut counts = SentCounts::default();
    for c in caps.person {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM nudges WHERE tenant_id = $1 AND person_id = $4 AND account_id = $5 AND {COUNTED}"
        ))
        .bind(tenant_id)
        .bind(since(c))
        .bind(except)
        .bind(person_id)
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?;
        counts.person.push(n);
    }
    for c in caps.account {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM nudges WHERE tenant_id = $1 AND account_id = $4 AND {COUNTED}"
        ))
        .bind(tenant_id)
        .bind(since(c))
        .bind(except)
        .bind(account_id)
        .fetch_one(&mut *conn)
        .await?;
        counts.account.push(n);
    }
    if caps.tenant_daily.is_some() {
        counts.tenant_today = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM nudges WHERE tenant_id = $1 AND {COUNTED}"
        ))
        .bind(tenant_id)
        .bind(utc_day_start(now))
        .bind(except)
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(counts)
}

/// The counts of [`counts_on`] without a lock: a cheap early answer (a
/// nudge already capped spends no LLM call); the binding check is [`claim`]'s.
pub async fn sent_counts(
    store: &Store,
    tenant_id: &str,
    n: &NudgeRow,
    caps: Caps<'_>,
    now: i64,
) -> Result<SentCounts, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    counts_on(&mut conn, tenant_id, &n.account_id, &n.person_id, &n.id, caps, now).await
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The intent is committed (`sending`, under the caps): send now, then
    /// record with this claim id.
    Claimed(String),
    /// A cap was full: recorded as `capped` with this reason.
    Capped(String),
    /// The nudge was no longer `planned` or `delayed` (another attempt has it).
    Taken,
}

/// A 64-bit advisory lock key for the scope the caps share.
fn cap_lock_key(scope: &str) -> i64 {
    let digest = Sha256::digest(format!("nudge-caps\u{1f}{scope}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b)
}

/// Claims nudge `n` for sending, atomically with the cap check: in one
/// transaction serialised with every other claim of the same account (of
/// the tenant, when a tenant daily cap is set) — a Postgres advisory lock;
/// on SQLite the first statement is a write, which takes the database's
/// single write lock — the nudge becomes `sending` (its `sent_at` set, so
/// it counts for the next claim at once), the others are counted, and if a
/// cap is full it becomes `capped` instead. So N simultaneous deliveries
/// under a cap of k send exactly min(N, k).
pub async fn claim(
    store: &Store,
    tenant_id: &str,
    n: &NudgeRow,
    caps: Caps<'_>,
    lease_ms: i64,
    now: i64,
) -> Result<Claim, sqlx::Error> {
    let claim_id = uuid::Uuid::now_v7().to_string();
    let mut tx = store.pool().begin().await?;
    if store.engine() == Engine::Postgres {
        let scope = if caps.tenant_daily.is_some() {
            tenant_id.to_owned()
        } else {
            format!("{tenant_id}\u{1f}{}", n.account_id)
        };
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
            .bind(cap_lock_key(&scope))
            .execute(&mut *tx)
            .await?;
    }
    let claimed = sqlx::query(
        "UPDATE nudges SET status = 'sending', claim_id = $3, lease_until = $4, sent_at = $5, updated_at = $5 \
         WHERE tenant_id = $1 AND id = $2 AND status IN ('planned', 'delayed')",
    )
    .bind(tenant_id)
    .bind(&n.id)
    .bind(&claim_id)
    .bind(now + lease_ms)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !claimed {
        tx.rollback().await?;
        return Ok(Claim::Taken);
    }
    let counts = counts_on(&mut tx, tenant_id, &n.account_id, &n.person_id, &n.id, caps, now).await?;
    if let Some(reason) = super::guards::cap_reason(caps.person, caps.account, caps.tenant_daily, &counts) {
        sqlx::query(
            "UPDATE nudges SET status = 'capped', reason = $3, claim_id = NULL, lease_until = NULL, sent_at = NULL \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(&n.id)
        .bind(&reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Claim::Capped(reason));
    }
    tx.commit().await?;
    Ok(Claim::Claimed(claim_id))
}

/// The text reason of an `unknown` nudge.
pub const UNKNOWN_REASON: &str =
    "the attempt sending it stopped before recording the outcome: it may have gone out; not re-sent (at most once)";

/// A `sending` nudge whose lease ran out: its attempt died between claim and
/// record, so it becomes `unknown` and is never sent again. False if it was
/// not (still) in that state.
pub async fn expire_claim(store: &Store, tenant_id: &str, nudge_id: &str, now: i64) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE nudges SET status = 'unknown', reason = $3, updated_at = $4 \
         WHERE tenant_id = $1 AND id = $2 AND status = 'sending' AND lease_until <= $4",
    )
    .bind(tenant_id)
    .bind(nudge_id)
    .bind(UNKNOWN_REASON)
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected()
        == 1)
}

/// A nudge's final state.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `sent`, `unknown` (the relay may have it), `skipped`, `capped` or
    /// `dry_run`.
    pub status: &'static str,
    /// Why (empty when sent).
    pub reason: String,
    /// The channel used (or that would have been).
    pub channel: Option<String>,
    /// Language of the message.
    pub language: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Body.
    pub body: Option<String>,
    /// `template` or `llm`.
    pub text_source: Option<&'static str>,
    /// Why the template replaced the LLM's text.
    pub text_note: Option<String>,
}

async fn insert_attempts(
    tx: &mut sqlx::AnyConnection,
    tenant_id: &str,
    nudge_id: &str,
    attempts: &[DeliveryRow],
) -> Result<(), sqlx::Error> {
    for a in attempts {
        sqlx::query(
            "INSERT INTO nudge_deliveries (id, tenant_id, nudge_id, attempt, channel, outcome, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant_id)
        .bind(nudge_id)
        .bind(a.attempt)
        .bind(&a.channel)
        .bind(&a.outcome)
        .bind(&a.detail)
        .bind(a.at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Records the outcome of a claimed nudge (see [`claim`]) with its attempts
/// and `jobs`, in one transaction: only the claim's holder lands it, on a
/// nudge still `sending` — or already `unknown`, when the lease ran out
/// while the send was slow but alive (the truth replaces the doubt). A
/// `sent` outcome keeps the claim's `sent_at`; any other clears it (it no
/// longer counts for the caps).
#[allow(clippy::too_many_arguments)]
pub async fn record_claimed(
    store: &Store,
    tenant_id: &str,
    nudge_id: &str,
    claim_id: &str,
    attempts: &[DeliveryRow],
    o: &Outcome,
    jobs: &[NewJob],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    let landed = sqlx::query(
        "UPDATE nudges SET status = $3, reason = $4, channel = $5, language = $6, subject = $7, body = $8, \
         sent_at = CASE WHEN $3 = 'sent' THEN sent_at ELSE NULL END, updated_at = $9, lease_until = NULL, \
         text_source = $11, text_note = $12 \
         WHERE tenant_id = $1 AND id = $2 AND claim_id = $10 AND status IN ('sending', 'unknown')",
    )
    .bind(tenant_id)
    .bind(nudge_id)
    .bind(o.status)
    .bind(&o.reason)
    .bind(o.channel.as_deref())
    .bind(o.language.as_deref())
    .bind(o.subject.as_deref())
    .bind(o.body.as_deref())
    .bind(now)
    .bind(claim_id)
    .bind(o.text_source)
    .bind(o.text_note.as_deref())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    insert_attempts(&mut tx, tenant_id, nudge_id, attempts).await?;
    if landed {
        insert_jobs(&mut tx, jobs, now).await?;
    }
    tx.commit().await?;
    Ok(landed)
}

/// Gives a claim back when the send is known not to have happened (a
/// transient refusal): the nudge is `planned` again, for the job's retry.
pub async fn release(
    store: &Store,
    tenant_id: &str,
    nudge_id: &str,
    claim_id: &str,
    attempts: &[DeliveryRow],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    sqlx::query(
        "UPDATE nudges SET status = 'planned', sent_at = NULL, claim_id = NULL, lease_until = NULL, updated_at = $4 \
         WHERE tenant_id = $1 AND id = $2 AND claim_id = $3 AND status = 'sending'",
    )
    .bind(tenant_id)
    .bind(nudge_id)
    .bind(claim_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    insert_attempts(&mut tx, tenant_id, nudge_id, attempts).await?;
    tx.commit().await?;
    Ok(())
}

/// Records the attempts of one delivery run, and the outcome when there is
/// one, with `jobs` (a webhook delivery), in one transaction. The outcome
/// only lands on a nudge still `planned` or `delayed`, so a second run of
/// a finished nudge changes nothing; returns whether it landed.
pub async fn record(
    store: &Store,
    tenant_id: &str,
    nudge_id: &str,
    attempts: &[DeliveryRow],
    outcome: Option<&Outcome>,
    jobs: &[NewJob],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = store.pool().begin().await?;
    insert_attempts(&mut tx, tenant_id, nudge_id, attempts).await?;
    let mut landed = false;
    if let Some(o) = outcome {
        landed = sqlx::query(
            "UPDATE nudges SET status = $3, reason = $4, channel = $5, language = $6, subject = $7, body = $8, \
             sent_at = CASE WHEN $3 = 'sent' THEN $9 ELSE NULL END, updated_at = $9, \
             text_source = $10, text_note = $11 \
             WHERE tenant_id = $1 AND id = $2 AND status IN ('planned', 'delayed')",
        )
        .bind(tenant_id)
        .bind(nudge_id)
        .bind(o.status)
        .bind(&o.reason)
        .bind(o.channel.as_deref())
        .bind(o.language.as_deref())
        .bind(o.subject.as_deref())
        .bind(o.body.as_deref())
        .bind(now)
        .bind(o.text_source)
        .bind(o.text_note.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if landed {
            insert_jobs(&mut tx, jobs, now).await?;
        }
    }
    tx.commit().await?;
    Ok(landed)
}

/// An account's nudges, newest first, with their attempts.
pub async fn for_account(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    limit: i64,
) -> Result<Vec<(NudgeRow, Vec<DeliveryRow>)>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM nudges WHERE tenant_id = $1 AND account_id = $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(account_id)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let n = from_row(r)?;
        let d = deliveries(store, tenant_id, &n.id).await?;
        out.push((n, d));
    }
    Ok(out)
}

/// A nudge's attempts in order.
pub async fn deliveries(store: &Store, tenant_id: &str, nudge_id: &str) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT attempt, channel, outcome, detail, at FROM nudge_deliveries WHERE tenant_id = $1 AND nudge_id = $2 \
         ORDER BY at, id",
    )
    .bind(tenant_id)
    .bind(nudge_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryRow {
                attempt: r.try_get("attempt")?,
                channel: r.try_get("channel")?,
                outcome: r.try_get("outcome")?,
                detail: r.try_get("detail")?,
                at: r.try_get("at")?,
            })
        })
        .collect()
}

/// A person's in-app feed (sent on `in_app`), newest first; `unread` only
/// the ones not marked read.
pub async fn feed(
    store: &Store,
    tenant_id: &str,
    person_id: &str,
    unread: bool,
    limit: i64,
) -> Result<Vec<NudgeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM nudges WHERE tenant_id = $1 AND person_id = $2 AND status = 'sent' \
         AND channel = 'in_app' AND ($3 = 0 OR read_at IS NULL) ORDER BY sent_at DESC, id DESC LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(person_id)
        .bind(i64::from(unread))
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Marks a feed item read (idempotent: the first time is kept); false if
/// the person has no such in-app nudge.
pub async fn mark_read(
    store: &Store,
    tenant_id: &str,
    person_id: &str,
    nudge_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE nudges SET read_at = COALESCE(read_at, $4) WHERE tenant_id = $1 AND person_id = $2 AND id = $3 \
         AND status = 'sent' AND channel = 'in_app'",
    )
    .bind(tenant_id)
    .bind(person_id)
    .bind(nudge_id)
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Accounts of the tenant with no event since `before` (epoch ms).
pub async fn inactive_accounts(store: &Store, tenant_id: &str, before: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT account_id FROM account_activity WHERE tenant_id = $1 AND last_seen < $2 ORDER BY account_id",
    )
    .bind(tenant_id)
    .bind(before)
    .fetch_all(store.pool())
    .await
}

/// Accounts whose latest churn score is at one of `levels`, with that score's probability.
pub async fn accounts_at_risk(
    store: &Store,
    tenant_id: &str,
    levels: &[&str],
) -> Result<Vec<(String, String, f64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.account_id, s.risk_level, s.probability FROM churn_scores s \
         WHERE s.tenant_id = $1 AND s.scored_at = (SELECT MAX(l.scored_at) FROM churn_scores l \
         WHERE l.tenant_id = s.tenant_id AND l.account_id = s.account_id) ORDER BY s.account_id",
    )
    .bind(tenant_id)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let level: String = r.try_get("risk_level")?;
        if levels.contains(&level.as_str()) {
            out.push((r.try_get("account_id")?, level, r.try_get("probability")?));
        }
    }
    Ok(out)
}

/// Per (rule, variant) of the rules with variants or a holdout, from the
/// [`funnel`]'s rows (summed over channels): people assigned (intention to
/// treat: sent, skipped and capped alike; dry runs left out) and how many
/// re-engaged — an event of the person on the same account within the
/// window after the nudge was decided. In the funnel's order (rule, variant).
pub fn experiment_counts(funnel: &[FunnelRow]) -> Vec<(String, String, u64, u64)> {
    let mut out: Vec<(String, String, u64, u64)> = Vec::new();
    // Rules without variants have no variant (''), never a name ('' is refused).
    for f in funnel.iter().filter(|f| !f.variant.is_empty()) {
        match out.last_mut() {
            Some(last) if last.0 == f.rule && last.1 == f.variant => {
                last.2 += f.decided;
                last.3 += f.re_engaged;
            }
            _ => out.push((f.rule.clone(), f.variant.clone(), f.decided, f.re_engaged)),
        }
    }
    out
}

/// A tenant's nudges of one (rule, variant, channel), and what became of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelCounts {
    /// The rule.
    pub rule: String,
    /// The A/B variant (`holdout` for the baseline); `None` without variants.
    pub variant: Option<String>,
    /// The channel it went (or would have gone) out on; `None` when none was reached.
    pub channel: Option<String>,
    /// Nudges decided.
    pub nudges: u64,
    /// Sent.
    pub sent: u64,
    /// Skipped or capped (no channel could deliver, consent, caps).
    pub not_sent: u64,
    /// With a first `nudge.opened`.
    pub opened: u64,
    /// With a first `nudge.clicked`.
    pub clicked: u64,
    /// With a first `nudge.replied`.
    pub replied: u64,
}

/// Per (rule, variant, channel), the tenant's nudges decided since `since`
/// (epoch ms) and their outcomes. One grouped scan of the tenant's recent
/// nudges (the `(tenant_id, account_id, created_at)` index's tenant prefix).
pub async fn channel_counts(store: &Store, tenant_id: &str, since: i64) -> Result<Vec<ChannelCounts>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT rule, variant, channel, COUNT(*) AS n, \
         SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) AS sent, \
         SUM(CASE WHEN status IN ('skipped', 'capped') THEN 1 ELSE 0 END) AS not_sent, \
         SUM(CASE WHEN opened_at IS NOT NULL THEN 1 ELSE 0 END) AS opened, \
         SUM(CASE WHEN clicked_at IS NOT NULL THEN 1 ELSE 0 END) AS clicked, \
         SUM(CASE WHEN replied_at IS NOT NULL THEN 1 ELSE 0 END) AS replied \
         FROM nudges WHERE tenant_id = $1 AND created_at >= $2 \
         GROUP BY rule, variant, channel ORDER BY rule, variant, channel",
    )
    .bind(tenant_id)
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ChannelCounts {
                rule: r.try_get("rule")?,
                variant: r.try_get("variant")?,
                channel: r.try_get("channel")?,
                nudges: count(r, "n")?,
                sent: count(r, "sent")?,
                not_sent: count(r, "not_sent")?,
                opened: count(r, "opened")?,
                clicked: count(r, "clicked")?,
                replied: count(r, "replied")?,
            })
        })
        .collect()
}

/// Records an outcome event (`column`: `opened_at`, `clicked_at` or
/// `replied_at`, from [`super::config::OUTCOMES`]) on the account's nudge;
/// the first time is kept. False when the tenant's account has no such nudge.
pub async fn record_outcome(
    store: &Store,
    tenant_id: &str,
    account_id: &str,
    nudge_id: &str,
    column: &str,
    at: i64,
) -> Result<bool, sqlx::Error> {
    // `column` is one of three constants, never input.
    let Some((_, column)) = super::config::OUTCOMES.iter().find(|(_, c)| *c == column) else {
        return Ok(false);
    };
    let sql = format!(
        "UPDATE nudges SET {column} = COALESCE({column}, $4) WHERE tenant_id = $1 AND account_id = $2 AND id = $3"
    );
    let n = sqlx::query(&sql)
        .bind(tenant_id)
        .bind(account_id)
        .bind(nudge_id)
        .bind(at)
        .execute(store.pool())
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// One line of the funnel: a rule, variant and channel.
// Served as is by `GET /v1/nudges/stats`, under the schema name it has
// always had in the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = FunnelView)]
pub struct FunnelRow {
    /// Rule.
    pub rule: String,
    /// Variant (`holdout` for the baseline); empty without variants.
    pub variant: String,
    /// The channel it went out on; empty when nothing went out (holdout,
    /// capped, skipped, not yet sent).
    pub channel: String,
    /// Nudges decided (dry runs left out).
    pub decided: u64,
    /// Accepted by the channel: the SMTP server took the email, the feed
    /// item or the task was written, the webhook job was created.
    pub sent: u64,
    /// The sender died mid-send: may have gone out (never re-sent).
    pub unknown: u64,
    /// With a `nudge.opened` (the email pixel, or the product's event).
    pub opened: u64,
    /// With a `nudge.clicked`.
    pub clicked: u64,
    /// With a `nudge.replied`.
    pub replied: u64,
    /// The person had an event on the account within the window after the
    /// nudge was decided.
    pub re_engaged: u64,
    /// The account churned (`account.churned` / `subscription.cancelled`)
    /// within 30 days after the nudge was decided.
    pub churned: u64,
}

/// The funnel per (rule, variant, channel) of the tenant's nudges decided
/// at least `window_ms` before `now` (every one had the full re-engagement
/// window).
pub async fn funnel(store: &Store, tenant_id: &str, window_ms: i64, now: i64) -> Result<Vec<FunnelRow>, sqlx::Error> {
    let churn = crate::churn::features::CHURN_TYPES;
    let rows = sqlx::query(
        "SELECT n.rule AS rule, COALESCE(n.variant, '') AS variant, COALESCE(n.channel, '') AS channel, \
         COUNT(*) AS decided, \
         SUM(CASE WHEN n.status = 'sent' THEN 1 ELSE 0 END) AS sent, \
         SUM(CASE WHEN n.status = 'unknown' THEN 1 ELSE 0 END) AS unknown, \
         SUM(CASE WHEN n.opened_at IS NOT NULL THEN 1 ELSE 0 END) AS opened, \
         SUM(CASE WHEN n.clicked_at IS NOT NULL THEN 1 ELSE 0 END) AS clicked, \
         SUM(CASE WHEN n.replied_at IS NOT NULL THEN 1 ELSE 0 END) AS replied, \
         SUM(CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = n.tenant_id \
         AND e.account_id = n.account_id AND e.user_id = n.person_id \
         AND e.occurred_at > n.created_at AND e.occurred_at <= n.created_at + $2) THEN 1 ELSE 0 END) AS re_engaged, \
         SUM(CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = n.tenant_id \
         AND e.account_id = n.account_id AND e.type IN ($4, $5) \
         AND e.occurred_at > n.created_at AND e.occurred_at <= n.created_at + 2592000000) THEN 1 ELSE 0 END) AS churned \
         FROM nudges n WHERE n.tenant_id = $1 AND n.dry_run = 0 AND n.created_at <= $3 \
         GROUP BY n.rule, COALESCE(n.variant, ''), COALESCE(n.channel, '') ORDER BY 1, 2, 3",
    )
    .bind(tenant_id)
    .bind(window_ms)
    .bind(now - window_ms)
    .bind(churn[0])
    .bind(churn[1])
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FunnelRow {
                rule: r.try_get("rule")?,
                variant: r.try_get("variant")?,
                channel: r.try_get("channel")?,
                decided: count(r, "decided")?,
                sent: count(r, "sent")?,
                unknown: count(r, "unknown")?,
                opened: count(r, "opened")?,
                clicked: count(r, "clicked")?,
                replied: count(r, "replied")?,
                re_engaged: count(r, "re_engaged")?,
                churned: count(r, "churned")?,
            })
        })
        .collect()
}

/// The tenant's nudge `nudge_id` on `account_id`, sent by email, for the
/// tracking routes (a token for a nudge since erased or never sent finds
/// nothing).
pub async fn tracked(store: &Store, tenant_id: &str, account_id: &str, nudge_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM nudges WHERE tenant_id = $1 AND account_id = $2 AND id = $3 \
         AND channel = 'email' AND status IN ('sending', 'sent', 'unknown')",
    )
    .bind(tenant_id)
    .bind(account_id)
    .bind(nudge_id)
    .fetch_one(store.pool())
    .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rule: &str, variant: &str, channel: &str, decided: u64, re_engaged: u64) -> FunnelRow {
        FunnelRow {
            rule: rule.into(),
            variant: variant.into(),
            channel: channel.into(),
            decided,
            sent: 0,
            unknown: 0,
            opened: 0,
            clicked: 0,
            replied: 0,
            re_engaged,
            churned: 0,
        }
    }

    /// The experiment is the funnel summed over channels, rules without
    /// variants left out, in the funnel's order.
    #[test]
    fn experiment_counts_sum_the_funnel_over_channels() {
        let funnel = [
            line("a", "", "email", 5, 1),
            line("b", "holdout", "", 4, 1),
            line("b", "v1", "", 1, 0),
            line("b", "v1", "email", 6, 3),
            line("b", "v1", "in_app", 2, 2),
            line("c", "v2", "email", 3, 0),
        ];
        assert_eq!(
            experiment_counts(&funnel),
            [
                ("b".to_owned(), "holdout".to_owned(), 4, 1),
                ("b".to_owned(), "v1".to_owned(), 9, 5),
                ("c".to_owned(), "v2".to_owned(), 3, 0),
            ]
        );
    }
}

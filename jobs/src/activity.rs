//! `activity`: folds every event into per-account engagement aggregates
//! (totals in `account_activity`, per-UTC-day counters in
//! `account_activity_daily`) that churn scoring and reports read.
//!
//! Idempotent by construction: the event id is recorded in
//! `activity_applied` in the same transaction as the counters, so a
//! re-delivered event changes nothing.

use async_trait::async_trait;
use kairos_core::Event;

use crate::{Job, JobContext, JobError, JobOutput};

/// The job kind.
pub const KIND: &str = "activity";

/// The activity job.
#[derive(Debug, Clone, Copy)]
pub struct Activity;

/// Which counter an event type feeds. Types not listed still count as
/// activity (events, last seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// A login.
    pub logins: i64,
    /// A comment (on anything, tickets included).
    pub comments: i64,
    /// A support ticket opened.
    pub tickets: i64,
    /// A successful payment.
    pub payments: i64,
    /// A failed payment.
    pub failed_payments: i64,
}

/// Maps an event type to the counters it increments.
pub fn counters_for(event_type: &str) -> Counters {
    let mut c = Counters::default();
    match event_type {
        "user.logged_in" | "user.login" | "session.started" => c.logins = 1,
        "comment.created" | "ticket.comment" => c.comments = 1,
        "ticket.created" => c.tickets = 1,
        "payment.succeeded" | "payment.completed" | "invoice.paid" => c.payments = 1,
        "payment.failed" | "invoice.payment_failed" => c.failed_payments = 1,
        _ => {}
    }
    c
}

/// Why an event's payment cannot be added to its account's total: the sum
/// would not fit the `BIGINT` column. Ingest bounds each amount
/// ([`kairos_core::event::MAX_AMOUNT_CENTS`]), so this takes more than a
/// thousand maximal payments on one account: bad data, not a type too narrow,
/// and failing permanently (naming the values) beats a silent float or
/// retries that end the same way.
fn total_overflow(account: &str, total: Option<i64>, amount: i64) -> JobError {
    let total = total.map_or_else(|| "the running total".to_owned(), |t| t.to_string());
    JobError::Permanent(format!(
        "activity: account_activity.amount_paid_cents for account {account} would overflow: \
         {total} + payment data.amount_cents {amount} does not fit a 64-bit integer"
    ))
}

/// One event's contribution, ready to be summed with others.
struct Contribution<'a> {
    tenant_id: &'a str,
    event_id: &'a str,
    account_id: &'a str,
    day: String,
    at: i64,
    c: Counters,
}

/// An account's (or an account-day's) sum over a batch of fresh events.
#[derive(Default)]
struct Sum {
    events: i64,
    c: Counters,
    first_seen: i64,
    last_seen: i64,
    last_login_at: Option<i64>,
    last_payment_at: Option<i64>,
}

impl Sum {
    fn add(&mut self, e: &Contribution<'_>) {
        if self.events == 0 {
            self.first_seen = e.at;
            self.last_seen = e.at;
        }
        self.events += 1;
        self.first_seen = self.first_seen.min(e.at);
        self.last_seen = self.last_seen.max(e.at);
        if e.c.logins > 0 {
            self.last_login_at = Some(self.last_login_at.map_or(e.at, |t| t.max(e.at)));
        }
        if e.c.payments > 0 {
            self.last_payment_at = Some(self.last_payment_at.map_or(e.at, |t| t.max(e.at)));
        }
        self.c.logins += e.c.logins;
        self.c.comments += e.c.comments;
        self.c.tickets += e.c.tickets;
        self.c.payments += e.c.payments;
        self.c.failed_payments += e.c.failed_payments;
    }
}

/// Rows per multi-row statement of a batch (well under both engines'
/// bound-parameter limits at 14 columns).
const BATCH_ROWS: usize = 200;

/// `($1, ..., $cols), (...)` for `rows` rows.
fn value_rows(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies a batch of events without payment amounts in one transaction:
/// the events not applied before are found with one multi-row insert into
/// `activity_applied`, summed per account and per account-day, and added
/// with one multi-row upsert each. Rows are written in key order (the
/// sums are `BTreeMap`s), so two batches touching the same accounts lock
/// them in the same order on Postgres and cannot deadlock.
async fn apply_batch(pool: &sqlx::AnyPool, batch: &[Contribution<'_>]) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    use std::collections::{BTreeMap, BTreeSet};
    let mut keys: Vec<(&str, &str)> = batch.iter().map(|e| (e.tenant_id, e.event_id)).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut tx = pool.begin().await?;
    let mut fresh: BTreeSet<(String, String)> = BTreeSet::new();
    for chunk in keys.chunks(BATCH_ROWS) {
        let sql = format!(
            "INSERT INTO activity_applied (tenant_id, event_id) VALUES {} \
             ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING tenant_id, event_id",
            value_rows(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (tenant, event) in chunk {
            q = q.bind(*tenant).bind(*event);
        }
        for row in q.fetch_all(&mut *tx).await? {
            fresh.insert((row.try_get("tenant_id")?, row.try_get("event_id")?));
        }
    }
    let mut accounts: BTreeMap<(&str, &str), Sum> = BTreeMap::new();
    let mut days: BTreeMap<(&str, &str, &str), Sum> = BTreeMap::new();
    for e in batch {
        // Each fresh event once, even if delivered twice in this batch.
        if !fresh.remove(&(e.tenant_id.to_owned(), e.event_id.to_owned())) {
            continue;
        }
        accounts.entry((e.tenant_id, e.account_id)).or_default().add(e);
        days.entry((e.tenant_id, e.account_id, e.day.as_str()))
            .or_default()
            .add(e);
    }
    let now = kairos_core::time::now_ms();
    let accounts: Vec<_> = accounts.into_iter().collect();
    for chunk in accounts.chunks(BATCH_ROWS) {
        let sql = format!(
            "INSERT INTO account_activity (tenant_id, account_id, first_seen, last_seen, last_login_at, last_payment_at, \
                 events, logins, comments, tickets, payments, failed_payments, amount_paid_cents, updated_at) \
             VALUES {} ON CONFLICT (tenant_id, account_id) DO UPDATE SET {UPSERT_TOTALS}",
            value_rows(chunk.len(), 14)
        );
        let mut q = sqlx::query(&sql);
        for ((tenant, account), s) in chunk {
            q = q
                .bind(*tenant)
                .bind(*account)
                .bind(s.first_seen)
                .bind(s.last_seen)
                .bind(s.last_login_at)
                .bind(s.last_payment_at)
                .bind(s.events)
                .bind(s.c.logins)
                .bind(s.c.comments)
                .bind(s.c.tickets)
                .bind(s.c.payments)
                .bind(s.c.failed_payments)
                .bind(0_i64)
                .bind(now);
        }
        q.execute(&mut *tx).await?;
    }
    let days: Vec<_> = days.into_iter().collect();
    for chunk in days.chunks(BATCH_ROWS) {
        let sql = format!(
            "INSERT INTO account_activity_daily (tenant_id, account_id, day, events, logins, comments, tickets, payments, failed_payments) \
             VALUES {} ON CONFLICT (tenant_id, account_id, day) DO UPDATE SET {UPSERT_DAILY}",
            value_rows(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for ((tenant, account, day), s) in chunk {
            q = q
                .bind(*tenant)
                .bind(*account)
                .bind(*day)
                .bind(s.events)
                .bind(s.c.logins)
                .bind(s.c.comments)
                .bind(s.c.tickets)
                .bind(s.c.payments)
                .bind(s.c.failed_payments);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// How an `account_activity` row takes in new events (one, or a batch's
/// sum): the one definition both the single and the batch path use.
const UPSERT_TOTALS: &str = "\
   first_seen = CASE WHEN excluded.first_seen < account_activity.first_seen THEN excluded.first_seen ELSE account_activity.first_seen END, \
   last_seen = CASE WHEN excluded.last_seen > account_activity.last_seen THEN excluded.last_seen ELSE account_activity.last_seen END, \
   last_login_at = CASE WHEN account_activity.last_login_at IS NULL OR excluded.last_login_at > account_activity.last_login_at \
       THEN COALESCE(excluded.last_login_at, account_activity.last_login_at) ELSE account_activity.last_login_at END, \
   last_payment_at = CASE WHEN account_activity.last_payment_at IS NULL OR excluded.last_payment_at > account_activity.last_payment_at \
       THEN COALESCE(excluded.last_payment_at, account_activity.last_payment_at) ELSE account_activity.last_payment_at END, \
   events = account_activity.events + excluded.events, \
   logins = account_activity.logins + excluded.logins, \
   comments = account_activity.comments + excluded.comments, \
   tickets = account_activity.tickets + excluded.tickets, \
   payments = account_activity.payments + excluded.payments, \
   failed_payments = account_activity.failed_payments + excluded.failed_payments, \
   amount_paid_cents = account_activity.amount_paid_cents + excluded.amount_paid_cents, \
   updated_at = excluded.updated_at";

/// How an `account_activity_daily` row takes in new events.
const UPSERT_DAILY: &str = "\
   events = account_activity_daily.events + excluded.events, \
   logins = account_activity_daily.logins + excluded.logins, \
   comments = account_activity_daily.comments + excluded.comments, \
   tickets = account_activity_daily.tickets + excluded.tickets, \
   payments = account_activity_daily.payments + excluded.payments, \
   failed_payments = account_activity_daily.failed_payments + excluded.failed_payments";

/// The UTC day of an event time, as `account_activity_daily` keys it.
fn day_of(at: i64) -> Result<String, JobError> {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .ok_or_else(|| JobError::Permanent(format!("activity: occurred_at {at} out of range")))
}

fn is_profile_event(event: &Event) -> bool {
    matches!(
        event.event_type.as_str(),
        kairos_core::profile::ACCOUNT_EVENT | kairos_core::profile::PERSON_EVENT
    )
}

fn not_activity() -> JobOutput {
    JobOutput {
        result_ref: Some("none (profile events are not activity)".into()),
    }
}

#[async_trait]
impl Job for Activity {
    const KIND: &'static str = KIND;
    type Payload = Event;
    const BATCHED: bool = true;

    /// A fetched batch's events in one transaction (see [`apply_batch`]);
    /// events with a payment amount, whose sum is checked against the
    /// account's total, run one by one.
    async fn run_batch(&self, jobs: Vec<(&JobContext, Event)>) -> Vec<Result<JobOutput, JobError>> {
        let mut out: Vec<Option<Result<JobOutput, JobError>>> = (0..jobs.len()).map(|_| None).collect();
        let mut batch = Vec::with_capacity(jobs.len());
        let mut places = Vec::with_capacity(jobs.len());
        let mut alone = Vec::new();
        for (i, (ctx, event)) in jobs.iter().enumerate() {
            if is_profile_event(event) {
                out[i] = Some(Ok(not_activity()));
                continue;
            }
            let c = counters_for(&event.event_type);
            if c.payments > 0 && kairos_core::event::amount_cents(&event.data) != 0 {
                alone.push(i);
                continue;
            }
            match day_of(event.occurred_at_ms) {
                Ok(day) => {
                    batch.push(Contribution {
                        tenant_id: &ctx.tenant_id,
                        event_id: &event.id,
                        account_id: &event.account_id,
                        day,
                        at: event.occurred_at_ms,
                        c,
                    });
                    places.push(i);
                }
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        if let Some(&first) = places.first() {
            let pool = jobs[first].0.store.pool();
            match apply_batch(pool, &batch).await {
                Ok(()) => {
                    for &i in &places {
                        out[i] = Some(Ok(JobOutput {
                            result_ref: Some(format!("account_activity/{}", jobs[i].1.account_id)),
                        }));
                    }
                }
                Err(e) => {
                    let msg = format!("store: {e}");
                    for &i in &places {
                        out[i] = Some(Err(JobError::Retryable(msg.clone())));
                    }
                }
            }
        }
        drop(batch);
        let mut jobs: Vec<Option<(&JobContext, Event)>> = jobs.into_iter().map(Some).collect();
        for i in alone {
            if let Some((ctx, event)) = jobs[i].take() {
                out[i] = Some(self.run(ctx, event).await);
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(JobError::Retryable("activity: no result".into()))))
            .collect()
    }

    async fn run(&self, ctx: &JobContext, event: Event) -> Result<JobOutput, JobError> {
        // A backend syncing profiles is not the customer being active.
        if is_profile_event(&event) {
            return Ok(not_activity());
        }
        let c = counters_for(&event.event_type);
        let amount = if c.payments > 0 {
            kairos_core::event::amount_cents(&event.data)
        } else {
            0
        };
        let at = event.occurred_at_ms;
        let day = day_of(at)?;
        let result_ref = Some(format!("account_activity/{}", event.account_id));

        let mut tx = ctx.store.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO activity_applied (tenant_id, event_id) VALUES ($1, $2) ON CONFLICT (tenant_id, event_id) DO NOTHING",
        )
        .bind(&ctx.tenant_id)
        .bind(&event.id)
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            return Ok(JobOutput { result_ref });
        }
        if amount != 0 {
            // Checked in Rust, in the transaction that holds the write lock
            // (SQLite would otherwise turn an overflowing sum into a float).
            let total: Option<i64> = sqlx::query_scalar(
                "SELECT amount_paid_cents FROM account_activity WHERE tenant_id = $1 AND account_id = $2",
            )
            .bind(&ctx.tenant_id)
            .bind(&event.account_id)
            .fetch_optional(&mut *tx)
            .await?;
            let total = total.unwrap_or(0);
            if total.checked_add(amount).is_none() {
                return Err(total_overflow(&event.account_id, Some(total), amount));
            }
        }
        let sql = format!(
            "INSERT INTO account_activity (tenant_id, account_id, first_seen, last_seen, last_login_at, last_payment_at, \
                 events, logins, comments, tickets, payments, failed_payments, amount_paid_cents, updated_at) \
             VALUES ($1, $2, $3, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id, account_id) DO UPDATE SET {UPSERT_TOTALS}"
        );
        sqlx::query(&sql)
            .bind(&ctx.tenant_id)
            .bind(&event.account_id)
            .bind(at)
            .bind((c.logins > 0).then_some(at))
            .bind((c.payments > 0).then_some(at))
            .bind(c.logins)
            .bind(c.comments)
            .bind(c.tickets)
            .bind(c.payments)
            .bind(c.failed_payments)
            .bind(amount)
            .bind(kairos_core::time::now_ms())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                // A concurrent payment on Postgres got in between the check and
                // the update: the store refuses the sum (numeric_value_out_of_range).
                sqlx::Error::Database(d) if d.code().as_deref() == Some("22003") => {
                    total_overflow(&event.account_id, None, amount)
                }
                _ => e.into(),
            })?;
        let sql = format!(
            "INSERT INTO account_activity_daily (tenant_id, account_id, day, events, logins, comments, tickets, payments, failed_payments) \
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, account_id, day) DO UPDATE SET {UPSERT_DAILY}"
        );
        sqlx::query(&sql)
            .bind(&ctx.tenant_id)
            .bind(&event.account_id)
            .bind(&day)
            .bind(c.logins)
            .bind(c.comments)
            .bind(c.tickets)
            .bind(c.payments)
            .bind(c.failed_payments)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(JobOutput { result_ref })
    }
}

/// One account's aggregates, as read back by reports, churn and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountActivity {
    /// Account id.
    pub account_id: String,
    /// Events applied.
    pub events: i64,
    /// Logins.
    pub logins: i64,
    /// Comments.
    pub comments: i64,
    /// Tickets opened.
    pub tickets: i64,
    /// Successful payments.
    pub payments: i64,
    /// Failed payments.
    pub failed_payments: i64,
    /// Sum of successful payments, cents.
    pub amount_paid_cents: i64,
    /// Latest event time, epoch ms.
    pub last_seen: i64,
    /// Latest login, epoch ms.
    pub last_login_at: Option<i64>,
}

/// Reads every account's aggregates for a tenant.
pub async fn read_all(store: &kairos_core::Store, tenant_id: &str) -> Result<Vec<AccountActivity>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT account_id, events, logins, comments, tickets, payments, failed_payments, amount_paid_cents, last_seen, last_login_at \
         FROM account_activity WHERE tenant_id = $1 ORDER BY account_id",
    )
    .bind(tenant_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AccountActivity {
                account_id: r.try_get("account_id")?,
                events: r.try_get("events")?,
                logins: r.try_get("logins")?,
                comments: r.try_get("comments")?,
                tickets: r.try_get("tickets")?,
                payments: r.try_get("payments")?,
                failed_payments: r.try_get("failed_payments")?,
                amount_paid_cents: r.try_get("amount_paid_cents")?,
                last_seen: r.try_get("last_seen")?,
                last_login_at: r.try_get("last_login_at")?,
            })
        })
        .collect()
}

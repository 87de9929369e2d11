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

#[async_trait]
impl Job for Activity {
    const KIND: &'static str = KIND;
    type Payload = Event;

    async fn run(&self, ctx: &JobContext, event: Event) -> Result<JobOutput, JobError> {
        // A backend syncing profiles is not the customer being active.
        if matches!(
            event.event_type.as_str(),
            kairos_core::profile::ACCOUNT_EVENT | kairos_core::profile::PERSON_EVENT
        ) {
            return Ok(JobOutput {
                result_ref: Some("none (profile events are not activity)".into()),
            });
        }
        let c = counters_for(&event.event_type);
        let amount = if c.payments > 0 {
            kairos_core::event::amount_cents(&event.data)
        } else {
            0
        };
        let at = event.occurred_at_ms;
        let day = chrono::DateTime::from_timestamp_millis(at)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .ok_or_else(|| JobError::Permanent(format!("activity: occurred_at {at} out of range")))?;
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
        sqlx::query(
            "INSERT INTO account_activity (tenant_id, account_id, first_seen, last_seen, last_login_at, last_payment_at, \
                 events, logins, comments, tickets, payments, failed_payments, amount_paid_cents, updated_at) \
             VALUES ($1, $2, $3, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant_id, account_id) DO UPDATE SET \
               first_seen = CASE WHEN excluded.first_seen < account_activity.first_seen THEN excluded.first_seen ELSE account_activity.first_seen END, \
               last_seen = CASE WHEN excluded.last_seen > account_activity.last_seen THEN excluded.last_seen ELSE account_activity.last_seen END, \
               last_login_at = CASE WHEN account_activity.last_login_at IS NULL OR excluded.last_login_at > account_activity.last_login_at \
                   THEN COALESCE(excluded.last_login_at, account_activity.last_login_at) ELSE account_activity.last_login_at END, \
               last_payment_at = CASE WHEN account_activity.last_payment_at IS NULL OR excluded.last_payment_at > account_activity.last_payment_at \
                   THEN COALESCE(excluded.last_payment_at, account_activity.last_payment_at) ELSE account_activity.last_payment_at END, \
               events = account_activity.events + 1, \
               logins = account_activity.logins + excluded.logins, \
               comments = account_activity.comments + excluded.comments, \
               tickets = account_activity.tickets + excluded.tickets, \
               payments = account_activity.payments + excluded.payments, \
               failed_payments = account_activity.failed_payments + excluded.failed_payments, \
               amount_paid_cents = account_activity.amount_paid_cents + excluded.amount_paid_cents, \
               updated_at = excluded.updated_at",
        )
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
        sqlx::query(
            "INSERT INTO account_activity_daily (tenant_id, account_id, day, events, logins, comments, tickets, payments, failed_payments) \
             VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, account_id, day) DO UPDATE SET \
               events = account_activity_daily.events + 1, \
               logins = account_activity_daily.logins + excluded.logins, \
               comments = account_activity_daily.comments + excluded.comments, \
               tickets = account_activity_daily.tickets + excluded.tickets, \
               payments = account_activity_daily.payments + excluded.payments, \
               failed_payments = account_activity_daily.failed_payments + excluded.failed_payments",
        )
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

//! Churn features of an account **as of a cutoff**, computed from the
//! `events` table. Only events with `occurred_at < cutoff` count, so a
//! model trained with features at a cutoff and labels after it never sees
//! the future (no leakage), and scoring "now" uses the same code.
//!
//! Why events and not `account_activity`: the aggregates are running totals
//! up to now and cannot be cut at an arbitrary past time; the events can.
//! One grouped query per chunk of accounts gives the counts and recencies;
//! a second one reads the few rows whose `data` matters (payment amounts,
//! renewal dates), parsed in Rust because JSON functions differ between
//! SQLite and Postgres.
//!
//! | feature | definition (window before the cutoff) |
//! |---|---|
//! | `logins_30d` | events [`LOGIN_TYPES`] in 30 d |
//! | `days_since_last_login` | days since the latest login ever; missing if none |
//! | `tickets_30d` | `ticket.created` in 30 d |
//! | `comments_30d` | [`COMMENT_TYPES`] in 30 d |
//! | `avg_sentiment` | missing: needs a `sentiment_results` table, which does not exist yet |
//! | `negative_interactions` | missing, same reason |
//! | `support_escalations` | `ticket.escalated` in 30 d |
//! | `project_delays` | `project.delayed` in 90 d (a project stays "behind" for a while) |
//! | `missed_deadlines` | `deadline.missed` in 30 d |
//! | `budget_overruns` | `budget.overrun` in 90 d |
//! | `payment_delays` | [`PAYMENT_FAILED_TYPES`] in 90 d (the model crate's doc says 12 months; 90 d keeps it recent) |
//! | `days_since_last_payment` | days since the latest [`PAYMENT_TYPES`] event; missing if none |
//! | `total_spent` | Σ `data.amount_cents / 100` or `data.amount` of [`PAYMENT_TYPES`], ever |
//! | `account_age_days` | days since the account's first event |
//! | `days_to_renewal` | `data.renews_at` (RFC 3339) of the latest [`SUBSCRIPTION_TYPES`] event, minus the cutoff; missing if none |
//!
//! Counts of an account with events are known (0 when none happened); a
//! recency with no event at all is missing and imputed by the model.

use std::collections::HashMap;

use kairos_core::Store;
use kairos_models::churn::AccountFeatures;
use sqlx::Row;

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The short window (logins, tickets, comments, escalations, deadlines).
pub const SHORT_WINDOW_MS: i64 = 30 * DAY_MS;
/// The long window (project delays, budget overruns, payment delays).
pub const LONG_WINDOW_MS: i64 = 90 * DAY_MS;
/// Accounts per query (IN-list size).
pub const CHUNK: usize = 500;

/// Event types that are a login.
pub const LOGIN_TYPES: &[&str] = &["user.logged_in", "user.login", "session.started"];
/// Event types that are a comment.
pub const COMMENT_TYPES: &[&str] = &["comment.created", "ticket.comment"];
/// Event types that are a received payment.
pub const PAYMENT_TYPES: &[&str] = &["payment.succeeded", "payment.completed", "invoice.paid"];
/// Event types that are a failed or late payment.
pub const PAYMENT_FAILED_TYPES: &[&str] = &["payment.failed"];
/// Event types that carry a renewal date in `data.renews_at`.
pub const SUBSCRIPTION_TYPES: &[&str] = &["subscription.renewed", "subscription.created"];
/// Event types that mean the account churned (training labels).
pub const CHURN_TYPES: &[&str] = &["account.churned", "subscription.cancelled"];

/// A statement under construction whose every value is a bound `$N`.
#[derive(Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    binds: Vec<Arg>,
}

enum Arg {
    Int(i64),
    Text(String),
}

impl Sql {
    /// Binds an integer; returns its placeholder.
    pub(crate) fn int(&mut self, v: i64) -> String {
        self.binds.push(Arg::Int(v));
        format!("${}", self.binds.len())
    }

    /// Binds a text value; returns its placeholder.
    pub(crate) fn text(&mut self, v: &str) -> String {
        self.binds.push(Arg::Text(v.to_owned()));
        format!("${}", self.binds.len())
    }

    /// Binds a list; returns `$a, $b, ...`.
    pub(crate) fn list<S: AsRef<str>>(&mut self, vs: &[S]) -> String {
        vs.iter().map(|v| self.text(v.as_ref())).collect::<Vec<_>>().join(", ")
    }

    /// Runs it and returns the rows.
    pub(crate) async fn fetch_all(&self, store: &Store) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
        let mut q = sqlx::query(&self.text);
        for b in &self.binds {
            q = match b {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.clone()),
            };
        }
        q.fetch_all(store.pool()).await
    }
}

fn days(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms) as f64 / DAY_MS as f64
}

/// Features of `account_ids` (of `tenant_id`) as of `cutoff_ms`, in the
/// same order. An account without any event before the cutoff gets all
/// fields missing.
pub async fn account_features(
    store: &Store,
    tenant_id: &str,
    account_ids: &[String],
    cutoff_ms: i64,
) -> Result<Vec<AccountFeatures>, sqlx::Error> {
    let mut by_account: HashMap<String, AccountFeatures> = HashMap::with_capacity(account_ids.len());
    for chunk in account_ids.chunks(CHUNK) {
        counts(store, tenant_id, chunk, cutoff_ms, &mut by_account).await?;
        data_features(store, tenant_id, chunk, cutoff_ms, &mut by_account).await?;
    }
    Ok(account_ids
        .iter()
        .map(|a| by_account.remove(a).unwrap_or_default())
        .collect())
}

async fn counts(
    store: &Store,
    tenant_id: &str,
    accounts: &[String],
    cutoff_ms: i64,
    out: &mut HashMap<String, AccountFeatures>,
) -> Result<(), sqlx::Error> {
    let mut q = Sql::default();
    let tenant = q.text(tenant_id);
    let cutoff = q.int(cutoff_ms);
    let short = q.int(cutoff_ms - SHORT_WINDOW_MS);
    let long = q.int(cutoff_ms - LONG_WINDOW_MS);
    let count = |q: &mut Sql, types: &[&str], since: &str, alias: &str| {
        format!(
            "SUM(CASE WHEN type IN ({}) AND occurred_at >= {since} THEN 1 ELSE 0 END) AS {alias}",
            q.list(types)
        )
    };
    let cols = [
        count(&mut q, LOGIN_TYPES, &short, "logins"),
        count(&mut q, &["ticket.created"], &short, "tickets"),
        count(&mut q, COMMENT_TYPES, &short, "comments"),
        count(&mut q, &["ticket.escalated"], &short, "escalations"),
        count(&mut q, &["project.delayed"], &long, "project_delays"),
        count(&mut q, &["deadline.missed"], &short, "missed_deadlines"),
        count(&mut q, &["budget.overrun"], &long, "budget_overruns"),
        count(&mut q, PAYMENT_FAILED_TYPES, &long, "payment_delays"),
    ];
    let last_login = format!(
        "MAX(CASE WHEN type IN ({}) THEN occurred_at ELSE NULL END) AS last_login",
        q.list(LOGIN_TYPES)
    );
    let last_payment = format!(
        "MAX(CASE WHEN type IN ({}) THEN occurred_at ELSE NULL END) AS last_payment",
        q.list(PAYMENT_TYPES)
    );
    let ids = q.list(accounts);
    q.text = format!(
        "SELECT account_id, MIN(occurred_at) AS first_at, {}, {last_login}, {last_payment} \
         FROM events WHERE tenant_id = {tenant} AND occurred_at < {cutoff} AND account_id IN ({ids}) \
         GROUP BY account_id",
        cols.join(", ")
    );
    for r in q.fetch_all(store).await? {
        let n = |c: &str| -> Result<Option<f64>, sqlx::Error> { Ok(Some(r.try_get::<i64, _>(c)? as f64)) };
        let first_at: i64 = r.try_get("first_at")?;
        let last_login: Option<i64> = r.try_get("last_login")?;
        let last_payment: Option<i64> = r.try_get("last_payment")?;
        let f = out.entry(r.try_get("account_id")?).or_default();
        f.logins_30d = n("logins")?;
        f.tickets_30d = n("tickets")?;
        f.comments_30d = n("comments")?;
        f.support_escalations = n("escalations")?;
        f.project_delays = n("project_delays")?;
        f.missed_deadlines = n("missed_deadlines")?;
        f.budget_overruns = n("budget_overruns")?;
        f.payment_delays = n("payment_delays")?;
        f.days_since_last_login = last_login.map(|t| days(t, cutoff_ms));
        f.days_since_last_payment = last_payment.map(|t| days(t, cutoff_ms));
        f.account_age_days = Some(days(first_at, cutoff_ms));
        // Known zero until a payment row says otherwise (see data_features).
        f.total_spent = Some(0.0);
    }
    Ok(())
}

/// Payment amount in currency units: `data.amount_cents / 100` or `data.amount`.
fn amount(data: &serde_json::Value) -> f64 {
    if let Some(c) = data.get("amount_cents").and_then(|v| v.as_f64()) {
        return c / 100.0;
    }
    data.get("amount").and_then(|v| v.as_f64()).unwrap_or(0.0)
}

async fn data_features(
    store: &Store,
    tenant_id: &str,
    accounts: &[String],
    cutoff_ms: i64,
    out: &mut HashMap<String, AccountFeatures>,
) -> Result<(), sqlx::Error> {
    let mut q = Sql::default();
    let tenant = q.text(tenant_id);
    let cutoff = q.int(cutoff_ms);
    let types: Vec<&str> = PAYMENT_TYPES.iter().chain(SUBSCRIPTION_TYPES).copied().collect();
    let types = q.list(&types);
    let ids = q.list(accounts);
    q.text = format!(
        "SELECT account_id, type, occurred_at, data FROM events \
         WHERE tenant_id = {tenant} AND occurred_at < {cutoff} AND type IN ({types}) AND account_id IN ({ids}) \
         ORDER BY account_id, occurred_at"
    );
    for r in q.fetch_all(store).await? {
        let account: String = r.try_get("account_id")?;
        let kind: String = r.try_get("type")?;
        let data: String = r.try_get("data")?;
        // Ingest stores valid JSON, so unreadable data is a store fault:
        // an error (retried), never features computed as if it were empty.
        let data: serde_json::Value = serde_json::from_str(&data).map_err(|e| {
            sqlx::Error::Decode(format!("events.data of an event of account {account}: not JSON: {e}").into())
        })?;
        let f = out.entry(account).or_default();
        if PAYMENT_TYPES.contains(&kind.as_str()) {
            f.total_spent = Some(f.total_spent.unwrap_or(0.0) + amount(&data));
        } else {
            // Rows come oldest first: the latest subscription event wins;
            // one without a readable renews_at makes the renewal unknown.
            f.days_to_renewal = data
                .get("renews_at")
                .and_then(|v| v.as_str())
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| days(cutoff_ms, t.timestamp_millis()));
        }
    }
    Ok(())
}

/// Accounts of a tenant that can be labelled at `cutoff_ms` with a horizon:
/// they had an event before the cutoff and had not churned by then. Each
/// comes with its label: a churn event ([`CHURN_TYPES`]) in
/// `(cutoff, cutoff + horizon]`.
pub async fn labelled_accounts(
    store: &Store,
    tenant_id: &str,
    cutoff_ms: i64,
    horizon_ms: i64,
) -> Result<Vec<(String, bool)>, sqlx::Error> {
    let mut q = Sql::default();
    let tenant = q.text(tenant_id);
    let cutoff = q.int(cutoff_ms);
    let end = q.int(cutoff_ms + horizon_ms);
    let churn_a = q.list(CHURN_TYPES);
    let churn_b = q.list(CHURN_TYPES);
    q.text = format!(
        "SELECT account_id, MIN(occurred_at) AS first_at, \
           SUM(CASE WHEN type IN ({churn_a}) AND occurred_at <= {cutoff} THEN 1 ELSE 0 END) AS churned_before, \
           SUM(CASE WHEN type IN ({churn_b}) AND occurred_at > {cutoff} THEN 1 ELSE 0 END) AS churned_after \
         FROM events WHERE tenant_id = {tenant} AND occurred_at <= {end} \
         GROUP BY account_id ORDER BY account_id"
    );
    let mut out = Vec::new();
    for r in q.fetch_all(store).await? {
        let first_at: i64 = r.try_get("first_at")?;
        let before: i64 = r.try_get("churned_before")?;
        let after: i64 = r.try_get("churned_after")?;
        if first_at < cutoff_ms && before == 0 {
            out.push((r.try_get("account_id")?, after > 0));
        }
    }
    Ok(out)
}

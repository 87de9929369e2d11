//! The facts of one report: everything its narrative may say, as a
//! structured value (stored as JSON with the report, given to the LLM as
//! its only input, and what grounding checks the narrative's numbers
//! against). Read from the existing tables — `events`, `account_activity`,
//! `sentiment_scores`, `alerts`, `churn_scores`, `job_runs` — with bound,
//! tenant-scoped SQL that is the same on SQLite and Postgres.

use std::collections::BTreeMap;

use kairos_core::time::to_rfc3339;
use kairos_core::Store;
use serde::Serialize;
use sqlx::Row;

use super::config::MetricDef;
use super::metrics::{self, change_pct, round2, MetricFact};
use super::period::Period;

/// How many periods the trends cover.
pub const TREND_PERIODS: usize = 8;

/// Risk levels, lowest first.
pub const LEVELS: [&str; 4] = ["LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// Account report or tenant portfolio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One account, for its executives.
    Account,
    /// Every account of the tenant, for the tenant's team.
    Tenant,
}

impl Scope {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Tenant => "tenant",
        }
    }
}

/// The report's subject.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Subject {
    /// Tenant id.
    pub tenant_id: String,
    /// Tenant name.
    pub tenant_name: String,
    /// Account id (account reports).
    pub account_id: Option<String>,
    /// Account name shown (its display name, else its id).
    pub account_name: Option<String>,
    /// Plan, renewal date, owner (account reports).
    pub plan: Option<String>,
    /// `YYYY-MM-DD`.
    pub renewal_date: Option<String>,
}

/// The period, for people and machines.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PeriodFacts {
    /// `2026-W48`.
    pub label: String,
    /// First local day.
    pub first_day: String,
    /// Last local day.
    pub last_day: String,
    /// RFC 3339 start (inclusive).
    pub start: String,
    /// RFC 3339 end (exclusive).
    pub end: String,
    /// IANA zone.
    pub time_zone: String,
    /// Labels of the trend periods, oldest first.
    pub trend_labels: Vec<String>,
}

/// Counts by name.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Count {
    /// What was counted.
    pub name: String,
    /// How many.
    pub count: i64,
}

/// Activity: events and active accounts.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Activity {
    /// Events this period.
    pub events: i64,
    /// Events the period before.
    pub previous_events: i64,
    /// Change in percent.
    pub events_change_pct: Option<f64>,
    /// Accounts with at least one event this period.
    pub active_accounts: i64,
    /// The period before.
    pub previous_active_accounts: i64,
    /// The most frequent event types.
    pub top_types: Vec<Count>,
    /// Days since the account's last login at the period's end (account reports).
    pub days_since_last_login: Option<i64>,
}

/// A negative comment or ticket.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct NegativeComment {
    /// The event.
    pub event_id: String,
    /// Its account.
    pub account_id: String,
    /// The first 160 characters of its text.
    pub excerpt: String,
    /// P(negative) or the label's confidence, 2 decimals.
    pub score: f64,
    /// 0–100.
    pub urgency: i64,
    /// RFC 3339.
    pub at: String,
}

/// Sentiment of comments and tickets.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Sentiment {
    /// Scored texts this period.
    pub scored: i64,
    /// Negative.
    pub negative: i64,
    /// Neutral.
    pub neutral: i64,
    /// Positive.
    pub positive: i64,
    /// Mean polarity (−1..1, 2 decimals).
    pub average_polarity: Option<f64>,
    /// The period before.
    pub previous_average_polarity: Option<f64>,
    /// Mean polarity per trend period, oldest first.
    pub trend: Vec<Option<f64>>,
    /// The most negative texts, most urgent first.
    pub most_negative: Vec<NegativeComment>,
}

/// One alert raised in the period.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AlertItem {
    /// Kind.
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// Why.
    pub reason: String,
    /// Account.
    pub account_id: String,
    /// 0–100, when measured.
    pub urgency: Option<i64>,
    /// RFC 3339.
    pub at: String,
}

/// Alerts raised.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Alerts {
    /// This period.
    pub total: i64,
    /// The period before.
    pub previous_total: i64,
    /// By kind.
    pub by_kind: Vec<Count>,
    /// The most urgent/severe ones.
    pub items: Vec<AlertItem>,
}

/// An account whose churn risk level rose.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RiskMove {
    /// Account.
    pub account_id: String,
    /// Level at the previous period's end (LOW when unscored).
    pub from: String,
    /// Level at this period's end.
    pub to: String,
    /// Probability now, 2 decimals.
    pub probability: f64,
}

/// An account at risk, with why and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct AtRisk {
    /// Account.
    pub account_id: String,
    /// Probability, 2 decimals.
    pub probability: f64,
    /// Level.
    pub risk_level: String,
    /// Factors in words (the churn job's language).
    pub factors: Vec<String>,
    /// Recommended actions.
    pub actions: Vec<String>,
}

/// Churn risk.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Churn {
    /// Accounts per level at the period's end (latest score of each).
    pub distribution: Vec<Count>,
    /// Accounts that moved up a level during the period.
    pub moved_up: Vec<RiskMove>,
    /// Highest probability first (MEDIUM and above).
    pub top_at_risk: Vec<AtRisk>,
}

/// The tenant's own job health (portfolio report).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct JobHealth {
    /// Jobs created in the period.
    pub total: i64,
    /// Succeeded.
    pub succeeded: i64,
    /// Dead-lettered.
    pub dead: i64,
    /// Neither yet.
    pub in_progress: i64,
    /// Succeeded / finished, percent, 1 decimal.
    pub success_rate_pct: Option<f64>,
    /// Per kind: name = kind, count = total.
    pub by_kind: Vec<Count>,
}

/// Everything a report says.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Facts {
    /// Account or tenant.
    pub scope: Scope,
    /// Who it is about.
    pub subject: Subject,
    /// When.
    pub period: PeriodFacts,
    /// `es` or `en`.
    pub language: String,
    /// The declared metrics.
    pub metrics: Vec<MetricFact>,
    /// Activity.
    pub activity: Activity,
    /// Sentiment.
    pub sentiment: Sentiment,
    /// Alerts.
    pub alerts: Alerts,
    /// Churn risk.
    pub churn: Churn,
    /// Job health (portfolio report only).
    pub jobs: Option<JobHealth>,
}

/// What [`gather`] needs besides the store.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Account or tenant.
    pub scope: Scope,
    /// Who.
    pub subject: Subject,
    /// The report's period (in the recipient's zone).
    pub period: Period,
    /// `es` or `en`.
    pub language: &'a str,
    /// Declared metrics.
    pub metrics: &'a [MetricDef],
    /// How many negative comments and at-risk accounts to list.
    pub top_comments: usize,
    /// How many at-risk accounts to list.
    pub top_accounts: usize,
    /// `data` fields holding a text (for excerpts).
    pub text_fields: &'a [String],
}

fn excerpt(data: &str, fields: &[String]) -> String {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(data) else {
        return String::new();
    };
    let text = fields
        .iter()
        .find_map(|f| obj.get(f).and_then(|v| v.as_str()))
        .unwrap_or_default();
    let mut out: String = text.chars().take(160).collect();
    if text.chars().count() > 160 {
        out.push('…');
    }
    out
}

fn strings(json: &str, key: &str) -> Vec<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.get(key).and_then(|s| s.as_str()).map(str::to_owned))
        .collect()
}

/// Reads every section for `req`.
pub async fn gather(store: &Store, req: &Request<'_>) -> Result<Facts, sqlx::Error> {
    let tenant = req.subject.tenant_id.as_str();
    let account = req.subject.account_id.as_deref();
    let periods = req.period.trend(TREND_PERIODS);
    let prev = req.period.previous();
    let cur = &req.period;
    let metrics = metrics::compute(store, tenant, account, req.metrics, &periods, req.language).await?;

    // Activity (profile events are bookkeeping, not activity).
    let activity_sql = "SELECT COUNT(*) AS n, COUNT(DISTINCT account_id) AS a FROM events WHERE tenant_id = $1 \
                        AND occurred_at >= $2 AND occurred_at < $3 AND ($4 IS NULL OR account_id = $4) \
                        AND type <> 'account.updated' AND type <> 'person.updated'";
    let mut counts = Vec::new();
    for p in [cur, &prev] {
        let r = sqlx::query(activity_sql)
            .bind(tenant)
            .bind(p.start_ms)
            .bind(p.end_ms)
            .bind(account)
            .fetch_one(store.pool())
            .await?;
        counts.push((r.try_get::<i64, _>("n")?, r.try_get::<i64, _>("a")?));
    }
    let top_types = sqlx::query(
        "SELECT type, COUNT(*) AS n FROM events WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3 \
         AND ($4 IS NULL OR account_id = $4) AND type <> 'account.updated' AND type <> 'person.updated' \
         GROUP BY type ORDER BY n DESC, type LIMIT 5",
    )
    .bind(tenant)
    .bind(cur.start_ms)
    .bind(cur.end_ms)
    .bind(account)
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(|r| {
        Ok(Count {
            name: r.try_get("type")?,
            count: r.try_get("n")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let days_since_last_login = match account {
        Some(a) => sqlx::query("SELECT last_login_at FROM account_activity WHERE tenant_id = $1 AND account_id = $2")
            .bind(tenant)
            .bind(a)
            .fetch_optional(store.pool())
            .await?
            .map(|r| r.try_get::<Option<i64>, _>("last_login_at"))
            .transpose()?
            .flatten()
            .filter(|t| *t < cur.end_ms)
            .map(|t| (cur.end_ms - t) / (24 * 3600 * 1000)),
        None => None,
    };
    let activity = Activity {
        events: counts[0].0,
        previous_events: counts[1].0,
        events_change_pct: change_pct(Some(counts[1].0 as f64), Some(counts[0].0 as f64)),
        active_accounts: counts[0].1,
        previous_active_accounts: counts[1].1,
        top_types,
        days_since_last_login,
    };

    // Sentiment, by when the text was written.
    let first = periods.first().unwrap_or(cur);
    let rows = sqlx::query(
        "SELECT s.label, s.score, s.polarity, s.urgency, s.event_id, s.account_id, e.occurred_at, e.data \
         FROM sentiment_scores s JOIN events e ON e.tenant_id = s.tenant_id AND e.event_id = s.event_id \
         WHERE s.tenant_id = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3 AND ($4 IS NULL OR s.account_id = $4)",
    )
    .bind(tenant)
    .bind(first.start_ms)
    .bind(cur.end_ms)
    .bind(account)
    .fetch_all(store.pool())
    .await?;
    let mut sums = vec![(0.0f64, 0u32); periods.len()];
    let (mut neg, mut neu, mut pos) = (0, 0, 0);
    let mut negatives = Vec::new();
    for r in &rows {
        let at: i64 = r.try_get("occurred_at")?;
        let Some(i) = periods.iter().position(|p| at >= p.start_ms && at < p.end_ms) else {
            continue;
        };
        let polarity: f64 = r.try_get("polarity")?;
        sums[i].0 += polarity;
        sums[i].1 += 1;
        if i + 1 != periods.len() {
            continue;
        }
        let label: String = r.try_get("label")?;
        match label.as_str() {
            "negative" => {
                neg += 1;
                let data: String = r.try_get("data")?;
                negatives.push(NegativeComment {
                    event_id: r.try_get("event_id")?,
                    account_id: r.try_get("account_id")?,
                    excerpt: excerpt(&data, req.text_fields),
                    score: round2(r.try_get("score")?),
                    urgency: r.try_get("urgency")?,
                    at: to_rfc3339(at),
                });
            }
            "positive" => pos += 1,
            _ => neu += 1,
        }
    }
    negatives.sort_by(|a, b| {
        b.urgency
            .cmp(&a.urgency)
            .then(b.score.total_cmp(&a.score))
            .then(a.event_id.cmp(&b.event_id))
    });
    negatives.truncate(req.top_comments);
    let trend: Vec<Option<f64>> = sums
        .iter()
        .map(|(s, n)| (*n > 0).then(|| round2(s / f64::from(*n))))
        .collect();
    let sentiment = Sentiment {
        scored: neg + neu + pos,
        negative: neg,
        neutral: neu,
        positive: pos,
        average_polarity: trend.last().copied().flatten(),
        previous_average_polarity: trend.len().checked_sub(2).and_then(|i| trend[i]),
        trend,
        most_negative: negatives,
    };

    // Alerts raised.
    let rows = sqlx::query(
        "SELECT kind, severity, reason, urgency, account_id, created_at FROM alerts WHERE tenant_id = $1 \
         AND created_at >= $2 AND created_at < $3 AND ($4 IS NULL OR account_id = $4) ORDER BY created_at, id",
    )
    .bind(tenant)
    .bind(prev.start_ms)
    .bind(cur.end_ms)
    .bind(account)
    .fetch_all(store.pool())
    .await?;
    let mut by_kind: BTreeMap<String, i64> = BTreeMap::new();
    let (mut total, mut previous_total) = (0, 0);
    let mut items = Vec::new();
    let rank = |s: &str| match s {
        "critical" => 3,
        "high" => 2,
        "medium" => 1,
        _ => 0,
    };
    for r in &rows {
        let at: i64 = r.try_get("created_at")?;
        if at < cur.start_ms {
            previous_total += 1;
            continue;
        }
        total += 1;
        let kind: String = r.try_get("kind")?;
        *by_kind.entry(kind.clone()).or_default() += 1;
        items.push(AlertItem {
            kind,
            severity: r.try_get("severity")?,
            reason: r.try_get("reason")?,
            account_id: r.try_get("account_id")?,
            urgency: r.try_get("urgency")?,
            at: to_rfc3339(at),
        });
    }
    items.sort_by(|a, b| {
        rank(&b.severity)
            .cmp(&rank(&a.severity))
            .then(b.urgency.unwrap_or(0).cmp(&a.urgency.unwrap_or(0)))
    });
    items.truncate(req.top_comments);
    let mut by_kind: Vec<Count> = by_kind.into_iter().map(|(name, count)| Count { name, count }).collect();
    by_kind.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let alerts = Alerts {
        total,
        previous_total,
        by_kind,
        items,
    };

    // Churn: each account's latest score at the end of this period and of
    // the one before.
    let rows = sqlx::query(
        "SELECT account_id, risk_level, probability, factors, actions, scored_at FROM churn_scores \
         WHERE tenant_id = $1 AND scored_at < $2 AND ($3 IS NULL OR account_id = $3) ORDER BY scored_at, id",
    )
    .bind(tenant)
    .bind(cur.end_ms)
    .bind(account)
    .fetch_all(store.pool())
    .await?;
    let mut before: BTreeMap<String, String> = BTreeMap::new();
    let mut now: BTreeMap<String, AtRisk> = BTreeMap::new();
    for r in &rows {
        let a: String = r.try_get("account_id")?;
        let level: String = r.try_get("risk_level")?;
        let at: i64 = r.try_get("scored_at")?;
        if at < cur.start_ms {
            before.insert(a.clone(), level.clone());
        }
        let factors: String = r.try_get("factors")?;
        let actions: String = r.try_get("actions")?;
        now.insert(
            a.clone(),
            AtRisk {
                account_id: a,
                probability: round2(r.try_get("probability")?),
                risk_level: level,
                factors: strings(&factors, "description"),
                actions: strings(&actions, "action"),
            },
        );
    }
    let level_rank = |l: &str| LEVELS.iter().position(|x| *x == l).unwrap_or(0);
    let distribution = LEVELS
        .iter()
        .map(|l| Count {
            name: (*l).to_owned(),
            count: now.values().filter(|s| s.risk_level == *l).count() as i64,
        })
        .collect();
    let mut moved_up: Vec<RiskMove> = now
        .values()
        .filter_map(|s| {
            let from = before.get(&s.account_id).map_or("LOW", String::as_str);
            (level_rank(&s.risk_level) > level_rank(from)).then(|| RiskMove {
                account_id: s.account_id.clone(),
                from: from.to_owned(),
                to: s.risk_level.clone(),
                probability: s.probability,
            })
        })
        .collect();
    moved_up.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let mut top_at_risk: Vec<AtRisk> = now.into_values().filter(|s| level_rank(&s.risk_level) >= 1).collect();
    top_at_risk.sort_by(|a, b| {
        b.probability
            .total_cmp(&a.probability)
            .then(a.account_id.cmp(&b.account_id))
    });
    top_at_risk.truncate(req.top_accounts);
    let churn = Churn {
        distribution,
        moved_up,
        top_at_risk,
    };

    let jobs = match req.scope {
        Scope::Account => None,
        Scope::Tenant => Some(job_health(store, tenant, cur).await?),
    };
    let (first_day, last_day) = cur.days();
    Ok(Facts {
        scope: req.scope,
        subject: req.subject.clone(),
        period: PeriodFacts {
            label: cur.label.clone(),
            first_day,
            last_day,
            start: to_rfc3339(cur.start_ms),
            end: to_rfc3339(cur.end_ms),
            time_zone: cur.time_zone.clone(),
            trend_labels: periods.iter().map(|p| p.label.clone()).collect(),
        },
        language: req.language.to_owned(),
        metrics,
        activity,
        sentiment,
        alerts,
        churn,
        jobs,
    })
}

async fn job_health(store: &Store, tenant: &str, p: &Period) -> Result<JobHealth, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, state, COUNT(*) AS n FROM job_runs WHERE tenant_id = $1 AND created_at >= $2 \
         AND created_at < $3 GROUP BY kind, state ORDER BY kind, state",
    )
    .bind(tenant)
    .bind(p.start_ms)
    .bind(p.end_ms)
    .fetch_all(store.pool())
    .await?;
    let (mut total, mut succeeded, mut dead) = (0, 0, 0);
    let mut by_kind: BTreeMap<String, i64> = BTreeMap::new();
    for r in &rows {
        let kind: String = r.try_get("kind")?;
        let state: String = r.try_get("state")?;
        let n: i64 = r.try_get("n")?;
        total += n;
        match state.as_str() {
            "succeeded" => succeeded += n,
            "dead" => dead += n,
            _ => {}
        }
        *by_kind.entry(kind).or_default() += n;
    }
    let finished = succeeded + dead;
    Ok(JobHealth {
        total,
        succeeded,
        dead,
        in_progress: total - finished,
        success_rate_pct: (finished > 0).then(|| ((succeeded as f64 / finished as f64) * 1000.0).round() / 10.0),
        by_kind: by_kind.into_iter().map(|(name, count)| Count { name, count }).collect(),
    })
}

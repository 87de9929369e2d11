//! Account and person profiles: upserts (from the API and from profile
//! events), keyset-paginated lists, and erasure.
//!
//! Every statement is scoped by `tenant_id`, so a tenant can neither read
//! nor change another's profiles: a foreign id is simply not found.
//!
//! Read-modify-write upserts start with a no-op `UPDATE` of the row: it
//! takes the row lock on Postgres and the write lock on SQLite, so two
//! concurrent PATCHes of one profile apply one after the other instead of
//! the second overwriting the first.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::audit::{record_audit_in, NewAudit};
use super::{placeholders, Engine, Store, StoreError};
use crate::profile::{redact_alert_payload, redact_event_data, Account, AccountPatch, Consent, Person, PersonPatch};
use crate::time::now_ms;

/// How an upsert treats the stored profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT: the body is the whole profile; fields it leaves out are reset.
    Replace,
    /// Upsert (batch, events): created if missing, else only the fields
    /// sent change.
    Merge,
    /// PATCH: only the fields sent change; the profile must exist.
    MergeExisting,
}

/// Who is writing, which decides how an erased subject is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteSource {
    /// The tenant, explicitly through the API: writing a profile that was
    /// erased re-creates it (and lifts that subject's tombstone).
    Api,
    /// A profile event: an erased subject is never re-created from one (the
    /// event may have been queued before the erasure).
    Event,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq)]
pub enum Upserted<T> {
    /// Written; `created` when it did not exist before.
    Written {
        /// The profile as stored now.
        profile: T,
        /// Whether it was new.
        created: bool,
    },
    /// A profile event about an erased subject: nothing written.
    SkippedErased,
}

/// Filters and page of an account list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountFilter {
    /// Only this plan.
    pub plan: Option<String>,
    /// Only accounts with reports on (true) or off (false).
    pub reports_enabled: Option<bool>,
    /// Page size (clamped to 1..=200).
    pub limit: u32,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
}

/// Filters and page of a people list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonFilter {
    /// Only this role.
    pub role: Option<String>,
    /// Page size (clamped to 1..=200).
    pub limit: u32,
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, by id.
    pub items: Vec<T>,
    /// Cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// The record of an erasure.
#[derive(Debug, Clone, PartialEq)]
pub struct Erasure {
    /// Record id.
    pub id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The account.
    pub account_id: String,
    /// The person; `None` when the whole account was erased.
    pub person_id: Option<String>,
    /// Who asked.
    pub actor: String,
    /// When (epoch ms).
    pub erased_at: i64,
    /// Rows changed per table.
    pub counts: BTreeMap<String, u64>,
    /// True when the subject had been erased already and this call found
    /// nothing left to erase: the earlier record is returned, nothing new
    /// was written.
    pub repeated: bool,
}

/// What to erase.
#[derive(Debug, Clone)]
pub struct EraseRequest<'a> {
    /// The tenant.
    pub tenant_id: &'a str,
    /// The account.
    pub account_id: &'a str,
    /// The person, or `None` for the whole account (its profile, all its
    /// people and the texts of all its events).
    pub person_id: Option<&'a str>,
    /// Who asks (audit).
    pub actor: &'a str,
    /// The event data fields holding free text (`sentiment.text_fields`).
    pub text_fields: &'a [String],
}

/// The tables erasure rewrites, in the order it does; the counts of an
/// [`Erasure`] have these keys.
pub const ERASURE_TABLES: &[&str] = &[
    "people",
    "accounts",
    "events",
    "job_runs",
    "alerts",
    "nudges",
    "nudge_deliveries",
    "reports",
];

/// Largest page of a profile list (`limit`).
pub const PAGE_MAX: u32 = 200;
/// Page size of a profile list when `limit` is not given.
pub const PAGE_DEFAULT: u32 = 50;
/// What a cursor looks like: hex, two digits a byte (see [`decode_cursor`]).
pub const CURSOR_PATTERN: &str = "^([0-9A-Fa-f]{2})*$";

const ACCOUNT_COLUMNS: &str = "account_id, display_name, language, time_zone, plan, renewal_date, owner, \
                               attributes, reports_enabled, created_at, updated_at";
const PERSON_COLUMNS: &str = "account_id, person_id, name, email, phone, role, language, time_zone, channels, \
                              consent, attributes, created_at, updated_at";

fn json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<T, sqlx::Error> {
    let text: String = r.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn account_from_row(r: &AnyRow) -> Result<Account, sqlx::Error> {
    let reports: i64 = r.try_get("reports_enabled")?;
    Ok(Account {
        id: r.try_get("account_id")?,
        display_name: r.try_get("display_name")?,
        language: r.try_get("language")?,
        time_zone: r.try_get("time_zone")?,
        plan: r.try_get("plan")?,
        renewal_date: r.try_get("renewal_date")?,
        owner: r.try_get("owner")?,
        attributes: json_col(r, "attributes")?,
        reports_enabled: reports != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn person_from_row(r: &AnyRow) -> Result<Person, sqlx::Error> {
    Ok(Person {
        account_id: r.try_get("account_id")?,
        id: r.try_get("person_id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        role: r.try_get("role")?,
        language: r.try_get("language")?,
        time_zone: r.try_get("time_zone")?,
        channels: json_col(r, "channels")?,
        consent: json_col::<BTreeMap<String, Consent>>(r, "consent")?,
        attributes: json_col(r, "attributes")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Cursors are the last id of the page, hex-encoded: opaque to clients,
/// trivially valid to produce, and any tampering only moves the page.
fn encode_cursor(last_id: &str) -> String {
    hex::encode(last_id.as_bytes())
}

/// The id a cursor stands for; `Err` (a 400) only for what is not hex
/// ([`CURSOR_PATTERN`]). Any hex is a position in id order — a cursor this
/// API did not return only moves the page — so bytes that are not UTF-8
/// are replaced and the position ends at a NUL (no id holds one, and
/// PostgreSQL text cannot).
pub fn decode_cursor(cursor: &str) -> Result<String, String> {
    let bytes = hex::decode(cursor)
        .map_err(|_| "not a cursor returned by this API (pass `next_cursor` unchanged)".to_owned())?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text.split('\0').next().unwrap_or_default().to_owned())
}

fn page<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> &str) -> Page<T> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| encode_cursor(id(t)))
    } else {
        None
    };
    Page { items, next_cursor }
}

/// A 64-bit lock key for a (tenant, account) pair.
fn lock_key(tenant_id: &str, account_id: &str) -> i64 {
    let digest = Sha256::digest(format!("{tenant_id}\u{1f}{account_id}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(b)
}

/// Serialises result writes about an account against its erasure. Call it
/// first in a transaction that writes results derived from the account's
/// personal data (then check [`is_erased`] in the same transaction).
///
/// Postgres: a shared transaction-scoped advisory lock (erasure takes it
/// exclusively), so writers never block each other and an erasure waits for
/// the writes already under way, which then wait for it. SQLite: nothing to
/// do here, because SQLite runs one write transaction at a time; the caller
/// must make a write its first statement so that its check runs under the
/// write lock.
pub async fn guard_subject(
    tx: &mut Transaction<'_, Any>,
    engine: Engine,
    tenant_id: &str,
    account_id: &str,
) -> Result<(), sqlx::Error> {
    if engine == Engine::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock_shared($1)) AS l")
            .bind(lock_key(tenant_id, account_id))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Whether the account, or the person within it, was erased.
pub async fn is_erased(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &str,
    account_id: &str,
    person_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM erased_subjects WHERE tenant_id = $1 AND account_id = $2 \
         AND (person_id = '' OR person_id = $3)",
    )
    .bind(tenant_id)
    .bind(account_id)
    .bind(person_id.unwrap_or(""))
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

impl Store {
    /// One account profile.
    pub async fn account(&self, tenant_id: &str, account_id: &str) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 AND account_id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    /// One person profile.
    pub async fn person(
        &self,
        tenant_id: &str,
        account_id: &str,
        person_id: &str,
    ) -> Result<Option<Person>, StoreError> {
        let sql =
            format!("SELECT {PERSON_COLUMNS} FROM people WHERE tenant_id = $1 AND account_id = $2 AND person_id = $3");
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(account_id)
            .bind(person_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(person_from_row).transpose()?)
    }

    /// Writes an account profile. `MergeExisting` on a missing account is
    /// `NotFound`.
    pub async fn upsert_account(
        &self,
        tenant_id: &str,
        account_id: &str,
        patch: AccountPatch,
        mode: WriteMode,
        source: WriteSource,
    ) -> Result<Upserted<Account>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if source == WriteSource::Event {
            guard_subject(&mut tx, self.engine, tenant_id, account_id).await?;
        }
        let out = upsert_account_in(&mut tx, tenant_id, account_id, patch, mode, source).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Upserts many accounts (merge semantics) in one transaction.
    pub async fn upsert_accounts(
        &self,
        tenant_id: &str,
        items: Vec<(String, AccountPatch)>,
    ) -> Result<Vec<Upserted<Account>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(items.len());
        for (id, patch) in items {
            out.push(upsert_account_in(&mut tx, tenant_id, &id, patch, WriteMode::Merge, WriteSource::Api).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Writes a person profile (see [`Store::upsert_account`]).
    pub async fn upsert_person(
        &self,
        tenant_id: &str,
        account_id: &str,
        person_id: &str,
        patch: PersonPatch,
        mode: WriteMode,
        source: WriteSource,
    ) -> Result<Upserted<Person>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if source == WriteSource::Event {
            // An event may race an erasure: serialise with it (see `guard_subject`).
            guard_subject(&mut tx, self.engine, tenant_id, account_id).await?;
        }
        let now = now_ms();
        let locked = sqlx::query(
            "UPDATE people SET updated_at = updated_at WHERE tenant_id = $1 AND account_id = $2 AND person_id = $3",
        )
        .bind(tenant_id)
        .bind(account_id)
        .bind(person_id)
        .execute(&mut *tx)
        .await?;
        let exists = locked.rows_affected() > 0;
        if source == WriteSource::Event && is_erased(&mut tx, tenant_id, account_id, Some(person_id)).await? {
            return Ok(Upserted::SkippedErased);
        }
        let mut person = if exists {
            let sql = format!(
                "SELECT {PERSON_COLUMNS} FROM people WHERE tenant_id = $1 AND account_id = $2 AND person_id = $3"
            );
            let row = sqlx::query(&sql)
                .bind(tenant_id)
                .bind(account_id)
                .bind(person_id)
                .fetch_one(&mut *tx)
                .await?;
            person_from_row(&row)?
        } else if mode == WriteMode::MergeExisting {
            return Err(StoreError::NotFound(format!(
                "person `{person_id}` of account `{account_id}`"
            )));
        } else {
            let mut p = Person::new(account_id, person_id);
            p.created_at = now;
            p
        };
        if mode == WriteMode::Replace {
            let created_at = person.created_at;
            person = Person::new(account_id, person_id);
            person.created_at = created_at;
        }
        patch.apply(&mut person);
        person.updated_at = now;
        sqlx::query(
            "INSERT INTO people (tenant_id, account_id, person_id, name, email, phone, role, language, time_zone, \
             channels, consent, attributes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (tenant_id, account_id, person_id) DO UPDATE SET name = excluded.name, \
             email = excluded.email, phone = excluded.phone, role = excluded.role, language = excluded.language, \
             time_zone = excluded.time_zone, channels = excluded.channels, consent = excluded.consent, \
             attributes = excluded.attributes, updated_at = excluded.updated_at",
        )
        .bind(tenant_id)
        .bind(account_id)
        .bind(person_id)
        .bind(person.name.as_deref())
        .bind(person.email.as_deref())
        .bind(person.phone.as_deref())
        .bind(&person.role)
        .bind(person.language.as_deref())
        .bind(person.time_zone.as_deref())
        .bind(to_json(&person.channels))
        .bind(to_json(&person.consent))
        .bind(to_json(&person.attributes))
        .bind(person.created_at)
        .bind(person.updated_at)
        .execute(&mut *tx)
        .await?;
        if source == WriteSource::Api {
            lift_tombstone(&mut tx, tenant_id, account_id, person_id).await?;
        }
        tx.commit().await?;
        Ok(Upserted::Written {
            profile: person,
            created: !exists,
        })
    }

    /// A page of the tenant's accounts, by id.
    pub async fn list_accounts(&self, tenant_id: &str, filter: &AccountFilter) -> Result<Page<Account>, StoreError> {
        let after = match &filter.cursor {
            Some(c) => decode_cursor(c).map_err(StoreError::Conflict)?,
            None => String::new(),
        };
        let limit = filter.limit.clamp(1, PAGE_MAX);
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 AND account_id > $2 \
             AND ($3 IS NULL OR plan = $3) AND ($4 IS NULL OR reports_enabled = $4) \
             ORDER BY account_id LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(after)
            .bind(filter.plan.as_deref())
            .bind(filter.reports_enabled.map(i64::from))
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(account_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit as usize, |a| &a.id))
    }

    /// Every account matching `filter`, walking its pages (`filter.cursor` is
    /// where to start). For jobs and commands that must see them all (a
    /// report fan-out); HTTP callers page.
    pub async fn all_accounts(&self, tenant_id: &str, filter: &AccountFilter) -> Result<Vec<Account>, StoreError> {
        let mut filter = AccountFilter {
            limit: PAGE_MAX,
            ..filter.clone()
        };
        let mut out = Vec::new();
        loop {
            let page = self.list_accounts(tenant_id, &filter).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Every person of an account (with `role`, if given), walking the pages.
    pub async fn all_people(
        &self,
        tenant_id: &str,
        account_id: &str,
        role: Option<&str>,
    ) -> Result<Vec<Person>, StoreError> {
        let mut filter = PersonFilter {
            role: role.map(str::to_owned),
            limit: PAGE_MAX,
            cursor: None,
        };
        let mut out = Vec::new();
        loop {
            let page = self.list_people(tenant_id, account_id, &filter).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// A page of an account's people, by id.
    pub async fn list_people(
        &self,
        tenant_id: &str,
        account_id: &str,
        filter: &PersonFilter,
    ) -> Result<Page<Person>, StoreError> {
        let after = match &filter.cursor {
            Some(c) => decode_cursor(c).map_err(StoreError::Conflict)?,
            None => String::new(),
        };
        let limit = filter.limit.clamp(1, PAGE_MAX);
        let sql = format!(
            "SELECT {PERSON_COLUMNS} FROM people WHERE tenant_id = $1 AND account_id = $2 AND person_id > $3 \
             AND ($4 IS NULL OR role = $4) ORDER BY person_id LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(account_id)
            .bind(after)
            .bind(filter.role.as_deref())
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(person_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit as usize, |p| &p.id))
    }

    /// Deletes an account profile and its people's profiles (not an
    /// erasure: events and results keep their texts). False if there was no
    /// profile.
    pub async fn delete_account(&self, tenant_id: &str, account_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM accounts WHERE tenant_id = $1 AND account_id = $2")
            .bind(tenant_id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM people WHERE tenant_id = $1 AND account_id = $2")
            .bind(tenant_id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Erases a person's (or a whole account's) personal data, in one
    /// transaction:
    ///
    /// - `people` (and for an account, `accounts`): the profile rows are deleted;
    /// - `events`: of the person's events (`user_id` = the person; for an
    ///   account, all its events) the free-text fields are redacted and the
    ///   data of profile events emptied ([`crate::profile::redact_event_data`]);
    /// - `job_runs`: the same redaction in the payloads of those events'
    ///   jobs, and the text excerpt in the payloads of the notification jobs
    ///   their alerts queued (webhooks, follow-ups);
    /// - `alerts`: the text excerpt of the alerts those events raised;
    /// - `nudges` (messages to the subject: subject, body and the trigger,
    ///   which carries event data) and `nudge_deliveries` (attempt details
    ///   name addresses): redacted; the rows stay, anonymous, for the A/B
    ///   counts;
    /// - `reports` of an erased account (with `report_deliveries`): deleted —
    ///   a report is about its account and quotes its comments. A person's
    ///   erasure does not rewrite stored reports of their account (the
    ///   excerpts quoted there are kept until the account's reports are
    ///   erased; recorded as a known gap);
    /// - `erased_subjects`: a tombstone, checked by result writers so a job
    ///   already running cannot write the texts back;
    /// - `erasures` and `audit_log`: the record of it (who, when, counts).
    ///
    /// Anonymous aggregates stay: `account_activity*`, `sentiment_scores`
    /// (labels and numbers, no text) and `churn_scores`. Idempotent: a
    /// repeat that finds nothing left returns the earlier record with
    /// `repeated` set and writes nothing. `Ok(None)`: nothing is known about
    /// the subject (no profile, no events, never erased).
    pub async fn erase(&self, req: &EraseRequest<'_>) -> Result<Option<Erasure>, StoreError> {
        let (tenant, account) = (req.tenant_id, req.account_id);
        let subject = req.person_id.unwrap_or("");
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if self.engine == Engine::Postgres {
            // Exclusive: waits for result writes under way (shared holders).
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(lock_key(tenant, account))
                .execute(&mut *tx)
                .await?;
        }
        // First statement a write: on SQLite it takes the write lock before
        // anything is read (see `guard_subject`).
        let new_tombstone = sqlx::query(
            "INSERT INTO erased_subjects (tenant_id, account_id, person_id, erased_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, account_id, person_id) DO NOTHING",
        )
        .bind(tenant)
        .bind(account)
        .bind(subject)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;

        let mut counts: BTreeMap<String, u64> = ERASURE_TABLES.iter().map(|t| ((*t).to_owned(), 0)).collect();
        let people = match req.person_id {
            Some(p) => {
                sqlx::query("DELETE FROM people WHERE tenant_id = $1 AND account_id = $2 AND person_id = $3")
                    .bind(tenant)
                    .bind(account)
                    .bind(p)
                    .execute(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM people WHERE tenant_id = $1 AND account_id = $2")
                    .bind(tenant)
                    .bind(account)
                    .execute(&mut *tx)
                    .await?
            }
        };
        counts.insert("people".into(), people.rows_affected());
        if req.person_id.is_none() {
            let n = sqlx::query("DELETE FROM accounts WHERE tenant_id = $1 AND account_id = $2")
                .bind(tenant)
                .bind(account)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            counts.insert("accounts".into(), n);
        }

        // The subject's events: redact their texts.
        let rows = match req.person_id {
            Some(p) => {
                sqlx::query(
                    "SELECT event_id, type, data, received_at FROM events \
                     WHERE tenant_id = $1 AND account_id = $2 AND user_id = $3",
                )
                .bind(tenant)
                .bind(account)
                .bind(p)
                .fetch_all(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT event_id, type, data, received_at FROM events WHERE tenant_id = $1 AND account_id = $2",
                )
                .bind(tenant)
                .bind(account)
                .fetch_all(&mut *tx)
                .await?
            }
        };
        let mut event_ids: Vec<String> = Vec::with_capacity(rows.len());
        let mut since = i64::MAX;
        for r in &rows {
            let id: String = r.try_get("event_id")?;
            let kind: String = r.try_get("type")?;
            let data: String = r.try_get("data")?;
            since = since.min(r.try_get::<i64, _>("received_at")?);
            let mut data: Map<String, Value> = serde_json::from_str(&data).unwrap_or_default();
            if redact_event_data(&kind, &mut data, req.text_fields) {
                sqlx::query("UPDATE events SET data = $1 WHERE tenant_id = $2 AND event_id = $3")
                    .bind(Value::Object(data).to_string())
                    .bind(tenant)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                *counts.entry("events".into()).or_default() += 1;
            }
            event_ids.push(id);
        }
        let known_subject = new_tombstone && (people.rows_affected() > 0 || counts["accounts"] > 0 || !rows.is_empty());
        if new_tombstone && !known_subject {
            // Nothing was ever known about this subject: not an erasure.
            tx.rollback().await?;
            return Ok(None);
        }

        // Jobs of those events carry the event (and its texts) as payload.
        let mut job_runs = 0;
        for chunk in event_ids.chunks(500) {
            let sql = format!(
                "SELECT id, payload FROM job_runs WHERE tenant_id = $1 AND event_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(tenant);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&mut *tx).await? {
                let id: String = r.try_get("id")?;
                let payload: String = r.try_get("payload")?;
                let Ok(mut p) = serde_json::from_str::<Value>(&payload) else {
                    continue;
                };
                let kind = p.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
                let changed = p
                    .get_mut("data")
                    .and_then(Value::as_object_mut)
                    .is_some_and(|d| redact_event_data(&kind, d, req.text_fields));
                if changed {
                    update_payload(&mut tx, &id, &p).await?;
                    job_runs += 1;
                }
            }
        }
        // Notification jobs of their alerts (no event_id column; the alert,
        // with its excerpt, is the payload). They were created after the
        // event was received, which bounds the scan.
        if !event_ids.is_empty() || req.person_id.is_none() {
            let ids: HashSet<&str> = event_ids.iter().map(String::as_str).collect();
            let rows = sqlx::query(
                "SELECT id, payload FROM job_runs WHERE tenant_id = $1 AND event_id IS NULL AND created_at >= $2",
            )
            .bind(tenant)
            .bind(if since == i64::MAX { 0 } else { since })
            .fetch_all(&mut *tx)
            .await?;
            for r in rows {
                let id: String = r.try_get("id")?;
                let payload: String = r.try_get("payload")?;
                let Ok(mut p) = serde_json::from_str::<Value>(&payload) else {
                    continue;
                };
                let ours = match req.person_id {
                    Some(_) => p
                        .get("event_id")
                        .and_then(Value::as_str)
                        .is_some_and(|e| ids.contains(e)),
                    None => p.get("account_id").and_then(Value::as_str) == Some(account),
                };
                if ours && p.get_mut("details").is_some_and(redact_alert_payload) {
                    update_payload(&mut tx, &id, &p).await?;
                    job_runs += 1;
                }
            }
        }
        counts.insert("job_runs".into(), job_runs);

        // Alerts' excerpts.
        let alert_rows = match req.person_id {
            Some(_) => {
                let mut rows = Vec::new();
                for chunk in event_ids.chunks(500) {
                    let sql = format!(
                        "SELECT id, payload FROM alerts WHERE tenant_id = $1 AND event_id IN ({})",
                        placeholders(1, chunk.len())
                    );
                    let mut q = sqlx::query(&sql).bind(tenant);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    rows.extend(q.fetch_all(&mut *tx).await?);
                }
                rows
            }
            None => {
                sqlx::query("SELECT id, payload FROM alerts WHERE tenant_id = $1 AND account_id = $2")
                    .bind(tenant)
                    .bind(account)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let mut alerts = 0;
        for r in alert_rows {
            let id: String = r.try_get("id")?;
            let payload: String = r.try_get("payload")?;
            let Ok(mut p) = serde_json::from_str::<Value>(&payload) else {
                continue;
            };
            if redact_alert_payload(&mut p) {
                sqlx::query("UPDATE alerts SET payload = $1 WHERE id = $2 AND tenant_id = $3")
                    .bind(p.to_string())
                    .bind(&id)
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await?;
                alerts += 1;
            }
        }
        counts.insert("alerts".into(), alerts);

        // Nudges written to the subject (the `nudge` kind's table): the message and its trigger.
        let person_filter = if req.person_id.is_some() {
            " AND person_id = $3"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE nudge_deliveries SET detail = '' WHERE tenant_id = $1 AND detail <> '' AND nudge_id IN \
             (SELECT id FROM nudges WHERE tenant_id = $1 AND account_id = $2{person_filter})"
        );
        let mut q = sqlx::query(&sql).bind(tenant).bind(account);
        if let Some(p) = req.person_id {
            q = q.bind(p);
        }
        counts.insert("nudge_deliveries".into(), q.execute(&mut *tx).await?.rows_affected());
        let sql = format!(
            "UPDATE nudges SET subject = NULL, body = NULL, trigger_info = '{{}}' \
             WHERE tenant_id = $1 AND account_id = $2{person_filter} \
             AND (subject IS NOT NULL OR body IS NOT NULL OR trigger_info <> '{{}}')"
        );
        let mut q = sqlx::query(&sql).bind(tenant).bind(account);
        if let Some(p) = req.person_id {
            q = q.bind(p);
        }
        counts.insert("nudges".into(), q.execute(&mut *tx).await?.rows_affected());

        // An erased account's reports (the `report` kind's tables).
        if req.person_id.is_none() {
            sqlx::query(
                "DELETE FROM report_deliveries WHERE report_id IN \
                 (SELECT id FROM reports WHERE tenant_id = $1 AND account_id = $2)",
            )
            .bind(tenant)
            .bind(account)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query("DELETE FROM reports WHERE tenant_id = $1 AND account_id = $2")
                .bind(tenant)
                .bind(account)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            counts.insert("reports".into(), n);
        }

        let changed = counts.values().any(|n| *n > 0);
        if !new_tombstone && !changed {
            // A repeat with nothing left: report the earlier erasure.
            tx.rollback().await?;
            return Ok(self.last_erasure(tenant, account, subject).await?.map(|mut e| {
                e.repeated = true;
                e
            }));
        }
        let erasure = Erasure {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant.to_owned(),
            account_id: account.to_owned(),
            person_id: req.person_id.map(str::to_owned),
            actor: req.actor.to_owned(),
            erased_at: now,
            counts,
            repeated: false,
        };
        sqlx::query(
            "INSERT INTO erasures (id, tenant_id, account_id, person_id, actor, erased_at, counts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&erasure.id)
        .bind(tenant)
        .bind(account)
        .bind(subject)
        .bind(req.actor)
        .bind(now)
        .bind(serde_json::to_string(&erasure.counts).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        let target = match req.person_id {
            Some(p) => format!("{account}/{p}"),
            None => account.to_owned(),
        };
        record_audit_in(
            &mut tx,
            &NewAudit {
                tenant_id: Some(tenant),
                actor: req.actor,
                action: if req.person_id.is_some() {
                    "person.erased"
                } else {
                    "account.erased"
                },
                target: &target,
                details: serde_json::json!({ "erasure_id": erasure.id, "counts": erasure.counts }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(erasure))
    }

    /// The latest erasure of a subject (`person_id` '' = the account).
    pub async fn last_erasure(
        &self,
        tenant_id: &str,
        account_id: &str,
        person_id: &str,
    ) -> Result<Option<Erasure>, StoreError> {
        let row = sqlx::query(
            "SELECT id, actor, erased_at, counts FROM erasures WHERE tenant_id = $1 AND account_id = $2 \
             AND person_id = $3 ORDER BY erased_at DESC, id DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(account_id)
        .bind(person_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(Erasure {
            id: r.try_get("id")?,
            tenant_id: tenant_id.to_owned(),
            account_id: account_id.to_owned(),
            person_id: (!person_id.is_empty()).then(|| person_id.to_owned()),
            actor: r.try_get("actor")?,
            erased_at: r.try_get("erased_at")?,
            counts: json_col(&r, "counts")?,
            repeated: false,
        }))
    }
}

async fn update_payload(tx: &mut Transaction<'_, Any>, job_id: &str, payload: &Value) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE job_runs SET payload = $1 WHERE id = $2")
        .bind(payload.to_string())
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn lift_tombstone(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &str,
    account_id: &str,
    person_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM erased_subjects WHERE tenant_id = $1 AND account_id = $2 AND person_id = $3")
        .bind(tenant_id)
        .bind(account_id)
        .bind(person_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn upsert_account_in(
    tx: &mut Transaction<'_, Any>,
    tenant_id: &str,
    account_id: &str,
    patch: AccountPatch,
    mode: WriteMode,
    source: WriteSource,
) -> Result<Upserted<Account>, StoreError> {
    let now = now_ms();
    let locked = sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE tenant_id = $1 AND account_id = $2")
        .bind(tenant_id)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    let exists = locked.rows_affected() > 0;
    if source == WriteSource::Event && is_erased(tx, tenant_id, account_id, None).await? {
        return Ok(Upserted::SkippedErased);
    }
    let mut account = if exists {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE tenant_id = $1 AND account_id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(account_id)
            .fetch_one(&mut **tx)
            .await?;
        account_from_row(&row)?
    } else if mode == WriteMode::MergeExisting {
        return Err(StoreError::NotFound(format!("account `{account_id}`")));
    } else {
        let mut a = Account::new(account_id);
        a.created_at = now;
        a
    };
    if mode == WriteMode::Replace {
        let created_at = account.created_at;
        account = Account::new(account_id);
        account.created_at = created_at;
    }
    patch.apply(&mut account);
    account.updated_at = now;
    sqlx::query(
        "INSERT INTO accounts (tenant_id, account_id, display_name, language, time_zone, plan, renewal_date, owner, \
         attributes, reports_enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (tenant_id, account_id) DO UPDATE SET display_name = excluded.display_name, \
         language = excluded.language, time_zone = excluded.time_zone, plan = excluded.plan, \
         renewal_date = excluded.renewal_date, owner = excluded.owner, attributes = excluded.attributes, \
         reports_enabled = excluded.reports_enabled, updated_at = excluded.updated_at",
    )
    .bind(tenant_id)
    .bind(account_id)
    .bind(account.display_name.as_deref())
    .bind(account.language.as_deref())
    .bind(account.time_zone.as_deref())
    .bind(account.plan.as_deref())
    .bind(account.renewal_date.as_deref())
    .bind(account.owner.as_deref())
    .bind(Value::Object(account.attributes.clone()).to_string())
    .bind(i64::from(account.reports_enabled))
    .bind(account.created_at)
    .bind(account.updated_at)
    .execute(&mut **tx)
    .await?;
    if source == WriteSource::Api {
        lift_tombstone(tx, tenant_id, account_id, "").await?;
    }
    Ok(Upserted::Written {
        profile: account,
        created: !exists,
    })
}

/// JSON text of a list or map (their serialization cannot fail).
fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

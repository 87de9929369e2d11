//! Account and person profiles: `PUT` / `PATCH` / `GET` / `DELETE` on
//! `/v1/accounts/{id}` and `/v1/accounts/{id}/people/{person_id}`, lists with
//! filters and cursors, bulk upsert (`POST /v1/accounts:batch`), and
//! erasure. Bodies are validated by `kairos_core::profile` — the same
//! functions the `profile` job applies to `account.updated` /
//! `person.updated` events — so both paths accept the same input.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use kairos_core::profile::{
    self, parse_account, parse_person, resolve_language, resolve_time_zone, validate_id, Account, Person,
};
use kairos_core::store::{
    AccountFilter, EraseRequest, Erasure, PersonFilter, Tenant, Upserted, WriteMode, WriteSource,
};
use kairos_core::time::to_rfc3339;
use kairos_core::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Most accounts in one `POST /v1/accounts:batch`.
pub const MAX_BATCH: usize = 1_000;

/// An account body (PUT: the whole profile; PATCH: the fields to change;
/// `null` clears a field). This type documents the body; it is parsed by
/// `kairos_core::profile::parse_account`, which events use too.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct AccountInput {
    /// Name shown in reports.
    #[schema(example = "Clínica Norte")]
    pub display_name: Option<String>,
    /// `es` or `en`; unset inherits the tenant's, then the config's.
    #[schema(example = "es")]
    pub language: Option<String>,
    /// IANA time zone.
    #[schema(example = "America/Bogota")]
    pub time_zone: Option<String>,
    /// The customer's plan.
    pub plan: Option<String>,
    /// Next renewal, `YYYY-MM-DD`.
    #[schema(example = "2027-03-31")]
    pub renewal_date: Option<String>,
    /// Success manager on your side.
    pub owner: Option<String>,
    /// Anything else (a JSON object, at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    /// Whether reports are sent for this account (default true).
    pub reports_enabled: Option<bool>,
}

/// A person body; see [`AccountInput`]. Parsed by
/// `kairos_core::profile::parse_person`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PersonInput {
    /// Full name.
    pub name: Option<String>,
    /// Email address.
    #[schema(example = "ana@clinicanorte.co")]
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// `executive`, `admin` or `member` (default).
    #[schema(example = "executive")]
    pub role: Option<String>,
    /// `es` or `en`; unset inherits the account's.
    pub language: Option<String>,
    /// IANA time zone; unset inherits the account's.
    pub time_zone: Option<String>,
    /// Preferred channels, most preferred first: `email`, `webhook`,
    /// `in_app`, `success_manager`.
    pub channels: Option<Vec<String>>,
    /// Per channel: `{"granted": bool, "given_at": RFC 3339}`, or `null` to
    /// forget it. Channels not listed keep their consent.
    #[schema(value_type = Option<Object>)]
    pub consent: Option<Value>,
    /// Anything else (a JSON object).
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
}

/// Bulk upsert: each item is an [`AccountInput`] plus its `id`. Items are
/// merged into existing profiles (only the fields sent change).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct AccountBatch {
    /// At most 1,000.
    #[schema(value_type = Vec<Object>)]
    pub accounts: Vec<Value>,
}

/// Language and time zone after the fallbacks (person → account → tenant
/// → config).
#[derive(Debug, Serialize, ToSchema)]
pub struct Resolved {
    /// `es` or `en`.
    pub language: String,
    /// IANA zone.
    pub time_zone: String,
}

/// An account profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Account id.
    pub id: String,
    /// Name shown in reports.
    pub display_name: Option<String>,
    /// As set (`null`: inherited).
    pub language: Option<String>,
    /// As set (`null`: inherited).
    pub time_zone: Option<String>,
    /// Plan.
    pub plan: Option<String>,
    /// `YYYY-MM-DD`.
    pub renewal_date: Option<String>,
    /// Success manager.
    pub owner: Option<String>,
    /// Custom attributes.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// Reports on or off.
    pub reports_enabled: bool,
    /// What applies after the fallbacks.
    pub resolved: Resolved,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Consent on one channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    /// Contact allowed.
    pub granted: bool,
    /// When given or withdrawn, RFC 3339.
    pub given_at: String,
}

/// A person profile.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonView {
    /// Account id.
    pub account_id: String,
    /// Person id (the `user_id` of their events).
    pub id: String,
    /// Full name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// `executive`, `admin` or `member`.
    pub role: String,
    /// As set (`null`: inherited).
    pub language: Option<String>,
    /// As set (`null`: inherited).
    pub time_zone: Option<String>,
    /// Preferred channels, most preferred first.
    pub channels: Vec<String>,
    /// Consent per channel.
    pub consent: BTreeMap<String, ConsentView>,
    /// Custom attributes.
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    /// What applies after the fallbacks.
    pub resolved: Resolved,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// A page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    /// Accounts, by id.
    pub items: Vec<AccountView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of people.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonPage {
    /// People, by id.
    pub items: Vec<PersonView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The outcome of one batch item.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemResult {
    /// Account id.
    pub id: String,
    /// `created` or `updated`.
    pub status: &'static str,
}

/// Response to a bulk upsert.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Accounts created.
    pub created: usize,
    /// Accounts updated.
    pub updated: usize,
    /// Per item, in request order.
    pub results: Vec<BatchItemResult>,
}

/// The record of an erasure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureView {
    /// Record id.
    pub id: String,
    /// Account id.
    pub account_id: String,
    /// Person id; absent when the whole account was erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    /// Who asked (`tenant:<name>`).
    pub actor: String,
    /// RFC 3339.
    pub erased_at: String,
    /// Rows changed per table (`people`, `accounts`, `events`, `job_runs`, `alerts`).
    pub counts: BTreeMap<String, u64>,
    /// True when this repeats an earlier erasure and nothing was left to
    /// erase (the earlier record is returned).
    pub repeated: bool,
}

/// Account list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// Only this plan.
    pub plan: Option<String>,
    /// Only accounts with reports on (`true`) or off (`false`).
    pub reports_enabled: Option<bool>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// People list filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeopleQuery {
    /// Only this role (`executive`, `admin`, `member`).
    pub role: Option<String>,
    /// Page size, 1-200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Account deletion options.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountQuery {
    /// `true`: erase the account's personal data (profile, people, the
    /// texts of its events and alerts) and keep a record; otherwise only the
    /// profile and its people's profiles are deleted.
    pub erase: Option<bool>,
}

fn resolved(state: &AppState, tenant: &Tenant, person: Option<&Person>, account: Option<&Account>) -> Resolved {
    let config = &state.config.profiles;
    let defaults = config.tenant(tenant);
    Resolved {
        language: resolve_language(person, account, defaults, config).to_owned(),
        time_zone: resolve_time_zone(person, account, defaults, config).name().to_owned(),
    }
}

fn account_view(state: &AppState, tenant: &Tenant, a: Account) -> AccountView {
    let resolved = resolved(state, tenant, None, Some(&a));
    AccountView {
        id: a.id,
        display_name: a.display_name,
        language: a.language,
        time_zone: a.time_zone,
        plan: a.plan,
        renewal_date: a.renewal_date,
        owner: a.owner,
        attributes: a.attributes,
        reports_enabled: a.reports_enabled,
        resolved,
        created_at: to_rfc3339(a.created_at),
        updated_at: to_rfc3339(a.updated_at),
    }
}

fn person_view(state: &AppState, tenant: &Tenant, account: Option<&Account>, p: Person) -> PersonView {
    let resolved = resolved(state, tenant, Some(&p), account);
    PersonView {
        account_id: p.account_id,
        id: p.id,
        name: p.name,
        email: p.email,
        phone: p.phone,
        role: p.role,
        language: p.language,
        time_zone: p.time_zone,
        channels: p.channels,
        consent: p
            .consent
            .into_iter()
            .map(|(k, c)| {
                (
                    k,
                    ConsentView {
                        granted: c.granted,
                        given_at: c.given_at,
                    },
                )
            })
            .collect(),
        attributes: p.attributes,
        resolved,
        created_at: to_rfc3339(p.created_at),
        updated_at: to_rfc3339(p.updated_at),
    }
}

fn erasure_view(e: Erasure) -> ErasureView {
    ErasureView {
        id: e.id,
        account_id: e.account_id,
        person_id: e.person_id,
        actor: e.actor,
        erased_at: to_rfc3339(e.erased_at),
        counts: e.counts,
        repeated: e.repeated,
    }
}

/// The JSON body as an object, with the same content-type and size
/// answers as event ingest.
fn json_body(state: &AppState, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    super::events::require_json(headers)?;
    let body = body.map_err(|e| super::events::body_error(e, state.config.api.max_body_bytes))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

fn object(value: &Value, field: &str) -> Result<Map<String, Value>, ApiError> {
    value
        .as_object()
        .cloned()
        .ok_or_else(|| ApiError::field(field, "must be a JSON object"))
}

fn field_err(e: profile::FieldError) -> ApiError {
    ApiError::field(e.field, e.reason)
}

fn id_of(field: &str, id: &str) -> Result<(), ApiError> {
    validate_id(field, id).map_err(field_err)
}

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
        StoreError::Conflict(reason) => ApiError::field("cursor", reason),
        other => other.into(),
    }
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::field("limit", "must be between 1 and 200"))
    }
}

fn check_cursor(cursor: &Option<String>) -> Result<(), ApiError> {
    if let Some(c) = cursor {
        kairos_core::store::decode_cursor(c).map_err(|reason| ApiError::field("cursor", reason))?;
    }
    Ok(())
}

fn query_err(e: QueryRejection) -> ApiError {
    ApiError::field("query", e.body_text())
}

async fn write_account(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    mode: WriteMode,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    id_of("id", id)?;
    let value = json_body(state, headers, body)?;
    let patch = parse_account(&object(&value, "")?).map_err(field_err)?;
    match state
        .store
        .upsert_account(&tenant.id, id, patch, mode, WriteSource::Api)
        .await
        .map_err(store_err)?
    {
        Upserted::Written { profile, created } => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(account_view(state, tenant, profile))))
        }
        // Only event writes skip erased subjects; API writes re-create them.
        Upserted::SkippedErased => Err(ApiError::Unavailable("profile write skipped".into())),
    }
}

async fn write_person(
    state: &AppState,
    tenant: &Tenant,
    (account_id, person_id): (&str, &str),
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    mode: WriteMode,
) -> Result<(StatusCode, Json<PersonView>), ApiError> {
    id_of("id", account_id)?;
    id_of("person_id", person_id)?;
    let value = json_body(state, headers, body)?;
    let patch = parse_person(&object(&value, "")?).map_err(field_err)?;
    let out = state
        .store
        .upsert_person(&tenant.id, account_id, person_id, patch, mode, WriteSource::Api)
        .await
        .map_err(store_err)?;
    let account = state.store.account(&tenant.id, account_id).await?;
    match out {
        Upserted::Written { profile, created } => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok((status, Json(person_view(state, tenant, account.as_ref(), profile))))
        }
        // Only event writes skip erased subjects; API writes re-create them.
        Upserted::SkippedErased => Err(ApiError::Unavailable("profile write skipped".into())),
    }
}

/// Create or replace an account profile.
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id (as in events)")),
    request_body = AccountInput,
    responses(
        (status = 200, description = "Replaced", body = AccountView),
        (status = 201, description = "Created", body = AccountView),
        (status = 400, description = "Invalid field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_account(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    write_account(&state, &tenant, &id, &headers, body, WriteMode::Replace).await
}

/// Change some fields of an account profile.
#[utoipa::path(
    patch,
    path = "/v1/accounts/{id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id")),
    request_body = AccountInput,
    responses(
        (status = 200, description = "Updated", body = AccountView),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 404, description = "No such account profile", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_account(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    write_account(&state, &tenant, &id, &headers, body, WriteMode::MergeExisting).await
}

/// An account profile.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The profile", body = AccountView),
        (status = 404, description = "No such account profile", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_account(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    id_of("id", &id)?;
    let account = state
        .store
        .account(&tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account `{id}` not found")))?;
    Ok(Json(account_view(&state, &tenant, account)))
}

/// Delete an account profile, or with `erase=true` erase its personal data.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id"), DeleteAccountQuery),
    responses(
        (status = 200, description = "Erased (`erase=true`): the erasure record; repeating the call returns it again", body = ErasureView),
        (status = 204, description = "Profile and its people's profiles deleted"),
        (status = 404, description = "Nothing known about this account", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_account(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    query: Result<Query<DeleteAccountQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    id_of("id", &id)?;
    let Query(q) = query.map_err(query_err)?;
    if q.erase == Some(true) {
        let erasure = erase(&state, &tenant, &id, None).await?;
        return Ok(Json(erasure_view(erasure)).into_response());
    }
    if state.store.delete_account(&tenant.id, &id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("account `{id}` not found")))
    }
}

async fn erase(
    state: &AppState,
    tenant: &Tenant,
    account_id: &str,
    person_id: Option<&str>,
) -> Result<Erasure, ApiError> {
    let actor = format!("tenant:{}", tenant.name);
    let req = EraseRequest {
        tenant_id: &tenant.id,
        account_id,
        person_id,
        actor: &actor,
        text_fields: &state.config.text_fields,
    };
    state.store.erase(&req).await?.ok_or_else(|| {
        ApiError::NotFound(match person_id {
            Some(p) => format!("person `{p}` of account `{account_id}` not found"),
            None => format!("account `{account_id}` not found"),
        })
    })
}

/// The tenant's account profiles, by id, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/accounts",
    tag = "profiles",
    params(AccountsQuery),
    responses(
        (status = 200, description = "A page", body = AccountPage),
        (status = 400, description = "Bad filter or cursor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_accounts(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    query: Result<Query<AccountsQuery>, QueryRejection>,
) -> Result<Json<AccountPage>, ApiError> {
    let Query(q) = query.map_err(query_err)?;
    check_cursor(&q.cursor)?;
    let filter = AccountFilter {
        plan: q.plan,
        reports_enabled: q.reports_enabled,
        limit: page_limit(q.limit)?,
        cursor: q.cursor,
    };
    let page = state
        .store
        .list_accounts(&tenant.id, &filter)
        .await
        .map_err(store_err)?;
    Ok(Json(AccountPage {
        items: page
            .items
            .into_iter()
            .map(|a| account_view(&state, &tenant, a))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Create or update many accounts (merged: only the fields sent change).
#[utoipa::path(
    post,
    path = "/v1/accounts:batch",
    tag = "profiles",
    request_body = AccountBatch,
    responses(
        (status = 200, description = "All written", body = BatchResponse),
        (status = 400, description = "An invalid item (`accounts[3].email`); nothing written", body = ErrorBody),
        (status = 413, description = "More than 1,000 accounts", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn batch_accounts(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResponse>, ApiError> {
    let value = json_body(&state, &headers, body)?;
    let obj = object(&value, "")?;
    if let Some(k) = obj.keys().find(|k| *k != "accounts") {
        return Err(ApiError::field(k.as_str(), "unknown field (expected only `accounts`)"));
    }
    let items = obj
        .get("accounts")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::field("accounts", "must be an array of accounts"))?;
    if items.is_empty() {
        return Err(ApiError::field("accounts", "no accounts sent"));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::TooLarge(format!(
            "{} accounts in one request; at most {MAX_BATCH} allowed",
            items.len()
        )));
    }
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("accounts[{i}]");
        let mut fields = object(item, &at)?;
        let id = match fields.remove("id") {
            Some(Value::String(id)) => id,
            Some(_) => return Err(ApiError::field(format!("{at}.id"), "must be a string")),
            None => return Err(ApiError::field(format!("{at}.id"), "missing field `id`")),
        };
        validate_id("id", &id).map_err(|e| field_err(e.under(&at)))?;
        let patch = parse_account(&fields).map_err(|e| field_err(e.under(&at)))?;
        parsed.push((id, patch));
    }
    let ids: Vec<String> = parsed.iter().map(|(id, _)| id.clone()).collect();
    let outcomes = state.store.upsert_accounts(&tenant.id, parsed).await?;
    let mut created = 0;
    let results = ids
        .into_iter()
        .zip(outcomes)
        .map(|(id, o)| {
            let new = matches!(o, Upserted::Written { created: true, .. });
            created += usize::from(new);
            BatchItemResult {
                id,
                status: if new { "created" } else { "updated" },
            }
        })
        .collect::<Vec<_>>();
    Ok(Json(BatchResponse {
        created,
        updated: results.len() - created,
        results,
    }))
}

/// Create or replace a person profile.
#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/people/{person_id}",
    tag = "profiles",
    params(
        ("id" = String, Path, description = "Account id"),
        ("person_id" = String, Path, description = "Person id (the `user_id` of their events)")
    ),
    request_body = PersonInput,
    responses(
        (status = 200, description = "Replaced", body = PersonView),
        (status = 201, description = "Created", body = PersonView),
        (status = 400, description = "Invalid field (named in `field`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_person(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((id, person_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PersonView>), ApiError> {
    write_person(&state, &tenant, (&id, &person_id), &headers, body, WriteMode::Replace).await
}

/// Change some fields of a person profile.
#[utoipa::path(
    patch,
    path = "/v1/accounts/{id}/people/{person_id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id"), ("person_id" = String, Path, description = "Person id")),
    request_body = PersonInput,
    responses(
        (status = 200, description = "Updated", body = PersonView),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 404, description = "No such person", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_person(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((id, person_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PersonView>), ApiError> {
    write_person(
        &state,
        &tenant,
        (&id, &person_id),
        &headers,
        body,
        WriteMode::MergeExisting,
    )
    .await
}

/// A person profile.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/people/{person_id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id"), ("person_id" = String, Path, description = "Person id")),
    responses(
        (status = 200, description = "The profile", body = PersonView),
        (status = 404, description = "No such person", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_person(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((id, person_id)): Path<(String, String)>,
) -> Result<Json<PersonView>, ApiError> {
    id_of("id", &id)?;
    id_of("person_id", &person_id)?;
    let person = state
        .store
        .person(&tenant.id, &id, &person_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("person `{person_id}` of account `{id}` not found")))?;
    let account = state.store.account(&tenant.id, &id).await?;
    Ok(Json(person_view(&state, &tenant, account.as_ref(), person)))
}

/// Erase a person: their profile, and their texts in stored events, job
/// payloads and alert excerpts; anonymous aggregates stay. Idempotent.
#[utoipa::path(
    delete,
    path = "/v1/accounts/{id}/people/{person_id}",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id"), ("person_id" = String, Path, description = "Person id")),
    responses(
        (status = 200, description = "Erased: the erasure record; repeating the call returns it again", body = ErasureView),
        (status = 404, description = "Nothing known about this person", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_person(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((id, person_id)): Path<(String, String)>,
) -> Result<Json<ErasureView>, ApiError> {
    id_of("id", &id)?;
    id_of("person_id", &person_id)?;
    Ok(Json(erasure_view(erase(&state, &tenant, &id, Some(&person_id)).await?)))
}

/// An account's people, by id, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/people",
    tag = "profiles",
    params(("id" = String, Path, description = "Account id"), PeopleQuery),
    responses(
        (status = 200, description = "A page", body = PersonPage),
        (status = 400, description = "Bad filter or cursor", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_people(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    query: Result<Query<PeopleQuery>, QueryRejection>,
) -> Result<Json<PersonPage>, ApiError> {
    id_of("id", &id)?;
    let Query(q) = query.map_err(query_err)?;
    check_cursor(&q.cursor)?;
    if let Some(r) = &q.role {
        if !profile::ROLES.contains(&r.as_str()) {
            return Err(ApiError::field(
                "role",
                format!("unknown role (expected one of {})", profile::ROLES.join(", ")),
            ));
        }
    }
    let filter = PersonFilter {
        role: q.role,
        limit: page_limit(q.limit)?,
        cursor: q.cursor,
    };
    let page = state
        .store
        .list_people(&tenant.id, &id, &filter)
        .await
        .map_err(store_err)?;
    let account = state.store.account(&tenant.id, &id).await?;
    Ok(Json(PersonPage {
        items: page
            .items
            .into_iter()
            .map(|p| person_view(&state, &tenant, account.as_ref(), p))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

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
use kairos_core::event::{IDENT_PATTERN, MAX_IDENT_LEN};
use kairos_core::profile::{
    self, parse_account, parse_person, resolve_language, resolve_time_zone, validate_id, Account, Person,
};
use kairos_core::store::{
    AccountFilter, EraseRequest, Erasure, PersonFilter, Tenant, Upserted, WriteMode, WriteSource, CURSOR_PATTERN,
    PAGE_DEFAULT, PAGE_MAX,
};
use kairos_core::time::to_rfc3339;
use kairos_core::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthTenant;
use crate::error::{ApiError, ErrorBody};
use crate::AppState;

/// Most accounts in one `POST /v1/accounts:batch`.
pub const MAX_BATCH: usize = 1_000;

// The request bodies and parameters below are documented by hand, from the
// very constants `kairos_core::profile` validates with (lengths, patterns,
// enums, the batch size), so the OpenAPI document states every rule the
// server enforces and cannot drift from it. The bodies are parsed by
// `kairos_core::profile::parse_account` / `parse_person` (events use them
// too), not by serde.

/// A JSON Schema written as JSON, as utoipa's type. Only ever given the
/// literal schemas of this module, which a test checks survive the trip.
fn schema(value: Value) -> RefOr<Schema> {
    match serde_json::from_value::<Schema>(value) {
        Ok(s) => RefOr::T(s),
        Err(e) => {
            tracing::error!(error = %e, "unreadable OpenAPI schema");
            RefOr::T(Schema::default())
        }
    }
}

/// `null` added to a list of allowed values.
fn or_null(values: impl IntoIterator<Item = &'static str>) -> Vec<Value> {
    values.into_iter().map(Value::from).chain([Value::Null]).collect()
}

/// An account or person id (the rule of event ids).
fn ident_schema(description: &str) -> Value {
    json!({
        "type": "string", "minLength": 1, "maxLength": MAX_IDENT_LEN, "pattern": IDENT_PATTERN,
        "description": description,
    })
}

/// A free-text field (`null` clears it).
fn text_schema(description: &str) -> Value {
    json!({
        "type": ["string", "null"], "minLength": 1, "maxLength": profile::MAX_TEXT_CHARS,
        "pattern": profile::TEXT_PATTERN, "description": description,
    })
}

fn language_schema(description: &str) -> Value {
    json!({"type": ["string", "null"], "enum": or_null(profile::LANGUAGES.iter().copied()), "description": description})
}

fn time_zone_schema(description: &str) -> Value {
    json!({"$ref": "#/components/schemas/TimeZone", "description": description})
}

fn attributes_schema() -> Value {
    json!({
        "type": ["object", "null"],
        "description": format!(
            "Anything else: a JSON object of at most {} bytes as JSON (larger is a 400). Replaces the stored object; \
             `null` empties it.",
            profile::MAX_ATTRIBUTES_BYTES
        ),
    })
}

/// The properties of an account body.
fn account_properties() -> Map<String, Value> {
    let props = json!({
        "display_name": text_schema("Name shown in reports."),
        "language": language_schema("Unset inherits the tenant's, then the config's."),
        "time_zone": time_zone_schema("Unset inherits the tenant's, then the config's."),
        "plan": text_schema("The customer's plan."),
        "renewal_date": {
            "type": ["string", "null"], "format": "date", "pattern": profile::DATE_PATTERN,
            "description": "Next renewal, `YYYY-MM-DD`.", "example": "2027-03-31",
        },
        "owner": text_schema("Success manager on your side."),
        "attributes": attributes_schema(),
        "reports_enabled": {"type": ["boolean", "null"], "description": "Whether reports are sent (`null`: back to the default, true)."},
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An account body (PUT: the whole profile; PATCH: the fields to change;
/// `null` clears a field; unknown fields are refused).
pub struct AccountInput;

impl utoipa::PartialSchema for AccountInput {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "object",
            "description": "An account profile. Every field is optional; `null` clears one; unknown fields are refused.",
            "properties": account_properties(),
            "additionalProperties": false,
            "example": {"display_name": "Clínica Norte", "language": "es", "time_zone": "America/Bogota", "plan": "pro"},
        }))
    }
}

impl ToSchema for AccountInput {}

/// A person body; see [`AccountInput`].
pub struct PersonInput;

impl utoipa::PartialSchema for PersonInput {
    fn schema() -> RefOr<Schema> {
        let channel = json!({"type": "string", "enum": profile::CHANNELS});
        schema(json!({
            "type": "object",
            "description": "A person profile. Every field is optional; `null` clears one; unknown fields are refused.",
            "properties": {
                "name": text_schema("Full name."),
                "email": {
                    "type": ["string", "null"], "maxLength": profile::MAX_EMAIL_CHARS, "pattern": profile::EMAIL_PATTERN,
                    "description": "Email address.", "example": "ana@clinicanorte.co",
                },
                "phone": {
                    "type": ["string", "null"], "maxLength": profile::MAX_PHONE_CHARS, "pattern": profile::PHONE_PATTERN,
                    "description": "Phone number: 6-20 digits, with `+ - ( ) .` and spaces.",
                },
                "role": {"type": ["string", "null"], "enum": or_null(profile::ROLES.iter().copied()),
                    "description": "`null`: back to `member`."},
                "language": language_schema("Unset inherits the account's."),
                "time_zone": time_zone_schema("Unset inherits the account's."),
                "channels": {
                    "type": ["array", "null"], "items": channel, "uniqueItems": true,
                    "description": "Preferred channels, most preferred first.",
                },
                "consent": {
                    "type": ["object", "null"],
                    "description": "Per channel: the consent, or `null` to forget it. Channels not listed keep theirs.",
                    "propertyNames": {"type": "string", "enum": profile::CHANNELS},
                    "additionalProperties": {
                        "type": ["object", "null"],
                        "properties": {
                            "granted": {"type": "boolean", "description": "Contact allowed."},
                            "given_at": {"type": "string", "format": "date-time", "description": "When given or withdrawn, RFC 3339."},
                        },
                        "required": ["granted", "given_at"],
                        "additionalProperties": false,
                    },
                },
                "attributes": attributes_schema(),
            },
            "additionalProperties": false,
            "example": {"name": "Ana Ruiz", "email": "ana@clinicanorte.co", "role": "executive", "channels": ["email"]},
        }))
    }
}

impl ToSchema for PersonInput {}

/// Bulk upsert: each item is an [`AccountInput`] plus its `id`. Items are
/// merged into existing profiles (only the fields sent change).
pub struct AccountBatch;

impl utoipa::PartialSchema for AccountBatch {
    fn schema() -> RefOr<Schema> {
        let mut item = account_properties();
        item.insert("id".into(), ident_schema("Account id (as in events)."));
        schema(json!({
            "type": "object",
            "properties": {
                "accounts": {
                    "type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                    "items": {"type": "object", "properties": item, "required": ["id"], "additionalProperties": false},
                    "description": format!("At most {MAX_BATCH} accounts (more is a 413)."),
                },
            },
            "required": ["accounts"],
            "additionalProperties": false,
        }))
    }
}

impl ToSchema for AccountBatch {}

/// An IANA time zone name, exactly as the tz database spells it (or `null`).
pub struct TimeZone;

impl utoipa::PartialSchema for TimeZone {
    fn schema() -> RefOr<Schema> {
        let names: Vec<Value> = profile::time_zone_names()
            .map(Value::from)
            .chain([Value::Null])
            .collect();
        schema(json!({"type": ["string", "null"], "enum": names, "example": "Europe/Madrid"}))
    }
}

impl ToSchema for TimeZone {}

/// One documented parameter.
fn param(name: &str, at: ParameterIn, required: bool, description: &str, value: Value) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(at)
        .required(if required { Required::True } else { Required::False })
        .description(Some(description))
        .schema(Some(schema(value)))
        .build()
}

fn page_params(out: &mut Vec<Parameter>) {
    out.push(param(
        "limit",
        ParameterIn::Query,
        false,
        &format!("Page size (default {PAGE_DEFAULT})."),
        json!({"type": "integer", "minimum": 1, "maximum": PAGE_MAX}),
    ));
    out.push(param(
        "cursor",
        ParameterIn::Query,
        false,
        "`next_cursor` of the previous page.",
        json!({"type": "string", "pattern": CURSOR_PATTERN}),
    ));
}

/// An account or person id in a path (the rule of event ids).
pub struct Ident;

impl utoipa::PartialSchema for Ident {
    fn schema() -> RefOr<Schema> {
        schema(ident_schema(
            "An id: 1-128 characters, not blank, no control characters.",
        ))
    }
}

impl ToSchema for Ident {}

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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// Only this plan.
    pub plan: Option<String>,
    /// Only accounts with reports on (`true`) or off (`false`).
    pub reports_enabled: Option<bool>,
    /// Page size.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl IntoParams for AccountsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut plan = text_schema("Only this plan.");
        plan["type"] = "string".into();
        let mut out = vec![
            param("plan", ParameterIn::Query, false, "Only this plan.", plan),
            param(
                "reports_enabled",
                ParameterIn::Query,
                false,
                "Only accounts with reports on (`true`) or off (`false`).",
                json!({"type": "boolean"}),
            ),
        ];
        page_params(&mut out);
        out
    }
}

/// People list filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleQuery {
    /// Only this role.
    pub role: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl IntoParams for PeopleQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut out = vec![param(
            "role",
            ParameterIn::Query,
            false,
            "Only this role.",
            json!({"type": "string", "enum": profile::ROLES}),
        )];
        page_params(&mut out);
        out
    }
}

/// Account deletion options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountQuery {
    /// `true`: erase the account's personal data.
    pub erase: Option<bool>,
}

impl IntoParams for DeleteAccountQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![param(
            "erase",
            ParameterIn::Query,
            false,
            "`true`: erase the account's personal data (profile, people, the texts of its events and alerts) and \
             keep a record; otherwise only the profile and its people's profiles are deleted.",
            json!({"type": "boolean"}),
        )]
    }
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
    let limit = limit.unwrap_or(PAGE_DEFAULT);
    if (1..=PAGE_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::field("limit", format!("must be between 1 and {PAGE_MAX}")))
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
    request_body = AccountInput,
    params(("id" = inline(Ident), Path, description = "Account id (as in events)")),
    responses(
        (status = 200, description = "Replaced", body = AccountView),
        (status = 201, description = "Created", body = AccountView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 408, description = "The body did not arrive within `api.body_read_timeout`", body = ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Not application/json, or a charset other than UTF-8", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    request_body = AccountInput,
    params(("id" = inline(Ident), Path, description = "Account id (as in events)")),
    responses(
        (status = 200, description = "Updated", body = AccountView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such account profile", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `api.body_read_timeout`", body = ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Not application/json, or a charset other than UTF-8", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    params(("id" = inline(Ident), Path, description = "Account id (as in events)")),
    responses(
        (status = 200, description = "The profile", body = AccountView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such account profile", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    params(("id" = inline(Ident), Path, description = "Account id (as in events)"), DeleteAccountQuery),
    responses(
        (status = 200, description = "Erased (`erase=true`): the erasure record; repeating the call returns it again", body = ErasureView),
        (status = 204, description = "Profile and its people's profiles deleted"),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "Nothing known about this account", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
        (status = 400, description = "Bad filter or cursor (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    if let Some(plan) = &q.plan {
        profile::validate_text("plan", plan).map_err(field_err)?;
    }
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
        (status = 400, description = "An invalid item (`accounts[3].plan`); nothing written", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 408, description = "The body did not arrive within `api.body_read_timeout`", body = ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`, or more than 1,000 accounts", body = ErrorBody),
        (status = 415, description = "Not application/json, or a charset other than UTF-8", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    request_body = PersonInput,
    params(
        ("id" = inline(Ident), Path, description = "Account id (as in events)"),
        ("person_id" = inline(Ident), Path, description = "Person id (the `user_id` of their events)")
    ),
    responses(
        (status = 200, description = "Replaced", body = PersonView),
        (status = 201, description = "Created", body = PersonView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 408, description = "The body did not arrive within `api.body_read_timeout`", body = ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Not application/json, or a charset other than UTF-8", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    request_body = PersonInput,
    params(
        ("id" = inline(Ident), Path, description = "Account id (as in events)"),
        ("person_id" = inline(Ident), Path, description = "Person id (the `user_id` of their events)")
    ),
    responses(
        (status = 200, description = "Updated", body = PersonView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 408, description = "The body did not arrive within `api.body_read_timeout`", body = ErrorBody),
        (status = 413, description = "Body over `api.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "Not application/json, or a charset other than UTF-8", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    params(
        ("id" = inline(Ident), Path, description = "Account id (as in events)"),
        ("person_id" = inline(Ident), Path, description = "Person id (the `user_id` of their events)")
    ),
    responses(
        (status = 200, description = "The profile", body = PersonView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such person", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    params(
        ("id" = inline(Ident), Path, description = "Account id (as in events)"),
        ("person_id" = inline(Ident), Path, description = "Person id (the `user_id` of their events)")
    ),
    responses(
        (status = 200, description = "Erased: the erasure record; repeating the call returns it again", body = ErasureView),
        (status = 400, description = "An invalid id, parameter or field (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "Nothing known about this person", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    params(("id" = inline(Ident), Path, description = "Account id (as in events)"), PeopleQuery),
    responses(
        (status = 200, description = "A page", body = PersonPage),
        (status = 400, description = "An invalid id, filter or cursor (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or invalid key", body = ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No such account: no profile and no people (an erased or never-created account)", body = ErrorBody),
        (status = 503, description = "Store unavailable; nothing changed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
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
    // Like its sibling sub-resources: an account with neither a profile nor
    // people (erased, or never created) is not found, whatever the filter.
    if account.is_none() && page.items.is_empty() {
        let any = PersonFilter {
            role: None,
            limit: 1,
            cursor: None,
        };
        let people = state
            .store
            .list_people(&tenant.id, &id, &any)
            .await
            .map_err(store_err)?;
        if people.items.is_empty() {
            return Err(ApiError::NotFound(format!("no account {id}: no profile and no people")));
        }
    }
    Ok(Json(PersonPage {
        items: page
            .items
            .into_iter()
            .map(|p| person_view(&state, &tenant, account.as_ref(), p))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

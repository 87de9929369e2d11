//! Who the customers are: account and person profiles, their validation
//! (one function per object, used by the HTTP API and by the `profile` job
//! that applies `account.updated` / `person.updated` events, so both paths
//! accept and reject exactly the same input), the language / time zone
//! resolution every later feature uses, and the redaction rules of erasure.
//!
//! ```toml
//! [profiles]
//! language = "en"                 # es | en: when neither person, account nor tenant says
//! time_zone = "UTC"               # IANA zone
//! [profiles.tenants.coachly]      # by tenant name or id
//! language = "es"
//! time_zone = "America/Bogota"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Supported languages.
pub const LANGUAGES: &[&str] = &["es", "en"];
/// Roles a person can have in an account.
pub const ROLES: &[&str] = &["executive", "admin", "member"];
/// Channels a person can be reached on (the nudge feature delivers on these).
pub const CHANNELS: &[&str] = &["email", "webhook", "in_app", "success_manager"];
/// Event type that upserts an account profile (`account_id` = the account).
pub const ACCOUNT_EVENT: &str = "account.updated";
/// Event type that upserts a person profile (`account_id` = the account,
/// `user_id` = the person).
pub const PERSON_EVENT: &str = "person.updated";
/// What erased text is replaced with.
pub const REDACTED: &str = "[erased]";

// The rules below are each written once and used twice: by the validator
// here and, through kairos-api, in the OpenAPI document — so the document
// states exactly what the server refuses. Patterns are plain regular
// expressions that mean the same to Rust's `regex`, ECMA-262 and Python's
// `re` (no look-around, no `\p{..}` classes).

/// Longest free-text profile field (names, plan, owner), in characters
/// (surrounding spaces included; they are trimmed when stored).
pub const MAX_TEXT_CHARS: usize = 200;
/// A free-text field: no control character, not only spaces — the rule of
/// identifiers ([`crate::event::IDENT_PATTERN`]).
pub const TEXT_PATTERN: &str = crate::event::IDENT_PATTERN;
/// Largest `attributes` object, serialized as JSON, in bytes.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// Longest email address, in characters (RFC 5321's 254).
pub const MAX_EMAIL_CHARS: usize = 254;
/// A pragmatic email address: a local part of dot-separated runs of
/// printable characters other than spaces and `@ " ( ) , : ; < > [ \ ]`,
/// `@`, and a domain of at least two dot-separated labels of 1-63 letters,
/// digits or `-` (not first or last). Deliverability is the mail system's
/// business; this catches typos and pasted garbage.
pub const EMAIL_PATTERN: &str = concat!(
    r#"^[^\s@."(),:;<>\[\\\]\u0000-\u001f\u007f-\u009f]+(\.[^\s@."(),:;<>\[\\\]\u0000-\u001f\u007f-\u009f]+)*"#,
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
);
/// Longest phone number, in characters.
pub const MAX_PHONE_CHARS: usize = 32;
/// A phone number: 6-20 digits, with `+ - ( ) .` and spaces anywhere.
pub const PHONE_PATTERN: &str = r"^[ +().-]*([0-9][ +().-]*){6,20}$";
/// A calendar date `YYYY-MM-DD` (also checked to exist, year 0001-9999).
pub const DATE_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// Every time zone name accepted (the IANA names chrono-tz knows, exactly
/// as spelled there).
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

fn matches(pattern: &'static str, cell: &'static std::sync::OnceLock<Option<regex::Regex>>, s: &str) -> bool {
    cell.get_or_init(|| regex::Regex::new(pattern).ok())
        .as_ref()
        .is_some_and(|re| re.is_match(s))
}

/// A field that failed validation: its path (relative to the object, e.g.
/// `consent.email.given_at`) and why. Messages never repeat the rejected
/// value, so error logs hold no personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Path of the field.
    pub field: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with its path under `prefix` (e.g. `data`, `accounts[3]`).
    pub fn under(self, prefix: &str) -> Self {
        let field = match (prefix.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.field),
        };
        Self { field, ..self }
    }
}

/// A person's consent to be contacted on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Whether contact on this channel is allowed.
    pub granted: bool,
    /// When the person gave (or withdrew) it, RFC 3339 UTC.
    pub given_at: String,
}

/// An account profile as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The account id events use.
    pub id: String,
    /// Name shown in reports.
    pub display_name: Option<String>,
    /// `es` or `en`; `None` inherits the tenant's.
    pub language: Option<String>,
    /// IANA zone; `None` inherits the tenant's.
    pub time_zone: Option<String>,
    /// The customer's plan.
    pub plan: Option<String>,
    /// Next renewal, `YYYY-MM-DD`.
    pub renewal_date: Option<String>,
    /// Who looks after the account on the tenant's side (success manager).
    pub owner: Option<String>,
    /// Anything else, as a JSON object.
    pub attributes: Map<String, Value>,
    /// Whether reports are sent for this account.
    pub reports_enabled: bool,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

impl Account {
    /// An empty profile (what a PUT or a first event starts from).
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            display_name: None,
            language: None,
            time_zone: None,
            plan: None,
            renewal_date: None,
            owner: None,
            attributes: Map::new(),
            reports_enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// A person of an account as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// The account.
    pub account_id: String,
    /// The person id (the `user_id` of their events).
    pub id: String,
    /// Full name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// `executive`, `admin` or `member`.
    pub role: String,
    /// `es` or `en`; `None` inherits the account's.
    pub language: Option<String>,
    /// IANA zone; `None` inherits the account's.
    pub time_zone: Option<String>,
    /// Preferred channels, most preferred first.
    pub channels: Vec<String>,
    /// Consent per channel.
    pub consent: BTreeMap<String, Consent>,
    /// Anything else, as a JSON object.
    pub attributes: Map<String, Value>,
    /// Epoch ms.
    pub created_at: i64,
    /// Epoch ms.
    pub updated_at: i64,
}

impl Person {
    /// An empty profile.
    pub fn new(account_id: &str, id: &str) -> Self {
        Self {
            account_id: account_id.to_owned(),
            id: id.to_owned(),
            name: None,
            email: None,
            phone: None,
            role: "member".into(),
            language: None,
            time_zone: None,
            channels: Vec::new(),
            consent: BTreeMap::new(),
            attributes: Map::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// Whether the person consented to be contacted on `channel`.
    pub fn consents_to(&self, channel: &str) -> bool {
        self.consent.get(channel).is_some_and(|c| c.granted)
    }
}

/// Absent (leave as is), `null` (clear), or a new value.
pub type Change<T> = Option<Option<T>>;

/// Validated changes to an account. [`AccountPatch::apply`] onto the stored
/// profile is a PATCH (and an event); onto [`Account::new`] a PUT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountPatch {
    /// `display_name`.
    pub display_name: Change<String>,
    /// `language`.
    pub language: Change<String>,
    /// `time_zone`.
    pub time_zone: Change<String>,
    /// `plan`.
    pub plan: Change<String>,
    /// `renewal_date`.
    pub renewal_date: Change<String>,
    /// `owner`.
    pub owner: Change<String>,
    /// `attributes` (replaces the whole object; `null` empties it).
    pub attributes: Change<Map<String, Value>>,
    /// `reports_enabled` (`null` = back to the default, true).
    pub reports_enabled: Change<bool>,
}

/// Validated changes to a person; see [`AccountPatch`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonPatch {
    /// `name`.
    pub name: Change<String>,
    /// `email`.
    pub email: Change<String>,
    /// `phone`.
    pub phone: Change<String>,
    /// `role` (`null` = back to `member`).
    pub role: Change<String>,
    /// `language`.
    pub language: Change<String>,
    /// `time_zone`.
    pub time_zone: Change<String>,
    /// `channels` (replaces the list).
    pub channels: Change<Vec<String>>,
    /// `consent`: per channel, a new consent or `null` to forget it; other
    /// channels are left as they are.
    pub consent: Option<BTreeMap<String, Option<Consent>>>,
    /// `attributes` (replaces the whole object).
    pub attributes: Change<Map<String, Value>>,
}

fn set<T>(slot: &mut Option<T>, change: Change<T>) {
    if let Some(v) = change {
        *slot = v;
    }
}

impl AccountPatch {
    /// Applies the changes to `account`.
    pub fn apply(self, account: &mut Account) {
        set(&mut account.display_name, self.display_name);
        set(&mut account.language, self.language);
        set(&mut account.time_zone, self.time_zone);
        set(&mut account.plan, self.plan);
        set(&mut account.renewal_date, self.renewal_date);
        set(&mut account.owner, self.owner);
        if let Some(a) = self.attributes {
            account.attributes = a.unwrap_or_default();
        }
        if let Some(r) = self.reports_enabled {
            account.reports_enabled = r.unwrap_or(true);
        }
    }
}

impl PersonPatch {
    /// Applies the changes to `person`.
    pub fn apply(self, person: &mut Person) {
        set(&mut person.name, self.name);
        set(&mut person.email, self.email);
        set(&mut person.phone, self.phone);
        if let Some(r) = self.role {
            person.role = r.unwrap_or_else(|| "member".into());
        }
        set(&mut person.language, self.language);
        set(&mut person.time_zone, self.time_zone);
        if let Some(c) = self.channels {
            person.channels = c.unwrap_or_default();
        }
        for (channel, consent) in self.consent.unwrap_or_default() {
            match consent {
                Some(c) => person.consent.insert(channel, c),
                None => person.consent.remove(&channel),
            };
        }
        if let Some(a) = self.attributes {
            person.attributes = a.unwrap_or_default();
        }
    }
}

/// Checks an account or person id: the rule of event ids
/// ([`crate::event::check_ident`]: 1-128 characters, not blank, no control
/// characters).
pub fn validate_id(field: &str, id: &str) -> Result<(), FieldError> {
    crate::event::check_ident(id).map_err(|reason| FieldError::new(field, reason))
}

/// Whether `s` is an email address by [`EMAIL_PATTERN`] and
/// [`MAX_EMAIL_CHARS`].
pub fn valid_email(s: &str) -> bool {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    s.chars().count() <= MAX_EMAIL_CHARS && matches(EMAIL_PATTERN, &RE, s)
}

/// Whether `s` is a phone number by [`PHONE_PATTERN`] and
/// [`MAX_PHONE_CHARS`].
pub fn valid_phone(s: &str) -> bool {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    s.chars().count() <= MAX_PHONE_CHARS && matches(PHONE_PATTERN, &RE, s)
}

/// Whether `tz` is an IANA zone name chrono-tz knows (`Europe/Madrid`, `UTC`).
pub fn valid_time_zone(tz: &str) -> bool {
    tz.parse::<chrono_tz::Tz>().is_ok()
}

/// Whether `lang` is a supported language.
pub fn valid_language(lang: &str) -> bool {
    LANGUAGES.contains(&lang)
}

type Obj<'a> = &'a Map<String, Value>;

fn check_known(obj: Obj<'_>, known: &[&str]) -> Result<(), FieldError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(FieldError::new(
            k.as_str(),
            format!("unknown field (expected one of {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Reads optional field `key` with `f`; `null` clears.
fn change<T>(
    obj: Obj<'_>,
    key: &str,
    f: impl FnOnce(&str, &Value) -> Result<T, FieldError>,
) -> Result<Change<T>, FieldError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => f(key, v).map(|t| Some(Some(t))),
    }
}

fn string(field: &str, v: &Value) -> Result<String, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, "must be a string or null"))?;
    if s.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty (send null to clear it)"));
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(field, "must not contain control characters"));
    }
    Ok(s.trim().to_owned())
}

/// Checks a free-text value (a list filter, say) by the rule of profile
/// text fields ([`MAX_TEXT_CHARS`], [`TEXT_PATTERN`]).
pub fn validate_text(field: &str, s: &str) -> Result<(), FieldError> {
    string(field, &Value::String(s.to_owned())).map(|_| ())
}

fn one_of(field: &str, v: &Value, allowed: &[&str], what: &str) -> Result<String, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, format!("must be a string ({})", allowed.join(", "))))?;
    if allowed.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "unknown {what} `{}` (expected one of {})",
                s.escape_debug(),
                allowed.join(", ")
            ),
        ))
    }
}

fn language(field: &str, v: &Value) -> Result<String, FieldError> {
    one_of(field, v, LANGUAGES, "language")
}

fn time_zone(field: &str, v: &Value) -> Result<String, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, "must be an IANA time zone name like Europe/Madrid"))?;
    match s.parse::<chrono_tz::Tz>() {
        Ok(tz) => Ok(tz.name().to_owned()),
        Err(_) => Err(FieldError::new(
            field,
            format!(
                "unknown time zone `{}` (expected an IANA name like Europe/Madrid or UTC)",
                s.escape_debug()
            ),
        )),
    }
}

fn email(field: &str, v: &Value) -> Result<String, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, "must be a string or null"))?;
    if valid_email(s) {
        Ok(s.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "is not a valid email address (like name@example.com)",
        ))
    }
}

fn phone(field: &str, v: &Value) -> Result<String, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, "must be a string or null"))?;
    if valid_phone(s) {
        Ok(s.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "is not a phone number (6-20 digits, with optional + - ( ) . and spaces)",
        ))
    }
}

fn date(field: &str, v: &Value) -> Result<String, FieldError> {
    let s = v
        .as_str()
        .ok_or_else(|| FieldError::new(field, "must be a date string YYYY-MM-DD"))?;
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let bad = || FieldError::new(field, format!("`{}` is not a date like 2027-01-31", s.escape_debug()));
    if !matches(DATE_PATTERN, &RE, s) {
        return Err(bad());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| chrono::Datelike::year(d) >= 1)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(bad)
}

fn boolean(field: &str, v: &Value) -> Result<bool, FieldError> {
    v.as_bool()
        .ok_or_else(|| FieldError::new(field, "must be true, false or null"))
}

fn attributes(field: &str, v: &Value) -> Result<Map<String, Value>, FieldError> {
    let obj = v
        .as_object()
        .ok_or_else(|| FieldError::new(field, "must be a JSON object or null"))?;
    if v.to_string().len() > MAX_ATTRIBUTES_BYTES {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_ATTRIBUTES_BYTES} bytes as JSON"),
        ));
    }
    Ok(obj.clone())
}

fn channels(field: &str, v: &Value) -> Result<Vec<String>, FieldError> {
    let items = v
        .as_array()
        .ok_or_else(|| FieldError::new(field, format!("must be a list of channels ({})", CHANNELS.join(", "))))?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let c = one_of(&format!("{field}[{i}]"), item, CHANNELS, "channel")?;
        if out.contains(&c) {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("`{c}` is listed twice"),
            ));
        }
        out.push(c);
    }
    Ok(out)
}

fn consent(field: &str, v: &Value) -> Result<BTreeMap<String, Option<Consent>>, FieldError> {
    let obj = v.as_object().ok_or_else(|| {
        FieldError::new(
            field,
            "must be an object {channel: {\"granted\": bool, \"given_at\": RFC 3339}}",
        )
    })?;
    let mut out = BTreeMap::new();
    for (channel, entry) in obj {
        let at = format!("{field}.{channel}");
        if !CHANNELS.contains(&channel.as_str()) {
            return Err(FieldError::new(
                at,
                format!("unknown channel (expected one of {})", CHANNELS.join(", ")),
            ));
        }
        if entry.is_null() {
            out.insert(channel.clone(), None);
            continue;
        }
        let e = entry
            .as_object()
            .ok_or_else(|| FieldError::new(&at, "must be {\"granted\": bool, \"given_at\": RFC 3339} or null"))?;
        check_known(e, &["granted", "given_at"]).map_err(|err| err.under(&at))?;
        let granted = match e.get("granted") {
            Some(g) => boolean(&format!("{at}.granted"), g)?,
            None => return Err(FieldError::new(format!("{at}.granted"), "missing field `granted`")),
        };
        let given_at = match e.get("given_at").and_then(Value::as_str) {
            Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| crate::time::to_rfc3339(t.timestamp_millis()))
                .map_err(|_| {
                    FieldError::new(
                        format!("{at}.given_at"),
                        format!(
                            "`{}` is not an RFC 3339 timestamp like 2026-11-21T09:30:00Z",
                            s.escape_debug()
                        ),
                    )
                })?,
            None => {
                return Err(FieldError::new(
                    format!("{at}.given_at"),
                    "missing: when the consent was given, RFC 3339",
                ))
            }
        };
        out.insert(channel.clone(), Some(Consent { granted, given_at }));
    }
    Ok(out)
}

/// Field names of an account body.
pub const ACCOUNT_FIELDS: &[&str] = &[
    "display_name",
    "language",
    "time_zone",
    "plan",
    "renewal_date",
    "owner",
    "attributes",
    "reports_enabled",
];

/// Field names of a person body.
pub const PERSON_FIELDS: &[&str] = &[
    "name",
    "email",
    "phone",
    "role",
    "language",
    "time_zone",
    "channels",
    "consent",
    "attributes",
];

/// Validates an account body (API request or `account.updated` data).
/// Every field is optional; `null` clears one; unknown fields are refused.
pub fn parse_account(obj: &Map<String, Value>) -> Result<AccountPatch, FieldError> {
    check_known(obj, ACCOUNT_FIELDS)?;
    Ok(AccountPatch {
        display_name: change(obj, "display_name", string)?,
        language: change(obj, "language", language)?,
        time_zone: change(obj, "time_zone", time_zone)?,
        plan: change(obj, "plan", string)?,
        renewal_date: change(obj, "renewal_date", date)?,
        owner: change(obj, "owner", string)?,
        attributes: change(obj, "attributes", attributes)?,
        reports_enabled: change(obj, "reports_enabled", boolean)?,
    })
}

/// Validates a person body (API request or `person.updated` data).
pub fn parse_person(obj: &Map<String, Value>) -> Result<PersonPatch, FieldError> {
    check_known(obj, PERSON_FIELDS)?;
    Ok(PersonPatch {
        name: change(obj, "name", string)?,
        email: change(obj, "email", email)?,
        phone: change(obj, "phone", phone)?,
        role: change(obj, "role", |f, v| one_of(f, v, ROLES, "role"))?,
        language: change(obj, "language", language)?,
        time_zone: change(obj, "time_zone", time_zone)?,
        channels: change(obj, "channels", channels)?,
        consent: change(obj, "consent", consent)?.map(Option::unwrap_or_default),
        attributes: change(obj, "attributes", attributes)?,
    })
}

/// A validated profile event, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileUpdate {
    /// `account.updated`.
    Account {
        /// The account.
        account_id: String,
        /// Its changes.
        patch: AccountPatch,
    },
    /// `person.updated`.
    Person {
        /// The account.
        account_id: String,
        /// The person (the event's `user_id`).
        person_id: String,
        /// Their changes.
        patch: PersonPatch,
    },
}

/// Validates a profile event (`account.updated`, `person.updated`); `None`
/// for any other type. Field paths are relative to the event (`data.email`,
/// `user_id`). Used at ingest (a 400 before anything is stored) and by the
/// `profile` job.
pub fn parse_profile_event(event: &crate::Event) -> Option<Result<ProfileUpdate, FieldError>> {
    let parsed = match event.event_type.as_str() {
        ACCOUNT_EVENT => validate_id("account_id", &event.account_id).and_then(|()| {
            Ok(ProfileUpdate::Account {
                account_id: event.account_id.clone(),
                patch: parse_account(&event.data).map_err(|e| e.under("data"))?,
            })
        }),
        PERSON_EVENT => (|| {
            validate_id("account_id", &event.account_id)?;
            let person_id = event
                .user_id
                .as_deref()
                .ok_or_else(|| FieldError::new("user_id", "a person.updated event names the person in `user_id`"))?;
            validate_id("user_id", person_id)?;
            Ok(ProfileUpdate::Person {
                account_id: event.account_id.clone(),
                person_id: person_id.to_owned(),
                patch: parse_person(&event.data).map_err(|e| e.under("data"))?,
            })
        })(),
        _ => return None,
    };
    Some(parsed)
}

/// `[profiles]`: the defaults profiles fall back to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    /// Language when neither the person, the account nor the tenant has one.
    pub language: String,
    /// Time zone when neither the person, the account nor the tenant has one.
    pub time_zone: String,
    /// Per-tenant defaults, by tenant name or id.
    pub tenants: BTreeMap<String, TenantDefaults>,
}

/// A tenant's profile defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantDefaults {
    /// `es` or `en`.
    pub language: Option<String>,
    /// IANA zone.
    pub time_zone: Option<String>,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            language: "en".into(),
            time_zone: "UTC".into(),
            tenants: BTreeMap::new(),
        }
    }
}

impl ProfilesConfig {
    /// Checks languages and zones; the error names the key under `profiles.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let lang = |key: String, l: &str| {
            if valid_language(l) {
                Ok(())
            } else {
                Err((key, format!("unknown language `{l}` (use {})", LANGUAGES.join(" or "))))
            }
        };
        let tz = |key: String, z: &str| {
            if valid_time_zone(z) {
                Ok(())
            } else {
                Err((
                    key,
                    format!("unknown time zone `{z}` (an IANA name like Europe/Madrid)"),
                ))
            }
        };
        lang("language".into(), &self.language)?;
        tz("time_zone".into(), &self.time_zone)?;
        for (t, d) in &self.tenants {
            if let Some(l) = &d.language {
                lang(format!("tenants.{t}.language"), l)?;
            }
            if let Some(z) = &d.time_zone {
                tz(format!("tenants.{t}.time_zone"), z)?;
            }
        }
        Ok(())
    }

    /// A tenant's defaults (by name, then id).
    pub fn tenant(&self, tenant: &crate::store::Tenant) -> Option<&TenantDefaults> {
        self.tenants.get(&tenant.name).or_else(|| self.tenants.get(&tenant.id))
    }
}

/// The one fallback rule: the person's value, else the account's, else the
/// tenant's, else the config's.
pub fn resolve<'a>(
    person: Option<&'a str>,
    account: Option<&'a str>,
    tenant: Option<&'a str>,
    config: &'a str,
) -> &'a str {
    person.or(account).or(tenant).unwrap_or(config)
}

/// The language to write to `person` (or, without one, to the account) in.
pub fn resolve_language<'a>(
    person: Option<&'a Person>,
    account: Option<&'a Account>,
    tenant: Option<&'a TenantDefaults>,
    config: &'a ProfilesConfig,
) -> &'a str {
    resolve(
        person.and_then(|p| p.language.as_deref()),
        account.and_then(|a| a.language.as_deref()),
        tenant.and_then(|t| t.language.as_deref()),
        &config.language,
    )
}

/// The time zone `person` (or the account) lives in, as a chrono-tz zone.
/// Stored zones were validated, so the UTC fallback only covers a zone
/// removed from the tz database since.
pub fn resolve_time_zone(
    person: Option<&Person>,
    account: Option<&Account>,
    tenant: Option<&TenantDefaults>,
    config: &ProfilesConfig,
) -> chrono_tz::Tz {
    resolve(
        person.and_then(|p| p.time_zone.as_deref()),
        account.and_then(|a| a.time_zone.as_deref()),
        tenant.and_then(|t| t.time_zone.as_deref()),
        &config.time_zone,
    )
    .parse()
    .unwrap_or(chrono_tz::UTC)
}

/// Erasure's rule for event data — what "a person's texts" are. For profile
/// events (`account.updated`, `person.updated`) the whole `data` is
/// personal and is emptied; for any other event, the string values of the
/// free-text fields (`text_fields`: the fields the sentiment job reads,
/// `text`, `body`, `comment`, ...) are replaced by [`REDACTED`]. Numbers,
/// booleans, ids and timestamps stay, so aggregates can be recomputed.
/// Returns whether anything changed.
pub fn redact_event_data(event_type: &str, data: &mut Map<String, Value>, text_fields: &[String]) -> bool {
    if event_type == ACCOUNT_EVENT || event_type == PERSON_EVENT {
        let changed = !data.is_empty();
        data.clear();
        return changed;
    }
    let mut changed = false;
    for field in text_fields {
        if let Some(v) = data.get_mut(field) {
            if v.is_string() && v.as_str() != Some(REDACTED) {
                *v = Value::String(REDACTED.into());
                changed = true;
            }
        }
    }
    changed
}

/// Erasure's rule for an alert's details: the text excerpt goes.
pub fn redact_alert_payload(payload: &mut Value) -> bool {
    match payload.get_mut("text") {
        Some(v) if v.is_string() && v.as_str() != Some(REDACTED) => {
            *v = Value::String(REDACTED.into());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn person_err(v: Value) -> FieldError {
        parse_person(&obj(v)).unwrap_err()
    }

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "first.last+tag@example.com",
            "x@sub.example.org",
            "ñandú@correo.es",
        ] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.co",
            "a@b",
            "a b@c.co",
            "a@@b.co",
            "a@b..co",
            "a@-b.co",
            ".a@b.co",
            "a..b@c.co",
            "a@b.co\n",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }

    #[test]
    fn phones_dates_and_text_follow_their_stated_rules() {
        for ok in ["+57 300 123 4567", "(555) 010-9999", "123456", " 300.123.456 "] {
            assert!(valid_phone(ok), "{ok:?}");
        }
        for bad in [
            "12345",
            "call me",
            "+1 555 0100 ext 5",
            &"1".repeat(21),
            &format!("{}123456", " ".repeat(30)),
        ] {
            assert!(!valid_phone(bad), "{bad:?}");
        }
        let date = |s: &str| parse_account(&obj(json!({ "renewal_date": s }))).map(|p| p.renewal_date);
        assert_eq!(date("2027-03-31").unwrap(), Some(Some("2027-03-31".into())));
        for bad in [
            "2027-3-31",
            "2027-02-30",
            "0000-01-01",
            "+2027-03-31",
            "2027-03-31T00:00:00Z",
        ] {
            assert_eq!(date(bad).unwrap_err().field, "renewal_date", "{bad}");
        }
        // Length counts what was sent (the schema's maxLength), spaces too.
        let name = |s: String| parse_person(&obj(json!({ "name": s }))).map(|p| p.name);
        assert_eq!(
            name(format!(" {} ", "a".repeat(198))).unwrap(),
            Some(Some("a".repeat(198)))
        );
        assert!(name(format!(" {} ", "a".repeat(199))).is_err());
        // No trimming of addresses: what is stored is what the schema allows.
        assert!(!valid_email(" a@b.co") && !valid_email("a@b.co "));
        assert!(valid_email(&format!("{}@b.co", "a".repeat(MAX_EMAIL_CHARS - 5))));
        assert!(!valid_email(&format!("{}@b.co", "a".repeat(MAX_EMAIL_CHARS - 4))));
        assert!(time_zone_names().any(|z| z == "America/Bogota"));
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(person_err(json!({"email": "bob@"})).field, "email");
        assert_eq!(person_err(json!({"email": 3})).field, "email");
        assert_eq!(person_err(json!({"time_zone": "Mars/Olympus"})).field, "time_zone");
        assert_eq!(person_err(json!({"language": "fr"})).field, "language");
        assert_eq!(person_err(json!({"role": "boss"})).field, "role");
        assert_eq!(person_err(json!({"phone": "call me"})).field, "phone");
        assert_eq!(person_err(json!({"channels": ["email", "fax"]})).field, "channels[1]");
        assert_eq!(person_err(json!({"channels": ["email", "email"]})).field, "channels[1]");
        assert_eq!(
            person_err(json!({"consent": {"email": {"granted": true, "given_at": "yesterday"}}})).field,
            "consent.email.given_at"
        );
        assert_eq!(
            person_err(json!({"consent": {"email": {"granted": true}}})).field,
            "consent.email.given_at"
        );
        assert_eq!(
            person_err(json!({"consent": {"pager": {"granted": true, "given_at": "2026-01-01T00:00:00Z"}}})).field,
            "consent.pager"
        );
        assert_eq!(person_err(json!({"name": ""})).field, "name");
        assert_eq!(person_err(json!({"nickname": "x"})).field, "nickname");
        assert_eq!(person_err(json!({"attributes": [1]})).field, "attributes");
        let e = parse_account(&obj(json!({"renewal_date": "2027-02-30"}))).unwrap_err();
        assert_eq!(e.field, "renewal_date");
        let e = parse_account(&obj(json!({"reports_enabled": "yes"}))).unwrap_err();
        assert_eq!(e.field, "reports_enabled");
        // Messages about personal fields do not echo the value.
        assert!(!person_err(json!({"email": "secret-bob@"}))
            .reason
            .contains("secret-bob"));
    }

    #[test]
    fn patches_apply_and_clear() {
        let mut p = Person::new("a", "p");
        parse_person(&obj(json!({
            "name": " Ana ", "email": "ana@x.es", "role": "executive", "time_zone": "Europe/Madrid",
            "channels": ["email", "in_app"],
            "consent": {"email": {"granted": true, "given_at": "2026-11-01T10:00:00+01:00"}},
        })))
        .unwrap()
        .apply(&mut p);
        assert_eq!(p.name.as_deref(), Some("Ana"));
        assert_eq!(p.role, "executive");
        assert!(p.consents_to("email") && !p.consents_to("in_app"));
        assert_eq!(p.consent["email"].given_at, "2026-11-01T09:00:00.000Z");
        parse_person(&obj(json!({"name": null, "role": null, "consent": {"email": null}})))
            .unwrap()
            .apply(&mut p);
        assert_eq!(p.name, None);
        assert_eq!(p.role, "member");
        assert!(p.consent.is_empty());
        assert_eq!(p.email.as_deref(), Some("ana@x.es"), "absent fields stay");
    }

    #[test]
    fn resolution_falls_back_person_account_tenant_config() {
        let config = ProfilesConfig::default();
        let tenant = TenantDefaults {
            language: Some("es".into()),
            time_zone: Some("America/Bogota".into()),
        };
        let mut account = Account::new("a");
        let mut person = Person::new("a", "p");
        assert_eq!(resolve_language(None, None, None, &config), "en");
        assert_eq!(resolve_time_zone(None, None, None, &config), chrono_tz::UTC);
        assert_eq!(
            resolve_language(Some(&person), Some(&account), Some(&tenant), &config),
            "es"
        );
        assert_eq!(
            resolve_time_zone(Some(&person), Some(&account), Some(&tenant), &config),
            chrono_tz::America::Bogota
        );
        account.language = Some("en".into());
        account.time_zone = Some("Europe/Madrid".into());
        assert_eq!(
            resolve_language(Some(&person), Some(&account), Some(&tenant), &config),
            "en"
        );
        assert_eq!(
            resolve_time_zone(Some(&person), Some(&account), None, &config),
            chrono_tz::Europe::Madrid
        );
        person.language = Some("es".into());
        person.time_zone = Some("Asia/Tokyo".into());
        assert_eq!(resolve_language(Some(&person), Some(&account), None, &config), "es");
        assert_eq!(
            resolve_time_zone(Some(&person), Some(&account), Some(&tenant), &config),
            chrono_tz::Asia::Tokyo
        );
        assert_eq!(resolve(None, None, None, "x"), "x");
    }

    #[test]
    fn profile_events() {
        let mut e = crate::Event {
            id: "e".into(),
            event_type: PERSON_EVENT.into(),
            account_id: "a".into(),
            user_id: None,
            occurred_at_ms: 0,
            data: obj(json!({"email": "x@y.io"})),
        };
        assert_eq!(parse_profile_event(&e).unwrap().unwrap_err().field, "user_id");
        e.user_id = Some("p".into());
        e.data = obj(json!({"email": "nope"}));
        assert_eq!(parse_profile_event(&e).unwrap().unwrap_err().field, "data.email");
        e.event_type = "comment.created".into();
        assert!(parse_profile_event(&e).is_none());
    }

    #[test]
    fn redaction_rules() {
        let fields = vec!["text".to_owned(), "body".to_owned()];
        let mut d = obj(json!({"text": "my card 1234 fails", "amount": 5, "plan": "pro"}));
        assert!(redact_event_data("comment.created", &mut d, &fields));
        assert_eq!(d["text"], REDACTED);
        assert_eq!(d["amount"], 5);
        assert!(!redact_event_data("comment.created", &mut d, &fields), "idempotent");
        let mut d = obj(json!({"email": "a@b.co"}));
        assert!(redact_event_data(PERSON_EVENT, &mut d, &fields));
        assert!(d.is_empty());
        let mut a = json!({"text": "help", "label": "negative"});
        assert!(redact_alert_payload(&mut a));
        assert!(!redact_alert_payload(&mut a));
    }

    #[test]
    fn config_defaults_validate() {
        let mut c = ProfilesConfig::default();
        assert!(c.validate().is_ok());
        c.tenants.insert(
            "acme".into(),
            TenantDefaults {
                language: None,
                time_zone: Some("Nowhere/City".into()),
            },
        );
        assert_eq!(c.validate().unwrap_err().0, "tenants.acme.time_zone");
    }
}

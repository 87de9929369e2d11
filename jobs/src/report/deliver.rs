//! Delivering a stored report: to whom (the account's executives from the
//! people profiles, each in their language; the tenant's team for the
//! portfolio; the tenant's signed webhook), and the once-only protocol.
//!
//! **Guarantee.** Per (report, channel, recipient) a row is committed in
//! `report_deliveries` (state `sending`, a lease, a deterministic
//! Message-ID) *before* anything is sent, and the outcome is recorded
//! after. An attempt that finds the row:
//! - `sent` or `rejected` does nothing;
//! - `failed` (the send is known not to have happened: the server refused
//!   with a transient error) claims it again and re-sends — retried with
//!   the job's backoff;
//! - `sending` within its lease leaves it to the attempt holding it (and
//!   retries later);
//! - `sending` past its lease: the attempt that claimed it died between
//!   claim and record, so the message may or may not have left. It is
//!   **not** re-sent: the row becomes `unknown` and the report records it.
//!
//! So an email is sent **at most once** per report version and recipient,
//! whatever crashes, retries, re-fired ticks or replicas do; the price is
//! that a crash in that window can lose one email, which is visible on the
//! report (`delivery_state = unknown`) and re-sent only by an explicit
//! `kairos reports run --rerun` (a new version). The Message-ID is derived
//! from the report and the recipient, so even a server-side retry of the
//! same message is recognisable as one by mail clients. Webhooks carry the
//! same id in `X-Kairos-Delivery`.
//!
//! Proved with real processes in `tests/it/reports.rs`
//! (`…sigkilled_mid_send_with_three_scheduler_replicas_never_sends_twice`:
//! the worker is SIGKILLed while the SMTP server, holding the message,
//! withholds its answer). The mailer tells a refusal before the message
//! left (`failed`, re-sent) from a timeout or dropped connection after the
//! message's final dot, when the relay may have taken it: that one is
//! recorded `unknown` and not re-sent either.

use sha2::{Digest, Sha256};

use kairos_core::profile::{self, Account, ProfilesConfig};
use kairos_core::store::Tenant;
use kairos_core::Store;

use super::config::Channel;
use super::facts::Scope;

/// One recipient of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// How.
    pub channel: Channel,
    /// Email address, or `tenant` for the webhook.
    pub address: String,
    /// Name, for the email's To header.
    pub name: Option<String>,
    /// `es` or `en`.
    pub language: String,
}

/// The Message-ID (and webhook delivery id) of a report to a recipient:
/// the same on every attempt.
pub fn message_id(report_id: &str, channel: Channel, address: &str) -> String {
    let h = Sha256::digest(format!("{}|{}", channel.as_str(), address.to_ascii_lowercase()).as_bytes());
    format!("<report.{report_id}.{}@kairos.invalid>", &hex::encode(h)[..16])
}

/// Who a report is for.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    /// The tenant.
    pub tenant: &'a Tenant,
    /// The account (account reports).
    pub account: Option<&'a Account>,
    /// Account or portfolio.
    pub scope: Scope,
    /// The tenant's team (portfolio emails).
    pub team: &'a [String],
    /// The tenant's channels.
    pub channels: &'a [Channel],
    /// The report's own language (webhooks).
    pub language: &'a str,
}

/// Who receives a report. Executives without an email, or who withdrew
/// their email consent, are left out.
pub async fn recipients(
    store: &Store,
    profiles: &ProfilesConfig,
    audience: Audience<'_>,
) -> Result<Vec<Recipient>, kairos_core::StoreError> {
    let Audience {
        tenant,
        account,
        scope,
        team,
        channels,
        language: report_language,
    } = audience;
    let defaults = profiles.tenant(tenant);
    let mut out = Vec::new();
    for ch in channels {
        match (ch, scope, account) {
            (Channel::Webhook, _, _) => out.push(Recipient {
                channel: Channel::Webhook,
                address: "tenant".into(),
                name: None,
                language: report_language.to_owned(),
            }),
            (Channel::Email, Scope::Tenant, _) => {
                for e in team {
                    out.push(Recipient {
                        channel: Channel::Email,
                        address: e.clone(),
                        name: None,
                        language: profile::resolve_language(None, None, defaults, profiles).to_owned(),
                    });
                }
            }
            (Channel::Email, Scope::Account, Some(a)) => {
                for p in store.all_people(&tenant.id, &a.id, Some("executive")).await? {
                    let Some(email) = p.email.clone().filter(|e| !e.is_empty()) else {
                        continue;
                    };
                    if p.consent.get("email").is_some_and(|c| !c.granted) {
                        continue;
                    }
                    out.push(Recipient {
                        channel: Channel::Email,
                        address: email,
                        name: p.name.clone(),
                        language: profile::resolve_language(Some(&p), Some(a), defaults, profiles).to_owned(),
                    });
                }
            }
            (Channel::Email, Scope::Account, None) => {}
        }
    }
    Ok(out)
}

/// The report's overall state from its recipients' states.
pub fn overall(states: &[&str]) -> &'static str {
    if states.is_empty() {
        return "none";
    }
    let all = |s: &str| states.iter().all(|x| *x == s);
    if all("sent") {
        "delivered"
    } else if states.iter().any(|s| *s == "sending" || *s == "failed") {
        "pending"
    } else if states.contains(&"unknown") {
        "unknown"
    } else if states.contains(&"sent") {
        "partial"
    } else {
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_per_report_and_recipient() {
        let a = message_id("r1", Channel::Email, "Ana@X.example");
        assert_eq!(a, message_id("r1", Channel::Email, "ana@x.example"));
        assert_ne!(a, message_id("r2", Channel::Email, "ana@x.example"));
        assert!(a.starts_with("<report.r1.") && a.ends_with("@kairos.invalid>"));
    }

    #[test]
    fn overall_state() {
        assert_eq!(overall(&[]), "none");
        assert_eq!(overall(&["sent", "sent"]), "delivered");
        assert_eq!(overall(&["sent", "failed"]), "pending");
        assert_eq!(overall(&["sent", "unknown"]), "unknown");
        assert_eq!(overall(&["sent", "rejected"]), "partial");
        assert_eq!(overall(&["rejected"]), "failed");
    }
}

//! Open and click tracking for email nudges — off by default, for privacy:
//! it needs `[nudges.tracking]` (where the API is reached, and the
//! variable holding the signing key), the tenant listed in its `tenants`,
//! and `track = true` on the rule. Then the email gets an HTML part with a
//! 1x1 pixel (`GET /t/o/{token}`) and the rule's `link` goes through
//! `GET /t/c/{token}` (a 302 to the link).
//!
//! A token is `hex(claims).hex(HMAC-SHA256(key, claims))`: it names the
//! tenant, account, nudge, what it tracks and (for a click) the target, and
//! cannot be forged or guessed without the key, so the two routes need no
//! tenant key and accept nothing else. Claims are JSON; the target lives in
//! the token so a tracked link keeps working whatever the config says later.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// `[nudges.tracking]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    /// Base URL the recipients' mail clients reach the API at
    /// (`https://kairos.example.com`); the pixel and links are under it.
    pub base_url: String,
    /// Environment variable holding the signing key (at least 32 bytes);
    /// every API and worker process needs the same one.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// Tenants (name or id) that turned tracking on. Others: never.
    #[serde(default)]
    pub tenants: Vec<String>,
}

fn default_secret_env() -> String {
    "KAIROS_NUDGE_TRACKING_KEY".into()
}

impl TrackingConfig {
    /// Checks what serde cannot; the key is under `nudges.tracking.`.
    pub fn validate(&self) -> Result<(), kairos_core::config::KeyError> {
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(("base_url".into(), format!("`{}` is not an http(s) URL", self.base_url))),
        }
        if self.secret_env.trim().is_empty() {
            return Err(("secret_env".into(), "must name an environment variable".into()));
        }
        Ok(())
    }

    /// Whether `tenant` turned tracking on.
    pub fn covers(&self, tenant: &kairos_core::store::Tenant) -> bool {
        self.tenants.iter().any(|t| *t == tenant.name || *t == tenant.id)
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant id.
    #[serde(rename = "t")]
    pub tenant_id: String,
    /// Account id (the outcome event's account).
    #[serde(rename = "a")]
    pub account_id: String,
    /// Nudge id.
    #[serde(rename = "n")]
    pub nudge_id: String,
    /// `o` (open pixel) or `c` (click).
    #[serde(rename = "k")]
    pub kind: String,
    /// Where a click goes.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Why tracking could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("nudges.tracking: the variable {var} (the tracking key) is unset or shorter than 32 bytes")]
pub struct TrackingSetupError {
    /// The variable.
    pub var: String,
}

/// Signs and checks tokens with the deployment's key.
#[derive(Clone)]
pub struct Tracker {
    base_url: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for Tracker {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// The tracker for `config`, its key read from the environment.
    pub fn from_config(config: &TrackingConfig) -> Result<Self, TrackingSetupError> {
        Self::from_config_with(config, |v| std::env::var(v).ok())
    }

    /// As [`Tracker::from_config`], with the environment given.
    pub fn from_config_with(
        config: &TrackingConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TrackingSetupError> {
        match env(&config.secret_env) {
            Some(k) if k.len() >= 32 => Ok(Self {
                base_url: config.base_url.trim_end_matches('/').to_owned(),
                key: k.into_bytes(),
            }),
            _ => Err(TrackingSetupError {
                var: config.secret_env.clone(),
            }),
        }
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        m.update(data);
        m
    }

    /// A token for `claims`.
    pub fn token(&self, claims: &Claims) -> String {
        let data = serde_json::to_vec(claims).unwrap_or_default();
        let sig = self.mac(&data).finalize().into_bytes();
        format!("{}.{}", hex::encode(&data), hex::encode(sig))
    }

    /// The claims of a token this key signed; `None` for anything else
    /// (the signature is compared in constant time).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (data, sig) = token.split_once('.')?;
        let data = hex::decode(data).ok()?;
        let sig = hex::decode(sig).ok()?;
        self.mac(&data).verify_slice(&sig).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// The pixel's URL.
    pub fn open_url(&self, tenant_id: &str, account_id: &str, nudge_id: &str) -> String {
        let c = Claims {
            tenant_id: tenant_id.into(),
            account_id: account_id.into(),
            nudge_id: nudge_id.into(),
            kind: "o".into(),
            target: None,
        };
        format!("{}/t/o/{}", self.base_url, self.token(&c))
    }

    /// The tracked URL of `target`.
    pub fn click_url(&self, tenant_id: &str, account_id: &str, nudge_id: &str, target: &str) -> String {
        let c = Claims {
            tenant_id: tenant_id.into(),
            account_id: account_id.into(),
            nudge_id: nudge_id.into(),
            kind: "c".into(),
            target: Some(target.into()),
        };
        format!("{}/t/c/{}", self.base_url, self.token(&c))
    }
}

/// A transparent 1x1 GIF (the smallest common one, 43 bytes).
pub const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(key: &str) -> Tracker {
        let c = TrackingConfig {
            base_url: "https://k.example/".into(),
            secret_env: "K".into(),
            tenants: vec![],
        };
        Tracker::from_config_with(&c, |_| Some(key.to_owned())).unwrap()
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_untouched() {
        let t = tracker("0123456789abcdef0123456789abcdef");
        let url = t.click_url("t1", "acme", "n1", "https://app.example/billing");
        let token = url.strip_prefix("https://k.example/t/c/").unwrap();
        let c = t.verify(token).unwrap();
        assert_eq!(c.nudge_id, "n1");
        assert_eq!(c.target.as_deref(), Some("https://app.example/billing"));
        assert!(tracker("another key, 32 bytes long......").verify(token).is_none());
        // One changed character of the claims or the signature: refused.
        let mut forged = token.to_owned().into_bytes();
        forged[3] = if forged[3] == b'0' { b'1' } else { b'0' };
        assert!(t.verify(std::str::from_utf8(&forged).unwrap()).is_none());
        assert!(t.verify("nonsense").is_none());
        assert!(t.verify("00.00").is_none());
    }

    #[test]
    fn a_short_or_missing_key_is_refused() {
        let c = TrackingConfig {
            base_url: "https://k.example".into(),
            secret_env: "K".into(),
            tenants: vec![],
        };
        assert!(Tracker::from_config_with(&c, |_| None).is_err());
        assert!(Tracker::from_config_with(&c, |_| Some("short".into())).is_err());
    }
}

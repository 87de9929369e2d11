//! Dashboard users: roles, argon2id password hashes, generated passwords
//! and the failed-login limiter. `kairos users create` and the demo create
//! users through [`create_user`], the one place a password is hashed.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use kairos_core::store::DashboardUser;
use kairos_core::{Store, StoreError};
use rand::RngCore;

/// What a user may do. Ordered: each role can do what the ones before can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads every page of its scope; no actions.
    Viewer,
    /// Also acts on jobs, queues and schedules.
    Operator,
    /// Also activates models.
    Admin,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role `{s}` (expected viewer, operator or admin)")),
        }
    }
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is empty, too long or has odd characters.
    #[error("invalid user name `{0}`: use 1-64 letters, digits, `.`, `-`, `_` or `@`")]
    InvalidName(String),
    /// The password is too short.
    #[error("the password must have at least 12 characters")]
    WeakPassword,
    /// Hashing failed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes)
/// and a random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash of a random password, so a login for an unknown user costs what
/// a real one costs (no timing oracle for which names exist).
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// A random 20-character password (about 119 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// Creates a dashboard user with a hashed password.
pub async fn create_user(
    store: &Store,
    name: &str,
    password: &str,
    role: Role,
    tenant_id: Option<&str>,
) -> Result<DashboardUser, UserError> {
    let valid_name =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if !valid_name {
        return Err(UserError::InvalidName(name.into()));
    }
    if password.chars().count() < 12 {
        return Err(UserError::WeakPassword);
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| UserError::Hash(e.to_string()))??;
    Ok(store
        .create_dashboard_user(name, &hash, role.as_str(), tenant_id)
        .await?)
}

/// Failed logins per key (`ip:ADDR`, `user:NAME`) within a sliding window;
/// in memory, per API process (as the ingest rate limit is).
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// At most `max` failures per key within `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether every key may try again now.
    pub fn allowed(&self, keys: &[String]) -> bool {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Drop stale keys now and then so the map stays bounded by the
        // number of recent failures.
        if map.len() > 10_000 {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < self.window));
        }
        keys.iter().all(|k| {
            map.get_mut(k).is_none_or(|q| {
                while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    q.pop_front();
                }
                q.len() < self.max as usize
            })
        })
    }

    /// Records a failed attempt under every key.
    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            map.entry(k.clone()).or_default().push_back(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert_ne!(h, hash_password("correct horse battery").unwrap());
    }

    #[test]
    fn limiter_blocks_after_max_failures_per_key() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let keys = ["ip:1".to_string(), "user:a".to_string()];
        assert!(l.allowed(&keys));
        l.failed(&keys);
        l.failed(&keys);
        assert!(!l.allowed(&keys));
        assert!(!l.allowed(&["user:a".to_string()]));
        assert!(l.allowed(&["ip:2".to_string(), "user:b".to_string()]));
    }
}

//! Sentiment head versions in the shared [`crate::model_registry`]: the
//! artifact is a `SentimentHead` JSON, the schema its encoder fingerprint
//! (a head only works on the encoder it was trained on).

use kairos_core::Store;
use kairos_models::text::SentimentHead;

pub use crate::model_registry::ModelInfo;
use crate::model_registry::{self as reg, NewModel, RegistryError};

/// The registry kind of sentiment heads.
pub const KIND: &str = "sentiment";

/// Why a head could not be registered or read.
#[derive(Debug, thiserror::Error)]
pub enum HeadStoreError {
    /// Registry (store) failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The artifact is not a valid head.
    #[error("sentiment head: {0}")]
    Head(#[from] kairos_models::text::TextError),
}

/// Stores a trained head as a new version (inactive).
pub async fn register(
    store: &Store,
    head: &SentimentHead,
    scope: Option<&str>,
    source: &str,
) -> Result<(), HeadStoreError> {
    let new = NewModel {
        version: head.version(),
        kind: KIND,
        scope,
        artifact: head.to_json()?,
        metrics: serde_json::to_string(head.metrics()).map_err(RegistryError::Json)?,
        schema: serde_json::to_string(head.encoder()).map_err(RegistryError::Json)?,
        source,
    };
    Ok(reg::register(store, &new).await?)
}

/// Every head version, newest first.
pub async fn list(store: &Store) -> Result<Vec<ModelInfo>, HeadStoreError> {
    Ok(reg::list(store, KIND).await?)
}

/// Loads a version's head.
pub async fn load(store: &Store, version: &str) -> Result<SentimentHead, HeadStoreError> {
    let artifact = reg::artifact(store, KIND, version).await?;
    Ok(SentimentHead::from_json(&artifact)?)
}

/// Makes `version` the active head for `scope` (tenant id, or `None` = global).
pub async fn activate(store: &Store, version: &str, scope: Option<&str>) -> Result<(), HeadStoreError> {
    Ok(reg::activate(store, KIND, version, scope).await?)
}

/// The version a tenant's jobs use: its own active head, else the global one.
pub async fn active_version(store: &Store, tenant_id: &str) -> Result<Option<String>, HeadStoreError> {
    Ok(reg::active_version(store, KIND, tenant_id).await?)
}

/// Registers and activates (globally) the head shipped with the encoder
/// when no sentiment head is active globally yet, so a fresh install scores
/// text without a training step. Returns the version now active globally.
/// The configured head is registered in any case: an upgrade that ships new
/// maps for the same encoder leaves the head an admin activated in place, and
/// `kairos models activate` switches to the new one when they choose.
/// Idempotent and safe to race: a second process finds the version
/// registered already.
///
/// Also when the active global head was trained on another encoder: an
/// upgrade that ships a new encoder (`[sentiment] encoder`) with its head
/// would otherwise leave every job failing on "does not fit this encoder".
/// The old head stays registered (re-activate it with the old encoder).
/// Tenants' own heads are not touched: until retrained (`kairos train
/// sentiment`), their texts are scored by the global head
/// ([`crate::sentiment::Scorer::head`]), each score recording that version.
pub async fn ensure_default(store: &Store, head: &SentimentHead, source: &str) -> Result<String, HeadStoreError> {
    let known = list(store).await?.iter().any(|m| m.version == head.version());
    if !known {
        if let Err(e) = register(store, head, None, source).await {
            // Lost a race with another process registering the same version.
            if !list(store).await?.iter().any(|m| m.version == head.version()) {
                return Err(e);
            }
        }
    }
    if let Some(v) = active_version(store, "").await? {
        let active = load(store, &v).await?;
        if active.check_encoder(head.encoder()).is_ok() {
            if v != head.version() {
                tracing::info!(
                    active = %v,
                    configured = %head.version(),
                    "the configured sentiment head is registered, not activated (another head of the same encoder \
                     is active): `kairos models activate {}` switches to it",
                    head.version()
                );
            }
            return Ok(v);
        }
        tracing::warn!(
            active = %v,
            default = %head.version(),
            "the active global sentiment head was trained on another encoder than [sentiment] encoder; \
             activating the configured default head"
        );
    }
    activate(store, head.version(), None).await?;
    Ok(head.version().to_owned())
}

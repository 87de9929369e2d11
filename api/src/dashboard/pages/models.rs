//! Models: every registered version (churn models and sentiment heads) with
//! its held-out metrics and where it is active; admins activate a version
//! through the same registry functions as `kairos models activate`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use kairos_core::store::NewAudit;
use kairos_jobs::model_registry::ModelInfo;
use serde::Deserialize;

use super::{done, nonempty, tenants_for, ts, Done, Layout};
use crate::dashboard::auth::Role;
use crate::dashboard::csrf::Posted;
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

/// One version.
pub struct ModelRow {
    version: String,
    kind: String,
    scope: String,
    source: String,
    created: String,
    metrics: String,
    active_in: String,
}

/// The models page.
#[derive(Template)]
#[template(path = "models.html")]
pub struct ModelsPage {
    l: Layout,
    rows: Vec<ModelRow>,
    tenants: Vec<(String, String)>,
    can_activate: bool,
}

/// The numeric top-level metrics, compactly.
fn metrics_summary(m: &serde_json::Value) -> String {
    m.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| format!("{k} {x:.3}")))
                .take(6)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn unavailable(e: impl std::fmt::Display) -> DashError {
    DashError::Unavailable(e.to_string())
}

/// `GET /dashboard/models`.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(d): Query<Done>,
) -> Result<Response, DashError> {
    let store = &state.app.store;
    let mut models: Vec<ModelInfo> = kairos_jobs::churn::registry::list(store).await.map_err(unavailable)?;
    models.extend(
        kairos_jobs::sentiment::registry::list(store)
            .await
            .map_err(unavailable)?,
    );
    let rows = models
        .into_iter()
        // A scoped user sees global versions and its tenant's own.
        .filter(|m| m.scope.as_deref().is_none_or(|s| user.sees(s)))
        .map(|m| ModelRow {
            metrics: metrics_summary(&m.metrics),
            active_in: m
                .active_in
                .iter()
                .filter(|s| *s == "global" || user.sees(s))
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            scope: m.scope.unwrap_or_else(|| "global".into()),
            created: ts(m.created_at),
            version: m.version,
            kind: m.kind,
            source: m.source,
        })
        .collect();
    render(&ModelsPage {
        l: Layout::new(&user, "Models", "/dashboard/models", Some(&d)),
        tenants: tenants_for(&state, &user)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect(),
        can_activate: user.role >= Role::Admin,
        rows,
    })
}

/// The activation form.
#[derive(Deserialize)]
pub struct ActivateForm {
    /// Tenant id; empty = global (unscoped admins only).
    tenant: Option<String>,
}

/// `POST /dashboard/models/{version}/activate`.
pub async fn activate(
    State(state): State<DashState>,
    Path(version): Path<String>,
    posted: Posted<ActivateForm>,
) -> Result<Response, DashError> {
    let (user, form) = posted.require(Role::Admin)?;
    let scope = user.scope(nonempty(&form.tenant));
    let store = &state.app.store;
    let info = kairos_jobs::model_registry::find(store, &version)
        .await
        .map_err(|e| match e {
            kairos_jobs::model_registry::RegistryError::NotFound(w) => DashError::NotFound(w),
            other => unavailable(other),
        })?;
    if info.scope.as_deref().is_some_and(|s| !user.sees(s)) {
        return Err(DashError::NotFound(format!("model version `{version}`")));
    }
    if info.kind == kairos_jobs::sentiment::registry::KIND {
        kairos_jobs::sentiment::registry::activate(store, &version, scope.as_deref())
            .await
            .map_err(unavailable)?;
    } else {
        kairos_jobs::churn::registry::activate(store, &version, scope.as_deref())
            .await
            .map_err(unavailable)?;
    }
    store
        .record_audit(&NewAudit {
            tenant_id: scope.as_deref(),
            actor: &user.actor(),
            action: "model.activated",
            target: &version,
            details: serde_json::json!({ "kind": info.kind, "scope": scope.as_deref().unwrap_or("global") }),
        })
        .await?;
    Ok(done("/dashboard/models", "activated", 1))
}

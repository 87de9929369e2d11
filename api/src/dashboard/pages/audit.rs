//! The audit log, newest first, one keyset page at a time.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{decode_cursor, encode_cursor, nonempty, ts, Layout};
use crate::dashboard::session::CurrentUser;
use crate::dashboard::{render, DashError, DashState};

const PAGE: u32 = 50;

/// Where the page starts.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Keyset cursor.
    pub before: Option<String>,
}

/// One entry.
pub struct AuditRow {
    at: String,
    tenant: String,
    actor: String,
    action: String,
    target: String,
    details: String,
}

/// The audit page.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    l: Layout,
    rows: Vec<AuditRow>,
    next: Option<String>,
}

/// `GET /dashboard/audit`: a scoped user sees its tenant's entries only.
pub async fn page(
    State(state): State<DashState>,
    user: CurrentUser,
    Query(q): Query<AuditQuery>,
) -> Result<Response, DashError> {
    let before = nonempty(&q.before).map(|c| decode_cursor(&c)).transpose()?;
    let mut entries = state
        .app
        .store
        .audit_page(user.tenant_id.as_deref(), before, PAGE)
        .await?;
    let next = if entries.len() > PAGE as usize {
        entries.truncate(PAGE as usize);
        entries
            .last()
            .map(|e| format!("/dashboard/audit?before={}", encode_cursor(e.at, &e.id)))
    } else {
        None
    };
    render(&AuditPage {
        l: Layout::new(&user, "Audit log", "/dashboard/audit", None),
        rows: entries
            .into_iter()
            .map(|e| AuditRow {
                at: ts(e.at),
                tenant: e.tenant_id.unwrap_or_default(),
                actor: e.actor,
                action: e.action,
                target: e.target,
                details: e.details.to_string(),
            })
            .collect(),
        next,
    })
}

//! The vendored JavaScript (see `api/assets/README.md`) and the style
//! sheet, compiled into the binary and served with long cache headers: the
//! version is in each file name, so a new version is a new URL.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::DashError;

/// The htmx file name (templates link it).
pub const HTMX: &str = "htmx-2.0.11.min.js";
/// The htmx SSE extension file name.
pub const HTMX_SSE: &str = "htmx-ext-sse-2.2.4.min.js";
/// The style sheet's file name (bump the number when it changes).
pub const STYLE: &str = "dashboard-2.css";

const FILES: &[(&str, &str, &str)] = &[
    (HTMX, "text/javascript", include_str!("../../assets/htmx-2.0.11.min.js")),
    (
        HTMX_SSE,
        "text/javascript",
        include_str!("../../assets/htmx-ext-sse-2.2.4.min.js"),
    ),
    (STYLE, "text/css", include_str!("../../assets/dashboard.css")),
];

/// `GET /dashboard/assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Result<Response, DashError> {
    let (_, mime, body) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| DashError::NotFound(format!("no asset `{file}`")))?;
    Ok((
        [
            (CONTENT_TYPE, *mime),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        *body,
    )
        .into_response())
}

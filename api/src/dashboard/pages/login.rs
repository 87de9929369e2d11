//! Login and logout. The login form has no session yet, so its CSRF token
//! is a double-submit cookie (SameSite=Strict); failed logins are counted
//! per client address and per user name ([`LoginLimiter`]).
//!
//! [`LoginLimiter`]: crate::dashboard::auth::LoginLimiter

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use kairos_core::store::NewAudit;
use kairos_core::time::now_ms;
use serde::Deserialize;

use crate::dashboard::auth::{dummy_hash, verify_password};
use crate::dashboard::csrf::{body_bytes, parse_form, tokens_match, Posted};
use crate::dashboard::session::{cookie, new_token, set_cookie, token_hash, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use crate::dashboard::{assets, DashError, DashState};

/// The login form.
#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    style: String,
    csrf: String,
    name: String,
    error: Option<String>,
}

fn login_page(state: &DashState, name: String, error: Option<String>) -> Result<Response, DashError> {
    let csrf = new_token();
    let page = LoginPage {
        style: format!("/dashboard/assets/{}", assets::STYLE),
        csrf: csrf.clone(),
        name,
        error,
    };
    let cookie = set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, state.config().secure_cookie);
    Ok((AppendHeaders([(SET_COOKIE, cookie)]), Html(page.render()?)).into_response())
}

/// `GET /dashboard/login`.
pub async fn form(State(state): State<DashState>) -> Result<Response, DashError> {
    login_page(&state, String::new(), None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `POST /dashboard/login`: checks the password, starts a session.
pub async fn submit(State(state): State<DashState>, req: Request) -> Result<Response, DashError> {
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let expected = cookie(&parts, LOGIN_CSRF_COOKIE).unwrap_or("").to_owned();
    let bytes = body_bytes(Request::from_parts(parts, body)).await?;
    let f: LoginForm = parse_form(&bytes)?;
    if !tokens_match(&f.csrf, &expected) {
        return Err(DashError::Forbidden(
            "missing or invalid CSRF token; reload the login page",
        ));
    }
    let name = f.name.trim().to_owned();
    let keys = [format!("ip:{peer}"), format!("user:{name}")];
    if !state.logins.allowed(&keys) {
        return Err(DashError::TooManyAttempts);
    }
    let user = state.app.store.dashboard_user(&name).await?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = f.password;
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        state.logins.failed(&keys);
        return login_page(&state, name, Some("Wrong user name or password.".into()));
    };
    let token = new_token();
    let ttl = state.config().session_ttl;
    let expires = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    state
        .app
        .store
        .create_dashboard_session(&token_hash(&token), &user.name, &new_token(), expires)
        .await?;
    let actor = format!("dashboard:{}", user.name);
    state
        .app
        .store
        .record_audit(&NewAudit {
            tenant_id: user.tenant_id.as_deref(),
            actor: &actor,
            action: "dashboard.login",
            target: &user.name,
            details: serde_json::json!({ "ip": peer }),
        })
        .await?;
    let secure = state.config().secure_cookie;
    Ok((
        AppendHeaders([
            (SET_COOKIE, set_cookie(SESSION_COOKIE, &token, ttl.as_secs(), secure)),
            (SET_COOKIE, set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure)),
        ]),
        Redirect::to("/dashboard"),
    )
        .into_response())
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct Empty {}

/// `POST /dashboard/logout`.
pub async fn logout(State(state): State<DashState>, posted: Posted<Empty>) -> Result<Response, DashError> {
    let user = posted.user;
    state.app.store.delete_dashboard_session(&user.session_hash).await?;
    Ok((
        AppendHeaders([(
            SET_COOKIE,
            set_cookie(SESSION_COOKIE, "", 0, state.config().secure_cookie),
        )]),
        Redirect::to("/dashboard/login"),
    )
        .into_response())
}

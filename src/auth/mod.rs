//! Accounts and authentication: users and roles, argon2id passwords, session tokens (Bearer or
//! cookie, with CSRF protection for cookie writes), per-IP throttling of login and signup, the
//! first-run admin setup, and the extractors handlers use to learn who is calling.

pub mod accounts;
pub mod password;
pub mod recovery;
mod routes;
pub mod session;
pub mod throttle;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use serde::Serialize;

pub use routes::router;
use session::{CSRF_HEADER, SESSION_COOKIE, SessionToken};

use crate::app::AppState;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// An account as its owner sees it (`GET /api/v1/me`). Public views show only the username.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub created_at: i64,
    /// When the user proved the address is theirs (the link in the verification email).
    pub email_verified_at: Option<i64>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Cookie,
}

/// The signed-in caller. Rejects with 401 when there is no valid session, and with 403 when a
/// cookie-authenticated write lacks the CSRF header.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub token: SessionToken,
    pub credential: Credential,
}

/// The caller if signed in; anonymous callers are `None` (an invalid token is still refused).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<AuthUser>);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        MaybeUser::from_request_parts(parts, state).await?.0.ok_or_else(|| ApiError::unauthorized("sign in to do this"))
    }
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (raw, credential) = match bearer_token(&parts.headers) {
            Some(token) => (token, Credential::Bearer),
            None => match cookie(&parts.headers, SESSION_COOKIE) {
                Some(token) => (token, Credential::Cookie),
                None => return Ok(MaybeUser(None)),
            },
        };
        let (user, token) = signed_in(state, raw).await?;
        if credential == Credential::Cookie && !is_safe_method(&parts.method) {
            let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !token.csrf_matches(presented) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "csrf_required",
                    "cookie-authenticated writes need the X-CSRF-Token header",
                ));
            }
        }
        Ok(MaybeUser(Some(AuthUser { user, token, credential })))
    }
}

/// The user of a session token as a client presented it; 401 when it is malformed or expired.
pub async fn signed_in(state: &AppState, raw: &str) -> Result<(User, SessionToken), ApiError> {
    let invalid = || ApiError::unauthorized("the session is invalid or has expired; sign in again");
    let token = SessionToken::from_client(raw).ok_or_else(invalid)?;
    let user = session::user_of(state.db(), &token).await?.ok_or_else(invalid)?;
    Ok((user, token))
}

fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of cookie `name` in the request's `Cookie` headers.
/// Takes one of the client's attempts at an account action (login, signup, recovery, a change
/// that needs the password), or answers 429 with when to retry.
pub fn throttle(state: &AppState, ip: std::net::IpAddr, action: &'static str) -> Result<(), ApiError> {
    state.attempts().check(ip, std::time::Instant::now()).map_err(|wait| {
        tracing::info!(%ip, action, "attempt throttled");
        ApiError::RateLimited { retry_after_secs: wait.as_secs().max(1) }
    })
}

/// Checks the signed-in user's password before a change that needs it; 403 with `wrong`
/// otherwise.
pub async fn confirm_password(
    state: &AppState,
    user: &User,
    password: String,
    wrong: &'static str,
) -> Result<(), ApiError> {
    let stored = accounts::find_for_login(state.db(), &user.username).await?.map(|(_, hash)| hash);
    if password::verify(password, stored).await? { Ok(()) } else { Err(ApiError::forbidden(wrong)) }
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

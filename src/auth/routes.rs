//! HTTP surface of accounts: signup, login, logout, `me`, and the first-run admin setup.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::accounts::{self, NewAccount};
use super::session::{self, CSRF_COOKIE, SESSION_COOKIE, SessionToken};
use super::{AuthUser, Role, User, password};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/signup", post(signup))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/setup", post(setup))
        .merge(super::recovery::router())
}

#[derive(Debug, Deserialize)]
struct SignupRequest {
    username: String,
    email: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    login: String,
    password: String,
}

#[derive(Debug, Deserialize)]
struct SetupRequest {
    token: String,
    username: String,
    email: String,
    password: String,
}

/// What signup, login and setup answer: the user, a token for API clients and the CSRF token
/// that cookie-authenticated pages send back on writes.
#[derive(Debug, Serialize)]
struct SessionResponse {
    user: User,
    token: String,
    csrf_token: String,
}

fn throttle(state: &AppState, peer: SocketAddr) -> ApiResult<()> {
    super::throttle(state, peer.ip(), "auth")
}

async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<SignupRequest>,
) -> ApiResult<Response> {
    throttle(&state, peer)?;
    let account = NewAccount::validate(&body.username, &body.email, body.password, Role::User)?;
    let hash = password::hash(account.password.clone()).await?;
    // The account and its verification email: one transaction.
    let mut tx = state.db().write().await?;
    let user = accounts::insert(&mut tx, account, &hash).await?;
    super::recovery::queue_verification(&mut tx, &state, &user).await?;
    tx.commit().await?;
    state.jobs().wake();
    tracing::info!(user = %user.username, "account created");
    start_session(&state, user, StatusCode::CREATED).await
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Response> {
    throttle(&state, peer)?;
    let found = accounts::find_for_login(state.db(), &body.login).await?;
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let verified = password::verify(body.password, stored).await?;
    match user {
        Some(user) if verified => start_session(&state, user, StatusCode::OK).await,
        _ => Err(ApiError::unauthorized("wrong username/email or password")),
    }
}

async fn start_session(state: &AppState, user: User, status: StatusCode) -> ApiResult<Response> {
    let ttl_hours = state.config().auth.session_ttl_hours;
    let token = session::create(state.db(), user.id, ttl_hours).await?;
    let max_age = u64::from(ttl_hours) * 3600;
    let headers = session_cookies(&token, max_age, state.config().auth.secure_cookies);
    let body = SessionResponse { user, csrf_token: token.csrf_token(), token: token.as_str().to_owned() };
    Ok((status, headers, Json(body)).into_response())
}

fn session_cookies(token: &SessionToken, max_age: u64, secure: bool) -> HeaderMap {
    let secure = if secure { "; Secure" } else { "" };
    let mut headers = HeaderMap::new();
    let pairs = [
        format!("{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}", token.as_str()),
        format!("{CSRF_COOKIE}={}; Path=/; SameSite=Lax; Max-Age={max_age}{secure}", token.csrf_token()),
    ];
    for cookie in pairs {
        headers.append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie is ASCII"));
    }
    headers
}

async fn logout(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Response> {
    session::delete(state.db(), &auth.token).await?;
    let mut headers = HeaderMap::new();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let expired = format!("{name}=; Path=/; SameSite=Lax; Max-Age=0");
        headers.append(header::SET_COOKIE, HeaderValue::from_str(&expired).expect("cookie is ASCII"));
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

#[derive(Debug, Serialize)]
struct MeResponse {
    user: User,
}

async fn me(auth: AuthUser) -> Json<MeResponse> {
    Json(MeResponse { user: auth.user })
}

/// Creates the first admin with the one-time token printed at start-up on an empty database.
async fn setup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<SetupRequest>,
) -> ApiResult<Response> {
    throttle(&state, peer)?;
    let account = NewAccount::validate(&body.username, &body.email, body.password, Role::Admin)?;
    // Taken out while the account is created, so two concurrent requests cannot both use it.
    let expected = state.setup_token().take().ok_or_else(|| {
        ApiError::new(StatusCode::GONE, "setup_done", "this server is already set up; sign in instead")
    })?;
    if !bool::from(expected.as_bytes().ct_eq(body.token.as_bytes())) {
        *state.setup_token() = Some(expected);
        return Err(ApiError::forbidden("the setup token is wrong"));
    }
    match accounts::create(state.db(), account).await {
        Ok(user) => {
            tracing::info!(user = %user.username, "first admin created through the setup URL");
            start_session(&state, user, StatusCode::CREATED).await
        }
        Err(error) => {
            *state.setup_token() = Some(expected);
            Err(error)
        }
    }
}

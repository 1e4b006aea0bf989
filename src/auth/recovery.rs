//! Proving and recovering an account by email: the address is verified with a link sent at
//! signup (and again on request); a forgotten password is reset with a link (single use, one
//! hour; the same answer whether or not the address has an account, throttled per address and
//! per client); a new address is used once the link sent to it is opened. Tokens are random,
//! 256 bits, and only their SHA-256 is stored. A reset signs the account out everywhere.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use super::accounts::{self, NewAccount};
use super::session::{SessionToken, sha256_hex};
use super::{AuthUser, User, UserId, password};
use crate::app::AppState;
use crate::db::{is_unique_violation_on, now_ms};
use crate::error::{ApiError, ApiResult, Json};

const HOUR_MS: i64 = 3_600_000;
/// One email of a kind per user per this long (a button pressed again, a script).
const RESEND_AFTER_MS: i64 = 60_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/password-reset", post(request_reset))
        .route("/api/v1/auth/password-reset/confirm", post(confirm_reset))
        .route("/api/v1/auth/verify-email", post(verify_email))
        .route("/api/v1/me/email/verification", post(resend_verification))
        .route("/api/v1/me/email", put(change_email))
        .route("/api/v1/me/password", put(change_password))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
            Purpose::ChangeEmail => "change_email",
        }
    }

    fn lifetime_ms(self) -> i64 {
        match self {
            Purpose::ResetPassword => HOUR_MS,
            Purpose::VerifyEmail | Purpose::ChangeEmail => 24 * HOUR_MS,
        }
    }
}

/// Makes a token for `user`, unless one of this purpose was made in the last minute; returns the
/// token to put in the link.
async fn issue(
    conn: &mut AnyConnection,
    user: UserId,
    purpose: Purpose,
    new_email: Option<&str>,
) -> Result<Option<SessionToken>, sqlx::Error> {
    let now = now_ms();
    let recent = sqlx::query(
        "SELECT 1 AS found FROM auth_tokens WHERE user_id = $1 AND purpose = $2 AND created_at > $3 AND used_at IS NULL",
    )
    .bind(user.0)
    .bind(purpose.as_str())
    .bind(now - RESEND_AFTER_MS)
    .fetch_optional(&mut *conn)
    .await?;
    if recent.is_some() && purpose != Purpose::ChangeEmail {
        return Ok(None);
    }
    let token = SessionToken::generate();
    sqlx::query(
        "INSERT INTO auth_tokens (user_id, purpose, token_hash, new_email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user.0)
    .bind(purpose.as_str())
    .bind(token.hash())
    .bind(new_email)
    .bind(now)
    .bind(now + purpose.lifetime_ms())
    .execute(conn)
    .await?;
    Ok(Some(token))
}

/// Uses a token: the user and (change_email) the new address, once, before it expires.
async fn redeem(
    conn: &mut AnyConnection,
    raw: &str,
    purpose: Purpose,
) -> Result<Option<(UserId, Option<String>)>, sqlx::Error> {
    let now = now_ms();
    let row = sqlx::query(
        "UPDATE auth_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
         RETURNING user_id, new_email",
    )
    .bind(now)
    .bind(sha256_hex(raw.trim().as_bytes()))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?;
    row.map(|row| Ok((UserId(row.try_get("user_id")?), row.try_get("new_email")?))).transpose()
}

fn link(state: &AppState, page: &str, token: &SessionToken) -> String {
    format!("{}/{page}?token={}", state.public_url(), token.as_str())
}

/// Queues the verification email of `user` in the caller's transaction (signup's, which makes
/// the account). Wake the job runner after the commit.
pub async fn queue_verification(conn: &mut AnyConnection, state: &AppState, user: &User) -> Result<(), sqlx::Error> {
    if let Some(token) = issue(conn, user.id, Purpose::VerifyEmail, None).await? {
        let email = crate::email::verify_email(&user.email, &user.username, &link(state, "verify-email", &token));
        crate::email::queue(conn, &email, None).await?;
    }
    Ok(())
}

/// Sends the verification link again.
async fn send_verification(state: &AppState, user: &User) -> Result<(), sqlx::Error> {
    let mut tx = state.db().write().await?;
    queue_verification(&mut tx, state, user).await?;
    tx.commit().await?;
    state.jobs().wake();
    Ok(())
}

fn throttle(state: &AppState, peer: SocketAddr) -> ApiResult<()> {
    super::throttle(state, peer.ip(), "account recovery")
}

#[derive(Debug, Deserialize)]
struct ResetRequest {
    email: String,
}

#[derive(Debug, Serialize)]
struct Accepted {
    message: &'static str,
}

/// Always the same answer, so that nobody learns which addresses have accounts.
async fn request_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ResetRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    throttle(&state, peer)?;
    let address = body.email.trim().to_ascii_lowercase();
    if address.len() <= 254
        && address.contains('@')
        && let Some((user, _)) = accounts::find_for_login(state.db(), &address).await?
    {
        let mut tx = state.db().write().await?;
        if let Some(token) = issue(&mut tx, user.id, Purpose::ResetPassword, None).await? {
            let email =
                crate::email::password_reset(&user.email, &user.username, &link(&state, "reset-password", &token));
            crate::email::queue(&mut tx, &email, None).await?;
            tracing::info!(user = %user.username, "password reset requested");
        }
        tx.commit().await?;
        state.jobs().wake();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted { message: "If an account uses that address, a link to reset its password is on its way." }),
    ))
}

#[derive(Debug, Deserialize)]
struct ConfirmReset {
    token: String,
    password: String,
}

#[derive(Debug, Serialize)]
struct Done {
    ok: bool,
}

async fn confirm_reset(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<ConfirmReset>,
) -> ApiResult<Json<Done>> {
    throttle(&state, peer)?;
    NewAccount::check_password(&body.password)?;
    let hash = password::hash(body.password).await?;
    let mut tx = state.db().write().await?;
    let (user, _) = redeem(&mut tx, &body.token, Purpose::ResetPassword)
        .await?
        .ok_or_else(|| ApiError::invalid("invalid_token", "this link was used already, has expired or is wrong"))?;
    // The link came by email: the address is proven too. Every session ends.
    accounts::set_password(&mut tx, user, &hash).await?;
    accounts::mark_email_verified(&mut tx, user, now_ms()).await?;
    super::session::delete_all(&mut tx, user).await?;
    tx.commit().await?;
    tracing::info!(user = user.0, "password reset");
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, Deserialize)]
struct TokenBody {
    token: String,
}

/// Confirms an address: the account's own (verification) or a new one (change).
async fn verify_email(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<TokenBody>,
) -> ApiResult<Json<Done>> {
    throttle(&state, peer)?;
    let mut tx = state.db().write().await?;
    let invalid = || ApiError::invalid("invalid_token", "this link was used already, has expired or is wrong");
    if let Some((user, _)) = redeem(&mut tx, &body.token, Purpose::VerifyEmail).await? {
        accounts::mark_email_verified(&mut tx, user, now_ms()).await?;
    } else if let Some((user, Some(address))) = redeem(&mut tx, &body.token, Purpose::ChangeEmail).await? {
        match accounts::set_email(&mut tx, user, &address, now_ms()).await {
            Ok(()) => {}
            Err(error) if is_unique_violation_on(&error, "email") => {
                return Err(ApiError::conflict("email_taken", "another account uses that address now"));
            }
            Err(error) => return Err(error.into()),
        }
    } else {
        return Err(invalid());
    }
    tx.commit().await?;
    Ok(Json(Done { ok: true }))
}

async fn resend_verification(State(state): State<AppState>, auth: AuthUser) -> ApiResult<(StatusCode, Json<Accepted>)> {
    if auth.user.email_verified_at.is_some() {
        return Err(ApiError::conflict("already_verified", "your address is verified already"));
    }
    send_verification(&state, &auth.user).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { message: "A new link is on its way." })))
}

#[derive(Debug, Deserialize)]
struct ChangeEmail {
    email: String,
    password: String,
}

/// Sends a confirmation link to the new address; the account keeps its address until it is used.
async fn change_email(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    auth: AuthUser,
    Json(body): Json<ChangeEmail>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    throttle(&state, peer)?;
    let address = NewAccount::check_email(&body.email)?;
    super::confirm_password(&state, &auth.user, body.password, "the password is wrong").await?;
    if address == auth.user.email {
        return Err(ApiError::conflict("same_email", "that is your address already"));
    }
    if accounts::find_for_login(state.db(), &address).await?.is_some() {
        return Err(ApiError::conflict("email_taken", "an account with that email already exists"));
    }
    let mut tx = state.db().write().await?;
    if let Some(token) = issue(&mut tx, auth.user.id, Purpose::ChangeEmail, Some(&address)).await? {
        let email = crate::email::change_email(&address, &auth.user.username, &link(&state, "verify-email", &token));
        crate::email::queue(&mut tx, &email, None).await?;
    }
    tx.commit().await?;
    state.jobs().wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted { message: "Open the link we sent to the new address to start using it." }),
    ))
}

#[derive(Debug, Deserialize)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    auth: AuthUser,
    Json(body): Json<ChangePassword>,
) -> ApiResult<Json<Done>> {
    throttle(&state, peer)?;
    NewAccount::check_password(&body.new_password)?;
    super::confirm_password(&state, &auth.user, body.current_password, "the current password is wrong").await?;
    let hash = password::hash(body.new_password).await?;
    let mut tx = state.db().write().await?;
    accounts::set_password(&mut tx, auth.user.id, &hash).await?;
    // Other sessions end; this one stays.
    super::session::delete_all_but(&mut tx, auth.user.id, &auth.token).await?;
    tx.commit().await?;
    Ok(Json(Done { ok: true }))
}

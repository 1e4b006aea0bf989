//! The whole HTTP surface on one screen: each module's router merged, the JSON fallbacks for
//! unknown routes and methods, the body size limit, request tracing and metrics.

pub mod serve;

use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Router, middleware};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::ApiError;
use crate::{auth, channels, chat, clips, live, ops, telemetry, vod, web};

pub fn router(state: AppState) -> Router {
    let body_limit = state.config().http.body_limit_bytes;
    Router::new()
        .merge(ops::router())
        .merge(auth::router())
        .merge(channels::router())
        .merge(chat::router())
        .merge(live::router())
        .merge(vod::router())
        .merge(clips::router())
        .merge(web::router())
        .route("/setup", get(setup_page))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(telemetry::track_http))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `?limit=&offset=` of a listing.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Page {
    const DEFAULT: i64 = 50;
    const MAX: i64 = 100;

    /// (limit, offset): limit 1 to 100 (default 50), offset at least 0 (default 0).
    pub fn checked(self) -> Result<(i64, i64), ApiError> {
        let (limit, offset) = (self.limit.unwrap_or(Self::DEFAULT), self.offset.unwrap_or(0));
        if !(1..=Self::MAX).contains(&limit) || offset < 0 {
            return Err(ApiError::invalid("invalid_query", format!("limit is 1 to {}, offset at least 0", Self::MAX)));
        }
        Ok((limit, offset))
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// The first-run page behind the setup URL printed at start-up.
async fn setup_page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(include_str!("../web/setup.html")))
}

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
use crate::{auth, channels, chat, clips, live, modules, ops, telemetry, vod, web};

pub fn router(state: AppState) -> Router {
    let body_limit = state.config().http.body_limit_bytes;
    Router::new()
        .merge(ops::router())
        .merge(auth::router())
        .merge(channels::router())
        .merge(chat::router())
        .merge(live::router())
        .merge(live::webrtc::router())
        .merge(vod::router())
        .merge(clips::router())
        .merge(modules::profiles::router())
        .merge(modules::notifications::router())
        .merge(modules::search::router())
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

/// `?limit=&cursor=` of a feed (CONTRACT.md, "Platform"): limit 1 to 100, default 20; the cursor
/// is opaque to clients (here: the sort key of the last item, dot-separated, hex-encoded).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit.unwrap_or(20) {
            limit @ 1..=100 => Ok(limit),
            _ => Err(ApiError::invalid("invalid_query", "limit is 1 to 100")),
        }
    }

    /// The cursor's numbers (`None` on the first page), `N` of them.
    pub fn cursor<const N: usize>(&self) -> Result<Option<[i64; N]>, ApiError> {
        let Some(cursor) = &self.cursor else { return Ok(None) };
        let bad = || ApiError::invalid("invalid_cursor", "the cursor is not one this server gave");
        let text = hex::decode(cursor).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(bad)?;
        let numbers: Vec<i64> = text.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad())?;
        numbers.try_into().map(Some).map_err(|_| bad())
    }
}

/// A page of a feed: `{"items":[...],"next_cursor":"..."|null}`.
#[derive(Debug, serde::Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Listing<T> {
    /// `items` fetched with one extra row beyond `limit`: the extra one says there is a next
    /// page, whose cursor `key` makes from the last item shown.
    pub fn page<const N: usize>(mut items: Vec<T>, limit: i64, key: impl Fn(&T) -> [i64; N]) -> Listing<T> {
        let more = items.len() as i64 > limit;
        items.truncate(limit as usize);
        let next_cursor = more.then(|| items.last().map(|last| encode_cursor(&key(last)))).flatten();
        Listing { items, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Listing<U> {
        Listing { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

/// The opaque cursor of a list for the sort key `numbers` (what `ListQuery::cursor` reads).
pub fn encode_cursor(numbers: &[i64]) -> String {
    hex::encode(numbers.iter().map(i64::to_string).collect::<Vec<_>>().join("."))
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

//! Search (level 3): one API over what other modules index, `GET /api/v1/search?q=&type=`
//! with `type` one of `channels` (name, title, category, tags), `users` (username, display
//! name), `vods` (public, by title) and `clips` (ready, by title); ranked by the database's
//! full-text index (SQLite FTS5, PostgreSQL tsvector), paged with the usual cursor. Only
//! letters and digits of the query reach an index (`db::search_terms`), so no query is syntax.
//! Also discovery: the categories with their live channels, `GET /api/v1/categories`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::app::AppState;
use crate::db::search_terms;
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::http::{ListQuery, Listing, encode_cursor};
use crate::modules::profiles;
use crate::{channels, clips, vod};

/// Results reachable by paging, per query.
const MAX_OFFSET: i64 = 1000;
const MAX_QUERY_CHARS: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/search", get(search)).route("/api/v1/categories", get(categories))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Channels,
    Users,
    Vods,
    Clips,
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn search(State(state): State<AppState>, Query(query): Query<SearchQuery>) -> ApiResult<Json<Listing<Value>>> {
    let kind = match query.kind.as_deref() {
        None => Kind::Channels,
        Some(name) => serde_json::from_value(Value::String(name.to_owned()))
            .map_err(|_| ApiError::invalid("invalid_type", "type is one of channels, users, vods, clips"))?,
    };
    if query.q.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid("invalid_query", format!("queries are at most {MAX_QUERY_CHARS} characters")));
    }
    let paging = ListQuery { limit: query.limit, cursor: query.cursor };
    let limit = paging.limit()?;
    let [offset] = paging.cursor::<1>()?.unwrap_or([0]);
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::invalid("invalid_cursor", "the cursor is not one this server gave"));
    }
    let terms = search_terms(&query.q);
    if terms.is_empty() {
        return Ok(Json(Listing { items: Vec::new(), next_cursor: None }));
    }
    let db = state.db();
    // One row more than asked says whether there is a next page.
    let fetch = limit + 1;
    let started = std::time::Instant::now();
    let mut items: Vec<Value> = match kind {
        Kind::Channels => channels::search(db, &terms, fetch, offset)
            .await?
            .into_iter()
            .map(|channel| to_value(channels::public_view(&state, channel)))
            .collect(),
        Kind::Users => profiles::search_users(db, &terms, fetch, offset).await?.into_iter().map(to_value).collect(),
        Kind::Vods => {
            vod::search(db, &terms, fetch, offset).await?.into_iter().map(|v| to_value(vod::public_view(v))).collect()
        }
        Kind::Clips => clips::search(db, &terms, fetch, offset)
            .await?
            .into_iter()
            .map(|c| to_value(clips::public_view(c)))
            .collect(),
    };
    metrics::histogram!("aether_search_seconds").record(started.elapsed().as_secs_f64());
    let more = items.len() as i64 > limit && offset + limit < MAX_OFFSET;
    items.truncate(limit as usize);
    Ok(Json(Listing { items, next_cursor: more.then(|| encode_cursor(&[offset + limit])) }))
}

fn to_value(item: impl Serialize) -> Value {
    serde_json::to_value(item).expect("views serialize")
}

#[derive(Debug, Serialize)]
struct Category {
    name: String,
    live_channels: usize,
    viewers: usize,
    channels: i64,
}

/// Categories with live channels first (most viewers first), then the ones most channels use.
async fn categories(State(state): State<AppState>) -> ApiResult<Json<Listing<Category>>> {
    let live = channels::list_by_ids(state.db(), &state.live().live_channels()).await?;
    let mut by_name: HashMap<String, Category> = HashMap::new();
    for channel in live.iter().filter(|c| !c.category.is_empty()) {
        let entry = by_name.entry(channel.category.clone()).or_insert_with(|| Category {
            name: channel.category.clone(),
            live_channels: 0,
            viewers: 0,
            channels: 0,
        });
        entry.live_channels += 1;
        entry.viewers += state.hub().viewers(&channel.name);
    }
    for (name, count) in channels::top_categories(state.db(), 50).await? {
        by_name
            .entry(name.clone())
            .or_insert_with(|| Category { name, live_channels: 0, viewers: 0, channels: 0 })
            .channels = count;
    }
    let mut items: Vec<Category> = by_name.into_values().collect();
    items.sort_by(|a, b| {
        (b.live_channels > 0)
            .cmp(&(a.live_channels > 0))
            .then(b.viewers.cmp(&a.viewers))
            .then(b.channels.cmp(&a.channels))
            .then(a.name.cmp(&b.name))
    });
    Ok(Json(Listing { items, next_cursor: None }))
}

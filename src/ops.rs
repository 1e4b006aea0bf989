//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the database and configured
//! services answer), `/metrics` (Prometheus text format), and `/api/v1/server`: what the web UI
//! needs to know of this server (where OBS publishes, which features are on).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::app::AppState;
use crate::error::Json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/server", get(server))
}

async fn server(State(state): State<AppState>) -> Json<serde_json::Value> {
    let config = state.config();
    // The host people reach the server at, when configured; otherwise the page uses its own.
    let host = config.http.public_url.as_deref().and_then(public_host);
    Json(json!({
        "rtmp": { "host": host, "port": state.rtmp_port(), "app": "live" },
        "features": {
            "transcoding": config.transcode.enabled && state.transcoding_available(),
            "recording": config.recording.enabled,
            "clips": config.recording.enabled,
            "webrtc": state.webrtc().is_some(),
        },
        "webrtc": { "whip": "/api/whip", "whep": "/api/whep/{channel}", "ice_servers": config.webrtc.ice_servers },
        "chat": { "max_message_chars": config.chat.max_message_chars },
    }))
}

/// `https://stream.example.com:8443/x` -> `stream.example.com`.
fn public_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => authority.split(':').next()?.to_owned(),
    };
    (!host.is_empty()).then_some(host)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.db().ping().await;
    let status = if database { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |up: bool| if up { "ok" } else { "unavailable" };
    (status, Json(json!({ "status": word(database), "checks": { "database": word(database) } })))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::render())
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_host_is_the_url_host() {
        assert_eq!(super::public_host("https://stream.example.com:8443/x").as_deref(), Some("stream.example.com"));
        assert_eq!(super::public_host("http://[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(super::public_host("stream.example.com").as_deref(), Some("stream.example.com"));
        assert_eq!(super::public_host("https://"), None);
    }
}

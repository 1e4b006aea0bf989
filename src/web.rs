//! The web pages: one HTML shell for every page route (the TypeScript app in web/ routes in the
//! browser), and the built assets, embedded at build time (see build.rs) with gzip copies.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::app::AppState;
use crate::channels;
use crate::error::ApiError;

/// One built file: its path under the build directory, its bytes and a gzip copy.
pub struct Asset {
    pub path: &'static str,
    pub body: &'static [u8],
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/login", get(page))
        .route("/signup", get(page))
        .route("/dashboard", get(page))
        .route("/forgot-password", get(page))
        .route("/reset-password", get(page))
        .route("/verify-email", get(page))
        .route("/notifications", get(page))
        .route("/following", get(page))
        .route("/search", get(page))
        .route("/browse", get(page))
        .route("/settings", get(page))
        .route("/settings/{section}", get(page))
        .route("/u/{username}", get(page))
        .route("/vod/{id}", get(page))
        .route("/clip/{id}", get(page))
        .route("/assets/{*file}", get(asset))
        .route("/favicon.svg", get(favicon))
        // Browsers ask for this one on their own, whatever a page links; the SVG answers it.
        .route("/favicon.ico", get(favicon))
        .route("/{channel}", get(channel_page))
}

pub fn asset_named(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

fn shell(headers: &HeaderMap, status: StatusCode) -> Response {
    let index = asset_named("index.html").expect("the web build always has index.html");
    let mut response = serve(headers, index, "no-cache");
    *response.status_mut() = status;
    response
}

async fn page(headers: HeaderMap) -> Response {
    shell(&headers, StatusCode::OK)
}

/// The viewer page; an unknown channel still gets the page (it says so), with a 404 status.
async fn channel_page(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if channels::validate_name(&name).is_err() {
        return ApiError::not_found("no such page").into_response();
    }
    match channels::find(state.db(), &name).await {
        Ok(Some(_)) => shell(&headers, StatusCode::OK),
        Ok(None) => shell(&headers, StatusCode::NOT_FOUND),
        Err(error) => ApiError::from(error).into_response(),
    }
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match asset_named(&format!("assets/{file}")) {
        // Vite puts a content hash in every name under assets/: cache them for good.
        Some(asset) => serve(&headers, asset, "public, max-age=31536000, immutable"),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

async fn favicon(headers: HeaderMap) -> Response {
    match asset_named("favicon.svg") {
        Some(asset) => serve(&headers, asset, "public, max-age=86400"),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

fn serve(headers: &HeaderMap, asset: &'static Asset, cache: &'static str) -> Response {
    let gzip = accepts_gzip(headers) && asset.gzip.len() < asset.body.len();
    let body = if gzip { asset.gzip } else { asset.body };
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type(asset.path))),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response();
    if gzip {
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if asset.path.ends_with(".html") {
        // The pages load only their own scripts and talk only to this server.
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; worker-src 'self' blob:; \
                 connect-src 'self' ws: wss:; style-src 'self'; object-src 'none'; base-uri 'none'; \
                 frame-ancestors 'none'",
            ),
        );
        response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    response
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| matches!(param.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_negotiated() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.8"));
        assert!(accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, br"));
        assert!(!accepts_gzip(&headers));
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        assert!(!accepts_gzip(&headers));
    }

    /// The issue's budget: the viewer page's own JS and CSS under 100 KB gzipped, hls.js aside
    /// (its own file, loaded only where a player is shown).
    #[test]
    fn the_pages_own_code_stays_under_100_kb_gzipped() {
        let code = |asset: &&Asset| asset.path.ends_with(".js") || asset.path.ends_with(".css");
        let (hls, own): (Vec<&Asset>, Vec<&Asset>) =
            ASSETS.iter().filter(code).partition(|asset| asset.path.starts_with("assets/hls"));
        assert_eq!(hls.len(), 1, "hls.js is a file of its own");
        let gzipped: usize = own.iter().map(|asset| asset.gzip.len()).sum();
        assert!(!own.is_empty() && gzipped < 100_000, "{gzipped} bytes gzipped");
    }

    #[test]
    fn the_build_has_a_shell_and_gzip_copies_that_inflate_to_it() {
        let index = asset_named("index.html").unwrap();
        assert!(std::str::from_utf8(index.body).unwrap().contains("<html"));
        assert!(!index.gzip.is_empty() && index.gzip[..2] == [0x1f, 0x8b]);
    }
}

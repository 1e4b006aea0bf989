//! The web pages as HTTP sees them: every page route answers the app shell (an unknown channel
//! with 404), the built assets are served with long caching and gzip, and `/api/v1/server` tells
//! the pages where OBS publishes. The pages themselves are tested in Chromium (web/e2e).

mod support;

use std::io::Read;

use reqwest::header;
use support::{Backend, TestApp};

async fn page(app: &TestApp, path: &str) -> (u16, String, header::HeaderMap) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

#[tokio::test]
async fn page_routes_answer_the_app_shell_and_assets_are_cached_and_compressed() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let owner = app.signup("webby").await;
    app.create_channel(&owner, "webby_tv").await;

    for path in ["/", "/login", "/signup", "/dashboard", "/webby_tv", "/vod/abc123", "/clip/xyz789"] {
        let (status, body, headers) = page(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("<main id=\"main\""), "{path}: {body}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
    }
    // A well-formed name that is no channel: the page (it says so) with a 404.
    let (status, body, _) = page(&app, "/nobody_here").await;
    assert_eq!((status, body.contains("<main id=\"main\"")), (404, true));
    // Not a channel name at all (and the API's unknown routes) stay JSON 404s.
    for path in ["/robots.txt", "/Bad-Name", "/api/v1/nope"] {
        let (status, body, _) = page(&app, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("\"not_found\""), "{path}: {body}");
    }

    // Every script and style the shell names is served, gzipped on request, cached for good.
    let (_, shell, _) = page(&app, "/").await;
    let assets: Vec<&str> = shell.split('"').filter(|part| part.starts_with("/assets/")).collect();
    assert!(assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")), "{shell}");
    for asset in assets {
        let plain = app.client.get(app.url(asset)).header(header::ACCEPT_ENCODING, "identity").send().await.unwrap();
        assert_eq!(plain.status(), 200, "{asset}");
        assert_eq!(plain.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain = plain.bytes().await.unwrap();
        let gzipped = app.client.get(app.url(asset)).header(header::ACCEPT_ENCODING, "gzip, br").send().await.unwrap();
        assert_eq!(gzipped.headers()[header::CONTENT_ENCODING], "gzip", "{asset}");
        let gzipped = gzipped.bytes().await.unwrap();
        assert!(gzipped.len() < plain.len());
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut inflated).unwrap();
        assert_eq!(inflated, plain, "{asset}: the gzip copy is the same file");
    }
    assert_eq!(page(&app, "/assets/nope.js").await.0, 404);
    assert_eq!(page(&app, "/favicon.svg").await.0, 200);

    // What the dashboard shows for OBS.
    let (status, info) = app.get("/api/v1/server", None).await;
    assert_eq!(status, 200);
    assert_eq!(info["rtmp"]["port"].as_u64(), Some(u64::from(app.rtmp_addr.port())), "{info}");
    assert_eq!((info["rtmp"]["host"].is_null(), &info["rtmp"]["app"]), (true, &"live".into()));
    assert_eq!(info["chat"]["max_message_chars"], 500);
    assert_eq!(info["features"]["recording"], true);
    app.stop().await;
}

#[tokio::test]
async fn the_public_url_names_the_rtmp_host() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        config.http.public_url = Some("https://stream.example.com:8443/".into());
    })
    .await
    .unwrap();
    let (_, info) = app.get("/api/v1/server", None).await;
    assert_eq!(info["rtmp"]["host"], "stream.example.com");
    app.stop().await;
}

#[tokio::test]
async fn http_2_with_prior_knowledge_is_served_beside_http_1_1() {
    let app = TestApp::spawn_with(Backend::Sqlite, |_| {}).await.unwrap();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(app.url("/api/v1/server")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let response = app.client.get(app.url("/api/v1/server")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    app.stop().await;
}

//! Profiles on both databases: the public profile and its settings (validated), pictures checked
//! by their bytes and re-encoded (PNG, JPEG, GIF in; a pixel bomb, an SVG with a script, a
//! renamed executable and an oversized upload out, each with a clear 4xx), account deletion
//! (with its stored media), and the data export (its owner's alone).

mod support;

use std::io::Cursor;
use std::time::Duration;

use image::{ImageFormat, RgbImage};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, TestApp, eventually};

on_both_backends!(
    a_profile_shows_what_its_owner_set_and_refuses_bad_fields,
    pictures_are_checked_by_their_bytes_and_reencoded,
    deleting_an_account_takes_its_content_and_media,
    a_data_export_is_made_and_only_its_owner_downloads_it,
);

fn encoded(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let picture = RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 90]));
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, path: &str, token: &str, bytes: Vec<u8>, content_type: &str) -> (u16, Value) {
    let response = app
        .client
        .put(app.url(path))
        .bearer_auth(token)
        .header("Content-Type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    support::read(response).await
}

async fn a_profile_shows_what_its_owner_set_and_refuses_bad_fields(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("painter").await;
    app.create_channel(&token, "painter_tv").await;
    let (status, profile) = app.get("/api/v1/users/painter", None).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["display_name"], "painter", "the username until a display name is set");
    assert_eq!(profile["channels"][0]["name"], "painter_tv");
    assert!(profile["avatar_url"].is_null());
    assert!(profile.get("email").is_none(), "no address in public");

    let update = json!({"display_name": "Pat the Painter", "bio": "I paint.\nLive on Sundays.",
        "links": [{"title": "Site", "url": "https://example.com/pat"}]});
    let (status, body) = app.patch("/api/v1/me/profile", Some(&token), update).await;
    assert_eq!(status, 200, "{body}");
    let (_, profile) = app.get("/api/v1/users/painter", None).await;
    assert_eq!(profile["display_name"], "Pat the Painter");
    assert_eq!(profile["bio"], "I paint.\nLive on Sundays.");
    assert_eq!(profile["links"], json!([{"title": "Site", "url": "https://example.com/pat"}]));

    for bad in [
        json!({"links": [{"title": "x", "url": "javascript:alert(1)"}]}),
        json!({"links": [{"title": "x", "url": "https://"}]}),
        json!({"bio": "b".repeat(1001)}),
        json!({"display_name": "d".repeat(51)}),
        json!({"links": (0..6).map(|i| json!({"title": "t", "url": format!("https://e.com/{i}")})).collect::<Vec<_>>()}),
    ] {
        let (status, body) = app.patch("/api/v1/me/profile", Some(&token), bad.clone()).await;
        assert_eq!(status, 422, "{bad} -> {body}");
    }
    assert_eq!(app.patch("/api/v1/me/profile", Some(&token), json!({"nope": 1})).await.0, 422);
    assert_eq!(app.get("/api/v1/users/nobody_here", None).await.0, 404);
    app.stop().await;
}

async fn pictures_are_checked_by_their_bytes_and_reencoded(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("selfie").await;
    for (format, mime) in
        [(ImageFormat::Png, "image/png"), (ImageFormat::Jpeg, "image/jpeg"), (ImageFormat::Gif, "image/gif")]
    {
        // The declared type is ignored: the bytes decide.
        let (status, body) =
            upload(&app, "/api/v1/me/avatar", &token, encoded(640, 400, format), "application/octet-stream").await;
        assert_eq!(status, 200, "{mime}: {body}");
        let url = body["avatar_url"].as_str().unwrap().to_owned();
        let response = app.client.get(app.url(&url)).send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "image/jpeg");
        let served = response.bytes().await.unwrap();
        let decoded = image::load_from_memory(&served).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (256, 256), "{mime} resized");
        assert_eq!(image::guess_format(&served).unwrap(), ImageFormat::Jpeg, "{mime} re-encoded");
    }
    let (status, body) =
        upload(&app, "/api/v1/me/banner", &token, encoded(300, 200, ImageFormat::Png), "image/png").await;
    assert_eq!(status, 200, "{body}");
    let banner =
        app.client.get(app.url(body["banner_url"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(image::load_from_memory(&banner).unwrap().width(), 1500);

    // A 50-megapixel picture (a few kB of PNG that would take 150 MB to decode).
    let bomb = encoded(7100, 7100, ImageFormat::Png);
    assert!(bomb.len() < 10 << 20);
    let (status, body) = upload(&app, "/api/v1/me/avatar", &token, bomb, "image/png").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_image")), "{body}");
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>"#.to_vec();
    let (status, body) = upload(&app, "/api/v1/me/avatar", &token, svg, "image/svg+xml").await;
    assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_image")), "{body}");
    let exe = [&b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0"[..], &[0x90u8; 4096]].concat();
    let (status, _) = upload(&app, "/api/v1/me/avatar", &token, exe, "image/png").await;
    assert_eq!(status, 415, "an executable renamed .png");
    let (status, body) = upload(&app, "/api/v1/me/avatar", &token, vec![0xff; (10 << 20) + 10], "image/jpeg").await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("too_large")), "{body}");
    let (status, _) = upload(&app, "/api/v1/me/avatar", &token, Vec::new(), "image/png").await;
    assert_eq!(status, 422);
    // The last good picture is still the one shown.
    let (_, profile) = app.get("/api/v1/users/selfie", None).await;
    assert!(
        app.client.get(app.url(profile["avatar_url"].as_str().unwrap())).send().await.unwrap().status().is_success()
    );

    let (status, profile) = app.send(Method::DELETE, "/api/v1/me/avatar", Some(&token), Value::Null).await;
    assert_eq!((status, profile["avatar_url"].is_null()), (200, true));
    assert_eq!(app.client.get(app.url("/u/selfie/avatar.jpg")).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(app.url("/u/selfie/other.jpg")).send().await.unwrap().status(), 404);
    app.stop().await;
}

async fn deleting_an_account_takes_its_content_and_media(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("leaver").await;
    app.create_channel(&token, "leaver_tv").await;
    let fan = app.signup("stayer").await;
    app.send(Method::PUT, "/api/v1/channels/leaver_tv/follow", Some(&fan), Value::Null).await;
    let (status, _) = upload(&app, "/api/v1/me/avatar", &token, encoded(64, 64, ImageFormat::Png), "image/png").await;
    assert_eq!(status, 200);
    let user_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE username = 'leaver'")
        .fetch_one(app.state.db().pool())
        .await
        .unwrap();
    let key = format!("profiles/{user_id}/avatar.jpg");
    assert!(app.state.storage().get(&key).await.is_ok());

    let (status, _) = app.send(Method::DELETE, "/api/v1/me", Some(&token), json!({"password": "wrong"})).await;
    assert_eq!(status, 403);
    let (status, body) =
        app.send(Method::DELETE, "/api/v1/me", Some(&token), json!({"password": "password-of-leaver"})).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.0, 401, "signed out");
    assert_eq!(app.get("/api/v1/users/leaver", None).await.0, 404);
    assert_eq!(app.get("/api/v1/channels/leaver_tv", None).await.0, 404, "the channel went with it");
    let (_, following) = app.get("/api/v1/me/following", Some(&fan)).await;
    assert_eq!(following["items"], json!([]));
    let gone =
        eventually(Duration::from_secs(10), || async { app.state.storage().get(&key).await.is_err().then_some(()) })
            .await;
    assert!(gone.is_some(), "the stored picture was purged");
    // The name is free again.
    app.signup("leaver").await;
    app.stop().await;
}

async fn a_data_export_is_made_and_only_its_owner_downloads_it(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("archivist").await;
    app.create_channel(&token, "archive_tv").await;
    app.patch("/api/v1/me/profile", Some(&token), json!({"bio": "keeps everything"})).await;
    let (status, export) = app.post("/api/v1/me/export", Some(&token), Value::Null).await;
    assert_eq!(status, 202, "{export}");
    let id = export["id"].as_i64().unwrap();
    let ready = eventually(Duration::from_secs(10), || async {
        let (_, list) = app.get("/api/v1/me/exports", Some(&token)).await;
        (list["items"][0]["status"] == "ready").then_some(list)
    })
    .await;
    assert!(ready.is_some(), "the export job ran");
    let response =
        app.client.get(app.url(&format!("/api/v1/me/exports/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["account"]["username"], "archivist");
    assert_eq!(document["profile"]["bio"], "keeps everything");
    assert_eq!(document["channels"][0]["name"], "archive_tv");
    assert!(document["account"].get("password_hash").is_none());

    let snoop = app.signup("snooper").await;
    let response =
        app.client.get(app.url(&format!("/api/v1/me/exports/{id}"))).bearer_auth(&snoop).send().await.unwrap();
    assert_eq!(response.status(), 404, "another user's export is not found");
    app.stop().await;
}

//! Search and discovery on both databases: channels found by a word of their name, title,
//! category or tags (and no longer by a word their title lost), users by username prefix and
//! display name, public VODs only, ranked and paged; hostile queries are text, never errors;
//! live channels browsed by category and tag, and the categories list.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Backend, Publisher, TestApp, eventually};

on_both_backends!(
    channels_users_and_vods_are_found_by_their_words,
    hostile_queries_are_text_not_errors,
    live_channels_are_browsed_by_category_and_tag,
);

async fn names(app: &TestApp, path: &str, field: &str) -> Vec<String> {
    let (status, body) = app.get(path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body["items"].as_array().unwrap().iter().map(|item| item[field].as_str().unwrap().to_owned()).collect()
}

async fn channels_users_and_vods_are_found_by_their_words(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("chef").await;
    app.create_channel(&token, "cooking_tv").await;
    app.patch(
        "/api/v1/channels/cooking_tv",
        Some(&token),
        json!({"title": "Sourdough bread at dawn", "category": "Food", "tags": ["baking", "Français"]}),
    )
    .await;
    let other = app.signup("gamer").await;
    app.create_channel(&other, "speedruns").await;
    app.patch(
        "/api/v1/channels/speedruns",
        Some(&other),
        json!({"title": "Any% world record attempts", "category": "Games"}),
    )
    .await;

    assert_eq!(names(&app, "/api/v1/search?q=sourdough", "name").await, ["cooking_tv"]);
    assert_eq!(names(&app, "/api/v1/search?q=SOURDOUGH%20Bread", "name").await, ["cooking_tv"], "every word, any case");
    assert_eq!(names(&app, "/api/v1/search?q=sour", "name").await, ["cooking_tv"], "as you type");
    assert_eq!(names(&app, "/api/v1/search?q=cooking", "name").await, ["cooking_tv"], "by name");
    assert_eq!(names(&app, "/api/v1/search?q=baking", "name").await, ["cooking_tv"], "by tag");
    assert_eq!(names(&app, "/api/v1/search?q=fran%C3%A7ais", "name").await, ["cooking_tv"], "accents kept");
    assert_eq!(names(&app, "/api/v1/search?q=games&type=channels", "name").await, ["speedruns"], "by category");
    assert!(names(&app, "/api/v1/search?q=sourdough%20record", "name").await.is_empty());

    // Edits reach the index.
    app.patch("/api/v1/channels/cooking_tv", Some(&token), json!({"title": "Ramen from scratch"})).await;
    assert!(names(&app, "/api/v1/search?q=sourdough", "name").await.is_empty());
    assert_eq!(names(&app, "/api/v1/search?q=ramen", "name").await, ["cooking_tv"]);

    // Users: the exact username first, then names starting with it, then display names.
    app.signup("chefette").await;
    let fan = app.signup("foodie").await;
    app.patch("/api/v1/me/profile", Some(&fan), json!({"display_name": "Chef Watcher"})).await;
    assert_eq!(names(&app, "/api/v1/search?q=chef&type=users", "username").await, ["chef", "chefette", "foodie"]);
    assert_eq!(names(&app, "/api/v1/search?q=watcher&type=users", "username").await, ["foodie"]);

    // VODs: public ones, by title.
    let db = app.state.db().pool();
    for (n, (title, visibility)) in
        [("Bread shaping live", "public"), ("Bread secrets", "private"), ("Bread again", "public")].iter().enumerate()
    {
        let session: i64 = sqlx::query_scalar(
            "INSERT INTO stream_sessions (channel_id, started_at, ended_at) SELECT id, 1, 2 FROM channels WHERE name = 'cooking_tv' RETURNING id",
        )
        .fetch_one(db)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO vods (channel_id, session_id, public_id, title, status, visibility, created_at) \
             SELECT id, $1, $2, $3, 'ready', $4, $5 FROM channels WHERE name = 'cooking_tv'",
        )
        .bind(session)
        .bind(format!("vodsearch{n:05}"))
        .bind(*title)
        .bind(*visibility)
        .bind(n as i64)
        .execute(db)
        .await
        .unwrap();
    }
    let mut found = names(&app, "/api/v1/search?q=bread&type=vods", "title").await;
    found.sort();
    assert_eq!(found, ["Bread again", "Bread shaping live"], "the private one is not found");

    // Paging: one at a time, each once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/search?q=bread&type=vods&limit=1".to_owned();
    loop {
        let (_, page) = app.get(&path, None).await;
        seen.extend(page["items"].as_array().unwrap().iter().map(|v| v["title"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/search?q=bread&type=vods&limit=1&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["Bread again", "Bread shaping live"]);
    app.stop().await;
}

async fn hostile_queries_are_text_not_errors(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("near").await;
    app.create_channel(&token, "near_tv").await;
    for q in [
        "%22",
        "*",
        "NEAR(",
        "near(a b)",
        "'%3B DROP TABLE channels%3B --",
        "a:*%26!b",
        "%5C",
        "(((",
        "OR",
        "-",
        "^a",
        "col:value",
        "%00",
    ] {
        for kind in ["channels", "users", "vods", "clips"] {
            let path = format!("/api/v1/search?q={q}&type={kind}");
            let (status, body) = app.get(&path, None).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert!(body["items"].is_array(), "{body}");
        }
    }
    assert_eq!(names(&app, "/api/v1/search?q=NEAR(", "name").await, ["near_tv"], "an operator's name is just a word");
    let long = "a".repeat(201);
    assert_eq!(app.get(&format!("/api/v1/search?q={long}"), None).await.0, 422);
    assert_eq!(app.get("/api/v1/search?q=a&type=posts", None).await.0, 422);
    assert_eq!(app.get("/api/v1/search?q=a&cursor=zz", None).await.0, 422);
    assert_eq!(app.get("/api/v1/search?q=a&cursor=393939393939", None).await.0, 422, "beyond the last page");
    let (status, body) = app.get("/api/v1/search", None).await;
    assert_eq!((status, body["items"].clone()), (200, Value::Array(vec![])));
    app.stop().await;
}

async fn live_channels_are_browsed_by_category_and_tag(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |config| config.transcode.enabled = false).await else { return };
    let token = app.signup("painter").await;
    let key = app.create_channel(&token, "paint_live").await;
    app.patch("/api/v1/channels/paint_live", Some(&token), json!({"category": "Art", "tags": ["Watercolor"]})).await;
    let idle = app.signup("idler").await;
    app.create_channel(&idle, "idle_art").await;
    app.patch("/api/v1/channels/idle_art", Some(&idle), json!({"category": "Art"})).await;

    let rtmp = app.rtmp_addr;
    let publisher = tokio::task::spawn_blocking(move || {
        let fast = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"];
        Publisher::start_sized(rtmp, &key, 8, "320x240", &fast).wait(Duration::from_secs(60))
    });
    let live = eventually(Duration::from_secs(15), || async {
        let (_, body) = app.get("/api/v1/channels?live=true&category=art", None).await;
        (body["channels"].as_array().unwrap().len() == 1).then_some(body)
    })
    .await
    .expect("the live channel is listed under its category");
    assert_eq!(live["channels"][0]["name"], "paint_live");
    let (_, by_tag) = app.get("/api/v1/channels?live=true&tag=watercolor", None).await;
    assert_eq!(by_tag["channels"][0]["name"], "paint_live");
    let (_, none) = app.get("/api/v1/channels?live=true&category=Music", None).await;
    assert_eq!(none["channels"], json!([]));

    let (status, categories) = app.get("/api/v1/categories", None).await;
    assert_eq!(status, 200);
    assert_eq!(categories["items"][0]["name"], "Art");
    assert_eq!(categories["items"][0]["live_channels"], 1);
    assert_eq!(categories["items"][0]["channels"], 2);
    publisher.await.unwrap();
    app.stop().await;
}

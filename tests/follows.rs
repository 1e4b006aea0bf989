//! Follows and blocks over the API, on both databases: idempotent follow and unfollow, counts,
//! the creator's follower list (theirs alone) and the viewer's following list, paged; the
//! per-channel notification level; blocking (no follow, no chat).

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, TestApp};

on_both_backends!(
    following_is_idempotent_and_counted_and_unfollowing_too,
    the_follower_list_is_the_owners_alone_and_pages_by_cursor,
    the_following_list_shows_the_channels_with_their_state,
    a_blocked_user_cannot_follow_and_loses_their_follow,
);

async fn put(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    app.send(Method::PUT, path, Some(token), Value::Null).await
}

async fn delete(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    app.send(Method::DELETE, path, Some(token), Value::Null).await
}

async fn following_is_idempotent_and_counted_and_unfollowing_too(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("streamer").await;
    app.create_channel(&owner, "streamer_tv").await;
    let fan = app.signup("fan").await;

    let (status, body) = app.get("/api/v1/channels/streamer_tv/follow", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"followers": 0, "following": null, "followed_at": null, "notify": null}));

    for _ in 0..2 {
        let (status, body) = put(&app, "/api/v1/channels/streamer_tv/follow", &fan).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["followers"], 1, "following twice counts once: {body}");
        assert_eq!(body["following"], true);
        assert_eq!(body["notify"], "all");
    }
    let (status, body) = put(&app, "/api/v1/channels/streamer_tv/follow", &owner).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("own_channel")));
    assert_eq!(put(&app, "/api/v1/channels/nobody_here/follow", &fan).await.0, 404);
    assert_eq!(app.send(Method::PUT, "/api/v1/channels/streamer_tv/follow", None, Value::Null).await.0, 401);

    let (status, body) = app.patch("/api/v1/channels/streamer_tv/follow", Some(&fan), json!({"notify": "live"})).await;
    assert_eq!((status, body["notify"].as_str()), (200, Some("live")), "{body}");
    let (status, _) = app.patch("/api/v1/channels/streamer_tv/follow", Some(&fan), json!({"notify": "loud"})).await;
    assert_eq!(status, 422, "an unknown level is refused");

    for _ in 0..2 {
        let (status, body) = delete(&app, "/api/v1/channels/streamer_tv/follow", &fan).await;
        assert_eq!(status, 200);
        assert_eq!((body["followers"].as_i64(), body["following"].as_bool()), (Some(0), Some(false)));
    }
    let (status, _) = app.patch("/api/v1/channels/streamer_tv/follow", Some(&fan), json!({"notify": "off"})).await;
    assert_eq!(status, 409, "no level without a follow");
    app.stop().await;
}

async fn the_follower_list_is_the_owners_alone_and_pages_by_cursor(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("bigstreamer").await;
    app.create_channel(&owner, "big_tv").await;
    for n in 0..5 {
        let fan = app.signup(&format!("fan{n}")).await;
        assert_eq!(put(&app, "/api/v1/channels/big_tv/follow", &fan).await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let stranger = app.signup("stranger").await;
    assert_eq!(app.get("/api/v1/channels/big_tv/followers", Some(&stranger)).await.0, 404);
    assert_eq!(app.get("/api/v1/channels/big_tv/followers", None).await.0, 401);

    let mut names = Vec::new();
    let mut path = "/api/v1/channels/big_tv/followers?limit=2".to_owned();
    loop {
        let (status, page) = app.get(&path, Some(&owner)).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(items.iter().map(|item| {
            assert!(item["followed_at"].as_i64().unwrap() > 0);
            item["username"].as_str().unwrap().to_owned()
        }));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/channels/big_tv/followers?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["fan4", "fan3", "fan2", "fan1", "fan0"], "newest first, each once");
    assert_eq!(app.get("/api/v1/channels/big_tv/followers?cursor=zz", Some(&owner)).await.0, 422);
    assert_eq!(app.get("/api/v1/channels/big_tv/followers?limit=101", Some(&owner)).await.0, 422);
    app.stop().await;
}

async fn the_following_list_shows_the_channels_with_their_state(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let fan = app.signup("watcher").await;
    for name in ["one_tv", "two_tv", "three_tv"] {
        let owner = app.signup(&name.replace("_tv", "owner")).await;
        app.create_channel(&owner, name).await;
        assert_eq!(put(&app, &format!("/api/v1/channels/{name}/follow"), &fan).await.0, 200);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let (status, page) = app.get("/api/v1/me/following?limit=2", Some(&fan)).await;
    assert_eq!(status, 200, "{page}");
    let first: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|i| i["channel"]["name"].as_str().unwrap()).collect();
    assert_eq!(first, ["three_tv", "two_tv"]);
    assert_eq!(page["items"][0]["channel"]["live"], false);
    assert_eq!(page["items"][0]["notify"], "all");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app.get(&format!("/api/v1/me/following?limit=2&cursor={cursor}"), Some(&fan)).await;
    assert_eq!(rest["items"][0]["channel"]["name"], "one_tv");
    assert!(rest["next_cursor"].is_null());
    app.stop().await;
}

async fn a_blocked_user_cannot_follow_and_loses_their_follow(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("blocker").await;
    app.create_channel(&owner, "blocker_tv").await;
    let troll = app.signup("troll").await;
    assert_eq!(put(&app, "/api/v1/channels/blocker_tv/follow", &troll).await.0, 200);

    let (status, body) = put(&app, "/api/v1/users/troll/block", &owner).await;
    assert_eq!((status, body["blocked"].as_bool()), (200, Some(true)), "{body}");
    assert_eq!(put(&app, "/api/v1/users/troll/block", &owner).await.0, 200, "idempotent");
    assert_eq!(put(&app, "/api/v1/users/blocker/block", &owner).await.0, 409, "not oneself");
    assert_eq!(put(&app, "/api/v1/users/nobody_at_all/block", &owner).await.0, 404);

    let (_, state) = app.get("/api/v1/channels/blocker_tv/follow", Some(&troll)).await;
    assert_eq!((state["followers"].as_i64(), state["following"].as_bool()), (Some(0), Some(false)));
    let (status, body) = put(&app, "/api/v1/channels/blocker_tv/follow", &troll).await;
    assert_eq!(status, 403, "{body}");
    let (_, blocks) = app.get("/api/v1/me/blocks", Some(&owner)).await;
    assert_eq!(blocks["items"][0]["username"], "troll");

    // Nor can they chat in the blocker's channel, or see the blocker's messages anywhere.
    let mut ws = support::ws::Ws::connect(&app, Some(&troll)).await;
    ws.join("blocker_tv").await;
    ws.send(json!({"type": "send", "room": "blocker_tv", "text": "hi"})).await;
    assert_eq!(ws.next("error").await["code"], "banned");
    let mut anyone = support::ws::Ws::connect(&app, None).await;
    anyone.join("blocker_tv").await;
    let mut blocker = support::ws::Ws::connect(&app, Some(&owner)).await;
    blocker.join("blocker_tv").await;
    blocker.say("blocker_tv", "not for the troll").await;
    blocker.say("blocker_tv", "nor this").await;
    assert_eq!(anyone.next("msg").await["text"], "not for the troll", "others get it");
    let other = app.signup("bystander").await;
    let mut bystander = support::ws::Ws::connect(&app, Some(&other)).await;
    bystander.join("blocker_tv").await;
    bystander.say("blocker_tv", "a bystander speaks").await;
    assert_eq!(ws.next("msg").await["text"], "a bystander speaks", "the troll got nothing of the blocker's");
    let mut again = support::ws::Ws::connect(&app, Some(&troll)).await;
    let history = again.join("blocker_tv").await["history"].clone();
    let texts: Vec<&str> = history.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["a bystander speaks"], "nor in the history");

    assert_eq!(delete(&app, "/api/v1/users/troll/block", &owner).await.0, 200);
    assert_eq!(put(&app, "/api/v1/channels/blocker_tv/follow", &troll).await.0, 200, "unblocked: may follow again");
    app.stop().await;
}

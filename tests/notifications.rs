//! Notifications on both databases: a new follower tells the owner once, in real time over the
//! `@me` room; reading, counting and paging; preferences; go-live reaches each follower who wants
//! it exactly once, across a publisher's reconnect and a restart within the cooldown; the fan-out
//! pages through followers and resumes where it stopped.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::ws::Ws;
use support::{Backend, Publisher, TestApp, eventually};

on_both_backends!(
    a_new_follower_tells_the_owner_once_in_real_time,
    reading_counting_and_paging_are_the_users_own,
    the_me_room_is_for_signed_in_users_and_carries_no_chat,
    go_live_reaches_each_willing_follower_once_across_a_reconnect,
    the_go_live_fan_out_pages_through_followers_and_resumes,
    a_mention_in_chat_tells_the_user_named_unless_they_blocked_the_sender,
);

async fn a_mention_in_chat_tells_the_user_named_unless_they_blocked_the_sender(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("hostess").await;
    app.create_channel(&owner, "hostess_tv").await;
    let talker = app.signup("talker").await;
    let named = app.signup("named").await;
    let guarded = app.signup("guarded").await;
    app.send(Method::PUT, "/api/v1/users/talker/block", Some(&guarded), Value::Null).await;
    let mut bell = Ws::connect(&app, Some(&named)).await;
    bell.join("@me").await;
    let mut chat = Ws::connect(&app, Some(&talker)).await;
    chat.join("hostess_tv").await;
    chat.say("hostess_tv", "hey @Named and @guarded, and me @talker, mail x@named.com").await;
    let frame = bell.next("notification").await;
    assert_eq!(frame["notification"]["kind"], "mention", "{frame}");
    assert_eq!(frame["notification"]["data"]["from"], "talker");
    assert_eq!(frame["notification"]["data"]["room"], "hostess_tv");
    aether::jobs::run_pending(&app.state).await;
    let mentions = |items: Vec<Value>| items.into_iter().filter(|n| n["kind"] == "mention").count();
    assert_eq!(mentions(notifications(&app, &named).await), 1, "once, though named twice (once in an address)");
    assert_eq!(mentions(notifications(&app, &guarded).await), 0, "they blocked the sender");
    assert_eq!(mentions(notifications(&app, &talker).await), 0, "not oneself");
    app.stop().await;
}

async fn follow(app: &TestApp, channel: &str, token: &str) {
    let (status, body) =
        app.send(Method::PUT, &format!("/api/v1/channels/{channel}/follow"), Some(token), Value::Null).await;
    assert_eq!(status, 200, "{body}");
}

async fn notifications(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = app.get("/api/v1/me/notifications?limit=100", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn unread(app: &TestApp, token: &str) -> i64 {
    app.get("/api/v1/me/notifications/unread-count", Some(token)).await.1["count"].as_i64().unwrap()
}

async fn a_new_follower_tells_the_owner_once_in_real_time(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("owner").await;
    app.create_channel(&owner, "owner_tv").await;
    let mut bell = Ws::connect(&app, Some(&owner)).await;
    let joined = bell.join("@me").await;
    assert_eq!(joined["room"], "@me");

    let fan = app.signup("firstfan").await;
    follow(&app, "owner_tv", &fan).await;
    let frame = bell.next("notification").await;
    assert_eq!(frame["notification"]["kind"], "new_follower", "{frame}");
    assert_eq!(frame["notification"]["data"], json!({"follower": "firstfan", "channel": "owner_tv"}));

    // Unfollow and follow again: no second notification for the same pair.
    app.send(Method::DELETE, "/api/v1/channels/owner_tv/follow", Some(&fan), Value::Null).await;
    follow(&app, "owner_tv", &fan).await;
    aether::jobs::run_pending(&app.state).await;
    assert_eq!(notifications(&app, &owner).await.len(), 1);

    // Turned off in the settings: nothing.
    let (status, settings) = app
        .send(
            Method::PUT,
            "/api/v1/me/notification-settings",
            Some(&owner),
            json!({"kinds": [{"kind": "new_follower", "in_app": false, "email": false}]}),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    let kinds = settings["kinds"].as_array().unwrap();
    let new_follower = kinds.iter().find(|k| k["kind"] == "new_follower").unwrap();
    assert_eq!((new_follower["in_app"].as_bool(), new_follower["email"].as_bool()), (Some(false), Some(false)));
    let go_live = kinds.iter().find(|k| k["kind"] == "go_live").unwrap();
    assert_eq!(go_live["in_app"], true, "other kinds keep their defaults");
    let second = app.signup("secondfan").await;
    follow(&app, "owner_tv", &second).await;
    aether::jobs::run_pending(&app.state).await;
    assert_eq!(notifications(&app, &owner).await.len(), 1, "no notification once turned off");
    app.stop().await;
}

async fn reading_counting_and_paging_are_the_users_own(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |config| config.jobs.run = false).await else { return };
    let owner = app.signup("popular").await;
    app.create_channel(&owner, "popular_tv").await;
    for n in 0..5 {
        let fan = app.signup(&format!("reader{n}")).await;
        follow(&app, "popular_tv", &fan).await;
    }
    // Five new-follower jobs (and the signups' verification emails).
    assert!(aether::jobs::run_pending(&app.state).await >= 5);
    assert_eq!(unread(&app, &owner).await, 5);
    let all = notifications(&app, &owner).await;
    let ids: Vec<i64> = all.iter().map(|n| n["id"].as_i64().unwrap()).collect();

    // Another user cannot mark them read (their ids match nothing of theirs).
    let other = app.signup("snoop").await;
    let (status, body) = app.post("/api/v1/me/notifications/read", Some(&other), json!({"ids": ids})).await;
    assert_eq!((status, body["count"].as_i64()), (200, Some(0)));
    assert!(notifications(&app, &other).await.is_empty());
    assert_eq!(unread(&app, &owner).await, 5);

    // Two read: the unread come first, newest first within each group.
    let (status, body) =
        app.post("/api/v1/me/notifications/read", Some(&owner), json!({"ids": [ids[0], ids[1]]})).await;
    assert_eq!((status, body["count"].as_i64()), (200, Some(3)));
    let mut seen = Vec::new();
    let mut path = "/api/v1/me/notifications?limit=2".to_owned();
    loop {
        let (_, page) = app.get(&path, Some(&owner)).await;
        for item in page["items"].as_array().unwrap() {
            seen.push((item["read_at"].is_null(), item["id"].as_i64().unwrap()));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/me/notifications?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<(bool, i64)> = ids.iter().map(|&id| (id != ids[0] && id != ids[1], id)).collect();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    assert_eq!(seen, expected, "unread first, each once");

    let (status, _) = app.post("/api/v1/me/notifications/read", Some(&owner), json!({"ids": [1], "all": true})).await;
    assert_eq!(status, 422, "ids or all, not both");
    let (_, body) = app.post("/api/v1/me/notifications/read", Some(&owner), json!({"all": true})).await;
    assert_eq!(body["count"], 0);
    assert_eq!(app.get("/api/v1/me/notifications", None).await.0, 401);
    app.stop().await;
}

async fn the_me_room_is_for_signed_in_users_and_carries_no_chat(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let user = app.signup("lonely").await;
    let mut anonymous = Ws::connect(&app, None).await;
    anonymous.send(json!({"type": "join", "room": "@me"})).await;
    assert_eq!(anonymous.next("error").await["code"], "unauthorized");
    let mut ws = Ws::connect(&app, Some(&user)).await;
    ws.join("@me").await;
    ws.send(json!({"type": "send", "room": "@me", "text": "hello?"})).await;
    assert_eq!(ws.next("error").await["code"], "bad_request");
    ws.send(json!({"type": "ban", "room": "@me", "user": "lonely"})).await;
    assert_eq!(ws.next("error").await["code"], "bad_request");
    ws.send(json!({"type": "leave", "room": "@me"})).await;
    assert_eq!(ws.next("left").await["room"], "@me");
    app.stop().await;
}

fn publish(app: &TestApp, key: &str, seconds: u32) -> tokio::task::JoinHandle<(bool, String)> {
    let (rtmp, key) = (app.rtmp_addr, key.to_owned());
    tokio::task::spawn_blocking(move || {
        let fast = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"];
        Publisher::start_sized(rtmp, &key, seconds, "320x240", &fast).wait(Duration::from_secs(60))
    })
}

async fn go_live_count(app: &TestApp, token: &str) -> usize {
    notifications(app, token).await.iter().filter(|n| n["kind"] == "go_live").count()
}

async fn go_live_reaches_each_willing_follower_once_across_a_reconnect(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |config| {
        config.live.reconnect_grace_seconds = 3;
        config.transcode.enabled = false;
    })
    .await
    else {
        return;
    };
    let owner = app.signup("caster").await;
    let key = app.create_channel(&owner, "caster_tv").await;
    let keen = app.signup("keen").await;
    let muted = app.signup("muted").await;
    let quiet = app.signup("quiet").await;
    let outsider = app.signup("outsider").await;
    for fan in [&keen, &muted, &quiet] {
        follow(&app, "caster_tv", fan).await;
    }
    app.patch("/api/v1/channels/caster_tv/follow", Some(&muted), json!({"notify": "off"})).await;
    app.send(
        Method::PUT,
        "/api/v1/me/notification-settings",
        Some(&quiet),
        json!({"kinds": [{"kind": "go_live", "in_app": false, "email": false}]}),
    )
    .await;
    let mut bell = Ws::connect(&app, Some(&keen)).await;
    bell.join("@me").await;

    // Live, dropped, back within the grace: one broadcast.
    let first = publish(&app, &key, 3);
    let frame = bell.next("notification").await;
    assert_eq!(frame["notification"]["kind"], "go_live", "{frame}");
    assert_eq!(frame["notification"]["data"]["channel"], "caster_tv");
    assert!(first.await.unwrap().0);
    let second = publish(&app, &key, 2);
    assert!(second.await.unwrap().0);
    // After the grace it ends; a new broadcast within the cooldown notifies nobody either.
    let offline = eventually(Duration::from_secs(10), || async {
        app.get("/api/v1/channels/caster_tv", None).await.1["live"].as_bool().filter(|live| !live).map(|_| ())
    })
    .await;
    assert!(offline.is_some(), "the broadcast ends after the grace");
    let third = publish(&app, &key, 2);
    assert!(third.await.unwrap().0);
    aether::jobs::run_pending(&app.state).await;

    assert_eq!(go_live_count(&app, &keen).await, 1, "one go-live per follower for the reconnect and the quick restart");
    assert_eq!(go_live_count(&app, &muted).await, 0, "follow level off");
    assert_eq!(go_live_count(&app, &quiet).await, 0, "in-app go-live turned off");
    assert_eq!(go_live_count(&app, &outsider).await, 0, "not a follower");
    app.stop().await;
}

async fn the_go_live_fan_out_pages_through_followers_and_resumes(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |config| config.jobs.run = false).await else { return };
    let owner = app.signup("famous").await;
    app.create_channel(&owner, "famous_tv").await;
    let db = app.state.db();
    // 2,500 followers, written straight to the database (signing up each would take minutes).
    let channel_id: i64 =
        sqlx::query_scalar("SELECT id FROM channels WHERE name = 'famous_tv'").fetch_one(db.pool()).await.unwrap();
    for chunk in 0..5 {
        let users: Vec<String> = (0..500)
            .map(|n| {
                let i = chunk * 500 + n;
                format!("('crowd{i}', 'crowd{i}@example.com', 'x', 0)")
            })
            .collect();
        let sql = format!("INSERT INTO users (username, email, password_hash, created_at) VALUES {}", users.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
    }
    let sql = format!(
        "INSERT INTO follows (user_id, channel_id, created_at) SELECT id, {channel_id}, 1 FROM users WHERE username LIKE 'crowd%'"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users WHERE username LIKE 'crowd%' ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();

    // A fan-out a crash stopped after its first 1,200 followers: it goes on from there.
    sqlx::query("INSERT INTO go_live_fanouts (session_id, channel_id, started_at, cursor) VALUES (4242, $1, $2, $3)")
        .bind(channel_id)
        .bind(aether::db::now_ms())
        .bind(ids[1199])
        .execute(db.pool())
        .await
        .unwrap();
    let mut tx = db.write().await.unwrap();
    aether::events::publish(
        &mut tx,
        &aether::events::Event::StreamStarted { channel: "famous_tv".into(), session_id: 4242 },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    aether::jobs::run_pending(&app.state).await;
    let made: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE kind = 'go_live'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(made, 1300, "the followers after the cursor, each once");
    let first_notified: i64 = sqlx::query_scalar("SELECT MIN(user_id) FROM notifications WHERE kind = 'go_live'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(first_notified, ids[1200]);
    let done: Option<i64> = sqlx::query_scalar("SELECT done_at FROM go_live_fanouts WHERE session_id = 4242")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(done.is_some());

    // Publishing the same event again (at least once delivery) changes nothing.
    let mut tx = db.write().await.unwrap();
    aether::events::publish(
        &mut tx,
        &aether::events::Event::StreamStarted { channel: "famous_tv".into(), session_id: 4242 },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    aether::jobs::run_pending(&app.state).await;
    let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE kind = 'go_live'")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(again, 1300);
    app.stop().await;
}

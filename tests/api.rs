//! The HTTP API against a real in-process server, each test on SQLite and on PostgreSQL:
//! accounts, sessions and CSRF, channels and stream keys, errors, throttling, restarts, ops.

mod support;

use aether::channels::keys::{self, StreamKey};
use aether::events::Event;
use aether::live::LivePublishers;
use aether_ingest::{PublishAuthority, PublishRequest, Refusal};
use serde_json::json;
use sqlx::Row;
use support::{Backend, TestApp, assert_error};

on_both_backends!(
    signup_returns_a_token_that_authenticates_me,
    a_duplicate_username_or_email_is_a_conflict,
    login_works_by_username_or_email_and_a_wrong_password_is_401,
    invalid_signup_fields_are_refused_with_422,
    a_cookie_session_reads_freely_but_writes_only_with_the_csrf_header,
    logout_ends_the_session,
    a_channel_is_created_with_a_key_that_is_shown_once_and_stored_hashed,
    only_the_owner_or_an_admin_may_edit_a_channel_or_rotate_its_key,
    channel_names_and_fields_are_validated,
    a_publisher_takes_its_channel_live_and_leaving_takes_it_offline,
    malformed_requests_get_json_errors_not_500,
    a_restart_keeps_users_channels_and_sessions,
    login_attempts_are_throttled_per_address,
    the_first_run_setup_url_creates_one_admin,
    health_readiness_and_metrics_answer,
);

async fn signup_returns_a_token_that_authenticates_me(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let body = json!({"username": "Alice", "email": "Alice@Example.com", "password": "hunter2hunter2"});
    let (status, reply) = app.post("/api/v1/auth/signup", None, body).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["user"]["username"], "alice");
    assert_eq!(reply["user"]["email"], "alice@example.com");
    assert_eq!(reply["user"]["role"], "user");
    assert!(reply["user"].get("password_hash").is_none());
    let token = reply["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);

    let (status, me) = app.get("/api/v1/me", Some(token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["username"], "alice");

    let (status, reply) = app.get("/api/v1/me", None).await;
    assert_eq!(status, 401);
    assert_error(&reply, "unauthorized");
    let (status, _) = app.get("/api/v1/me", Some(&"0".repeat(64))).await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/api/v1/me", Some("not a token")).await;
    assert_eq!(status, 401);

    // Only a hash of the session token is stored.
    let stored: Vec<String> = sqlx::query("SELECT token_hash FROM sessions")
        .fetch_all(app.state.db().pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("token_hash"))
        .collect();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token);
    app.stop().await;
}

async fn a_duplicate_username_or_email_is_a_conflict(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.signup("bob").await;
    let same_name = json!({"username": "BOB", "email": "other@example.com", "password": "long enough"});
    let (status, reply) = app.post("/api/v1/auth/signup", None, same_name).await;
    assert_eq!(status, 409);
    assert_error(&reply, "username_taken");
    let same_email = json!({"username": "bobby", "email": "Bob@Example.com", "password": "long enough"});
    let (status, reply) = app.post("/api/v1/auth/signup", None, same_email).await;
    assert_eq!(status, 409);
    assert_error(&reply, "email_taken");
    app.stop().await;
}

async fn login_works_by_username_or_email_and_a_wrong_password_is_401(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.signup("carol").await;
    for login in ["carol", "CAROL", "carol@example.com"] {
        let (status, reply) =
            app.post("/api/v1/auth/login", None, json!({"login": login, "password": "password-of-carol"})).await;
        assert_eq!(status, 200, "{login}: {reply}");
        let (status, _) = app.get("/api/v1/me", reply["token"].as_str()).await;
        assert_eq!(status, 200);
    }
    let (status, reply) = app.post("/api/v1/auth/login", None, json!({"login": "carol", "password": "wrong"})).await;
    assert_eq!(status, 401);
    assert_error(&reply, "unauthorized");
    let (status, _) = app.post("/api/v1/auth/login", None, json!({"login": "nobody", "password": "wrong"})).await;
    assert_eq!(status, 401);
    app.stop().await;
}

async fn invalid_signup_fields_are_refused_with_422(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let cases = [
        (json!({"username": "x", "email": "x@example.com", "password": "long enough"}), "invalid_username"),
        (json!({"username": "has space", "email": "x@example.com", "password": "long enough"}), "invalid_username"),
        (json!({"username": "xavier", "email": "not-an-email", "password": "long enough"}), "invalid_email"),
        (json!({"username": "xavier", "email": "x@example.com", "password": "short"}), "weak_password"),
    ];
    for (body, code) in cases {
        let (status, reply) = app.post("/api/v1/auth/signup", None, body).await;
        assert_eq!(status, 422, "{reply}");
        assert_error(&reply, code);
    }
    app.stop().await;
}

async fn a_cookie_session_reads_freely_but_writes_only_with_the_csrf_header(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    app.signup("dave").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": "dave", "password": "password-of-dave"}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> =
        response.headers().get_all("set-cookie").iter().map(|value| value.to_str().unwrap().to_owned()).collect();
    let session = cookies.iter().find(|c| c.starts_with("aether_session=")).expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("aether_csrf=")).expect("csrf cookie");
    assert!(!csrf_cookie.contains("HttpOnly"), "the page must be able to read the CSRF cookie");
    let (_, body) = support::read(response).await;
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let cookie_header = format!("{}; {}", session.split(';').next().unwrap(), csrf_cookie.split(';').next().unwrap());

    let me = app.client.get(app.url("/api/v1/me")).header("cookie", &cookie_header).send().await.unwrap();
    let (status, me) = support::read(me).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["username"], "dave");

    let create = |csrf: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/channels"))
            .header("cookie", &cookie_header)
            .json(&json!({"name": "daves_place"}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let (status, reply) = support::read(create(None).await.unwrap()).await;
    assert_eq!(status, 403);
    assert_error(&reply, "csrf_required");
    let (status, _) = support::read(create(Some(&"f".repeat(64))).await.unwrap()).await;
    assert_eq!(status, 403);
    let (status, reply) = support::read(create(Some(&csrf)).await.unwrap()).await;
    assert_eq!(status, 201, "{reply}");
    app.stop().await;
}

async fn logout_ends_the_session(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("erin").await;
    let (status, body) = app.post("/api/v1/auth/logout", Some(&token), json!({})).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 401);
    app.stop().await;
}

async fn a_channel_is_created_with_a_key_that_is_shown_once_and_stored_hashed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("frank").await;
    let (status, created) =
        app.post("/api/v1/channels", Some(&token), json!({"name": "franks_stream", "title": "Speedruns"})).await;
    assert_eq!(status, 201, "{created}");
    let key = created["stream_key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 32 + "franks_stream_".len(), "at least 128 random bits: {key}");
    assert_eq!(created["channel"]["name"], "franks_stream");
    assert_eq!(created["channel"]["owner"], "frank");
    assert_eq!(created["channel"]["live"], false);

    // A user may own several channels.
    app.create_channel(&token, "franks_second").await;

    let (status, public) = app.get("/api/v1/channels/franks_stream", None).await;
    assert_eq!(status, 200);
    assert_eq!(public["title"], "Speedruns");
    assert!(!public.to_string().contains(&key), "the public view leaks the key");
    assert!(public.get("stream_key").is_none() && public.get("stream_key_hash").is_none());
    let (_, listed) = app.get("/api/v1/channels", None).await;
    assert!(!listed.to_string().contains(&key));
    assert_eq!(listed["channels"].as_array().unwrap().len(), 2);
    let (_, mine) = app.get("/api/v1/me/channels", Some(&token)).await;
    assert_eq!(mine["channels"].as_array().unwrap().len(), 2);

    let stored: String = sqlx::query("SELECT stream_key_hash FROM channels WHERE name = 'franks_stream'")
        .fetch_one(app.state.db().pool())
        .await
        .unwrap()
        .get("stream_key_hash");
    assert!(!stored.contains(&key) && stored.len() == 64, "stored in clear: {stored}");

    let db = app.state.db();
    let verified = keys::verify(db, &StreamKey::from_publisher(&key)).await.unwrap();
    assert_eq!(verified.map(|(_, name)| name).as_deref(), Some("franks_stream"));
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('0') { '1' } else { '0' });
    assert!(keys::verify(db, &StreamKey::from_publisher(&wrong)).await.unwrap().is_none());
    assert!(keys::verify(db, &StreamKey::from_publisher("franks_stream")).await.unwrap().is_none());
    let (status, _) = app.get("/api/v1/channels/nobody_here", None).await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn only_the_owner_or_an_admin_may_edit_a_channel_or_rotate_its_key(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let owner = app.signup("gina").await;
    let other = app.signup("hank").await;
    let admin = app.signup("ivan").await;
    app.promote("ivan").await;
    let old_key = app.create_channel(&owner, "ginas_den").await;

    let (status, reply) = app.patch("/api/v1/channels/ginas_den", Some(&other), json!({"title": "pwned"})).await;
    assert_eq!(status, 403);
    assert_error(&reply, "forbidden");
    let (status, _) = app.post("/api/v1/channels/ginas_den/stream-key", Some(&other), json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = app.patch("/api/v1/channels/ginas_den", None, json!({"title": "anon"})).await;
    assert_eq!(status, 401);

    let edit = json!({"title": "Cozy games", "category": "Games", "tags": ["Cozy", "indie", "cozy"]});
    let (status, edited) = app.patch("/api/v1/channels/ginas_den", Some(&owner), edit).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["title"], "Cozy games");
    assert_eq!(edited["category"], "Games");
    assert_eq!(edited["tags"], json!(["cozy", "indie"]));
    let (status, edited) = app.patch("/api/v1/channels/ginas_den", Some(&admin), json!({"title": "Moderated"})).await;
    assert_eq!(status, 200);
    assert_eq!(edited["title"], "Moderated");
    assert_eq!(edited["category"], "Games", "fields left out keep their values");

    let (status, rotated) = app.post("/api/v1/channels/ginas_den/stream-key", Some(&owner), json!({})).await;
    assert_eq!(status, 200);
    let new_key = rotated["stream_key"].as_str().unwrap();
    assert_ne!(new_key, old_key);
    let db = app.state.db();
    assert!(keys::verify(db, &StreamKey::from_publisher(&old_key)).await.unwrap().is_none());
    assert!(keys::verify(db, &StreamKey::from_publisher(new_key)).await.unwrap().is_some());
    let (status, _) = app.post("/api/v1/channels/ginas_den/stream-key", Some(&admin), json!({})).await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn channel_names_and_fields_are_validated(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("judy").await;
    for (name, code) in [
        ("ab", "invalid_channel_name"),
        ("Judy", "invalid_channel_name"),
        ("judy-tv", "invalid_channel_name"),
        ("api", "reserved_channel_name"),
        ("dashboard", "reserved_channel_name"),
    ] {
        let (status, reply) = app.post("/api/v1/channels", Some(&token), json!({"name": name})).await;
        assert_eq!(status, 422, "{name}: {reply}");
        assert_error(&reply, code);
    }
    let (status, _) = app.post("/api/v1/channels", None, json!({"name": "judy_tv"})).await;
    assert_eq!(status, 401);
    app.create_channel(&token, "judy_tv").await;
    let other = app.signup("karl").await;
    let (status, reply) = app.post("/api/v1/channels", Some(&other), json!({"name": "judy_tv"})).await;
    assert_eq!(status, 409);
    assert_error(&reply, "channel_name_taken");
    let (status, reply) = app.patch("/api/v1/channels/judy_tv", Some(&token), json!({"title": "x".repeat(141)})).await;
    assert_eq!(status, 422);
    assert_error(&reply, "invalid_field");
    let (status, reply) = app.patch("/api/v1/channels/judy_tv", Some(&token), json!({"name": "renamed"})).await;
    assert_eq!(status, 422, "names cannot be changed: {reply}");
    let (status, _) = app.patch("/api/v1/channels/judy_tv", Some(&token), json!({"tags": ["bad tag"]})).await;
    assert_eq!(status, 422);
    let (status, _) = app.get("/api/v1/channels?limit=1000", None).await;
    assert_eq!(status, 422);
    app.stop().await;
}

async fn a_publisher_takes_its_channel_live_and_leaving_takes_it_offline(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("lena").await;
    let key = app.create_channel(&token, "lena_live").await;
    app.create_channel(&token, "lena_offline").await;
    let (_, live) = app.get("/api/v1/channels?live=true", None).await;
    assert_eq!(live["channels"], json!([]));

    let mut events = app.state.bus().subscribe();
    let publishers = LivePublishers::new(app.state.clone());
    let request = |key: &str| PublishRequest {
        app: "live".into(),
        stream_key: key.to_owned(),
        peer: "127.0.0.1:50000".parse().unwrap(),
    };
    assert_eq!(publishers.authorize(request("lena_live_nope")).await.unwrap_err(), Refusal::UnknownKey);
    let publication = publishers.authorize(request(&key)).await.expect("the key opens the channel");
    assert_eq!(publication.name, "lena_live");
    assert_eq!(publishers.authorize(request(&key)).await.unwrap_err(), Refusal::AlreadyLive);
    let Event::StreamStarted { channel, session_id } = events.recv().await.unwrap() else { panic!("not started") };
    assert_eq!(channel, "lena_live");

    let (_, live) = app.get("/api/v1/channels?live=true", None).await;
    let names: Vec<&str> = live["channels"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lena_live"]);
    assert_eq!(live["channels"][0]["live"], true);
    let (_, offline) = app.get("/api/v1/channels?live=false", None).await;
    assert_eq!(offline["channels"][0]["name"], "lena_offline");
    assert_eq!(offline["channels"].as_array().unwrap().len(), 1);
    let (_, one) = app.get("/api/v1/channels/lena_live", None).await;
    assert_eq!(one["live"], true);

    // The publisher leaves: offline, the session row closed, stream.ended announced.
    drop(publication);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
    assert_eq!(ended, Event::StreamEnded { channel: "lena_live".into(), session_id });
    let (_, one) = app.get("/api/v1/channels/lena_live", None).await;
    assert_eq!(one["live"], false);
    let row = sqlx::query("SELECT started_at, ended_at FROM stream_sessions WHERE id = $1")
        .bind(session_id)
        .fetch_one(app.state.db().pool())
        .await
        .unwrap();
    let (started, ended): (i64, Option<i64>) = (row.get("started_at"), row.get("ended_at"));
    assert!(ended.is_some_and(|ended| ended >= started));
    let (status, _) = app.get("/live/lena_live/master.m3u8", None).await;
    assert_eq!(status, 404);
    app.stop().await;
}

async fn malformed_requests_get_json_errors_not_500(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let signup = app.url("/api/v1/auth/signup");
    let raw = |body: &'static str, content_type: &'static str| {
        app.client.post(&signup).header("content-type", content_type).body(body).send()
    };
    let (status, reply) = support::read(raw("{not json", "application/json").await.unwrap()).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_json");
    let (status, reply) = support::read(raw(r#"{"username": "x"}"#, "application/json").await.unwrap()).await;
    assert_eq!(status, 422);
    assert_error(&reply, "invalid_body");
    assert!(reply["error"]["message"].as_str().unwrap().contains("email"), "names the missing field: {reply}");
    let (status, reply) =
        support::read(raw(r#"{"username": 5, "email": [], "password": null}"#, "application/json").await.unwrap())
            .await;
    assert_eq!(status, 422);
    assert_error(&reply, "invalid_body");
    let (status, reply) = support::read(raw(r#"{"username": "x"}"#, "text/plain").await.unwrap()).await;
    assert_eq!(status, 415);
    assert_error(&reply, "unsupported_media_type");

    let huge = format!(r#"{{"username": "{}", "email": "a@b.co", "password": "long enough"}}"#, "x".repeat(200_000));
    // The server answers before reading the whole body and closes that connection: keep it out
    // of the shared client's pool.
    let one_off = reqwest::Client::new();
    let response = one_off.post(&signup).header("content-type", "application/json").body(huge).send().await;
    let (status, reply) = support::read(response.unwrap()).await;
    assert_eq!(status, 413);
    assert_error(&reply, "payload_too_large");

    let (status, reply) = app.get("/api/v1/no/such/route", None).await;
    assert_eq!(status, 404);
    assert_error(&reply, "not_found");
    let (status, reply) = support::read(app.client.put(app.url("/api/v1/me")).send().await.unwrap()).await;
    assert_eq!(status, 405);
    assert_error(&reply, "method_not_allowed");
    let (status, reply) = app.get("/api/v1/channels?live=maybe", None).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_query");

    // Still serving after all that.
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn a_restart_keeps_users_channels_and_sessions(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let token = app.signup("mona").await;
    let key = app.create_channel(&token, "mona_tv").await;
    let app = app.restart().await;
    let (status, me) = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    let (status, _) =
        app.post("/api/v1/auth/login", None, json!({"login": "mona", "password": "password-of-mona"})).await;
    assert_eq!(status, 200);
    let (status, channel) = app.get("/api/v1/channels/mona_tv", None).await;
    assert_eq!(status, 200);
    assert_eq!(channel["owner"], "mona");
    assert!(keys::verify(app.state.db(), &StreamKey::from_publisher(&key)).await.unwrap().is_some());
    assert!(app.setup_url.is_none(), "no setup URL once users exist");
    app.stop().await;
}

async fn login_attempts_are_throttled_per_address(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |config| config.auth.attempts_per_minute = 3).await else { return };
    app.signup("nina").await;
    for _ in 0..2 {
        let (status, _) = app.post("/api/v1/auth/login", None, json!({"login": "nina", "password": "nope"})).await;
        assert_eq!(status, 401);
    }
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": "nina", "password": "password-of-nina"}))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    let (status, reply) = support::read(response).await;
    assert_eq!(status, 429);
    assert_error(&reply, "rate_limited");
    app.stop().await;
}

async fn the_first_run_setup_url_creates_one_admin(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let url = app.setup_url.clone().expect("an empty database gets a setup URL");
    let token = url.split("token=").nth(1).unwrap().to_owned();
    let page = app.client.get(app.url(&format!("/setup?token={token}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));

    let body = |token: &str| json!({"token": token, "username": "root", "email": "root@example.com", "password": "very secret"});
    let (status, reply) = app.post("/api/v1/setup", None, body("wrong")).await;
    assert_eq!(status, 403, "{reply}");
    let (status, reply) = app.post("/api/v1/setup", None, body(&token)).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["user"]["role"], "admin");
    let (status, me) = app.get("/api/v1/me", reply["token"].as_str()).await;
    assert_eq!((status, me["user"]["role"].as_str()), (200, Some("admin")));
    let (status, reply) = app.post("/api/v1/setup", None, body(&token)).await;
    assert_eq!(status, 410, "the token works once: {reply}");
    assert_error(&reply, "setup_done");
    app.stop().await;
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let (status, health) = app.get("/healthz", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["database"], "ok");
    app.get("/api/v1/channels/nobody_here", None).await;

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines().any(|line| line.starts_with("http_requests_total{")
            && line.contains(r#"route="/api/v1/channels/{name}""#)
            && line.contains(r#"status="404""#)),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds_bucket{"), "latency histogram");
    for name in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"] {
        assert!(text.lines().any(|line| line.starts_with(name)), "{name} missing");
    }

    // Readiness follows the database.
    app.state.db().close().await;
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 503);
    assert_eq!(ready["checks"]["database"], "unavailable");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, 200);
    app.stop().await;
}

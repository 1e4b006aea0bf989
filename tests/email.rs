//! Email against a real SMTP server (aiosmtpd), on both databases: the verification link at
//! signup, a password reset from the email's link (single use; the same answer for unknown
//! addresses; every session ends), a change of address confirmed from the new address, go-live
//! emails to verified followers who want them, once, and retries while the SMTP server is down.

mod support;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use support::smtp::SmtpServer;
use support::{Backend, Publisher, TestApp};

on_both_backends!(
    a_password_is_reset_from_the_emails_link_once,
    an_address_is_verified_and_changed_from_the_emails_links,
    go_live_emails_reach_verified_followers_who_want_them_once,
    an_email_waits_out_an_smtp_outage,
);

const WAIT: Duration = Duration::from_secs(10);

async fn app_with_mail(
    backend: Backend,
    tweak: impl FnOnce(&mut aether::config::Config),
) -> Option<(TestApp, SmtpServer)> {
    let smtp = SmtpServer::start()?;
    let app = TestApp::spawn_with(backend, |config| {
        smtp.configure(config);
        tweak(config);
    })
    .await?;
    Some((app, smtp))
}

/// The token of a link `/{page}?token=...`.
fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

async fn a_password_is_reset_from_the_emails_link_once(backend: Backend) {
    let Some((app, smtp)) = app_with_mail(backend, |_| {}).await else { return };
    let old_session = app.signup("forgetful").await;
    let mail = smtp.wait_for(1, WAIT).await;
    assert_eq!(mail.len(), 1, "the verification email at signup");
    assert_eq!(mail[0].to, "forgetful@example.com");

    let (status, known) =
        app.post("/api/v1/auth/password-reset", None, json!({"email": "Forgetful@Example.com"})).await;
    assert_eq!(status, 202);
    let (status, unknown) = app.post("/api/v1/auth/password-reset", None, json!({"email": "nobody@example.com"})).await;
    assert_eq!((status, &unknown), (202, &known), "the same answer whether or not the address has an account");
    let mail = smtp.wait_for(2, WAIT).await;
    assert_eq!(mail.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 2, "nothing for the unknown address");
    let reset = &mail[1];
    assert_eq!(reset.subject, "Reset your password");
    let link = reset.link("/reset-password").expect("a reset link");
    assert!(link.starts_with(&app.url("/reset-password?token=")), "{link}");

    // Asked again at once: no second email (throttled per account).
    app.post("/api/v1/auth/password-reset", None, json!({"email": "forgetful@example.com"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 2);

    let token = token_of(&link);
    let (status, body) =
        app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "password": "short"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("weak_password")));
    let (status, body) = app
        .post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "password": "a brand new secret"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.get("/api/v1/me", Some(&old_session)).await.0, 401, "every session ended");
    let (status, _) =
        app.post("/api/v1/auth/login", None, json!({"login": "forgetful", "password": "password-of-forgetful"})).await;
    assert_eq!(status, 401, "the old password is gone");
    let (status, me) =
        app.post("/api/v1/auth/login", None, json!({"login": "forgetful", "password": "a brand new secret"})).await;
    assert_eq!(status, 200);
    assert!(me["user"]["email_verified_at"].as_i64().is_some(), "the reset link proved the address");
    let (status, body) = app
        .post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "password": "yet another secret"}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_token")), "single use");
    let (status, _) = app
        .post("/api/v1/auth/password-reset/confirm", None, json!({"token": "\"*NEAR(", "password": "whatever123"}))
        .await;
    assert_eq!(status, 422);
    app.stop().await;
}

async fn an_address_is_verified_and_changed_from_the_emails_links(backend: Backend) {
    let Some((app, smtp)) = app_with_mail(backend, |_| {}).await else { return };
    let session = app.signup("mover").await;
    let (_, me) = app.get("/api/v1/me", Some(&session)).await;
    assert!(me["user"]["email_verified_at"].is_null());
    let mail = smtp.wait_for(1, WAIT).await;
    assert_eq!(mail[0].subject, "Confirm your email address");
    let verify = mail[0].link("/verify-email").expect("a verification link");
    let (status, body) = app.post("/api/v1/auth/verify-email", None, json!({"token": token_of(&verify)})).await;
    assert_eq!(status, 200, "{body}");
    let (_, me) = app.get("/api/v1/me", Some(&session)).await;
    assert!(me["user"]["email_verified_at"].as_i64().is_some());
    let (status, _) = app.post("/api/v1/me/email/verification", Some(&session), Value::Null).await;
    assert_eq!(status, 409, "verified already");

    let change = |email: &'static str, password: &'static str| {
        app.send(Method::PUT, "/api/v1/me/email", Some(&session), json!({"email": email, "password": password}))
    };
    assert_eq!(change("new@example.com", "wrong password").await.0, 403);
    assert_eq!(change("not an address", "password-of-mover").await.0, 422);
    app.signup("squatter").await;
    assert_eq!(change("squatter@example.com", "password-of-mover").await.0, 409);
    let (status, body) = change("new@example.com", "password-of-mover").await;
    assert_eq!(status, 202, "{body}");
    let mail = smtp.wait_for(3, WAIT).await;
    let confirm = mail.iter().find(|m| m.to == "new@example.com").expect("a message to the new address");
    assert_eq!(confirm.subject, "Confirm your new email address");
    let (_, me) = app.get("/api/v1/me", Some(&session)).await;
    assert_eq!(me["user"]["email"], "mover@example.com", "the old address until the new one is confirmed");
    let link = confirm.link("/verify-email").unwrap();
    assert_eq!(app.post("/api/v1/auth/verify-email", None, json!({"token": token_of(&link)})).await.0, 200);
    let (_, me) = app.get("/api/v1/me", Some(&session)).await;
    assert_eq!(me["user"]["email"], "new@example.com");
    assert_eq!(app.post("/api/v1/auth/verify-email", None, json!({"token": token_of(&link)})).await.0, 422);
    app.stop().await;
}

async fn verify(app: &TestApp, smtp: &SmtpServer, username: &str) {
    let to = format!("{username}@example.com");
    let deadline = tokio::time::Instant::now() + WAIT;
    let link = loop {
        if let Some(link) = smtp.messages().iter().filter(|m| m.to == to).find_map(|m| m.link("/verify-email")) {
            break link;
        }
        assert!(tokio::time::Instant::now() < deadline, "no verification email for {username}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(app.post("/api/v1/auth/verify-email", None, json!({"token": token_of(&link)})).await.0, 200);
}

async fn go_live_emails_reach_verified_followers_who_want_them_once(backend: Backend) {
    let Some((app, smtp)) = app_with_mail(backend, |config| config.transcode.enabled = false).await else { return };
    let owner = app.signup("broadcaster").await;
    let key = app.create_channel(&owner, "broadcast_tv").await;
    let mut fans = Vec::new();
    for name in ["eager", "noemail", "unproven"] {
        let token = app.signup(name).await;
        let (status, _) =
            app.send(Method::PUT, "/api/v1/channels/broadcast_tv/follow", Some(&token), Value::Null).await;
        assert_eq!(status, 200);
        fans.push(token);
    }
    verify(&app, &smtp, "eager").await;
    verify(&app, &smtp, "noemail").await;
    let (status, _) = app
        .send(
            Method::PUT,
            "/api/v1/me/notification-settings",
            Some(&fans[1]),
            json!({"kinds": [{"kind": "go_live", "in_app": true, "email": false}]}),
        )
        .await;
    assert_eq!(status, 200);
    let go_live_mail =
        |smtp: &SmtpServer| smtp.messages().into_iter().filter(|m| m.subject.contains(" is live")).collect::<Vec<_>>();

    let rtmp = app.rtmp_addr;
    let (ok, stderr) = tokio::task::spawn_blocking(move || {
        let fast = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0"];
        Publisher::start_sized(rtmp, &key, 3, "320x240", &fast).wait(Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while go_live_mail(&smtp).is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let go_live = go_live_mail(&smtp);
    assert_eq!(go_live.len(), 1, "one go-live email: {:?}", go_live.iter().map(|m| &m.to).collect::<Vec<_>>());
    assert_eq!(go_live[0].to, "eager@example.com");
    assert!(go_live[0].subject.starts_with("broadcast_tv is live"), "{}", go_live[0].subject);
    assert!(go_live[0].link("/broadcast_tv").is_some(), "a link to the channel");
    app.stop().await;
}

async fn an_email_waits_out_an_smtp_outage(backend: Backend) {
    let Some((app, mut smtp)) = app_with_mail(backend, |config| config.jobs.retry_base_ms = 300).await else { return };
    smtp.stop();
    app.signup("patient").await;
    // Tried and failed while the server is down: still queued, retried with backoff.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids = aether::jobs::lease::ids_of_kind(app.state.db(), "email.send").await.unwrap();
    assert_eq!(ids.len(), 1, "the email is kept");
    let row = aether::jobs::lease::find(app.state.db(), ids[0]).await.unwrap().unwrap();
    assert!(row.attempts >= 1 && row.last_error.is_some() && row.dead_at.is_none(), "{row:?}");
    smtp.resume();
    let mail = smtp.wait_for(1, WAIT).await;
    assert_eq!(mail.len(), 1, "sent once the server is back");
    assert_eq!(mail[0].to, "patient@example.com");
    app.stop().await;
}

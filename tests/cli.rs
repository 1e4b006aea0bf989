//! The `aether` binary as operators use it: `serve` (log line, env and flag overrides, setup URL,
//! RTMP port, graceful SIGTERM), `migrate`, `admin create`, `channel create`, `check`, JSON logs
//! and refusing a bad config.

mod support;

use support::process::{Server, aether, loopback_serve};

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use aether::channels::keys::{self, StreamKey};
use aether::config::{Config, Sources};
use aether::db::Db;
use serde_json::json;

#[tokio::test]
async fn serve_logs_its_addresses_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = aether(dir.path());
    // The env var sets the HTTP address, the flag the RTMP one (over the defaults :8080 / :1935).
    command.env("AETHER_HTTP__LISTEN", "127.0.0.1:0").args([
        "serve",
        "--rtmp-listen",
        "127.0.0.1:0",
        "--webrtc-listen",
        "127.0.0.1:0",
    ]);
    let mut server = Server::start(command);
    let (http, rtmp) = server.addresses();
    assert!(http.ip().is_loopback() && http.port() != 0, "{http}");
    assert!(rtmp.ip().is_loopback() && rtmp.port() != 0, "{rtmp}");

    let setup = server.wait_for("first-run setup");
    assert!(setup.contains(&format!("http://{http}/setup?token=")), "{setup}");
    let health = reqwest::get(format!("http://{http}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(dir.path().join("aether.db").exists(), "SQLite lives in the data dir");

    // The RTMP port answers a handshake: C0 (version 3) + C1 -> S0 starts with version 3.
    let mut socket = std::net::TcpStream::connect(rtmp).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[0u8; 1536]);
    socket.write_all(&hello).unwrap();
    let mut s0 = [0u8; 1];
    std::io::Read::read_exact(&mut socket, &mut s0).unwrap();
    assert_eq!(s0[0], 3);
    drop(socket);

    assert!(server.terminate(), "exit status 0 after SIGTERM");
}

#[tokio::test]
async fn migrate_admin_create_and_channel_create_prepare_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = aether(dir.path()).arg("migrate").output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));

    let mut admin = aether(dir.path())
        .args(["admin", "create", "--username", "Root", "--email", "root@example.com", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    admin.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    let admin = admin.wait_with_output().unwrap();
    assert!(admin.status.success(), "{}", String::from_utf8_lossy(&admin.stderr));

    let created = aether(dir.path()).args(["channel", "create", "root_tv", "--owner", "root"]).output().unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8(created.stdout).unwrap();
    let key = stdout.lines().find_map(|line| line.strip_prefix("stream key (shown once): ")).expect(&stdout);

    let unknown_owner =
        aether(dir.path()).args(["channel", "create", "ghost_tv", "--owner", "ghost"]).output().unwrap();
    assert!(!unknown_owner.status.success());
    assert!(String::from_utf8_lossy(&unknown_owner.stderr).contains("no user named"));

    // The key opens the channel; the admin can sign in to the server.
    let mut config = Config::embedded();
    config.data_dir = dir.path().to_path_buf();
    let db = Db::connect(&config).await.unwrap();
    let verified = keys::verify(&db, &StreamKey::from_publisher(key)).await.unwrap();
    assert_eq!(verified.map(|(_, name)| name).as_deref(), Some("root_tv"));
    db.close().await;

    let mut server = Server::start(loopback_serve(dir.path()));
    let (http, _) = server.addresses();
    let login = reqwest::Client::new()
        .post(format!("http://{http}/api/v1/auth/login"))
        .json(&json!({"login": "root@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let (status, body) = support::read(login).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert!(!server.seen.iter().any(|line| line.contains("first-run setup")), "no setup URL once an admin exists");
    assert!(server.terminate());
}

#[tokio::test]
async fn migrate_works_on_postgresql() {
    let Some(url) = support::fresh_postgres_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let migrate = aether(dir.path()).env("AETHER_DATABASE__URL", &url).arg("migrate").output().unwrap();
    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    let mut config = Config::load(Sources::default()).unwrap();
    config.database.url = Some(url);
    let db = Db::connect(&config).await.unwrap();
    assert_eq!(aether::auth::accounts::count(&db).await.unwrap(), 0, "the users table exists");
    assert!(!dir.path().join("aether.db").exists(), "no SQLite file when PostgreSQL is configured");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = loopback_serve(dir.path());
    command.env("AETHER_LOG__FORMAT", "json");
    let mut server = Server::start(command);
    let line = server.wait_for("listening");
    let record: serde_json::Value = serde_json::from_str(&line).expect(&line);
    assert_eq!(record["fields"]["message"], "listening");
    assert!(record["fields"]["http"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(server.terminate());
}

#[test]
fn a_bad_config_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("aether.toml");
    std::fs::write(&file, "[http]\nlisten = \"not an address\"\n").unwrap();
    let out = aether(dir.path()).args(["--config", file.to_str().unwrap(), "serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));

    let out = aether(dir.path()).env("AETHER_HTTP__LISTEN", "nope").arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "env vars are validated too");
    let out = aether(dir.path()).args(["--config", "/no/such/file.toml", "migrate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_reports_what_is_present() {
    let dir = tempfile::tempdir().unwrap();
    let out = aether(dir.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("database")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("data directory")), "{stdout}");

    let out =
        aether(dir.path()).env("AETHER_DATABASE__URL", "postgres://nobody@127.0.0.1:1/none").arg("check").output();
    let out = out.unwrap();
    assert!(!out.status.success(), "an unreachable database fails the check");
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("MISSING") && l.contains("database")));
}

/// GStreamer without its plugins: a registry of its own and no system plugin directory.
fn without_gstreamer_plugins(command: &mut std::process::Command, dir: &std::path::Path) {
    command
        .env("GST_PLUGIN_SYSTEM_PATH_1_0", dir.join("no-plugins"))
        .env("GST_PLUGIN_PATH_1_0", dir.join("no-plugins"))
        .env("GST_REGISTRY_1_0", dir.join("registry.bin"));
}

#[test]
fn check_names_missing_gstreamer_elements_and_the_server_says_it_runs_passthrough_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = aether(dir.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("gstreamer x264enc")), "{stdout}");

    let mut command = aether(dir.path());
    without_gstreamer_plugins(&mut command, dir.path());
    let out = command.arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "missing GStreamer elements are not fatal: {stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("absent") && l.contains("gstreamer x264enc")), "{stdout}");
    assert!(stdout.contains("passthrough only"), "{stdout}");

    let mut command = loopback_serve(dir.path());
    without_gstreamer_plugins(&mut command, dir.path());
    let mut server = Server::start(command);
    server.wait_for("passthrough only");
    server.wait_for("listening");
    assert!(server.terminate());
}

//! Test harness: spawns the real server in-process on port 0 against a fresh database (a SQLite
//! file in a temp dir, or a new database in the PostgreSQL cluster that `scripts/test.sh` starts
//! and names in `AETHER_TEST_POSTGRES_URL`), with helpers for the common API calls.
#![allow(dead_code)]

pub mod flv;
pub mod process;
pub mod s3;
pub mod smtp;
pub mod ws;

use std::path::PathBuf;
use std::sync::Arc;

use aether::app::{App, AppState};
use aether::config::Config;
use rand::RngCore;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server URL (any database) the test script provides.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("AETHER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("AETHER_TEST_POSTGRES_URL is not set: run the suite with scripts/test.sh")
        }
        _ => None,
    }
}

/// A fresh, empty PostgreSQL database; `None` (with a note) when no server was provided.
pub async fn fresh_postgres_database() -> Option<String> {
    let Some(admin) = postgres_admin_url() else {
        eprintln!("skipped on PostgreSQL: AETHER_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)");
        return None;
    };
    let mut suffix = [0u8; 8];
    rand::rng().fill_bytes(&mut suffix);
    let name = format!("aether_test_{}", hex::encode(suffix));
    let mut conn = sqlx::postgres::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let (base, _db) = admin.rsplit_once('/').expect("URL names a database");
    Some(format!("{base}/{name}"))
}

/// Where a test app keeps its data; shared by the restarts of one test.
#[derive(Clone)]
pub struct Storage {
    pub dir: Arc<tempfile::TempDir>,
    pub database_url: Option<String>,
}

impl Storage {
    pub async fn new(backend: Backend) -> Option<Storage> {
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_database().await?),
        };
        Some(Storage { dir: Arc::new(tempfile::tempdir().unwrap()), database_url })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub rtmp_addr: std::net::SocketAddr,
    pub state: AppState,
    pub storage: Storage,
    pub client: reqwest::Client,
    pub setup_url: Option<String>,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

pub fn test_config(storage: &Storage) -> Config {
    let mut config = Config::embedded();
    config.data_dir = storage.data_dir();
    config.database.url = storage.database_url.clone();
    config.database.max_connections = 4;
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    config.webrtc.udp_listen = "127.0.0.1:0".parse().unwrap();
    config.webrtc.tcp_listen = "127.0.0.1:0".parse().unwrap();
    // Tests sign up many users from one address; the throttling test lowers this again.
    config.auth.attempts_per_minute = 10_000;
    // A stopped publisher ends its broadcast at once; the reconnect tests set a grace.
    config.live.reconnect_grace_seconds = 0;
    config
}

impl TestApp {
    /// A server on a fresh database; `None` when that backend is not available here.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let storage = Storage::new(backend).await?;
        let mut config = test_config(&storage);
        tweak(&mut config);
        Some(Self::start(storage, config).await)
    }

    pub async fn start(storage: Storage, config: Config) -> TestApp {
        // AETHER_TEST_LOG=warn (a tracing filter) shows the server's log in a test's output.
        if let Ok(filter) = std::env::var("AETHER_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let app = App::build(config).await.expect("the app builds");
        let shutdown = CancellationToken::new();
        let (addr, rtmp_addr, state, setup_url) =
            (app.http_addr(), app.rtmp_addr(), app.state().clone(), app.setup_url());
        let server = tokio::spawn(app.run(shutdown.clone()));
        let client = reqwest::Client::builder().cookie_store(false).build().unwrap();
        TestApp { addr, rtmp_addr, state, storage, client, setup_url, shutdown, server }
    }

    /// Stops the server gracefully and starts a new one on the same data.
    pub async fn restart(self) -> TestApp {
        let storage = self.storage.clone();
        let config = self.state.config().clone();
        self.stop().await;
        let mut config = config;
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
        config.webrtc.udp_listen = "127.0.0.1:0".parse().unwrap();
        config.webrtc.tcp_listen = "127.0.0.1:0".parse().unwrap();
        Self::start(storage, config).await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), self.server)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task does not panic");
        result.expect("the server stops cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, token, body).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        read(request.send().await.unwrap()).await
    }

    /// Signs up `name` (email `name@example.com`, password `password-of-name`); returns the token.
    pub async fn signup(&self, name: &str) -> String {
        let body = json!({ "username": name, "email": format!("{name}@example.com"), "password": format!("password-of-{name}") });
        let (status, reply) = self.post("/api/v1/auth/signup", None, body).await;
        assert_eq!(status, 201, "signup of {name}: {reply}");
        reply["token"].as_str().unwrap().to_owned()
    }

    /// Creates channel `name` as the holder of `token`; returns the stream key.
    pub async fn create_channel(&self, token: &str, name: &str) -> String {
        let (status, reply) =
            self.post("/api/v1/channels", Some(token), json!({ "name": name, "title": "Hello" })).await;
        assert_eq!(status, 201, "create channel {name}: {reply}");
        reply["stream_key"].as_str().unwrap().to_owned()
    }

    /// Makes `username` an admin directly in the database.
    pub async fn promote(&self, username: &str) {
        sqlx::query("UPDATE users SET role = 'admin' WHERE username = $1")
            .bind(username)
            .execute(self.state.db().pool())
            .await
            .unwrap();
    }
}

/// Status and JSON body (`Value::Null` when the body is empty).
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("body of a {status} is not JSON: {text}"))
    };
    (status, body)
}

/// Asserts an API error body: `{"error": {"code": code, "message": non-empty}}`.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

/// Declares each listed `async fn name(backend: Backend)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::support::Backend::Postgres).await } )*
        }
    };
}

/// An ffmpeg process publishing a synthetic stream like OBS does: H.264 High profile with
/// B-frames and 2 s keyframe interval, AAC 48 kHz stereo, in real time. Killed on drop.
pub struct Publisher {
    pub child: std::process::Child,
}

impl Publisher {
    pub fn start(rtmp: std::net::SocketAddr, key: &str, seconds: u32) -> Publisher {
        Self::start_with(
            rtmp,
            key,
            seconds,
            &["-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast", "-bf", "2"],
        )
    }

    /// `video_args` replace the video encoder settings (e.g. another codec).
    pub fn start_with(rtmp: std::net::SocketAddr, key: &str, seconds: u32, video_args: &[&str]) -> Publisher {
        Self::start_sized(rtmp, key, seconds, "640x360", video_args)
    }

    /// A publisher of pictures of `size` (`WxH`).
    pub fn start_sized(
        rtmp: std::net::SocketAddr,
        key: &str,
        seconds: u32,
        size: &str,
        video_args: &[&str],
    ) -> Publisher {
        let duration = seconds.to_string();
        let child = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=30")])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &duration])
            .args(video_args)
            .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-b:v", "800k"])
            .args(["-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "96k"])
            .args(["-f", "flv", &format!("rtmp://{rtmp}/live/{key}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ffmpeg runs (scripts/install-deps.sh test installs it)");
        Publisher { child }
    }

    /// Waits for ffmpeg to exit; returns its success and what it printed.
    pub fn wait(mut self, limit: std::time::Duration) -> (bool, String) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                return (status.success(), stderr);
            }
            assert!(std::time::Instant::now() < deadline, "ffmpeg still running after {limit:?}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    limit: std::time::Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Whether the GStreamer elements of the ladder are installed; where they are not, says the test
/// is skipped (CI, where `scripts/install-deps.sh test` installs them, does not allow that).
pub fn gstreamer_present() -> bool {
    let present = aether_transcode::missing_elements().is_ok_and(|missing| missing.is_empty());
    if !present {
        assert!(std::env::var_os("CI").is_none(), "GStreamer elements missing: scripts/install-deps.sh test");
        eprintln!("skipped: the GStreamer elements of the ladder are missing");
    }
    present
}

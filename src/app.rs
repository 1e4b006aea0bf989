//! Application state, start-up and shutdown. `App::build` binds the listeners (port 0 works, for
//! tests), opens and migrates the database; `App::run` serves until the shutdown token is
//! cancelled, then stops accepting, drains its tasks in order and closes the database.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use aether_chat::Hub;

use crate::auth::session::SessionToken;
use crate::auth::throttle::AttemptLimiter;
use crate::chat::{ChatDirectory, ConnectionCounts};
use crate::config::Config;
use crate::db::Db;
use crate::events::EventBus;
use crate::live::{LivePublishers, LiveRegistry};

/// How often expired sessions are swept from the database.
const SESSION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    db: Db,
    attempts: AttemptLimiter,
    live: LiveRegistry,
    bus: EventBus,
    hub: Hub,
    storage: aether_vod::Storage,
    archive: crate::live::record::Archive,
    jobs: crate::jobs::Jobs,
    mail: crate::email::Transport,
    /// GStreamer and the ladder's elements are present.
    transcoding: bool,
    /// Where browsers reach this server: `http.public_url`, or the HTTP listener's address.
    public_url: String,
    /// The WebRTC endpoint (WHIP/WHEP), unless `webrtc.enabled` is off.
    webrtc: Option<aether_ingest::webrtc::Endpoint>,
    /// The port RTMP ingest listens on (the configured one, or the one picked for port 0).
    rtmp_port: u16,
    chat_connections: Arc<ConnectionCounts>,
    /// Cancelled when the server starts shutting down; long-lived connections watch it.
    stopping: CancellationToken,
    /// Background work that must finish before shutdown completes (stream packaging, ...).
    tasks: TaskTracker,
    /// The one-time first-run token; `None` once an admin was created through it, or when the
    /// database already had users at start.
    setup_token: Mutex<Option<String>>,
}

impl AppState {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn attempts(&self) -> &AttemptLimiter {
        &self.inner.attempts
    }

    pub fn live(&self) -> &LiveRegistry {
        &self.inner.live
    }

    pub fn bus(&self) -> &EventBus {
        &self.inner.bus
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub fn storage(&self) -> &aether_vod::Storage {
        &self.inner.storage
    }

    pub fn archive(&self) -> &crate::live::record::Archive {
        &self.inner.archive
    }

    pub fn transcoding_available(&self) -> bool {
        self.inner.transcoding
    }

    /// The absolute base URL of links this server sends (emails), without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    pub fn rtmp_port(&self) -> u16 {
        self.inner.rtmp_port
    }

    pub fn jobs(&self) -> &crate::jobs::Jobs {
        &self.inner.jobs
    }

    pub fn mail_transport(&self) -> &crate::email::Transport {
        &self.inner.mail
    }

    pub fn chat_connections(&self) -> &Arc<ConnectionCounts> {
        &self.inner.chat_connections
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.inner.stopping
    }

    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    pub fn webrtc(&self) -> Option<&aether_ingest::webrtc::Endpoint> {
        self.inner.webrtc.as_ref()
    }

    pub fn setup_token(&self) -> MutexGuard<'_, Option<String>> {
        self.inner.setup_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct App {
    state: AppState,
    http: TcpListener,
    rtmp: TcpListener,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        crate::telemetry::prometheus();
        crate::telemetry::mark_start();
        let db = Db::connect(&config).await?;
        db.migrate().await?;
        let closed = crate::live::end_unfinished_sessions(&db).await?;
        if closed > 0 {
            tracing::warn!(closed, "closed stream sessions left open by an unclean stop");
        }
        let recovered = crate::live::record::finalize(&db, None).await?;
        if recovered > 0 {
            tracing::warn!(recovered, "finalized recordings left unfinished by an unclean stop");
        }
        let storage = aether_vod::Storage::open(&config.storage, &config.data_dir)?;
        tracing::info!(storage = ?storage, "object storage");
        let spool_dir = config.data_dir.join("spool");
        let spool_bytes = config.recording.spool_max_mb.saturating_mul(1 << 20);
        let archive = crate::live::record::Archive::open(db.clone(), storage.clone(), &spool_dir, spool_bytes)?;
        let http = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
        let rtmp = TcpListener::bind(config.rtmp.listen)
            .await
            .with_context(|| format!("cannot listen for RTMP on {}", config.rtmp.listen))?;
        let webrtc = if config.webrtc.enabled {
            let endpoint = aether_ingest::webrtc::Endpoint::bind(config.webrtc.clone())
                .await
                .with_context(|| format!("cannot listen for WebRTC on UDP {}", config.webrtc.udp_listen))?;
            Some(endpoint)
        } else {
            None
        };
        let setup_token = if crate::auth::accounts::count(&db).await? == 0 {
            Some(SessionToken::generate().as_str().to_owned())
        } else {
            None
        };
        let transcoding = match aether_transcode::missing_elements() {
            Ok(missing) if missing.is_empty() => true,
            Ok(missing) => {
                tracing::warn!(
                    ?missing,
                    "GStreamer elements are missing: passthrough only, no ABR ladder or thumbnails"
                );
                false
            }
            Err(error) => {
                tracing::warn!(%error, "GStreamer is unusable: passthrough only, no ABR ladder or thumbnails");
                false
            }
        };
        let tasks = TaskTracker::new();
        let stopping = CancellationToken::new();
        let jobs = crate::jobs::Jobs::default();
        let directory = Arc::new(ChatDirectory::new(db.clone(), jobs.clone()));
        let hub = Hub::start(config.chat.clone(), directory, config.redis.url.clone(), &tasks, stopping.clone());
        let inner = Inner {
            storage,
            archive,
            jobs,
            mail: crate::email::Transport::default(),
            transcoding,
            webrtc,
            rtmp_port: rtmp.local_addr().context("the RTMP listener's address")?.port(),
            public_url: match &config.http.public_url {
                Some(url) => url.trim_end_matches('/').to_owned(),
                None => {
                    let addr = http.local_addr().context("the HTTP listener's address")?;
                    let host = if addr.ip().is_unspecified() { "localhost".to_owned() } else { addr.ip().to_string() };
                    format!("http://{host}:{}", addr.port())
                }
            },
            hub,
            chat_connections: Arc::default(),
            stopping,
            attempts: AttemptLimiter::per_minute(config.auth.attempts_per_minute),
            live: LiveRegistry::default(),
            bus: EventBus::default(),
            tasks,
            setup_token: Mutex::new(setup_token),
            config,
            db,
        };
        Ok(App { state: AppState { inner: Arc::new(inner) }, http, rtmp })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("a bound listener has an address")
    }

    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The first-run admin setup URL, while the database has no users.
    pub fn setup_url(&self) -> Option<String> {
        let token = self.state.setup_token().clone()?;
        let base = self.state.public_url();
        Some(format!("{base}/setup?token={token}"))
    }

    /// Serves until `shutdown` is cancelled, then drains in order: stop accepting, finish
    /// in-flight requests and tasks, close the database.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let webrtc =
            self.state.webrtc().map(|endpoint| endpoint.local_addr().to_string()).unwrap_or_else(|| "off".into());
        tracing::info!(http = %self.http_addr(), rtmp = %self.rtmp_addr(), %webrtc, "listening");
        if let Some(url) = self.setup_url() {
            tracing::info!(%url, "first-run setup: open this URL to create the admin account");
        }
        let App { state, http, rtmp } = self;
        let tracker = TaskTracker::new();
        let publishers = Arc::new(LivePublishers::new(state.clone()));
        let rtmp_config = state.config().rtmp.clone();
        tracker.spawn(aether_ingest::serve_rtmp(rtmp, rtmp_config, publishers, shutdown.child_token()));
        if let Some(endpoint) = state.webrtc() {
            tracker.spawn(endpoint.clone().run(shutdown.child_token()));
        }
        tracker.spawn(sweep_sessions(state.clone(), shutdown.child_token()));
        tracker.spawn(state.archive().clone().upload_spooled(shutdown.child_token()));
        match crate::clips::resume(&state).await {
            Ok(0) => {}
            Ok(queued) => tracing::info!(clips = queued, "resuming clips left unfinished"),
            Err(error) => tracing::error!(%error, "cannot queue the clips left unfinished"),
        }
        tracker.spawn(crate::jobs::run(state.clone(), shutdown.child_token()));
        tracker.spawn(crate::chat::relay_stream_events(state.clone(), shutdown.child_token()));
        // Long-lived connections (chat sockets, chat shards) end when shutdown begins, so that
        // the HTTP server's graceful shutdown is not held open by them.
        let stopping = state.stopping().clone();
        let trigger = shutdown.clone();
        tracker.spawn(async move {
            trigger.cancelled().await;
            stopping.cancel();
        });

        let router = crate::http::router(state.clone());
        crate::http::serve::serve(http, router, shutdown.clone()).await;
        // Whatever ended the HTTP server ends the rest too. Ingest stops first (its connections
        // close, so every stream flushes its last segment), then the stream tasks finish.
        shutdown.cancel();
        state.stopping().cancel();
        tracker.close();
        tracker.wait().await;
        state.tasks().close();
        state.tasks().wait().await;
        state.db().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn sweep_sessions(state: AppState, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SESSION_SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => match crate::auth::session::delete_expired(state.db()).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "expired sessions removed"),
                Err(error) => tracing::warn!(%error, "sweeping expired sessions failed"),
            }
        }
    }
}

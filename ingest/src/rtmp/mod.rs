//! The RTMP server: accepts TCP connections (a bounded number at once), runs each through the
//! handshake and an rml_rtmp server session, and hands accepted publishers' media to the server.

mod connection;
pub mod convert;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use connection::ConnectionError;

use crate::PublishAuthority;

/// Default RTMP listen address (CONTRACT.md).
pub const DEFAULT_RTMP_LISTEN: &str = "0.0.0.0:1935";
/// The application name publishers connect to (`rtmp://HOST/live`).
pub const APP_NAME: &str = "live";

/// `[rtmp]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
    /// Seconds without a byte from a connection before it is dropped.
    pub idle_timeout: u64,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_RTMP_LISTEN.parse().expect("valid default address"),
            idle_timeout: 10,
            max_connections: 512,
        }
    }
}

impl RtmpConfig {
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout.max(1))
    }
}

/// Runs the RTMP listener until `shutdown` is cancelled, then waits for its connections to end
/// (their publishers' streams are finished by the server when the event senders drop).
pub async fn serve_rtmp<A: PublishAuthority>(
    listener: TcpListener,
    config: RtmpConfig,
    authority: Arc<A>,
    shutdown: CancellationToken,
) {
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning on a listener that cannot accept.
                    tracing::warn!(%error, "rtmp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = config.max_connections, "rtmp connection refused: too many connections");
            metrics::counter!("aether_rtmp_connections_refused_total").increment(1);
            continue;
        };
        let (authority, config, shutdown) = (authority.clone(), config.clone(), shutdown.child_token());
        connections.spawn(async move {
            let _ = socket.set_nodelay(true);
            match connection::run(socket, peer, &*authority, &config, shutdown).await {
                Ok(summary) => tracing::info!(%peer, %summary, "rtmp connection closed"),
                Err(error) => tracing::warn!(%peer, %error, "rtmp connection closed on error"),
            }
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
}

//! Ingest: accepts publishers and turns them into `MediaFrame` streams. RTMP (rml_rtmp) and WHIP
//! arrive with the live-ingest issue; until then the RTMP listener accepts and closes connections,
//! so that the port is bound, reported and shut down like the finished server will do it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Default RTMP listen address (CONTRACT.md).
pub const DEFAULT_RTMP_LISTEN: &str = "0.0.0.0:1935";

/// `[rtmp]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    pub listen: SocketAddr,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        Self { listen: DEFAULT_RTMP_LISTEN.parse().expect("valid default address") }
    }
}

/// Runs the RTMP listener until `shutdown` is cancelled.
pub async fn serve_rtmp(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    tracing::info!(%peer, "rtmp connection closed: publishing is not implemented yet");
                    drop(socket);
                }
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning on a listener that cannot accept.
                    tracing::warn!(%error, "rtmp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

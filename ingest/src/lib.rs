//! Ingest: accepts publishers and turns each into a stream of `StreamEvent`s (codec configurations
//! and `MediaFrame`s). RTMP today (rml_rtmp), WHIP later. The crate knows nothing of HTTP or the
//! database: whether a stream key may publish, and where its frames go, is the server's answer to
//! `PublishAuthority::authorize`.

pub mod rtmp;

use std::future::Future;
use std::net::SocketAddr;

use aether_media::StreamEvent;
use tokio::sync::mpsc;

pub use rtmp::{RtmpConfig, serve_rtmp};

/// A client asking to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The RTMP application (`live`).
    pub app: String,
    /// The stream name, i.e. the stream key (any `?query` removed).
    pub stream_key: String,
    pub peer: SocketAddr,
}

/// An accepted publisher: its events go to `events` until the connection ends, which drops the
/// sender and so tells the receiver that the stream is over.
#[derive(Debug)]
pub struct Publication {
    /// For logs and metrics (the channel name).
    pub name: String,
    pub events: mpsc::Sender<StreamEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown stream key")]
    UnknownKey,
    #[error("the channel is already live")]
    AlreadyLive,
    #[error("publishing is unavailable: {0}")]
    Unavailable(String),
}

/// The server's side of publishing: checks the key, opens the stream.
pub trait PublishAuthority: Send + Sync + 'static {
    fn authorize(&self, request: PublishRequest) -> impl Future<Output = Result<Publication, Refusal>> + Send;
}

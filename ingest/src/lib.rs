//! Ingest: accepts publishers and turns each into a stream of `StreamEvent`s (codec configurations
//! and `MediaFrame`s): RTMP (rml_rtmp) and WHIP (str0m, `webrtc`), whose endpoint also plays
//! streams to WHEP viewers. The crate knows nothing of HTTP or the
//! database: whether a stream key may publish, and where its frames go, is the server's answer to
//! `PublishAuthority::authorize`.

pub mod rtmp;
pub mod webrtc;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use aether_media::StreamEvent;
use tokio::sync::{Notify, mpsc};

pub use rtmp::{RtmpConfig, serve_rtmp};

/// A client asking to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The RTMP application (`live`; `whip` for WHIP).
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
    /// Notified when the server wants a keyframe from the publisher (a WHIP publisher asks its
    /// peer; RTMP cannot ask).
    pub keyframes: Arc<Notify>,
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

//! One RTMP connection, driven as a thin async loop around sans-IO cores: the rml_rtmp handshake
//! and server session turn bytes into events and responses; this loop only reads (with an idle
//! timeout), writes the responses in order, asks the server about publish requests and forwards
//! media. Every way a connection can go wrong ends here as a `ConnectionError`, logged once by
//! the caller; nothing a client sends can panic the server. Memory per connection is bounded by
//! the RTMP message size (24-bit lengths: under 16 MiB), whatever chunk size a client announces
//! (rml_rtmp refuses sizes above 2^31 - 1), and by `rtmp.max_connections`.

use std::fmt;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::convert::{ConvertError, FlvConverter};
use super::{APP_NAME, RtmpConfig};
use crate::{PublishAuthority, PublishRequest, Refusal};

const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("no data for {0} s")]
    Idle(u64),
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("protocol error: {0}")]
    Session(#[from] ServerSessionError),
    #[error("wrong application {0:?} (publish to rtmp://HOST/{APP_NAME})")]
    WrongApp(String),
    #[error("publish refused: {0}")]
    Refused(#[from] Refusal),
    #[error("RTMP playback is not offered (watch over HLS)")]
    PlayRequested,
    #[error("cannot carry the stream: {0}")]
    Media(#[from] ConvertError),
    #[error("the server ended the stream")]
    StreamClosed,
}

/// How a connection that ended without error went.
#[derive(Debug, Default)]
pub struct Summary {
    published: Option<String>,
    bytes: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.published {
            Some(name) => write!(f, "published {name}, {} bytes", self.bytes),
            None => write!(f, "did not publish, {} bytes", self.bytes),
        }
    }
}

struct Publishing {
    name: String,
    events: tokio::sync::mpsc::Sender<aether_media::StreamEvent>,
    converter: FlvConverter,
}

struct Connection<'a, A: PublishAuthority> {
    socket: TcpStream,
    peer: SocketAddr,
    authority: &'a A,
    publishing: Option<Publishing>,
    summary: Summary,
    /// Set when the publisher announced the end of its stream.
    finished: bool,
}

pub async fn run<A: PublishAuthority>(
    socket: TcpStream,
    peer: SocketAddr,
    authority: &A,
    config: &RtmpConfig,
    shutdown: CancellationToken,
) -> Result<Summary, ConnectionError> {
    let mut connection =
        Connection { socket, peer, authority, publishing: None, summary: Summary::default(), finished: false };
    let mut buffer = BytesMut::with_capacity(READ_BUFFER);

    // Handshake: C0+C1 -> S0+S1+S2, C2; leftover bytes are the first chunks.
    let mut handshake = Handshake::new(PeerType::Server);
    let leftover = loop {
        if !connection.read(&mut buffer, config, &shutdown).await? {
            return Ok(connection.summary);
        }
        match handshake.process_bytes(&buffer.split())? {
            HandshakeProcessResult::InProgress { response_bytes } => {
                connection.socket.write_all(&response_bytes).await?
            }
            HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                connection.socket.write_all(&response_bytes).await?;
                break remaining_bytes;
            }
        }
    };

    let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())?;
    connection.apply(&mut session, initial).await?;
    let results = session.handle_input(&leftover)?;
    connection.apply(&mut session, results).await?;
    while !connection.finished {
        if !connection.read(&mut buffer, config, &shutdown).await? {
            break;
        }
        if let Some(publishing) = &connection.publishing {
            metrics::counter!("aether_ingest_bytes_total", "channel" => publishing.name.clone())
                .increment(buffer.len() as u64);
        }
        let results = session.handle_input(&buffer.split())?;
        connection.apply(&mut session, results).await?;
    }
    Ok(connection.summary)
}

impl<A: PublishAuthority> Connection<'_, A> {
    /// Reads more bytes into `buffer`; false at end of stream or shutdown.
    async fn read(
        &mut self,
        buffer: &mut BytesMut,
        config: &RtmpConfig,
        shutdown: &CancellationToken,
    ) -> Result<bool, ConnectionError> {
        buffer.reserve(READ_BUFFER);
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            read = tokio::time::timeout(config.idle_timeout(), self.socket.read_buf(buffer)) => read,
        };
        match read {
            Err(_) => Err(ConnectionError::Idle(config.idle_timeout().as_secs())),
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(n)) => {
                self.summary.bytes += n as u64;
                Ok(true)
            }
            Ok(Err(error)) => Err(error.into()),
        }
    }

    /// Writes responses and acts on events, in order. Follow-up results (from accepting or
    /// rejecting a request) are handled in turn.
    async fn apply(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), ConnectionError> {
        let mut queue = std::collections::VecDeque::from(results);
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.socket.write_all(&packet.bytes).await?,
                ServerSessionResult::RaisedEvent(event) => {
                    if let Some(error) = self.on_event(session, event, &mut queue).await? {
                        // Flush what the session answered (the error status) before closing.
                        for result in queue.drain(..) {
                            if let ServerSessionResult::OutboundResponse(packet) = result {
                                self.socket.write_all(&packet.bytes).await?;
                            }
                        }
                        let _ = self.socket.shutdown().await;
                        return Err(error);
                    }
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    /// Handles one session event; `Some(error)` ends the connection after the queued responses.
    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
        queue: &mut std::collections::VecDeque<ServerSessionResult>,
    ) -> Result<Option<ConnectionError>, ConnectionError> {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                if app_name.trim_end_matches('/') != APP_NAME {
                    queue.extend(session.reject_request(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        "unknown application",
                    )?);
                    return Ok(Some(ConnectionError::WrongApp(app_name)));
                }
                queue.extend(session.accept_request(request_id)?);
            }
            ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
                let stream_key = stream_key.split('?').next().unwrap_or_default().to_owned();
                let request = PublishRequest { app: app_name, stream_key, peer: self.peer };
                match self.authority.authorize(request).await {
                    Ok(publication) => {
                        tracing::info!(peer = %self.peer, channel = %publication.name, "rtmp publish accepted");
                        self.summary.published = Some(publication.name.clone());
                        self.publishing = Some(Publishing {
                            name: publication.name,
                            events: publication.events,
                            converter: FlvConverter::default(),
                        });
                        queue.extend(session.accept_request(request_id)?);
                    }
                    Err(refusal) => {
                        let code = match refusal {
                            Refusal::AlreadyLive => "NetStream.Publish.BadName",
                            _ => "NetStream.Publish.Denied",
                        };
                        metrics::counter!("aether_rtmp_publish_refused_total").increment(1);
                        queue.extend(session.reject_request(request_id, code, &refusal.to_string())?);
                        return Ok(Some(refusal.into()));
                    }
                }
            }
            ServerSessionEvent::PublishStreamFinished { .. } => self.finished = true,
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                queue.extend(session.reject_request(request_id, "NetStream.Play.Failed", "playback is HLS only")?);
                return Ok(Some(ConnectionError::PlayRequested));
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                return self.forward(true, timestamp.value, data).await;
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                return self.forward(false, timestamp.value, data).await;
            }
            _ => {}
        }
        Ok(None)
    }

    async fn forward(
        &mut self,
        video: bool,
        timestamp: u32,
        data: Bytes,
    ) -> Result<Option<ConnectionError>, ConnectionError> {
        // Media before an accepted publish is ignored, as RTMP servers do.
        let Some(publishing) = self.publishing.as_mut() else { return Ok(None) };
        let converted = if video {
            publishing.converter.video(timestamp, &data)
        } else {
            publishing.converter.audio(timestamp, &data)
        };
        let event = match converted {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(None),
            Err(error) => return Ok(Some(error.into())),
        };
        // Waiting here pushes back on the publisher's TCP stream if packaging falls behind.
        if publishing.events.send(event).await.is_err() {
            return Ok(Some(ConnectionError::StreamClosed));
        }
        Ok(None)
    }
}

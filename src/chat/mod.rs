//! Chat over `GET /ws`: identifies the caller (`?token=`, or the session cookie when the request
//! comes from this site), limits connections per IP, and drives one WebSocket per client over the
//! upgraded connection, on its bare TcpStream: a reader that decodes client frames
//! (`aether_chat::wire`) into the protocol core (`aether_chat::Session`), and a writer for what
//! the socket did not take at once. Frames are framed once per broadcast and mostly written by
//! the room's shard itself, straight into the socket (`aether_chat::Control::push`).
//! Also the moderator API, the relay of `stream.started` / `stream.ended` into room notices, and
//! the database `Directory`.

mod directory;
mod routes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aether_chat::wire::{self, Decoder, Incoming};
use aether_chat::{ChatUser, CloseReason, Control, Hub, Session};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use dashmap::DashMap;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

pub use directory::ChatDirectory;
pub use routes::router;

use crate::app::AppState;
use crate::auth::session::SESSION_COOKIE;
use crate::error::{ApiError, ApiResult, Query};
use crate::events::Event;

/// Frames taken from the outbox for one write.
const WRITE_BATCH: usize = 256;
/// The largest client message: tungstenite's old ceiling. Frames between `chat.max_frame_bytes`
/// and this are answered with an error and the socket stays open; above it the socket closes
/// (1009).
const HARD_FRAME_LIMIT: usize = 64 * 1024;
/// Bytes read at once.
const READ_CHUNK: usize = 256;
/// How long the last frames (and the close frame) may take to leave.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Open chat connections per client address.
#[derive(Default)]
pub struct ConnectionCounts {
    by_ip: DashMap<IpAddr, usize>,
}

struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.counts.by_ip.remove_if_mut(&self.ip, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

impl ConnectionCounts {
    fn acquire(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<ConnectionSlot> {
        let mut count = self.by_ip.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot { counts: self.clone(), ip })
    }
}

#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    token: Option<String>,
}

/// Whether the request's `Origin` (if any) is this site: a cookie may only authenticate a
/// WebSocket opened by our own pages, or any page could chat as its visitors.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, authority)| authority == host)
}

async fn identify(state: &AppState, headers: &HeaderMap, token: Option<&str>) -> ApiResult<Option<ChatUser>> {
    let raw = match token {
        Some(token) => Some(token),
        None if same_origin(headers) => crate::auth::cookie(headers, SESSION_COOKIE),
        None => None,
    };
    let Some(raw) = raw else { return Ok(None) };
    let (user, _) = crate::auth::signed_in(state, raw).await?;
    // Whom they blocked: those do not get their messages (as of this connection).
    let blocked = directory::blocked_by(state.db(), user.id.0).await?;
    Ok(Some(ChatUser {
        id: user.id.0,
        name: user.username.clone(),
        admin: user.is_admin(),
        blocked: Arc::new(blocked),
    }))
}

/// The WebSocket handshake (RFC 6455 section 4.2): the upgrade request's headers, checked.
fn accept_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(ApiError::bad_request("websocket_required", "this endpoint speaks WebSocket only"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version != "13") {
        return Err(ApiError::new(StatusCode::UPGRADE_REQUIRED, "websocket_version", "WebSocket version 13 only"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| base64::engine::general_purpose::STANDARD.decode(key.as_bytes()).is_ok_and(|raw| raw.len() == 16))
        .ok_or_else(|| ApiError::bad_request("websocket_key", "a Sec-WebSocket-Key of 16 base64 bytes is required"))?;
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    Ok(base64::engine::general_purpose::STANDARD.encode(sha.finalize()))
}

pub async fn socket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<SocketQuery>,
    mut request: Request,
) -> ApiResult<Response> {
    let accept = accept_key(request.headers())?;
    let user = identify(&state, request.headers(), query.token.as_deref()).await?;
    let limit = state.hub().config().max_connections_per_ip;
    let slot = state.chat_connections().acquire(peer.ip(), limit).ok_or_else(|| {
        metrics::counter!("aether_chat_connections_refused_total").increment(1);
        ApiError::RateLimited { retry_after_secs: 10 }
    })?;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "chat upgrade failed");
                return;
            }
        };
        // Our HTTP server hands hyper the bare TcpStream, so it comes back whole, with whatever
        // the client sent after its request.
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            tracing::warn!("a chat upgrade over an unexpected transport");
            return;
        };
        let early = parts.read_buf;
        serve(parts.io.into_inner(), early, state.hub().clone(), user, state.stopping().clone()).await;
        drop(slot);
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    Ok(response)
}

async fn serve(stream: TcpStream, early: Bytes, hub: Hub, user: Option<ChatUser>, stopping: CancellationToken) {
    let (mut session, control) = Session::new(hub, user);
    control.attach(stream);
    tokio::join!(write_frames(&control, &stopping), read_frames(early, &mut session, &control));
    session.close().await;
}

/// Writes what the outbox queues (what the socket did not take at once when it was sent: see
/// `Control::push`) until the connection closes; then the close frame.
async fn write_frames(control: &Control, stopping: &CancellationToken) {
    let socket = control.socket().expect("attached before the writer starts");
    let mut batch = Vec::new();
    // Made once: waiting on it registers with the server-wide token, which takes its lock.
    let stop = stopping.cancelled();
    tokio::pin!(stop);
    'open: loop {
        tokio::select! {
            biased;
            _ = control.pop_many(&mut batch, WRITE_BATCH) => {}
            _ = &mut stop => {
                control.close(CloseReason::Shutdown);
                break;
            }
        }
        while !batch.is_empty() {
            if control.is_closed() {
                break 'open;
            }
            let written = tokio::select! {
                biased;
                written = write_batch(socket, &mut batch) => written,
                // Closed while a write waits on a client that does not read: stop mid-frame,
                // with no close frame (it could not be told apart from the frame it would land in).
                _ = control.closed() => return,
            };
            if written.is_err() {
                control.close(CloseReason::Ended);
                return;
            }
            // More queued meanwhile is written next; nothing queued gives the socket back to
            // direct writes.
            control.try_pop_many(&mut batch, WRITE_BATCH);
        }
        if control.is_closed() {
            break;
        }
    }
    let reason = control.reason().unwrap_or(CloseReason::Shutdown);
    match reason.code() {
        Some(code) => {
            batch.clear();
            batch.push(wire::close_frame(code, reason.text()));
        }
        None => {
            // The reader queued the reply to the client's close (or to its protocol error).
            control.try_pop_many(&mut batch, usize::MAX);
        }
    }
    // From here on nothing is written directly (a direct write under way finishes first).
    control.hold_socket();
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        write_batch(socket, &mut batch).await?;
        socket2::SockRef::from(socket).shutdown(std::net::Shutdown::Write)
    })
    .await;
}

async fn write_all(socket: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        socket.writable().await?;
        match socket.try_write(data) {
            Ok(written) => data = &data[written..],
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn write_batch(socket: &TcpStream, batch: &mut Vec<Bytes>) -> std::io::Result<()> {
    let joined = wire::joined(batch.iter());
    batch.clear();
    write_all(socket, &joined).await
}

/// Reads from the socket, or ends with the connection.
async fn read_some(socket: &TcpStream, chunk: &mut [u8]) -> std::io::Result<usize> {
    loop {
        socket.readable().await?;
        match socket.try_read(chunk) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            read => return read,
        }
    }
}

/// Decodes the client's frames (first those that came with its request) into the session until
/// the connection ends.
async fn read_frames(early: Bytes, session: &mut Session, control: &Control) {
    let socket = control.socket().expect("attached before the reader starts");
    let mut decoder = Decoder::new(HARD_FRAME_LIMIT);
    // Small on purpose: it is part of every idle connection; chat frames are small.
    let mut chunk = [0u8; READ_CHUNK];
    let mut reading = if early.is_empty() { Reading::Go } else { handle(&mut decoder, &early, session, control).await };
    // It may be a slice of hyper's read buffer (8 KiB or more): not to be kept for the
    // connection's life.
    drop(early);
    loop {
        match reading {
            Reading::Go => {}
            Reading::Stop => return,
            Reading::Linger => {
                // The client may still be sending what broke the protocol: read and drop it for
                // a moment, so that its unread bytes do not reset the connection before the
                // close frame reaches it.
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    while matches!(read_some(socket, &mut chunk).await, Ok(1..)) {}
                })
                .await;
                return;
            }
        }
        let read = tokio::select! {
            read = read_some(socket, &mut chunk) => read,
            _ = control.closed() => return,
        };
        reading = match read {
            Ok(0) | Err(_) => {
                control.close(CloseReason::Ended);
                return;
            }
            Ok(read) => handle(&mut decoder, &chunk[..read], session, control).await,
        };
    }
}

enum Reading {
    Go,
    Stop,
    /// Closed for a protocol violation: drain what the client still sends.
    Linger,
}

/// Feeds read bytes through the decoder and the session.
async fn handle(decoder: &mut Decoder, data: &[u8], session: &mut Session, control: &Control) -> Reading {
    let (messages, violation) = decoder.feed(data);
    for message in messages {
        let outcome = match message {
            Incoming::Text(text) => session.handle_text(&text).await,
            Incoming::Binary => session.handle_binary(),
            Incoming::Ping(payload) => {
                if !control.push(wire::pong(&payload)) {
                    Err(CloseReason::SlowConsumer)
                } else {
                    Ok(())
                }
            }
            Incoming::Pong => Ok(()),
            Incoming::Close(code) => {
                // Echo the client's code (RFC 6455 section 5.5.1), then end.
                let code = code.filter(|code| (1000..5000).contains(code)).unwrap_or(wire::close::NORMAL);
                control.push(wire::close_frame(code, ""));
                control.close(CloseReason::Ended);
                return Reading::Stop;
            }
        };
        if let Err(reason) = outcome {
            control.close(reason);
            return Reading::Stop;
        }
    }
    if let Some(violation) = violation {
        tracing::debug!(reason = violation.reason, "closing a chat connection that broke the WebSocket protocol");
        control.push(wire::close_frame(violation.code, violation.reason));
        control.close(CloseReason::Ended);
        return Reading::Linger;
    }
    Reading::Go
}

/// Bans `user` from `channel`'s chat on its owner's behalf (the owner blocked them), in the
/// caller's transaction; after the commit, `apply_ban` tells the room if it is loaded here.
pub async fn ban_by_owner(
    conn: &mut sqlx::AnyConnection,
    channel: &crate::channels::Channel,
    owner: &crate::auth::User,
    user: &crate::auth::User,
) -> Result<(), sqlx::Error> {
    directory::store_ban(conn, channel.id.0, owner.id.0, user.id.0, "blocked by the owner").await
}

/// A ban stored by `ban_by_owner`, applied to the loaded room without a notice in it.
pub async fn apply_ban(state: &AppState, channel: &str, username: &str) {
    state.hub().set_banned(channel, username, true).await;
}

/// Turns `stream.started` / `stream.ended` into notices in the channel's room.
pub async fn relay_stream_events(state: AppState, shutdown: CancellationToken) {
    let mut events = state.bus().subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(Event::StreamStarted { channel, .. }) => state.hub().notice(&channel, "the stream started").await,
            Ok(Event::StreamEnded { channel, .. }) => state.hub().notice(&channel, "the stream ended").await,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "chat missed stream events");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

//! Chat over `GET /ws`: identifies the caller (`?token=`, or the session cookie when the request
//! comes from this site), limits connections per IP, and drives one WebSocket per client: a
//! reader feeding the protocol core (`aether_chat::Session`) and a writer draining the bounded
//! outbox in batches (feed many, flush once). Also the moderator API, the relay of
//! `stream.started` / `stream.ended` into room notices, and the database `Directory`.

mod directory;
mod routes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use aether_chat::{ChatUser, CloseReason, Hub, Session};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub use directory::ChatDirectory;
pub use routes::router;

use crate::app::AppState;
use crate::auth::session::SESSION_COOKIE;
use crate::error::{ApiError, ApiResult, Query};
use crate::events::Event;

/// Frames written before one flush.
const WRITE_BATCH: usize = 64;
/// The hard ceiling tungstenite enforces (it closes the socket above it); frames between
/// `chat.max_frame_bytes` and this are answered with an error and the socket stays open.
const HARD_FRAME_LIMIT: usize = 64 * 1024;
/// Per-connection socket buffers, sized for chat frames rather than tungstenite's defaults
/// (128 KiB reads), which would dominate memory per idle connection.
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 4 * 1024;

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
    Ok(Some(ChatUser { id: user.id.0, name: user.username.clone(), admin: user.is_admin() }))
}

pub async fn socket(
    upgrade: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<SocketQuery>,
) -> ApiResult<Response> {
    let user = identify(&state, &headers, query.token.as_deref()).await?;
    let limit = state.hub().config().max_connections_per_ip;
    let slot = state.chat_connections().acquire(peer.ip(), limit).ok_or_else(|| {
        metrics::counter!("aether_chat_connections_refused_total").increment(1);
        ApiError::RateLimited { retry_after_secs: 10 }
    })?;
    let response = upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + HARD_FRAME_LIMIT)
        .max_message_size(HARD_FRAME_LIMIT)
        .max_frame_size(HARD_FRAME_LIMIT)
        .on_upgrade(move |socket| async move {
            serve(socket, state.hub().clone(), user, state.stopping().clone()).await;
            drop(slot);
        });
    Ok(response.into_response())
}

async fn serve(socket: WebSocket, hub: Hub, user: Option<ChatUser>, stopping: CancellationToken) {
    let coalesce = std::time::Duration::from_millis(hub.config().coalesce_ms);
    let (mut session, mut outbox, control) = Session::new(hub, user);
    let (mut sink, mut stream) = socket.split();
    let writer = async {
        // Allocated on the first frame, not per idle connection.
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                received = outbox.recv_many(&mut batch, WRITE_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    if !coalesce.is_zero() && batch.len() < WRITE_BATCH {
                        // Let a burst gather so that it goes out in one write.
                        let deadline = tokio::time::Instant::now() + coalesce;
                        while batch.len() < WRITE_BATCH {
                            let room = WRITE_BATCH - batch.len();
                            match tokio::time::timeout_at(deadline, outbox.recv_many(&mut batch, room)).await {
                                Ok(0) | Err(_) => break,
                                Ok(_) => {}
                            }
                        }
                    }
                    for frame in batch.drain(..) {
                        // Frames are JSON made by serde_json: always UTF-8.
                        let Ok(text) = Utf8Bytes::try_from(frame) else { continue };
                        if sink.feed(Message::Text(text)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                _ = control.closed() => break,
                _ = stopping.cancelled() => {
                    control.close(CloseReason::Shutdown);
                    break;
                }
            }
        }
        let reason = control.reason().unwrap_or(CloseReason::Shutdown);
        let code = match reason {
            CloseReason::Abuse => 1008,        // policy violation
            CloseReason::SlowConsumer => 4008, // application: too slow
            CloseReason::Shutdown => 1001,     // going away
        };
        let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.text().into() }))).await;
    };
    let reader = async {
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                _ = control.closed() => return,
            };
            let outcome = match message {
                Some(Ok(Message::Text(text))) => session.handle_text(text.as_str()).await,
                Some(Ok(Message::Binary(_))) => session.handle_binary(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            };
            if let Err(reason) = outcome {
                control.close(reason);
                return;
            }
        }
    };
    // Whichever side ends first ends the connection; a close the hub asked for is written first.
    tokio::pin!(writer);
    tokio::select! {
        _ = &mut writer => {}
        _ = reader => {
            if control.reason().is_some() {
                writer.await;
            }
        }
    }
    session.close().await;
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
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "chat missed stream events");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

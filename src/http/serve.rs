//! The HTTP server: accepts TCP connections and serves the router over HTTP/1.1 (with upgrades)
//! or HTTP/2 (prior knowledge), with graceful shutdown. Hand-written instead of `axum::serve` so
//! that an upgraded connection (chat) gets its `TcpStream` back: hyper-util's auto builder wraps
//! every connection in a private type that `Upgraded::downcast` cannot see through.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `router` on `listener` until `shutdown`; then stops accepting, lets the requests in
/// flight finish and returns once every connection has closed. Upgraded connections are their
/// handlers' business (chat ends its sockets when the server stops).
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                connections.spawn(connection(tcp, peer, router.clone(), shutdown.clone()));
            }
            Err(error) => {
                // Out of file descriptors, say: wait a little instead of spinning on it.
                tracing::warn!(%error, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection until it closes, or until shutdown and its requests in flight are done.
macro_rules! until_shutdown {
    ($connection:expr, $shutdown:expr) => {{
        let connection = $connection;
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            () = $shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    }};
}

async fn connection(tcp: TcpStream, peer: SocketAddr, router: Router, shutdown: CancellationToken) {
    // No Nagle: responses leave whole, and chat paces its own writes (`chat.coalesce_ms`); Nagle
    // would hold a socket's next write back until the client's (delayed) ACK came.
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "TCP_NODELAY could not be set");
    }
    let service = TowerToHyperService::new(router.map_request(move |request: Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }));
    let http2 = tokio::select! {
        http2 = speaks_http2(&tcp) => http2,
        // A connection that has not sent anything yet has nothing in flight.
        () = shutdown.cancelled() => return,
    };
    let served = if http2 {
        let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        until_shutdown!(builder.serve_connection(TokioIo::new(tcp), service), shutdown)
    } else {
        let builder = hyper::server::conn::http1::Builder::new();
        until_shutdown!(builder.serve_connection(TokioIo::new(tcp), service).with_upgrades(), shutdown)
    };
    if let Err(error) = served {
        tracing::debug!(%error, %peer, "HTTP connection ended with an error");
    }
}

/// Whether the client opened with the HTTP/2 preface, looked at without consuming anything.
async fn speaks_http2(tcp: &TcpStream) -> bool {
    let mut seen = [0u8; H2_PREFACE.len()];
    for _ in 0..200 {
        let Ok(peeked) = tcp.peek(&mut seen).await else { return false };
        if peeked == 0 || seen[..peeked] != H2_PREFACE[..peeked] {
            return false;
        }
        if peeked == H2_PREFACE.len() {
            return true;
        }
        // A prefix of the preface so far (only HTTP/2 clients start with "PRI"): wait for more.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

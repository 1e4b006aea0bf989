//! ICE-TCP (RFC 6544): a passive TCP candidate beside the UDP one, for networks that block UDP.
//! Each accepted connection carries one peer's packets framed by a 16-bit length (RFC 4571); its
//! first packet must be a STUN request, whose username names the peer (as on UDP), and the rest
//! of the connection goes to that peer. What a peer transmits over TCP goes to the connection of
//! its destination address through a bounded queue (a stalled connection loses packets, never
//! memory). Connections are capped, and one that says nothing useful within a few seconds closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use super::socket::{Datagram, Routes};

/// ICE-TCP connections open at once.
const MAX_CONNECTIONS: usize = 1024;
/// Packets queued to one connection.
const QUEUE: usize = 512;
/// A connection must send its first STUN request this soon; then it may be silent this long.
const FIRST_PACKET: Duration = Duration::from_secs(5);
const IDLE: Duration = Duration::from_secs(30);

/// The writers of the open connections, by remote address.
#[derive(Default)]
pub(crate) struct TcpLinks {
    links: Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>,
}

impl TcpLinks {
    /// Queues one packet to the connection from `to`; false when there is none or it is full.
    pub fn send(&self, to: SocketAddr, packet: &[u8]) -> bool {
        let link = self.table().get(&to).cloned();
        link.is_some_and(|link| link.try_send(Bytes::copy_from_slice(packet)).is_ok())
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Bytes>>> {
        self.links.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, routes: Arc<Routes>, links: Arc<TcpLinks>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "ice-tcp accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("aether_webrtc_tcp_refused_total").increment(1);
            continue;
        };
        let (routes, links) = (routes.clone(), links.clone());
        connections.spawn(async move {
            let ended = connection(stream, peer, &routes, &links).await;
            links.table().remove(&peer);
            tracing::debug!(%peer, ?ended, "ice-tcp connection closed");
            drop(slot);
        });
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, routes: &Routes, links: &TcpLinks) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (queue, mut queued) = mpsc::channel::<Bytes>(QUEUE);
    links.table().insert(peer, queue);
    let write = async move {
        let mut frame = BytesMut::new();
        while let Some(packet) = queued.recv().await {
            frame.clear();
            frame.put_u16(packet.len() as u16);
            frame.put_slice(&packet);
            writer.write_all(&frame).await?;
        }
        Ok::<(), std::io::Error>(())
    };
    let read = async {
        let mut inbox: Option<mpsc::Sender<Datagram>> = None;
        let mut packet = vec![0u8; u16::MAX as usize];
        loop {
            let wait = if inbox.is_some() { IDLE } else { FIRST_PACKET };
            let len = tokio::time::timeout(wait, reader.read_u16()).await.map_err(|_| timed_out())?? as usize;
            tokio::time::timeout(wait, reader.read_exact(&mut packet[..len])).await.map_err(|_| timed_out())??;
            let datagram = Datagram {
                at: Instant::now(),
                source: peer,
                proto: Protocol::Tcp,
                data: Bytes::copy_from_slice(&packet[..len]),
            };
            if inbox.is_none() {
                // The first packet says whose connection this is; anything else closes it.
                inbox = Some(routes.by_stun(&datagram.data).ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the first packet is no STUN request of a session",
                    )
                })?);
            }
            let Some(target) = &inbox else { continue };
            match target.try_send(datagram) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("aether_webrtc_datagrams_dropped_total").increment(1);
                }
                // The peer ended.
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            }
        }
    };
    tokio::select! {
        result = read => result,
        result = write => result,
    }
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "silent")
}

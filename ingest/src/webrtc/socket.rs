//! The shared UDP socket: one task reads every datagram and routes it to its peer's inbox. A
//! STUN request names its peer in the USERNAME attribute (`server-ufrag:client-ufrag`, RFC 8445
//! 7.2.2) and makes its source address known; DTLS, SRTP and SRTCP are routed by that address.
//! Inboxes are bounded: a peer that cannot keep up loses datagrams, never memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use str0m::net::Protocol;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams waiting for one peer's task.
const INBOX: usize = 256;
/// Source addresses one peer may be known by (ICE checks from each of a client's candidates);
/// STUN from more is still routed by its username, just not remembered.
const ADDRESSES_PER_PEER: usize = 8;
/// Kernel buffers asked for (the kernel caps them at net.core.{r,w}mem_max).
const SOCKET_BUFFER: usize = 4 << 20;
const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_USERNAME: u16 = 0x0006;

pub(crate) struct Datagram {
    pub at: Instant,
    pub source: SocketAddr,
    pub proto: Protocol,
    pub data: Bytes,
}

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

struct Route {
    peer: u64,
    inbox: mpsc::Sender<Datagram>,
}

#[derive(Default)]
pub(crate) struct Routes {
    inner: Mutex<RouteTable>,
}

#[derive(Default)]
struct RouteTable {
    by_ufrag: HashMap<String, Route>,
    by_addr: HashMap<SocketAddr, (u64, mpsc::Sender<Datagram>)>,
}

impl Routes {
    /// A peer whose local ICE username fragment is `ufrag`; its inbox.
    pub fn add(&self, ufrag: &str, peer: u64) -> mpsc::Receiver<Datagram> {
        let (inbox, receiver) = mpsc::channel(INBOX);
        self.table().by_ufrag.insert(ufrag.to_owned(), Route { peer, inbox });
        receiver
    }

    /// A second username fragment for the peer that has `ufrag` (an ICE restart); false when
    /// there is no such peer.
    pub fn alias(&self, ufrag: &str, new: &str) -> bool {
        let mut table = self.table();
        let Some(route) = table.by_ufrag.get(ufrag).map(|route| Route { peer: route.peer, inbox: route.inbox.clone() })
        else {
            return false;
        };
        table.by_ufrag.insert(new.to_owned(), route);
        true
    }

    /// Every route to `peer`.
    pub fn remove(&self, peer: u64) {
        let mut table = self.table();
        table.by_ufrag.retain(|_, route| route.peer != peer);
        table.by_addr.retain(|_, (owner, _)| *owner != peer);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, RouteTable> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The inbox of the peer a STUN request is for.
    pub fn by_stun(&self, data: &[u8]) -> Option<mpsc::Sender<Datagram>> {
        let ufrag = stun_local_ufrag(data)?;
        self.table().by_ufrag.get(ufrag).map(|route| route.inbox.clone())
    }

    fn route(&self, datagram: &Datagram) -> Option<mpsc::Sender<Datagram>> {
        let mut table = self.table();
        if let Some(ufrag) = stun_local_ufrag(&datagram.data) {
            let route = table.by_ufrag.get(ufrag)?;
            let (peer, inbox) = (route.peer, route.inbox.clone());
            if table.by_addr.contains_key(&datagram.source)
                || table.by_addr.values().filter(|(owner, _)| *owner == peer).count() < ADDRESSES_PER_PEER
            {
                table.by_addr.insert(datagram.source, (peer, inbox.clone()));
            }
            return Some(inbox);
        }
        table.by_addr.get(&datagram.source).map(|(_, inbox)| inbox.clone())
    }
}

pub(crate) async fn read_loop(socket: Arc<UdpSocket>, local: SocketAddr, routes: &Routes) {
    let mut buffer = vec![0u8; 2048];
    loop {
        let (len, source) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP port unreachable from a vanished peer surfaces here on some systems.
                tracing::debug!(%error, %local, "webrtc socket read failed");
                continue;
            }
        };
        let datagram =
            Datagram { at: Instant::now(), source, proto: Protocol::Udp, data: Bytes::copy_from_slice(&buffer[..len]) };
        match routes.route(&datagram) {
            Some(inbox) => {
                if inbox.try_send(datagram).is_err() {
                    metrics::counter!("aether_webrtc_datagrams_dropped_total").increment(1);
                }
            }
            None => metrics::counter!("aether_webrtc_datagrams_unrouted_total").increment(1),
        }
    }
}

/// The server half of a STUN binding request's USERNAME (`server:client`), if `data` is one.
fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != STUN_MAGIC {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let attributes = data.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= attributes.len() {
        let kind = u16::from_be_bytes([attributes[at], attributes[at + 1]]);
        let len = usize::from(u16::from_be_bytes([attributes[at + 2], attributes[at + 3]]));
        let value = attributes.get(at + 4..at + 4 + len)?;
        if kind == STUN_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attributes = Vec::new();
        attributes.extend_from_slice(&0x8029u16.to_be_bytes()); // ICE-CONTROLLING first
        attributes.extend_from_slice(&8u16.to_be_bytes());
        attributes.extend_from_slice(&[7; 8]);
        attributes.extend_from_slice(&STUN_USERNAME.to_be_bytes());
        attributes.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attributes.extend_from_slice(username.as_bytes());
        attributes.resize(attributes.len().div_ceil(4) * 4, 0);
        let mut message = vec![0x00, 0x01];
        message.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        message.extend_from_slice(&STUN_MAGIC);
        message.extend_from_slice(&[1; 12]);
        message.extend_from_slice(&attributes);
        message
    }

    #[test]
    fn stun_requests_name_their_peer_and_other_packets_do_not() {
        assert_eq!(stun_local_ufrag(&binding_request("srv1:cli")), Some("srv1"));
        // DTLS (20-63), RTP (128-191) and truncated STUN route by address instead.
        assert_eq!(stun_local_ufrag(&[22; 40]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let request = binding_request("srv1:cli");
        assert_eq!(stun_local_ufrag(&request[..request.len() - 8]), None);
    }

    #[tokio::test]
    async fn datagrams_follow_stun_to_their_peer_and_unknown_ones_go_nowhere() {
        let routes = Routes::default();
        let mut inbox = routes.add("srv1", 1);
        let source: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let datagram = |data: Vec<u8>| Datagram { at: Instant::now(), source, proto: Protocol::Udp, data: data.into() };
        assert!(routes.route(&datagram(vec![0x80; 40])).is_none(), "no STUN from this address yet");
        routes.route(&datagram(binding_request("srv1:cli"))).unwrap().try_send(datagram(vec![1])).unwrap();
        assert!(routes.route(&datagram(vec![0x80; 40])).is_some(), "the address is known now");
        assert!(routes.route(&datagram(binding_request("other:cli"))).is_none());
        // A client spraying checks from many ports is remembered at only a few of them.
        for port in 6000..6020 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            let check = Datagram { source: from, ..datagram(binding_request("srv1:cli")) };
            assert!(routes.route(&check).is_some(), "STUN is routed by its username");
        }
        let late = Datagram { source: SocketAddr::from(([127, 0, 0, 1], 6019)), ..datagram(vec![0x80; 40]) };
        assert!(routes.route(&late).is_none(), "not remembered past {ADDRESSES_PER_PEER} addresses");
        assert!(routes.route(&datagram(vec![0x80; 40])).is_some(), "the first address still is");
        assert!(routes.alias("srv1", "srv2"));
        assert!(routes.route(&datagram(binding_request("srv2:cli"))).is_some(), "after an ICE restart");
        routes.remove(1);
        assert!(routes.route(&datagram(binding_request("srv2:cli"))).is_none());
        assert!(routes.route(&datagram(vec![0x80; 40])).is_none());
        assert_eq!(inbox.recv().await.unwrap().data.as_ref(), &[1]);
    }
}

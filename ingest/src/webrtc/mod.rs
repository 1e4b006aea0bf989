//! The WebRTC endpoint: WHIP publishers in, WHEP viewers out, every peer on one UDP socket.
//!
//! str0m (sans-IO) holds each peer's ICE-lite agent, DTLS, SRTP, RTCP and (de)packetizers; this
//! module owns the I/O around them. One socket task reads every datagram and hands it to its peer
//! (STUN by the ICE username's server half, the rest by the source address STUN made known); each
//! peer is a task of its own that drives its `Rtc` (inputs, timeouts, outputs) and does its role:
//! a publisher turns RTP into `StreamEvent`s exactly like an RTMP connection does, a viewer writes
//! the samples of a stream's `RtcFeed`. The endpoint knows nothing of HTTP or the database: the
//! server's WHIP/WHEP handlers check the offer, authorize, and call `publish` / `play`.

mod offer;
mod peer;
mod play;
mod publish;
mod socket;
mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use offer::{OfferError, OfferSummary, check_offer};

use crate::Publication;

/// `[webrtc]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebrtcConfig {
    pub enabled: bool,
    /// The one UDP port every peer uses.
    pub udp_listen: SocketAddr,
    /// ICE-TCP (RFC 6544): a passive TCP candidate too, for networks that block UDP.
    pub tcp_enabled: bool,
    pub tcp_listen: SocketAddr,
    /// Addresses peers reach this server at (NAT 1:1, e.g. a cloud VM's public address); the UDP
    /// port is `udp_listen`'s. Empty: the listen address, or when that is unspecified the
    /// address of the default route and loopback.
    pub public_ips: Vec<IpAddr>,
    /// STUN/TURN URLs offered to clients in WHIP/WHEP `Link` headers (ICE-lite needs none).
    pub ice_servers: Vec<String>,
    /// Seconds a peer may take to connect, and may stay silent once connected, before it ends.
    pub ice_timeout_seconds: u64,
    /// Samples a viewer may fall behind before it skips to the next keyframe.
    pub viewer_queue: usize,
    /// WebRTC sessions open at once (publishers and viewers); more are refused. Offers cost no
    /// sign-in, and an unanswered session lives up to `ice_timeout_seconds`.
    pub max_sessions: usize,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            udp_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8189)),
            tcp_enabled: true,
            tcp_listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8189)),
            public_ips: Vec::new(),
            ice_servers: Vec::new(),
            ice_timeout_seconds: 15,
            viewer_queue: 1024,
            max_sessions: 5000,
        }
    }
}

impl WebrtcConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=300).contains(&self.ice_timeout_seconds) {
            return Err("webrtc.ice_timeout_seconds must be 1 to 300".into());
        }
        if self.max_sessions == 0 {
            return Err("webrtc.max_sessions must be at least 1".into());
        }
        if !(16..=65_536).contains(&self.viewer_queue) {
            return Err("webrtc.viewer_queue must be 16 to 65536".into());
        }
        if self.public_ips.iter().any(|ip| ip.is_unspecified()) {
            return Err("webrtc.public_ips must name addresses clients can reach (not 0.0.0.0)".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebrtcError {
    #[error(transparent)]
    Offer(#[from] OfferError),
    #[error("the offer could not be answered: {0}")]
    Negotiation(String),
    #[error("no such session")]
    UnknownSession,
    #[error("this server has as many WebRTC sessions as it takes (webrtc.max_sessions)")]
    Full,
    #[error("the ICE restart fragment has no a=ice-ufrag and a=ice-pwd")]
    BadFragment,
}

/// What a stream offers its WebRTC viewers: H.264 access units (Annex B, parameter sets before
/// each keyframe) and Opus packets, with their times; and the way to ask its source for a
/// keyframe (a WHIP publisher's task listens; an RTMP source has none, and keyframes come on
/// their own).
#[derive(Clone)]
pub struct RtcFeed {
    samples: broadcast::Sender<Arc<RtcSample>>,
    keyframes: Arc<Notify>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Video,
    Audio,
}

#[derive(Debug)]
pub struct RtcSample {
    pub kind: SampleKind,
    /// Presentation time, 90 kHz ticks.
    pub time: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

impl RtcFeed {
    pub fn new(capacity: usize, keyframes: Arc<Notify>) -> RtcFeed {
        RtcFeed { samples: broadcast::channel(capacity.max(16)).0, keyframes }
    }

    /// Hands a sample to every viewer; nothing happens without viewers.
    pub fn send(&self, sample: RtcSample) {
        if self.samples.receiver_count() > 0 {
            let _ = self.samples.send(Arc::new(sample));
        }
    }

    pub fn viewers(&self) -> usize {
        self.samples.receiver_count()
    }
}

/// A negotiated session: its id (the resource's last path segment), the SDP answer, and the
/// entity tag of its ICE session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub answer: String,
    pub etag: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Viewer,
}

struct SessionEntry {
    role: Role,
    /// Our ICE username fragment now (it changes with a restart).
    ufrag: String,
    commands: mpsc::Sender<peer::Command>,
    /// The channel it publishes or plays.
    name: String,
    cancel: CancellationToken,
}

/// Sessions by id and the routes from the socket to their peers.
#[derive(Default)]
struct Registry {
    sessions: HashMap<String, SessionEntry>,
}

/// The endpoint: cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebrtcConfig,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    candidates: Arc<[SocketAddr]>,
    tcp: Mutex<Option<tokio::net::TcpListener>>,
    tcp_local: Option<SocketAddr>,
    tcp_candidates: Arc<[SocketAddr]>,
    tcp_links: Arc<tcp::TcpLinks>,
    routes: Arc<socket::Routes>,
    registry: Mutex<Registry>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    next_peer: AtomicU64,
}

impl Endpoint {
    /// Binds the UDP socket; `run` serves it.
    pub async fn bind(config: WebrtcConfig) -> std::io::Result<Endpoint> {
        let socket = socket::bind(config.udp_listen)?;
        let local = socket.local_addr()?;
        let candidates = candidate_addresses(&config, local);
        let tcp = match config.tcp_enabled {
            true => Some(tokio::net::TcpListener::bind(config.tcp_listen).await?),
            false => None,
        };
        let tcp_local = tcp.as_ref().map(|listener| listener.local_addr()).transpose()?;
        let tcp_candidates: Vec<SocketAddr> = match tcp_local {
            Some(addr) => candidates.iter().map(|c| SocketAddr::new(c.ip(), addr.port())).collect(),
            None => Vec::new(),
        };
        tracing::info!(udp = %local, tcp = ?tcp_local, candidates = ?candidates, "webrtc endpoint bound");
        Ok(Endpoint {
            inner: Arc::new(Inner {
                config,
                socket: Arc::new(socket),
                local,
                candidates: candidates.into(),
                tcp: Mutex::new(tcp),
                tcp_local,
                tcp_candidates: tcp_candidates.into(),
                tcp_links: Arc::default(),
                routes: Arc::default(),
                registry: Mutex::default(),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                next_peer: AtomicU64::new(1),
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The ICE-TCP listener's address, when there is one.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_local
    }

    pub fn config(&self) -> &WebrtcConfig {
        &self.inner.config
    }

    /// Reads the socket until `shutdown`, then ends every peer and waits for them.
    pub async fn run(self, shutdown: CancellationToken) {
        let tcp = self.inner.tcp.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let accept_tcp = async {
            match tcp {
                Some(listener) => {
                    tcp::accept_loop(listener, self.inner.routes.clone(), self.inner.tcp_links.clone()).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            () = socket::read_loop(self.inner.socket.clone(), self.inner.local, &self.inner.routes) => {}
            () = accept_tcp => {}
        }
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Answers a WHIP offer (already checked with `check_offer`) and starts its publisher, whose
    /// stream events go to `publication`.
    pub fn publish(&self, offer: &str, publication: Publication) -> Result<Session, WebrtcError> {
        self.check_room()?;
        let name = publication.name.clone();
        let (rtc, session) = self.answer(offer, None)?;
        let video = media_of(&session.answer, MediaKind::Video);
        let role = peer::RoleState::Publish(publish::Publisher::new(publication, video));
        self.start(rtc, session, role, Role::Publisher, name)
    }

    /// Answers a WHEP offer and starts a viewer of `feed`; `lower` are the feeds it steps down
    /// to, in order, when its receiver keeps reporting loss.
    pub fn play(&self, offer: &str, name: &str, feed: &RtcFeed, lower: Vec<RtcFeed>) -> Result<Session, WebrtcError> {
        self.check_room()?;
        // Receiver reports are read each second (loss -> a lower rendition).
        let (rtc, session) = self.answer(offer, Some(Duration::from_secs(1)))?;
        let (video, audio) = (media_of(&session.answer, MediaKind::Video), media_of(&session.answer, MediaKind::Audio));
        let role = peer::RoleState::Play(play::Player::new(feed, lower, video, audio));
        self.start(rtc, session, role, Role::Viewer, name.to_owned())
    }

    /// Ends a session (WHIP/WHEP `DELETE`); false when there is none by that id.
    pub fn end(&self, id: &str) -> bool {
        match self.registry().sessions.get(id) {
            Some(entry) => {
                entry.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// An ICE restart (WHIP/WHEP `PATCH` with `If-Match: "*"`): the client's new credentials in
    /// `fragment`; returns our new ones and candidates as an SDP fragment, and the new ETag.
    pub async fn restart(&self, id: &str, fragment: &str) -> Result<(String, String), WebrtcError> {
        let attribute = |name: &str| {
            fragment.lines().find_map(|line| line.trim().strip_prefix(name).map(|value| value.trim().to_owned()))
        };
        let (Some(ufrag), Some(pass)) = (attribute("a=ice-ufrag:"), attribute("a=ice-pwd:")) else {
            return Err(WebrtcError::BadFragment);
        };
        let (commands, old) = {
            let registry = self.registry();
            let entry = registry.sessions.get(id).ok_or(WebrtcError::UnknownSession)?;
            (entry.commands.clone(), entry.ufrag.clone())
        };
        let (reply, replied) = tokio::sync::oneshot::channel();
        let remote = str0m::IceCreds { ufrag, pass };
        commands.send(peer::Command::Restart { remote, reply }).await.map_err(|_| WebrtcError::UnknownSession)?;
        let local = replied.await.map_err(|_| WebrtcError::UnknownSession)?;
        self.inner.routes.alias(&old, &local.ufrag);
        if let Some(entry) = self.registry().sessions.get_mut(id) {
            entry.ufrag.clone_from(&local.ufrag);
        }
        let mut answer = format!("a=ice-lite\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n", local.ufrag, local.pass);
        for addr in self.inner.candidates.iter() {
            if let Ok(candidate) = Candidate::host(*addr, "udp") {
                answer.push_str(&format!("a={}\r\n", candidate.to_sdp_string()));
            }
        }
        Ok((answer, format!("\"{}\"", local.ufrag)))
    }

    /// The role and channel of a session.
    pub fn session(&self, id: &str) -> Option<(Role, String)> {
        self.registry().sessions.get(id).map(|entry| (entry.role, entry.name.clone()))
    }

    /// Sessions open now, by role: (publishers, viewers).
    pub fn counts(&self) -> (usize, usize) {
        let registry = self.registry();
        let publishers = registry.sessions.values().filter(|entry| entry.role == Role::Publisher).count();
        (publishers, registry.sessions.len() - publishers)
    }

    fn check_room(&self) -> Result<(), WebrtcError> {
        match self.registry().sessions.len() < self.inner.config.max_sessions {
            true => Ok(()),
            false => Err(WebrtcError::Full),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn answer(&self, offer: &str, stats: Option<Duration>) -> Result<(Rtc, Session), WebrtcError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            // NACK history: ~2 s of a 2.5 Mbps picture (memory per viewer is mostly this).
            .set_send_buffer_video(512)
            .set_stats_interval(stats)
            .build(Instant::now());
        for addr in self.inner.candidates.iter() {
            let candidate = Candidate::host(*addr, "udp").map_err(|e| WebrtcError::Negotiation(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        for addr in self.inner.tcp_candidates.iter() {
            let candidate = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .map_err(|e| WebrtcError::Negotiation(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| WebrtcError::Negotiation(e.to_string()))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let session = Session { id: session_id(), answer: answer.to_sdp_string(), etag: format!("\"{ufrag}\"") };
        Ok((rtc, session))
    }

    fn start(
        &self,
        mut rtc: Rtc,
        session: Session,
        role: peer::RoleState,
        kind: Role,
        name: String,
    ) -> Result<Session, WebrtcError> {
        let inner = &self.inner;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let cancel = inner.shutdown.child_token();
        let peer_id = inner.next_peer.fetch_add(1, Ordering::Relaxed);
        let inbox = inner.routes.add(&ufrag, peer_id);
        let (commands, command_inbox) = mpsc::channel(4);
        let entry =
            SessionEntry { role: kind, ufrag: ufrag.clone(), commands, name: name.clone(), cancel: cancel.clone() };
        self.registry().sessions.insert(session.id.clone(), entry);
        gauge(self.counts());
        let endpoint = self.clone();
        let id = session.id.clone();
        let timeout = Duration::from_secs(inner.config.ice_timeout_seconds.max(1));
        let io = peer::PeerIo {
            commands: command_inbox,
            socket: inner.socket.clone(),
            candidates: inner.candidates.clone(),
            tcp_candidates: inner.tcp_candidates.clone(),
            tcp: inner.tcp_links.clone(),
            inbox,
            timeout,
        };
        inner.tasks.spawn(async move {
            let ended = peer::drive(&mut rtc, role, io, cancel).await;
            tracing::info!(session = %id, channel = %name, role = ?kind, reason = %ended, "webrtc session ended");
            endpoint.inner.routes.remove(peer_id);
            endpoint.registry().sessions.remove(&id);
            gauge(endpoint.counts());
        });
        tracing::info!(session = %session.id, role = ?kind, "webrtc session started");
        Ok(session)
    }
}

/// The mid of the first active section of `kind` in an SDP (our answer).
fn media_of(sdp: &str, kind: MediaKind) -> Option<Mid> {
    let wanted = match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    };
    let mut current = false;
    for line in sdp.lines() {
        if let Some(media) = line.strip_prefix("m=") {
            let mut fields = media.split_whitespace();
            current = fields.next() == Some(wanted) && fields.next() != Some("0");
        } else if current && let Some(mid) = line.strip_prefix("a=mid:") {
            return Some(Mid::from(mid.trim()));
        }
    }
    None
}

fn gauge((publishers, viewers): (usize, usize)) {
    metrics::gauge!("aether_webrtc_sessions", "role" => "publisher").set(publishers as f64);
    metrics::gauge!("aether_webrtc_sessions", "role" => "viewer").set(viewers as f64);
}

/// 128 random bits, hex.
fn session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The host candidates the answers name: the public addresses, else the bound one, else (bound
/// to every interface) the default route's address and loopback.
fn candidate_addresses(config: &WebrtcConfig, local: SocketAddr) -> Vec<SocketAddr> {
    let port = local.port();
    if !config.public_ips.is_empty() {
        return config.public_ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    }
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let mut addresses = Vec::new();
    // The address the default route leaves from (connecting a UDP socket sends nothing).
    if let Ok(probe) = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        && probe.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).is_ok()
        && let Ok(addr) = probe.local_addr()
        && !addr.ip().is_loopback()
    {
        addresses.push(SocketAddr::new(addr.ip(), port));
    }
    addresses.push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port));
    addresses
}

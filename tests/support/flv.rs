//! A publisher that sends FLV tags over RTMP exactly as given (order, timestamps, sequence
//! headers), as OBS does: for replaying the recorded OBS fixture and orderings made from it.
//! ffmpeg as a relay rewrites the sequence headers into its own order, so it cannot test those.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    Audio,
    Video,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub kind: TagKind,
    pub timestamp_ms: u32,
    pub body: Bytes,
}

impl Tag {
    /// An AAC or AVC sequence header (codec configuration).
    pub fn is_sequence_header(&self) -> bool {
        self.body.len() > 1 && self.body[1] == 0
    }
}

/// The OBS Studio 29 recording in `../shared/fixtures`; `None` (and a note) where it is absent,
/// which CI (where `shared/` sits beside the clone) does not allow.
pub fn obs_fixture() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/obs29-x264-aac.flv");
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var_os("CI").is_none(), "the OBS fixture is missing: {}", path.display());
    eprintln!("skipped: the OBS fixture is not at {}", path.display());
    None
}

/// The audio and video tags of an FLV file, in file order (script tags left out).
pub fn read_tags(path: &std::path::Path) -> Vec<Tag> {
    let data = std::fs::read(path).expect("the FLV file reads");
    assert_eq!(&data[..3], b"FLV", "an FLV file");
    let mut offset = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize + 4;
    let mut tags = Vec::new();
    while offset + 11 <= data.len() {
        let kind = data[offset];
        let size = u32::from_be_bytes([0, data[offset + 1], data[offset + 2], data[offset + 3]]) as usize;
        let timestamp_ms = u32::from_be_bytes([data[offset + 7], data[offset + 4], data[offset + 5], data[offset + 6]]);
        let start = offset + 11;
        if start + size > data.len() {
            break;
        }
        let body = Bytes::copy_from_slice(&data[start..start + size]);
        match kind {
            8 => tags.push(Tag { kind: TagKind::Audio, timestamp_ms, body }),
            9 => tags.push(Tag { kind: TagKind::Video, timestamp_ms, body }),
            _ => {}
        }
        offset = start + size + 4;
    }
    tags
}

/// Publishes `tags` to `rtmp://{rtmp}/live/{key}` in their order, each sent when its timestamp
/// is due (real time, as an encoder sends), then closes the connection.
pub async fn publish(rtmp: SocketAddr, key: &str, tags: Vec<Tag>) -> std::io::Result<()> {
    let mut socket = TcpStream::connect(rtmp).await?;
    handshake(&mut socket).await;
    let (mut session, _) = ClientSession::new(ClientSessionConfig::new()).expect("a client session");
    let connect = session.request_connection("live".into()).expect("connect request");
    send(&mut socket, vec![connect]).await?;
    wait_for(&mut socket, &mut session, |event| matches!(event, ClientSessionEvent::ConnectionRequestAccepted)).await?;
    let publish = session.request_publishing(key.into(), PublishRequestType::Live).expect("publish request");
    send(&mut socket, vec![publish]).await?;
    wait_for(&mut socket, &mut session, |event| matches!(event, ClientSessionEvent::PublishRequestAccepted)).await?;
    let (mut reader, mut writer) = socket.into_split();
    // The server's acknowledgements and pings are read and let go.
    let drain = tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while reader.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
    });
    let start = tokio::time::Instant::now();
    let first = tags.first().map_or(0, |tag| tag.timestamp_ms);
    for tag in tags {
        let due = start + Duration::from_millis(u64::from(tag.timestamp_ms.saturating_sub(first)));
        tokio::time::sleep_until(due).await;
        let timestamp = RtmpTimestamp::new(tag.timestamp_ms);
        let packet = match tag.kind {
            TagKind::Audio => session.publish_audio_data(tag.body, timestamp, false),
            TagKind::Video => session.publish_video_data(tag.body, timestamp, false),
        }
        .expect("a media packet");
        if let ClientSessionResult::OutboundResponse(packet) = packet {
            writer.write_all(&packet.bytes).await?;
        }
    }
    writer.shutdown().await?;
    drain.abort();
    Ok(())
}

async fn send(socket: &mut TcpStream, results: Vec<ClientSessionResult>) -> std::io::Result<()> {
    for result in results {
        if let ClientSessionResult::OutboundResponse(packet) = result {
            socket.write_all(&packet.bytes).await?;
        }
    }
    Ok(())
}

/// Reads and answers the server until `wanted` is raised.
async fn wait_for(
    socket: &mut TcpStream,
    session: &mut ClientSession,
    wanted: impl Fn(&ClientSessionEvent) -> bool,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer)).await??;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        let results = session.handle_input(&buffer[..n]).expect("the server speaks RTMP");
        let mut found = false;
        let mut outbound = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::RaisedEvent(event) => found |= wanted(&event),
                other => outbound.push(other),
            }
        }
        send(socket, outbound).await?;
        if found {
            return Ok(());
        }
    }
}

/// Completes an RTMP handshake as a client on `socket`.
pub async fn handshake(socket: &mut TcpStream) {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    let mut handshake = Handshake::new(PeerType::Client);
    socket.write_all(&handshake.generate_outbound_p0_and_p1().unwrap()).await.unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "server closed during the handshake");
        match handshake.process_bytes(&buffer[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => socket.write_all(&response_bytes).await.unwrap(),
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                socket.write_all(&response_bytes).await.unwrap();
                return;
            }
        }
    }
}

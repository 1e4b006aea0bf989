//! N WHEP viewers of one channel from one process, for the WebRTC benchmark: each negotiates
//! over HTTP, completes ICE, DTLS and SRTP with str0m on a socket of its own, receives and
//! depacketizes (no decoding), answers with RTCP (receiver reports, NACK, PLI as str0m does),
//! and counts what came and what was lost (packet sequence gaps that retransmission did not
//! fill). Prints one JSON line at the end.
//!
//!     whepload URL CHANNEL VIEWERS SECONDS
//!
//! URL is the server's base (`http://127.0.0.1:8080`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Totals {
    connected: AtomicU64,
    failed: AtomicU64,
    video_frames: AtomicU64,
    audio_frames: AtomicU64,
    bytes: AtomicU64,
    packets: AtomicU64,
    expected: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, channel, viewers, seconds] = &args[..] else {
        eprintln!("usage: whepload URL CHANNEL VIEWERS SECONDS");
        std::process::exit(2);
    };
    let viewers: usize = viewers.parse().expect("VIEWERS is a number");
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let totals = Arc::new(Totals::default());
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..viewers {
        let (client, totals) = (client.clone(), totals.clone());
        let endpoint = format!("{}/api/whep/{channel}", url.trim_end_matches('/'));
        let base = url.trim_end_matches('/').to_owned();
        tasks.push(tokio::spawn(async move {
            if let Err(error) = viewer(&client, &base, &endpoint, until, &totals).await {
                totals.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("viewer failed: {error}");
            }
        }));
        // A gentle ramp: 5 ms between joins.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        let _ = task.await;
    }
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (packets, expected) = (get(&totals.packets), get(&totals.expected));
    let lost = expected.saturating_sub(packets);
    println!(
        "{}",
        serde_json::json!({
            "viewers": viewers,
            "connected": get(&totals.connected),
            "failed": get(&totals.failed),
            "video_frames": get(&totals.video_frames),
            "audio_frames": get(&totals.audio_frames),
            "bytes": get(&totals.bytes),
            "packets": packets,
            "lost": lost,
            "loss_pct": if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 },
        })
    );
}

async fn viewer(
    client: &reqwest::Client,
    base: &str,
    endpoint: &str,
    until: Instant,
    totals: &Totals,
) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let local: SocketAddr = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = Rtc::builder().clear_codecs().enable_h264(true).enable_opus(true, false).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().ok_or("no offer")?;
    let response = client
        .post(endpoint)
        .header("content-type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().as_u16() != 201 {
        return Err(format!("WHEP answered {}", response.status()));
    }
    let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let answer =
        SdpAnswer::from_sdp_string(&response.text().await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    rtc.sdp_api().accept_answer(pending, answer).map_err(|e| e.to_string())?;

    let mut buffer = vec![0u8; 2048];
    // Per mid: the first and last sequence number seen, and the packets that made frames.
    let mut sequences: Vec<(str0m::media::Mid, u64, u64, u64)> = Vec::new();
    while Instant::now() < until && rtc.is_alive() {
        let deadline = loop {
            match rtc.poll_output().map_err(|e| e.to_string())? {
                Output::Timeout(at) => break at,
                Output::Transmit(transmit) => {
                    let _ = socket.try_send_to(&transmit.contents, transmit.destination);
                }
                Output::Event(Event::Connected) => {
                    totals.connected.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(Event::MediaData(data)) => {
                    let (first, last) = (**data.seq_range.start(), **data.seq_range.end());
                    match sequences.iter_mut().find(|(mid, ..)| *mid == data.mid) {
                        Some(entry) => {
                            entry.2 = entry.2.max(last);
                            entry.3 += last - first + 1;
                        }
                        None => sequences.push((data.mid, first, last, last - first + 1)),
                    }
                    totals.bytes.fetch_add(data.data.len() as u64, Ordering::Relaxed);
                    let counter = if data.params.spec().codec == str0m::format::Codec::Opus {
                        &totals.audio_frames
                    } else {
                        &totals.video_frames
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        let wait = deadline.min(until).saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let input = tokio::select! {
            received = socket.recv_from(&mut buffer) => match received {
                Ok((len, source)) => Some((len, source)),
                Err(_) => None,
            },
            _ = tokio::time::sleep(wait) => None,
        };
        let now = Instant::now();
        let result = match input {
            Some((len, source)) => match buffer[..len].try_into() {
                Ok(contents) => rtc.handle_input(Input::Receive(
                    now,
                    Receive { proto: Protocol::Udp, source, destination: local, contents },
                )),
                Err(_) => Ok(()),
            },
            None => rtc.handle_input(Input::Timeout(now)),
        };
        result.map_err(|e| e.to_string())?;
    }
    for (_, first, last, received) in sequences {
        totals.packets.fetch_add(received, Ordering::Relaxed);
        totals.expected.fetch_add(last - first + 1, Ordering::Relaxed);
    }
    if !location.is_empty() {
        let _ = client.delete(format!("{base}{location}")).send().await;
    }
    Ok(())
}

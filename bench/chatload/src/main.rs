//! chatload: opens N subscriber sockets (spread over 127.0.0.x source addresses) and P publisher
//! sockets in one room, publishes M messages/s per publisher, and reports deliveries/s, delivery
//! latency (p50/p99/max over sampled messages, and p50/p99 of each sampled message's first
//! arrival at any subscriber: the server's intake apart from its fan-out), messages lost and the server's CPU seconds per
//! million deliveries; or, with `--idle`, the server's RSS per idle connection. It counts frames
//! and parses only the sampled ones, so that it costs less per delivery than the server it
//! measures. Speaks Aether's chat protocol (also the `ws` peer's) and Socket.IO 4 over WebSocket.
//!
//!   chatload --protocol aether|ws|socketio --addr 127.0.0.1:8080 --room bench_room
//!            [--token T] [--subscribers 1000] [--publishers 1] [--rate 100] [--seconds 20]
//!            [--sample 10] [--server-pid PID] [--idle]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Aether,
    Ws,
    SocketIo,
}

#[derive(Clone)]
struct Args {
    protocol: Protocol,
    addr: SocketAddr,
    room: String,
    token: Option<String>,
    subscribers: usize,
    publishers: usize,
    rate: f64,
    seconds: u64,
    sample: u64,
    server_pid: Option<u32>,
    idle: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        protocol: Protocol::Aether,
        addr: "127.0.0.1:8080".parse().unwrap(),
        room: "bench_room".into(),
        token: None,
        subscribers: 1000,
        publishers: 1,
        rate: 100.0,
        seconds: 20,
        sample: 10,
        server_pid: None,
        idle: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--protocol" => {
                args.protocol = match value().as_str() {
                    "aether" => Protocol::Aether,
                    "ws" => Protocol::Ws,
                    "socketio" => Protocol::SocketIo,
                    other => panic!("unknown protocol {other}"),
                }
            }
            "--addr" => args.addr = value().parse().expect("--addr HOST:PORT"),
            "--room" => args.room = value(),
            "--token" => args.token = Some(value()),
            "--subscribers" => args.subscribers = value().parse().unwrap(),
            "--publishers" => args.publishers = value().parse().unwrap(),
            "--rate" => args.rate = value().parse().unwrap(),
            "--seconds" => args.seconds = value().parse().unwrap(),
            "--sample" => args.sample = value().parse().unwrap(),
            "--server-pid" => args.server_pid = Some(value().parse().unwrap()),
            "--idle" => args.idle = true,
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Connects from `127.0.0.<1 + n / 20000>` so that one destination port does not run out of
/// source ports, then joins the room.
async fn tcp_connect(args: &Args, n: usize) -> TcpStream {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (n / 20_000) as u8);
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
    let stream = socket.connect(args.addr).await.expect("connect");
    // As browsers do: with Nagle, a publisher's next message would wait for the server's ACK.
    stream.set_nodelay(true).expect("TCP_NODELAY");
    stream
}

/// A publisher: a WebSocket library is fine for one socket.
async fn connect(args: &Args, n: usize, with_token: bool) -> Socket {
    let stream = tcp_connect(args, n).await;
    let path = match (args.protocol, with_token, &args.token) {
        (Protocol::SocketIo, ..) => "/socket.io/?EIO=4&transport=websocket".to_owned(),
        (Protocol::Aether, true, Some(token)) => format!("/ws?token={token}"),
        (Protocol::Aether, ..) => "/ws".to_owned(),
        (Protocol::Ws, ..) => "/".to_owned(),
    };
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://{}{path}", args.addr), stream).await.expect("upgrade");
    if args.protocol == Protocol::SocketIo {
        // Engine.IO open packet, then connect to the default namespace.
        ws.next().await.unwrap().unwrap();
        ws.send(Message::text("40")).await.unwrap();
        loop {
            if let Message::Text(text) = ws.next().await.unwrap().unwrap()
                && text.starts_with("40")
            {
                break;
            }
        }
        ws.send(Message::text(format!("42[\"join\",\"{}\"]", args.room))).await.unwrap();
    } else {
        ws.send(Message::text(format!("{{\"type\":\"join\",\"room\":\"{}\"}}", args.room))).await.unwrap();
    }
    // Wait for the join to be acknowledged.
    loop {
        if let Message::Text(text) = ws.next().await.unwrap().unwrap()
            && text.contains("joined")
        {
            return ws;
        }
    }
}

fn send_frame(protocol: Protocol, room: &str, text: &str) -> Message {
    match protocol {
        Protocol::SocketIo => Message::text(format!("42[\"send\",{{\"room\":\"{room}\",\"text\":\"{text}\"}}]")),
        _ => Message::text(format!("{{\"type\":\"send\",\"room\":\"{room}\",\"text\":\"{text}\"}}")),
    }
}

fn is_message(protocol: Protocol, frame: &[u8]) -> bool {
    match protocol {
        Protocol::SocketIo => frame.starts_with(b"42[\"msg\""),
        _ => frame.starts_with(b"{\"type\":\"msg\""),
    }
}

/// The send time in a sampled message (`"text":"s<nanos>"`), found without parsing the JSON.
fn sampled_time(frame: &[u8]) -> Option<u64> {
    let marker = b"\"text\":\"s";
    let at = frame.windows(marker.len()).position(|w| w == marker)? + marker.len();
    let digits = frame[at..].iter().take_while(|b| b.is_ascii_digit()).fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(digits)
}

struct Counters {
    delivered: AtomicU64,
    sent: AtomicU64,
    closed: AtomicU64,
    measuring: AtomicBool,
}

/// Each reader records (send time, latency) into its own (uncontended) list; they are merged at
/// the end.
type Latencies = Arc<std::sync::Mutex<Vec<(u64, u64)>>>;

/// A subscriber at the byte level: the server's frames are read in large chunks and only their
/// headers are looked at, but for the sampled messages; a WebSocket library would cost as much per
/// delivery as the server it measures.
struct Lean {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Lean {
    /// Opens the WebSocket (the handshake by hand) and joins the room.
    async fn connect(args: &Args, n: usize) -> Lean {
        let stream = tcp_connect(args, n).await;
        let path = match args.protocol {
            Protocol::SocketIo => "/socket.io/?EIO=4&transport=websocket",
            Protocol::Aether => "/ws",
            Protocol::Ws => "/",
        };
        let mut lean = Lean { stream, buf: Vec::new() };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            args.addr
        );
        lean.stream.write_all(request.as_bytes()).await.expect("handshake");
        let end = loop {
            if let Some(at) = lean.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(lean.read().await > 0, "the server closed during the handshake");
        };
        assert!(lean.buf.starts_with(b"HTTP/1.1 101"), "upgrade refused");
        lean.buf.drain(..end);
        if args.protocol == Protocol::SocketIo {
            lean.text_containing("0{").await;
            lean.send("40").await;
            lean.text_containing("40").await;
            lean.send(&format!("42[\"join\",\"{}\"]", args.room)).await;
        } else {
            lean.send(&format!("{{\"type\":\"join\",\"room\":\"{}\"}}", args.room)).await;
        }
        lean.text_containing("joined").await;
        lean
    }

    async fn read(&mut self) -> usize {
        self.buf.reserve(16 * 1024);
        self.stream.read_buf(&mut self.buf).await.unwrap_or(0)
    }

    /// A masked text frame.
    async fn send(&mut self, text: &str) {
        let mut frame = vec![0x81u8];
        match text.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(text.as_bytes());
        let _ = self.stream.write_all(&frame).await;
    }

    /// Skips frames until a text frame containing `needle` (setup only).
    async fn text_containing(&mut self, needle: &str) {
        loop {
            while let Some((opcode, payload, size)) = frame_at(&self.buf) {
                let found = opcode == 1 && self.buf[payload].windows(needle.len()).any(|w| w == needle.as_bytes());
                self.buf.drain(..size);
                if found {
                    return;
                }
            }
            assert!(self.read().await > 0, "the server closed before {needle}");
        }
    }
}

/// The complete (unmasked) frame at the start of `b`, if any: (opcode, payload range, length).
fn frame_at(b: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (len, header) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (b.len() >= header + len).then(|| (b[0] & 0x0f, header..header + len, header + len))
}

async fn read_loop(protocol: Protocol, mut lean: Lean, counters: Arc<Counters>, latencies: Latencies) {
    loop {
        let (mut at, mut delivered, mut ping) = (0, 0, false);
        loop {
            let view = &lean.buf[at..];
            let Some((opcode, payload, size)) = frame_at(view) else { break };
            let frame = &view[payload];
            match opcode {
                1 if is_message(protocol, frame) => {
                    delivered += 1;
                    if counters.measuring.load(Ordering::Relaxed)
                        && let Some(sent) = sampled_time(frame)
                    {
                        latencies.lock().unwrap().push((sent, now_nanos().saturating_sub(sent)));
                    }
                }
                1 if protocol == Protocol::SocketIo && frame == b"2" => ping = true,
                8 => {
                    counters.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ => {}
            }
            at += size;
        }
        if delivered > 0 {
            counters.delivered.fetch_add(delivered, Ordering::Relaxed);
        }
        lean.buf.drain(..at);
        if ping {
            lean.send("3").await;
        }
        if lean.read().await == 0 {
            counters.closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let counters = Arc::new(Counters {
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
    });
    let mut all_latencies: Vec<Latencies> = Vec::new();
    let rss_before = args.server_pid.map(rss_kib);
    let mut readers = Vec::new();
    let opened = Instant::now();
    for n in 0..args.subscribers {
        let ws = Lean::connect(&args, n).await;
        let latencies = Latencies::default();
        all_latencies.push(latencies.clone());
        readers.push(tokio::spawn(read_loop(args.protocol, ws, counters.clone(), latencies)));
    }
    let open_secs = opened.elapsed().as_secs_f64();
    if args.idle {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (Some(pid), Some(before)) = (args.server_pid, rss_before) else { panic!("--idle needs --server-pid") };
        let after = rss_kib(pid);
        let per = (after - before) / args.subscribers as f64;
        println!(
            "RESULT mode=idle connections={} server_rss_before_kib={before:.0} after_kib={after:.0} per_connection_kib={per:.2} open_s={open_secs:.1}",
            args.subscribers
        );
        std::process::exit(0);
    }
    let mut publishers = Vec::new();
    for p in 0..args.publishers {
        let ws = connect(&args, args.subscribers + p, true).await;
        publishers.push(ws);
    }
    let members = (args.subscribers + args.publishers) as u64;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for ws in publishers {
        let (mut sink, stream) = ws.split();
        let (args, counters, stop) = (args.clone(), counters.clone(), stop.clone());
        // The publisher is a member too: count what it receives.
        let reader_counters = counters.clone();
        let protocol = args.protocol;
        tasks.push(tokio::spawn(async move {
            let mut stream = stream;
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message
                    && is_message(protocol, text.as_bytes())
                {
                    reader_counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // Sampled at random, one in `sample` on average: a fixed stride could fall into step
            // with the server's window and see the same point of it every time.
            let mut random = 0x9E37_79B9_7F4A_7C15u64 ^ now_nanos();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                random ^= random << 13;
                random ^= random >> 7;
                random ^= random << 17;
                let text =
                    if random.is_multiple_of(args.sample) { format!("s{}", now_nanos()) } else { "x".to_owned() };
                if sink.send(send_frame(args.protocol, &args.room, &text)).await.is_err() {
                    break;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent0, delivered0) = (counters.sent.load(Ordering::Relaxed), counters.delivered.load(Ordering::Relaxed));
    let cpu0 = args.server_pid.map(cpu_seconds);
    counters.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (sent1, delivered1) = (counters.sent.load(Ordering::Relaxed), counters.delivered.load(Ordering::Relaxed));
    let cpu1 = args.server_pid.map(cpu_seconds);
    counters.measuring.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    // Drain: whatever is still queued arrives now or is lost.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let total_sent = counters.sent.load(Ordering::Relaxed);
    let total_delivered = counters.delivered.load(Ordering::Relaxed);
    let lost = (total_sent * members).saturating_sub(total_delivered);
    let closed = counters.closed.load(Ordering::Relaxed);
    for reader in readers {
        reader.abort();
    }
    for task in tasks {
        task.abort();
    }
    let samples: Vec<(u64, u64)> = all_latencies.iter().flat_map(|l| std::mem::take(&mut *l.lock().unwrap())).collect();
    // Per sampled message, its first arrival at any subscriber: how long the server took to take
    // it in and start handing it out, apart from how long the fan-out took.
    let mut first: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for &(sent, latency) in &samples {
        let earliest = first.entry(sent).or_insert(u64::MAX);
        *earliest = (*earliest).min(latency);
    }
    let mut firsts: Vec<u64> = first.into_values().collect();
    firsts.sort_unstable();
    let mut latencies: Vec<u64> = samples.iter().map(|&(_, latency)| latency).collect();
    latencies.sort_unstable();
    let quantile = |sorted: &[u64], p: f64| {
        sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
            as f64
            / 1e6
    };
    let pct = |p: f64| quantile(&latencies, p);
    let deliveries = (delivered1 - delivered0) as f64;
    let cpu_per_million = match (cpu0, cpu1) {
        (Some(a), Some(b)) if deliveries > 0.0 => format!("{:.2}", (b - a) / deliveries * 1e6),
        _ => "n/a".into(),
    };
    println!(
        "RESULT subscribers={} publishers={} rate={} sent_per_s={:.0} deliveries_per_s={:.0} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} lost={lost} closed_by_server={closed} cpu_s_per_million={cpu_per_million} first_p50_ms={:.1} first_p99_ms={:.1}",
        args.subscribers,
        args.publishers,
        args.rate,
        (sent1 - sent0) as f64 / elapsed,
        deliveries / elapsed,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0) as f64 / 1e6,
        quantile(&firsts, 0.5),
        quantile(&firsts, 0.99),
    );
    std::process::exit(0);
}

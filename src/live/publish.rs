//! Publishing: the server's answer to ingest (`PublishAuthority`) and the life of a broadcast.
//! A valid key on a channel that is not live opens a stream session row, registers the stream,
//! announces `stream.started`, and starts the task that packages the publisher's events. When the
//! publisher goes (its event sender drops) the task flushes every rendition and waits up to
//! `live.reconnect_grace_seconds` for it: the same key publishing again continues the broadcast
//! (timestamps shifted to follow on, a discontinuity in the playlists and the recording). After
//! the grace, or when another key publishes, it unregisters the stream (the live window goes with
//! it), closes the session row and announces `stream.ended`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aether_ingest::{Publication, PublishAuthority, PublishRequest, Refusal};
use aether_media::packager::{Packager, PackagerStats, Produced};
use aether_media::{MediaFrame, StreamEvent, TIMEBASE, Track};
use sqlx::Row;
use tokio::sync::mpsc;

use super::ladder::{Flush, LiveLadder};
use super::record::{self, Recorder};
use super::rtc::{RtcNext, RtcOut};
use super::thumbnails::KeyframeThumbnails;
use super::{LiveStream, Opened};
use crate::app::AppState;
use crate::channels::keys::{self, StreamKey};
use crate::db::{Db, now_ms};
use crate::events::{self, Event};

/// Source events held for the ladder while it waits for the source's bitrate: a second and
/// more of audio and video.
const LADDER_WAIT_EVENTS: usize = 1000;

/// Events queued from a publisher's connection to its packaging task: a few seconds of frames.
const EVENT_QUEUE: usize = 512;

pub struct LivePublishers {
    state: AppState,
}

impl LivePublishers {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl PublishAuthority for LivePublishers {
    async fn authorize(&self, request: PublishRequest) -> Result<Publication, Refusal> {
        let state = &self.state;
        let unavailable = |error: sqlx::Error| {
            tracing::error!(%error, "stream key check failed");
            Refusal::Unavailable("database unavailable".into())
        };
        let key = StreamKey::from_publisher(&request.stream_key);
        let (channel_id, channel) = keys::verify(state.db(), &key).await.map_err(unavailable)?.ok_or_else(|| {
            tracing::info!(peer = %request.peer, "publish refused: unknown stream key");
            Refusal::UnknownKey
        })?;
        let key_hash = key.hash();
        if let Some(live) = state.live().get(&channel) {
            if !live.is_reconnecting() {
                tracing::info!(peer = %request.peer, %channel, "publish refused: channel already live");
                return Err(Refusal::AlreadyLive);
            }
            if live.key_hash == key_hash {
                // The publisher is back within the grace: the broadcast goes on.
                let (events, receiver) = mpsc::channel(EVENT_QUEUE);
                // One handover at a time: a second publisher racing in with the same key is
                // refused as for any live channel.
                if live.handovers.try_send(Handover::Resume(receiver)).is_ok() {
                    tracing::info!(peer = %request.peer, %channel, app = %request.app, "publisher reconnected");
                    return Ok(Publication { name: channel, events, keyframes: live.keyframes.clone() });
                }
            } else {
                // Another key (rotated meanwhile): that broadcast is over; this is a new one.
                let _ = live.handovers.try_send(Handover::End);
            }
            wait_until_offline(state, &channel).await.map_err(|()| Refusal::AlreadyLive)?;
        }
        let started_at = now_ms();
        // The session row and the durable `stream.started` (go-live notifications, ...) commit
        // together, and only once this broadcast holds the channel in the registry.
        let mut tx = state.db().write().await.map_err(unavailable)?;
        let session_id: i64 =
            sqlx::query("INSERT INTO stream_sessions (channel_id, started_at) VALUES ($1, $2) RETURNING id")
                .bind(channel_id.0)
                .bind(started_at)
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get("id"))
                .map_err(unavailable)?;
        let (handovers, handed) = mpsc::channel(1);
        let stream = Arc::new(LiveStream::new(
            Opened { channel_id, channel: channel.clone(), session_id, started_at, key_hash, handovers },
            state.config().hls.packager(),
            state.config().webrtc.viewer_queue,
        ));
        if state.live().insert(stream.clone()).is_err() {
            // Another publisher of the same channel won the race; the transaction rolls back.
            return Err(Refusal::AlreadyLive);
        }
        let started = Event::StreamStarted { channel: channel.clone(), session_id };
        let committed = match events::publish(&mut tx, &started).await {
            Ok(()) => tx.commit().await,
            Err(error) => Err(error),
        };
        if let Err(error) = committed {
            state.live().remove(&stream);
            return Err(unavailable(error));
        }
        state.jobs().wake();
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let keyframes = stream.keyframes.clone();
        state.tasks().spawn(package(state.clone(), stream, receiver, handed));
        metrics::gauge!("aether_live_streams").set(state.live().len() as f64);
        state.bus().publish(started);
        tracing::info!(%channel, session_id, app = %request.app, "stream started");
        Ok(Publication { name: channel, events, keyframes })
    }
}

/// What the authority hands a broadcast that waits for its publisher to come back.
pub(super) enum Handover {
    /// The same publisher (same key) is back: its events continue the broadcast.
    Resume(mpsc::Receiver<StreamEvent>),
    /// Someone else is publishing (a rotated key): the broadcast ends now.
    End,
}

/// Packages one broadcast's events until its publisher goes and does not come back within the
/// reconnect grace, then takes it offline. The source rendition is packaged here; the ladder's
/// rungs from the transcoder's outputs, in the same task.
async fn package(
    state: AppState,
    stream: Arc<LiveStream>,
    mut events: mpsc::Receiver<StreamEvent>,
    mut handovers: mpsc::Receiver<Handover>,
) {
    let channel = stream.channel.clone();
    let mut broadcast = Broadcast::new(&state, &stream).await;
    loop {
        if !broadcast.run(&state, &stream, &mut events).await {
            break;
        }
        // The publisher is gone. A broadcast that never made media (its codec refused, say) has
        // nothing to go on with; another flushes what is held and waits for it to come back.
        if stream.source.packager().current_init_id().is_none() {
            break;
        }
        broadcast.pause(&state, &stream).await;
        let grace = Duration::from_secs(u64::from(state.config().live.reconnect_grace_seconds));
        stream.reconnecting.store(true, Ordering::Release);
        tracing::info!(%channel, grace_secs = grace.as_secs(), "publisher gone; waiting for it to reconnect");
        let waited = tokio::select! {
            waited = tokio::time::timeout(grace, handovers.recv()) => waited,
            // Shutting down: the broadcast ends now.
            _ = state.stopping().cancelled() => Ok(None),
        };
        let handover = waited.unwrap_or_else(|_| {
            // Nobody may hand over from now on; one that did just before still counts.
            handovers.close();
            handovers.try_recv().ok()
        });
        stream.reconnecting.store(false, Ordering::Release);
        match handover {
            Some(Handover::Resume(resumed)) => {
                tracing::info!(%channel, session_id = stream.session_id, "publisher reconnected; the broadcast goes on");
                events = resumed;
                broadcast.resume();
            }
            Some(Handover::End) | None => break,
        }
    }
    handovers.close();
    drop(events);
    let counted = broadcast.finish(&state, &stream).await;
    stream.ended.store(true, Ordering::Release);
    for rendition in stream.renditions() {
        rendition.notify();
    }
    state.live().remove(&stream);
    metrics::gauge!("aether_live_streams").set(state.live().len() as f64);
    metrics::gauge!("aether_ingest_bitrate_bps", "channel" => channel.clone()).set(0.0);
    end_session(state.db(), stream.session_id).await;
    state.bus().publish(Event::StreamEnded { channel: channel.clone(), session_id: stream.session_id });
    tracing::info!(%channel, session_id = stream.session_id, segments = counted.segments, "stream ended");
}

/// A broadcast's packaging state, across its publisher's connections.
struct Broadcast {
    recorder: Option<Recorder>,
    ladder: Option<LiveLadder>,
    /// What WebRTC viewers get; Opus made into AAC.
    rtc: RtcOut,
    /// Without a ladder, thumbnails from single keyframes.
    thumbnails: Option<KeyframeThumbnails>,
    counted: PackagerStats,
    bitrate: BitrateMeter,
    keyframes: KeyframeMeter,
    /// The source's video bytes and media time so far: its average bitrate, which the ladder's
    /// rungs stay under.
    video_bytes: u64,
    video_span: Option<(i64, i64)>,
    /// The source's video configuration and its events since the latest keyframe, while the
    /// ladder waits to be planned.
    ladder_waits: Option<(aether_media::avc::AvcConfig, Vec<StreamEvent>)>,
    /// Added to the timestamps of the current connection, so that they go on from the previous
    /// connection's (a reconnected publisher starts its clock again); `None` until its first frame.
    shift: Option<i64>,
    /// The end of the media so far (ticks, shifted) and when the publisher left.
    media_end: i64,
    left_at: Option<Instant>,
}

impl Broadcast {
    async fn new(state: &AppState, stream: &LiveStream) -> Broadcast {
        Broadcast {
            recorder: Recorder::start(state, stream).await,
            ladder: None,
            rtc: RtcOut::default(),
            thumbnails: None,
            counted: PackagerStats::default(),
            bitrate: BitrateMeter::default(),
            keyframes: KeyframeMeter::default(),
            video_bytes: 0,
            video_span: None,
            ladder_waits: None,
            shift: Some(0),
            media_end: 0,
            left_at: None,
        }
    }

    /// Packages the publisher's events until it goes (`true`) or packaging fails (`false`).
    async fn run(
        &mut self,
        state: &AppState,
        stream: &Arc<LiveStream>,
        events: &mut mpsc::Receiver<StreamEvent>,
    ) -> bool {
        loop {
            let next = tokio::select! {
                event = events.recv() => Next::Source(event),
                Some(output) = next_output(&mut self.ladder) => Next::Ladder(output),
                next = self.rtc.next(stream) => Next::Rtc(next),
            };
            match next {
                Next::Source(Some(event)) => {
                    if !self.on_event(state, stream, event).await {
                        return false;
                    }
                }
                Next::Source(None) => return true,
                Next::Rtc(RtcNext::Aac(event)) => {
                    if !self.package_event(state, stream, event).await {
                        return false;
                    }
                }
                Next::Rtc(RtcNext::Stopped) => {}
                Next::Ladder(output) => {
                    self.rtc.on_ladder(stream, &output);
                    if let Some(ladder) = &mut self.ladder {
                        let recorded = ladder.on_output(state, stream, output);
                        if let Some(recorder) = &self.recorder {
                            recorder.record(recorded).await;
                        }
                    }
                }
            }
        }
    }

    /// One source event; `false` when packaging failed and the broadcast must end.
    async fn on_event(&mut self, state: &AppState, stream: &Arc<LiveStream>, mut event: StreamEvent) -> bool {
        let channel = &stream.channel;
        if let StreamEvent::Frame(frame) | StreamEvent::Opus(frame) = &mut event {
            let shift = *self.shift.get_or_insert_with(|| {
                // The first frame after a reconnect: on from where the media ended, plus the time
                // the publisher was away, so that program date-times stay true.
                let away = self.left_at.map_or(0, |left| left.elapsed().as_millis() as i64);
                self.media_end + away * i64::from(TIMEBASE) / 1000 - frame.dts
            });
            frame.dts += shift;
            frame.pts += shift;
            self.media_end = self.media_end.max(frame.dts);
            if frame.track == Track::Video {
                self.keyframes.add(frame);
                // Segments are cut at keyframes: a publisher that can be asked (WHIP; browsers
                // send keyframes only when asked) is asked for one each segment.
                let segment = (state.config().hls.segment_seconds * f64::from(TIMEBASE)) as i64;
                if self.keyframes.since_key(frame.dts).is_some_and(|since| since >= segment) {
                    stream.keyframes.notify_one();
                }
                self.video_bytes += frame.data.len() as u64;
                let span = self.video_span.get_or_insert((frame.dts, frame.dts));
                span.1 = span.1.max(frame.dts);
            }
            if let Some(bps) = self.bitrate.add(frame.data.len()) {
                metrics::gauge!("aether_ingest_bitrate_bps", "channel" => channel.clone()).set(bps);
                let frame_rate = stream.source.packager().frame_rate();
                let keyframe_interval = self.keyframes.interval_secs();
                stream.update_ingest(|ingest| {
                    ingest.bitrate_bps = bps;
                    ingest.frame_rate = frame_rate;
                    ingest.keyframe_interval_secs = keyframe_interval;
                });
                self.keyframes.warn_once(state, stream);
                if let (Some(ladder), Some(kbps)) = (&self.ladder, self.video_kbps()) {
                    ladder.cap_bitrates(kbps);
                }
            }
        }
        self.rtc.on_source(stream, &event);
        if let StreamEvent::Opus(_) = event {
            stream.update_ingest(|ingest| {
                if ingest.audio.is_none() {
                    ingest.audio = Some("Opus 48 kHz (AAC 128 kbps for HLS)".to_owned());
                }
            });
            return true;
        }
        self.package_event(state, stream, event).await
    }

    /// An event for the packagers, the ladder and the recording (times on the broadcast's
    /// timeline); `false` when packaging failed and the broadcast must end.
    async fn package_event(&mut self, state: &AppState, stream: &Arc<LiveStream>, event: StreamEvent) -> bool {
        let channel = &stream.channel;
        match &event {
            StreamEvent::VideoConfig(config) => {
                stream.update_ingest(|ingest| {
                    (ingest.width, ingest.height) = (config.width, config.height);
                    ingest.video_codec = Some(format!("H.264 {}", config.profile_name()));
                });
                if self.ladder.is_none() {
                    // The ladder is planned once the source's bitrate is known (a second of it):
                    // until then its events wait, from the latest keyframe on.
                    self.ladder_waits = Some((config.clone(), Vec::new()));
                }
            }
            StreamEvent::AudioConfig(config) => stream.update_ingest(|ingest| {
                // A WHIP publisher's Opus is described as such (its AAC is ours).
                if !ingest.audio.as_deref().is_some_and(|audio| audio.starts_with("Opus")) {
                    ingest.audio = Some(config.describe());
                }
            }),
            StreamEvent::Opus(_) => {}
            StreamEvent::Frame(frame) => {
                if let Some(thumbnails) = &mut self.thumbnails
                    && frame.track == Track::Video
                {
                    thumbnails.on_frame(state, stream, frame);
                }
            }
        }
        let source_kbps = self.video_kbps();
        if self.ladder.is_none()
            && self.ladder_waits.is_some()
            && let Some(kbps) = source_kbps
        {
            // This event goes to the new ladder below, after those that waited.
            self.start_ladder(state, stream, kbps);
        } else if self.ladder.is_none()
            && let Some((_, waiting)) = &mut self.ladder_waits
            && let StreamEvent::Frame(frame) = &event
        {
            if frame.track == Track::Video && frame.keyframe {
                waiting.clear();
            }
            let wanted = frame.track == Track::Audio || frame.keyframe || !waiting.is_empty();
            if wanted && waiting.len() < LADDER_WAIT_EVENTS {
                waiting.push(event.clone());
            }
        }
        // The ladder sees the event first (a look), so that the source packager can take it.
        let mut recorded = match &mut self.ladder {
            Some(ladder) => ladder.on_source(stream, &event),
            None => Vec::new(),
        };
        let (result, stats) = {
            let mut packager = stream.source.packager();
            let result = packager.push(event, now_ms());
            if let (Ok(produced), Some(_)) = (&result, &self.recorder) {
                recorded.extend(record::items(&stream.source.name, &packager, produced));
            }
            (result, packager.stats())
        };
        if let Some(recorder) = &self.recorder {
            recorder.record(recorded).await;
        }
        count(&mut self.counted, stats);
        match result {
            Ok(produced) => {
                if !produced.is_empty() {
                    stream.source.notify();
                }
                log_produced(channel, &produced);
                true
            }
            Err(error) => {
                tracing::error!(%channel, %error, "packaging failed; ending the stream");
                false
            }
        }
    }

    /// The publisher left, maybe for a moment: every rendition's held media goes out (and to the
    /// recording), and the ladder's pipeline stops; the renditions stay.
    async fn pause(&mut self, state: &AppState, stream: &LiveStream) {
        let mut last = flush(stream, Packager::interrupt);
        if let Some(ladder) = self.ladder.take() {
            last.extend(ladder.finish(state, stream, Packager::interrupt).await);
        }
        for rendition in stream.renditions() {
            rendition.notify();
        }
        if let Some(recorder) = &self.recorder {
            recorder.record(last).await;
        }
        self.left_at = Some(Instant::now());
        self.bitrate = BitrateMeter::default();
        (self.video_bytes, self.video_span) = (0, None);
    }

    /// Starts the ladder (or, without rungs, keyframe thumbnails) and hands it the events that
    /// waited for it.
    fn start_ladder(&mut self, state: &AppState, stream: &LiveStream, source_kbps: u32) {
        let Some((config, waiting)) = self.ladder_waits.take() else { return };
        self.ladder = LiveLadder::start(state, stream, &config, source_kbps, self.recorder.is_some());
        match &mut self.ladder {
            Some(ladder) => {
                for event in &waiting {
                    // The rungs' packagers produce nothing before the transcoder's first output.
                    let _ = ladder.on_source(stream, event);
                }
            }
            None if self.thumbnails.is_none() => {
                self.thumbnails = KeyframeThumbnails::new(state, self.recorder.is_some());
            }
            None => {}
        }
    }

    /// The source's average video bitrate (kbps), once a second of it has come.
    fn video_kbps(&self) -> Option<u32> {
        let (first, last) = self.video_span?;
        let seconds = (last - first) as f64 / f64::from(TIMEBASE);
        (seconds >= 1.0).then(|| (self.video_bytes as f64 * 8.0 / seconds / 1000.0) as u32)
    }

    /// The publisher is back: its clock is shifted from its first frame on.
    fn resume(&mut self) {
        self.shift = None;
    }

    /// The broadcast is over: flushes what is left and finalizes the recording.
    async fn finish(mut self, state: &AppState, stream: &LiveStream) -> PackagerStats {
        let mut last = flush(stream, Packager::finish);
        if let Some(ladder) = self.ladder.take() {
            last.extend(ladder.finish(state, stream, Packager::finish).await);
        }
        if let Some(recorder) = &self.recorder {
            recorder.record(last).await;
        }
        // Dropping the recorder lets it write what is queued and finalize the VOD.
        drop(self.recorder.take());
        count(&mut self.counted, stream.source.packager().stats());
        self.counted
    }
}

/// Flushes the source packager with `how` (`finish` or `interrupt`); what it produced, to record.
fn flush(stream: &LiveStream, how: Flush) -> Vec<record::Item> {
    let flushed = {
        let mut packager = stream.source.packager();
        how(&mut packager).map(|produced| record::items(&stream.source.name, &packager, &produced))
    };
    stream.source.notify();
    flushed.unwrap_or_else(|error| {
        tracing::warn!(channel = %stream.channel, %error, "flushing the last segment failed");
        Vec::new()
    })
}

enum Next {
    Source(Option<StreamEvent>),
    Rtc(RtcNext),
    Ladder(aether_transcode::Output),
}

/// The ladder's next output; never resolves without a ladder.
async fn next_output(ladder: &mut Option<LiveLadder>) -> Option<aether_transcode::Output> {
    match ladder {
        Some(ladder) => ladder.next().await,
        None => std::future::pending().await,
    }
}

fn log_produced(channel: &str, produced: &[Produced]) {
    for item in produced {
        if let Produced::Segment { msn } = item {
            tracing::debug!(%channel, msn, "segment");
        }
    }
}

/// Adds the growth of the packager's counters to the metrics.
fn count(counted: &mut PackagerStats, now: PackagerStats) {
    metrics::counter!("aether_segments_total").increment(now.segments - counted.segments);
    metrics::counter!("aether_parts_total").increment(now.parts - counted.parts);
    metrics::counter!("aether_frames_dropped_total").increment(now.frames_dropped - counted.frames_dropped);
    *counted = now;
}

/// Media bytes per second, measured over windows of about a second.
#[derive(Default)]
struct BitrateMeter {
    since: Option<Instant>,
    bytes: usize,
}

impl BitrateMeter {
    fn add(&mut self, bytes: usize) -> Option<f64> {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.bytes += bytes;
        let elapsed = since.elapsed();
        if elapsed < Duration::from_secs(1) {
            return None;
        }
        let bps = self.bytes as f64 * 8.0 / elapsed.as_secs_f64();
        *self = BitrateMeter { since: Some(Instant::now()), bytes: 0 };
        Some(bps)
    }
}

/// The spacing of the source's keyframes, which sets how long segments are.
#[derive(Default)]
struct KeyframeMeter {
    last_key: Option<i64>,
    /// Ticks: the last interval, or the time since the last keyframe when that is longer.
    interval: Option<i64>,
    warned: bool,
}

impl KeyframeMeter {
    fn add(&mut self, frame: &MediaFrame) {
        let Some(last) = self.last_key else {
            self.last_key = frame.keyframe.then_some(frame.dts);
            return;
        };
        let since = frame.dts - last;
        if frame.keyframe {
            self.interval = Some(since);
            self.last_key = Some(frame.dts);
        } else if self.interval.is_none_or(|interval| since > interval) {
            self.interval = Some(since);
        }
    }

    /// Ticks from the last keyframe to `dts`.
    fn since_key(&self, dts: i64) -> Option<i64> {
        self.last_key.map(|last| dts - last)
    }

    fn interval_secs(&self) -> Option<f64> {
        self.interval.map(|ticks| (ticks as f64 / f64::from(TIMEBASE) * 100.0).round() / 100.0)
    }

    /// Says once per broadcast, in the log, that the publisher's keyframes are too far apart.
    fn warn_once(&mut self, state: &AppState, stream: &LiveStream) {
        let segment_seconds = state.config().hls.segment_seconds;
        if self.warned || !super::keyframes_too_far_apart(self.interval_secs(), segment_seconds) {
            return;
        }
        self.warned = true;
        tracing::warn!(channel = %stream.channel, keyframe_interval_secs = self.interval_secs(), segment_seconds,
            "keyframes are too far apart: segments (and latency) grow with them; \
             set the encoder's keyframe interval to 2 s (OBS: Settings > Output > Keyframe Interval)");
    }
}

/// Waits (a few seconds at most) for a broadcast that was told to end to be gone.
async fn wait_until_offline(state: &AppState, channel: &str) -> Result<(), ()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.live().get(channel).is_some() {
        if Instant::now() > deadline {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn end_session(db: &Db, session_id: i64) {
    let ended = sqlx::query("UPDATE stream_sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
        .bind(now_ms())
        .bind(session_id)
        .execute(db.pool())
        .await;
    if let Err(error) = ended {
        tracing::warn!(%error, session_id, "closing the stream session row failed");
    }
}

/// Closes the session rows a crash left open (no stream is live at start-up).
pub async fn end_unfinished_sessions(db: &Db) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE stream_sessions SET ended_at = $1 WHERE ended_at IS NULL")
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

//! Publishing: the server's answer to ingest (`PublishAuthority`) and the life of a broadcast.
//! A valid key on a channel that is not live opens a stream session row, registers the stream,
//! announces `stream.started`, and starts the task that packages the publisher's events. When the
//! publisher goes (its event sender drops) the task flushes the packager, unregisters the stream
//! (the live window goes with it), closes the session row and announces `stream.ended`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aether_ingest::{Publication, PublishAuthority, PublishRequest, Refusal};
use aether_media::StreamEvent;
use aether_media::packager::{PackagerStats, Produced};
use sqlx::Row;
use tokio::sync::mpsc;

use super::LiveStream;
use super::ladder::LiveLadder;
use super::record::{self, Recorder};
use crate::app::AppState;
use crate::channels::keys::{self, StreamKey};
use crate::db::{Db, now_ms};
use crate::events::Event;

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
        if state.live().get(&channel).is_some() {
            tracing::info!(peer = %request.peer, %channel, "publish refused: channel already live");
            return Err(Refusal::AlreadyLive);
        }
        let started_at = now_ms();
        let session_id: i64 =
            sqlx::query("INSERT INTO stream_sessions (channel_id, started_at) VALUES ($1, $2) RETURNING id")
                .bind(channel_id.0)
                .bind(started_at)
                .fetch_one(state.db().pool())
                .await
                .and_then(|row| row.try_get("id"))
                .map_err(unavailable)?;
        let stream = Arc::new(LiveStream::new(
            channel_id,
            channel.clone(),
            session_id,
            started_at,
            state.config().hls.packager(),
        ));
        if state.live().insert(stream.clone()).is_err() {
            // Another publisher of the same channel won the race.
            end_session(state.db(), session_id).await;
            return Err(Refusal::AlreadyLive);
        }
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        state.tasks().spawn(package(state.clone(), stream, receiver));
        metrics::gauge!("aether_live_streams").set(state.live().len() as f64);
        state.bus().publish(Event::StreamStarted { channel: channel.clone(), session_id });
        tracing::info!(%channel, session_id, "stream started");
        Ok(Publication { name: channel, events })
    }
}

/// Packages one broadcast's events until its publisher goes, then takes it offline. The source
/// rendition is packaged here; the ladder's rungs from the transcoder's outputs, in the same task.
async fn package(state: AppState, stream: Arc<LiveStream>, mut events: mpsc::Receiver<StreamEvent>) {
    let channel = stream.channel.clone();
    let recorder = Recorder::start(&state, &stream).await;
    let mut ladder: Option<LiveLadder> = None;
    let mut counted = PackagerStats::default();
    let mut bitrate = BitrateMeter::default();
    loop {
        let next = tokio::select! {
            event = events.recv() => Next::Source(event),
            Some(output) = next_output(&mut ladder) => Next::Ladder(output),
        };
        let event = match next {
            Next::Source(Some(event)) => event,
            Next::Source(None) => break,
            Next::Ladder(output) => {
                if let Some(ladder) = &mut ladder {
                    let recorded = ladder.on_output(&state, &stream, output);
                    if let Some(recorder) = &recorder {
                        recorder.record(recorded).await;
                    }
                }
                continue;
            }
        };
        if let StreamEvent::Frame(frame) = &event
            && let Some(bps) = bitrate.add(frame.data.len())
        {
            metrics::gauge!("aether_ingest_bitrate_bps", "channel" => channel.clone()).set(bps);
            let frame_rate = stream.source.packager().frame_rate();
            stream.update_ingest(|ingest| {
                ingest.bitrate_bps = bps;
                ingest.frame_rate = frame_rate;
            });
        }
        if let StreamEvent::VideoConfig(config) = &event {
            stream.update_ingest(|ingest| (ingest.width, ingest.height) = (config.width, config.height));
        }
        if let StreamEvent::VideoConfig(config) = &event
            && ladder.is_none()
            && stream.ladder.get().is_none()
        {
            ladder = LiveLadder::start(&state, &stream, config, recorder.is_some());
        }
        // The ladder sees the event first (a look), so that the source packager can take it.
        let mut recorded = match &mut ladder {
            Some(ladder) => ladder.on_source(&stream, &event),
            None => Vec::new(),
        };
        let (result, stats) = {
            let mut packager = stream.source.packager();
            let result = packager.push(event, now_ms());
            if let (Ok(produced), Some(_)) = (&result, &recorder) {
                recorded.extend(record::items(&stream.source.name, &packager, produced));
            }
            (result, packager.stats())
        };
        if let Some(recorder) = &recorder {
            recorder.record(recorded).await;
        }
        match result {
            Ok(produced) => {
                if !produced.is_empty() {
                    stream.source.notify();
                }
                log_produced(&channel, &produced);
            }
            Err(error) => {
                tracing::error!(%channel, %error, "packaging failed; ending the stream");
                break;
            }
        }
        count(&mut counted, stats);
    }
    // No more events: the publisher left (or packaging failed and `events` is dropped here,
    // which closes the publisher's connection).
    drop(events);
    let flushed = {
        let mut packager = stream.source.packager();
        packager.finish().map(|produced| record::items(&stream.source.name, &packager, &produced))
    };
    let mut last = match flushed {
        Ok(items) => items,
        Err(error) => {
            tracing::warn!(%channel, %error, "flushing the last segment failed");
            Vec::new()
        }
    };
    if let Some(ladder) = ladder.take() {
        last.extend(ladder.finish(&state, &stream).await);
    }
    if let Some(recorder) = &recorder {
        recorder.record(last).await;
    }
    // Dropping the recorder lets it write what is queued and finalize the VOD.
    drop(recorder);
    count(&mut counted, stream.source.packager().stats());
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

enum Next {
    Source(Option<StreamEvent>),
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

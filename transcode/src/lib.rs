//! The GStreamer ABR ladder: source video in, lower renditions and thumbnails out. One pipeline
//! per live stream: `appsrc` takes the source H.264 access units (timestamps kept), the picture is
//! decoded once and scaled down the ladder (each rung from the picture of the rung above it, the
//! first from the source: lower rungs scale less), each rung encoded by x264 on its own thread,
//! plus a thumbnail branch (one JPEG every `thumbnail_seconds`); every branch ends in an
//! `appsink` whose output goes to the caller's channel. The source rendition itself never passes
//! through here.
//!
//! Every rung gets a keyframe exactly where the source has one (a force-key-unit event ahead of
//! the decoded picture of each source keyframe; x264 places none of its own in between), so that
//! all renditions cut segments at the same times. When a rung falls behind real time, the lowest
//! rungs are dropped first (`Output::Dropped`); pushing never blocks the caller.

mod audio;
mod ladder;
mod reencode;
mod still;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aether_media::avc::AvcConfig;
use aether_media::{MediaFrame, TIMEBASE, Track};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

pub use audio::{AUDIO_ELEMENTS, AudioOutput, AudioTranscoder};
pub use ladder::{Encoder, LadderRung, MIN_RUNG_KBPS, Rung, TranscodeConfig, capped_bitrates, plan, plan_under};
pub use reencode::{GopPicture, Reencoded, reencode_gop};
pub use still::keyframe_jpeg;

/// The GStreamer elements the ladder needs, and what each is for.
pub const ELEMENTS: &[(&str, &str)] = &[
    ("appsrc", "feeding the source video in"),
    ("appsink", "taking renditions out"),
    ("avdec_h264", "decoding the source (gstreamer1.0-libav)"),
    ("tee", "one decode shared by every rung"),
    ("queue", "a thread per rung"),
    ("valve", "dropping a rung under overload"),
    ("videoscale", "scaling to each rung"),
    ("videorate", "capping the frame rate"),
    ("videoconvert", "8-bit 4:2:0 for the encoder"),
    ("x264enc", "encoding the rungs (gstreamer1.0-plugins-ugly)"),
    ("jpegenc", "thumbnails (gstreamer1.0-plugins-good)"),
];

#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("GStreamer elements missing: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
    #[error("the transcoding pipeline failed: {0}")]
    Pipeline(String),
}

/// Caps of H.264 as AVC access units (length-prefixed NAL units) with their decoder
/// configuration record.
pub(crate) fn avc_caps(record: &Bytes) -> gst::Caps {
    gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(record.clone()))
        .build()
}

/// Initializes GStreamer once and lists the ladder's elements that are not installed.
pub fn missing_elements() -> Result<Vec<&'static str>, TranscodeError> {
    gst::init().map_err(|e| TranscodeError::Init(e.to_string()))?;
    Ok(ELEMENTS.iter().filter(|(name, _)| gst::ElementFactory::find(name).is_none()).map(|(name, _)| *name).collect())
}

/// What the pipeline produces, for the caller's packaging task.
#[derive(Debug)]
pub enum Output {
    /// A rung's codec configuration (before its first frame, and whenever it changes).
    Config { rung: usize, config: AvcConfig },
    /// A rung's encoded access unit, timestamps in `TIMEBASE` ticks of the source's clock.
    Frame { rung: usize, frame: MediaFrame },
    /// A JPEG of the current picture.
    Thumbnail(Bytes),
    /// The rung was dropped because it fell behind real time; no more output for it.
    Dropped { rung: usize },
    /// The pipeline stopped with an error; no more output at all.
    Failed(String),
}

/// Source timestamps are shifted by this much in the pipeline, so that none is negative.
const OFFSET_NS: i64 = 10_000_000_000;
/// Outputs waiting for the caller: a few seconds of every rung.
const OUTPUT_QUEUE: usize = 1024;

fn ticks_to_ns(ticks: i64) -> u64 {
    (OFFSET_NS + ticks * 1_000_000_000 / i64::from(TIMEBASE)).max(0) as u64
}

fn ns_to_ticks(ns: u64) -> i64 {
    ((i128::from(ns) - i128::from(OFFSET_NS)) * i128::from(TIMEBASE) / 1_000_000_000) as i64
}

struct RungState {
    valve: gst::Element,
    /// The encoder, whose bitrate follows the source's (`cap_bitrates`).
    encoder: Option<gst::Element>,
    /// The bitrate it was planned with, and the one it has now (kbps).
    planned_kbps: u32,
    kbps: AtomicU64,
    /// Presentation time of its latest output, in ticks.
    last_output: AtomicI64,
    dropped: AtomicBool,
    /// How long (ticks) the source holds a picture between decoding and showing it (B-frame
    /// reordering); given to the rung's pictures too, so that they decode at the source's times.
    decode_delay: Arc<AtomicI64>,
}

/// One stream's ladder pipeline. Dropping it tears the pipeline down.
pub struct Transcoder {
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    rungs: Vec<Arc<RungState>>,
    outputs: mpsc::Sender<Output>,
    /// Presentation times (ns, pipeline clock) of the source keyframes not yet encoded.
    keyframes: Arc<Mutex<VecDeque<u64>>>,
    decode_delay: Arc<AtomicI64>,
    max_lag_ticks: i64,
    last_input: i64,
    failed: bool,
}

impl Transcoder {
    /// Builds and starts the pipeline for a source with `config`; `rungs` from `plan`.
    pub fn start(
        config: &TranscodeConfig,
        source: &AvcConfig,
        rungs: &[LadderRung],
    ) -> Result<(Transcoder, mpsc::Receiver<Output>), TranscodeError> {
        let missing = missing_elements()?;
        if !missing.is_empty() {
            return Err(TranscodeError::Missing(missing));
        }
        let encoder = match config.encoder {
            Encoder::X264 => Encoder::X264,
            wanted if gst::ElementFactory::find(wanted.element()).is_some() => wanted,
            wanted => {
                tracing::warn!(encoder = wanted.element(), "the configured hardware encoder is absent; using x264");
                Encoder::X264
            }
        };
        let description = ladder::pipeline_description(source.width, source.height, rungs, encoder);
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| TranscodeError::Pipeline(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| TranscodeError::Pipeline("not a pipeline".into()))?;
        let by_name =
            |name: &str| pipeline.by_name(name).ok_or_else(|| TranscodeError::Pipeline(format!("no element {name}")));
        let appsrc = by_name("src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| TranscodeError::Pipeline("src is not an appsrc".into()))?;
        appsrc.set_caps(Some(&avc_caps(&source.record)));
        appsrc.set_format(gst::Format::Time);
        appsrc.set_is_live(true);
        // Never block the caller: the level is watched instead (overload).
        appsrc.set_block(false);
        appsrc.set_max_bytes(64 << 20);

        let (outputs, receiver) = mpsc::channel(OUTPUT_QUEUE);
        let keyframes: Arc<Mutex<VecDeque<u64>>> = Arc::default();
        let decode_delay: Arc<AtomicI64> = Arc::default();
        let mut states = Vec::with_capacity(rungs.len());
        for (index, rung) in rungs.iter().enumerate() {
            let valve = by_name(&format!("valve{index}"))?;
            pace_and_key(&valve, keyframes.clone(), rung.fps_cap);
            let state = Arc::new(RungState {
                valve,
                encoder: pipeline.by_name(&format!("enc{index}")),
                planned_kbps: rung.bitrate_kbps,
                kbps: AtomicU64::new(u64::from(rung.bitrate_kbps)),
                last_output: AtomicI64::new(i64::MIN),
                dropped: AtomicBool::new(false),
                decode_delay: decode_delay.clone(),
            });
            let sink = by_name(&format!("sink{index}"))?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| TranscodeError::Pipeline("sink is not an appsink".into()))?;
            sink.set_callbacks(rung_callbacks(index, state.clone(), outputs.clone()));
            states.push(state);
        }
        one_picture_every(&by_name("thumbq")?, u64::from(config.thumbnail_seconds) * 1_000_000_000);
        if let Some(thumbs) = pipeline.by_name("thumbs") {
            let thumbs = thumbs
                .downcast::<gst_app::AppSink>()
                .map_err(|_| TranscodeError::Pipeline("thumbs is not an appsink".into()))?;
            let sender = outputs.clone();
            thumbs.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let Some(buffer) = sample.buffer()
                            && let Ok(map) = buffer.map_readable()
                        {
                            let _ = sender.try_send(Output::Thumbnail(Bytes::copy_from_slice(map.as_slice())));
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        pipeline.set_state(gst::State::Playing).map_err(|e| TranscodeError::Pipeline(format!("cannot start: {e}")))?;
        let transcoder = Transcoder {
            pipeline,
            source: appsrc,
            rungs: states,
            outputs,
            keyframes,
            decode_delay,
            max_lag_ticks: i64::from(config.max_lag_ms) * i64::from(TIMEBASE) / 1000,
            last_input: i64::MIN,
            failed: false,
        };
        Ok((transcoder, receiver))
    }

    /// Feeds one source video access unit. Never blocks; rungs that lag are dropped here.
    pub fn push(&mut self, frame: &MediaFrame) {
        if self.failed || frame.track != Track::Video {
            return;
        }
        self.watch_bus();
        let pts = ticks_to_ns(frame.pts);
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            buffer.set_dts(gst::ClockTime::from_nseconds(ticks_to_ns(frame.dts)));
            if !frame.keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        if frame.keyframe {
            self.decode_delay.store((frame.pts - frame.dts).max(0), Ordering::Relaxed);
            let mut keyframes = self.keyframes.lock().unwrap();
            keyframes.push_back(pts);
            while keyframes.len() > 64 {
                keyframes.pop_front();
            }
        }
        self.last_input = self.last_input.max(frame.pts);
        if let Err(error) = self.source.push_buffer(buffer) {
            self.fail(format!("the pipeline refused input: {error:?}"));
            return;
        }
        self.shed_load();
    }

    /// Keeps every rung's bitrate under the source's measured video bitrate and under the rung
    /// above (`capped_bitrates`); x264 takes a new bitrate while it runs. Changes under a tenth
    /// are ignored, so that a wavering measurement does not keep reconfiguring the encoders.
    pub fn cap_bitrates(&self, source_kbps: u32) {
        let planned: Vec<LadderRung> = self
            .rungs
            .iter()
            .map(|rung| LadderRung {
                name: String::new(),
                width: 0,
                height: 0,
                bitrate_kbps: rung.planned_kbps,
                fps_cap: 0,
                preset: String::new(),
            })
            .collect();
        for (rung, kbps) in self.rungs.iter().zip(capped_bitrates(&planned, source_kbps)) {
            let now = rung.kbps.load(Ordering::Relaxed) as u32;
            if now.abs_diff(kbps) * 10 < now {
                continue;
            }
            if let Some(encoder) = &rung.encoder
                && encoder.find_property("bitrate").is_some()
            {
                let value = match encoder.property_value("bitrate").value_type() {
                    t if t == u32::static_type() => kbps.to_value(),
                    // Hardware encoders name it in kbps too, some as a signed or wider integer.
                    t if t == i32::static_type() => (kbps as i32).to_value(),
                    _ => continue,
                };
                encoder.set_property_from_value("bitrate", &value);
                rung.kbps.store(u64::from(kbps), Ordering::Relaxed);
            }
        }
    }

    /// The rungs' bitrates now (kbps), highest rung first.
    pub fn bitrates(&self) -> Vec<u32> {
        self.rungs.iter().map(|rung| rung.kbps.load(Ordering::Relaxed) as u32).collect()
    }

    /// Takes a new source configuration (the publisher's encoder restarted): the decoder
    /// renegotiates; the rungs keep their sizes.
    pub fn reconfigure(&mut self, source: &AvcConfig) {
        let caps = avc_caps(&source.record);
        if self.source.caps().as_ref() != Some(&caps) {
            self.source.set_caps(Some(&caps));
        }
    }

    /// Drops the lowest rung still running when any running rung is further behind the input
    /// than the allowed lag.
    fn shed_load(&mut self) {
        let behind = self.rungs.iter().any(|rung| {
            let last = rung.last_output.load(Ordering::Relaxed);
            !rung.dropped.load(Ordering::Relaxed) && last != i64::MIN && self.last_input - last > self.max_lag_ticks
        });
        if !behind {
            return;
        }
        // Rungs are ordered from the highest to the lowest.
        if let Some((index, rung)) =
            self.rungs.iter().enumerate().rev().find(|(_, r)| !r.dropped.load(Ordering::Relaxed))
        {
            rung.dropped.store(true, Ordering::Relaxed);
            rung.valve.set_property("drop", true);
            // Its lag must not count against the others.
            tracing::warn!(rung = index, "transcoding fell behind real time; dropping the lowest rung");
            let _ = self.outputs.try_send(Output::Dropped { rung: index });
            for other in &self.rungs {
                other.last_output.store(i64::MIN, Ordering::Relaxed);
            }
        }
    }

    fn watch_bus(&mut self) {
        let Some(bus) = self.pipeline.bus() else { return };
        while let Some(message) = bus.pop() {
            if let gst::MessageView::Error(error) = message.view() {
                let source = error.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                self.fail(format!("{source}: {}", error.error()));
                return;
            }
        }
    }

    fn fail(&mut self, reason: String) {
        tracing::error!(%reason, "transcoding stopped");
        self.failed = true;
        let _ = self.outputs.try_send(Output::Failed(reason));
        let _ = self.pipeline.set_state(gst::State::Null);
    }

    /// Ends the input and lets the pipeline drain (up to `limit`), then tears it down.
    pub fn finish(mut self, limit: std::time::Duration) {
        if !self.failed
            && self.source.end_of_stream().is_ok()
            && let Some(bus) = self.pipeline.bus()
        {
            let _ = bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(limit.as_millis() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
        }
        self.failed = true;
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Ends a buffer's way in a probe: the probe takes and releases it.
fn drop_data(info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    drop(info.data.take());
    gst::PadProbeReturn::Handled
}

/// Lets one decoded picture through `queue` every `interval_ns` (the first one at once).
fn one_picture_every(queue: &gst::Element, interval_ns: u64) {
    let Some(pad) = queue.static_pad("sink") else { return };
    // Pictures arrive on one streaming thread; the atomic only makes the closure `Fn`.
    let next = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else { return gst::PadProbeReturn::Ok };
        let pts = pts.nseconds();
        if pts < next.load(Ordering::Relaxed) {
            return drop_data(info);
        }
        next.store(pts + interval_ns, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
}

/// On a rung's way in (the valve's sink pad, where pictures still carry the source's timestamps):
/// drops pictures above the rung's frame-rate cap, and sends a force-key-unit event ahead of
/// every picture that was a keyframe in the source (never dropped), so the encoder makes a
/// keyframe of exactly that picture.
fn pace_and_key(valve: &gst::Element, keyframes: Arc<Mutex<VecDeque<u64>>>, fps_cap: u32) {
    let Some(pad) = valve.static_pad("sink") else { return };
    // A little under the frame interval, so that a source at exactly the cap keeps every picture.
    let interval = 1_000_000_000 / u64::from(fps_cap.max(1)) * 9 / 10;
    let last_kept = AtomicU64::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else { return gst::PadProbeReturn::Ok };
        let pts = pts.nseconds();
        let is_key = {
            let mut keyframes = keyframes.lock().unwrap();
            while keyframes.front().is_some_and(|&k| k + 10_000_000_000 < pts) {
                keyframes.pop_front();
            }
            keyframes.contains(&pts)
        };
        let last = last_kept.load(Ordering::Relaxed);
        if !is_key && last != 0 && pts < last + interval {
            return drop_data(info);
        }
        last_kept.store(pts, Ordering::Relaxed);
        if is_key {
            // No running time: "the next picture", which is this one (the event goes first).
            let event = gstreamer_video::DownstreamForceKeyUnitEvent::builder().all_headers(true).build();
            pad.send_event(event);
        }
        gst::PadProbeReturn::Ok
    });
}

fn rung_callbacks(index: usize, state: Arc<RungState>, outputs: mpsc::Sender<Output>) -> gst_app::AppSinkCallbacks {
    let mut codec_data: Option<Bytes> = None;
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else { return Ok(gst::FlowSuccess::Ok) };
            let record = caps
                .structure(0)
                .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                .and_then(|b| b.map_readable().ok().map(|m| Bytes::copy_from_slice(m.as_slice())));
            if let Some(record) = record
                && codec_data.as_ref() != Some(&record)
            {
                match AvcConfig::parse(record.clone()) {
                    Ok(config) => {
                        codec_data = Some(record);
                        let _ = outputs.try_send(Output::Config { rung: index, config });
                    }
                    Err(error) => tracing::warn!(rung = index, ?error, "the encoder's codec data does not parse"),
                }
            }
            let Some(pts) = buffer.pts() else { return Ok(gst::FlowSuccess::Ok) };
            let dts = buffer.dts().unwrap_or(pts);
            // Encoders shift their output (x264enc by 1000 hours, so that DTS is never
            // negative) along with the segment: running time is what matches the input.
            let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
            let running = |time: gst::ClockTime| segment.as_ref().and_then(|s| s.to_running_time(time)).unwrap_or(time);
            let (pts, dts) = (running(pts), running(dts));
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            // The encoder makes no B-frames (decode time = presentation time): the source's
            // reordering delay puts its decode times where the source's are.
            let pts_ticks = ns_to_ticks(pts.nseconds());
            let reorder = pts_ticks - ns_to_ticks(dts.nseconds());
            let delay = state.decode_delay.load(Ordering::Relaxed).max(reorder);
            let frame = MediaFrame {
                track: Track::Video,
                pts: pts_ticks,
                dts: pts_ticks - delay,
                keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                data: Bytes::copy_from_slice(map.as_slice()),
            };
            state.last_output.store(frame.pts, Ordering::Relaxed);
            if outputs.try_send(Output::Frame { rung: index, frame }).is_err() && !state.dropped.load(Ordering::Relaxed)
            {
                // The caller cannot keep up with this rung: stop it rather than leave a hole.
                state.dropped.store(true, Ordering::Relaxed);
                state.valve.set_property("drop", true);
                let _ = outputs.try_send(Output::Dropped { rung: index });
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

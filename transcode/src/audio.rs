//! Audio transcodes between WebRTC and HLS, once per stream: Opus from a WHIP publisher to AAC
//! for the packager and the recording, and AAC from an RTMP publisher to Opus for WHEP viewers.
//! `appsrc ! decoder ! audioconvert ! audioresample ! encoder ! appsink`, timestamps kept (in the
//! source's `TIMEBASE` ticks), output on a bounded channel; pushing never blocks.

use aether_media::aac::AacConfig;
use aether_media::{MediaFrame, Track};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use crate::{TranscodeError, ns_to_ticks, ticks_to_ns};

/// Encoded audio waiting for the caller: about ten seconds.
const AUDIO_QUEUE: usize = 512;

/// The GStreamer elements audio transcoding needs.
pub const AUDIO_ELEMENTS: &[(&str, &str)] = &[
    ("opusdec", "decoding WebRTC audio (gstreamer1.0-plugins-base)"),
    ("opusenc", "encoding audio for WebRTC viewers (gstreamer1.0-plugins-base)"),
    ("avenc_aac", "encoding WebRTC audio for HLS (gstreamer1.0-libav)"),
    ("avdec_aac", "decoding RTMP audio for WebRTC viewers (gstreamer1.0-libav)"),
    ("audioconvert", "sample formats"),
    ("audioresample", "sample rates"),
];

#[derive(Debug)]
pub enum AudioOutput {
    /// The AAC configuration, before the first AAC frame.
    AacConfig(AacConfig),
    /// An encoded frame: AAC (raw, one per frame) or one Opus packet.
    Frame(MediaFrame),
    Failed(String),
}

pub struct AudioTranscoder {
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    failed: bool,
}

impl AudioTranscoder {
    /// Opus (48 kHz stereo, as WebRTC carries it) -> AAC-LC 48 kHz stereo at `kbps`.
    pub fn opus_to_aac(kbps: u32) -> Result<(AudioTranscoder, mpsc::Receiver<AudioOutput>), TranscodeError> {
        let caps = gst::Caps::builder("audio/x-opus")
            .field("channel-mapping-family", 0i32)
            .field("rate", 48_000i32)
            .field("channels", 2i32)
            .build();
        let description = format!(
            "appsrc name=src ! opusdec plc=true ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
             ! avenc_aac bitrate={} ! audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=sink sync=false",
            kbps * 1000
        );
        Self::start(&description, caps, true)
    }

    /// AAC (the publisher's configuration) -> Opus 48 kHz stereo, 20 ms packets, at `kbps`.
    pub fn aac_to_opus(
        config: &AacConfig,
        kbps: u32,
    ) -> Result<(AudioTranscoder, mpsc::Receiver<AudioOutput>), TranscodeError> {
        let caps = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("stream-format", "raw")
            .field("codec_data", gst::Buffer::from_slice(config.asc.clone()))
            .build();
        let description = format!(
            "appsrc name=src ! avdec_aac ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 \
             ! opusenc bitrate={} frame-size=20 ! appsink name=sink sync=false",
            kbps * 1000
        );
        Self::start(&description, caps, false)
    }

    fn start(
        description: &str,
        caps: gst::Caps,
        aac_out: bool,
    ) -> Result<(AudioTranscoder, mpsc::Receiver<AudioOutput>), TranscodeError> {
        gst::init().map_err(|e| TranscodeError::Init(e.to_string()))?;
        let missing: Vec<&'static str> = AUDIO_ELEMENTS
            .iter()
            .filter(|(name, _)| gst::ElementFactory::find(name).is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(TranscodeError::Missing(missing));
        }
        let pipeline = gst::parse::launch(description)
            .map_err(|e| TranscodeError::Pipeline(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| TranscodeError::Pipeline("not a pipeline".into()))?;
        let by_name =
            |name: &str| pipeline.by_name(name).ok_or_else(|| TranscodeError::Pipeline(format!("no element {name}")));
        let source = by_name("src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| TranscodeError::Pipeline("src is not an appsrc".into()))?;
        source.set_caps(Some(&caps));
        source.set_format(gst::Format::Time);
        source.set_is_live(true);
        source.set_block(false);
        source.set_max_bytes(4 << 20);
        let sink = by_name("sink")?
            .downcast::<gst_app::AppSink>()
            .map_err(|_| TranscodeError::Pipeline("sink is not an appsink".into()))?;
        let (outputs, receiver) = mpsc::channel(AUDIO_QUEUE);
        let mut announced = !aac_out;
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if !announced {
                        let asc = sample
                            .caps()
                            .and_then(|caps| caps.structure(0))
                            .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
                            .and_then(|buffer| buffer.map_readable().ok().map(|map| Bytes::copy_from_slice(&map)));
                        match asc.map(AacConfig::parse) {
                            Some(Ok(config)) => {
                                announced = true;
                                let _ = outputs.try_send(AudioOutput::AacConfig(config));
                            }
                            _ => {
                                let _ = outputs
                                    .try_send(AudioOutput::Failed("the AAC encoder gave no configuration".into()));
                                return Err(gst::FlowError::Error);
                            }
                        }
                    }
                    let Some(buffer) = sample.buffer() else { return Ok(gst::FlowSuccess::Ok) };
                    let (Some(pts), Ok(map)) = (buffer.pts(), buffer.map_readable()) else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let time = ns_to_ticks(pts.nseconds());
                    let frame = MediaFrame {
                        track: Track::Audio,
                        dts: time,
                        pts: time,
                        keyframe: true,
                        data: Bytes::copy_from_slice(map.as_slice()),
                    };
                    if outputs.try_send(AudioOutput::Frame(frame)).is_err() {
                        metrics::counter!("aether_audio_transcode_dropped_total").increment(1);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).map_err(|e| TranscodeError::Pipeline(format!("cannot start: {e}")))?;
        Ok((AudioTranscoder { pipeline, source, failed: false }, receiver))
    }

    /// Feeds one encoded frame (times in `TIMEBASE` ticks). Never blocks.
    pub fn push(&mut self, frame: &MediaFrame) {
        if self.failed {
            return;
        }
        self.watch_bus();
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_pts(gst::ClockTime::from_nseconds(ticks_to_ns(frame.pts)));
        }
        if let Err(error) = self.source.push_buffer(buffer) {
            self.failed = true;
            tracing::warn!(?error, "the audio transcoder refused input");
        }
    }

    fn watch_bus(&mut self) {
        let Some(bus) = self.pipeline.bus() else { return };
        while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(error) = message.view() {
                tracing::warn!(error = %error.error(), "the audio transcoder failed");
                self.failed = true;
            }
        }
    }
}

impl Drop for AudioTranscoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_media::TIMEBASE;

    /// A second of a tone as Opus packets, made by GStreamer.
    fn opus_tone() -> Vec<MediaFrame> {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(
            "audiotestsrc num-buffers=50 samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 ! opusenc ! appsink name=sink sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = pipeline.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut frames = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let buffer = sample.buffer().unwrap();
            let time = (buffer.pts().unwrap().nseconds() * u64::from(TIMEBASE) / 1_000_000_000) as i64;
            let data = Bytes::copy_from_slice(&buffer.map_readable().unwrap());
            frames.push(MediaFrame { track: Track::Audio, dts: time, pts: time, keyframe: true, data });
        }
        pipeline.set_state(gst::State::Null).unwrap();
        frames
    }

    async fn collect(mut outputs: mpsc::Receiver<AudioOutput>, want: usize) -> (Option<AacConfig>, Vec<MediaFrame>) {
        let (mut config, mut frames) = (None, Vec::new());
        while frames.len() < want {
            match tokio::time::timeout(std::time::Duration::from_secs(10), outputs.recv()).await {
                Ok(Some(AudioOutput::AacConfig(c))) => config = Some(c),
                Ok(Some(AudioOutput::Frame(frame))) => frames.push(frame),
                Ok(Some(AudioOutput::Failed(reason))) => panic!("{reason}"),
                Ok(None) | Err(_) => break,
            }
        }
        (config, frames)
    }

    #[tokio::test]
    async fn opus_becomes_aac_and_aac_becomes_opus_with_times_kept() {
        let opus = opus_tone();
        assert!(opus.len() >= 45, "{} opus packets", opus.len());
        let (mut to_aac, outputs) = AudioTranscoder::opus_to_aac(128).unwrap();
        let shift = 5 * i64::from(TIMEBASE);
        for frame in &opus {
            to_aac.push(&MediaFrame { pts: frame.pts + shift, dts: frame.dts + shift, ..frame.clone() });
        }
        // 1 s of 48 kHz audio is 46.9 AAC frames of 1024 samples; the encoder holds the last few.
        let (config, aac) = collect(outputs, 40).await;
        let config = config.expect("the AAC configuration comes first");
        assert_eq!((config.sample_rate, config.channels), (48_000, 2));
        assert!(aac.len() >= 40);
        assert!(aac.windows(2).all(|w| w[1].pts > w[0].pts), "AAC times increase");
        assert!((aac[0].pts - shift).abs() < i64::from(TIMEBASE) / 10, "times are the source's: {}", aac[0].pts);

        let (mut to_opus, outputs) = AudioTranscoder::aac_to_opus(&config, 96).unwrap();
        for frame in &aac {
            to_opus.push(frame);
        }
        let (_, back) = collect(outputs, 35).await;
        assert!(back.len() >= 35, "{} opus packets back", back.len());
        assert!((back[0].pts - shift).abs() < i64::from(TIMEBASE) / 10);
    }
}

//! One picture to a JPEG: decodes a single H.264 keyframe (with its decoder configuration) and
//! encodes it as a JPEG at most `max_width` wide. For thumbnails of recorded media (clips), where
//! there is no running ladder to take them from. Blocking: call it off the async runtime.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::TranscodeError;

/// A JPEG of the keyframe `picture` (AVCC access unit) decoded with `record`.
pub fn keyframe_jpeg(record: &Bytes, picture: &Bytes, max_width: u32) -> Result<Bytes, TranscodeError> {
    let missing = crate::missing_elements()?;
    if !missing.is_empty() {
        return Err(TranscodeError::Missing(missing));
    }
    let config = aether_media::avc::AvcConfig::parse(record.clone())
        .map_err(|e| TranscodeError::Pipeline(format!("decoder configuration: {e:?}")))?;
    let width = config.width.min(max_width).max(2) / 2 * 2;
    let height = ((u64::from(width) * u64::from(config.height) / u64::from(config.width.max(1))) as u32).max(2) / 2 * 2;
    let description = format!(
        "appsrc name=src ! avdec_h264 max-threads=1 ! videoscale ! videoconvert \
         ! video/x-raw,format=I420,width={width},height={height},pixel-aspect-ratio=1/1 \
         ! jpegenc quality=85 ! appsink name=sink sync=false"
    );
    let shot = OneShot::new(&description, record)?;
    shot.pipeline.set_state(gst::State::Playing).map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
    let mut buffer = gst::Buffer::from_slice(picture.clone());
    buffer.get_mut().expect("new").set_pts(gst::ClockTime::ZERO);
    shot.source.push_buffer(buffer).map_err(|e| TranscodeError::Pipeline(format!("{e:?}")))?;
    let _ = shot.source.end_of_stream();
    let bus = shot.pipeline.bus().ok_or_else(|| TranscodeError::Pipeline("no bus".into()))?;
    let mut sample = None;
    for _ in 0..100 {
        sample = shot.sink.try_pull_sample(gst::ClockTime::from_mseconds(100));
        if sample.is_some() {
            break;
        }
        // An error, or the end without a picture: it will not decode.
        if bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]).is_some() || shot.sink.is_eos() {
            break;
        }
    }
    let sample = sample.ok_or_else(|| TranscodeError::Pipeline("the picture did not decode".into()))?;
    let buffer = sample.buffer().ok_or_else(|| TranscodeError::Pipeline("an empty picture".into()))?;
    let map = buffer.map_readable().map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
    Ok(Bytes::copy_from_slice(map.as_slice()))
}

/// A short-lived pipeline `appsrc name=src ! ... ! appsink name=sink` fed AVC access units with
/// decoder configuration `record`; stopped when dropped.
pub(crate) struct OneShot {
    pub pipeline: gst::Pipeline,
    pub source: gst_app::AppSrc,
    pub sink: gst_app::AppSink,
}

impl OneShot {
    pub(crate) fn new(description: &str, record: &Bytes) -> Result<OneShot, TranscodeError> {
        let pipeline = gst::parse::launch(description)
            .map_err(|e| TranscodeError::Pipeline(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| TranscodeError::Pipeline("not a pipeline".into()))?;
        let source = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| TranscodeError::Pipeline("no appsrc".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| TranscodeError::Pipeline("no appsink".into()))?;
        source.set_caps(Some(&crate::avc_caps(record)));
        source.set_format(gst::Format::Time);
        Ok(OneShot { pipeline, source, sink })
    }
}

impl Drop for OneShot {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

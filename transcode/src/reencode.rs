//! Re-encoding one GOP from a given picture on: decodes the GOP's access units (the first a
//! keyframe) and encodes, with x264 and no B-frames, the pictures shown at or after `from_pts`,
//! the first as a keyframe. For clips that must start on an exact picture: only the first GOP is
//! re-encoded, the rest is copied. Blocking: call it off the async runtime.

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::TranscodeError;

/// One access unit of the GOP, times in the 90 kHz clock.
#[derive(Debug, Clone)]
pub struct GopPicture {
    pub pts: i64,
    pub dts: i64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// The re-encoded pictures (presentation time, keyframe, AVCC access unit) and the encoder's
/// decoder configuration record.
pub struct Reencoded {
    pub record: Bytes,
    pub pictures: Vec<(i64, bool, Bytes)>,
}

const BASE_NS: u64 = 10_000_000_000;

fn to_ns(ticks: i64, origin: i64) -> u64 {
    BASE_NS + ((ticks - origin).max(0) as u64) * 1_000_000_000 / 90_000
}

/// Re-encodes the pictures of `gop` shown at or after `from_pts` at about `kbps`, with sequence
/// and picture parameter sets numbered `parameter_set_id` (so that they can sit beside the
/// source's in one decoder configuration).
pub fn reencode_gop(
    record: &Bytes,
    gop: &[GopPicture],
    from_pts: i64,
    kbps: u32,
    parameter_set_id: u32,
) -> Result<Reencoded, TranscodeError> {
    let missing = crate::missing_elements()?;
    if !missing.is_empty() {
        return Err(TranscodeError::Missing(missing));
    }
    let origin = gop.iter().map(|p| p.dts.min(p.pts)).min().unwrap_or(0);
    let description = format!(
        "appsrc name=src ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 \
         ! x264enc speed-preset=veryfast tune=zerolatency bitrate={kbps} key-int-max=100000 \
         option-string=scenecut=0:sps-id={parameter_set_id} ! video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false"
    );
    let shot = crate::still::OneShot::new(&description, record)?;
    let (pipeline, source, sink) = (&shot.pipeline, &shot.source, &shot.sink);
    // Pictures shown before `from_pts` are decoded (they are references) but not encoded.
    let cut = gst::ClockTime::from_nseconds(to_ns(from_pts, origin));
    if let Some(pad) = pipeline
        .by_name("sink")
        .and_then(|_| {
            pipeline
                .iterate_elements()
                .into_iter()
                .flatten()
                .find(|e| e.factory().is_some_and(|f| f.name() == "x264enc"))
        })
        .and_then(|encoder| encoder.static_pad("sink"))
    {
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if info.buffer().and_then(|b| b.pts()).is_some_and(|pts| pts < cut) {
                drop(info.data.take());
                return gst::PadProbeReturn::Handled;
            }
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.set_state(gst::State::Playing).map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
    for picture in gop {
        let mut buffer = gst::Buffer::from_slice(picture.data.clone());
        {
            let buffer = buffer.get_mut().expect("new");
            buffer.set_pts(gst::ClockTime::from_nseconds(to_ns(picture.pts, origin)));
            buffer.set_dts(gst::ClockTime::from_nseconds(to_ns(picture.dts, origin)));
            if !picture.keyframe {
                buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        source.push_buffer(buffer).map_err(|e| TranscodeError::Pipeline(format!("{e:?}")))?;
    }
    let _ = source.end_of_stream();
    let mut pictures = Vec::new();
    let mut encoder_record = None;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        if encoder_record.is_none() {
            encoder_record = sample
                .caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<gst::Buffer>("codec_data").ok()))
                .and_then(|b| b.map_readable().ok().map(|m| Bytes::copy_from_slice(m.as_slice())));
        }
        let Some(buffer) = sample.buffer() else { continue };
        let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
        let Some(pts) = buffer.pts() else { continue };
        let running = segment.as_ref().and_then(|s| s.to_running_time(pts)).unwrap_or(pts);
        let ticks = origin + ((running.nseconds().saturating_sub(BASE_NS)) as i128 * 90_000 / 1_000_000_000) as i64;
        let map = buffer.map_readable().map_err(|e| TranscodeError::Pipeline(e.to_string()))?;
        pictures.push((
            ticks,
            !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            Bytes::copy_from_slice(map.as_slice()),
        ));
        if sink.is_eos() {
            break;
        }
    }
    let record = encoder_record.ok_or_else(|| TranscodeError::Pipeline("the GOP did not decode".into()))?;
    Ok(Reencoded { record, pictures })
}

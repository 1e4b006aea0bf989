//! HLS playlists (RFC 8216 and its LL-HLS extensions), rendered as pure functions of the
//! packager's window: the media playlist of one rendition and the multivariant playlist over all
//! renditions, plus the names under which init segments, segments and parts are served.

use std::fmt::Write;

use crate::frame::TIMEBASE;
use crate::packager::Packager;

/// A resource named by a media playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Init(u32),
    Segment(u64),
    Part(u64, usize),
}

impl Resource {
    pub fn file_name(&self) -> String {
        match self {
            Resource::Init(id) => format!("init-{id}.mp4"),
            Resource::Segment(msn) => format!("seg-{msn}.m4s"),
            Resource::Part(msn, index) => format!("part-{msn}-{index}.m4s"),
        }
    }

    pub fn parse(name: &str) -> Option<Resource> {
        if let Some(id) = name.strip_prefix("init-").and_then(|rest| rest.strip_suffix(".mp4")) {
            return id.parse().ok().map(Resource::Init);
        }
        if let Some(msn) = name.strip_prefix("seg-").and_then(|rest| rest.strip_suffix(".m4s")) {
            return msn.parse().ok().map(Resource::Segment);
        }
        let rest = name.strip_prefix("part-")?.strip_suffix(".m4s")?;
        let (msn, index) = rest.split_once('-')?;
        Some(Resource::Part(msn.parse().ok()?, index.parse().ok()?))
    }
}

/// Where another rendition of the same stream stands, for `EXT-X-RENDITION-REPORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionReport {
    pub uri: String,
    pub last_msn: u64,
    pub last_part: Option<usize>,
}

fn secs(ticks: i64) -> f64 {
    ticks as f64 / f64::from(TIMEBASE)
}

/// The live media playlist of one rendition. `prefix` goes before every media URI (e.g. a
/// directory naming the broadcast, so that URIs never repeat across broadcasts).
pub fn media_playlist(packager: &Packager, prefix: &str, reports: &[RenditionReport]) -> String {
    let config = packager.config();
    let mut out = String::with_capacity(2048);
    let target =
        (f64::from(config.segment_target_ms) / 1000.0).ceil().max(packager.max_segment_secs().round()).max(1.0);
    let window: Vec<_> = packager.window().collect();
    let open = packager.open_segment_ref();
    let first_msn = window.first().map(|s| s.msn).or(open.map(|o| o.msn)).unwrap_or(0);
    let _ = writeln!(out, "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    let discontinuities = packager.discontinuity_sequence();
    if discontinuities > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuities}");
    }
    if let Some(part_ms) = config.part_target_ms {
        let part = f64::from(part_ms) / 1000.0;
        let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", part * 3.0);
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part:.3}");
    } else {
        let _ = writeln!(out, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut current_init = None;
    let mut map = |out: &mut String, init_id: u32, discontinuity: bool| {
        if current_init.is_some() && (discontinuity || current_init != Some(init_id)) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if current_init != Some(init_id) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{prefix}{}\"", Resource::Init(init_id).file_name());
            current_init = Some(init_id);
        }
    };
    let parts_line = |out: &mut String, msn: u64, index: usize, duration: i64, independent: bool| {
        let independent = if independent { ",INDEPENDENT=YES" } else { "" };
        let _ = writeln!(
            out,
            "#EXT-X-PART:DURATION={:.5},URI=\"{prefix}{}\"{independent}",
            secs(duration),
            Resource::Part(msn, index).file_name()
        );
    };
    for segment in &window {
        map(&mut out, segment.init_id, segment.discontinuity);
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(segment.program_date_time_ms));
        for (index, part) in segment.parts.iter().enumerate().filter(|_| segment.parts_listed) {
            parts_line(&mut out, segment.msn, index, part.duration_ticks, part.independent);
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.5},\n{prefix}{}",
            segment.duration_secs(),
            Resource::Segment(segment.msn).file_name()
        );
    }
    // The open segment, once it has a part: its tags with nothing after them but a preload hint
    // make a segment without a URI to some players (Shaka Player fails to load such a playlist).
    // Until then the playlist ends at the last complete segment (a preload hint is optional).
    if let Some(open) = open.filter(|open| !open.parts.is_empty())
        && config.part_target_ms.is_some()
    {
        map(&mut out, open.init_id, open.discontinuity);
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(open.program_date_time_ms));
        for (index, part) in open.parts.iter().enumerate() {
            parts_line(&mut out, open.msn, index, part.duration_ticks, part.independent);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{prefix}{}\"",
            Resource::Part(open.msn, open.parts.len()).file_name()
        );
    }
    for report in reports {
        let _ = write!(out, "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}", report.uri, report.last_msn);
        if let Some(part) = report.last_part {
            let _ = write!(out, ",LAST-PART={part}");
        }
        out.push('\n');
    }
    out
}

/// One `EXT-X-STREAM-INF` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: Vec<String>,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
}

impl Variant {
    /// The variant a packager's stream makes, once it has produced media.
    pub fn of(packager: &Packager, uri: String) -> Option<Variant> {
        let (peak, average) = packager.bandwidth()?;
        let video = packager.video_config();
        let codecs =
            video.map(|v| v.codec_string()).into_iter().chain(packager.audio_config().map(|a| a.codec_string()));
        Some(Variant {
            uri,
            bandwidth: peak,
            average_bandwidth: average,
            codecs: codecs.collect(),
            resolution: video.map(|v| (v.width, v.height)),
            frame_rate: packager.frame_rate(),
        })
    }
}

pub fn multivariant_playlist(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for variant in variants {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
            variant.bandwidth,
            variant.average_bandwidth,
            variant.codecs.join(",")
        );
        if let Some((width, height)) = variant.resolution {
            let _ = write!(out, ",RESOLUTION={width}x{height}");
        }
        if let Some(rate) = variant.frame_rate {
            let _ = write!(out, ",FRAME-RATE={rate:.3}");
        }
        let _ = writeln!(out, "\n{}", variant.uri);
    }
    out
}

/// `2026-11-22T04:05:06.789Z` for Unix milliseconds (proleptic Gregorian, UTC).
pub fn iso8601(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // Days to civil date: H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

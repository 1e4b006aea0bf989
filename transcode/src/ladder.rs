//! The ladder's settings (`[transcode]`), the plan of rungs for a given source (never upscaling)
//! and the pipeline description built from it.

use serde::Deserialize;

/// One rung as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    pub name: String,
    pub height: u32,
    pub max_bitrate_kbps: u32,
    pub fps_cap: u32,
    /// x264 speed preset (ultrafast ... veryslow).
    pub preset: String,
}

/// Which H.264 encoder the rungs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    /// Software, x264 (`x264enc`): the default, everywhere.
    #[default]
    X264,
    /// Intel/AMD VA-API (`vaapih264enc`), when present.
    Vaapi,
    /// NVIDIA NVENC (`nvh264enc`), when present.
    Nvenc,
}

impl Encoder {
    pub fn element(self) -> &'static str {
        match self {
            Encoder::X264 => "x264enc",
            Encoder::Vaapi => "vaapih264enc",
            Encoder::Nvenc => "nvh264enc",
        }
    }

    /// The encoder (named `enc{index}`) and what follows it up to AVC access units.
    fn description(self, index: usize, rung: &LadderRung) -> String {
        let (preset, kbps) = (&rung.preset, rung.bitrate_kbps);
        let out = "video/x-h264,stream-format=avc,alignment=au";
        match self {
            Encoder::X264 => format!(
                "x264enc name=enc{index} tune=zerolatency speed-preset={preset} bitrate={kbps} \
                 vbv-buf-capacity=1000 key-int-max=1000 option-string=scenecut=0 ! {out}"
            ),
            Encoder::Vaapi => format!(
                "vaapih264enc name=enc{index} rate-control=cbr bitrate={kbps} keyframe-period=0 max-bframes=0 \
                 ! h264parse ! {out}"
            ),
            Encoder::Nvenc => format!(
                "nvh264enc name=enc{index} rc-mode=cbr bitrate={kbps} gop-size=-1 bframes=0 zerolatency=true \
                 ! h264parse ! {out}"
            ),
        }
    }

    /// The raw format the encoder takes.
    fn input_format(self) -> &'static str {
        match self {
            Encoder::Vaapi => "NV12",
            Encoder::X264 | Encoder::Nvenc => "I420",
        }
    }
}

/// `[transcode]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Off: the source rendition only (thumbnails are still taken when GStreamer is present).
    pub enabled: bool,
    /// Hardware encoders are used when present; otherwise x264, with a log line.
    #[serde(default)]
    pub encoder: Encoder,
    pub ladder: Vec<Rung>,
    /// A thumbnail every this many seconds.
    pub thumbnail_seconds: u32,
    /// A rung further behind the source than this is dropped (lowest first).
    pub max_lag_ms: u32,
}

const PRESETS: &[&str] =
    &["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"];

impl TranscodeConfig {
    pub fn validate(&self) -> Result<(), String> {
        for rung in &self.ladder {
            if rung.name.is_empty()
                || rung.name == "source"
                || !rung.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!("transcode.ladder: \"{}\" is not a usable rung name", rung.name));
            }
            if !(72..=4320).contains(&rung.height) || rung.max_bitrate_kbps < 50 || !(1..=120).contains(&rung.fps_cap) {
                return Err(format!(
                    "transcode.ladder.{}: height, max_bitrate_kbps or fps_cap out of range",
                    rung.name
                ));
            }
            if !PRESETS.contains(&rung.preset.as_str()) {
                return Err(format!("transcode.ladder.{}: preset must be one of {}", rung.name, PRESETS.join(", ")));
            }
        }
        let mut names: Vec<&str> = self.ladder.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err("transcode.ladder: rung names must differ".into());
        }
        if self.thumbnail_seconds == 0 || self.max_lag_ms < 500 {
            return Err("transcode.thumbnail_seconds must be at least 1 and max_lag_ms at least 500".into());
        }
        Ok(())
    }
}

/// A rung planned for one source: its size keeps the source's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderRung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub fps_cap: u32,
    pub preset: String,
}

fn even(value: u64) -> u32 {
    (value.div_ceil(2) * 2) as u32
}

/// The rungs for a source of `width` x `height`, highest first: those below the source height
/// (the source itself is the top of the ladder, and nothing is upscaled).
pub fn plan(config: &TranscodeConfig, width: u32, height: u32) -> Vec<LadderRung> {
    if !config.enabled || width == 0 || height == 0 {
        return Vec::new();
    }
    let mut rungs: Vec<LadderRung> = config
        .ladder
        .iter()
        .filter(|rung| rung.height < height)
        .map(|rung| LadderRung {
            name: rung.name.clone(),
            width: even(u64::from(width) * u64::from(rung.height) / u64::from(height)),
            height: even(u64::from(rung.height)),
            bitrate_kbps: rung.max_bitrate_kbps,
            fps_cap: rung.fps_cap,
            preset: rung.preset.clone(),
        })
        .collect();
    rungs.sort_by_key(|rung| std::cmp::Reverse(rung.height));
    // Each rung costs less than the one above it, whatever the configuration says.
    let mut above: Option<u32> = None;
    for rung in &mut rungs {
        if let Some(above) = above {
            rung.bitrate_kbps = rung.bitrate_kbps.min(below(above));
        }
        above = Some(rung.bitrate_kbps);
    }
    rungs
}

/// The most a rung may cost under one that costs `kbps`: three quarters of it.
fn below(kbps: u32) -> u32 {
    (u64::from(kbps) * 3 / 4) as u32
}

/// The rungs' bitrates under a source whose video was measured at `source_kbps`: each at most
/// three quarters of the one above it (the source for the first), never above its plan. A rung
/// capped under `MIN_RUNG_KBPS` gets that floor: it is already announced to players, so it stays.
pub fn capped_bitrates(rungs: &[LadderRung], source_kbps: u32) -> Vec<u32> {
    let mut above = source_kbps;
    rungs
        .iter()
        .map(|rung| {
            let kbps = rung.bitrate_kbps.min(below(above)).max(MIN_RUNG_KBPS);
            above = kbps;
            kbps
        })
        .collect()
}

/// The least bitrate a rung is given.
pub const MIN_RUNG_KBPS: u32 = 100;

/// `plan` for a source whose video was measured at `source_kbps`: the rungs capped as
/// `capped_bitrates` does, and those that would not cost less than three quarters of the rung
/// above (the source for the first), once the floor is applied, left out.
pub fn plan_under(config: &TranscodeConfig, width: u32, height: u32, source_kbps: u32) -> Vec<LadderRung> {
    let mut rungs = plan(config, width, height);
    let capped = capped_bitrates(&rungs, source_kbps);
    for (rung, kbps) in rungs.iter_mut().zip(capped) {
        rung.bitrate_kbps = kbps;
    }
    let mut above = source_kbps;
    rungs.retain(|rung| {
        let smaller = rung.bitrate_kbps <= below(above);
        if smaller {
            above = rung.bitrate_kbps;
        }
        smaller
    });
    rungs
}

/// Thumbnails are this wide (or the source's width, if smaller).
const THUMBNAIL_WIDTH: u64 = 640;

/// `gst-launch` syntax of the ladder pipeline: named `src`, `valve{i}`, `enc{i}`, `sink{i}`,
/// `thumbq` and `thumbs`. A rung's valve also stops the rungs below it, which are scaled from its
/// picture; overload drops the lowest rungs first, so that only happens to rungs already dropped. No element retimes pictures (no `videorate`): the frame-rate cap and the
/// keyframe placement are done on the exact source timestamps by the crate.
pub(crate) fn pipeline_description(
    source_width: u32,
    source_height: u32,
    rungs: &[LadderRung],
    encoder: Encoder,
) -> String {
    // Queues hold time, not a count of raw pictures: a rung may be up to 2 s behind the decoder.
    let queue = "queue max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000";
    let mut out = format!(
        "appsrc name=src ! {queue} ! avdec_h264 ! tee name=t \
         t. ! queue name=thumbq leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
         ! videoscale ! videoconvert ! video/x-raw,format=I420,width={},height={},pixel-aspect-ratio=1/1 \
         ! jpegenc quality=80 ! appsink name=thumbs sync=false max-buffers=1 drop=true",
        even(THUMBNAIL_WIDTH.min(u64::from(source_width))),
        even(THUMBNAIL_WIDTH.min(u64::from(source_width)) * u64::from(source_height) / u64::from(source_width.max(1))),
    );
    // Each rung is scaled from the one above it (the first from the decoded source), so lower
    // rungs scale a smaller picture: the rungs are sorted highest first.
    let mut input = "t".to_owned();
    for (index, rung) in rungs.iter().enumerate() {
        out.push_str(&format!(
            " {input}. ! {queue} ! valve name=valve{index} ! videoscale ! videoconvert \
             ! video/x-raw,format={format},width={w},height={h},pixel-aspect-ratio=1/1 ! tee name=r{index} \
             r{index}. ! {queue} ! {encode} ! appsink name=sink{index} sync=false",
            format = encoder.input_format(),
            w = rung.width,
            h = rung.height,
            encode = encoder.description(index, rung),
        ));
        input = format!("r{index}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_config() -> TranscodeConfig {
        let rung = |name: &str, height, kbps| Rung {
            name: name.into(),
            height,
            max_bitrate_kbps: kbps,
            fps_cap: 30,
            preset: "veryfast".into(),
        };
        TranscodeConfig {
            enabled: true,
            encoder: Encoder::X264,
            ladder: vec![rung("360p", 360, 800), rung("720p", 720, 3000), rung("480p", 480, 1400)],
            thumbnail_seconds: 10,
            max_lag_ms: 3000,
        }
    }

    #[test]
    fn a_1080p_source_gets_every_lower_rung_highest_first_in_its_shape() {
        let rungs = plan(&default_config(), 1920, 1080);
        let sizes: Vec<(u32, u32)> = rungs.iter().map(|r| (r.width, r.height)).collect();
        assert_eq!(sizes, [(1280, 720), (854, 480), (640, 360)]);
    }

    #[test]
    fn nothing_is_upscaled_and_off_means_no_rungs() {
        let names: Vec<String> = plan(&default_config(), 854, 480).into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["360p"], "the 480p rung is the source's own height: skipped");
        assert!(plan(&default_config(), 640, 360).is_empty());
        assert!(plan(&TranscodeConfig { enabled: false, ..default_config() }, 1920, 1080).is_empty());
    }

    #[test]
    fn rungs_cost_less_than_the_rung_above_and_than_the_source() {
        let mut config = default_config();
        // A misconfigured ladder: the 480p rung would cost more than the 720p one.
        config.ladder[2].max_bitrate_kbps = 5000;
        let rungs = plan(&config, 1920, 1080);
        let planned: Vec<u32> = rungs.iter().map(|r| r.bitrate_kbps).collect();
        assert_eq!(planned, [3000, 2250, 800]);
        // An OBS source at 1200 kbps: every rung under it, each under the one above.
        assert_eq!(capped_bitrates(&rungs, 1200), [900, 675, 506]);
        // A rich source leaves the plan as it is; a starved one gets the floor.
        assert_eq!(capped_bitrates(&rungs, 20_000), planned);
        assert_eq!(capped_bitrates(&rungs, 120), [100, 100, 100]);
        // Planned under a measured source: the rungs that cannot be smaller are left out.
        let kbps = |rungs: Vec<LadderRung>| rungs.iter().map(|r| (r.name.clone(), r.bitrate_kbps)).collect::<Vec<_>>();
        assert_eq!(
            kbps(plan_under(&config, 1920, 1080, 1200)),
            [("720p".into(), 900), ("480p".into(), 675), ("360p".into(), 506)]
        );
        assert_eq!(kbps(plan_under(&config, 1920, 1080, 160)), [("720p".into(), 120)]);
        assert!(plan_under(&config, 1920, 1080, 120).is_empty());
    }

    #[test]
    fn bad_ladders_are_refused() {
        assert!(default_config().validate().is_ok());
        let mut config = default_config();
        config.ladder[0].preset = "turbo".into();
        assert!(config.validate().is_err());
        let mut config = default_config();
        config.ladder[1].name = "360p".into();
        assert!(config.validate().is_err());
        let mut config = default_config();
        config.ladder[0].name = "../x".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn hardware_encoders_get_their_own_elements_and_formats() {
        let rungs = plan(&default_config(), 1920, 1080);
        let vaapi = pipeline_description(1920, 1080, &rungs, Encoder::Vaapi);
        assert!(vaapi.contains("vaapih264enc name=enc0") && vaapi.contains("format=NV12"), "{vaapi}");
        let nvenc = pipeline_description(1920, 1080, &rungs, Encoder::Nvenc);
        assert!(nvenc.contains("nvh264enc name=enc2") && nvenc.contains("h264parse"), "{nvenc}");
    }

    #[test]
    fn the_pipeline_names_every_rung() {
        let text = pipeline_description(1920, 1080, &plan(&default_config(), 1920, 1080), Encoder::X264);
        for name in
            ["valve0", "enc2", "sink1", "thumbs", "width=1280,height=720", "format=I420", "width=640,height=360"]
        {
            assert!(text.contains(name), "{name} in {text}");
        }
    }
}

//! A real OBS Studio 29 stream (the recording in `../shared/fixtures`, replayed tag for tag) and
//! orderings made from it: every rendition, the ladder's rungs included, has audio and video from
//! its first init segment, and the multivariant playlist lists `mp4a` for every variant from its
//! first answer; each rung costs less than the source and the rung above it. A stream without
//! audio still plays.

mod support;

use std::time::Duration;

use support::flv::{self, Tag, TagKind};
use support::{Backend, TestApp, eventually};

/// The fixture's first `seconds` (its first keyframe interval is ~8.3 s: OBS's "auto").
fn fixture_tags(seconds: u32) -> Option<Vec<Tag>> {
    let path = flv::obs_fixture()?;
    Some(flv::read_tags(&path).into_iter().filter(|tag| tag.timestamp_ms < seconds * 1000).collect())
}

/// The video's sequence header and first pictures before the audio's sequence header, which
/// comes `late_ms` in (some encoders send it after the first keyframe).
fn video_first(tags: &[Tag], late_ms: u32) -> Vec<Tag> {
    let (headers, rest): (Vec<Tag>, Vec<Tag>) =
        tags.iter().cloned().partition(|tag| tag.kind == TagKind::Audio && tag.is_sequence_header());
    let mut out: Vec<Tag> =
        rest.iter().filter(|t| t.timestamp_ms < late_ms || t.kind == TagKind::Video).cloned().collect();
    // Audio frames before the header are useless to any receiver: the encoder starts there.
    out.retain(|t| t.kind == TagKind::Video || t.timestamp_ms >= late_ms);
    let at = out.iter().position(|t| t.timestamp_ms >= late_ms).unwrap_or(out.len());
    out.splice(at..at, headers.into_iter().take(1).map(|h| Tag { timestamp_ms: late_ms, ..h }));
    let mut audio: Vec<Tag> =
        rest.iter().filter(|t| t.kind == TagKind::Audio && t.timestamp_ms >= late_ms).cloned().collect();
    // Interleave the audio back in by time, after its header.
    let mut merged = Vec::with_capacity(out.len() + audio.len());
    let mut header_sent = false;
    for tag in out {
        if header_sent {
            while audio.first().is_some_and(|a| a.timestamp_ms <= tag.timestamp_ms) {
                merged.push(audio.remove(0));
            }
        }
        header_sent |= tag.kind == TagKind::Audio;
        merged.push(tag);
    }
    merged.extend(audio);
    merged
}

/// The audio's sequence header and its first `lead_ms` of frames before anything of the video.
fn audio_first(tags: &[Tag], lead_ms: u32) -> Vec<Tag> {
    let (early, rest): (Vec<Tag>, Vec<Tag>) =
        tags.iter().cloned().partition(|tag| tag.kind == TagKind::Audio && tag.timestamp_ms < lead_ms);
    early.into_iter().chain(rest).collect()
}

async fn bytes(app: &TestApp, path: &str) -> (u16, bytes::Bytes) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap())
}

fn has_box(data: &[u8], kind: &[u8; 4]) -> bool {
    data.windows(4).any(|window| window == kind)
}

/// Publishes `tags` on a new channel and checks, from the first answers a player gets, that
/// every rendition has the tracks the stream has (`audio`).
async fn check_first_answers(
    app: &TestApp,
    owner: &str,
    channel: &str,
    tags: Vec<Tag>,
    audio: bool,
    ladder_caps: bool,
) {
    let key = app.create_channel(owner, channel).await;
    let rtmp = app.rtmp_addr;
    let publisher = tokio::spawn(async move { flv::publish(rtmp, &key, tags).await });
    // The first answer of the multivariant playlist: it waits for every rendition's first part.
    let master = eventually(Duration::from_secs(20), || async {
        let (status, body) = bytes(app, &format!("/live/{channel}/master.m3u8")).await;
        (status == 200).then(|| String::from_utf8(body.to_vec()).unwrap())
    })
    .await
    .expect("the stream goes live");
    let variants: Vec<(&str, &str)> =
        master.lines().zip(master.lines().skip(1)).filter(|(info, _)| info.starts_with("#EXT-X-STREAM-INF")).collect();
    assert_eq!(variants.len(), 3, "source, 480p and 360p from the first answer: {master}");
    for (info, uri) in &variants {
        assert_eq!(info.contains("mp4a.40.2"), audio, "{channel} {uri}: {info}");
        assert!(info.contains("avc1."), "{info}");
        // The rendition's first part, and the init segment it names.
        let rendition = uri.trim_end_matches("/index.m3u8");
        let (status, playlist) =
            bytes(app, &format!("/live/{channel}/{rendition}/index.m3u8?_HLS_msn=0&_HLS_part=0")).await;
        assert_eq!(status, 200);
        let playlist = String::from_utf8(playlist.to_vec()).unwrap();
        let map = playlist.lines().find_map(|line| line.strip_prefix("#EXT-X-MAP:URI=\"")).expect("a map");
        let map = map.trim_end_matches('"');
        assert!(map.ends_with("init-0.mp4"), "the first init segment: {playlist}");
        assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{channel} {rendition}: {playlist}");
        let (status, init) = bytes(app, &format!("/live/{channel}/{rendition}/{map}")).await;
        assert_eq!(status, 200);
        assert!(has_box(&init, b"vide"), "{channel} {rendition}: video in the first init");
        assert_eq!(has_box(&init, b"soun"), audio, "{channel} {rendition}: audio in the first init");
    }
    // Every later answer says the same.
    let (_, again) = bytes(app, &format!("/live/{channel}/master.m3u8")).await;
    let codecs = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
            .map(|l| l.split(",CODECS=").nth(1).unwrap_or_default().split(',').next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(codecs(&String::from_utf8_lossy(&again)), codecs(&master));
    if ladder_caps {
        // Once the first segment (OBS: ~8.3 s) is complete everywhere: each rung costs less than
        // the source (1,200 kbps) and than the rung above it.
        let averages = eventually(Duration::from_secs(15), || async {
            let (_, body) = bytes(app, &format!("/live/{channel}/master.m3u8")).await;
            let text = String::from_utf8(body.to_vec()).ok()?;
            let averages: Vec<u64> = text
                .lines()
                .filter_map(|l| l.split("AVERAGE-BANDWIDTH=").nth(1)?.split(',').next()?.parse().ok())
                .collect();
            let mut complete = true;
            for rendition in ["source", "480p", "360p"] {
                let (_, playlist) = bytes(app, &format!("/live/{channel}/{rendition}/index.m3u8")).await;
                complete &= String::from_utf8_lossy(&playlist).contains("#EXTINF");
            }
            (complete && averages.len() == 3).then_some(averages)
        })
        .await
        .expect("a complete segment in every rendition");
        assert!(averages[1] < averages[0] && averages[2] < averages[1], "each rung under the one above: {averages:?}");
    }
    publisher.await.unwrap().expect("the publish runs to its end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendition_of_an_obs_stream_has_audio_from_its_first_segment_in_any_header_order() {
    if !support::gstreamer_present() {
        return;
    }
    let Some(tags) = fixture_tags(4) else { return };
    let Some(longer) = fixture_tags(11) else { return };
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        for rung in &mut config.transcode.ladder {
            rung.preset = "ultrafast".into();
        }
        config.transcode.max_lag_ms = 10_000;
    })
    .await
    .unwrap();
    let owner = app.signup("obs").await;
    // As OBS sent it (the audio's sequence header first), then the two other orders.
    check_first_answers(&app, &owner, "obs_as_sent", longer, true, true).await;
    check_first_answers(&app, &owner, "obs_video_first", video_first(&tags, 66), true, false).await;
    check_first_answers(&app, &owner, "obs_audio_first", audio_first(&tags, 300), true, false).await;
    let video_only: Vec<Tag> = tags.iter().filter(|t| t.kind == TagKind::Video).cloned().collect();
    check_first_answers(&app, &owner, "obs_video_only", video_only, false, false).await;
    app.stop().await;
}

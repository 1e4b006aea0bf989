//! What an SDP offer asks for, checked before anything is opened for it: that it parses, has
//! media, and carries what we can take (WHIP: H.264 video; Opus audio when it has audio) or
//! play (WHEP: H.264 and Opus receivable). A small line scan: str0m parses the offer again when
//! it answers.

use str0m::change::SdpOffer;

/// Offers are small (a browser's is 5-8 KB); anything past this is refused unread.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the SDP offer is malformed: {0}")]
    Malformed(String),
    #[error("the SDP offer has no audio or video section")]
    NoMedia,
    #[error(
        "the offer's video has no H.264 (it offers {0}); publish H.264 (OBS: x264 or a hardware H.264 encoder; browsers: prefer H.264)"
    )]
    NoH264(String),
    #[error("the offer's audio has no Opus (it offers {0})")]
    NoOpus(String),
}

/// The media sections of an acceptable offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSummary {
    pub video: bool,
    pub audio: bool,
}

/// Checks an offer's SDP text.
pub fn check_offer(sdp: &str) -> Result<OfferSummary, OfferError> {
    if sdp.len() > MAX_OFFER_BYTES {
        return Err(OfferError::Malformed(format!("{} bytes (at most {MAX_OFFER_BYTES})", sdp.len())));
    }
    SdpOffer::from_sdp_string(sdp).map_err(|error| OfferError::Malformed(first_line(&error.to_string())))?;
    let mut sections: Vec<(String, bool, Vec<String>)> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(media) = line.strip_prefix("m=") {
            let mut fields = media.split_whitespace();
            let kind = fields.next().unwrap_or_default().to_owned();
            let port = fields.next().unwrap_or_default();
            sections.push((kind, port == "0", Vec::new()));
        } else if let Some(map) = line.strip_prefix("a=rtpmap:")
            && let Some((_, codec)) = map.split_once(' ')
            && let Some(section) = sections.last_mut()
        {
            let name = codec.split('/').next().unwrap_or_default().to_ascii_uppercase();
            section.2.push(name);
        }
    }
    let active = |kind: &'static str| -> Vec<&(String, bool, Vec<String>)> {
        sections.iter().filter(|(k, disabled, _)| k == kind && !disabled).collect()
    };
    let (video, audio) = (active("video"), active("audio"));
    if video.is_empty() && audio.is_empty() {
        return Err(OfferError::NoMedia);
    }
    let offered = |sections: &[&(String, bool, Vec<String>)]| {
        let mut names: Vec<String> = sections
            .iter()
            .flat_map(|(_, _, codecs)| codecs.iter().cloned())
            .filter(|name| !matches!(name.as_str(), "RTX" | "RED" | "ULPFEC" | "FLEXFEC-03" | "CN" | "TELEPHONE-EVENT"))
            .collect();
        names.dedup();
        if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
    };
    if !video.is_empty() && !video.iter().any(|(_, _, codecs)| codecs.iter().any(|c| c == "H264")) {
        return Err(OfferError::NoH264(offered(&video)));
    }
    if !audio.is_empty() && !audio.iter().any(|(_, _, codecs)| codecs.iter().any(|c| c == "OPUS")) {
        return Err(OfferError::NoOpus(offered(&audio)));
    }
    Ok(OfferSummary { video: !video.is_empty(), audio: !audio.is_empty() })
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(200).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The shape of a browser's WHIP offer (trimmed): Opus audio, H.264 and VP8 video.
    pub const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 102\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

    #[test]
    fn a_browser_offer_with_h264_and_opus_is_accepted() {
        assert_eq!(check_offer(OFFER), Ok(OfferSummary { video: true, audio: true }));
    }

    #[test]
    fn vp8_only_no_media_and_garbage_are_refused_with_reasons() {
        let vp8_only = OFFER.replace(" 96 102\r\n", " 96\r\n").replace("a=rtpmap:102 H264/90000\r\n", "");
        assert_eq!(check_offer(&vp8_only), Err(OfferError::NoH264("VP8".into())));
        let no_media = OFFER.split("m=audio").next().unwrap().to_owned();
        assert!(matches!(check_offer(&no_media), Err(OfferError::NoMedia | OfferError::Malformed(_))));
        assert!(matches!(check_offer("hello"), Err(OfferError::Malformed(_))));
        assert!(matches!(check_offer(&"v=0\r\n".repeat(20_000)), Err(OfferError::Malformed(_))));
        let pcmu = OFFER.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 PCMU/8000");
        assert_eq!(check_offer(&pcmu), Err(OfferError::NoOpus("PCMU".into())));
    }
}

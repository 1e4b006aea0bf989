//! Pure media types and formats shared by the media crates: `MediaFrame`, codec configurations
//! (AVC, AAC, Opus), FLV tag parsing, the CMAF (fMP4) muxer and the HLS / LL-HLS playlist model.
//! No tokio and no I/O: frames in, bytes and playlists out. Filled in by the live-ingest issue.

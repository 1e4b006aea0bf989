//! The GStreamer ABR ladder: source frames in, rendition frames out, plus thumbnails from the
//! decoded picture. The source rendition is passed through untouched; lower rungs share one decode.
//! Filled in by the transcode issue.

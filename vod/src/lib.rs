//! Object storage (local directory or S3-compatible bucket), live recording, the VOD index and
//! playlists, and clips cut from stored segments. Filled in by the VOD issue.

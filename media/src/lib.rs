//! Pure media types and formats shared by the media crates: `MediaFrame` and the stream events
//! around it, codec configurations (AVC, AAC), FLV tag parsing, timestamp normalisation, the CMAF
//! (fMP4) muxer, the packager that cuts segments and LL-HLS parts, and the HLS playlist model.
//! No tokio and no I/O: frames in, bytes and playlists out.

pub mod aac;
pub mod annexb;
pub mod avc;
mod bits;
pub mod cmaf;
pub mod flv;
pub mod frame;
pub mod packager;
pub mod playlist;
pub mod timestamps;

pub use frame::{MediaFrame, StreamEvent, TIMEBASE, Track};

//! VOD: object storage (local directory or S3-compatible bucket) for recordings, the VOD
//! playlists rendered from a recording's segment index, and clips cut from stored segments. The
//! server records each finished segment here as it is produced and keeps the index in its
//! database.

pub mod clip;
pub mod playlist;
pub mod spool;
pub mod storage;

pub use spool::{Spool, SpoolError};
pub use storage::{ByteRange, Download, Storage, StorageConfig, StorageError, StorageKind, parse_range};

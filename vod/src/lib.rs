//! VOD: object storage (local directory or S3-compatible bucket) for recordings, and later the
//! VOD playlists and clips cut from stored segments. The server records each finished segment
//! here as it is produced and keeps the index in its database.

pub mod storage;

pub use storage::{Storage, StorageConfig, StorageError, StorageKind};

//! Object storage: one interface over a local directory (the embedded default,
//! `<data_dir>/media`) and S3-compatible buckets (AWS S3, MinIO, R2, ...), on object_store, which
//! brings retries with backoff and multipart uploads. Objects are written from their buffers
//! without copying them into one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use serde::Deserialize;

/// Objects larger than this are uploaded in parts.
const MULTIPART_OVER: usize = 16 << 20;
const PART_SIZE: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;

/// How long a presigned download URL stays valid.
const PRESIGNED_FOR: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    Local,
    S3,
}

/// `[storage]` settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub kind: StorageKind,
    /// Local directory; unset: `<data_dir>/media`.
    pub path: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub region: Option<String>,
    /// `http://endpoint/bucket/key` instead of `http://bucket.endpoint/key` (MinIO, most self-hosted servers).
    #[serde(default)]
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// s3: downloads are redirects to presigned URLs (viewers fetch from the bucket); off: the
    /// server streams objects through (for buckets viewers cannot reach).
    #[serde(default = "default_presigned_urls")]
    pub presigned_urls: bool,
}

fn default_presigned_urls() -> bool {
    true
}

// Credentials are never printed.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("presigned_urls", &self.presigned_urls)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("storage directory {path}: {source}")]
    Directory { path: String, source: std::io::Error },
    #[error("storage.kind = \"s3\" needs storage.bucket")]
    MissingBucket,
    #[error("no such object: {0}")]
    NotFound(String),
    #[error("the requested range is outside the object's {size} bytes")]
    Range { size: u64 },
}

impl StorageError {
    fn from_store(error: object_store::Error) -> StorageError {
        match error {
            object_store::Error::NotFound { path, .. } => StorageError::NotFound(path),
            other => StorageError::Store(other),
        }
    }
}

/// How an object is handed to a downloader.
pub enum Download {
    /// Fetch it from this (presigned) URL.
    Redirect(String),
    /// Its bytes (all of them, or the requested `range`), streamed from storage.
    Stream { size: u64, range: std::ops::Range<u64>, body: BoxStream<'static, Result<Bytes, StorageError>> },
}

/// A byte range a downloader asked for (`Range: bytes=...`).
pub use object_store::GetRange as ByteRange;

/// Parses a `Range` header value of one range; `None` for anything else (served whole).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    match (first.trim(), last.trim()) {
        ("", suffix) => suffix.parse().ok().filter(|&n: &u64| n > 0).map(ByteRange::Suffix),
        (first, "") => first.parse().ok().map(ByteRange::Offset),
        (first, last) => {
            let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            (first <= last).then(|| ByteRange::Bounded(first..last + 1))
        }
    }
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Set when downloads are redirects to presigned URLs.
    signer: Option<Arc<AmazonS3>>,
    /// Whether objects carry a content type (buckets do; local files do not).
    content_types: bool,
    description: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Storage {
    pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Storage, StorageError> {
        match config.kind {
            StorageKind::Local => {
                let dir = config.path.clone().unwrap_or_else(|| data_dir.join("media"));
                std::fs::create_dir_all(&dir)
                    .map_err(|source| StorageError::Directory { path: dir.display().to_string(), source })?;
                let store = LocalFileSystem::new_with_prefix(&dir)?;
                Ok(Storage {
                    store: Arc::new(store),
                    signer: None,
                    content_types: false,
                    description: format!("local directory {}", dir.display()),
                })
            }
            StorageKind::S3 => {
                let bucket = config.bucket.clone().ok_or(StorageError::MissingBucket)?;
                // Fail over to the spool within seconds rather than the library's three minutes.
                let retry = RetryConfig {
                    backoff: BackoffConfig::default(),
                    max_retries: 3,
                    retry_timeout: Duration::from_secs(10),
                };
                let client = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(60));
                let mut builder = AmazonS3Builder::from_env()
                    .with_retry(retry)
                    .with_client_options(client)
                    .with_bucket_name(&bucket)
                    .with_region(config.region.clone().unwrap_or_else(|| "us-east-1".into()))
                    .with_virtual_hosted_style_request(!config.path_style);
                if let Some(endpoint) = &config.endpoint {
                    builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
                    builder = builder.with_access_key_id(id).with_secret_access_key(secret);
                }
                let store = Arc::new(builder.build()?);
                Ok(Storage {
                    signer: config.presigned_urls.then(|| store.clone()),
                    store,
                    content_types: true,
                    description: format!("S3 bucket {bucket}"),
                })
            }
        }
    }

    /// Whether objects go over the network (a bucket) rather than to a local directory.
    pub fn is_remote(&self) -> bool {
        self.content_types
    }

    /// Writes `chunks`, in order, as one object; objects over `MULTIPART_OVER` bytes go up as a
    /// multipart upload (parts of `PART_SIZE`, a few in flight), aborted if any part fails.
    pub async fn put(&self, key: &str, chunks: Vec<Bytes>, content_type: &'static str) -> Result<(), StorageError> {
        let attributes = if self.content_types {
            Attributes::from_iter([(Attribute::ContentType, content_type)])
        } else {
            Attributes::new()
        };
        let path = ObjectPath::from(key);
        let size: usize = chunks.iter().map(Bytes::len).sum();
        if size <= MULTIPART_OVER {
            let options = PutOptions { attributes, ..Default::default() };
            self.store.put_opts(&path, PutPayload::from_iter(chunks), options).await?;
            return Ok(());
        }
        let options = PutMultipartOptions { attributes, ..Default::default() };
        let upload = self.store.put_multipart_opts(&path, options).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in chunks {
            if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(error.into());
            }
            writer.put(chunk);
        }
        writer.finish().await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        Ok(self.store.get(&ObjectPath::from(key)).await?.bytes().await?)
    }

    /// The object for a downloader: a presigned URL when the bucket is configured for them (the
    /// downloader asks the bucket for any range itself), otherwise its bytes, or `range` of them,
    /// as a stream. A missing object is `StorageError::NotFound`; a range past its end is
    /// `StorageError::Range`.
    pub async fn download(&self, key: &str, range: Option<ByteRange>) -> Result<Download, StorageError> {
        let path = ObjectPath::from(key);
        if let Some(signer) = &self.signer {
            let url = signer.signed_url(object_store::signer::Method::GET, &path, PRESIGNED_FOR).await?;
            return Ok(Download::Redirect(url.to_string()));
        }
        if let Some(range) = &range {
            let size = self.store.head(&path).await.map_err(StorageError::from_store)?.size;
            let unsatisfiable = match range {
                ByteRange::Bounded(r) => r.start >= size,
                ByteRange::Offset(start) => *start >= size,
                ByteRange::Suffix(_) => size == 0,
            };
            if unsatisfiable {
                return Err(StorageError::Range { size });
            }
        }
        let options = GetOptions { range, ..Default::default() };
        let found = self.store.get_opts(&path, options).await.map_err(StorageError::from_store)?;
        let (size, range) = (found.meta.size, found.range.clone());
        let body = found.into_stream().map_err(StorageError::from).boxed();
        Ok(Download::Stream { size, range, body })
    }

    /// Deletes every object under `prefix` (a `/`-separated path; `a/b` does not match `a/bc`).
    /// Returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let prefix = ObjectPath::from(prefix);
        let locations = self.store.list(Some(&prefix)).map_ok(|meta| meta.location).boxed();
        let mut deleted = self.store.delete_stream(locations);
        let mut count = 0;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => count += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_byte_ranges_parse_and_others_are_ignored() {
        assert_eq!(parse_range("bytes=0-99"), Some(ByteRange::Bounded(0..100)));
        assert_eq!(parse_range("bytes=100-"), Some(ByteRange::Offset(100)));
        assert_eq!(parse_range("bytes=-500"), Some(ByteRange::Suffix(500)));
        for ignored in ["bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=-0", "bytes=x-", "bytes=-"] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[tokio::test]
    async fn a_local_store_writes_chunks_as_one_object_under_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let config = StorageConfig {
            kind: StorageKind::Local,
            path: None,
            endpoint: None,
            bucket: None,
            region: None,
            path_style: false,
            access_key_id: None,
            secret_access_key: Some("hidden".into()),
            presigned_urls: true,
        };
        let storage = Storage::open(&config, dir.path()).unwrap();
        storage
            .put("a/b/seg-1.m4s", vec![Bytes::from_static(b"one "), Bytes::from_static(b"two")], "video/mp4")
            .await
            .unwrap();
        assert_eq!(storage.get("a/b/seg-1.m4s").await.unwrap(), Bytes::from_static(b"one two"));
        assert_eq!(std::fs::read(dir.path().join("media/a/b/seg-1.m4s")).unwrap(), b"one two");
        assert!(storage.get("missing").await.is_err());
        assert!(matches!(storage.download("missing", None).await, Err(StorageError::NotFound(_))));
        let Ok(Download::Stream { size, range, body }) = storage.download("a/b/seg-1.m4s", None).await else {
            panic!("local objects are streamed")
        };
        assert_eq!((size, range), (7, 0..7));
        let streamed: Vec<Bytes> = body.try_collect().await.unwrap();
        assert_eq!(streamed.concat(), b"one two");
        let Ok(Download::Stream { size, range, body }) =
            storage.download("a/b/seg-1.m4s", parse_range("bytes=4-")).await
        else {
            panic!("ranges are streamed")
        };
        assert_eq!((size, range), (7, 4..7));
        assert_eq!(body.try_collect::<Vec<Bytes>>().await.unwrap().concat(), b"two");
        let past = storage.download("a/b/seg-1.m4s", parse_range("bytes=7-9")).await;
        assert!(matches!(past, Err(StorageError::Range { size: 7 })));
        storage.put("a/bc/other", vec![Bytes::from_static(b"x")], "video/mp4").await.unwrap();
        storage.put("a/b/deeper/seg-2.m4s", vec![Bytes::from_static(b"y")], "video/mp4").await.unwrap();
        // Large objects go up in parts and come back whole.
        let big: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 1 << 20])).collect();
        storage.put("a/b/big.mp4", big.clone(), "video/mp4").await.unwrap();
        assert_eq!(storage.get("a/b/big.mp4").await.unwrap(), big.concat());
        assert_eq!(storage.delete_prefix("a/b").await.unwrap(), 3);
        assert!(storage.get("a/b/seg-1.m4s").await.is_err());
        assert!(storage.get("a/bc/other").await.is_ok(), "a sibling with a longer name is kept");
        assert!(!format!("{config:?}").contains("hidden"), "credentials are not printed");
        let s3 = StorageConfig { kind: StorageKind::S3, ..config };
        assert!(matches!(Storage::open(&s3, dir.path()), Err(StorageError::MissingBucket)));
    }
}

//! Uploads `COUNT` objects of `SIZE` bytes to an S3-compatible bucket through aether-vod's
//! `Storage` (the code path recordings and clips take: single PUTs, multipart above 16 MiB),
//! `CONCURRENCY` at a time, and prints the throughput as one JSON line.
//!
//!     storeput ENDPOINT BUCKET ACCESS_KEY SECRET_KEY SIZE COUNT CONCURRENCY

use std::time::Instant;

use aether_vod::{Storage, StorageConfig, StorageKind};
use bytes::Bytes;
use futures_util::StreamExt;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, bucket, key, secret, size, count, concurrency] = &args[..] else {
        eprintln!("usage: storeput ENDPOINT BUCKET ACCESS_KEY SECRET_KEY SIZE COUNT CONCURRENCY");
        std::process::exit(2);
    };
    let (size, count, concurrency): (usize, usize, usize) =
        (size.parse().unwrap(), count.parse().unwrap(), concurrency.parse().unwrap());
    let config = StorageConfig {
        kind: StorageKind::S3,
        path: None,
        endpoint: Some(endpoint.clone()),
        bucket: Some(bucket.clone()),
        region: Some("us-east-1".into()),
        path_style: true,
        access_key_id: Some(key.clone()),
        secret_access_key: Some(secret.clone()),
        presigned_urls: false,
    };
    let storage = Storage::open(&config, std::path::Path::new(".")).expect("storage opens");
    // Segments arrive as a few buffers (their parts); 1 MiB chunks stand in for them.
    let chunk = Bytes::from(vec![0x5a; 1 << 20]);
    let object: Vec<Bytes> =
        (0..size.div_ceil(1 << 20)).map(|i| chunk.slice(..(size - i * (1 << 20)).min(1 << 20))).collect();
    let started = Instant::now();
    futures_util::stream::iter(0..count)
        .map(|i| {
            let (storage, object) = (storage.clone(), object.clone());
            async move { storage.put(&format!("storeput/{size}/{i}"), object, "video/mp4").await.expect("put") }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mb = (size * count) as f64 / 1e6;
    println!("{{\"seconds\": {seconds:.3}, \"mb\": {mb:.1}, \"mb_per_s\": {:.1}}}", mb / seconds);
}

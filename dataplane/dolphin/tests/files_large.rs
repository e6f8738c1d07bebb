//! A 1 GiB file goes up and comes back down through a real `dolphin dev` process while the
//! server's peak memory stays a small fraction of the file: uploads and downloads stream.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]
#![allow(clippy::print_stderr, reason = "the test reports what it measured")]

mod files_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use files_support::{Dev, hex};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

const FILE_BYTES: u64 = 1024 * 1024 * 1024;
const CHUNK_BYTES: usize = 1024 * 1024;

/// The server's peak resident memory must stay below this: a quarter of the file, and many
/// times what streaming needs (a few parts of 8 MiB), so holding the file would fail it.
const PEAK_RSS_LIMIT: u64 = 256 * 1024 * 1024;

/// The bytes of the test file, made on the fly: a block of pseudo-random bytes whose first
/// eight bytes carry the chunk's number, so that no two chunks are alike and a misplaced
/// chunk changes the hash.
fn chunk(block: &[u8], n: u64) -> Vec<u8> {
    let mut bytes = block.to_vec();
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_file_streams_up_and_down_in_bounded_server_memory() {
    let dev = Dev::start(&["--max-file-bytes", &(2 * FILE_BYTES).to_string()], &[]).await;
    let idle_rss = dev.peak_rss_bytes();
    let block: Vec<u8> = (0..CHUNK_BYTES).map(|_| rand::random::<u8>()).collect();
    let chunks = FILE_BYTES / CHUNK_BYTES as u64;

    // Up: the body is generated and hashed as it is sent.
    let sent_hash = Arc::new(Mutex::new(Sha256::new()));
    let hasher = sent_hash.clone();
    let body = futures_util::stream::iter(0..chunks).map(move |n| {
        let bytes = chunk(&block, n);
        hasher.lock().unwrap().update(&bytes);
        Ok::<_, std::io::Error>(bytes)
    });
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(dev.files_url())
        .query(&[("name", "big.bin")])
        .bearer_auth(dev.token("alice"))
        .timeout(Duration::from_secs(600))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let upload_time = started.elapsed();
    let uploaded: serde_json::Value = response.json().await.unwrap();
    let sent = hex(&sent_hash.lock().unwrap().clone().finalize());
    assert_eq!(uploaded["size"], FILE_BYTES);
    assert_eq!(uploaded["sha256"], sent, "the server hashed other bytes than were sent");
    let rss_after_upload = dev.peak_rss_bytes();

    // Down: hashed as it arrives, never held.
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{}/{}", dev.files_url(), uploaded["id"].as_str().unwrap()))
        .bearer_auth(dev.token("alice"))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], FILE_BYTES.to_string().as_str());
    let mut received = Sha256::new();
    let mut length = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(bytes) = stream.next().await {
        let bytes = bytes.unwrap();
        length += bytes.len() as u64;
        received.update(&bytes);
    }
    let download_time = started.elapsed();
    assert_eq!(length, FILE_BYTES);
    assert_eq!(hex(&received.finalize()), sent, "the download differs from the upload");

    let peak = dev.peak_rss_bytes();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "1 GiB file: upload {:.1} s, download {:.1} s; server peak RSS {:.0} MiB (idle {:.0} \
         MiB, after upload {:.0} MiB)",
        upload_time.as_secs_f64(),
        download_time.as_secs_f64(),
        mib(peak),
        mib(idle_rss),
        mib(rss_after_upload),
    );
    assert!(
        peak < PEAK_RSS_LIMIT,
        "the server's peak RSS was {:.0} MiB for a 1 GiB file: something holds the file",
        mib(peak)
    );
}

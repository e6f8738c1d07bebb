//! Files kept in a real S3-compatible server on loopback (s3s-fs, built by e2e/s3/build.sh):
//! `dolphin dev --files-url s3://..` uploads in parts, downloads whole and by range, checks
//! access, and leaves nothing in the bucket when it refuses an upload.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod files_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use dolphin_protocol::Body;
use files_support::{Dev, sha256_hex, walk};
use tokio::process::{Child, Command};

const ACCESS_KEY: &str = "dolphin-test";
const SECRET_KEY: &str = "dolphin-test-secret";
const BUCKET: &str = "dolphin-files";
const PREFIX: &str = "cluster-a";

/// The S3 server: a process on a free loopback port, its buckets folders under `root`.
struct S3Server {
    _child: Child,
    endpoint: String,
    root: tempfile::TempDir,
}

impl S3Server {
    async fn start() -> S3Server {
        let Ok(binary) = std::env::var("DOLPHIN_S3_SERVER_BIN") else {
            panic!(
                "DOLPHIN_S3_SERVER_BIN is not set: build the S3 server with e2e/s3/build.sh and \
                 set DOLPHIN_S3_SERVER_BIN to the path it prints on its last line"
            );
        };
        let root = tempfile::tempdir().unwrap();
        // s3s-fs keeps each bucket as a folder of its root: this creates the bucket.
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {binary}: {error}"));
        // Ready once it accepts connections.
        let deadline = Instant::now() + files_support::WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the S3 server did not listen on {port} in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        S3Server { _child: child, endpoint: format!("http://127.0.0.1:{port}"), root }
    }

    /// Starts `dolphin dev` keeping its files in this server's bucket.
    async fn dev(&self, max_file_bytes: u64) -> Dev {
        let url = format!("s3://{BUCKET}/{PREFIX}");
        let limit = max_file_bytes.to_string();
        let args = [
            "--files-url",
            &url,
            "--files-endpoint",
            &self.endpoint,
            "--files-region",
            "us-east-1",
            "--max-file-bytes",
            &limit,
        ];
        let env = [("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)];
        Dev::start(&args, &env).await
    }

    /// Where the server keeps the object `key` of the bucket.
    fn object(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every file the server keeps, objects and unfinished uploads alike.
    fn everything(&self) -> Vec<PathBuf> {
        walk(self.root.path())
    }
}

fn pattern(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..len as u64 - 16).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    bytes
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_through_an_s3_bucket_with_ranges_and_access_checks() {
    let s3 = S3Server::start().await;
    let dev = s3.dev(32 * 1024 * 1024).await;

    // 12 MiB: more than one 8 MiB part, so the upload is a real multipart upload.
    let bytes = pattern(12 * 1024 * 1024);
    let uploaded = dev.upload_ok("alice", "photo.png", bytes.clone()).await;
    let id = uploaded["id"].as_str().unwrap();
    assert_eq!(uploaded["size"], bytes.len() as u64);
    assert_eq!(uploaded["sha256"], sha256_hex(&bytes));
    assert_eq!(uploaded["mime"], "image/png");
    // The bytes and the record are objects of the bucket, under the cluster's prefix.
    assert_eq!(size_of(&s3.object(&format!("{PREFIX}/files/{id}"))), bytes.len() as u64);
    assert!(s3.object(&format!("{PREFIX}/files/{id}.json")).exists());

    let response = dev.download("alice", id, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(response.headers()["etag"], format!("\"{}\"", sha256_hex(&bytes)).as_str());
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let range = dev.download("alice", id, Some("bytes=8388600-8388615")).await;
    assert_eq!(range.status(), 206);
    let total = bytes.len();
    assert_eq!(range.headers()["content-range"], format!("bytes 8388600-8388615/{total}").as_str());
    assert_eq!(range.bytes().await.unwrap().as_ref(), &bytes[8_388_600..8_388_616]);
    let past = dev.download("alice", id, Some(&format!("bytes={total}-"))).await;
    assert_eq!(past.status(), 416);

    let anonymous = reqwest::Client::new().get(format!("{}/{id}", dev.files_url())).send();
    assert_eq!(anonymous.await.unwrap().status(), 401);
    let unknown = dev.download("alice", "f_0123456789abcdef0123456789abcdef", None).await;
    assert_eq!(unknown.status(), 404);

    assert_eq!(dev.download("bob", id, None).await.status(), 403);
    let mut alice = dev.connect("alice").await;
    let image = Body::Image { file: id.into(), width: 1, height: 1 };
    alice.send_ordered("d:alice:bob", image).await;
    let shared = dev.download("bob", id, None).await;
    assert_eq!(shared.status(), 200);
    assert_eq!(shared.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_eq!(dev.download("carol", id, None).await.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upload_to_s3_gets_413_and_leaves_nothing_in_the_bucket() {
    let s3 = S3Server::start().await;
    let limit = 10 * 1024 * 1024;
    let dev = s3.dev(limit).await;

    // Streamed without a length, so parts reach the bucket before the limit is passed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..24).map(|_| Ok(vec![1; 1024 * 1024])).collect();
    let response = dev
        .upload("alice", "big.bin", reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .await;
    assert_eq!(response.status(), 413);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "too_large");
    assert!(s3.everything().is_empty(), "left in the S3 server: {:?}", s3.everything());

    let bad_name = dev.upload("alice", "a/b", b"x".to_vec()).await;
    assert_eq!(bad_name.status(), 400);
    assert!(s3.everything().is_empty(), "left in the S3 server: {:?}", s3.everything());
}

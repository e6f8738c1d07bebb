//! Files over real HTTP against a real `dolphin dev` process: upload, download, ranges, the
//! size limit and who may read what, with messages naming files sent over a real WebSocket.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod files_support;

use dolphin_protocol::Body;
use files_support::{Dev, sha256_hex};

/// The first bytes of a PDF, then enough to make it more than one network read.
fn pdf_bytes() -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..200_000u32).map(|i| (i % 251) as u8));
    bytes
}

fn file_body(id: &str) -> Body {
    Body::File {
        file: id.into(),
        name: "report.pdf".into(),
        size: 1,
        mime: "application/pdf".into(),
    }
}

#[tokio::test]
async fn an_upload_answers_id_size_sha256_and_sniffed_mime_and_downloads_identically() {
    let dev = Dev::start(&[], &[]).await;
    let bytes = pdf_bytes();
    // The name says text; the bytes say PDF, and the bytes win.
    let uploaded = dev.upload_ok("alice", "report.txt", bytes.clone()).await;
    let id = uploaded["id"].as_str().unwrap();
    assert!(id.starts_with("f_"), "{uploaded}");
    assert_eq!(uploaded["size"], bytes.len() as u64);
    assert_eq!(uploaded["sha256"], sha256_hex(&bytes));
    assert_eq!(uploaded["mime"], "application/pdf");

    let response = dev.download("alice", id, None).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
    assert_eq!(headers["etag"], format!("\"{}\"", sha256_hex(&bytes)).as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-disposition"], "attachment; filename*=UTF-8''report.txt");
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn a_name_decides_the_mime_when_the_bytes_do_not() {
    let dev = Dev::start(&[], &[]).await;
    let text = dev.upload_ok("alice", "notes.txt", b"just words".to_vec()).await;
    assert_eq!(text["mime"], "text/plain");
    let unknown = dev.upload_ok("alice", "blob", b"just words".to_vec()).await;
    assert_eq!(unknown["mime"], "application/octet-stream");
    let empty = dev.upload_ok("alice", "empty.bin", Vec::new()).await;
    assert_eq!(empty["size"], 0);
    let response = dev.download("alice", empty["id"].as_str().unwrap(), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_single_range_gets_206_with_exactly_those_bytes_and_one_past_the_end_gets_416() {
    let dev = Dev::start(&[], &[]).await;
    let bytes = pdf_bytes();
    let size = bytes.len();
    let uploaded = dev.upload_ok("alice", "report.pdf", bytes.clone()).await;
    let id = uploaded["id"].as_str().unwrap();

    for (range, expected) in [
        ("bytes=0-9", 0..10),
        ("bytes=100000-100099", 100_000..100_100),
        (&format!("bytes={}-", size - 7) as &str, size - 7..size),
        ("bytes=-5", size - 5..size),
    ] {
        let response = dev.download("alice", id, Some(range)).await;
        assert_eq!(response.status(), 206, "{range}");
        let content_range = format!("bytes {}-{}/{size}", expected.start, expected.end - 1);
        assert_eq!(response.headers()["content-range"], content_range.as_str(), "{range}");
        assert_eq!(
            response.headers()["content-length"],
            expected.len().to_string().as_str(),
            "{range}"
        );
        assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[expected], "{range}");
    }

    let response = dev.download("alice", id, Some(&format!("bytes={size}-"))).await;
    assert_eq!(response.status(), 416);
    assert_eq!(response.headers()["content-range"], format!("bytes */{size}").as_str());
}

#[tokio::test]
async fn missing_and_bad_tokens_get_401_on_upload_and_download() {
    let dev = Dev::start(&[], &[]).await;
    let http = reqwest::Client::new();
    let anonymous = http.post(dev.files_url()).query(&[("name", "a.txt")]).body("x");
    assert_eq!(anonymous.send().await.unwrap().status(), 401);
    let forged = dolphin_edge::auth::issue(b"not-the-secret", "alice", 2_000_000_000, 60).unwrap();
    let bad = http.post(dev.files_url()).query(&[("name", "a.txt")]).bearer_auth(&forged);
    let response = bad.body("x").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "unauthorized");

    let uploaded = dev.upload_ok("alice", "a.txt", b"x".to_vec()).await;
    let url = format!("{}/{}", dev.files_url(), uploaded["id"].as_str().unwrap());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).bearer_auth(&forged).send().await.unwrap().status(), 401);
    assert_eq!(dev.stored_files().len(), 2, "only the good upload is stored (bytes and record)");
}

#[tokio::test]
async fn unknown_and_malformed_ids_get_404() {
    let dev = Dev::start(&[], &[]).await;
    for id in ["f_00000000000000000000000000000000", "f_nope", "..%2F..%2Fjwt-secret"] {
        let response = dev.download("alice", id, None).await;
        assert_eq!(response.status(), 404, "{id}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], "not_found");
    }
}

#[tokio::test]
async fn bad_or_missing_names_get_400_and_store_nothing() {
    let dev = Dev::start(&[], &[]).await;
    for name in ["", "../etc/passwd", "a/b.txt", "back\\slash", "..", &"n".repeat(256)] {
        let response = dev.upload("alice", name, b"data".to_vec()).await;
        assert_eq!(response.status(), 400, "{name:?}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["code"], "bad_request", "{name:?}");
    }
    let unnamed = reqwest::Client::new()
        .post(dev.files_url())
        .bearer_auth(dev.token("alice"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(unnamed.status(), 400);
    assert!(dev.stored_files().is_empty(), "{:?}", dev.stored_files());
}

#[tokio::test]
async fn an_oversized_upload_gets_413_and_leaves_nothing_stored() {
    let limit = 1024 * 1024;
    let dev = Dev::start(&["--max-file-bytes", &limit.to_string()], &[]).await;

    // Declared too large up front: refused before any byte is stored.
    let response = dev.upload("alice", "big.bin", vec![7; limit + 1]).await;
    assert_eq!(response.status(), 413);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["code"], "too_large");
    assert!(error["message"].as_str().unwrap().contains(&limit.to_string()), "{error}");

    // Streamed without a length: refused when the limit is passed, the parts written so far
    // removed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..24).map(|_| Ok(vec![7; 64 * 1024])).collect();
    let response = dev
        .upload("alice", "big.bin", reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .await;
    assert_eq!(response.status(), 413);
    assert!(dev.stored_files().is_empty(), "left behind: {:?}", dev.stored_files());

    // Exactly the limit is fine.
    let uploaded = dev.upload_ok("alice", "max.bin", vec![7; limit]).await;
    assert_eq!(uploaded["size"], limit as u64);
}

#[tokio::test]
async fn members_of_a_conversation_whose_message_names_the_file_may_read_it_and_others_not() {
    let dev = Dev::start(&[], &[]).await;
    let bytes = pdf_bytes();
    let uploaded = dev.upload_ok("alice", "report.pdf", bytes.clone()).await;
    let id = uploaded["id"].as_str().unwrap();

    // Before any message names it, only the uploader may read it.
    assert_eq!(dev.download("alice", id, None).await.status(), 200);
    let refused = dev.download("bob", id, None).await;
    assert_eq!(refused.status(), 403);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["code"], "forbidden");

    // Alice names it in a group with bob and dave; carol is in no such conversation.
    let mut alice = dev.connect("alice").await;
    let group = alice.client.create_group("team", &["bob", "dave"]).await.unwrap();
    alice.send_ordered(&group, file_body(id)).await;
    let response = dev.download("bob", id, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    assert_eq!(dev.download("dave", id, Some("bytes=0-3")).await.status(), 206);
    assert_eq!(dev.download("carol", id, None).await.status(), 403);

    // A direct message names it to carol too, on whichever shard that conversation lives.
    alice.send_ordered("d:alice:carol", file_body(id)).await;
    assert_eq!(dev.download("carol", id, None).await.status(), 200);
    assert_eq!(dev.download("erin", id, None).await.status(), 403);
}

#[tokio::test]
async fn a_message_naming_a_file_does_not_open_other_files() {
    let dev = Dev::start(&[], &[]).await;
    let shared = dev.upload_ok("alice", "a.pdf", pdf_bytes()).await;
    let private = dev.upload_ok("alice", "b.pdf", pdf_bytes()).await;
    let mut alice = dev.connect("alice").await;
    let image = Body::Image { file: shared["id"].as_str().unwrap().into(), width: 10, height: 10 };
    alice.send_ordered("d:alice:bob", image).await;
    assert_eq!(dev.download("bob", shared["id"].as_str().unwrap(), None).await.status(), 200);
    assert_eq!(dev.download("bob", private["id"].as_str().unwrap(), None).await.status(), 403);
}

#[tokio::test]
async fn an_upload_cut_off_by_its_client_leaves_nothing_stored() {
    let dev = Dev::start(&[], &[]).await;
    // Twenty megabytes (two parts written), then the client's body fails and the request is
    // abandoned mid-way.
    let chunks = (0..320)
        .map(|_| Ok(vec![3u8; 64 * 1024]))
        .chain(std::iter::once(Err(std::io::Error::other("the client gave up"))));
    let result = dev
        .send_upload(
            "alice",
            "cut.bin",
            reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert!(result.is_err(), "an abandoned upload got an answer: {result:?}");

    // The server notices the cut when it reads the body, then removes what it wrote.
    let deadline = std::time::Instant::now() + files_support::WAIT;
    while !dev.stored_files().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left behind after the client went away: {:?}",
            dev.stored_files()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // And the server still takes uploads.
    dev.upload_ok("alice", "next.bin", vec![1; 10]).await;
}

#[tokio::test]
async fn uploads_and_downloads_are_counted_by_outcome_in_the_metrics() {
    let dev = Dev::start(&["--max-file-bytes", "100"], &[]).await;
    let uploaded = dev.upload_ok("alice", "a.txt", vec![1; 40]).await;
    let id = uploaded["id"].as_str().unwrap();
    assert_eq!(dev.upload("alice", "b.txt", vec![1; 101]).await.status(), 413);
    assert_eq!(dev.download("alice", id, None).await.status(), 200);
    assert_eq!(dev.download("alice", id, Some("bytes=0-9")).await.status(), 206);
    assert_eq!(dev.download("bob", id, None).await.status(), 403);

    let url = format!("http://{}/metrics", dev.addr);
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    for line in [
        "dolphin_files_uploads_total{outcome=\"stored\"} 1",
        "dolphin_files_uploads_total{outcome=\"too_large\"} 1",
        "dolphin_files_upload_bytes_total 40",
        "dolphin_files_downloads_total{outcome=\"full\"} 1",
        "dolphin_files_downloads_total{outcome=\"partial\"} 1",
        "dolphin_files_downloads_total{outcome=\"forbidden\"} 1",
        "dolphin_files_download_bytes_total 50",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in the metrics");
    }
}

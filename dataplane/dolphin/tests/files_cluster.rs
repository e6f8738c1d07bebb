//! Files across a cluster of processes: two `dolphin edge` processes sharing one store, and
//! shards reached over HTTP answering who may read a file.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use std::time::Duration;

use dolphin::local_cluster::{ClusterSpec, LocalCluster};
use dolphin_client::{Client, ClientConfig, ClientEvent};
use dolphin_protocol::Body;

const WAIT: Duration = Duration::from_secs(30);

async fn upload(cluster: &LocalCluster, edge: u32, user: &str, bytes: Vec<u8>) -> String {
    let addr = cluster.edge_url(edge).unwrap().replace("ws://", "http://");
    let response = reqwest::Client::new()
        .post(format!("{addr}/v1/files"))
        .query(&[("name", "notes.txt")])
        .bearer_auth(cluster.token(user))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn download(cluster: &LocalCluster, edge: u32, user: &str, id: &str) -> reqwest::Response {
    let addr = cluster.edge_url(edge).unwrap().replace("ws://", "http://");
    reqwest::Client::new()
        .get(format!("{addr}/v1/files/{id}"))
        .bearer_auth(cluster.token(user))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_uploaded_at_one_edge_is_read_at_another_once_a_message_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        ClusterSpec::new(dir.path().to_path_buf(), env!("CARGO_BIN_EXE_dolphin").into(), 2, 1, 2);
    let mut cluster = LocalCluster::start(spec).await.expect("the local cluster starts");
    cluster.wait_ready(WAIT).await.expect("the cluster becomes ready");

    let id = upload(&cluster, 0, "alice", b"shared notes".to_vec()).await;
    // The uploader reads it at the other edge; bob may not, yet.
    assert_eq!(download(&cluster, 1, "alice", &id).await.status(), 200);
    assert_eq!(download(&cluster, 1, "bob", &id).await.status(), 403);

    // Alice names it to bob from the second edge; bob reads it at the first.
    let mut config = ClientConfig::new(cluster.edge_url(1).unwrap(), cluster.token("alice"), "t");
    config.reconnect = false;
    let (alice, mut events) = Client::connect(config).await.unwrap();
    let body =
        Body::File { file: id.clone(), name: "notes.txt".into(), size: 12, mime: "x".into() };
    let cid = alice.send("d:alice:bob", body).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if matches!(&event, ClientEvent::Message(m) if m.cid == cid) {
                return;
            }
        }
    })
    .await
    .expect("the message naming the file was not ordered in time");
    let response = download(&cluster, 0, "bob", &id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"shared notes");
    assert_eq!(download(&cluster, 0, "carol", &id).await.status(), 403);

    cluster.stop(Duration::from_secs(5)).await;
}

//! The replicas' admin API against real processes: status, growing a shard from three voters
//! to five through learners, removing a replica, and moving leadership away.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use std::time::{Duration, Instant};

use dolphin::local_cluster::{ClusterSpec, LocalCluster};
use serde_json::json;

async fn cluster(dir: &std::path::Path) -> LocalCluster {
    let spec = ClusterSpec::new(dir.to_path_buf(), env!("CARGO_BIN_EXE_dolphin").into(), 1, 3, 1);
    LocalCluster::start(spec).await.expect("the local cluster starts")
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_role_term_leader_and_members() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let leader = cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    let status = cluster.status(0, leader).await.unwrap();
    assert_eq!(status.role, "leader");
    assert_eq!(status.leader, Some(leader));
    assert!(status.term >= 1);
    assert_eq!(status.voters.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(status.learners.is_empty());
    assert_eq!(status.leader_addr, cluster.replica_addr(0, leader));
    let follower = (1..=3).find(|r| *r != leader).unwrap();
    assert_eq!(cluster.status(0, follower).await.unwrap().role, "follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_grows_to_five_voters_through_learners_and_shrinks_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(dir.path()).await;
    let leader = cluster.leader(0, Duration::from_secs(10)).await.unwrap();

    for _ in 0..2 {
        let id = cluster.add_replica(0).unwrap();
        let addr = cluster.replica_addr(0, id).unwrap();
        let added = cluster
            .admin(0, leader, "/admin/learners", json!({"id": id, "addr": addr}))
            .await
            .unwrap();
        assert_eq!(added.status(), 204, "{:?}", added.text().await);
        let status = cluster.status(0, leader).await.unwrap();
        assert!(status.learners.contains(&id), "{status:?}");
        let promoted = cluster.admin(0, leader, "/admin/promote", json!({"id": id})).await.unwrap();
        assert_eq!(promoted.status(), 204);
    }
    let status = cluster.status(0, leader).await.unwrap();
    assert_eq!(status.voters.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    eventually("the new voters apply what the leader applied", async || {
        let five = cluster.status(0, 5).await.ok()?;
        (five.applied_index >= status.applied_index).then_some(())
    })
    .await;

    // A follower answering an admin change names the leader instead.
    let follower = (1..=5).find(|r| *r != leader).unwrap();
    let refused = cluster.admin(0, follower, "/admin/remove", json!({"id": 5})).await.unwrap();
    assert_eq!(refused.status(), 421);

    let removed = cluster.admin(0, leader, "/admin/remove", json!({"id": 5})).await.unwrap();
    assert_eq!(removed.status(), 204);
    let status = cluster.status(0, leader).await.unwrap();
    assert!(!status.voters.contains(&5) && !status.learners.contains(&5), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepping_down_moves_leadership_to_another_voter() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let leader = cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    let response = cluster.admin(0, leader, "/admin/step-down", json!({})).await.unwrap();
    assert!(response.status().is_success(), "{:?}", response.text().await);
    let new_leader = cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    assert_ne!(new_leader, leader);
    // The shard still takes writes.
    cluster.wait_ready(Duration::from_secs(10)).await.unwrap();
}

async fn ready(addr: &str) -> bool {
    let url = format!("http://{addr}/readyz");
    let output = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&output.stdout) == "200"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_follow_a_changed_topology_file_without_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path()).await;
    let edge = cluster.edge_addrs()[0].clone();
    assert!(ready(&edge).await);
    let path = dir.path().join("topology.yaml");

    // A newer topology that points shard 0 at addresses where nothing listens.
    let mut wrong = cluster.topology.clone();
    wrong.version += 1;
    for replica in &mut wrong.shards[0].replicas {
        replica.addr = "127.0.0.1:9".into();
    }
    std::fs::write(&path, wrong.to_yaml()).unwrap();
    eventually("the edge takes the newer file and loses shard 0", async || {
        (!ready(&edge).await).then_some(())
    })
    .await;

    // An older version is ignored; a newer one with the right addresses restores it.
    std::fs::write(&path, cluster.topology.to_yaml()).unwrap();
    // NOTE: an absence can only be watched for a while; two polling periods is when the edge
    // would have taken the file if it were going to.
    tokio::time::sleep(dolphin::edge::TOPOLOGY_POLL * 2).await;
    assert!(!ready(&edge).await, "an older topology version is ignored");
    let mut right = cluster.topology.clone();
    right.version += 2;
    std::fs::write(&path, right.to_yaml()).unwrap();
    eventually("the edge takes the corrected file", async || ready(&edge).await.then_some(()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_message_is_fetched_at_once_through_another_edge() {
    use dolphin_client::{Client, ClientConfig, ClientEvent};
    let dir = tempfile::tempdir().unwrap();
    let spec =
        ClusterSpec::new(dir.path().to_path_buf(), env!("CARGO_BIN_EXE_dolphin").into(), 2, 3, 2);
    let cluster = LocalCluster::start(spec).await.unwrap();
    let connect = |user: &str, edge: u32| {
        let config = ClientConfig::new(cluster.edge_url(edge).unwrap(), cluster.token(user), "d");
        Client::connect(config)
    };
    let (alice, _) = connect("alice", 0).await.unwrap();
    let (_bob, mut bob_events) = connect("bob", 1).await.unwrap();
    let (reader, _) = connect("bob", 0).await.unwrap();
    for i in 0..30 {
        alice
            .send("d:alice:bob", dolphin_protocol::Body::Text { text: format!("{i}") })
            .await
            .unwrap();
        let seq = loop {
            let event = tokio::time::timeout(Duration::from_secs(10), bob_events.recv())
                .await
                .expect("bob was not pushed the message")
                .unwrap();
            if let ClientEvent::Message(message) = event {
                break message.seq;
            }
        };
        // Pushed through edge 1; read at once through edge 0.
        let page = reader.fetch_after("d:alice:bob", seq - 1, 1).await.unwrap();
        assert_eq!(
            page.messages.first().map(|m| m.seq),
            Some(seq),
            "message {seq} was pushed but not fetched"
        );
    }
}

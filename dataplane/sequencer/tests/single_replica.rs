//! A shard of one replica on disk: ordering, reads, events, restarts and snapshots.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dolphin_protocol::Body;
use dolphin_sequencer::network::HttpNetwork;
use dolphin_sequencer::{SequencerMetrics, Shard, ShardConfig};
use dolphin_state::query::{self, Direction};
use dolphin_state::{Command, Event, Outcome};

fn config(dir: &std::path::Path) -> ShardConfig {
    ShardConfig {
        shard: 0,
        replica: 1,
        data_dir: dir.to_path_buf(),
        addr: "127.0.0.1:1".into(),
        raft: ShardConfig::default_raft(0),
        request_timeout: Duration::from_secs(5),
    }
}

async fn open(dir: &std::path::Path, raft: Option<openraft::Config>) -> Arc<Shard> {
    let mut config = config(dir);
    if let Some(raft) = raft {
        config.raft = raft;
    }
    let shard = Shard::open(
        config,
        HttpNetwork::new(Duration::from_secs(1)),
        SequencerMetrics::unregistered(),
    )
    .await
    .expect("shard opens");
    shard.bootstrap(&BTreeMap::new()).await.expect("bootstrap");
    shard
}

fn send(cid: &str) -> Command {
    Command::Send {
        conv: "d:alice:bob".into(),
        from: "alice".into(),
        device: "phone".into(),
        cid: cid.into(),
        body: Body::Text { text: cid.into() },
        ts: 1,
    }
}

async fn seqs(shard: &Shard) -> Vec<u64> {
    let page = shard
        .read(|kv| query::fetch(kv, "bob", "d:alice:bob", Direction::After(0), 500))
        .await
        .expect("read")
        .expect("allowed");
    page.messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn concurrent_commands_get_dense_seqs_and_are_published_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let shard = open(dir.path(), None).await;
    let mut events = shard.subscribe(None);

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let shard = shard.clone();
            tokio::spawn(async move { shard.submit(send(&format!("c{i}"))).await })
        })
        .collect();
    for task in tasks {
        let applied = task.await.unwrap().expect("submitted");
        assert!(matches!(applied.outcome, Outcome::Sent { duplicate: false, .. }));
    }
    assert_eq!(seqs(&shard).await, (1..=200).collect::<Vec<_>>());

    let mut published = Vec::new();
    while published.len() < 200 {
        let (_, batch) = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("events stopped before all 200 messages were published")
            .expect("log open")
            .expect("no gap");
        for event in batch.iter() {
            if let Event::Message { msg, .. } = event {
                published.push(msg.seq);
            }
        }
    }
    assert_eq!(published, (1..=200).collect::<Vec<_>>());
    shard.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart_on_the_same_folder() {
    let dir = tempfile::tempdir().unwrap();
    let shard = open(dir.path(), None).await;
    for i in 0..10 {
        shard.submit(send(&format!("c{i}"))).await.unwrap();
    }
    shard.shutdown().await;
    drop(shard);

    let shard = open(dir.path(), None).await;
    assert_eq!(seqs(&shard).await, (1..=10).collect::<Vec<_>>());
    let again = shard.submit(send("c3")).await.unwrap();
    assert!(matches!(again.outcome, Outcome::Sent { seq: 4, duplicate: true, .. }));
    shard.submit(send("c10")).await.unwrap();
    assert_eq!(seqs(&shard).await, (1..=11).collect::<Vec<_>>());
    shard.shutdown().await;
}

#[tokio::test]
async fn a_restart_after_snapshots_and_purges_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let raft = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 5,
        purge_batch_size: 1,
        ..ShardConfig::default_raft(0)
    };
    let shard = open(dir.path(), Some(raft.clone())).await;
    for i in 0..100 {
        shard.submit(send(&format!("c{i}"))).await.unwrap();
    }
    let snapshot = shard.raft().metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "a snapshot was built");
    shard.shutdown().await;
    drop(shard);

    let shard = open(dir.path(), Some(raft)).await;
    assert_eq!(seqs(&shard).await, (1..=100).collect::<Vec<_>>());
    shard.shutdown().await;
}

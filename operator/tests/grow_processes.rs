//! Growing a shard from three replicas to five against real sequencer processes, driven by
//! the operator's own step ([`membership::grow`]): the added replicas start from a topology
//! that names the founders, so they wait instead of forming a shard of their own, and the
//! leader adds them as learners and promotes them, one at a time, while the shard keeps
//! taking writes.
//!
//! The `dolphin` binary is the one built beside this test (`cargo build -p dolphin`), or
//! `DOLPHIN_BIN`.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::time::{Duration, Instant};

use dolphin::local_cluster::{ClusterSpec, LocalCluster};
use dolphin_operator::leader;
use dolphin_operator::membership::{self, Growth};
use dolphin_protocol::Body;
use dolphin_sequencer::remote::RemoteShard;
use dolphin_state::Command;

const GROW_TIMEOUT: Duration = Duration::from_secs(120);

async fn write(shard: &RemoteShard, n: u32) -> u64 {
    let command = Command::Send {
        conv: "d:a:b".into(),
        from: "a".into(),
        device: "d".into(),
        cid: format!("grow-{n}"),
        body: Body::Text { text: format!("message {n}") },
        ts: 0,
    };
    let applied = shard.submit(&command).await.expect("the shard takes writes while it grows");
    match applied.outcome {
        dolphin_state::Outcome::Sent { seq, duplicate: false, .. } => seq,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Grows one shard from `from` replicas to `to` and checks the result.
async fn grow(from: u64, to: u64) {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        ClusterSpec::new(dir.path().to_path_buf(), support::dolphin_binary(), 1, from as u32, 0);
    let mut cluster = LocalCluster::start(spec).await.unwrap();
    let first_leader = cluster.leader(0, Duration::from_secs(20)).await.unwrap();
    let addrs = |cluster: &LocalCluster| -> Vec<String> {
        cluster.topology.shards[0].replicas.iter().map(|r| r.addr.clone()).collect()
    };
    let writes = RemoteShard::new(0, addrs(&cluster));
    let mut n = 0;
    for _ in 0..20 {
        n += 1;
        write(&writes, n).await;
    }

    // The operator's plan: more replicas, the first ones named as founders.
    let added: Vec<u64> = (from..to).map(|_| cluster.add_replica(0).unwrap()).collect();
    assert_eq!(added, (from + 1..=to).collect::<Vec<_>>());
    assert_eq!(cluster.topology.shards[0].founders, (1..=from).collect::<Vec<_>>());
    let http = leader::client().unwrap();
    let shard = cluster.topology.shards[0].clone();

    let deadline = Instant::now() + GROW_TIMEOUT;
    let mut promoted = Vec::new();
    let mut last = None;
    loop {
        match membership::grow(&http, &shard).await.unwrap() {
            Growth::Complete => break,
            Growth::Promoted { id } => promoted.push(id),
            other @ (Growth::NoLeader | Growth::Waiting { .. }) => {
                last = Some(other);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        n += 1;
        write(&writes, n).await;
        assert!(
            Instant::now() < deadline,
            "the shard did not grow in {GROW_TIMEOUT:?}: promoted {promoted:?}, last {last:?}, \
             logs in {}",
            dir.keep().display()
        );
    }
    assert_eq!(promoted, added, "one replica per step, in order");

    let leader = cluster.leader(0, Duration::from_secs(20)).await.unwrap();
    let status = cluster.status(0, leader).await.unwrap();
    assert_eq!(status.voters.into_iter().collect::<Vec<_>>(), (1..=to).collect::<Vec<_>>());
    assert!(status.learners.is_empty());
    // The added replicas joined this shard (same term, same leader), not one of their own.
    for &id in &added {
        let joined = cluster.status(0, id).await.unwrap();
        assert_eq!(joined.leader, Some(leader), "replica {id} follows the shard's leader");
        assert_eq!(joined.term, status.term);
    }
    // And the next write reaches them.
    n += 1;
    let seq = write(&writes, n).await;
    assert_eq!(seq, u64::from(n), "every write was ordered once, densely");
    let _ = first_leader;
    cluster.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_grows_from_three_to_five_voters_through_learners() {
    grow(3, 5).await;
}

/// The case where added replicas alone would be a quorum of the membership they would
/// propose: were they to form a shard, it would order writes of its own (split brain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_grows_from_one_to_three_without_the_new_pair_forming_its_own() {
    grow(1, 3).await;
}

//! The roll of a shard to a new template against real sequencer processes, driven by the
//! operator's own decision ([`roll::next_step`]) and admin client ([`leader`]): followers
//! restart first, the leader hands leadership over before it restarts, and the shard never
//! loses its leader to a restart.
//!
//! A restart here kills the replica's process and starts it again on its folder, as a pod that
//! the operator deletes comes back on the same volume. The `dolphin` binary is the one built
//! beside this test (`cargo build -p dolphin`), or `DOLPHIN_BIN`.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dolphin::local_cluster::{ClusterSpec, LocalCluster};
use dolphin_operator::leader;
use dolphin_operator::roll::{self, Step};

/// Bounds the whole roll: three restarts of a replica that must catch up and see a leader.
const ROLL_TIMEOUT: Duration = Duration::from_secs(120);
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

async fn ready(http: &reqwest::Client, addr: &str) -> bool {
    let answer = http.get(format!("http://{addr}/readyz")).send().await;
    answer.is_ok_and(|response| response.status().is_success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_rolls_followers_first_and_its_leader_only_after_stepping_down() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::new(dir.path().to_path_buf(), support::dolphin_binary(), 1, 3, 0);
    let mut cluster = LocalCluster::start(spec).await.unwrap();
    let first_leader = cluster.leader(0, LEADER_TIMEOUT).await.unwrap();
    let http = leader::client().unwrap();
    let addrs: Vec<String> = (1..=3).map(|id| cluster.replica_addr(0, id).unwrap()).collect();
    // What the operator reports as the shard's leader in the ImCluster's status.
    assert_eq!(leader::leader(&http, &addrs).await, Some(first_leader));

    let mut updated = BTreeSet::new();
    let mut restarted = Vec::new();
    let mut step_downs = Vec::new();
    // Whether leadership moved without a step-down (a restarted follower may call an
    // election); the order of the roll then differs, its safety must not.
    let mut last_leader = Some(first_leader);
    let mut moved_by_itself = false;
    let deadline = Instant::now() + ROLL_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the roll did not finish in {ROLL_TIMEOUT:?}: restarted {restarted:?}, stepped \
             down {step_downs:?} (logs in {})",
            dir.path().join("logs").display()
        );
        let known = leader::leader(&http, &addrs).await;
        if known.is_some() && known != last_leader {
            moved_by_itself = true;
            last_leader = known;
        }
        let mut replicas = Vec::new();
        for (id, addr) in (1..=3).zip(&addrs) {
            let ready = ready(&http, addr).await;
            let updated = updated.contains(&id);
            replicas.push(roll::Replica { id, pod: format!("replica-{id}"), updated, ready });
        }

        match roll::next_step(0, &replicas, 3, known) {
            Step::Done => break,
            Step::Wait(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Step::StepDown { leader: id } => {
                let addr = &addrs[usize::try_from(id - 1).unwrap()];
                leader::step_down(&http, addr).await.unwrap();
                step_downs.push(id);
                let now = cluster.leader(0, LEADER_TIMEOUT).await.unwrap();
                assert_ne!(now, id, "replica {id} stepped down but still leads");
                last_leader = Some(now);
            }
            Step::Restart { id, reason, .. } => {
                assert!(replicas.iter().all(|r| r.ready), "a restart while a replica is down");
                let role = cluster.status(0, id).await.unwrap().role;
                assert_ne!(role, "leader", "replica {id} was restarted while it led ({reason})");
                assert_eq!(reason, "follower", "the leader was known, so only followers restart");
                cluster.kill_replica(0, id).await.unwrap();
                cluster.start_replica(0, id).unwrap();
                updated.insert(id);
                restarted.push(id);
            }
        }
    }

    let mut each = restarted.clone();
    each.sort_unstable();
    assert_eq!(each, [1, 2, 3], "every replica restarts exactly once: {restarted:?}");
    if !moved_by_itself {
        assert_eq!(step_downs, [first_leader], "the first leader hands over once, at its turn");
        assert_eq!(restarted.last(), Some(&first_leader), "the first leader restarts last");
    }
    cluster.leader(0, LEADER_TIMEOUT).await.expect("the shard has a leader after the roll");
    cluster.stop(Duration::from_secs(5)).await;
}

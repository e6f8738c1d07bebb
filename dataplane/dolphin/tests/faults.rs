//! Sequencer replicas as real processes on loopback, killed with SIGKILL and cut off from each
//! other while clients send through two edges; a checker verifies every guarantee afterwards.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dolphin::local_cluster::{ClusterSpec, LocalCluster};
use dolphin_client::{CatchUp, Client, ClientConfig};
use dolphin_protocol::Message;
use dolphin_sequencer::admin::Digest;
use support::load::{self, Load, SenderSpec};

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];

/// The longest a shard may go without a leader after its leader dies: a few election timeouts
/// (500 to 1000 ms each).
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(5);

struct Fixture {
    cluster: LocalCluster,
    _dir: tempfile::TempDir,
    /// Conversations by the shard that orders them.
    convs: BTreeMap<u32, Vec<String>>,
}

async fn fixture(sequencer_args: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut spec =
        ClusterSpec::new(dir.path().to_path_buf(), env!("CARGO_BIN_EXE_dolphin").into(), 2, 3, 2);
    spec.fault_injection = true;
    spec.edge_args =
        ["--send-rate", "100000", "--send-burst", "100000", "--presence-beat", "200ms"]
            .map(String::from)
            .into();
    spec.sequencer_args = sequencer_args.iter().map(|s| s.to_string()).collect();
    let cluster = LocalCluster::start(spec).await.expect("the local cluster starts");
    let router = cluster.topology.router();

    // A group on each shard, and every direct conversation among the users.
    let owner = connect(&cluster, "u0", 0, "setup").await;
    let mut convs: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    while convs.values().filter(|c| c.iter().any(|c| c.starts_with("g:"))).count() < 2 {
        let group = owner.create_group("load", &USERS[1..]).await.unwrap();
        let shard = router.shard_of(&group);
        if !convs.get(&shard).is_some_and(|c| c.iter().any(|c| c.starts_with("g:"))) {
            convs.entry(shard).or_default().push(group);
        }
    }
    owner.close().await;
    for (i, a) in USERS.iter().enumerate() {
        for b in &USERS[i + 1..] {
            let conv = dolphin_protocol::ids::direct_conv(a, b);
            convs.entry(router.shard_of(&conv)).or_default().push(conv);
        }
    }
    Fixture { cluster, _dir: dir, convs }
}

async fn connect(cluster: &LocalCluster, user: &str, edge: u32, device: &str) -> Client {
    let mut config =
        ClientConfig::new(cluster.edge_url(edge).unwrap(), cluster.token(user), device);
    config.catch_up = CatchUp::Everything;
    Client::connect(config).await.expect("client connects").0
}

impl Fixture {
    /// Every user sends, in turn, to each conversation it belongs to, through alternating edges.
    async fn load(&self) -> Load {
        let specs = USERS
            .iter()
            .enumerate()
            .map(|(i, user)| SenderSpec {
                user: user.to_string(),
                url: self.cluster.edge_url(i as u32 % 2).unwrap(),
                fallback_urls: vec![self.cluster.edge_url((i as u32 + 1) % 2).unwrap()],
                token: self.cluster.token(user),
                convs: self
                    .convs
                    .values()
                    .flatten()
                    .filter(|c| c.starts_with("g:") || c.split(':').any(|p| p == *user))
                    .cloned()
                    .collect(),
            })
            .collect();
        Load::start(specs, Duration::from_millis(5)).await
    }

    /// Reads every conversation once every message the senders were told was accepted is
    /// ordered (accepted means queued: ordering may trail it a little), or after 30 s.
    async fn stored_after(&self, senders: &[load::SenderLog]) -> BTreeMap<String, Vec<Message>> {
        // Settled: every accepted message is there, and a second read finds nothing more
        // (a send that failed on the client side may still have been queued and be ordered
        // late; receivers must not see messages newer than what is checked against).
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut previous: Option<BTreeMap<String, Vec<Message>>> = None;
        loop {
            let stored = self.stored().await;
            let present: BTreeSet<(&str, &str)> =
                stored.values().flatten().map(|m| (m.conv.as_str(), m.cid.as_str())).collect();
            let all = senders
                .iter()
                .flat_map(|s| &s.accepted)
                .all(|(conv, cid)| present.contains(&(conv.as_str(), cid.as_str())));
            if (all && previous.as_ref() == Some(&stored)) || Instant::now() >= deadline {
                return stored;
            }
            previous = Some(stored);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Reads every conversation from seq 1 through an edge.
    async fn stored(&self) -> BTreeMap<String, Vec<Message>> {
        let mut stored = BTreeMap::new();
        for conv in self.convs.values().flatten() {
            let reader =
                if conv.starts_with("g:") { "u0" } else { conv.split(':').nth(1).unwrap() };
            let client = connect(&self.cluster, reader, 1, "checker").await;
            let mut messages: Vec<Message> = Vec::new();
            loop {
                let after = messages.last().map_or(0, |m| m.seq);
                let page = client.fetch_after(conv, after, 500).await.unwrap();
                let done =
                    page.messages.is_empty() || page.messages.last().unwrap().seq >= page.max_seq;
                messages.extend(page.messages);
                if done {
                    break;
                }
            }
            client.close().await;
            stored.insert(conv.clone(), messages);
        }
        stored
    }

    async fn digest(&self, shard: u32, replica: u64) -> Option<Digest> {
        let addr = self.cluster.replica_addr(shard, replica)?;
        let response = reqwest_get(&format!("http://{addr}/admin/digest")).await?;
        serde_json::from_str(&response).ok()
    }

    /// Waits until the given replicas of `shard` hold identical state at the same index.
    async fn replicas_converge(&self, shard: u32, replicas: &[u64]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut digests = Vec::new();
            for &replica in replicas {
                digests.push(self.digest(shard, replica).await);
            }
            let first = digests[0].clone();
            if first.is_some() && digests.iter().all(|d| *d == first) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas of shard {shard} did not converge: {digests:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn reqwest_get(url: &str) -> Option<String> {
    let output = tokio::process::Command::new("curl")
        .args(["-sf", "--max-time", "2", url])
        .output()
        .await
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn send_once(
    cluster: &LocalCluster,
    conv: &str,
    user: &str,
    cid: &str,
) -> Result<(), dolphin_client::ClientError> {
    let client = connect(cluster, user, 0, "probe").await;
    let body = dolphin_protocol::Body::Text { text: cid.into() };
    let result =
        tokio::time::timeout(Duration::from_secs(30), client.send_with_cid(conv, cid, body))
            .await
            .expect("a send neither succeeded nor failed within 30 s");
    client.close().await;
    result
}

fn sender_of(conv: &str) -> &str {
    if conv.starts_with("g:") { "u0" } else { conv.split(':').nth(1).unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_shard_leader_loses_nothing_and_a_new_leader_serves() {
    let mut f = fixture(&[]).await;
    let mut load = f.load().await;
    load.wait_accepted(100, Duration::from_secs(30), "before the kill").await;

    let leader = f.cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    f.cluster.kill_replica(0, leader).await.unwrap();
    let killed_at = Instant::now();
    let new_leader = f.cluster.leader(0, NEW_LEADER_WITHIN).await.expect("a new leader is elected");
    assert_ne!(new_leader, leader);
    let _ = killed_at.elapsed();
    load.wait_accepted(200, Duration::from_secs(30), "after the kill").await;

    f.cluster.start_replica(0, leader).unwrap();
    let senders = load.stop_sending().await;
    let stored = f.stored_after(&senders).await;
    let received = load.finish().await;
    load::check(&stored, &senders, &received);
    f.replicas_converge(0, &[1, 2, 3]).await;
    f.replicas_converge(1, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_catches_up_by_snapshot_and_matches_the_leader() {
    let mut f = fixture(&["--snapshot-every", "100", "--snapshot-keep", "10"]).await;
    let mut load = f.load().await;
    load.wait_accepted(50, Duration::from_secs(30), "before the kill").await;

    let leader = f.cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    let follower = (1..=3).find(|r| *r != leader).unwrap();
    f.cluster.kill_replica(0, follower).await.unwrap();
    // Enough entries that the leader snapshots and purges what the follower missed.
    load.wait_accepted(600, Duration::from_secs(60), "while a follower is down").await;
    let status = f.cluster.status(0, leader).await.unwrap();
    assert!(status.snapshot_index > 0, "the leader built a snapshot: {status:?}");

    f.cluster.start_replica(0, follower).unwrap();
    let senders = load.stop_sending().await;
    f.replicas_converge(0, &[1, 2, 3]).await;
    let follower_status = f.cluster.status(0, follower).await.unwrap();
    assert!(follower_status.snapshot_index > 0, "the follower caught up from a snapshot");
    let stored = f.stored_after(&senders).await;
    let received = load.finish().await;
    load::check(&stored, &senders, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_two_of_three_replicas_makes_writes_unavailable_until_one_returns() {
    let mut f = fixture(&[]).await;
    let mut load = f.load().await;
    load.wait_accepted(50, Duration::from_secs(30), "before the kills").await;

    f.cluster.kill_replica(0, 1).await.unwrap();
    f.cluster.kill_replica(0, 2).await.unwrap();
    let conv = f.convs[&0][0].clone();
    // Right after the kills a send may still be queued (and must then be ordered when the
    // shard is back); once the edge sees the shard without a quorum, sends are refused.
    let started = Instant::now();
    let mut queued_meanwhile = Vec::new();
    loop {
        let cid = format!("during-outage-{}", queued_meanwhile.len());
        match send_once(&f.cluster, &conv, sender_of(&conv), &cid).await {
            Ok(()) => queued_meanwhile.push((conv.clone(), cid)),
            Err(error) => {
                assert_eq!(error.code(), Some(dolphin_protocol::ErrorCode::Unavailable));
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(15), "unavailable came promptly");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The other shard is untouched.
    let other = f.convs[&1][0].clone();
    send_once(&f.cluster, &other, sender_of(&other), "other-shard")
        .await
        .expect("shard 1 still takes writes");

    f.cluster.start_replica(0, 2).unwrap();
    f.cluster.leader(0, Duration::from_secs(15)).await.expect("shard 0 has a leader again");
    // The edge notices the new leader within a check or two; a client retries its send with
    // the same cid until then.
    let back = Instant::now();
    while let Err(error) = send_once(&f.cluster, &conv, sender_of(&conv), "after-outage").await {
        assert_eq!(error.code(), Some(dolphin_protocol::ErrorCode::Unavailable));
        assert!(back.elapsed() < Duration::from_secs(10), "shard 0 takes writes again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    f.cluster.start_replica(0, 1).unwrap();
    let mut senders = load.stop_sending().await;
    assert!(senders.iter().any(|s| s.errors.contains_key("unavailable")), "senders saw the outage");
    senders.push(load::SenderLog {
        user: sender_of(&conv).to_owned(),
        accepted: queued_meanwhile,
        errors: BTreeMap::new(),
    });
    let stored = f.stored_after(&senders).await;
    let received = load.finish().await;
    load::check(&stored, &senders, &received);
    f.replicas_converge(0, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_killed_and_started_again_keeps_everything() {
    // Frequent snapshots that purge the whole log behind them: the state applied since the
    // last checkpoint must come back from entries the purge left in place.
    let mut f = fixture(&["--snapshot-every", "50", "--snapshot-keep", "0"]).await;
    let mut load = f.load().await;
    load.wait_accepted(200, Duration::from_secs(30), "before the kills").await;
    let senders = load.stop_sending().await;
    let before = f.stored_after(&senders).await;
    load.finish().await;

    for shard in 0..2 {
        for replica in 1..=3 {
            f.cluster.kill_replica(shard, replica).await.unwrap();
        }
    }
    for shard in 0..2 {
        for replica in 1..=3 {
            f.cluster.start_replica(shard, replica).unwrap();
        }
    }
    f.cluster.wait_ready(Duration::from_secs(30)).await.unwrap();
    let after = f.stored().await;
    assert_eq!(before, after, "every conversation reads the same after the restart");
    load::check(&after, &senders, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_commits_nothing_and_rejoins_without_split_brain() {
    let f = fixture(&[]).await;
    let mut load = f.load().await;
    load.wait_accepted(50, Duration::from_secs(30), "before the partition").await;

    // Watch every replica's own claim to lead, by term.
    let addrs: Vec<String> = (1..=3).map(|r| f.cluster.replica_addr(0, r).unwrap()).collect();
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch_flag = watching.clone();
    let watcher = tokio::spawn(async move {
        let mut leaders_by_term: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        while watch_flag.load(std::sync::atomic::Ordering::Acquire) {
            for addr in &addrs {
                if let Some(body) = reqwest_get(&format!("http://{addr}/admin/status")).await
                    && let Ok(status) =
                        serde_json::from_str::<dolphin_sequencer::admin::Status>(&body)
                    && status.role == "leader"
                {
                    leaders_by_term.entry(status.term).or_default().insert(status.replica);
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        leaders_by_term
    });

    let old = f.cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    let isolate = f
        .cluster
        .admin(0, old, "/admin/isolate", serde_json::json!({"isolated": true}))
        .await
        .unwrap();
    assert!(isolate.status().is_success());
    let others: Vec<u64> = (1..=3).filter(|r| *r != old).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let new_leader = loop {
        let a = f.cluster.status(0, others[0]).await.ok().and_then(|s| s.leader);
        let b = f.cluster.status(0, others[1]).await.ok().and_then(|s| s.leader);
        if let (Some(a), Some(b)) = (a, b)
            && a == b
            && a != old
        {
            break a;
        }
        assert!(Instant::now() < deadline, "the majority elected no new leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let applied_isolated = f.cluster.status(0, old).await.unwrap().applied_index;
    load.wait_accepted(200, Duration::from_secs(60), "during the partition").await;
    let majority = f.cluster.status(0, new_leader).await.unwrap();
    assert!(majority.applied_index > applied_isolated, "the majority kept committing");
    let isolated = f.cluster.status(0, old).await.unwrap();
    assert_eq!(isolated.applied_index, applied_isolated, "the isolated replica committed nothing");

    let heal = f
        .cluster
        .admin(0, old, "/admin/isolate", serde_json::json!({"isolated": false}))
        .await
        .unwrap();
    assert!(heal.status().is_success());
    let senders = load.stop_sending().await;
    f.replicas_converge(0, &[1, 2, 3]).await;
    watching.store(false, std::sync::atomic::Ordering::Release);
    let leaders_by_term = watcher.await.unwrap();
    for (term, leaders) in &leaders_by_term {
        assert!(leaders.len() <= 1, "term {term} had leaders {leaders:?}");
    }
    let stored = f.stored_after(&senders).await;
    let received = load.finish().await;
    load::check(&stored, &senders, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_refuses_sends_meanwhile_and_loses_nothing_accepted() {
    let mut f = fixture(&[]).await;
    let mut load = f.load().await;
    load.wait_accepted(100, Duration::from_secs(30), "before the kill").await;

    f.cluster.kill_redis().await.unwrap();
    let conv = f.convs[&0][0].clone();
    let started = Instant::now();
    let refused = send_once(&f.cluster, &conv, sender_of(&conv), "during-redis-outage").await;
    assert_eq!(refused.unwrap_err().code(), Some(dolphin_protocol::ErrorCode::Unavailable));
    assert!(started.elapsed() < Duration::from_secs(10), "unavailable came promptly");
    let edge = f.cluster.edge_addrs()[0].clone();
    assert!(reqwest_get(&format!("http://{edge}/readyz")).await.is_none(), "the edge is not ready");
    // Reads do not need the queue.
    let reader = connect(&f.cluster, sender_of(&conv), 1, "reader").await;
    reader.fetch_after(&conv, 0, 10).await.expect("reads are served while Redis is down");
    reader.close().await;

    f.cluster.start_redis().await.unwrap();
    load.wait_accepted(200, Duration::from_secs(60), "after Redis came back").await;
    let senders = load.stop_sending().await;
    assert!(senders.iter().any(|s| s.errors.contains_key("unavailable")), "senders saw the outage");
    let stored = f.stored_after(&senders).await;
    assert!(
        stored.values().flatten().all(|m| m.cid != "during-redis-outage"),
        "a refused send was ordered"
    );
    let received = load.finish().await;
    load::check(&stored, &senders, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_edge_moves_its_clients_to_the_other_and_they_miss_nothing() {
    let mut f = fixture(&[]).await;
    let mut load = f.load().await;
    load.wait_accepted(100, Duration::from_secs(30), "before the kill").await;

    f.cluster.kill_edge(0).await.unwrap();
    load.wait_accepted(200, Duration::from_secs(60), "after the edge died").await;
    let senders = load.stop_sending().await;
    let stored = f.stored_after(&senders).await;
    // Give the last pushes time to arrive before the receivers close.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = load.finish().await;
    load::check(&stored, &senders, &received);
    load::check_complete(&stored, &received);
}

/// Two users whose own shard is 1 while their direct conversation (which keeps their
/// friendship) is on shard 0: accepting writes on shard 0 and owes shard 1 both views.
fn users_apart(router: &dolphin_topology::Router) -> (String, String) {
    for i in 0..10_000 {
        let (a, b) = (format!("fa{i}"), format!("fb{i}"));
        let pair = router.shard_of(&dolphin_protocol::ids::direct_conv(&a, &b));
        let own = [router.shard_of(&format!("u:{a}")), router.shard_of(&format!("u:{b}"))];
        if pair == 0 && own == [1, 1] {
            return (a, b);
        }
    }
    panic!("no two users apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friendship_accepted_as_its_shard_leader_dies_reaches_both_users_once() {
    use serde_json::json;
    use support::Raw;

    let mut f = fixture(&[]).await;
    let (ann, ben) = users_apart(&f.cluster.topology.router());
    let url = |user: &str, edge: u32| {
        let base = f.cluster.edge_url(edge).unwrap();
        format!("{base}/v1/ws?token={}&device=phone", f.cluster.token(user))
    };
    let mut a = Raw::connect_url(&url(&ann, 0)).await;
    let mut b = Raw::connect_url(&url(&ben, 1)).await;
    let friend = |f: &serde_json::Value| f["type"] == "friend";

    let reply = a.call(json!({"type":"friend.request","user":ben})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(b.recv_until(friend).await.0["event"], "request");
    let leader = f.cluster.leader(0, Duration::from_secs(10)).await.unwrap();
    let reply = b.call(json!({"type":"friend.accept","user":ann})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    // The accept is committed; whether its outbox was forwarded yet is up to timing. Either
    // way the next leader owes both views and must deliver them.
    f.cluster.kill_replica(0, leader).await.unwrap();

    assert_eq!(
        a.recv_until(friend).await.0,
        json!({"type":"friend","event":"accepted","user":ben})
    );
    assert_eq!(
        b.recv_until(friend).await.0,
        json!({"type":"friend","event":"accepted","user":ann})
    );
    let list = a.call(json!({"type":"friend.list"})).await;
    assert_eq!(list["friends"], json!([ben]), "{list}");
    let list = b.call(json!({"type":"friend.list"})).await;
    assert_eq!(list["friends"], json!([ann]), "{list}");
    assert_eq!(a.silent_for(Duration::from_millis(700)).await, None, "told twice");
    assert_eq!(b.silent_for(Duration::from_millis(300)).await, None, "told twice");
    f.cluster.start_replica(0, leader).unwrap();
    f.replicas_converge(0, &[1, 2, 3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_see_a_user_go_offline_when_the_users_edge_is_killed() {
    use serde_json::json;
    use support::Raw;

    let mut f = fixture(&[]).await;
    let url = |user: &str, edge: u32| {
        let base = f.cluster.edge_url(edge).unwrap();
        format!("{base}/v1/ws?token={}&device=phone", f.cluster.token(user))
    };
    let mut ann = Raw::connect_url(&url("pa", 0)).await;
    let mut ben = Raw::connect_url(&url("pb", 1)).await;
    let friend = |f: &serde_json::Value| f["type"] == "friend";
    let reply = ann.call(json!({"type":"friend.request","user":"pb"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    ben.recv_until(friend).await;
    let reply = ben.call(json!({"type":"friend.accept","user":"pa"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    ben.recv_until(friend).await;

    // The edge dies without a word; the other edge notices its silence.
    f.cluster.kill_edge(0).await.unwrap();
    let presence = ben.recv_until(|f| f["type"] == "presence").await.0;
    assert_eq!(presence, json!({"type":"presence","user":"pa","online":false}));
    drop(ann);
}

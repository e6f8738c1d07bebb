//! The Redis transport against a real `redis-server` started by each test on a free port,
//! with AOF and `appendfsync always` as clusters run it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use dolphin_queue::redis::{RedisQueue, RedisSettings};
use dolphin_queue::{EntryId, InboxEntry, Queue, QueueError};
use dolphin_state::Command;

/// A `redis-server` of the test's own, killed when dropped.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Further `redis-server` arguments.
    extra: Vec<String>,
    /// Whether the port speaks TLS (and no plain port is open).
    tls: bool,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A server that speaks only TLS, on its port.
    fn start_tls(tls: &[&str]) -> Redis {
        let mut redis = Redis::start_with(&[]);
        redis.kill();
        redis.extra = tls.iter().map(|a| a.to_string()).collect();
        redis.tls = true;
        redis.restart();
        redis
    }

    fn start_with(extra: &[&str]) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut redis = Redis { port, dir, child: None, extra, tls: false };
        redis.restart();
        redis
    }

    /// Starts the server on its folder and port, waiting until it answers.
    fn restart(&mut self) {
        let port = self.port.to_string();
        let ports: &[&str] =
            if self.tls { &["--port", "0", "--tls-port", &port] } else { &["--port", &port] };
        let child = Process::new("redis-server")
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (the test command installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: whatever the server had not written to its AOF is gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn settings(&self) -> RedisSettings {
        RedisSettings {
            url: format!("redis://127.0.0.1:{}", self.port),
            prefix: "test".into(),
            wait_replicas: None,
            ca_file: None,
        }
    }

    async fn queue(&self) -> Queue {
        Queue::Redis(RedisQueue::connect(self.settings()).await.unwrap())
    }

    fn aof_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn send(from: &str, cid: &str) -> Command {
    Command::Send {
        conv: "g:test".into(),
        from: from.into(),
        device: "d".into(),
        cid: cid.into(),
        body: dolphin_protocol::Body::Text { text: cid.into() },
        ts: 0,
    }
}

fn cid_of(entry: &InboxEntry) -> String {
    match &entry.command {
        Command::Send { cid, .. } => cid.clone(),
        other => panic!("unexpected command {other:?}"),
    }
}

/// Reads batches until `count` entries arrived or nothing more comes.
async fn drain(consumer: &mut dolphin_queue::Consumer, count: usize) -> Vec<InboxEntry> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < count && Instant::now() < deadline {
        out.extend(consumer.next_batch(100).await.unwrap());
    }
    out
}

#[tokio::test]
async fn concurrent_pushes_are_consumed_in_the_order_redis_took_them() {
    let redis = Redis::start();
    let queue = redis.queue().await;
    let mut tasks = Vec::new();
    for sender in 0..8 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..50 {
                ids.push(
                    queue
                        .push(3, &send(&format!("u{sender}"), &format!("{sender}-{n}")))
                        .await
                        .unwrap(),
                );
            }
            ids
        }));
    }
    let mut pushed = Vec::new();
    for task in tasks {
        let ids = task.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "one sender's entries are in its order");
        pushed.extend(ids);
    }
    pushed.sort();

    let mut consumer = queue.consumer(3, "replica-1").await.unwrap();
    let got = drain(&mut consumer, pushed.len()).await;
    let ids: Vec<EntryId> = got.iter().map(|e| e.id).collect();
    assert_eq!(ids, pushed, "every entry once, in stream order");
    // Each sender's cids come in the order that sender pushed them.
    let mut next: BTreeMap<String, u32> = BTreeMap::new();
    for entry in &got {
        let cid = cid_of(entry);
        let (sender, n) = cid.split_once('-').unwrap();
        let expected = next.entry(sender.to_owned()).or_default();
        assert_eq!(n.parse::<u32>().unwrap(), *expected, "{cid} out of order");
        *expected += 1;
    }
    assert_eq!(consumer.pending().await.unwrap(), 400, "nothing is acknowledged before apply");
    consumer.ack(&ids).await.unwrap();
    assert_eq!(consumer.pending().await.unwrap(), 0);
}

#[tokio::test]
async fn reads_of_one_entry_and_reads_that_time_out_are_understood() {
    // A leader under light load reads one entry at a time, and often nothing: both shapes of
    // reply, and a pending list of one, must come back as entries, never as an error.
    let redis = Redis::start();
    let queue = redis.queue().await;
    let mut consumer = queue.consumer(2, "replica-1").await.unwrap();
    assert!(consumer.next_batch(10).await.unwrap().is_empty(), "an empty read is no entries");
    for n in 0..4 {
        let id = queue.push(2, &send("a", &format!("one-{n}"))).await.unwrap();
        let got = drain(&mut consumer, 1).await;
        assert_eq!(got.iter().map(cid_of).collect::<Vec<_>>(), [format!("one-{n}")]);
        assert_eq!(got[0].id, id);
        if n < 3 {
            consumer.ack(&[id]).await.unwrap();
        }
    }
    drop(consumer);
    let mut next = queue.consumer(2, "replica-2").await.unwrap();
    let claimed = next.claim_pending(10).await.unwrap();
    assert_eq!(claimed.iter().map(cid_of).collect::<Vec<_>>(), ["one-3"]);
}

/// Lag and pending counts as entries are pushed, read and acknowledged.
async fn lag_and_pending_follow_reads_and_acks(queue: Queue) {
    let mut consumer = queue.consumer(4, "replica-1").await.unwrap();
    assert_eq!(consumer.lag().await.unwrap(), Some(0));
    for n in 0..5 {
        queue.push(4, &send("a", &format!("lag-{n}"))).await.unwrap();
    }
    assert_eq!(consumer.lag().await.unwrap(), Some(5), "nothing read yet");
    let got = consumer.next_batch(2).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(consumer.lag().await.unwrap(), Some(3));
    assert_eq!(consumer.pending().await.unwrap(), 2);
    consumer.ack(&[got[0].id]).await.unwrap();
    assert_eq!(consumer.pending().await.unwrap(), 1);
}

#[tokio::test]
async fn lag_and_pending_are_counted_on_redis() {
    let redis = Redis::start();
    lag_and_pending_follow_reads_and_acks(redis.queue().await).await;
}

#[tokio::test]
async fn lag_and_pending_are_counted_on_the_embedded_queue() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dolphin_queue::embedded::EmbeddedQueue::open(&dir.path().join("q.redb"), 5);
    lag_and_pending_follow_reads_and_acks(Queue::Embedded(queue.unwrap())).await;
}

#[tokio::test]
async fn a_new_consumer_takes_over_what_a_dead_one_left_pending_once_each() {
    let redis = Redis::start();
    let queue = redis.queue().await;
    for n in 0..10 {
        queue.push(0, &send("a", &format!("{n}"))).await.unwrap();
    }
    // The first leader reads everything, acknowledges the first three, then dies.
    {
        let mut first = queue.consumer(0, "replica-1").await.unwrap();
        let got = drain(&mut first, 10).await;
        assert_eq!(got.len(), 10);
        first.ack(&[got[0].id, got[1].id, got[2].id]).await.unwrap();
    }
    for n in 10..15 {
        queue.push(0, &send("a", &format!("{n}"))).await.unwrap();
    }

    // The next one claims the seven left pending, in small batches, without any repeat, then
    // reads the five that came later.
    let mut second = queue.consumer(0, "replica-2").await.unwrap();
    let mut seen = second.claim_pending(3).await.unwrap();
    assert_eq!(seen.len(), 3);
    seen.extend(drain(&mut second, 12 - 3).await);
    let cids: Vec<String> = seen.iter().map(cid_of).collect();
    let expected: Vec<String> = (3..15).map(|n| n.to_string()).collect();
    assert_eq!(cids, expected, "pending entries first, then new ones, each once");
    assert_eq!(second.pending().await.unwrap(), 12);
}

#[tokio::test]
async fn trimming_removes_only_entries_below_the_floor_and_claims_skip_trimmed_ones() {
    let redis = Redis::start();
    let queue = redis.queue().await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(queue.push(1, &send("a", &format!("{n}"))).await.unwrap());
    }
    {
        let mut first = queue.consumer(1, "replica-1").await.unwrap();
        assert_eq!(drain(&mut first, 6).await.len(), 6);
        // Every replica applied the first four; the leader dies before acknowledging them.
        first.trim_below(ids[4]).await.unwrap();
    }
    let mut second = queue.consumer(1, "replica-2").await.unwrap();
    let claimed = second.claim_pending(100).await.unwrap();
    let cids: Vec<String> = claimed.iter().map(cid_of).collect();
    assert_eq!(cids, ["4", "5"], "trimmed entries are gone, the rest comes back");
    second.ack(&[ids[4], ids[5]]).await.unwrap();
    assert_eq!(second.pending().await.unwrap(), 0, "trimmed pending entries were acknowledged");
}

#[tokio::test]
async fn pushes_fail_with_unavailable_while_redis_is_down_and_work_again_after() {
    let mut redis = Redis::start();
    let queue = redis.queue().await;
    queue.push(0, &send("a", "before")).await.unwrap();
    redis.kill();
    let started = Instant::now();
    let refused = queue.push(0, &send("a", "during")).await;
    assert!(matches!(refused, Err(QueueError::Unavailable(_))), "got {refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the refusal came promptly");
    let deadline = Instant::now() + Duration::from_secs(3);
    while queue.is_available() {
        assert!(Instant::now() < deadline, "the queue still says it is available");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match queue.push(0, &send("a", "after")).await {
            Ok(_) => break,
            Err(QueueError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the queue did not come back: {error}"),
        }
    }
    assert!(queue.is_available());
    let mut consumer = queue.consumer(0, "replica-1").await.unwrap();
    let cids: Vec<String> = drain(&mut consumer, 2).await.iter().map(cid_of).collect();
    assert_eq!(cids, ["before", "after"], "what was refused is not in the queue");
}

#[tokio::test]
async fn a_password_in_the_url_is_used_and_a_wrong_one_is_refused() {
    let redis = Redis::start_with(&["--requirepass", "s3cret"]);
    let with = |password: &str| RedisSettings {
        url: format!("redis://:{password}@127.0.0.1:{}", redis.port),
        ..redis.settings()
    };
    let queue = Queue::Redis(RedisQueue::connect(with("s3cret")).await.unwrap());
    let id = queue.push(0, &send("a", "let-in")).await.unwrap();
    let mut consumer = queue.consumer(0, "replica-1").await.unwrap();
    let got = drain(&mut consumer, 1).await;
    assert_eq!((got[0].id, cid_of(&got[0])), (id, "let-in".to_owned()));

    let refused = RedisQueue::connect(with("wrong")).await;
    assert!(
        matches!(refused, Err(QueueError::Unavailable(ref m)) if m.contains("WRONGPASS")),
        "got {refused:?}"
    );
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Process::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (the test command installs it)");
    assert!(status.success(), "openssl {args:?} failed");
}

#[tokio::test]
async fn tls_with_a_private_ca_works_and_an_untrusted_server_is_refused() {
    // A private CA and a server certificate for 127.0.0.1, as a private cloud would issue.
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    let subject = |cn: &str| format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            &subject("dolphin-test-ca"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            &subject("127.0.0.1"),
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
            "-subj",
            &subject("another-ca"),
        ],
    );

    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let redis = Redis::start_tls(&[
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    let settings = |ca: &str| RedisSettings {
        url: format!("rediss://127.0.0.1:{}", redis.port),
        ca_file: Some(dir.join(ca)),
        ..redis.settings()
    };
    let queue = Queue::Redis(RedisQueue::connect(settings("ca.crt")).await.unwrap());
    let id = queue.push(1, &send("a", "over-tls")).await.unwrap();
    let mut consumer = queue.consumer(1, "replica-1").await.unwrap();
    let got = drain(&mut consumer, 1).await;
    assert_eq!((got[0].id, cid_of(&got[0])), (id, "over-tls".to_owned()));

    let untrusted = RedisQueue::connect(settings("other.crt")).await;
    assert!(matches!(untrusted, Err(QueueError::Unavailable(_))), "got {untrusted:?}");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let unusable = RedisQueue::connect(settings("empty.pem")).await;
    assert!(matches!(unusable, Err(QueueError::Tls(_))), "got {unusable:?}");
}

#[tokio::test]
async fn every_acknowledged_push_survives_a_sigkill_of_redis() {
    let mut redis = Redis::start();
    let queue = redis.queue().await;
    let mut tasks = Vec::new();
    for sender in 0..4 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut taken = 0u32;
            for n in 0..100 {
                if queue.push(2, &send("a", &format!("{sender}-{n}"))).await.is_ok() {
                    taken += 1;
                }
            }
            taken
        }));
    }
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap();
    }
    assert_eq!(taken, 400);
    redis.kill();
    assert!(redis.aof_dir().read_dir().unwrap().next().is_some(), "redis wrote its AOF");
    redis.restart();

    let queue = redis.queue().await;
    let mut consumer = queue.consumer(2, "replica-1").await.unwrap();
    assert_eq!(drain(&mut consumer, 400).await.len(), 400, "every push Redis took is still there");
}

//! `dolphin dev` killed with SIGKILL in the middle of concurrent sends loses no accepted
//! message, and seqs stay dense after it starts again on the same folder.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolphin_client::{Client, ClientConfig};
use dolphin_protocol::Body;
use tokio::process::Child;

#[path = "support/process.rs"]
mod process;

const WAIT: Duration = Duration::from_secs(20);

struct Running {
    child: Child,
    url: String,
}

/// Starts the real binary on a free port and waits for its "running" line.
async fn start(data: &std::path::Path) -> Running {
    let args = ["--send-rate", "100000", "--send-burst", "100000"];
    let (child, addr) = process::start_dev(data, &args, &[], WAIT).await;
    Running { child, url: format!("ws://{addr}") }
}

fn token(data: &std::path::Path, user: &str) -> String {
    let secret = std::fs::read_to_string(data.join("jwt-secret")).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    dolphin_edge::auth::issue(secret.as_bytes(), user, now, 3600).unwrap()
}

async fn connect(running: &Running, data: &std::path::Path, user: &str, device: &str) -> Client {
    let mut config = ClientConfig::new(running.url.clone(), token(data, user), device);
    config.reconnect = false;
    Client::connect(config).await.expect("client connects").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_sends_loses_no_accepted_message() {
    let data = tempfile::tempdir().unwrap();
    let mut running = start(data.path()).await;

    let owner = connect(&running, data.path(), "u0", "setup").await;
    let group = owner.create_group("crash", &["u1", "u2", "u3", "u4", "u5"]).await.unwrap();
    let convs =
        vec![group.clone(), "d:u0:u1".to_owned(), "d:u2:u3".to_owned(), "d:u4:u5".to_owned()];

    // Six senders on three conversations each, until the process dies under them.
    let accepted: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let (enough_tx, mut enough) = tokio::sync::mpsc::channel::<()>(1);
    let mut senders = Vec::new();
    for i in 0..6 {
        let user = format!("u{i}");
        let client = connect(&running, data.path(), &user, "phone").await;
        let mine: Vec<String> = convs
            .iter()
            .filter(|c| c.starts_with("g:") || c.contains(&format!(":{user}")))
            .cloned()
            .collect();
        let accepted = accepted.clone();
        let enough_tx = enough_tx.clone();
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let conv = &mine[n % mine.len()];
                let cid = format!("{user}-{n}");
                let body = Body::Text { text: cid.clone() };
                match client.send_with_cid(conv, &cid, body).await {
                    Ok(()) => {
                        let total = {
                            let mut accepted = accepted.lock().unwrap();
                            accepted.insert((user.clone(), cid));
                            accepted.len()
                        };
                        if total == 300 {
                            let _ = enough_tx.try_send(());
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::timeout(WAIT, enough.recv()).await.expect("300 sends were not accepted in time");
    running.child.start_kill().unwrap();
    running.child.wait().await.unwrap();
    for sender in senders {
        tokio::time::timeout(WAIT, sender).await.expect("a sender hung after the kill").unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(accepted.len() >= 300);

    // `accepted` means in the queue file: after the restart the leader orders what the queue
    // still holds, so the check reads until every accepted message is there, or gives up.
    let running = start(data.path()).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let stored = loop {
        let stored = stored_messages(&running, data.path(), &convs).await;
        if accepted.iter().all(|key| stored.contains_key(key))
            || std::time::Instant::now() >= deadline
        {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for key in &accepted {
        assert_eq!(stored.get(key), Some(&1), "accepted message {key:?} is stored exactly once");
    }
    assert!(stored.values().all(|n| *n == 1), "no message is stored twice");
}

/// How many times each (sender, cid) of a text message is stored in `convs`, read from seq 1,
/// checking that seqs are dense.
async fn stored_messages(
    running: &Running,
    data: &std::path::Path,
    convs: &[String],
) -> BTreeMap<(String, String), u32> {
    let mut stored: BTreeMap<(String, String), u32> = BTreeMap::new();
    for conv in convs {
        let reader = if conv.starts_with("g:") {
            "u0".to_owned()
        } else {
            conv[2..].split(':').next().unwrap().to_owned()
        };
        let client = connect(running, data, &reader, "checker").await;
        let mut after = 0;
        loop {
            let page = client.fetch_after(conv, after, 500).await.unwrap();
            for message in &page.messages {
                assert_eq!(message.seq, after + 1, "seqs of {conv} are dense");
                after = message.seq;
                if let Body::Text { .. } = message.body {
                    *stored.entry((message.from.clone(), message.cid.clone())).or_default() += 1;
                }
            }
            if page.messages.is_empty() || after == page.max_seq {
                assert_eq!(after, page.max_seq);
                break;
            }
        }
        client.close().await;
    }
    stored
}

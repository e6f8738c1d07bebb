//! Clients that send and listen while a test breaks things, and the checker that verifies the
//! protocol's guarantees from everything they recorded.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dolphin_client::{Client, ClientConfig, ClientError, ClientEvent};
use dolphin_protocol::{Body, Message};
use tokio::task::JoinHandle;

/// What one sender saw.
#[derive(Debug, Default)]
pub struct SenderLog {
    pub user: String,
    /// (conv, cid) of every accepted message.
    pub accepted: Vec<(String, String)>,
    /// Failed sends by error code (or `client` for connection-level failures).
    pub errors: BTreeMap<String, u64>,
}

/// Every message a client received, in the order the client library handed them over.
#[derive(Debug, Default)]
pub struct Received {
    pub user: String,
    pub messages: Vec<Message>,
}

/// A group of clients sending and receiving in the background.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub accepted_total: Arc<AtomicU64>,
    senders: Vec<JoinHandle<SenderLog>>,
    receivers: Vec<(Client, JoinHandle<Received>)>,
}

/// One sender: a user, where it connects, the conversations it writes to in turn.
pub struct SenderSpec {
    pub user: String,
    pub url: String,
    /// Other edges to reconnect to when `url` is gone.
    pub fallback_urls: Vec<String>,
    pub token: String,
    pub convs: Vec<String>,
}

impl Load {
    /// Connects every sender and starts sending, one message every `pause` per sender.
    pub async fn start(specs: Vec<SenderSpec>, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted_total = Arc::new(AtomicU64::new(0));
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for spec in specs {
            let mut config = ClientConfig::new(spec.url.clone(), spec.token.clone(), "load");
            config.max_backoff = Duration::from_millis(300);
            config.fallback_urls = spec.fallback_urls.clone();
            let (client, mut events) = Client::connect(config).await.expect("load client connects");
            let user = spec.user.clone();
            let listener = tokio::spawn(async move {
                let mut received = Received { user, messages: Vec::new() };
                while let Some(event) = events.recv().await {
                    if let ClientEvent::Message(message) = event {
                        received.messages.push(message);
                    }
                }
                received
            });
            receivers.push((client.clone(), listener));
            let stop = stop.clone();
            let accepted_total = accepted_total.clone();
            senders.push(tokio::spawn(async move {
                let mut log = SenderLog { user: spec.user.clone(), ..Default::default() };
                let mut n = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let conv = spec.convs[n % spec.convs.len()].clone();
                    let cid = format!("{}-{n}", spec.user);
                    n += 1;
                    let body = Body::Text { text: cid.clone() };
                    let send = client.send_with_cid(&conv, &cid, body);
                    match tokio::time::timeout(Duration::from_secs(20), send).await {
                        Ok(Ok(())) => {
                            log.accepted.push((conv, cid));
                            accepted_total.fetch_add(1, Ordering::AcqRel);
                        }
                        Ok(Err(ClientError::Server { code, .. })) => {
                            *log.errors.entry(code.as_str().to_owned()).or_default() += 1;
                        }
                        Ok(Err(_)) | Err(_) => *log.errors.entry("client".into()).or_default() += 1,
                    }
                    tokio::time::sleep(pause).await;
                }
                log
            }));
        }
        Load { stop, accepted_total, senders, receivers }
    }

    /// Waits until `more` further messages were accepted, or fails after `within`.
    pub async fn wait_accepted(&self, more: u64, within: Duration, what: &str) {
        let target = self.accepted_total.load(Ordering::Acquire) + more;
        let waited = tokio::time::timeout(within, async {
            while self.accepted_total.load(Ordering::Acquire) < target {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "{more} more messages were not accepted in time {what}");
    }

    /// Stops sending; returns what every sender saw. Receivers keep listening.
    pub async fn stop_sending(&mut self) -> Vec<SenderLog> {
        self.stop.store(true, Ordering::Release);
        let mut logs = Vec::new();
        for sender in self.senders.drain(..) {
            let log = tokio::time::timeout(Duration::from_secs(30), sender)
                .await
                .expect("a sender hung after being told to stop")
                .expect("a sender panicked");
            logs.push(log);
        }
        logs
    }

    /// Closes every client; returns what each received.
    pub async fn finish(&mut self) -> Vec<Received> {
        let mut all = Vec::new();
        for (client, listener) in self.receivers.drain(..) {
            client.close().await;
            let received = tokio::time::timeout(Duration::from_secs(10), listener)
                .await
                .expect("a receiver did not stop after close")
                .expect("a receiver panicked");
            all.push(received);
        }
        all
    }
}

/// Checks that every receiver got every message of each conversation it heard from, from the
/// first it got to the last stored: nothing missed across reconnects.
pub fn check_complete(stored: &BTreeMap<String, Vec<Message>>, receivers: &[Received]) {
    for received in receivers {
        let mut seqs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for message in received.messages.iter().filter(|m| stored.contains_key(&m.conv)) {
            seqs.entry(&message.conv).or_default().push(message.seq);
        }
        for (conv, seqs) in seqs {
            let first = seqs[0];
            let expected: Vec<u64> = (first..=stored[conv].len() as u64).collect();
            assert_eq!(seqs, expected, "{} missed messages of {conv}", received.user);
        }
    }
}

/// Checks the guarantees against the final content of every conversation (`stored`, read
/// with fetch from seq 1), what senders were told, and what receivers were pushed.
pub fn check(
    stored: &BTreeMap<String, Vec<Message>>,
    senders: &[SenderLog],
    receivers: &[Received],
) {
    // Dense order: seqs are exactly 1..=n.
    for (conv, messages) in stored {
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(message.seq, i as u64 + 1, "seqs of {conv} are dense");
        }
    }
    // One message per (sender, conv, cid).
    let mut seen = BTreeSet::new();
    for (conv, messages) in stored {
        for message in messages {
            if matches!(message.body, Body::Text { .. }) {
                let key = (conv.clone(), message.from.clone(), message.cid.clone());
                assert!(seen.insert(key.clone()), "{key:?} is stored twice");
            }
        }
    }
    // Accepted is kept.
    let mut accepted = 0;
    for log in senders {
        for (conv, cid) in &log.accepted {
            let key = (conv.clone(), log.user.clone(), cid.clone());
            assert!(seen.contains(&key), "accepted message {key:?} is missing");
            accepted += 1;
        }
    }
    assert!(accepted > 0, "nothing was accepted: the test proves nothing");
    // Every member saw the same message at each seq, and in order per conversation (of the
    // conversations under test: setup may have made others).
    for received in receivers {
        let mut last: BTreeMap<&str, u64> = BTreeMap::new();
        for message in received.messages.iter().filter(|m| stored.contains_key(&m.conv)) {
            let stored_message = stored
                .get(&message.conv)
                .and_then(|m| m.get(message.seq as usize - 1))
                .unwrap_or_else(|| {
                    panic!(
                        "{} got {}#{} which is not stored",
                        received.user, message.conv, message.seq
                    )
                });
            assert_eq!(
                message, stored_message,
                "{} saw a different message at this seq",
                received.user
            );
            let previous = last.insert(&message.conv, message.seq);
            assert!(
                previous.is_none_or(|p| p < message.seq),
                "{} got {} out of order",
                received.user,
                message.conv
            );
        }
    }
}

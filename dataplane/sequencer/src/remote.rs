//! Reaching a shard whose replicas run in other processes: finding the leader, retrying when
//! it moves, and following the events it applies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dolphin_state::{Applied, Command};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::debug;

use crate::admin::Status;
use crate::error::ShardError;
use crate::network::RPC_CONTENT_TYPE;
use crate::query::{Answer, Query};
use crate::server::{STREAM_HEARTBEAT, StreamItem};

/// How long a request keeps looking for a leader before it is `unavailable`: a few election
/// timeouts, so that a leader change is hidden from clients and a lost quorum is not.
pub const LEADER_WAIT: Duration = Duration::from_secs(3);

/// The longest a single call to a replica may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest event stream frame accepted (a batch of 512 messages of 64 KiB each fits).
const MAX_STREAM_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug)]
struct Inner {
    shard: u32,
    replicas: RwLock<Vec<String>>,
    leader: RwLock<Option<String>>,
    next: AtomicUsize,
    client: reqwest::Client,
}

/// A shard reached over HTTP. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RemoteShard {
    inner: Arc<Inner>,
}

/// How a call to one replica ended.
enum Attempt<T> {
    /// Answered; by the leader at the address given, if a follower forwarded the request.
    Done(Result<T, ShardError>, Option<String>),
    /// The request surely did not reach the shard (no connection, or a follower refused it):
    /// trying elsewhere cannot apply it twice.
    NotSent(Option<String>),
    /// The request may or may not have reached the shard.
    Unknown(String),
}

impl RemoteShard {
    /// A shard with replicas at `addrs` (`host:port`).
    pub fn new(shard: u32, addrs: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        RemoteShard {
            inner: Arc::new(Inner {
                shard,
                replicas: RwLock::new(addrs),
                leader: RwLock::new(None),
                next: AtomicUsize::new(0),
                client,
            }),
        }
    }

    /// The shard's id.
    pub fn shard(&self) -> u32 {
        self.inner.shard
    }

    /// Replaces the replica addresses (the topology changed).
    pub fn set_replicas(&self, addrs: Vec<String>) {
        *write(&self.inner.replicas) = addrs;
    }

    /// The replica addresses.
    pub fn replicas(&self) -> Vec<String> {
        read(&self.inner.replicas).clone()
    }

    /// The replica to try next: the known leader, else the replicas in turn.
    fn target(&self) -> Option<String> {
        if let Some(leader) = read(&self.inner.leader).clone() {
            return Some(leader);
        }
        let replicas = read(&self.inner.replicas);
        if replicas.is_empty() {
            return None;
        }
        let at = self.inner.next.fetch_add(1, Ordering::Relaxed) % replicas.len();
        Some(replicas[at].clone())
    }

    fn set_leader(&self, leader: Option<String>) {
        *write(&self.inner.leader) = leader;
    }

    async fn attempt<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Req,
    ) -> Attempt<Resp> {
        let body = match rmp_serde::to_vec_named(request) {
            Ok(body) => body,
            Err(error) => return Attempt::Done(Err(ShardError::Storage(error.to_string())), None),
        };
        let sent = self
            .inner
            .client
            .post(format!("http://{addr}{path}"))
            .header(reqwest::header::CONTENT_TYPE, RPC_CONTENT_TYPE)
            .timeout(CALL_TIMEOUT)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.is_connect() => return Attempt::NotSent(None),
            Err(error) => return Attempt::Unknown(error.to_string()),
        };
        let served_by = response
            .headers()
            .get(crate::server::LEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return Attempt::Unknown(error.to_string()),
        };
        match rmp_serde::from_slice::<Result<Resp, ShardError>>(&bytes) {
            Ok(Err(ShardError::NotLeader { leader })) => {
                Attempt::NotSent(leader.map(|(_, addr)| addr))
            }
            Ok(result) => Attempt::Done(result, served_by),
            Err(error) => Attempt::Unknown(format!("failed to decode the answer: {error}")),
        }
    }

    /// Calls the leader, following its moves for up to [`LEADER_WAIT`]. `idempotent` requests
    /// are also retried when it is unknown whether an attempt reached the shard.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
        idempotent: bool,
    ) -> Result<Resp, ShardError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            let Some(addr) = self.target() else {
                return Err(ShardError::Unavailable(format!(
                    "shard {} has no replicas",
                    self.shard()
                )));
            };
            let failure = match self.attempt::<Req, Resp>(&addr, path, request).await {
                Attempt::Done(Ok(answer), served_by) => {
                    self.set_leader(Some(served_by.unwrap_or(addr)));
                    return Ok(answer);
                }
                Attempt::Done(Err(error), _) => {
                    if !(idempotent && matches!(error, ShardError::Unavailable(_))) {
                        return Err(error);
                    }
                    self.set_leader(None);
                    error.to_string()
                }
                Attempt::NotSent(hint) => {
                    let moved = hint.is_some();
                    self.set_leader(hint);
                    if moved {
                        continue;
                    }
                    format!("replica {addr} refused or is unreachable")
                }
                Attempt::Unknown(error) if idempotent => {
                    self.set_leader(None);
                    error
                }
                Attempt::Unknown(error) => {
                    self.set_leader(None);
                    return Err(ShardError::Unavailable(format!(
                        "lost the answer of replica {addr}: {error}"
                    )));
                }
            };
            if Instant::now() + pause >= deadline {
                return Err(ShardError::Unavailable(format!(
                    "shard {} has no reachable leader: {failure}",
                    self.shard()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Proposes a command to the leader and waits for its result.
    pub async fn submit(&self, command: &Command) -> Result<Applied, ShardError> {
        self.call("/v1/shard/submit", command, false).await
    }

    /// Answers a query at the leader.
    pub async fn query(&self, query: &Query) -> Result<Answer, ShardError> {
        self.call("/v1/shard/query", query, true).await
    }

    /// The status one replica reports.
    pub async fn status(&self, addr: &str) -> Result<Status, ShardError> {
        let response = self
            .inner
            .client
            .get(format!("http://{addr}/admin/status"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .map_err(|e| ShardError::Unavailable(e.to_string()))?;
        response.json().await.map_err(|e| ShardError::Unavailable(e.to_string()))
    }

    /// Whether the shard has a leader that a quorum acknowledged within `within`, asking the
    /// known leader first and the replicas in turn after.
    pub async fn writable(&self, within: Duration) -> bool {
        let fresh = |status: &Status| {
            status.role == "leader"
                && (status.voters.len() == 1
                    || status.quorum_ack_ms.is_some_and(|ms| ms <= within.as_millis() as u64))
        };
        let known = read(&self.inner.leader).clone();
        if let Some(addr) = known
            && let Ok(status) = self.status(&addr).await
            && status.role == "leader"
        {
            return fresh(&status);
        }
        match self.find_leader().await {
            Some(addr) => self.status(&addr).await.is_ok_and(|status| fresh(&status)),
            None => false,
        }
    }

    /// Asks the replicas who leads, and remembers the answer.
    pub async fn find_leader(&self) -> Option<String> {
        for addr in self.replicas() {
            if let Ok(status) = self.status(&addr).await
                && let Some(leader) = status.leader_addr
            {
                self.set_leader(Some(leader.clone()));
                return Some(leader);
            }
        }
        None
    }

    /// Follows the events the shard applies, from after log index `after`, switching replicas
    /// when the one followed goes away and resuming where it left off. Items arrive in log
    /// order; the task stops when the receiver is dropped.
    pub fn follow(&self, after: Option<u64>) -> mpsc::Receiver<StreamItem> {
        let (tx, rx) = mpsc::channel(256);
        let shard = self.clone();
        tokio::spawn(async move { shard.follow_into(after, tx).await });
        rx
    }

    async fn follow_into(&self, mut after: Option<u64>, tx: mpsc::Sender<StreamItem>) {
        let mut failures = 0u32;
        loop {
            let addr = match self.find_leader().await {
                Some(addr) => addr,
                None => match self.target() {
                    Some(addr) => addr,
                    None => return,
                },
            };
            let mut url = format!("http://{addr}/v1/shard/events");
            if let Some(after) = after {
                url.push_str(&format!("?after={after}"));
            }
            match self.inner.client.get(&url).send().await {
                Ok(response) if response.status().is_success() => {
                    failures = 0;
                    let body = tokio_util::io::StreamReader::new(
                        response.bytes_stream().map(|r| r.map_err(std::io::Error::other)),
                    );
                    let mut frames = FramedRead::new(
                        body,
                        LengthDelimitedCodec::builder()
                            .max_frame_length(MAX_STREAM_FRAME)
                            .new_codec(),
                    );
                    loop {
                        let next = tokio::time::timeout(STREAM_HEARTBEAT * 3, frames.next()).await;
                        let Ok(Some(Ok(frame))) = next else { break };
                        let Ok(item) = rmp_serde::from_slice::<StreamItem>(&frame) else { break };
                        match &item {
                            StreamItem::Events { index, .. } => after = Some(*index),
                            StreamItem::Gap { oldest, .. } => after = Some(*oldest),
                            StreamItem::Heartbeat { position } => {
                                after = Some(*position);
                                continue;
                            }
                        }
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    debug!(shard = self.shard(), %addr, "event stream ended; resuming elsewhere");
                    self.set_leader(None);
                }
                _ => {
                    failures += 1;
                    self.set_leader(None);
                }
            }
            if tx.is_closed() {
                return;
            }
            let pause = Duration::from_millis(50).saturating_mul(1 << failures.min(5));
            tokio::time::sleep(pause.min(Duration::from_secs(1))).await;
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Held only to copy a value out; never across an await.
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

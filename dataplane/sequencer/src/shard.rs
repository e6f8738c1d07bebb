//! One replica of a shard: Raft, its storage, a proposal batcher and reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolphin_state::{Applied, Command, StateError};
use dolphin_topology::ShardId;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftNetworkFactory};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use crate::error::ShardError;
use crate::event_log::{EventLog, Subscription};
use crate::log_store::LogStore;
use crate::metrics::SequencerMetrics;
use crate::redb_kv::ReadKv;
use crate::snapshot::SnapshotDir;
use crate::state_machine::{Durable, StateMachine};
use crate::types::{Batch, NodeId, Raft, TypeConfig};

/// The most commands proposed in one log entry.
pub const MAX_BATCH: usize = 512;

/// The most batches proposed and not yet applied. Bounds the memory held by slow commits and
/// makes callers wait (back-pressure) instead of queueing without end.
pub const MAX_BATCHES_IN_FLIGHT: usize = 32;

/// How one replica of a shard runs.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub shard: ShardId,
    pub replica: NodeId,
    /// This replica's own folder: log, state and snapshots.
    pub data_dir: PathBuf,
    /// The address other replicas reach this one at (`host:port`).
    pub addr: String,
    pub raft: openraft::Config,
    /// How long a write or read waits for the shard before answering `unavailable`.
    pub request_timeout: Duration,
}

impl ShardConfig {
    /// Raft timings for replicas on one machine or one data-centre network: heartbeats every
    /// 100 ms, elections after 500 to 1000 ms of silence, a snapshot every 20,000 entries
    /// keeping 5,000 behind it for followers that lag a little.
    pub fn default_raft(shard: ShardId) -> openraft::Config {
        openraft::Config {
            cluster_name: format!("dolphin-shard-{shard}"),
            heartbeat_interval: 100,
            election_timeout_min: 500,
            election_timeout_max: 1000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
            max_in_snapshot_log_to_keep: 5_000,
            max_payload_entries: 64,
            ..Default::default()
        }
    }
}

struct Proposal {
    command: Command,
    reply: oneshot::Sender<Result<Applied, ShardError>>,
}

/// One running replica of a shard.
pub struct Shard {
    pub id: ShardId,
    pub replica: NodeId,
    addr: String,
    raft: Raft,
    state: Arc<redb::Database>,
    proposals: mpsc::Sender<Proposal>,
    events: EventLog,
    request_timeout: Duration,
    /// Set while leadership moves away; writes are refused meanwhile so that no new entry
    /// keeps the followers from electing another leader.
    stepping_down: std::sync::atomic::AtomicBool,
    metrics: SequencerMetrics,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).field("replica", &self.replica).finish()
    }
}

impl Shard {
    /// Opens the replica's storage in its folder and starts Raft. The replica takes part in
    /// elections once it belongs to a membership, through [`Shard::bootstrap`] or a leader
    /// that adds it.
    pub async fn open<N>(
        config: ShardConfig,
        network: N,
        metrics: SequencerMetrics,
    ) -> Result<Arc<Shard>, ShardError>
    where
        N: RaftNetworkFactory<TypeConfig>,
    {
        let storage = |e: &dyn std::fmt::Display| ShardError::Storage(e.to_string());
        std::fs::create_dir_all(&config.data_dir).map_err(|e| storage(&e))?;
        let durable = Durable::default();
        let log = LogStore::open(&config.data_dir.join("raft-log.redb"), durable.clone())
            .map_err(|e| storage(&e))?;
        let snapshots =
            SnapshotDir::new(config.data_dir.join("snapshots")).map_err(|e| storage(&e))?;
        let events = EventLog::default();
        let machine = StateMachine::open(
            &config.data_dir.join("state.redb"),
            snapshots,
            events.clone(),
            metrics.clone(),
            durable,
        )
        .map_err(|e| storage(&e))?;
        let state = machine.database();
        let raft_config = Arc::new(config.raft.validate().map_err(|e| storage(&e))?);
        let raft = Raft::new(config.replica, raft_config, network, log, machine)
            .await
            .map_err(|e| storage(&e))?;

        tokio::spawn(watch_raft(raft.clone(), config.shard, config.replica, metrics.clone()));

        let (proposals, queue) = mpsc::channel(MAX_BATCH * 4);
        let span = info_span!("shard", shard = config.shard, replica = config.replica);
        tokio::spawn(batcher(raft.clone(), queue, metrics.clone()).instrument(span));

        Ok(Arc::new(Shard {
            id: config.shard,
            replica: config.replica,
            addr: config.addr,
            raft,
            state,
            proposals,
            events,
            request_timeout: config.request_timeout,
            stepping_down: Default::default(),
            metrics,
        }))
    }

    /// Makes a fresh shard's first membership: this replica alone, or every replica of
    /// `members`. Does nothing if the shard already has a membership, so it is safe to call on
    /// every start.
    pub async fn bootstrap(&self, members: &BTreeMap<NodeId, String>) -> Result<(), ShardError> {
        if self.raft.is_initialized().await.map_err(|e| ShardError::Unavailable(e.to_string()))? {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = if members.is_empty() {
            BTreeMap::from([(self.replica, BasicNode { addr: self.addr.clone() })])
        } else {
            members.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect()
        };
        match self.raft.initialize(nodes).await {
            Ok(()) => {
                info!(shard = self.id, replica = self.replica, "shard bootstrapped");
                Ok(())
            }
            // Another replica bootstrapped first, or this one already did: both are fine.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(ShardError::Unavailable(error.to_string())),
        }
    }

    /// Proposes a command and waits until it is applied, returning its result. Commands that
    /// arrive together are proposed together in one log entry.
    pub async fn submit(&self, command: Command) -> Result<Applied, ShardError> {
        if self.stepping_down.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ShardError::NotLeader { leader: None });
        }
        let (reply, receiver) = oneshot::channel();
        let wait = async {
            self.proposals
                .send(Proposal { command, reply })
                .await
                .map_err(|_| ShardError::Unavailable("shard is shutting down".into()))?;
            receiver.await.map_err(|_| ShardError::Unavailable("shard is shutting down".into()))?
        };
        tokio::time::timeout(self.request_timeout, wait)
            .await
            .map_err(|_| ShardError::Unavailable("timed out waiting for the shard".into()))?
    }

    /// Runs `query` on the state once every write committed before the call is applied here,
    /// so that a read never misses a message already pushed. Only the leader serves reads.
    pub async fn read<T>(
        &self,
        query: impl FnOnce(&ReadKv) -> Result<T, StateError<redb::Error>>,
    ) -> Result<T, ShardError> {
        let linearizable =
            tokio::time::timeout(self.request_timeout, self.raft.ensure_linearizable())
                .await
                .map_err(|_| ShardError::Unavailable("timed out confirming leadership".into()))?;
        if let Err(error) = linearizable {
            return Err(match error {
                RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(to)) => {
                    ShardError::NotLeader {
                        leader: to.leader_id.zip(to.leader_node.map(|n| n.addr)),
                    }
                }
                other => ShardError::Unavailable(other.to_string()),
            });
        }
        let kv = ReadKv::open(&self.state).map_err(|e| ShardError::Storage(e.to_string()))?;
        query(&kv).map_err(|e| ShardError::Storage(e.to_string()))
    }

    /// Runs `query` on what this replica has applied so far, without confirming leadership:
    /// possibly behind the leader. For work that tolerates a stale view (the outbox, whose
    /// forwards are idempotent).
    pub fn read_applied<T>(
        &self,
        query: impl FnOnce(&ReadKv) -> Result<T, StateError<redb::Error>>,
    ) -> Result<T, ShardError> {
        let kv = ReadKv::open(&self.state).map_err(|e| ShardError::Storage(e.to_string()))?;
        query(&kv).map_err(|e| ShardError::Storage(e.to_string()))
    }

    /// Follows the events this replica applies, from after log index `after` (`None`: from
    /// now).
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        self.events.subscribe(after)
    }

    pub(crate) fn set_stepping_down(&self, on: bool) {
        self.stepping_down.store(on, std::sync::atomic::Ordering::Release);
    }

    /// Proposes commands taken from the shard's inbox as one entry, in the order of the calls,
    /// and returns a future of their results. Only the leader proposes.
    pub async fn propose_inbox(
        &self,
        commands: Vec<Command>,
        upto: dolphin_queue::EntryId,
    ) -> Result<impl Future<Output = Result<Vec<Applied>, ShardError>> + use<>, ShardError> {
        for command in &commands {
            self.metrics.proposals.with_label_values(&[command.op()]).inc();
        }
        self.metrics.batch_size.observe(commands.len() as f64);
        let started = Instant::now();
        let pending = self
            .raft
            .client_write_ff(Batch { commands, inbox: Some(upto) })
            .await
            .map_err(|e| ShardError::Unavailable(e.to_string()))?;
        let metrics = self.metrics.clone();
        Ok(async move {
            match pending.await {
                Ok(Ok(response)) => {
                    metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    Ok(response.data.applied)
                }
                Ok(Err(ClientWriteError::ForwardToLeader(to))) => Err(ShardError::NotLeader {
                    leader: to.leader_id.zip(to.leader_node.map(|n| n.addr)),
                }),
                Ok(Err(other)) => Err(ShardError::Unavailable(other.to_string())),
                Err(_) => Err(ShardError::Unavailable("raft stopped".into())),
            }
        })
    }

    /// How far this replica has applied the shard's inbox.
    pub fn inbox_applied(&self) -> Option<dolphin_queue::EntryId> {
        crate::state_machine::inbox_applied(&self.state).ok().flatten()
    }

    /// The state database, for consistent reads of everything (digests).
    pub(crate) fn database(&self) -> Arc<redb::Database> {
        self.state.clone()
    }

    /// The log index up to which this replica has applied.
    pub fn applied_index(&self) -> u64 {
        self.events.applied()
    }

    /// Whether this replica leads and a quorum acknowledged it within `within`: whether
    /// writes proposed here can commit now.
    pub fn writable(&self, within: Duration) -> bool {
        let metrics = self.raft.metrics().borrow().clone();
        metrics.current_leader == Some(self.replica)
            && (metrics.membership_config.membership().voter_ids().count() == 1
                || metrics
                    .millis_since_quorum_ack
                    .is_some_and(|ms| ms <= within.as_millis() as u64))
    }

    /// The metrics this replica reports to.
    pub fn metrics(&self) -> &SequencerMetrics {
        &self.metrics
    }

    /// Whether this replica believes it leads its shard.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.replica)
    }

    /// The Raft handle, for the network server and the admin API.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Stops Raft; pending requests fail with `unavailable`.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            warn!(shard = self.id, %error, "raft did not stop cleanly");
        }
    }
}

/// Takes proposals off the queue, groups those waiting into one batch, and proposes it.
/// Results come back through each proposal's reply channel.
async fn batcher(raft: Raft, mut queue: mpsc::Receiver<Proposal>, metrics: SequencerMetrics) {
    let in_flight = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let mut proposals = vec![first];
        while proposals.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => proposals.push(next),
                Err(_) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
        let mut replies = Vec::with_capacity(proposals.len());
        let mut commands = Vec::with_capacity(proposals.len());
        for proposal in proposals {
            metrics.proposals.with_label_values(&[proposal.command.op()]).inc();
            commands.push(proposal.command);
            replies.push(proposal.reply);
        }
        metrics.batch_size.observe(commands.len() as f64);

        let started = Instant::now();
        let pending = match raft.client_write_ff(Batch { commands, inbox: None }).await {
            Ok(pending) => pending,
            Err(fatal) => {
                fail_all(replies, ShardError::Unavailable(fatal.to_string()));
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match pending.await {
                Ok(Ok(response)) => {
                    metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                    let mut results = response.data.applied.into_iter();
                    for reply in replies {
                        let result = results
                            .next()
                            .ok_or_else(|| ShardError::Storage("batch result too short".into()));
                        let _ = reply.send(result);
                    }
                }
                Ok(Err(ClientWriteError::ForwardToLeader(to))) => {
                    let leader = to.leader_id.zip(to.leader_node.map(|n| n.addr));
                    fail_all(replies, ShardError::NotLeader { leader });
                }
                Ok(Err(other)) => fail_all(replies, ShardError::Unavailable(other.to_string())),
                Err(_) => fail_all(replies, ShardError::Unavailable("raft stopped".into())),
            }
        });
    }
}

fn fail_all(replies: Vec<oneshot::Sender<Result<Applied, ShardError>>>, error: ShardError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

/// Keeps the Raft gauges of one replica current, until Raft shuts down.
async fn watch_raft(raft: Raft, shard: u32, replica: NodeId, metrics: SequencerMetrics) {
    let (shard, replica) = (shard.to_string(), replica.to_string());
    let labels = [shard.as_str(), replica.as_str()];
    let mut watch = raft.metrics();
    let mut leader = None;
    metrics.leader_changes.with_label_values(&labels);
    loop {
        let now = watch.borrow_and_update().clone();
        let role = match now.state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Shutdown => "shutdown",
        };
        for name in crate::metrics::ROLES {
            metrics.role.with_label_values(&[&shard, &replica, name]).set(i64::from(name == role));
        }
        metrics.term.with_label_values(&labels).set(now.current_term as i64);
        metrics
            .applied_index
            .with_label_values(&labels)
            .set(now.last_applied.map_or(0, |l| l.index) as i64);
        metrics
            .last_log_index
            .with_label_values(&labels)
            .set(now.last_log_index.unwrap_or(0) as i64);
        if now.current_leader.is_some() && now.current_leader != leader {
            if leader.is_some() {
                metrics.leader_changes.with_label_values(&labels).inc();
            }
            leader = now.current_leader;
        }
        if now.state == openraft::ServerState::Shutdown || watch.changed().await.is_err() {
            return;
        }
    }
}

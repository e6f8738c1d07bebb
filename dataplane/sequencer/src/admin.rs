//! What an operator (or the operator process) asks of a replica: its status, membership
//! changes, and moving leadership away before a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};

use crate::error::ShardError;
use crate::shard::Shard;
use crate::types::NodeId;

/// A replica's view of its shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub shard: u32,
    pub replica: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub leader_addr: Option<String>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Every member's address.
    pub nodes: BTreeMap<NodeId, String>,
    /// How far this replica has applied the shard's inbox (a queue entry id).
    #[serde(default)]
    pub inbox_applied: Option<String>,
    /// On a leader: milliseconds since a quorum last acknowledged it. A leader cut off from
    /// its quorum keeps its role for a while; this tells it apart.
    #[serde(default)]
    pub quorum_ack_ms: Option<u64>,
}

/// A fingerprint of a replica's whole state at one log index: replicas that applied the same
/// log have the same digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub applied_index: u64,
    /// SHA-256 over every entry of every state table, in order, as hex.
    pub sha256: String,
}

/// A replica to add as a learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLearner {
    pub id: NodeId,
    pub addr: String,
}

/// A replica to promote or remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRef {
    pub id: NodeId,
}

fn unavailable(error: impl std::fmt::Display) -> ShardError {
    ShardError::Unavailable(error.to_string())
}

impl Shard {
    /// The replica's current view of the shard.
    pub fn status(&self) -> Status {
        let metrics = self.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let nodes: BTreeMap<NodeId, String> =
            membership.nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        let role = match metrics.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        Status {
            shard: self.id,
            replica: self.replica,
            role: role.to_owned(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            leader_addr: metrics.current_leader.and_then(|id| nodes.get(&id).cloned()),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            applied_index: metrics.last_applied.map_or(0, |id| id.index),
            snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
            voters,
            learners,
            nodes,
            inbox_applied: self.inbox_applied().map(|id| id.to_string()),
            quorum_ack_ms: metrics.millis_since_quorum_ack,
        }
    }

    /// Hashes the whole state as of now, with the log index it reflects.
    pub async fn digest(&self) -> Result<Digest, ShardError> {
        use redb::ReadableDatabase as _;
        use sha2::Digest as _;
        let db = self.database();
        tokio::task::spawn_blocking(move || {
            let storage = |e: &dyn std::fmt::Display| ShardError::Storage(e.to_string());
            let txn = db.begin_read().map_err(|e| storage(&e))?;
            let applied = crate::state_machine::applied_index(&txn).map_err(|e| storage(&e))?;
            let kv = crate::redb_kv::ReadKv::from_txn(&txn).map_err(|e| storage(&e))?;
            let mut hasher = sha2::Sha256::new();
            for table in dolphin_state::Table::ALL {
                hasher.update(table.name().as_bytes());
                for item in kv.iter(table).map_err(|e| storage(&e))? {
                    let (key, value) = item.map_err(|e| storage(&e))?;
                    for part in [key.value(), value.value()] {
                        hasher.update((part.len() as u64).to_be_bytes());
                        hasher.update(part);
                    }
                }
            }
            let sha256 = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
            Ok(Digest { applied_index: applied, sha256 })
        })
        .await
        .map_err(|e| ShardError::Storage(e.to_string()))?
    }

    fn not_leader(&self) -> ShardError {
        let status = self.status();
        ShardError::NotLeader { leader: status.leader.zip(status.leader_addr) }
    }

    /// Adds a replica as a learner and waits until it has caught up with the log (by entries
    /// or by snapshot). Only the leader does this.
    pub async fn add_learner(&self, learner: NewLearner) -> Result<(), ShardError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        self.raft()
            .add_learner(learner.id, BasicNode { addr: learner.addr }, true)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Makes a caught-up learner a voter.
    pub async fn promote(&self, replica: ReplicaRef) -> Result<(), ShardError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([replica.id]));
        self.raft().change_membership(change, false).await.map_err(unavailable)?;
        Ok(())
    }

    /// Removes a replica from the shard altogether.
    pub async fn remove(&self, replica: ReplicaRef) -> Result<(), ShardError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let status = self.status();
        if status.voters.contains(&replica.id) {
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([replica.id]));
            self.raft().change_membership(change, false).await.map_err(unavailable)?;
        }
        let change = ChangeMembers::RemoveNodes(BTreeSet::from([replica.id]));
        self.raft().change_membership(change, false).await.map_err(unavailable)?;
        Ok(())
    }

    /// Moves leadership away from this replica: it stops heartbeats and stands out of
    /// elections until another voter leads, then takes part again. Writes are refused while it
    /// steps down. Does nothing on a replica that does not lead.
    ///
    /// NOTE: openraft 0.9 has no transfer to a chosen replica; which voter leads next is up
    /// to the election. Callers that need leadership off one replica (rolling restarts) need
    /// no more than this.
    pub async fn step_down(&self, within: Duration) -> Result<Option<NodeId>, ShardError> {
        if !self.is_leader() {
            return Ok(self.status().leader);
        }
        if self.status().voters.len() < 2 {
            return Err(ShardError::Unavailable("no other voter can lead this shard".into()));
        }
        self.set_stepping_down(true);
        self.raft().runtime_config().heartbeat(false);
        self.raft().runtime_config().elect(false);
        let deadline = Instant::now() + within;
        let mut metrics = self.raft().metrics();
        let outcome = loop {
            let leader = metrics.borrow().current_leader;
            if let Some(leader) = leader
                && leader != self.replica
            {
                break Ok(Some(leader));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(ShardError::Unavailable(
                    "no other replica took the lead in time".into(),
                ));
            }
            if tokio::time::timeout(left, metrics.changed()).await.is_ok_and(|r| r.is_err()) {
                break Err(ShardError::Unavailable("raft stopped".into()));
            }
        };
        self.raft().runtime_config().elect(true);
        self.raft().runtime_config().heartbeat(true);
        self.set_stepping_down(false);
        outcome
    }
}

//! The Raft type configuration of a shard.

use std::fmt;

use dolphin_state::{Applied, Command};
use serde::{Deserialize, Serialize};

/// A replica's Raft node id: its replica id within the shard.
pub type NodeId = u64;

/// The payload of one log entry: commands proposed together. Batching amortises one log write
/// and one state write (each with its fsync) over every command of the batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub commands: Vec<Command>,
    /// The newest inbox entry among the commands, when they came from the shard's inbox: the
    /// state records how far the inbox has been applied, so that a new leader skips what is
    /// already ordered and the inbox is trimmed only below what every replica has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<dolphin_queue::EntryId>,
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {}", self.commands.len())
    }
}

/// What applying a batch returns: one result per command, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    pub applied: Vec<Applied>,
}

openraft::declare_raft_types!(
    /// The Raft types of a sequencer shard.
    pub TypeConfig:
        D = Batch,
        R = BatchResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of a shard.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of a shard.
pub type LogId = openraft::LogId<NodeId>;
/// A storage failure, as openraft wants it.
pub type StorageError = openraft::StorageError<NodeId>;
/// The membership as stored with the state.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// The metadata of a snapshot.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// A shard's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

//! What can go wrong when asking a shard to do something.

use dolphin_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::NodeId;

/// A request a shard could not serve.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardError {
    /// This replica is not the leader; `leader` names the one it believes is.
    #[error("replica is not the leader of its shard")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// The shard cannot serve now (no quorum, shutting down, timeout); retry later.
    #[error("shard is unavailable: {0}")]
    Unavailable(String),
    /// The replica's storage failed.
    #[error("failed to access the shard's storage: {0}")]
    Storage(String),
}

impl ShardError {
    /// The protocol code reported to clients.
    pub fn code(&self) -> ErrorCode {
        match self {
            ShardError::NotLeader { .. } | ShardError::Unavailable(_) => ErrorCode::Unavailable,
            ShardError::Storage(_) => ErrorCode::Internal,
        }
    }
}

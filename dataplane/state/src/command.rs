//! Commands: the entries of a shard's Raft log.

use dolphin_protocol::Body;
use serde::{Deserialize, Serialize};

use crate::model::Policy;

/// One change to a shard's state. Each carries everything its effect depends on (the acting
/// user and device, the timestamp), so that applying it is deterministic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// A message for a conversation.
    Send { conv: String, from: String, device: String, cid: String, body: Body, ts: i64 },
    /// A new group with its first members.
    GroupCreate {
        conv: String,
        owner: String,
        device: String,
        title: String,
        members: Vec<String>,
        ts: i64,
    },
    /// Members added to a group by one of its members.
    GroupAdd { conv: String, user: String, device: String, members: Vec<String>, ts: i64 },
    /// Members removed from a group by its owner.
    GroupRemove { conv: String, user: String, device: String, members: Vec<String>, ts: i64 },
    /// A member leaves a group.
    GroupLeave { conv: String, user: String, device: String, ts: i64 },
    /// A member has read a conversation up to `seq`.
    Read { conv: String, user: String, device: String, seq: u64 },
    /// A sender withdraws its own message.
    Recall { conv: String, user: String, device: String, seq: u64, ts: i64 },
    /// The cluster's policy changes.
    SetPolicy { policy: Policy },
}

impl Command {
    /// The conversation the command is about, which decides its shard.
    pub fn conv(&self) -> Option<&str> {
        match self {
            Command::Send { conv, .. }
            | Command::GroupCreate { conv, .. }
            | Command::GroupAdd { conv, .. }
            | Command::GroupRemove { conv, .. }
            | Command::GroupLeave { conv, .. }
            | Command::Read { conv, .. }
            | Command::Recall { conv, .. } => Some(conv),
            Command::SetPolicy { .. } => None,
        }
    }

    /// The operation's name, for metrics and logs.
    pub fn op(&self) -> &'static str {
        match self {
            Command::Send { .. } => "send",
            Command::GroupCreate { .. } => "group_create",
            Command::GroupAdd { .. } => "group_add",
            Command::GroupRemove { .. } => "group_remove",
            Command::GroupLeave { .. } => "group_leave",
            Command::Read { .. } => "read",
            Command::Recall { .. } => "recall",
            Command::SetPolicy { .. } => "set_policy",
        }
    }
}

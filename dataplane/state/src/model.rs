//! The records the state machine keeps.

use dolphin_protocol::ConvKind;
use serde::{Deserialize, Serialize};

/// A conversation's own record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvMeta {
    pub kind: ConvKind,
    /// The group's title; empty for a direct conversation.
    #[serde(default)]
    pub title: String,
    /// The group's owner; empty for a direct conversation.
    #[serde(default)]
    pub owner: String,
    /// The seq of the newest message; 0 before the first.
    pub max_seq: u64,
    /// The timestamp of the newest message, so timestamps never go back along the seqs.
    pub last_ts: i64,
    pub member_count: u32,
}

/// A user's membership of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The first seq this member may read: the message that added them.
    pub joined_seq: u64,
    /// How far this member has read; never decreases.
    pub read_seq: u64,
}

/// Who may send direct messages to whom.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectPolicy {
    /// Any user may write to any user.
    #[default]
    Anyone,
    /// Only friends may write to each other (and anyone to themselves).
    Friends,
}

/// The cluster's messaging policy. It lives in the replicated state and changes only through a
/// command, so that every replica judges every message by the same rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub direct_messages: DirectPolicy,
    /// The most members a group may have.
    pub max_group_members: u32,
}

/// The largest group of a new cluster; a fan-out of this size is what the benchmarks measure.
pub const DEFAULT_MAX_GROUP_MEMBERS: u32 = 10_000;

impl Default for Policy {
    fn default() -> Self {
        Policy {
            direct_messages: DirectPolicy::Anyone,
            max_group_members: DEFAULT_MAX_GROUP_MEMBERS,
        }
    }
}

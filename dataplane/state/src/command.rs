//! Commands: the entries of a shard's Raft log.

use dolphin_protocol::Body;
use serde::{Deserialize, Serialize};

use crate::friends::LinkState;
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
    /// `from` asks `to` to be friends. Ordered in the shard of their direct conversation.
    FriendRequest { from: String, to: String, ts: i64 },
    /// `user` accepts the request of `friend`. Ordered in the shard of their direct
    /// conversation.
    FriendAccept { user: String, friend: String, ts: i64 },
    /// `user` ends the friendship with `friend`, or withdraws or declines a request. Ordered
    /// in the shard of their direct conversation.
    FriendRemove { user: String, friend: String, ts: i64 },
    /// Brings `user`'s view of the friend graph up to `version` of the pair's record: sent by
    /// the pair's shard through its outbox to the user's shard. Applying an older or equal
    /// version changes nothing, so forwarding it more than once is harmless.
    FriendLink { user: String, other: String, state: LinkState, version: u64, ts: i64 },
    /// Outbox entries forwarded to their shards, to be forgotten.
    OutboxDone { ids: Vec<u64> },
    /// A new moment by `author`, under the id the edge chose.
    MomentPost { author: String, id: String, body: Body, ts: i64 },
    /// `user` likes a moment of `author`.
    MomentLike { user: String, author: String, id: String, ts: i64 },
    /// `user` comments on a moment of `author`.
    MomentComment { user: String, author: String, id: String, text: String, ts: i64 },
}

/// The routing key of everything kept per user (friend views, moments): the user's shard is
/// the shard this key falls in.
pub fn user_key(user: &str) -> String {
    format!("u:{user}")
}

impl Command {
    /// The key that decides the command's shard: its conversation, the direct conversation of
    /// the two users of a friendship, or [`user_key`] of the user whose data it changes.
    /// `None` for commands a shard proposes to itself.
    pub fn key(&self) -> Option<String> {
        match self {
            Command::FriendRequest { from: a, to: b, .. }
            | Command::FriendAccept { user: a, friend: b, .. }
            | Command::FriendRemove { user: a, friend: b, .. } => {
                Some(dolphin_protocol::ids::direct_conv(a, b))
            }
            Command::FriendLink { user, .. } => Some(user_key(user)),
            Command::MomentPost { author, .. }
            | Command::MomentLike { author, .. }
            | Command::MomentComment { author, .. } => Some(user_key(author)),
            other => other.conv().map(str::to_owned),
        }
    }

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
            _ => None,
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
            Command::FriendRequest { .. } => "friend_request",
            Command::FriendAccept { .. } => "friend_accept",
            Command::FriendRemove { .. } => "friend_remove",
            Command::FriendLink { .. } => "friend_link",
            Command::OutboxDone { .. } => "outbox_done",
            Command::MomentPost { .. } => "moment_post",
            Command::MomentLike { .. } => "moment_like",
            Command::MomentComment { .. } => "moment_comment",
        }
    }
}

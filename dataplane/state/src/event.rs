//! What applying a command produces: the reply to its proposer and the events to push.

use std::sync::Arc;

use dolphin_protocol::{ErrorCode, FriendPush, Group, Message, MomentFrame, ReadPush, Rejected};
use serde::{Deserialize, Serialize};

/// The result of applying one command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub outcome: Outcome,
    pub events: Vec<Event>,
}

/// The reply to the proposer of a command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A message was ordered at `seq`; `duplicate` when the (sender, cid) was seen before and
    /// the first message's seq is reported instead.
    Sent { conv: String, seq: u64, duplicate: bool },
    /// The command was refused; a refused send also produced a [`Event::Rejected`].
    Refused(Refusal),
    /// A group was created.
    Group(Group),
    /// A moment was posted.
    Moment { id: String, ts: i64 },
    /// The command took effect and has nothing to report.
    Done,
}

/// Why a command or a read was refused, in the protocol's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }
}

/// Something to push to connected devices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A message, for every device of every recipient.
    Message { msg: Arc<Message>, recipients: Arc<[String]> },
    /// A refused send, for every device of its sender.
    Rejected { user: String, rejected: Rejected },
    /// A read position moved: for the reader's devices except `device`, and for `recipients`.
    Read { push: ReadPush, device: String, recipients: Arc<[String]> },
    /// A change of friendship, for every device of `user`.
    Friend { user: String, push: FriendPush },
    /// A like or comment on a moment, for every device of its author.
    Moment { user: String, push: MomentFrame },
}

//! Reads a shard answers, as values, so that a local replica and a remote one answer the same
//! requests.

use dolphin_protocol::{Group, MomentItem};
use dolphin_state::friends::{self, FriendList};
use dolphin_state::query::{self, ConvPage, Direction, Page};
use dolphin_state::{Refusal, moments};
use serde::{Deserialize, Serialize};

use crate::redb_kv::ReadKv;

/// A read of a shard's state on behalf of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case")]
pub enum Query {
    Fetch {
        user: String,
        conv: String,
        direction: Direction,
        limit: u32,
    },
    Sync {
        user: String,
        cursor: Option<String>,
        limit: u32,
    },
    GroupInfo {
        user: String,
        conv: String,
    },
    Members {
        user: String,
        conv: String,
    },
    /// The cluster policy this shard applies.
    Policy,
    /// Whether `a` and `b` may write to each other directly under the cluster's policy (asked
    /// of the shard of their direct conversation, which keeps their friendship).
    DirectAllowed {
        a: String,
        b: String,
    },
    /// A user's friends and requests (asked of the user's shard).
    Friends {
        user: String,
    },
    /// The newest moments of `authors` that `viewer` may see (asked of the authors' shard).
    Moments {
        viewer: String,
        authors: Vec<String>,
        before: Option<String>,
        limit: u32,
    },
    /// Whether `user` is a member of a conversation of this shard in which a message names
    /// `file` (this shard's part of a download permission).
    MayReadFile {
        user: String,
        file: String,
    },
}

/// The answer to a [`Query`], variant for variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Page { result: Result<Page, Refusal> },
    Conversations { page: ConvPage },
    Group { result: Result<Group, Refusal> },
    Members { members: Option<Vec<String>> },
    Policy { policy: dolphin_state::Policy },
    DirectAllowed { allowed: bool },
    Friends { list: FriendList },
    Moments { items: Vec<MomentItem> },
    MayReadFile { allowed: bool },
}

impl Query {
    /// Runs the query on a consistent view of the state.
    pub fn run(&self, kv: &ReadKv) -> Result<Answer, dolphin_state::StateError<redb::Error>> {
        Ok(match self {
            Query::Fetch { user, conv, direction, limit } => {
                Answer::Page { result: query::fetch(kv, user, conv, *direction, *limit as usize)? }
            }
            Query::Sync { user, cursor, limit } => Answer::Conversations {
                page: query::sync(kv, user, cursor.as_deref(), *limit as usize)?,
            },
            Query::GroupInfo { user, conv } => {
                Answer::Group { result: query::group_info(kv, user, conv)? }
            }
            Query::Members { user, conv } => {
                Answer::Members { members: query::members_for(kv, user, conv)? }
            }
            Query::Policy => Answer::Policy { policy: dolphin_state::machine::policy(kv)? },
            Query::MayReadFile { user, file } => {
                Answer::MayReadFile { allowed: dolphin_state::files::may_read(kv, user, file)? }
            }
            Query::DirectAllowed { a, b } => {
                let anyone = dolphin_state::machine::policy(kv)?.direct_messages
                    == dolphin_state::DirectPolicy::Anyone;
                Answer::DirectAllowed {
                    allowed: anyone || a == b || friends::are_friends(kv, a, b)?,
                }
            }
            Query::Friends { user } => Answer::Friends { list: friends::list(kv, user)? },
            Query::Moments { viewer, authors, before, limit } => Answer::Moments {
                items: moments::feed(kv, viewer, authors, before.as_deref(), *limit as usize)?,
            },
        })
    }
}

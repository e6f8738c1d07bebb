//! Reads of a shard's state: `fetch`, `sync` and `group.info`.
//!
//! Reads change nothing, so they need no log entry; the sequencer decides from which replica
//! and after which log index they may be served.

use std::ops::Bound;

use dolphin_protocol::ids::ConvRef;
use dolphin_protocol::{ConvKind, ConversationItem, ErrorCode, Group, Message};

use serde::{Deserialize, Serialize};

use crate::event::Refusal;
use crate::kv::{self, KvRead, Table, pair_key, prefix_range, second_part, seq_key};
use crate::machine::{StateResult, conv_meta, member, member_entries, members_of};

/// Which side of a seq a fetch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Messages with seq > n, oldest first.
    After(u64),
    /// Messages with seq < n, newest first.
    Before(u64),
}

/// A page of messages and the conversation's newest seq.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub max_seq: u64,
    pub messages: Vec<Message>,
}

/// Reads up to `limit` messages of `conv` that `user` may see: a member sees messages from the
/// one that added them on.
pub fn fetch<K: KvRead>(
    kv: &K,
    user: &str,
    conv: &str,
    direction: Direction,
    limit: usize,
) -> StateResult<Result<Page, Refusal>, K> {
    let conv_ref = match ConvRef::parse(conv) {
        Ok(conv_ref) => conv_ref,
        Err(error) => return Ok(Err(Refusal::new(ErrorCode::BadRequest, error.to_string()))),
    };
    let Some(meta) = conv_meta(kv, conv)? else {
        // A direct conversation exists, empty, before its first message.
        return Ok(if conv_ref.is_party(user) {
            Ok(Page { max_seq: 0, messages: Vec::new() })
        } else if matches!(conv_ref, ConvRef::Direct(..)) {
            Err(Refusal::new(ErrorCode::NotMember, "not a member"))
        } else {
            Err(Refusal::new(ErrorCode::NotFound, "no such conversation"))
        });
    };
    let Some(membership) = member(kv, conv, user)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotMember, "not a member")));
    };

    let first = membership.joined_seq.max(1);
    let (range, reverse) = match direction {
        Direction::After(after) => {
            let start = seq_key(conv, after.saturating_add(1).max(first));
            ((Bound::Included(start), prefix_range(conv).1), false)
        }
        Direction::Before(before) => {
            let start = seq_key(conv, first);
            ((Bound::Included(start), Bound::Excluded(seq_key(conv, before))), true)
        }
    };
    if let (Bound::Included(start), Bound::Excluded(end)) = &range
        && start >= end
    {
        return Ok(Ok(Page { max_seq: meta.max_seq, messages: Vec::new() }));
    }
    let entries =
        kv.scan(Table::Messages, range, reverse, limit).map_err(crate::StateError::Store)?;
    let messages = entries
        .iter()
        .map(|(_, value)| kv::decode(Table::Messages, value))
        .collect::<Result<_, _>>()?;
    Ok(Ok(Page { max_seq: meta.max_seq, messages }))
}

/// A page of a user's conversations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvPage {
    pub items: Vec<ConversationItem>,
    /// Whether more conversations follow the last item.
    pub more: bool,
}

/// Lists up to `limit` of `user`'s conversations with ids after `cursor`, ordered by id.
pub fn sync<K: KvRead>(
    kv: &K,
    user: &str,
    cursor: Option<&str>,
    limit: usize,
) -> StateResult<ConvPage, K> {
    let (start, end) = prefix_range(user);
    let start = match cursor {
        Some(cursor) => Bound::Excluded(pair_key(user, cursor)),
        None => start,
    };
    let entries = kv
        .scan(Table::UserConvs, (start, end), false, limit.saturating_add(1))
        .map_err(crate::StateError::Store)?;
    let more = entries.len() > limit;
    let mut items = Vec::with_capacity(entries.len().min(limit));
    for (key, _) in entries.into_iter().take(limit) {
        let conv = String::from_utf8_lossy(second_part(&key)).into_owned();
        let (Some(meta), Some(membership)) = (conv_meta(kv, &conv)?, member(kv, &conv, user)?)
        else {
            continue;
        };
        let title = match meta.kind {
            ConvKind::Group => meta.title,
            ConvKind::Direct => ConvRef::parse(&conv)
                .ok()
                .and_then(|c| c.peer(user).map(str::to_owned))
                .unwrap_or_default(),
        };
        items.push(ConversationItem {
            conv,
            kind: meta.kind,
            title,
            max_seq: meta.max_seq,
            read_seq: membership.read_seq,
        });
    }
    Ok(ConvPage { items, more })
}

/// The title, owner and members of a group, for one of its members.
pub fn group_info<K: KvRead>(
    kv: &K,
    user: &str,
    conv: &str,
) -> StateResult<Result<Group, Refusal>, K> {
    if !matches!(ConvRef::parse(conv), Ok(ConvRef::Group(_))) {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "not a group id")));
    }
    let Some(meta) = conv_meta(kv, conv)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotFound, "no such group")));
    };
    if member(kv, conv, user)?.is_none() {
        return Ok(Err(Refusal::new(ErrorCode::NotMember, "not a member")));
    }
    let members = member_entries(kv, conv)?.into_iter().map(|(user, _)| user).collect();
    Ok(Ok(Group {
        rid: None,
        conv: conv.to_owned(),
        title: meta.title,
        owner: meta.owner,
        members,
    }))
}

/// The members of a conversation, if `user` is one of them (for relaying `typing`).
pub fn members_for<K: KvRead>(
    kv: &K,
    user: &str,
    conv: &str,
) -> StateResult<Option<Vec<String>>, K> {
    if member(kv, conv, user)?.is_none() {
        return Ok(None);
    }
    Ok(Some(members_of(kv, conv)?.to_vec()))
}

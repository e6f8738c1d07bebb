//! Friendship: requests, acceptance and removal, and each user's view of the friend graph.
//!
//! The friendship of two users has one authority: a [`Pair`] record in the shard of their
//! direct conversation (`d:a:b`). Every change to it is one command ordered there, so a
//! request, an accept and a remove of the same two users can never interleave differently on
//! two shards, and the direct-message policy reads the record right next to the conversation
//! it guards.
//!
//! Each user's own shard keeps that user's view ([`Link`]), for `friend.list`, the moments
//! feed and moment permissions. A change to a pair writes two [`Command::FriendLink`]s into
//! the pair shard's outbox in the same apply; the leader forwards them through the queue to
//! the users' shards and then deletes them. Every change bumps the pair's `version`, and a
//! user's shard applies a link only when its version is newer than the one it holds: a
//! forward repeated after a leader change, or two forwards arriving out of order, leave the
//! view at the newest state of the pair, applied once.

use dolphin_protocol::{ErrorCode, FriendEvent, FriendPush};
use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::event::{Event, Refusal};
use crate::kv::{self, Kv, KvRead, Table, pair_key};
use crate::machine::{StateError, StateResult};

/// The state of a friendship, as its pair shard records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PairState {
    /// Nothing between them (never, or no longer).
    #[default]
    None,
    /// `by` asked the other to be friends.
    Requested { by: String },
    /// Both agreed.
    Friends,
}

/// The record of two users in the shard of their direct conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub state: PairState,
    /// Grows by one with every change; kept after removal so that it never goes back.
    pub version: u64,
}

/// How a user sees one other user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    None,
    Friend,
    /// The other user asked this one.
    Incoming,
    /// This user asked the other one.
    Outgoing,
}

/// A user's view of one other user, in the user's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub state: LinkState,
    /// The version of the pair's record this view reflects.
    pub version: u64,
}

/// A user's friends and pending requests, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendList {
    pub friends: Vec<String>,
    pub incoming: Vec<String>,
    pub outgoing: Vec<String>,
}

const OUTBOX_NEXT_KEY: &[u8] = b"outbox_next";

fn sorted<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b { (a, b) } else { (b, a) }
}

/// The record of `a` and `b`, in either order.
pub fn pair<K: KvRead>(kv: &K, a: &str, b: &str) -> StateResult<Pair, K> {
    let (a, b) = sorted(a, b);
    match kv.get(Table::Friends, &pair_key(a, b)).map_err(StateError::Store)? {
        Some(bytes) => Ok(kv::decode(Table::Friends, &bytes)?),
        None => Ok(Pair::default()),
    }
}

/// Whether `a` and `b` are friends, by their pair record (in the shard of `d:a:b`).
pub fn are_friends<K: KvRead>(kv: &K, a: &str, b: &str) -> StateResult<bool, K> {
    Ok(pair(kv, a, b)?.state == PairState::Friends)
}

/// How `user` sees `other`, by the user's view (in the user's shard).
pub fn link<K: KvRead>(kv: &K, user: &str, other: &str) -> StateResult<LinkState, K> {
    match kv.get(Table::FriendLinks, &pair_key(user, other)).map_err(StateError::Store)? {
        Some(bytes) => Ok(kv::decode::<Link>(Table::FriendLinks, &bytes)?.state),
        None => Ok(LinkState::None),
    }
}

/// Whether `viewer` may see what `user` shares with friends: themselves or a friend, by the
/// view kept in `user`'s shard.
pub fn shares_with<K: KvRead>(kv: &K, user: &str, viewer: &str) -> StateResult<bool, K> {
    Ok(user == viewer || link(kv, user, viewer)? == LinkState::Friend)
}

/// `user`'s friends and requests, from the user's shard.
pub fn list<K: KvRead>(kv: &K, user: &str) -> StateResult<FriendList, K> {
    let mut list = FriendList::default();
    // A user's view holds one entry per user ever related; bounded by the friend limit the
    // edge enforces on requests.
    let entries = kv
        .scan(Table::FriendLinks, kv::prefix_range(user), false, usize::MAX)
        .map_err(StateError::Store)?;
    for (key, value) in entries {
        let other = String::from_utf8_lossy(kv::second_part(&key)).into_owned();
        match kv::decode::<Link>(Table::FriendLinks, &value)?.state {
            LinkState::Friend => list.friends.push(other),
            LinkState::Incoming => list.incoming.push(other),
            LinkState::Outgoing => list.outgoing.push(other),
            LinkState::None => {}
        }
    }
    Ok(list)
}

/// A step on a pair: the events to push, or a refusal.
type Step<K> = StateResult<Result<Vec<Event>, Refusal>, K>;

/// `from` asks `to`. Asking someone who already asked you makes you friends; asking again, or
/// asking a friend, changes nothing.
pub fn request<K: Kv>(kv: &mut K, from: &str, to: &str, ts: i64) -> Step<K> {
    if from == to {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "a user cannot befriend themselves")));
    }
    let current = pair(kv, from, to)?;
    let next = match &current.state {
        PairState::None => PairState::Requested { by: from.to_owned() },
        PairState::Requested { by } if by != from => PairState::Friends,
        PairState::Requested { .. } | PairState::Friends => return Ok(Ok(Vec::new())),
    };
    change(kv, from, to, current, next, ts)?;
    Ok(Ok(Vec::new()))
}

/// `user` accepts the request of `friend`.
pub fn accept<K: Kv>(kv: &mut K, user: &str, friend: &str, ts: i64) -> Step<K> {
    let current = pair(kv, user, friend)?;
    match &current.state {
        PairState::Requested { by } if by == friend => {}
        PairState::Friends => return Ok(Ok(Vec::new())),
        _ => {
            let message = format!("{friend} has not asked to be friends");
            return Ok(Err(Refusal::new(ErrorCode::NotFound, message)));
        }
    }
    change(kv, user, friend, current, PairState::Friends, ts)?;
    Ok(Ok(Vec::new()))
}

/// `user` ends whatever is between them and `friend`: a friendship, a request either way.
pub fn remove<K: Kv>(kv: &mut K, user: &str, friend: &str, ts: i64) -> Step<K> {
    let current = pair(kv, user, friend)?;
    if current.state == PairState::None {
        let message = format!("{friend} is neither a friend nor a pending request");
        return Ok(Err(Refusal::new(ErrorCode::NotFound, message)));
    }
    change(kv, user, friend, current, PairState::None, ts)?;
    Ok(Ok(Vec::new()))
}

/// Writes the pair's new state and queues both users' views of it in the outbox.
fn change<K: Kv>(
    kv: &mut K,
    a: &str,
    b: &str,
    current: Pair,
    state: PairState,
    ts: i64,
) -> StateResult<(), K> {
    let version = current.version + 1;
    let view = |user: &str| match &state {
        PairState::None => LinkState::None,
        PairState::Friends => LinkState::Friend,
        PairState::Requested { by } if by == user => LinkState::Outgoing,
        PairState::Requested { .. } => LinkState::Incoming,
    };
    let links = [(a, b, view(a)), (b, a, view(b))];
    let (low, high) = sorted(a, b);
    let record = Pair { state, version };
    kv.put(Table::Friends, &pair_key(low, high), &kv::encode(&record))
        .map_err(StateError::Store)?;
    for (user, other, state) in links {
        let command = Command::FriendLink {
            user: user.to_owned(),
            other: other.to_owned(),
            state,
            version,
            ts,
        };
        outbox_push(kv, &command)?;
    }
    Ok(())
}

/// Applies a pair's change to one user's view, if it is newer than what the view holds, and
/// tells the user's devices what changed.
pub fn apply_link<K: Kv>(
    kv: &mut K,
    user: &str,
    other: &str,
    state: LinkState,
    version: u64,
) -> StateResult<Vec<Event>, K> {
    let key = pair_key(user, other);
    let held = match kv.get(Table::FriendLinks, &key).map_err(StateError::Store)? {
        Some(bytes) => Some(kv::decode::<Link>(Table::FriendLinks, &bytes)?),
        None => None,
    };
    if held.is_some_and(|link| link.version >= version) {
        return Ok(Vec::new());
    }
    let before = held.map_or(LinkState::None, |link| link.state);
    // A link that went back to `None` is kept with its version, so that an older forward
    // arriving late cannot revive it.
    kv.put(Table::FriendLinks, &key, &kv::encode(&Link { state, version }))
        .map_err(StateError::Store)?;
    let event = match (before, state) {
        (before, LinkState::Incoming) if before != LinkState::Incoming => FriendEvent::Request,
        (before, LinkState::Friend) if before != LinkState::Friend => FriendEvent::Accepted,
        // A friendship ended, or a request was withdrawn or declined: either side's devices
        // drop what they show.
        (before, LinkState::None) if before != LinkState::None => FriendEvent::Removed,
        _ => return Ok(Vec::new()),
    };
    let push = FriendPush { event, user: other.to_owned() };
    Ok(vec![Event::Friend { user: user.to_owned(), push }])
}

/// Queues a command for another shard; the leader forwards it and then deletes it.
pub fn outbox_push<K: Kv>(kv: &mut K, command: &Command) -> StateResult<(), K> {
    let next = match kv.get(Table::Meta, OUTBOX_NEXT_KEY).map_err(StateError::Store)? {
        Some(bytes) => crate::machine::decode_u64(&bytes)?,
        None => 1,
    };
    kv.put(Table::Outbox, &next.to_be_bytes(), &kv::encode(command)).map_err(StateError::Store)?;
    kv.put(Table::Meta, OUTBOX_NEXT_KEY, &(next + 1).to_be_bytes()).map_err(StateError::Store)?;
    Ok(())
}

/// Forgets forwarded outbox entries.
pub fn outbox_done<K: Kv>(kv: &mut K, ids: &[u64]) -> StateResult<(), K> {
    for id in ids {
        kv.delete(Table::Outbox, &id.to_be_bytes()).map_err(StateError::Store)?;
    }
    Ok(())
}

/// The oldest `limit` outbox entries, to forward in order.
pub fn outbox<K: KvRead>(kv: &K, limit: usize) -> StateResult<Vec<(u64, Command)>, K> {
    let all = (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    let entries = kv.scan(Table::Outbox, all, false, limit).map_err(StateError::Store)?;
    entries
        .into_iter()
        .map(|(key, value)| {
            let id = crate::machine::decode_u64(&key)?;
            Ok((id, kv::decode(Table::Outbox, &value)?))
        })
        .collect()
}

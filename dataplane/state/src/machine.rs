//! Applying commands: the rules of conversations, groups, reads and recalls.

use std::collections::BTreeSet;
use std::sync::Arc;

use dolphin_protocol::ids::{self, ConvRef};
use dolphin_protocol::{
    Body, ConvKind, ErrorCode, Group, Message, ReadPush, Rejected, SystemBody, SystemEvent,
};
use thiserror::Error;

use crate::command::Command;
use crate::event::{Applied, Event, Outcome, Refusal};
use crate::kv::{self, Kv, KvRead, Table, pair_key, prefix_range, second_part, seq_key};
use crate::model::{ConvMeta, DirectPolicy, Member, Policy};
use crate::{friends, moments};

/// How many of a conversation's newest messages are remembered by (sender, cid). A send
/// repeating the sender and cid of one of them is recognised as a resend and makes no second
/// message; a resend of an older message is no longer recognised. Ten thousand covers hours of
/// a busy group, far longer than any client retries, and bounds the dedupe state to one entry
/// per recent message.
///
/// Repeats are recognised per conversation: a cid reused in another conversation (which a
/// client should not do, cids being unique per sender) makes a message there. Recognising it
/// across conversations would need a second ordering step on another shard for every send,
/// and treating it as a repeat would drop a message that was `accepted`.
pub const DEDUPE_WINDOW: u64 = 10_000;

const POLICY_KEY: &[u8] = b"policy";

/// A stored value that does not decode: the store is corrupt or from an incompatible version.
#[derive(Debug, Error)]
#[error("failed to decode a stored {table} value: {reason}")]
pub struct CorruptValue {
    pub table: &'static str,
    pub reason: String,
}

/// Why applying a command or answering a read failed (never because of the command itself:
/// refusals are outcomes, not errors).
#[derive(Debug, Error)]
pub enum StateError<E: std::error::Error + 'static> {
    #[error("failed to access the state store")]
    Store(#[source] E),
    #[error(transparent)]
    Corrupt(#[from] CorruptValue),
}

/// The result of a step that touches the store.
pub type StateResult<T, K> = Result<T, StateError<<K as KvRead>::Error>>;

/// Applies one command to the state in `kv`: the deterministic heart of a shard.
pub fn apply<K: Kv>(kv: &mut K, command: &Command) -> StateResult<Applied, K> {
    match command {
        Command::Send { conv, from, device, cid, body, ts } => {
            send(kv, conv, from, device, cid, body, *ts)
        }
        Command::GroupCreate { conv, owner, device, title, members, ts } => {
            group_create(kv, conv, owner, device, title, members, *ts)
        }
        Command::GroupAdd { conv, user, device, members, ts } => {
            refusable(group_add(kv, conv, user, device, members, *ts))
        }
        Command::GroupRemove { conv, user, device, members, ts } => {
            refusable(group_remove(kv, conv, user, device, members, *ts))
        }
        Command::GroupLeave { conv, user, device, ts } => {
            refusable(group_leave(kv, conv, user, device, *ts))
        }
        Command::Read { conv, user, device, seq } => refusable(read(kv, conv, user, device, *seq)),
        Command::Recall { conv, user, device, seq, ts } => {
            refusable(recall(kv, conv, user, device, *seq, *ts))
        }
        Command::SetPolicy { policy } => {
            kv.put(Table::Meta, POLICY_KEY, &kv::encode(policy)).map_err(StateError::Store)?;
            Ok(Applied { outcome: Outcome::Done, events: Vec::new() })
        }
        Command::FriendRequest { from, to, ts } => refusable(friends::request(kv, from, to, *ts)),
        Command::FriendAccept { user, friend, ts } => {
            refusable(friends::accept(kv, user, friend, *ts))
        }
        Command::FriendRemove { user, friend, ts } => {
            refusable(friends::remove(kv, user, friend, *ts))
        }
        Command::FriendLink { user, other, state, version, .. } => {
            let events = friends::apply_link(kv, user, other, *state, *version)?;
            Ok(Applied { outcome: Outcome::Done, events })
        }
        Command::OutboxDone { ids } => {
            friends::outbox_done(kv, ids)?;
            Ok(Applied { outcome: Outcome::Done, events: Vec::new() })
        }
        Command::MomentPost { author, id, body, ts } => {
            Ok(match moments::post(kv, author, id, body, *ts)? {
                Ok(events) => {
                    Applied { outcome: Outcome::Moment { id: id.clone(), ts: *ts }, events }
                }
                Err(refusal) => Applied { outcome: Outcome::Refused(refusal), events: Vec::new() },
            })
        }
        Command::MomentLike { user, id, ts, .. } => refusable(moments::like(kv, user, id, *ts)),
        Command::MomentComment { user, id, text, ts, .. } => {
            refusable(moments::comment(kv, user, id, text, *ts))
        }
    }
}

/// A step that either takes effect (with events) or is refused.
type Step<K> = StateResult<Result<Vec<Event>, Refusal>, K>;

fn refusable<E: std::error::Error>(
    step: Result<Result<Vec<Event>, Refusal>, StateError<E>>,
) -> Result<Applied, StateError<E>> {
    Ok(match step? {
        Ok(events) => Applied { outcome: Outcome::Done, events },
        Err(refusal) => Applied { outcome: Outcome::Refused(refusal), events: Vec::new() },
    })
}

fn send<K: Kv>(
    kv: &mut K,
    conv: &str,
    from: &str,
    device: &str,
    cid: &str,
    body: &Body,
    ts: i64,
) -> StateResult<Applied, K> {
    // A resend of a cid in the window pushes the first message again, to every member: a
    // resend usually means a crash lost track of whether the first push happened, and
    // clients drop repeats by (conv, seq).
    if let Some(seq) =
        kv.get(Table::Dedupe, &dedupe_key(from, conv, cid)).map_err(StateError::Store)?
    {
        let seq = decode_seq(&seq)?;
        let outcome = Outcome::Sent { conv: conv.to_owned(), seq, duplicate: true };
        let recipients = members_of(kv, conv)?;
        let events = message(kv, conv, seq)?
            .map(|msg| Event::Message { msg: Arc::new(msg), recipients })
            .into_iter()
            .collect();
        return Ok(Applied { outcome, events });
    }

    let refuse = |refusal: Refusal| {
        let rejected = Rejected {
            conv: conv.to_owned(),
            cid: cid.to_owned(),
            code: refusal.code,
            message: refusal.message.clone(),
        };
        Applied {
            outcome: Outcome::Refused(refusal),
            events: vec![Event::Rejected { user: from.to_owned(), rejected }],
        }
    };
    // A `call` body arrives as a send from the edge that ended the call (edges refuse it from
    // clients); the other server-only kinds are written by the state machine itself.
    if body.is_server_only() && !matches!(body, Body::Call { .. }) {
        return Ok(refuse(Refusal::new(ErrorCode::BadRequest, "only the server writes this kind")));
    }
    let meta = match ConvRef::parse(conv) {
        Err(error) => return Ok(refuse(Refusal::new(ErrorCode::BadRequest, error.to_string()))),
        Ok(ConvRef::Direct(a, b)) => {
            if a != from && b != from {
                return Ok(refuse(Refusal::new(
                    ErrorCode::NotMember,
                    "only its two users write to a direct conversation",
                )));
            }
            if policy(kv)?.direct_messages == DirectPolicy::Friends
                && a != b
                && !friends::are_friends(kv, a, b)?
            {
                return Ok(refuse(Refusal::new(
                    ErrorCode::NotFriends,
                    "direct messages need friendship in this cluster",
                )));
            }
            match conv_meta(kv, conv)? {
                Some(meta) => meta,
                None => open_direct(kv, conv, a, b)?,
            }
        }
        Ok(ConvRef::Group(_)) => {
            let Some(meta) = conv_meta(kv, conv)? else {
                return Ok(refuse(Refusal::new(ErrorCode::NotFound, "no such conversation")));
            };
            if member(kv, conv, from)?.is_none() {
                return Ok(refuse(Refusal::new(ErrorCode::NotMember, "not a member")));
            }
            meta
        }
    };

    let msg = append(kv, conv, meta, from, device, cid, body.clone(), ts)?;
    crate::files::record(kv, conv, body)?;
    remember_cid(kv, from, cid, conv, msg.seq)?;
    forget_cid_before(kv, conv, msg.seq)?;
    let recipients = members_of(kv, conv)?;
    let outcome = Outcome::Sent { conv: conv.to_owned(), seq: msg.seq, duplicate: false };
    Ok(Applied { outcome, events: vec![Event::Message { msg: Arc::new(msg), recipients }] })
}

fn open_direct<K: Kv>(kv: &mut K, conv: &str, a: &str, b: &str) -> StateResult<ConvMeta, K> {
    let joined = Member { joined_seq: 1, read_seq: 0 };
    put_member(kv, conv, a, &joined)?;
    if a != b {
        put_member(kv, conv, b, &joined)?;
    }
    Ok(ConvMeta {
        kind: ConvKind::Direct,
        title: String::new(),
        owner: String::new(),
        max_seq: 0,
        last_ts: 0,
        member_count: if a == b { 1 } else { 2 },
    })
}

/// The dedupe key of a send: sender, conversation and cid, each ended by `\0` but the last
/// (ids and cids hold no control characters).
fn dedupe_key(sender: &str, conv: &str, cid: &str) -> Vec<u8> {
    let mut key = pair_key(sender, conv);
    key.push(0);
    key.extend_from_slice(cid.as_bytes());
    key
}

/// Records that `sender`'s `cid` is the message at `seq` of `conv`.
fn remember_cid<K: Kv>(
    kv: &mut K,
    sender: &str,
    cid: &str,
    conv: &str,
    seq: u64,
) -> StateResult<(), K> {
    put_raw(kv, Table::Dedupe, &dedupe_key(sender, conv, cid), &seq.to_be_bytes())
}

/// Forgets the cid of the message that just left the window of `conv` (the newest is `seq`).
fn forget_cid_before<K: Kv>(kv: &mut K, conv: &str, seq: u64) -> StateResult<(), K> {
    let Some(leaving) = seq.checked_sub(DEDUPE_WINDOW).filter(|s| *s > 0) else { return Ok(()) };
    if let Some(old) = message(kv, conv, leaving)?
        && !old.body.is_server_only()
    {
        delete(kv, Table::Dedupe, &dedupe_key(&old.from, conv, &old.cid))?;
    }
    Ok(())
}

fn decode_seq<E: std::error::Error>(bytes: &[u8]) -> Result<u64, StateError<E>> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| CorruptValue {
        table: Table::Dedupe.name(),
        reason: format!("a seq is 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Decodes a big-endian u64 kept in the state (counters, outbox numbers).
pub(crate) fn decode_u64<E: std::error::Error>(bytes: &[u8]) -> Result<u64, StateError<E>> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| CorruptValue {
        table: Table::Meta.name(),
        reason: format!("a counter is 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn group_create<K: Kv>(
    kv: &mut K,
    conv: &str,
    owner: &str,
    device: &str,
    title: &str,
    members: &[String],
    ts: i64,
) -> StateResult<Applied, K> {
    let refused = |code, message: &str| Applied {
        outcome: Outcome::Refused(Refusal::new(code, message)),
        events: Vec::new(),
    };
    if !matches!(ConvRef::parse(conv), Ok(ConvRef::Group(_))) {
        return Ok(refused(ErrorCode::BadRequest, "a group id must be g:<id>"));
    }
    if conv_meta(kv, conv)?.is_some() {
        return Ok(refused(ErrorCode::BadRequest, "a group with this id exists"));
    }
    if let Some(bad) = members.iter().find(|m| !ids::is_valid_id(m)) {
        return Ok(refused(ErrorCode::BadRequest, &format!("invalid user id {bad:?}")));
    }
    let all: BTreeSet<&str> =
        members.iter().map(String::as_str).chain(std::iter::once(owner)).collect();
    let limit = policy(kv)?.max_group_members;
    if all.len() > limit as usize {
        return Ok(refused(
            ErrorCode::BadRequest,
            &format!("a group holds at most {limit} members"),
        ));
    }

    let meta = ConvMeta {
        kind: ConvKind::Group,
        title: title.to_owned(),
        owner: owner.to_owned(),
        max_seq: 0,
        last_ts: 0,
        member_count: all.len() as u32,
    };
    let joined = Member { joined_seq: 1, read_seq: 0 };
    for user in &all {
        put_member(kv, conv, user, &joined)?;
    }
    let users: Vec<String> = all.iter().map(|u| (*u).to_owned()).collect();
    let body = system(SystemEvent::Created, users.clone(), None, Some(title.to_owned()));
    let msg = append_system(kv, conv, meta, owner, device, body, ts)?;
    let group = Group {
        rid: None,
        conv: conv.to_owned(),
        title: title.to_owned(),
        owner: owner.to_owned(),
        members: users.clone(),
    };
    let events = vec![Event::Message { msg: Arc::new(msg), recipients: Arc::from(users) }];
    Ok(Applied { outcome: Outcome::Group(group), events })
}

/// The group `conv` with `user` as a member, or why not.
fn member_of_group<K: KvRead>(
    kv: &K,
    conv: &str,
    user: &str,
) -> StateResult<Result<ConvMeta, Refusal>, K> {
    if !matches!(ConvRef::parse(conv), Ok(ConvRef::Group(_))) {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "not a group id")));
    }
    let Some(meta) = conv_meta(kv, conv)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotFound, "no such group")));
    };
    if member(kv, conv, user)?.is_none() {
        return Ok(Err(Refusal::new(ErrorCode::NotMember, "not a member")));
    }
    Ok(Ok(meta))
}

fn group_add<K: Kv>(
    kv: &mut K,
    conv: &str,
    user: &str,
    device: &str,
    members: &[String],
    ts: i64,
) -> Step<K> {
    let mut meta = match member_of_group(kv, conv, user)? {
        Ok(meta) => meta,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Some(bad) = members.iter().find(|m| !ids::is_valid_id(m)) {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, format!("invalid user id {bad:?}"))));
    }
    let mut added = BTreeSet::new();
    for candidate in members {
        if member(kv, conv, candidate)?.is_none() {
            added.insert(candidate.clone());
        }
    }
    if added.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let limit = policy(kv)?.max_group_members;
    if meta.member_count as usize + added.len() > limit as usize {
        let message = format!("a group holds at most {limit} members");
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, message)));
    }

    let added: Vec<String> = added.into_iter().collect();
    meta.member_count += added.len() as u32;
    let body = system(SystemEvent::MemberAdded, added.clone(), None, None);
    let msg = append_system(kv, conv, meta, user, device, body, ts)?;
    for new in &added {
        put_member(kv, conv, new, &Member { joined_seq: msg.seq, read_seq: msg.seq - 1 })?;
    }
    let recipients = members_of(kv, conv)?;
    Ok(Ok(vec![Event::Message { msg: Arc::new(msg), recipients }]))
}

fn group_remove<K: Kv>(
    kv: &mut K,
    conv: &str,
    user: &str,
    device: &str,
    members: &[String],
    ts: i64,
) -> Step<K> {
    let mut meta = match member_of_group(kv, conv, user)? {
        Ok(meta) => meta,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if meta.owner != user {
        return Ok(Err(Refusal::new(ErrorCode::Forbidden, "only the owner removes members")));
    }
    if members.iter().any(|m| m == user) {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "the owner leaves with group.leave")));
    }
    let mut removed = BTreeSet::new();
    for target in members {
        if member(kv, conv, target)?.is_some() {
            removed.insert(target.clone());
        }
    }
    if removed.is_empty() {
        return Ok(Ok(Vec::new()));
    }

    // The removed users get the message that removes them, and nothing after it.
    let recipients = members_of(kv, conv)?;
    let removed: Vec<String> = removed.into_iter().collect();
    meta.member_count -= removed.len() as u32;
    let body = system(SystemEvent::MemberRemoved, removed.clone(), None, None);
    let msg = append_system(kv, conv, meta, user, device, body, ts)?;
    for gone in &removed {
        remove_member(kv, conv, gone)?;
    }
    Ok(Ok(vec![Event::Message { msg: Arc::new(msg), recipients }]))
}

fn group_leave<K: Kv>(kv: &mut K, conv: &str, user: &str, device: &str, ts: i64) -> Step<K> {
    let mut meta = match member_of_group(kv, conv, user)? {
        Ok(meta) => meta,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let recipients = members_of(kv, conv)?;
    meta.member_count -= 1;
    if meta.owner == user {
        // Ownership passes to the longest-standing member (then the smallest id), a choice
        // every replica makes alike.
        let mut heir: Option<(u64, String)> = None;
        for (other, joined) in member_entries(kv, conv)? {
            if other != user && heir.as_ref().is_none_or(|(seq, _)| joined.joined_seq < *seq) {
                heir = Some((joined.joined_seq, other));
            }
        }
        meta.owner = heir.map(|(_, heir)| heir).unwrap_or_default();
    }
    let body = system(SystemEvent::MemberLeft, vec![user.to_owned()], None, None);
    let msg = append_system(kv, conv, meta, user, device, body, ts)?;
    remove_member(kv, conv, user)?;
    Ok(Ok(vec![Event::Message { msg: Arc::new(msg), recipients }]))
}

fn read<K: Kv>(kv: &mut K, conv: &str, user: &str, device: &str, seq: u64) -> Step<K> {
    let conv_ref = match ConvRef::parse(conv) {
        Ok(conv_ref) => conv_ref,
        Err(error) => return Ok(Err(Refusal::new(ErrorCode::BadRequest, error.to_string()))),
    };
    let Some(meta) = conv_meta(kv, conv)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotFound, "no such conversation")));
    };
    let Some(mut membership) = member(kv, conv, user)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotMember, "not a member")));
    };
    let seq = seq.min(meta.max_seq);
    if seq <= membership.read_seq {
        return Ok(Ok(Vec::new()));
    }
    membership.read_seq = seq;
    put(kv, Table::Members, &pair_key(conv, user), &membership)?;
    let mut recipients = vec![user.to_owned()];
    if let Some(peer) = conv_ref.peer(user).filter(|peer| *peer != user) {
        recipients.push(peer.to_owned());
    }
    let push = ReadPush { conv: conv.to_owned(), user: user.to_owned(), seq };
    Ok(Ok(vec![Event::Read { push, device: device.to_owned(), recipients: recipients.into() }]))
}

fn recall<K: Kv>(kv: &mut K, conv: &str, user: &str, device: &str, seq: u64, ts: i64) -> Step<K> {
    if ConvRef::parse(conv).is_err() {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "invalid conversation id")));
    }
    let Some(meta) = conv_meta(kv, conv)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotFound, "no such conversation")));
    };
    if member(kv, conv, user)?.is_none() {
        return Ok(Err(Refusal::new(ErrorCode::NotMember, "not a member")));
    }
    let Some(mut original) = message(kv, conv, seq)? else {
        return Ok(Err(Refusal::new(ErrorCode::NotFound, "no such message")));
    };
    if original.body == Body::Recalled {
        return Ok(Ok(Vec::new()));
    }
    if original.from != user || original.body.is_server_only() {
        return Ok(Err(Refusal::new(ErrorCode::Forbidden, "only a sender recalls its message")));
    }

    original.body = Body::Recalled;
    put(kv, Table::Messages, &seq_key(conv, seq), &original)?;
    let body = system(SystemEvent::Recalled, Vec::new(), Some(seq), None);
    let msg = append_system(kv, conv, meta, user, device, body, ts)?;
    let recipients = members_of(kv, conv)?;
    Ok(Ok(vec![Event::Message { msg: Arc::new(msg), recipients }]))
}

fn system(event: SystemEvent, users: Vec<String>, seq: Option<u64>, title: Option<String>) -> Body {
    Body::System(SystemBody { event, users, seq, title })
}

fn append_system<K: Kv>(
    kv: &mut K,
    conv: &str,
    meta: ConvMeta,
    user: &str,
    device: &str,
    body: Body,
    ts: i64,
) -> StateResult<Message, K> {
    let cid = format!("sys-{}", meta.max_seq + 1);
    append(kv, conv, meta, user, device, &cid, body, ts)
}

/// Appends a message at the conversation's next seq and saves the conversation.
#[allow(clippy::too_many_arguments)]
fn append<K: Kv>(
    kv: &mut K,
    conv: &str,
    mut meta: ConvMeta,
    from: &str,
    device: &str,
    cid: &str,
    body: Body,
    ts: i64,
) -> StateResult<Message, K> {
    meta.max_seq += 1;
    meta.last_ts = meta.last_ts.max(ts);
    let msg = Message {
        conv: conv.to_owned(),
        seq: meta.max_seq,
        from: from.to_owned(),
        device: device.to_owned(),
        cid: cid.to_owned(),
        ts: meta.last_ts,
        body,
    };
    put(kv, Table::Messages, &seq_key(conv, msg.seq), &msg)?;
    put(kv, Table::Convs, conv.as_bytes(), &meta)?;
    Ok(msg)
}

// Typed access to the tables, shared with the queries.

pub(crate) fn get<T: serde::de::DeserializeOwned, K: KvRead>(
    kv: &K,
    table: Table,
    key: &[u8],
) -> StateResult<Option<T>, K> {
    match kv.get(table, key).map_err(StateError::Store)? {
        Some(bytes) => Ok(Some(kv::decode(table, &bytes)?)),
        None => Ok(None),
    }
}

fn put<T: serde::Serialize, K: Kv>(
    kv: &mut K,
    table: Table,
    key: &[u8],
    value: &T,
) -> StateResult<(), K> {
    put_raw(kv, table, key, &kv::encode(value))
}

fn put_raw<K: Kv>(kv: &mut K, table: Table, key: &[u8], value: &[u8]) -> StateResult<(), K> {
    kv.put(table, key, value).map_err(StateError::Store)
}

fn delete<K: Kv>(kv: &mut K, table: Table, key: &[u8]) -> StateResult<(), K> {
    kv.delete(table, key).map_err(StateError::Store)
}

/// The cluster's policy, or the default before any was set.
pub fn policy<K: KvRead>(kv: &K) -> StateResult<Policy, K> {
    Ok(get(kv, Table::Meta, POLICY_KEY)?.unwrap_or_default())
}

pub(crate) fn conv_meta<K: KvRead>(kv: &K, conv: &str) -> StateResult<Option<ConvMeta>, K> {
    get(kv, Table::Convs, conv.as_bytes())
}

pub(crate) fn member<K: KvRead>(kv: &K, conv: &str, user: &str) -> StateResult<Option<Member>, K> {
    get(kv, Table::Members, &pair_key(conv, user))
}

pub(crate) fn message<K: KvRead>(kv: &K, conv: &str, seq: u64) -> StateResult<Option<Message>, K> {
    get(kv, Table::Messages, &seq_key(conv, seq))
}

fn put_member<K: Kv>(kv: &mut K, conv: &str, user: &str, member: &Member) -> StateResult<(), K> {
    if let Some(cache) = kv.member_cache() {
        cache.forget(conv);
    }
    put(kv, Table::Members, &pair_key(conv, user), member)?;
    put_raw(kv, Table::UserConvs, &pair_key(user, conv), &[])
}

fn remove_member<K: Kv>(kv: &mut K, conv: &str, user: &str) -> StateResult<(), K> {
    if let Some(cache) = kv.member_cache() {
        cache.forget(conv);
    }
    delete(kv, Table::Members, &pair_key(conv, user))?;
    delete(kv, Table::UserConvs, &pair_key(user, conv))
}

/// Every member of a conversation with their membership, ordered by user id.
pub(crate) fn member_entries<K: KvRead>(
    kv: &K,
    conv: &str,
) -> StateResult<Vec<(String, Member)>, K> {
    let entries = kv
        .scan(Table::Members, prefix_range(conv), false, usize::MAX)
        .map_err(StateError::Store)?;
    entries
        .into_iter()
        .map(|(key, value)| {
            let user = String::from_utf8_lossy(second_part(&key)).into_owned();
            Ok((user, kv::decode(Table::Members, &value)?))
        })
        .collect()
}

/// The user ids of a conversation's members, ordered.
pub fn members_of<K: KvRead>(kv: &K, conv: &str) -> StateResult<Arc<[String]>, K> {
    if let Some(members) = kv.member_cache().and_then(|cache| cache.get(conv)) {
        return Ok(members);
    }
    let entries = kv
        .scan(Table::Members, prefix_range(conv), false, usize::MAX)
        .map_err(StateError::Store)?;
    let members: Arc<[String]> = entries
        .into_iter()
        .map(|(key, _)| String::from_utf8_lossy(second_part(&key)).into_owned())
        .collect();
    if let Some(cache) = kv.member_cache() {
        cache.offer(conv, &members);
    }
    Ok(members)
}

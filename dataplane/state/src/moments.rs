//! Moments: posts a user shares with their friends, with likes and comments.
//!
//! A moment lives in its author's shard, next to the author's view of the friend graph
//! ([`crate::friends`]), so that whether a viewer may see, like or comment on it is decided
//! by one shard, deterministically. Its id carries its time and its author
//! (`m_<ms>_<random>_<author>`): the edge routes by the author and pages the merged feed by
//! time without asking anyone.

use dolphin_protocol::{Body, ErrorCode, MomentCommentItem, MomentEvent, MomentFrame, MomentItem};

use crate::event::{Event, Refusal};
use crate::friends;
use crate::kv::{self, Kv, KvRead, Table, pair_key};
use crate::machine::{StateError, StateResult};

/// The most comments one moment keeps; later ones are refused, keeping each record bounded.
pub const MAX_COMMENTS: usize = 1000;

/// A moment as its author's shard keeps it: the feed item itself, so that the feed hands out
/// what is stored.
pub type Moment = MomentItem;

/// The parts of a moment id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MomentId<'a> {
    /// Orders an author's moments by time: `<ms, 13 digits>_<random, 8 hex>`.
    pub order: &'a str,
    pub author: &'a str,
}

/// A new moment id for `author` at `ts`.
pub fn new_id(author: &str, ts: i64, random: u32) -> String {
    format!("m_{:013}_{random:08x}_{author}", ts.max(0))
}

/// Splits a moment id; `None` when it is not one.
pub fn parse_id(id: &str) -> Option<MomentId<'_>> {
    let rest = id.strip_prefix("m_")?;
    let (ms, rest) = rest.split_once('_')?;
    let (random, author) = rest.split_once('_')?;
    let valid = ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && random.len() == 8
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && dolphin_protocol::ids::is_valid_id(author);
    valid.then(|| MomentId { order: &id[2..2 + 13 + 1 + 8], author })
}

fn key(id: &MomentId<'_>) -> Vec<u8> {
    pair_key(id.author, id.order)
}

fn load<K: KvRead>(kv: &K, id: &MomentId<'_>) -> StateResult<Option<Moment>, K> {
    match kv.get(Table::Moments, &key(id)).map_err(StateError::Store)? {
        Some(bytes) => Ok(Some(kv::decode(Table::Moments, &bytes)?)),
        None => Ok(None),
    }
}

fn store<K: Kv>(kv: &mut K, id: &MomentId<'_>, moment: &Moment) -> StateResult<(), K> {
    kv.put(Table::Moments, &key(id), &kv::encode(moment)).map_err(StateError::Store)
}

type Step<K> = StateResult<Result<Vec<Event>, Refusal>, K>;

/// Records a new moment. A repeated id (a retried post) changes nothing.
pub fn post<K: Kv>(kv: &mut K, author: &str, id: &str, body: &Body, ts: i64) -> Step<K> {
    let Some(parsed) = parse_id(id).filter(|p| p.author == author) else {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "not a moment id of this author")));
    };
    if body.is_server_only() {
        return Ok(Err(Refusal::new(ErrorCode::BadRequest, "only the server writes this kind")));
    }
    if load(kv, &parsed)?.is_none() {
        let moment = Moment {
            id: id.to_owned(),
            author: author.to_owned(),
            ts,
            body: body.clone(),
            likes: Vec::new(),
            comments: Vec::new(),
        };
        store(kv, &parsed, &moment)?;
    }
    Ok(Ok(Vec::new()))
}

/// Loads a moment `user` may act on: refused when it does not exist, or when `user` is
/// neither its author nor one of the author's friends.
fn visible<K: KvRead>(kv: &K, user: &str, id: &str) -> StateResult<Result<Moment, Refusal>, K> {
    let not_found = || Refusal::new(ErrorCode::NotFound, "no such moment");
    let Some(parsed) = parse_id(id) else { return Ok(Err(not_found())) };
    let Some(moment) = load(kv, &parsed)? else { return Ok(Err(not_found())) };
    if !friends::shares_with(kv, parsed.author, user)? {
        let message = format!("only friends of {} see their moments", parsed.author);
        return Ok(Err(Refusal::new(ErrorCode::NotFriends, message)));
    }
    Ok(Ok(moment))
}

/// The push telling an author about a like or a comment.
fn notify(
    author: &str,
    user: &str,
    id: &str,
    event: MomentEvent,
    ts: i64,
    text: Option<&str>,
) -> Vec<Event> {
    if author == user {
        return Vec::new();
    }
    let push = MomentFrame {
        rid: None,
        id: id.to_owned(),
        ts: Some(ts),
        event: Some(event),
        user: Some(user.to_owned()),
        text: text.map(str::to_owned),
    };
    vec![Event::Moment { user: author.to_owned(), push }]
}

/// `user` likes a moment; liking twice counts once and notifies once.
pub fn like<K: Kv>(kv: &mut K, user: &str, id: &str, ts: i64) -> Step<K> {
    let mut moment = match visible(kv, user, id)? {
        Ok(moment) => moment,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if moment.likes.iter().any(|u| u == user) {
        return Ok(Ok(Vec::new()));
    }
    moment.likes.push(user.to_owned());
    if let Some(parsed) = parse_id(id) {
        store(kv, &parsed, &moment)?;
    }
    Ok(Ok(notify(&moment.author, user, id, MomentEvent::Like, ts, None)))
}

/// `user` comments on a moment.
pub fn comment<K: Kv>(kv: &mut K, user: &str, id: &str, text: &str, ts: i64) -> Step<K> {
    let mut moment = match visible(kv, user, id)? {
        Ok(moment) => moment,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if moment.comments.len() >= MAX_COMMENTS {
        let message = format!("a moment keeps at most {MAX_COMMENTS} comments");
        return Ok(Err(Refusal::new(ErrorCode::TooLarge, message)));
    }
    let item = MomentCommentItem { user: user.to_owned(), text: text.to_owned(), ts };
    moment.comments.push(item);
    if let Some(parsed) = parse_id(id) {
        store(kv, &parsed, &moment)?;
    }
    Ok(Ok(notify(&moment.author, user, id, MomentEvent::Comment, ts, Some(text))))
}

/// Up to `limit` of the newest moments of `authors` that `viewer` may see, older than the
/// moment `before` when given, newest first. Authors whose moments `viewer` may not see
/// (not a friend, by the author's view) are skipped.
pub fn feed<K: KvRead>(
    kv: &K,
    viewer: &str,
    authors: &[String],
    before: Option<&str>,
    limit: usize,
) -> StateResult<Vec<MomentItem>, K> {
    let cursor = before.and_then(parse_id).map(|id| id.order.to_owned());
    let mut items: Vec<(String, Moment)> = Vec::new();
    for author in authors {
        if !friends::shares_with(kv, author, viewer)? {
            continue;
        }
        let (start, mut end) = kv::prefix_range(author);
        if let Some(order) = &cursor {
            end = std::ops::Bound::Excluded(pair_key(author, order));
        }
        let entries =
            kv.scan(Table::Moments, (start, end), true, limit).map_err(StateError::Store)?;
        for (key, value) in entries {
            let order = String::from_utf8_lossy(kv::second_part(&key)).into_owned();
            items.push((order, kv::decode(Table::Moments, &value)?));
        }
    }
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.author.cmp(&a.1.author)));
    items.truncate(limit);
    Ok(items.into_iter().map(|(_, moment)| moment).collect())
}

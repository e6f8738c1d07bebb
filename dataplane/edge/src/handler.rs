//! What each client frame asks for: checks that need no ordering happen here, at once; the
//! rest becomes a command for a shard or a query of one.

use std::collections::BTreeSet;
use std::sync::Arc;

use dolphin_protocol::ids::{self, ConvRef};
use dolphin_protocol::{
    ClientFrame, DEFAULT_FETCH_LIMIT, ErrorCode, MAX_FETCH_LIMIT, Messages, ServerFrame, TypingPush,
};
use dolphin_sequencer::ShardError;
use dolphin_sequencer::query::{Answer, Query};
use dolphin_state::query::Direction;
use dolphin_state::{Command, Outcome, moments};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::backend::Backend;
use crate::config::{EdgeConfig, MAX_COMMENT_CHARS, MAX_FEED_LIMIT, MAX_TITLE_CHARS};
use crate::frame::SharedFrame;
use crate::metrics::EdgeMetrics;
use crate::sessions::Sessions;

/// What an edge shares among its connections.
#[derive(Debug)]
pub struct Context {
    pub config: EdgeConfig,
    pub backend: Arc<Backend>,
    /// Where sends are queued for their shards, and notices travel between edges.
    pub queue: dolphin_queue::Queue,
    pub sessions: Arc<Sessions>,
    pub metrics: EdgeMetrics,
    pub limiter: DefaultKeyedRateLimiter<String>,
    /// The calls this edge knows of, from the notices of every edge.
    pub calls: crate::calls::Calls,
    /// Where users are online, from the presence announcements of every edge.
    pub presence: crate::presence::Directory,
    /// Names this edge in presence announcements; random per process.
    pub edge_id: u64,
}

impl Context {
    pub fn new(
        config: EdgeConfig,
        backend: Arc<Backend>,
        queue: dolphin_queue::Queue,
        metrics: EdgeMetrics,
    ) -> Self {
        let rate =
            std::num::NonZeroU32::new(config.send_rate_per_sec.max(1)).unwrap_or(nonzero_one());
        let burst = std::num::NonZeroU32::new(config.send_burst.max(1)).unwrap_or(nonzero_one());
        let limiter = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst));
        Context {
            config,
            backend,
            queue,
            sessions: Arc::new(Sessions::default()),
            metrics,
            limiter,
            calls: crate::calls::Calls::default(),
            presence: crate::presence::Directory::default(),
            edge_id: rand::random(),
        }
    }
}

fn nonzero_one() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::MIN
}

/// Who is asking.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: String,
    pub device: String,
}

/// What the connection must do with a frame.
#[derive(Debug)]
pub enum Action {
    /// Answer at once.
    Reply(ServerFrame),
    /// Propose a send; `accepted` or an error follows.
    Send { rid: String, cid: String, command: Command },
    /// Run a request that needs a shard; its reply follows.
    Request(ClientFrame),
    /// Relay a typing notice.
    Typing { conv: String },
}

fn bad(rid: &str, message: impl Into<String>) -> Action {
    Action::Reply(ServerFrame::error(Some(rid.to_owned()), ErrorCode::BadRequest, message))
}

/// Milliseconds since the Unix epoch: the timestamp stamped on commands.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Checks a frame and decides what to do with it.
pub fn prepare(ctx: &Context, caller: &Caller, frame: ClientFrame) -> Action {
    match frame {
        ClientFrame::Send(send) => {
            if let Err(error) = ids::check_cid(&send.cid) {
                return bad(&send.rid, error.to_string());
            }
            if let Err(error) = ConvRef::parse(&send.conv) {
                return bad(&send.rid, error.to_string());
            }
            if send.body.is_server_only() {
                return bad(
                    &send.rid,
                    format!("only the server writes {} bodies", send.body.kind()),
                );
            }
            let size = serde_json::to_vec(&send.body).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > ctx.config.max_body_bytes {
                let message = format!(
                    "the body is {size} bytes encoded, over the limit of {}",
                    ctx.config.max_body_bytes
                );
                return Action::Reply(ServerFrame::error(
                    Some(send.rid),
                    ErrorCode::TooLarge,
                    message,
                ));
            }
            if ctx.limiter.check_key(&caller.user).is_err() {
                return Action::Reply(ServerFrame::error(
                    Some(send.rid),
                    ErrorCode::RateLimited,
                    "sending too fast; retry shortly",
                ));
            }
            let command = Command::Send {
                conv: send.conv,
                from: caller.user.clone(),
                device: caller.device.clone(),
                cid: send.cid.clone(),
                body: send.body,
                ts: now_ms(),
            };
            Action::Send { rid: send.rid, cid: send.cid, command }
        }
        ClientFrame::Ping(ping) => {
            Action::Reply(ServerFrame::Pong(dolphin_protocol::Ok { rid: ping.rid }))
        }
        ClientFrame::Typing(typing) => Action::Typing { conv: typing.conv },
        ClientFrame::Fetch(fetch) => {
            if fetch.after.is_some() && fetch.before.is_some() {
                return bad(&fetch.rid, "give after or before, not both");
            }
            if let Some(limit) = fetch.limit
                && !(1..=MAX_FETCH_LIMIT).contains(&limit)
            {
                return bad(&fetch.rid, format!("limit must be 1 to {MAX_FETCH_LIMIT}"));
            }
            Action::Request(ClientFrame::Fetch(fetch))
        }
        ClientFrame::Sync(sync) => {
            if let Some(limit) = sync.limit
                && !(1..=MAX_FETCH_LIMIT).contains(&limit)
            {
                return bad(&sync.rid, format!("limit must be 1 to {MAX_FETCH_LIMIT}"));
            }
            Action::Request(ClientFrame::Sync(sync))
        }
        ClientFrame::GroupCreate(create) => {
            if create.title.chars().count() > MAX_TITLE_CHARS {
                return bad(
                    &create.rid,
                    format!("a title is at most {MAX_TITLE_CHARS} characters"),
                );
            }
            if let Some(bad_id) = create.members.iter().find(|m| !ids::is_valid_id(m)) {
                return bad(&create.rid, format!("invalid user id {bad_id:?}"));
            }
            Action::Request(ClientFrame::GroupCreate(create))
        }
        ClientFrame::GroupAdd(change) | ClientFrame::GroupRemove(change)
            if change.members.iter().any(|m| !ids::is_valid_id(m)) =>
        {
            bad(&change.rid, "members must be valid user ids")
        }
        frame @ (ClientFrame::Read(_)
        | ClientFrame::Recall(_)
        | ClientFrame::GroupAdd(_)
        | ClientFrame::GroupRemove(_)
        | ClientFrame::GroupLeave(_)
        | ClientFrame::GroupInfo(_)) => Action::Request(frame),
        ClientFrame::FriendRequest(ask) => match (&ask.code, &ask.user) {
            (Some(_), Some(_)) | (None, None) => bad(&ask.rid, "give code or user, not both"),
            (None, Some(user)) if !ids::is_valid_id(user) => {
                bad(&ask.rid, format!("invalid user id {user:?}"))
            }
            (None, Some(user)) if *user == caller.user => {
                bad(&ask.rid, "a user cannot befriend themselves")
            }
            _ => Action::Request(ClientFrame::FriendRequest(ask)),
        },
        ClientFrame::FriendAccept(about) | ClientFrame::FriendRemove(about)
            if !ids::is_valid_id(&about.user) || about.user == caller.user =>
        {
            bad(&about.rid, "user must be the id of another user")
        }
        ClientFrame::MomentPost(post) => {
            if post.body.is_server_only() {
                return bad(
                    &post.rid,
                    format!("only the server writes {} bodies", post.body.kind()),
                );
            }
            let size = serde_json::to_vec(&post.body).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > ctx.config.max_body_bytes {
                let message = format!(
                    "the body is {size} bytes encoded, over the limit of {}",
                    ctx.config.max_body_bytes
                );
                return Action::Reply(ServerFrame::error(
                    Some(post.rid),
                    ErrorCode::TooLarge,
                    message,
                ));
            }
            Action::Request(ClientFrame::MomentPost(post))
        }
        ClientFrame::MomentFeed(feed) => {
            if let Some(limit) = feed.limit
                && !(1..=MAX_FEED_LIMIT).contains(&limit)
            {
                return bad(&feed.rid, format!("limit must be 1 to {MAX_FEED_LIMIT}"));
            }
            if feed.before.as_deref().is_some_and(|id| moments::parse_id(id).is_none()) {
                return bad(&feed.rid, "before must be the id of a moment");
            }
            if feed.user.as_deref().is_some_and(|u| !ids::is_valid_id(u)) {
                return bad(&feed.rid, "user must be a valid user id");
            }
            Action::Request(ClientFrame::MomentFeed(feed))
        }
        ClientFrame::MomentLike(like) if moments::parse_id(&like.id).is_none() => {
            bad(&like.rid, "not a moment id")
        }
        ClientFrame::MomentComment(comment) => {
            if moments::parse_id(&comment.id).is_none() {
                return bad(&comment.rid, "not a moment id");
            }
            let chars = comment.text.chars().count();
            if chars == 0 || chars > MAX_COMMENT_CHARS {
                let message = format!("a comment is 1 to {MAX_COMMENT_CHARS} characters");
                return bad(&comment.rid, message);
            }
            Action::Request(ClientFrame::MomentComment(comment))
        }
        frame @ (ClientFrame::FriendInvite(_)
        | ClientFrame::FriendAccept(_)
        | ClientFrame::FriendRemove(_)
        | ClientFrame::FriendList(_)
        | ClientFrame::MomentLike(_)) => Action::Request(frame),
        frame @ (ClientFrame::CallInvite(_)
        | ClientFrame::CallAccept(_)
        | ClientFrame::CallReject(_)
        | ClientFrame::CallIce(_)
        | ClientFrame::CallHangup(_)) => match crate::calls::check(&frame) {
            Ok(()) => Action::Request(frame),
            Err(message) => bad(frame.rid().unwrap_or_default(), message),
        },
    }
}

pub(crate) fn unavailable(rid: &str, error: &ShardError) -> ServerFrame {
    ServerFrame::error(Some(rid.to_owned()), error.code(), error.to_string())
}

pub(crate) fn refused(rid: &str, refusal: dolphin_state::Refusal) -> ServerFrame {
    ServerFrame::error(Some(rid.to_owned()), refusal.code, refusal.message)
}

/// Runs a request that needs a shard and produces its reply.
pub async fn request(ctx: &Context, caller: &Caller, frame: ClientFrame) -> ServerFrame {
    match frame {
        ClientFrame::Fetch(fetch) => {
            let direction = match fetch.before {
                Some(before) => Direction::Before(before),
                None => Direction::After(fetch.after.unwrap_or(0)),
            };
            let query = Query::Fetch {
                user: caller.user.clone(),
                conv: fetch.conv.clone(),
                direction,
                limit: fetch.limit.unwrap_or(DEFAULT_FETCH_LIMIT),
            };
            match ctx.backend.query(&fetch.conv, query).await {
                Ok(Answer::Page { result: Ok(page) }) => ServerFrame::Messages(Messages {
                    rid: fetch.rid,
                    conv: fetch.conv,
                    max_seq: page.max_seq,
                    messages: page.messages,
                }),
                Ok(Answer::Page { result: Err(refusal) }) => refused(&fetch.rid, refusal),
                Ok(_) => internal(&fetch.rid),
                Err(error) => unavailable(&fetch.rid, &error),
            }
        }
        ClientFrame::Sync(sync) => {
            let limit = sync.limit.unwrap_or(MAX_FETCH_LIMIT);
            match ctx.backend.sync(&caller.user, sync.cursor, limit).await {
                Ok((items, next)) => ServerFrame::Conversations(dolphin_protocol::Conversations {
                    rid: sync.rid,
                    next,
                    items,
                }),
                Err(error) => unavailable(&sync.rid, &error),
            }
        }
        ClientFrame::GroupInfo(info) => {
            let query = Query::GroupInfo { user: caller.user.clone(), conv: info.conv.clone() };
            match ctx.backend.query(&info.conv, query).await {
                Ok(Answer::Group { result: Ok(mut group) }) => {
                    group.rid = Some(info.rid);
                    ServerFrame::Group(group)
                }
                Ok(Answer::Group { result: Err(refusal) }) => refused(&info.rid, refusal),
                Ok(_) => internal(&info.rid),
                Err(error) => unavailable(&info.rid, &error),
            }
        }
        ClientFrame::GroupCreate(create) => {
            let conv = format!("g:{:016x}", rand::random::<u64>());
            let members: BTreeSet<String> = create.members.into_iter().collect();
            let command = Command::GroupCreate {
                conv,
                owner: caller.user.clone(),
                device: caller.device.clone(),
                title: create.title,
                members: members.into_iter().collect(),
                ts: now_ms(),
            };
            command_reply(ctx, &create.rid, command).await
        }
        ClientFrame::GroupAdd(change) => {
            let command = Command::GroupAdd {
                conv: change.conv,
                user: caller.user.clone(),
                device: caller.device.clone(),
                members: change.members,
                ts: now_ms(),
            };
            command_reply(ctx, &change.rid, command).await
        }
        ClientFrame::GroupRemove(change) => {
            let command = Command::GroupRemove {
                conv: change.conv,
                user: caller.user.clone(),
                device: caller.device.clone(),
                members: change.members,
                ts: now_ms(),
            };
            command_reply(ctx, &change.rid, command).await
        }
        ClientFrame::GroupLeave(leave) => {
            let command = Command::GroupLeave {
                conv: leave.conv,
                user: caller.user.clone(),
                device: caller.device.clone(),
                ts: now_ms(),
            };
            command_reply(ctx, &leave.rid, command).await
        }
        ClientFrame::Read(read) => {
            let command = Command::Read {
                conv: read.conv,
                user: caller.user.clone(),
                device: caller.device.clone(),
                seq: read.seq,
            };
            command_reply(ctx, &read.rid, command).await
        }
        ClientFrame::Recall(recall) => {
            let command = Command::Recall {
                conv: recall.conv,
                user: caller.user.clone(),
                device: caller.device.clone(),
                seq: recall.seq,
                ts: now_ms(),
            };
            command_reply(ctx, &recall.rid, command).await
        }
        ClientFrame::FriendInvite(ask) => crate::social::invite(ctx, caller, ask.rid),
        ClientFrame::FriendRequest(ask) => crate::social::request(ctx, caller, ask).await,
        ClientFrame::FriendAccept(about) => {
            let command = Command::FriendAccept {
                user: caller.user.clone(),
                friend: about.user,
                ts: now_ms(),
            };
            command_reply(ctx, &about.rid, command).await
        }
        ClientFrame::FriendRemove(about) => {
            let command = Command::FriendRemove {
                user: caller.user.clone(),
                friend: about.user,
                ts: now_ms(),
            };
            command_reply(ctx, &about.rid, command).await
        }
        ClientFrame::FriendList(ask) => crate::social::list(ctx, caller, ask.rid).await,
        ClientFrame::MomentPost(post) => {
            let ts = now_ms();
            let id = moments::new_id(&caller.user, ts, rand::random());
            let command =
                Command::MomentPost { author: caller.user.clone(), id, body: post.body, ts };
            command_reply(ctx, &post.rid, command).await
        }
        ClientFrame::MomentFeed(feed) => crate::social::feed(ctx, caller, feed).await,
        ClientFrame::MomentLike(like) => {
            let author = moments::parse_id(&like.id).map(|id| id.author.to_owned());
            let command = Command::MomentLike {
                user: caller.user.clone(),
                author: author.unwrap_or_default(),
                id: like.id,
                ts: now_ms(),
            };
            command_reply(ctx, &like.rid, command).await
        }
        ClientFrame::MomentComment(comment) => {
            let author = moments::parse_id(&comment.id).map(|id| id.author.to_owned());
            let command = Command::MomentComment {
                user: caller.user.clone(),
                author: author.unwrap_or_default(),
                id: comment.id,
                text: comment.text,
                ts: now_ms(),
            };
            command_reply(ctx, &comment.rid, command).await
        }
        frame @ (ClientFrame::CallInvite(_)
        | ClientFrame::CallAccept(_)
        | ClientFrame::CallReject(_)
        | ClientFrame::CallIce(_)
        | ClientFrame::CallHangup(_)) => crate::calls::request(ctx, caller, frame).await,
        other => {
            let rid = other.rid().unwrap_or_default();
            ServerFrame::error(Some(rid.to_owned()), ErrorCode::BadRequest, "not a request")
        }
    }
}

pub(crate) fn internal(rid: &str) -> ServerFrame {
    ServerFrame::error(
        Some(rid.to_owned()),
        ErrorCode::Internal,
        "the shard answered another question",
    )
}

pub(crate) async fn command_reply(ctx: &Context, rid: &str, command: Command) -> ServerFrame {
    if let Some(conv) = command.conv()
        && let Err(error) = ConvRef::parse(conv)
    {
        return ServerFrame::error(Some(rid.to_owned()), ErrorCode::BadRequest, error.to_string());
    }
    match ctx.backend.submit(command).await {
        Ok(applied) => match applied.outcome {
            Outcome::Group(mut group) => {
                group.rid = Some(rid.to_owned());
                ServerFrame::Group(group)
            }
            Outcome::Moment { id, ts } => ServerFrame::Moment(dolphin_protocol::MomentFrame {
                rid: Some(rid.to_owned()),
                id,
                ts: Some(ts),
                event: None,
                user: None,
                text: None,
            }),
            Outcome::Refused(refusal) => refused(rid, refusal),
            Outcome::Done | Outcome::Sent { .. } => ServerFrame::ok(rid),
        },
        Err(error) => unavailable(rid, &error),
    }
}

/// A notice relayed between edges and never stored.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// `user` is typing in `conv`; pushed to `recipients`' devices.
    Typing { conv: String, user: String, recipients: Vec<String> },
    /// A step of a call, applied by every edge in bus order.
    Call(crate::calls::CallNotice),
    /// A user came online on an edge, or left it.
    Presence(crate::presence::Announcement),
    /// An edge repeats which users it holds.
    PresenceBeat(crate::presence::Beat),
}

/// Relays a typing notice to the other members' devices, on every edge.
pub async fn typing(ctx: &Context, caller: &Caller, conv: String) {
    let members = match ConvRef::parse(&conv) {
        Ok(ConvRef::Direct(a, b)) if a == caller.user || b == caller.user => {
            vec![a.to_owned(), b.to_owned()]
        }
        Ok(ConvRef::Group(_)) => {
            let query = Query::Members { user: caller.user.clone(), conv: conv.clone() };
            match ctx.backend.query(&conv, query).await {
                Ok(Answer::Members { members: Some(members) }) => members,
                _ => return,
            }
        }
        _ => return,
    };
    let recipients = members.into_iter().filter(|m| *m != caller.user).collect();
    let notice = Notice::Typing { conv, user: caller.user.clone(), recipients };
    // Typing is best effort: a notice the queue cannot take is dropped.
    if let Ok(bytes) = rmp_serde::to_vec_named(&notice)
        && let Err(error) = ctx.queue.publish(bytes.into()).await
    {
        tracing::debug!(%error, "a typing notice was dropped");
    }
}

/// Pushes a notice from any edge to the devices it concerns on this one.
pub fn deliver_notice(ctx: &Arc<Context>, bytes: &[u8]) {
    let Ok(notice) = rmp_serde::from_slice::<Notice>(bytes) else { return };
    match notice {
        Notice::Typing { conv, user, recipients } => {
            let frame = Arc::new(SharedFrame::new(ServerFrame::Typing(TypingPush { conv, user })));
            ctx.sessions.deliver(recipients.iter().map(String::as_str), &frame, None);
        }
        Notice::Call(notice) => crate::calls::apply(ctx, notice),
        Notice::Presence(announcement) => crate::presence::deliver(ctx, announcement),
        Notice::PresenceBeat(beat) => ctx.presence.beat(&beat),
    }
}

//! Every frame of the protocol, as one enum per direction tagged by `type`.
//!
//! Unknown fields are ignored on decoding, so that clients and servers of later versions can
//! add fields. Optional fields are left out of the encoding when empty.

use serde::{Deserialize, Serialize};

use crate::body::{Body, Media};
use crate::error::ErrorCode;

/// A frame sent by a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientFrame {
    #[serde(rename = "send")]
    Send(Send),
    #[serde(rename = "fetch")]
    Fetch(Fetch),
    #[serde(rename = "sync")]
    Sync(Sync),
    #[serde(rename = "read")]
    Read(ReadReq),
    #[serde(rename = "recall")]
    Recall(Recall),
    #[serde(rename = "typing")]
    Typing(TypingReq),
    #[serde(rename = "ping")]
    Ping(Ping),
    #[serde(rename = "group.create")]
    GroupCreate(GroupCreate),
    #[serde(rename = "group.add")]
    GroupAdd(GroupMembers),
    #[serde(rename = "group.remove")]
    GroupRemove(GroupMembers),
    #[serde(rename = "group.leave")]
    GroupLeave(ConvReq),
    #[serde(rename = "group.info")]
    GroupInfo(ConvReq),
    #[serde(rename = "friend.invite")]
    FriendInvite(Ping),
    #[serde(rename = "friend.request")]
    FriendRequest(FriendRequest),
    #[serde(rename = "friend.accept")]
    FriendAccept(UserReq),
    #[serde(rename = "friend.remove")]
    FriendRemove(UserReq),
    #[serde(rename = "friend.list")]
    FriendList(Ping),
    #[serde(rename = "moment.post")]
    MomentPost(MomentPost),
    #[serde(rename = "moment.feed")]
    MomentFeed(MomentFeed),
    #[serde(rename = "moment.like")]
    MomentLike(MomentRef),
    #[serde(rename = "moment.comment")]
    MomentComment(MomentComment),
    #[serde(rename = "call.invite")]
    CallInvite(CallInvite),
    #[serde(rename = "call.accept")]
    CallAccept(CallAnswer),
    #[serde(rename = "call.reject")]
    CallReject(CallRef),
    #[serde(rename = "call.ice")]
    CallIce(CallIce),
    #[serde(rename = "call.hangup")]
    CallHangup(CallRef),
}

/// The `type` of every client frame, for telling an unknown type from a malformed frame.
pub const CLIENT_FRAME_TYPES: &[&str] = &[
    "send",
    "fetch",
    "sync",
    "read",
    "recall",
    "typing",
    "ping",
    "group.create",
    "group.add",
    "group.remove",
    "group.leave",
    "group.info",
    "friend.invite",
    "friend.request",
    "friend.accept",
    "friend.remove",
    "friend.list",
    "moment.post",
    "moment.feed",
    "moment.like",
    "moment.comment",
    "call.invite",
    "call.accept",
    "call.reject",
    "call.ice",
    "call.hangup",
];

impl ClientFrame {
    /// The request id, which every frame except `typing` carries.
    pub fn rid(&self) -> Option<&str> {
        Some(match self {
            ClientFrame::Send(f) => &f.rid,
            ClientFrame::Fetch(f) => &f.rid,
            ClientFrame::Sync(f) => &f.rid,
            ClientFrame::Read(f) => &f.rid,
            ClientFrame::Recall(f) => &f.rid,
            ClientFrame::Typing(_) => return None,
            ClientFrame::Ping(f) | ClientFrame::FriendInvite(f) | ClientFrame::FriendList(f) => {
                &f.rid
            }
            ClientFrame::GroupCreate(f) => &f.rid,
            ClientFrame::GroupAdd(f) | ClientFrame::GroupRemove(f) => &f.rid,
            ClientFrame::GroupLeave(f) | ClientFrame::GroupInfo(f) => &f.rid,
            ClientFrame::FriendRequest(f) => &f.rid,
            ClientFrame::FriendAccept(f) | ClientFrame::FriendRemove(f) => &f.rid,
            ClientFrame::MomentPost(f) => &f.rid,
            ClientFrame::MomentFeed(f) => &f.rid,
            ClientFrame::MomentLike(f) => &f.rid,
            ClientFrame::MomentComment(f) => &f.rid,
            ClientFrame::CallInvite(f) => &f.rid,
            ClientFrame::CallAccept(f) => &f.rid,
            ClientFrame::CallReject(f) | ClientFrame::CallHangup(f) => &f.rid,
            ClientFrame::CallIce(f) => &f.rid,
        })
    }

    /// The `type` tag, for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Send(_) => "send",
            ClientFrame::Fetch(_) => "fetch",
            ClientFrame::Sync(_) => "sync",
            ClientFrame::Read(_) => "read",
            ClientFrame::Recall(_) => "recall",
            ClientFrame::Typing(_) => "typing",
            ClientFrame::Ping(_) => "ping",
            ClientFrame::GroupCreate(_) => "group.create",
            ClientFrame::GroupAdd(_) => "group.add",
            ClientFrame::GroupRemove(_) => "group.remove",
            ClientFrame::GroupLeave(_) => "group.leave",
            ClientFrame::GroupInfo(_) => "group.info",
            ClientFrame::FriendInvite(_) => "friend.invite",
            ClientFrame::FriendRequest(_) => "friend.request",
            ClientFrame::FriendAccept(_) => "friend.accept",
            ClientFrame::FriendRemove(_) => "friend.remove",
            ClientFrame::FriendList(_) => "friend.list",
            ClientFrame::MomentPost(_) => "moment.post",
            ClientFrame::MomentFeed(_) => "moment.feed",
            ClientFrame::MomentLike(_) => "moment.like",
            ClientFrame::MomentComment(_) => "moment.comment",
            ClientFrame::CallInvite(_) => "call.invite",
            ClientFrame::CallAccept(_) => "call.accept",
            ClientFrame::CallReject(_) => "call.reject",
            ClientFrame::CallIce(_) => "call.ice",
            ClientFrame::CallHangup(_) => "call.hangup",
        }
    }
}

/// `send`: a new message for a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Send {
    pub rid: String,
    pub conv: String,
    pub cid: String,
    pub body: Body,
}

/// `fetch`: a page of a conversation's messages, after or before a seq.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    pub rid: String,
    pub conv: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `sync`: a page of the user's conversations with their positions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sync {
    pub rid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `read`: the user has read a conversation up to `seq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReadReq {
    pub rid: String,
    pub conv: String,
    pub seq: u64,
}

/// `recall`: withdraw one's own message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    pub rid: String,
    pub conv: String,
    pub seq: u64,
}

/// `typing`: the user is typing; relayed, never stored, never answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypingReq {
    pub conv: String,
}

/// A request that carries nothing but its id (`ping`, `friend.invite`, `friend.list`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub rid: String,
}

/// `group.create`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupCreate {
    pub rid: String,
    pub title: String,
    #[serde(default)]
    pub members: Vec<String>,
}

/// `group.add` and `group.remove`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupMembers {
    pub rid: String,
    pub conv: String,
    pub members: Vec<String>,
}

/// A request about one conversation (`group.leave`, `group.info`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvReq {
    pub rid: String,
    pub conv: String,
}

/// `friend.request`, by a scanned code or by user id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FriendRequest {
    pub rid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A request about one other user (`friend.accept`, `friend.remove`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserReq {
    pub rid: String,
    pub user: String,
}

/// `moment.post`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MomentPost {
    pub rid: String,
    pub body: Body,
}

/// `moment.feed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MomentFeed {
    pub rid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Only this user's moments (an addition to the protocol): themselves or a friend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `moment.like`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MomentRef {
    pub rid: String,
    pub id: String,
}

/// `moment.comment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MomentComment {
    pub rid: String,
    pub id: String,
    pub text: String,
}

/// `call.invite`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallInvite {
    pub rid: String,
    pub conv: String,
    pub call: String,
    pub media: Media,
    pub sdp: String,
}

/// `call.accept`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallAnswer {
    pub rid: String,
    pub call: String,
    pub sdp: String,
}

/// `call.reject` and `call.hangup`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRef {
    pub rid: String,
    pub call: String,
}

/// `call.ice`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallIce {
    pub rid: String,
    pub call: String,
    pub candidate: serde_json::Value,
}

/// A frame sent by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerFrame {
    #[serde(rename = "hello")]
    Hello(Hello),
    #[serde(rename = "ok")]
    Ok(Ok),
    #[serde(rename = "pong")]
    Pong(Ok),
    #[serde(rename = "error")]
    Error(Error),
    #[serde(rename = "accepted")]
    Accepted(Accepted),
    #[serde(rename = "msg")]
    Msg(Message),
    #[serde(rename = "rejected")]
    Rejected(Rejected),
    #[serde(rename = "messages")]
    Messages(Messages),
    #[serde(rename = "conversations")]
    Conversations(Conversations),
    #[serde(rename = "read")]
    Read(ReadPush),
    #[serde(rename = "typing")]
    Typing(TypingPush),
    #[serde(rename = "group")]
    Group(Group),
    #[serde(rename = "invite")]
    Invite(Invite),
    #[serde(rename = "friend")]
    Friend(FriendPush),
    #[serde(rename = "friends")]
    Friends(Friends),
    #[serde(rename = "moment")]
    Moment(MomentFrame),
    #[serde(rename = "feed")]
    Feed(Feed),
    #[serde(rename = "presence")]
    Presence(Presence),
    #[serde(rename = "call.invite")]
    CallInvite(CallSignal),
    #[serde(rename = "call.accept")]
    CallAccept(CallSignal),
    #[serde(rename = "call.reject")]
    CallReject(CallSignal),
    #[serde(rename = "call.ice")]
    CallIce(CallSignal),
    #[serde(rename = "call.hangup")]
    CallHangup(CallSignal),
    #[serde(rename = "call.ended")]
    CallEnded(CallEnded),
}

impl ServerFrame {
    /// An `error` reply.
    pub fn error(rid: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerFrame::Error(Error { rid, code, message: message.into() })
    }

    /// An `ok` reply.
    pub fn ok(rid: impl Into<String>) -> Self {
        ServerFrame::Ok(Ok { rid: rid.into() })
    }

    /// The request id, for replies.
    pub fn rid(&self) -> Option<&str> {
        match self {
            ServerFrame::Ok(f) | ServerFrame::Pong(f) => Some(&f.rid),
            ServerFrame::Error(f) => f.rid.as_deref(),
            ServerFrame::Accepted(f) => Some(&f.rid),
            ServerFrame::Messages(f) => Some(&f.rid),
            ServerFrame::Conversations(f) => Some(&f.rid),
            ServerFrame::Group(f) => f.rid.as_deref(),
            ServerFrame::Invite(f) => Some(&f.rid),
            ServerFrame::Friends(f) => Some(&f.rid),
            ServerFrame::Moment(f) => f.rid.as_deref(),
            ServerFrame::Feed(f) => Some(&f.rid),
            _ => None,
        }
    }

    /// The `type` tag, for metrics and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Hello(_) => "hello",
            ServerFrame::Ok(_) => "ok",
            ServerFrame::Pong(_) => "pong",
            ServerFrame::Error(_) => "error",
            ServerFrame::Accepted(_) => "accepted",
            ServerFrame::Msg(_) => "msg",
            ServerFrame::Rejected(_) => "rejected",
            ServerFrame::Messages(_) => "messages",
            ServerFrame::Conversations(_) => "conversations",
            ServerFrame::Read(_) => "read",
            ServerFrame::Typing(_) => "typing",
            ServerFrame::Group(_) => "group",
            ServerFrame::Invite(_) => "invite",
            ServerFrame::Friend(_) => "friend",
            ServerFrame::Friends(_) => "friends",
            ServerFrame::Moment(_) => "moment",
            ServerFrame::Feed(_) => "feed",
            ServerFrame::Presence(_) => "presence",
            ServerFrame::CallInvite(_) => "call.invite",
            ServerFrame::CallAccept(_) => "call.accept",
            ServerFrame::CallReject(_) => "call.reject",
            ServerFrame::CallIce(_) => "call.ice",
            ServerFrame::CallHangup(_) => "call.hangup",
            ServerFrame::CallEnded(_) => "call.ended",
        }
    }
}

/// `hello`: the server's first frame on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub user: String,
    pub device: String,
    /// Names the cluster's data; a new value means cached seqs are void.
    pub epoch: String,
    pub heartbeat_ms: u64,
}

/// `ok` (and `pong`): a request succeeded and has nothing more to say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ok {
    pub rid: String,
}

/// `error`: a request failed. `rid` is null when the frame was too malformed to carry one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub rid: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

/// `accepted`: the message is durably queued, not yet ordered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub rid: String,
    pub cid: String,
}

/// A message as pushed (`msg`) and as fetched (an item of `messages`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub conv: String,
    pub seq: u64,
    pub from: String,
    pub device: String,
    pub cid: String,
    /// Milliseconds since the Unix epoch; never decreases along a conversation's seqs.
    pub ts: i64,
    pub body: Body,
}

/// `rejected`: ordering refused a message that was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    pub conv: String,
    pub cid: String,
    pub code: ErrorCode,
    pub message: String,
}

/// `messages`: the reply to `fetch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    pub rid: String,
    pub conv: String,
    pub max_seq: u64,
    pub messages: Vec<Message>,
}

/// `conversations`: the reply to `sync`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversations {
    pub rid: String,
    /// The cursor of the next page, or null on the last page.
    pub next: Option<String>,
    pub items: Vec<ConversationItem>,
}

/// One conversation in a `sync` page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationItem {
    pub conv: String,
    pub kind: ConvKind,
    pub title: String,
    pub max_seq: u64,
    pub read_seq: u64,
}

/// Whether a conversation is direct or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvKind {
    Direct,
    Group,
}

/// `read` pushed: a user's read position moved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPush {
    pub conv: String,
    pub user: String,
    pub seq: u64,
}

/// `typing` pushed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingPush {
    pub conv: String,
    pub user: String,
}

/// `group`: a group's title, owner and members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    pub conv: String,
    pub title: String,
    pub owner: String,
    pub members: Vec<String>,
}

/// `invite`: the reply to `friend.invite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub rid: String,
    pub code: String,
    pub link: String,
    pub qr_svg: String,
}

/// `friend` pushed: a friend request arrived, or one was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendPush {
    pub event: FriendEvent,
    pub user: String,
}

/// What a `friend` push reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FriendEvent {
    Request,
    Accepted,
    Removed,
}

/// `friends`: the reply to `friend.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Friends {
    pub rid: String,
    pub friends: Vec<String>,
    pub incoming: Vec<String>,
    pub outgoing: Vec<String>,
}

/// `moment`: the reply to `moment.post` (with `rid`, `id`, `ts`), or a notification to the
/// author (with `event`, `id`, `user`, and `text` for comments).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MomentFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<MomentEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What a `moment` notification reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentEvent {
    Like,
    Comment,
}

/// `feed`: the reply to `moment.feed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    pub rid: String,
    pub items: Vec<MomentItem>,
}

/// One post in a `feed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MomentItem {
    pub id: String,
    pub author: String,
    pub ts: i64,
    pub body: Body,
    pub likes: Vec<String>,
    pub comments: Vec<MomentCommentItem>,
}

/// One comment on a post.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MomentCommentItem {
    pub user: String,
    pub text: String,
    pub ts: i64,
}

/// `presence` pushed: a friend came online or went offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub user: String,
    pub online: bool,
}

/// A call signal relayed to the other party, with `from` added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallSignal {
    pub call: String,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// `call.ended`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEnded {
    pub call: String,
    pub reason: String,
}

//! Call signaling: invites, answers, candidates and hang-ups relayed between devices on any edge.
//!
//! Every call frame becomes a [`CallNotice`] on the notice bus that all edges share, and every
//! edge applies the notices it receives to its own [`Table`] in the order the bus delivers them.
//! The bus delivers one order to every subscriber, so the tables agree, and the verdict a client
//! gets (`ok` or an error) is the one its own edge reached when the notice came back to it:
//! when two devices accept at once, on any edges, the one whose notice the bus carried first
//! wins and the other is refused.
//!
//! Who is in a call:
//! - the caller is one device: the one that sent `call.invite`;
//! - the callees are the other members of the conversation; all their online devices ring;
//! - once a callee device accepts, it is the other party, and the callees' other devices (in a
//!   group, every other member's) get `call.ended` with reason `answered_elsewhere`.
//!
//! A call ends by a hang-up of either party, a rejection by every callee, the ring timeout, or a
//! party's device disconnecting; the edge whose notice ended it writes the `call` message into
//! the conversation, with a cid derived from the call id so that a repeat makes no second one.
//!
//! NOTE: the tables live in the edges' memory and the bus is not durable: an edge that restarts,
//! or that misses notices while cut off from the bus, does not know the calls begun before, and
//! its devices get `not_found` for them. A call whose parties both lose their edges ends with no
//! `call` message. Keeping calls in the shard of their conversation would lift both limits, at
//! the price of a Raft commit per signal.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dolphin_protocol::ids::{self, ConvRef};
use dolphin_protocol::{Body, CallEnded, CallOutcome, CallSignal, ClientFrame, ErrorCode};
use dolphin_protocol::{Media, ServerFrame};
use dolphin_sequencer::query::{Answer, Query};
use dolphin_state::Command;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::frame::SharedFrame;
use crate::handler::{Caller, Context, Notice, now_ms};
use crate::ice::IceConfig;

/// How long an invite rings before the call ends as missed.
pub const RING_TIMEOUT: Duration = Duration::from_secs(45);

/// The largest session description accepted in an invite or an answer. Real offers with many
/// codecs and candidates stay well under 16 KiB; the margin is for video with simulcast.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// The largest ICE candidate, JSON-encoded. A candidate line is about 100 bytes.
pub const MAX_CANDIDATE_BYTES: usize = 4 * 1024;

/// The longest call id: the `call` message's cid is `call:` and the id, and a cid is at most
/// 64 characters.
pub const MAX_CALL_ID_LEN: usize = ids::MAX_CID_LEN - CID_PREFIX.len();

/// How long an edge waits for its own notice to come back from the bus before it answers
/// `unavailable`.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an ended call is remembered, so that late frames for it are told it ended and its
/// id is not reused for another call's message.
const ENDED_RETENTION_MS: i64 = 10 * 60 * 1000;

/// Attempts at queueing the `call` message before it is given up.
const RECORD_ATTEMPTS: u32 = 5;

const CID_PREFIX: &str = "call:";

/// The settings of calls on an edge.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// How long an invite rings before the call ends as missed.
    pub ring_timeout: Duration,
    /// The ICE servers `GET /v1/ice` hands out.
    pub ice: IceConfig,
}

impl Default for CallConfig {
    fn default() -> Self {
        CallConfig { ring_timeout: RING_TIMEOUT, ice: IceConfig::default() }
    }
}

/// Why a call frame was refused, as the error reply its sender gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// One step of a call, as published on the notice bus to every edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallNotice {
    /// The edge that published it, which answers its sender and writes the `call` message.
    pub origin: u64,
    /// Names the request waiting for this notice on its origin edge.
    pub token: u64,
    pub call: String,
    /// The user and device that acted (for a timeout, the caller).
    pub user: String,
    pub device: String,
    /// When the origin edge published it, in Unix milliseconds.
    pub ts: i64,
    pub event: Event,
}

/// What happened to a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Invite {
        conv: String,
        media: Media,
        sdp: String,
        callees: Vec<String>,
    },
    Accept {
        sdp: String,
    },
    Reject,
    /// A candidate as JSON text, relayed unchanged.
    Ice {
        candidate: String,
    },
    Hangup,
    /// The device disconnected.
    Left,
    /// The invite rang for the ring timeout.
    Timeout,
}

/// Where a relayed frame goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Every device of one user called this.
    Device(String, String),
    /// Every device of these users, except one.
    Users(Vec<String>, Option<(String, String)>),
}

/// How a call ended, for its `call` message.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub call: String,
    pub conv: String,
    pub media: Media,
    pub caller: String,
    pub caller_device: String,
    pub outcome: CallOutcome,
    pub duration_ms: u64,
    pub ts: i64,
}

/// What applying a notice asks the edge to do.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    pub deliveries: Vec<(Target, ServerFrame)>,
    /// Set when the notice ended the call.
    pub ended: Option<Record>,
    /// Set when the notice started a call, which must time out if nobody answers.
    pub rings: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Ringing,
    Answered { user: String, device: String, at: i64 },
    Ended { at: i64 },
}

#[derive(Clone, Debug)]
struct Call {
    conv: String,
    media: Media,
    caller: String,
    caller_device: String,
    callees: BTreeSet<String>,
    rejected: BTreeSet<String>,
    phase: Phase,
}

impl Call {
    /// The callees still ringing: those who have not rejected.
    fn ringing(&self) -> Vec<String> {
        self.callees.difference(&self.rejected).cloned().collect()
    }

    fn is_caller(&self, user: &str, device: &str) -> bool {
        self.caller == user && self.caller_device == device
    }

    fn answerer(&self) -> Option<(&str, &str)> {
        match &self.phase {
            Phase::Answered { user, device, .. } => Some((user, device)),
            _ => None,
        }
    }

    fn record(&self, call: &str, outcome: CallOutcome, duration_ms: u64, ts: i64) -> Record {
        Record {
            call: call.to_owned(),
            conv: self.conv.clone(),
            media: self.media,
            caller: self.caller.clone(),
            caller_device: self.caller_device.clone(),
            outcome,
            duration_ms,
            ts,
        }
    }
}

/// The calls one edge knows of, built from the notices in bus order.
#[derive(Debug, Default)]
pub struct Table {
    calls: HashMap<String, Call>,
}

fn signal(call: &str, user: &str, device: &str) -> CallSignal {
    CallSignal {
        call: call.to_owned(),
        from: user.to_owned(),
        conv: None,
        media: None,
        sdp: None,
        candidate: None,
        device: Some(device.to_owned()),
    }
}

fn ended(call: &str, reason: &str) -> ServerFrame {
    ServerFrame::CallEnded(CallEnded { call: call.to_owned(), reason: reason.to_owned() })
}

fn device(user: &str, device: &str) -> Target {
    Target::Device(user.to_owned(), device.to_owned())
}

impl Table {
    /// Whether the table holds a call with this id, ended or not.
    pub fn knows(&self, call: &str) -> bool {
        self.calls.contains_key(call)
    }

    /// Whether the call still rings.
    pub fn is_ringing(&self, call: &str) -> bool {
        self.calls.get(call).is_some_and(|c| c.phase == Phase::Ringing)
    }

    /// The calls not yet ended in which this device is the caller or the answering callee.
    pub fn active_for(&self, user: &str, device: &str) -> Vec<String> {
        let mut calls: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| !matches!(c.phase, Phase::Ended { .. }))
            .filter(|(_, c)| c.is_caller(user, device) || c.answerer() == Some((user, device)))
            .map(|(id, _)| id.clone())
            .collect();
        calls.sort();
        calls
    }

    /// Applies one notice. Every edge applies the same notices in the same order, so every
    /// edge reaches the same verdict and the same state.
    pub fn apply(&mut self, notice: &CallNotice) -> Result<Effects, Refusal> {
        let CallNotice { call: id, user, device: dev, ts, .. } = notice;
        if let Event::Invite { conv, media, sdp, callees } = &notice.event {
            return self.invite(notice, conv, *media, sdp, callees);
        }
        let Some(call) = self.calls.get_mut(id) else {
            return Err(refuse(ErrorCode::NotFound, format!("no call {id:?} here")));
        };
        let in_call = call.is_caller(user, dev) || call.callees.contains(user);
        if !in_call && !matches!(notice.event, Event::Timeout | Event::Left) {
            return Err(refuse(ErrorCode::NotFound, format!("no call {id:?} here")));
        }
        if matches!(call.phase, Phase::Ended { .. }) {
            return Err(refuse(ErrorCode::NotFound, format!("call {id:?} has ended")));
        }
        let mut effects = Effects::default();
        let from_caller = call.is_caller(user, dev);
        match &notice.event {
            Event::Invite { .. } => {}
            Event::Accept { sdp } => {
                if from_caller || !call.callees.contains(user) {
                    return Err(refuse(ErrorCode::Forbidden, "only a callee accepts a call"));
                }
                if call.phase != Phase::Ringing {
                    let message = format!("call {id:?} was answered elsewhere");
                    return Err(refuse(ErrorCode::NotFound, message));
                }
                if call.rejected.contains(user) {
                    let message = format!("call {id:?} was already rejected by {user}");
                    return Err(refuse(ErrorCode::Forbidden, message));
                }
                let mut frame = signal(id, user, dev);
                frame.sdp = Some(sdp.clone());
                let caller = device(&call.caller, &call.caller_device);
                effects.deliveries.push((caller, ServerFrame::CallAccept(frame)));
                let others = Target::Users(call.ringing(), Some((user.clone(), dev.clone())));
                effects.deliveries.push((others, ended(id, "answered_elsewhere")));
                call.phase = Phase::Answered { user: user.clone(), device: dev.clone(), at: *ts };
            }
            Event::Reject => {
                if from_caller || !call.callees.contains(user) {
                    let message = "only a callee rejects a call; the caller hangs up";
                    return Err(refuse(ErrorCode::Forbidden, message));
                }
                if call.phase != Phase::Ringing {
                    let message = format!("call {id:?} was already answered");
                    return Err(refuse(ErrorCode::NotFound, message));
                }
                let caller = device(&call.caller, &call.caller_device);
                let frame = ServerFrame::CallReject(signal(id, user, dev));
                effects.deliveries.push((caller, frame));
                let own = Target::Users(vec![user.clone()], Some((user.clone(), dev.clone())));
                effects.deliveries.push((own, ended(id, "rejected")));
                call.rejected.insert(user.clone());
                if call.rejected.len() == call.callees.len() {
                    effects.ended = Some(call.record(id, CallOutcome::Rejected, 0, *ts));
                    call.phase = Phase::Ended { at: *ts };
                }
            }
            Event::Ice { candidate } => {
                let value = serde_json::from_str(candidate).unwrap_or_default();
                let mut frame = signal(id, user, dev);
                frame.candidate = Some(value);
                let target = if from_caller {
                    match call.answerer() {
                        Some((u, d)) => device(u, d),
                        None => Target::Users(call.ringing(), None),
                    }
                } else if call.answerer() == Some((user, dev)) {
                    device(&call.caller, &call.caller_device)
                } else {
                    let message = "a callee sends candidates after accepting the call";
                    return Err(refuse(ErrorCode::Forbidden, message));
                };
                effects.deliveries.push((target, ServerFrame::CallIce(frame)));
            }
            Event::Hangup | Event::Left => {
                let answered_here = call.answerer() == Some((user, dev));
                if !from_caller && !answered_here {
                    if notice.event == Event::Left {
                        return Ok(effects);
                    }
                    let message = "only the caller or the answering device hangs up; \
                                   reject a ringing call";
                    return Err(refuse(ErrorCode::Forbidden, message));
                }
                let frame = if notice.event == Event::Hangup {
                    ServerFrame::CallHangup(signal(id, user, dev))
                } else {
                    ended(id, "disconnected")
                };
                let (target, outcome, duration) = match &call.phase {
                    Phase::Answered { user: u, device: d, at } => {
                        let other = if from_caller {
                            device(u, d)
                        } else {
                            device(&call.caller, &call.caller_device)
                        };
                        (other, CallOutcome::Completed, (*ts - *at).max(0) as u64)
                    }
                    _ => (Target::Users(call.ringing(), None), CallOutcome::Cancelled, 0),
                };
                effects.deliveries.push((target, frame));
                effects.ended = Some(call.record(id, outcome, duration, *ts));
                call.phase = Phase::Ended { at: *ts };
            }
            Event::Timeout => {
                if call.phase != Phase::Ringing {
                    return Err(refuse(ErrorCode::NotFound, "the call no longer rings"));
                }
                let caller = device(&call.caller, &call.caller_device);
                effects.deliveries.push((caller, ended(id, "timeout")));
                effects
                    .deliveries
                    .push((Target::Users(call.ringing(), None), ended(id, "timeout")));
                effects.ended = Some(call.record(id, CallOutcome::Missed, 0, *ts));
                call.phase = Phase::Ended { at: *ts };
            }
        }
        Ok(effects)
    }

    fn invite(
        &mut self,
        notice: &CallNotice,
        conv: &str,
        media: Media,
        sdp: &str,
        callees: &[String],
    ) -> Result<Effects, Refusal> {
        // Forget calls that ended long enough ago; the notice's time keeps every edge in step.
        self.calls.retain(
            |_, c| !matches!(c.phase, Phase::Ended { at } if at < notice.ts - ENDED_RETENTION_MS),
        );
        if self.calls.contains_key(&notice.call) {
            let message = format!("call id {:?} is already in use", notice.call);
            return Err(refuse(ErrorCode::BadRequest, message));
        }
        let call = Call {
            conv: conv.to_owned(),
            media,
            caller: notice.user.clone(),
            caller_device: notice.device.clone(),
            callees: callees.iter().filter(|c| **c != notice.user).cloned().collect(),
            rejected: BTreeSet::new(),
            phase: Phase::Ringing,
        };
        let mut frame = signal(&notice.call, &notice.user, &notice.device);
        frame.conv = Some(conv.to_owned());
        frame.media = Some(media);
        frame.sdp = Some(sdp.to_owned());
        let ring = Target::Users(call.ringing(), None);
        self.calls.insert(notice.call.clone(), call);
        Ok(Effects {
            deliveries: vec![(ring, ServerFrame::CallInvite(frame))],
            ended: None,
            rings: true,
        })
    }
}

/// The calls of one edge: its table, and the requests waiting for their notices to come back.
#[derive(Debug)]
pub struct Calls {
    /// Names this edge on the bus.
    edge: u64,
    next_token: AtomicU64,
    table: Mutex<Table>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<(), Refusal>>>>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            edge: rand::random(),
            next_token: AtomicU64::new(1),
            table: Mutex::new(Table::default()),
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl Calls {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // Never held across an await; every apply leaves the table consistent.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<(), Refusal>>>> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Checks the shape of a call frame; the message is the `bad_request` reply.
pub fn check(frame: &ClientFrame) -> Result<(), String> {
    let (call, sdp) = match frame {
        ClientFrame::CallInvite(invite) => {
            ConvRef::parse(&invite.conv).map_err(|e| e.to_string())?;
            (&invite.call, Some(&invite.sdp))
        }
        ClientFrame::CallAccept(answer) => (&answer.call, Some(&answer.sdp)),
        ClientFrame::CallReject(r) | ClientFrame::CallHangup(r) => (&r.call, None),
        ClientFrame::CallIce(ice) => {
            if !(ice.candidate.is_object() || ice.candidate.is_string()) {
                return Err("candidate must be an object or a string".to_owned());
            }
            let size = serde_json::to_vec(&ice.candidate).map(|v| v.len()).unwrap_or(usize::MAX);
            if size > MAX_CANDIDATE_BYTES {
                return Err(format!("candidate is over {MAX_CANDIDATE_BYTES} bytes"));
            }
            (&ice.call, None)
        }
        _ => return Err("not a call frame".to_owned()),
    };
    if call.len() > MAX_CALL_ID_LEN || !ids::is_valid_id(call) {
        return Err(format!(
            "call must be 1 to {MAX_CALL_ID_LEN} characters of A-Z a-z 0-9 _ . @ -"
        ));
    }
    if let Some(sdp) = sdp {
        if sdp.trim().is_empty() {
            return Err("sdp must not be empty".to_owned());
        }
        if sdp.len() > MAX_SDP_BYTES {
            return Err(format!("sdp is over {MAX_SDP_BYTES} bytes"));
        }
    }
    Ok(())
}

/// Runs a call frame (already [`check`]ed) and produces its reply.
pub async fn request(ctx: &Context, caller: &Caller, frame: ClientFrame) -> ServerFrame {
    let rid = frame.rid().unwrap_or_default().to_owned();
    let (call, event) = match frame {
        ClientFrame::CallInvite(invite) => {
            let callees = match callees(ctx, caller, &invite.conv).await {
                Ok(callees) => callees,
                Err(refusal) => return error(rid, refusal),
            };
            let event =
                Event::Invite { conv: invite.conv, media: invite.media, sdp: invite.sdp, callees };
            (invite.call, event)
        }
        ClientFrame::CallAccept(answer) => (answer.call, Event::Accept { sdp: answer.sdp }),
        ClientFrame::CallReject(r) => (r.call, Event::Reject),
        ClientFrame::CallHangup(r) => (r.call, Event::Hangup),
        ClientFrame::CallIce(ice) => {
            (ice.call, Event::Ice { candidate: ice.candidate.to_string() })
        }
        _ => return error(rid, refuse(ErrorCode::BadRequest, "not a call frame")),
    };
    // Every call a device may act on was applied here before the device could learn of it, so
    // an id unknown here needs no trip over the bus.
    if !matches!(event, Event::Invite { .. }) && !ctx.calls.table().knows(&call) {
        return error(rid, refuse(ErrorCode::NotFound, format!("no call {call:?} here")));
    }
    match publish(ctx, &call, &caller.user, &caller.device, event, true).await {
        Ok(()) => ServerFrame::ok(rid),
        Err(refusal) => error(rid, refusal),
    }
}

fn error(rid: String, refusal: Refusal) -> ServerFrame {
    ServerFrame::error(Some(rid), refusal.code, refusal.message)
}

/// The users an invite to `conv` rings: its members other than the caller.
async fn callees(ctx: &Context, caller: &Caller, conv: &str) -> Result<Vec<String>, Refusal> {
    let not_member = || refuse(ErrorCode::NotMember, format!("you are not a member of {conv}"));
    let members = match ConvRef::parse(conv) {
        Ok(ConvRef::Direct(a, b)) if a == caller.user || b == caller.user => {
            // The same rule as direct messages: under the friends policy, strangers' phones
            // do not ring.
            let query = Query::DirectAllowed { a: a.to_owned(), b: b.to_owned() };
            match ctx.backend.query(conv, query).await {
                Ok(Answer::DirectAllowed { allowed: true }) => {}
                Ok(Answer::DirectAllowed { allowed: false }) => {
                    let message = "calls between users who are not friends are refused here";
                    return Err(refuse(ErrorCode::NotFriends, message));
                }
                Ok(_) => return Err(refuse(ErrorCode::Internal, "the shard answered otherwise")),
                Err(error) => return Err(refuse(error.code(), error.to_string())),
            }
            vec![a.to_owned(), b.to_owned()]
        }
        Ok(ConvRef::Direct(..)) => return Err(not_member()),
        Ok(ConvRef::Group(_)) => {
            let query = Query::Members { user: caller.user.clone(), conv: conv.to_owned() };
            match ctx.backend.query(conv, query).await {
                Ok(Answer::Members { members: Some(members) }) => members,
                Ok(Answer::Members { members: None }) => return Err(not_member()),
                Ok(_) => return Err(refuse(ErrorCode::Internal, "the shard answered otherwise")),
                Err(error) => return Err(refuse(error.code(), error.to_string())),
            }
        }
        Err(error) => return Err(refuse(ErrorCode::BadRequest, error.to_string())),
    };
    let callees: Vec<String> = members.into_iter().filter(|m| *m != caller.user).collect();
    if callees.is_empty() {
        return Err(refuse(ErrorCode::BadRequest, format!("nobody else in {conv} to call")));
    }
    Ok(callees)
}

/// Publishes a notice and, when `wait`, waits for this edge's verdict on it.
async fn publish(
    ctx: &Context,
    call: &str,
    user: &str,
    device: &str,
    event: Event,
    wait: bool,
) -> Result<(), Refusal> {
    let token = ctx.calls.next_token.fetch_add(1, Ordering::Relaxed);
    let notice = CallNotice {
        origin: ctx.calls.edge,
        token,
        call: call.to_owned(),
        user: user.to_owned(),
        device: device.to_owned(),
        ts: now_ms(),
        event,
    };
    let bytes = rmp_serde::to_vec_named(&Notice::Call(notice))
        .map_err(|e| refuse(ErrorCode::Internal, format!("failed to encode a call notice: {e}")))?;
    let verdict = if wait {
        let (tx, rx) = oneshot::channel();
        ctx.calls.waiting().insert(token, tx);
        Some(rx)
    } else {
        None
    };
    if let Err(error) = ctx.queue.publish(bytes.into()).await {
        ctx.calls.waiting().remove(&token);
        tracing::warn!(%error, call, "failed to publish a call notice");
        return Err(refuse(ErrorCode::Unavailable, "the notice bus is unreachable; retry"));
    }
    let Some(verdict) = verdict else { return Ok(()) };
    match tokio::time::timeout(ECHO_TIMEOUT, verdict).await {
        Ok(Ok(verdict)) => verdict,
        _ => {
            ctx.calls.waiting().remove(&token);
            tracing::warn!(call, "a call notice did not come back from the bus");
            Err(refuse(ErrorCode::Unavailable, "the notice bus did not answer in time; retry"))
        }
    }
}

/// Applies a call notice from any edge: relays its frames to the devices held here, answers the
/// request that sent it if it came from here, and writes the `call` message if it ended a call.
pub fn apply(ctx: &std::sync::Arc<Context>, notice: CallNotice) {
    let verdict = ctx.calls.table().apply(&notice);
    if notice.origin == ctx.calls.edge
        && let Some(waiting) = ctx.calls.waiting().remove(&notice.token)
    {
        let _ = waiting.send(verdict.as_ref().map(|_| ()).map_err(Refusal::clone));
    }
    let Ok(effects) = verdict else { return };
    for (target, frame) in effects.deliveries {
        let frame = std::sync::Arc::new(SharedFrame::new(frame));
        match target {
            Target::Device(user, device) => {
                ctx.sessions.deliver_to_device(&user, &device, &frame);
            }
            Target::Users(users, skip) => {
                let skip = skip.as_ref().map(|(u, d)| (u.as_str(), d.as_str()));
                ctx.sessions.deliver(users.iter().map(String::as_str), &frame, skip);
            }
        }
    }
    if effects.rings {
        tokio::spawn(ring(ctx.clone(), notice.call.clone(), notice.user, notice.device));
    }
    if let Some(record) = effects.ended
        && notice.origin == ctx.calls.edge
    {
        ctx.metrics.calls.with_label_values(&[outcome_name(record.outcome)]).inc();
        tokio::spawn(write_record(ctx.clone(), record));
    }
}

/// Ends the call as missed once the ring timeout passes unanswered. Every edge that knows the
/// call runs this timer, so the call ends even if the caller's edge is gone; the first timeout
/// the bus carries ends it and the others are ignored.
async fn ring(ctx: std::sync::Arc<Context>, call: String, caller: String, device: String) {
    tokio::time::sleep(ctx.config.calls.ring_timeout).await;
    if ctx.calls.table().is_ringing(&call) {
        let _ = publish(&ctx, &call, &caller, &device, Event::Timeout, false).await;
    }
}

/// Ends the calls of a device that disconnected.
pub async fn left(ctx: std::sync::Arc<Context>, caller: Caller) {
    let calls = ctx.calls.table().active_for(&caller.user, &caller.device);
    for call in calls {
        let _ = publish(&ctx, &call, &caller.user, &caller.device, Event::Left, false).await;
    }
}

fn outcome_name(outcome: CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Completed => "completed",
        CallOutcome::Missed => "missed",
        CallOutcome::Rejected => "rejected",
        CallOutcome::Cancelled => "cancelled",
    }
}

/// The `call` message's send command: from the caller, with a cid that the call id fixes, so
/// that a repeat (from a retry or another edge) is the same message to the state's idempotency.
pub fn record_command(record: &Record) -> Command {
    Command::Send {
        conv: record.conv.clone(),
        from: record.caller.clone(),
        device: record.caller_device.clone(),
        cid: format!("{CID_PREFIX}{}", record.call),
        body: Body::Call {
            call: record.call.clone(),
            media: record.media,
            outcome: record.outcome,
            duration_ms: record.duration_ms,
        },
        ts: record.ts,
    }
}

/// Queues the `call` message for its conversation's shard, the way sends are queued.
async fn write_record(ctx: std::sync::Arc<Context>, record: Record) {
    let command = record_command(&record);
    let shard = ctx.backend.shard_of(&record.conv);
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=RECORD_ATTEMPTS {
        match ctx.queue.push(shard, &command).await {
            Ok(_) => return,
            Err(error) if attempt < RECORD_ATTEMPTS => {
                tracing::debug!(%error, call = %record.call, attempt, "retrying a call message");
            }
            Err(error) => {
                // NOTE: a queue down for the whole retry window loses the call's message; the
                // call itself is over either way.
                tracing::warn!(%error, call = %record.call, "failed to queue a call message");
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

    use super::*;

    fn notice(call: &str, user: &str, device: &str, ts: i64, event: Event) -> CallNotice {
        CallNotice {
            origin: 1,
            token: 1,
            call: call.into(),
            user: user.into(),
            device: device.into(),
            ts,
            event,
        }
    }

    fn invite(table: &mut Table, callees: &[&str]) -> Effects {
        let event = Event::Invite {
            conv: "g:team".into(),
            media: Media::Audio,
            sdp: "v=0".into(),
            callees: callees.iter().map(|c| c.to_string()).collect(),
        };
        table.apply(&notice("c1", "alice", "phone", 1_000, event)).unwrap()
    }

    #[test]
    fn an_invite_rings_every_callee_but_not_the_caller() {
        let mut table = Table::default();
        let effects = invite(&mut table, &["alice", "bob", "carol"]);
        assert!(effects.rings);
        let (target, _) = &effects.deliveries[0];
        assert_eq!(*target, Target::Users(vec!["bob".into(), "carol".into()], None));
    }

    #[test]
    fn the_first_accept_wins_and_a_second_is_refused() {
        let mut table = Table::default();
        invite(&mut table, &["bob", "carol"]);
        let accept =
            |u: &str, d: &str| notice("c1", u, d, 2_000, Event::Accept { sdp: "a".into() });
        let effects = table.apply(&accept("bob", "laptop")).unwrap();
        assert_eq!(effects.deliveries[0].0, Target::Device("alice".into(), "phone".into()));
        let skip = Some(("bob".to_owned(), "laptop".to_owned()));
        assert_eq!(
            effects.deliveries[1].0,
            Target::Users(vec!["bob".into(), "carol".into()], skip)
        );
        assert_eq!(effects.deliveries[1].1, ended("c1", "answered_elsewhere"));
        assert_eq!(table.apply(&accept("carol", "phone")).unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn a_hangup_after_an_answer_records_a_completed_call_with_its_duration() {
        let mut table = Table::default();
        invite(&mut table, &["bob"]);
        table
            .apply(&notice("c1", "bob", "laptop", 2_000, Event::Accept { sdp: "a".into() }))
            .unwrap();
        let effects = table.apply(&notice("c1", "bob", "laptop", 7_500, Event::Hangup)).unwrap();
        let record = effects.ended.unwrap();
        assert_eq!((record.outcome, record.duration_ms), (CallOutcome::Completed, 5_500));
        assert_eq!(effects.deliveries[0].0, Target::Device("alice".into(), "phone".into()));
    }

    #[test]
    fn a_group_call_ends_as_rejected_only_when_every_callee_rejected() {
        let mut table = Table::default();
        invite(&mut table, &["bob", "carol"]);
        let first = table.apply(&notice("c1", "bob", "phone", 2_000, Event::Reject)).unwrap();
        assert_eq!(first.ended, None);
        let last = table.apply(&notice("c1", "carol", "phone", 2_100, Event::Reject)).unwrap();
        assert_eq!(last.ended.unwrap().outcome, CallOutcome::Rejected);
    }

    #[test]
    fn a_timeout_ends_a_ringing_call_once_and_later_frames_are_told_it_ended() {
        let mut table = Table::default();
        invite(&mut table, &["bob"]);
        let timeout = notice("c1", "alice", "phone", 46_000, Event::Timeout);
        assert_eq!(table.apply(&timeout).unwrap().ended.unwrap().outcome, CallOutcome::Missed);
        assert!(table.apply(&timeout).is_err());
        let late =
            table.apply(&notice("c1", "bob", "p", 47_000, Event::Accept { sdp: "a".into() }));
        assert_eq!(late.unwrap_err().message, "call \"c1\" has ended");
    }

    #[test]
    fn a_reused_call_id_is_refused_until_the_ended_call_is_forgotten() {
        let mut table = Table::default();
        invite(&mut table, &["bob"]);
        let again = Event::Invite {
            conv: "g:team".into(),
            media: Media::Video,
            sdp: "v=0".into(),
            callees: vec!["bob".into()],
        };
        let refused = table.apply(&notice("c1", "carol", "x", 1_500, again.clone())).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
        table.apply(&notice("c1", "alice", "phone", 2_000, Event::Hangup)).unwrap();
        let later = 2_000 + ENDED_RETENTION_MS + 1;
        assert!(table.apply(&notice("c1", "carol", "x", later, again)).is_ok());
    }

    #[test]
    fn a_notice_survives_the_bus_encoding() {
        for event in [Event::Reject, Event::Ice { candidate: "{\"candidate\":\"x\"}".into() }] {
            let sent = Notice::Call(notice("c1", "bob", "phone", 5, event));
            let bytes = rmp_serde::to_vec_named(&sent).unwrap();
            assert_eq!(rmp_serde::from_slice::<Notice>(&bytes).unwrap(), sent);
        }
    }
}

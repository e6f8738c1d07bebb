//! One client connection, from `hello` to close.
//!
//! A single task owns the socket and is the only writer, so the order of frames on the wire is
//! decided in one place. Requests run in their own tasks and hand their replies back through a
//! channel; pushes arrive through the connection's bounded queue.
//!
//! The sending device always sees `accepted` before the `msg` or `rejected` of the same cid:
//! if the push overtakes the reply (it can: the shard publishes before the proposer hears
//! back), the push writes `accepted` first, and the late reply is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use dolphin_protocol::codec::{self, Encoding};
use dolphin_protocol::{Accepted, ErrorCode, Hello, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span};

use crate::frame::{self, Pushes, SharedFrame};
use crate::handler::{self, Action, Caller, Context};

/// Close code sent to a device disconnected for not keeping up with its pushes.
pub const CLOSE_TOO_SLOW: u16 = 4000;
/// Close code sent for a frame over the size limit (RFC 6455: message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code sent when the edge shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// The most queued items (replies, pushes) written before one flush.
const WRITE_BATCH: usize = 64;

enum Reply {
    Frame(ServerFrame),
    Accepted { rid: String, cid: String },
    SendFailed { rid: String, cid: String, error: ServerFrame },
}

/// The most sends of one connection timed at once for the send-to-push latency.
const MAX_TIMED_SENDS: usize = 4096;

struct Conn {
    ctx: Arc<Context>,
    caller: Caller,
    encoding: Encoding,
    /// Sends under way by cid, with their request ids and start times.
    pending: HashMap<String, Vec<(String, Instant)>>,
    /// When each send still waiting for its own push arrived, by cid, for the send-to-push
    /// latency; at most [`MAX_TIMED_SENDS`] (a repeat that is never pushed again stays until
    /// the connection closes).
    sent_at: HashMap<String, Instant>,
}

/// The socket, written through as a sink. It is not split into halves: the one task that owns
/// it reads and writes in turn, and a split puts a lock in front of every frame written.
type Sink = WebSocket;

/// Serves one upgraded connection until either side closes it or the edge shuts down.
pub async fn serve(
    socket: WebSocket,
    ctx: Arc<Context>,
    caller: Caller,
    encoding: Encoding,
    shutdown: CancellationToken,
) {
    let span = info_span!("connection", user = %caller.user, device = %caller.device);
    run(socket, ctx, caller, encoding, shutdown).instrument(span).await
}

async fn run(
    mut socket: WebSocket,
    ctx: Arc<Context>,
    caller: Caller,
    encoding: Encoding,
    shutdown: CancellationToken,
) {
    let (push_tx, mut pushes) = mpsc::channel::<Pushes>(ctx.config.outbound_capacity);
    let (reply_tx, mut replies) = mpsc::channel::<Reply>(ctx.config.max_inflight_requests);
    let inflight = Arc::new(Semaphore::new(ctx.config.max_inflight_requests));
    // Cancelled when the device is disconnected for being too slow, and with the edge's
    // shutdown: one token for the loop to watch rather than two.
    let kicked = shutdown.child_token();
    let session = ctx.sessions.add(&caller.user, &caller.device, encoding, push_tx, kicked.clone());
    tokio::spawn(crate::presence::connected(ctx.clone(), caller.user.clone()));
    ctx.metrics.connections.with_label_values(&["open"]).inc();
    ctx.metrics.connections_opened.inc();
    debug!("connected");

    let mut conn = Conn {
        ctx: ctx.clone(),
        caller,
        encoding,
        pending: HashMap::new(),
        sent_at: HashMap::new(),
    };
    let hello = ServerFrame::Hello(Hello {
        user: conn.caller.user.clone(),
        device: conn.caller.device.clone(),
        epoch: ctx.config.epoch.clone(),
        heartbeat_ms: ctx.config.heartbeat.as_millis() as u64,
    });
    let mut open = conn.write(&mut socket, &hello).await && socket.flush().await.is_ok();

    let heartbeat = ctx.config.heartbeat;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let mut last_heard = Instant::now();
    // The close frame to send once the loop ends, if the server ends the connection.
    let mut farewell: Option<(u16, &'static str)> = None;
    // Made once, not per turn of the loop: a fresh one registers with the token's waiters and
    // leaves again on every wake-up, which profiles of busy fan-out showed as a cost per push.
    let ended = kicked.cancelled();
    tokio::pin!(ended);
    while open {
        tokio::select! {
            biased;
            () = &mut ended => {
                farewell = Some(if shutdown.is_cancelled() {
                    (CLOSE_GOING_AWAY, "server shutting down")
                } else {
                    (CLOSE_TOO_SLOW, "too slow to take pushes; reconnect and sync")
                });
                break;
            }
            Some(reply) = replies.recv() => {
                open = conn.reply(&mut socket, reply).await;
                open = open && conn.drain(&mut socket, &mut pushes, &mut replies).await;
            }
            Some(push) = pushes.recv() => {
                open = conn.push_all(&mut socket, &push).await;
                open = open && conn.drain(&mut socket, &mut pushes, &mut replies).await;
            }
            incoming = socket.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let bytes = text.as_bytes();
                        open = conn
                            .incoming(&mut socket, bytes, Encoding::Json, &reply_tx, &inflight)
                            .await;
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        open = conn
                            .incoming(&mut socket, &bytes, Encoding::MsgPack, &reply_tx, &inflight)
                            .await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(error)) => {
                        if is_too_big(error) {
                            farewell = Some((CLOSE_TOO_BIG, "frame over the size limit"));
                        }
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 2 {
                    farewell = Some((1000, "no heartbeat"));
                    break;
                }
                open = socket.send(Message::Ping(Default::default())).await.is_ok();
            }
        }
    }

    // Closing: no more pushes, and the close frame (which a slow client may take a while to
    // accept) on its way.
    ctx.sessions.remove(&conn.caller.user, session);
    tokio::spawn(crate::presence::disconnected(ctx.clone(), conn.caller.user.clone()));
    // A device that leaves ends the calls it was a party of.
    tokio::spawn(crate::calls::left(ctx.clone(), conn.caller.clone()));
    ctx.metrics.connections.with_label_values(&["open"]).dec();
    ctx.metrics.connections.with_label_values(&["closing"]).inc();
    if let Some((code, reason)) = farewell {
        close(&mut socket, code, reason).await;
    }
    ctx.metrics.connections.with_label_values(&["closing"]).dec();
    debug!("disconnected");
}

/// Whether a read failed because the frame was over the size limit.
fn is_too_big(error: axum::Error) -> bool {
    debug!(%error, "connection failed");
    match error.into_inner().downcast::<tokio_tungstenite::tungstenite::Error>() {
        Ok(error) => matches!(*error, tokio_tungstenite::tungstenite::Error::Capacity(_)),
        Err(_) => false,
    }
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

impl Conn {
    /// Queues one frame on the socket without flushing.
    async fn write(&self, sink: &mut Sink, frame: &ServerFrame) -> bool {
        self.count_out(frame);
        sink.feed(frame::message(frame, self.encoding)).await.is_ok()
    }

    fn count_out(&self, frame: &ServerFrame) {
        // Pushes of messages are nearly every frame out: their counter is resolved once, as a
        // label look-up per delivery showed in profiles.
        if let ServerFrame::Msg(_) = frame {
            self.ctx.metrics.msgs_out.inc();
            return;
        }
        self.ctx.metrics.frames_out.with_label_values(&[frame.type_name()]).inc();
        if let ServerFrame::Error(error) = frame {
            self.ctx.metrics.errors.with_label_values(&[error.code.as_str()]).inc();
        }
    }

    /// Writes whatever else is already queued, then flushes once.
    async fn drain(
        &mut self,
        sink: &mut Sink,
        pushes: &mut mpsc::Receiver<Pushes>,
        replies: &mut mpsc::Receiver<Reply>,
    ) -> bool {
        for _ in 0..WRITE_BATCH {
            let open = if let Ok(reply) = replies.try_recv() {
                self.reply(sink, reply).await
            } else if let Ok(push) = pushes.try_recv() {
                self.push_all(sink, &push).await
            } else {
                break;
            };
            if !open {
                return false;
            }
        }
        sink.flush().await.is_ok()
    }

    /// Writes `accepted` for every send of `cid` still waiting for it.
    async fn accept(&mut self, sink: &mut Sink, cid: &str) -> bool {
        let Some(waiting) = self.pending.remove(cid) else { return true };
        for (rid, started) in waiting {
            self.ctx.metrics.send_accepted_seconds.observe(started.elapsed().as_secs_f64());
            let frame = ServerFrame::Accepted(Accepted { rid, cid: cid.to_owned() });
            if !self.write(sink, &frame).await {
                return false;
            }
        }
        true
    }

    async fn reply(&mut self, sink: &mut Sink, reply: Reply) -> bool {
        match reply {
            Reply::Frame(frame) => self.write(sink, &frame).await,
            Reply::Accepted { rid, cid } => {
                // Answer this rid if the push has not already done it.
                let Some(waiting) = self.pending.get_mut(&cid) else { return true };
                let Some(at) = waiting.iter().position(|(r, _)| *r == rid) else { return true };
                let (rid, started) = waiting.remove(at);
                if waiting.is_empty() {
                    self.pending.remove(&cid);
                }
                self.ctx.metrics.send_accepted_seconds.observe(started.elapsed().as_secs_f64());
                self.write(sink, &ServerFrame::Accepted(Accepted { rid, cid })).await
            }
            Reply::SendFailed { rid, cid, error } => {
                self.sent_at.remove(&cid);
                let Some(waiting) = self.pending.get_mut(&cid) else { return true };
                let Some(at) = waiting.iter().position(|(r, _)| *r == rid) else { return true };
                waiting.remove(at);
                if waiting.is_empty() {
                    self.pending.remove(&cid);
                }
                self.write(sink, &error).await
            }
        }
    }

    /// Writes the frames of one queued push, in their order.
    async fn push_all(&mut self, sink: &mut Sink, pushes: &[Arc<SharedFrame>]) -> bool {
        for push in pushes {
            if !self.push(sink, push).await {
                return false;
            }
        }
        true
    }

    async fn push(&mut self, sink: &mut Sink, push: &SharedFrame) -> bool {
        let own_cid = match &push.frame {
            ServerFrame::Msg(msg)
                if msg.from == self.caller.user && msg.device == self.caller.device =>
            {
                if let Some(started) = self.sent_at.remove(&msg.cid) {
                    self.ctx.metrics.send_push_seconds.observe(started.elapsed().as_secs_f64());
                }
                Some(msg.cid.as_str())
            }
            ServerFrame::Rejected(rejected) => {
                self.sent_at.remove(&rejected.cid);
                Some(rejected.cid.as_str())
            }
            _ => None,
        };
        if let Some(cid) = own_cid
            && !self.accept(sink, cid).await
        {
            return false;
        }
        self.count_out(&push.frame);
        sink.feed(push.message(self.encoding)).await.is_ok()
    }

    async fn incoming(
        &mut self,
        sink: &mut Sink,
        bytes: &[u8],
        encoding: Encoding,
        replies: &mpsc::Sender<Reply>,
        inflight: &Arc<Semaphore>,
    ) -> bool {
        let frame = match codec::decode_client(bytes, encoding) {
            Ok(frame) => frame,
            Err(error) => {
                self.ctx.metrics.frames_in.with_label_values(&["invalid"]).inc();
                let reply = ServerFrame::error(error.rid, ErrorCode::BadRequest, error.reason);
                return self.write(sink, &reply).await && sink.flush().await.is_ok();
            }
        };
        self.ctx.metrics.frames_in.with_label_values(&[frame.type_name()]).inc();

        let action = handler::prepare(&self.ctx, &self.caller, frame);
        if let Action::Reply(reply) = action {
            return self.write(sink, &reply).await && sink.flush().await.is_ok();
        }
        // Reading waits here while the connection has too many requests under way.
        let Ok(permit) = inflight.clone().acquire_owned().await else { return false };
        let ctx = self.ctx.clone();
        let caller = self.caller.clone();
        let replies = replies.clone();
        match action {
            Action::Send { rid, cid, command } => {
                let started = Instant::now();
                self.pending.entry(cid.clone()).or_default().push((rid.clone(), started));
                if self.sent_at.len() < MAX_TIMED_SENDS {
                    self.sent_at.entry(cid.clone()).or_insert(started);
                }
                tokio::spawn(async move {
                    let _permit = permit;
                    // Accepted once the shard's inbox holds the send; the shard orders it
                    // from there and the outcome comes as a `msg` or `rejected` push.
                    let shard = ctx.backend.shard_of(command.conv().unwrap_or_default());
                    if ctx.backend.refuses_writes(shard) {
                        ctx.metrics.queue_push_failures.with_label_values(&["no_quorum"]).inc();
                        let message = format!("shard {shard} has no leader with a quorum");
                        let error =
                            ServerFrame::error(Some(rid.clone()), ErrorCode::Unavailable, message);
                        let _ = replies.send(Reply::SendFailed { rid, cid, error }).await;
                        return;
                    }
                    let pushing = Instant::now();
                    let pushed = ctx.queue.push(shard, &command).await;
                    ctx.metrics.queue_push_seconds.observe(pushing.elapsed().as_secs_f64());
                    let reply = match pushed {
                        Ok(_) => Reply::Accepted { rid, cid },
                        Err(error) => {
                            let (code, reason) = match error {
                                dolphin_queue::QueueError::Unavailable(_) => {
                                    (ErrorCode::Unavailable, "unavailable")
                                }
                                _ => (ErrorCode::Internal, "error"),
                            };
                            ctx.metrics.queue_push_failures.with_label_values(&[reason]).inc();
                            let frame =
                                ServerFrame::error(Some(rid.clone()), code, error.to_string());
                            Reply::SendFailed { rid, cid, error: frame }
                        }
                    };
                    let _ = replies.send(reply).await;
                });
            }
            Action::Request(frame) => {
                tokio::spawn(async move {
                    let _permit = permit;
                    let reply = handler::request(&ctx, &caller, frame).await;
                    let _ = replies.send(Reply::Frame(reply)).await;
                });
            }
            Action::Typing { conv } => {
                tokio::spawn(async move {
                    let _permit = permit;
                    handler::typing(&ctx, &caller, conv).await;
                });
            }
            Action::Reply(_) => {}
        }
        true
    }
}

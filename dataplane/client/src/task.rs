//! The task behind a [`crate::Client`]: one connection at a time, and what survives between
//! them (unacknowledged sends, the position in every conversation).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use dolphin_protocol::codec::{self, Encoding};
use dolphin_protocol::{Body, ClientFrame, Fetch, MSGPACK_SUBPROTOCOL, Message, ServerFrame, Sync};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::debug;

use crate::order::ConvOrder;
use crate::{CatchUp, ClientConfig, ClientError, ClientEvent, Op};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The most messages asked for by one catch-up fetch.
const FETCH_PAGE: u32 = 500;

/// Opens one connection.
pub(crate) async fn open(config: &ClientConfig, endpoint: usize) -> Result<Socket, ClientError> {
    let mut request = config
        .ws_url(endpoint)
        .into_client_request()
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    if config.encoding == Encoding::MsgPack {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(MSGPACK_SUBPROTOCOL));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            Err(ClientError::Refused(response.status().as_u16()))
        }
        Err(error) => Err(ClientError::Connect(error.to_string())),
    }
}

struct PendingSend {
    conv: String,
    body: Body,
    reply: Option<oneshot::Sender<Result<(), ClientError>>>,
}

enum Waiting {
    /// A request of the application.
    App(oneshot::Sender<Result<ServerFrame, ClientError>>),
    /// A send, by cid.
    Send(String),
    /// A catch-up page of conversations.
    Sync,
    /// A catch-up or gap fetch.
    Fetch(String),
}

struct State {
    config: ClientConfig,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// Sends not yet accepted, in the order they were first made.
    unacked: BTreeMap<u64, (String, PendingSend)>,
    next_send: u64,
    waiting: HashMap<String, Waiting>,
    convs: HashMap<String, ConvOrder>,
    next_rid: u64,
    first_connection: bool,
    /// Catch-up requests still under way; `CaughtUp` is reported when none remain.
    catching_up: usize,
}

/// Runs until the application closes the client (or drops every handle).
pub(crate) async fn run(
    config: ClientConfig,
    socket: Socket,
    mut endpoint: usize,
    mut ops: mpsc::Receiver<Op>,
    events: mpsc::UnboundedSender<ClientEvent>,
) {
    let mut state = State {
        config,
        events,
        unacked: BTreeMap::new(),
        next_send: 0,
        waiting: HashMap::new(),
        convs: HashMap::new(),
        next_rid: 0,
        first_connection: true,
        catching_up: 0,
    };
    let mut socket = Some(socket);
    let mut failures = 0u32;
    // `endpoint` is which of the configured URLs to use; a failed attempt moves on.
    loop {
        let current = match socket.take() {
            Some(current) => current,
            None => match open(&state.config, endpoint).await {
                Ok(current) => current,
                Err(error) => {
                    failures += 1;
                    endpoint += 1;
                    debug!(%error, failures, "reconnect failed");
                    let wait = backoff(failures, state.config.max_backoff);
                    if !wait_or_close(&mut state, &mut ops, wait).await {
                        return;
                    }
                    continue;
                }
            },
        };
        failures = 0;
        let (reason, closed) = state.session(current, &mut ops).await;
        state.disconnected(&reason);
        if closed || !state.config.reconnect {
            return;
        }
        let wait = backoff(1, state.config.max_backoff);
        if !wait_or_close(&mut state, &mut ops, wait).await {
            return;
        }
    }
}

/// Full-jitter exponential backoff: a random wait up to 100 ms doubled per failure, capped.
fn backoff(failures: u32, max: Duration) -> Duration {
    let cap = Duration::from_millis(100).saturating_mul(1 << failures.min(16)).min(max);
    cap.mul_f64(rand::random::<f64>())
}

/// Waits out a backoff while still taking operations (sends queue up for the next connection);
/// returns false if the client was closed meanwhile.
async fn wait_or_close(state: &mut State, ops: &mut mpsc::Receiver<Op>, wait: Duration) -> bool {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return true,
            op = ops.recv() => match op {
                None | Some(Op::Close) => return false,
                Some(Op::Send { conv, cid, body, reply }) => {
                    state.queue_send(conv, cid, body, Some(reply));
                }
                Some(Op::Request { reply, .. }) => { let _ = reply.send(Err(ClientError::Disconnected)); }
                Some(Op::Typing { .. }) => {}
            },
        }
    }
}

impl State {
    fn rid(&mut self) -> String {
        self.next_rid += 1;
        format!("r{}", self.next_rid)
    }

    fn queue_send(
        &mut self,
        conv: String,
        cid: String,
        body: Body,
        reply: Option<oneshot::Sender<Result<(), ClientError>>>,
    ) -> u64 {
        self.next_send += 1;
        self.unacked.insert(self.next_send, (cid, PendingSend { conv, body, reply }));
        self.next_send
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    /// Serves one connection; returns why it ended and whether the application closed it.
    async fn session(&mut self, socket: Socket, ops: &mut mpsc::Receiver<Op>) -> (String, bool) {
        let (mut sink, mut stream) = socket.split();
        let mut out: Vec<ClientFrame> = Vec::new();
        let mut ping = tokio::time::interval(Duration::from_secs(10));
        ping.tick().await;
        loop {
            for frame in out.drain(..) {
                let bytes = match codec::encode(&frame, self.config.encoding) {
                    Ok(bytes) => bytes,
                    Err(error) => return (error.to_string(), false),
                };
                let message = match self.config.encoding {
                    Encoding::Json => {
                        WsMessage::Text(String::from_utf8_lossy(&bytes).into_owned().into())
                    }
                    Encoding::MsgPack => WsMessage::Binary(bytes.into()),
                };
                if let Err(error) = sink.feed(message).await {
                    return (error.to_string(), false);
                }
            }
            if let Err(error) = sink.flush().await {
                return (error.to_string(), false);
            }
            tokio::select! {
                op = ops.recv() => match op {
                    None | Some(Op::Close) => {
                        let _ = sink.send(WsMessage::Close(None)).await;
                        return ("closed by the application".into(), true);
                    }
                    Some(op) => self.op(op, &mut out),
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(WsMessage::Text(text))) => self.incoming(text.as_bytes(), Encoding::Json, &mut out),
                    Some(Ok(WsMessage::Binary(bytes))) => self.incoming(&bytes, Encoding::MsgPack, &mut out),
                    Some(Ok(WsMessage::Close(frame))) => {
                        let reason = frame.map(|f| format!("closed by the server: {} {}", f.code, f.reason));
                        return (reason.unwrap_or_else(|| "closed by the server".into()), false);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return (error.to_string(), false),
                    None => return ("connection ended".into(), false),
                },
                _ = ping.tick() => {
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return ("failed to send a heartbeat".into(), false);
                    }
                }
            }
        }
    }

    fn op(&mut self, op: Op, out: &mut Vec<ClientFrame>) {
        match op {
            Op::Request { build, reply } => {
                let rid = self.rid();
                self.waiting.insert(rid.clone(), Waiting::App(reply));
                out.push(build(rid));
            }
            Op::Send { conv, cid, body, reply } => {
                let key = self.queue_send(conv, cid, body, Some(reply));
                self.push_send(key, out);
            }
            Op::Typing { conv } => {
                out.push(ClientFrame::Typing(dolphin_protocol::TypingReq { conv }))
            }
            Op::Close => {}
        }
    }

    fn push_send(&mut self, key: u64, out: &mut Vec<ClientFrame>) {
        let rid = self.rid();
        let Some((cid, pending)) = self.unacked.get(&key) else { return };
        self.waiting.insert(rid.clone(), Waiting::Send(cid.clone()));
        out.push(ClientFrame::Send(dolphin_protocol::Send {
            rid,
            conv: pending.conv.clone(),
            cid: cid.clone(),
            body: pending.body.clone(),
        }));
    }

    fn disconnected(&mut self, reason: &str) {
        for (_, waiting) in self.waiting.drain() {
            if let Waiting::App(reply) = waiting {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
        }
        for order in self.convs.values_mut() {
            order.fetching = false;
        }
        self.catching_up = 0;
        self.emit(ClientEvent::Disconnected { reason: reason.to_owned() });
    }

    fn incoming(&mut self, bytes: &[u8], encoding: Encoding, out: &mut Vec<ClientFrame>) {
        let frame: ServerFrame = match codec::decode(bytes, encoding) {
            Ok(frame) => frame,
            Err(error) => {
                debug!(%error, "undecodable frame from the server");
                return;
            }
        };
        if let Some(rid) = frame.rid().map(str::to_owned)
            && let Some(waiting) = self.waiting.remove(&rid)
        {
            self.reply(waiting, frame, out);
            return;
        }
        match frame {
            ServerFrame::Hello(hello) => self.connected(hello, out),
            ServerFrame::Msg(msg) => {
                if msg.device == self.config.device {
                    self.acknowledge(&msg.cid, Ok(()));
                }
                self.take(msg, out);
            }
            ServerFrame::Rejected(rejected) => {
                // The send was accepted (the refusal came after ordering), so its future
                // resolves as accepted; the refusal itself arrives as an event.
                self.acknowledge(&rejected.cid, Ok(()));
                self.emit(ClientEvent::Rejected(rejected));
            }
            other => self.emit(ClientEvent::Push(other)),
        }
    }

    fn unacked_key(&self, cid: &str) -> Option<u64> {
        self.unacked.iter().find(|(_, (c, _))| c == cid).map(|(k, _)| *k)
    }

    fn acknowledge(&mut self, cid: &str, result: Result<(), ClientError>) {
        if let Some(key) = self.unacked_key(cid)
            && let Some((_, pending)) = self.unacked.remove(&key)
            && let Some(reply) = pending.reply
        {
            let _ = reply.send(result);
        }
    }

    fn connected(&mut self, hello: dolphin_protocol::Hello, out: &mut Vec<ClientFrame>) {
        self.emit(ClientEvent::Connected(hello));
        let keys: Vec<u64> = self.unacked.keys().copied().collect();
        for key in keys {
            self.push_send(key, out);
        }
        self.request_sync(None, out);
    }

    fn request_sync(&mut self, cursor: Option<String>, out: &mut Vec<ClientFrame>) {
        let rid = self.rid();
        self.waiting.insert(rid.clone(), Waiting::Sync);
        self.catching_up += 1;
        out.push(ClientFrame::Sync(Sync { rid, limit: Some(500), cursor }));
    }

    fn request_fetch(&mut self, conv: &str, out: &mut Vec<ClientFrame>, catch_up: bool) {
        let Some(order) = self.convs.get_mut(conv) else { return };
        if order.fetching {
            return;
        }
        order.fetching = true;
        let after = order.last;
        let rid = self.rid();
        self.waiting.insert(rid.clone(), Waiting::Fetch(conv.to_owned()));
        if catch_up {
            self.catching_up += 1;
        }
        out.push(ClientFrame::Fetch(Fetch {
            rid,
            conv: conv.to_owned(),
            after: Some(after),
            before: None,
            limit: Some(FETCH_PAGE),
        }));
    }

    fn finished_catch_up_step(&mut self) {
        if self.catching_up > 0 {
            self.catching_up -= 1;
            if self.catching_up == 0 {
                self.first_connection = false;
                self.emit(ClientEvent::CaughtUp);
            }
        }
    }

    /// Orders a message of a conversation, handing over what became ready and fetching a gap.
    fn take(&mut self, msg: Message, out: &mut Vec<ClientFrame>) {
        let conv = msg.conv.clone();
        let order = self.convs.entry(conv.clone()).or_default();
        for ready in order.offer(msg) {
            let _ = self.events.send(ClientEvent::Message(ready));
        }
        if order.gap_end().is_some() {
            self.request_fetch(&conv, out, false);
        }
    }

    fn reply(&mut self, waiting: Waiting, frame: ServerFrame, out: &mut Vec<ClientFrame>) {
        match waiting {
            Waiting::App(reply) => {
                let result = match frame {
                    ServerFrame::Error(error) => {
                        Err(ClientError::Server { code: error.code, message: error.message })
                    }
                    other => Ok(other),
                };
                let _ = reply.send(result);
            }
            Waiting::Send(cid) => match frame {
                ServerFrame::Accepted(_) => self.acknowledge(&cid, Ok(())),
                ServerFrame::Error(error) => {
                    let code = error.code;
                    self.acknowledge(
                        &cid,
                        Err(ClientError::Server { code, message: error.message }),
                    );
                }
                _ => {}
            },
            Waiting::Sync => {
                if let ServerFrame::Conversations(page) = frame {
                    for item in page.items {
                        let fresh = !self.convs.contains_key(&item.conv);
                        if fresh
                            && self.first_connection
                            && self.config.catch_up == CatchUp::FromNow
                        {
                            self.convs
                                .insert(item.conv.clone(), ConvOrder::starting_at(item.max_seq));
                            continue;
                        }
                        let order = self.convs.entry(item.conv.clone()).or_default();
                        if order.has_gap(item.max_seq) {
                            self.request_fetch(&item.conv, out, true);
                        }
                    }
                    if let Some(next) = page.next {
                        self.request_sync(Some(next), out);
                    }
                }
                self.finished_catch_up_step();
            }
            Waiting::Fetch(conv) => {
                let mut again = false;
                if let ServerFrame::Messages(page) = frame
                    && let Some(order) = self.convs.get_mut(&conv)
                {
                    order.fetching = false;
                    if let Some(first) = page.messages.first() {
                        order.skip_to(first.seq);
                    }
                    let fetched = page.messages.len();
                    for msg in page.messages {
                        for ready in order.offer(msg) {
                            let _ = self.events.send(ClientEvent::Message(ready));
                        }
                    }
                    again = fetched > 0 && order.has_gap(page.max_seq);
                } else if let Some(order) = self.convs.get_mut(&conv) {
                    // Refused (no longer a member, say): stop chasing this conversation.
                    order.fetching = false;
                }
                if again {
                    let was_catching_up = self.catching_up > 0;
                    self.request_fetch(&conv, out, was_catching_up);
                }
                self.finished_catch_up_step();
            }
        }
    }
}

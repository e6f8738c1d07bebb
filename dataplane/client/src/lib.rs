//! A client of the Dolphin protocol for Rust programs: the terminal chat, the benchmarks and
//! the tests all use it.
//!
//! [`Client::connect`] opens a connection and starts a task that keeps it: it reconnects with
//! jittered exponential backoff, sends again (with the same cid) what was not yet `accepted`,
//! and on every connection catches up with `sync` then `fetch`. Messages reach the application
//! as [`ClientEvent::Message`], in seq order per conversation and each exactly once: repeats
//! are dropped by (conv, seq) and gaps are fetched before what follows them.

mod order;
mod task;

use std::time::Duration;

use dolphin_protocol::{Body, ClientFrame, ErrorCode, Hello, Message, Rejected, ServerFrame};
pub use dolphin_protocol::{Encoding, codec};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use order::ConvOrder;

/// What went wrong with a request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    #[error("failed to connect: {0}")]
    Connect(String),
    #[error("the server refused the connection: HTTP {0}")]
    Refused(u16),
    #[error("the connection closed before the reply")]
    Disconnected,
    #[error("the client is closed")]
    Closed,
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
}

impl ClientError {
    /// The protocol code of a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Where a fresh client starts reading the conversations it finds on its first connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// From the newest message: history is the application's to page through.
    FromNow,
    /// From the first message the user may read.
    Everything,
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `ws://host:port` or `ws://host:port/v1/ws`.
    pub url: String,
    /// Other edges of the same cluster, tried in turn when a connection to the current one
    /// fails (for example when that edge is gone).
    pub fallback_urls: Vec<String>,
    pub token: String,
    pub device: String,
    pub encoding: Encoding,
    /// Whether to reconnect after the connection drops.
    pub reconnect: bool,
    pub catch_up: CatchUp,
    /// The longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// JSON, reconnecting, catching up from now.
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        device: impl Into<String>,
    ) -> Self {
        ClientConfig {
            url: url.into(),
            fallback_urls: Vec::new(),
            token: token.into(),
            device: device.into(),
            encoding: Encoding::Json,
            reconnect: true,
            catch_up: CatchUp::FromNow,
            max_backoff: Duration::from_secs(10),
        }
    }

    /// The WebSocket URL of endpoint `n` (the main URL, then the fallbacks, round and
    /// round) with the device and token as query parameters.
    fn ws_url(&self, n: usize) -> String {
        let count = 1 + self.fallback_urls.len();
        let url = match n % count {
            0 => &self.url,
            i => &self.fallback_urls[i - 1],
        };
        let base = url.trim_end_matches('/');
        let base = if base.ends_with("/v1/ws") { base.to_owned() } else { format!("{base}/v1/ws") };
        format!("{base}?device={}&token={}", self.device, self.token)
    }
}

/// What the connection tells the application.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// A connection opened (the first, or after a reconnect).
    Connected(Hello),
    /// The connection closed; the client reconnects if configured to.
    Disconnected { reason: String },
    /// The next message of a conversation, in seq order, once.
    Message(Message),
    /// A message this user sent was refused by ordering.
    Rejected(Rejected),
    /// Any other push (read, typing, friend, presence, call signals...).
    Push(ServerFrame),
    /// The catch-up after a connection finished: every message known to the server when it
    /// began has been delivered.
    CaughtUp,
}

type RequestFn = Box<dyn FnOnce(String) -> ClientFrame + Send>;

enum Op {
    Request { build: RequestFn, reply: oneshot::Sender<Result<ServerFrame, ClientError>> },
    Send { conv: String, cid: String, body: Body, reply: oneshot::Sender<Result<(), ClientError>> },
    Typing { conv: String },
    Close,
}

/// A handle to a connection kept by a background task. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    ops: mpsc::Sender<Op>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Op")
    }
}

impl Client {
    /// Connects and returns the client with the stream of its events. Fails if the first
    /// connection fails on every configured URL (a bad token, an unreachable server); later
    /// drops are retried.
    pub async fn connect(
        config: ClientConfig,
    ) -> Result<(Client, mpsc::UnboundedReceiver<ClientEvent>), ClientError> {
        let mut endpoint = 0;
        let socket = loop {
            match task::open(&config, endpoint).await {
                Ok(socket) => break socket,
                // A refusal (a bad token) would be the same on every edge.
                Err(error @ ClientError::Refused(_)) => return Err(error),
                Err(error) if endpoint >= config.fallback_urls.len() => return Err(error),
                Err(_) => endpoint += 1,
            }
        };
        let (ops, op_rx) = mpsc::channel(1024);
        let (events, event_rx) = mpsc::unbounded_channel();
        tokio::spawn(task::run(config, socket, endpoint, op_rx, events));
        Ok((Client { ops }, event_rx))
    }

    /// Sends a message with a fresh cid and waits until it is `accepted`. Returns the cid.
    pub async fn send(&self, conv: &str, body: Body) -> Result<String, ClientError> {
        let cid = format!("c{:016x}", rand::random::<u64>());
        self.send_with_cid(conv, &cid, body).await?;
        Ok(cid)
    }

    /// Sends a message with the given cid and waits until it is `accepted`, sending it again
    /// over new connections until then.
    pub async fn send_with_cid(
        &self,
        conv: &str,
        cid: &str,
        body: Body,
    ) -> Result<(), ClientError> {
        let (reply, wait) = oneshot::channel();
        let op = Op::Send { conv: conv.to_owned(), cid: cid.to_owned(), body, reply };
        self.ops.send(op).await.map_err(|_| ClientError::Closed)?;
        wait.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends any request; `build` receives the rid to put in the frame. Resolves with the
    /// reply, or with the error frame as [`ClientError::Server`].
    pub async fn request(
        &self,
        build: impl FnOnce(String) -> ClientFrame + Send + 'static,
    ) -> Result<ServerFrame, ClientError> {
        let (reply, wait) = oneshot::channel();
        self.ops
            .send(Op::Request { build: Box::new(build), reply })
            .await
            .map_err(|_| ClientError::Closed)?;
        wait.await.map_err(|_| ClientError::Closed)?
    }

    /// Tells the other members this user is typing.
    pub async fn typing(&self, conv: &str) -> Result<(), ClientError> {
        self.ops.send(Op::Typing { conv: conv.to_owned() }).await.map_err(|_| ClientError::Closed)
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&self) {
        let _ = self.ops.send(Op::Close).await;
    }

    /// `fetch` after a seq.
    pub async fn fetch_after(
        &self,
        conv: &str,
        after: u64,
        limit: u32,
    ) -> Result<dolphin_protocol::Messages, ClientError> {
        let conv = conv.to_owned();
        let reply = self
            .request(move |rid| {
                ClientFrame::Fetch(dolphin_protocol::Fetch {
                    rid,
                    conv,
                    after: Some(after),
                    before: None,
                    limit: Some(limit),
                })
            })
            .await?;
        match reply {
            ServerFrame::Messages(messages) => Ok(messages),
            other => Err(unexpected(other)),
        }
    }

    /// Every page of `sync`.
    pub async fn sync_all(&self) -> Result<Vec<dolphin_protocol::ConversationItem>, ClientError> {
        let mut items = Vec::new();
        let mut cursor = None;
        loop {
            let after = cursor.clone();
            let reply = self
                .request(move |rid| {
                    ClientFrame::Sync(dolphin_protocol::Sync {
                        rid,
                        limit: Some(500),
                        cursor: after,
                    })
                })
                .await?;
            let ServerFrame::Conversations(page) = reply else { return Err(unexpected(reply)) };
            items.extend(page.items);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// `group.create`; returns the new group's conversation id.
    pub async fn create_group(&self, title: &str, members: &[&str]) -> Result<String, ClientError> {
        let title = title.to_owned();
        let members = members.iter().map(|m| (*m).to_owned()).collect();
        let reply = self
            .request(move |rid| {
                ClientFrame::GroupCreate(dolphin_protocol::GroupCreate { rid, title, members })
            })
            .await?;
        match reply {
            ServerFrame::Group(group) => Ok(group.conv),
            other => Err(unexpected(other)),
        }
    }

    /// `read`.
    pub async fn read(&self, conv: &str, seq: u64) -> Result<(), ClientError> {
        let conv = conv.to_owned();
        self.request(move |rid| ClientFrame::Read(dolphin_protocol::ReadReq { rid, conv, seq }))
            .await?;
        Ok(())
    }
}

fn unexpected(frame: ServerFrame) -> ClientError {
    ClientError::Server {
        code: ErrorCode::Internal,
        message: format!("unexpected reply {}", frame.type_name()),
    }
}

//! What the end-to-end tests share: a `dolphin dev` in this process on a free port, tokens,
//! and a raw WebSocket client that sees frames exactly as they travel.

#![allow(dead_code)]

pub mod load;
pub mod proxy;

use std::time::Duration;

use dolphin::dev::{self, Dev, DevConfig};
use dolphin_state::Policy;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A `dolphin dev` running in this process.
pub struct Server {
    pub dev: Option<Dev>,
    pub addr: std::net::SocketAddr,
    pub data: tempfile::TempDir,
    pub secret: String,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut DevConfig)) -> Server {
        let data = tempfile::tempdir().unwrap();
        let mut config = DevConfig {
            data: data.path().to_path_buf(),
            shards: 2,
            replicas: 1,
            policy: Policy::default(),
            send_rate_per_sec: 1000,
            send_burst: 1000,
            queue: dolphin::queue::QueueArgs::default(),
            files: Default::default(),
            calls: Default::default(),
            presence_debounce: Duration::from_millis(300),
        };
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dev = dev::start(config, listener).await.expect("dolphin dev starts");
        let secret = std::fs::read_to_string(data.path().join("jwt-secret")).unwrap();
        Server { addr: dev.addr, dev: Some(dev), data, secret }
    }

    pub fn token(&self, user: &str) -> String {
        dolphin_edge::auth::issue(self.secret.as_bytes(), user, now_secs(), 3600).unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn ws_url(&self, user: &str, device: &str) -> String {
        format!("ws://{}/v1/ws?token={}&device={device}", self.addr, self.token(user))
    }

    pub async fn stop(&mut self) {
        if let Some(dev) = self.dev.take() {
            dev.shutdown();
            tokio::time::timeout(WAIT, dev.wait()).await.expect("dolphin dev stops").unwrap();
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A WebSocket client that speaks JSON frames by hand.
pub struct Raw {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
    next: u64,
    /// Frames read while looking for a reply, handed out by later receives in order.
    stash: std::collections::VecDeque<Value>,
}

impl Raw {
    /// Connects as `user` on `device` and reads `hello`.
    pub async fn connect(server: &Server, user: &str, device: &str) -> Raw {
        Raw::connect_url(&server.ws_url(user, device)).await
    }

    /// Connects to a full `/v1/ws` URL (token and device included) and reads `hello`.
    pub async fn connect_url(url: &str) -> Raw {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        let mut raw = Raw { ws, hello: Value::Null, next: 0, stash: Default::default() };
        raw.hello = raw.recv().await;
        assert_eq!(raw.hello["type"], "hello", "first frame is hello");
        raw
    }

    /// A fresh request id.
    pub fn rid(&mut self) -> String {
        self.next += 1;
        format!("r{}", self.next)
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws.send(Message::Text(frame.to_string().into())).await.expect("frame sent");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_owned().into())).await.expect("frame sent");
    }

    /// The next JSON frame.
    pub async fn recv(&mut self) -> Value {
        if let Some(frame) = self.stash.pop_front() {
            return frame;
        }
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect(
                    "no frame arrived in time: the server is silent or the test waits for the \
                     wrong frame",
                )
                .expect("the connection closed")
                .expect("the connection failed");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(&text).expect("frames are JSON");
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected websocket message {other:?}"),
            }
        }
    }

    /// Frames until one matches; the others are returned too, in order.
    pub async fn recv_until(&mut self, matches: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            if matches(&frame) {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// Sends a request with a fresh rid and returns the frame answering it; frames that
    /// arrive before it stay queued for later receives.
    pub async fn call(&mut self, mut frame: Value) -> Value {
        let rid = self.rid();
        frame["rid"] = json!(rid);
        self.send(frame).await;
        let mut skipped = std::collections::VecDeque::new();
        loop {
            let frame = self.recv().await;
            if frame["rid"] == json!(rid) {
                skipped.extend(self.stash.drain(..));
                self.stash = skipped;
                return frame;
            }
            skipped.push_back(frame);
        }
    }

    /// Sends a text message and waits for its `accepted`; returns the cid.
    pub async fn say(&mut self, conv: &str, text: &str) -> String {
        let cid = format!("c-{}-{}", text.len(), rand_u64());
        let reply = self
            .call(json!({"type":"send","conv":conv,"cid":cid,"body":{"kind":"text","text":text}}))
            .await;
        assert_eq!(reply["type"], "accepted", "{reply}");
        cid
    }

    /// Sends a text message and waits until it is ordered (its own push to this device, which
    /// stays queued for later receives with every frame before it); returns its seq.
    /// `accepted` only means queued: a test that reads what it sent waits for this.
    pub async fn say_ordered(&mut self, conv: &str, text: &str) -> u64 {
        let cid = self.say(conv, text).await;
        let mut seen = std::collections::VecDeque::new();
        loop {
            let frame = self.recv().await;
            let ordered = frame["type"] == "msg" && frame["cid"] == json!(cid);
            let seq = frame["seq"].as_u64();
            seen.push_back(frame);
            if ordered {
                seen.extend(self.stash.drain(..));
                self.stash = seen;
                return seq.expect("a msg push has a seq");
            }
        }
    }

    /// The next `msg` push, skipping other frames.
    pub async fn next_msg(&mut self) -> Value {
        self.recv_until(|f| f["type"] == "msg").await.0
    }

    /// Whether no frame but pings arrives within `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.ws.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Some(serde_json::from_str(&text).unwrap());
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("unexpected websocket event {other:?}"),
            }
        }
    }
}

pub fn rand_u64() -> u64 {
    rand::random()
}

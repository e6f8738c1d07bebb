//! Frames encoded once and shared by every connection they are pushed to.

use std::sync::{Arc, OnceLock};

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use dolphin_protocol::ServerFrame;
use dolphin_protocol::codec::{self, Encoding};

/// What one connection's push queue holds per item: one frame, or several in their order (the
/// messages one commit added to a conversation), so that a connection is woken and its queue
/// touched once for all of them.
pub type Pushes = Arc<[Arc<SharedFrame>]>;

/// A frame pushed to many connections. Each encoding is produced at most once, by the first
/// connection that needs it, and shared by reference count after that.
#[derive(Debug)]
pub struct SharedFrame {
    pub frame: ServerFrame,
    json: OnceLock<Utf8Bytes>,
    msgpack: OnceLock<Bytes>,
}

impl SharedFrame {
    pub fn new(frame: ServerFrame) -> Self {
        SharedFrame { frame, json: OnceLock::new(), msgpack: OnceLock::new() }
    }

    /// The WebSocket message for a connection using `encoding`.
    pub fn message(&self, encoding: Encoding) -> Message {
        match encoding {
            Encoding::Json => Message::Text(self.json.get_or_init(|| json(&self.frame)).clone()),
            Encoding::MsgPack => {
                Message::Binary(self.msgpack.get_or_init(|| msgpack(&self.frame)).clone())
            }
        }
    }
}

/// Encodes a frame for one connection.
pub fn message(frame: &ServerFrame, encoding: Encoding) -> Message {
    match encoding {
        Encoding::Json => Message::Text(json(frame)),
        Encoding::MsgPack => Message::Binary(msgpack(frame)),
    }
}

fn json(frame: &ServerFrame) -> Utf8Bytes {
    // serde_json writes valid UTF-8, and every frame type encodes.
    let bytes = codec::encode(frame, Encoding::Json).unwrap_or_default();
    Utf8Bytes::try_from(Bytes::from(bytes)).unwrap_or_default()
}

fn msgpack(frame: &ServerFrame) -> Bytes {
    Bytes::from(codec::encode(frame, Encoding::MsgPack).unwrap_or_default())
}

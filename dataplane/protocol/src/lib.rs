//! The Dolphin client protocol, version 1: every frame a client and a server exchange, as
//! types, with their JSON and MessagePack encodings.
//!
//! Start at [`ClientFrame`] and [`ServerFrame`]; [`codec`] turns them into bytes and back, and
//! [`ids`] holds the rules for user, device, conversation and client message ids.

pub mod body;
pub mod codec;
pub mod error;
pub mod frames;
pub mod ids;

pub use body::{Body, CallOutcome, Media, SystemBody, SystemEvent};
pub use codec::{DecodeError, Encoding};
pub use error::ErrorCode;
pub use frames::*;

/// The WebSocket subprotocol under which frames travel as MessagePack in binary frames.
pub const MSGPACK_SUBPROTOCOL: &str = "dolphin.v1.msgpack";

/// The largest JSON encoding of a message body the protocol accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest `limit` of a `fetch` or `sync`.
pub const MAX_FETCH_LIMIT: u32 = 500;

/// The `limit` of a `fetch` that names none.
pub const DEFAULT_FETCH_LIMIT: u32 = 100;

/// The heartbeat interval the server announces in `hello`.
pub const HEARTBEAT_MS: u64 = 30_000;

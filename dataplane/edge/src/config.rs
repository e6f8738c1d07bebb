//! How an edge runs.

use std::time::Duration;

use crate::auth::Verifier;
use crate::invite::Invites;

/// The largest WebSocket message an edge reads. Bigger than the largest body so that an
/// oversized body is answered with `too_large` rather than by closing the connection; a
/// frame above this closes the connection with 1009 (message too big).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// Pushes waiting for one connection before it counts as too slow and is disconnected (it
/// catches up with `sync` and `fetch` when it reconnects). A push is one frame, or the
/// messages one commit added to one conversation.
pub const OUTBOUND_CAPACITY: usize = 1024;

/// Requests one connection may have under way; reading waits beyond that.
pub const MAX_INFLIGHT_REQUESTS: usize = 256;

/// The send rate each user may sustain on one edge, and the burst above it.
pub const SEND_RATE_PER_SEC: u32 = 50;
pub const SEND_BURST: u32 = 200;

/// The longest comment on a moment.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// Moments per feed page unless the client asks for another number, and the most it may.
pub const DEFAULT_FEED_LIMIT: u32 = 20;
pub const MAX_FEED_LIMIT: u32 = 100;

/// The longest group title.
pub const MAX_TITLE_CHARS: usize = 256;

/// Everything an edge needs to serve clients.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Names the cluster's data, sent in `hello`.
    pub epoch: String,
    pub verifier: Verifier,
    pub heartbeat: Duration,
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub outbound_capacity: usize,
    pub max_inflight_requests: usize,
    pub send_rate_per_sec: u32,
    pub send_burst: u32,
    /// Call signaling and the ICE servers handed to clients.
    pub calls: crate::calls::CallConfig,
    /// Issues and checks friend invite codes; without it `friend.invite` and requests by code
    /// are answered `unavailable`.
    pub invites: Option<Invites>,
    /// How long a user's last device must stay away before friends see them offline.
    pub presence_debounce: Duration,
    /// How often this edge repeats which users it holds; an edge silent for a few periods is
    /// taken as gone, with its users.
    pub presence_beat: Duration,
    /// Where uploaded files are kept; without it `/v1/files` answers `unavailable`.
    pub files: Option<dolphin_files::FileStore>,
}

impl EdgeConfig {
    /// The defaults, for a cluster with this epoch and verifier.
    pub fn new(epoch: impl Into<String>, verifier: Verifier) -> Self {
        EdgeConfig {
            epoch: epoch.into(),
            verifier,
            heartbeat: Duration::from_millis(dolphin_protocol::HEARTBEAT_MS),
            max_frame_bytes: MAX_FRAME_BYTES,
            max_body_bytes: dolphin_protocol::MAX_BODY_BYTES,
            outbound_capacity: OUTBOUND_CAPACITY,
            max_inflight_requests: MAX_INFLIGHT_REQUESTS,
            send_rate_per_sec: SEND_RATE_PER_SEC,
            send_burst: SEND_BURST,
            calls: crate::calls::CallConfig::default(),
            invites: None,
            presence_debounce: crate::presence::DEFAULT_DEBOUNCE,
            presence_beat: crate::presence::DEFAULT_BEAT,
            files: None,
        }
    }
}

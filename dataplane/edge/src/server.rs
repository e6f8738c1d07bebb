//! The edge's HTTP server: the WebSocket endpoint, health, readiness and metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dolphin_protocol::{Encoding, MSGPACK_SUBPROTOCOL, ids};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::backend::Backend;
use crate::config::EdgeConfig;
use crate::connection;
use crate::dispatch;
use crate::handler::{Caller, Context};
use crate::metrics::EdgeMetrics;

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to register the edge's metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("failed to subscribe to notices from other edges")]
    Queue(#[from] dolphin_queue::QueueError),
}

/// A running edge: its shared context and the tasks it must wait for on shutdown.
#[derive(Clone, Debug)]
pub struct Edge {
    pub ctx: Arc<Context>,
    registry: Registry,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    file_metrics: dolphin_files::FileMetrics,
}

impl Edge {
    /// Creates an edge over `backend` and starts pushing what every shard replica publishes.
    pub async fn start(
        config: EdgeConfig,
        backend: Arc<Backend>,
        queue: dolphin_queue::Queue,
        registry: Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let metrics = EdgeMetrics::register(&registry)?;
        let file_metrics = dolphin_files::FileMetrics::register(&registry)?;
        let mut notices = queue.subscribe().await?;
        let ctx = Arc::new(Context::new(config, backend.clone(), queue, metrics));
        let tasks = TaskTracker::new();
        let edge = Edge {
            ctx: ctx.clone(),
            registry,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            file_metrics,
        };
        for (shard, link) in backend.links() {
            edge.follow(shard, link);
        }
        let notice_ctx = ctx.clone();
        let notice_stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = notice_stop.cancelled() => break,
                    notice = notices.recv() => match notice {
                        Some(bytes) => crate::handler::deliver_notice(&notice_ctx, &bytes),
                        None => break,
                    },
                }
            }
        });
        tasks.spawn(crate::presence::beat(ctx.clone(), shutdown.clone()));
        let health = ctx.backend.clone();
        let health_stop = shutdown.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = health_stop.cancelled() => break,
                    _ = every.tick() => health.check_writable().await,
                }
            }
        });
        tasks.spawn(async move {
            // Forget users idle long enough that their bucket is full again, so the limiter's
            // memory follows active users rather than every user ever seen.
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = every.tick() => ctx.limiter.retain_recent(),
                }
            }
        });
        Ok(edge)
    }

    /// Starts pushing the events of a shard.
    pub fn follow(&self, shard: u32, link: crate::ShardLink) {
        let (sessions, metrics) = (self.ctx.sessions.clone(), self.ctx.metrics.clone());
        self.tasks.spawn(dispatch::follow(shard, link, sessions, metrics, self.shutdown.clone()));
    }

    /// Takes a newer topology; follows the shards it adds.
    pub fn update_topology(&self, topology: &dolphin_topology::Topology) {
        for (shard, link) in self.ctx.backend.update(topology) {
            self.follow(shard, link);
        }
    }

    /// The HTTP routes of the edge.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/ws", get(upgrade))
            .route("/v1/ice", get(crate::ice::serve))
            .route("/v1/invite.svg", get(invite_svg))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
            .merge(dolphin_files::router(
                self.ctx.config.files.clone(),
                self.file_access(),
                self.file_metrics.clone(),
            ))
    }

    /// Answers the file endpoints' questions: tokens with the edge's verifier, conversations
    /// naming a file from every shard.
    fn file_access(&self) -> Arc<dyn dolphin_files::Access> {
        Arc::new(FileAccess {
            verifier: self.ctx.config.verifier.clone(),
            backend: self.ctx.backend.clone(),
        })
    }

    /// Waits for every connection and dispatcher to finish after the shutdown token fired.
    pub async fn drained(&self, within: Duration) {
        self.tasks.close();
        if tokio::time::timeout(within, self.tasks.wait()).await.is_err() {
            warn!(tasks = self.tasks.len(), "connections still open after the drain period");
        }
    }
}

/// The most connections waiting to be accepted (the kernel caps it at `net.core.somaxconn`).
/// When every device of an edge reconnects at once, a short queue overflows, and the kernel
/// drops the connection attempts beyond it; each retries only after a second.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` for devices, with an accept queue of [`LISTEN_BACKLOG`] connections
/// (`TcpListener::bind` leaves 128, which a reconnect storm overflows).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `edge` on `listener` until `shutdown` fires, then stops accepting and returns.
pub async fn serve(listener: TcpListener, edge: Edge) -> std::io::Result<()> {
    let shutdown = edge.shutdown.clone();
    info!(addr = %listener.local_addr()?, "edge listening");
    axum::serve(listener, edge.router()).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

#[derive(Debug, Deserialize)]
struct ConnectParams {
    token: Option<String>,
    device: Option<String>,
}

async fn upgrade(
    State(edge): State<Edge>,
    Query(params): Query<ConnectParams>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let ctx = &edge.ctx;
    let user = match ctx.config.verifier.authenticate(params.token.as_deref(), &headers) {
        Ok(user) => user,
        Err(error) => {
            ctx.metrics.refused.with_label_values(&["unauthorized"]).inc();
            return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
        }
    };
    let device = params.device.unwrap_or_else(|| "default".to_owned());
    if !ids::is_valid_id(&device) {
        ctx.metrics.refused.with_label_values(&["bad_request"]).inc();
        let message = "device must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -";
        return (StatusCode::BAD_REQUEST, message).into_response();
    }

    let caller = Caller { user, device };
    let ctx = ctx.clone();
    let shutdown = edge.shutdown.clone();
    let tasks = edge.tasks.clone();
    // Buffers sized for chat frames rather than the library's 128 KiB each: most of an idle
    // connection's memory was these two buffers. Larger frames still work; the read buffer
    // grows for them.
    ws.protocols([MSGPACK_SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(ctx.config.max_frame_bytes)
        .max_frame_size(ctx.config.max_frame_bytes)
        .on_upgrade(move |socket| {
            let encoding = match socket.protocol() {
                Some(p) if p.as_bytes() == MSGPACK_SUBPROTOCOL.as_bytes() => Encoding::MsgPack,
                _ => Encoding::Json,
            };
            tasks.track_future(connection::serve(socket, ctx, caller, encoding, shutdown))
        })
}

/// The read buffer of a connection: one typical frame batch.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Bytes of queued frames written before a flush is forced.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// `GET /v1/invite.svg`: a fresh invite code of the caller, as its QR code. The code itself
/// is in the `X-Dolphin-Invite-Code` header, for clients that show both.
async fn invite_svg(
    State(edge): State<Edge>,
    Query(params): Query<ConnectParams>,
    headers: HeaderMap,
) -> Response {
    let user = match edge.ctx.config.verifier.authenticate(params.token.as_deref(), &headers) {
        Ok(user) => user,
        Err(error) => return (StatusCode::UNAUTHORIZED, error.to_string()).into_response(),
    };
    let Some(invites) = &edge.ctx.config.invites else {
        let message = "invite codes are not configured on this edge";
        return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    };
    match invites.issue(&user) {
        Ok(issued) => {
            let headers = [
                (header::CONTENT_TYPE.as_str(), "image/svg+xml".to_owned()),
                (header::CACHE_CONTROL.as_str(), "no-store".to_owned()),
                ("x-dolphin-invite-code", issued.code),
            ];
            (headers, issued.qr_svg).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn ready(State(edge): State<Edge>) -> Response {
    if !edge.ctx.queue.is_available() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the queue is unreachable").into_response();
    }
    let leaderless = edge.ctx.backend.leaderless().await;
    if leaderless.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let message = format!("shards without a leader: {leaderless:?}");
        (StatusCode::SERVICE_UNAVAILABLE, message).into_response()
    }
}

async fn metrics(State(edge): State<Edge>) -> Response {
    let mut buffer = Vec::new();
    let families = edge.registry.gather();
    match TextEncoder::new().encode(&families, &mut buffer) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// What the file endpoints ask of an edge.
#[derive(Debug)]
struct FileAccess {
    verifier: crate::auth::Verifier,
    backend: Arc<Backend>,
}

impl dolphin_files::Access for FileAccess {
    fn authenticate(&self, token: &str) -> Result<String, String> {
        self.verifier.verify(token).map_err(|error| error.to_string())
    }

    fn named_for<'a>(
        &'a self,
        user: &'a str,
        file: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            self.backend.may_read_file(user, file).await.map_err(|error| error.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storm of connections arriving before any is accepted all wait in the queue; with the
    /// default queue of 128, the rest would be dropped and retried a second later.
    #[tokio::test]
    async fn a_reconnect_storm_waits_in_the_accept_queue() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let storm = 600;
        let mut clients = Vec::new();
        for _ in 0..storm {
            clients.push(tokio::net::TcpStream::connect(addr));
        }
        // Connections beyond a full queue are not completed until retried: seconds.
        let clients =
            tokio::time::timeout(Duration::from_secs(20), futures_util::future::join_all(clients))
                .await
                .expect("connections beyond the accept queue were dropped");
        assert!(clients.iter().all(Result::is_ok));
        // Nothing was accepted while they connected: every one of them waited in the queue.
        for _ in 0..storm {
            let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
            assert!(matches!(accepted, Ok(Ok(_))), "a connection of the storm was not queued");
        }
    }
}

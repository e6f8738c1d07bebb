//! A replica's HTTP server: Raft RPC between replicas, commands and queries from edges, the
//! event stream edges push from, the admin API, health and metrics.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /raft/{append,vote,snapshot}` | openraft request (MessagePack) | `Result` (MessagePack) |
//! | `POST /v1/shard/submit` | [`Command`] (MessagePack) | `Result<Applied, ShardError>` |
//! | `POST /v1/shard/query` | [`Query`] (MessagePack) | `Result<Answer, ShardError>` |
//! | `GET /v1/shard/events?after=N` | | a stream of [`StreamItem`]s, each length-prefixed |
//! | `GET /admin/status` | | [`Status`](crate::admin::Status) (JSON) |
//! | `GET /admin/digest` | | [`Digest`](crate::admin::Digest) of the whole state (JSON) |
//! | `POST /admin/learners` | [`NewLearner`] (JSON) | 204, after the learner caught up |
//! | `POST /admin/promote`, `/admin/remove` | [`ReplicaRef`] (JSON) | 204 |
//! | `POST /admin/step-down` | | JSON: the new leader |
//! | `POST /admin/isolate` | `{"isolated": bool}`, with fault injection on | 204 |
//!
//! A follower that gets a command or query forwards it once to the leader it knows, so that
//! callers need not find the leader themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dolphin_state::{Applied, Command, Event};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::{Deserialize, Serialize};

use crate::admin::{NewLearner, ReplicaRef};
use crate::error::ShardError;
use crate::network::RPC_CONTENT_TYPE;
use crate::query::{Answer, Query};
use crate::shard::Shard;
use crate::types::TypeConfig;

/// Header marking a request a replica already forwarded, so that it is not forwarded again.
pub const FORWARDED: &str = "x-dolphin-forwarded";

/// Header of an answer a follower got from the leader: the leader's address, so that callers
/// go there directly next time.
pub const LEADER: &str = "x-dolphin-leader";

/// How often an idle event stream carries a heartbeat, so either side notices a dead peer.
pub const STREAM_HEARTBEAT: Duration = Duration::from_secs(2);

/// One item of the event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum StreamItem {
    /// The events of the entry at `index`.
    Events { index: u64, events: Vec<Event> },
    /// Events after `after` are no longer held; the stream continues from `oldest`.
    Gap { after: u64, oldest: u64 },
    /// Nothing new: every event up to log index `position` has been sent.
    Heartbeat { position: u64 },
}

/// Cuts a replica off from its peers when set: a fault-injecting transport for tests of
/// partitions. Off unless the replica was started with fault injection enabled.
#[derive(Clone, Debug, Default)]
pub struct Isolation {
    isolated: Arc<AtomicBool>,
}

impl Isolation {
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::Acquire)
    }

    pub fn set(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::Release);
    }
}

/// What the routes share.
#[derive(Clone, Debug)]
pub struct ReplicaServer {
    pub shard: Arc<Shard>,
    pub registry: Registry,
    pub isolation: Isolation,
    /// Whether `/admin/isolate` may be used.
    pub fault_injection: bool,
    client: reqwest::Client,
}

impl ReplicaServer {
    pub fn new(
        shard: Arc<Shard>,
        registry: Registry,
        isolation: Isolation,
        fault_injection: bool,
    ) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        ReplicaServer { shard, registry, isolation, fault_injection, client }
    }

    /// The routes of a replica.
    pub fn router(self) -> Router {
        Router::new()
            .route("/raft/append", post(append))
            .route("/raft/vote", post(vote))
            .route("/raft/snapshot", post(snapshot))
            .route("/v1/shard/submit", post(submit))
            .route("/v1/shard/query", post(query))
            .route("/v1/shard/events", get(events))
            .route("/admin/status", get(status))
            .route("/admin/digest", get(digest))
            .route("/admin/learners", post(add_learner))
            .route("/admin/promote", post(promote))
            .route("/admin/remove", post(remove))
            .route("/admin/step-down", post(step_down))
            .route("/admin/isolate", post(isolate))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics))
            .with_state(self)
    }
}

fn msgpack<T: Serialize>(value: &T) -> Response {
    match rmp_serde::to_vec_named(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, RPC_CONTENT_TYPE)], bytes).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

fn undecodable(error: rmp_serde::decode::Error) -> Response {
    (StatusCode::BAD_REQUEST, format!("failed to decode the request: {error}")).into_response()
}

fn cut_off() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "isolated by fault injection").into_response()
}

async fn append(State(server): State<ReplicaServer>, body: Bytes) -> Response {
    if server.isolation.is_isolated() {
        return cut_off();
    }
    match rmp_serde::from_slice::<AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(request) => msgpack(&server.shard.raft().append_entries(request).await),
        Err(error) => undecodable(error),
    }
}

async fn vote(State(server): State<ReplicaServer>, body: Bytes) -> Response {
    if server.isolation.is_isolated() {
        return cut_off();
    }
    match rmp_serde::from_slice::<VoteRequest<u64>>(&body) {
        Ok(request) => msgpack(&server.shard.raft().vote(request).await),
        Err(error) => undecodable(error),
    }
}

async fn snapshot(State(server): State<ReplicaServer>, body: Bytes) -> Response {
    if server.isolation.is_isolated() {
        return cut_off();
    }
    match rmp_serde::from_slice::<InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(request) => msgpack(&server.shard.raft().install_snapshot(request).await),
        Err(error) => undecodable(error),
    }
}

/// Sends a request the local replica could not serve to the leader it names, once.
async fn forward<T: serde::de::DeserializeOwned + Serialize>(
    server: &ReplicaServer,
    headers: &HeaderMap,
    path: &str,
    body: Bytes,
    error: ShardError,
) -> Response {
    let ShardError::NotLeader { leader: Some((_, addr)) } = &error else {
        return msgpack(&Err::<T, _>(error));
    };
    if headers.contains_key(FORWARDED) || server.isolation.is_isolated() {
        return msgpack(&Err::<T, _>(error));
    }
    let addr = addr.clone();
    let result: Result<T, ShardError> = forward_to(server, &addr, path, body).await;
    let mut response = msgpack(&result);
    if let Ok(value) = axum::http::HeaderValue::from_str(&addr) {
        response.headers_mut().insert(LEADER, value);
    }
    response
}

async fn forward_to<T: serde::de::DeserializeOwned>(
    server: &ReplicaServer,
    addr: &str,
    path: &str,
    body: Bytes,
) -> Result<T, ShardError> {
    let response = server
        .client
        .post(format!("http://{addr}{path}"))
        .header(FORWARDED, "1")
        .header(header::CONTENT_TYPE, RPC_CONTENT_TYPE)
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .map_err(|e| ShardError::Unavailable(format!("failed to forward to the leader: {e}")))?;
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ShardError::Unavailable(format!("failed to read the leader's answer: {e}")))?;
    rmp_serde::from_slice::<Result<T, ShardError>>(&bytes).map_err(|e| {
        ShardError::Unavailable(format!("failed to decode the leader's answer: {e}"))
    })?
}

async fn submit(State(server): State<ReplicaServer>, headers: HeaderMap, body: Bytes) -> Response {
    let command: Command = match rmp_serde::from_slice(&body) {
        Ok(command) => command,
        Err(error) => return undecodable(error),
    };
    // A follower hands the command straight to the leader rather than proposing it locally.
    if !server.shard.is_leader()
        && let leader @ Some(_) =
            server.shard.status().leader.zip(server.shard.status().leader_addr)
    {
        let error = ShardError::NotLeader { leader };
        return forward::<Applied>(&server, &headers, "/v1/shard/submit", body, error).await;
    }
    match server.shard.submit(command).await {
        Err(error @ ShardError::NotLeader { .. }) => {
            forward::<Applied>(&server, &headers, "/v1/shard/submit", body, error).await
        }
        other => msgpack(&other),
    }
}

async fn query(State(server): State<ReplicaServer>, headers: HeaderMap, body: Bytes) -> Response {
    let question: Query = match rmp_serde::from_slice(&body) {
        Ok(question) => question,
        Err(error) => return undecodable(error),
    };
    match server.shard.read(|kv| question.run(kv)).await {
        Err(error @ ShardError::NotLeader { .. }) => {
            forward::<Answer>(&server, &headers, "/v1/shard/query", body, error).await
        }
        other => msgpack(&other),
    }
}

#[derive(Debug, Deserialize)]
struct After {
    after: Option<u64>,
}

/// Encodes one stream item with its 4-byte big-endian length in front.
pub fn frame_item(item: &StreamItem) -> Result<Bytes, rmp_serde::encode::Error> {
    let body = rmp_serde::to_vec_named(item)?;
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    Ok(Bytes::from(framed))
}

async fn events(State(server): State<ReplicaServer>, UrlQuery(after): UrlQuery<After>) -> Response {
    let mut subscription = server.shard.subscribe(after.after);
    // A task feeds the response through a small channel and stops when the reader goes away.
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(STREAM_HEARTBEAT);
        loop {
            let item = tokio::select! {
                next = subscription.next() => match next {
                    Some(Ok((index, events))) => StreamItem::Events { index, events: events.to_vec() },
                    Some(Err(gap)) => StreamItem::Gap { after: gap.after, oldest: gap.oldest },
                    None => break,
                },
                _ = heartbeat.tick() => StreamItem::Heartbeat { position: subscription.position() },
            };
            let Ok(bytes) = frame_item(&item) else { break };
            if tx.send(Ok::<_, std::io::Error>(bytes)).await.is_err() {
                break;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    ([(header::CONTENT_TYPE, "application/x-dolphin-events")], Body::from_stream(stream))
        .into_response()
}

async fn status(State(server): State<ReplicaServer>) -> Response {
    axum::Json(server.shard.status()).into_response()
}

async fn digest(State(server): State<ReplicaServer>) -> Response {
    match server.shard.digest().await {
        Ok(digest) => axum::Json(digest).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response(),
    }
}

fn admin_result(result: Result<(), ShardError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error @ ShardError::NotLeader { .. }) => {
            (StatusCode::MISDIRECTED_REQUEST, axum::Json(error)).into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(error)).into_response(),
    }
}

async fn add_learner(
    State(server): State<ReplicaServer>,
    axum::Json(learner): axum::Json<NewLearner>,
) -> Response {
    admin_result(server.shard.add_learner(learner).await)
}

async fn promote(
    State(server): State<ReplicaServer>,
    axum::Json(replica): axum::Json<ReplicaRef>,
) -> Response {
    admin_result(server.shard.promote(replica).await)
}

async fn remove(
    State(server): State<ReplicaServer>,
    axum::Json(replica): axum::Json<ReplicaRef>,
) -> Response {
    admin_result(server.shard.remove(replica).await)
}

#[derive(Debug, Serialize, Deserialize)]
struct SteppedDown {
    leader: Option<u64>,
}

async fn step_down(State(server): State<ReplicaServer>) -> Response {
    match server.shard.step_down(Duration::from_secs(10)).await {
        Ok(leader) => axum::Json(SteppedDown { leader }).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(error)).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct Isolate {
    isolated: bool,
}

async fn isolate(
    State(server): State<ReplicaServer>,
    axum::Json(request): axum::Json<Isolate>,
) -> Response {
    if !server.fault_injection {
        return (StatusCode::FORBIDDEN, "fault injection is off on this replica").into_response();
    }
    server.isolation.set(request.isolated);
    tracing::warn!(isolated = request.isolated, "fault injection changed this replica's isolation");
    StatusCode::NO_CONTENT.into_response()
}

async fn ready(State(server): State<ReplicaServer>) -> Response {
    let status = server.shard.status();
    if status.leader.is_some() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the shard has no leader").into_response()
    }
}

async fn metrics(State(server): State<ReplicaServer>) -> Response {
    let mut buffer = Vec::new();
    match TextEncoder::new().encode(&server.registry.gather(), &mut buffer) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buffer).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

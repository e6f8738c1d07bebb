//! The queue on Redis Streams: a stream per shard inbox (`<prefix>:inbox:<shard>`) with one
//! consumer group, and a Pub/Sub channel for ephemeral notices.
//!
//! Pushes share one connection and are pipelined by the client, so concurrent sends cost one
//! round trip together. A consumer has a connection of its own, because its reads block. No
//! command is queued while Redis is unreachable: a push fails at once with `unavailable`
//! rather than answering `accepted` for something that is not in Redis.

use std::time::Duration;

use bytes::Bytes;
use dolphin_state::Command;
use fred::prelude::*;
use fred::types::streams::{XCap, XID};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::{EntryId, InboxEntry, QueueError, READ_BLOCK};

/// The consumer group of every inbox.
pub const GROUP: &str = "sequencer";

/// How long any single Redis command may take before the caller hears `unavailable`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the queue is and how to use it.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` or `rediss://` for TLS.
    pub url: String,
    /// Keys are `<prefix>:inbox:<shard>` and `<prefix>:notices`.
    pub prefix: String,
    /// When set, each push waits until this many replicas of the Redis primary have it.
    pub wait_replicas: Option<u32>,
    /// For `rediss://`: a PEM file of the certificate authorities to trust instead of the
    /// system's (a private cloud's own CA).
    pub ca_file: Option<std::path::PathBuf>,
}

/// The Redis transport. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RedisQueue {
    settings: RedisSettings,
    client: Client,
}

fn unavailable(error: Error) -> QueueError {
    QueueError::Unavailable(error.to_string())
}

/// The connection settings of `settings`: the URL, and for TLS the trusted authorities.
fn config(settings: &RedisSettings) -> Result<Config, QueueError> {
    let mut config =
        Config::from_url(&settings.url).map_err(|e| QueueError::Unavailable(e.to_string()))?;
    if let Some(path) = &settings.ca_file {
        use fred::rustls::pki_types::CertificateDer;
        use fred::rustls::pki_types::pem::PemObject;
        let tls = |message: String| QueueError::Tls(format!("{}: {message}", path.display()));
        let mut roots = fred::rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls(e.to_string()))? {
            roots.add(cert.map_err(|e| tls(e.to_string()))?).map_err(|e| tls(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(tls("holds no certificate".into()));
        }
        if config.tls.is_none() {
            return Err(tls("a CA file needs a rediss:// URL".into()));
        }
        let client_config = fred::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.tls = Some(TlsConnector::from(client_config).into());
    }
    Ok(config)
}

fn client(settings: &RedisSettings) -> Result<Client, QueueError> {
    let config = config(settings)?;
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
        })
        .with_connection_config(|connection| {
            connection.connection_timeout = Duration::from_secs(2);
            // A command interrupted by a disconnect fails instead of being sent again on the
            // next connection: the caller decides, and answers `unavailable` meanwhile.
            connection.max_command_attempts = 1;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
    builder.build().map_err(|e| QueueError::Unavailable(e.to_string()))
}

fn inbox_key(prefix: &str, shard: u32) -> String {
    format!("{prefix}:inbox:{shard}")
}

impl RedisQueue {
    /// Connects, and fails if the first connection does (unreachable, wrong password).
    pub async fn connect(settings: RedisSettings) -> Result<Self, QueueError> {
        let client = client(&settings)?;
        client.init().await.map_err(unavailable)?;
        Ok(RedisQueue { settings, client })
    }

    /// Connects without waiting for Redis to be reachable.
    pub fn start(settings: RedisSettings) -> Result<Self, QueueError> {
        let client = client(&settings)?;
        let starting = client.clone();
        tokio::spawn(async move {
            if let Err(error) = starting.init().await {
                warn!(%error, "failed to connect to redis; retrying in the background");
            }
        });
        Ok(RedisQueue { settings, client })
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    pub(crate) async fn push(&self, shard: u32, command: &Command) -> Result<EntryId, QueueError> {
        if !self.client.is_connected() {
            return Err(QueueError::Unavailable("not connected to redis".into()));
        }
        let bytes = Bytes::from(crate::encode(command)?);
        let key = inbox_key(&self.settings.prefix, shard);
        let id: String = self
            .client
            .xadd(key, false, None::<()>, XID::Auto, vec![("c", bytes)])
            .await
            .map_err(unavailable)?;
        if let Some(replicas) = self.settings.wait_replicas {
            let acked: i64 = self
                .client
                .wait(i64::from(replicas), COMMAND_TIMEOUT.as_millis() as i64)
                .await
                .map_err(unavailable)?;
            if acked < i64::from(replicas) {
                return Err(QueueError::Unavailable(format!(
                    "only {acked} of {replicas} redis replicas took the entry in time"
                )));
            }
        }
        id.parse()
    }

    pub(crate) async fn consumer(
        &self,
        shard: u32,
        name: &str,
    ) -> Result<RedisConsumer, QueueError> {
        let client = client(&self.settings)?;
        client.init().await.map_err(unavailable)?;
        let key = inbox_key(&self.settings.prefix, shard);
        // The group starts at the beginning of the stream, so nothing pushed before the first
        // leader existed is skipped. BUSYGROUP means it exists already.
        let created: Result<(), Error> = client.xgroup_create(&key, GROUP, "0", true).await;
        if let Err(error) = created
            && !error.details().contains("BUSYGROUP")
        {
            return Err(unavailable(error));
        }
        Ok(RedisConsumer { client, key, name: name.to_owned(), pending_after: None })
    }

    pub(crate) async fn publish(&self, notice: Bytes) -> Result<(), QueueError> {
        let channel = format!("{}:notices", self.settings.prefix);
        let _: i64 = self.client.publish(channel, notice).await.map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn subscribe(&self) -> Result<mpsc::Receiver<Bytes>, QueueError> {
        let config = config(&self.settings)?;
        let subscriber = Builder::from_config(config)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build_subscriber_client()
            .map_err(unavailable)?;
        let channel = format!("{}:notices", self.settings.prefix);
        let mut messages = subscriber.message_rx();
        let (tx, rx) = mpsc::channel(1024);
        let starting = subscriber.clone();
        tokio::spawn(async move {
            if let Err(error) = starting.init().await {
                warn!(%error, "failed to connect the notice subscriber; retrying in background");
            }
            // Subscriptions are renewed by the client after every reconnect; the task it
            // returns runs on its own, detached.
            drop(starting.manage_subscriptions());
            if let Err(error) = starting.subscribe(channel).await {
                warn!(%error, "failed to subscribe to notices");
            }
        });
        tokio::spawn(async move {
            let _keep = subscriber;
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        let Some(bytes) = message.value.as_bytes().map(Bytes::copy_from_slice)
                        else {
                            continue;
                        };
                        if tx.send(bytes).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }
}

/// The consumer of one shard's inbox on Redis.
#[derive(Debug)]
pub struct RedisConsumer {
    client: Client,
    key: String,
    name: String,
    /// While pending entries are read back after taking over: the last one read.
    pending_after: Option<EntryId>,
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        // A consumer lives for one term of leadership; close its connection with it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

/// One entry of a stream read: its id, and its fields (`None` when the entry was trimmed away
/// while pending: every replica had applied it).
type RawEntry = (String, Option<Vec<(String, Bytes)>>);

fn shape(what: &str, value: &Value) -> QueueError {
    QueueError::Protocol(format!("unexpected {what} in a stream read: {value:?}"))
}

/// The entries of an `XREADGROUP` reply, parsed from the raw value: a typed conversion of the
/// nested arrays guesses wrongly when a level holds exactly one element. Both RESP2 (arrays)
/// and RESP3 (a map of streams) are understood; `nil` (nothing new in time) is no entries.
fn parse_read(reply: Value) -> Result<Vec<RawEntry>, QueueError> {
    let streams: Vec<Value> = match reply {
        Value::Null => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(|stream| match stream {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
                other => Err(shape("stream", &other)),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(map) => map.inner().into_values().collect(),
        other => return Err(shape("reply", &other)),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else { return Err(shape("entry list", &entries)) };
        for entry in entries {
            let Value::Array(mut parts) = entry else { return Err(shape("entry", &entry)) };
            if parts.len() != 2 {
                return Err(shape("entry", &Value::Array(parts)));
            }
            let fields = parts.pop().unwrap_or(Value::Null);
            let id = parts
                .pop()
                .and_then(|id| id.as_string())
                .ok_or_else(|| QueueError::Protocol("a stream entry without an id".to_owned()))?;
            let fields = match fields {
                Value::Null => None,
                Value::Array(flat) if flat.is_empty() => None,
                Value::Array(flat) => {
                    let mut pairs = Vec::with_capacity(flat.len() / 2);
                    let mut flat = flat.into_iter();
                    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                        let name = name.as_string().ok_or_else(|| shape("field", &name))?;
                        let value = match value {
                            Value::Bytes(bytes) => bytes,
                            Value::String(text) => text.into_inner(),
                            other => return Err(shape("field value", &other)),
                        };
                        pairs.push((name, value));
                    }
                    Some(pairs)
                }
                Value::Map(map) => Some(
                    map.inner()
                        .into_iter()
                        .map(|(name, value)| {
                            let bytes = value.as_bytes().map(Bytes::copy_from_slice);
                            Ok((
                                name.as_str_lossy().into_owned(),
                                bytes.ok_or_else(|| shape("field value", &value))?,
                            ))
                        })
                        .collect::<Result<_, QueueError>>()?,
                ),
                other => return Err(shape("fields", &other)),
            };
            out.push((id, fields));
        }
    }
    Ok(out)
}

/// The entries of a read, and the ids of pending entries already trimmed away.
fn entries(raw: Vec<RawEntry>) -> Result<(Vec<InboxEntry>, Vec<EntryId>), QueueError> {
    let mut live = Vec::with_capacity(raw.len());
    let mut trimmed = Vec::new();
    for (id, fields) in raw {
        let id: EntryId = id.parse()?;
        match fields {
            None => trimmed.push(id),
            Some(fields) => match fields.iter().find(|(name, _)| name == "c") {
                Some((_, bytes)) => live.push(InboxEntry { id, command: crate::decode(bytes)? }),
                None => {
                    return Err(QueueError::Protocol(format!("inbox entry {id} has no command")));
                }
            },
        }
    }
    Ok((live, trimmed))
}

impl RedisConsumer {
    async fn read(
        &mut self,
        id: XID,
        max: usize,
        block: Option<u64>,
    ) -> Result<(Vec<InboxEntry>, Option<EntryId>), QueueError> {
        let reply: Value = self
            .client
            .xreadgroup(
                GROUP,
                self.name.as_str(),
                Some(max as u64),
                block,
                false,
                self.key.as_str(),
                id,
            )
            .await
            .map_err(unavailable)?;
        let (mut out, trimmed) = entries(parse_read(reply)?)?;
        out.sort_by_key(|e| e.id);
        let last = out.last().map(|e| e.id).max(trimmed.iter().max().copied());
        self.ack(&trimmed).await?;
        Ok((out, last))
    }

    pub(crate) async fn claim_pending(
        &mut self,
        max: usize,
    ) -> Result<Vec<InboxEntry>, QueueError> {
        // Take ownership of every pending entry, whoever had it: XAUTOCLAIM with no idle time.
        let mut start = "0-0".to_owned();
        loop {
            let reply: Value = self
                .client
                .xautoclaim(
                    self.key.as_str(),
                    GROUP,
                    self.name.as_str(),
                    0,
                    start.as_str(),
                    Some(max as u64),
                    true,
                )
                .await
                .map_err(unavailable)?;
            let next = match reply {
                Value::Array(parts) => {
                    parts.first().and_then(|v| v.as_string()).unwrap_or_default()
                }
                other => {
                    return Err(QueueError::Protocol(format!(
                        "unexpected XAUTOCLAIM reply {other:?}"
                    )));
                }
            };
            if next.is_empty() || next == "0-0" {
                break;
            }
            start = next;
        }
        // Then read this consumer's pending list (now everything pending) from the start.
        self.pending_after = Some(EntryId::default());
        let claimed = self.next_pending(max).await?;
        debug!(claimed = claimed.len(), "took over pending inbox entries");
        Ok(claimed)
    }

    /// The next pending entries after those already read back, in order; `pending_after`
    /// becomes `None` once there are no more.
    async fn next_pending(&mut self, max: usize) -> Result<Vec<InboxEntry>, QueueError> {
        while let Some(after) = self.pending_after {
            let (pending, last) =
                self.read(XID::Manual(after.to_string().into()), max, None).await?;
            // A read that found only trimmed entries goes on after them.
            self.pending_after = last;
            if !pending.is_empty() {
                return Ok(pending);
            }
        }
        Ok(Vec::new())
    }

    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Vec<InboxEntry>, QueueError> {
        if self.pending_after.is_some() {
            // More pending than one claim returned: keep draining them before new entries.
            let pending = self.next_pending(max).await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
        }
        let block = Some(READ_BLOCK.as_millis() as u64);
        Ok(self.read(XID::NewInGroup, max, block).await?.0)
    }

    pub(crate) async fn ack(&mut self, ids: &[EntryId]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let _: i64 = self.client.xack(self.key.as_str(), GROUP, ids).await.map_err(unavailable)?;
        Ok(())
    }

    pub(crate) async fn trim_below(&mut self, id: EntryId) -> Result<(), QueueError> {
        let cap = XCap::try_from(("MINID", "=", id.to_string())).map_err(unavailable)?;
        let _: i64 = self.client.xtrim(self.key.as_str(), cap).await.map_err(unavailable)?;
        Ok(())
    }

    /// Entries never delivered to the group, as Redis counts them (`lag` of XINFO GROUPS,
    /// Redis 7 and newer; `None` when Redis cannot tell).
    pub(crate) async fn lag(&mut self) -> Result<Option<u64>, QueueError> {
        let groups: Value =
            self.client.xinfo_groups(self.key.as_str()).await.map_err(unavailable)?;
        let Value::Array(groups) = groups else { return Err(shape("XINFO GROUPS reply", &groups)) };
        for group in groups {
            let fields: Vec<(String, Value)> = match group {
                Value::Array(flat) => {
                    let mut flat = flat.into_iter();
                    let mut fields = Vec::new();
                    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
                        fields.push((name.as_string().unwrap_or_default(), value));
                    }
                    fields
                }
                Value::Map(map) => map
                    .inner()
                    .into_iter()
                    .map(|(k, v)| (k.as_str_lossy().into_owned(), v))
                    .collect(),
                other => return Err(shape("group", &other)),
            };
            let named = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v);
            if named("name").and_then(Value::as_string).as_deref() == Some(GROUP) {
                return Ok(named("lag").and_then(Value::as_u64));
            }
        }
        Ok(None)
    }

    pub(crate) async fn pending(&mut self) -> Result<u64, QueueError> {
        let summary: Value =
            self.client.xpending(self.key.as_str(), GROUP, ()).await.map_err(unavailable)?;
        match summary {
            Value::Array(parts) => Ok(parts.first().and_then(|v| v.as_u64()).unwrap_or(0)),
            _ => Ok(0),
        }
    }
}

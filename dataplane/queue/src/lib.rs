//! The queue between edges and sequencer shards.
//!
//! An edge answers `accepted` once a message is durably in its shard's inbox; the shard's
//! leader takes inbox entries in order through a consumer group, proposes them to Raft, and
//! acknowledges them once applied. A new leader first takes over what the old one left
//! unacknowledged. Entries are trimmed only below what every replica has applied. Delivery of
//! an entry twice is harmless: the state machine recognises a repeated (sender,
//! conversation, cid).
//!
//! [`Queue`] has two transports with the same semantics: [`redis`] (Redis Streams, for
//! clusters) and [`embedded`] (a redb file, for `dolphin dev`). Both also carry ephemeral
//! notices between edges (typing), which are never stored.

pub mod embedded;
pub mod redis;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use dolphin_state::Command;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

/// The position of an entry in an inbox. Redis stream ids are `ms-seq`; the embedded queue
/// numbers entries `n-0`. Ordered like the stream.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = QueueError;

    fn from_str(s: &str) -> Result<Self, QueueError> {
        let bad = || QueueError::Protocol(format!("not a stream id: {s:?}"));
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(EntryId { ms: ms.parse().map_err(|_| bad())?, seq: seq.parse().map_err(|_| bad())? })
    }
}

/// One command waiting in an inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct InboxEntry {
    pub id: EntryId,
    pub command: Command,
}

/// What can go wrong with the queue.
#[derive(Debug, Error, Clone)]
pub enum QueueError {
    /// The queue cannot be reached or did not answer in time; nothing can be assumed queued.
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    /// The queue answered something this code does not understand.
    #[error("failed to understand the queue's answer: {0}")]
    Protocol(String),
    /// The embedded queue's file failed.
    #[error("failed to access the embedded queue: {0}")]
    Storage(String),
    /// The TLS settings are unusable (an unreadable or empty CA file).
    #[error("invalid TLS settings for the queue: {0}")]
    Tls(String),
    /// A command could not be encoded.
    #[error("failed to encode a command: {0}")]
    Encode(String),
}

pub(crate) fn encode(command: &Command) -> Result<Vec<u8>, QueueError> {
    rmp_serde::to_vec_named(command).map_err(|e| QueueError::Encode(e.to_string()))
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Command, QueueError> {
    rmp_serde::from_slice(bytes).map_err(|e| QueueError::Protocol(format!("bad command: {e}")))
}

/// How long a consumer's read waits for new entries before returning empty.
pub const READ_BLOCK: Duration = Duration::from_millis(200);

/// The queue of a cluster.
#[derive(Clone, Debug)]
pub enum Queue {
    Embedded(embedded::EmbeddedQueue),
    Redis(redis::RedisQueue),
}

impl Queue {
    /// Appends a command to a shard's inbox; returns once the queue holds it durably (as
    /// durably as the queue is configured to).
    pub async fn push(&self, shard: u32, command: &Command) -> Result<EntryId, QueueError> {
        match self {
            Queue::Embedded(queue) => queue.push(shard, command).await,
            Queue::Redis(queue) => queue.push(shard, command).await,
        }
    }

    /// The consumer of a shard's inbox for the replica named `name`.
    pub async fn consumer(&self, shard: u32, name: &str) -> Result<Consumer, QueueError> {
        Ok(match self {
            Queue::Embedded(queue) => Consumer::Embedded(queue.consumer(shard)),
            Queue::Redis(queue) => Consumer::Redis(queue.consumer(shard, name).await?),
        })
    }

    /// Sends an ephemeral notice to every edge (this one included).
    pub async fn publish(&self, notice: Bytes) -> Result<(), QueueError> {
        match self {
            Queue::Embedded(queue) => {
                queue.publish(notice);
                Ok(())
            }
            Queue::Redis(queue) => queue.publish(notice).await,
        }
    }

    /// Every ephemeral notice published from now on, by any edge.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<Bytes>, QueueError> {
        match self {
            Queue::Embedded(queue) => Ok(queue.subscribe()),
            Queue::Redis(queue) => queue.subscribe().await,
        }
    }

    /// Whether the queue is reachable now.
    pub fn is_available(&self) -> bool {
        match self {
            Queue::Embedded(_) => true,
            Queue::Redis(queue) => queue.is_connected(),
        }
    }
}

/// One shard's inbox, as its leader consumes it.
#[derive(Debug)]
pub enum Consumer {
    Embedded(embedded::EmbeddedConsumer),
    Redis(redis::RedisConsumer),
}

impl Consumer {
    /// Takes over every entry delivered to any consumer and not acknowledged (a previous
    /// leader's), and returns them in order.
    pub async fn claim_pending(&mut self, max: usize) -> Result<Vec<InboxEntry>, QueueError> {
        match self {
            Consumer::Embedded(consumer) => consumer.claim_pending(max),
            Consumer::Redis(consumer) => consumer.claim_pending(max).await,
        }
    }

    /// The next entries never delivered, in order, waiting up to [`READ_BLOCK`] for some.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<InboxEntry>, QueueError> {
        match self {
            Consumer::Embedded(consumer) => consumer.next_batch(max).await,
            Consumer::Redis(consumer) => consumer.next_batch(max).await,
        }
    }

    /// Marks entries as done.
    pub async fn ack(&mut self, ids: &[EntryId]) -> Result<(), QueueError> {
        match self {
            Consumer::Embedded(consumer) => {
                consumer.ack(ids);
                Ok(())
            }
            Consumer::Redis(consumer) => consumer.ack(ids).await,
        }
    }

    /// Deletes the entries below `id`.
    pub async fn trim_below(&mut self, id: EntryId) -> Result<(), QueueError> {
        match self {
            Consumer::Embedded(consumer) => consumer.trim_below(id),
            Consumer::Redis(consumer) => consumer.trim_below(id).await,
        }
    }

    /// Entries in the inbox never delivered to a consumer yet (`None`: the transport cannot
    /// tell).
    pub async fn lag(&mut self) -> Result<Option<u64>, QueueError> {
        match self {
            Consumer::Embedded(consumer) => Ok(Some(consumer.lag())),
            Consumer::Redis(consumer) => consumer.lag().await,
        }
    }

    /// Entries delivered and not yet acknowledged.
    pub async fn pending(&mut self) -> Result<u64, QueueError> {
        match self {
            Consumer::Embedded(consumer) => Ok(consumer.pending()),
            Consumer::Redis(consumer) => consumer.pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_like_stream_ids_and_round_trip() {
        let a: EntryId = "1700000000000-5".parse().unwrap();
        let b: EntryId = "1700000000001-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "1700000000000-5");
        assert!("nonsense".parse::<EntryId>().is_err());
    }
}

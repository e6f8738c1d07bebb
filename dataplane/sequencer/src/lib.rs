//! Sequencer shards: each shard is a Raft group whose replicas apply the same commands, in the
//! same order, to the conversation state machine of `dolphin-state`.
//!
//! Start at [`Shard`], which opens a replica from its data folder, proposes commands in
//! batches and answers reads. [`log_store`] and [`state_machine`] keep the Raft log and the
//! applied state in two redb files; [`event_log`] holds applied events for whoever pushes them.

pub mod admin;
pub mod error;
pub mod event_log;
pub mod inbox;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod outbox;
pub mod query;
pub mod redb_kv;
pub mod remote;
pub mod server;
pub mod shard;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use error::ShardError;
pub use event_log::{EventBatch, EventLog, Gap, Subscription};
pub use metrics::SequencerMetrics;
pub use shard::{Shard, ShardConfig};
pub use types::{Batch, NodeId, TypeConfig};

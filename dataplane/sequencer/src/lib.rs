//! Sequencer shards: each shard is a Raft group whose replicas apply the same commands, in the
//! same order, to the conversation state machine of `dolphin-state`.
//!
//! Start at [`Shard`], which opens a replica from its data folder, proposes commands in
//! batches and answers reads. [`log_store`] and [`state_machine`] keep the Raft log and the
//! applied state in two redb files; [`bus`] carries applied events to whoever pushes them.

pub mod bus;
pub mod error;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod query;
pub mod redb_kv;
pub mod shard;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use bus::EventBus;
pub use error::ShardError;
pub use metrics::SequencerMetrics;
pub use shard::{Shard, ShardConfig};
pub use types::{Batch, NodeId, TypeConfig};

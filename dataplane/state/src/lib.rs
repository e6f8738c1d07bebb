//! The conversation state machine of a sequencer shard.
//!
//! [`apply`] is a deterministic function of the state (a key-value store, [`kv`]) and
//! a [`Command`]: it writes the new state and returns an [`Applied`] holding the reply for the
//! proposer and the [`Event`]s to push. It knows nothing of Raft, sockets or queues: Raft only
//! decides the order of commands, so every replica that applies the same commands to the same
//! state reaches the same state and the same events. [`query`] answers reads.
//!
//! Timestamps come inside commands (stamped by the proposer) and never from a clock here, for
//! the same reason.

pub mod cache;
pub mod command;
pub mod event;
pub mod files;
pub mod friends;
pub mod kv;
pub mod machine;
pub mod model;
pub mod moments;
pub mod query;

pub use cache::MemberCache;
pub use command::Command;
pub use event::{Applied, Event, Outcome, Refusal};
pub use kv::{Kv, KvRead, MemKv, Table};
pub use machine::{CorruptValue, DEDUPE_WINDOW, StateError, apply};
pub use model::{DirectPolicy, Policy};

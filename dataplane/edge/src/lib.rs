//! The edge: the WebSocket gateway clients connect to.
//!
//! An edge checks what needs no ordering (who the user is, the size and shape of frames, the
//! send rate), routes each conversation's commands to the shard that orders it ([`backend`]),
//! and pushes what the shards apply to the devices it holds ([`dispatch`]). It keeps no state
//! that matters after a restart: clients reconnect anywhere and catch up from the shards.
//!
//! Start at [`server::serve`]; one connection's life is in [`connection`].

pub mod auth;
pub mod backend;
pub mod calls;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod frame;
pub mod handler;
pub mod ice;
pub mod invite;
pub mod metrics;
pub mod presence;
pub mod server;
pub mod sessions;
pub mod social;

pub use backend::{Backend, ShardLink};
pub use config::EdgeConfig;
pub use server::{Edge, listen, serve};

//! The `dolphin` command's library: each subcommand as a function the binary and the tests
//! both call.

pub mod bench;
pub mod dev;
pub mod edge;
pub mod local_cluster;
pub mod queue;
pub mod replica;
pub mod secrets;
pub mod sequencer;

//! The `dolphin` command's library: each subcommand as a function the binary and the tests
//! both call.

pub mod dev;
pub mod secrets;

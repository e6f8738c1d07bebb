//! The real `dolphin` binary as a process of its own, for tests that kill it, restart it or
//! measure it from the outside.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts `dolphin dev` on a free port with its data in `data`, `args` added and `env` set,
/// and waits up to `wait` for its "running" line; returns the process and its `host:port`.
pub async fn start_dev(
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    wait: Duration,
) -> (Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dolphin"))
        .args(["dev", "--listen", &addr, "--data"])
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("dolphin starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    tokio::time::timeout(wait, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("dolphin dev is running") {
                return;
            }
        }
        panic!("dolphin dev exited before it was running (see its stderr above)");
    })
    .await
    .expect("dolphin dev did not report that it was running");
    (child, addr)
}

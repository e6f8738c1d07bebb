//! `dolphin bench connections`: many idle users online at once, and what each costs the
//! server in memory. A Dolphin connection is a signed-in device that gets its user's pushes;
//! a Centrifugo connection is a signed-in client subscribed to a channel of its own (where
//! its user's messages would arrive).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;

use super::Clock;
use super::server::{Server, ServerArgs, Target};
use super::wire;

/// The settings of `dolphin bench connections`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Idle connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: u64,
    /// Print the result as a JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionsResult {
    pub target: Target,
    /// How the target ran: `dev` or `cluster` for Dolphin, `memory` or `redis` for Centrifugo.
    pub setup: &'static str,
    pub connections: u64,
    pub connect_seconds: f64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub bytes_per_connection: f64,
    pub server_cpu_seconds: f64,
}

/// Opens the connections, measures, and prints the result.
pub async fn run(args: ConnectionsArgs) -> anyhow::Result<ConnectionsResult> {
    raise_open_files(args.connections + 1024)?;
    super::server::pin_self(&args.server.client_cpus)?;
    let server = Server::start(&args.server).await?;
    // A moment to finish starting, so that the baseline is the idle server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, _) = server.memory()?;
    let cpu_before = server.cpu_seconds()?;
    let clock = Clock::new();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let mut open = Vec::with_capacity(args.connections as usize);
    let mut connecting = tokio::task::JoinSet::new();
    for n in 0..args.connections {
        let user = format!("u{n}");
        let url = server.url(&user)?;
        let (events, clock, target) = (events.clone(), clock.clone(), server.target);
        connecting.spawn(async move {
            wire::connect(target, &url, format!("inbox-{user}"), events, clock).await
        });
        while connecting.len() >= 128 {
            open.push(connecting.join_next().await.context("a connect task")???);
        }
    }
    while let Some(next) = connecting.join_next().await {
        open.push(next??);
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Idle for a while: buffers the server allocated for the handshake may be released.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_after, _) = server.memory()?;
    let cpu = server.cpu_seconds()? - cpu_before;
    let result = ConnectionsResult {
        target: server.target,
        setup: args.server.setup(),
        connections: args.connections,
        connect_seconds,
        rss_before_bytes: rss_before,
        rss_after_bytes: rss_after,
        bytes_per_connection: rss_after.saturating_sub(rss_before) as f64 / args.connections as f64,
        server_cpu_seconds: cpu,
    };
    drop(open);
    server.stop().await;
    let line = if args.json {
        serde_json::to_string(&result)?
    } else {
        format!(
            "{:?} connections={} connected in {:.1}s rss {} -> {} MiB, {:.0} bytes per \
             connection, server cpu {:.2}s",
            result.target,
            result.connections,
            result.connect_seconds,
            result.rss_before_bytes / (1024 * 1024),
            result.rss_after_bytes / (1024 * 1024),
            result.bytes_per_connection,
            result.server_cpu_seconds,
        )
    };
    super::print_result(&line);
    Ok(result)
}

/// Raises this process's limit of open files (inherited by the server it starts) to at least
/// `wanted`: within the hard limit, or beyond it where the process may (root).
pub(super) fn raise_open_files(wanted: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= wanted {
        return Ok(());
    }
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, hard.max(wanted)).is_err() {
        anyhow::bail!(
            "{wanted} open files are needed and the hard limit is {hard}; raise it (ulimit -Hn)"
        );
    }
    Ok(())
}

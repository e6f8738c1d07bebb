//! `dolphin bench sequencer`: ordered, replicated, fsynced appends per shard.
//!
//! Starts one shard of three replicas as processes on loopback (the binary running the bench,
//! so build it with `--release`), then for each concurrency level runs that many senders for
//! a fixed time, each proposing a message and waiting for its result before the next: the
//! shape of etcd's `benchmark put` with as many clients. Reports messages per second and the
//! commit latency the senders saw.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use dolphin_protocol::Body;
use dolphin_sequencer::remote::RemoteShard;
use dolphin_state::Command;
use serde::Serialize;

use super::{Percentiles, latency_histogram, record};
use crate::local_cluster::{ClusterSpec, LocalCluster};

/// The settings of `dolphin bench sequencer`.
#[derive(Clone, Debug, clap::Args)]
pub struct SequencerBenchArgs {
    /// Concurrent senders, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub concurrency: Vec<usize>,
    /// How long each run sends.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Replicas of the shard.
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
    /// Where the replicas keep their data (a fresh temporary folder by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the results as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub concurrency: usize,
    pub messages: u64,
    pub errors: u64,
    pub seconds: f64,
    pub messages_per_second: f64,
    pub latency: Percentiles,
}

/// Runs the benchmark and prints its results.
pub async fn run(args: SequencerBenchArgs) -> anyhow::Result<Vec<RunResult>> {
    let temp = tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.clone());
    let spec = ClusterSpec::new(dir.clone(), std::env::current_exe()?, 1, args.replicas, 0);
    let mut cluster = LocalCluster::start(spec).await?;
    cluster.leader(0, Duration::from_secs(15)).await?;
    let addrs = cluster.topology.shards[0].replicas.iter().map(|r| r.addr.clone()).collect();
    let shard = RemoteShard::new(0, addrs);
    let text = "x".repeat(args.body_bytes);

    let mut results = Vec::new();
    for &concurrency in &args.concurrency {
        let result = one_run(&shard, concurrency, args.duration, &text).await;
        report(&result, args.json);
        results.push(result);
    }
    cluster.stop(Duration::from_secs(10)).await;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    Ok(results)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("dolphin-bench-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).context("failed to create a temporary folder")?;
    Ok(dir)
}

async fn one_run(
    shard: &RemoteShard,
    concurrency: usize,
    duration: Duration,
    text: &str,
) -> RunResult {
    let stop = Arc::new(AtomicBool::new(false));
    let run_id = rand::random::<u32>();
    let mut tasks = Vec::new();
    let started = Instant::now();
    for sender in 0..concurrency {
        let shard = shard.clone();
        let stop = stop.clone();
        let text = text.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut histogram = latency_histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            let user = format!("b{run_id:x}s{sender}");
            let conv = dolphin_protocol::ids::direct_conv(&user, "sink");
            for n in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let command = Command::Send {
                    conv: conv.clone(),
                    from: user.clone(),
                    device: "bench".into(),
                    cid: n.to_string(),
                    body: Body::Text { text: text.clone() },
                    ts: 0,
                };
                let sent = Instant::now();
                match shard.submit(&command).await {
                    Ok(_) => {
                        ok += 1;
                        record(&mut histogram, sent.elapsed());
                    }
                    Err(_) => errors += 1,
                }
            }
            (histogram, ok, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut histogram = latency_histogram();
    let (mut messages, mut errors) = (0, 0);
    for task in tasks {
        if let Ok((h, ok, failed)) = task.await {
            let _ = histogram.add(&h);
            messages += ok;
            errors += failed;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    RunResult {
        concurrency,
        messages,
        errors,
        seconds,
        messages_per_second: messages as f64 / seconds,
        latency: Percentiles::of(&histogram),
    }
}

#[allow(clippy::print_stdout)]
fn report(result: &RunResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(result).unwrap_or_default());
    } else {
        println!(
            "concurrency {:>4}: {:>9.0} msg/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} messages, {} errors)",
            result.concurrency,
            result.messages_per_second,
            result.latency.p50_ms,
            result.latency.p99_ms,
            result.messages,
            result.errors
        );
    }
}

//! `dolphin bench pairs`: many two-person conversations at once, each side writing to the
//! other: a Dolphin direct conversation, or a Centrifugo channel the pair subscribes to.
//! Every message reaches both sides (the sender's own device too).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;

use super::fanout::joined;
use super::server::{Server, ServerArgs, Target};
use super::wire::{self, Deliveries, Event};
use super::{Clock, Delivered, Percentiles};

/// The settings of `dolphin bench pairs`.
#[derive(Clone, Debug, clap::Args)]
pub struct PairsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Conversations, each between two online users.
    #[arg(long, default_value_t = 5000)]
    pub pairs: u64,
    /// Messages per second offered over all conversations, sent by each user in turn.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long the users send.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Print the result as a JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one run.
#[derive(Clone, Debug, Serialize)]
pub struct PairsResult {
    pub target: Target,
    /// How the target ran: `dev` or `cluster` for Dolphin, `memory` or `redis` for Centrifugo.
    pub setup: &'static str,
    pub pairs: u64,
    pub offered_per_second: u64,
    #[serde(flatten)]
    pub delivered: Delivered,
}

/// Runs the scenario and prints the result.
pub async fn run(args: PairsArgs) -> anyhow::Result<PairsResult> {
    super::connections::raise_open_files(args.pairs * 2 + 1024)?;
    super::server::pin_self(&args.server.client_cpus)?;
    let server = Server::start(&args.server).await?;
    let clock = Clock::new();
    let (events_tx, mut events) = mpsc::unbounded_channel();

    // Both sides of every pair online; user 2p and 2p+1 talk in their pair's room.
    let mut users = Vec::with_capacity(args.pairs as usize * 2);
    let mut connecting = tokio::task::JoinSet::new();
    for user in 0..args.pairs * 2 {
        let pair = user / 2;
        let room = match server.target {
            Target::Dolphin => dolphin_protocol::ids::direct_conv(
                &format!("u{}", pair * 2),
                &format!("u{}", pair * 2 + 1),
            ),
            Target::Centrifugo => format!("pair-{pair}"),
        };
        let url = server.url(&format!("u{user}"))?;
        let (events_tx, clock, target) = (events_tx.clone(), clock.clone(), server.target);
        connecting.spawn(async move {
            (user, wire::connect(target, &url, room, events_tx, clock).await)
        });
        while connecting.len() >= 128 {
            users.push(joined(connecting.join_next().await)?);
        }
    }
    while let Some(next) = connecting.join_next().await {
        users.push(joined(Some(next))?);
    }
    users.sort_by_key(|(user, _, _)| *user);
    drop(events_tx);

    // One message every 1/rate seconds, from each user in turn.
    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(1) as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut sent, mut turn) = (0u64, 0usize);
    let mut sent_in_pair = vec![0u64; args.pairs as usize];
    while started.elapsed() < args.duration {
        ticks.tick().await;
        let (user, say, _) = &users[turn];
        let n = sent_in_pair[(*user / 2) as usize];
        if say.send(wire::say(*user, n, &clock)).is_ok() {
            sent += 1;
            sent_in_pair[(*user / 2) as usize] += 1;
        }
        turn = (turn + 1) % users.len();
    }
    let sending = started.elapsed();

    let (mut taken, mut refused) = (0u64, 0u64);
    let drain_until = Instant::now() + Duration::from_secs(5);
    while taken + refused < sent {
        match tokio::time::timeout_at(drain_until.into(), events.recv()).await {
            Ok(Some(Event::Taken)) => taken += 1,
            Ok(Some(Event::Refused(_))) => refused += 1,
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = server.cpu_seconds()? - cpu_before;
    let (_, peak_rss) = server.memory()?;

    let mut latency = super::latency_histogram();
    let (mut unique, mut duplicated, mut out_of_order, mut lost) = (0u64, 0u64, 0u64, 0u64);
    for (user, say, task) in users {
        drop(say);
        let seen: Deliveries = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .context("a user's connection did not close")??;
        // Each side gets every message of its pair, its own included.
        lost += sent_in_pair[(user / 2) as usize].saturating_sub(seen.unique);
        latency.add(&seen.latency).context("merging histograms")?;
        unique += seen.unique;
        duplicated += seen.duplicates;
        out_of_order += seen.out_of_order;
    }
    server.stop().await;
    let seconds = sending.as_secs_f64();
    let result = PairsResult {
        target: args.server.target,
        setup: args.server.setup(),
        pairs: args.pairs,
        offered_per_second: args.rate,
        delivered: Delivered {
            sent,
            taken,
            refused,
            seconds,
            deliveries: unique,
            deliveries_per_second: unique as f64 / seconds,
            server_cpu_seconds: cpu,
            deliveries_per_cpu_second: unique as f64 / cpu.max(0.001),
            server_peak_rss_bytes: peak_rss,
            latency: Percentiles::of(&latency),
            lost,
            duplicated,
            out_of_order,
        },
    };
    let line = if args.json {
        serde_json::to_string(&result)?
    } else {
        format!(
            "{:?} pairs={} offered={}/s {}",
            result.target,
            result.pairs,
            result.offered_per_second,
            result.delivered.summary()
        )
    };
    super::print_result(&line);
    Ok(result)
}

//! `dolphin bench fanout`: one room of many online members, a few of whom send at a fixed
//! total rate; every member receives every message. The same load, through each server's own
//! client protocol, against `dolphin dev` or Centrifugo.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::mpsc;

use super::server::{Server, ServerArgs, Target};
use super::wire::{self, Deliveries, Event};
use super::{Clock, Delivered, Percentiles};

/// The settings of `dolphin bench fanout`.
#[derive(Clone, Debug, clap::Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Members of the room, each one online connection.
    #[arg(long, default_value_t = 1000)]
    pub members: u64,
    /// Members who send (the first ones).
    #[arg(long, default_value_t = 10)]
    pub senders: u64,
    /// Messages per second offered, over all senders; one run per rate.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub rate: Vec<u64>,
    /// How long each run sends.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Print the results as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One run's figures.
#[derive(Clone, Debug, Serialize)]
pub struct FanoutResult {
    pub target: Target,
    /// How the target ran: `dev` or `cluster` for Dolphin, `memory` or `redis` for Centrifugo.
    pub setup: &'static str,
    pub members: u64,
    pub offered_per_second: u64,
    #[serde(flatten)]
    pub delivered: Delivered,
}

/// Runs the scenario once per rate, each on a fresh server, and prints the results.
pub async fn run(args: FanoutArgs) -> anyhow::Result<Vec<FanoutResult>> {
    super::server::pin_self(&args.server.client_cpus)?;
    let mut results = Vec::new();
    for &rate in &args.rate {
        let result = one_run(&args, rate).await?;
        report(&result, args.json);
        results.push(result);
    }
    Ok(results)
}

async fn one_run(args: &FanoutArgs, rate: u64) -> anyhow::Result<FanoutResult> {
    let server = Server::start(&args.server).await?;
    let room = room(&server, args.members).await?;
    let clock = Clock::new();

    // Every member online, a few connections at a time.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut members = Vec::with_capacity(args.members as usize);
    let mut connecting = tokio::task::JoinSet::new();
    for member in 0..args.members {
        let url = server.url(&format!("m{member}"))?;
        let (room, events_tx, clock, target) =
            (room.clone(), events_tx.clone(), clock.clone(), server.target);
        connecting.spawn(async move {
            let connection = wire::connect(target, &url, room, events_tx, clock).await;
            (member, connection)
        });
        while connecting.len() >= 64 {
            members.push(joined(connecting.join_next().await)?);
        }
    }
    while let Some(next) = connecting.join_next().await {
        members.push(joined(Some(next))?);
    }
    members.sort_by_key(|(member, _, _)| *member);
    drop(events_tx);

    // The senders share the rate; each sends on its own schedule.
    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let mut sent = 0u64;
    let senders = args.senders.min(args.members).max(1);
    let interval = Duration::from_secs_f64(senders as f64 / rate.max(1) as f64);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    while started.elapsed() < args.duration {
        ticks.tick().await;
        for sender in 0..senders {
            let (_, say, _) = &members[sender as usize];
            if say.send(wire::say(sender, n, &clock)).is_ok() {
                sent += 1;
            }
        }
        n += 1;
    }
    let sending = started.elapsed();

    // Let the last messages arrive, then close everything and gather what each member saw.
    let (mut taken, mut refused) = (0u64, 0u64);
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until && taken + refused < sent {
        match tokio::time::timeout_at(drain_until.into(), events.recv()).await {
            Ok(Some(Event::Taken)) => taken += 1,
            Ok(Some(Event::Refused(_))) => refused += 1,
            _ => break,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = server.cpu_seconds()? - cpu_before;
    let (_, peak_rss) = server.memory()?;
    let mut totals: Option<Deliveries> = None;
    let mut lost = 0u64;
    for (_, say, task) in members {
        drop(say);
        let seen = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .context("a member's connection did not close")??;
        lost += taken.saturating_sub(seen.unique);
        totals = Some(match totals {
            None => seen,
            Some(mut all) => {
                all.latency.add(&seen.latency).context("merging histograms")?;
                all.unique += seen.unique;
                all.duplicates += seen.duplicates;
                all.out_of_order += seen.out_of_order;
                all
            }
        });
    }
    server.stop().await;
    let totals = totals.context("no member")?;
    let seconds = sending.as_secs_f64();
    Ok(FanoutResult {
        target: args.server.target,
        setup: args.server.setup(),
        members: args.members,
        offered_per_second: rate,
        delivered: Delivered {
            sent,
            taken,
            refused,
            seconds,
            deliveries: totals.unique,
            deliveries_per_second: totals.unique as f64 / seconds,
            server_cpu_seconds: cpu,
            deliveries_per_cpu_second: totals.unique as f64 / cpu.max(0.001),
            server_peak_rss_bytes: peak_rss,
            latency: Percentiles::of(&totals.latency),
            lost,
            duplicated: totals.duplicates,
            out_of_order: totals.out_of_order,
        },
    })
}

pub(super) type Member = (u64, mpsc::UnboundedSender<String>, tokio::task::JoinHandle<Deliveries>);
type Joined =
    (u64, anyhow::Result<(mpsc::UnboundedSender<String>, tokio::task::JoinHandle<Deliveries>)>);

/// A finished connection attempt of member or user `n`, or why it failed.
pub(super) fn joined(
    next: Option<Result<Joined, tokio::task::JoinError>>,
) -> anyhow::Result<Member> {
    let (member, connection) = next.context("no connection attempt left")??;
    let (say, task) =
        connection.with_context(|| format!("connection {member} failed to connect"))?;
    Ok((member, say, task))
}

/// The room every member is in: a Dolphin group made by the first member, or a Centrifugo
/// channel (subscribed to on connect).
async fn room(server: &Server, members: u64) -> anyhow::Result<String> {
    match server.target {
        Target::Centrifugo => Ok("room".to_owned()),
        Target::Dolphin => {
            let url = format!("ws://{}/v1/ws", server.addr);
            let token = server.token("m0")?;
            let config = dolphin_client::ClientConfig::new(url, token, "setup");
            let (owner, _events) = dolphin_client::Client::connect(config).await?;
            let others: Vec<String> = (1..members).map(|m| format!("m{m}")).collect();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            let group = owner.create_group("bench", &others).await?;
            owner.close().await;
            Ok(group)
        }
    }
}

fn report(result: &FanoutResult, json: bool) {
    let line = if json {
        serde_json::to_string(result).unwrap_or_default()
    } else {
        format!(
            "{:?} members={} offered={}/s {}",
            result.target,
            result.members,
            result.offered_per_second,
            result.delivered.summary()
        )
    };
    super::print_result(&line);
}

//! `dolphin bench catchup`: a reconnect storm. Every member of a room goes offline, the room
//! gets messages meanwhile, and every member comes back at once and catches up on what it
//! missed: Dolphin's devices with `fetch` after the last seq they saw, Centrifugo's clients by
//! subscribing with recovery from their last epoch and offset.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::server::{Server, ServerArgs, Target};
use super::wire::Socket;
use super::{Percentiles, latency_histogram, record};

/// The settings of `dolphin bench catchup`.
#[derive(Clone, Debug, clap::Args)]
pub struct CatchupArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Members of the room, each one device.
    #[arg(long, default_value_t = 1000)]
    pub members: u64,
    /// Messages each member misses while offline.
    #[arg(long, default_value_t = 100)]
    pub missed: u64,
    /// Print the result as a JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one storm.
#[derive(Clone, Debug, Serialize)]
pub struct CatchupResult {
    pub target: Target,
    /// How the target ran: `dev` or `cluster` for Dolphin, `memory` or `redis` for Centrifugo.
    pub setup: &'static str,
    pub members: u64,
    pub missed: u64,
    /// From the first reconnect to the last member caught up.
    pub storm_seconds: f64,
    /// Each member's time from its reconnect to holding every missed message.
    pub catch_up: Percentiles,
    pub server_cpu_seconds: f64,
    pub server_peak_rss_bytes: u64,
    /// Members that got fewer messages than they missed (0 for a pass).
    pub incomplete: u64,
    /// Messages delivered to a member beyond those it missed.
    pub extra: u64,
}

/// Where a member was in the room when it went offline.
#[derive(Clone, Debug, Default)]
struct Position {
    seq: u64,
    epoch: String,
}

/// Runs one storm and prints the result.
pub async fn run(args: CatchupArgs) -> anyhow::Result<CatchupResult> {
    super::server::pin_self(&args.server.client_cpus)?;
    let server = Server::start(&args.server).await?;
    let room = match server.target {
        Target::Centrifugo => "storm".to_owned(),
        Target::Dolphin => {
            let url = format!("ws://{}/v1/ws", server.addr);
            let config = dolphin_client::ClientConfig::new(url, server.token("m0")?, "setup");
            let (owner, _events) = dolphin_client::Client::connect(config).await?;
            let others: Vec<String> = (1..args.members).map(|m| format!("m{m}")).collect();
            let others: Vec<&str> = others.iter().map(String::as_str).collect();
            let group = owner.create_group("storm", &others).await?;
            owner.close().await;
            group
        }
    };

    // Everyone online once, to learn its position (Centrifugo's epoch comes with the
    // subscription); then everyone offline.
    let mut members = tokio::task::JoinSet::new();
    for member in 0..args.members {
        let (url, room, target) = (server.url(&format!("m{member}"))?, room.clone(), server.target);
        members.spawn(async move { (member, open(target, &url, &room, None).await) });
        while members.len() >= 64 {
            members.join_next().await.context("a connect")??.1?;
        }
    }
    while let Some(joined) = members.join_next().await {
        joined?.1?;
    }
    let mut sender = open(server.target, &server.url("m0")?, &room, None).await?.0;
    let mut positions = vec![Position::default(); args.members as usize];
    // The position every member had: the room's latest, read once by the sender.
    let marker = say(server.target, &mut sender, &room, "marker").await?;
    for position in &mut positions {
        *position = marker.clone();
    }
    // Offline: every member's connection was closed when its task ended above; the sender
    // sends what they will miss.
    for n in 0..args.missed {
        say(server.target, &mut sender, &room, &format!("missed {n}")).await?;
    }
    let _ = sender.close(None).await;

    let cpu_before = server.cpu_seconds()?;
    let started = Instant::now();
    let mut storm = tokio::task::JoinSet::new();
    for (member, position) in positions.into_iter().enumerate() {
        let (url, room, target) = (server.url(&format!("m{member}"))?, room.clone(), server.target);
        storm.spawn(async move {
            let begun = Instant::now();
            let caught = open(target, &url, &room, Some(&position)).await.map(|(_, got)| got);
            (begun.elapsed(), caught)
        });
    }
    let mut histogram = latency_histogram();
    let (mut incomplete, mut extra) = (0u64, 0u64);
    while let Some(joined) = storm.join_next().await {
        let (took, caught) = joined?;
        let got = caught?;
        record(&mut histogram, took);
        if got < args.missed {
            incomplete += 1;
        }
        extra += got.saturating_sub(args.missed);
    }
    let storm_seconds = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds()? - cpu_before;
    let (_, peak) = server.memory()?;
    server.stop().await;
    let result = CatchupResult {
        target: args.server.target,
        setup: args.server.setup(),
        members: args.members,
        missed: args.missed,
        storm_seconds,
        catch_up: Percentiles::of(&histogram),
        server_cpu_seconds: cpu,
        server_peak_rss_bytes: peak,
        incomplete,
        extra,
    };
    let line = if args.json {
        serde_json::to_string(&result)?
    } else {
        format!(
            "{:?} members={} missed={} storm={:.2}s catch-up p50={:.1}ms p99={:.1}ms \
             cpu={:.2}s peak-rss={}MiB incomplete={} extra={}",
            result.target,
            result.members,
            result.missed,
            result.storm_seconds,
            result.catch_up.p50_ms,
            result.catch_up.p99_ms,
            result.server_cpu_seconds,
            result.server_peak_rss_bytes / (1024 * 1024),
            result.incomplete,
            result.extra,
        )
    };
    super::print_result(&line);
    Ok(result)
}

/// Connects and joins the room; with `from`, catches up after it and returns how many
/// messages came back. Returns the socket (for the sender) and that count.
async fn open(
    target: Target,
    url: &str,
    room: &str,
    from: Option<&Position>,
) -> anyhow::Result<(Socket, u64)> {
    let (url, token) = url.split_once('#').map_or((url, None), |(u, t)| (u, Some(t)));
    let mut ws = super::wire::open(url).await?;
    match target {
        Target::Dolphin => {
            next(&mut ws, |v| v["type"] == "hello").await?;
            let Some(from) = from else { return Ok((ws, 0)) };
            let fetch = json!({"type": "fetch", "rid": "f", "conv": room, "after": from.seq,
                               "limit": 500});
            ws.send(Message::Text(fetch.to_string().into())).await?;
            let page = next(&mut ws, |v| v["rid"] == "f").await?;
            let got = page["messages"].as_array().context("a messages page")?.len() as u64;
            Ok((ws, got))
        }
        Target::Centrifugo => {
            let connect = json!({"id": 1, "connect": {"token": token, "name": "bench"}});
            ws.send(Message::Text(connect.to_string().into())).await?;
            next(&mut ws, |v| v["id"] == 1).await?;
            let mut subscribe = json!({"channel": room, "recoverable": true});
            if let Some(from) = from {
                subscribe["recover"] = json!(true);
                subscribe["epoch"] = json!(from.epoch);
                subscribe["offset"] = json!(from.seq);
            }
            let request = json!({"id": 2, "subscribe": subscribe});
            ws.send(Message::Text(request.to_string().into())).await?;
            let reply = next(&mut ws, |v| v["id"] == 2).await?;
            let result = &reply["subscribe"];
            if from.is_some() && result["recovered"] != json!(true) {
                bail!("Centrifugo could not recover the subscription: {reply}");
            }
            let got = result["publications"].as_array().map_or(0, Vec::len) as u64;
            Ok((ws, got))
        }
    }
}

/// Sends `text` to the room as the sender and returns the room's position after it.
async fn say(target: Target, ws: &mut Socket, room: &str, text: &str) -> anyhow::Result<Position> {
    match target {
        Target::Dolphin => {
            let send = json!({"type": "send", "rid": "s", "conv": room, "cid": text,
                              "body": {"kind": "text", "text": text}});
            ws.send(Message::Text(send.to_string().into())).await?;
            let pushed = next(ws, |v| v["type"] == "msg" && v["cid"] == text).await?;
            Ok(Position { seq: pushed["seq"].as_u64().context("a seq")?, epoch: String::new() })
        }
        Target::Centrifugo => {
            let publish = json!({"id": 3, "publish": {"channel": room, "data": {"text": text}}});
            ws.send(Message::Text(publish.to_string().into())).await?;
            let pushed = next(ws, |v| v["push"]["pub"]["data"]["text"] == text).await?;
            let publication = &pushed["push"]["pub"];
            let offset = publication["offset"].as_u64().context("an offset")?;
            // The epoch came with the subscription; ask for it again by a history call.
            let history = json!({"id": 4, "history": {"channel": room, "limit": 0}});
            ws.send(Message::Text(history.to_string().into())).await?;
            let reply = next(ws, |v| v["id"] == 4).await?;
            let epoch = reply["history"]["epoch"].as_str().context("an epoch")?.to_owned();
            Ok(Position { seq: offset, epoch })
        }
    }
}

/// The next JSON message matching `wanted`, answering Centrifugo's pings meanwhile.
async fn next(ws: &mut Socket, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .context("the server did not answer in time")?
            .context("the server closed the connection")??;
        let Message::Text(text) = message else { continue };
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            if line == "{}" {
                ws.send(Message::Text("{}".into())).await?;
                continue;
            }
            let value: Value = serde_json::from_str(line)?;
            if value.get("error").is_some() {
                bail!("the server answered an error: {value}");
            }
            if wanted(&value) {
                return Ok(value);
            }
        }
    }
}

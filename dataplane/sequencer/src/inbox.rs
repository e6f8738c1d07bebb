//! The leader's side of the queue: taking the shard's inbox in order, proposing it to Raft,
//! acknowledging what is applied, and trimming what every replica has.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolphin_queue::{Consumer, EntryId, InboxEntry, Queue};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::admin::Status;
use crate::error::ShardError;
use crate::shard::Shard;

/// The most inbox entries proposed in one log entry.
pub const INBOX_BATCH: usize = 512;

/// The most inbox batches proposed and not yet applied.
pub const INBOX_IN_FLIGHT: usize = 16;

/// How often the leader trims its shard's inbox.
pub const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Consumes the shard's inbox whenever this replica leads, until `shutdown`.
pub async fn run(shard: Arc<Shard>, queue: Queue, shutdown: CancellationToken) {
    let name = format!("replica-{}", shard.replica);
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap_or_default();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        if !shard.is_leader() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(50)) => continue,
            }
        }
        let outcome = match queue.consumer(shard.id, &name).await {
            Ok(consumer) => lead(&shard, consumer, &http, &shutdown).await,
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                warn!(shard = shard.id, %error, "inbox consumer stopped; retrying");
                let pause = Duration::from_millis(100).saturating_mul(1 << failures.min(5));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause.min(Duration::from_secs(3))) => {}
                }
            }
        }
    }
}

type Proposal =
    std::pin::Pin<Box<dyn Future<Output = (Vec<EntryId>, Result<(), ShardError>)> + Send>>;

/// Consumes while this replica leads. Returns `Ok` when leadership is lost or on shutdown.
async fn lead(
    shard: &Arc<Shard>,
    mut consumer: Consumer,
    http: &reqwest::Client,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    // A new leader may not have applied everything committed before it took over; wait for
    // that, so that `applied` covers every inbox entry already in the log and none is ordered
    // twice.
    shard.read(|_| Ok(())).await.map_err(|e| e.to_string())?;
    let applied = shard.inbox_applied();
    let claimed = consumer.claim_pending(INBOX_BATCH).await.map_err(|e| e.to_string())?;
    info!(shard = shard.id, claimed = claimed.len(), ?applied, "consuming the inbox as leader");
    let shard_label = shard.id.to_string();
    let metrics = shard.metrics();
    metrics.queue_redeliveries.with_label_values(&[&shard_label]).inc_by(claimed.len() as u64);
    let mut in_flight: FuturesOrdered<Proposal> = FuturesOrdered::new();
    let mut waiting: VecDeque<InboxEntry> = claimed.into();
    let mut last_trim = Instant::now();

    loop {
        if shutdown.is_cancelled() || !shard.is_leader() {
            // What is in flight may or may not commit; unacknowledged entries stay pending
            // for the next leader, which skips what turns out applied.
            return Ok(());
        }

        // Propose what waits, skipping entries the state already includes.
        while !waiting.is_empty() && in_flight.len() < INBOX_IN_FLIGHT {
            let take = waiting.len().min(INBOX_BATCH);
            let batch: Vec<InboxEntry> = waiting.drain(..take).collect();
            let (done, fresh): (Vec<_>, Vec<_>) =
                batch.into_iter().partition(|e| applied.is_some_and(|a| e.id <= a));
            if !done.is_empty() {
                let ids: Vec<EntryId> = done.iter().map(|e| e.id).collect();
                consumer.ack(&ids).await.map_err(|e| e.to_string())?;
            }
            let Some(upto) = fresh.last().map(|e| e.id) else { continue };
            let ids: Vec<EntryId> = fresh.iter().map(|e| e.id).collect();
            let commands = fresh.into_iter().map(|e| e.command).collect();
            let pending = shard.propose_inbox(commands, upto).await.map_err(|e| e.to_string())?;
            in_flight.push_back(Box::pin(async move { (ids, pending.await.map(|_| ())) }));
        }

        // Acknowledge the batches already applied, without waiting for the others.
        while let Some(Some((ids, result))) = in_flight.next().now_or_never() {
            if !settle(&mut consumer, shard.id, ids, result).await? {
                return Ok(());
            }
        }

        if in_flight.len() >= INBOX_IN_FLIGHT {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                Some((ids, result)) = in_flight.next() => {
                    if !settle(&mut consumer, shard.id, ids, result).await? {
                        return Ok(());
                    }
                }
            }
        } else {
            // A read is raced against nothing but shutdown: a read dropped after Redis
            // answered would leave its entries delivered to this consumer yet never seen by
            // it, waiting in the pending list for the next leader.
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = consumer.next_batch(INBOX_BATCH) => {
                    waiting.extend(next.map_err(|e| e.to_string())?);
                }
            }
        }

        if last_trim.elapsed() >= TRIM_EVERY {
            last_trim = Instant::now();
            // Sampled with the trim: cheap enough, and often enough for a dashboard.
            match (consumer.pending().await, consumer.lag().await) {
                (Ok(pending), Ok(lag)) => {
                    metrics.queue_pending.with_label_values(&[&shard_label]).set(pending as i64);
                    if let Some(lag) = lag {
                        metrics.queue_lag.with_label_values(&[&shard_label]).set(lag as i64);
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    warn!(shard = shard.id, %error, "failed to read the inbox's counts");
                }
            }
            if let Some(floor) = applied_by_all(shard, http).await
                && let Err(error) = consumer.trim_below(floor).await
            {
                warn!(shard = shard.id, %error, "failed to trim the inbox");
            }
        }
    }
}

/// Acknowledges a batch that was applied; `false` when it was not (this replica no longer
/// leads: the batch stays pending for the next leader, which skips what turns out applied).
async fn settle(
    consumer: &mut Consumer,
    shard: u32,
    ids: Vec<EntryId>,
    result: Result<(), ShardError>,
) -> Result<bool, String> {
    match result {
        Ok(()) => {
            consumer.ack(&ids).await.map_err(|e| e.to_string())?;
            Ok(true)
        }
        Err(error) => {
            debug!(shard, %error, "an inbox batch was not applied here");
            Ok(false)
        }
    }
}

/// The inbox position every member of the shard has applied, if every member answers.
async fn applied_by_all(shard: &Shard, http: &reqwest::Client) -> Option<EntryId> {
    let status = shard.status();
    let mut floor: Option<EntryId> = shard.inbox_applied();
    for (id, addr) in &status.nodes {
        if *id == shard.replica {
            continue;
        }
        let peer: Status =
            http.get(format!("http://{addr}/admin/status")).send().await.ok()?.json().await.ok()?;
        let applied: EntryId = peer.inbox_applied?.parse().ok()?;
        floor = Some(floor.map_or(applied, |f| f.min(applied)));
    }
    floor
}

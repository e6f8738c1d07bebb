//! The leader's forwarding of the outbox: commands one shard's state owes to other shards.
//!
//! Applying a command may write commands for other shards into the replicated outbox (a
//! friendship change owes both users' shards their view of it). Whichever replica leads
//! pushes them, oldest first, into their shards' inboxes through the queue, then proposes
//! their removal. A leader that dies between the push and the removal leaves them for the
//! next one, which pushes them again: every command sent this way must be idempotent when
//! applied, which is what makes the effect happen exactly once.

use std::sync::Arc;
use std::time::Duration;

use dolphin_queue::Queue;
use dolphin_state::{Command, friends};
use dolphin_topology::Router;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::shard::Shard;

/// How often the leader looks for outbox entries. A friendship change reaches the users'
/// shards within about this much plus one inbox round trip.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// The most entries forwarded per round.
pub const BATCH: usize = 256;

/// Forwards the shard's outbox whenever this replica leads, until `shutdown`.
pub async fn run(shard: Arc<Shard>, queue: Queue, router: Router, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(POLL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if !shard.is_leader() {
            continue;
        }
        if let Err(error) = forward(&shard, &queue, &router).await {
            warn!(shard = shard.id, %error, "failed to forward the outbox; retrying");
        }
    }
}

/// Why a round of forwarding stopped.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("failed to read the outbox")]
    Read(#[source] crate::ShardError),
    #[error("failed to queue a command for shard {shard}")]
    Push {
        shard: u32,
        #[source]
        source: dolphin_queue::QueueError,
    },
}

/// Pushes what the outbox holds and proposes its removal.
async fn forward(shard: &Shard, queue: &Queue, router: &Router) -> Result<(), ForwardError> {
    let entries =
        shard.read_applied(|kv| friends::outbox(kv, BATCH)).map_err(ForwardError::Read)?;
    if entries.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(entries.len());
    for (id, command) in entries {
        let target = router.shard_of(&command.key().unwrap_or_default());
        queue
            .push(target, &command)
            .await
            .map_err(|source| ForwardError::Push { shard: target, source })?;
        ids.push(id);
    }
    let count = ids.len();
    // Not removed (leadership lost, a timeout): the next leader, or the next round, pushes
    // them again, which their idempotence makes harmless.
    if let Err(error) = shard.submit(Command::OutboxDone { ids }).await {
        debug!(shard = shard.id, %error, "forwarded outbox entries stay until the next round");
    } else {
        debug!(shard = shard.id, count, "forwarded outbox entries");
    }
    Ok(())
}

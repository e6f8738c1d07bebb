//! Pushing what shards apply to the devices connected here.

use std::sync::Arc;
use std::time::Duration;

use dolphin_protocol::ServerFrame;
use dolphin_sequencer::server::StreamItem;
use dolphin_state::Event;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backend::ShardLink;
use crate::frame::SharedFrame;
use crate::metrics::EdgeMetrics;
use crate::sessions::Sessions;

/// Pushes the events one shard applies to the devices connected here, until shutdown.
///
/// Events come from the shard's leader when it can be found (the lowest latency) and from any
/// replica otherwise: every replica applies the same entries. When the source changes, the
/// stream resumes after the last log index delivered. If the events in between are gone,
/// every device here is disconnected so that it reconnects and catches up: that loses no
/// message, and it takes a replica restart at the wrong moment to happen.
pub async fn follow(
    shard: u32,
    link: ShardLink,
    sessions: Arc<Sessions>,
    metrics: EdgeMetrics,
    shutdown: CancellationToken,
) {
    match link {
        ShardLink::Local(replicas) => {
            let mut after = None;
            while !shutdown.is_cancelled() {
                let source = replicas.iter().find(|r| r.is_leader()).unwrap_or(&replicas[0]);
                let mut subscription = source.subscribe(after);
                loop {
                    let next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = subscription.next() => next,
                    };
                    match next {
                        Some(Ok((index, batch))) => {
                            after = Some(index);
                            for event in batch.iter() {
                                deliver(event, &sessions, &metrics);
                            }
                        }
                        Some(Err(gap)) => lost(shard, gap.after, gap.oldest, &sessions, &metrics),
                        None => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        ShardLink::Remote(remote) => {
            let mut items = remote.follow(None);
            loop {
                let item = tokio::select! {
                    () = shutdown.cancelled() => return,
                    item = items.recv() => item,
                };
                match item {
                    Some(StreamItem::Events { events, .. }) => {
                        for event in &events {
                            deliver(event, &sessions, &metrics);
                        }
                    }
                    Some(StreamItem::Gap { after, oldest }) => {
                        lost(shard, after, oldest, &sessions, &metrics)
                    }
                    Some(StreamItem::Heartbeat { .. }) => {}
                    None => break,
                }
            }
        }
    }
    debug!(shard, "stopped following events");
}

fn lost(shard: u32, after: u64, oldest: u64, sessions: &Sessions, metrics: &EdgeMetrics) {
    warn!(shard, after, oldest, "events were lost to this edge; its devices reconnect to catch up");
    metrics.event_gaps.inc();
    sessions.kick_all();
}

/// Pushes one event to the devices it concerns.
pub fn deliver(event: &Event, sessions: &Sessions, metrics: &EdgeMetrics) {
    let delivered = match event {
        Event::Message { msg, recipients } => {
            let frame = Arc::new(SharedFrame::new(ServerFrame::Msg((**msg).clone())));
            sessions.deliver(recipients.iter().map(String::as_str), &frame, None)
        }
        Event::Rejected { user, rejected } => {
            let frame = Arc::new(SharedFrame::new(ServerFrame::Rejected(rejected.clone())));
            sessions.deliver([user.as_str()], &frame, None)
        }
        Event::Read { push, device, recipients } => {
            let frame = Arc::new(SharedFrame::new(ServerFrame::Read(push.clone())));
            let skip = Some((push.user.as_str(), device.as_str()));
            sessions.deliver(recipients.iter().map(String::as_str), &frame, skip)
        }
        Event::Friend { user, push } => {
            let frame = Arc::new(SharedFrame::new(ServerFrame::Friend(push.clone())));
            sessions.deliver([user.as_str()], &frame, None)
        }
        Event::Moment { user, push } => {
            let frame = Arc::new(SharedFrame::new(ServerFrame::Moment(push.clone())));
            sessions.deliver([user.as_str()], &frame, None)
        }
    };
    metrics.fanout.observe(delivered.queued as f64);
    if delivered.overflowed > 0 {
        metrics.overflows.inc_by(delivered.overflowed as u64);
    }
}

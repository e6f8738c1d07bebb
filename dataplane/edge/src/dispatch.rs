//! Pushing what shards apply to the devices connected here.

use std::sync::Arc;
use std::time::Duration;

use dolphin_protocol::ServerFrame;
use dolphin_sequencer::server::StreamItem;
use dolphin_state::Event;
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backend::ShardLink;
use crate::frame::{Pushes, SharedFrame};
use crate::metrics::EdgeMetrics;
use crate::sessions::Sessions;

/// The most events delivered in one round: what a shard applied while the previous round
/// went out is delivered together, up to this many.
const ROUND_EVENTS: usize = 256;

/// Pushes the events one shard applies to the devices connected here, until shutdown.
///
/// Events come from the shard's leader when it can be found (the lowest latency) and from any
/// replica otherwise: every replica applies the same entries. When the source changes, the
/// stream resumes after the last log index delivered. If the events in between are gone,
/// every device here is disconnected so that it reconnects and catches up: that loses no
/// message, and it takes a replica restart at the wrong moment to happen.
///
/// Entries that are already applied when one arrives are taken with it and delivered as one
/// round (see [`deliver_batch`]): a busy room costs each connection one wake-up per round
/// rather than one per message, and nothing waits for a round to fill.
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
            let mut round = Vec::new();
            while !shutdown.is_cancelled() {
                let source = replicas.iter().find(|r| r.is_leader()).unwrap_or(&replicas[0]);
                let mut subscription = source.subscribe(after);
                'stream: loop {
                    let mut next = tokio::select! {
                        () = shutdown.cancelled() => return,
                        next = subscription.next() => next,
                    };
                    loop {
                        match next {
                            Some(Ok((index, batch))) => {
                                after = Some(index);
                                round.extend(batch.iter().cloned());
                            }
                            Some(Err(gap)) => {
                                deliver_round(&mut round, &sessions, &metrics);
                                lost(shard, gap.after, gap.oldest, &sessions, &metrics);
                            }
                            None => {
                                deliver_round(&mut round, &sessions, &metrics);
                                break 'stream;
                            }
                        }
                        // Entries applied meanwhile join this round.
                        if round.len() >= ROUND_EVENTS {
                            break;
                        }
                        match subscription.next().now_or_never() {
                            Some(ready) => next = ready,
                            None => break,
                        }
                    }
                    deliver_round(&mut round, &sessions, &metrics);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        ShardLink::Remote(remote) => {
            let mut items = remote.follow(None);
            let mut round = Vec::new();
            'stream: loop {
                let mut item = tokio::select! {
                    () = shutdown.cancelled() => return,
                    item = items.recv() => item,
                };
                loop {
                    match item {
                        Some(StreamItem::Events { events, .. }) => round.extend(events),
                        Some(StreamItem::Gap { after, oldest }) => {
                            deliver_round(&mut round, &sessions, &metrics);
                            lost(shard, after, oldest, &sessions, &metrics);
                        }
                        Some(StreamItem::Heartbeat { .. }) => {}
                        None => {
                            deliver_round(&mut round, &sessions, &metrics);
                            break 'stream;
                        }
                    }
                    // Items received meanwhile join this round.
                    if round.len() >= ROUND_EVENTS {
                        break;
                    }
                    item = match items.try_recv() {
                        Ok(ready) => Some(ready),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    };
                }
                deliver_round(&mut round, &sessions, &metrics);
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

/// Delivers a gathered round and empties it for the next.
fn deliver_round(round: &mut Vec<Event>, sessions: &Sessions, metrics: &EdgeMetrics) {
    deliver_batch(round, sessions, metrics);
    round.clear();
}

/// Pushes the events of one round, in their order. Consecutive messages to the same
/// recipients, as a busy room has, go to each connection as one push: its queue is touched
/// and the connection woken once for all of them, not once per message.
pub fn deliver_batch(events: &[Event], sessions: &Sessions, metrics: &EdgeMetrics) {
    let mut rest = events;
    while let Some(first) = rest.first() {
        let run = match first {
            Event::Message { recipients, .. } => rest
                .iter()
                .take_while(|event| {
                    matches!(event, Event::Message { recipients: next, .. }
                        if Arc::ptr_eq(next, recipients) || next == recipients)
                })
                .count(),
            _ => 1,
        };
        let (now, later) = rest.split_at(run);
        if let [Event::Message { recipients, .. }, _, ..] = now {
            let frames: Pushes = now
                .iter()
                .filter_map(|event| match event {
                    Event::Message { msg, .. } => Some(msg_frame(msg)),
                    _ => None,
                })
                .collect();
            let delivered =
                sessions.deliver_all(recipients.iter().map(String::as_str), &frames, None);
            for _ in now {
                counted(delivered, metrics);
            }
        } else {
            deliver(first, sessions, metrics);
        }
        rest = later;
    }
}

/// Pushes one event to the devices it concerns.
pub fn deliver(event: &Event, sessions: &Sessions, metrics: &EdgeMetrics) {
    let delivered = match event {
        Event::Message { msg, recipients } => {
            sessions.deliver(recipients.iter().map(String::as_str), &msg_frame(msg), None)
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
    counted(delivered, metrics);
}

fn msg_frame(msg: &dolphin_protocol::Message) -> Arc<SharedFrame> {
    Arc::new(SharedFrame::new(ServerFrame::Msg(msg.clone())))
}

fn counted(delivered: crate::sessions::Delivered, metrics: &EdgeMetrics) {
    metrics.fanout.observe(delivered.queued as f64);
    if delivered.overflowed > 0 {
        metrics.overflows.inc_by(delivered.overflowed as u64);
    }
}

#[cfg(test)]
mod tests {
    use dolphin_protocol::{Body, Encoding, ErrorCode, Message, Rejected};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn message(conv: &str, seq: u64, recipients: &[&str]) -> Event {
        let msg = Message {
            conv: conv.to_owned(),
            seq,
            from: "ann".to_owned(),
            device: "phone".to_owned(),
            cid: format!("c{seq}"),
            ts: 0,
            body: Body::Text { text: format!("m{seq}") },
        };
        let recipients = recipients.iter().map(|r| (*r).to_owned()).collect();
        Event::Message { msg: Arc::new(msg), recipients }
    }

    /// The seqs (or `rejected` as 0) of each push a connection got.
    fn pushes(queue: &mut mpsc::Receiver<Pushes>) -> Vec<Vec<u64>> {
        let mut got = Vec::new();
        while let Ok(push) = queue.try_recv() {
            let seqs = push.iter().map(|frame| match &frame.frame {
                ServerFrame::Msg(msg) => msg.seq,
                _ => 0,
            });
            got.push(seqs.collect());
        }
        got
    }

    #[test]
    fn a_commit_of_one_room_is_one_push_per_connection_in_order() {
        let sessions = Sessions::default();
        let metrics = EdgeMetrics::register(&prometheus::Registry::new()).unwrap();
        let mut queues = Vec::new();
        for user in ["ann", "bob"] {
            let (tx, rx) = mpsc::channel(16);
            sessions.add(user, "phone", Encoding::Json, tx, CancellationToken::new());
            queues.push(rx);
        }
        let rejected = Rejected {
            conv: "g1".to_owned(),
            cid: "x".to_owned(),
            code: ErrorCode::Forbidden,
            message: "no".to_owned(),
        };
        let events = [
            message("g1", 1, &["ann", "bob"]),
            message("g1", 2, &["ann", "bob"]),
            message("g1", 3, &["ann", "bob"]),
            Event::Rejected { user: "bob".to_owned(), rejected },
            message("d1", 1, &["bob"]),
            message("g1", 4, &["ann", "bob"]),
        ];
        deliver_batch(&events, &sessions, &metrics);
        assert_eq!(pushes(&mut queues[0]), vec![vec![1, 2, 3], vec![4]]);
        assert_eq!(pushes(&mut queues[1]), vec![vec![1, 2, 3], vec![0], vec![1], vec![4]]);
        // The fan-out histogram still counts each message.
        assert_eq!(metrics.fanout.get_sample_count(), 6);
    }
}

//! Pushing what shards apply to the devices connected here.

use std::sync::Arc;

use dolphin_protocol::ServerFrame;
use dolphin_sequencer::bus::EventBatch;
use dolphin_state::Event;
use tokio::sync::mpsc;
use tracing::debug;

use crate::frame::SharedFrame;
use crate::metrics::EdgeMetrics;
use crate::sessions::Sessions;

/// Delivers batches of applied events until the stream ends.
pub async fn run(
    mut events: mpsc::Receiver<EventBatch>,
    sessions: Arc<Sessions>,
    metrics: EdgeMetrics,
) {
    while let Some(batch) = events.recv().await {
        for event in batch.iter() {
            deliver(event, &sessions, &metrics);
        }
    }
    debug!("event stream ended");
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
    };
    metrics.fanout.observe(delivered.queued as f64);
    if delivered.overflowed > 0 {
        metrics.overflows.inc_by(delivered.overflowed as u64);
    }
}

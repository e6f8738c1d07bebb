//! The event bus of a replica: applied events, batch by batch, in log order, to every
//! subscriber (the edges that push them).
//!
//! A subscriber's channel is bounded and publishing waits for room, so a slow subscriber slows
//! the apply loop instead of losing events or growing memory; a subscriber that went away is
//! dropped at the next publish.

use std::sync::{Arc, Mutex};

use dolphin_state::Event;
use tokio::sync::mpsc;

/// A batch of events applied together.
pub type EventBatch = Arc<[Event]>;

/// Fans applied events out to subscribers.
#[derive(Clone, Debug, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Vec<mpsc::Sender<EventBatch>>>>,
}

impl EventBus {
    /// A new subscription holding at most `capacity` batches not yet taken.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<EventBatch> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.lock().push(tx);
        rx
    }

    /// Whether anyone listens.
    pub fn has_subscribers(&self) -> bool {
        self.lock().iter().any(|tx| !tx.is_closed())
    }

    /// Hands `events` to every subscriber, waiting while one is full.
    pub async fn publish(&self, events: EventBatch) {
        if events.is_empty() {
            return;
        }
        let subscribers = self.lock().clone();
        for subscriber in &subscribers {
            // A send fails only when the subscriber is gone; it is removed below.
            let _ = subscriber.send(events.clone()).await;
        }
        self.lock().retain(|tx| !tx.is_closed());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<EventBatch>>> {
        // The lock guards a plain Vec and is never held across an await or a panic point, so a
        // poisoned lock still holds a consistent list.
        self.subscribers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

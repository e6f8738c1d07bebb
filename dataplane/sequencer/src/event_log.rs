//! The recent events of a replica, by log index, for the edges that push them.
//!
//! Every replica applies every entry, so every replica holds the same events at the same log
//! indexes. An edge follows one replica (the leader, for the lowest latency) and, when that
//! replica goes away, resumes on another after the last index it saw. The log is a bounded
//! ring: a subscriber that falls further behind than it holds is told of the gap, and must
//! have its devices catch up with `sync` and `fetch` instead.
//!
//! Appending never waits for subscribers, so a slow edge cannot slow the shard.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use dolphin_state::Event;
use tokio::sync::watch;

/// The events of one log entry.
pub type EventBatch = Arc<[Event]>;

/// How many entries' events a replica keeps for subscribers that resume.
pub const EVENT_LOG_ENTRIES: usize = 16_384;

/// A subscriber asked for events older than the replica still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("events after index {after} are gone; the oldest held is {oldest}")]
pub struct Gap {
    pub after: u64,
    pub oldest: u64,
}

#[derive(Debug, Default)]
struct Ring {
    entries: VecDeque<(u64, EventBatch)>,
    /// The index of the newest entry applied here, with or without events.
    applied: u64,
    /// Entries at or below this index are not held (never seen here, or dropped).
    floor: u64,
}

/// The recent events of one replica.
#[derive(Clone, Debug)]
pub struct EventLog {
    ring: Arc<Mutex<Ring>>,
    applied: watch::Sender<u64>,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        Self::new(EVENT_LOG_ENTRIES)
    }
}

impl EventLog {
    /// A log holding the events of up to `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        EventLog { ring: Arc::default(), applied: watch::channel(0).0, capacity: capacity.max(1) }
    }

    /// Starts the log at `applied`, the index the replica's state already includes: events
    /// before it were applied by an earlier run and are not held.
    pub fn start_at(&self, applied: u64) {
        let mut ring = self.lock();
        if ring.entries.is_empty() && ring.applied < applied {
            ring.applied = applied;
            ring.floor = applied;
        }
        drop(ring);
        self.applied.send_replace(applied);
    }

    /// Records the events of the entry at `index` (possibly none) as applied.
    pub fn append(&self, index: u64, events: EventBatch) {
        let mut ring = self.lock();
        if index <= ring.applied {
            // Already recorded (or from before this run): nothing new to hold.
            return;
        }
        if !events.is_empty() {
            ring.entries.push_back((index, events));
            while ring.entries.len() > self.capacity {
                if let Some((dropped, _)) = ring.entries.pop_front() {
                    ring.floor = dropped;
                }
            }
        }
        ring.applied = index;
        drop(ring);
        self.applied.send_replace(index);
    }

    /// Forgets everything before `index`: the state jumped there by a snapshot, so the events
    /// in between were never applied here.
    pub fn reset_to(&self, index: u64) {
        let mut ring = self.lock();
        ring.entries.clear();
        ring.applied = index;
        ring.floor = index;
        drop(ring);
        self.applied.send_replace(index);
    }

    /// The index of the newest applied entry.
    pub fn applied(&self) -> u64 {
        self.lock().applied
    }

    /// Follows the log from after `after` (`None`: from now).
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let after = after.unwrap_or_else(|| self.applied());
        Subscription { log: self.clone(), after, changes: self.applied.subscribe() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Held for a few pointer moves at a time, never across an await.
        self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One subscriber's position in an [`EventLog`].
#[derive(Debug)]
pub struct Subscription {
    log: EventLog,
    after: u64,
    changes: watch::Receiver<u64>,
}

impl Subscription {
    /// The index of the last entry handed out.
    pub fn position(&self) -> u64 {
        self.after
    }

    /// The next entry with events after the position, waiting for one to be applied. Returns
    /// `None` when the log is gone (the replica stopped).
    pub async fn next(&mut self) -> Option<Result<(u64, EventBatch), Gap>> {
        loop {
            match self.poll_ready() {
                Ok(Some(next)) => return Some(Ok(next)),
                Err(gap) => {
                    // Report once, then continue from what is held.
                    self.after = gap.oldest;
                    return Some(Err(gap));
                }
                Ok(None) => {}
            }
            if self.changes.changed().await.is_err() {
                return None;
            }
        }
    }

    fn poll_ready(&mut self) -> Result<Option<(u64, EventBatch)>, Gap> {
        let ring = self.log.lock();
        if self.after < ring.floor {
            return Err(Gap { after: self.after, oldest: ring.floor });
        }
        let at = ring.entries.partition_point(|(index, _)| *index <= self.after);
        if let Some((index, batch)) = ring.entries.get(at) {
            self.after = *index;
            return Ok(Some((*index, batch.clone())));
        }
        // Nothing with events yet; entries without events still move the position.
        self.after = self.after.max(ring.applied);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolphin_protocol::{ErrorCode, Rejected};

    fn batch(cid: &str) -> EventBatch {
        Arc::from([Event::Rejected {
            user: "u".into(),
            rejected: Rejected {
                conv: "c".into(),
                cid: cid.into(),
                code: ErrorCode::NotFound,
                message: String::new(),
            },
        }])
    }

    fn cid(batch: &EventBatch) -> String {
        match &batch[0] {
            Event::Rejected { rejected, .. } => rejected.cid.clone(),
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn subscribers_resume_after_the_index_they_name() {
        let log = EventLog::new(10);
        for i in 1..=5 {
            log.append(i, batch(&format!("e{i}")));
        }
        let mut sub = log.subscribe(Some(3));
        let (index, events) = sub.next().await.unwrap().unwrap();
        assert_eq!((index, cid(&events)), (4, "e4".to_owned()));
        let (index, _) = sub.next().await.unwrap().unwrap();
        assert_eq!(index, 5);
    }

    #[tokio::test]
    async fn entries_without_events_are_skipped() {
        let log = EventLog::new(10);
        log.append(1, batch("a"));
        log.append(2, Arc::from([]));
        log.append(3, batch("c"));
        let mut sub = log.subscribe(Some(1));
        assert_eq!(sub.next().await.unwrap().unwrap().0, 3);
    }

    #[tokio::test]
    async fn a_subscriber_too_far_behind_is_told_of_the_gap() {
        let log = EventLog::new(2);
        for i in 1..=5 {
            log.append(i, batch(&format!("e{i}")));
        }
        let mut sub = log.subscribe(Some(1));
        assert_eq!(sub.next().await.unwrap().unwrap_err(), Gap { after: 1, oldest: 3 });
        assert_eq!(sub.next().await.unwrap().unwrap().0, 4);
    }

    #[tokio::test]
    async fn a_restarted_replica_holds_nothing_before_its_restart() {
        let log = EventLog::new(10);
        log.start_at(100);
        let mut sub = log.subscribe(Some(50));
        assert_eq!(sub.next().await.unwrap().unwrap_err().oldest, 100);
        log.append(101, batch("x"));
        assert_eq!(sub.next().await.unwrap().unwrap().0, 101);
    }

    #[tokio::test]
    async fn waiting_subscribers_wake_on_append() {
        let log = EventLog::new(10);
        let mut sub = log.subscribe(None);
        let writer = log.clone();
        tokio::spawn(async move { writer.append(1, batch("late")) });
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next()).await;
        assert_eq!(next.expect("woken").unwrap().unwrap().0, 1);
    }
}

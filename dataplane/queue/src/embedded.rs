//! The queue of `dolphin dev`: every shard's inbox in one redb file of the data folder, with
//! the same semantics as the Redis transport for the one consumer a process has per shard.
//!
//! Pushes that arrive together are written in one transaction with one fsync, so a burst of
//! sends costs one disk flush. Ephemeral notices travel through an in-process channel.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dolphin_state::Command;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::{EntryId, InboxEntry, QueueError, READ_BLOCK};

fn table(shard: u32) -> String {
    format!("inbox-{shard}")
}

fn storage(error: impl Into<redb::Error>) -> QueueError {
    QueueError::Storage(error.into().to_string())
}

/// Each shard's consumer state, shared by pushers and the consumer.
#[derive(Debug, Default)]
struct Inbox {
    /// The id the next push gets.
    next: u64,
    /// Entries up to this id have been delivered at least once in this process.
    delivered: u64,
    /// Delivered and not acknowledged.
    pending: BTreeSet<u64>,
}

#[derive(Debug)]
struct Shared {
    db: Database,
    inboxes: Mutex<HashMap<u32, Inbox>>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Inbox>> {
        // Held for map updates only, never across an await or a disk write.
        self.inboxes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Push = (u32, Vec<u8>, oneshot::Sender<Result<EntryId, QueueError>>);

/// The embedded queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EmbeddedQueue {
    shared: Arc<Shared>,
    pushes: mpsc::Sender<Push>,
    notices: broadcast::Sender<Bytes>,
}

impl EmbeddedQueue {
    /// Opens or creates the queue file at `path` for the shards `0..shards`.
    pub fn open(path: &Path, shards: u32) -> Result<Self, QueueError> {
        let db = Database::create(path).map_err(storage)?;
        let mut inboxes = HashMap::new();
        {
            let txn = db.begin_write().map_err(storage)?;
            for shard in 0..shards {
                let name = table(shard);
                let t =
                    txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(storage)?;
                let next = t.last().map_err(storage)?.map_or(1, |(k, _)| k.value() + 1);
                inboxes.insert(shard, Inbox { next, ..Inbox::default() });
            }
            txn.commit().map_err(storage)?;
        }
        let shared = Arc::new(Shared { db, inboxes: Mutex::new(inboxes), arrived: Notify::new() });
        let (pushes, queue) = mpsc::channel(4096);
        std::thread::Builder::new()
            .name("dolphin-queue".into())
            .spawn({
                let shared = shared.clone();
                move || appender(shared, queue)
            })
            .map_err(|e| QueueError::Storage(e.to_string()))?;
        let (notices, _) = broadcast::channel(4096);
        Ok(EmbeddedQueue { shared, pushes, notices })
    }

    pub(crate) async fn push(&self, shard: u32, command: &Command) -> Result<EntryId, QueueError> {
        let bytes = crate::encode(command)?;
        let (reply, wait) = oneshot::channel();
        self.pushes
            .send((shard, bytes, reply))
            .await
            .map_err(|_| QueueError::Unavailable("the embedded queue stopped".into()))?;
        wait.await.map_err(|_| QueueError::Unavailable("the embedded queue stopped".into()))?
    }

    pub(crate) fn consumer(&self, shard: u32) -> EmbeddedConsumer {
        EmbeddedConsumer { shared: self.shared.clone(), shard }
    }

    pub(crate) fn publish(&self, notice: Bytes) {
        // No receiver means no edge listens yet; the notice is ephemeral anyway.
        let _ = self.notices.send(notice);
    }

    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Bytes> {
        let mut notices = self.notices.subscribe();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                match notices.recv().await {
                    Ok(notice) => {
                        if tx.send(notice).await.is_err() {
                            return;
                        }
                    }
                    // Ephemeral: a notice missed while behind is simply gone.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }
}

/// Writes pushes in groups: everything waiting goes into one durable transaction.
fn appender(shared: Arc<Shared>, mut queue: mpsc::Receiver<Push>) {
    while let Some(first) = queue.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(next) = queue.try_recv() {
            batch.push(next);
            if batch.len() >= 1024 {
                break;
            }
        }
        let result = write_batch(&shared, &batch);
        for ((_, _, reply), id) in batch.into_iter().zip(result.iter_ids()) {
            let _ = reply.send(id);
        }
        shared.arrived.notify_waiters();
    }
}

enum BatchResult {
    Ok(Vec<EntryId>),
    Failed(QueueError),
}

impl BatchResult {
    fn iter_ids(&self) -> Box<dyn Iterator<Item = Result<EntryId, QueueError>> + '_> {
        match self {
            BatchResult::Ok(ids) => Box::new(ids.iter().map(|id| Ok(*id))),
            BatchResult::Failed(error) => {
                Box::new(std::iter::repeat_with(move || Err(error.clone())))
            }
        }
    }
}

fn write_batch(shared: &Shared, batch: &[Push]) -> BatchResult {
    let mut ids = Vec::with_capacity(batch.len());
    {
        let mut inboxes = shared.lock();
        for (shard, _, _) in batch {
            let inbox =
                inboxes.entry(*shard).or_insert_with(|| Inbox { next: 1, ..Default::default() });
            ids.push(inbox.next);
            inbox.next += 1;
        }
    }
    let written = (|| -> Result<(), QueueError> {
        let mut txn = shared.db.begin_write().map_err(storage)?;
        txn.set_durability(Durability::Immediate).map_err(storage)?;
        for ((shard, bytes, _), id) in batch.iter().zip(&ids) {
            let name = table(*shard);
            let mut t =
                txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(storage)?;
            t.insert(id, bytes.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    })();
    match written {
        Ok(()) => BatchResult::Ok(ids.into_iter().map(|n| EntryId { ms: n, seq: 0 }).collect()),
        Err(error) => BatchResult::Failed(error),
    }
}

/// The consumer of one shard's embedded inbox.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    shared: Arc<Shared>,
    shard: u32,
}

impl EmbeddedConsumer {
    fn read(
        &self,
        after: u64,
        upto: Option<u64>,
        max: usize,
    ) -> Result<Vec<InboxEntry>, QueueError> {
        let txn = self.shared.db.begin_read().map_err(storage)?;
        let name = table(self.shard);
        let t = txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(storage)?;
        let mut out = Vec::new();
        let range = match upto {
            Some(upto) => t.range(after + 1..=upto),
            None => t.range(after + 1..),
        }
        .map_err(storage)?;
        for item in range.take(max) {
            let (id, bytes) = item.map_err(storage)?;
            out.push(InboxEntry {
                id: EntryId { ms: id.value(), seq: 0 },
                command: crate::decode(bytes.value())?,
            });
        }
        Ok(out)
    }

    pub(crate) fn claim_pending(&mut self, max: usize) -> Result<Vec<InboxEntry>, QueueError> {
        let pending: Vec<u64> = {
            let inboxes = self.shared.lock();
            inboxes
                .get(&self.shard)
                .map(|i| i.pending.iter().copied().take(max).collect())
                .unwrap_or_default()
        };
        let mut out = Vec::with_capacity(pending.len());
        for id in pending {
            out.extend(self.read(id - 1, Some(id), 1)?);
        }
        Ok(out)
    }

    pub(crate) async fn next_batch(&mut self, max: usize) -> Result<Vec<InboxEntry>, QueueError> {
        let deadline = tokio::time::Instant::now() + READ_BLOCK;
        loop {
            // Register interest before looking, so a push between the look and the wait wakes us.
            let arrived = self.shared.arrived.notified();
            let after = self.shared.lock().get(&self.shard).map_or(0, |i| i.delivered);
            let entries = self.read(after, None, max)?;
            if let Some(last) = entries.last() {
                let mut inboxes = self.shared.lock();
                let inbox = inboxes.entry(self.shard).or_default();
                inbox.delivered = inbox.delivered.max(last.id.ms);
                inbox.pending.extend(entries.iter().map(|e| e.id.ms));
                return Ok(entries);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    pub(crate) fn ack(&mut self, ids: &[EntryId]) {
        let mut inboxes = self.shared.lock();
        if let Some(inbox) = inboxes.get_mut(&self.shard) {
            for id in ids {
                inbox.pending.remove(&id.ms);
            }
        }
    }

    pub(crate) fn trim_below(&mut self, id: EntryId) -> Result<(), QueueError> {
        let mut txn = self.shared.db.begin_write().map_err(storage)?;
        // Not fsynced: an entry that comes back after a crash is recognised as applied.
        txn.set_durability(Durability::None).map_err(storage)?;
        {
            let name = table(self.shard);
            let mut t =
                txn.open_table(TableDefinition::<u64, &[u8]>::new(&name)).map_err(storage)?;
            t.retain_in(..id.ms, |_, _| false).map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    pub(crate) fn pending(&self) -> u64 {
        self.shared.lock().get(&self.shard).map_or(0, |i| i.pending.len() as u64)
    }

    pub(crate) fn lag(&self) -> u64 {
        // Ids are consecutive from 1: the newest is `next - 1`.
        self.shared
            .lock()
            .get(&self.shard)
            .map_or(0, |i| i.next.saturating_sub(1).saturating_sub(i.delivered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(cid: &str) -> Command {
        Command::Read { conv: "d:a:b".into(), user: "a".into(), device: cid.into(), seq: 1 }
    }

    #[tokio::test]
    async fn pushed_entries_are_consumed_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let queue = EmbeddedQueue::open(&path, 2).unwrap();
            for i in 0..5 {
                queue.push(0, &read(&format!("d{i}"))).await.unwrap();
            }
            queue.push(1, &read("other")).await.unwrap();
            let mut consumer = queue.consumer(0);
            let batch = consumer.next_batch(3).await.unwrap();
            assert_eq!(batch.iter().map(|e| e.id.ms).collect::<Vec<_>>(), [1, 2, 3]);
            assert_eq!(consumer.pending(), 3);
            consumer.ack(&[batch[0].id]);
            assert_eq!(consumer.claim_pending(10).unwrap().len(), 2);
            consumer.trim_below(EntryId { ms: 3, seq: 0 }).unwrap();
        }
        // After a restart, everything not trimmed comes again; new ids continue. The writer
        // thread of the first queue lets go of the file shortly after the last handle drops.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let queue = loop {
            match EmbeddedQueue::open(&path, 2) {
                Ok(queue) => break queue,
                Err(error) if std::time::Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(error) => panic!("the queue file stayed locked: {error}"),
            }
        };
        let mut consumer = queue.consumer(0);
        let batch = consumer.next_batch(10).await.unwrap();
        assert_eq!(batch.iter().map(|e| e.id.ms).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(queue.push(0, &read("late")).await.unwrap(), EntryId { ms: 6, seq: 0 });
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_when_an_entry_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(&dir.path().join("q.redb"), 1).unwrap();
        let mut consumer = queue.consumer(0);
        let pusher = queue.clone();
        let waiting = tokio::spawn(async move {
            loop {
                let batch = consumer.next_batch(10).await.unwrap();
                if !batch.is_empty() {
                    return batch;
                }
            }
        });
        pusher.push(0, &read("x")).await.unwrap();
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the consumer never saw the entry")
            .unwrap();
        assert_eq!(batch.len(), 1);
    }
}

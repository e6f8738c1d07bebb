//! The Raft log of one replica, in its own redb file.
//!
//! Every append is one transaction committed with an fsync before openraft is told it is
//! durable; openraft appends the entries of many proposals at once, so one fsync covers them
//! all. Disk work runs on the blocking pool so that the Raft core keeps its thread.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError (224 bytes); the error path is cold"
)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::state_machine::Durable;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";

/// The Raft log of one replica.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// How far the state on disk reaches: entries after it are never deleted, whatever openraft
    /// purges, because a restart applies them again.
    durable: Durable,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

fn read_err(error: impl Into<redb::Error>) -> StorageError {
    StorageIOError::read_logs(&error.into()).into()
}

fn write_err(error: impl Into<redb::Error>) -> StorageError {
    StorageIOError::write_logs(&error.into()).into()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    rmp_serde::from_slice(bytes).map_err(|e| StorageIOError::read_logs(&e).into())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    rmp_serde::to_vec_named(value).map_err(|e| StorageIOError::write_logs(&e).into())
}

impl LogStore {
    /// Opens or creates the log in `path`.
    pub fn open(path: &Path, durable: Durable) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db), durable })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let bytes = encode(value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write().map_err(write_err)?;
            txn.set_durability(durability).map_err(write_err)?;
            txn.open_table(META)
                .map_err(write_err)?
                .insert(key, bytes.as_slice())
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
    }

    /// Deletes the entries with indexes in `range` and records `purged` if given, durably.
    async fn delete(
        &self,
        range: (Bound<u64>, Bound<u64>),
        purged: Option<LogId>,
    ) -> Result<(), StorageError> {
        let purged = purged.map(|id| encode(&id)).transpose()?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write().map_err(write_err)?;
            txn.set_durability(Durability::Immediate).map_err(write_err)?;
            {
                let mut log = txn.open_table(LOG).map_err(write_err)?;
                log.retain_in(range, |_, _| false).map_err(write_err)?;
                if let Some(purged) = purged {
                    let mut meta = txn.open_table(META).map_err(write_err)?;
                    meta.insert(PURGED_KEY, purged.as_slice()).map_err(write_err)?;
                }
            }
            txn.commit().map_err(write_err)
        })
        .await
    }
}

/// Runs disk work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_logs(&std::io::Error::other(e))))?
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(read_err)?;
            let log = txn.open_table(LOG).map_err(read_err)?;
            let mut entries = Vec::new();
            for item in log.range(range).map_err(read_err)? {
                let (_, bytes) = item.map_err(read_err)?;
                entries.push(decode(bytes.value())?);
            }
            Ok(entries)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.meta(PURGED_KEY)?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let log = txn.open_table(LOG).map_err(read_err)?;
        let last = match log.last().map_err(read_err)? {
            Some((_, bytes)) => Some(decode::<Entry>(bytes.value())?.log_id),
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(VOTE_KEY, vote, Durability::Immediate).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced on its own: the next append makes it durable with it. A committed index
        // lost to a crash only delays applying until the leader says it again.
        self.put_meta(COMMITTED_KEY, &committed, Durability::None).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, encode(&e)?)))
            .collect::<Result<_, StorageError>>()?;
        let db = self.db.clone();
        let result = blocking(move || {
            let mut txn = db.begin_write().map_err(write_err)?;
            txn.set_durability(Durability::Immediate).map_err(write_err)?;
            {
                let mut log = txn.open_table(LOG).map_err(write_err)?;
                for (index, bytes) in &encoded {
                    log.insert(index, bytes.as_slice()).map_err(write_err)?;
                }
            }
            txn.commit().map_err(write_err)
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.delete((Bound::Included(log_id.index), Bound::Unbounded), None).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Openraft counts entries up to `log_id` as gone; physically, those the state on disk
        // does not include yet stay until a later purge, for a restart to apply them again.
        let upto = log_id.index.min(self.durable.get());
        self.delete((Bound::Unbounded, Bound::Included(upto)), Some(log_id)).await
    }
}

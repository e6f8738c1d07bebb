//! The applied state of one replica, in its own redb file, driven by openraft.
//!
//! Each call to `apply` is one write transaction over every entry it is given, committed
//! together with the last applied log id, so the state always matches a prefix of the log.
//! Like etcd's backend, the state is not fsynced on every commit: the Raft log is the durable
//! record, and the state is made durable (a checkpoint) at most every [`CHECKPOINT_EVERY`] or
//! [`CHECKPOINT_ENTRIES`] entries. A crash loses only state that the log still holds: on
//! restart openraft applies the committed entries after the last checkpoint again, and the log
//! store never deletes entries the last checkpoint does not include (see [`Durable`]).

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return its StorageError (224 bytes); the error path is cold"
)]

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dolphin_state::{Event, MemberCache, Outcome};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::event_log::EventLog;
use crate::metrics::SequencerMetrics;
use crate::redb_kv::{ReadKv, WriteKv};
use crate::snapshot::{SnapshotDir, load_dump, write_dump};
use crate::types::{BatchResult, Entry, LogId, StorageError, StoredMembership, TypeConfig};

const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

/// The longest time between two durable commits of the state.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The most entries applied between two durable commits of the state.
pub const CHECKPOINT_ENTRIES: u64 = 5_000;

/// The log index the state on disk is known to include, shared with the log store so that it
/// keeps every entry after it (the entries a restart applies again).
#[derive(Clone, Debug, Default)]
pub struct Durable(Arc<AtomicU64>);

impl Durable {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, index: u64) {
        self.0.fetch_max(index, Ordering::AcqRel);
    }
}
const APPLIED_KEY: &str = "last_applied";
const INBOX_KEY: &str = "inbox_applied";
const MEMBERSHIP_KEY: &str = "membership";

fn sm_err(error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&error).into()
}

fn snap_err(error: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &error).into()
}

/// The state machine of one replica.
pub struct StateMachine {
    db: Arc<Database>,
    snapshots: SnapshotDir,
    events: EventLog,
    metrics: SequencerMetrics,
    durable: Durable,
    last_checkpoint: Instant,
    since_checkpoint: u64,
    /// Member lists of large conversations, kept in step with the tables by the state machine.
    members: Arc<MemberCache>,
}

impl Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish_non_exhaustive()
    }
}

impl StateMachine {
    /// Opens or creates the state in `path`, keeping snapshots in `snapshots`.
    pub fn open(
        path: &Path,
        snapshots: SnapshotDir,
        events: EventLog,
        metrics: SequencerMetrics,
        durable: Durable,
    ) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        WriteKv::open(&txn)?;
        txn.open_table(SM_META)?;
        txn.commit()?;
        snapshots.clean_incoming();
        let applied = {
            let txn = db.begin_read()?;
            read_meta(&txn).ok().and_then(|(applied, _)| applied).map_or(0, |id| id.index)
        };
        events.start_at(applied);
        durable.set(applied);
        Ok(StateMachine {
            db: Arc::new(db),
            snapshots,
            events,
            metrics,
            durable,
            last_checkpoint: Instant::now(),
            since_checkpoint: 0,
            members: Arc::default(),
        })
    }

    /// The database, for reads.
    pub fn database(&self) -> Arc<Database> {
        self.db.clone()
    }
}

fn read_meta(
    txn: &redb::ReadTransaction,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let table = txn.open_table(SM_META).map_err(sm_err)?;
    let applied = match table.get(APPLIED_KEY).map_err(sm_err)? {
        Some(bytes) => rmp_serde::from_slice(bytes.value()).map_err(sm_err)?,
        None => None,
    };
    let membership = match table.get(MEMBERSHIP_KEY).map_err(sm_err)? {
        Some(bytes) => rmp_serde::from_slice(bytes.value()).map_err(sm_err)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// How far the state in `db` has applied the shard's inbox.
pub(crate) fn inbox_applied(db: &Database) -> Result<Option<dolphin_queue::EntryId>, StorageError> {
    let txn = db.begin_read().map_err(sm_err)?;
    let table = txn.open_table(SM_META).map_err(sm_err)?;
    match table.get(INBOX_KEY).map_err(sm_err)? {
        Some(bytes) => rmp_serde::from_slice(bytes.value()).map_err(sm_err),
        None => Ok(None),
    }
}

/// The index of the last entry the state in `txn` includes.
pub(crate) fn applied_index(txn: &redb::ReadTransaction) -> Result<u64, StorageError> {
    Ok(read_meta(txn)?.0.map_or(0, |id| id.index))
}

fn write_meta(
    txn: &redb::WriteTransaction,
    applied: &Option<LogId>,
    membership: &StoredMembership,
) -> Result<(), StorageError> {
    let mut table = txn.open_table(SM_META).map_err(sm_err)?;
    let applied = rmp_serde::to_vec_named(applied).map_err(sm_err)?;
    let membership = rmp_serde::to_vec_named(membership).map_err(sm_err)?;
    table.insert(APPLIED_KEY, applied.as_slice()).map_err(sm_err)?;
    table.insert(MEMBERSHIP_KEY, membership.as_slice()).map_err(sm_err)?;
    Ok(())
}

/// Applies `entries` in one durable transaction, returning one result per entry.
fn apply_entries(
    db: &Database,
    members: &MemberCache,
    entries: Vec<Entry>,
    durable: bool,
) -> Result<Vec<(u64, BatchResult)>, StorageError> {
    let applied = apply_in_txn(db, members, entries, durable);
    if applied.is_err() {
        // The transaction is not committed, and the cache may hold what it read or changed.
        members.clear();
    }
    applied
}

fn apply_in_txn(
    db: &Database,
    members: &MemberCache,
    entries: Vec<Entry>,
    durable: bool,
) -> Result<Vec<(u64, BatchResult)>, StorageError> {
    let mut txn = db.begin_write().map_err(sm_err)?;
    let durability = if durable { Durability::Immediate } else { Durability::None };
    txn.set_durability(durability).map_err(sm_err)?;
    let (mut applied, mut membership) = {
        let table = txn.open_table(SM_META).map_err(sm_err)?;
        let applied = match table.get(APPLIED_KEY).map_err(sm_err)? {
            Some(bytes) => rmp_serde::from_slice(bytes.value()).map_err(sm_err)?,
            None => None,
        };
        let membership = match table.get(MEMBERSHIP_KEY).map_err(sm_err)? {
            Some(bytes) => rmp_serde::from_slice(bytes.value()).map_err(sm_err)?,
            None => StoredMembership::default(),
        };
        (applied, membership)
    };
    let mut results = Vec::with_capacity(entries.len());
    let mut inbox = None;
    {
        let mut kv = WriteKv::open(&txn).map_err(sm_err)?.with_member_cache(members);
        for entry in entries {
            applied = Some(entry.log_id);
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => results.push((index, BatchResult::default())),
                EntryPayload::Normal(batch) => {
                    inbox = inbox.max(batch.inbox);
                    let mut result =
                        BatchResult { applied: Vec::with_capacity(batch.commands.len()) };
                    for command in &batch.commands {
                        let outcome = dolphin_state::apply(&mut kv, command).map_err(|e| {
                            StorageError::from(StorageIOError::apply(entry.log_id, &e))
                        })?;
                        result.applied.push(outcome);
                    }
                    results.push((index, result));
                }
                EntryPayload::Membership(change) => {
                    membership = StoredMembership::new(Some(entry.log_id), change);
                    results.push((index, BatchResult::default()));
                }
            }
        }
    }
    write_meta(&txn, &applied, &membership)?;
    if let Some(inbox) = inbox {
        let mut table = txn.open_table(SM_META).map_err(sm_err)?;
        let previous: Option<dolphin_queue::EntryId> = match table.get(INBOX_KEY).map_err(sm_err)? {
            Some(bytes) => rmp_serde::from_slice(bytes.value()).map_err(sm_err)?,
            None => None,
        };
        if previous.is_none_or(|p| p < inbox) {
            let bytes = rmp_serde::to_vec_named(&Some(inbox)).map_err(sm_err)?;
            table.insert(INBOX_KEY, bytes.as_slice()).map_err(sm_err)?;
        }
    }
    txn.commit().map_err(sm_err)?;
    Ok(results)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let txn = self.db.begin_read().map_err(sm_err)?;
        read_meta(&txn)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id.index) else { return Ok(Vec::new()) };
        self.since_checkpoint += entries.len() as u64;
        let checkpoint = self.since_checkpoint >= CHECKPOINT_ENTRIES
            || self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY;
        let (db, members) = (self.db.clone(), self.members.clone());
        let started = Instant::now();
        let results =
            tokio::task::spawn_blocking(move || apply_entries(&db, &members, entries, checkpoint))
                .await
                .map_err(sm_err)??;
        self.metrics.apply_seconds.observe(started.elapsed().as_secs_f64());
        if checkpoint {
            self.durable.set(last);
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        }

        let mut replies = Vec::with_capacity(results.len());
        for (index, result) in results {
            let mut events = Vec::new();
            for applied in &result.applied {
                match &applied.outcome {
                    Outcome::Sent { duplicate: false, .. } => self.metrics.messages_ordered.inc(),
                    Outcome::Refused(refusal) => {
                        self.metrics.rejects.with_label_values(&[refusal.code.as_str()]).inc()
                    }
                    _ => {}
                }
                events.extend(applied.events.iter().cloned());
            }
            self.events.append(index, Arc::<[Event]>::from(events));
            replies.push(result);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            metrics: self.metrics.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snapshots.temp_path();
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .await
            .map_err(snap_err)?;
        // The name is not needed again: install_snapshot copies the content it is given.
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut file = snapshot.into_std().await;
        // The tables are about to be replaced.
        self.members.clear();
        let db = self.db.clone();
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        let metrics = self.metrics.clone();
        let installed = tokio::task::spawn_blocking(move || {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(0)).map_err(snap_err)?;
            // Keep a copy as this replica's current snapshot, for followers it will feed.
            let copy_path = snapshots.temp_path();
            let mut copy = std::fs::File::create(&copy_path).map_err(snap_err)?;
            let bytes = std::io::copy(&mut file, &mut copy).map_err(snap_err)?;
            metrics.snapshot_bytes.observe(bytes as f64);
            copy.sync_all().map_err(snap_err)?;
            file.seek(SeekFrom::Start(0)).map_err(snap_err)?;

            let mut txn = db.begin_write().map_err(snap_err)?;
            txn.set_durability(Durability::Immediate).map_err(snap_err)?;
            load_dump(&txn, file).map_err(snap_err)?;
            write_meta(&txn, &meta.last_log_id, &meta.last_membership)?;
            txn.commit().map_err(snap_err)?;
            snapshots.promote(&copy_path, &meta).map_err(snap_err)?;
            Ok::<_, StorageError>(meta.last_log_id.map_or(0, |id| id.index))
        })
        .await
        .map_err(snap_err)??;
        self.events.reset_to(installed);
        self.durable.set(installed);
        self.snapshots.clean_incoming();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some((meta, file)) = self.snapshots.current().map_err(snap_err)? else {
            return Ok(None);
        };
        Ok(Some(Snapshot { meta, snapshot: Box::new(tokio::fs::File::from_std(file)) }))
    }
}

/// Builds a snapshot from a consistent read of the state while applying goes on.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    snapshots: SnapshotDir,
    metrics: SequencerMetrics,
}

impl Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder").finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let db = self.db.clone();
        let snapshots = self.snapshots.clone();
        let (meta, path) = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(snap_err)?;
            let (applied, membership) = read_meta(&txn)?;
            let kv = ReadKv::from_txn(&txn).map_err(snap_err)?;
            let path = snapshots.temp_path();
            write_dump(&kv, &path).map_err(snap_err)?;
            let snapshot_id = match applied {
                Some(id) => {
                    format!("{}-{}-{:08x}", id.leader_id.term, id.index, rand::random::<u32>())
                }
                None => format!("0-0-{:08x}", rand::random::<u32>()),
            };
            let meta =
                SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
            let path = snapshots.promote(&path, &meta).map_err(snap_err)?;
            Ok::<_, StorageError>((meta, path))
        })
        .await
        .map_err(snap_err)??;
        let file = tokio::fs::File::open(&path).await.map_err(snap_err)?;
        if let Ok(info) = file.metadata().await {
            self.metrics.snapshot_bytes.observe(info.len() as f64);
        }
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

//! Snapshots of the applied state: a dump of every state table to a file.
//!
//! The dump is a sequence of MessagePack records `(table, key, value)` in table order, then key
//! order. It streams from a read transaction to a file and from a file into a write
//! transaction, so a snapshot never has to fit in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use dolphin_state::Table;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::redb_kv::{ReadKv, definition};
use crate::types::SnapshotMeta;

/// Why a snapshot could not be written or read.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("failed to access the snapshot file")]
    Io(#[from] std::io::Error),
    #[error("failed to access the state database")]
    Db(#[from] redb::Error),
    #[error("failed to encode a snapshot record")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("failed to decode a snapshot record")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("snapshot names an unknown table {0:?}")]
    UnknownTable(String),
}

#[derive(Serialize, Deserialize)]
struct Record {
    table: String,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
}

/// Writes every state table of `kv` to `path`, fsynced.
pub fn write_dump(kv: &ReadKv, path: &Path) -> Result<u64, SnapshotError> {
    let file = File::create(path)?;
    let mut out = BufWriter::new(file);
    let mut records = 0;
    for table in Table::ALL {
        for item in kv.iter(table)? {
            let (key, value) = item.map_err(redb::Error::from)?;
            let record = Record {
                table: table.name().to_owned(),
                key: key.value().to_vec(),
                value: value.value().to_vec(),
            };
            rmp_serde::encode::write_named(&mut out, &record)?;
            records += 1;
        }
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(records)
}

/// Replaces every state table in `txn` with the dump read from `file`.
pub fn load_dump(txn: &redb::WriteTransaction, file: File) -> Result<u64, SnapshotError> {
    for table in Table::ALL {
        txn.delete_table(definition(table)).map_err(redb::Error::from)?;
    }
    let mut tables = Table::ALL
        .iter()
        .map(|t| txn.open_table(definition(*t)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(redb::Error::from)?;
    let mut input = BufReader::new(file);
    let mut records = 0;
    while !at_end(&mut input)? {
        let record: Record = rmp_serde::decode::from_read(&mut input)?;
        let index = Table::ALL
            .iter()
            .position(|t| t.name() == record.table)
            .ok_or_else(|| SnapshotError::UnknownTable(record.table.to_owned()))?;
        tables[index]
            .insert(record.key.as_slice(), record.value.as_slice())
            .map_err(redb::Error::from)?;
        records += 1;
    }
    Ok(records)
}

fn at_end(input: &mut BufReader<File>) -> std::io::Result<bool> {
    use std::io::BufRead;
    Ok(input.fill_buf()?.is_empty())
}

/// Where a replica keeps its newest snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

/// The stored description of the newest snapshot.
#[derive(Serialize, Deserialize)]
struct Current {
    meta: SnapshotMeta,
    file: String,
}

impl SnapshotDir {
    /// Uses (creating) the folder `dir`.
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(SnapshotDir { dir })
    }

    /// A fresh path for a snapshot being built or received.
    pub fn temp_path(&self) -> PathBuf {
        self.dir.join(format!("incoming-{:016x}.snap", rand::random::<u64>()))
    }

    /// Makes the snapshot at `path` the current one, removing older ones. The description is
    /// written to a temporary file and renamed, so a crash leaves the old or the new one.
    pub fn promote(&self, path: &Path, meta: &SnapshotMeta) -> Result<PathBuf, SnapshotError> {
        let name = format!("{}.snap", meta.snapshot_id);
        let target = self.dir.join(&name);
        std::fs::rename(path, &target)?;
        let current = Current { meta: meta.clone(), file: name.clone() };
        let tmp = self.dir.join("current.json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&current).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("current.json"))?;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.ends_with(".snap")
                && file_name != name
                && !file_name.starts_with("incoming-")
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(target)
    }

    /// The current snapshot's metadata and file, if there is one.
    pub fn current(&self) -> Result<Option<(SnapshotMeta, File)>, SnapshotError> {
        let mut text = Vec::new();
        match File::open(self.dir.join("current.json")) {
            Ok(mut file) => file.read_to_end(&mut text)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let current: Current = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        let file = File::open(self.dir.join(&current.file))?;
        Ok(Some((current.meta, file)))
    }

    /// Removes snapshots that were being received when the process stopped.
    pub fn clean_incoming(&self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("incoming-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

    use dolphin_protocol::Body;
    use dolphin_state::{Command, apply};

    use super::*;
    use crate::redb_kv::WriteKv;

    #[test]
    fn a_snapshot_carries_the_files_named_by_messages() {
        let dir = tempfile::tempdir().unwrap();
        let source = redb::Database::create(dir.path().join("source.redb")).unwrap();
        let txn = source.begin_write().unwrap();
        {
            let mut kv = WriteKv::open(&txn).unwrap();
            let body = Body::Image { file: "f_1".into(), width: 1, height: 1 };
            let send = Command::Send {
                conv: "d:ann:ben".into(),
                from: "ann".into(),
                device: "d".into(),
                cid: "c".into(),
                body,
                ts: 1,
            };
            apply(&mut kv, &send).unwrap();
        }
        txn.commit().unwrap();
        let dump = dir.path().join("dump.snap");
        write_dump(&ReadKv::open(&source).unwrap(), &dump).unwrap();

        let target = redb::Database::create(dir.path().join("target.redb")).unwrap();
        let txn = target.begin_write().unwrap();
        load_dump(&txn, File::open(&dump).unwrap()).unwrap();
        txn.commit().unwrap();
        let kv = ReadKv::open(&target).unwrap();
        assert!(dolphin_state::files::may_read(&kv, "ben", "f_1").unwrap());
        assert!(!dolphin_state::files::may_read(&kv, "cal", "f_1").unwrap());
    }
}

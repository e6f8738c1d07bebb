//! The state machine's key-value interface on redb tables.

use std::ops::Bound;

use dolphin_state::kv::KeyRange;
use dolphin_state::{Kv, KvRead, MemberCache, Table};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// The redb definition of a state table.
pub fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn scan_table<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    range: &KeyRange,
    reverse: bool,
    limit: usize,
) -> Result<Entries, redb::Error> {
    let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_ref(&range.0), as_ref(&range.1));
    let iter = table.range(bounds)?;
    let mut out = Vec::new();
    type Item<'a> = (redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>);
    let mut push = |item: Result<Item<'_>, redb::StorageError>| {
        let (key, value) = item?;
        out.push((key.value().to_vec(), value.value().to_vec()));
        Ok::<_, redb::StorageError>(())
    };
    if reverse {
        for item in iter.rev().take(limit) {
            push(item)?;
        }
    } else {
        for item in iter.take(limit) {
            push(item)?;
        }
    }
    Ok(out)
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(key.as_slice()),
        Bound::Excluded(key) => Bound::Excluded(key.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The state tables opened in one write transaction: what one batch of commands is applied to.
pub struct WriteKv<'txn> {
    tables: Vec<redb::Table<'txn, &'static [u8], &'static [u8]>>,
    members: Option<&'txn MemberCache>,
}

impl std::fmt::Debug for WriteKv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteKv").finish_non_exhaustive()
    }
}

impl<'txn> WriteKv<'txn> {
    /// Opens (creating if needed) every state table in `txn`.
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, redb::Error> {
        let tables =
            Table::ALL.iter().map(|t| txn.open_table(definition(*t))).collect::<Result<_, _>>()?;
        Ok(WriteKv { tables, members: None })
    }

    /// The same, with the state machine's cache of member lists, which the machine keeps in
    /// step with the tables.
    pub fn with_member_cache(mut self, members: &'txn MemberCache) -> Self {
        self.members = Some(members);
        self
    }

    fn table(&self, table: Table) -> &redb::Table<'txn, &'static [u8], &'static [u8]> {
        &self.tables[index(table)]
    }
}

fn index(table: Table) -> usize {
    Table::ALL.iter().position(|t| *t == table).unwrap_or_default()
}

impl KvRead for WriteKv<'_> {
    type Error = redb::Error;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        Ok(self.table(table).get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        range: KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, redb::Error> {
        scan_table(self.table(table), &range, reverse, limit)
    }

    fn member_cache(&self) -> Option<&MemberCache> {
        self.members
    }
}

impl Kv for WriteKv<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), redb::Error> {
        self.tables[index(table)].insert(key, value)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), redb::Error> {
        self.tables[index(table)].remove(key)?;
        Ok(())
    }
}

/// The state tables as of one read transaction: a consistent view for queries and snapshots.
pub struct ReadKv {
    tables: Vec<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl std::fmt::Debug for ReadKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadKv").finish_non_exhaustive()
    }
}

impl ReadKv {
    /// Opens every state table of `db` as of now. The tables exist: the state machine creates
    /// them when it opens the database.
    pub fn open(db: &redb::Database) -> Result<Self, redb::Error> {
        let txn = db.begin_read()?;
        Self::from_txn(&txn)
    }

    /// Opens every state table in an existing read transaction.
    pub fn from_txn(txn: &redb::ReadTransaction) -> Result<Self, redb::Error> {
        let tables =
            Table::ALL.iter().map(|t| txn.open_table(definition(*t))).collect::<Result<_, _>>()?;
        Ok(ReadKv { tables })
    }

    /// Every entry of a table, in key order, for snapshots.
    pub fn iter(
        &self,
        table: Table,
    ) -> Result<redb::Range<'_, &'static [u8], &'static [u8]>, redb::Error> {
        Ok(self.tables[index(table)].iter()?)
    }
}

impl KvRead for ReadKv {
    type Error = redb::Error;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        Ok(self.tables[index(table)].get(key)?.map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        range: KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, redb::Error> {
        scan_table(&self.tables[index(table)], &range, reverse, limit)
    }
}

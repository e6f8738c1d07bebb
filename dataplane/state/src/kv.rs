//! The storage the state machine runs on: named tables of ordered byte keys.
//!
//! Keeping the interface this small lets the sequencer put the state in an embedded database
//! and lets tests use [`MemKv`], with the same machine code on both, and makes a snapshot a
//! plain dump of every table.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Bound;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::MemberCache;

/// The tables of the state. Their names are part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Cluster-wide settings (the policy).
    Meta,
    /// `conv` -> [`crate::model::ConvMeta`].
    Convs,
    /// `conv \0 user` -> [`crate::model::Member`].
    Members,
    /// `user \0 conv` -> empty: the conversations of a user, for `sync`.
    UserConvs,
    /// `conv \0 seq (u64 big-endian)` -> [`dolphin_protocol::Message`].
    Messages,
    /// `sender \0 conv \0 cid` -> seq (u64 big-endian), for the newest messages of each
    /// conversation.
    Dedupe,
    /// `a \0 b` (the two user ids sorted) -> [`crate::friends::Pair`]: the friendship of two
    /// users, kept in the shard of their direct conversation.
    Friends,
    /// `user \0 other` -> [`crate::friends::Link`]: one user's view of the friend graph, kept
    /// in the user's shard.
    FriendLinks,
    /// Outbox number (u64 big-endian) -> a [`crate::Command`] for another shard, waiting to be
    /// forwarded by the leader.
    Outbox,
    /// `author \0 moment key` -> [`crate::moments::Moment`], in the author's shard.
    Moments,
    /// `file \0 conv` -> empty: the conversations in which a message names a file, for
    /// download permissions ([`crate::files`]).
    FileConvs,
}

impl Table {
    /// Every table, in a fixed order (the order of snapshot dumps).
    pub const ALL: [Table; 11] = [
        Table::Meta,
        Table::Convs,
        Table::Members,
        Table::UserConvs,
        Table::Messages,
        Table::Dedupe,
        Table::Friends,
        Table::FriendLinks,
        Table::Outbox,
        Table::Moments,
        Table::FileConvs,
    ];

    /// The table's stable name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Convs => "convs",
            Table::Members => "members",
            Table::UserConvs => "user_convs",
            Table::Messages => "messages",
            Table::Dedupe => "dedupe",
            Table::Friends => "friends",
            Table::FriendLinks => "friend_links",
            Table::Outbox => "outbox",
            Table::Moments => "moments",
            Table::FileConvs => "file_convs",
        }
    }
}

/// A key range for [`KvRead::scan`].
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Key-value pairs read by a scan.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Reading the state.
pub trait KvRead {
    /// What a failing store reports (I/O, corruption).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The value under `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Up to `limit` entries of `range`, ascending, or descending when `reverse`.
    fn scan(
        &self,
        table: Table,
        range: KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, Self::Error>;

    /// The cache of member lists this store keeps beside its tables, if any
    /// ([`crate::cache`]).
    fn member_cache(&self) -> Option<&MemberCache> {
        None
    }
}

/// Writing the state.
pub trait Kv: KvRead {
    /// Sets `key` to `value`.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;

    /// Removes `key` if present.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), Self::Error>;
}

/// An in-memory store, for tests and property checks.
#[derive(Debug, Default)]
pub struct MemKv {
    tables: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
    members: Option<Arc<MemberCache>>,
}

impl Clone for MemKv {
    /// A copy of the tables; a copy that keeps a cache gets its own, as the two may diverge.
    fn clone(&self) -> Self {
        let members = self.members.as_ref().map(|_| Arc::new(MemberCache::keeping_from(1)));
        MemKv { tables: self.tables.clone(), members }
    }
}

/// Two stores are equal when their tables are: a cache holds nothing the tables do not.
impl PartialEq for MemKv {
    fn eq(&self, other: &Self) -> bool {
        self.tables == other.tables
    }
}

impl Eq for MemKv {}

impl MemKv {
    /// An empty store that keeps a member cache, as the sequencer's does, of every list
    /// however small, so that tests with few users exercise it.
    pub fn with_member_cache() -> Self {
        MemKv { tables: BTreeMap::new(), members: Some(Arc::new(MemberCache::keeping_from(1))) }
    }

    /// Every entry of every table, for comparing two states.
    pub fn dump(&self) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
        self.tables
            .iter()
            .flat_map(|(t, m)| m.iter().map(move |(k, v)| (*t, k.clone(), v.clone())))
            .collect()
    }
}

impl KvRead for MemKv {
    type Error = Infallible;

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.tables.get(&table).and_then(|m| m.get(key)).cloned())
    }

    fn scan(
        &self,
        table: Table,
        range: KeyRange,
        reverse: bool,
        limit: usize,
    ) -> Result<Entries, Infallible> {
        let Some(map) = self.tables.get(&table) else { return Ok(Vec::new()) };
        let iter = map.range::<Vec<u8>, _>(range).map(|(k, v)| (k.clone(), v.clone()));
        Ok(if reverse { iter.rev().take(limit).collect() } else { iter.take(limit).collect() })
    }

    fn member_cache(&self) -> Option<&MemberCache> {
        self.members.as_deref()
    }
}

impl Kv for MemKv {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), Infallible> {
        self.tables.entry(table).or_default().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), Infallible> {
        if let Some(map) = self.tables.get_mut(&table) {
            map.remove(key);
        }
        Ok(())
    }
}

/// A key of two string parts, ordered by the first then the second. Ids never hold `\0`.
pub fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 1 + b.len());
    key.extend_from_slice(a.as_bytes());
    key.push(0);
    key.extend_from_slice(b.as_bytes());
    key
}

/// A key of a string and a number, ordered by the string then the number.
pub fn seq_key(a: &str, n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + 9);
    key.extend_from_slice(a.as_bytes());
    key.push(0);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Every key that begins with `a \0`.
pub fn prefix_range(a: &str) -> KeyRange {
    let mut start = a.as_bytes().to_vec();
    start.push(0);
    let mut end = a.as_bytes().to_vec();
    end.push(1);
    (Bound::Included(start), Bound::Excluded(end))
}

/// The part after the `\0` of a two-part key.
pub fn second_part(key: &[u8]) -> &[u8] {
    key.iter().position(|&b| b == 0).map_or(&[], |i| &key[i + 1..])
}

/// Encodes a stored value (MessagePack with field names, so fields can be added later).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec fails only for types serde cannot represent, which none of the
    // stored types are.
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// Decodes a stored value, or reports it as corrupt.
pub(crate) fn decode<T: DeserializeOwned>(
    table: Table,
    bytes: &[u8],
) -> Result<T, crate::machine::CorruptValue> {
    rmp_serde::from_slice(bytes).map_err(|error| crate::machine::CorruptValue {
        table: table.name(),
        reason: error.to_string(),
    })
}

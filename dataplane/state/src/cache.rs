//! Member lists kept decoded beside the tables, so that a message to a large group does not read
//! every member's row again.
//!
//! Every message is pushed to every member of its conversation, so applying one to a group of a
//! thousand reads a thousand rows and makes a thousand strings; a profile of the fan-out
//! benchmark put about a tenth of the server's CPU there. A store may keep a [`MemberCache`] and
//! hand it to the state machine through [`crate::KvRead`]; the machine offers every list it
//! reads and tells the cache when a membership changes, so the cache only ever holds what the
//! tables hold, and applying a command gives the same result with or without it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Conversations with fewer members are read from the tables every time: cheap enough, and
/// caching every direct conversation would grow the cache with the number of pairs.
pub const MIN_CACHED_MEMBERS: usize = 16;

/// The most conversations kept; past it the cache starts again empty, which bounds its memory
/// without bookkeeping on the path of every message.
pub const MAX_CACHED_CONVS: usize = 4096;

/// Decoded member lists by conversation.
#[derive(Debug)]
pub struct MemberCache {
    lists: Mutex<HashMap<String, Arc<[String]>>>,
    min_members: usize,
}

impl Default for MemberCache {
    fn default() -> Self {
        MemberCache::keeping_from(MIN_CACHED_MEMBERS)
    }
}

impl MemberCache {
    /// A cache of the lists of at least `min_members` members (tests keep every list, to
    /// exercise the cache with small groups).
    pub fn keeping_from(min_members: usize) -> Self {
        MemberCache { lists: Mutex::default(), min_members }
    }

    fn lists(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<[String]>>> {
        // Only ever held for one map operation; a panic cannot leave the map half-changed.
        self.lists.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The members of `conv`, if kept.
    pub fn get(&self, conv: &str) -> Option<Arc<[String]>> {
        self.lists().get(conv).cloned()
    }

    /// Keeps the members of `conv` just read from the tables, if the list is worth keeping.
    pub fn offer(&self, conv: &str, members: &Arc<[String]>) {
        if members.len() < self.min_members {
            return;
        }
        let mut lists = self.lists();
        if lists.len() >= MAX_CACHED_CONVS {
            lists.clear();
        }
        lists.insert(conv.to_owned(), members.clone());
    }

    /// Forgets the members of `conv`: they changed.
    pub fn forget(&self, conv: &str) {
        self.lists().remove(conv);
    }

    /// Forgets everything: the tables were replaced (a snapshot) or a write failed.
    pub fn clear(&self) {
        self.lists().clear();
    }

    /// Conversations kept, for tests.
    pub fn len(&self) -> usize {
        self.lists().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

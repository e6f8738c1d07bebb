//! Which conversations name which files: the index behind file download permissions.
//!
//! A message of kind image, file, audio or video names a stored file. When such a message is
//! ordered, the pair (file, conversation) is recorded in the conversation's shard, so that a
//! download can ask every shard whether the downloader belongs to a conversation naming the
//! file. The index only grows: a recalled message keeps its file readable to the members, who
//! may already have downloaded it.

use dolphin_protocol::Body;

use crate::kv::{Kv, KvRead, Table, pair_key, prefix_range, second_part};
use crate::machine::{StateError, StateResult, member};

/// How many conversations naming one file are read from the store at a time while checking a
/// download, so that a file shared in many conversations never loads them all at once.
const SCAN_PAGE: usize = 256;

/// Records that a message of `conv` with `body` names its file, if it names one.
pub fn record<K: Kv>(kv: &mut K, conv: &str, body: &Body) -> StateResult<(), K> {
    let Some(file) = body.file() else { return Ok(()) };
    kv.put(Table::FileConvs, &pair_key(file, conv), &[]).map_err(StateError::Store)
}

/// Whether `user` is now a member of a conversation of this shard in which a message names
/// `file`.
///
/// Membership is read as it is now: a member who joined after the message was sent may read
/// the file (as they may fetch the message from the seq they joined at on, a file shared
/// earlier travels with the conversation), and a removed member may not.
pub fn may_read<K: KvRead>(kv: &K, user: &str, file: &str) -> StateResult<bool, K> {
    let (mut start, end) = prefix_range(file);
    loop {
        let page = kv
            .scan(Table::FileConvs, (start, end.clone()), false, SCAN_PAGE)
            .map_err(StateError::Store)?;
        for (key, _) in &page {
            let conv = String::from_utf8_lossy(second_part(key));
            if member(kv, &conv, user)?.is_some() {
                return Ok(true);
            }
        }
        match page.last() {
            Some((last, _)) if page.len() == SCAN_PAGE => {
                start = std::ops::Bound::Excluded(last.clone());
            }
            _ => return Ok(false),
        }
    }
}

/// The conversations of this shard in which a message names `file`, in id order.
pub fn convs_naming<K: KvRead>(kv: &K, file: &str) -> StateResult<Vec<String>, K> {
    let entries = kv
        .scan(Table::FileConvs, prefix_range(file), false, usize::MAX)
        .map_err(StateError::Store)?;
    Ok(entries
        .iter()
        .map(|(key, _)| String::from_utf8_lossy(second_part(key)).into_owned())
        .collect())
}

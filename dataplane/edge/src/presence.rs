//! Presence: a user's friends see them come online and go offline, across edges, without
//! anything written to a shard's log.
//!
//! Each edge announces on the notice bus when a user's first device connects to it and when
//! the last one has been gone for the debounce period (so a reconnecting phone does not
//! flicker). Every edge keeps, per user, the set of edges that announced them online; a user
//! is online while that set is not empty, and the friends connected to an edge are pushed
//! `presence` when that changes. Announcements carry the user's friends (read from the
//! user's shard by the announcing edge), so that no other edge needs to look them up.
//!
//! NOTE: an edge that dies without announcing leaves its users shown online on the other
//! edges until they connect again somewhere and leave; a periodic re-announcement with
//! expiry would lift this.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolphin_protocol::{Presence, ServerFrame};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::frame::SharedFrame;
use crate::handler::{Context, Notice};

/// How long the last device of a user must stay away before friends see them offline.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);

/// One edge's announcement about one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub user: String,
    /// The announcing edge's id, random per process.
    pub edge: u64,
    pub online: bool,
    /// Who is told.
    pub friends: Vec<String>,
}

/// Where each user is online, as announced by every edge.
#[derive(Debug, Default)]
pub struct Directory {
    edges_of: Mutex<HashMap<String, HashSet<u64>>>,
}

impl Directory {
    /// Records an announcement; `Some(online)` when it changed whether the user is online.
    pub fn record(&self, announcement: &Announcement) -> Option<bool> {
        let mut edges_of = self.edges_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let edges = edges_of.entry(announcement.user.clone()).or_default();
        let before = !edges.is_empty();
        if announcement.online {
            edges.insert(announcement.edge);
        } else {
            edges.remove(&announcement.edge);
        }
        let after = !edges.is_empty();
        if edges.is_empty() {
            edges_of.remove(&announcement.user);
        }
        (before != after).then_some(after)
    }

    /// Whether any edge announced `user` online.
    pub fn is_online(&self, user: &str) -> bool {
        let edges_of = self.edges_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        edges_of.contains_key(user)
    }
}

/// A device of `user` connected here: announces the user (every edge ignores an
/// announcement that changes nothing, so devices connecting at once need no coordination),
/// and tells the user which friends are online.
pub async fn connected(ctx: Arc<Context>, user: String) {
    let Some(friends) = friends_of(&ctx, &user).await else { return };
    let online: Vec<&String> = friends.iter().filter(|f| ctx.presence.is_online(f)).collect();
    for friend in online {
        let push = Presence { user: friend.clone(), online: true };
        let frame = Arc::new(SharedFrame::new(ServerFrame::Presence(push)));
        ctx.sessions.deliver([user.as_str()], &frame, None);
    }
    announce(&ctx, user, true, friends).await;
}

/// A device of `user` left; once none has come back for the debounce period, announces the
/// user offline here.
pub async fn disconnected(ctx: Arc<Context>, user: String) {
    if ctx.sessions.devices_of(&user) != 0 {
        return;
    }
    tokio::time::sleep(ctx.config.presence_debounce).await;
    if ctx.sessions.devices_of(&user) != 0 {
        return;
    }
    let Some(friends) = friends_of(&ctx, &user).await else { return };
    announce(&ctx, user, false, friends).await;
}

async fn friends_of(ctx: &Context, user: &str) -> Option<Vec<String>> {
    match crate::social::friend_list(ctx, user).await {
        Ok(list) => Some(list.friends),
        Err(error) => {
            debug!(%error, "presence not announced: the friend list is unavailable");
            None
        }
    }
}

async fn announce(ctx: &Context, user: String, online: bool, friends: Vec<String>) {
    let notice = Notice::Presence(Announcement { user, edge: ctx.edge_id, online, friends });
    // Presence is best effort, like typing: an announcement the bus cannot take is dropped.
    if let Ok(bytes) = rmp_serde::to_vec_named(&notice)
        && let Err(error) = ctx.queue.publish(bytes.into()).await
    {
        debug!(%error, "a presence announcement was dropped");
    }
}

/// Applies an announcement from any edge and pushes the change to the friends here.
pub fn deliver(ctx: &Context, announcement: Announcement) {
    let Some(online) = ctx.presence.record(&announcement) else { return };
    let push = Presence { user: announcement.user, online };
    let frame = Arc::new(SharedFrame::new(ServerFrame::Presence(push)));
    ctx.sessions.deliver(announcement.friends.iter().map(String::as_str), &frame, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(user: &str, edge: u64, online: bool) -> Announcement {
        Announcement { user: user.into(), edge, online, friends: vec![] }
    }

    #[test]
    fn a_user_is_online_while_any_edge_says_so() {
        let directory = Directory::default();
        assert_eq!(directory.record(&said("alice", 1, true)), Some(true));
        assert_eq!(directory.record(&said("alice", 2, true)), None);
        assert_eq!(directory.record(&said("alice", 1, false)), None);
        assert!(directory.is_online("alice"));
        assert_eq!(directory.record(&said("alice", 2, false)), Some(false));
        assert!(!directory.is_online("alice"));
        assert_eq!(directory.record(&said("alice", 2, false)), None);
    }
}

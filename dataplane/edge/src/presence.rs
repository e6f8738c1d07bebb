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
//! An edge that dies cannot announce its users offline, so every edge also repeats, every
//! beat period, which users it holds; an edge not heard of for [`EXPIRE_AFTER_BEATS`] periods
//! no longer counts, and the users it alone held go offline for their friends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dolphin_protocol::{Presence, ServerFrame};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::frame::SharedFrame;
use crate::handler::{Context, Notice};

/// How long the last device of a user must stay away before friends see them offline.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);

/// How often an edge repeats which users it holds.
pub const DEFAULT_BEAT: Duration = Duration::from_secs(10);

/// Beat periods without word from an edge after which its users no longer count as online
/// through it: a few, so that one lost notice does not flicker anyone offline.
pub const EXPIRE_AFTER_BEATS: u32 = 3;

/// An edge's repetition of the users connected to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub edge: u64,
    pub users: Vec<String>,
}

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

/// Where each user is online, as announced by every edge, with when each edge last said so.
#[derive(Debug, Default)]
pub struct Directory {
    edges_of: Mutex<HashMap<String, HashMap<u64, Instant>>>,
}

impl Directory {
    fn edges_of(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Instant>>> {
        // Held for one map operation at a time; a panic cannot leave the map half-changed.
        self.edges_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an announcement; `Some(online)` when it changed whether the user is online.
    pub fn record(&self, announcement: &Announcement) -> Option<bool> {
        let mut edges_of = self.edges_of();
        let edges = edges_of.entry(announcement.user.clone()).or_default();
        let before = !edges.is_empty();
        if announcement.online {
            edges.insert(announcement.edge, Instant::now());
        } else {
            edges.remove(&announcement.edge);
        }
        let after = !edges.is_empty();
        if edges.is_empty() {
            edges_of.remove(&announcement.user);
        }
        (before != after).then_some(after)
    }

    /// Records that `beat.edge` still holds its users. A user it holds without having been
    /// announced (a notice lost, or this edge started later) is taken as online silently.
    pub fn beat(&self, beat: &Beat) {
        let now = Instant::now();
        let mut edges_of = self.edges_of();
        for user in &beat.users {
            edges_of.entry(user.clone()).or_default().insert(beat.edge, now);
        }
    }

    /// Forgets what edges not heard of since `before` said; returns the users now offline.
    pub fn expire(&self, before: Instant) -> Vec<String> {
        let mut offline = Vec::new();
        self.edges_of().retain(|user, edges| {
            edges.retain(|_, said| *said >= before);
            if edges.is_empty() {
                offline.push(user.clone());
            }
            !edges.is_empty()
        });
        offline
    }

    /// Whether any edge announced `user` online.
    pub fn is_online(&self, user: &str) -> bool {
        self.edges_of().contains_key(user)
    }
}

/// Repeats this edge's users every beat period, and turns offline the users of edges gone
/// silent, until `shutdown`.
pub async fn beat(ctx: Arc<Context>, shutdown: tokio_util::sync::CancellationToken) {
    let period = ctx.config.presence_beat;
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let notice = Notice::PresenceBeat(Beat { edge: ctx.edge_id, users: ctx.sessions.users() });
        if let Ok(bytes) = rmp_serde::to_vec_named(&notice)
            && let Err(error) = ctx.queue.publish(bytes.into()).await
        {
            debug!(%error, "a presence beat was dropped");
        }
        let Some(before) = Instant::now().checked_sub(period * EXPIRE_AFTER_BEATS) else {
            continue;
        };
        for user in ctx.presence.expire(before) {
            tokio::spawn(tell_offline(ctx.clone(), user));
        }
    }
}

/// Tells the friends of `user` connected here that the user went offline with a silent edge.
async fn tell_offline(ctx: Arc<Context>, user: String) {
    let Some(friends) = friends_of(&ctx, &user).await else { return };
    let push = Presence { user, online: false };
    let frame = Arc::new(SharedFrame::new(ServerFrame::Presence(push)));
    ctx.sessions.deliver(friends.iter().map(String::as_str), &frame, None);
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

    #[test]
    fn an_edge_gone_silent_takes_its_users_offline_and_no_one_else() {
        let directory = Directory::default();
        directory.record(&said("alice", 1, true));
        directory.record(&said("bob", 1, true));
        directory.record(&said("bob", 2, true));
        let cut = Instant::now();
        directory.beat(&Beat { edge: 2, users: vec!["bob".into(), "carol".into()] });
        assert_eq!(directory.expire(cut), ["alice"]);
        assert!(directory.is_online("bob") && directory.is_online("carol"));
        assert!(!directory.is_online("alice"));
    }

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

//! The devices connected to this edge, by user, and delivery to them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dolphin_protocol::Encoding;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::frame::{Pushes, SharedFrame};

/// One connected device.
#[derive(Debug)]
struct Session {
    id: u64,
    device: String,
    push: mpsc::Sender<Pushes>,
    /// Cancelled to disconnect the device (its push queue overflowed).
    kick: CancellationToken,
    encoding: Encoding,
}

/// What one delivery reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Connections the frame was queued for.
    pub queued: usize,
    /// Connections disconnected because their queue was full.
    pub overflowed: usize,
}

/// The devices of each user connected here.
#[derive(Debug, Default)]
pub struct Sessions {
    by_user: RwLock<HashMap<String, Vec<Session>>>,
    next_id: AtomicU64,
    online: AtomicU64,
}

impl Sessions {
    /// Registers a connected device; returns its session id for [`Sessions::remove`].
    pub fn add(
        &self,
        user: &str,
        device: &str,
        encoding: Encoding,
        push: mpsc::Sender<Pushes>,
        kick: CancellationToken,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let session = Session { id, device: device.to_owned(), push, kick, encoding };
        self.write().entry(user.to_owned()).or_default().push(session);
        self.online.fetch_add(1, Ordering::Relaxed);
        id
    }

    /// Forgets a session.
    pub fn remove(&self, user: &str, id: u64) {
        let mut by_user = self.write();
        if let Some(sessions) = by_user.get_mut(user) {
            let before = sessions.len();
            sessions.retain(|s| s.id != id);
            if sessions.len() < before {
                self.online.fetch_sub(1, Ordering::Relaxed);
            }
            if sessions.is_empty() {
                by_user.remove(user);
            }
        }
    }

    /// Connected sessions.
    pub fn count(&self) -> u64 {
        self.online.load(Ordering::Relaxed)
    }

    /// Every user with a device connected here.
    pub fn users(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many connections `user` has here.
    pub fn devices_of(&self, user: &str) -> usize {
        self.read().get(user).map_or(0, Vec::len)
    }

    /// Whether `user` has a device connected here.
    pub fn is_online(&self, user: &str) -> bool {
        self.read().contains_key(user)
    }

    /// Queues `frame` for every device of every user in `users`, except the device `skip`
    /// names. A device whose queue is full is disconnected rather than allowed to slow
    /// delivery to the others or to grow memory; it catches up when it reconnects.
    pub fn deliver<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        frame: &Arc<SharedFrame>,
        skip: Option<(&str, &str)>,
    ) -> Delivered {
        self.deliver_all(users, &Pushes::from([frame.clone()]), skip)
    }

    /// Queues `frames`, in their order, as one push for every device of every user in
    /// `users` except `skip`, with the overflow rule of [`Sessions::deliver`].
    pub fn deliver_all<'a>(
        &self,
        users: impl IntoIterator<Item = &'a str>,
        frames: &Pushes,
        skip: Option<(&str, &str)>,
    ) -> Delivered {
        let by_user = self.read();
        let mut delivered = Delivered::default();
        for user in users {
            let Some(sessions) = by_user.get(user) else { continue };
            for session in sessions {
                if skip.is_some_and(|(u, d)| u == user && d == session.device) {
                    continue;
                }
                match session.push.try_send(frames.clone()) {
                    Ok(()) => delivered.queued += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        session.kick.cancel();
                        delivered.overflowed += 1;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        delivered
    }

    /// Queues `frame` for the connections of one device of `user`, with the same overflow
    /// rule as [`Sessions::deliver`].
    pub fn deliver_to_device(&self, user: &str, device: &str, frame: &Arc<SharedFrame>) {
        let by_user = self.read();
        let sessions = by_user.get(user).into_iter().flatten();
        let frames = Pushes::from([frame.clone()]);
        for session in sessions.filter(|s| s.device == device) {
            if let Err(mpsc::error::TrySendError::Full(_)) = session.push.try_send(frames.clone()) {
                session.kick.cancel();
            }
        }
    }

    /// Disconnects every device, so that each reconnects and catches up.
    pub fn kick_all(&self) {
        for session in self.read().values().flatten() {
            session.kick.cancel();
        }
    }

    /// How many connected sessions use each encoding, for metrics.
    pub fn encodings(&self) -> (usize, usize) {
        let by_user = self.read();
        let all = by_user.values().flatten();
        all.fold((0, 0), |(json, msgpack), s| match s.encoding {
            Encoding::Json => (json + 1, msgpack),
            Encoding::MsgPack => (json, msgpack + 1),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vec<Session>>> {
        // Never held across an await, and every write leaves the map consistent.
        self.by_user.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<Session>>> {
        self.by_user.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

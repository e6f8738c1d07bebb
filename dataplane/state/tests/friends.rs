//! The friend graph across shards: whatever the order of requests, accepts and removals on a
//! pair's shard, and however its outbox forwards reach the users' shards (repeated, out of
//! order), each user's view ends at the pair's final state and each change is told once.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use dolphin_protocol::FriendEvent;
use dolphin_state::friends::{self, LinkState, PairState};
use dolphin_state::{Command, Event, MemKv, Outcome, apply};
use proptest::prelude::*;

const A: &str = "ann";
const B: &str = "ben";

fn step() -> impl Strategy<Value = Command> {
    let who = prop::sample::select(vec![(A, B), (B, A)]);
    (who, 0..3u8).prop_map(|((me, other), op)| {
        let (user, friend) = (me.to_owned(), other.to_owned());
        match op {
            0 => Command::FriendRequest { from: user, to: friend, ts: 0 },
            1 => Command::FriendAccept { user, friend, ts: 0 },
            _ => Command::FriendRemove { user, friend, ts: 0 },
        }
    })
}

/// Applies `steps` on the pair's shard and returns what its outbox holds, in order.
fn on_pair_shard(steps: &[Command]) -> (MemKv, Vec<Command>) {
    let mut kv = MemKv::default();
    for step in steps {
        apply(&mut kv, step).unwrap();
    }
    let outbox = friends::outbox(&kv, usize::MAX).unwrap();
    (kv, outbox.into_iter().map(|(_, command)| command).collect())
}

fn expected(state: &PairState, user: &str) -> LinkState {
    match state {
        PairState::None => LinkState::None,
        PairState::Friends => LinkState::Friend,
        PairState::Requested { by } if by == user => LinkState::Outgoing,
        PairState::Requested { .. } => LinkState::Incoming,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn views_end_at_the_pairs_state_whatever_the_forwarding_order(
        steps in prop::collection::vec(step(), 1..20),
        shuffle in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let (pair_kv, outbox) = on_pair_shard(&steps);
        let pair = friends::pair(&pair_kv, A, B).unwrap();

        // The users' shards get every forward at least once, some twice, in a shuffled order.
        let mut forwards = outbox.clone();
        for index in &shuffle {
            if !outbox.is_empty() {
                forwards.push(index.get(&outbox).clone());
            }
        }
        let len = forwards.len();
        if len > 0 {
            for (i, index) in shuffle.iter().enumerate() {
                forwards.swap(i % len, index.index(len));
            }
        }
        let mut users_kv = MemKv::default();
        for forward in &forwards {
            apply(&mut users_kv, forward).unwrap();
        }

        prop_assert_eq!(friends::link(&users_kv, A, B).unwrap(), expected(&pair.state, A));
        prop_assert_eq!(friends::link(&users_kv, B, A).unwrap(), expected(&pair.state, B));
    }

    #[test]
    fn a_repeated_forward_tells_nothing_more(
        steps in prop::collection::vec(step(), 1..20),
    ) {
        let (_, outbox) = on_pair_shard(&steps);
        let tell = |times: usize| {
            let mut users_kv = MemKv::default();
            let mut told = Vec::new();
            for forward in &outbox {
                for _ in 0..times {
                    let applied = apply(&mut users_kv, forward).unwrap();
                    assert_eq!(applied.outcome, Outcome::Done);
                    told.extend(applied.events);
                }
            }
            (users_kv.dump(), told)
        };
        prop_assert_eq!(tell(1), tell(2));
    }
}

#[test]
fn a_request_then_an_accept_owes_both_users_their_views_and_tells_both() {
    let (pair_kv, outbox) = on_pair_shard(&[
        Command::FriendRequest { from: A.into(), to: B.into(), ts: 1 },
        Command::FriendAccept { user: B.into(), friend: A.into(), ts: 2 },
    ]);
    assert!(friends::are_friends(&pair_kv, A, B).unwrap());
    assert_eq!(outbox.len(), 4, "two changes, each owed to two users: {outbox:?}");

    let mut users_kv = MemKv::default();
    let events: Vec<Event> =
        outbox.iter().flat_map(|c| apply(&mut users_kv, c).unwrap().events).collect();
    let told: Vec<(&str, FriendEvent, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Friend { user, push } => Some((user.as_str(), push.event, push.user.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        [
            (B, FriendEvent::Request, A),
            (B, FriendEvent::Accepted, A),
            (A, FriendEvent::Accepted, B),
        ]
    );
    let list = friends::list(&users_kv, A).unwrap();
    assert_eq!(list.friends, [B]);
}

#[test]
fn forwarded_entries_are_forgotten_once_done() {
    let mut kv = MemKv::default();
    apply(&mut kv, &Command::FriendRequest { from: A.into(), to: B.into(), ts: 1 }).unwrap();
    let ids: Vec<u64> = friends::outbox(&kv, 10).unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2);
    apply(&mut kv, &Command::OutboxDone { ids: ids[..1].to_vec() }).unwrap();
    let left: Vec<u64> = friends::outbox(&kv, 10).unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(left, ids[1..]);
}

#[test]
fn a_request_to_oneself_is_refused() {
    let mut kv = MemKv::default();
    let applied = apply(&mut kv, &Command::FriendRequest { from: A.into(), to: A.into(), ts: 1 });
    assert!(matches!(applied.unwrap().outcome, Outcome::Refused(_)));
    assert!(friends::outbox(&kv, 10).unwrap().is_empty());
}

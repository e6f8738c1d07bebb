//! Properties of the state machine under any interleaving of sends, resends and membership
//! changes from many senders.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use std::collections::{BTreeMap, BTreeSet};

use dolphin_protocol::{Body, Message};
use dolphin_state::kv::prefix_range;
use dolphin_state::{Applied, Command, Event, KvRead, MemKv, Table, apply};
use proptest::prelude::*;

const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
const GROUPS: [&str; 2] = ["g:one", "g:two"];

fn user() -> impl Strategy<Value = String> {
    prop::sample::select(&USERS[..]).prop_map(str::to_owned)
}

fn conv() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&GROUPS[..]).prop_map(str::to_owned),
        (user(), user()).prop_map(|(a, b)| dolphin_protocol::ids::direct_conv(&a, &b)),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        6 => (conv(), user(), 0..8u8, 0..100i64).prop_map(|(conv, from, cid, ts)| Command::Send {
            conv,
            from,
            device: "d".into(),
            // Few distinct cids, so that resends are frequent.
            cid: format!("c{cid}"),
            body: Body::Text { text: "x".into() },
            ts,
        }),
        1 => (prop::sample::select(&GROUPS[..]), user(), prop::collection::vec(user(), 0..3))
            .prop_map(|(conv, owner, members)| Command::GroupCreate {
                conv: conv.into(),
                owner,
                device: "d".into(),
                title: "t".into(),
                members,
                ts: 0,
            }),
        1 => (prop::sample::select(&GROUPS[..]), user(), prop::collection::vec(user(), 1..3))
            .prop_map(|(conv, user, members)| Command::GroupAdd {
                conv: conv.into(), user, device: "d".into(), members, ts: 0,
            }),
        1 => (prop::sample::select(&GROUPS[..]), user(), prop::collection::vec(user(), 1..3))
            .prop_map(|(conv, user, members)| Command::GroupRemove {
                conv: conv.into(), user, device: "d".into(), members, ts: 0,
            }),
        1 => (prop::sample::select(&GROUPS[..]), user()).prop_map(|(conv, user)| {
            Command::GroupLeave { conv: conv.into(), user, device: "d".into(), ts: 0 }
        }),
    ]
}

fn run(commands: &[Command]) -> (MemKv, Vec<Applied>) {
    let mut kv = MemKv::default();
    let applied = commands.iter().map(|c| apply(&mut kv, c).unwrap()).collect();
    (kv, applied)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn seqs_are_dense_and_each_sender_cid_makes_one_message_per_conversation(
        commands in prop::collection::vec(command(), 1..120)
    ) {
        let (kv, applied) = run(&commands);

        // Every message ever pushed, by conversation and seq, must be unique and dense.
        let mut pushed: BTreeMap<String, BTreeMap<u64, (String, String)>> = BTreeMap::new();
        for event in applied.iter().flat_map(|a| &a.events) {
            if let Event::Message { msg, .. } = event {
                let identity = (msg.from.clone(), msg.cid.clone());
                let previous =
                    pushed.entry(msg.conv.clone()).or_default().insert(msg.seq, identity.clone());
                // A seq pushed twice (a resend) must carry the same message.
                if let Some(previous) = previous {
                    prop_assert_eq!(previous, identity);
                }
            }
        }
        let mut cids = BTreeSet::new();
        for (conv, by_seq) in &pushed {
            let seqs: Vec<u64> = by_seq.keys().copied().collect();
            let dense: Vec<u64> = (1..=seqs.len() as u64).collect();
            prop_assert_eq!(&seqs, &dense, "conv {}", conv);
            for (from, cid) in by_seq.values() {
                if !cid.starts_with("sys-") {
                    let key = (conv.clone(), from.clone(), cid.clone());
                    prop_assert!(cids.insert(key), "{from}/{cid} twice in {conv}");
                }
            }
        }

        // The store holds exactly what was pushed.
        for (conv, by_seq) in &pushed {
            let stored = kv.scan(Table::Messages, prefix_range(conv), false, usize::MAX).unwrap();
            let stored: BTreeMap<u64, (String, String)> = stored
                .iter()
                .map(|(_, v)| rmp_serde::from_slice::<Message>(v).unwrap())
                .map(|m| (m.seq, (m.from, m.cid)))
                .collect();
            prop_assert_eq!(&stored, by_seq);
        }
    }

    #[test]
    fn replaying_the_same_commands_gives_the_same_state_and_events(
        commands in prop::collection::vec(command(), 1..120)
    ) {
        let (first_kv, first) = run(&commands);
        let (second_kv, second) = run(&commands);
        prop_assert_eq!(first_kv.dump(), second_kv.dump());
        prop_assert_eq!(first, second);
    }

    #[test]
    fn a_member_cache_changes_no_state_and_no_event(
        commands in prop::collection::vec(command(), 1..120)
    ) {
        let (plain_kv, plain) = run(&commands);
        let mut cached_kv = MemKv::with_member_cache();
        let cached: Vec<Applied> =
            commands.iter().map(|c| apply(&mut cached_kv, c).unwrap()).collect();
        prop_assert_eq!(plain_kv.dump(), cached_kv.dump());
        prop_assert_eq!(plain, cached);
    }
}

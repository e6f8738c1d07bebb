//! The index of files named by messages: who may download a file, as the state sees it.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use std::collections::{BTreeMap, BTreeSet};

use dolphin_protocol::Body;
use dolphin_state::files::{convs_naming, may_read};
use dolphin_state::query::members_for;
use dolphin_state::{Applied, Command, MemKv, Outcome, apply};
use proptest::prelude::*;

const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];
const GROUPS: [&str; 2] = ["g:one", "g:two"];
const FILES: [&str; 3] = ["f_a", "f_b", "f_c"];

fn file_body(file: &str) -> Body {
    Body::File { file: file.into(), name: "report.pdf".into(), size: 10, mime: "x/y".into() }
}

fn send(kv: &mut MemKv, conv: &str, from: &str, cid: &str, body: Body) -> Applied {
    let command = Command::Send {
        conv: conv.into(),
        from: from.into(),
        device: "d".into(),
        cid: cid.into(),
        body,
        ts: 1,
    };
    apply(kv, &command).unwrap()
}

fn create(kv: &mut MemKv, conv: &str, owner: &str, members: &[&str]) {
    let command = Command::GroupCreate {
        conv: conv.into(),
        owner: owner.into(),
        device: "d".into(),
        title: "t".into(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        ts: 1,
    };
    apply(kv, &command).unwrap();
}

#[test]
fn members_of_a_conversation_whose_message_names_a_file_may_read_it() {
    let mut kv = MemKv::default();
    create(&mut kv, "g:team", "ann", &["ben"]);
    send(&mut kv, "g:team", "ann", "c1", file_body("f_1"));
    assert!(may_read(&kv, "ann", "f_1").unwrap());
    assert!(may_read(&kv, "ben", "f_1").unwrap());
    assert!(!may_read(&kv, "cat", "f_1").unwrap(), "a non-member may not read it");
    assert!(!may_read(&kv, "ann", "f_2").unwrap(), "another file is not named");
}

#[test]
fn every_kind_that_carries_a_file_names_it() {
    let mut kv = MemKv::default();
    let bodies = [
        Body::Image { file: "f_img".into(), width: 1, height: 1 },
        file_body("f_doc"),
        Body::Audio { file: "f_aud".into(), duration_ms: 1 },
        Body::Video { file: "f_vid".into(), duration_ms: 1 },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        send(&mut kv, "d:ann:ben", "ann", &format!("c{i}"), body);
    }
    for file in ["f_img", "f_doc", "f_aud", "f_vid"] {
        assert!(may_read(&kv, "ben", file).unwrap(), "{file} is readable by the other party");
    }
}

#[test]
fn a_refused_send_names_nothing() {
    let mut kv = MemKv::default();
    create(&mut kv, "g:team", "ann", &[]);
    let applied = send(&mut kv, "g:team", "cat", "c1", file_body("f_1"));
    assert!(matches!(applied.outcome, Outcome::Refused(_)));
    assert!(convs_naming(&kv, "f_1").unwrap().is_empty());
    assert!(!may_read(&kv, "ann", "f_1").unwrap());
}

#[test]
fn a_removed_member_may_no_longer_read_and_a_later_member_may() {
    let mut kv = MemKv::default();
    create(&mut kv, "g:team", "ann", &["ben"]);
    send(&mut kv, "g:team", "ann", "c1", file_body("f_1"));
    let remove = Command::GroupRemove {
        conv: "g:team".into(),
        user: "ann".into(),
        device: "d".into(),
        members: vec!["ben".into()],
        ts: 2,
    };
    apply(&mut kv, &remove).unwrap();
    assert!(!may_read(&kv, "ben", "f_1").unwrap());
    let add = Command::GroupAdd {
        conv: "g:team".into(),
        user: "ann".into(),
        device: "d".into(),
        members: vec!["cat".into()],
        ts: 3,
    };
    apply(&mut kv, &add).unwrap();
    assert!(may_read(&kv, "cat", "f_1").unwrap());
}

#[test]
fn a_file_named_in_more_conversations_than_one_scan_page_is_still_found() {
    let mut kv = MemKv::default();
    // 300 direct conversations of ann name the file; only the last one has bob in it.
    for i in 0..300 {
        send(&mut kv, &format!("d:ann:u{i:03}"), "ann", "c", file_body("f_1"));
    }
    send(&mut kv, "d:ann:zed", "ann", "c", file_body("f_1"));
    assert_eq!(convs_naming(&kv, "f_1").unwrap().len(), 301);
    assert!(may_read(&kv, "zed", "f_1").unwrap());
    assert!(!may_read(&kv, "bob", "f_1").unwrap());
}

fn command() -> impl Strategy<Value = Command> {
    let user = || prop::sample::select(&USERS[..]).prop_map(str::to_owned);
    let group = || prop::sample::select(&GROUPS[..]).prop_map(str::to_owned);
    let conv = prop_oneof![
        group(),
        (user(), user()).prop_map(|(a, b)| dolphin_protocol::ids::direct_conv(&a, &b)),
    ];
    let body = prop_oneof![
        Just(Body::Text { text: "x".into() }),
        prop::sample::select(&FILES[..]).prop_map(file_body),
    ];
    prop_oneof![
        4 => (conv, user(), 0..6u8, body).prop_map(|(conv, from, cid, body)| Command::Send {
            conv,
            from,
            device: "d".into(),
            cid: format!("c{cid}"),
            body,
            ts: 1,
        }),
        1 => (group(), user(), prop::collection::vec(user(), 0..3)).prop_map(
            |(conv, owner, members)| Command::GroupCreate {
                conv, owner, device: "d".into(), title: "t".into(), members, ts: 1,
            }
        ),
        1 => (group(), user(), prop::collection::vec(user(), 1..3)).prop_map(
            |(conv, user, members)| Command::GroupAdd {
                conv, user, device: "d".into(), members, ts: 1,
            }
        ),
        1 => (group(), user(), prop::collection::vec(user(), 1..3)).prop_map(
            |(conv, user, members)| Command::GroupRemove {
                conv, user, device: "d".into(), members, ts: 1,
            }
        ),
        1 => (group(), user()).prop_map(|(conv, user)| Command::GroupLeave {
            conv, user, device: "d".into(), ts: 1,
        }),
    ]
}

proptest! {
    /// Whatever happens, a user may read a file exactly when they are now a member of a
    /// conversation in which an ordered message names it; and two replicas applying the same
    /// commands hold the same index.
    #[test]
    fn may_read_matches_membership_of_a_conversation_that_named_the_file(
        commands in prop::collection::vec(command(), 1..60)
    ) {
        let mut kv = MemKv::default();
        let mut replica = MemKv::default();
        // The model: the conversations in which an ordered message named each file.
        let mut named: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for command in &commands {
            let applied = apply(&mut kv, command).unwrap();
            prop_assert_eq!(&applied, &apply(&mut replica, command).unwrap());
            if let (Command::Send { body, .. }, Outcome::Sent { conv, duplicate: false, .. }) =
                (command, &applied.outcome)
                && let Some(file) = body.file()
            {
                let file = FILES.iter().find(|f| **f == file).unwrap();
                named.entry(file).or_default().insert(conv.clone());
            }
        }
        prop_assert_eq!(kv.dump(), replica.dump());
        for file in FILES {
            let convs = named.get(file).cloned().unwrap_or_default();
            prop_assert_eq!(
                convs_naming(&kv, file).unwrap(),
                convs.iter().cloned().collect::<Vec<_>>()
            );
            for user in USERS {
                let expected = convs.iter().any(|conv| {
                    members_for(&kv, user, conv)
                        .unwrap()
                        .is_some_and(|members| members.iter().any(|m| m == user))
                });
                prop_assert_eq!(may_read(&kv, user, file).unwrap(), expected, "{} {}", user, file);
            }
        }
    }
}

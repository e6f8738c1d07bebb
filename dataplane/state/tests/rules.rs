//! The rules of conversations, one property per test, on the in-memory store.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

use dolphin_protocol::{Body, ErrorCode, SystemEvent};
use dolphin_state::query::{self, Direction};
use dolphin_state::{Command, DirectPolicy, Event, MemKv, Outcome, Policy, apply};

fn text(t: &str) -> Body {
    Body::Text { text: t.into() }
}

fn send(kv: &mut MemKv, conv: &str, from: &str, cid: &str) -> dolphin_state::Applied {
    let cmd = Command::Send {
        conv: conv.into(),
        from: from.into(),
        device: "phone".into(),
        cid: cid.into(),
        body: text(cid),
        ts: 1000,
    };
    apply(kv, &cmd).unwrap()
}

fn create(kv: &mut MemKv, conv: &str, owner: &str, members: &[&str]) -> dolphin_state::Applied {
    let cmd = Command::GroupCreate {
        conv: conv.into(),
        owner: owner.into(),
        device: "phone".into(),
        title: "Team".into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        ts: 1000,
    };
    apply(kv, &cmd).unwrap()
}

fn seqs(kv: &MemKv, user: &str, conv: &str) -> Vec<u64> {
    let page = query::fetch(kv, user, conv, Direction::After(0), 500).unwrap().unwrap();
    page.messages.iter().map(|m| m.seq).collect()
}

fn refusal_code(applied: &dolphin_state::Applied) -> Option<ErrorCode> {
    match &applied.outcome {
        Outcome::Refused(refusal) => Some(refusal.code),
        _ => None,
    }
}

#[test]
fn the_first_direct_message_opens_the_conversation_at_seq_one() {
    let mut kv = MemKv::default();
    let applied = send(&mut kv, "d:alice:bob", "alice", "c1");
    assert_eq!(
        applied.outcome,
        Outcome::Sent { conv: "d:alice:bob".into(), seq: 1, duplicate: false }
    );
    let Event::Message { msg, recipients } = &applied.events[0] else { panic!("no message") };
    assert_eq!(msg.seq, 1);
    assert_eq!(&recipients[..], ["alice".to_string(), "bob".to_string()]);
    assert_eq!(seqs(&kv, "bob", "d:alice:bob"), [1]);
}

#[test]
fn a_resent_cid_makes_no_second_message_and_pushes_the_first_again() {
    let mut kv = MemKv::default();
    send(&mut kv, "d:alice:bob", "alice", "c1");
    let again = send(&mut kv, "d:alice:bob", "alice", "c1");
    assert_eq!(
        again.outcome,
        Outcome::Sent { conv: "d:alice:bob".into(), seq: 1, duplicate: true }
    );
    let Event::Message { msg, recipients } = &again.events[0] else { panic!("no message") };
    assert_eq!((msg.seq, &recipients[..]), (1, &["alice".to_string(), "bob".to_string()][..]));
    assert_eq!(seqs(&kv, "alice", "d:alice:bob"), [1]);
}

#[test]
fn strangers_cannot_write_to_a_direct_conversation() {
    let mut kv = MemKv::default();
    let applied = send(&mut kv, "d:alice:bob", "carol", "c1");
    assert_eq!(refusal_code(&applied), Some(ErrorCode::NotMember));
    let Event::Rejected { user, rejected } = &applied.events[0] else { panic!("no rejection") };
    assert_eq!((user.as_str(), rejected.cid.as_str()), ("carol", "c1"));
}

#[test]
fn the_friends_policy_refuses_direct_messages_with_not_friends() {
    let mut kv = MemKv::default();
    let policy = Policy { direct_messages: DirectPolicy::Friends, ..Policy::default() };
    apply(&mut kv, &Command::SetPolicy { policy }).unwrap();
    let applied = send(&mut kv, "d:alice:bob", "alice", "c1");
    assert_eq!(refusal_code(&applied), Some(ErrorCode::NotFriends));
}

#[test]
fn group_creation_is_the_first_message_and_lists_every_member() {
    let mut kv = MemKv::default();
    let applied = create(&mut kv, "g:1", "alice", &["bob", "carol", "bob"]);
    let Outcome::Group(group) = &applied.outcome else { panic!("no group") };
    assert_eq!(group.members, ["alice", "bob", "carol"]);
    let Event::Message { msg, .. } = &applied.events[0] else { panic!("no message") };
    let Body::System(system) = &msg.body else { panic!("not a system message") };
    assert_eq!((msg.seq, system.event), (1, SystemEvent::Created));
    assert_eq!(refusal_code(&create(&mut kv, "g:1", "bob", &[])), Some(ErrorCode::BadRequest));
}

#[test]
fn sends_to_unknown_groups_and_by_non_members_are_rejected() {
    let mut kv = MemKv::default();
    assert_eq!(refusal_code(&send(&mut kv, "g:none", "alice", "c1")), Some(ErrorCode::NotFound));
    create(&mut kv, "g:1", "alice", &["bob"]);
    assert_eq!(refusal_code(&send(&mut kv, "g:1", "carol", "c1")), Some(ErrorCode::NotMember));
}

#[test]
fn membership_changes_are_ordered_among_the_messages() {
    let mut kv = MemKv::default();
    create(&mut kv, "g:1", "alice", &["bob"]);
    send(&mut kv, "g:1", "bob", "b1");
    let add = Command::GroupAdd {
        conv: "g:1".into(),
        user: "bob".into(),
        device: "d".into(),
        members: vec!["carol".into()],
        ts: 0,
    };
    apply(&mut kv, &add).unwrap();
    send(&mut kv, "g:1", "carol", "c1");
    assert_eq!(seqs(&kv, "alice", "g:1"), [1, 2, 3, 4]);
    // Carol reads from the message that added her.
    assert_eq!(seqs(&kv, "carol", "g:1"), [3, 4]);
}

#[test]
fn only_the_owner_removes_and_removed_members_lose_access() {
    let mut kv = MemKv::default();
    create(&mut kv, "g:1", "alice", &["bob", "carol"]);
    let remove = |by: &str| Command::GroupRemove {
        conv: "g:1".into(),
        user: by.into(),
        device: "d".into(),
        members: vec!["carol".into()],
        ts: 0,
    };
    assert_eq!(refusal_code(&apply(&mut kv, &remove("bob")).unwrap()), Some(ErrorCode::Forbidden));
    let applied = apply(&mut kv, &remove("alice")).unwrap();
    let Event::Message { recipients, .. } = &applied.events[0] else { panic!("no message") };
    assert!(recipients.contains(&"carol".to_string()), "the removed member hears of it");
    assert_eq!(refusal_code(&send(&mut kv, "g:1", "carol", "c1")), Some(ErrorCode::NotMember));
    let fetched = query::fetch(&kv, "carol", "g:1", Direction::After(0), 10).unwrap();
    assert_eq!(fetched.unwrap_err().code, ErrorCode::NotMember);
}

#[test]
fn an_owner_who_leaves_hands_the_group_to_the_longest_member() {
    let mut kv = MemKv::default();
    create(&mut kv, "g:1", "bob", &["carol"]);
    let add = Command::GroupAdd {
        conv: "g:1".into(),
        user: "bob".into(),
        device: "d".into(),
        members: vec!["alice".into()],
        ts: 0,
    };
    apply(&mut kv, &add).unwrap();
    let leave =
        Command::GroupLeave { conv: "g:1".into(), user: "bob".into(), device: "d".into(), ts: 0 };
    assert_eq!(apply(&mut kv, &leave).unwrap().outcome, Outcome::Done);
    let group = query::group_info(&kv, "carol", "g:1").unwrap().unwrap();
    assert_eq!(group.owner, "carol");
    assert_eq!(group.members, ["alice", "carol"]);
}

#[test]
fn read_positions_never_go_down_and_stop_at_the_newest_message() {
    let mut kv = MemKv::default();
    send(&mut kv, "d:alice:bob", "alice", "c1");
    send(&mut kv, "d:alice:bob", "alice", "c2");
    let read = |seq| Command::Read {
        conv: "d:alice:bob".into(),
        user: "bob".into(),
        device: "tab".into(),
        seq,
    };
    let applied = apply(&mut kv, &read(99)).unwrap();
    let Event::Read { push, recipients, device } = &applied.events[0] else { panic!("no read") };
    assert_eq!((push.seq, device.as_str()), (2, "tab"));
    assert_eq!(&recipients[..], ["bob".to_string(), "alice".to_string()]);
    assert!(apply(&mut kv, &read(1)).unwrap().events.is_empty());
    let page = query::sync(&kv, "bob", None, 10).unwrap();
    assert_eq!(page.items[0].read_seq, 2);
}

#[test]
fn senders_recall_their_own_messages_only() {
    let mut kv = MemKv::default();
    send(&mut kv, "d:alice:bob", "alice", "c1");
    let recall = |user: &str| Command::Recall {
        conv: "d:alice:bob".into(),
        user: user.into(),
        device: "d".into(),
        seq: 1,
        ts: 0,
    };
    assert_eq!(refusal_code(&apply(&mut kv, &recall("bob")).unwrap()), Some(ErrorCode::Forbidden));
    let applied = apply(&mut kv, &recall("alice")).unwrap();
    let Event::Message { msg, .. } = &applied.events[0] else { panic!("no message") };
    let Body::System(system) = &msg.body else { panic!("not a system message") };
    assert_eq!((msg.seq, system.event, system.seq), (2, SystemEvent::Recalled, Some(1)));
    let page = query::fetch(&kv, "bob", "d:alice:bob", Direction::After(0), 10).unwrap().unwrap();
    assert_eq!(page.messages[0].body, Body::Recalled);
    let missing = Command::Recall {
        conv: "d:alice:bob".into(),
        user: "alice".into(),
        device: "d".into(),
        seq: 9,
        ts: 0,
    };
    assert_eq!(refusal_code(&apply(&mut kv, &missing).unwrap()), Some(ErrorCode::NotFound));
}

#[test]
fn timestamps_never_go_back_along_the_seqs() {
    let mut kv = MemKv::default();
    for (cid, ts) in [("a", 5000), ("b", 4000), ("c", 6000)] {
        let cmd = Command::Send {
            conv: "d:alice:bob".into(),
            from: "alice".into(),
            device: "d".into(),
            cid: cid.into(),
            body: text(cid),
            ts,
        };
        apply(&mut kv, &cmd).unwrap();
    }
    let page = query::fetch(&kv, "bob", "d:alice:bob", Direction::After(0), 10).unwrap().unwrap();
    let ts: Vec<i64> = page.messages.iter().map(|m| m.ts).collect();
    assert_eq!(ts, [5000, 5000, 6000]);
}

#[test]
fn fetch_pages_forwards_and_backwards() {
    let mut kv = MemKv::default();
    for i in 0..10 {
        send(&mut kv, "d:alice:bob", "alice", &format!("c{i}"));
    }
    let after = query::fetch(&kv, "bob", "d:alice:bob", Direction::After(4), 3).unwrap().unwrap();
    assert_eq!(after.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(after.max_seq, 10);
    let before = query::fetch(&kv, "bob", "d:alice:bob", Direction::Before(4), 5).unwrap().unwrap();
    assert_eq!(before.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 2, 1]);
}

#[test]
fn sync_pages_through_every_conversation() {
    let mut kv = MemKv::default();
    for peer in ["b", "c", "d", "e", "f"] {
        send(&mut kv, &dolphin_protocol::ids::direct_conv("a", peer), "a", peer);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = query::sync(&kv, "a", cursor.as_deref(), 2).unwrap();
        seen.extend(page.items.iter().map(|i| i.title.clone()));
        if !page.more {
            break;
        }
        cursor = page.items.last().map(|i| i.conv.clone());
    }
    assert_eq!(seen, ["b", "c", "d", "e", "f"]);
}

#[test]
fn the_dedupe_window_forgets_only_the_oldest_cids() {
    let mut kv = MemKv::default();
    let window = dolphin_state::DEDUPE_WINDOW;
    for i in 0..=window {
        send(&mut kv, "d:alice:alice", "alice", &format!("c{i}"));
    }
    // The newest cids are recognised; the very first has left the window.
    let recent = send(&mut kv, "d:alice:alice", "alice", &format!("c{window}"));
    assert!(matches!(recent.outcome, Outcome::Sent { duplicate: true, .. }));
    let oldest = send(&mut kv, "d:alice:alice", "alice", "c0");
    assert!(matches!(oldest.outcome, Outcome::Sent { duplicate: false, .. }));
}

#[test]
fn a_cid_reused_in_another_conversation_makes_a_message_there() {
    let mut kv = MemKv::default();
    send(&mut kv, "d:alice:bob", "alice", "c1");
    let other = send(&mut kv, "d:alice:carol", "alice", "c1");
    assert_eq!(
        other.outcome,
        Outcome::Sent { conv: "d:alice:carol".into(), seq: 1, duplicate: false }
    );
    let again = send(&mut kv, "d:alice:carol", "alice", "c1");
    assert!(matches!(again.outcome, Outcome::Sent { seq: 1, duplicate: true, .. }));
}

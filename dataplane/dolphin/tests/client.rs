//! The Rust client against `dolphin dev`: catching up after a reconnect, and resending what
//! was not acknowledged with the same cid.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::time::Duration;

use dolphin_client::{CatchUp, Client, ClientConfig, ClientEvent};
use dolphin_protocol::Body;
use support::proxy::{Mode, Proxy};
use support::{Raw, Server, WAIT};
use tokio::sync::mpsc::UnboundedReceiver;

fn text(t: &str) -> Body {
    Body::Text { text: t.into() }
}

async fn next_event(events: &mut UnboundedReceiver<ClientEvent>, what: &str) -> ClientEvent {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap_or_else(|_| panic!("no event in time while waiting for {what}"))
        .expect("client task ended")
}

async fn wait_for(
    events: &mut UnboundedReceiver<ClientEvent>,
    what: &str,
    matches: impl Fn(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events, what).await;
        let done = matches(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

fn texts(events: &[ClientEvent]) -> Vec<(u64, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => match &m.body {
                Body::Text { text } => Some((m.seq, text.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn config(url: String, token: String, device: &str) -> ClientConfig {
    let mut config = ClientConfig::new(url, token, device);
    config.max_backoff = Duration::from_millis(200);
    config
}

#[tokio::test]
async fn a_client_that_was_cut_off_catches_up_in_order_and_once() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (_bob, mut events) =
        Client::connect(config(proxy.url(), server.token("bob"), "phone")).await.unwrap();
    wait_for(&mut events, "the first catch-up", |e| matches!(e, ClientEvent::CaughtUp)).await;

    let mut alice = Raw::connect(&server, "alice", "phone").await;
    alice.say("d:alice:bob", "one").await;
    let seen = wait_for(&mut events, "message one", |e| matches!(e, ClientEvent::Message(_))).await;
    assert_eq!(texts(&seen), [(1, "one".to_owned())]);

    proxy.set(Mode::Cut);
    wait_for(&mut events, "the disconnect", |e| matches!(e, ClientEvent::Disconnected { .. }))
        .await;
    for t in ["two", "three", "four"] {
        alice.say_ordered("d:alice:bob", t).await;
    }
    proxy.set(Mode::Pass);
    let seen = wait_for(&mut events, "the catch-up after reconnecting", |e| {
        matches!(e, ClientEvent::CaughtUp)
    })
    .await;
    assert_eq!(
        texts(&seen),
        [(2, "two".to_owned()), (3, "three".to_owned()), (4, "four".to_owned())]
    );

    // Pushes resume after the catch-up, still without repeats.
    alice.say("d:alice:bob", "five").await;
    let seen =
        wait_for(&mut events, "message five", |e| matches!(e, ClientEvent::Message(_))).await;
    assert_eq!(texts(&seen), [(5, "five".to_owned())]);
}

#[tokio::test]
async fn an_unacknowledged_send_is_resent_with_its_cid_and_ordered_once() {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (alice, mut events) =
        Client::connect(config(proxy.url(), server.token("alice"), "phone")).await.unwrap();
    wait_for(&mut events, "the first catch-up", |e| matches!(e, ClientEvent::CaughtUp)).await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;

    // The server takes the send, but its answer is held back and then lost with the
    // connection: the client cannot know the message is safe, and must send it again.
    proxy.set(Mode::Hold);
    let sending = tokio::spawn(async move {
        let result = alice.send_with_cid("d:alice:bob", "only-once", text("hello")).await;
        (alice, result)
    });
    let pushed = bob.next_msg().await;
    assert_eq!(pushed["cid"], "only-once");
    proxy.set(Mode::Cut);
    wait_for(&mut events, "the disconnect", |e| matches!(e, ClientEvent::Disconnected { .. }))
        .await;
    proxy.set(Mode::Pass);

    let (alice, result) =
        tokio::time::timeout(WAIT, sending).await.expect("the send never resolved").unwrap();
    result.expect("the resend was accepted");
    let page = alice.fetch_after("d:alice:bob", 0, 10).await.unwrap();
    assert_eq!(page.messages.len(), 1, "one message for one cid");
    let seen = wait_for(&mut events, "the message", |e| matches!(e, ClientEvent::Message(_))).await;
    assert_eq!(texts(&seen), [(1, "hello".to_owned())]);
}

#[tokio::test]
async fn a_fresh_client_can_catch_up_on_everything() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    for t in ["a", "b", "c"] {
        alice.say_ordered("d:alice:carol", t).await;
    }
    let mut config = config(server.url(), server.token("carol"), "tablet");
    config.catch_up = CatchUp::Everything;
    let (_carol, mut events) = Client::connect(config).await.unwrap();
    let seen = wait_for(&mut events, "the catch-up", |e| matches!(e, ClientEvent::CaughtUp)).await;
    assert_eq!(texts(&seen), [(1, "a".to_owned()), (2, "b".to_owned()), (3, "c".to_owned())]);
}

#[tokio::test]
async fn a_bad_token_fails_the_first_connection() {
    let server = Server::start().await;
    let result = Client::connect(config(server.url(), "nonsense".into(), "phone")).await;
    assert_eq!(result.unwrap_err(), dolphin_client::ClientError::Refused(401));
}

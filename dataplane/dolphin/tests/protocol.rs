//! The client protocol, frame by frame, over real WebSocket connections to `dolphin dev`.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{Raw, Server, WAIT};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn http_status(url: String) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected connection error {other}"),
    }
}

#[tokio::test]
async fn hello_names_the_user_device_epoch_and_heartbeat() {
    let server = Server::start().await;
    let alice = Raw::connect(&server, "alice", "phone").await;
    assert_eq!(alice.hello["user"], "alice");
    assert_eq!(alice.hello["device"], "phone");
    assert_eq!(alice.hello["heartbeat_ms"], 30000);
    assert!(alice.hello["epoch"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn a_missing_device_means_default() {
    let server = Server::start().await;
    let url = format!("ws://{}/v1/ws?token={}", server.addr, server.token("alice"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let Some(Ok(Message::Text(hello))) = ws.next().await else { panic!("no hello") };
    let hello: Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(hello["device"], "default");
}

#[tokio::test]
async fn bad_missing_and_expired_tokens_get_401_before_the_upgrade() {
    let server = Server::start().await;
    let base = format!("ws://{}/v1/ws", server.addr);
    assert_eq!(http_status(base.clone()).await, 401);
    assert_eq!(http_status(format!("{base}?token=garbage")).await, 401);
    let forged =
        dolphin_edge::auth::issue(b"not-the-secret", "alice", support::now_secs(), 60).unwrap();
    assert_eq!(http_status(format!("{base}?token={forged}")).await, 401);
    let expired = dolphin_edge::auth::issue(
        server.secret.as_bytes(),
        "alice",
        support::now_secs() - 7200,
        60,
    )
    .unwrap();
    assert_eq!(http_status(format!("{base}?token={expired}")).await, 401);
    let bad_device = format!("{base}?token={}&device=no%20spaces", server.token("alice"));
    assert_eq!(http_status(bad_device).await, 400);
}

#[tokio::test]
async fn a_bearer_header_authenticates_too() {
    let server = Server::start().await;
    let mut request =
        format!("ws://{}/v1/ws?device=laptop", server.addr).into_client_request().unwrap();
    let bearer = format!("Bearer {}", server.token("carol"));
    request.headers_mut().insert("Authorization", bearer.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let Some(Ok(Message::Text(hello))) = ws.next().await else { panic!("no hello") };
    assert_eq!(serde_json::from_str::<Value>(&hello).unwrap()["user"], "carol");
}

#[tokio::test]
async fn a_direct_message_is_accepted_then_pushed_to_every_device_of_both_users() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut alice_laptop = Raw::connect(&server, "alice", "laptop").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;

    alice
        .send(json!({"type":"send","rid":"r1","conv":"d:alice:bob","cid":"c-88",
            "body":{"kind":"text","text":"hi"}}))
        .await;
    let accepted = alice.recv().await;
    assert_eq!(accepted, json!({"type":"accepted","rid":"r1","cid":"c-88"}));
    let own = alice.next_msg().await;
    for msg in [own, alice_laptop.next_msg().await, bob.next_msg().await] {
        assert_eq!(msg["conv"], "d:alice:bob");
        assert_eq!(msg["seq"], 1);
        assert_eq!(msg["from"], "alice");
        assert_eq!(msg["device"], "phone");
        assert_eq!(msg["cid"], "c-88");
        assert_eq!(msg["body"], json!({"kind":"text","text":"hi"}));
        assert!(msg["ts"].as_i64().unwrap() > 1_700_000_000_000);
    }
}

#[tokio::test]
async fn seqs_grow_by_one_per_message_in_each_conversation() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    for expected in 1..=5 {
        alice.say("d:alice:bob", "x").await;
        assert_eq!(alice.next_msg().await["seq"], expected);
    }
    alice.say("d:alice:carol", "y").await;
    assert_eq!(alice.next_msg().await["seq"], 1);
}

#[tokio::test]
async fn a_repeated_cid_makes_no_second_message_and_the_first_is_pushed_again() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let send =
        json!({"type":"send","conv":"d:alice:bob","cid":"same","body":{"kind":"text","text":"1"}});
    assert_eq!(alice.call(send.clone()).await["type"], "accepted");
    let first = alice.next_msg().await;
    assert_eq!(alice.call(send).await["type"], "accepted");
    let again = alice.next_msg().await;
    assert_eq!(first, again);
    let page = alice.call(json!({"type":"fetch","conv":"d:alice:bob","after":0,"limit":10})).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_types_get_bad_request_and_the_connection_stays_open() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let reply = alice.call(json!({"type":"dance"})).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "bad_request");
    assert_eq!(alice.call(json!({"type":"ping"})).await["type"], "pong");
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_lose_nothing() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    alice.send_text("{not json").await;
    let reply = alice.recv().await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
    assert_eq!(reply["rid"], Value::Null);

    let reply = alice.call(json!({"type":"send","conv":"d:alice:bob"})).await;
    assert_eq!(reply["code"], "bad_request");
    let reply = alice
        .call(
            json!({"type":"send","conv":"d:bob:alice","cid":"c","body":{"kind":"text","text":"x"}}),
        )
        .await;
    assert_eq!(reply["code"], "bad_request", "unsorted direct ids");
    let system = json!({"kind":"system","event":"created"});
    let reply =
        alice.call(json!({"type":"send","conv":"d:alice:bob","cid":"c","body":system})).await;
    assert_eq!(reply["code"], "bad_request", "clients do not write system bodies");
    let reply = alice
        .call(json!({"type":"send","conv":"d:alice:bob","cid":"c","body":{"kind":"hologram"}}))
        .await;
    assert_eq!(reply["code"], "bad_request");
    let reply = alice
        .call(
            json!({"type":"send","conv":"d:alice:bob","cid":"","body":{"kind":"text","text":"x"}}),
        )
        .await;
    assert_eq!(reply["code"], "bad_request", "empty cid");
    alice.send(json!({"type":"ping"})).await;
    assert_eq!(alice.recv().await["code"], "bad_request", "a ping without rid");

    // Still usable, and nothing was stored by the bad frames.
    alice.say_ordered("d:alice:bob", "after").await;
    let page = alice.call(json!({"type":"fetch","conv":"d:alice:bob","after":0})).await;
    assert_eq!(page["max_seq"], 1);
}

#[tokio::test]
async fn bodies_over_64_kib_are_too_large() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let big = "x".repeat(64 * 1024);
    let reply = alice
        .call(json!({"type":"send","conv":"d:alice:bob","cid":"big",
                     "body":{"kind":"text","text":big}}))
        .await;
    assert_eq!(reply["code"], "too_large");
    let fits = "x".repeat(64 * 1024 - 40);
    let reply = alice
        .call(json!({"type":"send","conv":"d:alice:bob","cid":"fits",
                     "body":{"kind":"text","text":fits}}))
        .await;
    assert_eq!(reply["type"], "accepted");
}

#[tokio::test]
async fn frames_over_the_frame_limit_close_the_connection_with_1009() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    alice.send_text(&format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024))).await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match alice.ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return Some(u16::from(frame.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    assert_eq!(closed, Some(1009));
}

#[tokio::test]
async fn sending_faster_than_the_rate_limit_is_rate_limited() {
    let server = Server::start_with(|c| {
        c.send_rate_per_sec = 1;
        c.send_burst = 3;
    })
    .await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut codes = Vec::new();
    for i in 0..6 {
        let reply = alice
            .call(json!({"type":"send","conv":"d:alice:bob","cid":format!("c{i}"),
                         "body":{"kind":"text","text":"x"}}))
            .await;
        codes.push(reply["code"].as_str().unwrap_or(reply["type"].as_str().unwrap()).to_owned());
    }
    assert_eq!(&codes[..3], ["accepted", "accepted", "accepted"]);
    assert!(codes[3..].iter().all(|c| c == "rate_limited"), "{codes:?}");
}

#[tokio::test]
async fn strangers_writing_to_a_direct_conversation_are_rejected_not_member() {
    let server = Server::start().await;
    let mut carol = Raw::connect(&server, "carol", "phone").await;
    carol
        .send(json!({"type":"send","rid":"r1","conv":"d:alice:bob","cid":"c1",
                     "body":{"kind":"text","text":"x"}}))
        .await;
    assert_eq!(carol.recv().await, json!({"type":"accepted","rid":"r1","cid":"c1"}));
    let rejected = carol.recv().await;
    assert_eq!(rejected["type"], "rejected");
    assert_eq!(rejected["conv"], "d:alice:bob");
    assert_eq!(rejected["cid"], "c1");
    assert_eq!(rejected["code"], "not_member");
    assert!(rejected["message"].as_str().is_some());
}

#[tokio::test]
async fn the_friends_policy_rejects_direct_messages_with_not_friends() {
    let server = Server::start_with(|c| {
        c.policy.direct_messages = dolphin_state::DirectPolicy::Friends;
    })
    .await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    alice.say("d:alice:bob", "hi").await;
    let rejected = alice.recv_until(|f| f["type"] == "rejected").await.0;
    assert_eq!(rejected["code"], "not_friends");
}

#[tokio::test]
async fn groups_are_created_changed_and_described_through_ordered_system_messages() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    let mut dave = Raw::connect(&server, "dave", "phone").await;

    let group =
        alice.call(json!({"type":"group.create","title":"Team","members":["bob","carol"]})).await;
    assert_eq!(group["type"], "group");
    assert_eq!(group["title"], "Team");
    assert_eq!(group["owner"], "alice");
    assert_eq!(group["members"], json!(["alice", "bob", "carol"]));
    let conv = group["conv"].as_str().unwrap().to_owned();
    assert!(conv.starts_with("g:"));

    let created = bob.next_msg().await;
    assert_eq!(
        (created["seq"].as_u64(), created["body"]["kind"].as_str()),
        (Some(1), Some("system"))
    );
    assert_eq!(created["body"]["event"], "created");
    assert_eq!(created["body"]["users"], json!(["alice", "bob", "carol"]));

    bob.say(&conv, "hello team").await;
    assert_eq!(bob.next_msg().await["seq"], 2);

    // Any member adds; the new member reads from the message that added them.
    let reply = bob.call(json!({"type":"group.add","conv":conv,"members":["dave"]})).await;
    assert_eq!(reply["type"], "ok");
    let added = dave.next_msg().await;
    assert_eq!(
        (added["seq"].as_u64(), added["body"]["event"].as_str()),
        (Some(3), Some("member_added"))
    );
    let page = dave.call(json!({"type":"fetch","conv":conv,"after":0})).await;
    let seqs: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3]);

    // Only the owner removes.
    let reply = bob.call(json!({"type":"group.remove","conv":conv,"members":["dave"]})).await;
    assert_eq!(reply["code"], "forbidden");
    let reply = alice.call(json!({"type":"group.remove","conv":conv,"members":["dave"]})).await;
    assert_eq!(reply["type"], "ok");
    let removed = dave.next_msg().await;
    assert_eq!(removed["body"]["event"], "member_removed");
    let reply = dave.call(json!({"type":"fetch","conv":conv,"after":0})).await;
    assert_eq!(reply["code"], "not_member");
    dave.say(&conv, "still here?").await;
    let rejected = dave.recv_until(|f| f["type"] == "rejected").await.0;
    assert_eq!(rejected["code"], "not_member");

    let reply = bob.call(json!({"type":"group.leave","conv":conv})).await;
    assert_eq!(reply["type"], "ok");
    let info = alice.call(json!({"type":"group.info","conv":conv})).await;
    assert_eq!(info["type"], "group");
    assert_eq!(info["members"], json!(["alice", "carol"]));
    let left =
        alice.recv_until(|f| f["type"] == "msg" && f["body"]["event"] == "member_left").await.0;
    assert_eq!(left["body"]["users"], json!(["bob"]));
    let info = bob.call(json!({"type":"group.info","conv":conv})).await;
    assert_eq!(info["code"], "not_member");
    let missing = alice.call(json!({"type":"group.info","conv":"g:nothing"})).await;
    assert_eq!(missing["code"], "not_found");
}

#[tokio::test]
async fn sending_to_a_group_that_does_not_exist_is_rejected_not_found() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    alice.say("g:ghost", "anyone?").await;
    let rejected = alice.recv_until(|f| f["type"] == "rejected").await.0;
    assert_eq!(rejected["code"], "not_found");
}

#[tokio::test]
async fn fetch_pages_after_and_before_within_limits() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    for i in 0..10 {
        alice.say_ordered("d:alice:bob", &format!("m{i}")).await;
    }
    let page = alice.call(json!({"type":"fetch","conv":"d:alice:bob","after":4,"limit":3})).await;
    assert_eq!(page["type"], "messages");
    assert_eq!(page["conv"], "d:alice:bob");
    assert_eq!(page["max_seq"], 10);
    let seqs: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [5, 6, 7]);
    assert!(page["messages"][0].get("type").is_none(), "fetched messages carry no type");
    let page =
        alice.call(json!({"type":"fetch","conv":"d:alice:bob","before":4,"limit":100})).await;
    let seqs: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 2, 1]);

    for limit in [0, 501] {
        let reply =
            alice.call(json!({"type":"fetch","conv":"d:alice:bob","after":0,"limit":limit})).await;
        assert_eq!(reply["code"], "bad_request", "limit {limit}");
    }
    let reply = alice.call(json!({"type":"fetch","conv":"d:alice:bob","after":1,"before":5})).await;
    assert_eq!(reply["code"], "bad_request");
    let mut carol = Raw::connect(&server, "carol", "phone").await;
    let reply = carol.call(json!({"type":"fetch","conv":"d:alice:bob","after":0})).await;
    assert_eq!(reply["code"], "not_member");
    let reply = carol.call(json!({"type":"fetch","conv":"d:carol:zed","after":0})).await;
    assert_eq!((reply["type"].as_str(), reply["max_seq"].as_u64()), (Some("messages"), Some(0)));
}

#[tokio::test]
async fn sync_lists_every_conversation_across_shards_page_by_page() {
    let server = Server::start_with(|c| c.shards = 4).await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut expected = Vec::new();
    for peer in ["b1", "b2", "b3", "b4", "b5", "b6", "b7"] {
        let conv = dolphin_protocol::ids::direct_conv("alice", peer);
        alice.say_ordered(&conv, "hi").await;
        expected.push(conv);
    }
    let group = alice.call(json!({"type":"group.create","title":"G","members":[]})).await;
    expected.push(group["conv"].as_str().unwrap().to_owned());
    expected.sort();

    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = alice.call(json!({"type":"sync","limit":3,"cursor":cursor})).await;
        assert_eq!(page["type"], "conversations");
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["max_seq"], 1);
            assert_eq!(item["read_seq"], 0);
            assert!(item["kind"] == "direct" || item["kind"] == "group");
            seen.push(item["conv"].as_str().unwrap().to_owned());
        }
        if page["next"].is_null() {
            break;
        }
        cursor = page["next"].clone();
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn read_positions_are_pushed_to_other_devices_and_the_peer_and_never_go_down() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob_phone = Raw::connect(&server, "bob", "phone").await;
    let mut bob_laptop = Raw::connect(&server, "bob", "laptop").await;
    alice.say("d:alice:bob", "one").await;
    alice.say("d:alice:bob", "two").await;
    bob_phone.next_msg().await;
    bob_phone.next_msg().await;

    let reply = bob_phone.call(json!({"type":"read","conv":"d:alice:bob","seq":2})).await;
    assert_eq!(reply["type"], "ok");
    let expected = json!({"type":"read","conv":"d:alice:bob","user":"bob","seq":2});
    assert_eq!(bob_laptop.recv_until(|f| f["type"] == "read").await.0, expected);
    assert_eq!(alice.recv_until(|f| f["type"] == "read").await.0, expected);

    assert_eq!(
        bob_phone.call(json!({"type":"read","conv":"d:alice:bob","seq":1})).await["type"],
        "ok"
    );
    let sync = bob_phone.call(json!({"type":"sync"})).await;
    assert_eq!(sync["items"][0]["read_seq"], 2);
}

#[tokio::test]
async fn senders_recall_their_own_messages_and_fetch_shows_them_recalled() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    alice.say_ordered("d:alice:bob", "oops").await;
    let reply = bob.call(json!({"type":"recall","conv":"d:alice:bob","seq":1})).await;
    assert_eq!(reply["code"], "forbidden");
    let reply = alice.call(json!({"type":"recall","conv":"d:alice:bob","seq":1})).await;
    assert_eq!(reply["type"], "ok");
    let notice = bob.recv_until(|f| f["type"] == "msg" && f["seq"] == 2).await.0;
    assert_eq!(notice["body"], json!({"kind":"system","event":"recalled","users":[],"seq":1}));
    let page = bob.call(json!({"type":"fetch","conv":"d:alice:bob","after":0})).await;
    assert_eq!(page["messages"][0]["body"], json!({"kind":"recalled"}));
    let reply = alice.call(json!({"type":"recall","conv":"d:alice:bob","seq":99})).await;
    assert_eq!(reply["code"], "not_found");
}

#[tokio::test]
async fn typing_is_relayed_to_the_other_members_and_never_stored() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    alice.send(json!({"type":"typing","conv":"d:alice:bob"})).await;
    assert_eq!(bob.recv().await, json!({"type":"typing","conv":"d:alice:bob","user":"alice"}));

    let group = alice.call(json!({"type":"group.create","title":"T","members":["bob"]})).await;
    let conv = group["conv"].as_str().unwrap().to_owned();
    bob.next_msg().await;
    bob.send(json!({"type":"typing","conv":conv})).await;
    let typing = alice.recv_until(|f| f["type"] == "typing").await.0;
    assert_eq!(typing, json!({"type":"typing","conv":conv,"user":"bob"}));
    let page = alice.call(json!({"type":"fetch","conv":"d:alice:bob","after":0})).await;
    assert_eq!(page["max_seq"], 0, "typing is not a message");
}

#[tokio::test]
async fn msgpack_clients_get_the_same_objects_in_binary_frames() {
    let server = Server::start().await;
    let mut request = server.ws_url("alice", "phone").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "dolphin.v1.msgpack".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "dolphin.v1.msgpack");

    let decode = |message: Message| -> Value {
        match message {
            Message::Binary(bytes) => rmp_serde::from_slice(&bytes).unwrap(),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    };
    let hello = decode(ws.next().await.unwrap().unwrap());
    assert_eq!(hello["type"], "hello");
    let send = json!({"type":"send","rid":"r1","conv":"d:alice:bob","cid":"m1",
                      "body":{"kind":"text","text":"packed"}});
    ws.send(Message::Binary(rmp_serde::to_vec_named(&send).unwrap().into())).await.unwrap();
    assert_eq!(
        decode(ws.next().await.unwrap().unwrap()),
        json!({"type":"accepted","rid":"r1","cid":"m1"})
    );
    let msg = decode(ws.next().await.unwrap().unwrap());
    assert_eq!((msg["type"].as_str(), msg["body"]["text"].as_str()), (Some("msg"), Some("packed")));
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    alice.say_ordered("d:alice:bob", "count me").await;
    let get = |path: &str| {
        let url = format!("http://{}{path}", server.addr);
        async move {
            let output = tokio::process::Command::new("curl")
                .args(["-s", "-w", "\n%{http_code}", &url])
                .output()
                .await
                .unwrap();
            String::from_utf8(output.stdout).unwrap()
        }
    };
    assert!(get("/healthz").await.ends_with("200"));
    assert!(get("/readyz").await.ends_with("200"));
    let metrics = get("/metrics").await;
    assert!(metrics.contains("dolphin_edge_connections{state=\"open\"} 1"), "{metrics}");
    assert!(metrics.contains("dolphin_sequencer_messages_ordered_total 1"), "{metrics}");
    assert!(metrics.contains("dolphin_edge_frames_in_total{type=\"send\"} 1"), "{metrics}");
}

#[tokio::test]
async fn shutting_down_closes_connections_with_going_away() {
    let mut server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let dev = server.dev.take().unwrap();
    dev.shutdown();
    let code = tokio::time::timeout(WAIT, async {
        loop {
            match alice.ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame after shutdown");
    assert_eq!(code, 1001);
    tokio::time::timeout(WAIT, dev.wait()).await.expect("shutdown finishes").unwrap();
    let _ = Duration::ZERO;
}

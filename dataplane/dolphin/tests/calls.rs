//! Call signaling over real WebSocket connections to `dolphin dev`, and across the edges of a
//! cluster of processes: invites, answers, candidates, hang-ups, the ring timeout, every
//! refusal, the `call` message each call leaves, and `GET /v1/ice`.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Raw, Server};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

/// A `dolphin dev` whose invites ring for `ring`.
async fn server_ringing_for(ring: Duration) -> Server {
    Server::start_with(|config| config.calls.ring_timeout = ring).await
}

fn invite(conv: &str, call: &str) -> Value {
    json!({"type":"call.invite","conv":conv,"call":call,"media":"video","sdp":SDP})
}

/// Asserts an `ok` reply.
fn ok(reply: Value) {
    assert_eq!(reply["type"], "ok", "{reply}");
}

/// Asserts an error reply with `code`.
fn refused(reply: Value, code: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
}

async fn next_of(raw: &mut Raw, kind: &str) -> Value {
    raw.recv_until(|f| f["type"] == kind).await.0
}

/// The `call` message of `call`, fetched from `conv` once it is ordered.
async fn call_message(raw: &mut Raw, conv: &str, call: &str) -> Value {
    let (msg, _) = raw.recv_until(|f| f["type"] == "msg" && f["body"]["call"] == call).await;
    let page = raw.call(json!({"type":"fetch","conv":conv,"after":0,"limit":100})).await;
    let messages = page["messages"].as_array().unwrap();
    let of_call = |m: &&Value| m["body"]["kind"] == "call" && m["body"]["call"] == call;
    let fetched = messages.iter().find(of_call).expect("the call message is fetched");
    assert_eq!(fetched["seq"], msg["seq"], "the pushed and the fetched message are the same");
    let calls = messages.iter().filter(of_call).count();
    assert_eq!(calls, 1, "one call message per call: {messages:?}");
    fetched.clone()
}

/// alice (phone) calling bob, who has a phone and a laptop; both of bob's devices rang.
struct Ringing {
    server: Server,
    alice: Raw,
    alice_laptop: Raw,
    bob_phone: Raw,
    bob_laptop: Raw,
}

async fn ringing(server: Server, call: &str) -> Ringing {
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let alice_laptop = Raw::connect(&server, "alice", "laptop").await;
    let mut bob_phone = Raw::connect(&server, "bob", "phone").await;
    let mut bob_laptop = Raw::connect(&server, "bob", "laptop").await;
    ok(alice.call(invite("d:alice:bob", call)).await);
    for bob in [&mut bob_phone, &mut bob_laptop] {
        let rang = next_of(bob, "call.invite").await;
        assert_eq!(rang["call"], call);
        assert_eq!(rang["from"], "alice");
        assert_eq!(rang["device"], "phone");
        assert_eq!(rang["conv"], "d:alice:bob");
        assert_eq!(rang["media"], "video");
        assert_eq!(rang["sdp"], SDP);
    }
    Ringing { server, alice, alice_laptop, bob_phone, bob_laptop }
}

#[tokio::test]
async fn an_invite_rings_every_device_of_the_callee_but_no_other_device_of_the_caller() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.alice.call(json!({"type":"call.hangup","call":"c1"})).await);
    // The caller's laptop never rang: the first frame it gets is the call's message.
    let first = call.alice_laptop.recv().await;
    assert_eq!(first["type"], "msg", "{first}");
    assert_eq!(first["body"]["kind"], "call");
}

#[tokio::test]
async fn accepting_relays_the_answer_to_the_caller_and_ends_the_ring_on_other_devices() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.bob_laptop.call(json!({"type":"call.accept","call":"c1","sdp":"answer"})).await);
    let answer = next_of(&mut call.alice, "call.accept").await;
    assert_eq!(answer["call"], "c1");
    assert_eq!(answer["from"], "bob");
    assert_eq!(answer["device"], "laptop");
    assert_eq!(answer["sdp"], "answer");
    let elsewhere = next_of(&mut call.bob_phone, "call.ended").await;
    assert_eq!(elsewhere, json!({"type":"call.ended","call":"c1","reason":"answered_elsewhere"}));
    // The phone lost the ring: it can no longer accept.
    let late = call.bob_phone.call(json!({"type":"call.accept","call":"c1","sdp":"x"})).await;
    refused(late, "not_found");
}

#[tokio::test]
async fn candidates_are_relayed_both_ways_between_the_two_parties() {
    let mut call = ringing(Server::start().await, "c1").await;
    let candidate = json!({"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "sdpMid":"0","sdpMLineIndex":0});
    // Before the answer, the caller's candidates reach every ringing device.
    ok(call.alice.call(json!({"type":"call.ice","call":"c1","candidate":candidate})).await);
    for bob in [&mut call.bob_phone, &mut call.bob_laptop] {
        let relayed = next_of(bob, "call.ice").await;
        assert_eq!(relayed["candidate"], candidate);
        assert_eq!(relayed["from"], "alice");
    }
    ok(call.bob_laptop.call(json!({"type":"call.accept","call":"c1","sdp":"answer"})).await);
    ok(call.bob_laptop.call(json!({"type":"call.ice","call":"c1","candidate":"c-bob"})).await);
    let to_alice = next_of(&mut call.alice, "call.ice").await;
    assert_eq!(
        (to_alice["candidate"].clone(), to_alice["from"].clone()),
        (json!("c-bob"), json!("bob"))
    );
    ok(call.alice.call(json!({"type":"call.ice","call":"c1","candidate":"c-alice"})).await);
    let to_bob = next_of(&mut call.bob_laptop, "call.ice").await;
    assert_eq!(to_bob["candidate"], "c-alice");
    // After the answer only the answering device hears the caller.
    ok(call.bob_laptop.call(json!({"type":"call.hangup","call":"c1"})).await);
    let (_, phone_saw) = call.bob_phone.recv_until(|f| f["type"] == "msg").await;
    assert!(!phone_saw.iter().any(|f| f["candidate"] == "c-alice"), "{phone_saw:?}");
}

#[tokio::test]
async fn a_hangup_is_relayed_and_the_call_message_records_a_completed_call() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.bob_phone.call(json!({"type":"call.accept","call":"c1","sdp":"answer"})).await);
    next_of(&mut call.alice, "call.accept").await;
    ok(call.alice.call(json!({"type":"call.hangup","call":"c1"})).await);
    let hangup = next_of(&mut call.bob_phone, "call.hangup").await;
    assert_eq!(hangup["from"], "alice");
    let message = call_message(&mut call.bob_phone, "d:alice:bob", "c1").await;
    assert_eq!(message["from"], "alice");
    assert_eq!(message["device"], "phone");
    assert_eq!(message["cid"], "call:c1");
    let body = &message["body"];
    assert_eq!((body["kind"].clone(), body["media"].clone()), (json!("call"), json!("video")));
    assert_eq!(body["outcome"], "completed");
    assert!(body["duration_ms"].as_u64().is_some(), "{body}");
    // The call is over: another hang-up is told so.
    refused(call.alice.call(json!({"type":"call.hangup","call":"c1"})).await, "not_found");
}

#[tokio::test]
async fn a_rejection_is_relayed_to_the_caller_and_recorded_as_rejected() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.bob_phone.call(json!({"type":"call.reject","call":"c1"})).await);
    let rejected = next_of(&mut call.alice, "call.reject").await;
    assert_eq!((rejected["call"].clone(), rejected["from"].clone()), (json!("c1"), json!("bob")));
    let other = next_of(&mut call.bob_laptop, "call.ended").await;
    assert_eq!(other["reason"], "rejected");
    let message = call_message(&mut call.alice, "d:alice:bob", "c1").await;
    assert_eq!(message["body"]["outcome"], "rejected");
    assert_eq!(message["body"]["duration_ms"], 0);
}

#[tokio::test]
async fn a_caller_hanging_up_before_an_answer_cancels_the_call() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.alice.call(json!({"type":"call.hangup","call":"c1"})).await);
    for bob in [&mut call.bob_phone, &mut call.bob_laptop] {
        assert_eq!(next_of(bob, "call.hangup").await["from"], "alice");
    }
    let message = call_message(&mut call.bob_laptop, "d:alice:bob", "c1").await;
    assert_eq!(message["body"]["outcome"], "cancelled");
}

#[tokio::test]
async fn an_unanswered_invite_ends_after_the_ring_timeout_as_missed() {
    let server = server_ringing_for(Duration::from_millis(800)).await;
    let mut call = ringing(server, "c1").await;
    let timeout = json!({"type":"call.ended","call":"c1","reason":"timeout"});
    assert_eq!(next_of(&mut call.alice, "call.ended").await, timeout);
    assert_eq!(next_of(&mut call.bob_phone, "call.ended").await, timeout);
    assert_eq!(next_of(&mut call.bob_laptop, "call.ended").await, timeout);
    let message = call_message(&mut call.alice, "d:alice:bob", "c1").await;
    assert_eq!(message["body"]["outcome"], "missed");
    let late = call.bob_phone.call(json!({"type":"call.accept","call":"c1","sdp":"x"})).await;
    refused(late.clone(), "not_found");
    assert!(late_message(&late).contains("ended"), "{late}");
}

fn late_message(reply: &Value) -> String {
    reply["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_party_that_disconnects_ends_the_call_for_the_other() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.bob_laptop.call(json!({"type":"call.accept","call":"c1","sdp":"answer"})).await);
    next_of(&mut call.alice, "call.accept").await;
    call.bob_laptop.ws.close(None).await.unwrap();
    let ended = next_of(&mut call.alice, "call.ended").await;
    assert_eq!(ended, json!({"type":"call.ended","call":"c1","reason":"disconnected"}));
    let message = call_message(&mut call.alice, "d:alice:bob", "c1").await;
    assert_eq!(message["body"]["outcome"], "completed");
}

#[tokio::test]
async fn a_group_call_rings_every_other_member_and_the_first_accept_wins() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    let mut carol = Raw::connect(&server, "carol", "phone").await;
    let group =
        alice.call(json!({"type":"group.create","title":"t","members":["bob","carol"]})).await;
    let conv = group["conv"].as_str().unwrap().to_owned();
    ok(alice.call(invite(&conv, "g1")).await);
    next_of(&mut bob, "call.invite").await;
    next_of(&mut carol, "call.invite").await;
    ok(carol.call(json!({"type":"call.accept","call":"g1","sdp":"answer"})).await);
    assert_eq!(next_of(&mut alice, "call.accept").await["from"], "carol");
    assert_eq!(next_of(&mut bob, "call.ended").await["reason"], "answered_elsewhere");
    refused(bob.call(json!({"type":"call.accept","call":"g1","sdp":"late"})).await, "not_found");
    ok(carol.call(json!({"type":"call.hangup","call":"g1"})).await);
    assert_eq!(next_of(&mut alice, "call.hangup").await["from"], "carol");
    let message = call_message(&mut bob, &conv, "g1").await;
    assert_eq!(message["body"]["outcome"], "completed");
}

#[tokio::test]
async fn call_frames_for_a_call_one_is_not_in_get_not_found() {
    let call = ringing(Server::start().await, "c1").await;
    let mut carol = Raw::connect(&call.server, "carol", "phone").await;
    for frame in [
        json!({"type":"call.accept","call":"c1","sdp":"answer"}),
        json!({"type":"call.reject","call":"c1"}),
        json!({"type":"call.ice","call":"c1","candidate":"x"}),
        json!({"type":"call.hangup","call":"c1"}),
        json!({"type":"call.hangup","call":"nobody-made-this"}),
    ] {
        refused(carol.call(frame).await, "not_found");
    }
    // The caller's other device is not in the call either.
    let mut laptop = call.alice_laptop;
    refused(laptop.call(json!({"type":"call.hangup","call":"c1"})).await, "not_found");
}

#[tokio::test]
async fn parties_may_only_do_what_their_side_of_the_call_allows() {
    let mut call = ringing(Server::start().await, "c1").await;
    let caller_accepts = json!({"type":"call.accept","call":"c1","sdp":"x"});
    refused(call.alice.call(caller_accepts).await, "forbidden");
    refused(call.alice.call(json!({"type":"call.reject","call":"c1"})).await, "forbidden");
    // A ringing callee declines with call.reject and sends candidates only once it accepted.
    refused(call.bob_phone.call(json!({"type":"call.hangup","call":"c1"})).await, "forbidden");
    let early = json!({"type":"call.ice","call":"c1","candidate":"x"});
    refused(call.bob_phone.call(early).await, "forbidden");
}

#[tokio::test]
async fn under_the_friends_policy_only_friends_can_ring_each_other() {
    let server = Server::start_with(|config| {
        config.policy.direct_messages = dolphin_state::DirectPolicy::Friends;
    })
    .await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    refused(alice.call(invite("d:alice:bob", "f1")).await, "not_friends");
    assert_eq!(bob.silent_for(Duration::from_millis(200)).await, None, "bob's phone rang");

    ok(alice.call(json!({"type":"friend.request","user":"bob"})).await);
    bob.recv_until(|f| f["type"] == "friend").await;
    ok(bob.call(json!({"type":"friend.accept","user":"alice"})).await);
    alice.recv_until(|f| f["type"] == "friend" && f["event"] == "accepted").await;
    ok(alice.call(invite("d:alice:bob", "f2")).await);
    let ring = bob.recv_until(|f| f["type"] == "call.invite").await.0;
    assert_eq!(ring["from"], "alice");
}

#[tokio::test]
async fn an_invite_to_a_conversation_one_is_not_in_gets_not_member() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut carol = Raw::connect(&server, "carol", "phone").await;
    refused(carol.call(invite("d:alice:bob", "x1")).await, "not_member");
    let group = alice.call(json!({"type":"group.create","title":"t","members":["bob"]})).await;
    let conv = group["conv"].as_str().unwrap();
    refused(carol.call(invite(conv, "x2")).await, "not_member");
    refused(carol.call(invite("g:nosuchgroup", "x3")).await, "not_member");
}

#[tokio::test]
async fn a_call_id_already_in_use_is_refused() {
    let mut call = ringing(Server::start().await, "c1").await;
    let mut carol = Raw::connect(&call.server, "carol", "phone").await;
    refused(carol.call(invite("d:bob:carol", "c1")).await, "bad_request");
    refused(call.alice.call(invite("d:alice:bob", "c1")).await, "bad_request");
    // Ending the call does not free its id: its message is keyed by it.
    ok(call.alice.call(json!({"type":"call.hangup","call":"c1"})).await);
    refused(call.alice.call(invite("d:alice:bob", "c1")).await, "bad_request");
}

#[tokio::test]
async fn accepting_a_call_that_ended_is_refused() {
    let mut call = ringing(Server::start().await, "c1").await;
    ok(call.alice.call(json!({"type":"call.hangup","call":"c1"})).await);
    let late = call.bob_laptop.call(json!({"type":"call.accept","call":"c1","sdp":"x"})).await;
    refused(late.clone(), "not_found");
    assert!(late_message(&late).contains("ended"), "{late}");
}

#[tokio::test]
async fn malformed_call_frames_get_bad_request_and_the_connection_stays_open() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let long_id = "x".repeat(60);
    let frames = [
        json!({"type":"call.invite","conv":"d:alice:bob","call":"c1","media":"video","sdp":""}),
        json!({"type":"call.invite","conv":"d:alice:bob","call":"c1","media":"video"}),
        json!({"type":"call.invite","conv":"d:alice:bob","call":"c1","media":"smell","sdp":SDP}),
        json!({"type":"call.invite","conv":"d:bob:alice","call":"c1","media":"audio","sdp":SDP}),
        json!({"type":"call.invite","conv":"d:alice:bob","call":"no spaces","media":"audio",
            "sdp":SDP}),
        json!({"type":"call.invite","conv":"d:alice:bob","call":long_id,"media":"audio",
            "sdp":SDP}),
        json!({"type":"call.invite","conv":"d:alice:bob","call":"c1","media":"audio",
            "sdp":"x".repeat(70 * 1024)}),
        json!({"type":"call.accept","call":"c1","sdp":"  "}),
        json!({"type":"call.accept","call":"c1"}),
        json!({"type":"call.ice","call":"c1","candidate":42}),
        json!({"type":"call.ice","call":"c1","candidate":null}),
        json!({"type":"call.ice","call":"c1","candidate":{"candidate":"x".repeat(5000)}}),
        json!({"type":"call.reject"}),
        json!({"type":"call.invite","conv":"d:alice:alice","call":"c1","media":"audio",
            "sdp":SDP}),
    ];
    for frame in frames {
        let reply = alice.call(frame.clone()).await;
        assert_eq!(reply["code"], "bad_request", "{frame} got {reply}");
    }
    // Nothing was half-made: the id is still free.
    ok(alice.call(invite("d:alice:bob", "c1")).await);
}

async fn ice(server: &Server, query: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("http://{}/v1/ice{query}", server.addr));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ice_servers_carry_turn_rest_credentials_when_a_secret_is_set() {
    let server = Server::start_with(|config| {
        config.calls.ice.stun_urls = vec!["stun:127.0.0.1:3478".into()];
        config.calls.ice.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        config.calls.ice.turn_secret = Some("shared-with-turn".into());
        config.calls.ice.turn_ttl = Duration::from_secs(600);
    })
    .await;
    let before = support::now_secs();
    let (status, body) = ice(&server, "", Some(&server.token("alice"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ttl"], 600);
    assert_eq!(body["ice_servers"][0], json!({"urls":["stun:127.0.0.1:3478"]}));
    let turn = &body["ice_servers"][1];
    assert_eq!(turn["urls"], json!(["turn:127.0.0.1:3478?transport=udp"]));
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let expiry: u64 = expiry.parse().unwrap();
    assert!((before + 600..=support::now_secs() + 600).contains(&expiry), "{expiry}");
    let (_, credential) = dolphin_edge::ice::turn_credential(b"shared-with-turn", "alice", expiry);
    assert_eq!(turn["credential"], credential);
    // The token works as a query parameter too.
    let (status, _) = ice(&server, &format!("?token={}", server.token("bob")), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn without_a_secret_ice_servers_carry_no_credentials() {
    let server = Server::start_with(|config| {
        config.calls.ice.turn_urls = vec!["turn:127.0.0.1:3478".into()];
    })
    .await;
    let (status, body) = ice(&server, "", Some(&server.token("alice"))).await;
    assert_eq!(status, 200);
    assert_eq!(body["ice_servers"], json!([{"urls":["turn:127.0.0.1:3478"]}]));
}

#[tokio::test]
async fn ice_servers_need_a_valid_token() {
    let server = Server::start().await;
    assert_eq!(ice(&server, "", None).await.0, 401);
    assert_eq!(ice(&server, "?token=garbage", None).await.0, 401);
    let forged =
        dolphin_edge::auth::issue(b"not-the-secret", "alice", support::now_secs(), 60).unwrap();
    assert_eq!(ice(&server, "", Some(&forged)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_crosses_the_edges_of_a_cluster_of_processes() {
    use dolphin::local_cluster::{ClusterSpec, LocalCluster};

    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_dolphin").into();
    let mut spec = ClusterSpec::new(dir.path().to_path_buf(), binary, 1, 1, 2);
    spec.edge_args = ["--ring-timeout", "2s"].map(String::from).into();
    let cluster = LocalCluster::start(spec).await.expect("the local cluster starts");
    let url = |edge: u32, user: &str, device: &str| {
        let base = cluster.edge_url(edge).unwrap();
        format!("{base}/v1/ws?token={}&device={device}", cluster.token(user))
    };
    let mut alice = Raw::connect_url(&url(0, "alice", "phone")).await;
    let mut bob = Raw::connect_url(&url(1, "bob", "phone")).await;

    // Each edge subscribes to the bus as it starts; an invite before both did may go unheard.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut attempt = 0;
    let call = loop {
        attempt += 1;
        let call = format!("x{attempt}");
        // Answered `unavailable` while the caller's own edge is not yet subscribed.
        let reply = alice.call(invite("d:alice:bob", &call)).await;
        assert!(reply["type"] == "ok" || reply["code"] == "unavailable", "{reply}");
        let heard = tokio::time::timeout(Duration::from_secs(1), next_of(&mut bob, "call.invite"));
        if let Ok(rang) = heard.await {
            assert_eq!(rang["call"], call.as_str());
            break call;
        }
        assert!(std::time::Instant::now() < deadline, "edge 1 never heard an invite from edge 0");
        alice.call(json!({"type":"call.hangup","call":call})).await;
    };

    ok(bob.call(json!({"type":"call.accept","call":call,"sdp":"answer"})).await);
    assert_eq!(next_of(&mut alice, "call.accept").await["sdp"], "answer");
    ok(bob.call(json!({"type":"call.ice","call":call,"candidate":"from-bob"})).await);
    assert_eq!(next_of(&mut alice, "call.ice").await["candidate"], "from-bob");
    ok(alice.call(json!({"type":"call.ice","call":call,"candidate":"from-alice"})).await);
    assert_eq!(next_of(&mut bob, "call.ice").await["candidate"], "from-alice");
    ok(bob.call(json!({"type":"call.hangup","call":call})).await);
    assert_eq!(next_of(&mut alice, "call.hangup").await["from"], "bob");
    let message = call_message(&mut alice, "d:alice:bob", &call).await;
    assert_eq!(message["body"]["outcome"], "completed");

    // The ring timeout ends a call on the other edge too.
    ok(alice.call(invite("d:alice:bob", "late")).await);
    next_of(&mut bob, "call.invite").await;
    assert_eq!(next_of(&mut bob, "call.ended").await["reason"], "timeout");

    // Two devices accepting at once on two edges: the bus orders the two, and one wins.
    let mut laptop = Raw::connect_url(&url(0, "bob", "laptop")).await;
    ok(alice.call(invite("d:alice:bob", "race")).await);
    next_of(&mut bob, "call.invite").await;
    next_of(&mut laptop, "call.invite").await;
    let accept = json!({"type":"call.accept","rid":"a","call":"race","sdp":"answer"});
    tokio::join!(bob.send(accept.clone()), laptop.send(accept));
    let phone_reply = bob.recv_until(|f| f["rid"] == "a").await.0;
    let laptop_reply = laptop.recv_until(|f| f["rid"] == "a").await.0;
    let (winner, loser) =
        if phone_reply["type"] == "ok" { ("phone", laptop_reply) } else { ("laptop", phone_reply) };
    refused(loser, "not_found");
    assert_eq!(next_of(&mut alice, "call.accept").await["device"], winner);
    ok(alice.call(json!({"type":"call.hangup","call":"race"})).await);
    let (_, before) = alice.recv_until(|f| f["type"] == "msg" && f["body"]["call"] == "race").await;
    assert!(!before.iter().any(|f| f["type"] == "call.accept"), "one answer only: {before:?}");
}

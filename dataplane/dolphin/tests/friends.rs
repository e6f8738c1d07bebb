//! Friends by scan code, the friends-only direct message policy, moments and presence, over
//! real WebSocket connections to `dolphin dev`.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::time::Duration;

use dolphin_edge::invite::Invites;
use dolphin_state::{DirectPolicy, Policy};
use dolphin_topology::{DEFAULT_SLOTS, Topology};
use serde_json::{Value, json};
use support::{Raw, Server, WAIT};

/// Waits for the next `friend` push, skipping other frames.
async fn friend_push(raw: &mut Raw) -> Value {
    raw.recv_until(|f| f["type"] == "friend").await.0
}

/// Makes `a` and `b` friends, by a request of `a` and an accept of `b`, and waits until both
/// have been told.
async fn befriend(a: &mut Raw, a_name: &str, b: &mut Raw, b_name: &str) {
    let reply = a.call(json!({"type":"friend.request","user":b_name})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let request = friend_push(b).await;
    assert_eq!(request, json!({"type":"friend","event":"request","user":a_name}));
    let reply = b.call(json!({"type":"friend.accept","user":a_name})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(friend_push(a).await, json!({"type":"friend","event":"accepted","user":b_name}));
    assert_eq!(friend_push(b).await, json!({"type":"friend","event":"accepted","user":a_name}));
}

fn error_code(reply: &Value) -> &str {
    assert_eq!(reply["type"], "error", "expected an error, got {reply}");
    reply["code"].as_str().unwrap()
}

#[tokio::test]
async fn an_invite_holds_a_signed_code_its_link_and_a_qr_code() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let invite = alice.call(json!({"type":"friend.invite"})).await;
    assert_eq!(invite["type"], "invite", "{invite}");
    let code = invite["code"].as_str().unwrap();
    assert_eq!(invite["link"].as_str().unwrap(), format!("dolphin://add-friend/{code}"));
    let svg = invite["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
    let invites = Invites::from_token_secret(server.secret.as_bytes()).unwrap();
    assert_eq!(invites.check(code).unwrap(), "alice");
}

#[tokio::test]
async fn scanning_a_code_and_accepting_makes_both_friends_and_tells_both() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    let mut bob_laptop = Raw::connect(&server, "bob", "laptop").await;

    let invite = alice.call(json!({"type":"friend.invite"})).await;
    let reply = bob.call(json!({"type":"friend.request","code":invite["link"]})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(
        friend_push(&mut alice).await,
        json!({"type":"friend","event":"request","user":"bob"})
    );
    let lists = alice.call(json!({"type":"friend.list"})).await;
    assert_eq!(lists["incoming"], json!(["bob"]), "{lists}");

    let reply = alice.call(json!({"type":"friend.accept","user":"bob"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    for device in [&mut alice] {
        let push = friend_push(device).await;
        assert_eq!(push, json!({"type":"friend","event":"accepted","user":"bob"}));
    }
    for device in [&mut bob, &mut bob_laptop] {
        let push = friend_push(device).await;
        assert_eq!(push, json!({"type":"friend","event":"accepted","user":"alice"}));
    }
    let alice_list = alice.call(json!({"type":"friend.list"})).await;
    assert_eq!(alice_list["friends"], json!(["bob"]), "{alice_list}");
    assert_eq!(alice_list["incoming"], json!([]), "{alice_list}");
    let bob_list = bob.call(json!({"type":"friend.list"})).await;
    assert_eq!(bob_list["friends"], json!(["alice"]), "{bob_list}");
    assert_eq!(bob_list["outgoing"], json!([]), "{bob_list}");
}

#[tokio::test]
async fn a_request_by_user_id_shows_as_outgoing_and_incoming_until_answered() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    let reply = alice.call(json!({"type":"friend.request","user":"bob"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    friend_push(&mut bob).await;
    let bob_list = bob.call(json!({"type":"friend.list"})).await;
    assert_eq!(bob_list["incoming"], json!(["alice"]), "{bob_list}");
    // Alice's own view reaches her shard through the outbox; her list shows it once there.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = alice.call(json!({"type":"friend.list"})).await;
        if list["outgoing"] == json!(["bob"]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "alice never saw her request: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Declining is removing the request; alice's outgoing request is gone too.
    let reply = bob.call(json!({"type":"friend.remove","user":"alice"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let reply = bob.call(json!({"type":"friend.accept","user":"alice"})).await;
    assert_eq!(error_code(&reply), "not_found");
}

#[tokio::test]
async fn asking_someone_who_already_asked_you_makes_you_friends() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    alice.call(json!({"type":"friend.request","user":"bob"})).await;
    friend_push(&mut bob).await;
    let reply = bob.call(json!({"type":"friend.request","user":"alice"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(friend_push(&mut alice).await["event"], "accepted");
    assert_eq!(friend_push(&mut bob).await["event"], "accepted");
}

#[tokio::test]
async fn bad_requests_are_refused_with_their_codes() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;

    let reply = alice.call(json!({"type":"friend.request","user":"alice"})).await;
    assert_eq!(error_code(&reply), "bad_request");
    let own = alice.call(json!({"type":"friend.invite"})).await;
    let reply = alice.call(json!({"type":"friend.request","code":own["code"]})).await;
    assert_eq!(error_code(&reply), "bad_request");
    assert!(reply["message"].as_str().unwrap().contains("themselves"), "{reply}");

    let forged = Invites::from_token_secret(b"another cluster").unwrap().issue("bob").unwrap();
    let reply = alice.call(json!({"type":"friend.request","code":forged.code})).await;
    assert_eq!(error_code(&reply), "bad_request");
    assert!(reply["message"].as_str().unwrap().contains("not valid"), "{reply}");

    let invites = Invites::from_token_secret(server.secret.as_bytes()).unwrap();
    let long_ago = support::now_secs() - 8 * 24 * 3600;
    let expired = invites.issue_at("bob", long_ago).unwrap();
    let reply = alice.call(json!({"type":"friend.request","code":expired.code})).await;
    assert_eq!(error_code(&reply), "bad_request");
    assert!(reply["message"].as_str().unwrap().contains("expired"), "{reply}");

    let login_token = server.token("bob");
    let reply = alice.call(json!({"type":"friend.request","code":login_token})).await;
    assert_eq!(error_code(&reply), "bad_request");

    let reply = alice.call(json!({"type":"friend.request","user":"bob","code":"x"})).await;
    assert_eq!(error_code(&reply), "bad_request");
    let reply = alice.call(json!({"type":"friend.request"})).await;
    assert_eq!(error_code(&reply), "bad_request");
    let reply = alice.call(json!({"type":"friend.request","user":"no spaces"})).await;
    assert_eq!(error_code(&reply), "bad_request");
    let reply = alice.call(json!({"type":"friend.accept","user":"bob"})).await;
    assert_eq!(error_code(&reply), "not_found");
    let reply = alice.call(json!({"type":"friend.remove","user":"bob"})).await;
    assert_eq!(error_code(&reply), "not_found");
    let reply = alice.call(json!({"type":"friend.accept","user":"alice"})).await;
    assert_eq!(error_code(&reply), "bad_request");
}

#[tokio::test]
async fn the_friends_policy_lets_only_friends_write_directly() {
    let server = Server::start_with(|config| {
        config.policy = Policy { direct_messages: DirectPolicy::Friends, ..Policy::default() };
    })
    .await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;

    alice.say("d:alice:bob", "hello stranger").await;
    let rejected = alice.recv_until(|f| f["type"] == "rejected").await.0;
    assert_eq!(rejected["code"], "not_friends", "{rejected}");

    befriend(&mut alice, "alice", &mut bob, "bob").await;
    alice.say_ordered("d:alice:bob", "hello friend").await;
    let pushed = bob.next_msg().await;
    assert_eq!(pushed["body"]["text"], "hello friend");

    let reply = bob.call(json!({"type":"friend.remove","user":"alice"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(friend_push(&mut alice).await["event"], "removed");
    alice.say("d:alice:bob", "still there?").await;
    let rejected = alice.recv_until(|f| f["type"] == "rejected").await.0;
    assert_eq!(rejected["code"], "not_friends", "{rejected}");
}

/// Three users' keys each on another of three shards, so that a friendship's pair record and
/// both users' views live on three different shards.
fn spread_users() -> (String, String) {
    let router = Topology::even("e", 3, DEFAULT_SLOTS).router();
    for i in 0..10_000 {
        let (a, b) = (format!("ann{i}"), format!("ben{i}"));
        let shards = [
            router.shard_of(&format!("u:{a}")),
            router.shard_of(&format!("u:{b}")),
            router.shard_of(&dolphin_protocol::ids::direct_conv(&a, &b)),
        ];
        if shards[0] != shards[1] && shards[1] != shards[2] && shards[0] != shards[2] {
            return (a, b);
        }
    }
    panic!("no users spread over three shards");
}

#[tokio::test]
async fn an_accept_commits_on_three_shards_and_both_views_agree() {
    let server = Server::start_with(|config| config.shards = 3).await;
    let (ann, ben) = spread_users();
    let mut a = Raw::connect(&server, &ann, "phone").await;
    let mut b = Raw::connect(&server, &ben, "phone").await;
    befriend(&mut a, &ann, &mut b, &ben).await;
    let a_list = a.call(json!({"type":"friend.list"})).await;
    assert_eq!(a_list["friends"], json!([ben]), "{a_list}");
    let b_list = b.call(json!({"type":"friend.list"})).await;
    assert_eq!(b_list["friends"], json!([ann]), "{b_list}");
    // Each side was told exactly once.
    assert_eq!(a.silent_for(Duration::from_millis(500)).await, None);
    assert_eq!(b.silent_for(Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn friends_see_each_others_moments_newest_first_page_by_page() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    let mut carol = Raw::connect(&server, "carol", "phone").await;
    befriend(&mut alice, "alice", &mut bob, "bob").await;

    let mut ids = Vec::new();
    for (who, text) in [("alice", "one"), ("bob", "two"), ("alice", "three"), ("carol", "x")] {
        let raw = match who {
            "alice" => &mut alice,
            "bob" => &mut bob,
            _ => &mut carol,
        };
        let reply =
            raw.call(json!({"type":"moment.post","body":{"kind":"text","text":text}})).await;
        assert_eq!(reply["type"], "moment", "{reply}");
        assert!(reply["ts"].as_i64().is_some(), "{reply}");
        ids.push(reply["id"].as_str().unwrap().to_owned());
        // Distinct milliseconds, so that the expected order is the posting order.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    let feed = bob.call(json!({"type":"moment.feed","limit":2})).await;
    assert_eq!(feed["type"], "feed", "{feed}");
    let texts = |feed: &Value| -> Vec<String> {
        let items = feed["items"].as_array().unwrap();
        items.iter().map(|i| i["body"]["text"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(texts(&feed), ["three", "two"]);
    let last = feed["items"][1]["id"].clone();
    let next = bob.call(json!({"type":"moment.feed","limit":2,"before":last})).await;
    assert_eq!(texts(&next), ["one"]);
    assert_eq!(next["items"][0]["author"], "alice");

    // Carol is nobody's friend: she sees her own moment only, and not alice's on request.
    let feed = carol.call(json!({"type":"moment.feed"})).await;
    assert_eq!(texts(&feed), ["x"]);
    let reply = carol.call(json!({"type":"moment.feed","user":"alice"})).await;
    assert_eq!(error_code(&reply), "not_friends");
    let reply = carol.call(json!({"type":"moment.like","id":ids[0]})).await;
    assert_eq!(error_code(&reply), "not_friends");
}

#[tokio::test]
async fn likes_and_comments_notify_the_author_and_show_in_the_feed() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    befriend(&mut alice, "alice", &mut bob, "bob").await;
    let post = alice.call(json!({"type":"moment.post","body":{"kind":"text","text":"hi"}})).await;
    let id = post["id"].clone();

    let reply = bob.call(json!({"type":"moment.like","id":id})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let like = alice.recv_until(|f| f["type"] == "moment" && f["event"] == "like").await.0;
    assert_eq!(like["user"], "bob");
    assert_eq!(like["id"], id);
    let reply = bob.call(json!({"type":"moment.comment","id":id,"text":"nice"})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let comment = alice.recv_until(|f| f["type"] == "moment" && f["event"] == "comment").await.0;
    assert_eq!((&comment["user"], &comment["text"]), (&json!("bob"), &json!("nice")));

    // A second like counts once and tells nobody again.
    bob.call(json!({"type":"moment.like","id":id})).await;
    assert_eq!(alice.silent_for(Duration::from_millis(300)).await, None);
    let feed = alice.call(json!({"type":"moment.feed"})).await;
    assert_eq!(feed["items"][0]["likes"], json!(["bob"]), "{feed}");
    assert_eq!(feed["items"][0]["comments"][0]["text"], "nice", "{feed}");

    let unknown = "m_0000000000001_00000000_alice";
    let reply = bob.call(json!({"type":"moment.like","id":unknown})).await;
    assert_eq!(error_code(&reply), "not_found");
    let reply = bob.call(json!({"type":"moment.like","id":"nonsense"})).await;
    assert_eq!(error_code(&reply), "bad_request");
    let reply = bob.call(json!({"type":"moment.comment","id":id,"text":""})).await;
    assert_eq!(error_code(&reply), "bad_request");
    let system = json!({"kind":"recalled"});
    let reply = bob.call(json!({"type":"moment.post","body":system})).await;
    assert_eq!(error_code(&reply), "bad_request");
}

#[tokio::test]
async fn a_removed_friend_stops_seeing_moments() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    befriend(&mut alice, "alice", &mut bob, "bob").await;
    alice.call(json!({"type":"moment.post","body":{"kind":"text","text":"before"}})).await;
    let feed = bob.call(json!({"type":"moment.feed"})).await;
    assert_eq!(feed["items"].as_array().unwrap().len(), 1, "{feed}");

    alice.call(json!({"type":"friend.remove","user":"bob"})).await;
    friend_push(&mut bob).await;
    alice.call(json!({"type":"moment.post","body":{"kind":"text","text":"after"}})).await;
    let feed = bob.call(json!({"type":"moment.feed"})).await;
    assert_eq!(feed["items"], json!([]), "{feed}");
    let reply = bob.call(json!({"type":"moment.feed","user":"alice"})).await;
    assert_eq!(error_code(&reply), "not_friends");
}

#[tokio::test]
async fn the_invite_image_is_an_svg_for_the_caller_and_needs_a_token() {
    let server = Server::start().await;
    let url = format!("http://{}/v1/invite.svg", server.addr);
    let http = reqwest::Client::new();
    let response = http.get(&url).bearer_auth(server.token("alice")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let code = response.headers()["x-dolphin-invite-code"].to_str().unwrap().to_owned();
    let body = response.text().await.unwrap();
    assert!(body.contains("<svg"), "{body}");
    let invites = Invites::from_token_secret(server.secret.as_bytes()).unwrap();
    assert_eq!(invites.check(&code).unwrap(), "alice");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let forged = dolphin_edge::auth::issue(b"wrong", "alice", support::now_secs(), 60).unwrap();
    let with_forged = http.get(format!("{url}?token={forged}")).send().await.unwrap();
    assert_eq!(with_forged.status(), 401);
}

#[tokio::test]
async fn friends_see_a_user_come_online_and_go_offline_after_the_debounce() {
    let server = Server::start().await;
    let mut alice = Raw::connect(&server, "alice", "phone").await;
    let mut bob = Raw::connect(&server, "bob", "phone").await;
    befriend(&mut alice, "alice", &mut bob, "bob").await;
    let mut carol = Raw::connect(&server, "carol", "phone").await;

    drop(alice);
    let offline = bob.recv_until(|f| f["type"] == "presence").await.0;
    assert_eq!(offline, json!({"type":"presence","user":"alice","online":false}));

    let mut alice = Raw::connect(&server, "alice", "laptop").await;
    let online = bob.recv_until(|f| f["type"] == "presence").await.0;
    assert_eq!(online, json!({"type":"presence","user":"alice","online":true}));
    // On connecting, alice is told which friends are online.
    let told = alice.recv_until(|f| f["type"] == "presence").await.0;
    assert_eq!(told, json!({"type":"presence","user":"bob","online":true}));

    // A reconnect within the debounce period is not seen as going offline.
    drop(alice);
    let _alice = Raw::connect(&server, "alice", "phone").await;
    assert_eq!(bob.silent_for(Duration::from_millis(800)).await, None);
    // Presence goes to friends only.
    assert_eq!(carol.silent_for(Duration::from_millis(100)).await, None);
}

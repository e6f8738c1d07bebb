//! Two real WebRTC peers (str0m) connected through Dolphin's call signaling: the offer travels
//! in `call.invite`, the answer in `call.accept`, and every ICE candidate in `call.ice`, between
//! two WebSocket clients of `dolphin dev`. The peers then reach the connected state over
//! loopback UDP and exchange data on a data channel.

#![allow(clippy::unwrap_used, reason = "a test fails loudly on purpose")]

mod support;

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use support::{Raw, Server, WAIT};
use tokio::net::UdpSocket;

/// One peer connection on its own UDP socket, driven by hand (str0m does no I/O itself).
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// What this peer writes on the data channel once it opens.
    greeting: &'static str,
    next_timeout: Instant,
    connected: bool,
    received: Vec<String>,
}

impl Peer {
    async fn new(greeting: &'static str) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let now = Instant::now();
        let rtc = Rtc::new(now);
        Peer { rtc, socket, local, greeting, next_timeout: now, connected: false, received: vec![] }
    }

    /// This peer's loopback candidate, as a browser's `RTCIceCandidateInit` would carry it.
    fn candidate(&mut self) -> Value {
        let candidate = Candidate::host(self.local, "udp").unwrap();
        let line = candidate.to_sdp_string();
        self.rtc.add_local_candidate(candidate);
        self.drain();
        json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0})
    }

    fn add_remote(&mut self, relayed: &Value) {
        let line = relayed["candidate"]["candidate"].as_str().unwrap();
        self.rtc.add_remote_candidate(Candidate::from_sdp_string(line).unwrap());
        self.drain();
    }

    /// Runs the engine until it waits for time or the network: sends what it transmits and
    /// notes the events, writing the greeting when the data channel opens.
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(at) => {
                    self.next_timeout = at;
                    return;
                }
                Output::Transmit(out) => {
                    // Loopback UDP does not block; a lost datagram is retransmitted by ICE.
                    let _ = self.socket.try_send_to(&out.contents, out.destination);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::ChannelOpen(id, _)) => {
                    let mut channel = self.rtc.channel(id).unwrap();
                    channel.write(false, self.greeting.as_bytes()).unwrap();
                }
                Output::Event(Event::ChannelData(data)) => {
                    self.received.push(String::from_utf8_lossy(&data.data).into_owned());
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Feeds one datagram or the engine's timeout, whichever comes first.
    async fn step(&mut self) {
        let mut buf = vec![0; 2000];
        let deadline = tokio::time::Instant::from_std(self.next_timeout);
        let received = tokio::select! {
            received = self.socket.recv_from(&mut buf) => Some(received.unwrap()),
            () = tokio::time::sleep_until(deadline) => None,
        };
        let input = match received {
            Some((n, source)) => Input::Receive(
                Instant::now(),
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents: buf[..n].try_into().unwrap(),
                },
            ),
            None => Input::Timeout(Instant::now()),
        };
        self.rtc.handle_input(input).unwrap();
        self.drain();
    }

    /// Drives the peer until it is connected and heard the other side on the data channel.
    async fn run_until_connected(mut self) -> Peer {
        while !self.connected || self.received.is_empty() {
            self.step().await;
        }
        self
    }
}

async fn next_of(raw: &mut Raw, kind: &str) -> Value {
    raw.recv_until(|f| f["type"] == kind).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_webrtc_peers_connect_through_call_signaling() {
    let server = Server::start().await;
    let mut alice_ws = Raw::connect(&server, "alice", "phone").await;
    let mut bob_ws = Raw::connect(&server, "bob", "laptop").await;
    let mut alice = Peer::new("hello from alice").await;
    let mut bob = Peer::new("hello from bob").await;

    // The caller offers audio and a data channel, and trickles its candidate while it rings.
    let mut change = alice.rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    change.add_channel("dolphin".into());
    let (offer, pending) = change.apply().unwrap();
    alice.drain();
    let offer_sdp = offer.to_sdp_string();
    assert!(!offer_sdp.contains("a=candidate"), "candidates must travel in call.ice: {offer_sdp}");
    let invite = json!({"type":"call.invite","conv":"d:alice:bob","call":"rtc1","media":"audio",
        "sdp": offer_sdp});
    assert_eq!(alice_ws.call(invite).await["type"], "ok");
    let candidate = alice.candidate();
    let ice = json!({"type":"call.ice","call":"rtc1","candidate":candidate});
    assert_eq!(alice_ws.call(ice).await["type"], "ok");

    // The callee answers the offer it was rung with and adds the caller's candidate.
    let rang = next_of(&mut bob_ws, "call.invite").await;
    let offer = SdpOffer::from_sdp_string(rang["sdp"].as_str().unwrap()).unwrap();
    let answer = bob.rtc.sdp_api().accept_offer(offer).unwrap();
    bob.drain();
    assert!(!answer.to_sdp_string().contains("a=candidate"));
    let relayed = next_of(&mut bob_ws, "call.ice").await;
    assert_eq!(relayed["from"], "alice");
    bob.add_remote(&relayed);
    let accept = json!({"type":"call.accept","call":"rtc1","sdp": answer.to_sdp_string()});
    assert_eq!(bob_ws.call(accept).await["type"], "ok");
    let candidate = bob.candidate();
    let ice = json!({"type":"call.ice","call":"rtc1","candidate":candidate});
    assert_eq!(bob_ws.call(ice).await["type"], "ok");

    // The caller applies the answer and the callee's candidate.
    let accepted = next_of(&mut alice_ws, "call.accept").await;
    assert_eq!(accepted["from"], "bob");
    let answer = SdpAnswer::from_sdp_string(accepted["sdp"].as_str().unwrap()).unwrap();
    alice.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    alice.drain();
    let relayed = next_of(&mut alice_ws, "call.ice").await;
    assert_eq!(relayed["from"], "bob");
    alice.add_remote(&relayed);

    // Both peers reach the connected state (ICE and DTLS done) and hear each other.
    let started = Instant::now();
    let both = async {
        tokio::join!(
            tokio::spawn(alice.run_until_connected()),
            tokio::spawn(bob.run_until_connected())
        )
    };
    let (alice, bob) = tokio::time::timeout(WAIT, both)
        .await
        .expect("the peers did not connect: ICE or DTLS failed over loopback");
    let (alice, bob) = (alice.unwrap(), bob.unwrap());
    assert!(alice.rtc.is_alive() && bob.rtc.is_alive());
    assert_eq!(alice.received, ["hello from bob"]);
    assert_eq!(bob.received, ["hello from alice"]);
    eprintln!("peers connected {:?} after the signaling", started.elapsed());

    assert_eq!(alice_ws.call(json!({"type":"call.hangup","call":"rtc1"})).await["type"], "ok");
    assert_eq!(next_of(&mut bob_ws, "call.hangup").await["from"], "alice");
}

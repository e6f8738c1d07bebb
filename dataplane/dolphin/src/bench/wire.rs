//! One load-generator connection, speaking either Dolphin's protocol or Centrifugo's, so that
//! both servers are driven by the same code: connect, join the room, send, and hand every
//! delivered message (its text and its position in the room) to the caller.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::server::Target;

/// What a connection reports about its own sends.
#[derive(Debug)]
pub enum Event {
    /// The server took a send (`accepted`, or a publish reply).
    Taken,
    /// The server refused a send or another request.
    Refused(String),
}

/// What one connection saw delivered, kept in its own task so that counting costs no
/// locking: latency from the send (the text carries the send time), and the checks.
#[derive(Debug)]
pub struct Deliveries {
    pub latency: hdrhistogram::Histogram<u64>,
    /// Distinct messages delivered.
    pub unique: u64,
    /// Deliveries of a message already delivered to this connection.
    pub duplicates: u64,
    /// Deliveries whose position in the room was not after the previous one's.
    pub out_of_order: u64,
    last_position: u64,
    /// Per sender, a bit per message number seen.
    seen: Vec<(u64, Vec<u64>)>,
}

impl Deliveries {
    fn new() -> Self {
        Deliveries {
            latency: super::latency_histogram(),
            unique: 0,
            duplicates: 0,
            out_of_order: 0,
            last_position: 0,
            seen: Vec::new(),
        }
    }

    /// Marks message `n` of `sender` as seen; false if it already was. A room has a few
    /// senders and a sender numbers its messages from 0, so a short list of bit sets is
    /// cheaper than hashing every delivery.
    fn first_sight(&mut self, sender: u64, n: u64) -> bool {
        let index = match self.seen.iter().position(|(s, _)| *s == sender) {
            Some(index) => index,
            None => {
                self.seen.push((sender, Vec::new()));
                self.seen.len() - 1
            }
        };
        let bits = &mut self.seen[index].1;
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let first = bits[word] & bit == 0;
        bits[word] |= bit;
        first
    }

    /// Records a delivery of `text` (`sender:n:sent_micros`, see [`say`]) at `position`.
    fn record(&mut self, text: &str, position: u64, clock: &super::Clock) {
        let mut parts = text.splitn(3, ':');
        let (Some(sender), Some(n), Some(sent)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        let (Ok(sender), Ok(n), Ok(sent)) =
            (sender.parse::<u64>(), n.parse::<u64>(), sent.parse::<u64>())
        else {
            return;
        };
        if !self.first_sight(sender, n) {
            self.duplicates += 1;
            return;
        }
        self.unique += 1;
        if position <= self.last_position {
            self.out_of_order += 1;
        }
        self.last_position = position;
        let micros = clock.micros().saturating_sub(sent).max(1);
        let _ = self.latency.record(micros.min(60_000_000));
    }
}

/// The text of message `n` of `sender`, stamped with the time it is sent.
pub fn say(sender: u64, n: u64, clock: &super::Clock) -> String {
    format!("{sender}:{n}:{}", clock.micros())
}

/// Opens a connection for `url` (see `Server::url`) and completes the protocol's handshake;
/// returns the sender of texts to say in the room, and the task that ends, with what it saw
/// delivered, when the connection closes or that sender is dropped. Replies to its own sends
/// go to `events`.
pub async fn connect(
    target: Target,
    url: &str,
    room: String,
    events: mpsc::UnboundedSender<Event>,
    clock: super::Clock,
) -> anyhow::Result<(mpsc::UnboundedSender<String>, tokio::task::JoinHandle<Deliveries>)> {
    let (url, token) = match url.split_once('#') {
        Some((url, token)) => (url.to_owned(), Some(token.to_owned())),
        None => (url.to_owned(), None),
    };
    let mut ws = tokio::time::timeout(Duration::from_secs(30), open(&url))
        .await
        .context("the WebSocket connect timed out")??;
    match target {
        Target::Dolphin => {
            // The server speaks first.
            let hello = next_text(&mut ws).await?;
            if !hello.contains("\"hello\"") {
                bail!("expected hello, got {hello}");
            }
        }
        Target::Centrifugo => {
            let token = token.context("a Centrifugo URL carries its token")?;
            let connect = json!({"id": 1, "connect": {"token": token, "name": "bench"}});
            ws.send(Message::Text(connect.to_string().into())).await?;
            let reply = next_text(&mut ws).await?;
            if !reply.contains("\"connect\"") {
                bail!("Centrifugo refused the connection: {reply}");
            }
            let subscribe = json!({"id": 2, "subscribe": {"channel": room}});
            ws.send(Message::Text(subscribe.to_string().into())).await?;
            let reply = next_text(&mut ws).await?;
            if !reply.contains("\"subscribe\"") {
                bail!("Centrifugo refused the subscription: {reply}");
            }
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let task = tokio::spawn(async move {
        let mut deliveries = Deliveries::new();
        let mut next_id = 10u64;
        loop {
            tokio::select! {
                outgoing = rx.recv() => {
                    let Some(text) = outgoing else { break };
                    next_id += 1;
                    let frame = match target {
                        Target::Dolphin => json!({
                            "type": "send", "rid": next_id.to_string(), "conv": room,
                            "cid": format!("c{next_id}"),
                            "body": {"kind": "text", "text": text},
                        }).to_string(),
                        Target::Centrifugo => json!({
                            "id": next_id, "publish": {"channel": room, "data": {"text": text}},
                        }).to_string(),
                    };
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
                incoming = ws.next() => {
                    let text = match incoming {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(_)) => continue,
                        _ => break,
                    };
                    // Centrifugo may put several replies in one frame, one per line.
                    for line in text.split('\n').filter(|l| !l.is_empty()) {
                        if target == Target::Centrifugo && line == "{}" {
                            // A ping: answer with a pong, or the server disconnects.
                            if ws.send(Message::Text("{}".into())).await.is_err() {
                                return deliveries;
                            }
                            continue;
                        }
                        if let Some((text, position)) = delivered(target, line) {
                            deliveries.record(text, position, &clock);
                            continue;
                        }
                        match parse(target, line) {
                            Some(Parsed::Delivered { text, position }) => {
                                deliveries.record(&text, position, &clock);
                            }
                            Some(Parsed::Event(event)) => {
                                let _ = events.send(event);
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        deliveries
    });
    Ok((tx, task))
}

/// A WebSocket connection of the load generator.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url` with a small read buffer. The library's default buffer is
/// 128 KiB, zeroed before every read: with a thousand connections each receiving a few
/// hundred small frames a second, that zeroing alone took a quarter of the load generator's
/// core, and its delays were measured as the server's latency.
pub async fn open(url: &str) -> anyhow::Result<Socket> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false).await?;
    Ok(ws)
}

enum Parsed {
    Delivered { text: String, position: u64 },
    Event(Event),
}

async fn next_text<S>(ws: &mut S) -> anyhow::Result<String>
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("the server did not answer in time")?
            .context("the server closed the connection")??;
        if let Message::Text(text) = message {
            return Ok(text.to_string());
        }
    }
}

/// The number after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits = &line[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The string after `key` in `line`, up to the next quote (the benchmark's texts hold only
/// digits and colons, so no escapes).
fn text_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    Some(&rest[..rest.find('"')?])
}

/// A delivered message, read by scanning rather than by a JSON parser: the load generator
/// handles every delivery of the run on its own cores, and a full parse per delivery made it,
/// rather than the server, the bottleneck at high rates.
fn delivered(target: Target, line: &str) -> Option<(&str, u64)> {
    let (is_delivery, position_key) = match target {
        Target::Dolphin => (line.starts_with(r#"{"type":"msg""#), r#""seq":"#),
        Target::Centrifugo => (line.starts_with(r#"{"push":"#), r#""offset":"#),
    };
    if !is_delivery {
        return None;
    }
    Some((text_after(line, r#""text":""#)?, number_after(line, position_key).unwrap_or(0)))
}

fn parse(target: Target, line: &str) -> Option<Parsed> {
    let value: Value = serde_json::from_str(line).ok()?;
    match target {
        Target::Dolphin => match value["type"].as_str()? {
            "msg" => Some(Parsed::Delivered {
                text: value["body"]["text"].as_str()?.to_owned(),
                position: value["seq"].as_u64()?,
            }),
            "accepted" => Some(Parsed::Event(Event::Taken)),
            "error" | "rejected" => {
                Some(Parsed::Event(Event::Refused(value["code"].as_str()?.to_owned())))
            }
            _ => None,
        },
        Target::Centrifugo => {
            if let Some(publication) = value.get("push").and_then(|p| p.get("pub")) {
                return Some(Parsed::Delivered {
                    text: publication["data"]["text"].as_str()?.to_owned(),
                    position: publication["offset"].as_u64().unwrap_or(0),
                });
            }
            if value.get("publish").is_some() {
                return Some(Parsed::Event(Event::Taken));
            }
            value.get("error").map(|error| Parsed::Event(Event::Refused(error.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_count_duplicates_and_disorder_per_sender() {
        let clock = super::super::Clock::new();
        let mut deliveries = Deliveries::new();
        deliveries.record("3:0:0", 1, &clock);
        deliveries.record("7:0:0", 2, &clock);
        deliveries.record("3:130:0", 3, &clock);
        // The same message again, and one from another sender with the same number.
        deliveries.record("3:130:0", 4, &clock);
        deliveries.record("7:130:0", 5, &clock);
        // A position that does not move forward.
        deliveries.record("3:1:0", 5, &clock);
        assert_eq!(deliveries.unique, 5);
        assert_eq!(deliveries.duplicates, 1);
        assert_eq!(deliveries.out_of_order, 1);
        assert_eq!(deliveries.latency.len(), 5);
    }

    #[test]
    fn deliveries_are_found_by_scanning_either_protocol() {
        let dolphin =
            r#"{"type":"msg","conv":"g1","seq":42,"body":{"kind":"text","text":"1:2:3"}}"#;
        assert_eq!(delivered(Target::Dolphin, dolphin), Some(("1:2:3", 42)));
        let centrifugo = r#"{"push":{"channel":"r","pub":{"data":{"text":"4:5:6"},"offset":9}}}"#;
        assert_eq!(delivered(Target::Centrifugo, centrifugo), Some(("4:5:6", 9)));
        assert_eq!(delivered(Target::Dolphin, r#"{"type":"accepted","rid":"1"}"#), None);
    }
}

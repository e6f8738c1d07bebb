//! Putting pushed and fetched messages of one conversation in seq order, without repeats, and
//! noticing the gaps that must be fetched.

use std::collections::BTreeMap;

use dolphin_protocol::Message;

/// What the client knows of one conversation.
#[derive(Debug, Default)]
pub struct ConvOrder {
    /// The newest seq handed to the application; every seq up to it was handed over once.
    pub last: u64,
    /// Messages received ahead of a gap, waiting for it to be filled.
    ahead: BTreeMap<u64, Message>,
    /// Whether a fetch for the gap is under way.
    pub fetching: bool,
}

impl ConvOrder {
    /// A conversation whose messages up to `last` are already known.
    pub fn starting_at(last: u64) -> Self {
        ConvOrder { last, ..Default::default() }
    }

    /// Takes in a message; returns the messages now ready for the application, in order.
    pub fn offer(&mut self, message: Message) -> Vec<Message> {
        if message.seq > self.last {
            self.ahead.entry(message.seq).or_insert(message);
        }
        self.ready()
    }

    /// Skips everything up to `seq`: a member sees nothing before the message that added
    /// them, so a fetch that starts later than `last + 1` closes the gap below it.
    pub fn skip_to(&mut self, seq: u64) {
        if seq > self.last + 1 {
            self.last = seq - 1;
        }
    }

    fn ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() <= self.last {
                entry.remove();
            } else if *entry.key() == self.last + 1 {
                self.last += 1;
                out.push(entry.remove());
            } else {
                break;
            }
        }
        out
    }

    /// Whether messages are waiting behind a gap (or `max_seq` is known to be past `last`).
    pub fn has_gap(&self, max_seq: u64) -> bool {
        !self.ahead.is_empty() || max_seq > self.last
    }

    /// The seq the gap ends before, if messages wait behind it.
    pub fn gap_end(&self) -> Option<u64> {
        self.ahead.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dolphin_protocol::Body;

    fn msg(seq: u64) -> Message {
        Message {
            conv: "g:1".into(),
            seq,
            from: "a".into(),
            device: "d".into(),
            cid: format!("c{seq}"),
            ts: 0,
            body: Body::Text { text: String::new() },
        }
    }

    fn seqs(messages: Vec<Message>) -> Vec<u64> {
        messages.into_iter().map(|m| m.seq).collect()
    }

    #[test]
    fn messages_in_order_pass_straight_through() {
        let mut order = ConvOrder::default();
        assert_eq!(seqs(order.offer(msg(1))), [1]);
        assert_eq!(seqs(order.offer(msg(2))), [2]);
    }

    #[test]
    fn repeats_are_dropped() {
        let mut order = ConvOrder::default();
        order.offer(msg(1));
        assert!(order.offer(msg(1)).is_empty());
    }

    #[test]
    fn messages_after_a_gap_wait_for_it() {
        let mut order = ConvOrder::starting_at(3);
        assert!(order.offer(msg(6)).is_empty());
        assert_eq!(order.gap_end(), Some(6));
        assert!(order.has_gap(6));
        assert_eq!(seqs(order.offer(msg(4))), [4]);
        assert_eq!(seqs(order.offer(msg(5))), [5, 6]);
        assert!(!order.has_gap(6));
    }

    #[test]
    fn skipping_closes_gaps_before_a_join() {
        let mut order = ConvOrder::default();
        order.offer(msg(9));
        order.skip_to(8);
        assert_eq!(seqs(order.offer(msg(8))), [8, 9]);
    }
}

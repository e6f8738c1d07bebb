//! The shapes of user, device, group and client message ids, and of conversation ids.
//!
//! Conversation ids carry their kind: `d:<a>:<b>` for a direct conversation between the users
//! `a` and `b` sorted bytewise, `g:<id>` for a group. Because user ids never contain `:`, a
//! conversation id splits into its parts without ambiguity.

use thiserror::Error;

/// The longest user, device or group id.
pub const MAX_ID_LEN: usize = 64;

/// The longest client message id, in characters.
pub const MAX_CID_LEN: usize = 64;

/// Why an id was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("{what} must be 1 to 64 characters of A-Z a-z 0-9 _ . @ -, got {value:?}")]
    BadId { what: &'static str, value: String },
    #[error("cid must be 1 to 64 printable characters")]
    BadCid,
    #[error("conversation id must be d:<user>:<user> (sorted) or g:<id>, got {0:?}")]
    BadConv(String),
}

/// Whether `s` is a well-formed user, device or group id: 1 to 64 characters of
/// `[A-Za-z0-9_.@-]`.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// Checks a user id.
pub fn check_user(s: &str) -> Result<(), IdError> {
    if is_valid_id(s) { Ok(()) } else { Err(IdError::BadId { what: "user id", value: s.into() }) }
}

/// Checks a device id.
pub fn check_device(s: &str) -> Result<(), IdError> {
    if is_valid_id(s) { Ok(()) } else { Err(IdError::BadId { what: "device id", value: s.into() }) }
}

/// Checks a client message id: 1 to 64 characters, none of them a control character.
pub fn check_cid(s: &str) -> Result<(), IdError> {
    let count = s.chars().count();
    if (1..=MAX_CID_LEN).contains(&count) && !s.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(IdError::BadCid)
    }
}

/// A parsed conversation id, borrowing from the string it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvRef<'a> {
    /// A direct conversation between two users, `a <= b` bytewise. Both may be the same user:
    /// a conversation with oneself is a notebook synchronised across one's devices.
    Direct(&'a str, &'a str),
    /// A group, by its id.
    Group(&'a str),
}

impl<'a> ConvRef<'a> {
    /// Parses and validates a conversation id.
    pub fn parse(s: &'a str) -> Result<Self, IdError> {
        let bad = || IdError::BadConv(s.to_owned());
        if let Some(rest) = s.strip_prefix("d:") {
            let (a, b) = rest.split_once(':').ok_or_else(bad)?;
            if is_valid_id(a) && is_valid_id(b) && a <= b {
                return Ok(ConvRef::Direct(a, b));
            }
            return Err(bad());
        }
        if let Some(id) = s.strip_prefix("g:")
            && is_valid_id(id)
        {
            return Ok(ConvRef::Group(id));
        }
        Err(bad())
    }

    /// Whether `user` is one of the two parties of a direct conversation; always false for a
    /// group, whose members only the sequencer knows.
    pub fn is_party(&self, user: &str) -> bool {
        matches!(self, ConvRef::Direct(a, b) if *a == user || *b == user)
    }

    /// The other party of a direct conversation, seen from `user`.
    pub fn peer(&self, user: &str) -> Option<&'a str> {
        match *self {
            ConvRef::Direct(a, b) if a == user => Some(b),
            ConvRef::Direct(a, b) if b == user => Some(a),
            _ => None,
        }
    }
}

/// The id of the direct conversation between two users, in either order.
pub fn direct_conv(a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("d:{lo}:{hi}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet_and_length() {
        assert!(is_valid_id("alice"));
        assert!(is_valid_id("a.b@c-d_e9"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("al ice"));
        assert!(!is_valid_id("al:ice"));
        assert!(!is_valid_id("é"));
    }

    #[test]
    fn direct_conversation_ids_must_be_sorted() {
        assert_eq!(ConvRef::parse("d:alice:bob"), Ok(ConvRef::Direct("alice", "bob")));
        assert!(ConvRef::parse("d:bob:alice").is_err());
        assert!(ConvRef::parse("d:alice").is_err());
        assert!(ConvRef::parse("d:alice:bob:carol").is_err());
        assert_eq!(direct_conv("bob", "alice"), "d:alice:bob");
    }

    #[test]
    fn group_ids_and_unknown_prefixes() {
        assert_eq!(ConvRef::parse("g:7f3a"), Ok(ConvRef::Group("7f3a")));
        assert!(ConvRef::parse("g:").is_err());
        assert!(ConvRef::parse("x:1").is_err());
    }

    #[test]
    fn peers_of_a_direct_conversation() {
        let conv = ConvRef::parse("d:alice:bob").unwrap();
        assert_eq!(conv.peer("alice"), Some("bob"));
        assert_eq!(conv.peer("bob"), Some("alice"));
        assert_eq!(conv.peer("carol"), None);
        assert!(conv.is_party("bob"));
    }

    #[test]
    fn cids_are_short_and_printable() {
        assert!(check_cid("c-88").is_ok());
        assert!(check_cid(&"é".repeat(64)).is_ok());
        assert!(check_cid("").is_err());
        assert!(check_cid(&"x".repeat(65)).is_err());
        assert!(check_cid("a\nb").is_err());
    }
}

//! Message bodies: what a message says, tagged by `kind`.

use serde::{Deserialize, Serialize};

/// The content of a message. Clients write every kind except `system`, `call` and `recalled`,
/// which only the server writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Text {
        text: String,
    },
    Image {
        file: String,
        width: u32,
        height: u32,
    },
    File {
        file: String,
        name: String,
        size: u64,
        mime: String,
    },
    Audio {
        file: String,
        duration_ms: u64,
    },
    Video {
        file: String,
        duration_ms: u64,
    },
    Location {
        lat: f64,
        lon: f64,
        #[serde(default)]
        label: String,
    },
    Card {
        user: String,
    },
    Custom {
        data: serde_json::Value,
    },
    System(SystemBody),
    Call {
        call: String,
        media: Media,
        outcome: CallOutcome,
        duration_ms: u64,
    },
    Recalled,
}

impl Body {
    /// Whether only the server may write a body of this kind.
    pub fn is_server_only(&self) -> bool {
        matches!(self, Body::System(_) | Body::Call { .. } | Body::Recalled)
    }

    /// The file a body refers to, for access checks on downloads.
    pub fn file(&self) -> Option<&str> {
        match self {
            Body::Image { file, .. }
            | Body::File { file, .. }
            | Body::Audio { file, .. }
            | Body::Video { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The `kind` tag, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Text { .. } => "text",
            Body::Image { .. } => "image",
            Body::File { .. } => "file",
            Body::Audio { .. } => "audio",
            Body::Video { .. } => "video",
            Body::Location { .. } => "location",
            Body::Card { .. } => "card",
            Body::Custom { .. } => "custom",
            Body::System(_) => "system",
            Body::Call { .. } => "call",
            Body::Recalled => "recalled",
        }
    }
}

/// A message the server writes into a conversation so that a change of the conversation is
/// ordered with the messages around it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemBody {
    pub event: SystemEvent,
    /// The users the event concerns (added, removed, who left, all members at creation).
    #[serde(default)]
    pub users: Vec<String>,
    /// The seq of the recalled message, for `recalled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The group's title, for `created`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// What a system message records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemEvent {
    Created,
    MemberAdded,
    MemberRemoved,
    MemberLeft,
    Recalled,
}

/// The media of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Media {
    Audio,
    Video,
}

/// How a call ended, as recorded in its `call` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// Answered, then hung up.
    Completed,
    /// Nobody answered before the ring timeout.
    Missed,
    /// The callee refused.
    Rejected,
    /// The caller hung up before anyone answered.
    Cancelled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_tagged_by_kind() {
        let body: Body = serde_json::from_str(r#"{"kind":"text","text":"hi"}"#).unwrap();
        assert_eq!(body, Body::Text { text: "hi".into() });
        let json = serde_json::to_string(&Body::Recalled).unwrap();
        assert_eq!(json, r#"{"kind":"recalled"}"#);
    }

    #[test]
    fn system_bodies_keep_their_fields_beside_the_kind() {
        let body = Body::System(SystemBody {
            event: SystemEvent::Recalled,
            users: vec![],
            seq: Some(42),
            title: None,
        });
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(json, r#"{"kind":"system","event":"recalled","users":[],"seq":42}"#);
        assert_eq!(serde_json::from_str::<Body>(&json).unwrap(), body);
    }

    #[test]
    fn unknown_fields_in_a_body_are_ignored() {
        let body: Body =
            serde_json::from_str(r#"{"kind":"card","user":"bob","extra":[1,2]}"#).unwrap();
        assert_eq!(body, Body::Card { user: "bob".into() });
    }

    #[test]
    fn custom_bodies_carry_any_json() {
        let body: Body =
            serde_json::from_str(r#"{"kind":"custom","data":{"a":[1,null,"x"]}}"#).unwrap();
        let packed = rmp_serde::to_vec_named(&body).unwrap();
        assert_eq!(rmp_serde::from_slice::<Body>(&packed).unwrap(), body);
    }
}

//! Frames to bytes and back: JSON in WebSocket text frames, or MessagePack in binary frames
//! for clients that chose the `dolphin.v1.msgpack` subprotocol.
//!
//! Both encodings come from the same serde types, and MessagePack keeps field names (maps,
//! not arrays), so the two carry exactly the same objects.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::frames::{CLIENT_FRAME_TYPES, ClientFrame};

/// How frames of one connection are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// One JSON object per WebSocket text frame.
    Json,
    /// One MessagePack map per WebSocket binary frame.
    MsgPack,
}

/// A frame that could not be decoded, with what could be salvaged for the `error` reply.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{reason}")]
pub struct DecodeError {
    /// The request id, when the frame had a readable one.
    pub rid: Option<String>,
    /// Whether the frame named a `type` that this protocol version does not know.
    pub unknown_type: bool,
    /// What was wrong, for a person.
    pub reason: String,
}

/// A value that could not be encoded. Only a bug makes this happen: every frame type encodes.
#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("failed to encode a frame as JSON")]
    Json(#[from] serde_json::Error),
    #[error("failed to encode a frame as MessagePack")]
    MsgPack(#[from] rmp_serde::encode::Error),
}

/// Encodes any frame (or other value) in the given encoding.
pub fn encode<T: Serialize + ?Sized>(
    value: &T,
    encoding: Encoding,
) -> Result<Vec<u8>, EncodeError> {
    Ok(match encoding {
        Encoding::Json => serde_json::to_vec(value)?,
        Encoding::MsgPack => rmp_serde::to_vec_named(value)?,
    })
}

/// Decodes any value from the given encoding.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], encoding: Encoding) -> Result<T, String> {
    match encoding {
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
    }
}

/// Decodes a client frame. On failure, looks at the frame as a plain object to tell an unknown
/// `type` from a malformed frame and to recover the `rid` for the reply; the slower second
/// look happens only for bad frames.
pub fn decode_client(bytes: &[u8], encoding: Encoding) -> Result<ClientFrame, DecodeError> {
    let reason = match decode::<ClientFrame>(bytes, encoding) {
        Ok(frame) => return Ok(frame),
        Err(reason) => reason,
    };
    let Ok(serde_json::Value::Object(object)) = decode::<serde_json::Value>(bytes, encoding) else {
        return Err(DecodeError {
            rid: None,
            unknown_type: false,
            reason: "a frame must be one object".into(),
        });
    };
    let rid = object.get("rid").and_then(|rid| rid.as_str()).map(str::to_owned);
    match object.get("type") {
        Some(serde_json::Value::String(kind)) if !CLIENT_FRAME_TYPES.contains(&kind.as_str()) => {
            Err(DecodeError { rid, unknown_type: true, reason: format!("unknown type {kind:?}") })
        }
        Some(serde_json::Value::String(kind)) => Err(DecodeError {
            rid,
            unknown_type: false,
            reason: format!("malformed {kind}: {reason}"),
        }),
        _ => Err(DecodeError {
            rid,
            unknown_type: false,
            reason: "a frame needs a string type".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::Body;
    use crate::frames::*;

    #[test]
    fn send_frames_decode_from_the_protocol_example() {
        let json = br#"{"type":"send","rid":"r1","conv":"g:7f3a","cid":"c-88",
            "body":{"kind":"text","text":"hi"}}"#;
        let frame = decode_client(json, Encoding::Json).unwrap();
        assert_eq!(
            frame,
            ClientFrame::Send(Send {
                rid: "r1".into(),
                conv: "g:7f3a".into(),
                cid: "c-88".into(),
                body: Body::Text { text: "hi".into() },
            })
        );
    }

    #[test]
    fn replies_put_the_type_first() {
        let frame = ServerFrame::Accepted(Accepted { rid: "r1".into(), cid: "c-88".into() });
        let json = String::from_utf8(encode(&frame, Encoding::Json).unwrap()).unwrap();
        assert_eq!(json, r#"{"type":"accepted","rid":"r1","cid":"c-88"}"#);
    }

    #[test]
    fn errors_without_a_rid_carry_null() {
        let frame = ServerFrame::error(None, crate::ErrorCode::BadRequest, "no");
        let json = String::from_utf8(encode(&frame, Encoding::Json).unwrap()).unwrap();
        assert_eq!(json, r#"{"type":"error","rid":null,"code":"bad_request","message":"no"}"#);
    }

    #[test]
    fn unknown_types_are_told_apart_from_malformed_frames() {
        let err = decode_client(br#"{"type":"dance","rid":"r9"}"#, Encoding::Json).unwrap_err();
        assert!(err.unknown_type);
        assert_eq!(err.rid.as_deref(), Some("r9"));

        let err = decode_client(br#"{"type":"send","rid":"r2"}"#, Encoding::Json).unwrap_err();
        assert!(!err.unknown_type);
        assert_eq!(err.rid.as_deref(), Some("r2"));
        assert!(err.reason.contains("malformed send"), "{}", err.reason);

        let err = decode_client(b"not json", Encoding::Json).unwrap_err();
        assert_eq!(err.rid, None);
        let err = decode_client(br#"{"rid":"r3"}"#, Encoding::Json).unwrap_err();
        assert_eq!(err.rid.as_deref(), Some("r3"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let frame =
            decode_client(br#"{"type":"ping","rid":"r1","future":{"x":1}}"#, Encoding::Json)
                .unwrap();
        assert_eq!(frame, ClientFrame::Ping(Ping { rid: "r1".into() }));
    }

    #[test]
    fn msgpack_carries_the_same_objects_as_json() {
        let frame = ClientFrame::Fetch(Fetch {
            rid: "r2".into(),
            conv: "g:7f3a".into(),
            after: Some(40),
            before: None,
            limit: Some(100),
        });
        let packed = encode(&frame, Encoding::MsgPack).unwrap();
        assert_eq!(decode_client(&packed, Encoding::MsgPack).unwrap(), frame);
        let as_json: serde_json::Value = decode(&packed, Encoding::MsgPack).unwrap();
        assert_eq!(as_json["type"], "fetch");
        assert_eq!(as_json["after"], 40);

        let err = decode_client(
            &encode(&serde_json::json!({"type":"nope","rid":"r5"}), Encoding::MsgPack).unwrap(),
            Encoding::MsgPack,
        )
        .unwrap_err();
        assert!(err.unknown_type);
        assert_eq!(err.rid.as_deref(), Some("r5"));
    }

    #[test]
    fn every_server_frame_round_trips_in_both_encodings() {
        let frames = vec![
            ServerFrame::Hello(Hello {
                user: "alice".into(),
                device: "phone".into(),
                epoch: "e1".into(),
                heartbeat_ms: 30_000,
            }),
            ServerFrame::Msg(Message {
                conv: "d:alice:bob".into(),
                seq: 1,
                from: "alice".into(),
                device: "phone".into(),
                cid: "c1".into(),
                ts: 1_764_770_000_123,
                body: Body::Location { lat: 1.5, lon: -2.25, label: "here".into() },
            }),
            ServerFrame::Conversations(Conversations {
                rid: "r3".into(),
                next: None,
                items: vec![ConversationItem {
                    conv: "g:1".into(),
                    kind: ConvKind::Group,
                    title: "Team".into(),
                    max_seq: 57,
                    read_seq: 40,
                }],
            }),
            ServerFrame::CallEnded(CallEnded {
                call: "c".into(),
                reason: "answered_elsewhere".into(),
            }),
        ];
        for frame in frames {
            for encoding in [Encoding::Json, Encoding::MsgPack] {
                let bytes = encode(&frame, encoding).unwrap();
                let back: ServerFrame = decode(&bytes, encoding).unwrap();
                assert_eq!(back, frame, "{encoding:?}");
            }
        }
    }
}

//! The error codes of `error` and `rejected` frames.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a request failed or a message was refused. The set is closed in version 1 of the
/// protocol; clients match on it, so a variant is never renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is malformed, of an unknown type, or names something invalid.
    BadRequest,
    /// The credentials are missing, bad or expired.
    Unauthorized,
    /// The user may not do this (for example recall someone else's message).
    Forbidden,
    /// The user is not a member of the conversation.
    NotMember,
    /// Direct messages need friendship under the cluster's policy, and there is none.
    NotFriends,
    /// The conversation, message or object does not exist.
    NotFound,
    /// The body or file is over the limit.
    TooLarge,
    /// The user sends faster than the cluster allows; retry later.
    RateLimited,
    /// The part of the cluster that must answer is not reachable now; retry later.
    Unavailable,
    /// A fault inside the server; retrying may help, and the operators are told.
    Internal,
}

impl ErrorCode {
    /// Every code, for metrics that pre-register one series per code.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotMember,
        ErrorCode::NotFriends,
        ErrorCode::NotFound,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotFriends => "not_friends",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

//! `GET /v1/ice`: the STUN and TURN servers a client gives its peer connection, with TURN
//! credentials that expire.
//!
//! The credentials follow the TURN REST form that TURN servers with a shared secret check
//! (coturn's `use-auth-secret`): the username is `<expiry unix seconds>:<user>` and the
//! password is the base64 HMAC-SHA1 of the username under the shared secret. The TURN server
//! needs no call to Dolphin: it recomputes the HMAC and refuses an expired username.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::server::Edge;

/// How long TURN credentials stay valid by default. A TURN server checks the expiry on every
/// refresh of an allocation, so this bounds the length of a relayed call: a day covers any
/// call while still expiring credentials that leak.
pub const TURN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The ICE servers of a cluster.
#[derive(Clone, Debug)]
pub struct IceConfig {
    /// `stun:` URLs, handed out as they are.
    pub stun_urls: Vec<String>,
    /// `turn:` and `turns:` URLs, handed out with credentials when `turn_secret` is set.
    pub turn_urls: Vec<String>,
    /// The secret shared with the TURN servers.
    pub turn_secret: Option<String>,
    /// How long the credentials handed out stay valid.
    pub turn_ttl: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: TURN_TTL,
        }
    }
}

/// One entry of `ice_servers`, in the shape of WebRTC's `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The reply of `GET /v1/ice`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServers {
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}

/// The TURN REST credential for `user`, valid until `expires` (Unix seconds).
pub fn turn_credential(secret: &[u8], user: &str, expires: u64) -> (String, String) {
    let username = format!("{expires}:{user}");
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

impl IceConfig {
    /// The servers to hand `user` at `now` (Unix seconds).
    pub fn servers_for(&self, user: &str, now: u64) -> IceServers {
        let mut ice_servers = Vec::new();
        if !self.stun_urls.is_empty() {
            ice_servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn_urls.is_empty() {
            let (username, credential) = match &self.turn_secret {
                Some(secret) => {
                    let expires = now + self.turn_ttl.as_secs();
                    let (username, credential) = turn_credential(secret.as_bytes(), user, expires);
                    (Some(username), Some(credential))
                }
                // NOTE: without a secret, TURN URLs are handed out bare, for TURN servers that
                // authenticate some other way; most refuse allocations without credentials.
                None => (None, None),
            };
            ice_servers.push(IceServer { urls: self.turn_urls.clone(), username, credential });
        }
        IceServers { ice_servers, ttl: self.turn_ttl.as_secs() }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenParam {
    token: Option<String>,
}

/// Serves `GET /v1/ice` to a client with a valid token (query or Bearer header), else 401.
pub(crate) async fn serve(
    State(edge): State<Edge>,
    Query(params): Query<TokenParam>,
    headers: HeaderMap,
) -> Response {
    let user = match edge.ctx.config.verifier.authenticate(params.token.as_deref(), &headers) {
        Ok(user) => user,
        Err(error) => return (StatusCode::UNAUTHORIZED, error.to_string()).into_response(),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    Json(edge.ctx.config.calls.ice.servers_for(&user, now)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_the_base64_hmac_sha1_of_the_username() {
        // Computed independently with:
        //   printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac 'turn-secret' -binary \
        //     | base64
        let expected = "P/+m9gKVzGM5rBfJY3JtNseUl3o=";
        let (username, credential) = turn_credential(b"turn-secret", "alice", 1_700_000_000);
        assert_eq!(username, "1700000000:alice");
        assert_eq!(credential, expected);
    }

    #[test]
    fn turn_urls_get_credentials_that_expire_after_the_ttl() {
        let config = IceConfig {
            stun_urls: vec!["stun:stun.example.org:3478".into()],
            turn_urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            turn_secret: Some("s".into()),
            turn_ttl: Duration::from_secs(600),
        };
        let servers = config.servers_for("bob", 1_000);
        assert_eq!(servers.ttl, 600);
        assert_eq!(servers.ice_servers[0].username, None);
        assert_eq!(servers.ice_servers[1].username.as_deref(), Some("1600:bob"));
        assert_eq!(servers.ice_servers[1].credential, Some(turn_credential(b"s", "bob", 1_600).1));
    }
}

//! Who is connecting: JWTs checked before the WebSocket upgrade.
//!
//! HS256 tokens are checked against the cluster's shared secret; RS256 tokens against the
//! configured public keys, any of which may have signed them (so keys can be rotated). The
//! `sub` claim names the user; `exp`, when present, must be in the future.

use std::collections::HashSet;

use dolphin_protocol::ids;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a token was refused.
#[derive(Debug, Error)]
pub enum AuthError {
    #[error("no token: pass ?token= or an Authorization: Bearer header")]
    Missing,
    #[error("failed to verify the token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("tokens signed with {0:?} are not accepted")]
    Algorithm(Algorithm),
    #[error("the token's sub is not a valid user id")]
    BadSubject,
    #[error("failed to load a verification key")]
    BadKey(#[source] jsonwebtoken::errors::Error),
}

/// The claims Dolphin reads and writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

/// Verifies tokens.
#[derive(Clone)]
pub struct Verifier {
    secret: DecodingKey,
    rsa_keys: Vec<DecodingKey>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("rsa_keys", &self.rsa_keys.len()).finish()
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret` and RS256 tokens signed by the owner of
    /// any of the PEM public keys.
    pub fn new(secret: &[u8], rsa_public_pems: &[Vec<u8>]) -> Result<Self, AuthError> {
        let rsa_keys = rsa_public_pems
            .iter()
            .map(|pem| DecodingKey::from_rsa_pem(pem).map_err(AuthError::BadKey))
            .collect::<Result<_, _>>()?;
        Ok(Verifier {
            secret: DecodingKey::from_secret(secret).map_err(AuthError::BadKey)?,
            rsa_keys,
        })
    }

    /// The user an HTTP request is made by: its token is the `token` query parameter
    /// (`query_token`) or else an `Authorization: Bearer` header.
    pub fn authenticate(
        &self,
        query_token: Option<&str>,
        headers: &axum::http::HeaderMap,
    ) -> Result<String, AuthError> {
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let token = query_token.or(bearer).ok_or(AuthError::Missing)?;
        self.verify(token)
    }

    /// The user a token names, if it is valid.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let header = jsonwebtoken::decode_header(token)?;
        let claims = match header.alg {
            Algorithm::HS256 => decode(token, &self.secret, Algorithm::HS256)?,
            Algorithm::RS256 if !self.rsa_keys.is_empty() => {
                let mut last = None;
                let mut found = None;
                for key in &self.rsa_keys {
                    match decode(token, key, Algorithm::RS256) {
                        Ok(claims) => {
                            found = Some(claims);
                            break;
                        }
                        Err(error) => last = Some(error),
                    }
                }
                match (found, last) {
                    (Some(claims), _) => claims,
                    (None, Some(error)) => return Err(error),
                    (None, None) => return Err(AuthError::Algorithm(Algorithm::RS256)),
                }
            }
            other => return Err(AuthError::Algorithm(other)),
        };
        if !ids::is_valid_id(&claims.sub) {
            return Err(AuthError::BadSubject);
        }
        Ok(claims.sub)
    }
}

fn decode(token: &str, key: &DecodingKey, algorithm: Algorithm) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(algorithm);
    // `exp` is checked when present but not required, so that a deployment's own issuer may
    // leave it out; `sub` is always required.
    validation.required_spec_claims = HashSet::from(["sub".to_owned()]);
    validation.leeway = 5;
    Ok(jsonwebtoken::decode::<Claims>(token, key, &validation)?.claims)
}

/// Issues an HS256 token for `user`, valid for `ttl_secs` seconds from `now_secs`.
pub fn issue(secret: &[u8], user: &str, now_secs: u64, ttl_secs: u64) -> Result<String, AuthError> {
    let claims = Claims { sub: user.to_owned(), exp: Some(now_secs + ttl_secs) };
    let key = EncodingKey::from_secret(secret)?;
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn tokens_issued_with_the_secret_verify() {
        let verifier = Verifier::new(b"secret", &[]).unwrap();
        let token = issue(b"secret", "alice", now(), 60).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), "alice");
    }

    #[test]
    fn wrong_secrets_and_expired_tokens_are_refused() {
        let verifier = Verifier::new(b"secret", &[]).unwrap();
        assert!(verifier.verify(&issue(b"other", "alice", now(), 60).unwrap()).is_err());
        assert!(verifier.verify(&issue(b"secret", "alice", now() - 3600, 60).unwrap()).is_err());
        assert!(verifier.verify("not-a-token").is_err());
    }

    #[test]
    fn subjects_must_be_valid_user_ids() {
        let verifier = Verifier::new(b"secret", &[]).unwrap();
        let token = issue(b"secret", "no spaces", now(), 60).unwrap();
        assert!(matches!(verifier.verify(&token), Err(AuthError::BadSubject)));
    }

    #[test]
    fn tokens_without_exp_are_accepted() {
        let verifier = Verifier::new(b"secret", &[]).unwrap();
        let claims = Claims { sub: "bob".into(), exp: None };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret").unwrap(),
        )
        .unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), "bob");
    }
}

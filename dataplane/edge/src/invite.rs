//! Friend invite codes: signed, expiring names of a user, as text, link and QR code.
//!
//! A code is a compact JWT (HS256) whose `sub` is the inviting user, `exp` its expiry and
//! `use` is `invite`. It is signed with a key derived from the cluster's token secret, so
//! every edge can check a code any edge issued, and a code can never pass as a login token
//! (nor a login token as a code): the keys differ and the `use` claim is required.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dolphin_protocol::ids;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use qrcode::QrCode;
use qrcode::render::svg;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How long a code is valid unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The scheme and path of an invite link; the code follows.
pub const LINK_PREFIX: &str = "dolphin://add-friend/";

/// Prepended to the token secret to make the invite key: a different key, so that neither
/// kind of token verifies as the other.
const KEY_CONTEXT: &[u8] = b"dolphin invite code v1\0";

/// Why a code was refused.
#[derive(Debug, Error)]
pub enum InviteError {
    #[error("the invite code has expired")]
    Expired,
    #[error("the invite code is not valid: {0}")]
    Invalid(String),
    #[error("failed to make the invite key")]
    Key(#[source] jsonwebtoken::errors::Error),
    #[error("failed to sign an invite code")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("failed to draw the invite's QR code")]
    Qr(#[source] qrcode::types::QrError),
}

#[derive(Debug, Serialize, Deserialize)]
struct InviteClaims {
    sub: String,
    exp: u64,
    #[serde(rename = "use")]
    usage: String,
}

const USAGE: &str = "invite";

/// A code with its link and QR code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub code: String,
    pub link: String,
    pub qr_svg: String,
}

/// Issues and checks invite codes.
#[derive(Clone)]
pub struct Invites {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl: Duration,
}

impl std::fmt::Debug for Invites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invites").field("ttl", &self.ttl).finish()
    }
}

impl Invites {
    /// Codes signed with a key derived from the cluster's token secret.
    pub fn from_token_secret(secret: &[u8]) -> Result<Self, InviteError> {
        let key = [KEY_CONTEXT, secret].concat();
        Ok(Invites {
            encoding: EncodingKey::from_secret(&key).map_err(InviteError::Key)?,
            decoding: DecodingKey::from_secret(&key).map_err(InviteError::Key)?,
            ttl: DEFAULT_TTL,
        })
    }

    /// A new code naming `user`, valid for the configured time from now.
    pub fn issue(&self, user: &str) -> Result<Issued, InviteError> {
        self.issue_at(user, unix_now())
    }

    /// A new code naming `user`, as if issued at `now` (seconds since the Unix epoch).
    pub fn issue_at(&self, user: &str, now: u64) -> Result<Issued, InviteError> {
        let exp = now.saturating_add(self.ttl.as_secs());
        let claims = InviteClaims { sub: user.to_owned(), exp, usage: USAGE.to_owned() };
        let code = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(InviteError::Sign)?;
        let link = format!("{LINK_PREFIX}{code}");
        let qr_svg = qr_svg(&link)?;
        Ok(Issued { code, link, qr_svg })
    }

    /// The user a code names, if it is genuine and not expired. A whole link is accepted too,
    /// as scanners hand over what the QR code holds.
    pub fn check(&self, code: &str) -> Result<String, InviteError> {
        let code = code.trim();
        let code = code.strip_prefix(LINK_PREFIX).unwrap_or(code);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<InviteClaims>(code, &self.decoding, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => InviteError::Expired,
                _ => InviteError::Invalid(error.to_string()),
            })?;
        if data.claims.usage != USAGE {
            return Err(InviteError::Invalid("not an invite code".into()));
        }
        if !ids::is_valid_id(&data.claims.sub) {
            return Err(InviteError::Invalid("it names no valid user".into()));
        }
        Ok(data.claims.sub)
    }
}

/// The QR code of `text` as an `<svg>` element, without an XML declaration: the protocol
/// shows the value beginning with `<svg`, so that a client can put it inline in a page (a
/// declaration there is invalid markup). It is still a complete SVG document on its own.
pub fn qr_svg(text: &str) -> Result<String, InviteError> {
    let code = QrCode::new(text.as_bytes()).map_err(InviteError::Qr)?;
    let document = code
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    let element = match document.find("<svg") {
        Some(start) => document[start..].to_owned(),
        None => document,
    };
    Ok(element)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_names_its_user_and_a_link_works_as_well() {
        let invites = Invites::from_token_secret(b"secret").unwrap();
        let issued = invites.issue("alice").unwrap();
        assert_eq!(invites.check(&issued.code).unwrap(), "alice");
        assert_eq!(invites.check(&issued.link).unwrap(), "alice");
        assert!(issued.qr_svg.starts_with("<svg"), "{}", issued.qr_svg);
        assert!(issued.qr_svg.contains("<rect") || issued.qr_svg.contains("<path"));
    }

    #[test]
    fn a_code_signed_with_another_secret_is_refused() {
        let ours = Invites::from_token_secret(b"secret").unwrap();
        let theirs = Invites::from_token_secret(b"other").unwrap();
        let forged = theirs.issue("alice").unwrap();
        assert!(matches!(ours.check(&forged.code), Err(InviteError::Invalid(_))));
    }

    #[test]
    fn an_expired_code_is_refused_as_expired() {
        let invites = Invites::from_token_secret(b"secret").unwrap();
        let eight_days_ago = unix_now() - 8 * 24 * 3600;
        let issued = invites.issue_at("alice", eight_days_ago).unwrap();
        assert!(matches!(invites.check(&issued.code), Err(InviteError::Expired)));
    }

    #[test]
    fn a_login_token_is_not_an_invite_code() {
        let invites = Invites::from_token_secret(b"secret").unwrap();
        let login = crate::auth::issue(b"secret", "alice", unix_now(), 3600).unwrap();
        assert!(matches!(invites.check(&login), Err(InviteError::Invalid(_))));
    }
}

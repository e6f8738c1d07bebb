//! What is known about a stored file: its id, its name, and the record kept next to its bytes.

use serde::{Deserialize, Serialize};

/// What every file id begins with.
pub const ID_PREFIX: &str = "f_";

/// Random hex digits after the prefix: 128 bits, so that an id cannot be guessed. An id is a
/// capability only together with a token of a user who may read it, but an unguessable id
/// keeps files of one user from being found by enumerating ids.
const ID_HEX_DIGITS: usize = 32;

/// The longest file name accepted, in bytes (the common file-system limit).
pub const MAX_NAME_BYTES: usize = 255;

/// The type given to content whose type neither its bytes nor its name tell.
pub const UNKNOWN_MIME: &str = "application/octet-stream";

/// How many of the first bytes are kept for recognising the content type. Every signature the
/// sniffer knows lies within them.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// The record stored next to each file's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: String,
    /// The user who uploaded it; always allowed to read it.
    pub uploader: String,
    /// The name given at upload.
    pub name: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes; also the download's ETag.
    pub sha256: String,
    pub mime: String,
    /// When the upload completed, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A fresh random file id.
pub fn new_id() -> String {
    let bits: u128 = rand::random();
    format!("{ID_PREFIX}{bits:0width$x}", width = ID_HEX_DIGITS)
}

/// Whether `id` has the shape of a file id. Checked before an id becomes part of a storage
/// path, so that no request can name anything but a file's own objects.
pub fn is_valid_id(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX).is_some_and(|hex| {
        hex.len() == ID_HEX_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Why a file name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("the name parameter is missing: POST /v1/files?name=<file name>")]
    Missing,
    #[error("a file name is 1 to {MAX_NAME_BYTES} bytes")]
    Length,
    #[error("a file name holds no '/', '\\' or control characters")]
    Character,
    #[error("a file name is not '.' or '..'")]
    Dots,
}

/// Checks a file name given at upload: a plain name, never a path.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(NameError::Length);
    }
    if name.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err(NameError::Character);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots);
    }
    Ok(())
}

/// The content type of a file: recognised from its first bytes, else guessed from its name's
/// extension, else [`UNKNOWN_MIME`]. The bytes come first because a name is whatever the
/// uploader typed.
pub fn detect_mime(head: &[u8], name: &str) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    mime_guess::from_path(name).first_raw().unwrap_or(UNKNOWN_MIME).to_owned()
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_valid_and_distinct() {
        let (a, b) = (new_id(), new_id());
        assert!(is_valid_id(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn ids_that_could_escape_their_folder_are_invalid() {
        for id in ["", "f_", "f_../../etc", "x_0123456789abcdef0123456789abcdef", "f_ABC"] {
            assert!(!is_valid_id(id), "{id}");
        }
    }

    #[test]
    fn names_are_plain_names() {
        assert_eq!(check_name("report.pdf"), Ok(()));
        assert_eq!(check_name("résumé 2026.docx"), Ok(()));
        assert_eq!(check_name(""), Err(NameError::Length));
        assert_eq!(check_name(&"a".repeat(256)), Err(NameError::Length));
        assert_eq!(check_name("a/b"), Err(NameError::Character));
        assert_eq!(check_name("a\\b"), Err(NameError::Character));
        assert_eq!(check_name("a\nb"), Err(NameError::Character));
        assert_eq!(check_name(".."), Err(NameError::Dots));
    }

    #[test]
    fn content_wins_over_the_name_and_the_name_over_nothing() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect_mime(png, "notes.txt"), "image/png");
        assert_eq!(detect_mime(b"%PDF-1.7\n", "x.bin"), "application/pdf");
        assert_eq!(detect_mime(b"plain words", "notes.txt"), "text/plain");
        assert_eq!(detect_mime(b"plain words", "noextension"), UNKNOWN_MIME);
    }
}

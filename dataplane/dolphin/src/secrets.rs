//! The secrets and identities `dolphin dev` keeps in its data folder.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// The environment variable that overrides the HS256 secret.
pub const JWT_SECRET_ENV: &str = "DOLPHIN_JWT_SECRET";

/// Reads the text in `path`, or creates the file with `make()` (readable by its owner only)
/// if it does not exist yet.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()));
        }
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let value = make();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file =
        options.open(path).with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(value.as_bytes())?;
    file.sync_all()?;
    Ok(value)
}

/// Random hex of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

/// The HS256 secret: from the environment when set, else the one kept in `data`.
pub fn jwt_secret(data: &Path) -> anyhow::Result<String> {
    if let Ok(secret) = std::env::var(JWT_SECRET_ENV)
        && !secret.is_empty()
    {
        return Ok(secret);
    }
    read_or_create(&data.join("jwt-secret"), || random_hex(32))
}

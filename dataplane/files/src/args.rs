//! Choosing the file store from the command line.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::store::{DEFAULT_MAX_BYTES, FileStore, S3Settings, StoreError};

/// Where files are kept, and the largest one accepted.
#[derive(Clone, Debug, clap::Args)]
pub struct FilesArgs {
    /// A folder for uploaded files. Only processes on this machine see it: use it for
    /// `dolphin dev` (default: `files` in the data folder) or a single edge.
    #[arg(long = "files-dir", env = "DOLPHIN_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// An S3-compatible bucket for uploaded files, `s3://bucket[/prefix]`, shared by every
    /// edge. Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long = "files-url", env = "DOLPHIN_FILES_URL", conflicts_with = "files_dir")]
    pub files_url: Option<String>,
    /// The S3 server's URL (MinIO, Ceph, ...); leave out for AWS.
    #[arg(long = "files-endpoint", env = "DOLPHIN_FILES_ENDPOINT", requires = "files_url")]
    pub files_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long = "files-region", env = "DOLPHIN_FILES_REGION", requires = "files_url")]
    pub files_region: Option<String>,
    /// The largest file accepted, in bytes.
    #[arg(
        long = "max-file-bytes",
        env = "DOLPHIN_MAX_FILE_BYTES",
        default_value_t = DEFAULT_MAX_BYTES
    )]
    pub max_file_bytes: u64,
}

impl Default for FilesArgs {
    fn default() -> Self {
        FilesArgs {
            files_dir: None,
            files_url: None,
            files_endpoint: None,
            files_region: None,
            max_file_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Why the configured file store could not be opened.
#[derive(Debug, Error)]
pub enum FilesArgsError {
    #[error("failed to read --files-url {0:?}: expected s3://bucket[/prefix]")]
    Url(String),
    #[error("--max-file-bytes must be at least 1")]
    ZeroLimit,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FilesArgs {
    /// Opens the configured store: the bucket of `--files-url`, else the folder of
    /// `--files-dir`, else `default_dir`; `None` when none of them is given.
    pub fn open(&self, default_dir: Option<&Path>) -> Result<Option<FileStore>, FilesArgsError> {
        if self.max_file_bytes == 0 {
            return Err(FilesArgsError::ZeroLimit);
        }
        if let Some(url) = &self.files_url {
            let mut settings =
                S3Settings::from_url(url).ok_or_else(|| FilesArgsError::Url(url.clone()))?;
            settings.endpoint = self.files_endpoint.clone();
            settings.region = self.files_region.clone();
            return Ok(Some(FileStore::s3(&settings, self.max_file_bytes)?));
        }
        match self.files_dir.as_deref().or(default_dir) {
            Some(dir) => Ok(Some(FileStore::local(dir, self.max_file_bytes)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_name_a_bucket_and_an_optional_prefix() {
        let plain = S3Settings::from_url("s3://files").unwrap();
        assert_eq!((plain.bucket.as_str(), plain.prefix.as_str()), ("files", ""));
        let nested = S3Settings::from_url("s3://files/team/one/").unwrap();
        assert_eq!((nested.bucket.as_str(), nested.prefix.as_str()), ("files", "team/one"));
        assert!(S3Settings::from_url("s3://").is_none());
        assert!(S3Settings::from_url("https://files").is_none());
    }

    #[test]
    fn a_zero_limit_is_refused() {
        let args = FilesArgs { max_file_bytes: 0, ..FilesArgs::default() };
        assert!(matches!(args.open(None), Err(FilesArgsError::ZeroLimit)));
    }

    #[test]
    fn without_a_bucket_or_folder_there_is_no_store() {
        assert!(FilesArgs::default().open(None).unwrap().is_none());
    }
}

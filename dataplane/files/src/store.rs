//! Where files live: an object store (a local folder or an S3 bucket), written and read as
//! streams so that no file is ever held in memory whole.
//!
//! Each file is two objects: `files/<id>`, its bytes, and `files/<id>.json`, its [`FileMeta`].
//! The record is written only once the bytes are complete, so a file without a record is an
//! upload that never finished, and is never served.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use tracing::warn;

use crate::meta::{self, FileMeta, SNIFF_BYTES};

/// The default largest file, when the cluster sets none.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// Bytes per part of an upload. S3 needs parts of at least 5 MiB (but the last); 8 MiB keeps a
/// 1 GiB file to 128 parts, far below S3's limit of 10 000.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one upload being sent to the store at once. With the part being filled, an upload
/// holds at most (this + 1) × [`PART_BYTES`] in memory, whatever the file's size.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Why the store could not be opened or used.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("failed to create the files folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the object store")]
    Open(#[source] object_store::Error),
    #[error("failed to read or write the object store")]
    Io(#[from] object_store::Error),
    #[error("failed to decode the record of file {id}")]
    Record {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why an upload did not produce a file. None of them leaves anything in the store.
#[derive(Debug, Error)]
pub enum UploadError {
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("failed to read the upload from the client")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where to find an S3-compatible bucket. Credentials come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), or from the
/// instance's role where the platform provides one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// A folder inside the bucket for this cluster's files; empty for the bucket's root.
    pub prefix: String,
    /// The server's URL (MinIO, Ceph, ...); none for AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl S3Settings {
    /// Reads `s3://bucket[/prefix]`.
    pub fn from_url(url: &str) -> Option<S3Settings> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        let prefix = prefix.trim_matches('/').to_owned();
        Some(S3Settings { bucket: bucket.to_owned(), prefix, ..S3Settings::default() })
    }
}

/// The files of a cluster, and the largest one it accepts.
#[derive(Clone, Debug)]
pub struct FileStore {
    store: Arc<dyn ObjectStore>,
    max_bytes: u64,
    /// Where the files are, for logs.
    location: String,
}

impl FileStore {
    /// Files in the folder `dir` (created if missing). Only processes on this machine see
    /// them: for `dolphin dev` and single-edge setups.
    pub fn local(dir: &std::path::Path, max_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(StoreError::Open)?;
        let location = dir.display().to_string();
        Ok(FileStore { store: Arc::new(store), max_bytes, location })
    }

    /// Files in an S3-compatible bucket, which every edge of a cluster shares.
    pub fn s3(settings: &S3Settings, max_bytes: u64) -> Result<Self, StoreError> {
        // TLS to the store uses ring, the provider the rest of the workspace uses; installing
        // it fails only when a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&settings.bucket);
        if let Some(endpoint) = &settings.endpoint {
            builder =
                builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        let bucket = builder.build().map_err(StoreError::Open)?;
        let location = format!("s3://{}/{}", settings.bucket, settings.prefix);
        let store: Arc<dyn ObjectStore> = if settings.prefix.is_empty() {
            Arc::new(bucket)
        } else {
            Arc::new(PrefixStore::new(bucket, settings.prefix.as_str()))
        };
        Ok(FileStore { store, max_bytes, location })
    }

    /// The largest file accepted, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the files are, for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Stores the bytes of `body` as a new file of `uploader` named `name` (already checked),
    /// hashing them and recognising their type on the way.
    ///
    /// # Guarantees
    /// - Memory: at most ([`PARTS_IN_FLIGHT`] + 1) × [`PART_BYTES`] of the file at once.
    /// - The limit is checked as bytes arrive: an oversized body is refused as soon as it
    ///   passes the limit, not after being stored.
    /// - On any error, what was written is aborted: the store holds no trace of the upload
    ///   (unless the abort itself fails, which is logged).
    pub async fn upload<S, E>(
        &self,
        uploader: &str,
        name: &str,
        mut body: S,
        now_ms: i64,
    ) -> Result<FileMeta, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        let id = meta::new_id();
        let path = data_path(&id);
        let upload = self.store.put_multipart(&path).await.map_err(StoreError::from)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut size = 0u64;

        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Ok(chunk)) => chunk,
                Some(Err(error)) => break Some(UploadError::Body(Box::new(error))),
            };
            size += chunk.len() as u64;
            if size > self.max_bytes {
                break Some(UploadError::TooLarge { limit: self.max_bytes });
            }
            hasher.update(&chunk);
            if head.len() < SNIFF_BYTES {
                let take = chunk.len().min(SNIFF_BYTES - head.len());
                head.extend_from_slice(&chunk[..take]);
            }
            if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(StoreError::from(error).into());
            }
            writer.put(chunk);
        };
        if let Some(error) = failure {
            if let Err(abort) = writer.abort().await {
                warn!(file = %id, error = %abort, "failed to abort an upload; parts may remain");
            }
            return Err(error);
        }
        // `finish` aborts the upload itself when completing it fails.
        writer.finish().await.map_err(StoreError::from)?;

        let record = FileMeta {
            id: id.clone(),
            uploader: uploader.to_owned(),
            name: name.to_owned(),
            size,
            sha256: meta::hex(&hasher.finalize()),
            mime: meta::detect_mime(&head, name),
            created_ms: now_ms,
        };
        // Encoding a struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(error) = self.store.put(&record_path(&id), PutPayload::from(json)).await {
            if let Err(delete) = self.store.delete(&path).await {
                warn!(file = %id, error = %delete, "failed to remove the bytes of a failed upload");
            }
            return Err(StoreError::from(error).into());
        }
        Ok(record)
    }

    /// The record of file `id`, if it exists (an invalid id exists nowhere).
    pub async fn meta(&self, id: &str) -> Result<Option<FileMeta>, StoreError> {
        if !meta::is_valid_id(id) {
            return Ok(None);
        }
        let result = match self.store.get(&record_path(id)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let bytes = result.bytes().await?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Record { id: id.to_owned(), source })
    }

    /// The bytes of file `id` in `range` (all of them if `None`), as a stream.
    pub async fn read(
        &self,
        id: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let result = self.store.get_opts(&data_path(id), options).await?;
        match result.payload {
            // A local file is read in large blocks: the store's own stream reads 8 KiB at a
            // time, each on the blocking pool, which caps a download near 100 MB/s.
            GetResultPayload::File(file, _) => {
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(result.range.start)).await.map_err(io_error)?;
                let length = result.range.end - result.range.start;
                let reader = ReaderStream::with_capacity(file.take(length), LOCAL_READ_BYTES);
                Ok(reader.map_err(io_error).boxed())
            }
            GetResultPayload::Stream(stream) => Ok(stream.map_err(StoreError::from).boxed()),
        }
    }

    /// Every object in the store, for tests that check nothing was left behind.
    pub async fn list_all(&self) -> Result<Vec<String>, StoreError> {
        let objects: Vec<_> = self.store.list(None).try_collect().await?;
        Ok(objects.into_iter().map(|o| o.location.to_string()).collect())
    }
}

/// The block size of reads from a local file.
const LOCAL_READ_BYTES: usize = 256 * 1024;

fn io_error(error: std::io::Error) -> StoreError {
    StoreError::Io(object_store::Error::Generic { store: "LocalFileSystem", source: error.into() })
}

fn data_path(id: &str) -> Path {
    Path::from(format!("files/{id}"))
}

fn record_path(id: &str) -> Path {
    Path::from(format!("files/{id}.json"))
}

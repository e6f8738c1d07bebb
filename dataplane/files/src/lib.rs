//! Files: uploads and downloads of the attachments that image, file, audio and video messages
//! name.
//!
//! An upload streams into an object store ([`store`]: a local folder for `dolphin dev`, an
//! S3-compatible bucket for a cluster) in parts, checked against the size limit, hashed and
//! sniffed as it goes, so that memory stays bounded whatever the file's size. A download
//! streams the object back, whole or one byte range. Who may read a file (its uploader, and
//! the members of a conversation in which a message names it) is asked of the rest of the
//! system through [`http::Access`]; the edge answers it from the shards.
//!
//! Start at [`http::router`].

pub mod args;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod store;

pub use args::FilesArgs;
pub use http::{Access, Uploaded, router};
pub use meta::FileMeta;
pub use metrics::FileMetrics;
pub use store::{FileStore, S3Settings, StoreError, UploadError};

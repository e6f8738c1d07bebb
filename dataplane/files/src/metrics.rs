//! The metrics of the file endpoints.

use axum::http::StatusCode;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

const UPLOAD_OUTCOMES: [&str; 6] =
    ["stored", "bad_request", "unauthorized", "too_large", "unavailable", "internal"];

const DOWNLOAD_OUTCOMES: [&str; 8] = [
    "full",
    "partial",
    "not_modified",
    "unauthorized",
    "forbidden",
    "not_found",
    "unsatisfiable",
    "unavailable",
];

/// Uploads and downloads, by outcome, and the bytes they moved.
#[derive(Clone, Debug)]
pub struct FileMetrics {
    /// Uploads by outcome (`stored`, `bad_request`, `unauthorized`, `too_large`,
    /// `unavailable`, `internal`).
    pub uploads: IntCounterVec,
    /// Bytes of stored uploads.
    pub upload_bytes: IntCounter,
    /// Downloads by outcome (`full`, `partial`, `not_modified`, `unauthorized`, `forbidden`,
    /// `not_found`, `unsatisfiable`, `unavailable`).
    pub downloads: IntCounterVec,
    /// Bytes answered to downloads (the bodies' lengths; a client that leaves early reads
    /// fewer).
    pub download_bytes: IntCounter,
}

impl FileMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = FileMetrics {
            uploads: IntCounterVec::new(
                Opts::new("dolphin_files_uploads_total", "File uploads, by outcome."),
                &["outcome"],
            )?,
            upload_bytes: IntCounter::new(
                "dolphin_files_upload_bytes_total",
                "Bytes of files stored by uploads.",
            )?,
            downloads: IntCounterVec::new(
                Opts::new("dolphin_files_downloads_total", "File downloads, by outcome."),
                &["outcome"],
            )?,
            download_bytes: IntCounter::new(
                "dolphin_files_download_bytes_total",
                "Bytes of file content answered to downloads.",
            )?,
        };
        // Every outcome is exported from the start, at zero, so that a rate over it exists
        // before the first upload.
        for outcome in UPLOAD_OUTCOMES {
            metrics.uploads.with_label_values(&[outcome]);
        }
        for outcome in DOWNLOAD_OUTCOMES {
            metrics.downloads.with_label_values(&[outcome]);
        }
        registry.register(Box::new(metrics.uploads.clone()))?;
        registry.register(Box::new(metrics.upload_bytes.clone()))?;
        registry.register(Box::new(metrics.downloads.clone()))?;
        registry.register(Box::new(metrics.download_bytes.clone()))?;
        Ok(metrics)
    }

    /// Counts an upload answered with `status`, of `bytes` when stored.
    pub fn upload(&self, status: StatusCode, bytes: u64) {
        let outcome = match status {
            StatusCode::CREATED => {
                self.upload_bytes.inc_by(bytes);
                "stored"
            }
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        };
        self.uploads.with_label_values(&[outcome]).inc();
    }

    /// Counts a download answered with `status` and a body of `bytes`.
    pub fn download(&self, status: StatusCode, bytes: u64) {
        let outcome = match status {
            StatusCode::OK => "full",
            StatusCode::PARTIAL_CONTENT => "partial",
            StatusCode::NOT_MODIFIED => "not_modified",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::RANGE_NOT_SATISFIABLE => "unsatisfiable",
            _ => "unavailable",
        };
        if matches!(status, StatusCode::OK | StatusCode::PARTIAL_CONTENT) {
            self.download_bytes.inc_by(bytes);
        }
        self.downloads.with_label_values(&[outcome]).inc();
    }
}

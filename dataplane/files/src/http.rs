//! The HTTP side of files: `POST /v1/files?name=..` and `GET /v1/files/{id}`.
//!
//! Errors are JSON objects `{"code": .., "message": ..}` with the protocol's error codes, so a
//! client handles them like the `error` frames of the WebSocket.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use http_range_header::RangeUnsatisfiableError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::meta::{self, FileMeta};
use crate::metrics::FileMetrics;
use crate::store::{FileStore, UploadError};

/// Who may do what: the questions the file endpoints ask of the rest of the system.
pub trait Access: Send + Sync + 'static {
    /// The user a bearer token names, or why the token is refused.
    fn authenticate(&self, token: &str) -> Result<String, String>;

    /// Whether `user` is a member of a conversation in which a message names `file`. An
    /// error means the answer is not known now (a shard is unreachable).
    fn named_for<'a>(&'a self, user: &'a str, file: &'a str)
    -> BoxFuture<'a, Result<bool, String>>;
}

/// How much of a refused upload's body is still read (and dropped) before the answer, so
/// that the client, still sending, reads the answer instead of a reset connection. A larger
/// remainder is cut off: the connection closes after the answer.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// How long a refused upload's body is still read before the answer.
const DRAIN_TIME: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Files {
    store: Option<FileStore>,
    access: Arc<dyn Access>,
    metrics: FileMetrics,
}

/// The file routes, over `store` (none: storage is not configured, and every request is
/// answered 503 `unavailable`).
pub fn router(store: Option<FileStore>, access: Arc<dyn Access>, metrics: FileMetrics) -> Router {
    Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}", get(download))
        .with_state(Files { store, access, metrics })
}

/// The body of a 201 answer to an upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub id: String,
    pub size: u64,
    pub sha256: String,
    pub mime: String,
    pub name: String,
}

/// An error answer.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refused { status, code, message: message.into() }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Refused::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Refused::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    fn not_configured() -> Self {
        Refused::unavailable("file storage is not configured on this server")
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "message": self.message});
        (self.status, axum::Json(body)).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct UploadParams {
    name: Option<String>,
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DownloadParams {
    token: Option<String>,
}

/// The user the request's token names: an `Authorization: Bearer` header, or the `token`
/// query parameter (for links such as an `<img src>`, which cannot carry headers).
fn caller(
    access: &dyn Access,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<String, Refused> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = bearer.or(token) else {
        return Err(Refused::unauthorized("no token: send an Authorization: Bearer header"));
    };
    access.authenticate(token).map_err(Refused::unauthorized)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn upload(
    State(files): State<Files>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut stream = body.into_data_stream();
    let (response, stored) = match start_upload(&files, &params, &headers) {
        Err(refused) => {
            // A client that asked to continue sends nothing until told to.
            if !expects_continue(&headers) {
                drain(&mut stream).await;
            }
            (refused.into_response(), 0)
        }
        Ok((store, user, name)) => {
            // The upload runs in a task of its own, so that a client that goes away mid-way
            // ends it through the body's error, which aborts what was stored, rather than by
            // dropping it half-written.
            let task = tokio::spawn(async move {
                let result = store.upload(&user, &name, &mut stream, now_ms()).await;
                if matches!(result, Err(UploadError::TooLarge { .. })) {
                    drain(&mut stream).await;
                }
                (result, user)
            });
            match task.await {
                Ok((Ok(file), user)) => {
                    info!(file = %file.id, user = %user, size = file.size, "file uploaded");
                    let size = file.size;
                    ((StatusCode::CREATED, axum::Json(uploaded(file))).into_response(), size)
                }
                Ok((Err(error), _)) => (upload_refusal(&error).into_response(), 0),
                Err(error) => {
                    warn!(error = %error, "an upload task failed");
                    let refused = Refused::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "upload failed",
                    );
                    (refused.into_response(), 0)
                }
            }
        }
    };
    files.metrics.upload(response.status(), stored);
    response
}

/// Checks what can be checked before reading the body.
fn start_upload(
    files: &Files,
    params: &UploadParams,
    headers: &HeaderMap,
) -> Result<(FileStore, String, String), Refused> {
    let Some(store) = files.store.clone() else { return Err(Refused::not_configured()) };
    let user = caller(files.access.as_ref(), headers, params.token.as_deref())?;
    let name = params.name.clone().ok_or(meta::NameError::Missing).and_then(|name| {
        meta::check_name(&name)?;
        Ok(name)
    });
    let name =
        name.map_err(|e| Refused::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > store.max_bytes()
    {
        return Err(too_large(store.max_bytes()));
    }
    Ok((store, user, name))
}

fn too_large(limit: u64) -> Refused {
    let message = format!("the file is larger than the limit of {limit} bytes");
    Refused::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
}

fn upload_refusal(error: &UploadError) -> Refused {
    match error {
        UploadError::TooLarge { limit } => too_large(*limit),
        UploadError::Body(source) => Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("failed to read the upload: {source}"),
        ),
        UploadError::Store(source) => {
            warn!(error = %source, "failed to store an upload");
            Refused::unavailable("failed to store the file; retry later")
        }
    }
}

fn uploaded(file: FileMeta) -> Uploaded {
    Uploaded { id: file.id, size: file.size, sha256: file.sha256, mime: file.mime, name: file.name }
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain<S, E>(stream: &mut S)
where
    S: Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    let mut read = 0u64;
    let reading = async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}

async fn download(
    State(files): State<Files>,
    Path(id): Path<String>,
    Query(params): Query<DownloadParams>,
    headers: HeaderMap,
) -> Response {
    let response = match serve(&files, &id, params.token.as_deref(), &headers).await {
        Ok(response) => response,
        Err(refused) => refused.into_response(),
    };
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    files.metrics.download(response.status(), length);
    response
}

async fn serve(
    files: &Files,
    id: &str,
    token: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Refused> {
    let Some(store) = &files.store else { return Err(Refused::not_configured()) };
    let user = caller(files.access.as_ref(), headers, token)?;
    let file = match store.meta(id).await {
        Ok(Some(file)) => file,
        Ok(None) => return Err(Refused::new(StatusCode::NOT_FOUND, "not_found", "no such file")),
        Err(error) => {
            warn!(file = %id, error = %error, "failed to read a file's record");
            return Err(Refused::unavailable("failed to read the file; retry later"));
        }
    };
    if file.uploader != user {
        match files.access.named_for(&user, id).await {
            Ok(true) => {}
            Ok(false) => {
                let message = "only its uploader and members of a conversation naming it \
                               may read this file";
                return Err(Refused::new(StatusCode::FORBIDDEN, "forbidden", message));
            }
            Err(error) => {
                warn!(file = %id, error = %error, "failed to check who may read a file");
                return Err(Refused::unavailable("failed to check access; retry later"));
            }
        }
    }

    let etag = format!("\"{}\"", file.sha256);
    if header_is(headers, header::IF_NONE_MATCH, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let range = match requested_range(headers, &etag, file.size) {
        Ok(range) => range,
        Err(()) => {
            let mut response = Refused::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "bad_request",
                format!("the range lies outside the file's {} bytes", file.size),
            )
            .into_response();
            let unsatisfied = format!("bytes */{}", file.size);
            insert(response.headers_mut(), header::CONTENT_RANGE, &unsatisfied);
            return Ok(response);
        }
    };
    let stream = match store.read(id, range.clone()).await {
        Ok(stream) => stream,
        Err(error) => {
            warn!(file = %id, error = %error, "failed to read a file");
            return Err(Refused::unavailable("failed to read the file; retry later"));
        }
    };
    debug!(file = %id, user = %user, ?range, "file download");

    let (status, length) = match &range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.end - range.start),
        None => (StatusCode::OK, file.size),
    };
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let out = response.headers_mut();
    insert(out, header::CONTENT_TYPE, &file.mime);
    insert(out, header::CONTENT_LENGTH, &length.to_string());
    insert(out, header::ETAG, &etag);
    insert(out, header::ACCEPT_RANGES, "bytes");
    insert(out, header::CACHE_CONTROL, "private, max-age=31536000, immutable");
    // The bytes are whatever a user uploaded: a browser must not run them as a page of this
    // origin, whatever their type.
    insert(out, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    insert(out, header::CONTENT_DISPOSITION, &disposition(&file.name));
    if let Some(range) = range {
        let content_range = format!("bytes {}-{}/{}", range.start, range.end - 1, file.size);
        insert(out, header::CONTENT_RANGE, &content_range);
    }
    Ok(response)
}

/// The one range a request asks for, as a half-open byte range; `Ok(None)` to send the whole
/// file (no range, a malformed one or several, which HTTP lets a server ignore, or an
/// `If-Range` that names another version); `Err` when the range lies outside the file.
fn requested_range(
    headers: &HeaderMap,
    etag: &str,
    size: u64,
) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if headers.contains_key(header::IF_RANGE) && !header_is(headers, header::IF_RANGE, etag) {
        return Ok(None);
    }
    let Ok(parsed) = http_range_header::parse_range_header(value) else { return Ok(None) };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => {
            let range = &ranges[0];
            Ok(Some(*range.start()..range.end() + 1))
        }
        Ok(_) => Ok(None),
        Err(RangeUnsatisfiableError::Unsatisfiable) => Err(()),
        Err(_) => Ok(None),
    }
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, expected: &str) -> bool {
    headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|tag| {
            let tag = tag.trim();
            tag == expected || tag == "*" || tag.strip_prefix("W/") == Some(expected)
        })
    })
}

/// `attachment` with the name in the RFC 6266 form that carries any character.
fn disposition(name: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_').remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(name, KEEP);
    format!("attachment; filename*=UTF-8''{encoded}")
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    // Every value written here is ASCII built from checked parts; one that is not is left out
    // rather than failing the answer.
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(range: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        headers
    }

    #[test]
    fn single_ranges_become_half_open_byte_ranges() {
        assert_eq!(requested_range(&with_range("bytes=0-9"), "\"e\"", 100), Ok(Some(0..10)));
        assert_eq!(requested_range(&with_range("bytes=90-"), "\"e\"", 100), Ok(Some(90..100)));
        assert_eq!(requested_range(&with_range("bytes=-5"), "\"e\"", 100), Ok(Some(95..100)));
        assert_eq!(requested_range(&with_range("bytes=95-200"), "\"e\"", 100), Ok(Some(95..100)));
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable_and_odd_ones_are_ignored() {
        assert_eq!(requested_range(&with_range("bytes=100-"), "\"e\"", 100), Err(()));
        assert_eq!(requested_range(&with_range("lines=1-2"), "\"e\"", 100), Ok(None));
        assert_eq!(requested_range(&with_range("bytes=0-1,5-6"), "\"e\"", 100), Ok(None));
        assert_eq!(requested_range(&HeaderMap::new(), "\"e\"", 100), Ok(None));
    }

    #[test]
    fn an_if_range_for_another_version_sends_the_whole_file() {
        let mut headers = with_range("bytes=0-9");
        headers.insert(header::IF_RANGE, HeaderValue::from_static("\"other\""));
        assert_eq!(requested_range(&headers, "\"e\"", 100), Ok(None));
        headers.insert(header::IF_RANGE, HeaderValue::from_static("\"e\""));
        assert_eq!(requested_range(&headers, "\"e\"", 100), Ok(Some(0..10)));
    }

    #[test]
    fn names_with_any_character_fit_in_the_disposition() {
        assert_eq!(disposition("a b.pdf"), "attachment; filename*=UTF-8''a%20b.pdf");
        assert_eq!(disposition("é\"x"), "attachment; filename*=UTF-8''%C3%A9%22x");
    }
}

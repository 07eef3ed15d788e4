//! The OCI distribution API over HTTP/1.1: routing, request validation,
//! status codes, headers and OCI error bodies. Store work runs on the
//! blocking pool; blob bodies stream through a bounded channel (a few
//! hundred KiB in flight per request, whatever the blob size); upload
//! bodies stream to the session file. A request body that stalls longer
//! than the idle timeout ends the request.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::ServeOptions;
use super::cache::BlobCache;
use super::registry::{BlobPut, FoundBlob, MAX_MANIFEST_SIZE, ManifestPut, valid_digest};
use crate::error::Error;
use crate::store::Store;
use crate::store::uploads::Uploads;

mod admit;
mod upload;
use admit::*;
use upload::*;

/// Response body: a whole buffer or a stream.
pub(super) type ResBody = BoxBody<Bytes, io::Error>;

/// Bytes gathered before one frame goes to the client.
const STREAM_FRAME: usize = 256 << 10;
/// Frames in flight between the store and the client.
const STREAM_QUEUE: usize = 4;

/// What every handler shares.
pub(super) struct App {
    pub store: Store,
    pub uploads: Uploads,
    pub cache: BlobCache,
    pub opts: ServeOptions,
    /// Upload sessions a request is writing to right now.
    pub busy: Mutex<HashSet<String>>,
    /// Users allowed in, when auth is on.
    pub htpasswd: Option<Arc<super::access::Htpasswd>>,
    pub requests: AtomicU64,
    /// Responses with a 4xx or 5xx status.
    pub failures: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// A failed request: status, OCI error code, message.
struct Refusal(StatusCode, &'static str, String);

type Reply = std::result::Result<Response<ResBody>, Refusal>;

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(status, code, message.into())
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        match &e {
            Error::NotFound { .. } => refuse(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", e.to_string()),
            Error::InvalidInput { .. } | Error::InvalidDigest { .. } => refuse(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                e.to_string(),
            ),
            _ => refuse(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()),
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> ResBody {
    full(Bytes::new())
}

fn response(status: StatusCode, body: ResBody) -> Response<ResBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r
}

fn set(r: &mut Response<ResBody>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn json_response(
    status: StatusCode,
    value: &serde_json::Value,
    content_type: &str,
) -> Response<ResBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let len = bytes.len();
    let mut r = response(status, full(bytes));
    set(&mut r, "content-type", content_type);
    set(&mut r, "content-length", &len.to_string());
    r
}

fn error_response(Refusal(status, code, message): Refusal) -> Response<ResBody> {
    let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
    json_response(status, &body, "application/json")
}

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> std::result::Result<T, Refusal> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Refusal::from),
        Err(e) => Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("store task failed: {e}"),
        )),
    }
}

/// A repository name of the distribution grammar: components of lowercase
/// letters and digits joined by `.`, `_`, `__` or runs of `-`, separated
/// by `/`.
pub fn valid_repo(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    name.split('/').all(|component| {
        let b = component.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &b[start..i];
            let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

/// A tag: a word character, then up to 127 word characters, `.` or `-`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else if b[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// What a request path names.
enum Route<'a> {
    Ping,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    Blob(&'a str, &'a str),
    StartUpload(&'a str),
    Upload(&'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    if path == "/v2/" || path == "/v2" {
        return Some(Route::Ping);
    }
    let rest = path.strip_prefix("/v2/")?;
    let (head, last) = rest.rsplit_once('/')?;
    if last.is_empty() {
        return head.strip_suffix("/blobs/uploads").map(Route::StartUpload);
    }
    if last == "list"
        && let Some(name) = head.strip_suffix("/tags")
    {
        return Some(Route::Tags(name));
    }
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(Route::Upload(name, last));
    }
    if head.ends_with("/blobs") && last == "uploads" {
        return head.strip_suffix("/blobs").map(Route::StartUpload);
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return Some(Route::Manifest(name, last));
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return Some(Route::Referrers(name, last));
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        return Some(Route::Blob(name, last));
    }
    None
}

/// Entry point of every request: dispatches, turns refusals into OCI error
/// bodies, and writes the access log line.
pub(super) async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> std::result::Result<Response<ResBody>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body_method = matches!(method, Method::PUT | Method::POST | Method::PATCH);
    app.requests.fetch_add(1, Ordering::Relaxed);
    let mut resp = match admit(&app, req).await {
        Ok(req) => match dispatch(&app, req).await {
            Ok(r) => r,
            Err(refusal) => error_response(refusal),
        },
        Err(r) => *r,
    };
    if resp.status().is_client_error() || resp.status().is_server_error() {
        app.failures.fetch_add(1, Ordering::Relaxed);
    }
    set(&mut resp, "docker-distribution-api-version", "registry/2.0");
    // A refusal may leave the request body unread: close the connection
    // rather than let the client send its next request into it.
    if body_method && (resp.status().is_client_error() || resp.status().is_server_error()) {
        set(&mut resp, "connection", "close");
    }
    let out = resp.body().size_hint().exact().unwrap_or(0);
    if method != Method::HEAD {
        app.bytes_out.fetch_add(out, Ordering::Relaxed);
    }
    if !app.opts.quiet {
        eprintln!(
            "{} {} {} {} {}B {:.3}s",
            crate::util::clock::rfc3339(crate::util::clock::now()),
            method,
            path,
            resp.status().as_u16(),
            out,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(resp)
}

async fn dispatch(app: &Arc<App>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let query = query.as_deref();
    let Some(route) = route(&path) else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            format!("no endpoint {path}"),
        ));
    };
    let repo = match &route {
        Route::Ping => None,
        Route::Tags(r)
        | Route::Manifest(r, _)
        | Route::Referrers(r, _)
        | Route::Blob(r, _)
        | Route::StartUpload(r)
        | Route::Upload(r, _) => Some(*r),
    };
    if let Some(r) = repo
        && !valid_repo(r)
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("invalid repository name {r:?}"),
        ));
    }
    let method = req.method().clone();
    match (route, method) {
        (Route::Ping, Method::GET | Method::HEAD) => {
            let mut r = json_response(StatusCode::OK, &json!({}), "application/json");
            if req.method() == Method::HEAD {
                *r.body_mut() = empty();
            }
            Ok(r)
        }
        (Route::Blob(repo, d), m @ (Method::GET | Method::HEAD)) => {
            get_blob(app, repo, d, m == Method::HEAD, req.headers()).await
        }
        (Route::Blob(_, d), Method::DELETE) => delete_blob(app, d).await,
        (Route::StartUpload(repo), Method::POST) => start_upload(app, repo, query, req).await,
        (Route::Upload(repo, id), Method::PATCH) => patch_upload(app, repo, id, req).await,
        (Route::Upload(repo, id), Method::PUT) => finish_upload(app, repo, id, query, req).await,
        (Route::Upload(repo, id), Method::GET) => upload_status(app, repo, id),
        (Route::Upload(repo, id), Method::DELETE) => cancel_upload(app, repo, id),
        (Route::Manifest(repo, reference), m @ (Method::GET | Method::HEAD)) => {
            get_manifest(app, repo, reference, m == Method::HEAD).await
        }
        (Route::Manifest(repo, reference), Method::PUT) => {
            put_manifest(app, repo, reference, req).await
        }
        (Route::Manifest(repo, reference), Method::DELETE) => {
            delete_manifest(app, repo, reference).await
        }
        (Route::Tags(repo), Method::GET) => list_tags(app, repo, query).await,
        (Route::Referrers(repo, d), Method::GET) => referrers(app, repo, d, query).await,
        (_, m) => Err(refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{m} is not supported on {path}"),
        )),
    }
}

fn check_digest(d: &str, code: &'static str) -> std::result::Result<(), Refusal> {
    if valid_digest(d) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::BAD_REQUEST,
            code,
            format!("invalid digest {d:?}"),
        ))
    }
}

/// A `Range: bytes=...` header against a blob of `size` bytes: the
/// inclusive range to send, or Err when it cannot be satisfied.
fn parse_range(header: &str, size: u64) -> std::result::Result<(u64, u64), ()> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Err(()),
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 || size == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size - 1)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.saturating_sub(1)),
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| ())?;
            let b: u64 = b.parse().map_err(|_| ())?;
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok((start, end))
}

/// Sends what the store writes to a response body, a bounded number of
/// frames ahead; skips `skip` bytes and stops after `take`.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    skip: u64,
    take: u64,
    /// A range: stop the store's work once it is sent. (A whole blob is
    /// written to the end, so the rebuild checks its sha256.)
    partial: bool,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let frame = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(frame))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        let mut data = data;
        if self.skip > 0 {
            let s = (self.skip as usize).min(data.len());
            self.skip -= s as u64;
            data = &data[s..];
        }
        let keep = (self.take as usize).min(data.len());
        self.buf.extend_from_slice(&data[..keep]);
        self.take -= keep as u64;
        // The last bytes of a whole blob wait until the store says the
        // blob checked out (its sha256 is verified at the end): on a
        // failure the client gets a short body, never a wrong one.
        let last = self.take == 0;
        if (self.buf.len() >= STREAM_FRAME && !last) || (last && self.partial) {
            self.send()?;
        }
        if self.partial && self.take == 0 && self.skip == 0 {
            // The range is complete: stop the store's work here.
            return Err(io::Error::new(io::ErrorKind::WriteZero, "range complete"));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A response body fed by a [`ChannelWriter`].
struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    len: u64,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

/// Streams bytes `start..start+len` of `blob` from the store.
fn stream_blob(app: &Arc<App>, blob: FoundBlob, start: u64, len: u64) -> ResBody {
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let store = app.store.clone();
    let cache = app.cache.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(STREAM_FRAME),
            skip: start,
            take: len,
            partial: start > 0 || len < blob.size,
        };
        let result = write_blob(&store, &cache, &blob, &mut w);
        let short = w.take > 0;
        match result {
            // A range stops the store early on purpose.
            Err(_) if w.partial && !short => {
                let _ = w.send();
            }
            Ok(()) if !short => {
                let _ = w.send();
            }
            outcome => {
                // Cut short: the client sees a body shorter than its length.
                let reason = match outcome {
                    Err(e) => e.to_string(),
                    Ok(()) => "the blob ended early".to_string(),
                };
                eprintln!("layerstore serve: blob {}: {reason}", blob.digest);
                let _ = tx.blocking_send(Err(io::Error::other(reason)));
            }
        }
    });
    ChannelBody { rx, len }.boxed()
}

/// Writes a blob from the cache, or from the store (filling the cache
/// when the blob is rebuilt and wanted whole).
fn write_blob(
    store: &Store,
    cache: &BlobCache,
    blob: &FoundBlob,
    w: &mut ChannelWriter,
) -> crate::error::Result<()> {
    if !blob.rebuilt || !cache.wants(blob.size) {
        return store.registry_write_blob(blob, w);
    }
    if cache.serve(&blob.digest, blob.size, w)? {
        return Ok(());
    }
    if w.partial {
        return store.registry_write_blob(blob, w);
    }
    let mut filling = cache.fill(&blob.digest, w);
    let result = store.registry_write_blob(blob, &mut filling);
    cache.finish(&blob.digest, filling, result.is_ok());
    result
}

async fn find_blob(app: &Arc<App>, d: &str) -> std::result::Result<FoundBlob, Refusal> {
    let store = app.store.clone();
    let name = d.to_string();
    blocking(move || store.registry_find_blob(&name))
        .await?
        .ok_or_else(|| {
            refuse(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                format!("blob {d} unknown"),
            )
        })
}

async fn get_blob(app: &Arc<App>, _repo: &str, d: &str, head: bool, headers: &HeaderMap) -> Reply {
    if !valid_digest(d) {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("invalid digest {d:?}"),
        ));
    }
    let blob = find_blob(app, d).await?;
    let size = blob.size;
    let range = headers.get("range").and_then(|v| v.to_str().ok());
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(r) => match parse_range(r, size) {
            Ok((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
            Err(()) => {
                let mut resp = error_response(refuse(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UNKNOWN",
                    format!("range {r:?} cannot be satisfied by a blob of {size} bytes"),
                ));
                set(&mut resp, "content-range", &format!("bytes */{size}"));
                return Ok(resp);
            }
        },
    };
    let body = if head || len == 0 {
        empty()
    } else {
        stream_blob(app, blob, start, len)
    };
    let mut r = response(status, body);
    set(&mut r, "content-length", &len.to_string());
    set(&mut r, "content-type", "application/octet-stream");
    set(&mut r, "docker-content-digest", d);
    set(&mut r, "accept-ranges", "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut r,
            "content-range",
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(r)
}

async fn delete_blob(app: &Arc<App>, d: &str) -> Reply {
    check_digest(d, "DIGEST_INVALID")?;
    let store = app.store.clone();
    let name = d.to_string();
    if blocking(move || store.registry_delete_blob(&name)).await? {
        Ok(response(StatusCode::ACCEPTED, empty()))
    } else {
        Err(refuse(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {d} unknown"),
        ))
    }
}

fn check_reference(reference: &str) -> std::result::Result<(), Refusal> {
    if reference.contains(':') {
        check_digest(reference, "DIGEST_INVALID")
    } else if valid_tag(reference) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            format!("invalid tag {reference:?}"),
        ))
    }
}

async fn get_manifest(app: &Arc<App>, repo: &str, reference: &str, head: bool) -> Reply {
    check_reference(reference)?;
    let store = app.store.clone();
    let (r, name) = (repo.to_string(), reference.to_string());
    let found = blocking(move || store.registry_manifest(&r, &name)).await?;
    let Some((digest, media_type, bytes)) = found else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} unknown in {repo}"),
        ));
    };
    let len = bytes.len();
    let mut resp = response(StatusCode::OK, if head { empty() } else { full(bytes) });
    set(&mut resp, "content-type", &media_type);
    set(&mut resp, "content-length", &len.to_string());
    let dcd = if reference.starts_with("sha512:") {
        reference.to_string()
    } else {
        digest.to_string()
    };
    set(&mut resp, "docker-content-digest", &dcd);
    Ok(resp)
}

/// Reads a whole request body of at most `limit` bytes.
async fn read_limited(
    app: &Arc<App>,
    mut body: Incoming,
    limit: usize,
) -> std::result::Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(app.opts.idle_timeout, body.frame()).await {
            Err(_) => {
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "MANIFEST_INVALID",
                    "request body stalled",
                ));
            }
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "MANIFEST_INVALID",
                    format!("reading the request body: {e}"),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > limit {
                        return Err(refuse(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "SIZE_INVALID",
                            format!("manifest exceeds the limit of {limit} bytes"),
                        ));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

async fn put_manifest(
    app: &Arc<App>,
    repo: &str,
    reference: &str,
    req: Request<Incoming>,
) -> Reply {
    check_reference(reference)?;
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = read_limited(app, req.into_body(), MAX_MANIFEST_SIZE).await?;
    let store = app.store.clone();
    let (r, name) = (repo.to_string(), reference.to_string());
    let outcome =
        blocking(move || store.registry_put_manifest(&r, &name, content_type.as_deref(), &bytes))
            .await?;
    match outcome {
        ManifestPut::Stored { digest, subject } => {
            let shown = if reference.starts_with("sha512:") {
                reference.to_string()
            } else {
                digest.to_string()
            };
            let mut resp = response(StatusCode::CREATED, empty());
            set(
                &mut resp,
                "location",
                &format!("/v2/{repo}/manifests/{shown}"),
            );
            set(&mut resp, "docker-content-digest", &shown);
            set(&mut resp, "content-length", "0");
            if let Some(s) = subject {
                set(&mut resp, "oci-subject", &s);
            }
            Ok(resp)
        }
        ManifestPut::BlobUnknown(d) => Err(refuse(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            format!("the manifest refers to {d}, which this registry does not have"),
        )),
        ManifestPut::Invalid(why) => Err(refuse(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", why)),
        ManifestPut::DigestMismatch(why) => {
            Err(refuse(StatusCode::BAD_REQUEST, "DIGEST_INVALID", why))
        }
    }
}

async fn delete_manifest(app: &Arc<App>, repo: &str, reference: &str) -> Reply {
    check_reference(reference)?;
    let store = app.store.clone();
    let (r, name) = (repo.to_string(), reference.to_string());
    if blocking(move || store.registry_delete_manifest(&r, &name)).await? {
        Ok(response(StatusCode::ACCEPTED, empty()))
    } else {
        Err(refuse(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} unknown in {repo}"),
        ))
    }
}

async fn list_tags(app: &Arc<App>, repo: &str, query: Option<&str>) -> Reply {
    let store = app.store.clone();
    let r = repo.to_string();
    let Some(tags) = blocking(move || store.registry_tags(&r)).await? else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {repo} unknown"),
        ));
    };
    let last = query_param(query, "last");
    let n = match query_param(query, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                format!("invalid n={n:?}"),
            )
        })?),
        None => None,
    };
    let after: Vec<String> = tags
        .into_iter()
        .filter(|t| last.as_ref().is_none_or(|l| t.as_str() > l.as_str()))
        .collect();
    let (page, more) = match n {
        Some(n) if n < after.len() => (after[..n].to_vec(), true),
        _ => (after, false),
    };
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"name": repo, "tags": page}),
        "application/json",
    );
    if more && let (Some(n), Some(l)) = (n, page.last()) {
        set(
            &mut resp,
            "link",
            &format!("</v2/{repo}/tags/list?n={n}&last={l}>; rel=\"next\""),
        );
    }
    Ok(resp)
}

async fn referrers(app: &Arc<App>, repo: &str, d: &str, query: Option<&str>) -> Reply {
    check_digest(d, "DIGEST_INVALID")?;
    let artifact_type = query_param(query, "artifactType");
    let store = app.store.clone();
    let (r, subject, filter) = (repo.to_string(), d.to_string(), artifact_type.clone());
    let index = blocking(move || store.registry_referrers(&r, &subject, filter.as_deref())).await?;
    let mut resp = json_response(StatusCode::OK, &index, crate::image::oci::MT_OCI_INDEX);
    if artifact_type.is_some() {
        set(&mut resp, "oci-filters-applied", "artifactType");
    }
    Ok(resp)
}

/// Routes a request target, checks its names, decodes its query and
/// parses a `Range` header against a few sizes: what the fuzz target
/// drives. Ranges accepted always lie inside the blob.
pub(super) fn fuzz_parsers(target: &str, range: &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if let Some(r) = route(path) {
        match r {
            Route::Ping => {}
            Route::Tags(repo) | Route::StartUpload(repo) => {
                let _ = valid_repo(repo);
            }
            Route::Manifest(repo, x)
            | Route::Referrers(repo, x)
            | Route::Blob(repo, x)
            | Route::Upload(repo, x) => {
                let _ = (valid_repo(repo), valid_tag(x), valid_digest(x));
            }
        }
    }
    for key in ["digest", "mount", "from", "n", "last", "artifactType"] {
        let _ = query_param(Some(query), key);
    }
    for size in [0u64, 1, 2048, u64::MAX] {
        if let Ok((start, end)) = parse_range(range, size) {
            assert!(
                start <= end && end < size,
                "range {range:?} outside a blob of {size}"
            );
        }
    }
}

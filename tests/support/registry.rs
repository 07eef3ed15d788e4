//! The registry server (`layerstore serve`) seen from outside: a guard that
//! starts it on a free loopback port and always ends it, an HTTP client
//! (ureq) that never follows redirects nor turns statuses into errors, a
//! raw-socket client for requests no well-behaved client sends, and the
//! checks every response shares (OCI error bodies, headers).
//!
//! Everything here talks to 127.0.0.1 only.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::cli;

/// How long any one request may take before the test fails instead of
/// hanging.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SIGTERMed server may take to exit before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The error codes of the OCI distribution specification.
pub const OCI_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// `sha512:<hex>` of `bytes`, computed with the sha2 crate directly.
pub fn sha512(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha512::digest(bytes);
    let mut s = String::with_capacity(135);
    s.push_str("sha512:");
    for b in hash.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

// ---------------------------------------------------------------------------
// The server guard
// ---------------------------------------------------------------------------

/// A running `layerstore serve` on one store. Dropping it SIGTERMs the
/// server, SIGKILLs it if it has not exited in time, and waits for it.
pub struct Registry {
    child: Option<Child>,
    addr: SocketAddr,
    base: String,
    store: PathBuf,
    agent: ureq::Agent,
    log: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    /// Starts `layerstore --store STORE serve --listen 127.0.0.1:0
    /// --max-lifetime 600` and waits for its `listening on` line.
    /// The guard SIGTERMs, then SIGKILLs, and waits for the server on
    /// drop.
    #[track_caller]
    pub fn start(store: &Path) -> Registry {
        Registry::start_with(store, &[])
    }

    /// [`Registry::start`] with more arguments after `serve` (a
    /// `--max-lifetime` among them replaces the default 600 s).
    #[track_caller]
    pub fn start_with(store: &Path, extra_args: &[&str]) -> Registry {
        let mut cmd = cli(store);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        // The safety net: the server ends by itself even if this guard
        // never runs (a caller may ask for a shorter life).
        if !extra_args.contains(&"--max-lifetime") {
            cmd.args(["--max-lifetime", "600"]);
        }
        cmd.args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning layerstore serve: {e}"));

        // The server's stderr (its access log) is kept for failure messages.
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("child stderr");
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap();
                    if log.len() >= 2000 {
                        log.drain(..1000);
                    }
                    log.push(line);
                }
            });
        }

        // The first stdout line names the address; the rest is drained so
        // the server never blocks on a full pipe.
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let got = reader.read_line(&mut first).map(|_| first);
            let _ = tx.send(got);
            let _ = io::copy(&mut reader, &mut io::sink());
        });
        let first = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("reading the server's first line: {e}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "layerstore serve printed no line within {START_TIMEOUT:?}; stderr: {}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let Some(rest) = first
            .trim_end()
            .strip_prefix("listening on http://127.0.0.1:")
        else {
            // Let stderr arrive before reporting.
            let status = child.wait();
            thread::sleep(Duration::from_millis(200));
            panic!(
                "layerstore serve's first line is not `listening on http://127.0.0.1:PORT`: \
                 {first:?} (exit {status:?}); stderr: {}",
                log.lock().unwrap().join("\n")
            );
        };
        let port: u16 = rest
            .parse()
            .unwrap_or_else(|e| panic!("port in {first:?}: {e}"));
        assert_ne!(port, 0, "the server announced port 0: {first:?}");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .timeout_global(Some(REQUEST_TIMEOUT))
            // A fresh connection per request: a server that closes a
            // connection after refusing a request whose body it did not
            // read would otherwise fail the next request at random. That
            // behaviour is checked on its own, over raw sockets.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build()
            .into();
        Registry {
            child: Some(child),
            addr,
            base: format!("http://127.0.0.1:{port}"),
            store: store.to_path_buf(),
            agent,
            log,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// The server's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store the server serves.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// The absolute URL of `path`: a path (`/v2/...`, as in a relative
    /// `Location`) is joined to [`Registry::base`]; an absolute URL is
    /// returned as it is.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    /// The ureq agent (no redirects, statuses are not errors, timeout).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The last `n` lines the server wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits up to `timeout` for the server to exit by itself; returns its
    /// status, or None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERMs the server and waits for it (SIGKILL after a while);
    /// returns its exit status and whether it exited by itself in time.
    pub fn stop(mut self) -> (ExitStatus, bool) {
        self.terminate().expect("a running server to stop")
    }

    /// SIGKILLs the server (a crash: no chance to clean up) and waits for
    /// it; returns its exit status.
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running server to kill");
        let _ = child.kill();
        child.wait().expect("waiting for the killed server")
    }

    fn terminate(&mut self) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, true));
        }
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(status)) => return Some((status, true)),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let status = child.wait().expect("waiting for the killed server");
        Some((status, false))
    }

    // -----------------------------------------------------------------------
    // Requests through ureq
    // -----------------------------------------------------------------------

    /// Sends `method path` with `headers` and, when given, `body` (with a
    /// Content-Length); returns the whole response. A transport error
    /// fails the test.
    #[track_caller]
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let what = format!("{method} {path}");
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{what}: {e}; server log:\n{}", self.log_tail(20)))
    }

    /// [`Registry::request`] returning transport errors.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Resp, ureq::Error> {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        // Methods that carry a body get `Content-Length: 0` when given none.
        let body = body.or(match method {
            "PUT" | "POST" | "PATCH" => Some(&[][..]),
            _ => None,
        });
        let response = match body {
            Some(bytes) => self
                .agent
                .run(builder.body(bytes).expect("a valid request")),
            None => self.agent.run(builder.body(()).expect("a valid request")),
        }?;
        Resp::read(method, path, response)
    }

    /// Sends `method path` with a body streamed from `reader` with
    /// `Transfer-Encoding: chunked` and no Content-Length.
    #[track_caller]
    pub fn request_chunked(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        reader: &mut dyn Read,
    ) -> Resp {
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(ureq::SendBody::from_reader(reader))
            .expect("a valid request");
        let response = self
            .agent
            .run(request)
            .unwrap_or_else(|e| panic!("{method} {path} (chunked): {e}"));
        Resp::read(method, path, response)
            .unwrap_or_else(|e| panic!("{method} {path} (chunked): reading: {e}"))
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None)
    }

    #[track_caller]
    pub fn head(&self, path: &str) -> Resp {
        self.request("HEAD", path, &[], None)
    }

    #[track_caller]
    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, &[], None)
    }

    /// `GET /v2/` answers 200: the server is alive and serving.
    #[track_caller]
    pub fn assert_alive(&self, after: &str) {
        let r = self.get("/v2/");
        assert_eq!(r.status, 200, "after {after}: GET /v2/ answered {r}");
    }

    // -----------------------------------------------------------------------
    // The usual pushes and pulls, asserted
    // -----------------------------------------------------------------------

    /// `POST /v2/REPO/blobs/uploads/` → 202 with a Location; returns it.
    #[track_caller]
    pub fn start_upload(&self, repo: &str) -> String {
        let r = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], None);
        assert_eq!(r.status, 202, "POST /v2/{repo}/blobs/uploads/: {r}");
        r.location()
    }

    /// The usual monolithic push: POST, then `PUT <Location>?digest=D` with
    /// the bytes → 201. Returns the digest.
    #[track_caller]
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = super::bytes::sha(bytes);
        self.push_blob_as(repo, bytes, &digest);
        digest
    }

    /// [`Registry::push_blob`] under a given digest string (sha512...).
    #[track_caller]
    pub fn push_blob_as(&self, repo: &str, bytes: &[u8], digest: &str) {
        let location = self.start_upload(repo);
        let r = self.request(
            "PUT",
            &with_query(&location, &format!("digest={digest}")),
            &[("Content-Type", "application/octet-stream")],
            Some(bytes),
        );
        assert_eq!(
            r.status,
            201,
            "monolithic PUT of a {} B blob {digest} to {repo}: {r}",
            bytes.len()
        );
        assert_eq!(
            r.location(),
            format!("/v2/{repo}/blobs/{digest}"),
            "Location of the pushed blob {digest}"
        );
    }

    /// `PUT /v2/REPO/manifests/REFERENCE` with `Content-Type: MEDIA_TYPE`
    /// → 201 with Location and DCD; returns the response.
    #[track_caller]
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Resp {
        let r = self.put_manifest(repo, reference, media_type, bytes);
        assert_eq!(
            r.status,
            201,
            "PUT /v2/{repo}/manifests/{reference} ({media_type}, {} B): {r}",
            bytes.len()
        );
        let digest = if reference.contains(':') {
            reference.to_string()
        } else {
            super::bytes::sha(bytes)
        };
        assert_eq!(
            r.header("docker-content-digest"),
            Some(digest.as_str()),
            "DCD of PUT /v2/{repo}/manifests/{reference}"
        );
        assert_eq!(
            r.location(),
            format!("/v2/{repo}/manifests/{digest}"),
            "Location of PUT /v2/{repo}/manifests/{reference}"
        );
        r
    }

    /// `PUT /v2/REPO/manifests/REFERENCE`, whatever the answer.
    #[track_caller]
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Resp {
        self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            Some(bytes),
        )
    }

    /// `GET /v2/REPO/manifests/REFERENCE` with the Accept list real
    /// clients send.
    #[track_caller]
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Resp {
        self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_MANIFESTS)],
            None,
        )
    }

    /// Asserts `GET` and `HEAD` of `/v2/REPO/manifests/REFERENCE` answer
    /// 200 with exactly `bytes`, `media_type` and DCD `digest`.
    #[track_caller]
    pub fn assert_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &str,
        what: &str,
    ) {
        let r = self.get_manifest(repo, reference);
        assert_eq!(
            r.status, 200,
            "{what}: GET /v2/{repo}/manifests/{reference}: {r}"
        );
        super::bytes::assert_same_bytes(&r.body, bytes, &format!("{what}: manifest bytes"));
        assert_eq!(
            r.header("content-type"),
            Some(media_type),
            "{what}: Content-Type of GET"
        );
        assert_eq!(
            r.header("docker-content-digest"),
            Some(digest),
            "{what}: DCD of GET"
        );
        assert_eq!(
            r.content_length(),
            Some(bytes.len() as u64),
            "{what}: Content-Length of GET"
        );
        let h = self.request(
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_MANIFESTS)],
            None,
        );
        assert_eq!(
            h.status, 200,
            "{what}: HEAD /v2/{repo}/manifests/{reference}: {h}"
        );
        assert!(h.body.is_empty(), "{what}: HEAD has a body");
        assert_eq!(
            h.header("content-type"),
            Some(media_type),
            "{what}: Content-Type of HEAD"
        );
        assert_eq!(
            h.header("docker-content-digest"),
            Some(digest),
            "{what}: DCD of HEAD"
        );
        assert_eq!(
            h.content_length(),
            Some(bytes.len() as u64),
            "{what}: Content-Length of HEAD"
        );
    }

    /// Asserts `GET /v2/REPO/blobs/DIGEST` answers 200 with exactly
    /// `bytes`, Content-Length and DCD, and HEAD 200 with Content-Length
    /// and an empty body.
    #[track_caller]
    pub fn assert_blob(&self, repo: &str, digest: &str, bytes: &[u8], what: &str) {
        let r = self.get(&format!("/v2/{repo}/blobs/{digest}"));
        assert_eq!(r.status, 200, "{what}: GET /v2/{repo}/blobs/{digest}: {r}");
        super::bytes::assert_same_bytes(&r.body, bytes, &format!("{what}: blob bytes"));
        assert_eq!(
            r.content_length(),
            Some(bytes.len() as u64),
            "{what}: Content-Length of GET blob"
        );
        assert_eq!(
            r.header("docker-content-digest"),
            Some(digest),
            "{what}: DCD of GET blob"
        );
        let h = self.head(&format!("/v2/{repo}/blobs/{digest}"));
        assert_eq!(h.status, 200, "{what}: HEAD /v2/{repo}/blobs/{digest}: {h}");
        assert!(h.body.is_empty(), "{what}: HEAD blob has a body");
        assert_eq!(
            h.content_length(),
            Some(bytes.len() as u64),
            "{what}: Content-Length of HEAD blob"
        );
        assert_eq!(
            h.header("docker-content-digest"),
            Some(digest),
            "{what}: DCD of HEAD blob"
        );
    }

    // -----------------------------------------------------------------------
    // Raw sockets
    // -----------------------------------------------------------------------

    /// A fresh connection to the server with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.addr));
        stream.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Writes `head` (request line and headers, `\r\n` line ends, ending
    /// with the empty line) and `body` verbatim on a fresh connection, then
    /// reads one response. Writing goes on in another thread so a server
    /// that answers early and stops reading cannot deadlock the test; a
    /// write error after that is ignored (the server may close early).
    pub fn raw(&self, head: &str, body: &[u8]) -> io::Result<Resp> {
        self.raw_on(&self.connect(), head, body)
    }

    /// Writes `head` and `body` on `stream` (an open connection, kept open)
    /// and reads one response, as [`Registry::raw`] does.
    pub fn raw_on(&self, stream: &TcpStream, head: &str, body: &[u8]) -> io::Result<Resp> {
        let mut writer = stream.try_clone()?;
        let mut data = head.as_bytes().to_vec();
        data.extend_from_slice(body);
        let what = head.lines().next().unwrap_or_default().to_string();
        let sender = thread::spawn(move || {
            let _ = writer.write_all(&data);
            let _ = writer.flush();
        });
        let resp = read_response(
            &mut BufReader::new(stream.try_clone()?),
            &what,
            head.starts_with("HEAD "),
        );
        let _ = sender.join();
        resp
    }

    /// `raw` of a bodyless `METHOD PATH` (the path sent exactly as given).
    pub fn raw_simple(&self, method: &str, path: &str) -> io::Result<Resp> {
        self.raw(
            &format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.addr),
            b"",
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// The Accept list skopeo and podman send for manifests.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v1+prettyjws, \
    application/vnd.docker.distribution.manifest.v1+json";

/// `location` with `query` appended (`?` or `&`, as the Location needs).
pub fn with_query(location: &str, query: &str) -> String {
    if location.contains('?') {
        format!("{location}&{query}")
    } else {
        format!("{location}?{query}")
    }
}

/// Percent-encodes a query parameter value (everything but unreserved).
pub fn query_escape(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// One whole response: status, headers (names lowercase, in order) and
/// body.
pub struct Resp {
    pub what: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    fn read(
        method: &str,
        path: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<Resp, ureq::Error> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(1 << 34)
                .read_to_vec()?
        };
        Ok(Resp {
            what: format!("{method} {path}"),
            status,
            headers,
            body,
        })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The Location header; fails the test when it is missing.
    #[track_caller]
    pub fn location(&self) -> String {
        match self.header("location") {
            Some(l) => l.to_string(),
            None => panic!("{}: no Location header: {self}", self.what),
        }
    }

    /// The body as JSON; fails the test when it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {self}", self.what))
    }

    /// The codes of an OCI error body, checking its shape: an object with
    /// a non-empty `errors` array of objects with string `code` and
    /// `message`.
    #[track_caller]
    pub fn error_codes(&self) -> Vec<String> {
        let v = self.json();
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: not an OCI error body: {self}", self.what));
        assert!(
            !errors.is_empty(),
            "{}: empty errors array: {self}",
            self.what
        );
        errors
            .iter()
            .map(|e| {
                assert!(
                    e["message"].is_string(),
                    "{}: error without a string message: {self}",
                    self.what
                );
                e["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: error without a string code: {self}", self.what))
                    .to_string()
            })
            .collect()
    }

    /// Asserts the status is one of `statuses` and the body is an OCI error
    /// whose first code is one of `codes` (and a code of the
    /// specification).
    #[track_caller]
    pub fn assert_error(&self, statuses: &[u16], codes: &[&str], case: &str) {
        assert!(
            statuses.contains(&self.status),
            "{case}: expected status {statuses:?}, got {self}"
        );
        let got = self.error_codes();
        assert!(
            codes.contains(&got[0].as_str()),
            "{case}: expected error code {codes:?}, got {got:?}: {self}"
        );
        assert!(
            got.iter().all(|c| OCI_ERROR_CODES.contains(&c.as_str())),
            "{case}: error codes {got:?} are not all OCI error codes: {self}"
        );
    }

    /// Asserts an error status (4xx) with an OCI error body whose codes are
    /// codes of the specification.
    #[track_caller]
    pub fn assert_refused(&self, statuses: &[u16], case: &str) {
        self.assert_error(statuses, OCI_ERROR_CODES, case);
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = if self.body.len() > 600 {
            format!(
                "{}... ({} bytes)",
                String::from_utf8_lossy(&self.body[..600]),
                self.body.len()
            )
        } else {
            String::from_utf8_lossy(&self.body).into_owned()
        };
        write!(
            f,
            "{} -> {} {:?} {body}",
            self.what, self.status, self.headers
        )
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Reads one HTTP/1.1 response from `reader`: status line, headers, and a
/// body delimited by Content-Length, chunked encoding, or the end of the
/// connection (none for HEAD, 1xx, 204 and 304).
pub fn read_response(reader: &mut impl BufRead, what: &str, head: bool) -> io::Result<Resp> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{what}: connection closed before a response"),
            ));
        }
        // Skip interim 100 Continue responses.
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}: status line {line:?}"),
                )
            })?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{what}: EOF in headers"),
                ));
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut resp = Resp {
            what: what.to_string(),
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 {
            return Ok(resp);
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let mut size_line = String::new();
                reader.read_line(&mut size_line)?;
                let size_text = size_line
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let size = usize::from_str_radix(&size_text, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{what}: chunk size {size_line:?}"),
                    )
                })?;
                if size == 0 {
                    let mut trailer = String::new();
                    while reader.read_line(&mut trailer)? > 0 && trailer.trim_end() != "" {
                        trailer.clear();
                    }
                    break;
                }
                let mut chunk = vec![0u8; size];
                reader.read_exact(&mut chunk)?;
                resp.body.extend_from_slice(&chunk);
                let mut crlf = [0u8; 2];
                reader.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = resp.content_length() {
            let mut body = vec![0u8; n as usize];
            reader.read_exact(&mut body)?;
            resp.body = body;
        } else {
            reader.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

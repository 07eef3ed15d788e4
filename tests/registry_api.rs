//! The OCI distribution API served by `layerstore serve`, tested from
//! outside over HTTP: every case of the registry cases list (pushes in each
//! client's style, pulls, ranges, mounts, deletes, tags, referrers, sha512,
//! error bodies), the server's own choices (one registry-wide blob
//! namespace, relative Locations, repositories as the store's images), real
//! gzip and zstd layers, concurrent pushes, hostile requests, keep-alive
//! connections after refusals, Basic auth (`--htpasswd`, with an embedded
//! bcrypt file), `--anonymous-read`, `--read-only`, graceful SIGTERM and
//! `--max-lifetime`, and skopeo as a real client.
//!
//! Each test function starts one server on its own temporary store.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tempfile::TempDir;

const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const MT_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const MT_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const MT_DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const EMPTY_BLOB_DIGEST: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const EMPTY_JSON_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A server on a fresh store in its own temporary directory. The server is
/// dropped (stopped) before the directory.
struct Env {
    reg: Registry,
    store: PathBuf,
    dir: TempDir,
}

impl std::ops::Deref for Env {
    type Target = Registry;
    fn deref(&self) -> &Registry {
        &self.reg
    }
}

fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("layerstore-registry-")
        .tempdir()
        .unwrap()
}

#[track_caller]
fn serve() -> Env {
    let dir = tmp();
    let store = dir.path().join("store");
    let reg = Registry::start(&store);
    Env { reg, store, dir }
}

/// The empty descriptor of OCI 1.1 (`{}`).
fn empty_desc() -> Value {
    json!({"mediaType": MT_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2})
}

/// A digest no test ever pushes.
fn absent_digest(tag: &str) -> String {
    sha(format!("never pushed: {tag}").as_bytes())
}

/// Standard base64 (descriptors' `data` field, Basic credentials).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A layer tar of a few files of text and random bytes.
fn layer_tar(seed: u64, size: usize) -> Vec<u8> {
    tar_layer(&[
        (format!("etc/conf-{seed}.txt"), text_bytes(seed, size / 2)),
        (format!("bin/tool-{seed}"), random_bytes(seed + 1, size / 2)),
    ])
}

/// A pushed image: its config, layer blobs, manifest and digest.
struct Pushed {
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    manifest: Vec<u8>,
    digest: String,
    media_type: String,
}

impl Pushed {
    fn desc(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.manifest.len()})
    }
}

/// Pushes a real OCI image to `repo`: every layer blob (media type, blob
/// bytes, uncompressed tar), a config whose DiffIDs match, and the manifest
/// under `reference`.
#[track_caller]
fn push_image(
    reg: &Registry,
    repo: &str,
    reference: &str,
    layers: &[(&str, Vec<u8>, Vec<u8>)],
) -> Pushed {
    let diff_ids: Vec<String> = layers.iter().map(|(_, _, tar)| sha(tar)).collect();
    let config = config_json("amd64", &diff_ids);
    reg.push_blob(repo, &config);
    let mut descs = Vec::new();
    for (mt, blob, _) in layers {
        reg.push_blob(repo, blob);
        descs.push(desc(mt, blob));
    }
    let manifest = manifest_json(&desc(MT_CONFIG, &config), &descs);
    reg.push_manifest(repo, reference, MT_MANIFEST, &manifest);
    Pushed {
        config,
        layers: layers.iter().map(|(_, b, _)| b.clone()).collect(),
        digest: sha(&manifest),
        manifest,
        media_type: MT_MANIFEST.to_string(),
    }
}

/// Pushes `doc` (its blobs already pushed) as `media_type` under
/// `reference`; returns it as a [`Pushed`].
#[track_caller]
fn push_doc(reg: &Registry, repo: &str, reference: &str, media_type: &str, doc: Vec<u8>) -> Pushed {
    reg.push_manifest(repo, reference, media_type, &doc);
    Pushed {
        config: Vec::new(),
        layers: Vec::new(),
        digest: sha(&doc),
        manifest: doc,
        media_type: media_type.to_string(),
    }
}

/// Asserts a pushed document answers by tag (when given) and by digest.
#[track_caller]
fn assert_pulls(reg: &Registry, repo: &str, tag: Option<&str>, p: &Pushed, case: &str) {
    if let Some(tag) = tag {
        reg.assert_manifest(
            repo,
            tag,
            &p.media_type,
            &p.manifest,
            &p.digest,
            &format!("{case} (by tag)"),
        );
    }
    reg.assert_manifest(
        repo,
        &p.digest,
        &p.media_type,
        &p.manifest,
        &p.digest,
        &format!("{case} (by digest)"),
    );
}

/// `GET /v2/R/tags/list[?query]`, asserted 200; returns the tags and the
/// Link header.
#[track_caller]
fn tags_page(reg: &Registry, path: &str, repo: &str, case: &str) -> (Vec<String>, Option<String>) {
    let r = reg.get(path);
    assert_eq!(r.status, 200, "{case}: GET {path}: {r}");
    let v = r.json();
    assert_eq!(v["name"], repo, "{case}: name in {r}");
    let tags = v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("{case}: tags is not an array: {r}"))
        .iter()
        .map(|t| t.as_str().expect("tag strings").to_string())
        .collect();
    (tags, r.header("link").map(str::to_string))
}

/// The URL of a `Link: <URL>; rel="next"` header.
#[track_caller]
fn link_target(link: &str, case: &str) -> String {
    assert!(
        link.contains("rel=\"next\""),
        "{case}: Link {link:?} has no rel=\"next\""
    );
    let start = link
        .find('<')
        .unwrap_or_else(|| panic!("{case}: Link {link:?}"));
    let end = link
        .find('>')
        .unwrap_or_else(|| panic!("{case}: Link {link:?}"));
    link[start + 1..end].to_string()
}

/// Every file and directory under `root`, except those under `skip`.
fn tree(root: &Path, skip: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.starts_with(skip) {
                continue;
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 1. The base endpoint, unknown things, error bodies
// ---------------------------------------------------------------------------

#[test]
fn ping_unknown_objects_and_error_bodies() {
    let reg = serve();
    let r = reg.get("/v2/");
    assert_eq!(r.status, 200, "GET /v2/: {r}");
    let r = reg.head("/v2/");
    assert_eq!(r.status, 200, "HEAD /v2/: {r}");

    let d = absent_digest("ping");
    let r = reg.get(&format!("/v2/a/b/blobs/{d}"));
    r.assert_error(&[404], &["BLOB_UNKNOWN"], "GET of an unknown blob");
    let r = reg.head(&format!("/v2/a/b/blobs/{d}"));
    assert_eq!(r.status, 404, "HEAD of an unknown blob: {r}");
    let r = reg.delete(&format!("/v2/a/b/blobs/{d}"));
    r.assert_error(&[404], &["BLOB_UNKNOWN"], "DELETE of an unknown blob");

    let r = reg.get_manifest("a/b", "latest");
    r.assert_error(&[404], &["MANIFEST_UNKNOWN"], "GET of an unknown tag");
    let r = reg.get_manifest("a/b", &d);
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN"],
        "GET of an unknown manifest digest",
    );
    let r = reg.head("/v2/a/b/manifests/latest");
    assert_eq!(r.status, 404, "HEAD of an unknown tag: {r}");
    let r = reg.delete("/v2/a/b/manifests/latest");
    r.assert_error(&[404], &["MANIFEST_UNKNOWN"], "DELETE of an unknown tag");

    let r = reg.get("/v2/a/b/tags/list");
    r.assert_error(
        &[404],
        &["NAME_UNKNOWN"],
        "tags/list of a repository that was never pushed",
    );

    let bogus = "/v2/a/b/blobs/uploads/0123456789abcdef0123456789abcdef";
    let r = reg.get(bogus);
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "GET of an unknown upload session",
    );
    let r = reg.request(
        "PATCH",
        bogus,
        &[("Content-Type", "application/octet-stream")],
        Some(b"data"),
    );
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "PATCH of an unknown upload session",
    );
    let r = reg.request(
        "PUT",
        &format!("{bogus}?digest={}", sha(b"data")),
        &[],
        Some(b"data"),
    );
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "PUT to an unknown upload session",
    );
    let r = reg.delete(bogus);
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "DELETE of an unknown upload session",
    );

    // A session of one repository is not reachable through another.
    let location = reg.start_upload("a/b");
    let other = location.replacen("/v2/a/b/", "/v2/c/d/", 1);
    let r = reg.get(&other);
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "an upload session used through another repository",
    );

    // A method an endpoint does not have.
    let r = reg.request("POST", "/v2/a/b/manifests/latest", &[], Some(b"{}"));
    r.assert_refused(&[404, 405], "POST on a manifest");
    reg.assert_alive("unknown objects");
}

/// Every refusal's body uses an error code of the OCI specification (the
/// cases list), whatever the endpoint or parameter that was wrong.
#[test]
fn every_refusal_uses_an_oci_error_code() {
    let reg = serve();
    let tar = layer_tar(5, 2000);
    let img = push_image(&reg, "codes/r", "v1", &[(MT_LAYER, tar.clone(), tar)]);
    let cases: Vec<(&str, &str, String, Option<&[u8]>)> = vec![
        ("an unknown endpoint", "GET", "/v2/foo".to_string(), None),
        (
            "an unknown endpoint under a repository",
            "GET",
            "/v2/codes/r/nothing/here".to_string(),
            None,
        ),
        (
            "tags/list?n=abc",
            "GET",
            "/v2/codes/r/tags/list?n=abc".to_string(),
            None,
        ),
        (
            "tags/list?n=-1",
            "GET",
            "/v2/codes/r/tags/list?n=-1".to_string(),
            None,
        ),
        (
            "a manifest PUT with an invalid tag",
            "PUT",
            "/v2/codes/r/manifests/-bad".to_string(),
            Some(&img.manifest[..]),
        ),
        (
            "a manifest GET with an invalid tag",
            "GET",
            "/v2/codes/r/manifests/-bad".to_string(),
            None,
        ),
        (
            "a manifest DELETE with an invalid tag",
            "DELETE",
            "/v2/codes/r/manifests/-bad".to_string(),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (case, method, path, body) in cases {
        let r = reg.request(method, &path, &[("Content-Type", MT_MANIFEST)], body);
        if !(400..500).contains(&r.status) {
            failures.push(format!("{case}: expected a 4xx, got {r}"));
            continue;
        }
        let codes = r.error_codes();
        if !codes.iter().all(|c| OCI_ERROR_CODES.contains(&c.as_str())) {
            failures.push(format!(
                "{case}: codes {codes:?} are not OCI error codes: {r}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "refusals with codes outside the OCI list:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. Blob pushes in every client's style
// ---------------------------------------------------------------------------

#[track_caller]
fn check_session_headers(r: &Resp, repo: &str, case: &str) -> String {
    let location = r.location();
    assert!(
        location.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "{case}: Location {location:?} is not /v2/{repo}/blobs/uploads/<id>"
    );
    let uuid = r
        .header("docker-upload-uuid")
        .unwrap_or_else(|| panic!("{case}: no Docker-Upload-UUID: {r}"));
    assert!(
        !uuid.is_empty() && location.contains(uuid),
        "{case}: Docker-Upload-UUID {uuid:?} is not the session of Location {location:?}"
    );
    location
}

#[test]
fn blob_pushes_in_every_client_style() {
    let reg = serve();
    let repo = "push/styles";

    // oras, python-dxf: POST, then one monolithic PUT with the body.
    let mono = random_bytes(1, 300_000);
    let r = reg.request(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        Some(b""),
    );
    assert_eq!(r.status, 202, "POST uploads/: {r}");
    let location = check_session_headers(&r, repo, "POST uploads/");
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&mono))),
        &[("Content-Type", "application/octet-stream")],
        Some(&mono),
    );
    assert_eq!(r.status, 201, "monolithic PUT: {r}");
    assert_eq!(
        r.location(),
        format!("/v2/{repo}/blobs/{}", sha(&mono)),
        "monolithic PUT Location"
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha(&mono).as_str()),
        "monolithic PUT DCD"
    );
    reg.assert_blob(repo, &sha(&mono), &mono, "monolithic push");

    // Single-request push: POST ?digest= with the body → 201 (or 202).
    let single = text_bytes(2, 100_000);
    let r = reg.request(
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha(&single)),
        &[("Content-Type", "application/octet-stream")],
        Some(&single),
    );
    match r.status {
        201 => {
            assert_eq!(
                r.location(),
                format!("/v2/{repo}/blobs/{}", sha(&single)),
                "single POST Location"
            );
            reg.assert_blob(repo, &sha(&single), &single, "single-request push");
        }
        202 => {
            check_session_headers(&r, repo, "single POST answered 202");
        }
        _ => panic!("single-request POST ?digest=: expected 201 or 202, got {r}"),
    }

    // skopeo/podman: one PATCH with the whole blob, no Content-Range.
    let streamed = partly_repetitive(3, 2 * MIB + 17);
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        Some(&streamed),
    );
    assert_eq!(r.status, 202, "streamed PATCH: {r}");
    let location = check_session_headers(&r, repo, "streamed PATCH");
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", streamed.len() - 1).as_str()),
        "streamed PATCH Range"
    );
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&streamed))),
        &[],
        None,
    );
    assert_eq!(r.status, 201, "PUT closing a streamed upload: {r}");
    assert_eq!(
        r.location(),
        format!("/v2/{repo}/blobs/{}", sha(&streamed)),
        "closing PUT Location"
    );
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha(&streamed).as_str()),
        "closing PUT DCD"
    );
    reg.assert_blob(repo, &sha(&streamed), &streamed, "streamed PATCH push");

    // buildah: the PATCH body with Transfer-Encoding: chunked.
    let chunked = random_bytes(4, 3 * MIB + 5);
    let location = reg.start_upload(repo);
    let r = reg.request_chunked(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        &mut Cursor::new(chunked.clone()),
    );
    assert_eq!(r.status, 202, "chunked-encoding PATCH: {r}");
    let location = check_session_headers(&r, repo, "chunked-encoding PATCH");
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", chunked.len() - 1).as_str()),
        "chunked-encoding PATCH Range"
    );
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&chunked))),
        &[],
        None,
    );
    assert_eq!(r.status, 201, "PUT closing a chunked-encoding upload: {r}");
    reg.assert_blob(
        repo,
        &sha(&chunked),
        &chunked,
        "chunked-encoding PATCH push",
    );

    // oci-client: PATCH chunks with Content-Range, status GET, an
    // out-of-order chunk, the last chunk in the closing PUT.
    let blob = random_bytes(5, 10_000);
    let location = reg.start_upload(repo);
    let patch = |location: &str, range: &str, data: &[u8]| {
        reg.request(
            "PATCH",
            location,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", range),
            ],
            Some(data),
        )
    };
    let r = patch(&location, "0-3999", &blob[..4000]);
    assert_eq!(r.status, 202, "first ranged PATCH 0-3999: {r}");
    let location = check_session_headers(&r, repo, "first ranged PATCH");
    assert_eq!(
        r.header("range"),
        Some("0-3999"),
        "Range after the first chunk"
    );
    let r = reg.get(&location);
    assert_eq!(r.status, 204, "upload status GET: {r}");
    assert_eq!(r.header("range"), Some("0-3999"), "upload status Range");
    check_session_headers(&r, repo, "upload status GET");
    let r = patch(&location, "5000-5999", &blob[5000..6000]);
    r.assert_refused(&[416], "PATCH 5000-5999 after 0-3999 (a gap)");
    let r = patch(&location, "0-999", &blob[..1000]);
    r.assert_refused(&[416], "PATCH 0-999 after 0-3999 (a rewind)");
    let r = reg.get(&location);
    assert_eq!(r.status, 204, "upload status after refused chunks: {r}");
    assert_eq!(
        r.header("range"),
        Some("0-3999"),
        "refused chunks left the session as it was"
    );
    let r = patch(&location, "4000-7999", &blob[4000..8000]);
    assert_eq!(r.status, 202, "second ranged PATCH 4000-7999: {r}");
    assert_eq!(
        r.header("range"),
        Some("0-7999"),
        "Range after the second chunk"
    );
    let location = r.location();
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&blob))),
        &[("Content-Type", "application/octet-stream")],
        Some(&blob[8000..]),
    );
    assert_eq!(
        r.status, 201,
        "closing PUT with the last chunk as body: {r}"
    );
    assert_eq!(
        r.location(),
        format!("/v2/{repo}/blobs/{}", sha(&blob)),
        "ranged upload Location"
    );
    reg.assert_blob(repo, &sha(&blob), &blob, "chunked Content-Range push");

    // Cancel: DELETE <Location> → 204, then the session is gone and
    // nothing was stored.
    let cancelled = random_bytes(6, 5000);
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        Some(&cancelled),
    );
    assert_eq!(r.status, 202, "PATCH before a cancel: {r}");
    let location = r.location();
    let r = reg.delete(&location);
    assert_eq!(r.status, 204, "DELETE of an upload session: {r}");
    let r = reg.get(&location);
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "status GET of a cancelled session",
    );
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&cancelled))),
        &[],
        None,
    );
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "closing PUT of a cancelled session",
    );
    let r = reg.head(&format!("/v2/{repo}/blobs/{}", sha(&cancelled)));
    assert_eq!(r.status, 404, "a cancelled upload stored its blob: {r}");

    // A finished session cannot be used again.
    let once = random_bytes(7, 1000);
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&once))),
        &[],
        Some(&once),
    );
    assert_eq!(r.status, 201, "PUT of a one-shot session: {r}");
    let r = reg.get(&location);
    r.assert_error(
        &[404],
        &["BLOB_UPLOAD_UNKNOWN"],
        "status GET of a finished session",
    );
}

// ---------------------------------------------------------------------------
// 3. Digests: verified, sha512, malformed
// ---------------------------------------------------------------------------

#[test]
fn upload_digests_are_verified_and_sha512_works() {
    let reg = serve();
    let repo = "digests/r";
    let body = random_bytes(10, 50_000);
    let other = sha(b"some other content");

    // Monolithic PUT with a digest that does not match.
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={other}")),
        &[],
        Some(&body),
    );
    r.assert_error(
        &[400],
        &["DIGEST_INVALID"],
        "monolithic PUT whose body does not match ?digest=",
    );
    for d in [&other, &sha(&body)] {
        let r = reg.head(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 404, "a refused upload stored {d}: {r}");
    }

    // Streamed PATCH, then a closing PUT with a wrong digest.
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PATCH",
        &location,
        &[("Content-Type", "application/octet-stream")],
        Some(&body),
    );
    assert_eq!(r.status, 202, "PATCH: {r}");
    let location = r.location();
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={other}")),
        &[],
        None,
    );
    r.assert_error(
        &[400],
        &["DIGEST_INVALID"],
        "closing PUT whose session does not match ?digest=",
    );
    for d in [&other, &sha(&body)] {
        let r = reg.head(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 404, "a refused close stored {d}: {r}");
    }

    // A closing PUT without ?digest=, and malformed digests.
    let location = reg.start_upload(repo);
    let r = reg.request("PUT", &location, &[], Some(&body));
    r.assert_error(
        &[400],
        &["DIGEST_INVALID", "BLOB_UPLOAD_INVALID"],
        "closing PUT without ?digest=",
    );
    let hex64 = "a".repeat(64);
    for bad in [
        "sha256:baddigeststring".to_string(),
        format!("sha256:{}", &hex64[..63]),
        format!("sha256:{hex64}0"),
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha512:{hex64}"),
        format!("md5:{}", &hex64[..32]),
        hex64.clone(),
        "sha256:".to_string(),
    ] {
        let location = reg.start_upload(repo);
        let r = reg.request(
            "PUT",
            &with_query(&location, &format!("digest={bad}")),
            &[],
            Some(&body),
        );
        r.assert_error(
            &[400],
            &["DIGEST_INVALID", "UNSUPPORTED"],
            &format!("closing PUT with ?digest={bad}"),
        );
        let r = reg.get(&format!("/v2/{repo}/blobs/{bad}"));
        assert!(
            [400, 404].contains(&r.status),
            "GET of the blob digest {bad:?}: expected 400 or 404, got {r}"
        );
    }

    // sha512 blobs: push, get, head in another repository.
    let d512 = sha512(&body);
    reg.push_blob_as(repo, &body, &d512);
    reg.assert_blob(repo, &d512, &body, "sha512 blob");
    reg.assert_blob(
        "digests/other",
        &d512,
        &body,
        "sha512 blob from another repository",
    );
    // A sha512 upload whose bytes do not match.
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha512(b"x"))),
        &[],
        Some(b"y"),
    );
    r.assert_error(
        &[400],
        &["DIGEST_INVALID"],
        "sha512 PUT whose body does not match",
    );
    let r = reg.head(&format!("/v2/{repo}/blobs/{}", sha512(b"x")));
    assert_eq!(r.status, 404, "a refused sha512 upload was stored: {r}");

    // sha512 manifests: an artifact whose layer is the sha512 blob, put by
    // its sha512 digest.
    reg.push_blob(repo, b"{}");
    let doc = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": "application/vnd.example.sha512.v1",
        "config": empty_desc(),
        "layers": [{"mediaType": "application/octet-stream", "digest": d512, "size": body.len()}],
    }))
    .unwrap();
    let m512 = sha512(&doc);
    reg.push_manifest(repo, &m512, MT_MANIFEST, &doc);
    reg.assert_manifest(
        repo,
        &m512,
        MT_MANIFEST,
        &doc,
        &m512,
        "manifest put by its sha512 digest",
    );
    let wrong512 = sha512(b"not the manifest");
    let r = reg.put_manifest(repo, &wrong512, MT_MANIFEST, &doc);
    r.assert_error(
        &[400],
        &["DIGEST_INVALID"],
        "manifest PUT by a sha512 digest that does not match",
    );
    // The same bytes by tag: DCD is their sha256.
    reg.push_manifest(repo, "by-tag", MT_MANIFEST, &doc);
    reg.assert_manifest(
        repo,
        "by-tag",
        MT_MANIFEST,
        &doc,
        &sha(&doc),
        "sha512-layer manifest by tag",
    );
}

// ---------------------------------------------------------------------------
// 4. Blob reads: HEAD, GET, ranges
// ---------------------------------------------------------------------------

#[test]
fn blob_reads_and_ranges() {
    let reg = serve();
    let repo = "ranges/r";
    let blob = random_bytes(20, 2048);
    let d = reg.push_blob(repo, &blob);
    reg.assert_blob(repo, &d, &blob, "2048-byte blob");
    let path = format!("/v2/{repo}/blobs/{d}");

    for (range, start, end) in [
        ("bytes=500-1499", 500usize, 1499usize),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
        ("bytes=0-0", 0, 0),
        ("bytes=2047-2047", 2047, 2047),
    ] {
        let r = reg.request("GET", &path, &[("Range", range)], None);
        assert_eq!(r.status, 206, "Range {range}: {r}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/2048").as_str()),
            "Content-Range for {range}"
        );
        assert_eq!(
            r.content_length(),
            Some((end - start + 1) as u64),
            "Content-Length for {range}"
        );
        assert_same_bytes(&r.body, &blob[start..=end], &format!("body for {range}"));
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-"] {
        let r = reg.request("GET", &path, &[("Range", range)], None);
        assert_eq!(r.status, 416, "Range {range} is unsatisfiable: {r}");
        assert!(r.body.len() < 2048, "416 for {range} carries the blob");
    }

    // A blob of several MiB streams back exact, whole and in part.
    let big = partly_repetitive(21, 9 * MIB + 123);
    let bd = reg.push_blob(repo, &big);
    reg.assert_blob(repo, &bd, &big, "9 MiB blob");
    let r = reg.request(
        "GET",
        &format!("/v2/{repo}/blobs/{bd}"),
        &[("Range", "bytes=4194000-5242999")],
        None,
    );
    assert_eq!(r.status, 206, "range in a 9 MiB blob: {r}");
    assert_same_bytes(&r.body, &big[4_194_000..5_243_000], "range in a 9 MiB blob");
}

// ---------------------------------------------------------------------------
// 5. One blob namespace: other repositories, mounts, deletes
// ---------------------------------------------------------------------------

#[test]
fn blob_namespace_mounts_and_deletes() {
    let reg = serve();
    let blob = random_bytes(30, 70_000);
    let d = reg.push_blob("ns/one", &blob);
    for repo in ["ns/two", "other", "ns/one/deeper"] {
        reg.assert_blob(
            repo,
            &d,
            &blob,
            &format!("blob pushed in ns/one read from {repo}"),
        );
    }

    // Mounts: from a repository that has it, and without from.
    let r = reg.request(
        "POST",
        &format!("/v2/ns/three/blobs/uploads/?mount={d}&from=ns/one"),
        &[],
        Some(b""),
    );
    assert_eq!(r.status, 201, "mount of a blob ns/one has: {r}");
    assert_eq!(
        r.location(),
        format!("/v2/ns/three/blobs/{d}"),
        "mount Location"
    );
    reg.assert_blob("ns/three", &d, &blob, "mounted blob");
    let r = reg.request(
        "POST",
        &format!("/v2/ns/four/blobs/uploads/?mount={d}"),
        &[],
        Some(b""),
    );
    assert_eq!(
        r.status, 201,
        "mount without from of a blob the registry has: {r}"
    );
    assert_eq!(
        r.location(),
        format!("/v2/ns/four/blobs/{d}"),
        "mount without from Location"
    );

    // A mount of a digest that exists nowhere falls back to an upload.
    let fresh = random_bytes(31, 40_000);
    let fd = sha(&fresh);
    for query in [format!("mount={fd}&from=ns/one"), format!("mount={fd}")] {
        let r = reg.request(
            "POST",
            &format!("/v2/ns/five/blobs/uploads/?{query}"),
            &[],
            Some(b""),
        );
        assert_eq!(r.status, 202, "mount ?{query} of an absent digest: {r}");
        let location = check_session_headers(&r, "ns/five", &format!("mount fallback ?{query}"));
        let r = reg.head(&format!("/v2/ns/five/blobs/{fd}"));
        assert_eq!(r.status, 404, "a mount fallback created the blob: {r}");
        let r = reg.request(
            "PATCH",
            &location,
            &[("Content-Type", "application/octet-stream")],
            Some(&fresh),
        );
        assert_eq!(r.status, 202, "PATCH to a mount fallback session: {r}");
        let r = reg.request(
            "PUT",
            &with_query(&r.location(), &format!("digest={fd}")),
            &[],
            None,
        );
        assert_eq!(r.status, 201, "closing a mount fallback session: {r}");
        reg.assert_blob(
            "ns/five",
            &fd,
            &fresh,
            "blob pushed through a mount fallback session",
        );
        let r = reg.delete(&format!("/v2/ns/five/blobs/{fd}"));
        assert_eq!(r.status, 202, "DELETE of the fallback blob: {r}");
    }

    // DELETE → 202, then 404 everywhere; pushing again brings it back.
    let r = reg.delete(&format!("/v2/ns/two/blobs/{d}"));
    assert_eq!(r.status, 202, "DELETE blob: {r}");
    for repo in ["ns/one", "ns/two", "ns/three"] {
        let r = reg.head(&format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(r.status, 404, "HEAD in {repo} after DELETE: {r}");
        let r = reg.get(&format!("/v2/{repo}/blobs/{d}"));
        r.assert_error(
            &[404],
            &["BLOB_UNKNOWN"],
            &format!("GET in {repo} after DELETE"),
        );
    }
    let r = reg.delete(&format!("/v2/ns/two/blobs/{d}"));
    r.assert_error(&[404], &["BLOB_UNKNOWN"], "second DELETE of a blob");
    reg.push_blob("ns/two", &blob);
    reg.assert_blob("ns/one", &d, &blob, "blob pushed again after its DELETE");

    // The well-known blobs push, head, get and delete like any other.
    for (bytes, digest) in [
        (&b""[..], EMPTY_BLOB_DIGEST),
        (&b"{}"[..], EMPTY_JSON_DIGEST),
    ] {
        assert_eq!(sha(bytes), digest);
        let location = reg.start_upload("ns/wk");
        let r = reg.request(
            "PUT",
            &with_query(&location, &format!("digest={digest}")),
            &[],
            Some(bytes),
        );
        assert_eq!(r.status, 201, "push of the well-known blob {digest}: {r}");
        reg.assert_blob("ns/wk", digest, bytes, &format!("well-known blob {digest}"));
        let r = reg.delete(&format!("/v2/ns/wk/blobs/{digest}"));
        assert_eq!(r.status, 202, "DELETE of the well-known blob {digest}: {r}");
        let r = reg.head(&format!("/v2/ns/wk/blobs/{digest}"));
        assert_eq!(
            r.status, 404,
            "HEAD of the well-known blob {digest} after DELETE: {r}"
        );
    }
}

// ---------------------------------------------------------------------------
// 6. Manifests of every kind are stored and answered verbatim
// ---------------------------------------------------------------------------

#[test]
fn manifests_of_every_kind_round_trip_verbatim() {
    let reg = serve();
    let repo = "docs/r";

    // An image with gzip layers, and one with uncompressed layers.
    let t1 = layer_tar(40, 60_000);
    let t2 = layer_tar(41, 30_000);
    let gz = push_image(
        &reg,
        repo,
        "gzip",
        &[
            (MT_LAYER_GZIP, gzip(&t1), t1.clone()),
            (MT_LAYER_GZIP, gzip(&t2), t2.clone()),
        ],
    );
    assert_pulls(&reg, repo, Some("gzip"), &gz, "image with gzip layers");
    let plain = push_image(
        &reg,
        repo,
        "plain",
        &[
            (MT_LAYER, t1.clone(), t1.clone()),
            (MT_LAYER, t2.clone(), t2.clone()),
        ],
    );
    assert_pulls(
        &reg,
        repo,
        Some("plain"),
        &plain,
        "image with uncompressed layers",
    );

    // Docker v2 schema 2 manifest and manifest list (python-dxf).
    let dconfig = config_json("arm64", &[sha(&t1)]);
    reg.push_blob(repo, &dconfig);
    let docker = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_MANIFEST,
        "config": desc(MT_DOCKER_CONFIG, &dconfig),
        "layers": [desc(MT_DOCKER_LAYER, &gzip(&t1))],
    }))
    .unwrap();
    let docker = push_doc(&reg, repo, "docker", MT_DOCKER_MANIFEST, docker);
    assert_pulls(
        &reg,
        repo,
        Some("docker"),
        &docker,
        "Docker v2 schema 2 manifest",
    );
    let mut dentry = docker.desc();
    dentry["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let dlist = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_LIST,
        "manifests": [dentry],
    }))
    .unwrap();
    let dlist = push_doc(&reg, repo, "docker-list", MT_DOCKER_LIST, dlist);
    assert_pulls(
        &reg,
        repo,
        Some("docker-list"),
        &dlist,
        "Docker manifest list",
    );

    // An index, an index of an index, an empty index.
    let mut e1 = gz.desc();
    e1["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut e2 = plain.desc();
    e2["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = push_doc(&reg, repo, "index", MT_INDEX, index_json(&[e1, e2]));
    assert_pulls(&reg, repo, Some("index"), &index, "image index");
    let nested = push_doc(
        &reg,
        repo,
        "nested",
        MT_INDEX,
        index_json(&[index.desc(), docker.desc()]),
    );
    assert_pulls(&reg, repo, Some("nested"), &nested, "nested index");
    let empty_index = push_doc(&reg, repo, "empty-index", MT_INDEX, index_json(&[]));
    assert_pulls(&reg, repo, Some("empty-index"), &empty_index, "empty index");

    // Artifacts: a custom artifactType with the empty config, and one
    // whose only layer is the empty descriptor.
    reg.push_blob(repo, b"{}");
    let sbom = text_bytes(42, 5000);
    reg.push_blob(repo, &sbom);
    let artifact = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": empty_desc(),
        "layers": [desc("application/vnd.example.sbom.layer.v1+json", &sbom)],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }))
    .unwrap();
    let artifact = push_doc(&reg, repo, "artifact", MT_MANIFEST, artifact);
    assert_pulls(
        &reg,
        repo,
        Some("artifact"),
        &artifact,
        "artifact with a custom artifactType",
    );
    let bare = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": "application/vnd.example.bare.v1",
        "config": empty_desc(),
        "layers": [empty_desc()],
    }))
    .unwrap();
    let bare = push_doc(&reg, repo, "artifact-bare", MT_MANIFEST, bare);
    assert_pulls(
        &reg,
        repo,
        Some("artifact-bare"),
        &bare,
        "artifact without layers",
    );

    // A manifest with no layers at all.
    let noconf = config_json("amd64", &[]);
    reg.push_blob(repo, &noconf);
    let nolayers = push_doc(
        &reg,
        repo,
        "no-layers",
        MT_MANIFEST,
        manifest_json(&desc(MT_CONFIG, &noconf), &[]),
    );
    assert_pulls(
        &reg,
        repo,
        Some("no-layers"),
        &nolayers,
        "manifest with no layers",
    );

    // A descriptor with a `data` field.
    let mut cdesc = desc(MT_CONFIG, &gz.config);
    cdesc["data"] = json!(base64(&gz.config));
    let with_data = push_doc(
        &reg,
        repo,
        "data",
        MT_MANIFEST,
        manifest_json(&cdesc, &[desc(MT_LAYER_GZIP, &gz.layers[0])]),
    );
    assert_pulls(
        &reg,
        repo,
        Some("data"),
        &with_data,
        "descriptor with a data field",
    );

    // Custom fields, odd spacing, key order and escapes: kept verbatim.
    let custom = format!(
        "{{\n\t\"x-custom\" : {{\"nested\": [1, 2.50, true, null, \"\\u00e9\\n\"]}},\n  \"layers\":[{}],\
         \"config\":{},   \"mediaType\":\"{MT_MANIFEST}\",\"schemaVersion\":2,\
         \"annotations\":{{\"k\":\"名前 ü\"}}}}\n\n",
        serde_json::to_string(&desc(MT_LAYER_GZIP, &gz.layers[1])).unwrap(),
        serde_json::to_string(&desc(MT_CONFIG, &gz.config)).unwrap(),
    );
    let custom = push_doc(&reg, repo, "custom", MT_MANIFEST, custom.into_bytes());
    assert_pulls(
        &reg,
        repo,
        Some("custom"),
        &custom,
        "manifest with custom fields",
    );

    // No mediaType field: the Content-Type it was pushed with is its type.
    let untyped = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": desc(MT_CONFIG, &gz.config),
        "layers": [desc(MT_LAYER_GZIP, &gz.layers[0])],
    }))
    .unwrap();
    let untyped = push_doc(&reg, repo, "untyped", MT_MANIFEST, untyped);
    assert_pulls(
        &reg,
        repo,
        Some("untyped"),
        &untyped,
        "manifest without a mediaType field",
    );

    // A large manifest: hundreds of layers.
    let tars: Vec<(&str, Vec<u8>, Vec<u8>)> = (0..260u64)
        .map(|i| {
            let t = tar_layer(&[(
                format!("layer/{i}.txt"),
                text_bytes(1000 + i, 300 + i as usize),
            )]);
            (MT_LAYER, t.clone(), t)
        })
        .collect();
    let large = push_image(&reg, repo, "large", &tars);
    assert!(large.manifest.len() > 40_000, "the large manifest is large");
    assert_pulls(
        &reg,
        repo,
        Some("large"),
        &large,
        "manifest with 260 layers",
    );

    // Put by digest only; the same bytes under a second tag; a tag moved.
    let by_digest = manifest_json(
        &desc(MT_CONFIG, &plain.config),
        &[desc(MT_LAYER, &plain.layers[1])],
    );
    let d = sha(&by_digest);
    reg.push_manifest(repo, &d, MT_MANIFEST, &by_digest);
    reg.assert_manifest(
        repo,
        &d,
        MT_MANIFEST,
        &by_digest,
        &d,
        "manifest put by digest",
    );
    reg.push_manifest(repo, "second-name", MT_MANIFEST, &gz.manifest);
    reg.assert_manifest(
        repo,
        "second-name",
        MT_MANIFEST,
        &gz.manifest,
        &gz.digest,
        "second tag of one manifest",
    );
    reg.push_manifest(repo, "gzip", MT_MANIFEST, &plain.manifest);
    reg.assert_manifest(
        repo,
        "gzip",
        MT_MANIFEST,
        &plain.manifest,
        &plain.digest,
        "tag moved to another manifest",
    );
    reg.assert_manifest(
        repo,
        &gz.digest,
        MT_MANIFEST,
        &gz.manifest,
        &gz.digest,
        "manifest whose tag moved, by digest",
    );
    // Pushing the same bytes again is fine.
    reg.push_manifest(repo, "plain", MT_MANIFEST, &plain.manifest);

    // Manifests are per repository: another repository does not have them.
    let r = reg.get_manifest("docs/elsewhere", "plain");
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
        "tag of docs/r read in docs/elsewhere",
    );

    // Every tag pushed is listed.
    let (tags, _) = tags_page(
        &reg,
        &format!("/v2/{repo}/tags/list"),
        repo,
        "all tags of docs/r",
    );
    let mut expect: Vec<String> = [
        "gzip",
        "plain",
        "docker",
        "docker-list",
        "index",
        "nested",
        "empty-index",
        "artifact",
        "artifact-bare",
        "no-layers",
        "data",
        "custom",
        "untyped",
        "large",
        "second-name",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    expect.sort();
    assert_eq!(tags, expect, "tags/list of docs/r");
}

// ---------------------------------------------------------------------------
// 7. Manifest pushes are checked
// ---------------------------------------------------------------------------

#[test]
fn manifest_pushes_are_checked() {
    let reg = serve();
    let repo = "check/r";
    let tar = layer_tar(50, 20_000);
    let layer = gzip(&tar);
    let config = config_json("amd64", &[sha(&tar)]);

    // Referenced blobs must exist: config, layer, index child.
    let m = manifest_json(&desc(MT_CONFIG, &config), &[desc(MT_LAYER_GZIP, &layer)]);
    let r = reg.put_manifest(repo, "t", MT_MANIFEST, &m);
    r.assert_error(
        &[400],
        &["MANIFEST_BLOB_UNKNOWN"],
        "manifest whose config and layer were never pushed",
    );
    reg.push_blob(repo, &config);
    let r = reg.put_manifest(repo, "t", MT_MANIFEST, &m);
    r.assert_error(
        &[400],
        &["MANIFEST_BLOB_UNKNOWN"],
        "manifest whose layer was never pushed",
    );
    let r = reg.get_manifest(repo, "t");
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN"],
        "a refused manifest is not served by tag",
    );
    let r = reg.get_manifest(repo, &sha(&m));
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN"],
        "a refused manifest is not served by digest",
    );
    let r = reg.put_manifest(repo, "idx", MT_INDEX, &index_json(&[desc(MT_MANIFEST, &m)]));
    r.assert_error(
        &[400],
        &["MANIFEST_BLOB_UNKNOWN"],
        "index whose child manifest was never pushed",
    );
    let cfg_only = manifest_json(&desc(MT_CONFIG, &config), &[desc(MT_LAYER_GZIP, &layer)]);
    reg.push_blob(repo, &layer);
    reg.push_manifest(repo, "t", MT_MANIFEST, &cfg_only);
    reg.push_manifest(repo, "idx", MT_INDEX, &index_json(&[desc(MT_MANIFEST, &m)]));

    // An image whose layer digest is wrong: the blob is refused, and so is
    // the manifest naming the digest it claimed.
    let wrong_tar = layer_tar(51, 10_000);
    let claimed = sha(b"the digest this layer claims");
    let location = reg.start_upload(repo);
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={claimed}")),
        &[],
        Some(&wrong_tar),
    );
    r.assert_error(
        &[400],
        &["DIGEST_INVALID"],
        "layer pushed under a wrong digest",
    );
    let bad = manifest_json(
        &desc(MT_CONFIG, &config),
        &[json!({"mediaType": MT_LAYER, "digest": claimed, "size": wrong_tar.len()})],
    );
    let r = reg.put_manifest(repo, "wrong-layer", MT_MANIFEST, &bad);
    r.assert_error(
        &[400],
        &["MANIFEST_BLOB_UNKNOWN"],
        "image whose layer digest is wrong",
    );

    // Non-distributable layers never pushed are accepted.
    let foreign = json!({
        "mediaType": MT_NONDIST, "digest": absent_digest("nondist"), "size": 123456,
        "urls": ["https://example.invalid/layer.tar.gz"],
    });
    let nd = manifest_json(
        &desc(MT_CONFIG, &config),
        &[foreign, desc(MT_LAYER_GZIP, &layer)],
    );
    reg.push_manifest(repo, "nondist", MT_MANIFEST, &nd);
    reg.assert_manifest(
        repo,
        "nondist",
        MT_MANIFEST,
        &nd,
        &sha(&nd),
        "OCI non-distributable layer never pushed",
    );
    let dnd = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_DOCKER_MANIFEST,
        "config": desc(MT_DOCKER_CONFIG, &config),
        "layers": [
            {"mediaType": MT_DOCKER_FOREIGN, "digest": absent_digest("foreign"), "size": 99,
             "urls": ["https://example.invalid/base.tar.gz"]},
            desc(MT_DOCKER_LAYER, &layer),
        ],
    }))
    .unwrap();
    reg.push_manifest(repo, "foreign", MT_DOCKER_MANIFEST, &dnd);
    reg.assert_manifest(
        repo,
        "foreign",
        MT_DOCKER_MANIFEST,
        &dnd,
        &sha(&dnd),
        "Docker foreign layer never pushed",
    );

    // Invalid JSON and invalid documents.
    for (case, body) in [
        ("truncated JSON", b"{\"schemaVersion\": 2, \"config\": {".to_vec()),
        ("not JSON", b"this is not a manifest".to_vec()),
        ("empty body", Vec::new()),
        ("a JSON array", b"[1, 2, 3]".to_vec()),
        ("layers of the wrong type", format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{MT_MANIFEST}\",\"config\":{},\"layers\":\"oops\"}}",
            serde_json::to_string(&desc(MT_CONFIG, &config)).unwrap()
        ).into_bytes()),
        ("invalid UTF-8", b"{\"schemaVersion\": 2, \"x\": \"\xff\xfe\"}".to_vec()),
    ] {
        let r = reg.put_manifest(repo, "invalid", MT_MANIFEST, &body);
        r.assert_error(&[400], &["MANIFEST_INVALID"], case);
    }
    let bad_desc = manifest_json(
        &json!({"mediaType": MT_CONFIG, "digest": "sha256:xyz", "size": 2}),
        &[desc(MT_LAYER_GZIP, &layer)],
    );
    let r = reg.put_manifest(repo, "invalid", MT_MANIFEST, &bad_desc);
    r.assert_error(
        &[400],
        &["MANIFEST_INVALID", "DIGEST_INVALID"],
        "manifest with a malformed descriptor digest",
    );
    let r = reg.get_manifest(repo, "invalid");
    assert_eq!(
        r.status, 404,
        "an invalid manifest was stored under its tag: {r}"
    );

    // Digest references: not matching the body, malformed.
    let other = sha(b"not this manifest");
    let r = reg.put_manifest(repo, &other, MT_MANIFEST, &cfg_only);
    r.assert_error(
        &[400],
        &["DIGEST_INVALID"],
        "manifest PUT by a digest that does not match the body",
    );
    let r = reg.get_manifest(repo, &other);
    assert_eq!(
        r.status, 404,
        "a mismatched manifest PUT stored the claimed digest: {r}"
    );
    let r = reg.put_manifest(repo, "sha256:baddigeststring", MT_MANIFEST, &cfg_only);
    r.assert_refused(&[400], "PUT manifests/sha256:baddigeststring");
    let r = reg.get_manifest(repo, "sha256:baddigeststring");
    r.assert_refused(&[400, 404], "GET manifests/sha256:baddigeststring");
    let r = reg.put_manifest(
        repo,
        &format!("sha256:{}", &"b".repeat(63)),
        MT_MANIFEST,
        &cfg_only,
    );
    r.assert_refused(&[400], "manifest PUT by a sha256 digest of 63 hex digits");

    // Size limit: just under 4 MiB is accepted, over it refused.
    let padded = |total: usize| {
        let head = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{MT_MANIFEST}\",\"config\":{},\"layers\":[{}],\"x-pad\":\"",
            serde_json::to_string(&desc(MT_CONFIG, &config)).unwrap(),
            serde_json::to_string(&desc(MT_LAYER_GZIP, &layer)).unwrap(),
        );
        let mut doc = head.into_bytes();
        doc.resize(total - 2, b'p');
        doc.extend_from_slice(b"\"}");
        doc
    };
    let under = padded(4 * MIB - 4096);
    reg.push_manifest(repo, "almost-4mib", MT_MANIFEST, &under);
    reg.assert_manifest(
        repo,
        "almost-4mib",
        MT_MANIFEST,
        &under,
        &sha(&under),
        "manifest just under 4 MiB",
    );
    let over = padded(4 * MIB + 4096);
    let head = format!(
        "PUT /v2/{repo}/manifests/too-big HTTP/1.1\r\nHost: {}\r\nContent-Type: {MT_MANIFEST}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        reg.addr(),
        over.len()
    );
    let r = reg
        .raw(&head, &over)
        .expect("a response to a manifest over 4 MiB");
    assert!(
        [413, 400].contains(&r.status),
        "manifest over 4 MiB: expected 413 or 400, got {r}"
    );
    if r.status == 400 {
        r.assert_error(
            &[400],
            &["MANIFEST_INVALID", "SIZE_INVALID"],
            "manifest over 4 MiB",
        );
    }
    let r = reg.get_manifest(repo, "too-big");
    assert_eq!(r.status, 404, "a manifest over 4 MiB was stored: {r}");

    // Tags: the grammar's bounds.
    let longest = format!("A{}", "b_.-9".repeat(26))
        .chars()
        .take(128)
        .collect::<String>();
    assert_eq!(longest.len(), 128);
    for tag in ["A_b.C-1", "_x", "0", longest.as_str()] {
        reg.push_manifest(repo, tag, MT_MANIFEST, &cfg_only);
        reg.assert_manifest(
            repo,
            tag,
            MT_MANIFEST,
            &cfg_only,
            &sha(&cfg_only),
            &format!("valid tag {tag:?}"),
        );
    }
    let too_long = format!("{longest}x");
    // The codes of these refusals are checked by
    // every_refusal_uses_an_oci_error_code; here the statuses and the
    // shape of the error body.
    for tag in [".dot", "-dash", too_long.as_str(), "a%20b", "a+b", "t@g"] {
        let r = reg.put_manifest(repo, tag, MT_MANIFEST, &cfg_only);
        assert_eq!(
            r.status, 400,
            "manifest PUT with the invalid tag {tag:?}: {r}"
        );
        assert!(
            !r.error_codes().is_empty(),
            "manifest PUT with the invalid tag {tag:?}: {r}"
        );
        let r = reg.get_manifest(repo, tag);
        assert!(
            [400, 404].contains(&r.status),
            "GET of the invalid tag {tag:?}: expected 400 or 404, got {r}"
        );
    }
    reg.assert_alive("manifest refusals");
}

// ---------------------------------------------------------------------------
// 8. Tags: order, pagination; manifest and blob deletes
// ---------------------------------------------------------------------------

#[test]
fn tag_lists_paginate_and_deletes_remove_what_they_name() {
    let reg = serve();
    let repo = "tags/r";
    let tar = layer_tar(60, 5000);
    let img = push_image(&reg, repo, "v1", &[(MT_LAYER, tar.clone(), tar.clone())]);
    let names = [
        "v10",
        "v2",
        "latest",
        "Latest",
        "1.0",
        "_under",
        "a-b.c",
        "Z",
        "v1.0-rc_1",
    ];
    for t in names {
        reg.push_manifest(repo, t, MT_MANIFEST, &img.manifest);
    }
    let mut all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    all.push("v1".to_string());
    all.sort(); // byte order
    assert_eq!(all.len(), 10);

    let r = reg.get(&format!("/v2/{repo}/tags/list"));
    assert_eq!(r.status, 200, "tags/list: {r}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "tags/list Content-Type: {r}"
    );
    let (tags, link) = tags_page(
        &reg,
        &format!("/v2/{repo}/tags/list"),
        repo,
        "whole tag list",
    );
    assert_eq!(tags, all, "whole tag list, sorted in byte order");
    assert_eq!(link, None, "a complete tag list has no Link");

    // Pages of n, following Link.
    for n in [1usize, 3, 4, 5, 10, 11] {
        let mut path = format!("/v2/{repo}/tags/list?n={n}");
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            assert!(pages <= 20, "n={n}: pagination does not end");
            let (tags, link) = tags_page(&reg, &path, repo, &format!("n={n} page {pages}"));
            assert!(tags.len() <= n, "n={n} page {pages}: {} tags", tags.len());
            got.extend(tags.iter().cloned());
            match link {
                Some(link) => {
                    assert!(
                        got.len() < all.len(),
                        "n={n}: Link after the last tag: {link}"
                    );
                    assert_eq!(
                        tags.len(),
                        n,
                        "n={n} page {pages}: a page with a Link is full"
                    );
                    let target = link_target(&link, &format!("n={n}"));
                    assert!(
                        target.starts_with(&format!("/v2/{repo}/tags/list?")),
                        "n={n}: Link target {target:?}"
                    );
                    assert!(
                        target.contains(&format!("n={n}")),
                        "n={n}: Link target {target:?} lost n"
                    );
                    assert!(
                        target.contains(&format!("last={}", tags.last().unwrap()))
                            || target
                                .contains(&format!("last={}", query_escape(tags.last().unwrap()))),
                        "n={n}: Link target {target:?} does not continue after {:?}",
                        tags.last()
                    );
                    path = target;
                }
                None => break,
            }
        }
        assert_eq!(got, all, "n={n}: the pages together are the whole list");
        assert_eq!(
            pages,
            all.len().div_ceil(n).max(1),
            "n={n}: number of pages"
        );
    }

    // last= is exclusive.
    for (i, t) in all.iter().enumerate() {
        let (tags, _) = tags_page(
            &reg,
            &format!("/v2/{repo}/tags/list?last={}", query_escape(t)),
            repo,
            &format!("last={t}"),
        );
        assert_eq!(tags, all[i + 1..].to_vec(), "tags after {t}");
    }
    let (tags, link) = tags_page(
        &reg,
        &format!("/v2/{repo}/tags/list?n=2&last={}", all[3]),
        repo,
        "n=2&last",
    );
    assert_eq!(tags, all[4..6].to_vec(), "n=2&last={}", all[3]);
    assert!(
        link.is_some(),
        "n=2&last={} leaves tags after: Link expected",
        all[3]
    );
    let (tags, _) = tags_page(
        &reg,
        &format!("/v2/{repo}/tags/list?last=zzzz"),
        repo,
        "last after every tag",
    );
    assert!(tags.is_empty(), "tags after zzzz: {tags:?}");
    let (tags, _) = tags_page(
        &reg,
        &format!("/v2/{repo}/tags/list?last=m"),
        repo,
        "last=m (not a tag)",
    );
    assert_eq!(
        tags,
        all.iter()
            .filter(|t| t.as_str() > "m")
            .cloned()
            .collect::<Vec<_>>(),
        "tags after m"
    );

    // DELETE by tag removes the tag only.
    let r = reg.delete(&format!("/v2/{repo}/manifests/v1"));
    assert_eq!(r.status, 202, "DELETE manifest by tag: {r}");
    let r = reg.get_manifest(repo, "v1");
    r.assert_error(&[404], &["MANIFEST_UNKNOWN"], "GET of a deleted tag");
    reg.assert_manifest(
        repo,
        &img.digest,
        MT_MANIFEST,
        &img.manifest,
        &img.digest,
        "manifest of a deleted tag, by digest",
    );
    reg.assert_manifest(
        repo,
        "v2",
        MT_MANIFEST,
        &img.manifest,
        &img.digest,
        "other tag of the manifest whose tag was deleted",
    );
    let (tags, _) = tags_page(
        &reg,
        &format!("/v2/{repo}/tags/list"),
        repo,
        "after deleting v1",
    );
    assert_eq!(
        tags,
        all.iter()
            .filter(|t| *t != "v1")
            .cloned()
            .collect::<Vec<_>>(),
        "tags after deleting v1"
    );

    // A manifest by digest only: no tags, yet the repository exists.
    let repo2 = "tags/untagged";
    let doc = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": desc(MT_CONFIG, &img.config),
        "layers": [desc(MT_LAYER, &img.layers[0])],
        "annotations": {"only.in": repo2},
    }))
    .unwrap();
    let d = sha(&doc);
    reg.push_manifest(repo2, &d, MT_MANIFEST, &doc);
    let (tags, _) = tags_page(
        &reg,
        &format!("/v2/{repo2}/tags/list"),
        repo2,
        "repository with an untagged manifest",
    );
    assert!(
        tags.is_empty(),
        "tags of a repository with no tags: {tags:?}"
    );
    // DELETE by digest → 202, then 404.
    let r = reg.delete(&format!("/v2/{repo2}/manifests/{d}"));
    assert_eq!(r.status, 202, "DELETE manifest by digest: {r}");
    let r = reg.get_manifest(repo2, &d);
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN"],
        "GET of a manifest deleted by digest",
    );
    let r = reg.head(&format!("/v2/{repo2}/manifests/{d}"));
    assert_eq!(r.status, 404, "HEAD of a manifest deleted by digest: {r}");
    let r = reg.delete(&format!("/v2/{repo2}/manifests/{d}"));
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN"],
        "second DELETE of a manifest by digest",
    );
    let r = reg.get(&format!("/v2/{repo2}/tags/list"));
    r.assert_error(
        &[404],
        &["NAME_UNKNOWN"],
        "tags/list of a repository whose only manifest was deleted",
    );
    // Delete a tagged manifest by tag then digest; then its blobs.
    let gone = push_image(
        &reg,
        "tags/gone",
        "only",
        &[(
            MT_LAYER_GZIP,
            gzip(&layer_tar(61, 4000)),
            layer_tar(61, 4000),
        )],
    );
    let r = reg.delete("/v2/tags/gone/manifests/only");
    assert_eq!(r.status, 202, "DELETE tag only: {r}");
    let r = reg.delete(&format!("/v2/tags/gone/manifests/{}", gone.digest));
    assert_eq!(
        r.status, 202,
        "DELETE of the untagged manifest by digest: {r}"
    );
    let r = reg.get_manifest("tags/gone", &gone.digest);
    assert_eq!(r.status, 404, "GET after DELETE by digest: {r}");
    for blob in gone.layers.iter().chain([&gone.config]) {
        let d = sha(blob);
        let r = reg.delete(&format!("/v2/tags/gone/blobs/{d}"));
        assert_eq!(
            r.status, 202,
            "DELETE of blob {d} no manifest refers to: {r}"
        );
        let r = reg.head(&format!("/v2/tags/gone/blobs/{d}"));
        assert_eq!(r.status, 404, "HEAD of deleted blob {d}: {r}");
    }
    // The blobs tags/r still needs are still there.
    reg.assert_blob(
        repo,
        &sha(&img.config),
        &img.config,
        "config of a manifest still in tags/r",
    );

    // One manifest in two repositories: DELETE by digest in one removes it
    // there only.
    let repo3 = "tags/copy";
    reg.push_manifest(repo3, "copy", MT_MANIFEST, &img.manifest);
    let r = reg.delete(&format!("/v2/{repo3}/manifests/copy"));
    assert_eq!(r.status, 202, "DELETE of the tag in {repo3}: {r}");
    let r = reg.delete(&format!("/v2/{repo3}/manifests/{}", img.digest));
    assert_eq!(r.status, 202, "DELETE by digest in {repo3}: {r}");
    let r = reg.get_manifest(repo3, &img.digest);
    r.assert_error(
        &[404],
        &["MANIFEST_UNKNOWN"],
        "GET by digest in the repository that deleted it, while another repository has it",
    );
    reg.assert_manifest(
        repo,
        &img.digest,
        MT_MANIFEST,
        &img.manifest,
        &img.digest,
        "manifest in tags/r after a delete by digest in tags/copy",
    );
}

// ---------------------------------------------------------------------------
// 9. Referrers and subjects
// ---------------------------------------------------------------------------

#[test]
fn referrers_list_what_names_a_subject() {
    let reg = serve();
    let repo = "ref/r";
    let tar = layer_tar(70, 8000);
    let subject = push_image(&reg, repo, "base", &[(MT_LAYER, tar.clone(), tar.clone())]);
    reg.push_blob(repo, b"{}");
    let sig = random_bytes(71, 300);
    reg.push_blob(repo, &sig);
    let cfg = br#"{"tool":"example"}"#.to_vec();
    reg.push_blob(repo, &cfg);

    let sub = subject.desc();
    let sbom_type = "application/vnd.example.sbom.v1+json";
    let sig_type = "application/vnd.example.sig.v1";
    let a1 = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": sbom_type,
        "config": empty_desc(), "layers": [desc("application/json", &sig)], "subject": sub,
        "annotations": {"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
    }))
    .unwrap();
    let a2 = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": sig_type,
        "config": empty_desc(), "layers": [empty_desc()], "subject": sub,
    }))
    .unwrap();
    // No artifactType: the config's media type stands for it.
    let a3 = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": desc("application/vnd.example.config.v1+json", &cfg), "layers": [], "subject": sub,
        "annotations": {"k": "v"},
    }))
    .unwrap();
    // An index with a subject.
    let i1 = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_INDEX, "artifactType": "application/vnd.example.index.v1",
        "manifests": [subject.desc()], "subject": sub,
    }))
    .unwrap();
    for (case, mt, doc) in [
        ("sbom artifact", MT_MANIFEST, &a1),
        ("signature artifact", MT_MANIFEST, &a2),
        ("artifact typed by its config", MT_MANIFEST, &a3),
        ("index with a subject", MT_INDEX, &i1),
    ] {
        let r = reg.push_manifest(repo, &sha(doc), mt, doc);
        assert_eq!(
            r.header("oci-subject"),
            Some(subject.digest.as_str()),
            "{case}: OCI-Subject of the PUT: {r}"
        );
        reg.assert_manifest(repo, &sha(doc), mt, doc, &sha(doc), case);
    }
    // A manifest without subject has no OCI-Subject.
    let r = reg.push_manifest(repo, "plain", MT_MANIFEST, &subject.manifest);
    assert_eq!(
        r.header("oci-subject"),
        None,
        "OCI-Subject on a manifest without subject: {r}"
    );

    let expected = |doc: &[u8], mt: &str, artifact_type: &str, annotations: Option<Value>| {
        let mut d = json!({"mediaType": mt, "digest": sha(doc), "size": doc.len(), "artifactType": artifact_type});
        if let Some(a) = annotations {
            d["annotations"] = a;
        }
        d
    };
    let all = vec![
        expected(
            &a1,
            MT_MANIFEST,
            sbom_type,
            Some(
                json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-05-01T00:00:00Z"}),
            ),
        ),
        expected(&a2, MT_MANIFEST, sig_type, None),
        expected(
            &a3,
            MT_MANIFEST,
            "application/vnd.example.config.v1+json",
            Some(json!({"k": "v"})),
        ),
        expected(&i1, MT_INDEX, "application/vnd.example.index.v1", None),
    ];
    let referrers = |query: &str, case: &str| -> (Vec<Value>, Resp) {
        let r = reg.get(&format!("/v2/{repo}/referrers/{}{query}", subject.digest));
        assert_eq!(r.status, 200, "{case}: {r}");
        assert_eq!(
            r.header("content-type"),
            Some(MT_INDEX),
            "{case}: Content-Type"
        );
        let v = r.json();
        assert_eq!(v["schemaVersion"], 2, "{case}: schemaVersion in {r}");
        assert_eq!(v["mediaType"], MT_INDEX, "{case}: mediaType in {r}");
        let mut list = v["manifests"]
            .as_array()
            .unwrap_or_else(|| panic!("{case}: manifests in {r}"))
            .clone();
        // Descriptors without annotations may carry an empty object.
        for d in &mut list {
            if d.get("annotations").is_some_and(|a| a == &json!({})) {
                d.as_object_mut().unwrap().remove("annotations");
            }
        }
        list.sort_by_key(|d| d["digest"].as_str().unwrap_or_default().to_string());
        (list, r)
    };
    let sorted = |mut v: Vec<Value>| {
        v.sort_by_key(|d| d["digest"].as_str().unwrap_or_default().to_string());
        v
    };
    let (list, r) = referrers("", "referrers of the subject");
    assert_eq!(list, sorted(all.clone()), "referrers of the subject: {r}");
    assert_eq!(
        r.header("oci-filters-applied"),
        None,
        "OCI-Filters-Applied without a filter"
    );

    for (t, want) in [
        (sig_type, vec![all[1].clone()]),
        (sbom_type, vec![all[0].clone()]),
        (
            "application/vnd.example.config.v1+json",
            vec![all[2].clone()],
        ),
        ("application/vnd.example.none", vec![]),
    ] {
        let case = format!("referrers ?artifactType={t}");
        let (list, r) = referrers(&format!("?artifactType={}", query_escape(t)), &case);
        assert_eq!(list, want, "{case}: {r}");
        assert_eq!(
            r.header("oci-filters-applied"),
            Some("artifactType"),
            "{case}: OCI-Filters-Applied"
        );
    }

    // None: an empty index. A subject that was never pushed: accepted.
    let nothing = absent_digest("no referrers");
    let r = reg.get(&format!(
        "/v2/{repo}/referrers/{}",
        subject.layers.first().map(|l| sha(l)).unwrap()
    ));
    assert_eq!(r.status, 200, "referrers of a blob nothing refers to: {r}");
    assert_eq!(
        r.header("content-type"),
        Some(MT_INDEX),
        "empty referrers Content-Type"
    );
    assert_eq!(
        r.json()["manifests"],
        json!([]),
        "referrers of a blob nothing refers to: {r}"
    );
    let orphan = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": sig_type,
        "config": empty_desc(), "layers": [empty_desc()],
        "subject": {"mediaType": MT_MANIFEST, "digest": nothing, "size": 1234},
    }))
    .unwrap();
    let r = reg.push_manifest(repo, &sha(&orphan), MT_MANIFEST, &orphan);
    assert_eq!(
        r.header("oci-subject"),
        Some(nothing.as_str()),
        "OCI-Subject of a subject never pushed: {r}"
    );
    let r = reg.get(&format!("/v2/{repo}/referrers/{nothing}"));
    assert_eq!(r.status, 200, "referrers of a subject never pushed: {r}");
    let list = r.json()["manifests"].clone();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "referrers of a subject never pushed: {r}"
    );
    assert_eq!(
        list[0]["digest"],
        sha(&orphan),
        "referrers of a subject never pushed: {r}"
    );
    assert_eq!(
        list[0]["artifactType"], sig_type,
        "referrers of a subject never pushed: {r}"
    );

    // A deleted referrer is no longer listed.
    let r = reg.delete(&format!("/v2/{repo}/manifests/{}", sha(&a2)));
    assert_eq!(r.status, 202, "DELETE of a referrer: {r}");
    let (list, r) = referrers("", "referrers after deleting one");
    assert_eq!(
        list,
        sorted(vec![all[0].clone(), all[2].clone(), all[3].clone()]),
        "referrers after deleting one: {r}"
    );

    let r = reg.get(&format!("/v2/{repo}/referrers/sha256:baddigeststring"));
    r.assert_refused(&[400, 404], "referrers of a malformed digest");
}

// ---------------------------------------------------------------------------
// 10. Repository names
// ---------------------------------------------------------------------------

#[test]
fn repository_names_follow_the_grammar_and_stay_in_the_store() {
    let dir = tmp();
    let store = dir.path().join("s").join("store");
    let reg = Registry::start(&store);
    let before = tree(dir.path(), &store);

    // Valid names of every shape work.
    let tar = layer_tar(80, 3000);
    for repo in [
        "a",
        "0",
        "a/b/c/d/e",
        "a-b.c_d/e0",
        "x9/y.z/w-1",
        "very/deep/name/with/many/parts/x",
    ] {
        let img = push_image(&reg, repo, "t", &[(MT_LAYER, tar.clone(), tar.clone())]);
        assert_pulls(&reg, repo, Some("t"), &img, &format!("repository {repo:?}"));
        let (tags, _) = tags_page(
            &reg,
            &format!("/v2/{repo}/tags/list"),
            repo,
            &format!("tags of {repo:?}"),
        );
        assert_eq!(tags, vec!["t".to_string()], "tags of {repo:?}");
    }

    let doc = manifest_json(
        &desc(MT_CONFIG, &config_json("amd64", &[sha(&tar)])),
        &[desc(MT_LAYER, &tar)],
    );
    let d = sha(&tar);
    let invalid = [
        "UPPER",
        "a/B",
        "..",
        "a/..",
        "../x",
        "a/../b",
        "../../../../../../tmp/escape",
        "%2e%2e",
        "a/%2e%2e/b",
        "%2e%2e/%2e%2e/x",
        "a%2fb",
        "a%2F..%2Fb",
        "-a",
        "a-",
        "a..b",
        "a/",
        "a//b",
        ".a",
        "a_",
        "_a",
        "a%20b",
        "a.",
        "./a",
        "a/./b",
        "%00",
        "a%00b",
        "%C3%A9t%C3%A9",
    ];
    for name in invalid {
        let requests = [
            ("GET", format!("/v2/{name}/tags/list")),
            ("HEAD", format!("/v2/{name}/blobs/{d}")),
            ("GET", format!("/v2/{name}/blobs/{d}")),
            ("POST", format!("/v2/{name}/blobs/uploads/")),
            ("GET", format!("/v2/{name}/manifests/t")),
            ("DELETE", format!("/v2/{name}/manifests/t")),
            ("GET", format!("/v2/{name}/referrers/{d}")),
        ];
        for (method, path) in requests {
            let case = format!("{method} {path} (invalid name {name:?})");
            let r = reg
                .raw_simple(method, &path)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert!(
                [400, 404].contains(&r.status),
                "{case}: expected 400 NAME_INVALID or 404, got {r}"
            );
            if r.status == 400 && method != "HEAD" {
                r.assert_error(&[400], &["NAME_INVALID"], &case);
            }
        }
        let head = format!(
            "PUT /v2/{name}/manifests/t HTTP/1.1\r\nHost: {}\r\nContent-Type: {MT_MANIFEST}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            reg.addr(),
            doc.len()
        );
        let case = format!("PUT manifest (invalid name {name:?})");
        let r = reg
            .raw(&head, &doc)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            [400, 404].contains(&r.status),
            "{case}: expected 400 NAME_INVALID or 404, got {r}"
        );
        if r.status == 400 {
            r.assert_error(&[400], &["NAME_INVALID"], &case);
        }
        let blob_put = format!(
            "PUT /v2/{name}/blobs/uploads/x?digest={d} HTTP/1.1\r\nHost: {}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            reg.addr(),
            tar.len()
        );
        let case = format!("PUT blob upload (invalid name {name:?})");
        let r = reg
            .raw(&blob_put, &tar)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            [400, 404].contains(&r.status),
            "{case}: expected 400 or 404, got {r}"
        );
    }
    // A name over 255 characters.
    let long = format!("{}/x", "a".repeat(300));
    let r = reg
        .raw_simple("GET", &format!("/v2/{long}/tags/list"))
        .unwrap();
    assert!([400, 404].contains(&r.status), "a 302-character name: {r}");

    let after = tree(dir.path(), &store);
    let new: Vec<_> = after.difference(&before).collect();
    assert!(
        new.is_empty(),
        "requests with invalid names created files outside the store: {new:?}"
    );
    assert!(
        !Path::new("/tmp/escape").exists(),
        "a request created /tmp/escape"
    );
    reg.assert_alive("invalid names");
}

// ---------------------------------------------------------------------------
// 11. Repositories are the store's images
// ---------------------------------------------------------------------------

#[test]
fn registry_and_cli_share_the_stores_images() {
    let env = serve();
    let reg = &env.reg;

    // Real gzip, two-member gzip, zstd and plain tar layers: pushed, they
    // come back byte for byte.
    let tars: Vec<Vec<u8>> = (0..4u64)
        .map(|i| layer_tar(90 + i, 200_000 + 50_000 * i as usize))
        .collect();
    let layers = vec![
        (MT_LAYER_GZIP, gzip(&tars[0]), tars[0].clone()),
        (MT_LAYER_GZIP, gzip_two_members(&tars[1]), tars[1].clone()),
        (MT_LAYER_ZSTD, zstd(&tars[2]), tars[2].clone()),
        (MT_LAYER, tars[3].clone(), tars[3].clone()),
    ];
    let img = push_image(reg, "app/web", "1.0", &layers);
    for (i, (mt, blob, _)) in layers.iter().enumerate() {
        reg.assert_blob("app/web", &sha(blob), blob, &format!("layer {i} ({mt})"));
        reg.assert_blob(
            "other/repo",
            &sha(blob),
            blob,
            &format!("layer {i} ({mt}) from another repository"),
        );
    }
    reg.assert_blob("app/web", &sha(&img.config), &img.config, "config");
    assert_pulls(reg, "app/web", Some("1.0"), &img, "pushed image");

    // The CLI sees it as an image named R:T, and exports it.
    let ls = cli_json(&env.store, &["image", "ls"]);
    let entries = ls
        .as_array()
        .unwrap_or_else(|| panic!("image ls --json is not an array: {ls}"));
    let entry = entries
        .iter()
        .find(|e| e["name"] == "app/web:1.0")
        .unwrap_or_else(|| panic!("image ls --json does not list app/web:1.0: {ls}"));
    assert_eq!(
        entry["digest"],
        img.digest.as_str(),
        "image ls digest of app/web:1.0: {entry}"
    );
    assert_eq!(
        entry["media_type"], MT_MANIFEST,
        "image ls media type of app/web:1.0: {entry}"
    );
    assert_eq!(
        entry["layers"], 4,
        "image ls layer count of app/web:1.0: {entry}"
    );
    assert_eq!(
        entry["size"],
        tars.iter().map(|t| t.len()).sum::<usize>(),
        "image ls size (uncompressed) of app/web:1.0: {entry}"
    );
    assert_eq!(
        entry["platforms"],
        json!(["linux/amd64"]),
        "image ls platforms of app/web:1.0: {entry}"
    );
    let out = env.dir.path().join("export");
    let exported = cli_json(
        &env.store,
        &[
            "image",
            "export",
            "app/web:1.0",
            "--format",
            "oci",
            "-o",
            path_arg(&out),
        ],
    );
    assert_eq!(
        exported["images"][0]["name"], "app/web:1.0",
        "export of the pushed image: {exported}"
    );
    let exported_digest = exported["images"][0]["exported_digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        out.join("blobs/sha256")
            .join(hex(&exported_digest))
            .is_file(),
        "the exported layout has no manifest {exported_digest}: {exported}"
    );
    if exported["images"][0]["digest_changed"] == false {
        assert_same_bytes(
            &fs::read(out.join("blobs/sha256").join(hex(&exported_digest))).unwrap(),
            &img.manifest,
            "exported manifest of an image pushed through the registry",
        );
    }

    // An image the CLI imported (while the server runs) can be pulled.
    let layout_dir = env.dir.path().join("layout");
    let layout = Layout::new(&layout_dir);
    let lt1 = layer_tar(95, 150_000);
    let lt2 = layer_tar(96, 80_000);
    let lgz = gzip(&lt2);
    let lconfig = config_json("amd64", &[sha(&lt1), sha(&lt2)]);
    let cdesc = layout.blob(MT_CONFIG, &lconfig);
    let l1 = layout.blob(MT_LAYER, &lt1);
    let l2 = layout.blob(MT_LAYER_GZIP, &lgz);
    let mdesc = layout.blob(MT_MANIFEST, &manifest_json(&cdesc, &[l1, l2]));
    layout.index(&[named(mdesc.clone(), "v1")]);
    cli_ok(
        &env.store,
        &[
            "image",
            "import",
            path_arg(&layout_dir),
            "--name",
            "lsc/x:v1",
        ],
    );
    let mdigest = mdesc["digest"].as_str().unwrap().to_string();
    let mbytes = fs::read(layout.blob_path(&mdigest)).unwrap();
    reg.assert_manifest(
        "lsc/x",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &mdigest,
        "image imported by the CLI, by tag",
    );
    reg.assert_manifest(
        "lsc/x",
        &mdigest,
        MT_MANIFEST,
        &mbytes,
        &mdigest,
        "image imported by the CLI, by digest",
    );
    for (what, bytes) in [
        ("config", &lconfig),
        ("plain layer", &lt1),
        ("gzip layer", &lgz),
    ] {
        let d = sha(bytes);
        let from_layout = fs::read(layout.blob_path(&d)).unwrap();
        reg.assert_blob(
            "lsc/x",
            &d,
            &from_layout,
            &format!("{what} of the CLI-imported image"),
        );
    }
    let (tags, _) = tags_page(
        reg,
        "/v2/lsc/x/tags/list",
        "lsc/x",
        "tags of the CLI-imported image",
    );
    assert_eq!(
        tags,
        vec!["v1".to_string()],
        "tags of the CLI-imported image"
    );

    // A DiffID HEAD (podman and buildah send them): a blob the registry
    // says it has must come back with that digest.
    for (i, (mt, _, tar)) in layers.iter().enumerate() {
        let diff_id = sha(tar);
        let h = reg.head(&format!("/v2/app/web/blobs/{diff_id}"));
        match h.status {
            404 => {}
            200 => {
                assert_eq!(
                    h.content_length(),
                    Some(tar.len() as u64),
                    "HEAD of layer {i}'s DiffID ({mt}): {h}"
                );
                reg.assert_blob(
                    "app/web",
                    &diff_id,
                    tar,
                    &format!("layer {i}'s DiffID ({mt}), said to exist"),
                );
            }
            _ => panic!("HEAD of layer {i}'s DiffID ({mt}): expected 200 or 404, got {h}"),
        }
    }

    // SIGTERM ends the server gracefully: a download in flight completes.
    let big = random_bytes(97, 16 * MIB);
    let bd = reg.push_blob("app/web", &big);
    let mut stream = reg.connect();
    stream
        .write_all(
            format!("GET /v2/app/web/blobs/{bd} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).unwrap();
        started_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(500));
        let mut all = first.to_vec();
        let got = stream.read_to_end(&mut all);
        (got.map(|_| ()), all)
    });
    started_rx.recv().unwrap();
    let Env { reg, dir, .. } = env;
    let (status, by_itself) = reg.stop();
    assert!(by_itself, "the server did not exit within 15 s of SIGTERM");
    assert!(
        status.success(),
        "the server's exit after SIGTERM: {status}"
    );
    let (read, all) = reader.join().unwrap();
    assert!(
        read.is_ok(),
        "the download in flight at SIGTERM failed: {read:?}"
    );
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response headers of the download in flight at SIGTERM");
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "download in flight at SIGTERM: {:?}",
        String::from_utf8_lossy(&all[..split])
    );
    assert_same_bytes(&all[split + 4..], &big, "the download in flight at SIGTERM");
    drop(dir);
}

#[test]
fn max_lifetime_ends_the_server_by_itself() {
    let dir = tmp();
    let mut reg = Registry::start_with(&dir.path().join("store"), &["--max-lifetime", "2"]);
    reg.assert_alive("a server with a 2 s lifetime");
    let status = reg.wait_exit(Duration::from_secs(20));
    let status = status.expect("a server with --max-lifetime 2 still runs after 20 s");
    assert!(
        status.success(),
        "exit status at the end of --max-lifetime: {status}"
    );
}

// ---------------------------------------------------------------------------
// 12. Concurrent pushes
// ---------------------------------------------------------------------------

#[test]
fn concurrent_pushes_of_the_same_content_all_succeed() {
    let reg = serve();
    const THREADS: usize = 4;
    let random = random_bytes(100, 3 * MIB);
    let tar = layer_tar(101, 2 * MIB);
    let gz = gzip(&tar);
    for (case, blob) in [
        ("random blob", &random),
        ("gzip layer", &gz),
        ("plain layer", &tar),
    ] {
        let d = sha(blob);
        let barrier = Barrier::new(THREADS);
        let results: Vec<(u16, u16, u16)> = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let reg = &reg;
                    let barrier = &barrier;
                    let d = &d;
                    s.spawn(move || {
                        let repo = format!("conc/r{i}");
                        let r = reg.request(
                            "POST",
                            &format!("/v2/{repo}/blobs/uploads/"),
                            &[],
                            Some(b""),
                        );
                        let post = r.status;
                        barrier.wait();
                        let r = reg.request(
                            "PATCH",
                            &r.location(),
                            &[("Content-Type", "application/octet-stream")],
                            Some(blob),
                        );
                        let patch = r.status;
                        barrier.wait();
                        let r = reg.request(
                            "PUT",
                            &with_query(&r.location(), &format!("digest={d}")),
                            &[],
                            None,
                        );
                        (post, patch, r.status)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, r) in results.iter().enumerate() {
            assert_eq!(
                *r,
                (202, 202, 201),
                "{case}: thread {i}'s POST, PATCH and PUT statuses"
            );
        }
        for i in 0..THREADS {
            reg.assert_blob(
                &format!("conc/r{i}"),
                &d,
                blob,
                &format!("{case} after {THREADS} concurrent pushes"),
            );
        }
    }

    // The same manifest to the same tag at once.
    let img_tar = layer_tar(102, 10_000);
    let config = config_json("amd64", &[sha(&img_tar)]);
    reg.push_blob("conc/m", &config);
    reg.push_blob("conc/m", &img_tar);
    let doc = manifest_json(&desc(MT_CONFIG, &config), &[desc(MT_LAYER, &img_tar)]);
    let barrier = Barrier::new(THREADS);
    let statuses: Vec<u16> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    reg.put_manifest("conc/m", "same", MT_MANIFEST, &doc).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses,
        vec![201; THREADS],
        "concurrent PUTs of one manifest to one tag"
    );
    reg.assert_manifest(
        "conc/m",
        "same",
        MT_MANIFEST,
        &doc,
        &sha(&doc),
        "manifest after concurrent PUTs",
    );
}

// ---------------------------------------------------------------------------
// 13. Hostile requests
// ---------------------------------------------------------------------------

/// Writes one chunk of chunked transfer coding.
fn write_chunk(stream: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    stream.write_all(data)?;
    stream.write_all(b"\r\n")
}

#[test]
fn hostile_requests_are_refused_and_the_server_keeps_serving() {
    let reg = serve();
    let repo = "hostile/r";

    // Absurd Content-Range values on a session holding 100 bytes.
    let blob = random_bytes(110, 300);
    let location = reg.start_upload(repo);
    let patch = |location: &str, range: &str, data: &[u8]| {
        reg.request(
            "PATCH",
            location,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", range),
            ],
            Some(data),
        )
    };
    let r = patch(&location, "0-99", &blob[..100]);
    assert_eq!(r.status, 202, "PATCH 0-99: {r}");
    let location = r.location();
    for range in [
        "100-18446744073709551615",
        "100-18446744073709551616",
        "99999999999999999999999-100000000000000000000000",
        "200-100",
        "100-99",
        "100-108",
        "100-110",
        "bytes=abc",
        "a-b",
        "-5-10",
        "100-109-1",
        "100",
    ] {
        let r = patch(&location, range, &blob[100..110]);
        r.assert_refused(
            &[400, 416],
            &format!("PATCH with Content-Range {range:?} and a 10-byte body"),
        );
        let r = reg.get(&location);
        assert_eq!(
            r.status, 204,
            "upload status after Content-Range {range:?}: {r}"
        );
        assert_eq!(
            r.header("range"),
            Some("0-99"),
            "Content-Range {range:?} changed the session"
        );
    }
    let r = patch(&location, "100-299", &blob[100..]);
    assert_eq!(r.status, 202, "PATCH 100-299 after the refusals: {r}");
    let r = reg.request(
        "PUT",
        &with_query(&r.location(), &format!("digest={}", sha(&blob))),
        &[],
        None,
    );
    assert_eq!(r.status, 201, "closing the session after the refusals: {r}");
    reg.assert_blob(
        repo,
        &sha(&blob),
        &blob,
        "blob uploaded around absurd Content-Ranges",
    );

    // Absurd Range headers on a blob read.
    let path = format!("/v2/{repo}/blobs/{}", sha(&blob));
    for range in [
        "bytes=99999999999999999999999-",
        "bytes=18446744073709551615-",
    ] {
        let r = reg.request("GET", &path, &[("Range", range)], None);
        assert!(
            [416, 200].contains(&r.status),
            "Range {range}: expected 416 (or 200 ignoring it), got {r}"
        );
        if r.status == 200 {
            assert_same_bytes(&r.body, &blob, &format!("Range {range} ignored"));
        }
    }
    for range in ["bytes=0-99999999999999999999999", "bytes=abc", "items=0-5"] {
        let r = reg.request("GET", &path, &[("Range", range)], None);
        match r.status {
            200 => assert_same_bytes(&r.body, &blob, &format!("Range {range} ignored")),
            206 => assert_same_bytes(&r.body, &blob, &format!("Range {range} as the whole blob")),
            416 => {}
            _ => panic!("Range {range}: expected 200, 206 or 416, got {r}"),
        }
    }

    // Digests of the wrong length.
    let h = "c".repeat(128);
    for bad in [
        format!("sha256:{}", &h[..63]),
        format!("sha256:{}", &h[..65]),
        format!("sha256:{h}"),
        format!("sha512:{}", &h[..127]),
    ] {
        for (method, p) in [
            ("GET", format!("/v2/{repo}/blobs/{bad}")),
            ("HEAD", format!("/v2/{repo}/blobs/{bad}")),
            ("GET", format!("/v2/{repo}/manifests/{bad}")),
            ("GET", format!("/v2/{repo}/referrers/{bad}")),
            ("DELETE", format!("/v2/{repo}/blobs/{bad}")),
        ] {
            let r = reg.request(method, &p, &[], None);
            assert!(
                [400, 404].contains(&r.status),
                "{method} {p}: expected 400 or 404, got {r}"
            );
        }
        let r = reg.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={bad}"),
            &[],
            Some(b"abc"),
        );
        r.assert_error(
            &[400],
            &["DIGEST_INVALID"],
            &format!("single-request POST with ?digest={bad}"),
        );
        let r = reg.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?mount={bad}&from=other"),
            &[],
            Some(b""),
        );
        assert!(
            [202, 400].contains(&r.status),
            "mount of {bad}: expected 202 or 400, got {r}"
        );
    }

    // A body longer than its Content-Length: only the announced bytes
    // count; the rest is a broken next request.
    let announced = random_bytes(111, 1000);
    let mut sent = announced.clone();
    sent.extend_from_slice(&[b'X'; 5000]);
    let location = reg.start_upload(repo);
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n",
        reg.addr()
    );
    let r = reg
        .raw(&head, &sent)
        .expect("a response to a PATCH with a body longer than announced");
    assert_eq!(
        r.status, 202,
        "PATCH with 6000 bytes announced as 1000: {r}"
    );
    assert_eq!(
        r.header("range"),
        Some("0-999"),
        "PATCH with 6000 bytes announced as 1000: Range"
    );
    let r = reg.get(&location);
    assert_eq!(
        r.header("range"),
        Some("0-999"),
        "session after a body longer than announced: {r}"
    );
    let r = reg.request(
        "PUT",
        &with_query(&location, &format!("digest={}", sha(&announced))),
        &[],
        None,
    );
    assert_eq!(
        r.status, 201,
        "closing the session of a body longer than announced: {r}"
    );
    reg.assert_blob(
        repo,
        &sha(&announced),
        &announced,
        "blob of a body longer than announced",
    );
    let r = reg.head(&format!("/v2/{repo}/blobs/{}", sha(&sent)));
    assert_eq!(r.status, 404, "the unannounced bytes were stored: {r}");
    // The same with a manifest.
    let tar = layer_tar(112, 3000);
    let config = config_json("amd64", &[sha(&tar)]);
    reg.push_blob(repo, &config);
    reg.push_blob(repo, &tar);
    let doc = manifest_json(&desc(MT_CONFIG, &config), &[desc(MT_LAYER, &tar)]);
    let mut sent = doc.clone();
    sent.extend_from_slice(b"{\"trailing\": \"garbage\"}\r\n\r\n");
    let head = format!(
        "PUT /v2/{repo}/manifests/long HTTP/1.1\r\nHost: {}\r\nContent-Type: {MT_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
        reg.addr(),
        doc.len()
    );
    let r = reg
        .raw(&head, &sent)
        .expect("a response to a manifest PUT longer than announced");
    assert_eq!(
        r.status, 201,
        "manifest PUT with trailing bytes past Content-Length: {r}"
    );
    reg.assert_manifest(
        repo,
        "long",
        MT_MANIFEST,
        &doc,
        &sha(&doc),
        "manifest sent with trailing bytes",
    );

    // A never-ending chunked PATCH: the server goes on serving others, and
    // the session is usable (or gone) once the client gives up.
    let location = reg.start_upload(repo);
    let mut stream = reg.connect();
    stream
        .write_all(
            format!(
                "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
                 Transfer-Encoding: chunked\r\n\r\n",
                reg.addr()
            )
            .as_bytes(),
        )
        .unwrap();
    let sent_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The writer goes on until told to stop (at most 512 MiB, about 32 MiB
    // a second), so the other requests below run while it streams.
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let sent_bytes = Arc::clone(&sent_bytes);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let chunk = random_bytes(113, 64 * 1024);
            while !stop.load(Ordering::Relaxed) && sent_bytes.load(Ordering::Relaxed) < 512 * MIB {
                if write_chunk(&mut stream, &chunk).is_err() {
                    return false;
                }
                sent_bytes.fetch_add(chunk.len(), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
            true
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent_bytes.load(Ordering::Relaxed) < 4 * MIB
        && !writer.is_finished()
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !writer.is_finished(),
        "the server stopped reading a chunked PATCH body after {} B",
        sent_bytes.load(Ordering::Relaxed)
    );
    assert!(
        sent_bytes.load(Ordering::Relaxed) >= 4 * MIB,
        "the server read under 4 MiB of a chunked body in 30 s"
    );
    for i in 0..3 {
        let started = Instant::now();
        reg.assert_alive("during a never-ending chunked PATCH");
        let other = random_bytes(114 + i, 20_000);
        let d = reg.push_blob("hostile/other", &other);
        reg.assert_blob(
            "hostile/other",
            &d,
            &other,
            "blob pushed during a never-ending chunked PATCH",
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "requests took {:?} during a never-ending chunked PATCH",
            started.elapsed()
        );
    }
    let still_streaming = !writer.is_finished();
    stop.store(true, Ordering::Relaxed);
    let completed = writer.join().unwrap();
    assert!(
        still_streaming && completed,
        "the chunked PATCH stopped streaming while other requests ran (after {} B)",
        sent_bytes.load(Ordering::Relaxed)
    );
    let _ = stream.shutdown(std::net::Shutdown::Both);
    drop(stream);
    reg.assert_alive("abandoning a never-ending chunked PATCH");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = reg.get(&location);
        if r.status == 404 {
            r.assert_error(
                &[404],
                &["BLOB_UPLOAD_UNKNOWN"],
                "session of an abandoned PATCH",
            );
            break;
        }
        if r.status == 204 {
            let total = sent_bytes.load(Ordering::Relaxed);
            if let Some(end) = r
                .header("range")
                .and_then(|v| v.strip_prefix("0-"))
                .and_then(|v| v.parse::<usize>().ok())
            {
                assert!(
                    end < total,
                    "session of an abandoned PATCH holds {} bytes of {total} sent",
                    end + 1
                );
            }
            let r = reg.delete(&location);
            assert_eq!(
                r.status, 204,
                "cancelling the session of an abandoned PATCH: {r}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline && r.status == 409,
            "session of an abandoned PATCH: expected 204 or 404, got {r}"
        );
        thread::sleep(Duration::from_millis(200));
    }

    // Slowloris: headers one byte a second on several connections, and
    // idle connections; others are still served promptly.
    let stop = Arc::new(AtomicBool::new(false));
    let idle: Vec<_> = (0..32).map(|_| reg.connect()).collect();
    let slow: Vec<_> = (0..8)
        .map(|i| {
            let mut stream = reg.connect();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let line = format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ");
                for b in line.bytes().chain(std::iter::repeat(b'a')) {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&[b]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_secs(1));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    for i in 0..6 {
        let started = Instant::now();
        reg.assert_alive("slow and idle connections open");
        let other = random_bytes(120 + i, 50_000);
        let d = reg.push_blob("hostile/slow", &other);
        reg.assert_blob(
            "hostile/slow",
            &d,
            &other,
            "blob pushed while slow clients send headers",
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "requests took {:?} while slow clients send headers",
            started.elapsed()
        );
        thread::sleep(Duration::from_millis(800));
    }
    stop.store(true, Ordering::Relaxed);
    for t in slow {
        t.join().unwrap();
    }
    drop(idle);

    // Garbage, huge headers, bad Content-Length, a download cut short.
    for (case, head) in [
        ("garbage request line", "HELLO WORLD\r\n\r\n".to_string()),
        (
            "a 2 MiB header",
            format!(
                "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(2 * MIB)
            ),
        ),
        (
            "a negative Content-Length",
            format!(
                "PUT /v2/{repo}/manifests/neg HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"
            ),
        ),
        (
            "two Content-Lengths",
            format!(
                "PUT /v2/{repo}/manifests/two HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"
            ),
        ),
    ] {
        if let Ok(r) = reg.raw(&head, b"") {
            assert!(
                (400..500).contains(&r.status),
                "{case}: expected a 4xx or a closed connection, got {r}"
            );
        }
        reg.assert_alive(case);
    }
    let r = reg.get_manifest(repo, "two");
    assert_eq!(
        r.status, 404,
        "a PUT with two Content-Lengths stored a manifest: {r}"
    );
    let big = random_bytes(130, 8 * MIB);
    let bd = reg.push_blob(repo, &big);
    let mut stream = reg.connect();
    stream
        .write_all(format!("GET /v2/{repo}/blobs/{bd} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    stream.read_exact(&mut first).unwrap();
    drop(stream);
    reg.assert_blob(
        repo,
        &bd,
        &big,
        "blob whose download another client cut short",
    );
    reg.assert_alive("every hostile request");
}

/// A refusal sent before the request body was read must either leave the
/// connection usable for the next request or say `Connection: close`:
/// clients reuse keep-alive connections, and one closed silently fails
/// their next request (a PATCH or PUT, which they do not retry).
#[test]
fn refused_requests_leave_connections_usable_or_say_close() {
    let reg = serve();
    let big = vec![b' '; MIB];
    let huge = vec![b' '; 5 * MIB];
    let location = reg.start_upload("conn/r");
    let cases: Vec<(&str, String, &[u8])> = vec![
        (
            "manifest PUT with an invalid tag",
            format!(
                "PUT /v2/conn/r/manifests/.dot HTTP/1.1\r\nHost: x\r\nContent-Type: {MT_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                big.len()
            ),
            &big,
        ),
        (
            "manifest PUT with an invalid name",
            format!(
                "PUT /v2/UPPER/manifests/t HTTP/1.1\r\nHost: x\r\nContent-Type: {MT_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                big.len()
            ),
            &big,
        ),
        (
            "manifest PUT by a malformed digest",
            format!(
                "PUT /v2/conn/r/manifests/sha256:baddigeststring HTTP/1.1\r\nHost: x\r\nContent-Type: {MT_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                big.len()
            ),
            &big,
        ),
        (
            "manifest PUT over 4 MiB",
            format!(
                "PUT /v2/conn/r/manifests/big HTTP/1.1\r\nHost: x\r\nContent-Type: {MT_MANIFEST}\r\nContent-Length: {}\r\n\r\n",
                huge.len()
            ),
            &huge,
        ),
        (
            "PATCH of an unknown session",
            format!(
                "PATCH /v2/conn/r/blobs/uploads/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                big.len()
            ),
            &big,
        ),
        (
            "closing PUT with a malformed digest",
            format!(
                "PUT {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                with_query(&location, "digest=sha256:bad"),
                big.len()
            ),
            &big,
        ),
    ];
    let mut failures = Vec::new();
    for (case, head, body) in cases {
        let stream = reg.connect();
        let r = reg
            .raw_on(&stream, &head, body)
            .unwrap_or_else(|e| panic!("{case}: no response: {e}"));
        assert!(
            (400..500).contains(&r.status),
            "{case}: expected a 4xx, got {r}"
        );
        if r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            continue;
        }
        let next = reg.raw_on(&stream, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", b"");
        match next {
            Ok(n) if n.status == 200 => {}
            Ok(n) => failures.push(format!("{case}: the next request on the connection got {n}")),
            Err(e) => failures.push(format!(
                "{case}: answered {} without `Connection: close`, then the connection failed the next request ({e})",
                r.status
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "connections closed silently after refusals:\n{}",
        failures.join("\n")
    );
    reg.assert_alive("refusals on keep-alive connections");
}

// ---------------------------------------------------------------------------
// 14. A real client: skopeo pushes and pulls
// ---------------------------------------------------------------------------

#[test]
fn skopeo_pushes_and_pulls_through_the_registry() {
    require_tool("skopeo");
    let env = serve();
    let reg = &env.reg;
    let t = env.dir.path();

    // An OCI layout with gzip layers (skopeo keeps compressed layers as
    // they are, so digests can be preserved).
    let layout_dir = t.join("src");
    let layout = Layout::new(&layout_dir);
    let tars = [layer_tar(140, 300_000), layer_tar(141, 120_000)];
    let gzs: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
    let config = config_json("amd64", &[sha(&tars[0]), sha(&tars[1])]);
    let cdesc = layout.blob(MT_CONFIG, &config);
    let ldescs: Vec<Value> = gzs.iter().map(|g| layout.blob(MT_LAYER_GZIP, g)).collect();
    let mdesc = layout.blob(MT_MANIFEST, &manifest_json(&cdesc, &ldescs));
    layout.index(&[named(mdesc.clone(), "v1")]);
    let mdigest = mdesc["digest"].as_str().unwrap().to_string();
    let mbytes = fs::read(layout.blob_path(&mdigest)).unwrap();

    let host = reg.base().trim_start_matches("http://").to_string();
    let dest = format!("docker://{host}/sk/app:v1");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &oci_ref(&layout_dir, "v1"),
        &dest,
    ]);
    reg.assert_manifest(
        "sk/app",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &mdigest,
        "manifest skopeo pushed",
    );
    for blob in gzs.iter().chain([&config]) {
        reg.assert_blob("sk/app", &sha(blob), blob, "blob skopeo pushed");
    }
    // A second push finds every blob there already.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &oci_ref(&layout_dir, "v1"),
        &format!("docker://{host}/sk/app:v2"),
    ]);
    reg.assert_manifest(
        "sk/app",
        "v2",
        MT_MANIFEST,
        &mbytes,
        &mdigest,
        "manifest skopeo pushed again",
    );

    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]).stdout;
    assert_same_bytes(&raw, &mbytes, "skopeo inspect --raw of the pushed image");
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{host}/sk/app"),
    ])
    .stdout;
    let tags: Value = serde_json::from_slice(&tags).expect("skopeo list-tags prints JSON");
    assert_eq!(tags["Tags"], json!(["v1", "v2"]), "skopeo list-tags");

    // Pull back into a fresh layout: every blob byte for byte.
    let out_dir = t.join("pulled");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &oci_ref(&out_dir, "v1"),
    ]);
    for blob in gzs.iter().chain([&config, &mbytes]) {
        let path = out_dir.join("blobs/sha256").join(hex(&sha(blob)));
        let got = fs::read(&path)
            .unwrap_or_else(|e| panic!("pulled layout lacks {}: {e}", path.display()));
        assert_same_bytes(&got, blob, "blob skopeo pulled");
    }

    // The pushed image is the store's image sk/app:v1.
    let ls = cli_json(&env.store, &["image", "ls"]);
    assert!(
        ls.as_array()
            .is_some_and(|a| a.iter().any(|e| e["name"] == "sk/app:v1")),
        "image ls --json does not list sk/app:v1: {ls}"
    );
}

// ---------------------------------------------------------------------------
// 15. Credentials, anonymous reads, read-only
// ---------------------------------------------------------------------------

/// An htpasswd file (bcrypt, cost 5, as `htpasswd -nbB -C 5` writes) with
/// `tester` / `s3cret pass:1` and `other` / `x`.
const HTPASSWD: &str = "# test users\n\
    tester:$2y$05$KSRseKUjcxV3CRzrSE6PFOH/zujl0/Ru09owtBhaKv25OaC1SG7Hi\n\
    other:$2y$05$x8II.piABKW1hmIpxogUdOKc0B9kk4JIwRXlZ/4Ypk8Ilz5.5zSo.\n";
const USER: &str = "tester";
const PASSWORD: &str = "s3cret pass:1";

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// An image imported with the CLI before the server starts: its manifest
/// digest and bytes, and its config bytes.
fn imported_image(dir: &Path, store: &Path, name: &str) -> (String, Vec<u8>, Vec<u8>) {
    let layout_dir = dir.join("layout");
    let layout = Layout::new(&layout_dir);
    let tar = layer_tar(150, 20_000);
    let config = config_json("amd64", &[sha(&tar)]);
    let cdesc = layout.blob(MT_CONFIG, &config);
    let ldesc = layout.blob(MT_LAYER, &tar);
    let mdesc = layout.blob(MT_MANIFEST, &manifest_json(&cdesc, &[ldesc]));
    layout.index(&[named(mdesc.clone(), "v1")]);
    cli_ok(
        store,
        &["image", "import", path_arg(&layout_dir), "--name", name],
    );
    let d = mdesc["digest"].as_str().unwrap().to_string();
    let bytes = fs::read(layout.blob_path(&d)).unwrap();
    (d, bytes, config)
}

#[track_caller]
fn assert_unauthorized(r: &Resp, case: &str) {
    r.assert_error(&[401], &["UNAUTHORIZED"], case);
    let challenge = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{case}: 401 without WWW-Authenticate: {r}"));
    assert!(
        challenge.starts_with("Basic realm=\"") || challenge.starts_with("Bearer realm=\""),
        "{case}: WWW-Authenticate {challenge:?} is not a Basic or Bearer challenge"
    );
}

#[test]
fn credentials_are_required_on_every_endpoint() {
    let dir = tmp();
    let store = dir.path().join("store");
    let htpasswd = dir.path().join("htpasswd");
    fs::write(&htpasswd, HTPASSWD).unwrap();
    let (md, mbytes, config) = imported_image(dir.path(), &store, "auth/app:v1");
    let reg = Registry::start_with(&store, &["--htpasswd", path_arg(&htpasswd)]);
    let cd = sha(&config);
    let good = basic(USER, PASSWORD);

    let endpoints: Vec<(&str, String, Option<Vec<u8>>)> = vec![
        ("GET", "/v2/".to_string(), None),
        ("HEAD", "/v2/".to_string(), None),
        ("GET", "/v2/auth/app/tags/list".to_string(), None),
        ("GET", "/v2/auth/app/manifests/v1".to_string(), None),
        ("HEAD", "/v2/auth/app/manifests/v1".to_string(), None),
        ("GET", format!("/v2/auth/app/manifests/{md}"), None),
        ("GET", format!("/v2/auth/app/blobs/{cd}"), None),
        ("HEAD", format!("/v2/auth/app/blobs/{cd}"), None),
        ("GET", format!("/v2/auth/app/referrers/{md}"), None),
        (
            "POST",
            "/v2/auth/app/blobs/uploads/".to_string(),
            Some(Vec::new()),
        ),
        (
            "POST",
            format!("/v2/auth/new/blobs/uploads/?mount={cd}&from=auth/app"),
            Some(Vec::new()),
        ),
        (
            "PUT",
            "/v2/auth/app/manifests/v2".to_string(),
            Some(mbytes.clone()),
        ),
        ("DELETE", "/v2/auth/app/manifests/v1".to_string(), None),
        ("DELETE", format!("/v2/auth/app/blobs/{cd}"), None),
        ("GET", "/v2/nothing/here/tags/list".to_string(), None),
    ];
    let wrong = [
        ("no Authorization", None),
        ("a wrong password", Some(basic(USER, "s3cret pass:2"))),
        ("another user's password", Some(basic("other", PASSWORD))),
        ("an unknown user", Some(basic("nobody", PASSWORD))),
        ("a user without a password", Some(basic(USER, ""))),
        ("malformed Basic", Some("Basic !!!not base64".to_string())),
        ("a Bearer token", Some("Bearer abcdef".to_string())),
    ];
    for (method, path, body) in &endpoints {
        for (how, auth) in &wrong {
            let mut headers = vec![("Content-Type", MT_MANIFEST)];
            if let Some(a) = auth {
                headers.push(("Authorization", a.as_str()));
            }
            let r = reg.request(method, path, &headers, body.as_deref());
            let case = format!("{method} {path} with {how}");
            if *method == "HEAD" {
                assert_eq!(r.status, 401, "{case}: {r}");
                assert!(
                    r.header("www-authenticate").is_some(),
                    "{case}: no WWW-Authenticate: {r}"
                );
            } else {
                assert_unauthorized(&r, &case);
            }
        }
    }
    // An upload session reached without credentials.
    let r = reg.request(
        "POST",
        "/v2/auth/app/blobs/uploads/",
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(r.status, 202, "POST uploads/ with credentials: {r}");
    let location = r.location();
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let r = reg.request(
            method,
            &with_query(&location, &format!("digest={}", sha(b"x"))),
            &[],
            Some(b"x")
                .filter(|_| method != "GET" && method != "DELETE")
                .map(|b| &b[..]),
        );
        assert_unauthorized(
            &r,
            &format!("{method} of an upload session without credentials"),
        );
    }
    // Nothing changed without credentials.
    let r = reg.request(
        "GET",
        "/v2/auth/app/manifests/v1",
        &[("Authorization", &good), ("Accept", ACCEPT_MANIFESTS)],
        None,
    );
    assert_eq!(
        r.status, 200,
        "GET of the tag with credentials after the refused DELETE: {r}"
    );
    assert_same_bytes(&r.body, &mbytes, "manifest after refused requests");
    let r = reg.request(
        "GET",
        "/v2/auth/app/manifests/v2",
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(
        r.status, 404,
        "a manifest PUT without credentials was stored: {r}"
    );

    // With credentials everything works.
    let r = reg.request("GET", "/v2/", &[("Authorization", &good)], None);
    assert_eq!(r.status, 200, "GET /v2/ with credentials: {r}");
    let blob = random_bytes(151, 10_000);
    let r = reg.request(
        "PATCH",
        &location,
        &[
            ("Authorization", &good),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&blob),
    );
    assert_eq!(r.status, 202, "PATCH with credentials: {r}");
    let r = reg.request(
        "PUT",
        &with_query(&r.location(), &format!("digest={}", sha(&blob))),
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(r.status, 201, "closing PUT with credentials: {r}");
    let r = reg.request(
        "GET",
        &format!("/v2/auth/app/blobs/{}", sha(&blob)),
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(r.status, 200, "GET blob with credentials: {r}");
    assert_same_bytes(&r.body, &blob, "blob pushed with credentials");
    let r = reg.request(
        "PUT",
        "/v2/auth/app/manifests/v2",
        &[("Authorization", &good), ("Content-Type", MT_MANIFEST)],
        Some(&mbytes),
    );
    assert_eq!(r.status, 201, "manifest PUT with credentials: {r}");
    let r = reg.request(
        "GET",
        "/v2/auth/app/tags/list",
        &[("Authorization", &basic("other", "x"))],
        None,
    );
    assert_eq!(r.status, 200, "tags/list as the second user: {r}");
    assert_eq!(
        r.json()["tags"],
        json!(["v1", "v2"]),
        "tags/list as the second user: {r}"
    );

    // skopeo retries with the credentials it is given.
    require_tool("skopeo");
    let host = reg.base().trim_start_matches("http://").to_string();
    let creds = format!("{USER}:{PASSWORD}");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{host}/auth/app:v1"),
    ])
    .stdout;
    assert_same_bytes(&raw, &mbytes, "skopeo inspect --raw with --creds");
    let out = tool("skopeo")
        .args([
            "--insecure-policy",
            "inspect",
            "--raw",
            "--tls-verify=false",
        ])
        .arg(format!("docker://{host}/auth/app:v1"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "skopeo without credentials read the image: {}",
        describe(&out)
    );
}

#[test]
fn anonymous_read_lets_anyone_pull_but_not_push() {
    let dir = tmp();
    let store = dir.path().join("store");
    let htpasswd = dir.path().join("htpasswd");
    fs::write(&htpasswd, HTPASSWD).unwrap();
    let (md, mbytes, config) = imported_image(dir.path(), &store, "anon/app:v1");
    let reg = Registry::start_with(
        &store,
        &["--htpasswd", path_arg(&htpasswd), "--anonymous-read"],
    );
    reg.assert_alive("anonymous read");
    reg.assert_manifest(
        "anon/app",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &md,
        "anonymous pull by tag",
    );
    reg.assert_blob(
        "anon/app",
        &sha(&config),
        &config,
        "anonymous pull of the config",
    );
    let (tags, _) = tags_page(
        &reg,
        "/v2/anon/app/tags/list",
        "anon/app",
        "anonymous tags/list",
    );
    assert_eq!(tags, vec!["v1".to_string()], "anonymous tags/list");
    let r = reg.get(&format!("/v2/anon/app/referrers/{md}"));
    assert_eq!(r.status, 200, "anonymous referrers: {r}");

    let r = reg.request("POST", "/v2/anon/app/blobs/uploads/", &[], None);
    assert_unauthorized(&r, "anonymous POST uploads/");
    let r = reg.put_manifest("anon/app", "v2", MT_MANIFEST, &mbytes);
    assert_unauthorized(&r, "anonymous manifest PUT");
    let r = reg.delete("/v2/anon/app/manifests/v1");
    assert_unauthorized(&r, "anonymous DELETE of a tag");
    let r = reg.delete(&format!("/v2/anon/app/blobs/{}", sha(&config)));
    assert_unauthorized(&r, "anonymous DELETE of a blob");
    let r = reg.request(
        "POST",
        "/v2/anon/app/blobs/uploads/",
        &[("Authorization", &basic(USER, "wrong"))],
        None,
    );
    assert_unauthorized(&r, "POST uploads/ with a wrong password");
    let r = reg.request(
        "POST",
        "/v2/anon/app/blobs/uploads/",
        &[("Authorization", &basic(USER, PASSWORD))],
        None,
    );
    assert_eq!(r.status, 202, "POST uploads/ with credentials: {r}");
    reg.assert_manifest(
        "anon/app",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &md,
        "the image after refused anonymous writes",
    );
}

#[test]
fn read_only_refuses_pushes_and_deletes() {
    let dir = tmp();
    let store = dir.path().join("store");
    let (md, mbytes, config) = imported_image(dir.path(), &store, "ro/app:v1");
    let reg = Registry::start_with(&store, &["--read-only"]);
    reg.assert_manifest(
        "ro/app",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &md,
        "read-only pull by tag",
    );
    reg.assert_blob(
        "ro/app",
        &sha(&config),
        &config,
        "read-only pull of the config",
    );

    let r = reg.request("POST", "/v2/ro/app/blobs/uploads/", &[], None);
    r.assert_error(
        &[401, 403, 405],
        &["DENIED", "UNSUPPORTED", "UNAUTHORIZED"],
        "POST uploads/ on a read-only registry",
    );
    let r = reg.request(
        "POST",
        &format!(
            "/v2/ro/other/blobs/uploads/?mount={}&from=ro/app",
            sha(&config)
        ),
        &[],
        None,
    );
    r.assert_error(
        &[401, 403, 405],
        &["DENIED", "UNSUPPORTED", "UNAUTHORIZED"],
        "mount on a read-only registry",
    );
    let r = reg.put_manifest("ro/app", "v2", MT_MANIFEST, &mbytes);
    r.assert_error(
        &[401, 403, 405],
        &["DENIED", "UNSUPPORTED", "UNAUTHORIZED"],
        "manifest PUT on a read-only registry",
    );
    let r = reg.delete("/v2/ro/app/manifests/v1");
    r.assert_error(
        &[405],
        &["UNSUPPORTED", "DENIED"],
        "DELETE of a tag on a read-only registry",
    );
    let r = reg.delete(&format!("/v2/ro/app/blobs/{}", sha(&config)));
    r.assert_error(
        &[405],
        &["UNSUPPORTED", "DENIED"],
        "DELETE of a blob on a read-only registry",
    );
    reg.assert_manifest(
        "ro/app",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &md,
        "the image after refused writes",
    );
    reg.assert_blob(
        "ro/app",
        &sha(&config),
        &config,
        "the config after refused writes",
    );
    let r = reg.get_manifest("ro/app", "v2");
    assert_eq!(
        r.status, 404,
        "a read-only registry stored a pushed manifest: {r}"
    );
}

//! `layerstore serve` access control and lifetimes: Basic auth from an
//! htpasswd file (real `htpasswd -B`, real skopeo with and without
//! credentials), anonymous reads, read-only mode, HTTPS with a real
//! openssl certificate, and gc's handling of what pushes leave behind
//! (unreferenced blobs after their grace period, stale upload sessions).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use base64::Engine as _;
use support::*;

/// A one-image layout with two gzip layers; returns its directory.
fn gzip_layout(dir: &Path) -> std::path::PathBuf {
    let layout_dir = dir.join("layout");
    let a = tar_layer(&[("etc/a", b"alpha ".repeat(5000))]);
    let b = tar_layer(&[("usr/b", Rng::new(3).bytes(300_000))]);
    let layout = Layout::new(&layout_dir);
    let diff_ids = vec![sha(&a), sha(&b)];
    let config = layout.blob(MT_CONFIG, &config_json("amd64", &diff_ids));
    let layers: Vec<_> = [&a, &b]
        .iter()
        .map(|l| layout.blob("application/vnd.oci.image.layer.v1.tar+gzip", &gzip(l)))
        .collect();
    let m = layout.blob(MT_MANIFEST, &manifest_json(&config, &layers));
    layout.index(&[named(m, "v1")]);
    layout_dir
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn htpasswd_file(dir: &Path) -> std::path::PathBuf {
    require_tool("htpasswd");
    let file = dir.join("htpasswd");
    run_ok(tool("htpasswd").args(["-Bbc", file.to_str().unwrap(), "alice", "s3cret-pw"]));
    file
}

/// Every blob of layout `a` is in layout `b`, byte for byte.
fn assert_same_blobs(a: &Path, b: &Path) {
    let mut n = 0;
    for entry in std::fs::read_dir(a.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let theirs = b.join("blobs/sha256").join(entry.file_name());
        let mine = std::fs::read(entry.path()).unwrap();
        let other = std::fs::read(&theirs)
            .unwrap_or_else(|e| panic!("{} missing from the pull: {e}", theirs.display()));
        assert!(
            mine == other,
            "blob {:?} differs after the round trip",
            entry.file_name()
        );
        n += 1;
    }
    assert!(n >= 4, "layout holds only {n} blobs");
}

#[test]
fn basic_auth_guards_every_endpoint_and_skopeo_uses_it() {
    require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let users = htpasswd_file(dir.path());
    let reg = Registry::start_with(&store, &["--htpasswd", users.to_str().unwrap()]);
    let good = basic("alice", "s3cret-pw");

    for (method, path) in [
        ("GET", "/v2/"),
        ("GET", "/v2/lsc/app/tags/list"),
        ("HEAD", "/v2/lsc/app/manifests/v1"),
        ("POST", "/v2/lsc/app/blobs/uploads/"),
        ("DELETE", "/v2/lsc/app/manifests/v1"),
    ] {
        let r = reg.request(method, path, &[], None);
        assert_eq!(r.status, 401, "{method} {path} without credentials: {r}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"layerstore\""),
            "{method} {path}: challenge"
        );
        let r = reg.request(
            method,
            path,
            &[("Authorization", &basic("alice", "wrong"))],
            None,
        );
        assert_eq!(r.status, 401, "{method} {path} with a wrong password: {r}");
    }
    let r = reg.request("GET", "/v2/", &[("Authorization", &good)], None);
    assert_eq!(r.status, 200, "GET /v2/ with credentials: {r}");
    let r = reg.request("GET", "/healthz", &[], None);
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"ok\n"[..]),
        "health needs no credentials"
    );

    let layout = gzip_layout(dir.path());
    let src = oci_ref(&layout, "v1");
    let dest = format!("docker://{}/lsc/app:v1", reg.addr());
    let refused = tool("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            &src,
            &dest,
        ])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "skopeo pushed without credentials"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("authentication required"),
        "skopeo's refusal: {}",
        describe(&refused)
    );
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:s3cret-pw",
        &src,
        &dest,
    ]);
    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        "alice:s3cret-pw",
        &dest,
        &oci_ref(&back, "v1"),
    ]);
    assert_same_blobs(&layout, &back);
    let log = reg.log_tail(2000);
    assert!(
        !log.contains("s3cret-pw"),
        "the access log shows the password"
    );
    assert!(
        !log.contains(good.trim_start_matches("Basic ")),
        "the access log shows the credentials"
    );
}

#[test]
fn anonymous_reads_and_read_only_mode() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let users = htpasswd_file(dir.path());
    let blob = b"a blob anyone may read".to_vec();
    let digest = sha(&blob);
    {
        let reg = Registry::start_with(
            &store,
            &["--htpasswd", users.to_str().unwrap(), "--anonymous-read"],
        );
        let r = reg.request("POST", "/v2/lsc/pub/blobs/uploads/", &[], None);
        assert_eq!(r.status, 401, "anonymous POST with --anonymous-read: {r}");
        let r = reg.request(
            "POST",
            &format!("/v2/lsc/pub/blobs/uploads/?digest={digest}"),
            &[("Authorization", &basic("alice", "s3cret-pw"))],
            Some(&blob),
        );
        assert_eq!(r.status, 201, "authenticated single-request push: {r}");
        let r = reg.get(&format!("/v2/lsc/pub/blobs/{digest}"));
        assert_eq!(
            (r.status, &r.body),
            (200, &blob),
            "anonymous GET with --anonymous-read"
        );
    }
    let reg = Registry::start_with(&store, &["--read-only"]);
    let r = reg.get(&format!("/v2/lsc/pub/blobs/{digest}"));
    assert_eq!((r.status, &r.body), (200, &blob), "GET in read-only mode");
    for (method, path) in [
        ("POST", "/v2/lsc/pub/blobs/uploads/".to_string()),
        ("DELETE", format!("/v2/lsc/pub/blobs/{digest}")),
        ("PUT", "/v2/lsc/pub/manifests/v1".to_string()),
    ] {
        let r = reg.request(method, &path, &[], Some(b"{}"));
        assert_eq!(r.status, 405, "{method} {path} in read-only mode: {r}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("UNSUPPORTED"),
            "{method} {path}: error body {r}"
        );
    }
    let r = reg.head(&format!("/v2/lsc/pub/blobs/{digest}"));
    assert_eq!(r.status, 200, "the refused DELETE left the blob: {r}");
}

/// A `layerstore serve` started directly (the guard speaks http only).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_with_a_real_certificate() {
    require_tool("skopeo");
    require_tool("openssl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    run_ok(tool("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]));
    let store = dir.path().join("store");
    let mut child = cli(&store)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-lifetime",
            "300",
            "--quiet",
        ])
        .args([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _server = Server(child);
    let addr = first
        .trim()
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("first line of an HTTPS server: {first:?}"))
        .to_string();
    let layout = gzip_layout(dir.path());
    let dest = format!("docker://{addr}/lsc/tls:v1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &oci_ref(&layout, "v1"),
        &dest,
    ]);
    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &oci_ref(&back, "v1"),
    ]);
    assert_same_blobs(&layout, &back);
    // Plain HTTP to the TLS port gets no registry answer.
    let plain = std::net::TcpStream::connect(&addr).and_then(|mut s| {
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        Ok(buf)
    });
    assert!(
        !plain.unwrap_or_default().starts_with(b"HTTP/1.1 200"),
        "plain HTTP was answered on the HTTPS port"
    );
}

#[test]
fn gc_forgets_unreferenced_pushed_blobs_after_their_grace_and_stale_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let loose = Rng::new(11).bytes(200_000);
    let layer = gzip(&tar_layer(&[("data/x", Rng::new(12).bytes(150_000))]));
    let tar = tar_layer(&[("data/x", Rng::new(12).bytes(150_000))]);
    let config = config_json("amd64", &[sha(&tar)]);
    let manifest = manifest_json(
        &desc(MT_CONFIG, &config),
        &[desc("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
    );
    let (loose_d, layer_d) = (sha(&loose), sha(&layer));
    let session;
    {
        let reg = Registry::start(&store);
        reg.push_blob("lsc/gc", &loose);
        reg.push_blob("lsc/gc", &layer);
        reg.push_blob("lsc/gc", &config);
        reg.push_manifest("lsc/gc", "v1", MT_MANIFEST, &manifest);
        session = reg.start_upload("lsc/gc");
        let r = reg.request("PATCH", &session, &[], Some(b"half a blob"));
        assert_eq!(r.status, 202, "PATCH of the session gc must keep: {r}");
    }
    // Within the grace period and the upload age: everything stays.
    cli_ok(&store, &["gc"]);
    {
        let reg = Registry::start(&store);
        assert_eq!(
            reg.head(&format!("/v2/lsc/gc/blobs/{loose_d}")).status,
            200,
            "loose blob within grace"
        );
        assert_eq!(
            reg.get(&session).status,
            204,
            "upload session within its age"
        );
    }
    let report = cli_json(
        &store,
        &["gc", "--registry-grace", "0", "--upload-max-age", "0"],
    );
    assert_eq!(report["registry_blobs_removed"], 1, "gc report: {report}");
    assert_eq!(report["uploads_removed"], 1, "gc report: {report}");
    let reg = Registry::start(&store);
    let r = reg.head(&format!("/v2/lsc/gc/blobs/{loose_d}"));
    assert_eq!(r.status, 404, "unreferenced blob past its grace: {r}");
    assert_eq!(reg.get(&session).status, 404, "stale upload session");
    reg.assert_blob(
        "lsc/gc",
        &layer_d,
        &layer,
        "layer of a tagged manifest after gc",
    );
    reg.assert_blob("lsc/gc", &sha(&config), &config, "config after gc");
    let r = reg.get_manifest("lsc/gc", "v1");
    assert_eq!((r.status, &r.body), (200, &manifest), "manifest after gc");
    drop(reg);
    let out = cli_run(&store, &["verify", "--full"]);
    assert!(
        out.status.success(),
        "verify --full after gc: {}",
        describe(&out)
    );

    // Deleting the manifest makes its blobs garbage once their grace ends.
    let reg = Registry::start(&store);
    let r = reg.delete(&format!("/v2/lsc/gc/manifests/{}", sha(&manifest)));
    assert_eq!(r.status, 202, "DELETE manifest: {r}");
    drop(reg);
    let report = cli_json(&store, &["gc", "--registry-grace", "0"]);
    assert_eq!(
        report["registry_blobs_removed"], 2,
        "gc after the manifest went: {report}"
    );
    let reg = Registry::start(&store);
    assert_eq!(
        reg.head(&format!("/v2/lsc/gc/blobs/{layer_d}")).status,
        404,
        "layer after its manifest and gc"
    );
}

#[test]
fn open_uploads_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start_with(&dir.path().join("store"), &["--max-uploads", "2"]);
    let first = reg.start_upload("lsc/many");
    reg.start_upload("lsc/many");
    let r = reg.request("POST", "/v2/lsc/many/blobs/uploads/", &[], None);
    assert_eq!(r.status, 429, "a third upload with --max-uploads 2: {r}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("TOOMANYREQUESTS"),
        "error body of the refused upload: {r}"
    );
    let r = reg.delete(&first);
    assert_eq!(r.status, 204, "cancel of the first upload: {r}");
    let third = reg.start_upload("lsc/many");
    let r = reg.request("POST", "/v2/lsc/many/blobs/uploads/", &[], None);
    assert_eq!(r.status, 429, "two open again: {r}");
    // A finished upload frees its place too.
    let blob = b"limited".to_vec();
    let r = reg.request(
        "PUT",
        &with_query(&third, &format!("digest={}", sha(&blob))),
        &[],
        Some(&blob),
    );
    assert_eq!(r.status, 201, "closing the third upload: {r}");
    reg.start_upload("lsc/many");
}

//! The registry (`layerstore serve`) with real clients: skopeo pushes and
//! pulls single images (gzip, zstd and uncompressed layers, OCI and Docker
//! schema 2 manifests) and a multi-platform index byte for byte, podman
//! pushes and pulls, images the CLI imported are pulled, shared layers are
//! stored once and found in other repositories without an upload, a server
//! SIGKILLed during a push leaves finished images intact (and the cut
//! upload resumable), and the CNCF distribution registry (Debian's
//! `docker-registry`) holds exactly the same images as layerstore.
//!
//! skopeo and umoci are required (the tests fail without them, like every
//! other image test); podman and docker-registry are optional: the tests
//! that need them print why and skip when they are missing or cannot run.
//! Everything talks to 127.0.0.1 only, and every server ends by itself
//! (guards stop it on drop; `--max-lifetime` and `timeout` as safety nets).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tempfile::TempDir;

const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("layerstore-clients-")
        .tempdir()
        .unwrap()
}

/// `docker://127.0.0.1:PORT/REFERENCE` of the server.
fn docker(reg: &Registry, reference: &str) -> String {
    format!("docker://{}/{reference}", reg.addr())
}

/// `skopeo copy --preserve-digests ARGS SRC DEST`: skopeo must copy every
/// manifest and blob as it is, or fail (it never silently recompresses).
fn copy(args: &[&str], src: &str, dest: &str) -> String {
    let mut all = vec!["copy", "--preserve-digests"];
    all.extend(args);
    all.extend([src, dest]);
    String::from_utf8_lossy(&skopeo(&all).stdout).into_owned()
}

/// Pushes `src` to the registry at `dest` (`docker://...`).
fn push(src: &str, dest: &str) -> String {
    copy(&["--dest-tls-verify=false"], src, dest)
}

/// Pulls `src` (`docker://...`) into `dest`.
fn pull(src: &str, dest: &str) -> String {
    copy(&["--src-tls-verify=false"], src, dest)
}

/// A blob of an OCI layout.
fn layout_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let path = dir.join("blobs/sha256").join(hex(digest));
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The layout's index.json, parsed.
fn layout_index(dir: &Path) -> Value {
    let path = dir.join("index.json");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The index.json descriptor of the layout's image named `tag`.
#[track_caller]
fn tagged(dir: &Path, tag: &str) -> Value {
    let index = layout_index(dir);
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"][REF_NAME] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("{} names no {tag}: {index}", dir.display()))
}

/// Descriptor fields that identify the content (not the annotations a
/// layout adds).
fn identity(desc: &Value) -> Value {
    json!({"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"]})
}

/// Every blob digest reachable from `root` in a layout: the document, and
/// for an index its manifests, for a manifest its config and layers, all
/// checked against their descriptors' digest and size.
fn reachable(dir: &Path, root: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(desc) = stack.pop() {
        let digest = desc["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("descriptor without a digest: {desc}"))
            .to_string();
        let bytes = layout_blob(dir, &digest);
        assert_eq!(
            sha(&bytes),
            digest,
            "{}: blob {digest} does not have its digest",
            dir.display()
        );
        assert_eq!(
            desc["size"].as_u64(),
            Some(bytes.len() as u64),
            "{}: size of {digest} in {desc}",
            dir.display()
        );
        let mt = desc["mediaType"].as_str().unwrap_or_default();
        if mt.contains("manifest") || mt.contains("index") {
            let doc: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{}: {digest} is not JSON: {e}", dir.display()));
            if let Some(ms) = doc["manifests"].as_array() {
                stack.extend(ms.iter().cloned());
            }
            if doc["config"].is_object() {
                stack.push(doc["config"].clone());
            }
            if let Some(ls) = doc["layers"].as_array() {
                stack.extend(ls.iter().cloned());
            }
        }
        out.insert(digest);
    }
    out
}

/// Asserts the image `tag` of layout `got` is exactly the image `tag` of
/// layout `want`: the same index.json descriptor (so the same manifest or
/// index digest), the same set of reachable blobs, each byte for byte.
/// Returns the blobs' digests.
#[track_caller]
fn assert_same_image(got: &Path, want: &Path, tag: &str, what: &str) -> BTreeSet<String> {
    let (dg, dw) = (tagged(got, tag), tagged(want, tag));
    assert_eq!(
        identity(&dg),
        identity(&dw),
        "{what}: index.json descriptors of {tag} differ"
    );
    let (bg, bw) = (reachable(got, &dg), reachable(want, &dw));
    assert_eq!(bg, bw, "{what}: the images hold different blobs");
    for d in &bg {
        assert_same_bytes(
            &layout_blob(got, d),
            &layout_blob(want, d),
            &format!("{what}: blob {d}"),
        );
    }
    bg
}

/// The server's access log as (method, path, status) per request line
/// (`TIME METHOD PATH STATUS SIZE DURATION`; found by the method, so a
/// field more in front does not matter).
fn access_log(reg: &Registry) -> Vec<(String, String, u16)> {
    const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
    reg.log_tail(usize::MAX)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| METHODS.contains(w))?;
            let status = f.get(i + 2)?.parse().ok()?;
            Some((f[i].to_string(), f.get(i + 1)?.to_string(), status))
        })
        .collect()
}

/// The uncompressed tar of a layer blob of `media_type`.
fn layer_tar_of(media_type: &str, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if media_type.ends_with("gzip") {
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut out)
            .expect("gunzip of a pushed layer");
    } else if media_type.ends_with("zstd") {
        out = zstd::decode_all(blob).expect("unzstd of a pushed layer");
    } else {
        out = blob.to_vec();
    }
    out
}

/// Whether an optional tool runs at all (the command exits 0); the reason
/// when it does not.
fn runs(cmd: &mut Command) -> Result<(), String> {
    let what = command_line(cmd);
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("`{what}` failed: {}", describe(&out))),
        Err(e) => Err(format!("`{what}` cannot be run: {e}")),
    }
}

/// Prints why a test is skipped.
fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
}

/// An image built with umoci in an OCI layout.
struct UmociImage {
    layout: PathBuf,
    /// The content of /app/bin/server.
    server: Vec<u8>,
}

/// Builds an image with umoci in a new layout `dir` under `tag`: four gzip
/// layers umoci makes itself (`unpack`, change the rootfs, `repack`) of
/// real files: a base with random and text files, modes and a symlink, an
/// app layer, a layer that overrides a file, and a layer that deletes a
/// directory (a whiteout). (`umoci insert` is not used: umoci 0.4.7 writes
/// its layers without the end-of-archive blocks.)
fn umoci_image(work: &Path, dir: &Path, tag: &str, seed: u64) -> UmociImage {
    let umoci = require_tool("umoci");
    let image = format!("{}:{tag}", path_arg(dir));
    let bundle = work.join(format!("umoci-bundle-{seed}"));
    let rootfs = bundle.join("rootfs");
    run_ok(Command::new(&umoci).args(["init", "--layout"]).arg(dir));
    run_ok(Command::new(&umoci).args(["new", "--image", &image]));
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--image", &image])
            .arg(&bundle),
    );
    let repack = || {
        run_ok(
            Command::new(&umoci)
                .args(["repack", "--refresh-bundle", "--image", &image])
                .arg(&bundle),
        );
    };
    let mut rng = Rng::new(seed);
    let chmod = |rel: &str, mode: u32| {
        fs::set_permissions(rootfs.join(rel), fs::Permissions::from_mode(mode)).unwrap();
    };
    write_tree(
        &rootfs,
        &[
            (
                "etc/os-release",
                format!("NAME=lsc\nVERSION={seed}\n").as_bytes(),
            ),
            ("etc/shadow", b"root:*:19000:0:99999:7:::\n"),
            ("usr/lib/libfoo.so", &rng.bytes(MIB)),
            ("usr/share/doc/README", &text_bytes(seed + 1, 300_000)),
            ("usr/share/doc/more/NOTES", &text_bytes(seed + 2, 20_000)),
        ],
    );
    chmod("etc/shadow", 0o600);
    std::os::unix::fs::symlink("libfoo.so", rootfs.join("usr/lib/libfoo.so.1")).unwrap();
    repack();
    let server = rng.bytes(500_000);
    write_tree(
        &rootfs,
        &[
            ("app/bin/server", &server),
            ("app/data/words.txt", &text_bytes(seed + 3, 400_000)),
        ],
    );
    chmod("app/bin/server", 0o755);
    repack();
    write_tree(
        &rootfs,
        &[
            ("etc/os-release", b"NAME=lsc\nVERSION=overridden\n"),
            ("app/data/extra.txt", &text_bytes(seed + 4, 50_000)),
        ],
    );
    repack();
    fs::remove_dir_all(rootfs.join("usr/share/doc")).unwrap();
    repack();
    // Only the final image's blobs stay.
    run_ok(Command::new(&umoci).args(["gc", "--layout"]).arg(dir));
    UmociImage {
        layout: dir.to_path_buf(),
        server,
    }
}

/// The manifest of the (single-manifest) image `tag` in a layout.
fn manifest_of(dir: &Path, tag: &str) -> (String, Vec<u8>, Value) {
    let d = tagged(dir, tag);
    let digest = d["digest"].as_str().unwrap().to_string();
    let bytes = layout_blob(dir, &digest);
    let doc = serde_json::from_slice(&bytes).unwrap();
    (digest, bytes, doc)
}

/// The media types of a manifest's layers.
fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

/// `image ls --json`, as name -> digest.
fn image_names(store: &Path) -> BTreeMap<String, String> {
    let ls = cli_json(store, &["image", "ls"]);
    ls.as_array()
        .unwrap_or_else(|| panic!("image ls --json is not an array: {ls}"))
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The DiffIDs `ls --json` lists.
fn layer_digests(store: &Path) -> BTreeSet<String> {
    ls_json(store)
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `verify --full` exits 0.
#[track_caller]
fn verify_full(store: &Path, when: &str) {
    let out = cli_run(store, &["verify", "--full"]);
    assert!(
        out.status.success(),
        "verify --full {when}: {}",
        describe(&out)
    );
}

/// A layout image of gzip layers made from `tars` (base first), for `arch`;
/// returns its manifest descriptor (the layout's index.json is not written).
fn gzip_image(layout: &Layout, arch: &str, tars: &[&[u8]]) -> Value {
    let diff_ids: Vec<String> = tars.iter().map(|t| sha(t)).collect();
    let config = layout.blob(MT_CONFIG, &config_json(arch, &diff_ids));
    let layers: Vec<Value> = tars
        .iter()
        .map(|t| layout.blob(MT_LAYER_GZIP, &gzip(t)))
        .collect();
    layout.blob(MT_MANIFEST, &manifest_json(&config, &layers))
}

/// A layer tar of a few files of text and random bytes.
fn files_tar(seed: u64, size: usize) -> Vec<u8> {
    tar_layer(&[
        (format!("etc/conf-{seed}.txt"), text_bytes(seed, size / 2)),
        (format!("bin/tool-{seed}"), random_bytes(seed + 1, size / 2)),
    ])
}

// ---------------------------------------------------------------------------
// 1. skopeo: single images, byte for byte; the CLI sees them
// ---------------------------------------------------------------------------

#[test]
fn skopeo_pushes_and_pulls_images_byte_identical() {
    let t = tmp();
    let img = umoci_image(t.path(), &t.path().join("src"), "v1", 1);
    let src = img.layout.clone();
    let (mdigest, mbytes, manifest) = manifest_of(&src, "v1");
    let types = layer_types(&manifest);
    assert_eq!(types.len(), 4, "umoci wrote {manifest}");
    assert!(
        types.iter().all(|m| m == MT_LAYER_GZIP),
        "umoci wrote {manifest}"
    );

    let store = t.path().join("store");
    let reg = Registry::start(&store);

    // gzip layers as umoci wrote them.
    let dest = docker(&reg, "lsc/app:v1");
    push(&oci_ref(&src, "v1"), &dest);
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &dest]).stdout;
    assert_same_bytes(&raw, &mbytes, "skopeo inspect --raw of lsc/app:v1");
    reg.assert_manifest(
        "lsc/app",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &mdigest,
        "lsc/app:v1",
    );
    let out = t.path().join("out");
    pull(&dest, &oci_ref(&out, "v1"));
    let blobs = assert_same_image(&out, &src, "v1", "gzip image pulled back");
    assert_eq!(blobs.len(), 6, "manifest, config and 4 layers");

    // zstd layers: skopeo recompresses into a layout first, then pushes.
    let zsrc = t.path().join("zsrc");
    skopeo(&[
        "copy",
        "--dest-compress-format",
        "zstd",
        &oci_ref(&src, "v1"),
        &oci_ref(&zsrc, "v1"),
    ]);
    let (zdigest, zbytes, zmanifest) = manifest_of(&zsrc, "v1");
    assert!(
        layer_types(&zmanifest).iter().all(|m| m == MT_LAYER_ZSTD),
        "skopeo did not write zstd layers: {zmanifest}"
    );
    let zdest = docker(&reg, "lsc/appz:v1");
    push(&oci_ref(&zsrc, "v1"), &zdest);
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &zdest]).stdout;
    assert_same_bytes(&raw, &zbytes, "skopeo inspect --raw of lsc/appz:v1");
    let zout = t.path().join("zout");
    pull(&zdest, &oci_ref(&zout, "v1"));
    assert_same_image(&zout, &zsrc, "v1", "zstd image pulled back");

    // Uncompressed layers (a hand-built layout; --preserve-digests keeps
    // skopeo from compressing them on the way).
    let usrc = t.path().join("usrc");
    let tars = [files_tar(10, 400_000), files_tar(11, 100_000)];
    let ulayout = simple_layout(&usrc, "v1", &[&tars[0], &tars[1]]);
    let (udigest, ubytes, _) = manifest_of(&ulayout.dir, "v1");
    let udest = docker(&reg, "lsc/appu:v1");
    push(&oci_ref(&usrc, "v1"), &udest);
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &udest]).stdout;
    assert_same_bytes(&raw, &ubytes, "skopeo inspect --raw of lsc/appu:v1");
    let uout = t.path().join("uout");
    copy(
        &[
            "--src-tls-verify=false",
            "--dest-oci-accept-uncompressed-layers",
        ],
        &udest,
        &oci_ref(&uout, "v1"),
    );
    assert_same_image(&uout, &usrc, "v1", "uncompressed image pulled back");

    // A Docker schema 2 manifest (skopeo converts into a `dir:` copy, which
    // keeps the manifest and blobs as files): pushed and pulled verbatim.
    let dsrc = t.path().join("dsrc");
    skopeo(&[
        "copy",
        "-f",
        "v2s2",
        &oci_ref(&src, "v1"),
        &format!("dir:{}", path_arg(&dsrc)),
    ]);
    let dmanifest = fs::read(dsrc.join("manifest.json")).unwrap();
    let ddoc: Value = serde_json::from_slice(&dmanifest).unwrap();
    assert_eq!(ddoc["mediaType"], MT_DOCKER_MANIFEST, "skopeo wrote {ddoc}");
    let ddigest = sha(&dmanifest);
    let ddest = docker(&reg, "lsc/appd:v1");
    push(&format!("dir:{}", path_arg(&dsrc)), &ddest);
    reg.assert_manifest(
        "lsc/appd",
        "v1",
        MT_DOCKER_MANIFEST,
        &dmanifest,
        &ddigest,
        "docker manifest skopeo pushed",
    );
    let dout = t.path().join("dout");
    pull(&ddest, &format!("dir:{}", path_arg(&dout)));
    let files = |d: &Path| -> BTreeMap<String, Vec<u8>> {
        fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let (fa, fb) = (files(&dout), files(&dsrc));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "files of the docker image pulled back"
    );
    for (name, bytes) in &fa {
        assert_same_bytes(
            bytes,
            &fb[name],
            &format!("docker image pulled back: {name}"),
        );
    }
    assert_eq!(
        fa.len(),
        7,
        "version, manifest.json, config and 4 layers: {:?}",
        fa.keys()
    );

    // The CLI sees the pushed images under their names.
    let names = image_names(&store);
    for (name, digest) in [
        ("lsc/app:v1", &mdigest),
        ("lsc/appz:v1", &zdigest),
        ("lsc/appu:v1", &udigest),
        ("lsc/appd:v1", &ddigest),
    ] {
        assert_eq!(
            names.get(name),
            Some(digest),
            "image ls --json: {name} ({names:?})"
        );
    }

    // Its checkout is umoci's unpack of the source, and the zstd image has
    // the same root filesystem.
    let bundle = t.path().join("bundle");
    run_ok(
        tool("umoci")
            .args(["unpack", "--image", &format!("{}:v1", path_arg(&src))])
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read(rootfs.join("etc/os-release")).unwrap(),
        b"NAME=lsc\nVERSION=overridden\n",
        "umoci unpack: the upper layer overrides"
    );
    assert!(
        !rootfs.join("usr/share/doc").exists(),
        "umoci unpack: whiteout"
    );
    for (name, dir) in [
        ("lsc/app:v1", "co"),
        ("lsc/appz:v1", "coz"),
        ("lsc/appd:v1", "cod"),
    ] {
        let co = t.path().join(dir);
        cli_ok(&store, &["checkout", name, path_arg(&co)]);
        assert_same_tree_with_owners(&co, &rootfs, &format!("checkout of {name} vs umoci unpack"));
        assert_eq!(
            fs::read(co.join("app/bin/server")).unwrap(),
            img.server,
            "checkout of {name}: app/bin/server"
        );
    }

    let (status, by_itself) = reg.stop();
    assert!(
        by_itself && status.success(),
        "server exit after SIGTERM: {status}"
    );
    verify_full(&store, "after three pushes");
}

// ---------------------------------------------------------------------------
// 2. skopeo --all: a multi-platform index
// ---------------------------------------------------------------------------

#[test]
fn skopeo_pushes_a_multi_platform_index() {
    let t = tmp();
    let dir = t.path().join("src");
    let layout = Layout::new(&dir);
    let base = files_tar(20, 600_000);
    let amd = files_tar(21, 200_000);
    let arm = files_tar(22, 150_000);
    let mut m_amd = gzip_image(&layout, "amd64", &[&base, &amd]);
    let mut m_arm = gzip_image(&layout, "arm64", &[&base, &arm]);
    m_amd["platform"] = json!({"architecture": "amd64", "os": "linux"});
    m_arm["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index = index_json(&[m_amd.clone(), m_arm.clone()]);
    let idesc = layout.blob(MT_INDEX, &index);
    layout.index(&[named(idesc.clone(), "v1")]);

    let store = t.path().join("store");
    let reg = Registry::start(&store);
    let dest = docker(&reg, "lsc/multi:v1");
    copy(
        &["--all", "--dest-tls-verify=false"],
        &oci_ref(&dir, "v1"),
        &dest,
    );
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &dest]).stdout;
    assert_same_bytes(&raw, &index, "skopeo inspect --raw of the index");
    let idigest = sha(&index);
    reg.assert_manifest(
        "lsc/multi",
        "v1",
        MT_INDEX,
        &index,
        &idigest,
        "pushed index",
    );
    for m in [&m_amd, &m_arm] {
        let d = m["digest"].as_str().unwrap();
        let bytes = layout_blob(&dir, d);
        reg.assert_manifest("lsc/multi", d, MT_MANIFEST, &bytes, d, "platform manifest");
    }

    let out = t.path().join("out");
    copy(
        &["--all", "--src-tls-verify=false"],
        &dest,
        &oci_ref(&out, "v1"),
    );
    let blobs = assert_same_image(&out, &dir, "v1", "index pulled back with --all");
    assert_eq!(
        blobs.len(),
        1 + 2 + 2 + 3,
        "index, 2 manifests, 2 configs, 3 distinct layers"
    );

    let names = image_names(&store);
    assert_eq!(
        names.get("lsc/multi:v1"),
        Some(&idigest),
        "image ls: {names:?}"
    );
    drop(reg);
    verify_full(&store, "after the index push");
}

// ---------------------------------------------------------------------------
// 3. Images the CLI imported are pulled
// ---------------------------------------------------------------------------

#[test]
fn images_imported_with_the_cli_can_be_pulled() {
    let t = tmp();
    let src = umoci_image(t.path(), &t.path().join("src"), "v1", 3).layout;
    let (mdigest, mbytes, _) = manifest_of(&src, "v1");
    let store = t.path().join("store");
    cli_ok(
        &store,
        &["image", "import", path_arg(&src), "--name", "lsc/imp:v1"],
    );

    let reg = Registry::start(&store);
    reg.assert_manifest(
        "lsc/imp",
        "v1",
        MT_MANIFEST,
        &mbytes,
        &mdigest,
        "imported image",
    );
    let src_ref = docker(&reg, "lsc/imp:v1");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &src_ref]).stdout;
    assert_same_bytes(&raw, &mbytes, "skopeo inspect --raw of the imported image");
    let out = t.path().join("out");
    pull(&src_ref, &oci_ref(&out, "v1"));
    let blobs = assert_same_image(&out, &src, "v1", "imported image pulled");
    assert_eq!(blobs.len(), 6, "manifest, config and 4 layers");
}

// ---------------------------------------------------------------------------
// 4. podman
// ---------------------------------------------------------------------------

/// `podman` on a private storage (root, runroot, tmpdir, storage.conf,
/// vfs) under `dir`, so the machine's podman state is never touched.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        for d in ["root", "runroot", "tmp"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("root").display(),
                dir.join("runroot").display()
            ),
        )
        .unwrap();
        Podman {
            dir: dir.to_path_buf(),
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"]);
        cmd
    }

    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run_ok(self.cmd().args(args)).stdout).into_owned()
    }

    /// `podman image inspect NAME`: (Id, Digest, RootFS.Layers).
    #[track_caller]
    fn inspect(&self, name: &str) -> (String, String, Vec<String>) {
        let v: Value = serde_json::from_str(&self.run(&["image", "inspect", name]))
            .expect("podman image inspect prints JSON");
        let img = &v[0];
        let layers = img["RootFS"]["Layers"]
            .as_array()
            .unwrap_or_else(|| panic!("podman image inspect: {v}"))
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        (
            img["Id"].as_str().unwrap().to_string(),
            img["Digest"].as_str().unwrap().to_string(),
            layers,
        )
    }
}

#[test]
fn podman_pushes_and_pulls() {
    const TEST: &str = "podman_pushes_and_pulls";
    if let Err(why) = runs(Command::new("podman").arg("--version")) {
        return skip(TEST, &why);
    }
    let t = tmp();
    let podman = Podman::new(&t.path().join("podman"));
    if let Err(e) = runs(podman.cmd().arg("info")) {
        return skip(TEST, &format!("podman cannot run here: {e}"));
    }
    let src = umoci_image(t.path(), &t.path().join("src"), "v1", 4).layout;
    let (_, _, manifest) = manifest_of(&src, "v1");
    let config: Value = serde_json::from_slice(&layout_blob(
        &src,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let diff_ids: Vec<String> =
        serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();

    // podman pull prints the image ID last.
    // (podman names the image after the layout's path, which must be
    // lowercase: the tempdir's is not, so the path is relative.)
    let pulled = String::from_utf8_lossy(
        &run_ok(
            podman
                .cmd()
                .current_dir(t.path())
                .args(["pull", "oci:src:v1"]),
        )
        .stdout,
    )
    .into_owned();
    let local_id = pulled.lines().last().unwrap_or_default().trim().to_string();
    let store = t.path().join("store");
    let reg = Registry::start(&store);
    let name = format!("{}/lsc/pod:v1", reg.addr());
    podman.run(&["tag", &local_id, &name]);
    let (id, _, layers) = podman.inspect(&name);
    assert_eq!(
        format!("sha256:{id}"),
        config_digest,
        "podman's image ID is the config digest"
    );
    assert_eq!(layers, diff_ids, "podman's DiffIDs are the source's");

    let digestfile = t.path().join("pushed-digest");
    podman.run(&[
        "push",
        "--tls-verify=false",
        "--digestfile",
        path_arg(&digestfile),
        &name,
    ]);
    let pushed = fs::read_to_string(&digestfile).unwrap().trim().to_string();

    // What the server holds: the manifest podman pushed, its config, and
    // layers whose tars are the image's DiffIDs.
    let r = reg.get_manifest("lsc/pod", "v1");
    assert_eq!(r.status, 200, "GET the manifest podman pushed: {r}");
    assert_eq!(
        sha(&r.body),
        pushed,
        "podman's --digestfile vs the served manifest"
    );
    assert_eq!(r.header("docker-content-digest"), Some(pushed.as_str()));
    let m = r.json();
    assert_eq!(m["config"]["digest"], config_digest, "pushed config: {m}");
    let served_config = reg.get(&format!("/v2/lsc/pod/blobs/{config_digest}"));
    assert_eq!(served_config.status, 200, "{served_config}");
    assert_same_bytes(
        &served_config.body,
        &layout_blob(&src, config_digest),
        "config podman pushed",
    );
    let served_diff_ids: Vec<String> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().unwrap();
            let b = reg.get(&format!("/v2/lsc/pod/blobs/{d}"));
            assert_eq!(b.status, 200, "layer podman pushed: {b}");
            assert_eq!(sha(&b.body), d, "served layer bytes vs its digest");
            sha(&layer_tar_of(l["mediaType"].as_str().unwrap(), &b.body))
        })
        .collect();
    assert_eq!(
        served_diff_ids, diff_ids,
        "tars of the layers podman pushed"
    );

    // Remove it from podman and pull it back.
    podman.run(&["rmi", "--all", "--force"]);
    assert_eq!(
        podman.run(&["images", "-q"]).trim(),
        "",
        "podman still has images"
    );
    podman.run(&["pull", "--tls-verify=false", &name]);
    let (id, digest, layers) = podman.inspect(&name);
    assert_eq!(format!("sha256:{id}"), config_digest, "pulled image ID");
    assert_eq!(digest, pushed, "pulled image's manifest digest");
    assert_eq!(layers, diff_ids, "pulled image's DiffIDs");

    let names = image_names(&store);
    assert_eq!(
        names.get("lsc/pod:v1"),
        Some(&pushed),
        "image ls: {names:?}"
    );
    drop(reg);
    verify_full(&store, "after podman's push");
}

// ---------------------------------------------------------------------------
// 5. Shared layers: stored once, found in other repositories
// ---------------------------------------------------------------------------

#[test]
fn shared_layers_are_stored_once() {
    let t = tmp();
    let dir = t.path().join("src");
    let layout = Layout::new(&dir);
    let base1 = files_tar(50, 3 * MIB);
    let base2 = files_tar(51, MIB);
    let top1 = files_tar(52, 40_000);
    let top2 = files_tar(53, 40_000);
    let m1 = gzip_image(&layout, "amd64", &[&base1, &base2, &top1]);
    let m2 = gzip_image(&layout, "amd64", &[&base1, &base2, &top2]);
    layout.index(&[named(m1, "v1"), named(m2, "v2")]);
    let total = |tag: &str| -> u64 {
        reachable(&dir, &tagged(&dir, tag))
            .iter()
            .map(|d| layout_blob(&dir, d).len() as u64)
            .sum()
    };
    let size2 = total("v2");

    let store = t.path().join("store");
    let reg = Registry::start(&store);
    push(&oci_ref(&dir, "v1"), &docker(&reg, "lsc/app:v1"));
    let s1 = stat_json(&store);
    let listed_before = layer_digests(&store);
    push(&oci_ref(&dir, "v2"), &docker(&reg, "lsc/app:v2"));
    let s2 = stat_json(&store);
    let n = |s: &Value, k: &str| s[k].as_u64().unwrap_or_else(|| panic!("stat {k}: {s}"));
    let pack_growth = n(&s2, "pack_bytes") - n(&s1, "pack_bytes");
    let stored_growth = n(&s2, "stored_bytes").saturating_sub(n(&s1, "stored_bytes"));
    eprintln!(
        "second image: {size2} B compressed; packs grew {pack_growth} B, stored_bytes {stored_growth} B"
    );
    assert!(
        pack_growth * 10 < size2,
        "the second image ({size2} B, sharing all but one small layer) grew the packs by \
         {pack_growth} B; stat before {s1}, after {s2}"
    );
    assert!(
        stored_growth * 4 < size2,
        "the second image ({size2} B) grew stored_bytes by {stored_growth} B; stat before {s1}, after {s2}"
    );
    // Blobs go through the put path (a config is stored like a layer): the
    // new top layer and the new config are the only new entries.
    let config2 = {
        let (_, _, m) = manifest_of(&dir, "v2");
        m["config"]["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(
        layer_digests(&store)
            .difference(&listed_before)
            .cloned()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([sha(&top2), config2]),
        "the second image adds only its top layer and its config"
    );
    assert_eq!(n(&s2, "layers"), n(&s1, "layers") + 2, "{s1} {s2}");

    // Another repository: every blob is already there (a mount or a HEAD
    // that finds it); nothing is uploaded but the manifest.
    let before = access_log(&reg).len();
    push(&oci_ref(&dir, "v2"), &docker(&reg, "lsc/other:v1"));
    let s3 = stat_json(&store);
    let log = access_log(&reg);
    let new: Vec<&(String, String, u16)> = log[before.min(log.len())..]
        .iter()
        .filter(|(_, p, _)| p.starts_with("/v2/lsc/other/"))
        .collect();
    let uploads: Vec<_> = new
        .iter()
        .filter(|(m, p, _)| (m == "PATCH" || m == "PUT") && p.contains("/blobs/uploads/"))
        .collect();
    assert!(
        uploads.is_empty(),
        "pushing the same image to another repository uploaded blobs again: {uploads:?}\nall: {new:?}"
    );
    for d in reachable(&dir, &tagged(&dir, "v2")) {
        if d == tagged(&dir, "v2")["digest"] {
            continue;
        }
        let found = new.iter().any(|(m, p, s)| {
            (m == "HEAD" && *s == 200 && p.ends_with(&d))
                || (m == "POST" && *s == 201 && p.contains("mount="))
        });
        assert!(
            found,
            "blob {d}: no HEAD 200 or mount for lsc/other: {new:?}"
        );
    }
    assert!(
        n(&s3, "pack_bytes") - n(&s2, "pack_bytes") < 64 * 1024,
        "a push of only known blobs grew the packs: {s2} -> {s3}"
    );
    assert_eq!(n(&s3, "layers"), n(&s2, "layers"));
    let out = t.path().join("out");
    pull(&docker(&reg, "lsc/other:v1"), &oci_ref(&out, "v2"));
    assert_same_image(&out, &dir, "v2", "lsc/other:v1 pulled");
}

// ---------------------------------------------------------------------------
// 6. SIGKILL during a push
// ---------------------------------------------------------------------------

#[test]
fn kill_9_during_push_leaves_completed_images_intact() {
    let t = tmp();
    let a_dir = umoci_image(t.path(), &t.path().join("a"), "v1", 6).layout;
    let b_dir = t.path().join("b");
    let b = Layout::new(&b_dir);
    let big = tar_layer(&[
        ("data/big.bin", partly_repetitive(60, 100 * MIB)),
        ("data/note.txt", b"the big layer\n".to_vec()),
    ]);
    let small = files_tar(61, 100_000);
    let mb = gzip_image(&b, "amd64", &[&small, &big]);
    b.index(&[named(mb.clone(), "v1")]);
    let (big_gz_digest, big_gz_len) = {
        let m: Value =
            serde_json::from_slice(&layout_blob(&b_dir, mb["digest"].as_str().unwrap())).unwrap();
        (
            m["layers"][1]["digest"].as_str().unwrap().to_string(),
            m["layers"][1]["size"].as_u64().unwrap(),
        )
    };

    let store = t.path().join("store");
    let reg = Registry::start(&store);
    push(&oci_ref(&a_dir, "v1"), &docker(&reg, "lsc/a:v1"));

    // Push B and SIGKILL the server while the big layer streams in.
    let out_file = t.path().join("skopeo-b.out");
    let mut skopeo_b: Child = tool("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &oci_ref(&b_dir, "v1"),
            &docker(&reg, "lsc/big:v1"),
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_file).unwrap())
        .stderr(fs::File::create(t.path().join("skopeo-b.err")).unwrap())
        .spawn()
        .expect("spawning skopeo");
    let started = Instant::now();
    loop {
        let log = access_log(&reg);
        if log
            .iter()
            .any(|(m, p, _)| m == "POST" && p.starts_with("/v2/lsc/big/blobs/uploads"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "skopeo never started uploading B: {}",
            reg.log_tail(20)
        );
        assert!(
            skopeo_b.try_wait().unwrap().is_none(),
            "skopeo ended before its first upload: {}",
            reg.log_tail(20)
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Then until the big layer is streaming in: an upload session on disk
    // (STORE/uploads/<id>.data) holds 8 MiB of it, or 2 s have passed.
    let posted = Instant::now();
    let upload_bytes = || -> u64 {
        fs::read_dir(store.join("uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".data"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    while upload_bytes() < 8 * MIB as u64 && posted.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(5));
    }
    let partial = upload_bytes();
    let finished_before_kill = access_log(&reg)
        .iter()
        .any(|(m, p, s)| m == "PUT" && p == "/v2/lsc/big/manifests/v1" && *s == 201);
    let log_at_kill = reg.log_tail(40);
    let status = reg.kill();
    assert!(!status.success(), "the SIGKILLed server: {status}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let skopeo_status = loop {
        if let Some(s) = skopeo_b.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = skopeo_b.kill();
            let _ = skopeo_b.wait();
            panic!("skopeo did not end within 60 s of the server's death");
        }
        thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "server SIGKILLed {:?} after B's first POST, with {partial} B of an upload on disk \
         (the big layer is {big_gz_len} B); push finished before: {finished_before_kill}; \
         skopeo: {skopeo_status}",
        posted.elapsed()
    );
    assert!(
        finished_before_kill || !skopeo_status.success(),
        "skopeo succeeded although the server was killed before B's manifest was pushed; log:\n{log_at_kill}"
    );
    verify_full(&store, "after SIGKILL during a push (before restart)");

    // Restart on the same store: A is intact, B is not there.
    let reg = Registry::start(&store);
    let out_a = t.path().join("out-a");
    pull(&docker(&reg, "lsc/a:v1"), &oci_ref(&out_a, "v1"));
    assert_same_image(&out_a, &a_dir, "v1", "A after the crash");
    let r = reg.get_manifest("lsc/big", "v1");
    if finished_before_kill {
        assert_eq!(r.status, 200, "B's push finished before the kill: {r}");
    } else {
        r.assert_error(
            &[404],
            &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
            "B's manifest after the crash",
        );
    }
    let h = reg.head(&format!("/v2/lsc/big/blobs/{big_gz_digest}"));
    let mut session = None;
    if h.status == 200 {
        reg.assert_blob(
            "lsc/big",
            &big_gz_digest,
            &layout_blob(&b_dir, &big_gz_digest),
            "B's big layer, if present after the crash",
        );
    } else {
        assert_eq!(h.status, 404, "HEAD of B's big layer after the crash: {h}");
        // The upload session the crash cut short outlives the restart: its
        // status names the bytes it holds, and the rest of the layer, sent
        // from there, completes it.
        session = fs::read_dir(store.join("uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name.strip_suffix(".data")?.to_string();
                Some((e.metadata().ok()?.len(), id))
            })
            .max();
    }

    // B again, to completion.
    let again = Instant::now();
    push(&oci_ref(&b_dir, "v1"), &docker(&reg, "lsc/big:v1"));
    eprintln!("B pushed to completion in {:?}", again.elapsed());
    let out_b = t.path().join("out-b");
    pull(&docker(&reg, "lsc/big:v1"), &oci_ref(&out_b, "v1"));
    assert_same_image(&out_b, &b_dir, "v1", "B pushed again after the crash");
    // The stale session, resumed after the image was pushed again, also
    // completes to the exact layer.
    match session {
        None => eprintln!("no upload session on disk after the crash: resume not tried"),
        Some((len, id)) => {
            let blob = layout_blob(&b_dir, &big_gz_digest);
            let len = len as usize;
            assert!(
                len < blob.len(),
                "{len} B in the session of a {} B layer",
                blob.len()
            );
            let path = format!("/v2/lsc/big/blobs/uploads/{id}");
            let r = reg.get(&path);
            assert_eq!(
                r.status, 204,
                "status of the upload the crash cut short: {r}"
            );
            assert_eq!(
                r.header("range"),
                Some(format!("0-{}", len.saturating_sub(1)).as_str()),
                "Range of the upload the crash cut short ({len} B on disk): {r}"
            );
            let r = reg.request(
                "PATCH",
                &path,
                &[
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", &format!("{len}-{}", blob.len() - 1)),
                ],
                Some(&blob[len..]),
            );
            assert_eq!(r.status, 202, "PATCH of the rest after the crash: {r}");
            let r = reg.request(
                "PUT",
                &with_query(&r.location(), &format!("digest={big_gz_digest}")),
                &[],
                None,
            );
            assert_eq!(r.status, 201, "PUT closing the resumed upload: {r}");
            reg.assert_blob(
                "lsc/big",
                &big_gz_digest,
                &blob,
                "B's big layer, its upload resumed after the crash",
            );
            eprintln!("the upload cut short at {len} B resumed and completed");
        }
    }
    let names = image_names(&store);
    assert!(
        names.contains_key("lsc/a:v1") && names.contains_key("lsc/big:v1"),
        "{names:?}"
    );
    let (status, by_itself) = reg.stop();
    assert!(
        by_itself && status.success(),
        "server exit after SIGTERM: {status}"
    );
    verify_full(&store, "after B's second push");

    // gc after the crash (an upload session is left over) keeps both.
    cli_ok(&store, &["gc"]);
    verify_full(&store, "after gc");
    let reg = Registry::start(&store);
    for (name, dir) in [("lsc/a:v1", &a_dir), ("lsc/big:v1", &b_dir)] {
        let out = t
            .path()
            .join(format!("after-gc-{}", name.replace(['/', ':'], "-")));
        pull(&docker(&reg, name), &oci_ref(&out, "v1"));
        assert_same_image(&out, dir, "v1", &format!("{name} after gc"));
    }
}

// ---------------------------------------------------------------------------
// 7. The CNCF distribution registry holds the same images
// ---------------------------------------------------------------------------

/// Debian's `docker-registry` (CNCF distribution) on a free loopback port,
/// under `timeout 600` so it ends by itself; stopped on drop.
struct Peer {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Peer {
    /// Starts it with storage under `dir`; the reason when it cannot run.
    fn start(dir: &Path) -> Result<Peer, String> {
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port: {e}"))?
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                     delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                    dir.join("data").display()
                ),
            )
            .unwrap();
            let log = dir.join(format!("registry-{port}.log"));
            let child = tool("timeout")
                .args(["600", "docker-registry", "serve"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).unwrap())
                .spawn()
                .map_err(|e| format!("spawning docker-registry: {e}"))?;
            let mut peer = Peer { child, addr, log };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = peer.child.try_wait() {
                    last = format!(
                        "docker-registry exited ({status}): {}",
                        fs::read_to_string(&peer.log).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect(&peer.addr).is_ok() {
                    return Ok(peer);
                }
                thread::sleep(Duration::from_millis(50));
            }
            if last.is_empty() {
                last = "docker-registry did not listen within 20 s".into();
            }
        }
        Err(last)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to the registry.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn peer_registry_and_layerstore_hold_the_same_images() {
    const TEST: &str = "peer_registry_and_layerstore_hold_the_same_images";
    if let Err(why) = runs(Command::new("docker-registry").arg("--version")) {
        return skip(TEST, &why);
    }
    let t = tmp();
    let peer_dir = t.path().join("peer");
    fs::create_dir_all(&peer_dir).unwrap();
    let peer = match Peer::start(&peer_dir) {
        Ok(p) => p,
        Err(why) => return skip(TEST, &format!("docker-registry cannot run here: {why}")),
    };
    let src = umoci_image(t.path(), &t.path().join("src"), "v1", 7).layout;
    let (_, mbytes, _) = manifest_of(&src, "v1");
    let store = t.path().join("store");
    let reg = Registry::start(&store);
    let ours = docker(&reg, "lsc/app:v1");
    let theirs = format!("docker://{}/lsc/app:v1", peer.addr);
    push(&oci_ref(&src, "v1"), &ours);
    push(&oci_ref(&src, "v1"), &theirs);

    let raw_ours = skopeo(&["inspect", "--tls-verify=false", "--raw", &ours]).stdout;
    let raw_theirs = skopeo(&["inspect", "--tls-verify=false", "--raw", &theirs]).stdout;
    assert_same_bytes(&raw_theirs, &mbytes, "the peer's manifest");
    assert_same_bytes(
        &raw_ours,
        &raw_theirs,
        "layerstore's manifest vs the peer's",
    );
    let info_ours = skopeo_inspect(&["--tls-verify=false", &ours]);
    let info_theirs = skopeo_inspect(&["--tls-verify=false", &theirs]);
    for k in ["Digest", "Layers", "Architecture", "Os"] {
        assert_eq!(info_ours[k], info_theirs[k], "skopeo inspect {k}");
    }

    let from_ours = t.path().join("from-ours");
    let from_theirs = t.path().join("from-theirs");
    pull(&ours, &oci_ref(&from_ours, "v1"));
    pull(&theirs, &oci_ref(&from_theirs, "v1"));
    let blobs = assert_same_image(
        &from_ours,
        &from_theirs,
        "v1",
        "pulls from layerstore and the peer",
    );
    assert_same_image(&from_theirs, &src, "v1", "pull from the peer vs the source");
    assert_eq!(blobs.len(), 6);

    // Registry to registry, both ways: the peer checks every digest of
    // what layerstore serves, and layerstore of what the peer serves.
    copy(
        &["--src-tls-verify=false", "--dest-tls-verify=false"],
        &theirs,
        &docker(&reg, "lsc/from-peer:v1"),
    );
    copy(
        &["--src-tls-verify=false", "--dest-tls-verify=false"],
        &ours,
        &format!("docker://{}/lsc/from-layerstore:v1", peer.addr),
    );
    let a = t.path().join("a");
    let b = t.path().join("b");
    pull(&docker(&reg, "lsc/from-peer:v1"), &oci_ref(&a, "v1"));
    pull(
        &format!("docker://{}/lsc/from-layerstore:v1", peer.addr),
        &oci_ref(&b, "v1"),
    );
    assert_same_image(&a, &src, "v1", "copied from the peer to layerstore");
    assert_same_image(&b, &src, "v1", "copied from layerstore to the peer");
    drop(reg);
    drop(peer);
}

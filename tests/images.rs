//! Image import/export: real OCI clients (skopeo, umoci) reading what
//! layerstore exports, layouts written by skopeo imported back, layer
//! sharing between images, name and layer lifetimes, OCI indexes with
//! several platforms, and hostile or broken input that must leave no trace.
//!
//! skopeo and umoci are required: the tests that use them fail (they do not
//! skip) when either is missing. Everything is built locally; no network.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore::{ExportFormat, Store};
use serde_json::{Value, json};
use support::*;
use tempfile::TempDir;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A two-layer image made with GNU tar from generated directories: a base
/// with a few files, and an app layer that overrides one file, deletes one
/// with a `.wh.` whiteout, deletes a directory with another, and adds one.
struct TwoLayers {
    base: Vec<u8>,
    app: Vec<u8>,
    tool: Vec<u8>,
}

impl TwoLayers {
    fn build(work: &Path, seed: u64, tool_size: usize) -> TwoLayers {
        let tool = Rng::new(seed).bytes(tool_size);
        let base_dir = work.join("base");
        let app_dir = work.join("app");
        write_tree(
            &base_dir,
            &[
                ("etc/hosts", b"127.0.0.1 base-hosts\n"),
                ("etc/version", b"v1\n"),
                ("etc/remove-me", b"deleted by the app layer\n"),
                ("var/cache/a", b"cache a\n"),
                ("var/cache/b", b"cache b\n"),
                ("usr/bin/tool", &tool),
            ],
        );
        write_tree(
            &app_dir,
            &[
                ("etc/version", b"v2\n"),
                ("etc/.wh.remove-me", b""),
                ("var/.wh.cache", b""),
                ("app/main", format!("app {seed}\n").as_bytes()),
            ],
        );
        let base = gnu_tar_layer(&base_dir, &work.join("base.tar"));
        let app = gnu_tar_layer(&app_dir, &work.join("app.tar"));
        TwoLayers { base, app, tool }
    }

    fn diff_ids(&self) -> Vec<String> {
        vec![sha(&self.base), sha(&self.app)]
    }

    /// Checks an unpacked root filesystem of this image.
    fn check_rootfs(&self, rootfs: &Path, seed: u64) {
        let read =
            |rel: &str| fs::read(rootfs.join(rel)).unwrap_or_else(|e| panic!("rootfs/{rel}: {e}"));
        assert_eq!(read("etc/hosts"), b"127.0.0.1 base-hosts\n", "lower layer");
        assert_eq!(read("etc/version"), b"v2\n", "upper layer overrides");
        assert_eq!(read("usr/bin/tool"), self.tool, "lower layer, binary");
        assert_eq!(read("app/main"), format!("app {seed}\n").as_bytes());
        assert!(
            !rootfs.join("etc/remove-me").exists(),
            "file whited out by the upper layer is still there"
        );
        assert!(
            !rootfs.join("var/cache").exists(),
            "directory whited out by the upper layer is still there"
        );
        assert!(rootfs.join("var").is_dir());
        for rel in ["etc/.wh.remove-me", "var/.wh.cache"] {
            assert!(
                !rootfs.join(rel).exists(),
                "whiteout marker {rel} leaked into the rootfs"
            );
        }
    }
}

fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("layerstore-images-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1. Real clients read what layerstore exports
// ---------------------------------------------------------------------------

#[test]
fn exported_oci_layout_works_with_skopeo_and_umoci() {
    require_tool("skopeo");
    let umoci = require_tool("umoci");
    let t = tmp();
    let img = TwoLayers::build(t.path(), 1, 300_000);
    let diff_ids = img.diff_ids();
    let archive = t.path().join("app.docker.tar");
    docker_archive(&archive, &["test/app:1"], &[&img.base, &img.app]);

    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let report = store.import_image(&archive, None).unwrap();
    assert_eq!(report.format, "docker-archive");
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].name, "test/app:1");
    assert_eq!((report.layers, report.new_layers), (2, 2));
    assert_eq!(image_diff_ids(&store, "test/app:1"), vec![diff_ids.clone()]);

    // Export through the CLI.
    let layout = t.path().join("layout");
    let exported = cli_json(
        &store_dir,
        &[
            "image",
            "export",
            "test/app:1",
            "--format",
            "oci",
            "-o",
            path_arg(&layout),
        ],
    );
    let entry = &exported["images"][0];
    assert_eq!(entry["name"], "test/app:1");
    assert_eq!(
        entry["digest_changed"], false,
        "uncompressed layers need no rewrite: {exported}"
    );
    assert_eq!(entry["stored_digest"], entry["exported_digest"]);
    let manifest_digest = entry["exported_digest"].as_str().unwrap().to_string();

    // skopeo reads it: manifest, layers and config DiffIDs.
    let oci = oci_ref(&layout, "test/app:1");
    let info = skopeo_inspect(&[&oci]);
    assert_eq!(info["Digest"], manifest_digest.as_str());
    assert_eq!(
        info["Layers"],
        json!(diff_ids),
        "blob digests of tar layers"
    );
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    let config = skopeo_inspect(&["--config", &oci]);
    assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids));
    let raw = skopeo(&["inspect", "--raw", &oci]).stdout;
    assert_eq!(sha(&raw), manifest_digest, "--raw gives the exact manifest");

    // skopeo copies it to a docker archive that layerstore imports back.
    let copied = t.path().join("copied.docker.tar");
    skopeo(&["copy", &oci, &docker_ref(&copied, Some("test/app:1"))]);
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let back = fresh.import_image(&copied, Some("again")).unwrap();
    assert_eq!(back.format, "docker-archive");
    assert_eq!(image_diff_ids(&fresh, "again"), vec![diff_ids.clone()]);
    assert_eq!(get(&fresh, &diff_ids[0]), img.base);
    assert_eq!(get(&fresh, &diff_ids[1]), img.app);

    // umoci lists and unpacks it; whiteouts are applied.
    let ls = run_ok(Command::new(&umoci).args(["ls", "--layout"]).arg(&layout));
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "test/app:1");
    let bundle = t.path().join("bundle");
    let image_arg = format!("{}:test/app:1", path_arg(&layout));
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--rootless", "--image", &image_arg])
            .arg(&bundle),
    );
    img.check_rootfs(&bundle.join("rootfs"), 1);
}

// ---------------------------------------------------------------------------
// 2. Layouts written by skopeo: gzip layers dedup, export, round trip
// ---------------------------------------------------------------------------

#[test]
fn skopeo_gzip_layout_dedups_and_exports_both_formats() {
    require_tool("skopeo");
    let t = tmp();
    let img = TwoLayers::build(t.path(), 2, 2 << 20);
    let diff_ids = img.diff_ids();
    let archive = t.path().join("src.docker.tar");
    docker_archive(&archive, &["test/gz:1"], &[&img.base, &img.app]);
    let layout = t.path().join("skopeo-layout");
    skopeo(&[
        "copy",
        &docker_ref(&archive, None),
        &oci_ref(&layout, "test/gz:1"),
    ]);
    // skopeo compressed the layers: the test only means something if so.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex(&mdigest))).unwrap())
            .unwrap();
    let gz_digests: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], MT_LAYER_GZIP, "skopeo wrote {manifest}");
            l["digest"].as_str().unwrap().to_string()
        })
        .collect();

    // The plain tars first, then the gzip layout: no tar data is stored
    // again; what is added is only what rebuilds the compressed blobs.
    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    store.put_layer(&img.base[..]).unwrap();
    store.put_layer(&img.app[..]).unwrap();
    let before = store.stats().unwrap();
    let report = store.import_image(&layout, None).unwrap();
    let after = store.stats().unwrap();
    assert_eq!(report.format, "oci");
    assert_eq!(report.images[0].name, "test/gz:1");
    assert_eq!(report.images[0].digest.to_string(), mdigest);
    assert_eq!((report.layers, report.new_layers), (2, 0));
    let extra: u64 = after.blobs.iter().map(|b| b.extra_bytes).sum();
    let blob_bytes: u64 = after.blobs.iter().map(|b| b.blob_bytes).sum();
    assert_eq!(
        after.blobs.iter().map(|b| b.count).sum::<u64>(),
        2,
        "{:?}",
        after.blobs
    );
    assert!(
        report.added_bytes <= extra + 4096 && extra <= blob_bytes,
        "gzip layers of stored tars added {} bytes; exactness data is {extra} bytes ({:?})",
        report.added_bytes,
        after.blobs
    );
    assert_eq!(after.pack_bytes - before.pack_bytes, report.added_bytes);
    assert_eq!(after.layers, 2);

    let details = store.image("test/gz:1").unwrap();
    let layers = &details.manifests[0].layers;
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l.diff_id.to_string(), diff_ids[i]);
        assert_eq!(l.blob_digest.to_string(), gz_digests[i]);
        assert_eq!(l.media_type, MT_LAYER_GZIP);
    }
    // The compressed digest resolves to the exact plain tar.
    assert_eq!(get(&store, &gz_digests[0]), img.base);

    // The same layout as a tar imports the same way.
    let layout_tar = t.path().join("layout.tar");
    gnu_tar_layer(&layout, &layout_tar);
    let tarred = Store::open(t.path().join("tarred")).unwrap();
    let r = tarred.import_image(&layout_tar, None).unwrap();
    assert_eq!(r.format, "oci");
    assert_eq!(r.images[0].digest.to_string(), mdigest);
    assert_eq!(image_diff_ids(&tarred, "test/gz:1"), vec![diff_ids.clone()]);

    // Export OCI: the original manifest and compressed blobs, byte for
    // byte, so the digest skopeo sees is unchanged.
    let out = t.path().join("export-oci");
    let rep = store
        .export_images(&["test/gz:1".to_string()], ExportFormat::Oci, &out)
        .unwrap();
    let e = &rep.images[0];
    assert!(!e.digest_changed, "{e:?}");
    assert_eq!(e.exported_digest.to_string(), mdigest);
    assert_eq!(e.stored_digest.to_string(), mdigest);
    assert_eq!(e.note, None, "{e:?}");
    for entry in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let exported = out.join("blobs/sha256").join(entry.file_name());
        assert_same_bytes(
            &fs::read(&exported).unwrap_or_default(),
            &fs::read(entry.path()).unwrap(),
            &format!("exported blob {:?}", entry.file_name()),
        );
    }
    let oci = oci_ref(&out, "test/gz:1");
    let info = skopeo_inspect(&[&oci]);
    assert_eq!(info["Digest"], mdigest);
    assert_eq!(info["Layers"], json!(gz_digests));
    let cfg = skopeo_inspect(&["--config", &oci]);
    assert_eq!(cfg["rootfs"]["diff_ids"], json!(diff_ids));

    // The CLI says the same on stderr.
    let cli_out = cli_run(
        &store_dir,
        &[
            "image",
            "export",
            "test/gz:1",
            "-o",
            path_arg(&t.path().join("cli-oci")),
        ],
    );
    assert!(cli_out.status.success());
    let stderr = String::from_utf8_lossy(&cli_out.stderr);
    assert!(!stderr.contains("digest changed"), "{stderr}");

    // Export docker-archive; a fresh store gets identical layers back.
    let darchive = t.path().join("export.docker.tar");
    let rep = store
        .export_images(
            &["test/gz:1".to_string()],
            ExportFormat::DockerArchive,
            &darchive,
        )
        .unwrap();
    assert_eq!(rep.images.len(), 1);
    let dinfo = skopeo_inspect(&[&docker_ref(&darchive, None)]);
    assert_eq!(dinfo["Layers"], json!(diff_ids));
    let fresh = Store::open(t.path().join("fresh")).unwrap();
    let back = fresh.import_image(&darchive, None).unwrap();
    assert_eq!(back.images[0].name, "test/gz:1");
    assert_eq!(image_diff_ids(&fresh, "test/gz:1"), vec![diff_ids.clone()]);
    assert_eq!(get(&fresh, &diff_ids[0]), img.base);
    assert_eq!(get(&fresh, &diff_ids[1]), img.app);
}

// ---------------------------------------------------------------------------
// 3. Two images sharing a base layer
// ---------------------------------------------------------------------------

#[test]
fn images_sharing_a_base_layer_store_it_once() {
    let t = tmp();
    // 6 MiB of incompressible files in the base.
    let mut rng = Rng::new(3);
    let big: Vec<Vec<u8>> = (0..6).map(|_| rng.bytes(1 << 20)).collect();
    let base_dir = t.path().join("base");
    let files: Vec<(String, &[u8])> = big
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("usr/lib/lib{i}.so"), b.as_slice()))
        .collect();
    let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    write_tree(&base_dir, &files);
    let base = gnu_tar_layer(&base_dir, &t.path().join("base.tar"));
    let mut apps = Vec::new();
    for name in ["one", "two"] {
        let dir = t.path().join(name);
        write_tree(
            &dir,
            &[
                ("app/main", format!("app {name}\n").as_bytes()),
                ("app/data", &rng.bytes(20_000)),
            ],
        );
        apps.push(gnu_tar_layer(&dir, &t.path().join(format!("{name}.tar"))));
    }
    let a1 = t.path().join("one.docker.tar");
    let a2 = t.path().join("two.docker.tar");
    docker_archive(&a1, &["shared/one:1"], &[&base, &apps[0]]);
    docker_archive(&a2, &["shared/two:1"], &[&base, &apps[1]]);

    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let s0 = store.stats().unwrap();
    let first = store.import_image(&a1, None).unwrap();
    let s1 = store.stats().unwrap();
    assert_eq!(first.new_layers, 2);
    assert!(
        first.added_bytes > 6 << 20,
        "6 MiB of random data cannot compress to {} bytes",
        first.added_bytes
    );
    assert_eq!(s1.pack_bytes - s0.pack_bytes, first.added_bytes);

    // Second import through the CLI.
    let second = cli_json(&store_dir, &["image", "import", path_arg(&a2)]);
    let s2 = store.stats().unwrap();
    assert_eq!(second["layers"], 2);
    assert_eq!(second["new_layers"], 1, "{second}");
    let grew = s2.pack_bytes - s1.pack_bytes;
    assert!(
        grew * 5 < first.added_bytes,
        "second image grew packs by {grew} bytes; the first added {}",
        first.added_bytes
    );
    assert!(second["added_bytes"].as_u64().unwrap() * 5 < first.added_bytes);
    assert_eq!(s2.layers, 3);
    assert_eq!(
        s2.logical_bytes,
        (base.len() + apps[0].len() + apps[1].len()) as u64
    );

    for (name, app) in [("shared/one:1", &apps[0]), ("shared/two:1", &apps[1])] {
        let inspect = cli_json(&store_dir, &["image", "inspect", name]);
        let layers = &inspect["manifests"][0]["layers"];
        assert_eq!(layers[0]["diff_id"], sha(&base));
        assert!(
            layers[0]["shared_with"].as_u64().unwrap() >= 1,
            "base layer of {name} not shared: {inspect}"
        );
        assert_eq!(layers[0]["size"], base.len());
        assert_eq!(layers[1]["diff_id"], sha(app));
        assert_eq!(layers[1]["shared_with"], 0, "{inspect}");
        let text = cli_text(&store_dir, &["image", "inspect", name]);
        assert!(text.contains("shared with 1 other image(s)"), "{text}");
    }
    assert_eq!(get(&store, &sha(&base)), base);

    // Both in one OCI layout: the base blob is written once, and skopeo
    // reads each image by name.
    let out = t.path().join("both");
    let rep = store
        .export_images(
            &["shared/one:1".into(), "shared/two:1".into()],
            ExportFormat::Oci,
            &out,
        )
        .unwrap();
    assert_eq!(rep.images.len(), 2);
    let blobs = fs::read_dir(out.join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 7, "2 manifests, 2 configs, 3 distinct layers");
    require_tool("skopeo");
    for (name, app) in [("shared/one:1", &apps[0]), ("shared/two:1", &apps[1])] {
        let info = skopeo_inspect(&[&oci_ref(&out, name)]);
        assert_eq!(info["Layers"], json!([sha(&base), sha(app)]));
    }
}

// ---------------------------------------------------------------------------
// 4. Names and layer lifetimes
// ---------------------------------------------------------------------------

#[test]
fn tag_rm_and_layer_lifetimes() {
    let t = tmp();
    let mut rng = Rng::new(4);
    let base = tar_layer(&[("lib/base.bin", &rng.bytes(300_000))]);
    let app_x = tar_layer(&[("app/x", &rng.bytes(50_000))]);
    let app_y = tar_layer(&[("app/y", &rng.bytes(50_000))]);
    let (db, dx, dy) = (sha(&base), sha(&app_x), sha(&app_y));
    let ax = t.path().join("x.tar");
    let ay = t.path().join("y.tar");
    docker_archive(&ax, &["life/x:1"], &[&base, &app_x]);
    docker_archive(&ay, &["life/y:1"], &[&base, &app_y]);

    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    // The base is also put directly (pinned); app_y too, to unpin it later.
    store.put_layer(&base[..]).unwrap();
    store.import_image(&ax, None).unwrap();
    assert_eq!(layer_set(&store), [db.clone(), dx.clone()].into());

    // tag: a second name for the same manifest.
    cli_ok(&store_dir, &["image", "tag", "life/x:1", "life/x:stable"]);
    let names: Vec<(String, String)> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.digest.to_string()))
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(names[0].1, names[1].1, "{names:?}");
    let ls = cli_json(&store_dir, &["image", "ls"]);
    assert_eq!(
        ls.as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].clone())
            .collect::<Vec<_>>(),
        vec![json!("life/x:1"), json!("life/x:stable")]
    );
    let stderr = cli_err(&store_dir, &["image", "tag", "no/such:1", "other"]);
    assert!(
        stderr.contains("no/such:1") && stderr.contains("not found"),
        "{stderr}"
    );
    let stderr = cli_err(&store_dir, &["image", "tag", "life/x:1", "has space"]);
    assert!(stderr.contains("not a valid image name"), "{stderr}");

    // rm one name: the other keeps working.
    assert_eq!(
        cli_text(&store_dir, &["image", "rm", "life/x:1"]).trim(),
        "life/x:1"
    );
    assert!(store.image("life/x:1").unwrap_err().is_not_found());
    assert_eq!(
        image_diff_ids(&store, "life/x:stable"),
        vec![vec![db.clone(), dx.clone()]]
    );
    assert_eq!(layer_set(&store), [db.clone(), dx.clone()].into());
    let out = t.path().join("x-stable.tar");
    store
        .export_images(&["life/x:stable".into()], ExportFormat::DockerArchive, &out)
        .unwrap();
    assert_eq!(get(&store, &dx), app_x);
    let stderr = cli_err(&store_dir, &["image", "rm", "life/x:1"]);
    assert!(stderr.contains("not found"), "{stderr}");

    // rm the last name: the app layer goes, the pinned base stays exact.
    cli_ok(&store_dir, &["image", "rm", "life/x:stable"]);
    assert!(store.images().unwrap().is_empty());
    assert_eq!(layer_set(&store), [db.clone()].into());
    assert!(
        store
            .get_layer(&dx.parse().unwrap(), Vec::new())
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(get(&store, &db), base);

    // remove_layer of a layer an image uses: unpinned, but kept for it.
    store.put_layer(&app_y[..]).unwrap();
    store.import_image(&ay, None).unwrap();
    store.remove_layer(&dy.parse().unwrap()).unwrap();
    store.remove_layer(&db.parse().unwrap()).unwrap();
    let listed: Vec<(String, bool)> = store
        .layers()
        .unwrap()
        .into_iter()
        .map(|l| (l.digest.to_string(), l.pinned))
        .collect();
    assert!(listed.contains(&(db.clone(), false)), "{listed:?}");
    assert!(listed.contains(&(dy.clone(), false)), "{listed:?}");
    assert_eq!(get(&store, &dy), app_y);
    assert_eq!(get(&store, &db), base);
    let out = t.path().join("y.oci");
    let rep = store
        .export_images(&["life/y:1".into()], ExportFormat::Oci, &out)
        .unwrap();
    assert!(!rep.images[0].digest_changed);
    assert_eq!(
        fs::read(out.join("blobs/sha256").join(hex(&dy))).unwrap(),
        app_y
    );
    assert_eq!(
        fs::read(out.join("blobs/sha256").join(hex(&db))).unwrap(),
        base
    );

    // With the last name gone, the unpinned layers go too.
    store.remove_image("life/y:1").unwrap();
    assert!(layer_set(&store).is_empty(), "{:?}", layer_set(&store));
    assert!(store.remove_image("life/y:1").unwrap_err().is_not_found());

    // Chunks are still in packs (no gc ran): importing again brings the
    // layers back, exact.
    let again = store.import_image(&ax, Some("life/x:again")).unwrap();
    assert_eq!(again.new_layers, 2);
    assert_eq!(get(&store, &dx), app_x);
    assert_eq!(get(&store, &db), base);

    // Export errors: an existing path, an unknown name; nothing left behind.
    let taken = t.path().join("taken");
    fs::write(&taken, b"keep me").unwrap();
    let stderr = cli_err(
        &store_dir,
        &["image", "export", "life/x:again", "-o", path_arg(&taken)],
    );
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(fs::read(&taken).unwrap(), b"keep me");
    let stderr = cli_err(
        &store_dir,
        &[
            "image",
            "export",
            "no/such:1",
            "-o",
            path_arg(&t.path().join("none")),
        ],
    );
    assert!(stderr.contains("\"no/such:1\" not found"), "{stderr}");
    assert!(!t.path().join("none").exists());
    let strays: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

// ---------------------------------------------------------------------------
// 5. An OCI index with two platforms
// ---------------------------------------------------------------------------

#[test]
fn multi_platform_index_round_trips_unchanged() {
    require_tool("skopeo");
    let t = tmp();
    let mut rng = Rng::new(5);
    let base = tar_layer(&[("lib/common.bin", &rng.bytes(200_000))]);
    let amd = tar_layer(&[("bin/app", b"amd64 build\n")]);
    let arm = tar_layer(&[("bin/app", b"arm64 build\n")]);
    let dir = t.path().join("src-layout");
    let layout = Layout::new(&dir);
    let mut m_amd = layout.image("amd64", &[&base, &amd]);
    let mut m_arm = layout.image("arm64", &[&base, &arm]);
    m_amd["platform"] = json!({"architecture": "amd64", "os": "linux"});
    m_arm["platform"] = json!({"architecture": "arm64", "os": "linux", "variant": "v8"});
    let index_bytes = index_json(&[m_amd.clone(), m_arm.clone()]);
    let index_desc = layout.blob(MT_INDEX, &index_bytes);
    layout.index(&[named(index_desc.clone(), "multi/app:1")]);
    let index_digest = sha(&index_bytes);

    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let report = store.import_image(&dir, None).unwrap();
    assert_eq!(report.images.len(), 1);
    let imported = &report.images[0];
    assert_eq!(imported.name, "multi/app:1");
    assert_eq!(imported.digest.to_string(), index_digest);
    let manifests: Vec<String> = imported.manifests.iter().map(|d| d.to_string()).collect();
    assert_eq!(
        manifests,
        vec![m_amd["digest"].clone(), m_arm["digest"].clone()]
    );
    assert_eq!(report.layers, 3, "the shared base is read once");
    assert_eq!(report.new_layers, 3);

    let ls = cli_json(&store_dir, &["image", "ls"]);
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["digest"], index_digest.as_str());
    assert_eq!(ls[0]["media_type"], MT_INDEX);
    let mut platforms: Vec<String> = serde_json::from_value(ls[0]["platforms"].clone()).unwrap();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(ls[0]["layers"], 4);
    let inspect = cli_json(&store_dir, &["image", "inspect", "multi/app:1"]);
    let ms = inspect["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2, "{inspect}");
    let by_platform = |p: &str| {
        ms.iter()
            .find(|m| m["platform"] == p)
            .unwrap_or_else(|| panic!("no {p} manifest: {inspect}"))
    };
    let (i_amd, i_arm) = (by_platform("linux/amd64"), by_platform("linux/arm64/v8"));
    assert_eq!(i_amd["digest"], m_amd["digest"]);
    assert_eq!(i_arm["digest"], m_arm["digest"]);
    assert_eq!(i_amd["layers"][0]["diff_id"], sha(&base));
    assert_eq!(i_amd["layers"][1]["diff_id"], sha(&amd));
    assert_eq!(i_arm["layers"][0]["diff_id"], sha(&base));
    assert_eq!(i_arm["layers"][1]["diff_id"], sha(&arm));
    assert_eq!(
        i_arm["layers"][0]["shared_with"], 0,
        "same image, not another"
    );

    // Export OCI: index, manifests and configs byte for byte.
    let out = t.path().join("export");
    let rep = store
        .export_images(&["multi/app:1".into()], ExportFormat::Oci, &out)
        .unwrap();
    let e = &rep.images[0];
    assert!(!e.digest_changed, "{e:?}");
    assert_eq!(e.exported_digest.to_string(), index_digest);
    let top: Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(top["manifests"][0]["digest"], index_digest.as_str());
    assert_eq!(top["manifests"][0]["mediaType"], MT_INDEX);
    assert_eq!(top["manifests"][0]["size"], index_bytes.len());
    assert_eq!(top["manifests"][0]["annotations"][REF_NAME], "multi/app:1");
    let mut src_blobs: Vec<_> = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut out_blobs: Vec<_> = fs::read_dir(out.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    src_blobs.sort();
    out_blobs.sort();
    assert_eq!(out_blobs, src_blobs, "the same set of blobs");
    for name in &src_blobs {
        let a = fs::read(dir.join("blobs/sha256").join(name)).unwrap();
        let b = fs::read(out.join("blobs/sha256").join(name)).unwrap();
        assert!(a == b, "blob {name:?} differs after export");
    }

    // skopeo reads the index and picks each platform.
    let oci = oci_ref(&out, "multi/app:1");
    let raw = skopeo(&["inspect", "--raw", &oci]).stdout;
    assert_eq!(raw, index_bytes);
    let platform_layers = |overrides: &[&str]| -> Value {
        let mut args = overrides.to_vec();
        args.extend(["inspect", oci.as_str()]);
        let out = skopeo(&args);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Layers"].clone()
    };
    assert_eq!(
        platform_layers(&["--override-os", "linux", "--override-arch", "amd64"]),
        json!([sha(&base), sha(&amd)])
    );
    let arm_flags = ["--override-arch", "arm64", "--override-variant", "v8"];
    assert_eq!(
        platform_layers(&[&["--override-os", "linux"][..], &arm_flags].concat()),
        json!([sha(&base), sha(&arm)])
    );

    // A docker archive holds one platform, and says which.
    let darchive = t.path().join("multi.docker.tar");
    let rep = store
        .export_images(
            &["multi/app:1".into()],
            ExportFormat::DockerArchive,
            &darchive,
        )
        .unwrap();
    let note = rep.images[0].note.clone().unwrap_or_default();
    assert!(note.contains("wrote linux/amd64 of 2 manifests"), "{note}");
    assert_eq!(
        rep.images[0].exported_digest.to_string(),
        m_amd["digest"].as_str().unwrap()
    );
}

#[test]
fn index_manifests_keep_their_order() {
    let t = tmp();
    let layers: Vec<Vec<u8>> = ["arm64", "ppc64le", "s390x"]
        .iter()
        .map(|a| tar_layer(&[("bin/app", format!("{a} build\n").as_bytes())]))
        .collect();
    let dir = t.path().join("layout");
    let layout = Layout::new(&dir);
    let mut entries = Vec::new();
    for (arch, layer) in ["arm64", "ppc64le", "s390x"].iter().zip(&layers) {
        let mut m = layout.image(arch, &[layer]);
        m["platform"] = json!({"architecture": arch, "os": "linux"});
        entries.push(m);
    }
    let index = layout.blob(MT_INDEX, &index_json(&entries));
    layout.index(&[named(index, "order:1")]);
    let store = Store::open(t.path().join("store")).unwrap();
    let report = store.import_image(&dir, None).unwrap();
    let want: Vec<Value> = entries.iter().map(|e| e["digest"].clone()).collect();
    let imported: Vec<Value> = report.images[0]
        .manifests
        .iter()
        .map(|d| json!(d.to_string()))
        .collect();
    assert_eq!(imported, want, "import report order");
    let details: Vec<Value> = store
        .image("order:1")
        .unwrap()
        .manifests
        .iter()
        .map(|m| json!(m.digest.to_string()))
        .collect();
    assert_eq!(details, want, "inspect lists manifests out of index order");
    let platforms = store.images().unwrap()[0].platforms.clone();
    assert_eq!(platforms, ["linux/arm64", "linux/ppc64le", "linux/s390x"]);
    // No linux/amd64 manifest: a docker archive should hold the first one.
    let out = t.path().join("order.docker.tar");
    let rep = store
        .export_images(&["order:1".into()], ExportFormat::DockerArchive, &out)
        .unwrap();
    assert_eq!(json!(rep.images[0].exported_digest.to_string()), want[0]);
}

// ---------------------------------------------------------------------------
// 6. Bad input leaves no trace
// ---------------------------------------------------------------------------

/// Layers and a store holding one good image, for the bad-input cases.
struct Bad {
    t: TempDir,
    store_dir: PathBuf,
    store: Store,
    /// Layers the store already holds (from the good image).
    base: Vec<u8>,
    app: Vec<u8>,
    /// A 1 MiB layer the store does not hold yet.
    fresh: Vec<u8>,
}

impl Bad {
    fn new() -> Bad {
        let t = tmp();
        let mut rng = Rng::new(6);
        let base = tar_layer(&[("lib/base.bin", &rng.bytes(200_000))]);
        let app = tar_layer(&[("app/main", b"good app\n")]);
        let fresh = tar_layer(&[("data/fresh.bin", &rng.bytes(1 << 20))]);
        let store_dir = t.path().join("store");
        let store = Store::open(&store_dir).unwrap();
        let good = t.path().join("good.tar");
        docker_archive(&good, &["good/app:1"], &[&base, &app]);
        let r = store.import_image(&good, None).unwrap();
        assert_eq!(r.new_layers, 2);
        Bad {
            t,
            store_dir,
            store,
            base,
            app,
            fresh,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.t.path().join(name)
    }

    /// A valid layout of `layers`, named bad/app:1, in a new directory.
    fn layout(&self, name: &str, layers: &[&[u8]]) -> Layout {
        simple_layout(&self.path(name), "bad/app:1", layers)
    }

    /// Imports `input` with the library and with the CLI: both must fail
    /// with a message containing every one of `expect`, and the store must
    /// be exactly as before.
    fn rejects(&self, input: &Path, expect: &[&str]) {
        let before = snapshot(self.store.path());
        let err = match self.store.import_image(input, None) {
            Ok(r) => panic!("importing {} succeeded: {r:?}", input.display()),
            Err(e) => e.to_string(),
        };
        for want in expect {
            assert!(err.contains(want), "library error lacks {want:?}: {err}");
        }
        assert_eq!(
            snapshot(self.store.path()),
            before,
            "library import left a trace ({err})"
        );
        let stderr = cli_err(&self.store_dir, &["image", "import", path_arg(input)]);
        for want in expect {
            assert!(stderr.contains(want), "CLI stderr lacks {want:?}: {stderr}");
        }
        assert_eq!(
            snapshot(self.store.path()),
            before,
            "CLI import left a trace ({stderr})"
        );
        // The store still works.
        assert_eq!(get(&self.store, &sha(&self.base)), self.base);
        assert_eq!(
            image_diff_ids(&self.store, "good/app:1"),
            vec![vec![sha(&self.base), sha(&self.app)]]
        );
    }

    /// Reads a layout's only manifest; returns (its descriptor, its JSON).
    fn manifest(&self, layout: &Layout) -> (Value, Value) {
        let index: Value =
            serde_json::from_slice(&fs::read(layout.dir.join("index.json")).unwrap()).unwrap();
        let d = index["manifests"][0].clone();
        let m = serde_json::from_slice(
            &fs::read(layout.blob_path(d["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        (d, m)
    }

    /// Writes `manifest` as a blob and points index.json (name bad/app:1) at it.
    fn set_manifest(&self, layout: &Layout, manifest: &Value) {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let d = layout.blob(MT_MANIFEST, &bytes);
        layout.index(&[named(d, "bad/app:1")]);
    }
}

/// Flips the first data byte of the first file of a tar (a valid tar of
/// the same size, with another digest).
fn tamper(tar: &[u8]) -> Vec<u8> {
    let mut out = tar.to_vec();
    out[512] ^= 0xff;
    out
}

#[test]
fn rejects_manifest_naming_a_missing_blob() {
    let b = Bad::new();
    // Missing layer.
    let l = b.layout("missing-layer", &[&b.base, &b.fresh]);
    fs::remove_file(l.blob_path(&sha(&b.fresh))).unwrap();
    b.rejects(
        &l.dir,
        &[&format!("blobs/sha256/{} is missing", hex(&sha(&b.fresh)))],
    );
    // Missing config.
    let l = b.layout("missing-config", &[&b.base]);
    let (_, m) = b.manifest(&l);
    let config = m["config"]["digest"].as_str().unwrap();
    fs::remove_file(l.blob_path(config)).unwrap();
    b.rejects(
        &l.dir,
        &[&format!("blobs/sha256/{} is missing", hex(config))],
    );
    // Missing manifest.
    let l = b.layout("missing-manifest", &[&b.base]);
    let (d, _) = b.manifest(&l);
    let digest = d["digest"].as_str().unwrap();
    fs::remove_file(l.blob_path(digest)).unwrap();
    b.rejects(
        &l.dir,
        &[&format!("blobs/sha256/{} is missing", hex(digest))],
    );
    // docker-archive: a layer path not in the archive.
    let a = b.path("missing.docker.tar");
    let config = config_json("amd64", &[sha(&b.base), sha(&b.fresh)]);
    docker_archive_with(
        &a,
        &["bad/app:1"],
        &config,
        &[&b.base, &b.fresh],
        Some(vec![
            format!("{}/layer.tar", hex(&sha(&b.base))),
            "nothere/layer.tar".into(),
        ]),
    );
    b.rejects(&a, &["nothere/layer.tar is missing"]);
}

#[test]
fn rejects_blob_whose_bytes_do_not_match_its_digest() {
    let b = Bad::new();
    // A layer (same size, one byte changed).
    let l = b.layout("layer", &[&b.base, &b.app]);
    fs::write(l.blob_path(&sha(&b.app)), tamper(&b.app)).unwrap();
    b.rejects(&l.dir, &["hashes to", &sha(&b.app)]);
    // A gzip layer swapped for another gzip of the same tar and the same
    // size (only the header's MTIME differs): the DiffID still matches, so
    // only the blob digest check can catch it.
    let l = Layout::new(&b.path("gzip-swapped"));
    let gz = gzip(&b.app);
    let mut other = gz.clone();
    other[4] ^= 0x01;
    let config = l.blob(MT_CONFIG, &config_json("amd64", &[sha(&b.app)]));
    let layer = l.blob(MT_LAYER_GZIP, &gz);
    let m = l.blob(MT_MANIFEST, &manifest_json(&config, &[layer]));
    l.index(&[named(m, "bad/app:1")]);
    fs::write(l.blob_path(&sha(&gz)), &other).unwrap();
    b.rejects(&l.dir, &["hashes to", &sha(&gz)]);
    // The untouched layout imports (the gzip itself is fine).
    fs::write(l.blob_path(&sha(&gz)), &gz).unwrap();
    let r = b.store.import_image(&l.dir, Some("gzip/ok:1")).unwrap();
    assert_eq!(r.new_layers, 0);
    assert_eq!(
        b.store.image("gzip/ok:1").unwrap().manifests[0].layers[0]
            .blob_digest
            .to_string(),
        sha(&gz)
    );
    // The config.
    let l = b.layout("config", &[&b.base]);
    let (_, m) = b.manifest(&l);
    let config = m["config"]["digest"].as_str().unwrap();
    let mut bytes = fs::read(l.blob_path(config)).unwrap();
    let pos = bytes.iter().position(|&c| c == b'a').unwrap();
    bytes[pos] = b'b';
    fs::write(l.blob_path(config), bytes).unwrap();
    b.rejects(&l.dir, &["hashes to", config]);
    // The manifest.
    let l = b.layout("manifest", &[&b.base]);
    let (d, _) = b.manifest(&l);
    let digest = d["digest"].as_str().unwrap();
    let mut bytes = fs::read(l.blob_path(digest)).unwrap();
    let pos = bytes.len() - 1;
    bytes[pos] = b' ';
    fs::write(l.blob_path(digest), bytes).unwrap();
    b.rejects(&l.dir, &["hashes to", digest]);
}

#[test]
fn rejects_descriptor_size_mismatch() {
    let b = Bad::new();
    // Layer descriptor too large by one.
    let l = b.layout("layer", &[&b.base, &b.app]);
    let (_, mut m) = b.manifest(&l);
    m["layers"][1]["size"] = json!(b.app.len() + 1);
    b.set_manifest(&l, &m);
    b.rejects(
        &l.dir,
        &[&format!(
            "blob is {} bytes but its descriptor says {}",
            b.app.len(),
            b.app.len() + 1
        )],
    );
    // Config descriptor too small by one.
    let l = b.layout("config", &[&b.base]);
    let (_, mut m) = b.manifest(&l);
    let size = m["config"]["size"].as_u64().unwrap();
    m["config"]["size"] = json!(size - 1);
    b.set_manifest(&l, &m);
    b.rejects(&l.dir, &["descriptor says"]);
    // index.json's manifest descriptor.
    let l = b.layout("manifest", &[&b.base]);
    let (mut d, _) = b.manifest(&l);
    d["size"] = json!(d["size"].as_u64().unwrap() + 10);
    l.index(&[d]);
    b.rejects(&l.dir, &["descriptor says"]);
}

#[test]
fn rejects_layer_whose_diff_id_does_not_match_the_config() {
    let b = Bad::new();
    let wrong = sha(b"not this layer");
    // OCI: the second DiffID is wrong.
    let l = Layout::new(&b.path("oci-diffid"));
    let config = l.blob(
        MT_CONFIG,
        &config_json("amd64", &[sha(&b.base), wrong.clone()]),
    );
    let layers = [l.blob(MT_LAYER, &b.base), l.blob(MT_LAYER, &b.fresh)];
    let m = l.blob(MT_MANIFEST, &manifest_json(&config, &layers));
    l.index(&[named(m, "bad/app:1")]);
    b.rejects(&l.dir, &["DiffID", &sha(&b.fresh), &wrong]);
    // OCI: the config lists one diff_id for two layers.
    let l = Layout::new(&b.path("oci-count"));
    let config = l.blob(MT_CONFIG, &config_json("amd64", &[sha(&b.base)]));
    let layers = [l.blob(MT_LAYER, &b.base), l.blob(MT_LAYER, &b.fresh)];
    let m = l.blob(MT_MANIFEST, &manifest_json(&config, &layers));
    l.index(&[named(m, "bad/app:1")]);
    b.rejects(&l.dir, &["2 layers", "1 diff_ids"]);
    // docker-archive: wrong DiffID, then a count mismatch.
    let a = b.path("docker-diffid.tar");
    let config = config_json("amd64", &[sha(&b.fresh), wrong.clone()]);
    docker_archive_with(&a, &["bad/app:1"], &config, &[&b.fresh, &b.app], None);
    b.rejects(&a, &["DiffID", &sha(&b.app), &wrong]);
    let a = b.path("docker-count.tar");
    let config = config_json("amd64", &[sha(&b.fresh), sha(&b.app), wrong]);
    docker_archive_with(&a, &["bad/app:1"], &config, &[&b.fresh, &b.app], None);
    b.rejects(&a, &["3 diff_ids", "2 layers"]);
}

#[test]
fn rejects_docker_archive_paths_that_escape() {
    let b = Bad::new();
    let config = config_json("amd64", &[sha(&b.base)]);
    for (file, path, expect) in [
        ("dotdot.tar", "../../etc/passwd", "\"..\""),
        ("dotdot-mid.tar", "layers/../../../etc/passwd", "\"..\""),
        ("absolute.tar", "/etc/passwd", "absolute path"),
    ] {
        let a = b.path(file);
        docker_archive_with(
            &a,
            &["bad/app:1"],
            &config,
            &[&b.base],
            Some(vec![path.into()]),
        );
        b.rejects(&a, &[expect, path]);
    }
    // The config path too.
    let a = b.path("config-escape.tar");
    let manifest = serde_json::to_vec(&json!([{
        "Config": "../config.json", "RepoTags": ["bad/app:1"], "Layers": []
    }]))
    .unwrap();
    write_tar(&a, &[Entry::File("manifest.json", &manifest)]);
    b.rejects(&a, &["\"..\"", "../config.json"]);
    // A layer.tar that is a symlink out of the archive.
    let a = b.path("symlink-escape.tar");
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{}.json", hex(&sha(&config))),
        "RepoTags": ["bad/app:1"],
        "Layers": ["abc/layer.tar"],
    }]))
    .unwrap();
    let cfg_name = format!("{}.json", hex(&sha(&config)));
    write_tar(
        &a,
        &[
            Entry::File(&cfg_name, &config),
            Entry::Symlink("abc/layer.tar", "../../../etc/passwd"),
            Entry::File("manifest.json", &manifest),
        ],
    );
    b.rejects(&a, &["outside the archive"]);
    // A path that appears twice is ambiguous.
    let a = b.path("duplicate.tar");
    let layer_path = format!("{}/layer.tar", hex(&sha(&b.base)));
    let manifest = serde_json::to_vec(&json!([{
        "Config": cfg_name, "RepoTags": ["bad/app:1"], "Layers": [layer_path],
    }]))
    .unwrap();
    write_tar(
        &a,
        &[
            Entry::File(&cfg_name, &config),
            Entry::File(&layer_path, &b.base),
            Entry::File(&layer_path, &b.fresh),
            Entry::File("manifest.json", &manifest),
        ],
    );
    b.rejects(&a, &["appears more than once"]);
}

#[test]
fn rejects_layout_blob_symlinked_outside_the_layout() {
    let b = Bad::new();
    let elsewhere = tmp();
    // The target holds exactly the right bytes: only the symlink is wrong.
    let l = b.layout("symlink", &[&b.base, &b.fresh]);
    let blob = l.blob_path(&sha(&b.fresh));
    let outside = elsewhere.path().join("fresh.tar");
    fs::rename(&blob, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &blob).unwrap();
    b.rejects(&l.dir, &["outside the layout", hex(&sha(&b.fresh))]);
    // A relative symlink climbing out, to a config.
    let l = b.layout("symlink-config", &[&b.base]);
    let (_, m) = b.manifest(&l);
    let config = m["config"]["digest"].as_str().unwrap();
    let target = elsewhere.path().join("config.json");
    fs::rename(l.blob_path(config), &target).unwrap();
    // blobs/sha256/<hex> -> ../../../..(enough to reach /)/tmp/.../config.json
    let rel = PathBuf::from("../".repeat(40)).join(target.strip_prefix("/").unwrap());
    std::os::unix::fs::symlink(&rel, l.blob_path(config)).unwrap();
    assert_eq!(
        fs::read(l.blob_path(config)).unwrap(),
        fs::read(&target).unwrap()
    );
    b.rejects(&l.dir, &["outside the layout"]);
    // The whole blobs/sha256 directory is a symlink out of the layout.
    let l = b.layout("symlink-dir", &[&b.base]);
    let blobs = l.dir.join("blobs/sha256");
    let moved = elsewhere.path().join("sha256");
    fs::rename(&blobs, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &blobs).unwrap();
    b.rejects(&l.dir, &["outside the layout"]);
}

#[test]
fn rejects_malformed_and_oversized_json() {
    let b = Bad::new();
    // Truncated index.json.
    let l = b.layout("truncated", &[&b.base]);
    let full = fs::read(l.dir.join("index.json")).unwrap();
    l.raw_index(&full[..full.len() / 2]);
    b.rejects(&l.dir, &["index.json", "malformed JSON"]);
    // Truncated manifest.json in a docker archive.
    let a = b.path("truncated.docker.tar");
    write_tar(
        &a,
        &[Entry::File(
            "manifest.json",
            br#"[{"Config":"x.json","Layers":["#,
        )],
    );
    b.rejects(&a, &["manifest.json", "malformed JSON"]);

    // A config over 4 MiB with a correct digest and size.
    let l = Layout::new(&b.path("big-config"));
    let mut cfg: Value = serde_json::from_slice(&config_json("amd64", &[sha(&b.fresh)])).unwrap();
    cfg["padding"] = json!("x".repeat((4 << 20) + 100));
    let config = l.blob(MT_CONFIG, &serde_json::to_vec(&cfg).unwrap());
    let layer = l.blob(MT_LAYER, &b.fresh);
    let m = l.blob(MT_MANIFEST, &manifest_json(&config, &[layer]));
    l.index(&[named(m, "bad/app:1")]);
    b.rejects(&l.dir, &["4194304-byte limit"]);
    // An index.json over 4 MiB.
    let l = b.layout("big-index", &[&b.base]);
    let mut idx: Value =
        serde_json::from_slice(&fs::read(l.dir.join("index.json")).unwrap()).unwrap();
    idx["annotations"] = json!({"pad": "y".repeat(5 << 20)});
    l.raw_index(&serde_json::to_vec(&idx).unwrap());
    b.rejects(&l.dir, &["4194304-byte limit"]);

    // 10000 levels of nesting where a document is parsed: the whole of
    // index.json, a manifest blob, a config's rootfs, index.json's list.
    let deep = |prefix: &str, suffix: &str| {
        let mut s = prefix.to_string();
        s.push_str(&"[".repeat(10_000));
        s.push_str(&"]".repeat(10_000));
        s.push_str(suffix);
        s.into_bytes()
    };
    let l = b.layout("deep-index", &[&b.base]);
    l.raw_index(&deep("", ""));
    b.rejects(&l.dir, &["index.json", "nests deeper than"]);
    let l = b.layout("deep-index-list", &[&b.base]);
    l.raw_index(&deep(r#"{"schemaVersion":2,"manifests":"#, "}"));
    b.rejects(&l.dir, &["index.json", "nests deeper than"]);
    let l = b.layout("deep-manifest", &[&b.base]);
    let d = l.blob(MT_MANIFEST, &deep("", ""));
    l.index(&[named(d, "bad/app:1")]);
    b.rejects(&l.dir, &["nests deeper than"]);
    let l = Layout::new(&b.path("deep-config"));
    let config = l.blob(MT_CONFIG, &deep(r#"{"rootfs":"#, "}"));
    let m = l.blob(MT_MANIFEST, &manifest_json(&config, &[]));
    l.index(&[named(m, "bad/app:1")]);
    b.rejects(&l.dir, &["nests deeper than"]);
    // Without a media type the kind is sniffed from the JSON: still refused.
    let l = b.layout("deep-untyped", &[&b.base]);
    let bytes = deep(r#"{"schemaVersion":2,"x":"#, "}");
    l.blob(MT_MANIFEST, &bytes);
    l.index(&[named(
        json!({"digest": sha(&bytes), "size": bytes.len()}),
        "bad/app:1",
    )]);
    b.rejects(&l.dir, &["not an image manifest or index"]);
}

/// 10000 levels of nesting in a field layerstore does not model.
fn deep_field(doc: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(doc).unwrap();
    v["x-deep"] = json!("@DEEP@");
    let text = serde_json::to_string(&v).unwrap();
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    text.replace("\"@DEEP@\"", &nested).into_bytes()
}

#[test]
fn rejects_deep_nesting_in_unmodelled_fields() {
    let mut accepted = Vec::new();
    let mut check = |what: &str, build: &dyn Fn(&Bad) -> PathBuf| {
        // A fresh store per case, so an accepted case cannot hide another.
        let b = Bad::new();
        let input = build(&b);
        let before = snapshot(b.store.path());
        match b.store.import_image(&input, None) {
            Ok(_) => accepted.push(what.to_string()),
            Err(_) => assert_eq!(snapshot(b.store.path()), before, "{what} left a trace"),
        }
    };
    check("index.json", &|b| {
        let l = b.layout("deep-index-field", &[&b.base]);
        let index = fs::read(l.dir.join("index.json")).unwrap();
        l.raw_index(&deep_field(&index));
        l.dir
    });
    check("manifest blob", &|b| {
        let l = b.layout("deep-manifest-field", &[&b.base]);
        let (_, m) = b.manifest(&l);
        let bytes = deep_field(&serde_json::to_vec(&m).unwrap());
        let d = l.blob(MT_MANIFEST, &bytes);
        l.index(&[named(d, "bad/app:1")]);
        l.dir
    });
    check("config blob (OCI layout)", &|b| {
        let l = Layout::new(&b.path("deep-config-field"));
        let cfg = deep_field(&config_json("amd64", &[sha(&b.base)]));
        let config = l.blob(MT_CONFIG, &cfg);
        let layer = l.blob(MT_LAYER, &b.base);
        let m = l.blob(MT_MANIFEST, &manifest_json(&config, &[layer]));
        l.index(&[named(m, "bad/app:1")]);
        l.dir
    });
    check("config (docker archive)", &|b| {
        let a = b.path("deep-config-field.docker.tar");
        let cfg = deep_field(&config_json("amd64", &[sha(&b.base)]));
        docker_archive_with(&a, &["bad/app:1"], &cfg, &[&b.base], None);
        a
    });
    assert!(
        accepted.is_empty(),
        "documents nested 10000 levels deep were imported: {accepted:?}"
    );
}

#[test]
fn rejects_bad_digests() {
    let b = Bad::new();
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    let upper = format!("sha256:{}", hex(&sha(&b.base)).to_uppercase());
    let short = format!("sha256:{}", &hex(&sha(&b.base))[..63]);
    let not_hex = format!("sha256:{}", "zz".repeat(32));
    for (i, (digest, expect)) in [
        (&sha512, "unsupported digest algorithm \"sha512\""),
        (&upper, "lowercase hexadecimal"),
        (&short, "expected 64 hex digits"),
        (&not_hex, "lowercase hexadecimal"),
    ]
    .into_iter()
    .enumerate()
    {
        // In index.json.
        let l = b.layout(&format!("index-{i}"), &[&b.base]);
        let (mut d, _) = b.manifest(&l);
        d["digest"] = json!(digest);
        l.index(&[d]);
        b.rejects(&l.dir, &[expect, digest]);
        // In a layer descriptor of a manifest.
        let l = b.layout(&format!("layer-{i}"), &[&b.base, &b.app]);
        let (_, mut m) = b.manifest(&l);
        m["layers"][1]["digest"] = json!(digest);
        b.set_manifest(&l, &m);
        b.rejects(&l.dir, &[expect, digest]);
        // In the config's rootfs.diff_ids.
        let l = Layout::new(&b.path(&format!("diffids-{i}")));
        let config = l.blob(
            MT_CONFIG,
            &config_json("amd64", std::slice::from_ref(digest)),
        );
        let layer = l.blob(MT_LAYER, &b.base);
        let m = l.blob(MT_MANIFEST, &manifest_json(&config, &[layer]));
        l.index(&[named(m, "bad/app:1")]);
        b.rejects(&l.dir, &["rootfs.diff_ids", expect]);
    }
}

#[test]
fn rejects_unknown_media_types() {
    let b = Bad::new();
    // A layer of a type layerstore cannot store.
    let l = b.layout("layer-type", &[&b.base, &b.app]);
    let (_, mut m) = b.manifest(&l);
    m["layers"][1]["mediaType"] = json!("application/vnd.example.weird.layer");
    b.set_manifest(&l, &m);
    b.rejects(
        &l.dir,
        &["not a layer type", "application/vnd.example.weird.layer"],
    );
    // A layer whose descriptor has no media type at all.
    let l = b.layout("layer-no-type", &[&b.base]);
    let (_, mut m) = b.manifest(&l);
    m["layers"][0].as_object_mut().unwrap().remove("mediaType");
    b.set_manifest(&l, &m);
    b.rejects(&l.dir, &["not a layer type"]);
    // index.json pointing straight at a config (valid blob, wrong kind).
    let l = b.layout("top-config", &[&b.base]);
    let (_, m) = b.manifest(&l);
    let config = m["config"].clone();
    l.index(&[named(config, "bad/app:1")]);
    b.rejects(&l.dir, &["not an image manifest or index", MT_CONFIG]);
    // ... and at a layer, with an unknown type.
    let l = b.layout("top-unknown", &[&b.base]);
    let mut d = desc("application/x-unknown", &b.base);
    d = named(d, "bad/app:1");
    l.index(&[d]);
    b.rejects(
        &l.dir,
        &["not an image manifest or index", "application/x-unknown"],
    );
    // A manifest whose own mediaType says it is something else.
    let l = b.layout("manifest-type", &[&b.base]);
    let (_, mut m) = b.manifest(&l);
    m["mediaType"] = json!("application/vnd.example.not-a-manifest");
    let bytes = serde_json::to_vec(&m).unwrap();
    let d = l.blob(MT_MANIFEST, &bytes);
    l.index(&[named(d, "bad/app:1")]);
    b.rejects(&l.dir, &["is not an image manifest"]);
}

#[test]
fn rejects_index_listing_itself() {
    let b = Bad::new();
    // The index blob names itself as its child, and is stored under that
    // name: its bytes cannot hash to a digest they contain.
    let l = b.layout("self", &[&b.base]);
    let claimed = sha(b"the digest this index claims for itself");
    let child = json!({"mediaType": MT_INDEX, "digest": claimed, "size": 0});
    let mut bytes = index_json(&[child]);
    // Make the size field self-consistent too.
    for _ in 0..3 {
        let len = bytes.len();
        let child = json!({"mediaType": MT_INDEX, "digest": claimed, "size": len});
        bytes = index_json(&[child]);
    }
    fs::write(l.blob_path(&claimed), &bytes).unwrap();
    l.index(&[named(
        json!({"mediaType": MT_INDEX, "digest": claimed, "size": bytes.len()}),
        "bad/app:1",
    )]);
    b.rejects(&l.dir, &["hashes to", &claimed]);
    // A cycle one level down: index A lists a manifest and an index B, and
    // the blob stored as B lists A again (with every size consistent).
    let l = b.layout("cycle", &[&b.base]);
    let (mut m, _) = b.manifest(&l);
    m.as_object_mut().unwrap().remove("annotations");
    let b_claimed = sha(b"index b");
    let mut b_size = 0;
    let (a, b_bytes) = loop {
        let a_bytes = index_json(&[
            m.clone(),
            json!({"mediaType": MT_INDEX, "digest": b_claimed, "size": b_size}),
        ]);
        let a = desc(MT_INDEX, &a_bytes);
        let b_bytes = index_json(std::slice::from_ref(&a));
        if b_bytes.len() == b_size {
            l.blob(MT_INDEX, &a_bytes);
            break (a, b_bytes);
        }
        b_size = b_bytes.len();
    };
    fs::write(l.blob_path(&b_claimed), &b_bytes).unwrap();
    l.index(&[named(a, "bad/app:1")]);
    b.rejects(&l.dir, &["hashes to", &b_claimed]);
}

#[test]
fn partially_valid_images_leave_no_trace() {
    let b = Bad::new();
    // OCI: first layer new and fine, second layer corrupt.
    let l = b.layout("oci-partial", &[&b.fresh, &b.app]);
    fs::write(l.blob_path(&sha(&b.app)), tamper(&b.app)).unwrap();
    b.rejects(&l.dir, &["hashes to"]);
    // OCI: second layer missing.
    let l = b.layout("oci-partial-missing", &[&b.fresh, &b.app]);
    fs::remove_file(l.blob_path(&sha(&b.app))).unwrap();
    b.rejects(&l.dir, &["is missing"]);
    // docker-archive: first layer new and fine, second has a wrong DiffID.
    let a = b.path("docker-partial.tar");
    let config = config_json("amd64", &[sha(&b.fresh), sha(b"wrong")]);
    docker_archive_with(&a, &["bad/app:1"], &config, &[&b.fresh, &b.app], None);
    b.rejects(&a, &["DiffID"]);
    // docker-archive: second layer is not valid gzip.
    let a = b.path("docker-partial-gzip.tar");
    let mut gz = gzip(&b.app);
    gz.truncate(gz.len() / 2);
    let config = config_json("amd64", &[sha(&b.fresh), sha(&b.app)]);
    docker_archive_with(&a, &["bad/app:1"], &config, &[&b.fresh, &gz], None);
    b.rejects(&a, &["corrupt or truncated"]);
    // Two images in one layout: the first fine (with a new layer), the
    // second broken: neither name appears.
    let l = Layout::new(&b.path("two-images"));
    let good = named(l.image("amd64", &[&b.fresh]), "bad/first:1");
    let broken = named(l.image("amd64", &[&b.base, &b.app]), "bad/second:1");
    fs::remove_file(l.blob_path(&sha(&b.app))).unwrap();
    l.index(&[good, broken]);
    b.rejects(&l.dir, &["is missing"]);

    // After all that, the fresh layer imports normally and packs grow.
    let before = b.store.stats().unwrap();
    let l = b.layout("finally-good", &[&b.fresh]);
    let r = b.store.import_image(&l.dir, None).unwrap();
    assert_eq!(r.new_layers, 1);
    assert!(b.store.stats().unwrap().pack_bytes > before.pack_bytes + 500_000);
    assert_eq!(get(&b.store, &sha(&b.fresh)), b.fresh);
}

/// `image tag` and `image import` never take a name another image has
/// without `--force`; with it they say what the name pointed at, and that
/// image's data stays until gc.
#[test]
fn names_of_other_images_are_moved_only_with_force() {
    let t = tmp();
    let mut rng = Rng::new(77);
    let layer_a = tar_layer(&[("a", &rng.bytes(60_000))]);
    let layer_b = tar_layer(&[("b", &rng.bytes(60_000))]);
    let (da, db) = (sha(&layer_a), sha(&layer_b));
    let archive_a = t.path().join("a.tar");
    let archive_b = t.path().join("b.tar");
    docker_archive(&archive_a, &["ns/a:1"], &[&layer_a]);
    docker_archive(&archive_b, &["ns/b:1"], &[&layer_b]);
    let store_dir = t.path().join("store");
    cli_ok(&store_dir, &["image", "import", path_arg(&archive_a)]);
    cli_ok(&store_dir, &["image", "import", path_arg(&archive_b)]);
    let store = Store::open(&store_dir).unwrap();
    let target = |name: &str| -> String {
        store
            .images()
            .unwrap()
            .into_iter()
            .find(|i| i.name == name)
            .map(|i| i.digest.to_string())
            .unwrap_or_default()
    };
    let (ta, tb) = (target("ns/a:1"), target("ns/b:1"));

    // Without --force: refused, nothing changes.
    let stderr = cli_err(&store_dir, &["image", "tag", "ns/a:1", "ns/b:1"]);
    assert!(
        stderr.contains("--force") && stderr.contains(&tb),
        "{stderr}"
    );
    assert_eq!(target("ns/b:1"), tb);
    let stderr = cli_err(
        &store_dir,
        &["image", "import", path_arg(&archive_a), "--name", "ns/b:1"],
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(target("ns/b:1"), tb);
    // Tagging a name with the image it already names is no change.
    cli_ok(&store_dir, &["image", "tag", "ns/b:1", "ns/b:1"]);

    // With --force: moved, the old target named, its layer kept until gc.
    let out = cli_ok(&store_dir, &["image", "tag", "--force", "ns/a:1", "ns/b:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&tb), "{stderr}");
    assert_eq!(target("ns/b:1"), ta);
    assert_eq!(
        get(&store, &db),
        layer_b,
        "the old image's layer went before gc"
    );
    cli_ok(&store_dir, &["gc"]);
    assert!(
        !layer_set(&store).contains(&db),
        "gc kept an unreachable layer"
    );
    assert!(layer_set(&store).contains(&da));

    // import --force reports the names it moved.
    let report = cli_json(
        &store_dir,
        &[
            "image",
            "import",
            path_arg(&archive_b),
            "--name",
            "ns/a:1",
            "--force",
        ],
    );
    assert_eq!(report["moved"][0]["name"], "ns/a:1", "{report}");
    assert_eq!(report["moved"][0]["previous"], ta.as_str(), "{report}");
}

/// `image rm` checks every name before removing any (issue: it removed the
/// names before a missing one, then failed).
#[test]
fn image_rm_removes_all_names_or_none() {
    let t = tmp();
    let mut rng = Rng::new(78);
    let store_dir = t.path().join("store");
    for name in ["ns/a:1", "ns/b:1"] {
        let layer = tar_layer(&[("f", &rng.bytes(30_000))]);
        let archive = t.path().join("archive.tar");
        docker_archive(&archive, &[name], &[&layer]);
        cli_ok(&store_dir, &["image", "import", path_arg(&archive)]);
    }
    let names = |store: &Path| -> Vec<String> {
        Store::open(store)
            .unwrap()
            .images()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    let stderr = cli_err(
        &store_dir,
        &["image", "rm", "ns/a:1", "no/such:1", "ns/b:1"],
    );
    assert!(
        stderr.contains("no/such:1") && stderr.contains("not found"),
        "{stderr}"
    );
    assert_eq!(
        names(&store_dir),
        ["ns/a:1", "ns/b:1"],
        "a failed rm removed names"
    );
    // A name given twice is removed once.
    cli_ok(&store_dir, &["image", "rm", "ns/a:1", "ns/b:1", "ns/a:1"]);
    assert!(names(&store_dir).is_empty());
}

/// `image import` reads docker archives compressed with gzip or zstd and
/// archives on standard input, as `docker load` does; a damaged compressed
/// archive fails with a clear message, and nothing is left behind.
#[test]
fn compressed_and_piped_archives_import() {
    let t = tmp();
    let mut rng = Rng::new(79);
    let layer = tar_layer(&[("f", &rng.bytes(80_000))]);
    let archive = t.path().join("plain.tar");
    docker_archive(&archive, &["ns/c:1"], &[&layer]);
    let plain = fs::read(&archive).unwrap();
    let gz = t.path().join("image.tar.gz");
    fs::write(&gz, gzip(&plain)).unwrap();
    let zst = t.path().join("image.tar.zst");
    fs::write(&zst, zstd(&plain)).unwrap();
    for (what, file) in [("gzip", &gz), ("zstd", &zst)] {
        let store_dir = t.path().join(format!("store-{what}"));
        cli_ok(&store_dir, &["image", "import", path_arg(file)]);
        let store = Store::open(&store_dir).unwrap();
        assert_eq!(get(&store, &sha(&layer)), layer, "{what} archive");
        let leftovers: Vec<_> = fs::read_dir(&store_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".spool"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    // Standard input, plain and compressed.
    for (what, bytes) in [("plain", plain.clone()), ("gzip", gzip(&plain))] {
        let store_dir = t.path().join(format!("store-stdin-{what}"));
        let out = run_with_input(cli(&store_dir).args(["image", "import", "-"]), &bytes);
        assert!(out.status.success(), "stdin {what}: {}", describe(&out));
        let store = Store::open(&store_dir).unwrap();
        assert_eq!(get(&store, &sha(&layer)), layer, "stdin {what}");
    }
    // A truncated gzip archive: refused by name, the store unchanged.
    let store_dir = t.path().join("store-bad");
    cli_ok(&store_dir, &["image", "import", path_arg(&gz)]);
    let before = snapshot(&store_dir);
    let gz_bytes = fs::read(&gz).unwrap();
    let cut = t.path().join("cut.tar.gz");
    fs::write(&cut, &gz_bytes[..gz_bytes.len() / 2]).unwrap();
    let stderr = cli_err(&store_dir, &["image", "import", path_arg(&cut), "--force"]);
    assert!(
        stderr.contains("cut.tar.gz") && stderr.contains("gzip"),
        "{stderr}"
    );
    assert_eq!(
        snapshot(&store_dir),
        before,
        "a failed import changed the store"
    );
}

/// Export says what it changed, truthfully: a docker archive carries no
/// manifest (so the manifest digest is never kept) and adds `:latest` to a
/// name without a tag; an OCI export that rewrites a Docker v2 manifest
/// says it is OCI now (issue: `digest_changed: false`, silent conversion).
#[test]
fn export_reports_what_it_changed() {
    let t = tmp();
    let mut rng = Rng::new(80);
    let layer = tar_layer(&[("f", &rng.bytes(40_000))]);
    let store_dir = t.path().join("store");
    let store = Store::open(&store_dir).unwrap();

    // A Docker v2 manifest with a gzip layer, in an OCI layout.
    let dir = t.path().join("docker-v2");
    let layout = Layout::new(&dir);
    let gz = gzip(&layer);
    let config = layout.blob(
        "application/vnd.docker.container.image.v1+json",
        &config_json("amd64", &[sha(&layer)]),
    );
    let layer_desc = layout.blob("application/vnd.docker.image.rootfs.diff.tar.gzip", &gz);
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config,
        "layers": [layer_desc],
    }))
    .unwrap();
    let m = layout.blob(
        "application/vnd.docker.distribution.manifest.v2+json",
        &manifest,
    );
    layout.index(&[named(m.clone(), "base")]);
    store.import_image(&dir, None).unwrap();

    let rep = store
        .export_images(&["base".into()], ExportFormat::Oci, t.path().join("oci"))
        .unwrap();
    // The Docker v2 manifest and its gzip blob come back as they were.
    let e = &rep.images[0];
    assert!(!e.digest_changed, "{e:?}");
    assert_eq!(e.note, None, "{e:?}");
    let exported = t.path().join("oci/blobs/sha256");
    assert_same_bytes(
        &fs::read(exported.join(hex(m["digest"].as_str().unwrap()))).unwrap(),
        &manifest,
        "exported Docker v2 manifest",
    );
    assert_same_bytes(
        &fs::read(exported.join(hex(&sha(&gz)))).unwrap(),
        &gz,
        "exported gzip blob",
    );

    let rep = store
        .export_images(
            &["base".into()],
            ExportFormat::DockerArchive,
            t.path().join("image.tar"),
        )
        .unwrap();
    let e = &rep.images[0];
    assert!(
        e.digest_changed,
        "a docker archive keeps no manifest digest: {e:?}"
    );
    assert_eq!(e.exported_digest.to_string(), m["digest"].as_str().unwrap());
    let note = e.note.clone().unwrap_or_default();
    assert!(
        note.contains("no manifest")
            && note.contains(config["digest"].as_str().unwrap())
            && note.contains("base:latest"),
        "{note}"
    );
}

/// Names that would mislead or escape are refused: path segments `.` and
/// `..`, empty segments, and names that read as digests.
#[test]
fn misleading_names_are_refused() {
    let t = tmp();
    let mut rng = Rng::new(81);
    let layer = tar_layer(&[("f", &rng.bytes(10_000))]);
    let archive = t.path().join("a.tar");
    docker_archive(&archive, &["ns/a:1"], &[&layer]);
    let store_dir = t.path().join("store");
    cli_ok(&store_dir, &["image", "import", path_arg(&archive)]);
    let other_digest = sha(b"another image");
    for bad in ["../../evil", "a//b", "/abs:1", other_digest.as_str()] {
        let stderr = cli_err(&store_dir, &["image", "tag", "ns/a:1", bad]);
        assert!(stderr.contains("image name"), "{bad}: {stderr}");
        let stderr = cli_err(
            &store_dir,
            &["image", "import", path_arg(&archive), "--name", bad],
        );
        assert!(stderr.contains("image name"), "{bad}: {stderr}");
    }
    let names: Vec<String> = Store::open(&store_dir)
        .unwrap()
        .images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["ns/a:1"]);
}

/// A layout whose index names one tag for two different images is refused
/// (issue: the last one silently won).
#[test]
fn one_name_for_two_images_is_refused() {
    let t = tmp();
    let mut rng = Rng::new(82);
    let dir = t.path().join("layout");
    let layout = Layout::new(&dir);
    let a = layout.image("amd64", &[&tar_layer(&[("a", &rng.bytes(5_000))])]);
    let b = layout.image("amd64", &[&tar_layer(&[("b", &rng.bytes(5_000))])]);
    layout.index(&[named(a, "x:1"), named(b, "x:1")]);
    let store_dir = t.path().join("store");
    let stderr = cli_err(&store_dir, &["image", "import", path_arg(&dir)]);
    assert!(
        stderr.contains("\"x:1\"") && stderr.contains("two different images"),
        "{stderr}"
    );
}

/// Long operations report progress through `Store::with_progress` (the CLI
/// draws it as bars on a terminal): import, export, checkout, a full
/// verify and gc each report, ending with everything done.
#[test]
fn long_operations_report_progress() {
    use std::sync::Mutex;
    static SEEN: Mutex<Vec<(String, u64, u64)>> = Mutex::new(Vec::new());
    fn record(task: &str, done: u64, total: u64) {
        SEEN.lock().unwrap().push((task.to_string(), done, total));
    }
    let t = tmp();
    let mut rng = Rng::new(83);
    let layers: Vec<Vec<u8>> = (0..3)
        .map(|i| tar_layer(&[(format!("f{i}"), rng.bytes(50_000))]))
        .collect();
    let archive = t.path().join("a.tar");
    docker_archive(&archive, &["ns/p:1"], &layers);
    let store = Store::open(t.path().join("store"))
        .unwrap()
        .with_progress(record);
    store.import_image(&archive, None).unwrap();
    store
        .export_images(&["ns/p:1".into()], ExportFormat::Oci, t.path().join("oci"))
        .unwrap();
    store.checkout("ns/p:1", t.path().join("root")).unwrap();
    store
        .verify(&layerstore::VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    store.gc(&layerstore::GcOptions::default()).unwrap();
    let seen = SEEN.lock().unwrap().clone();
    let layer_bytes: u64 = layers.iter().map(|l| l.len() as u64).sum();
    let last = |task: &str| {
        seen.iter()
            .rfind(|(t, _, _)| t == task)
            .cloned()
            .unwrap_or_else(|| panic!("no progress for {task}: {seen:?}"))
    };
    // Import reads the layer blobs (plain tars here): all of them.
    assert_eq!(last("import").1, layer_bytes);
    assert_eq!(last("export").1, layer_bytes);
    let (_, done, total) = last("checkout");
    assert_eq!((done, total), (layer_bytes, layer_bytes));
    for task in ["verify", "gc"] {
        let (_, done, total) = last(task);
        assert!(total > 0 && done == total, "{task}: {done}/{total}");
    }
}

/// `image export -o -` writes the docker archive to standard output (the
/// same bytes as to a file), never a file named `-`; an OCI layout, a
/// directory, is refused there.
#[test]
fn export_to_standard_output() {
    let t = tmp();
    let mut rng = Rng::new(84);
    let layer = tar_layer(&[("f", &rng.bytes(30_000))]);
    let archive = t.path().join("a.tar");
    docker_archive(&archive, &["ns/s:1"], &[&layer]);
    let store_dir = t.path().join("store");
    cli_ok(&store_dir, &["image", "import", path_arg(&archive)]);
    let file = t.path().join("out.tar");
    cli_ok(
        &store_dir,
        &[
            "image",
            "export",
            "ns/s:1",
            "--format",
            "docker-archive",
            "-o",
            path_arg(&file),
        ],
    );
    let work = t.path().join("cwd");
    fs::create_dir_all(&work).unwrap();
    let out = cli(&store_dir)
        .current_dir(&work)
        .args([
            "image",
            "export",
            "ns/s:1",
            "--format",
            "docker-archive",
            "-o",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_same_bytes(&out.stdout, &fs::read(&file).unwrap(), "export to stdout");
    assert!(!work.join("-").exists(), "a file named - was written");
    let stderr = cli_err(
        &store_dir,
        &["image", "export", "ns/s:1", "--format", "oci", "-o", "-"],
    );
    assert!(stderr.contains("docker-archive"), "{stderr}");
}

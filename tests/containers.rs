//! Containers end to end: checkout against `umoci unpack`, whiteouts and
//! opaque directories, hostile layers, two containers committed
//! independently (and exported through umoci), `container rm` leaving the
//! image exact, gc roots, disk use of N containers, and the CLI.
//!
//! umoci is required (the tests fail, not skip, without it). The disk-use
//! test needs a filesystem with reflinks for its sharing assertion; set
//! `LAYERSTORE_TEST_REFLINK_DIR` to a directory on btrfs or XFS to run it
//! there, otherwise it measures, prints why, and checks only correctness.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore::{ChangeKind, GcOptions, Sharing, Store, VerifyOptions};
use serde_json::Value;
use support::*;

/// As root the containers here are overlays (see tests/overlay.rs), so the
/// scratch directory unmounts them before it goes.
fn tmp() -> Scratch {
    Scratch::new("layerstore-containers-")
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A three-layer image built from real directories with GNU tar:
/// modes, symlinks, a hard link, nested dirs; then a whiteout, an opaque
/// directory, a file replaced by a directory; then a directory replaced by
/// a symlink and a deleted directory.
fn three_layers(dir: &Path) -> Vec<Vec<u8>> {
    let l1 = dir.join("l1");
    write_tree(
        &l1,
        &[
            ("etc/config", b"key=value\n"),
            ("etc/secret", b"hush"),
            ("bin/tool", b"#!/bin/sh\necho tool\n"),
            ("opaque/old-a", b"old a"),
            ("opaque/sub/old-b", b"old b"),
            ("gone/file", b"to be whited out"),
            ("deldir/x/y", b"deep"),
            ("becomes-dir", b"a file first"),
            ("becomes-link/inner", b"inner"),
            ("data/big.bin", &Rng::new(1).bytes(300_000)),
        ],
    );
    chmod(&l1.join("bin/tool"), 0o755);
    chmod(&l1.join("etc/secret"), 0o600);
    chmod(&l1.join("etc/config"), 0o444);
    fs::create_dir_all(l1.join("private")).unwrap();
    chmod(&l1.join("private"), 0o700);
    std::os::unix::fs::symlink("../etc/config", l1.join("bin/config-link")).unwrap();
    std::os::unix::fs::symlink("/etc/config", l1.join("abs-link")).unwrap();
    fs::hard_link(l1.join("bin/tool"), l1.join("bin/tool-hardlink")).unwrap();

    let l2 = dir.join("l2");
    write_tree(
        &l2,
        &[
            ("gone/.wh.file", b""),
            ("opaque/.wh..wh..opq", b""),
            ("opaque/new", b"new content"),
            ("etc/config", b"key=changed\n"),
            ("becomes-dir/now-a-dir", b"inside"),
            ("added/in/layer2", b"hello"),
        ],
    );
    chmod(&l2.join("etc/config"), 0o640);

    let l3 = dir.join("l3");
    write_tree(&l3, &[(".wh.deldir", b""), ("etc/.wh.secret", b"")]);
    std::os::unix::fs::symlink("opaque", l3.join("becomes-link")).unwrap();

    vec![
        gnu_tar_layer(&l1, &dir.join("l1.tar")),
        gnu_tar_layer(&l2, &dir.join("l2.tar")),
        gnu_tar_layer(&l3, &dir.join("l3.tar")),
    ]
}

fn layout_of(dir: &Path, name: &str, layers: &[Vec<u8>]) -> PathBuf {
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let layout = simple_layout(
        &dir.join(format!("layout-{}", name.replace([':', '/'], "_"))),
        name,
        &refs,
    );
    layout.dir
}

fn umoci_unpack(layout: &Path, name: &str, bundle: &Path) -> PathBuf {
    let umoci = require_tool("umoci");
    let image_arg = format!("{}:{name}", path_arg(layout));
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--image", &image_arg])
            .arg(bundle),
    );
    bundle.join("rootfs")
}

fn store_with(dir: &Path, name: &str, layers: &[Vec<u8>]) -> (Store, PathBuf) {
    let layout = layout_of(dir, name, layers);
    let store = Store::open(dir.join("store")).unwrap();
    store.import_image(&layout, None).unwrap();
    (store, layout)
}

// ---------------------------------------------------------------------------

#[test]
fn checkout_equals_umoci_unpack() {
    let t = tmp();
    let layers = three_layers(t.path());
    let (store, layout) = store_with(t.path(), "test/three:1", &layers);
    let out = t.path().join("checkout");
    let report = store.checkout("test/three:1", &out).unwrap();
    assert_eq!(report.layers, 3);
    assert!(report.whiteouts >= 4, "{report:?}");
    let rootfs = umoci_unpack(&layout, "test/three:1", &t.path().join("bundle"));
    assert_same_tree(&out, &rootfs, "layerstore checkout vs umoci unpack");
    assert!(!report.from_snapshots);
    // Once an overlay container unpacked the layers, a checkout copies
    // from the snapshots instead of streaming; the tree is the same.
    if overlay_container(&store, "test/three:1", "c").is_some() {
        let again = t.path().join("from-snapshots");
        let report = store.checkout("test/three:1", &again).unwrap();
        assert!(report.from_snapshots, "{report:?}");
        assert_eq!(report.whiteouts, 0);
        assert!(report.entries > 10, "{report:?}");
        assert_same_tree_with_owners(&again, &out, "checkout from snapshots vs streamed");
        assert_same_tree(&again, &rootfs, "checkout from snapshots vs umoci unpack");
        let a = fs::metadata(again.join("bin/tool")).unwrap();
        let b = fs::metadata(again.join("bin/tool-hardlink")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard links kept");
        let left: Vec<String> = dir_names(&store.path().join("snapshots"))
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(mounts_under(&store.path().join("snapshots")).is_empty());
    }
}

#[test]
fn whiteouts_opaque_dirs_and_replacements() {
    let t = tmp();
    let layers = three_layers(t.path());
    let (store, _) = store_with(t.path(), "w:1", &layers);
    let out = t.path().join("co");
    store.checkout("w:1", &out).unwrap();
    let l = listing(&out);
    // Whiteouts delete, and leave no marker files.
    assert!(!l.contains_key("/gone/file"), "{l:#?}");
    assert!(l.contains_key("/gone"));
    assert!(!l.contains_key("/deldir"));
    assert!(!l.contains_key("/etc/secret"));
    assert!(l.keys().all(|k| !k.contains(".wh.")), "{l:#?}");
    // Opaque: lower content hidden, this layer's kept.
    assert!(!l.contains_key("/opaque/old-a"));
    assert!(!l.contains_key("/opaque/sub"));
    assert_eq!(fs::read(out.join("opaque/new")).unwrap(), b"new content");
    // Replacements.
    assert!(l["/becomes-dir"].starts_with("dir"));
    assert_eq!(l["/becomes-link"], "symlink -> opaque");
    assert_eq!(fs::read(out.join("etc/config")).unwrap(), b"key=changed\n");
    assert_eq!(l["/etc/config"].split(' ').nth(1), Some("640"));
    assert_eq!(l["/private"], "dir 700");
    // Hard link kept as one inode; symlinks verbatim.
    let a = fs::metadata(out.join("bin/tool")).unwrap();
    let b = fs::metadata(out.join("bin/tool-hardlink")).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    assert_eq!(l["/abs-link"], "symlink -> /etc/config");
    // A non-empty target is refused.
    let err = store.checkout("w:1", &out).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// Hostile tar built with python's tarfile (the tar crate refuses to write
/// these paths). `spec`: lines of `kind path [target]`.
fn python_tar(out: &Path, spec: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut script = String::from(
        "import io, tarfile, sys\nt = tarfile.open(sys.argv[1], 'w', format=tarfile.GNU_FORMAT)\n",
    );
    for (kind, path, target) in spec {
        script += &format!("i = tarfile.TarInfo({path:?}); i.mode = 0o644\n");
        match *kind {
            "file" => {
                script += &format!(
                    "d = {target:?}.encode(); i.size = len(d); t.addfile(i, io.BytesIO(d))\n"
                )
            }
            "dir" => script += "i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)\n",
            "symlink" => {
                script +=
                    &format!("i.type = tarfile.SYMTYPE; i.linkname = {target:?}; t.addfile(i)\n")
            }
            "hardlink" => {
                script +=
                    &format!("i.type = tarfile.LNKTYPE; i.linkname = {target:?}; t.addfile(i)\n")
            }
            _ => unreachable!(),
        }
    }
    script += "t.close()\n";
    let status = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
    fs::read(out).unwrap()
}

#[test]
fn hostile_layers_never_write_outside_the_checkout() {
    let t = tmp();
    let outside = t.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let before = listing(&outside);
    let o = path_arg(&outside).to_string();
    let base = python_tar(
        &t.path().join("base.tar"),
        &[("dir", "etc", ""), ("file", "etc/hosts", "localhost")],
    );

    // (name, layer entries: kind, path, content or target; must fail)
    type Attack<'a> = (&'a str, Vec<(&'a str, String, String)>, bool);
    let attacks: Vec<Attack> = vec![
        (
            "dotdot",
            vec![("file", "../escaped".into(), "x".into())],
            true,
        ),
        (
            "dotdot-deep",
            vec![("file", "a/../../escaped".into(), "x".into())],
            true,
        ),
        (
            "absolute",
            vec![("file", format!("{o}/abs-file"), "x".into())],
            false,
        ),
        (
            "symlink-out-then-write",
            vec![
                ("symlink", "link".into(), o.clone()),
                ("file", "link/through".into(), "x".into()),
            ],
            false,
        ),
        (
            "symlink-dotdot-then-write",
            vec![
                ("symlink", "up".into(), "../../../../../../../../..".into()),
                ("file", format!("up{o}/via-dotdot"), "x".into()),
            ],
            false,
        ),
        (
            "symlink-replaced-by-file-write",
            vec![
                ("symlink", "sentinel-link".into(), format!("{o}/sentinel")),
                ("file", "sentinel-link".into(), "overwrite".into()),
            ],
            false,
        ),
        (
            "hardlink-etc-passwd",
            vec![("hardlink", "pw".into(), "/etc/passwd".into())],
            true,
        ),
        (
            "hardlink-dotdot",
            vec![("hardlink", "hl".into(), "../outside/sentinel".into())],
            true,
        ),
        (
            "hardlink-through-symlink",
            vec![
                ("symlink", "l2".into(), o.clone()),
                ("hardlink", "hl2".into(), "l2/sentinel".into()),
            ],
            true,
        ),
        (
            "whiteout-dotdot",
            vec![("file", "../outside/.wh.sentinel".into(), "".into())],
            true,
        ),
        (
            "whiteout-through-symlink",
            vec![
                ("symlink", "l3".into(), o.clone()),
                ("file", "l3/.wh.sentinel".into(), "".into()),
            ],
            false,
        ),
        (
            "opaque-through-symlink",
            vec![
                ("symlink", "l4".into(), o.clone()),
                ("file", "l4/.wh..wh..opq".into(), "".into()),
            ],
            false,
        ),
    ];
    for (i, (name, spec, must_fail)) in attacks.iter().enumerate() {
        let spec: Vec<(&str, &str, &str)> = spec
            .iter()
            .map(|(k, p, t)| (*k, p.as_str(), t.as_str()))
            .collect();
        let layer = python_tar(&t.path().join(format!("attack{i}.tar")), &spec);
        let dir = t.path().join(format!("case{i}"));
        fs::create_dir_all(&dir).unwrap();
        let image = format!("hostile:{i}");
        let layout = layout_of(&dir, &image, &[base.clone(), layer]);
        let store = Store::open(dir.join("store")).unwrap();
        store.import_image(&layout, None).unwrap();
        let out = dir.join("rootfs");
        let result = store.checkout(&image, &out);
        if *must_fail {
            let err = result.expect_err(name).to_string();
            assert!(
                err.contains("layer sha256:") && err.contains("entry"),
                "{name}: {err}"
            );
            assert!(
                !out.join("etc").exists(),
                "{name}: a failed checkout must leave nothing"
            );
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(
            listing(&outside),
            before,
            "{name} wrote outside the checkout"
        );
        assert_eq!(
            fs::read(outside.join("sentinel")).unwrap(),
            b"untouched",
            "{name}"
        );
        assert!(!t.path().join("escaped").exists(), "{name}");
        // Writes through symlinks land inside, as if the checkout were /.
        match *name {
            "symlink-out-then-write" => assert!(out.join(format!(".{o}/through")).is_file()),
            "symlink-dotdot-then-write" => assert!(out.join(format!(".{o}/via-dotdot")).is_file()),
            "absolute" => assert!(out.join(format!(".{o}/abs-file")).is_file()),
            "symlink-replaced-by-file-write" => {
                assert_eq!(fs::read(out.join("sentinel-link")).unwrap(), b"overwrite");
            }
            _ => {}
        }
        // The same layer unpacked as a snapshot, through an overlay mount
        // of the base's snapshot.
        match store.create_container_with(&image, Some("c"), Sharing::Overlay) {
            Err(e) if e.to_string().contains("overlay mounts cannot be made") => {}
            Err(e) => {
                assert!(*must_fail, "{name}: {e}");
                let e = e.to_string();
                assert!(
                    e.contains("layer sha256:") && e.contains("entry"),
                    "{name}: {e}"
                );
            }
            Ok(c) => {
                assert!(!must_fail, "{name}: the snapshot unpack accepted it");
                match *name {
                    "symlink-out-then-write" => {
                        assert!(c.path.join(format!(".{o}/through")).is_file())
                    }
                    "absolute" => assert!(c.path.join(format!(".{o}/abs-file")).is_file()),
                    _ => {}
                }
                store.remove_container("c").unwrap();
            }
        }
        assert_eq!(
            listing(&outside),
            before,
            "{name}: a snapshot wrote outside"
        );
        assert!(!t.path().join("escaped").exists(), "{name}");
        assert!(mounts_under(&dir).is_empty(), "{name}: a mount was left");
        let left: Vec<String> = dir_names(&dir.join("store/snapshots"))
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{name}: a failed unpack left {left:?}");
    }
}

fn simple_image(dir: &Path) -> Vec<Vec<u8>> {
    let l1 = dir.join("s1");
    write_tree(
        &l1,
        &[
            ("app/main.py", b"print('hi')\n"),
            ("app/lib/util.py", b"def f(): pass\n"),
            ("etc/motd", b"welcome\n"),
            ("data/blob", &Rng::new(7).bytes(200_000)),
            ("olddir/a", b"a"),
            ("olddir/b", b"b"),
        ],
    );
    std::os::unix::fs::symlink("app/main.py", l1.join("entry")).unwrap();
    let l2 = dir.join("s2");
    write_tree(&l2, &[("app/version", b"1.0\n")]);
    vec![
        gnu_tar_layer(&l1, &dir.join("s1.tar")),
        gnu_tar_layer(&l2, &dir.join("s2.tar")),
    ]
}

/// The entries of a layer tar: path -> (type, content).
fn tar_entries(bytes: &[u8]) -> BTreeMap<String, (char, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(bytes);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let kind = match e.header().entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'f',
        };
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.insert(path, (kind, data));
    }
    out
}

#[test]
fn two_containers_commit_their_own_changes() {
    let t = tmp();
    let layers = simple_image(t.path());
    let (store, _) = store_with(t.path(), "base:1", &layers);
    let c1 = store.create_container("base:1", Some("one")).unwrap();
    let c2 = store.create_container("base:1", Some("two")).unwrap();
    assert_ne!(c1.path, c2.path);
    assert_eq!(store.containers().unwrap().len(), 2);
    assert_same_tree(&c1.path, &c2.path, "fresh containers");
    assert!(
        store.container_diff("one").unwrap().is_empty(),
        "fresh container has changes"
    );

    // one: add a file, change one, delete one, wholly replace a directory.
    fs::write(c1.path.join("app/new.txt"), b"only in one").unwrap();
    fs::write(c1.path.join("etc/motd"), b"changed by one\n").unwrap();
    fs::remove_file(c1.path.join("app/lib/util.py")).unwrap();
    fs::remove_dir_all(c1.path.join("olddir")).unwrap();
    fs::create_dir(c1.path.join("olddir")).unwrap();
    fs::write(c1.path.join("olddir/fresh"), b"fresh").unwrap();
    // two: delete a file, chmod one, replace a symlink, add a hard link.
    fs::remove_file(c2.path.join("data/blob")).unwrap();
    chmod(&c2.path.join("app/main.py"), 0o700);
    fs::remove_file(c2.path.join("entry")).unwrap();
    std::os::unix::fs::symlink("app/version", c2.path.join("entry")).unwrap();
    fs::write(c2.path.join("two-a"), b"linked").unwrap();
    fs::hard_link(c2.path.join("two-a"), c2.path.join("two-b")).unwrap();

    let d1: Vec<(String, ChangeKind)> = store
        .container_diff("one")
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect();
    let expect1 = vec![
        ("/app/lib/util.py".to_string(), ChangeKind::Deleted),
        ("/app/new.txt".into(), ChangeKind::Added),
        ("/etc/motd".into(), ChangeKind::Changed),
        ("/olddir/a".into(), ChangeKind::Deleted),
        ("/olddir/b".into(), ChangeKind::Deleted),
        ("/olddir/fresh".into(), ChangeKind::Added),
    ];
    assert_eq!(d1, expect1);
    let d2: Vec<(String, ChangeKind)> = store
        .container_diff("two")
        .unwrap()
        .into_iter()
        .map(|c| (c.path, c.kind))
        .collect();
    let expect2 = vec![
        ("/app/main.py".to_string(), ChangeKind::Changed),
        ("/data/blob".into(), ChangeKind::Deleted),
        ("/entry".into(), ChangeKind::Changed),
        ("/two-a".into(), ChangeKind::Added),
        ("/two-b".into(), ChangeKind::Added),
    ];
    assert_eq!(d2, expect2);

    let r1 = store.commit_container("one", "one:committed").unwrap();
    let r2 = store.commit_container("two", "two:committed").unwrap();
    assert_ne!(r1.layer, r2.layer);
    let base_ids = image_diff_ids(&store, "base:1")[0].clone();
    let ids1 = image_diff_ids(&store, "one:committed")[0].clone();
    let ids2 = image_diff_ids(&store, "two:committed")[0].clone();
    assert_eq!(ids1[..2], base_ids[..]);
    assert_eq!(ids2[..2], base_ids[..]);
    assert_eq!(ids1[2], r1.layer.to_string());

    let e1 = tar_entries(&get(&store, &ids1[2]));
    let names1: Vec<&str> = e1.keys().map(String::as_str).collect();
    assert_eq!(
        names1,
        vec![
            "app/lib/.wh.util.py",
            "app/new.txt",
            "etc/motd",
            "olddir",
            "olddir/.wh..wh..opq",
            "olddir/fresh"
        ],
        "layer of one"
    );
    assert_eq!(e1["app/new.txt"].1, b"only in one");
    let e2 = tar_entries(&get(&store, &ids2[2]));
    let names2: Vec<&str> = e2.keys().map(String::as_str).collect();
    assert_eq!(
        names2,
        vec!["app/main.py", "data/.wh.blob", "entry", "two-a", "two-b"],
        "layer of two"
    );
    assert_eq!(e2["entry"].0, 'l');
    assert_eq!(e2["two-b"].0, 'h');

    // Each exported image passes umoci unpack and equals its container.
    for (name, image, dir) in [
        ("one", "one:committed", &c1.path),
        ("two", "two:committed", &c2.path),
    ] {
        let layout = t.path().join(format!("export-{name}"));
        store
            .export_images(&[image.to_string()], layerstore::ExportFormat::Oci, &layout)
            .unwrap();
        let rootfs = umoci_unpack(&layout, image, &t.path().join(format!("bundle-{name}")));
        assert_same_tree(
            dir,
            &rootfs,
            &format!("container {name} vs umoci unpack of its commit"),
        );
        // And checking the new image out gives the same tree, with no diff.
        let again = store
            .create_container(image, Some(&format!("{name}-again")))
            .unwrap();
        assert_same_tree(dir, &again.path, "container vs container of its commit");
        assert!(
            store
                .container_diff(&format!("{name}-again"))
                .unwrap()
                .is_empty()
        );
    }
    assert!(
        store
            .verify(&VerifyOptions {
                full: true,
                repair: false
            })
            .unwrap()
            .is_clean()
    );
}

#[test]
fn container_rm_leaves_the_image_exact_and_gc_keeps_used_images() {
    let t = tmp();
    let layers = simple_image(t.path());
    let (store, _) = store_with(t.path(), "keep:1", &layers);
    let c = store.create_container("keep:1", Some("c")).unwrap();
    fs::write(c.path.join("scratch"), b"x").unwrap();
    store.remove_container("c").unwrap();
    assert!(!c.path.exists());
    assert!(store.container("c").unwrap_err().is_not_found());
    assert!(store.remove_container("c").unwrap_err().is_not_found());
    store.gc(&GcOptions::default()).unwrap();
    for (i, id) in image_diff_ids(&store, "keep:1")[0].iter().enumerate() {
        let bytes = get(&store, id);
        assert_eq!(&sha(&bytes), id);
        assert_eq!(bytes, layers[i]);
    }

    // A container keeps its image's layers alive after the name goes.
    let c = store.create_container("keep:1", Some("holder")).unwrap();
    store.remove_image("keep:1").unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.layers_removed, 0, "{report:?}");
    assert_eq!(store.layers().unwrap().len(), 2);
    assert!(store.container_diff("holder").unwrap().is_empty());
    fs::write(c.path.join("x"), b"x").unwrap();
    store.commit_container("holder", "rescued:1").unwrap();
    assert_eq!(image_diff_ids(&store, "rescued:1")[0].len(), 3);
    assert!(
        store
            .verify(&VerifyOptions {
                full: true,
                repair: false
            })
            .unwrap()
            .is_clean()
    );
    // Once nothing uses them, they go.
    store.remove_image("rescued:1").unwrap();
    store.remove_container("holder").unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(
        report.layers_removed, 0,
        "removal already forgot them: {report:?}"
    );
    assert!(store.layers().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().pack_bytes, 0);
}

fn fs_free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

fn sync() {
    Command::new("sync").status().unwrap();
}

#[test]
fn disk_use_of_n_containers() {
    let base = std::env::var_os("LAYERSTORE_TEST_REFLINK_DIR").map(PathBuf::from);
    let t = match &base {
        Some(dir) => Scratch(
            tempfile::Builder::new()
                .prefix("ls-reflink-")
                .tempdir_in(dir)
                .unwrap(),
        ),
        None => tmp(),
    };
    // The directory schemes; overlay's disk use is measured in tests/overlay.rs.
    let scheme = if base.is_some() {
        Sharing::Reflink
    } else {
        Sharing::Copy
    };
    let content = t.path().join("content");
    let mut files = Vec::new();
    for i in 0..8 {
        files.push((format!("data/f{i}.bin"), Rng::new(100 + i).bytes(4 << 20)));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    write_tree(&content, &refs);
    let layer = gnu_tar_layer(&content, &t.path().join("big.tar"));
    fs::remove_dir_all(&content).unwrap();
    let (store, _) = store_with(t.path(), "big:1", &[layer]);
    let one_copy = 32u64 << 20;

    const N: u64 = 6;
    sync();
    let before = fs_free_bytes(t.path());
    let mut sharing = String::new();
    for i in 0..N {
        let c = store
            .create_container_with("big:1", Some(&format!("c{i}")), scheme)
            .unwrap();
        sharing = c.sharing.clone();
        assert_eq!(
            fs::read(c.path.join("data/f3.bin")).unwrap(),
            files[3].1,
            "container {i}"
        );
    }
    sync();
    let after = fs_free_bytes(t.path());
    let used = before.saturating_sub(after);
    println!(
        "disk use of {N} containers of a {} MiB image: {:.1} MiB ({:.2} copies), sharing = {sharing}",
        one_copy >> 20,
        used as f64 / (1u64 << 20) as f64,
        used as f64 / one_copy as f64
    );
    if sharing == "reflink" {
        // The base checkout costs one copy; the containers share it.
        assert!(
            used < 2 * one_copy,
            "{N} reflinked containers used {used} bytes"
        );
        // Writing to one container does not change another.
        let c0 = store.container("c0").unwrap();
        let c1 = store.container("c1").unwrap();
        fs::write(c0.path.join("data/f3.bin"), b"rewritten").unwrap();
        assert_eq!(fs::read(c1.path.join("data/f3.bin")).unwrap(), files[3].1);
    } else {
        println!(
            "sharing assertion skipped: the filesystem of {} supports no reflinks, so each \
             container is a full copy (set LAYERSTORE_TEST_REFLINK_DIR to a btrfs/XFS directory)",
            t.path().display()
        );
        assert_eq!(sharing, "copy");
    }
    for i in 0..N {
        store.remove_container(&format!("c{i}")).unwrap();
    }
    let report = store.gc(&GcOptions::default()).unwrap();
    if sharing == "reflink" {
        assert_eq!(
            report.container_dirs_removed, 1,
            "the unused base checkout goes"
        );
    }
    assert!(
        !store
            .path()
            .join("checkouts")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    );
}

#[test]
fn cli_container_commands() {
    let t = tmp();
    let layers = simple_image(t.path());
    let layout = layout_of(t.path(), "cli:1", &layers);
    let store = t.path().join("store");
    cli_ok(&store, &["image", "import", path_arg(&layout)]);

    let out = t.path().join("co");
    let report = cli_json(&store, &["checkout", "cli:1", path_arg(&out)]);
    assert_eq!(report["layers"], 2);
    assert_eq!(fs::read(out.join("app/version")).unwrap(), b"1.0\n");
    let err = cli_err(&store, &["checkout", "cli:1", path_arg(&out)]);
    assert!(err.contains("not empty"), "{err}");
    let err = cli_err(
        &store,
        &["checkout", "nope:1", path_arg(&t.path().join("x"))],
    );
    assert!(err.contains("not found"), "{err}");

    let created = cli_json(&store, &["container", "create", "cli:1", "--name", "web"]);
    assert_eq!(created["name"], "web");
    let path = cli_text(&store, &["container", "path", "web"]);
    let root = PathBuf::from(path.trim());
    assert_eq!(root, PathBuf::from(created["path"].as_str().unwrap()));
    assert!(root.join("app/main.py").is_file());
    let err = cli_err(&store, &["container", "create", "cli:1", "--name", "web"]);
    assert!(err.contains("already exists"), "{err}");
    let err = cli_err(
        &store,
        &["container", "create", "cli:1", "--name", "../bad"],
    );
    assert!(err.contains("container name"), "{err}");
    let unnamed = cli_text(&store, &["container", "create", "cli:1"]);
    let unnamed = unnamed.trim().to_string();

    let ls = cli_json(&store, &["container", "ls"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"web") && names.contains(&unnamed.as_str()),
        "{ls}"
    );
    let text = cli_text(&store, &["container", "ls"]);
    assert!(text.contains("web") && text.contains("cli:1"), "{text}");

    fs::write(root.join("added"), b"new").unwrap();
    fs::remove_file(root.join("etc/motd")).unwrap();
    let diff = cli_text(&store, &["container", "diff", "web"]);
    assert_eq!(diff, "A /added\nD /etc/motd\n");
    let diff: Value = cli_json(&store, &["container", "diff", "web"]);
    assert_eq!(diff[0]["kind"], "added");
    assert_eq!(diff[1]["path"], "/etc/motd");

    let commit = cli_json(&store, &["container", "commit", "web", "web:2"]);
    assert_eq!(
        (commit["added"].as_u64(), commit["deleted"].as_u64()),
        (Some(1), Some(1))
    );
    let images = cli_json(&store, &["image", "ls"]);
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "web:2" && i["layers"] == 3)
    );

    // image rm of a used image keeps what the container needs.
    cli_ok(&store, &["image", "rm", "cli:1"]);
    cli_ok(&store, &["gc"]);
    assert_eq!(
        cli_text(&store, &["container", "diff", "web"]),
        "A /added\nD /etc/motd\n"
    );

    cli_ok(&store, &["container", "rm", "web", &unnamed]);
    assert!(!root.exists());
    let err = cli_err(&store, &["container", "path", "web"]);
    assert!(err.contains("not found"), "{err}");
    let err = cli_err(&store, &["container", "rm", "web"]);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(
        cli_json(&store, &["container", "ls"]),
        serde_json::json!([])
    );
    let verify = cli_run(&store, &["verify", "--full"]);
    assert!(verify.status.success());
}

/// container commit stores symlink targets byte for byte: no `/` to `//`,
/// no `a//b` to `a/b`, no dropped `.`, and targets longer than a tar header
/// holds survive too (issue: the tar crate normalised them).
#[test]
fn commit_keeps_symlink_targets_exact() {
    let t = tmp();
    let layers = simple_image(t.path());
    let (store, _) = store_with(t.path(), "base:1", &layers);
    let c = store.create_container("base:1", Some("links")).unwrap();
    let long = format!("{}//end/.", "d/".repeat(70));
    let targets: Vec<(&str, String)> = vec![
        ("l-root", "/".to_string()),
        ("l-double", "a//b".to_string()),
        ("l-dot", "x/.".to_string()),
        ("l-up", "../y/".to_string()),
        ("l-long", long.clone()),
    ];
    for (name, target) in &targets {
        std::os::unix::fs::symlink(target, c.path.join(name)).unwrap();
    }
    store.commit_container("links", "links:1").unwrap();
    let details = store.image("links:1").unwrap();
    let top = details.manifests[0].layers.last().unwrap().diff_id;
    let mut tar = Vec::new();
    store.get_layer(&top, &mut tar).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut found = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        if e.header().entry_type() == tar::EntryType::Symlink {
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let link = e.link_name_bytes().unwrap().into_owned();
            found.insert(path, link);
        }
    }
    for (name, target) in &targets {
        assert_eq!(
            found
                .get(*name)
                .map(|l| String::from_utf8_lossy(l).into_owned()),
            Some(target.clone()),
            "symlink {name} in the committed layer"
        );
    }
    // And a checkout of the new image has the very same links.
    let out = t.path().join("checkout");
    store.checkout("links:1", &out).unwrap();
    for (name, target) in &targets {
        assert_eq!(
            fs::read_link(out.join(name))
                .unwrap()
                .as_os_str()
                .as_encoded_bytes(),
            target.as_bytes(),
            "checked-out symlink {name}"
        );
    }
}

/// gc removes what interrupted container creates left as soon as their
/// process is gone (an unlocked owner file proves it), leaves work in
/// progress alone, and never deletes a container directory it cannot
/// prove is garbage, however old (issue: `.tmp-*` stayed a day, and an
/// unrecorded directory, a container whose row was lost, went after one).
#[test]
fn gc_removes_only_provable_container_leftovers() {
    let t = tmp();
    let layers = simple_image(t.path());
    let (store, _) = store_with(t.path(), "base:1", &layers);
    let kept = store.create_container("base:1", Some("kept")).unwrap();
    let containers = store.path().join("containers");
    let make = |rel: &str| {
        fs::create_dir_all(containers.join(rel).join("rootfs")).unwrap();
        fs::write(containers.join(rel).join("rootfs/file"), b"x").unwrap();
    };
    // A create that died: its directory and its (unlocked) owner file.
    make(".tmp-00000000000000d1");
    fs::write(containers.join(".owner-00000000000000d1"), b"").unwrap();
    // A create still running: its owner file is locked.
    make(".tmp-00000000000000a1");
    let live = fs::File::create(containers.join(".owner-00000000000000a1")).unwrap();
    live.lock().unwrap();
    // A container directory the index does not record, two days old.
    make("00000000000000u1");
    let old = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(containers.join("00000000000000u1"))
        .status()
        .unwrap();
    assert!(old.success());

    let report = store.verify(&layerstore::VerifyOptions::default()).unwrap();
    let warned = |rel: &str| report.warnings.iter().any(|w| w.subject.ends_with(rel));
    assert!(warned(".tmp-00000000000000d1"), "{:?}", report.warnings);
    assert!(warned("00000000000000u1"), "{:?}", report.warnings);
    assert!(!warned(".tmp-00000000000000a1"), "{:?}", report.warnings);

    store.gc(&GcOptions::default()).unwrap();
    assert!(
        !containers.join(".tmp-00000000000000d1").exists(),
        "dead create kept"
    );
    assert!(!containers.join(".owner-00000000000000d1").exists());
    assert!(
        containers.join(".tmp-00000000000000a1").exists(),
        "live create removed"
    );
    assert!(
        containers.join("00000000000000u1/rootfs/file").exists(),
        "gc deleted a container directory it cannot prove is garbage"
    );
    assert!(kept.path.join("etc/motd").exists());
    drop(live);
}

/// `container diff` prints each path on one line (a newline in a name is
/// escaped), and refuses a root filesystem that was replaced by a symlink
/// instead of reading through it.
#[test]
fn container_diff_text_is_one_path_a_line_and_never_follows_the_root() {
    let t = tmp();
    let layers = simple_image(t.path());
    let (store, _) = store_with(t.path(), "base:1", &layers);
    // A directory root (an overlay root is a mount point, which cannot be
    // renamed; tests/overlay.rs replaces its upper directory instead).
    let c = store
        .create_container_with("base:1", Some("odd"), Sharing::Copy)
        .unwrap();
    fs::write(c.path.join("two\nlines"), b"x").unwrap();
    let out = cli_ok(store.path(), &["container", "diff", "odd"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text, "A /two\\nlines\n", "{text:?}");

    // The root filesystem replaced by a symlink to another tree.
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("secret")).unwrap();
    fs::rename(&c.path, t.path().join("moved-rootfs")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &c.path).unwrap();
    let err = store.container_diff("odd").unwrap_err().to_string();
    assert!(err.contains("not a directory"), "{err}");
    assert!(store.commit_container("odd", "odd:1").is_err());
}

// ------------------------------------------------------------------ overlay

/// An overlay container of `image`, or None where overlay mounts cannot be
/// made here (not root, no overlayfs, an upper-incapable filesystem): the
/// reason is printed and the caller skips.
fn overlay_container(store: &Store, image: &str, name: &str) -> Option<layerstore::ContainerInfo> {
    match store.create_container_with(image, Some(name), Sharing::Overlay) {
        Ok(c) => {
            assert_eq!(c.sharing, "overlay");
            assert!(c.mounted);
            Some(c)
        }
        Err(e) if e.to_string().contains("overlay mounts cannot be made") => {
            println!("overlay part skipped: {e}");
            None
        }
        Err(e) => panic!("overlay container of {image}: {e}"),
    }
}

fn snapshot_names(store: &Store) -> BTreeSet<String> {
    dir_names(&store.path().join("snapshots"))
        .into_iter()
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// The snapshot directory whose file list names `layer` (its tar) as its
/// layer (the header line ends with the DiffID).
fn snapshot_of(store: &Store, layer: &[u8]) -> PathBuf {
    let snaps = store.path().join("snapshots");
    let diff_id = format!(" {}", sha(layer));
    let name = snapshot_names(store)
        .into_iter()
        .find(|n| {
            fs::read_to_string(snaps.join(n).join("files"))
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .ends_with(&diff_id)
        })
        .expect("the layer's snapshot");
    snaps.join(name)
}

/// `du -sxb`: bytes under `path` on its own filesystem (mounts not counted
/// twice).
fn du(path: &Path) -> u64 {
    let out = run_ok(Command::new("du").arg("-sxb").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn overlay_containers_share_one_snapshot_per_layer() {
    let t = tmp();
    let dir = t.path();
    let mut big = Vec::new();
    for i in 0..3 {
        big.push((format!("data/f{i}.bin"), Rng::new(40 + i).bytes(4 << 20)));
    }
    let refs: Vec<(&str, &[u8])> = big
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    write_tree(&dir.join("b1"), &refs);
    write_tree(
        &dir.join("b1"),
        &[("data/small.txt", b"deleted by the next layer")],
    );
    write_tree(
        &dir.join("b2"),
        &[("etc/app.conf", b"v=2\n"), ("data/.wh.small.txt", b"")],
    );
    write_tree(&dir.join("b3"), &[("etc/app.conf", b"v=3\n")]);
    write_tree(&dir.join("b4"), &[("other/only-here", b"other image")]);
    let l: Vec<Vec<u8>> = (1..=4)
        .map(|i| gnu_tar_layer(&dir.join(format!("b{i}")), &dir.join(format!("b{i}.tar"))))
        .collect();
    let (store, _) = store_with(dir, "big:1", &l[..3]);
    store
        .import_image(
            layout_of(dir, "other:1", &[l[0].clone(), l[3].clone()]),
            None,
        )
        .unwrap();
    let reference = dir.join("reference");
    store.checkout("big:1", &reference).unwrap();
    let unpacked = du(&reference);

    sync();
    let before = du(store.path());
    let Some(first) = overlay_container(&store, "big:1", "c0") else {
        return;
    };
    assert_eq!(snapshot_names(&store).len(), 3, "one snapshot per layer");
    let mut times = Vec::new();
    for i in 1..6 {
        let start = std::time::Instant::now();
        let c = store
            .create_container_with("big:1", Some(&format!("c{i}")), Sharing::Overlay)
            .unwrap();
        times.push(start.elapsed());
        assert_same_tree_with_owners(&c.path, &reference, "overlay container vs checkout");
    }
    assert_eq!(
        snapshot_names(&store).len(),
        3,
        "containers 2-6 unpack nothing"
    );
    sync();
    let used = du(store.path()) - before;
    println!(
        "6 overlay containers of a {:.1} MiB image: {:.1} MiB ({:.2} unpacked images); \
         containers 2-6 created in {times:?}",
        unpacked as f64 / 1048576.0,
        used as f64 / 1048576.0,
        used as f64 / unpacked as f64
    );
    assert!(
        used * 10 <= unpacked * 12,
        "6 containers used {used} bytes, more than 1.2 x {unpacked}"
    );
    assert!(
        !first.path.join("data/small.txt").exists(),
        "whiteout through the overlay"
    );

    // A second image on the same base unpacks only its own layer.
    let base_list = snapshot_of(&store, &l[0]).join("files");
    let base_mtime = fs::metadata(&base_list).unwrap().modified().unwrap();
    let o = store
        .create_container_with("other:1", Some("o"), Sharing::Overlay)
        .unwrap();
    assert_eq!(
        snapshot_names(&store).len(),
        4,
        "only the other image's own layer"
    );
    assert_eq!(
        fs::metadata(&base_list).unwrap().modified().unwrap(),
        base_mtime
    );
    assert_eq!(
        fs::read(o.path.join("other/only-here")).unwrap(),
        b"other image"
    );
    assert_eq!(fs::read(o.path.join("data/f0.bin")).unwrap(), big[0].1);

    // Snapshots live as long as an image or container uses them.
    for i in 0..6 {
        store.remove_container(&format!("c{i}")).unwrap();
    }
    store.remove_container("o").unwrap();
    assert!(mounts_under(store.path()).is_empty(), "rm unmounts");
    assert_eq!(
        store.gc(&GcOptions::default()).unwrap().snapshots_removed,
        0
    );
    store.remove_image("other:1").unwrap();
    assert_eq!(
        store.gc(&GcOptions::default()).unwrap().snapshots_removed,
        1
    );
    assert_eq!(snapshot_names(&store).len(), 3);
    assert_same_tree_with_owners(
        &store.create_container("big:1", Some("again")).unwrap().path,
        &reference,
        "after gc",
    );
}

#[test]
fn overlay_containers_are_isolated_and_survive_umount() {
    let t = tmp();
    let layers = three_layers(t.path());
    let (store, layout) = store_with(t.path(), "iso:1", &layers);
    let reference = t.path().join("reference");
    store.checkout("iso:1", &reference).unwrap();
    let Some(c1) = overlay_container(&store, "iso:1", "one") else {
        return;
    };
    let c2 = overlay_container(&store, "iso:1", "two").unwrap();
    // The merged root is the image, as umoci unpacks it.
    let rootfs = umoci_unpack(&layout, "iso:1", &t.path().join("bundle"));
    assert_same_tree(&c1.path, &rootfs, "overlay container vs umoci unpack");
    // The opaque marker of layer 2 became the overlay xattr, with no
    // whiteouts left under it; its `.wh.file` became a whiteout device.
    let root2 = snapshot_of(&store, &layers[1]).join("root");
    let mut value = [0u8; 8];
    let n = rustix::fs::lgetxattr(
        root2.join("opaque"),
        "trusted.overlay.opaque",
        &mut value[..],
    )
    .expect("opaque xattr");
    assert_eq!(&value[..n], b"y");
    assert_eq!(
        dir_names(&root2.join("opaque")),
        BTreeSet::from(["new".to_string()])
    );
    let wh = fs::symlink_metadata(root2.join("gone/file")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);

    fs::write(c1.path.join("new-file"), b"only in one").unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(c1.path.join("data/big.bin"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended").unwrap();
    drop(f);
    fs::remove_file(c1.path.join("bin/tool")).unwrap();
    chmod(&c1.path.join("etc/config"), 0o600);
    fs::remove_dir_all(c1.path.join("opaque")).unwrap();
    assert_same_tree_with_owners(&c2.path, &reference, "the other container");
    let again = t.path().join("again");
    store.checkout("iso:1", &again).unwrap();
    assert_same_tree_with_owners(&again, &reference, "the image");
    let changes = store.container_diff("one").unwrap();
    assert_eq!(changes.len(), 5, "{changes:?}");

    // Unmounted, the changes wait in the upper directory; mounting again
    // brings them back.
    let mine = listing(&c1.path);
    store.unmount_container("one").unwrap();
    assert!(!store.container("one").unwrap().mounted);
    assert!(!c1.path.join("etc").exists());
    assert_eq!(
        store.container_diff("one").unwrap(),
        changes,
        "diff reads the upper dir"
    );
    let out = cli_ok(store.path(), &["container", "path", "one"]);
    assert_eq!(first_line(&out.stdout), path_arg(&c1.path));
    assert_eq!(listing(&c1.path), mine);

    let dir_of_one = c1.path.parent().unwrap().to_path_buf();
    store.remove_container("one").unwrap();
    assert!(mounts_under(&dir_of_one).is_empty());
    assert!(!dir_of_one.exists());
    assert_same_tree_with_owners(&c2.path, &reference, "after rm of the other");
    assert_eq!(snapshot_names(&store).len(), 3);
    let full = VerifyOptions {
        full: true,
        repair: false,
    };
    assert!(store.verify(&full).unwrap().is_clean());
}

#[test]
fn overlay_diff_and_commit_equal_the_copy_scheme() {
    let t = tmp();
    let layers = three_layers(t.path());
    let (store, _) = store_with(t.path(), "same:1", &layers);
    let Some(over) = overlay_container(&store, "same:1", "over") else {
        return;
    };
    let copy = store
        .create_container_with("same:1", Some("copy"), Sharing::Copy)
        .unwrap();
    assert_eq!(copy.sharing, "copy");
    for root in [&over.path, &copy.path] {
        fs::write(root.join("added-file"), b"new").unwrap();
        fs::write(root.join("etc/config"), b"rewritten\n").unwrap();
        // Copied up but unchanged: no change.
        fs::write(root.join("bin/config-link-target-copy"), b"x").unwrap();
        fs::remove_file(root.join("bin/config-link-target-copy")).unwrap();
        chmod(&root.join("data/big.bin"), 0o600);
        chmod(&root.join("data/big.bin"), 0o644);
        fs::remove_file(root.join("bin/tool-hardlink")).unwrap();
        fs::remove_dir_all(root.join("becomes-dir")).unwrap();
        fs::write(root.join("becomes-dir"), b"a file again").unwrap();
        // A directory removed and made again: opaque in the upper dir.
        fs::remove_dir_all(root.join("added/in")).unwrap();
        fs::create_dir(root.join("added/in")).unwrap();
        fs::write(root.join("added/in/other"), b"replaced").unwrap();
        // Emptied, not replaced.
        fs::remove_file(root.join("opaque/new")).unwrap();
        fs::remove_file(root.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("a//b/.", root.join("abs-link")).unwrap();
        fs::create_dir_all(root.join("deep/new/dir")).unwrap();
        fs::write(root.join("deep/new/dir/f"), b"deep").unwrap();
        fs::hard_link(root.join("added-file"), root.join("added-link")).unwrap();
    }
    let d_over = store.container_diff("over").unwrap();
    let d_copy = store.container_diff("copy").unwrap();
    assert_eq!(d_over, d_copy, "overlay diff equals the full comparison");
    assert!(d_over.len() >= 10, "{d_over:?}");

    let before = snapshot_names(&store).len();
    let r_over = store.commit_container("over", "over:2").unwrap();
    let r_copy = store.commit_container("copy", "copy:2").unwrap();
    assert_eq!(
        (r_over.added, r_over.changed, r_over.deleted),
        (r_copy.added, r_copy.changed, r_copy.deleted)
    );
    let e_over = tar_entries(&get(&store, &r_over.layer.to_string()));
    let e_copy = tar_entries(&get(&store, &r_copy.layer.to_string()));
    let kinds =
        |e: &BTreeMap<String, (char, Vec<u8>)>| -> BTreeSet<String> { e.keys().cloned().collect() };
    assert_eq!(kinds(&e_over), kinds(&e_copy), "the same layer entries");
    assert_eq!(
        snapshot_names(&store).len(),
        before + 1,
        "commit made the new layer's snapshot"
    );
    for (image, root) in [("over:2", &over.path), ("copy:2", &copy.path)] {
        let layout = t.path().join(format!("export-{}", &image[..4]));
        store
            .export_images(&[image.to_string()], layerstore::ExportFormat::Oci, &layout)
            .unwrap();
        let rootfs = umoci_unpack(
            &layout,
            image,
            &t.path().join(format!("bundle-{}", &image[..4])),
        );
        assert_same_tree(
            root,
            &rootfs,
            &format!("{image} vs umoci unpack of its commit"),
        );
    }
    let n = snapshot_names(&store).len();
    let next = overlay_container(&store, "over:2", "next").unwrap();
    assert_eq!(
        snapshot_names(&store).len(),
        n,
        "the committed layer needs no unpack"
    );
    assert_same_tree_with_owners(&next.path, &over.path, "container of the commit");
    assert!(store.container_diff("next").unwrap().is_empty());
    assert_eq!(
        fs::read_link(next.path.join("abs-link")).unwrap(),
        Path::new("a//b/."),
        "symlink target byte-exact"
    );
}

#[test]
fn overlay_stacks_deeper_than_one_mount_option_string() {
    let t = tmp();
    // A long store path: 70 lower directories of ~300 bytes each cannot go
    // in one page of mount options.
    let deep = t.path().join("d".repeat(200));
    fs::create_dir_all(&deep).unwrap();
    let mut layers = Vec::new();
    for i in 0..70 {
        let dir = deep.join(format!("l{i}"));
        let name = format!("f{i}");
        let mut files: Vec<(&str, &[u8])> = vec![(name.as_str(), b"layer")];
        if i == 69 {
            files.push((".wh.f0", b""));
        }
        write_tree(&dir, &files);
        layers.push(gnu_tar_layer(&dir, &deep.join(format!("l{i}.tar"))));
    }
    let (store, _) = store_with(&deep, "tall:1", &layers);
    let Some(c) = overlay_container(&store, "tall:1", "tall") else {
        return;
    };
    let names = dir_names(&c.path);
    assert_eq!(names.len(), 69, "{names:?}");
    assert!(!names.contains("f0") && names.contains("f1") && names.contains("f69"));
    fs::write(c.path.join("f5"), b"changed").unwrap();
    let diff = store.container_diff("tall").unwrap();
    assert_eq!(diff.len(), 1, "{diff:?}");
    store.remove_container("tall").unwrap();
}

#[test]
fn overlay_snapshots_are_verified_and_collected_safely() {
    let t = tmp();
    let layers = simple_image(t.path());
    let (store, _) = store_with(t.path(), "snap:1", &layers);
    let Some(c) = overlay_container(&store, "snap:1", "c") else {
        return;
    };
    let snaps = store.path().join("snapshots");
    // The image name goes; the mounted container keeps its snapshots.
    store.remove_image("snap:1").unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(report.snapshots_removed, 0);
    assert_eq!(fs::read(c.path.join("etc/motd")).unwrap(), b"welcome\n");

    // An unpack that died, and a file layerstore did not make.
    fs::create_dir_all(snaps.join(".tmp-0123456789abcdef/root")).unwrap();
    fs::write(snaps.join(".tmp-0123456789abcdef/root/half"), b"x").unwrap();
    fs::write(snaps.join("notes.txt"), b"mine").unwrap();
    let (clean, report) = cli_json_status(store.path(), &["verify"]);
    assert!(clean, "{report}");
    assert!(
        report.to_string().contains("interrupted snapshot unpack"),
        "{report}"
    );

    // A snapshot file changed behind the store's back.
    let base = snapshot_names(&store)
        .into_iter()
        .find(|n| snaps.join(n).join("root/etc/motd").exists())
        .unwrap();
    fs::write(snaps.join(&base).join("root/etc/motd"), b"tampered\n").unwrap();
    let (clean, _) = cli_json_status(store.path(), &["verify"]);
    assert!(clean, "the quick check does not read snapshot files");
    let (clean, report) = cli_json_status(store.path(), &["verify", "--full"]);
    assert!(!clean, "{report}");
    let text = report.to_string();
    assert!(text.contains(&base) && text.contains("/etc/motd"), "{text}");
    let out = cli_run(store.path(), &["verify", "--full"]);
    assert!(!out.status.success());

    // The upper directory replaced by a symlink is never read through.
    store.unmount_container("c").unwrap();
    let upper = c.path.parent().unwrap().join("upper");
    fs::rename(&upper, t.path().join("moved-upper")).unwrap();
    std::os::unix::fs::symlink(t.path(), &upper).unwrap();
    let err = store.container_diff("c").unwrap_err().to_string();
    assert!(err.contains("not a directory"), "{err}");
    fs::remove_file(&upper).unwrap();
    fs::rename(t.path().join("moved-upper"), &upper).unwrap();

    store.remove_container("c").unwrap();
    let report = store.gc(&GcOptions::default()).unwrap();
    assert_eq!(
        report.snapshots_removed, 3,
        "two unused snapshots and the dead unpack"
    );
    assert!(snapshot_names(&store).is_empty(), "{:?}", dir_names(&snaps));
    assert!(!snaps.join(".tmp-0123456789abcdef").exists());
    assert_eq!(fs::read(snaps.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn overlay_create_killed_at_each_step_leaves_nothing_used() {
    let t = tmp();
    let layers = three_layers(t.path());
    let reference = t.path().join("reference");
    for point in ["snapshot-mounted", "snapshot-synced", "container-recorded"] {
        let dir = t.path().join(point);
        fs::create_dir_all(&dir).unwrap();
        let (store, _) = store_with(&dir, "k:1", &layers);
        if !reference.exists() {
            store.checkout("k:1", &reference).unwrap();
        }
        // Probe: overlay usable here at all?
        let Some(_) = overlay_container(&store, "k:1", "probe") else {
            return;
        };
        store.remove_container("probe").unwrap();
        store.remove_image("k:1").unwrap();
        assert_eq!(
            store.gc(&GcOptions::default()).unwrap().snapshots_removed,
            3
        );
        store
            .import_image(layout_of(&dir, "k:1", &layers), None)
            .unwrap();

        let out = cli(store.path())
            .args([
                "container",
                "create",
                "k:1",
                "--name",
                "c",
                "--sharing",
                "overlay",
            ])
            .env("LAYERSTORE_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: did not crash");
        let recorded = store.container("c").is_ok();
        assert_eq!(recorded, point == "container-recorded", "{point}");
        if recorded {
            // Recorded but never mounted: `path` mounts it.
            assert!(!store.container("c").unwrap().mounted);
            let path = store.mount_container("c").unwrap();
            assert_same_tree_with_owners(&path, &reference, point);
        }
        // Whatever the crash left is never used: a new container is exact.
        let fresh = overlay_container(&store, "k:1", "fresh").unwrap();
        assert_same_tree_with_owners(&fresh.path, &reference, point);
        // gc unmounts and removes the abandoned unpack; nothing is left.
        store.gc(&GcOptions::default()).unwrap();
        let snaps = store.path().join("snapshots");
        let left: Vec<String> = dir_names(&snaps)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{point}: {left:?}");
        assert!(mounts_under(&snaps).is_empty(), "{point}");
        let full = VerifyOptions {
            full: true,
            repair: false,
        };
        let report = store.verify(&full).unwrap();
        assert!(report.is_clean(), "{point}: {report:?}");
        for name in ["fresh", "c"] {
            if store.container(name).is_ok() {
                store.remove_container(name).unwrap();
            }
        }
        assert!(mounts_under(store.path()).is_empty(), "{point}");
    }
}

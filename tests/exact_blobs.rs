//! Exact compressed blobs: every compressed layer blob that was put comes
//! back byte for byte under its own digest, made by the real producers
//! (GNU gzip, pigz, Python's gzip module, the zstd CLI, Go's
//! compress/gzip, skopeo, umoci), through put/get, image import/export,
//! gc and repair; damage to what rebuilds a blob is an error, never a
//! wrong blob, and the tar stays readable.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use layerstore::{Digest, Store};
use serde_json::Value;
use support::*;

/// A layer of about 3 MiB: text, partly repetitive and random files.
fn layer(dir: &Path, seed: u64) -> (PathBuf, Vec<u8>) {
    let tree = dir.join(format!("tree{seed}"));
    let files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| {
            let n = 40_000 + (i as usize * 7_919) % 90_000;
            let data = match i % 3 {
                0 => text_bytes(seed * 100 + i, n),
                1 => partly_repetitive(seed * 100 + i, n),
                _ => mixed_bytes(seed * 100 + i, n),
            };
            (format!("d{}/f{i}", i % 5), data)
        })
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    write_tree(&tree, &refs);
    let path = dir.join(format!("layer{seed}.tar"));
    let tar = gnu_tar_layer(&tree, &path);
    (path, tar)
}

/// Runs `program args` over `input`, returning stdout.
fn produce(program: &Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    let out = run_with_input(Command::new(program).args(args), input);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tiny standard-library-only Go program: `gogzip LEVEL` gzips stdin to
/// stdout with compress/gzip, as docker push and BuildKit do.
fn build_go_gzip(dir: &Path) -> PathBuf {
    let go = require_tool("go");
    let src = dir.join("gogzip.go");
    fs::write(
        &src,
        r#"package main

import (
	"compress/gzip"
	"io"
	"os"
	"strconv"
)

func main() {
	level, err := strconv.Atoi(os.Args[1])
	if err != nil {
		panic(err)
	}
	w, err := gzip.NewWriterLevel(os.Stdout, level)
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(w, os.Stdin); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
"#,
    )
    .unwrap();
    let bin = dir.join("gogzip");
    let out = Command::new(go)
        .args(["build", "-o"])
        .arg(&bin)
        .arg(&src)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("HOME", dir)
        .env("GO111MODULE", "off")
        .output()
        .expect("running go build");
    assert!(
        out.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// One producer's blob, and the methods that may keep it.
struct Produced {
    name: String,
    blob: Vec<u8>,
    /// Acceptable `blob_method` values.
    methods: &'static [&'static str],
    /// Upper bound on extra bytes, in percent of the blob.
    max_extra_percent: f64,
}

fn producers(dir: &Path, tar: &[u8]) -> Vec<Produced> {
    let gzip = require_tool("gzip");
    let pigz = require_tool("pigz");
    let zstd = require_tool("zstd");
    let python = require_tool("python3");
    let go_gzip = build_go_gzip(dir);
    let tar_file = dir.join("input.tar");
    fs::write(&tar_file, tar).unwrap();
    let mut out = Vec::new();
    let mut add = |name: String, blob: Vec<u8>, methods, max_extra_percent| {
        out.push(Produced {
            name,
            blob,
            methods,
            max_extra_percent,
        })
    };
    const ZLIB: &[&str] = &["preflate"];
    for level in ["-1", "-6", "-9"] {
        add(
            format!("gzip {level}"),
            produce(&gzip, &["-c", "-n", level], tar),
            ZLIB,
            2.0,
        );
    }
    add(
        "pigz -6".into(),
        produce(&pigz, &["-c", "-6"], tar),
        ZLIB,
        2.0,
    );
    for level in [1, 6, 9] {
        let script = format!(
            "import gzip,sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), {level}))"
        );
        add(
            format!("python gzip {level}"),
            produce(&python, &["-c", &script], tar),
            ZLIB,
            2.0,
        );
    }
    let mut two = produce(&gzip, &["-c", "-n", "-6"], &tar[..tar.len() / 3]);
    two.extend(produce(&gzip, &["-c", "-n", "-6"], &tar[tar.len() / 3..]));
    add("gzip, two members".into(), two, ZLIB, 2.0);
    for level in ["-1", "-3", "-19"] {
        // From a file (the frame names the content size) and from a pipe.
        let from_file = Command::new(&zstd)
            .args(["-q", "-c", level])
            .arg(&tar_file)
            .output()
            .unwrap();
        assert!(from_file.status.success());
        add(
            format!("zstd {level} FILE"),
            from_file.stdout,
            &["zstd"],
            0.0,
        );
        add(
            format!("zstd {level} <stdin"),
            produce(&zstd, &["-q", "-c", level], tar),
            &["zstd"],
            0.0,
        );
    }
    // Go's encoder is not zlib's: preflate may need more corrections, or
    // may not describe it at all; the blob still comes back exactly.
    for (label, level) in [
        ("default", "-1"),
        ("BestSpeed", "1"),
        ("BestCompression", "9"),
    ] {
        add(
            format!("Go compress/gzip {label}"),
            produce(&go_gzip, &[level], tar),
            &["preflate", "verbatim"],
            100.0,
        );
    }
    out
}

#[test]
fn every_producer_comes_back_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_, tar) = layer(dir.path(), 1);
    let diff_id = sha(&tar);
    let produced = producers(dir.path(), &tar);
    for p in &produced {
        let file = dir.path().join("blob");
        fs::write(&file, &p.blob).unwrap();
        let info = cli_json(&store, &["put", "--exact-now", path_arg(&file)]);
        let what = &p.name;
        assert_eq!(info["digest"], diff_id, "{what}: DiffID");
        let digest = sha(&p.blob);
        assert_eq!(info["compressed_digest"], digest, "{what}");
        let method = info["blob_method"].as_str().unwrap_or("none");
        assert!(
            p.methods.contains(&method),
            "{what}: kept by {method}, expected one of {:?}: {info}",
            p.methods
        );
        let extra = info["blob_extra_bytes"].as_u64().unwrap();
        let percent = 100.0 * extra as f64 / p.blob.len() as f64;
        assert!(
            percent <= p.max_extra_percent,
            "{what}: {extra} extra bytes are {percent:.2}% of the blob, limit {}%: {info}",
            p.max_extra_percent
        );
        eprintln!("{what}: {method}, {extra} extra bytes ({percent:.3}%)");
        assert_same_bytes(&cli_get(&store, &digest), &p.blob, &format!("{what}: get"));
        assert_same_bytes(
            &cli_ok(&store, &["get", "--tar", &digest]).stdout,
            &tar,
            &format!("{what}: get --tar"),
        );
    }
    assert_same_bytes(&cli_get(&store, &diff_id), &tar, "get DiffID");
    // Through the library too, for one of each kind.
    let lib = Store::open(&store).unwrap();
    for p in produced
        .iter()
        .filter(|p| p.name.contains("-6") || p.name.contains("-3 F"))
    {
        let mut out = Vec::new();
        let digest: Digest = sha(&p.blob).parse().unwrap();
        let got = lib.get_blob(&digest, &mut out).unwrap();
        assert_eq!(got.digest.to_string(), diff_id);
        assert_eq!(got.via_alias, Some(digest));
        assert_same_bytes(&out, &p.blob, &format!("{}: Store::get_blob", p.name));
    }
    drop(lib);
    let report = assert_verify_clean(&store, true, "after every producer");
    assert_eq!(
        report["blobs"].as_u64(),
        Some(produced.len() as u64),
        "{report}"
    );
    let stat = stat_json(&store);
    let methods: Vec<&str> = stat["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains(&"preflate") && methods.contains(&"zstd"),
        "{stat}"
    );
}

/// skopeo writes gzip (pgzip), zstd (klauspost) and, where it can,
/// zstd:chunked layers; importing its layout and exporting it again gives
/// every blob back byte for byte, and the same digests to skopeo.
#[test]
fn skopeo_layouts_come_back_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (_, base) = layer(dir.path(), 2);
    let (_, app) = layer(dir.path(), 3);
    let archive = dir.path().join("src.docker.tar");
    docker_archive(&archive, &["test/exact:1"], &[&base, &app]);
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    for format in ["gzip", "zstd", "zstd:chunked"] {
        let layout = dir
            .path()
            .join(format!("layout-{}", format.replace(':', "-")));
        let copy = tool("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--dest-compress-format",
                format,
                &docker_ref(&archive, None),
                &oci_ref(&layout, "test/exact:1"),
            ])
            .output()
            .expect("running skopeo");
        if !copy.status.success() {
            let stderr = String::from_utf8_lossy(&copy.stderr);
            assert!(
                format == "zstd:chunked",
                "skopeo copy --dest-compress-format {format} failed: {stderr}"
            );
            eprintln!("this skopeo cannot write {format}: {stderr}");
            continue;
        }
        let name = format!("exact/{}:1", format.replace(':', "-"));
        let report = store.import_image(&layout, Some(&name)).unwrap();
        let stored_digest = report.images[0].digest.to_string();
        let out = dir
            .path()
            .join(format!("export-{}", format.replace(':', "-")));
        let rep = store
            .export_images(
                std::slice::from_ref(&name),
                layerstore::ExportFormat::Oci,
                &out,
            )
            .unwrap();
        let e = &rep.images[0];
        assert!(!e.digest_changed, "{format}: {e:?}");
        assert_eq!(e.note, None, "{format}");
        let mut blobs = 0;
        for entry in fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            blobs += 1;
            let exported = out.join("blobs/sha256").join(entry.file_name());
            assert_same_bytes(
                &fs::read(&exported).unwrap_or_default(),
                &fs::read(entry.path()).unwrap(),
                &format!("{format}: exported blob {:?}", entry.file_name()),
            );
        }
        assert_eq!(blobs, 4, "{format}: manifest, config and two layers");
        let source = skopeo_inspect(&[&oci_ref(&layout, "test/exact:1")]);
        let exported = skopeo_inspect(&[&oci_ref(&out, &name)]);
        assert_eq!(exported["Digest"], source["Digest"], "{format}");
        assert_eq!(exported["Digest"], stored_digest, "{format}");
        assert_eq!(exported["Layers"], source["Layers"], "{format}");
    }
    let stat = store.stats().unwrap();
    eprintln!("skopeo blobs kept as: {:?}", stat.blobs);
    drop(store);
    assert_verify_clean(&store_dir, true, "after the skopeo layouts");
}

/// umoci's gzip layers (pgzip with 256 KiB blocks) survive import/export.
#[test]
fn umoci_layout_comes_back_byte_identical() {
    let umoci = require_tool("umoci");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:v1", layout.display());
    run_ok(Command::new(&umoci).args(["init", "--layout"]).arg(&layout));
    run_ok(Command::new(&umoci).args(["new", "--image", &image]));
    let bundle = dir.path().join("bundle");
    run_ok(
        Command::new(&umoci)
            .args(["unpack", "--rootless", "--image", &image])
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    for i in 0..12u64 {
        let data = if i % 2 == 0 {
            text_bytes(500 + i, 120_000)
        } else {
            mixed_bytes(500 + i, 90_000)
        };
        fs::create_dir_all(rootfs.join("srv")).unwrap();
        fs::write(rootfs.join(format!("srv/f{i}")), data).unwrap();
    }
    run_ok(
        Command::new(&umoci)
            .args(["repack", "--image", &image])
            .arg(&bundle),
    );
    let store_dir = dir.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    store.import_image(&layout, Some("umoci:v1")).unwrap();
    let out = dir.path().join("export");
    let rep = store
        .export_images(&["umoci:v1".into()], layerstore::ExportFormat::Oci, &out)
        .unwrap();
    assert!(!rep.images[0].digest_changed, "{:?}", rep.images[0]);
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(rep.images[0].exported_digest.to_string(), manifest_digest);
    let manifest: Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(hex(manifest_digest))).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for l in layers {
        let d = l["digest"].as_str().unwrap();
        assert_same_bytes(
            &fs::read(out.join("blobs/sha256").join(hex(d))).unwrap(),
            &fs::read(layout.join("blobs/sha256").join(hex(d))).unwrap(),
            &format!("umoci layer {d}"),
        );
    }
}

/// A flipped byte in what rebuilds a blob (its description, or a chunk of
/// its extra data) makes `get` of the blob fail, loudly and without
/// output to a file, while the tar still comes back.
#[test]
fn damaged_reconstruction_data_fails_loudly_and_the_tar_survives() {
    for damage in ["description", "extra data"] {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (_, tar) = layer(dir.path(), 4);
        let blob = gzip(&tar);
        let file = dir.path().join("layer.tar.gz");
        fs::write(&file, &blob).unwrap();
        // The tar first, so that the gzip put writes only its blob's data.
        fs::write(dir.path().join("layer.tar"), &tar).unwrap();
        cli_ok(&store, &["put", path_arg(&dir.path().join("layer.tar"))]);
        let before = pack_files(&store);
        let info = cli_json(&store, &["put", "--exact-now", path_arg(&file)]);
        assert_eq!(info["blob_method"], "preflate", "{info}");
        let new: Vec<String> = pack_files(&store).difference(&before).cloned().collect();
        assert_eq!(new.len(), 1, "one pack for the blob's data: {new:?}");
        let path = store.join("packs").join(&new[0]);
        let mut bytes = fs::read(&path).unwrap();
        let frames = pack_frames(&bytes);
        let kind = if damage == "description" { 3 } else { 1 };
        let frame = frames
            .iter()
            .find(|f| f.kind == kind)
            .unwrap_or_else(|| panic!("no frame of kind {kind} in {frames:?}"));
        bytes[frame.payload_start + frame.payload_len / 2] ^= 0x20;
        fs::write(&path, bytes).unwrap();

        let digest = sha(&blob);
        let out_file = dir.path().join("out.tar.gz");
        let out = cli_run(&store, &["get", &digest, "-o", path_arg(&out_file)]);
        let (stderr, _) = expect_cli_error(&out, &format!("get of a blob with damaged {damage}"));
        assert!(stderr.contains(&digest), "{damage}: {stderr}");
        assert!(
            !out_file.exists(),
            "{damage}: a failed get left {out_file:?}"
        );
        assert!(
            tmp_files(dir.path()).is_empty(),
            "{damage}: temporary files left"
        );
        assert_same_bytes(
            &cli_ok(&store, &["get", "--tar", &digest]).stdout,
            &tar,
            &format!("{damage}: the tar"),
        );
        let (ok, report) = verify(&store, true, false);
        assert!(
            !ok,
            "{damage}: verify --full passed a damaged blob: {report}"
        );
        let problems = findings(&report, "problems");
        assert!(
            problems
                .iter()
                .any(|(s, _)| s.contains(&digest) || s.starts_with("chunk ")),
            "{damage}: {problems:?}"
        );
    }
}

/// gc keeps what rebuilds a blob as long as its layer lives; repair after
/// a lost index brings the exact blob back; a tar-only put says how to get
/// the tar, and a later exact put of the blob upgrades it.
#[test]
fn gc_repair_and_tar_only_keep_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (_, tar) = layer(dir.path(), 5);
    let (_, other) = layer(dir.path(), 6);
    let blob = gzip(&tar);
    let zst = zstd(&other);
    let gz_file = dir.path().join("a.tar.gz");
    let zst_file = dir.path().join("b.tar.zst");
    fs::write(&gz_file, &blob).unwrap();
    fs::write(&zst_file, &zst).unwrap();

    // Tar only: the compressed digest names the layer, but its bytes are
    // not kept; the error says what to do.
    let v = cli_json(&store, &["put", "--tar-only", path_arg(&gz_file)]);
    assert_eq!(v["blob_method"], Value::Null, "{v}");
    let err = cli_err(&store, &["get", &sha(&blob)]);
    assert!(err.contains("--tar") && err.contains(&sha(&blob)), "{err}");
    assert_same_bytes(
        &cli_ok(&store, &["get", "--tar", &sha(&blob)]).stdout,
        &tar,
        "tar-only blob as tar",
    );
    let stat = stat_json(&store);
    assert_eq!(stat["blobs"][0]["method"], "tar-only", "{stat}");
    // The same blob put normally becomes exact.
    let v = cli_json(&store, &["put", "--exact-now", path_arg(&gz_file)]);
    assert_eq!(v["blob_method"], "preflate", "{v}");
    assert_same_bytes(&cli_get(&store, &sha(&blob)), &blob, "upgraded blob");

    cli_put_json(&store, &zst_file);
    // gc with nothing to collect keeps both blobs exact; removing the
    // other layer drops its blob with it.
    cli_ok(&store, &["gc", "--rewrite-below", "100"]);
    assert_same_bytes(&cli_get(&store, &sha(&blob)), &blob, "gzip blob after gc");
    assert_same_bytes(&cli_get(&store, &sha(&zst)), &zst, "zstd blob after gc");
    cli_ok(&store, &["rm", &sha(&other)]);
    cli_ok(&store, &["gc", "--rewrite-below", "100"]);
    assert_same_bytes(
        &cli_get(&store, &sha(&blob)),
        &blob,
        "gzip blob after gc of the other",
    );
    let err = cli_err(&store, &["get", &sha(&zst)]);
    assert!(err.contains("not found") || err.contains("no "), "{err}");
    assert_verify_clean(&store, true, "after gc");

    // Lose the index: repair restores the layer and its exact blob.
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = fs::remove_file(store.join(name));
    }
    let (_, report) = verify(&store, false, true);
    let repaired = strings(&report, "repaired");
    assert!(
        repaired.iter().any(|r| r.contains(&sha(&blob))),
        "repair did not restore the blob: {report}"
    );
    assert_same_bytes(
        &cli_get(&store, &sha(&blob)),
        &blob,
        "gzip blob after repair",
    );
    assert_verify_clean(&store, true, "after repair");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 24,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Random layers gzipped by flate2 at every level, in one or two
    /// members: each comes back exact (by preflate or verbatim), never
    /// wrong, and its tar too.
    #[test]
    fn random_gzip_streams_come_back_exact(
        seed in 0u64..1_000_000,
        level in 0u32..=9,
        files in 1usize..6,
        split in proptest::option::of(1usize..100),
    ) {
        use std::io::Write as _;
        let mut rng = Rng::new(seed);
        let contents: Vec<(String, Vec<u8>)> = (0..files)
            .map(|i| {
                let n = rng.range(0, 120_000) as usize;
                let data = match rng.below(3) {
                    0 => text_bytes(seed + i as u64, n),
                    1 => rng.bytes(n),
                    _ => partly_repetitive(seed + i as u64, n),
                };
                (format!("f{i}"), data)
            })
            .collect();
        let tar = tar_layer(&contents);
        let gz = |data: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let blob = match split {
            Some(percent) => {
                let at = tar.len() * percent / 100;
                let mut b = gz(&tar[..at]);
                b.extend(gz(&tar[at..]));
                b
            }
            None => gz(&tar),
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let exact_now = layerstore::PutOptions {
            exact_now: true,
            ..layerstore::PutOptions::default()
        };
        let info = store.put_layer_with(&blob[..], &exact_now).unwrap();
        let method = info.blob_method.clone().unwrap_or_default();
        proptest::prop_assert!(method == "preflate" || method == "verbatim", "{:?}", info);
        let mut out = Vec::new();
        store.get_blob(&info.compressed_digest.unwrap(), &mut out).unwrap();
        proptest::prop_assert!(out == blob, "level {} split {:?}: blob differs", level, split);
        let mut back = Vec::new();
        store.get_layer(&info.digest, &mut back).unwrap();
        proptest::prop_assert!(back == tar);
    }
}

/// A put keeps a gzip blob verbatim (fast) and marks it pending; gc finds
/// the cheaper method, and the verbatim bytes go. A gc killed just before
/// it commits a conversion leaves the blob exact and still pending; the
/// next gc converts it.
#[test]
fn gc_converts_pending_blobs_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (tar_path, tar) = layer(dir.path(), 7);
    let blob = gzip(&tar);
    let gz_file = dir.path().join("a.tar.gz");
    fs::write(&gz_file, &blob).unwrap();
    cli_ok(&store, &["put", path_arg(&tar_path)]);
    let v = cli_put_json(&store, &gz_file);
    assert_eq!(
        (v["blob_method"].as_str(), v["blob_pending"].as_bool()),
        (Some("verbatim"), Some(true)),
        "{v}"
    );
    assert!(
        v["added_bytes"].as_u64().unwrap() as usize >= blob.len() / 2,
        "{v}"
    );
    assert_same_bytes(&cli_get(&store, &sha(&blob)), &blob, "pending blob");
    let stat = stat_json(&store);
    assert_eq!(stat["blobs"][0]["pending"], 1, "{stat}");
    let before = stat["pack_bytes"].as_u64().unwrap();

    // Killed just before the conversion commits: nothing changes.
    let out = cli(&store)
        .args(["gc"])
        .env("LAYERSTORE_CRASH_AT", "convert-before-commit")
        .output()
        .unwrap();
    assert!(!out.status.success(), "gc was not killed");
    assert_same_bytes(
        &cli_get(&store, &sha(&blob)),
        &blob,
        "blob after a killed gc",
    );
    assert_eq!(stat_json(&store)["blobs"][0]["pending"], 1);
    assert_verify_clean(&store, true, "after a killed conversion");

    let report = cli_json(&store, &["gc"]);
    assert_eq!(report["blobs_converted"], 1, "{report}");
    let stat = stat_json(&store);
    assert_eq!(stat["blobs"][0]["method"], "preflate", "{stat}");
    assert_eq!(stat["blobs"][0]["pending"], 0, "{stat}");
    let after = stat["pack_bytes"].as_u64().unwrap();
    assert!(
        after + (blob.len() as u64) / 2 < before,
        "gc did not drop the verbatim copy: {before} -> {after} bytes of packs"
    );
    assert_same_bytes(&cli_get(&store, &sha(&blob)), &blob, "converted blob");
    assert_verify_clean(&store, true, "after conversion");
    // Nothing left to convert.
    let report = cli_json(&store, &["gc"]);
    assert_eq!(report["blobs_converted"], 0, "{report}");
}

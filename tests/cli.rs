//! The command line: put (file, stdin, --json), get (stdout, -o, by
//! compressed digest), ls, rm, stat, and LAYERSTORE_DIR.

mod support;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use layerstore::Digest;
use support::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A GNU tar archive of a small tree: some files, a link, a long name.
fn small_layer(dir: &Path, seed: u64) -> Vec<u8> {
    let root = dir.join(format!("tree{seed}"));
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/config"), text_bytes(seed, 20_000)).unwrap();
    fs::write(root.join("data.bin"), random_bytes(seed + 1, 400_000)).unwrap();
    fs::write(root.join("mixed.bin"), partly_repetitive(seed + 2, 600_000)).unwrap();
    fs::write(root.join(format!("{}.txt", "n".repeat(130))), b"long name").unwrap();
    std::os::unix::fs::symlink("etc/config", root.join("link")).unwrap();
    gnu_tar_create(&root, &dir.join(format!("layer{seed}.tar")), &[])
}

/// sha256 as printed by coreutils, independent of the crate under test.
fn sha256sum(path: &Path) -> String {
    let out = run_ok(tool("sha256sum").arg(path));
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

#[test]
fn put_and_get_text_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tar = small_layer(dir.path(), 1);
    let tar_path = dir.path().join("layer.tar");
    fs::write(&tar_path, &tar).unwrap();
    let gz_path = dir.path().join("layer.tar.gz");
    fs::write(&gz_path, gzip(&tar)).unwrap();

    // Plain tar: the DiffID is the file's sha256 (checked with coreutils),
    // alone on stdout; the summary goes to stderr.
    let out = cli_ok(&store, &["put", tar_path.to_str().unwrap()]);
    let diff_id = first_line_digest(&out.stdout);
    assert_eq!(diff_id.to_string(), sha256sum(&tar_path));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{diff_id}\n"),
        "put's stdout is not the DiffID alone"
    );
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        !summary.contains("compressed (") && summary.contains("uncompressed"),
        "plain tar put summary: {summary}"
    );

    // The gzip form: same DiffID alone on stdout, and its own digest first
    // in the summary.
    let out = cli_ok(&store, &["put", gz_path.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{diff_id}\n"),
        "gzip put's stdout is not the DiffID alone"
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let gz_digest = sha256sum(&gz_path);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "compressed (gzip) {gz_digest}: kept exactly by verbatim"
        )),
        "put summary: {text}"
    );
    assert!(
        text.contains("already stored"),
        "second put of one layer: {text}"
    );

    // get by DiffID, to stdout and to a file.
    assert_same_bytes(&cli_get(&store, &diff_id.to_string()), &tar, "get DiffID");
    let out_file = dir.path().join("out").join("back.tar");
    fs::create_dir_all(out_file.parent().unwrap()).unwrap();
    let stdout = cli_ok(
        &store,
        &[
            "get",
            &diff_id.to_string(),
            "-o",
            out_file.to_str().unwrap(),
        ],
    )
    .stdout;
    assert!(stdout.is_empty(), "get -o wrote to stdout too");
    assert_same_bytes(&fs::read(&out_file).unwrap(), &tar, "get -o");
    assert_eq!(
        fs::read_dir(out_file.parent().unwrap()).unwrap().count(),
        1,
        "get -o left temporary files"
    );

    // get by the compressed blob's digest: the blob itself, byte for byte.
    let gz = fs::read(&gz_path).unwrap();
    assert_same_bytes(&cli_get(&store, &gz_digest), &gz, "get compressed digest");
    let blob_file = dir.path().join("out").join("back.tar.gz");
    cli_ok(
        &store,
        &["get", &gz_digest, "-o", blob_file.to_str().unwrap()],
    );
    assert_same_bytes(
        &fs::read(&blob_file).unwrap(),
        &gz,
        "get compressed digest -o",
    );

    // get --tar of the compressed digest: the tar, and a note on stderr.
    let out = cli_run(&store, &["get", "--tar", &gz_digest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_bytes(&out.stdout, &tar, "get --tar compressed digest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&gz_digest)
            && stderr.contains("compressed blob")
            && stderr.contains(&diff_id.to_string()),
        "stderr of get by compressed digest: {stderr:?}"
    );

    // A bare 64-digit hex digest is accepted too.
    assert_same_bytes(&cli_get(&store, &diff_id.hex()), &tar, "get bare hex");
}

#[test]
fn put_json_reports_the_put() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tar = small_layer(dir.path(), 2);
    let zst = zstd(&tar);
    let path = dir.path().join("layer.tar.zst");
    fs::write(&path, &zst).unwrap();

    let v = cli_put_json(&store, &path);
    assert_eq!(v["digest"], Digest::of(&tar).to_string(), "{v}");
    assert_eq!(v["size"], tar.len() as u64, "{v}");
    assert_eq!(v["compression"], "zstd", "{v}");
    assert_eq!(v["compressed_digest"], Digest::of(&zst).to_string(), "{v}");
    assert_eq!(v["input_size"], zst.len() as u64, "{v}");
    assert_eq!(v["new_layer"], true, "{v}");
    let chunks = v["chunks"].as_u64().unwrap();
    let new_chunks = v["new_chunks"].as_u64().unwrap();
    assert!(
        chunks >= 10 && new_chunks > 0 && new_chunks <= chunks,
        "{v}"
    );
    let added = v["added_bytes"].as_u64().unwrap();
    let stat = stat_json(&store);
    assert_eq!(
        added,
        stat["pack_bytes"].as_u64().unwrap(),
        "first put: added_bytes = packs"
    );

    let again = cli_put_json(&store, &path);
    assert_eq!(again["digest"], v["digest"]);
    assert_eq!(again["added_bytes"], 0, "{again}");
    assert_eq!(again["new_chunks"], 0, "{again}");
    assert_eq!(again["new_layer"], false, "{again}");
}

#[test]
fn put_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let tar = small_layer(dir.path(), 3);
    let gz = gzip_two_members(&tar);

    let out = run_with_input(cli(&store).args(["put", "-"]), &gz);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(first_line_digest(&out.stdout), Digest::of(&tar));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(&format!("compressed (gzip) {}", Digest::of(&gz))),
        "{text}"
    );

    let plain = small_layer(dir.path(), 4);
    let out = run_with_input(cli(&store).args(["put", "-", "--json"]), &plain);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["digest"], Digest::of(&plain).to_string());
    assert_eq!(v["compressed_digest"], serde_json::Value::Null);

    assert_same_bytes(
        &cli_get(&store, &Digest::of(&tar).to_string()),
        &tar,
        "stdin gzip",
    );
    assert_same_bytes(
        &cli_get(&store, &Digest::of(&gz).to_string()),
        &gz,
        "stdin compressed blob",
    );
    assert_same_bytes(
        &cli_ok(&store, &["get", "--tar", &Digest::of(&gz).to_string()]).stdout,
        &tar,
        "stdin compressed blob as tar",
    );
    assert_same_bytes(
        &cli_get(&store, &Digest::of(&plain).to_string()),
        &plain,
        "stdin tar",
    );
}

#[test]
fn ls_json_lists_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    layerstore::Store::open(&store).unwrap();
    assert!(ls_json(&store).is_empty(), "a new store lists no layers");

    let t0 = now();
    let a = small_layer(dir.path(), 5);
    let b = small_layer(dir.path(), 6);
    let b_gz = gzip(&b);
    let pa = dir.path().join("a.tar");
    let pb = dir.path().join("b.tar.gz");
    fs::write(&pa, &a).unwrap();
    fs::write(&pb, &b_gz).unwrap();
    cli_ok(&store, &["put", pa.to_str().unwrap()]);
    cli_ok(&store, &["put", pb.to_str().unwrap()]);
    let t1 = now();

    let layers = ls_json(&store);
    assert_eq!(layers.len(), 2, "{layers:?}");
    let pack_bytes = stat_json(&store)["pack_bytes"].as_u64().unwrap();
    let mut share_sum = 0;
    for (l, tar) in layers.iter().zip([&a, &b]) {
        assert_eq!(
            l["digest"],
            Digest::of(tar).to_string(),
            "listed oldest first: {l}"
        );
        assert_eq!(l["size"], tar.len() as u64, "{l}");
        let share = l["stored_share"].as_u64().expect("stored_share");
        assert!(
            share > 0 && share <= pack_bytes,
            "stored_share {share} of {pack_bytes}: {l}"
        );
        share_sum += share;
        let created = l["created"].as_i64().expect("created");
        assert!(
            (t0 - 2..=t1 + 2).contains(&created),
            "created {created} not between {t0} and {t1}"
        );
        assert_eq!(l["pinned"], true, "{l}");
        assert!(l["chunks"].as_u64().unwrap() > 0, "{l}");
    }
    assert!(
        share_sum <= pack_bytes + 2,
        "shares {share_sum} exceed packs {pack_bytes}"
    );
    assert_eq!(layers[0]["compressed_digests"], serde_json::json!([]));
    assert_eq!(
        layers[1]["compressed_digests"],
        serde_json::json!([Digest::of(&b_gz).to_string()])
    );

    // The table lists the same digests.
    let table = cli_text(&store, &["ls"]);
    for tar in [&a, &b] {
        assert!(table.contains(&Digest::of(tar).to_string()), "{table}");
    }
}

#[test]
fn rm_removes_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = small_layer(dir.path(), 7);
    let b = small_layer(dir.path(), 8);
    let c = small_layer(dir.path(), 9);
    let c_zst = zstd(&c);
    for (name, data) in [("a.tar", &a), ("b.tar", &b), ("c.tar.zst", &c_zst)] {
        let p = dir.path().join(name);
        fs::write(&p, data).unwrap();
        cli_ok(&store, &["put", p.to_str().unwrap()]);
    }
    let (da, db, dc) = (Digest::of(&a), Digest::of(&b), Digest::of(&c));

    let out = cli_text(&store, &["rm", &da.to_string()]);
    assert_eq!(out.trim(), da.to_string());
    let listed: Vec<String> = ls_json(&store)
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![db.to_string(), dc.to_string()]);
    assert_eq!(stat_json(&store)["layers"], 2);

    let (stderr, stdout) = expect_cli_error(
        &cli_run(&store, &["get", &da.to_string()]),
        "get removed layer",
    );
    assert!(
        stdout.is_empty(),
        "get of a removed layer wrote {} bytes",
        stdout.len()
    );
    assert!(
        stderr.contains(&da.to_string()) && stderr.contains("not found"),
        "{stderr}"
    );
    let (stderr, _) = expect_cli_error(
        &cli_run(&store, &["rm", &da.to_string()]),
        "rm removed layer",
    );
    assert!(
        stderr.contains(&da.to_string()) && stderr.contains("not found"),
        "{stderr}"
    );

    // rm by compressed digest removes the layer and its alias.
    let out = cli_text(&store, &["rm", &Digest::of(&c_zst).to_string()]);
    assert_eq!(out.trim(), dc.to_string());
    expect_cli_error(
        &cli_run(&store, &["get", &Digest::of(&c_zst).to_string()]),
        "get alias of removed layer",
    );
    assert_eq!(stat_json(&store)["aliases"], 0);

    // What is left is intact.
    assert_same_bytes(&cli_get(&store, &db.to_string()), &b, "remaining layer");

    // A layer that was removed can be put again.
    let pa = dir.path().join("a.tar");
    let v = cli_put_json(&store, &pa);
    assert_eq!(v["digest"], da.to_string());
    assert_eq!(v["new_layer"], true, "{v}");
    assert_same_bytes(
        &cli_get(&store, &da.to_string()),
        &a,
        "layer put again after rm",
    );

    // Several digests at once.
    let out = cli_text(&store, &["rm", &da.to_string(), &db.to_string()]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![da.to_string(), db.to_string()]
    );
    assert!(ls_json(&store).is_empty());
}

#[test]
fn stat_json_reports_figures() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    layerstore::Store::open(&store).unwrap();
    let empty = stat_json(&store);
    assert_eq!(empty["layers"], 0, "{empty}");
    assert_eq!(empty["logical_bytes"], 0, "{empty}");
    assert_eq!(empty["chunks"], 0, "{empty}");
    assert_eq!(empty["packs"], 0, "{empty}");

    let a = small_layer(dir.path(), 10);
    let b = small_layer(dir.path(), 11);
    for (name, data) in [("a.tar", &a), ("b.tar", &b)] {
        let p = dir.path().join(name);
        fs::write(&p, data).unwrap();
        cli_ok(&store, &["put", p.to_str().unwrap()]);
    }
    let s = stat_json(&store);
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("stat --json lacks {k}: {s}"))
    };
    assert_eq!(n("layers"), 2);
    assert_eq!(n("logical_bytes"), (a.len() + b.len()) as u64);
    assert!(n("chunks") >= 20, "{s}");
    assert!(n("packs") >= 2, "{s}");
    let pack_bytes = n("pack_bytes");
    let on_disk: u64 = fs::read_dir(store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(pack_bytes, on_disk, "pack_bytes vs files in packs/");
    let stored = n("stored_bytes");
    assert!(stored >= pack_bytes, "{s}");
    let ratio = s["dedup_ratio"].as_f64().expect("dedup_ratio");
    let expected = n("logical_bytes") as f64 / stored as f64;
    assert!(
        (ratio - expected).abs() < 1e-9 * expected,
        "dedup_ratio {ratio}, expected {expected}"
    );
    assert_eq!(
        Path::new(s["store"].as_str().expect("store path")),
        store.as_path(),
        "{s}"
    );

    let text = cli_text(&store, &["stat"]);
    assert!(text.contains("layers") && text.contains('2'), "{text}");
}

#[test]
fn layerstore_dir_selects_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let env_store = dir.path().join("env-store");
    let other = dir.path().join("other-store");
    let tar = small_layer(dir.path(), 12);
    let path = dir.path().join("layer.tar");
    fs::write(&path, &tar).unwrap();

    let run = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("LAYERSTORE_DIR", &env_store)
            .env_remove("XDG_DATA_HOME")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["put", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = first_line_digest(&out.stdout);
    assert!(
        env_store.join("index.db").is_file(),
        "LAYERSTORE_DIR store was not created"
    );
    assert_eq!(
        ls_json(&env_store).len(),
        1,
        "the layer went into LAYERSTORE_DIR"
    );

    let out = run(&["stat", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(Path::new(s["store"].as_str().unwrap()), env_store.as_path());
    assert_eq!(s["layers"], 1);
    let out = run(&["get", &digest.to_string()]);
    assert!(out.status.success());
    assert_same_bytes(&out.stdout, &tar, "get through LAYERSTORE_DIR");

    // --store wins over the environment.
    layerstore::Store::open(&other).unwrap();
    let out = run(&["--store", other.to_str().unwrap(), "ls", "--json"]);
    assert!(out.status.success());
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed.is_empty(),
        "--store must take precedence over LAYERSTORE_DIR"
    );
    assert!(other.join("index.db").is_file());
}

/// A reader that closes stdout early (`| head`) ends the command quietly:
/// no panic, no error message, the status of a process killed by SIGPIPE.
#[test]
fn closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for seed in 0..3 {
        let path = dir.path().join(format!("l{seed}.tar"));
        fs::write(&path, small_layer(dir.path(), 10 + seed)).unwrap();
        cli_ok(&store, &["put", path.to_str().unwrap()]);
    }
    let digest = ls_json(&store)[0]["digest"].as_str().unwrap().to_string();
    for args in [
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["image", "ls"],
        vec!["stat"],
        vec!["get", digest.as_str()],
    ] {
        // A pipe whose reader is gone before the command writes.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = cli(&store)
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "{args:?}: stderr {stderr:?}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {:?}", out.status);
    }
}

/// Only commands that store data create a store, and only in an absent or
/// empty directory; the others say there is no store and create nothing.
#[test]
fn only_writing_commands_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo");
    for args in [
        &["verify"][..],
        &["ls"],
        &["stat"],
        &["gc"],
        &["image", "ls"],
        &["verify", "--repair"],
    ] {
        let err = cli_err(&typo, args);
        assert!(err.contains("no store at"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
    // A directory with other files in it is not made into a store.
    let foreign = dir.path().join("foreign");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("notes"), b"mine").unwrap();
    let layer = dir.path().join("layer.tar");
    fs::write(&layer, small_layer(dir.path(), 20)).unwrap();
    let err = cli_err(&foreign, &["put", layer.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(
        fs::read_dir(&foreign).unwrap().count(),
        1,
        "a refused put left files behind"
    );
    // An empty directory, or none, becomes a store on the first put.
    let empty = dir.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    cli_ok(&empty, &["put", layer.to_str().unwrap()]);
    cli_ok(&empty, &["ls"]);
}

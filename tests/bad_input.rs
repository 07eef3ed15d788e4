//! Bad input through the CLI: every failure exits non-zero with a message
//! naming the input or digest, changes nothing in the store, and leaves
//! every earlier layer intact.
//!
//! Unreadable input: the tests run as root, which reads a chmod 000 file
//! anyway, so "unreadable" is covered by a directory given as the layer
//! file and by a path that does not exist (no FIFO, which would block).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use layerstore::Digest;
use support::*;

/// A store holding two layers (one put plain, one as gzip), and their tars.
struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    layers: Vec<(Digest, Vec<u8>)>,
    /// Compressed digest, its layer's DiffID, and the compressed blob.
    aliases: Vec<(Digest, Digest, Vec<u8>)>,
    before: Snapshot,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let tree = dir.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("text"), text_bytes(1, 500_000)).unwrap();
        fs::write(tree.join("random"), random_bytes(2, 200_000)).unwrap();
        let a = gnu_tar_create(&tree, &dir.path().join("a.tar"), &[]);
        fs::write(tree.join("more"), partly_repetitive(3, 800_000)).unwrap();
        let b = gnu_tar_create(&tree, &dir.path().join("b.tar"), &["--format=posix"]);
        let b_gz = dir.path().join("b.tar.gz");
        let b_blob = gzip(&b);
        fs::write(&b_gz, &b_blob).unwrap();
        cli_ok(&store, &["put", dir.path().join("a.tar").to_str().unwrap()]);
        let v = cli_put_json(&store, &b_gz);
        let alias = Digest::parse(v["compressed_digest"].as_str().unwrap()).unwrap();
        let before = snapshot(&store);
        assert_eq!(before.layers, 2);
        Fixture {
            store,
            layers: vec![(Digest::of(&a), a), (Digest::of(&b), b.clone())],
            aliases: vec![(alias, Digest::of(&b), b_blob)],
            before,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file in the fixture directory holding `data`.
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, data).unwrap();
        p
    }

    /// A tar that is not in the store yet.
    fn new_tar(&self) -> Vec<u8> {
        let tree = self.path("newtree");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("new.txt"), text_bytes(9, 900_000)).unwrap();
        fs::write(tree.join("new.bin"), random_bytes(10, 300_000)).unwrap();
        gnu_tar_create(&tree, &self.path("new.tar"), &[])
    }

    fn run(&self, args: &[&str]) -> Output {
        cli_run(&self.store, args)
    }

    /// The store is exactly as before and every layer comes back exact.
    #[track_caller]
    fn assert_unchanged(&self, what: &str) {
        let now = snapshot(&self.store);
        assert_eq!(now, self.before, "{what}: the store changed");
        for (digest, tar) in &self.layers {
            assert_same_bytes(
                &cli_get(&self.store, &digest.to_string()),
                tar,
                &format!("{what}: earlier layer {digest}"),
            );
        }
        for (alias, layer, blob) in &self.aliases {
            let tar = &self.layers.iter().find(|(d, _)| d == layer).unwrap().1;
            assert_same_bytes(
                &cli_get(&self.store, &alias.to_string()),
                blob,
                &format!("{what}: earlier compressed blob {alias}"),
            );
            assert_same_bytes(
                &cli_ok(&self.store, &["get", "--tar", &alias.to_string()]).stdout,
                tar,
                &format!("{what}: the tar of earlier compressed blob {alias}"),
            );
        }
    }
}

#[track_caller]
fn assert_mentions(stderr: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(
            stderr.contains(n),
            "{what}: stderr does not mention {n:?}: {stderr}"
        );
    }
}

fn put_fails(f: &Fixture, path: &Path, what: &str, needles: &[&str]) {
    let p = path.to_str().unwrap();
    let (stderr, stdout) = expect_cli_error(&f.run(&["put", p]), what);
    assert!(
        stdout.is_empty(),
        "{what}: put printed {:?}",
        String::from_utf8_lossy(&stdout)
    );
    let mut all = vec![p];
    all.extend_from_slice(needles);
    assert_mentions(&stderr, &all, what);
    f.assert_unchanged(what);
    // --json changes nothing about failing.
    let (stderr, _) = expect_cli_error(&f.run(&["put", p, "--json"]), what);
    assert_mentions(&stderr, &all, what);
    f.assert_unchanged(what);
}

#[test]
fn truncated_gzip() {
    let f = Fixture::new();
    let gz = gzip(&f.new_tar());
    for (name, cut) in [
        ("half.tar.gz", gz.len() / 2),
        ("no-trailer.tar.gz", gz.len() - 4),
    ] {
        let p = f.file(name, &gz[..cut]);
        put_fails(&f, &p, &format!("truncated gzip {name}"), &["gzip"]);
    }
}

/// xz and bzip2 layers are refused by name, never stored as opaque bytes
/// under a "DiffID" that is the hash of the compressed file.
#[test]
fn xz_and_bzip2_layers_are_refused() {
    let f = Fixture::new();
    let tar = f.new_tar();
    for (tool_name, file) in [("xz", "layer.tar.xz"), ("bzip2", "layer.tar.bz2")] {
        let out = run_with_input(tool(tool_name).arg("-c"), &tar);
        assert!(out.status.success(), "{tool_name} failed");
        let p = f.file(file, &out.stdout);
        put_fails(
            &f,
            &p,
            &format!("{tool_name} layer"),
            &[&format!("{tool_name}-compressed"), "decompress it first"],
        );
    }
}

#[test]
fn truncated_zstd() {
    let f = Fixture::new();
    let zst = zstd(&f.new_tar());
    let p = f.file("half.tar.zst", &zst[..zst.len() / 2]);
    put_fails(&f, &p, "truncated zstd", &["zstd"]);
}

#[test]
fn corrupt_zstd() {
    let f = Fixture::new();
    let mut zst = zstd(&f.new_tar());
    let mid = zst.len() / 2;
    for b in &mut zst[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let p = f.file("corrupt.tar.zst", &zst);
    put_fails(&f, &p, "corrupt zstd", &["zstd"]);
}

#[test]
fn corrupt_gzip() {
    let f = Fixture::new();
    let mut gz = gzip(&f.new_tar());
    let mid = gz.len() / 2;
    gz[mid] ^= 0x01;
    let p = f.file("corrupt.tar.gz", &gz);
    put_fails(&f, &p, "corrupt gzip", &["gzip"]);
}

#[test]
fn truncated_gzip_on_stdin() {
    let f = Fixture::new();
    let gz = gzip(&f.new_tar());
    let out = run_with_input(cli(&f.store).args(["put", "-"]), &gz[..gz.len() / 3]);
    let (stderr, _) = expect_cli_error(&out, "truncated gzip on stdin");
    assert_mentions(&stderr, &["stdin", "gzip"], "truncated gzip on stdin");
    f.assert_unchanged("truncated gzip on stdin");
}

#[test]
fn directory_instead_of_file() {
    let f = Fixture::new();
    let d = f.path("a-directory");
    fs::create_dir(&d).unwrap();
    put_fails(&f, &d, "directory as layer file", &["directory"]);
}

#[test]
fn nonexistent_file() {
    let f = Fixture::new();
    put_fails(&f, &f.path("no/such/layer.tar"), "nonexistent file", &[]);
}

#[test]
fn size_limit_exceeded() {
    let f = Fixture::new();
    let tar = f.new_tar();
    let p = f.file("new.tar.zst", &zstd(&tar));
    let what = "put --max-size 64K";
    let (stderr, _) = expect_cli_error(
        &f.run(&["put", p.to_str().unwrap(), "--max-size", "64K"]),
        what,
    );
    assert_mentions(&stderr, &[p.to_str().unwrap(), "limit"], what);
    f.assert_unchanged(what);
    // A limit the layer fits under lets it in.
    let v = f.run(&["put", p.to_str().unwrap(), "--max-size", "10M", "--json"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert_same_bytes(
        &cli_get(&f.store, &Digest::of(&tar).to_string()),
        &tar,
        "put under the limit",
    );
}

#[test]
fn malformed_digests() {
    let f = Fixture::new();
    let md5 = format!("md5:{}", "0".repeat(32));
    let upper = f.layers[0]
        .0
        .to_string()
        .to_uppercase()
        .replace("SHA256", "sha256");
    let short = format!("sha256:{}", &f.layers[0].0.hex()[..63]);
    for bad in [
        "sha256:xyz",
        md5.as_str(),
        "",
        upper.as_str(),
        short.as_str(),
    ] {
        for cmd in ["get", "rm"] {
            let what = format!("{cmd} {bad:?}");
            let (stderr, stdout) = expect_cli_error(&f.run(&[cmd, bad]), &what);
            assert!(stdout.is_empty(), "{what}: wrote to stdout");
            assert_mentions(&stderr, &["invalid digest", &format!("{bad:?}")], &what);
        }
        let out = f.path("malformed.tar");
        let what = format!("get {bad:?} -o FILE");
        expect_cli_error(&f.run(&["get", bad, "-o", out.to_str().unwrap()]), &what);
        assert!(!out.exists(), "{what}: created the output file");
    }
    f.assert_unchanged("malformed digests");
}

#[test]
fn absent_digest() {
    let f = Fixture::new();
    let absent = Digest::of(b"this layer was never put").to_string();
    for args in [vec!["get", absent.as_str()], vec!["rm", absent.as_str()]] {
        let what = format!("{args:?}");
        let (stderr, stdout) = expect_cli_error(&f.run(&args), &what);
        assert!(stdout.is_empty(), "{what}: wrote to stdout");
        assert_mentions(&stderr, &[&absent, "not found"], &what);
    }
    let out_dir = f.path("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("layer.tar");
    let what = "get absent -o FILE";
    let (stderr, _) =
        expect_cli_error(&f.run(&["get", &absent, "-o", out.to_str().unwrap()]), what);
    assert_mentions(&stderr, &[&absent, "not found"], what);
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "{what}: left a file behind"
    );
    f.assert_unchanged("absent digest");
}

/// `rm` with several digests, one of them absent: it fails naming the
/// absent one, and a layer not named stays.
#[test]
fn rm_several_with_one_absent() {
    let f = Fixture::new();
    let absent = Digest::of(b"never put").to_string();
    let first = f.layers[0].0.to_string();
    let what = "rm PRESENT ABSENT";
    let (stderr, _) = expect_cli_error(&f.run(&["rm", &first, &absent]), what);
    assert_mentions(&stderr, &[&absent, "not found"], what);
    // Every argument is checked before anything is removed.
    f.assert_unchanged(what);
    let (other, tar) = &f.layers[1];
    assert_same_bytes(
        &cli_get(&f.store, &other.to_string()),
        tar,
        "layer not named",
    );
}

/// A malformed digest anywhere in `rm`'s arguments should be rejected
/// before anything is removed, as for every other malformed digest.
#[test]
fn rm_with_one_malformed_digest_removes_nothing() {
    let f = Fixture::new();
    let first = f.layers[0].0.to_string();
    let what = "rm VALID sha256:xyz";
    let (stderr, _) = expect_cli_error(&f.run(&["rm", &first, "sha256:xyz"]), what);
    assert_mentions(&stderr, &["invalid digest", "sha256:xyz"], what);
    f.assert_unchanged(what);
}

/// `--max-size` is inclusive: a layer of exactly that many bytes goes in,
/// one byte less is refused.
#[test]
fn size_limit_boundary() {
    let f = Fixture::new();
    let tar = f.new_tar();
    let p = f.file("new.tar.gz", &gzip(&tar));
    let exact = tar.len().to_string();
    let less = (tar.len() - 1).to_string();
    let what = "put --max-size SIZE-1";
    let (stderr, _) = expect_cli_error(
        &f.run(&["put", p.to_str().unwrap(), "--max-size", &less]),
        what,
    );
    assert_mentions(&stderr, &[p.to_str().unwrap(), "limit", &less], what);
    f.assert_unchanged(what);
    let out = f.run(&["put", p.to_str().unwrap(), "--max-size", &exact]);
    assert!(
        out.status.success(),
        "put --max-size SIZE: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(first_line_digest(&out.stdout), Digest::of(&tar));
}

/// A tar cut short, one without end-of-archive blocks, and bytes that are
/// no tar at all are refused by default, naming the offset where the input
/// stops being a tar; `--raw` stores them exactly (issue: accepted with
/// exit 0 as "layers").
#[test]
fn broken_tars_are_refused_unless_raw() {
    let f = Fixture::new();
    let tar = f.new_tar();
    let cut_at = tar.len() / 2;
    let no_end = {
        let last = walk_tar(&tar).pop().unwrap();
        tar[..last.padded_end()].to_vec()
    };
    let cases: [(&str, &[u8], &str); 3] = [
        ("cut.tar", &tar[..cut_at], "cut short"),
        ("no-end.tar", &no_end, "end-of-archive"),
        ("hello", b"hello", "not a tar archive"),
    ];
    let mut files = Vec::new();
    for (name, bytes, why) in cases {
        let p = f.file(name, bytes);
        put_fails(
            &f,
            &p,
            &format!("broken tar {name}"),
            &[why, "--raw", "byte offset"],
        );
        files.push((name, p, bytes));
    }
    for (name, p, bytes) in files {
        let out = f.run(&["put", "--raw", p.to_str().unwrap()]);
        assert!(out.status.success(), "{name} --raw: {}", describe(&out));
        let digest = first_line_digest(&out.stdout);
        assert_eq!(digest, Digest::of(bytes), "{name}");
        assert_eq!(
            cli_get(&f.store, &digest.to_string()),
            bytes,
            "{name} --raw round trip"
        );
    }
}

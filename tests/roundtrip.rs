//! Byte-exact round trips: tars written by GNU tar (every format, sparse
//! variants), Python's tarfile, and the `tar` crate, malformed and non-tar
//! inputs; each as plain tar, gzip, two-member gzip and zstd, each form put
//! into a fresh store and read back by DiffID and by compressed digest.

mod support;

use std::fs;

use layerstore::{Compression, Digest};
use support::*;

// ---------------------------------------------------------------------------
// GNU tar
// ---------------------------------------------------------------------------

/// What a GNU tar archive of the generated tree must at least contain.
struct Expect {
    /// The format can store names longer than 255 bytes and FIFOs.
    long_names: bool,
    /// Bytes that must appear in the archive (format features asked for).
    markers: &'static [&'static str],
    /// Minimum number of old-GNU sparse ('S') headers.
    gnu_sparse_headers: usize,
}

fn gnu_tar_case(label: &str, args: &[&str], expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(&dir.path().join("tree"), 7);
    let archive = dir.path().join("layer.tar");
    let tar = gnu_tar_create(&tree.root, &archive, args);

    // The archive must be non-trivial whatever tar had to skip.
    assert!(
        tar.len() > 3 << 20,
        "{label}: archive is only {} bytes",
        tar.len()
    );
    let names = tar_list(&archive);
    let mut required = vec![
        "big.bin",
        "medium.bin",
        "medium.txt",
        "empty",
        "tiny.txt",
        "sizes/file_513",
        "a/b/c/d/e/f/deep.txt",
        "hardlink_to_medium.bin",
        "symlink_to_tiny",
        "dangling_symlink",
        "empty_dir",
    ];
    required.extend(tree.sparse_files.iter().map(String::as_str));
    let long_hardlink = format!("hardlink_{}", "h".repeat(110));
    if expect.long_names {
        required.extend([
            tree.very_long_path.as_str(),
            tree.long_ustar_path.as_str(),
            long_hardlink.as_str(),
            "symlink_with_long_target",
            "fifo",
            "with space & ünïcødé 名前.txt",
        ]);
    }
    for name in required {
        assert!(
            names.iter().any(|n| n == name),
            "{label}: archive lacks {name:?}; it lists {names:?}"
        );
    }
    for marker in expect.markers {
        assert!(
            tar.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{label}: archive lacks {marker:?}"
        );
    }
    let sparse_headers = walk_tar(&tar).iter().filter(|m| m.typeflag == b'S').count();
    assert!(
        sparse_headers >= expect.gnu_sparse_headers,
        "{label}: {sparse_headers} old-GNU sparse headers, expected at least {}",
        expect.gnu_sparse_headers
    );
    if expect.gnu_sparse_headers > 0 {
        // sparse_many has 40 regions: its header must continue in extension blocks.
        assert!(
            walk_tar(&tar)
                .iter()
                .any(|m| m.typeflag == b'S' && m.data_offset > m.header_offset + 512),
            "{label}: no sparse header with extension blocks"
        );
    }
    roundtrip_all_forms(&tar, label);
    payloads_are_chunked_on_their_own(&tar, &tree, &names, label);
}

/// Tar-aware splitting stays in step with the archive through every kind
/// of member: after putting the archive, a layer holding the same regular
/// files under other names, in another order, with other headers, stores
/// no new chunk.
fn payloads_are_chunked_on_their_own(tar: &[u8], tree: &Tree, names: &[String], label: &str) {
    let mut b = tar::Builder::new(Vec::new());
    let mut count = 0;
    for (i, rel) in tree.regular_files.iter().rev().enumerate() {
        if !names.iter().any(|n| n == rel) {
            continue; // this format could not store it
        }
        let data = fs::read(tree.root.join(rel)).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(1);
        b.append_data(&mut h, format!("other/{i}"), &data[..])
            .unwrap();
        count += 1;
    }
    assert!(count >= 15, "{label}: only {count} regular files archived");
    let files_only = b.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = layerstore::Store::open(dir.path().join("store")).unwrap();
    store.put_layer(tar).unwrap();
    let info = store.put_layer(&files_only[..]).unwrap();
    assert!(
        info.chunks >= count as u64,
        "{label}: {} chunks",
        info.chunks
    );
    assert_eq!(
        info.new_chunks, 0,
        "{label}: payloads of the archive were not chunked at their own boundaries"
    );
}

#[test]
fn gnu_tar_format_gnu_sparse() {
    gnu_tar_case(
        "tar --format=gnu --sparse",
        &["--format=gnu", "--sparse"],
        Expect {
            long_names: true,
            markers: &["././@LongLink"],
            gnu_sparse_headers: 3,
        },
    );
}

#[test]
fn gnu_tar_format_oldgnu_sparse() {
    gnu_tar_case(
        "tar --format=oldgnu --sparse",
        &["--format=oldgnu", "--sparse"],
        Expect {
            long_names: true,
            markers: &["././@LongLink"],
            gnu_sparse_headers: 3,
        },
    );
}

/// GNU tar refuses `--sparse` for ustar and v7 ("GNU features wanted on
/// incompatible archive format", no archive written), so these store the
/// sparse files in full. Names too long for the format are skipped by tar
/// (exit status 2, "not dumped"); whatever it wrote must round-trip.
#[test]
fn gnu_tar_format_ustar() {
    gnu_tar_case(
        "tar --format=ustar",
        &["--format=ustar"],
        Expect {
            long_names: false,
            markers: &["ustar\x0000"],
            gnu_sparse_headers: 0,
        },
    );
}

#[test]
fn gnu_tar_format_v7() {
    gnu_tar_case(
        "tar --format=v7",
        &["--format=v7"],
        Expect {
            long_names: false,
            markers: &[],
            gnu_sparse_headers: 0,
        },
    );
}

#[test]
fn gnu_tar_format_posix_sparse_default() {
    gnu_tar_case(
        "tar --format=posix --sparse",
        &["--format=posix", "--sparse"],
        Expect {
            long_names: true,
            markers: &["GNU.sparse.", " path="],
            gnu_sparse_headers: 0,
        },
    );
}

#[test]
fn gnu_tar_format_posix_sparse_0_0() {
    gnu_tar_case(
        "tar --format=posix --sparse --sparse-version=0.0",
        &["--format=posix", "--sparse", "--sparse-version=0.0"],
        Expect {
            long_names: true,
            markers: &["GNU.sparse.offset=", "GNU.sparse.numbytes="],
            gnu_sparse_headers: 0,
        },
    );
}

#[test]
fn gnu_tar_format_posix_sparse_0_1() {
    gnu_tar_case(
        "tar --format=posix --sparse --sparse-version=0.1",
        &["--format=posix", "--sparse", "--sparse-version=0.1"],
        Expect {
            long_names: true,
            markers: &["GNU.sparse.map="],
            gnu_sparse_headers: 0,
        },
    );
}

#[test]
fn gnu_tar_format_posix_sparse_1_0() {
    gnu_tar_case(
        "tar --format=posix --sparse --sparse-version=1.0",
        &["--format=posix", "--sparse", "--sparse-version=1.0"],
        Expect {
            long_names: true,
            markers: &["GNU.sparse.major=1", "GNU.sparse.realsize="],
            gnu_sparse_headers: 0,
        },
    );
}

#[test]
fn gnu_tar_empty_archive() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("empty.tar");
    run_ok(gnu_tar().arg("cf").arg(&archive).args(["-T", "/dev/null"]));
    let tar = fs::read(&archive).unwrap();
    assert!(
        !tar.is_empty() && tar.iter().all(|&b| b == 0),
        "empty archive is zero blocks"
    );
    roundtrip_all_forms(&tar, "empty GNU tar archive");
}

#[test]
fn zero_byte_input() {
    roundtrip_all_forms_raw(b"", "zero-byte input");
}

// ---------------------------------------------------------------------------
// Python's tarfile
// ---------------------------------------------------------------------------

const PYTHON_TARFILE: &str = r#"
import io, json, random, sys, tarfile
fmt_name, out = sys.argv[1], sys.argv[2]
fmt = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}[fmt_name]
rnd = random.Random(1234)
added, skipped = [], []
glob = {"comment": "global pax header: gl\u00f6bal \u2603"} if fmt == tarfile.PAX_FORMAT else {}
with tarfile.open(out, "w", format=fmt, encoding="utf-8", pax_headers=glob) as tf:
    def add(name, data=b"", kind=tarfile.REGTYPE, linkname="", pax=None, uid=0, mtime=1700000000):
        ti = tarfile.TarInfo(name)
        ti.type, ti.linkname, ti.uid, ti.mtime, ti.mode = kind, linkname, uid, mtime, 0o644
        ti.uname, ti.gname = "root", "root"
        if kind == tarfile.REGTYPE:
            ti.size = len(data)
        if pax:
            ti.pax_headers = pax
        try:
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
            added.append(name)
        except ValueError:
            skipped.append(name)
    add("dir", kind=tarfile.DIRTYPE)
    add("dir/empty")
    for n in (1, 511, 512, 513, 4096, 70000):
        add("dir/size_%d" % n, rnd.randbytes(n))
    add("dir/text.txt", ("lorem ipsum dolor sit amet %d\n" % 7 * 25000).encode())
    add("dir/random.bin", rnd.randbytes(600000))
    add("l" * 60 + "/" + "m" * 89, b"long name that ustar can split")
    add(("x" * 120 + "/") * 2 + "y" * 100, rnd.randbytes(3000))
    add("n" * 150, b"long single component")
    add("\u00fcn\u00efc\u00f8d\u00e9/\u540d\u524d \u2603.txt", "non-ascii name \u2603".encode())
    add("dir/pax_records.txt", b"x", pax={"comment": "p\u00e9r-file \u540d", "SCHILY.xattr.user.k": "v"})
    add("dir/hard", kind=tarfile.LNKTYPE, linkname="dir/random.bin")
    add("dir/sym", kind=tarfile.SYMTYPE, linkname="../" + "t" * 150)
    add("dir/fifo", kind=tarfile.FIFOTYPE)
    add("dir/big_uid", b"uid", uid=9000000)
    add("dir/negative_mtime", b"m", mtime=-1000)
print(json.dumps({"added": added, "skipped": skipped}))
"#;

fn python_tarfile_case(format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join(format!("{format}.tar"));
    let out = run_ok(
        tool("python3")
            .arg("-c")
            .arg(PYTHON_TARFILE)
            .arg(format)
            .arg(&archive),
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("python script prints JSON");
    let added = report["added"].as_array().unwrap().len();
    let skipped: Vec<&str> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    if format == "ustar" {
        // Only what ustar cannot express may be missing.
        assert!(
            added >= 14,
            "ustar: only {added} members written ({skipped:?} skipped)"
        );
    } else {
        assert!(skipped.is_empty(), "{format}: python skipped {skipped:?}");
    }
    let tar = fs::read(&archive).unwrap();
    assert!(
        tar.len() > 1_000_000,
        "{format}: archive is only {} bytes",
        tar.len()
    );
    let names = tar_list(&archive);
    assert!(
        names.iter().any(|n| n == "dir/random.bin"),
        "{format}: {names:?}"
    );
    if format == "pax" {
        for marker in [
            &b" path="[..],
            b" comment=",
            b"SCHILY.xattr.user.k=",
            b" mtime=-1000",
            b" uid=",
        ] {
            assert!(
                tar.windows(marker.len()).any(|w| w == marker),
                "pax archive lacks record {:?}",
                String::from_utf8_lossy(marker)
            );
        }
        assert!(
            walk_tar(&tar).iter().any(|m| m.typeflag == b'g'),
            "pax archive lacks its global header"
        );
    }
    if format == "gnu" {
        assert!(
            walk_tar(&tar).iter().any(|m| m.typeflag == b'L'),
            "no GNU long name"
        );
        assert!(
            walk_tar(&tar).iter().any(|m| m.typeflag == b'K'),
            "no GNU long link"
        );
    }
    roundtrip_all_forms(&tar, &format!("python tarfile {format}"));
}

#[test]
fn python_tarfile_ustar() {
    python_tarfile_case("ustar");
}

#[test]
fn python_tarfile_gnu() {
    python_tarfile_case("gnu");
}

#[test]
fn python_tarfile_pax() {
    python_tarfile_case("pax");
}

// ---------------------------------------------------------------------------
// The tar crate
// ---------------------------------------------------------------------------

fn new_header(gnu: bool) -> tar::Header {
    if gnu {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    }
}

/// An archive of files, directories, links and a FIFO with long names,
/// built entry by entry with GNU or ustar headers (the crate adds GNU
/// long-name entries for names that do not fit either way).
fn tar_crate_archive(gnu: bool, seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let add_file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]| {
        let mut h = new_header(gnu);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut h = new_header(gnu);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "etc/", &[][..]).unwrap();
    add_file(&mut b, "etc/empty", b"");
    add_file(&mut b, "etc/tiny", b"x");
    add_file(&mut b, "etc/block", &random_bytes(seed, 512));
    add_file(
        &mut b,
        "usr/lib/random.so",
        &random_bytes(seed + 1, 700_000),
    );
    add_file(&mut b, "usr/share/doc/text", &text_bytes(seed + 2, 500_000));
    add_file(
        &mut b,
        "usr/share/mixed",
        &partly_repetitive(seed + 3, 1_500_000),
    );
    let long = format!("{}/{}/{}", "a".repeat(90), "b".repeat(90), "c".repeat(90));
    add_file(&mut b, &long, &random_bytes(seed + 4, 9_999));
    let long_single = "z".repeat(140);
    add_file(&mut b, &long_single, b"long single component");
    add_file(&mut b, "ünïcødé/名前.txt", "non-ASCII".as_bytes());

    let mut h = new_header(gnu);
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "links/symlink_long_target", format!("../{long}"))
        .unwrap();
    let mut h = new_header(gnu);
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, format!("links/hard_{}", "h".repeat(120)), &long)
        .unwrap();
    let mut h = new_header(gnu);
    h.set_entry_type(tar::EntryType::Fifo);
    h.set_size(0);
    b.append_data(&mut h, "run/fifo", &[][..]).unwrap();
    add_file(&mut b, "last/odd_size", &text_bytes(seed + 5, 1000));
    b.into_inner().unwrap()
}

#[test]
fn tar_crate_gnu_headers() {
    let tar = tar_crate_archive(true, 11);
    let members = walk_tar(&tar);
    assert!(
        members.iter().any(|m| m.typeflag == b'L'),
        "no GNU long name entry"
    );
    assert!(
        members.iter().any(|m| m.typeflag == b'K'),
        "no GNU long link entry"
    );
    assert!(tar.len() > 2_000_000);
    roundtrip_all_forms(&tar, "tar crate, GNU headers");
}

#[test]
fn tar_crate_ustar_headers() {
    let tar = tar_crate_archive(false, 12);
    assert!(
        tar.windows(6).any(|w| w == b"ustar\0"),
        "archive has no ustar headers"
    );
    assert!(tar.len() > 2_000_000);
    roundtrip_all_forms(&tar, "tar crate, ustar headers");
}

/// `Builder::append_dir_all` of the generated tree: the crate writes its
/// own old-GNU sparse headers (with extension blocks) for the sparse files.
#[test]
fn tar_crate_append_dir_all_with_sparse_files() {
    let dir = tempfile::tempdir().unwrap();
    let tree = make_tree(&dir.path().join("tree"), 13);
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.sparse(true);
    b.append_dir_all("layer", &tree.root).unwrap();
    let tar = b.into_inner().unwrap();
    let members = walk_tar(&tar);
    assert!(
        members.iter().filter(|m| m.typeflag == b'S').count() >= 3,
        "the tar crate wrote no sparse headers"
    );
    assert!(members.len() > 30, "only {} members", members.len());
    roundtrip_all_forms(&tar, "tar crate append_dir_all");
}

// ---------------------------------------------------------------------------
// Damaged, unusual and non-tar inputs: stored byte-exact like anything else
// ---------------------------------------------------------------------------

fn header_block(name: &str, size: u64, kind: tar::EntryType) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A small archive whose last member's payload does not fill its block.
fn base_archive() -> (Vec<u8>, RawMember) {
    let tar = tar_crate_archive(true, 21);
    let last = walk_tar(&tar).pop().unwrap();
    assert_eq!(last.size, 1000, "last member is last/odd_size");
    assert!(last.padded_end() > last.data_end());
    (tar, last)
}

#[test]
fn tar_with_truncated_padding() {
    let (tar, last) = base_archive();
    roundtrip_all_forms_raw(
        &tar[..last.data_end()],
        "padding of the last payload cut entirely",
    );
    roundtrip_all_forms_raw(
        &tar[..last.data_end() + 7],
        "padding of the last payload cut short",
    );
    roundtrip_all_forms_raw(&tar[..last.data_end() - 300], "last payload cut short");
    roundtrip_all_forms_raw(&tar[..last.header_offset + 100], "last header cut short");
}

#[test]
fn tar_without_end_of_archive_blocks() {
    let (tar, last) = base_archive();
    assert!(tar[last.padded_end()..].iter().all(|&b| b == 0));
    assert!(tar.len() >= last.padded_end() + 1024);
    roundtrip_all_forms_raw(&tar[..last.padded_end()], "no end-of-archive blocks");
    roundtrip_all_forms(&tar[..last.padded_end() + 512], "one end-of-archive block");
}

#[test]
fn tar_with_trailing_data() {
    let (tar, _) = base_archive();
    let mut garbage = tar.clone();
    garbage.extend_from_slice(&random_bytes(31, 5_000));
    roundtrip_all_forms(&garbage, "random bytes after the end blocks");

    let mut big_garbage = tar.clone();
    big_garbage.extend_from_slice(&partly_repetitive(32, 700_000));
    roundtrip_all_forms(&big_garbage, "700 KB of data after the end blocks");

    let mut two = tar.clone();
    two.extend_from_slice(&tar_crate_archive(false, 33));
    roundtrip_all_forms(&two, "two archives concatenated");

    let mut zeros = tar.clone();
    zeros.extend_from_slice(&vec![0u8; 20_000]);
    zeros.extend_from_slice(&header_block("after/zeros", 3, tar::EntryType::Regular));
    roundtrip_all_forms(&zeros, "extra zeros then a lone header");
}

#[test]
fn non_tar_blobs() {
    for (label, data) in [
        ("1 MB random blob", random_bytes(41, 1 << 20)),
        ("511 random bytes", random_bytes(42, 511)),
        ("513 random bytes", random_bytes(43, 513)),
        ("3 bytes", b"abc".to_vec()),
        ("text", text_bytes(44, 300_000)),
    ] {
        assert_eq!(
            Compression::detect(&data),
            Compression::None,
            "{label}: test data"
        );
        roundtrip_all_forms_raw(&data, label);
    }
}

#[test]
fn tar_header_followed_by_garbage() {
    // A header that claims less than what follows: the rest is not tar.
    let mut a = header_block("claims/100000", 100_000, tar::EntryType::Regular);
    a.extend_from_slice(&random_bytes(51, 300_000));
    roundtrip_all_forms_raw(&a, "header (100000 bytes) + 300 KB garbage");

    // A header that claims more than there is.
    let mut b = header_block("claims/10MB", 10 << 20, tar::EntryType::Regular);
    b.extend_from_slice(&random_bytes(52, 50_000));
    roundtrip_all_forms_raw(&b, "header (10 MB) + 50 KB garbage");

    // A header-only type (symlink) with a size set and garbage after it.
    let mut c = header_block("claims/symlink", 5_000, tar::EntryType::Symlink);
    c.extend_from_slice(&random_bytes(53, 9_000));
    roundtrip_all_forms_raw(&c, "symlink header with size + garbage");

    // A PAX header whose records say size=... and then garbage.
    let records = b"30 size=99999999999999999999\n";
    let mut d = header_block("pax", records.len() as u64, tar::EntryType::XHeader);
    d.extend_from_slice(records);
    d.resize(1024, 0);
    d.extend_from_slice(&header_block("file", 10, tar::EntryType::Regular));
    d.extend_from_slice(&random_bytes(54, 70_000));
    roundtrip_all_forms_raw(&d, "pax header with huge size record + garbage");

    // An old-GNU sparse header announcing extension blocks, then garbage.
    let mut e = header_block("sparse", 4_000, tar::EntryType::GNUSparse);
    e[482] = 1;
    set_header_checksum(&mut e);
    e.extend_from_slice(&random_bytes(55, 40_000));
    roundtrip_all_forms_raw(&e, "old-GNU sparse header with garbage extension blocks");

    // A GNU long-name header claiming a huge name.
    let mut f = header_block("././@LongLink", 1 << 30, tar::EntryType::GNULongName);
    f.extend_from_slice(&text_bytes(56, 100_000));
    roundtrip_all_forms_raw(&f, "GNU long-name header (1 GiB) + 100 KB");

    // A valid header with a bad checksum.
    let mut g = header_block("bad/checksum", 20, tar::EntryType::Regular);
    g[0] ^= 1;
    g.extend_from_slice(&random_bytes(57, 2_000));
    roundtrip_all_forms_raw(&g, "header with a bad checksum");
}

// ---------------------------------------------------------------------------
// One store, many forms of one layer
// ---------------------------------------------------------------------------

/// The same tar put plain, as gzip, two-member gzip and zstd into one store:
/// one layer, one alias per compressed blob, each alias gives the same tar.
#[test]
fn one_layer_many_compressed_blobs() {
    let tar = tar_crate_archive(true, 61);
    let dir = tempfile::tempdir().unwrap();
    let store = layerstore::Store::open(dir.path().join("store")).unwrap();
    let mut aliases = Vec::new();
    for (i, form) in Form::ALL.into_iter().enumerate() {
        let input = form.encode(&tar);
        let info = put_and_check(
            &store,
            &input,
            &tar,
            form.compression(),
            &format!("{form:?}"),
        );
        assert_eq!(info.new_layer, i == 0, "{form:?}: new_layer");
        if let Some(c) = info.compressed_digest {
            aliases.push(c);
        }
    }
    assert_eq!(aliases.len(), 3);
    let layers = store.layers().unwrap();
    assert_eq!(layers.len(), 1, "one layer for all forms");
    assert_eq!(layers[0].digest, Digest::of(&tar));
    let mut listed = layers[0].compressed_digests.clone();
    listed.sort();
    aliases.sort();
    assert_eq!(listed, aliases, "every compressed blob is recorded");
    assert_eq!(store.stats().unwrap().aliases, 3);
    for alias in &aliases {
        let mut back = Vec::new();
        store.get_layer(alias, &mut back).unwrap();
        assert_same_bytes(&back, &tar, "get by alias after all puts");
    }
}

/// A layer written to a path by `get_layer_to_path` is complete and exact.
#[test]
fn get_to_path_writes_exact_file() {
    let tar = tar_crate_archive(false, 71);
    let dir = tempfile::tempdir().unwrap();
    let store = layerstore::Store::open(dir.path().join("store")).unwrap();
    let info = store.put_layer(&zstd(&tar)[..]).unwrap();
    let out = dir.path().join("out").join("layer.tar");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let got = store.get_layer_to_path(&info.digest, &out, None).unwrap();
    assert_eq!(got.size, tar.len() as u64);
    assert_same_bytes(&fs::read(&out).unwrap(), &tar, "get_layer_to_path");
    let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

// ---------------------------------------------------------------------------
// Compressed forms beyond the usual ones, and very large metadata
// ---------------------------------------------------------------------------

/// zstd input of two frames, and with a skippable frame in front: both
/// decompress to the tar, and the compressed digest covers every byte.
#[test]
fn zstd_multiple_frames_and_skippable_frame() {
    let tar = tar_crate_archive(true, 81);
    let dir = tempfile::tempdir().unwrap();
    let store = layerstore::Store::open(dir.path().join("store")).unwrap();

    let mid = tar.len() / 2;
    let mut two_frames = zstd(&tar[..mid]);
    two_frames.extend_from_slice(&zstd(&tar[mid..]));
    put_and_check(
        &store,
        &two_frames,
        &tar,
        Compression::Zstd,
        "two zstd frames",
    );

    let note = b"skippable frame contents";
    let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18];
    skippable.extend_from_slice(&(note.len() as u32).to_le_bytes());
    skippable.extend_from_slice(note);
    skippable.extend_from_slice(&zstd(&tar));
    assert_eq!(Compression::detect(&skippable), Compression::Zstd);
    put_and_check(
        &store,
        &skippable,
        &tar,
        Compression::Zstd,
        "skippable frame + zstd",
    );
    assert_eq!(store.stats().unwrap().aliases, 2);
}

/// Thousands of header-only members (directories, empty files, symlinks):
/// megabytes of headers with no payload in between.
#[test]
fn many_header_only_members() {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..2_000 {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, format!("d{i}/"), &[][..]).unwrap();
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("d{i}/empty"), &[][..])
            .unwrap();
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, format!("d{i}/link"), format!("../d{}", i / 2))
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    assert!(tar.len() > 3_000_000);
    roundtrip_all_forms(&tar, "6000 header-only members");
}

/// One PAX record line (`"<len> <key>=<value>\n"`, len counting itself).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    assert_eq!(out.len(), len);
    out
}

fn pad_to_block(v: &mut Vec<u8>) {
    v.resize(v.len().div_ceil(512) * 512, 0);
}

/// A 3 MB PAX header (beyond what the splitter parses), a PAX header with
/// a `size` record that overrides the ustar size, and a 2 MB GNU long name.
#[test]
fn huge_metadata_entries() {
    let file = |name: &str, data: &[u8]| {
        let mut v = header_block(name, data.len() as u64, tar::EntryType::Regular);
        v.extend_from_slice(data);
        pad_to_block(&mut v);
        v
    };

    let mut tar = Vec::new();
    let records = pax_record("comment", &text_bytes(91, 3_000_000));
    tar.extend_from_slice(&header_block(
        "pax",
        records.len() as u64,
        tar::EntryType::XHeader,
    ));
    tar.extend_from_slice(&records);
    pad_to_block(&mut tar);
    tar.extend_from_slice(&file("after_huge_pax", &random_bytes(92, 100_000)));

    // size=70000 in PAX, 0 in the ustar header: readers follow the PAX size.
    let data = random_bytes(93, 70_000);
    let records = pax_record("size", b"70000");
    tar.extend_from_slice(&header_block(
        "pax2",
        records.len() as u64,
        tar::EntryType::XHeader,
    ));
    tar.extend_from_slice(&records);
    pad_to_block(&mut tar);
    tar.extend_from_slice(&header_block("pax_sized", 0, tar::EntryType::Regular));
    tar.extend_from_slice(&data);
    pad_to_block(&mut tar);

    let mut name = "n/".repeat(1 << 20).into_bytes();
    name.push(0);
    tar.extend_from_slice(&header_block(
        "././@LongLink",
        name.len() as u64,
        tar::EntryType::GNULongName,
    ));
    tar.extend_from_slice(&name);
    pad_to_block(&mut tar);
    tar.extend_from_slice(&file("long_named", &text_bytes(94, 50_000)));
    tar.extend_from_slice(&[0; 1024]);

    // GNU tar reads it all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge_meta.tar");
    fs::write(&path, &tar).unwrap();
    assert_eq!(tar_list(&path).len(), 3, "GNU tar lists the three members");
    roundtrip_all_forms(&tar, "huge metadata entries");
}

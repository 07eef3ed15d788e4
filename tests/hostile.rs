//! Hostile input: decompression bombs, absurd or malformed tar headers,
//! endless metadata chains. Each must give a clear error or an exact round
//! trip — never a panic, a hang or unbounded memory.

mod support;

use std::io::{Read, Write};
use std::process::Command;

use layerstore::{Compression, Error, PutOptions, Store};
use support::{BIN, put_and_check_with, set_header_checksum};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    (dir, store)
}

fn roundtrip(store: &Store, bytes: &[u8]) {
    put_and_check_with(store, bytes, bytes, Compression::None, "hostile tar", true);
}

/// A reader of `len` zero bytes that never holds them in memory.
struct Zeros(u64);

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(0);
        self.0 -= n as u64;
        Ok(n)
    }
}

fn gzip_of_zeros(len: u64) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::copy(&mut Zeros(len), &mut enc).expect("compress");
    enc.finish().expect("finish")
}

fn zstd_of_zeros(len: u64) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("encoder");
    std::io::copy(&mut Zeros(len), &mut enc).expect("compress");
    enc.finish().expect("finish")
}

#[test]
fn gzip_bomb_is_refused_by_the_size_limit_and_leaves_no_trace() {
    let (_dir, store) = store();
    let bomb = gzip_of_zeros(1 << 30);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let before = store.stats().expect("stats");
    let err = store
        .put_layer_with(
            &bomb[..],
            &PutOptions {
                source_name: Some("bomb.tar.gz".into()),
                max_uncompressed: Some(64 << 20),
                ..PutOptions::default()
            },
        )
        .expect_err("limit must refuse the bomb");
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidInput { .. }), "{msg}");
    assert!(
        msg.contains("bomb.tar.gz") && msg.contains("size limit"),
        "{msg}"
    );
    let after = store.stats().expect("stats");
    assert_eq!(
        (before.layers, before.pack_bytes),
        (after.layers, after.pack_bytes)
    );
    let leftovers = std::fs::read_dir(store.path().join("packs"))
        .expect("packs")
        .count();
    assert_eq!(leftovers, 0, "a refused put left pack files behind");
}

/// Peak RSS (KiB) of the CLI putting `file`, via GNU time.
fn put_peak_rss_kib(store: &std::path::Path, file: &std::path::Path) -> u64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(BIN)
        .arg("--store")
        .arg(store)
        .arg("put")
        .arg(file)
        .output()
        .expect("/usr/bin/time must be installed (apt-get install time)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS figure in {stderr:?}"))
}

#[test]
fn decompression_bombs_stream_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("zeros.gz");
    let zst = dir.path().join("zeros.zst");
    std::fs::write(&gz, gzip_of_zeros(2 << 30)).expect("write");
    std::fs::write(&zst, zstd_of_zeros(2 << 30)).expect("write");
    for bomb in [&gz, &zst] {
        let store = dir
            .path()
            .join(format!("store-{}", bomb.display().to_string().len()));
        let rss = put_peak_rss_kib(&store, bomb);
        // 2 GiB of output must not need more than a small fixed working set.
        assert!(rss < 128 * 1024, "{}: peak RSS {rss} KiB", bomb.display());
        let stats = Store::open(&store).expect("open").stats().expect("stats");
        assert_eq!(stats.logical_bytes, 2 << 30);
        assert!(
            stats.pack_bytes < 1 << 20,
            "zeros stored in {} bytes",
            stats.pack_bytes
        );
    }
}

fn header(name: &str, typeflag: u8, size_field: &[u8; 12]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(size_field);
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_header_checksum(&mut h);
    h
}

fn octal(n: u64) -> [u8; 12] {
    let mut f = [0u8; 12];
    f[..11].copy_from_slice(format!("{n:011o}").as_bytes());
    f
}

#[test]
fn absurd_tar_headers_round_trip_exactly() {
    let (_dir, store) = store();
    // A size far beyond the data that follows.
    let mut t = header("huge", b'0', &octal(0o77777777777)).to_vec();
    t.extend_from_slice(&[7u8; 3000]);
    roundtrip(&store, &t);
    // Negative and overflowing base-256 sizes.
    let mut negative = [0xffu8; 12];
    negative[11] = 0x00;
    let mut t = header("neg", b'0', &negative).to_vec();
    t.extend_from_slice(&[1u8; 1024]);
    roundtrip(&store, &t);
    let mut overflow = [0xffu8; 12];
    overflow[0] = 0x80;
    let mut t = header("ovf", b'0', &overflow).to_vec();
    t.extend_from_slice(&[2u8; 1024]);
    roundtrip(&store, &t);
    // A bad checksum in the middle of an otherwise valid archive.
    let mut t = header("a", b'0', &octal(5)).to_vec();
    t.extend_from_slice(b"hello");
    t.resize(1024, 0);
    let mut bad = header("b", b'0', &octal(3));
    bad[148] ^= 1;
    t.extend_from_slice(&bad);
    t.extend_from_slice(&[9u8; 600]);
    roundtrip(&store, &t);
}

#[test]
fn hostile_pax_records_round_trip_exactly() {
    let (_dir, store) = store();
    for records in [
        &b"99999999999999999999999 size=1\n"[..],
        b"-5 size=3\n",
        b"18446744073709551617 path=x\n",
        b"12 size=-40\n",
        b"30 size=99999999999999999999\n",
        b"0 \n",
    ] {
        let mut t = header("pax", b'x', &octal(records.len() as u64)).to_vec();
        t.extend_from_slice(records);
        t.resize(512 + 512 * records.len().div_ceil(512), 0);
        t.extend_from_slice(&header("file", b'0', &octal(700)));
        t.extend_from_slice(&[5u8; 700]);
        t.resize(t.len() + 324 + 1024, 0);
        roundtrip(&store, &t);
    }
}

#[test]
fn endless_gnu_long_name_chain_is_linear_and_exact() {
    let (_dir, store) = store();
    let mut t = Vec::new();
    for i in 0..20_000u32 {
        let name = format!("{:0>300}", i);
        t.extend_from_slice(&header("././@LongLink", b'L', &octal(name.len() as u64)));
        t.extend_from_slice(name.as_bytes());
        t.resize(t.len().div_ceil(512) * 512, 0);
    }
    let start = std::time::Instant::now();
    roundtrip(&store, &t);
    // Not a timing assertion of speed, a guard against quadratic blow-up:
    // 20k headers (15 MB) must not take minutes.
    assert!(
        start.elapsed().as_secs() < 120,
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn truncated_and_corrupt_compressed_input_is_refused() {
    let (_dir, store) = store();
    let mut t = header("f", b'0', &octal(100_000)).to_vec();
    t.extend((0..100_000u32).map(|i| (i * 7 % 251) as u8));
    t.resize(t.len().div_ceil(512) * 512 + 1024, 0);
    roundtrip(&store, &t);
    let before = store.stats().expect("stats");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&t).expect("gzip");
    let gz = gz.finish().expect("gzip");
    // With a content checksum, as the zstd CLI writes by default: without
    // one, a damaged frame can decode to other bytes of the same length,
    // which no decoder can notice (the DiffID then differs).
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    enc.include_checksum(true).expect("checksum flag");
    enc.write_all(&t).expect("zstd");
    let z = enc.finish().expect("zstd");
    let mut corrupt = z.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    corrupt[mid + 1] ^= 0xaa;
    for (name, bad) in [
        ("truncated.gz", &gz[..gz.len() / 2]),
        ("corrupt.zst", &corrupt[..]),
        ("truncated.zst", &z[..z.len() - 3]),
    ] {
        let err = store
            .put_layer_with(
                bad,
                &PutOptions {
                    source_name: Some(name.into()),
                    ..PutOptions::default()
                },
            )
            .expect_err(name);
        assert!(err.to_string().contains(name), "{err}");
        assert!(matches!(err, Error::InvalidInput { .. }), "{name}: {err:?}");
    }
    let after = store.stats().expect("stats");
    assert_eq!(
        (before.layers, before.pack_bytes, before.chunks),
        (after.layers, after.pack_bytes, after.chunks)
    );
}

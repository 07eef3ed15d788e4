//! Sensitivity of layerstore's storage defaults, measured on a layer corpus.
//!
//! Part of the storage benchmark (see BENCHMARKS.md and
//! `benches/corpus/run.sh`, which calls this). Reads a corpus directory made
//! by `build_real.sh` or `gen_synthetic.py` (a `MANIFEST` of layer names and
//! `NAME.tar` files) and puts every layer, uncompressed, into a fresh store
//! opened with `Store::open_with`, varying one parameter at a time from the
//! defaults (16/64/256 KiB chunks, 1 MiB frames, zstd level 3):
//! average chunk 16/32/64/128 KiB (min = avg/4, max = avg*4), frame target
//! 256 KiB/1 MiB/4 MiB, zstd level 1/3/6/9. For each it prints stored bytes
//! (`StoreStats::stored_bytes`), stored/logical and ingest MB/s.
//!
//! Tar-aware vs plain FastCDC: a store always cuts tar-aware, so that row is
//! an estimate from `split::Splitter::with_mode` at default chunk sizes:
//! distinct chunk bytes (by BLAKE3) plus inline bytes, before compression,
//! for both modes.
//!
//! ```text
//! cargo bench --bench corpus -- target/corpus/real   # or .../synthetic
//! ```
//! The directory may also come from `LAYERSTORE_CORPUS_DIR`. Output is a
//! markdown table on stdout. Stores go to a temporary directory under
//! `LAYERSTORE_BENCH_DIR` (default: the system temp dir).

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use layerstore::testing::Cdc;
use layerstore::testing::{Piece, Splitter};
use layerstore::{ChunkParams, Store, StoreConfig};

fn corpus_dir() -> PathBuf {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    arg.or_else(|| std::env::var("LAYERSTORE_CORPUS_DIR").ok())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/corpus/synthetic"))
}

fn layers(dir: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(dir.join("MANIFEST"))
        .unwrap_or_else(|e| panic!("{}/MANIFEST: {e}", dir.display()));
    manifest
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| dir.join(format!("{}.tar", l.trim())))
        .collect()
}

fn params(avg_kib: u32) -> ChunkParams {
    let avg = avg_kib << 10;
    ChunkParams {
        min_size: avg / 4,
        avg_size: avg,
        max_size: avg * 4,
    }
}

fn mb(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().next().unwrap_or("?").to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Puts every layer into a fresh store; returns (logical, stored, seconds).
fn run_store(files: &[PathBuf], config: &StoreConfig, scratch: &Path) -> (u64, u64, f64) {
    let dir = tempfile::tempdir_in(scratch).expect("temp dir");
    let store = Store::open_with(dir.path().join("store"), config).expect("open store");
    let start = Instant::now();
    for f in files {
        store.put_layer_file(f).expect("put");
    }
    let secs = start.elapsed().as_secs_f64();
    let stats = store.stats().expect("stats");
    (stats.logical_bytes, stats.stored_bytes, secs)
}

/// Distinct chunk bytes + inline bytes over all layers (uncompressed), and
/// the total stream length.
fn split_estimate(files: &[PathBuf], tar_aware: bool) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut kept, mut total) = (0u64, 0u64);
    for f in files {
        let reader = BufReader::new(File::open(f).expect("open layer"));
        let mut sp = Splitter::with_mode(reader, Cdc::new(ChunkParams::default()), tar_aware);
        while let Some(piece) = sp.next_piece().expect("split") {
            match piece {
                Piece::Inline(b) => {
                    kept += b.len() as u64;
                    total += b.len() as u64;
                }
                Piece::Chunk(b) => {
                    total += b.len() as u64;
                    if seen.insert(*blake3::hash(b).as_bytes()) {
                        kept += b.len() as u64;
                    }
                }
            }
        }
    }
    (kept, total)
}

fn main() {
    let dir = corpus_dir();
    let files = layers(&dir);
    let scratch = std::env::var_os("LAYERSTORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&scratch).expect("scratch dir");

    let d = StoreConfig::default();
    let mut rows: Vec<(String, StoreConfig)> =
        vec![("defaults (64 KiB, 1 MiB, zstd 3)".into(), d.clone())];
    for avg in [16, 32, 128] {
        let mut c = d.clone();
        c.chunk = params(avg);
        rows.push((format!("avg chunk {avg} KiB"), c));
    }
    for (label, ft) in [("256 KiB", 256u32 << 10), ("4 MiB", 4 << 20)] {
        let mut c = d.clone();
        c.frame_target = ft;
        rows.push((format!("frame target {label}"), c));
    }
    for level in [1, 6, 9] {
        let mut c = d.clone();
        c.zstd_level = level;
        rows.push((format!("zstd level {level}"), c));
    }

    println!("Corpus: {} ({} layers)\n", dir.display(), files.len());
    println!("| setting | stored bytes | stored/logical | ingest s | ingest MB/s | load |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, config) in &rows {
        let (logical, stored, secs) = run_store(&files, config, &scratch);
        println!(
            "| {label} | {stored} | {:.3} | {secs:.2} | {:.0} | {} |",
            stored as f64 / logical as f64,
            mb(logical, secs),
            load()
        );
    }
    println!();
    println!(
        "| cutting (default sizes, before compression) | distinct+inline bytes | of logical | split s | load |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (label, aware) in [
        ("tar-aware (what a store does)", true),
        ("plain FastCDC over the stream", false),
    ] {
        let start = Instant::now();
        let (kept, total) = split_estimate(&files, aware);
        let secs = start.elapsed().as_secs_f64();
        println!(
            "| {label} | {kept} | {:.3} | {secs:.2} | {} |",
            kept as f64 / total as f64,
            load()
        );
    }
}

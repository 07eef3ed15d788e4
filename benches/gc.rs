//! gc at scale: builds a store of at least one million chunks (tiny chunk
//! parameters, so it takes a few hundred MB of generated data rather than
//! tens of GB), removes half of its layers, and times `gc` and `verify`,
//! printing the process's peak RSS before and after gc.
//!
//! `cargo bench --bench gc` (set LAYERSTORE_GC_CHUNKS to change the target
//! chunk count; default 1_000_000).

use std::io::Read;
use std::time::Instant;

use layerstore::{ChunkParams, GcOptions, PutOptions, Store, StoreConfig, VerifyOptions};

/// Deterministic pseudo-random bytes (xorshift), never materialised whole.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let target: u64 = std::env::var("LAYERSTORE_GC_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        chunk: ChunkParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        },
        zstd_level: 1,
        frame_target: 1 << 20,
    };
    let store = Store::open_with(dir.path().join("store"), &config).expect("store");
    let layers = 16u64;
    let per_layer = target * 330 / layers; // ~310 bytes per chunk on average
    let start = Instant::now();
    let mut digests = Vec::new();
    for i in 0..layers {
        // Noise is not a tar: put raw.
        let info = store
            .put_layer_with(
                Noise {
                    state: 0x9e37_79b9_7f4a_7c15 ^ (i + 1),
                    left: per_layer,
                },
                &PutOptions {
                    raw: true,
                    ..PutOptions::default()
                },
            )
            .expect("put");
        digests.push(info.digest);
    }
    let stats = store.stats().expect("stats");
    println!(
        "built store: {} chunks in {} layers, {:.1} MB logical, {:.1} MB packs, in {:.1} s",
        stats.chunks,
        stats.layers,
        stats.logical_bytes as f64 / 1e6,
        stats.pack_bytes as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    assert!(
        stats.chunks >= target * 9 / 10,
        "only {} chunks",
        stats.chunks
    );
    let rss_before = peak_rss_kib();
    let t = Instant::now();
    let report = store.gc(&GcOptions::default()).expect("gc");
    println!(
        "gc with nothing to free: {:.2} s ({} chunks scanned)",
        t.elapsed().as_secs_f64(),
        stats.chunks
    );
    assert_eq!(report.chunks_removed, 0);
    for d in digests.iter().step_by(2) {
        store.remove_layer(d).expect("rm");
    }
    let t = Instant::now();
    let report = store.gc(&GcOptions::default()).expect("gc");
    let gc_secs = t.elapsed().as_secs_f64();
    println!(
        "gc after removing half the layers: {gc_secs:.2} s: {} chunks removed, {} packs deleted, {:.1} MB freed",
        report.chunks_removed,
        report.packs_deleted,
        report.bytes_freed as f64 / 1e6
    );
    println!(
        "peak RSS: {} KiB before gc, {} KiB after (gc's growth: {} KiB)",
        rss_before,
        peak_rss_kib(),
        peak_rss_kib().saturating_sub(rss_before)
    );
    let t = Instant::now();
    let v = store.verify(&VerifyOptions::default()).expect("verify");
    println!(
        "verify (quick) of {} chunks: {:.2} s, {} problems",
        v.chunks,
        t.elapsed().as_secs_f64(),
        v.problems.len()
    );
    assert!(v.is_clean());
}

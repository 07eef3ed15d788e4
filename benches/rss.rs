//! Peak memory of putting a big layer, streamed: a generated tar of
//! `LAYERSTORE_RSS_GB` GiB (default 2) goes through `Store::put_layer` from a
//! reader that produces it on the fly (never held in memory), then is read
//! back with `get_layer` into a hashing sink.
//!
//! ```text
//! cargo bench --bench rss
//! LAYERSTORE_RSS_GB=0.5 cargo bench --bench rss
//! ```
//!
//! Prints the peak RSS (VmHWM of this process) during the put and, after
//! resetting it, during the get, with a breakdown into anonymous and
//! file-backed memory sampled every few milliseconds (mapped pack pages
//! count as RSS but are page cache, not allocations). Also prints the
//! throughput of both, and checks the DiffID three ways: put's answer, the
//! sha256 of what get wrote, and the sha256 of the generated stream made
//! again (skip that last pass with `LAYERSTORE_RSS_VERIFY=0`).
//!
//! Exits non-zero if a digest disagrees. Environment: `LAYERSTORE_RSS_GB`
//! (GiB, fractions allowed), `LAYERSTORE_BENCH_SEED`, `LAYERSTORE_BENCH_DIR`
//! (where the store goes), `LAYERSTORE_RSS_VERIFY`. Ignores command-line
//! arguments (cargo passes `--bench`).

mod common;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{datagen, mib};
use layerstore::{Digest, Store};
use sha2::Digest as _;

/// Target for the peak RSS of a 2 GB put.
const RSS_TARGET: u64 = 64 << 20;

/// Highest RSS figures seen by a sampling thread.
#[derive(Default)]
struct Peaks {
    rss: AtomicU64,
    anon: AtomicU64,
    file: AtomicU64,
}

impl Peaks {
    fn sample(&self) {
        for (field, slot) in [
            ("VmRSS", &self.rss),
            ("RssAnon", &self.anon),
            ("RssFile", &self.file),
        ] {
            if let Ok(v) = common::proc_status_bytes(field) {
                slot.fetch_max(v, Ordering::Relaxed);
            }
        }
    }

    fn reset(&self) {
        for slot in [&self.rss, &self.anon, &self.file] {
            slot.store(0, Ordering::Relaxed);
        }
        self.sample();
    }

    fn describe(&self) -> String {
        format!(
            "sampled peaks: VmRSS {}, RssAnon {}, RssFile {}",
            mib(self.rss.load(Ordering::Relaxed)),
            mib(self.anon.load(Ordering::Relaxed)),
            mib(self.file.load(Ordering::Relaxed))
        )
    }
}

/// A writer that only hashes and counts.
struct HashSink {
    hasher: sha2::Sha256,
    bytes: u64,
}

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hwm() -> u64 {
    common::proc_status_bytes("VmHWM").expect("reading VmHWM from /proc/self/status")
}

fn main() {
    let gib = common::env_f64("LAYERSTORE_RSS_GB", 2.0);
    let target = (gib * (1u64 << 30) as f64) as u64;
    let seed = common::seed();
    let verify = common::env_u64("LAYERSTORE_RSS_VERIFY", 1) != 0;

    let peaks = Arc::new(Peaks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peaks, stop) = (peaks.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peaks.sample();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let dir = tempfile::tempdir_in(common::scratch_dir()).expect("creating a store dir");
    let store = Store::open(dir.path().join("store")).expect("opening a store");
    common::reset_peak_rss().expect("resetting VmHWM via /proc/self/clear_refs");
    peaks.reset();
    let before = hwm();
    println!(
        "putting a {target}-byte generated tar ({gib} GiB, seed {seed:#x}) into {}",
        dir.path().display()
    );
    println!("RSS before put: {}", mib(before));

    let t = Instant::now();
    let info = store
        .put_layer(datagen::TarStream::new(target, seed))
        .expect("put");
    let put_secs = t.elapsed().as_secs_f64();
    let put_peak = hwm();
    let put_peaks = peaks.describe();
    let stats = store.stats().expect("stats");
    println!(
        "put: {} bytes in {put_secs:.2}s = {:.0} MB/s; {} chunks ({} new); packs {} bytes ({:.1}% of the tar)",
        info.size,
        common::mb_per_s(info.size, put_secs),
        info.chunks,
        info.new_chunks,
        stats.pack_bytes,
        100.0 * stats.pack_bytes as f64 / info.size as f64
    );
    println!(
        "put: peak RSS (VmHWM) {} ({} bytes), {} over the {} before; {put_peaks}",
        mib(put_peak),
        put_peak,
        mib(put_peak.saturating_sub(before)),
        mib(before)
    );
    let verdict = if put_peak < RSS_TARGET {
        "meets"
    } else {
        "MISSES"
    };
    println!(
        "put: peak RSS {verdict} the target of < {}",
        mib(RSS_TARGET)
    );
    println!("put: DiffID {}", info.digest);

    common::reset_peak_rss().expect("resetting VmHWM");
    peaks.reset();
    let before_get = hwm();
    let mut sink = HashSink {
        hasher: sha2::Sha256::new(),
        bytes: 0,
    };
    let t = Instant::now();
    let got = store.get_layer(&info.digest, &mut sink).expect("get");
    let get_secs = t.elapsed().as_secs_f64();
    let get_peak = hwm();
    let get_digest = Digest::from_bytes(sink.hasher.finalize().into());
    println!(
        "get: {} bytes in {get_secs:.2}s = {:.0} MB/s (into a sha256 sink)",
        sink.bytes,
        common::mb_per_s(sink.bytes, get_secs)
    );
    println!(
        "get: peak RSS (VmHWM) {} ({} before); {}",
        mib(get_peak),
        mib(before_get),
        peaks.describe()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();

    let mut ok = true;
    if got.size != info.size || sink.bytes != info.size || get_digest != info.digest {
        println!(
            "FAIL: get wrote {} bytes hashing to {get_digest}; put said {} bytes, {}",
            sink.bytes, info.size, info.digest
        );
        ok = false;
    } else {
        println!("get: sha256 of the output matches put's DiffID");
    }

    if verify {
        let t = Instant::now();
        let mut stream = datagen::TarStream::new(target, seed);
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = io::Read::read(&mut stream, &mut buf).expect("generating");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        let expected = Digest::from_bytes(hasher.finalize().into());
        println!(
            "verify: regenerated the tar ({}) and hashed it in {:.2}s",
            stream.summary(),
            t.elapsed().as_secs_f64()
        );
        if expected != info.digest || total != info.size {
            println!("FAIL: the generated tar is {total} bytes with sha256 {expected}");
            ok = false;
        } else {
            println!("verify: independent sha256 of the input matches put's DiffID");
        }
    }

    drop(store);
    drop(dir);
    // Last, so that its buffers do not shape the allocator state measured
    // above: the streamed tar is the same archive the stages bench builds.
    match datagen::check_stream_matches_builder(8 << 20, seed) {
        Ok(()) => println!("self-check: TarStream reproduces tar::Builder output byte for byte"),
        Err(e) => {
            println!("FAIL: TarStream differs from tar::Builder: {e}");
            ok = false;
        }
    }
    if !ok {
        std::process::exit(1);
    }
}

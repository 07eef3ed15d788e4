//! Throughput of each stage of layerstore, and of baselines, on the same
//! generated layer tar.
//!
//! ```text
//! cargo bench --bench stages                       # everything, ~3-4 minutes
//! cargo bench --bench stages -- 'stages/get'      # a criterion filter (regex)
//! LAYERSTORE_BENCH_MB=64 cargo bench --bench stages
//! ```
//!
//! Environment:
//! - `LAYERSTORE_BENCH_MB` (default 256): size of the generated tar, MiB.
//! - `LAYERSTORE_BENCH_SEED`: generator seed.
//! - `LAYERSTORE_BENCH_DIR`: where stores are created (default: the system
//!   temporary directory). put fsyncs its packs, so the disk counts.
//!
//! Groups (criterion throughput is in bytes of the uncompressed tar, shown
//! by criterion in MiB/s; the summary printed at the end gives MB/s too):
//! - `stages/split`, `stages/split_blake3`: the tar-aware FastCDC splitter
//!   over the tar in memory, alone and with BLAKE3 of every chunk.
//! - `stages/put_new`: a put into a fresh, empty store (store created
//!   untimed; the put, its fsyncs and its index commit timed).
//! - `stages/put_stored`: a put of the same tar into a store holding it.
//! - `stages/get`: a get of the layer into `io::sink()`.
//! - `baseline/zstd_cli_-3_-T2`: the `zstd` command compressing the tar
//!   from a pipe to /dev/null (wall time, process start included).
//! - `baseline/zstd_cli_-d`: the `zstd` command decompressing that output.
//! - `baseline/zstd_lib_-3_1MiB_frames_1thread`: the zstd library at level
//!   3 over 1 MiB pieces on one thread, the way put compresses its frames.
//! - `baseline/sha256_1thread`, `baseline/blake3_1thread`: whole-buffer hashes.
//! - `baseline/datagen_stream`: the on-the-fly tar generator the RSS bench
//!   feeds to put (its speed caps what that bench can show).

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::datagen;
use criterion::{Bencher, Criterion, SamplingMode, Throughput};
use layerstore::testing::Cdc;
use layerstore::testing::{Piece, Splitter};
use layerstore::{ChunkId, ChunkParams, Digest, Store};
use sha2::Digest as _;

/// One call of a routine: wall seconds per iteration (as timed by the
/// routine) and CPU seconds per iteration (whole process and children,
/// untimed setup included).
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
}

/// Per-iteration times of every benchmark, as measured by our own routines
/// (warm-up runs included), for the summary printed at the end.
#[derive(Default)]
struct Recorder {
    runs: RefCell<BTreeMap<String, Vec<Run>>>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

impl Recorder {
    /// Runs `routine(iters)` under criterion's `iter_custom`, keeping the time.
    fn measure(&self, b: &mut Bencher<'_>, name: &str, mut routine: impl FnMut(u64) -> Duration) {
        b.iter_custom(|iters| {
            let cpu = common::cpu_seconds();
            let took = routine(iters);
            let cpu = common::cpu_seconds() - cpu;
            self.runs
                .borrow_mut()
                .entry(name.to_string())
                .or_default()
                .push(Run {
                    wall: took.as_secs_f64() / iters as f64,
                    cpu: cpu / iters as f64,
                });
            took
        });
    }

    /// Median wall seconds per iteration.
    fn median(&self, name: &str) -> Option<f64> {
        let runs = self.runs.borrow();
        Some(median(runs.get(name)?.iter().map(|r| r.wall).collect()))
    }

    fn print_summary(&self, bytes: u64) {
        let runs = self.runs.borrow();
        if runs.is_empty() {
            return;
        }
        println!("\n=== layerstore stages: summary over {bytes} bytes of tar ===");
        println!(
            "{:<42} {:>4} {:>8} {:>8} {:>8} {:>8} {:>6}",
            "benchmark", "runs", "median s", "MB/s", "MiB/s", "CPU s", "cores"
        );
        for (name, times) in runs.iter() {
            let wall = median(times.iter().map(|r| r.wall).collect());
            let cpu = median(times.iter().map(|r| r.cpu).collect());
            println!(
                "{name:<42} {:>4} {wall:>8.4} {:>8.1} {:>8.1} {cpu:>8.3} {:>6.2}",
                times.len(),
                bytes as f64 / 1e6 / wall,
                bytes as f64 / (1u64 << 20) as f64 / wall,
                cpu / wall
            );
        }
        let mbs = |name: &str| self.median(name).map(|t| bytes as f64 / 1e6 / t);
        if let (Some(put), Some(zstd)) = (mbs("stages/put_new"), mbs(ZSTD_T2)) {
            println!(
                "put_new / zstd -3 -T2 throughput ratio: {:.2} ({put:.0} vs {zstd:.0} MB/s)",
                put / zstd
            );
        }
        for (name, target) in [("stages/put_stored", 700.0), ("stages/get", 600.0)] {
            if let Some(v) = mbs(name) {
                let verdict = if v >= target { "meets" } else { "MISSES" };
                println!("{name}: {v:.0} MB/s {verdict} the target of >= {target:.0} MB/s");
            }
        }
        println!(
            "(MB = 10^6 bytes; medians include criterion's warm-up runs; CPU s = user+sys \
             seconds per iteration of this process and its children, 10 ms resolution; \
             cores = CPU s / median s)"
        );
    }
}

const ZSTD_T2: &str = "baseline/zstd_cli_-3_-T2";

/// Runs the `zstd` command with `args` on `input`; returns its stdout when
/// `capture`, else sends it to /dev/null. Wall time is the caller's to take.
fn zstd_cli(args: &[&str], input: &[u8], capture: bool) -> io::Result<Vec<u8>> {
    let mut child = Command::new("zstd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take();
    let mut out = Vec::new();
    std::thread::scope(|s| -> io::Result<()> {
        let writer = s.spawn(move || stdin.write_all(input));
        if let Some(stdout) = stdout.as_mut() {
            stdout.read_to_end(&mut out)?;
        }
        writer
            .join()
            .map_err(|_| io::Error::other("stdin writer panicked"))??;
        Ok(())
    })?;
    let status = child.wait()?;
    if !status.success() {
        return Err(io::Error::other(format!("zstd {args:?} failed: {status}")));
    }
    Ok(out)
}

fn zstd_available() -> bool {
    Command::new("zstd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Consumes every piece; returns (bytes, chunks) so nothing is optimised away.
fn split_all(tar: &[u8], hash: bool) -> (u64, u64) {
    let mut splitter = Splitter::new(tar, Cdc::new(ChunkParams::default()));
    let (mut bytes, mut chunks) = (0u64, 0u64);
    while let Some(piece) = splitter.next_piece().expect("reading from memory") {
        match piece {
            Piece::Inline(b) => bytes += b.len() as u64,
            Piece::Chunk(b) => {
                bytes += b.len() as u64;
                chunks += 1;
                if hash {
                    black_box(ChunkId::of(b));
                }
            }
        }
    }
    (bytes, chunks)
}

/// A store holding the layer, made on first use.
struct Loaded {
    _dir: tempfile::TempDir,
    store: Store,
    digest: Digest,
}

fn main() {
    let mb = common::env_u64("LAYERSTORE_BENCH_MB", 256);
    let seed = common::seed();
    let scratch = common::scratch_dir();

    let started = Instant::now();
    let (tar, summary) = datagen::build_tar(mb << 20, seed);
    let tar = &tar[..];
    let bytes = tar.len() as u64;
    println!(
        "generated in {:.1}s (seed {seed:#x}): {summary}",
        started.elapsed().as_secs_f64()
    );
    let digest = Digest::of(tar);
    println!("DiffID {digest}");

    let has_zstd = zstd_available();
    if has_zstd {
        let compressed =
            zstd_cli(&["-3", "-T2", "-q", "-c", "-"], tar, true).expect("running zstd -3 -T2");
        println!(
            "zstd -3 compresses the tar to {} bytes ({:.1}%)",
            compressed.len(),
            100.0 * compressed.len() as f64 / bytes as f64
        );
    } else {
        println!("zstd command not found: skipping the zstd CLI baselines");
    }
    let (_, chunks) = split_all(tar, false);
    println!(
        "default chunking: {chunks} chunks, mean {} bytes",
        bytes / chunks.max(1)
    );

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let rec = Recorder::default();

    // Set up lazily so that a filtered run only pays for what it uses.
    let loaded: OnceLock<Loaded> = OnceLock::new();
    let load = || {
        loaded.get_or_init(|| {
            let dir = tempfile::tempdir_in(&scratch).expect("creating a temporary store dir");
            let store = Store::open(dir.path().join("store")).expect("opening a store");
            let t = Instant::now();
            let info = store.put_layer(tar).expect("put");
            let took = t.elapsed().as_secs_f64();
            assert_eq!(info.digest, digest);
            let stats = store.stats().expect("stats");
            println!(
                "\nsetup put: {:.0} MB/s, {} chunks ({} new), packs {} bytes = {:.1}% of the tar, store {} bytes",
                common::mb_per_s(bytes, took),
                info.chunks,
                info.new_chunks,
                stats.pack_bytes,
                100.0 * stats.pack_bytes as f64 / bytes as f64,
                stats.stored_bytes
            );
            let again = store.put_layer(tar).expect("put again");
            assert_eq!(again.new_chunks, 0, "a second put must store nothing new");
            assert!(!again.new_layer);
            Loaded {
                _dir: dir,
                store,
                digest: info.digest,
            }
        })
    };
    let compressed: OnceLock<Vec<u8>> = OnceLock::new();

    {
        let mut g = c.benchmark_group("stages");
        g.throughput(Throughput::Bytes(bytes));
        g.sampling_mode(SamplingMode::Flat);

        for (name, hash) in [("split", false), ("split_blake3", true)] {
            let full = format!("stages/{name}");
            g.bench_function(name, |b| {
                rec.measure(b, &full, |iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        black_box(split_all(black_box(tar), hash));
                    }
                    t.elapsed()
                })
            });
        }

        g.bench_function("put_new", |b| {
            rec.measure(b, "stages/put_new", |iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir_in(&scratch).expect("creating a store dir");
                    let store = Store::open(dir.path().join("store")).expect("opening a store");
                    let t = Instant::now();
                    let info = store.put_layer(black_box(tar)).expect("put");
                    total += t.elapsed();
                    assert!(info.new_layer);
                    drop(store);
                    drop(dir);
                }
                total
            })
        });

        g.bench_function("put_stored", |b| {
            let l = load();
            rec.measure(b, "stages/put_stored", |iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(l.store.put_layer(black_box(tar)).expect("put"));
                }
                t.elapsed()
            })
        });

        g.bench_function("get", |b| {
            let l = load();
            rec.measure(b, "stages/get", |iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let got = l.store.get_layer(&l.digest, io::sink()).expect("get");
                    assert_eq!(got.size, bytes);
                }
                t.elapsed()
            })
        });
        g.finish();
    }

    {
        let mut g = c.benchmark_group("baseline");
        g.throughput(Throughput::Bytes(bytes));
        g.sampling_mode(SamplingMode::Flat);

        if has_zstd {
            g.bench_function("zstd_cli_-3_-T2", |b| {
                rec.measure(b, ZSTD_T2, |iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        zstd_cli(&["-3", "-T2", "-q", "-c", "-"], tar, false).expect("zstd");
                    }
                    t.elapsed()
                })
            });
            g.bench_function("zstd_cli_-d", |b| {
                let z = compressed.get_or_init(|| {
                    zstd_cli(&["-3", "-T2", "-q", "-c", "-"], tar, true).expect("zstd")
                });
                rec.measure(b, "baseline/zstd_cli_-d", |iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        zstd_cli(&["-d", "-q", "-c", "-"], z, false).expect("zstd -d");
                    }
                    t.elapsed()
                })
            });
        }

        g.bench_function("zstd_lib_-3_1MiB_frames_1thread", |b| {
            let mut zc = zstd::bulk::Compressor::new(3).expect("zstd compressor");
            let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(1 << 20));
            rec.measure(b, "baseline/zstd_lib_-3_1MiB_frames_1thread", |iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    for frame in tar.chunks(1 << 20) {
                        out.clear();
                        zc.compress_to_buffer(frame, &mut out).expect("compress");
                        black_box(&out);
                    }
                }
                t.elapsed()
            })
        });

        g.bench_function("sha256_1thread", |b| {
            rec.measure(b, "baseline/sha256_1thread", |iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(sha2::Sha256::digest(black_box(tar)));
                }
                t.elapsed()
            })
        });

        g.bench_function("blake3_1thread", |b| {
            rec.measure(b, "baseline/blake3_1thread", |iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    black_box(blake3::hash(black_box(tar)));
                }
                t.elapsed()
            })
        });

        g.bench_function("datagen_stream", |b| {
            // 1 MiB reads, like put's reader thread.
            let mut buf = vec![0u8; 1 << 20];
            rec.measure(b, "baseline/datagen_stream", |iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let mut stream = datagen::TarStream::new(mb << 20, seed);
                    let n = common::drain(&mut stream, &mut buf).expect("generating");
                    assert_eq!(n, bytes);
                }
                t.elapsed()
            })
        });
        g.finish();
    }

    c.final_summary();
    rec.print_summary(bytes);
}

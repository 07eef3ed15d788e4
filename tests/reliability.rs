//! Reliability tests for layerstore: crashes, concurrency, corruption and a
//! full disk, all through the real `layerstore` binary.
//!
//! Run with `cargo test --release --test reliability` (about a minute).
//! The tests in this file run one at a time (they share a lock) because
//! they spawn many processes and time kills. They need python3 (its
//! sqlite3 module reads and damages the index) and, for the ENOSPC part,
//! root (to mount a small tmpfs or loop device).
//!
//! * `kill_harness`: puts, image imports (docker archives), rm + gc and gc
//!   in child processes killed with SIGKILL after a random delay in
//!   0-150 ms (seeded SplitMix64; three times in four the delay is drawn
//!   below the operation's observed run time, since most take only tens
//!   of milliseconds), plus runs that abort at every `LAYERSTORE_CRASH_AT`
//!   point (each point of `layerstore::testing::CRASH_POINTS`, on every write path
//!   that reaches it). After every interruption: quick `verify` has no
//!   problems, acknowledged layers (pinned) and images are listed, and 3
//!   acknowledged layers picked at random get byte-exact. At the end:
//!   `verify --full`, every acknowledged layer exact, a `gc` that leaves no
//!   `*.tmp` and no unreferenced pack, and a teardown that shows gc
//!   reclaims everything. At least 200 interruptions by default.
//! * `concurrent_writers_readers_and_gc`: 3 writer processes, 2 reader
//!   processes, and a gc/verify loop at once on one store for 20 s.
//! * `corrupt_*`, `damaged_*`: flipped pack bytes, a truncated pack, a
//!   deleted pack, deleted index rows (through python3's sqlite3), and both
//!   at once, with `verify`, `verify --repair` and `get`.
//! * `full_disk_*`: a store on an 8 MiB tmpfs (or a loop-mounted ext4
//!   image) filled until a put fails with ENOSPC.
//!
//! Long soak runs: `LAYERSTORE_SOAK=N` multiplies the kill harness's
//! interruptions (default at least 200) and crash-point repetitions, the
//! duration of the concurrency test (default 20 s), and the trials of the
//! race tests, e.g.
//! `LAYERSTORE_SOAK=20 cargo test --release --test reliability -- --nocapture`.
//! `LAYERSTORE_SEED=N` changes the kill harness's seed.
//! `LAYERSTORE_TEST_NO_MOUNT=1` makes the full-disk tests take their
//! fallback (no small filesystem: the ENOSPC part is skipped, loudly);
//! `LAYERSTORE_TEST_NO_TMPFS=1` makes them use the loop-mounted ext4 image.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

// ===========================================================================
// 1. Kill harness
// ===========================================================================

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Put,
    Import,
    Gc,
}

/// Every crash point on every write path that reaches it.
const CRASH_SCHEDULE: &[(Op, &str)] = &[
    (Op::Put, "pack-written"),
    (Op::Put, "pack-synced"),
    (Op::Put, "pack-renamed"),
    (Op::Put, "put-before-commit"),
    (Op::Put, "put-after-commit"),
    (Op::Import, "pack-written"),
    (Op::Import, "pack-renamed"),
    (Op::Import, "import-before-commit"),
    (Op::Gc, "gc-after-collect"),
    (Op::Gc, "pack-written"),
    (Op::Gc, "pack-synced"),
    (Op::Gc, "pack-renamed"),
    (Op::Gc, "gc-pack-rewritten"),
    (Op::Gc, "gc-before-unlink"),
];

/// How a child process is to be interrupted.
#[derive(Clone, Copy, Debug)]
enum Interrupt {
    /// SIGKILL after this many microseconds (if still running).
    KillAfter(u64),
    /// LAYERSTORE_CRASH_AT=point.
    CrashAt(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Exited,
    Killed,
    Crashed,
}

#[derive(Default, Debug)]
struct KillStats {
    rounds: u64,
    /// SIGKILLs that hit a running process.
    killed: u64,
    /// Random-delay rounds whose process finished before the kill.
    finished_first: u64,
    /// Aborts at crash points, by "op/point".
    crashes: BTreeMap<String, u64>,
    acked_puts: u64,
    acked_imports: u64,
    rms: u64,
    image_rms: u64,
    gcs_completed: u64,
    by_op: BTreeMap<String, (u64, u64)>, // op -> (attempts, interrupted)
}

struct PoolImage {
    path: PathBuf,
    name: String,
    layers: Vec<String>,
}

struct Harness {
    _dir: tempfile::TempDir,
    store: PathBuf,
    work: PathBuf,
    rng: Rng,
    shared: Vec<(String, Vec<u8>)>,
    pool: Vec<LayerFile>,
    images: Vec<PoolImage>,
    /// Every layer whose bytes the test knows, by digest.
    files: HashMap<String, LayerFile>,
    /// Layers the test put (exit 0, digest printed) and has not removed.
    acked_layers: BTreeSet<String>,
    /// Images imported (exit 0) and not removed: name -> layer digests.
    acked_images: BTreeMap<String, Vec<String>>,
    fresh: u64,
    stats: KillStats,
    /// Typical run time of each operation when not interrupted, in
    /// microseconds (moving average), to aim kills inside the operation.
    typical_us: HashMap<Op, f64>,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let work = dir.path().join("work");
        fs::create_dir_all(&work).unwrap();
        let mut rng = Rng::new(seed);
        // Shared file contents: several layers contain each of them, so
        // puts deduplicate and removing one layer leaves packs partly live.
        let shared: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| {
                let n = rng.range(100_000, 700_000) as usize;
                (format!("shared/s{i}.bin"), mixed_bytes(1000 + i, n))
            })
            .collect();
        let mut h = Harness {
            _dir: dir,
            store,
            work,
            rng,
            shared,
            pool: Vec::new(),
            images: Vec::new(),
            files: HashMap::new(),
            acked_layers: BTreeSet::new(),
            acked_images: BTreeMap::new(),
            fresh: 0,
            stats: KillStats::default(),
            typical_us: HashMap::new(),
        };
        for i in 0..10 {
            let layer = h.make_layer(&format!("pool-{i}"), 50_000, 1_000_000);
            h.pool.push(layer);
        }
        // Two docker archives: each has pool layers plus one of its own.
        for (i, picks) in [vec![1usize, 3], vec![4, 7, 8]].into_iter().enumerate() {
            let mut tars: Vec<Vec<u8>> = picks.iter().map(|&p| h.pool[p].bytes()).collect();
            let own = h.make_layer(&format!("image-{i}-own"), 100_000, 600_000);
            tars.push(own.bytes());
            let name = format!("reliability/pool-{i}:1");
            let path = h.work.join(format!("image-{i}.tar"));
            let layers = docker_archive(&path, &[&name], &tars);
            h.images.push(PoolImage { path, name, layers });
        }
        h
    }

    /// A layer tar of 1-3 shared files plus a unique one, written to disk.
    fn make_layer(&mut self, label: &str, unique_min: u64, unique_max: u64) -> LayerFile {
        let mut files = Vec::new();
        let mut chosen = BTreeSet::new();
        for _ in 0..self.rng.range(1, 3) {
            chosen.insert(self.rng.below(self.shared.len() as u64) as usize);
        }
        for c in chosen {
            let (name, data) = &self.shared[c];
            files.push((format!("{label}/{name}"), data.clone()));
        }
        // 200 KB-3 MB in all, whatever the shared files add.
        let shared_len: usize = files.iter().map(|(_, d)| d.len()).sum();
        let n = (self.rng.range(unique_min, unique_max) as usize)
            .max(210_000usize.saturating_sub(shared_len))
            .min(2_900_000usize.saturating_sub(shared_len));
        let seed = self.rng.next_u64();
        files.push((format!("{label}/own.bin"), mixed_bytes(seed, n)));
        let tar = tar_layer(&files);
        assert!(
            (200_000..=3_000_000).contains(&tar.len()),
            "layer {label} is {} bytes, outside 200 KB-3 MB",
            tar.len()
        );
        let layer = LayerFile::write(self.work.join(format!("{label}.tar")), &tar);
        self.files.insert(layer.digest.clone(), layer.clone());
        layer
    }

    fn fresh_layer(&mut self) -> LayerFile {
        self.fresh += 1;
        let label = format!("fresh-{}", self.fresh);
        self.make_layer(&label, 50_000, 500_000)
    }

    /// A new docker archive: a pool layer and a fresh one, so importing it
    /// always writes packs.
    fn fresh_image(&mut self) -> (PathBuf, String, Vec<String>) {
        let base = self.rng.below(self.pool.len() as u64) as usize;
        let own = self.fresh_layer();
        let name = format!("reliability/fresh-{}:1", self.fresh);
        let path = self.work.join(format!("fresh-image-{}.tar", self.fresh));
        let layers = docker_archive(&path, &[], &[self.pool[base].bytes(), own.bytes()]);
        (path, name, layers)
    }

    /// Layers that must get exactly: acknowledged puts and the layers of
    /// acknowledged images.
    fn must_get(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.acked_layers.clone();
        for layers in self.acked_images.values() {
            all.extend(layers.iter().cloned());
        }
        all.into_iter().collect()
    }

    /// A kill delay in 0-150 ms: usually below the operation's typical run
    /// time (they take tens of milliseconds, so a plain 0-150 ms delay
    /// would mostly fire after the process is gone), sometimes anywhere.
    fn kill_delay_us(&mut self, op: Op) -> u64 {
        let typical = self.typical_us.get(&op).copied().unwrap_or(30_000.0);
        let limit = if self.rng.chance(75) {
            (typical * 1.2).clamp(1_000.0, 150_000.0) as u64
        } else {
            150_000
        };
        self.rng.below(limit + 1)
    }

    /// Runs one child, interrupting it as asked.
    fn run_child(&mut self, op: Op, args: &[&str], interrupt: Interrupt) -> (Fate, Output) {
        let mut cmd = cli(&self.store);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Interrupt::CrashAt(point) = interrupt {
            cmd.env("LAYERSTORE_CRASH_AT", point);
        }
        let spawned = Instant::now();
        let mut child = cmd.spawn().expect("spawning layerstore");
        if let Interrupt::KillAfter(us) = interrupt {
            let deadline = spawned + Duration::from_micros(us);
            loop {
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep((deadline - now).min(Duration::from_millis(1)));
            }
        }
        let out = child.wait_with_output().expect("waiting for layerstore");
        if out.status.code().is_some() {
            let took = spawned.elapsed().as_micros() as f64;
            let avg = self.typical_us.entry(op).or_insert(took);
            *avg = 0.7 * *avg + 0.3 * took;
        }
        let fate = match out.status.signal() {
            None => Fate::Exited,
            Some(9) => Fate::Killed,
            Some(6) => Fate::Crashed,
            Some(s) => panic!(
                "layerstore {args:?} died of unexpected signal {s}: {}",
                describe(&out)
            ),
        };
        if let Interrupt::CrashAt(point) = interrupt {
            let said =
                String::from_utf8_lossy(&out.stderr).contains(&format!("crashing at {point}"));
            assert_eq!(
                fate == Fate::Crashed,
                said,
                "crash at {point}: fate {fate:?} but stderr {}",
                describe(&out)
            );
        }
        (fate, out)
    }

    /// Books a child's fate; panics on an unexpected failure.
    fn account(
        &mut self,
        op: &str,
        args: &[&str],
        interrupt: Interrupt,
        fate: &Fate,
        out: &Output,
    ) {
        let entry = self.stats.by_op.entry(op.to_string()).or_default();
        entry.0 += 1;
        match fate {
            Fate::Killed => {
                entry.1 += 1;
                self.stats.killed += 1;
            }
            Fate::Crashed => {
                entry.1 += 1;
                if let Interrupt::CrashAt(p) = interrupt {
                    *self.stats.crashes.entry(format!("{op}/{p}")).or_default() += 1;
                }
            }
            Fate::Exited => {
                if let Interrupt::KillAfter(_) = interrupt {
                    self.stats.finished_first += 1;
                }
                assert!(
                    out.status.success(),
                    "layerstore {args:?} failed without being interrupted: {}",
                    describe(out)
                );
            }
        }
    }

    fn put(&mut self, interrupt: Interrupt) -> Fate {
        // Crash rounds need new content (a stored layer writes no pack).
        let crash = matches!(interrupt, Interrupt::CrashAt(_));
        let layer = if crash || (self.rng.chance(35) && self.acked_layers.len() < 30) {
            self.fresh_layer()
        } else {
            self.pool[self.rng.below(self.pool.len() as u64) as usize].clone()
        };
        let path = layer.path.to_str().unwrap().to_string();
        let args = ["put", path.as_str()];
        let (fate, out) = self.run_child(Op::Put, &args, interrupt);
        self.account("put", &args, interrupt, &fate, &out);
        if fate == Fate::Exited {
            assert_eq!(
                first_line(&out.stdout),
                layer.digest,
                "put printed a DiffID that is not the sha256 of {path}"
            );
            self.acked_layers.insert(layer.digest.clone());
            self.stats.acked_puts += 1;
        }
        fate
    }

    fn import(&mut self, interrupt: Interrupt) -> Fate {
        let crash = matches!(interrupt, Interrupt::CrashAt(_));
        let (path, name, layers, by_name) = if crash || self.rng.chance(40) {
            let (p, n, l) = self.fresh_image();
            (p, n, l, true)
        } else {
            let img = self.rng.pick(&self.images);
            (
                img.path.clone(),
                img.name.clone(),
                img.layers.clone(),
                false,
            )
        };
        let path_s = path.to_str().unwrap().to_string();
        let mut args = vec!["image", "import", path_s.as_str()];
        if by_name {
            args.extend(["--name", name.as_str()]);
        }
        let (fate, out) = self.run_child(Op::Import, &args, interrupt);
        self.account("import", &args, interrupt, &fate, &out);
        if fate == Fate::Exited {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.lines().any(|l| l.starts_with(&format!("{name}\t"))),
                "import did not print the image name {name}: {}",
                describe(&out)
            );
            self.acked_images.insert(name, layers);
            self.stats.acked_imports += 1;
        }
        fate
    }

    /// Puts X = [r1, r2] and Y = [r2, small] to completion, then removes X:
    /// X's pack is now partly live, so the next gc with --rewrite-below 100
    /// rewrites it.
    fn make_partly_live_pack(&mut self) {
        self.fresh += 1;
        let f = self.fresh;
        let r1 = random_bytes(self.rng.next_u64(), 300_000);
        let r2 = random_bytes(self.rng.next_u64(), 300_000);
        let x = tar_layer(&[(format!("x{f}/r1"), r1), (format!("x{f}/r2"), r2.clone())]);
        let y = tar_layer(&[
            (format!("y{f}/r2-again"), r2),
            (format!("y{f}/note"), text_bytes(f, 2000)),
        ]);
        let x = LayerFile::write(self.work.join(format!("partial-x-{f}.tar")), &x);
        let y = LayerFile::write(self.work.join(format!("partial-y-{f}.tar")), &y);
        for l in [&x, &y] {
            let out = cli_ok(&self.store, &["put", l.path.to_str().unwrap()]);
            assert_eq!(first_line(&out.stdout), l.digest);
        }
        cli_ok(&self.store, &["rm", &x.digest]);
        self.files.insert(y.digest.clone(), y.clone());
        self.acked_layers.insert(y.digest.clone());
    }

    fn gc(&mut self, interrupt: Interrupt) -> Fate {
        let crash_point = match interrupt {
            Interrupt::CrashAt(p) => Some(p),
            Interrupt::KillAfter(_) => None,
        };
        // Removals first (to completion): they give gc work to do.
        let n = self.acked_layers.len();
        if n > 25 || (n > 8 && self.rng.chance(40)) || (n > 3 && self.rng.chance(15)) {
            let all: Vec<String> = self.acked_layers.iter().cloned().collect();
            let victim = self.rng.pick(&all).clone();
            cli_ok(&self.store, &["rm", &victim]);
            self.acked_layers.remove(&victim);
            self.stats.rms += 1;
        }
        if !self.acked_images.is_empty() && (self.rng.chance(15) || self.acked_images.len() > 5) {
            let names: Vec<String> = self.acked_images.keys().cloned().collect();
            let victim = self.rng.pick(&names).clone();
            cli_ok(&self.store, &["image", "rm", &victim]);
            self.acked_images.remove(&victim);
            self.stats.image_rms += 1;
        }
        let rewrites_needed = matches!(
            crash_point,
            Some(
                "gc-pack-rewritten"
                    | "gc-before-unlink"
                    | "pack-written"
                    | "pack-synced"
                    | "pack-renamed"
            )
        );
        if rewrites_needed || (crash_point.is_none() && self.rng.chance(15)) {
            self.make_partly_live_pack();
        }
        let below = if rewrites_needed || self.rng.chance(50) {
            "100"
        } else {
            "50"
        };
        let args = ["gc", "--rewrite-below", below];
        let (fate, out) = self.run_child(Op::Gc, &args, interrupt);
        self.account("gc", &args, interrupt, &fate, &out);
        if fate == Fate::Exited {
            self.stats.gcs_completed += 1;
        }
        fate
    }

    /// The checks after every round.
    fn check(&mut self, context: &str) {
        assert_verify_clean(&self.store, false, context);
        let listed: HashMap<String, bool> = listed_layers(&self.store).into_iter().collect();
        for d in &self.acked_layers {
            assert_eq!(
                listed.get(d),
                Some(&true),
                "{context}: acknowledged layer {d} is not listed as pinned"
            );
        }
        let images = listed_images(&self.store);
        for name in self.acked_images.keys() {
            assert!(
                images.contains(name),
                "{context}: acknowledged image {name} is not listed (listed: {images:?})"
            );
        }
        let must = self.must_get();
        for _ in 0..3.min(must.len()) {
            let d = self.rng.pick(&must).clone();
            let layer = self.files[&d].clone();
            assert_get_exact(&self.store, &layer, &self.work, context);
        }
    }
}

fn seed() -> u64 {
    std::env::var("LAYERSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1a7e_5701)
}

#[test]
fn kill_harness() {
    let _serial = serial();
    let started = Instant::now();
    let soak = soak();
    let seed = seed();
    eprintln!("kill_harness: seed {seed} (LAYERSTORE_SEED), soak {soak} (LAYERSTORE_SOAK)");
    for p in layerstore::testing::CRASH_POINTS {
        assert!(
            CRASH_SCHEDULE.iter().any(|(_, q)| q == p),
            "crash point {p} of src/fault.rs is not in CRASH_SCHEDULE"
        );
    }
    let mut h = Harness::new(seed);
    // A few acknowledged layers before the first kill.
    for i in [0usize, 2, 5] {
        let l = h.pool[i].clone();
        let out = cli_ok(&h.store, &["put", l.path.to_str().unwrap()]);
        assert_eq!(first_line(&out.stdout), l.digest);
        h.acked_layers.insert(l.digest.clone());
    }

    let target_kills = 200 * soak;
    let schedule: Vec<(Op, &'static str)> = (0..2 * soak)
        .flat_map(|_| CRASH_SCHEDULE.iter().copied())
        .collect();
    let mut next_crash = 0;
    let mut interrupted = 0u64;
    let max_rounds = 1500 * soak;
    while interrupted < target_kills || next_crash < schedule.len() {
        h.stats.rounds += 1;
        let round = h.stats.rounds;
        assert!(
            round <= max_rounds,
            "{round} rounds gave only {interrupted} interruptions: processes finish before the kills"
        );
        let crash = (next_crash < schedule.len()
            && (round.is_multiple_of(5) || interrupted >= target_kills))
            .then(|| {
                next_crash += 1;
                schedule[next_crash - 1]
            });
        let (op, fate, what) = match crash {
            Some((op, point)) => {
                let interrupt = Interrupt::CrashAt(point);
                let fate = match op {
                    Op::Put => h.put(interrupt),
                    Op::Import => h.import(interrupt),
                    Op::Gc => h.gc(interrupt),
                };
                assert_eq!(
                    fate,
                    Fate::Crashed,
                    "round {round}: {op:?} with LAYERSTORE_CRASH_AT={point} never reached the point"
                );
                (op, fate, format!("crash at {point}"))
            }
            None => {
                let op = match h.rng.below(100) {
                    0..40 => Op::Put,
                    40..55 => Op::Import,
                    _ => Op::Gc,
                };
                let us = h.kill_delay_us(op);
                let interrupt = Interrupt::KillAfter(us);
                let fate = match op {
                    Op::Put => h.put(interrupt),
                    Op::Import => h.import(interrupt),
                    Op::Gc => h.gc(interrupt),
                };
                (op, fate, format!("kill after {us} us"))
            }
        };
        if fate != Fate::Exited {
            interrupted += 1;
        }
        h.check(&format!("round {round} ({op:?}, {what}, {fate:?})"));
        if round.is_multiple_of(50) {
            eprintln!(
                "kill_harness: round {round}, {interrupted} interruptions, {} acknowledged layers, \
                 {} images, {:.1} s",
                h.acked_layers.len(),
                h.acked_images.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }

    // The end: everything acknowledged is intact, a full verify is clean.
    assert_verify_clean(&h.store, true, "after the last kill");
    for d in h.must_get() {
        let layer = h.files[&d].clone();
        assert_get_exact(&h.store, &layer, &h.work, "after the last kill");
    }
    // A final gc removes every leftover: no *.tmp, no unreferenced pack.
    let (ok, report) = cli_json_status(&h.store, &["gc"]);
    assert!(ok, "final gc failed: {report}");
    let packs = pack_files(&h.store);
    let tmp: Vec<&String> = packs.iter().filter(|n| n.ends_with(".tmp")).collect();
    assert!(
        tmp.is_empty(),
        "after the final gc, packs/ still has {tmp:?}"
    );
    assert_eq!(
        packs,
        indexed_packs(&h.store),
        "after the final gc, pack files and the index's packs differ"
    );
    let report = assert_verify_clean(&h.store, true, "after the final gc");
    let warnings = findings(&report, "warnings");
    assert!(warnings.is_empty(), "after the final gc: {warnings:#?}");
    for d in h.must_get() {
        let layer = h.files[&d].clone();
        assert_get_exact(&h.store, &layer, &h.work, "after the final gc");
    }
    for name in h.acked_images.keys() {
        assert!(listed_images(&h.store).contains(name), "image {name} lost");
    }

    // Teardown: remove every layer and image (including ones committed by
    // puts that were killed before they could report) and gc; nothing may
    // be left, so no crash leaked chunks or packs.
    let names: Vec<String> = listed_images(&h.store).into_iter().collect();
    for n in &names {
        cli_ok(&h.store, &["image", "rm", n]);
    }
    let layers: Vec<String> = listed_layers(&h.store)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    if !layers.is_empty() {
        let mut args = vec!["rm"];
        args.extend(layers.iter().map(String::as_str));
        cli_ok(&h.store, &args);
    }
    cli_ok(&h.store, &["gc"]);
    let (ok, stat) = cli_json_status(&h.store, &["stat"]);
    assert!(ok);
    assert_eq!(
        (
            stat["layers"].as_u64(),
            stat["chunks"].as_u64(),
            stat["packs"].as_u64(),
            stat["pack_bytes"].as_u64()
        ),
        (Some(0), Some(0), Some(0), Some(0)),
        "after removing everything and gc, the store still holds data: {stat}"
    );
    assert!(pack_files(&h.store).is_empty());
    assert_verify_clean(&h.store, true, "after the teardown");

    let s = &h.stats;
    eprintln!(
        "kill_harness: {} rounds, {interrupted} interruptions ({} SIGKILLs hit a running process, \
         {} crash-point aborts), {} random kills came after the process had finished; \
         {} acknowledged puts, {} imports, {} rm, {} image rm, {} completed gc; per op (attempts, interrupted): {:?}; \
         crash points: {:?}; {:.1} s",
        s.rounds,
        s.killed,
        s.crashes.values().sum::<u64>(),
        s.finished_first,
        s.acked_puts,
        s.acked_imports,
        s.rms,
        s.image_rms,
        s.gcs_completed,
        s.by_op,
        s.crashes,
        started.elapsed().as_secs_f64()
    );
    assert!(interrupted >= target_kills);
}

// ===========================================================================
// 2. Concurrency with real processes
// ===========================================================================

#[test]
fn concurrent_writers_readers_and_gc() {
    let _serial = serial();
    let started = Instant::now();
    let duration = Duration::from_secs(20 * soak());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut rng = Rng::new(0xc0c0_0001);
    let shared: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("s{i}.bin"),
                mixed_bytes(2000 + i, rng.range(150_000, 600_000) as usize),
            )
        })
        .collect();
    // 9 fixed layers; writer w puts layers 2w..2w+4 (mod 9), so writers
    // overlap.
    let layers: Vec<LayerFile> = (0..9)
        .map(|i| {
            let mut files = Vec::new();
            for k in 0..rng.range(1, 3) {
                let (n, d) = &shared[((i + k * 2) % shared.len() as u64) as usize];
                files.push((format!("l{i}/{n}"), d.clone()));
            }
            files.push((
                format!("l{i}/own"),
                mixed_bytes(3000 + i, rng.range(100_000, 800_000) as usize),
            ));
            LayerFile::write(
                dir.path().join(format!("layer-{i}.tar")),
                &tar_layer(&files),
            )
        })
        .collect();
    // Create the store before the processes start: several processes
    // creating one store at once is its own case, see
    // `concurrent_first_use_of_a_new_store`.
    layerstore::Store::open(&store).unwrap();
    // Acknowledged layers: digest -> file with the expected bytes.
    let acked: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let (puts, fresh_puts, gets, gcs, rewrites, verifies) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let fail = |msg: String| {
        failures.lock().unwrap().push(msg);
        stop.store(true, Ordering::SeqCst);
    };
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let running = || !stop.load(Ordering::SeqCst) && Instant::now() < deadline;

    std::thread::scope(|s| {
        for w in 0..3u64 {
            let (layers, acked, puts, fresh_puts, store) =
                (&layers, &acked, &puts, &fresh_puts, &store);
            let (fail, running, dir) = (&fail, &running, dir.path());
            s.spawn(move || {
                let mut rng = Rng::new(100 + w);
                let mut i = 0u64;
                while running() {
                    i += 1;
                    // Every third put is a new layer around a blob that
                    // changes every 300 ms: writers in the same window
                    // store the same new chunks at once, so some packs end
                    // up partly dead and gc rewrites them under the readers.
                    let (path, digest) = if i.is_multiple_of(3) {
                        let generation = t0.elapsed().as_millis() as u64 / 300;
                        let tar = tar_layer(&[
                            (
                                format!("gen/{generation}"),
                                mixed_bytes(50_000 + generation, 250_000),
                            ),
                            (format!("w{w}/{i}"), random_bytes(w << 32 | i, 60_000)),
                        ]);
                        let l = LayerFile::write(dir.join(format!("fresh-{w}-{i}.tar")), &tar);
                        fresh_puts.fetch_add(1, Ordering::Relaxed);
                        (l.path, l.digest)
                    } else {
                        let l = &layers[((w * 2 + rng.below(5)) % 9) as usize];
                        (l.path.clone(), l.digest.clone())
                    };
                    let out = cli_run(store, &["put", path.to_str().unwrap()]);
                    if !out.status.success() || first_line(&out.stdout) != digest {
                        fail(format!("writer {w}: put {digest}: {}", describe(&out)));
                        return;
                    }
                    puts.fetch_add(1, Ordering::Relaxed);
                    acked.lock().unwrap().insert(digest, path);
                    std::thread::sleep(Duration::from_millis(rng.range(10, 40)));
                }
            });
        }
        for r in 0..2u64 {
            let (acked, gets, store) = (&acked, &gets, &store);
            let (fail, running) = (&fail, &running);
            s.spawn(move || {
                let mut rng = Rng::new(200 + r);
                while running() {
                    let pick = {
                        let a = acked.lock().unwrap();
                        (!a.is_empty()).then(|| {
                            let (d, p) = a.iter().nth(rng.below(a.len() as u64) as usize).unwrap();
                            (d.clone(), p.clone())
                        })
                    };
                    let Some((d, path)) = pick else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let mut child = cli(store)
                        .args(["get", &d])
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("spawn get");
                    let mut bytes = Vec::new();
                    child
                        .stdout
                        .take()
                        .unwrap()
                        .read_to_end(&mut bytes)
                        .unwrap();
                    let out = child.wait_with_output().unwrap();
                    if !out.status.success() {
                        fail(format!("reader {r}: get {d}: {}", describe(&out)));
                        return;
                    }
                    if bytes != fs::read(&path).unwrap() {
                        fail(format!(
                            "reader {r}: get {d} returned {} bytes hashing to {}",
                            bytes.len(),
                            sha(&bytes)
                        ));
                        return;
                    }
                    gets.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(rng.range(10, 30)));
                }
            });
        }
        {
            let (gcs, rewrites, verifies, store) = (&gcs, &rewrites, &verifies, &store);
            let (fail, running) = (&fail, &running);
            s.spawn(move || {
                let mut i = 0u64;
                while running() {
                    i += 1;
                    if i.is_multiple_of(3) {
                        // A quick verify while writers and gc run: shared
                        // lock, must not see problems that are not there.
                        let (ok, report) = verify(store, false, false);
                        let problems = findings(&report, "problems");
                        if !ok || !problems.is_empty() {
                            fail(format!("concurrent verify: {problems:?}"));
                            return;
                        }
                        verifies.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let below = if i.is_multiple_of(2) { "100" } else { "50" };
                        let out = cli_run(store, &["gc", "--rewrite-below", below, "--json"]);
                        if !out.status.success() {
                            fail(format!("gc: {}", describe(&out)));
                            return;
                        }
                        let report: serde_json::Value =
                            serde_json::from_slice(&out.stdout).unwrap_or_default();
                        if report["skipped"].as_array().is_some_and(|s| !s.is_empty()) {
                            fail(format!("gc skipped damaged packs: {report}"));
                            return;
                        }
                        gcs.fetch_add(1, Ordering::Relaxed);
                        let rewritten = report["packs_rewritten"].as_u64().unwrap_or(0);
                        rewrites.fetch_add(rewritten, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
            });
        }
    });

    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "failures: {failures:#?}");
    let (puts, fresh_puts, gets, gcs, rewrites, verifies) = (
        puts.into_inner(),
        fresh_puts.into_inner(),
        gets.into_inner(),
        gcs.into_inner(),
        rewrites.into_inner(),
        verifies.into_inner(),
    );
    eprintln!(
        "concurrency: {puts} puts ({fresh_puts} of new layers), {gets} gets, {gcs} gcs \
         ({rewrites} packs rewritten), {verifies} verifies in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        puts >= 15 && fresh_puts >= 5 && gets >= 10 && gcs >= 5 && rewrites >= 1,
        "too little happened: {puts} puts, {gets} gets, {gcs} gcs, {rewrites} rewrites"
    );
    let acked = acked.into_inner().unwrap();
    for l in &layers {
        assert!(
            acked.contains_key(&l.digest),
            "layer {} was never put",
            l.digest
        );
    }
    let report = assert_verify_clean(&store, true, "after the concurrent run");
    eprintln!(
        "concurrency: warnings after the run: {:?}",
        findings(&report, "warnings")
    );
    let check_all = |context: &str| {
        for (d, path) in &acked {
            let layer = LayerFile {
                path: path.clone(),
                digest: d.clone(),
                size: 0,
            };
            assert_get_exact(&store, &layer, dir.path(), context);
        }
    };
    check_all("after the concurrent run");
    cli_ok(&store, &["gc", "--rewrite-below", "100"]);
    let report = assert_verify_clean(&store, true, "after the final gc");
    assert!(findings(&report, "warnings").is_empty());
    assert_eq!(pack_files(&store), indexed_packs(&store));
    check_all("after the final gc");
}

/// Several processes using a store that does not exist yet: each must
/// wait for the others (the index has a 600 s busy timeout), none may fail.
#[test]
fn concurrent_first_use_of_a_new_store() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let trials = 400 * soak();
    let mut failures = Vec::new();
    let mut tried = 0;
    // Only commands that store data create a store: each process puts.
    let layer = dir.path().join("layer.tar");
    fs::write(&layer, tar_layer(&[("f", b"first use")])).unwrap();
    for t in 0..trials {
        if !failures.is_empty() {
            break;
        }
        tried += 1;
        let store = dir.path().join(format!("store-{t}"));
        let children: Vec<_> = (0..6)
            .map(|_| {
                cli(&store)
                    .args(["put", path_arg(&layer)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "trial {t}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        let _ = fs::remove_dir_all(&store);
    }
    assert!(
        failures.is_empty(),
        "{} of {} processes failed to open a new store: {:#?}",
        failures.len(),
        tried * 6,
        &failures[..failures.len().min(5)]
    );
}

/// `stat` while other processes open and close the store: the WAL and
/// shared-memory files come and go, which must not make stat fail.
#[test]
fn stat_while_other_processes_open_and_close_the_store() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let layer = LayerFile::write(
        dir.path().join("l.tar"),
        &tar_layer(&[("f".to_string(), random_bytes(90, 300_000))]),
    );
    cli_ok(&store, &["put", layer.path.to_str().unwrap()]);
    let stop = AtomicBool::new(false);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stats = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(8 * soak());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let _ = cli_run(&store, &["ls", "--json"]);
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let out = cli_run(&store, &["stat", "--json"]);
                stats.fetch_add(1, Ordering::Relaxed);
                if !out.status.success() {
                    failures.lock().unwrap().push(describe(&out));
                    stop.store(true, Ordering::SeqCst);
                }
            }
        });
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "stat failed (after {} stats): {failures:#?}",
        stats.into_inner()
    );
}

// ===========================================================================
// 3. Corruption
// ===========================================================================

struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        Fixture { dir, store }
    }

    fn layer(&self, label: &str, files: &[(&str, Vec<u8>)]) -> LayerFile {
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(n, d)| (format!("{label}/{n}"), d.clone()))
            .collect();
        LayerFile::write(
            self.dir.path().join(format!("{label}.tar")),
            &tar_layer(&files),
        )
    }

    /// Puts a layer and returns the packs its put created.
    fn put(&self, layer: &LayerFile) -> Vec<String> {
        let before = pack_files(&self.store);
        let out = cli_ok(&self.store, &["put", layer.path.to_str().unwrap()]);
        assert_eq!(first_line(&out.stdout), layer.digest);
        pack_files(&self.store)
            .difference(&before)
            .cloned()
            .collect()
    }

    /// Puts a layer that must get a pack of its own.
    fn put_own_pack(&self, layer: &LayerFile) -> PathBuf {
        let new = self.put(layer);
        assert_eq!(
            new.len(),
            1,
            "put of {} created packs {new:?}",
            layer.digest
        );
        self.store.join("packs").join(&new[0])
    }

    fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

fn pack_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

/// Flips a byte in the middle of the payload of the pack's first chunk
/// frame; returns that frame.
fn corrupt_first_chunk_frame(pack: &Path) -> PackFrame {
    let frames = pack_frames(&fs::read(pack).unwrap());
    let frame = frames
        .iter()
        .find(|f| f.kind == 1)
        .expect("pack has a chunk frame")
        .clone();
    flip_byte(pack, frame.payload_start + frame.payload_len / 2);
    frame
}

/// A get of a damaged layer fails: to a file, no file (and no temporary)
/// appears; to stdout, what was written is a proper prefix, never wrong
/// bytes.
#[track_caller]
fn assert_get_fails_cleanly(fx: &Fixture, layer: &LayerFile) {
    let out_dir = fx.scratch().join("get-out");
    fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("layer.tar");
    let (o, bytes) = get_to_file(&fx.store, &layer.digest, &target);
    assert!(
        !o.status.success(),
        "get -o of damaged layer {} succeeded",
        layer.digest
    );
    assert!(
        bytes.is_none(),
        "get -o of a damaged layer left an output file"
    );
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "get -o left files behind: {left:?}");
    let o = cli_run(&fx.store, &["get", &layer.digest]);
    assert!(
        !o.status.success(),
        "get of damaged layer {} to stdout succeeded",
        layer.digest
    );
    let expected = layer.bytes();
    assert!(
        o.stdout.len() < expected.len() && expected.starts_with(&o.stdout),
        "get of a damaged layer wrote {} bytes that are not a proper prefix of the layer",
        o.stdout.len()
    );
}

fn mentions(problems: &[(String, String)], needle: &str) -> bool {
    problems
        .iter()
        .any(|(s, d)| s.contains(needle) || d.contains(needle))
}

#[test]
fn corrupt_pack_payload_is_found_and_never_served() {
    let _serial = serial();
    // Random content (frames stored as is: the chunk hash catches the flip)
    // and text (zstd frames: decompression or the hash catches it).
    for (kind, content) in [
        ("random", random_bytes(11, 1_500_000)),
        ("text", text_bytes(12, 1_500_000)),
    ] {
        let fx = Fixture::new();
        let a = fx.layer("a", &[("payload", content), ("small.txt", b"a".to_vec())]);
        let b = fx.layer(
            "b",
            &[
                ("b1", random_bytes(21, 1_000_000)),
                ("b2", text_bytes(22, 300_000)),
            ],
        );
        let a_pack = fx.put_own_pack(&a);
        fx.put_own_pack(&b);
        assert_verify_clean(&fx.store, true, "before the damage");
        let frame = corrupt_first_chunk_frame(&a_pack);
        let name = pack_name(&a_pack);

        let (ok, report) = verify(&fx.store, true, false);
        let problems = findings(&report, "problems");
        assert!(!ok, "{kind}: verify --full exited 0 with a damaged pack");
        let located = format!("frame at offset {}", frame.offset);
        assert!(
            problems.iter().any(
                |(s, d)| (s.starts_with("chunk blake3:") || s.contains(&name))
                    && format!("{s} {d}").contains(&name)
                    && format!("{s} {d}").contains(&located)
            ),
            "{kind}: no problem names the chunk or pack {name} and the {located}: {problems:#?}"
        );
        if frame.codec == 0 {
            assert!(
                problems.iter().any(|(s, _)| s.starts_with("chunk blake3:")),
                "{kind}: stored frame damaged but no chunk is named: {problems:#?}"
            );
        }
        assert!(
            problems
                .iter()
                .any(|(s, _)| s == &format!("layer {}", a.digest)),
            "{kind}: the affected layer is not reported: {problems:#?}"
        );
        assert!(
            !mentions(&problems, &b.digest),
            "{kind}: the intact layer is reported: {problems:#?}"
        );
        assert_get_fails_cleanly(&fx, &a);
        assert_get_exact(&fx.store, &b, fx.scratch(), kind);
    }
}

#[test]
fn corrupt_truncated_pack_is_found_by_quick_verify() {
    let _serial = serial();
    let fx = Fixture::new();
    let a = fx.layer("a", &[("payload", random_bytes(31, 1_200_000))]);
    let b = fx.layer("b", &[("payload", random_bytes(32, 900_000))]);
    let a_pack = fx.put_own_pack(&a);
    fx.put_own_pack(&b);
    let len = fs::metadata(&a_pack).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&a_pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let name = pack_name(&a_pack);
    let (ok, report) = verify(&fx.store, false, false);
    let problems = findings(&report, "problems");
    assert!(!ok, "quick verify exited 0 with a truncated pack");
    assert!(
        problems
            .iter()
            .any(|(s, d)| s == &format!("pack {name}") && d.contains("truncated")),
        "no problem says pack {name} is truncated: {problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|(s, _)| s == &format!("layer {}", a.digest)),
        "the affected layer is not reported: {problems:#?}"
    );
    assert!(!mentions(&problems, &b.digest), "{problems:#?}");
    assert_get_fails_cleanly(&fx, &a);
    assert_get_exact(&fx.store, &b, fx.scratch(), "intact layer");
}

#[test]
fn corrupt_deleted_pack_names_pack_and_layers() {
    let _serial = serial();
    let fx = Fixture::new();
    let shared = random_bytes(41, 1_000_000);
    let a = fx.layer("a", &[("payload", shared.clone())]);
    // A2 shares A's payload: it needs chunks from A's pack.
    let a2 = fx.layer(
        "a2",
        &[("copy", shared), ("own", random_bytes(42, 300_000))],
    );
    let b = fx.layer("b", &[("payload", random_bytes(43, 800_000))]);
    let a_pack = fx.put_own_pack(&a);
    fx.put_own_pack(&a2);
    fx.put_own_pack(&b);
    fs::remove_file(&a_pack).unwrap();
    let name = pack_name(&a_pack);
    let (ok, report) = verify(&fx.store, false, false);
    let problems = findings(&report, "problems");
    assert!(!ok, "quick verify exited 0 with a pack missing");
    assert!(
        problems.iter().any(|(s, _)| s == &format!("pack {name}")),
        "the missing pack {name} is not reported: {problems:#?}"
    );
    for l in [&a, &a2] {
        assert!(
            problems
                .iter()
                .any(|(s, _)| s == &format!("layer {}", l.digest)),
            "affected layer {} is not reported: {problems:#?}",
            l.digest
        );
    }
    assert!(!mentions(&problems, &b.digest), "{problems:#?}");
    assert_get_fails_cleanly(&fx, &a);
    assert_get_fails_cleanly(&fx, &a2);
    assert_get_exact(&fx.store, &b, fx.scratch(), "intact layer");
}

/// Deletes `n` chunk rows of `digest`'s layer.
fn delete_chunk_rows(store: &Path, digest: &str, n: u32) {
    let out = python_sql(
        store,
        &format!(
            "cur = db.execute('DELETE FROM chunks WHERE id IN (SELECT chunk FROM layer_chunks \
             WHERE layer = (SELECT id FROM layers WHERE digest = ?) LIMIT {n})', ('{digest}',))\n\
             print(cur.rowcount)"
        ),
    );
    assert_eq!(out.trim(), n.to_string(), "deleted chunk rows");
}

fn delete_layer_row(store: &Path, digest: &str) {
    let out = python_sql(
        store,
        &format!(
            "cur = db.execute('DELETE FROM layers WHERE digest = ?', ('{digest}',))\n\
             print(cur.rowcount)"
        ),
    );
    assert_eq!(out.trim(), "1", "deleted layer row");
}

#[test]
fn damaged_index_is_reported_and_repaired() {
    let _serial = serial();
    let fx = Fixture::new();
    let a = fx.layer("a", &[("payload", random_bytes(51, 700_000))]);
    let b = fx.layer(
        "b",
        &[
            ("p1", random_bytes(52, 900_000)),
            ("p2", text_bytes(53, 400_000)),
        ],
    );
    let c = fx.layer("c", &[("payload", mixed_bytes(54, 600_000))]);
    for l in [&a, &b, &c] {
        fx.put_own_pack(l);
    }
    delete_chunk_rows(&fx.store, &b.digest, 3);
    delete_layer_row(&fx.store, &c.digest);

    let (ok, report) = verify(&fx.store, false, false);
    let problems = findings(&report, "problems");
    assert!(!ok, "verify exited 0 with chunk rows missing");
    assert!(
        problems
            .iter()
            .any(|(s, _)| s == &format!("layer {}", b.digest)),
        "layer B's missing chunks are not reported: {problems:#?}"
    );
    assert!(!cli_run(&fx.store, &["get", &c.digest]).status.success());

    let (ok, report) = verify(&fx.store, false, true);
    let repaired = strings(&report, "repaired");
    assert!(
        ok && findings(&report, "problems").is_empty(),
        "verify --repair did not fix the index: {report:#}"
    );
    assert!(!repaired.is_empty(), "repair reported nothing repaired");
    assert!(
        repaired.iter().any(|r| r.contains(&c.digest)),
        "repair does not mention the re-created layer: {repaired:?}"
    );
    assert!(strings(&report, "lost").is_empty(), "{report:#}");
    assert_verify_clean(&fx.store, true, "after repair");
    let listed: HashMap<String, bool> = listed_layers(&fx.store).into_iter().collect();
    assert_eq!(
        listed.get(&c.digest),
        Some(&true),
        "C is listed and pinned again"
    );
    for l in [&a, &b, &c] {
        assert_get_exact(&fx.store, l, fx.scratch(), "after repair");
    }
}

#[test]
fn damaged_pack_and_index_repair_restores_what_packs_hold() {
    let _serial = serial();
    let fx = Fixture::new();
    let a = fx.layer("a", &[("payload", text_bytes(61, 900_000))]);
    let b = fx.layer("b", &[("payload", random_bytes(62, 900_000))]);
    let c = fx.layer("c", &[("payload", random_bytes(63, 600_000))]);
    let a_pack = fx.put_own_pack(&a);
    fx.put_own_pack(&b);
    fx.put_own_pack(&c);
    corrupt_first_chunk_frame(&a_pack);
    delete_layer_row(&fx.store, &a.digest);
    delete_layer_row(&fx.store, &c.digest);
    delete_chunk_rows(&fx.store, &b.digest, 2);

    let (ok, report) = verify(&fx.store, true, true);
    let problems = findings(&report, "problems");
    let lost = strings(&report, "lost");
    assert!(
        !ok,
        "repair cannot restore A, yet verify exited 0: {report:#}"
    );
    assert!(
        !strings(&report, "repaired").is_empty(),
        "nothing repaired: {report:#}"
    );
    assert_eq!(lost, vec![a.digest.clone()], "lost layers: {report:#}");
    for l in [&b, &c] {
        assert!(!mentions(&problems, &l.digest), "{problems:#?}");
        assert_get_exact(&fx.store, l, fx.scratch(), "restored layer");
    }
    assert!(!cli_run(&fx.store, &["get", &a.digest]).status.success());
}

/// verify --repair on a store that verify --full calls sound must not
/// change it. Layers the user removed, whose recipe frames still sit in
/// packs gc kept (mostly live), are not "lost".
#[test]
fn repair_of_a_sound_store_after_rm_and_gc_changes_nothing() {
    let _serial = serial();
    let fx = Fixture::new();
    let z_data = random_bytes(71, 400_000);
    let a_data = random_bytes(72, 1_200_000);
    // Z: pack P0 = z chunks. A = z + a: pack PA = a chunks + A's recipe.
    // B = a: pack PB = B's recipe only.
    let z = fx.layer("z", &[("z", z_data.clone())]);
    let a = fx.layer("a", &[("z", z_data), ("a", a_data.clone())]);
    let b = fx.layer("b", &[("a", a_data)]);
    fx.put_own_pack(&z);
    fx.put_own_pack(&a);
    fx.put_own_pack(&b);
    cli_ok(&fx.store, &["rm", &z.digest, &a.digest]);
    // gc: P0 is dead and deleted; PA keeps the a chunks B uses (and, as
    // dead bytes, A's recipe frame).
    cli_ok(&fx.store, &["gc"]);
    let report = assert_verify_clean(&fx.store, true, "after rm and gc");
    assert!(findings(&report, "warnings").is_empty());

    let (ok, report) = verify(&fx.store, true, true);
    let listed: Vec<String> = listed_layers(&fx.store)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(
        ok,
        "verify --repair of a sound store exited non-zero: problems {:#?}, lost {:?}",
        findings(&report, "problems"),
        strings(&report, "lost")
    );
    assert!(
        strings(&report, "repaired").is_empty(),
        "repair changed a sound store: {:?}",
        strings(&report, "repaired")
    );
    assert_eq!(listed, vec![b.digest.clone()], "layers after repair");
    assert_verify_clean(&fx.store, true, "after repair");
}

// ===========================================================================
// 4. A full filesystem
// ===========================================================================

/// A small filesystem mounted for the test; unmounted on drop.
struct SmallFs {
    mountpoint: PathBuf,
    kind: &'static str,
}

impl SmallFs {
    /// tmpfs of 8 MiB, else a loop-mounted 8 MiB ext4 image, else why not.
    /// `LAYERSTORE_TEST_NO_MOUNT=1` pretends neither works (to exercise the
    /// fallback).
    fn mount(dir: &Path) -> Result<SmallFs, String> {
        if std::env::var_os("LAYERSTORE_TEST_NO_MOUNT").is_some_and(|v| v == "1") {
            return Err("LAYERSTORE_TEST_NO_MOUNT=1".into());
        }
        let mnt = dir.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::piped()).output();
        let tmpfs = if std::env::var_os("LAYERSTORE_TEST_NO_TMPFS").is_some_and(|v| v == "1") {
            Err(std::io::Error::other("LAYERSTORE_TEST_NO_TMPFS=1"))
        } else {
            quiet(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
                    .arg(&mnt),
            )
        };
        let tmpfs_err = match tmpfs {
            Ok(o) if o.status.success() => {
                return Ok(SmallFs {
                    mountpoint: mnt,
                    kind: "tmpfs (8 MiB)",
                });
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        let img = dir.join("fs.img");
        let loop_result = (|| -> Result<(), String> {
            let run = |c: &mut Command| -> Result<(), String> {
                let o = quiet(c).map_err(|e| e.to_string())?;
                if o.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
                }
            };
            run(Command::new("truncate").args(["-s", "8M"]).arg(&img))?;
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img))?;
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt))
        })();
        match loop_result {
            Ok(()) => Ok(SmallFs {
                mountpoint: mnt,
                kind: "loop-mounted ext4 (8 MiB)",
            }),
            Err(e) => Err(format!("mount -t tmpfs: {tmpfs_err}; loop ext4: {e}")),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mountpoint)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

fn is_out_of_space(out: &Output) -> bool {
    let e = String::from_utf8_lossy(&out.stderr);
    e.contains("No space left on device") || e.contains("disk is full")
}

/// Layers of incompressible data, each about `size` bytes, none sharing.
fn distinct_layers(dir: &Path, count: usize, size: usize, seed: u64) -> Vec<LayerFile> {
    (0..count)
        .map(|i| {
            let tar = tar_layer(&[(format!("l{i}/data"), random_bytes(seed + i as u64, size))]);
            LayerFile::write(dir.join(format!("layer-{seed}-{i}.tar")), &tar)
        })
        .collect()
}

/// The store is sound, every acknowledged layer is exact, and packs/ holds
/// no temporary and no unreferenced file.
#[track_caller]
fn assert_store_sound(store: &Path, acked: &[LayerFile], scratch: &Path, context: &str) {
    let tmp = tmp_files(&store.join("packs"));
    assert!(tmp.is_empty(), "{context}: temporary files left: {tmp:?}");
    let report = assert_verify_clean(store, false, context);
    let warnings = findings(&report, "warnings");
    assert!(warnings.is_empty(), "{context}: {warnings:#?}");
    assert_eq!(pack_files(store), indexed_packs(store), "{context}: packs");
    for l in acked {
        assert_get_exact(store, l, scratch, context);
    }
}

/// After a failed put on a full disk. `strict`: nothing may be left in
/// packs/. Otherwise leftovers are tolerated only as what verify calls
/// them (warnings about unreferenced `packs/*.pack.tmp` files), and a gc,
/// which must work on the full disk, removes them.
#[track_caller]
fn after_failed_put(
    store: &Path,
    acked: &[LayerFile],
    scratch: &Path,
    strict: bool,
    context: &str,
) {
    assert!(
        layerstore::Store::open(store).is_ok(),
        "{context}: the store does not open"
    );
    if !strict {
        let report = assert_verify_clean(store, false, context);
        for (subject, detail) in findings(&report, "warnings") {
            assert!(
                subject.starts_with("file packs/") && subject.ends_with(".pack.tmp"),
                "{context}: unexpected warning {subject}: {detail}"
            );
        }
        let out = cli_run(store, &["gc"]);
        assert!(
            out.status.success(),
            "{context}: gc on the full disk failed: {}",
            describe(&out)
        );
    }
    assert_store_sound(store, acked, scratch, context);
}

/// Fills a small filesystem until a put fails with ENOSPC, and checks the
/// store at every step (see `after_failed_put` for `strict`).
fn full_disk_flow(strict: bool) {
    let dir = tempfile::tempdir().unwrap();
    let layers_dir = dir.path().join("layers");
    fs::create_dir_all(&layers_dir).unwrap();
    let fs_guard = match SmallFs::mount(dir.path()) {
        Ok(g) => g,
        Err(why) => {
            eprintln!(
                "full_disk: SKIPPING THE ENOSPC PART: cannot mount a small filesystem ({why}); \
                 checking only the non-ENOSPC part on a real path"
            );
            no_small_fs_fallback(dir.path());
            return;
        }
    };
    eprintln!("full_disk: store on {}", fs_guard.kind);
    let store = fs_guard.mountpoint.join("store");
    let scratch = dir.path();
    // Ballast: an unrelated file that takes space, deleted later.
    let ballast = fs_guard.mountpoint.join("ballast");
    fs::write(&ballast, random_bytes(80, 1_500_000)).unwrap();

    let layers = distinct_layers(&layers_dir, 30, 700_000, 1000);
    let mut acked: Vec<LayerFile> = Vec::new();
    let mut failed_at = None;
    for (i, l) in layers.iter().enumerate() {
        let out = cli_run(&store, &["put", l.path.to_str().unwrap()]);
        if out.status.success() {
            assert_eq!(first_line(&out.stdout), l.digest);
            acked.push(l.clone());
        } else {
            assert!(
                is_out_of_space(&out),
                "put {i} failed without a clear out-of-space error: {}",
                describe(&out)
            );
            eprintln!(
                "full_disk: put {i} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            failed_at = Some(i);
            break;
        }
    }
    let failed_at = failed_at.expect("the filesystem never filled up");
    assert!(acked.len() >= 2, "only {} puts fit", acked.len());
    after_failed_put(&store, &acked, scratch, strict, "after the failed put");

    // Trying again on the still-full disk fails the same way.
    let failing = &layers[failed_at];
    for attempt in 0..2 {
        let out = cli_run(&store, &["put", failing.path.to_str().unwrap()]);
        assert!(
            !out.status.success() && is_out_of_space(&out),
            "{}",
            describe(&out)
        );
        after_failed_put(
            &store,
            &acked,
            scratch,
            strict,
            &format!("after retry {attempt}"),
        );
    }

    // Space comes back: the put succeeds.
    fs::remove_file(&ballast).unwrap();
    let out = cli_ok(&store, &["put", failing.path.to_str().unwrap()]);
    assert_eq!(first_line(&out.stdout), failing.digest);
    acked.push(failing.clone());
    assert_store_sound(&store, &acked, scratch, "after freeing space");
    assert_verify_clean(&store, true, "after freeing space");

    // Fill it again, then free space the store's own way: rm + gc.
    let mut full_again = false;
    for l in &layers[failed_at + 1..] {
        let out = cli_run(&store, &["put", l.path.to_str().unwrap()]);
        if out.status.success() {
            assert_eq!(first_line(&out.stdout), l.digest);
            acked.push(l.clone());
        } else {
            assert!(is_out_of_space(&out), "{}", describe(&out));
            full_again = true;
            break;
        }
    }
    assert!(full_again, "the filesystem did not fill up a second time");
    after_failed_put(&store, &acked, scratch, strict, "full again");
    let removed: Vec<LayerFile> = acked.drain(..3).collect();
    let mut rm_args = vec!["rm"];
    rm_args.extend(removed.iter().map(|l| l.digest.as_str()));
    let out = cli_run(&store, &rm_args);
    assert!(
        out.status.success(),
        "rm on a full disk: {}",
        describe(&out)
    );
    let out = cli_run(&store, &["gc"]);
    assert!(
        out.status.success(),
        "gc on a full disk: {}",
        describe(&out)
    );
    for l in &removed {
        assert!(!cli_run(&store, &["get", &l.digest]).status.success());
    }
    let next = distinct_layers(&layers_dir, 1, 700_000, 5000).remove(0);
    let out = cli_run(&store, &["put", next.path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "put after rm + gc freed space: {}",
        describe(&out)
    );
    assert_eq!(first_line(&out.stdout), next.digest);
    acked.push(next);
    assert_store_sound(&store, &acked, scratch, "after rm + gc + put");
    assert_verify_clean(&store, true, "at the end");
    drop(fs_guard);
}

/// A put that fails with ENOSPC leaves the store sound; leftovers are only
/// unreferenced files that verify warns about and gc removes.
#[test]
fn full_disk_put_fails_cleanly_and_store_recovers() {
    let _serial = serial();
    full_disk_flow(false);
}

/// The same, strictly: a put that fails with ENOSPC removes its own
/// temporary pack (it promises "on error nothing is added to the store").
#[test]
fn full_disk_failed_put_leaves_no_temporary_pack() {
    let _serial = serial();
    full_disk_flow(true);
}

/// No small filesystem could be mounted: the same checks without ENOSPC,
/// through the library, on a real path.
fn no_small_fs_fallback(dir: &Path) {
    let store_path = dir.join("store");
    let store = layerstore::Store::open(&store_path).unwrap();
    let layers = distinct_layers(dir, 4, 300_000, 7000);
    for l in &layers[..3] {
        let info = store.put_layer_file(&l.path).unwrap();
        assert_eq!(info.digest.to_string(), l.digest);
    }
    drop(store);
    assert!(layerstore::Store::open(&store_path).is_ok());
    assert_store_sound(&store_path, &layers[..3], dir, "fallback");
    let store = layerstore::Store::open(&store_path).unwrap();
    store.put_layer_file(&layers[3].path).unwrap();
    assert_store_sound(&store_path, &layers, dir, "fallback, new put");
}

/// A gc that must wait for the store lock says so, and puts that start
/// while it waits queue behind it instead of starving it (issue: gc waited
/// in silence, and a stream of puts could keep it waiting forever).
#[test]
fn gc_waits_aloud_and_new_puts_queue_behind_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let first = dir.path().join("first.tar");
    fs::write(&first, tar_layer(&[("a", random_bytes(1, 100_000))])).unwrap();
    let second = dir.path().join("second.tar");
    fs::write(&second, tar_layer(&[("b", random_bytes(2, 100_000))])).unwrap();
    cli_ok(&store, &["put", path_arg(&first)]);
    // Another holder of the lock, shared, for a few seconds (as a long
    // get would).
    let mut holder = Command::new(require_tool("flock"))
        .arg("-s")
        .arg(store.join("lock"))
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (gc_done, put_done, gc_err, put_err) = std::thread::scope(|s| {
        let gc = s.spawn(|| {
            let out = cli(&store).arg("gc").output().unwrap();
            (started.elapsed(), out)
        });
        std::thread::sleep(std::time::Duration::from_millis(700));
        let put = s.spawn(|| {
            let out = cli(&store)
                .args(["put", path_arg(&second)])
                .output()
                .unwrap();
            (started.elapsed(), out)
        });
        let (gc_at, gc_out) = gc.join().unwrap();
        let (put_at, put_out) = put.join().unwrap();
        assert!(gc_out.status.success(), "gc: {}", describe(&gc_out));
        assert!(put_out.status.success(), "put: {}", describe(&put_out));
        (
            gc_at,
            put_at,
            String::from_utf8_lossy(&gc_out.stderr).into_owned(),
            String::from_utf8_lossy(&put_out.stderr).into_owned(),
        )
    });
    holder.wait().unwrap();
    assert!(
        gc_err.contains("waiting for the store lock"),
        "gc waited in silence: {gc_err:?}"
    );
    assert!(
        put_done >= gc_done,
        "a put that started while gc waited finished first ({put_done:?} < {gc_done:?}): \
         gc can be starved"
    );
    assert!(
        put_err.contains("waiting for the store lock"),
        "the put waited in silence: {put_err:?}"
    );
}

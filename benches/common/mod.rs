//! Shared helpers for the layerstore benchmarks: a deterministic generator
//! of layer-like tar archives, a few measurement utilities, and settings read
//! from the environment.
//!
//! Include from a bench target with `mod common;` (Cargo does not treat
//! `benches/common/mod.rs` as a bench target of its own). Not every bench
//! uses every helper, hence the `dead_code` allowance.

#![allow(dead_code)]

pub mod datagen;

use std::io;
use std::path::PathBuf;

/// An unsigned integer from the environment, or `default` when unset or empty.
/// Panics with a clear message on garbage, so a typo is not silently ignored.
pub fn env_u64(key: &str, default: u64) -> u64 {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not an unsigned integer")),
        _ => default,
    }
}

/// A positive number (fractions allowed) from the environment.
pub fn env_f64(key: &str, default: f64) -> f64 {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .unwrap_or_else(|| panic!("{key}={v:?} is not a positive number")),
        _ => default,
    }
}

/// Seed for the data generator (`LAYERSTORE_BENCH_SEED`).
pub fn seed() -> u64 {
    env_u64("LAYERSTORE_BENCH_SEED", datagen::DEFAULT_SEED)
}

/// Where benchmark stores are created: `LAYERSTORE_BENCH_DIR`, else the
/// system temporary directory. Stores hold real pack files that put fsyncs,
/// so this should be the disk whose speed you want to include.
pub fn scratch_dir() -> PathBuf {
    std::env::var_os("LAYERSTORE_BENCH_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Reads `reader` to the end through `buf`; returns the byte count.
pub fn drain(reader: &mut impl io::Read, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Decimal megabytes per second.
pub fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// A `kB` field (`VmHWM:   12345 kB`) of /proc/self/status, in bytes.
pub fn proc_status_bytes(field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kb * 1024)
        })
        .ok_or_else(|| io::Error::other(format!("no {field} in /proc/self/status")))
}

/// CPU time (user + system) of this process, all its threads, and its
/// waited-for children, in seconds, from /proc/self/stat (10 ms resolution).
/// Unlike wall time, it hardly moves when other work shares the machine.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name start at field 3 (state);
    // utime, stime, cutime, cstime are fields 14..=17.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux architecture Rust supports here.
    ticks as f64 / 100.0
}

/// Resets VmHWM to the current RSS (Linux >= 4.0: `5` > clear_refs).
pub fn reset_peak_rss() -> io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

/// Bytes as MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

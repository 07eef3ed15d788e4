//! Maintenance commands: gc and verify.

use anyhow::{Result, bail};
use layerstore::{GcOptions, Store, VerifyOptions};

use crate::output::{human, outln, print_json};

pub(crate) fn verify(store: &Store, full: bool, repair: bool, json: bool) -> Result<()> {
    let report = store.verify(&VerifyOptions { full, repair })?;
    if json {
        print_json(&report)?;
    } else {
        for r in &report.repaired {
            outln!("repaired: {r}");
        }
        for w in &report.warnings {
            outln!("warning: {}: {}", w.subject, w.detail);
        }
        for p in &report.problems {
            outln!("problem: {}: {}", p.subject, p.detail);
        }
        for l in &report.lost {
            outln!("lost: layer {l}");
        }
        outln!(
            "checked {} pack(s), {} frame(s), {} chunk(s), {} layer(s), {} exact blob(s){}: {}",
            report.packs,
            report.frames,
            report.chunks,
            report.layers,
            report.blobs,
            if report.full {
                format!(", {} read", human(report.bytes_verified))
            } else {
                String::new()
            },
            if report.is_clean() {
                "ok".to_string()
            } else {
                format!("{} problem(s)", report.problems.len())
            }
        );
    }
    if report.is_clean() {
        Ok(())
    } else {
        bail!("verify found {} problem(s)", report.problems.len())
    }
}

/// How `gc` treats what the registry left.
pub(crate) struct RegistryAges {
    /// Seconds an unreferenced pushed blob is kept.
    pub grace: u64,
    /// Seconds an untouched upload session is kept.
    pub upload_max_age: u64,
}

pub(crate) fn gc(
    store: &Store,
    dry_run: bool,
    rewrite_below: f64,
    ages: &RegistryAges,
    json: bool,
) -> Result<()> {
    if !(0.0..=100.0).contains(&rewrite_below) {
        bail!("--rewrite-below must be between 0 and 100");
    }
    let report = store.gc(&GcOptions {
        dry_run,
        rewrite_below: rewrite_below / 100.0,
        registry_grace: std::time::Duration::from_secs(ages.grace),
        upload_max_age: std::time::Duration::from_secs(ages.upload_max_age),
    })?;
    if json {
        return print_json(&report);
    }
    let verb = if dry_run { "would free" } else { "freed" };
    outln!(
        "{verb} {} ({} -> {}): {} layer(s), {} chunk(s) ({} uncompressed), {} pack(s) deleted, {} rewritten, {} leftover file(s)",
        human(report.bytes_freed),
        human(report.bytes_before),
        human(report.bytes_after),
        report.layers_removed,
        report.chunks_removed,
        human(report.chunk_bytes_removed),
        report.packs_deleted,
        report.packs_rewritten,
        report.orphan_files_removed
    );
    if report.registry_blobs_removed + report.uploads_removed > 0 {
        outln!(
            "registry: {} unreferenced blob(s) past their grace period forgotten, {} stale upload(s) removed",
            report.registry_blobs_removed,
            report.uploads_removed
        );
    }
    if report.blobs_converted + report.blobs_settled > 0 {
        outln!(
            "{} compressed blob(s) {} kept by a cheaper exact method{}",
            report.blobs_converted,
            if dry_run { "would be" } else { "now" },
            if report.blobs_settled > 0 {
                format!(
                    "; {} stay verbatim (no cheaper method reproduces them)",
                    report.blobs_settled
                )
            } else {
                String::new()
            }
        );
    }
    for s in &report.skipped {
        eprintln!("layerstore: warning: pack skipped: {s}");
    }
    if !report.unknown_packs_kept.is_empty() {
        eprintln!(
            "layerstore: warning: kept {} pack file(s) the index does not know ({}); \
             they may hold the only copy of data: `layerstore verify --repair` adopts them",
            report.unknown_packs_kept.len(),
            report.unknown_packs_kept.join(", ")
        );
    }
    for f in &report.foreign_files_kept {
        eprintln!("layerstore: note: packs/{f} is not a pack file; left alone");
    }
    Ok(())
}

//! Layer commands: put, get, ls, rm, stat.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use layerstore::{Digest, PutOptions, Store};

use crate::output::{human, outln, progress_bar, utc};

pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    Ok(Digest::parse(s)?)
}

pub(crate) fn put(
    store: &Store,
    file: &str,
    json: bool,
    max_size: Option<u64>,
    raw: bool,
    tar_only: bool,
    exact_now: bool,
) -> Result<()> {
    let (input, name, total): (Box<dyn io::Read + Send>, String, Option<u64>) = if file == "-" {
        (Box::new(io::stdin()), "stdin".to_string(), None)
    } else {
        let f = File::open(file).with_context(|| format!("cannot open {file}"))?;
        let meta = f
            .metadata()
            .with_context(|| format!("cannot stat {file}"))?;
        if meta.is_dir() {
            bail!("{file} is a directory, not a layer file");
        }
        (Box::new(f), file.to_string(), Some(meta.len()))
    };
    let bar = progress_bar(total, "put");
    let report = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let info = store.put_layer_with(
        input,
        &PutOptions {
            source_name: Some(name.clone()),
            max_uncompressed: max_size,
            progress: Some(&report),
            raw,
            tar_only,
            exact_now,
            as_is: false,
        },
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let info = info.with_context(|| format!("put {name}"))?;
    if json {
        outln!("{}", serde_json::to_string(&info)?);
    } else {
        // The DiffID alone on stdout (`D=$(layerstore put x)`); the
        // summary is for people, on stderr.
        outln!("{}", info.digest);
        if let Some(c) = info.compressed_digest {
            let kept = match (&info.blob_method, info.blob_extra_bytes) {
                (Some(m), Some(extra)) => format!(
                    "kept exactly by {m}, {} of extra data ({:.2}% of the blob)",
                    human(extra),
                    100.0 * extra as f64 / info.input_size.max(1) as f64
                ),
                _ => "only its tar kept (--tar-only)".to_string(),
            };
            eprintln!("compressed ({}) {c}: {kept}", info.compression.name());
            if let Some(note) = &info.blob_note {
                eprintln!("  why not smaller: {note}");
            }
        }
        eprintln!(
            "{} uncompressed, {} chunks ({} new), store grew by {}{}",
            human(info.size),
            info.chunks,
            info.new_chunks,
            human(info.added_bytes),
            if info.new_layer {
                ""
            } else {
                " (layer was already stored)"
            }
        );
    }
    Ok(())
}

pub(crate) fn get(
    store: &Store,
    digest_text: &str,
    output: Option<PathBuf>,
    tar: bool,
) -> Result<()> {
    let digest = parse_digest(digest_text)?;
    let layer = store
        .layer(&digest)
        .with_context(|| format!("get {digest_text}"))?;
    let as_tar = tar || layer.digest == digest;
    if layer.digest != digest && tar {
        eprintln!(
            "layerstore: {digest} is a compressed blob; writing its uncompressed layer {}",
            layer.digest
        );
    }
    // A compressed blob's progress counts the tar it is rebuilt from.
    let bar = progress_bar(Some(layer.size), "get");
    let report = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let result = match &output {
        Some(path) if as_tar => store.get_layer_to_path(&digest, path, Some(&report)),
        Some(path) => store.get_blob_to_path(&digest, path, Some(&report)),
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write a layer blob to a terminal; use -o FILE or redirect");
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let r = if as_tar {
                store.get_layer_with(&digest, &mut out, Some(&report))
            } else {
                store.get_blob_with(&digest, &mut out, Some(&report))
            };
            r.and_then(|info| {
                out.flush()
                    .map_err(|e| layerstore::Error::io("writing standard output", e))?;
                Ok(info)
            })
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    result.with_context(|| format!("get {digest_text}"))?;
    Ok(())
}

pub(crate) fn ls(store: &Store, json: bool) -> Result<()> {
    let layers = store.layers()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&layers)?);
        return Ok(());
    }
    outln!(
        "{:<71}  {:>10}  {:>10}  {:>6}  {:<23}  PINNED",
        "DIGEST",
        "SIZE",
        "STORED",
        "SHARE",
        "CREATED"
    );
    for l in layers {
        let share = if l.size == 0 {
            0.0
        } else {
            100.0 * l.stored_share as f64 / l.size as f64
        };
        outln!(
            "{:<71}  {:>10}  {:>10}  {:>5.1}%  {:<23}  {}",
            l.digest.to_string(),
            human(l.size),
            human(l.stored_share),
            share,
            utc(l.created),
            if l.pinned { "yes" } else { "no" }
        );
    }
    Ok(())
}

pub(crate) fn rm(store: &Store, digests: &[String]) -> Result<()> {
    let parsed = digests
        .iter()
        .map(|d| parse_digest(d))
        .collect::<Result<Vec<_>>>()?;
    // All or nothing: a bad argument removes no layer.
    for removed in store.remove_layers(&parsed).context("removing layers")? {
        outln!("{removed}");
    }
    Ok(())
}

pub(crate) fn stat(store: &Store, json: bool) -> Result<()> {
    let s = store.stats()?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("store".into(), store.path().display().to_string().into());
            obj.insert("config".into(), serde_json::to_value(store.config())?);
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("store          {}", store.path().display());
    outln!("layers         {}", s.layers);
    outln!("images         {}", s.images);
    outln!(
        "logical bytes  {} ({})",
        human(s.logical_bytes),
        s.logical_bytes
    );
    outln!(
        "stored bytes   {} ({})",
        human(s.stored_bytes),
        s.stored_bytes
    );
    outln!("  in packs     {}", human(s.pack_bytes));
    outln!(
        "chunks         {} ({} distinct data)",
        s.chunks,
        human(s.unique_chunk_bytes)
    );
    outln!("packs          {}", s.packs);
    outln!("dedup ratio    {:.2}x", s.dedup_ratio);
    if !s.blobs.is_empty() {
        outln!("compressed blobs, by how they come back:");
        for b in &s.blobs {
            outln!(
                "  {:<10} {:>5} blob(s), {:>10}, extra data {} ({:.2}%){}",
                b.method,
                b.count,
                human(b.blob_bytes),
                human(b.extra_bytes),
                100.0 * b.extra_bytes as f64 / b.blob_bytes.max(1) as f64,
                if b.pending > 0 {
                    format!(", {} waiting for gc's cheaper method", b.pending)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(())
}

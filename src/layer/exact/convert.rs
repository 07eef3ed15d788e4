//! Converting pending blobs: a gzip blob a put kept verbatim (preflate's
//! analysis runs at about gzip's own speed, too slow for the put) gets its
//! cheaper method later, from gc.
//!
//! The blob is rebuilt (verbatim, checked against its digest) into a spool
//! file, analysed exactly as a put would, and, if a cheaper method
//! reproduces it, its new extra data and blob frame are written to new
//! packs and committed in one transaction that repoints the alias. The
//! verbatim chunks are then named by nothing and go with the same gc. A
//! crash at any point leaves either the old, exact alias or the new one.

use std::collections::HashSet;
use std::io::{BufWriter, Read};

use crate::error::{Error, Result};
use crate::layer::exact::{ExtraSink, describe_blob};
use crate::layer::input::{Compression, read_magic};
use crate::layer::put::FrameWriter;
use crate::store::Store;
use crate::store::blob::BlobMethod;
use crate::store::chunker::Cdc;
use crate::store::digest::Digest;
use crate::store::index::{Index, NewAlias, NewBlob};
use crate::util::fs::Spool;

/// What a conversion pass did.
#[derive(Clone, Debug, Default)]
pub(crate) struct Converted {
    /// Blobs now kept by a cheaper method.
    pub converted: u64,
    /// Blobs no cheaper method reproduces: they stay verbatim, settled.
    pub settled: u64,
    /// Verbatim bytes the converted blobs no longer need.
    pub verbatim_bytes: u64,
    /// Extra bytes their new methods keep.
    pub extra_bytes: u64,
}

/// Converts every pending blob. The caller holds the store lock (shared
/// is enough: a conversion writes new packs and commits like a put; a blob
/// whose layer is removed meanwhile is skipped).
pub(crate) fn convert_pending(store: &Store, index: &mut Index) -> Result<Converted> {
    let mut done = Converted::default();
    for digest in index.pending_blobs()? {
        convert_one(store, index, &digest, &mut done)?;
    }
    Ok(done)
}

fn convert_one(
    store: &Store,
    index: &mut Index,
    digest: &Digest,
    done: &mut Converted,
) -> Result<()> {
    let Some(alias) = index.alias(digest)? else {
        return Ok(());
    };
    let layer = index
        .layer(&alias.layer)?
        .ok_or_else(|| Error::not_found(format!("layer {}", alias.layer)))?;
    let (spool, file) = Spool::create(store.path())?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    store.rebuild_blob(&alias, &mut out, None)?;
    out.into_inner().map_err(|e| {
        Error::io(
            format!("writing {}", spool.path().display()),
            e.into_error(),
        )
    })?;
    let mut head = std::fs::File::open(spool.path())
        .map_err(|e| Error::io(format!("reading {}", spool.path().display()), e))?;
    let magic = read_magic(&mut head.by_ref())
        .map_err(|e| Error::io(format!("reading {}", spool.path().display()), e))?;
    let compression = Compression::detect(&magic);
    if compression == Compression::None {
        return Err(Error::corrupt(format!("blob {digest} is not compressed")));
    }
    let config = store.config();
    let mut frames = FrameWriter::new(
        store.clone(),
        config.zstd_level,
        config.frame_target as usize,
    );
    let pending = HashSet::new();
    let sink = ExtraSink::new(Cdc::new(config.chunk), &mut frames, index, &pending)?;
    let plan = describe_blob(
        spool.path(),
        store.path(),
        compression,
        layer.size,
        false,
        sink,
    )?;
    if plan.description.method == BlobMethod::Verbatim {
        // Nothing cheaper: the blob stays as it is. Dropping `frames`
        // deletes whatever it wrote.
        drop(frames);
        index.settle_blob(digest)?;
        done.settled += 1;
        return Ok(());
    }
    let method = plan.description.method.name().to_string();
    let extra_bytes = plan.description.extra_len;
    let frame = frames.write_blob(
        layer.digest,
        layer.size,
        (*digest, alias.size),
        plan.description.encode(),
    )?;
    let packs = frames.finish()?;
    let new_alias = NewAlias {
        digest: *digest,
        media_type: compression.media_type().to_string(),
        size: alias.size,
        blob: Some(NewBlob {
            frame: Some(frame),
            method,
            extra_bytes,
            extra_chunks: plan.extra_chunks,
            pending: false,
        }),
    };
    crate::util::fault::point("convert-before-commit");
    if let Err(e) = index.commit_blob_conversion(&packs, &layer.digest, &new_alias) {
        for pack in &packs {
            store.packs().discard(&pack.name);
        }
        return match e {
            // Removed while it was converted: nothing to record.
            Error::NotFound { .. } => Ok(()),
            e => Err(e),
        };
    }
    done.converted += 1;
    done.verbatim_bytes += alias.extra_bytes;
    done.extra_bytes += extra_bytes;
    Ok(())
}

//! Exact compressed blobs: at put time, find the smallest data that
//! rebuilds the compressed blob byte for byte from the layer's tar; at get
//! time, rebuild it.
//!
//! A put of a gzip or zstd blob copies the raw bytes to a spool file as it
//! reads them. After the tar is split, [`describe_blob`] tries, cheapest
//! first: libzstd recompression at the parameters the frame names
//! (`zstd`), preflate correction data for each gzip member (`preflate`),
//! and only when neither reproduces the blob, the blob's own bytes
//! (`verbatim`). Every method is checked against the blob's bytes before
//! it is recorded: a zstd candidate's whole output is compared with the
//! blob, and preflate rebuilds every segment it analyses and compares it
//! with the original, while the layout (headers, segments, trailers) covers
//! every byte of the blob in order. A method that fails is never recorded.
//!
//! preflate's analysis runs at about gzip's own compression speed, so a
//! put keeps a gzip blob verbatim at first (exact at once) and marks it
//! pending; gc converts it (`convert`). `rebuild` gives blobs back.
//!
//! The extra bytes a method needs (gzip headers and corrections, or the
//! verbatim blob) are cut into chunks and stored like a layer's chunks, so
//! they are deduplicated and checked by the same code; the description and
//! the extra stream's recipe go into one blob frame (`store::blob`).

pub(crate) mod convert;
mod gzip;
pub(crate) mod rebuild;
mod zstd;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::error::{Error, Result};
use crate::layer::input::Compression;
use crate::layer::put::FrameWriter;
use crate::store::blob::{BlobCompression, BlobDescription, BlobMethod};
use crate::store::chunker::Cdc;
use crate::store::digest::ChunkId;
use crate::store::index::Index;
use crate::store::recipe::RecipeWriter;
use crate::util::fs::Spool;

/// What [`describe_blob`] chose.
pub(crate) struct BlobPlan {
    /// The encoded description for the blob frame.
    pub description: BlobDescription,
    /// Distinct chunks of the extra stream.
    pub extra_chunks: Vec<ChunkId>,
    /// Of those, the ones this put wrote.
    pub new_chunks: u64,
    /// Why cheaper methods were not used, for messages.
    pub notes: Vec<String>,
}

/// Finds how to rebuild the compressed blob spooled at `spool` (whose
/// uncompressed content is `tar_size` bytes) and stores its extra bytes
/// through `extra`. Only store errors fail; a blob no method reproduces
/// is kept verbatim. `scratch` is a directory for a temporary file. With
/// `defer`, a gzip blob is kept verbatim without trying preflate (gc
/// converts it later).
pub(crate) fn describe_blob(
    spool: &Path,
    scratch: &Path,
    compression: Compression,
    tar_size: u64,
    defer: bool,
    mut extra: ExtraSink<'_>,
) -> Result<BlobPlan> {
    let mut notes = Vec::new();
    let (blob_compression, found) = match compression {
        Compression::Gzip if defer => (
            BlobCompression::Gzip,
            Err(
                "kept verbatim until gc looks for the cheaper method (put --exact-now looks now)"
                    .to_string(),
            ),
        ),
        Compression::Zstd => (
            BlobCompression::Zstd,
            zstd::find_parameters(spool, tar_size)?.map(|m| (m, None)),
        ),
        Compression::Gzip => {
            // The extra bytes go to a file first: they are kept only if
            // the whole blob turns out reproducible.
            let (extra_spool, file) = Spool::create(scratch)?;
            let mut out = io::BufWriter::with_capacity(1 << 20, file);
            let found = gzip::analyse(spool, tar_size, &mut out)?;
            out.into_inner().map_err(|e| {
                Error::io(
                    format!("writing {}", extra_spool.path().display()),
                    e.into_error(),
                )
            })?;
            let found = found.map(|(method, note)| {
                notes.extend(note);
                (method, Some(extra_spool))
            });
            (BlobCompression::Gzip, found)
        }
        Compression::None => return Err(Error::bug("no blob to describe for a plain tar")),
    };
    let (method, extra_source) = match found {
        Ok((method, extra_spool)) => (method, extra_spool),
        Err(why) => {
            notes.push(why);
            (BlobMethod::Verbatim, None)
        }
    };
    let copy_from = match (&method, &extra_source) {
        (BlobMethod::Verbatim, _) => Some(spool),
        (_, Some(extra_spool)) => Some(extra_spool.path()),
        (_, None) => None,
    };
    if let Some(path) = copy_from {
        let mut file = open_spool(path)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = read_some(&mut file, &mut buf, path)?;
            if n == 0 {
                break;
            }
            extra.push(&buf[..n])?;
        }
    }
    let (extra_len, extra_recipe, extra_chunks, new_chunks) = extra.finish()?;
    Ok(BlobPlan {
        description: BlobDescription {
            compression: blob_compression,
            method,
            extra_len,
            extra_recipe,
        },
        extra_chunks,
        new_chunks,
        notes,
    })
}

fn open_spool(spool: &Path) -> Result<File> {
    File::open(spool).map_err(|e| Error::io(format!("opening {}", spool.display()), e))
}

fn read_some(file: &mut File, buf: &mut [u8], spool: &Path) -> Result<usize> {
    loop {
        match file.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(format!("reading {}", spool.display()), e)),
        }
    }
}

/// Cuts the extra stream into content-defined chunks, stores the new ones
/// through a put's frame writer and records the stream as a recipe.
pub(crate) struct ExtraSink<'a> {
    cdc: Cdc,
    buf: Vec<u8>,
    recipe: RecipeWriter,
    len: u64,
    distinct: HashSet<ChunkId>,
    frames: &'a mut FrameWriter,
    index: &'a Index,
    pending: &'a HashSet<ChunkId>,
    /// Chunks written for the first time.
    new_chunks: u64,
}

impl<'a> ExtraSink<'a> {
    pub(crate) fn new(
        cdc: Cdc,
        frames: &'a mut FrameWriter,
        index: &'a Index,
        pending: &'a HashSet<ChunkId>,
    ) -> Result<Self> {
        Ok(ExtraSink {
            cdc,
            buf: Vec::new(),
            recipe: RecipeWriter::new()?,
            len: 0,
            distinct: HashSet::new(),
            frames,
            index,
            pending,
            new_chunks: 0,
        })
    }

    /// Appends bytes to the extra stream.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.len += data.len() as u64;
        let max = self.cdc.max_size();
        if self.buf.len() >= 2 * max {
            let mut at = 0;
            while self.buf.len() - at >= max {
                let n = self.cdc.first_chunk_len(&self.buf[at..]);
                self.emit(at, n)?;
                at += n;
            }
            self.buf.drain(..at);
        }
        Ok(())
    }

    fn emit(&mut self, at: usize, n: usize) -> Result<()> {
        let bytes = &self.buf[at..at + n];
        let id = ChunkId::of(bytes);
        self.recipe.push_chunk(&id, n as u32)?;
        if self
            .frames
            .add_if_new(id, bytes, &mut self.distinct, self.pending, self.index)?
        {
            self.new_chunks += 1;
        }
        Ok(())
    }

    /// Cuts what is left; returns the stream's length, its recipe and its
    /// distinct chunks.
    fn finish(mut self) -> Result<(u64, Vec<u8>, Vec<ChunkId>, u64)> {
        let mut at = 0;
        while at < self.buf.len() {
            let n = self.cdc.first_chunk_len(&self.buf[at..]);
            self.emit(at, n)?;
            at += n;
        }
        if self.recipe.total_len() != self.len {
            return Err(Error::bug(format!(
                "extra stream of {} bytes recorded as {}",
                self.len,
                self.recipe.total_len()
            )));
        }
        Ok((
            self.len,
            self.recipe.finish()?,
            self.distinct.into_iter().collect(),
            self.new_chunks,
        ))
    }
}

/// Runs `f`, turning a panic inside a compression library into an error
/// message: its input is outside data, and a library bug on it must cost
/// the method, not the put.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|_| format!("{what} panicked on this input"))
}

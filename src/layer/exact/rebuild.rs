//! Getting a blob by its digest: the tar for a DiffID, the original
//! compressed bytes for a compressed digest, rebuilt from the tar and the
//! blob's extra data as its description says.
//!
//! The tar and the extra stream are each streamed out of the store by a
//! get of their own (every chunk checked), through bounded pipes; the
//! rebuilt bytes are hashed on the way out and their sha256 and length
//! compared with the digest at the end, so a damaged description or extra
//! data is an error, never a silent wrong blob.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::layer::GetInfo;
use crate::layer::get::write_recipe;
use crate::store::blob::{BlobDescription, BlobMethod};
use crate::store::digest::Digest;
use crate::store::index::AliasRow;
use crate::store::packs::load_blob_description;
use crate::store::{LockMode, Store};
use crate::util::pipe::pipe;

impl Store {
    /// Writes the bytes whose sha256 is `digest`: the layer's tar for a
    /// DiffID, the compressed blob exactly as it was put for a compressed
    /// digest. Streaming, with bounded memory; on error the bytes written
    /// so far may be a prefix of the blob, never more.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let store = layerstore::Store::open(dir.path().join("store"))?;
    /// # let layer_tar = layerstore::testing::tiny_layer();
    /// use std::io::Write;
    /// let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    /// gz.write_all(&layer_tar)?;
    /// let blob = gz.finish()?;
    /// let info = store.put_layer(&blob[..])?;
    /// let digest = info.compressed_digest.expect("a gzip blob");
    /// let mut out = Vec::new();
    /// store.get_blob(&digest, &mut out)?;
    /// assert_eq!(out, blob);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_blob(&self, digest: &Digest, mut out: impl Write) -> Result<GetInfo> {
        self.get_blob_with(digest, &mut out, None)
    }

    /// [`Store::get_blob`] with a progress callback (bytes of the tar read
    /// so far, for a compressed blob; bytes written, for a tar).
    pub fn get_blob_with(
        &self,
        digest: &Digest,
        out: &mut dyn Write,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<GetInfo> {
        let _lock = self.lock(LockMode::Shared)?;
        let index = self.index()?;
        if index.layer(digest)?.is_some() {
            drop(index);
            return self.get_layer_with(digest, out, progress);
        }
        let alias = index
            .alias(digest)?
            .ok_or_else(|| Error::not_found(format!("blob {digest}")))?;
        drop(index);
        let size = self.rebuild_blob(&alias, out, progress)?;
        Ok(GetInfo {
            digest: alias.layer,
            size,
            via_alias: Some(alias.digest),
        })
    }

    /// Rebuilds one compressed blob into `out`; returns its size.
    pub(crate) fn rebuild_blob(
        &self,
        alias: &AliasRow,
        out: &mut dyn Write,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<u64> {
        let digest = alias.digest;
        let frame = alias.blob_frame.as_ref().ok_or_else(|| {
            Error::not_found(format!(
                "blob {digest}: only its tar was kept (it was put before this store kept exact \
                 blobs); `get --tar` (Store::get_layer) gives the tar, layer {}",
                alias.layer
            ))
        })?;
        let index = self.index()?;
        let layer = index
            .layer(&alias.layer)?
            .ok_or_else(|| Error::not_found(format!("layer {}", alias.layer)))?;
        let mut packs = self.packs().reader();
        let raw = load_blob_description(
            &mut packs,
            frame,
            (layer.digest, layer.size),
            (digest, alias.size),
        )?;
        let description = BlobDescription::decode(&raw)
            .map_err(|e| Error::corrupt(format!("blob {digest}: description: {e}")))?;
        let mut hashed = HashingWriter {
            out,
            hasher: Sha256::new(),
            written: 0,
        };
        let what = format!("blob {digest} (extra data)");
        let (extra_writer, mut extra) = pipe();
        let rebuilt = std::thread::scope(|scope| {
            let extra_recipe = &description.extra_recipe;
            let extra_getter = scope.spawn(move || {
                let mut writer = extra_writer;
                match write_recipe(index, packs, extra_recipe, &what, &mut writer, None) {
                    Ok((len, _)) => writer
                        .finish()
                        .map_err(|e| Error::io("streaming extra data", e))
                        .map(|()| len),
                    Err(e) => {
                        writer.fail(e.to_string());
                        Err(e)
                    }
                }
            });
            let combined = self.combine(
                &description,
                &layer.digest,
                layer.size,
                &mut extra,
                &mut hashed,
                progress,
            );
            drop(extra);
            let extra_result = crate::error::join_worker(extra_getter);
            match (combined, extra_result) {
                // The rebuild stopped first: the extra stream only failed
                // because its reader went away.
                (Err(e), Err(Error::Io { source, .. }))
                    if source.kind() == io::ErrorKind::BrokenPipe =>
                {
                    Err(e)
                }
                (_, Err(e)) => Err(e),
                (Err(e), Ok(_)) => Err(e),
                (Ok(()), Ok(len)) if len != description.extra_len => Err(Error::corrupt(format!(
                    "blob {digest}: its extra data is {len} bytes, its description says {}",
                    description.extra_len
                ))),
                (Ok(()), Ok(_)) => Ok(()),
            }
        });
        rebuilt.map_err(|e| match e {
            Error::Corrupt(msg) if !msg.starts_with("blob ") => {
                Error::corrupt(format!("blob {digest}: {msg}"))
            }
            e => e,
        })?;
        let HashingWriter {
            out,
            hasher,
            written,
        } = hashed;
        let actual = Digest::from_bytes(hasher.finalize().into());
        if actual != digest || written != alias.size {
            return Err(Error::corrupt(format!(
                "blob {digest}: rebuilt {written} bytes hash to {actual} (expected {} bytes): \
                 its reconstruction data is damaged; the tar may still be intact (get --tar {})",
                alias.size, alias.layer
            )));
        }
        out.flush()
            .map_err(|e| Error::io(format!("writing blob {digest}"), e))?;
        Ok(written)
    }

    /// Runs the description's method over the tar and the extra stream.
    fn combine(
        &self,
        description: &BlobDescription,
        layer: &Digest,
        tar_size: u64,
        extra: &mut dyn Read,
        out: &mut dyn Write,
        progress: Option<&(dyn Fn(u64) + Sync)>,
    ) -> Result<()> {
        match &description.method {
            BlobMethod::Verbatim => {
                io::copy(extra, out).map_err(|e| Error::io("copying blob", e))?;
                Ok(())
            }
            method => self.stream_layer(layer, |tar| {
                let mut tar = Progress {
                    inner: tar,
                    read: 0,
                    progress,
                };
                match method {
                    BlobMethod::Zstd { .. } => {
                        super::zstd::rebuild(method, tar_size, &mut tar, out)?
                    }
                    BlobMethod::Preflate { members, .. } => {
                        super::gzip::rebuild(members, &mut tar, extra, out)?
                    }
                    BlobMethod::Verbatim => {}
                }
                // The stream must be read to its end for the get's checks.
                let rest = io::copy(&mut tar, &mut io::sink())
                    .map_err(|e| Error::io("reading the layer's tar", e))?;
                if rest > 0 {
                    return Err(Error::corrupt(format!(
                        "the description covers {} of the layer's {tar_size} bytes",
                        tar_size - rest
                    )));
                }
                Ok(())
            }),
        }
    }
}

/// Counts and hashes what is written through it.
struct HashingWriter<'a> {
    out: &'a mut dyn Write,
    hasher: Sha256,
    written: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.out.write(data)?;
        self.hasher.update(&data[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reports bytes read through it.
struct Progress<'a, R> {
    inner: R,
    read: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(p) = self.progress {
            p(self.read);
        }
        Ok(n)
    }
}

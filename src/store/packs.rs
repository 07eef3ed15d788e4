//! Pack files on disk: [`Packs`] is the only code that creates, maps,
//! lists, syncs or removes them (the seam where an object-store backend
//! would go). Packs are written under a temporary name, fsynced, renamed
//! into place and the directory fsynced; after that a pack is never
//! modified, only replaced by a new file and unlinked. That is what makes
//! the one memory map below sound.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};
use crate::store::digest::Digest;
use crate::store::index::{FrameLocation, LayerRow};
use crate::store::pack::{FrameHeader, FrameKind, PACK_HEADER_LEN, PACK_MAGIC, PACK_VERSION};

/// The directory of pack files of one store.
#[derive(Clone, Debug)]
pub(crate) struct Packs {
    dir: PathBuf,
}

/// A file found in the pack directory: a pack, a temporary pack or
/// something else.
#[derive(Clone, Debug)]
pub(crate) struct PackFile {
    /// File name.
    pub name: String,
    /// Size in bytes (0 when it vanished while listing).
    pub size: u64,
}

impl Packs {
    pub(crate) fn new(dir: PathBuf) -> Packs {
        Packs { dir }
    }

    /// A name no pack has: 16 random bytes as hex, plus `.pack`.
    pub(crate) fn fresh_name(&self) -> String {
        format!("{}.pack", crate::util::fs::random_hex(16))
    }

    /// Starts pack `name` under a temporary name (`name.tmp`). Callers go
    /// through `Store::new_pack`, which records the intent first.
    pub(crate) fn create(&self, name: String) -> Result<PackWriter> {
        PackWriter::create(&self.dir, name)
    }

    /// Maps pack `name` read-only.
    pub(crate) fn map(&self, name: &str) -> Result<Mmap> {
        let path = self.dir.join(name);
        let file = File::open(&path).context(|| format!("opening pack {}", path.display()))?;
        // Safety: packs are immutable once renamed into place; gc replaces
        // them by writing a new file and unlinking the old one, never by
        // truncating or rewriting in place, so the mapping stays valid.
        unsafe { Mmap::map(&file) }.context(|| format!("mapping pack {}", path.display()))
    }

    /// A cache of maps for reading many frames.
    pub(crate) fn reader(&self) -> PackSet {
        PackSet {
            packs: self.clone(),
            maps: HashMap::new(),
        }
    }

    /// Every file in the pack directory, by name.
    pub(crate) fn list(&self) -> Result<Vec<PackFile>> {
        let listing = || format!("listing {}", self.dir.display());
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).context(listing)? {
            let entry = entry.context(listing)?;
            files.push(PackFile {
                name: entry.file_name().to_string_lossy().into_owned(),
                size: entry.metadata().map(|m| m.len()).unwrap_or(0),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// The finished pack files (`*.pack`, not temporaries or other files),
    /// by name.
    pub(crate) fn finished(&self) -> Result<Vec<PackFile>> {
        let mut files = self.list()?;
        files.retain(|f| f.name.ends_with(".pack"));
        Ok(files)
    }

    /// Removes file `name` from the pack directory.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        let path = self.dir.join(name);
        fs::remove_file(&path).context(|| format!("removing {}", path.display()))
    }

    /// Removes pack `name` that nothing refers to (a put or rewrite that
    /// did not commit), ignoring errors: gc removes what is left over.
    pub(crate) fn discard(&self, name: &str) {
        let _ = fs::remove_file(self.dir.join(name));
    }

    /// Makes renames and removals in the pack directory durable.
    pub(crate) fn sync(&self) -> Result<()> {
        crate::util::fs::sync_dir(&self.dir)
    }

    /// Bytes of all files in the pack directory.
    pub(crate) fn size(&self) -> Result<u64> {
        crate::util::fs::dir_size(&self.dir, &[])
    }
}

/// Memory maps of pack files, opened on demand.
pub(crate) struct PackSet {
    packs: Packs,
    maps: HashMap<String, Arc<Mmap>>,
}

impl PackSet {
    pub(crate) fn map(&mut self, pack: &str) -> Result<Arc<Mmap>> {
        if let Some(m) = self.maps.get(pack) {
            return Ok(m.clone());
        }
        let map = Arc::new(self.packs.map(pack)?);
        self.maps.insert(pack.to_string(), map.clone());
        Ok(map)
    }
}

/// Reads and decodes one frame; errors name the pack and offset.
pub(crate) fn read_frame(map: &[u8], loc: &FrameLocation) -> Result<(FrameHeader, Vec<u8>)> {
    let corrupt = |what: String| {
        Error::corrupt(format!(
            "pack {} frame at offset {}: {what}",
            loc.pack, loc.offset
        ))
    };
    let start = usize::try_from(loc.offset).map_err(|_| corrupt("offset out of range".into()))?;
    let end = loc
        .offset
        .checked_add(loc.total_len)
        .filter(|&e| e <= map.len() as u64)
        .ok_or_else(|| {
            corrupt(format!(
                "frame of {} bytes lies beyond the end of the pack ({} bytes)",
                loc.total_len,
                map.len()
            ))
        })? as usize;
    let bytes = &map[start..end];
    let header = FrameHeader::decode(bytes).map_err(corrupt)?;
    if header.total_len() != loc.total_len {
        return Err(corrupt(format!(
            "frame is {} bytes, index says {}",
            header.total_len(),
            loc.total_len
        )));
    }
    let raw = header
        .decode_payload(&bytes[header.header_len() as usize..])
        .map_err(corrupt)?;
    Ok((header, raw))
}

/// Loads a layer's compressed recipe, checking that the frame is its recipe.
pub(crate) fn load_recipe(packs: &mut PackSet, layer: &LayerRow) -> Result<Vec<u8>> {
    let map = packs.map(&layer.recipe.pack)?;
    let (header, recipe) = read_frame(&map, &layer.recipe)
        .map_err(|e| Error::corrupt(format!("layer {}: recipe: {e}", layer.digest)))?;
    if header.kind != FrameKind::Recipe || header.recipe_of != Some((layer.digest, layer.size)) {
        return Err(Error::corrupt(format!(
            "layer {}: recipe frame in pack {} at offset {} belongs to another layer",
            layer.digest, layer.recipe.pack, layer.recipe.offset
        )));
    }
    Ok(recipe)
}

/// Loads the description of compressed blob `blob` (sha256, size) of the
/// layer `layer` (DiffID, size), checking that the frame is that blob's.
pub(crate) fn load_blob_description(
    packs: &mut PackSet,
    frame: &FrameLocation,
    layer: (Digest, u64),
    blob: (Digest, u64),
) -> Result<Vec<u8>> {
    let map = packs.map(&frame.pack)?;
    let (header, description) = read_frame(&map, frame)
        .map_err(|e| Error::corrupt(format!("blob {}: description: {e}", blob.0)))?;
    if header.kind != FrameKind::Blob
        || header.recipe_of != Some(layer)
        || header.blob_of != Some(blob)
    {
        return Err(Error::corrupt(format!(
            "blob {}: the frame in pack {} at offset {} describes another blob",
            blob.0, frame.pack, frame.offset
        )));
    }
    Ok(description)
}

/// Writes one new pack under a temporary name; [`PackWriter::finish`]
/// makes it durable and visible. Dropping an unfinished writer removes it.
pub(crate) struct PackWriter {
    dir: PathBuf,
    name: String,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    len: u64,
    /// Set once the pack is renamed into place; until then dropping the
    /// writer (also after a failed flush, fsync or rename) removes the file.
    renamed: bool,
}

/// A finished, durable pack.
#[derive(Clone, Debug)]
pub(crate) struct FinishedPack {
    /// File name under `packs/`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl PackWriter {
    /// Creates `name.tmp` in `dir`.
    fn create(dir: &Path, name: String) -> Result<Self> {
        let tmp_path = dir.join(format!("{name}.tmp"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .context(|| format!("creating pack {}", tmp_path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = Vec::with_capacity(PACK_HEADER_LEN as usize);
        header.extend_from_slice(PACK_MAGIC);
        header.extend_from_slice(&PACK_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&header)
            .context(|| format!("writing pack {}", tmp_path.display()))?;
        Ok(PackWriter {
            dir: dir.to_path_buf(),
            name,
            tmp_path,
            out: Some(out),
            len: PACK_HEADER_LEN,
            renamed: false,
        })
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends a frame; returns its offset.
    pub(crate) fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<u64> {
        let at = self.len;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| Error::bug("pack writer used after finish"))?;
        let encoded = header.encode();
        out.write_all(&encoded)
            .and_then(|_| out.write_all(payload))
            .context(|| format!("writing pack {}", self.tmp_path.display()))?;
        self.len += encoded.len() as u64 + payload.len() as u64;
        Ok(at)
    }

    /// Flushes, fsyncs, renames into place and fsyncs the directory.
    pub(crate) fn finish(mut self) -> Result<FinishedPack> {
        let out = self
            .out
            .take()
            .ok_or_else(|| Error::bug("pack writer finished twice"))?;
        let file = out.into_inner().map_err(|e| {
            Error::io(
                format!("writing pack {}", self.tmp_path.display()),
                e.into_error(),
            )
        })?;
        crate::util::fault::point("pack-written");
        file.sync_all()
            .context(|| format!("syncing pack {}", self.tmp_path.display()))?;
        crate::util::fault::point("pack-synced");
        drop(file);
        let final_path = self.dir.join(&self.name);
        fs::rename(&self.tmp_path, &final_path)
            .context(|| format!("renaming pack to {}", final_path.display()))?;
        self.renamed = true;
        crate::util::fs::sync_dir(&self.dir)?;
        crate::util::fault::point("pack-renamed");
        Ok(FinishedPack {
            name: self.name.clone(),
            size: self.len,
        })
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.tmp_path);
        }
    }
}

//! Reading image sources: OCI layout directories and tars, and `docker
//! save` archives, with every path kept inside the source (symlinks in a
//! layout may not point outside it, archive members may not repeat) and
//! JSON documents size-limited.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::image::oci::{self, Descriptor};
use crate::layer::input::{Compression, read_magic, unsupported_compression};
use crate::store::digest::Digest;
use crate::util::fs::Spool;

/// Symlinks inside an archive are followed at most this many times.
const MAX_LINK_HOPS: usize = 16;

pub(super) enum TarItem {
    File { offset: u64, size: u64 },
    Link(std::result::Result<String, String>),
    Duplicate,
}

/// Where an import reads from: a layout directory or a tar file.
pub(super) enum Source {
    Dir {
        root: PathBuf,
        name: String,
    },
    Tar {
        path: PathBuf,
        name: String,
        items: HashMap<String, TarItem>,
        /// The decompressed (or piped) archive, when `path` is a spool.
        _spool: Option<Spool>,
    },
}

impl Source {
    /// Opens a layout directory, or an archive: a tar, or a tar compressed
    /// with gzip or zstd (as `docker save | gzip` writes), or `-` for
    /// standard input. A compressed or piped archive is first spooled,
    /// decompressed, into `spool_dir`, since reading it needs to seek.
    pub(super) fn open(path: &Path, spool_dir: &Path) -> Result<Source> {
        let stdin = path.as_os_str() == "-";
        let name = if stdin {
            "standard input".to_string()
        } else {
            path.display().to_string()
        };
        let mut input: Box<dyn Read> = if stdin {
            Box::new(std::io::stdin().lock())
        } else {
            let meta = fs::metadata(path).context(|| format!("cannot open {name}"))?;
            if meta.is_dir() {
                let root = fs::canonicalize(path).context(|| format!("resolving {name}"))?;
                return Ok(Source::Dir { root, name });
            }
            Box::new(File::open(path).context(|| format!("cannot open {name}"))?)
        };
        let magic = read_magic(&mut input).context(|| format!("reading {name}"))?;
        if let Some(format) = unsupported_compression(&magic) {
            return Err(Error::invalid(
                name,
                format!(
                    "the archive is {format}-compressed; layerstore reads image archives as \
                     tar, gzip or zstd (decompress it first)"
                ),
            ));
        }
        let compression = Compression::detect(&magic);
        let mut whole = std::io::Cursor::new(magic).chain(input);
        let read_failed = |format: &'static str| {
            let name = name.clone();
            move |e: std::io::Error| match format {
                "" => Error::io(format!("reading {name}"), e),
                _ => Error::invalid(
                    name.clone(),
                    format!("cannot decompress it as {format}: {e}"),
                ),
            }
        };
        let spool = match compression {
            Compression::None if !stdin => None,
            Compression::None => Some(Spool::fill(spool_dir, &mut whole, read_failed(""))?),
            Compression::Gzip => {
                let mut d = flate2::read::MultiGzDecoder::new(whole);
                Some(Spool::fill(spool_dir, &mut d, read_failed("gzip"))?)
            }
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(whole)
                    .map_err(|e| Error::io(format!("reading {name}"), e))?;
                Some(Spool::fill(spool_dir, &mut d, read_failed("zstd"))?)
            }
        };
        let tar_path = spool.as_ref().map_or(path, |s| s.path()).to_path_buf();
        let file = File::open(&tar_path).context(|| format!("cannot open {name}"))?;
        let mut archive = tar::Archive::new(file);
        let mut items = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| not_archive(&name, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| not_archive(&name, e))?;
            let raw_path = entry.path_bytes();
            let Ok(text) = std::str::from_utf8(&raw_path) else {
                continue;
            };
            // Entries we could never be asked for (escaping paths) are ignored.
            let Ok(normal) = oci::normalize_path(text, &name) else {
                continue;
            };
            let kind = entry.header().entry_type();
            let item = if kind.is_file() || kind == tar::EntryType::Continuous {
                TarItem::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let resolved = if kind.is_symlink() {
                    oci::resolve_link(&normal, &target, &name).map_err(|e| e.to_string())
                } else {
                    oci::normalize_path(&target, &name).map_err(|e| e.to_string())
                };
                TarItem::Link(resolved)
            } else {
                continue;
            };
            // A path that appears twice is ambiguous: refuse it if used.
            let item = if items.contains_key(&normal) {
                TarItem::Duplicate
            } else {
                item
            };
            items.insert(normal, item);
        }
        Ok(Source::Tar {
            path: tar_path,
            name,
            items,
            _spool: spool,
        })
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Source::Dir { name, .. } | Source::Tar { name, .. } => name,
        }
    }

    pub(super) fn has(&self, rel: &str) -> bool {
        match self {
            Source::Dir { root, .. } => root.join(rel).exists(),
            Source::Tar { items, .. } => items.contains_key(rel),
        }
    }

    fn missing(&self, rel: &str) -> Error {
        Error::invalid(self.name().to_string(), format!("{rel} is missing"))
    }

    /// Opens a file of the source; returns it and its size.
    pub(super) fn open_file(&self, rel: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        match self {
            Source::Dir { root, name } => {
                let full = root.join(rel);
                let real = fs::canonicalize(&full).map_err(|_| self.missing(rel))?;
                if !real.starts_with(root) {
                    return Err(Error::invalid(
                        name.clone(),
                        format!(
                            "{rel} is a symlink to {}, outside the layout",
                            real.display()
                        ),
                    ));
                }
                let file = File::open(&real).context(|| format!("opening {}", real.display()))?;
                let size = file
                    .metadata()
                    .context(|| format!("reading {}", real.display()))?
                    .len();
                Ok((Box::new(file), size))
            }
            Source::Tar {
                path, name, items, ..
            } => {
                let mut current = rel.to_string();
                for _ in 0..MAX_LINK_HOPS {
                    match items.get(&current) {
                        None => return Err(self.missing(&current)),
                        Some(TarItem::Duplicate) => {
                            return Err(Error::invalid(
                                name.clone(),
                                format!("{current} appears more than once in the archive"),
                            ));
                        }
                        Some(TarItem::Link(Err(why))) => {
                            return Err(Error::invalid(name.clone(), why.clone()));
                        }
                        Some(TarItem::Link(Ok(target))) => current = target.clone(),
                        Some(TarItem::File { offset, size }) => {
                            let mut file =
                                File::open(path).context(|| format!("opening {name}"))?;
                            file.seek(SeekFrom::Start(*offset))
                                .context(|| format!("reading {name}"))?;
                            return Ok((Box::new(file.take(*size)), *size));
                        }
                    }
                }
                Err(Error::invalid(
                    name.clone(),
                    format!("{rel}: too many levels of symbolic links"),
                ))
            }
        }
    }

    /// Reads a small file (JSON) whole, refusing oversized ones.
    pub(super) fn read_small(&self, rel: &str) -> Result<Vec<u8>> {
        let (reader, size) = self.open_file(rel)?;
        if size > oci::MAX_JSON {
            return Err(Error::invalid(
                format!("{}:{rel}", self.name()),
                format!(
                    "{size} bytes exceeds the {}-byte limit for JSON documents",
                    oci::MAX_JSON
                ),
            ));
        }
        let mut out = Vec::with_capacity(size as usize);
        reader
            .take(oci::MAX_JSON + 1)
            .read_to_end(&mut out)
            .context(|| format!("reading {}:{rel}", self.name()))?;
        Ok(out)
    }

    /// Reads a small blob and checks it against its descriptor.
    pub(super) fn read_blob(&self, desc: &Descriptor, context: &str) -> Result<(Digest, Vec<u8>)> {
        let digest = desc.parsed_digest(context)?;
        let size = desc.checked_size(context)?;
        let rel = oci::blob_path(&digest);
        let bytes = self.read_small(&rel)?;
        let at = format!("{}:{rel}", self.name());
        if bytes.len() as u64 != size {
            return Err(Error::invalid(
                at,
                format!(
                    "blob is {} bytes but its descriptor says {size}",
                    bytes.len()
                ),
            ));
        }
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(Error::invalid(
                at,
                format!("blob content hashes to {actual}, not its digest {digest}"),
            ));
        }
        Ok((digest, bytes))
    }
}

fn not_archive(name: &str, e: io::Error) -> Error {
    Error::invalid(
        name.to_string(),
        format!("not a readable tar archive of an image: {e}"),
    )
}

// ---------------------------------------------------------------- import

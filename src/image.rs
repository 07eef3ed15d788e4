//! Images: importing OCI image layouts and `docker save` archives, keeping
//! their manifests, indexes and configs verbatim, and exporting them back
//! as layouts or archives that docker, podman, skopeo and umoci accept.
//!
//! Import is all-or-nothing: every blob is checked against its descriptor
//! (digest and size) and every layer's DiffID against the config, layers
//! go through the normal put path (so they deduplicate with everything
//! stored) but into packs the index does not know yet, and one transaction
//! commits layers, documents and names together. On any error the packs
//! written so far are deleted and the index is untouched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, IoContext, Result};
use crate::layer::put::{self, PreparedPut, PutContext, PutOptions, PutSession};
use crate::oci::{self, BlobKind, Descriptor};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::{Index, ManifestLayer, ManifestRecord, NewImport};

/// Indexes may nest at most this deep.
const MAX_INDEX_DEPTH: usize = 8;
/// Symlinks inside an archive are followed at most this many times.
const MAX_LINK_HOPS: usize = 16;

/// Output format of [`Store::export_images`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// An OCI image layout directory.
    Oci,
    /// A `docker save` / `docker load` tar archive.
    DockerArchive,
}

/// One image an import added or updated.
#[derive(Clone, Debug, Serialize)]
pub struct ImportedImage {
    /// Its name.
    pub name: String,
    /// The manifest (or index) digest it points at.
    pub digest: Digest,
    /// Manifests it covers (one, or one per platform).
    pub manifests: Vec<Digest>,
}

/// What an import did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// `oci` or `docker-archive`.
    pub format: String,
    /// Names added or moved.
    pub images: Vec<ImportedImage>,
    /// Layer blobs read.
    pub layers: u64,
    /// Layers that were not stored before.
    pub new_layers: u64,
    /// Bytes the store's packs grew by.
    pub added_bytes: u64,
}

/// An image, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    /// Name.
    pub name: String,
    /// Manifest or index digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Platforms (one per manifest).
    pub platforms: Vec<String>,
    /// Layers over all its manifests.
    pub layers: u64,
    /// Uncompressed bytes of those layers.
    pub size: u64,
    /// When the name was set, Unix seconds.
    pub created: i64,
}

/// One layer of an inspected image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageLayer {
    /// DiffID.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Media type in the manifest.
    pub media_type: String,
    /// Blob digest in the manifest.
    pub blob_digest: Digest,
    /// Blob size in the manifest.
    pub blob_size: u64,
    /// How many other image names also use this layer.
    pub shared_with: u64,
}

/// One manifest of an inspected image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageManifestDetails {
    /// Manifest digest.
    pub digest: Digest,
    /// Platform, if known.
    pub platform: Option<String>,
    /// Config digest.
    pub config: Digest,
    /// Layers, base first.
    pub layers: Vec<ImageLayer>,
}

/// An image in detail.
#[derive(Clone, Debug, Serialize)]
pub struct ImageDetails {
    /// Name.
    pub name: String,
    /// Manifest or index digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its manifests.
    pub manifests: Vec<ImageManifestDetails>,
}

/// One image written by an export.
#[derive(Clone, Debug, Serialize)]
pub struct ExportedImage {
    /// Name.
    pub name: String,
    /// Digest as stored.
    pub stored_digest: Digest,
    /// Digest as written (differs when layers had to be rewritten).
    pub exported_digest: Digest,
    /// True when the manifest (or index) digest changed.
    pub digest_changed: bool,
    /// Why it changed, if it did.
    pub note: Option<String>,
}

/// What an export wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// Where.
    pub path: PathBuf,
    /// Format.
    pub format: ExportFormat,
    /// Images.
    pub images: Vec<ExportedImage>,
}

// ---------------------------------------------------------------- sources

enum TarItem {
    File { offset: u64, size: u64 },
    Link(std::result::Result<String, String>),
    Duplicate,
}

/// Where an import reads from: a layout directory or a tar file.
enum Source {
    Dir {
        root: PathBuf,
        name: String,
    },
    Tar {
        path: PathBuf,
        name: String,
        items: HashMap<String, TarItem>,
    },
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        let name = path.display().to_string();
        let meta = fs::metadata(path).context(|| format!("cannot open {name}"))?;
        if meta.is_dir() {
            let root = fs::canonicalize(path).context(|| format!("resolving {name}"))?;
            return Ok(Source::Dir { root, name });
        }
        let file = File::open(path).context(|| format!("cannot open {name}"))?;
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
            path: path.to_path_buf(),
            name,
            items,
        })
    }

    fn name(&self) -> &str {
        match self {
            Source::Dir { name, .. } | Source::Tar { name, .. } => name,
        }
    }

    fn has(&self, rel: &str) -> bool {
        match self {
            Source::Dir { root, .. } => root.join(rel).exists(),
            Source::Tar { items, .. } => items.contains_key(rel),
        }
    }

    fn missing(&self, rel: &str) -> Error {
        Error::invalid(self.name().to_string(), format!("{rel} is missing"))
    }

    /// Opens a file of the source; returns it and its size.
    fn open_file(&self, rel: &str) -> Result<(Box<dyn Read + Send>, u64)> {
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
            Source::Tar { path, name, items } => {
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
    fn read_small(&self, rel: &str) -> Result<Vec<u8>> {
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
    fn read_blob(&self, desc: &Descriptor, context: &str) -> Result<(Digest, Vec<u8>)> {
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

struct Importer<'a> {
    src: &'a Source,
    ctx: PutContext<'a>,
    session: PutSession,
    prepared: Vec<PreparedPut>,
    /// Blob digest -> (DiffID, blob size) of layers already read.
    layer_blobs: HashMap<Digest, (Digest, u64)>,
    blobs: Vec<(Digest, String, Vec<u8>)>,
    manifests: Vec<ManifestRecord>,
    index_children: Vec<(Digest, Vec<Digest>)>,
    layers_read: u64,
}

impl Importer<'_> {
    fn put_layer_blob(
        &mut self,
        rel: &str,
        expected: Option<(Digest, u64)>,
    ) -> Result<(Digest, Digest, u64, &'static str)> {
        let (reader, size) = self.src.open_file(rel)?;
        let at = format!("{}:{rel}", self.src.name());
        if let Some((_, want)) = expected
            && size != want
        {
            return Err(Error::invalid(
                at,
                format!("blob is {size} bytes but its descriptor says {want}"),
            ));
        }
        let prepared = put::prepare_put(
            &self.ctx,
            reader,
            &PutOptions {
                source_name: Some(at.clone()),
                ..PutOptions::default()
            },
            &mut self.session,
        )?;
        self.layers_read += 1;
        let info = prepared.info.clone();
        self.prepared.push(prepared);
        let blob_digest = info.compressed_digest.unwrap_or(info.digest);
        if let Some((want, _)) = expected
            && blob_digest != want
        {
            return Err(Error::invalid(
                at,
                format!("blob content hashes to {blob_digest}, not its digest {want}"),
            ));
        }
        Ok((
            info.digest,
            blob_digest,
            info.input_size,
            info.compression.media_type(),
        ))
    }

    fn import_manifest(
        &mut self,
        digest: Digest,
        bytes: Vec<u8>,
        media_type: &str,
        platform: Option<String>,
    ) -> Result<()> {
        let context = format!("{}:{}", self.src.name(), oci::blob_path(&digest));
        let manifest = oci::parse_manifest(&bytes, &context)?;
        let (config_digest, config_bytes) = self.src.read_blob(&manifest.config, &context)?;
        let config_context = format!("{}:{}", self.src.name(), oci::blob_path(&config_digest));
        let (config, diff_ids) = oci::parse_config(&config_bytes, &config_context)?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::invalid(
                context,
                format!(
                    "manifest lists {} layers but its config lists {} diff_ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (i, desc) in manifest.layers.iter().enumerate() {
            let blob_digest = desc.parsed_digest(&context)?;
            let blob_size = desc.checked_size(&context)?;
            let diff_id = match self.layer_blobs.get(&blob_digest) {
                Some((diff_id, _)) => *diff_id,
                None => {
                    let rel = oci::blob_path(&blob_digest);
                    let (diff_id, _, _, _) =
                        self.put_layer_blob(&rel, Some((blob_digest, blob_size)))?;
                    self.layer_blobs.insert(blob_digest, (diff_id, blob_size));
                    diff_id
                }
            };
            if diff_id != diff_ids[i] {
                return Err(Error::invalid(
                    context,
                    format!(
                        "layer {i} ({blob_digest}) uncompresses to DiffID {diff_id}, but the config lists {}",
                        diff_ids[i]
                    ),
                ));
            }
            layers.push(ManifestLayer {
                diff_id,
                size: 0,
                media_type: desc.media_type.clone(),
                blob_digest,
                blob_size,
            });
        }
        let platform = platform.or_else(|| match (&config.os, &config.architecture) {
            (Some(os), Some(arch)) => Some(format!("{os}/{arch}")),
            _ => None,
        });
        self.blobs.push((
            config_digest,
            manifest.config.media_type.clone(),
            config_bytes,
        ));
        self.blobs.push((digest, media_type.to_string(), bytes));
        self.manifests.push(ManifestRecord {
            digest,
            config: config_digest,
            platform,
            layers,
        });
        Ok(())
    }

    /// Imports what a descriptor points at; returns the manifests it covers.
    fn import_descriptor(
        &mut self,
        desc: &Descriptor,
        depth: usize,
        path: &mut Vec<Digest>,
        top_level: bool,
    ) -> Result<Vec<Digest>> {
        let context = format!("{}:index.json", self.src.name());
        let digest = desc.parsed_digest(&context)?;
        if path.contains(&digest) {
            return Err(Error::invalid(
                self.src.name().to_string(),
                format!("index {digest} includes itself"),
            ));
        }
        if depth > MAX_INDEX_DEPTH {
            return Err(Error::invalid(
                self.src.name().to_string(),
                format!("image indexes nest more than {MAX_INDEX_DEPTH} levels deep"),
            ));
        }
        let (_, bytes) = self.src.read_blob(desc, &context)?;
        let mut media_type = desc.media_type.clone();
        if media_type.is_empty() {
            media_type = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
        }
        match oci::blob_kind(&media_type) {
            BlobKind::Manifest => {
                let platform = desc.platform.as_ref().map(|p| p.label());
                self.import_manifest(digest, bytes, &media_type, platform)?;
                Ok(vec![digest])
            }
            BlobKind::Index => {
                let blob_context = format!("{}:{}", self.src.name(), oci::blob_path(&digest));
                let index = oci::parse_index(&bytes, &blob_context)?;
                path.push(digest);
                let mut children = Vec::new();
                let mut manifests = Vec::new();
                for child in &index.manifests {
                    manifests.extend(self.import_descriptor(child, depth + 1, path, false)?);
                    children.push(child.parsed_digest(&blob_context)?);
                }
                path.pop();
                self.index_children.push((digest, children));
                self.blobs.push((digest, media_type, bytes));
                Ok(manifests)
            }
            BlobKind::Layer | BlobKind::Unknown if !top_level => {
                // The spec lets indexes list content of other types; keep it
                // verbatim so the index stays valid, but it is not an image.
                self.blobs.push((digest, media_type, bytes));
                Ok(Vec::new())
            }
            _ => Err(Error::invalid(
                context,
                format!(
                    "{digest} has media type {media_type:?}, which is not an image manifest or index"
                ),
            )),
        }
    }
}

fn import_oci(
    imp: &mut Importer<'_>,
    name_override: Option<&str>,
) -> Result<Vec<(String, Digest, Vec<Digest>)>> {
    let context = format!("{}:index.json", imp.src.name());
    if imp.src.has("oci-layout") {
        let layout = imp.src.read_small("oci-layout")?;
        let version = serde_json::from_slice::<Value>(&layout).ok().and_then(|v| {
            v.get("imageLayoutVersion")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        if version.as_deref() != Some("1.0.0") {
            return Err(Error::invalid(
                format!("{}:oci-layout", imp.src.name()),
                format!("unsupported imageLayoutVersion {version:?} (expected \"1.0.0\")"),
            ));
        }
    }
    let index = oci::parse_index(&imp.src.read_small("index.json")?, &context)?;
    if index.manifests.is_empty() {
        return Err(Error::invalid(context, "index.json lists no images"));
    }
    if name_override.is_some() && index.manifests.len() > 1 {
        return Err(Error::invalid(
            context,
            format!(
                "--name names one image, but index.json lists {}",
                index.manifests.len()
            ),
        ));
    }
    let mut named = Vec::new();
    for desc in &index.manifests {
        let manifests = imp.import_descriptor(desc, 0, &mut Vec::new(), true)?;
        let digest = desc.parsed_digest(&context)?;
        let name = name_override
            .map(str::to_string)
            .or_else(|| desc.ref_name().map(str::to_string))
            .unwrap_or_else(|| digest.to_string());
        oci::check_image_name(&name)?;
        named.push((name, digest, manifests));
    }
    Ok(named)
}

fn import_docker(
    imp: &mut Importer<'_>,
    name_override: Option<&str>,
) -> Result<Vec<(String, Digest, Vec<Digest>)>> {
    let context = format!("{}:manifest.json", imp.src.name());
    let entries = oci::parse_docker_manifest(&imp.src.read_small("manifest.json")?, &context)?;
    if name_override.is_some() && entries.len() > 1 {
        return Err(Error::invalid(
            context,
            format!(
                "--name names one image, but manifest.json lists {}",
                entries.len()
            ),
        ));
    }
    let mut named = Vec::new();
    for entry in &entries {
        let config_rel = oci::normalize_path(&entry.config, &context)?;
        let config_bytes = imp.src.read_small(&config_rel)?;
        let config_digest = Digest::of(&config_bytes);
        let config_context = format!("{}:{config_rel}", imp.src.name());
        let (config, diff_ids) = oci::parse_config(&config_bytes, &config_context)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(Error::invalid(
                context,
                format!(
                    "{config_rel} lists {} diff_ids but manifest.json lists {} layers",
                    diff_ids.len(),
                    entry.layers.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        for (i, layer_path) in entry.layers.iter().enumerate() {
            let rel = oci::normalize_path(layer_path, &context)?;
            let (diff_id, blob_digest, blob_size, media_type) = imp.put_layer_blob(&rel, None)?;
            if diff_id != diff_ids[i] {
                return Err(Error::invalid(
                    format!("{}:{rel}", imp.src.name()),
                    format!(
                        "layer {i} has DiffID {diff_id}, but {config_rel} lists {}",
                        diff_ids[i]
                    ),
                ));
            }
            descriptors.push(json!({"mediaType": media_type, "digest": blob_digest.to_string(), "size": blob_size}));
            layers.push(ManifestLayer {
                diff_id,
                size: 0,
                media_type: media_type.to_string(),
                blob_digest,
                blob_size,
            });
        }
        // docker save has no manifest of its own: synthesise the OCI one
        // that describes exactly the blobs it holds.
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci::MT_OCI_MANIFEST,
            "config": {"mediaType": oci::MT_OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": descriptors,
        });
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::corrupt(format!("encoding manifest: {e}")))?;
        let digest = Digest::of(&bytes);
        let platform = match (&config.os, &config.architecture) {
            (Some(os), Some(arch)) => Some(format!("{os}/{arch}")),
            _ => None,
        };
        imp.blobs
            .push((config_digest, oci::MT_OCI_CONFIG.to_string(), config_bytes));
        imp.blobs
            .push((digest, oci::MT_OCI_MANIFEST.to_string(), bytes));
        imp.manifests.push(ManifestRecord {
            digest,
            config: config_digest,
            platform,
            layers,
        });
        let names: Vec<String> = match name_override {
            Some(n) => vec![n.to_string()],
            None => entry
                .repo_tags
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| vec![digest.to_string()]),
        };
        for name in names {
            oci::check_image_name(&name)?;
            named.push((name, digest, vec![digest]));
        }
    }
    Ok(named)
}

pub(crate) fn import(
    store: &Store,
    path: &Path,
    name_override: Option<&str>,
) -> Result<ImportReport> {
    if let Some(n) = name_override {
        oci::check_image_name(n)?;
    }
    let src = Source::open(path)?;
    let format = if src.has("index.json") {
        "oci"
    } else if src.has("manifest.json") {
        "docker-archive"
    } else {
        return Err(Error::invalid(
            src.name().to_string(),
            "neither an OCI image layout (no index.json) nor a docker save archive (no manifest.json)",
        ));
    };
    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let mut index = store.index()?;
    let mut imp = Importer {
        src: &src,
        ctx: store.put_context(&mut index),
        session: PutSession::default(),
        prepared: Vec::new(),
        layer_blobs: HashMap::new(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        index_children: Vec::new(),
        layers_read: 0,
    };
    let named = if format == "oci" {
        import_oci(&mut imp, name_override)?
    } else {
        import_docker(&mut imp, name_override)?
    };
    let Importer {
        src: _,
        ctx,
        session,
        mut prepared,
        layer_blobs: _,
        blobs,
        mut manifests,
        index_children,
        layers_read,
    } = imp;
    drop((ctx, session));
    let sizes: HashMap<Digest, u64> = prepared
        .iter()
        .map(|p| (p.info.digest, p.info.size))
        .collect();
    for m in &mut manifests {
        for l in &mut m.layers {
            l.size = sizes.get(&l.diff_id).copied().unwrap_or(0);
        }
    }
    let new_layers = prepared.iter().filter(|p| p.info.new_layer).count() as u64;
    let added_bytes = prepared.iter().map(|p| p.info.added_bytes).sum();
    {
        let commit = NewImport {
            puts: prepared
                .iter()
                .map(|p| (p.packs.as_slice(), &p.layer))
                .collect(),
            blobs,
            manifests,
            index_children,
            names: named.iter().map(|(n, d, _)| (n.clone(), *d)).collect(),
        };
        crate::util::fault::point("import-before-commit");
        index.commit_import(&commit)?;
    }
    for p in &mut prepared {
        p.committed();
    }
    Ok(ImportReport {
        format: format.to_string(),
        images: named
            .into_iter()
            .map(|(name, digest, manifests)| ImportedImage {
                name,
                digest,
                manifests,
            })
            .collect(),
        layers: layers_read,
        new_layers,
        added_bytes,
    })
}

// ---------------------------------------------------------------- queries

/// The manifest of image `name` that a checkout or container uses: its
/// only one, else the one for this machine's architecture on linux, else
/// linux/amd64, else the first. Layer sizes are filled in.
pub(crate) fn runnable_manifest(index: &Index, name: &str) -> Result<ManifestRecord> {
    let target = index
        .image_target(name)?
        .ok_or_else(|| Error::not_found(format!("image {name:?}")))?;
    let mut manifests = manifests_of(index, &target)?;
    layer_sizes(index, &mut manifests)?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    let pick = manifests
        .iter()
        .position(|m| {
            m.platform.as_deref().is_some_and(|p| {
                p == format!("linux/{arch}") || p.starts_with(&format!("linux/{arch}/"))
            })
        })
        .or_else(|| {
            manifests
                .iter()
                .position(|m| m.platform.as_deref() == Some("linux/amd64"))
        })
        .unwrap_or(0);
    if pick < manifests.len() {
        Ok(manifests.swap_remove(pick))
    } else {
        Err(Error::corrupt(format!("image {name:?} has no manifest")))
    }
}

/// Manifests an image name covers, in index order.
fn manifests_of(index: &Index, target: &Digest) -> Result<Vec<ManifestRecord>> {
    let mut out = Vec::new();
    collect_manifests(index, target, 0, &mut out)?;
    Ok(out)
}

fn collect_manifests(
    index: &Index,
    digest: &Digest,
    depth: usize,
    out: &mut Vec<ManifestRecord>,
) -> Result<()> {
    if let Some(m) = index.manifest(digest)? {
        out.push(m);
        return Ok(());
    }
    if depth > MAX_INDEX_DEPTH {
        return Ok(());
    }
    for child in index.index_children(digest)? {
        collect_manifests(index, &child, depth + 1, out)?;
    }
    Ok(())
}

fn media_type_of(index: &Index, digest: &Digest) -> Result<String> {
    Ok(index.blob(digest)?.map(|(mt, _)| mt).unwrap_or_default())
}

fn layer_sizes(index: &Index, records: &mut [ManifestRecord]) -> Result<()> {
    for m in records {
        for l in &mut m.layers {
            if let Some(row) = index.layer(&l.diff_id)? {
                l.size = row.size;
            }
        }
    }
    Ok(())
}

pub(crate) fn list(store: &Store) -> Result<Vec<ImageSummary>> {
    let index = store.index()?;
    let mut out = Vec::new();
    for (name, digest, created) in index.images()? {
        let manifests = manifests_of(&index, &digest)?;
        out.push(ImageSummary {
            name,
            media_type: media_type_of(&index, &digest)?,
            platforms: manifests
                .iter()
                .filter_map(|m| m.platform.clone())
                .collect(),
            layers: manifests.iter().map(|m| m.layers.len() as u64).sum(),
            size: manifests
                .iter()
                .flat_map(|m| &m.layers)
                .map(|l| l.size)
                .sum(),
            digest,
            created,
        });
    }
    Ok(out)
}

pub(crate) fn details(store: &Store, name: &str) -> Result<ImageDetails> {
    let index = store.index()?;
    let digest = index
        .image_target(name)?
        .ok_or_else(|| Error::not_found(format!("image {name:?}")))?;
    // Which other names use each layer.
    let mut users: HashMap<Digest, HashSet<String>> = HashMap::new();
    for (other, target, _) in index.images()? {
        for m in manifests_of(&index, &target)? {
            for l in m.layers {
                users.entry(l.diff_id).or_default().insert(other.clone());
            }
        }
    }
    let mut manifests = manifests_of(&index, &digest)?;
    layer_sizes(&index, &mut manifests)?;
    Ok(ImageDetails {
        name: name.to_string(),
        media_type: media_type_of(&index, &digest)?,
        digest,
        manifests: manifests
            .into_iter()
            .map(|m| ImageManifestDetails {
                digest: m.digest,
                platform: m.platform,
                config: m.config,
                layers: m
                    .layers
                    .into_iter()
                    .map(|l| ImageLayer {
                        shared_with: users
                            .get(&l.diff_id)
                            .map(|u| u.iter().filter(|n| n.as_str() != name).count() as u64)
                            .unwrap_or(0),
                        diff_id: l.diff_id,
                        size: l.size,
                        media_type: l.media_type,
                        blob_digest: l.blob_digest,
                        blob_size: l.blob_size,
                    })
                    .collect(),
            })
            .collect(),
    })
}

// ---------------------------------------------------------------- export

/// Writes layouts: each blob once, under blobs/sha256.
struct LayoutWriter<'a> {
    store: &'a Store,
    index: &'a Index,
    root: PathBuf,
    written: HashSet<Digest>,
}

impl LayoutWriter<'_> {
    fn blob_file(&self, digest: &Digest) -> PathBuf {
        self.root.join(oci::blob_path(digest))
    }

    fn write_bytes(&mut self, digest: Digest, bytes: &[u8]) -> Result<()> {
        if self.written.insert(digest) {
            let path = self.blob_file(&digest);
            fs::write(&path, bytes).context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn write_layer(&mut self, diff_id: Digest) -> Result<()> {
        if self.written.insert(diff_id) {
            let path = self.blob_file(&diff_id);
            self.store.get_layer_to_path(&diff_id, &path, None)?;
        }
        Ok(())
    }

    fn stored_blob(&self, digest: &Digest) -> Result<(String, Vec<u8>)> {
        self.index.blob(digest)?.ok_or_else(|| {
            Error::corrupt(format!("document {digest} is referenced but not stored"))
        })
    }

    /// Writes a manifest or index and everything below it; returns the
    /// descriptor to reference it by and why it changed, if it did.
    fn write_target(
        &mut self,
        digest: &Digest,
        depth: usize,
    ) -> Result<(Descriptor, Option<String>)> {
        let (media_type, bytes) = self.stored_blob(digest)?;
        let (new_bytes, note) = match oci::blob_kind(&media_type) {
            BlobKind::Manifest => self.write_manifest(digest, bytes)?,
            BlobKind::Index if depth <= MAX_INDEX_DEPTH => {
                let mut doc: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::corrupt(format!("stored index {digest}: {e}")))?;
                let mut note = None;
                if let Some(entries) = doc.get_mut("manifests").and_then(Value::as_array_mut) {
                    for entry in entries {
                        let Some(child) = entry
                            .get("digest")
                            .and_then(Value::as_str)
                            .and_then(|d| Digest::parse(d).ok())
                        else {
                            continue;
                        };
                        let (desc, child_note) = self.write_target(&child, depth + 1)?;
                        if child_note.is_some() {
                            entry["digest"] = json!(desc.digest);
                            entry["size"] = json!(desc.size);
                            entry["mediaType"] = json!(desc.media_type);
                            note = child_note;
                        }
                    }
                }
                match note {
                    Some(n) => (
                        serde_json::to_vec(&doc)
                            .map_err(|e| Error::corrupt(format!("encoding index: {e}")))?,
                        Some(n),
                    ),
                    None => (bytes, None),
                }
            }
            _ => (bytes, None),
        };
        let new_digest = Digest::of(&new_bytes);
        self.write_bytes(new_digest, &new_bytes)?;
        let mut out_type = media_type;
        if note.is_some() && oci::blob_kind(&out_type) == BlobKind::Manifest {
            out_type = oci::MT_OCI_MANIFEST.to_string();
        }
        if note.is_some() && oci::blob_kind(&out_type) == BlobKind::Index {
            out_type = serde_json::from_slice::<Value>(&new_bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or(out_type);
        }
        Ok((
            Descriptor {
                media_type: out_type,
                digest: new_digest.to_string(),
                size: new_bytes.len() as i64,
                annotations: None,
                platform: None,
            },
            note,
        ))
    }

    fn write_manifest(
        &mut self,
        digest: &Digest,
        bytes: Vec<u8>,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let record = self
            .index
            .manifest(digest)?
            .ok_or_else(|| Error::corrupt(format!("manifest {digest} has no layer records")))?;
        let (_, config) = self.stored_blob(&record.config)?;
        self.write_bytes(record.config, &config)?;
        let mut rewritten = Vec::new();
        for (i, layer) in record.layers.iter().enumerate() {
            self.write_layer(layer.diff_id)?;
            if !oci::is_uncompressed_layer(&layer.media_type) || layer.blob_digest != layer.diff_id
            {
                rewritten.push(i);
            }
        }
        if rewritten.is_empty() {
            return Ok((bytes, None));
        }
        // The original compressed blobs cannot be reproduced byte for byte:
        // describe the exact uncompressed layers instead.
        let mut doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(format!("stored manifest {digest}: {e}")))?;
        doc["mediaType"] = json!(oci::MT_OCI_MANIFEST);
        if doc["config"]["mediaType"] == json!(oci::MT_DOCKER_CONFIG) {
            doc["config"]["mediaType"] = json!(oci::MT_OCI_CONFIG);
        }
        for &i in &rewritten {
            let layer = &record.layers[i];
            let size = self
                .index
                .layer(&layer.diff_id)?
                .map(|l| l.size)
                .unwrap_or(0);
            let entry = &mut doc["layers"][i];
            entry["mediaType"] = json!(oci::MT_OCI_LAYER_TAR);
            entry["digest"] = json!(layer.diff_id.to_string());
            entry["size"] = json!(size);
        }
        let out = serde_json::to_vec(&doc)
            .map_err(|e| Error::corrupt(format!("encoding manifest: {e}")))?;
        Ok((
            out,
            Some(format!(
                "{} compressed layer(s) written uncompressed (the original compressed blobs are not kept byte for byte)",
                rewritten.len()
            )),
        ))
    }
}

pub(crate) fn export(
    store: &Store,
    names: &[String],
    format: ExportFormat,
    out: &Path,
) -> Result<ExportReport> {
    if names.is_empty() {
        return Err(Error::invalid("export", "no image names given"));
    }
    if out.exists() {
        let empty_dir = out.is_dir()
            && fs::read_dir(out)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty_dir {
            return Err(Error::invalid(
                out.display().to_string(),
                "already exists; choose a new path",
            ));
        }
    }
    let index = store.index()?;
    let mut targets = Vec::new();
    for name in names {
        let digest = index
            .image_target(name)?
            .ok_or_else(|| Error::not_found(format!("image {name:?}")))?;
        targets.push((name.clone(), digest));
    }
    let tmp = crate::util::fs::temp_sibling(out);
    let result = match format {
        ExportFormat::Oci => export_oci(store, &index, &targets, &tmp),
        ExportFormat::DockerArchive => export_docker(store, &index, &targets, &tmp),
    };
    let images = match result {
        Ok(images) => images,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp).or_else(|_| fs::remove_file(&tmp));
            return Err(e);
        }
    };
    if out.is_dir() {
        fs::remove_dir(out).context(|| format!("replacing empty directory {}", out.display()))?;
    }
    fs::rename(&tmp, out).context(|| format!("renaming export to {}", out.display()))?;
    Ok(ExportReport {
        path: out.to_path_buf(),
        format,
        images,
    })
}

fn export_oci(
    store: &Store,
    index: &Index,
    targets: &[(String, Digest)],
    dir: &Path,
) -> Result<Vec<ExportedImage>> {
    fs::create_dir_all(dir.join("blobs/sha256"))
        .context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .context(|| format!("writing {}/oci-layout", dir.display()))?;
    let mut writer = LayoutWriter {
        store,
        index,
        root: dir.to_path_buf(),
        written: HashSet::new(),
    };
    let mut entries = Vec::new();
    let mut images = Vec::new();
    for (name, digest) in targets {
        let (mut desc, note) = writer.write_target(digest, 0)?;
        let mut annotations = BTreeMap::new();
        annotations.insert(oci::ANNOTATION_REF_NAME.to_string(), name.clone());
        desc.annotations = Some(annotations);
        let exported = desc.parsed_digest("export")?;
        images.push(ExportedImage {
            name: name.clone(),
            stored_digest: *digest,
            exported_digest: exported,
            digest_changed: exported != *digest,
            note,
        });
        entries.push(desc);
    }
    let top = json!({"schemaVersion": 2, "mediaType": oci::MT_OCI_INDEX, "manifests": entries});
    let bytes = serde_json::to_vec_pretty(&top)
        .map_err(|e| Error::corrupt(format!("encoding index.json: {e}")))?;
    fs::write(dir.join("index.json"), bytes)
        .context(|| format!("writing {}/index.json", dir.display()))?;
    Ok(images)
}

/// Minimal streaming tar writer for docker archives: ustar headers, data
/// written straight from the store, padding, end blocks.
struct TarOut {
    out: io::BufWriter<File>,
    name: String,
}

impl TarOut {
    fn header(&mut self, path: &str, size: u64, kind: tar::EntryType) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header
            .set_path(path)
            .map_err(|e| Error::io(format!("writing {}: entry {path}", self.name), e))?;
        header.set_size(size);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_entry_type(kind);
        header.set_mtime(0);
        header.set_cksum();
        self.out
            .write_all(header.as_bytes())
            .context(|| format!("writing {}", self.name))
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let pad = crate::store::tarscan::padding(size) as usize;
        self.out
            .write_all(&[0u8; 512][..pad])
            .context(|| format!("writing {}", self.name))
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        self.header(path, bytes.len() as u64, tar::EntryType::Regular)?;
        self.out
            .write_all(bytes)
            .context(|| format!("writing {}", self.name))?;
        self.pad(bytes.len() as u64)
    }
}

fn export_docker(
    store: &Store,
    index: &Index,
    targets: &[(String, Digest)],
    path: &Path,
) -> Result<Vec<ExportedImage>> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    let mut tar = TarOut {
        out: io::BufWriter::with_capacity(1 << 20, file),
        name: path.display().to_string(),
    };
    let mut written: HashSet<String> = HashSet::new();
    let mut entries: Vec<Value> = Vec::new();
    let mut by_config: HashMap<Digest, usize> = HashMap::new();
    let mut images = Vec::new();
    for (name, digest) in targets {
        let manifests = manifests_of(index, digest)?;
        let chosen = manifests
            .iter()
            .find(|m| m.platform.as_deref() == Some("linux/amd64"))
            .or_else(|| manifests.first())
            .ok_or_else(|| Error::corrupt(format!("image {name:?} has no manifest")))?;
        let note = (manifests.len() > 1).then(|| {
            format!(
                "docker archives hold one platform: wrote {} of {} manifests",
                chosen
                    .platform
                    .clone()
                    .unwrap_or_else(|| chosen.digest.to_string()),
                manifests.len()
            )
        });
        let (_, config) = index
            .blob(&chosen.config)?
            .ok_or_else(|| Error::corrupt(format!("config {} is not stored", chosen.config)))?;
        let config_path = format!("{}.json", chosen.config.hex());
        if written.insert(config_path.clone()) {
            tar.file(&config_path, &config)?;
        }
        let mut layer_paths = Vec::new();
        for layer in &chosen.layers {
            let dir = layer.diff_id.hex();
            let layer_path = format!("{dir}/layer.tar");
            if written.insert(layer_path.clone()) {
                let row = index
                    .layer(&layer.diff_id)?
                    .ok_or_else(|| Error::not_found(format!("layer {}", layer.diff_id)))?;
                tar.header(&format!("{dir}/"), 0, tar::EntryType::Directory)?;
                tar.header(&layer_path, row.size, tar::EntryType::Regular)?;
                store.get_layer(&layer.diff_id, &mut tar.out)?;
                tar.pad(row.size)?;
            }
            layer_paths.push(layer_path);
        }
        let tag = docker_tag(name);
        match by_config.get(&chosen.config) {
            Some(&i) if entries[i]["Layers"] == json!(layer_paths) => {
                if let (Some(tag), Some(tags)) = (tag, entries[i]["RepoTags"].as_array_mut()) {
                    tags.push(json!(tag));
                }
            }
            _ => {
                by_config.insert(chosen.config, entries.len());
                entries.push(json!({"Config": config_path, "RepoTags": tag.into_iter().collect::<Vec<_>>(), "Layers": layer_paths}));
            }
        }
        images.push(ExportedImage {
            name: name.clone(),
            stored_digest: *digest,
            exported_digest: chosen.digest,
            digest_changed: false,
            note,
        });
    }
    let manifest = serde_json::to_vec(&entries)
        .map_err(|e| Error::corrupt(format!("encoding manifest.json: {e}")))?;
    tar.file("manifest.json", &manifest)?;
    tar.out
        .write_all(&[0u8; 1024])
        .context(|| format!("writing {}", tar.name))?;
    let file = tar
        .out
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?;
    file.sync_all()
        .context(|| format!("syncing {}", path.display()))?;
    Ok(images)
}

/// A docker RepoTag for an image name (`repo:tag`), or None for a digest name.
fn docker_tag(name: &str) -> Option<String> {
    if name.starts_with("sha256:") {
        return None;
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    Some(if last.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    })
}

impl Store {
    /// Imports an OCI image layout (directory or tar) or a `docker save`
    /// archive, detected from its content. Every blob is verified; the
    /// import is all-or-nothing. `name` overrides the names it carries
    /// (only for a single image).
    ///
    /// ```no_run
    /// # let store = layerstore::Store::open("/tmp/store")?;
    /// let report = store.import_image("alpine.tar", Some("alpine:3.20"))?;
    /// println!("{}", report.images[0].digest);
    /// # Ok::<(), layerstore::Error>(())
    /// ```
    pub fn import_image(&self, path: impl AsRef<Path>, name: Option<&str>) -> Result<ImportReport> {
        import(self, path.as_ref(), name)
    }

    /// Writes images as an OCI layout directory or a docker archive at
    /// `out` (which must not exist, or be an empty directory). Layers are
    /// written exactly; a manifest whose layers were compressed is
    /// rewritten to describe them uncompressed, and the report says so.
    pub fn export_images(
        &self,
        names: &[String],
        format: ExportFormat,
        out: impl AsRef<Path>,
    ) -> Result<ExportReport> {
        export(self, names, format, out.as_ref())
    }

    /// All images, by name.
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        list(self)
    }

    /// One image in detail: manifests, config, layers and sharing.
    pub fn image(&self, name: &str) -> Result<ImageDetails> {
        details(self, name)
    }

    /// Gives the image `src` a second name `dst` (moving `dst` if it exists).
    pub fn tag_image(&self, src: &str, dst: &str) -> Result<()> {
        oci::check_image_name(dst)?;
        if self.index()?.tag_image(src, dst)? {
            Ok(())
        } else {
            Err(Error::not_found(format!("image {src:?}")))
        }
    }

    /// Removes an image name. Layers it alone used go (unless put
    /// directly, or used by a container, which keeps its manifest alive);
    /// their chunks come back at the next gc.
    pub fn remove_image(&self, name: &str) -> Result<()> {
        if self.index()?.remove_image(name)? {
            Ok(())
        } else {
            Err(Error::not_found(format!("image {name:?}")))
        }
    }
}

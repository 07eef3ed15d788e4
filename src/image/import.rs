//! Import: every blob checked against its descriptor and every layer's
//! DiffID against the config; layers go through the put path into packs
//! the index does not know yet, and one transaction commits layers,
//! documents and names together. On any error the packs written so far are
//! deleted and the index is untouched.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

use super::MAX_INDEX_DEPTH;
use super::MovedName;
use super::source::Source;
use crate::error::{Error, Result};
use crate::image::oci::{self, BlobKind, Descriptor};
use crate::image::*;
use crate::layer::put::{self, PreparedPut, PutContext, PutOptions, PutSession};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::{ManifestLayer, ManifestRecord, NewImport};

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
    /// Layer blob bytes read so far (for progress).
    bytes_read: u64,
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
        let base = self.bytes_read;
        let store = self.ctx.store.clone();
        let report = move |n: u64| store.progress("import", base + n, 0);
        let prepared = put::prepare_put(
            &self.ctx,
            reader,
            &PutOptions {
                source_name: Some(at.clone()),
                progress: Some(&report),
                ..PutOptions::default()
            },
            &mut self.session,
        )?;
        self.layers_read += 1;
        self.bytes_read += size;
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
        // An unnamed image goes by its own digest; any other name is checked.
        if name != digest.to_string() {
            oci::check_image_name(&name)?;
        }
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
            if name != digest.to_string() {
                oci::check_image_name(&name)?;
            }
            named.push((name, digest, vec![digest]));
        }
    }
    Ok(named)
}

pub(super) fn import(
    store: &Store,
    path: &Path,
    name_override: Option<&str>,
    force: bool,
) -> Result<ImportReport> {
    if let Some(n) = name_override {
        oci::check_image_name(n)?;
    }
    // Held while spooling too: gc (which holds the lock exclusively) may
    // then delete any spool file it finds as a dead import's leftover.
    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let src = Source::open(path, store.path())?;
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
        bytes_read: 0,
    };
    let named = if format == "oci" {
        import_oci(&mut imp, name_override)?
    } else {
        import_docker(&mut imp, name_override)?
    };
    // One name for two different images is ambiguous: which one it means
    // is not the archive's to decide by order.
    let mut seen: HashMap<&str, &Digest> = HashMap::new();
    for (name, digest, _) in &named {
        if let Some(first) = seen.insert(name, digest)
            && first != digest
        {
            return Err(Error::invalid(
                imp.src.name().to_string(),
                format!("names two different images {name:?} ({first} and {digest})"),
            ));
        }
    }
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
        bytes_read: _,
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
    let moved;
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
            force,
        };
        crate::util::fault::point("import-before-commit");
        moved = index.commit_import(&commit)?;
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
        moved: moved
            .into_iter()
            .map(|(name, previous)| MovedName { name, previous })
            .collect(),
    })
}

// ---------------------------------------------------------------- queries

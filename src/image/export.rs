//! Export: OCI layouts and docker archives written beside the target and
//! renamed into place. An OCI layout gets the original manifests, indexes
//! and layer blobs, byte for byte, so every digest is unchanged; only a
//! compressed layer whose blob was not kept exactly (stored before exact
//! blobs, or `--tar-only`) is written as its tar, in a rewritten manifest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::MAX_INDEX_DEPTH;
use super::query::manifests_of;
use crate::error::{Error, IoContext, Result};
use crate::image::oci::{self, BlobKind, Descriptor};
use crate::image::*;
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::Index;

/// Writes layouts: each blob once, under blobs/sha256.
struct LayoutWriter<'a> {
    store: &'a Store,
    index: &'a Index,
    root: PathBuf,
    written: HashSet<Digest>,
    /// Layer bytes written so far (for progress).
    bytes_written: u64,
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
            let got = self.store.get_layer_to_path(&diff_id, &path, None)?;
            self.bytes_written += got.size;
            self.store.progress("export", self.bytes_written, 0);
        }
        Ok(())
    }

    /// Writes a compressed layer blob exactly as it was put.
    fn write_compressed(&mut self, digest: Digest) -> Result<()> {
        if self.written.insert(digest) {
            let path = self.blob_file(&digest);
            let got = self.store.get_blob_to_path(&digest, &path, None)?;
            self.bytes_written += got.size;
            self.store.progress("export", self.bytes_written, 0);
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
            let as_tar =
                oci::is_uncompressed_layer(&layer.media_type) && layer.blob_digest == layer.diff_id;
            if as_tar {
                self.write_layer(layer.diff_id)?;
            } else if self
                .index
                .alias(&layer.blob_digest)?
                .is_some_and(|a| a.blob_frame.is_some())
            {
                self.write_compressed(layer.blob_digest)?;
            } else {
                self.write_layer(layer.diff_id)?;
                rewritten.push(i);
            }
        }
        if rewritten.is_empty() {
            return Ok((bytes, None));
        }
        // Only the tar of these blobs is kept (put before the store kept
        // exact blobs, or with --tar-only): describe the exact uncompressed
        // layers instead.
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
        let mut note = format!(
            "{} compressed layer(s) written uncompressed (only their tar is kept: they were stored before exact blobs, or with --tar-only)",
            rewritten.len()
        );
        if media_type_of_manifest(&bytes) == Some(oci::MT_DOCKER_MANIFEST) {
            note.push_str("; the Docker v2 manifest was rewritten as an OCI manifest");
        }
        Ok((out, Some(note)))
    }
}

pub(super) fn export(
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
    let targets = resolve_targets(&index, names)?;
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
        bytes_written: 0,
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
struct TarOut<'w> {
    out: io::BufWriter<&'w mut dyn Write>,
    name: String,
}

impl TarOut<'_> {
    pub(super) fn header(&mut self, path: &str, size: u64, kind: tar::EntryType) -> Result<()> {
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

    pub(super) fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
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
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    let images =
        write_docker_archive(store, index, targets, &mut file, path.display().to_string())?;
    file.sync_all()
        .context(|| format!("syncing {}", path.display()))?;
    Ok(images)
}

/// Writes a docker archive of `targets` to `sink` (named `name` in errors).
fn write_docker_archive(
    store: &Store,
    index: &Index,
    targets: &[(String, Digest)],
    sink: &mut dyn Write,
    name: String,
) -> Result<Vec<ExportedImage>> {
    let mut tar = TarOut {
        out: io::BufWriter::with_capacity(1 << 20, sink),
        name,
    };
    let mut written: HashSet<String> = HashSet::new();
    let mut bytes_written = 0u64;
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
        // What a docker archive cannot carry, said plainly: it has no
        // manifest at all (`docker load` identifies the image by its config,
        // and its layers are uncompressed tars), one platform, and tags.
        let mut notes = vec![format!(
            "docker archives carry no manifest: the image is its config {} (its image ID) and \
             {} uncompressed layer(s); the manifest digest is not kept",
            chosen.config,
            chosen.layers.len()
        )];
        if manifests.len() > 1 {
            notes.push(format!(
                "docker archives hold one platform: wrote {} of {} manifests",
                chosen
                    .platform
                    .clone()
                    .unwrap_or_else(|| chosen.digest.to_string()),
                manifests.len()
            ));
        }
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
                bytes_written += row.size;
                store.progress("export", bytes_written, 0);
            }
            layer_paths.push(layer_path);
        }
        let tag = docker_tag(name);
        match &tag {
            Some(t) if t != name => notes.push(format!("tagged {t} (docker archives need a tag)")),
            None => notes.push("written without a tag (a digest is not a docker tag)".into()),
            _ => {}
        }
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
            digest_changed: true,
            note: Some(notes.join("; ")),
        });
    }
    let manifest = serde_json::to_vec(&entries)
        .map_err(|e| Error::corrupt(format!("encoding manifest.json: {e}")))?;
    tar.file("manifest.json", &manifest)?;
    tar.out
        .write_all(&[0u8; 1024])
        .context(|| format!("writing {}", tar.name))?;
    let name = tar.name.clone();
    tar.out
        .into_inner()
        .map_err(|e| Error::io(format!("writing {name}"), e.into_error()))?
        .flush()
        .context(|| format!("writing {name}"))?;
    Ok(images)
}

/// Writes a docker archive of `names` to `sink` (standard output, say).
pub(super) fn export_docker_to(
    store: &Store,
    names: &[String],
    sink: &mut dyn Write,
) -> Result<ExportReport> {
    if names.is_empty() {
        return Err(Error::invalid("export", "no image names given"));
    }
    let index = store.index()?;
    let targets = resolve_targets(&index, names)?;
    let images = write_docker_archive(store, &index, &targets, sink, "the output".into())?;
    Ok(ExportReport {
        path: PathBuf::from("-"),
        format: ExportFormat::DockerArchive,
        images,
    })
}

/// The digest each image name points at.
fn resolve_targets(index: &Index, names: &[String]) -> Result<Vec<(String, Digest)>> {
    names
        .iter()
        .map(|name| {
            let digest = index
                .image_target(name)?
                .ok_or_else(|| Error::not_found(format!("image {name:?}")))?;
            Ok((name.clone(), digest))
        })
        .collect()
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

/// The `mediaType` a stored manifest declares, if any.
fn media_type_of_manifest(bytes: &[u8]) -> Option<&'static str> {
    let doc: Value = serde_json::from_slice(bytes).ok()?;
    match doc.get("mediaType")?.as_str()? {
        oci::MT_DOCKER_MANIFEST => Some(oci::MT_DOCKER_MANIFEST),
        oci::MT_OCI_MANIFEST => Some(oci::MT_OCI_MANIFEST),
        _ => None,
    }
}

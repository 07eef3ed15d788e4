//! The registry's store operations, blocking and transport-free: find and
//! stream a blob by any digest it was pushed under, turn a finished upload
//! into stored chunks, and record, read, list and delete manifests and
//! tags. Every blob pushed goes through the put path (decompressed when it
//! is a gzip or zstd layer, tar-aware chunked, kept exactly); manifests and
//! configs are kept verbatim. Expected refusals (a digest that does not
//! match, a manifest that refers to a missing blob) are values, not errors.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha512};

use crate::error::{Error, Result};
use crate::image::oci::{self, BlobKind};
use crate::layer::put::{self, PutOptions, PutSession};
use crate::store::LockMode;
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::{BlobPlace, ManifestLayer, ManifestRecord, RegistryManifest};

/// Largest manifest (or config read to check an image) accepted.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A blob the registry can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundBlob {
    /// sha256 of its bytes.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Rebuilt (preflate, libzstd) rather than read as stored: worth
    /// caching.
    pub rebuilt: bool,
    place: BlobPlace,
}

/// How storing a finished upload went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobPut {
    /// Stored (or already there) under this sha256 digest.
    Stored(Digest),
    /// The bytes hash to `actual`, not to the digest the client gave.
    Mismatch {
        /// What the bytes hash to.
        actual: String,
    },
}

/// How a manifest push went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestPut {
    /// Stored; its sha256 digest and the digest of its `subject`.
    Stored {
        /// sha256 of the bytes.
        digest: Digest,
        /// `subject.digest`, when it has one.
        subject: Option<String>,
    },
    /// The manifest refers to a blob or manifest the store lacks.
    BlobUnknown(String),
    /// Not a manifest this registry accepts.
    Invalid(String),
    /// Pushed by a digest its bytes do not hash to.
    DigestMismatch(String),
}

/// A digest as a client writes it: `sha256:` + 64 or `sha512:` + 128
/// lowercase hex digits.
pub fn valid_digest(name: &str) -> bool {
    let (algo, hex) = match name.split_once(':') {
        Some(pair) => pair,
        None => return false,
    };
    let want = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == want && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The digest of `bytes` in the algorithm of `like` (a valid digest).
fn digest_like(like: &str, bytes: &[u8]) -> String {
    if like.starts_with("sha512:") {
        format!("sha512:{}", crate::util::hex(&Sha512::digest(bytes)))
    } else {
        Digest::of(bytes).to_string()
    }
}

fn sha512_of_file(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hasher = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha512:{}", crate::util::hex(&hasher.finalize())))
}

/// The digest strings of the descriptors in `value[field]` (an array), or
/// of the one descriptor `value[field]` (an object).
fn descriptor_digests(
    value: &Value,
    field: &str,
) -> std::result::Result<Vec<(String, String)>, String> {
    let list: Vec<&Value> = match value.get(field) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => {
            return Err(format!(
                "{field} is neither a descriptor nor a list of them"
            ));
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, d)| {
            let digest = d
                .get("digest")
                .and_then(Value::as_str)
                .filter(|s| valid_digest(s))
                .ok_or_else(|| format!("{field}[{i}] has no valid digest"))?;
            let media_type = d.get("mediaType").and_then(Value::as_str).unwrap_or("");
            Ok((digest.to_string(), media_type.to_string()))
        })
        .collect()
}

/// Layers a registry need not have (they are fetched from elsewhere).
fn non_distributable(media_type: &str) -> bool {
    media_type.contains(".nondistributable.") || media_type.contains(".foreign.")
}

impl Store {
    /// The blob pushed or stored under `name` (`sha256:` or `sha512:`).
    pub fn registry_find_blob(&self, name: &str) -> Result<Option<FoundBlob>> {
        let index = self.index()?;
        let Some(digest) = index.registry_sha256(name)? else {
            return Ok(None);
        };
        let Some((size, place)) = index.registry_blob(&digest)? else {
            return Ok(None);
        };
        let rebuilt = place == BlobPlace::Alias
            && index
                .alias(&digest)?
                .is_some_and(|a| a.method.as_deref().is_some_and(|m| m != "verbatim"));
        Ok(Some(FoundBlob {
            digest,
            size,
            rebuilt,
            place,
        }))
    }

    /// Writes the bytes of `blob` to `out`; they hash to its digest.
    pub fn registry_write_blob(&self, blob: &FoundBlob, out: &mut dyn Write) -> Result<()> {
        match blob.place {
            BlobPlace::Document => {
                let (_, bytes) = self
                    .index()?
                    .blob(&blob.digest)?
                    .ok_or_else(|| Error::not_found(format!("blob {}", blob.digest)))?;
                out.write_all(&bytes)
                    .map_err(|e| Error::io(format!("sending blob {}", blob.digest), e))
            }
            BlobPlace::Layer | BlobPlace::Alias => {
                self.get_blob(&blob.digest, out)?;
                Ok(())
            }
        }
    }

    /// Stores the finished upload in the file at `path` as the blob named
    /// `name`, after checking the bytes hash to it. Nothing is stored when
    /// they do not.
    pub fn registry_store_upload(&self, path: &Path, name: &str) -> Result<BlobPut> {
        if !valid_digest(name) {
            return Err(Error::invalid(
                "upload",
                format!("{name:?} is not a digest"),
            ));
        }
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        let other_name = if name.starts_with("sha512:") {
            let actual = sha512_of_file(path)?;
            if actual != name {
                return Ok(BlobPut::Mismatch { actual });
            }
            Some(name)
        } else {
            None
        };
        let _lock = self.lock(LockMode::Shared)?;
        let mut index = self.index()?;
        let source_name = format!("upload of {name}");
        let mut attempt = |as_is: bool| -> Result<put::PreparedPut> {
            let file = File::open(path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let ctx = self.put_context(&mut index);
            put::prepare_put(
                &ctx,
                file,
                &PutOptions {
                    source_name: Some(source_name.clone()),
                    raw: true,
                    as_is,
                    ..PutOptions::default()
                },
                &mut PutSession::default(),
            )
        };
        // A blob that only looks compressed (or a format the put path does
        // not decompress) is kept as it is.
        let mut prepared = match attempt(false) {
            Ok(p) => p,
            Err(Error::InvalidInput { .. }) => attempt(true)?,
            Err(e) => return Err(e),
        };
        let sha256 = prepared
            .info
            .compressed_digest
            .unwrap_or(prepared.info.digest);
        if other_name.is_none() && sha256.to_string() != name {
            return Ok(BlobPut::Mismatch {
                actual: sha256.to_string(),
            });
        }
        let commit = index.commit_registry_blob(
            &prepared.packs,
            &prepared.layer,
            &sha256,
            size,
            other_name,
        )?;
        if !commit.packs_dropped {
            prepared.committed();
        }
        Ok(BlobPut::Stored(sha256))
    }

    /// Deletes the blob named `name` from the registry; false when it has
    /// no such blob. Manifests that use it keep it.
    pub fn registry_delete_blob(&self, name: &str) -> Result<bool> {
        let _lock = self.lock(LockMode::Shared)?;
        let mut index = self.index()?;
        let Some(digest) = index.registry_sha256(name)? else {
            return Ok(false);
        };
        index.delete_registry_blob(&digest)
    }

    /// Stores a pushed manifest or index verbatim in `repo`, tagged when
    /// `reference` is a tag. `content_type` is the request's.
    pub fn registry_put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<ManifestPut> {
        let digest = Digest::of(bytes);
        let by_digest = reference.contains(':');
        if by_digest {
            if !valid_digest(reference) {
                return Ok(ManifestPut::Invalid(format!(
                    "{reference:?} is not a digest"
                )));
            }
            let actual = digest_like(reference, bytes);
            if actual != reference {
                return Ok(ManifestPut::DigestMismatch(format!(
                    "the manifest hashes to {actual}, not {reference}"
                )));
            }
        }
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Ok(ManifestPut::Invalid(format!(
                "manifest of {} bytes exceeds the limit of {MAX_MANIFEST_SIZE}",
                bytes.len()
            )));
        }
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Ok(ManifestPut::Invalid(
                    "the manifest is not a JSON object".into(),
                ));
            }
            Err(e) => {
                return Ok(ManifestPut::Invalid(format!(
                    "the manifest is not JSON: {e}"
                )));
            }
        };
        let declared = value.get("mediaType").and_then(Value::as_str);
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| !c.is_empty() && *c != "application/octet-stream");
        let media_type = match (content_type, declared) {
            (Some(c), Some(d)) if c != d => {
                return Ok(ManifestPut::Invalid(format!(
                    "Content-Type {c} differs from the manifest's mediaType {d}"
                )));
            }
            (Some(c), _) => c.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Ok(ManifestPut::Invalid(
                    "neither Content-Type nor mediaType says what the manifest is".into(),
                ));
            }
        };
        let subject = match value.get("subject") {
            None | Some(Value::Null) => None,
            Some(s) => match s
                .get("digest")
                .and_then(Value::as_str)
                .filter(|d| valid_digest(d))
            {
                Some(d) => Some(d.to_string()),
                None => return Ok(ManifestPut::Invalid("subject has no valid digest".into())),
            },
        };
        let kind = oci::blob_kind(&media_type);
        let (config, layers, children) = match kind {
            BlobKind::Manifest => {
                let config = match descriptor_digests(&value, "config") {
                    Ok(c) if c.len() == 1 => c.into_iter().next(),
                    Ok(_) => return Ok(ManifestPut::Invalid("the manifest has no config".into())),
                    Err(e) => return Ok(ManifestPut::Invalid(e)),
                };
                let layers = match descriptor_digests(&value, "layers") {
                    Ok(l) => l,
                    Err(e) => return Ok(ManifestPut::Invalid(e)),
                };
                (config, layers, Vec::new())
            }
            BlobKind::Index => match descriptor_digests(&value, "manifests") {
                Ok(m) => (None, Vec::new(), m),
                Err(e) => return Ok(ManifestPut::Invalid(e)),
            },
            _ => (None, Vec::new(), Vec::new()),
        };
        let _lock = self.lock(LockMode::Shared)?;
        let mut index = self.index()?;
        // Every reference by its sha256 name.
        let mut refs = Vec::new();
        for (name, media) in config.iter().chain(&layers).chain(&children) {
            if non_distributable(media) {
                continue;
            }
            match index.registry_sha256(name)? {
                Some(d) => refs.push(d),
                None => return Ok(ManifestPut::BlobUnknown(name.clone())),
            }
        }
        // An index refers to nothing but its children.
        let children_digests = if kind == BlobKind::Index {
            refs.clone()
        } else {
            Vec::new()
        };
        let image = match (&config, kind) {
            (Some((config_name, config_type)), BlobKind::Manifest) => {
                self.image_record(&index, digest, config_name, config_type, &value)?
            }
            _ => None,
        };
        let artifact_type = value
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| match (&config, &image) {
                (Some((_, t)), None) if kind == BlobKind::Manifest => Some(t.clone()),
                _ => None,
            });
        let image_ref = image
            .as_ref()
            .map(|(record, bytes, t)| (record.clone(), &bytes[..], t.as_str()));
        let record = RegistryManifest {
            repo,
            digest,
            other_name: reference.starts_with("sha512:").then_some(reference),
            media_type: &media_type,
            bytes,
            tag: (!by_digest).then_some(reference),
            subject: subject.as_deref(),
            artifact_type: artifact_type.as_deref(),
            refs: &refs,
            image: image_ref,
            children: (kind == BlobKind::Index).then_some(&children_digests[..]),
        };
        match index.commit_registry_manifest(&record)? {
            Some(missing) => Ok(ManifestPut::BlobUnknown(missing.to_string())),
            None => Ok(ManifestPut::Stored { digest, subject }),
        }
    }

    /// The store's image record of a pushed manifest, when its config is an
    /// image config whose DiffIDs are the tars of its layers; None for an
    /// artifact (or anything else the store cannot run).
    fn image_record(
        &self,
        index: &crate::store::index::Index,
        digest: Digest,
        config_name: &str,
        config_type: &str,
        manifest: &Value,
    ) -> Result<Option<(ManifestRecord, Vec<u8>, String)>> {
        let Some(found) = self.registry_find_blob(config_name)? else {
            return Ok(None);
        };
        if found.size > MAX_MANIFEST_SIZE as u64 {
            return Ok(None);
        }
        let mut config = Vec::with_capacity(found.size as usize);
        self.registry_write_blob(&found, &mut config)?;
        let Ok((parsed, diff_ids)) = oci::parse_config(&config, config_name) else {
            return Ok(None);
        };
        let Ok(layers) = descriptor_digests(manifest, "layers") else {
            return Ok(None);
        };
        if layers.len() != diff_ids.len() {
            return Ok(None);
        }
        let descriptors = manifest.get("layers").and_then(Value::as_array);
        let mut out = Vec::new();
        for (i, ((name, media_type), want)) in layers.iter().zip(&diff_ids).enumerate() {
            let Some(blob) = index.registry_sha256(name)? else {
                return Ok(None);
            };
            let diff_id = match index.layer(&blob)? {
                Some(row) => row.digest,
                None => match index.layer_by_alias(&blob)? {
                    Some(row) => row.digest,
                    None => return Ok(None),
                },
            };
            if diff_id != *want {
                return Ok(None);
            }
            let size = descriptors
                .and_then(|d| d.get(i))
                .and_then(|d| d.get("size"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            out.push(ManifestLayer {
                diff_id,
                size: 0,
                media_type: media_type.clone(),
                blob_digest: blob,
                blob_size: size,
            });
        }
        let platform = match (&parsed.os, &parsed.architecture) {
            (Some(os), Some(arch)) => Some(format!("{os}/{arch}")),
            _ => None,
        };
        let record = ManifestRecord {
            digest,
            config: found.digest,
            platform,
            layers: out,
        };
        Ok(Some((record, config, config_type.to_string())))
    }

    /// The manifest `reference` (tag or digest) of `repo`: its sha256
    /// digest, media type and bytes.
    pub fn registry_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(Digest, String, Vec<u8>)>> {
        let index = self.index()?;
        let digest = if reference.contains(':') {
            match index.registry_sha256(reference)? {
                Some(d) if index.registry_repo_has_manifest(repo, &d)? => d,
                _ => return Ok(None),
            }
        } else {
            match index.image_target(&format!("{repo}:{reference}"))? {
                Some(d) => d,
                None => return Ok(None),
            }
        };
        // A tag's target, or a digest the repository holds: a manifest of
        // whatever media type it was pushed with, never a config.
        Ok(index
            .blob(&digest)?
            .map(|(media_type, bytes)| (digest, media_type, bytes)))
    }

    /// The tags of `repo`, sorted; None when the repository is unknown.
    pub fn registry_tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let index = self.index()?;
        if !index.registry_repo_exists(repo)? {
            return Ok(None);
        }
        Ok(Some(
            index
                .registry_tags(repo)?
                .into_iter()
                .map(|(tag, _)| tag)
                .collect(),
        ))
    }

    /// Deletes a tag, or (by digest) a manifest and the tags of `repo`
    /// that point at it; false when there was none.
    pub fn registry_delete_manifest(&self, repo: &str, reference: &str) -> Result<bool> {
        let _lock = self.lock(LockMode::Shared)?;
        let mut index = self.index()?;
        if !reference.contains(':') {
            return index.delete_registry_tag(repo, reference);
        }
        let Some(digest) = index.registry_sha256(reference)? else {
            return Ok(false);
        };
        index.delete_registry_manifest(repo, &digest)
    }

    /// The referrers index of `subject` in `repo` (an OCI image index),
    /// optionally only manifests of one artifact type.
    pub fn registry_referrers(
        &self,
        repo: &str,
        subject: &str,
        artifact_type: Option<&str>,
    ) -> Result<Value> {
        let index = self.index()?;
        let mut manifests = Vec::new();
        {
            for r in index.registry_referrers(repo, subject, artifact_type)? {
                let value: Value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
                let mut desc = serde_json::json!({
                    "mediaType": r.media_type,
                    "digest": r.digest.to_string(),
                    "size": r.bytes.len(),
                });
                let artifact = value.get("artifactType").cloned().or_else(|| {
                    value
                        .get("config")
                        .and_then(|c| c.get("mediaType"))
                        .cloned()
                });
                if let Some(a) = artifact {
                    desc["artifactType"] = a;
                }
                if let Some(a) = value.get("annotations").filter(|a| a.is_object()) {
                    desc["annotations"] = a.clone();
                }
                manifests.push(desc);
            }
        }
        Ok(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::MT_OCI_INDEX,
            "manifests": manifests,
        }))
    }
}

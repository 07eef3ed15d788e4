//! Reading images back out of the index: the runnable manifest of a
//! name, listings and details with layer sizes and sharing.

use std::collections::{HashMap, HashSet};

use super::MAX_INDEX_DEPTH;
use crate::error::{Error, Result};
use crate::image::*;
use crate::store::Store;
use crate::store::digest::Digest;
use crate::store::index::{Index, ManifestRecord};

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
pub(super) fn manifests_of(index: &Index, target: &Digest) -> Result<Vec<ManifestRecord>> {
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

pub(super) fn list(store: &Store) -> Result<Vec<ImageSummary>> {
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

pub(super) fn details(store: &Store, name: &str) -> Result<ImageDetails> {
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

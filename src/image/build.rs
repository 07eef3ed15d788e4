//! Building new image documents: the config and manifest of an image made
//! from a stored image plus one layer (container commit). Documents are
//! serialised once here and stored verbatim, so their digests are final.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::image::oci;
use crate::store::digest::Digest;
use crate::store::index::{ManifestLayer, ManifestRecord};
use crate::util::clock::rfc3339;

/// A new image: its verbatim config and manifest and the manifest's index
/// record.
pub(crate) struct ChildImage {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub record: ManifestRecord,
}

/// The image `base` (named `base_name`, manifest `base_manifest`, config
/// `base_config`) with `layer` (DiffID, size) added on top, as an OCI
/// image whose layers are all uncompressed tars. `created_by` goes into
/// the new history entry; `created` is Unix seconds.
pub(crate) fn child_image(
    base: &ManifestRecord,
    base_config: &[u8],
    base_name: &str,
    base_manifest: &Digest,
    layer: (Digest, u64),
    created_by: &str,
    created: i64,
) -> Result<ChildImage> {
    let (diff_id, size) = layer;
    let config = new_config(base_config, &diff_id, created_by, created)?;
    let config_digest = Digest::of(&config);
    let mut layers: Vec<ManifestLayer> = base
        .layers
        .iter()
        .map(|l| ManifestLayer {
            diff_id: l.diff_id,
            size: l.size,
            media_type: oci::MT_OCI_LAYER_TAR.to_string(),
            blob_digest: l.diff_id,
            blob_size: l.size,
        })
        .collect();
    layers.push(ManifestLayer {
        diff_id,
        size,
        media_type: oci::MT_OCI_LAYER_TAR.to_string(),
        blob_digest: diff_id,
        blob_size: size,
    });
    let descriptors: Vec<Value> = layers
        .iter()
        .map(|l| json!({"mediaType": l.media_type, "digest": l.blob_digest.to_string(), "size": l.blob_size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": oci::MT_OCI_MANIFEST,
        "config": {"mediaType": oci::MT_OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": descriptors,
        "annotations": {
            "org.opencontainers.image.base.digest": base_manifest.to_string(),
            "org.opencontainers.image.base.name": base_name,
        },
    });
    let manifest = serde_json::to_vec(&manifest)
        .map_err(|e| Error::corrupt(format!("encoding manifest: {e}")))?;
    let manifest_digest = Digest::of(&manifest);
    Ok(ChildImage {
        config,
        config_digest,
        manifest,
        manifest_digest,
        record: ManifestRecord {
            digest: manifest_digest,
            config: config_digest,
            platform: base.platform.clone(),
            layers,
        },
    })
}

/// The old config with the new layer appended.
fn new_config(old: &[u8], diff_id: &Digest, created_by: &str, created: i64) -> Result<Vec<u8>> {
    let mut config: Value = serde_json::from_slice(old)
        .map_err(|e| Error::corrupt(format!("stored image config: {e}")))?;
    let Some(obj) = config.as_object_mut() else {
        return Err(Error::corrupt("stored image config is not a JSON object"));
    };
    let when = rfc3339(created);
    obj.insert("created".into(), json!(when));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    let Some(diff_ids) = rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) else {
        return Err(Error::corrupt("stored image config has no rootfs.diff_ids"));
    };
    let old_layers = diff_ids.len();
    diff_ids.push(json!(diff_id.to_string()));
    let entry = json!({
        "created": when,
        "created_by": created_by,
        "comment": "changes of a layerstore container",
    });
    match obj.get_mut("history").and_then(Value::as_array_mut) {
        Some(history) => history.push(entry),
        None => {
            let mut history: Vec<Value> = (0..old_layers)
                .map(|_| json!({"comment": "layer of the base image"}))
                .collect();
            history.push(entry);
            obj.insert("history".into(), Value::Array(history));
        }
    }
    serde_json::to_vec(&config).map_err(|e| Error::corrupt(format!("encoding config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gets_layer_and_history() {
        let d = Digest::of(b"x");
        let out = new_config(
            br#"{"rootfs":{"type":"layers","diff_ids":["a"]}}"#,
            &d,
            "c",
            0,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"], json!(["a", d.to_string()]));
        assert_eq!(v["history"].as_array().unwrap().len(), 2);
        assert!(new_config(b"[]", &d, "c", 0).is_err());
    }
}

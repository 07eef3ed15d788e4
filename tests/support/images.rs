//! Images: OCI documents (configs, descriptors, manifests, indexes), OCI
//! layouts and docker archives built by hand, the real OCI client skopeo,
//! and image state read through the library.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use layerstore::Store;
use serde_json::{Value, json};

use super::bytes::{hex, sha};
use super::tars::{Entry, write_tar};
use super::tools::{run_ok, tool};

pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

// ---------------------------------------------------------------------------
// Image documents
// ---------------------------------------------------------------------------

/// An image config listing `diff_ids`.
pub fn config_json(arch: &str, diff_ids: &[String]) -> Vec<u8> {
    let history: Vec<Value> = diff_ids
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"created_by": format!("layer {i}")}))
        .collect();
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .unwrap()
}

/// A descriptor of `bytes`.
pub fn desc(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha(bytes), "size": bytes.len()})
}

/// An OCI image manifest, pretty-printed (so that any re-encoding by the
/// store would change its digest).
pub fn manifest_json(config: &Value, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

/// An OCI image index listing `manifests`, pretty-printed.
pub fn index_json(manifests: &[Value]) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": manifests,
    }))
    .unwrap()
}

/// `desc` with a ref.name annotation.
pub fn named(mut desc: Value, name: &str) -> Value {
    desc["annotations"] = json!({ REF_NAME: name });
    desc
}

// ---------------------------------------------------------------------------
// OCI layouts and docker archives built by hand
// ---------------------------------------------------------------------------

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex(digest))
    }

    /// Writes a blob under its own digest; returns its descriptor.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let d = desc(media_type, bytes);
        fs::write(self.blob_path(&sha(bytes)), bytes).unwrap();
        d
    }

    /// Writes uncompressed layers, their config and a manifest; returns
    /// the manifest's descriptor.
    pub fn image(&self, arch: &str, layers: &[&[u8]]) -> Value {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
        let config = self.blob(MT_CONFIG, &config_json(arch, &diff_ids));
        let descs: Vec<Value> = layers.iter().map(|l| self.blob(MT_LAYER, l)).collect();
        self.blob(MT_MANIFEST, &manifest_json(&config, &descs))
    }

    /// Writes index.json listing `entries`.
    pub fn index(&self, entries: &[Value]) {
        fs::write(self.dir.join("index.json"), index_json(entries)).unwrap();
    }

    /// Writes index.json verbatim.
    pub fn raw_index(&self, bytes: &[u8]) {
        fs::write(self.dir.join("index.json"), bytes).unwrap();
    }
}

/// A one-image layout with uncompressed layers, named `name`.
pub fn simple_layout(dir: &Path, name: &str, layers: &[&[u8]]) -> Layout {
    let layout = Layout::new(dir);
    let m = layout.image("amd64", layers);
    layout.index(&[named(m, name)]);
    layout
}

/// A `docker save` archive of `layers` (base first) tagged `tags`, laid out
/// the classic way (`<config hex>.json`, `<diffid hex>/layer.tar`,
/// `manifest.json`); returns the layers' DiffIDs.
pub fn docker_archive<L: AsRef<[u8]>>(out: &Path, tags: &[&str], layers: &[L]) -> Vec<String> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l.as_ref())).collect();
    let config = config_json("amd64", &diff_ids);
    docker_archive_with(out, tags, &config, layers, None);
    diff_ids
}

/// [`docker_archive`] with a given config and, optionally, the paths
/// manifest.json names as layers (so they can be wrong).
pub fn docker_archive_with<L: AsRef<[u8]>>(
    out: &Path,
    tags: &[&str],
    config: &[u8],
    layers: &[L],
    layer_paths: Option<Vec<String>>,
) {
    let config_path = format!("{}.json", hex(&sha(config)));
    let stored_paths: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", hex(&sha(l.as_ref()))))
        .collect();
    let listed = layer_paths.unwrap_or_else(|| stored_paths.clone());
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_path,
        "RepoTags": tags,
        "Layers": listed,
    }]))
    .unwrap();
    let mut entries = vec![Entry::File(&config_path, config)];
    for (path, bytes) in stored_paths.iter().zip(layers) {
        entries.push(Entry::File(path, bytes.as_ref()));
    }
    entries.push(Entry::File("manifest.json", &manifest));
    write_tar(out, &entries);
}

// ---------------------------------------------------------------------------
// skopeo
// ---------------------------------------------------------------------------

/// `skopeo --insecure-policy ARGS` (no signature policy: everything is
/// local), asserting success.
pub fn skopeo(args: &[&str]) -> Output {
    run_ok(tool("skopeo").arg("--insecure-policy").args(args))
}

/// `skopeo inspect ARGS`, parsed.
pub fn skopeo_inspect(args: &[&str]) -> Value {
    let mut all = vec!["inspect"];
    all.extend(args);
    let out = skopeo(&all);
    serde_json::from_slice(&out.stdout).expect("skopeo inspect prints JSON")
}

/// `oci:DIR:NAME` for skopeo.
pub fn oci_ref(dir: &Path, name: &str) -> String {
    let dir = dir.to_str().unwrap();
    assert!(
        !dir.contains(':'),
        "skopeo references cannot hold ':' in paths"
    );
    format!("oci:{dir}:{name}")
}

/// `docker-archive:FILE[:NAME]` for skopeo.
pub fn docker_ref(file: &Path, name: Option<&str>) -> String {
    let file = file.to_str().unwrap();
    assert!(!file.contains(':'));
    match name {
        Some(n) => format!("docker-archive:{file}:{n}"),
        None => format!("docker-archive:{file}"),
    }
}

// ---------------------------------------------------------------------------
// Store state through the library
// ---------------------------------------------------------------------------

/// The DiffIDs of each manifest of an image.
pub fn image_diff_ids(store: &Store, name: &str) -> Vec<Vec<String>> {
    store
        .image(name)
        .unwrap_or_else(|e| panic!("image {name}: {e}"))
        .manifests
        .iter()
        .map(|m| m.layers.iter().map(|l| l.diff_id.to_string()).collect())
        .collect()
}

/// A layer's bytes.
pub fn get(store: &Store, digest: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .get_layer(&digest.parse().unwrap(), &mut out)
        .unwrap_or_else(|e| panic!("get {digest}: {e}"));
    out
}

/// DiffIDs of the layers the store lists.
pub fn layer_set(store: &Store) -> BTreeSet<String> {
    store
        .layers()
        .unwrap()
        .into_iter()
        .map(|l| l.digest.to_string())
        .collect()
}

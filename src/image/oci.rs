//! OCI image layout and `docker save` formats: the JSON documents
//! (index, manifest, config, docker `manifest.json`), their media types, and
//! the checks every one of them must pass before anything is imported.
//!
//! Parsing is strict and bounded: documents larger than [`MAX_JSON`] are
//! refused, nesting is limited by serde_json's recursion limit, digests must
//! be `sha256:<64 hex>`, and paths taken from a document must stay inside
//! the archive. Pure functions only: no I/O, so every parser can be fuzzed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::digest::Digest;

/// Largest JSON document (index, manifest, config) accepted.
pub const MAX_JSON: u64 = 4 << 20;
/// Deepest nesting of arrays and objects accepted anywhere in a document,
/// including fields layerstore does not read (real clients refuse deeper
/// documents, so storing them would serve images nobody can use).
pub const MAX_JSON_DEPTH: usize = 64;

/// OCI image index.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Annotation naming an image in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and docker put beside the short ref name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// What a media type says a blob is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    /// An image index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// A layer, with how it is compressed ("" for none).
    Layer,
    /// Something else.
    Unknown,
}

/// Classifies a media type.
pub fn blob_kind(media_type: &str) -> BlobKind {
    match media_type {
        MT_OCI_INDEX | MT_DOCKER_LIST => BlobKind::Index,
        MT_OCI_MANIFEST | MT_DOCKER_MANIFEST => BlobKind::Manifest,
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => BlobKind::Layer,
        _ => BlobKind::Unknown,
    }
}

/// Is this layer media type an uncompressed tar (so its digest is its DiffID)?
pub fn is_uncompressed_layer(media_type: &str) -> bool {
    media_type.ends_with(".tar") || media_type.ends_with("diff.tar")
}

/// An OCI content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// A platform of an index entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`.
    pub fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

impl Descriptor {
    /// The digest, parsed and checked (sha256 only).
    pub fn parsed_digest(&self, context: &str) -> Result<Digest> {
        Digest::parse(&self.digest)
            .map_err(|e| invalid(context, &format!("descriptor digest: {e}")))
    }

    /// The size, checked to be non-negative.
    pub fn checked_size(&self, context: &str) -> Result<u64> {
        u64::try_from(self.size).map_err(|_| {
            invalid(
                context,
                &format!("descriptor size {} is negative", self.size),
            )
        })
    }

    /// The image name annotations give, preferring the full reference.
    pub fn ref_name(&self) -> Option<&str> {
        let a = self.annotations.as_ref()?;
        a.get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| a.get(ANNOTATION_REF_NAME))
            .map(String::as_str)
    }
}

/// An image index (or docker manifest list, or a layout's index.json).
#[derive(Clone, Debug, Deserialize)]
pub struct ImageIndex {
    /// Must be 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type, if stated.
    #[serde(rename = "mediaType", default)]
    #[expect(
        dead_code,
        reason = "parsed so that an index whose mediaType is not a string is refused"
    )]
    pub media_type: Option<String>,
    /// Entries.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageManifest {
    /// Must be 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type, if stated.
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config layerstore checks.
#[derive(Clone, Debug, Deserialize)]
pub struct ImageConfig {
    /// The root filesystem.
    pub rootfs: RootFs,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Operating system.
    #[serde(default)]
    pub os: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Clone, Debug, Deserialize)]
pub struct RootFs {
    /// Must be `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// DiffIDs of the layers, base first.
    pub diff_ids: Vec<String>,
}

/// One entry of a `docker save` manifest.json.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DockerArchiveEntry {
    /// Path of the config file in the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// Names.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer files, base first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn invalid(context: &str, reason: &str) -> Error {
    Error::invalid(context.to_string(), reason.to_string())
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8], context: &str) -> Result<T> {
    if bytes.len() as u64 > MAX_JSON {
        return Err(invalid(
            context,
            &format!(
                "JSON document of {} bytes exceeds the {MAX_JSON}-byte limit",
                bytes.len()
            ),
        ));
    }
    if let Some(offset) = too_deep(bytes, MAX_JSON_DEPTH) {
        return Err(Error::invalid_at(
            context.to_string(),
            offset as u64,
            format!("JSON nests deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            context,
            &format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Offset where arrays/objects (outside strings) first nest deeper than `max`.
fn too_deep(bytes: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Parses and checks an image index.
pub fn parse_index(bytes: &[u8], context: &str) -> Result<ImageIndex> {
    let index: ImageIndex = parse_json(bytes, context)?;
    if index.schema_version != 2 {
        return Err(invalid(
            context,
            &format!("schemaVersion {} (expected 2)", index.schema_version),
        ));
    }
    for d in &index.manifests {
        d.parsed_digest(context)?;
        d.checked_size(context)?;
    }
    Ok(index)
}

/// Parses and checks an image manifest.
pub fn parse_manifest(bytes: &[u8], context: &str) -> Result<ImageManifest> {
    let manifest: ImageManifest = parse_json(bytes, context)?;
    if manifest.schema_version != 2 {
        return Err(invalid(
            context,
            &format!("schemaVersion {} (expected 2)", manifest.schema_version),
        ));
    }
    if let Some(mt) = &manifest.media_type
        && blob_kind(mt) != BlobKind::Manifest
    {
        return Err(invalid(
            context,
            &format!("mediaType {mt:?} is not an image manifest"),
        ));
    }
    manifest.config.parsed_digest(context)?;
    manifest.config.checked_size(context)?;
    for (i, layer) in manifest.layers.iter().enumerate() {
        layer.parsed_digest(context)?;
        layer.checked_size(context)?;
        if blob_kind(&layer.media_type) != BlobKind::Layer {
            return Err(invalid(
                context,
                &format!(
                    "layer {i} has media type {:?}, which is not a layer type layerstore can store",
                    layer.media_type
                ),
            ));
        }
    }
    Ok(manifest)
}

/// Parses an image config and returns its DiffIDs.
pub fn parse_config(bytes: &[u8], context: &str) -> Result<(ImageConfig, Vec<Digest>)> {
    let config: ImageConfig = parse_json(bytes, context)?;
    if config.rootfs.kind != "layers" {
        return Err(invalid(
            context,
            &format!(
                "rootfs.type is {:?}, expected \"layers\"",
                config.rootfs.kind
            ),
        ));
    }
    let diff_ids = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d).map_err(|e| invalid(context, &format!("rootfs.diff_ids: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok((config, diff_ids))
}

/// Parses a docker-archive manifest.json and checks every path in it.
pub fn parse_docker_manifest(bytes: &[u8], context: &str) -> Result<Vec<DockerArchiveEntry>> {
    let entries: Vec<DockerArchiveEntry> = parse_json(bytes, context)?;
    if entries.is_empty() {
        return Err(invalid(context, "manifest.json lists no images"));
    }
    for e in &entries {
        normalize_path(&e.config, context)?;
        for l in &e.layers {
            normalize_path(l, context)?;
        }
    }
    Ok(entries)
}

/// Normalises a relative path inside an archive or layout (`./a//b` ->
/// `a/b`); refuses absolute paths and any `..` component.
pub fn normalize_path(path: &str, context: &str) -> Result<String> {
    if path.starts_with('/') {
        return Err(invalid(
            context,
            &format!("absolute path {path:?} is not allowed"),
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(invalid(
                    context,
                    &format!("path {path:?} contains \"..\" and could escape the archive"),
                ));
            }
            p if p.contains('\0') => {
                return Err(invalid(
                    context,
                    &format!("path {path:?} contains a NUL byte"),
                ));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(invalid(context, &format!("empty path {path:?}")));
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink target found at `link` (a normalised path) inside an
/// archive; the result must stay inside.
pub fn resolve_link(link: &str, target: &str, context: &str) -> Result<String> {
    if target.starts_with('/') {
        return Err(invalid(
            context,
            &format!("symlink {link:?} points to absolute path {target:?}, outside the archive"),
        ));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(invalid(
                        context,
                        &format!("symlink {link:?} -> {target:?} points outside the archive"),
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Path of a blob in an OCI layout.
pub fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Checks an image name: 1-255 printable characters, no whitespace.
pub fn check_image_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 255
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            "image name",
            &format!("{name:?} is not a valid image name (1-255 characters, no spaces)"),
        ));
    }
    // Names become paths and references elsewhere (docker tags, export
    // directories, registry repositories): no empty, `.` or `..` segments.
    let repository = name.split(['@']).next().unwrap_or(name);
    if repository
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(invalid(
            "image name",
            &format!(
                "{name:?} is not a valid image name (no empty, \".\" or \"..\" path segments)"
            ),
        ));
    }
    // A name that reads as a digest would pass for one.
    if Digest::parse(name).is_ok() {
        return Err(invalid(
            "image name",
            &format!("{name:?} looks like a digest; name images with a repository and tag"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misleading_image_names_are_refused() {
        for ok in ["base", "ns/app:1", "localhost:5000/a/b:tag", "a/b@sha256:x"] {
            assert!(check_image_name(ok).is_ok(), "{ok}");
        }
        let digest = Digest::of(b"x").to_string();
        for bad in [
            "../../evil",
            "a/../b",
            "/abs",
            "a//b",
            "a/",
            "./x",
            digest.as_str(),
            "has space",
        ] {
            assert!(check_image_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_cannot_escape() {
        assert_eq!(normalize_path("./a//b/c.tar", "t").unwrap(), "a/b/c.tar");
        assert!(normalize_path("../../etc/passwd", "t").is_err());
        assert!(normalize_path("/etc/passwd", "t").is_err());
        assert!(normalize_path("a/../../b", "t").is_err());
        assert!(normalize_path("", "t").is_err());
        assert_eq!(
            resolve_link("abc/layer.tar", "../blobs/sha256/x", "t").unwrap(),
            "blobs/sha256/x"
        );
        assert!(resolve_link("abc/layer.tar", "../../etc/passwd", "t").is_err());
        assert!(resolve_link("layer.tar", "/etc/passwd", "t").is_err());
    }

    #[test]
    fn manifests_are_checked() {
        let good = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(parse_manifest(good, "m").is_ok());
        let bad_algo = String::from_utf8_lossy(good).replace("sha256:e3b0", "sha512:e3b0");
        assert!(parse_manifest(bad_algo.as_bytes(), "m").is_err());
        let deep = "[".repeat(10_000);
        let err = parse_manifest(deep.as_bytes(), "m")
            .unwrap_err()
            .to_string();
        assert!(err.contains("deeper than"), "{err}");
        let hidden = format!(
            r#"{{"schemaVersion":2,"x":"[[[[","extra":{}1{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        let err = parse_index(hidden.as_bytes(), "i").unwrap_err().to_string();
        assert!(err.contains("deeper than"), "{err}");
        let fine = format!(
            r#"{{"schemaVersion":2,"manifests":[],"s":"{}\"["}}"#,
            "[".repeat(100)
        );
        assert!(parse_index(fine.as_bytes(), "i").is_ok());
        assert!(parse_docker_manifest(br#"[{"Config":"../x.json","Layers":[]}]"#, "d").is_err());
    }
}

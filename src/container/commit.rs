//! Commit: a container's changes written as a layer tar (whiteouts for
//! deletions, opaque markers for replaced directories) streamed through
//! the put path, and a new image of the base image's layers plus that one,
//! all committed in one index transaction.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::path::PathBuf;

use super::CommitReport;
use super::diff::{Comparison, compare, open_nofollow, os_path, slash};
use crate::error::{Error, Result};
use crate::image::oci;
use crate::image::{self, ChildImage};
use crate::layer::put::{self, PutOptions, PutSession};
use crate::rootfs::entry::{self, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::rootfs::tree::{Node, NodeKind, parent_of};
use crate::store::Store;
use crate::store::index::NewImport;
use crate::util::clock::now;
use crate::util::pipe::pipe;

/// Reads exactly `left` bytes, or fails (a file that changed size while
/// being written into a layer must not produce a wrong tar).
struct Exact<R> {
    inner: R,
    left: u64,
    pub(super) path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "{} shrank while being committed",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct Counts {
    added: u64,
    changed: u64,
    pub(super) deleted: u64,
}

fn header(kind: tar::EntryType, node: &Node, mtime: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(node.mode);
    h.set_uid(node.uid);
    h.set_gid(node.gid);
    h.set_mtime(mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Writes the container's change set as a layer tar.
fn write_layer<W: Write>(cmp: &Comparison, out: W) -> Result<(W, Counts)> {
    let mut tar = tar::Builder::new(out);
    let failed = |what: &str, rel: &[u8], e: io::Error| {
        Error::io(format!("writing layer: {what} {}", slash(rel)), e)
    };
    let mut counts = Counts {
        added: 0,
        changed: 0,
        deleted: 0,
    };
    let mut opaque: Vec<Vec<u8>> = Vec::new();
    let under_opaque = |rel: &[u8], opaque: &[Vec<u8>]| {
        opaque.iter().any(|o| {
            o.is_empty() || (rel.len() > o.len() && rel.starts_with(o) && rel[o.len()] == b'/')
        })
    };
    // Deletions.
    let deleted = cmp.deleted();
    // Additions and changes, parents before children.
    let mut emitted_inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for (rel, entry) in &cmp.fs {
        if rel.is_empty() {
            continue;
        }
        let forced = under_opaque(rel, &opaque);
        let in_image = cmp.image.nodes.get(rel);
        let replaced_dir = entry.node.kind == NodeKind::Dir
            && in_image.is_some_and(|n| n.kind == NodeKind::Dir)
            && !forced
            && cmp.wholly_replaced(rel);
        if !forced && !replaced_dir && !cmp.differ.contains(rel) {
            continue;
        }
        match in_image {
            Some(_) => counts.changed += 1,
            None => counts.added += 1,
        }
        let mut node = entry.node.clone();
        if !cmp.owners {
            let (uid, gid) = in_image.map(|n| (n.uid, n.gid)).unwrap_or((0, 0));
            node.uid = uid;
            node.gid = gid;
        }
        let path = os_path(rel);
        let full = cmp.root.join(path);
        match &node.kind {
            NodeKind::Dir => {
                let mut h = header(tar::EntryType::Directory, &node, entry.mtime);
                tar.append_data(&mut h, path, io::empty())
                    .map_err(|e| failed("directory", rel, e))?;
                let lower_non_dir = in_image.is_some_and(|n| n.kind != NodeKind::Dir);
                if replaced_dir || lower_non_dir {
                    let marker = entry::join(rel, OPAQUE_MARKER);
                    let mut h = header(tar::EntryType::Regular, &node, entry.mtime);
                    h.set_mode(0o644);
                    tar.append_data(&mut h, os_path(&marker), io::empty())
                        .map_err(|e| failed("opaque marker", rel, e))?;
                    if replaced_dir {
                        counts.deleted += 1;
                    }
                    opaque.push(rel.clone());
                }
            }
            NodeKind::File { size, .. } => {
                let key = (entry.dev, entry.ino);
                if entry.nlink > 1
                    && let Some(first) = emitted_inodes.get(&key)
                {
                    let mut h = header(tar::EntryType::Link, &node, entry.mtime);
                    tar.append_link(&mut h, path, os_path(first))
                        .map_err(|e| failed("hard link", rel, e))?;
                    continue;
                }
                let file = open_nofollow(&full).map_err(|e| failed("file", rel, e))?;
                let size_now = file.metadata().map_err(|e| failed("file", rel, e))?.len();
                if size_now != *size {
                    return Err(failed(
                        "file",
                        rel,
                        io::Error::other("it changed size while being committed"),
                    ));
                }
                let mut h = header(tar::EntryType::Regular, &node, entry.mtime);
                h.set_size(size_now);
                let data = Exact {
                    inner: file,
                    left: size_now,
                    path: full.clone(),
                };
                tar.append_data(&mut h, path, data)
                    .map_err(|e| failed("file", rel, e))?;
                if entry.nlink > 1 {
                    emitted_inodes.insert(key, rel.clone());
                }
            }
            NodeKind::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, &node, entry.mtime);
                append_symlink_exact(&mut tar, &mut h, path, target)
                    .map_err(|e| failed("symlink", rel, e))?;
            }
            NodeKind::Char(major, minor) | NodeKind::Block(major, minor) => {
                let kind = if matches!(node.kind, NodeKind::Char(..)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = header(kind, &node, entry.mtime);
                h.set_device_major(*major)
                    .map_err(|e| failed("device", rel, e))?;
                h.set_device_minor(*minor)
                    .map_err(|e| failed("device", rel, e))?;
                tar.append_data(&mut h, path, io::empty())
                    .map_err(|e| failed("device", rel, e))?;
            }
            NodeKind::Fifo => {
                let mut h = header(tar::EntryType::Fifo, &node, entry.mtime);
                tar.append_data(&mut h, path, io::empty())
                    .map_err(|e| failed("fifo", rel, e))?;
            }
        }
    }
    for rel in deleted {
        if under_opaque(&rel, &opaque) {
            continue;
        }
        let parent = parent_of(&rel);
        let name = &rel[parent.len() + usize::from(!parent.is_empty())..];
        let mut wh_name = WHITEOUT_PREFIX.to_vec();
        wh_name.extend_from_slice(name);
        let wh = entry::join(parent, &wh_name);
        let node = Node {
            kind: NodeKind::File {
                size: 0,
                hash: [0; 32],
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        };
        let mut h = header(tar::EntryType::Regular, &node, 0);
        tar.append_data(&mut h, os_path(&wh), io::empty())
            .map_err(|e| failed("whiteout", &rel, e))?;
        counts.deleted += 1;
    }
    let out = tar
        .into_inner()
        .map_err(|e| Error::io("writing layer: end of archive", e))?;
    Ok((out, counts))
}

pub(super) fn commit(store: &Store, name: &str, new_image: &str) -> Result<CommitReport> {
    oci::check_image_name(new_image)?;
    let (row, cmp) = compare(store, name)?;
    let index = store.index()?;
    let record = index
        .manifest(&row.manifest)?
        .ok_or_else(|| Error::corrupt(format!("manifest {} is not stored", row.manifest)))?;
    let (_, old_config) = index
        .blob(&record.config)?
        .ok_or_else(|| Error::corrupt(format!("config {} is not stored", record.config)))?;
    drop(index);

    let _lock = store.lock(crate::store::LockMode::Shared)?;
    let mut index = store.index()?;
    let (writer, reader) = pipe();
    let mut session = PutSession::default();
    let (prepared, counts) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| match write_layer(&cmp, writer) {
            Ok((writer, counts)) => writer
                .finish()
                .map(|()| counts)
                .map_err(|e| Error::io("writing layer", e)),
            Err(e) => Err(e),
        });
        let ctx = store.put_context(&mut index);
        let prepared = put::prepare_put(
            &ctx,
            reader,
            &PutOptions {
                source_name: Some(format!("container {name:?}")),
                ..PutOptions::default()
            },
            &mut session,
        );
        let produced = crate::error::join_worker(producer);
        // The writer's own error explains a broken stream best.
        let counts = produced?;
        Ok::<_, Error>((prepared?, counts))
    })?;
    let mut prepared = prepared;
    let diff_id = prepared.info.digest;
    let size = prepared.info.size;
    let child = image::child_image(
        &record,
        &old_config,
        &row.image,
        &row.manifest,
        (diff_id, size),
        &format!("layerstore container commit {name}"),
        now(),
    )?;
    let ChildImage {
        config,
        config_digest,
        manifest,
        manifest_digest,
        record: new_record,
    } = child;
    let added_bytes = prepared.info.added_bytes;
    let import = NewImport {
        puts: vec![(prepared.packs.as_slice(), &prepared.layer)],
        blobs: vec![
            (config_digest, oci::MT_OCI_CONFIG.to_string(), config),
            (manifest_digest, oci::MT_OCI_MANIFEST.to_string(), manifest),
        ],
        manifests: vec![new_record],
        index_children: Vec::new(),
        names: vec![(new_image.to_string(), manifest_digest)],
        // A commit never takes a name another image has.
        force: false,
    };
    index.commit_import(&import)?;
    drop(import);
    prepared.committed();
    drop(index);
    if row.sharing == super::overlay::OVERLAY {
        // The new image's containers then need no unpack; if this fails,
        // the snapshot is unpacked when a container first needs it.
        let mut layers: Vec<_> = record.layers.iter().map(|l| l.diff_id).collect();
        layers.push(diff_id);
        let _ = crate::rootfs::snapshot::ensure_snapshots(store, &layers);
    }
    Ok(CommitReport {
        container: name.to_string(),
        image: new_image.to_string(),
        manifest: manifest_digest,
        config: config_digest,
        layer: diff_id,
        layer_size: size,
        added: counts.added,
        changed: counts.changed,
        deleted: counts.deleted,
        added_bytes,
    })
}

/// Appends a symlink whose target is stored byte for byte. The tar crate's
/// `append_link` normalises link names as paths (`/` becomes `//`, `a//b`
/// becomes `a/b`, `x/.` becomes `x`), which would change what the link
/// points at; a target that does not fit the header's 100 bytes goes into
/// a PAX `linkpath` record instead.
fn append_symlink_exact<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    path: &Path,
    target: &[u8],
) -> io::Result<()> {
    const LINKNAME_LEN: usize = 100;
    if target.len() > LINKNAME_LEN {
        tar.append_pax_extensions([("linkpath", target)])?;
    }
    let linkname = &mut header.as_old_mut().linkname;
    let shown = target.len().min(LINKNAME_LEN);
    *linkname = [0; LINKNAME_LEN];
    linkname[..shown].copy_from_slice(&target[..shown]);
    header.set_size(0);
    tar.append_data(header, path, io::empty())
}

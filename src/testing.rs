//! Hooks for the crate's own tests, benchmarks and fuzz targets; not part
//! of the supported API (hidden from the docs, may change at any time).
//!
//! The fuzz entry points, one per parser of outside data, live in the
//! library so that `tests/fuzz_corpus.rs` replays the committed seed corpus
//! and every past crash input in a plain `cargo test`. Each must return
//! normally for any input: a panic is a bug (the properties below are
//! asserted).

use std::io::Read;

use crate::store::chunker::ChunkParams;

pub use crate::store::chunker::Cdc;
pub use crate::store::split::{Piece, Splitter, TarEnd};
pub use crate::util::fault::POINTS as CRASH_POINTS;

/// Splitting: the pieces always concatenate back to the input, and no
/// chunk exceeds the maximum size.
pub fn split(data: &[u8]) {
    // Small parameters so short inputs still cut several chunks.
    let params = ChunkParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    let mut splitter = Splitter::new(data, Cdc::new(params));
    let mut out = Vec::with_capacity(data.len());
    while let Some(piece) = splitter.next_piece().expect("reading a slice cannot fail") {
        match piece {
            Piece::Inline(b) => out.extend_from_slice(b),
            Piece::Chunk(b) => {
                assert!(
                    !b.is_empty() && b.len() <= 1024,
                    "chunk of {} bytes",
                    b.len()
                );
                out.extend_from_slice(b);
            }
        }
    }
    assert!(out == data, "pieces do not concatenate to the input");
}

/// Recipe decoding: any bytes decode to entries or an error.
pub fn recipe(data: &[u8]) {
    if let Ok(reader) = crate::store::recipe::RecipeReader::new(data) {
        for entry in reader.take(100_000) {
            if entry.is_err() {
                break;
            }
        }
    }
}

/// Pack scanning and frame decoding.
pub fn pack_frames(data: &[u8]) {
    for item in crate::store::pack::scan_frames(data).take(10_000) {
        let Ok((offset, header)) = item else { break };
        let start = (offset + header.header_len()) as usize;
        let end = (offset + header.total_len()) as usize;
        if let Some(payload) = data.get(start..end) {
            let _ = header.decode_payload(payload);
        }
    }
}

/// Blob descriptions (from pack frames repair reads): any bytes decode to
/// a description or an error, and a decoded one encodes back to the same
/// bytes.
pub fn blob_description(data: &[u8]) {
    if let Ok(desc) = crate::store::blob::BlobDescription::decode(data) {
        assert!(
            desc.encode() == data,
            "a decoded description re-encodes differently"
        );
    }
}

/// Compressed-input detection and decoding, capped at 64 MiB of output.
pub fn decompress(data: &[u8]) {
    if let Ok(stream) = crate::layer::input::LayerStream::open(data) {
        let mut limited = stream.take(64 << 20);
        let mut sink = [0u8; 64 << 10];
        while let Ok(n) = limited.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }
}

/// OCI index, manifest and config parsing, and docker `manifest.json`.
pub fn oci_documents(data: &[u8]) {
    let _ = crate::image::oci::parse_index(data, "fuzz");
    let _ = crate::image::oci::parse_manifest(data, "fuzz");
    let _ = crate::image::oci::parse_config(data, "fuzz");
    let _ = crate::image::oci::parse_docker_manifest(data, "fuzz");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::image::oci::normalize_path(text, "fuzz");
        if let Some((a, b)) = text.split_once('\n') {
            let _ = crate::image::oci::resolve_link(a, b, "fuzz");
        }
    }
}

/// Put then get on a scratch store: the layer comes back byte for byte
/// (or the put is refused as bad compressed input, and the store stays
/// consistent). Puts raw, so that any bytes reach the storage path; the
/// tar check itself is exercised by the same input without raw first.
pub fn put_get(store: &crate::Store, data: &[u8]) {
    match store.put_layer(data) {
        Ok(_) | Err(crate::Error::InvalidInput { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
    let raw = crate::PutOptions {
        raw: true,
        ..crate::PutOptions::default()
    };
    match store.put_layer_with(data, &raw) {
        Ok(info) => {
            let mut back = Vec::with_capacity(info.size as usize);
            store
                .get_layer(&info.digest, &mut back)
                .expect("a stored layer must come back");
            if info.compressed_digest.is_none() {
                assert!(back == data, "round trip changed the bytes");
            }
            assert_eq!(crate::Digest::of(&back), info.digest);
            // A compressed input comes back exactly under its own digest.
            if let Some(blob) = info.compressed_digest {
                let mut exact = Vec::new();
                store
                    .get_blob(&blob, &mut exact)
                    .expect("a stored blob must come back");
                assert!(exact == data, "the compressed blob came back different");
            }
        }
        Err(crate::Error::InvalidInput { .. }) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The registry's request parsing and manifest push on a scratch store.
/// The first line is a request target (`PATH[?QUERY]`) and the second a
/// `Range` header, both parsed as the server parses them; the rest is
/// pushed as a manifest to repository `fuzz` under tag `t`. A manifest
/// that is accepted comes back byte for byte, by tag and by digest.
pub fn registry(store: &crate::Store, data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let target = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let range = String::from_utf8_lossy(parts.next().unwrap_or_default());
    crate::serve::fuzz_parsers(&target, &range);
    let manifest = parts.next().unwrap_or_default();
    match store.registry_put_manifest("fuzz", "t", None, manifest) {
        Ok(crate::ManifestPut::Stored { digest, .. }) => {
            for reference in ["t".to_string(), digest.to_string()] {
                let (_, _, bytes) = store
                    .registry_manifest("fuzz", &reference)
                    .expect("reading a stored manifest")
                    .expect("a stored manifest is found");
                assert!(bytes == manifest, "manifest came back different");
            }
        }
        Ok(_) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// A one-file layer tar (`a.txt` holding `abc`), for doc examples.
pub fn tiny_layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_cksum();
    builder
        .append_data(&mut header, "a.txt", &b"abc"[..])
        .and_then(|()| builder.into_inner())
        .expect("writing a tar to memory cannot fail")
}

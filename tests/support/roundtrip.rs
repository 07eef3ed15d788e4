//! Round trips through the library: a put and a get checked against
//! everything they promise (DiffID, compressed digest, sizes, aliases), in
//! every compressed form, each into a fresh store.

use layerstore::{Compression, Digest, GetInfo, LayerInfo, PutOptions, Store};

use super::bytes::assert_same_bytes;
use super::compress::Form;

/// Puts `input` (which decompresses to `tar`) into `store` and checks
/// everything a put and a get promise: the DiffID is the sha256 of the tar,
/// the compressed digest is the sha256 of the input, and a get by either
/// digest gives back exactly the tar.
#[track_caller]
pub fn put_and_check(
    store: &Store,
    input: &[u8],
    tar: &[u8],
    compression: Compression,
    label: &str,
) -> LayerInfo {
    put_and_check_with(store, input, tar, compression, label, false)
}

/// [`put_and_check`], putting with `raw` (bytes that need not be a
/// complete tar archive).
#[track_caller]
pub fn put_and_check_with(
    store: &Store,
    input: &[u8],
    tar: &[u8],
    compression: Compression,
    label: &str,
    raw: bool,
) -> LayerInfo {
    let info = store
        .put_layer_with(
            input,
            &PutOptions {
                source_name: Some(label.to_string()),
                raw,
                // The cheapest exact method at once, so that what a
                // compressed put adds is what it keeps (not a verbatim copy
                // waiting for gc).
                exact_now: true,
                ..PutOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{label}: put failed: {e}"));
    let diff_id = Digest::of(tar);
    assert_eq!(
        info.digest, diff_id,
        "{label}: DiffID is not the sha256 of the tar"
    );
    assert_eq!(info.size, tar.len() as u64, "{label}: size");
    assert_eq!(info.input_size, input.len() as u64, "{label}: input_size");
    assert_eq!(
        info.compression, compression,
        "{label}: detected compression"
    );
    if compression == Compression::None {
        assert_eq!(
            info.compressed_digest, None,
            "{label}: plain tar has no compressed digest"
        );
    } else {
        assert_eq!(
            info.compressed_digest,
            Some(Digest::of(input)),
            "{label}: compressed_digest is not the sha256 of the compressed input"
        );
    }

    // A get by `digest` gives back exactly the tar, reported under its DiffID.
    let get_exact = |digest: &Digest, by: &str| -> GetInfo {
        let mut back = Vec::new();
        let got = store
            .get_layer(digest, &mut back)
            .unwrap_or_else(|e| panic!("{label}: get by {by} failed: {e}"));
        assert_same_bytes(&back, tar, &format!("{label}: get by {by}"));
        assert_eq!(got.digest, diff_id, "{label}: GetInfo.digest via {by}");
        got
    };
    let got = get_exact(&diff_id, "DiffID");
    assert_eq!(got.size, tar.len() as u64, "{label}: GetInfo.size");
    assert_eq!(
        got.via_alias, None,
        "{label}: GetInfo.via_alias for a DiffID"
    );

    if let Some(compressed) = info.compressed_digest {
        let got = get_exact(&compressed, "compressed digest");
        assert_eq!(
            got.via_alias,
            Some(compressed),
            "{label}: GetInfo.via_alias"
        );
        // And the compressed blob itself, byte for byte.
        let mut blob = Vec::new();
        store
            .get_blob(&compressed, &mut blob)
            .unwrap_or_else(|e| panic!("{label}: get_blob failed: {e}"));
        assert_same_bytes(&blob, input, &format!("{label}: get_blob"));
        let summary = store
            .layer(&compressed)
            .expect("layer by compressed digest");
        assert!(
            summary.compressed_digests.contains(&compressed),
            "{label}: layer summary does not list its compressed digest"
        );
    }
    let summary = store.layer(&diff_id).expect("layer summary");
    assert_eq!(summary.size, tar.len() as u64, "{label}: summary size");
    info
}

/// Round-trips `tar` in every [`Form`], each into a fresh store (so every
/// chunk of every form is really written and read back).
#[track_caller]
pub fn roundtrip_all_forms(tar: &[u8], label: &str) {
    for form in Form::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store")).expect("open store");
        let input = form.encode(tar);
        let label = format!("{label} [{form:?}]");
        let info = put_and_check(&store, &input, tar, form.compression(), &label);
        assert!(
            info.new_layer,
            "{label}: first put into a fresh store must be a new layer"
        );
    }
}

/// Round-trips arbitrary bytes put raw (they need not be a tar) into a
/// fresh store.
#[track_caller]
pub fn roundtrip_plain(data: &[u8], label: &str) -> LayerInfo {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    put_and_check_with(&store, data, data, Compression::None, label, true)
}

/// Asserts that a put of `input` without `raw` is refused as not a
/// complete tar (naming `--raw`), and stores nothing.
#[track_caller]
pub fn assert_refused_as_broken_tar(store: &Store, input: &[u8], label: &str) {
    let before = store.stats().expect("stats");
    let err = store
        .put_layer_with(
            input,
            &PutOptions {
                source_name: Some(label.to_string()),
                ..PutOptions::default()
            },
        )
        .expect_err(&format!("{label}: a broken tar was accepted without raw"));
    let text = err.to_string();
    assert!(
        matches!(err, layerstore::Error::InvalidInput { .. }) && text.contains("--raw"),
        "{label}: {text}"
    );
    let after = store.stats().expect("stats");
    assert_eq!(
        (after.layers, after.pack_bytes),
        (before.layers, before.pack_bytes),
        "{label}: a refused put changed the store"
    );
}

/// For bytes that are not a complete tar archive: in every [`Form`], a put
/// without `raw` is refused, and with it the bytes round-trip exactly.
#[track_caller]
pub fn roundtrip_all_forms_raw(data: &[u8], label: &str) {
    for form in Form::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("store")).expect("open store");
        let input = form.encode(data);
        let label = format!("{label} [{form:?}]");
        assert_refused_as_broken_tar(&store, &input, &label);
        let info = put_and_check_with(&store, &input, data, form.compression(), &label, true);
        assert!(info.new_layer, "{label}: first raw put must be a new layer");
    }
}

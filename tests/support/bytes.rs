//! Digests and byte comparison: `sha256:<hex>` strings computed with the
//! sha2 crate directly (independent of layerstore's own `Digest`), and an
//! assertion that two byte strings are equal without dumping megabytes into
//! the failure message.

/// `sha256:<hex>` of `bytes`, computed with the sha2 crate directly.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hex part of `sha256:<hex>`.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

#[track_caller]
pub fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first_diff = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: bytes differ: got {} bytes, expected {} bytes, first difference at offset {first_diff} \
         (got {}, expected {})",
        actual.len(),
        expected.len(),
        sha(actual),
        sha(expected),
    );
}

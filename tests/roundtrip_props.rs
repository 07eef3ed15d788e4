//! Property tests: arbitrary byte vectors, and tars with random entries
//! (optionally truncated or with bytes appended, optionally compressed),
//! come back byte-exact with the right digests.

mod support;

use layerstore::{Compression, Store};
use proptest::collection::vec;
use proptest::prelude::*;
use support::*;

/// 32 cases each unless PROPTEST_CASES says otherwise.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    ProptestConfig {
        cases,
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

/// Up to 300 KB: fully arbitrary bytes, or generated content that chunks
/// differently (random, text, partly repetitive, one repeated byte).
fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300_000),
        (any::<u64>(), 0usize..300_000, 0u8..4).prop_map(|(seed, len, kind)| match kind {
            0 => random_bytes(seed, len),
            1 => text_bytes(seed, len),
            2 => partly_repetitive(seed, len),
            _ => vec![seed as u8; len],
        }),
    ]
}

#[derive(Clone, Debug)]
enum Kind {
    File {
        seed: u64,
        size: usize,
        content: u8,
    },
    Dir,
    Symlink(String),
    /// Hard link to the n-th earlier entry (modulo), or to a made-up name.
    Hardlink(usize),
    Fifo,
}

#[derive(Clone, Debug)]
struct EntrySpec {
    name: String,
    gnu: bool,
    mtime: u64,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Tail {
    Intact,
    /// Cut at this fraction of the archive's length.
    Truncate(f64),
    Append(Vec<u8>),
}

fn name() -> impl Strategy<Value = String> {
    // 1 to 6 components of up to 60 characters: from short names to
    // names well past the 100 and 255 byte limits of the header fields.
    vec("[a-zA-Z0-9_é名][a-zA-Z0-9_. é名-]{0,59}", 1..7).prop_map(|parts| parts.join("/"))
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => (any::<u64>(), prop_oneof![0usize..2_048, 0usize..200_000], 0u8..4)
            .prop_map(|(seed, size, content)| Kind::File { seed, size, content }),
        1 => Just(Kind::Dir),
        1 => name().prop_map(Kind::Symlink),
        1 => any::<usize>().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
    ]
}

fn entry() -> impl Strategy<Value = EntrySpec> {
    (name(), any::<bool>(), 0u64..0o77_777_777_777, kind()).prop_map(|(name, gnu, mtime, kind)| {
        EntrySpec {
            name,
            gnu,
            mtime,
            kind,
        }
    })
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![
        2 => Just(Tail::Intact),
        1 => (0.0f64..1.0).prop_map(Tail::Truncate),
        1 => vec(any::<u8>(), 0..5_000).prop_map(Tail::Append),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        3 => Just(Form::Plain),
        1 => Just(Form::Gzip),
        1 => Just(Form::GzipTwoMembers),
        1 => Just(Form::Zstd),
    ]
}

fn build_tar(entries: &[EntrySpec]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let mut h = if e.gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.set_mtime(e.mtime);
        h.set_mode(0o644);
        h.set_size(0);
        match &e.kind {
            Kind::File {
                seed,
                size,
                content,
            } => {
                let data = match content {
                    0 => random_bytes(*seed, *size),
                    1 => text_bytes(*seed, *size),
                    2 => partly_repetitive(*seed, *size),
                    _ => vec![0; *size],
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &e.name, &data[..]).unwrap();
            }
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, &e.name, &[][..]).unwrap();
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                b.append_link(&mut h, &e.name, target).unwrap();
            }
            Kind::Hardlink(n) => {
                let target = if i == 0 {
                    "nowhere".to_string()
                } else {
                    entries[n % i].name.clone()
                };
                h.set_entry_type(tar::EntryType::Link);
                b.append_link(&mut h, &e.name, target).unwrap();
            }
            Kind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                b.append_data(&mut h, &e.name, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_roundtrip(data in blob()) {
        // Input whose first bytes are gzip or zstd magic is (by design)
        // decoded as such; everything else is stored as given.
        prop_assume!(Compression::detect(&data) == Compression::None);
        let info = roundtrip_plain(&data, "arbitrary bytes");
        prop_assert!(info.new_layer);
        prop_assert!(info.new_chunks <= info.chunks);
    }

    #[test]
    fn generated_tar_roundtrip(
        entries in vec(entry(), 0..10),
        tail in tail(),
        form in form(),
    ) {
        let mut tar = build_tar(&entries);
        match &tail {
            Tail::Intact => {}
            Tail::Truncate(f) => {
                let at = (tar.len() as f64 * f) as usize;
                tar.truncate(at);
            }
            Tail::Append(extra) => tar.extend_from_slice(extra),
        }
        prop_assume!(form != Form::Plain || Compression::detect(&tar) == Compression::None);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let input = form.encode(&tar);
        // An intact archive is a complete tar; a cut or extended one may
        // not be, and is put raw.
        let raw = !matches!(tail, Tail::Intact);
        let info = put_and_check_with(&store, &input, &tar, form.compression(), "generated tar", raw);
        prop_assert!(info.new_layer);
        // A second put of the same input stores nothing new.
        let again = store
            .put_layer_with(
                &input[..],
                &layerstore::PutOptions {
                    raw,
                    ..Default::default()
                },
            )
            .unwrap();
        prop_assert!(!again.new_layer);
        prop_assert_eq!(again.added_bytes, 0);
        prop_assert_eq!(again.new_chunks, 0);
        prop_assert_eq!(again.digest, info.digest);
    }
}

//! zstd blobs through libzstd itself: the frame header tells the checksum
//! and content-size flags; candidate levels and worker counts are tried,
//! each recompressing the tar while its output is compared with the blob,
//! stopping at the first differing byte. No extra bytes are kept: the
//! level, flags and the exact libzstd version are the whole description.
//!
//! Output of libzstd is only stable within one library version, so the
//! version that matched is recorded and a rebuild under another version is
//! refused rather than attempted.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::open_spool;
use crate::error::{Error, Result};
use crate::store::blob::BlobMethod;

/// zstd frame magic, little endian on disk.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The libzstd version this build runs (`ZSTD_versionNumber()`).
pub(crate) fn libzstd_version() -> u32 {
    ::zstd::zstd_safe::version_number()
}

/// Levels in the order tried: the defaults of the common tools first.
/// Levels 20 to 22 (`--ultra`) are left out: their trials alone would need
/// hundreds of MiB of memory.
const LEVELS: [i32; 29] = [
    3, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, -1, -2, -3, -4, -5, -7, -10,
    -20, -50, -100,
];

/// A single-threaded trial that matched at least this many bytes had the
/// right level (the frame header and the start of the first block agree):
/// only then is the multi-threaded mode, whose output differs from the
/// first job boundary on, worth a trial of its own.
const LEVEL_CONFIRMED: u64 = 64;

/// Finds libzstd parameters that reproduce the single-frame zstd blob at
/// `spool` from its `tar_size`-byte content. The inner error says why none
/// does.
pub(super) fn find_parameters(
    spool: &Path,
    tar_size: u64,
) -> Result<std::result::Result<BlobMethod, String>> {
    let mut head = [0u8; 5];
    let mut file = open_spool(spool)?;
    if file.read_exact(&mut head).is_err() || head[..4] != ZSTD_MAGIC {
        return Ok(Err(
            "the blob does not start with a zstd frame (skippable frames first?)".into(),
        ));
    }
    let descriptor = head[4];
    let content_size = descriptor >> 6 != 0 || descriptor & 0x20 != 0;
    let checksum = descriptor & 0x04 != 0;
    if descriptor & 0x03 != 0 {
        return Ok(Err("the zstd frame names a dictionary".into()));
    }
    for level in LEVELS {
        // Multi-threaded output is the same for any worker count >= 1, so
        // one worker stands for the zstd CLI (-T1 is its default) and -T0.
        for workers in [0u8, 1] {
            let method = BlobMethod::Zstd {
                libzstd: libzstd_version(),
                level,
                checksum,
                content_size,
                workers,
            };
            let tar = ::zstd::stream::read::Decoder::new(open_spool(spool)?)
                .map_err(|e| Error::io(format!("reading {}", spool.display()), e))?;
            let compare = Compare::new(open_spool(spool)?);
            match trial(&method, tar_size, tar, compare) {
                Ok(Trial::Match) => return Ok(Ok(method)),
                Ok(Trial::Differs { matched }) if matched >= LEVEL_CONFIRMED => {}
                Ok(Trial::Differs { .. }) => break,
                Err(e) => {
                    return Err(Error::io(format!("comparing with {}", spool.display()), e));
                }
            }
        }
    }
    Ok(Err(format!(
        "no libzstd {} level or worker count reproduces the blob",
        version_string(libzstd_version())
    )))
}

/// "1.5.4" for 10504.
pub(crate) fn version_string(v: u32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

/// How a trial went.
enum Trial {
    Match,
    /// The output agreed with the blob for `matched` bytes.
    Differs {
        matched: u64,
    },
}

/// Recompresses `tar` with `method` into `compare`, stopping at the first
/// byte that differs from the blob.
fn trial(
    method: &BlobMethod,
    tar_size: u64,
    mut tar: impl Read,
    compare: Compare,
) -> io::Result<Trial> {
    let mut encoder = encoder(method, tar_size, compare)?;
    match io::copy(&mut tar, &mut encoder) {
        Ok(_) => {}
        Err(_) if encoder.get_ref().differs => {
            return Ok(Trial::Differs {
                matched: encoder.get_ref().matched,
            });
        }
        Err(e) => return Err(e),
    }
    match encoder.finish() {
        Ok(compare) => {
            let matched = compare.matched;
            Ok(if compare.at_end()? {
                Trial::Match
            } else {
                Trial::Differs { matched }
            })
        }
        Err(_) => Ok(Trial::Differs { matched: 0 }),
    }
}

/// A libzstd stream encoder set up as `method` says, writing to `out`.
fn encoder<W: Write>(
    method: &BlobMethod,
    tar_size: u64,
    out: W,
) -> io::Result<::zstd::stream::write::Encoder<'static, W>> {
    let BlobMethod::Zstd {
        level,
        checksum,
        content_size,
        workers,
        ..
    } = method
    else {
        return Err(io::Error::other("not a zstd method"));
    };
    let mut encoder = ::zstd::stream::write::Encoder::new(out, *level)?;
    encoder.include_checksum(*checksum)?;
    encoder.include_contentsize(*content_size)?;
    if *content_size {
        encoder.set_pledged_src_size(Some(tar_size))?;
    }
    if *workers > 0 {
        encoder.multithread(u32::from(*workers))?;
    }
    Ok(encoder)
}

/// Rebuilds a zstd blob from the tar.
pub(super) fn rebuild(
    method: &BlobMethod,
    tar_size: u64,
    tar: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<()> {
    if let BlobMethod::Zstd { libzstd, .. } = method
        && *libzstd != libzstd_version()
    {
        return Err(Error::corrupt(format!(
            "this blob is rebuilt by libzstd {}, but this build runs libzstd {}: \
             use a layerstore linked with libzstd {} (the tar itself is intact: get --tar)",
            version_string(*libzstd),
            version_string(libzstd_version()),
            version_string(*libzstd)
        )));
    }
    let mut encoder =
        encoder(method, tar_size, out).map_err(|e| Error::io("starting zstd encoder", e))?;
    io::copy(tar, &mut encoder).map_err(|e| Error::io("rebuilding zstd blob", e))?;
    encoder
        .finish()
        .map_err(|e| Error::io("rebuilding zstd blob", e))?;
    Ok(())
}

/// A writer that compares what it is given with the blob and fails at
/// the first difference.
struct Compare {
    blob: BufReader<File>,
    buf: Vec<u8>,
    differs: bool,
    /// Bytes that agreed.
    matched: u64,
}

impl Compare {
    fn new(file: File) -> Self {
        Compare {
            blob: BufReader::with_capacity(1 << 20, file),
            buf: Vec::new(),
            differs: false,
            matched: 0,
        }
    }

    /// True when the whole blob was matched.
    fn at_end(mut self) -> io::Result<bool> {
        let mut one = [0u8; 1];
        Ok(!self.differs && self.blob.read(&mut one)? == 0)
    }
}

impl Write for Compare {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.resize(data.len(), 0);
        let mut got = 0;
        while got < data.len() {
            match self.blob.read(&mut self.buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        let same = self.buf[..got]
            .iter()
            .zip(data)
            .take_while(|(a, b)| a == b)
            .count();
        self.matched += same as u64;
        if same < data.len() {
            self.differs = true;
            return Err(io::Error::other("output differs from the blob"));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

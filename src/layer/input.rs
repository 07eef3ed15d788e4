//! Layer input: compression detection from magic bytes, streaming
//! decompression (gzip, including multi-member, and zstd), and the digests
//! of both the bytes given and the uncompressed tar.
//!
//! The input's name is never consulted: only its first bytes decide. All
//! state is streamed; nothing here holds more than a read buffer.

use std::fs::File;
use std::io::{self, BufReader, Chain, Cursor, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::store::digest::Digest;

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a blob.
    ///
    /// ```
    /// use layerstore::Compression;
    /// assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
    /// assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
    /// assert_eq!(Compression::detect(b"etc/"), Compression::None);
    /// ```
    pub fn detect(magic: &[u8]) -> Compression {
        match magic {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            // zstd skippable frames (0x184D2A50..=0x184D2A5F, little endian)
            [m, 0x2a, 0x4d, 0x18, ..] if m & 0xf0 == 0x50 => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Shared progress of the raw input, readable from other threads.
#[derive(Debug, Default)]
pub struct TapState {
    /// Raw bytes read from the input so far.
    pub bytes: AtomicU64,
    /// Set when the input itself (not the decoder) failed to read.
    pub read_failed: AtomicBool,
}

/// Counts and (for compressed input) hashes the raw bytes read, and
/// copies them to a spool file when asked to.
struct Tap<R> {
    inner: R,
    hasher: Option<Sha256>,
    spool: Option<io::BufWriter<File>>,
    state: Arc<TapState>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                if let Some(spool) = self.spool.as_mut()
                    && let Err(e) = spool.write_all(&buf[..n])
                {
                    self.state.read_failed.store(true, Ordering::Relaxed);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("writing the spool file: {e}"),
                    ));
                }
                self.state.bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.state.read_failed.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// Reads the first bytes of `input`, enough for every magic recognised
/// here (bzip2's is the longest), or fewer if the input is shorter.
pub(crate) fn read_magic(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut magic = vec![0u8; 10];
    let mut got = 0;
    while got < magic.len() {
        match input.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    magic.truncate(got);
    Ok(magic)
}

/// Compressions recognised by their magic but not read: refused, so that
/// their bytes are never stored under a "DiffID" that is not a tar's.
pub(crate) fn unsupported_compression(magic: &[u8]) -> Option<&'static str> {
    const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
    // "BZh", a block size digit, then a block or end-of-stream magic.
    const BZIP2_BLOCK: &[u8] = &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    const BZIP2_END: &[u8] = &[0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
    if magic.starts_with(XZ) {
        Some("xz")
    } else if magic.len() >= 10
        && magic.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&magic[3])
        && (&magic[4..10] == BZIP2_BLOCK || &magic[4..10] == BZIP2_END)
    {
        Some("bzip2")
    } else {
        None
    }
}

type Source<R> = Chain<Cursor<Vec<u8>>, Tap<R>>;

enum Decoder<R: Read> {
    Plain(Source<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Source<R>>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Source<R>>>>),
}

/// The uncompressed tar stream of a layer blob.
pub struct LayerStream<R: Read> {
    decoder: Decoder<R>,
    compression: Compression,
    state: Arc<TapState>,
}

impl<R: Read> LayerStream<R> {
    /// Sniffs the first bytes of `input` and sets up decompression.
    pub fn open(input: R) -> io::Result<Self> {
        Self::open_spooled(input, None, false)
    }

    /// Like [`LayerStream::open`]; a compressed input's raw bytes are also
    /// copied to `spool` as they are read (a plain tar's are not). With
    /// `as_is` the input is taken as it is, whatever its first bytes.
    pub(crate) fn open_spooled(mut input: R, spool: Option<File>, as_is: bool) -> io::Result<Self> {
        let state = Arc::new(TapState::default());
        let magic = read_magic(&mut input).inspect_err(|_| {
            state.read_failed.store(true, Ordering::Relaxed);
        })?;
        if let Some(format) = unsupported_compression(&magic).filter(|_| !as_is) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the input is {format}-compressed; layerstore reads plain tar, gzip and \
                     zstd layers (decompress it first, e.g. `{format} -dc FILE | layerstore put -`)"
                ),
            ));
        }
        let compression = if as_is {
            Compression::None
        } else {
            Compression::detect(&magic)
        };
        let mut hasher = (compression != Compression::None).then(Sha256::new);
        if let Some(h) = hasher.as_mut() {
            h.update(&magic);
        }
        state.bytes.store(magic.len() as u64, Ordering::Relaxed);
        let mut spool = spool
            .filter(|_| compression != Compression::None)
            .map(|f| io::BufWriter::with_capacity(1 << 20, f));
        if let Some(out) = spool.as_mut() {
            out.write_all(&magic)?;
        }
        let tap = Tap {
            inner: input,
            hasher,
            spool,
            state: state.clone(),
        };
        let source = Cursor::new(magic).chain(tap);
        let decoder = match compression {
            Compression::None => Decoder::Plain(source),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(256 << 10, source),
            ))),
            Compression::Zstd => {
                // The default window limit (128 MiB) stays: a frame that asks
                // for more is refused rather than allowed to allocate it.
                let d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                    256 << 10,
                    source,
                ))?;
                Decoder::Zstd(Box::new(d))
            }
        };
        Ok(LayerStream {
            decoder,
            compression,
            state,
        })
    }

    /// Detected compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Shared raw-input counters.
    pub fn tap_state(&self) -> Arc<TapState> {
        self.state.clone()
    }

    /// After the uncompressed stream hit EOF: reads whatever raw bytes
    /// remain (there should be none) and returns the raw input's sha256
    /// (None for plain tar, whose digest is the DiffID) and its length.
    /// The spool file, if any, is complete and flushed afterwards.
    pub fn finish(self) -> io::Result<(Option<Digest>, u64)> {
        let source = match self.decoder {
            Decoder::Plain(_) => return Ok((None, self.state.bytes.load(Ordering::Relaxed))),
            Decoder::Gzip(d) => d.into_inner().into_inner(),
            Decoder::Zstd(d) => d.finish().into_inner(),
        };
        let (_, mut tap) = source.into_inner();
        let rest = io::copy(&mut tap, &mut io::sink())?;
        if rest > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{rest} bytes of trailing data after the compressed stream"),
            ));
        }
        if let Some(spool) = tap.spool.take() {
            spool
                .into_inner()
                .map_err(|e| io::Error::other(format!("writing the spool file: {}", e.error())))?;
        }
        let digest = tap
            .hasher
            .take()
            .map(|h| Digest::from_bytes(h.finalize().into()));
        Ok((digest, self.state.bytes.load(Ordering::Relaxed)))
    }
}

impl<R: Read> Read for LayerStream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.decoder {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

//! gzip blobs through preflate: each member's header is kept verbatim,
//! its deflate stream is analysed in segments of a few MiB of plaintext
//! (preflate records only the corrections its predictor needs), and its
//! trailer is kept in the description. Rebuilding runs the same segments
//! through preflate's recreator in the same order.
//!
//! preflate-rs is pinned exactly: its corrections are only known to be
//! readable by the version that wrote them, which is recorded with every
//! blob.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};

use super::{guarded, open_spool};
use crate::error::{Error, Result};
use crate::store::blob::{BlobMethod, GzipMember};

/// The preflate-rs version this build links (pinned in Cargo.toml).
pub(crate) const PREFLATE_VERSION: &str = "0.7.6";
/// Plaintext per analysed segment: bounds memory in analysis and rebuild.
pub(crate) const SEGMENT_PLAIN: usize = 8 << 20;
/// Compressed bytes held ahead of the parser.
const AHEAD: usize = 8 << 20;
/// The most compressed bytes held ahead before giving up on a block.
const MAX_AHEAD: usize = 64 << 20;
/// Longest gzip header accepted (FEXTRA, FNAME and FCOMMENT included).
const MAX_HEADER: usize = 1 << 20;

/// Analyses every member of the gzip blob at `spool`, writing the extra
/// stream (headers and corrections) to `out`. The inner error says why
/// the blob is not reproducible this way.
pub(super) fn analyse(
    spool: &Path,
    tar_size: u64,
    out: &mut impl Write,
) -> Result<std::result::Result<(BlobMethod, Option<String>), String>> {
    let file = open_spool(spool)?;
    let blob_len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", spool.display()), e))?
        .len();
    let mut win = Window::new(file, spool);
    // Plaintext described so far, over all members.
    let mut plain_total = 0u64;
    let mut note = None;
    let config = PreflateConfig {
        max_chain_length: 4096,
        plain_text_limit: SEGMENT_PLAIN,
        verify_compression: true,
    };
    let mut members = Vec::new();
    let write_err = |e: io::Error| Error::io("writing the blob's extra data", e);
    loop {
        win.fill(1)?;
        if win.ahead().is_empty() {
            break;
        }
        let member_at = win.position();
        let header_len = match header_len(&mut win)? {
            Ok(n) => n,
            Err(why) => return Ok(Err(format!("gzip member at byte {member_at}: {why}"))),
        };
        out.write_all(&win.ahead()[..header_len])
            .map_err(write_err)?;
        win.consume(header_len);
        let mut processor = PreflateStreamProcessor::new(&config);
        let mut segments = Vec::new();
        let mut ahead = AHEAD;
        let mut tail = (0u64, 0u64);
        loop {
            win.fill(ahead)?;
            let at = win.position();
            let data = win.ahead();
            let failure = match guarded("preflate", || processor.decompress(data)) {
                Err(why) => why,
                Ok(Ok(chunk)) if chunk.compressed_size > 0 || processor.is_done() => {
                    let plain = processor.plain_text().len() as u64;
                    let corrections = u32::try_from(chunk.corrections.len())
                        .map_err(|_| Error::bug("preflate corrections over 4 GiB"))?;
                    out.write_all(&chunk.corrections).map_err(write_err)?;
                    segments.push((plain, corrections));
                    plain_total += plain;
                    win.consume(chunk.compressed_size);
                    processor.shrink_to_dictionary();
                    ahead = AHEAD;
                    if processor.is_done() {
                        break;
                    }
                    continue;
                }
                // A block longer than what is held: hold more.
                Ok(Ok(_)) if !win.eof && ahead < MAX_AHEAD => {
                    ahead *= 2;
                    continue;
                }
                Ok(Err(e))
                    if e.exit_code() == ExitCode::ShortRead && !win.eof && ahead < MAX_AHEAD =>
                {
                    ahead *= 2;
                    continue;
                }
                Ok(Ok(_)) => format!("preflate {PREFLATE_VERSION} made no progress at byte {at}"),
                Ok(Err(e)) => format!(
                    "preflate {PREFLATE_VERSION} cannot describe the deflate stream at byte {at}: {e}"
                ),
            };
            // What preflate described so far is kept; the rest of the
            // stream is kept verbatim. That needs the stream's end, known
            // only for the last member (its trailer ends the blob).
            let Some(tail_len) = (blob_len.checked_sub(8))
                .and_then(|end| end.checked_sub(at))
                .filter(|_| plain_total > 0)
            else {
                return Ok(Err(failure));
            };
            let Some(tail_plain) = tar_size.checked_sub(plain_total) else {
                return Ok(Err(failure));
            };
            note = Some(format!(
                "{failure}; the last {tail_len} bytes of the deflate stream are kept as they are"
            ));
            let mut left = tail_len;
            while left > 0 {
                win.fill(1 << 20)?;
                let n = (left as usize).min(win.ahead().len());
                if n == 0 {
                    return Err(Error::bug("the spool file shrank"));
                }
                out.write_all(&win.ahead()[..n]).map_err(write_err)?;
                win.consume(n);
                left -= n as u64;
            }
            plain_total += tail_plain;
            tail = (tail_len, tail_plain);
            break;
        }
        win.fill(8)?;
        if win.ahead().len() < 8 {
            return Ok(Err("gzip member ends without its trailer".into()));
        }
        let mut trailer = [0u8; 8];
        trailer.copy_from_slice(&win.ahead()[..8]);
        win.consume(8);
        members.push(GzipMember {
            header_len: header_len as u32,
            segments,
            trailer,
            tail,
        });
    }
    if members.is_empty() {
        return Ok(Err("no gzip member".into()));
    }
    if plain_total != tar_size {
        return Ok(Err(format!(
            "the members describe {plain_total} bytes of the {tar_size}-byte tar"
        )));
    }
    let method = BlobMethod::Preflate {
        version: PREFLATE_VERSION.into(),
        members,
    };
    Ok(Ok((method, note)))
}

/// Length of the gzip member header at the window's position (RFC 1952).
fn header_len(win: &mut Window<'_>) -> Result<std::result::Result<usize, String>> {
    win.fill(MAX_HEADER)?;
    let h = win.ahead();
    if h.len() < 10 || h[0] != 0x1f || h[1] != 0x8b {
        return Ok(Err("not a gzip member".into()));
    }
    if h[2] != 8 {
        return Ok(Err(format!("compression method {} is not deflate", h[2])));
    }
    let flags = h[3];
    if flags & 0xe0 != 0 {
        return Ok(Err(format!("reserved header flags set ({flags:#04x})")));
    }
    let mut at = 10usize;
    if flags & 4 != 0 {
        let Some(xlen) = h.get(at..at + 2) else {
            return Ok(Err("header ends inside FEXTRA".into()));
        };
        at += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for (flag, name) in [(8u8, "FNAME"), (16, "FCOMMENT")] {
        if flags & flag != 0 {
            match h
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
            {
                Some(end) => at += end + 1,
                None => return Ok(Err(format!("{name} is not terminated within the header"))),
            }
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    if at > h.len() {
        return Ok(Err("header is truncated".into()));
    }
    Ok(Ok(at))
}

/// A sliding window over the spool file.
struct Window<'p> {
    file: File,
    path: &'p Path,
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<'p> Window<'p> {
    fn new(file: File, path: &'p Path) -> Self {
        Window {
            file,
            path,
            buf: Vec::new(),
            start: 0,
            base: 0,
            eof: false,
        }
    }

    /// Makes at least `n` bytes available ahead, unless the file ends first.
    fn fill(&mut self, n: usize) -> Result<()> {
        if self.buf.len() - self.start >= n || self.eof {
            return Ok(());
        }
        self.buf.drain(..self.start);
        self.base += self.start as u64;
        self.start = 0;
        let want = n.max(1 << 20);
        while self.buf.len() < want && !self.eof {
            let have = self.buf.len();
            self.buf.resize(want, 0);
            match self.file.read(&mut self.buf[have..]) {
                Ok(0) => {
                    self.buf.truncate(have);
                    self.eof = true;
                }
                Ok(got) => self.buf.truncate(have + got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(have),
                Err(e) => {
                    return Err(Error::io(format!("reading {}", self.path.display()), e));
                }
            }
        }
        Ok(())
    }

    fn ahead(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    fn position(&self) -> u64 {
        self.base + self.start as u64
    }
}

/// Rebuilds a preflate-described gzip blob: reads the tar from `tar` and
/// the extra stream from `extra`, writes the blob to `out`.
pub(super) fn rebuild(
    members: &[GzipMember],
    tar: &mut dyn Read,
    extra: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<()> {
    let mut plain = Vec::new();
    let mut corrections = Vec::new();
    for member in members {
        copy_exact(extra, out, u64::from(member.header_len))?;
        let mut recreator = RecreateStreamProcessor::new();
        for &(plain_len, corrections_len) in &member.segments {
            if plain_len > SEGMENT_PLAIN as u64 * 2 {
                return Err(Error::corrupt(format!(
                    "a blob segment claims {plain_len} bytes of plaintext"
                )));
            }
            read_exact_into(tar, &mut plain, plain_len as usize, "the layer's tar")?;
            read_exact_into(
                extra,
                &mut corrections,
                corrections_len as usize,
                "the blob's extra data",
            )?;
            let rebuilt = guarded("preflate", || {
                recreator.recompress(&mut io::Cursor::new(&plain[..]), &corrections)
            })
            .map_err(Error::corrupt)?
            .map_err(|e| Error::corrupt(format!("preflate {PREFLATE_VERSION}: {e}")))?;
            out.write_all(&rebuilt.0)
                .map_err(|e| Error::io("writing blob", e))?;
        }
        let (tail_len, tail_plain) = member.tail;
        copy_exact(extra, out, tail_len)?;
        let skipped = io::copy(&mut tar.take(tail_plain), &mut io::sink())
            .map_err(|e| Error::io("reading the layer's tar", e))?;
        if skipped != tail_plain {
            return Err(Error::corrupt("the layer's tar ended early"));
        }
        out.write_all(&member.trailer)
            .map_err(|e| Error::io("writing blob", e))?;
    }
    Ok(())
}

fn read_exact_into(from: &mut dyn Read, buf: &mut Vec<u8>, len: usize, what: &str) -> Result<()> {
    buf.resize(len, 0);
    from.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::corrupt(format!("{what} ended early")),
        _ => Error::io(format!("reading {what}"), e),
    })
}

fn copy_exact(from: &mut dyn Read, out: &mut dyn Write, len: u64) -> Result<()> {
    let copied = io::copy(&mut from.take(len), out).map_err(|e| Error::io("copying", e))?;
    if copied != len {
        return Err(Error::corrupt("the blob's extra data ended early"));
    }
    Ok(())
}

//! Splitting a layer stream into pieces: verbatim metadata and
//! content-defined chunks of file payloads.
//!
//! The splitter walks tar structure in a bounded window (a few MiB, whatever
//! the layer size). Headers, PAX records, GNU long names, sparse maps,
//! padding and end-of-archive blocks come out as [`Piece::Inline`]; each
//! member's payload is cut with FastCDC starting at its first byte, so the
//! same file content yields the same chunks whatever its header says. From
//! the first byte that is not valid tar, the rest of the stream is cut as a
//! plain CDC stream. Guarantee: the pieces, concatenated, are exactly the
//! input bytes.

use std::io::{self, Read};

use crate::store::chunker::Cdc;
use crate::store::tarscan::{self, BLOCK};

/// How a stream ended, as tar (see [`Splitter::tar_end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarEnd {
    /// A tar archive that reached its end-of-archive blocks (bytes after
    /// them, such as record padding, do not matter).
    Complete,
    /// Empty input.
    Empty,
    /// Not tar from `offset` on, before any end-of-archive block.
    NotTar {
        /// Where the stream stopped being tar.
        offset: u64,
    },
    /// The stream ended inside a member, at `offset`.
    InsideMember {
        /// Where the stream ended.
        offset: u64,
    },
    /// The stream ended after whole members but without end-of-archive
    /// blocks, at `offset` (a tar whose producer died, or a cut copy).
    NoEndMarker {
        /// Where the stream ended.
        offset: u64,
    },
}

/// One piece of a layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes kept verbatim in the recipe.
    Inline(&'a [u8]),
    /// Bytes stored as a content-addressed chunk.
    Chunk(&'a [u8]),
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Expecting a header block (or end-of-archive zeros).
    Header,
    /// Old GNU sparse extension blocks, then a chunked payload.
    SparseExtensions {
        payload: u64,
    },
    /// Payload bytes cut by CDC, then padding.
    Payload {
        remaining: u64,
    },
    /// Payload bytes kept inline (PAX records, long names), then padding.
    InlinePayload {
        remaining: u64,
    },
    /// Block padding after a payload.
    Padding {
        remaining: u64,
    },
    /// Not (or no longer) tar: CDC to the end.
    Raw,
    Done,
}

/// Streaming splitter over any reader. Pull pieces with [`Splitter::next_piece`].
pub struct Splitter<R> {
    source: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    pending_consume: usize,
    state: State,
    cdc: Cdc,
    pax_size: Option<u64>,
    offset: u64,
    /// Splitting at tar structure at all.
    tar_aware: bool,
    /// An end-of-archive (zero) block was seen.
    end_marker: bool,
    /// How the stream ended; set when it does.
    verdict: Option<TarEnd>,
}

impl<R: Read> Splitter<R> {
    /// A tar-aware splitter.
    pub fn new(source: R, cdc: Cdc) -> Self {
        Self::with_mode(source, cdc, true)
    }

    /// `tar_aware = false` cuts the whole stream with plain FastCDC (used to
    /// measure what tar awareness buys).
    pub fn with_mode(source: R, cdc: Cdc, tar_aware: bool) -> Self {
        let capacity = (cdc.max_size() * 4).max(4 << 20);
        Splitter {
            source,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            eof: false,
            pending_consume: 0,
            state: if tar_aware { State::Header } else { State::Raw },
            tar_aware,
            cdc,
            pax_size: None,
            offset: 0,
            end_marker: false,
            verdict: None,
        }
    }

    /// How the stream ended, judged as tar, once [`Splitter::next_piece`]
    /// has returned `None` (None before that, or for a plain CDC splitter).
    pub fn tar_end(&self) -> Option<TarEnd> {
        self.verdict
    }

    /// Records how the stream ended (the first verdict stands).
    fn ended(&mut self, end: TarEnd) {
        if self.verdict.is_none() {
            self.verdict = Some(if self.end_marker {
                TarEnd::Complete
            } else {
                end
            });
        }
    }

    /// Bytes handed out so far.
    pub fn offset(&self) -> u64 {
        self.offset + self.pending_consume as u64
    }

    /// Gives back the source reader.
    pub fn into_inner(self) -> R {
        self.source
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// Makes at least `want` bytes available unless the stream ends first.
    fn fill(&mut self, want: usize) -> io::Result<usize> {
        let want = want.min(self.buf.len());
        if self.available() >= want || self.eof {
            return Ok(self.available());
        }
        if self.buf.len() - self.start < want {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.available() < want {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.available())
    }

    fn emit_inline(&mut self, len: usize) -> Piece<'_> {
        self.pending_consume = len;
        Piece::Inline(&self.buf[self.start..self.start + len])
    }

    fn emit_chunk(&mut self, len: usize) -> Piece<'_> {
        self.pending_consume = len;
        Piece::Chunk(&self.buf[self.start..self.start + len])
    }

    /// Cuts one chunk out of at most `limit` upcoming bytes; 0 at end of stream.
    fn cut_chunk(&mut self, limit: u64) -> io::Result<usize> {
        let window = limit.min(self.cdc.max_size() as u64) as usize;
        let avail = self.fill(window)?.min(window);
        Ok(self
            .cdc
            .first_chunk_len(&self.buf[self.start..self.start + avail]))
    }

    /// The next piece, or `None` at the end of the stream. Errors are the
    /// source reader's.
    pub fn next_piece(&mut self) -> io::Result<Option<Piece<'_>>> {
        self.start += self.pending_consume;
        self.offset += self.pending_consume as u64;
        self.pending_consume = 0;
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Raw => {
                    let len = self.cut_chunk(u64::MAX)?;
                    if len == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    if self.verdict.is_none() && self.tar_aware {
                        let offset = self.offset();
                        self.ended(TarEnd::NotTar { offset });
                    }
                    return Ok(Some(self.emit_chunk(len)));
                }
                State::Payload { remaining } => {
                    let len = self.cut_chunk(remaining)?;
                    if len == 0 {
                        let offset = self.offset();
                        self.ended(TarEnd::InsideMember { offset });
                        self.state = State::Done;
                        continue;
                    }
                    self.state = self.after_payload_bytes(remaining, len as u64, false);
                    return Ok(Some(self.emit_chunk(len)));
                }
                State::InlinePayload { remaining } | State::Padding { remaining } => {
                    let inline_payload = matches!(self.state, State::InlinePayload { .. });
                    let want = remaining.min(self.buf.len() as u64) as usize;
                    let avail = self.fill(want)?.min(want);
                    if avail == 0 {
                        let offset = self.offset();
                        self.ended(TarEnd::InsideMember { offset });
                        self.state = State::Done;
                        continue;
                    }
                    self.state = if inline_payload {
                        self.after_payload_bytes(remaining, avail as u64, true)
                    } else if avail as u64 == remaining {
                        State::Header
                    } else {
                        State::Padding {
                            remaining: remaining - avail as u64,
                        }
                    };
                    return Ok(Some(self.emit_inline(avail)));
                }
                State::SparseExtensions { payload } => {
                    if self.fill(BLOCK)? < BLOCK {
                        self.state = State::Raw;
                        continue;
                    }
                    let block = &self.buf[self.start..self.start + BLOCK];
                    self.state = if tarscan::sparse_extension_continues(block) {
                        State::SparseExtensions { payload }
                    } else {
                        self.payload_state(payload, false)
                    };
                    return Ok(Some(self.emit_inline(BLOCK)));
                }
                State::Header => {
                    let avail = self.fill(2 * BLOCK)?;
                    if avail == 0 {
                        let offset = self.offset();
                        self.ended(if offset == 0 {
                            TarEnd::Empty
                        } else {
                            TarEnd::NoEndMarker { offset }
                        });
                        self.state = State::Done;
                        continue;
                    }
                    if avail < BLOCK {
                        self.state = State::Raw;
                        continue;
                    }
                    let block = &self.buf[self.start..self.start + BLOCK];
                    if tarscan::is_zero_block(block) {
                        self.end_marker = true;
                        return Ok(Some(self.emit_inline(BLOCK)));
                    }
                    let Some(header) = tarscan::parse_header(block) else {
                        self.state = State::Raw;
                        continue;
                    };
                    self.state = self.state_after_header(header)?;
                    return Ok(Some(self.emit_inline(BLOCK)));
                }
            }
        }
    }

    /// Decides what follows a valid header. Reads ahead for PAX records and
    /// for header-only types with a size set (to see whether data follows).
    fn state_after_header(&mut self, header: tarscan::HeaderInfo) -> io::Result<State> {
        let typeflag = header.typeflag;
        if tarscan::is_meta(typeflag) {
            if typeflag == b'x' && header.size <= tarscan::MAX_PARSED_PAX {
                let want = BLOCK + header.size as usize;
                let avail = self.fill(want)?;
                if avail >= want {
                    let records = &self.buf[self.start + BLOCK..self.start + want];
                    self.pax_size = tarscan::pax_size(records);
                }
            }
            return Ok(self.payload_state(header.size, true));
        }
        let mut size = self.pax_size.take().unwrap_or(header.size);
        if header.gnu_sparse_extended {
            return Ok(State::SparseExtensions { payload: size });
        }
        if tarscan::is_header_only(typeflag) && size > 0 {
            // Most writers store no data for links, devices, directories and
            // fifos; if a valid header follows directly, believe that.
            let avail = self.fill(2 * BLOCK)?;
            if avail >= 2 * BLOCK
                && tarscan::parse_header(&self.buf[self.start + BLOCK..self.start + 2 * BLOCK])
                    .is_some()
            {
                size = 0;
            }
        }
        Ok(self.payload_state(size, false))
    }

    fn payload_state(&self, size: u64, inline: bool) -> State {
        if size == 0 {
            State::Header
        } else if inline {
            State::InlinePayload { remaining: size }
        } else {
            State::Payload { remaining: size }
        }
    }

    /// State after `taken` bytes of a payload that had `remaining` left.
    fn after_payload_bytes(&self, remaining: u64, taken: u64, inline: bool) -> State {
        let left = remaining - taken;
        if left > 0 {
            return if inline {
                State::InlinePayload { remaining: left }
            } else {
                State::Payload { remaining: left }
            };
        }
        // The payload is complete: its total length decides the padding, and
        // since the payload started block-aligned, the padding only depends
        // on where it ended relative to the block size.
        let end = self.offset + taken;
        let pad = tarscan::padding(end);
        if pad == 0 {
            State::Header
        } else {
            State::Padding { remaining: pad }
        }
    }
}

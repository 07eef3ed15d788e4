//! Deterministic, seeded generator of tar archives that look like container
//! image layers, for benchmarks. No I/O, no network, no external data.
//!
//! An archive is a sequence of directories (`usr/lib/pkgNNNN/`), each holding
//! 8..48 regular files whose sizes are spread log-uniformly between 1 KiB and
//! 4 MiB. About a third of the file bytes are incompressible (pseudo-random,
//! like compressed assets or stripped binaries); the rest is text-like: lines
//! of words drawn from a seeded vocabulary with a Zipf-like distribution,
//! identifiers, numbers, and lines repeated from a little earlier in the same
//! file. `zstd -3` shrinks the whole tar to roughly 40-50% (the stages bench
//! prints the exact figure).
//!
//! Two ways to get the same bytes:
//! - [`build_tar`] builds the archive in memory with `tar::Builder`;
//! - [`TarStream`] produces it on the fly as a [`Read`], holding only a few
//!   KiB, for layers too big to materialise.
//!
//! Both follow the same [`Plan`] and produce byte-identical output for the
//! same `(target size, seed)`; [`check_stream_matches_builder`] verifies it.
//! The output never depends on how the reader's buffers are sized.

use std::io::{self, Read};
use std::sync::Arc;

/// Default seed ("layerst0").
pub const DEFAULT_SEED: u64 = 0x6c61_7965_7273_7430;
/// Smallest generated file.
pub const MIN_FILE: u64 = 1 << 10;
/// Largest generated file.
pub const MAX_FILE: u64 = 4 << 20;
/// Target share of file bytes that are incompressible.
pub const RANDOM_SHARE: f64 = 1.0 / 3.0;

const BLOCK: u64 = 512;
/// End-of-archive: two zero blocks (what `tar::Builder::finish` writes).
const TRAILER: u64 = 1024;
/// Content is generated in blocks of this size, so output is independent of
/// the caller's read sizes.
const STAGE: usize = 8 << 10;
/// Words in the vocabulary.
const VOCAB_WORDS: usize = 4096;
/// Lines remembered per text file for repetition.
const RECENT_LINES: usize = 64;
/// Probability that a text line repeats one of the recent lines.
const REPEAT_LINE: f64 = 0.60;
/// Base modification time of entries (Nov 2023).
const MTIME: u64 = 1_700_000_000;

/// wyrand: tiny, fast, good enough for test data. Not cryptographic.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (`n > 0`).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A vocabulary word, padded so that it can be copied with one fixed-size move.
#[derive(Clone, Copy)]
struct Word {
    bytes: [u8; 16],
    len: u8,
}

/// Words and a table for drawing them with probability ~ 1/rank.
pub struct Vocab {
    words: Vec<Word>,
    /// Maps 16 random bits to a word index (inverse CDF of a log-uniform rank).
    zipf: Vec<u16>,
}

impl Vocab {
    /// The vocabulary for `seed`.
    pub fn new(seed: u64) -> Arc<Vocab> {
        let mut rng = Rng::new(seed ^ 0x766f_6361_6275_6c61);
        // Common letters first; min of two uniform draws favours them.
        const LETTERS: &[u8] = b"etaoinsrhldcumfpgwybvkxjqz";
        let words = (0..VOCAB_WORDS)
            .map(|_| {
                let len = 2 + rng.below(4) + rng.below(6);
                let mut bytes = [0u8; 16];
                for b in &mut bytes[..len as usize] {
                    *b = LETTERS[rng.below(26).min(rng.below(26)) as usize];
                }
                Word {
                    bytes,
                    len: len as u8,
                }
            })
            .collect();
        let zipf = (0..1u32 << 16)
            .map(|i| {
                let u = (f64::from(i) + 0.5) / f64::from(1u32 << 16);
                let rank = (VOCAB_WORDS as f64).powf(u) - 1.0;
                (rank as usize).min(VOCAB_WORDS - 1) as u16
            })
            .collect();
        Arc::new(Vocab { words, zipf })
    }

    #[inline]
    fn pick(&self, rng: &mut Rng) -> &Word {
        &self.words[usize::from(self.zipf[(rng.next_u64() >> 48) as usize])]
    }
}

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentKind {
    /// Pseudo-random bytes: incompressible.
    Random,
    /// Text-like lines: compressible.
    Text,
}

/// What an archive entry is.
#[derive(Clone, Debug)]
pub enum EntryKind {
    /// A directory (header only).
    Dir,
    /// A regular file.
    File {
        /// Payload size.
        size: u64,
        /// Kind of payload.
        content: ContentKind,
        /// Seed of its payload.
        seed: u64,
        /// Permission bits.
        mode: u32,
    },
}

/// One archive entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path in the archive.
    pub path: String,
    /// Modification time (Unix seconds).
    pub mtime: u64,
    /// Directory or file.
    pub kind: EntryKind,
}

impl Entry {
    /// The tar header for this entry, path and checksum not yet set (as
    /// `tar::Builder::append_data` wants it).
    pub fn header(&self) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        match self.kind {
            EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
            }
            EntryKind::File { size, mode, .. } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(size);
                h.set_mode(mode);
            }
        }
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h
    }

    /// The payload reader (empty for directories).
    pub fn content(&self, vocab: &Arc<Vocab>) -> Content {
        match self.kind {
            EntryKind::Dir => Content::new(ContentKind::Random, 0, 0, vocab),
            EntryKind::File {
                size,
                content,
                seed,
                ..
            } => Content::new(content, size, seed, vocab),
        }
    }
}

/// Figures about a generated archive.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Size of the whole tar.
    pub tar_bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Payload bytes of all files.
    pub file_bytes: u64,
    /// Payload bytes of incompressible files.
    pub random_bytes: u64,
    /// Largest file.
    pub largest_file: u64,
}

impl Summary {
    fn add(&mut self, e: &Entry) {
        match e.kind {
            EntryKind::Dir => self.dirs += 1,
            EntryKind::File { size, content, .. } => {
                self.files += 1;
                self.file_bytes += size;
                self.largest_file = self.largest_file.max(size);
                if content == ContentKind::Random {
                    self.random_bytes += size;
                }
            }
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes of tar: {} files in {} dirs, {} payload bytes ({:.1}% incompressible), largest file {} bytes",
            self.tar_bytes,
            self.files,
            self.dirs,
            self.file_bytes,
            100.0 * self.random_bytes as f64 / self.file_bytes.max(1) as f64,
            self.largest_file
        )
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// The sequence of entries of an archive of about `target` bytes (the tar,
/// trailer included, comes out within one block of it, at least 2 KiB).
pub struct Plan {
    rng: Rng,
    target: u64,
    tar_bytes: u64,
    file_bytes: u64,
    random_bytes: u64,
    dir: u32,
    left_in_dir: u64,
    files: u64,
    done: bool,
}

impl Plan {
    /// The plan for a tar of `target` bytes from `seed`.
    pub fn new(target: u64, seed: u64) -> Self {
        Plan {
            rng: Rng::new(seed),
            target: target.max(4 * BLOCK),
            tar_bytes: 0,
            file_bytes: 0,
            random_bytes: 0,
            dir: 0,
            left_in_dir: 0,
            files: 0,
            done: false,
        }
    }
}

impl Iterator for Plan {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        if self.done {
            return None;
        }
        // Room for a header and at least one data block before the trailer?
        let room = self.target.saturating_sub(self.tar_bytes + TRAILER);
        if room < 2 * BLOCK {
            self.done = true;
            return None;
        }
        let rng = &mut self.rng;
        if self.left_in_dir == 0 {
            self.dir += 1;
            self.left_in_dir = 8 + rng.below(40);
            self.tar_bytes += BLOCK;
            return Some(Entry {
                path: format!("usr/lib/pkg{:04}/", self.dir),
                mtime: MTIME + u64::from(self.dir),
                kind: EntryKind::Dir,
            });
        }
        self.left_in_dir -= 1;
        let (lo, hi) = ((MIN_FILE as f64).ln(), (MAX_FILE as f64).ln());
        let size = ((lo + rng.unit() * (hi - lo)).exp() as u64)
            .clamp(MIN_FILE, MAX_FILE)
            .min(room - BLOCK);
        // Keep the incompressible share of bytes near RANDOM_SHARE.
        let content = if (self.random_bytes as f64) < RANDOM_SHARE * (self.file_bytes + size) as f64
        {
            ContentKind::Random
        } else {
            ContentKind::Text
        };
        let (ext, mode) = match content {
            ContentKind::Random => {
                const EXT: [(&str, u32); 5] = [
                    ("so", 0o755),
                    ("bin", 0o755),
                    ("gz", 0o644),
                    ("png", 0o644),
                    ("jar", 0o644),
                ];
                EXT[rng.below(EXT.len() as u64) as usize]
            }
            ContentKind::Text => {
                const EXT: [&str; 6] = ["txt", "py", "h", "conf", "js", "md"];
                (EXT[rng.below(EXT.len() as u64) as usize], 0o644)
            }
        };
        self.files += 1;
        self.file_bytes += size;
        if content == ContentKind::Random {
            self.random_bytes += size;
        }
        self.tar_bytes += BLOCK + padded(size);
        Some(Entry {
            path: format!("usr/lib/pkg{:04}/f{:06}.{ext}", self.dir, self.files),
            mtime: MTIME + 86_400 + self.files,
            kind: EntryKind::File {
                size,
                content,
                seed: rng.next_u64(),
                mode,
            },
        })
    }
}

/// Longest line [`TextGen::line`] may write, slack for fixed-size copies
/// included (12 indent + 12 * (3 separator + 16 token) + 16 + 1 < 512).
const LINE_MAX: usize = 512;

/// Text-like lines: Zipf-distributed words, some identifiers and numbers,
/// and repeats of recent lines.
struct TextGen {
    rng: Rng,
    vocab: Arc<Vocab>,
    recent: Vec<Vec<u8>>,
    next_slot: usize,
}

impl TextGen {
    /// Writes one line at the start of `buf` (at least [`LINE_MAX`] bytes;
    /// bytes past the returned length may be scribbled on).
    fn line(&mut self, buf: &mut [u8]) -> usize {
        let rng = &mut self.rng;
        if !self.recent.is_empty() && rng.chance(REPEAT_LINE) {
            let line = &self.recent[rng.below(self.recent.len() as u64) as usize];
            buf[..line.len()].copy_from_slice(line);
            return line.len();
        }
        let mut n = 4 * rng.below(4) as usize;
        buf[..n].fill(b' ');
        let words = 2 + rng.below(11);
        for w in 0..words {
            if w > 0 {
                let (sep, len): (&[u8; 3], usize) = match rng.below(16) {
                    0 => (b", _", 2),
                    1 => (b"___", 1),
                    2 => (b"...", 1),
                    3 => (b" = ", 3),
                    4 => (b"(((", 1),
                    _ => (b"   ", 1),
                };
                buf[n..n + 3].copy_from_slice(sep);
                n += len;
            }
            match rng.below(64) {
                0 => {
                    // A decimal number below 10^6.
                    let mut v = rng.below(1_000_000);
                    let digits = if v == 0 { 1 } else { v.ilog10() as usize + 1 };
                    for i in (0..digits).rev() {
                        buf[n + i] = b'0' + (v % 10) as u8;
                        v /= 10;
                    }
                    n += digits;
                }
                1 => {
                    // A hash-like identifier: 16 hex digits.
                    let v = rng.next_u64();
                    for i in 0..16 {
                        buf[n + i] = b"0123456789abcdef"[((v >> (60 - 4 * i)) & 15) as usize];
                    }
                    n += 16;
                }
                r => {
                    let word = self.vocab.pick(rng);
                    buf[n..n + 16].copy_from_slice(&word.bytes);
                    if r == 2 {
                        buf[n] = buf[n].to_ascii_uppercase();
                    }
                    n += usize::from(word.len);
                }
            }
        }
        buf[n] = b'\n';
        n += 1;
        let line = &buf[..n];
        if self.recent.len() < RECENT_LINES {
            self.recent.push(line.to_vec());
        } else {
            let slot = &mut self.recent[self.next_slot];
            slot.clear();
            slot.extend_from_slice(line);
            self.next_slot = (self.next_slot + 1) % RECENT_LINES;
        }
        n
    }
}

enum Gen {
    Random(Rng),
    Text(Box<TextGen>),
}

/// A file's payload as a reader of exactly its size.
pub struct Content {
    remaining: u64,
    stage: Vec<u8>,
    end: usize,
    pos: usize,
    generator: Gen,
}

impl Content {
    /// `size` bytes of `kind` content from `seed`.
    pub fn new(kind: ContentKind, size: u64, seed: u64, vocab: &Arc<Vocab>) -> Self {
        let rng = Rng::new(seed);
        let generator = match kind {
            ContentKind::Random => Gen::Random(rng),
            ContentKind::Text => Gen::Text(Box::new(TextGen {
                rng,
                vocab: vocab.clone(),
                recent: Vec::new(),
                next_slot: 0,
            })),
        };
        Content {
            remaining: size,
            stage: Vec::new(),
            end: 0,
            pos: 0,
            generator,
        }
    }

    /// Generates the next block of content into the stage.
    fn refill(&mut self) {
        if self.stage.is_empty() {
            self.stage = vec![0; STAGE + LINE_MAX];
        }
        self.pos = 0;
        self.end = 0;
        match &mut self.generator {
            Gen::Random(rng) => {
                for word in self.stage[..STAGE].chunks_exact_mut(8) {
                    word.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
                self.end = STAGE;
            }
            Gen::Text(text) => {
                while self.end < STAGE {
                    self.end += text.line(&mut self.stage[self.end..]);
                }
            }
        }
    }
}

impl Read for Content {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.remaining > 0 {
            if self.pos == self.end {
                self.refill();
            }
            let k = (buf.len() - n)
                .min(self.end - self.pos)
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            buf[n..n + k].copy_from_slice(&self.stage[self.pos..self.pos + k]);
            self.pos += k;
            self.remaining -= k as u64;
            n += k;
        }
        Ok(n)
    }
}

/// Builds the archive of about `target` bytes in memory with `tar::Builder`.
pub fn build_tar(target: u64, seed: u64) -> (Vec<u8>, Summary) {
    let vocab = Vocab::new(seed);
    let capacity = usize::try_from(target).expect("target fits in memory") + 4096;
    let mut builder = tar::Builder::new(Vec::with_capacity(capacity));
    let mut summary = Summary::default();
    for entry in Plan::new(target, seed) {
        summary.add(&entry);
        let mut header = entry.header();
        builder
            .append_data(&mut header, &entry.path, entry.content(&vocab))
            .expect("appending to an in-memory tar");
    }
    let tar = builder.into_inner().expect("finishing an in-memory tar");
    summary.tar_bytes = tar.len() as u64;
    (tar, summary)
}

/// The same archive as [`build_tar`], produced on the fly.
pub struct TarStream {
    plan: Plan,
    vocab: Arc<Vocab>,
    header: [u8; BLOCK as usize],
    header_pos: usize,
    body: Option<Content>,
    zeros: u64,
    trailer_sent: bool,
    summary: Summary,
}

impl TarStream {
    /// A stream of about `target` bytes from `seed`.
    pub fn new(target: u64, seed: u64) -> Self {
        TarStream {
            plan: Plan::new(target, seed),
            vocab: Vocab::new(seed),
            header: [0; BLOCK as usize],
            header_pos: BLOCK as usize,
            body: None,
            zeros: 0,
            trailer_sent: false,
            summary: Summary::default(),
        }
    }

    /// What has been produced so far (all of it once read returned 0).
    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

impl Read for TarStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.header_pos < self.header.len() {
                let k = (buf.len() - n).min(self.header.len() - self.header_pos);
                buf[n..n + k].copy_from_slice(&self.header[self.header_pos..self.header_pos + k]);
                self.header_pos += k;
                n += k;
                continue;
            }
            if let Some(body) = self.body.as_mut() {
                match body.read(&mut buf[n..])? {
                    0 => self.body = None,
                    k => n += k,
                }
                continue;
            }
            if self.zeros > 0 {
                let k = (buf.len() - n).min(usize::try_from(self.zeros).unwrap_or(usize::MAX));
                buf[n..n + k].fill(0);
                self.zeros -= k as u64;
                n += k;
                continue;
            }
            match self.plan.next() {
                Some(entry) => {
                    self.summary.add(&entry);
                    let mut header = entry.header();
                    header.set_path(&entry.path)?;
                    header.set_cksum();
                    self.header.copy_from_slice(header.as_bytes());
                    self.header_pos = 0;
                    if let EntryKind::File { size, .. } = entry.kind {
                        self.body = Some(entry.content(&self.vocab));
                        self.zeros = padded(size) - size;
                    }
                }
                None if !self.trailer_sent => {
                    self.trailer_sent = true;
                    self.zeros = TRAILER;
                }
                None => break,
            }
        }
        self.summary.tar_bytes += n as u64;
        Ok(n)
    }
}

/// Checks that [`TarStream`] reproduces [`build_tar`] byte for byte at
/// `target` bytes, reading it in awkward piece sizes.
pub fn check_stream_matches_builder(target: u64, seed: u64) -> Result<(), String> {
    let (built, _) = build_tar(target, seed);
    let mut stream = TarStream::new(target, seed);
    let mut streamed = Vec::with_capacity(built.len());
    let mut piece = vec![0u8; 7919];
    let mut sizes = [1usize, 511, 7919, 100, 4096, 3].into_iter().cycle();
    loop {
        let want = sizes.next().unwrap_or(1);
        let n = stream.read(&mut piece[..want]).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        streamed.extend_from_slice(&piece[..n]);
    }
    if streamed.len() != built.len() {
        return Err(format!(
            "stream is {} bytes, builder {} bytes",
            streamed.len(),
            built.len()
        ));
    }
    match streamed.iter().zip(&built).position(|(a, b)| a != b) {
        Some(at) => Err(format!("stream differs from builder at byte {at}")),
        None => Ok(()),
    }
}

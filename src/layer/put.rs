//! Putting a layer: decompress, hash, split, deduplicate, compress new
//! chunks in parallel, write a pack, then commit the index.
//!
//! Three stages run at once: a reader thread decompresses the input and
//! computes the digests; the calling thread splits the tar, hashes chunks
//! (BLAKE3) and looks them up; rayon workers compress frames of new chunks.
//! Buffers between stages are bounded (a few MiB each), so memory does not
//! grow with the layer's size: what does grow is the per-layer bookkeeping
//! (about 100 bytes per distinct chunk and the compressed recipe).
//!
//! A compressed input is also copied to a spool file as it is read; once
//! the tar is split, `layer::exact` finds what rebuilds the blob exactly
//! (or, for gzip, keeps it verbatim for gc to convert) and its extra data
//! and blob frame go into the same packs.
//!
//! Write order is what makes a put crash-safe: pack data is written under
//! a temporary name, fsynced and renamed into place; only then does one
//! SQLite transaction add the chunks and the layer. A failure at any point
//! before the commit leaves nothing the index refers to.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender, bounded};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::layer::exact::{ExtraSink, describe_blob};
use crate::layer::input::{Compression, LayerStream};
use crate::store::Store;
use crate::store::chunker::Cdc;
use crate::store::digest::{ChunkId, Digest};
use crate::store::index::{Index, NewAlias, NewBlob, NewFrame, NewLayer, NewPack};
use crate::store::pack::{self, FrameHeader, FrameKind};
use crate::store::packs::{FinishedPack, PackWriter, Packs};
use crate::store::recipe::RecipeWriter;
use crate::store::split::{Piece, Splitter, TarEnd};
use crate::util::fs::Spool;

/// Size of the buffers the reader thread hands to the splitter.
const READ_BLOCK: usize = 1 << 20;
/// Buffers in flight between reader and splitter.
const READ_QUEUE: usize = 4;
/// A pack is closed and a new one started past this size.
const PACK_SIZE_LIMIT: u64 = 1 << 30;

/// Options for [`crate::Store::put_layer_with`].
#[derive(Default)]
pub struct PutOptions<'a> {
    /// Name of the input for error messages (a path, `stdin`, ...).
    pub source_name: Option<String>,
    /// Refuse layers whose uncompressed size exceeds this many bytes
    /// (protects against decompression bombs). None: no limit.
    pub max_uncompressed: Option<u64>,
    /// Called now and then with the number of raw input bytes read so far.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Store the bytes exactly even when they are not a complete tar
    /// archive (cut short, without end-of-archive blocks, or not tar at
    /// all). Off by default, so that a broken layer is never accepted by
    /// accident.
    pub raw: bool,
    /// Keep only the tar of a compressed input, not what rebuilds the
    /// compressed blob exactly (faster; `get` of the compressed digest then
    /// fails, `get --tar` works). Off by default.
    pub tar_only: bool,
    /// Look for the cheapest exact method of a gzip blob during the put
    /// (preflate runs at about gzip's own compression speed). Off by
    /// default: the blob is kept verbatim, and gc finds the cheaper method
    /// later; zstd blobs are always matched at once (it is quick).
    pub exact_now: bool,
    /// Take the input as it is, never decompressing it (a registry blob
    /// that only looks compressed). Implies `raw`.
    pub as_is: bool,
}

/// What a put did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// The layer's DiffID: sha256 of the uncompressed tar.
    pub digest: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Compression of the input.
    pub compression: Compression,
    /// sha256 of the input as given, when it was compressed.
    pub compressed_digest: Option<Digest>,
    /// Size of the input as given.
    pub input_size: u64,
    /// Bytes the store's packs grew by.
    pub added_bytes: u64,
    /// Chunk references in the layer's recipe.
    pub chunks: u64,
    /// Chunks this put stored for the first time.
    pub new_chunks: u64,
    /// False when the layer was already in the store (it is pinned again).
    pub new_layer: bool,
    /// How the compressed blob is kept exactly (`preflate`, `zstd`,
    /// `verbatim`), when the input was compressed and it is.
    pub blob_method: Option<String>,
    /// Bytes of extra data the method keeps for the blob (before dedup
    /// and compression).
    pub blob_extra_bytes: Option<u64>,
    /// Why a cheaper method did not reproduce the blob, when one was tried
    /// and failed (or was left for gc).
    pub blob_note: Option<String>,
    /// The blob is kept verbatim until gc looks for a cheaper method.
    pub blob_pending: bool,
}

/// What the reader thread learned.
struct ReadOutcome {
    diff_id: Digest,
    size: u64,
    compression: Compression,
    compressed_digest: Option<Digest>,
    input_size: u64,
}

/// The blob's spool file while a put runs.
struct BlobSpool {
    spool: Spool,
    /// [`PutOptions::exact_now`].
    exact_now: bool,
}

/// Settings a put needs from the store.
pub(crate) struct PutContext<'s> {
    pub store: Store,
    pub cdc: Cdc,
    pub zstd_level: i32,
    pub frame_target: usize,
    pub index: &'s mut Index,
}

/// State shared by the puts of one import, so that they deduplicate
/// against each other before any of them is committed.
#[derive(Default)]
pub(crate) struct PutSession {
    /// Chunks written by earlier prepared (uncommitted) puts.
    pub pending_chunks: HashSet<ChunkId>,
    /// Layers whose recipes earlier prepared puts wrote.
    pub pending_layers: HashSet<Digest>,
}

/// A put whose packs are durable but not yet in the index. Dropping it
/// without [`PreparedPut::committed`] deletes its packs.
pub(crate) struct PreparedPut {
    pub packs: Vec<NewPack>,
    pub layer: NewLayer,
    pub info: LayerInfo,
    /// Chunks of the blob's extra data this put wrote (not the tar's).
    pub blob_new_chunks: u64,
    pack_files: Packs,
    committed: bool,
}

impl PreparedPut {
    /// The index now refers to the packs: keep them.
    pub(crate) fn committed(&mut self) {
        self.committed = true;
    }
}

impl Drop for PreparedPut {
    fn drop(&mut self) {
        if !self.committed {
            for p in &self.packs {
                self.pack_files.discard(&p.name);
            }
        }
    }
}

/// Puts one layer and commits it, pinned.
pub(crate) fn put_layer<R: Read + Send>(
    ctx: PutContext<'_>,
    input: R,
    opts: &PutOptions<'_>,
) -> Result<LayerInfo> {
    let mut session = PutSession::default();
    let mut prepared = prepare_put(&ctx, input, opts, &mut session)?;
    crate::util::fault::point("put-before-commit");
    let commit = ctx.index.commit_put(&prepared.packs, &prepared.layer)?;
    let mut info = prepared.info.clone();
    if commit.packs_dropped {
        // Another writer stored the same layer meanwhile: dropping
        // `prepared` uncommitted deletes this put's duplicate packs.
        info.added_bytes = 0;
    } else {
        prepared.committed();
    }
    crate::util::fault::point("put-after-commit");
    info.new_layer = commit.new_layer;
    // What the index did not have: another writer may have stored some
    // of this put's chunks meanwhile.
    info.new_chunks = commit.new_chunks.saturating_sub(prepared.blob_new_chunks);
    drop(prepared);
    Ok(info)
}

/// Reads, splits and stores a layer's new chunks and recipe in durable
/// packs, without touching the index.
pub(crate) fn prepare_put<R: Read + Send>(
    ctx: &PutContext<'_>,
    input: R,
    opts: &PutOptions<'_>,
    session: &mut PutSession,
) -> Result<PreparedPut> {
    let name = opts
        .source_name
        .clone()
        .unwrap_or_else(|| "layer input".to_string());
    let (data_tx, data_rx) = bounded::<io::Result<Vec<u8>>>(READ_QUEUE);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(READ_QUEUE + 2);
    let (spool, spool_file) = if opts.tar_only {
        (None, None)
    } else {
        let (spool, file) = Spool::create(ctx.store.path())?;
        let exact_now = opts.exact_now;
        (Some(BlobSpool { spool, exact_now }), Some(file))
    };

    std::thread::scope(|scope| {
        let reader_name = name.clone();
        let reader = scope
            .spawn(move || read_input(input, &reader_name, opts, spool_file, data_tx, free_rx));
        let source = ChannelReader {
            rx: data_rx,
            current: Vec::new(),
            pos: 0,
            free: free_tx,
        };
        let split_result = split_and_store(ctx, source, &session.pending_chunks);
        let read_result = crate::error::join_worker(reader);
        match (read_result, split_result) {
            (Ok(Some(outcome)), Ok(mut stored)) => {
                if !opts.raw && !opts.as_is {
                    // Dropping `stored` deletes the packs written so far.
                    check_complete_tar(&name, stored.tar_end)?;
                }
                finish_prepare(ctx, outcome, &mut stored, session, spool.as_ref())
            }
            // The reader stopped because the splitter did: the splitter's
            // error (a full disk, say) is the cause.
            (Ok(None), Err(e)) | (Ok(Some(_)), Err(e)) => Err(e),
            // Bad input: the reader's error explains why splitting stopped.
            (Err(e), _) => Err(e),
            (Ok(None), Ok(_)) => Err(Error::bug("input ended without a result")),
        }
    })
}

fn read_input<R: Read>(
    input: R,
    name: &str,
    opts: &PutOptions<'_>,
    spool: Option<std::fs::File>,
    tx: Sender<io::Result<Vec<u8>>>,
    free: Receiver<Vec<u8>>,
) -> Result<Option<ReadOutcome>> {
    let fail = |tx: &Sender<io::Result<Vec<u8>>>, err: Error| {
        let _ = tx.send(Err(io::Error::other("input failed")));
        Err(err)
    };
    let (max, progress) = (opts.max_uncompressed, opts.progress);
    let mut stream = match LayerStream::open_spooled(input, spool, opts.as_is) {
        Ok(s) => s,
        // A format it recognises and refuses (xz, bzip2).
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return fail(&tx, Error::invalid(name.to_string(), e.to_string()));
        }
        Err(e) => return fail(&tx, Error::io(format!("reading {name}"), e)),
    };
    let compression = stream.compression();
    let tap = stream.tap_state();
    let describe = |e: io::Error, decoded: u64| -> Error {
        if tap.read_failed.load(Ordering::Relaxed) {
            Error::io(format!("reading {name}"), e)
        } else {
            Error::invalid(
                name.to_string(),
                format!(
                    "{} data is corrupt or truncated after {} input bytes ({decoded} bytes decompressed): {e}",
                    compression.name(),
                    tap.bytes.load(Ordering::Relaxed)
                ),
            )
        }
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let mut buf = free.try_recv().unwrap_or_default();
        buf.resize(READ_BLOCK, 0);
        let mut filled = 0;
        while filled < buf.len() {
            match stream.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return fail(&tx, describe(e, size + filled as u64)),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        hasher.update(&buf);
        size += filled as u64;
        if let Some(limit) = max
            && size > limit
        {
            return fail(
                &tx,
                Error::invalid_at(
                    name.to_string(),
                    limit,
                    format!("uncompressed layer exceeds the size limit of {limit} bytes"),
                ),
            );
        }
        if let Some(p) = progress {
            p(tap.bytes.load(Ordering::Relaxed));
        }
        if tx.send(Ok(buf)).is_err() {
            // The splitter stopped; its error is the one to report.
            return Ok(None);
        }
    }
    let (compressed_digest, input_size) = match stream.finish() {
        Ok(v) => v,
        Err(e) => return fail(&tx, describe(e, size)),
    };
    if let Some(p) = progress {
        p(input_size);
    }
    Ok(Some(ReadOutcome {
        diff_id: Digest::from_bytes(hasher.finalize().into()),
        size,
        compression,
        compressed_digest,
        input_size,
    }))
}

/// Feeds the splitter from the reader thread's buffers.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    free: Sender<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let old = std::mem::replace(&mut self.current, next);
                    let _ = self.free.try_send(old);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Refuses a stream that is not a complete tar archive, saying where it
/// stops being one.
fn check_complete_tar(name: &str, end: Option<TarEnd>) -> Result<()> {
    let hint = "; pass --raw (PutOptions::raw) to store these bytes as they are";
    let (offset, what) = match end {
        Some(TarEnd::Complete) => return Ok(()),
        Some(TarEnd::Empty) | None => {
            return Err(Error::invalid(
                name,
                format!("the input is empty, not a tar archive{hint}"),
            ));
        }
        Some(TarEnd::NotTar { offset: 0 }) => (0, "the input is not a tar archive"),
        Some(TarEnd::NotTar { offset }) => {
            (offset, "the tar archive breaks off: no valid header here")
        }
        Some(TarEnd::InsideMember { offset }) => {
            (offset, "the tar archive ends inside a member (cut short?)")
        }
        Some(TarEnd::NoEndMarker { offset }) => (
            offset,
            "the tar archive ends without its end-of-archive blocks (cut short?)",
        ),
    };
    Err(Error::invalid_at(name, offset, format!("{what}{hint}")))
}

/// Result of splitting: the recipe, chunk figures and the frames written.
struct Stored {
    recipe: Option<RecipeWriter>,
    /// How the stream ended, as tar.
    tar_end: Option<TarEnd>,
    chunks: u64,
    new_chunks: u64,
    distinct: HashSet<ChunkId>,
    frames: FrameWriter,
}

fn split_and_store(
    ctx: &PutContext<'_>,
    source: ChannelReader,
    pending: &HashSet<ChunkId>,
) -> Result<Stored> {
    let mut splitter = Splitter::new(source, ctx.cdc.clone());
    let mut recipe = RecipeWriter::new()?;
    let mut frames = FrameWriter::new(ctx.store.clone(), ctx.zstd_level, ctx.frame_target);
    let mut distinct = HashSet::new();
    let (mut chunks, mut new_chunks) = (0u64, 0u64);
    loop {
        let piece = match splitter.next_piece() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // The reader thread holds the real cause; this error only stops us.
            Err(e) => return Err(Error::io("splitting layer", e)),
        };
        match piece {
            Piece::Inline(bytes) => recipe.push_inline(bytes)?,
            Piece::Chunk(bytes) => {
                let id = ChunkId::of(bytes);
                recipe.push_chunk(&id, bytes.len() as u32)?;
                chunks += 1;
                if frames.add_if_new(id, bytes, &mut distinct, pending, ctx.index)? {
                    new_chunks += 1;
                }
            }
        }
    }
    frames.flush()?;
    Ok(Stored {
        tar_end: splitter.tar_end(),
        recipe: Some(recipe),
        chunks,
        new_chunks,
        distinct,
        frames,
    })
}

fn finish_prepare(
    ctx: &PutContext<'_>,
    read: ReadOutcome,
    stored: &mut Stored,
    session: &mut PutSession,
    spool: Option<&BlobSpool>,
) -> Result<PreparedPut> {
    let recipe = stored
        .recipe
        .take()
        .ok_or_else(|| Error::bug("recipe taken twice"))?;
    if recipe.total_len() != read.size {
        return Err(Error::corrupt(format!(
            "split {} bytes but read {}",
            recipe.total_len(),
            read.size
        )));
    }
    let exists =
        session.pending_layers.contains(&read.diff_id) || ctx.index.layer(&read.diff_id)?.is_some();
    let recipe_frame = if exists {
        None
    } else {
        Some(
            stored
                .frames
                .write_recipe(read.diff_id, read.size, recipe.finish()?)?,
        )
    };
    let blob = match (read.compressed_digest, spool) {
        (Some(digest), Some(spool)) => {
            keep_blob_exactly(ctx, &read, digest, stored, &session.pending_chunks, spool)?
        }
        _ => None,
    };
    let packs = stored.frames.finish()?;
    let added_bytes = packs.iter().map(|p| p.size).sum();
    for pack in &packs {
        for frame in &pack.frames {
            session
                .pending_chunks
                .extend(frame.chunks.iter().map(|(id, _, _)| *id));
        }
    }
    session.pending_layers.insert(read.diff_id);
    let (blob, blob_note, blob_new_chunks) = match blob {
        Some(kept) => (Some(kept.blob), kept.note, kept.new_chunks),
        None => (None, None, 0),
    };
    let (blob_method, blob_extra_bytes) = match &blob {
        Some(b) => (Some(b.method.clone()), Some(b.extra_bytes)),
        None => (None, None),
    };
    let blob_pending = blob.as_ref().is_some_and(|b| b.pending);
    let alias = read.compressed_digest.map(|digest| NewAlias {
        digest,
        media_type: read.compression.media_type().to_string(),
        size: read.input_size,
        blob,
    });
    let layer = NewLayer {
        digest: read.diff_id,
        size: read.size,
        recipe_frame,
        chunk_count: stored.chunks,
        distinct_chunks: stored.distinct.drain().collect(),
        alias,
    };
    let info = LayerInfo {
        digest: read.diff_id,
        size: read.size,
        compression: read.compression,
        compressed_digest: read.compressed_digest,
        input_size: read.input_size,
        added_bytes,
        chunks: stored.chunks,
        new_chunks: stored.new_chunks,
        new_layer: recipe_frame.is_some(),
        blob_method,
        blob_extra_bytes,
        blob_note,
        blob_pending,
    };
    Ok(PreparedPut {
        packs,
        layer,
        info,
        blob_new_chunks,
        pack_files: ctx.store.packs(),
        committed: false,
    })
}

/// What [`keep_blob_exactly`] did.
struct KeptBlob {
    blob: NewBlob,
    /// Why cheaper methods failed, if they did.
    note: Option<String>,
    /// Chunks of extra data written.
    new_chunks: u64,
}

/// Finds and stores what rebuilds the compressed blob exactly, unless the
/// store already can.
fn keep_blob_exactly(
    ctx: &PutContext<'_>,
    read: &ReadOutcome,
    digest: Digest,
    stored: &mut Stored,
    pending: &HashSet<ChunkId>,
    spool: &BlobSpool,
) -> Result<Option<KeptBlob>> {
    if let Some(alias) = ctx.index.alias(&digest)?
        && alias.blob_frame.is_some()
    {
        let blob = NewBlob {
            frame: None,
            method: alias.method.unwrap_or_default(),
            extra_bytes: alias.extra_bytes,
            extra_chunks: Vec::new(),
            pending: alias.pending,
        };
        return Ok(Some(KeptBlob {
            blob,
            note: None,
            new_chunks: 0,
        }));
    }
    let defer = !spool.exact_now && read.compression == Compression::Gzip;
    if defer {
        // The verbatim copy gets a pack of its own: once gc has found the
        // cheaper method, the whole pack is garbage and goes without a
        // rewrite of the layer's data.
        stored.frames.start_new_pack()?;
    }
    let sink = ExtraSink::new(ctx.cdc.clone(), &mut stored.frames, ctx.index, pending)?;
    let plan = describe_blob(
        spool.spool.path(),
        ctx.store.path(),
        read.compression,
        read.size,
        defer,
        sink,
    )?;
    let method = plan.description.method.name().to_string();
    let extra_bytes = plan.description.extra_len;
    let frame = stored.frames.write_blob(
        read.diff_id,
        read.size,
        (digest, read.input_size),
        plan.description.encode(),
    )?;
    let blob = NewBlob {
        frame: Some(frame),
        method,
        extra_bytes,
        extra_chunks: plan.extra_chunks,
        pending: defer,
    };
    Ok(Some(KeptBlob {
        blob,
        note: (!plan.notes.is_empty()).then(|| plan.notes.join("; ")),
        new_chunks: plan.new_chunks,
    }))
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

fn compress_frame(
    level: i32,
    chunks: Vec<(ChunkId, u32)>,
    raw: &[u8],
) -> Result<(FrameHeader, Vec<u8>)> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            let c = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::io("creating zstd compressor", e))?;
            *slot = Some((level, c));
        }
        match slot.as_mut() {
            Some((_, c)) => pack::encode_chunk_frame(chunks, raw, c),
            None => Err(Error::bug("compressor missing")),
        }
    })
}

type FrameResult = (u64, Result<(FrameHeader, Vec<u8>)>);

/// Groups new chunks into frames, compresses them on rayon workers, and
/// appends them to pack files in order.
pub(crate) struct FrameWriter {
    store: Store,
    level: i32,
    target: usize,
    raw: Vec<u8>,
    entries: Vec<(ChunkId, u32)>,
    next_seq: u64,
    next_write: u64,
    in_flight: usize,
    max_in_flight: usize,
    done_tx: Sender<FrameResult>,
    done_rx: Receiver<FrameResult>,
    ready: BTreeMap<u64, (FrameHeader, Vec<u8>)>,
    writer: Option<PackWriter>,
    current_frames: Vec<NewFrame>,
    finished: Vec<NewPack>,
}

impl FrameWriter {
    pub(crate) fn new(store: Store, level: i32, target: usize) -> Self {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        FrameWriter {
            store,
            level,
            target,
            raw: Vec::with_capacity(target + (256 << 10)),
            entries: Vec::new(),
            next_seq: 0,
            next_write: 0,
            in_flight: 0,
            max_in_flight: rayon::current_num_threads() * 2 + 1,
            done_tx,
            done_rx,
            ready: BTreeMap::new(),
            writer: None,
            current_frames: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Adds a new chunk; compresses a frame once enough has gathered.
    pub(crate) fn add(&mut self, id: ChunkId, bytes: &[u8]) -> Result<()> {
        self.entries.push((id, bytes.len() as u32));
        self.raw.extend_from_slice(bytes);
        // Readers refuse frames of more than MAX_FRAME_ENTRIES chunks, so a
        // run of tiny chunks must close its frame early.
        if self.raw.len() >= self.target || self.entries.len() >= pack::MAX_FRAME_ENTRIES as usize {
            self.dispatch()?;
        }
        Ok(())
    }

    /// Adds a chunk unless this stream already met it (`distinct`),
    /// an earlier put of the session wrote it (`pending`) or the index has
    /// it. True when it was added.
    pub(crate) fn add_if_new(
        &mut self,
        id: ChunkId,
        bytes: &[u8],
        distinct: &mut HashSet<ChunkId>,
        pending: &HashSet<ChunkId>,
        index: &Index,
    ) -> Result<bool> {
        if distinct.insert(id) && !pending.contains(&id) && !index.has_chunk(&id)? {
            self.add(id, bytes)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn dispatch(&mut self) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        let raw = std::mem::replace(&mut self.raw, Vec::with_capacity(self.target + (256 << 10)));
        let entries = std::mem::take(&mut self.entries);
        let seq = self.next_seq;
        self.next_seq += 1;
        let tx = self.done_tx.clone();
        let level = self.level;
        rayon::spawn(move || {
            let result = compress_frame(level, entries, &raw);
            let _ = tx.send((seq, result));
        });
        self.in_flight += 1;
        while let Ok((seq, result)) = self.done_rx.try_recv() {
            self.accept(seq, result)?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> Result<()> {
        let (seq, result) = self
            .done_rx
            .recv()
            .map_err(|_| Error::bug("compression worker vanished"))?;
        self.accept(seq, result)
    }

    fn accept(&mut self, seq: u64, result: Result<(FrameHeader, Vec<u8>)>) -> Result<()> {
        self.in_flight -= 1;
        self.ready.insert(seq, result?);
        while let Some((header, payload)) = self.ready.remove(&self.next_write) {
            self.next_write += 1;
            self.append(header, &payload)?;
        }
        Ok(())
    }

    fn append(&mut self, header: FrameHeader, payload: &[u8]) -> Result<(usize, usize)> {
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.len() >= PACK_SIZE_LIMIT)
        {
            self.close_pack()?;
        }
        if self.writer.is_none() {
            self.writer = Some(self.store.new_pack()?);
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::bug("no pack writer"))?;
        let offset = writer.append(&header, payload)?;
        let mut chunk_offset = 0u64;
        let chunks = header
            .chunks
            .iter()
            .map(|(id, len)| {
                let at = chunk_offset;
                chunk_offset += u64::from(*len);
                (*id, at, *len)
            })
            .collect();
        self.current_frames.push(NewFrame {
            offset,
            total_len: header.total_len(),
            raw_len: header.raw_len,
            stored_len: header.stored_len,
            kind: header.kind as u8,
            chunks,
        });
        Ok((self.finished.len(), self.current_frames.len() - 1))
    }

    fn close_pack(&mut self) -> Result<()> {
        if let Some(writer) = self.writer.take() {
            let FinishedPack { name, size } = writer.finish()?;
            self.finished.push(NewPack {
                name,
                size,
                frames: std::mem::take(&mut self.current_frames),
            });
        }
        Ok(())
    }

    /// Compresses what is pending and waits for every frame to be written.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.dispatch()?;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        Ok(())
    }

    /// Appends a recipe frame; returns its (pack, frame) position.
    pub(crate) fn write_recipe(
        &mut self,
        diff_id: Digest,
        size: u64,
        recipe: Vec<u8>,
    ) -> Result<(usize, usize)> {
        self.flush()?;
        let (header, payload) = pack::encode_recipe_frame(diff_id, size, recipe);
        debug_assert_eq!(header.kind, FrameKind::Recipe);
        self.append(header, &payload)
    }

    /// Writes what is pending and finishes the current pack, so that what
    /// comes next goes to a new one.
    pub(crate) fn start_new_pack(&mut self) -> Result<()> {
        self.flush()?;
        self.close_pack()
    }

    /// Appends a blob frame; returns its (pack, frame) position.
    pub(crate) fn write_blob(
        &mut self,
        diff_id: Digest,
        size: u64,
        blob: (Digest, u64),
        description: Vec<u8>,
    ) -> Result<(usize, usize)> {
        self.flush()?;
        let (header, payload) = pack::encode_blob_frame(diff_id, size, blob, description);
        self.append(header, &payload)
    }

    /// Makes every pack durable and returns them for the index.
    pub(crate) fn finish(&mut self) -> Result<Vec<NewPack>> {
        self.flush()?;
        self.close_pack()?;
        Ok(std::mem::take(&mut self.finished))
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        // Packs finished but never handed to the index are unreferenced.
        for pack in &self.finished {
            self.store.packs().discard(&pack.name);
        }
    }
}

//! Streaming a layer's tar out of the store to a consumer in the same
//! process (checkout, the in-memory tree), through a bounded pipe rather
//! than a temporary file. The get's own checks (every chunk, the DiffID)
//! finish before the stream is reported complete.

use std::io;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::digest::Digest;
use crate::util::pipe::{PipeReader, pipe};

impl Store {
    /// Streams layer `digest` out of the store into `consume` through a pipe
    /// (a thread runs the get). The consumer must read to the end; the get's
    /// own check of the DiffID then runs before this returns. Takes no
    /// lock: the caller holds the store's lock (shared or exclusive), so
    /// that verify, holding it exclusively, can rebuild blobs too.
    pub(crate) fn stream_layer<T>(
        &self,
        digest: &Digest,
        consume: impl FnOnce(&mut PipeReader) -> Result<T>,
    ) -> Result<T> {
        let index = self.index()?;
        let row = index
            .layer(digest)?
            .ok_or_else(|| Error::not_found(format!("layer {digest}")))?;
        let packs = self.packs();
        let (writer, mut reader) = pipe();
        std::thread::scope(|scope| {
            let getter = scope.spawn(move || {
                let mut writer = writer;
                match crate::layer::get::write_layer(index, &packs, &row, &mut writer, None) {
                    Ok(_) => writer
                        .finish()
                        .map_err(|e| Error::io(format!("streaming layer {digest}"), e)),
                    Err(e) => {
                        writer.fail(e.to_string());
                        Err(e)
                    }
                }
            });
            let consumed = consume(&mut reader);
            drop(reader);
            let got = crate::error::join_worker(getter);
            match (got, consumed) {
                (Ok(()), consumed) => consumed,
                // The consumer stopped first: the get only failed because its
                // reader went away, so the consumer's error is the cause.
                (Err(Error::Io { source, .. }), Err(e))
                    if source.kind() == io::ErrorKind::BrokenPipe =>
                {
                    Err(e)
                }
                (Err(e), _) => Err(e),
            }
        })
    }
}

//! An in-process byte pipe between two threads, so that a producer that
//! writes (a layer `get`, a tar builder) can feed a consumer that reads (a
//! tar reader, a `put`) without a temporary file.
//!
//! Memory is bounded: the pipe holds at most a few blocks. A writer that is
//! dropped without [`PipeWriter::finish`] makes the reader fail instead of
//! seeing a clean end, so a producer that stops half-way can never pass for
//! a complete stream. A reader that is dropped makes further writes fail.

use std::io::{self, Read, Write};

use crossbeam_channel::{Receiver, Sender, bounded};

/// Bytes gathered before a block is handed to the reader.
const BLOCK: usize = 256 << 10;
/// Blocks in flight.
const DEPTH: usize = 4;

/// The writing end.
pub(crate) struct PipeWriter {
    tx: Option<Sender<io::Result<Vec<u8>>>>,
    buf: Vec<u8>,
}

/// The reading end.
pub(crate) struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

/// A new pipe.
pub(crate) fn pipe() -> (PipeWriter, PipeReader) {
    let (tx, rx) = bounded(DEPTH);
    (
        PipeWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(BLOCK),
        },
        PipeReader {
            rx,
            current: Vec::new(),
            pos: 0,
            done: false,
        },
    )
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the reading side stopped")
}

impl PipeWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        match &self.tx {
            Some(tx) => tx.send(Ok(block)).map_err(|_| closed()),
            None => Err(closed()),
        }
    }

    /// Ends the stream cleanly: the reader sees end-of-file after the
    /// bytes written so far.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.send_buf()?;
        self.tx = None;
        Ok(())
    }

    /// Ends the stream with an error the reader will return.
    pub(crate) fn fail(mut self, why: String) {
        self.buf.clear();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(io::Error::other(why)));
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tx.is_none() {
            return Err(closed());
        }
        let room = BLOCK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= BLOCK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Err(io::Error::other(
                "the producing side stopped before the end of the stream",
            )));
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(block)) => {
                    self.current = block;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // All senders gone after `finish`: a clean end.
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_and_end_cleanly() {
        let (mut w, mut r) = pipe();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let expected = data.clone();
        let t = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.finish().unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn dropped_writer_is_an_error_not_an_end() {
        let (mut w, mut r) = pipe();
        w.write_all(b"partial").unwrap();
        drop(w);
        let mut got = Vec::new();
        assert!(r.read_to_end(&mut got).is_err());
    }

    #[test]
    fn dropped_reader_fails_writes() {
        let (mut w, r) = pipe();
        drop(r);
        let big = vec![0u8; BLOCK * 2];
        assert!(w.write_all(&big).is_err());
    }
}

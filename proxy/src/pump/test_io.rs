//! An in-memory peer for the pump's tests: reads come from a pattern repeated up to a
//! given length and then never again (pending), every write is taken whole and kept.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) struct Fake {
    pattern: Vec<u8>,
    at: usize,
    /// Bytes still to be read; then every read is pending.
    left: usize,
    /// Reads that returned data.
    pub(super) reads: usize,
    /// Everything written to it.
    pub(super) written: Vec<u8>,
}

impl Fake {
    /// Reads `pattern` again and again, `len` bytes in all.
    pub(super) fn reading(pattern: Vec<u8>, len: usize) -> Self {
        Self {
            pattern,
            at: 0,
            left: len,
            reads: 0,
            written: Vec::new(),
        }
    }

    /// Never has anything to read.
    pub(super) fn silent() -> Self {
        Self::reading(Vec::new(), 0)
    }
}

impl AsyncRead for Fake {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 || self.pattern.is_empty() {
            return Poll::Pending;
        }
        while buf.remaining() > 0 && self.left > 0 {
            let at = self.at;
            let n = buf.remaining().min(self.pattern.len() - at).min(self.left);
            buf.put_slice(&self.pattern[at..at + n]);
            self.at = (at + n) % self.pattern.len();
            self.left -= n;
        }
        self.reads += 1;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Fake {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

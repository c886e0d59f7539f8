//! The one frame writer: a server frame (header and payload, never copied together)
//! written as far as the peer takes it. The pump polls it; `write_frame` and
//! `send_close` drive it to the end for the few frames sent before the pump starts.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::close;
use super::frame::{encode_server_header, Opcode, MAX_SERVER_HEADER};

/// How long a close frame sent before the pump may take to leave.
const CLOSE_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A frame being written to the browser.
#[derive(Debug)]
pub struct OutFrame {
    header: [u8; MAX_SERVER_HEADER],
    header_len: u8,
    header_pos: u8,
    payload: Bytes,
    opcode: Opcode,
}

impl OutFrame {
    /// A frame carrying `payload` whole.
    pub fn new(opcode: Opcode, payload: Bytes) -> Self {
        let len = payload.len();
        Self::with_header(opcode, len, payload)
    }

    /// Only the header of a frame of `len` payload bytes, which the caller sends right
    /// after it (the pump splices them from a pipe): done once the header is written.
    pub fn header_only(opcode: Opcode, len: usize) -> Self {
        Self::with_header(opcode, len, Bytes::new())
    }

    fn with_header(opcode: Opcode, len: usize, payload: Bytes) -> Self {
        let mut header = [0u8; MAX_SERVER_HEADER];
        let header_len = encode_server_header(opcode, len, &mut header) as u8;
        Self {
            header,
            header_len,
            header_pos: 0,
            payload,
            opcode,
        }
    }

    /// The frame's opcode.
    pub fn opcode(&self) -> Opcode {
        self.opcode
    }

    /// True once every byte is written.
    pub fn is_done(&self) -> bool {
        self.header_pos == self.header_len && self.payload.is_empty()
    }

    /// One vectored write of what is left (header and payload in one system call).
    /// Ready with how many bytes it took and how many of them were payload; a peer that
    /// takes nothing is an error.
    pub fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<(usize, usize)>> {
        let slices = [
            IoSlice::new(&self.header[usize::from(self.header_pos)..usize::from(self.header_len)]),
            IoSlice::new(&self.payload),
        ];
        let n = std::task::ready!(Pin::new(w).poll_write_vectored(cx, &slices))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        Poll::Ready(Ok((n, self.advance(n))))
    }

    /// Consumes `n` written bytes; returns how many of them were payload.
    fn advance(&mut self, mut n: usize) -> usize {
        let in_header = n.min(usize::from(self.header_len - self.header_pos));
        self.header_pos += in_header as u8;
        n -= in_header;
        self.payload.advance(n);
        n
    }
}

/// Writes one whole frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    opcode: Opcode,
    payload: &[u8],
) -> io::Result<()> {
    let mut frame = OutFrame::new(opcode, Bytes::copy_from_slice(payload));
    while !frame.is_done() {
        poll_fn(|cx| frame.poll_write(cx, w)).await?;
    }
    w.flush().await
}

/// Best-effort close frame and shutdown on a connection that never reached the pump;
/// a peer that does not take it within a short limit is left.
pub async fn send_close<W: AsyncWrite + Unpin>(w: &mut W, code: u16, reason: &str) {
    let write = async {
        write_frame(w, Opcode::Close, &close::payload(code, reason)).await?;
        w.shutdown().await
    };
    let _ = tokio::time::timeout(CLOSE_WRITE_LIMIT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_written_one_byte_at_a_time_arrives_whole() {
        let (mut a, mut b) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            write_frame(&mut a, Opcode::Binary, b"hello").await.unwrap();
        });
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
            .await
            .unwrap();
        writer.await.unwrap();
        assert_eq!(got, [0x82, 5, b'h', b'e', b'l', b'l', b'o']);
    }
}

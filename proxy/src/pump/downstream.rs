//! Target → browser: each read (or splice) from the target becomes one binary frame;
//! control frames go between frames, never inside one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::*;

impl<C, B> Pump<C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    /// Target → browser. `Err` ends the session at once.
    pub(super) fn poll_down(&mut self, cx: &mut Context<'_>) -> Result<Step, SessionEnd> {
        let mut step = Step::Blocked;
        let mut read_once = false;
        loop {
            // 1. Finish the frame being written.
            if let Some(f) = &mut self.down_frame {
                // The header of a spliced frame (its payload waits in the pipe) goes
                // corked, to leave in one segment with the start of its payload.
                let written = match self.splice.as_ref().filter(|s| s.pending() > 0) {
                    Some(s) => match s.corked(&self.client) {
                        Ok(mut socket) => f.poll_write(cx, &mut socket),
                        Err(e) => Poll::Ready(Err(e)),
                    },
                    None => f.poll_write(cx, &mut self.client),
                };
                match written {
                    Poll::Ready(Err(_)) => return Err(SessionEnd::ClientIo),
                    Poll::Ready(Ok((written, payload))) => {
                        let is_close = f.opcode() == Opcode::Close;
                        if f.is_done() {
                            if is_close {
                                self.down_state = DownState::ShuttingDown;
                            }
                            self.down_frame = None;
                        }
                        self.counts.client_written += written as u64;
                        self.client_needs_flush = true;
                        if payload > 0 && !is_close {
                            self.counts.to_client += payload as u64;
                            self.note_activity();
                        }
                        step = Step::Progress;
                        continue;
                    }
                    Poll::Pending => return Ok(step),
                }
            }
            // 1b. The spliced payload of the frame whose header is written.
            if let Some(s) = self.splice.as_mut().filter(|s| s.pending() > 0) {
                match s.poll_drain(cx, &self.client) {
                    Poll::Ready(Ok(n)) => {
                        self.counts.client_written += n as u64;
                        self.counts.to_client += n as u64;
                        self.note_activity();
                        step = Step::Progress;
                        continue;
                    }
                    Poll::Ready(Err(_)) => return Err(SessionEnd::ClientIo),
                    Poll::Pending => return Ok(step),
                }
            }
            match self.down_state {
                DownState::Open => {}
                DownState::ShuttingDown => {
                    if Pin::new(&mut self.client).poll_shutdown(cx).is_pending() {
                        return Ok(step);
                    }
                    self.down_state = DownState::Done;
                    return Ok(Step::Progress);
                }
                DownState::Done => return Ok(step),
            }
            // 2. Control frames go before data.
            if let Some((code, reason)) = self.ctrl.close.take() {
                self.down_frame = Some(OutFrame::new(Opcode::Close, close::payload(code, reason)));
                self.ctrl.close_sent = true;
                self.close_sent_at = Some(Instant::now());
                self.down_buf = BytesMut::new();
                if let Some(s) = &mut self.splice {
                    s.release();
                }
                continue;
            }
            if let Some(payload) = self.ctrl.pong.take() {
                self.down_frame = Some(OutFrame::new(Opcode::Pong, payload));
                continue;
            }
            if std::mem::take(&mut self.ctrl.ping) {
                self.down_frame = Some(OutFrame::new(Opcode::Ping, Bytes::new()));
                continue;
            }
            // 3. Data from the target, once the browser side is flushed.
            if self.client_needs_flush {
                match Pin::new(&mut self.client).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.client_needs_flush = false,
                    Poll::Ready(Err(_)) => return Err(SessionEnd::ClientIo),
                    Poll::Pending => return Ok(step),
                }
            }
            // Read more from the target: once per round.
            if read_once {
                return Ok(Step::Progress);
            }
            let streaming = self.streaming;
            if let Some(s) = self.splice.as_mut().filter(|_| streaming) {
                match s.poll_fill(cx, &self.target, self.limits.read_chunk) {
                    Poll::Ready(Ok(0)) => self.target_closed(),
                    Poll::Ready(Ok(n)) => {
                        read_once = true;
                        self.down_frame = Some(OutFrame::header_only(Opcode::Binary, n));
                    }
                    Poll::Ready(Err(FillError::Unsupported(e))) => {
                        tracing::debug!(error = %e, "cannot splice; copying instead");
                        self.splice = None;
                    }
                    Poll::Ready(Err(FillError::Io(e))) => self.target_read_failed(&e),
                    Poll::Pending => {
                        // The target has nothing more: this burst is over.
                        self.streaming = s.holds_pipe();
                        return Ok(step);
                    }
                }
                step = Step::Progress;
                continue;
            }
            match read_lazy(
                &mut self.target,
                cx,
                &mut self.down_buf,
                &mut self.probe,
                self.limits.read_chunk,
            ) {
                Poll::Ready(Ok(0)) => {
                    self.target_closed();
                    step = Step::Progress;
                }
                Poll::Ready(Ok(n)) => {
                    read_once = true;
                    // A full probe: the rest of this burst goes through the pipe.
                    self.streaming = self.splice.is_some() && n >= PROBE;
                    let payload = self.down_buf.split_to(n).freeze();
                    self.down_frame = Some(OutFrame::new(Opcode::Binary, payload));
                    step = Step::Progress;
                }
                Poll::Ready(Err(e)) => {
                    self.target_read_failed(&e);
                    step = Step::Progress;
                }
                Poll::Pending => return Ok(step),
            }
        }
    }

    /// The target's end of stream: close the browser side normally.
    fn target_closed(&mut self) {
        self.close(
            close::NORMAL,
            "target closed the connection",
            SessionEnd::Closed,
        );
    }

    fn target_read_failed(&mut self, e: &std::io::Error) {
        tracing::debug!(error = %e, "target read failed");
        self.close(
            close::INTERNAL_ERROR,
            "target connection failed",
            SessionEnd::TargetIo,
        );
    }
}

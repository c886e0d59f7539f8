//! Browser → target: frames parsed as they arrive, payload unmasked in place, every
//! frame of one read written to the target at once, control frames queued for the
//! other direction.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::*;

impl<C, B> Pump<C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    /// Browser → target. `Err` ends the session at once.
    pub(super) fn poll_up(&mut self, cx: &mut Context<'_>) -> Result<Step, SessionEnd> {
        let mut step = Step::Blocked;
        let mut read_once = false;
        loop {
            // 1. Whatever is unmasked goes to the target first (backpressure).
            if !self.up_out.is_empty() {
                match Pin::new(&mut self.target).poll_write(cx, &self.up_out) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        self.target_write_failed();
                        return Ok(Step::Progress);
                    }
                    Poll::Ready(Ok(n)) => {
                        self.up_out.advance(n);
                        self.counts.to_target += n as u64;
                        self.note_activity();
                        self.target_needs_flush = true;
                        step = Step::Progress;
                        if self.up_out.is_empty() {
                            // Drop the reference so the read buffer can be reused whole.
                            self.up_out = Bytes::new();
                        }
                        continue;
                    }
                    Poll::Pending => return Ok(step),
                }
            }
            if self.target_needs_flush {
                match Pin::new(&mut self.target).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.target_needs_flush = false,
                    Poll::Ready(Err(_)) => {
                        self.target_write_failed();
                        return Ok(Step::Progress);
                    }
                    Poll::Pending => return Ok(step),
                }
            }
            match self.up_state {
                UpState::Open => {}
                UpState::Draining => {
                    // Errors here only mean the target is already gone; the session ends anyway.
                    if Pin::new(&mut self.target).poll_shutdown(cx).is_pending() {
                        return Ok(step);
                    }
                    self.up_state = UpState::Done;
                    return Ok(Step::Progress);
                }
                UpState::Done => return Ok(step),
            }
            // 2. Turn buffered browser bytes into target bytes: one write per read.
            if self.process_input()? {
                step = Step::Progress;
                continue;
            }
            // 3. Read more from the browser: once per round.
            if read_once {
                return Ok(Step::Progress);
            }
            match read_lazy(
                &mut self.client,
                cx,
                &mut self.up_buf,
                &mut self.probe,
                self.limits.read_chunk,
            ) {
                Poll::Ready(Ok(0)) => {
                    self.up_state = UpState::Draining;
                    step = Step::Progress;
                }
                Poll::Ready(Ok(n)) => {
                    self.counts.client_read += n as u64;
                    read_once = true;
                    step = Step::Progress;
                }
                Poll::Ready(Err(_)) => return Err(SessionEnd::ClientIo),
                Poll::Pending => {
                    // The browser has nothing more for now: is it inside a frame?
                    if self.partial_frame_since.is_none()
                        && (self.up_frame.is_some() || !self.up_buf.is_empty())
                    {
                        self.partial_frame_since = Some(Instant::now());
                    }
                    return Ok(step);
                }
            }
        }
    }

    /// Consumes every buffered browser frame it can and gathers what goes to the target
    /// into one buffer, so one read from the browser becomes one write to the target
    /// (nothing waits for more data). True if something happened.
    ///
    /// Unfiltered payload is unmasked and compacted in place: `up_buf[..ready]` is output,
    /// `up_buf[pos..]` is still to parse. The first frame's payload is not moved at all;
    /// later frames of the same read move back over the headers between them. Filtered
    /// payload goes through the viewer's one filter into `filtered`. A control frame or a
    /// refusal met with output pending ends the batch: the output goes first, then the
    /// frame is handled in the next round, in stream order.
    fn process_input(&mut self) -> Result<bool, SessionEnd> {
        let mut progressed = false;
        let (mut ready, mut pos) = (0usize, 0usize);
        let mut filtered = Vec::new();
        loop {
            if ready == 0 && pos > 0 {
                self.up_buf.advance(pos);
                pos = 0;
            }
            let pending = ready > 0 || !filtered.is_empty();
            if pos == self.up_buf.len() {
                break;
            }
            if let Some(f) = &mut self.up_frame {
                let n = usize::try_from(f.remaining)
                    .unwrap_or(usize::MAX)
                    .min(self.up_buf.len() - pos);
                mask::apply(&mut self.up_buf[pos..pos + n], f.key, f.offset);
                f.offset += n as u64;
                f.remaining -= n as u64;
                if f.remaining == 0 {
                    self.up_frame = None;
                    self.partial_frame_since = None;
                }
                match &mut self.filter {
                    None => {
                        if ready != pos {
                            self.up_buf.copy_within(pos..pos + n, ready);
                        }
                        ready += n;
                    }
                    Some(filter) => {
                        if let Err(e) = filter.filter(&self.up_buf[pos..pos + n], &mut filtered) {
                            tracing::debug!(error = %e, "browser sent a message the gateway cannot frame");
                            self.fail(close::POLICY_VIOLATION, "unexpected RFB message");
                            // What the filter let through before the bad message still goes.
                            self.up_out = Bytes::from(filtered);
                            return Ok(true);
                        }
                    }
                }
                pos += n;
                progressed = true;
                continue;
            }
            let (header, header_len) = match frame::parse_client_header(&self.up_buf[pos..]) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) if pending => break,
                Err(e) => {
                    tracing::debug!(error = %e, "malformed frame from browser");
                    self.fail(e.close_code(), "malformed frame");
                    return Ok(true);
                }
            };
            if header.opcode.is_control() {
                if pending {
                    break;
                }
                // Nothing pending, so `pos` is 0: the frame starts the buffer.
                let total = header_len + header.payload_len as usize;
                if self.up_buf.len() < total {
                    break;
                }
                self.last_client_frame = Instant::now();
                self.up_buf.advance(header_len);
                self.partial_frame_since = None;
                let mut payload = self.up_buf.split_to(header.payload_len as usize);
                mask::apply(&mut payload, header.mask.unwrap_or_default(), 0);
                self.on_control(header.opcode, payload.freeze());
                progressed = true;
                continue;
            }
            if let Err((code, reason)) = self.check_data_header(&header) {
                if !pending {
                    self.fail(code, reason);
                    return Ok(true);
                }
                break;
            }
            self.last_client_frame = Instant::now();
            self.accept_data_header(&header);
            pos += header_len;
            progressed = true;
            if header.payload_len > 0 {
                self.up_frame = Some(InFrame {
                    remaining: header.payload_len,
                    key: header.mask.unwrap_or_default(),
                    offset: 0,
                });
            } else {
                self.partial_frame_since = None;
            }
        }
        if self.filter.is_some() {
            if !filtered.is_empty() {
                self.up_out = Bytes::from(filtered);
            }
        } else if ready > 0 {
            self.up_out = self.up_buf.split_to(ready).freeze();
            self.up_buf.advance(pos - ready);
        }
        Ok(progressed)
    }

    /// Checks message sequencing and size limits of a data frame, changing nothing, so
    /// that a frame refused behind pending output is refused the same way next round.
    fn check_data_header(&self, h: &FrameHeader) -> Result<(), (u16, &'static str)> {
        let problem = match h.opcode {
            Opcode::Text => Some((
                close::UNSUPPORTED_DATA,
                "text frames are not supported; send binary",
            )),
            Opcode::Binary if self.in_message => {
                Some((close::PROTOCOL_ERROR, "new message inside a fragmented one"))
            }
            Opcode::Continuation if !self.in_message => {
                Some((close::PROTOCOL_ERROR, "continuation without a message"))
            }
            _ if h.payload_len > self.limits.max_frame => {
                Some((close::MESSAGE_TOO_BIG, "frame too big"))
            }
            _ => None,
        };
        if let Some(p) = problem {
            return Err(p);
        }
        let before = if h.opcode == Opcode::Binary {
            0
        } else {
            self.message_len
        };
        if before + h.payload_len > self.limits.max_message {
            return Err((close::MESSAGE_TOO_BIG, "message too big"));
        }
        Ok(())
    }

    /// Records a checked data frame in the message it belongs to.
    fn accept_data_header(&mut self, h: &FrameHeader) {
        if h.opcode == Opcode::Binary {
            self.message_len = 0;
        }
        self.message_len += h.payload_len;
        self.in_message = !h.fin;
    }

    fn on_control(&mut self, opcode: Opcode, payload: Bytes) {
        match opcode {
            Opcode::Ping if !self.ctrl.close_sent => self.ctrl.pong = Some(payload),
            Opcode::Close => match close::parse(&payload) {
                PeerClose::Valid(code) => {
                    // Echo the browser's code, as RFC 6455 §5.5.1 suggests.
                    let code = code.unwrap_or(close::NORMAL);
                    if !self.ctrl.close_sent && self.ctrl.close.is_none() {
                        self.ctrl.close = Some((code, ""));
                    }
                    self.up_buf.clear();
                    self.up_frame = None;
                    self.up_state = UpState::Draining;
                }
                PeerClose::Invalid => self.fail(close::PROTOCOL_ERROR, "invalid close frame"),
            },
            _ => {}
        }
    }

    /// The target stopped taking input: tell the browser, stop reading it.
    fn target_write_failed(&mut self) {
        self.close(
            close::INTERNAL_ERROR,
            "target connection failed",
            SessionEnd::TargetIo,
        );
        self.up_buf = BytesMut::new();
        self.up_frame = None;
        self.up_out = Bytes::new();
        self.target_needs_flush = false;
        self.up_state = UpState::Done;
    }

    /// A protocol violation by the browser: stop reading it and close.
    pub(super) fn fail(&mut self, code: u16, reason: &'static str) {
        self.close(code, reason, SessionEnd::ClientProtocol);
        self.up_buf = BytesMut::new();
        self.up_frame = None;
        self.partial_frame_since = None;
        self.up_out = Bytes::new();
        self.up_state = UpState::Draining;
    }
}

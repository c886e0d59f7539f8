//! Filtering of browser→server RFB messages: view-only viewers lose their input
//! (keys, pointer, clipboard, desktop size, power control), and clipboard pastes are
//! capped or disabled. Works on a stream of bytes cut anywhere; drops whole messages,
//! streaming their bodies without buffering them.

use bytes::BytesMut;
use darts_vnc::client_msg::{self, Kind};
use darts_vnc::RfbError;

/// Bytes needed at most to know a client message's length.
const MAX_HEADER: usize = 12;

/// Per-viewer filter. The default keeps everything (it still checks the framing).
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    view_only: bool,
    /// Largest clipboard text forwarded; `Some(0)` disables the clipboard.
    max_clipboard: Option<u32>,
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Bytes left in the current message, and whether they are forwarded.
    current: Option<(u64, bool)>,
    dropped: u64,
}

impl ClientFilter {
    pub fn new(view_only: bool, max_clipboard: Option<u32>) -> Self {
        Self {
            view_only,
            max_clipboard,
            ..Self::default()
        }
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Appends the bytes of `input` that may reach the server to `out`.
    pub fn filter(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), RfbError> {
        while !input.is_empty() {
            if let Some((remaining, keep)) = &mut self.current {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                if *keep {
                    out.extend_from_slice(&input[..n]);
                }
                *remaining -= n as u64;
                input = &input[n..];
                if *remaining == 0 {
                    self.current = None;
                }
                continue;
            }
            self.header[self.header_len] = input[0];
            self.header_len += 1;
            input = &input[1..];
            let Some(frame) = client_msg::frame(&self.header[..self.header_len])? else {
                if self.header_len == MAX_HEADER {
                    return Err(RfbError::Malformed("client message header"));
                }
                continue;
            };
            let keep = self.allows(frame.kind, frame.len);
            if keep {
                out.extend_from_slice(&self.header[..self.header_len]);
            } else {
                self.dropped += 1;
            }
            let remaining = frame.len - self.header_len as u64;
            self.header_len = 0;
            if remaining > 0 {
                self.current = Some((remaining, keep));
            }
        }
        Ok(())
    }

    fn allows(&self, kind: Kind, len: u64) -> bool {
        if self.view_only && kind.is_input() {
            return false;
        }
        match (kind, self.max_clipboard) {
            (Kind::CutText, Some(max)) => len.saturating_sub(8) <= u64::from(max) && max > 0,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(down: u8) -> Vec<u8> {
        vec![4, down, 0, 0, 0, 0, 0, 0x61]
    }
    fn pointer() -> Vec<u8> {
        vec![5, 1, 0, 10, 0, 20]
    }
    fn update_request() -> Vec<u8> {
        vec![3, 1, 0, 0, 0, 0, 2, 208, 1, 144]
    }
    fn cut(text: &[u8]) -> Vec<u8> {
        let mut v = vec![6, 0, 0, 0];
        v.extend_from_slice(&(text.len() as u32).to_be_bytes());
        v.extend_from_slice(text);
        v
    }

    fn run(filter: &mut ClientFilter, stream: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        for c in stream.chunks(chunk) {
            filter.filter(c, &mut out).unwrap();
        }
        out.to_vec()
    }

    #[test]
    fn view_only_keeps_screen_requests_and_drops_input_at_any_cut() {
        let stream = [
            key(1),
            update_request(),
            pointer(),
            cut(b"secret paste"),
            update_request(),
            key(0),
        ]
        .concat();
        for chunk in [1, 2, 3, 5, 7, 64] {
            let mut f = ClientFilter::new(true, None);
            assert_eq!(
                run(&mut f, &stream, chunk),
                [update_request(), update_request()].concat(),
                "chunk {chunk}"
            );
            assert_eq!(f.dropped(), 4);
        }
    }

    #[test]
    fn full_control_forwards_everything_unchanged() {
        let stream = [key(1), pointer(), cut(b"hello"), update_request()].concat();
        let mut f = ClientFilter::new(false, None);
        assert_eq!(run(&mut f, &stream, 3), stream);
    }

    #[test]
    fn clipboard_cap_and_disable() {
        let stream = [cut(b"short"), cut(&[b'x'; 100]), key(1)].concat();
        let mut f = ClientFilter::new(false, Some(10));
        assert_eq!(run(&mut f, &stream, 4), [cut(b"short"), key(1)].concat());
        let mut f = ClientFilter::new(false, Some(0));
        assert_eq!(run(&mut f, &stream, 4), key(1));
    }

    #[test]
    fn unknown_messages_are_errors() {
        let mut f = ClientFilter::new(true, None);
        assert!(f.filter(&[42], &mut BytesMut::new()).is_err());
    }
}

//! Follows the server-to-client RFB stream of a viewer that asked for Raw rectangles and
//! DesktopSize (what the soak's viewers ask for): counts framebuffer updates and skips
//! pixel data without keeping it. Sans-IO: fed bytes as they arrive, split anywhere.

/// Largest cut text accepted (QEMU sends the guest's clipboard).
const MAX_CUT_TEXT: u64 = 16 << 20;
/// DesktopSize pseudo-encoding.
const DESKTOP_SIZE: i32 = -223;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// Padding and the rectangle count of a FramebufferUpdate.
    Update,
    /// x, y, w, h, encoding.
    Rect,
    /// Padding, first colour, colour count of SetColourMapEntries.
    ColourMap,
    /// Padding and length of ServerCutText.
    CutText,
}

impl Header {
    fn len(self) -> usize {
        match self {
            Self::Update => 3,
            Self::Rect => 12,
            Self::ColourMap => 5,
            Self::CutText => 7,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a message type.
    Type,
    /// Collecting a fixed-size header.
    Header(Header),
    /// Skipping bytes; then the next rectangle (`true`) or message.
    Skip { left: u64, then_rect: bool },
}

/// The follower. Errors are strings: the stream cannot be followed any further.
#[derive(Debug)]
pub struct Screen {
    bytes_per_pixel: u64,
    pub width: u16,
    pub height: u16,
    state: State,
    head: Vec<u8>,
    rects_left: u16,
    /// Complete FramebufferUpdates so far.
    pub updates: u64,
}

impl Screen {
    pub fn new(width: u16, height: u16, bytes_per_pixel: u8) -> Self {
        Self {
            bytes_per_pixel: u64::from(bytes_per_pixel.max(1)),
            width,
            height,
            state: State::Type,
            head: Vec::with_capacity(12),
            rects_left: 0,
            updates: 0,
        }
    }

    /// Consumes `bytes`.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            match self.state {
                State::Type => {
                    let t = bytes[0];
                    bytes = &bytes[1..];
                    self.state = match t {
                        0 => State::Header(Header::Update),
                        1 => State::Header(Header::ColourMap),
                        2 => State::Type, // Bell
                        3 => State::Header(Header::CutText),
                        other => return Err(format!("unexpected server message type {other}")),
                    };
                }
                State::Header(h) => {
                    let want = h.len() - self.head.len();
                    let n = want.min(bytes.len());
                    self.head.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.head.len() == h.len() {
                        self.header_done(h)?;
                        self.head.clear();
                    }
                }
                State::Skip { left, then_rect } => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    if n == left {
                        self.after_skip(then_rect);
                    } else {
                        self.state = State::Skip {
                            left: left - n,
                            then_rect,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn header_done(&mut self, h: Header) -> Result<(), String> {
        let b = &self.head;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        match h {
            Header::Update => {
                self.rects_left = u16_at(1);
                self.state = if self.rects_left == 0 {
                    self.updates += 1;
                    State::Type
                } else {
                    State::Header(Header::Rect)
                };
            }
            Header::Rect => {
                let (w, h) = (u16_at(4), u16_at(6));
                match u32_at(8) as i32 {
                    0 => {
                        let left = u64::from(w) * u64::from(h) * self.bytes_per_pixel;
                        self.skip(left, true);
                    }
                    DESKTOP_SIZE => {
                        (self.width, self.height) = (w, h);
                        self.after_skip(true);
                    }
                    other => return Err(format!("unexpected rectangle encoding {other}")),
                }
            }
            Header::ColourMap => self.skip(u64::from(u16_at(3)) * 6, false),
            Header::CutText => {
                let len = u64::from(u32_at(3));
                if len > MAX_CUT_TEXT {
                    return Err(format!("cut text of {len} bytes"));
                }
                self.skip(len, false);
            }
        }
        Ok(())
    }

    fn skip(&mut self, left: u64, then_rect: bool) {
        if left == 0 {
            self.after_skip(then_rect);
        } else {
            self.state = State::Skip { left, then_rect };
        }
    }

    fn after_skip(&mut self, rect: bool) {
        if !rect {
            self.state = State::Type;
            return;
        }
        self.rects_left = self.rects_left.saturating_sub(1);
        self.state = if self.rects_left == 0 {
            self.updates += 1;
            State::Type
        } else {
            State::Header(Header::Rect)
        };
    }
}

/// FramebufferUpdateRequest for the whole screen.
pub fn update_request(incremental: bool, width: u16, height: u16) -> Vec<u8> {
    let mut m = vec![3u8, u8::from(incremental), 0, 0, 0, 0];
    m.extend_from_slice(&width.to_be_bytes());
    m.extend_from_slice(&height.to_be_bytes());
    m
}

/// SetPixelFormat 32 bpp true colour, then SetEncodings [Raw, DesktopSize].
pub fn setup_messages() -> Vec<u8> {
    let mut m = vec![0u8, 0, 0, 0];
    m.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    m.extend_from_slice(&[2, 0, 0, 2]);
    m.extend_from_slice(&0i32.to_be_bytes());
    m.extend_from_slice(&DESKTOP_SIZE.to_be_bytes());
    m
}

/// PointerEvent at (x, y), no button.
pub fn pointer(x: u16, y: u16) -> Vec<u8> {
    let mut m = vec![5u8, 0];
    m.extend_from_slice(&x.to_be_bytes());
    m.extend_from_slice(&y.to_be_bytes());
    m
}

/// KeyEvent down and up for `keysym` (the soak presses Shift, which types nothing).
pub fn key_press(keysym: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(16);
    for down in [1u8, 0] {
        m.extend_from_slice(&[4, down, 0, 0]);
        m.extend_from_slice(&keysym.to_be_bytes());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: u16, y: u16, w: u16, h: u16, enc: i32) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [x, y, w, h] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r.extend_from_slice(&enc.to_be_bytes());
        r
    }

    /// An update with a DesktopSize and a 3×2 raw rectangle, a bell, a cut text, a
    /// colour map and an empty update.
    fn stream() -> Vec<u8> {
        let mut s = vec![0u8, 0, 0, 2];
        s.extend(rect(0, 0, 800, 600, DESKTOP_SIZE));
        s.extend(rect(1, 1, 3, 2, 0));
        s.extend(std::iter::repeat_n(7u8, 3 * 2 * 4));
        s.push(2);
        s.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 5]);
        s.extend_from_slice(b"hello");
        s.extend_from_slice(&[1, 0, 0, 0, 0, 2]);
        s.extend_from_slice(&[0; 12]);
        s.extend_from_slice(&[0, 0, 0, 0]);
        s
    }

    #[test]
    fn follows_messages_split_anywhere() {
        let s = stream();
        for step in [1, 2, 5, 13, s.len()] {
            let mut screen = Screen::new(640, 480, 4);
            for piece in s.chunks(step) {
                screen.feed(piece).unwrap();
            }
            assert_eq!(screen.updates, 2, "step {step}");
            assert_eq!((screen.width, screen.height), (800, 600));
            assert_eq!(screen.state, State::Type);
        }
    }

    #[test]
    fn an_update_is_counted_only_once_complete() {
        let s = stream();
        let mut screen = Screen::new(640, 480, 4);
        // Everything but the last pixel byte of the first update.
        let first_end = 4 + 12 + 12 + 24;
        screen.feed(&s[..first_end - 1]).unwrap();
        assert_eq!(screen.updates, 0);
        screen.feed(&s[first_end - 1..first_end]).unwrap();
        assert_eq!(screen.updates, 1);
    }

    #[test]
    fn unknown_messages_and_encodings_are_errors() {
        assert!(Screen::new(1, 1, 4).feed(&[9]).is_err());
        let mut s = vec![0u8, 0, 0, 1];
        s.extend(rect(0, 0, 1, 1, 16));
        assert!(Screen::new(1, 1, 4).feed(&s).is_err());
        assert!(Screen::new(1, 1, 4)
            .feed(&[3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
            .is_err());
    }

    #[test]
    fn client_messages_have_their_wire_sizes() {
        assert_eq!(
            update_request(true, 640, 480),
            [3, 1, 0, 0, 0, 0, 2, 128, 1, 224]
        );
        assert_eq!(setup_messages().len(), 20 + 4 + 8);
        assert_eq!(pointer(1, 2), [5, 0, 0, 1, 0, 2]);
        assert_eq!(key_press(0xffe1).len(), 16);
    }
}

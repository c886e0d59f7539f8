//! A reference model of how QEMU's VNC server reads client messages (`ui/vnc.c`,
//! `protocol_client_msg`): it asks for one byte, then for the length the bytes so far
//! announce, and acts once it has them. Written apart from `client_msg` on purpose, in
//! QEMU's own shape, so tests and fuzzing can check the gateway's framing against the
//! server's instead of against itself.
//!
//! Only for tests and fuzzing (feature `reference`).

/// What QEMU did with a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Took a new pixel format.
    SetPixelFormat,
    /// Took the client's encodings, in the client's order.
    SetEncodings(Vec<i32>),
    /// Scheduled a framebuffer update.
    UpdateRequest,
    /// Pressed or released a key in the guest.
    Key {
        /// Pressed (true) or released.
        down: bool,
        /// The X keysym.
        sym: u32,
    },
    /// Moved the guest's pointer or changed its buttons.
    Pointer,
    /// Gave the guest a clipboard paste of this many bytes.
    CutText(usize),
    /// Took an extended-clipboard message (only once the client announced it).
    ExtendedCutText,
    /// Ran a power-control request (only once the client announced xvp).
    Xvp,
    /// Pressed or released a key given by scan code (ExtendedKeyEvent).
    QemuKey,
    /// Acted on an audio control message.
    QemuAudio,
    /// Handled a desktop resize request.
    SetDesktopSize,
    /// QEMU dropped the client here (unknown message, bad length, disabled feature).
    Disconnect(&'static str),
}

impl Action {
    /// Input that a view-only viewer must never get to QEMU.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Self::Key { .. }
                | Self::Pointer
                | Self::CutText(_)
                | Self::ExtendedCutText
                | Self::Xvp
                | Self::QemuKey
                | Self::SetDesktopSize
        )
    }
}

/// QEMU's view of one client connection after ClientInit.
#[derive(Debug, Default, Clone)]
pub struct QemuReader {
    pending: Vec<u8>,
    want: usize,
    extended_clipboard: bool,
    xvp: bool,
    disconnected: bool,
}

const ENCODING_CLIPBOARD_EXT: i32 = 0xC0A1_E5CE_u32 as i32;
const ENCODING_XVP: i32 = -309;

impl QemuReader {
    /// A reader at the start of the client's messages, waiting for a type byte.
    pub fn new() -> Self {
        Self {
            want: 1,
            ..Self::default()
        }
    }

    /// Whether a SetEncodings announced the extended clipboard (QEMU then makes the
    /// client a clipboard peer and may send it the guest's clipboard).
    pub fn clipboard_peer(&self) -> bool {
        self.extended_clipboard
    }

    /// Whether QEMU has dropped the client; later bytes are ignored, as by QEMU.
    pub fn disconnected(&self) -> bool {
        self.disconnected
    }

    /// Feeds bytes as QEMU receives them; returns what it did, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        self.feed_framed(bytes)
            .into_iter()
            .map(|(a, _)| a)
            .collect()
    }

    /// Like `feed`, with the number of bytes QEMU took for each message.
    pub fn feed_framed(&mut self, bytes: &[u8]) -> Vec<(Action, usize)> {
        let mut actions = Vec::new();
        for &b in bytes {
            if self.disconnected {
                break;
            }
            self.pending.push(b);
            if self.pending.len() < self.want {
                continue;
            }
            match self.message() {
                Step::Need(n) => self.want = n,
                Step::Done(action) => {
                    if let Action::Disconnect(_) = action {
                        self.disconnected = true;
                    }
                    actions.push((action, self.pending.len()));
                    self.pending.clear();
                    self.want = 1;
                }
            }
        }
        actions
    }

    fn message(&mut self) -> Step {
        let data = &self.pending;
        let len = data.len();
        let u16_at = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
        let u32_at =
            |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        match data[0] {
            0 => match len {
                1 => Step::Need(20),
                _ => Step::Done(Action::SetPixelFormat),
            },
            2 => {
                if len == 1 {
                    return Step::Need(4);
                }
                let limit = usize::from(u16_at(2));
                if len == 4 && limit > 0 {
                    return Step::Need(4 + limit * 4);
                }
                let encodings: Vec<i32> = (0..limit).map(|i| u32_at(4 + 4 * i) as i32).collect();
                self.extended_clipboard = encodings.contains(&ENCODING_CLIPBOARD_EXT);
                self.xvp = encodings.contains(&ENCODING_XVP);
                Step::Done(Action::SetEncodings(encodings))
            }
            3 => match len {
                1 => Step::Need(10),
                _ => Step::Done(Action::UpdateRequest),
            },
            4 => match len {
                1 => Step::Need(8),
                _ => Step::Done(Action::Key {
                    down: data[1] != 0,
                    sym: u32_at(4),
                }),
            },
            5 => match len {
                1 => Step::Need(6),
                _ => Step::Done(Action::Pointer),
            },
            6 => {
                if len == 1 {
                    return Step::Need(8);
                }
                let signed = u32_at(4) as i32;
                let dlen = signed.unsigned_abs() as usize;
                if len == 8 {
                    if dlen > 1 << 20 {
                        return Step::Done(Action::Disconnect("cut text over 1 MiB"));
                    }
                    if dlen > 0 {
                        return Step::Need(8 + dlen);
                    }
                }
                if signed < 0 {
                    if !self.extended_clipboard {
                        return Step::Done(Action::Disconnect("extended clipboard while disabled"));
                    }
                    if dlen < 4 {
                        return Step::Done(Action::Disconnect("extended clipboard header"));
                    }
                    return Step::Done(Action::ExtendedCutText);
                }
                Step::Done(Action::CutText(dlen))
            }
            250 => {
                if !self.xvp {
                    return Step::Done(Action::Disconnect("xvp while disabled"));
                }
                match len {
                    1 => Step::Need(4),
                    _ => Step::Done(Action::Xvp),
                }
            }
            255 => {
                if len == 1 {
                    return Step::Need(2);
                }
                match data[1] {
                    0 => match len {
                        2 => Step::Need(12),
                        _ => Step::Done(Action::QemuKey),
                    },
                    1 => {
                        if len == 2 {
                            return Step::Need(4);
                        }
                        match u16_at(2) {
                            0 | 1 => Step::Done(Action::QemuAudio),
                            2 if len == 4 => Step::Need(10),
                            2 if data[4] > 5 => Step::Done(Action::Disconnect("audio format")),
                            2 => Step::Done(Action::QemuAudio),
                            _ => Step::Done(Action::Disconnect("audio message")),
                        }
                    }
                    _ => Step::Done(Action::Disconnect("QEMU message")),
                }
            }
            251 => {
                if len < 8 {
                    return Step::Need(8);
                }
                let size = 8 + usize::from(data[6]) * 16;
                if len < size {
                    return Step::Need(size);
                }
                Step::Done(Action::SetDesktopSize)
            }
            _ => Step::Done(Action::Disconnect("unknown message")),
        }
    }
}

enum Step {
    Need(usize),
    Done(Action),
}

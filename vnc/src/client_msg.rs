//! Framing of client→server messages (RFC 6143 §7.5 and common extensions), enough to
//! forward, drop or count them without buffering: `frame` tells the type and total
//! length of the next message from its first bytes only. Payload bytes (a clipboard
//! paste) can then be streamed or skipped.
//!
//! | type | message                  | length                         |
//! |------|--------------------------|--------------------------------|
//! | 0    | SetPixelFormat           | 20                             |
//! | 2    | SetEncodings             | 4 + 4 × u16 count              |
//! | 3    | FramebufferUpdateRequest | 10                             |
//! | 4    | KeyEvent                 | 8                              |
//! | 5    | PointerEvent             | 6                              |
//! | 6    | ClientCutText            | 8 + \|s32 length\| (negative: extended clipboard) |
//! | 150  | EnableContinuousUpdates  | 10                             |
//! | 248  | ClientFence              | 9 + u8 length                  |
//! | 250  | xvp                      | 4                              |
//! | 251  | SetDesktopSize           | 8 + 16 × u8 count              |
//! | 253  | gii                      | 4 + u16 length                 |
//! | 255  | QEMU: 0 ExtendedKeyEvent | 12                             |
//! |      | QEMU: 1 audio            | 4 (enable/disable), 10 (set format) |

use crate::error::RfbError;

/// What a client message does, as far as a gateway cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Type 0: the pixel format the client wants updates in.
    SetPixelFormat,
    /// Type 2: the encodings the client accepts, which a gateway may rewrite.
    SetEncodings,
    /// Type 3: FramebufferUpdateRequest, asks for (part of) the screen.
    UpdateRequest,
    /// Type 4: a key press or release.
    Key,
    /// Type 5: pointer position and buttons.
    Pointer,
    /// Type 6: ClientCutText, a clipboard paste of any length.
    CutText,
    /// Type 150: EnableContinuousUpdates.
    ContinuousUpdates,
    /// Type 248: ClientFence, for synchronising with the server.
    Fence,
    /// Type 250: xvp, power control (shutdown, reboot, reset).
    Xvp,
    /// Type 251: SetDesktopSize, asks the server to resize the screen.
    SetDesktopSize,
    /// Type 253: gii, General Input Interface (extra input devices).
    Gii,
    /// Type 255, sub-type 0: QEMU's ExtendedKeyEvent, a key with its scan code.
    QemuKey,
    /// Type 255, sub-type 1: QEMU's audio control.
    QemuAudio,
}

impl Kind {
    /// Input a view-only viewer may not send: keys, pointer, clipboard, desktop size,
    /// power control (xvp) and input devices.
    pub fn is_input(self) -> bool {
        matches!(
            self,
            Self::Key
                | Self::Pointer
                | Self::CutText
                | Self::QemuKey
                | Self::SetDesktopSize
                | Self::Xvp
                | Self::Gii
        )
    }
}

/// The next message: its kind and total length including the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// What the message is.
    pub kind: Kind,
    /// Its total length in bytes, type byte and payload included.
    pub len: u64,
}

/// Identifies the message at the start of `buf` from as few bytes as needed.
/// `Ok(None)`: not enough bytes yet to know its length.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, RfbError> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    let need = |n: usize| buf.len() >= n;
    let u16_at = |i: usize| u64::from(u16::from_be_bytes([buf[i], buf[i + 1]]));
    let fixed = |kind, len| Ok(Some(Frame { kind, len }));
    match t {
        0 => fixed(Kind::SetPixelFormat, 20),
        2 if need(4) => fixed(Kind::SetEncodings, 4 + 4 * u16_at(2)),
        3 => fixed(Kind::UpdateRequest, 10),
        4 => fixed(Kind::Key, 8),
        5 => fixed(Kind::Pointer, 6),
        6 if need(8) => {
            let len = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            fixed(Kind::CutText, 8 + u64::from(len.unsigned_abs()))
        }
        150 => fixed(Kind::ContinuousUpdates, 10),
        248 if need(9) => fixed(Kind::Fence, 9 + u64::from(buf[8])),
        250 => fixed(Kind::Xvp, 4),
        251 if need(7) => fixed(Kind::SetDesktopSize, 8 + 16 * u64::from(buf[6])),
        253 if need(4) => fixed(Kind::Gii, 4 + u16_at(2)),
        255 if need(2) => match buf[1] {
            0 => fixed(Kind::QemuKey, 12),
            1 if need(4) => match u16_at(2) {
                0 | 1 => fixed(Kind::QemuAudio, 4),
                2 => fixed(Kind::QemuAudio, 10),
                _ => Err(RfbError::Malformed("QEMU audio operation")),
            },
            1 => Ok(None),
            _ => Err(RfbError::Malformed("QEMU client message sub-type")),
        },
        2 | 6 | 248 | 251 | 253 | 255 => Ok(None),
        other => Err(RfbError::UnknownMessage(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_every_message() {
        let key = [4, 1, 0, 0, 0, 0, 0, 0x61];
        assert_eq!(
            frame(&key),
            Ok(Some(Frame {
                kind: Kind::Key,
                len: 8
            }))
        );
        assert_eq!(
            frame(&[2, 0, 0, 3]),
            Ok(Some(Frame {
                kind: Kind::SetEncodings,
                len: 16
            }))
        );
        assert_eq!(
            frame(&[6, 0, 0, 0, 0, 0, 0, 5]),
            Ok(Some(Frame {
                kind: Kind::CutText,
                len: 13
            }))
        );
        let extended = (-10i32).to_be_bytes();
        assert_eq!(
            frame(&[
                6,
                0,
                0,
                0,
                extended[0],
                extended[1],
                extended[2],
                extended[3]
            ])
            .unwrap()
            .unwrap()
            .len,
            18
        );
        assert_eq!(
            frame(&[255, 0]).unwrap().unwrap(),
            Frame {
                kind: Kind::QemuKey,
                len: 12
            }
        );
        assert_eq!(frame(&[255, 1, 0, 2]).unwrap().unwrap().len, 10);
        assert_eq!(frame(&[251, 0, 0, 0, 0, 0, 2]).unwrap().unwrap().len, 40);
        assert_eq!(
            frame(&[248, 0, 0, 0, 0, 0, 0, 0, 4]).unwrap().unwrap().len,
            13
        );
    }

    #[test]
    fn partial_headers_ask_for_more_and_unknown_types_are_errors() {
        for partial in [
            &[2u8][..],
            &[6, 0, 0],
            &[255],
            &[255, 1, 0],
            &[253, 0, 0],
            &[],
            &[248, 0],
        ] {
            assert_eq!(frame(partial), Ok(None), "{partial:?}");
        }
        assert_eq!(frame(&[7]), Err(RfbError::UnknownMessage(7)));
        assert!(frame(&[255, 9]).is_err());
        assert!(frame(&[255, 1, 0, 7]).is_err());
    }

    #[test]
    fn input_kinds() {
        assert!(
            Kind::Key.is_input()
                && Kind::Pointer.is_input()
                && Kind::CutText.is_input()
                && Kind::QemuKey.is_input()
        );
        assert!(
            !Kind::UpdateRequest.is_input()
                && !Kind::SetEncodings.is_input()
                && !Kind::SetPixelFormat.is_input()
        );
    }
}

use proptest::prelude::*;

use super::*;
use crate::qemu_reader::QemuReader;

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
fn encodings(list: &[i32]) -> Vec<u8> {
    let mut v = vec![2, 0];
    v.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for e in list {
        v.extend_from_slice(&e.to_be_bytes());
    }
    v
}

fn view_only() -> ClientFilter {
    ClientFilter::new(Policy {
        view_only: true,
        ..Policy::default()
    })
}

fn run(filter: &mut ClientFilter, stream: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in stream.chunks(chunk) {
        filter.filter(c, &mut out).unwrap();
    }
    out
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
        let mut f = view_only();
        assert_eq!(
            run(&mut f, &stream, chunk),
            [update_request(), update_request()].concat(),
            "chunk {chunk}"
        );
        assert_eq!(f.dropped(), 4);
        assert!(f.at_boundary());
    }
}

#[test]
fn full_control_forwards_everything_unchanged() {
    let stream = [
        key(1),
        pointer(),
        cut(b"hello"),
        encodings(&[7, 0, EXTENDED_CLIPBOARD]),
        update_request(),
    ]
    .concat();
    let mut f = ClientFilter::new(Policy::default());
    assert_eq!(run(&mut f, &stream, 3), stream);
}

#[test]
fn clipboard_cap_and_disable() {
    let stream = [cut(b"short"), cut(&[b'x'; 100]), key(1)].concat();
    let mut f = ClientFilter::new(Policy {
        max_clipboard: Some(10),
        ..Policy::default()
    });
    assert_eq!(run(&mut f, &stream, 4), [cut(b"short"), key(1)].concat());
    let mut f = ClientFilter::new(Policy {
        max_clipboard: Some(0),
        ..Policy::default()
    });
    assert_eq!(run(&mut f, &stream, 4), key(1));
}

#[test]
fn viewers_without_the_clipboard_never_announce_the_extended_clipboard() {
    let stream = [
        encodings(&[7, EXTENDED_CLIPBOARD, 0, -239]),
        update_request(),
    ]
    .concat();
    for policy in [
        Policy {
            view_only: true,
            ..Policy::default()
        },
        Policy {
            max_clipboard: Some(0),
            ..Policy::default()
        },
    ] {
        for chunk in [1, 3, 64] {
            let out = run(&mut ClientFilter::new(policy), &stream, chunk);
            assert_eq!(out, [encodings(&[7, 0, -239]), update_request()].concat());
            let mut qemu = QemuReader::new();
            qemu.feed(&out);
            assert!(!qemu.clipboard_peer());
        }
    }
    // The owner may let view-only viewers follow the guest's clipboard.
    let allowed = Policy {
        view_only: true,
        view_only_clipboard: true,
        ..Policy::default()
    };
    assert_eq!(run(&mut ClientFilter::new(allowed), &stream, 5), stream);
    // An empty list is rewritten as what it is.
    assert_eq!(run(&mut view_only(), &encodings(&[]), 1), encodings(&[]));
}

#[test]
fn oversized_encoding_lists_are_refused_only_when_they_must_be_held() {
    let long: Vec<i32> = (0..2000).collect();
    let mut out = Vec::new();
    assert!(view_only().filter(&encodings(&long), &mut out).is_err());
    let mut full = ClientFilter::new(Policy::default());
    out.clear();
    full.filter(&encodings(&long), &mut out).unwrap();
    assert_eq!(out.len(), 4 + 4 * 2000);
}

#[test]
fn unknown_messages_are_errors() {
    let mut f = view_only();
    assert!(f.filter(&[42], &mut Vec::new()).is_err());
}

/// The smuggling that one filter per connection closes: a FramebufferUpdateRequest cut
/// after 4 bytes, then "SetPixelFormat" messages that QEMU would read as the rest of the
/// request followed by key events.
#[test]
fn a_message_cut_anywhere_stays_one_message() {
    let mut smuggle = update_request()[..4].to_vec();
    for _ in 0..3 {
        // QEMU, mid-request, reads 6 bytes as its end, then a KeyEvent of 8, then 6 more.
        let mut fake = vec![0u8; 20];
        fake[6..14].copy_from_slice(&[4, 1, 0, 0, 0, 0, 0, b'x']);
        smuggle.extend_from_slice(&fake);
    }
    let mut f = view_only();
    let out = run(&mut f, &smuggle, 4);
    let mut qemu = QemuReader::new();
    let actions = qemu.feed(&out);
    assert!(actions.iter().all(|a| !a.is_input()), "{actions:?}");
}

/// One browser message, generated whole.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let encs = prop::collection::vec(
        prop_oneof![
            Just(EXTENDED_CLIPBOARD),
            Just(0),
            Just(7),
            Just(-239),
            Just(-309),
            any::<i32>()
        ],
        0..12,
    );
    prop_oneof![
        any::<[u8; 19]>().prop_map(|b| [&[0u8][..], &b].concat()),
        encs.prop_map(|e| encodings(&e)),
        any::<[u8; 9]>().prop_map(|b| [&[3u8][..], &b].concat()),
        any::<[u8; 7]>().prop_map(|b| [&[4u8][..], &b].concat()),
        any::<[u8; 5]>().prop_map(|b| [&[5u8][..], &b].concat()),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|t| cut(&t)),
        any::<[u8; 10]>().prop_map(|b| [&[255u8, 0][..], &b].concat()),
        prop_oneof![Just(vec![255u8, 1, 0, 0]), Just(vec![255u8, 1, 0, 1])],
        (0u8..4, any::<[u8; 5]>()).prop_map(|(n, b)| {
            let mut v = vec![251, 0, 0, 0, 0, 0, n, 0];
            v.extend((0..usize::from(n) * 16).map(|i| b[i % 5]));
            v
        }),
        any::<[u8; 3]>().prop_map(|b| [&[250u8][..], &b].concat()),
        any::<[u8; 9]>().prop_map(|b| [&[150u8][..], &b].concat()),
        (0u8..6).prop_map(|n| {
            let mut v = vec![248, 0, 0, 0, 0, 0, 0, 0, n];
            v.extend(std::iter::repeat_n(7u8, usize::from(n)));
            v
        }),
    ]
}

/// Whether a generated message is input a view-only viewer may not send.
fn is_input(m: &[u8]) -> bool {
    matches!(m[0], 4 | 5 | 6 | 250 | 251) || (m[0] == 255 && m[1] == 0)
}

fn cuts(len: usize, points: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = points.iter().map(|p| p % (len + 1)).collect();
    c.push(len);
    c.sort_unstable();
    c.dedup();
    c
}

fn feed_cut(filter: &mut ClientFilter, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for &end in cuts {
        filter.filter(&stream[start..end], &mut out).unwrap();
        start = end;
    }
    out
}

proptest! {
    /// However the stream is cut, one filter forwards exactly what a filter given the
    /// whole stream at once forwards, and what QEMU then reads holds no input.
    #[test]
    fn cutting_never_changes_what_reaches_the_server(
        msgs in prop::collection::vec(message(), 0..24),
        points in prop::collection::vec(any::<usize>(), 0..16),
        clipboard in any::<bool>(),
    ) {
        let stream = msgs.concat();
        let policy = Policy { view_only: true, view_only_clipboard: clipboard, ..Policy::default() };
        let mut whole = Vec::new();
        ClientFilter::new(policy).filter(&stream, &mut whole).unwrap();
        let out = feed_cut(&mut ClientFilter::new(policy), &stream, &cuts(stream.len(), &points));
        prop_assert_eq!(&out, &whole);
        let mut qemu = QemuReader::new();
        let actions = qemu.feed(&out);
        prop_assert!(actions.iter().all(|a| !a.is_input()), "{:?}", actions);
        prop_assert!(clipboard || !qemu.clipboard_peer());
        // An oracle built from the messages themselves: every non-input message, in
        // order, SetEncodings without the extended clipboard unless it is allowed.
        let expected: Vec<u8> = msgs
            .iter()
            .filter(|m| !is_input(m))
            .flat_map(|m| match m[0] {
                2 if !clipboard => {
                    let list: Vec<i32> = m[4..]
                        .chunks_exact(4)
                        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .filter(|e| *e != EXTENDED_CLIPBOARD)
                        .collect();
                    encodings(&list)
                }
                _ => m.clone(),
            })
            .collect();
        prop_assert_eq!(out, expected);
    }

    /// A full-control viewer's stream reaches the server byte for byte.
    #[test]
    fn full_control_is_transparent(
        msgs in prop::collection::vec(message(), 0..24),
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let stream = msgs.concat();
        let out = feed_cut(&mut ClientFilter::new(Policy::default()), &stream, &cuts(stream.len(), &points));
        prop_assert_eq!(out, stream);
    }
}

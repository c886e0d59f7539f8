//! The RFB handshakes on peer bytes: `ClientHandshake` on what a VNC server (a guest's
//! QEMU, so untrusted) sends, `ServerHandshake` on what a browser sends, and
//! `server_init::parse`.
//!
//! Input: `flags, chunk size, bytes…`; flags bits 0-1 pick the client's transport
//! (plain, x509, anonymous TLS), bit 2 gives it a password, bit 3 makes the server
//! handshake a refusing one.
//!
//! * Fed in arbitrary chunks, each machine writes the same bytes and ends the same way
//!   as fed everything at once; it never claims more bytes than it was given.
//! * The client never completes without TLS when its transport requires TLS (no
//!   downgrade), and only ever picks a security type its transport allows.
//! * ServerInit prints back to the bytes it was parsed from (for UTF-8 names) and needs
//!   exactly the announced length.

#![no_main]

use darts_fuzz::input::Input;
use darts_vnc::client::{ClientConfig, ClientHandshake, Status as ClientStatus};
use darts_vnc::security::{vencrypt, Transport};
use darts_vnc::server::{ServerHandshake, Status as ServerStatus};
use darts_vnc::server_init::{self, MAX_NAME};
use darts_vnc::vnc_auth::Password;
use darts_vnc::RfbError;
use libfuzzer_sys::fuzz_target;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
struct Run<S> {
    result: Result<S, RfbError>,
    written: Vec<u8>,
    /// Bytes used; unknown after an error (`advance` reports none then).
    consumed: Option<usize>,
    /// Client only: TLS was started, and the security type chosen.
    tls: bool,
    chosen: Option<u32>,
}

/// Drives the client like the proxy does: buffer, advance, drop what was used; start
/// "TLS" when asked.
fn drive_client(config: &ClientConfig, bytes: &[u8], chunk: usize) -> Run<ClientStatus> {
    let mut hs = ClientHandshake::new(config.clone());
    let (mut buf, mut written, mut consumed, mut tls) = (Vec::new(), Vec::new(), 0, false);
    let mut chunks = bytes.chunks(chunk);
    let result = loop {
        let (used, status) = match hs.advance(&buf, &mut written) {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
        buf.drain(..used);
        consumed += used;
        match status {
            ClientStatus::StartTls => {
                assert!(!tls, "second StartTls");
                hs.tls_started().expect("tls_started after StartTls");
                tls = true;
            }
            ClientStatus::Done => {
                assert!(hs.chosen().is_some(), "done without a security type");
                assert_eq!(
                    hs.advance(&buf, &mut Vec::new()),
                    Ok((0, ClientStatus::Done))
                );
                break Ok(status);
            }
            ClientStatus::NeedMore => match chunks.next() {
                Some(c) => buf.extend_from_slice(c),
                None => break Ok(status),
            },
        }
    };
    Run {
        consumed: result.is_ok().then_some(consumed),
        result,
        written,
        tls,
        chosen: hs.chosen(),
    }
}

fn drive_server(refusing: bool, bytes: &[u8], chunk: usize) -> Run<ServerStatus> {
    let mut hs = if refusing {
        ServerHandshake::refusing("the VNC server is not running")
    } else {
        ServerHandshake::new()
    };
    let (mut buf, mut written, mut consumed) = (Vec::new(), hs.start().to_vec(), 0);
    let mut chunks = bytes.chunks(chunk);
    let result = loop {
        let (used, status) = match hs.advance(&buf, &mut written) {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
        buf.drain(..used);
        consumed += used;
        match (status, chunks.next()) {
            (ServerStatus::NeedMore, Some(c)) => buf.extend_from_slice(c),
            (status, _) => break Ok(status),
        }
    };
    Run {
        consumed: result.is_ok().then_some(consumed),
        result,
        written,
        tls: false,
        chosen: None,
    }
}

fn check_server_init(buf: &[u8]) {
    match server_init::parse(buf) {
        Ok(Some((init, n))) => {
            let name_len = u32::from_be_bytes(buf[20..24].try_into().expect("4 bytes"));
            assert_eq!(n, 24 + name_len as usize);
            assert!(n <= buf.len() && name_len <= MAX_NAME);
            if std::str::from_utf8(&buf[24..n]).is_ok() {
                assert_eq!(init.encode(), &buf[..n], "ServerInit does not print back");
            }
        }
        Ok(None) => {
            let short = buf.len() < 24
                || buf.len() < 24 + u32::from_be_bytes(buf[20..24].try_into().expect("4")) as usize;
            assert!(short, "complete ServerInit not parsed");
        }
        Err(e) => {
            assert!(matches!(e, RfbError::TooLong { .. }), "{e:?}");
            assert!(u32::from_be_bytes(buf[20..24].try_into().expect("4 bytes")) > MAX_NAME);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let chunk = 1 + usize::from(input.byte() % 32);
    let bytes = input.rest();

    let transport = [
        Transport::Plain,
        Transport::X509,
        Transport::AnonTls,
        Transport::Plain,
    ][usize::from(flags & 3)];
    let config = ClientConfig {
        transport,
        password: (flags & 4 != 0).then(|| Password::new("s3cret")),
    };
    let whole = drive_client(&config, bytes, bytes.len().max(1));
    let chunked = drive_client(&config, bytes, chunk);
    assert_eq!(whole, chunked, "client: chunking changed the run");
    if whole.result == Ok(ClientStatus::Done) {
        assert!(
            transport == Transport::Plain || whole.tls,
            "{transport:?} without TLS"
        );
    }
    if let Some(chosen) = whole.chosen {
        let allowed: &[u32] = match transport {
            Transport::Plain => &[1, 2],
            Transport::X509 => &[19, vencrypt::X509_NONE, vencrypt::X509_VNC],
            Transport::AnonTls => &[19, vencrypt::TLS_NONE, vencrypt::TLS_VNC],
        };
        assert!(allowed.contains(&chosen), "{transport:?} chose {chosen}");
    }

    let refusing = flags & 8 != 0;
    let whole = drive_server(refusing, bytes, bytes.len().max(1));
    let chunked = drive_server(refusing, bytes, chunk);
    assert_eq!(whole, chunked, "server: chunking changed the run");
    if refusing {
        assert_ne!(
            whole.result,
            Ok(ServerStatus::Done),
            "a refusing handshake completed"
        );
    }

    check_server_init(bytes);
});

use super::*;

fn config(transport: Transport, password: Option<&str>) -> ClientConfig {
    ClientConfig {
        transport,
        password: password.map(Password::new),
    }
}

/// Feeds `server` in chunks of `chunk` bytes, starting TLS whenever asked.
/// Returns what the client sent and how it ended.
fn drive(
    cfg: ClientConfig,
    server: &[u8],
    chunk: usize,
) -> (Vec<u8>, Result<Status, RfbError>, usize) {
    let mut hs = ClientHandshake::new(cfg);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut tls = 0;
    loop {
        match hs.advance(&buf, &mut out) {
            Err(e) => return (out, Err(e), tls),
            Ok((used, status)) => {
                buf.drain(..used);
                match status {
                    Status::Done => return (out, Ok(Status::Done), tls),
                    Status::StartTls => {
                        tls += 1;
                        hs.tls_started().unwrap();
                        continue;
                    }
                    Status::NeedMore if fed >= server.len() => {
                        return (out, Ok(Status::NeedMore), tls)
                    }
                    Status::NeedMore => {
                        let end = (fed + chunk).min(server.len());
                        buf.extend_from_slice(&server[fed..end]);
                        fed = end;
                    }
                }
            }
        }
    }
}

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn rfb_38_with_security_none() {
    let server = concat(&[b"RFB 003.008\n", &[1, 1], &be32(0)]);
    let (out, status, tls) = drive(config(Transport::Plain, None), &server, 1000);
    assert_eq!(status, Ok(Status::Done));
    assert_eq!(out, concat(&[b"RFB 003.008\n", &[1]]));
    assert_eq!(tls, 0);
}

#[test]
fn rfb_38_vnc_authentication() {
    let challenge = [0x5Au8; 16];
    let server = concat(&[b"RFB 003.008\n", &[1, 2], &challenge, &be32(0)]);
    let (out, status, _) = drive(config(Transport::Plain, Some("s3cret12")), &server, 1000);
    assert_eq!(status, Ok(Status::Done));
    let expected = vnc_auth::response(&challenge, &Password::new("s3cret12"));
    assert_eq!(out, concat(&[b"RFB 003.008\n", &[2], &expected]));
}

#[test]
fn wrong_password_reports_the_servers_reason() {
    let server = concat(&[
        b"RFB 003.008\n",
        &[1, 2],
        &[0u8; 16],
        &be32(1),
        &be32(21),
        b"Authentication failed",
    ]);
    let (_, status, _) = drive(config(Transport::Plain, Some("wrong")), &server, 3);
    assert_eq!(
        status,
        Err(RfbError::AuthFailed("Authentication failed".into()))
    );
}

#[test]
fn missing_password_is_a_clear_error() {
    let server = concat(&[b"RFB 003.008\n", &[1, 2], &[0u8; 16]]);
    let (_, status, _) = drive(config(Transport::Plain, None), &server, 1000);
    assert_eq!(status, Err(RfbError::PasswordMissing));
}

#[test]
fn x509_none_starts_tls_then_reads_the_result() {
    let server = concat(&[
        b"RFB 003.008\n",
        &[1, 19],
        &[0, 2],
        &[0],
        &[1],
        &be32(260),
        &[1],
        &be32(0),
    ]);
    let (out, status, tls) = drive(config(Transport::X509, None), &server, 1000);
    assert_eq!(status, Ok(Status::Done));
    assert_eq!(tls, 1);
    assert_eq!(out, concat(&[b"RFB 003.008\n", &[19], &[0, 2], &be32(260)]));
}

#[test]
fn x509_with_password_prefers_x509vnc_and_authenticates_inside_tls() {
    let challenge = [3u8; 16];
    let server = concat(&[
        b"RFB 003.008\n",
        &[1, 19],
        &[0, 2],
        &[0],
        &[2],
        &be32(260),
        &be32(261),
        &[1],
        &challenge,
        &be32(0),
    ]);
    let (out, status, tls) = drive(config(Transport::X509, Some("pw")), &server, 1000);
    assert_eq!(status, Ok(Status::Done));
    assert_eq!(tls, 1);
    let resp = vnc_auth::response(&challenge, &Password::new("pw"));
    assert_eq!(
        out,
        concat(&[b"RFB 003.008\n", &[19], &[0, 2], &be32(261), &resp])
    );
}

#[test]
fn never_downgrades_from_tls() {
    let server = concat(&[b"RFB 003.008\n", &[2, 1, 2]]);
    let (_, status, _) = drive(config(Transport::X509, Some("pw")), &server, 1000);
    assert_eq!(
        status,
        Err(RfbError::NoAcceptableSecurity {
            offered: vec![1, 2]
        })
    );
    // Anonymous TLS offered where x509 is required is refused too.
    let server = concat(&[b"RFB 003.008\n", &[1, 19], &[0, 2], &[0], &[1], &be32(257)]);
    let (_, status, _) = drive(config(Transport::X509, None), &server, 1000);
    assert_eq!(
        status,
        Err(RfbError::NoAcceptableSecurity { offered: vec![257] })
    );
}

#[test]
fn rfb_33_and_37_servers() {
    let challenge = [9u8; 16];
    let server = concat(&[b"RFB 003.003\n", &be32(2), &challenge, &be32(0)]);
    let (out, status, _) = drive(config(Transport::Plain, Some("pw")), &server, 1000);
    assert_eq!(status, Ok(Status::Done));
    assert!(out.starts_with(b"RFB 003.003\n"));
    let server = concat(&[b"RFB 003.003\n", &be32(1)]);
    assert_eq!(
        drive(config(Transport::Plain, None), &server, 1000).1,
        Ok(Status::Done)
    );
    // 3.7 with None: no SecurityResult.
    let server = concat(&[b"RFB 003.007\n", &[1, 1]]);
    let (out, status, _) = drive(config(Transport::Plain, None), &server, 1000);
    assert_eq!(status, Ok(Status::Done));
    assert_eq!(out, concat(&[b"RFB 003.007\n", &[1]]));
}

#[test]
fn server_refusals_and_malicious_lengths() {
    let server = concat(&[b"RFB 003.008\n", &[0], &be32(9), b"too many!"]);
    assert_eq!(
        drive(config(Transport::Plain, None), &server, 2).1,
        Err(RfbError::Refused("too many!".into()))
    );
    let server = concat(&[b"RFB 003.008\n", &[0], &be32(u32::MAX)]);
    assert!(matches!(
        drive(config(Transport::Plain, None), &server, 1000).1,
        Err(RfbError::TooLong { .. })
    ));
    assert_eq!(
        drive(config(Transport::Plain, None), b"SSH-2.0-OpenSSH\r\n", 1000).1,
        Err(RfbError::NotRfb)
    );
    assert_eq!(
        drive(config(Transport::Plain, None), b"RFB 002.000\n", 1000).1,
        Err(RfbError::UnsupportedVersion(2, 0))
    );
    let server = concat(&[b"RFB 003.008\n", &[1, 19], &[0, 1]]);
    assert!(
        drive(config(Transport::X509, None), &server, 1000)
            .1
            .is_err(),
        "VeNCrypt 0.1 refused"
    );
}

#[test]
fn byte_by_byte_equals_all_at_once() {
    let challenge = [7u8; 16];
    let scripts: Vec<(Transport, Option<&str>, Vec<u8>)> = vec![
        (
            Transport::Plain,
            None,
            concat(&[b"RFB 003.008\n", &[1, 1], &be32(0)]),
        ),
        (
            Transport::Plain,
            Some("pw"),
            concat(&[b"RFB 003.008\n", &[2, 1, 2], &challenge, &be32(0)]),
        ),
        (
            Transport::X509,
            Some("pw"),
            concat(&[
                b"RFB 003.008\n",
                &[1, 19],
                &[0, 2],
                &[0],
                &[1],
                &be32(261),
                &[1],
                &challenge,
                &be32(0),
            ]),
        ),
        (
            Transport::AnonTls,
            None,
            concat(&[
                b"RFB 003.008\n",
                &[1, 19],
                &[0, 2],
                &[0],
                &[2],
                &be32(257),
                &be32(258),
                &[1],
                &be32(0),
            ]),
        ),
    ];
    for (transport, pw, script) in scripts {
        let whole = drive(config(transport, pw), &script, usize::MAX);
        for chunk in [1, 2, 3, 5, 7] {
            assert_eq!(
                drive(config(transport, pw), &script, chunk),
                whole,
                "chunk {chunk}"
            );
        }
        assert_eq!(whole.1, Ok(Status::Done));
    }
}

#[test]
fn truncated_input_always_asks_for_more() {
    let script = concat(&[
        b"RFB 003.008\n",
        &[1, 19],
        &[0, 2],
        &[0],
        &[1],
        &be32(260),
        &[1],
        &be32(0),
    ]);
    for cut in 0..script.len() - 4 {
        let (_, status, _) = drive(config(Transport::X509, None), &script[..cut], 1);
        assert_eq!(status, Ok(Status::NeedMore), "cut {cut}");
    }
}

/// Deterministic pseudo-random numbers for property tests (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_chunkings_of_valid_handshakes_agree() {
    let challenge = [0x42u8; 16];
    let script = concat(&[
        b"RFB 003.008\n",
        &[1, 19],
        &[0, 2],
        &[0],
        &[2],
        &be32(260),
        &be32(261),
        &[1],
        &challenge,
        &be32(0),
    ]);
    let whole = drive(config(Transport::X509, Some("pw")), &script, usize::MAX);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..500 {
        let chunk = 1 + (rng.next() % 9) as usize;
        assert_eq!(
            drive(config(Transport::X509, Some("pw")), &script, chunk),
            whole
        );
    }
}

#[test]
fn random_and_mutated_server_bytes_never_panic() {
    let valid = concat(&[
        b"RFB 003.008\n",
        &[1, 19],
        &[0, 2],
        &[0],
        &[2],
        &be32(260),
        &be32(261),
        &[1],
        &[7u8; 16],
        &be32(1),
        &be32(3),
        b"bad",
    ]);
    let mut rng = Rng(7);
    for round in 0..5000 {
        let mut input = if round % 2 == 0 {
            valid.clone()
        } else {
            (0..(rng.next() % 64)).map(|_| rng.next() as u8).collect()
        };
        if round % 2 == 0 {
            for _ in 0..=(rng.next() % 4) {
                let i = (rng.next() as usize) % input.len();
                input[i] = rng.next() as u8;
            }
        }
        for transport in [Transport::Plain, Transport::X509, Transport::AnonTls] {
            let (out, _, tls) = drive(
                config(transport, Some("pw")),
                &input,
                1 + (rng.next() % 5) as usize,
            );
            assert!(
                out.len() <= 12 + 1 + 2 + 4 + 16,
                "client output stays small: {}",
                out.len()
            );
            assert!(tls <= 1);
        }
    }
}

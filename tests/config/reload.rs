//! Live reload of a running `darts serve` with a session (QEMU under TCG) whose websocket
//! stays open across reloads.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{replace, text, write};
use crate::qemu::RfbOverWs;
use crate::service::Service;
use crate::support::{self, darts_bin, wss_connect, Scratch};

/// A CA and server certificates for 127.0.0.1 signed by it, with chosen serial numbers.
struct WebCa {
    ca_pem: String,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl WebCa {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "darts reload test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            ca_pem: ca.pem(),
            ca,
            ca_key,
        }
    }

    /// (certificate PEM, key PEM) with this serial number.
    fn leaf(&self, serial: u64) -> (String, String) {
        use rcgen::{CertificateParams, KeyPair, SerialNumber};
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The serial number of the certificate a new TLS connection to `addr` is shown.
async fn served_serial(addr: std::net::SocketAddr, ca_pem: &str) -> u64 {
    let connector = tokio_rustls::TlsConnector::from(support::client_tls(ca_pem));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.raw_serial()
        .iter()
        .fold(0u64, |n, b| n << 8 | u64::from(*b))
}

/// Waits until darts' log holds more than `before` occurrences of `needle`; returns the
/// log from the first new occurrence on.
fn wait_log(svc: &Service, needle: &str, before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = svc.log();
        if log.matches(needle).count() > before {
            let at = log.match_indices(needle).nth(before).map_or(0, |(i, _)| i);
            let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            return log[start..].to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no new {needle:?} in darts' log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(svc: &Service, needle: &str) -> usize {
    svc.log().matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_limits_and_certificate_keeps_the_session_and_refuses_a_broken_file() {
    let ca = WebCa::new();
    let certs = Scratch::new("config-reload-certs");
    let (crt, key) = (certs.path("web.crt"), certs.path("web.key"));
    let (crt1, key1) = ca.leaf(1001);
    write(&crt, &crt1);
    write(&key, &key1);
    let settings = |max: &str| {
        format!(
            "certificate_crt = \"{}\"\ncertificate_key = \"{}\"\nservice_max_session_nb = {max}\n",
            crt.display(),
            key.display()
        )
    };
    let mut svc = Service::configure("config-reload", &settings("2"));
    let base = std::fs::read_to_string(&svc.config).unwrap();
    let base = base.replace(&settings("2"), "");
    let config = svc.config.clone();
    let rewrite = |extra: &str| replace(&config, &format!("{base}{extra}"));
    // The same service for `darts start` while the watched file is broken (the command
    // reads its configuration to find the control socket).
    let good = certs.path("good.toml");
    write(&good, &format!("{base}{}", settings("1")));
    let start_with_good = || {
        Command::new(darts_bin())
            .args(["start", "demo.img", "-c"])
            .arg(&good)
            .output()
            .unwrap()
    };
    // Line of `service_max_session_nb` in the file: the harness's lines, then ours.
    let limit_line = base.lines().count() + 3;
    svc.launch();
    assert_eq!(served_serial(svc.addr, &ca.ca_pem).await, 1001);

    // A session, its screen through a TLS websocket.
    let s = svc.start_session(&[]);
    let ws = wss_connect(
        &format!("wss://{}/darts/vnc.html?token={}", svc.addr, s.token),
        &ca.ca_pem,
    )
    .await
    .unwrap_or_else(|e| panic!("wss refused: {e}; log:\n{}", svc.log()));
    let mut rfb = RfbOverWs::new(ws, Duration::from_secs(30));
    rfb.handshake().await;
    rfb.set_raw_rgb32().await;
    rfb.full_frame(20).await;

    // 1. Limits and certificate change together: the certificate files are replaced in
    //    place, then the configuration lowers the session limit from 2 to 1.
    let reloaded = count(&svc, "configuration reloaded");
    let (crt2, key2) = ca.leaf(2002);
    replace(&key, &key2);
    replace(&crt, &crt2);
    rewrite(&settings("1"));
    let line = wait_log(&svc, "configuration reloaded", reloaded);
    assert!(line.contains("service_max_session_nb"), "{line}");
    assert_eq!(
        served_serial(svc.addr, &ca.ca_pem).await,
        2002,
        "a new TLS connection sees the new certificate"
    );
    // With the old limit of 2 a second session would start; with 1 it is refused.
    let refused = svc.cli(&["start", "demo.img"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Too many active sessions 1. Max 1."),
        "{}\nlog:\n{}",
        text(&refused.stderr),
        svc.log()
    );
    // The session and its websocket (opened under the old certificate) carry on.
    assert_eq!(
        rfb.full_frame(20).await.area,
        u64::from(rfb.width) * u64::from(rfb.height)
    );
    assert_eq!(svc.sessions().len(), 1);

    // 2. A broken edit is refused with file, line and key; the running configuration stays.
    let refused_before = count(&svc, "configuration refused");
    rewrite(&settings("\"three\""));
    let line = wait_log(&svc, "configuration refused", refused_before);
    let expected = format!(
        "{}:{limit_line}: service_max_session_nb: wrong type",
        config.display()
    );
    assert!(line.contains(&expected), "expected {expected:?} in {line}");
    let still = start_with_good();
    assert!(
        text(&still.stderr).contains("Max 1."),
        "{}",
        text(&still.stderr)
    );
    assert_eq!(served_serial(svc.addr, &ca.ca_pem).await, 2002);
    rfb.full_frame(20).await;
    let (status, _, _) = support::http_get(svc.addr, "/darts/api/config", "").await;
    assert_eq!(status, 200, "the service keeps serving");

    // 3. SIGHUP reloads too; a key read only at start is reported, and the old value kept.
    let restart_before = count(&svc, "needs a restart");
    rewrite(&format!(
        "{}service_reverse_proxy = \"/elsewhere\"\n",
        settings("1")
    ));
    svc.darts.as_ref().unwrap().signal("HUP");
    let line = wait_log(&svc, "needs a restart", restart_before);
    assert!(line.contains("keys=service_reverse_proxy"), "{line}");
    let (status, _, _) = support::http_get(svc.addr, "/darts/api/config", "").await;
    assert_eq!(status, 200, "still served under the prefix it started with");
    assert_eq!(served_serial(svc.addr, &ca.ca_pem).await, 2002);
    rfb.full_frame(20).await;
    assert_eq!(svc.sessions().len(), 1);
}

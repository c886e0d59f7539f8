//! TLS on the gateway's one port: plain and TLS side by side, `ssl_only`, and
//! certificate hot reload.

use super::*;

async fn tls_gateway(dir: &Scratch, ssl_only: bool) -> (TestGateway, TestCerts) {
    let certs = make_certs(&dir.0, "a", &["localhost", "127.0.0.1"]);
    let backend = echo_backend(b"E").await;
    let mut config = TestGateway::config();
    config.tls = Some(CertPaths {
        cert: certs.cert.clone(),
        key: Some(certs.key.clone()),
    });
    config.ssl_only = ssl_only;
    let gw = TestGateway::start(config, routes(&[("t", backend)])).await;
    (gw, certs)
}

#[tokio::test]
async fn tls_and_plain_share_one_port() {
    let dir = Scratch::new("tls");
    let (gw, certs) = tls_gateway(&dir, false).await;
    let mut plain = ws_connect(&gw.ws_url("/?token=t"), &[]).await.unwrap();
    assert_eq!(read_bytes(&mut plain, 1, T).await, b"E");
    let url = format!("wss://localhost:{}/?token=t", gw.addr.port());
    let mut secure = wss_connect(&url, &certs.ca_pem).await.unwrap();
    assert_eq!(read_bytes(&mut secure, 1, T).await, b"E");
    send_binary(&mut secure, b"over tls").await;
    assert_eq!(read_bytes(&mut secure, 8, T).await, b"over tls");
}

#[tokio::test]
async fn ssl_only_refuses_plain_with_a_clear_answer() {
    let dir = Scratch::new("sslonly");
    let (gw, certs) = tls_gateway(&dir, true).await;
    let (status, _, body) = http_get(gw.addr, "/?token=t", "").await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("only accepts TLS"));
    let url = format!("wss://localhost:{}/?token=t", gw.addr.port());
    let mut secure = wss_connect(&url, &certs.ca_pem).await.unwrap();
    assert_eq!(read_bytes(&mut secure, 1, T).await, b"E");
}

#[tokio::test]
async fn certificate_hot_reload_keeps_open_sessions_and_refuses_bad_files() {
    let dir = Scratch::new("reload");
    let (gw, certs_a) = tls_gateway(&dir, false).await;
    let url = format!("wss://localhost:{}/?token=t", gw.addr.port());
    let mut kept = wss_connect(&url, &certs_a.ca_pem).await.unwrap();
    assert_eq!(read_bytes(&mut kept, 1, T).await, b"E");

    // Replace the files with a certificate from another CA.
    let certs_b = make_certs(&dir.0, "b", &["localhost"]);
    std::fs::copy(&certs_b.key, &certs_a.key).unwrap();
    std::fs::copy(&certs_b.cert, &certs_a.cert).unwrap();
    let mut switched = false;
    for _ in 0..60 {
        if wss_connect(&url, &certs_b.ca_pem).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "new connections get the new certificate");
    assert!(
        wss_connect(&url, &certs_a.ca_pem).await.is_err(),
        "old certificate no longer served"
    );
    send_binary(&mut kept, b"still open").await;
    assert_eq!(read_bytes(&mut kept, 10, T).await, b"still open");

    // A broken certificate is refused; the current one keeps serving.
    std::fs::write(
        &certs_a.cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    gw.handle.reload_tls();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut after = wss_connect(&url, &certs_b.ca_pem)
        .await
        .expect("previous certificate still served");
    assert_eq!(read_bytes(&mut after, 1, T).await, b"E");
    let (_, _, body) = http_get(gw.addr, "/metrics", "").await;
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("darts_tls_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("darts_tls_reloads_total{result=\"refused\"} 0"),
        "{metrics}"
    );
}

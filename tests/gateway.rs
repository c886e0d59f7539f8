//! Integration tests of the gateway core on loopback.

mod support;

use std::time::Duration;

use darts_proxy::{Route, Target, TokenMap};
use support::*;

#[tokio::test]
async fn relays_both_ways_through_an_in_process_route() {
    let backend = echo_backend(b"RFB 003.008\n").await;
    let tokens = TokenMap::new();
    tokens.insert(
        "tok",
        Route::new(Target::Tcp {
            host: "127.0.0.1".into(),
            port: backend.port(),
        }),
    );
    let gw = TestGateway::start(TestGateway::config(), tokens).await;
    let mut ws = ws_connect(&gw.ws_url("/websockify?token=tok"), &[])
        .await
        .unwrap();
    assert_eq!(
        read_bytes(&mut ws, 12, Duration::from_secs(5)).await,
        b"RFB 003.008\n"
    );
    send_binary(&mut ws, b"hello").await;
    assert_eq!(
        read_bytes(&mut ws, 5, Duration::from_secs(5)).await,
        b"hello"
    );
}

//! With the `rustls` feature an `https://` tracking URI really speaks TLS: a listener on
//! 127.0.0.1 sees a TLS handshake record as the first bytes, and a peer that is not a TLS server
//! gives a transport error, never a plain-text request.

#![cfg(feature = "rustls")]

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use mlflow_client::{ClientConfig, MlflowClient, RetryPolicy};

#[tokio::test]
async fn https_uris_open_a_tls_handshake() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = [0u8; 3];
        conn.read_exact(&mut head).unwrap();
        head // dropping the connection ends the handshake
    });
    let config = ClientConfig::new(&format!("https://127.0.0.1:{port}"))
        .unwrap()
        .with_timeout(Duration::from_secs(10))
        .with_retry(RetryPolicy::none());
    let client = MlflowClient::new(config).unwrap();
    let err = client.get_experiment_by_name("x").await.unwrap_err();
    let head = peer.join().unwrap();
    // Content type 22 (handshake), record version 3.x: a ClientHello, not "GET /api/...".
    assert_eq!((head[0], head[1]), (0x16, 0x03), "{head:?}");
    assert!(err.is_transient(), "{err:?}");
}

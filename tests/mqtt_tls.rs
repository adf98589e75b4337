//! TLS listeners: a rumqttc client over TLS, with and without client-certificate verification.

mod common;

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::time::timeout;

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// Connect over TLS, subscribe, publish to self; true if the message came back.
async fn round_trip(port: u16, ca: &str, client_auth: Option<(String, String)>) -> bool {
    let mut opts = MqttOptions::new(format!("tls-{}", rand_id()), "localhost", port);
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca.as_bytes().to_vec(),
        alpn: None,
        client_auth: client_auth.map(|(c, k)| (c.into_bytes(), k.into_bytes())),
    }));
    let (client, mut ev) = AsyncClient::new(opts, 10);
    client.subscribe("tls/t", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("tls/t", QoS::AtLeastOnce, false, "secret")
        .await
        .unwrap();
    let got = timeout(Duration::from_secs(5), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => return &p.payload[..] == b"secret",
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    got.unwrap_or(false)
}

fn rand_id() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn tls_listener_serves_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &p.server_cert).unwrap();
    std::fs::write(&key, &p.server_key).unwrap();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let b = common::start_in(
        &dir.path().join("data"),
        &[
            ("JUNCTION_LISTENERS__SSL__DEFAULT__BIND", "127.0.0.1:0"),
            ("JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE", &cert_s),
            ("JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__KEYFILE", &key_s),
        ],
    )
    .await;
    let port = b.running.addr("ssl").expect("ssl listener bound").port();
    assert!(round_trip(port, &p.ca, None).await, "message over TLS");
    b.running.stop().await;
}

#[tokio::test]
async fn tls_client_certificate_required() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki();
    let (cert, key, ca) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, &p.server_cert).unwrap();
    std::fs::write(&key, &p.server_key).unwrap();
    std::fs::write(&ca, &p.ca).unwrap();
    let (cert_s, key_s, ca_s) = (
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string(),
    );
    let b = common::start_in(
        &dir.path().join("data"),
        &[
            ("JUNCTION_LISTENERS__SSL__DEFAULT__BIND", "127.0.0.1:0"),
            ("JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CERTFILE", &cert_s),
            ("JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__KEYFILE", &key_s),
            ("JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__CACERTFILE", &ca_s),
            ("JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__VERIFY", "verify_peer"),
            (
                "JUNCTION_LISTENERS__SSL__DEFAULT__SSL_OPTIONS__FAIL_IF_NO_PEER_CERT",
                "true",
            ),
        ],
    )
    .await;
    let port = b.running.addr("ssl").expect("ssl listener bound").port();
    assert!(!round_trip(port, &p.ca, None).await, "no client certificate: refused");
    assert!(
        round_trip(port, &p.ca, Some((p.client_cert.clone(), p.client_key.clone()))).await,
        "with a client certificate signed by the CA"
    );
    b.running.stop().await;
}

//! A subscriber that stops reading gets a bounded queue and counted drops;
//! the publisher and the other subscribers are not held up by it.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use junction::mqtt::codec::{self, Connect, Packet, Protocol, QoS, Subscribe, SubscribeFilter};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet as RPacket, QoS as RQoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connect and subscribe with a raw socket, then never read again.
async fn stuck_subscriber(addr: std::net::SocketAddr, filter: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = BytesMut::new();
    let connect = Connect {
        protocol: Some(Protocol::V4),
        keep_alive: 0,
        client_id: "stuck".into(),
        clean_start: true,
        ..Default::default()
    };
    codec::encode(&Packet::Connect(Box::new(connect)), Protocol::V4, &mut out).unwrap();
    let sub = Subscribe {
        pkid: 1,
        filters: vec![SubscribeFilter {
            filter: filter.into(),
            qos: QoS::AtMostOnce,
            ..Default::default()
        }],
        ..Default::default()
    };
    codec::encode(&Packet::Subscribe(sub), Protocol::V4, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    // CONNACK (4 bytes) + SUBACK (5 bytes), then stop reading.
    let mut buf = [0u8; 9];
    s.read_exact(&mut buf).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_does_not_stall_others() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::start_in(dir.path(), &[("JUNCTION_MQTT__MAX_MQUEUE_LEN", "100")]).await;
    let _stuck = stuck_subscriber(b.tcp, "flood/#").await;

    let mut opts = MqttOptions::new("healthy", b.tcp.ip().to_string(), b.tcp.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (healthy, mut hev) = AsyncClient::new(opts, 100);
    healthy.subscribe("flood/#", RQoS::AtMostOnce).await.unwrap();
    let total = 20_000usize;
    let counter = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            match tokio::time::timeout(Duration::from_secs(10), hev.poll()).await {
                Ok(Ok(Event::Incoming(RPacket::Publish(_)))) => n += 1,
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut opts = MqttOptions::new("flooder", b.tcp.ip().to_string(), b.tcp.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(100);
    let (publisher, mut pev) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    let payload = vec![b'x'; 1024];
    let started = Instant::now();
    for i in 0..total {
        publisher
            .publish(format!("flood/{}", i % 10), RQoS::AtMostOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let received = counter.await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(received, total, "the healthy subscriber got every message");
    assert!(elapsed < Duration::from_secs(20), "publishing took {elapsed:?}");
    let dropped = b.running.broker.metrics.dropped[1].get();
    assert!(
        dropped > 0,
        "the stuck subscriber's overflow is counted (queue_full = {dropped})"
    );
    let metrics = reqwest_free_get(b.http, "/metrics").await;
    assert!(metrics.contains("junction_messages_dropped_total{reason=\"queue_full\"}"));
    b.running.stop().await;
}

/// Minimal HTTP GET (no client crate needed for one request).
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

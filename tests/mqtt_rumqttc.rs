//! The broker driven by rumqttc (a client nobody here wrote), MQTT 3.1.1 and 5.0.

mod common;

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// Connect a v3.1.1 client; incoming PUBLISHes are forwarded on the returned channel.
async fn client(addr: std::net::SocketAddr, id: &str, clean: bool) -> (AsyncClient, mpsc::Receiver<rumqttc::Publish>) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_clean_session(clean);
    let (c, mut ev) = AsyncClient::new(opts, 100);
    let (tx, rx) = mpsc::channel(1000);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    timeout(WAIT, ready_rx)
        .await
        .expect("connack in time")
        .expect("connected");
    (c, rx)
}

async fn recv(rx: &mut mpsc::Receiver<rumqttc::Publish>) -> rumqttc::Publish {
    timeout(WAIT, rx.recv())
        .await
        .expect("message in time")
        .expect("channel open")
}

#[tokio::test]
async fn pubsub_all_qos_levels() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::start_in(dir.path(), &[]).await;
    let (sub, mut rx) = client(b.tcp, "sub", true).await;
    sub.subscribe("sensors/+/temp", QoS::ExactlyOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (publ, _prx) = client(b.tcp, "pub", true).await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.publish(format!("sensors/{i}/temp"), qos, false, format!("m{i}"))
            .await
            .unwrap();
        let p = recv(&mut rx).await;
        assert_eq!(p.topic, format!("sensors/{i}/temp"));
        assert_eq!(p.payload, Bytes::from(format!("m{i}")));
        assert_eq!(p.qos, qos);
    }
    // A topic the filter does not match is not delivered.
    publ.publish("sensors/x/humidity", QoS::AtLeastOnce, false, "no")
        .await
        .unwrap();
    publ.publish("sensors/y/temp", QoS::AtLeastOnce, false, "yes")
        .await
        .unwrap();
    assert_eq!(recv(&mut rx).await.payload, Bytes::from("yes"));
    b.running.stop().await;
}

#[tokio::test]
async fn offline_messages_queue_for_persistent_session() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::start_in(dir.path(), &[]).await;
    let (sub, rx) = client(b.tcp, "durable-sub", false).await;
    sub.subscribe("q/#", QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.disconnect().await.unwrap();
    drop(rx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (publ, _prx) = client(b.tcp, "pub2", true).await;
    for i in 0..10 {
        publ.publish(format!("q/{i}"), QoS::AtLeastOnce, false, format!("{i}"))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_sub2, mut rx2) = client(b.tcp, "durable-sub", false).await;
    for i in 0..10 {
        let p = recv(&mut rx2).await;
        assert_eq!(p.payload, Bytes::from(format!("{i}")), "in order");
    }
    b.running.stop().await;
}

#[tokio::test]
async fn retained_and_sessions_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::start_in(dir.path(), &[]).await;
    let (publ, _prx) = client(b.tcp, "pub3", true).await;
    publ.publish("status/door", QoS::AtLeastOnce, true, "open")
        .await
        .unwrap();
    let (sub, rx) = client(b.tcp, "keeper", false).await;
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.disconnect().await.unwrap();
    drop(rx);
    tokio::time::sleep(Duration::from_millis(200)).await;
    publ.publish("alerts/fire", QoS::AtLeastOnce, false, "hot")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.running.stop().await;

    let b = common::start_in(dir.path(), &[]).await;
    let (_keeper, mut rx) = client(b.tcp, "keeper", false).await;
    let p = recv(&mut rx).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("alerts/fire", &b"hot"[..]));
    let (fresh, mut frx) = client(b.tcp, "fresh", true).await;
    fresh.subscribe("status/+", QoS::AtLeastOnce).await.unwrap();
    let p = recv(&mut frx).await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"open");
    b.running.stop().await;
}

#[tokio::test]
async fn v5_properties_pass_through() {
    use rumqttc::v5::mqttbytes::v5::{Packet as P5, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::v5::{AsyncClient as C5, Event as E5, MqttOptions as O5};
    let dir = tempfile::tempdir().unwrap();
    let b = common::start_in(dir.path(), &[]).await;
    let opts = O5::new("v5sub", b.tcp.ip().to_string(), b.tcp.port());
    let (sub, mut ev) = C5::new(opts, 10);
    let (tx, mut rx) = mpsc::channel(10);
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let E5::Incoming(P5::Publish(p)) = e {
                let _ = tx.send(p).await;
            }
        }
    });
    sub.subscribe("rr/#", Q5::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opts = O5::new("v5pub", b.tcp.ip().to_string(), b.tcp.port());
    let (publ, mut pev) = C5::new(opts, 10);
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    let props = PublishProperties {
        content_type: Some("application/json".into()),
        response_topic: Some("rr/reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr-1")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into())],
        payload_format_indicator: Some(1),
        ..Default::default()
    };
    publ.publish_with_properties("rr/req", Q5::AtLeastOnce, false, "{}", props)
        .await
        .unwrap();
    let p = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    let got = p.properties.expect("properties");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.response_topic.as_deref(), Some("rr/reply"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    assert_eq!(
        got.user_properties,
        vec![("k".to_string(), "v".to_string()), ("k".to_string(), "v2".to_string())]
    );
    assert_eq!(got.payload_format_indicator, Some(1));
    b.running.stop().await;
}

#[tokio::test]
async fn publish_rate_limit_slows_without_disconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::start_in(
        dir.path(),
        &[("JUNCTION_LISTENERS__TCP__DEFAULT__MESSAGES_RATE", "100/s")],
    )
    .await;
    let (sub, mut rx) = client(b.tcp, "rate-sub", true).await;
    sub.subscribe("rate/#", QoS::AtLeastOnce).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (publ, _prx) = client(b.tcp, "rate-pub", true).await;
    let started = std::time::Instant::now();
    let n = 300;
    for i in 0..n {
        publ.publish(format!("rate/{i}"), QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    for _ in 0..n {
        recv(&mut rx).await;
    }
    let elapsed = started.elapsed();
    // A 1 s burst allowance, then 100/s: 300 messages need about 2 s. Nobody is disconnected.
    assert!(elapsed >= Duration::from_millis(1500), "not slowed: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "slowed too much: {elapsed:?}");
    assert_eq!(b.running.broker.metrics.connections.get(), 2);
    b.running.stop().await;
}

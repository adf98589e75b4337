//! The event hand-off the rule engine will consume: every message and client
//! lifecycle step arrives on the bounded channel given to `start_with_events`.

use std::time::Duration;

use junction::mqtt::events::{BrokerEvent, DisconnectReason};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::time::timeout;

#[tokio::test]
async fn lifecycle_and_message_events_are_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "JUNCTION_LISTENERS__TCP__DEFAULT__BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "JUNCTION_LISTENERS__WS__DEFAULT__ENABLE".to_string(),
            "false".to_string(),
        ),
        (
            "JUNCTION_DASHBOARD__LISTENERS__HTTP__ENABLE".to_string(),
            "false".to_string(),
        ),
        ("JUNCTION_NODE__DATA_DIR".to_string(), dir.path().display().to_string()),
    ];
    let cfg = junction::config::load(None, env).unwrap();
    let (tx, mut rx) = mpsc::channel(1000);
    let running = junction::app::start_with_events(&cfg, tx).await.unwrap();
    let addr = running.addr("tcp").unwrap();

    let mut opts = MqttOptions::new("ev-client", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut ev) = AsyncClient::new(opts, 10);
    client.subscribe("ev/#", QoS::AtLeastOnce).await.unwrap();
    client.publish("ev/1", QoS::AtLeastOnce, false, "hello").await.unwrap();
    timeout(Duration::from_secs(5), async {
        // Our own message comes back: we subscribed to it.
        while !matches!(ev.poll().await, Ok(Event::Incoming(Packet::Publish(_)))) {}
    })
    .await
    .unwrap();
    client.disconnect().await.unwrap();
    let _ = timeout(Duration::from_secs(1), async { while ev.poll().await.is_ok() {} }).await;

    let mut names = Vec::new();
    let collect = timeout(Duration::from_secs(5), async {
        while let Some(e) = rx.recv().await {
            let name = match &e {
                BrokerEvent::SessionCreated { .. } => "session.created",
                BrokerEvent::ConnAck { code: 0, .. } => "client.connack",
                BrokerEvent::ClientConnected(c) if &*c.client_id == "ev-client" => "client.connected",
                BrokerEvent::Subscribed { filter, .. } if filter == "ev/#" => "session.subscribed",
                BrokerEvent::Publish(m) if &m.topic[..] == "ev/1" => "message.publish",
                BrokerEvent::Delivered { .. } => "message.delivered",
                BrokerEvent::Acked { .. } => "message.acked",
                BrokerEvent::ClientDisconnected {
                    reason: DisconnectReason::Normal,
                    ..
                } => "client.disconnected",
                BrokerEvent::SessionTerminated { .. } => "session.terminated",
                _ => continue,
            };
            names.push(name);
            if name == "session.terminated" {
                break;
            }
        }
    })
    .await;
    assert!(collect.is_ok(), "events so far: {names:?}");
    for want in [
        "session.created",
        "client.connack",
        "client.connected",
        "session.subscribed",
        "message.publish",
        "message.delivered",
        "message.acked",
        "client.disconnected",
        "session.terminated",
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    running.stop().await;
}

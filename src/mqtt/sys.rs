//! `$SYS/broker/...` statistics, published as retained messages every
//! `sys_topics.sys_msg_interval`, with Mosquitto's topic names.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::broker::Broker;
use super::codec::QoS;
use super::message::Message;

/// Publish the statistics topics every `msg_interval`, and the heartbeat
/// (`$SYS/broker/uptime`, `$SYS/broker/datetime`) every `heartbeat_interval`, until `shutdown`.
pub async fn run(
    broker: Arc<Broker>,
    msg_interval: Option<Duration>,
    heartbeat_interval: Option<Duration>,
    shutdown: CancellationToken,
) {
    let ticker = |d: Option<Duration>| {
        d.map(|d| {
            let mut t = tokio::time::interval(d);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        })
    };
    let (mut stats_tick, mut heartbeat_tick) = (ticker(msg_interval), ticker(heartbeat_interval));
    let version = format!("junction {}", env!("CARGO_PKG_VERSION"));
    loop {
        tokio::select! {
            _ = tick(&mut stats_tick) => {}
            _ = tick(&mut heartbeat_tick) => {
                heartbeat(&broker);
                continue;
            }
            _ = shutdown.cancelled() => return,
        }
        let m = &broker.metrics;
        let recv: u64 = m.messages_received.iter().map(|c| c.get()).sum();
        let sent: u64 = m.messages_sent.iter().map(|c| c.get()).sum();
        let stats: [(&str, String); 16] = [
            ("version", version.clone()),
            ("uptime", format!("{} seconds", broker.started.elapsed().as_secs())),
            ("clients/connected", m.connections.get().to_string()),
            ("clients/active", m.connections.get().to_string()),
            ("clients/total", broker.session_count().to_string()),
            (
                "clients/disconnected",
                (broker.session_count() as i64 - m.connections.get()).max(0).to_string(),
            ),
            ("messages/received", recv.to_string()),
            ("messages/sent", sent.to_string()),
            ("messages/dropped", m.dropped_total().to_string()),
            ("publish/messages/received", recv.to_string()),
            ("publish/messages/sent", sent.to_string()),
            ("retained messages/count", broker.retained_count().to_string()),
            ("subscriptions/count", broker.subscription_count().to_string()),
            ("store/messages/count", m.queued.get().to_string()),
            ("load/bytes/received", m.bytes_received.get().to_string()),
            ("load/bytes/sent", m.bytes_sent.get().to_string()),
        ];
        for (suffix, value) in stats {
            let topic = format!("$SYS/broker/{suffix}");
            broker.publish(Message::new(topic.into(), value.into(), QoS::AtMostOnce, true, None));
        }
    }
}

async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn heartbeat(broker: &Broker) {
    let uptime = format!("{} seconds", broker.started.elapsed().as_secs());
    let now_s = super::message::now_ms() / 1000;
    for (topic, value) in [
        ("$SYS/broker/uptime", uptime),
        ("$SYS/broker/datetime", now_s.to_string()),
    ] {
        broker.publish(Message::new(topic.into(), value.into(), QoS::AtMostOnce, true, None));
    }
}

//! The rule engine inside a running broker: rule files, republish through the broker to a
//! real MQTT subscriber (rumqttc), loop protection, refused files, and hot reload under load
//! with every message evaluated exactly once.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::time::timeout;

fn client(addr: std::net::SocketAddr, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    AsyncClient::new(o, 1000)
}

/// Polls until SUBACK.
async fn subscribed(ev: &mut EventLoop) {
    timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = ev.poll().await {
                return;
            }
        }
    })
    .await
    .expect("suback");
}

fn write_rules(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    // Write then rename: the watcher never sees half a file.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

const HOT: &str = r##"
[[rules]]
id = "hot"
sql = 'SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30'
[[rules.actions]]
type = "republish"
topic = "alerts/${clientid}"
qos = 1
payload = '{"t": ${t}}'
user_properties = { source = "${clientid}" }

[[rules]]
id = "echo_all"
description = "republishes every message to echo/<topic>: must not loop on its own output"
sql = 'SELECT topic, payload FROM "#"'
[[rules.actions]]
type = "republish"
topic = "echo/${topic}"
payload = "${payload}"
"##;

/// A republished message that no rule reads is not handed back to the engine (no
/// `message.publish` event for it); it still reaches its subscribers.
#[tokio::test]
async fn a_republished_message_no_rule_reads_is_not_sent_back_to_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let only_hot = &HOT[..HOT.find("[[rules]]\nid = \"echo_all\"").unwrap()];
    write_rules(&dir.path().join("rules"), "hot.toml", only_hot);
    // No `$SYS` messages: they are publishes too, and would be counted below.
    let b = common::start_in(
        dir.path(),
        &[
            ("JUNCTION_SYS_TOPICS__SYS_MSG_INTERVAL", "disabled"),
            ("JUNCTION_SYS_TOPICS__SYS_HEARTBEAT_INTERVAL", "disabled"),
        ],
    )
    .await;
    let (sub, mut sev) = client(b.tcp, "alerts-reader");
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await.unwrap();
    subscribed(&mut sev).await;
    let (publ, mut pev) = client(b.tcp, "s1");
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    for t in [35, 36, 37] {
        publ.publish(
            "sensors/s1/temp",
            QoS::AtLeastOnce,
            false,
            format!(r#"{{"temp": {t}}}"#),
        )
        .await
        .unwrap();
    }
    let mut alerts = 0;
    let _ = timeout(Duration::from_secs(3), async {
        while alerts < 3 {
            if let Ok(Event::Incoming(Packet::Publish(p))) = sev.poll().await {
                assert_eq!(p.topic, "alerts/s1");
                alerts += 1;
            }
        }
    })
    .await;
    assert_eq!(alerts, 3);
    let text = reqwest::get(format!("http://{}/metrics", b.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let received = text
        .lines()
        .find_map(|l| l.strip_prefix("junction_rules_events_received_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    // The three sensor messages; not the three alerts.
    assert_eq!(received, Some(3), "{text}");
    b.running.stop().await;
}

#[tokio::test]
async fn republish_reaches_a_subscriber_and_does_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    write_rules(&dir.path().join("rules"), "hot.toml", HOT);
    let b = common::start_in(dir.path(), &[]).await;
    let engine = b.running.rules.clone().expect("rule engine runs");
    assert_eq!(engine.status().rules, 2);

    let (sub, mut sev) = client(b.tcp, "alerts-reader");
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await.unwrap();
    sub.subscribe("echo/#", QoS::AtLeastOnce).await.unwrap();
    subscribed(&mut sev).await;
    subscribed(&mut sev).await;

    let (publ, mut pev) = client(b.tcp, "s1");
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    publ.publish("sensors/s1/temp", QoS::AtLeastOnce, false, r#"{"temp": 35}"#)
        .await
        .unwrap();
    publ.publish("sensors/s1/temp", QoS::AtLeastOnce, false, r#"{"temp": 12}"#)
        .await
        .unwrap();

    let mut got: Vec<(String, String)> = Vec::new();
    let _ = timeout(Duration::from_secs(3), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = sev.poll().await {
                got.push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned()));
            }
        }
    })
    .await;
    got.sort();
    let want: Vec<(String, String)> = vec![
        // The alert itself is echoed once (echo_all sees hot's output), and not again.
        ("alerts/s1".into(), r#"{"t": 35}"#.into()),
        ("echo/alerts/s1".into(), r#"{"t": 35}"#.into()),
        ("echo/sensors/s1/temp".into(), r#"{"temp": 12}"#.into()),
        ("echo/sensors/s1/temp".into(), r#"{"temp": 35}"#.into()),
    ];
    assert_eq!(got, want);

    let m: HashMap<String, serde_json::Value> = engine
        .rules()
        .iter()
        .map(|r| (r.def.id.to_string(), r.metrics.to_json()))
        .collect();
    assert_eq!(m["hot"]["matched"], 2);
    assert_eq!(m["hot"]["passed"], 1);
    assert_eq!(m["hot"]["failed.no_result"], 1);
    assert_eq!(m["hot"]["actions.success"], 1);
    // echo_all: 2 sensor messages + hot's alert; its own echoes are skipped.
    assert_eq!(m["echo_all"]["matched"], 3);
    assert_eq!(m["echo_all"]["skipped.loop"], 3);
    b.running.stop().await;
}

#[tokio::test]
async fn a_bad_file_is_refused_and_the_previous_rules_keep_running() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules, "hot.toml", HOT);
    let b = common::start_in(dir.path(), &[("JUNCTION_RULE_ENGINE__RELOAD_INTERVAL", "50ms")]).await;
    let engine = b.running.rules.clone().unwrap();

    write_rules(
        &rules,
        "bad.toml",
        "[[rules]]\nid = \"bad\"\nsql = '''\nSELECT upper(clientid) AS c\nFROM \"t\" WHERE nosuch(1)\n'''\n",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.status().failures == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = engine.status();
    let err = st.last_error.clone().expect("the bad file is refused");
    assert!(
        err.contains("bad.toml:5:16: rules[0].sql: unknown function `nosuch`"),
        "{err}"
    );
    assert_eq!(st.rules, 2, "the previous set runs");

    let (sub, mut sev) = client(b.tcp, "reader");
    sub.subscribe("alerts/#", QoS::AtLeastOnce).await.unwrap();
    subscribed(&mut sev).await;
    let (publ, mut pev) = client(b.tcp, "s2");
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    publ.publish("sensors/s2/temp", QoS::AtLeastOnce, false, r#"{"temp": 31}"#)
        .await
        .unwrap();
    let p = timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = sev.poll().await {
                return p;
            }
        }
    })
    .await
    .expect("the previous rules still republish");
    assert_eq!(p.topic, "alerts/s2");

    // Fixing the file loads it.
    std::fs::remove_file(rules.join("bad.toml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.status().last_error.is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(engine.status().last_error.is_none());
    b.running.stop().await;
}

fn counting_rule(version: usize) -> String {
    format!(
        r#"
[[rules]]
id = "count"
description = "version {version}"
sql = 'SELECT payload FROM "load/#"'
[[rules.actions]]
type = "republish"
topic = "out/v{version}"
qos = 1
payload = "${{payload}}"
"#
    )
}

/// A client publishes throughout while the rule file is rewritten (and once broken): every
/// message is evaluated exactly once and republished exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_evaluates_every_message_exactly_once() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules, "count.toml", &counting_rule(0));
    let b = common::start_in(dir.path(), &[("JUNCTION_RULE_ENGINE__RELOAD_INTERVAL", "20ms")]).await;
    let engine = b.running.rules.clone().unwrap();

    let (sub, mut sev) = client(b.tcp, "counter");
    sub.subscribe("out/#", QoS::AtLeastOnce).await.unwrap();
    subscribed(&mut sev).await;
    let reader = tokio::spawn(async move {
        let mut seen: HashMap<usize, usize> = HashMap::new();
        let mut topics: HashMap<String, usize> = HashMap::new();
        let _ = timeout(Duration::from_secs(30), async {
            while seen.len() < N {
                if let Ok(Event::Incoming(Packet::Publish(p))) = sev.poll().await {
                    let n: usize = String::from_utf8_lossy(&p.payload).parse().unwrap_or(usize::MAX);
                    *seen.entry(n).or_default() += 1;
                    *topics.entry(p.topic.clone()).or_default() += 1;
                }
            }
            // Anything extra (a message evaluated twice) arrives soon after.
            let _ = timeout(Duration::from_millis(500), async {
                loop {
                    if let Ok(Event::Incoming(Packet::Publish(p))) = sev.poll().await {
                        let n: usize = String::from_utf8_lossy(&p.payload).parse().unwrap_or(usize::MAX);
                        *seen.entry(n).or_default() += 1;
                    }
                }
            })
            .await;
        })
        .await;
        (seen, topics)
    });

    let rules_w = rules.clone();
    let writer = tokio::spawn(async move {
        for v in 1..=12 {
            tokio::time::sleep(Duration::from_millis(120)).await;
            if v == 6 {
                write_rules(
                    &rules_w,
                    "count.toml",
                    "[[rules]]\nid = \"count\"\nsql = 'SELECT FROM'\n",
                );
            } else {
                write_rules(&rules_w, "count.toml", &counting_rule(v));
            }
        }
    });

    let (publ, mut pev) = client(b.tcp, "loader");
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    for i in 0..N {
        publ.publish(format!("load/{}", i % 7), QoS::AtLeastOnce, false, i.to_string())
            .await
            .unwrap();
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    writer.await.unwrap();
    let (seen, topics) = reader.await.unwrap();
    let missing: Vec<usize> = (0..N).filter(|i| !seen.contains_key(i)).take(10).collect();
    let twice: Vec<(&usize, &usize)> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(
        missing.is_empty() && twice.is_empty(),
        "missing {missing:?}, twice {twice:?}"
    );
    let st = engine.status();
    assert!(st.successes >= 6, "reloads: {st:?}");
    assert!(st.failures >= 1, "the broken version was refused: {st:?}");
    assert!(topics.len() >= 3, "outputs came from several versions: {topics:?}");
    let count = engine.rules().into_iter().find(|r| &*r.def.id == "count").unwrap();
    assert_eq!(count.metrics.matched.get(), N as u64);
    assert_eq!(b.running.broker.metrics.events_dropped.get(), 0);
    b.running.stop().await;
}

/// A start refused after the store opened (a bad rule file) releases the data folder: the
/// next start in the same process and folder succeeds.
#[tokio::test]
async fn a_refused_start_releases_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(
        &rules,
        "bad.toml",
        "[[rules]]\nid = \"x\"\nsql = 'SELECT nosuch() FROM \"t\"'\n",
    );
    let env: Vec<(String, String)> = [
        ("JUNCTION_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0".to_string()),
        ("JUNCTION_LISTENERS__WS__DEFAULT__ENABLE", "false".to_string()),
        ("JUNCTION_DASHBOARD__LISTENERS__HTTP__ENABLE", "false".to_string()),
        ("JUNCTION_NODE__DATA_DIR", dir.path().display().to_string()),
        ("JUNCTION_RULE_ENGINE__RULES_DIR", rules.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cfg = junction::config::load(None, env).unwrap();
    let err = junction::app::start(&cfg)
        .await
        .err()
        .expect("a bad rule refuses the start");
    assert!(err.to_string().contains("unknown function `nosuch`"), "{err}");
    std::fs::remove_file(rules.join("bad.toml")).unwrap();
    let running = junction::app::start(&cfg).await.expect("the data folder is free again");
    running.stop().await;
}

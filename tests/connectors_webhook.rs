//! The webhook connector behind rules, against a real HTTP server started in the test (axum
//! on 127.0.0.1:0 that records every request and can be told to answer 503 or 400): every
//! output delivered, retries through a 503 outage, a 400 counted failed with the server's
//! message without blocking later outputs, batching into JSON arrays, and a rule naming a
//! missing connector refused with file:line:col. The metrics identity
//! `matched = success + failed + inflight + queuing + dropped` is checked at every poll.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS};
use serde_json::Value;

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
    /// What the server answered.
    status: u16,
}

#[derive(Clone, Default)]
struct Hook {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The status to answer (0: 200).
    status: Arc<AtomicU16>,
}

impl Hook {
    fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }

    /// Bodies of the 2xx answers, flattened (a batch is an array).
    fn delivered(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for s in self.seen.lock().iter().filter(|s| s.status < 300) {
            match &s.body {
                Value::Array(a) => out.extend(a.iter().cloned()),
                v => out.push(v.clone()),
            }
        }
        out
    }
}

async fn handler(State(h): State<Hook>, uri: Uri, headers: HeaderMap, body: axum::body::Bytes) -> (StatusCode, String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut status = match h.status.load(Ordering::SeqCst) {
        0 => 200,
        s => s,
    };
    // A payload that says so is refused whatever the mode (the "bad row").
    if body.get("bad") == Some(&Value::Bool(true)) {
        status = 400;
    }
    h.seen.lock().push(Seen {
        path: uri.path().to_string(),
        headers,
        body,
        status,
    });
    let text = match status {
        400 => "field `bad` is not allowed".to_string(),
        s if s >= 500 => "try again later".to_string(),
        _ => "ok".to_string(),
    };
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), text)
}

async fn start_hook() -> (Hook, SocketAddr) {
    let hook = Hook::default();
    let app = Router::new().fallback(handler).with_state(hook.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (hook, addr)
}

/// A local address nothing listens on (yet).
fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The recording server, at `addr` (a server that comes up later).
async fn start_hook_at(addr: SocketAddr) -> Hook {
    let hook = Hook::default();
    let app = Router::new().fallback(handler).with_state(hook.clone());
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    hook
}

/// A broker with connector `hook` at `addr` (plus `extra` settings) and the test rule.
async fn hook_broker(dir: &Path, addr: SocketAddr, extra: &str) -> common::TestBroker {
    write(&dir.join("connectors"), "hook.toml", &connector(addr, extra));
    write(&dir.join("rules"), "r.toml", &rule("hook", ""));
    broker(dir).await
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn env(dir: &Path) -> Vec<(String, String)> {
    vec![(
        "JUNCTION_CONNECTORS__DIR".to_string(),
        dir.join("connectors").display().to_string(),
    )]
}

async fn broker(dir: &Path) -> common::TestBroker {
    let e = env(dir);
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::start_in(dir, &e).await
}

fn client(addr: SocketAddr, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    AsyncClient::new(o, 1000)
}

async fn publish_all(b: &common::TestBroker, topic: &str, payloads: impl IntoIterator<Item = String>) {
    let (c, mut ev) = client(b.tcp, "publisher");
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    for p in payloads {
        c.publish(topic, QoS::AtLeastOnce, false, p).await.unwrap();
    }
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
}

/// The metrics of the only action of connector `name`, via `GET /api/v5/connectors`.
async fn action_metrics(b: &common::TestBroker, name: &str) -> Option<Value> {
    let url = format!("http://{}/api/v5/connectors", b.http);
    let list: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let c = list.as_array()?.iter().find(|c| c["name"] == name)?;
    Some(c["actions"][0]["metrics"].clone())
}

fn n(m: &Value, k: &str) -> u64 {
    m[k].as_u64().unwrap_or(0)
}

fn assert_identity(m: &Value) {
    assert_eq!(
        n(m, "matched"),
        n(m, "success") + n(m, "failed") + n(m, "inflight") + n(m, "queuing") + n(m, "dropped"),
        "matched = success + failed + inflight + queuing + dropped: {m}"
    );
}

/// Polls the action's metrics (checking the identity each time) until `done` holds.
async fn wait_metrics(b: &common::TestBroker, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        if let Some(m) = action_metrics(b, name).await {
            assert_identity(&m);
            if done(&m) {
                return m;
            }
            last = m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}; last metrics {last}");
}

fn rule(connector: &str, extra: &str) -> String {
    format!(
        r#"
[[rules]]
id = "to_hook"
sql = 'SELECT payload.i AS i, payload.bad AS bad, clientid FROM "data/#"'
[[rules.actions]]
type = "webhook"
connector = "{connector}"
path = "/in/${{clientid}}"
headers = {{ "x-client" = "${{clientid}}" }}
{extra}
"#
    )
}

fn connector(addr: SocketAddr, extra: &str) -> String {
    format!(
        "type = \"webhook\"\nurl = \"http://{addr}\"\nretry_backoff = {{ initial = \"10ms\", max = \"100ms\" }}\n\
         health_check_interval = \"1s\"\n{extra}\n"
    )
}

fn ids(values: &[Value]) -> Vec<i64> {
    let mut v: Vec<i64> = values.iter().filter_map(|b| b["i"].as_i64()).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn every_output_is_delivered() {
    let (hook, addr) = start_hook().await;
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("connectors"), "hook.toml", &connector(addr, ""));
    write(&dir.path().join("rules"), "r.toml", &rule("hook", ""));
    let b = broker(dir.path()).await;
    const N: i64 = 200;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    let m = wait_metrics(&b, "hook", "all delivered", |m| n(m, "success") == N as u64).await;
    assert_eq!(n(&m, "matched"), N as u64);
    assert_eq!(n(&m, "failed") + n(&m, "dropped") + n(&m, "retried"), 0, "{m}");
    assert_eq!(ids(&hook.delivered()), (0..N).collect::<Vec<_>>());
    let seen = hook.seen.lock().clone();
    assert!(seen.iter().all(|s| s.path == "/in/publisher"), "{:?}", seen[0]);
    assert_eq!(seen[0].headers["x-client"], "publisher");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    // The whole output by default (`${.}`).
    assert_eq!(seen[0].body["clientid"], "publisher");

    // REST and Prometheus show the connector and its action.
    let list: Value = reqwest::get(format!("http://{}/api/v5/connectors", b.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "hook");
    assert_eq!(list[0]["type"], "webhook");
    assert_eq!(list[0]["status"], "connected");
    assert_eq!(list[0]["actions"][0]["rule_id"], "to_hook");
    let text = reqwest::get(format!("http://{}/metrics", b.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "junction_connector_action_success_total{{connector=\"hook\",rule_id=\"to_hook\",action=\"0\"}} {N}"
        )),
        "{text}"
    );
    assert!(text.contains("junction_connector_status{connector=\"hook\",type=\"webhook\"} 1"));
    // The rule's own action counters agree.
    let rules = b.running.rules.clone().unwrap().rules();
    assert_eq!(rules[0].metrics.actions_success.get(), N as u64);

    // A rule reload keeps the connector's runtime and metrics.
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule("hook", "body = '{\"i\": ${i}, \"v\": 2}'"),
    );
    b.running.rules.clone().unwrap().reload().unwrap();
    publish_all(&b, "data/x", [format!(r#"{{"i": {N}}}"#)]).await;
    let m = wait_metrics(&b, "hook", "one more after reload", |m| n(m, "success") == N as u64 + 1).await;
    assert_eq!(n(&m, "matched"), N as u64 + 1);
    let last = hook.delivered().pop().unwrap();
    assert_eq!(last, serde_json::json!({"i": N, "v": 2}));
    b.running.stop().await;
}

#[tokio::test]
async fn a_503_outage_is_retried_until_every_output_arrives() {
    let (hook, addr) = start_hook().await;
    hook.set_status(503);
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "hook.toml",
        &connector(addr, "inflight_window = 1\nqueue_len = 1000"),
    );
    write(&dir.path().join("rules"), "r.toml", &rule("hook", ""));
    let b = broker(dir.path()).await;
    const N: i64 = 50;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    // Every output is matched and waits (one in flight, retried; the rest queued).
    let m = wait_metrics(&b, "hook", "outage", |m| {
        n(m, "matched") == N as u64 && n(m, "retried") >= 3
    })
    .await;
    assert_eq!(n(&m, "success"), 0, "{m}");
    assert_eq!(n(&m, "failed"), 0, "{m}");
    assert_eq!(n(&m, "inflight") + n(&m, "queuing"), N as u64, "{m}");
    hook.set_status(0);
    let m = wait_metrics(&b, "hook", "recovery", |m| n(m, "success") == N as u64).await;
    assert_eq!(
        n(&m, "failed") + n(&m, "dropped") + n(&m, "inflight") + n(&m, "queuing"),
        0,
        "{m}"
    );
    // Every output arrived once, in order (window 1).
    let got: Vec<i64> = hook.delivered().iter().filter_map(|v| v["i"].as_i64()).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    b.running.stop().await;
}

#[tokio::test]
async fn a_400_is_failed_with_the_server_message_and_does_not_block() {
    let (hook, addr) = start_hook().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "hook.toml",
        &connector(addr, "inflight_window = 1"),
    );
    write(&dir.path().join("rules"), "r.toml", &rule("hook", ""));
    let b = broker(dir.path()).await;
    publish_all(
        &b,
        "data/x",
        [
            r#"{"i": 1}"#.to_string(),
            r#"{"i": 2, "bad": true}"#.to_string(),
            r#"{"i": 3}"#.to_string(),
        ],
    )
    .await;
    let m = wait_metrics(&b, "hook", "settled", |m| n(m, "success") + n(m, "failed") == 3).await;
    assert_eq!((n(&m, "success"), n(&m, "failed"), n(&m, "retried")), (2, 1, 0), "{m}");
    assert_eq!(ids(&hook.delivered()), [1, 3]);
    let list: Value = reqwest::get(format!("http://{}/api/v5/connectors", b.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let err = list[0]["actions"][0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("400") && err.contains("field `bad` is not allowed"),
        "{err}"
    );
    let rules = b.running.rules.clone().unwrap().rules();
    assert_eq!(rules[0].metrics.actions_failed_unknown.get(), 1);
    b.running.stop().await;
}

#[tokio::test]
async fn batches_are_sent_as_json_arrays() {
    let (hook, addr) = start_hook().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "hook.toml",
        &connector(addr, "batch_size = 10\nbatch_time = \"200ms\"\ninflight_window = 1"),
    );
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule("hook", "body = '{\"i\": ${i}}'"),
    );
    let b = broker(dir.path()).await;
    const N: i64 = 25;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    wait_metrics(&b, "hook", "all delivered", |m| n(m, "success") == N as u64).await;
    let seen = hook.seen.lock().clone();
    assert!(seen.iter().all(|s| s.body.is_array()), "{seen:?}");
    // 25 outputs in batches of at most 10: at least 3 requests, fewer than 25.
    assert!(seen.len() >= 3 && seen.len() < N as usize, "{} requests", seen.len());
    assert!(seen.iter().all(|s| s.body.as_array().is_some_and(|a| a.len() <= 10)));
    let got: Vec<i64> = hook.delivered().iter().filter_map(|v| v["i"].as_i64()).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    b.running.stop().await;
}

#[tokio::test]
async fn a_rule_naming_a_missing_connector_is_refused_with_its_position() {
    let (_hook, addr) = start_hook().await;
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("connectors"), "hook.toml", &connector(addr, ""));
    write(&dir.path().join("rules"), "r.toml", &rule("nosuch", ""));
    let mut e: Vec<(String, String)> = vec![
        ("JUNCTION_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("JUNCTION_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
        ("JUNCTION_DASHBOARD__LISTENERS__HTTP__ENABLE".into(), "false".into()),
        ("JUNCTION_NODE__DATA_DIR".into(), dir.path().display().to_string()),
        (
            "JUNCTION_RULE_ENGINE__RULES_DIR".into(),
            dir.path().join("rules").display().to_string(),
        ),
    ];
    e.extend(env(dir.path()));
    let cfg = junction::config::load(None, e).unwrap();
    let err = match junction::app::start(&cfg).await {
        Ok(_) => panic!("a rule naming a missing connector must be refused"),
        Err(err) => err.to_string(),
    };
    // `connector = "nosuch"` is on line 7, its value at column 13.
    let at = format!("{}:7:13:", dir.path().join("rules").join("r.toml").display());
    assert!(err.contains(&at), "{err}");
    assert!(
        err.contains("no connector `nosuch`") && err.contains("webhook connectors: hook"),
        "{err}"
    );

    // At reload, the running rules stay.
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("connectors"), "hook.toml", &connector(addr, ""));
    write(&dir.path().join("rules"), "r.toml", &rule("hook", ""));
    let b = broker(dir.path()).await;
    let engine = b.running.rules.clone().unwrap();
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule("hook2", "").replace("webhook", "webhok"),
    );
    let errs = engine.reload().unwrap_err();
    assert!(
        errs[0]
            .message
            .contains("unknown action type `webhok` (did you mean `webhook`?)"),
        "{}",
        errs[0]
    );
    assert_eq!((errs[0].line, errs[0].col), (6, 8), "{}", errs[0]);
    assert_eq!(engine.status().rules, 1);
    b.running.stop().await;
}

#[tokio::test]
async fn memory_mode_a_server_that_is_down_is_buffered_drop_oldest_and_reconnected() {
    let addr = closed_addr();
    let dir = tempfile::tempdir().unwrap();
    let b = hook_broker(
        dir.path(),
        addr,
        "inflight_window = 1\nqueue_len = 10\nbuffer_mode = \"memory\"\nconnect_timeout = \"1s\"",
    )
    .await;
    const N: i64 = 30;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    let m = wait_metrics(&b, "hook", "buffered", |m| n(m, "matched") == N as u64).await;
    // Nothing is sent while disconnected: the queue keeps the newest 10.
    assert_eq!(
        (n(&m, "queuing"), n(&m, "dropped"), n(&m, "success")),
        (10, 20, 0),
        "{m}"
    );
    assert_eq!(m["dropped.queue_full"], 20);
    let list: Value = reqwest::get(format!("http://{}/api/v5/connectors", b.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["status"], "disconnected", "{list}");
    assert!(
        list[0]["status_reason"]
            .as_str()
            .is_some_and(|s| s.contains("cannot connect")),
        "{list}"
    );
    assert_eq!(
        b.running.rules.clone().unwrap().rules()[0]
            .metrics
            .actions_discarded
            .get(),
        20
    );

    // The server comes up: the connector reconnects (backoff at most 100 ms) and delivers.
    let hook = start_hook_at(addr).await;
    let m = wait_metrics(&b, "hook", "delivered after reconnect", |m| n(m, "success") == 10).await;
    assert_eq!(n(&m, "queuing") + n(&m, "inflight") + n(&m, "failed"), 0, "{m}");
    let got: Vec<i64> = hook.delivered().iter().filter_map(|v| v["i"].as_i64()).collect();
    assert_eq!(got, (20..N).collect::<Vec<_>>());
    b.running.stop().await;
}

/// Disk mode (the default): past `queue_len` outputs wait in the disk log, and come back in
/// order once the server is up; past `max_buffer_bytes` the oldest are dropped and counted.
#[tokio::test]
async fn disk_mode_a_server_that_is_down_is_buffered_past_queue_len_and_delivered_in_order() {
    let addr = closed_addr();
    let dir = tempfile::tempdir().unwrap();
    let b = hook_broker(
        dir.path(),
        addr,
        "inflight_window = 1\nbatch_size = 7\nqueue_len = 10\nconnect_timeout = \"1s\"",
    )
    .await;
    const N: i64 = 500;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    let m = wait_metrics(&b, "hook", "buffered", |m| n(m, "matched") == N as u64).await;
    assert_eq!((n(&m, "queuing"), n(&m, "dropped")), (N as u64, 0), "{m}");
    // The log is on disk under the data folder.
    let log = dir.path().join("buffers/hook/to_hook.0");
    let on_disk = || -> u64 {
        std::fs::read_dir(&log)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while on_disk() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing written under {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hook = start_hook_at(addr).await;
    let m = wait_metrics(&b, "hook", "delivered after reconnect", |m| n(m, "success") == N as u64).await;
    assert_eq!(
        n(&m, "queuing") + n(&m, "inflight") + n(&m, "failed") + n(&m, "dropped"),
        0,
        "{m}"
    );
    let got: Vec<i64> = hook.delivered().iter().filter_map(|v| v["i"].as_i64()).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every output, in order");
    b.running.stop().await;
}

#[tokio::test]
async fn disk_mode_past_max_buffer_bytes_the_oldest_are_dropped_and_counted() {
    let addr = closed_addr();
    let dir = tempfile::tempdir().unwrap();
    let b = hook_broker(dir.path(), addr, "inflight_window = 1\nqueue_len = 10\nbuffer_seg_bytes = \"4KB\"\nmax_buffer_bytes = \"16KB\"\nconnect_timeout = \"1s\"").await;
    const N: i64 = 2000;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    let m = wait_metrics(&b, "hook", "dropped past the cap", |m| {
        n(m, "matched") == N as u64 && n(m, "dropped") > 0 && n(m, "queuing") < 1000
    })
    .await;
    let (dropped, queued) = (n(&m, "dropped"), n(&m, "queuing"));
    let hook = start_hook_at(addr).await;
    let m = wait_metrics(&b, "hook", "the rest delivered", |m| {
        n(m, "queuing") + n(m, "inflight") == 0
    })
    .await;
    assert_eq!(n(&m, "success") + n(&m, "dropped"), N as u64, "{m}");
    assert!(n(&m, "dropped") >= dropped);
    let got: Vec<i64> = hook.delivered().iter().filter_map(|v| v["i"].as_i64()).collect();
    // The newest survive, in order, and the last one is among them.
    assert!(got.len() as u64 >= queued.min(n(&m, "success")), "{m}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(got.last(), Some(&(N - 1)));
    b.running.stop().await;
}

/// A connector file is hot-reloaded: pointed at another server it restarts and delivers
/// what it had queued; a broken file is refused with file:line:col and the running
/// connector carries on.
#[tokio::test]
async fn a_changed_connector_file_restarts_it_with_its_queue_and_a_bad_one_is_refused() {
    let dead = closed_addr();
    let dir = tempfile::tempdir().unwrap();
    let conns = dir.path().join("connectors");
    write(
        &conns,
        "hook.toml",
        &connector(dead, "inflight_window = 1\nqueue_len = 10\nconnect_timeout = \"1s\""),
    );
    write(&dir.path().join("rules"), "r.toml", &rule("hook", ""));
    let c = conns.display().to_string();
    let b = common::start_in(
        dir.path(),
        &[
            ("JUNCTION_CONNECTORS__DIR", c.as_str()),
            ("JUNCTION_RULE_ENGINE__RELOAD_INTERVAL", "50ms"),
        ],
    )
    .await;
    const N: i64 = 50;
    publish_all(&b, "data/x", (0..N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    wait_metrics(&b, "hook", "queued", |m| n(m, "queuing") == N as u64).await;

    // The same connector, now at a server that answers: what was queued arrives, in order.
    let (hook, live) = start_hook().await;
    write(
        &conns,
        "hook.toml",
        &connector(live, "inflight_window = 1\nqueue_len = 10\nconnect_timeout = \"1s\""),
    );
    let m = wait_metrics(&b, "hook", "delivered after the file changed", |m| {
        n(m, "success") == N as u64
    })
    .await;
    assert_eq!(n(&m, "dropped") + n(&m, "failed"), 0, "{m}");
    let got: Vec<i64> = hook.delivered().iter().filter_map(|v| v["i"].as_i64()).collect();
    assert_eq!(got, (0..N).collect::<Vec<_>>());

    // A broken file: refused with its position, the running connector keeps delivering.
    write(
        &conns,
        "hook.toml",
        &format!("{}\nbatch_size = \"many\"\n", connector(dead, "")),
    );
    let status_url = format!("http://{}/api/v5/rule_engine", b.http);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let st: Value = reqwest::get(&status_url).await.unwrap().json().await.unwrap();
        if st.to_string().contains("hook.toml:") {
            break st;
        }
        assert!(tokio::time::Instant::now() < deadline, "no refusal reported: {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let text = status.to_string();
    assert!(text.contains("hook.toml:7:14"), "{text}");
    publish_all(&b, "data/x", (N..2 * N).map(|i| format!(r#"{{"i": {i}}}"#))).await;
    wait_metrics(&b, "hook", "still delivering", |m| n(m, "success") == 2 * N as u64).await;
    let list: Value = reqwest::get(format!("http://{}/api/v5/connectors", b.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["status"], "connected", "{list}");
    b.running.stop().await;
}

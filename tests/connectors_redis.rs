//! The Redis connector behind rules, against a real Redis (scripts/services.sh starts one on
//! 127.0.0.1:6379; `JUNCTION_REDIS_ADDR` points elsewhere). Without a Redis the tests print
//! why and pass, unless `JUNCTION_REQUIRE_SERVICES=1`, where they fail. What the user sees
//! is checked: the keys and values in Redis, read back with the `redis` crate, and the
//! action's metrics (`matched = success + failed + inflight + queuing + dropped` at every
//! poll). Every key of a run starts with a prefix unique to that run.
//!
//! - every output of a rule is stored, in order, with batches of 10 sent as pipelines;
//! - a payload with spaces, quotes, `"; FLUSHALL` and RESP framing lands as one value;
//! - a WRONGTYPE reply is counted failed with Redis's message and later outputs still land;
//! - a Redis of the test's own (a second `redis-server` on a free port) stopped and
//!   restarted: the outputs buffered meanwhile arrive after the restart;
//! - the `examples/persistence/redis` files: client status, subscriptions, messages and
//!   retained messages in Redis.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, QoS};
use serde_json::Value;

/// The Redis of scripts/services.sh (`JUNCTION_REDIS_ADDR`, default 127.0.0.1:6379), or
/// `None` (with the reason printed) when none answers. Panics instead when
/// `JUNCTION_REQUIRE_SERVICES=1`.
fn redis_addr(test: &str) -> Option<String> {
    let addr = std::env::var("JUNCTION_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into());
    let reachable = addr
        .parse::<SocketAddr>()
        .ok()
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        return Some(addr);
    }
    let why = format!("{test}: no Redis at {addr} (start it with scripts/services.sh)");
    if std::env::var("JUNCTION_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{why}, and JUNCTION_REQUIRE_SERVICES=1");
    }
    eprintln!("SKIPPED {why}");
    None
}

/// A key prefix unique to this run and test.
fn prefix(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("jt:{test}:{}:{nanos}:", std::process::id())
}

async fn redis_conn(addr: &str) -> MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .expect("connecting to Redis timed out")
        .expect("connecting to Redis")
}

/// Deletes the keys of a prefix (the end of a test).
async fn cleanup(r: &mut MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = r.keys(format!("{prefix}*")).await.unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = r.del(keys).await;
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn broker(dir: &Path) -> common::TestBroker {
    let connectors = dir.join("connectors").display().to_string();
    common::start_in(dir, &[("JUNCTION_CONNECTORS__DIR", connectors.as_str())]).await
}

fn client(addr: SocketAddr, id: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    AsyncClient::new(o, 1000)
}

async fn publish_all(b: &common::TestBroker, id: &str, topic: &str, payloads: impl IntoIterator<Item = Vec<u8>>) {
    let (c, mut ev) = client(b.tcp, id);
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    for p in payloads {
        c.publish(topic, QoS::AtLeastOnce, false, p).await.unwrap();
    }
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
}

/// The action of rule `rule` on connector `name` (its metrics and last error).
async fn action(b: &common::TestBroker, name: &str, rule: &str) -> Option<Value> {
    let url = format!("http://{}/api/v5/connectors", b.http);
    let list: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let c = list.as_array()?.iter().find(|c| c["name"] == name)?;
    c["actions"].as_array()?.iter().find(|a| a["rule_id"] == rule).cloned()
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

/// Polls the metrics of the action of rule `rule` on connector `name` (checking the
/// identity each time) until `done` holds; 20 s at most.
async fn wait_metrics(
    b: &common::TestBroker,
    name: &str,
    rule: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        if let Some(a) = action(b, name, rule).await {
            let m = &a["metrics"];
            assert_identity(m);
            if done(m) {
                return a;
            }
            last = a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}; last {last}");
}

/// Polls `check` until it gives `Some`; 15 s at most.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn connector(addr: &str, extra: &str) -> String {
    format!(
        "type = \"redis\"\nserver = \"{addr}\"\npool_size = 2\nretry_backoff = {{ initial = \"10ms\", max = \"100ms\" }}\n\
         health_check_interval = \"1s\"\nconnect_timeout = \"1s\"\n{extra}\n"
    )
}

fn rule(id: &str, connector: &str, sql: &str, command: &str) -> String {
    format!(
        "[[rules]]\nid = \"{id}\"\nsql = '{sql}'\n[[rules.actions]]\ntype = \"redis\"\nconnector = \"{connector}\"\n\
         command = '''{command}'''\n"
    )
}

#[tokio::test]
async fn every_output_is_stored_with_pipelined_batches() {
    let Some(addr) = redis_addr("every_output_is_stored_with_pipelined_batches") else {
        return;
    };
    let p = prefix("all");
    let mut r = redis_conn(&addr).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "cache.toml",
        &connector(&addr, "batch_size = 10\nbatch_time = \"20ms\"\ninflight_window = 1"),
    );
    let sql = r#"SELECT payload.i AS i, clientid, timestamp FROM "data/#""#;
    let mut rules = rule("to_list", "cache", sql, &format!("RPUSH {p}list ${{i}}"));
    rules.push_str(&rule(
        "to_hash",
        "cache",
        sql,
        &format!("HSET {p}client:${{clientid}} state 1 last_i ${{i}} online_at ${{timestamp}}"),
    ));
    write(&dir.path().join("rules"), "r.toml", &rules);
    let b = broker(dir.path()).await;
    const N: i64 = 500;
    publish_all(
        &b,
        "pub-all",
        "data/x",
        (0..N).map(|i| format!(r#"{{"i": {i}}}"#).into_bytes()),
    )
    .await;
    let a = wait_metrics(&b, "cache", "to_list", "all stored", |m| n(m, "success") == N as u64).await;
    let m = &a["metrics"];
    assert_eq!(n(m, "matched"), N as u64);
    assert_eq!(n(m, "failed") + n(m, "dropped") + n(m, "retried"), 0, "{m}");
    // Every output, once, in order (window 1): batches of up to 10 as pipelines.
    let list: Vec<i64> = r.lrange(format!("{p}list"), 0, -1).await.unwrap();
    assert_eq!(list, (0..N).collect::<Vec<_>>());
    let a = wait_metrics(&b, "cache", "to_hash", "hash stored", |m| n(m, "success") == N as u64).await;
    assert_eq!(n(&a["metrics"], "failed"), 0, "{a}");
    let hash: std::collections::HashMap<String, String> = r.hgetall(format!("{p}client:pub-all")).await.unwrap();
    assert_eq!(hash["state"], "1");
    assert_eq!(hash["last_i"], (N - 1).to_string());
    assert!(
        hash["online_at"].parse::<i64>().is_ok_and(|t| t > 1_600_000_000_000),
        "{hash:?}"
    );

    let list: Value = reqwest::get(format!("http://{}/api/v5/connectors", b.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["type"], "redis");
    assert_eq!(list[0]["status"], "connected");
    cleanup(&mut r, &p).await;
    b.running.stop().await;
}

#[tokio::test]
async fn a_hostile_payload_lands_as_one_value() {
    let Some(addr) = redis_addr("a_hostile_payload_lands_as_one_value") else {
        return;
    };
    let p = prefix("hostile");
    let mut r = redis_conn(&addr).await;
    let sentinel = format!("{p}sentinel");
    let _: () = r.set(&sentinel, "still here").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("connectors"), "cache.toml", &connector(&addr, ""));
    // A quoted literal word with a space, and the payload as the value.
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule(
            "hostile",
            "cache",
            r#"SELECT payload, clientid FROM "raw/#""#,
            &format!(r#"HSET {p}h:${{clientid}} "field with space" ${{payload}} 'x "y"' ${{clientid}}"#),
        ),
    );
    let b = broker(dir.path()).await;
    let hostile = "a b \"quoted\" 'single' \"; FLUSHALL\r\n*1\r\n$8\r\nFLUSHALL\r\n; DEL x";
    publish_all(&b, "pub hostile", "raw/1", [hostile.as_bytes().to_vec()]).await;
    wait_metrics(&b, "cache", "hostile", "stored", |m| n(m, "success") == 1).await;
    let got: String = r.hget(format!("{p}h:pub hostile"), "field with space").await.unwrap();
    assert_eq!(got, hostile);
    let got: String = r.hget(format!("{p}h:pub hostile"), "x \"y\"").await.unwrap();
    assert_eq!(got, "pub hostile");
    let fields: i64 = r.hlen(format!("{p}h:pub hostile")).await.unwrap();
    assert_eq!(fields, 2);
    // Nothing was flushed.
    let s: String = r.get(&sentinel).await.unwrap();
    assert_eq!(s, "still here");
    cleanup(&mut r, &p).await;
    b.running.stop().await;
}

#[tokio::test]
async fn a_wrongtype_reply_is_failed_with_the_server_message_and_does_not_block() {
    let Some(addr) = redis_addr("a_wrongtype_reply_is_failed_with_the_server_message_and_does_not_block") else {
        return;
    };
    let p = prefix("wrongtype");
    let mut r = redis_conn(&addr).await;
    // Key 1 is a string: HSET on it gets WRONGTYPE.
    let _: () = r.set(format!("{p}k:1"), "a string").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "cache.toml",
        &connector(&addr, "inflight_window = 1"),
    );
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule(
            "wt",
            "cache",
            r#"SELECT payload.i AS i FROM "data/#""#,
            &format!("HSET {p}k:${{i}} v ${{i}}"),
        ),
    );
    let b = broker(dir.path()).await;
    publish_all(
        &b,
        "pub-wt",
        "data/x",
        (0..4).map(|i| format!(r#"{{"i": {i}}}"#).into_bytes()),
    )
    .await;
    let a = wait_metrics(&b, "cache", "wt", "settled", |m| n(m, "success") + n(m, "failed") == 4).await;
    let m = &a["metrics"];
    assert_eq!((n(m, "success"), n(m, "failed"), n(m, "retried")), (3, 1, 0), "{m}");
    let err = a["last_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("WRONGTYPE Operation against a key holding the wrong kind of value"),
        "{a}"
    );
    for i in [0, 2, 3] {
        let v: String = r.hget(format!("{p}k:{i}"), "v").await.unwrap();
        assert_eq!(v, i.to_string());
    }
    let s: String = r.get(format!("{p}k:1")).await.unwrap();
    assert_eq!(s, "a string");
    let rules = b.running.rules.clone().unwrap().rules();
    assert_eq!(rules[0].metrics.actions_failed_unknown.get(), 1);
    cleanup(&mut r, &p).await;
    b.running.stop().await;
}

#[tokio::test]
async fn a_wrongtype_reply_in_a_pipeline_fails_the_batch_and_the_other_commands_apply() {
    let Some(addr) = redis_addr("a_wrongtype_reply_in_a_pipeline_fails_the_batch_and_the_other_commands_apply") else {
        return;
    };
    let p = prefix("wrongtype-batch");
    let mut r = redis_conn(&addr).await;
    let _: () = r.set(format!("{p}k:1"), "a string").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "cache.toml",
        &connector(&addr, "inflight_window = 1\nbatch_size = 10\nbatch_time = \"300ms\""),
    );
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule(
            "wtb",
            "cache",
            r#"SELECT payload.i AS i FROM "data/#""#,
            &format!("HSET {p}k:${{i}} v ${{i}}"),
        ),
    );
    let b = broker(dir.path()).await;
    publish_all(
        &b,
        "pub-wtb",
        "data/x",
        (0..3).map(|i| format!(r#"{{"i": {i}}}"#).into_bytes()),
    )
    .await;
    let a = wait_metrics(&b, "cache", "wtb", "settled", |m| n(m, "success") + n(m, "failed") == 3).await;
    let m = &a["metrics"];
    // Only the bad command counts as failed, in a pipeline or alone: Redis applied the others.
    assert!(
        n(m, "failed") == 1 && n(m, "success") == 2 && n(m, "retried") == 0,
        "{m}"
    );
    let err = a["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("WRONGTYPE Operation against a key"), "{a}");
    for i in [0, 2] {
        let v: String = r.hget(format!("{p}k:{i}"), "v").await.unwrap();
        assert_eq!(v, i.to_string());
    }
    cleanup(&mut r, &p).await;
    b.running.stop().await;
}

/// A `redis-server` of the test's own, killed when dropped.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    fn start(bin: &str, port: u16, dir: &Path) -> OwnRedis {
        let child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        OwnRedis { child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_port(port: u16, up: bool) {
    wait_for(
        &format!("port {port} {}", if up { "up" } else { "down" }),
        || async move {
            let open = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
            (open == up).then_some(())
        },
    )
    .await
}

#[tokio::test]
async fn outputs_buffered_while_redis_is_down_arrive_after_restart() {
    // Needs the redis-server binary (services.sh installs it), not the shared server.
    let bin = std::env::var("JUNCTION_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let present = Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let why = format!("outputs_buffered_while_redis_is_down_arrive_after_restart: no `{bin}` binary");
        if std::env::var("JUNCTION_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("{why}, and JUNCTION_REQUIRE_SERVICES=1");
        }
        eprintln!("SKIPPED {why}");
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let data = tempfile::tempdir().unwrap();
    let mut server = OwnRedis::start(&bin, port, data.path());
    wait_port(port, true).await;
    let addr = format!("127.0.0.1:{port}");
    let p = prefix("outage");
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "own.toml",
        &connector(&addr, "inflight_window = 1\nbatch_size = 10\nqueue_len = 1000"),
    );
    write(
        &dir.path().join("rules"),
        "r.toml",
        &rule(
            "outage",
            "own",
            r#"SELECT payload.i AS i FROM "data/#""#,
            &format!("RPUSH {p}list ${{i}}"),
        ),
    );
    let b = broker(dir.path()).await;
    publish_all(
        &b,
        "pub-outage",
        "data/x",
        (0..10).map(|i| format!(r#"{{"i": {i}}}"#).into_bytes()),
    )
    .await;
    wait_metrics(&b, "own", "outage", "first 10", |m| n(m, "success") == 10).await;

    // Redis goes away: the outputs are matched and wait in the queue.
    server.stop();
    wait_port(port, false).await;
    publish_all(
        &b,
        "pub-outage",
        "data/x",
        (10..40).map(|i| format!(r#"{{"i": {i}}}"#).into_bytes()),
    )
    .await;
    let a = wait_metrics(&b, "own", "outage", "buffered", |m| {
        n(m, "matched") == 40 && n(m, "queuing") + n(m, "inflight") == 30
    })
    .await;
    let m = &a["metrics"];
    assert_eq!((n(m, "success"), n(m, "failed"), n(m, "dropped")), (10, 0, 0), "{m}");
    let list: Value = reqwest::get(format!("http://{}/api/v5/connectors", b.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = list[0]["status"].as_str().unwrap_or_default().to_string();
    assert!(status == "disconnected" || status == "connected", "{list}");

    // Restarted (empty: no persistence): every buffered output arrives, in order.
    let _server = OwnRedis::start(&bin, port, data.path());
    wait_port(port, true).await;
    let a = wait_metrics(&b, "own", "outage", "delivered after restart", |m| {
        n(m, "success") == 40
    })
    .await;
    let m = &a["metrics"];
    assert_eq!(
        n(m, "failed") + n(m, "dropped") + n(m, "queuing") + n(m, "inflight"),
        0,
        "{m}"
    );
    let mut r = redis_conn(&addr).await;
    let got: Vec<i64> = r.lrange(format!("{p}list"), 0, -1).await.unwrap();
    assert_eq!(got, (10..40).collect::<Vec<_>>());
    b.running.stop().await;
}

/// Copies `examples/persistence/redis` into `dir` (connectors/ and rules/), pointing the
/// connector at `addr`.
fn copy_example(dir: &Path, addr: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/persistence/redis");
    for sub in ["connectors", "rules"] {
        let mut n = 0;
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let text = text.replace("server = \"127.0.0.1:6379\"", &format!("server = \"{addr}\""));
                write(&dir.join(sub), &path.file_name().unwrap().to_string_lossy(), &text);
                n += 1;
            }
        }
        assert!(n > 0, "no files in {}", src.join(sub).display());
    }
}

#[tokio::test]
async fn the_persistence_example_stores_status_subscriptions_messages_and_retained() {
    let Some(addr) = redis_addr("the_persistence_example_stores_status_subscriptions_messages_and_retained") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    copy_example(dir.path(), &addr);
    let b = broker(dir.path()).await;
    let mut r = redis_conn(&addr).await;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = format!("jt-example-{}-{nanos}", std::process::id());
    let client_key = format!("mqtt:client:{id}");
    let sub_key = format!("mqtt:sub:{id}");

    let (c, mut ev) = client(b.tcp, &id);
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let online = wait_for("state online", || {
        let mut r = r.clone();
        let k = client_key.clone();
        async move {
            let h: std::collections::HashMap<String, String> = r.hgetall(&k).await.ok()?;
            (h.get("state").map(String::as_str) == Some("online")).then_some(h)
        }
    })
    .await;
    let connected_at: i64 = online["connected_at"].parse().unwrap();
    assert!(connected_at > 1_600_000_000_000, "{online:?}");
    assert_eq!(online["reason"], "", "{online:?}");
    assert!(!online.contains_key("disconnected_at"), "{online:?}");

    c.subscribe("a/b", QoS::AtLeastOnce).await.unwrap();
    c.subscribe("c/#", QoS::AtMostOnce).await.unwrap();
    let want = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let both = want(&[("a/b", "1"), ("c/#", "0")]);
    wait_for("two subscriptions", || {
        let mut r = r.clone();
        let (k, both) = (sub_key.clone(), both.clone());
        async move {
            let h: std::collections::HashMap<String, String> = r.hgetall(&k).await.ok()?;
            (h == both).then_some(())
        }
    })
    .await;
    c.unsubscribe("c/#").await.unwrap();
    let one = want(&[("a/b", "1")]);
    wait_for("one subscription", || {
        let mut r = r.clone();
        let (k, one) = (sub_key.clone(), one.clone());
        async move {
            let h: std::collections::HashMap<String, String> = r.hgetall(&k).await.ok()?;
            (h == one).then_some(())
        }
    })
    .await;

    // Messages and retained messages.
    let (keep, gone, plain) = (format!("keep/{id}"), format!("gone/{id}"), format!("plain/{id}"));
    c.publish(&keep, QoS::AtLeastOnce, true, "v0").await.unwrap();
    c.publish(&keep, QoS::AtMostOnce, true, "v1").await.unwrap();
    c.publish(&gone, QoS::AtLeastOnce, true, "v").await.unwrap();
    c.publish(&gone, QoS::AtLeastOnce, true, "").await.unwrap();
    c.publish(&plain, QoS::AtLeastOnce, false, vec![b'{', 0xff, 0, b'}'])
        .await
        .unwrap();
    type Hash = std::collections::HashMap<String, Vec<u8>>;
    // The messages of a topic, oldest first, once its index holds `n` ids.
    let messages = |topic: String, n: usize| {
        let r = r.clone();
        async move {
            wait_for(&format!("{n} messages on {topic}"), || {
                let mut r = r.clone();
                let topic = topic.clone();
                async move {
                    let ids: Vec<String> = r.zrange(format!("mqtt:msgs:{topic}"), 0, -1).await.ok()?;
                    let mut out = Vec::new();
                    for i in &ids {
                        let h: Hash = r.hgetall(format!("mqtt:msg:{i}")).await.ok()?;
                        out.push(h);
                    }
                    (ids.len() == n && out.iter().all(|h| h.len() == 7)).then_some((ids, out))
                }
            })
            .await
        }
    };
    let text = |h: &Hash, k: &str| String::from_utf8_lossy(&h[k]).into_owned();
    let (plain_ids, plain_msgs) = messages(plain.clone(), 1).await;
    let m = &plain_msgs[0];
    assert_eq!(m["payload"], vec![b'{', 0xff, 0, b'}'], "binary payload kept as bytes");
    assert_eq!(
        [
            text(m, "id"),
            text(m, "sender"),
            text(m, "topic"),
            text(m, "qos"),
            text(m, "retain")
        ],
        [
            plain_ids[0].rsplit(':').next().unwrap().to_string(),
            id.clone(),
            plain.clone(),
            "1".into(),
            "false".into()
        ]
    );
    assert!(text(m, "arrived").parse::<i64>().unwrap() >= connected_at, "{m:?}");
    assert_eq!(plain_ids[0], format!("{}:{}", text(m, "arrived"), text(m, "id")));
    // Two messages in one millisecond have one score: sort by payload, not by the index.
    let (keep_ids, keep_msgs) = messages(keep.clone(), 2).await;
    let mut got: Vec<(String, String, String, String)> = keep_msgs
        .iter()
        .map(|m| (text(m, "payload"), text(m, "qos"), text(m, "retain"), text(m, "id")))
        .collect();
    got.sort();
    let v1_id = got[1].3.clone();
    assert_eq!(
        got.iter()
            .map(|g| (g.0.as_str(), g.1.as_str(), g.2.as_str()))
            .collect::<Vec<_>>(),
        [("v0", "1", "true"), ("v1", "0", "true")]
    );
    let (gone_ids, _) = messages(gone.clone(), 2).await;
    let retained = wait_for("retained keep = v1 and gone cleared", || {
        let mut r = r.clone();
        let (k, g) = (format!("mqtt:retain:{keep}"), format!("mqtt:retain:{gone}"));
        async move {
            let h: Hash = r.hgetall(&k).await.ok()?;
            let cleared: bool = !r.exists(&g).await.ok()?;
            (h.get("payload").map(Vec::as_slice) == Some(b"v1".as_slice()) && cleared).then_some(h)
        }
    })
    .await;
    assert_eq!(
        [text(&retained, "qos"), text(&retained, "sender"), text(&retained, "id")],
        ["0".to_string(), id.clone(), v1_id]
    );
    let mut keys = vec![format!("mqtt:retain:{keep}")];
    for t in [&keep, &gone, &plain] {
        keys.push(format!("mqtt:msgs:{t}"));
    }
    for i in plain_ids.iter().chain(&keep_ids).chain(&gone_ids) {
        keys.push(format!("mqtt:msg:{i}"));
    }
    let _: Result<(), _> = r.del(keys).await;

    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
    let offline = wait_for("state offline", || {
        let mut r = r.clone();
        let k = client_key.clone();
        async move {
            let h: std::collections::HashMap<String, String> = r.hgetall(&k).await.ok()?;
            (h.get("state").map(String::as_str) == Some("offline")).then_some(h)
        }
    })
    .await;
    let disconnected_at: i64 = offline["disconnected_at"].parse().unwrap();
    assert!(disconnected_at >= connected_at, "{offline:?}");
    assert_eq!(offline["connected_at"], connected_at.to_string(), "{offline:?}");
    assert_eq!(offline["reason"], "normal", "{offline:?}");
    let _: Result<(), _> = r.del(&[&client_key, &sub_key]).await;
    b.running.stop().await;
}

#[tokio::test]
async fn a_bad_command_template_is_refused_with_its_position() {
    // No server needed: the rule is refused when it loads.
    for (command, want) in [
        ("${cmd} k v", "must be literal"),
        ("SET k \"unclosed", "without a closing"),
        ("SET k ${payload", "bad template"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("connectors"),
            "cache.toml",
            &connector("127.0.0.1:6379", ""),
        );
        write(
            &dir.path().join("rules"),
            "r.toml",
            &rule("bad", "cache", r#"SELECT * FROM "t/#""#, command),
        );
        let e: Vec<(String, String)> = vec![
            ("JUNCTION_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
            ("JUNCTION_LISTENERS__WS__DEFAULT__ENABLE".into(), "false".into()),
            ("JUNCTION_DASHBOARD__LISTENERS__HTTP__ENABLE".into(), "false".into()),
            ("JUNCTION_NODE__DATA_DIR".into(), dir.path().display().to_string()),
            (
                "JUNCTION_RULE_ENGINE__RULES_DIR".into(),
                dir.path().join("rules").display().to_string(),
            ),
            (
                "JUNCTION_CONNECTORS__DIR".into(),
                dir.path().join("connectors").display().to_string(),
            ),
        ];
        let cfg = junction::config::load(None, e).unwrap();
        let err = match junction::app::start(&cfg).await {
            Ok(_) => panic!("a bad command `{command}` must be refused"),
            Err(err) => err.to_string(),
        };
        // `command = '''...'''` is on line 7, its value at column 11.
        let at = format!("{}:7:11:", dir.path().join("rules").join("r.toml").display());
        assert!(err.contains(&at) && err.contains(want), "{command}: {err}");
    }
}

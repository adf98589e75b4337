//! Subscription by broker (`mqtt.subscribe_by_broker`): on connect the broker subscribes a
//! client to the topics a connector's query finds for it, against the real servers of
//! `scripts/services.sh`: PostgreSQL (`JUNCTION_POSTGRES_PORT`, default 5432, database
//! `test`, user `postgres`), MariaDB as MySQL (`JUNCTION_MARIADB_PORT`, default 3306,
//! user/password/database `test`) and Redis (`JUNCTION_REDIS_ADDR`, default
//! 127.0.0.1:6379). A test whose server does not answer is skipped with a printed reason,
//! and fails instead with `JUNCTION_REQUIRE_SERVICES=1`. Each test uses its own table or
//! key (unique name) and removes it.
//!
//! What is checked is what a client sees: after its CONNACK, a message published to a
//! looked-up topic reaches it at the stored QoS; `${username}` is bound; a hostile client
//! id is bound as data; a resumed session gets the lookup again; a connector whose server
//! is down, or a lookup slower than its timeout, delays the CONNACK by at most the timeout
//! and is counted in `junction_subscribe_by_broker_failed_total`, and the static
//! `mqtt.auto_subscribe` topics still apply.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};

use common::db::{my, my_port, pg, pg_port};
use common::skip;

fn redis_addr() -> Option<String> {
    let addr = std::env::var("JUNCTION_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into());
    let reachable = addr
        .parse::<SocketAddr>()
        .ok()
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok());
    if reachable {
        Some(addr)
    } else {
        skip("Redis", format!("nothing answers at {addr}"))
    }
}

async fn redis_conn(addr: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .expect("connecting to Redis timed out")
        .expect("connecting to Redis")
}

/// A name no other run uses (tables, keys, client ids).
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A broker with connector `db` (file text `connector`) and `mqtt.subscribe_by_broker`
/// set to `by_broker` (a TOML value), plus extra settings.
async fn broker(dir: &Path, connector: &str, by_broker: &str, extra: &[(&str, &str)]) -> common::TestBroker {
    let cdir = dir.join("connectors");
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(cdir.join("db.toml"), connector).unwrap();
    let c = cdir.display().to_string();
    let mut env = vec![
        ("JUNCTION_CONNECTORS__DIR", c.as_str()),
        ("JUNCTION_MQTT__SUBSCRIBE_BY_BROKER", by_broker),
    ];
    env.extend_from_slice(extra);
    common::start_in(dir, &env).await
}

fn sql_connector(ty: &str, port: u16, user: &str, password: Option<&str>) -> String {
    let password = password.map(|p| format!("password = \"{p}\"\n")).unwrap_or_default();
    format!(
        "type = \"{ty}\"\nserver = \"127.0.0.1:{port}\"\ndatabase = \"test\"\nusername = \"{user}\"\n{password}\
         retry_backoff = {{ initial = \"20ms\", max = \"500ms\" }}\n"
    )
}

fn by_broker(query: &str, timeout: &str) -> String {
    format!("{{ connector = \"db\", query = '{query}', timeout = \"{timeout}\" }}")
}

/// A client connected (its CONNACK received), how long the CONNACK took, and whether the
/// session was present.
async fn connect(
    addr: SocketAddr,
    id: &str,
    username: Option<&str>,
    clean: bool,
) -> (AsyncClient, EventLoop, Duration, bool) {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(clean);
    if let Some(u) = username {
        o.set_credentials(u, "pw");
    }
    let (c, mut ev) = AsyncClient::new(o, 100);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => {
                assert_eq!(a.code, rumqttc::ConnectReturnCode::Success, "{a:?}");
                return (c, ev, start.elapsed(), a.session_present);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("{id}: connection failed: {e}"),
            Err(_) => panic!("{id}: no CONNACK within 15 s"),
        }
    }
}

/// Publishes one message at QoS 2 from a client of its own.
async fn publish(addr: SocketAddr, topic: &str, payload: &str) {
    let (c, mut ev, _, _) = connect(addr, &unique("pub"), None, true).await;
    c.publish(topic, QoS::ExactlyOnce, false, payload.as_bytes().to_vec())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubComp(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher failed: {e}"),
            Err(_) => panic!("publish to {topic} not completed within 10 s"),
        }
    }
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ev.poll().await.is_ok() {} }).await;
}

/// The next message the client receives within `secs`: (topic, QoS, payload).
async fn receive(ev: &mut EventLoop, secs: u64) -> Option<(String, QoS, String)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                return Some((p.topic, p.qos, String::from_utf8_lossy(&p.payload).into_owned()))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber failed: {e}"),
            Err(_) => return None,
        }
    }
}

/// Publishes to `topic` and checks the client receives it at `qos`.
async fn delivered(b: &common::TestBroker, ev: &mut EventLoop, topic: &str, qos: QoS) {
    let payload = unique("m");
    publish(b.tcp, topic, &payload).await;
    let got = receive(ev, 10).await;
    assert_eq!(got, Some((topic.to_string(), qos, payload)), "on {topic}");
}

/// Publishes to `topic` and checks the client receives nothing.
async fn not_delivered(b: &common::TestBroker, ev: &mut EventLoop, topic: &str) {
    publish(b.tcp, topic, "no").await;
    let got = receive(ev, 1).await;
    assert_eq!(got, None, "on {topic}");
}

/// A counter of `/metrics`.
async fn metric(b: &common::TestBroker, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", b.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A TCP port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    drop(l);
    p
}

const HOSTILE: &str = "x'; DROP TABLE {t}; -- \" ${clientid} ?";

// ---------------------------------------------------------------------------
// PostgreSQL

#[tokio::test]
async fn postgres_rows_subscribe_the_client_at_their_qos() {
    let Some(mut c) = pg().await else { return };
    let t = unique("sbb_pg");
    let id = unique("pgc");
    let hostile = HOSTILE.replace("{t}", &t);
    sqlx::query(&format!(
        "CREATE TABLE {t} (clientid TEXT, username TEXT, topic TEXT NOT NULL, qos SMALLINT)"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    for (cid, user, topic, qos) in [
        (id.as_str(), "", format!("{t}/a"), Some(1i16)),
        (id.as_str(), "", format!("{t}/b/+"), Some(0)),
        (id.as_str(), "", format!("{t}/c"), None),
        ("someone-else", "", format!("{t}/other"), Some(1)),
        (hostile.as_str(), "", format!("{t}/hostile"), Some(2)),
        ("by-user", "alice", format!("{t}/alice"), Some(2)),
    ] {
        sqlx::query(&format!("INSERT INTO {t} VALUES ($1, $2, $3, $4)"))
            .bind(cid)
            .bind(user)
            .bind(topic)
            .bind(qos)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let query = format!(
        "SELECT topic, qos FROM {t} WHERE clientid = ${{clientid}} OR (username <> \"\" AND username = ${{username}})"
    );
    let query = query.replace('"', "'");
    let b = broker(
        dir.path(),
        &sql_connector("postgres", pg_port(), "postgres", None),
        &format!("{{ connector = \"db\", query = \"{query}\", timeout = \"3s\" }}"),
        &[],
    )
    .await;

    let (_c1, mut ev, _, _) = connect(b.tcp, &id, None, true).await;
    delivered(&b, &mut ev, &format!("{t}/a"), QoS::AtLeastOnce).await;
    delivered(&b, &mut ev, &format!("{t}/b/x"), QoS::AtMostOnce).await;
    delivered(&b, &mut ev, &format!("{t}/c"), QoS::AtMostOnce).await;
    not_delivered(&b, &mut ev, &format!("{t}/other")).await;

    // ${username}: the rows of user alice, whatever the client id.
    let (_c2, mut ev2, _, _) = connect(b.tcp, &unique("alice-client"), Some("alice"), true).await;
    delivered(&b, &mut ev2, &format!("{t}/alice"), QoS::ExactlyOnce).await;

    // A hostile client id is a value, not SQL: it finds its own row, the table survives.
    let (_c3, mut ev3, _, _) = connect(b.tcp, &hostile, None, true).await;
    delivered(&b, &mut ev3, &format!("{t}/hostile"), QoS::ExactlyOnce).await;
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {t}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 6);

    assert!(metric(&b, "junction_subscribe_by_broker_lookups_total").await >= 3);
    assert_eq!(metric(&b, "junction_subscribe_by_broker_failed_total").await, 0);
    b.running.stop().await;
    sqlx::query(&format!("DROP TABLE {t}")).execute(&mut c).await.unwrap();
}

// ---------------------------------------------------------------------------
// MySQL (MariaDB)

#[tokio::test]
async fn mysql_rows_subscribe_the_client_at_their_qos() {
    let Some(mut c) = my().await else { return };
    let t = unique("sbb_my");
    let id = unique("myc");
    let hostile = HOSTILE.replace("{t}", &t);
    sqlx::query(&format!(
        "CREATE TABLE {t} (clientid VARCHAR(255), username VARCHAR(255), topic VARCHAR(255) NOT NULL, qos TINYINT)"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    for (cid, user, topic, qos) in [
        (id.as_str(), "", format!("{t}/a"), Some(2i8)),
        (id.as_str(), "", format!("{t}/b/#"), Some(1)),
        ("someone-else", "", format!("{t}/other"), Some(1)),
        (hostile.as_str(), "", format!("{t}/hostile"), Some(1)),
        ("by-user", "bob", format!("{t}/bob"), Some(1)),
    ] {
        sqlx::query(&format!("INSERT INTO {t} VALUES (?, ?, ?, ?)"))
            .bind(cid)
            .bind(user)
            .bind(topic)
            .bind(qos)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &sql_connector("mysql", my_port(), "test", Some("test")),
        &by_broker(
            &format!("SELECT topic, qos FROM {t} WHERE clientid = ${{clientid}} OR username = ${{username}}"),
            "3s",
        ),
        &[],
    )
    .await;

    let (_c1, mut ev, _, _) = connect(b.tcp, &id, None, true).await;
    delivered(&b, &mut ev, &format!("{t}/a"), QoS::ExactlyOnce).await;
    delivered(&b, &mut ev, &format!("{t}/b/x/y"), QoS::AtLeastOnce).await;
    not_delivered(&b, &mut ev, &format!("{t}/other")).await;

    let (_c2, mut ev2, _, _) = connect(b.tcp, &unique("bob-client"), Some("bob"), true).await;
    delivered(&b, &mut ev2, &format!("{t}/bob"), QoS::AtLeastOnce).await;

    let (_c3, mut ev3, _, _) = connect(b.tcp, &hostile, None, true).await;
    delivered(&b, &mut ev3, &format!("{t}/hostile"), QoS::AtLeastOnce).await;
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {t}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 5);

    assert_eq!(metric(&b, "junction_subscribe_by_broker_failed_total").await, 0);
    b.running.stop().await;
    sqlx::query(&format!("DROP TABLE {t}")).execute(&mut c).await.unwrap();
}

// ---------------------------------------------------------------------------
// Redis

#[tokio::test]
async fn redis_hash_subscribes_the_client_and_a_resumed_session_looks_up_again() {
    let Some(addr) = redis_addr() else { return };
    let mut r = redis_conn(&addr).await;
    let p = unique("sbb_redis");
    let id = unique("rc");
    let hostile = HOSTILE.replace("{t}", &p);
    let key = |cid: &str| format!("mqtt:sub:{cid}");
    let _: () = r.hset(key(&id), format!("{p}/a"), "1").await.unwrap();
    let _: () = r.hset(key(&id), format!("{p}/b/+"), "2").await.unwrap();
    let _: () = r.hset(key("someone-else"), format!("{p}/other"), "1").await.unwrap();
    let _: () = r.hset(key(&hostile), format!("{p}/hostile"), "1").await.unwrap();
    let user = format!("{p}-carol");
    let _: () = r
        .hset(format!("mqtt:usersub:{user}"), format!("{p}/carol"), "2")
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // The default query (EMQX 4's `HGETALL mqtt:sub:${clientid}`) and a `${username}` one.
    let sources = r#"[{ connector = "db" }, { connector = "db", query = 'HGETALL "mqtt:usersub:${username}"' }]"#;
    let b = broker(
        dir.path(),
        &format!("type = \"redis\"\nserver = \"{addr}\"\n"),
        sources,
        &[],
    )
    .await;

    let (c1, mut ev, _, present) = connect(b.tcp, &id, None, false).await;
    assert!(!present);
    delivered(&b, &mut ev, &format!("{p}/a"), QoS::AtLeastOnce).await;
    delivered(&b, &mut ev, &format!("{p}/b/x"), QoS::ExactlyOnce).await;
    not_delivered(&b, &mut ev, &format!("{p}/other")).await;

    // A resumed session: the lookup runs again and adds what is new.
    let _: () = r.hset(key(&id), format!("{p}/new"), "1").await.unwrap();
    c1.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while ev.poll().await.is_ok() {} }).await;
    let (_c1, mut ev, _, present) = connect(b.tcp, &id, None, false).await;
    assert!(present, "the session is resumed");
    delivered(&b, &mut ev, &format!("{p}/new"), QoS::AtLeastOnce).await;
    delivered(&b, &mut ev, &format!("{p}/a"), QoS::AtLeastOnce).await;

    // ${username} in a key: one argument, spaces and quotes included.
    let (_c2, mut ev2, _, _) = connect(b.tcp, &unique("carol-client"), Some(&user), true).await;
    delivered(&b, &mut ev2, &format!("{p}/carol"), QoS::ExactlyOnce).await;

    // A hostile client id is one argument: it finds its own hash.
    let (_c3, mut ev3, _, _) = connect(b.tcp, &hostile, None, true).await;
    delivered(&b, &mut ev3, &format!("{p}/hostile"), QoS::AtLeastOnce).await;

    assert_eq!(metric(&b, "junction_subscribe_by_broker_failed_total").await, 0);
    b.running.stop().await;
    let _: () = r
        .del(&[
            key(&id),
            key("someone-else"),
            key(&hostile),
            format!("mqtt:usersub:{user}"),
        ])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lookup_slower_than_its_timeout_delays_the_connack_by_the_timeout_only() {
    let Some(addr) = redis_addr() else { return };
    let p = unique("sbb_slow");
    let dir = tempfile::tempdir().unwrap();
    // BLPOP on an empty list answers after 5 s; the lookup may take 500 ms.
    let b = broker(
        dir.path(),
        &format!("type = \"redis\"\nserver = \"{addr}\"\n"),
        &by_broker(&format!("BLPOP {p}:never 5"), "500ms"),
        &[(
            "JUNCTION_MQTT__AUTO_SUBSCRIBE",
            "[{ topic = \"static/${clientid}\", qos = 1 }]",
        )],
    )
    .await;
    let id = unique("slow");
    let (_c, mut ev, took, _) = connect(b.tcp, &id, None, true).await;
    assert!(
        took >= Duration::from_millis(400),
        "the CONNACK waited for the lookup: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "CONNACK after {took:?}");
    assert_eq!(metric(&b, "junction_subscribe_by_broker_failed_total").await, 1);
    // The static topics still apply.
    delivered(&b, &mut ev, &format!("static/{id}"), QoS::AtLeastOnce).await;
    b.running.stop().await;
}

// ---------------------------------------------------------------------------
// Servers that are down

/// A connector whose server is down: the client still connects (within the timeout plus a
/// second), the failure is counted, and `mqtt.auto_subscribe` still applies.
async fn unreachable(connector: String) {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector,
        &by_broker("", "1s").replace("query = '', ", ""),
        &[(
            "JUNCTION_MQTT__AUTO_SUBSCRIBE",
            "[{ topic = \"static/${clientid}\", qos = 1 }]",
        )],
    )
    .await;
    for i in 0..2 {
        let failed = metric(&b, "junction_subscribe_by_broker_failed_total").await;
        let lookups = metric(&b, "junction_subscribe_by_broker_lookups_total").await;
        let id = unique(&format!("down{i}"));
        let (_c, mut ev, took, _) = connect(b.tcp, &id, None, true).await;
        assert!(took < Duration::from_secs(2), "CONNACK after {took:?}");
        assert_eq!(
            metric(&b, "junction_subscribe_by_broker_failed_total").await,
            failed + 1
        );
        assert_eq!(
            metric(&b, "junction_subscribe_by_broker_lookups_total").await,
            lookups + 1
        );
        // (The publisher's own lookup fails too.)
        delivered(&b, &mut ev, &format!("static/{id}"), QoS::AtLeastOnce).await;
    }
    b.running.stop().await;
}

#[tokio::test]
async fn postgres_down_the_client_connects_anyway_and_the_failure_is_counted() {
    unreachable(sql_connector("postgres", closed_port(), "postgres", None)).await;
}

#[tokio::test]
async fn mysql_down_the_client_connects_anyway_and_the_failure_is_counted() {
    unreachable(sql_connector("mysql", closed_port(), "test", Some("test"))).await;
}

#[tokio::test]
async fn redis_down_the_client_connects_anyway_and_the_failure_is_counted() {
    unreachable(format!("type = \"redis\"\nserver = \"127.0.0.1:{}\"\n", closed_port())).await;
}

// ---------------------------------------------------------------------------
// Refused at start

#[tokio::test]
async fn a_bad_entry_is_refused_at_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("connectors");
    std::fs::create_dir_all(&cdir).unwrap();
    std::fs::write(
        cdir.join("hook.toml"),
        "type = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n",
    )
    .unwrap();
    std::fs::write(
        cdir.join("pg.toml"),
        sql_connector("postgres", closed_port(), "postgres", None),
    )
    .unwrap();
    let start = |value: &str| {
        let env: Vec<(String, String)> = [
            ("JUNCTION_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0".to_string()),
            ("JUNCTION_LISTENERS__WS__DEFAULT__BIND", "127.0.0.1:0".to_string()),
            ("JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND", "127.0.0.1:0".to_string()),
            ("JUNCTION_NODE__DATA_DIR", dir.path().join("data").display().to_string()),
            (
                "JUNCTION_RULE_ENGINE__RULES_DIR",
                dir.path().join("rules").display().to_string(),
            ),
            (
                "JUNCTION_RULE_ENGINE__FUNCTIONS_DIR",
                dir.path().join("functions").display().to_string(),
            ),
            ("JUNCTION_CONNECTORS__DIR", cdir.display().to_string()),
            ("JUNCTION_MQTT__SUBSCRIBE_BY_BROKER", value.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let cfg = junction::config::load(None, env).unwrap();
        async move { junction::app::start(&cfg).await.err().map(|e| e.to_string()) }
    };
    let e = start("{ connector = \"nope\" }").await.unwrap();
    assert!(e.contains("no connector `nope`") && e.contains("hook, pg"), "{e}");
    let e = start("{ connector = \"hook\" }").await.unwrap();
    assert!(e.contains("runs no queries"), "{e}");
    let e = start("{ connector = \"pg\", query = \"DELETE FROM t WHERE c = ${clientid}\" }")
        .await
        .unwrap();
    assert!(e.contains("must be a SELECT"), "{e}");
    // A good one starts (its server being down is no reason to refuse).
    assert_eq!(start("{ connector = \"pg\" }").await, None);
}

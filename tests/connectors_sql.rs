//! The SQL connectors behind rules, against the real servers of `scripts/services.sh`:
//! PostgreSQL (`JUNCTION_POSTGRES_PORT`, default 5432, database `test`, user `postgres`),
//! TimescaleDB in PGlite (`JUNCTION_TIMESCALEDB_PORT`, default 5433, one connection at a
//! time) and MariaDB as MySQL (`JUNCTION_MARIADB_PORT`, default 3306, user/password/database
//! `test`). A test whose server does not answer is skipped with a printed reason, and fails
//! instead with `JUNCTION_REQUIRE_SERVICES=1`. Each test uses its own table (unique name)
//! and checks the rows in it, plus the action's metrics.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;
use sqlx::{Connection, Row};

use common::db::{my, my_port, pg, pg_port};
use common::{port, skip};

fn ts_port() -> u16 {
    port("JUNCTION_TIMESCALEDB_PORT", 5433)
}

/// PGlite serves one connection at a time: connecting waits while another is open.
async fn ts() -> Option<sqlx::PgConnection> {
    let url = format!("postgres://postgres:x@127.0.0.1:{}/postgres?sslmode=disable", ts_port());
    match tokio::time::timeout(Duration::from_secs(60), sqlx::PgConnection::connect(&url)).await {
        Ok(Ok(mut c)) => {
            // One session for every connection: drop the prepared statements of the last one.
            sqlx::raw_sql("DEALLOCATE ALL").execute(&mut c).await.unwrap();
            Some(c)
        }
        Ok(Err(e)) => skip("TimescaleDB (PGlite)", e),
        Err(_) => skip("TimescaleDB (PGlite)", "connect timed out"),
    }
}

/// A table name no other run uses.
fn table(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}", std::process::id())
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

async fn broker(dir: &Path, connector: &str, rule: &str) -> common::TestBroker {
    write(&dir.join("connectors"), "db.toml", connector);
    write(&dir.join("rules"), "r.toml", rule);
    let c = dir.join("connectors").display().to_string();
    common::start_in(dir, &[("JUNCTION_CONNECTORS__DIR", c.as_str())]).await
}

fn rule(ty: &str, topic: &str, select: &str, sql: &str, extra: &str) -> String {
    format!(
        "[[rules]]\nid = \"to_db\"\nsql = '''SELECT {select} FROM \"{topic}\"'''\n[[rules.actions]]\ntype = \"{ty}\"\n\
         connector = \"db\"\nsql = '''{sql}'''\n{extra}\n"
    )
}

fn connector(ty: &str, port: u16, user: &str, db: &str, extra: &str) -> String {
    format!(
        "type = \"{ty}\"\nserver = \"127.0.0.1:{port}\"\ndatabase = \"{db}\"\nusername = \"{user}\"\npassword = \"{user}\"\n\
         retry_backoff = {{ initial = \"20ms\", max = \"500ms\" }}\nhealth_check_interval = \"1s\"\n{extra}\n"
    )
}

async fn publish_all(addr: SocketAddr, topic: &str, payloads: impl IntoIterator<Item = String>) {
    let mut o = MqttOptions::new(format!("pub-{}", table("c")), addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    let (c, mut ev) = AsyncClient::new(o, 1000);
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    for p in payloads {
        c.publish(topic, QoS::AtLeastOnce, false, p).await.unwrap();
    }
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), driver).await;
}

async fn metrics(b: &common::TestBroker) -> Option<(Value, Value)> {
    metrics_at(b.http).await
}

async fn metrics_at(http: SocketAddr) -> Option<(Value, Value)> {
    let url = format!("http://{http}/api/v5/connectors");
    let list: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    let a = list.get(0)?["actions"].get(0)?.clone();
    Some((a["metrics"].clone(), a["last_error"].clone()))
}

fn n(m: &Value, k: &str) -> u64 {
    m[k].as_u64().unwrap_or(0)
}

/// Polls the action's metrics until `done` (checking the identity each time).
async fn wait(b: &common::TestBroker, secs: u64, what: &str, done: impl Fn(&Value) -> bool) -> (Value, Value) {
    wait_at(b.http, secs, what, done).await
}

async fn wait_at(http: SocketAddr, secs: u64, what: &str, done: impl Fn(&Value) -> bool) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some((m, e)) = metrics_at(http).await {
            assert_eq!(
                n(&m, "matched"),
                n(&m, "success") + n(&m, "failed") + n(&m, "inflight") + n(&m, "queuing") + n(&m, "dropped"),
                "{m}"
            );
            if done(&m) {
                return (m, e);
            }
            last = serde_json::json!({"metrics": m, "last_error": e});
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}; last {last}");
}

/// Runs `n` messages through a rule into PostgreSQL table `t`; returns rows/s.
async fn pg_run(t: &str, batch: &str, count: i64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector("postgres", pg_port(), "postgres", "test", batch),
        &rule(
            "postgres",
            "pg/#",
            "payload.i AS i, clientid, payload, timestamp",
            &format!("INSERT INTO {t}(i, clientid, payload, ts) VALUES (${{i}}, ${{clientid}}, ${{payload}}, ${{timestamp}})"),
            "",
        ),
    )
    .await;
    wait(&b, 10, "connected", |_| true).await;
    let start = Instant::now();
    publish_all(
        b.tcp,
        "pg/x",
        (0..count).map(|i| format!(r#"{{"i": {i}, "s": "v{i}"}}"#)),
    )
    .await;
    let (m, _) = wait(&b, 60, "all rows", |m| n(m, "success") == count as u64).await;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    assert_eq!(n(&m, "failed") + n(&m, "dropped"), 0, "{m}");
    b.running.stop().await;
    rate
}

#[tokio::test]
async fn postgres_1000_messages_batched_every_row_once() {
    let Some(mut c) = pg().await else { return };
    let t = table("jt_pg");
    let t1 = format!("{t}_b1");
    for name in [&t, &t1] {
        sqlx::query(&format!(
            "CREATE TABLE {name} (i INT NOT NULL, clientid TEXT, payload JSONB, ts TIMESTAMPTZ)"
        ))
        .execute(&mut c)
        .await
        .unwrap();
    }
    const N: i64 = 1000;
    let batched = pg_run(&t, "batch_size = 100\nbatch_time = \"20ms\"", N).await;
    let rows = sqlx::query(&format!(
        "SELECT count(*), count(DISTINCT i), min(i), max(i), count(*) FILTER (WHERE payload->>'s' = 'v' || i AND ts > now() - interval '1 hour' AND clientid LIKE 'pub-%') FROM {t}"
    ))
    .fetch_one(&mut c)
    .await
    .unwrap();
    let got: (i64, i64, i32, i32, i64) = (rows.get(0), rows.get(1), rows.get(2), rows.get(3), rows.get(4));
    assert_eq!(got, (N, N, 0, (N - 1) as i32, N));
    // The same with batch_size 1, for the rate.
    let single = pg_run(&t1, "batch_size = 1", N).await;
    let (cnt,): (i64,) = sqlx::query_as(&format!("SELECT count(DISTINCT i) FROM {t1}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(cnt, N);
    eprintln!(
        "postgres: {N} messages end to end: batch_size 100: {batched:.0} rows/s; batch_size 1: {single:.0} rows/s"
    );
    for name in [&t, &t1] {
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
    }
}

const NASTY: &str = r#"it's "quoted" \ '; DROP TABLE x; -- ${clientid} $1 ?"#;

#[tokio::test]
async fn postgres_quotes_and_injection_land_as_data() {
    let Some(mut c) = pg().await else { return };
    let t = table("jt_pginj");
    sqlx::query(&format!("CREATE TABLE {t} (n INT, s TEXT, raw TEXT)"))
        .execute(&mut c)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector("postgres", pg_port(), "postgres", "test", ""),
        &rule(
            "postgres",
            "inj/#",
            "payload.n AS n, payload.s AS s, payload",
            // A placeholder in quotes is a parameter too.
            &format!("INSERT INTO {t}(n, s, raw) VALUES (${{n}}, '${{s}}', ${{payload}})"),
            "",
        ),
    )
    .await;
    let payload = serde_json::json!({"n": 1, "s": NASTY}).to_string();
    publish_all(b.tcp, "inj/x", [payload.clone()]).await;
    wait(&b, 20, "one row", |m| n(m, "success") == 1).await;
    let (s, raw): (String, String) = sqlx::query_as(&format!("SELECT s, raw FROM {t}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(s, NASTY);
    assert_eq!(raw, payload);
    b.running.stop().await;
    sqlx::query(&format!("DROP TABLE {t}")).execute(&mut c).await.unwrap();
}

#[tokio::test]
async fn postgres_a_bad_row_fails_alone_with_the_server_message() {
    let Some(mut c) = pg().await else { return };
    let t = table("jt_pgbad");
    sqlx::query(&format!("CREATE TABLE {t} (i INT PRIMARY KEY, v TEXT NOT NULL)"))
        .execute(&mut c)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector(
            "postgres",
            pg_port(),
            "postgres",
            "test",
            "batch_size = 100\nbatch_time = \"300ms\"\ninflight_window = 1",
        ),
        &rule(
            "postgres",
            "bad/#",
            "payload.i AS i, payload.v AS v",
            &format!("INSERT INTO {t}(i, v) VALUES (${{i}}, ${{v}})"),
            "",
        ),
    )
    .await;
    // One batch of 10 whose row 5 has no `v` (NOT NULL), then 5 later rows one by one.
    let row = |i: i64| {
        if i == 5 {
            format!(r#"{{"i": {i}}}"#)
        } else {
            format!(r#"{{"i": {i}, "v": "ok"}}"#)
        }
    };
    publish_all(b.tcp, "bad/x", (0..10).map(row)).await;
    let (m, err) = wait(&b, 20, "the batch settled", |m| n(m, "success") + n(m, "failed") == 10).await;
    // Only the bad row counts as failed; the 9 others were written.
    assert!(n(&m, "failed") == 1 && n(&m, "success") == 9, "{m}");
    let err = err.as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("1 of 10 rows refused") && err.contains("null value in column \"v\"") && err.contains("23502"),
        "{err}"
    );
    publish_all(b.tcp, "bad/x", (10..15).map(row)).await;
    wait(&b, 20, "later rows", |m| {
        n(m, "matched") == 15 && n(m, "success") + n(m, "failed") == 15
    })
    .await;
    let ids: Vec<(i32,)> = sqlx::query_as(&format!("SELECT i FROM {t} ORDER BY i"))
        .fetch_all(&mut c)
        .await
        .unwrap();
    let ids: Vec<i32> = ids.into_iter().map(|(i,)| i).collect();
    let want: Vec<i32> = (0..15).filter(|&i| i != 5).collect();
    assert_eq!(ids, want);

    // A unique violation, alone in its batch: exactly one failed, the server's message.
    let before = n(&metrics(&b).await.unwrap().0, "failed");
    publish_all(b.tcp, "bad/x", [row(3)]).await;
    let (m, err) = wait(&b, 20, "duplicate refused", |m| n(m, "failed") == before + 1).await;
    assert_eq!(n(&m, "retried"), 0, "{m}");
    assert!(
        err.as_str()
            .is_some_and(|e| e.contains("duplicate key value violates unique constraint")),
        "{err}"
    );
    b.running.stop().await;
    sqlx::query(&format!("DROP TABLE {t}")).execute(&mut c).await.unwrap();
}

#[tokio::test]
async fn mysql_1000_messages_batched_and_injection_as_data() {
    let Some(mut c) = my().await else { return };
    let t = table("jt_my");
    sqlx::query(&format!(
        "CREATE TABLE {t} (i INT NOT NULL, clientid VARCHAR(64), s TEXT, payload JSON, ts BIGINT)"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector("mysql", my_port(), "test", "test", "batch_size = 100\nbatch_time = \"20ms\""),
        &rule(
            "mysql",
            "my/#",
            "payload.i AS i, payload.s AS s, clientid, payload, timestamp",
            &format!("INSERT INTO {t}(i, clientid, s, payload, ts) VALUES (${{i}}, ${{clientid}}, '${{s}}', ${{payload}}, ${{timestamp}})"),
            "",
        ),
    )
    .await;
    const N: i64 = 1000;
    let start = Instant::now();
    publish_all(
        b.tcp,
        "my/x",
        (0..N).map(|i| {
            serde_json::json!({"i": i, "s": if i == 7 { NASTY.to_string() } else { format!("v{i}") }}).to_string()
        }),
    )
    .await;
    let (m, _) = wait(&b, 60, "all rows", |m| n(m, "success") == N as u64).await;
    eprintln!(
        "mysql: {N} messages end to end, batch_size 100: {:.0} rows/s",
        N as f64 / start.elapsed().as_secs_f64()
    );
    assert_eq!(n(&m, "failed") + n(&m, "dropped"), 0, "{m}");
    let r = sqlx::query(&format!("SELECT count(*), count(DISTINCT i), min(ts) > 0 FROM {t}"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    let got: (i64, i64, bool) = (r.get(0), r.get(1), r.get(2));
    assert_eq!(got, (N, N, true));
    let (s,): (String,) = sqlx::query_as(&format!("SELECT s FROM {t} WHERE i = 7"))
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(s, NASTY);
    b.running.stop().await;
    sqlx::query(&format!("DROP TABLE {t}")).execute(&mut c).await.unwrap();
}

#[tokio::test]
async fn timescaledb_hypertable_receives_rows_and_time_bucket_answers() {
    let Some(mut c) = ts().await else { return };
    let t = table("jt_ts");
    for q in [
        "CREATE EXTENSION IF NOT EXISTS timescaledb".to_string(),
        format!("CREATE TABLE {t} (time TIMESTAMPTZ NOT NULL, clientid TEXT, temp DOUBLE PRECISION)"),
        format!("SELECT create_hypertable('{t}', 'time')"),
    ] {
        sqlx::query(&q).execute(&mut c).await.unwrap();
    }
    // One connection at a time: let the broker have it.
    c.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector(
            "timescaledb",
            ts_port(),
            "postgres",
            "postgres",
            "pool_size = 1\nbatch_size = 50\nbatch_time = \"20ms\"",
        ),
        &rule(
            "timescaledb",
            "ts/#",
            "payload.t AS t, payload.temp AS temp, clientid",
            &format!("INSERT INTO {t}(time, clientid, temp) VALUES (${{t}}, ${{clientid}}, ${{temp}})"),
            "",
        ),
    )
    .await;
    // 120 readings, one a minute over two hours from a whole hour.
    const N: i64 = 120;
    let base: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
    publish_all(
        b.tcp,
        "ts/x",
        (0..N).map(|i| format!(r#"{{"t": {}, "temp": {}}}"#, base + i * 60_000, i as f64 / 2.0)),
    )
    .await;
    let (m, _) = wait(&b, 60, "all rows", |m| n(m, "success") == N as u64).await;
    assert_eq!(n(&m, "failed"), 0, "{m}");
    b.running.stop().await;
    let Some(mut c) = ts().await else { return };
    let rows: Vec<(i64, f64)> = sqlx::query_as(&format!(
        "SELECT count(*), avg(temp) FROM {t} GROUP BY time_bucket('1 hour', time) ORDER BY time_bucket('1 hour', time)"
    ))
    .fetch_all(&mut c)
    .await
    .unwrap();
    // Hour 1: temps 0..29.5 (avg 14.75); hour 2: 30..59.5 (avg 44.75).
    assert_eq!(rows, vec![(60, 14.75), (60, 44.75)]);
    let (chunks,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = '{t}'"
    ))
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(chunks >= 1);
    sqlx::query(&format!("DROP TABLE {t}")).execute(&mut c).await.unwrap();
}

/// A PostgreSQL server of the test's own (temp dir, free port), stopped on drop.
struct OwnPg {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPg {
    fn cmd(&self, prog: &str) -> std::process::Command {
        let path = self.bin.join(prog);
        // PostgreSQL refuses to run as root: as user postgres then.
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "-t", "30"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn start() -> Result<OwnPg, String> {
        let bin = std::env::var("JUNCTION_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        let bin = std::path::PathBuf::from(bin);
        if !bin.join("initdb").exists() {
            return Err(format!("no initdb in {}", bin.display()));
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let _ = std::process::Command::new("chown")
            .args(["postgres"])
            .arg(dir.path())
            .output();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let pg = OwnPg { bin, dir, port };
        let out = pg
            .cmd("initdb")
            .args(["--auth=trust", "-U", "postgres", "-D"])
            .arg(pg.dir.path().join("data"))
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        pg.pg_ctl(&["-w", "start"])?;
        Ok(pg)
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// Publishes `n` QoS 1 messages `{"i": k}` to `out/x`, paced: 500 every 50 ms.
fn paced_publisher(addr: SocketAddr, n: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for k in 0..n / 500 {
            publish_all(
                addr,
                "out/x",
                (k * 500..(k + 1) * 500).map(|i| format!(r#"{{"i": {i}}}"#)),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// `pg_ctl` with `args` on the test's own server (blocking, so on a blocking thread).
async fn pg_ctl(pg: &std::sync::Arc<OwnPg>, args: &'static [&'static str]) {
    let p = pg.clone();
    tokio::task::spawn_blocking(move || p.pg_ctl(args))
        .await
        .unwrap()
        .unwrap();
}

/// Every message on `out/#` into `msgs(id, i)`, deduplicated by message id.
fn msgs_rule() -> String {
    rule(
        "postgres",
        "out/#",
        "id, payload.i AS i",
        "INSERT INTO msgs(id, i) VALUES (${id}, ${i})",
        "dedupe = true",
    )
}

#[tokio::test]
async fn postgres_stopped_mid_run_with_dedupe_every_row_exactly_once() {
    let pg = match tokio::task::spawn_blocking(OwnPg::start).await.unwrap() {
        Ok(pg) => pg,
        Err(e) => {
            skip::<()>("a PostgreSQL of the test's own (initdb, pg_ctl)", e);
            return;
        }
    };
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", pg.port);
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE msgs (id TEXT PRIMARY KEY, i INT NOT NULL)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let b = broker(
        dir.path(),
        &connector(
            "postgres",
            pg.port,
            "postgres",
            "postgres",
            "batch_size = 50\nbatch_time = \"10ms\"\nconnect_timeout = \"1s\"\nrequest_timeout = \"2s\"\nqueue_len = 100000",
        ),
        &msgs_rule(),
    )
    .await;
    const N: i64 = 10_000;
    // Stop the server while batches are in flight and messages keep coming, then start it.
    let addr = b.tcp;
    let publisher = paced_publisher(addr, N);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pg = std::sync::Arc::new(pg);
    pg_ctl(&pg, &["-m", "fast", "-w", "stop"]).await;
    publisher.await.unwrap();
    let (m, _) = wait(&b, 20, "buffering", |m| n(m, "matched") == N as u64).await;
    assert!(n(&m, "success") < N as u64, "the server was down: {m}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg_ctl(&pg, &["-w", "start"]).await;
    let (m, _) = wait(&b, 60, "every row after restart", |m| n(m, "success") == N as u64).await;
    assert_eq!(n(&m, "failed") + n(&m, "dropped"), 0, "{m}");
    b.running.stop().await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let (rows, ids, is): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id), count(DISTINCT i) FROM msgs")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!((rows, ids, is), (N, N, N));
    eprintln!("postgres restart: {N} rows exactly once; retried {}", n(&m, "retried"));
}

/// The `junction` binary run as a child process (so that it can be killed with SIGKILL),
/// with its data, rules and connectors in `dir`; killed on drop.
struct Proc {
    child: std::process::Child,
    tcp: SocketAddr,
    http: SocketAddr,
}

impl Proc {
    fn start(dir: &Path) -> Proc {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_junction"))
            .env("JUNCTION_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:0")
            .env("JUNCTION_LISTENERS__WS__DEFAULT__ENABLE", "false")
            .env("JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND", "127.0.0.1:0")
            .env("JUNCTION_NODE__DATA_DIR", dir)
            .env("JUNCTION_DURABLE_STORAGE__SYNC_INTERVAL", "20ms")
            .env("JUNCTION_RULE_ENGINE__RULES_DIR", dir.join("rules"))
            .env("JUNCTION_RULE_ENGINE__FUNCTIONS_DIR", dir.join("functions"))
            .env("JUNCTION_CONNECTORS__DIR", dir.join("connectors"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("junction starts");
        let out = child.stdout.take().expect("stdout");
        let (mut tcp, mut http) = (None, None);
        for line in std::io::BufReader::new(out).lines() {
            let line = line.expect("stdout line");
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["LISTENING", "tcp", _, a] => tcp = a.parse().ok(),
                ["LISTENING", "http", _, a] => http = a.parse().ok(),
                ["READY"] => break,
                _ => {}
            }
        }
        Proc {
            child,
            tcp: tcp.expect("tcp listener"),
            http: http.expect("http listener"),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// 10,000 QoS 1 messages into PostgreSQL; the server is stopped part way, the broker is
/// killed with SIGKILL while its disk buffer holds what the server missed; the server and
/// the broker start again: every row is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_then_broker_killed_with_a_disk_buffer_every_row_exactly_once() {
    let pg = match tokio::task::spawn_blocking(OwnPg::start).await.unwrap() {
        Ok(pg) => pg,
        Err(e) => {
            skip::<()>("a PostgreSQL of the test's own (initdb, pg_ctl)", e);
            return;
        }
    };
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", pg.port);
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE msgs (id TEXT PRIMARY KEY, i INT NOT NULL)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("connectors"),
        "db.toml",
        &connector(
            "postgres",
            pg.port,
            "postgres",
            "postgres",
            // 1,000 in memory: most of what the server misses is only in the disk log.
            "batch_size = 100\nbatch_time = \"10ms\"\nconnect_timeout = \"1s\"\nrequest_timeout = \"2s\"\nqueue_len = 1000",
        ),
    );
    write(&dir.path().join("rules"), "r.toml", &msgs_rule());
    let p = dir.path().to_path_buf();
    let mut first = tokio::task::spawn_blocking(move || Proc::start(&p)).await.unwrap();
    const N: i64 = 10_000;
    let addr = first.tcp;
    let publisher = paced_publisher(addr, N);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pg = std::sync::Arc::new(pg);
    pg_ctl(&pg, &["-m", "fast", "-w", "stop"]).await;
    publisher.await.unwrap();
    let (m, _) = wait_at(first.http, 30, "every message matched", |m| n(m, "matched") == N as u64).await;
    let queued = n(&m, "queuing") + n(&m, "inflight");
    assert!(queued > 1000, "more than queue_len waits for the server: {m}");
    // The writer writes and syncs every 20 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill9();
    pg_ctl(&pg, &["-w", "start"]).await;
    let p = dir.path().to_path_buf();
    let second = tokio::task::spawn_blocking(move || Proc::start(&p)).await.unwrap();
    let (m, _) = wait_at(second.http, 60, "the buffered outputs delivered", |m| {
        n(m, "queuing") + n(m, "inflight") == 0 && n(m, "success") > 0
    })
    .await;
    assert_eq!(n(&m, "failed") + n(&m, "dropped"), 0, "{m}");
    assert!(
        n(&m, "matched") >= queued.min(N as u64 - 1000),
        "resumed from the log: {m}"
    );
    drop(second);
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let (rows, ids, is): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT id), count(DISTINCT i) FROM msgs")
            .fetch_one(&mut c)
            .await
            .unwrap();
    assert_eq!((rows, ids, is), (N, N, N));
    eprintln!(
        "postgres down + kill -9: {N} rows exactly once; {queued} outputs waited, {} resumed after the kill",
        n(&m, "matched")
    );
}

/// Copies examples/persistence/postgres into `dir` with its tables renamed `<prefix>mqtt_*`
/// and the connector pointed at the test server; returns the schema SQL (renamed too).
fn copy_pg_example(dir: &Path, prefix: &str, port: u16) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/persistence/postgres");
    let rename = |s: String| s.replace("mqtt_", &format!("{prefix}mqtt_"));
    for sub in ["rules", "connectors"] {
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let mut text = rename(std::fs::read_to_string(&p).unwrap());
            if sub == "connectors" {
                text = text.replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
            }
            write(&dir.join(sub), &p.file_name().unwrap().to_string_lossy(), &text);
        }
    }
    rename(std::fs::read_to_string(src.join("schema.sql")).unwrap())
}

/// The PostgreSQL persistence example: client status, subscriptions, messages and retained
/// messages land in their tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_persistence_example() {
    let Some(mut db) = pg().await else { return };
    let prefix = format!("{}_", table("px"));
    let dir = tempfile::tempdir().unwrap();
    let schema = copy_pg_example(dir.path(), &prefix, pg_port());
    sqlx::raw_sql(&schema).execute(&mut db).await.unwrap();
    let c = dir.path().join("connectors").display().to_string();
    let b = common::start_in(dir.path(), &[("JUNCTION_CONNECTORS__DIR", c.as_str())]).await;

    let id = format!("{prefix}dev");
    let mut o = MqttOptions::new(&id, b.tcp.ip().to_string(), b.tcp.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials("alice", "pw");
    let (cl, mut ev) = AsyncClient::new(o, 100);
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    cl.subscribe("a/b", QoS::AtLeastOnce).await.unwrap();
    cl.subscribe("c/#", QoS::AtMostOnce).await.unwrap();
    cl.unsubscribe("c/#").await.unwrap();
    let (keep, gone, plain) = (format!("keep/{id}"), format!("gone/{id}"), format!("plain/{id}"));
    cl.publish(&keep, QoS::AtLeastOnce, true, "v1").await.unwrap();
    cl.publish(&gone, QoS::AtLeastOnce, true, "v").await.unwrap();
    cl.publish(&gone, QoS::AtLeastOnce, true, "").await.unwrap();
    cl.publish(&plain, QoS::AtLeastOnce, false, r#"{"x": 1}"#)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cl.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (online, username, reason, connected, disconnected) = loop {
        let row = sqlx::query(&format!(
            "SELECT online, username, reason, connected_at IS NOT NULL, disconnected_at IS NOT NULL \
             FROM {prefix}mqtt_client WHERE clientid = $1"
        ))
        .bind(&id)
        .fetch_optional(&mut db)
        .await
        .unwrap();
        if let Some(r) = row {
            let v: (bool, Option<String>, Option<String>, bool, bool) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            if !v.0 || std::time::Instant::now() > deadline {
                break v;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no offline row for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!online && connected && disconnected, "status row");
    assert_eq!(
        (username.as_deref(), reason.as_deref()),
        (Some("alice"), Some("normal"))
    );
    let peerhost: Option<String> =
        sqlx::query_scalar(&format!("SELECT peerhost FROM {prefix}mqtt_client WHERE clientid = $1"))
            .bind(&id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(peerhost.as_deref(), Some("127.0.0.1"));

    let subs: Vec<(String, i32)> = sqlx::query_as(&format!(
        "SELECT topic, qos FROM {prefix}mqtt_sub WHERE clientid = $1 ORDER BY topic"
    ))
    .bind(&id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(subs, vec![("a/b".to_string(), 1)]);

    let msgs: Vec<(String, bool, Option<String>)> = sqlx::query_as(&format!(
        "SELECT topic, retain, payload FROM {prefix}mqtt_msg WHERE sender = $1 ORDER BY arrived, topic, payload"
    ))
    .bind(&id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(
        msgs.contains(&(plain.clone(), false, Some(r#"{"x": 1}"#.to_string()))),
        "{msgs:?}"
    );

    let retained: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT topic, payload FROM {prefix}mqtt_retain WHERE sender = $1 ORDER BY topic"
    ))
    .bind(&id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(retained, vec![(keep, Some("v1".to_string()))]);
    for t in ["client", "sub", "msg", "retain"] {
        let _ = sqlx::raw_sql(&format!("DROP TABLE {prefix}mqtt_{t}"))
            .execute(&mut db)
            .await;
    }
    b.running.stop().await;
}

/// The statements of a script for the mysql client: `;` ends one, `DELIMITER x` makes `x`
/// the end instead (for procedure bodies); `--` comment lines are left out.
fn mysql_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut delimiter = ";".to_string();
    let mut cur = String::new();
    for line in script.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("DELIMITER ") {
            delimiter = d.trim().to_string();
            continue;
        }
        if t.is_empty() || t.starts_with("--") {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if let Some(stmt) = cur.trim_end().strip_suffix(delimiter.as_str()) {
            out.push(stmt.to_string());
            cur.clear();
        }
    }
    assert!(cur.trim().is_empty(), "unterminated statement: {cur}");
    out
}

/// Copies examples/persistence/mysql into `dir` with its tables and procedures renamed
/// `<prefix>mqtt_*` and the connector pointed at the test server; returns the schema's
/// statements (renamed too).
fn copy_my_example(dir: &Path, prefix: &str, port: u16) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/persistence/mysql");
    let rename = |s: String| s.replace("mqtt_", &format!("{prefix}mqtt_"));
    for sub in ["rules", "connectors"] {
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            let mut text = rename(std::fs::read_to_string(&p).unwrap());
            if sub == "connectors" {
                text = text.replace("127.0.0.1:3306", &format!("127.0.0.1:{port}"));
            }
            write(&dir.join(sub), &p.file_name().unwrap().to_string_lossy(), &text);
        }
    }
    mysql_statements(&rename(std::fs::read_to_string(src.join("schema.sql")).unwrap()))
}

/// The actions of every connector of `b`, for failure messages and the no-failure check.
async fn all_actions(b: &common::TestBroker) -> Vec<Value> {
    let url = format!("http://{}/api/v5/connectors", b.http);
    let Ok(r) = reqwest::get(url).await else { return vec![] };
    let list: Value = r.json().await.unwrap_or(Value::Null);
    list.as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["actions"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Runs `sql` (one `?`, bound to `id`) until `done` holds for its rows; 20 s at most.
async fn my_poll<T>(
    b: &common::TestBroker,
    db: &mut sqlx::MySqlConnection,
    sql: &str,
    id: &str,
    done: impl Fn(&[T]) -> bool,
) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow> + Send + Unpin + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: Vec<T> = sqlx::query_as(sql).bind(id).fetch_all(&mut *db).await.unwrap();
        if done(&rows) {
            return rows;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out on {sql}: last {rows:?}; actions {}",
                Value::Array(all_actions(b).await)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// online, username, reason, disconnected_at >= connected_at, connected_at near now.
type StatusRow = (i64, Option<String>, Option<String>, Option<i64>, Option<i64>);

/// The MySQL persistence example (examples/persistence/mysql) against MariaDB: client
/// status, subscriptions, every message and the retained ones land in their tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_persistence_example() {
    let Some(mut db) = my().await else { return };
    let prefix = format!("{}_", table("mx"));
    let dir = tempfile::tempdir().unwrap();
    let schema = copy_my_example(dir.path(), &prefix, my_port());
    assert!(schema.len() >= 8, "{schema:?}");
    for stmt in &schema {
        sqlx::raw_sql(stmt).execute(&mut db).await.unwrap();
    }
    let c = dir.path().join("connectors").display().to_string();
    let b = common::start_in(dir.path(), &[("JUNCTION_CONNECTORS__DIR", c.as_str())]).await;

    let id = format!("{prefix}dev");
    let mut o = MqttOptions::new(&id, b.tcp.ip().to_string(), b.tcp.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials("alice", "pw");
    let (cl, mut ev) = AsyncClient::new(o, 100);
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let online: Vec<(i64, Option<String>, Option<String>)> = my_poll(
        &b,
        &mut db,
        &format!("SELECT CAST(online AS SIGNED), CONVERT(username USING utf8mb4), CONVERT(peerhost USING utf8mb4) FROM {prefix}mqtt_client WHERE clientid = ?"),
        &id,
        |r: &[(i64, Option<String>, Option<String>)]| r.first().is_some_and(|r| r.0 == 1),
    )
    .await;
    assert_eq!(online[0].1.as_deref(), Some("alice"));
    assert_eq!(
        online[0].2.as_deref(),
        Some("127.0.0.1"),
        "peerhost: the address of peername"
    );

    cl.subscribe("a/b", QoS::AtMostOnce).await.unwrap();
    cl.subscribe("a/b", QoS::AtLeastOnce).await.unwrap();
    cl.subscribe("c/ü/#", QoS::AtMostOnce).await.unwrap();
    cl.subscribe("C/ü/#", QoS::ExactlyOnce).await.unwrap();
    cl.unsubscribe("c/ü/#").await.unwrap();
    let (keep, gone, plain, bin) = (
        format!("keep/ü/{id}"),
        format!("gone/{id}"),
        format!("plain/{id}"),
        format!("bin/{id}"),
    );
    cl.publish(&keep, QoS::AtLeastOnce, true, "v0").await.unwrap();
    cl.publish(&keep, QoS::AtMostOnce, true, "v1").await.unwrap();
    cl.publish(&gone, QoS::AtLeastOnce, true, "v").await.unwrap();
    cl.publish(&gone, QoS::AtLeastOnce, true, "").await.unwrap();
    cl.publish(&plain, QoS::AtLeastOnce, false, r#"{"x": 1}"#)
        .await
        .unwrap();
    cl.publish(&bin, QoS::AtLeastOnce, false, vec![0xffu8, 0, 0xfe])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cl.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;

    // Status: offline, both times set and recent, the reason of the disconnect.
    let status: Vec<StatusRow> = my_poll(
        &b,
        &mut db,
        &format!(
            "SELECT CAST(online AS SIGNED), CONVERT(username USING utf8mb4), CONVERT(reason USING utf8mb4), \
             CAST(disconnected_at >= connected_at AS SIGNED), \
             CAST(ABS(TIMESTAMPDIFF(SECOND, connected_at, NOW(3))) < 300 AS SIGNED) \
             FROM {prefix}mqtt_client WHERE clientid = ?"
        ),
        &id,
        |r: &[StatusRow]| r.first().is_some_and(|r| r.0 == 0),
    )
    .await;
    assert_eq!(
        status,
        vec![(0, Some("alice".into()), Some("normal".into()), Some(1), Some(1))],
        "offline, connected_at <= disconnected_at, connected_at near now"
    );

    // Subscriptions: re-subscribing updated the QoS, the unsubscribed filter is gone, and
    // topics compare byte for byte ("C/ü/#" is not "c/ü/#").
    let want = vec![("C/ü/#".to_string(), 2i64), ("a/b".to_string(), 1)];
    let subs: Vec<(String, i64)> = my_poll(
        &b,
        &mut db,
        &format!("SELECT CONVERT(topic USING utf8mb4), CAST(qos AS SIGNED) FROM {prefix}mqtt_sub WHERE clientid = ? ORDER BY topic"),
        &id,
        |r| r == want.as_slice(),
    )
    .await;
    assert_eq!(subs, want);

    // Every message, once, with its payload bytes.
    let msgs: Vec<(String, String, i64, i64, Vec<u8>)> = my_poll(
        &b,
        &mut db,
        &format!(
            "SELECT CONVERT(id USING utf8mb4), CONVERT(topic USING utf8mb4), CAST(qos AS SIGNED), CAST(retain AS SIGNED), payload FROM {prefix}mqtt_msg \
             WHERE sender = ? ORDER BY arrived, id"
        ),
        &id,
        |r: &[(String, String, i64, i64, Vec<u8>)]| r.len() >= 6,
    )
    .await;
    assert_eq!(msgs.len(), 6, "{msgs:?}");
    let mut ids: Vec<&String> = msgs.iter().map(|m| &m.0).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "{msgs:?}");
    let find = |topic: &str, payload: &[u8]| msgs.iter().find(|m| m.1 == topic && m.4 == payload).cloned();
    assert_eq!(
        find(&plain, br#"{"x": 1}"#).map(|m| (m.2, m.3)),
        Some((1, 0)),
        "{msgs:?}"
    );
    assert_eq!(
        find(&bin, &[0xff, 0, 0xfe]).map(|m| (m.2, m.3)),
        Some((1, 0)),
        "{msgs:?}"
    );
    assert_eq!(find(&keep, b"v1").map(|m| (m.2, m.3)), Some((0, 1)), "{msgs:?}");
    assert_eq!(find(&gone, b"").map(|m| (m.2, m.3)), Some((1, 1)), "{msgs:?}");

    // Retained: the last value of `keep`; `gone` was cleared by its empty payload.
    let want = vec![(keep.clone(), 0i64, b"v1".to_vec())];
    let retained: Vec<(String, i64, Vec<u8>)> = my_poll(
        &b,
        &mut db,
        &format!(
            "SELECT CONVERT(topic USING utf8mb4), CAST(qos AS SIGNED), payload FROM {prefix}mqtt_retain WHERE sender = ? ORDER BY topic"
        ),
        &id,
        |r| r == want.as_slice(),
    )
    .await;
    assert_eq!(retained, want);

    for a in all_actions(&b).await {
        assert_eq!(n(&a["metrics"], "failed") + n(&a["metrics"], "dropped"), 0, "{a}");
    }
    b.running.stop().await;
    for t in ["client", "sub", "msg", "retain"] {
        let _ = sqlx::raw_sql(&format!("DROP TABLE {prefix}mqtt_{t}"))
            .execute(&mut db)
            .await;
    }
    for p in ["sub_event", "retain_event"] {
        let _ = sqlx::raw_sql(&format!("DROP PROCEDURE {prefix}mqtt_{p}"))
            .execute(&mut db)
            .await;
    }
}

/// No server needed: the MySQL example's statements take the shape its README describes
/// (client status and messages batched as multi-row INSERTs, messages with INSERT IGNORE,
/// the procedures called once per output).
#[test]
fn mysql_example_statements_batch_as_documented() {
    use junction::connectors::sql::{parse_statement, Dialect};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/persistence/mysql/rules");
    let mut seen = Vec::new();
    for file in ["client_status.toml", "subscriptions.toml", "messages.toml"] {
        let doc: toml::Table = std::fs::read_to_string(dir.join(file)).unwrap().parse().unwrap();
        for rule in doc["rules"].as_array().unwrap() {
            let id = rule["id"].as_str().unwrap().to_string();
            for a in rule["actions"].as_array().unwrap() {
                assert_eq!(a["type"].as_str(), Some("mysql"), "{id}");
                let dedupe = a.get("dedupe").and_then(|d| d.as_bool()).unwrap_or(false);
                let s = parse_statement(a["sql"].as_str().unwrap(), Dialect::MySql, dedupe).unwrap();
                seen.push((id.clone(), s.multi_row(), s.statement(Dialect::MySql, 2)));
            }
        }
    }
    let get = |id: &str| {
        seen.iter()
            .find(|s| s.0 == id)
            .unwrap_or_else(|| panic!("{id}: {seen:?}"))
    };
    for id in ["mysql_client_status", "mysql_messages"] {
        let (_, multi, sql) = get(id);
        assert!(multi, "{id}: {sql}");
        assert!(sql.contains("), ("), "{id}: two rows in one INSERT: {sql}");
    }
    assert!(get("mysql_messages").2.starts_with("INSERT IGNORE INTO"), "{seen:?}");
    for id in ["mysql_subscriptions", "mysql_retained"] {
        let (_, multi, sql) = get(id);
        assert!(!multi && sql.trim_start().starts_with("CALL mqtt_"), "{id}: {sql}");
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}

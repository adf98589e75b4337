//! TLS of the redis, postgres, mysql (MariaDB) and mqtt connectors, against servers of the
//! test's own: each test makes a CA, a server certificate (`localhost`, `127.0.0.1`) and a client
//! certificate with rcgen, starts its own server with a TLS port on a free port (killed by
//! PID when dropped) and checks what the user sees:
//!
//! - a rule action through a connector with `tls = { enable = true, cacertfile, certfile,
//!   keyfile }` delivers (the value is in Redis / the row in PostgreSQL or MariaDB / the
//!   message reaches a subscriber of the remote Mosquitto), the servers requiring the client
//!   certificate where they can (Redis, Mosquitto, MariaDB `REQUIRE X509`: mutual TLS; a
//!   MariaDB connector without the client certificate is refused);
//! - `verify = false` without the CA delivers too (any certificate is accepted);
//! - `verify = true` with another CA: the connector is `disconnected` with the TLS error in
//!   `status_reason` of GET /api/v5/connectors, and nothing is delivered.
//!
//! A missing server binary skips the test (printed), or fails it with
//! `JUNCTION_REQUIRE_SERVICES=1`. PostgreSQL refuses to run as root: the test then runs it
//! as the user `postgres` (and skips when there is none).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

fn skip(why: &str) {
    common::skip::<()>("a server or binary this test starts", why);
}

/// Is `bin` there (runs with `arg`)?
fn present(bin: &str, arg: &str) -> bool {
    Command::new(bin)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The PEM files of a test: `ca.pem`, `server.pem` + `server.key` (signed by the CA, for
/// `localhost` and `127.0.0.1`), `client.pem` + `client.key` (signed by the CA), and
/// `other-ca.pem`, a CA that signed nothing here.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "junction test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        sp.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(vec!["client".to_string()]).unwrap();
        cp.distinguished_name.push(rcgen::DnType::CommonName, "junction");
        let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();
        let other_key = KeyPair::generate().unwrap();
        let mut op = CertificateParams::new(Vec::<String>::new()).unwrap();
        op.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        op.distinguished_name.push(rcgen::DnType::CommonName, "another CA");
        let other = op.self_signed(&other_key).unwrap();
        let files = [
            ("ca.pem", ca.pem()),
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
            ("other-ca.pem", other.pem()),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Pki { dir: dir.to_path_buf() }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The `tls` table: mutual TLS with the right CA.
    fn tls_ok(&self) -> String {
        format!(
            "tls = {{ enable = true, verify = true, cacertfile = \"{}\", certfile = \"{}\", keyfile = \"{}\" }}",
            self.path("ca.pem"),
            self.path("client.pem"),
            self.path("client.key")
        )
    }

    /// No CA, no verification (with the client certificate).
    fn tls_insecure(&self) -> String {
        format!(
            "tls = {{ enable = true, verify = false, certfile = \"{}\", keyfile = \"{}\" }}",
            self.path("client.pem"),
            self.path("client.key")
        )
    }

    /// Verification against a CA that did not sign the server's certificate.
    fn tls_wrong_ca(&self) -> String {
        format!(
            "tls = {{ enable = true, verify = true, cacertfile = \"{}\", certfile = \"{}\", keyfile = \"{}\" }}",
            self.path("other-ca.pem"),
            self.path("client.pem"),
            self.path("client.key")
        )
    }
}

/// A server process of the test's own: stopped (by PID) when dropped.
struct Server {
    child: Child,
    /// SIGINT first (PostgreSQL: fast shutdown, its backends end too), then SIGKILL.
    interrupt: bool,
}

impl Server {
    fn spawn(mut cmd: Command, interrupt: bool) -> Server {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Server { child, interrupt }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.interrupt {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            for _ in 0..100 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_port(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "port {port} not up");
        tokio::time::sleep(Duration::from_millis(50)).await;
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

/// The common part of the test connectors: quick retries and checks.
const QUICK: &str = "pool_size = 1\nretry_backoff = { initial = \"10ms\", max = \"200ms\" }\n\
                     health_check_interval = \"1s\"\nconnect_timeout = \"2s\"\n";

/// A rule `id` reading `t/<id>` (payload `{"v": ...}`) with one action.
fn rule(id: &str, action: &str) -> String {
    format!("[[rules]]\nid = \"{id}\"\nsql = 'SELECT payload.v AS v FROM \"t/{id}\"'\n[[rules.actions]]\n{action}\n")
}

async fn publish(addr: SocketAddr, topic: &str, payloads: &[String]) {
    let mut o = MqttOptions::new(format!("pub-{topic}"), addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (c, mut ev) = AsyncClient::new(o, 100);
    let driver = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    for p in payloads {
        c.publish(topic, QoS::AtLeastOnce, false, p.clone().into_bytes())
            .await
            .unwrap();
    }
    c.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
}

/// Connector `name` as GET /api/v5/connectors shows it.
async fn connector(b: &common::TestBroker, name: &str) -> Option<Value> {
    let url = format!("http://{}/api/v5/connectors", b.http);
    let list: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    list.as_array()?.iter().find(|c| c["name"] == name).cloned()
}

/// Polls `check` until it gives `Some`; 20 s at most.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The connector with the wrong CA: `disconnected`, a certificate error in `status_reason`,
/// and its action's outputs not delivered.
async fn assert_refused_by_verification(b: &common::TestBroker, name: &str) -> Value {
    let c = wait_for(&format!("{name} disconnected with a reason"), || async {
        connector(b, name)
            .await
            .filter(|c| c["status"] == "disconnected" && c["status_reason"].is_string())
    })
    .await;
    let reason = c["status_reason"].as_str().unwrap_or_default().to_ascii_lowercase();
    assert!(
        reason.contains("invalid peer certificate: unknownissuer"),
        "a TLS verification error in status_reason: {c}"
    );
    if c["type"] != "redis" {
        // redis says rediss:// instead.
        assert!(reason.contains("tls"), "{c}");
    }
    eprintln!("{name}: {}", c["status_reason"]);
    let m = &c["actions"][0]["metrics"];
    assert_eq!(m["success"], 0, "{c}");
    c
}

#[tokio::test]
async fn redis_over_mutual_tls() {
    let bin = std::env::var("JUNCTION_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    if !present(&bin, "--version") {
        skip("redis_over_mutual_tls: no `redis-server` binary");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new(data.path());
    let (plain, tls) = (free_port(), free_port());
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &plain.to_string(),
        "--tls-port",
        &tls.to_string(),
    ])
    .args(["--tls-cert-file", &pki.path("server.pem")])
    .args(["--tls-key-file", &pki.path("server.key")])
    .args(["--tls-ca-cert-file", &pki.path("ca.pem")])
    // The client must show a certificate signed by the CA (mutual TLS).
    .args(["--tls-auth-clients", "yes"])
    .args(["--save", "", "--appendonly", "no"])
    .arg("--dir")
    .arg(data.path());
    let _server = Server::spawn(cmd, false);
    wait_port(plain).await;
    wait_port(tls).await;

    let dir = tempfile::tempdir().unwrap();
    let conn = dir.path().join("connectors");
    let server = format!("server = \"127.0.0.1:{tls}\"\n");
    for (name, t) in [
        ("secure", pki.tls_ok()),
        ("insecure", pki.tls_insecure()),
        ("wrong_ca", pki.tls_wrong_ca()),
    ] {
        write(
            &conn,
            &format!("{name}.toml"),
            &format!("type = \"redis\"\n{server}{QUICK}{t}\n"),
        );
    }
    let mut rules = String::new();
    for name in ["secure", "insecure", "wrong_ca"] {
        rules.push_str(&rule(
            name,
            &format!("type = \"redis\"\nconnector = \"{name}\"\ncommand = \"RPUSH tls:{name} ${{v}}\""),
        ));
    }
    write(&dir.path().join("rules"), "r.toml", &rules);
    let b = broker(dir.path()).await;
    for name in ["secure", "insecure", "wrong_ca"] {
        let payloads: Vec<String> = (0..3).map(|i| format!(r#"{{"v": "{name}-{i}"}}"#)).collect();
        publish(b.tcp, &format!("t/{name}"), &payloads).await;
    }

    // Read back over the plain port.
    let client = redis::Client::open(format!("redis://127.0.0.1:{plain}/")).unwrap();
    let mut r = client.get_multiplexed_async_connection().await.unwrap();
    for name in ["secure", "insecure"] {
        let want: Vec<String> = (0..3).map(|i| format!("{name}-{i}")).collect();
        wait_for(&format!("the values of {name} in Redis"), || {
            let mut r = r.clone();
            let want = want.clone();
            async move {
                let got: Vec<String> = redis::cmd("LRANGE")
                    .arg(format!("tls:{name}"))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut r)
                    .await
                    .ok()?;
                (got == want).then_some(())
            }
        })
        .await;
        let c = connector(&b, name).await.unwrap();
        assert_eq!(c["status"], "connected", "{c}");
    }
    assert_refused_by_verification(&b, "wrong_ca").await;
    let n: i64 = redis::cmd("LLEN")
        .arg("tls:wrong_ca")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(n, 0);
    b.running.stop().await;
}

#[tokio::test]
async fn mqtt_bridge_over_mutual_tls() {
    let bin = if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto".to_string()
    } else {
        std::env::var("JUNCTION_MOSQUITTO").unwrap_or_else(|_| "mosquitto".into())
    };
    if !present(&bin, "-h") {
        skip("mqtt_bridge_over_mutual_tls: no `mosquitto` binary");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new(data.path());
    let (plain, tls) = (free_port(), free_port());
    let conf = data.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "persistence false\nallow_anonymous true\n\
             listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            pki.path("ca.pem"),
            pki.path("server.pem"),
            pki.path("server.key"),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("-c").arg(&conf);
    let _server = Server::spawn(cmd, false);
    wait_port(plain).await;
    wait_port(tls).await;

    // A subscriber of the remote broker (plain port).
    let mut o = MqttOptions::new("tls-remote-sub", "127.0.0.1", plain);
    o.set_keep_alive(Duration::from_secs(30));
    let (sub, mut ev) = AsyncClient::new(o, 100);
    sub.subscribe("remote/#", QoS::AtLeastOnce).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Some((p.topic, String::from_utf8_lossy(&p.payload).into_owned())));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap(),
        Some(None),
        "SUBACK"
    );

    let dir = tempfile::tempdir().unwrap();
    let conn = dir.path().join("connectors");
    for (name, t, proto) in [
        ("secure", pki.tls_ok(), "v4"),
        ("secure5", pki.tls_ok(), "v5"),
        ("insecure", pki.tls_insecure(), "v4"),
        ("wrong_ca", pki.tls_wrong_ca(), "v4"),
    ] {
        write(
            &conn,
            &format!("{name}.toml"),
            &format!("type = \"mqtt\"\nserver = \"mqtts://127.0.0.1:{tls}\"\nproto_ver = \"{proto}\"\n{QUICK}{t}\n"),
        );
    }
    let names = ["secure", "secure5", "insecure", "wrong_ca"];
    let mut rules = String::new();
    for name in names {
        rules.push_str(&rule(
            name,
            &format!(
                "type = \"mqtt\"\nconnector = \"{name}\"\ntopic = \"remote/{name}\"\npayload = \"${{v}}\"\nqos = 1"
            ),
        ));
    }
    write(&dir.path().join("rules"), "r.toml", &rules);
    let b = broker(dir.path()).await;
    for name in ["secure", "secure5", "insecure"] {
        wait_for(&format!("{name} connected"), || async {
            connector(&b, name).await.filter(|c| c["status"] == "connected")
        })
        .await;
    }
    for name in names {
        publish(b.tcp, &format!("t/{name}"), &[format!(r#"{{"v": "hello {name}"}}"#)]).await;
    }
    let mut got = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < 3 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Some((topic, payload)))) => {
                got.insert((topic, payload));
            }
            Ok(_) => {}
            Err(_) => panic!("timed out; received {got:?}"),
        }
    }
    let want: std::collections::BTreeSet<(String, String)> = ["secure", "secure5", "insecure"]
        .iter()
        .map(|n| (format!("remote/{n}"), format!("hello {n}")))
        .collect();
    assert_eq!(got, want);
    assert_refused_by_verification(&b, "wrong_ca").await;
    // Nothing from the connector with the wrong CA.
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("unexpected {m:?}");
    }
    b.running.stop().await;
}

/// The uid and gid of `user` (`id -u`, `id -g`).
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

#[tokio::test]
async fn postgres_over_tls() {
    let bin = PathBuf::from(std::env::var("JUNCTION_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()));
    if !bin.join("postgres").exists() || !bin.join("initdb").exists() {
        skip(&format!("postgres_over_tls: no initdb/postgres in {}", bin.display()));
        return;
    }
    let me = ids_of(&std::env::var("USER").unwrap_or_else(|_| "root".into()));
    // PostgreSQL does not run as root: then as `postgres`.
    let run_as = match me {
        Some((0, _)) | None => match ids_of("postgres") {
            Some(ids) => Some(ids),
            None => {
                skip("postgres_over_tls: running as root and there is no user `postgres`");
                return;
            }
        },
        Some(_) => None,
    };
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new(data.path());
    let pgdata = data.path().join("pgdata");
    let own = |p: &Path| {
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        }
    };
    own(data.path());
    for f in ["server.pem", "server.key", "ca.pem"] {
        own(&data.path().join(f));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.path().join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let as_user = |cmd: &mut Command| {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir(data.path()).env_remove("PGDATA");
    };
    let mut init = Command::new(bin.join("initdb"));
    init.args(["--auth=trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&pgdata);
    as_user(&mut init);
    let out = init.output().unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&pgdata)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ])
        .arg("-k")
        .arg(data.path())
        .args(["-c", "ssl=on"])
        .args(["-c", &format!("ssl_cert_file={}", pki.path("server.pem"))])
        .args(["-c", &format!("ssl_key_file={}", pki.path("server.key"))])
        .args(["-c", &format!("ssl_ca_file={}", pki.path("ca.pem"))]);
    as_user(&mut cmd);
    let _server = Server::spawn(cmd, true);
    wait_port(port).await;

    // The table, over a plain connection.
    let opts = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database("postgres")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    let pool = wait_for("PostgreSQL answering", || {
        let opts = opts.clone();
        async move {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .ok()
        }
    })
    .await;
    sqlx::query("CREATE TABLE msgs (who TEXT, v TEXT, tls BOOLEAN)")
        .execute(&pool)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let conn = dir.path().join("connectors");
    let names = ["secure", "insecure", "wrong_ca"];
    for (name, t) in [
        ("secure", pki.tls_ok()),
        ("insecure", pki.tls_insecure()),
        ("wrong_ca", pki.tls_wrong_ca()),
    ] {
        write(
            &conn,
            &format!("{name}.toml"),
            &format!(
                "type = \"postgres\"\nserver = \"127.0.0.1:{port}\"\ndatabase = \"postgres\"\nusername = \"postgres\"\n{QUICK}{t}\n"
            ),
        );
    }
    let mut rules = String::new();
    for name in names {
        // `tls` from the server's own view of the connection.
        rules.push_str(&rule(
            name,
            &format!(
                "type = \"postgres\"\nconnector = \"{name}\"\n\
                 sql = \"INSERT INTO msgs(who, v, tls) SELECT '{name}', ${{v}}, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()\""
            ),
        ));
    }
    write(&dir.path().join("rules"), "r.toml", &rules);
    let b = broker(dir.path()).await;
    for name in names {
        publish(b.tcp, &format!("t/{name}"), &[format!(r#"{{"v": "hello {name}"}}"#)]).await;
    }
    for name in ["secure", "insecure"] {
        let row: (String, bool) = wait_for(&format!("the row of {name}"), || {
            let pool = pool.clone();
            async move {
                sqlx::query_as("SELECT v, tls FROM msgs WHERE who = $1")
                    .bind(name)
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        assert_eq!(
            row,
            (format!("hello {name}"), true),
            "{name}: the row, written over TLS"
        );
    }
    assert_refused_by_verification(&b, "wrong_ca").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM msgs WHERE who = 'wrong_ca'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    b.running.stop().await;
    pool.close().await;
}

#[tokio::test]
async fn mysql_over_mutual_tls() {
    let bin = std::env::var("JUNCTION_MARIADBD").unwrap_or_else(|_| "/usr/sbin/mariadbd".into());
    if !present(&bin, "--version") || !present("mariadb-install-db", "--help") || !present("mariadb", "--version") {
        skip("mysql_over_mutual_tls: no mariadbd / mariadb-install-db / mariadb");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let pki = Pki::new(data.path());
    let datadir = data.path().join("data");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let out = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            &format!("--user={user}"),
            "--auth-root-authentication-method=normal",
        ])
        .arg("--skip-test-db")
        .arg(format!("--datadir={}", datadir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let sock = data.path().join("m.sock");
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--no-defaults",
        &format!("--user={user}"),
        "--bind-address=127.0.0.1",
        "--skip-name-resolve",
    ])
    .arg(format!("--datadir={}", datadir.display()))
    .arg(format!("--port={port}"))
    .arg(format!("--socket={}", sock.display()))
    .arg(format!("--pid-file={}", data.path().join("m.pid").display()))
    .arg(format!("--log-error={}", data.path().join("m.err").display()))
    .arg(format!("--ssl-cert={}", pki.path("server.pem")))
    .arg(format!("--ssl-key={}", pki.path("server.key")))
    .arg(format!("--ssl-ca={}", pki.path("ca.pem")));
    let _server = Server::spawn(cmd, false);
    wait_port(port).await;
    // A user that must connect with TLS and a client certificate signed by the CA.
    let out = Command::new("mariadb")
        .args(["--no-defaults", "-uroot"])
        .arg(format!("--socket={}", sock.display()))
        .arg("-e")
        .arg(
            "CREATE DATABASE t; CREATE TABLE t.msgs (who TEXT, v TEXT); \
             CREATE USER 'tls'@'%' IDENTIFIED BY 'pw' REQUIRE X509; GRANT ALL ON t.* TO 'tls'@'%';",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let conn = dir.path().join("connectors");
    let names = ["secure", "insecure", "wrong_ca", "no_cert"];
    let no_cert = format!("tls = {{ enable = true, cacertfile = \"{}\" }}", pki.path("ca.pem"));
    for (name, t) in [
        ("secure", pki.tls_ok()),
        ("insecure", pki.tls_insecure()),
        ("wrong_ca", pki.tls_wrong_ca()),
        ("no_cert", no_cert),
    ] {
        write(
            &conn,
            &format!("{name}.toml"),
            &format!(
                "type = \"mysql\"\nserver = \"127.0.0.1:{port}\"\ndatabase = \"t\"\nusername = \"tls\"\npassword = \"pw\"\n{QUICK}{t}\n"
            ),
        );
    }
    let mut rules = String::new();
    for name in names {
        rules.push_str(&rule(
            name,
            &format!("type = \"mysql\"\nconnector = \"{name}\"\nsql = \"INSERT INTO msgs(who, v) VALUES ('{name}', ${{v}})\""),
        ));
    }
    write(&dir.path().join("rules"), "r.toml", &rules);
    let b = broker(dir.path()).await;
    for name in names {
        publish(b.tcp, &format!("t/{name}"), &[format!(r#"{{"v": "hello {name}"}}"#)]).await;
    }
    let opts = sqlx::mysql::MySqlConnectOptions::new()
        .socket(&sock)
        .username("root")
        .database("t");
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    for name in ["secure", "insecure"] {
        let v: String = wait_for(&format!("the row of {name}"), || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar("SELECT v FROM msgs WHERE who = ?")
                    .bind(name)
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        assert_eq!(v, format!("hello {name}"));
    }
    assert_refused_by_verification(&b, "wrong_ca").await;
    // Without the client certificate the server refuses the user (REQUIRE X509).
    let c = wait_for("no_cert disconnected with a reason", || async {
        connector(&b, "no_cert")
            .await
            .filter(|c| c["status"] == "disconnected" && c["status_reason"].is_string())
    })
    .await;
    assert!(
        c["status_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Access denied"),
        "{c}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM msgs WHERE who IN ('wrong_ca', 'no_cert')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    b.running.stop().await;
    pool.close().await;
}

//! Test helpers: start a broker in-process on port 0 with a temporary data dir.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use junction::app::{self, Running};

pub mod db;

/// A broker running in this process, and where it listens.
pub struct TestBroker {
    pub running: Running,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub http: SocketAddr,
}

/// Start a broker with its data in `data_dir`, plus extra `JUNCTION_*` settings.
pub async fn start_in(data_dir: &Path, extra: &[(&str, &str)]) -> TestBroker {
    let mut env: Vec<(String, String)> = vec![
        ("JUNCTION_LISTENERS__TCP__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("JUNCTION_LISTENERS__WS__DEFAULT__BIND".into(), "127.0.0.1:0".into()),
        ("JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND".into(), "127.0.0.1:0".into()),
        ("JUNCTION_NODE__DATA_DIR".into(), data_dir.display().to_string()),
        ("JUNCTION_DURABLE_STORAGE__SYNC_MODE".into(), "every_write".into()),
        // Hermetic: the repository's rules/ and functions/ are not loaded.
        (
            "JUNCTION_RULE_ENGINE__RULES_DIR".into(),
            data_dir.join("rules").display().to_string(),
        ),
        (
            "JUNCTION_RULE_ENGINE__FUNCTIONS_DIR".into(),
            data_dir.join("functions").display().to_string(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let cfg = junction::config::load(None, env).expect("test config");
    let running = app::start(&cfg).await.expect("broker starts");
    let tcp = running.addr("tcp").expect("tcp listener");
    let ws = running.addr("ws").expect("ws listener");
    let http = running.addr("http").expect("http listener");
    TestBroker { running, tcp, ws, http }
}

/// A test whose server or binary is missing: skipped with the reason printed, or failed
/// when `JUNCTION_REQUIRE_SERVICES=1` (as `.ci/run` sets it).
pub fn skip<T>(what: &str, why: impl std::fmt::Display) -> Option<T> {
    if std::env::var("JUNCTION_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} is required (JUNCTION_REQUIRE_SERVICES=1) but unavailable: {why}");
    }
    eprintln!("SKIPPED: {what} unavailable ({why}); start it with scripts/services.sh");
    None
}

/// A port from the environment (the services of `scripts/services.sh` may be moved).
pub fn port(var: &str, default: u16) -> u16 {
    std::env::var(var).ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

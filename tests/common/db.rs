//! Connections to the SQL servers of `scripts/services.sh` for tests to set up and check
//! tables: PostgreSQL (`JUNCTION_POSTGRES_PORT`, default 5432, user `postgres`, database
//! `test`) and MariaDB (`JUNCTION_MARIADB_PORT`, default 3306, user/password/database
//! `test`). `None` (skipped, or failed with `JUNCTION_REQUIRE_SERVICES=1`) when absent.

use std::time::Duration;

use sqlx::Connection;

use super::{port, skip};

pub fn pg_port() -> u16 {
    port("JUNCTION_POSTGRES_PORT", 5432)
}

pub async fn pg() -> Option<sqlx::PgConnection> {
    let url = format!("postgres://postgres@127.0.0.1:{}/test?sslmode=disable", pg_port());
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&url)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => skip("PostgreSQL", e),
        Err(_) => skip("PostgreSQL", "connect timed out"),
    }
}

pub fn my_port() -> u16 {
    port("JUNCTION_MARIADB_PORT", 3306)
}

pub async fn my() -> Option<sqlx::MySqlConnection> {
    let url = format!("mysql://test:test@127.0.0.1:{}/test", my_port());
    match tokio::time::timeout(Duration::from_secs(10), sqlx::MySqlConnection::connect(&url)).await {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) => skip("MariaDB", e),
        Err(_) => skip("MariaDB", "connect timed out"),
    }
}

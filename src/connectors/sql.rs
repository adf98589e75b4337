//! The SQL connectors (sqlx): `postgres`, `timescaledb` (the same code: TimescaleDB speaks
//! PostgreSQL) and `mysql` (MySQL and MariaDB).
//!
//! Connector file:
//! ```toml
//! type = "postgres"                 # or "timescaledb", "mysql"
//! server = "127.0.0.1:5432"         # host[:port]; default port 5432 (postgres) / 3306 (mysql)
//! database = "mqtt"
//! username = "junction"
//! password = "secret"               # optional
//! pool_size = 8                     # connections (PGlite-based TimescaleDB: 1)
//! connect_timeout = "5s"
//! request_timeout = "15s"           # one batch, all statements
//! # TLS (see connectors::tls): verify = true is sslmode verify-full / VERIFY_IDENTITY,
//! # verify = false is require / REQUIRED (any certificate); off: disable / DISABLED
//! tls = { enable = true, verify = true, cacertfile = "ca.pem", certfile = "client.pem", keyfile = "client.key" }
//! ```
//! TLS is sqlx's rustls (ring): `cacertfile` is trusted besides the default roots
//! (Mozilla's, webpki-roots); `certfile` / `keyfile` are the client certificate (e.g. for a
//! MariaDB user `REQUIRE X509` or PostgreSQL `clientcert=verify-full`).
//! Rule action:
//! ```toml
//! [[rules.actions]]
//! type = "postgres"
//! connector = "pg"
//! sql = "INSERT INTO msgs(clientid, topic, payload, ts) VALUES (${clientid}, ${topic}, ${payload}, ${timestamp})"
//! dedupe = false                    # true: ON CONFLICT DO NOTHING / INSERT IGNORE
//! ```
//!
//! **Binding, never splicing.** When the action is parsed, each `${...}` of the template
//! becomes a bind parameter (`$1`, `$2`, ... for PostgreSQL, `?` for MySQL); values never
//! enter the SQL text. A placeholder written inside quotes, `'${clientid}'`, is a parameter
//! too (the quotes are dropped: it binds the value, it is not text around it). A placeholder
//! inside a quoted string with other text (`'id-${clientid}'`), inside a quoted identifier or
//! a comment is refused with its position: write `'id-' || ${clientid}` (PostgreSQL) or
//! `CONCAT('id-', ${clientid})` (MySQL) instead.
//!
//! **Types.** PostgreSQL: the statement is described once (per action) and each value is
//! converted to the type the server expects for its parameter: integers, floats, numeric
//! (as float8), bool, text, json/jsonb (a string holding JSON is stored as that JSON),
//! timestamp/timestamptz (from milliseconds since the epoch, as `${timestamp}` is, or from
//! RFC 3339 text), uuid, bytea; other types are sent as text (cast in the SQL, e.g.
//! `${ip}::text::inet`). MySQL: ints, floats, bools and text as they are, maps and arrays
//! as JSON text (MySQL converts; for a DATETIME from `${timestamp}` write
//! `FROM_UNIXTIME(${timestamp} / 1000)`). A missing value or null binds NULL.
//!
//! **Batches.** An `INSERT ... VALUES (...)` with one tuple holding every placeholder is sent
//! as one multi-row INSERT per batch (`VALUES (...), (...), ...`; split at 65,535 parameters,
//! the chunks in one transaction); any other statement runs once per output, all in one
//! transaction.
//!
//! **Errors.** Connection and I/O errors, timeouts, SQLSTATE classes 08, 40, 53, 55, 57 and
//! 58 are retried. Others (class 23 constraint violations, 22 data exceptions, 42 syntax
//! errors and undefined tables, ...) are not: the server's message is the action's error.
//! When a batch fails so, its rows are sent again one by one, so that one bad row does not
//! take the good ones with it: the good rows are written, and the batch is reported failed
//! with `N of M rows refused` and the first server message; only the refused rows count as
//! failed ([`SendError::partial`]).
//!
//! **Effectively once (`dedupe = true`).** A retried batch (after a lost connection or a
//! timeout whose outcome is unknown) may have been written already. With `dedupe = true`
//! the INSERT becomes `INSERT ... ON CONFLICT DO NOTHING` (PostgreSQL) or `INSERT IGNORE`
//! (MySQL): a row whose unique key is already there is skipped. It needs a unique key in
//! the table that identifies the output, e.g. the message id: `id TEXT PRIMARY KEY` bound
//! from `${id}`. With MySQL, INSERT IGNORE also turns some data errors into warnings.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Arguments, Executor, Statement, TypeInfo};

use super::{ActionSettings, CommonSettings, Connector, SendError};
use crate::config::walk::{Fields, FileError};
use crate::rules::template::{Placeholder, Template};
use crate::rules::value::{Map, Value};

/// Longest server message kept in an error.
const MAX_MESSAGE: usize = 1024;
/// Most bind parameters in one statement (both protocols count them in 16 bits).
const MAX_PARAMS: usize = 65_535;
/// Marks a parameter's place in the statement text while parsing.
const MARK: char = '\u{0}';

/// Which server protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

enum Pool {
    Pg(PgPool),
    My(MySqlPool),
}

impl Pool {
    fn clone_ref(&self) -> Pool {
        match self {
            Pool::Pg(p) => Pool::Pg(p.clone()),
            Pool::My(p) => Pool::My(p.clone()),
        }
    }
}

enum Options {
    Pg(PgConnectOptions),
    My(MySqlConnectOptions),
}

/// A PostgreSQL, TimescaleDB or MySQL connector.
pub struct SqlConnector {
    kind: &'static str,
    dialect: Dialect,
    options: Options,
    pool_size: u32,
    connect_timeout: Duration,
    request_timeout: Duration,
    pool: RwLock<Option<Pool>>,
}

/// The type a PostgreSQL parameter is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgKind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// NUMERIC and DECIMAL, bound as float8 (assignment cast).
    Numeric,
    Text,
    Json,
    Timestamp,
    Timestamptz,
    Uuid,
    Bytea,
}

impl PgKind {
    fn of(name: &str) -> PgKind {
        match name {
            "BOOL" => PgKind::Bool,
            "INT2" => PgKind::Int2,
            "INT4" => PgKind::Int4,
            "INT8" => PgKind::Int8,
            "FLOAT4" => PgKind::Float4,
            "FLOAT8" => PgKind::Float8,
            "NUMERIC" => PgKind::Numeric,
            "JSON" | "JSONB" => PgKind::Json,
            "TIMESTAMP" => PgKind::Timestamp,
            "TIMESTAMPTZ" => PgKind::Timestamptz,
            "UUID" => PgKind::Uuid,
            "BYTEA" => PgKind::Bytea,
            _ => PgKind::Text,
        }
    }
}

/// A SQL action: the statement with its parameters, parsed once.
#[derive(Debug)]
pub struct SqlAction {
    /// The template as written.
    pub template: String,
    /// The placeholders, in order: parameter `i` binds `params[i]`.
    pub params: Vec<Placeholder>,
    /// The statement with [`MARK`] for each parameter (quotes around placeholders dropped,
    /// `dedupe` applied).
    marked: String,
    /// For a multi-row INSERT: the byte range of the `(...)` tuple in `marked`.
    tuple: Option<(usize, usize)>,
    pub dedupe: bool,
    /// PostgreSQL: the parameter types the server reported (described on first use).
    pg_kinds: Mutex<Option<Arc<Vec<PgKind>>>>,
}

impl ActionSettings for SqlAction {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl SqlAction {
    /// Whether a batch goes as one multi-row INSERT.
    pub fn multi_row(&self) -> bool {
        self.tuple.is_some()
    }

    /// The statement for `rows` outputs (a multi-row INSERT) or for one output.
    pub fn statement(&self, d: Dialect, rows: usize) -> String {
        let mut next = 0usize;
        let mut param = |s: &mut String| {
            next += 1;
            match d {
                Dialect::Postgres => {
                    s.push('$');
                    s.push_str(&next.to_string());
                }
                Dialect::MySql => s.push('?'),
            }
        };
        let mut out = String::with_capacity(self.marked.len() * rows.max(1));
        let push = |out: &mut String, text: &str, param: &mut dyn FnMut(&mut String)| {
            for c in text.chars() {
                if c == MARK {
                    param(out);
                } else {
                    out.push(c);
                }
            }
        };
        match self.tuple {
            Some((open, close)) if rows > 1 => {
                out.push_str(&self.marked[..open]);
                for r in 0..rows {
                    if r > 0 {
                        out.push_str(", ");
                    }
                    push(&mut out, &self.marked[open..close], &mut param);
                }
                out.push_str(&self.marked[close..]);
            }
            _ => push(&mut out, &self.marked, &mut param),
        }
        out
    }
}

/// Parses a connector file of type `postgres` (the registry's entry).
pub fn parse_postgres(f: &mut Fields<'_, '_>, c: &CommonSettings) -> Result<Arc<dyn Connector>, FileError> {
    parse(f, c, "postgres", Dialect::Postgres)
}

/// Parses a connector file of type `timescaledb` (PostgreSQL's code).
pub fn parse_timescaledb(f: &mut Fields<'_, '_>, c: &CommonSettings) -> Result<Arc<dyn Connector>, FileError> {
    parse(f, c, "timescaledb", Dialect::Postgres)
}

/// Parses a connector file of type `mysql`.
pub fn parse_mysql(f: &mut Fields<'_, '_>, c: &CommonSettings) -> Result<Arc<dyn Connector>, FileError> {
    parse(f, c, "mysql", Dialect::MySql)
}

fn parse(
    f: &mut Fields<'_, '_>,
    c: &CommonSettings,
    kind: &'static str,
    dialect: Dialect,
) -> Result<Arc<dyn Connector>, FileError> {
    let server = f.req_string("server")?;
    let default_port = match dialect {
        Dialect::Postgres => 5432,
        Dialect::MySql => 3306,
    };
    let (host, port) =
        crate::connectors::file::host_port(&server.value, default_port).map_err(|e| f.error("server", e))?;
    let database = f.req_string("database")?.value;
    let username = f.req_string("username")?.value;
    let password = f.string("password")?.map(|p| p.value);
    let tls = super::tls::enabled(&c.tls).map_err(|r| f.error(r.key, r.message))?;
    let options = match dialect {
        Dialect::Postgres => {
            let mut o = PgConnectOptions::new_without_pgpass()
                .host(&host)
                .port(port)
                .database(&database)
                .username(&username)
                .application_name("junction");
            if let Some(p) = &password {
                o = o.password(p);
            }
            Options::Pg(pg_tls(o, tls, &c.tls))
        }
        Dialect::MySql => {
            let mut o = MySqlConnectOptions::new()
                .host(&host)
                .port(port)
                .database(&database)
                .username(&username);
            if let Some(p) = &password {
                o = o.password(p);
            }
            Options::My(my_tls(o, tls, &c.tls))
        }
    };
    Ok(Arc::new(SqlConnector {
        kind,
        dialect,
        options,
        pool_size: u32::try_from(c.pool_size).unwrap_or(u32::MAX).max(1),
        connect_timeout: c.connect_timeout,
        request_timeout: c.request_timeout,
        pool: RwLock::new(None),
    }))
}

/// PostgreSQL's TLS: `sslmode=disable` without TLS, `verify-full` (chain and host name)
/// with `verify = true`, `require` (any certificate) with `verify = false`.
fn pg_tls(o: PgConnectOptions, enable: bool, tls: &super::file::TlsSettings) -> PgConnectOptions {
    if !enable {
        return o.ssl_mode(PgSslMode::Disable);
    }
    let mut o = o.ssl_mode(if tls.verify {
        PgSslMode::VerifyFull
    } else {
        PgSslMode::Require
    });
    if let Some(ca) = &tls.files.ca_pem {
        o = o.ssl_root_cert_from_pem(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.files.cert_pem, &tls.files.key_pem) {
        o = o.ssl_client_cert_from_pem(cert).ssl_client_key_from_pem(key);
    }
    o
}

/// MySQL's TLS: `DISABLED` without TLS, `VERIFY_IDENTITY` (chain and host name) with
/// `verify = true`, `REQUIRED` (any certificate) with `verify = false`.
fn my_tls(o: MySqlConnectOptions, enable: bool, tls: &super::file::TlsSettings) -> MySqlConnectOptions {
    if !enable {
        return o.ssl_mode(MySqlSslMode::Disabled);
    }
    let mut o = o.ssl_mode(if tls.verify {
        MySqlSslMode::VerifyIdentity
    } else {
        MySqlSslMode::Required
    });
    if let Some(ca) = &tls.files.ca_pem {
        o = o.ssl_ca_from_pem(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.files.cert_pem, &tls.files.key_pem) {
        o = o.ssl_client_cert_from_pem(cert).ssl_client_key_from_pem(key);
    }
    o
}

/// Parses an action's `sql` template into a statement with parameters.
pub fn parse_statement(text: &str, dialect: Dialect, dedupe: bool) -> Result<SqlAction, String> {
    let t = Template::parse(text).map_err(|e| format!("bad template: {e} (at byte {} of the value)", e.offset))?;
    let params: Vec<Placeholder> = t.placeholders().cloned().collect();
    let pieces: Vec<String> = t.literal_pieces().iter().map(|s| s.to_string()).collect();
    let marked = mark(&pieces, &params, dialect)?;
    let marked = marked.trim_end().trim_end_matches(';').trim_end().to_string();
    if marked.contains(';') && top_level(&marked, dialect).iter().any(|&(i, c)| c == ';' && i > 0) {
        return Err("one statement only (a `;` separates statements)".into());
    }
    let first_word: String = marked
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    let is_insert = first_word == "INSERT" || (dialect == Dialect::MySql && first_word == "REPLACE");
    let mut tuple = if is_insert { find_tuple(&marked, dialect) } else { None };
    let mut marked = marked;
    if dedupe {
        if first_word != "INSERT" {
            return Err("`dedupe = true` needs an INSERT statement".into());
        }
        match dialect {
            Dialect::Postgres => {
                let tail_empty = tuple.is_some_and(|(_, close)| marked[close..].trim().is_empty());
                if !tail_empty {
                    return Err("`dedupe = true` appends `ON CONFLICT DO NOTHING` to `INSERT ... VALUES (...)`; \
                                this statement has more after VALUES: write its ON CONFLICT clause yourself and drop `dedupe`"
                        .into());
                }
                marked.push_str(" ON CONFLICT DO NOTHING");
            }
            Dialect::MySql => {
                let start = marked.len() - marked.trim_start().len();
                let after = marked[start + 6..].trim_start().to_ascii_uppercase();
                if !after.starts_with("IGNORE") {
                    marked.insert_str(start + 6, " IGNORE");
                    tuple = tuple.map(|(o, c)| (o + 7, c + 7));
                }
            }
        }
    }
    Ok(SqlAction {
        template: text.to_string(),
        params,
        marked,
        tuple,
        dedupe,
        pg_kinds: Mutex::new(None),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Code,
    Single,
    Double,
    Backtick,
    Line,
    Block,
}

/// Joins the literal pieces with [`MARK`] for each placeholder, dropping quotes around a
/// placeholder alone in a string and refusing one in a string with other text, in a quoted
/// identifier or in a comment.
fn mark(pieces: &[String], params: &[Placeholder], dialect: Dialect) -> Result<String, String> {
    let mut out = String::new();
    let mut st = Lex::Code;
    // Where in `out` the current single-quoted string opened.
    let mut opened = 0usize;
    let mut skip_first = false;
    for (i, piece) in pieces.iter().enumerate() {
        let mut chars = piece.char_indices().peekable();
        if skip_first {
            chars.next();
            skip_first = false;
        }
        while let Some((_, c)) = chars.next() {
            let next = chars.peek().map(|&(_, n)| n);
            match st {
                Lex::Code => match c {
                    '\'' => {
                        st = Lex::Single;
                        opened = out.len();
                    }
                    '"' => st = Lex::Double,
                    '`' if dialect == Dialect::MySql => st = Lex::Backtick,
                    '-' if next == Some('-') => st = Lex::Line,
                    '#' if dialect == Dialect::MySql => st = Lex::Line,
                    '/' if next == Some('*') => st = Lex::Block,
                    '?' if dialect == Dialect::MySql => {
                        return Err("a literal `?` outside quotes would be taken for a parameter: use ${...}".into())
                    }
                    '$' if dialect == Dialect::Postgres && next.is_some_and(|n| n.is_ascii_digit()) => {
                        return Err("write placeholders as ${...}, not $1".into())
                    }
                    _ => {}
                },
                Lex::Single => {
                    if c == '\\' && dialect == Dialect::MySql {
                        out.push(c);
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                        continue;
                    }
                    if c == '\'' {
                        if next == Some('\'') {
                            out.push(c);
                            chars.next();
                        } else {
                            st = Lex::Code;
                        }
                    }
                }
                Lex::Double if c == '"' => st = Lex::Code,
                Lex::Backtick if c == '`' => st = Lex::Code,
                Lex::Line if c == '\n' => st = Lex::Code,
                Lex::Block if c == '*' && next == Some('/') => {
                    out.push(c);
                    chars.next();
                    out.push('/');
                    st = Lex::Code;
                    continue;
                }
                _ => {}
            }
            out.push(c);
        }
        let Some(p) = params.get(i) else { break };
        match st {
            Lex::Code => out.push(MARK),
            Lex::Single => {
                let next = pieces.get(i + 1).map(String::as_str).unwrap_or("");
                let alone = opened + 1 == out.len() && next.starts_with('\'') && !next.starts_with("''");
                if !alone {
                    return Err(format!(
                        "placeholder ${{{}}} is inside a quoted string with other text: values are bound as \
                         parameters, never spliced into the SQL; build the text in SQL instead ({})",
                        p.text,
                        match dialect {
                            Dialect::Postgres => "'prefix' || ${x}",
                            Dialect::MySql => "CONCAT('prefix', ${x})",
                        }
                    ));
                }
                out.truncate(opened);
                out.push(MARK);
                st = Lex::Code;
                skip_first = true;
            }
            Lex::Double | Lex::Backtick => {
                return Err(format!(
                    "placeholder ${{{}}} is inside a quoted identifier: table and column names cannot be parameters",
                    p.text
                ))
            }
            Lex::Line | Lex::Block => return Err(format!("placeholder ${{{}}} is inside a comment", p.text)),
        }
    }
    if st == Lex::Single || st == Lex::Double || st == Lex::Backtick {
        return Err("unterminated quoted string".into());
    }
    Ok(out)
}

/// The characters of `s` outside quotes and comments, with their byte offsets.
fn top_level(s: &str, dialect: Dialect) -> Vec<(usize, char)> {
    let mut out = Vec::new();
    let mut st = Lex::Code;
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let next = it.peek().map(|&(_, n)| n);
        match st {
            Lex::Code => match c {
                '\'' => st = Lex::Single,
                '"' => st = Lex::Double,
                '`' if dialect == Dialect::MySql => st = Lex::Backtick,
                '-' if next == Some('-') => st = Lex::Line,
                '#' if dialect == Dialect::MySql => st = Lex::Line,
                '/' if next == Some('*') => st = Lex::Block,
                _ => out.push((i, c)),
            },
            Lex::Single => {
                if c == '\\' && dialect == Dialect::MySql {
                    it.next();
                } else if c == '\'' {
                    if next == Some('\'') {
                        it.next();
                    } else {
                        st = Lex::Code;
                    }
                }
            }
            Lex::Double if c == '"' => st = Lex::Code,
            Lex::Backtick if c == '`' => st = Lex::Code,
            Lex::Line if c == '\n' => st = Lex::Code,
            Lex::Block if c == '*' && next == Some('/') => {
                it.next();
                st = Lex::Code;
            }
            _ => {}
        }
    }
    out
}

/// The `(...)` after `VALUES` of a one-tuple INSERT holding every parameter: its byte range
/// (open paren to one past the close paren).
fn find_tuple(marked: &str, dialect: Dialect) -> Option<(usize, usize)> {
    let top = top_level(marked, dialect);
    let upper = marked.to_ascii_uppercase();
    let mut values_at = None;
    for (k, &(i, _)) in top.iter().enumerate() {
        if upper[i..].starts_with("VALUES")
            && (i == 0 || !is_word(marked[..i].chars().last()))
            && !is_word(marked[i + 6..].chars().next())
        {
            values_at = Some(k);
            break;
        }
    }
    let k = values_at?;
    let vpos = top[k].0;
    let mut iter = top.iter().skip_while(|&&(i, _)| i < vpos + 6);
    let &(open, c) = iter.find(|&&(_, c)| !c.is_whitespace())?;
    if c != '(' {
        return None;
    }
    let mut depth = 0i32;
    let mut close = None;
    for &(i, c) in top.iter().filter(|&&(i, _)| i >= open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    // One tuple only, and every parameter inside it.
    if marked[close..].trim_start().starts_with(',') {
        return None;
    }
    if marked[..open].contains(MARK) || marked[close..].contains(MARK) {
        return None;
    }
    Some((open, close))
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A failed connect: always `disconnected`; a failed TLS handshake (rustls's error inside
/// an I/O error) says so.
fn connect_error(e: sqlx::Error) -> SendError {
    if let sqlx::Error::Io(io) = &e {
        let tls = io
            .get_ref()
            .is_some_and(|i| i.downcast_ref::<tokio_rustls::rustls::Error>().is_some());
        if tls {
            return SendError::disconnected(clip(format!("cannot connect: TLS handshake failed: {io}")));
        }
    }
    SendError::disconnected(format!("cannot connect: {}", classify(e).message))
}

/// Sorts a sqlx error into retryable or not.
fn classify(e: sqlx::Error) -> SendError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            let message = clip(match &code {
                c if c.is_empty() => db.message().to_string(),
                c => format!("{} (SQLSTATE {c})", db.message()),
            });
            let class = code.get(..2).unwrap_or("");
            match (class, number) {
                // MySQL: lost connection, shutdown, too many connections.
                (_, Some(2006 | 2013 | 1053 | 1040 | 1927)) => SendError::disconnected(message),
                // MySQL: lock wait timeout, deadlock.
                (_, Some(1205 | 1213)) => SendError::retryable(message),
                ("08" | "57", _) => SendError::disconnected(message),
                ("40" | "53" | "55" | "58", _) => SendError::retryable(message),
                _ => SendError::fatal(message),
            }
        }
        sqlx::Error::Io(e) => SendError::disconnected(format!("I/O error: {e}")),
        sqlx::Error::Tls(e) => SendError::disconnected(format!("TLS error: {e}")),
        sqlx::Error::Protocol(e) => SendError::disconnected(clip(format!("protocol error: {e}"))),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => SendError::disconnected(e.to_string()),
        sqlx::Error::PoolTimedOut => SendError::retryable("no free connection in time (pool timed out)"),
        other => SendError::fatal(clip(other.to_string())),
    }
}

// --- binding ----------------------------------------------------------------------------

fn json_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_json().to_string(),
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.2e18 => Some(*f as i64),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Str(s) => {
            let s = s.trim();
            s.parse().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Int(0) => Some(false),
        Value::Int(1) => Some(true),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "on" => Some(true),
            "false" | "f" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn as_time(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let from_ms = |ms: f64| {
        let secs = (ms / 1000.0).floor();
        let nanos = ((ms - secs * 1000.0) * 1_000_000.0).round() as u32;
        chrono::Utc.timestamp_opt(secs as i64, nanos.min(999_999_999)).single()
    };
    match v {
        Value::Int(ms) => from_ms(*ms as f64),
        Value::Float(ms) => from_ms(*ms),
        Value::Str(s) => {
            let s = s.trim();
            if let Ok(ms) = s.parse::<i64>() {
                return from_ms(ms as f64);
            }
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&chrono::Utc));
            }
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
                .map(|n| n.and_utc())
        }
        _ => None,
    }
}

fn add<'q, T>(args: &mut PgArguments, v: Option<T>) -> Result<(), String>
where
    T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'q,
{
    args.add(v).map_err(|e| e.to_string())
}

/// Binds `v` (None: missing) as a parameter of type `kind`.
fn bind_pg(args: &mut PgArguments, kind: PgKind, p: &Placeholder, v: Option<Value>) -> Result<(), String> {
    let v = v.filter(|v| !v.is_null());
    let bad = |v: &Value| {
        let mut shown = json_text(v);
        if shown.len() > 64 {
            shown = clip(shown.chars().take(64).collect());
        }
        format!("${{{}}} = {shown:?} cannot be bound as {kind:?}", p.text)
    };
    macro_rules! conv {
        ($f:expr) => {
            match &v {
                None => None,
                Some(x) => Some($f(x).ok_or_else(|| bad(x))?),
            }
        };
    }
    match kind {
        PgKind::Bool => add(args, conv!(as_bool)),
        PgKind::Int2 => add(args, conv!(|x| as_i64(x).and_then(|i| i16::try_from(i).ok()))),
        PgKind::Int4 => add(args, conv!(|x| as_i64(x).and_then(|i| i32::try_from(i).ok()))),
        PgKind::Int8 => add(args, conv!(as_i64)),
        PgKind::Float4 => add(args, conv!(|x| as_f64(x).map(|f| f as f32))),
        PgKind::Float8 | PgKind::Numeric => add(args, conv!(as_f64)),
        PgKind::Text => add(args, v.as_ref().map(json_text)),
        PgKind::Json => add(
            args,
            v.as_ref().map(|x| {
                sqlx::types::Json(match x {
                    Value::Str(s) => {
                        serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
                    }
                    Value::Bytes(b) => serde_json::from_slice(b)
                        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned())),
                    other => other.to_json(),
                })
            }),
        ),
        PgKind::Timestamptz => add(args, conv!(as_time)),
        PgKind::Timestamp => add(args, conv!(|x| as_time(x).map(|t| t.naive_utc()))),
        PgKind::Uuid => add(args, conv!(|x: &Value| uuid::Uuid::parse_str(json_text(x).trim()).ok())),
        PgKind::Bytea => add(
            args,
            v.as_ref().map(|x| match x {
                Value::Bytes(b) => b.to_vec(),
                other => json_text(other).into_bytes(),
            }),
        ),
    }
}

fn bind_my(args: &mut MySqlArguments, v: Option<Value>) -> Result<(), String> {
    let r = match v {
        None | Some(Value::Null) => args.add(None::<String>),
        Some(Value::Bool(b)) => args.add(b),
        Some(Value::Int(i)) => args.add(i),
        Some(Value::Float(f)) => args.add(f),
        Some(Value::Str(s)) => args.add(s.to_string()),
        Some(Value::Bytes(b)) => args.add(b.to_vec()),
        Some(other) => args.add(other.to_json().to_string()),
    };
    r.map_err(|e| e.to_string())
}

/// The statements (text and arguments) for a batch: one multi-row INSERT per chunk, or one
/// statement per output.
fn build<A: Default>(
    a: &SqlAction,
    d: Dialect,
    rows: &[Arc<Map>],
    mut bind: impl FnMut(&mut A, usize, Option<Value>) -> Result<(), String>,
) -> Result<Vec<(String, A)>, SendError> {
    let mut out = Vec::new();
    let per = if a.multi_row() {
        (MAX_PARAMS / a.params.len().max(1)).max(1)
    } else {
        1
    };
    for chunk in rows.chunks(per) {
        let mut args = A::default();
        for row in chunk {
            for (i, p) in a.params.iter().enumerate() {
                bind(&mut args, i, p.lookup(row)).map_err(SendError::fatal)?;
            }
        }
        out.push((a.statement(d, chunk.len()), args));
    }
    Ok(out)
}

impl SqlConnector {
    fn pool(&self) -> Result<Pool, SendError> {
        self.pool
            .read()
            .as_ref()
            .map(Pool::clone_ref)
            .ok_or_else(|| SendError::disconnected("not connected"))
    }

    async fn pg_kinds(&self, pool: &PgPool, a: &SqlAction) -> Result<Arc<Vec<PgKind>>, SendError> {
        if let Some(k) = a.pg_kinds.lock().clone() {
            return Ok(k);
        }
        let sql = a.statement(Dialect::Postgres, 1);
        let stmt = pool.prepare(&sql).await.map_err(classify)?;
        let kinds: Vec<PgKind> = match stmt.parameters() {
            Some(sqlx::Either::Left(types)) => types.iter().map(|t| PgKind::of(t.name())).collect(),
            _ => vec![PgKind::Text; a.params.len()],
        };
        if kinds.len() != a.params.len() {
            return Err(SendError::fatal(format!(
                "the server reports {} parameters for {} placeholders",
                kinds.len(),
                a.params.len()
            )));
        }
        let kinds = Arc::new(kinds);
        *a.pg_kinds.lock() = Some(kinds.clone());
        Ok(kinds)
    }

    /// Sends `rows` as one unit (one statement, or a transaction).
    async fn exec(&self, pool: &Pool, a: &SqlAction, rows: &[Arc<Map>]) -> Result<(), SendError> {
        match pool {
            Pool::Pg(pool) => {
                let kinds = self.pg_kinds(pool, a).await?;
                let stmts = build::<PgArguments>(a, Dialect::Postgres, rows, |args, i, v| {
                    bind_pg(args, kinds.get(i).copied().unwrap_or(PgKind::Text), &a.params[i], v)
                })?;
                if stmts.len() == 1 {
                    for (sql, args) in stmts {
                        sqlx::query_with(&sql, args).execute(pool).await.map_err(classify)?;
                    }
                    return Ok(());
                }
                let mut tx = pool.begin().await.map_err(classify)?;
                for (sql, args) in stmts {
                    sqlx::query_with(&sql, args).execute(&mut *tx).await.map_err(classify)?;
                }
                tx.commit().await.map_err(classify)
            }
            Pool::My(pool) => {
                let stmts = build::<MySqlArguments>(a, Dialect::MySql, rows, |args, _, v| bind_my(args, v))?;
                if stmts.len() == 1 {
                    for (sql, args) in stmts {
                        sqlx::query_with(&sql, args).execute(pool).await.map_err(classify)?;
                    }
                    return Ok(());
                }
                let mut tx = pool.begin().await.map_err(classify)?;
                for (sql, args) in stmts {
                    sqlx::query_with(&sql, args).execute(&mut *tx).await.map_err(classify)?;
                }
                tx.commit().await.map_err(classify)
            }
        }
    }

    async fn exec_timed(&self, pool: &Pool, a: &SqlAction, rows: &[Arc<Map>]) -> Result<(), SendError> {
        match tokio::time::timeout(self.request_timeout, self.exec(pool, a, rows)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "no answer within request_timeout ({:?})",
                self.request_timeout
            ))),
        }
    }

    async fn send(&self, a: &SqlAction, batch: &[Arc<Map>]) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let pool = self.pool()?;
        let e = match self.exec_timed(&pool, a, batch).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if e.retryable {
            return Err(e);
        }
        // The types may have changed (a table recreated): describe again next time.
        *a.pg_kinds.lock() = None;
        if batch.len() == 1 {
            return Err(e);
        }
        // One bad row must not fail the good ones: row by row.
        let mut refused = 0usize;
        let mut first = None;
        for row in batch {
            match self.exec_timed(&pool, a, std::slice::from_ref(row)).await {
                Ok(()) => {}
                Err(e) if e.retryable => return Err(e),
                Err(e) => {
                    refused += 1;
                    first.get_or_insert(e.message);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(m) => Err(SendError::fatal(format!(
                "{refused} of {} rows refused ({} written); first error: {m}",
                batch.len(),
                batch.len() - refused
            ))
            .partial(refused)),
        }
    }

    async fn do_connect(&self) -> Result<(), SendError> {
        // PGlite (the TimescaleDB of the tests) runs every connection in one session, so a
        // new connection finds the prepared statements of the one before: drop them.
        let shared_session = self.kind == "timescaledb";
        let pool = match &self.options {
            Options::Pg(o) => Pool::Pg(
                PgPoolOptions::new()
                    .after_connect(move |c, _| {
                        Box::pin(async move {
                            if shared_session {
                                c.execute(sqlx::raw_sql("DEALLOCATE ALL")).await?;
                            }
                            Ok(())
                        })
                    })
                    .max_connections(self.pool_size)
                    .acquire_timeout(self.request_timeout.max(self.connect_timeout))
                    .connect_with(o.clone())
                    .await
                    .map_err(connect_error)?,
            ),
            Options::My(o) => Pool::My(
                MySqlPoolOptions::new()
                    .max_connections(self.pool_size)
                    .acquire_timeout(self.request_timeout.max(self.connect_timeout))
                    .connect_with(o.clone())
                    .await
                    .map_err(connect_error)?,
            ),
        };
        let old = self.pool.write().replace(pool);
        if let Some(old) = old {
            close_pool(old).await;
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), SendError> {
        let r = match self.pool()? {
            Pool::Pg(p) => sqlx::query("SELECT 1").execute(&p).await.map(|_| ()),
            Pool::My(p) => sqlx::query("SELECT 1").execute(&p).await.map(|_| ()),
        };
        r.map_err(|e| {
            let mut e = classify(e);
            e.disconnected = true;
            e
        })
    }
}

async fn close_pool(p: Pool) {
    match p {
        Pool::Pg(p) => p.close().await,
        Pool::My(p) => p.close().await,
    }
}

fn action(a: &dyn ActionSettings) -> Result<&SqlAction, SendError> {
    a.as_any()
        .downcast_ref::<SqlAction>()
        .ok_or_else(|| SendError::fatal("not a SQL action"))
}

impl Connector for SqlConnector {
    fn connect(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.do_connect().boxed()
    }

    fn send_batch<'a>(
        &'a self,
        a: &'a dyn ActionSettings,
        batch: &'a [Arc<Map>],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        async move { self.send(action(a)?, batch).await }.boxed()
    }

    fn health_check(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.check().boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            let old = self.pool.write().take();
            if let Some(p) = old {
                close_pool(p).await;
            }
        }
        .boxed()
    }

    fn parse_action(&self, f: &mut Fields<'_, '_>) -> Result<Arc<dyn ActionSettings>, FileError> {
        let sql = f.req_string("sql")?;
        let dedupe = f.bool("dedupe")?.unwrap_or(false);
        let a = parse_statement(&sql.value, self.dialect, dedupe).map_err(|e| f.error("sql", e))?;
        Ok(Arc::new(a))
    }

    fn parse_query(&self, text: &str) -> Result<Arc<dyn ActionSettings>, super::QueryError> {
        let a = parse_query(text, self.dialect).map_err(super::QueryError::Invalid)?;
        Ok(Arc::new(a))
    }

    fn query<'a>(&'a self, q: &'a dyn ActionSettings, vars: &'a Map) -> BoxFuture<'a, Result<Vec<Map>, SendError>> {
        async move { self.fetch(action(q)?, vars).await }.boxed()
    }

    fn preview(&self, a: &dyn ActionSettings, out: &Map) -> serde_json::Value {
        let Ok(a) = action(a) else {
            return json!({"type": self.kind, "error": "not a SQL action"});
        };
        let params: Vec<serde_json::Value> = a
            .params
            .iter()
            .map(|p| p.lookup(out).map(|v| v.to_json()).unwrap_or(serde_json::Value::Null))
            .collect();
        json!({
            "type": self.kind,
            "sql": a.statement(self.dialect, 1),
            "params": params,
            "multi_row": a.multi_row(),
        })
    }
}

// ---------------------------------------------------------------------------
// Read queries (subscription by broker)

/// Parses a read query: a `SELECT` (or `WITH ... SELECT`) template whose `${...}` become
/// bind parameters, exactly as an action's `sql` does.
pub fn parse_query(text: &str, dialect: Dialect) -> Result<SqlAction, String> {
    let a = parse_statement(text, dialect, false)?;
    let first: String = a
        .marked
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        return Err(format!("a query must be a SELECT, not `{first}`"));
    }
    Ok(a)
}

/// One column of a result row as a rule value: integers, floats, booleans and text as
/// they are, bytes as bytes, anything else (or NULL) as null.
fn column_value<'r, R>(row: &'r R, i: usize) -> Value
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i16>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    // Integers first: MySQL's BOOL is a TINYINT, and a qos column must stay a number.
    if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
        return v.map_or(Value::Null, Value::Int);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
        return v.map_or(Value::Null, |v| Value::Int(i64::from(v)));
    }
    if let Ok(v) = row.try_get::<Option<i16>, _>(i) {
        return v.map_or(Value::Null, |v| Value::Int(i64::from(v)));
    }
    if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
        return v.map_or(Value::Null, Value::Float);
    }
    if let Ok(v) = row.try_get::<Option<f32>, _>(i) {
        return v.map_or(Value::Null, |v| Value::Float(f64::from(v)));
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
        return v.map_or(Value::Null, Value::Bool);
    }
    if let Ok(v) = row.try_get::<Option<String>, _>(i) {
        return v.map_or(Value::Null, Value::str);
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
        return v.map_or(Value::Null, |b| match String::from_utf8(b) {
            Ok(s) => Value::str(s),
            Err(e) => Value::Bytes(e.into_bytes().into()),
        });
    }
    Value::Null
}

/// A result row as a map, by column name.
fn row_map<'r, R>(row: &'r R) -> Map
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i16>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<f32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use sqlx::Column;
    let mut m = Map::default();
    for (i, c) in row.columns().iter().enumerate() {
        m.insert(std::sync::Arc::from(c.name()), column_value(row, i));
    }
    m
}

impl SqlConnector {
    /// Runs a read query with `vars` bound: its rows by column name.
    async fn fetch(&self, a: &SqlAction, vars: &Map) -> Result<Vec<Map>, SendError> {
        let pool = self.pool()?;
        let run = async {
            match &pool {
                Pool::Pg(pool) => {
                    let kinds = self.pg_kinds(pool, a).await?;
                    let mut args = PgArguments::default();
                    for (i, p) in a.params.iter().enumerate() {
                        let kind = kinds.get(i).copied().unwrap_or(PgKind::Text);
                        bind_pg(&mut args, kind, p, p.lookup(vars)).map_err(SendError::fatal)?;
                    }
                    let sql = a.statement(Dialect::Postgres, 1);
                    let rows = sqlx::query_with(&sql, args).fetch_all(pool).await.map_err(classify)?;
                    Ok(rows.iter().map(row_map).collect())
                }
                Pool::My(pool) => {
                    let mut args = MySqlArguments::default();
                    for p in &a.params {
                        bind_my(&mut args, p.lookup(vars)).map_err(SendError::fatal)?;
                    }
                    let sql = a.statement(Dialect::MySql, 1);
                    let rows = sqlx::query_with(&sql, args).fetch_all(pool).await.map_err(classify)?;
                    Ok(rows.iter().map(row_map).collect())
                }
            }
        };
        let r = match tokio::time::timeout(self.request_timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "no answer within request_timeout ({:?})",
                self.request_timeout
            ))),
        };
        if r.as_ref().is_err_and(|e| !e.retryable) {
            // The types may have changed (a table recreated): describe again next time.
            *a.pg_kinds.lock() = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(s: &str) -> Result<SqlAction, String> {
        parse_statement(s, Dialect::Postgres, false)
    }

    #[test]
    fn placeholders_become_parameters() {
        let a = pg("INSERT INTO t(clientid, payload, ts) VALUES (${clientid}, ${payload}, ${timestamp})").unwrap();
        assert_eq!(
            a.statement(Dialect::Postgres, 1),
            "INSERT INTO t(clientid, payload, ts) VALUES ($1, $2, $3)"
        );
        assert_eq!(
            a.statement(Dialect::Postgres, 2),
            "INSERT INTO t(clientid, payload, ts) VALUES ($1, $2, $3), ($4, $5, $6)"
        );
        let m = parse_statement("INSERT INTO t VALUES (${a}, '${b}');", Dialect::MySql, false).unwrap();
        assert_eq!(m.statement(Dialect::MySql, 2), "INSERT INTO t VALUES (?, ?), (?, ?)");
    }

    #[test]
    fn quoted_placeholders_alone_are_parameters_and_mixed_ones_are_refused() {
        let a = pg("INSERT INTO t VALUES ('${a}', 'it''s', ${b})").unwrap();
        assert_eq!(
            a.statement(Dialect::Postgres, 1),
            "INSERT INTO t VALUES ($1, 'it''s', $2)"
        );
        let e = pg("INSERT INTO t VALUES ('id-${a}')").unwrap_err();
        assert!(e.contains("inside a quoted string with other text"), "{e}");
        let e = pg("INSERT INTO \"${t}\" VALUES (1)").unwrap_err();
        assert!(e.contains("quoted identifier"), "{e}");
        assert!(pg("INSERT INTO t VALUES ($1)").is_err());
        assert!(parse_statement("SELECT ? ", Dialect::MySql, false).is_err());
        assert!(pg("INSERT INTO t VALUES (1); DROP TABLE t").is_err());
    }

    #[test]
    fn multi_row_only_for_one_tuple_inserts() {
        assert!(pg("insert into t values (${a}, now())").unwrap().multi_row());
        assert!(!pg("UPDATE t SET a = ${a}").unwrap().multi_row());
        assert!(!pg("INSERT INTO t VALUES (${a}), (${b})").unwrap().multi_row());
        assert!(!pg("INSERT INTO t SELECT ${a}").unwrap().multi_row());
        let a = parse_statement(
            "INSERT INTO t VALUES (${a}) ON DUPLICATE KEY UPDATE a = ${a}",
            Dialect::MySql,
            false,
        )
        .unwrap();
        assert!(!a.multi_row());
    }

    #[test]
    fn dedupe() {
        let a = parse_statement("INSERT INTO t VALUES (${a})", Dialect::Postgres, true).unwrap();
        assert_eq!(
            a.statement(Dialect::Postgres, 2),
            "INSERT INTO t VALUES ($1), ($2) ON CONFLICT DO NOTHING"
        );
        let a = parse_statement("insert into t values (${a})", Dialect::MySql, true).unwrap();
        assert_eq!(a.statement(Dialect::MySql, 2), "insert IGNORE into t values (?), (?)");
        assert!(parse_statement("UPDATE t SET a = ${a}", Dialect::Postgres, true).is_err());
    }

    #[test]
    fn servers() {
        assert_eq!(
            crate::connectors::file::host_port("db", 5432).unwrap(),
            ("db".into(), 5432)
        );
        assert_eq!(
            crate::connectors::file::host_port("db:6000", 5432).unwrap(),
            ("db".into(), 6000)
        );
        assert_eq!(
            crate::connectors::file::host_port("[::1]:7", 5432).unwrap(),
            ("::1".into(), 7)
        );
        assert!(crate::connectors::file::host_port("db:x", 5432).is_err());
    }

    #[test]
    fn queries_are_selects_with_parameters() {
        let q = parse_query(
            "SELECT topic, qos FROM mqtt_sub WHERE clientid = ${clientid}",
            Dialect::Postgres,
        )
        .unwrap();
        assert_eq!(
            q.statement(Dialect::Postgres, 1),
            "SELECT topic, qos FROM mqtt_sub WHERE clientid = $1"
        );
        let q = parse_query(
            "select topic from s where u = '${username}' or c = ${clientid};",
            Dialect::MySql,
        )
        .unwrap();
        assert_eq!(
            q.statement(Dialect::MySql, 1),
            "select topic from s where u = ? or c = ?"
        );
        assert!(parse_query("DELETE FROM s WHERE c = ${clientid}", Dialect::Postgres)
            .unwrap_err()
            .contains("must be a SELECT"));
        assert!(parse_query("SELECT 1; DROP TABLE s", Dialect::Postgres).is_err());
        assert!(parse_query("SELECT ${a", Dialect::Postgres).is_err());
    }

    #[test]
    fn values_convert() {
        assert_eq!(as_i64(&Value::str(" 42 ")), Some(42));
        assert_eq!(as_i64(&Value::Float(3.5)), None);
        assert_eq!(as_bool(&Value::str("true")), Some(true));
        let t = as_time(&Value::Int(1_700_000_000_123)).unwrap();
        assert_eq!(t.timestamp_millis(), 1_700_000_000_123);
        assert!(as_time(&Value::str("2024-01-02T03:04:05Z")).is_some());
    }

    #[test]
    fn tls_settings_map_to_ssl_modes() {
        let mut t = crate::connectors::file::TlsSettings {
            verify: true,
            ..Default::default()
        };
        let pg = |enable, t: &crate::connectors::file::TlsSettings| {
            pg_tls(PgConnectOptions::new_without_pgpass(), enable, t).get_ssl_mode()
        };
        let my = |enable, t: &crate::connectors::file::TlsSettings| {
            my_tls(MySqlConnectOptions::new(), enable, t).get_ssl_mode()
        };
        assert!(matches!(pg(false, &t), PgSslMode::Disable));
        assert!(matches!(my(false, &t), MySqlSslMode::Disabled));
        assert!(matches!(pg(true, &t), PgSslMode::VerifyFull));
        assert!(matches!(my(true, &t), MySqlSslMode::VerifyIdentity));
        t.verify = false;
        assert!(matches!(pg(true, &t), PgSslMode::Require));
        assert!(matches!(my(true, &t), MySqlSslMode::Required));
        let load = |text: &str| {
            crate::connectors::file::load_str(std::path::Path::new("connectors/pg.toml"), text).map(|d| d.kind)
        };
        let base = "type = \"postgres\"\nserver = \"h\"\ndatabase = \"d\"\nusername = \"u\"\n";
        assert_eq!(load(&format!("{base}tls = {{ enable = true }}\n")).unwrap(), "postgres");
        let e = load(&format!("{base}tls = {{ enable = true, keyfile = \"k.pem\" }}\n")).unwrap_err();
        assert_eq!((e.line, e.col), (5, 34), "{e}");
        assert!(e.message.contains("needs a `certfile`"), "{e}");
    }
}

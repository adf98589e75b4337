//! The Redis connector (the `redis` crate, multiplexed async connections on tokio): a
//! command template per action, a batch sent as one pipeline.
//!
//! Connector file:
//! ```toml
//! type = "redis"
//! server = "127.0.0.1:6379"       # host:port (default port 6379)
//! database = 0                    # SELECTed on every connection (default 0)
//! username = "app"                # optional (ACL user; AUTH with the password alone without it)
//! password = "secret"             # optional
//! pool_size = 8                   # connections, each multiplexed (common setting, default 8)
//! batch_size = 10                 # > 1: up to this many commands per pipeline
//! # TLS (rediss://; see connectors::tls): verify = false accepts any certificate
//! tls = { enable = true, verify = true, cacertfile = "ca.pem", certfile = "client.pem", keyfile = "client.key" }
//! ```
//! Rule action:
//! ```toml
//! [[rules.actions]]
//! type = "redis"
//! connector = "cache"
//! command = "HSET mqtt:client:${clientid} state 1 online_at ${timestamp}"
//! ```
//! The command is split into words once, when the rule loads: words are separated by
//! whitespace; `"..."` (with `\"` and `\\` escapes) and `'...'` (no escapes) quote a word or
//! part of one, as in `redis-cli`. Each word is a template rendered per output into exactly
//! ONE argument: a value with spaces, quotes or `"; FLUSHALL` stays one argument and is
//! never split again or read as a command. The first word, the command name, must be
//! literal. A missing value renders `undefined` (as EMQX does).
//!
//! TLS: the redis crate's rustls (ring): `cacertfile` replaces the default roots (Mozilla's,
//! webpki-roots); `verify = false` is the crate's insecure mode (no certificate check, no
//! SNI); the client certificate is sent when the server asks (`tls-auth-clients yes`).
//!
//! Errors: a connection error or a timeout is retried (the connection is dropped and
//! reopened); an error reply of Redis (`WRONGTYPE ...`, `ERR ...`) is not retried and is
//! reported with the server's message, except the transient ones (`LOADING`, `BUSY`,
//! `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`), which are retried. A pipeline is not a
//! transaction: when one command of a batch gets an error reply the others are still
//! applied, and only the failed commands count as failed ([`SendError::partial`]; the
//! message says which).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use serde_json::json;

use super::{ActionSettings, CommonSettings, Connector, SendError};
use crate::config::walk::{Fields, FileError};
use crate::rules::template::Template;
use crate::rules::value::Map;

/// Redis's default port.
const DEFAULT_PORT: u16 = 6379;
/// Longest message kept from an error.
const MAX_MESSAGE: usize = 1024;
/// Error replies that say "try again later" rather than "this command is wrong".
const TRANSIENT: &[&str] = &["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"];

/// A Redis connector: `pool_size` multiplexed connections, used in turn.
pub struct Redis {
    client: redis::Client,
    config: AsyncConnectionConfig,
    server: String,
    pool: Mutex<Vec<Option<MultiplexedConnection>>>,
    next: AtomicUsize,
    pool_size: usize,
}

/// A Redis action: the command, one template per argument.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisAction {
    /// The command name (literal).
    pub name: String,
    /// The arguments after the name, each rendered into one argument.
    pub args: Vec<Template>,
}

impl ActionSettings for RedisAction {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Parses a Redis connector (the registry's entry).
pub fn parse(f: &mut Fields<'_, '_>, common: &CommonSettings) -> Result<Arc<dyn Connector>, FileError> {
    let server = f
        .string("server")?
        .map(|s| s.value)
        .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
    let (host, port) = crate::connectors::file::host_port(&server, DEFAULT_PORT).map_err(|e| f.error("server", e))?;
    let database = f.int("database")?.unwrap_or(0);
    if !(0..=1_000_000).contains(&database) {
        return Err(f.error("database", format!("{database} is out of range 0..=1000000")));
    }
    let username = f.string("username")?.map(|s| s.value);
    let password = f.string("password")?.map(|s| s.value);
    if username.is_some() && password.is_none() {
        return Err(f.error("username", "a username needs a `password`"));
    }
    let tls = super::tls::enabled(&common.tls).map_err(|r| f.error(r.key, r.message))?;
    let mut redis_info = RedisConnectionInfo::default().set_db(database);
    if let Some(u) = &username {
        redis_info = redis_info.set_username(u);
    }
    if let Some(p) = &password {
        redis_info = redis_info.set_password(p);
    }
    let addr = if tls {
        ConnectionAddr::TcpTls {
            host: host.clone(),
            port,
            // rediss:// without verification: any certificate (see connectors::tls).
            insecure: !common.tls.verify,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.clone(), port)
    };
    let info: ConnectionInfo = addr
        .into_connection_info()
        .map_err(|e| f.error("server", e))?
        .set_redis_settings(redis_info);
    let client = if tls {
        let files = &common.tls.files;
        let client_tls = match (&files.cert_pem, &files.key_pem) {
            (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
                client_cert: c.clone(),
                client_key: k.clone(),
            }),
            _ => None,
        };
        let certs = redis::TlsCertificates {
            client_tls,
            // None: the webpki roots.
            root_cert: files.ca_pem.clone(),
        };
        redis::Client::build_with_tls(info, certs).map_err(|e| f.error("tls", e))?
    } else {
        redis::Client::open(info).map_err(|e| f.error("server", e))?
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(common.connect_timeout))
        .set_response_timeout(Some(common.request_timeout));
    Ok(Arc::new(Redis {
        client,
        config,
        server: if tls {
            format!("rediss://{host}:{port}")
        } else {
            format!("{host}:{port}")
        },
        pool: Mutex::new(Vec::new()),
        next: AtomicUsize::new(0),
        pool_size: common.pool_size.max(1),
    }))
}

/// A word of a command: its text without quotes and where it starts in the value.
#[derive(Debug, Clone, PartialEq)]
struct Word {
    text: String,
    at: usize,
}

/// Splits a command into words (see the module doc). An unclosed quote is an error at its
/// byte offset. `${...}` stays in one word even with spaces inside the braces.
fn split_words(s: &str) -> Result<Vec<Word>, (usize, String)> {
    let mut words = Vec::new();
    let mut chars = s.char_indices().peekable();
    let mut cur: Option<Word> = None;
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(|| Word {
                    text: String::new(),
                    at: i,
                });
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, e @ ('"' | '\\'))) => w.text.push(e),
                            Some((_, 'n')) => w.text.push('\n'),
                            Some((_, 't')) => w.text.push('\t'),
                            Some((_, 'r')) => w.text.push('\r'),
                            Some((_, other)) => {
                                w.text.push('\\');
                                w.text.push(other);
                            }
                            None => break,
                        },
                        c => w.text.push(c),
                    }
                }
                if !closed {
                    return Err((i, "`\"` without a closing `\"`".into()));
                }
            }
            '\'' => {
                let w = cur.get_or_insert_with(|| Word {
                    text: String::new(),
                    at: i,
                });
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    w.text.push(c);
                }
                if !closed {
                    return Err((i, "`'` without a closing `'`".into()));
                }
            }
            '$' if chars.peek().is_some_and(|(_, n)| *n == '{') => {
                let w = cur.get_or_insert_with(|| Word {
                    text: String::new(),
                    at: i,
                });
                w.text.push('$');
                for (_, c) in chars.by_ref() {
                    w.text.push(c);
                    if c == '}' {
                        break;
                    }
                }
            }
            c => cur
                .get_or_insert_with(|| Word {
                    text: String::new(),
                    at: i,
                })
                .text
                .push(c),
        }
    }
    if let Some(w) = cur.take() {
        words.push(w);
    }
    Ok(words)
}

/// Parses a command template into its literal name and argument templates.
pub fn parse_command(text: &str) -> Result<RedisAction, String> {
    let words = split_words(text).map_err(|(at, m)| format!("{m} (at byte {at} of the command)"))?;
    let Some((first, rest)) = words.split_first() else {
        return Err("empty command".into());
    };
    let name = Template::parse(&first.text).map_err(|e| format!("bad template: {e}"))?;
    if !name.is_literal() || first.text.is_empty() {
        return Err("the command name (the first word) must be literal".into());
    }
    let mut args = Vec::with_capacity(rest.len());
    for w in rest {
        let t = Template::parse(&w.text)
            .map_err(|e| format!("bad template in the word at byte {} of the command: {e}", w.at))?;
        args.push(t);
    }
    Ok(RedisAction {
        name: first.text.clone(),
        args,
    })
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

/// The server's message of an error reply: `WRONGTYPE Operation against a key ...`.
fn server_message(e: &redis::ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
    }
}

impl Redis {
    async fn open(&self) -> Result<MultiplexedConnection, SendError> {
        // Any failure, I/O or a refused AUTH / SELECT, leaves the connector disconnected:
        // the runtime reconnects with backoff (a fixed server or file then recovers).
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| SendError::disconnected(clip(format!("cannot connect to {}: {e}", self.server))))
    }

    /// A connection of the pool (opened if its slot is empty), and its slot.
    async fn conn(&self) -> Result<(usize, MultiplexedConnection), SendError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.pool_size;
        let existing = self.pool.lock().get(slot).cloned().flatten();
        if let Some(c) = existing {
            return Ok((slot, c));
        }
        let c = self.open().await?;
        let mut pool = self.pool.lock();
        if pool.len() < self.pool_size {
            pool.resize(self.pool_size, None);
        }
        if let Some(s) = pool.get_mut(slot) {
            *s = Some(c.clone());
        }
        Ok((slot, c))
    }

    /// Forgets a broken connection (the next use of its slot reopens it).
    fn drop_slot(&self, slot: usize) {
        if let Some(s) = self.pool.lock().get_mut(slot) {
            *s = None;
        }
    }

    /// Maps an error of a whole request: I/O and timeouts lose the connection.
    fn request_error(&self, slot: usize, e: redis::RedisError) -> SendError {
        if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            self.drop_slot(slot);
            return SendError::disconnected(clip(format!("connection to {} lost: {e}", self.server)));
        }
        let transient = e.code().is_some_and(|c| TRANSIENT.contains(&c));
        if transient {
            SendError::retryable(clip(e.to_string()))
        } else if matches!(e.retry_method(), redis::RetryMethod::NoRetry) {
            SendError::fatal(clip(e.to_string()))
        } else {
            SendError::retryable(clip(e.to_string()))
        }
    }

    fn command(a: &RedisAction, out: &Map) -> redis::Cmd {
        let mut c = redis::cmd(&a.name);
        for t in &a.args {
            // One template, one argument: never split after rendering.
            c.arg(t.render_bytes(out));
        }
        c
    }

    async fn send(&self, a: &RedisAction, batch: &[Arc<Map>]) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for out in batch {
            pipe.add_command(Self::command(a, out));
        }
        let (slot, mut conn) = self.conn().await?;
        let replies: Vec<redis::Value> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.request_error(slot, e))?;
        let mut failed = 0usize;
        let mut first: Option<(usize, String)> = None;
        let mut all_transient = true;
        for (i, r) in replies.iter().enumerate() {
            if let redis::Value::ServerError(e) = r {
                failed += 1;
                all_transient &= TRANSIENT.contains(&e.code());
                if first.is_none() {
                    first = Some((i, server_message(e)));
                }
            }
        }
        let Some((i, msg)) = first else { return Ok(()) };
        let message = if batch.len() == 1 {
            msg
        } else {
            format!(
                "{failed} of {} commands failed; command {} ({}): {msg}",
                batch.len(),
                i + 1,
                a.name
            )
        };
        if all_transient {
            Err(SendError::retryable(clip(message)))
        } else {
            // The other commands of the pipeline were applied.
            Err(SendError::fatal(clip(message)).partial(failed))
        }
    }

    async fn ping(&self) -> Result<(), SendError> {
        let (slot, mut conn) = self.conn().await?;
        redis::cmd("PING")
            .query_async::<redis::Value>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| self.request_error(slot, e))
    }

    async fn connect_all(&self) -> Result<(), SendError> {
        let mut fresh = Vec::with_capacity(self.pool_size);
        for _ in 0..self.pool_size {
            fresh.push(Some(self.open().await?));
        }
        if let Some(Some(c)) = fresh.first() {
            let mut c = c.clone();
            redis::cmd("PING")
                .query_async::<redis::Value>(&mut c)
                .await
                .map_err(|e| SendError::disconnected(clip(format!("PING to {} failed: {e}", self.server))))?;
        }
        *self.pool.lock() = fresh;
        Ok(())
    }
}

fn action(a: &dyn ActionSettings) -> Result<&RedisAction, SendError> {
    a.as_any()
        .downcast_ref::<RedisAction>()
        .ok_or_else(|| SendError::fatal("not a redis action"))
}

impl Connector for Redis {
    fn connect(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.connect_all().boxed()
    }

    fn send_batch<'a>(
        &'a self,
        a: &'a dyn ActionSettings,
        batch: &'a [Arc<Map>],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        async move { self.send(action(a)?, batch).await }.boxed()
    }

    fn health_check(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.ping().boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async {
            self.pool.lock().clear();
        }
        .boxed()
    }

    fn parse_action(&self, f: &mut Fields<'_, '_>) -> Result<Arc<dyn ActionSettings>, FileError> {
        let cmd = f.req_string("command")?;
        let a = parse_command(&cmd.value).map_err(|e| f.error("command", e))?;
        Ok(Arc::new(a))
    }

    fn parse_query(&self, text: &str) -> Result<Arc<dyn ActionSettings>, super::QueryError> {
        let a = parse_command(text).map_err(super::QueryError::Invalid)?;
        Ok(Arc::new(a))
    }

    fn query<'a>(&'a self, q: &'a dyn ActionSettings, vars: &'a Map) -> BoxFuture<'a, Result<Vec<Map>, SendError>> {
        async move { self.fetch(action(q)?, vars).await }.boxed()
    }

    fn preview(&self, a: &dyn ActionSettings, out: &Map) -> serde_json::Value {
        let Ok(a) = action(a) else {
            return json!({"type": "redis", "error": "not a redis action"});
        };
        let mut args = vec![serde_json::Value::String(a.name.clone())];
        args.extend(
            a.args
                .iter()
                .map(|t| serde_json::Value::String(String::from_utf8_lossy(&t.render_bytes(out)).into_owned())),
        );
        json!({"type": "redis", "server": self.server, "command": args})
    }
}

// ---------------------------------------------------------------------------
// Read queries (subscription by broker)

/// A reply element as a rule value (bulk strings as text when UTF-8).
fn reply_value(v: &redis::Value) -> crate::rules::value::Value {
    use crate::rules::value::Value;
    match v {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(i) => Value::Int(*i),
        redis::Value::BulkString(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::str(s),
            Err(_) => Value::Bytes(b.clone().into()),
        },
        redis::Value::SimpleString(s) => Value::str(s.as_str()),
        redis::Value::Okay => Value::str("OK"),
        redis::Value::Double(f) => Value::Float(*f),
        redis::Value::Boolean(b) => Value::Bool(*b),
        redis::Value::VerbatimString { text, .. } => Value::str(text.as_str()),
        redis::Value::Array(a) | redis::Value::Set(a) => Value::Array(Arc::new(a.iter().map(reply_value).collect())),
        _ => Value::Null,
    }
}

fn row(pairs: &[(&str, crate::rules::value::Value)]) -> Map {
    pairs.iter().map(|(k, v)| (Arc::from(*k), v.clone())).collect()
}

/// The rows of a query's reply: a hash (a RESP3 map, or the flat field/value array of
/// `HGETALL` / `HRANDFIELD ... WITHVALUES`) gives one row `{field, value}` per field; an
/// array or set (`SMEMBERS`, `LRANGE`) one row `{value}` per element; a single value one
/// row `{value}`; nil none.
fn reply_rows(command: &str, reply: &redis::Value) -> Result<Vec<Map>, SendError> {
    let pairs = |items: &[redis::Value]| -> Vec<Map> {
        items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| row(&[("field", reply_value(&c[0])), ("value", reply_value(&c[1]))]))
            .collect()
    };
    Ok(match reply {
        redis::Value::Nil => Vec::new(),
        redis::Value::ServerError(e) => return Err(SendError::fatal(clip(server_message(e)))),
        redis::Value::Map(m) => m
            .iter()
            .map(|(k, v)| row(&[("field", reply_value(k)), ("value", reply_value(v))]))
            .collect(),
        redis::Value::Array(a) if command.eq_ignore_ascii_case("HGETALL") => pairs(a),
        redis::Value::Array(a) | redis::Value::Set(a) => a.iter().map(|v| row(&[("value", reply_value(v))])).collect(),
        other => vec![row(&[("value", reply_value(other))])],
    })
}

impl Redis {
    /// Runs one read command with `vars` rendered into its arguments (each one argument).
    async fn fetch(&self, a: &RedisAction, vars: &Map) -> Result<Vec<Map>, SendError> {
        let cmd = Self::command(a, vars);
        let (slot, mut conn) = self.conn().await?;
        let reply: redis::Value = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| self.request_error(slot, e))?;
        reply_rows(&a.name, &reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::value::Value;

    fn words(s: &str) -> Vec<String> {
        split_words(s).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn splits_words_with_quotes() {
        assert_eq!(
            words("HSET mqtt:client:${clientid} state 1 online_at ${timestamp}"),
            [
                "HSET",
                "mqtt:client:${clientid}",
                "state",
                "1",
                "online_at",
                "${timestamp}"
            ]
        );
        assert_eq!(
            words(r#"SET k "a b \"c\" \\" 'x y'"#),
            ["SET", "k", r#"a b "c" \"#, "x y"]
        );
        assert_eq!(words(r#"SET a"b c"d ''"#), ["SET", "ab cd", ""]);
        assert_eq!(words("  SET   k\t${ payload.x }  "), ["SET", "k", "${ payload.x }"]);
        assert!(split_words("SET \"k").is_err());
        assert_eq!(split_words("SET 'k").unwrap_err().0, 4);
    }

    #[test]
    fn the_command_name_is_literal_and_templates_parse() {
        assert!(parse_command("").unwrap_err().contains("empty"));
        assert!(parse_command("${cmd} k v").unwrap_err().contains("literal"));
        assert!(parse_command("SET ${k v").unwrap_err().contains("bad template"));
        let a = parse_command("HSET h ${clientid} \"${payload}\"").unwrap();
        assert_eq!(a.name, "HSET");
        assert_eq!(a.args.len(), 3);
    }

    #[test]
    fn a_rendered_value_stays_one_argument() {
        let a = parse_command("SET k:${clientid} ${payload}").unwrap();
        let mut out = Map::default();
        out.insert("clientid".into(), Value::str("c 1"));
        out.insert("payload".into(), Value::str(r#"x "y" '; FLUSHALL"#));
        let packed = Redis::command(&a, &out).get_packed_command();
        // RESP: an array of 3 bulk strings, the payload one of them as it is.
        let text = String::from_utf8_lossy(&packed);
        assert!(text.starts_with("*3\r\n$3\r\nSET\r\n$5\r\nk:c 1\r\n"), "{text:?}");
        assert!(text.ends_with("$17\r\nx \"y\" '; FLUSHALL\r\n"), "{text:?}");
    }

    #[test]
    fn replies_become_rows() {
        let b = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        let hash = redis::Value::Array(vec![b("t/1"), b("1"), b("t/2"), b("0")]);
        let rows = reply_rows("hgetall", &hash).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["field"], Value::str("t/1"));
        assert_eq!(rows[0]["value"], Value::str("1"));
        let rows = reply_rows("SMEMBERS", &hash).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3]["value"], Value::str("0"));
        let map = redis::Value::Map(vec![(b("t/3"), redis::Value::Int(2))]);
        let rows = reply_rows("HGETALL", &map).unwrap();
        assert_eq!(rows[0]["field"], Value::str("t/3"));
        assert_eq!(rows[0]["value"], Value::Int(2));
        assert!(reply_rows("GET", &redis::Value::Nil).unwrap().is_empty());
        assert_eq!(reply_rows("GET", &b("t/4")).unwrap()[0]["value"], Value::str("t/4"));
    }

    fn load(text: &str) -> Result<crate::connectors::ConnectorDef, FileError> {
        crate::connectors::file::load_str(std::path::Path::new("connectors/cache.toml"), text)
    }

    #[test]
    fn reads_a_redis_file_and_errors_have_positions() {
        let d = load("type = \"redis\"\nserver = \"127.0.0.1:6380\"\ndatabase = 2\nusername = \"u\"\npassword = \"p\"\npool_size = 2\n")
            .unwrap();
        assert_eq!(d.kind, "redis");
        let d = load("type = \"redis\"\n").unwrap();
        assert_eq!(&*d.name, "cache");
        let e = load("type = \"redis\"\nserver = \"h:x\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 10), "{e}");
        assert!(e.message.contains("bad port `x`"), "{e}");
        let e = load("type = \"redis\"\ndatabase = -1\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = load("type = \"redis\"\nusername = \"u\"\n").unwrap_err();
        assert!(e.message.contains("needs a `password`"), "{e}");
        let d = load("type = \"redis\"\ntls = { enable = true, verify = false }\n").unwrap();
        assert_eq!(d.kind, "redis");
        let e = load("type = \"redis\"\ntls = { verify = false }\n").unwrap_err();
        assert!(e.message.contains("without `enable = true`"), "{e}");
        let e = load("type = \"redis\"\ntls = { enable = true, cacertfile = \"/nonexistent/ca.pem\" }\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 37), "{e}");
        assert!(e.message.contains("cannot read /nonexistent/ca.pem"), "{e}");
        let e = load("type = \"redis\"\nservr = \"h\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1), "{e}");
    }

    #[test]
    fn servers_parse() {
        assert_eq!(
            crate::connectors::file::host_port("127.0.0.1:6380", DEFAULT_PORT).unwrap(),
            ("127.0.0.1".into(), 6380)
        );
        assert_eq!(
            crate::connectors::file::host_port("redis", DEFAULT_PORT).unwrap(),
            ("redis".into(), 6379)
        );
        assert_eq!(
            crate::connectors::file::host_port("[::1]:7000", DEFAULT_PORT).unwrap(),
            ("::1".into(), 7000)
        );
        assert!(crate::connectors::file::host_port("::1", DEFAULT_PORT).is_err());
        assert!(crate::connectors::file::host_port("h:0", DEFAULT_PORT).is_err());
        assert!(crate::connectors::file::host_port(":1", DEFAULT_PORT).is_err());
    }
}

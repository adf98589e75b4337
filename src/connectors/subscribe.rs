//! Subscription by broker backed by connectors (`mqtt.subscribe_by_broker`): the
//! [`SubscriptionSource`] the application hands the broker.
//!
//! ```toml
//! [mqtt]
//! subscribe_by_broker = { connector = "pg", query = "SELECT topic, qos FROM mqtt_sub WHERE clientid = ${clientid}", timeout = "2s" }
//! ```
//! or a list (`[[mqtt.subscribe_by_broker]]`), each asked at once. The query is the
//! connector's ([`Connector::parse_query`](super::Connector::parse_query)): `${clientid}`
//! and `${username}` (null when the client gave none) are bound as SQL parameters or as
//! whole Redis arguments, never spliced into the text.
//!
//! Rows to subscriptions:
//! - a row with a `topic` column: that filter, at the QoS of its `qos` column (0 when
//!   absent or null);
//! - a Redis hash field (`HGETALL`, rows `{field, value}`): the field is the filter, the
//!   value the QoS (EMQX 4's `mqtt:sub:<clientid>` layout);
//! - a Redis list or set element (`SMEMBERS`, rows `{value}`): the filter, QoS 0.
//!
//! A QoS is 0, 1 or 2, as a number or text. A row that gives no filter or a bad QoS is
//! skipped, logged and counted (`junction_subscribe_by_broker_refused_total`).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::runtime::{ConnectorSet, QueryTarget};
use super::{ActionSettings, QueryError};
use crate::config::SubscribeByBroker;
use crate::mqtt::sub_source::{BrokerSubscription, Lookup, SubscriptionSource};
use crate::rules::value::{Map, Value};

/// The default query of a Redis connector (EMQX 4's layout: field = topic, value = QoS).
pub const DEFAULT_REDIS_QUERY: &str = "HGETALL mqtt:sub:${clientid}";
/// The default query of a SQL connector.
pub const DEFAULT_SQL_QUERY: &str = "SELECT topic, qos FROM mqtt_sub WHERE clientid = ${clientid}";

/// Why an entry of `mqtt.subscribe_by_broker` was refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeByBrokerError {
    #[error(
        "mqtt.subscribe_by_broker: no connector `{name}` (connectors are the files `<name>.toml` of connectors.dir; found: {})",
        if .known.is_empty() { "none".to_string() } else { .known.join(", ") }
    )]
    UnknownConnector { name: String, known: Vec<String> },
    #[error("mqtt.subscribe_by_broker: connector `{name}` is of type `{kind}`, which runs no queries (use redis, postgres, timescaledb or mysql)")]
    Unsupported { name: String, kind: String },
    #[error("mqtt.subscribe_by_broker: connector `{name}` needs a `query` (its type `{kind}` has no default)")]
    NoQuery { name: String, kind: String },
    #[error("mqtt.subscribe_by_broker: the query for connector `{name}` is refused: {message} (query: {query:?})")]
    BadQuery {
        name: String,
        query: String,
        message: String,
    },
}

/// One entry of `mqtt.subscribe_by_broker`, ready to run.
pub struct ConnectorSubscriptions {
    target: QueryTarget,
    query: Arc<dyn ActionSettings>,
    timeout: Duration,
}

/// The default query for a connector type, if it has one.
pub fn default_query(kind: &str) -> Option<&'static str> {
    match kind {
        "redis" => Some(DEFAULT_REDIS_QUERY),
        "postgres" | "timescaledb" | "mysql" => Some(DEFAULT_SQL_QUERY),
        _ => None,
    }
}

/// Checks and prepares the entries of `mqtt.subscribe_by_broker` against the loaded
/// connectors: each names a connector that runs queries, and its query parses.
pub fn build(
    entries: &[SubscribeByBroker],
    set: &ConnectorSet,
) -> Result<Vec<Arc<dyn SubscriptionSource>>, SubscribeByBrokerError> {
    let mut out: Vec<Arc<dyn SubscriptionSource>> = Vec::with_capacity(entries.len());
    for e in entries {
        let Some(target) = set.query_target(&e.connector) else {
            return Err(SubscribeByBrokerError::UnknownConnector {
                name: e.connector.clone(),
                known: set.names().iter().map(|n| n.to_string()).collect(),
            });
        };
        let text = match (&e.query, default_query(target.kind())) {
            (Some(q), _) => q.as_str(),
            (None, Some(q)) => q,
            (None, None) => {
                // Tell "runs no queries" apart from "has no default".
                return Err(match target.parse_query("") {
                    Err(QueryError::Unsupported) => SubscribeByBrokerError::Unsupported {
                        name: e.connector.clone(),
                        kind: target.kind().to_string(),
                    },
                    _ => SubscribeByBrokerError::NoQuery {
                        name: e.connector.clone(),
                        kind: target.kind().to_string(),
                    },
                });
            }
        };
        let query = target.parse_query(text).map_err(|err| match err {
            QueryError::Unsupported => SubscribeByBrokerError::Unsupported {
                name: e.connector.clone(),
                kind: target.kind().to_string(),
            },
            QueryError::Invalid(message) => SubscribeByBrokerError::BadQuery {
                name: e.connector.clone(),
                query: text.to_string(),
                message,
            },
        })?;
        out.push(Arc::new(ConnectorSubscriptions {
            target,
            query,
            timeout: e.timeout,
        }));
    }
    Ok(out)
}

/// The variables a query may use.
fn vars(client_id: &str, username: Option<&str>) -> Map {
    let mut m = Map::default();
    m.insert(Arc::from("clientid"), Value::str(client_id));
    m.insert(Arc::from("username"), username.map_or(Value::Null, Value::str));
    m
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    }
}

fn qos(v: Option<&Value>) -> Result<u8, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Int(i)) if (0..=2).contains(i) => Ok(*i as u8),
        Some(Value::Float(f)) if [0.0, 1.0, 2.0].contains(f) => Ok(*f as u8),
        Some(v) => match text(v).as_deref().map(str::trim) {
            Some("0") => Ok(0),
            Some("1") => Ok(1),
            Some("2") => Ok(2),
            _ => Err(format!("QoS {:?} is not 0, 1 or 2", v.to_json().to_string())),
        },
    }
}

/// The subscriptions in a query's rows (see the module doc).
pub fn rows_to_lookup(rows: &[Map]) -> Lookup {
    let mut l = Lookup::default();
    for row in rows {
        let (topic, q) = if let Some(t) = row.get("topic") {
            (t, row.get("qos"))
        } else if let Some(t) = row.get("field") {
            (t, row.get("value"))
        } else if let Some(t) = row.get("value") {
            (t, None)
        } else {
            l.rejected.push("a row without a `topic` column".into());
            continue;
        };
        let Some(filter) = text(topic).filter(|t| !t.is_empty()) else {
            l.rejected.push(format!("topic {} is not text", topic.to_json()));
            continue;
        };
        match qos(q) {
            Ok(qos) => l.subscriptions.push(BrokerSubscription { filter, qos }),
            Err(why) => l.rejected.push(format!("topic {filter:?}: {why}")),
        }
    }
    l
}

impl SubscriptionSource for ConnectorSubscriptions {
    fn name(&self) -> &str {
        self.target.name()
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lookup<'a>(&'a self, client_id: &'a str, username: Option<&'a str>) -> BoxFuture<'a, Result<Lookup, String>> {
        async move {
            let rows = self
                .target
                .query(&*self.query, &vars(client_id, username))
                .await
                .map_err(|e| e.message)?;
            Ok(rows_to_lookup(&rows))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Map {
        pairs.iter().map(|(k, v)| (Arc::from(*k), v.clone())).collect()
    }

    #[test]
    fn rows_become_subscriptions() {
        let l = rows_to_lookup(&[
            row(&[("topic", Value::str("a/#")), ("qos", Value::Int(1))]),
            row(&[("topic", Value::str("b")), ("qos", Value::Null)]),
            row(&[("topic", Value::str("c"))]),
            row(&[("field", Value::str("d/+")), ("value", Value::str("2"))]),
            row(&[("value", Value::str("e"))]),
            row(&[("topic", Value::str("f")), ("qos", Value::Int(3))]),
            row(&[("topic", Value::Int(5))]),
            row(&[("other", Value::str("x"))]),
            row(&[("field", Value::str("g")), ("value", Value::str("high"))]),
        ]);
        let got: Vec<(&str, u8)> = l.subscriptions.iter().map(|s| (s.filter.as_str(), s.qos)).collect();
        assert_eq!(got, [("a/#", 1), ("b", 0), ("c", 0), ("d/+", 2), ("e", 0)]);
        assert_eq!(l.rejected.len(), 4, "{:?}", l.rejected);
        assert!(l.rejected[0].contains("not 0, 1 or 2"), "{:?}", l.rejected);
    }

    #[test]
    fn entries_are_checked_against_the_connectors() {
        let dir = std::env::temp_dir().join(format!("junction-sbb-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write(
            "pg.toml",
            "type = \"postgres\"\nserver = \"127.0.0.1:1\"\ndatabase = \"d\"\nusername = \"u\"\n",
        );
        write("cache.toml", "type = \"redis\"\nserver = \"127.0.0.1:1\"\n");
        write("hook.toml", "type = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n");
        let defs = super::super::file::load_dir(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        // Not started: no runtime here, nothing connects.
        let set = ConnectorSet::start(defs, tokio_util::sync::CancellationToken::new());
        let entry = |c: &str, q: Option<&str>| SubscribeByBroker {
            connector: c.into(),
            query: q.map(str::to_string),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            build(&[entry("pg", None), entry("cache", None)], &set).unwrap().len(),
            2
        );
        let e = build(&[entry("nope", None)], &set).err().unwrap();
        assert!(
            matches!(&e, SubscribeByBrokerError::UnknownConnector { known, .. } if known.len() == 3),
            "{e}"
        );
        assert!(e.to_string().contains("cache, hook, pg"), "{e}");
        let e = build(&[entry("hook", None)], &set).err().unwrap();
        assert!(matches!(e, SubscribeByBrokerError::Unsupported { .. }), "{e}");
        let e = build(&[entry("hook", Some("GET x"))], &set).err().unwrap();
        assert!(matches!(e, SubscribeByBrokerError::Unsupported { .. }), "{e}");
        let e = build(&[entry("pg", Some("DELETE FROM t"))], &set).err().unwrap();
        assert!(matches!(e, SubscribeByBrokerError::BadQuery { .. }), "{e}");
        let e = build(&[entry("cache", Some("HGETALL 'x"))], &set).err().unwrap();
        assert!(e.to_string().contains("without a closing"), "{e}");
    }
}

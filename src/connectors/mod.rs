//! Connectors: where rule outputs leave the broker (issue 5).
//!
//! A connector is a file, `connectors/<name>.toml` ([`file`]), with a `type` and typed
//! settings. A rule action names it (`type = "webhook"`, `connector = "<name>"`) and gives
//! the per-action part (method, path, body template, ...). The pieces:
//!
//! - [`Connector`]: what a connector type implements, and all it implements: connect, send
//!   a batch, health check, close, plus parsing its per-action settings. Everything else
//!   (queues, batching, the in-flight window, retries, health states, metrics) is the one
//!   [`runtime`] every connector shares.
//! - [`registry`]: the one list of connector types. Adding a connector is its module and one
//!   line there.
//! - [`runtime::ConnectorSet`]: the loaded connectors and the per-action runtimes; it lives
//!   across rule reloads, so a reload neither restarts a connector nor loses a queue.
//!
//! - Read queries ([`Connector::parse_query`], [`Connector::query`]; redis and the SQL
//!   types): [`subscribe`] runs them for `mqtt.subscribe_by_broker`, through
//!   [`runtime::QueryTarget`] (only while the connector is connected).
//!
//! The MQTT hot path never waits on any of this: the rule dispatcher hands outputs to
//! `ActionRuntime::submit`, which never waits.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::config::walk::{Fields, FileError};
use crate::rules::value::Map;

pub mod buffer;
pub mod file;
pub mod mqtt;
pub mod redis;
pub mod registry;
pub mod runtime;
pub mod sql;
pub mod subscribe;
pub mod tls;
pub mod webhook;

pub use file::{BufferMode, CommonSettings, ConnectorDef, RuntimeSettings};
pub use runtime::{ActionMetrics, ActionRuntime, BufferOptions, ConnectorSet, Health};

/// Why a send (or connect, or health check) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Sending the same batch again may succeed (a 5xx, a timeout, a lost connection).
    /// When false (an HTTP 4xx, a constraint violation) the batch is counted failed.
    pub retryable: bool,
    /// The connection is gone: the runtime marks the connector disconnected and reconnects.
    pub disconnected: bool,
    /// What the server (or the client library) said.
    pub message: String,
    /// For a non-retryable error: how many outputs of the batch failed, the others having
    /// been written (a bad row among good ones). `None`: the whole batch failed.
    pub failed: Option<usize>,
}

impl SendError {
    /// A retryable error (the connection is still usable).
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            disconnected: false,
            message: message.into(),
            failed: None,
        }
    }

    /// A retryable error that lost the connection.
    pub fn disconnected(message: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            disconnected: true,
            message: message.into(),
            failed: None,
        }
    }

    /// An error that sending again would not fix.
    pub fn fatal(message: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            disconnected: false,
            message: message.into(),
            failed: None,
        }
    }
}

impl SendError {
    /// Only `failed` outputs of the batch failed; the runtime counts the rest as success.
    #[must_use]
    pub fn partial(mut self, failed: usize) -> SendError {
        self.failed = Some(failed);
        self
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SendError {}

/// The per-action settings of a connector type (opaque to the runtime; the connector
/// downcasts them with [`ActionSettings::as_any`]).
pub trait ActionSettings: Any + fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
}

/// What a connector type implements. Object safe: futures are boxed.
pub trait Connector: Send + Sync + 'static {
    /// Opens the connection (pool) to the server. Called at start and after a failure.
    fn connect(&self) -> BoxFuture<'_, Result<(), SendError>>;
    /// Sends one batch of outputs of one action (`action` came from [`Connector::parse_action`]).
    /// All or nothing: an error makes the runtime retry or fail the whole batch.
    fn send_batch<'a>(
        &'a self,
        action: &'a dyn ActionSettings,
        batch: &'a [Arc<Map>],
    ) -> BoxFuture<'a, Result<(), SendError>>;
    /// Whether the server is reachable (run every `health_check_interval` while connected).
    fn health_check(&self) -> BoxFuture<'_, Result<(), SendError>>;
    /// Closes the connection (pool).
    fn close(&self) -> BoxFuture<'_, ()>;
    /// Parses a rule action's per-action settings (all keys but `type` and `connector`).
    fn parse_action(&self, f: &mut Fields<'_, '_>) -> Result<Arc<dyn ActionSettings>, FileError>;
    /// What the action would send for `out`, as JSON (rule tests, the rule-test API).
    fn preview(&self, action: &dyn ActionSettings, out: &Map) -> serde_json::Value;
    /// Where this connector hands what it receives (the MQTT bridge's ingress and forward
    /// mode). Called once the rule engine runs; connectors that receive nothing ignore it.
    fn set_ingress(&self, _sink: Arc<dyn IngressSink>) {}
    /// Whether what this connector receives feeds rules (`FROM "$bridges/mqtt:<name>"`).
    fn feeds_rules(&self) -> bool {
        false
    }
    /// Parses a read query (subscription by broker): a template whose `${...}` are bound
    /// as parameters (SQL) or as whole arguments (Redis) when it runs, never spliced into
    /// its text. Default: this connector type runs no queries.
    fn parse_query(&self, _text: &str) -> Result<Arc<dyn ActionSettings>, QueryError> {
        Err(QueryError::Unsupported)
    }
    /// Runs a query from [`Connector::parse_query`] with `vars` bound (`${clientid}`, ...):
    /// the rows it returned, by column name (see each connector type for its shape).
    fn query<'a>(
        &'a self,
        _query: &'a dyn ActionSettings,
        _vars: &'a Map,
    ) -> BoxFuture<'a, Result<Vec<Map>, SendError>> {
        Box::pin(async { Err(SendError::fatal("this connector type runs no queries")) })
    }
}

/// Why [`Connector::parse_query`] refused a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The connector type runs no queries.
    #[error("this connector type runs no queries")]
    Unsupported,
    /// The query does not parse (the message says where and why).
    #[error("{0}")]
    Invalid(String),
}

/// Where connectors hand what they receive from their servers. Implemented by the
/// application (the rule engine and the broker), so neither side depends on the other.
pub trait IngressSink: Send + Sync + 'static {
    /// A message received by MQTT bridge `bridge`: evaluated by the rules whose FROM is
    /// `$bridges/mqtt:<bridge>`. `columns` are the bridge columns (`event` and `node` are
    /// filled in by the engine).
    fn bridge_message(&self, bridge: &str, columns: Map);
    /// Publishes a message into the local broker (the bridge's forward mode).
    fn publish_local(&self, msg: crate::mqtt::message::Message);
}

/// A connector type's parser: its connector settings from the file's table (the common
/// settings are already read).
pub type ParseConnector = fn(&mut Fields<'_, '_>, &CommonSettings) -> Result<Arc<dyn Connector>, FileError>;

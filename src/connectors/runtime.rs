//! The one runtime every connector shares.
//!
//! Per action of a rule that names a connector there is an [`ActionRuntime`]:
//!
//! - **A bounded queue.** [`ActionRuntime::submit`] never waits. When the queue holds
//!   `queue_len` outputs the *oldest* is dropped and counted (`dropped{reason="queue_full"}`):
//!   fresh data is worth more than stale data, and the counter says what was lost. The queue
//!   ([`Buffer`]) is in memory; it is the place a disk-backed buffer (issue 5: spill to
//!   `data/` up to a configured size, durable across `kill -9`) plugs in, behind the same
//!   push / take / len.
//! - **Batching** by size (`batch_size`) and time (`batch_time`: a batch smaller than
//!   `batch_size` waits at most this long after its oldest output arrived).
//! - **An in-flight window** (`inflight_window` batches at once; 1 keeps strict order).
//! - **Retries** of a batch on errors the connector marks retryable, with exponential
//!   backoff (`retry_backoff.initial` doubling up to `.max`) and jitter (each wait is drawn
//!   from [d/2, d]), up to `max_retries` (default: no limit). The batch keeps its window
//!   slot while it waits, so with a window of 1 the queue waits behind it while new outputs
//!   keep arriving into the bounded queue. A non-retryable error (an HTTP 4xx) counts the
//!   batch failed with the server's message and the queue moves on.
//! - **Health.** Per connector: `connecting` until the first connect succeeds, `connected`,
//!   `disconnected` after a failed connect or health check or a send that lost the
//!   connection; the runtime keeps buffering and reconnects with backoff. Batches are taken
//!   from the queue only while connected.
//! - **Metrics** with EMQX's names: `matched`, `success`, `failed`, `retried`,
//!   `dropped` (by reason), `inflight`, `queuing`; `matched = success + failed + inflight +
//!   queuing + dropped` holds at every snapshot (they change under one lock).
//!
//! The [`ConnectorSet`] owns the connectors and the action runtimes. It outlives rule
//! reloads: a reload hands each action of the new rule set the runtime it had (same rule id,
//! action index and connector) with the new settings, so queues and metrics carry on; the
//! runtimes of removed actions drain and stop. Hot reload of the connector files themselves
//! is not done yet (a connector file change needs a restart).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::file::{self, ConnectorDef, RuntimeSettings};
use super::{registry, ActionSettings};
use crate::config::walk::{Fields, FileError};
use crate::rules::actions::{ActionInput, ActionSink, ConnectorCatalog, ExternalAction};
use crate::rules::stats::RuleMetrics;
use crate::rules::value::Map;

/// A connector's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Connecting,
    Connected,
    Disconnected,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Connecting => "connecting",
            Health::Connected => "connected",
            Health::Disconnected => "disconnected",
        }
    }
}

/// A running connector.
struct ConnRt {
    def: ConnectorDef,
    health: watch::Sender<Health>,
    /// A send saw the connection go: the health task reconnects.
    kick: Notify,
    last_error: Mutex<Option<String>>,
}

impl ConnRt {
    fn mark_disconnected(&self, message: &str) {
        *self.last_error.lock() = Some(message.to_string());
        let was = self.health.send_replace(Health::Disconnected);
        if was == Health::Connected {
            tracing::warn!(connector = %self.def.name, error = %message, "Connector disconnected.");
        }
        self.kick.notify_one();
    }
}

/// The per-action counters (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionMetrics {
    /// Outputs handed to the action.
    pub matched: u64,
    /// Outputs the server accepted.
    pub success: u64,
    /// Outputs given up: a non-retryable error, or retries exhausted.
    pub failed: u64,
    /// Retries (one per output of a retried batch and attempt).
    pub retried: u64,
    /// Outputs dropped because the queue was full (oldest first).
    pub dropped_queue_full: u64,
    /// Outputs in batches being sent (or waiting to be retried).
    pub inflight: u64,
    /// Outputs in the queue.
    pub queuing: u64,
}

impl ActionMetrics {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
    }

    /// `matched = success + failed + inflight + queuing + dropped`.
    pub fn balanced(&self) -> bool {
        self.matched == self.success + self.failed + self.inflight + self.queuing + self.dropped()
    }

    /// EMQX's names.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "matched": self.matched,
            "success": self.success,
            "failed": self.failed,
            "retried": self.retried,
            "dropped": self.dropped(),
            "dropped.queue_full": self.dropped_queue_full,
            "inflight": self.inflight,
            "queuing": self.queuing,
        })
    }
}

/// The queue of one action: in memory, bounded, dropping the oldest when full. A
/// disk-backed buffer replaces this type (same operations).
#[derive(Debug)]
pub struct Buffer {
    items: VecDeque<(Instant, Arc<Map>)>,
    cap: usize,
}

impl Buffer {
    pub fn new(cap: usize) -> Buffer {
        Buffer {
            items: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Appends; returns how many old outputs were dropped to make room.
    pub fn push(&mut self, at: Instant, out: Arc<Map>) -> u64 {
        let mut dropped = 0;
        while self.items.len() >= self.cap {
            self.items.pop_front();
            dropped += 1;
        }
        self.items.push_back((at, out));
        dropped
    }

    /// Takes up to `n` of the oldest outputs.
    pub fn take(&mut self, n: usize) -> Vec<Arc<Map>> {
        let n = n.min(self.items.len());
        self.items.drain(..n).map(|(_, o)| o).collect()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the oldest output arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.items.front().map(|(t, _)| *t)
    }
}

struct State {
    buf: Buffer,
    m: ActionMetrics,
    closed: bool,
}

/// The runtime of one action of one rule.
pub struct ActionRuntime {
    pub rule_id: Arc<str>,
    pub index: usize,
    conn: Arc<ConnRt>,
    settings: Mutex<Arc<dyn ActionSettings>>,
    rule_metrics: Mutex<Arc<RuleMetrics>>,
    state: Mutex<State>,
    wake: Notify,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for ActionRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionRuntime")
            .field("rule_id", &self.rule_id)
            .field("index", &self.index)
            .field("connector", &self.conn.def.name)
            .finish_non_exhaustive()
    }
}

impl ActionRuntime {
    /// A consistent snapshot of the counters.
    pub fn metrics(&self) -> ActionMetrics {
        let st = self.state.lock();
        ActionMetrics {
            queuing: st.buf.len() as u64,
            ..st.m
        }
    }

    /// The last error of a send (the server's message), if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }
}

impl ActionSink for ActionRuntime {
    fn submit(&self, input: ActionInput) -> bool {
        let dropped = {
            let mut st = self.state.lock();
            st.m.matched += 1;
            let d = st.buf.push(Instant::now(), input.output);
            st.m.dropped_queue_full += d;
            d
        };
        self.wake.notify_one();
        if dropped > 0 {
            self.rule_metrics.lock().actions_discarded.add(dropped);
            return false;
        }
        true
    }
}

fn backoff(s: &RuntimeSettings, attempt: u32) -> Duration {
    let base = s
        .retry_backoff_initial
        .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1).min(30)).unwrap_or(u32::MAX))
        .min(s.retry_backoff_max);
    let ms = base.as_millis() as u64;
    if ms < 2 {
        return base;
    }
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

async fn wait_connected(conn: &ConnRt) -> bool {
    let mut rx = conn.health.subscribe();
    loop {
        if *rx.borrow_and_update() == Health::Connected {
            return true;
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}

/// Sends one batch, retrying retryable errors; settles the counters.
async fn deliver(rt: Arc<ActionRuntime>, batch: Vec<Arc<Map>>) {
    let s = &rt.conn.def.runtime;
    let n = batch.len() as u64;
    let mut attempt: u32 = 0;
    let outcome = loop {
        if !wait_connected(&rt.conn).await {
            return;
        }
        let settings = rt.settings.lock().clone();
        match rt.conn.def.connector.send_batch(&*settings, &batch).await {
            Ok(()) => break Ok(()),
            Err(e) => {
                if e.disconnected {
                    rt.conn.mark_disconnected(&e.message);
                }
                if !e.retryable || s.max_retries.is_some_and(|m| attempt >= m) {
                    break Err(e);
                }
                attempt += 1;
                rt.state.lock().m.retried += n;
                *rt.last_error.lock() = Some(e.message.clone());
                tracing::debug!(rule = %rt.rule_id, connector = %rt.conn.def.name, attempt, error = %e, "Retrying a batch.");
                tokio::time::sleep(backoff(s, attempt)).await;
            }
        }
    };
    let rm = rt.rule_metrics.lock().clone();
    let mut st = rt.state.lock();
    st.m.inflight -= n;
    match outcome {
        Ok(()) => {
            st.m.success += n;
            rm.actions_success.add(n);
        }
        Err(e) => {
            // A batch may fail in part (one bad row among good ones): count each output.
            let failed = e.failed.map_or(n, |k| (k as u64).min(n));
            st.m.failed += failed;
            st.m.success += n - failed;
            rm.actions_failed_unknown.add(failed);
            rm.actions_success.add(n - failed);
            drop(st);
            tracing::warn!(rule = %rt.rule_id, connector = %rt.conn.def.name, outputs = failed, error = %e, "Connector action failed.");
            *rt.last_error.lock() = Some(e.message);
        }
    }
}

/// Takes batches from the queue into the in-flight window while connected.
async fn run_action(rt: Arc<ActionRuntime>, shutdown: CancellationToken) {
    let s = rt.conn.def.runtime.clone();
    let mut health = rt.conn.health.subscribe();
    let mut inflight = FuturesUnordered::new();
    loop {
        let connected = *health.borrow_and_update() == Health::Connected;
        let mut deadline = None;
        while connected && inflight.len() < s.inflight_window {
            let batch = {
                let mut st = rt.state.lock();
                let Some(oldest) = st.buf.oldest() else { break };
                if st.buf.len() < s.batch_size && !s.batch_time.is_zero() && !st.closed {
                    let due = oldest + s.batch_time;
                    if due > Instant::now() {
                        deadline = Some(due);
                        break;
                    }
                }
                let b = st.buf.take(s.batch_size);
                st.m.inflight += b.len() as u64;
                b
            };
            inflight.push(deliver(rt.clone(), batch));
        }
        {
            let st = rt.state.lock();
            if st.closed && st.buf.is_empty() && inflight.is_empty() {
                break;
            }
        }
        let due = deadline.unwrap_or_else(Instant::now);
        tokio::select! {
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            () = rt.wake.notified() => {}
            r = health.changed() => if r.is_err() { break },
            () = tokio::time::sleep_until(due), if deadline.is_some() => {}
            () = shutdown.cancelled() => break,
        }
    }
}

/// Connects, checks health while connected, reconnects with backoff.
async fn run_health(c: Arc<ConnRt>, shutdown: CancellationToken) {
    let s = c.def.runtime.clone();
    let conn = c.def.connector.clone();
    let mut delay = s.retry_backoff_initial;
    loop {
        let r = tokio::select! {
            r = tokio::time::timeout(s.connect_timeout, conn.connect()) => r,
            () = shutdown.cancelled() => return,
        };
        match r {
            Ok(Ok(())) => {
                *c.last_error.lock() = None;
                if c.health.send_replace(Health::Connected) != Health::Connected {
                    tracing::info!(connector = %c.def.name, "Connector connected.");
                }
                delay = s.retry_backoff_initial;
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            conn.close().await;
                            return;
                        }
                        () = c.kick.notified() => {
                            if *c.health.borrow() != Health::Connected {
                                break;
                            }
                        }
                        () = tokio::time::sleep(s.health_check_interval) => {
                            match tokio::time::timeout(s.connect_timeout, conn.health_check()).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => {
                                    c.mark_disconnected(&e.message);
                                    break;
                                }
                                Err(_) => {
                                    c.mark_disconnected("health check timed out");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                *c.last_error.lock() = Some(e.message.clone());
                if *c.health.borrow() != Health::Disconnected {
                    tracing::warn!(connector = %c.def.name, error = %e, "Connector cannot connect.");
                }
                c.health.send_replace(Health::Disconnected);
            }
            Err(_) => {
                *c.last_error.lock() = Some("connect timed out".into());
                c.health.send_replace(Health::Disconnected);
            }
        }
        let wait = {
            let ms = delay.as_millis() as u64;
            if ms < 2 {
                delay
            } else {
                Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(s.retry_backoff_max);
    }
}

/// A rule id and the index of the action in the rule.
type ActionKey = (Arc<str>, usize);

struct Inner {
    conns: BTreeMap<Arc<str>, Arc<ConnRt>>,
    actions: Mutex<HashMap<ActionKey, Arc<ActionRuntime>>>,
    shutdown: CancellationToken,
    handle: Option<tokio::runtime::Handle>,
}

/// The loaded connectors and their action runtimes (cheap to clone).
#[derive(Clone)]
pub struct ConnectorSet {
    inner: Arc<Inner>,
}

/// A connector as listed by the REST API.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    pub name: Arc<str>,
    pub kind: &'static str,
    pub status: Health,
    pub last_error: Option<String>,
    pub file: std::path::PathBuf,
    pub actions: Vec<ActionInfo>,
}

/// One action runtime of a connector.
#[derive(Debug, Clone)]
pub struct ActionInfo {
    pub rule_id: Arc<str>,
    pub index: usize,
    pub metrics: ActionMetrics,
    pub last_error: Option<String>,
}

impl ConnectorSet {
    /// No connectors.
    pub fn empty() -> ConnectorSet {
        ConnectorSet {
            inner: Arc::new(Inner {
                conns: BTreeMap::new(),
                actions: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                handle: None,
            }),
        }
    }

    /// Loads `dir` and starts every connector (call from within the Tokio runtime).
    pub fn load(dir: &Path, shutdown: CancellationToken) -> Result<ConnectorSet, Vec<FileError>> {
        Ok(Self::start(file::load_dir(dir)?, shutdown))
    }

    /// Starts `defs`: each connector connects in the background (from within the Tokio runtime).
    pub fn start(defs: Vec<ConnectorDef>, shutdown: CancellationToken) -> ConnectorSet {
        let handle = tokio::runtime::Handle::try_current().ok();
        let mut conns = BTreeMap::new();
        for def in defs {
            let (health, _) = watch::channel(Health::Connecting);
            let c = Arc::new(ConnRt {
                def,
                health,
                kick: Notify::new(),
                last_error: Mutex::new(None),
            });
            if let Some(h) = &handle {
                h.spawn(run_health(c.clone(), shutdown.clone()));
            }
            conns.insert(c.def.name.clone(), c);
        }
        ConnectorSet {
            inner: Arc::new(Inner {
                conns,
                actions: Mutex::new(HashMap::new()),
                shutdown,
                handle,
            }),
        }
    }

    /// Every connector with its status and action metrics (by name).
    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        let actions: Vec<Arc<ActionRuntime>> = self.inner.actions.lock().values().cloned().collect();
        self.inner
            .conns
            .values()
            .map(|c| {
                let mut list: Vec<ActionInfo> = actions
                    .iter()
                    .filter(|a| Arc::ptr_eq(&a.conn, c))
                    .map(|a| ActionInfo {
                        rule_id: a.rule_id.clone(),
                        index: a.index,
                        metrics: a.metrics(),
                        last_error: a.last_error(),
                    })
                    .collect();
                list.sort_by(|a, b| (&a.rule_id, a.index).cmp(&(&b.rule_id, b.index)));
                ConnectorInfo {
                    name: c.def.name.clone(),
                    kind: c.def.kind,
                    status: *c.health.borrow(),
                    last_error: c.last_error.lock().clone(),
                    file: c.def.file.clone(),
                    actions: list,
                }
            })
            .collect()
    }

    /// The runtime of the `index`th action of rule `rule_id`, if it names a connector.
    pub fn action(&self, rule_id: &str, index: usize) -> Option<Arc<ActionRuntime>> {
        self.inner.actions.lock().get(&(Arc::from(rule_id), index)).cloned()
    }

    /// Appends the connector families to a Prometheus exposition.
    pub fn render_prometheus(&self, out: &mut String) {
        let infos = self.connectors();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "# HELP junction_connector_status Connector health: 0 connecting, 1 connected, 2 disconnected.\n# TYPE junction_connector_status gauge"
        );
        for c in &infos {
            let v = match c.status {
                Health::Connecting => 0,
                Health::Connected => 1,
                Health::Disconnected => 2,
            };
            let _ = writeln!(
                out,
                "junction_connector_status{{connector=\"{}\",type=\"{}\"}} {v}",
                esc(&c.name),
                c.kind
            );
        }
        type Get = fn(&ActionMetrics) -> u64;
        let families: [(&str, &str, &str, Get); 7] = [
            ("matched_total", "counter", "Outputs handed to the action.", |m| {
                m.matched
            }),
            ("success_total", "counter", "Outputs the server accepted.", |m| {
                m.success
            }),
            (
                "failed_total",
                "counter",
                "Outputs given up (non-retryable error or retries exhausted).",
                |m| m.failed,
            ),
            ("retried_total", "counter", "Retries of outputs.", |m| m.retried),
            ("dropped_total", "counter", "Outputs dropped, by reason.", |m| {
                m.dropped_queue_full
            }),
            ("inflight", "gauge", "Outputs being sent.", |m| m.inflight),
            ("queuing", "gauge", "Outputs in the queue.", |m| m.queuing),
        ];
        for (name, ty, help, get) in families {
            let _ = writeln!(out, "# HELP junction_connector_action_{name} {help}");
            let _ = writeln!(out, "# TYPE junction_connector_action_{name} {ty}");
            for c in &infos {
                for a in &c.actions {
                    let reason = if name == "dropped_total" {
                        ",reason=\"queue_full\""
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        out,
                        "junction_connector_action_{name}{{connector=\"{}\",rule_id=\"{}\",action=\"{}\"{reason}}} {}",
                        esc(&c.name),
                        esc(&a.rule_id),
                        a.index,
                        get(&a.metrics)
                    );
                }
            }
        }
    }

    /// Hands every connector the sink for what it receives (the MQTT bridge's ingress).
    pub fn set_ingress(&self, sink: Arc<dyn super::IngressSink>) {
        for c in self.inner.conns.values() {
            c.def.connector.set_ingress(sink.clone());
        }
    }

    /// Stops every action runtime and connector (buffered outputs are lost: memory only).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }
}

/// A connector used for read queries outside rules (subscription by broker). Queries run
/// only while the connector is connected: one made while it is still connecting waits for
/// the first connect's outcome; a query that loses the connection marks the connector
/// disconnected, so the health task reconnects.
#[derive(Clone)]
pub struct QueryTarget {
    conn: Arc<ConnRt>,
}

impl ConnectorSet {
    /// Connector `name`, for read queries.
    pub fn query_target(&self, name: &str) -> Option<QueryTarget> {
        self.inner.conns.get(name).map(|c| QueryTarget { conn: c.clone() })
    }

    /// The names of the connectors.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.inner.conns.keys().cloned().collect()
    }
}

impl QueryTarget {
    pub fn name(&self) -> &Arc<str> {
        &self.conn.def.name
    }

    /// The connector's `type`.
    pub fn kind(&self) -> &'static str {
        self.conn.def.kind
    }

    /// Parses a query for this connector.
    pub fn parse_query(&self, text: &str) -> Result<Arc<dyn ActionSettings>, super::QueryError> {
        self.conn.def.connector.parse_query(text)
    }

    /// Runs `query` (from [`QueryTarget::parse_query`]) with `vars` bound.
    pub async fn query(&self, query: &dyn ActionSettings, vars: &Map) -> Result<Vec<Map>, super::SendError> {
        let mut health = self.conn.health.subscribe();
        let now = *health
            .wait_for(|h| *h != Health::Connecting)
            .await
            .map_err(|_| super::SendError::disconnected("the connector has stopped"))?;
        if now != Health::Connected {
            let why = self
                .conn
                .last_error
                .lock()
                .clone()
                .unwrap_or_else(|| "disconnected".into());
            return Err(super::SendError::disconnected(format!(
                "connector is disconnected: {why}"
            )));
        }
        let r = self.conn.def.connector.query(query, vars).await;
        if let Err(e) = &r {
            if e.disconnected {
                self.conn.mark_disconnected(&e.message);
            }
        }
        r
    }
}

/// A parsed connector action: the settings and the connector they are for.
struct ConnAction {
    set: ConnectorSet,
    conn: Arc<ConnRt>,
    settings: Arc<dyn ActionSettings>,
}

impl fmt::Debug for ConnAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorAction")
            .field("type", &self.conn.def.kind)
            .field("connector", &self.conn.def.name)
            .field("settings", &self.settings)
            .finish()
    }
}

impl ExternalAction for ConnAction {
    fn kind(&self) -> &str {
        self.conn.def.kind
    }

    fn connector(&self) -> &str {
        &self.conn.def.name
    }

    fn preview(&self, out: &Map) -> serde_json::Value {
        let mut v = self.conn.def.connector.preview(&*self.settings, out);
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "connector".into(),
                serde_json::Value::String(self.conn.def.name.to_string()),
            );
        }
        v
    }

    fn start(&self, rule_id: &str, index: usize, metrics: Arc<RuleMetrics>) -> Arc<dyn ActionSink> {
        let key: ActionKey = (Arc::from(rule_id), index);
        let mut map = self.set.inner.actions.lock();
        if let Some(rt) = map.get(&key) {
            if Arc::ptr_eq(&rt.conn, &self.conn) {
                *rt.settings.lock() = self.settings.clone();
                *rt.rule_metrics.lock() = metrics;
                return rt.clone();
            }
            rt.close();
        }
        let rt = Arc::new(ActionRuntime {
            rule_id: key.0.clone(),
            index,
            conn: self.conn.clone(),
            settings: Mutex::new(self.settings.clone()),
            rule_metrics: Mutex::new(metrics),
            state: Mutex::new(State {
                buf: Buffer::new(self.conn.def.runtime.queue_len),
                m: ActionMetrics::default(),
                closed: false,
            }),
            wake: Notify::new(),
            last_error: Mutex::new(None),
        });
        map.insert(key, rt.clone());
        let shutdown = self.set.inner.shutdown.clone();
        match &self.set.inner.handle {
            Some(h) => drop(h.spawn(run_action(rt.clone(), shutdown))),
            None => drop(tokio::spawn(run_action(rt.clone(), shutdown))),
        }
        rt
    }
}

impl ConnectorCatalog for ConnectorSet {
    fn types(&self) -> Vec<&'static str> {
        registry::names()
    }

    fn parse_action(&self, ty: &str, f: &mut Fields<'_, '_>) -> Option<Result<Arc<dyn ExternalAction>, FileError>> {
        let (kind, _) = registry::find(ty)?;
        Some((|| {
            let name = f.req_string("connector")?;
            let Some(conn) = self.inner.conns.get(name.value.as_str()) else {
                let known: Vec<&str> = self
                    .inner
                    .conns
                    .values()
                    .filter(|c| c.def.kind == kind)
                    .map(|c| &*c.def.name)
                    .collect();
                return Err(f.error(
                    "connector",
                    format!(
                        "no connector `{}` (a file `{}.toml` in the connectors folder); {kind} connectors: {}",
                        name.value,
                        name.value,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            if conn.def.kind != kind {
                return Err(f.error(
                    "connector",
                    format!(
                        "connector `{}` is of type `{}`, not `{kind}`",
                        name.value, conn.def.kind
                    ),
                ));
            }
            let settings = conn.def.connector.parse_action(f)?;
            let a: Arc<dyn ExternalAction> = Arc::new(ConnAction {
                set: self.clone(),
                conn: conn.clone(),
                settings,
            });
            Ok(a)
        })())
    }

    fn check_bridge(&self, name: &str) -> Result<(), String> {
        let Some(c) = self.inner.conns.get(name) else {
            let known: Vec<&str> = self
                .inner
                .conns
                .values()
                .filter(|c| c.def.kind == "mqtt")
                .map(|c| &*c.def.name)
                .collect();
            return Err(format!(
                "no MQTT bridge `{name}` (an mqtt connector `{name}.toml` in the connectors folder); mqtt connectors: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        if c.def.kind != "mqtt" {
            return Err(format!("connector `{name}` is of type `{}`, not `mqtt`", c.def.kind));
        }
        if !c.def.connector.feeds_rules() {
            return Err(format!(
                "connector `{name}` has no `ingress`: add `ingress = [{{ remote = \"<filter>\", qos = 1 }}]` to its file"
            ));
        }
        Ok(())
    }

    fn retain_actions(&self, live: &[(Arc<str>, usize)]) {
        let mut map = self.inner.actions.lock();
        map.retain(|key, rt| {
            let keep = live.contains(key);
            if !keep {
                rt.close();
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_drops_oldest() {
        let mut b = Buffer::new(2);
        let now = Instant::now();
        let m = |i: i64| {
            let mut m = Map::default();
            m.insert("i".into(), crate::rules::value::Value::Int(i));
            Arc::new(m)
        };
        assert_eq!(b.push(now, m(1)), 0);
        assert_eq!(b.push(now, m(2)), 0);
        assert_eq!(b.push(now, m(3)), 1);
        let got = b.take(10);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].get("i"), Some(&crate::rules::value::Value::Int(2)));
    }

    struct Fake;

    impl super::super::Connector for Fake {
        fn connect(&self) -> futures_util::future::BoxFuture<'_, Result<(), super::super::SendError>> {
            Box::pin(async { Ok(()) })
        }
        fn send_batch<'a>(
            &'a self,
            _: &'a dyn ActionSettings,
            _: &'a [Arc<Map>],
        ) -> futures_util::future::BoxFuture<'a, Result<(), super::super::SendError>> {
            Box::pin(async { Ok(()) })
        }
        fn health_check(&self) -> futures_util::future::BoxFuture<'_, Result<(), super::super::SendError>> {
            Box::pin(async { Ok(()) })
        }
        fn close(&self) -> futures_util::future::BoxFuture<'_, ()> {
            Box::pin(async {})
        }
        fn parse_action(&self, _: &mut Fields<'_, '_>) -> Result<Arc<dyn ActionSettings>, FileError> {
            unreachable!("not called for a connector of another type")
        }
        fn preview(&self, _: &dyn ActionSettings, _: &Map) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    #[test]
    fn an_action_naming_a_connector_of_another_type_is_refused() {
        let set = ConnectorSet::start(
            vec![ConnectorDef {
                name: Arc::from("remote"),
                kind: "mqtt",
                runtime: RuntimeSettings::default(),
                connector: Arc::new(Fake),
                file: "connectors/remote.toml".into(),
            }],
            CancellationToken::new(),
        );
        let text = "[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"t\"'\n[[rules.actions]]\ntype = \"webhook\"\nconnector = \"remote\"\n";
        let e = crate::rules::file::load_str_with(
            Path::new("rules/r.toml"),
            text,
            &crate::rules::compile::CompileOptions::default(),
            &set,
        )
        .unwrap_err();
        assert_eq!((e[0].line, e[0].col), (6, 13), "{}", e[0]);
        assert!(
            e[0].message
                .contains("connector `remote` is of type `mqtt`, not `webhook`"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = RuntimeSettings {
            retry_backoff_initial: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1000),
            ..RuntimeSettings::default()
        };
        for attempt in 1..40 {
            let d = backoff(&s, attempt);
            let cap = (100u64 << (attempt - 1).min(20)).min(1000);
            assert!(
                d <= Duration::from_millis(cap) && d >= Duration::from_millis(cap / 2),
                "{attempt}: {d:?}"
            );
        }
    }
}

//! The one runtime every connector shares.
//!
//! Per action of a rule that names a connector there is an [`ActionRuntime`]:
//!
//! - **A bounded queue.** [`ActionRuntime::submit`] never waits. Outputs are numbered in
//!   order (a sequence number per action). The first `queue_len` queued outputs are kept in
//!   memory. With `buffer_mode = "disk"` (the default when the broker has a data folder)
//!   every output not yet delivered is also written to the action's disk log
//!   ([`super::buffer`], under `<data_dir>/buffers/`) by one writer thread every
//!   `durable_storage.sync_interval`, and synced; outputs past `queue_len` live only there
//!   and are read back in order. Past `max_buffer_bytes` the oldest segment of the log is
//!   dropped. With `buffer_mode = "memory"` the queue is `queue_len` outputs in memory.
//!   Either way what is dropped is the *oldest* and it is counted
//!   (`dropped{reason="queue_full"}`): fresh data is worth more than stale data, and the
//!   counter says what was lost.
//! - **Durability.** After a restart or a `kill -9` the action resumes from its log: every
//!   output that was written and not yet acknowledged by the server is sent again (at least
//!   once; a `dedupe` key makes SQL sinks exactly once). What a `kill -9` can lose: the
//!   outputs of the last `sync_interval` that were neither delivered nor written yet.
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
//! runtimes of removed actions drain, delete their log and stop.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::buffer::DiskLog;
use super::file::{self, BufferMode, ConnectorDef, RuntimeSettings};
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
    /// Cancelled when the set shuts down, or when a reload replaces or removes the file.
    stop: CancellationToken,
    started: std::sync::atomic::AtomicBool,
}

impl ConnRt {
    /// Not connecting yet: see [`ConnRt::spawn`].
    fn new(def: ConnectorDef, parent: &CancellationToken) -> Arc<ConnRt> {
        let (health, _) = watch::channel(Health::Connecting);
        Arc::new(ConnRt {
            def,
            health,
            kick: Notify::new(),
            last_error: Mutex::new(None),
            stop: parent.child_token(),
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts connecting (once).
    fn spawn(self: &Arc<Self>, handle: Option<&tokio::runtime::Handle>) {
        if self.started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        if let Some(h) = handle {
            h.spawn(run_health(self.clone(), self.stop.clone()));
        }
    }

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

/// Outputs that may wait for the disk writer before new ones are dropped (the sink is down
/// and the disk cannot keep up or fails).
const UNWRITTEN_MAX: usize = 1_000_000;
/// Outputs read back from the disk log at a time.
const REFILL: usize = 4096;

/// The queue of one action. Outputs are numbered; the queue is `[taken, tail)`, of which
/// `[taken, mem_end)` is in memory and the rest only in the disk log (or still waiting to
/// be written to it, in `unwritten`).
struct State {
    /// Outputs `[taken, mem_end)` with their arrival time.
    mem: VecDeque<(Instant, Arc<Map>)>,
    /// At most this many outputs in `mem`.
    cap: usize,
    /// The next output to send.
    taken: u64,
    mem_end: u64,
    /// The next sequence number.
    tail: u64,
    /// Disk mode: outputs `[written, tail)`, not yet handed to the log.
    unwritten: VecDeque<Arc<Map>>,
    written: u64,
    /// Disk mode.
    disk: bool,
    /// The first sequence number of each batch in flight.
    inflight: BTreeSet<u64>,
    m: ActionMetrics,
    closed: bool,
}

impl State {
    fn new(cap: usize, disk: bool, floor: u64, tail: u64) -> State {
        State {
            mem: VecDeque::new(),
            cap: cap.max(1),
            taken: floor,
            mem_end: floor,
            tail,
            unwritten: VecDeque::new(),
            written: tail,
            disk,
            inflight: BTreeSet::new(),
            m: ActionMetrics {
                matched: tail - floor,
                ..ActionMetrics::default()
            },
            closed: false,
        }
    }

    fn queuing(&self) -> u64 {
        self.tail - self.taken
    }

    /// Every output below this is settled (delivered, failed or dropped).
    fn floor(&self) -> u64 {
        self.inflight.first().copied().unwrap_or(self.taken).min(self.taken)
    }

    /// Appends an output; returns how many queued outputs were dropped for it.
    fn push(&mut self, at: Instant, out: Arc<Map>) -> u64 {
        self.m.matched += 1;
        if self.disk {
            if self.unwritten.len() >= UNWRITTEN_MAX {
                // The disk writer is far behind (or failing) while the server is down.
                self.m.dropped_queue_full += 1;
                return 1;
            }
            let seq = self.tail;
            self.tail += 1;
            self.unwritten.push_back(out.clone());
            if self.mem_end == seq && self.mem.len() < self.cap {
                self.mem.push_back((at, out));
                self.mem_end += 1;
            }
            return 0;
        }
        let mut dropped = 0;
        while self.mem.len() >= self.cap {
            self.mem.pop_front();
            self.taken += 1;
            dropped += 1;
        }
        self.mem.push_back((at, out));
        self.tail += 1;
        self.mem_end = self.tail;
        self.m.dropped_queue_full += dropped;
        dropped
    }

    /// Drops the queued outputs below `floor` (the disk log let go of them).
    fn drop_below(&mut self, floor: u64) -> u64 {
        if floor <= self.taken {
            return 0;
        }
        let floor = floor.min(self.tail);
        let in_mem = (floor.min(self.mem_end) - self.taken) as usize;
        self.mem.drain(..in_mem.min(self.mem.len()));
        let d = floor - self.taken;
        self.taken = floor;
        self.mem_end = self.mem_end.max(floor);
        self.m.dropped_queue_full += d;
        d
    }

    /// Takes up to `n` of the oldest outputs from memory; returns the first's number.
    fn take(&mut self, n: usize) -> (u64, Vec<Arc<Map>>) {
        let n = n.min(self.mem.len());
        let start = self.taken;
        let b: Vec<Arc<Map>> = self.mem.drain(..n).map(|(_, o)| o).collect();
        self.taken += b.len() as u64;
        self.inflight.insert(start);
        self.m.inflight += b.len() as u64;
        (start, b)
    }

    /// Moves outputs that wait for the writer into memory (memory is empty and they are
    /// next). Returns false when the next outputs are only in the disk log.
    fn refill_from_unwritten(&mut self) -> bool {
        if !self.mem.is_empty() || self.mem_end >= self.tail {
            return true;
        }
        if self.mem_end < self.written {
            return false;
        }
        let at = Instant::now();
        let from = (self.mem_end - self.written) as usize;
        let k = (self.unwritten.len() - from).min(self.cap);
        for o in self.unwritten.range(from..from + k) {
            self.mem.push_back((at, o.clone()));
        }
        self.mem_end += k as u64;
        true
    }
}

/// The runtime of one action of one rule.
pub struct ActionRuntime {
    pub rule_id: Arc<str>,
    pub index: usize,
    /// Replaced when a reload changes the connector's file (same name): the queue stays.
    conn: Mutex<Arc<ConnRt>>,
    settings: Mutex<Arc<dyn ActionSettings>>,
    rule_metrics: Mutex<Arc<RuleMetrics>>,
    state: Mutex<State>,
    /// Disk mode: the action's log (taken by the writer thread and by read-backs).
    log: Mutex<Option<DiskLog>>,
    wake: Notify,
    last_error: Mutex<Option<String>>,
}

impl fmt::Debug for ActionRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionRuntime")
            .field("rule_id", &self.rule_id)
            .field("index", &self.index)
            .field("connector", &self.conn().def.name)
            .finish_non_exhaustive()
    }
}

impl ActionRuntime {
    fn conn(&self) -> Arc<ConnRt> {
        self.conn.lock().clone()
    }

    /// A consistent snapshot of the counters.
    pub fn metrics(&self) -> ActionMetrics {
        let st = self.state.lock();
        ActionMetrics {
            queuing: st.queuing(),
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
        let dropped = self.state.lock().push(Instant::now(), input.output);
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

/// Waits until `conn` is connected; false when it is stopped (replaced by a reload).
async fn wait_connected(conn: &ConnRt) -> bool {
    let mut rx = conn.health.subscribe();
    loop {
        if *rx.borrow_and_update() == Health::Connected {
            return true;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return false },
            () = conn.stop.cancelled() => return false,
        }
    }
}

/// Sends one batch, retrying retryable errors; settles the counters.
async fn deliver(rt: Arc<ActionRuntime>, start: u64, batch: Vec<Arc<Map>>) {
    let n = batch.len() as u64;
    let mut attempt: u32 = 0;
    let outcome = loop {
        // The connector of this attempt (a reload may have replaced it since the last one).
        let conn = rt.conn();
        let s = &conn.def.runtime;
        if !wait_connected(&conn).await {
            // Stopped: a reload replaced it (the next attempt takes the new one).
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let settings = rt.settings.lock().clone();
        match conn.def.connector.send_batch(&*settings, &batch).await {
            Ok(()) => break Ok(()),
            Err(e) => {
                if e.disconnected {
                    conn.mark_disconnected(&e.message);
                }
                if !e.retryable || s.max_retries.is_some_and(|m| attempt >= m) {
                    break Err(e);
                }
                attempt += 1;
                rt.state.lock().m.retried += n;
                *rt.last_error.lock() = Some(e.message.clone());
                tracing::debug!(rule = %rt.rule_id, connector = %conn.def.name, attempt, error = %e, "Retrying a batch.");
                tokio::time::sleep(backoff(s, attempt)).await;
            }
        }
    };
    let rm = rt.rule_metrics.lock().clone();
    let mut st = rt.state.lock();
    st.m.inflight -= n;
    st.inflight.remove(&start);
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
            tracing::warn!(rule = %rt.rule_id, connector = %rt.conn().def.name, outputs = failed, error = %e, "Connector action failed.");
            *rt.last_error.lock() = Some(e.message);
        }
    }
}

/// Reads the next outputs back from the disk log into memory (memory is empty and they
/// are only on disk). Outputs missing from the log (a corrupt record) are counted dropped.
fn refill_from_disk(rt: &ActionRuntime) {
    let (from, until) = {
        let mut st = rt.state.lock();
        if st.refill_from_unwritten() {
            return;
        }
        (st.mem_end, st.written)
    };
    let read = {
        let mut log = rt.log.lock();
        let Some(log) = log.as_mut() else { return };
        log.read(from, until, REFILL)
    };
    let items = match read {
        Ok(items) => items,
        Err(e) => {
            tracing::warn!(rule = %rt.rule_id, connector = %rt.conn().def.name, error = %e, "Disk buffer: cannot read back; retrying.");
            *rt.last_error.lock() = Some(format!("disk buffer: {e}"));
            return;
        }
    };
    let mut st = rt.state.lock();
    if st.mem_end != from || !st.mem.is_empty() {
        return; // the writer dropped segments meanwhile: read again
    }
    let at = Instant::now();
    let mut lost = 0;
    for (seq, o) in items {
        if seq < st.mem_end {
            continue;
        }
        if seq > st.mem_end {
            // A gap: outputs the log does not have.
            lost += st.drop_below(seq);
        }
        st.mem.push_back((at, o));
        st.mem_end += 1;
    }
    if st.mem.is_empty() && st.mem_end < until {
        lost += st.drop_below(until);
    }
    drop(st);
    if lost > 0 {
        tracing::warn!(rule = %rt.rule_id, connector = %rt.conn().def.name, outputs = lost, "Disk buffer: outputs missing from the log are counted dropped.");
        rt.rule_metrics.lock().actions_discarded.add(lost);
    }
}

/// Takes batches from the queue into the in-flight window while connected.
async fn run_action(rt: Arc<ActionRuntime>, shutdown: CancellationToken) {
    let mut conn = rt.conn();
    let mut s = conn.def.runtime.clone();
    let mut health = conn.health.subscribe();
    let mut inflight = FuturesUnordered::new();
    loop {
        let now = rt.conn();
        if !Arc::ptr_eq(&now, &conn) {
            // A reload replaced the connector: follow the new one.
            conn = now;
            s = conn.def.runtime.clone();
            health = conn.health.subscribe();
        }
        let connected = *health.borrow_and_update() == Health::Connected;
        let mut deadline = None;
        while connected && inflight.len() < s.inflight_window {
            refill_from_disk(&rt);
            let (start, batch) = {
                let mut st = rt.state.lock();
                let Some(&(oldest, _)) = st.mem.front() else { break };
                if st.mem.len() < s.batch_size
                    && st.queuing() < s.batch_size as u64
                    && !s.batch_time.is_zero()
                    && !st.closed
                {
                    let due = oldest + s.batch_time;
                    if due > Instant::now() {
                        deadline = Some(due);
                        break;
                    }
                }
                st.take(s.batch_size)
            };
            inflight.push(deliver(rt.clone(), start, batch));
        }
        {
            let st = rt.state.lock();
            if st.closed && st.queuing() == 0 && inflight.is_empty() {
                break;
            }
        }
        let due = deadline.unwrap_or_else(Instant::now);
        tokio::select! {
            Some(()) = inflight.next(), if !inflight.is_empty() => {}
            () = rt.wake.notified() => {}
            r = health.changed() => if r.is_err() { return },
            () = conn.stop.cancelled(), if !shutdown.is_cancelled() => {
                // Replaced: wait for the rebind (a wake) rather than spin.
                rt.wake.notified().await;
            }
            () = tokio::time::sleep_until(due), if deadline.is_some() => {}
            () = shutdown.cancelled() => return,
        }
    }
    // Removed from the rule set and drained: the log goes.
    if let Some(log) = rt.log.lock().take() {
        if let Err(e) = log.destroy() {
            tracing::warn!(rule = %rt.rule_id, error = %e, "Disk buffer: cannot delete the log of a removed action.");
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
    conns: parking_lot::RwLock<BTreeMap<Arc<str>, Arc<ConnRt>>>,
    /// A reload in progress: the connectors rules are parsed against ([`ConnectorSet::stage`]).
    staged: Mutex<Option<BTreeMap<Arc<str>, Arc<ConnRt>>>>,
    /// The folder the connectors were loaded from (watched for changes).
    dir: Option<PathBuf>,
    ingress: Mutex<Option<Arc<dyn super::IngressSink>>>,
    actions: Mutex<HashMap<ActionKey, Arc<ActionRuntime>>>,
    shutdown: CancellationToken,
    handle: Option<tokio::runtime::Handle>,
    buffers: Option<Buffers>,
}

/// Where the disk logs live and the thread that writes them.
struct Buffers {
    dir: PathBuf,
    actions: Arc<Mutex<Vec<Weak<ActionRuntime>>>>,
    /// Dropping (or sending on) it stops the writer after a last pass.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Where connector actions keep their disk buffers, and how often they are written.
#[derive(Debug, Clone)]
pub struct BufferOptions {
    /// `<data_dir>/buffers`.
    pub dir: PathBuf,
    /// How often the writer writes and syncs (`durable_storage.sync_interval`).
    pub sync_interval: Duration,
}

/// The folder of one action's log: `<connector>/<rule id>.<index>`, the rule id with every
/// byte but `[A-Za-z0-9_-]` as `%XX` (a long one as its SHA-256).
fn log_dir(root: &Path, connector: &str, rule_id: &str, index: usize) -> PathBuf {
    let mut name = String::new();
    for b in rule_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            name.push(b as char);
        } else {
            let _ = write!(name, "%{b:02X}");
        }
    }
    if name.len() > 200 {
        use sha2::Digest;
        name = format!("sha256-{}", hex::encode(sha2::Sha256::digest(rule_id.as_bytes())));
    }
    root.join(connector).join(format!("{name}.{index}"))
}

/// One pass of the writer over one action: the ack floor, then the outputs not yet
/// written (skipping those already settled), then the size cap. Returns the file to sync.
fn persist(rt: &ActionRuntime) -> Option<std::fs::File> {
    let mut guard = rt.log.lock();
    let log = guard.as_mut()?;
    let (batch, base, floor) = {
        let mut st = rt.state.lock();
        let floor = st.floor();
        let skip = (floor.saturating_sub(st.written) as usize).min(st.unwritten.len());
        st.unwritten.drain(..skip);
        st.written += skip as u64;
        (st.unwritten.iter().cloned().collect::<Vec<_>>(), st.written, floor)
    };
    let r = log
        .ack(floor)
        .and_then(|()| log.append(batch.iter().enumerate().map(|(i, m)| (base + i as u64, &**m))));
    match r {
        Ok(()) => {
            let mut st = rt.state.lock();
            let k = batch.len().min(st.unwritten.len());
            st.unwritten.drain(..k);
            st.written += batch.len() as u64;
        }
        Err(e) => {
            tracing::warn!(rule = %rt.rule_id, connector = %rt.conn().def.name, error = %e, "Disk buffer: cannot write; retrying.");
            *rt.last_error.lock() = Some(format!("disk buffer: {e}"));
        }
    }
    match log.enforce_cap() {
        Ok(Some(floor)) => {
            let d = rt.state.lock().drop_below(floor);
            if d > 0 {
                rt.rule_metrics.lock().actions_discarded.add(d);
                tracing::warn!(rule = %rt.rule_id, connector = %rt.conn().def.name, outputs = d, "Disk buffer full: the oldest outputs are dropped.");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(rule = %rt.rule_id, error = %e, "Disk buffer: cannot delete a segment."),
    }
    match log.flush() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(rule = %rt.rule_id, error = %e, "Disk buffer: cannot write.");
            None
        }
    }
}

/// The writer thread: every `interval`, one pass over every disk-mode action, then a sync.
fn run_writer(actions: Arc<Mutex<Vec<Weak<ActionRuntime>>>>, interval: Duration, stop: std::sync::mpsc::Receiver<()>) {
    loop {
        let last = !matches!(
            stop.recv_timeout(interval),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        let live: Vec<Arc<ActionRuntime>> = {
            let mut l = actions.lock();
            l.retain(|a| a.strong_count() > 0);
            l.iter().filter_map(Weak::upgrade).collect()
        };
        let files: Vec<std::fs::File> = live.iter().filter_map(|a| persist(a)).collect();
        drop(live);
        for f in files {
            if let Err(e) = f.sync_data() {
                tracing::warn!(error = %e, "Disk buffer: cannot sync.");
            }
        }
        if last {
            return;
        }
    }
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
                conns: Default::default(),
                staged: Mutex::new(None),
                dir: None,
                ingress: Mutex::new(None),
                actions: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                handle: None,
                buffers: None,
            }),
        }
    }

    /// Loads `dir` and starts every connector (call from within the Tokio runtime).
    /// `buffers`: where disk-mode actions keep their logs (`None`: every action in memory).
    pub fn load(
        dir: &Path,
        buffers: Option<BufferOptions>,
        shutdown: CancellationToken,
    ) -> Result<ConnectorSet, Vec<FileError>> {
        let mut set = Self::start_with(file::load_dir(dir)?, buffers, shutdown);
        if let Some(inner) = Arc::get_mut(&mut set.inner) {
            inner.dir = Some(dir.to_path_buf());
        }
        Ok(set)
    }

    /// Starts `defs` with every action buffered in memory.
    pub fn start(defs: Vec<ConnectorDef>, shutdown: CancellationToken) -> ConnectorSet {
        Self::start_with(defs, None, shutdown)
    }

    /// Starts `defs`: each connector connects in the background (from within the Tokio runtime).
    pub fn start_with(
        defs: Vec<ConnectorDef>,
        buffers: Option<BufferOptions>,
        shutdown: CancellationToken,
    ) -> ConnectorSet {
        let handle = tokio::runtime::Handle::try_current().ok();
        let mut conns = BTreeMap::new();
        for def in defs {
            let c = ConnRt::new(def, &shutdown);
            c.spawn(handle.as_ref());
            conns.insert(c.def.name.clone(), c);
        }
        ConnectorSet {
            inner: Arc::new(Inner {
                conns: parking_lot::RwLock::new(conns),
                staged: Mutex::new(None),
                dir: None,
                ingress: Mutex::new(None),
                actions: Mutex::new(HashMap::new()),
                shutdown,
                handle,
                buffers: buffers.and_then(Self::start_writer),
            }),
        }
    }

    fn start_writer(o: BufferOptions) -> Option<Buffers> {
        let actions = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let a = actions.clone();
        let interval = o.sync_interval.max(Duration::from_millis(1));
        match std::thread::Builder::new()
            .name("junction-buffers".into())
            .spawn(move || run_writer(a, interval, rx))
        {
            Ok(t) => Some(Buffers {
                dir: o.dir,
                actions,
                stop: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(t)),
            }),
            Err(e) => {
                tracing::error!(error = %e, "Cannot start the disk buffer writer: connector actions buffer in memory.");
                None
            }
        }
    }

    /// Every connector with its status and action metrics (by name).
    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        let actions: Vec<Arc<ActionRuntime>> = self.inner.actions.lock().values().cloned().collect();
        self.inner
            .conns
            .read()
            .values()
            .map(|c| {
                let mut list: Vec<ActionInfo> = actions
                    .iter()
                    .filter(|a| Arc::ptr_eq(&a.conn(), c))
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
        for c in self.inner.conns.read().values() {
            c.def.connector.set_ingress(sink.clone());
        }
        *self.inner.ingress.lock() = Some(sink);
    }

    /// The connector named `name`: of the reload in progress if there is one, else live.
    fn lookup(&self, name: &str) -> Option<Arc<ConnRt>> {
        if let Some(staged) = self.inner.staged.lock().as_ref() {
            return staged.get(name).cloned();
        }
        self.inner.conns.read().get(name).cloned()
    }

    /// The connectors of the reload in progress, or the live ones.
    fn current(&self) -> Vec<Arc<ConnRt>> {
        if let Some(staged) = self.inner.staged.lock().as_ref() {
            return staged.values().cloned().collect();
        }
        self.inner.conns.read().values().cloned().collect()
    }

    /// Stops every action runtime and connector (outputs in memory-mode queues are lost).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Stops everything and waits for the disk buffers' last write and sync (blocking).
    pub fn close(&self) {
        self.shutdown();
        if let Some(b) = &self.inner.buffers {
            b.stop.lock().take();
            if let Some(t) = b.thread.lock().take() {
                let _ = t.join();
            }
        }
    }
}

/// A connector used for read queries outside rules (subscription by broker). Queries run
/// only while the connector is connected: one made while it is still connecting waits for
/// the first connect's outcome; a query that loses the connection marks the connector
/// disconnected, so the health task reconnects. Each query uses the connector live at the
/// time (a hot reload may have replaced it).
#[derive(Clone)]
pub struct QueryTarget {
    set: ConnectorSet,
    name: Arc<str>,
    kind: &'static str,
}

impl ConnectorSet {
    /// Connector `name`, for read queries.
    pub fn query_target(&self, name: &str) -> Option<QueryTarget> {
        self.inner.conns.read().get(name).map(|c| QueryTarget {
            set: self.clone(),
            name: c.def.name.clone(),
            kind: c.def.kind,
        })
    }

    /// The names of the connectors.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.inner.conns.read().keys().cloned().collect()
    }
}

impl QueryTarget {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The connector's `type`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    fn conn(&self) -> Result<Arc<ConnRt>, super::SendError> {
        self.set
            .inner
            .conns
            .read()
            .get(&self.name)
            .cloned()
            .ok_or_else(|| super::SendError::disconnected(format!("connector `{}` was removed", self.name)))
    }

    /// Parses a query for this connector.
    pub fn parse_query(&self, text: &str) -> Result<Arc<dyn ActionSettings>, super::QueryError> {
        let conn = self.conn().map_err(|e| super::QueryError::Invalid(e.message))?;
        conn.def.connector.parse_query(text)
    }

    /// Runs `query` (from [`QueryTarget::parse_query`]) with `vars` bound.
    pub async fn query(&self, query: &dyn ActionSettings, vars: &Map) -> Result<Vec<Map>, super::SendError> {
        let conn = self.conn()?;
        let mut health = conn.health.subscribe();
        let now = tokio::select! {
            h = health.wait_for(|h| *h != Health::Connecting) => {
                *h.map_err(|_| super::SendError::disconnected("the connector has stopped"))?
            }
            () = conn.stop.cancelled() => {
                return Err(super::SendError::disconnected("the connector was replaced by a reload"));
            }
        };
        if now != Health::Connected {
            let why = conn.last_error.lock().clone().unwrap_or_else(|| "disconnected".into());
            return Err(super::SendError::disconnected(format!(
                "connector is disconnected: {why}"
            )));
        }
        let r = conn.def.connector.query(query, vars).await;
        if let Err(e) = &r {
            if e.disconnected {
                conn.mark_disconnected(&e.message);
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
            let old = rt.conn();
            if old.def.name == self.conn.def.name {
                // The same connector, or its file changed (a reload replaced it): the
                // queue, its disk log and the metrics carry on with the new settings.
                if !Arc::ptr_eq(&old, &self.conn) {
                    *rt.conn.lock() = self.conn.clone();
                    rt.state.lock().cap = self.conn.def.runtime.queue_len.max(1);
                }
                *rt.settings.lock() = self.settings.clone();
                *rt.rule_metrics.lock() = metrics;
                rt.wake.notify_one();
                return rt.clone();
            }
            rt.close();
        }
        let rs = &self.conn.def.runtime;
        let buffers = self
            .set
            .inner
            .buffers
            .as_ref()
            .filter(|_| rs.buffer_mode == BufferMode::Disk);
        let mut log = None;
        let mut state = State::new(rs.queue_len, false, 0, 0);
        if let Some(b) = buffers {
            let dir = log_dir(&b.dir, &self.conn.def.name, rule_id, index);
            match DiskLog::open(&dir, rs.buffer_seg_bytes, rs.max_buffer_bytes) {
                Ok((l, rec)) => {
                    if rec.pending > 0 {
                        tracing::info!(rule = rule_id, connector = %self.conn.def.name, outputs = rec.pending, "Disk buffer: resuming queued outputs.");
                    }
                    state = State::new(rs.queue_len, true, rec.floor, rec.tail);
                    log = Some(l);
                }
                Err(e) => {
                    tracing::error!(rule = rule_id, dir = %dir.display(), error = %e, "Cannot open the disk buffer: this action buffers in memory.")
                }
            }
        }
        let rt = Arc::new(ActionRuntime {
            rule_id: key.0.clone(),
            index,
            conn: Mutex::new(self.conn.clone()),
            settings: Mutex::new(self.settings.clone()),
            rule_metrics: Mutex::new(metrics),
            state: Mutex::new(state),
            log: Mutex::new(log),
            wake: Notify::new(),
            last_error: Mutex::new(None),
        });
        if let Some(b) = buffers {
            if rt.log.lock().is_some() {
                b.actions.lock().push(Arc::downgrade(&rt));
            }
        }
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
            let Some(conn) = self.lookup(name.value.as_str()) else {
                let all = self.current();
                let known: Vec<&str> = all
                    .iter()
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
        let Some(c) = self.lookup(name) else {
            let all = self.current();
            let known: Vec<&str> = all
                .iter()
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

    fn watched(&self) -> Option<PathBuf> {
        self.inner.dir.clone()
    }

    /// Reads the connector files again: an unchanged file keeps its running connector, a
    /// changed or new one gets a new connector that starts only on [`Self::commit`].
    fn stage(&self) -> Result<(), Vec<FileError>> {
        let Some(dir) = &self.inner.dir else { return Ok(()) };
        let defs = file::load_dir(dir)?;
        let live = self.inner.conns.read();
        let mut next = BTreeMap::new();
        for def in defs {
            let c = match live.get(&def.name) {
                Some(c) if c.def.source == def.source && c.def.kind == def.kind => c.clone(),
                _ => ConnRt::new(def, &self.inner.shutdown),
            };
            next.insert(c.def.name.clone(), c);
        }
        *self.inner.staged.lock() = Some(next);
        Ok(())
    }

    /// Swaps the staged connectors in: new ones start, replaced and removed ones stop (the
    /// actions of a replaced one already moved to its successor, with their queues).
    fn commit(&self) {
        let Some(next) = self.inner.staged.lock().take() else {
            return;
        };
        let ingress = self.inner.ingress.lock().clone();
        let mut live = self.inner.conns.write();
        for (name, old) in live.iter() {
            if !next.get(name).is_some_and(|n| Arc::ptr_eq(n, old)) {
                tracing::info!(connector = %name, "Connector stopped (file changed or removed).");
                old.stop.cancel();
            }
        }
        for c in next.values() {
            if !c.started.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(sink) = &ingress {
                    c.def.connector.set_ingress(sink.clone());
                }
                c.spawn(self.inner.handle.as_ref());
            }
        }
        *live = next;
    }

    fn abort(&self) {
        self.inner.staged.lock().take();
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

    fn m(i: i64) -> Arc<Map> {
        let mut m = Map::default();
        m.insert("i".into(), crate::rules::value::Value::Int(i));
        Arc::new(m)
    }

    #[test]
    fn memory_mode_drops_oldest() {
        let mut st = State::new(2, false, 0, 0);
        let now = Instant::now();
        assert_eq!(st.push(now, m(1)), 0);
        assert_eq!(st.push(now, m(2)), 0);
        assert_eq!(st.push(now, m(3)), 1);
        let (start, got) = st.take(10);
        assert_eq!((start, got.len()), (1, 2));
        assert_eq!(got[0].get("i"), Some(&crate::rules::value::Value::Int(2)));
        assert_eq!((st.m.matched, st.m.dropped_queue_full, st.m.inflight), (3, 1, 2));
    }

    #[test]
    fn disk_mode_keeps_queue_len_in_memory_and_the_rest_for_the_writer() {
        let mut st = State::new(2, true, 0, 0);
        let now = Instant::now();
        for i in 0..5 {
            assert_eq!(st.push(now, m(i)), 0);
        }
        assert_eq!((st.mem.len(), st.queuing(), st.unwritten.len()), (2, 5, 5));
        let (start, b) = st.take(10);
        assert_eq!((start, b.len(), st.floor()), (0, 2, 0));
        // Nothing written yet: the next outputs come from `unwritten`.
        assert!(st.refill_from_unwritten());
        assert_eq!(st.mem.len(), 2);
        st.inflight.remove(&0);
        assert_eq!(st.floor(), 2);
        // Written: the rest is read back from the log.
        st.unwritten.clear();
        st.written = 5;
        let (_, b) = st.take(10);
        assert_eq!(b.len(), 2);
        assert!(!st.refill_from_unwritten());
        // The log drops its oldest segment: what was queued below the new floor is dropped.
        assert_eq!(st.drop_below(5), 1);
        assert_eq!((st.queuing(), st.m.dropped_queue_full), (0, 1));
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
                source: 0,
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

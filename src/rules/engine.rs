//! The running rule engine: the active rule set, the dispatcher that evaluates it over the
//! broker's events, hot reload, and the per-rule metrics.
//!
//! - **Index.** A [`RuleSet`] indexes rules by their `FROM`: topic filters in a
//!   subscription tree (the broker's [`SubTree`]), events by kind. A message pays only for
//!   the rules whose filters match its topic, however many rules there are, and its event
//!   columns and decoded payload are built once, only when some rule matched.
//! - **Dispatchers.** One task per core reads its shard of the broker's bounded event channels
//!   (a client's events always go to the same shard, so they stay in order) and evaluates each
//!   event against the rule set current at that moment. The broker never waits for it (see
//!   [`crate::mqtt::events`]); outputs go to the actions' bounded queues
//!   ([`super::actions`]).
//! - **Hot reload.** [`RuleEngine::reload`] loads and compiles every rule file; on any error
//!   the previous set keeps running and the error is kept for `/metrics` and the REST API.
//!   On success the new set is handed to the dispatcher, which swaps it between two events:
//!   every event is evaluated by exactly one rule set, so none is lost or evaluated twice.
//!   The old set's action queues drain before their workers stop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use smallvec::SmallVec;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::actions::{self, ActionEnv, ActionInput, ActionQueue, ConnectorCatalog, NoConnectors};
use super::compile::{CompileOptions, Source};
use super::eval::EvalInput;
use super::events::{ColumnSet, EventContext, EventKind};
use super::file::{self, RuleDef};
use super::host_fns::{HostEnv, KvStore};
use super::rhai_fns::ScriptFunctions;
use super::stats::{self, RuleMetrics};
use super::value::{Map, Value};
use crate::config::walk::FileError;
use crate::metrics::Counter;
use crate::mqtt::broker::Broker;
use crate::mqtt::events::{BrokerEvent, EventMask};
use crate::mqtt::message::now_ms;
use crate::mqtt::trie::{Match, SubTree};

/// Settings of the engine (`rule_engine.*` and `node.name`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub node: String,
    pub rules_dir: PathBuf,
    pub functions_dir: PathBuf,
    pub reload_interval: Duration,
    pub getenv_prefix: String,
    pub action_queue_len: usize,
    pub max_republish_depth: u8,
}

/// The broker event bits a rule on `kind` needs.
pub fn mask_of(kind: EventKind) -> EventMask {
    match kind {
        EventKind::MessagePublish => EventMask::PUBLISH,
        EventKind::MessageDelivered => EventMask::DELIVERED,
        EventKind::MessageAcked => EventMask::ACKED,
        EventKind::MessageDropped => EventMask::MESSAGE_DROPPED,
        EventKind::DeliveryDropped => EventMask::DELIVERY_DROPPED,
        EventKind::ClientConnected => EventMask::CONNECTED,
        EventKind::ClientDisconnected => EventMask::DISCONNECTED,
        EventKind::ClientConnack => EventMask::CONNACK,
        EventKind::ClientCheckAuthzComplete => EventMask::AUTHZ,
        EventKind::ClientCheckAuthnComplete => EventMask::AUTHN,
        EventKind::SessionSubscribed => EventMask::SUBSCRIBED,
        EventKind::SessionUnsubscribed => EventMask::UNSUBSCRIBED,
        _ => EventMask::NONE,
    }
}

fn kind_of(ev: &BrokerEvent) -> Option<EventKind> {
    Some(match ev {
        BrokerEvent::Publish(_) => EventKind::MessagePublish,
        BrokerEvent::ClientConnected(_) => EventKind::ClientConnected,
        BrokerEvent::ClientDisconnected { .. } => EventKind::ClientDisconnected,
        BrokerEvent::ConnAck { .. } => EventKind::ClientConnack,
        BrokerEvent::Subscribed { .. } => EventKind::SessionSubscribed,
        BrokerEvent::Unsubscribed { .. } => EventKind::SessionUnsubscribed,
        BrokerEvent::Delivered { .. } => EventKind::MessageDelivered,
        BrokerEvent::Acked { .. } => EventKind::MessageAcked,
        BrokerEvent::MessageDropped { .. } => EventKind::MessageDropped,
        BrokerEvent::DeliveryDropped { .. } => EventKind::DeliveryDropped,
        BrokerEvent::AuthzComplete { .. } => EventKind::ClientCheckAuthzComplete,
        BrokerEvent::AuthnComplete { .. } => EventKind::ClientCheckAuthnComplete,
        _ => return None,
    })
}

/// One enabled rule with its metrics and its actions' queues.
struct Active {
    def: Arc<RuleDef>,
    metrics: Arc<RuleMetrics>,
    actions: Vec<ActionQueue>,
}

/// An immutable, indexed set of enabled rules.
pub struct RuleSet {
    rules: Vec<Active>,
    topics: SubTree<u32>,
    events: HashMap<EventKind, Vec<u32>>,
    /// `$bridges/mqtt:<name>` sources by bridge name.
    bridges: HashMap<Arc<str>, Vec<u32>>,
    mask: EventMask,
    pub generation: u64,
}

impl RuleSet {
    fn empty() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            topics: SubTree::default(),
            events: HashMap::new(),
            bridges: HashMap::new(),
            mask: EventMask::NONE,
            generation: 0,
        }
    }

    /// The broker events this set needs.
    pub fn mask(&self) -> EventMask {
        self.mask
    }

    /// Whether some rule's FROM matches messages on `topic`.
    pub fn reads_topic(&self, topic: &str) -> bool {
        let mut any = false;
        self.topics.for_each_match(topic, |found| {
            if let Match::Normal(..) = found {
                any = true;
            }
        });
        any
    }

    /// Evaluates `ev` against the rules whose FROM selects it.
    pub fn handle(&self, ev: &BrokerEvent, node: &str, max_depth: u8) {
        let mut hits: SmallVec<[u32; 8]> = SmallVec::new();
        let (depth, by) = match ev {
            BrokerEvent::Publish(m) => {
                self.topics.for_each_match(&m.topic, |found| {
                    if let Match::Normal(_, idx) = found {
                        hits.push(*idx);
                    }
                });
                (m.rule_depth, m.republished_by.as_deref())
            }
            other => {
                let Some(list) = kind_of(other).and_then(|k| self.events.get(&k)) else {
                    return;
                };
                hits.extend_from_slice(list);
                (0, None)
            }
        };
        if hits.is_empty() {
            return;
        }
        if hits.len() > 1 {
            hits.sort_unstable();
            hits.dedup();
        }
        let want = hits.iter().fold(ColumnSet::NONE, |acc, i| {
            acc.union(
                self.rules
                    .get(*i as usize)
                    .map_or(ColumnSet::ALL, |r| r.def.rule.columns()),
            )
        });
        let Some(input) = EvalInput::from_broker_event_with(ev, node, want) else {
            return;
        };
        for idx in hits {
            let Some(rule) = self.rules.get(idx as usize) else {
                continue;
            };
            if depth >= max_depth || by == Some(&*rule.def.id) {
                rule.metrics.skipped_loop.inc();
                continue;
            }
            evaluate(rule, &input, depth);
        }
    }

    /// Whether some rule reads `$bridges/mqtt:<name>`.
    pub fn reads_bridge(&self, name: &str) -> bool {
        self.bridges.contains_key(name)
    }

    /// Evaluates a message received by MQTT bridge `name` against the rules whose FROM is
    /// `$bridges/mqtt:<name>`. `columns` are the bridge columns; `event` and `node` are set here.
    pub fn handle_bridge(&self, name: &str, mut columns: Map, node: &str) {
        let Some(list) = self.bridges.get(name) else { return };
        columns.insert(Arc::from("event"), Value::str(format!("$bridges/mqtt:{name}")));
        columns.insert(Arc::from("node"), Value::str(node));
        let input = EvalInput::new(EventContext {
            kind: EventKind::BridgeMqtt,
            columns,
        });
        for idx in list {
            if let Some(rule) = self.rules.get(*idx as usize) {
                evaluate(rule, &input, 0);
            }
        }
    }
}

fn evaluate(rule: &Active, input: &EvalInput, depth: u8) {
    let m = &rule.metrics;
    m.matched.inc();
    match rule.def.rule.run(input) {
        Ok(outcome) if !outcome.matched => m.failed_no_result.inc(),
        Ok(outcome) => {
            m.passed.inc();
            for out in outcome.outputs {
                let Value::Map(map) = out else { continue };
                for a in &rule.actions {
                    a.submit(ActionInput {
                        rule_id: rule.def.id.clone(),
                        output: map.clone(),
                        depth,
                    });
                }
            }
        }
        Err(e) => {
            m.failed_exception.inc();
            tracing::debug!(rule = %rule.def.id, error = %e, "Rule evaluation failed.");
        }
    }
}

/// Reload status, for `/metrics` and the REST API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadStatus {
    /// Unix ms of the last successful load.
    pub last_success_at: Option<u64>,
    /// Unix ms and text of the last refused load (cleared by the next success).
    pub last_error_at: Option<u64>,
    pub last_error: Option<String>,
    pub successes: u64,
    pub failures: u64,
    /// Rules loaded / enabled in the running set.
    pub rules: usize,
    pub enabled: usize,
    pub generation: u64,
}

/// A rule as listed by the REST API.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    pub def: Arc<RuleDef>,
    pub metrics: Arc<RuleMetrics>,
}

struct Shared {
    cfg: EngineConfig,
    env: ActionEnv,
    /// The loaded connectors (they outlive rule reloads).
    connectors: Arc<dyn ConnectorCatalog>,
    registry: Mutex<HashMap<Arc<str>, Arc<RuleMetrics>>>,
    defs: Mutex<Vec<Arc<RuleDef>>>,
    status: Mutex<ReloadStatus>,
    /// Serialises reloads (watcher, SIGHUP, API).
    reloading: Mutex<()>,
    sets: watch::Sender<Arc<RuleSet>>,
    events_received: Counter,
    /// `kv_store_*`: kept across reloads.
    kv: KvStore,
    /// The files as they were when the last load started: the watcher reloads when they differ.
    seen: Mutex<Fingerprint>,
}

/// Handle on the running engine (cheap to clone).
#[derive(Clone)]
pub struct RuleEngine {
    shared: Arc<Shared>,
}

/// The rule files could not be loaded at startup.
#[derive(Debug, thiserror::Error)]
#[error("rules refused:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct LoadErrors(pub Vec<FileError>);

impl RuleEngine {
    /// Loads the rules (an error refuses to start), then runs a dispatcher over each shard of
    /// `events` and the hot-reload watcher until `shutdown`.
    pub fn start(
        cfg: EngineConfig,
        broker: Arc<Broker>,
        events: Vec<mpsc::Receiver<BrokerEvent>>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<RuleEngine, LoadErrors> {
        Self::start_with(cfg, Arc::new(NoConnectors), broker, events, shutdown, tracker)
    }

    /// [`RuleEngine::start`] with the loaded connectors, which rule actions may name.
    pub fn start_with(
        cfg: EngineConfig,
        connectors: Arc<dyn ConnectorCatalog>,
        broker: Arc<Broker>,
        events: Vec<mpsc::Receiver<BrokerEvent>>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<RuleEngine, LoadErrors> {
        let (sets, rx) = watch::channel(Arc::new(RuleSet::empty()));
        let engine = RuleEngine {
            shared: Arc::new(Shared {
                env: ActionEnv {
                    broker: broker.clone(),
                    rules: Some(rx.clone()),
                },
                connectors,
                cfg,
                registry: Mutex::new(HashMap::new()),
                defs: Mutex::new(Vec::new()),
                status: Mutex::new(ReloadStatus::default()),
                reloading: Mutex::new(()),
                sets,
                events_received: Counter::default(),
                kv: KvStore::default(),
                seen: Mutex::new(Vec::new()),
            }),
        };
        engine.reload().map_err(LoadErrors)?;
        broker.set_event_mask(rx.borrow().mask());
        // One dispatcher per event shard: each evaluates its own events in order.
        for shard in events {
            tracker.spawn(dispatch(
                engine.clone(),
                broker.clone(),
                shard,
                rx.clone(),
                shutdown.clone(),
            ));
        }
        tracker.spawn(watch_files(engine.clone(), shutdown));
        Ok(engine)
    }

    /// Loads every rule file and, if all are good, swaps the new set in. On error the
    /// running set stays and the errors are kept in the [`ReloadStatus`].
    pub fn reload(&self) -> Result<usize, Vec<FileError>> {
        let s = &self.shared;
        let _one_at_a_time = s.reloading.lock();
        *s.seen.lock() = self.fingerprint();
        // Connector files first: rules are parsed against the connectors they name.
        let result = s.connectors.stage().and_then(|()| self.build());
        match &result {
            Ok(_) => s.connectors.commit(),
            Err(_) => s.connectors.abort(),
        }
        let mut st = s.status.lock();
        match result {
            Ok((set, defs)) => {
                st.successes += 1;
                st.last_success_at = Some(now_ms());
                st.last_error = None;
                st.last_error_at = None;
                st.rules = defs.len();
                st.enabled = set.rules.len();
                st.generation = set.generation;
                let n = defs.len();
                {
                    // Metrics of removed rules go; those of kept ids carry on.
                    let mut reg = s.registry.lock();
                    reg.retain(|id, _| defs.iter().any(|d| &d.id == id));
                }
                let live: Vec<(Arc<str>, usize)> = set
                    .rules
                    .iter()
                    .flat_map(|r| (0..r.actions.len()).map(|i| (r.def.id.clone(), i)))
                    .collect();
                s.connectors.retain_actions(&live);
                *s.defs.lock() = defs;
                // Raise the event mask before the swap (union), the dispatcher narrows it after.
                let old = s.sets.borrow().mask();
                s.env.broker.set_event_mask(old | set.mask());
                s.sets.send_replace(Arc::new(set));
                tracing::info!(rules = n, generation = st.generation, "Rules loaded.");
                Ok(n)
            }
            Err(errors) => {
                st.failures += 1;
                st.last_error_at = Some(now_ms());
                let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
                if st.successes == 0 {
                    tracing::error!("Rule files refused:\n{text}");
                } else {
                    tracing::error!("Rule files refused; the previous rules keep running:\n{text}");
                }
                st.last_error = Some(text);
                Err(errors)
            }
        }
    }

    fn build(&self) -> Result<(RuleSet, Vec<Arc<RuleDef>>), Vec<FileError>> {
        let s = &self.shared;
        let opts = self.compile_options()?;
        let defs: Vec<Arc<RuleDef>> = file::load_dir_with(&s.cfg.rules_dir, &opts, &*s.connectors)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let mut set = RuleSet::empty();
        set.generation = s.status.lock().generation + 1;
        let mut reg = s.registry.lock();
        for def in defs.iter().filter(|d| d.enabled) {
            let idx = set.rules.len() as u32;
            let metrics = reg.entry(def.id.clone()).or_default().clone();
            for src in def.rule.sources() {
                match src {
                    Source::Topic(f) => {
                        set.topics.insert(f, def.id.clone(), idx);
                        set.mask |= EventMask::PUBLISH;
                    }
                    Source::Event(k) => {
                        let list = set.events.entry(*k).or_default();
                        if !list.contains(&idx) {
                            list.push(idx);
                        }
                        set.mask |= mask_of(*k);
                    }
                    // Fed by the MQTT connector's ingress ([`RuleEngine::inject_bridge`]).
                    Source::Bridge(name) => {
                        let list = set.bridges.entry(Arc::from(name.as_str())).or_default();
                        if !list.contains(&idx) {
                            list.push(idx);
                        }
                    }
                }
            }
            let actions = def
                .actions
                .iter()
                .enumerate()
                .map(|(i, a)| actions::start(a.clone(), &def.id, i, &s.env, metrics.clone(), s.cfg.action_queue_len))
                .collect();
            set.rules.push(Active {
                def: def.clone(),
                metrics,
                actions,
            });
        }
        Ok((set, defs))
    }

    /// The built-in host functions (jq, kv_store, getenv) and the Rhai functions of
    /// `functions_dir`, loaded anew (a bad script refuses the reload like a bad rule).
    pub fn compile_options(&self) -> Result<CompileOptions, Vec<FileError>> {
        let s = &self.shared;
        let scripts = ScriptFunctions::load(&s.cfg.functions_dir).map_err(|e| {
            vec![FileError {
                file: e.file.clone(),
                line: e.line,
                col: e.col,
                message: e.message.clone(),
                snippet: None,
            }]
        })?;
        let env = HostEnv {
            kv: s.kv.clone(),
            getenv_prefix: s.cfg.getenv_prefix.clone(),
            scripts: (!scripts.is_empty()).then(|| Arc::new(scripts)),
            ..HostEnv::default()
        };
        Ok(env.compile_options())
    }

    /// Every loaded rule (enabled or not) with its metrics.
    pub fn rules(&self) -> Vec<RuleInfo> {
        let reg = self.shared.registry.lock();
        self.shared
            .defs
            .lock()
            .iter()
            .map(|d| RuleInfo {
                def: d.clone(),
                metrics: reg.get(&d.id).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Feeds a message received by MQTT bridge `name` to the rules reading
    /// `$bridges/mqtt:<name>` (evaluated on the caller's task against the current set; the
    /// actions' queues never wait). `columns`: the bridge columns (see
    /// [`EventKind::BridgeMqtt`]); `event` and `node` are filled in.
    pub fn inject_bridge(&self, name: &str, columns: Map) {
        let set = self.shared.sets.borrow().clone();
        set.handle_bridge(name, columns, &self.shared.cfg.node);
    }

    pub fn status(&self) -> ReloadStatus {
        self.shared.status.lock().clone()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.cfg
    }

    /// Appends the engine's and the rules' Prometheus samples.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        let st = self.status();
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(
            out,
            "junction_rules_loaded",
            "Rules in the running set.",
            st.rules as u64,
        );
        gauge(
            out,
            "junction_rules_enabled",
            "Enabled rules in the running set.",
            st.enabled as u64,
        );
        counter(
            out,
            "junction_rules_reload_success_total",
            "Rule-file loads that succeeded.",
            st.successes,
        );
        counter(
            out,
            "junction_rules_reload_failure_total",
            "Rule-file loads refused.",
            st.failures,
        );
        gauge(
            out,
            "junction_rules_reload_last_success_timestamp_ms",
            "Unix ms of the last successful rule load.",
            st.last_success_at.unwrap_or(0),
        );
        gauge(
            out,
            "junction_rules_reload_last_error",
            "1 when the last rule-file change was refused (the previous rules run).",
            u64::from(st.last_error.is_some()),
        );
        counter(
            out,
            "junction_rules_events_received_total",
            "Broker events read by the rule dispatcher.",
            self.shared.events_received.get(),
        );
        let infos = self.rules();
        let pairs: Vec<(&str, &RuleMetrics)> = infos.iter().map(|i| (&*i.def.id, &*i.metrics)).collect();
        stats::render_prometheus(&pairs, out);
    }
}

async fn dispatch(
    engine: RuleEngine,
    broker: Arc<Broker>,
    mut events: mpsc::Receiver<BrokerEvent>,
    mut sets: watch::Receiver<Arc<RuleSet>>,
    shutdown: CancellationToken,
) {
    let node = engine.shared.cfg.node.clone();
    let max_depth = engine.shared.cfg.max_republish_depth;
    let mut current = sets.borrow_and_update().clone();
    let mut buf = Vec::with_capacity(256);
    loop {
        tokio::select! {
            biased;
            changed = sets.changed() => {
                if changed.is_err() {
                    break;
                }
                current = sets.borrow_and_update().clone();
                broker.set_event_mask(current.mask());
            }
            n = events.recv_many(&mut buf, 256) => {
                if n == 0 {
                    break;
                }
                engine.shared.events_received.add(n as u64);
                for ev in buf.drain(..) {
                    current.handle(&ev, &node, max_depth);
                }
            }
            () = shutdown.cancelled() => {
                // Evaluate what is already queued, then stop.
                while let Ok(ev) = events.try_recv() {
                    current.handle(&ev, &node, max_depth);
                }
                break;
            }
        }
    }
}

type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

impl RuleEngine {
    /// Modification state of the watched files (`*.toml` rules, `*.rhai` functions).
    fn fingerprint(&self) -> Fingerprint {
        let c = &self.shared.cfg;
        let connectors = self.shared.connectors.watched();
        let mut dirs = vec![(c.rules_dir.as_path(), "toml"), (c.functions_dir.as_path(), "rhai")];
        if let Some(d) = &connectors {
            dirs.push((d.as_path(), "toml"));
        }
        fingerprint(&dirs)
    }
}

fn fingerprint(dirs: &[(&Path, &str)]) -> Fingerprint {
    let mut out = Vec::new();
    for (dir, ext) in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == *ext) {
                let md = e.metadata().ok();
                out.push((
                    p,
                    md.as_ref().map_or(0, |m| m.len()),
                    md.and_then(|m| m.modified().ok()),
                ));
            }
        }
    }
    out.sort();
    out
}

async fn watch_files(engine: RuleEngine, shutdown: CancellationToken) {
    let cfg = engine.shared.cfg.clone();
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let interval = if cfg.reload_interval.is_zero() {
        Duration::from_secs(3600 * 24 * 365)
    } else {
        cfg.reload_interval
    };
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => false,
            () = hangup => true,
        };
        if !forced && engine.fingerprint() == *engine.shared.seen.lock() {
            continue;
        }
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.reload()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mqtt::codec::QoS;
    use crate::mqtt::message::Message;
    use crate::rules::compile::compile_sql;

    /// Building only the columns a rule reads gives the same outputs as building all.
    #[test]
    fn projected_inputs_give_the_same_outputs() {
        let mut m = Message::new(
            "sensors/s1/temp".into(),
            bytes::Bytes::from_static(br##"{"temp": 35, "list": [{"v": 1}, {"v": 2}]}"##),
            QoS::AtLeastOnce,
            true,
            Some(Arc::from("s1")),
        );
        m.user_properties.push(("k".into(), "v".into()));
        let ev = BrokerEvent::Publish(Arc::new(m));
        for sql in [
            r##"SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30"##,
            r##"SELECT * FROM "#""##,
            r##"SELECT topic(2) AS dev, qos(), flags, flag('retain') AS r, msgid() AS i FROM "#""##,
            r##"SELECT pub_props.'User-Property'.k AS k, peerhost, node, timestamp > 0 AS ts FROM "#""##,
            r##"FOREACH payload.list AS e DO e.v AS v, clientid INCASE e.v > 1 FROM "#""##,
            r##"SELECT json_decode(payload) AS p, upper(clientid) AS u, username FROM "#" WHERE topic =~ 'sensors/#'"##,
            r##"SELECT CASE WHEN qos = 1 THEN id ELSE publish_received_at END AS x FROM "#""##,
        ] {
            let rule = compile_sql(sql).unwrap();
            let full = EvalInput::from_broker_event(&ev, "n@h").unwrap();
            let some = EvalInput::from_broker_event_with(&ev, "n@h", rule.columns()).unwrap();
            let (a, b) = (rule.eval(&full).unwrap(), rule.eval(&some).unwrap());
            assert!(!a.is_empty(), "{sql}");
            if sql.contains("*") {
                assert_eq!(a, b, "{sql}");
            } else {
                // `timestamp` differs by the build time only.
                assert_eq!(format!("{a:?}").len(), format!("{b:?}").len(), "{sql}");
                assert!(
                    some.columns().len() < full.columns().len(),
                    "{sql}: {:?}",
                    some.columns().keys()
                );
            }
        }
        let rule = compile_sql(r##"SELECT clientid FROM "#""##).unwrap();
        let some = EvalInput::from_broker_event_with(&ev, "n@h", rule.columns()).unwrap();
        assert_eq!(
            some.columns().keys().map(|k| &**k).collect::<Vec<_>>(),
            ["event", "clientid"]
        );
    }
}

//! Wires the broker, its listeners, the store and the HTTP API from a
//! [`Config`], and owns the shutdown order. The only module that knows all the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, ListenerKind};
use crate::connectors::ConnectorSet;
use crate::metrics::Metrics;
use crate::mqtt::broker::{Broker, BrokerConfig, SharedStrategy};
use crate::mqtt::codec::{reason, QoS};
use crate::mqtt::connection::ConnSettings;
use crate::mqtt::events::DisconnectReason;
use crate::mqtt::events::{BrokerEvent, EventSink};
use crate::mqtt::listener::{self, ListenerError, ListenerSpec, Transport};
use crate::mqtt::session::Control;
use crate::mqtt::topic::TopicLimits;
use crate::rules::engine::{EngineConfig, RuleEngine};
use crate::store::{Store, StoreError, SyncMode};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rules(#[from] crate::rules::engine::LoadErrors),
    #[error("connectors refused:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Connectors(Vec<crate::config::walk::FileError>),
    #[error(transparent)]
    SubscribeByBroker(#[from] crate::connectors::subscribe::SubscribeByBrokerError),
    #[error("cannot bind the HTTP listener to {addr}: {source}")]
    Http { addr: SocketAddr, source: std::io::Error },
}

/// A bound listener's address, as printed at startup (`LISTENING <kind> <name> <addr>`).
#[derive(Debug, Clone)]
pub struct BoundAddr {
    pub kind: &'static str,
    pub name: String,
    pub addr: SocketAddr,
}

/// A started broker.
pub struct Running {
    pub broker: Arc<Broker>,
    /// The rule engine, unless `rule_engine.enable = false` or events go elsewhere.
    pub rules: Option<RuleEngine>,
    /// The connectors (`connectors.dir`), when the rule engine runs.
    pub connectors: Option<ConnectorSet>,
    pub addrs: Vec<BoundAddr>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// What connectors receive goes to the rule engine (`$bridges/mqtt:<name>`) and the broker.
struct Ingress {
    engine: RuleEngine,
    broker: Arc<Broker>,
}

impl crate::connectors::IngressSink for Ingress {
    fn bridge_message(&self, bridge: &str, columns: crate::rules::value::Map) {
        self.engine.inject_bridge(bridge, columns);
    }

    fn publish_local(&self, msg: crate::mqtt::message::Message) {
        self.broker.publish(msg);
    }
}

/// The broker settings `mqtt.*` stands for.
pub fn broker_config(cfg: &Config) -> BrokerConfig {
    let m = &cfg.mqtt;
    let secs = |d: Duration| d.as_secs().min(u64::from(u32::MAX)) as u32;
    BrokerConfig {
        node_name: cfg.node.name.clone(),
        max_packet_size: m.max_packet_size.min(268_435_460) as usize,
        max_clientid_len: usize::from(m.max_clientid_len),
        topic_limits: TopicLimits {
            max_levels: usize::from(m.max_topic_levels),
            max_length: usize::from(m.max_topic_length),
        },
        max_qos_allowed: QoS::from_u8(m.max_qos_allowed.min(2)).unwrap_or(QoS::ExactlyOnce),
        max_topic_alias: m.max_topic_alias,
        retain_available: m.retain_available,
        wildcard_subscription: m.wildcard_subscription,
        shared_subscription: m.shared_subscription,
        shared_strategy: match m.shared_subscription_strategy {
            config::SharedSubscriptionStrategy::Random => SharedStrategy::Random,
            config::SharedSubscriptionStrategy::RoundRobin => SharedStrategy::RoundRobin,
            config::SharedSubscriptionStrategy::Sticky => SharedStrategy::Sticky,
            config::SharedSubscriptionStrategy::HashClientid => SharedStrategy::HashClientId,
            config::SharedSubscriptionStrategy::HashTopic => SharedStrategy::HashTopic,
        },
        ignore_loop_deliver: m.ignore_loop_deliver,
        keepalive_multiplier: m.keepalive_multiplier,
        server_keepalive: m.server_keepalive,
        min_keepalive: m.min_keepalive,
        max_keepalive: m.max_keepalive,
        max_inflight: m.max_inflight.max(1),
        max_awaiting_rel: m.max_awaiting_rel as usize,
        retry_interval: m.retry_interval,
        await_rel_timeout: m.await_rel_timeout,
        max_session_expiry: secs(m.session_expiry_interval),
        max_mqueue_len: m.max_mqueue_len.unwrap_or(usize::MAX),
        mqueue_store_qos0: m.mqueue_store_qos0,
        max_subscriptions: m.max_subscriptions.unwrap_or(usize::MAX),
        upgrade_qos: m.upgrade_qos,
        idle_timeout: m.idle_timeout,
        message_expiry_interval: m.message_expiry_interval.map(secs),
        response_information: m.response_information.clone(),
        auto_subscribe: m.auto_subscribe.clone(),
    }
}

/// Start everything the config describes. Listeners are bound before this returns.
pub async fn start(cfg: &Config) -> Result<Running, AppError> {
    start_inner(cfg, None).await
}

/// [`start`], handing every [`BrokerEvent`] to `events` (the rule engine's
/// input). The broker never waits on this channel: when it is full, events
/// are counted in `junction_events_dropped_total` and dropped. The rule engine does not run.
pub async fn start_with_events(cfg: &Config, events: mpsc::Sender<BrokerEvent>) -> Result<Running, AppError> {
    start_inner(cfg, Some(events)).await
}

/// The rule engine's settings from the config.
pub fn engine_config(cfg: &Config) -> EngineConfig {
    let r = &cfg.rule_engine;
    EngineConfig {
        node: cfg.node.name.clone(),
        rules_dir: r.rules_dir.clone(),
        functions_dir: r.functions_dir.clone(),
        reload_interval: r.reload_interval,
        getenv_prefix: r.getenv_prefix.clone(),
        action_queue_len: r.action_queue_len,
        max_republish_depth: r.max_republish_depth,
    }
}

async fn start_inner(cfg: &Config, external: Option<mpsc::Sender<BrokerEvent>>) -> Result<Running, AppError> {
    let (events, engine_rx) = match external {
        Some(tx) => (Some(EventSink::new(vec![tx])), None),
        None if cfg.rule_engine.enable => {
            // One dispatcher per core, each with its share of the event queue.
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
            let per = (cfg.rule_engine.events_queue_len / n).max(1);
            let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel(per)).unzip();
            (Some(EventSink::new(txs)), Some(rxs))
        }
        None => (None, None),
    };
    let metrics = Arc::new(Metrics::default());
    let (store, loaded) = if cfg.durable_storage.enable {
        let mode = match cfg.durable_storage.sync_mode {
            config::SyncMode::EveryWrite => SyncMode::EveryWrite,
            config::SyncMode::Interval => SyncMode::Interval(cfg.durable_storage.sync_interval),
        };
        let (s, l) = Store::open(&cfg.node.data_dir, mode, metrics.clone())?;
        (Some(s), Some(l))
    } else {
        (None, None)
    };
    let broker = Broker::new(broker_config(cfg), metrics, store, events);
    if let Some(l) = loaded {
        broker.restore(l);
    }
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    match start_services(cfg, &broker, engine_rx, &shutdown, &tracker).await {
        Ok((rules, connectors, addrs)) => Ok(Running {
            broker,
            rules,
            connectors,
            addrs,
            shutdown,
            tracker,
        }),
        Err(e) => {
            // Stop what did start and release the store, so that the data folder can be
            // opened again (by a retry in this process, or by the next run).
            shutdown.cancel();
            tracker.close();
            let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
            let b = broker.clone();
            let _ = tokio::task::spawn_blocking(move || b.close_store()).await;
            Err(e)
        }
    }
}

/// Everything [`start_inner`] starts once the broker exists: connectors, rule engine,
/// listeners, HTTP, `$SYS`.
async fn start_services(
    cfg: &Config,
    broker: &Arc<Broker>,
    engine_rx: Option<Vec<mpsc::Receiver<BrokerEvent>>>,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(Option<RuleEngine>, Option<ConnectorSet>, Vec<BoundAddr>), AppError> {
    // Connectors serve the rule engine's actions and subscription by broker.
    let by_broker = &cfg.mqtt.subscribe_by_broker;
    let connectors = if engine_rx.is_some() || !by_broker.is_empty() {
        // Connector actions keep their disk buffers next to the store.
        let buffers = cfg.durable_storage.enable.then(|| crate::connectors::BufferOptions {
            dir: cfg.node.data_dir.join("buffers"),
            sync_interval: match cfg.durable_storage.sync_mode {
                config::SyncMode::EveryWrite => Duration::from_millis(10),
                config::SyncMode::Interval => cfg.durable_storage.sync_interval,
            },
        });
        Some(ConnectorSet::load(&cfg.connectors.dir, buffers, shutdown.clone()).map_err(AppError::Connectors)?)
    } else {
        None
    };
    if let Some(set) = connectors.as_ref().filter(|_| !by_broker.is_empty()) {
        let sources = crate::connectors::subscribe::build(by_broker, set)?;
        broker.set_subscription_sources(sources);
    }
    let rules = match (engine_rx, &connectors) {
        (Some(rx), Some(set)) => {
            let started = RuleEngine::start_with(
                engine_config(cfg),
                Arc::new(set.clone()),
                broker.clone(),
                rx,
                shutdown.clone(),
                tracker,
            );
            // A refused start stops the connectors it started.
            let engine = started.inspect_err(|_| shutdown.cancel())?;
            set.set_ingress(Arc::new(Ingress {
                engine: engine.clone(),
                broker: broker.clone(),
            }));
            Some(engine)
        }
        _ => None,
    };
    let mut addrs = Vec::new();
    for l in cfg.listeners.active() {
        let transport = match l.kind {
            ListenerKind::Tcp => Transport::Tcp,
            ListenerKind::Ws => Transport::Ws {
                path: l
                    .websocket
                    .map(|w| w.mqtt_path.clone())
                    .unwrap_or_else(|| "/mqtt".into()),
            },
            ListenerKind::Ssl | ListenerKind::Wss => {
                let Some(ssl) = l.ssl_options else { continue };
                let (Some(cert), Some(key)) = (&ssl.certfile, &ssl.keyfile) else {
                    continue;
                };
                let acceptor = listener::tls_acceptor(
                    cert,
                    key,
                    ssl.cacertfile.as_deref(),
                    ssl.verify == config::SslVerify::VerifyPeer,
                    ssl.fail_if_no_peer_cert,
                )?;
                if l.kind == ListenerKind::Ssl {
                    Transport::Ssl { acceptor }
                } else {
                    Transport::Wss {
                        acceptor,
                        path: l
                            .websocket
                            .map(|w| w.mqtt_path.clone())
                            .unwrap_or_else(|| "/mqtt".into()),
                    }
                }
            }
        };
        let spec = ListenerSpec {
            name: l.name.to_owned(),
            bind: l.bind,
            transport,
            max_connections: l.max_connections,
            settings: ConnSettings {
                listener: l.id(),
                messages_rate: l.messages_rate.map(|r| r.per_second()),
                bytes_rate: l.bytes_rate.map(|r| r.per_second()),
            },
        };
        let bound = listener::bind(spec).await?;
        addrs.push(BoundAddr {
            kind: l.kind.as_str(),
            name: l.name.to_owned(),
            addr: bound.local_addr,
        });
        listener::spawn(broker.clone(), bound, shutdown.clone(), tracker.clone());
    }
    let http = &cfg.dashboard.listeners.http;
    if http.enable {
        let l = TcpListener::bind(http.bind).await.map_err(|source| AppError::Http {
            addr: http.bind,
            source,
        })?;
        let addr = l.local_addr().map_err(|source| AppError::Http {
            addr: http.bind,
            source,
        })?;
        addrs.push(BoundAddr {
            kind: "http",
            name: "dashboard".into(),
            addr,
        });
        tracker.spawn(crate::api::serve(
            l,
            broker.clone(),
            rules.clone(),
            connectors.clone(),
            shutdown.clone(),
        ));
    }
    let sys = &cfg.sys_topics;
    if sys.sys_msg_interval.is_some() || sys.sys_heartbeat_interval.is_some() {
        tracker.spawn(crate::mqtt::sys::run(
            broker.clone(),
            sys.sys_msg_interval,
            sys.sys_heartbeat_interval,
            shutdown.clone(),
        ));
    }
    Ok((rules, connectors, addrs))
}

impl Running {
    /// Address of the first listener of `kind` (tests use it).
    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|a| a.kind == kind).map(|a| a.addr)
    }

    /// Graceful stop: stop accepting, send v5 clients DISCONNECT 0x8B, wait for
    /// connections to close (at most 5 s), then commit the store.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for conn in self.broker.connections() {
            conn.send(Control::Disconnect {
                reason_code: reason::SERVER_SHUTTING_DOWN,
                reason: DisconnectReason::ServerShutdown,
            });
        }
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Some connections did not close within 5 s.");
        }
        let broker = self.broker.clone();
        let connectors = self.connectors.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(c) = connectors {
                c.close();
            }
            broker.close_store()
        })
        .await;
    }
}

/// Run until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let running = start(&cfg).await?;
    // Handlers are installed before READY: a signal right after it must stop us gracefully.
    let signals = Signals::install();
    for a in &running.addrs {
        println!("LISTENING {} {} {}", a.kind, a.name, a.addr);
        tracing::info!(kind = a.kind, name = %a.name, addr = %a.addr, "Listening.");
    }
    println!("READY");
    signals.wait().await;
    tracing::info!("Shutting down.");
    running.stop().await;
    Ok(())
}

/// SIGINT and SIGTERM, listened for from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let streams = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                (Ok(i), Ok(t)) => Some((i, t)),
                _ => None,
            };
            Signals { streams }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = self.streams {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

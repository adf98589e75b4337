//! The configuration schema: every key, its type and its default.
//!
//! Key names follow EMQX 5 where EMQX has the setting. Every struct has
//! `#[serde(default, deny_unknown_fields)]`: a missing key keeps its default,
//! an unknown key is an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::units::{self, Rate};

fn any_ip(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

/// Upper bound for counts that may also be `"infinity"`.
const MAX_COUNT: i64 = u32::MAX as i64;

/// The top-level keys (sections) of [`Config`].
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "node",
    "log",
    "listeners",
    "dashboard",
    "mqtt",
    "sys_topics",
    "durable_storage",
    "rule_engine",
    "connectors",
];

/// The whole broker configuration. `Config::default()` is a working broker.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `node.*`: identity and storage location of this broker.
    pub node: NodeConfig,
    /// `log.*`: logging.
    pub log: LogConfig,
    /// `listeners.<type>.<name>.*`: MQTT listeners.
    pub listeners: ListenersConfig,
    /// `dashboard.*`: the HTTP listener for the REST API and `/metrics`.
    pub dashboard: DashboardConfig,
    /// `mqtt.*`: MQTT protocol limits and session behaviour.
    pub mqtt: MqttConfig,
    /// `sys_topics.*`: `$SYS` topic publication.
    pub sys_topics: SysTopicsConfig,
    /// `durable_storage.*`: on-disk storage of sessions and retained messages.
    pub durable_storage: DurableStorageConfig,
    /// `rule_engine.*`: rule files, hot reload and action queues.
    pub rule_engine: RuleEngineConfig,
    /// `connectors.*`: connector files (webhook, ...) that rule actions send to.
    pub connectors: ConnectorsConfig,
}

// ---------------------------------------------------------------------------
// node, log

/// `node.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// `node.name` (default `"junction@127.0.0.1"`): the node name, shown in
    /// `$SYS` topics and the REST API.
    #[serde(deserialize_with = "units::non_empty")]
    pub name: String,
    /// `node.data_dir` (default `"data"`): directory for durable storage,
    /// relative to the working directory unless absolute.
    pub data_dir: PathBuf,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "junction@127.0.0.1".into(),
            data_dir: PathBuf::from("data"),
        }
    }
}

/// `log.*`
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `log.level` (default `"info"`): one of `error`, `warn` (or `warning`),
    /// `info`, `debug`, `trace`.
    pub level: LogLevel,
}

/// Value of `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    #[serde(alias = "warning")]
    Warn,
    /// Normal operational messages.
    #[default]
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name as written in the config, also a valid `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

// ---------------------------------------------------------------------------
// listeners

/// `listeners.*`: one map per listener type, keyed by a free listener name.
///
/// The built-in defaults define a listener named `default` of each type;
/// the file and environment add listeners or change these (a listener's
/// missing keys take the defaults of its type). To turn a default listener
/// off, set e.g. `listeners.ws.default.enable = false`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenersConfig {
    /// `listeners.tcp.<name>`: plain MQTT over TCP.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
    /// `listeners.ssl.<name>`: MQTT over TLS.
    pub ssl: BTreeMap<String, SslListenerConfig>,
    /// `listeners.ws.<name>`: MQTT over WebSocket.
    pub ws: BTreeMap<String, WsListenerConfig>,
    /// `listeners.wss.<name>`: MQTT over WebSocket over TLS.
    pub wss: BTreeMap<String, WssListenerConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        fn one<T: Default>() -> BTreeMap<String, T> {
            BTreeMap::from([("default".to_string(), T::default())])
        }
        ListenersConfig {
            tcp: one(),
            ssl: one(),
            ws: one(),
            wss: one(),
        }
    }
}

/// `listeners.tcp.<name>.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpListenerConfig {
    /// `enable` (default `true`): whether to start this listener.
    pub enable: bool,
    /// `bind` (default `"0.0.0.0:1883"`): address to listen on; a bare port
    /// such as `1883` means `0.0.0.0:<port>`.
    #[serde(deserialize_with = "units::bind")]
    pub bind: SocketAddr,
    /// `max_connections` (default `"infinity"` = `None`): connections accepted
    /// at once on this listener.
    #[serde(deserialize_with = "units::int_or_infinity::<_, usize, 1, MAX_COUNT>")]
    pub max_connections: Option<usize>,
    /// `messages_rate` (default `"infinity"` = `None`): PUBLISH packets
    /// accepted per client, e.g. `"1000/s"`, `"600/m"`, `"100/10s"`.
    #[serde(deserialize_with = "units::message_rate")]
    pub messages_rate: Option<Rate>,
    /// `bytes_rate` (default `"infinity"` = `None`): bytes read per client,
    /// e.g. `"1MB/s"`.
    #[serde(deserialize_with = "units::byte_rate")]
    pub bytes_rate: Option<Rate>,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        TcpListenerConfig {
            enable: true,
            bind: any_ip(1883),
            max_connections: None,
            messages_rate: None,
            bytes_rate: None,
        }
    }
}

/// `listeners.ws.<name>.*`: the TCP keys plus `websocket.*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsListenerConfig {
    /// `enable` (default `true`): whether to start this listener.
    pub enable: bool,
    /// `bind` (default `"0.0.0.0:8083"`): address or bare port.
    #[serde(deserialize_with = "units::bind")]
    pub bind: SocketAddr,
    /// `max_connections` (default `"infinity"` = `None`).
    #[serde(deserialize_with = "units::int_or_infinity::<_, usize, 1, MAX_COUNT>")]
    pub max_connections: Option<usize>,
    /// `messages_rate` (default `"infinity"` = `None`): PUBLISH rate per client.
    #[serde(deserialize_with = "units::message_rate")]
    pub messages_rate: Option<Rate>,
    /// `bytes_rate` (default `"infinity"` = `None`): byte rate per client.
    #[serde(deserialize_with = "units::byte_rate")]
    pub bytes_rate: Option<Rate>,
    /// `websocket.*`: WebSocket options.
    pub websocket: WebsocketOptions,
}

impl Default for WsListenerConfig {
    fn default() -> Self {
        WsListenerConfig {
            enable: true,
            bind: any_ip(8083),
            max_connections: None,
            messages_rate: None,
            bytes_rate: None,
            websocket: WebsocketOptions::default(),
        }
    }
}

/// `listeners.{ws,wss}.<name>.websocket.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsocketOptions {
    /// `websocket.mqtt_path` (default `"/mqtt"`): HTTP path of the WebSocket
    /// endpoint; must start with `/`.
    #[serde(deserialize_with = "units::http_path")]
    pub mqtt_path: String,
}

impl Default for WebsocketOptions {
    fn default() -> Self {
        WebsocketOptions {
            mqtt_path: "/mqtt".into(),
        }
    }
}

/// `listeners.ssl.<name>.*`: the TCP keys plus `ssl_options.*`.
///
/// `enable` defaults to `true`, but the broker starts an ssl (or wss)
/// listener only when both `ssl_options.certfile` and `ssl_options.keyfile`
/// are set (see [`SslOptions::has_certificate`]); so the default `ssl.default`
/// listener stays off until a certificate is configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslListenerConfig {
    /// `enable` (default `true`): whether to start this listener (if it has a certificate).
    pub enable: bool,
    /// `bind` (default `"0.0.0.0:8883"`): address or bare port.
    #[serde(deserialize_with = "units::bind")]
    pub bind: SocketAddr,
    /// `max_connections` (default `"infinity"` = `None`).
    #[serde(deserialize_with = "units::int_or_infinity::<_, usize, 1, MAX_COUNT>")]
    pub max_connections: Option<usize>,
    /// `messages_rate` (default `"infinity"` = `None`): PUBLISH rate per client.
    #[serde(deserialize_with = "units::message_rate")]
    pub messages_rate: Option<Rate>,
    /// `bytes_rate` (default `"infinity"` = `None`): byte rate per client.
    #[serde(deserialize_with = "units::byte_rate")]
    pub bytes_rate: Option<Rate>,
    /// `ssl_options.*`: TLS settings.
    pub ssl_options: SslOptions,
}

impl Default for SslListenerConfig {
    fn default() -> Self {
        SslListenerConfig {
            enable: true,
            bind: any_ip(8883),
            max_connections: None,
            messages_rate: None,
            bytes_rate: None,
            ssl_options: SslOptions::default(),
        }
    }
}

/// `listeners.wss.<name>.*`: the ssl keys plus `websocket.*`.
/// Like ssl listeners, started only when certfile and keyfile are set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WssListenerConfig {
    /// `enable` (default `true`): whether to start this listener (if it has a certificate).
    pub enable: bool,
    /// `bind` (default `"0.0.0.0:8084"`): address or bare port.
    #[serde(deserialize_with = "units::bind")]
    pub bind: SocketAddr,
    /// `max_connections` (default `"infinity"` = `None`).
    #[serde(deserialize_with = "units::int_or_infinity::<_, usize, 1, MAX_COUNT>")]
    pub max_connections: Option<usize>,
    /// `messages_rate` (default `"infinity"` = `None`): PUBLISH rate per client.
    #[serde(deserialize_with = "units::message_rate")]
    pub messages_rate: Option<Rate>,
    /// `bytes_rate` (default `"infinity"` = `None`): byte rate per client.
    #[serde(deserialize_with = "units::byte_rate")]
    pub bytes_rate: Option<Rate>,
    /// `ssl_options.*`: TLS settings.
    pub ssl_options: SslOptions,
    /// `websocket.*`: WebSocket options.
    pub websocket: WebsocketOptions,
}

impl Default for WssListenerConfig {
    fn default() -> Self {
        WssListenerConfig {
            enable: true,
            bind: any_ip(8084),
            max_connections: None,
            messages_rate: None,
            bytes_rate: None,
            ssl_options: SslOptions::default(),
            websocket: WebsocketOptions::default(),
        }
    }
}

/// `listeners.{ssl,wss}.<name>.ssl_options.*`
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslOptions {
    /// `ssl_options.certfile` (default unset): PEM server certificate chain.
    #[serde(deserialize_with = "units::opt_path")]
    pub certfile: Option<PathBuf>,
    /// `ssl_options.keyfile` (default unset): PEM private key of `certfile`.
    #[serde(deserialize_with = "units::opt_path")]
    pub keyfile: Option<PathBuf>,
    /// `ssl_options.cacertfile` (default unset): PEM CA bundle for verifying
    /// client certificates.
    #[serde(deserialize_with = "units::opt_path")]
    pub cacertfile: Option<PathBuf>,
    /// `ssl_options.verify` (default `"verify_none"`): `verify_peer` asks
    /// clients for a certificate and checks it against `cacertfile`.
    pub verify: SslVerify,
    /// `ssl_options.fail_if_no_peer_cert` (default `false`): with
    /// `verify_peer`, refuse clients that send no certificate.
    pub fail_if_no_peer_cert: bool,
}

impl SslOptions {
    /// Both `certfile` and `keyfile` are set: the listener can start.
    pub fn has_certificate(&self) -> bool {
        self.certfile.is_some() && self.keyfile.is_some()
    }
}

/// Value of `ssl_options.verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SslVerify {
    /// Do not request client certificates.
    #[default]
    VerifyNone,
    /// Request and verify client certificates.
    VerifyPeer,
}

/// The type of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerKind {
    /// `listeners.tcp`
    Tcp,
    /// `listeners.ssl`
    Ssl,
    /// `listeners.ws`
    Ws,
    /// `listeners.wss`
    Wss,
}

impl ListenerKind {
    /// `"tcp"`, `"ssl"`, `"ws"` or `"wss"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Ssl => "ssl",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

/// A uniform view of one listener of any type (see [`ListenersConfig::iter`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListenerRef<'a> {
    /// Listener type.
    pub kind: ListenerKind,
    /// Listener name (the `<name>` in `listeners.<type>.<name>`).
    pub name: &'a str,
    /// `enable`
    pub enable: bool,
    /// `bind`
    pub bind: SocketAddr,
    /// `max_connections` (`None` = infinity)
    pub max_connections: Option<usize>,
    /// `messages_rate` (`None` = infinity)
    pub messages_rate: Option<Rate>,
    /// `bytes_rate` (`None` = infinity)
    pub bytes_rate: Option<Rate>,
    /// `ssl_options` for ssl/wss listeners.
    pub ssl_options: Option<&'a SslOptions>,
    /// `websocket` for ws/wss listeners.
    pub websocket: Option<&'a WebsocketOptions>,
}

impl ListenerRef<'_> {
    /// EMQX-style listener id, e.g. `"tcp:default"`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }

    /// Whether the broker should start it: enabled and, for ssl/wss, has a
    /// certificate and key.
    pub fn is_active(&self) -> bool {
        self.enable && self.ssl_options.is_none_or(SslOptions::has_certificate)
    }
}

impl ListenersConfig {
    /// Every listener of every type (tcp, ssl, ws, wss; by name within a type).
    pub fn iter(&self) -> impl Iterator<Item = ListenerRef<'_>> {
        let tcp = self.tcp.iter().map(|(name, l)| ListenerRef {
            kind: ListenerKind::Tcp,
            name,
            enable: l.enable,
            bind: l.bind,
            max_connections: l.max_connections,
            messages_rate: l.messages_rate,
            bytes_rate: l.bytes_rate,
            ssl_options: None,
            websocket: None,
        });
        let ssl = self.ssl.iter().map(|(name, l)| ListenerRef {
            kind: ListenerKind::Ssl,
            name,
            enable: l.enable,
            bind: l.bind,
            max_connections: l.max_connections,
            messages_rate: l.messages_rate,
            bytes_rate: l.bytes_rate,
            ssl_options: Some(&l.ssl_options),
            websocket: None,
        });
        let ws = self.ws.iter().map(|(name, l)| ListenerRef {
            kind: ListenerKind::Ws,
            name,
            enable: l.enable,
            bind: l.bind,
            max_connections: l.max_connections,
            messages_rate: l.messages_rate,
            bytes_rate: l.bytes_rate,
            ssl_options: None,
            websocket: Some(&l.websocket),
        });
        let wss = self.wss.iter().map(|(name, l)| ListenerRef {
            kind: ListenerKind::Wss,
            name,
            enable: l.enable,
            bind: l.bind,
            max_connections: l.max_connections,
            messages_rate: l.messages_rate,
            bytes_rate: l.bytes_rate,
            ssl_options: Some(&l.ssl_options),
            websocket: Some(&l.websocket),
        });
        tcp.chain(ssl).chain(ws).chain(wss)
    }

    /// The listeners the broker should start ([`ListenerRef::is_active`]).
    pub fn active(&self) -> impl Iterator<Item = ListenerRef<'_>> {
        self.iter().filter(ListenerRef::is_active)
    }
}

// ---------------------------------------------------------------------------
// dashboard

/// `dashboard.*`
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// `dashboard.listeners.*`
    pub listeners: DashboardListenersConfig,
}

/// `dashboard.listeners.*`
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardListenersConfig {
    /// `dashboard.listeners.http.*`
    pub http: DashboardHttpListenerConfig,
}

/// `dashboard.listeners.http.*`: serves the REST API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardHttpListenerConfig {
    /// `dashboard.listeners.http.enable` (default `true`).
    pub enable: bool,
    /// `dashboard.listeners.http.bind` (default `"0.0.0.0:18083"`): address or bare port.
    #[serde(deserialize_with = "units::bind")]
    pub bind: SocketAddr,
}

impl Default for DashboardHttpListenerConfig {
    fn default() -> Self {
        DashboardHttpListenerConfig {
            enable: true,
            bind: any_ip(18083),
        }
    }
}

// ---------------------------------------------------------------------------
// mqtt

/// `mqtt.*`: protocol limits and session behaviour (EMQX names).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt.max_packet_size` (default `"1MB"`): largest MQTT packet accepted,
    /// up to `"256MB"`; also sent to v5 clients as Maximum Packet Size.
    #[serde(deserialize_with = "units::size_in::<_, 1, 268_435_456>")]
    pub max_packet_size: u64,
    /// `mqtt.max_clientid_len` (default `65535`, at least 23): longest client id accepted.
    #[serde(deserialize_with = "units::int_in::<_, u16, 23, 65535>")]
    pub max_clientid_len: u16,
    /// `mqtt.max_topic_levels` (default `128`): most `/`-separated levels in a
    /// topic name or filter.
    #[serde(deserialize_with = "units::int_in::<_, u16, 1, 65535>")]
    pub max_topic_levels: u16,
    /// `mqtt.max_topic_length` (default `65535`; Junction's own key): longest
    /// topic name or filter, in bytes.
    #[serde(deserialize_with = "units::int_in::<_, u16, 1, 65535>")]
    pub max_topic_length: u16,
    /// `mqtt.max_qos_allowed` (default `2`): highest QoS granted (0, 1 or 2).
    #[serde(deserialize_with = "units::int_in::<_, u8, 0, 2>")]
    pub max_qos_allowed: u8,
    /// `mqtt.max_topic_alias` (default `65535`): Topic Alias Maximum offered to
    /// v5 clients; 0 disables topic aliases.
    #[serde(deserialize_with = "units::int_in::<_, u16, 0, 65535>")]
    pub max_topic_alias: u16,
    /// `mqtt.retain_available` (default `true`): support retained messages.
    pub retain_available: bool,
    /// `mqtt.wildcard_subscription` (default `true`): allow `+` and `#` in filters.
    pub wildcard_subscription: bool,
    /// `mqtt.shared_subscription` (default `true`): allow `$share/<group>/...`.
    pub shared_subscription: bool,
    /// `mqtt.shared_subscription_strategy` (default `"round_robin"`): how a
    /// shared group picks a member: `random`, `round_robin`, `sticky`,
    /// `hash_clientid`, `hash_topic`.
    pub shared_subscription_strategy: SharedSubscriptionStrategy,
    /// `mqtt.ignore_loop_deliver` (default `false`): do not deliver a v3
    /// client's own messages back to it (v5 clients use No Local).
    pub ignore_loop_deliver: bool,
    /// `mqtt.keepalive_multiplier` (default `1.5`): a client is dropped after
    /// `keepalive * keepalive_multiplier` seconds of silence.
    #[serde(deserialize_with = "units::positive_f64")]
    pub keepalive_multiplier: f64,
    /// `mqtt.server_keepalive` (default `"disabled"` = `None`): seconds; when
    /// set, overrides the client's keep alive (sent as Server Keep Alive to v5 clients).
    #[serde(deserialize_with = "units::int_or_disabled::<_, u16, 1, 65535>")]
    pub server_keepalive: Option<u16>,
    /// `mqtt.min_keepalive` (default `0`; Junction's own key): smallest keep
    /// alive in seconds; larger non-zero requests are raised to it.
    #[serde(deserialize_with = "units::int_in::<_, u16, 0, 65535>")]
    pub min_keepalive: u16,
    /// `mqtt.max_keepalive` (default `65535`; Junction's own key): largest keep
    /// alive in seconds; larger requests are lowered to it.
    #[serde(deserialize_with = "units::int_in::<_, u16, 0, 65535>")]
    pub max_keepalive: u16,
    /// `mqtt.max_inflight` (default `32`, 1..=65535): QoS 1/2 messages sent
    /// and not yet acknowledged, per session.
    #[serde(deserialize_with = "units::int_in::<_, u16, 1, 65535>")]
    pub max_inflight: u16,
    /// `mqtt.retry_interval` (default `"30s"`): resend an unacknowledged QoS
    /// 1/2 message (with DUP) after this long, to MQTT 3.x clients. MQTT 5
    /// forbids resending on a live connection; v5 clients get their unacknowledged
    /// messages again when they resume the session.
    #[serde(deserialize_with = "units::duration")]
    pub retry_interval: Duration,
    /// `mqtt.max_awaiting_rel` (default `100`): incoming QoS 2 messages
    /// awaiting PUBREL, per session.
    #[serde(deserialize_with = "units::int_in::<_, u32, 1, MAX_COUNT>")]
    pub max_awaiting_rel: u32,
    /// `mqtt.await_rel_timeout` (default `"300s"`): drop an incoming QoS 2
    /// message whose PUBREL has not come after this long.
    #[serde(deserialize_with = "units::duration")]
    pub await_rel_timeout: Duration,
    /// `mqtt.session_expiry_interval` (default `"2h"`): the longest session
    /// expiry honoured; longer client requests are lowered to it.
    #[serde(deserialize_with = "units::duration")]
    pub session_expiry_interval: Duration,
    /// `mqtt.max_mqueue_len` (default `1000`): messages queued per session
    /// while offline or while the inflight window is full; `"infinity"` or
    /// `0` (as in EMQX) = `None`, no limit.
    #[serde(deserialize_with = "units::mqueue_len")]
    pub max_mqueue_len: Option<usize>,
    /// `mqtt.mqueue_store_qos0` (default `true`): also queue QoS 0 messages.
    pub mqueue_store_qos0: bool,
    /// `mqtt.max_subscriptions` (default `"infinity"` = `None`): subscriptions per client.
    #[serde(deserialize_with = "units::int_or_infinity::<_, usize, 1, MAX_COUNT>")]
    pub max_subscriptions: Option<usize>,
    /// `mqtt.upgrade_qos` (default `false`): deliver at the subscription's
    /// QoS even when the message was published at a lower one.
    pub upgrade_qos: bool,
    /// `mqtt.idle_timeout` (default `"15s"`): close a connection that sends no
    /// CONNECT within this time.
    #[serde(deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    /// `mqtt.message_expiry_interval` (default `"infinity"` = `None`): expiry
    /// for messages that carry none of their own.
    #[serde(deserialize_with = "units::duration_or_infinity")]
    pub message_expiry_interval: Option<Duration>,
    /// `mqtt.response_information` (default `""`): when non-empty, sent as
    /// Response Information to v5 clients that ask for it (a topic prefix
    /// for request/response).
    pub response_information: String,
    /// `mqtt.auto_subscribe` (default `[]`): topics every client is subscribed to right
    /// after CONNACK, e.g. `[{ topic = "c/${clientid}/#", qos = 1 }]` (`${clientid}`,
    /// `${username}`, `${host}`, `${port}`; options `qos`, `rh`, `rap`, `nl` as EMQX).
    pub auto_subscribe: Vec<AutoSubscribe>,
    /// `mqtt.subscribe_by_broker` (default `[]`; EMQX 4's "subscription by broker"):
    /// subscriptions looked up for each client on connect, before the CONNACK, by a query of
    /// a connector (`connectors/<name>.toml`: `redis`, `postgres`, `timescaledb`, `mysql`),
    /// with `${clientid}` and `${username}` bound as parameters. One table or a list:
    /// `{ connector = "pg", query = "SELECT topic, qos FROM mqtt_sub WHERE clientid = ${clientid}", timeout = "2s" }`.
    #[serde(deserialize_with = "one_or_many")]
    pub subscribe_by_broker: Vec<SubscribeByBroker>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: 1 << 20,
            max_clientid_len: 65535,
            max_topic_levels: 128,
            max_topic_length: 65535,
            max_qos_allowed: 2,
            max_topic_alias: 65535,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            shared_subscription_strategy: SharedSubscriptionStrategy::RoundRobin,
            ignore_loop_deliver: false,
            keepalive_multiplier: 1.5,
            server_keepalive: None,
            min_keepalive: 0,
            max_keepalive: 65535,
            max_inflight: 32,
            retry_interval: Duration::from_secs(30),
            max_awaiting_rel: 100,
            await_rel_timeout: Duration::from_secs(300),
            session_expiry_interval: Duration::from_secs(2 * 3600),
            max_mqueue_len: Some(1000),
            mqueue_store_qos0: true,
            max_subscriptions: None,
            upgrade_qos: false,
            idle_timeout: Duration::from_secs(15),
            message_expiry_interval: None,
            response_information: String::new(),
            auto_subscribe: Vec::new(),
            subscribe_by_broker: Vec::new(),
        }
    }
}

/// Value of `mqtt.shared_subscription_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedSubscriptionStrategy {
    /// A random member.
    Random,
    /// Members in turn.
    #[default]
    RoundRobin,
    /// The same member until it leaves.
    Sticky,
    /// By a hash of the publisher's client id.
    HashClientid,
    /// By a hash of the topic.
    HashTopic,
}

// ---------------------------------------------------------------------------
// sys_topics, durable_storage

/// `sys_topics.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SysTopicsConfig {
    /// `sys_topics.sys_msg_interval` (default `"10s"`): how often `$SYS`
    /// statistics are published; `"disabled"` = `None`.
    #[serde(deserialize_with = "units::duration_or_disabled")]
    pub sys_msg_interval: Option<Duration>,
    /// `sys_topics.sys_heartbeat_interval` (default `"30s"`): how often the
    /// `$SYS` uptime/datetime heartbeat is published; `"disabled"` = `None`.
    #[serde(deserialize_with = "units::duration_or_disabled")]
    pub sys_heartbeat_interval: Option<Duration>,
}

impl Default for SysTopicsConfig {
    fn default() -> Self {
        SysTopicsConfig {
            sys_msg_interval: Some(Duration::from_secs(10)),
            sys_heartbeat_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// `durable_storage.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurableStorageConfig {
    /// `durable_storage.enable` (default `true`): keep sessions and retained
    /// messages in `node.data_dir`; when `false` everything is in memory.
    pub enable: bool,
    /// `durable_storage.sync_mode` (default `"interval"`): `every_write`
    /// syncs before acknowledging each write; `interval` syncs every `sync_interval`.
    pub sync_mode: SyncMode,
    /// `durable_storage.sync_interval` (default `"100ms"`): sync period for
    /// `sync_mode = "interval"`.
    #[serde(deserialize_with = "units::duration")]
    pub sync_interval: Duration,
}

impl Default for DurableStorageConfig {
    fn default() -> Self {
        DurableStorageConfig {
            enable: true,
            sync_mode: SyncMode::Interval,
            sync_interval: Duration::from_millis(100),
        }
    }
}

/// Value of `durable_storage.sync_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Sync to disk before acknowledging each write.
    EveryWrite,
    /// Sync every `sync_interval`.
    #[default]
    Interval,
}

// ---------------------------------------------------------------------------
// checks that involve more than one key

impl Config {
    /// Problems that no single key shows. Each problem is a list of
    /// (key path, message) alternatives: it is reported at the first key that
    /// the user set (file or env), with that alternative's message.
    pub(crate) fn cross_checks(&self) -> Vec<Vec<(Vec<String>, String)>> {
        fn path(parts: &[&str]) -> Vec<String> {
            parts.iter().map(|s| s.to_string()).collect()
        }
        let mut out = Vec::new();
        let m = &self.mqtt;
        if m.min_keepalive > m.max_keepalive {
            let msg = format!(
                "min_keepalive ({}) is greater than max_keepalive ({})",
                m.min_keepalive, m.max_keepalive
            );
            out.push(vec![
                (path(&["mqtt", "min_keepalive"]), msg.clone()),
                (path(&["mqtt", "max_keepalive"]), msg),
            ]);
        }
        for l in self.listeners.iter() {
            let kind = l.kind.as_str();
            let valid = !l.name.is_empty()
                && l.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                out.push(vec![(
                    path(&["listeners", kind, l.name]),
                    format!("invalid listener name {:?} (use letters, digits, '_' and '-')", l.name),
                )]);
            }
            let Some(ssl) = l.ssl_options else { continue };
            match (&ssl.certfile, &ssl.keyfile) {
                (Some(_), None) => out.push(vec![(
                    path(&["listeners", kind, l.name, "ssl_options", "certfile"]),
                    "certfile is set but keyfile is not (both are needed)".into(),
                )]),
                (None, Some(_)) => out.push(vec![(
                    path(&["listeners", kind, l.name, "ssl_options", "keyfile"]),
                    "keyfile is set but certfile is not (both are needed)".into(),
                )]),
                _ => {}
            }
        }
        // Two started listeners on the same port and overlapping addresses.
        let mut binds: Vec<(Vec<String>, SocketAddr)> = self
            .listeners
            .active()
            .map(|l| (path(&["listeners", l.kind.as_str(), l.name, "bind"]), l.bind))
            .collect();
        if self.dashboard.listeners.http.enable {
            binds.push((
                path(&["dashboard", "listeners", "http", "bind"]),
                self.dashboard.listeners.http.bind,
            ));
        }
        for (i, (key, addr)) in binds.iter().enumerate() {
            if let Some((other, other_addr)) = binds[..i].iter().find(|(_, a)| clash(*a, *addr)) {
                out.push(vec![
                    (
                        key.clone(),
                        format!("address {addr} is also used by {}", other.join(".")),
                    ),
                    (
                        other.clone(),
                        format!("address {other_addr} is also used by {}", key.join(".")),
                    ),
                ]);
            }
        }
        out
    }
}

fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

// ---------------------------------------------------------------------------
// rule_engine

/// `rule_engine.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleEngineConfig {
    /// `rule_engine.enable` (default `true`): load rules and evaluate them.
    pub enable: bool,
    /// `rule_engine.rules_dir` (default `"rules"`): the `*.toml` rule files.
    pub rules_dir: PathBuf,
    /// `rule_engine.functions_dir` (default `"functions"`): `*.rhai` functions callable from SQL.
    pub functions_dir: PathBuf,
    /// `rule_engine.reload_interval` (default `"1s"`): how often the folders are checked
    /// for changes; `"0s"` turns hot reload off (SIGHUP still reloads).
    #[serde(deserialize_with = "units::duration")]
    pub reload_interval: Duration,
    /// `rule_engine.getenv_prefix` (default `"EMQXVAR_"`): `getenv(name)` reads only
    /// the environment variable `<prefix><name>`.
    pub getenv_prefix: String,
    /// `rule_engine.events_queue_len` (default `65536`): events waiting for evaluation.
    /// When full, the broker counts and drops the event (`junction_events_dropped_total`)
    /// rather than wait.
    pub events_queue_len: usize,
    /// `rule_engine.action_queue_len` (default `10000`): outputs waiting per action.
    /// When full, the output is dropped and counted (`actions_dropped{reason="queue_full"}`).
    pub action_queue_len: usize,
    /// `rule_engine.max_republish_depth` (default `8`): how many rules in a row may
    /// republish a message that triggers the next (loop protection).
    pub max_republish_depth: u8,
}

impl Default for RuleEngineConfig {
    fn default() -> Self {
        RuleEngineConfig {
            enable: true,
            rules_dir: PathBuf::from("rules"),
            functions_dir: PathBuf::from("functions"),
            reload_interval: Duration::from_secs(1),
            getenv_prefix: "EMQXVAR_".into(),
            events_queue_len: 65536,
            action_queue_len: 10_000,
            max_republish_depth: 8,
        }
    }
}

// ---------------------------------------------------------------------------
// connectors

/// `connectors.*`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// `connectors.dir` (default `"connectors"`): the `<name>.toml` connector files; the
    /// connector's name is the file stem. A rule action names its connector by that name.
    pub dir: PathBuf,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        ConnectorsConfig {
            dir: PathBuf::from("connectors"),
        }
    }
}

/// One entry of `mqtt.auto_subscribe` (EMQX's `auto_subscribe.topics`): a topic filter
/// template (`${clientid}`, `${username}`, `${host}`, `${port}`) and its options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSubscribe {
    pub topic: String,
    #[serde(default)]
    pub qos: u8,
    /// Retain handling (0, 1, 2).
    #[serde(default)]
    pub rh: u8,
    /// Retain as published.
    #[serde(default)]
    pub rap: bool,
    /// No local.
    #[serde(default)]
    pub nl: bool,
}

/// One entry of `mqtt.subscribe_by_broker`: which connector to ask, with what query, and
/// how long the CONNACK may wait for the answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeByBroker {
    /// The connector's name (its file `connectors/<name>.toml`).
    #[serde(deserialize_with = "units::non_empty")]
    pub connector: String,
    /// The query; `${clientid}` and `${username}` are bound as parameters. Default by the
    /// connector's type: `HGETALL mqtt:sub:${clientid}` (redis, EMQX 4's layout: field =
    /// topic, value = QoS), `SELECT topic, qos FROM mqtt_sub WHERE clientid = ${clientid}`
    /// (postgres, timescaledb, mysql).
    #[serde(default)]
    pub query: Option<String>,
    /// How long the CONNACK waits for this lookup (default `"2s"`); a lookup that takes
    /// longer is counted failed and the client connects without its subscriptions.
    #[serde(default = "default_lookup_timeout", deserialize_with = "positive_duration")]
    pub timeout: Duration,
}

fn default_lookup_timeout() -> Duration {
    Duration::from_secs(2)
}

fn positive_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v = units::duration(d)?;
    if v.is_zero() {
        return Err(serde::de::Error::custom("must be more than zero"));
    }
    Ok(v)
}

/// A table, or a list of tables.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table or a list of tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Vec<T>, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|t| vec![t])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element()? {
                out.push(t);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

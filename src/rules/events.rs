//! The event catalogue: every rule source EMQX's rule engine knows (the `FROM` names, the event
//! names, their columns and example values) and [`EventContext`], the column map one event
//! gives a rule. This module is the single source for all of it: the compiler validates `FROM`
//! against [`EVENTS`], the rule tester fills defaults from [`EventDef::columns`], and the
//! dispatcher turns each [`BrokerEvent`] into an [`EventContext`].
//!
//! Names follow EMQX 5 (`emqx_rule_events.erl`): each event has a dotted name
//! (`client.connected`), a `FROM` topic (`$events/client/connected`), the legacy `FROM` topic
//! EMQX still accepts (`$events/client_connected`), and the `event_type` the rule-test API uses
//! (`client_connected`). `message.publish` has no event topic: rules select it with MQTT topic
//! filters. `$bridges/mqtt:<name>` is a source too (filled by the MQTT bridge).
//!
//! What Junction does not have yet, and so never fills (the column is `null`, or `{}` for
//! property maps), is listed on [`EventContext::from_broker_event`].

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::value::{Map, Value};
use crate::mqtt::codec::{Protocol, QoS};
use crate::mqtt::events::{BrokerEvent, ClientInfo};
use crate::mqtt::message::Message;

/// A shared `Arc<str>` for a literal column name, allocated once per call site.
macro_rules! k {
    ($name:literal) => {{
        static KEY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from($name));
        const BIT: u64 = column_bit($name);
        Col {
            key: KEY.clone(),
            bit: BIT,
        }
    }};
}

/// A column name and its bit in a [`ColumnSet`].
struct Col {
    key: Arc<str>,
    bit: u64,
}

/// Every column an event can have (the bits of a [`ColumnSet`]).
const COLUMN_NAMES: &[&str] = &[
    "action",
    "authz_source",
    "clean_start",
    "client_attrs",
    "clientid",
    "conn_props",
    "connected_at",
    "disconn_props",
    "disconnected_at",
    "expiry_interval",
    "flags",
    "from_clientid",
    "from_username",
    "id",
    "is_anonymous",
    "is_bridge",
    "is_superuser",
    "keepalive",
    "mountpoint",
    "node",
    "payload",
    "peerhost",
    "peername",
    "proto_name",
    "proto_ver",
    "pub_props",
    "puback_props",
    "publish_received_at",
    "qos",
    "reason",
    "reason_code",
    "receive_maximum",
    "result",
    "sockname",
    "sub_props",
    "timestamp",
    "topic",
    "unsub_props",
    "username",
];

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The bit of a column name (0 for names no event has). Evaluated at compile time by `k!`.
const fn column_bit(name: &str) -> u64 {
    let mut i = 0;
    while i < COLUMN_NAMES.len() {
        if str_eq(COLUMN_NAMES[i], name) {
            return 1 << i;
        }
        i += 1;
    }
    0
}

/// The columns a rule reads: building an input builds only these (`event` always). Rules
/// that read everything (`SELECT *`, host functions) use [`ColumnSet::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ColumnSet(u64);

impl ColumnSet {
    pub const ALL: ColumnSet = ColumnSet(u64::MAX);
    pub const NONE: ColumnSet = ColumnSet(0);

    /// Adds `name` (a name no event has is ignored: it is never built anyway).
    pub fn add(&mut self, name: &str) {
        self.0 |= COLUMN_NAMES.iter().position(|n| *n == name).map_or(0, |i| 1u64 << i);
    }

    pub fn union(self, other: ColumnSet) -> ColumnSet {
        ColumnSet(self.0 | other.0)
    }

    pub fn is_all(self) -> bool {
        self.0 == u64::MAX
    }
}

/// The node name the rule tester and examples use when none is configured.
pub const DEFAULT_NODE: &str = "junction@127.0.0.1";

/// The prefix of every event topic.
pub const EVENT_TOPIC_PREFIX: &str = "$events/";

/// The prefix of bridge sources (`$bridges/mqtt:<name>`).
pub const BRIDGE_TOPIC_PREFIX: &str = "$bridges/";

/// One kind of rule input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// A message entered the broker; selected by MQTT topic filters.
    MessagePublish,
    MessageDelivered,
    MessageAcked,
    MessageDropped,
    DeliveryDropped,
    ClientConnected,
    ClientDisconnected,
    ClientConnack,
    ClientCheckAuthzComplete,
    ClientCheckAuthnComplete,
    ClientPing,
    SessionSubscribed,
    SessionUnsubscribed,
    /// A message received by an MQTT bridge (`$bridges/mqtt:<name>`).
    BridgeMqtt,
}

/// An example value of a column (EMQX's `columns_with_exam/1`), turned into a [`Value`] by
/// [`Example::value`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Example {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'static str),
    /// A JSON document (maps and lists).
    Json(&'static str),
    /// The current time in milliseconds.
    NowMs,
    /// The node name.
    Node,
    /// A fresh message id (32 hex digits).
    Guid,
}

impl Example {
    /// The example as a value, with `node` for [`Example::Node`].
    pub fn value(self, node: &str) -> Value {
        match self {
            Example::Null => Value::Null,
            Example::Bool(b) => Value::Bool(b),
            Example::Int(i) => Value::Int(i),
            Example::Str(s) => Value::str(s),
            Example::Json(j) => serde_json::from_str(j).map_or(Value::Null, |j| Value::from_json(&j)),
            Example::NowMs => Value::Int(now_ms()),
            Example::Node => Value::str(node),
            Example::Guid => hex_id(guid_seed()),
        }
    }
}

/// A column and its example value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub example: Example,
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct EventDef {
    pub kind: EventKind,
    /// EMQX's event name: `client.connected`.
    pub name: &'static str,
    /// The `FROM` topic: `$events/client/connected` (for `message.publish`, EMQX's internal
    /// `$events/message_publish`, which a rule cannot select from; for bridges, the prefix).
    pub topic: &'static str,
    /// Other `FROM` topics naming the same event: EMQX's legacy forms, and aliases.
    pub aliases: &'static [&'static str],
    /// A one-line description.
    pub title: &'static str,
    /// The columns in EMQX's order, with example values.
    pub columns: &'static [Column],
    /// Whether Junction's broker emits this event (false: accepted in `FROM`, never fires).
    pub emitted: bool,
}

impl EventDef {
    /// The `event_type` of EMQX's rule-test API: the name with `_` for `.` (`client_connected`).
    pub fn event_type(&self) -> String {
        self.name.replace('.', "_")
    }

    /// Every `FROM` topic naming this event (none for `message.publish` and bridges).
    pub fn from_topics(&self) -> impl Iterator<Item = &'static str> + '_ {
        let own = match self.kind {
            EventKind::MessagePublish | EventKind::BridgeMqtt => None,
            _ => Some(self.topic),
        };
        own.into_iter().chain(self.aliases.iter().copied())
    }

    /// The columns with their example values, `event`, `timestamp` and `node` included.
    pub fn example_columns(&self, node: &str) -> Map {
        self.columns
            .iter()
            .map(|c| {
                let v = if c.name == "event" {
                    Value::str(self.name)
                } else {
                    c.example.value(node)
                };
                (key(c.name), v)
            })
            .collect()
    }
}

const fn col(name: &'static str, example: Example) -> Column {
    Column { name, example }
}

use Example as E;

const EVENT: Column = col("event", E::Null);
const TIMESTAMP: Column = col("timestamp", E::NowMs);
const NODE: Column = col("node", E::Node);
const CLIENT_ATTRS: Column = col("client_attrs", E::Json(r#"{"test":"example"}"#));
const PUB_PROPS: Column = col(
    "pub_props",
    E::Json(
        r#"{"Payload-Format-Indicator":0,"Message-Expiry-Interval":30,"User-Property":{"foo":"bar"},"User-Property-Pairs":[{"key":"foo","value":"bar"}]}"#,
    ),
);
const CONN_PROPS: Column = col(
    "conn_props",
    E::Json(
        r#"{"Session-Expiry-Interval":7200,"Receive-Maximum":32,"User-Property":{"foo":"bar"},"User-Property-Pairs":[{"key":"foo","value":"bar"}]}"#,
    ),
);
const PAYLOAD: Column = col("payload", E::Str(r#"{"msg": "hello"}"#));
const PEERHOST: Column = col("peerhost", E::Str("192.168.0.10"));
const PEERNAME: Column = col("peername", E::Str("192.168.0.10:32781"));
const CONN_PEERNAME: Column = col("peername", E::Str("192.168.0.10:56431"));
const SOCKNAME: Column = col("sockname", E::Str("0.0.0.0:1883"));
const TOPIC: Column = col("topic", E::Str("t/a"));
const QOS: Column = col("qos", E::Int(1));
const FLAGS: Column = col("flags", E::Json(r#"{"retain":false,"dup":false}"#));
const RECEIVED_AT: Column = col("publish_received_at", E::NowMs);
const ID: Column = col("id", E::Guid);
const CLIENTID: Column = col("clientid", E::Str("c_emqx"));
const USERNAME: Column = col("username", E::Str("u_emqx"));
const PROTO_NAME: Column = col("proto_name", E::Str("MQTT"));
const PROTO_VER: Column = col("proto_ver", E::Int(5));
const CONNECTED_AT: Column = col("connected_at", E::NowMs);

const PUBLISH_COLUMNS: &[Column] = &[
    EVENT,
    ID,
    CLIENTID,
    USERNAME,
    PAYLOAD,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    FLAGS,
    RECEIVED_AT,
    PUB_PROPS,
    TIMESTAMP,
    NODE,
    CLIENT_ATTRS,
];

const DELIVERED_COLUMNS: &[Column] = &[
    EVENT,
    ID,
    col("from_clientid", E::Str("c_emqx_1")),
    col("from_username", E::Str("u_emqx_1")),
    col("clientid", E::Str("c_emqx_2")),
    col("username", E::Str("u_emqx_2")),
    PAYLOAD,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    FLAGS,
    RECEIVED_AT,
    PUB_PROPS,
    TIMESTAMP,
    NODE,
];

const ACKED_COLUMNS: &[Column] = &[
    EVENT,
    ID,
    col("from_clientid", E::Str("c_emqx_1")),
    col("from_username", E::Str("u_emqx_1")),
    col("clientid", E::Str("c_emqx_2")),
    col("username", E::Str("u_emqx_2")),
    PAYLOAD,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    FLAGS,
    RECEIVED_AT,
    PUB_PROPS,
    col(
        "puback_props",
        E::Json(
            r#"{"Reason-String":"OK","User-Property":{"foo":"bar"},"User-Property-Pairs":[{"key":"foo","value":"bar"}]}"#,
        ),
    ),
    TIMESTAMP,
    NODE,
];

const MESSAGE_DROPPED_COLUMNS: &[Column] = &[
    EVENT,
    ID,
    col("reason", E::Str("no_subscribers")),
    CLIENTID,
    USERNAME,
    PAYLOAD,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    FLAGS,
    RECEIVED_AT,
    PUB_PROPS,
    TIMESTAMP,
    NODE,
];

const DELIVERY_DROPPED_COLUMNS: &[Column] = &[
    EVENT,
    ID,
    col("reason", E::Str("queue_full")),
    col("from_clientid", E::Str("c_emqx_1")),
    col("from_username", E::Str("u_emqx_1")),
    col("clientid", E::Str("c_emqx_2")),
    col("username", E::Str("u_emqx_2")),
    PAYLOAD,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    FLAGS,
    PUB_PROPS,
    RECEIVED_AT,
    TIMESTAMP,
    NODE,
];

const CONNECTED_COLUMNS: &[Column] = &[
    EVENT,
    CLIENTID,
    USERNAME,
    col("mountpoint", E::Null),
    CONN_PEERNAME,
    SOCKNAME,
    PROTO_NAME,
    PROTO_VER,
    col("keepalive", E::Int(60)),
    col("clean_start", E::Bool(true)),
    col("expiry_interval", E::Int(3600)),
    col("is_bridge", E::Bool(false)),
    CONN_PROPS,
    CONNECTED_AT,
    TIMESTAMP,
    NODE,
    CLIENT_ATTRS,
];

const DISCONNECTED_COLUMNS: &[Column] = &[
    EVENT,
    col("reason", E::Str("normal")),
    CLIENTID,
    USERNAME,
    CONN_PEERNAME,
    SOCKNAME,
    PROTO_NAME,
    PROTO_VER,
    col(
        "disconn_props",
        E::Json(
            r#"{"Session-Expiry-Interval":7200,"Reason-String":"Redirect to another server","Server Reference":"192.168.22.129","User-Property":{"foo":"bar"},"User-Property-Pairs":[{"key":"foo","value":"bar"}]}"#,
        ),
    ),
    CONNECTED_AT,
    col("disconnected_at", E::NowMs),
    TIMESTAMP,
    NODE,
    CLIENT_ATTRS,
];

const CONNACK_COLUMNS: &[Column] = &[
    EVENT,
    col("reason_code", E::Str("success")),
    CLIENTID,
    USERNAME,
    CONN_PEERNAME,
    SOCKNAME,
    PROTO_NAME,
    PROTO_VER,
    col("keepalive", E::Int(60)),
    col("clean_start", E::Bool(true)),
    col("expiry_interval", E::Int(3600)),
    CONNECTED_AT,
    CONN_PROPS,
    TIMESTAMP,
    NODE,
];

const AUTHZ_COLUMNS: &[Column] = &[
    EVENT,
    CLIENTID,
    USERNAME,
    PEERHOST,
    PEERNAME,
    TOPIC,
    col("action", E::Str("publish")),
    col("authz_source", E::Str("cache")),
    col("result", E::Str("allow")),
    TIMESTAMP,
    NODE,
    CLIENT_ATTRS,
];

const AUTHN_COLUMNS: &[Column] = &[
    EVENT,
    CLIENTID,
    USERNAME,
    CONN_PEERNAME,
    col("reason_code", E::Str("success")),
    col("is_superuser", E::Bool(true)),
    col("is_anonymous", E::Bool(false)),
    TIMESTAMP,
    NODE,
    CLIENT_ATTRS,
];

const PING_COLUMNS: &[Column] = &[
    EVENT,
    CLIENTID,
    USERNAME,
    CONN_PEERNAME,
    SOCKNAME,
    PROTO_NAME,
    PROTO_VER,
    col("keepalive", E::Int(60)),
    col("clean_start", E::Bool(true)),
    col("expiry_interval", E::Int(3600)),
    CONNECTED_AT,
    CONN_PROPS,
    TIMESTAMP,
    NODE,
];

const SUBSCRIBED_COLUMNS: &[Column] = &[
    col(
        "sub_props",
        E::Json(r#"{"User-Property":{"foo":"bar"},"User-Property-Pairs":[{"key":"foo","value":"bar"}]}"#),
    ),
    CLIENT_ATTRS,
    EVENT,
    CLIENTID,
    USERNAME,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    TIMESTAMP,
    NODE,
];

const UNSUBSCRIBED_COLUMNS: &[Column] = &[
    col(
        "unsub_props",
        E::Json(r#"{"User-Property":{"foo":"bar"},"User-Property-Pairs":[{"key":"foo","value":"bar"}]}"#),
    ),
    CLIENT_ATTRS,
    EVENT,
    CLIENTID,
    USERNAME,
    PEERHOST,
    PEERNAME,
    TOPIC,
    QOS,
    TIMESTAMP,
    NODE,
];

const BRIDGE_COLUMNS: &[Column] = &[
    EVENT,
    ID,
    PAYLOAD,
    col("server", E::Str("192.168.0.10:1883")),
    TOPIC,
    QOS,
    col("dup", E::Bool(false)),
    col("retain", E::Bool(false)),
    PUB_PROPS,
    col("message_received_at", E::NowMs),
    TIMESTAMP,
    NODE,
];

/// The catalogue, in EMQX's `event_info/0` order.
pub static EVENTS: &[EventDef] = &[
    EventDef {
        kind: EventKind::MessagePublish,
        name: "message.publish",
        topic: "$events/message_publish",
        aliases: &[],
        title: "Message publish (selected with MQTT topic filters)",
        columns: PUBLISH_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::MessageDelivered,
        name: "message.delivered",
        topic: "$events/message/delivered",
        aliases: &["$events/message_delivered"],
        title: "Message delivered to a subscriber",
        columns: DELIVERED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::MessageAcked,
        name: "message.acked",
        topic: "$events/message/acked",
        aliases: &["$events/message_acked"],
        title: "Message delivery acknowledged (QoS 1 and 2)",
        columns: ACKED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::MessageDropped,
        name: "message.dropped",
        topic: "$events/message/dropped",
        aliases: &["$events/message_dropped"],
        title: "Message dropped when routing",
        columns: MESSAGE_DROPPED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::DeliveryDropped,
        name: "delivery.dropped",
        topic: "$events/message/delivery_dropped",
        aliases: &["$events/delivery_dropped"],
        title: "Message dropped when delivering to one subscriber",
        columns: DELIVERY_DROPPED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::ClientConnected,
        name: "client.connected",
        topic: "$events/client/connected",
        aliases: &["$events/client_connected"],
        title: "Connection complete",
        columns: CONNECTED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::ClientDisconnected,
        name: "client.disconnected",
        topic: "$events/client/disconnected",
        aliases: &["$events/client_disconnected"],
        title: "Disconnect",
        columns: DISCONNECTED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::ClientConnack,
        name: "client.connack",
        topic: "$events/client/connack",
        aliases: &["$events/client_connack"],
        title: "CONNACK sent",
        columns: CONNACK_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::ClientCheckAuthzComplete,
        name: "client.check_authz_complete",
        topic: "$events/auth/check_authz_complete",
        aliases: &[
            "$events/client_check_authz_complete",
            "$events/client/check_authz_complete",
        ],
        title: "Authorization check complete",
        columns: AUTHZ_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::ClientCheckAuthnComplete,
        name: "client.check_authn_complete",
        topic: "$events/auth/check_authn_complete",
        aliases: &[
            "$events/client_check_authn_complete",
            "$events/client/check_authn_complete",
        ],
        title: "Authentication check complete",
        columns: AUTHN_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::ClientPing,
        name: "client.ping",
        topic: "$events/client/ping",
        aliases: &[],
        title: "PINGREQ received",
        columns: PING_COLUMNS,
        emitted: false,
    },
    EventDef {
        kind: EventKind::SessionSubscribed,
        name: "session.subscribed",
        topic: "$events/session/subscribed",
        aliases: &["$events/session_subscribed"],
        title: "Subscribe",
        columns: SUBSCRIBED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::SessionUnsubscribed,
        name: "session.unsubscribed",
        topic: "$events/session/unsubscribed",
        aliases: &["$events/session_unsubscribed"],
        title: "Unsubscribe",
        columns: UNSUBSCRIBED_COLUMNS,
        emitted: true,
    },
    EventDef {
        kind: EventKind::BridgeMqtt,
        name: "$bridges/mqtt:*",
        topic: "$bridges/mqtt:",
        aliases: &[],
        title: "Message received by an MQTT bridge",
        columns: BRIDGE_COLUMNS,
        emitted: false,
    },
];

/// EMQX event topics Junction refuses in `FROM` because it has no such feature.
pub const UNSUPPORTED_EVENT_TOPICS: &[&str] = &[
    "$events/sys/alarm_activated",
    "$events/sys/alarm_deactivated",
    "$events/schema_validation/failed",
    "$events/schema_validation_failed",
    "$events/message_transformation/failed",
    "$events/message_transformation_failed",
];

impl EventKind {
    /// The catalogue entry.
    pub fn def(self) -> &'static EventDef {
        // Every kind has exactly one entry (checked by a test); the fallback is never taken.
        EVENTS.iter().find(|d| d.kind == self).unwrap_or(&EVENTS[0])
    }

    /// EMQX's dotted name: `client.connected`.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// The event named by an exact `FROM` topic (new or legacy form):
    /// `$events/client/connected` and `$events/client_connected` give `ClientConnected`.
    pub fn from_topic(topic: &str) -> Option<EventKind> {
        if topic.starts_with("$bridges/mqtt:") {
            return Some(EventKind::BridgeMqtt);
        }
        EVENTS
            .iter()
            .find(|d| d.from_topics().any(|t| t == topic))
            .map(|d| d.kind)
    }

    /// Any name a user may give an event: `client.connected`, `client_connected` (the
    /// rule-test `event_type`), or a `FROM` topic (`$events/client_connected`,
    /// `$bridges/mqtt:b`). `message_publish` / `message.publish` give `MessagePublish`.
    pub fn parse(name: &str) -> Option<EventKind> {
        let name = name.trim();
        if name.starts_with(EVENT_TOPIC_PREFIX) || name.starts_with(BRIDGE_TOPIC_PREFIX) {
            return EventKind::from_topic(name);
        }
        EVENTS
            .iter()
            .find(|d| d.name == name || (d.kind != EventKind::BridgeMqtt && d.event_type() == name))
            .map(|d| d.kind)
    }

    /// Every event whose `FROM` topics match the topic filter `filter` (EMQX's
    /// `match_event_names/1`: `$events/client/+` selects connected, disconnected, connack, ping).
    pub fn matching_filter(filter: &str) -> Vec<EventKind> {
        let mut kinds: Vec<EventKind> = EVENTS
            .iter()
            .filter(|d| d.from_topics().any(|t| crate::mqtt::topic::matches(filter, t)))
            .map(|d| d.kind)
            .collect();
        kinds.dedup();
        kinds
    }
}

/// What a rule's `FROM` is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger<'a> {
    /// `message.publish`: the message topic, matched by topic filters.
    Publish(&'a str),
    /// Any other event.
    Event(EventKind),
    /// `$bridges/mqtt:<name>`: the bridge name.
    Bridge(&'a str),
}

/// Building an [`EventContext`] from user input failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    #[error("unknown event `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownEvent { name: String, suggestion: Option<String> },
    #[error("the context must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("EMQX event `{0}` is not supported by Junction")]
    Unsupported(String),
}

/// The input of one rule evaluation: the event kind and its columns, as EMQX builds them
/// (`eventmsg_*` in `emqx_rule_events.erl`, plus `event`, `timestamp` and `node`).
#[derive(Debug, Clone, PartialEq)]
pub struct EventContext {
    pub kind: EventKind,
    /// The columns, in EMQX's order. `payload` is the raw payload ([`Value::Bytes`] when it
    /// comes from the broker); rules decode it lazily.
    pub columns: Map,
}

impl EventContext {
    /// What `FROM` is matched against: the `topic` column for `message.publish`, the bridge
    /// name for bridge messages, the event kind otherwise.
    pub fn trigger(&self) -> Trigger<'_> {
        match self.kind {
            EventKind::MessagePublish => Trigger::Publish(self.text("topic").unwrap_or("")),
            EventKind::BridgeMqtt => {
                let event = self.text("event").unwrap_or("");
                Trigger::Bridge(event.strip_prefix("$bridges/mqtt:").unwrap_or(event))
            }
            kind => Trigger::Event(kind),
        }
    }

    /// A column's value (`None` when absent).
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.columns.get(column)
    }

    fn text(&self, column: &str) -> Option<&str> {
        match self.columns.get(column)? {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The columns EMQX gives a rule for `event`, or `None` for events that are no rule
    /// source (`SessionCreated`, `SessionTerminated`).
    ///
    /// Gaps (our [`BrokerEvent`] does not carry them, so they are `null`, `{}` for property
    /// maps, or the event time for timestamps):
    /// - `message.*`, `delivery.dropped`: `flags.dup` is always false; `puback_props` is
    ///   `{}`. `id` is the broker's message id as 32 hex digits. For a message the broker
    ///   made itself (`$SYS`) `clientid`, `username`, `peerhost` and `peername` are `null`
    ///   (a republished message's `clientid` is the rule id, as in EMQX), and so are the
    ///   receiver's `username` and address in `delivery.dropped` and for messages restored
    ///   from the store after a restart.
    /// - `client.connected`: `mountpoint`, `sockname`, `receive_maximum` (0), `conn_props`
    ///   (`{"User-Property": {}}`), `is_bridge` (false); `connected_at` is the event time.
    /// - `client.disconnected`: `sockname`, `disconn_props`, `connected_at`;
    ///   `disconnected_at` is the event time.
    /// - `client.connack`: `clean_start`, `proto_name`, `proto_ver`, `keepalive`,
    ///   `expiry_interval`, `sockname`, `conn_props`; `connected_at` is the event time.
    /// - `session.subscribed` / `unsubscribed`: `sub_props` / `unsub_props`; `qos` of an
    ///   unsubscribe is `null`.
    /// - `client.check_authz_complete`: `authz_source` is `null` (the only source is the
    ///   built-in allow-all until authorization lands).
    /// - `client.check_authn_complete`: `is_superuser` is false.
    /// - `client.ping`, bridge messages: not emitted yet.
    /// - `client_attrs` is `{}` everywhere (Junction has no client attributes).
    pub fn from_broker_event(event: &BrokerEvent, node: &str) -> Option<EventContext> {
        Self::from_broker_event_with(event, node, ColumnSet::ALL)
    }

    /// [`from_broker_event`](Self::from_broker_event) building only the columns in `want`
    /// (plus `event`): the dispatcher passes the union of what the matched rules read.
    pub fn from_broker_event_with(event: &BrokerEvent, node: &str, want: ColumnSet) -> Option<EventContext> {
        // The clock is read only if a wanted column needs it.
        let clock = std::cell::OnceCell::new();
        let now = || *clock.get_or_init(now_ms);
        let b = ColumnsBuilder::new(want);
        let (kind, b) = match event {
            BrokerEvent::Publish(m) => (
                EventKind::MessagePublish,
                b.message_head(m)
                    .opt(k!("clientid"), m.from.as_deref())
                    .opt(k!("username"), publisher_name(m))
                    .put(k!("payload"), || Value::Bytes(m.payload.clone()))
                    .peer(m.publisher.as_deref())
                    .message_tail(m)
                    // A message's event time is when it arrived (as EMQX's message timestamp).
                    .put(k!("timestamp"), || Value::Int(m.received_at_ms as i64))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            BrokerEvent::ClientConnected(c) => (
                EventKind::ClientConnected,
                b.client_head(c)
                    .null(k!("mountpoint"))
                    .put(k!("peername"), || peername(c))
                    .null(k!("sockname"))
                    .put(k!("proto_name"), || Value::str(proto_name(c.protocol)))
                    .put(k!("proto_ver"), || Value::Int(i64::from(c.protocol.level())))
                    .put(k!("keepalive"), || Value::Int(i64::from(c.keep_alive)))
                    .put(k!("clean_start"), || Value::Bool(c.clean_start))
                    .put(k!("receive_maximum"), || Value::Int(0))
                    .put(k!("expiry_interval"), || Value::Int(i64::from(c.expiry_interval)))
                    .put(k!("is_bridge"), || Value::Bool(false))
                    .put(k!("conn_props"), no_props)
                    .put(k!("connected_at"), || Value::Int(now()))
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            BrokerEvent::ClientDisconnected { client: c, reason } => (
                EventKind::ClientDisconnected,
                b.put(k!("reason"), || Value::str(reason.as_str()))
                    .client_head(c)
                    .put(k!("peername"), || peername(c))
                    .null(k!("sockname"))
                    .put(k!("proto_name"), || Value::str(proto_name(c.protocol)))
                    .put(k!("proto_ver"), || Value::Int(i64::from(c.protocol.level())))
                    .put(k!("disconn_props"), no_props)
                    .null(k!("connected_at"))
                    .put(k!("disconnected_at"), || Value::Int(now()))
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            BrokerEvent::ConnAck {
                client_id,
                username,
                peer,
                code,
            } => (
                EventKind::ClientConnack,
                b.put(k!("reason_code"), || Value::str(connack_reason(*code)))
                    .put(k!("clientid"), || Value::str(&**client_id))
                    .opt(k!("username"), username.as_deref())
                    .put(k!("peername"), || Value::str(format!("{}:{}", peer.ip(), peer.port())))
                    .null(k!("sockname"))
                    .null(k!("proto_name"))
                    .null(k!("proto_ver"))
                    .null(k!("keepalive"))
                    .null(k!("clean_start"))
                    .null(k!("expiry_interval"))
                    .put(k!("connected_at"), || Value::Int(now()))
                    .put(k!("conn_props"), no_props)
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node)),
            ),
            BrokerEvent::Subscribed {
                client_id,
                filter,
                qos,
                info,
            } => (
                EventKind::SessionSubscribed,
                b.put(k!("clientid"), || Value::str(&**client_id))
                    .opt(k!("username"), info.as_ref().and_then(|i| i.username.as_deref()))
                    .peer(info.as_deref())
                    .put(k!("sub_props"), no_props)
                    .put(k!("topic"), || Value::str(filter.as_str()))
                    .put(k!("qos"), || qos_value(*qos))
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            BrokerEvent::Unsubscribed {
                client_id,
                filter,
                info,
            } => (
                EventKind::SessionUnsubscribed,
                b.put(k!("clientid"), || Value::str(&**client_id))
                    .opt(k!("username"), info.as_ref().and_then(|i| i.username.as_deref()))
                    .peer(info.as_deref())
                    .put(k!("unsub_props"), no_props)
                    .put(k!("topic"), || Value::str(filter.as_str()))
                    .null(k!("qos"))
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            BrokerEvent::Delivered {
                client_id,
                message,
                info,
            } => (
                EventKind::MessageDelivered,
                b.delivery(client_id, message, info.as_deref())
                    .finish_message(message, now(), node),
            ),
            BrokerEvent::Acked {
                client_id,
                message,
                info,
            } => (
                EventKind::MessageAcked,
                b.delivery(client_id, message, info.as_deref())
                    .message_tail(message)
                    .put(k!("puback_props"), no_props)
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node)),
            ),
            BrokerEvent::MessageDropped { message: m, reason } => (
                EventKind::MessageDropped,
                b.message_head(m)
                    .put(k!("reason"), || Value::str(reason.as_str()))
                    .opt(k!("clientid"), m.from.as_deref())
                    .opt(k!("username"), publisher_name(m))
                    .put(k!("payload"), || Value::Bytes(m.payload.clone()))
                    .peer(m.publisher.as_deref())
                    .finish_message(m, now(), node),
            ),
            BrokerEvent::DeliveryDropped {
                client_id,
                message: m,
                reason,
            } => (
                EventKind::DeliveryDropped,
                b.message_head(m)
                    .put(k!("reason"), || Value::str(reason.as_str()))
                    .opt(k!("from_clientid"), m.from.as_deref())
                    .opt(k!("from_username"), publisher_name(m))
                    .put(k!("clientid"), || Value::str(&**client_id))
                    .null(k!("username"))
                    .put(k!("payload"), || Value::Bytes(m.payload.clone()))
                    .null(k!("peerhost"))
                    .null(k!("peername"))
                    .finish_message(m, now(), node),
            ),
            BrokerEvent::AuthnComplete {
                client_id,
                username,
                peer,
                code,
            } => (
                EventKind::ClientCheckAuthnComplete,
                b.put(k!("clientid"), || Value::str(&**client_id))
                    .opt(k!("username"), username.as_deref())
                    .put(k!("peername"), || Value::str(format!("{}:{}", peer.ip(), peer.port())))
                    .put(k!("reason_code"), || Value::str(connack_reason(*code)))
                    .put(k!("is_superuser"), || Value::Bool(false))
                    .put(k!("is_anonymous"), || Value::Bool(username.is_none()))
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            BrokerEvent::AuthzComplete {
                client_id,
                username,
                peer,
                topic,
                action,
                allowed,
            } => (
                EventKind::ClientCheckAuthzComplete,
                b.put(k!("clientid"), || Value::str(&**client_id))
                    .opt(k!("username"), username.as_deref())
                    .put(k!("peerhost"), || Value::str(peer.ip().to_string()))
                    .put(k!("peername"), || Value::str(format!("{}:{}", peer.ip(), peer.port())))
                    .put(k!("topic"), || Value::str(topic.as_str()))
                    .put(k!("action"), || Value::str(*action))
                    .null(k!("authz_source"))
                    .put(k!("result"), || Value::str(if *allowed { "allow" } else { "deny" }))
                    .put(k!("timestamp"), || Value::Int(now()))
                    .put(k!("node"), || node_value(node))
                    .put(k!("client_attrs"), empty_map),
            ),
            // SessionCreated, SessionTerminated, and variants added later: no rule source.
            _ => return None,
        };
        Some(b.build(kind))
    }

    /// The examples of `kind` (EMQX's `columns_with_exam/1`) with `overrides` on top: EMQX's
    /// rule-tester semantics (`fill_default_values`: context keys override columns). Keys
    /// not among the columns are added.
    pub fn with_overrides(kind: EventKind, overrides: Map, node: &str) -> EventContext {
        let mut columns = kind.def().example_columns(node);
        for (k, v) in overrides {
            columns.insert(k, v);
        }
        EventContext { kind, columns }
    }

    /// A `message.publish` sample for tests and the CLI: the given fields over EMQX's
    /// examples (so `peerhost`, `id`, `pub_props` and the rest have example values).
    pub fn from_sample(
        topic: &str,
        payload: impl Into<Bytes>,
        clientid: Option<&str>,
        username: Option<&str>,
        qos: u8,
    ) -> EventContext {
        let payload: Bytes = payload.into();
        let payload = match std::str::from_utf8(&payload) {
            Ok(s) => Value::str(s),
            Err(_) => Value::Bytes(payload),
        };
        let mut o = Map::default();
        o.insert(key("topic"), Value::str(topic));
        o.insert(key("payload"), payload);
        if let Some(c) = clientid {
            o.insert(key("clientid"), Value::str(c));
        }
        if let Some(u) = username {
            o.insert(key("username"), Value::str(u));
        }
        o.insert(key("qos"), Value::Int(i64::from(qos)));
        EventContext::with_overrides(EventKind::MessagePublish, o, DEFAULT_NODE)
    }

    /// For `--context JSON` and the rule-test API: `event` is an event name, `event_type`
    /// or `FROM` topic (see [`EventKind::parse`]); `context` must be a JSON object whose keys
    /// override the example columns. `event_type` and `event_topic` keys are dropped (EMQX's
    /// `remove_internal_fields`); for a bridge topic, `event` is set to it.
    pub fn from_json(event: &str, context: serde_json::Value) -> Result<EventContext, EventError> {
        let kind = parse_event(event)?;
        let serde_json::Value::Object(obj) = context else {
            return Err(EventError::NotAnObject(json_type(&context)));
        };
        let mut overrides: Map = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "event_type" && k.as_str() != "event_topic")
            .map(|(k, v)| (Arc::from(k.as_str()), Value::from_json(v)))
            .collect();
        if kind == EventKind::BridgeMqtt && event.starts_with(BRIDGE_TOPIC_PREFIX) {
            overrides.insert(key("event"), Value::str(event));
        }
        Ok(EventContext::with_overrides(kind, overrides, DEFAULT_NODE))
    }
}

/// [`EventKind::parse`] with a "did you mean" on failure.
pub fn parse_event(name: &str) -> Result<EventKind, EventError> {
    if let Some(kind) = EventKind::parse(name) {
        return Ok(kind);
    }
    if UNSUPPORTED_EVENT_TOPICS.contains(&name) {
        return Err(EventError::Unsupported(name.to_string()));
    }
    Err(EventError::UnknownEvent {
        name: name.to_string(),
        suggestion: suggest_event(name),
    })
}

/// The closest known event name, `FROM` topic or `event_type` to `name`, if one is close.
pub fn suggest_event(name: &str) -> Option<String> {
    let candidates = EVENTS.iter().flat_map(|d| {
        let mut v: Vec<String> = d.from_topics().map(str::to_string).collect();
        if d.kind != EventKind::BridgeMqtt {
            v.push(d.name.to_string());
            v.push(d.event_type());
        }
        v
    });
    closest(name, candidates)
}

/// The candidate at the smallest edit distance from `word`, if within a third of its length.
pub(crate) fn closest(word: &str, candidates: impl IntoIterator<Item = String>) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_ascii_lowercase(), &c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance (by characters).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn json_type(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

// ------------------------------------------------------------------------ building columns

struct ColumnsBuilder {
    map: Map,
    want: u64,
}

impl ColumnsBuilder {
    /// Room for every column; `event` first (its value is set by [`build`](Self::build)).
    fn new(want: ColumnSet) -> Self {
        let n = if want.is_all() {
            20
        } else {
            want.0.count_ones() as usize + 1
        };
        let mut map = Map::with_capacity_and_hasher(n, Default::default());
        map.insert(key("event"), Value::Null);
        ColumnsBuilder { map, want: want.0 }
    }

    /// Adds the column if it is wanted; its value is computed only then.
    #[inline]
    fn put(mut self, k: Col, v: impl FnOnce() -> Value) -> Self {
        if self.want & k.bit != 0 {
            self.map.insert(k.key, v());
        }
        self
    }

    fn null(self, k: Col) -> Self {
        self.put(k, || Value::Null)
    }

    fn opt(self, k: Col, v: Option<&str>) -> Self {
        self.put(k, || v.map_or(Value::Null, Value::str))
    }

    /// `clientid`, `username` of a client.
    fn client_head(self, c: &ClientInfo) -> Self {
        self.put(k!("clientid"), || Value::str(&*c.client_id))
            .opt(k!("username"), c.username.as_deref())
    }

    fn message_head(self, m: &Message) -> Self {
        self.put(k!("id"), || hex_id(u128::from(m.id)))
    }

    /// `topic`, `qos`, `flags`, `publish_received_at`, `pub_props`.
    fn message_tail(self, m: &Message) -> Self {
        self.put(k!("topic"), || Value::str(&*m.topic))
            .put(k!("qos"), || qos_value(m.qos))
            .put(k!("flags"), || flags(m.retain))
            .put(k!("publish_received_at"), || {
                Value::Int(i64::try_from(m.received_at_ms).unwrap_or(i64::MAX))
            })
            .put(k!("pub_props"), || pub_props(m))
    }

    fn finish_message(self, m: &Message, now: i64, node: &str) -> Self {
        self.message_tail(m)
            .put(k!("timestamp"), || Value::Int(now))
            .put(k!("node"), || node_value(node))
    }

    /// The head of `message.delivered` / `message.acked`.
    fn delivery(self, receiver: &Arc<str>, m: &Message, info: Option<&ClientInfo>) -> Self {
        self.message_head(m)
            .opt(k!("from_clientid"), m.from.as_deref())
            .opt(k!("from_username"), publisher_name(m))
            .put(k!("clientid"), || Value::str(&**receiver))
            .opt(k!("username"), info.and_then(|i| i.username.as_deref()))
            .put(k!("payload"), || Value::Bytes(m.payload.clone()))
            .peer(info)
    }

    /// `peerhost` and `peername` of a connection (`null` when unknown).
    fn peer(self, info: Option<&ClientInfo>) -> Self {
        self.put(k!("peerhost"), || {
            info.map_or(Value::Null, |i| Value::str(i.peer.ip().to_string()))
        })
        .put(k!("peername"), || info.map_or(Value::Null, peername))
    }

    fn build(mut self, kind: EventKind) -> EventContext {
        if let Some((_, v)) = self.map.get_index_mut(0) {
            *v = Value::Str(key(kind.name()));
        }
        EventContext {
            kind,
            columns: self.map,
        }
    }
}

/// A column or property name as a shared key: the names this module uses are allocated once.
fn key(name: &'static str) -> Arc<str> {
    static KEYS: LazyLock<HashMap<&'static str, Arc<str>>> = LazyLock::new(|| {
        EVENTS
            .iter()
            .flat_map(|d| d.columns.iter().map(|c| c.name).chain([d.name]))
            .chain(EXTRA_KEYS.iter().copied())
            .map(|n| (n, Arc::from(n)))
            .collect()
    });
    KEYS.get(name).cloned().unwrap_or_else(|| Arc::from(name))
}

/// Keys used by [`EventContext::from_broker_event`] that are not example columns.
const EXTRA_KEYS: &[&str] = &[
    "receive_maximum",
    "retain",
    "dup",
    "key",
    "value",
    "User-Property",
    "User-Property-Pairs",
    "Payload-Format-Indicator",
    "Message-Expiry-Interval",
    "Content-Type",
    "Response-Topic",
    "Correlation-Data",
];

/// The publisher's username, from the connection that published `m`.
fn publisher_name(m: &Message) -> Option<&str> {
    m.publisher.as_ref().and_then(|p| p.username.as_deref())
}

fn empty_map() -> Value {
    static EMPTY: LazyLock<Value> = LazyLock::new(|| Value::Map(Arc::new(Map::default())));
    EMPTY.clone()
}

fn qos_value(q: QoS) -> Value {
    Value::Int(q as i64)
}

/// `{"retain": R, "dup": false}` (shared: built once for each `retain`).
fn flags(retain: bool) -> Value {
    fn make(retain: bool) -> Value {
        let mut m = Map::default();
        m.insert(key("retain"), Value::Bool(retain));
        m.insert(key("dup"), Value::Bool(false));
        Value::Map(Arc::new(m))
    }
    static RETAINED: LazyLock<Value> = LazyLock::new(|| make(true));
    static NOT_RETAINED: LazyLock<Value> = LazyLock::new(|| make(false));
    if retain {
        RETAINED.clone()
    } else {
        NOT_RETAINED.clone()
    }
}

fn peername(c: &ClientInfo) -> Value {
    Value::str(format!("{}:{}", c.peer.ip(), c.peer.port()))
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::V3 => "MQIsdp",
        _ => "MQTT",
    }
}

/// EMQX's `printable_props`: properties by their MQTT 5 names, with `User-Property` as a map
/// (the last value of a repeated key wins) and `User-Property-Pairs` as the ordered list.
fn props_map(mut m: Map, user: &[(String, String)]) -> Value {
    let mut up = Map::default();
    let mut pairs = Vec::with_capacity(user.len());
    for (k, v) in user {
        up.insert(Arc::from(k.as_str()), Value::str(v.as_str()));
        let mut p = Map::default();
        p.insert(key("key"), Value::str(k.as_str()));
        p.insert(key("value"), Value::str(v.as_str()));
        pairs.push(Value::Map(Arc::new(p)));
    }
    m.insert(key("User-Property"), Value::Map(Arc::new(up)));
    if !pairs.is_empty() {
        m.insert(key("User-Property-Pairs"), Value::Array(Arc::new(pairs)));
    }
    Value::Map(Arc::new(m))
}

/// The node name as a value; the last name seen is cached per thread (it never changes).
fn node_value(node: &str) -> Value {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Arc<str>>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some(n) if **n == *node => Value::Str(n.clone()),
            _ => {
                let n: Arc<str> = Arc::from(node);
                *last = Some(n.clone());
                Value::Str(n)
            }
        }
    })
}

/// `{"User-Property": {}}`: the properties of a packet that has none (shared).
fn no_props() -> Value {
    static NONE: LazyLock<Value> = LazyLock::new(|| props_map(Map::default(), &[]));
    NONE.clone()
}

pub(crate) fn pub_props(msg: &Message) -> Value {
    if msg.payload_format_indicator.is_none()
        && msg.expires_at_ms.is_none()
        && msg.content_type.is_none()
        && msg.response_topic.is_none()
        && msg.correlation_data.is_none()
        && msg.user_properties.is_empty()
    {
        return no_props();
    }
    let mut m = Map::default();
    if let Some(p) = msg.payload_format_indicator {
        m.insert(key("Payload-Format-Indicator"), Value::Int(i64::from(p)));
    }
    if let Some(e) = msg.expires_at_ms {
        let secs = e.saturating_sub(msg.received_at_ms).div_ceil(1000);
        m.insert(
            key("Message-Expiry-Interval"),
            Value::Int(i64::try_from(secs).unwrap_or(i64::MAX)),
        );
    }
    if let Some(c) = &msg.content_type {
        m.insert(key("Content-Type"), Value::str(c.as_str()));
    }
    if let Some(r) = &msg.response_topic {
        m.insert(key("Response-Topic"), Value::str(r.as_str()));
    }
    if let Some(c) = &msg.correlation_data {
        let v = match std::str::from_utf8(c) {
            Ok(s) => Value::str(s),
            Err(_) => Value::Bytes(c.clone()),
        };
        m.insert(key("Correlation-Data"), v);
    }
    props_map(m, &msg.user_properties)
}

/// The CONNACK reason as EMQX names it: MQTT 5 reason codes, or the MQTT 3.1.1 return codes 1-5.
fn connack_reason(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0x01 => "unacceptable_protocol_version",
        0x02 => "client_identifier_not_valid",
        0x03 => "server_unavaliable",
        0x04 => "malformed_username_or_password",
        0x05 => "unauthorized_client",
        0x80 => "unspecified_error",
        0x81 => "malformed_packet",
        0x82 => "protocol_error",
        0x83 => "implementation_specific_error",
        0x84 => "unsupported_protocol_version",
        0x85 => "client_identifier_not_valid",
        0x86 => "bad_username_or_password",
        0x87 => "not_authorized",
        0x88 => "server_unavailable",
        0x89 => "server_busy",
        0x8A => "banned",
        0x8C => "bad_authentication_method",
        0x90 => "topic_name_invalid",
        0x95 => "packet_too_large",
        0x97 => "quota_exceeded",
        0x99 => "payload_format_invalid",
        0x9A => "retain_not_supported",
        0x9B => "qos_not_supported",
        0x9C => "use_another_server",
        0x9D => "server_moved",
        0x9F => "connection_rate_exceeded",
        _ => "unknown_error",
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An id as EMQX prints its GUIDs: 32 uppercase hex digits.
fn hex_id(id: u128) -> Value {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut buf = [b'0'; 32];
    let mut v = id;
    for b in buf.iter_mut().rev() {
        *b = HEX[(v & 0xF) as usize];
        v >>= 4;
    }
    Value::str(std::str::from_utf8(&buf).unwrap_or_default())
}

/// A fresh 128-bit id for example columns: time in the high bits, a counter in the low ones.
fn guid_seed() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos << 32) | u128::from(COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::events::{DisconnectReason, DropReason};
    use std::net::SocketAddr;

    fn keys(ctx: &EventContext) -> Vec<&str> {
        ctx.columns.keys().map(|k| &**k).collect()
    }

    #[test]
    fn every_kind_has_one_entry_and_every_topic_resolves() {
        let mut seen = std::collections::HashSet::new();
        for d in EVENTS {
            assert!(seen.insert(d.kind), "{:?} twice", d.kind);
            assert_eq!(d.kind.def().name, d.name);
            assert_eq!(d.columns.iter().filter(|c| c.name == "event").count(), 1, "{}", d.name);
            for t in d.from_topics() {
                assert_eq!(EventKind::from_topic(t), Some(d.kind), "{t}");
                assert_eq!(EventKind::parse(t), Some(d.kind), "{t}");
            }
            if d.kind != EventKind::BridgeMqtt {
                assert_eq!(EventKind::parse(d.name), Some(d.kind));
                assert_eq!(EventKind::parse(&d.event_type()), Some(d.kind));
            }
        }
    }

    #[test]
    fn emqx_names_new_and_legacy() {
        let pairs = [
            (
                "$events/client/connected",
                "$events/client_connected",
                "client.connected",
            ),
            (
                "$events/client/disconnected",
                "$events/client_disconnected",
                "client.disconnected",
            ),
            ("$events/client/connack", "$events/client_connack", "client.connack"),
            (
                "$events/auth/check_authz_complete",
                "$events/client_check_authz_complete",
                "client.check_authz_complete",
            ),
            (
                "$events/auth/check_authn_complete",
                "$events/client_check_authn_complete",
                "client.check_authn_complete",
            ),
            (
                "$events/session/subscribed",
                "$events/session_subscribed",
                "session.subscribed",
            ),
            (
                "$events/session/unsubscribed",
                "$events/session_unsubscribed",
                "session.unsubscribed",
            ),
            (
                "$events/message/delivered",
                "$events/message_delivered",
                "message.delivered",
            ),
            ("$events/message/acked", "$events/message_acked", "message.acked"),
            ("$events/message/dropped", "$events/message_dropped", "message.dropped"),
            (
                "$events/message/delivery_dropped",
                "$events/delivery_dropped",
                "delivery.dropped",
            ),
        ];
        for (new, legacy, name) in pairs {
            let k = EventKind::from_topic(new).unwrap_or_else(|| panic!("{new}"));
            assert_eq!(EventKind::from_topic(legacy), Some(k));
            assert_eq!(k.name(), name);
        }
        assert_eq!(
            EventKind::from_topic("$events/client/check_authz_complete"),
            Some(EventKind::ClientCheckAuthzComplete)
        );
        assert_eq!(EventKind::parse("message_publish"), Some(EventKind::MessagePublish));
        assert_eq!(EventKind::parse("$bridges/mqtt:b1"), Some(EventKind::BridgeMqtt));
        assert_eq!(EventKind::from_topic("$events/nope"), None);
        assert_eq!(EventKind::from_topic("$events/message_publish"), None);
    }

    #[test]
    fn wildcard_event_filters_select_like_emqx() {
        let k = EventKind::matching_filter("$events/client/+");
        assert_eq!(
            k,
            vec![
                EventKind::ClientConnected,
                EventKind::ClientDisconnected,
                EventKind::ClientConnack,
                EventKind::ClientCheckAuthzComplete,
                EventKind::ClientCheckAuthnComplete,
                EventKind::ClientPing
            ]
        );
        assert!(EventKind::matching_filter("$events/#").len() >= 12);
        assert!(EventKind::matching_filter("$events/nothing/+").is_empty());
    }

    #[test]
    fn unknown_event_suggests() {
        let e = parse_event("$events/client_conected").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown event `$events/client_conected` (did you mean `$events/client_connected`?)"
        );
        assert!(matches!(
            parse_event("$events/sys/alarm_activated"),
            Err(EventError::Unsupported(_))
        ));
    }

    #[test]
    fn examples_match_emqx_columns() {
        let c = EventContext::with_overrides(EventKind::ClientDisconnected, Map::default(), "n@h");
        assert_eq!(c.get("event"), Some(&Value::str("client.disconnected")));
        assert_eq!(c.get("reason"), Some(&Value::str("normal")));
        assert_eq!(c.get("node"), Some(&Value::str("n@h")));
        assert!(matches!(c.get("timestamp"), Some(Value::Int(t)) if *t > 0));
        let p = EventContext::with_overrides(EventKind::MessagePublish, Map::default(), "n");
        assert_eq!(
            keys(&p),
            [
                "event",
                "id",
                "clientid",
                "username",
                "payload",
                "peerhost",
                "peername",
                "topic",
                "qos",
                "flags",
                "publish_received_at",
                "pub_props",
                "timestamp",
                "node",
                "client_attrs"
            ]
        );
        let Some(Value::Str(id)) = p.get("id") else { panic!() };
        assert_eq!(id.len(), 32);
    }

    #[test]
    fn json_context_overrides_examples() {
        let ctx = EventContext::from_json(
            "client_connected",
            serde_json::json!({"event_type": "client_connected", "clientid": "abc", "extra": [1]}),
        )
        .unwrap();
        assert_eq!(ctx.kind, EventKind::ClientConnected);
        assert_eq!(ctx.get("clientid"), Some(&Value::str("abc")));
        assert_eq!(ctx.get("username"), Some(&Value::str("u_emqx")));
        assert!(ctx.get("event_type").is_none());
        assert!(ctx.get("extra").is_some());
        assert_eq!(ctx.trigger(), Trigger::Event(EventKind::ClientConnected));
        assert!(matches!(
            EventContext::from_json("message.publish", serde_json::json!([1])),
            Err(EventError::NotAnObject("an array"))
        ));
        let b = EventContext::from_json("$bridges/mqtt:b1", serde_json::json!({})).unwrap();
        assert_eq!(b.trigger(), Trigger::Bridge("b1"));
    }

    #[test]
    fn sample_is_a_publish() {
        let s = EventContext::from_sample("t/1", "{\"x\":1}", Some("c1"), None, 2);
        assert_eq!(s.trigger(), Trigger::Publish("t/1"));
        assert_eq!(s.get("clientid"), Some(&Value::str("c1")));
        assert_eq!(s.get("username"), Some(&Value::str("u_emqx")));
        assert_eq!(s.get("qos"), Some(&Value::Int(2)));
        assert_eq!(s.get("payload"), Some(&Value::str("{\"x\":1}")));
    }

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: Arc::from("c1"),
            username: Some("u1".into()),
            peer: "10.0.0.1:5555".parse::<SocketAddr>().unwrap(),
            protocol: Protocol::V5,
            keep_alive: 30,
            clean_start: true,
            expiry_interval: 60,
        }
    }

    fn message() -> Arc<Message> {
        let mut m = Message::new(
            "a/b".into(),
            Bytes::from_static(b"hi"),
            QoS::AtLeastOnce,
            true,
            Some(Arc::from("pub")),
        );
        m.user_properties = vec![("k".into(), "v1".into()), ("k".into(), "v2".into())];
        m.expires_at_ms = Some(m.received_at_ms + 30_000);
        Arc::new(m)
    }

    #[test]
    fn broker_events_become_emqx_columns() {
        let c = EventContext::from_broker_event(&BrokerEvent::ClientConnected(client()), "n1").unwrap();
        assert_eq!(c.kind, EventKind::ClientConnected);
        assert_eq!(c.get("peername"), Some(&Value::str("10.0.0.1:5555")));
        assert_eq!(c.get("proto_ver"), Some(&Value::Int(5)));
        assert_eq!(c.get("keepalive"), Some(&Value::Int(30)));
        assert_eq!(c.get("node"), Some(&Value::str("n1")));
        assert_eq!(keys(&c)[0], "event");

        let d = EventContext::from_broker_event(
            &BrokerEvent::ClientDisconnected {
                client: client(),
                reason: DisconnectReason::KeepaliveTimeout,
            },
            "n1",
        )
        .unwrap();
        assert_eq!(d.get("reason"), Some(&Value::str("keepalive_timeout")));
        assert_eq!(d.get("event"), Some(&Value::str("client.disconnected")));

        let p = EventContext::from_broker_event(&BrokerEvent::Publish(message()), "n1").unwrap();
        assert_eq!(p.trigger(), Trigger::Publish("a/b"));
        assert_eq!(p.get("clientid"), Some(&Value::str("pub")));
        assert_eq!(p.get("payload"), Some(&Value::str("hi")));
        let Some(Value::Map(props)) = p.get("pub_props") else {
            panic!()
        };
        assert_eq!(props.get("Message-Expiry-Interval"), Some(&Value::Int(30)));
        let Some(Value::Map(up)) = props.get("User-Property") else {
            panic!()
        };
        assert_eq!(up.get("k"), Some(&Value::str("v2")));
        let Some(Value::Array(pairs)) = props.get("User-Property-Pairs") else {
            panic!()
        };
        assert_eq!(pairs.len(), 2);
        let Some(Value::Map(f)) = p.get("flags") else { panic!() };
        assert_eq!(f.get("retain"), Some(&Value::Bool(true)));

        let dd = EventContext::from_broker_event(
            &BrokerEvent::DeliveryDropped {
                client_id: Arc::from("sub"),
                message: message(),
                reason: DropReason::QueueFull,
            },
            "n1",
        )
        .unwrap();
        assert_eq!(dd.get("reason"), Some(&Value::str("queue_full")));
        assert_eq!(dd.get("from_clientid"), Some(&Value::str("pub")));
        assert_eq!(dd.get("clientid"), Some(&Value::str("sub")));

        let ack = EventContext::from_broker_event(
            &BrokerEvent::ConnAck {
                client_id: Arc::from("c"),
                username: None,
                peer: "127.0.0.1:1".parse().unwrap(),
                code: 0x87,
            },
            "n1",
        )
        .unwrap();
        assert_eq!(ack.get("reason_code"), Some(&Value::str("not_authorized")));
        assert!(EventContext::from_broker_event(
            &BrokerEvent::SessionCreated {
                client_id: Arc::from("c")
            },
            "n"
        )
        .is_none());
    }
}

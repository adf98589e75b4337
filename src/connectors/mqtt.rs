//! The MQTT bridge connector (rumqttc): an egress action that publishes rule outputs to a
//! remote broker, an ingress that subscribes remote filters and feeds the rules reading
//! `$bridges/mqtt:<name>`, and a forward mode that republishes remote messages into the
//! local broker under a prefix.
//!
//! Connector file (`connectors/<name>.toml`):
//! ```toml
//! type = "mqtt"
//! server = "127.0.0.1:11883"      # host:port (default port 1883, 8883 with TLS; mqtts:// ok with TLS)
//! clientid_prefix = "junction:"   # the client id is <prefix><connector name> (default "junction:")
//! username = "bridge"             # optional
//! password = "secret"             # optional
//! keepalive = "60s"               # 0s: none
//! clean_start = false             # false: the remote broker keeps our session (and our subscriptions)
//! proto_ver = "v4"                # v4 (MQTT 3.1.1) or v5 (MQTT 5: the action's properties are sent)
//! session_expiry = "2h"           # v5 with clean_start = false: how long the remote broker keeps our session
//! max_inflight = 100              # QoS 1/2 publishes awaiting their ack
//! max_packet_size = 1048576       # largest packet sent or received
//! # ingress: messages on these remote filters feed rules `FROM "$bridges/mqtt:<name>"`
//! ingress = [{ remote = "remote/#", qos = 1 }]
//! # forward mode (no rule): remote messages republished locally under a prefix
//! forward_in = [{ remote = "x/#", local_prefix = "from-remote/", qos = 1 }]
//! # TLS (see connectors::tls): verify = false accepts any certificate
//! tls = { enable = true, verify = true, cacertfile = "ca.pem", certfile = "client.pem", keyfile = "client.key" }
//! ```
//! TLS is rumqttc's tokio-rustls 0.25 (rustls 0.22, ring) with a client config built from
//! the `tls` files ([`super::tls::mqtt_client_config`]): `cacertfile` replaces the default
//! roots (Mozilla's, webpki-roots); the name checked is the host of `server`.
//! Rule action (the keys of `republish`):
//! ```toml
//! [[rules.actions]]
//! type = "mqtt"
//! connector = "remote"
//! topic = "site1/${topic}"        # template
//! payload = "${payload}"          # template, default ${.} (the output as JSON)
//! qos = 1                         # or a template ("${qos}")
//! retain = false                  # or a template ("${flags.retain}")
//! ```
//! Forward out (local → remote) is a rule: `SELECT * FROM "a/#"` with this action and
//! `topic = "site1/${topic}"`, `payload = "${payload}"`, `qos = "${qos}"`
//! (see `examples/bridge/`).
//!
//! **Delivery.** A batch succeeds once every QoS 1 publish of it is acknowledged (PUBACK; QoS 2:
//! PUBCOMP) by the remote broker; QoS 0 once written. A lost connection fails the batches
//! waiting for acks with a retryable error, so the runtime sends them again: nothing
//! matched is lost while the remote broker is down or restarts, and a message may arrive
//! twice (at least once). The connection is kept by a task of the connector's own that
//! reconnects with backoff (a fresh client each time: no retransmission is left to the
//! client library, the runtime's retry is the only one), and re-subscribes the ingress
//! filters on every connection. A received QoS 1/2 message is acknowledged only after it
//! was handed to the rule engine (or published into the local broker), so a Junction
//! stopped in between gets it again from the remote broker (with `clean_start = false`).
//!
//! **Refusals (MQTT 5).** A PUBACK / PUBREC with a reason code >= 0x80 (not authorized,
//! topic name invalid, ...) is counted failed, non-retryable, with the reason: the queue
//! moves on. The publishes of the batch acknowledged before it count as success; those
//! after it (which the closed connection leaves unacknowledged) count as failed with it,
//! never sent again (the batch would be refused again and block the queue). The client
//! library reports the refusal without naming the packet and may report it before the
//! acks just ahead of it, so with `batch_size > 1` publishes acknowledged just before a
//! refusal can be counted failed too: the count errs toward failed, never toward silent. The client library drops the connection on such an ack without naming the
//! packet; acks come in publish order (MQTT 4.6), so the refused publish is the oldest one
//! waiting, and the other waiting batches are sent again after the reconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use rumqttc::{
    v5, AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::json;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{ActionSettings, CommonSettings, Connector, IngressSink, SendError};
use crate::config::walk::{Fields, FileError};
use crate::mqtt::message::{now_ms, Message};
use crate::mqtt::topic;
use crate::rules::actions::{parse_republish, Republish};
use crate::rules::value::{Map, Value};

/// MQTT's default port.
const DEFAULT_PORT: u16 = 1883;
/// MQTT over TLS's default port.
const DEFAULT_TLS_PORT: u16 = 8883;
/// Longest message kept from an error.
const MAX_MESSAGE: usize = 1024;

/// A remote filter to subscribe.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingress {
    pub remote: String,
    pub qos: u8,
}

/// `forward_in`: remote messages on `remote` republished locally as `<local_prefix><topic>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardIn {
    pub remote: String,
    pub local_prefix: String,
    pub qos: u8,
}

/// The settings of an MQTT connector.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keepalive: Duration,
    pub clean_start: bool,
    /// MQTT 5 (else 3.1.1).
    pub v5: bool,
    /// MQTT 5: seconds the remote broker keeps our session after a disconnect (`clean_start = false`).
    pub session_expiry: u32,
    pub max_inflight: u16,
    pub max_packet_size: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub ingress: Vec<Ingress>,
    pub forward_in: Vec<ForwardIn>,
}

/// The MQTT egress action: a `republish`-shaped template set.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttAction(pub Republish);

impl ActionSettings for MqttAction {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Told when a publish is settled: `Err` carries the remote broker's refusal.
type Waiter = oneshot::Sender<Result<(), String>>;

/// The waiters of the publishes of one connection.
#[derive(Default)]
struct Acks {
    /// Publishes handed to the client, not yet written (in the order they were handed over).
    queued: VecDeque<Waiter>,
    /// Written QoS 1/2 publishes by packet id (with their write order), awaiting PUBACK / PUBCOMP.
    inflight: HashMap<u16, VecDeque<(u64, Waiter)>>,
    /// A publish the client holds back because its packet id is still in flight.
    collided: Option<(u16, Waiter)>,
    /// Write order.
    seq: u64,
    /// The connection is gone: every waiter was dropped (its sender sees an error).
    dead: bool,
}

impl Acks {
    fn written(&mut self, pkid: u16) {
        let w = match self.collided.take() {
            Some((id, w)) if id == pkid => Some(w),
            other => {
                self.collided = other;
                self.queued.pop_front()
            }
        };
        let Some(w) = w else { return };
        if pkid == 0 {
            let _ = w.send(Ok(()));
        } else {
            self.seq += 1;
            self.inflight.entry(pkid).or_default().push_back((self.seq, w));
        }
    }

    fn held_back(&mut self, pkid: u16) {
        if let Some(w) = self.queued.pop_front() {
            self.collided = Some((pkid, w));
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(q) = self.inflight.get_mut(&pkid) {
            if let Some((_, w)) = q.pop_front() {
                let _ = w.send(Ok(()));
            }
            if q.is_empty() {
                self.inflight.remove(&pkid);
            }
        }
    }

    /// The remote broker refused a publish (MQTT 5 reason code >= 0x80). The client library
    /// does not say which; acks come in the order of the publishes (MQTT 4.6), so it is the
    /// oldest one still waiting.
    fn refused(&mut self, why: String) {
        let oldest = self
            .inflight
            .iter()
            .filter_map(|(pkid, q)| q.front().map(|(seq, _)| (*seq, *pkid)))
            .min();
        if let Some((_, pkid)) = oldest {
            if let Some((_, w)) = self.inflight.get_mut(&pkid).and_then(VecDeque::pop_front) {
                let _ = w.send(Err(why));
            }
        }
    }

    fn kill(&mut self) {
        self.dead = true;
        self.queued.clear();
        self.inflight.clear();
        self.collided = None;
    }
}

/// A client of either protocol version.
#[derive(Clone)]
enum Client {
    V4(AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    async fn publish(&self, m: Message) -> Result<(), String> {
        let topic = m.topic.to_string();
        match self {
            Client::V4(c) => c
                .publish_bytes(topic, rumqttc_qos(m.qos as u8), m.retain, m.payload)
                .await
                .map_err(|e| e.to_string()),
            Client::V5(c) => {
                let props = v5::mqttbytes::v5::PublishProperties {
                    payload_format_indicator: m.payload_format_indicator,
                    message_expiry_interval: m
                        .expires_at_ms
                        .map(|e| u32::try_from(e.saturating_sub(m.received_at_ms).div_ceil(1000)).unwrap_or(u32::MAX)),
                    response_topic: m.response_topic.as_ref().map(ToString::to_string),
                    correlation_data: m.correlation_data.clone(),
                    user_properties: m.user_properties.clone(),
                    content_type: m.content_type.as_ref().map(ToString::to_string),
                    ..Default::default()
                };
                c.publish_bytes_with_properties(topic, v5_qos(m.qos as u8), m.retain, m.payload, props)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn subscribe(&self, filters: &[(String, u8)]) -> Result<(), String> {
        if filters.is_empty() {
            return Ok(());
        }
        match self {
            Client::V4(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| rumqttc::SubscribeFilter::new(f.clone(), rumqttc_qos(*q))),
                )
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|(f, q)| v5::mqttbytes::v5::Filter::new(f.clone(), v5_qos(*q))),
                )
                .map_err(|e| e.to_string()),
        }
    }

    fn try_disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        };
    }
}

/// The current connection.
#[derive(Clone)]
struct Live {
    client: Client,
    acks: Arc<Mutex<Acks>>,
}

struct Inner {
    s: Settings,
    live: Mutex<Option<Live>>,
    connected: watch::Sender<bool>,
    last_error: Mutex<Option<String>>,
    sink: watch::Sender<Option<Arc<dyn IngressSink>>>,
    /// Keeps the order of publishes handed to the client equal to the order of their waiters.
    send_lock: tokio::sync::Mutex<()>,
    /// The connection task, while it runs.
    task: Mutex<Option<CancellationToken>>,
    /// `tls.enable = true`: the rustls config of the connections.
    tls: Option<Arc<rumqttc::tokio_rustls::rustls::ClientConfig>>,
}

/// An MQTT bridge connector.
pub struct Mqtt {
    inner: Arc<Inner>,
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

/// `host[:port]`, also written `mqtt://host:port` or `tcp://host:port` (with TLS also
/// `mqtts://` or `ssl://`).
fn parse_server(s: &str, tls: bool) -> Result<(String, u16), String> {
    let s = s.trim();
    let (rest, scheme_tls) = if let Some(r) = s.strip_prefix("mqtt://").or_else(|| s.strip_prefix("tcp://")) {
        (r, Some(false))
    } else if let Some(r) = s.strip_prefix("mqtts://").or_else(|| s.strip_prefix("ssl://")) {
        (r, Some(true))
    } else {
        (s, None)
    };
    match scheme_tls {
        Some(true) if !tls => return Err("an mqtts:// server needs `tls = { enable = true }`".into()),
        Some(false) if tls => return Err("TLS is enabled: write the server without mqtt:// or tcp://".into()),
        _ => {}
    }
    crate::connectors::file::host_port(rest, if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT })
}

fn qos_of(f: &mut Fields<'_, '_>, default: u8) -> Result<u8, FileError> {
    match f.int("qos")? {
        None => Ok(default),
        Some(q @ 0..=2) => Ok(q as u8),
        Some(q) => Err(f.error("qos", format!("{q} is not a QoS (0, 1 or 2)"))),
    }
}

fn filter_of(f: &mut Fields<'_, '_>, key: &'static str) -> Result<String, FileError> {
    let v = f.req_string(key)?;
    topic::validate_filter(&v.value, topic::TopicLimits::default())
        .map_err(|e| f.error(key, format!("not a valid topic filter: {e}")))?;
    Ok(v.value)
}

/// Parses an MQTT connector (the registry's entry).
pub fn parse(f: &mut Fields<'_, '_>, common: &CommonSettings) -> Result<Arc<dyn Connector>, FileError> {
    let name = common
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tls_on = super::tls::enabled(&common.tls).map_err(|r| f.error(r.key, r.message))?;
    let server = f
        .string("server")?
        .map(|s| s.value)
        .unwrap_or_else(|| "127.0.0.1".into());
    let (host, port) = parse_server(&server, tls_on).map_err(|e| f.error("server", e))?;
    let prefix = f
        .string("clientid_prefix")?
        .map(|s| s.value)
        .unwrap_or_else(|| "junction:".into());
    let client_id = format!("{prefix}{name}");
    if client_id.len() > 65_535 {
        return Err(f.error("clientid_prefix", "the client id is too long"));
    }
    let username = f.string("username")?.map(|s| s.value);
    let password = f.string("password")?.map(|s| s.value);
    if password.is_some() && username.is_none() {
        return Err(f.error("password", "a password needs a `username`"));
    }
    let keepalive = super::file::duration(f, "keepalive")?.unwrap_or(Duration::from_secs(60));
    if !keepalive.is_zero() && (keepalive < Duration::from_secs(1) || keepalive > Duration::from_secs(65_535)) {
        return Err(f.error("keepalive", "must be 0s (none) or between 1s and 65535s"));
    }
    let keepalive = Duration::from_secs(keepalive.as_secs());
    let clean_start = f.bool("clean_start")?.unwrap_or(false);
    let v5 = match f.string("proto_ver")?.map(|s| s.value) {
        None => false,
        Some(v) if v == "v4" || v == "v3.1.1" => false,
        Some(v) if v == "v5" => true,
        Some(v) => return Err(f.error("proto_ver", format!("unknown protocol version `{v}`; known: v4, v5"))),
    };
    let session_expiry = match super::file::duration(f, "session_expiry")? {
        None => 7200,
        Some(d) => u32::try_from(d.as_secs()).map_err(|_| f.error("session_expiry", "too long"))?,
    };
    let max_inflight = super::file::count(f, "max_inflight", 1, 65_535)?.unwrap_or(100) as u16;
    let max_packet_size = super::file::count(f, "max_packet_size", 64, 268_435_455)?.unwrap_or(1 << 20);
    let tls = if tls_on {
        Some(super::tls::mqtt_client_config(&common.tls).map_err(|e| f.error("tls", e))?)
    } else {
        None
    };
    let mut ingress = Vec::new();
    for mut t in f.tables("ingress")? {
        let remote = filter_of(&mut t, "remote")?;
        let qos = qos_of(&mut t, 1)?;
        t.finish()?;
        ingress.push(Ingress { remote, qos });
    }
    let mut forward_in = Vec::new();
    for mut t in f.tables("forward_in")? {
        let remote = filter_of(&mut t, "remote")?;
        let local_prefix = t.string("local_prefix")?.map(|s| s.value).unwrap_or_default();
        if local_prefix.contains(['+', '#', '\0']) {
            return Err(t.error("local_prefix", "a topic prefix must not contain `+`, `#` or NUL"));
        }
        let qos = qos_of(&mut t, 1)?;
        t.finish()?;
        forward_in.push(ForwardIn {
            remote,
            local_prefix,
            qos,
        });
    }
    if f.any("forward_out")?.is_some() {
        return Err(f.error(
            "forward_out",
            "forward out is a rule: SELECT * FROM \"<local filter>\" with an mqtt action, \
             topic = \"<remote prefix>${topic}\", payload = \"${payload}\" (see examples/bridge/)",
        ));
    }
    let (connected, _) = watch::channel(false);
    let (sink, _) = watch::channel(None);
    Ok(Arc::new(Mqtt {
        inner: Arc::new(Inner {
            s: Settings {
                name,
                host,
                port,
                client_id,
                username,
                password,
                keepalive,
                clean_start,
                v5,
                session_expiry,
                max_inflight,
                max_packet_size,
                connect_timeout: common.connect_timeout,
                request_timeout: common.request_timeout,
                ingress,
                forward_in,
            },
            live: Mutex::new(None),
            connected,
            last_error: Mutex::new(None),
            sink,
            send_lock: tokio::sync::Mutex::new(()),
            task: Mutex::new(None),
            tls,
        }),
    }))
}

fn rumqttc_qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn v5_qos(q: u8) -> v5::mqttbytes::QoS {
    match q {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        1 => v5::mqttbytes::QoS::AtLeastOnce,
        _ => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase()
}

impl Inner {
    fn server(&self) -> String {
        format!("{}:{}", self.s.host, self.s.port)
    }

    fn filters(&self) -> Vec<(String, u8)> {
        self.s
            .ingress
            .iter()
            .map(|i| (i.remote.clone(), i.qos))
            .chain(self.s.forward_in.iter().map(|i| (i.remote.clone(), i.qos)))
            .collect()
    }

    fn options_v4(&self) -> MqttOptions {
        let s = &self.s;
        let mut o = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        o.set_keep_alive(s.keepalive);
        o.set_clean_session(s.clean_start);
        o.set_manual_acks(true);
        o.set_inflight(s.max_inflight);
        o.set_max_packet_size(s.max_packet_size, s.max_packet_size);
        if let Some(u) = &s.username {
            o.set_credentials(u.clone(), s.password.clone().unwrap_or_default());
        }
        if let Some(c) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(c.clone())));
        }
        o
    }

    fn options_v5(&self) -> v5::MqttOptions {
        let s = &self.s;
        let mut o = v5::MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        o.set_keep_alive(s.keepalive);
        o.set_clean_start(s.clean_start);
        o.set_manual_acks(true);
        let mut props = v5::mqttbytes::v5::ConnectProperties::new();
        // A session kept by the remote broker needs an expiry interval in MQTT 5.
        props.session_expiry_interval = (!s.clean_start).then_some(s.session_expiry);
        o.set_connect_properties(props);
        o.set_max_packet_size(Some(u32::try_from(s.max_packet_size).unwrap_or(u32::MAX)));
        o.set_outgoing_inflight_upper_limit(s.max_inflight);
        o.set_connection_timeout(s.connect_timeout.as_secs().max(1));
        if let Some(u) = &s.username {
            o.set_credentials(u.clone(), s.password.clone().unwrap_or_default());
        }
        if let Some(c) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(c.clone())));
        }
        o
    }

    /// Keeps a connection: connects, drives it, reconnects with backoff, until `stop`.
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            let acks = Arc::new(Mutex::new(Acks::default()));
            let (client, err) = if self.s.v5 {
                let (client, mut el) = v5::AsyncClient::new(self.options_v5(), 10);
                let c = Client::V5(client);
                tokio::select! {
                    e = self.drive_v5(&c, &mut el, &acks, &mut delay) => (c, Some(e)),
                    () = stop.cancelled() => {
                        c.try_disconnect();
                        let _ = tokio::time::timeout(Duration::from_millis(200), async {
                            while el.poll().await.is_ok() {}
                        })
                        .await;
                        (c, None)
                    }
                }
            } else {
                let (client, mut el) = AsyncClient::new(self.options_v4(), 10);
                let mut net = NetworkOptions::new();
                net.set_connection_timeout(self.s.connect_timeout.as_secs().max(1));
                el.set_network_options(net);
                let c = Client::V4(client);
                tokio::select! {
                    e = self.drive_v4(&c, &mut el, &acks, &mut delay) => (c, Some(e)),
                    () = stop.cancelled() => {
                        c.try_disconnect();
                        // Let the DISCONNECT out (bounded).
                        let _ = tokio::time::timeout(Duration::from_millis(200), async {
                            while el.poll().await.is_ok() {}
                        })
                        .await;
                        (c, None)
                    }
                }
            };
            drop(client);
            let stopped = err.is_none();
            self.down(&acks, err);
            if stopped {
                return;
            }
            let wait = {
                use rand::Rng;
                let ms = delay.as_millis() as u64;
                Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms.max(1)))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    fn down(&self, acks: &Mutex<Acks>, err: Option<String>) {
        *self.live.lock() = None;
        acks.lock().kill();
        let was = self.connected.send_replace(false);
        if let Some(e) = err {
            if was {
                tracing::warn!(connector = %self.s.name, server = %self.server(), error = %e, "MQTT bridge disconnected.");
            }
            *self.last_error.lock() = Some(e);
        }
    }

    /// The CONNACK: subscribe, and the connection is usable.
    fn up(&self, client: &Client, acks: &Arc<Mutex<Acks>>, delay: &mut Duration) -> Result<(), String> {
        client
            .subscribe(&self.filters())
            .map_err(|e| clip(format!("cannot subscribe: {e}")))?;
        *self.live.lock() = Some(Live {
            client: client.clone(),
            acks: acks.clone(),
        });
        *delay = Duration::from_millis(100);
        *self.last_error.lock() = None;
        self.connected.send_replace(true);
        tracing::info!(connector = %self.s.name, server = %self.server(), "MQTT bridge connected.");
        Ok(())
    }

    /// Drives one MQTT 3.1.1 connection until it fails; returns why.
    async fn drive_v4(
        &self,
        client: &Client,
        el: &mut EventLoop,
        acks: &Arc<Mutex<Acks>>,
        delay: &mut Duration,
    ) -> String {
        // Acks of received messages, sent once they are handed over (in order).
        let mut to_ack: VecDeque<rumqttc::Publish> = VecDeque::new();
        loop {
            if let Client::V4(c) = client {
                while let Some(p) = to_ack.front() {
                    if c.try_ack(p).is_err() {
                        break;
                    }
                    to_ack.pop_front();
                }
            }
            let ev = match el.poll().await {
                Ok(ev) => ev,
                Err(e) => return clip(format!("connection to {} failed: {e}", self.server())),
            };
            match ev {
                Event::Incoming(Packet::ConnAck(_)) => {
                    if let Err(e) = self.up(client, acks, delay) {
                        return e;
                    }
                }
                Event::Outgoing(Outgoing::Publish(pkid)) => acks.lock().written(pkid),
                Event::Outgoing(Outgoing::AwaitAck(pkid)) => acks.lock().held_back(pkid),
                Event::Incoming(Packet::PubAck(a)) => acks.lock().acked(a.pkid),
                Event::Incoming(Packet::PubComp(a)) => acks.lock().acked(a.pkid),
                Event::Incoming(Packet::SubAck(a))
                    if a.return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) =>
                {
                    tracing::warn!(connector = %self.s.name, "The remote broker refused a bridge subscription.");
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let qos =
                        crate::mqtt::codec::QoS::from_u8(p.qos as u8).unwrap_or(crate::mqtt::codec::QoS::AtMostOnce);
                    let msg = Message::new(p.topic.as_str().into(), p.payload.clone(), qos, p.retain, None);
                    self.received(msg, p.dup).await;
                    to_ack.push_back(p);
                }
                _ => {}
            }
        }
    }

    /// Drives one MQTT 5 connection until it fails; returns why.
    async fn drive_v5(
        &self,
        client: &Client,
        el: &mut v5::EventLoop,
        acks: &Arc<Mutex<Acks>>,
        delay: &mut Duration,
    ) -> String {
        use v5::mqttbytes::v5::Packet as P;
        // Acks of received messages, sent once they are handed over (in order).
        let mut to_ack: VecDeque<v5::mqttbytes::v5::Publish> = VecDeque::new();
        loop {
            if let Client::V5(c) = client {
                while let Some(p) = to_ack.front() {
                    if c.try_ack(p).is_err() {
                        break;
                    }
                    to_ack.pop_front();
                }
            }
            let ev = match el.poll().await {
                Ok(ev) => ev,
                Err(v5::ConnectionError::MqttState(v5::StateError::PubAckFail { reason })) => {
                    acks.lock()
                        .refused(format!("the remote broker refused the message: {reason:?}"));
                    return format!("the remote broker refused a message ({reason:?}); reconnecting");
                }
                Err(v5::ConnectionError::MqttState(v5::StateError::PubRecFail { reason })) => {
                    acks.lock()
                        .refused(format!("the remote broker refused the message: {reason:?}"));
                    return format!("the remote broker refused a message ({reason:?}); reconnecting");
                }
                Err(e) => return clip(format!("connection to {} failed: {e}", self.server())),
            };
            match ev {
                v5::Event::Incoming(P::ConnAck(_)) => {
                    if let Err(e) = self.up(client, acks, delay) {
                        return e;
                    }
                }
                v5::Event::Outgoing(Outgoing::Publish(pkid)) => acks.lock().written(pkid),
                v5::Event::Outgoing(Outgoing::AwaitAck(pkid)) => acks.lock().held_back(pkid),
                v5::Event::Incoming(P::PubAck(a)) => acks.lock().acked(a.pkid),
                v5::Event::Incoming(P::PubComp(a)) => acks.lock().acked(a.pkid),
                v5::Event::Incoming(P::Publish(p)) => {
                    let Ok(topic) = std::str::from_utf8(&p.topic) else {
                        to_ack.push_back(p);
                        continue;
                    };
                    let qos =
                        crate::mqtt::codec::QoS::from_u8(p.qos as u8).unwrap_or(crate::mqtt::codec::QoS::AtMostOnce);
                    let mut msg = Message::new(topic.into(), p.payload.clone(), qos, p.retain, None);
                    if let Some(props) = p.properties.clone() {
                        msg.payload_format_indicator = props.payload_format_indicator;
                        msg.expires_at_ms = props
                            .message_expiry_interval
                            .map(|s| msg.received_at_ms + u64::from(s) * 1000);
                        msg.content_type = props.content_type;
                        msg.response_topic = props.response_topic;
                        msg.correlation_data = props.correlation_data;
                        msg.user_properties = props.user_properties;
                    }
                    self.received(msg, p.dup).await;
                    to_ack.push_back(p);
                }
                _ => {}
            }
        }
    }

    /// A message from the remote broker: to the rules (ingress) and the broker (forward_in).
    async fn received(&self, msg: Message, dup: bool) {
        let topic: &str = &msg.topic;
        let to_rules = self.s.ingress.iter().any(|i| topic::matches(&i.remote, topic));
        let forwards: Vec<&ForwardIn> = self
            .s
            .forward_in
            .iter()
            .filter(|f| topic::matches(&f.remote, topic))
            .collect();
        if !to_rules && forwards.is_empty() {
            return;
        }
        // Before the engine is attached (start-up), wait for it: the message is not dropped.
        let mut rx = self.sink.subscribe();
        let sink = match rx.wait_for(Option::is_some).await {
            Ok(s) => s.clone(),
            Err(_) => return,
        };
        let Some(sink) = sink else { return };
        if to_rules {
            let now = now_ms() as i64;
            let mut c = Map::default();
            c.insert(Arc::from("event"), Value::Null);
            c.insert(Arc::from("id"), Value::str(hex_id()));
            c.insert(Arc::from("payload"), Value::Bytes(msg.payload.clone()));
            c.insert(Arc::from("server"), Value::str(self.server()));
            c.insert(Arc::from("topic"), Value::str(topic));
            c.insert(Arc::from("qos"), Value::Int(msg.qos as i64));
            c.insert(Arc::from("dup"), Value::Bool(dup));
            c.insert(Arc::from("retain"), Value::Bool(msg.retain));
            c.insert(Arc::from("pub_props"), crate::rules::events::pub_props(&msg));
            c.insert(Arc::from("message_received_at"), Value::Int(now));
            c.insert(Arc::from("timestamp"), Value::Int(now));
            c.insert(Arc::from("node"), Value::Null);
            sink.bridge_message(&self.s.name, c);
        }
        for f in forwards {
            let local = format!("{}{}", f.local_prefix, topic);
            if topic::validate_name(&local, topic::TopicLimits::default()).is_err() {
                continue;
            }
            let mut m = msg.clone();
            m.topic = local.into();
            m.qos = crate::mqtt::codec::QoS::from_u8((msg.qos as u8).min(f.qos))
                .unwrap_or(crate::mqtt::codec::QoS::AtMostOnce);
            sink.publish_local(m);
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<(), SendError> {
        {
            let mut task = self.task.lock();
            if task.is_none() {
                let stop = CancellationToken::new();
                tokio::spawn(self.clone().run(stop.clone()));
                *task = Some(stop);
            }
        }
        let mut rx = self.connected.subscribe();
        let wait = self.s.connect_timeout.mul_f32(0.9);
        let up = tokio::time::timeout(wait, async { rx.wait_for(|c| *c).await.is_ok() })
            .await
            .unwrap_or(false);
        if up {
            return Ok(());
        }
        Err(SendError::disconnected(
            self.last_error
                .lock()
                .clone()
                .unwrap_or_else(|| format!("cannot connect to {}", self.server())),
        ))
    }

    async fn send(&self, a: &MqttAction, batch: &[Arc<Map>]) -> Result<(), SendError> {
        let mut msgs = Vec::with_capacity(batch.len());
        for out in batch {
            let m = a.0.render(out).map_err(SendError::fatal)?;
            msgs.push(m);
        }
        let Some(live) = self.live.lock().clone() else {
            return Err(SendError::disconnected(format!("not connected to {}", self.server())));
        };
        let mut waits = Vec::with_capacity(msgs.len());
        {
            let _order = self.send_lock.lock().await;
            for m in msgs {
                let (tx, rx) = oneshot::channel();
                {
                    let mut acks = live.acks.lock();
                    if acks.dead {
                        return Err(SendError::disconnected(format!("connection to {} lost", self.server())));
                    }
                    acks.queued.push_back(tx);
                }
                waits.push(rx);
                live.client
                    .publish(m)
                    .await
                    .map_err(|e| SendError::disconnected(clip(format!("connection to {} lost: {e}", self.server()))))?;
            }
        }
        let all = async {
            let total = waits.len();
            let mut acked = 0;
            for rx in waits {
                match rx.await {
                    Ok(Ok(())) => acked += 1,
                    // Refused: the remote broker (or the client library) closes the
                    // connection, so the publishes after it in this batch get no ack. They
                    // are counted failed with it rather than retried: sending the batch
                    // again would be refused again, and the queue must move on.
                    Ok(Err(why)) => {
                        let rest = total - acked;
                        return Err(SendError::fatal(clip(if rest > 1 {
                            format!(
                                "{why} (and the {} publishes after it in the batch, unacknowledged)",
                                rest - 1
                            )
                        } else {
                            why
                        }))
                        .partial(rest));
                    }
                    Err(_) => {
                        return Err(SendError::disconnected(format!(
                            "connection to {} lost before the ack",
                            self.server()
                        )))
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(self.s.request_timeout, all).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "no ack from {} within {:?}",
                self.server(),
                self.s.request_timeout
            ))),
        }
    }
}

fn action(a: &dyn ActionSettings) -> Result<&MqttAction, SendError> {
    a.as_any()
        .downcast_ref::<MqttAction>()
        .ok_or_else(|| SendError::fatal("not an mqtt action"))
}

impl Connector for Mqtt {
    fn connect(&self) -> BoxFuture<'_, Result<(), SendError>> {
        self.inner.connect().boxed()
    }

    fn send_batch<'a>(
        &'a self,
        a: &'a dyn ActionSettings,
        batch: &'a [Arc<Map>],
    ) -> BoxFuture<'a, Result<(), SendError>> {
        async move { self.inner.send(action(a)?, batch).await }.boxed()
    }

    fn health_check(&self) -> BoxFuture<'_, Result<(), SendError>> {
        async move {
            if *self.inner.connected.borrow() {
                Ok(())
            } else {
                Err(SendError::disconnected(
                    self.inner
                        .last_error
                        .lock()
                        .clone()
                        .unwrap_or_else(|| format!("not connected to {}", self.inner.server())),
                ))
            }
        }
        .boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            if let Some(stop) = self.inner.task.lock().take() {
                stop.cancel();
            }
        }
        .boxed()
    }

    fn parse_action(&self, f: &mut Fields<'_, '_>) -> Result<Arc<dyn ActionSettings>, FileError> {
        Ok(Arc::new(MqttAction(parse_republish(f)?)))
    }

    fn preview(&self, a: &dyn ActionSettings, out: &Map) -> serde_json::Value {
        let Ok(a) = action(a) else {
            return json!({"type": "mqtt", "error": "not an mqtt action"});
        };
        match a.0.render(out) {
            Ok(m) => json!({
                "type": "mqtt",
                "server": self.inner.server(),
                "topic": &*m.topic,
                "qos": m.qos as u8,
                "retain": m.retain,
                "payload": String::from_utf8_lossy(&m.payload),
            }),
            Err(e) => json!({"type": "mqtt", "server": self.inner.server(), "error": e}),
        }
    }

    fn set_ingress(&self, sink: Arc<dyn IngressSink>) {
        self.inner.sink.send_replace(Some(sink));
    }

    fn feeds_rules(&self) -> bool {
        !self.inner.s.ingress.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<crate::connectors::ConnectorDef, FileError> {
        crate::connectors::file::load_str(std::path::Path::new("connectors/remote.toml"), text)
    }

    #[test]
    fn reads_an_mqtt_file_and_errors_have_positions() {
        let d = load(
            "type = \"mqtt\"\nserver = \"127.0.0.1:11883\"\nclientid_prefix = \"j-\"\nusername = \"u\"\npassword = \"p\"\n\
             keepalive = \"30s\"\nclean_start = true\nproto_ver = \"v4\"\n\
             ingress = [{ remote = \"remote/#\", qos = 1 }]\nforward_in = [{ remote = \"x/#\", local_prefix = \"from-remote/\" }]\n",
        )
        .unwrap();
        assert_eq!(d.kind, "mqtt");
        let e = load("type = \"mqtt\"\nserver = \"h:x\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 10), "{e}");
        let e = load("type = \"mqtt\"\ningress = [{ remote = \"a/#/b\" }]\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("not a valid topic filter"), "{e}");
        let e = load("type = \"mqtt\"\ningress = [{ remote = \"a/#\", qos = 3 }]\n").unwrap_err();
        assert!(e.message.contains("not a QoS"), "{e}");
        let d = load("type = \"mqtt\"\nproto_ver = \"v5\"\nsession_expiry = \"1h\"\n").unwrap();
        assert_eq!(d.kind, "mqtt");
        let e = load("type = \"mqtt\"\nproto_ver = \"v6\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 13), "{e}");
        let e = load("type = \"mqtt\"\nkeepalive = \"100ms\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = load("type = \"mqtt\"\nforward_in = [{ remote = \"x/#\", local_prefx = \"a/\" }]\n").unwrap_err();
        assert!(e.message.contains("unknown key `local_prefx`"), "{e}");
        let e = load("type = \"mqtt\"\nforward_out = [{ local = \"a/#\", remote_prefix = \"s/\" }]\n").unwrap_err();
        assert!(e.message.contains("forward out is a rule"), "{e}");
        let d = load("type = \"mqtt\"\nserver = \"mqtts://h\"\ntls = { enable = true, verify = false }\n").unwrap();
        assert_eq!(d.kind, "mqtt");
        let e = load("type = \"mqtt\"\nserver = \"mqtts://h\"\n").unwrap_err();
        assert!(e.message.contains("needs `tls = { enable = true }`"), "{e}");
        let e = load("type = \"mqtt\"\ntls = { enable = true, certfile = \"/nonexistent/c.pem\", keyfile = \"k\" }\n")
            .unwrap_err();
        assert_eq!((e.line, e.col), (2, 35), "{e}");
        assert!(e.message.contains("cannot read /nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn a_rule_reading_an_unknown_bridge_is_refused_with_its_position() {
        let defs = vec![
            load("type = \"mqtt\"\ningress = [{ remote = \"r/#\" }]\n").unwrap(),
            crate::connectors::file::load_str(std::path::Path::new("connectors/out_only.toml"), "type = \"mqtt\"\n")
                .unwrap(),
        ];
        let set = crate::connectors::ConnectorSet::start(defs, CancellationToken::new());
        let rule = |from: &str| {
            let text = format!("[[rules]]\nid = \"r\"\nsql = 'SELECT * FROM \"{from}\"'\n");
            crate::rules::file::load_str_with(
                std::path::Path::new("rules/r.toml"),
                &text,
                &crate::rules::compile::CompileOptions::default(),
                &set,
            )
        };
        assert!(rule("$bridges/mqtt:remote").is_ok());
        let e = rule("$bridges/mqtt:remot").unwrap_err();
        assert_eq!((e[0].line, e[0].col), (3, 23), "{}", e[0]);
        assert!(
            e[0].message.contains("no MQTT bridge `remot`")
                && e[0].message.contains("mqtt connectors: out_only, remote"),
            "{}",
            e[0]
        );
        let e = rule("$bridges/mqtt:out_only").unwrap_err();
        assert!(e[0].message.contains("has no `ingress`"), "{}", e[0]);
    }

    #[test]
    fn servers_parse() {
        assert_eq!(
            parse_server("127.0.0.1:11883", false).unwrap(),
            ("127.0.0.1".into(), 11883)
        );
        assert_eq!(parse_server("mqtt://broker", false).unwrap(), ("broker".into(), 1883));
        assert_eq!(parse_server("[::1]:1884", false).unwrap(), ("::1".into(), 1884));
        assert!(parse_server("::1", false).is_err());
        assert!(parse_server("h:0", false).is_err());
        assert_eq!(parse_server("broker", true).unwrap(), ("broker".into(), 8883));
        assert_eq!(
            parse_server("mqtts://broker:8884", true).unwrap(),
            ("broker".into(), 8884)
        );
        assert!(parse_server("mqtts://broker", false).is_err());
        assert!(parse_server("tcp://broker", true).is_err());
    }

    #[test]
    fn acks_follow_packet_ids_and_collisions() {
        let mut a = Acks::default();
        let mut rxs = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            a.queued.push_back(tx);
            rxs.push(rx);
        }
        a.written(1);
        a.written(0); // QoS 0: done when written
        assert!(rxs[1].try_recv().is_ok());
        a.held_back(1); // the 3rd waits for packet id 1
        a.written(2);
        a.written(1); // the held-back one, written after 1 was acked... (events come first)
        a.acked(1);
        assert!(rxs[0].try_recv().is_ok());
        assert!(rxs[2].try_recv().is_err());
        a.acked(1);
        assert!(rxs[2].try_recv().is_ok());
        a.acked(2);
        assert!(rxs[3].try_recv().is_ok());
        // A refusal goes to the oldest publish waiting.
        let (t1, mut r1) = oneshot::channel();
        let (t2, mut r2) = oneshot::channel();
        a.queued.push_back(t1);
        a.queued.push_back(t2);
        a.written(7);
        a.written(3);
        a.refused("NotAuthorized".into());
        assert_eq!(r1.try_recv(), Ok(Err("NotAuthorized".to_string())));
        assert!(r2.try_recv().is_err());
        let (tx, mut rx) = oneshot::channel();
        a.queued.push_back(tx);
        a.kill();
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
    }
}

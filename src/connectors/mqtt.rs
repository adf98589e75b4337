//! The MQTT bridge connector (rumqttc): an egress action that publishes rule outputs to a
//! remote broker, an ingress that subscribes remote filters and feeds the rules reading
//! `$bridges/mqtt:<name>`, and a forward mode that republishes remote messages into the
//! local broker under a prefix.
//!
//! Connector file (`connectors/<name>.toml`):
//! ```toml
//! type = "mqtt"
//! server = "127.0.0.1:11883"      # host:port (default port 1883)
//! clientid_prefix = "junction:"   # the client id is <prefix><connector name> (default "junction:")
//! username = "bridge"             # optional
//! password = "secret"             # optional
//! keepalive = "60s"               # 0s: none
//! clean_start = false             # false: the remote broker keeps our session (and our subscriptions)
//! proto_ver = "v4"                # v4 (MQTT 3.1.1); v5 is not supported yet
//! max_inflight = 100              # QoS 1/2 publishes awaiting their ack
//! max_packet_size = 1048576       # largest packet sent or received
//! # ingress: messages on these remote filters feed rules `FROM "$bridges/mqtt:<name>"`
//! ingress = [{ remote = "remote/#", qos = 1 }]
//! # forward mode (no rule): remote messages republished locally under a prefix
//! forward_in = [{ remote = "x/#", local_prefix = "from-remote/", qos = 1 }]
//! ```
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
//! filters on every connection. Ingress messages are acknowledged by the client library
//! once received; they are handed to the rule engine (or the broker) before the next
//! packet is read.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet, QoS};
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

/// The waiters of the publishes of one connection.
#[derive(Default)]
struct Acks {
    /// Publishes handed to the client, not yet written (in the order they were handed over).
    queued: VecDeque<oneshot::Sender<()>>,
    /// Written QoS 1/2 publishes by packet id, awaiting PUBACK / PUBCOMP.
    inflight: HashMap<u16, VecDeque<oneshot::Sender<()>>>,
    /// A publish the client holds back because its packet id is still in flight.
    collided: Option<(u16, oneshot::Sender<()>)>,
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
            let _ = w.send(());
        } else {
            self.inflight.entry(pkid).or_default().push_back(w);
        }
    }

    fn held_back(&mut self, pkid: u16) {
        if let Some(w) = self.queued.pop_front() {
            self.collided = Some((pkid, w));
        }
    }

    fn acked(&mut self, pkid: u16) {
        if let Some(q) = self.inflight.get_mut(&pkid) {
            if let Some(w) = q.pop_front() {
                let _ = w.send(());
            }
            if q.is_empty() {
                self.inflight.remove(&pkid);
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

/// The current connection.
#[derive(Clone)]
struct Live {
    client: AsyncClient,
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

/// `host:port`, `[v6]:port` or `host` (port 1883); an `mqtt://` scheme is accepted.
fn parse_server(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let s = s
        .strip_prefix("mqtt://")
        .or_else(|| s.strip_prefix("tcp://"))
        .unwrap_or(s);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("expected `[ipv6]:port`".into());
        };
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err("expected `[ipv6]:port`".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err("an IPv6 address needs brackets: `[::1]:1883`".into()),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("expected `host:port`".into());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port `{p}`"))?,
    };
    Ok((host.to_string(), port))
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
    let server = f
        .string("server")?
        .map(|s| s.value)
        .unwrap_or_else(|| format!("127.0.0.1:{DEFAULT_PORT}"));
    let (host, port) = parse_server(&server).map_err(|e| f.error("server", e))?;
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
        return Err(f.error("password", "a password needs a `username` (MQTT 3.1.1)"));
    }
    let keepalive = super::file::duration(f, "keepalive")?.unwrap_or(Duration::from_secs(60));
    if !keepalive.is_zero() && (keepalive < Duration::from_secs(1) || keepalive > Duration::from_secs(65_535)) {
        return Err(f.error("keepalive", "must be 0s (none) or between 1s and 65535s"));
    }
    let keepalive = Duration::from_secs(keepalive.as_secs());
    let clean_start = f.bool("clean_start")?.unwrap_or(false);
    match f.string("proto_ver")?.map(|s| s.value) {
        None => {}
        Some(v) if v == "v4" || v == "v3.1.1" => {}
        Some(v) if v == "v5" => {
            return Err(f.error(
                "proto_ver",
                "MQTT 5 (`v5`) is not supported by the bridge yet; use \"v4\"",
            ))
        }
        Some(v) => return Err(f.error("proto_ver", format!("unknown protocol version `{v}`; known: v4"))),
    }
    let max_inflight = super::file::count(f, "max_inflight", 1, 65_535)?.unwrap_or(100) as u16;
    let max_packet_size = super::file::count(f, "max_packet_size", 64, 268_435_455)?.unwrap_or(1 << 20);
    if common.tls.enable == Some(true) {
        return Err(f.error("tls", "TLS is not supported by the mqtt connector yet"));
    }
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

fn hex_id() -> String {
    uuid::Uuid::new_v4().simple().to_string().to_ascii_uppercase()
}

impl Inner {
    fn server(&self) -> String {
        format!("{}:{}", self.s.host, self.s.port)
    }

    fn options(&self) -> MqttOptions {
        let s = &self.s;
        let mut o = MqttOptions::new(s.client_id.clone(), s.host.clone(), s.port);
        o.set_keep_alive(s.keepalive);
        o.set_clean_session(s.clean_start);
        o.set_inflight(s.max_inflight);
        o.set_max_packet_size(s.max_packet_size, s.max_packet_size);
        o.set_request_channel_capacity(usize::from(s.max_inflight).max(10) * 2);
        if let Some(u) = &s.username {
            o.set_credentials(u.clone(), s.password.clone().unwrap_or_default());
        }
        o
    }

    /// Keeps a connection: connects, drives it, reconnects with backoff, until `stop`.
    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        loop {
            let (client, mut el) = AsyncClient::new(self.options(), 10);
            let mut net = NetworkOptions::new();
            net.set_connection_timeout(self.s.connect_timeout.as_secs().max(1));
            el.set_network_options(net);
            let acks = Arc::new(Mutex::new(Acks::default()));
            let err = tokio::select! {
                e = self.drive(&client, &mut el, &acks, &mut delay) => e,
                () = stop.cancelled() => {
                    let _ = client.try_disconnect();
                    // Let the DISCONNECT out (bounded).
                    let _ = tokio::time::timeout(Duration::from_millis(200), async {
                        while el.poll().await.is_ok() {}
                    })
                    .await;
                    self.down(&acks, None);
                    return;
                }
            };
            self.down(&acks, Some(err));
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

    /// Drives one connection until it fails; returns why.
    async fn drive(
        &self,
        client: &AsyncClient,
        el: &mut EventLoop,
        acks: &Arc<Mutex<Acks>>,
        delay: &mut Duration,
    ) -> String {
        loop {
            let ev = match el.poll().await {
                Ok(ev) => ev,
                Err(e) => return clip(format!("connection to {} failed: {e}", self.server())),
            };
            match ev {
                Event::Incoming(Packet::ConnAck(_)) => {
                    let filters: Vec<rumqttc::SubscribeFilter> = self
                        .s
                        .ingress
                        .iter()
                        .map(|i| (i.remote.clone(), i.qos))
                        .chain(self.s.forward_in.iter().map(|i| (i.remote.clone(), i.qos)))
                        .map(|(f, q)| rumqttc::SubscribeFilter::new(f, rumqttc_qos(q)))
                        .collect();
                    if !filters.is_empty() {
                        if let Err(e) = client.try_subscribe_many(filters) {
                            return clip(format!("cannot subscribe: {e}"));
                        }
                    }
                    *self.live.lock() = Some(Live {
                        client: client.clone(),
                        acks: acks.clone(),
                    });
                    *delay = Duration::from_millis(100);
                    *self.last_error.lock() = None;
                    self.connected.send_replace(true);
                    tracing::info!(connector = %self.s.name, server = %self.server(), "MQTT bridge connected.");
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
                Event::Incoming(Packet::Publish(p)) => self.received(p).await,
                _ => {}
            }
        }
    }

    /// A message from the remote broker: to the rules (ingress) and the broker (forward_in).
    async fn received(&self, p: rumqttc::Publish) {
        let to_rules = self.s.ingress.iter().any(|i| topic::matches(&i.remote, &p.topic));
        let forwards: Vec<&ForwardIn> = self
            .s
            .forward_in
            .iter()
            .filter(|f| topic::matches(&f.remote, &p.topic))
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
        let qos = p.qos as u8;
        if to_rules {
            let now = now_ms() as i64;
            let mut c = Map::default();
            c.insert(Arc::from("event"), Value::Null);
            c.insert(Arc::from("id"), Value::str(hex_id()));
            c.insert(Arc::from("payload"), Value::Bytes(p.payload.clone()));
            c.insert(Arc::from("server"), Value::str(self.server()));
            c.insert(Arc::from("topic"), Value::str(p.topic.as_str()));
            c.insert(Arc::from("qos"), Value::Int(i64::from(qos)));
            c.insert(Arc::from("dup"), Value::Bool(p.dup));
            c.insert(Arc::from("retain"), Value::Bool(p.retain));
            c.insert(Arc::from("pub_props"), Value::Map(Arc::new(Map::default())));
            c.insert(Arc::from("message_received_at"), Value::Int(now));
            c.insert(Arc::from("timestamp"), Value::Int(now));
            c.insert(Arc::from("node"), Value::Null);
            sink.bridge_message(&self.s.name, c);
        }
        for f in forwards {
            let local = format!("{}{}", f.local_prefix, p.topic);
            if topic::validate_name(&local, topic::TopicLimits::default()).is_err() {
                continue;
            }
            let q = crate::mqtt::codec::QoS::from_u8(qos.min(f.qos)).unwrap_or(crate::mqtt::codec::QoS::AtMostOnce);
            sink.publish_local(Message::new(local.into(), p.payload.clone(), q, p.retain, None));
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
                let topic = m.topic.to_string();
                live.client
                    .publish_bytes(topic, rumqttc_qos(m.qos as u8), m.retain, m.payload)
                    .await
                    .map_err(|e| SendError::disconnected(clip(format!("connection to {} lost: {e}", self.server()))))?;
            }
        }
        let all = async {
            for rx in waits {
                if rx.await.is_err() {
                    return Err(SendError::disconnected(format!(
                        "connection to {} lost before the ack",
                        self.server()
                    )));
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
        let e = load("type = \"mqtt\"\nproto_ver = \"v5\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 13), "{e}");
        let e = load("type = \"mqtt\"\nkeepalive = \"100ms\"\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = load("type = \"mqtt\"\nforward_in = [{ remote = \"x/#\", local_prefx = \"a/\" }]\n").unwrap_err();
        assert!(e.message.contains("unknown key `local_prefx`"), "{e}");
        let e = load("type = \"mqtt\"\nforward_out = [{ local = \"a/#\", remote_prefix = \"s/\" }]\n").unwrap_err();
        assert!(e.message.contains("forward out is a rule"), "{e}");
    }

    #[test]
    fn servers_parse() {
        assert_eq!(parse_server("127.0.0.1:11883").unwrap(), ("127.0.0.1".into(), 11883));
        assert_eq!(parse_server("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert_eq!(parse_server("[::1]:1884").unwrap(), ("::1".into(), 1884));
        assert!(parse_server("::1").is_err());
        assert!(parse_server("h:0").is_err());
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
        let (tx, mut rx) = oneshot::channel();
        a.queued.push_back(tx);
        a.kill();
        assert!(matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
    }
}

//! One task per client connection: reads and decodes packets, applies them to
//! the session and broker, and writes what the session has queued.
//!
//! The task owns the socket and nothing shared but its [`Session`] handle.
//! Flow control: it stops reading while its write buffer is above a high-water
//! mark (a client that does not read cannot make the broker buffer without
//! bound) and while its publish rate limit is exhausted (the client is slowed,
//! not disconnected). Any decode or protocol error closes only this connection,
//! with the MQTT 5 reason code the spec asks for.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use bytestring::ByteString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::auth::{Action, AuthRequest, AuthResult};
use super::broker::{encode, Broker};
use super::codec::{
    self, reason, AckProperties, ConnAck, ConnAckProperties, Connect, Disconnect, DisconnectProperties, LastWill,
    Packet, Protocol, PubAck, Publish, QoS, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use super::events::{BrokerEvent, ClientInfo, DisconnectReason, DropReason, EventMask};
use super::message::{now_ms, Message};
use super::session::{
    ConnCtrl, ConnRef, Control, Delivery, Inflight, OutStage, Session, StoredDelivery, SubOptions, CTRL_CMD,
    CTRL_HOUSEKEEPING, CTRL_KEEPALIVE,
};
use super::sub_source::Lookup;
use super::topic;
use crate::store::StoreOp;

/// Stop reading from a client whose unsent output exceeds this.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Smallest free space offered to a socket read; the read buffer grows by
/// doubling while reads fill it and shrinks back when the connection idles.
const MIN_READ: usize = 128;
/// Read buffers above this are given back when empty at housekeeping.
const IDLE_BUFFER: usize = 4096;

/// Make room for the next read: at least `MIN_READ`, doubling while traffic fills the buffer.
fn reserve_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(buf.capacity().clamp(MIN_READ, 64 * 1024));
    }
}

/// Most messages moved from the session queue per drain.
const DRAIN_BATCH: usize = 512;

/// Per-listener settings a connection needs.
#[derive(Debug, Clone, Default)]
pub struct ConnSettings {
    pub listener: String,
    /// Publish messages per second per client (token bucket), if limited.
    pub messages_rate: Option<f64>,
    /// Bytes per second per client, if limited.
    pub bytes_rate: Option<f64>,
}

/// Why the connection loop ended.
enum Exit {
    /// Clean DISCONNECT from the client (will suppressed unless reason 0x04).
    ClientDisconnect { with_will: bool },
    /// Network closed, keepalive timeout, protocol error...: publish the will.
    Abnormal(DisconnectReason),
    /// Closed by the broker (takeover, shutdown); the will follows `publish_will`.
    Server {
        reason: DisconnectReason,
        publish_will: bool,
    },
}

enum Fail {
    Io,
    /// Close with this MQTT 5 reason code (sent in a DISCONNECT to v5 clients).
    Protocol(u8, &'static str),
}

impl From<std::io::Error> for Fail {
    fn from(_: std::io::Error) -> Self {
        Fail::Io
    }
}

/// Topic alias maps of one connection.
#[derive(Default)]
struct Aliases {
    /// Server → client: topic → alias we assigned.
    outgoing: HashMap<ByteString, u16>,
    /// Client → server: alias → topic the client set.
    incoming: HashMap<u16, ByteString>,
}

/// Simple token bucket; `rate` tokens per second, burst of one second.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            last: Instant::now(),
        }
    }

    /// Take `n` tokens; returns how long to pause if the bucket went negative.
    fn take(&mut self, n: f64) -> Option<Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens -= n;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

/// Serve one client connection until it closes.
///
/// The connect phase (waiting for CONNECT, the handshake) runs in a boxed future
/// that owns the arguments: once the client is connected it is freed, and the
/// task keeps only the connection state and its event loop. Every byte a task
/// keeps is paid by every idle connection.
pub fn serve<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    settings: Arc<ConnSettings>,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let connect = Box::pin(connect_phase(broker, stream, peer, settings, shutdown));
    async move {
        let Some((mut conn, ctrl, cancelled)) = connect.await else {
            return;
        };
        conn.run(&ctrl, cancelled).await;
    }
}

/// Wait for CONNECT and do the handshake: the connection, its control mailbox,
/// and whether shutdown began meanwhile; None when the client did not connect.
async fn connect_phase<S>(
    broker: Arc<Broker>,
    stream: S,
    peer: SocketAddr,
    settings: Arc<ConnSettings>,
    shutdown: CancellationToken,
) -> Option<(Box<Conn<S>>, Arc<ConnCtrl>, bool)>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(MIN_READ);
    let mut reader = reader;
    let mut writer = writer;
    // Wait for CONNECT within the idle timeout.
    let connect = tokio::select! {
        r = read_connect(&broker, &mut reader, &mut rbuf) => r,
        _ = tokio::time::sleep(broker.cfg.idle_timeout) => return None,
        _ = shutdown.cancelled() => return None,
    };
    let connect = match connect {
        Ok(c) => c,
        Err(code) => {
            broker.metrics.protocol_errors.inc();
            if let Some(code) = code {
                // Unsupported protocol version: answer with a 3.1.1 CONNACK return code 1.
                let mut out = BytesMut::new();
                let ack = Packet::ConnAck(ConnAck {
                    session_present: false,
                    code,
                    properties: Default::default(),
                });
                if codec::encode(&ack, Protocol::V4, &mut out).is_ok() {
                    let _ = writer.write_all(&out).await;
                }
            }
            return None;
        }
    };
    let ctrl = Arc::new(ConnCtrl::default());
    // Boxed: the handshake's state is large and short-lived; it should not size this future either.
    let conn = Box::pin(Conn::handshake(
        broker,
        reader,
        writer,
        rbuf,
        peer,
        settings,
        connect,
        ctrl.clone(),
    ))
    .await?;
    // Boxed: it moves no further, so the task holds a pointer to it rather than a copy.
    let conn = Box::new(conn);
    // Checked with no await before the event loop starts: shutdown that began during the
    // handshake, after the broadcast reached attached connections.
    let cancelled = shutdown.is_cancelled();
    Some((conn, ctrl, cancelled))
}

/// Read and decode the first packet, which must be CONNECT.
/// Err(Some(code)) asks for a CONNACK with that code before closing.
async fn read_connect<R: AsyncRead + Unpin>(
    broker: &Broker,
    reader: &mut R,
    rbuf: &mut BytesMut,
) -> Result<Box<Connect>, Option<u8>> {
    loop {
        match codec::decode(rbuf, None, broker.cfg.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(_)) => return Err(None),
            Ok(None) => {}
            Err(codec::DecodeError::UnsupportedProtocol(_)) => return Err(Some(reason::UNSUPPORTED_PROTOCOL_VERSION)),
            Err(_) => return Err(None),
        }
        reserve_read(rbuf);
        match reader.read_buf(rbuf).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => broker.metrics.bytes_received.add(n as u64),
        }
    }
}

/// Subscription by broker: asks every source at once, each within its timeout. What a
/// source found, by source name; a failure or timeout is logged and counted, and leaves
/// that source out.
async fn lookup_subscriptions(broker: &Broker, client_id: &str, username: Option<&str>) -> Vec<(Arc<str>, Lookup)> {
    let sources = broker.subscription_sources();
    if sources.is_empty() {
        return Vec::new();
    }
    let asks = sources.iter().map(|s| async move {
        broker.metrics.subscribe_by_broker_lookups.inc();
        let r = match tokio::time::timeout(s.timeout(), s.lookup(client_id, username)).await {
            Ok(Ok(l)) => return Some((Arc::from(s.name()), l)),
            Ok(Err(e)) => e,
            Err(_) => format!("no answer within {:?}", s.timeout()),
        };
        broker.metrics.subscribe_by_broker_failed.inc();
        tracing::warn!(client_id, source = s.name(), error = %r, "Subscription by broker: lookup failed.");
        None
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

struct Conn<S> {
    broker: Arc<Broker>,
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    protocol: Protocol,
    /// Who the client is; shared by its messages and events (publisher and receiver columns).
    info: Arc<ClientInfo>,
    session: Arc<Session>,
    conn_id: u64,
    /// Effective keepalive (after Server Keep Alive), zero = none.
    keep_alive: Duration,
    client_max_packet: usize,
    send_quota: usize,
    client_alias_max: u16,
    /// Topic aliases (MQTT 5), created on first use: most connections never have any.
    aliases: Option<Box<Aliases>>,
    /// Boxed: most clients have none, and every byte here is paid per idle connection.
    will: Option<Box<LastWill>>,
    expiry: u32,
    /// Whether reason strings and user properties may go on acks (Request Problem Information).
    problem_info: bool,
    msg_bucket: Option<Box<Bucket>>,
    byte_bucket: Option<Box<Bucket>>,
    throttle_until: Option<Instant>,
    /// Scratch space for [`drain`](Self::drain), kept to avoid an allocation per turn.
    drain_buf: Vec<(Delivery, u16)>,
    /// A subscriber session this client is flooding: reading pauses until it drains.
    pressure: Option<Arc<Session>>,
    /// This connection's slot in the broker's sweeper (keepalive and housekeeping).
    sweep_slot: Option<usize>,
}

impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        if let Some(slot) = self.sweep_slot.take() {
            self.broker.unregister_conn(slot);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Conn<S> {
    #[allow(clippy::too_many_arguments)]
    async fn handshake(
        broker: Arc<Broker>,
        reader: ReadHalf<S>,
        mut writer: WriteHalf<S>,
        rbuf: BytesMut,
        peer: SocketAddr,
        settings: Arc<ConnSettings>,
        c: Box<Connect>,
        ctrl: Arc<ConnCtrl>,
    ) -> Option<Conn<S>> {
        // Unboxed here, inside the (boxed, short-lived) handshake state: the box is freed with it.
        let c = *c;
        let protocol = c.protocol.unwrap_or(Protocol::V4);
        let cfg = &broker.cfg;
        let v5 = protocol == Protocol::V5;
        let mut ack_props = ConnAckProperties::default();
        let refuse = |code: u8, why: &'static str| (code, why);
        let mut client_id = c.client_id.clone();
        let mut assigned = false;
        let check = (|| {
            if client_id.len() > cfg.max_clientid_len {
                return Err(refuse(reason::CLIENT_IDENTIFIER_NOT_VALID, "client id too long"));
            }
            if client_id.is_empty() {
                if !v5 && !c.clean_start {
                    return Err(refuse(
                        reason::CLIENT_IDENTIFIER_NOT_VALID,
                        "empty client id needs clean session",
                    ));
                }
                client_id = format!("junction-{:016x}", rand::random::<u64>());
                assigned = true;
            }
            if c.properties.authentication_method.is_some() {
                return Err(refuse(
                    reason::BAD_AUTHENTICATION_METHOD,
                    "enhanced authentication is not supported",
                ));
            }
            if let Some(w) = &c.will {
                if topic::validate_name(&w.topic, cfg.topic_limits).is_err() {
                    return Err(refuse(reason::TOPIC_NAME_INVALID, "invalid will topic"));
                }
                if w.qos > cfg.max_qos_allowed {
                    return Err(refuse(reason::QOS_NOT_SUPPORTED, "will QoS not supported"));
                }
                if w.retain && !cfg.retain_available {
                    return Err(refuse(reason::RETAIN_NOT_SUPPORTED, "retain not supported"));
                }
            }
            if !v5 && (c.keep_alive > cfg.max_keepalive || (c.keep_alive < cfg.min_keepalive)) {
                return Err(refuse(reason::IMPLEMENTATION_SPECIFIC_ERROR, "keepalive out of bounds"));
            }
            let req = AuthRequest {
                client_id: &client_id,
                username: c.username.as_deref(),
                password: c.password.as_deref(),
                peer,
            };
            let authn = broker.auth.authenticate(&req);
            broker.emit(EventMask::AUTHN, || BrokerEvent::AuthnComplete {
                client_id: Arc::from(client_id.as_str()),
                username: c.username.clone(),
                peer,
                code: match authn {
                    AuthResult::Allow => reason::SUCCESS,
                    AuthResult::BadCredentials => reason::BAD_USER_NAME_OR_PASSWORD,
                    AuthResult::NotAuthorized => reason::NOT_AUTHORIZED,
                },
            });
            match authn {
                AuthResult::Allow => Ok(()),
                AuthResult::BadCredentials => {
                    Err(refuse(reason::BAD_USER_NAME_OR_PASSWORD, "bad user name or password"))
                }
                AuthResult::NotAuthorized => Err(refuse(reason::NOT_AUTHORIZED, "not authorized")),
            }
        })();
        let client_id_arc: Arc<str> = Arc::from(client_id.as_str());
        if let Err((code, why)) = check {
            broker.metrics.connections_refused.inc();
            let mut out = BytesMut::new();
            if v5 && c.properties.request_problem_information != Some(0) {
                ack_props.reason_string = Some(why.to_owned());
            }
            let ack = Packet::ConnAck(ConnAck {
                session_present: false,
                code,
                properties: ack_props,
            });
            if codec::encode(&ack, protocol, &mut out).is_ok() {
                let _ = writer.write_all(&out).await;
                let _ = writer.flush().await;
            }
            broker.emit(EventMask::CONNACK, || BrokerEvent::ConnAck {
                client_id: client_id_arc,
                username: c.username.clone(),
                peer,
                code,
            });
            return None;
        }

        // Subscription by broker: looked up before the CONNACK (bounded by each source's
        // timeout), subscribed right after it, before the CONNACK leaves.
        let by_broker = lookup_subscriptions(&broker, &client_id, c.username.as_deref()).await;

        // Keepalive: v5 clients outside the bounds get a Server Keep Alive instead.
        let mut keep_alive = c.keep_alive;
        if v5 {
            let bounded = if keep_alive == 0 && cfg.min_keepalive > 0 {
                cfg.min_keepalive
            } else {
                keep_alive.clamp(cfg.min_keepalive, cfg.max_keepalive.max(cfg.min_keepalive))
            };
            let server = cfg.server_keepalive.unwrap_or(bounded);
            if server != keep_alive {
                keep_alive = server;
                ack_props.server_keep_alive = Some(server);
            }
        }
        // Session expiry: v3.x clean session 0 means "never" (bounded by config).
        let requested = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        };
        let expiry = requested.min(cfg.max_session_expiry);
        if v5 && expiry != requested {
            ack_props.session_expiry_interval = Some(expiry);
        }
        let conn_id = broker.next_conn_id();
        let sweep_ctrl = ctrl.clone();
        let attached = broker.attach(
            &client_id,
            c.clean_start,
            expiry,
            ConnRef {
                id: conn_id,
                ctrl,
                protocol,
            },
        );
        if v5 {
            ack_props.receive_maximum = Some(cfg.max_inflight.max(1));
            if cfg.max_qos_allowed < QoS::ExactlyOnce {
                ack_props.maximum_qos = Some(cfg.max_qos_allowed as u8);
            }
            if !cfg.retain_available {
                ack_props.retain_available = Some(0);
            }
            ack_props.maximum_packet_size = Some(cfg.max_packet_size.min(u32::MAX as usize) as u32);
            if assigned {
                ack_props.assigned_client_identifier = Some(client_id.clone());
            }
            ack_props.topic_alias_maximum = Some(cfg.max_topic_alias);
            if !cfg.wildcard_subscription {
                ack_props.wildcard_subscription_available = Some(0);
            }
            if !cfg.shared_subscription {
                ack_props.shared_subscription_available = Some(0);
            }
            if c.properties.request_response_information == Some(1) && !cfg.response_information.is_empty() {
                ack_props.response_information = Some(format!("{}{}", cfg.response_information, client_id));
            }
        }
        let info = ClientInfo {
            client_id: attached.session.client_id.clone(),
            username: c.username.clone(),
            peer,
            protocol,
            keep_alive,
            clean_start: c.clean_start,
            expiry_interval: expiry,
        };
        let mut conn = Conn {
            broker: broker.clone(),
            reader,
            writer,
            rbuf,
            wbuf: BytesMut::new(),
            protocol,
            info: Arc::new(info),
            session: attached.session,
            conn_id,
            keep_alive: Duration::from_millis((f64::from(keep_alive) * 1000.0 * cfg.keepalive_multiplier) as u64),
            client_max_packet: c
                .properties
                .maximum_packet_size
                .map(|m| m as usize)
                .unwrap_or(usize::MAX),
            send_quota: usize::from(
                c.properties
                    .receive_maximum
                    .unwrap_or(u16::MAX)
                    .min(cfg.max_inflight.max(1)),
            ),
            client_alias_max: c.properties.topic_alias_maximum.unwrap_or(0),
            aliases: None,
            will: c.will.map(|mut w| {
                // Own copies: slices of the CONNECT frame would pin its whole read buffer.
                w.payload = bytes::Bytes::copy_from_slice(&w.payload);
                w.topic = ByteString::from(&*w.topic);
                Box::new(w)
            }),
            expiry,
            problem_info: c.properties.request_problem_information != Some(0),
            msg_bucket: settings.messages_rate.map(|r| Box::new(Bucket::new(r))),
            byte_bucket: settings.bytes_rate.map(|r| Box::new(Bucket::new(r))),
            throttle_until: None,
            pressure: None,
            drain_buf: Vec::new(),
            sweep_slot: None,
        };
        let ack = Packet::ConnAck(ConnAck {
            session_present: attached.session_present,
            code: reason::SUCCESS,
            properties: ack_props,
        });
        conn.send(&ack);
        broker.metrics.connections.inc();
        broker.metrics.connections_total.inc();
        let (cid, user) = (conn.info.client_id.clone(), conn.info.username.clone());
        broker.emit(EventMask::CONNACK, || BrokerEvent::ConnAck {
            client_id: cid,
            username: user,
            peer,
            code: 0,
        });
        let info = ClientInfo::clone(&conn.info);
        broker.emit(EventMask::CONNECTED, || BrokerEvent::ClientConnected(info));
        // Resume: resend unacknowledged messages first, in order, with DUP.
        conn.resend_inflight();
        conn.auto_subscribe();
        conn.subscribe_by_broker(by_broker);
        conn.sweep_slot = Some(broker.register_conn(sweep_ctrl, conn.keep_alive));
        Some(conn)
    }

    async fn run(&mut self, ctrl: &ConnCtrl, cancelled: bool) {
        let exit = if cancelled {
            // Shutdown began during the handshake, after the broadcast reached attached connections.
            self.send_disconnect(reason::SERVER_SHUTTING_DOWN, None);
            Exit::Server {
                reason: DisconnectReason::ServerShutdown,
                publish_will: false,
            }
        } else {
            self.event_loop(ctrl).await
        };
        let _ = self.flush().await;
        self.broker.metrics.connections.dec();
        let (reason, publish_will) = match exit {
            Exit::ClientDisconnect { with_will } => (DisconnectReason::Normal, with_will),
            Exit::Abnormal(r) => (r, true),
            Exit::Server { reason, publish_will } => (reason, publish_will),
        };
        // A taken-over session keeps its will semantics on the old connection: publish it.
        if publish_will {
            if let Some(will) = self.will.take() {
                self.schedule_will(*will);
            }
        }
        let client = ClientInfo::clone(&self.info);
        self.broker
            .emit(EventMask::DISCONNECTED, || BrokerEvent::ClientDisconnected {
                client,
                reason,
            });
        self.broker.detach(&self.session, self.conn_id, self.expiry);
        let _ = self.writer.shutdown().await;
    }

    /// Runs until the connection ends. Shutdown arrives through `ctrl` like any
    /// other broker command (one waiter fewer in every connection's state).
    async fn event_loop(&mut self, ctrl: &ConnCtrl) -> Exit {
        // While throttled or under back-pressure: a boxed wait (rare, so not part of every connection's size).
        let mut pause: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        // Bytes left in the read buffer may hold whole packets (CONNECT's
        // followers, or input left while throttled): process before reading more.
        let mut input_pending = !self.rbuf.is_empty();
        let mut flush = false;
        loop {
            let signals = ctrl.take_signals();
            if signals != 0 {
                if signals & CTRL_CMD != 0 {
                    if let Some(Control::Disconnect { reason_code, reason }) = ctrl.take_cmd() {
                        self.send_disconnect(reason_code, None);
                        let publish_will = reason == DisconnectReason::TakenOver || reason == DisconnectReason::Kicked;
                        return Exit::Server { reason, publish_will };
                    }
                }
                // The sweeper saw no packet for the keepalive period; re-checked here, as
                // bytes may have arrived since.
                if signals & CTRL_KEEPALIVE != 0
                    && !self.keep_alive.is_zero()
                    && self.broker.clock_ms().saturating_sub(ctrl.last_activity()) >= self.keep_alive_ms()
                {
                    self.send_disconnect(reason::KEEP_ALIVE_TIMEOUT, None);
                    return Exit::Abnormal(DisconnectReason::KeepaliveTimeout);
                }
                if signals & CTRL_HOUSEKEEPING != 0 {
                    self.housekeeping();
                }
            }
            // TLS and WebSocket streams buffer: push what was written out.
            if flush {
                flush = false;
                if self.writer.flush().await.is_err() {
                    return Exit::Abnormal(DisconnectReason::TcpClosed);
                }
            }
            let paused = self.throttle_until.is_some() || self.pressure.is_some();
            if input_pending && !paused && self.wbuf.len() < WRITE_HIGH_WATER {
                match self.process_pending().await {
                    Ok(None) => {}
                    Ok(Some(exit)) => return exit,
                    Err(Fail::Protocol(code, why)) => {
                        self.broker.metrics.protocol_errors.inc();
                        tracing::debug!(client_id = %self.info.client_id, code, why, "Closing connection on protocol error.");
                        self.send_disconnect(code, Some(why));
                        return Exit::Abnormal(DisconnectReason::ProtocolError);
                    }
                    Err(Fail::Io) => return Exit::Abnormal(DisconnectReason::TcpClosed),
                }
                // Stopped early by a pause: the rest waits for the pause to end.
                input_pending = self.throttle_until.is_some() || self.pressure.is_some();
            }
            if self.wbuf.len() < WRITE_HIGH_WATER {
                self.drain();
            }
            let read_ok = self.wbuf.len() < WRITE_HIGH_WATER
                && self.throttle_until.is_none()
                && self.pressure.is_none()
                && !input_pending;
            if read_ok {
                reserve_read(&mut self.rbuf);
            }
            if pause.is_none() && (self.throttle_until.is_some() || self.pressure.is_some()) {
                let (throttle, pressure) = (self.throttle_until, self.pressure.clone());
                let low = self.broker.high_water() / 2;
                pause = Some(Box::pin(async move {
                    if let Some(t) = throttle {
                        tokio::time::sleep_until(t).await;
                    }
                    if let Some(s) = pressure {
                        s.wait_drained(low, Duration::from_millis(200)).await;
                    }
                }));
            }
            tokio::select! {
                biased;
                _ = ctrl.wait() => {}
                r = self.writer.write_buf(&mut self.wbuf), if !self.wbuf.is_empty() => {
                    match r {
                        Ok(n) => {
                            self.broker.metrics.bytes_sent.add(n as u64);
                            flush = self.wbuf.is_empty();
                        }
                        Err(_) => return Exit::Abnormal(DisconnectReason::TcpClosed),
                    }
                }
                r = self.reader.read_buf(&mut self.rbuf), if read_ok => {
                    match r {
                        Ok(0) | Err(_) => return Exit::Abnormal(DisconnectReason::TcpClosed),
                        Ok(n) => {
                            self.broker.metrics.bytes_received.add(n as u64);
                            if let Some(b) = &mut self.byte_bucket {
                                if let Some(pause) = b.take(n as f64) {
                                    self.throttle_until = Some(Instant::now() + pause);
                                }
                            }
                            ctrl.touch(self.broker.clock_ms());
                            input_pending = true;
                        }
                    }
                }
                _ = wait_opt(&mut pause) => {
                    pause = None;
                    self.throttle_until = None;
                    self.pressure = None;
                    input_pending = !self.rbuf.is_empty();
                }
            }
        }
    }

    /// Handle the whole packets in the read buffer; with `sync_mode =
    /// "every_write"`, wait until what they changed is on disk before their
    /// acknowledgements can be written.
    async fn process_pending(&mut self) -> Result<Option<Exit>, Fail> {
        let mark = self.broker.durability_mark();
        let handled = self.process_input();
        if let (Some(before), Some(after)) = (mark, self.broker.durability_mark()) {
            if after > before {
                // Boxed: only `sync_mode = "every_write"` waits here, and the wait (a timeout
                // and a wake-up) would otherwise size every connection's task.
                Box::pin(self.broker.wait_durable(after)).await;
            }
        }
        handled
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            let n = self.wbuf.len();
            self.writer.write_all(&self.wbuf).await?;
            self.broker.metrics.bytes_sent.add(n as u64);
            self.wbuf.clear();
        }
        self.writer.flush().await
    }

    /// Encode a packet into the write buffer.
    fn send(&mut self, p: &Packet) {
        match codec::encode(p, self.protocol, &mut self.wbuf) {
            Ok(n) if n > 0 => self.broker.metrics.packets_sent.inc(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(client_id = %self.info.client_id, error = %e, packet = p.name(), "Cannot encode packet.")
            }
        }
    }

    fn send_disconnect(&mut self, code: u8, why: Option<&str>) {
        if self.protocol == Protocol::V5 {
            let properties = DisconnectProperties {
                reason_string: why.filter(|_| self.problem_info).map(str::to_owned),
                ..Default::default()
            };
            self.send(&Packet::Disconnect(Disconnect {
                reason: code,
                properties,
            }));
        }
    }

    fn ack_props(&self, why: Option<&'static str>) -> AckProperties {
        AckProperties {
            reason_string: why
                .filter(|_| self.problem_info && self.protocol == Protocol::V5)
                .map(str::to_owned),
            user_properties: Vec::new(),
        }
    }

    /// The effective keepalive in milliseconds (as the sweeper counts it).
    fn keep_alive_ms(&self) -> u64 {
        self.keep_alive.as_millis().min(u128::from(u64::MAX)) as u64
    }

    fn owns_session(&self, st: &super::session::SessionState) -> bool {
        st.conn.as_ref().map(|c| c.id) == Some(self.conn_id)
    }

    // ---- outgoing ---------------------------------------------------------

    /// Move queued messages into the write buffer, within the send quota.
    fn drain(&mut self) {
        let now = now_ms();
        let mut out = std::mem::take(&mut self.drain_buf);
        {
            let broker = &self.broker;
            let mut st = self.session.state.lock();
            if !self.owns_session(&st) {
                return;
            }
            let persistent = st.persistent();
            st.last_drain = Some(std::time::Instant::now());
            while out.len() < DRAIN_BATCH {
                let Some(front) = st.mqueue.front() else {
                    break;
                };
                if front.qos != QoS::AtMostOnce && st.inflight.len() >= self.send_quota {
                    break;
                }
                let Some(d) = st.mqueue.pop_front() else {
                    break;
                };
                broker.metrics.queued.dec();
                if d.msg.is_expired(now) {
                    if d.seq != 0 {
                        broker.store_op(|| StoreOp::DelDelivery(self.session.client_id.to_string(), d.seq));
                    }
                    broker.dropped(&self.session, &d.msg, DropReason::Expired);
                    continue;
                }
                let pkid = if d.qos == QoS::AtMostOnce {
                    0
                } else {
                    let pkid = st.alloc_pkid();
                    if persistent && d.seq != 0 {
                        let stored = StoredDelivery::from_delivery(&d, Some(pkid), OutStage::Publish);
                        broker.store_op(|| {
                            StoreOp::PutDelivery(self.session.client_id.to_string(), d.seq, encode(&stored))
                        });
                    }
                    st.inflight.push_back(Inflight {
                        pkid,
                        delivery: d.clone(),
                        stage: OutStage::Publish,
                        sent_at: std::time::Instant::now(),
                    });
                    pkid
                };
                out.push((d, pkid));
            }
            if !out.is_empty() && st.mqueue.len() < broker.high_water() / 2 {
                self.session.drained.notify_waiters();
            }
        }
        for (d, pkid) in out.drain(..) {
            self.write_publish(&d, pkid, false, now);
        }
        // Reuse the allocation next time (drained every turn of a busy connection).
        self.drain_buf = out;
    }

    /// Resend (3.x clients only) in-flight messages unacknowledged for
    /// `mqtt.retry_interval`, and forget incoming QoS 2 ids older than `mqtt.await_rel_timeout`.
    fn housekeeping(&mut self) {
        // Give idle connections' buffers back: idle connections are most connections.
        if self.rbuf.is_empty() && self.rbuf.capacity() > IDLE_BUFFER {
            self.rbuf = BytesMut::with_capacity(MIN_READ);
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > IDLE_BUFFER {
            self.wbuf = BytesMut::new();
        }
        if self.drain_buf.capacity() > 64 {
            self.drain_buf = Vec::new();
        }
        let (retry, rel_timeout) = (self.broker.cfg.retry_interval, self.broker.cfg.await_rel_timeout);
        let mut overdue = Vec::new();
        {
            let mut st = self.session.state.lock();
            if !self.owns_session(&st) {
                return;
            }
            let before = st.awaiting_rel.len();
            st.awaiting_rel.retain(|_, at| at.elapsed() < rel_timeout);
            if st.awaiting_rel.len() != before {
                tracing::debug!(client_id = %self.info.client_id, expired = before - st.awaiting_rel.len(), "QoS 2 ids expired awaiting PUBREL.");
            }
            if self.protocol != Protocol::V5 && !retry.is_zero() {
                for i in st.inflight.iter_mut() {
                    if i.sent_at.elapsed() >= retry {
                        i.sent_at = std::time::Instant::now();
                        overdue.push(i.clone());
                    }
                }
            }
        }
        let now = now_ms();
        for i in overdue {
            match i.stage {
                OutStage::Publish => self.write_publish(&i.delivery, i.pkid, true, now),
                OutStage::Rel => self.send(&Packet::PubRel(PubAck {
                    pkid: i.pkid,
                    ..Default::default()
                })),
            }
        }
    }

    /// On resume: PUBLISH with DUP for unacknowledged messages, PUBREL for those past PUBREC.
    fn resend_inflight(&mut self) {
        let now = now_ms();
        let pending: Vec<Inflight> = {
            let st = self.session.state.lock();
            st.inflight.iter().cloned().collect()
        };
        for i in pending {
            match i.stage {
                OutStage::Publish => self.write_publish(&i.delivery, i.pkid, true, now),
                OutStage::Rel => self.send(&Packet::PubRel(PubAck {
                    pkid: i.pkid,
                    ..Default::default()
                })),
            }
        }
    }

    fn write_publish(&mut self, d: &Delivery, pkid: u16, dup: bool, now: u64) {
        let v5 = self.protocol == Protocol::V5;
        let mut topic = d.msg.topic.clone();
        let mut properties = if v5 {
            d.msg.publish_properties(now)
        } else {
            Default::default()
        };
        let mut new_alias = None;
        if v5 {
            properties.subscription_identifiers = d.sub_ids.clone();
            if self.client_alias_max > 0 {
                let out_aliases = &mut self.aliases.get_or_insert_with(Default::default).outgoing;
                if let Some(a) = out_aliases.get(&topic) {
                    properties.topic_alias = Some(*a);
                    topic = ByteString::new();
                } else if out_aliases.len() < usize::from(self.client_alias_max) {
                    let a = out_aliases.len() as u16 + 1;
                    out_aliases.insert(topic.clone(), a);
                    properties.topic_alias = Some(a);
                    new_alias = Some(topic.clone());
                }
            }
        }
        let p = Packet::Publish(Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            pkid,
            properties,
            payload: d.msg.payload.clone(),
        });
        let start = self.wbuf.len();
        let n = match codec::encode(&p, self.protocol, &mut self.wbuf) {
            Ok(n) => n,
            Err(_) => usize::MAX,
        };
        if n > self.client_max_packet {
            // MQTT 5 §3.1.2.25: never send a packet larger than the client's maximum; discard it.
            self.wbuf.truncate(start);
            if let Some(t) = new_alias {
                if let Some(a) = self.aliases.as_mut() {
                    a.outgoing.remove(&t);
                }
            }
            if pkid != 0 {
                let mut st = self.session.state.lock();
                if let Some(pos) = st.inflight.iter().position(|i| i.pkid == pkid) {
                    if let Some(i) = st.inflight.remove(pos) {
                        if i.delivery.seq != 0 {
                            self.broker
                                .store_op(|| StoreOp::DelDelivery(self.session.client_id.to_string(), i.delivery.seq));
                        }
                    }
                }
            }
            self.broker.dropped(&self.session, &d.msg, DropReason::TooLarge);
            return;
        }
        self.broker.metrics.packets_sent.inc();
        self.broker.metrics.messages_sent[d.qos as usize].inc();
        if self.broker.wants(EventMask::DELIVERED) {
            let (c, m) = (self.session.client_id.clone(), d.msg.clone());
            self.broker.emit(EventMask::DELIVERED, || BrokerEvent::Delivered {
                client_id: c,
                message: m,
                info: Some(self.info.clone()),
            });
        }
    }

    // ---- incoming -----------------------------------------------------------

    /// Decode and handle every whole packet in the read buffer.
    fn process_input(&mut self) -> Result<Option<Exit>, Fail> {
        loop {
            let packet = match codec::decode(&mut self.rbuf, Some(self.protocol), self.broker.cfg.max_packet_size) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(None),
                Err(e) => return Err(Fail::Protocol(e.reason_code(), "malformed packet")),
            };
            self.broker.metrics.packets_received.inc();
            if let Some(exit) = self.handle(packet)? {
                return Ok(Some(exit));
            }
            if self.throttle_until.is_some() || self.pressure.is_some() {
                return Ok(None);
            }
        }
    }

    fn handle(&mut self, packet: Packet) -> Result<Option<Exit>, Fail> {
        match packet {
            Packet::Publish(p) => self.on_publish(p)?,
            Packet::PubAck(a) => self.on_puback(a.pkid),
            Packet::PubRec(a) => self.on_pubrec(a),
            Packet::PubRel(a) => self.on_pubrel(a.pkid),
            Packet::PubComp(a) => self.on_pubcomp(a.pkid),
            Packet::Subscribe(s) => self.on_subscribe(s)?,
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(d) => return self.on_disconnect(d).map(Some),
            Packet::Connect(_) => return Err(Fail::Protocol(reason::PROTOCOL_ERROR, "second CONNECT")),
            Packet::Auth(_) => {
                return Err(Fail::Protocol(
                    reason::PROTOCOL_ERROR,
                    "AUTH without enhanced authentication",
                ))
            }
            other => {
                tracing::debug!(packet = other.name(), "Unexpected packet from client.");
                return Err(Fail::Protocol(
                    reason::PROTOCOL_ERROR,
                    "packet not allowed from a client",
                ));
            }
        }
        Ok(None)
    }

    fn on_publish(&mut self, mut p: Publish) -> Result<(), Fail> {
        let cfg = &self.broker.cfg;
        let v5 = self.protocol == Protocol::V5;
        self.broker.metrics.messages_received[p.qos as usize].inc();
        if let Some(b) = &mut self.msg_bucket {
            if let Some(pause) = b.take(1.0) {
                self.throttle_until = Some(Instant::now() + pause);
            }
        }
        if p.qos > cfg.max_qos_allowed {
            return Err(Fail::Protocol(reason::QOS_NOT_SUPPORTED, "QoS not supported"));
        }
        if p.retain && !cfg.retain_available {
            return Err(Fail::Protocol(reason::RETAIN_NOT_SUPPORTED, "retain not supported"));
        }
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Fail::Protocol(
                reason::PROTOCOL_ERROR,
                "subscription identifier in PUBLISH",
            ));
        }
        // Topic alias (client → server).
        if let Some(alias) = p.properties.topic_alias.take() {
            if alias == 0 || alias > cfg.max_topic_alias {
                return Err(Fail::Protocol(reason::TOPIC_ALIAS_INVALID, "topic alias out of range"));
            }
            let in_aliases = &mut self.aliases.get_or_insert_with(Default::default).incoming;
            if p.topic.is_empty() {
                match in_aliases.get(&alias) {
                    Some(t) => p.topic = t.clone(),
                    None => return Err(Fail::Protocol(reason::PROTOCOL_ERROR, "unknown topic alias")),
                }
            } else {
                in_aliases.insert(alias, p.topic.clone());
            }
        }
        if topic::validate_name(&p.topic, cfg.topic_limits).is_err() {
            if !v5 {
                return Err(Fail::Protocol(reason::TOPIC_NAME_INVALID, "invalid topic name"));
            }
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.send(&Packet::PubAck(PubAck {
                    pkid: p.pkid,
                    reason: reason::TOPIC_NAME_INVALID,
                    properties: self.ack_props(Some("invalid topic name")),
                })),
                QoS::ExactlyOnce => self.send(&Packet::PubRec(PubAck {
                    pkid: p.pkid,
                    reason: reason::TOPIC_NAME_INVALID,
                    properties: self.ack_props(Some("invalid topic name")),
                })),
            }
            return Ok(());
        }
        let allowed = self.broker.auth.authorize(
            &self.info.client_id,
            self.info.username.as_deref(),
            Action::Publish,
            &p.topic,
        );
        self.authz_event(Action::Publish, &p.topic, allowed);
        if !allowed {
            let ack = PubAck {
                pkid: p.pkid,
                reason: reason::NOT_AUTHORIZED,
                properties: self.ack_props(Some("not authorized")),
            };
            match p.qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.send(&Packet::PubAck(ack)),
                QoS::ExactlyOnce => self.send(&Packet::PubRec(ack)),
            }
            return Ok(());
        }
        if p.qos == QoS::ExactlyOnce {
            let mut st = self.session.state.lock();
            if st.awaiting_rel.contains_key(&p.pkid) {
                // Retransmission of a message already routed: acknowledge again, route nothing.
                drop(st);
                self.send(&Packet::PubRec(PubAck {
                    pkid: p.pkid,
                    ..Default::default()
                }));
                return Ok(());
            }
            if st.awaiting_rel.len() >= cfg.max_awaiting_rel.max(usize::from(cfg.max_inflight)) {
                return Err(Fail::Protocol(
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                    "too many QoS 2 messages awaiting PUBREL",
                ));
            }
            st.awaiting_rel.insert(p.pkid, std::time::Instant::now());
            if st.persistent() {
                self.broker
                    .store_op(|| StoreOp::PutRel(self.session.client_id.to_string(), p.pkid));
            }
        }
        let (pkid, qos) = (p.pkid, p.qos);
        let mut msg = Message::new(p.topic, p.payload, p.qos, p.retain, Some(self.info.client_id.clone()))
            .with_properties(p.properties);
        // Only rule events read it: no refcount traffic per message when no rule listens.
        if self.broker.wants(EventMask::ALL) {
            msg.publisher = Some(self.info.clone());
        }
        let (n, pressure) = self.broker.publish_from_client(msg);
        if pressure.is_some() {
            self.pressure = pressure;
        }
        let code = if n == 0 && v5 {
            reason::NO_MATCHING_SUBSCRIBERS
        } else {
            reason::SUCCESS
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(PubAck {
                pkid,
                reason: code,
                properties: AckProperties::default(),
            })),
            QoS::ExactlyOnce => self.send(&Packet::PubRec(PubAck {
                pkid,
                reason: code,
                properties: AckProperties::default(),
            })),
        }
        Ok(())
    }

    /// Remove an outgoing in-flight message by packet id and stage.
    fn take_inflight(&mut self, pkid: u16, qos: QoS, stage: OutStage) -> Option<Inflight> {
        let mut st = self.session.state.lock();
        let pos = st
            .inflight
            .iter()
            .position(|i| i.pkid == pkid && i.delivery.qos == qos && i.stage == stage)?;
        let i = st.inflight.remove(pos)?;
        if i.delivery.seq != 0 {
            self.broker
                .store_op(|| StoreOp::DelDelivery(self.session.client_id.to_string(), i.delivery.seq));
        }
        Some(i)
    }

    /// `client.check_authz_complete`, when a rule reads it.
    fn authz_event(&self, action: Action, topic: &str, allowed: bool) {
        if self.broker.wants(EventMask::AUTHZ) {
            self.broker.emit(EventMask::AUTHZ, || BrokerEvent::AuthzComplete {
                client_id: self.info.client_id.clone(),
                username: self.info.username.clone(),
                peer: self.info.peer,
                topic: topic.to_string(),
                action: action.as_str(),
                allowed,
            });
        }
    }

    fn acked(&self, i: Inflight) {
        if self.broker.wants(EventMask::ACKED) {
            let (c, m) = (self.session.client_id.clone(), i.delivery.msg);
            self.broker.emit(EventMask::ACKED, || BrokerEvent::Acked {
                client_id: c,
                message: m,
                info: Some(self.info.clone()),
            });
        }
    }

    fn on_puback(&mut self, pkid: u16) {
        if let Some(i) = self.take_inflight(pkid, QoS::AtLeastOnce, OutStage::Publish) {
            self.acked(i);
        }
    }

    fn on_pubrec(&mut self, a: PubAck) {
        let mut found = false;
        {
            let mut st = self.session.state.lock();
            let persistent = st.persistent();
            if let Some(pos) = st
                .inflight
                .iter()
                .position(|i| i.pkid == a.pkid && i.delivery.qos == QoS::ExactlyOnce)
            {
                found = true;
                if a.reason >= 0x80 {
                    // The receiver refused the message: the exchange ends here.
                    if let Some(i) = st.inflight.remove(pos) {
                        if i.delivery.seq != 0 {
                            self.broker
                                .store_op(|| StoreOp::DelDelivery(self.session.client_id.to_string(), i.delivery.seq));
                        }
                    }
                    return;
                }
                if let Some(i) = st.inflight.get_mut(pos) {
                    i.stage = OutStage::Rel;
                    i.sent_at = std::time::Instant::now();
                    if persistent && i.delivery.seq != 0 {
                        let stored = StoredDelivery::from_delivery(&i.delivery, Some(i.pkid), OutStage::Rel);
                        let seq = i.delivery.seq;
                        self.broker.store_op(|| {
                            StoreOp::PutDelivery(self.session.client_id.to_string(), seq, encode(&stored))
                        });
                    }
                }
            }
        }
        let reason_code = if found {
            reason::SUCCESS
        } else {
            reason::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send(&Packet::PubRel(PubAck {
            pkid: a.pkid,
            reason: reason_code,
            properties: AckProperties::default(),
        }));
    }

    fn on_pubcomp(&mut self, pkid: u16) {
        if let Some(i) = self.take_inflight(pkid, QoS::ExactlyOnce, OutStage::Rel) {
            self.acked(i);
        }
    }

    fn on_pubrel(&mut self, pkid: u16) {
        let found = {
            let mut st = self.session.state.lock();
            let found = st.awaiting_rel.remove(&pkid).is_some();
            if found && st.persistent() {
                self.broker
                    .store_op(|| StoreOp::DelRel(self.session.client_id.to_string(), pkid));
            }
            found
        };
        self.send(&Packet::PubComp(PubAck {
            pkid,
            reason: if found {
                reason::SUCCESS
            } else {
                reason::PACKET_IDENTIFIER_NOT_FOUND
            },
            properties: AckProperties::default(),
        }));
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Result<(), Fail> {
        let v5 = self.protocol == Protocol::V5;
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained: Vec<Delivery> = Vec::new();
        let sub_id = s.properties.subscription_identifier;
        for f in &s.filters {
            let code = self.subscribe_filter(f, sub_id, &mut retained);
            match code {
                Err(reason::PROTOCOL_ERROR) => {
                    return Err(Fail::Protocol(
                        reason::PROTOCOL_ERROR,
                        "no local on a shared subscription",
                    ))
                }
                Err(c) => reasons.push(c),
                Ok(q) => reasons.push(q),
            }
        }
        if sub_id.is_some() && !v5 {
            return Err(Fail::Protocol(reason::PROTOCOL_ERROR, "subscription identifier"));
        }
        self.send(&Packet::SubAck(SubAck {
            pkid: s.pkid,
            reasons,
            properties: AckProperties::default(),
        }));
        // Retained messages follow the SUBACK, through the session queue (flow control applies).
        for d in retained {
            let _ = self.broker.enqueue(&self.session, d);
        }
        Ok(())
    }

    /// One filter of a SUBSCRIBE, or of `mqtt.auto_subscribe`: checks it, subscribes, and
    /// collects the retained messages to send after the SUBACK. The granted QoS, or the
    /// reason code of the refusal.
    fn subscribe_filter(
        &mut self,
        f: &codec::SubscribeFilter,
        sub_id: Option<u32>,
        retained: &mut Vec<Delivery>,
    ) -> Result<u8, u8> {
        let broker = self.broker.clone();
        let cfg = &broker.cfg;
        let v5 = self.protocol == Protocol::V5;
        let parsed = topic::parse_shared(&f.filter).map_err(|_| reason::TOPIC_FILTER_INVALID)?;
        topic::validate_filter(parsed.filter, cfg.topic_limits).map_err(|_| reason::TOPIC_FILTER_INVALID)?;
        if parsed.group.is_some() {
            if !cfg.shared_subscription {
                return Err(reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
            }
            if f.no_local && v5 {
                return Err(reason::PROTOCOL_ERROR);
            }
        }
        if !cfg.wildcard_subscription && topic::has_wildcard(parsed.filter) {
            return Err(reason::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        let allowed = self.broker.auth.authorize(
            &self.info.client_id,
            self.info.username.as_deref(),
            Action::Subscribe,
            &f.filter,
        );
        self.authz_event(Action::Subscribe, &f.filter, allowed);
        if !allowed {
            return Err(reason::NOT_AUTHORIZED);
        }
        {
            let st = self.session.state.lock();
            if st.subscriptions.len() >= cfg.max_subscriptions && !st.subscriptions.contains_key(&f.filter) {
                return Err(reason::QUOTA_EXCEEDED);
            }
        }
        let qos = f.qos.min(cfg.max_qos_allowed);
        let opts = SubOptions {
            qos: qos as u8,
            no_local: f.no_local,
            retain_as_published: f.retain_as_published,
            retain_handling: f.retain_handling,
            sub_id,
        };
        let existed = self.broker.subscribe(&self.session, &f.filter, opts)?;
        let send_retained = parsed.group.is_none()
            && match f.retain_handling {
                0 => true,
                1 => !existed,
                _ => false,
            };
        if send_retained {
            for m in self.broker.retained_matching(parsed.filter) {
                retained.push(Delivery {
                    qos: if cfg.upgrade_qos { qos } else { m.qos.min(qos) },
                    retain: true,
                    sub_ids: sub_id.into_iter().collect(),
                    share: None,
                    seq: 0,
                    msg: m,
                });
            }
        }
        let (c, filter) = (self.session.client_id.clone(), f.filter.clone());
        self.broker.emit(EventMask::SUBSCRIBED, || BrokerEvent::Subscribed {
            client_id: c,
            filter,
            qos,
            info: Some(self.info.clone()),
        });
        Ok(qos as u8)
    }

    /// `mqtt.auto_subscribe`: the configured topics (`${clientid}`, `${username}`,
    /// `${host}`, `${port}` filled in), subscribed for the client right after CONNACK, with
    /// the same checks as a SUBSCRIBE. A refused one is logged and counted; the client is
    /// connected either way.
    fn auto_subscribe(&mut self) {
        let broker = self.broker.clone();
        if broker.cfg.auto_subscribe.is_empty() {
            return;
        }
        let mut retained = Vec::new();
        for a in &broker.cfg.auto_subscribe {
            let filter = a
                .topic
                .replace("${clientid}", &self.info.client_id)
                .replace("${username}", self.info.username.as_deref().unwrap_or(""))
                .replace("${host}", &self.info.peer.ip().to_string())
                .replace("${port}", &self.info.peer.port().to_string());
            let f = codec::SubscribeFilter {
                filter,
                qos: QoS::from_u8(a.qos.min(2)).unwrap_or(QoS::AtMostOnce),
                no_local: a.nl,
                retain_as_published: a.rap,
                retain_handling: a.rh.min(2),
            };
            if let Err(code) = self.subscribe_filter(&f, None, &mut retained) {
                broker.metrics.auto_subscribe_failed.inc();
                tracing::warn!(client_id = %self.info.client_id, filter = %f.filter, code, "Auto-subscribe refused.");
            }
        }
        for d in retained {
            let _ = broker.enqueue(&self.session, d);
        }
    }

    /// Subscription by broker: subscribes what [`lookup_subscriptions`] found, with the
    /// same checks as a SUBSCRIBE (default options, no subscription identifier). A refused
    /// one is logged and counted; the client is connected either way.
    fn subscribe_by_broker(&mut self, found: Vec<(Arc<str>, Lookup)>) {
        let broker = self.broker.clone();
        let mut retained = Vec::new();
        for (source, lookup) in found {
            for why in &lookup.rejected {
                broker.metrics.subscribe_by_broker_refused.inc();
                tracing::warn!(client_id = %self.info.client_id, source = %source, reason = %why,
                    "Subscription by broker: entry skipped.");
            }
            for sub in lookup.subscriptions {
                let f = codec::SubscribeFilter {
                    filter: sub.filter,
                    qos: QoS::from_u8(sub.qos.min(2)).unwrap_or(QoS::AtMostOnce),
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                };
                if let Err(code) = self.subscribe_filter(&f, None, &mut retained) {
                    broker.metrics.subscribe_by_broker_refused.inc();
                    tracing::warn!(client_id = %self.info.client_id, source = %source, filter = %f.filter, code,
                        "Subscription by broker refused.");
                }
            }
        }
        for d in retained {
            let _ = broker.enqueue(&self.session, d);
        }
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let existed = self.broker.unsubscribe(&self.session, f);
            reasons.push(if existed {
                reason::SUCCESS
            } else {
                reason::NO_SUBSCRIPTION_EXISTED
            });
            if existed {
                let (c, filter) = (self.session.client_id.clone(), f.clone());
                self.broker.emit(EventMask::UNSUBSCRIBED, || BrokerEvent::Unsubscribed {
                    client_id: c,
                    filter,
                    info: Some(self.info.clone()),
                });
            }
        }
        self.send(&Packet::UnsubAck(UnsubAck {
            pkid: u.pkid,
            reasons,
            properties: AckProperties::default(),
        }));
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Result<Exit, Fail> {
        if let Some(e) = d.properties.session_expiry_interval {
            if self.expiry == 0 && e != 0 {
                return Err(Fail::Protocol(
                    reason::PROTOCOL_ERROR,
                    "session expiry set after connecting with 0",
                ));
            }
            self.expiry = e.min(self.broker.cfg.max_session_expiry);
        }
        // MQTT 5 §3.14.4: only reason 0x00 discards the will; 0x04 and every error code publish it.
        let with_will = d.reason != reason::NORMAL_DISCONNECTION;
        if !with_will {
            self.will = None;
        }
        Ok(Exit::ClientDisconnect { with_will })
    }

    // ---- will ----------------------------------------------------------------

    /// Publish the will now, or after its delay unless the session resumes first.
    fn schedule_will(&self, will: LastWill) {
        let delay = will.properties.delay_interval.unwrap_or(0).min(self.expiry);
        let from = self.info.client_id.clone();
        let msg = Message::new(
            will.topic.clone(),
            will.payload.clone(),
            will.qos,
            will.retain,
            Some(from),
        )
        .with_properties(codec::PublishProperties {
            payload_format_indicator: will.properties.payload_format_indicator,
            message_expiry_interval: will.properties.message_expiry_interval,
            response_topic: will.properties.response_topic.clone(),
            correlation_data: will.properties.correlation_data.clone(),
            user_properties: will.properties.user_properties.clone(),
            content_type: will.properties.content_type.clone(),
            ..Default::default()
        });
        let mut msg = msg;
        msg.publisher = Some(self.info.clone());
        if delay == 0 {
            self.broker.publish(msg);
            return;
        }
        let broker = self.broker.clone();
        let session = self.session.clone();
        let generation = session.state.lock().generation + 1; // the detach that follows bumps it
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
            let resumed = {
                let st = session.state.lock();
                st.generation != generation && !st.terminated
            };
            if !resumed {
                broker.publish(msg);
            }
        });
    }
}

async fn wait_opt(f: &mut Option<Pin<Box<dyn Future<Output = ()> + Send>>>) {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

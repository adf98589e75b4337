//! Events the broker emits for the rule engine (and anything else that
//! listens): every message and every client lifecycle step.
//!
//! The broker sends them with `try_send` on a bounded channel and never waits:
//! when the channel is full the event is counted as dropped
//! (`junction_events_dropped_total`), so a slow consumer cannot stall MQTT.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::codec::{Protocol, QoS};
use super::message::Message;

/// Identity of a connected client, shared by its events.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInfo {
    pub client_id: Arc<str>,
    pub username: Option<String>,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub keep_alive: u16,
    pub clean_start: bool,
    pub expiry_interval: u32,
}

/// Why a client connection ended (EMQX's reason names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    Normal,
    Kicked,
    KeepaliveTimeout,
    NotAuthorized,
    TcpClosed,
    Discarded,
    TakenOver,
    ProtocolError,
    ServerShutdown,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Normal => "normal",
            DisconnectReason::Kicked => "kicked",
            DisconnectReason::KeepaliveTimeout => "keepalive_timeout",
            DisconnectReason::NotAuthorized => "not_authorized",
            DisconnectReason::TcpClosed => "tcp_closed",
            DisconnectReason::Discarded => "discarded",
            DisconnectReason::TakenOver => "takenover",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::ServerShutdown => "shutdown",
        }
    }
}

/// Why a message was not delivered (EMQX's `message.dropped` / `delivery.dropped` reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    NoSubscribers,
    QueueFull,
    Expired,
    NoLocal,
    Qos0Offline,
    TooLarge,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::NoSubscribers,
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::NoLocal,
        DropReason::Qos0Offline,
        DropReason::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoSubscribers => "no_subscribers",
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::NoLocal => "no_local",
            DropReason::Qos0Offline => "qos0_msg",
            DropReason::TooLarge => "too_large",
        }
    }
}

/// One broker event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// `message.publish`: a message entered the broker (client or injected).
    Publish(Arc<Message>),
    ClientConnected(ClientInfo),
    ClientDisconnected {
        client: ClientInfo,
        reason: DisconnectReason,
    },
    /// `client.connack` with the reason code sent.
    ConnAck {
        client_id: Arc<str>,
        username: Option<String>,
        peer: SocketAddr,
        code: u8,
    },
    SessionCreated {
        client_id: Arc<str>,
    },
    SessionTerminated {
        client_id: Arc<str>,
        reason: &'static str,
    },
    Subscribed {
        client_id: Arc<str>,
        filter: String,
        qos: QoS,
        /// The client's connection (username, address), when known.
        info: Option<Arc<ClientInfo>>,
    },
    Unsubscribed {
        client_id: Arc<str>,
        filter: String,
        info: Option<Arc<ClientInfo>>,
    },
    Delivered {
        client_id: Arc<str>,
        message: Arc<Message>,
        /// The receiving connection.
        info: Option<Arc<ClientInfo>>,
    },
    Acked {
        client_id: Arc<str>,
        message: Arc<Message>,
        info: Option<Arc<ClientInfo>>,
    },
    /// `message.dropped`: nobody took the message.
    MessageDropped {
        message: Arc<Message>,
        reason: DropReason,
    },
    /// `delivery.dropped`: one subscriber did not get it.
    DeliveryDropped {
        client_id: Arc<str>,
        message: Arc<Message>,
        reason: DropReason,
    },
    /// `client.check_authn_complete`: the CONNECT was authenticated (`code` 0) or refused.
    AuthnComplete {
        client_id: Arc<str>,
        username: Option<String>,
        peer: SocketAddr,
        code: u8,
    },
    /// `client.check_authz_complete`.
    AuthzComplete {
        client_id: Arc<str>,
        username: Option<String>,
        peer: SocketAddr,
        topic: String,
        action: &'static str,
        allowed: bool,
    },
}

/// The events a listener wants, one bit per [`BrokerEvent`] variant. The broker
/// builds and sends only these, so a rule set that reads only `message.publish`
/// costs nothing on deliveries and acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventMask(pub u32);

impl EventMask {
    pub const NONE: EventMask = EventMask(0);
    pub const PUBLISH: EventMask = EventMask(1);
    pub const CONNECTED: EventMask = EventMask(1 << 1);
    pub const DISCONNECTED: EventMask = EventMask(1 << 2);
    pub const CONNACK: EventMask = EventMask(1 << 3);
    pub const SESSION: EventMask = EventMask(1 << 4);
    pub const SUBSCRIBED: EventMask = EventMask(1 << 5);
    pub const UNSUBSCRIBED: EventMask = EventMask(1 << 6);
    pub const DELIVERED: EventMask = EventMask(1 << 7);
    pub const ACKED: EventMask = EventMask(1 << 8);
    pub const MESSAGE_DROPPED: EventMask = EventMask(1 << 9);
    pub const DELIVERY_DROPPED: EventMask = EventMask(1 << 10);
    pub const AUTHZ: EventMask = EventMask(1 << 11);
    pub const AUTHN: EventMask = EventMask(1 << 12);
    pub const ALL: EventMask = EventMask(u32::MAX);

    pub fn contains(self, other: EventMask) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for EventMask {
    type Output = EventMask;
    fn bitor(self, rhs: EventMask) -> EventMask {
        EventMask(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for EventMask {
    fn bitor_assign(&mut self, rhs: EventMask) {
        self.0 |= rhs.0;
    }
}

/// Where the broker sends events: one bounded channel per shard. An event goes to the shard
/// of its client (the publisher for messages), so one client's events stay in order while
/// several dispatchers evaluate rules in parallel.
#[derive(Debug, Clone)]
pub struct EventSink {
    shards: Vec<mpsc::Sender<BrokerEvent>>,
    hasher: ahash::RandomState,
}

impl EventSink {
    /// A sink over `shards` (at least one).
    pub fn new(shards: Vec<mpsc::Sender<BrokerEvent>>) -> EventSink {
        EventSink {
            shards,
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
        }
    }

    /// Sends without waiting; `false` when the shard's channel is full (or closed).
    pub fn try_send(&self, ev: BrokerEvent) -> bool {
        let i = match self.shards.len() {
            0 => return false,
            1 => 0,
            n => (self.hasher.hash_one(ev.client_key()) % n as u64) as usize,
        };
        self.shards[i].try_send(ev).is_ok()
    }
}

impl BrokerEvent {
    /// The client an event belongs to (for sharding): the client, or a message's publisher
    /// (its topic for messages the broker made itself).
    pub fn client_key(&self) -> &str {
        match self {
            BrokerEvent::Publish(m) | BrokerEvent::MessageDropped { message: m, .. } => {
                m.from.as_deref().unwrap_or(&m.topic)
            }
            BrokerEvent::ClientConnected(c) | BrokerEvent::ClientDisconnected { client: c, .. } => &c.client_id,
            BrokerEvent::ConnAck { client_id, .. }
            | BrokerEvent::SessionCreated { client_id }
            | BrokerEvent::SessionTerminated { client_id, .. }
            | BrokerEvent::Subscribed { client_id, .. }
            | BrokerEvent::Unsubscribed { client_id, .. }
            | BrokerEvent::Delivered { client_id, .. }
            | BrokerEvent::Acked { client_id, .. }
            | BrokerEvent::DeliveryDropped { client_id, .. }
            | BrokerEvent::AuthnComplete { client_id, .. }
            | BrokerEvent::AuthzComplete { client_id, .. } => client_id,
        }
    }
}

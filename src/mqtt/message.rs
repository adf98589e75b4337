//! A routed application message: what a PUBLISH carries once it is inside the
//! broker, shared (`Arc`) by every subscriber it is delivered to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Serialize};

use super::codec::{PublishProperties, QoS, UserProperty};

/// Milliseconds since the Unix epoch (wall clock: survives restarts, unlike `Instant`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Message ids start at the start time in units of 100 ns and count up by one, so that
/// they stay unique across restarts (rules use them as dedupe keys in databases) unless a
/// run averaged more than 10 million messages a second.
static NEXT_ID: std::sync::LazyLock<AtomicU64> = std::sync::LazyLock::new(|| {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_nanos() / 100) as u64)
        .unwrap_or(1);
    AtomicU64::new(t.max(1))
});

/// An application message as routed: topic, payload, QoS, retain flag and the
/// MQTT 5 properties that pass through to subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique id, also across restarts (for events, rule outputs and dedupe keys).
    pub id: u64,
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
    /// Absolute expiry (Unix ms) from the Message Expiry Interval, if any.
    pub expires_at_ms: Option<u64>,
    /// Publishing client (None for messages injected by the broker itself).
    pub from: Option<Arc<str>>,
    pub received_at_ms: u64,
    /// The rule whose `republish` action made this message (loop protection: that rule
    /// does not see it again). Not stored: after a restart the message is a plain one.
    pub republished_by: Option<Arc<str>>,
    /// How many republishes in a row led to this message (0 for a client's message).
    pub rule_depth: u8,
    /// Publish without the `message.publish` event (a republished message no rule reads).
    /// Not stored.
    pub no_publish_event: bool,
    /// The publishing connection (username, address) for the rule engine's columns. Not
    /// stored.
    pub publisher: Option<Arc<super::events::ClientInfo>>,
}

impl Message {
    /// A message with no MQTT 5 properties, published by `from`.
    pub fn new(topic: ByteString, payload: Bytes, qos: QoS, retain: bool, from: Option<Arc<str>>) -> Message {
        Message {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            topic,
            payload,
            qos,
            retain,
            payload_format_indicator: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            expires_at_ms: None,
            from,
            received_at_ms: now_ms(),
            republished_by: None,
            rule_depth: 0,
            no_publish_event: false,
            publisher: None,
        }
    }

    /// Take the pass-through properties of an incoming PUBLISH (or will).
    pub fn with_properties(mut self, p: PublishProperties) -> Message {
        self.payload_format_indicator = p.payload_format_indicator;
        self.content_type = p.content_type;
        self.response_topic = p.response_topic;
        self.correlation_data = p.correlation_data;
        self.user_properties = p.user_properties;
        self.expires_at_ms = p
            .message_expiry_interval
            .map(|s| self.received_at_ms + u64::from(s) * 1000);
        self
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }

    /// Remaining expiry interval in whole seconds, rounded up, for the outgoing PUBLISH.
    pub fn remaining_expiry(&self, now_ms: u64) -> Option<u32> {
        self.expires_at_ms
            .map(|e| (e.saturating_sub(now_ms).div_ceil(1000)).min(u64::from(u32::MAX)) as u32)
    }

    /// Properties for an outgoing PUBLISH (no alias, no subscription ids yet).
    pub fn publish_properties(&self, now_ms: u64) -> PublishProperties {
        PublishProperties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.remaining_expiry(now_ms),
            topic_alias: None,
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: self.content_type.clone(),
        }
    }

    pub fn to_stored(&self) -> StoredMessage {
        StoredMessage {
            id: self.id,
            topic: self.topic.to_string(),
            payload: self.payload.to_vec(),
            qos: self.qos as u8,
            retain: self.retain,
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.as_ref().map(|b| b.to_vec()),
            user_properties: self.user_properties.clone(),
            expires_at_ms: self.expires_at_ms,
            from: self.from.as_deref().map(str::to_owned),
            received_at_ms: self.received_at_ms,
        }
    }
}

/// The on-disk form of a [`Message`] (postcard-encoded in the store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub payload_format_indicator: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: Vec<(String, String)>,
    pub expires_at_ms: Option<u64>,
    pub from: Option<String>,
    pub received_at_ms: u64,
}

impl StoredMessage {
    pub fn into_message(self) -> Message {
        Message {
            id: self.id,
            topic: self.topic.into(),
            payload: self.payload.into(),
            qos: QoS::from_u8(self.qos).unwrap_or(QoS::AtMostOnce),
            retain: self.retain,
            payload_format_indicator: self.payload_format_indicator,
            content_type: self.content_type,
            response_topic: self.response_topic,
            correlation_data: self.correlation_data.map(Bytes::from),
            user_properties: self.user_properties,
            expires_at_ms: self.expires_at_ms,
            from: self.from.map(Arc::from),
            received_at_ms: self.received_at_ms,
            republished_by: None,
            rule_depth: 0,
            no_publish_event: false,
            publisher: None,
        }
    }
}

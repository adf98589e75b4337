//! MQTT 5 properties, both directions: the property identifiers, which
//! packet may carry which property, the value rules (zero values, duplicates,
//! 0/1 flags), reading each packet's property block into its struct and
//! writing it back out through an [`encode::Sink`](super::encode::Sink).
//!
//! Decoding errors: an unknown identifier or one not allowed on the packet is
//! `Malformed` (0x81); a repeated single-use property or a forbidden value
//! (e.g. Receive Maximum 0) is `Protocol` (0x82). A property block longer than
//! the rest of the packet is `Malformed`.

use bytes::Bytes;

use super::decode::Reader;
use super::encode::{put_bin, put_str, put_varint, Counter, Sink};
use super::packet::*;
use super::{DecodeError, EncodeError};
use DecodeError::{Malformed, Protocol};

/// Largest value of a Variable Byte Integer (4 bytes).
pub(crate) const MAX_VARINT: usize = 268_435_455;

/// Property identifiers (MQTT 5.0, section 2.2.2.2).
pub(crate) mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// One decoded property, before it is checked against the packet type.
enum Prop {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Bytes),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(u8),
    RetainAvailable(u8),
    UserProperty(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

fn read_prop(r: &mut Reader) -> Result<Prop, DecodeError> {
    Ok(match r.u8()? {
        id::PAYLOAD_FORMAT_INDICATOR => Prop::PayloadFormatIndicator(r.u8()?),
        id::MESSAGE_EXPIRY_INTERVAL => Prop::MessageExpiryInterval(r.u32()?),
        id::CONTENT_TYPE => Prop::ContentType(r.string()?),
        id::RESPONSE_TOPIC => Prop::ResponseTopic(r.string()?),
        id::CORRELATION_DATA => Prop::CorrelationData(r.binary()?),
        id::SUBSCRIPTION_IDENTIFIER => Prop::SubscriptionIdentifier(r.varint()?),
        id::SESSION_EXPIRY_INTERVAL => Prop::SessionExpiryInterval(r.u32()?),
        id::ASSIGNED_CLIENT_IDENTIFIER => Prop::AssignedClientIdentifier(r.string()?),
        id::SERVER_KEEP_ALIVE => Prop::ServerKeepAlive(r.u16()?),
        id::AUTHENTICATION_METHOD => Prop::AuthenticationMethod(r.string()?),
        id::AUTHENTICATION_DATA => Prop::AuthenticationData(r.binary()?),
        id::REQUEST_PROBLEM_INFORMATION => Prop::RequestProblemInformation(r.u8()?),
        id::WILL_DELAY_INTERVAL => Prop::WillDelayInterval(r.u32()?),
        id::REQUEST_RESPONSE_INFORMATION => Prop::RequestResponseInformation(r.u8()?),
        id::RESPONSE_INFORMATION => Prop::ResponseInformation(r.string()?),
        id::SERVER_REFERENCE => Prop::ServerReference(r.string()?),
        id::REASON_STRING => Prop::ReasonString(r.string()?),
        id::RECEIVE_MAXIMUM => Prop::ReceiveMaximum(r.u16()?),
        id::TOPIC_ALIAS_MAXIMUM => Prop::TopicAliasMaximum(r.u16()?),
        id::TOPIC_ALIAS => Prop::TopicAlias(r.u16()?),
        id::MAXIMUM_QOS => Prop::MaximumQos(r.u8()?),
        id::RETAIN_AVAILABLE => Prop::RetainAvailable(r.u8()?),
        id::USER_PROPERTY => {
            let name = r.string()?;
            Prop::UserProperty(name, r.string()?)
        }
        id::MAXIMUM_PACKET_SIZE => Prop::MaximumPacketSize(r.u32()?),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => Prop::WildcardSubscriptionAvailable(r.u8()?),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => Prop::SubscriptionIdentifierAvailable(r.u8()?),
        id::SHARED_SUBSCRIPTION_AVAILABLE => Prop::SharedSubscriptionAvailable(r.u8()?),
        _ => return Err(Malformed("unknown property identifier")),
    })
}

/// Reads a property block (length + properties) and hands each property to `f`.
fn for_each(r: &mut Reader, mut f: impl FnMut(Prop) -> Result<(), DecodeError>) -> Result<(), DecodeError> {
    let len = r.varint()? as usize;
    if len == 0 {
        return Ok(());
    }
    if len > r.remaining() {
        return Err(Malformed("property length exceeds the remaining length"));
    }
    let mut block = r.sub(len)?;
    while !block.is_empty() {
        f(read_prop(&mut block)?)?;
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, v: T, dup: &'static str) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(Protocol(dup));
    }
    *slot = Some(v);
    Ok(())
}

/// Stores a single-use property, refusing a second occurrence.
macro_rules! once {
    ($slot:expr, $v:expr, $name:literal) => {
        set_once(&mut $slot, $v, concat!("duplicate property: ", $name))
    };
}

fn flag01(v: u8, what: &'static str) -> Result<u8, DecodeError> {
    if v > 1 {
        Err(Protocol(what))
    } else {
        Ok(v)
    }
}

fn nonzero_u16(v: u16, what: &'static str) -> Result<u16, DecodeError> {
    if v == 0 {
        Err(Protocol(what))
    } else {
        Ok(v)
    }
}

pub(crate) fn read_connect(r: &mut Reader) -> Result<ConnectProperties, DecodeError> {
    let mut p = ConnectProperties::default();
    for_each(r, |prop| match prop {
        Prop::SessionExpiryInterval(v) => {
            once!(p.session_expiry_interval, v, "Session Expiry Interval")
        }
        Prop::ReceiveMaximum(v) => {
            let v = nonzero_u16(v, "Receive Maximum is 0")?;
            once!(p.receive_maximum, v, "Receive Maximum")
        }
        Prop::MaximumPacketSize(v) => {
            if v == 0 {
                return Err(Protocol("Maximum Packet Size is 0"));
            }
            once!(p.maximum_packet_size, v, "Maximum Packet Size")
        }
        Prop::TopicAliasMaximum(v) => once!(p.topic_alias_maximum, v, "Topic Alias Maximum"),
        Prop::RequestResponseInformation(v) => {
            let v = flag01(v, "Request Response Information is not 0 or 1")?;
            once!(p.request_response_information, v, "Request Response Information")
        }
        Prop::RequestProblemInformation(v) => {
            let v = flag01(v, "Request Problem Information is not 0 or 1")?;
            once!(p.request_problem_information, v, "Request Problem Information")
        }
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        Prop::AuthenticationMethod(v) => once!(p.authentication_method, v, "Authentication Method"),
        Prop::AuthenticationData(v) => once!(p.authentication_data, v, "Authentication Data"),
        _ => Err(Malformed("property not allowed in CONNECT")),
    })?;
    if p.authentication_data.is_some() && p.authentication_method.is_none() {
        return Err(Protocol("Authentication Data without Authentication Method"));
    }
    Ok(p)
}

pub(crate) fn read_will(r: &mut Reader) -> Result<WillProperties, DecodeError> {
    let mut p = WillProperties::default();
    for_each(r, |prop| match prop {
        Prop::WillDelayInterval(v) => once!(p.delay_interval, v, "Will Delay Interval"),
        Prop::PayloadFormatIndicator(v) => {
            let v = flag01(v, "Payload Format Indicator is not 0 or 1")?;
            once!(p.payload_format_indicator, v, "Payload Format Indicator")
        }
        Prop::MessageExpiryInterval(v) => {
            once!(p.message_expiry_interval, v, "Message Expiry Interval")
        }
        Prop::ContentType(v) => once!(p.content_type, v, "Content Type"),
        Prop::ResponseTopic(v) => once!(p.response_topic, v, "Response Topic"),
        Prop::CorrelationData(v) => once!(p.correlation_data, v, "Correlation Data"),
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        _ => Err(Malformed("property not allowed in will properties")),
    })?;
    Ok(p)
}

pub(crate) fn read_connack(r: &mut Reader) -> Result<ConnAckProperties, DecodeError> {
    let mut p = ConnAckProperties::default();
    for_each(r, |prop| match prop {
        Prop::SessionExpiryInterval(v) => {
            once!(p.session_expiry_interval, v, "Session Expiry Interval")
        }
        Prop::ReceiveMaximum(v) => {
            let v = nonzero_u16(v, "Receive Maximum is 0")?;
            once!(p.receive_maximum, v, "Receive Maximum")
        }
        Prop::MaximumQos(v) => {
            let v = flag01(v, "Maximum QoS is not 0 or 1")?;
            once!(p.maximum_qos, v, "Maximum QoS")
        }
        Prop::RetainAvailable(v) => {
            let v = flag01(v, "Retain Available is not 0 or 1")?;
            once!(p.retain_available, v, "Retain Available")
        }
        Prop::MaximumPacketSize(v) => {
            if v == 0 {
                return Err(Protocol("Maximum Packet Size is 0"));
            }
            once!(p.maximum_packet_size, v, "Maximum Packet Size")
        }
        Prop::AssignedClientIdentifier(v) => {
            once!(p.assigned_client_identifier, v, "Assigned Client Identifier")
        }
        Prop::TopicAliasMaximum(v) => once!(p.topic_alias_maximum, v, "Topic Alias Maximum"),
        Prop::ReasonString(v) => once!(p.reason_string, v, "Reason String"),
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        Prop::WildcardSubscriptionAvailable(v) => {
            let v = flag01(v, "Wildcard Subscription Available is not 0 or 1")?;
            once!(p.wildcard_subscription_available, v, "Wildcard Subscription Available")
        }
        Prop::SubscriptionIdentifierAvailable(v) => {
            let v = flag01(v, "Subscription Identifier Available is not 0 or 1")?;
            once!(
                p.subscription_identifiers_available,
                v,
                "Subscription Identifier Available"
            )
        }
        Prop::SharedSubscriptionAvailable(v) => {
            let v = flag01(v, "Shared Subscription Available is not 0 or 1")?;
            once!(p.shared_subscription_available, v, "Shared Subscription Available")
        }
        Prop::ServerKeepAlive(v) => once!(p.server_keep_alive, v, "Server Keep Alive"),
        Prop::ResponseInformation(v) => once!(p.response_information, v, "Response Information"),
        Prop::ServerReference(v) => once!(p.server_reference, v, "Server Reference"),
        Prop::AuthenticationMethod(v) => once!(p.authentication_method, v, "Authentication Method"),
        Prop::AuthenticationData(v) => once!(p.authentication_data, v, "Authentication Data"),
        _ => Err(Malformed("property not allowed in CONNACK")),
    })?;
    Ok(p)
}

pub(crate) fn read_publish(r: &mut Reader) -> Result<PublishProperties, DecodeError> {
    let mut p = PublishProperties::default();
    for_each(r, |prop| match prop {
        Prop::PayloadFormatIndicator(v) => {
            let v = flag01(v, "Payload Format Indicator is not 0 or 1")?;
            once!(p.payload_format_indicator, v, "Payload Format Indicator")
        }
        Prop::MessageExpiryInterval(v) => {
            once!(p.message_expiry_interval, v, "Message Expiry Interval")
        }
        Prop::TopicAlias(v) => {
            let v = nonzero_u16(v, "Topic Alias is 0")?;
            once!(p.topic_alias, v, "Topic Alias")
        }
        Prop::ResponseTopic(v) => once!(p.response_topic, v, "Response Topic"),
        Prop::CorrelationData(v) => once!(p.correlation_data, v, "Correlation Data"),
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        Prop::SubscriptionIdentifier(v) => {
            if v == 0 {
                return Err(Protocol("Subscription Identifier is 0"));
            }
            p.subscription_identifiers.push(v);
            Ok(())
        }
        Prop::ContentType(v) => once!(p.content_type, v, "Content Type"),
        _ => Err(Malformed("property not allowed in PUBLISH")),
    })?;
    Ok(p)
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) fn read_ack(r: &mut Reader) -> Result<AckProperties, DecodeError> {
    let mut p = AckProperties::default();
    for_each(r, |prop| match prop {
        Prop::ReasonString(v) => once!(p.reason_string, v, "Reason String"),
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        _ => Err(Malformed("property not allowed in an acknowledgement")),
    })?;
    Ok(p)
}

pub(crate) fn read_subscribe(r: &mut Reader) -> Result<SubscribeProperties, DecodeError> {
    let mut p = SubscribeProperties::default();
    for_each(r, |prop| match prop {
        Prop::SubscriptionIdentifier(v) => {
            if v == 0 {
                return Err(Protocol("Subscription Identifier is 0"));
            }
            once!(p.subscription_identifier, v, "Subscription Identifier")
        }
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        _ => Err(Malformed("property not allowed in SUBSCRIBE")),
    })?;
    Ok(p)
}

/// UNSUBSCRIBE carries user properties only.
pub(crate) fn read_unsubscribe(r: &mut Reader) -> Result<Vec<UserProperty>, DecodeError> {
    let mut user = Vec::new();
    for_each(r, |prop| match prop {
        Prop::UserProperty(k, v) => {
            user.push((k, v));
            Ok(())
        }
        _ => Err(Malformed("property not allowed in UNSUBSCRIBE")),
    })?;
    Ok(user)
}

pub(crate) fn read_disconnect(r: &mut Reader) -> Result<DisconnectProperties, DecodeError> {
    let mut p = DisconnectProperties::default();
    for_each(r, |prop| match prop {
        Prop::SessionExpiryInterval(v) => {
            once!(p.session_expiry_interval, v, "Session Expiry Interval")
        }
        Prop::ReasonString(v) => once!(p.reason_string, v, "Reason String"),
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        Prop::ServerReference(v) => once!(p.server_reference, v, "Server Reference"),
        _ => Err(Malformed("property not allowed in DISCONNECT")),
    })?;
    Ok(p)
}

pub(crate) fn read_auth(r: &mut Reader) -> Result<AuthProperties, DecodeError> {
    let mut p = AuthProperties::default();
    for_each(r, |prop| match prop {
        Prop::AuthenticationMethod(v) => once!(p.authentication_method, v, "Authentication Method"),
        Prop::AuthenticationData(v) => once!(p.authentication_data, v, "Authentication Data"),
        Prop::ReasonString(v) => once!(p.reason_string, v, "Reason String"),
        Prop::UserProperty(k, v) => {
            p.user_properties.push((k, v));
            Ok(())
        }
        _ => Err(Malformed("property not allowed in AUTH")),
    })?;
    Ok(p)
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// A property block that can be written to a [`Sink`] (without its length).
pub(crate) trait Props {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;
}

/// Writes a property block: its Variable Byte Integer length, then the properties.
pub(crate) fn put_props<S: Sink, P: Props + ?Sized>(s: &mut S, p: &P) -> Result<(), EncodeError> {
    let mut len = Counter(0);
    p.emit(&mut len)?;
    if len.0 > MAX_VARINT {
        return Err(EncodeError::TooLong("properties"));
    }
    put_varint(s, len.0);
    p.emit(s)
}

fn p_u8<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.byte(id);
        s.byte(v);
    }
}

fn p_u16<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.byte(id);
        s.u16(v);
    }
}

fn p_u32<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.byte(id);
        s.u32(v);
    }
}

fn p_str<S: Sink>(s: &mut S, id: u8, v: &Option<String>, what: &'static str) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.byte(id);
        put_str(s, v, what)?;
    }
    Ok(())
}

fn p_bin<S: Sink>(s: &mut S, id: u8, v: &Option<Bytes>, what: &'static str) -> Result<(), EncodeError> {
    if let Some(v) = v {
        s.byte(id);
        put_bin(s, v, what)?;
    }
    Ok(())
}

fn p_sub_id<S: Sink>(s: &mut S, v: u32) -> Result<(), EncodeError> {
    let v = v as usize;
    if v > MAX_VARINT {
        return Err(EncodeError::TooLong("subscription identifier"));
    }
    s.byte(id::SUBSCRIPTION_IDENTIFIER);
    put_varint(s, v);
    Ok(())
}

fn p_user<S: Sink>(s: &mut S, user: &[UserProperty]) -> Result<(), EncodeError> {
    for (k, v) in user {
        s.byte(id::USER_PROPERTY);
        put_str(s, k, "user property name")?;
        put_str(s, v, "user property value")?;
    }
    Ok(())
}

impl Props for ConnectProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_u32(s, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        p_u16(s, id::RECEIVE_MAXIMUM, self.receive_maximum);
        p_u32(s, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        p_u16(s, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        p_u8(s, id::REQUEST_RESPONSE_INFORMATION, self.request_response_information);
        p_u8(s, id::REQUEST_PROBLEM_INFORMATION, self.request_problem_information);
        p_user(s, &self.user_properties)?;
        p_str(
            s,
            id::AUTHENTICATION_METHOD,
            &self.authentication_method,
            "authentication method",
        )?;
        p_bin(
            s,
            id::AUTHENTICATION_DATA,
            &self.authentication_data,
            "authentication data",
        )
    }
}

impl Props for WillProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_u32(s, id::WILL_DELAY_INTERVAL, self.delay_interval);
        p_u8(s, id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        p_u32(s, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        p_str(s, id::CONTENT_TYPE, &self.content_type, "content type")?;
        p_str(s, id::RESPONSE_TOPIC, &self.response_topic, "response topic")?;
        p_bin(s, id::CORRELATION_DATA, &self.correlation_data, "correlation data")?;
        p_user(s, &self.user_properties)
    }
}

impl Props for ConnAckProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_u32(s, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        p_u16(s, id::RECEIVE_MAXIMUM, self.receive_maximum);
        p_u8(s, id::MAXIMUM_QOS, self.maximum_qos);
        p_u8(s, id::RETAIN_AVAILABLE, self.retain_available);
        p_u32(s, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        p_str(
            s,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            &self.assigned_client_identifier,
            "assigned client identifier",
        )?;
        p_u16(s, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        p_str(s, id::REASON_STRING, &self.reason_string, "reason string")?;
        p_user(s, &self.user_properties)?;
        p_u8(
            s,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        p_u8(
            s,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        p_u8(s, id::SHARED_SUBSCRIPTION_AVAILABLE, self.shared_subscription_available);
        p_u16(s, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        p_str(
            s,
            id::RESPONSE_INFORMATION,
            &self.response_information,
            "response information",
        )?;
        p_str(s, id::SERVER_REFERENCE, &self.server_reference, "server reference")?;
        p_str(
            s,
            id::AUTHENTICATION_METHOD,
            &self.authentication_method,
            "authentication method",
        )?;
        p_bin(
            s,
            id::AUTHENTICATION_DATA,
            &self.authentication_data,
            "authentication data",
        )
    }
}

impl Props for PublishProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_u8(s, id::PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        p_u32(s, id::MESSAGE_EXPIRY_INTERVAL, self.message_expiry_interval);
        p_u16(s, id::TOPIC_ALIAS, self.topic_alias);
        p_str(s, id::RESPONSE_TOPIC, &self.response_topic, "response topic")?;
        p_bin(s, id::CORRELATION_DATA, &self.correlation_data, "correlation data")?;
        p_user(s, &self.user_properties)?;
        for &v in &self.subscription_identifiers {
            p_sub_id(s, v)?;
        }
        p_str(s, id::CONTENT_TYPE, &self.content_type, "content type")
    }
}

impl Props for AckProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_str(s, id::REASON_STRING, &self.reason_string, "reason string")?;
        p_user(s, &self.user_properties)
    }
}

impl Props for SubscribeProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = self.subscription_identifier {
            p_sub_id(s, v)?;
        }
        p_user(s, &self.user_properties)
    }
}

/// UNSUBSCRIBE's property block: user properties only.
impl Props for [UserProperty] {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_user(s, self)
    }
}

impl Props for DisconnectProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_u32(s, id::SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        p_str(s, id::REASON_STRING, &self.reason_string, "reason string")?;
        p_user(s, &self.user_properties)?;
        p_str(s, id::SERVER_REFERENCE, &self.server_reference, "server reference")
    }
}

impl Props for AuthProperties {
    fn emit<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
        p_str(
            s,
            id::AUTHENTICATION_METHOD,
            &self.authentication_method,
            "authentication method",
        )?;
        p_bin(
            s,
            id::AUTHENTICATION_DATA,
            &self.authentication_data,
            "authentication data",
        )?;
        p_str(s, id::REASON_STRING, &self.reason_string, "reason string")?;
        p_user(s, &self.user_properties)
    }
}

pub(crate) fn ack_is_empty(p: &AckProperties) -> bool {
    p.reason_string.is_none() && p.user_properties.is_empty()
}

pub(crate) fn disconnect_is_empty(p: &DisconnectProperties) -> bool {
    p.session_expiry_interval.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
        && p.server_reference.is_none()
}

pub(crate) fn auth_is_empty(p: &AuthProperties) -> bool {
    p.authentication_method.is_none()
        && p.authentication_data.is_none()
        && p.reason_string.is_none()
        && p.user_properties.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn reader(b: &[u8]) -> Reader {
        Reader::new(Bytes::copy_from_slice(b))
    }

    #[test]
    fn empty_block() {
        let mut r = reader(&[0]);
        assert_eq!(read_publish(&mut r).unwrap(), PublishProperties::default());
        assert!(r.is_empty());
    }

    #[test]
    fn publish_block_all_properties() {
        let p = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            subscription_identifiers: vec![1, 268_435_455],
            content_type: Some("text/plain".into()),
        };
        let mut out = BytesMut::new();
        put_props(&mut out, &p).unwrap();
        let mut r = Reader::new(out.freeze());
        assert_eq!(read_publish(&mut r).unwrap(), p);
        assert!(r.is_empty());
    }

    #[test]
    fn unknown_and_misplaced_ids_are_malformed() {
        // 0x04 is not a property identifier.
        assert_eq!(
            read_publish(&mut reader(&[2, 0x04, 0])),
            Err(Malformed("unknown property identifier"))
        );
        // Session Expiry Interval is not allowed in PUBLISH.
        assert!(matches!(
            read_publish(&mut reader(&[5, 0x11, 0, 0, 0, 1])),
            Err(Malformed(_))
        ));
        // Topic Alias is not allowed in CONNECT.
        assert!(matches!(read_connect(&mut reader(&[3, 0x23, 0, 1])), Err(Malformed(_))));
    }

    #[test]
    fn duplicates_are_protocol_errors_except_user_properties() {
        let dup = [6, 0x23, 0, 1, 0x23, 0, 2];
        assert_eq!(
            read_publish(&mut reader(&dup)),
            Err(Protocol("duplicate property: Topic Alias"))
        );
        let users = [12, 0x26, 0, 1, b'k', 0, 0, 0x26, 0, 1, b'k', 0, 0];
        let p = read_publish(&mut reader(&users)).unwrap();
        assert_eq!(p.user_properties.len(), 2);
        // Subscription Identifier may repeat in PUBLISH, not in SUBSCRIBE.
        let ids = [4, 0x0B, 1, 0x0B, 2];
        assert_eq!(
            read_publish(&mut reader(&ids)).unwrap().subscription_identifiers,
            vec![1, 2]
        );
        assert!(matches!(read_subscribe(&mut reader(&ids)), Err(Protocol(_))));
    }

    #[test]
    fn zero_values_are_protocol_errors() {
        assert_eq!(
            read_publish(&mut reader(&[3, 0x23, 0, 0])),
            Err(Protocol("Topic Alias is 0"))
        );
        assert_eq!(
            read_publish(&mut reader(&[2, 0x0B, 0])),
            Err(Protocol("Subscription Identifier is 0"))
        );
        assert_eq!(
            read_subscribe(&mut reader(&[2, 0x0B, 0])),
            Err(Protocol("Subscription Identifier is 0"))
        );
        assert_eq!(
            read_connect(&mut reader(&[3, 0x21, 0, 0])),
            Err(Protocol("Receive Maximum is 0"))
        );
        assert_eq!(
            read_connack(&mut reader(&[3, 0x21, 0, 0])),
            Err(Protocol("Receive Maximum is 0"))
        );
        assert_eq!(
            read_connect(&mut reader(&[5, 0x27, 0, 0, 0, 0])),
            Err(Protocol("Maximum Packet Size is 0"))
        );
        assert!(matches!(read_connack(&mut reader(&[2, 0x24, 2])), Err(Protocol(_))));
        assert!(matches!(read_connect(&mut reader(&[2, 0x17, 2])), Err(Protocol(_))));
    }

    #[test]
    fn block_longer_than_packet_is_malformed() {
        assert_eq!(
            read_ack(&mut reader(&[9, 0x1F, 0, 1, b'x'])),
            Err(Malformed("property length exceeds the remaining length"))
        );
        // A property running past the end of its block.
        assert!(matches!(
            read_ack(&mut reader(&[3, 0x1F, 0, 1, b'x'])),
            Err(Malformed(_))
        ));
    }

    #[test]
    fn auth_data_needs_method_in_connect() {
        assert!(matches!(
            read_connect(&mut reader(&[4, 0x16, 0, 1, 9])),
            Err(Protocol(_))
        ));
    }

    #[test]
    fn sub_id_too_large_is_refused_on_encode() {
        let p = SubscribeProperties {
            subscription_identifier: Some(268_435_456),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        assert_eq!(
            put_props(&mut out, &p),
            Err(EncodeError::TooLong("subscription identifier"))
        );
    }
}

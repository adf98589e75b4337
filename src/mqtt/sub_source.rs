//! Subscription by broker: sources of subscriptions looked up for a client when it
//! connects (a database, a cache). The MQTT layer only knows this trait; the application
//! wires in implementations (backed by connectors) with
//! [`Broker::set_subscription_sources`](super::broker::Broker::set_subscription_sources).
//!
//! On CONNECT, after authentication and before the CONNACK is sent, every source is asked
//! at once, each bounded by its own [`SubscriptionSource::timeout`]. The subscriptions
//! found go through the same checks and path as `mqtt.auto_subscribe` (and a SUBSCRIBE):
//! filter validation, authorization, quotas, retained delivery. A source that fails or
//! times out is logged and counted (`junction_subscribe_by_broker_failed_total`) and the
//! client connects anyway.

use std::time::Duration;

use futures_util::future::BoxFuture;

/// One subscription a source found for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSubscription {
    pub filter: String,
    /// 0, 1 or 2.
    pub qos: u8,
}

/// What a lookup found: the subscriptions, and the entries it could not use (a row
/// without a topic, a QoS that is not 0, 1 or 2), each described for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    pub subscriptions: Vec<BrokerSubscription>,
    pub rejected: Vec<String>,
}

/// A source of subscriptions for connecting clients.
pub trait SubscriptionSource: Send + Sync + 'static {
    /// A name for logs (e.g. the connector's).
    fn name(&self) -> &str;
    /// The longest the broker waits for [`lookup`](Self::lookup) before it sends the
    /// CONNACK without this source's subscriptions.
    fn timeout(&self) -> Duration;
    /// The subscriptions of client `client_id` (with `username`, if it gave one). An error
    /// is a message for the log.
    fn lookup<'a>(&'a self, client_id: &'a str, username: Option<&'a str>) -> BoxFuture<'a, Result<Lookup, String>>;
}

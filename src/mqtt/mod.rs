//! The MQTT broker: codec, topics, sessions, routing, connections, listeners.
//!
//! This layer knows nothing of rules or connectors. It emits
//! [`events::BrokerEvent`]s on a bounded channel and accepts injected
//! publishes through [`broker::Broker::publish`].

pub mod auth;
pub mod broker;
pub mod codec;
pub mod connection;
pub mod events;
pub mod listener;
pub mod message;
pub mod session;
pub mod sub_source;
pub mod sys;
pub mod topic;
pub mod trie;

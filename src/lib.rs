//! Junction: an MQTT broker whose heart is an SQL rule engine.
//!
//! See `src/README.md` for a map of the source tree.
pub mod api;
pub mod app;
pub mod config;
pub mod connectors;
pub mod metrics;
pub mod mqtt;
pub mod rules;
pub mod store;

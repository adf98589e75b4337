//! Broker metrics: one place for every counter and gauge, and their
//! Prometheus text rendering. Counters are relaxed atomics: cheap enough for
//! the per-message path, exact enough for monitoring.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::mqtt::events::DropReason;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// All broker metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub connections_refused: Counter,
    pub sessions: Gauge,
    pub subscriptions: Gauge,
    pub retained: Gauge,
    /// Messages received from clients, by QoS.
    pub messages_received: [Counter; 3],
    /// Messages sent to clients, by QoS.
    pub messages_sent: [Counter; 3],
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    pub packets_received: Counter,
    pub packets_sent: Counter,
    /// Deliveries dropped, by [`DropReason`] (index = position in `DropReason::ALL`).
    pub dropped: [Counter; 6],
    /// Connections closed for a malformed or out-of-order packet.
    pub protocol_errors: Counter,
    /// Events not handed to the rule engine because its channel was full.
    pub events_dropped: Counter,
    /// `mqtt.auto_subscribe` topics refused (bad filter after substitution, not authorized...).
    pub auto_subscribe_failed: Counter,
    /// Subscription by broker: lookups run (one per source and connecting client).
    pub subscribe_by_broker_lookups: Counter,
    /// Subscription by broker: lookups that failed or timed out (the client connected anyway).
    pub subscribe_by_broker_failed: Counter,
    /// Subscription by broker: looked-up entries not subscribed (unusable row, refused filter).
    pub subscribe_by_broker_refused: Counter,
    /// Queued messages across all sessions.
    pub queued: Gauge,
    /// Store operations waiting to be written.
    pub store_pending: Gauge,
    pub store_errors: Counter,
}

impl Metrics {
    #[inline]
    pub fn drop_count(&self, reason: DropReason) {
        // `DropReason::ALL` lists the variants in declaration order, so the discriminant is the index.
        self.dropped[reason as usize].inc();
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(Counter::get).sum()
    }

    /// Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut s = String::with_capacity(4096);
        let gauge = |s: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut s,
            "junction_connections",
            "Open client connections.",
            self.connections.get(),
        );
        gauge(
            &mut s,
            "junction_sessions",
            "Sessions, online and offline.",
            self.sessions.get(),
        );
        gauge(
            &mut s,
            "junction_subscriptions",
            "Subscriptions.",
            self.subscriptions.get(),
        );
        gauge(
            &mut s,
            "junction_retained_messages",
            "Retained messages.",
            self.retained.get(),
        );
        gauge(
            &mut s,
            "junction_queued_messages",
            "Messages queued in sessions.",
            self.queued.get(),
        );
        gauge(
            &mut s,
            "junction_store_pending_operations",
            "Store writes not yet committed.",
            self.store_pending.get(),
        );
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut s,
            "junction_connections_total",
            "Accepted connections.",
            self.connections_total.get(),
        );
        counter(
            &mut s,
            "junction_connections_refused_total",
            "CONNECTs refused.",
            self.connections_refused.get(),
        );
        counter(
            &mut s,
            "junction_bytes_received_total",
            "Bytes received.",
            self.bytes_received.get(),
        );
        counter(
            &mut s,
            "junction_bytes_sent_total",
            "Bytes sent.",
            self.bytes_sent.get(),
        );
        counter(
            &mut s,
            "junction_packets_received_total",
            "Packets received.",
            self.packets_received.get(),
        );
        counter(
            &mut s,
            "junction_packets_sent_total",
            "Packets sent.",
            self.packets_sent.get(),
        );
        counter(
            &mut s,
            "junction_protocol_errors_total",
            "Connections closed for bad packets.",
            self.protocol_errors.get(),
        );
        counter(
            &mut s,
            "junction_events_dropped_total",
            "Events the rule engine channel refused.",
            self.events_dropped.get(),
        );
        counter(
            &mut s,
            "junction_auto_subscribe_failed_total",
            "Auto-subscribe topics refused.",
            self.auto_subscribe_failed.get(),
        );
        counter(
            &mut s,
            "junction_subscribe_by_broker_lookups_total",
            "Subscription-by-broker lookups run.",
            self.subscribe_by_broker_lookups.get(),
        );
        counter(
            &mut s,
            "junction_subscribe_by_broker_failed_total",
            "Subscription-by-broker lookups that failed or timed out.",
            self.subscribe_by_broker_failed.get(),
        );
        counter(
            &mut s,
            "junction_subscribe_by_broker_refused_total",
            "Subscription-by-broker entries not subscribed (unusable or refused).",
            self.subscribe_by_broker_refused.get(),
        );
        counter(
            &mut s,
            "junction_store_errors_total",
            "Failed store writes.",
            self.store_errors.get(),
        );
        let _ = writeln!(s, "# HELP junction_messages_received_total Messages received by QoS.\n# TYPE junction_messages_received_total counter");
        for (q, c) in self.messages_received.iter().enumerate() {
            let _ = writeln!(s, "junction_messages_received_total{{qos=\"{q}\"}} {}", c.get());
        }
        let _ = writeln!(
            s,
            "# HELP junction_messages_sent_total Messages sent by QoS.\n# TYPE junction_messages_sent_total counter"
        );
        for (q, c) in self.messages_sent.iter().enumerate() {
            let _ = writeln!(s, "junction_messages_sent_total{{qos=\"{q}\"}} {}", c.get());
        }
        let _ = writeln!(s, "# HELP junction_messages_dropped_total Deliveries dropped by reason.\n# TYPE junction_messages_dropped_total counter");
        for (r, c) in DropReason::ALL.iter().zip(self.dropped.iter()) {
            let _ = writeln!(
                s,
                "junction_messages_dropped_total{{reason=\"{}\"}} {}",
                r.as_str(),
                c.get()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_index_their_counters() {
        let m = Metrics::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            m.drop_count(*r);
            assert_eq!(m.dropped[i].get(), 1);
        }
    }
}

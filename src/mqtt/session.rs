//! Per-client session state: subscriptions, the message queue, outgoing
//! in-flight QoS 1/2 messages, incoming QoS 2 packet ids awaiting PUBREL.
//!
//! A session outlives its connection when it is persistent (Clean Session 0,
//! or a Session Expiry Interval > 0). The queue lives here, not in the
//! connection, so a publisher delivers the same way to an online or an
//! offline session: push under the session lock, wake the connection.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::codec::{Protocol, QoS};
use super::events::DisconnectReason;
use super::message::{Message, StoredMessage};

/// Options of one subscription (MQTT 5 subscription options plus identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub sub_id: Option<u32>,
}

impl SubOptions {
    pub fn qos(&self) -> QoS {
        QoS::from_u8(self.qos).unwrap_or(QoS::AtMostOnce)
    }
}

/// The trie's value: who subscribed, with which options.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub opts: SubOptions,
}

/// Share group a delivery came through, so it can go to another member if this one leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRef {
    pub group: Arc<str>,
    pub filter: Arc<str>,
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: Arc<Message>,
    /// Effective QoS: min(message QoS, subscription QoS).
    pub qos: QoS,
    /// Retain flag to send (retained-on-subscribe, or retain-as-published).
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub share: Option<ShareRef>,
    /// Store key for persistent sessions (0 = not stored).
    pub seq: u64,
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutStage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Publish,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Rel,
}

#[derive(Debug, Clone)]
pub struct Inflight {
    pub pkid: u16,
    pub delivery: Delivery,
    pub stage: OutStage,
    /// When the PUBLISH (or PUBREL) was last sent, for `mqtt.retry_interval`.
    pub sent_at: std::time::Instant,
}

/// Commands to a connection task from elsewhere in the broker.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Send DISCONNECT with this MQTT 5 reason (if v5) and close.
    Disconnect { reason_code: u8, reason: DisconnectReason },
}

/// A connection's control mailbox: one pending command and a wake-up. Much
/// smaller than a channel, which matters because every connection has one.
///
/// It also carries the connection's side of the broker-wide sweeper (see
/// [`Broker::sweep`](super::broker::Broker)): the time of the last packet
/// from the client, and the keepalive / housekeeping signals the sweeper
/// leaves, so no connection needs a timer of its own.
#[derive(Debug, Default)]
pub struct ConnCtrl {
    /// Fast path: the connection polls this every loop turn without taking the
    /// lock. Bits: [`CTRL_CMD`], [`CTRL_KEEPALIVE`], [`CTRL_HOUSEKEEPING`].
    pending: std::sync::atomic::AtomicU8,
    cmd: Mutex<Option<Control>>,
    notify: Notify,
    /// Milliseconds since the broker started at the last bytes read from the client.
    last_activity_ms: std::sync::atomic::AtomicU64,
}

/// A command is waiting in the mailbox.
pub const CTRL_CMD: u8 = 1;
/// The sweeper found no packet from the client for the keepalive period.
pub const CTRL_KEEPALIVE: u8 = 2;
/// Housekeeping is due (resends, awaiting-PUBREL expiry, idle buffers).
pub const CTRL_HOUSEKEEPING: u8 = 4;

impl ConnCtrl {
    /// Leave a command for the connection (a later one replaces an unread earlier one).
    pub fn send(&self, c: Control) {
        *self.cmd.lock() = Some(c);
        self.signal(CTRL_CMD);
    }

    /// Set signal bits and wake the connection.
    pub fn signal(&self, bits: u8) {
        self.pending.fetch_or(bits, std::sync::atomic::Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The pending signal bits, cleared (cheap when there are none).
    pub fn take_signals(&self) -> u8 {
        if self.pending.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return 0;
        }
        self.pending.swap(0, std::sync::atomic::Ordering::AcqRel)
    }

    /// The command left by [`send`](Self::send), once [`take_signals`](Self::take_signals) showed [`CTRL_CMD`].
    pub fn take_cmd(&self) -> Option<Control> {
        self.cmd.lock().take()
    }

    /// Wake the connection: messages were queued for it.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Wait until a command, a signal or queued messages may be pending (then call
    /// [`take_signals`](Self::take_signals) and drain the queue). The connection's only wake-up.
    pub fn wait(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Record activity from the client at `ms` (milliseconds since the broker started).
    pub fn touch(&self, ms: u64) {
        self.last_activity_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the client was last heard from (milliseconds since the broker started).
    pub fn last_activity(&self) -> u64 {
        self.last_activity_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The connection currently attached to a session.
#[derive(Debug, Clone)]
pub struct ConnRef {
    pub id: u64,
    pub ctrl: Arc<ConnCtrl>,
    pub protocol: Protocol,
}

/// A map allocated on first insert: most sessions never subscribe, or never
/// receive QoS 2, and an empty `HashMap` still takes 48 bytes in every session.
/// The box is the point: 8 bytes in the session instead of 48.
#[derive(Debug)]
#[allow(clippy::box_collection)]
pub struct LazyMap<K, V>(Option<Box<HashMap<K, V>>>);

impl<K, V> Default for LazyMap<K, V> {
    fn default() -> Self {
        LazyMap(None)
    }
}

impl<K: std::hash::Hash + Eq, V> LazyMap<K, V> {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.as_ref().is_some_and(|m| m.contains_key(k))
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0.as_ref().and_then(|m| m.get(k))
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.0.get_or_insert_with(Default::default).insert(k, v)
    }

    /// Removes `k`; the map is freed when it becomes empty.
    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let m = self.0.as_mut()?;
        let v = m.remove(k);
        if m.is_empty() {
            self.0 = None;
        }
        v
    }

    pub fn retain(&mut self, f: impl FnMut(&K, &mut V) -> bool) {
        if let Some(m) = self.0.as_mut() {
            m.retain(f);
            if m.is_empty() {
                self.0 = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    /// Takes every entry out, freeing the map.
    pub fn take_all(&mut self) -> impl Iterator<Item = (K, V)> {
        self.0.take().into_iter().flat_map(|m| m.into_iter())
    }
}

impl<K: std::hash::Hash + Eq, V> FromIterator<(K, V)> for LazyMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let m: HashMap<K, V> = iter.into_iter().collect();
        LazyMap((!m.is_empty()).then(|| Box::new(m)))
    }
}

#[derive(Debug, Default)]
pub struct SessionState {
    /// Full filter (including any `$share/<group>/` prefix) → options.
    pub subscriptions: LazyMap<String, SubOptions>,
    pub mqueue: VecDeque<Delivery>,
    pub inflight: VecDeque<Inflight>,
    /// Incoming QoS 2 packet ids awaiting PUBREL, with when they arrived.
    pub awaiting_rel: LazyMap<u16, std::time::Instant>,
    pub next_pkid: u16,
    pub next_seq: u64,
    pub conn: Option<ConnRef>,
    /// Session Expiry Interval in seconds (u32::MAX = never).
    pub expiry_interval: u32,
    /// Bumped on each attach and detach; timers compare it to know they are stale.
    pub generation: u64,
    pub terminated: bool,
    pub disconnected_at_ms: Option<u64>,
    /// Last time the connection took messages from the queue (or found it empty).
    pub last_drain: Option<std::time::Instant>,
}

impl SessionState {
    /// Persistent sessions are written to the store.
    pub fn persistent(&self) -> bool {
        self.expiry_interval > 0
    }

    pub fn is_online(&self) -> bool {
        self.conn.is_some()
    }

    /// Whether the attached connection is keeping up at all: it drained within
    /// the last second. A subscriber that stopped reading is not "draining",
    /// so publishers are not held back for it; its queue fills and drops instead.
    pub fn draining(&self) -> bool {
        self.last_drain
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
    }

    /// Next free packet identifier (skips ids still in flight).
    pub fn alloc_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.wrapping_add(1);
            if self.next_pkid == 0 {
                self.next_pkid = 1;
            }
            let id = self.next_pkid;
            if !self.inflight.iter().any(|i| i.pkid == id) {
                return id;
            }
        }
    }

    pub fn stored_meta(&self) -> StoredSession {
        StoredSession {
            subscriptions: self.subscriptions.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            expiry_interval: self.expiry_interval,
            disconnected_at_ms: self.disconnected_at_ms,
            next_seq: self.next_seq,
        }
    }
}

/// A session. Locked briefly by publishers (to queue) and by its connection (to send).
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// Publishers wake the attached connection through its [`ConnCtrl::wake`]
    /// (one wake-up per connection, not one more per session).
    pub state: Mutex<SessionState>,
    /// Wakes publishers paused by back-pressure when the queue falls below half the high-water mark.
    pub drained: Notify,
}

impl Session {
    pub fn new(client_id: Arc<str>, expiry_interval: u32) -> Arc<Session> {
        Arc::new(Session {
            client_id,
            state: Mutex::new(SessionState {
                expiry_interval,
                ..Default::default()
            }),
            drained: Notify::new(),
        })
    }

    /// Wait (at most `max`) until the queue is below `low`.
    pub async fn wait_drained(&self, low: usize, max: std::time::Duration) {
        let notified = self.drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = self.state.lock();
            if st.mqueue.len() < low || !st.is_online() || !st.draining() {
                return;
            }
        }
        let _ = tokio::time::timeout(max, notified).await;
    }
}

/// Session metadata as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSession {
    pub subscriptions: Vec<(String, SubOptions)>,
    pub expiry_interval: u32,
    pub disconnected_at_ms: Option<u64>,
    pub next_seq: u64,
}

/// A queued or in-flight delivery as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDelivery {
    pub msg: StoredMessage,
    pub qos: u8,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    pub share: Option<(String, String)>,
    /// Some when in flight.
    pub pkid: Option<u16>,
    pub stage: OutStage,
}

impl StoredDelivery {
    pub fn from_delivery(d: &Delivery, pkid: Option<u16>, stage: OutStage) -> StoredDelivery {
        StoredDelivery {
            msg: d.msg.to_stored(),
            qos: d.qos as u8,
            retain: d.retain,
            sub_ids: d.sub_ids.clone(),
            share: d.share.as_ref().map(|s| (s.group.to_string(), s.filter.to_string())),
            pkid,
            stage,
        }
    }

    pub fn into_delivery(self, seq: u64) -> (Delivery, Option<u16>, OutStage) {
        let d = Delivery {
            msg: Arc::new(self.msg.into_message()),
            qos: QoS::from_u8(self.qos).unwrap_or(QoS::AtLeastOnce),
            retain: self.retain,
            sub_ids: self.sub_ids,
            share: self.share.map(|(g, f)| ShareRef {
                group: g.into(),
                filter: f.into(),
            }),
            seq,
        };
        (d, self.pkid, self.stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_map_allocates_on_first_insert_and_frees_when_empty() {
        let mut m: LazyMap<u16, u32> = LazyMap::default();
        assert!(m.0.is_none() && m.is_empty() && !m.contains_key(&1));
        assert_eq!(m.remove(&1), None);
        m.insert(1, 10);
        m.insert(2, 20);
        assert_eq!((m.len(), m.get(&2)), (2, Some(&20)));
        m.retain(|k, _| *k == 2);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(&2, &20)]);
        assert_eq!(m.remove(&2), Some(20));
        assert!(m.0.is_none(), "freed when emptied");
        m.insert(3, 30);
        assert_eq!(m.take_all().collect::<Vec<_>>(), vec![(3, 30)]);
        assert!(m.0.is_none());
        let c: LazyMap<u16, u32> = std::iter::empty().collect();
        assert!(c.0.is_none());
    }

    #[test]
    fn ctrl_signals_accumulate_and_clear() {
        let c = ConnCtrl::default();
        assert_eq!(c.take_signals(), 0);
        c.signal(CTRL_KEEPALIVE);
        c.send(Control::Disconnect {
            reason_code: 0x8E,
            reason: DisconnectReason::TakenOver,
        });
        assert_eq!(c.take_signals(), CTRL_KEEPALIVE | CTRL_CMD);
        assert_eq!(c.take_signals(), 0);
        assert!(c.take_cmd().is_some());
        c.touch(1234);
        assert_eq!(c.last_activity(), 1234);
    }
}

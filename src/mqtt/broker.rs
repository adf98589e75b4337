//! The broker's shared state and its operations: sessions, the subscription
//! tree, retained messages, routing, and persistence of all of it.
//!
//! Connection tasks call into [`Broker`] directly; each structure has its own
//! short lock (sessions map, subscription tree, retained map, one mutex per
//! session), always taken in the order tree → session, never waiting on IO.
//! The broker knows nothing of rules or connectors: it emits [`BrokerEvent`]s
//! on a bounded channel and accepts injected publishes through [`Broker::publish`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::auth::{AllowAll, Auth};
use super::codec::QoS;
use super::events::{BrokerEvent, DisconnectReason, DropReason, EventMask, EventSink};
use super::message::{now_ms, Message, StoredMessage};
use super::session::{
    ConnCtrl, ConnRef, Control, Delivery, Inflight, OutStage, Session, ShareRef, StoredDelivery, StoredSession,
    SubOptions, Subscriber, CTRL_HOUSEKEEPING, CTRL_KEEPALIVE,
};
use super::sub_source::SubscriptionSource;
use super::topic::{self, TopicLimits};
use super::trie::{Match, SubTree};
use crate::metrics::Metrics;
use crate::store::{Loaded, Store, StoreOp};

/// How a share group picks the member that gets a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedStrategy {
    Random,
    RoundRobin,
    Sticky,
    HashClientId,
    HashTopic,
}

/// The MQTT settings the broker enforces (built from `mqtt.*` in the config).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_name: String,
    pub max_packet_size: usize,
    pub max_clientid_len: usize,
    pub topic_limits: TopicLimits,
    pub max_qos_allowed: QoS,
    pub max_topic_alias: u16,
    pub retain_available: bool,
    pub wildcard_subscription: bool,
    pub shared_subscription: bool,
    pub shared_strategy: SharedStrategy,
    pub ignore_loop_deliver: bool,
    pub keepalive_multiplier: f64,
    pub server_keepalive: Option<u16>,
    pub min_keepalive: u16,
    pub max_keepalive: u16,
    pub max_inflight: u16,
    pub max_awaiting_rel: usize,
    /// Resend unacknowledged QoS 1/2 messages to 3.x clients after this long.
    pub retry_interval: Duration,
    /// Forget an incoming QoS 2 packet id whose PUBREL has not come after this long.
    pub await_rel_timeout: Duration,
    /// Upper bound on the Session Expiry Interval a client may ask for (seconds).
    pub max_session_expiry: u32,
    pub max_mqueue_len: usize,
    pub mqueue_store_qos0: bool,
    pub max_subscriptions: usize,
    pub upgrade_qos: bool,
    pub idle_timeout: Duration,
    /// Expiry applied to messages that carry none (seconds).
    pub message_expiry_interval: Option<u32>,
    pub response_information: String,
    /// `mqtt.auto_subscribe`: topics every client is subscribed to on connect.
    pub auto_subscribe: Vec<crate::config::AutoSubscribe>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_name: "junction@127.0.0.1".into(),
            max_packet_size: 1024 * 1024,
            max_clientid_len: 65535,
            topic_limits: TopicLimits::default(),
            max_qos_allowed: QoS::ExactlyOnce,
            max_topic_alias: 65535,
            retain_available: true,
            wildcard_subscription: true,
            shared_subscription: true,
            shared_strategy: SharedStrategy::RoundRobin,
            ignore_loop_deliver: false,
            keepalive_multiplier: 1.5,
            server_keepalive: None,
            min_keepalive: 0,
            max_keepalive: 65535,
            max_inflight: 32,
            max_awaiting_rel: 100,
            retry_interval: Duration::from_secs(30),
            await_rel_timeout: Duration::from_secs(300),
            max_session_expiry: 7200,
            max_mqueue_len: 1000,
            mqueue_store_qos0: true,
            max_subscriptions: usize::MAX,
            upgrade_qos: false,
            idle_timeout: Duration::from_secs(15),
            message_expiry_interval: None,
            response_information: String::new(),
            auto_subscribe: Vec::new(),
        }
    }
}

/// What [`Broker::enqueue`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Dropped by the queue policy (counted).
    Dropped,
    Queued,
    /// Queued, and the queue is past its high-water mark while its connection
    /// is still draining it: the publisher should wait for it to catch up.
    UnderPressure,
}

/// Result of attaching a connection to a session.
pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
}

/// Shared broker state. See the module docs.
pub struct Broker {
    pub cfg: BrokerConfig,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<dyn Auth>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    subs: RwLock<SubTree<Subscriber>>,
    retained: RwLock<HashMap<String, Arc<Message>>>,
    store: Option<Store>,
    events: Option<EventSink>,
    /// Which events the listener wants ([`EventMask`] bits).
    event_mask: AtomicU32,
    next_conn_id: AtomicU64,
    pub started: Instant,
    /// Subscription by broker: asked for every connecting client (set once, at start).
    sub_sources: std::sync::OnceLock<Vec<Arc<dyn SubscriptionSource>>>,
    /// The connections the sweeper watches (see [`Broker::register_conn`]).
    sweep: Mutex<SweepSlots>,
    sweeper_started: std::sync::atomic::AtomicBool,
}

/// How often the sweeper checks keepalives: a client is closed between 1.5 × its
/// keepalive and that plus this period after its last packet.
pub const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// Every connection gets a housekeeping signal once per this many sweeps (spread
/// over the sweeps by slot, so not all connections wake at once).
const HOUSEKEEPING_SWEEPS: usize = 5;

/// Slot → (the connection's mailbox, its keepalive in ms, 0 = none). Free slots are reused.
#[derive(Default)]
struct SweepSlots {
    entries: Vec<Option<(Arc<ConnCtrl>, u64)>>,
    free: Vec<usize>,
}

/// The broker-wide sweeper: one task and one timer for every connection's
/// keepalive and housekeeping (a timer per connection costs memory in every one).
async fn sweeper(broker: std::sync::Weak<Broker>) {
    let mut tick = tokio::time::interval(SWEEP_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: usize = 0;
    loop {
        tick.tick().await;
        let Some(b) = broker.upgrade() else {
            return;
        };
        b.sweep(n);
        n = n.wrapping_add(1);
    }
}

impl Broker {
    pub fn new(
        cfg: BrokerConfig,
        metrics: Arc<Metrics>,
        store: Option<Store>,
        events: Option<EventSink>,
    ) -> Arc<Broker> {
        Arc::new(Broker {
            cfg,
            metrics,
            auth: Arc::new(AllowAll),
            sessions: Mutex::new(HashMap::new()),
            subs: RwLock::new(SubTree::default()),
            retained: RwLock::new(HashMap::new()),
            store,
            events,
            event_mask: AtomicU32::new(EventMask::ALL.0),
            next_conn_id: AtomicU64::new(1),
            started: Instant::now(),
            sub_sources: std::sync::OnceLock::new(),
            sweep: Mutex::new(SweepSlots::default()),
            sweeper_started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Milliseconds since the broker started (the clock of [`ConnCtrl::touch`]).
    pub fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Put a connection under the sweeper: it is signalled [`CTRL_KEEPALIVE`]
    /// once `keep_alive` (zero = never) passed without [`ConnCtrl::touch`], and
    /// [`CTRL_HOUSEKEEPING`] every few seconds. Returns the slot to give back
    /// with [`unregister_conn`](Self::unregister_conn).
    pub fn register_conn(self: &Arc<Self>, ctrl: Arc<ConnCtrl>, keep_alive: std::time::Duration) -> usize {
        if !self.sweeper_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweeper(Arc::downgrade(self)));
        }
        ctrl.touch(self.clock_ms());
        let entry = Some((ctrl, keep_alive.as_millis().min(u128::from(u64::MAX)) as u64));
        let mut s = self.sweep.lock();
        match s.free.pop() {
            Some(i) if i < s.entries.len() => {
                s.entries[i] = entry;
                i
            }
            _ => {
                s.entries.push(entry);
                s.entries.len() - 1
            }
        }
    }

    /// The connection of `slot` has ended.
    pub fn unregister_conn(&self, slot: usize) {
        let mut s = self.sweep.lock();
        if s.entries.get_mut(slot).and_then(Option::take).is_some() {
            s.free.push(slot);
        }
    }

    /// One sweep (number `n`): signal the connections whose keepalive expired,
    /// and the share of connections whose housekeeping is due.
    fn sweep(&self, n: usize) {
        let now = self.clock_ms();
        let phase = n % HOUSEKEEPING_SWEEPS;
        let s = self.sweep.lock();
        for (i, e) in s.entries.iter().enumerate() {
            let Some((ctrl, keep_alive)) = e else {
                continue;
            };
            let mut bits = 0;
            if *keep_alive != 0 && now.saturating_sub(ctrl.last_activity()) >= *keep_alive {
                bits |= CTRL_KEEPALIVE;
            }
            if i % HOUSEKEEPING_SWEEPS == phase {
                bits |= CTRL_HOUSEKEEPING;
            }
            if bits != 0 {
                ctrl.signal(bits);
            }
        }
    }

    /// Sets the sources of subscriptions looked up for every connecting client
    /// (subscription by broker). Once: a second call is ignored and returns false.
    pub fn set_subscription_sources(&self, sources: Vec<Arc<dyn SubscriptionSource>>) -> bool {
        self.sub_sources.set(sources).is_ok()
    }

    /// The sources of subscriptions by broker (empty when none is configured).
    pub fn subscription_sources(&self) -> &[Arc<dyn SubscriptionSource>] {
        self.sub_sources.get().map_or(&[], Vec::as_slice)
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hand an event of `kind` to the rule engine without waiting, if it wants that kind;
    /// count it if the channel is full.
    #[inline]
    pub fn emit(&self, kind: EventMask, make: impl FnOnce() -> BrokerEvent) {
        if let Some(tx) = &self.events {
            if self.wants(kind) && !tx.try_send(make()) {
                self.metrics.events_dropped.inc();
            }
        }
    }

    /// Whether an event of `kind` would be sent (to skip building it).
    #[inline]
    pub fn wants(&self, kind: EventMask) -> bool {
        self.events.is_some() && self.event_mask.load(Ordering::Relaxed) & kind.0 != 0
    }

    /// Sets the events the listener wants (the rule engine, on each rule-set swap).
    pub fn set_event_mask(&self, mask: EventMask) {
        self.event_mask.store(mask.0, Ordering::Relaxed);
    }

    pub(crate) fn store_op(&self, op: impl FnOnce() -> StoreOp) {
        if let Some(s) = &self.store {
            s.submit(op());
        }
    }

    /// Wait until every store write so far is committed.
    pub fn flush_store(&self) {
        if let Some(s) = &self.store {
            s.flush();
        }
    }

    /// With `sync_mode = "every_write"`: the store position a connection must
    /// wait for before acknowledging what it just handled. None otherwise.
    pub fn durability_mark(&self) -> Option<u64> {
        self.store
            .as_ref()
            .filter(|s| s.sync_every_write())
            .map(Store::submitted)
    }

    /// Wait until the store has committed up to `mark`.
    pub async fn wait_durable(&self, mark: u64) {
        if let Some(s) = &self.store {
            s.wait_committed(mark).await;
        }
    }

    /// Commit every store write and close the store (at shutdown).
    pub fn close_store(&self) {
        if let Some(s) = &self.store {
            s.close();
        }
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    pub fn subscription_count(&self) -> usize {
        self.subs.read().len()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Every online connection's control channel (for shutdown).
    pub fn connections(&self) -> Vec<Arc<super::session::ConnCtrl>> {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().values().cloned().collect();
        sessions
            .iter()
            .filter_map(|s| s.state.lock().conn.as_ref().map(|c| c.ctrl.clone()))
            .collect()
    }

    // ---- sessions -------------------------------------------------------

    /// Attach a new connection to `client_id`'s session, taking over any
    /// connection already attached and discarding the old session on Clean Start.
    pub fn attach(self: &Arc<Self>, client_id: &str, clean_start: bool, expiry: u32, conn: ConnRef) -> Attached {
        let mut sessions = self.sessions.lock();
        let existing = sessions.get(client_id).cloned();
        if let Some(old) = existing {
            let mut st = old.state.lock();
            if let Some(prev) = st.conn.take() {
                prev.ctrl.send(Control::Disconnect {
                    reason_code: super::codec::reason::SESSION_TAKEN_OVER,
                    reason: DisconnectReason::TakenOver,
                });
            }
            if !clean_start && !st.terminated {
                st.conn = Some(conn);
                st.generation += 1;
                st.expiry_interval = expiry;
                st.disconnected_at_ms = None;
                if st.persistent() {
                    let meta = st.stored_meta();
                    self.store_op(|| StoreOp::PutSession(old.client_id.to_string(), encode(&meta)));
                }
                drop(st);
                return Attached {
                    session: old,
                    session_present: true,
                };
            }
            st.terminated = true;
            drop(st);
            sessions.remove(client_id);
            drop(sessions);
            self.terminate(&old, "takenover");
            sessions = self.sessions.lock();
        }
        let id: Arc<str> = Arc::from(client_id);
        let session = Session::new(id.clone(), expiry);
        {
            let mut st = session.state.lock();
            st.conn = Some(conn);
            st.generation = 1;
            if st.persistent() {
                let meta = st.stored_meta();
                self.store_op(|| StoreOp::PutSession(client_id.to_string(), encode(&meta)));
            }
        }
        sessions.insert(id.clone(), session.clone());
        self.metrics.sessions.set(sessions.len() as i64);
        drop(sessions);
        self.emit(EventMask::SESSION, || BrokerEvent::SessionCreated { client_id: id });
        Attached {
            session,
            session_present: false,
        }
    }

    /// The connection `conn_id` has gone. Ends the session if its expiry is 0,
    /// else keeps it (queueing) and arms the expiry timer.
    pub fn detach(self: &Arc<Self>, session: &Arc<Session>, conn_id: u64, expiry: u32) {
        let mut st = session.state.lock();
        if st.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return; // taken over: the new connection owns the session now
        }
        st.conn = None;
        st.generation += 1;
        st.expiry_interval = expiry;
        if expiry == 0 {
            st.terminated = true;
            drop(st);
            let mut sessions = self.sessions.lock();
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.client_id);
            }
            self.metrics.sessions.set(sessions.len() as i64);
            drop(sessions);
            self.terminate(session, "normal");
            return;
        }
        st.disconnected_at_ms = Some(now_ms());
        let meta = st.stored_meta();
        self.store_op(|| StoreOp::PutSession(session.client_id.to_string(), encode(&meta)));
        // Shared-subscription messages not yet acknowledged go to another member.
        let shared = take_shared(self, &session.client_id, &mut st);
        let generation = st.generation;
        drop(st);
        self.redistribute(session, shared);
        if expiry != u32::MAX {
            self.arm_expiry(session.clone(), generation, Duration::from_secs(u64::from(expiry)));
        }
    }

    fn arm_expiry(self: &Arc<Self>, session: Arc<Session>, generation: u64, after: Duration) {
        let broker = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(broker) = broker.upgrade() else {
                return;
            };
            let mut st = session.state.lock();
            if st.generation != generation || st.conn.is_some() || st.terminated {
                return;
            }
            st.terminated = true;
            drop(st);
            let mut sessions = broker.sessions.lock();
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, &session))
            {
                sessions.remove(&session.client_id);
            }
            broker.metrics.sessions.set(sessions.len() as i64);
            drop(sessions);
            broker.terminate(&session, "expired");
        });
    }

    /// Remove a session's subscriptions and stored state; hand its shared messages to other members.
    fn terminate(&self, session: &Arc<Session>, reason: &'static str) {
        let mut st = session.state.lock();
        let subs: Vec<String> = st.subscriptions.take_all().map(|(k, _)| k).collect();
        let shared = take_shared(self, &session.client_id, &mut st);
        self.metrics.queued.add(-(st.mqueue.len() as i64));
        st.mqueue.clear();
        st.inflight.clear();
        st.awaiting_rel.clear();
        drop(st);
        {
            let mut tree = self.subs.write();
            for f in &subs {
                if let Ok(p) = topic::parse_shared(f) {
                    tree.remove(p.group, p.filter, &session.client_id);
                }
            }
            self.metrics.subscriptions.set(tree.len() as i64);
        }
        self.store_op(|| StoreOp::DelSession(session.client_id.to_string()));
        self.redistribute(session, shared);
        let id = session.client_id.clone();
        self.emit(EventMask::SESSION, || BrokerEvent::SessionTerminated {
            client_id: id,
            reason,
        });
    }

    /// Deliver shared-subscription messages that `from` will not ack to other members of their groups.
    fn redistribute(&self, from: &Arc<Session>, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let Some(share) = d.share.clone() else {
                continue;
            };
            let target = {
                let tree = self.subs.read();
                let mut found = None;
                tree.for_each_match(&d.msg.topic, |m| {
                    if let Match::Shared(g) = m {
                        if g.group == share.group && g.filter == share.filter && found.is_none() {
                            found = g
                                .members
                                .iter()
                                .filter(|(c, _)| *c != from.client_id)
                                .find(|(_, s)| s.session.state.lock().is_online())
                                .or_else(|| g.members.iter().find(|(c, _)| *c != from.client_id))
                                .map(|(_, s)| s.clone());
                        }
                    }
                });
                found
            };
            if let Some(sub) = target {
                let mut nd = d.clone();
                nd.qos = nd.msg.qos.min(sub.opts.qos());
                nd.seq = 0;
                let _ = self.enqueue(&sub.session, nd);
            } else {
                self.metrics.drop_count(DropReason::NoSubscribers);
            }
        }
    }

    // ---- subscriptions --------------------------------------------------

    /// Add or replace a subscription. Returns whether it already existed.
    pub fn subscribe(&self, session: &Arc<Session>, full_filter: &str, opts: SubOptions) -> Result<bool, u8> {
        let parsed = topic::parse_shared(full_filter).map_err(|_| super::codec::reason::TOPIC_FILTER_INVALID)?;
        let value = Subscriber {
            session: session.clone(),
            opts,
        };
        let existed = {
            let mut tree = self.subs.write();
            let old = match parsed.group {
                None => tree.insert(parsed.filter, session.client_id.clone(), value),
                Some(g) => tree.insert_shared(g, parsed.filter, session.client_id.clone(), value),
            };
            self.metrics.subscriptions.set(tree.len() as i64);
            old.is_some()
        };
        let mut st = session.state.lock();
        st.subscriptions.insert(full_filter.to_owned(), opts);
        if st.persistent() {
            let meta = st.stored_meta();
            self.store_op(|| StoreOp::PutSession(session.client_id.to_string(), encode(&meta)));
        }
        Ok(existed)
    }

    /// Remove a subscription; returns whether it existed.
    pub fn unsubscribe(&self, session: &Arc<Session>, full_filter: &str) -> bool {
        let Ok(parsed) = topic::parse_shared(full_filter) else {
            return false;
        };
        let existed = {
            let mut tree = self.subs.write();
            let r = tree.remove(parsed.group, parsed.filter, &session.client_id).is_some();
            self.metrics.subscriptions.set(tree.len() as i64);
            r
        };
        let mut st = session.state.lock();
        st.subscriptions.remove(full_filter);
        if st.persistent() {
            let meta = st.stored_meta();
            self.store_op(|| StoreOp::PutSession(session.client_id.to_string(), encode(&meta)));
        }
        existed
    }

    /// Retained messages matching `filter`, not expired.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = now_ms();
        let map = self.retained.read();
        if !topic::has_wildcard(filter) {
            return map
                .get(filter)
                .filter(|m| !m.is_expired(now))
                .cloned()
                .into_iter()
                .collect();
        }
        map.iter()
            .filter(|(t, m)| topic::matches(filter, t) && !m.is_expired(now))
            .map(|(_, m)| m.clone())
            .collect()
    }

    // ---- publishing -----------------------------------------------------

    /// Publish a message into the broker: update retained state, route to
    /// subscribers, emit `message.publish`. Returns the number of sessions it went to.
    pub fn publish(&self, msg: Message) -> usize {
        self.publish_from_client(msg).0
    }

    /// [`publish`](Self::publish), also returning a subscriber session whose
    /// queue is filling while it still drains: the publishing connection should
    /// pause reading until that session catches up (see [`Session::wait_drained`]).
    pub fn publish_from_client(&self, mut msg: Message) -> (usize, Option<Arc<Session>>) {
        if msg.expires_at_ms.is_none() {
            if let Some(secs) = self.cfg.message_expiry_interval {
                msg.expires_at_ms = Some(msg.received_at_ms + u64::from(secs) * 1000);
            }
        }
        let msg = Arc::new(msg);
        if msg.retain {
            self.set_retained(&msg);
        }
        if !msg.no_publish_event && self.wants(EventMask::PUBLISH) {
            let m = msg.clone();
            self.emit(EventMask::PUBLISH, || BrokerEvent::Publish(m));
        }
        let mut pressure = None;
        let n = self.route(&msg, &mut pressure);
        if n == 0 {
            self.metrics.drop_count(DropReason::NoSubscribers);
            if self.wants(EventMask::MESSAGE_DROPPED) {
                let m = msg.clone();
                self.emit(EventMask::MESSAGE_DROPPED, || BrokerEvent::MessageDropped {
                    message: m,
                    reason: DropReason::NoSubscribers,
                });
            }
        }
        (n, pressure)
    }

    fn set_retained(&self, msg: &Arc<Message>) {
        let topic = msg.topic.to_string();
        // `$SYS` statistics are the broker's own, republished every interval: kept
        // in memory only (stale figures must not come back after a restart).
        let durable = !topic.starts_with("$SYS/");
        let mut map = self.retained.write();
        if msg.payload.is_empty() {
            if map.remove(&topic).is_some() && durable {
                self.store_op(|| StoreOp::DelRetained(topic));
            }
        } else {
            map.insert(topic.clone(), msg.clone());
            if durable {
                self.store_op(|| StoreOp::PutRetained(topic, encode(&msg.to_stored())));
            }
        }
        self.metrics.retained.set(map.len() as i64);
    }

    /// Route to every matching session; returns how many sessions got it.
    fn route(&self, msg: &Arc<Message>, pressure: &mut Option<Arc<Session>>) -> usize {
        // Inline for the common case of a few subscribers: no allocation per message.
        let mut targets: smallvec::SmallVec<[(Subscriber, Option<ShareRef>); 4]> = smallvec::SmallVec::new();
        {
            let tree = self.subs.read();
            tree.for_each_match(&msg.topic, |m| match m {
                Match::Normal(client, sub) => {
                    if (sub.opts.no_local || self.cfg.ignore_loop_deliver) && msg.from.as_deref() == Some(&**client) {
                        self.metrics.drop_count(DropReason::NoLocal);
                        return;
                    }
                    targets.push((sub.clone(), None));
                }
                Match::Shared(g) => {
                    if let Some(sub) = self.pick_member(g, msg) {
                        targets.push((
                            sub.clone(),
                            Some(ShareRef {
                                group: g.group.clone(),
                                filter: g.filter.clone(),
                            }),
                        ));
                    }
                }
            });
        }
        if targets.len() > 1 {
            // One copy per session: highest QoS, every subscription identifier (MQTT 5 §3.3.4).
            targets.sort_by_key(|(s, _)| Arc::as_ptr(&s.session) as usize);
        }
        let mut count = 0;
        let mut i = 0;
        while i < targets.len() {
            let (first, share) = &targets[i];
            let mut qos = first.opts.qos();
            let mut rap = first.opts.retain_as_published;
            let mut ids: Vec<u32> = first.opts.sub_id.into_iter().collect();
            let mut j = i + 1;
            while j < targets.len()
                && Arc::ptr_eq(&targets[j].0.session, &first.session)
                && share.is_none()
                && targets[j].1.is_none()
            {
                qos = qos.max(targets[j].0.opts.qos());
                rap |= targets[j].0.opts.retain_as_published;
                ids.extend(targets[j].0.opts.sub_id);
                j += 1;
            }
            let eff = if self.cfg.upgrade_qos { qos } else { msg.qos.min(qos) };
            let d = Delivery {
                msg: msg.clone(),
                qos: eff,
                retain: msg.retain && rap,
                sub_ids: ids,
                share: share.clone(),
                seq: 0,
            };
            match self.enqueue(&first.session, d) {
                Enqueued::Dropped => {}
                Enqueued::Queued => count += 1,
                Enqueued::UnderPressure => {
                    count += 1;
                    *pressure = Some(first.session.clone());
                }
            }
            i = j;
        }
        count
    }

    fn pick_member<'a>(&self, g: &'a super::trie::SharedGroup<Subscriber>, msg: &Message) -> Option<&'a Subscriber> {
        let n = g.members.len();
        if n == 0 {
            return None;
        }
        let online = |i: usize| g.members[i].1.session.state.lock().is_online();
        let start = match self.cfg.shared_strategy {
            SharedStrategy::Random => rand::random::<usize>() % n,
            SharedStrategy::RoundRobin => g.cursor.fetch_add(1, Ordering::Relaxed) % n,
            SharedStrategy::Sticky => g.cursor.load(Ordering::Relaxed) % n,
            SharedStrategy::HashClientId => hash(msg.from.as_deref().unwrap_or("")) % n,
            SharedStrategy::HashTopic => hash(&msg.topic) % n,
        };
        // Prefer an online member, starting at the strategy's choice.
        for k in 0..n {
            let i = (start + k) % n;
            if online(i) {
                if self.cfg.shared_strategy == SharedStrategy::Sticky {
                    g.cursor.store(i, Ordering::Relaxed);
                }
                return Some(&g.members[i].1);
            }
        }
        Some(&g.members[start].1)
    }

    /// Queue a delivery in a session, applying the queue policy. Returns false if dropped.
    ///
    /// Policy when the queue holds `max_mqueue_len` messages: drop the oldest
    /// queued QoS 0 message if there is one; else drop the new message if it
    /// is QoS 0; else drop the oldest queued message. Every drop is counted
    /// (`junction_messages_dropped_total{reason="queue_full"}`).
    pub fn enqueue(&self, session: &Arc<Session>, mut d: Delivery) -> Enqueued {
        let mut st = session.state.lock();
        if st.terminated {
            return Enqueued::Dropped;
        }
        if d.qos == QoS::AtMostOnce && !st.is_online() && !self.cfg.mqueue_store_qos0 {
            drop(st);
            self.dropped(session, &d.msg, DropReason::Qos0Offline);
            return Enqueued::Dropped;
        }
        if st.mqueue.len() >= self.cfg.max_mqueue_len {
            let victim = match st.mqueue.iter().position(|q| q.qos == QoS::AtMostOnce) {
                Some(i) => st.mqueue.remove(i),
                None if d.qos == QoS::AtMostOnce => {
                    drop(st);
                    self.dropped(session, &d.msg, DropReason::QueueFull);
                    return Enqueued::Dropped;
                }
                None => st.mqueue.pop_front(),
            };
            if let Some(v) = victim {
                self.metrics.queued.dec();
                if v.seq != 0 {
                    self.store_op(|| StoreOp::DelDelivery(session.client_id.to_string(), v.seq));
                }
                self.dropped(session, &v.msg, DropReason::QueueFull);
            }
        }
        if st.persistent() && d.qos != QoS::AtMostOnce {
            st.next_seq += 1;
            d.seq = st.next_seq;
            let stored = StoredDelivery::from_delivery(&d, None, OutStage::Publish);
            self.store_op(|| StoreOp::PutDelivery(session.client_id.to_string(), d.seq, encode(&stored)));
        }
        st.mqueue.push_back(d);
        self.metrics.queued.inc();
        let pressure = st.is_online() && st.mqueue.len() >= self.high_water() && st.draining();
        // Woken under the lock: the attached connection, not one that was taken over meanwhile.
        if let Some(c) = &st.conn {
            c.ctrl.wake();
        }
        drop(st);
        if pressure {
            Enqueued::UnderPressure
        } else {
            Enqueued::Queued
        }
    }

    /// Queue length above which publishers to a draining session are paused.
    pub fn high_water(&self) -> usize {
        (self.cfg.max_mqueue_len / 2).clamp(1, 10_000)
    }

    /// Count (and report) a delivery that will not happen.
    pub fn dropped(&self, session: &Session, msg: &Arc<Message>, reason: DropReason) {
        self.metrics.drop_count(reason);
        if self.wants(EventMask::DELIVERY_DROPPED) {
            let (c, m) = (session.client_id.clone(), msg.clone());
            self.emit(EventMask::DELIVERY_DROPPED, || BrokerEvent::DeliveryDropped {
                client_id: c,
                message: m,
                reason,
            });
        }
    }

    // ---- restore ---------------------------------------------------------

    /// Rebuild retained messages and offline sessions from what the store loaded.
    pub fn restore(self: &Arc<Self>, loaded: Loaded) {
        let now = now_ms();
        {
            let mut map = self.retained.write();
            for (topic, bytes) in loaded.retained {
                match postcard::from_bytes::<StoredMessage>(&bytes) {
                    Ok(m) => {
                        map.insert(topic, Arc::new(m.into_message()));
                    }
                    Err(e) => {
                        tracing::warn!(topic, error = %e, "Skipping unreadable retained message.")
                    }
                }
            }
            self.metrics.retained.set(map.len() as i64);
        }
        for ls in loaded.sessions {
            let meta: StoredSession = match postcard::from_bytes(&ls.meta) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(client_id = ls.client_id, error = %e, "Skipping unreadable session.");
                    continue;
                }
            };
            let session = Session::new(Arc::from(ls.client_id.as_str()), meta.expiry_interval);
            let elapsed_s = meta
                .disconnected_at_ms
                .map(|t| now.saturating_sub(t) / 1000)
                .unwrap_or(0);
            if meta.expiry_interval != u32::MAX && elapsed_s >= u64::from(meta.expiry_interval) {
                self.store_op(|| StoreOp::DelSession(ls.client_id.clone()));
                continue;
            }
            let generation;
            {
                let mut st = session.state.lock();
                st.next_seq = meta.next_seq;
                st.generation = 1;
                generation = st.generation;
                st.disconnected_at_ms = Some(meta.disconnected_at_ms.unwrap_or(now));
                for (seq, bytes) in ls.deliveries {
                    let Ok(sd) = postcard::from_bytes::<StoredDelivery>(&bytes) else {
                        continue;
                    };
                    let (d, pkid, stage) = sd.into_delivery(seq);
                    st.next_seq = st.next_seq.max(seq);
                    match pkid {
                        Some(pkid) => st.inflight.push_back(Inflight {
                            pkid,
                            delivery: d,
                            stage,
                            sent_at: std::time::Instant::now(),
                        }),
                        None => {
                            st.mqueue.push_back(d);
                            self.metrics.queued.inc();
                        }
                    }
                }
                st.next_pkid = st.inflight.iter().map(|i| i.pkid).max().unwrap_or(0);
                let now = std::time::Instant::now();
                st.awaiting_rel = ls.awaiting_rel.into_iter().map(|id| (id, now)).collect();
            }
            for (filter, opts) in meta.subscriptions {
                let _ = self.subscribe(&session, &filter, opts);
            }
            self.sessions.lock().insert(session.client_id.clone(), session.clone());
            if meta.expiry_interval != u32::MAX {
                let left = u64::from(meta.expiry_interval).saturating_sub(elapsed_s);
                self.arm_expiry(session, generation, Duration::from_secs(left));
            }
        }
        self.metrics.sessions.set(self.sessions.lock().len() as i64);
    }
}

/// Take a session's shared-subscription deliveries that are not yet past PUBREC,
/// updating the queue gauge and the store as they leave.
fn take_shared(broker: &Broker, client_id: &str, st: &mut super::session::SessionState) -> Vec<Delivery> {
    let mut out = Vec::new();
    let inflight = std::mem::take(&mut st.inflight);
    for i in inflight {
        if i.delivery.share.is_some() && i.stage == OutStage::Publish {
            out.push(i.delivery);
        } else {
            st.inflight.push_back(i);
        }
    }
    let queue = std::mem::take(&mut st.mqueue);
    for d in queue {
        if d.share.is_some() {
            broker.metrics.queued.dec();
            out.push(d);
        } else {
            st.mqueue.push_back(d);
        }
    }
    for d in &out {
        if d.seq != 0 {
            broker.store_op(|| StoreOp::DelDelivery(client_id.to_owned(), d.seq));
        }
    }
    out
}

fn hash(s: &str) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = ahash::RandomState::with_seeds(1, 2, 3, 4).build_hasher();
    h.write(s.as_bytes());
    h.finish() as usize
}

/// postcard-encode a stored value (infallible for our plain types).
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

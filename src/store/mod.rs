//! The embedded store under `node.data_dir`: retained messages and persistent
//! sessions (subscriptions, queued and in-flight messages, QoS 2 packet ids
//! awaiting PUBREL).
//!
//! Built on [redb](https://docs.rs/redb): a pure-Rust, ACID, copy-on-write
//! B-tree with crash safety by design and no C dependency. Writes go through
//! one writer thread fed by a bounded channel; it applies every pending
//! operation in one transaction and commits it with fsync ("group commit").
//! The broker hands operations over and never waits for the disk, except when
//! the channel is full (then the publisher is slowed, which is the intended
//! back-pressure). Values are opaque bytes: the mqtt layer owns their format.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::metrics::Metrics;

const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const DELIVERIES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("deliveries");
const AWAITING_REL: TableDefinition<(&str, u16), &[u8]> = TableDefinition::new("awaiting_rel");

/// How many operations may wait for the writer before publishers are slowed.
const CHANNEL_CAPACITY: usize = 65_536;

/// When commits happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Commit (with fsync) as soon as the writer sees operations; a crash loses
    /// at most the operations of the commit under way (typically < 1 ms).
    EveryWrite,
    /// Collect operations for this long, then commit them together; a crash
    /// loses at most this much time's worth of changes.
    Interval(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot open store {path}: {source}")]
    Open { path: PathBuf, source: Box<redb::Error> },
    #[error("store read failed: {0}")]
    Read(Box<redb::Error>),
}

fn read_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Read(Box::new(e.into()))
}

/// One change to persist.
#[derive(Debug)]
pub enum StoreOp {
    PutRetained(String, Vec<u8>),
    DelRetained(String),
    PutSession(String, Vec<u8>),
    /// Removes the session with all its deliveries and awaiting-rel ids.
    DelSession(String),
    PutDelivery(String, u64, Vec<u8>),
    DelDelivery(String, u64),
    PutRel(String, u16),
    DelRel(String, u16),
    /// Commit everything before this, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Commit everything before this, close the database, answer, and stop the writer.
    Close(std::sync::mpsc::SyncSender<()>),
}

/// One persisted session as loaded at startup.
#[derive(Debug, Default)]
pub struct LoadedSession {
    pub client_id: String,
    pub meta: Vec<u8>,
    pub deliveries: Vec<(u64, Vec<u8>)>,
    pub awaiting_rel: Vec<u16>,
}

/// Everything the store holds, read once at startup.
#[derive(Debug, Default)]
pub struct Loaded {
    pub retained: Vec<(String, Vec<u8>)>,
    pub sessions: Vec<LoadedSession>,
}

/// Progress of the writer, for callers that must not answer before their writes are on disk.
#[derive(Default)]
struct Progress {
    /// Operations handed to the writer (each gets the next sequence number).
    submitted: AtomicU64,
    /// Operations committed (all with sequence number <= this are on disk).
    committed: AtomicU64,
    /// Woken after every commit.
    notify: tokio::sync::Notify,
    /// Numbering and sending happen together, so sequence order is channel order.
    order: parking_lot::Mutex<()>,
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: SyncSender<StoreOp>,
    metrics: Arc<Metrics>,
    progress: Arc<Progress>,
    mode: SyncMode,
}

impl Store {
    /// Open (or create) `dir/junction.redb`, read its contents, and start the writer thread.
    pub fn open(dir: &Path, mode: SyncMode, metrics: Arc<Metrics>) -> Result<(Store, Loaded), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("junction.redb");
        let db = Database::create(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            source: Box::new(e.into()),
        })?;
        init_tables(&db).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let loaded = load(&db)?;
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let m = metrics.clone();
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        std::thread::Builder::new()
            .name("junction-store".into())
            .spawn(move || writer(db, rx, mode, m, p))
            .map_err(|source| StoreError::Dir { path, source })?;
        Ok((
            Store {
                tx,
                metrics,
                progress,
                mode,
            },
            loaded,
        ))
    }

    /// Sequence number of the last operation submitted.
    pub fn submitted(&self) -> u64 {
        self.progress.submitted.load(Ordering::Acquire)
    }

    /// Whether every write must be on disk before the broker acknowledges it.
    pub fn sync_every_write(&self) -> bool {
        self.mode == SyncMode::EveryWrite
    }

    /// Wait until every operation up to `seq` is committed.
    pub async fn wait_committed(&self, seq: u64) {
        loop {
            let notified = self.progress.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.progress.committed.load(Ordering::Acquire) >= seq {
                return;
            }
            // The timeout only guards against a writer that died.
            if tokio::time::timeout(Duration::from_secs(5), notified).await.is_err() {
                return;
            }
        }
    }

    /// Queue an operation. Blocks only while the writer is `CHANNEL_CAPACITY` operations behind.
    pub fn submit(&self, op: StoreOp) {
        self.metrics.store_pending.inc();
        let _order = self.progress.order.lock();
        self.progress.submitted.fetch_add(1, Ordering::AcqRel);
        let op = match self.tx.try_send(op) {
            Ok(()) => return,
            Err(TrySendError::Full(op)) => op,
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.store_pending.dec();
                self.metrics.store_errors.inc();
                return;
            }
        };
        if self.tx.send(op).is_err() {
            self.metrics.store_pending.dec();
            self.metrics.store_errors.inc();
        }
    }

    /// Wait until everything submitted so far is committed (used at shutdown).
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        self.submit(StoreOp::Flush(tx));
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }

    /// Commit everything and close the database (it can then be opened again).
    pub fn close(&self) {
        let (tx, rx) = sync_channel(1);
        self.submit(StoreOp::Close(tx));
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }
}

fn init_tables(db: &Database) -> Result<(), Box<redb::Error>> {
    let tx = db.begin_write().map_err(boxed)?;
    tx.open_table(RETAINED).map_err(boxed)?;
    tx.open_table(SESSIONS).map_err(boxed)?;
    tx.open_table(DELIVERIES).map_err(boxed)?;
    tx.open_table(AWAITING_REL).map_err(boxed)?;
    tx.commit().map_err(boxed)?;
    Ok(())
}

fn boxed<E: Into<redb::Error>>(e: E) -> Box<redb::Error> {
    Box::new(e.into())
}

fn load(db: &Database) -> Result<Loaded, StoreError> {
    let rtx = db.begin_read().map_err(read_err)?;
    let mut out = Loaded::default();
    let retained = rtx.open_table(RETAINED).map_err(read_err)?;
    for item in retained.iter().map_err(read_err)? {
        let (k, v) = item.map_err(read_err)?;
        out.retained.push((k.value().to_owned(), v.value().to_vec()));
    }
    let sessions = rtx.open_table(SESSIONS).map_err(read_err)?;
    let deliveries = rtx.open_table(DELIVERIES).map_err(read_err)?;
    let rels = rtx.open_table(AWAITING_REL).map_err(read_err)?;
    for item in sessions.iter().map_err(read_err)? {
        let (k, v) = item.map_err(read_err)?;
        let client = k.value();
        let mut s = LoadedSession {
            client_id: client.to_owned(),
            meta: v.value().to_vec(),
            ..Default::default()
        };
        for d in deliveries
            .range((client, 0u64)..=(client, u64::MAX))
            .map_err(read_err)?
        {
            let (k, v) = d.map_err(read_err)?;
            s.deliveries.push((k.value().1, v.value().to_vec()));
        }
        for r in rels.range((client, 0u16)..=(client, u16::MAX)).map_err(read_err)? {
            let (k, _) = r.map_err(read_err)?;
            s.awaiting_rel.push(k.value().1);
        }
        out.sessions.push(s);
    }
    Ok(out)
}

fn writer(db: Database, rx: Receiver<StoreOp>, mode: SyncMode, metrics: Arc<Metrics>, progress: Arc<Progress>) {
    let mut batch = Vec::new();
    loop {
        match rx.recv() {
            Ok(op) => batch.push(op),
            Err(_) => return,
        }
        if let SyncMode::Interval(d) = mode {
            let deadline = Instant::now() + d;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || matches!(batch.last(), Some(StoreOp::Flush(_) | StoreOp::Close(_))) {
                    break;
                }
                match rx.recv_timeout(left) {
                    Ok(op) => batch.push(op),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        while batch.len() < 100_000 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let n = batch.len() as i64;
        let mut flushes = Vec::new();
        let mut close = None;
        if let Err(e) = apply(&db, &mut batch, &mut flushes, &mut close) {
            metrics.store_errors.inc();
            tracing::error!(error = %e, ops = n, "Store commit failed.");
        }
        batch.clear();
        metrics.store_pending.add(-n);
        progress.committed.fetch_add(n as u64, Ordering::AcqRel);
        progress.notify.notify_waiters();
        for f in flushes {
            let _ = f.send(());
        }
        if let Some(c) = close {
            drop(db);
            let _ = c.send(());
            return;
        }
    }
}

fn apply(
    db: &Database,
    batch: &mut Vec<StoreOp>,
    flushes: &mut Vec<SyncSender<()>>,
    close: &mut Option<SyncSender<()>>,
) -> Result<(), Box<redb::Error>> {
    apply_ops(db, batch, flushes, close).map_err(Box::new)
}

// Uses `?` on redb's own error type throughout; `apply` boxes it at the boundary.
#[allow(clippy::result_large_err)]
fn apply_ops(
    db: &Database,
    batch: &mut Vec<StoreOp>,
    flushes: &mut Vec<SyncSender<()>>,
    close: &mut Option<SyncSender<()>>,
) -> Result<(), redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    {
        let mut retained = tx.open_table(RETAINED)?;
        let mut sessions = tx.open_table(SESSIONS)?;
        let mut deliveries = tx.open_table(DELIVERIES)?;
        let mut rels = tx.open_table(AWAITING_REL)?;
        for op in batch.drain(..) {
            match op {
                StoreOp::PutRetained(k, v) => {
                    retained.insert(k.as_str(), v.as_slice())?;
                }
                StoreOp::DelRetained(k) => {
                    retained.remove(k.as_str())?;
                }
                StoreOp::PutSession(k, v) => {
                    sessions.insert(k.as_str(), v.as_slice())?;
                }
                StoreOp::DelSession(k) => {
                    sessions.remove(k.as_str())?;
                    let c = k.as_str();
                    deliveries.retain_in((c, 0u64)..=(c, u64::MAX), |_, _| false)?;
                    rels.retain_in((c, 0u16)..=(c, u16::MAX), |_, _| false)?;
                }
                StoreOp::PutDelivery(k, seq, v) => {
                    deliveries.insert((k.as_str(), seq), v.as_slice())?;
                }
                StoreOp::DelDelivery(k, seq) => {
                    deliveries.remove((k.as_str(), seq))?;
                }
                StoreOp::PutRel(k, id) => {
                    rels.insert((k.as_str(), id), [].as_slice())?;
                }
                StoreOp::DelRel(k, id) => {
                    rels.remove((k.as_str(), id))?;
                }
                StoreOp::Flush(tx) => flushes.push(tx),
                StoreOp::Close(tx) => *close = Some(tx),
            }
        }
    }
    tx.commit()?;
    Ok(())
}

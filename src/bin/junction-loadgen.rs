//! junction-loadgen: MQTT 3.1.1 load generator and benchmark client.
//!
//! Raw tokio `TcpStream`s and the project's own codec (`junction::mqtt::codec`),
//! no client library. PUBLISH frames are encoded once into a template and then
//! copied and patched (packet id, timestamp, sequence) per message, so the send
//! path does no per-message allocation. `--host` and `--sources` must be
//! loopback addresses (127.0.0.0/8, ::1): anything else is refused. Every loop
//! is bounded by `--duration` plus a fixed grace period.
//!
//! Subcommands (each prints one JSON line on stdout, then a human line starting `# `):
//!   fanin    N publishers -> 1 subscriber on `#` (optionally `--search R1,R2,..`;
//!            `--topic-format sensors/{i}/temp --sub-filter 'sensors/#' --json` for rules)
//!   fanout   1 publisher  -> N subscribers on one topic (optionally `--search`)
//!   latency  1 publisher  -> 1 subscriber, round trip percentiles in µs
//!   conns    N idle connections over several source IPs; connect rate and broker RSS
//!
//! Every message payload carries a 24-byte header:
//! magic u32 | run id u32 | send time ns u64 (since process start) | publisher u32 | seq u32,
//! either as the payload's first bytes (default) or, with `--json`, as 48 hex digits in a
//! JSON object `{"temp":35,"lg":"<hex>","pad":"aaa…"}` that rules can read (see
//! `loadgen/payload.rs`). Publishers and subscribers run in the same process, so the send
//! time gives the one-way latency through the broker.
//!
//! `--broker-pid PID` adds the broker's CPU time (utime+stime from /proc/PID/stat)
//! and RSS (VmRSS, sampled every second) to each result; the generator's own CPU
//! time comes from getrusage(RUSAGE_SELF).

mod loadgen;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Args, Parser, Subcommand};
use junction::mqtt::codec::{self, Connect, Packet, Protocol, PubAck, QoS, Subscribe, SubscribeFilter};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use loadgen::hist::Histogram;
use loadgen::payload::{Form, Header, Template};
use loadgen::sys::{self as lsys, BrokerProbe};

const MAX_PACKET: usize = 1 << 20;
/// Extra wall time on top of `--duration` after which everything stops regardless.
const HARD_GRACE: Duration = Duration::from_secs(30);
/// A run "kept up" when the last delivery came at most this long after publishing ended
/// (otherwise the broker or subscriber was buffering a backlog: no loss, but not sustained).
const KEPT_UP_LAG_S: f64 = 0.25;

#[derive(Parser)]
#[command(
    name = "junction-loadgen",
    about = "MQTT 3.1.1 load generator for Junction benchmarks"
)]
struct Cli {
    /// Runtime worker threads; 1 = tokio current_thread (one core, the default).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N publishers -> 1 subscriber on `#`.
    Fanin(FaninArgs),
    /// 1 publisher -> N subscribers on one topic.
    Fanout(FanoutArgs),
    /// 1 publisher -> 1 subscriber, round-trip percentiles.
    Latency(LatencyArgs),
    /// Open N idle connections, report connect rate and broker RSS per connection.
    Conns(ConnsArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// Broker address, e.g. 127.0.0.1:1883.
    #[arg(long, default_value = "127.0.0.1:1883")]
    host: SocketAddr,
    /// Broker process id: adds its CPU time and RSS to the result.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Free-form label copied into the JSON (e.g. the broker's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Also append the JSON line(s) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct TrafficArgs {
    /// QoS of publishes and of the subscription (0 or 1).
    #[arg(long, default_value_t = 0)]
    qos: u8,
    /// Total publish rate in messages/s; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Payload bytes (at least 24; with --json at least 76).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// JSON payloads `{"temp":35,"lg":"<header as hex>","pad":"aaa…"}` padded to --payload
    /// (for rule-engine benchmarks: rules can read `payload.temp`).
    #[arg(long)]
    json: bool,
    /// QoS 1 in-flight window per publisher.
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Publisher tick in ms (messages due are sent in one write per tick).
    #[arg(long, default_value_t = 5)]
    tick_ms: u64,
    /// Seconds to wait for stragglers after publishing ends.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Throttle each subscriber to this many messages/s (0 = read as fast as possible):
    /// the overload check (publishers faster than the subscriber).
    #[arg(long, default_value_t = 0)]
    sub_rate: u64,
    /// Step through these total rates (comma list) and report the highest with no loss.
    #[arg(long, value_delimiter = ',')]
    search: Vec<u64>,
    /// With --search: pause between steps, seconds.
    #[arg(long, default_value_t = 1.0)]
    search_pause: f64,
}

#[derive(Args, Clone)]
struct FaninArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    t: TrafficArgs,
    #[arg(long, default_value_t = 100)]
    publishers: usize,
    /// Topic of each publisher; `{i}` is replaced by the publisher's index.
    #[arg(long, default_value = "bench/in/{i}")]
    topic_format: String,
    /// The subscriber's filter (e.g. `sensors/#`, so messages republished by rules to
    /// other topics are not received).
    #[arg(long, default_value = "#")]
    sub_filter: String,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    t: TrafficArgs,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
}

#[derive(Args, Clone)]
struct LatencyArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 0)]
    qos: u8,
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

#[derive(Args, Clone)]
struct ConnsArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Source addresses to bind, comma-separated (one IP has ~28k ephemeral ports).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    /// Keep-alive in the CONNECT, seconds.
    #[arg(long, default_value_t = 600)]
    keepalive: u16,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds to hold the connections once all are up.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
}

fn main() {
    let cli = Cli::parse();
    let rt = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    lsys::raise_nofile();
    let _ = now_ns();
    let threads = cli.threads.max(1);
    let common = match &cli.cmd {
        Cmd::Fanin(a) => &a.common,
        Cmd::Fanout(a) => &a.common,
        Cmd::Latency(a) => &a.common,
        Cmd::Conns(a) => &a.common,
    };
    // A load generator must only ever hit this machine.
    if !common.host.ip().is_loopback() {
        eprintln!(
            "junction-loadgen: --host {} is not a loopback address (127.0.0.0/8 or ::1)",
            common.host
        );
        std::process::exit(2);
    }
    if let Cmd::Conns(a) = &cli.cmd {
        if let Some(ip) = a.sources.iter().find(|ip| !ip.is_loopback()) {
            eprintln!("junction-loadgen: --sources {ip} is not a loopback address");
            std::process::exit(2);
        }
    }
    let code = rt.block_on(async move {
        let r = match cli.cmd {
            Cmd::Fanin(a) => run_fanin(a, threads).await,
            Cmd::Fanout(a) => run_fanout(a, threads).await,
            Cmd::Latency(a) => run_latency(a, threads).await,
            Cmd::Conns(a) => run_conns(a, threads).await,
        };
        match r {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("junction-loadgen: {e}");
                1
            }
        }
    });
    // Do not wait for stray tasks (e.g. sockets the broker stopped reading).
    rt.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Monotonic nanoseconds since process start (shared by publishers and subscribers).
fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn run_id() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ (std::process::id() << 12)) | 1
}

fn qos_of(q: u8) -> Res<QoS> {
    match q {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        _ => Err(format!("--qos {q}: only 0 and 1 are supported").into()),
    }
}

fn emit(common: &Common, v: &Value, human: &str) {
    let line = v.to_string();
    println!("{line}");
    println!("# {human}");
    if let Some(path) = &common.out {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

// ---------------------------------------------------------------- MQTT plumbing

/// Connect, send CONNECT (MQTT 3.1.1, clean session), wait for a successful CONNACK.
/// Returns the stream and any bytes read past the CONNACK.
async fn mqtt_connect(
    addr: SocketAddr,
    src: Option<IpAddr>,
    client_id: &str,
    keep_alive: u16,
) -> Res<(TcpStream, BytesMut)> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = src {
        if ip.is_ipv4() {
            lsys::bind_address_no_port(std::os::fd::AsRawFd::as_raw_fd(&sock));
        }
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let mut s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    let c = Connect {
        protocol: Some(Protocol::V4),
        keep_alive,
        client_id: client_id.to_string(),
        clean_start: true,
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(64);
    codec::encode(&Packet::Connect(Box::new(c)), Protocol::V4, &mut out)?;
    s.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if s.read_buf(&mut buf).await? == 0 {
            return Err("connection closed before CONNACK".into());
        }
        match codec::decode(&mut buf, Some(Protocol::V4), MAX_PACKET)? {
            Some(Packet::ConnAck(ack)) if ack.code == 0 => return Ok((s, buf)),
            Some(Packet::ConnAck(ack)) => return Err(format!("CONNACK refused: code {:#x}", ack.code).into()),
            Some(p) => return Err(format!("expected CONNACK, got {}", p.name()).into()),
            None => continue,
        }
    }
}

/// Subscribe to `filter` and wait for the SUBACK.
async fn mqtt_subscribe(s: &mut TcpStream, buf: &mut BytesMut, filter: &str, qos: QoS) -> Res<()> {
    let sub = Subscribe {
        pkid: 1,
        filters: vec![SubscribeFilter {
            filter: filter.to_string(),
            qos,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut out = BytesMut::with_capacity(64);
    codec::encode(&Packet::Subscribe(sub), Protocol::V4, &mut out)?;
    s.write_all(&out).await?;
    loop {
        match codec::decode(buf, Some(Protocol::V4), MAX_PACKET)? {
            Some(Packet::SubAck(a)) => {
                if a.reasons.first().is_none_or(|&r| r >= 0x80) {
                    return Err(format!("SUBSCRIBE {filter} refused: {:?}", a.reasons).into());
                }
                return Ok(());
            }
            Some(_) => continue,
            None => {
                if s.read_buf(buf).await? == 0 {
                    return Err("connection closed before SUBACK".into());
                }
            }
        }
    }
}

// ---------------------------------------------------------------- traffic engine

struct TrafficCfg {
    host: SocketAddr,
    qos: QoS,
    rate: u64,
    duration: Duration,
    payload: usize,
    form: Form,
    window: u64,
    tick: Duration,
    drain: Duration,
    sub_rate: u64,
    /// Topic of each publisher.
    pub_topics: Vec<String>,
    /// Filter of each subscriber.
    sub_filters: Vec<String>,
    /// Deliveries expected per message sent (fan-out factor).
    copies: u64,
    broker_pid: Option<u32>,
}

#[derive(Default)]
struct SubOut {
    hist: Histogram,
    delivered: u64,
    reordered: u64,
    foreign: u64,
    last_ns: u64,
    error: Option<String>,
}

struct PubOut {
    sent: u64,
    acked: u64,
    error: Option<String>,
    /// When this publisher wrote its last message (before waiting for PUBACKs).
    send_end: Instant,
}

struct PubShared {
    acked: AtomicU64,
    notify: Notify,
    /// One bit per packet id in flight (QoS 1): set on send, cleared by its PUBACK.
    outstanding: Vec<AtomicU64>,
    /// PUBACKs whose packet id was not in flight (duplicates or strays).
    unknown_acks: AtomicU64,
    error: Mutex<Option<String>>,
}

impl PubShared {
    fn new() -> PubShared {
        PubShared {
            acked: AtomicU64::new(0),
            notify: Notify::new(),
            outstanding: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            unknown_acks: AtomicU64::new(0),
            error: Mutex::new(None),
        }
    }
    fn set(&self, pkid: u16) {
        self.outstanding[pkid as usize / 64].fetch_or(1 << (pkid % 64), Ordering::Relaxed);
    }
    /// Clears the bit; false when it was not set.
    fn clear(&self, pkid: u16) -> bool {
        let bit = 1u64 << (pkid % 64);
        self.outstanding[pkid as usize / 64].fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }
    fn missing(&self) -> Vec<u16> {
        let mut v = Vec::new();
        for (i, w) in self.outstanding.iter().enumerate() {
            let w = w.load(Ordering::Relaxed);
            for b in 0..64 {
                if w & (1 << b) != 0 {
                    v.push((i * 64 + b) as u16);
                }
            }
        }
        v
    }
    fn set_error(&self, e: String) {
        self.error.lock().unwrap().get_or_insert(e);
    }
}

struct TrafficResult {
    sent: u64,
    acked: u64,
    delivered: u64,
    reordered: u64,
    foreign: u64,
    hist: Histogram,
    pub_secs: f64,
    span_secs: f64,
    wall_secs: f64,
    /// Time from the end of publishing to the last delivery.
    drain_lag_secs: f64,
    gen_cpu_us: u64,
    host_cpu: lsys::HostCpu,
    broker: Option<lsys::BrokerDelta>,
    errors: Vec<String>,
}

async fn run_traffic(cfg: &TrafficCfg) -> Res<TrafficResult> {
    let run = run_id();
    let npubs = cfg.pub_topics.len();
    let delivered_total = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let hard_deadline = Instant::now() + cfg.duration + cfg.drain + HARD_GRACE;

    // Subscribers first, each subscribed (SUBACK received) before any publish.
    let mut subs = Vec::with_capacity(cfg.sub_filters.len());
    for (i, filter) in cfg.sub_filters.iter().enumerate() {
        let (mut s, mut buf) = mqtt_connect(cfg.host, None, &format!("lg{run:x}-s{i}"), 600).await?;
        mqtt_subscribe(&mut s, &mut buf, filter, cfg.qos).await?;
        subs.push((s, buf));
    }
    let mut pubs = Vec::with_capacity(npubs);
    for i in 0..npubs {
        let (s, _) = mqtt_connect(cfg.host, None, &format!("lg{run:x}-p{i}"), 600).await?;
        pubs.push(s);
    }
    // Let the broker settle the subscriptions (some route asynchronously).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let probe = cfg.broker_pid.map(BrokerProbe::start);
    let cpu0 = lsys::self_cpu_us();
    let host0 = lsys::HostCpu::now();
    let t0 = Instant::now();
    let start_ns = now_ns();

    let mut sub_handles = Vec::new();
    for (s, buf) in subs {
        let delivered_total = delivered_total.clone();
        let cancel = cancel.clone();
        let sub_rate = cfg.sub_rate;
        sub_handles.push(tokio::spawn(async move {
            subscriber(
                s,
                buf,
                run,
                npubs,
                sub_rate,
                start_ns,
                delivered_total,
                cancel,
                hard_deadline,
            )
            .await
        }));
    }

    let rate_per_pub = cfg.rate as f64 / npubs as f64;
    let end = t0 + cfg.duration;
    let mut pub_handles = Vec::new();
    for (i, s) in pubs.into_iter().enumerate() {
        let tpl = Template::new(&cfg.pub_topics[i], cfg.qos, cfg.payload, cfg.form, run, i as u32)?;
        let (window, tick) = (cfg.window, cfg.tick);
        let stagger = tick * i as u32 / npubs as u32;
        pub_handles.push(tokio::spawn(async move {
            publisher(s, tpl, rate_per_pub, t0, end, window, tick, stagger, hard_deadline).await
        }));
    }

    let (mut sent, mut acked, mut errors) = (0u64, 0u64, Vec::new());
    let mut send_end = t0;
    for h in pub_handles {
        match h.await {
            Ok(p) => {
                sent += p.sent;
                acked += p.acked;
                send_end = send_end.max(p.send_end);
                if let Some(e) = p.error {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(format!("publisher task: {e}")),
        }
    }
    let pub_secs = (send_end - t0).as_secs_f64().max(1e-3);

    // Wait for stragglers: until every copy arrived or `drain` passed.
    let expected = sent * cfg.copies;
    let drain_end = Instant::now() + cfg.drain;
    while delivered_total.load(Ordering::Relaxed) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let wall_secs = t0.elapsed().as_secs_f64();
    let gen_cpu_us = lsys::self_cpu_us().saturating_sub(cpu0);
    let host_cpu = lsys::HostCpu::now().since(host0);
    let broker = match probe {
        Some(p) => Some(p.stop().await),
        None => None,
    };

    let mut hist = Histogram::new();
    let (mut delivered, mut reordered, mut foreign, mut last_ns) = (0, 0, 0, start_ns);
    for h in sub_handles {
        match h.await {
            Ok(o) => {
                hist.merge(&o.hist);
                delivered += o.delivered;
                reordered += o.reordered;
                foreign += o.foreign;
                last_ns = last_ns.max(o.last_ns);
                if let Some(e) = o.error {
                    errors.push(e);
                }
            }
            Err(e) => errors.push(format!("subscriber task: {e}")),
        }
    }
    let span_secs = ((last_ns - start_ns) as f64 / 1e9).max(pub_secs.min(cfg.duration.as_secs_f64()));
    let drain_lag_secs = ((last_ns - start_ns) as f64 / 1e9 - pub_secs).max(0.0);
    Ok(TrafficResult {
        drain_lag_secs,
        host_cpu,
        sent,
        acked,
        delivered,
        reordered,
        foreign,
        hist,
        pub_secs,
        span_secs,
        wall_secs,
        gen_cpu_us,
        broker,
        errors,
    })
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    s: TcpStream,
    tpl: Template,
    rate: f64,
    t0: Instant,
    end: Instant,
    window: u64,
    tick: Duration,
    stagger: Duration,
    hard_deadline: Instant,
) -> PubOut {
    let qos1 = tpl.pkid_off.is_some();
    let (mut rd, mut wr) = s.into_split();
    let shared = Arc::new(PubShared::new());
    let done = Arc::new(AtomicBool::new(false));
    // QoS 1: a reader task counts PUBACKs and wakes the writer when the window opens.
    let reader = {
        let shared = shared.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(8192);
            loop {
                let r = tokio::select! {
                    r = rd.read_buf(&mut buf) => r,
                    _ = tokio::time::sleep_until(hard_deadline.into()) => return,
                };
                match r {
                    Ok(0) | Err(_) => {
                        done.store(true, Ordering::Relaxed);
                        shared.notify.notify_one();
                        return;
                    }
                    Ok(_) => {}
                }
                let mut n = 0;
                loop {
                    match codec::decode(&mut buf, Some(Protocol::V4), MAX_PACKET) {
                        Ok(Some(Packet::PubAck(PubAck { pkid, .. }))) => {
                            if shared.clear(pkid) {
                                n += 1;
                            } else {
                                shared.unknown_acks.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Some(p)) => {
                            shared.set_error(format!("publisher got an unexpected {}", p.name()));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            shared.set_error(format!("publisher decode: {e}"));
                            done.store(true, Ordering::Relaxed);
                            shared.notify.notify_one();
                            return;
                        }
                    }
                }
                if n > 0 {
                    shared.acked.fetch_add(n, Ordering::Release);
                    shared.notify.notify_one();
                }
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(8192);
                }
            }
        })
    };

    const MAX_BATCH: u64 = 64;
    let mut out: Vec<u8> = Vec::with_capacity(tpl.frame.len() * MAX_BATCH as usize);
    let mut sent: u64 = 0;
    let mut pkid: u16 = 0;
    let mut seq: u32 = 0;
    let mut error = None;
    // Publishers are staggered across the tick so their batches do not all land at once.
    let mut ticker = tokio::time::interval_at((Instant::now() + stagger).into(), tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let now = Instant::now();
        if now >= end || done.load(Ordering::Relaxed) {
            break;
        }
        let mut n = if rate > 0.0 {
            let due = (rate * (now - t0).as_secs_f64()) as u64 + 1;
            due.saturating_sub(sent).min(MAX_BATCH * 16)
        } else {
            MAX_BATCH
        };
        if qos1 {
            let inflight = sent - shared.acked.load(Ordering::Acquire);
            n = n.min(window.saturating_sub(inflight));
            if n == 0 && inflight >= window {
                // Window full: wait for a PUBACK (bounded by the end of the run).
                tokio::select! {
                    _ = shared.notify.notified() => {}
                    _ = tokio::time::sleep_until(end.into()) => {}
                }
                continue;
            }
        }
        if n == 0 {
            ticker.tick().await;
            continue;
        }
        let ts = now_ns();
        out.clear();
        for _ in 0..n {
            pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            seq = seq.wrapping_add(1);
            tpl.append(&mut out, pkid, ts, seq);
            if qos1 {
                shared.set(pkid);
            }
        }
        let w = tokio::select! {
            w = wr.write_all(&out) => w,
            _ = tokio::time::sleep_until(hard_deadline.into()) => Err(std::io::Error::other("write stalled until the hard deadline")),
        };
        if let Err(e) = w {
            error = Some(format!("publisher write: {e}"));
            break;
        }
        sent += n;
        if rate <= 0.0 {
            tokio::task::yield_now().await;
        }
    }
    let send_end = Instant::now();
    // QoS 1: give outstanding PUBACKs a moment (bounded).
    if qos1 {
        let until = Instant::now() + Duration::from_secs(5);
        while shared.acked.load(Ordering::Acquire) < sent && Instant::now() < until && !done.load(Ordering::Relaxed) {
            tokio::select! {
                _ = shared.notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
    let acked = shared.acked.load(Ordering::Acquire);
    reader.abort();
    if let Some(e) = shared.error.lock().unwrap().take() {
        error.get_or_insert(e);
    }
    let unknown = shared.unknown_acks.load(Ordering::Relaxed);
    if qos1 && acked < sent {
        let missing = shared.missing();
        error.get_or_insert(format!(
            "{} PUBACKs missing after 5 s (packet ids {:?}...; {} PUBACKs for ids not in flight)",
            sent - acked,
            &missing[..missing.len().min(8)],
            unknown
        ));
    } else if unknown > 0 {
        error.get_or_insert(format!("{unknown} PUBACKs for packet ids not in flight"));
    }
    let mut out = BytesMut::new();
    let _ = codec::encode(&Packet::Disconnect(Default::default()), Protocol::V4, &mut out);
    let _ = tokio::time::timeout(Duration::from_millis(500), wr.write_all(&out)).await;
    PubOut {
        sent,
        acked,
        error,
        send_end,
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    mut s: TcpStream,
    mut buf: BytesMut,
    run: u32,
    npubs: usize,
    sub_rate: u64,
    start_ns: u64,
    delivered_total: Arc<AtomicU64>,
    cancel: CancellationToken,
    hard_deadline: Instant,
) -> SubOut {
    let mut o = SubOut {
        last_ns: start_ns,
        ..Default::default()
    };
    let mut last_seq = vec![0u32; npubs];
    let mut acks: Vec<u8> = Vec::with_capacity(4096);
    const CHUNK: usize = 256 * 1024;
    buf.reserve(CHUNK);
    loop {
        if buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let r = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(hard_deadline.into()) => break,
            r = s.read_buf(&mut buf) => r,
        };
        match r {
            Ok(0) => {
                o.error = Some("subscriber: connection closed by the broker".into());
                break;
            }
            Err(e) => {
                o.error = Some(format!("subscriber read: {e}"));
                break;
            }
            Ok(_) => {}
        }
        let now = now_ns();
        let mut n = 0u64;
        loop {
            match codec::decode(&mut buf, Some(Protocol::V4), MAX_PACKET) {
                Ok(Some(Packet::Publish(p))) => {
                    if p.qos == QoS::AtLeastOnce {
                        acks.extend_from_slice(&[0x40, 2]);
                        acks.extend_from_slice(&p.pkid.to_be_bytes());
                    }
                    if let Some(h) = Header::parse(&p.payload).filter(|h| h.run == run) {
                        n += 1;
                        let (ts, pubid, seq) = (h.ts, h.publisher as usize, h.seq);
                        o.hist.record(now.saturating_sub(ts));
                        if let Some(l) = last_seq.get_mut(pubid) {
                            if seq <= *l {
                                o.reordered += 1;
                            } else {
                                *l = seq;
                            }
                        }
                    } else {
                        o.foreign += 1;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    o.error = Some(format!("subscriber decode: {e}"));
                    return o;
                }
            }
        }
        if !acks.is_empty() {
            if let Err(e) = s.write_all(&acks).await {
                o.error = Some(format!("subscriber write: {e}"));
                break;
            }
            acks.clear();
        }
        if n > 0 {
            o.delivered += n;
            o.last_ns = now;
            delivered_total.fetch_add(n, Ordering::Relaxed);
        }
        // Slow consumer: sleep until our delivery count is back on the allowed rate.
        if let Some(allowed_ns) = o.delivered.saturating_mul(1_000_000_000).checked_div(sub_rate) {
            let elapsed = now_ns() - start_ns;
            if allowed_ns > elapsed {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_nanos(allowed_ns - elapsed)) => {}
                }
            }
        }
    }
    o
}

// ---------------------------------------------------------------- reporting

fn traffic_json(scenario: &str, common: &Common, cfg: &TrafficCfg, r: &TrafficResult) -> Value {
    let expected = r.sent * cfg.copies;
    let lost = expected.saturating_sub(r.delivered);
    let cpu_share = r.gen_cpu_us as f64 / 1e6 / r.wall_secs;
    let mut v = json!({
        "scenario": scenario,
        "label": common.label,
        "host": common.host.to_string(),
        "qos": cfg.qos as u8,
        "publishers": cfg.pub_topics.len(),
        "subscribers": cfg.sub_filters.len(),
        "target_rate": cfg.rate,
        "duration_s": cfg.duration.as_secs_f64(),
        "payload": cfg.form.payload_len(cfg.payload),
        "json": cfg.form == Form::Json,
        "topic": cfg.pub_topics.first(),
        "sub_filter": cfg.sub_filters.first(),
        "sent": r.sent,
        "acked": r.acked,
        "expected": expected,
        "delivered": r.delivered,
        "lost": lost,
        "loss_pct": if expected > 0 { lost as f64 * 100.0 / expected as f64 } else { 0.0 },
        "reordered_or_dup": r.reordered,
        "foreign": r.foreign,
        "send_rate": r.sent as f64 / r.pub_secs,
        "delivery_rate": r.delivered as f64 / r.span_secs,
        "lat_us": r.hist.summary_us(),
        "drain_lag_s": r.drain_lag_secs,
        "kept_up": r.drain_lag_secs <= KEPT_UP_LAG_S,
        "gen_cpu_s": r.gen_cpu_us as f64 / 1e6,
        "gen_cpu_share": cpu_share,
        "host_cpu_cores": r.host_cpu.busy as f64 / 1e6 / r.wall_secs,
        "host_irq_cores": r.host_cpu.irq as f64 / 1e6 / r.wall_secs,
        "host_steal_cores": r.host_cpu.steal as f64 / 1e6 / r.wall_secs,
        "wall_s": r.wall_secs,
        "errors": r.errors,
    });
    let broker_us = r.broker.as_ref().map_or(0, |b| b.cpu_us);
    // Other processes (busy time not charged to us, the broker, irq/softirq or steal).
    v["other_cpu_cores"] = json!(other_us(r, broker_us) as f64 / 1e6 / r.wall_secs);
    if let Some(b) = &r.broker {
        v["broker_cpu_s"] = json!(b.cpu_us as f64 / 1e6);
        v["broker_cpu_share"] = json!(b.cpu_us as f64 / 1e6 / r.wall_secs);
        v["broker_cpu_us_per_msg"] = json!(if r.delivered > 0 {
            b.cpu_us as f64 / r.delivered as f64
        } else {
            0.0
        });
        v["broker_rss_kb_start"] = json!(b.rss_start_kb);
        v["broker_rss_kb_max"] = json!(b.rss_max_kb);
        v["broker_rss_kb_end"] = json!(b.rss_end_kb);
        v["broker_rss_kb_series"] = json!(b.rss_series_kb);
    }
    v
}

fn other_us(r: &TrafficResult, broker_us: u64) -> u64 {
    r.host_cpu
        .busy
        .saturating_sub(r.gen_cpu_us + broker_us + r.host_cpu.irq + r.host_cpu.steal)
}

fn traffic_human(scenario: &str, common: &Common, cfg: &TrafficCfg, r: &TrafficResult) -> String {
    let expected = r.sent * cfg.copies;
    let lat = r.hist.summary_us();
    let mut s = format!(
        "{scenario} {} qos{} target {}/s: sent {} ({:.0}/s) delivered {}/{} lost {} ({:.0} deliveries/s, lag {:.2}s) p50 {}µs p99 {}µs | gen cpu {:.0}% softirq {:.0}% other procs {:.0}%",
        common.label,
        cfg.qos as u8,
        cfg.rate,
        r.sent,
        r.sent as f64 / r.pub_secs,
        r.delivered,
        expected,
        expected.saturating_sub(r.delivered),
        r.delivered as f64 / r.span_secs,
        r.drain_lag_secs,
        lat["p50"],
        lat["p99"],
        r.gen_cpu_us as f64 / 1e4 / r.wall_secs,
        r.host_cpu.irq as f64 / 1e4 / r.wall_secs,
        other_us(r, r.broker.as_ref().map_or(0, |b| b.cpu_us)) as f64 / 1e4 / r.wall_secs
    );
    if let Some(b) = &r.broker {
        s += &format!(
            " broker cpu {:.0}% {:.2}µs/msg rss {}→{} KiB",
            b.cpu_us as f64 / 1e4 / r.wall_secs,
            if r.delivered > 0 {
                b.cpu_us as f64 / r.delivered as f64
            } else {
                0.0
            },
            b.rss_start_kb,
            b.rss_max_kb
        );
    }
    if !r.errors.is_empty() {
        s += &format!(" errors: {:?}", &r.errors[..r.errors.len().min(3)]);
    }
    s
}

async fn traffic_or_search(
    scenario: &str,
    common: &Common,
    t: &TrafficArgs,
    mut cfg: TrafficCfg,
    threads: usize,
) -> Res<()> {
    if t.search.is_empty() {
        let r = run_traffic(&cfg).await?;
        let mut v = traffic_json(scenario, common, &cfg, &r);
        v["threads"] = json!(threads);
        emit(common, &v, &traffic_human(scenario, common, &cfg, &r));
        return Ok(());
    }
    let mut best: Option<Value> = None;
    let mut fail: Option<Value> = None;
    for (i, &rate) in t.search.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs_f64(t.search_pause)).await;
        }
        cfg.rate = rate;
        let r = run_traffic(&cfg).await?;
        let mut v = traffic_json(scenario, common, &cfg, &r);
        v["threads"] = json!(threads);
        v["search_step"] = json!(true);
        let lost = v["lost"].as_u64().unwrap_or(u64::MAX);
        // The generator must actually have offered the rate (3% slack).
        let offered = r.sent as f64 >= 0.97 * rate as f64 * cfg.duration.as_secs_f64();
        v["generator_kept_up"] = json!(offered);
        emit(common, &v, &traffic_human(scenario, common, &cfg, &r));
        if lost == 0 && offered && r.errors.is_empty() && r.drain_lag_secs <= KEPT_UP_LAG_S {
            best = Some(v);
        } else {
            fail = Some(v);
            break;
        }
    }
    let summary = json!({
        "scenario": format!("{scenario}-search"),
        "label": common.label,
        "qos": cfg.qos as u8,
        // Highest step with no loss, offered in full, delivered without a growing backlog.
        "max_no_loss_rate": best.as_ref().map(|b| b["target_rate"].clone()),
        "best": best,
        "first_failure": fail,
        "threads": threads,
    });
    let human = format!(
        "{scenario}-search {} qos{}: highest no-loss rate {}",
        common.label, cfg.qos as u8, summary["max_no_loss_rate"]
    );
    emit(common, &summary, &human);
    Ok(())
}

fn base_cfg(common: &Common, t: &TrafficArgs) -> Res<TrafficCfg> {
    if !(t.duration > 0.0 && t.duration <= 3600.0) {
        return Err("--duration must be in (0, 3600]".into());
    }
    Ok(TrafficCfg {
        host: common.host,
        qos: qos_of(t.qos)?,
        rate: t.rate,
        duration: Duration::from_secs_f64(t.duration),
        payload: t.payload,
        form: if t.json { Form::Json } else { Form::Binary },
        window: t.window.max(1),
        tick: Duration::from_millis(t.tick_ms.max(1)),
        drain: Duration::from_secs_f64(t.drain.clamp(0.0, 60.0)),
        sub_rate: t.sub_rate,
        pub_topics: vec![],
        sub_filters: vec![],
        copies: 1,
        broker_pid: common.broker_pid,
    })
}

async fn run_fanin(a: FaninArgs, threads: usize) -> Res<()> {
    let mut cfg = base_cfg(&a.common, &a.t)?;
    cfg.pub_topics = (0..a.publishers.max(1))
        .map(|i| a.topic_format.replace("{i}", &i.to_string()))
        .collect();
    cfg.sub_filters = vec![a.sub_filter.clone()];
    cfg.copies = 1;
    traffic_or_search("fanin", &a.common, &a.t, cfg, threads).await
}

async fn run_fanout(a: FanoutArgs, threads: usize) -> Res<()> {
    let mut cfg = base_cfg(&a.common, &a.t)?;
    cfg.pub_topics = vec!["bench/out".into()];
    cfg.sub_filters = vec!["bench/out".into(); a.subscribers.max(1)];
    cfg.copies = a.subscribers.max(1) as u64;
    traffic_or_search("fanout", &a.common, &a.t, cfg, threads).await
}

async fn run_latency(a: LatencyArgs, threads: usize) -> Res<()> {
    let t = TrafficArgs {
        qos: a.qos,
        rate: a.rate.max(1),
        duration: a.duration,
        payload: a.payload,
        json: false,
        window: 64,
        tick_ms: 1,
        drain: 5.0,
        sub_rate: 0,
        search: vec![],
        search_pause: 0.0,
    };
    let mut cfg = base_cfg(&a.common, &t)?;
    cfg.pub_topics = vec!["bench/lat".into()];
    cfg.sub_filters = vec!["bench/lat".into()];
    let r = run_traffic(&cfg).await?;
    let mut v = traffic_json("latency", &a.common, &cfg, &r);
    v["threads"] = json!(threads);
    let lat = r.hist.summary_us();
    let human = format!(
        "latency {} qos{} {}/s: p50 {}µs p99 {}µs p999 {}µs max {}µs (delivered {}/{})",
        a.common.label, a.qos, a.rate, lat["p50"], lat["p99"], lat["p999"], lat["max"], r.delivered, r.sent
    );
    emit(&a.common, &v, &human);
    Ok(())
}

// ---------------------------------------------------------------- idle connections

async fn run_conns(a: ConnsArgs, threads: usize) -> Res<()> {
    if a.sources.is_empty() {
        return Err("--sources is empty".into());
    }
    let run = run_id();
    let count = a.count.min(1_000_000);
    let rss_idle = a.common.broker_pid.and_then(lsys::rss_kb);
    let cpu_b0 = a.common.broker_pid.and_then(lsys::proc_cpu_us);
    let cpu0 = lsys::self_cpu_us();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(120);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let failures = Arc::new(AtomicU64::new(0));
    let first_err: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        if Instant::now() > deadline {
            break;
        }
        let permit = sem.clone().acquire_owned().await?;
        let src = a.sources[i % a.sources.len()];
        let (conns, failures, first_err) = (conns.clone(), failures.clone(), first_err.clone());
        let (host, ka) = (a.common.host, a.keepalive);
        set.spawn(async move {
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                mqtt_connect(host, Some(src), &format!("lg{run:x}-c{i}"), ka),
            )
            .await;
            match r {
                Ok(Ok((s, _))) => conns.lock().unwrap().push(s),
                Ok(Err(e)) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first_err.lock().unwrap().get_or_insert_with(|| format!("{src}: {e}"));
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first_err
                        .lock()
                        .unwrap()
                        .get_or_insert_with(|| format!("{src}: CONNACK timeout"));
                }
            }
            drop(permit);
        });
        // Reap finished tasks so the JoinSet does not grow without bound.
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
    let connect_secs = t0.elapsed().as_secs_f64();
    let gen_cpu_us = lsys::self_cpu_us().saturating_sub(cpu0);
    let connected = conns.lock().unwrap().len();
    let failed = failures.load(Ordering::Relaxed);
    println!("# HOLDING {connected} connections for {}s", a.hold);
    // Let the broker finish its per-connection setup, then measure.
    let settle = Duration::from_secs_f64((a.hold / 2.0).clamp(0.0, 2.0));
    tokio::time::sleep(settle).await;
    let rss_held = a.common.broker_pid.and_then(lsys::rss_kb);
    let cpu_b1 = a.common.broker_pid.and_then(lsys::proc_cpu_us);
    tokio::time::sleep(Duration::from_secs_f64(a.hold.clamp(0.0, 600.0)) - settle).await;
    let rss_held_end = a.common.broker_pid.and_then(lsys::rss_kb);
    // Close politely: DISCONNECT then drop.
    let mut disc = BytesMut::new();
    codec::encode(&Packet::Disconnect(Default::default()), Protocol::V4, &mut disc)?;
    let streams = std::mem::take(&mut *conns.lock().unwrap());
    for mut s in streams {
        let _ = tokio::time::timeout(Duration::from_millis(100), s.write_all(&disc)).await;
    }
    let per_conn = match (rss_idle, rss_held) {
        (Some(i), Some(h)) if connected > 0 => Some((h as f64 - i as f64) * 1024.0 / connected as f64),
        _ => None,
    };
    let v = json!({
        "scenario": "conns",
        "label": a.common.label,
        "host": a.common.host.to_string(),
        "requested": count,
        "connected": connected,
        "failed": failed,
        "first_error": first_err.lock().unwrap().clone(),
        "sources": a.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "connect_s": connect_secs,
        "connect_rate": connected as f64 / connect_secs,
        "keepalive": a.keepalive,
        "gen_cpu_s": gen_cpu_us as f64 / 1e6,
        "gen_cpu_share": gen_cpu_us as f64 / 1e6 / connect_secs,
        "broker_rss_kb_idle": rss_idle,
        "broker_rss_kb_held": rss_held,
        "broker_rss_kb_held_end": rss_held_end,
        "broker_bytes_per_conn": per_conn,
        "broker_cpu_s_connect": match (cpu_b0, cpu_b1) { (Some(a), Some(b)) => Some((b - a) as f64 / 1e6), _ => None },
        "threads": threads,
    });
    let human = format!(
        "conns {}: {connected}/{count} connected ({failed} failed) in {:.2}s = {:.0} conn/s; broker RSS {:?} -> {:?} KiB = {} B/conn",
        a.common.label,
        connect_secs,
        connected as f64 / connect_secs,
        rss_idle,
        rss_held,
        per_conn.map_or("?".into(), |b| format!("{b:.0}"))
    );
    emit(&a.common, &v, &human);
    Ok(())
}

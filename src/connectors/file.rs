//! Connector files: `connectors/<name>.toml` (folder `connectors.dir`), one connector each,
//! named by the file stem. Read key by key with [`Fields`], so every error is `file:line:col`.
//!
//! ```toml
//! type = "webhook"                 # a type of the registry
//! url = "http://127.0.0.1:8080/api"
//! headers = { authorization = "Bearer x" }
//! # common to every connector type (defaults shown)
//! connect_timeout = "5s"
//! request_timeout = "15s"
//! pool_size = 8
//! tls = { enable = false, verify = true }   # cacertfile, certfile, keyfile: see connectors::tls
//! health_check_interval = "15s"
//! # the runtime, per action of a rule that names this connector
//! queue_len = 10000                # outputs queued in memory
//! buffer_mode = "disk"             # "disk": also in a log under <data_dir>/buffers, read back
//!                                  # past queue_len, durable across kill -9; "memory": when
//!                                  # queue_len is reached, drop the oldest
//! max_buffer_bytes = "256MB"       # disk log size; past it the oldest outputs are dropped
//! buffer_seg_bytes = "8MB"         # disk log segment size
//! batch_size = 1                   # > 1: send up to this many outputs at once
//! batch_time = "0ms"               # wait up to this long for a batch to fill
//! inflight_window = 100            # batches in flight; 1 keeps strict order
//! max_retries = "infinity"         # retries of a batch on retryable errors
//! retry_backoff = { initial = "100ms", max = "30s" }   # exponential, with jitter
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{registry, Connector};
use crate::config::units::parse_duration;
use crate::config::walk::{Doc, Fields, FileError};

/// Settings every connector type understands (how it uses them is its own business).
#[derive(Debug, Clone, PartialEq)]
pub struct CommonSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub pool_size: usize,
    pub tls: TlsSettings,
    /// The runtime's `batch_size` (a connector may shape a batch differently, e.g. a JSON array).
    pub batch_size: usize,
    /// The folder of the file (relative paths in settings are relative to the working directory).
    pub file: PathBuf,
}

/// `tls = { enable, verify, cacertfile, certfile, keyfile }` (see [`super::tls`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsSettings {
    /// `None`: the connector decides (the webhook: by the URL's scheme; the others: off).
    pub enable: Option<bool>,
    /// `false`: any server certificate is accepted (see [`super::tls`] for the risk).
    pub verify: bool,
    /// PEM CA certificates to trust instead of the default roots.
    pub cacertfile: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS), with `keyfile`.
    pub certfile: Option<PathBuf>,
    /// PEM private key of `certfile`.
    pub keyfile: Option<PathBuf>,
    /// The files above, read and checked when the file loaded (unless `enable = false`).
    pub files: super::tls::TlsFiles,
}

/// Where an action's queue lives (`buffer_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferMode {
    /// `queue_len` outputs in memory; when full the oldest is dropped.
    Memory,
    /// Every output not yet delivered is also written to a log under the data folder
    /// (durable across restarts and `kill -9`); `queue_len` of them stay in memory, the
    /// rest are read back; past `max_buffer_bytes` the oldest are dropped. Memory mode when
    /// the broker has no data folder (`durable_storage.enable = false`).
    Disk,
}

/// How the runtime runs each action of this connector.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// Outputs queued in memory per action (memory mode: when full the oldest is dropped,
    /// `dropped{reason="queue_full"}`).
    pub queue_len: usize,
    pub buffer_mode: BufferMode,
    /// Disk mode: the log's size cap; past it the oldest segment is dropped.
    pub max_buffer_bytes: u64,
    /// Disk mode: the log's segment size.
    pub buffer_seg_bytes: u64,
    pub batch_size: usize,
    pub batch_time: Duration,
    /// Batches in flight per action; 1 keeps strict order.
    pub inflight_window: usize,
    /// `None`: retry until it succeeds (or a non-retryable error).
    pub max_retries: Option<u32>,
    pub retry_backoff_initial: Duration,
    pub retry_backoff_max: Duration,
    pub health_check_interval: Duration,
    pub connect_timeout: Duration,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            queue_len: 10_000,
            buffer_mode: BufferMode::Disk,
            max_buffer_bytes: 256 << 20,
            buffer_seg_bytes: 8 << 20,
            batch_size: 1,
            batch_time: Duration::ZERO,
            inflight_window: 100,
            max_retries: None,
            retry_backoff_initial: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A loaded connector file.
#[derive(Clone)]
pub struct ConnectorDef {
    /// The file stem.
    pub name: Arc<str>,
    /// Its `type`.
    pub kind: &'static str,
    pub runtime: RuntimeSettings,
    pub connector: Arc<dyn Connector>,
    pub file: PathBuf,
    /// A hash of the file's text: a reload restarts the connectors whose text changed.
    pub source: u64,
}

impl std::fmt::Debug for ConnectorDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorDef")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("runtime", &self.runtime)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// Loads every `*.toml` of `dir` (sorted). A missing folder is no connectors. All or nothing:
/// every error of every file is returned.
pub fn load_dir(dir: &Path) -> Result<Vec<ConnectorDef>, Vec<FileError>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(vec![FileError {
                file: dir.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read the connectors folder: {e}"),
                snippet: None,
            }])
        }
    };
    paths.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(FileError {
                    file: path.clone(),
                    line: 0,
                    col: 0,
                    message: format!("cannot read: {e}"),
                    snippet: None,
                });
                continue;
            }
        };
        match load_str(&path, &text) {
            Ok(d) => out.push(d),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Loads one connector file's text; the name is the stem of `path`.
pub fn load_str(path: &Path, text: &str) -> Result<ConnectorDef, FileError> {
    let doc = Doc { path, text };
    let parsed = doc.parse()?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(doc.error_at(
            0,
            format!("connector name `{name}` (the file stem): use letters, digits, `_` and `-`"),
        ));
    }
    let mut f = Fields::new(&doc, parsed.as_table(), None, "connector".into());
    let ty = f.req_string("type")?;
    let Some((kind, parse)) = registry::find(&ty.value) else {
        return Err(f.error(
            "type",
            format!(
                "unknown connector type `{}`; known: {}",
                ty.value,
                registry::names().join(", ")
            ),
        ));
    };
    let mut rt = RuntimeSettings::default();
    let connect_timeout = duration(&mut f, "connect_timeout")?.unwrap_or(rt.connect_timeout);
    rt.connect_timeout = connect_timeout;
    let request_timeout = duration(&mut f, "request_timeout")?.unwrap_or(Duration::from_secs(15));
    let pool_size = count(&mut f, "pool_size", 1, 1024)?.unwrap_or(8);
    let mut tls = TlsSettings {
        verify: true,
        ..TlsSettings::default()
    };
    if let Some(mut t) = f.table("tls")? {
        tls.enable = t.bool("enable")?;
        tls.verify = t.bool("verify")?.unwrap_or(true);
        tls.cacertfile = t.string("cacertfile")?.map(|s| PathBuf::from(s.value));
        tls.certfile = t.string("certfile")?.map(|s| PathBuf::from(s.value));
        tls.keyfile = t.string("keyfile")?.map(|s| PathBuf::from(s.value));
        if tls.enable != Some(false) {
            tls.files = super::tls::read(&tls).map_err(|r| t.error(r.key, r.message))?;
        }
        t.finish()?;
    }
    rt.health_check_interval = duration(&mut f, "health_check_interval")?.unwrap_or(rt.health_check_interval);
    rt.queue_len = count(&mut f, "queue_len", 1, 100_000_000)?.unwrap_or(rt.queue_len);
    rt.buffer_mode = match f.string("buffer_mode")? {
        None => rt.buffer_mode,
        Some(m) if m.value == "disk" => BufferMode::Disk,
        Some(m) if m.value == "memory" => BufferMode::Memory,
        Some(_) => return Err(f.error("buffer_mode", "expected \"disk\" or \"memory\"")),
    };
    rt.max_buffer_bytes = size(&mut f, "max_buffer_bytes")?.unwrap_or(rt.max_buffer_bytes);
    rt.buffer_seg_bytes = size(&mut f, "buffer_seg_bytes")?.unwrap_or(rt.buffer_seg_bytes);
    if rt.buffer_seg_bytes < 4096 {
        return Err(f.error("buffer_seg_bytes", "at least 4KB"));
    }
    if rt.max_buffer_bytes < 2 * rt.buffer_seg_bytes {
        return Err(f.error(
            "max_buffer_bytes",
            format!("at least twice `buffer_seg_bytes` ({} bytes)", rt.buffer_seg_bytes),
        ));
    }
    rt.batch_size = count(&mut f, "batch_size", 1, 100_000)?.unwrap_or(rt.batch_size);
    rt.batch_time = duration(&mut f, "batch_time")?.unwrap_or(rt.batch_time);
    rt.inflight_window = count(&mut f, "inflight_window", 1, 10_000)?.unwrap_or(rt.inflight_window);
    rt.max_retries = match f.any("max_retries")? {
        None => None,
        Some(toml_edit::Value::String(s)) if s.value() == "infinity" => None,
        Some(toml_edit::Value::Integer(i)) if (0..=i64::from(u32::MAX)).contains(i.value()) => Some(*i.value() as u32),
        Some(_) => return Err(f.error("max_retries", "expected a count (0 or more) or \"infinity\"")),
    };
    if let Some(mut b) = f.table("retry_backoff")? {
        rt.retry_backoff_initial = duration(&mut b, "initial")?.unwrap_or(rt.retry_backoff_initial);
        rt.retry_backoff_max = duration(&mut b, "max")?.unwrap_or(rt.retry_backoff_max);
        if rt.retry_backoff_max < rt.retry_backoff_initial {
            return Err(b.error("max", "must not be less than `initial`"));
        }
        b.finish()?;
    }
    let common = CommonSettings {
        connect_timeout,
        request_timeout,
        pool_size,
        tls,
        batch_size: rt.batch_size,
        file: path.to_path_buf(),
    };
    let connector = parse(&mut f, &common)?;
    f.finish()?;
    Ok(ConnectorDef {
        name: Arc::from(name.as_str()),
        kind,
        runtime: rt,
        connector,
        file: path.to_path_buf(),
        source: {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        },
    })
}

/// A duration setting (`"5s"`, `"100ms"`).
pub fn duration(f: &mut Fields<'_, '_>, key: &'static str) -> Result<Option<Duration>, FileError> {
    match f.string(key)? {
        None => Ok(None),
        Some(s) => parse_duration(&s.value).map(Some).map_err(|e| f.error(key, e)),
    }
}

/// A size setting (`"256MB"`, `"8KB"`, or a number of bytes).
pub fn size(f: &mut Fields<'_, '_>, key: &'static str) -> Result<Option<u64>, FileError> {
    match f.any(key)? {
        None => Ok(None),
        Some(toml_edit::Value::Integer(i)) if *i.value() >= 0 => Ok(Some(*i.value() as u64)),
        Some(toml_edit::Value::String(s)) => {
            let s = s.value().clone();
            crate::config::units::parse_size(&s)
                .map(Some)
                .map_err(|e| f.error(key, e))
        }
        Some(_) => Err(f.error(key, "expected a size (\"256MB\") or a number of bytes")),
    }
}

/// An integer setting within `min..=max`.
pub fn count(f: &mut Fields<'_, '_>, key: &'static str, min: i64, max: i64) -> Result<Option<usize>, FileError> {
    match f.int(key)? {
        None => Ok(None),
        Some(v) if (min..=max).contains(&v) => Ok(Some(v as usize)),
        Some(v) => Err(f.error(key, format!("{v} is out of range {min}..={max}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ConnectorDef, FileError> {
        load_str(Path::new("connectors/hook.toml"), text)
    }

    #[test]
    fn reads_a_webhook_file() {
        let d = load(
            "type = \"webhook\"\nurl = \"http://127.0.0.1:1/x\"\nbatch_size = 10\nbatch_time = \"50ms\"\n\
             inflight_window = 1\nmax_retries = 3\nretry_backoff = { initial = \"10ms\", max = \"1s\" }\nqueue_len = 5\n",
        )
        .unwrap();
        assert_eq!(&*d.name, "hook");
        assert_eq!(d.kind, "webhook");
        assert_eq!(d.runtime.batch_size, 10);
        assert_eq!(d.runtime.batch_time, Duration::from_millis(50));
        assert_eq!(d.runtime.inflight_window, 1);
        assert_eq!(d.runtime.max_retries, Some(3));
        assert_eq!(d.runtime.retry_backoff_initial, Duration::from_millis(10));
        assert_eq!(d.runtime.queue_len, 5);
    }

    #[test]
    fn errors_have_positions() {
        let e = load("type = \"webhok\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 8), "{e}");
        assert!(e.message.contains("unknown connector type `webhok`"), "{e}");
        let e = load("type = \"webhook\"\nurl = \"http://h/\"\nbatch_sise = 3\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 1), "{e}");
        assert!(e.message.contains("did you mean `batch_size`"), "{e}");
        let e = load("type = \"webhook\"\nurl = \"http://h/\"\nbatch_time = \"5\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = load("type = \"webhook\"\nurl = \"ftp://h/\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 7), "{e}");
        let e = load("type = \"webhook\"\n").unwrap_err();
        assert!(e.message.contains("missing `url`"), "{e}");
    }
}

/// A connector's `server`: `host`, `host:port` or `[v6]:port` (`default_port` when none).
pub fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let s = s.trim();
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err("expected `[ipv6]:port`".into());
        };
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err("expected `[ipv6]:port`".into()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(format!("an IPv6 address needs brackets: `[::1]:{default_port}`")),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("expected `host:port`".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port `{p}`"))?,
    };
    Ok((host.to_string(), port))
}

//! Rule SQL functions that need state outside the message: `jq`, the `kv_store_*` family,
//! `getenv`, and the custom Rhai functions of `rules::rhai_fns`, each a [`HostFunction`].
//! [`HostEnv::compile_options`] registers them all; the compiler looks them up after the
//! message accessors and the built-in library, so none of them can shadow a built-in.
//!
//! `jq` runs [jaq](https://github.com/01mf02/jaq) on a small pool of big-stack threads, as
//! jaq recurses over the program and the data and cannot be interrupted: the caller waits at
//! most the timeout, and the worker stops at the next result. Program size is bounded in
//! tokens so that parsing, compiling and running fit the stack. Known gaps: a program that
//! runs long without yielding keeps its worker until it ends (later calls queue, then time
//! out); a single huge result (`[range(1e9)]`) is built before any bound applies; and
//! unbounded non-tail recursion (`def f: f + 1; f`) overflows any stack, which aborts the
//! process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jaq_core::data::JustLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars};
use jaq_json::{Num, Val};
use parking_lot::{Mutex, RwLock};

use super::compile::{CompileErrorKind, CompileOptions, HostFunction};
use super::eval::EvalInput;
use super::functions::MAX_OUTPUT;
use super::rhai_fns::ScriptFunctions;
use super::value::{Map, Value};

/// The names [`HostEnv::compile_options`] registers besides the script functions.
pub const HOST_FUNCTION_NAMES: &[&str] = &["jq", "kv_store_put", "kv_store_get", "kv_store_del", "getenv"];

/// EMQX's `rule_engine.jq_function_default_timeout`.
pub const JQ_DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout a `jq` call may ask for: the calling rule waits that long.
pub const JQ_MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most results one `jq` call may return.
pub const JQ_MAX_RESULTS: usize = 10_000;
/// Longest jq program text.
pub const JQ_MAX_PROGRAM_LEN: usize = 64 << 10;
/// Most tokens in a jq program. jaq parses, compiles and runs nesting by recursion, up to a
/// level a token, and a debug build overflows a worker's stack at ~6_500 levels.
pub const JQ_MAX_PROGRAM_TOKENS: usize = 4096;
/// Most compiled programs kept (a program built from message data would otherwise grow it).
pub const JQ_MAX_CACHED: usize = 1000;
/// Deepest array/map nesting converted between rule values and jq values. Results are held
/// to the JSON decoder's bound, as callers recurse over them on ordinary stacks.
pub const JQ_MAX_INPUT_DEPTH: usize = 256;
/// See [`JQ_MAX_INPUT_DEPTH`].
pub const JQ_MAX_OUTPUT_DEPTH: usize = 128;
/// Calls waiting for a jq worker before further calls are refused.
pub const JQ_MAX_QUEUED: usize = 1024;
/// Stack of each jq worker (reserved, not committed): jaq recurses over program and data.
pub const JQ_WORKER_STACK_SIZE: usize = 64 << 20;
/// Most jq workers (fewer on machines with fewer cores, at least two).
pub const JQ_MAX_WORKERS: usize = 8;

/// Default bound on the entries of a [`KvStore`].
pub const KV_DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Default bound on the approximate bytes held by a [`KvStore`] (values can be whole payloads).
pub const KV_DEFAULT_MAX_BYTES: usize = 256 << 20;

/// EMQX's prefix for the variables `getenv` may read.
pub const GETENV_DEFAULT_PREFIX: &str = "EMQXVAR_";
/// Most distinct variable names cached (names can come from message data).
const GETENV_MAX_CACHED: usize = 1024;

/// What an error message from a jq program may grow to (it can quote a whole value).
const MAX_MESSAGE_LEN: usize = 512;

// ------------------------------------------------------------------------ entry point

/// Everything the host functions need, kept by the engine across rule reloads.
#[derive(Debug, Clone)]
pub struct HostEnv {
    /// Shared by every rule (`kv_store_*`).
    pub kv: KvStore,
    /// `getenv(name)` reads `<prefix><name>`; an empty prefix disables `getenv`.
    pub getenv_prefix: String,
    /// Custom functions callable from SQL.
    pub scripts: Option<Arc<ScriptFunctions>>,
    /// `jq/2`'s timeout.
    pub jq_default_timeout: Duration,
}

impl Default for HostEnv {
    fn default() -> Self {
        HostEnv {
            kv: KvStore::default(),
            getenv_prefix: GETENV_DEFAULT_PREFIX.to_string(),
            scripts: None,
            jq_default_timeout: JQ_DEFAULT_TIMEOUT,
        }
    }
}

impl HostEnv {
    /// Options registering `jq`, `kv_store_*`, `getenv` and every script function. A script
    /// function that SQL could not reach (its name is a host function, a message accessor
    /// or not an SQL identifier) is left out with a warning.
    pub fn compile_options(&self) -> CompileOptions {
        let mut opts = CompileOptions::default();
        opts.register("jq", 2, Some(3), Arc::new(Jq::new(self.jq_default_timeout)));
        opts.register("kv_store_put", 2, Some(2), Arc::new(KvPut(self.kv.clone())));
        opts.register("kv_store_get", 1, Some(2), Arc::new(KvGet(self.kv.clone())));
        opts.register("kv_store_del", 1, Some(1), Arc::new(KvDel(self.kv.clone())));
        opts.register("getenv", 1, Some(1), Arc::new(Getenv::new(&self.getenv_prefix)));
        if let Some(scripts) = &self.scripts {
            for name in scripts.names() {
                let Some(arities) = scripts.arity(name) else { continue };
                let (Some(&min), Some(&max)) = (arities.first(), arities.last()) else {
                    continue;
                };
                if let Some(why) = unreachable_from_sql(name) {
                    tracing::warn!(function = name, "script function not callable from SQL: {why}");
                    continue;
                }
                let f = ScriptFn {
                    scripts: scripts.clone(),
                    name: name.to_string(),
                };
                opts.register(name, min, Some(max), Arc::new(f));
            }
        }
        opts
    }
}

/// Why SQL would never call the script function `name`, if it would not.
fn unreachable_from_sql(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if HOST_FUNCTION_NAMES.contains(&lower.as_str()) {
        return Some("the name of a host function");
    }
    // Whatever the compiler resolves without host functions shadows the script.
    let sql = format!("SELECT {name}() FROM \"t\"");
    match super::compile::compile_sql(&sql) {
        Err(super::compile::RuleSqlError::Compile(e)) if e.kind == CompileErrorKind::UnknownFunction => None,
        Err(super::compile::RuleSqlError::Parse(_)) => Some("not an SQL function name"),
        _ => Some("the name of a built-in function"),
    }
}

// ------------------------------------------------------------------------ scripts

/// A Rhai function, as SQL calls it.
struct ScriptFn {
    scripts: Arc<ScriptFunctions>,
    name: String,
}

impl HostFunction for ScriptFn {
    fn call(&self, args: &[Value], _input: &EvalInput) -> Result<Value, String> {
        // The evaluator names the function; the message starts with the script's position.
        self.scripts.call(&self.name, args).map_err(|e| e.message)
    }
}

// ------------------------------------------------------------------------ kv_store

/// The node-local store of `kv_store_put/get/del`: one per node, shared by every rule, in
/// memory only. Cloning shares it. Keys are compared exactly, like EMQX's ETS table
/// (`1` and `1.0` are different keys; a string and the same bytes are one key).
#[derive(Clone)]
pub struct KvStore {
    inner: Arc<RwLock<KvInner>>,
}

struct KvInner {
    map: HashMap<KvKey, (Value, usize)>,
    /// Approximate bytes of every key and value held.
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.read();
        f.debug_struct("KvStore")
            .field("len", &inner.map.len())
            .field("bytes", &inner.bytes)
            .field("max_entries", &inner.max_entries)
            .field("max_bytes", &inner.max_bytes)
            .finish()
    }
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::new(KV_DEFAULT_MAX_ENTRIES)
    }
}

/// A key as ETS would compare it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KvKey {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Bin(Box<[u8]>),
    /// Arrays and maps, by their JSON text.
    Json(Box<str>),
}

impl KvKey {
    fn of(v: &Value) -> KvKey {
        match v {
            Value::Null => KvKey::Null,
            Value::Bool(b) => KvKey::Bool(*b),
            Value::Int(i) => KvKey::Int(*i),
            Value::Float(x) => KvKey::Float(x.to_bits()),
            Value::Str(s) => KvKey::Bin(s.as_bytes().into()),
            Value::Bytes(b) => KvKey::Bin(b.as_ref().into()),
            Value::Array(_) | Value::Map(_) => KvKey::Json(v.to_json().to_string().into()),
        }
    }

    fn size(&self) -> usize {
        16 + match self {
            KvKey::Bin(b) => b.len(),
            KvKey::Json(s) => s.len(),
            _ => 0,
        }
    }
}

impl KvStore {
    /// A store of at most `max_entries` entries and [`KV_DEFAULT_MAX_BYTES`].
    pub fn new(max_entries: usize) -> KvStore {
        KvStore::with_limits(max_entries, KV_DEFAULT_MAX_BYTES)
    }

    /// A store of at most `max_entries` entries holding about `max_bytes` at most.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> KvStore {
        KvStore {
            inner: Arc::new(RwLock::new(KvInner {
                map: HashMap::new(),
                bytes: 0,
                max_entries,
                max_bytes,
            })),
        }
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &Value) -> Option<Value> {
        self.inner.read().map.get(&KvKey::of(key)).map(|(v, _)| v.clone())
    }

    /// Stores `value` under `key`. Fails, changing nothing, when that would take the store
    /// past its bounds (replacing a value counts only the difference).
    pub fn put(&self, key: &Value, value: Value) -> Result<(), String> {
        let key = KvKey::of(key);
        let size = key.size() + approx_size(&value);
        let mut inner = self.inner.write();
        let old = inner.map.get(&key).map(|(_, s)| *s);
        if old.is_none() && inner.map.len() >= inner.max_entries {
            return Err(format!("the store is full ({} entries)", inner.max_entries));
        }
        let bytes = inner.bytes - old.unwrap_or(0) + size;
        if bytes > inner.max_bytes {
            return Err(format!("the store would exceed {} bytes", inner.max_bytes));
        }
        inner.bytes = bytes;
        inner.map.insert(key, (value, size));
        Ok(())
    }

    /// Removes `key`; whether it was there.
    pub fn del(&self, key: &Value) -> bool {
        let mut inner = self.inner.write();
        match inner.map.remove(&KvKey::of(key)) {
            Some((_, size)) => {
                inner.bytes -= size;
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        let mut inner = self.inner.write();
        inner.map.clear();
        inner.bytes = 0;
    }
}

/// Roughly the memory a value holds.
fn approx_size(v: &Value) -> usize {
    16 + match v {
        Value::Str(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Array(a) => a.iter().map(approx_size).sum(),
        Value::Map(m) => m.iter().map(|(k, v)| 16 + k.len() + approx_size(v)).sum(),
        _ => 0,
    }
}

/// `kv_store_put(Key, Value)`: `true`, as EMQX's `ets:insert/2`.
struct KvPut(KvStore);

impl HostFunction for KvPut {
    fn call(&self, args: &[Value], _input: &EvalInput) -> Result<Value, String> {
        let (Some(key), Some(value)) = (args.first(), args.get(1)) else {
            return Err("expects 2 arguments".to_string());
        };
        self.0.put(key, value.clone())?;
        Ok(Value::Bool(true))
    }
}

/// `kv_store_get(Key[, Default])`: the value, else the default, else `undefined`.
struct KvGet(KvStore);

impl HostFunction for KvGet {
    fn call(&self, args: &[Value], _input: &EvalInput) -> Result<Value, String> {
        let Some(key) = args.first() else {
            return Err("expects 1 or 2 arguments".to_string());
        };
        Ok(self
            .0
            .get(key)
            .unwrap_or_else(|| args.get(1).cloned().unwrap_or_default()))
    }
}

/// `kv_store_del(Key)`: `true` whether or not the key was there, as EMQX's `ets:delete/2`.
struct KvDel(KvStore);

impl HostFunction for KvDel {
    fn call(&self, args: &[Value], _input: &EvalInput) -> Result<Value, String> {
        let Some(key) = args.first() else {
            return Err("expects 1 argument".to_string());
        };
        self.0.del(key);
        Ok(Value::Bool(true))
    }
}

// ------------------------------------------------------------------------ getenv

/// `getenv(Name)`: the variable `<prefix>Name`, read once and then cached for the life of
/// the process (as EMQX does); an unset variable is the empty string, as in EMQX.
pub struct Getenv {
    prefix: String,
}

/// Read variables by full name, process-wide like EMQX's `persistent_term` cache.
static ENV_CACHE: LazyLock<RwLock<HashMap<String, Value>>> = LazyLock::new(RwLock::default);

impl Getenv {
    pub fn new(prefix: &str) -> Getenv {
        Getenv {
            prefix: prefix.to_string(),
        }
    }

    /// The value of `<prefix><name>`.
    pub fn get(&self, name: &str) -> Result<Value, String> {
        if self.prefix.is_empty() {
            return Err("disabled: no variable prefix is configured".to_string());
        }
        let full = format!("{}{name}", self.prefix);
        if let Some(v) = ENV_CACHE.read().get(&full) {
            return Ok(v.clone());
        }
        // `var_os` may panic on these; no such variable can be set anyway.
        let value = if name.is_empty() || full.contains(['=', '\0']) {
            None
        } else {
            std::env::var_os(&full)
        };
        let value = match value.map(|v| v.into_string()) {
            None => Value::str(""),
            Some(Ok(s)) => Value::str(s),
            Some(Err(os)) => Value::Bytes(Bytes::from(os.as_encoded_bytes().to_vec())),
        };
        let mut cache = ENV_CACHE.write();
        if let Some(v) = cache.get(&full) {
            return Ok(v.clone());
        }
        if cache.len() < GETENV_MAX_CACHED {
            cache.insert(full, value.clone());
        }
        Ok(value)
    }
}

impl HostFunction for Getenv {
    fn call(&self, args: &[Value], _input: &EvalInput) -> Result<Value, String> {
        match args.first() {
            Some(Value::Str(s)) => self.get(s),
            Some(Value::Bytes(b)) => match std::str::from_utf8(b) {
                Ok(s) => self.get(s),
                Err(_) => Err("argument 1: not valid UTF-8".to_string()),
            },
            Some(v) => Err(format!("argument 1: expected a string, got {}", v.type_name())),
            None => Err("expects 1 argument".to_string()),
        }
    }
}

// ------------------------------------------------------------------------ jq

/// `jq(Program, Input[, TimeoutMs])`: every output of the jq program on the input, as an
/// array. A string (or binary) input is JSON text; any other value is taken as it is.
pub struct Jq {
    default_timeout: Duration,
}

impl Jq {
    pub fn new(default_timeout: Duration) -> Jq {
        Jq { default_timeout }
    }

    /// Runs `program` on `input` within `timeout`.
    pub fn run(&self, program: &str, input: Value, timeout: Duration) -> Result<Value, String> {
        if program.len() > JQ_MAX_PROGRAM_LEN {
            return Err(format!(
                "the program is {} bytes, over the {JQ_MAX_PROGRAM_LEN}-byte limit",
                program.len()
            ));
        }
        let tokens = count_tokens(program);
        if tokens > JQ_MAX_PROGRAM_TOKENS {
            return Err(format!(
                "the program has about {tokens} tokens, over the limit of {JQ_MAX_PROGRAM_TOKENS}"
            ));
        }
        let timeout = timeout.min(JQ_MAX_TIMEOUT);
        let ms = timeout.as_millis();
        let pool = JQ_POOL.as_ref().map_err(|e| format!("cannot start jq threads: {e}"))?;
        let deadline = Instant::now() + timeout;
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(1);
        let (program, worker_cancel) = (program.to_string(), cancel.clone());
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_program(&program, input, deadline, ms, &worker_cancel)
            }));
            let _ = tx.send(r.unwrap_or_else(|_| Err("jq failed (a bug)".to_string())));
        });
        match pool.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                return Err(format!("too many jq calls waiting ({JQ_MAX_QUEUED})"));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err("the jq threads are gone".to_string()),
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                cancel.store(true, Ordering::Relaxed);
                Err(timed_out(ms))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("jq failed (a bug)".to_string()),
        }
    }
}

impl HostFunction for Jq {
    fn call(&self, args: &[Value], _input: &EvalInput) -> Result<Value, String> {
        let program = match args.first() {
            Some(Value::Str(s)) => s.to_string(),
            Some(Value::Bytes(b)) => std::str::from_utf8(b)
                .map_err(|_| "argument 1: the program is not valid UTF-8".to_string())?
                .to_string(),
            Some(v) => return Err(format!("argument 1: expected a jq program, got {}", v.type_name())),
            None => return Err("expects 2 or 3 arguments".to_string()),
        };
        let timeout = match args.get(2) {
            None => self.default_timeout,
            Some(Value::Int(ms)) if *ms > 0 => Duration::from_millis(u64::try_from(*ms).unwrap_or(u64::MAX)),
            Some(v) => {
                return Err(format!(
                    "argument 3: expected a positive timeout in milliseconds, got {v}"
                ))
            }
        };
        self.run(&program, args.get(1).cloned().unwrap_or_default(), timeout)
    }
}

/// An upper bound on the tokens of a jq program: every run of word characters and every
/// other non-blank character (string contents and comments included, so it over-counts).
fn count_tokens(code: &str) -> usize {
    let word = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'@' | b'.') || c >= 0x80;
    let mut n = 0;
    let mut in_word = false;
    for c in code.bytes() {
        let w = word(c);
        if (w && !in_word) || (!w && !c.is_ascii_whitespace()) {
            n += 1;
        }
        in_word = w;
    }
    n
}

fn timed_out(ms: u128) -> String {
    format!("timed out after {ms} ms")
}

type JqFilter = jaq_core::Filter<JustLut<Val>>;

/// Compiled programs (and compile errors, so a bad program is not recompiled per message).
static JQ_CACHE: LazyLock<Mutex<HashMap<String, CachedProgram>>> = LazyLock::new(Mutex::default);

type CachedProgram = Result<Arc<JqFilter>, Arc<str>>;

/// The compiled `program`, from the cache when it is there.
fn cached_program(program: &str) -> Result<Arc<JqFilter>, String> {
    if let Some(r) = JQ_CACHE.lock().get(program) {
        return r.clone().map_err(|e| e.to_string());
    }
    let compiled = compile_program(program).map(Arc::new).map_err(Arc::<str>::from);
    let mut cache = JQ_CACHE.lock();
    if cache.len() >= JQ_MAX_CACHED {
        // Programs are mostly constants of the rules: dropping any one is good enough.
        if let Some(k) = cache.keys().next().cloned() {
            cache.remove(&k);
        }
    }
    cache.insert(program.to_string(), compiled.clone());
    compiled.map_err(|e| e.to_string())
}

/// Parses and compiles a jq program with jaq's standard library, less `env` (the
/// environment is only readable through `getenv`). Module imports are refused by jaq's
/// default loader.
fn compile_program(code: &str) -> Result<JqFilter, String> {
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs().filter(|(name, ..)| *name != "env"))
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let at = |s: &str| {
        let offset = (s.as_ptr() as usize).wrapping_sub(code.as_ptr() as usize);
        if offset <= code.len() {
            format!(" at byte {offset}")
        } else {
            String::new()
        }
    };
    let modules = Loader::new(defs)
        .load(&arena, File { code, path: () })
        .map_err(|errs| {
            let mut msgs = Vec::new();
            for (_, e) in errs {
                match e {
                    jaq_core::load::Error::Io(es) => msgs.extend(es.into_iter().map(|(p, m)| format!("{p}: {m}"))),
                    jaq_core::load::Error::Lex(es) => msgs.extend(
                        es.into_iter()
                            .map(|(exp, s)| format!("expected {}{}", exp.as_str(), at(s))),
                    ),
                    jaq_core::load::Error::Parse(es) => msgs.extend(es.into_iter().map(|(exp, s)| {
                        let found = if s.is_empty() {
                            "the end".to_string()
                        } else {
                            format!("`{s}`")
                        };
                        format!("expected {}, found {found}{}", exp.as_str(), at(s))
                    })),
                }
            }
            msgs.dedup();
            clip(format!("invalid jq program: {}", msgs.join("; ")))
        })?;
    Compiler::default().with_funs(funs).compile(modules).map_err(|errs| {
        let mut msgs: Vec<String> = errs
            .into_iter()
            .flat_map(|(_, es)| es)
            .map(|(name, undefined)| match undefined {
                jaq_core::compile::Undefined::Filter(arity) => format!("undefined filter `{name}/{arity}`{}", at(name)),
                other => format!("undefined {} `{name}`{}", other.as_str(), at(name)),
            })
            .collect();
        msgs.dedup();
        clip(format!("invalid jq program: {}", msgs.join("; ")))
    })
}

/// One call, on a jq worker: compile (or fetch), convert the input, collect the results.
fn run_program(program: &str, input: Value, deadline: Instant, ms: u128, cancel: &AtomicBool) -> Result<Value, String> {
    // Waited in the queue past its deadline: the caller has given up already.
    if cancel.load(Ordering::Relaxed) || Instant::now() >= deadline {
        return Err(timed_out(ms));
    }
    let filter = cached_program(program)?;
    let input = match &input {
        Value::Str(s) => parse_json(s.as_bytes())?,
        Value::Bytes(b) => parse_json(b)?,
        v => to_val(v, 0)?,
    };
    let ctx = Ctx::<JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut out = Vec::new();
    let mut budget = MAX_OUTPUT;
    for r in filter.id.run((ctx, input)) {
        if cancel.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return Err(timed_out(ms));
        }
        if out.len() >= JQ_MAX_RESULTS {
            return Err(format!("the program yields more than {JQ_MAX_RESULTS} results"));
        }
        let v = r.map_err(|exn| match exn.get_err() {
            Ok(e) => clip(format!("jq error: {e}")),
            // `halt`/`halt_error`: never the process exit jaq's own helpers make of it.
            Err(exn) => match exn.get_halt() {
                Ok(code) => format!("the program halted (exit code {code})"),
                Err(_) => "jq failed (a bug)".to_string(),
            },
        })?;
        out.push(from_val(&v, 0, &mut budget)?);
    }
    Ok(Value::Array(Arc::new(out)))
}

fn parse_json(bytes: &[u8]) -> Result<Val, String> {
    jaq_json::read::parse_single(bytes).map_err(|e| clip(format!("the input is not valid JSON: {e}")))
}

/// Cuts a message to [`MAX_MESSAGE_LEN`] bytes.
fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// A rule value as a jq value. Text bytes that are not UTF-8 become a jq byte string.
fn to_val(v: &Value, depth: usize) -> Result<Val, String> {
    if depth > JQ_MAX_INPUT_DEPTH {
        return Err(format!("the input is nested deeper than {JQ_MAX_INPUT_DEPTH}"));
    }
    Ok(match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Int(i) => Val::Num(Num::from_integral(*i)),
        Value::Float(x) => Val::from(*x),
        Value::Str(s) => Val::utf8_str(Bytes::copy_from_slice(s.as_bytes())),
        Value::Bytes(b) if std::str::from_utf8(b).is_ok() => Val::utf8_str(b.clone()),
        Value::Bytes(b) => Val::byte_str(b.clone()),
        Value::Array(a) => Val::Arr(jaq_json::Rc::new(
            a.iter().map(|x| to_val(x, depth + 1)).collect::<Result<_, _>>()?,
        )),
        Value::Map(m) => {
            let mut obj = jaq_json::Map::default();
            for (k, x) in m.iter() {
                obj.insert(
                    Val::utf8_str(Bytes::copy_from_slice(k.as_bytes())),
                    to_val(x, depth + 1)?,
                );
            }
            Val::obj(obj)
        }
    })
}

/// A jq value as a rule value, charging `budget` about the bytes it takes. Numbers come out
/// as EMQX's JSON round trip gives them: a whole float is an integer (jq prints `50.0` as
/// `50`), NaN is `undefined`, infinities are the largest floats.
fn from_val(v: &Val, depth: usize, budget: &mut usize) -> Result<Value, String> {
    if depth > JQ_MAX_OUTPUT_DEPTH {
        return Err(format!("a result is nested deeper than {JQ_MAX_OUTPUT_DEPTH}"));
    }
    let text_len = match v {
        Val::TStr(b) | Val::BStr(b) => b.len(),
        _ => 0,
    };
    let cost = 16 + text_len;
    if cost > *budget {
        return Err(format!("the results are larger than {MAX_OUTPUT} bytes"));
    }
    *budget -= cost;
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_value(n),
        Val::TStr(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::str(s),
            Err(_) => Value::Bytes(Bytes::clone(b)),
        },
        Val::BStr(b) => Value::Bytes(Bytes::clone(b)),
        Val::Arr(a) => Value::Array(Arc::new(
            a.iter()
                .map(|x| from_val(x, depth + 1, budget))
                .collect::<Result<_, _>>()?,
        )),
        Val::Obj(o) => {
            let mut m = Map::with_capacity_and_hasher(o.len(), Default::default());
            for (k, x) in o.iter() {
                let key: Arc<str> = match k {
                    Val::TStr(b) | Val::BStr(b) => Arc::from(String::from_utf8_lossy(b).as_ref()),
                    // jaq allows any key; jq would refuse it. Keep its text.
                    other => Arc::from(other.to_string()),
                };
                *budget = budget.saturating_sub(key.len());
                m.insert(key, from_val(x, depth + 1, budget)?);
            }
            Value::Map(Arc::new(m))
        }
    })
}

fn num_value(n: &Num) -> Value {
    match n {
        Num::Int(i) => Value::Int(*i as i64),
        Num::BigInt(b) => big_or_dec(&b.to_string()),
        Num::Float(x) => float_value(*x),
        Num::Dec(s) => big_or_dec(s),
    }
}

/// A number kept as text by jaq (a literal, a big integer).
fn big_or_dec(s: &str) -> Value {
    match s.parse::<i64>() {
        Ok(i) => Value::Int(i),
        Err(_) => s.parse::<f64>().map_or(Value::Null, float_value),
    }
}

fn float_value(x: f64) -> Value {
    /// 2^53: past it, not every whole float is a distinct integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.is_nan() {
        Value::Null
    } else if x.is_infinite() {
        Value::Float(if x > 0.0 { f64::MAX } else { f64::MIN })
    } else if x.fract() == 0.0 && x.abs() <= EXACT {
        Value::Int(x as i64)
    } else {
        Value::Float(x)
    }
}

// ------------------------------------------------------------------------ jq workers

type Job = Box<dyn FnOnce() + Send>;

/// Threads with big stacks running the jq calls (jaq recurses over the program and the
/// data). A call stuck in a program that never yields keeps its thread until it ends.
struct JqPool {
    jobs: mpsc::SyncSender<Job>,
}

static JQ_POOL: LazyLock<Result<JqPool, String>> = LazyLock::new(|| {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, JQ_MAX_WORKERS);
    JqPool::start(workers).map_err(|e| e.to_string())
});

impl JqPool {
    fn start(workers: usize) -> std::io::Result<JqPool> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(JQ_MAX_QUEUED);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("jq-{i}"))
                .stack_size(JQ_WORKER_STACK_SIZE)
                .spawn(move || loop {
                    // The lock is held only while waiting, never while a job runs.
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(JqPool { jobs })
    }
}

// jaq values and compiled programs cross threads (the cache is shared by every worker).
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<JqFilter>();
    send_sync::<Val>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compile::{compile_with, CompileError};
    use crate::rules::eval::EvalError;
    use crate::rules::events::EventContext;
    use crate::rules::parse::parse;
    use serde_json::{json, Value as Json};

    fn compile_env(sql: &str, env: &HostEnv) -> Result<crate::rules::compile::CompiledRule, CompileError> {
        compile_with(
            &parse(sql).unwrap_or_else(|e| panic!("{}", e.render(sql))),
            &env.compile_options(),
        )
    }

    /// The outputs of `sql` on a publish of `payload` to `t/1`.
    fn eval_env(sql: &str, env: &HostEnv, payload: &str) -> Result<Vec<Json>, EvalError> {
        let rule = compile_env(sql, env).unwrap_or_else(|e| panic!("{}", e.render(sql)));
        let input = EvalInput::new(EventContext::from_sample(
            "t/1",
            payload.to_string(),
            Some("c1"),
            None,
            0,
        ));
        rule.eval(&input).map(|out| out.iter().map(Value::to_json).collect())
    }

    /// The single output of a SELECT.
    fn select(sql: &str, env: &HostEnv, payload: &str) -> Json {
        let mut out = eval_env(sql, env, payload).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(out.len(), 1, "{sql}");
        out.remove(0)
    }

    fn eval_err(sql: &str, env: &HostEnv, payload: &str) -> String {
        match eval_env(sql, env, payload) {
            Err(e) => e.to_string(),
            Ok(out) => panic!("{sql} gave {out:?}"),
        }
    }

    fn json_value(j: Json) -> Value {
        Value::from_json(&j)
    }

    #[test]
    fn host_names_clash_with_no_builtin() {
        for name in HOST_FUNCTION_NAMES {
            assert!(crate::rules::functions::lookup(name).is_none(), "{name}");
            assert_eq!(unreachable_from_sql(&format!("x{name}")), None);
        }
    }

    #[test]
    fn jq_docs_examples() {
        let env = HostEnv::default();
        let o = select(
            "SELECT jq('.', '{\"temperature\": 10}') AS a, \
                    jq('.', json_decode('{\"temperature\": 10}')) AS b, \
                    jq('.temperature', '{\"temperature\": 10}') AS c, \
                    jq('{temperature_C:.temperature, temperature_F: (.temperature * 1.8 + 32)}', \
                       '{\"temperature\": 10}') AS d, \
                    jq('.temperature,(.temperature * 1.8 + 32)', '{\"temperature\": 10}') AS e \
             FROM \"t/#\"",
            &env,
            "{}",
        );
        assert_eq!(o["a"], json!([{"temperature": 10}]));
        assert_eq!(o["b"], json!([{"temperature": 10}]));
        assert_eq!(o["c"], json!([10]));
        assert_eq!(o["d"], json!([{"temperature_C": 10, "temperature_F": 50}]));
        assert_eq!(o["e"], json!([10, 50]));
    }

    #[test]
    fn jq_on_payload_and_values() {
        let env = HostEnv::default();
        let o = select(
            "SELECT jq('.a', payload) AS a, jq('.[] | . * 2', '[1,2]') AS doubled, \
                    jq('.b.c', payload.obj) AS from_value, jq('empty', payload) AS none, \
                    jq('.[0]', payload.obj.b.c, 5000) AS with_timeout, jq('@base64d', '\"aGk=\"') AS text \
             FROM \"t/#\"",
            &env,
            r#"{"a": [1, 2.5, "x", null, true], "obj": {"b": {"c": [7, 8]}}}"#,
        );
        assert_eq!(o["a"], json!([[1, 2.5, "x", null, true]]));
        assert_eq!(o["doubled"], json!([2, 4]));
        assert_eq!(o["from_value"], json!([[7, 8]]));
        assert_eq!(o["none"], json!([]));
        assert_eq!(o["with_timeout"], json!([7]));
        assert_eq!(o["text"], json!(["hi"]));
    }

    #[test]
    fn jq_splits_a_payload_with_foreach() {
        // rule-sql-jq.md: the average of each sensor without its outliers.
        let sql = "FOREACH jq('def rem_first: if length > 2 then del(.[0]) else . end; \
                               def rem_last: if length > 1 then del(.[-1]) else . end; \
                               .date as $date | .sensors[] | \
                               (.data | sort | rem_first | rem_last | add / length) as $average | \
                               {$average, $date}', payload) \
                   FROM \"jq_demo/#\"";
        let payload = r#"{"date": "2020-04-24", "sensors": [
            {"name": "a", "data": [3, 2, 4, 5]}, {"name": "b", "data": [1, 1, 1, 1, 1, 7]}]}"#;
        let out = eval_env(sql, &HostEnv::default(), payload).unwrap();
        let items: Vec<&Json> = out.iter().map(|o| &o["item"]).collect();
        assert_eq!(
            items,
            [
                &json!({"average": 3.5, "date": "2020-04-24"}),
                &json!({"average": 1, "date": "2020-04-24"})
            ]
        );
    }

    #[test]
    fn jq_errors_are_messages() {
        let env = HostEnv::default();
        let e = eval_err("SELECT jq('.[', '1') AS x FROM \"t\"", &env, "");
        assert!(e.contains("jq: invalid jq program: expected"), "{e}");
        let e = eval_err("SELECT jq('nosuchfn(1)', '1') AS x FROM \"t\"", &env, "");
        assert!(e.contains("undefined filter `nosuchfn/1`"), "{e}");
        let e = eval_err("SELECT jq('error(\"boom\")', '1') AS x FROM \"t\"", &env, "");
        assert!(e.contains("jq error: \"boom\""), "{e}");
        let e = eval_err("SELECT jq('.a', '[1]') AS x FROM \"t\"", &env, "");
        assert!(e.contains("jq error: cannot index"), "{e}");
        let e = eval_err("SELECT jq('.', 'not json') AS x FROM \"t\"", &env, "");
        assert!(e.contains("the input is not valid JSON"), "{e}");
        let e = eval_err("SELECT jq(1, '1') AS x FROM \"t\"", &env, "");
        assert!(e.contains("argument 1: expected a jq program, got integer"), "{e}");
        let e = eval_err("SELECT jq('.', '1', 0) AS x FROM \"t\"", &env, "");
        assert!(e.contains("argument 3"), "{e}");
        // The environment is not readable through jq, and halting does not end the process.
        let e = eval_err("SELECT jq('env', 'null') AS x FROM \"t\"", &env, "");
        assert!(e.contains("undefined filter `env/0`"), "{e}");
        let e = eval_err("SELECT jq('halt_error(3)', '1') AS x FROM \"t\"", &env, "");
        assert!(e.contains("halted (exit code 3)"), "{e}");
        assert!(compile_env("SELECT jq('.') AS x FROM \"t\"", &env).is_err());
    }

    #[test]
    fn jq_bounds_results_time_and_depth() {
        let jq = Jq::new(JQ_DEFAULT_TIMEOUT);
        let e = jq.run("range(20000)", Value::Null, JQ_DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.contains("more than 10000 results"), "{e}");
        let e = jq
            .run("reduce range(200) as $i (null; [.])", Value::Null, JQ_DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(e.contains("nested deeper than 128"), "{e}");
        let e = jq
            .run("[range(20) | \"x\" * 1000000]", Value::Null, JQ_DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        // Slow results: the caller gets its answer on time, the worker stops at the next one.
        let t = Instant::now();
        let slow = "range(1000) | reduce range(100000) as $i (0; . + $i)";
        let e = jq.run(slow, Value::Null, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e, "timed out after 50 ms");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let e = jq
            .run(&" ".repeat(JQ_MAX_PROGRAM_LEN + 1), Value::Null, JQ_DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(e.contains("byte limit"), "{e}");
        let e = jq
            .run(&"-".repeat(JQ_MAX_PROGRAM_TOKENS + 1), Value::Null, JQ_DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(e.contains("tokens, over the limit"), "{e}");
        // The deepest nesting the token limit allows fits the workers' stacks (debug build).
        let n = JQ_MAX_PROGRAM_TOKENS / 2 - 1;
        let deep = format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(
            jq.run(&deep, Value::Null, JQ_DEFAULT_TIMEOUT),
            Ok(json_value(json!([1])))
        );
        let deep = format!("{}1", "-".repeat(JQ_MAX_PROGRAM_TOKENS - 1));
        assert_eq!(
            jq.run(&deep, Value::Null, JQ_DEFAULT_TIMEOUT),
            Ok(json_value(json!([-1])))
        );
        let e = jq
            .run(&"(".repeat(JQ_MAX_PROGRAM_TOKENS), Value::Null, JQ_DEFAULT_TIMEOUT)
            .unwrap_err();
        assert!(e.contains("expected closing parenthesis"), "{e}");
        let deep = format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let e = jq.run(&deep, Value::Null, JQ_DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.contains("nested deeper than 128"), "{e}");
    }

    #[test]
    fn jq_programs_compile_once() {
        let a = cached_program(". + 12345").unwrap();
        let b = cached_program(". + 12345").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(cached_program(". +").is_err());
        assert!(cached_program(". +").is_err());
    }

    #[test]
    fn jq_values_convert_both_ways() {
        let jq = Jq::new(JQ_DEFAULT_TIMEOUT);
        let mut m = Map::default();
        m.insert(Arc::from("k"), Value::Float(1.5));
        m.insert(Arc::from("raw"), Value::Bytes(Bytes::from_static(&[0xff, 0x00])));
        let input = Value::Array(Arc::new(vec![
            Value::Int(i64::MAX),
            Value::Map(Arc::new(m)),
            Value::Null,
        ]));
        let out = jq.run(".", input.clone(), JQ_DEFAULT_TIMEOUT).unwrap();
        assert_eq!(out, Value::Array(Arc::new(vec![input])));
        let out = jq
            .run(
                "1e400, -1e400, nan, 12345678901234567890, 0.1, {(1): 2}",
                Value::Null,
                JQ_DEFAULT_TIMEOUT,
            )
            .unwrap();
        assert_eq!(
            out.to_json(),
            json!([f64::MAX, f64::MIN, null, 12345678901234567890.0, 0.1, {"1": 2}])
        );
    }

    #[test]
    fn kv_store_round_trip_shared_by_rules() {
        let env = HostEnv {
            kv: KvStore::new(3),
            ..HostEnv::default()
        };
        let o = select(
            "SELECT kv_store_put('k', payload.v) AS p, kv_store_get('k') AS g, kv_store_get('nope') AS m, \
                    kv_store_get('nope', 'dflt') AS d, kv_store_put(1, 'one') AS p1 \
             FROM \"t/#\"",
            &env,
            r#"{"v": {"x": [1, 2]}}"#,
        );
        assert_eq!(
            o,
            json!({"p": true, "g": {"x": [1, 2]}, "m": null, "d": "dflt", "p1": true})
        );
        // Another rule, compiled from another set of options over the same store.
        let again = HostEnv {
            kv: env.kv.clone(),
            ..HostEnv::default()
        };
        let o = select(
            "SELECT kv_store_get('k') AS g, kv_store_get(1) AS one, kv_store_get(1.0) AS float_key, \
                    kv_store_del('k') AS del, kv_store_get('k', 0) AS gone, kv_store_del('k') AS del2 \
             FROM \"t/#\"",
            &again,
            "",
        );
        assert_eq!(
            o,
            json!({"g": {"x": [1, 2]}, "one": "one", "float_key": null, "del": true, "gone": 0, "del2": true})
        );
        assert_eq!(env.kv.len(), 1);
    }

    #[test]
    fn kv_store_is_bounded() {
        let kv = KvStore::new(2);
        kv.put(&Value::str("a"), Value::Int(1)).unwrap();
        kv.put(&Value::str("b"), Value::Int(2)).unwrap();
        assert!(kv.put(&Value::str("c"), Value::Int(3)).unwrap_err().contains("full"));
        kv.put(&Value::str("a"), Value::Int(10)).unwrap();
        assert_eq!(kv.get(&Value::Bytes(Bytes::from_static(b"a"))), Some(Value::Int(10)));
        let env = HostEnv {
            kv: kv.clone(),
            ..HostEnv::default()
        };
        let e = eval_err("SELECT kv_store_put('c', 3) AS p FROM \"t\"", &env, "");
        assert!(e.contains("kv_store_put: the store is full (2 entries)"), "{e}");
        assert!(kv.del(&Value::str("a")));
        assert!(!kv.del(&Value::str("a")));

        let kv = KvStore::with_limits(100, 1000);
        assert!(kv.put(&Value::Int(1), Value::str("x".repeat(2000))).is_err());
        kv.put(&Value::Int(1), Value::str("x".repeat(500))).unwrap();
        kv.put(&Value::Int(1), Value::str("x".repeat(600))).unwrap();
        kv.clear();
        assert!(kv.is_empty());
    }

    #[test]
    fn getenv_reads_only_prefixed_variables_once() {
        std::env::set_var("EMQXVAR_JUNCTION_HOSTFNS_T1", "v1");
        std::env::set_var("JUNCTION_HOSTFNS_SECRET", "secret");
        std::env::set_var("JHFTEST_JUNCTION_HOSTFNS_T2", "v2");
        let env = HostEnv::default();
        let o = select(
            "SELECT getenv('JUNCTION_HOSTFNS_T1') AS a, getenv('JUNCTION_HOSTFNS_SECRET') AS secret, \
                    getenv('JUNCTION_HOSTFNS_UNSET') AS unset, getenv('') AS empty, getenv('A=B') AS eq \
             FROM \"t/#\"",
            &env,
            "",
        );
        assert_eq!(o, json!({"a": "v1", "secret": "", "unset": "", "empty": "", "eq": ""}));
        // Cached at first use.
        std::env::set_var("EMQXVAR_JUNCTION_HOSTFNS_T1", "changed");
        assert_eq!(Getenv::new("EMQXVAR_").get("JUNCTION_HOSTFNS_T1"), Ok(Value::str("v1")));

        let custom = HostEnv {
            getenv_prefix: "JHFTEST_".to_string(),
            ..HostEnv::default()
        };
        let o = select("SELECT getenv('JUNCTION_HOSTFNS_T2') AS b FROM \"t\"", &custom, "");
        assert_eq!(o, json!({"b": "v2"}));
        let off = HostEnv {
            getenv_prefix: String::new(),
            ..HostEnv::default()
        };
        let e = eval_err("SELECT getenv('JUNCTION_HOSTFNS_SECRET') AS s FROM \"t\"", &off, "");
        assert!(e.contains("getenv: disabled"), "{e}");
        let e = eval_err("SELECT getenv(1) AS s FROM \"t\"", &env, "");
        assert!(e.contains("expected a string"), "{e}");
    }

    #[test]
    fn rhai_functions_are_callable_from_sql() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("f.rhai"),
            "fn f2c(f) { (f - 32.0) * 5.0 / 9.0 }\n\
             fn add(a, b) { a + b }\n\
             fn add(a, b, c) { a + b + c }\n\
             fn fail(x) { throw \"nope\"; }\n\
             fn getenv(x) { 1 }\n\
             fn topic(a, b) { 2 }\n",
        )
        .unwrap();
        let scripts = ScriptFunctions::load(dir.path()).unwrap();
        let env = HostEnv {
            scripts: Some(Arc::new(scripts)),
            ..HostEnv::default()
        };
        let o = select(
            "SELECT f2c(payload.t) AS c, add(1, 2) AS s2, ADD(1, 2, 3) AS s3, getenv('JUNCTION_HOSTFNS_UNSET2') AS g \
             FROM \"t/#\"",
            &env,
            r#"{"t": 212}"#,
        );
        assert_eq!(o, json!({"c": 100.0, "s2": 3, "s3": 6, "g": ""}));
        let e = eval_err("SELECT fail(1) AS x FROM \"t\"", &env, "");
        assert!(e.contains("fail: ") && e.contains("nope"), "{e}");
        let e = compile_env("SELECT add(1) AS x FROM \"t\"", &env).unwrap_err();
        assert_eq!(e.kind, CompileErrorKind::Arity);
        assert_eq!(e.to_string(), "1:8: `add` takes 2 to 3 arguments, got 1");
        // `topic` is a message accessor: the script's `topic/2` is not registered.
        assert_eq!(
            compile_env("SELECT topic(1, 2) AS x FROM \"t\"", &env)
                .unwrap_err()
                .kind,
            CompileErrorKind::Arity
        );
    }

    #[test]
    fn unknown_functions_still_fail_to_compile() {
        let e = compile_env("SELECT jqq('.', payload) AS x FROM \"t\"", &HostEnv::default()).unwrap_err();
        assert_eq!(e.kind, CompileErrorKind::UnknownFunction);
        assert_eq!(e.help.as_deref(), Some("did you mean `jq`?"));
        let e = compile_env("SELECT kv_store_get() AS x FROM \"t\"", &HostEnv::default()).unwrap_err();
        assert_eq!(e.kind, CompileErrorKind::Arity);
    }
}

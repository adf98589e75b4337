//! Custom rule SQL functions written in [Rhai](https://rhai.rs) (issue 4, point 4).
//!
//! Every `*.rhai` file of a folder (`functions/` by default) is compiled once at load;
//! each public `fn name(a, b) { ... }` it defines becomes callable from rule SQL as
//! `name(a, b)`. Names are matched ignoring ASCII case, like the built-ins, and may not
//! shadow a built-in function or a function of another file. A file may overload a name
//! by arity (`fn f(a)` and `fn f(a, b)`). `private fn` helpers are callable only from
//! their own file; functions in different files cannot call each other. Top-level
//! statements are never run (a Rhai function cannot see top-level variables anyway).
//!
//! The engine is a sandbox: [`Engine::new_raw`] plus the language packages only (no
//! `eval`, no module `import`, no time functions, no `sleep`, no `parse_json`, no file or
//! network access of any kind: the `no_module` feature removes the file resolver; no
//! closures or `curry`, whose captured values Rhai's size limits do not see), with the
//! limits below on every call, including a wall-clock [`MAX_CALL_TIME`]. `print`/`debug`
//! go to `tracing`, never to stdout. A script error or a limit hit is an [`FnError`] that
//! fails that one rule evaluation; it never panics and never hangs the caller.
//!
//! Calls run on a small pool of big-stack threads (`Pool`: Rhai recurses over nested
//! data, and the size limits allow nesting that would overflow a 2 MiB stack and abort the
//! process), unless the calling thread has declared a big stack ([`declare_big_stack`]).
//! Known gap: Rhai checks an index assignment (`m[k] = v`) against the size limits for
//! `v` only, so a script can grow a container past them within its operation and time
//! budget (memory, not stack).
//!
//! [`ScriptFunctions`] is cheap to clone and `Send + Sync` (the engine and the compiled
//! scripts are shared through `Arc`), so one loaded set serves every evaluating thread.
//!
//! Must not: read files after [`ScriptFunctions::load`], or know about rules, events or
//! connectors.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicBlobPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, BitFieldPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, FnAccess, ImmutableString, Position, Scope, AST};

use super::functions::{self, FnError};
use super::value::{Map, Value};

/// Most Rhai operations one call may perform (an infinite loop stops here).
pub const MAX_OPERATIONS: u64 = 100_000;
/// Deepest function-call nesting (recursion) within one call.
pub const MAX_CALL_LEVELS: usize = 32;
/// Deepest expression nesting at top level and inside a function body (checked at load).
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_FUNCTION_EXPR_DEPTH: usize = 32;
/// Longest string a script may build, in bytes.
pub const MAX_STRING_SIZE: usize = 1 << 20;
/// Most elements in a script-built array or blob (nested arrays count all their elements).
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Most properties in a script-built object map (nested maps count all their properties).
pub const MAX_MAP_SIZE: usize = 10_000;
/// Most variables alive at once within one call.
pub const MAX_VARIABLES: usize = 256;
/// Longest wall-clock time one call may run. A backstop for operations that are cheap to
/// count but slow to run (cloning a 10_000-element array is one operation).
pub const MAX_CALL_TIME: Duration = Duration::from_millis(500);
/// Most threads running script calls (fewer on machines with fewer cores).
pub const MAX_WORKERS: usize = 16;
/// Stack reserved for each of those threads (see `Pool`).
pub const WORKER_STACK_SIZE: usize = 64 << 20;
/// Largest script file accepted.
pub const MAX_FILE_SIZE: u64 = 1 << 20;
/// Deepest array/map nesting converted between rule values and Rhai values.
pub const MAX_VALUE_DEPTH: usize = 128;

/// The `tracing` target of script `print` and `debug` output.
const LOG_TARGET: &str = "junction::rules::script";

/// What went wrong while loading the scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScriptErrorKind {
    /// The folder or a file could not be read, or a file is over [`MAX_FILE_SIZE`].
    Io,
    /// The script does not compile (includes forbidden features: `eval`, `import`, ...).
    Syntax,
    /// A function has the name of a built-in rule SQL function.
    BuiltinClash,
    /// Two files (or two spellings differing only in case) define the same function name.
    Duplicate,
}

/// A script could not be loaded. `Display` is `file:line:col: message` (without `line:col`
/// when the error has no position, e.g. an unreadable file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), fmt_pos(*line, *col))]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    pub file: PathBuf,
    /// 1-based; 0 when there is no position.
    pub line: usize,
    /// 1-based; 0 when there is no position.
    pub col: usize,
    pub message: String,
}

fn fmt_pos(line: usize, col: usize) -> String {
    match (line, col) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}

impl ScriptError {
    fn new(kind: ScriptErrorKind, file: &Path, pos: (usize, usize), message: impl Into<String>) -> Self {
        ScriptError {
            kind,
            file: file.to_path_buf(),
            line: pos.0,
            col: pos.1,
            message: message.into(),
        }
    }
}

/// One SQL-callable function name: the file defining it and the arities it accepts.
struct ScriptFn {
    /// The name as the script spells it (what Rhai calls).
    name: Arc<str>,
    /// Interned for [`FnError::function`].
    static_name: &'static str,
    file: Arc<Path>,
    ast: Arc<AST>,
    /// Sorted, distinct.
    arities: Vec<usize>,
}

/// The custom functions of a folder of Rhai scripts, compiled and ready to call.
#[derive(Clone)]
pub struct ScriptFunctions {
    engine: Arc<Engine>,
    /// Keyed by the lowercase name.
    fns: Arc<HashMap<String, ScriptFn>>,
    /// Where calls run; `None` when there are no functions.
    pool: Option<Arc<Pool>>,
}

impl Default for ScriptFunctions {
    /// No functions.
    fn default() -> Self {
        ScriptFunctions {
            engine: Arc::new(sandbox_engine()),
            fns: Arc::default(),
            pool: None,
        }
    }
}

impl fmt::Debug for ScriptFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptFunctions").field("names", &self.names()).finish()
    }
}

impl ScriptFunctions {
    /// Compiles every `*.rhai` file of `dir` (not recursive, in file-name order). A missing
    /// folder means no functions. The first bad file stops the load.
    pub fn load(dir: &Path) -> Result<ScriptFunctions, ScriptError> {
        let io_err =
            |file: &Path, e: std::io::Error| ScriptError::new(ScriptErrorKind::Io, file, (0, 0), e.to_string());
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ScriptFunctions::default()),
            Err(e) => return Err(io_err(dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| io_err(dir, e))?.path();
            if path.extension().is_some_and(|x| x == "rhai") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();

        let engine = sandbox_engine();
        let mut fns: HashMap<String, ScriptFn> = HashMap::new();
        for path in files {
            let len = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?.len();
            if len > MAX_FILE_SIZE {
                return Err(ScriptError::new(
                    ScriptErrorKind::Io,
                    &path,
                    (0, 0),
                    format!("script is {len} bytes, over the {MAX_FILE_SIZE}-byte limit"),
                ));
            }
            let source = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
            let mut ast = engine.compile(&source).map_err(|e| {
                ScriptError::new(
                    ScriptErrorKind::Syntax,
                    &path,
                    pos_of(e.position()),
                    e.err_type().to_string(),
                )
            })?;
            ast.clear_statements();
            ast.set_source(path.display().to_string());
            let ast = Arc::new(ast);
            let file: Arc<Path> = Arc::from(path.as_path());

            let mut arities: HashMap<&str, Vec<usize>> = HashMap::new();
            for meta in ast.iter_functions() {
                if meta.access == FnAccess::Private || meta.this_type.is_some() {
                    continue;
                }
                arities.entry(meta.name).or_default().push(meta.params.len());
            }
            let mut names: Vec<&str> = arities.keys().copied().collect();
            names.sort_unstable();
            for name in names {
                let at = fn_position(&source, name);
                if let Some(def) = functions::lookup(name) {
                    return Err(ScriptError::new(
                        ScriptErrorKind::BuiltinClash,
                        &path,
                        at,
                        format!("function `{name}` clashes with the built-in function `{}`", def.name),
                    ));
                }
                let key = name.to_ascii_lowercase();
                if let Some(prev) = fns.get(&key) {
                    let where_ = if *prev.file == *path {
                        "earlier in this file".to_string()
                    } else {
                        format!("in {}", prev.file.display())
                    };
                    return Err(ScriptError::new(
                        ScriptErrorKind::Duplicate,
                        &path,
                        at,
                        format!("function `{name}` is already defined {where_} (as `{}`)", prev.name),
                    ));
                }
                let mut a = arities.remove(name).unwrap_or_default();
                a.sort_unstable();
                a.dedup();
                fns.insert(
                    key,
                    ScriptFn {
                        name: Arc::from(name),
                        static_name: intern(name),
                        file: file.clone(),
                        ast: ast.clone(),
                        arities: a,
                    },
                );
            }
        }
        let pool = if fns.is_empty() {
            None
        } else {
            let workers = std::thread::available_parallelism()
                .map_or(4, |n| n.get())
                .min(MAX_WORKERS);
            let pool = Pool::start(workers).map_err(|e| {
                ScriptError::new(
                    ScriptErrorKind::Io,
                    dir,
                    (0, 0),
                    format!("cannot start script threads: {e}"),
                )
            })?;
            Some(Arc::new(pool))
        };
        Ok(ScriptFunctions {
            engine: Arc::new(engine),
            fns: Arc::new(fns),
            pool,
        })
    }

    /// The function names, as the scripts spell them, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.fns.values().map(|f| &*f.name).collect();
        v.sort_unstable();
        v
    }

    pub fn is_empty(&self) -> bool {
        self.fns.is_empty()
    }

    /// Whether `name` (any case) is a script function.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The argument counts `name` accepts (sorted), or `None` if there is no such function.
    pub fn arity(&self, name: &str) -> Option<Vec<usize>> {
        self.get(name).map(|f| f.arities.clone())
    }

    /// Calls `name` with `args` under the sandbox limits. A wrong argument count, a script
    /// error, a limit hit or an unconvertible result is an [`FnError`] whose message starts
    /// with the script's `file:line:col`.
    pub fn call(&self, name: &str, args: &[Value]) -> Result<Value, FnError> {
        let Some(f) = self.get(name) else {
            return Err(FnError {
                function: "script",
                message: format!("no script function `{name}`"),
            });
        };
        let fn_err = |message: String| FnError {
            function: f.static_name,
            message,
        };
        if !f.arities.contains(&args.len()) {
            let expected: Vec<String> = f.arities.iter().map(usize::to_string).collect();
            return Err(fn_err(format!(
                "expects {} argument(s), got {}",
                expected.join(" or "),
                args.len()
            )));
        }
        if BIG_STACK.get() {
            return run_call(&self.engine, &f.ast, &f.name, &f.file, args).map_err(fn_err);
        }
        let Some(pool) = &self.pool else {
            return Err(fn_err("no script threads".to_string()));
        };
        let (engine, ast, name, file) = (self.engine.clone(), f.ast.clone(), f.name.clone(), f.file.clone());
        let args = args.to_vec();
        pool.run(move || run_call(&engine, &ast, &name, &file, &args))
            .unwrap_or_else(|| Err("the script thread failed (a bug)".to_string()))
            .map_err(fn_err)
    }

    fn get(&self, name: &str) -> Option<&ScriptFn> {
        self.fns
            .get(name)
            .or_else(|| self.fns.get(name.to_ascii_lowercase().as_str()))
    }
}

thread_local! {
    /// When the call running on this thread must stop (see [`MAX_CALL_TIME`]).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether this thread has at least [`WORKER_STACK_SIZE`] of stack (see [`declare_big_stack`]).
    static BIG_STACK: Cell<bool> = const { Cell::new(false) };
}

/// Declares that the current thread was spawned with at least [`WORKER_STACK_SIZE`] of
/// stack, so [`ScriptFunctions::call`] runs scripts right here instead of handing them to
/// its pool: ~0.4 µs instead of ~20 µs for a small function (release build). For example
/// tokio workers built with `.thread_stack_size(WORKER_STACK_SIZE)` and
/// `.on_thread_start(declare_big_stack)`. Declaring it on a smaller stack lets a script
/// that nests data deeply overflow it, which aborts the process.
pub fn declare_big_stack() {
    BIG_STACK.set(true);
}

/// One call, on a pool thread: convert the arguments, run, convert the result. Every Rhai
/// value is created and dropped here, on the big stack.
fn run_call(engine: &Engine, ast: &AST, name: &str, file: &Path, args: &[Value]) -> Result<Value, String> {
    let mut rhai_args = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        rhai_args.push(to_dynamic(a, 0).map_err(|m| format!("argument {}: {m}", i + 1))?);
    }
    let mut scope = Scope::new();
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    DEADLINE.set(Some(Instant::now() + MAX_CALL_TIME));
    let out = engine.call_fn_with_options::<Dynamic>(options, &mut scope, ast, name, rhai_args);
    DEADLINE.set(None);
    let out = out.map_err(|e| describe(file, name, *e))?;
    from_dynamic(out, 0).map_err(|m| format!("{}: result: {m}", file.display()))
}

/// Threads with big stacks that run the calls. Rhai clones, compares and drops nested
/// arrays and maps recursively, and its size limits only bound the nesting depth to
/// [`MAX_ARRAY_SIZE`] + [`MAX_MAP_SIZE`] levels: up to ~28 MiB of stack in a debug build
/// (~1.4 KiB a level), far past the 2 MiB of a tokio worker, where the overflow would
/// abort the broker. The stacks are reserved, not committed: only the pages a call touches
/// cost memory. The threads end when the last clone of the [`ScriptFunctions`] is dropped.
struct Pool {
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Pool {
    fn start(workers: usize) -> std::io::Result<Pool> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("rhai-fn-{i}"))
                .stack_size(WORKER_STACK_SIZE)
                .spawn(move || loop {
                    BIG_STACK.set(true);
                    // The lock is held only while waiting, never while a job runs.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Pool { jobs })
    }

    /// Runs `f` on a pool thread and waits for it; `None` if it panicked (a bug).
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        });
        self.jobs.send(job).ok()?;
        rx.recv().ok()?.ok()
    }
}

/// The sandboxed engine: language packages only, every limit set, `eval` disabled,
/// `print`/`debug` to tracing, unknown variables a load error.
fn sandbox_engine() -> Engine {
    let mut engine = Engine::new_raw();
    // Not `CorePackage`/`StandardPackage`: they bring `sleep` (blocks the thread without
    // counting operations), `exit`, `parse_json` and the clock.
    let packages = [
        ArithmeticPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
        BasicFnPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BitFieldPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicBlobPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
    ];
    for p in packages {
        engine.register_global_module(p);
    }
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FUNCTION_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_variables(MAX_VARIABLES)
        .set_strict_variables(true)
        .disable_symbol("eval")
        .disable_symbol("curry");
    engine.on_progress(|ops| {
        if ops % 1024 != 0 {
            return None;
        }
        let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t));
        late.then_some(Dynamic::UNIT)
    });
    engine.on_print(|s| tracing::info!(target: LOG_TARGET, "{s}"));
    engine.on_debug(|s, src, pos| {
        tracing::debug!(target: LOG_TARGET, source = src.unwrap_or(""), line = pos.line().unwrap_or(0), "{s}");
    });
    engine
}

/// `(line, col)`, 0 for unknown.
fn pos_of(pos: Position) -> (usize, usize) {
    (pos.line().unwrap_or(0), pos.position().unwrap_or(0))
}

/// Where `fn name(` is defined in `source` (a best effort: Rhai's function metadata has no position).
fn fn_position(source: &str, name: &str) -> (usize, usize) {
    for (i, line) in source.lines().enumerate() {
        let mut from = 0;
        while let Some(at) = line[from..].find("fn ") {
            let start = from + at;
            let before_ok = start == 0 || !is_ident_char(line[..start].chars().next_back().unwrap_or(' '));
            let rest = line[start + 3..].trim_start();
            if before_ok && rest.strip_prefix(name).is_some_and(|r| r.trim_start().starts_with('(')) {
                return (i + 1, line[..start].chars().count() + 1);
            }
            from = start + 3;
        }
    }
    (0, 0)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `file:line:col: message`, from the innermost error of a Rhai call chain, with the
/// innermost function named when it is not the one SQL called.
fn describe(file: &Path, called: &str, err: EvalAltResult) -> String {
    let mut e = err;
    let mut in_fn = None;
    while let EvalAltResult::ErrorInFunctionCall(name, _, inner, _) = e {
        in_fn = Some(name);
        e = *inner;
    }
    let (line, col) = pos_of(e.take_position());
    let what = match e {
        EvalAltResult::ErrorTerminated(..) => format!("Time limit exceeded ({} ms)", MAX_CALL_TIME.as_millis()),
        e => e.to_string(),
    };
    let mut msg = format!("{}{}: {what}", file.display(), fmt_pos(line, col));
    if let Some(name) = in_fn.filter(|n| n != called) {
        msg.push_str(&format!(" (in `{name}`)"));
    }
    msg
}

/// A `&'static str` for [`FnError::function`], leaked once per distinct name for the life
/// of the process (reloads reuse it).
fn intern(name: &str) -> &'static str {
    static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(Mutex::default);
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = names.get(name) {
        return s;
    }
    let s: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(s);
    s
}

/// A rule value as a Rhai value.
fn to_dynamic(v: &Value, depth: usize) -> Result<Dynamic, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("nested deeper than {MAX_VALUE_DEPTH}"));
    }
    Ok(match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Int(i) => Dynamic::from_int(*i),
        Value::Float(x) => Dynamic::from_float(*x),
        Value::Str(s) => Dynamic::from(ImmutableString::from(&**s)),
        Value::Bytes(b) => Dynamic::from_blob(b.to_vec()),
        Value::Array(a) => Dynamic::from_array(a.iter().map(|x| to_dynamic(x, depth + 1)).collect::<Result<_, _>>()?),
        Value::Map(m) => Dynamic::from_map(
            m.iter()
                .map(|(k, x)| Ok((k.as_ref().into(), to_dynamic(x, depth + 1)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// A Rhai value as a rule value (maps come back in key order: Rhai maps are sorted).
fn from_dynamic(d: Dynamic, depth: usize) -> Result<Value, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("nested deeper than {MAX_VALUE_DEPTH}"));
    }
    let d = d.flatten();
    if d.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = d.as_int() {
        return Ok(Value::Int(i));
    }
    if let Ok(x) = d.as_float() {
        return Ok(Value::Float(x));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::str(c.to_string()));
    }
    if d.is_string() {
        let s = d.into_immutable_string().map_err(str::to_string)?;
        return Ok(Value::str(s.as_str()));
    }
    if d.is_blob() {
        return Ok(Value::Bytes(Bytes::from(d.into_blob().map_err(str::to_string)?)));
    }
    if d.is_array() {
        let a = d.into_array().map_err(str::to_string)?;
        return Ok(Value::Array(Arc::new(
            a.into_iter()
                .map(|x| from_dynamic(x, depth + 1))
                .collect::<Result<_, _>>()?,
        )));
    }
    if d.is_map() {
        let type_name = d.type_name();
        let m = d
            .try_cast::<rhai::Map>()
            .ok_or_else(|| format!("unsupported type {type_name}"))?;
        let mut out = Map::with_capacity_and_hasher(m.len(), Default::default());
        for (k, x) in m {
            out.insert(Arc::from(k.as_str()), from_dynamic(x, depth + 1)?);
        }
        return Ok(Value::Map(Arc::new(out)));
    }
    Err(format!("unsupported type {}", d.type_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn load(files: &[(&str, &str)]) -> Result<ScriptFunctions, ScriptError> {
        let dir = folder(files);
        ScriptFunctions::load(dir.path())
    }

    fn load_ok(files: &[(&str, &str)]) -> ScriptFunctions {
        load(files).unwrap_or_else(|e| panic!("load failed: {e}"))
    }

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(Arc::new(
            pairs.iter().map(|(k, v)| (Arc::from(*k), v.clone())).collect(),
        ))
    }

    #[test]
    fn two_scripts_are_callable_with_every_value_kind() {
        let f = load_ok(&[
            (
                "math.rhai",
                "fn add(a, b) { a + b }\n\
                 fn f2c(f) { (f - 32.0) * 5.0 / 9.0 }\n\
                 fn add(a, b, c) { a + b + c }\n\
                 private fn helper(x) { x * 2 }\n\
                 fn twice(x) { helper(x) }\n",
            ),
            (
                "data.rhai",
                "fn greet(name) { `hello ${name}` }\n\
                 fn total(m) { m.a + m.b }\n\
                 fn tag(m) { m.tagged = true; m }\n\
                 fn sum(xs) { let t = 0; for x in xs { t += x; } t }\n\
                 fn pair(a, b) { [a, b, ()] }\n\
                 fn first_byte(b) { b[0] }\n\
                 fn nothing() { }\n",
            ),
            ("notes.txt", "not a script"),
        ]);
        assert_eq!(
            f.names(),
            [
                "add",
                "f2c",
                "first_byte",
                "greet",
                "nothing",
                "pair",
                "sum",
                "tag",
                "total",
                "twice"
            ]
        );
        assert_eq!(f.arity("add"), Some(vec![2, 3]));
        assert_eq!(f.arity("helper"), None);
        assert_eq!(f.call("add", &[Value::Int(2), Value::Int(3)]), Ok(Value::Int(5)));
        assert_eq!(
            f.call("ADD", &[Value::Int(1), Value::Int(2), Value::Int(3)]),
            Ok(Value::Int(6))
        );
        assert_eq!(f.call("f2c", &[Value::Float(212.0)]), Ok(Value::Float(100.0)));
        assert_eq!(f.call("twice", &[Value::Int(21)]), Ok(Value::Int(42)));
        assert_eq!(f.call("greet", &[Value::str("bob")]), Ok(Value::str("hello bob")));
        let m = map(&[("a", Value::Int(1)), ("b", Value::Float(2.5))]);
        assert_eq!(f.call("total", std::slice::from_ref(&m)), Ok(Value::Float(3.5)));
        let Ok(Value::Map(tagged)) = f.call("tag", &[m]) else {
            panic!("map expected")
        };
        assert_eq!(tagged.keys().map(|k| &**k).collect::<Vec<_>>(), ["a", "b", "tagged"]);
        assert_eq!(tagged["tagged"], Value::Bool(true));
        let xs = Value::Array(Arc::new(vec![Value::Int(1), Value::Int(2), Value::Int(3)]));
        assert_eq!(f.call("sum", &[xs]), Ok(Value::Int(6)));
        assert_eq!(
            f.call("pair", &[Value::Null, Value::str("x")]),
            Ok(Value::Array(Arc::new(vec![Value::Null, Value::str("x"), Value::Null])))
        );
        let bytes = Value::Bytes(Bytes::from_static(&[7, 8]));
        assert_eq!(f.call("first_byte", &[bytes]), Ok(Value::Int(7)));
        assert_eq!(f.call("nothing", &[]), Ok(Value::Null));

        let e = f.call("add", &[Value::Int(1)]).unwrap_err();
        assert_eq!(e.function, "add");
        assert!(e.message.contains("expects 2 or 3 argument(s), got 1"), "{e}");
        assert!(f.call("nope", &[]).is_err());
    }

    #[test]
    fn usable_from_many_threads() {
        let f = load_ok(&[("a.rhai", "fn sq(x) { x * x }")]);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let f = f.clone();
                std::thread::spawn(move || f.call("sq", &[Value::Int(i)]))
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got, [0, 1, 4, 9].map(|n| Ok(Value::Int(n))));
    }

    #[test]
    fn missing_folder_means_no_functions() {
        let dir = tempfile::tempdir().unwrap();
        let f = ScriptFunctions::load(&dir.path().join("absent")).unwrap();
        assert!(f.is_empty());
        assert!(f.names().is_empty());
    }

    #[test]
    fn syntax_error_has_file_line_col() {
        let e = load(&[("bad.rhai", "fn ok(x) { x }\n\nfn broken(x) {\n  let y = ;\n}\n")]).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Syntax);
        assert!(e.file.ends_with("bad.rhai"));
        assert_eq!((e.line, e.col), (4, 11));
        let shown = e.to_string();
        assert!(shown.contains("bad.rhai:4:11: "), "{shown}");
    }

    #[test]
    fn unknown_variable_is_a_load_error() {
        let e = load(&[("v.rhai", "fn f(x) { x + y }")]).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Syntax);
        assert_eq!(e.line, 1);
    }

    #[test]
    fn runtime_error_has_script_position() {
        let f = load_ok(&[(
            "rt.rhai",
            "fn inner(x) {\n  if x > 1 { throw \"too big\"; }\n  x\n}\nfn outer(x) { inner(x) }\n\
             fn minus(x) {\n  x - \"a\"\n}\n",
        )]);
        let e = f.call("outer", &[Value::Int(5)]).unwrap_err();
        assert_eq!(e.function, "outer");
        assert!(
            e.message.contains("rt.rhai:2:14: Runtime error: too big (in `inner`)"),
            "{e}"
        );
        let e = f.call("minus", &[Value::Int(1)]).unwrap_err();
        assert!(e.message.contains("rt.rhai:7:5: "), "{e}");
        assert!(e.message.contains("Function not found"), "{e}");
    }

    #[test]
    fn infinite_loop_stops_at_the_operations_limit() {
        let f = load_ok(&[(
            "loop.rhai",
            "fn spin() { loop { } }\nfn count() { let i = 0; while true { i += 1; } }",
        )]);
        for name in ["spin", "count"] {
            let e = f.call(name, &[]).unwrap_err();
            assert!(e.message.contains("Too many operations"), "{e}");
            assert!(e.message.contains("loop.rhai:"), "{e}");
        }
    }

    #[test]
    fn deep_recursion_stops() {
        let f = load_ok(&[(
            "rec.rhai",
            "fn down(n) { down(n + 1) }\nfn fact(n) { if n <= 1 { 1 } else { n * fact(n - 1) } }",
        )]);
        let e = f.call("down", &[Value::Int(0)]).unwrap_err();
        assert!(e.message.contains("Stack overflow"), "{e}");
        assert_eq!(f.call("fact", &[Value::Int(10)]), Ok(Value::Int(3_628_800)));
    }

    #[test]
    fn size_limits_hold() {
        let f = load_ok(&[(
            "big.rhai",
            "fn s() { let s = \"x\"; while true { s += s; } }\n\
             fn a() { let a = []; while true { a.push(1); } }\n\
             fn m() {\n\
               let inner = #{}; for i in 0..100 { inner[`k${i}`] = i; }\n\
               let outer = #{}; loop { outer = #{ x: outer, y: inner }; }\n\
             }\n",
        )]);
        for (name, want) in [
            ("s", "Length of string"),
            ("a", "Size of array"),
            ("m", "Size of object map"),
        ] {
            let e = f.call(name, &[]).unwrap_err();
            assert!(e.message.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let f = load_ok(&[(
            "deep.rhai",
            "fn arrays() { let a = []; loop { a = [a]; } }\n\
             fn maps() { let a = #{}; loop { a = #{a: a}; } }\n\
             fn mixed() { let a = #{}; loop { a = #{a: [a]}; } }\n\
             fn ok(n) { let a = []; for i in 0..n { a = [a]; } a }\n",
        )]);
        for name in ["arrays", "maps", "mixed"] {
            let e = f.call(name, &[]).unwrap_err();
            assert!(
                e.message.contains("too large") || e.message.contains("Time limit"),
                "{name}: {e}"
            );
        }
        // A result nested deeper than rule values may be is refused.
        let e = f.call("ok", &[Value::Int(200)]).unwrap_err();
        assert!(e.message.contains("nested deeper than"), "{e}");
        assert!(f.call("ok", &[Value::Int(100)]).is_ok());
    }

    #[test]
    fn pool_threads_hold_what_a_small_stack_cannot() {
        // 2_000 levels of map-in-array abort a 2 MiB thread in a debug build (Rhai clones
        // and drops them recursively); the size limits allow 20_000.
        let pool = Pool::start(1).unwrap();
        let engine = Arc::new(sandbox_engine());
        let depth = pool
            .run(move || {
                let a = engine.eval::<Dynamic>("let a = #{}; for i in 0..1000 { a = #{a: [a]}; } let b = a; b.a.len()");
                a.map(|d| d.as_int().unwrap_or(-1)).map_err(|e| e.to_string())
            })
            .unwrap();
        assert_eq!(depth, Ok(1));
    }

    #[test]
    fn big_stack_threads_call_directly() {
        let f = load_ok(&[(
            "a.rhai",
            "fn deep() { let a = #{}; for i in 0..300 { a = #{a: [a]}; } 1 }",
        )]);
        let h = std::thread::Builder::new()
            .stack_size(WORKER_STACK_SIZE)
            .spawn(move || {
                declare_big_stack();
                f.call("deep", &[])
            })
            .unwrap();
        assert_eq!(h.join().unwrap(), Ok(Value::Int(1)));
    }

    #[test]
    fn slow_operations_stop_at_the_time_limit() {
        // Each `to_upper` is one operation but copies 1 MB: the time limit ends it.
        let f = load_ok(&[(
            "slow.rhai",
            "fn slow() { let s = \"\"; s.pad(1000000, 'y'); loop { let t = s.to_upper(); } }",
        )]);
        let t = Instant::now();
        let e = f.call("slow", &[]).unwrap_err();
        assert!(e.message.contains("Time limit"), "{e}");
        assert!(t.elapsed() < MAX_CALL_TIME * 4, "{:?}", t.elapsed());
    }

    #[test]
    fn builtin_name_clash_is_refused() {
        let e = load(&[("c.rhai", "fn ok(x) { x }\n\nfn upper(s) { s }\n")]).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::BuiltinClash);
        assert_eq!((e.line, e.col), (3, 1));
        assert!(e.message.contains("upper"), "{e}");
    }

    #[test]
    fn duplicate_across_files_is_refused() {
        let e = load(&[("a.rhai", "fn f(x) { x }"), ("b.rhai", "fn F(x, y) { x }")]).unwrap_err();
        assert_eq!(e.kind, ScriptErrorKind::Duplicate);
        assert!(e.file.ends_with("b.rhai"));
        assert!(e.message.contains("a.rhai"), "{e}");
    }

    #[test]
    fn import_eval_and_host_access_are_impossible() {
        for src in [
            "import \"x\" as x;\nfn f() { 1 }",
            "fn f() { eval(\"1\") }",
            "fn f() { sleep(1) }",
            "fn f() { timestamp() }",
            "fn f() { Fn(\"f\").curry(1) }",
            "fn f() { let x = 1; let g = || x; g.call() }",
        ] {
            let r = load(&[("s.rhai", src)]);
            match r {
                Err(e) => assert_eq!(e.kind, ScriptErrorKind::Syntax, "{src}: {e}"),
                // Unknown functions are only found at call time.
                Ok(f) => {
                    let e = f.call("f", &[]).unwrap_err();
                    assert!(e.message.contains("Function not found"), "{src}: {e}");
                }
            }
        }
    }

    #[test]
    fn unsupported_result_type_is_an_error() {
        let f = load_ok(&[("p.rhai", "fn ptr() { Fn(\"ptr\") }")]);
        let e = f.call("ptr", &[]).unwrap_err();
        assert!(e.message.contains("unsupported type"), "{e}");
    }

    #[test]
    fn sample_script_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/functions");
        let f = ScriptFunctions::load(&dir).unwrap();
        assert_eq!(f.call("f2c", &[Value::Float(32.0)]), Ok(Value::Float(0.0)));
        assert_eq!(f.call("f2c", &[Value::Int(212)]), Ok(Value::Float(100.0)));
    }
}

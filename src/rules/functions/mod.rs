//! The built-in function library of the rule engine, modelled on EMQX's
//! `emqx_rule_funcs` (and `emqx_variform_bif`, where EMQX 5 moved the string
//! functions). Every function takes and returns [`Value`]s; a bad argument is a
//! [`FnError`], never a panic, and every function does bounded work.
//!
//! Functions that need the message or the client (`clientid()`, `topic()`,
//! `payload()`, `jq`, `kv_store_*`, `getenv`, ...) are not here: the evaluator
//! provides them.
//!
//! One file per family; each exports `FUNCTIONS`, gathered into one table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use super::value::{Map, Value};

mod bits;
mod collections;
mod compress;
mod convert;
mod encode;
mod hash;
mod math;
mod misc;
mod string;
mod time;

pub use convert::str_bytes;
/// The arithmetic operators (`+ - * /`), for the evaluator.
pub use math::{add, divide, mul, sub};

/// A function failed: bad argument type, out-of-range value, undecodable input...
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{function}: {message}")]
pub struct FnError {
    pub function: &'static str,
    pub message: String,
}

/// A built-in function's implementation.
pub type FnImpl = fn(&[Value]) -> Result<Value, FnError>;

/// A built-in function: its (lowercase) name, how many arguments it takes, its implementation.
pub struct FnDef {
    pub name: &'static str,
    pub min_args: usize,
    /// `None`: any number from `min_args` up (`sprintf`).
    pub max_args: Option<usize>,
    pub f: FnImpl,
}

impl FnDef {
    /// Whether `n` arguments are acceptable.
    pub fn accepts(&self, n: usize) -> bool {
        n >= self.min_args && self.max_args.is_none_or(|m| n <= m)
    }

    /// Call the function, checking the argument count first.
    pub fn call(&self, args: &[Value]) -> Result<Value, FnError> {
        if !self.accepts(args.len()) {
            let expected = match self.max_args {
                Some(m) if m == self.min_args => format!("{m}"),
                Some(m) => format!("{} to {m}", self.min_args),
                None => format!("at least {}", self.min_args),
            };
            return Err(err(
                self.name,
                format!("expects {expected} argument(s), got {}", args.len()),
            ));
        }
        (self.f)(args)
    }
}

impl std::fmt::Debug for FnDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnDef")
            .field("name", &self.name)
            .field("min_args", &self.min_args)
            .field("max_args", &self.max_args)
            .finish()
    }
}

static ALL: LazyLock<Vec<FnDef>> = LazyLock::new(|| {
    let families: [&[FnDef]; 10] = [
        math::FUNCTIONS,
        bits::FUNCTIONS,
        convert::FUNCTIONS,
        string::FUNCTIONS,
        collections::FUNCTIONS,
        hash::FUNCTIONS,
        compress::FUNCTIONS,
        encode::FUNCTIONS,
        time::FUNCTIONS,
        misc::FUNCTIONS,
    ];
    families
        .iter()
        .flat_map(|fam| fam.iter())
        .map(|d| FnDef {
            name: d.name,
            min_args: d.min_args,
            max_args: d.max_args,
            f: d.f,
        })
        .collect()
});

static INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| ALL.iter().enumerate().map(|(i, d)| (d.name, i)).collect());

/// Look a function up by name (EMQX names are lowercase; the lookup ignores case).
pub fn lookup(name: &str) -> Option<&'static FnDef> {
    let i = match INDEX.get(name) {
        Some(i) => *i,
        None => *INDEX.get(name.to_ascii_lowercase().as_str())?,
    };
    ALL.get(i)
}

/// Every function, for docs and "did you mean" suggestions.
pub fn all() -> &'static [FnDef] {
    &ALL
}

// ---------------------------------------------------------------------------
// Helpers shared by the families.
// ---------------------------------------------------------------------------

/// The most bytes a function may produce (padding, sprintf widths, decompression...).
pub(crate) const MAX_OUTPUT: usize = 16 << 20;

/// A float that is a whole number to i64, if it fits (`None` past i64, NaN, infinity).
pub(crate) fn float_to_i64(x: f64) -> Option<i64> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    (-TWO_63..TWO_63).contains(&x).then_some(x as i64)
}

pub(crate) fn err(function: &'static str, message: impl Into<String>) -> FnError {
    FnError {
        function,
        message: message.into(),
    }
}

/// "argument N: expected X, got <type>".
pub(crate) fn bad_arg(function: &'static str, i: usize, expected: &str, got: &Value) -> FnError {
    err(
        function,
        format!("argument {}: expected {expected}, got {}", i + 1, got.type_name()),
    )
}

pub(crate) fn arg<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a Value, FnError> {
    args.get(i)
        .ok_or_else(|| err(function, format!("missing argument {}", i + 1)))
}

/// An Erlang binary: text or bytes.
pub(crate) fn arg_bin<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a [u8], FnError> {
    match arg(function, args, i)? {
        Value::Str(s) => Ok(s.as_bytes()),
        Value::Bytes(b) => Ok(b),
        v => Err(bad_arg(function, i, "a string", v)),
    }
}

/// Text (bytes must be valid UTF-8). `undefined` is a bad argument, as in EMQX 5.
pub(crate) fn arg_text<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a str, FnError> {
    match arg(function, args, i)? {
        Value::Str(s) => Ok(s),
        Value::Bytes(b) => {
            std::str::from_utf8(b).map_err(|_| err(function, format!("argument {}: not valid UTF-8", i + 1)))
        }
        v => Err(bad_arg(function, i, "a string", v)),
    }
}

pub(crate) fn arg_int(function: &'static str, args: &[Value], i: usize) -> Result<i64, FnError> {
    match arg(function, args, i)? {
        Value::Int(n) => Ok(*n),
        v => Err(bad_arg(function, i, "an integer", v)),
    }
}

/// A number (integer or float) as f64.
pub(crate) fn arg_num(function: &'static str, args: &[Value], i: usize) -> Result<f64, FnError> {
    match arg(function, args, i)? {
        Value::Int(n) => Ok(*n as f64),
        Value::Float(x) => Ok(*x),
        v => Err(bad_arg(function, i, "a number", v)),
    }
}

pub(crate) fn arg_array<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a [Value], FnError> {
    match arg(function, args, i)? {
        Value::Array(a) => Ok(a),
        v => Err(bad_arg(function, i, "an array", v)),
    }
}

/// Bytes as a value: text when they are valid UTF-8, else raw bytes.
pub(crate) fn bin_out(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => Value::Str(s.into()),
        Err(e) => Value::Bytes(e.into_bytes().into()),
    }
}

pub(crate) fn text_out(s: impl Into<Arc<str>>) -> Value {
    Value::Str(s.into())
}

pub(crate) fn array_out(items: Vec<Value>) -> Value {
    Value::Array(Arc::new(items))
}

pub(crate) fn map_out(m: Map) -> Value {
    Value::Map(Arc::new(m))
}

/// The bytes of a binary value, if it is one.
pub(crate) fn as_bin(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Str(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// Erlang's exact equality (`=:=`): `1` and `1.0` differ; text and bytes with the
/// same content are the same binary.
pub(crate) fn exact_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Int(_), Value::Float(_)) | (Value::Float(_), Value::Int(_)) => false,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| exact_eq(p, q)),
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| exact_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A time unit name as EMQX takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

impl TimeUnit {
    pub(crate) fn per_second(self) -> i64 {
        match self {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
    }

    pub(crate) fn digits(self) -> usize {
        match self {
            TimeUnit::Second => 0,
            TimeUnit::Millisecond => 3,
            TimeUnit::Microsecond => 6,
            TimeUnit::Nanosecond => 9,
        }
    }
}

pub(crate) fn arg_time_unit(function: &'static str, args: &[Value], i: usize) -> Result<TimeUnit, FnError> {
    let v = arg(function, args, i)?;
    match as_bin(v) {
        Some(b"second") => Ok(TimeUnit::Second),
        Some(b"millisecond") => Ok(TimeUnit::Millisecond),
        Some(b"microsecond") => Ok(TimeUnit::Microsecond),
        Some(b"nanosecond") => Ok(TimeUnit::Nanosecond),
        _ => Err(err(
            function,
            format!(
                "argument {}: invalid time unit {}, expected 'second', 'millisecond', 'microsecond' or 'nanosecond'",
                i + 1,
                short_repr(v)
            ),
        )),
    }
}

/// A short description of a value for error messages.
pub(crate) fn short_repr(v: &Value) -> String {
    let s: Cow<str> = match v {
        Value::Str(s) => Cow::Owned(format!("'{s}'")),
        Value::Bytes(_) => Cow::Borrowed("<binary>"),
        other => Cow::Owned(other.to_string()),
    };
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub(crate) fn s(x: &str) -> Value {
        Value::str(x)
    }
    pub(crate) fn b(x: &[u8]) -> Value {
        Value::Bytes(bytes::Bytes::copy_from_slice(x))
    }
    pub(crate) fn i(x: i64) -> Value {
        Value::Int(x)
    }
    pub(crate) fn f(x: f64) -> Value {
        Value::Float(x)
    }
    pub(crate) fn arr(items: Vec<Value>) -> Value {
        array_out(items)
    }
    pub(crate) fn json(text: &str) -> Value {
        Value::from_json(&serde_json::from_str(text).expect("test JSON"))
    }
    pub(crate) fn strs(items: &[&str]) -> Value {
        arr(items.iter().map(|x| s(x)).collect())
    }
    /// Call a function by name through the table.
    pub(crate) fn call(name: &str, args: Vec<Value>) -> Result<Value, FnError> {
        lookup(name).unwrap_or_else(|| panic!("no function {name}")).call(&args)
    }
    pub(crate) fn ok(name: &str, args: Vec<Value>) -> Value {
        call(name, args).unwrap_or_else(|e| panic!("{name} failed: {e}"))
    }
    pub(crate) fn fails(name: &str, args: Vec<Value>) {
        assert!(call(name, args.clone()).is_err(), "{name}({args:?}) should fail");
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn table_has_unique_lowercase_names_and_sane_arities() {
        let mut seen = std::collections::HashSet::new();
        for d in all() {
            assert!(seen.insert(d.name), "duplicate {}", d.name);
            assert_eq!(d.name, d.name.to_ascii_lowercase());
            assert!(d.max_args.is_none_or(|m| m >= d.min_args), "{}", d.name);
        }
        assert!(all().len() > 120, "{}", all().len());
    }

    #[test]
    fn lookup_ignores_case_and_checks_arity() {
        assert_eq!(lookup("UPPER").map(|d| d.name), Some("upper"));
        assert_eq!(lookup("Sha256").map(|d| d.name), Some("sha256"));
        assert!(lookup("clientid").is_none());
        assert!(lookup("no_such_fn").is_none());
        let e = call("upper", vec![]).unwrap_err();
        assert_eq!(e.function, "upper");
        assert_eq!(e.to_string(), "upper: expects 1 argument(s), got 0");
        assert!(call("sprintf", vec![s("~s ~s"), s("a"), s("b")]).is_ok());
    }

    #[test]
    fn exact_equality_is_erlangs() {
        assert!(!exact_eq(&i(1), &f(1.0)));
        assert!(exact_eq(&s("a"), &b(b"a")));
        assert!(exact_eq(&json(r#"{"a":1,"b":[2]}"#), &json(r#"{"b":[2],"a":1}"#)));
        assert!(!exact_eq(&json(r#"{"a":1}"#), &json(r#"{"a":1.0}"#)));
    }
}

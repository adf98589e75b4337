//! Type conversion and type checking: `str`, `int`, `float`, `bool`, `map`,
//! hex conversions and the `is_*` predicates. Coercions follow EMQX's
//! `emqx_utils_conv`: `int('1.5')` is 1 (strings may hold floats, floored),
//! `float('1')` is 1.0, `bool` only takes true/false, 1/0 and 'true'/'false'.

use std::borrow::Cow;
use std::sync::Arc;

use super::{arg, arg_bin, arg_int, as_bin, bad_arg, bin_out, err, short_repr, text_out, FnDef, FnError};
use crate::rules::value::{Map, Value};

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "str",
        min_args: 1,
        max_args: Some(1),
        f: str,
    },
    FnDef {
        name: "str_utf8",
        min_args: 1,
        max_args: Some(1),
        f: str_utf8,
    },
    FnDef {
        name: "str_utf16_le",
        min_args: 1,
        max_args: Some(1),
        f: str_utf16_le,
    },
    FnDef {
        name: "int",
        min_args: 1,
        max_args: Some(1),
        f: int,
    },
    FnDef {
        name: "float",
        min_args: 1,
        max_args: Some(2),
        f: float,
    },
    FnDef {
        name: "float2str",
        min_args: 2,
        max_args: Some(2),
        f: float2str,
    },
    FnDef {
        name: "bool",
        min_args: 1,
        max_args: Some(1),
        f: bool,
    },
    FnDef {
        name: "map",
        min_args: 1,
        max_args: Some(1),
        f: map,
    },
    FnDef {
        name: "bin2hexstr",
        min_args: 1,
        max_args: Some(2),
        f: bin2hexstr,
    },
    FnDef {
        name: "hexstr2bin",
        min_args: 1,
        max_args: Some(2),
        f: hexstr2bin,
    },
    FnDef {
        name: "sqlserver_bin2hexstr",
        min_args: 1,
        max_args: Some(1),
        f: sqlserver_bin2hexstr,
    },
    FnDef {
        name: "is_null",
        min_args: 1,
        max_args: Some(1),
        f: is_null,
    },
    FnDef {
        name: "is_not_null",
        min_args: 1,
        max_args: Some(1),
        f: is_not_null,
    },
    FnDef {
        name: "is_null_var",
        min_args: 1,
        max_args: Some(1),
        f: is_null,
    },
    FnDef {
        name: "is_not_null_var",
        min_args: 1,
        max_args: Some(1),
        f: is_not_null,
    },
    FnDef {
        name: "is_str",
        min_args: 1,
        max_args: Some(1),
        f: is_str,
    },
    FnDef {
        name: "is_bool",
        min_args: 1,
        max_args: Some(1),
        f: is_bool,
    },
    FnDef {
        name: "is_int",
        min_args: 1,
        max_args: Some(1),
        f: is_int,
    },
    FnDef {
        name: "is_float",
        min_args: 1,
        max_args: Some(1),
        f: is_float,
    },
    FnDef {
        name: "is_num",
        min_args: 1,
        max_args: Some(1),
        f: is_num,
    },
    FnDef {
        name: "is_map",
        min_args: 1,
        max_args: Some(1),
        f: is_map,
    },
    FnDef {
        name: "is_array",
        min_args: 1,
        max_args: Some(1),
        f: is_array,
    },
    FnDef {
        name: "is_empty",
        min_args: 1,
        max_args: Some(1),
        f: is_empty,
    },
];

// --- Shared conversions -------------------------------------------------------

/// The text EMQX's `str()` gives a value (`emqx_utils_conv:bin/1`): strings as
/// they are, integers in decimal, floats with at most 10 decimals and trailing
/// zeros dropped (`2.0`, `0.3`), `true`/`false`, `undefined`, maps and arrays as JSON.
pub fn str_bytes(v: &Value) -> Cow<'_, [u8]> {
    match v {
        Value::Str(s) => Cow::Borrowed(s.as_bytes()),
        Value::Bytes(b) => Cow::Borrowed(b),
        Value::Int(n) => Cow::Owned(n.to_string().into_bytes()),
        Value::Float(x) => Cow::Owned(float_compact(*x, 10).into_bytes()),
        Value::Bool(b) => Cow::Borrowed(if *b { b"true" } else { b"false" }),
        Value::Null => Cow::Borrowed(b"undefined"),
        Value::Array(_) | Value::Map(_) => Cow::Owned(v.to_json().to_string().into_bytes()),
    }
}

/// Erlang's `float_to_binary(X, [{decimals, D}, compact])`: `D` decimals, then
/// trailing zeros dropped (one digit is kept after the point).
pub(crate) fn float_compact(x: f64, decimals: usize) -> String {
    let mut s = format!("{x:.decimals$}");
    if decimals > 0 && s.contains('.') {
        while s.ends_with('0') && !s.ends_with(".0") {
            s.pop();
        }
    }
    s
}

/// Erlang's `binary_to_integer`: an optional sign and decimal digits, nothing else.
pub(crate) fn parse_erlang_int(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")).unwrap_or(s);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Whether `s` is an Erlang integer literal too large for i64 (Erlang has big integers).
fn is_big_int(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")).unwrap_or(s);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Erlang's `binary_to_float`: `[+-]digits.digits[(e|E)[+-]digits]` (a dot with
/// digits on both sides is required: `1e5`, `.5` and `5.` are not floats).
pub(crate) fn parse_erlang_float(s: &[u8]) -> Option<f64> {
    let body = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")).unwrap_or(s);
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(body);
    if n == 0 || body.get(n) != Some(&b'.') {
        return None;
    }
    let rest = &body[n + 1..];
    let m = digits(rest);
    if m == 0 {
        return None;
    }
    let exp = &rest[m..];
    if !exp.is_empty() {
        let e = exp.strip_prefix(b"e").or_else(|| exp.strip_prefix(b"E"))?;
        let e = e.strip_prefix(b"+").or_else(|| e.strip_prefix(b"-")).unwrap_or(e);
        if e.is_empty() || digits(e) != e.len() {
            return None;
        }
    }
    let x: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    x.is_finite().then_some(x)
}

/// EMQX's `float/1` on any value.
pub(crate) fn to_float(function: &'static str, v: &Value) -> Result<f64, FnError> {
    match v {
        Value::Int(n) => Ok(*n as f64),
        Value::Float(x) => Ok(*x),
        Value::Str(_) | Value::Bytes(_) => {
            let b = as_bin(v).unwrap_or_default();
            if let Some(x) = parse_erlang_float(b) {
                return Ok(x);
            }
            let big = is_big_int(b)
                .then(|| std::str::from_utf8(b).ok()?.parse::<f64>().ok())
                .flatten();
            if let Some(x) = big.filter(|x| x.is_finite()) {
                return Ok(x);
            }
            Err(err(function, format!("cannot convert {} to a float", short_repr(v))))
        }
        _ => Err(bad_arg(function, 0, "a number or a numeric string", v)),
    }
}

/// EMQX's `map/1`: a map, a JSON object in a string, or (Erlang's proplist) an
/// array of `[key, value]` pairs with string keys.
pub(crate) fn to_map(function: &'static str, v: &Value) -> Result<Arc<Map>, FnError> {
    match v {
        Value::Map(m) => Ok(m.clone()),
        Value::Str(_) | Value::Bytes(_) => {
            let b = as_bin(v).unwrap_or_default();
            match serde_json::from_slice::<serde_json::Value>(b) {
                Ok(j @ serde_json::Value::Object(_)) => match Value::from_json(&j) {
                    Value::Map(m) => Ok(m),
                    _ => Err(err(function, "not a JSON object")),
                },
                _ => Err(err(function, format!("cannot convert {} to a map", short_repr(v)))),
            }
        }
        Value::Array(items) => {
            let mut m = Map::with_capacity_and_hasher(items.len(), Default::default());
            for item in items.iter() {
                match item {
                    Value::Array(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
                        (Value::Str(k), val) => {
                            m.insert(k.clone(), val.clone());
                        }
                        _ => return Err(err(function, "an array converts to a map only from [key, value] pairs")),
                    },
                    _ => return Err(err(function, "an array converts to a map only from [key, value] pairs")),
                }
            }
            Ok(Arc::new(m))
        }
        _ => Err(bad_arg(function, 0, "a map or a JSON object string", v)),
    }
}

/// Upper-case hex of bytes.
pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// EMQX's `hexstr2bin`: an odd number of digits gets a leading `0`.
pub(crate) fn decode_hex(function: &'static str, s: &[u8]) -> Result<Vec<u8>, FnError> {
    let r = if s.len() % 2 == 1 {
        let mut padded = Vec::with_capacity(s.len() + 1);
        padded.push(b'0');
        padded.extend_from_slice(s);
        hex::decode(padded)
    } else {
        hex::decode(s)
    };
    r.map_err(|_| err(function, "not a hexadecimal string"))
}

// --- Functions ------------------------------------------------------------------

fn str(args: &[Value]) -> Result<Value, FnError> {
    Ok(bin_out(str_bytes(arg("str", args, 0)?).into_owned()))
}

/// Like `str`, but the result must be valid UTF-8.
fn str_utf8(args: &[Value]) -> Result<Value, FnError> {
    let bytes = str_bytes(arg("str_utf8", args, 0)?).into_owned();
    String::from_utf8(bytes)
        .map(text_out)
        .map_err(|_| err("str_utf8", "not valid UTF-8"))
}

/// `str`, encoded as UTF-16 little-endian bytes.
fn str_utf16_le(args: &[Value]) -> Result<Value, FnError> {
    let bytes = str_bytes(arg("str_utf16_le", args, 0)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| err("str_utf16_le", "not valid UTF-8"))?;
    let out: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    Ok(Value::Bytes(out.into()))
}

fn int(args: &[Value]) -> Result<Value, FnError> {
    let v = arg("int", args, 0)?;
    let floor_to_int = |x: f64| {
        super::float_to_i64(x.floor())
            .map(Value::Int)
            .ok_or_else(|| err("int", "the result does not fit a 64-bit integer"))
    };
    match v {
        Value::Int(n) => Ok(Value::Int(*n)),
        Value::Float(x) => floor_to_int(*x),
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        Value::Str(_) | Value::Bytes(_) => {
            let b = as_bin(v).unwrap_or_default();
            if let Some(n) = parse_erlang_int(b) {
                return Ok(Value::Int(n));
            }
            if is_big_int(b) {
                return Err(err("int", "the result does not fit a 64-bit integer"));
            }
            match parse_erlang_float(b) {
                Some(x) => floor_to_int(x),
                None => Err(err("int", format!("cannot convert {} to an integer", short_repr(v)))),
            }
        }
        _ => Err(bad_arg("int", 0, "a number, a boolean or a numeric string", v)),
    }
}

/// `float(X)`; `float(X, Decimals)` rounds to at most `Decimals` (1..=253) decimals.
fn float(args: &[Value]) -> Result<Value, FnError> {
    let x = to_float("float", arg("float", args, 0)?)?;
    if args.len() < 2 {
        return Ok(Value::Float(x));
    }
    let d = arg_int("float", args, 1)?;
    if !(1..=253).contains(&d) {
        return Err(err("float", "decimals must be between 1 and 253"));
    }
    let text = format!("{x:.prec$}", prec = d as usize);
    text.parse::<f64>()
        .map(Value::Float)
        .map_err(|_| err("float", "cannot round the number"))
}

/// `float2str(Float, Decimals)`: at most `Decimals` (0..=253) decimals, trailing zeros dropped.
fn float2str(args: &[Value]) -> Result<Value, FnError> {
    let x = match arg("float2str", args, 0)? {
        Value::Float(x) => *x,
        v => return Err(bad_arg("float2str", 0, "a float", v)),
    };
    let d = arg_int("float2str", args, 1)?;
    if !(0..=253).contains(&d) {
        return Err(err("float2str", "decimals must be between 0 and 253"));
    }
    Ok(text_out(float_compact(x, d as usize)))
}

fn bool(args: &[Value]) -> Result<Value, FnError> {
    let v = arg("bool", args, 0)?;
    match v {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::Int(1) => Ok(Value::Bool(true)),
        Value::Int(0) => Ok(Value::Bool(false)),
        Value::Float(x) if *x == 1.0 => Ok(Value::Bool(true)),
        Value::Float(x) if *x == 0.0 => Ok(Value::Bool(false)),
        Value::Str(_) | Value::Bytes(_) => match as_bin(v) {
            Some(b"true") => Ok(Value::Bool(true)),
            Some(b"false") => Ok(Value::Bool(false)),
            _ => Err(err("bool", format!("cannot convert {} to a boolean", short_repr(v)))),
        },
        _ => Err(err("bool", format!("cannot convert {} to a boolean", short_repr(v)))),
    }
}

fn map(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Map(to_map("map", arg("map", args, 0)?)?))
}

/// Optional prefix argument: absent or `undefined` means none.
fn prefix_arg<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a [u8], FnError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(b""),
        Some(_) => arg_bin(function, args, i),
    }
}

/// `bin2hexstr(Bin[, Prefix])`: upper-case hex.
fn bin2hexstr(args: &[Value]) -> Result<Value, FnError> {
    let bin = arg_bin("bin2hexstr", args, 0)?;
    let prefix = prefix_arg("bin2hexstr", args, 1)?;
    let mut out = prefix.to_vec();
    out.extend_from_slice(hex_upper(bin).as_bytes());
    Ok(bin_out(out))
}

fn sqlserver_bin2hexstr(args: &[Value]) -> Result<Value, FnError> {
    let bin = arg_bin("sqlserver_bin2hexstr", args, 0)?;
    Ok(text_out(format!("0x{}", hex_upper(bin))))
}

/// `hexstr2bin(Hex[, Prefix])`: the prefix, when given, must be there.
fn hexstr2bin(args: &[Value]) -> Result<Value, FnError> {
    let s = arg_bin("hexstr2bin", args, 0)?;
    let prefix = prefix_arg("hexstr2bin", args, 1)?;
    let digits = s
        .strip_prefix(prefix)
        .ok_or_else(|| err("hexstr2bin", "binary_prefix_unmatch"))?;
    Ok(Value::Bytes(decode_hex("hexstr2bin", digits)?.into()))
}

/// `is_null` and `is_null_var` (JSON `null` is `undefined` here, so they agree).
fn is_null(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(arg("is_null", args, 0)?.is_null()))
}
fn is_not_null(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(!arg("is_not_null", args, 0)?.is_null()))
}
fn is_str(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(
        arg("is_str", args, 0)?,
        Value::Str(_) | Value::Bytes(_)
    )))
}
fn is_bool(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(arg("is_bool", args, 0)?, Value::Bool(_))))
}
fn is_int(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(arg("is_int", args, 0)?, Value::Int(_))))
}
fn is_float(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(arg("is_float", args, 0)?, Value::Float(_))))
}
fn is_num(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(
        arg("is_num", args, 0)?,
        Value::Int(_) | Value::Float(_)
    )))
}
fn is_map(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(arg("is_map", args, 0)?, Value::Map(_))))
}
fn is_array(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(matches!(arg("is_array", args, 0)?, Value::Array(_))))
}

/// Empty array, empty string, or a map (or JSON object string) without keys.
fn is_empty(args: &[Value]) -> Result<Value, FnError> {
    let v = arg("is_empty", args, 0)?;
    match v {
        Value::Array(a) => Ok(Value::Bool(a.is_empty())),
        Value::Str(s) if s.is_empty() => Ok(Value::Bool(true)),
        Value::Bytes(b) if b.is_empty() => Ok(Value::Bool(true)),
        _ => Ok(Value::Bool(to_map("is_empty", v)?.is_empty())),
    }
}

#[cfg(test)]
#[allow(clippy::approx_constant)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn t_str() {
        assert_eq!(ok("str", vec![s("abc")]), s("abc"));
        assert_eq!(ok("str", vec![s("你好🐸")]), s("你好🐸"));
        assert_eq!(ok("str", vec![json(r#"{"a":1}"#)]), s(r#"{"a":1}"#));
        assert_eq!(ok("str", vec![json(r#"[{"a":1},{"b":1}]"#)]), s(r#"[{"a":1},{"b":1}]"#));
        assert_eq!(ok("str", vec![i(1)]), s("1"));
        assert_eq!(ok("str", vec![f(2.0)]), s("2.0"));
        assert_eq!(ok("str", vec![Value::Bool(true)]), s("true"));
        assert_eq!(ok("str", vec![Value::Null]), s("undefined"));
        // Documented: at most 10 decimals, trailing zeros dropped.
        // (EMQX's docs claim str(0.300000004) = '0.3'; 10 decimals keep it whole.)
        assert_eq!(ok("str", vec![f(0.300000004)]), s("0.300000004"));
        assert_eq!(ok("str", vec![f(0.30000000004)]), s("0.3"));
        assert_eq!(ok("str", vec![f(3.14159265359)]), s("3.1415926536"));
        assert_eq!(ok("str", vec![f(0.000000314159265359)]), s("0.0000003142"));
        assert_eq!(ok("str", vec![b(&[0xff, 0])]), b(&[0xff, 0]));
    }

    #[test]
    fn t_str_utf8_and_utf16() {
        assert_eq!(ok("str_utf8", vec![s("abc 你好")]), s("abc 你好"));
        assert_eq!(
            ok("str_utf8", vec![json(r#"{"a":"abc 你好"}"#)]),
            s(r#"{"a":"abc 你好"}"#)
        );
        assert_eq!(ok("str_utf8", vec![f(2.0)]), s("2.0"));
        fails("str_utf8", vec![b(&[0xff])]);
        let utf16 = |t: &str| b(&t.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<_>>());
        assert_eq!(ok("str_utf16_le", vec![s("abc")]), utf16("abc"));
        assert_eq!(ok("str_utf16_le", vec![s("你好🐸")]), utf16("你好🐸"));
        assert_eq!(ok("str_utf16_le", vec![i(1)]), utf16("1"));
        assert_eq!(ok("str_utf16_le", vec![Value::Bool(true)]), utf16("true"));
        assert_eq!(ok("str_utf16_le", vec![json(r#"{"a":1}"#)]), utf16(r#"{"a":1}"#));
        fails("str_utf16_le", vec![b(&[0xc3])]);
    }

    #[test]
    fn t_int() {
        assert_eq!(ok("int", vec![s("1")]), i(1));
        assert_eq!(ok("int", vec![s("1.0")]), i(1));
        assert!(matches!(ok("int", vec![i(1)]), Value::Int(1)));
        assert!(matches!(ok("int", vec![f(1.9)]), Value::Int(1)));
        assert!(matches!(ok("int", vec![f(1.0001)]), Value::Int(1)));
        assert!(matches!(ok("int", vec![f(-3.14)]), Value::Int(-4)));
        assert_eq!(ok("int", vec![Value::Bool(true)]), i(1));
        assert_eq!(ok("int", vec![Value::Bool(false)]), i(0));
        assert_eq!(ok("int", vec![s("-100")]), i(-100));
        assert_eq!(ok("int", vec![s("+200")]), i(200));
        assert_eq!(ok("int", vec![s("0010")]), i(10));
        assert_eq!(ok("int", vec![s("3.1415e2")]), i(314));
        fails("int", vec![s("a")]);
        fails("int", vec![s("-100+200")]);
        fails("int", vec![s("Number 100")]);
        fails("int", vec![s("1e5")]);
        fails("int", vec![s("99999999999999999999")]);
        fails("int", vec![Value::Null]);
        fails("int", vec![json("{}")]);
    }

    #[test]
    fn t_float() {
        assert_eq!(ok("float", vec![s("1.0")]), f(1.0));
        assert!(matches!(ok("float", vec![i(1)]), Value::Float(x) if x == 1.0));
        assert_eq!(ok("float", vec![f(1.9)]), f(1.9));
        assert_eq!(ok("float", vec![f(1.0000000001)]), f(1.0000000001));
        assert_eq!(ok("float", vec![s("20")]), f(20.0));
        assert_eq!(ok("float", vec![s("3.14e4")]), f(31400.0));
        assert_eq!(ok("float", vec![s("3.14e+4")]), f(31400.0));
        assert_eq!(ok("float", vec![s("3.14E-4")]), f(0.000314));
        assert_eq!(ok("float", vec![s("0.12345678901234567")]), f(0.12345678901234566));
        assert_eq!(ok("float", vec![s("99999999999999999999")]), f(1e20));
        fails("float", vec![s("a")]);
        fails("float", vec![s("1.")]);
        fails("float", vec![Value::Bool(true)]);
        fails("float", vec![Value::Null]);
    }

    #[test]
    fn t_float_with_decimals() {
        assert_eq!(ok("float", vec![s("3.1415926"), i(3)]), f(3.142));
        assert_eq!(ok("float", vec![s("0.000012345"), i(5)]), f(0.00001));
        assert_eq!(ok("float", vec![i(2), i(2)]), f(2.0));
        fails("float", vec![f(1.5), i(0)]);
        fails("float", vec![f(1.5), i(254)]);
        fails("float", vec![f(1.5), s("2")]);
    }

    #[test]
    fn t_float2str() {
        assert_eq!(ok("float2str", vec![f(20.2), i(1)]), s("20.2"));
        assert_eq!(ok("float2str", vec![f(20.2), i(10)]), s("20.2"));
        assert_eq!(ok("float2str", vec![f(20.2), i(15)]), s("20.199999999999999"));
        assert_eq!(ok("float2str", vec![f(20.2), i(16)]), s("20.1999999999999993"));
        assert_eq!(ok("float2str", vec![f(0.1), i(20)]), s("0.10000000000000000555"));
        assert_eq!(ok("float2str", vec![f(0.100001), i(5)]), s("0.1"));
        assert_eq!(ok("float2str", vec![f(0.00000000001), i(20)]), s("0.00000000001"));
        assert_eq!(
            ok("float2str", vec![f(123456789.01234565), i(8)]),
            s("123456789.01234566")
        );
        fails("float2str", vec![i(20), i(2)]);
        fails("float2str", vec![f(1.0), i(-1)]);
        fails("float2str", vec![f(1.0), i(254)]);
    }

    #[test]
    fn t_bool() {
        assert_eq!(ok("bool", vec![i(1)]), Value::Bool(true));
        assert_eq!(ok("bool", vec![f(1.0)]), Value::Bool(true));
        assert_eq!(ok("bool", vec![i(0)]), Value::Bool(false));
        assert_eq!(ok("bool", vec![f(0.0)]), Value::Bool(false));
        assert_eq!(ok("bool", vec![Value::Bool(true)]), Value::Bool(true));
        assert_eq!(ok("bool", vec![s("true")]), Value::Bool(true));
        assert_eq!(ok("bool", vec![s("false")]), Value::Bool(false));
        fails("bool", vec![i(3)]);
        fails("bool", vec![s("True")]);
        fails("bool", vec![Value::Null]);
    }

    #[test]
    fn t_map() {
        assert_eq!(ok("map", vec![s(r#"{"a":1}"#)]), json(r#"{"a":1}"#));
        assert_eq!(ok("map", vec![json(r#"{"a":1}"#)]), json(r#"{"a":1}"#));
        assert_eq!(
            ok("map", vec![arr(vec![strs(&["ver", "1.0"]), strs(&["name", "emqx"])])]),
            json(r#"{"ver":"1.0","name":"emqx"}"#)
        );
        assert_eq!(ok("map", vec![arr(vec![])]), json("{}"));
        fails("map", vec![s("a")]);
        fails("map", vec![s("[1]")]);
        fails("map", vec![f(1.0)]);
        fails("map", vec![arr(vec![i(1)])]);
    }

    #[test]
    fn t_hex() {
        assert_eq!(ok("hexstr2bin", vec![s("6364f")]), b(&[6, 54, 79]));
        assert_eq!(ok("hexstr2bin", vec![s("a")]), b(&[10]));
        assert_eq!(ok("hexstr2bin", vec![s("0102")]), b(&[1, 2]));
        assert_eq!(ok("hexstr2bin", vec![s("1121")]), b(&[17, 33]));
        assert_eq!(ok("hexstr2bin", vec![s("0x6364f"), s("0x")]), b(&[6, 54, 79]));
        assert_eq!(ok("hexstr2bin", vec![s("0Xa"), s("0X")]), b(&[10]));
        let e = call("hexstr2bin", vec![s("0x6364f"), s("ab")]).unwrap_err();
        assert_eq!(e.message, "binary_prefix_unmatch");
        fails("hexstr2bin", vec![s("0bf"), s("你好👋")]);
        fails("hexstr2bin", vec![s("zz")]);
        fails("hexstr2bin", vec![i(12)]);
        assert_eq!(ok("bin2hexstr", vec![b(&[1, 2])]), s("0102"));
        assert_eq!(ok("bin2hexstr", vec![b(&[17, 33])]), s("1121"));
        assert_eq!(ok("bin2hexstr", vec![b(&[1, 2]), s("0x")]), s("0x0102"));
        assert_eq!(ok("bin2hexstr", vec![b(&[1, 2]), s("🧠")]), s("🧠0102"));
        assert_eq!(ok("bin2hexstr", vec![b(&[1, 2]), Value::Null]), s("0102"));
        fails("bin2hexstr", vec![i(1)]);
        assert_eq!(ok("sqlserver_bin2hexstr", vec![b(&[17, 33])]), s("0x1121"));
        assert_eq!(ok("sqlserver_bin2hexstr", vec![s("")]), s("0x"));
        fails("sqlserver_bin2hexstr", vec![i(1)]);
        // Round trip, as the suite's property.
        let all: Vec<u8> = (0..=255).collect();
        let hexed = ok("bin2hexstr", vec![b(&all)]);
        assert_eq!(ok("hexstr2bin", vec![hexed]), b(&all));
    }

    #[test]
    fn t_is_predicates() {
        assert_eq!(ok("is_null", vec![Value::Null]), Value::Bool(true));
        assert_eq!(ok("is_null", vec![s("undefined")]), Value::Bool(false));
        assert_eq!(ok("is_null", vec![s("")]), Value::Bool(false));
        assert_eq!(ok("is_null_var", vec![json("null")]), Value::Bool(true));
        assert_eq!(ok("is_null_var", vec![s("null")]), Value::Bool(false));
        for v in [Value::Null, s("undefined"), s("null"), s(""), i(0)] {
            let n = ok("is_null", vec![v.clone()]);
            assert_eq!(ok("is_not_null", vec![v.clone()]), Value::Bool(n != Value::Bool(true)));
            assert_eq!(ok("is_not_null_var", vec![v]), Value::Bool(n != Value::Bool(true)));
        }
        for v in [s("a"), s(""), b(&[1])] {
            assert_eq!(ok("is_str", vec![v]), Value::Bool(true));
        }
        for v in [i(1), Value::Null, strs(&["a"])] {
            assert_eq!(ok("is_str", vec![v]), Value::Bool(false));
        }
        assert_eq!(ok("is_bool", vec![Value::Bool(false)]), Value::Bool(true));
        assert_eq!(ok("is_bool", vec![s("true")]), Value::Bool(false));
        assert_eq!(ok("is_bool", vec![i(2)]), Value::Bool(false));
        assert_eq!(ok("is_int", vec![i(-1)]), Value::Bool(true));
        assert_eq!(ok("is_int", vec![f(1.1)]), Value::Bool(false));
        assert_eq!(ok("is_int", vec![s("1")]), Value::Bool(false));
        assert_eq!(ok("is_float", vec![f(2.0)]), Value::Bool(true));
        assert_eq!(ok("is_float", vec![i(1)]), Value::Bool(false));
        assert_eq!(ok("is_float", vec![s("")]), Value::Bool(false));
        assert_eq!(ok("is_num", vec![f(-1.2)]), Value::Bool(true));
        assert_eq!(ok("is_num", vec![i(1)]), Value::Bool(true));
        assert_eq!(ok("is_num", vec![s("123")]), Value::Bool(false));
        assert_eq!(ok("is_map", vec![json("{}")]), Value::Bool(true));
        assert_eq!(ok("is_map", vec![json("[]")]), Value::Bool(false));
        assert_eq!(ok("is_map", vec![s("{}")]), Value::Bool(false));
        assert_eq!(ok("is_array", vec![json("[1,2]")]), Value::Bool(true));
        assert_eq!(ok("is_array", vec![s("[1, 2]")]), Value::Bool(false));
        assert_eq!(ok("is_array", vec![f(0.5)]), Value::Bool(false));
    }

    #[test]
    fn t_is_empty() {
        for v in [json("[]"), json("{}"), s("{}"), s("")] {
            assert_eq!(ok("is_empty", vec![v]), Value::Bool(true));
        }
        for v in [json("[1]"), json(r#"{"a":"b"}"#), s(r#"{"a" : "b"}"#)] {
            assert_eq!(ok("is_empty", vec![v]), Value::Bool(false));
        }
        fails("is_empty", vec![s("abc")]);
        fails("is_empty", vec![i(1)]);
        fails("is_empty", vec![Value::Null]);
    }
}

//! Map and array functions.
//!
//! `map_get`/`map_put` take a dot-separated path (`'a.b.c'`) and, like EMQX's
//! `emqx_rule_maps`, look inside strings holding JSON objects on the way.
//! `mget`/`mput` take a single key, or an array of keys for a nested map (as EMQX's
//! documentation has it: `mget(['a', 'b'], json_decode('{"a": {"b": 1}}')) = 1`; EMQX's
//! code takes the array as one opaque key instead, which gives `undefined` there but the
//! same result when `mput` wrote the value). Maps keep insertion order (EMQX's are
//! unordered, sorted for small maps), so `map_keys` and friends list keys in
//! the order they were inserted.

use std::sync::Arc;

use super::convert::to_map;
use super::{arg, arg_array, arg_int, array_out, as_bin, bad_arg, err, exact_eq, map_out, FnDef, FnError};
use crate::rules::value::{Map, Value};

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "map_new",
        min_args: 0,
        max_args: Some(0),
        f: map_new,
    },
    FnDef {
        name: "map_get",
        min_args: 2,
        max_args: Some(3),
        f: map_get,
    },
    FnDef {
        name: "map_put",
        min_args: 3,
        max_args: Some(3),
        f: map_put,
    },
    FnDef {
        name: "map_keys",
        min_args: 1,
        max_args: Some(1),
        f: map_keys,
    },
    FnDef {
        name: "map_values",
        min_args: 1,
        max_args: Some(1),
        f: map_values,
    },
    FnDef {
        name: "map_to_entries",
        min_args: 1,
        max_args: Some(1),
        f: map_to_entries,
    },
    FnDef {
        name: "map_size",
        min_args: 1,
        max_args: Some(1),
        f: map_size,
    },
    FnDef {
        name: "mget",
        min_args: 2,
        max_args: Some(3),
        f: mget,
    },
    FnDef {
        name: "mput",
        min_args: 3,
        max_args: Some(3),
        f: mput,
    },
    FnDef {
        name: "nth",
        min_args: 2,
        max_args: Some(2),
        f: nth,
    },
    FnDef {
        name: "length",
        min_args: 1,
        max_args: Some(1),
        f: length,
    },
    FnDef {
        name: "sublist",
        min_args: 2,
        max_args: Some(3),
        f: sublist,
    },
    FnDef {
        name: "first",
        min_args: 1,
        max_args: Some(1),
        f: first,
    },
    FnDef {
        name: "last",
        min_args: 1,
        max_args: Some(1),
        f: last,
    },
    FnDef {
        name: "contains",
        min_args: 2,
        max_args: Some(2),
        f: contains,
    },
];

/// The deepest path `map_get`/`map_put` follow (JSON nests at most 128 levels too).
const MAX_DEPTH: usize = 128;

fn map_new(_args: &[Value]) -> Result<Value, FnError> {
    Ok(map_out(Map::default()))
}

/// The dot-separated path of a key argument.
fn path<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<Vec<&'a str>, FnError> {
    let key = super::arg_text(function, args, i)?;
    let keys: Vec<&str> = key.split('.').collect();
    if keys.len() > MAX_DEPTH {
        return Err(err(function, format!("a path has at most {MAX_DEPTH} levels")));
    }
    Ok(keys)
}

/// One step of a path lookup: maps directly, strings as JSON objects.
fn get_field(data: &Value, key: &str) -> Option<Value> {
    match data {
        Value::Map(m) => m.get(key).cloned(),
        Value::Str(_) | Value::Bytes(_) => {
            let j: serde_json::Value = serde_json::from_slice(as_bin(data)?).ok()?;
            match j {
                serde_json::Value::Object(mut o) => o.remove(key).map(|v| Value::from_json(&v)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `map_get(Path, Map[, Default])`: `Default` (or undefined) when any step is
/// missing. A JSON `null` found at the end is returned as it is (EMQX's `null`).
fn map_get(args: &[Value]) -> Result<Value, FnError> {
    let keys = path("map_get", args, 0)?;
    let default = args.get(2).cloned().unwrap_or(Value::Null);
    let mut cur = arg("map_get", args, 1)?.clone();
    for key in keys {
        match get_field(&cur, key) {
            None => return Ok(default),
            Some(v) => cur = v,
        }
    }
    Ok(cur)
}

/// `map_put(Path, Value, Map)`: a map with the value at the path, creating maps
/// on the way (a value in the way that is not a map is replaced by one).
fn map_put(args: &[Value]) -> Result<Value, FnError> {
    let keys = path("map_put", args, 0)?;
    let val = arg("map_put", args, 1)?.clone();
    let data = arg("map_put", args, 2)?;
    let start = match data {
        Value::Map(_) => data.clone(),
        _ => Value::Null,
    };
    Ok(put_path(&start, &keys, val))
}

fn put_path(data: &Value, keys: &[&str], val: Value) -> Value {
    let Some((key, rest)) = keys.split_first() else {
        return val;
    };
    let sub = get_field(data, key).unwrap_or(Value::Null);
    let new_sub = put_path(&sub, rest, val);
    let mut m = match data {
        Value::Map(m) => Map::clone(&**m),
        _ => Map::default(),
    };
    m.insert(Arc::from(*key), new_sub);
    map_out(m)
}

/// The keys of an `mget`/`mput` key argument: one key (a dot is part of it), or an array
/// of keys for a nested map.
fn mkeys<'a>(function: &'static str, args: &'a [Value]) -> Result<Vec<&'a str>, FnError> {
    let text = |v: &'a Value| match v {
        Value::Str(s) => Some(&**s),
        Value::Bytes(b) => std::str::from_utf8(b).ok(),
        _ => None,
    };
    match arg(function, args, 0)? {
        Value::Array(keys) => {
            if keys.is_empty() || keys.len() > MAX_DEPTH {
                return Err(err(
                    function,
                    format!("argument 1: an array of 1 to {MAX_DEPTH} keys, got {}", keys.len()),
                ));
            }
            keys.iter()
                .map(|k| text(k).ok_or_else(|| bad_arg(function, 0, "an array of strings", k)))
                .collect()
        }
        k => text(k)
            .map(|k| vec![k])
            .ok_or_else(|| bad_arg(function, 0, "a string or an array of strings", k)),
    }
}

/// `mget(Key, Map[, Default])`: a single key (no path), or an array of keys into nested
/// maps; `Map` may be a JSON object string.
fn mget(args: &[Value]) -> Result<Value, FnError> {
    let m = to_map("mget", arg("mget", args, 1)?)?;
    let default = args.get(2).cloned().unwrap_or(Value::Null);
    // EMQX's mget takes any term as a key; a key that is no string finds nothing.
    let Ok(keys) = mkeys("mget", args) else {
        return Ok(default);
    };
    let Some((first, rest)) = keys.split_first() else {
        return Ok(default);
    };
    let mut cur = match m.get(*first) {
        Some(v) => v.clone(),
        None => return Ok(default),
    };
    for key in rest {
        cur = match &cur {
            Value::Map(m) => match m.get(*key) {
                Some(v) => v.clone(),
                None => return Ok(default),
            },
            _ => return Ok(default),
        };
    }
    Ok(cur)
}

/// `mput(Key, Value, Map)`: a single key (no path), or an array of keys into nested maps
/// (created, or replacing what is not a map, on the way); `Map` may be a JSON object string.
fn mput(args: &[Value]) -> Result<Value, FnError> {
    let keys = mkeys("mput", args)?;
    let val = arg("mput", args, 1)?.clone();
    let m = to_map("mput", arg("mput", args, 2)?)?;
    Ok(mput_in(Value::Map(m), &keys, val))
}

fn mput_in(data: Value, keys: &[&str], val: Value) -> Value {
    let Some((key, rest)) = keys.split_first() else {
        return val;
    };
    let mut m = match data {
        Value::Map(m) => Arc::unwrap_or_clone(m),
        _ => Map::default(),
    };
    let sub = m.get(*key).cloned().unwrap_or(Value::Null);
    m.insert(Arc::from(*key), mput_in(sub, rest, val));
    map_out(m)
}

fn map_keys(args: &[Value]) -> Result<Value, FnError> {
    let m = to_map("map_keys", arg("map_keys", args, 0)?)?;
    Ok(array_out(m.keys().map(|k| Value::Str(k.clone())).collect()))
}

fn map_values(args: &[Value]) -> Result<Value, FnError> {
    let m = to_map("map_values", arg("map_values", args, 0)?)?;
    Ok(array_out(m.values().cloned().collect()))
}

/// `[{"key": K, "value": V}, ...]`.
fn map_to_entries(args: &[Value]) -> Result<Value, FnError> {
    let m = to_map("map_to_entries", arg("map_to_entries", args, 0)?)?;
    let entries = m
        .iter()
        .map(|(k, v)| {
            let mut e = Map::with_capacity_and_hasher(2, Default::default());
            e.insert(Arc::from("key"), Value::Str(k.clone()));
            e.insert(Arc::from("value"), v.clone());
            map_out(e)
        })
        .collect();
    Ok(array_out(entries))
}

fn map_size(args: &[Value]) -> Result<Value, FnError> {
    let m = to_map("map_size", arg("map_size", args, 0)?)?;
    Ok(Value::Int(m.len() as i64))
}

/// `nth(N, Array)`, 1-based; out of range is an error.
fn nth(args: &[Value]) -> Result<Value, FnError> {
    let n = arg_int("nth", args, 0)?;
    let list = arg_array("nth", args, 1)?;
    usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|k| list.get(k))
        .cloned()
        .ok_or_else(|| err("nth", format!("index {n} out of range 1..{}", list.len())))
}

fn length(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(arg_array("length", args, 0)?.len() as i64))
}

/// `sublist(Len, Array)` or `sublist(Start, Len, Array)` (Start 1-based, up to length + 1).
fn sublist(args: &[Value]) -> Result<Value, FnError> {
    let (start, len, list) = if args.len() == 2 {
        (1, arg_int("sublist", args, 0)?, arg_array("sublist", args, 1)?)
    } else {
        (
            arg_int("sublist", args, 0)?,
            arg_int("sublist", args, 1)?,
            arg_array("sublist", args, 2)?,
        )
    };
    let len = usize::try_from(len).map_err(|_| err("sublist", "length must not be negative"))?;
    let from = usize::try_from(start)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .filter(|s| *s <= list.len())
        .ok_or_else(|| err("sublist", format!("start {start} out of range 1..{}", list.len() + 1)))?;
    let to = from.saturating_add(len).min(list.len());
    Ok(array_out(list[from..to].to_vec()))
}

fn first(args: &[Value]) -> Result<Value, FnError> {
    arg_array("first", args, 0)?
        .first()
        .cloned()
        .ok_or_else(|| err("first", "empty array"))
}

fn last(args: &[Value]) -> Result<Value, FnError> {
    arg_array("last", args, 0)?
        .last()
        .cloned()
        .ok_or_else(|| err("last", "empty array"))
}

/// `contains(Item, Array)`, with Erlang's exact equality (`1` is not `1.0`).
fn contains(args: &[Value]) -> Result<Value, FnError> {
    let item = arg("contains", args, 0)?;
    let list = match arg("contains", args, 1)? {
        Value::Array(a) => a,
        v => return Err(bad_arg("contains", 1, "an array", v)),
    };
    Ok(Value::Bool(list.iter().any(|x| exact_eq(x, item))))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn t(x: bool) -> Value {
        Value::Bool(x)
    }

    #[test]
    fn t_map_new_get() {
        assert_eq!(ok("map_new", vec![]), json("{}"));
        assert_eq!(
            ok("map_put", vec![s("k"), i(1), ok("map_new", vec![])]),
            json(r#"{"k":1}"#)
        );
        fails("map_new", vec![json("{}")]);
        assert_eq!(ok("map_get", vec![s("a"), json(r#"{"a":1}"#)]), i(1));
        assert_eq!(ok("map_get", vec![s("a"), json("{}")]), Value::Null);
        assert_eq!(ok("map_get", vec![s("a.b"), json(r#"{"a":{"b":1}}"#)]), i(1));
        assert_eq!(ok("map_get", vec![s("a.c"), json(r#"{"a":{"b":1}}"#)]), Value::Null);
        assert_eq!(ok("map_get", vec![s("msg"), s(r#"{"msg": "hello"}"#)]), s("hello"));
        assert_eq!(ok("map_get", vec![s("a.b"), json(r#"{"a":"{\"b\":2}"}"#)]), i(2));
        assert_eq!(ok("map_get", vec![s("data"), json(r#"{"msg":"hello"}"#), s("")]), s(""));
        assert_eq!(
            ok("map_get", vec![s("value"), json(r#"{"data":[1.2]}"#), json("[]")]),
            json("[]")
        );
        assert_eq!(ok("map_get", vec![s("a"), i(5)]), Value::Null);
        fails("map_get", vec![i(1), json("{}")]);
        fails("map_get", vec![Value::Null, json("{}")]);
    }

    #[test]
    fn t_map_put() {
        assert_eq!(ok("map_put", vec![s("a"), i(1), json("{}")]), json(r#"{"a":1}"#));
        assert_eq!(
            ok("map_put", vec![s("a"), i(2), json(r#"{"a":1}"#)]),
            json(r#"{"a":2}"#)
        );
        assert_eq!(
            ok("map_put", vec![s("a.b"), i(1), json("{}")]),
            json(r#"{"a":{"b":1}}"#)
        );
        assert_eq!(
            ok("map_put", vec![s("a.c"), i(1), json(r#"{"a":{"b":1}}"#)]),
            json(r#"{"a":{"b":1,"c":1}}"#)
        );
        assert_eq!(ok("map_put", vec![s("a"), i(1), s(r#"{"b":1}"#)]), json(r#"{"a":1}"#));
        assert_eq!(
            ok("map_put", vec![s("a.b"), i(1), json(r#"{"a":5}"#)]),
            json(r#"{"a":{"b":1}}"#)
        );
        fails("map_put", vec![i(1), i(1), json("{}")]);
        fails("map_put", vec![s(&"a.".repeat(200)), i(1), json("{}")]);
    }

    #[test]
    fn t_mget_mput() {
        assert_eq!(ok("mget", vec![s("a"), json(r#"{"a":1}"#)]), i(1));
        assert_eq!(ok("mget", vec![s("a"), s(r#"{"a" : 1}"#)]), i(1));
        assert_eq!(ok("mget", vec![s("a.b"), json(r#"{"a.b":1}"#)]), i(1));
        assert_eq!(ok("mget", vec![s("a"), json("{}")]), Value::Null);
        assert_eq!(ok("mget", vec![s("a"), json("{}"), i(0)]), i(0));
        fails("mget", vec![s("a"), s("not json")]);
        fails("mget", vec![s("a"), i(1)]);
        assert_eq!(ok("mput", vec![s("a"), i(1), json("{}")]), json(r#"{"a":1}"#));
        assert_eq!(ok("mput", vec![s("a"), i(2), json(r#"{"a":1}"#)]), json(r#"{"a":2}"#));
        assert_eq!(ok("mput", vec![s("a"), i(2), s(r#"{"a" : 1}"#)]), json(r#"{"a":2}"#));
        assert_eq!(
            ok("mput", vec![s("a.b"), i(2), json(r#"{"a.b":1}"#)]),
            json(r#"{"a.b":2}"#)
        );
        fails("mput", vec![s("a"), i(1), s("[]")]);
        fails("mput", vec![i(1), i(1), json("{}")]);
        // An array of keys walks nested maps (EMQX's documentation).
        let nested = json(r#"{"a":{"b":1}}"#);
        assert_eq!(ok("mget", vec![strs(&["a", "b"]), nested.clone()]), i(1));
        assert_eq!(ok("mget", vec![strs(&["a", "c"]), nested.clone(), i(0)]), i(0));
        assert_eq!(ok("mget", vec![strs(&["a", "b", "c"]), nested.clone()]), Value::Null);
        assert_eq!(ok("mget", vec![i(1), nested.clone()]), Value::Null);
        assert_eq!(
            ok("mput", vec![strs(&["a", "b"]), i(2), nested.clone()]),
            json(r#"{"a":{"b":2}}"#)
        );
        assert_eq!(
            ok("mput", vec![strs(&["a", "b"]), i(2), json(r#"{"c":1}"#)]),
            json(r#"{"c":1,"a":{"b":2}}"#)
        );
        assert_eq!(
            ok("mput", vec![strs(&["a", "x"]), i(2), json(r#"{"a":3}"#)]),
            json(r#"{"a":{"x":2}}"#)
        );
        fails("mput", vec![arr(vec![]), i(1), json("{}")]);
        fails("mput", vec![arr(vec![i(1)]), i(1), json("{}")]);
    }

    #[test]
    fn t_map_keys_values_entries_size() {
        let m = json(r#"{"a":1,"b":"b"}"#);
        assert_eq!(ok("map_keys", vec![m.clone()]), strs(&["a", "b"]));
        assert_eq!(ok("map_keys", vec![s(r#"{"a":1,"b":2}"#)]), strs(&["a", "b"]));
        assert_eq!(ok("map_values", vec![m.clone()]), arr(vec![i(1), s("b")]));
        assert_eq!(ok("map_to_entries", vec![json("{}")]), json("[]"));
        assert_eq!(
            ok("map_to_entries", vec![m.clone()]),
            json(r#"[{"key":"a","value":1},{"key":"b","value":"b"}]"#)
        );
        assert_eq!(
            ok("map_to_entries", vec![s(r#"{"a":1,"b":"b"}"#)]),
            json(r#"[{"key":"a","value":1},{"key":"b","value":"b"}]"#)
        );
        assert_eq!(ok("map_size", vec![json("{}")]), i(0));
        assert_eq!(ok("map_size", vec![m]), i(2));
        assert_eq!(ok("map_size", vec![json("[]")]), i(0));
        assert_eq!(ok("map_size", vec![arr(vec![strs(&["a", "b"])])]), i(1));
        assert_eq!(ok("map_size", vec![s("{}")]), i(0));
        assert_eq!(ok("map_size", vec![s(r#"{"a" : "b"}"#)]), i(1));
        fails("map_keys", vec![i(1)]);
        fails("map_values", vec![s("x")]);
        fails("map_to_entries", vec![Value::Null]);
        fails("map_size", vec![f(1.0)]);
    }

    #[test]
    fn t_nth_length() {
        let l = json("[1,2,3,4]");
        assert_eq!(ok("nth", vec![i(2), l.clone()]), i(2));
        assert_eq!(ok("nth", vec![i(4), l.clone()]), i(4));
        fails("nth", vec![i(0), l.clone()]);
        fails("nth", vec![i(5), l.clone()]);
        fails("nth", vec![s("1"), l.clone()]);
        assert_eq!(ok("length", vec![l]), i(4));
        assert_eq!(ok("length", vec![json("[]")]), i(0));
        fails("length", vec![s("abc")]);
    }

    #[test]
    fn t_sublist() {
        let l = json("[1,2,3,4]");
        assert_eq!(ok("sublist", vec![i(4), l.clone()]), json("[1,2,3,4]"));
        assert_eq!(ok("sublist", vec![i(2), l.clone()]), json("[1,2]"));
        assert_eq!(ok("sublist", vec![i(10), l.clone()]), json("[1,2,3,4]"));
        assert_eq!(ok("sublist", vec![i(4), i(1), l.clone()]), json("[4]"));
        assert_eq!(ok("sublist", vec![i(4), i(2), l.clone()]), json("[4]"));
        assert_eq!(ok("sublist", vec![i(5), i(2), l.clone()]), json("[]"));
        assert_eq!(ok("sublist", vec![i(2), i(2), l.clone()]), json("[2,3]"));
        assert_eq!(ok("sublist", vec![i(1), i(1), l.clone()]), json("[1]"));
        assert_eq!(ok("sublist", vec![i(2), i(10), l.clone()]), json("[2,3,4]"));
        fails("sublist", vec![i(6), i(1), l.clone()]);
        fails("sublist", vec![i(0), i(1), l.clone()]);
        fails("sublist", vec![i(-1), l]);
    }

    #[test]
    fn t_first_last() {
        assert_eq!(ok("first", vec![json("[1,2,3,4]")]), i(1));
        assert_eq!(ok("last", vec![json("[1,2,3,4]")]), i(4));
        assert_eq!(ok("first", vec![strs(&["John", "David"])]), s("John"));
        fails("first", vec![json("[]")]);
        fails("last", vec![json("[]")]);
        fails("last", vec![s("ab")]);
    }

    #[test]
    fn t_contains() {
        assert_eq!(ok("contains", vec![i(1), json("[1,2,3,4]")]), t(true));
        assert_eq!(ok("contains", vec![i(3), json("[1,2,3,4]")]), t(true));
        assert_eq!(ok("contains", vec![s("a"), json(r#"["","ab",3,"a"]"#)]), t(true));
        assert_eq!(
            ok("contains", vec![json(r#"{"a":"b"}"#), json(r#"[{"a":1},{"a":"b"}]"#)]),
            t(true)
        );
        assert_eq!(
            ok("contains", vec![json(r#"{"a":"b"}"#), json(r#"[{"a":1}]"#)]),
            t(false)
        );
        assert_eq!(ok("contains", vec![i(3), json("[1,2]")]), t(false));
        assert_eq!(ok("contains", vec![s("c"), json(r#"["","ab",3,"a"]"#)]), t(false));
        assert_eq!(ok("contains", vec![f(2.0), json("[1.8,2.5,2]")]), t(false));
        assert_eq!(ok("contains", vec![json("[1,2]"), json(r#"["a","b",[1,2]]"#)]), t(true));
        fails("contains", vec![i(1), s("1")]);
    }
}

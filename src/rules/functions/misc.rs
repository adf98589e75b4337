//! UUIDs, MongoDB dates, topic-filter checks and `coalesce`.

use super::time::{now_in, to_rfc3339};
use super::{arg_array, arg_int, arg_time_unit, err, exact_eq, text_out, FnDef, FnError, TimeUnit};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "uuid_v4",
        min_args: 0,
        max_args: Some(0),
        f: uuid_v4,
    },
    FnDef {
        name: "uuid_v4_no_hyphen",
        min_args: 0,
        max_args: Some(0),
        f: uuid_v4_no_hyphen,
    },
    FnDef {
        name: "mongo_date",
        min_args: 0,
        max_args: Some(2),
        f: mongo_date,
    },
    FnDef {
        name: "contains_topic",
        min_args: 2,
        max_args: Some(3),
        f: contains_topic,
    },
    FnDef {
        name: "contains_topic_match",
        min_args: 2,
        max_args: Some(3),
        f: contains_topic_match,
    },
    FnDef {
        name: "coalesce",
        min_args: 1,
        max_args: Some(2),
        f: coalesce,
    },
    FnDef {
        name: "coalesce_ne",
        min_args: 1,
        max_args: Some(2),
        f: coalesce_ne,
    },
];

fn uuid_v4(_args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(uuid::Uuid::new_v4().hyphenated().to_string()))
}

fn uuid_v4_no_hyphen(_args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(uuid::Uuid::new_v4().simple().to_string()))
}

/// `mongo_date([Timestamp[, Unit]])`: the time (now, or `Timestamp` in `Unit`,
/// default milliseconds) as EMQX's rule tester shows a MongoDB date:
/// `ISODate(2024-02-23T15:00:00.123Z)`. (EMQX hands MongoDB actions an Erlang
/// timestamp tuple instead; Junction has no such value, so a MongoDB action
/// must recognise this form.)
fn mongo_date(args: &[Value]) -> Result<Value, FnError> {
    let ms = match args.len() {
        0 => now_in(TimeUnit::Millisecond),
        1 => arg_int("mongo_date", args, 0)?,
        _ => {
            let t = arg_int("mongo_date", args, 0)?;
            let unit = arg_time_unit("mongo_date", args, 1)?;
            let (num, den) = (i128::from(t) * 1000, i128::from(unit.per_second()));
            i64::try_from(num.div_euclid(den)).map_err(|_| err("mongo_date", "time out of range"))?
        }
    };
    let text = to_rfc3339("mongo_date", ms, TimeUnit::Millisecond, true)?;
    Ok(text_out(format!("ISODate({text})")))
}

/// MQTT topic matching (`emqx_topic:match/2`): `+` one level, `#` the rest;
/// a name starting with `$` is not matched by a leading wildcard.
fn topic_match(name: &str, filter: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut n = name.split('/');
    let mut f = filter.split('/');
    loop {
        match (n.next(), f.next()) {
            (_, Some("#")) => return true,
            (Some(_), Some("+")) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Shared by `contains_topic` (equality) and `contains_topic_match`: whether a
/// topic filter list (`[{"topic": T, "qos": Q}, ...]`, e.g. a subscribe
/// event's `topic_filters`) has an entry whose topic matches `Topic`
/// (`match(EntryTopic, Topic)`, Topic acting as the filter) and, with a third
/// argument, whose QoS is that one.
fn topic_filter_check(
    function: &'static str,
    args: &[Value],
    matches: fn(&str, &str) -> bool,
) -> Result<Value, FnError> {
    let filters = arg_array(function, args, 0)?;
    let topic = super::arg_text(function, args, 1)?;
    let qos = args.get(2);
    for entry in filters {
        let Value::Map(m) = entry else { continue };
        let Some(Value::Str(t)) = m.get("topic") else { continue };
        if matches(t, topic) {
            // The first entry that matches decides.
            return Ok(Value::Bool(match qos {
                None => true,
                Some(q) => m.get("qos").is_some_and(|mq| exact_eq(mq, q)),
            }));
        }
    }
    Ok(Value::Bool(false))
}

fn contains_topic(args: &[Value]) -> Result<Value, FnError> {
    topic_filter_check("contains_topic", args, |a, b| a == b)
}

fn contains_topic_match(args: &[Value]) -> Result<Value, FnError> {
    topic_filter_check("contains_topic_match", args, topic_match)
}

/// The values to consider: `coalesce(A, B)` or `coalesce([A, B, ...])`.
fn candidates<'a>(function: &'static str, args: &'a [Value]) -> Result<&'a [Value], FnError> {
    if args.len() == 1 {
        arg_array(function, args, 0)
    } else {
        Ok(args)
    }
}

/// The first value that is not undefined (undefined if none).
fn coalesce(args: &[Value]) -> Result<Value, FnError> {
    let items = candidates("coalesce", args)?;
    Ok(items.iter().find(|v| !v.is_null()).cloned().unwrap_or(Value::Null))
}

/// The first value that is not undefined nor empty ('' or, as Erlang's `""`, `[]`).
fn coalesce_ne(args: &[Value]) -> Result<Value, FnError> {
    let items = candidates("coalesce_ne", args)?;
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    Ok(items.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn t_uuid() {
        let Value::Str(a) = ok("uuid_v4", vec![]) else { panic!() };
        let Value::Str(b) = ok("uuid_v4", vec![]) else { panic!() };
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert_eq!(a.to_lowercase(), *a);
        let Value::Str(c) = ok("uuid_v4_no_hyphen", vec![]) else {
            panic!()
        };
        assert_eq!(c.len(), 32);
        assert!(c.chars().all(|x| x.is_ascii_hexdigit() && !x.is_ascii_uppercase()));
        assert_ne!(ok("uuid_v4_no_hyphen", vec![]), ok("uuid_v4_no_hyphen", vec![]));
        fails("uuid_v4_no_hyphen", vec![s("x")]);
        fails("uuid_v4", vec![i(1)]);
    }

    #[test]
    fn t_mongo_date() {
        assert_eq!(
            ok("mongo_date", vec![i(1708703337871)]),
            s("ISODate(2024-02-23T15:48:57.871Z)")
        );
        assert_eq!(
            ok("mongo_date", vec![i(1708703461232123), s("microsecond")]),
            s("ISODate(2024-02-23T15:51:01.232Z)")
        );
        assert_eq!(
            ok("mongo_date", vec![i(1708703461), s("second")]),
            s("ISODate(2024-02-23T15:51:01.000Z)")
        );
        let Value::Str(now) = ok("mongo_date", vec![]) else {
            panic!()
        };
        assert!(now.starts_with("ISODate(20") && now.ends_with("Z)"), "{now}");
        fails("mongo_date", vec![s("1708703337871")]);
        fails("mongo_date", vec![i(1), s("hours")]);
    }

    #[test]
    fn t_contains_topic() {
        let filters = json(r#"[{"topic":"t/1","qos":1},{"topic":"t/#","qos":0},{"qos":2}]"#);
        assert_eq!(ok("contains_topic", vec![filters.clone(), s("t/1")]), Value::Bool(true));
        assert_eq!(ok("contains_topic", vec![filters.clone(), s("t/#")]), Value::Bool(true));
        assert_eq!(
            ok("contains_topic", vec![filters.clone(), s("t/2")]),
            Value::Bool(false)
        );
        assert_eq!(
            ok("contains_topic", vec![filters.clone(), s("t/1"), i(1)]),
            Value::Bool(true)
        );
        assert_eq!(
            ok("contains_topic", vec![filters.clone(), s("t/1"), i(0)]),
            Value::Bool(false)
        );
        assert_eq!(ok("contains_topic", vec![json("[]"), s("t/1")]), Value::Bool(false));
        fails("contains_topic", vec![s("t/1"), s("t/1")]);
        fails("contains_topic", vec![filters, i(1)]);
    }

    #[test]
    fn t_contains_topic_match() {
        let filters = json(r#"[{"topic":"t/1/x","qos":1},{"topic":"$SYS/a","qos":0}]"#);
        assert_eq!(
            ok("contains_topic_match", vec![filters.clone(), s("t/#")]),
            Value::Bool(true)
        );
        assert_eq!(
            ok("contains_topic_match", vec![filters.clone(), s("t/+/x")]),
            Value::Bool(true)
        );
        assert_eq!(
            ok("contains_topic_match", vec![filters.clone(), s("t/+")]),
            Value::Bool(false)
        );
        assert_eq!(
            ok("contains_topic_match", vec![filters.clone(), s("#")]),
            Value::Bool(true)
        );
        assert_eq!(
            ok("contains_topic_match", vec![json(r#"[{"topic":"$SYS/a"}]"#), s("#")]),
            Value::Bool(false)
        );
        assert_eq!(
            ok("contains_topic_match", vec![filters.clone(), s("$SYS/#"), i(0)]),
            Value::Bool(true)
        );
        assert_eq!(
            ok("contains_topic_match", vec![filters.clone(), s("t/#"), i(2)]),
            Value::Bool(false)
        );
        assert!(topic_match("a/b", "a/b/#"));
        assert!(!topic_match("a", "a/+"));
        fails("contains_topic_match", vec![Value::Null, s("t/#")]);
    }

    #[test]
    fn t_coalesce() {
        assert_eq!(ok("coalesce", vec![json("[]")]), Value::Null);
        assert_eq!(ok("coalesce", vec![arr(vec![Value::Null, Value::Null])]), Value::Null);
        assert_eq!(ok("coalesce", vec![arr(vec![Value::Null, i(42), Value::Null])]), i(42));
        assert_eq!(ok("coalesce", vec![s("hello"), s("world")]), s("hello"));
        assert_eq!(ok("coalesce", vec![Value::Null, s("world")]), s("world"));
        assert_eq!(ok("coalesce", vec![s(""), s("world")]), s(""));
        fails("coalesce", vec![s("x")]);
    }

    #[test]
    fn t_coalesce_ne() {
        assert_eq!(ok("coalesce_ne", vec![json("[]")]), Value::Null);
        assert_eq!(
            ok("coalesce_ne", vec![arr(vec![s(""), Value::Null, json("[]")])]),
            Value::Null
        );
        assert_eq!(ok("coalesce_ne", vec![arr(vec![s(""), i(42), Value::Null])]), i(42));
        assert_eq!(ok("coalesce_ne", vec![s("hello"), s("")]), s("hello"));
        assert_eq!(ok("coalesce_ne", vec![s(""), s("world")]), s("world"));
        assert_eq!(ok("coalesce_ne", vec![b(b""), i(0)]), i(0));
        fails("coalesce_ne", vec![i(1)]);
    }
}

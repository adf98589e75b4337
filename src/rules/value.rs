//! The values rule SQL computes with, modelled on the Erlang terms EMQX's rule
//! engine uses: binaries (text or bytes), integers, floats, booleans, maps,
//! lists and `undefined` (our `Null`).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// An ordered map (field order is kept, as EMQX's output maps keep insertion order for JSON).
/// Hashed with ahash: building the event columns is on the per-message path.
pub type Map = indexmap::IndexMap<Arc<str>, Value, ahash::RandomState>;

/// A rule value.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// EMQX `undefined`: a missing field, a failed lookup.
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// UTF-8 text (an Erlang binary that is valid UTF-8).
    Str(Arc<str>),
    /// Bytes that are not (or need not be) text, e.g. a raw payload or `hexstr2bin` output.
    Bytes(Bytes),
    Array(Arc<Vec<Value>>),
    Map(Arc<Map>),
}

impl Value {
    pub fn str(s: impl Into<Arc<str>>) -> Value {
        Value::Str(s.into())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "undefined",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "binary",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }
}

impl PartialEq for Value {
    /// EMQX compares numbers by value across integer and float (`1 = 1.0`), and text with bytes by content.
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => (*a as f64) == *b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Str(a), Value::Bytes(b)) | (Value::Bytes(b), Value::Str(a)) => a.as_bytes() == &b[..],
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Map(a), Value::Map(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    /// The text form EMQX's `str()` gives.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("undefined"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
            Value::Array(_) | Value::Map(_) => f.write_str(&self.to_json().to_string()),
        }
    }
}

impl Value {
    /// JSON form (bytes that are not UTF-8 become a lossy string).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map(J::Number).unwrap_or(J::Null),
            Value::Str(s) => J::String(s.to_string()),
            Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Value::Array(a) => J::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect()),
        }
    }

    /// From JSON: integers stay integers, other numbers become floats.
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::str(s.as_str()),
            J::Array(a) => Value::Array(Arc::new(a.iter().map(Value::from_json).collect())),
            J::Object(o) => Value::Map(Arc::new(
                o.iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Value::from_json(v)))
                    .collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_and_text_with_bytes() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_ne!(Value::Int(1), Value::str("1"));
        assert_eq!(Value::str("ab"), Value::Bytes(Bytes::from_static(b"ab")));
    }

    #[test]
    fn json_round_trip_keeps_integers_and_order() {
        let j: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[1.5,"x",null,true]}"#).unwrap();
        let v = Value::from_json(&j);
        let Value::Map(m) = &v else { panic!("map expected") };
        assert_eq!(m.keys().map(|k| &**k).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(v.to_json(), j);
        assert_eq!(Value::Float(2.5).to_string(), "2.5");
    }
}

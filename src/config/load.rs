//! Loading: defaults, then a TOML file, then `JUNCTION_*` environment
//! variables, with every problem reported at its file position or variable.
//!
//! How it works: the file is parsed with `toml_edit` (which keeps spans) into
//! a small tree whose every node remembers where it came from; environment
//! variables are applied into that tree; then the tree is deserialized into
//! [`Config`] through a serde `Deserializer` that tags each error with the
//! key path and origin of the node at fault. To report *all* errors, a failed
//! key is recorded, removed from the tree (so its default applies), and the
//! deserialization is run again until it succeeds.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, value::StrDeserializer, DeserializeSeed, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde::Deserialize;

use super::diag::{line_col, suggest, ConfigError, Diagnostic, DiagnosticKind, Source};
use super::{Config, TOP_LEVEL_KEYS};

/// Prefix of the environment variables that override keys.
pub const ENV_PREFIX: &str = "JUNCTION_";

/// The file read when [`load`] is given no path, if it exists.
pub const DEFAULT_FILE: &str = "junction.toml";

/// Loads the configuration: built-in defaults, overridden by the TOML file at
/// `path` (or `./junction.toml` if `path` is `None` and that file exists),
/// overridden by the `JUNCTION_*` entries of `env`.
///
/// An entry is a config override when its name, after `JUNCTION_`, contains
/// `__` or is a section name (`MQTT`, `NODE`, ...): such entries that name no
/// key are errors. `JUNCTION_<SECTION>_<KEY>` (single underscore) is refused
/// as a typo. Other `JUNCTION_*` names (e.g. `JUNCTION_BIN`, used by the test
/// scripts) and non-`JUNCTION_` entries are ignored.
///
/// `env` is usually [`process_env()`]. Returns every problem found at once.
pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None => Some(Path::new(DEFAULT_FILE).to_path_buf()).filter(|p| p.exists()),
    };
    match path {
        None => load_sources(None, env),
        Some(p) => {
            let name = p.display().to_string();
            match std::fs::read_to_string(&p) {
                Ok(text) => load_sources(Some((&text, &name)), env),
                Err(e) => Err(ConfigError {
                    diagnostics: vec![Diagnostic {
                        source: Source::File(name),
                        line: 0,
                        col: 0,
                        key: String::new(),
                        message: format!("cannot read config file: {e}"),
                        kind: DiagnosticKind::Io,
                    }],
                }),
            }
        }
    }
}

/// Like [`load`] with the file's text given directly: `source_name` is the
/// name used in messages. For tests and embedding.
pub fn load_from_str(
    text: &str,
    source_name: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    load_sources(Some((text, source_name)), env)
}

/// The `JUNCTION_*` variables of this process (names or values that are not
/// valid Unicode are converted lossily rather than panicking).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

impl Config {
    /// Parses a TOML document over the defaults (no environment);
    /// `source_name` is the name used in messages (e.g. `"junction.toml"`).
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        load_sources(Some((text, source_name)), std::iter::empty())
    }
}

// ---------------------------------------------------------------------------
// the tree

/// Where a node came from.
#[derive(Debug, Clone, PartialEq)]
enum Pos {
    /// Built-in (a default listener table).
    Default,
    /// Byte offset in the file.
    File(usize),
    /// An environment variable.
    Env(String),
}

#[derive(Debug, Clone)]
struct Node {
    value: Value,
    /// Position of the key naming this node (for unknown-key errors).
    key_pos: Pos,
    /// Position of the value (for value errors).
    pos: Pos,
}

#[derive(Debug, Clone)]
enum Value {
    Table(BTreeMap<String, Node>),
    Array(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Node {
    fn table(pos: Pos) -> Node {
        Node {
            value: Value::Table(BTreeMap::new()),
            key_pos: pos.clone(),
            pos,
        }
    }

    fn get(&self, path: &[String]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| match &n.value {
            Value::Table(t) => t.get(k),
            _ => None,
        })
    }

    /// Removes the node at `path`; false if there is none.
    fn remove(&mut self, path: &[String]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut n = self;
        for k in parents {
            match &mut n.value {
                Value::Table(t) => match t.get_mut(k) {
                    Some(c) => n = c,
                    None => return false,
                },
                _ => return false,
            }
        }
        match &mut n.value {
            Value::Table(t) => t.remove(last).is_some(),
            _ => false,
        }
    }

    /// Makes `path` an (empty if new) table unless something else is there.
    fn ensure_table(&mut self, path: &[&str]) {
        let mut n = self;
        for k in path {
            let Value::Table(t) = &mut n.value else {
                return;
            };
            n = t.entry((*k).to_string()).or_insert_with(|| Node::table(Pos::Default));
        }
    }
}

fn span_start(span: Option<std::ops::Range<usize>>, fallback: &Pos) -> Pos {
    span.map_or_else(|| fallback.clone(), |s| Pos::File(s.start))
}

fn from_table(t: &toml_edit::Table) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for (k, item) in t.iter() {
        let key_pos = span_start(t.key(k).and_then(|k| k.span()), &Pos::Default);
        let node = match item {
            toml_edit::Item::Value(v) => from_value(v, key_pos),
            toml_edit::Item::Table(sub) => Node {
                value: Value::Table(from_table(sub)),
                pos: key_pos.clone(),
                key_pos,
            },
            toml_edit::Item::ArrayOfTables(a) => Node {
                value: Value::Array(
                    a.iter()
                        .map(|sub| Node {
                            value: Value::Table(from_table(sub)),
                            key_pos: key_pos.clone(),
                            pos: span_start(sub.span(), &key_pos),
                        })
                        .collect(),
                ),
                pos: key_pos.clone(),
                key_pos,
            },
            toml_edit::Item::None => continue,
        };
        out.insert(k.to_string(), node);
    }
    out
}

fn from_value(v: &toml_edit::Value, key_pos: Pos) -> Node {
    use toml_edit::Value as V;
    let pos = span_start(v.span(), &key_pos);
    let value = match v {
        V::String(s) => Value::Str(s.value().clone()),
        V::Integer(i) => Value::Int(*i.value()),
        V::Float(f) => Value::Float(*f.value()),
        V::Boolean(b) => Value::Bool(*b.value()),
        V::Datetime(d) => Value::Str(d.value().to_string()),
        V::Array(a) => Value::Array(a.iter().map(|e| from_value(e, pos.clone())).collect()),
        V::InlineTable(t) => Value::Table(
            t.iter()
                .map(|(k, e)| {
                    let kp = span_start(t.key(k).and_then(|k| k.span()), &pos);
                    (k.to_string(), from_value(e, kp))
                })
                .collect(),
        ),
    };
    Node { value, key_pos, pos }
}

/// An environment value: a TOML value if it parses as one (number, bool,
/// quoted string, array, inline table), else the plain string.
fn env_value(raw: &str, pos: &Pos) -> Value {
    fn conv(v: toml::Value, pos: &Pos) -> Option<Value> {
        Some(match v {
            toml::Value::String(s) => Value::Str(s),
            toml::Value::Integer(i) => Value::Int(i),
            toml::Value::Float(f) => Value::Float(f),
            toml::Value::Boolean(b) => Value::Bool(b),
            toml::Value::Array(a) => Value::Array(
                a.into_iter()
                    .map(|e| {
                        conv(e, pos).map(|value| Node {
                            value,
                            key_pos: pos.clone(),
                            pos: pos.clone(),
                        })
                    })
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Table(t) => Value::Table(
                t.into_iter()
                    .map(|(k, e)| {
                        conv(e, pos).map(|value| {
                            (
                                k,
                                Node {
                                    value,
                                    key_pos: pos.clone(),
                                    pos: pos.clone(),
                                },
                            )
                        })
                    })
                    .collect::<Option<_>>()?,
            ),
            toml::Value::Datetime(_) => return None,
        })
    }
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .filter(|t| t.len() == 1)
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| conv(v, pos))
        .unwrap_or_else(|| Value::Str(raw.to_string()))
}

/// What a `JUNCTION_*` variable is.
enum EnvVar {
    /// A key path: `JUNCTION_MQTT__MAX_INFLIGHT` (anything with `__`, or a
    /// bare section name such as `JUNCTION_MQTT`).
    Key,
    /// A section name and a key joined by a single underscore, e.g.
    /// `JUNCTION_MQTT_MAX_INFLIGHT`: refused, with the corrected name.
    SingleUnderscore(String),
    /// Anything else (e.g. `JUNCTION_BIN` used by test scripts): not config.
    Other,
}

fn classify(var: &str) -> EnvVar {
    let rest = &var[ENV_PREFIX.len()..];
    let lower = rest.to_ascii_lowercase();
    if rest.contains("__") || TOP_LEVEL_KEYS.contains(&lower.as_str()) {
        return EnvVar::Key;
    }
    match TOP_LEVEL_KEYS
        .iter()
        .find(|k| lower.len() > k.len() + 1 && lower.starts_with(&format!("{k}_")))
    {
        Some(k) => EnvVar::SingleUnderscore(format!("{ENV_PREFIX}{}__{}", &rest[..k.len()], &rest[k.len() + 1..])),
        None => EnvVar::Other,
    }
}

/// Applies one `JUNCTION_A__B__C=value` variable into the tree.
fn apply_env(root: &mut Node, var: &str, raw: &str) -> Result<(), String> {
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.iter().any(String::is_empty) {
        return Err(format!(
            "invalid variable name: expected {ENV_PREFIX}<KEY>__<KEY>..., e.g. {ENV_PREFIX}MQTT__MAX_INFLIGHT"
        ));
    }
    let pos = Pos::Env(var.to_string());
    let Some((last, parents)) = path.split_last() else {
        return Err("invalid variable name".into());
    };
    let mut n = root;
    for k in parents {
        if !matches!(n.value, Value::Table(_)) {
            *n = Node::table(pos.clone());
        }
        let Value::Table(t) = &mut n.value else {
            return Err("internal error: expected a table".into());
        };
        n = t.entry(k.clone()).or_insert_with(|| Node::table(pos.clone()));
    }
    if !matches!(n.value, Value::Table(_)) {
        *n = Node::table(pos.clone());
    }
    let Value::Table(t) = &mut n.value else {
        return Err("internal error: expected a table".into());
    };
    let value = env_value(raw, &pos);
    t.insert(
        last.clone(),
        Node {
            value,
            key_pos: pos.clone(),
            pos,
        },
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// the driver

fn load_sources(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut root = Node::table(Pos::Default);
    if let Some((text, name)) = file {
        match toml_edit::ImDocument::parse(text) {
            Ok(doc) => root.value = Value::Table(from_table(doc.as_table())),
            Err(e) => {
                let (line, col) = e.span().map_or((0, 0), |s| line_col(text, s.start));
                return Err(ConfigError {
                    diagnostics: vec![Diagnostic {
                        source: Source::File(name.to_string()),
                        line,
                        col,
                        key: String::new(),
                        message: format!("invalid TOML: {}", e.message().replace('\n', "; ")),
                        kind: DiagnosticKind::Syntax,
                    }],
                });
            }
        }
    }
    let file_name = file.map(|(_, n)| n).unwrap_or(DEFAULT_FILE);
    let file_text = file.map(|(t, _)| t).unwrap_or("");
    let diag = |pos: &Pos, key: String, message: String, kind: DiagnosticKind| {
        let (source, (line, col)) = match pos {
            Pos::File(off) => (Source::File(file_name.to_string()), line_col(file_text, *off)),
            Pos::Env(var) => (Source::Env(var.clone()), (0, 0)),
            Pos::Default => (Source::Defaults, (0, 0)),
        };
        Diagnostic {
            source,
            line,
            col,
            key,
            message,
            kind,
        }
    };
    let mut diags = Vec::new();

    let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    env.sort();
    for (var, raw) in &env {
        let result = match classify(var) {
            EnvVar::Key => apply_env(&mut root, var, raw),
            EnvVar::SingleUnderscore(fixed) => Err(format!(
                "invalid variable name: key levels are separated by a double underscore (did you mean {fixed}?)"
            )),
            EnvVar::Other => Ok(()),
        };
        if let Err(message) = result {
            diags.push(diag(
                &Pos::Env(var.clone()),
                String::new(),
                message,
                DiagnosticKind::UnknownKey,
            ));
        }
    }
    // The built-in listeners exist unless the file/env redefine them.
    for kind in ["tcp", "ssl", "ws", "wss"] {
        root.ensure_table(&["listeners", kind, "default"]);
    }

    let mut config = None;
    // Each failed attempt removes one node, so this ends; the bound is a guard.
    for _ in 0..10_000 {
        match Config::deserialize(De { node: &root, path: &[] }) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => {
                let Some(at) = e.at else {
                    diags.push(diag(
                        &Pos::Default,
                        String::new(),
                        e.msg.render(""),
                        DiagnosticKind::InvalidValue,
                    ));
                    break;
                };
                let key = at.path.join(".");
                diags.push(diag(&at.pos, key.clone(), e.msg.render(&key), at.kind));
                if !root.remove(&at.path) {
                    break;
                }
            }
        }
    }

    if diags.is_empty() {
        if let Some(c) = &config {
            for alternatives in c.cross_checks() {
                diags.push(locate_check(&root, &alternatives, &diag));
            }
        }
    }

    match config {
        Some(c) if diags.is_empty() => Ok(c),
        _ => {
            diags.sort_by(|a, b| (&a.source, a.line, a.col).cmp(&(&b.source, b.line, b.col)));
            Err(ConfigError { diagnostics: diags })
        }
    }
}

/// Places a cross-key problem: at the first alternative key the user set;
/// else at the nearest user-set ancestor of the first key (e.g. the
/// variable that created a listener whose default `bind` clashes).
fn locate_check(
    root: &Node,
    alternatives: &[(Vec<String>, String)],
    diag: &impl Fn(&Pos, String, String, DiagnosticKind) -> Diagnostic,
) -> Diagnostic {
    let user_set = |path: &[String]| root.get(path).filter(|n| n.pos != Pos::Default);
    let (pos, (path, msg)) = alternatives
        .iter()
        .find_map(|alt| Some((user_set(&alt.0)?.pos.clone(), alt)))
        .unwrap_or_else(|| {
            let first = &alternatives[0];
            let pos = (0..first.0.len())
                .rev()
                .find_map(|n| user_set(&first.0[..n]))
                .map_or(Pos::Default, |n| n.pos.clone());
            (pos, first)
        });
    diag(&pos, path.join("."), msg.clone(), DiagnosticKind::Conflict)
}

// ---------------------------------------------------------------------------
// the deserializer

#[derive(Debug)]
struct At {
    path: Vec<String>,
    pos: Pos,
    kind: DiagnosticKind,
}

#[derive(Debug)]
enum Msg {
    Text(String),
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
}

impl Msg {
    fn render(&self, key: &str) -> String {
        match self {
            Msg::Text(s) => s.clone(),
            Msg::UnknownField { field, expected } => {
                let key = if key.is_empty() { field.as_str() } else { key };
                match suggest(field, expected) {
                    Some(s) => format!("unknown key `{key}` (did you mean `{s}`?)"),
                    None if expected.len() <= 10 => {
                        format!("unknown key `{key}` (expected one of: {})", expected.join(", "))
                    }
                    None => format!("unknown key `{key}`"),
                }
            }
        }
    }
}

/// The deserializer's error: a message, plus where it happened once known.
#[derive(Debug)]
struct DeError {
    msg: Msg,
    at: Option<At>,
}

impl DeError {
    fn locate(mut self, path: Vec<String>, pos: &Pos, kind: DiagnosticKind) -> Self {
        if self.at.is_none() {
            self.at = Some(At {
                path,
                pos: pos.clone(),
                kind,
            });
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg.render(""))
    }
}

impl std::error::Error for DeError {}

fn describe(u: &Unexpected) -> String {
    match u {
        Unexpected::Bool(b) => format!("boolean {b}"),
        Unexpected::Signed(n) => format!("integer {n}"),
        Unexpected::Unsigned(n) => format!("integer {n}"),
        Unexpected::Float(x) => format!("number {x}"),
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Map => "a table".into(),
        Unexpected::Seq => "an array".into(),
        other => other.to_string(),
    }
}

fn expected_kind(exp: &str) -> &str {
    match exp {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "path string" => "a string",
        e if e.starts_with("struct ") || e.starts_with("a map") => "a table",
        e => e,
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            msg: Msg::Text(msg.to_string()),
            at: None,
        }
    }

    fn invalid_type(unexp: Unexpected, exp: &dyn de::Expected) -> Self {
        let exp = exp.to_string();
        let kind = expected_kind(&exp);
        let text = match (unexp, kind) {
            (Unexpected::Str(s), "an integer") => {
                if s.trim().parse::<f64>().is_ok() {
                    format!("invalid integer {s:?} (write numbers without quotes)")
                } else {
                    format!("invalid integer {s:?}")
                }
            }
            (Unexpected::Str(s), "a number") => format!("invalid number {s:?}"),
            (Unexpected::Str(s), "true or false") => {
                format!("invalid boolean {s:?} (expected true or false)")
            }
            (u, kind) => format!("expected {kind}, found {}", describe(&u)),
        };
        Self::custom(text)
    }

    fn invalid_value(unexp: Unexpected, exp: &dyn de::Expected) -> Self {
        let exp = exp.to_string();
        let kind = expected_kind(&exp);
        Self::custom(format!("invalid value: {} (expected {kind})", describe(&unexp)))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let hint = suggest(variant, expected)
            .map(|s| format!("; did you mean {s:?}?"))
            .unwrap_or_default();
        Self::custom(format!(
            "invalid value {variant:?} (expected one of: {}{hint})",
            expected.join(", ")
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            msg: Msg::UnknownField {
                field: field.to_string(),
                expected,
            },
            at: None,
        }
    }
}

fn unexpected(v: &Value) -> Unexpected<'_> {
    match v {
        Value::Table(_) => Unexpected::Map,
        Value::Array(_) => Unexpected::Seq,
        Value::Str(s) => Unexpected::Str(s),
        Value::Int(i) => Unexpected::Signed(*i),
        Value::Float(f) => Unexpected::Float(*f),
        Value::Bool(b) => Unexpected::Bool(*b),
    }
}

fn child_path(path: &[String], key: &str) -> Vec<String> {
    let mut p = path.to_vec();
    p.push(key.to_string());
    p
}

struct De<'a> {
    node: &'a Node,
    path: &'a [String],
}

impl<'de> Deserializer<'de> for De<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Table(t) => visitor.visit_map(MapAcc {
                iter: t.iter(),
                cur: None,
                path: self.path,
            }),
            Value::Array(a) => visitor.visit_seq(SeqAcc {
                iter: a.iter(),
                path: self.path,
            }),
            Value::Str(s) => visitor.visit_str(s),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Bool(b) => visitor.visit_bool(*b),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => {
                let d: StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor.visit_enum(d)
            }
            v => Err(de::Error::custom(format!(
                "expected one of: {}, found {}",
                variants.join(", "),
                describe(&unexpected(v))
            ))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct MapAcc<'a> {
    iter: std::collections::btree_map::Iter<'a, String, Node>,
    cur: Option<(&'a String, &'a Node)>,
    path: &'a [String],
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((k, node)) = self.iter.next() else {
            return Ok(None);
        };
        self.cur = Some((k, node));
        let d: StrDeserializer<'_, DeError> = k.as_str().into_deserializer();
        seed.deserialize(d).map(Some).map_err(|e| {
            let kind = match e.msg {
                Msg::UnknownField { .. } => DiagnosticKind::UnknownKey,
                Msg::Text(_) => DiagnosticKind::InvalidValue,
            };
            e.locate(child_path(self.path, k), &node.key_pos, kind)
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((k, node)) = self.cur.take() else {
            return Err(de::Error::custom("internal error: value requested before its key"));
        };
        let path = child_path(self.path, k);
        seed.deserialize(De { node, path: &path })
            .map_err(|e| e.locate(path.clone(), &node.pos, DiagnosticKind::InvalidValue))
    }
}

struct SeqAcc<'a> {
    iter: std::slice::Iter<'a, Node>,
    path: &'a [String],
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.iter.next() {
            Some(node) => seed.deserialize(De { node, path: self.path }).map(Some),
            None => Ok(None),
        }
    }
}

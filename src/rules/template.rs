//! `${...}` templates of actions (republish topic and payload, and later the connectors'
//! SQL, commands and URLs), parsed once when the rule set loads and rendered per output.
//!
//! A placeholder is a path into the rule's output: `${clientid}`, `${payload.temp}`,
//! `${a.b[1]}` (1-based, as in the SQL), `${.}` for the whole output as JSON. As in EMQX,
//! a path into a string that holds JSON (typically `payload`) looks inside it; strings
//! render as they are, maps and arrays as JSON, and a missing value as `undefined`
//! (EMQX's rendering of an unbound variable).
//!
//! Connectors that must not splice values into text (SQL, CQL) use [`Template::placeholders`]
//! to bind them as parameters instead of [`Template::render`].

use std::fmt;
use std::sync::Arc;

use super::eval::decode_json;
use super::value::{Map, Value};

/// What a missing value renders as (EMQX renders an unbound variable as `undefined`).
pub const UNDEFINED: &str = "undefined";

/// A template that does not parse: where and why (`offset` is a byte offset into the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

/// One step of a placeholder path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(Arc<str>),
    /// 1-based, negative from the end (the SQL's indexing).
    Index(i64),
}

/// A placeholder: `${.}` (empty path) or a path into the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub text: String,
    pub path: Vec<Step>,
}

impl Placeholder {
    /// The value at this path in `out` (`None` when missing; `${.}` is the whole output).
    pub fn lookup(&self, out: &Map) -> Option<Value> {
        let Some((first, rest)) = self.path.split_first() else {
            return Some(Value::Map(Arc::new(out.clone())));
        };
        let Step::Key(k) = first else { return None };
        let mut cur = out.get(k)?.clone();
        for step in rest {
            cur = step_into(&cur, step)?;
        }
        Some(cur)
    }
}

fn step_into(v: &Value, step: &Step) -> Option<Value> {
    match (v, step) {
        (Value::Map(m), Step::Key(k)) => m.get(k).cloned(),
        (Value::Array(a), Step::Index(i)) => {
            let len = a.len() as i64;
            let idx = if *i > 0 { i - 1 } else { len + i };
            (0..len).contains(&idx).then(|| a[idx as usize].clone())
        }
        (Value::Str(s), _) => step_into(&decode_json(s.as_bytes()).ok()?, step),
        (Value::Bytes(b), _) => step_into(&decode_json(b).ok()?, step),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Placeholder),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Parses `text`. `${` without a closing `}` or with a bad path is an error; a `$` not
    /// followed by `{` is literal.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find("${") {
            lit.push_str(&rest[..i]);
            let start = offset + i;
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                return Err(TemplateError {
                    offset: start,
                    message: "`${` without a closing `}`".into(),
                });
            };
            let inner = after[..end].trim();
            let path = parse_path(inner).map_err(|message| TemplateError { offset: start, message })?;
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(Placeholder {
                text: inner.to_string(),
                path,
            }));
            let consumed = i + 2 + end + 1;
            rest = &rest[consumed..];
            offset += consumed;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// The template text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has no placeholder.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The placeholders, in order (for connectors that bind them as parameters).
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Lit(_) => None,
        })
    }

    /// The literal text around the placeholders: `n + 1` pieces for `n` placeholders.
    pub fn literal_pieces(&self) -> Vec<&str> {
        let mut out = vec![""];
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    if let Some(last) = out.last_mut() {
                        *last = s.as_str();
                    }
                }
                Part::Var(_) => out.push(""),
            }
        }
        out
    }

    /// Renders into bytes: a template that is one placeholder of a binary value gives the
    /// bytes as they are (a republished binary payload stays binary).
    pub fn render_bytes(&self, out: &Map) -> Vec<u8> {
        if let [Part::Var(v)] = self.parts.as_slice() {
            if let Some(Value::Bytes(b)) = v.lookup(out) {
                return b.to_vec();
            }
        }
        self.render(out).into_bytes()
    }

    /// Renders as text.
    pub fn render(&self, out: &Map) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(v) => match v.lookup(out) {
                    Some(val) => push_text(&mut s, &val),
                    None => s.push_str(UNDEFINED),
                },
            }
        }
        s
    }

    /// The value of a template that is exactly one placeholder (for typed fields such as
    /// QoS), else the rendered text.
    pub fn render_value(&self, out: &Map) -> Value {
        if let [Part::Var(v)] = self.parts.as_slice() {
            return v.lookup(out).unwrap_or(Value::Null);
        }
        Value::str(self.render(out))
    }
}

/// Appends `v` as template text: strings raw, numbers and booleans as in JSON, maps and
/// arrays as JSON, null as `undefined`.
pub fn push_text(s: &mut String, v: &Value) {
    match v {
        Value::Str(t) => s.push_str(t),
        Value::Bytes(b) => s.push_str(&String::from_utf8_lossy(b)),
        Value::Null => s.push_str(UNDEFINED),
        other => s.push_str(&other.to_json().to_string()),
    }
}

fn parse_path(inner: &str) -> Result<Vec<Step>, String> {
    if inner == "." {
        return Ok(Vec::new());
    }
    if inner.is_empty() {
        return Err("empty placeholder `${}` (use `${.}` for the whole output)".into());
    }
    let mut steps = Vec::new();
    for seg in inner.split('.') {
        let (name, mut idx) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if name.is_empty() && (steps.is_empty() || idx.is_empty()) {
            return Err(format!("bad placeholder `${{{inner}}}`: empty name"));
        }
        if !name.is_empty() {
            steps.push(Step::Key(Arc::from(name.trim_matches('\''))));
        }
        while !idx.is_empty() {
            let close = idx
                .find(']')
                .ok_or_else(|| format!("bad placeholder `${{{inner}}}`: `[` without `]`"))?;
            let n: i64 = idx[1..close]
                .trim()
                .parse()
                .map_err(|_| format!("bad placeholder `${{{inner}}}`: index must be an integer"))?;
            if n == 0 {
                return Err(format!("bad placeholder `${{{inner}}}`: indexes start at 1"));
            }
            steps.push(Step::Index(n));
            idx = &idx[close + 1..];
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> Map {
        let mut m = Map::default();
        m.insert(Arc::from("clientid"), Value::str("c1"));
        m.insert(Arc::from("t"), Value::Int(35));
        m.insert(
            Arc::from("payload"),
            Value::str(r#"{"temp": 35.5, "a": [1, {"b": "x"}]}"#),
        );
        m.insert(Arc::from("n"), Value::Null);
        m
    }

    #[test]
    fn renders_fields_paths_and_whole_output() {
        let t = Template::parse("alerts/${clientid}/${t}").unwrap();
        assert_eq!(t.render(&out()), "alerts/c1/35");
        let t = Template::parse("${payload.temp}|${payload.a[2].b}|${payload.a[-2]}").unwrap();
        assert_eq!(t.render(&out()), "35.5|x|1");
        let t = Template::parse("${.}").unwrap();
        let j: serde_json::Value = serde_json::from_str(&t.render(&out())).unwrap();
        assert_eq!(j["clientid"], "c1");
        assert_eq!(j["t"], 35);
    }

    #[test]
    fn missing_and_null_render_as_undefined_and_dollar_is_literal() {
        let t = Template::parse("$x ${nope} ${n} ${payload.zz}").unwrap();
        assert_eq!(t.render(&out()), "$x undefined undefined undefined");
    }

    #[test]
    fn single_placeholder_keeps_its_type() {
        assert_eq!(Template::parse("${t}").unwrap().render_value(&out()), Value::Int(35));
        assert_eq!(
            Template::parse("q${t}").unwrap().render_value(&out()),
            Value::str("q35")
        );
    }

    #[test]
    fn bad_templates_are_errors_with_offsets() {
        assert_eq!(Template::parse("ab${x").unwrap_err().offset, 2);
        assert!(Template::parse("${}").is_err());
        assert!(Template::parse("${a[x]}").is_err());
        assert!(Template::parse("${a[0]}").is_err());
    }

    #[test]
    fn placeholders_and_pieces_for_parameter_binding() {
        let t = Template::parse("INSERT INTO t VALUES (${a}, '${b}')").unwrap();
        let names: Vec<_> = t.placeholders().map(|p| p.text.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(t.literal_pieces(), ["INSERT INTO t VALUES (", ", '", "')"]);
    }
}

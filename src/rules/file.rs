//! Rule files: `rules/*.toml`, one or more rules each, with their actions and tests.
//!
//! ```toml
//! [[rules]]
//! id = "hot_sensors"
//! description = "Temperatures above 30 go to alerts/<client>"
//! enabled = true                      # default true
//! sql = '''
//! SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30
//! '''
//!
//! [[rules.actions]]
//! type = "republish"
//! topic = "alerts/${clientid}"
//! qos = 1
//! payload = '{"t": ${t}}'
//!
//! [[rules.tests]]                     # run by `junction rule test rules/`
//! name = "a hot reading"
//! topic = "sensors/s1/temp"
//! payload = { temp = 35 }             # a table is sent as its JSON text
//! clientid = "s1"
//! expect = [{ t = 35, clientid = "s1" }]
//! expect_actions = [{ type = "republish", topic = "alerts/s1", payload = '{"t": 35}' }]
//! ```
//!
//! Loading is all or nothing: every error of every file is reported with `file:line:col`
//! (an SQL error points at its token inside the `sql` string), and the caller keeps the
//! previous rule set when there is any.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::actions::{ActionSpec, ConnectorCatalog, NoConnectors};
use super::compile::{compile_with, CompileOptions, CompiledRule, RuleSqlError};
use super::parse;
use crate::config::walk::{line_of, Doc, Fields, FileError, Spanned};

/// A rule as loaded from its file.
#[derive(Debug, Clone)]
pub struct RuleDef {
    pub id: Arc<str>,
    pub description: String,
    pub enabled: bool,
    pub sql: String,
    pub rule: Arc<CompiledRule>,
    pub actions: Vec<Arc<ActionSpec>>,
    pub tests: Vec<RuleTestCase>,
    /// The file and line of the rule's table.
    pub file: PathBuf,
    pub line: usize,
}

/// One `[[rules.tests]]` case.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTestCase {
    pub name: String,
    pub input: TestInput,
    /// Expected outputs: as many as the rule gives, each a subset of its output's fields.
    /// `None`: not checked.
    pub expect: Option<Vec<serde_json::Value>>,
    /// Expected actions, in order ([`ActionSpec::preview`] of each output and action),
    /// each a subset of the preview's fields. `None`: not checked.
    pub expect_actions: Option<Vec<serde_json::Value>>,
    pub line: usize,
}

/// The input of a test case: a message (like `--topic/--payload`) or an event.
#[derive(Debug, Clone, PartialEq)]
pub enum TestInput {
    Message {
        topic: Option<String>,
        payload: Option<String>,
        clientid: Option<String>,
        username: Option<String>,
        qos: Option<u8>,
    },
    Event {
        event: String,
        context: serde_json::Value,
    },
}

/// Loads every `*.toml` of `dir` (sorted by name). A missing folder is an empty rule set.
/// Connector action types are refused (see [`load_dir_with`]).
pub fn load_dir(dir: &Path, opts: &CompileOptions) -> Result<Vec<RuleDef>, Vec<FileError>> {
    load_dir_with(dir, opts, &NoConnectors)
}

/// [`load_dir`], with the loaded connectors: an action naming a missing connector, or one of
/// another type, is refused with `file:line:col`.
pub fn load_dir_with(
    dir: &Path,
    opts: &CompileOptions,
    connectors: &dyn ConnectorCatalog,
) -> Result<Vec<RuleDef>, Vec<FileError>> {
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
                message: format!("cannot read the rules folder: {e}"),
                snippet: None,
            }])
        }
    };
    paths.sort();
    load_files_with(&paths, opts, connectors)
}

/// Loads the given files as one rule set (ids must be unique across them).
pub fn load_files(paths: &[PathBuf], opts: &CompileOptions) -> Result<Vec<RuleDef>, Vec<FileError>> {
    load_files_with(paths, opts, &NoConnectors)
}

/// [`load_files`] with the loaded connectors.
pub fn load_files_with(
    paths: &[PathBuf],
    opts: &CompileOptions,
    connectors: &dyn ConnectorCatalog,
) -> Result<Vec<RuleDef>, Vec<FileError>> {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut ids: HashMap<Arc<str>, (PathBuf, usize)> = HashMap::new();
    for path in paths {
        let text = match std::fs::read_to_string(path) {
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
        match load_str_with(path, &text, opts, connectors) {
            Ok(defs) => {
                for d in defs {
                    if let Some((f, l)) = ids.get(&d.id) {
                        errors.push(FileError {
                            file: d.file.clone(),
                            line: d.line,
                            col: 1,
                            message: format!("duplicate rule id `{}` (first defined at {}:{l})", d.id, f.display()),
                            snippet: None,
                        });
                        continue;
                    }
                    ids.insert(d.id.clone(), (d.file.clone(), d.line));
                    rules.push(d);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Loads the rules of one file's text.
pub fn load_str(path: &Path, text: &str, opts: &CompileOptions) -> Result<Vec<RuleDef>, Vec<FileError>> {
    load_str_with(path, text, opts, &NoConnectors)
}

/// [`load_str`] with the loaded connectors.
pub fn load_str_with(
    path: &Path,
    text: &str,
    opts: &CompileOptions,
    connectors: &dyn ConnectorCatalog,
) -> Result<Vec<RuleDef>, Vec<FileError>> {
    let doc = Doc { path, text };
    let parsed = doc.parse().map_err(|e| vec![e])?;
    let mut root = Fields::new(&doc, parsed.as_table(), None, String::new());
    let tables = root.tables("rules").map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for t in tables {
        match load_rule(&doc, t, opts, connectors) {
            Ok(r) => out.push(r),
            Err(e) => errors.push(e),
        }
    }
    if let Err(e) = root.finish() {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn load_rule(
    doc: &Doc<'_>,
    mut f: Fields<'_, '_>,
    opts: &CompileOptions,
    connectors: &dyn ConnectorCatalog,
) -> Result<RuleDef, FileError> {
    let line = f.at().map_or(0, |s| line_of(doc.text, s.start));
    let id = f.req_string("id")?;
    if id.value.is_empty() || id.value.len() > 255 || id.value.chars().any(|c| c.is_control()) {
        return Err(f.error("id", "a rule id is 1 to 255 printable characters"));
    }
    let description = f.string("description")?.map(|s| s.value).unwrap_or_default();
    let enabled = f.bool("enabled")?.unwrap_or(true);
    let sql = f.req_string("sql")?;
    let rule = compile_in_file(doc, &sql, opts, &f.name)?;
    for bridge in rule.bridges() {
        if let Err(why) = connectors.check_bridge(bridge) {
            let at = sql.value.find(&format!("$bridges/mqtt:{bridge}")).unwrap_or(0);
            let offset = sql_content_start(doc.text, sql.span.clone()) + at;
            return Err(doc.error_at(offset, format!("{}.sql: {why}", f.name)));
        }
    }
    let mut actions = Vec::new();
    for a in f.tables("actions")? {
        actions.push(Arc::new(ActionSpec::parse_with(a, connectors)?));
    }
    let mut tests = Vec::new();
    for t in f.tables("tests")? {
        tests.push(parse_test(doc, t)?);
    }
    f.finish()?;
    let id: Arc<str> = Arc::from(id.value.as_str());
    Ok(RuleDef {
        rule: Arc::new(rule.with_id(id.clone())),
        id,
        description,
        enabled,
        sql: sql.value,
        actions,
        tests,
        file: doc.path.to_path_buf(),
        line,
    })
}

/// Compiles the `sql` string, moving an error's position from the SQL text into the file.
fn compile_in_file(
    doc: &Doc<'_>,
    sql: &Spanned<String>,
    opts: &CompileOptions,
    table: &str,
) -> Result<CompiledRule, FileError> {
    let result = parse::parse(&sql.value)
        .map_err(RuleSqlError::from)
        .and_then(|stmt| compile_with(&stmt, opts).map_err(RuleSqlError::from));
    result.map_err(|e| {
        let start = sql_content_start(doc.text, sql.span.clone());
        let offset = start + e.span().start.offset;
        let text = e.to_string();
        // `Display` starts with the SQL-relative `line:col: `; the file position replaces it.
        let message = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
        doc.error_at(offset, format!("{table}.sql: {message}"))
    })
}

/// Where the characters of a TOML string value start: after the opening quote(s) and, for
/// a multi-line string, after the newline that follows them. (Escapes before an error would
/// shift it; SQL rarely has any.)
fn sql_content_start(text: &str, span: Option<std::ops::Range<usize>>) -> usize {
    let Some(span) = span else { return 0 };
    let raw = text.get(span.clone()).unwrap_or("");
    let mut start = span.start;
    if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        start += 3;
        let rest = &raw[3..];
        if rest.starts_with("\r\n") {
            start += 2;
        } else if rest.starts_with('\n') {
            start += 1;
        }
    } else if raw.starts_with('"') || raw.starts_with('\'') {
        start += 1;
    }
    start
}

fn parse_test(doc: &Doc<'_>, mut f: Fields<'_, '_>) -> Result<RuleTestCase, FileError> {
    let line = f.at().map_or(0, |s| line_of(doc.text, s.start));
    let name = f
        .string("name")?
        .map(|s| s.value)
        .unwrap_or_else(|| format!("line {line}"));
    let event = f.string("event")?.map(|s| s.value);
    let context = f.any("context")?.map(toml_to_json);
    let topic = f.string("topic")?.map(|s| s.value);
    let payload = match f.any("payload")? {
        None => None,
        Some(toml_edit::Value::String(s)) => Some(s.value().clone()),
        Some(v) => Some(toml_to_json(v).to_string()),
    };
    let clientid = f.string("clientid")?.map(|s| s.value);
    let username = f.string("username")?.map(|s| s.value);
    let qos = match f.int("qos")? {
        None => None,
        Some(q @ 0..=2) => Some(q as u8),
        Some(q) => return Err(f.error("qos", format!("{q} is not 0, 1 or 2"))),
    };
    let expect = json_list(&mut f, "expect")?;
    let expect_actions = json_list(&mut f, "expect_actions")?;
    let input = match event {
        Some(event) => {
            if topic.is_some() || payload.is_some() {
                // A message event (message.delivered, ...) takes its topic and payload from the context.
                return Err(f.table_error("give `topic`/`payload` inside `context` for an `event` test"));
            }
            let mut ctx = context.unwrap_or_else(|| serde_json::json!({}));
            if let serde_json::Value::Object(o) = &mut ctx {
                if let Some(c) = &clientid {
                    o.insert("clientid".into(), c.clone().into());
                }
                if let Some(u) = &username {
                    o.insert("username".into(), u.clone().into());
                }
            }
            TestInput::Event { event, context: ctx }
        }
        None => {
            if context.is_some() {
                return Err(f.error(
                    "context",
                    "`context` needs `event` (for a message use topic, payload, ...)",
                ));
            }
            TestInput::Message {
                topic,
                payload,
                clientid,
                username,
                qos,
            }
        }
    };
    f.finish()?;
    Ok(RuleTestCase {
        name,
        input,
        expect,
        expect_actions,
        line,
    })
}

fn json_list(f: &mut Fields<'_, '_>, key: &'static str) -> Result<Option<Vec<serde_json::Value>>, FileError> {
    match f.any(key)? {
        None => Ok(None),
        Some(toml_edit::Value::Array(a)) => Ok(Some(a.iter().map(toml_to_json).collect())),
        Some(v) => Err(f.error(key, format!("expected an array, found {}", v.type_name()))),
    }
}

/// A TOML value as JSON (datetimes become their text).
pub fn toml_to_json(v: &toml_edit::Value) -> serde_json::Value {
    use toml_edit::Value as V;
    match v {
        V::String(s) => serde_json::Value::String(s.value().clone()),
        V::Integer(i) => serde_json::Value::from(*i.value()),
        V::Float(f) => {
            serde_json::Number::from_f64(*f.value()).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        V::Boolean(b) => serde_json::Value::Bool(*b.value()),
        V::Datetime(d) => serde_json::Value::String(d.value().to_string()),
        V::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        V::InlineTable(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.to_string(), toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<RuleDef>, Vec<FileError>> {
        load_str(Path::new("rules/t.toml"), text, &CompileOptions::default())
    }

    #[test]
    fn loads_rules_actions_and_tests() {
        let rules = load(
            r#"
[[rules]]
id = "hot"
sql = '''
SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30
'''
[[rules.actions]]
type = "republish"
topic = "alerts/${clientid}"
qos = 1
[[rules.actions]]
type = "console"
[[rules.tests]]
topic = "sensors/a/temp"
payload = { temp = 35 }
expect = [{ t = 35 }]

[[rules]]
id = "off"
enabled = false
sql = 'SELECT * FROM "$events/client_connected"'
"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(&*rules[0].id, "hot");
        assert_eq!(rules[0].actions.len(), 2);
        assert_eq!(rules[0].tests.len(), 1);
        assert_eq!(rules[0].line, 2);
        assert!(!rules[1].enabled);
    }

    #[test]
    fn sql_errors_point_into_the_file() {
        let text = "[[rules]]\nid = \"a\"\nsql = '''\nSELECT x\n  FROM \"t/#\" WHERE nosuch(x) > 1\n'''\n";
        let e = &load(text).unwrap_err()[0];
        assert_eq!((e.line, e.col), (5, 20), "{e}");
        assert!(e.message.contains("unknown function `nosuch`"), "{e}");
        assert!(e.to_string().starts_with("rules/t.toml:5:20: rules[0].sql: "), "{e}");

        let text = "[[rules]]\nid = \"a\"\nsql = \"SELECT FROM x\"\n";
        let e = &load(text).unwrap_err()[0];
        assert_eq!((e.line, e.col), (3, 15), "{e}");
    }

    #[test]
    fn toml_and_schema_errors_have_positions() {
        let e = &load("[[rules]]\nid = \"a\"\nsql = 'SELECT * FROM \"t\"'\nenabeld = true\n").unwrap_err()[0];
        assert_eq!((e.line, e.col), (4, 1));
        assert!(
            e.message.contains("unknown key `enabeld` (did you mean `enabled`?)"),
            "{e}"
        );

        let e = &load("[[rules]]\nid = \"a\"\nsql = 'SELECT").unwrap_err()[0];
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.starts_with("invalid TOML"), "{e}");

        let e = &load("[[rules]]\nsql = 'SELECT * FROM \"t\"'\n").unwrap_err()[0];
        assert!(e.message.contains("missing `id`"), "{e}");

        let text = "[[rules]]\nid = \"a\"\nsql = 'SELECT * FROM \"t\"'\n[[rules.actions]]\ntype = \"republsh\"\n";
        let e = &load(text).unwrap_err()[0];
        assert_eq!((e.line, e.col), (5, 8), "{e}");
        assert!(e.message.contains("did you mean `republish`"), "{e}");

        let text = "[[rules]]\nid = \"a\"\nsql = 'SELECT * FROM \"t\"'\n[[rules.actions]]\ntype = \"republish\"\ntopic = \"a/${x\"\n";
        let e = &load(text).unwrap_err()[0];
        assert_eq!(e.line, 6, "{e}");
    }

    #[test]
    fn duplicate_ids_across_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rule = "[[rules]]\nid = \"same\"\nsql = 'SELECT * FROM \"t\"'\n";
        std::fs::write(dir.path().join("a.toml"), rule).unwrap();
        std::fs::write(dir.path().join("b.toml"), rule).unwrap();
        let e = load_dir(dir.path(), &CompileOptions::default()).unwrap_err();
        assert!(e[0].message.contains("duplicate rule id `same`"), "{}", e[0]);
        assert!(load_dir(&dir.path().join("missing"), &CompileOptions::default())
            .unwrap()
            .is_empty());
    }
}

//! Reading definition files (`rules/*.toml`, later `connectors/*.toml`) key by key with
//! `toml_edit`, which keeps spans, so every error names `file:line:col` of the key or value
//! at fault. Serde's derive would lose the positions of semantic errors (a bad template, an
//! unknown action type), so these files are read by hand through [`Fields`].

use std::fmt;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike, Value};

use super::diag::line_col;

/// An error at a place in a definition file. `Display`:
/// `file:line:col: message`, then the source line with a caret when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// The offending line with a caret (already laid out), if any.
    pub snippet: Option<String>,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FileError {}

/// A parsed file and its name, making errors.
pub struct Doc<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl<'a> Doc<'a> {
    /// An error at byte `offset` of the file, with the line and a caret.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> FileError {
        let (line, col) = line_col(self.text, offset);
        FileError {
            file: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
            snippet: Some(caret(self.text, offset, line)),
        }
    }

    /// An error at the start of `span` (at the top of the file when unknown).
    pub fn error_span(&self, span: Option<std::ops::Range<usize>>, message: impl Into<String>) -> FileError {
        self.error_at(span.map_or(0, |s| s.start), message)
    }

    /// Parses the text; a TOML syntax error is a [`FileError`].
    pub fn parse(&self) -> Result<toml_edit::ImDocument<&'a str>, FileError> {
        toml_edit::ImDocument::parse(self.text).map_err(|e| {
            self.error_span(
                e.span(),
                format!("invalid TOML: {}", e.message().trim().replace('\n', "; ")),
            )
        })
    }
}

fn caret(text: &str, offset: usize, line: usize) -> String {
    let offset = offset.min(text.len());
    let mut start = offset;
    while start > 0 && !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let src = text[line_start..line_end].trim_end_matches('\r');
    let pad: String = text[line_start..start]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let n = line.to_string();
    let g = " ".repeat(n.len());
    format!("{g} |\n{n} | {src}\n{g} | {pad}^")
}

/// The keys of one table, read with their positions. Call [`Fields::finish`] last: it
/// refuses keys nobody asked for (typos).
pub struct Fields<'d, 'a> {
    pub doc: &'d Doc<'a>,
    table: &'d dyn TableLike,
    /// Where the table starts (for "missing key" errors).
    at: Option<std::ops::Range<usize>>,
    /// Dotted name of the table, for messages (`rules[2].actions[1]`).
    pub name: String,
    seen: Vec<&'static str>,
}

impl<'d, 'a> Fields<'d, 'a> {
    pub fn new(doc: &'d Doc<'a>, table: &'d dyn TableLike, at: Option<std::ops::Range<usize>>, name: String) -> Self {
        Fields {
            doc,
            table,
            at,
            name,
            seen: Vec::new(),
        }
    }

    fn item(&mut self, key: &'static str) -> Option<&'d Item> {
        self.seen.push(key);
        self.table.get(key).filter(|i| !i.is_none())
    }

    /// Where the table is.
    pub fn at(&self) -> Option<std::ops::Range<usize>> {
        self.at.clone()
    }

    /// Where `key`'s value is (else where the table is).
    pub fn span_of(&self, key: &str) -> Option<std::ops::Range<usize>> {
        self.table.get(key).and_then(Item::span).or_else(|| self.at.clone())
    }

    /// An error at `key`'s value.
    pub fn error(&self, key: &str, message: impl fmt::Display) -> FileError {
        self.doc
            .error_span(self.span_of(key), format!("{}.{key}: {message}", self.name))
    }

    /// An error at the table itself.
    pub fn table_error(&self, message: impl fmt::Display) -> FileError {
        self.doc
            .error_span(self.at.clone(), format!("{}: {message}", self.name))
    }

    fn value(&mut self, key: &'static str, want: &str) -> Result<Option<&'d Value>, FileError> {
        match self.item(key) {
            None => Ok(None),
            Some(Item::Value(v)) => Ok(Some(v)),
            Some(_) => Err(self.error(key, format!("expected {want}, found a table"))),
        }
    }

    /// A string, with its span.
    pub fn string(&mut self, key: &'static str) -> Result<Option<Spanned<String>>, FileError> {
        match self.value(key, "a string")? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(Spanned {
                value: s.value().clone(),
                span: s.span(),
            })),
            Some(v) => Err(self.error(key, format!("expected a string, found {}", v.type_name()))),
        }
    }

    /// A required string.
    pub fn req_string(&mut self, key: &'static str) -> Result<Spanned<String>, FileError> {
        self.string(key)?
            .ok_or_else(|| self.table_error(format!("missing `{key}`")))
    }

    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>, FileError> {
        match self.value(key, "true or false")? {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b.value())),
            Some(v) => Err(self.error(key, format!("expected true or false, found {}", v.type_name()))),
        }
    }

    pub fn int(&mut self, key: &'static str) -> Result<Option<i64>, FileError> {
        match self.value(key, "an integer")? {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i.value())),
            Some(v) => Err(self.error(key, format!("expected an integer, found {}", v.type_name()))),
        }
    }

    /// Any value (for fields that take several types, e.g. a QoS or a template).
    pub fn any(&mut self, key: &'static str) -> Result<Option<&'d Value>, FileError> {
        self.value(key, "a value")
    }

    /// A sub-table (`[a.b]` or inline `{...}`).
    pub fn table(&mut self, key: &'static str) -> Result<Option<Fields<'d, 'a>>, FileError> {
        let name = format!("{}.{key}", self.name);
        match self.item(key) {
            None => Ok(None),
            Some(Item::Table(t)) => Ok(Some(Fields::new(self.doc, t, t.span(), name))),
            Some(Item::Value(Value::InlineTable(t))) => Ok(Some(Fields::new(self.doc, t, t.span(), name))),
            Some(_) => Err(self.error(key, "expected a table")),
        }
    }

    /// An array of tables (`[[a.b]]` or `b = [{...}, ...]`).
    pub fn tables(&mut self, key: &'static str) -> Result<Vec<Fields<'d, 'a>>, FileError> {
        let base = format!("{}{}", if self.name.is_empty() { "" } else { "." }, key);
        let prefix = format!("{}{base}", self.name);
        match self.item(key) {
            None => Ok(Vec::new()),
            Some(Item::ArrayOfTables(a)) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, t)| Fields::new(self.doc, t, t.span(), format!("{prefix}[{i}]")))
                .collect()),
            Some(Item::Value(Value::Array(a))) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::InlineTable(t) => Ok(Fields::new(self.doc, t, t.span(), format!("{prefix}[{i}]"))),
                    other => Err(self
                        .doc
                        .error_span(other.span(), format!("{prefix}[{i}]: expected a table"))),
                })
                .collect(),
            Some(_) => Err(self.error(key, "expected an array of tables")),
        }
    }

    /// The keys of this table with their values (for free-form maps such as user properties).
    pub fn entries(&mut self) -> Vec<(String, &'d Item, Option<std::ops::Range<usize>>)> {
        let out: Vec<_> = self.table.iter().map(|(k, v)| (k.to_string(), v, v.span())).collect();
        self.seen.clear();
        self.seen.push("*");
        out
    }

    /// Refuses keys that were not read.
    pub fn finish(self) -> Result<(), FileError> {
        if self.seen.contains(&"*") {
            return Ok(());
        }
        for (k, _) in self.table.iter() {
            if !self.seen.contains(&k) {
                let hint = super::diag::suggest(k, &self.seen)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let span = self
                    .table
                    .get_key_value(k)
                    .and_then(|(key, _)| key.span())
                    .or_else(|| self.at.clone());
                return Err(self
                    .doc
                    .error_span(span, format!("{}: unknown key `{k}`{hint}", self.name)));
            }
        }
        Ok(())
    }
}

/// The 1-based line of byte `offset`.
pub fn line_of(text: &str, offset: usize) -> usize {
    line_col(text, offset).0
}

/// A value and where it was in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Option<std::ops::Range<usize>>,
}

//! Configuration errors: one [`Diagnostic`] per problem, all collected into a
//! [`ConfigError`].

use std::fmt;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A TOML file, by the path it was opened with (e.g. `junction.toml`).
    File(String),
    /// An environment variable, by name (e.g. `JUNCTION_MQTT__MAX_INFLIGHT`).
    Env(String),
    /// A cross-key check failed on built-in defaults only (not expected in practice).
    Defaults,
}

impl Source {
    /// The file path or variable name.
    pub fn name(&self) -> &str {
        match self {
            Source::File(s) | Source::Env(s) => s,
            Source::Defaults => "defaults",
        }
    }
}

/// What kind of problem a [`Diagnostic`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiagnosticKind {
    /// The file could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key that the schema does not have (the message names it in full).
    UnknownKey,
    /// A key whose value is refused.
    InvalidValue,
    /// Values that are fine alone but not together (e.g. two listeners on
    /// one port); `key` is the one reported.
    Conflict,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file or environment variable at fault.
    pub source: Source,
    /// 1-based line in the file; 0 for environment variables and I/O errors.
    pub line: usize,
    /// 1-based column (in characters); 0 when `line` is 0.
    pub col: usize,
    /// Full dotted key, e.g. `mqtt.max_inflight`; empty for syntax/I-O errors.
    pub key: String,
    /// What is wrong, without location or key (except unknown keys, whose
    /// message is `` unknown key `a.b` (did you mean `c`?) ``).
    pub message: String,
    /// The kind of problem.
    pub kind: DiagnosticKind,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::File(path) if self.line > 0 => write!(f, "{path}:{}:{}: ", self.line, self.col)?,
            Source::File(path) => write!(f, "{path}: ")?,
            Source::Env(var) => write!(f, "env {var}: ")?,
            Source::Defaults => f.write_str("defaults: ")?,
        }
        // An env variable already names its key, except for conflicts,
        // which may be reported at a variable that set a neighbouring key.
        let show_key = match self.kind {
            DiagnosticKind::InvalidValue => !matches!(self.source, Source::Env(_)),
            DiagnosticKind::Conflict => true,
            _ => false,
        };
        if show_key && !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// The configuration could not be loaded; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// All problems, file ones first (in file order), then environment ones.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Converts a byte offset in `text` into a 1-based (line, column) pair; the
/// column counts characters.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Edit distance, for "did you mean" suggestions.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&word, c), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1) || (word.len() >= 3 && c.contains(word.as_str())))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 10), (2, 4)); // after "bé " (é is 2 bytes)
    }

    #[test]
    fn suggestions() {
        let c = ["max_inflight", "max_packet_size", "retry_interval"];
        assert_eq!(suggest("max_infligth", &c), Some("max_inflight"));
        assert_eq!(suggest("MAX_INFLIGHT", &c), Some("max_inflight"));
        assert_eq!(suggest("inflight", &c), Some("max_inflight"));
        assert_eq!(suggest("zzz", &c), None);
    }

    #[test]
    fn display() {
        let d = Diagnostic {
            source: Source::File("junction.toml".into()),
            line: 3,
            col: 8,
            key: "mqtt.max_packet_size".into(),
            message: "invalid size \"12XB\" (expected e.g. 1MB, 512KB, 1024)".into(),
            kind: DiagnosticKind::InvalidValue,
        };
        assert_eq!(
            d.to_string(),
            "junction.toml:3:8: mqtt.max_packet_size: invalid size \"12XB\" (expected e.g. 1MB, 512KB, 1024)"
        );
        let e = Diagnostic {
            source: Source::Env("JUNCTION_MQTT__MAX_INFLIGHT".into()),
            line: 0,
            col: 0,
            key: "mqtt.max_inflight".into(),
            message: "invalid integer \"abc\"".into(),
            kind: DiagnosticKind::InvalidValue,
        };
        assert_eq!(
            e.to_string(),
            "env JUNCTION_MQTT__MAX_INFLIGHT: invalid integer \"abc\""
        );
        let all = ConfigError {
            diagnostics: vec![d.clone(), e.clone()],
        };
        assert_eq!(all.to_string(), format!("{d}\n{e}"));
    }
}

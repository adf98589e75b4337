//! The rule SQL syntax tree: what `rules::parse` produces and `rules::compile` consumes.
//!
//! Every node carries a [`Span`] (1-based line and column plus byte offset) so that compile errors
//! point into the SQL text. `Display` prints each node back as rule SQL that parses to an equal
//! tree (spans aside: compare with [`Statement::without_spans`]). The printer adds parentheses
//! only where precedence needs them and always writes `AS` before aliases.
//!
//! Names are not resolved here: a path root such as `payload` or `clientid` and a function name
//! such as `upper` are kept as written, with their spans.

use std::fmt::{self, Display, Formatter, Write as _};

/// The name `FOREACH` gives the current element when the statement has no `AS name`.
pub const DEFAULT_ITEM_NAME: &str = "item";

/// A position in the SQL text. `line` and `column` are 1-based (columns count Unicode scalar
/// values); `offset` is the 0-based byte offset. [`Location::default`] (line 0) means "no position".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

impl Location {
    /// Shifts the position as if the SQL text started at line `1 + line_offset`, column
    /// `1 + col_offset` of an enclosing file. Only locations on the SQL's first line move
    /// sideways. `offset` stays relative to the SQL text (escapes in the enclosing file would
    /// make a shifted byte offset wrong anyway).
    #[must_use]
    pub fn offset_by(self, line_offset: usize, col_offset: usize) -> Self {
        let column = if self.line == 1 {
            self.column + col_offset
        } else {
            self.column
        };
        Location {
            line: self.line + line_offset,
            column,
            offset: self.offset,
        }
    }
}

impl Display for Location {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A range of the SQL text: `start` is the first character, `end` is just past the last one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: Location,
    pub end: Location,
}

impl Span {
    /// The span from the start of `self` to the end of `other`.
    #[must_use]
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start,
            end: other.end,
        }
    }

    /// See [`Location::offset_by`].
    #[must_use]
    pub fn offset_by(self, line_offset: usize, col_offset: usize) -> Self {
        Span {
            start: self.start.offset_by(line_offset, col_offset),
            end: self.end.offset_by(line_offset, col_offset),
        }
    }
}

impl Display for Span {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// A name as written: a bare word or a `"double-quoted"` name (quotes removed, `""` unescaped).
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn new(name: impl Into<String>, span: Span) -> Self {
        Ident {
            name: name.into(),
            span,
        }
    }
}

/// One rule SQL statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub kind: StatementKind,
    /// The `FROM` sources, in order; never empty after parsing.
    pub from: Vec<FromSource>,
    pub where_: Option<Expr>,
    pub span: Span,
}

/// `SELECT` makes one output per message, `FOREACH` zero or more.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // one per rule: boxing would only add indirection
pub enum StatementKind {
    /// `SELECT fields`.
    Select { fields: Vec<Field> },
    /// `FOREACH [bindings,] expr [AS alias] [DO do_fields] [INCASE incase]`. `bindings` are the
    /// fields before the last one (`FOREACH payload.data AS d, d.sensors AS s ...`): each is
    /// evaluated in turn and its value, under its alias, is visible to the later fields and
    /// every other clause. An empty `do_fields` means no `DO` clause (each element is output
    /// with the columns).
    Foreach {
        bindings: Vec<Field>,
        expr: Expr,
        alias: Option<Alias>,
        do_fields: Vec<Field>,
        incase: Option<Expr>,
    },
}

impl Statement {
    /// For `FOREACH`: the name of the current element (the alias's root, else
    /// [`DEFAULT_ITEM_NAME`]).
    pub fn item_name(&self) -> Option<&str> {
        match &self.kind {
            StatementKind::Foreach { alias, .. } => {
                Some(alias.as_ref().map_or(DEFAULT_ITEM_NAME, |a| a.root.name.as_str()))
            }
            StatementKind::Select { .. } => None,
        }
    }

    /// A copy with every span reset to [`Span::default`], for comparing trees by syntax alone.
    #[must_use]
    pub fn without_spans(&self) -> Statement {
        let mut s = self.clone();
        s.clear_spans();
        s
    }

    /// Resets every span in the tree to [`Span::default`].
    pub fn clear_spans(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            StatementKind::Select { fields } => fields.iter_mut().for_each(Field::clear_spans),
            StatementKind::Foreach {
                bindings,
                expr,
                alias,
                do_fields,
                incase,
            } => {
                bindings.iter_mut().for_each(Field::clear_spans);
                expr.clear_spans();
                if let Some(a) = alias {
                    a.clear_spans();
                }
                do_fields.iter_mut().for_each(Field::clear_spans);
                if let Some(e) = incase {
                    e.clear_spans();
                }
            }
        }
        for source in &mut self.from {
            source.span = Span::default();
        }
        if let Some(e) = &mut self.where_ {
            e.clear_spans();
        }
    }
}

/// One `FROM` source: an MQTT topic filter (`"t/#"`) or an event/bridge topic
/// (`"$events/client_connected"`, `"$bridges/mqtt:my_bridge"`), quotes removed.
#[derive(Debug, Clone, PartialEq)]
pub struct FromSource {
    pub topic: String,
    pub span: Span,
}

/// One item of a `SELECT` or `DO` list.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // a handful per rule: boxing would only add indirection
pub enum Field {
    /// `expr [AS alias]` (`AS` is optional in the source).
    Expr {
        expr: Expr,
        alias: Option<Alias>,
        span: Span,
    },
    /// `*`: every column of the input.
    Star { span: Span },
}

impl Field {
    pub fn span(&self) -> Span {
        match self {
            Field::Expr { span, .. } | Field::Star { span } => *span,
        }
    }

    /// Resets every span in the field to [`Span::default`].
    pub fn clear_spans(&mut self) {
        match self {
            Field::Expr { expr, alias, span } => {
                *span = Span::default();
                expr.clear_spans();
                if let Some(a) = alias {
                    a.clear_spans();
                }
            }
            Field::Star { span } => *span = Span::default(),
        }
    }
}

/// Where a field's value goes in the output: `AS name`, or a path into a nested map or list
/// (`AS a.b`, `AS a[1]`, `AS a[-0]`), as EMQX's `nested_put`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    pub root: Ident,
    pub segments: Vec<AliasSegment>,
    pub span: Span,
}

impl Alias {
    /// A plain-name alias.
    pub fn name(name: Ident) -> Self {
        let span = name.span;
        Alias {
            root: name,
            segments: Vec::new(),
            span,
        }
    }

    /// The name, when the alias is a plain name (no path).
    pub fn as_name(&self) -> Option<&str> {
        self.segments.is_empty().then_some(self.root.name.as_str())
    }

    fn clear_spans(&mut self) {
        self.span = Span::default();
        self.root.span = Span::default();
        for s in &mut self.segments {
            match s {
                AliasSegment::Key(i) => i.span = Span::default(),
                AliasSegment::Index { span, .. } | AliasSegment::Append { span } => *span = Span::default(),
            }
        }
    }
}

/// One step of an [`Alias`] path after its root.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AliasSegment {
    /// `.key`, `."key"`, `.'key'` or `.1`: a map key.
    Key(Ident),
    /// `[i]`: replaces the `i`th element (1-based; negative counts from the end). `[0]` puts
    /// the value in front of the list (EMQX's `head`).
    Index { index: i64, span: Span },
    /// `[-0]`: appends the value to the list (EMQX's `tail`).
    Append { span: Span },
}

/// A prefix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `NOT x`.
    Not,
}

/// An infix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BinaryOp {
    Or,
    And,
    /// `=`.
    Eq,
    /// `!=` or `<>`.
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~`: the left topic matches the right topic filter.
    TopicMatch,
    /// `+`: addition or string concatenation.
    Add,
    Sub,
    Mul,
    /// `/`.
    Div,
    /// `div`: integer division.
    IntDiv,
    /// `mod`.
    Mod,
}

impl BinaryOp {
    /// The operator as rule SQL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::TopicMatch => "=~",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::IntDiv => "div",
            BinaryOp::Mod => "mod",
        }
    }

    /// Binding strength: higher binds tighter (see the table in grammar/rule_sql.pest).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => PREC_OR,
            BinaryOp::And => PREC_AND,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::TopicMatch => PREC_CMP,
            BinaryOp::Add | BinaryOp::Sub => PREC_ADD,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::IntDiv | BinaryOp::Mod => PREC_MUL,
        }
    }
}

impl Display for BinaryOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;
const PREC_NOT: u8 = 3;
const PREC_CMP: u8 = 4;
const PREC_ADD: u8 = 5;
const PREC_MUL: u8 = 6;
const PREC_NEG: u8 = 7;
const PREC_ATOM: u8 = 8;

/// One step of a [`Path`] after its root.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PathSegment {
    /// `.key`, `."key"` or `.1` (a numeric key is kept as its digits).
    Name(Ident),
    /// `.'key'`: a single-quoted key such as `pub_props.'User-Property'`.
    Quoted(Ident),
    /// `[i]`: 1-based list index; negative counts from the end (`[-1]` is the last element).
    Index { index: i64, span: Span },
    /// `[start..end]`: the sub-list from `start` to `end`, both included, 1-based.
    Range { start: i64, end: i64, span: Span },
    /// `[name]` or `[a.b]`: an index read from a column or an alias (`payload.list[i]`). A
    /// value that is not an integer indexes nothing.
    Dynamic { index: Box<Path>, span: Span },
}

impl PathSegment {
    pub fn span(&self) -> Span {
        match self {
            PathSegment::Name(i) | PathSegment::Quoted(i) => i.span,
            PathSegment::Index { span, .. } | PathSegment::Range { span, .. } | PathSegment::Dynamic { span, .. } => {
                *span
            }
        }
    }

    fn clear_spans(&mut self) {
        match self {
            PathSegment::Name(i) | PathSegment::Quoted(i) => i.span = Span::default(),
            PathSegment::Index { span, .. } | PathSegment::Range { span, .. } => *span = Span::default(),
            PathSegment::Dynamic { index, span } => {
                *span = Span::default();
                index.clear_spans();
            }
        }
    }
}

/// A column reference: `clientid`, `payload.a.b`, `payload.list[1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The first name (`payload`, `clientid`, a FOREACH item, an alias).
    pub root: Ident,
    pub segments: Vec<PathSegment>,
    pub span: Span,
}

impl Path {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        self.root.span = Span::default();
        self.segments.iter_mut().for_each(PathSegment::clear_spans);
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Expr {
    /// An integer literal; `-1` is one literal.
    Int { value: i64, span: Span },
    /// A float literal (`1.5`, `-2e3`); always finite.
    Float { value: f64, span: Span },
    /// A `'single-quoted'` string (`''` unescaped).
    Str { value: String, span: Span },
    /// `true` / `false`.
    Bool { value: bool, span: Span },
    /// `[a, b, ...]`.
    List { items: Vec<Expr>, span: Span },
    /// `[start..end]` outside a path: the integers `start..=end`.
    Range { start: i64, end: i64, span: Span },
    /// A column reference.
    Path(Path),
    /// `name(args)`; the name is resolved at compile time.
    Call { name: Ident, args: Vec<Expr>, span: Span },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
        span: Span,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
        span: Span,
    },
    /// `expr [NOT] IN (list)`.
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        span: Span,
    },
    /// `CASE [operand] WHEN a THEN b ... [ELSE e] END`. With an operand each `WHEN` value is
    /// compared with it; without one each `WHEN` is a condition.
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
        span: Span,
    },
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Int { span, .. }
            | Expr::Float { span, .. }
            | Expr::Str { span, .. }
            | Expr::Bool { span, .. }
            | Expr::List { span, .. }
            | Expr::Range { span, .. }
            | Expr::Call { span, .. }
            | Expr::Unary { span, .. }
            | Expr::Binary { span, .. }
            | Expr::In { span, .. }
            | Expr::Case { span, .. } => *span,
            Expr::Path(p) => p.span,
        }
    }

    /// A copy with every span reset to [`Span::default`].
    #[must_use]
    pub fn without_spans(&self) -> Expr {
        let mut e = self.clone();
        e.clear_spans();
        e
    }

    /// Resets every span in the expression to [`Span::default`].
    pub fn clear_spans(&mut self) {
        match self {
            Expr::Int { span, .. }
            | Expr::Float { span, .. }
            | Expr::Str { span, .. }
            | Expr::Bool { span, .. }
            | Expr::Range { span, .. } => *span = Span::default(),
            Expr::List { items, span } => {
                *span = Span::default();
                items.iter_mut().for_each(Expr::clear_spans);
            }
            Expr::Path(p) => p.clear_spans(),
            Expr::Call { name, args, span } => {
                *span = Span::default();
                name.span = Span::default();
                args.iter_mut().for_each(Expr::clear_spans);
            }
            Expr::Unary { operand, span, .. } => {
                *span = Span::default();
                operand.clear_spans();
            }
            Expr::Binary { left, right, span, .. } => {
                *span = Span::default();
                left.clear_spans();
                right.clear_spans();
            }
            Expr::In { expr, list, span, .. } => {
                *span = Span::default();
                expr.clear_spans();
                list.iter_mut().for_each(Expr::clear_spans);
            }
            Expr::Case {
                operand,
                whens,
                else_,
                span,
            } => {
                *span = Span::default();
                if let Some(o) = operand {
                    o.clear_spans();
                }
                for (w, t) in whens {
                    w.clear_spans();
                    t.clear_spans();
                }
                if let Some(e) = else_ {
                    e.clear_spans();
                }
            }
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary { op, .. } => op.precedence(),
            Expr::In { .. } => PREC_CMP,
            Expr::Unary { op: UnaryOp::Not, .. } => PREC_NOT,
            Expr::Unary { op: UnaryOp::Neg, .. } => PREC_NEG,
            _ => PREC_ATOM,
        }
    }

    /// Writes `self`, in parentheses if it binds looser than `min`.
    fn fmt_prec(&self, f: &mut Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

// ------------------------------------------------------------------------ Display

/// The keywords (case-insensitive), which a bare name may not be.
pub const KEYWORDS: &[&str] = &[
    "select", "from", "where", "as", "foreach", "do", "incase", "case", "when", "then", "else", "end", "and", "or",
    "not", "in", "div", "mod", "true", "false",
];

/// Whether `word` is a rule SQL keyword (case-insensitive).
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// `[A-Za-z_][A-Za-z0-9_$@~]*`, the shape of a bare word.
fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '@' | '~'))
}

fn write_quoted(f: &mut Formatter<'_>, quote: char, text: &str) -> fmt::Result {
    f.write_char(quote)?;
    for c in text.chars() {
        if c == quote {
            f.write_char(quote)?;
        }
        f.write_char(c)?;
    }
    f.write_char(quote)
}

/// A name where a keyword would be ambiguous: bare when possible, else `"quoted"`.
impl Display for Ident {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if is_word(&self.name) && !is_keyword(&self.name) {
            f.write_str(&self.name)
        } else {
            write_quoted(f, '"', &self.name)
        }
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StatementKind::Select { fields } => {
                f.write_str("SELECT ")?;
                write_list(f, fields)?;
            }
            StatementKind::Foreach {
                bindings,
                expr,
                alias,
                do_fields,
                incase,
            } => {
                f.write_str("FOREACH ")?;
                for b in bindings {
                    write!(f, "{b}, ")?;
                }
                write!(f, "{expr}")?;
                if let Some(a) = alias {
                    write!(f, " AS {a}")?;
                }
                if !do_fields.is_empty() {
                    f.write_str(" DO ")?;
                    write_list(f, do_fields)?;
                }
                if let Some(c) = incase {
                    write!(f, " INCASE {c}")?;
                }
            }
        }
        f.write_str(" FROM ")?;
        write_list(f, &self.from)?;
        if let Some(w) = &self.where_ {
            write!(f, " WHERE {w}")?;
        }
        Ok(())
    }
}

fn write_list<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl Display for FromSource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_quoted(f, '"', &self.topic)
    }
}

impl Display for Field {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Field::Expr { expr, alias, .. } => {
                write!(f, "{expr}")?;
                if let Some(a) = alias {
                    write!(f, " AS {a}")?;
                }
                Ok(())
            }
            Field::Star { .. } => f.write_str("*"),
        }
    }
}

impl Display for Alias {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)?;
        for s in &self.segments {
            match s {
                // After a dot keywords are plain keys, so only the word shape matters.
                AliasSegment::Key(i) if is_word(&i.name) => write!(f, ".{}", i.name)?,
                AliasSegment::Key(i) => {
                    f.write_char('.')?;
                    write_quoted(f, '"', &i.name)?;
                }
                AliasSegment::Index { index, .. } => write!(f, "[{index}]")?,
                AliasSegment::Append { .. } => f.write_str("[-0]")?,
            }
        }
        Ok(())
    }
}

impl Display for PathSegment {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            // After a dot keywords are plain keys, so only the word shape matters.
            PathSegment::Name(i) if is_word(&i.name) => write!(f, ".{}", i.name),
            PathSegment::Name(i) => {
                f.write_char('.')?;
                write_quoted(f, '"', &i.name)
            }
            PathSegment::Quoted(i) => {
                f.write_char('.')?;
                write_quoted(f, '\'', &i.name)
            }
            PathSegment::Index { index, .. } => write!(f, "[{index}]"),
            PathSegment::Range { start, end, .. } => write!(f, "[{start}..{end}]"),
            PathSegment::Dynamic { index, .. } => write!(f, "[{index}]"),
        }
    }
}

impl Display for Path {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.root)?;
        self.segments.iter().try_for_each(|s| write!(f, "{s}"))
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int { value, .. } => write!(f, "{value}"),
            // `{:?}` keeps a float a float: `1.0`, `1e300`, `-2.5e-7`.
            Expr::Float { value, .. } => write!(f, "{value:?}"),
            Expr::Str { value, .. } => write_quoted(f, '\'', value),
            Expr::Bool { value: true, .. } => f.write_str("true"),
            Expr::Bool { value: false, .. } => f.write_str("false"),
            Expr::List { items, .. } => {
                f.write_char('[')?;
                write_list(f, items)?;
                f.write_char(']')
            }
            Expr::Range { start, end, .. } => write!(f, "[{start}..{end}]"),
            Expr::Path(p) => write!(f, "{p}"),
            Expr::Call { name, args, .. } => {
                // `div` and `mod` are keywords but also functions: `div(7, 2)`.
                if name.name.eq_ignore_ascii_case("div") || name.name.eq_ignore_ascii_case("mod") {
                    f.write_str(&name.name)?;
                } else {
                    write!(f, "{name}")?;
                }
                f.write_char('(')?;
                write_list(f, args)?;
                f.write_char(')')
            }
            Expr::Unary {
                op: UnaryOp::Not,
                operand,
                ..
            } => {
                f.write_str("NOT ")?;
                operand.fmt_prec(f, PREC_NOT)
            }
            Expr::Unary {
                op: UnaryOp::Neg,
                operand,
                ..
            } => {
                // `-1` would read back as the literal -1 and `--x` as a comment.
                let bare =
                    operand.precedence() == PREC_ATOM && !matches!(**operand, Expr::Int { .. } | Expr::Float { .. });
                if bare {
                    write!(f, "-{operand}")
                } else {
                    write!(f, "-({operand})")
                }
            }
            Expr::Binary { op, left, right, .. } => {
                let p = op.precedence();
                // Comparisons do not associate: `a = b = c` is a syntax error.
                let left_min = if p == PREC_CMP { p + 1 } else { p };
                left.fmt_prec(f, left_min)?;
                write!(f, " {op} ")?;
                right.fmt_prec(f, p + 1)
            }
            Expr::In {
                expr, list, negated, ..
            } => {
                expr.fmt_prec(f, PREC_CMP + 1)?;
                f.write_str(if *negated { " NOT IN (" } else { " IN (" })?;
                write_list(f, list)?;
                f.write_char(')')
            }
            Expr::Case {
                operand, whens, else_, ..
            } => {
                f.write_str("CASE")?;
                if let Some(o) = operand {
                    write!(f, " {o}")?;
                }
                for (when, then) in whens {
                    write!(f, " WHEN {when} THEN {then}")?;
                }
                if let Some(e) = else_ {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
        }
    }
}

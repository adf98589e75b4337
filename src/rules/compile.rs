//! Rule SQL syntax tree -> [`CompiledRule`]: an enum-based plan that `rules::eval` walks for
//! every message without re-parsing or re-resolving anything.
//!
//! Compiling resolves every function call (the message accessors such as `clientid()` and
//! `topic(n)`, then the built-in library of `rules::functions`, then any
//! [`HostFunction`] registered in [`CompileOptions`]), checks arities, validates the `FROM`
//! sources against MQTT topic-filter rules and the event catalogue of `rules::events`, folds
//! constant operator expressions, and records whether the rule reads into the payload
//! (`payload.x`), so the JSON decoding can be skipped for rules that do not.
//!
//! Every user mistake is a [`CompileError`] with the [`Span`] of the offending token. Nothing
//! here does IO or touches broker state.

use std::fmt;
use std::sync::Arc;

use super::ast::{
    Alias, AliasSegment, BinaryOp, Expr, Field, FromSource, Path, PathSegment, Span, Statement, StatementKind, UnaryOp,
};
use super::events::{
    self, ColumnSet, EventKind, Trigger, BRIDGE_TOPIC_PREFIX, EVENT_TOPIC_PREFIX, UNSUPPORTED_EVENT_TOPICS,
};
use super::functions::{self, FnDef};
use super::parse::{self, ParseError};
use super::value::Value;
use crate::mqtt::topic::{self, TopicLimits};

/// The longest range literal (`[1..N]`) a rule may build.
pub const MAX_RANGE_LEN: i64 = 10_000;

/// What went wrong, for callers that react differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompileErrorKind {
    /// A call to a function that does not exist.
    UnknownFunction,
    /// A call with the wrong number of arguments.
    Arity,
    /// A `FROM` source that is not a valid topic filter, event topic or bridge.
    BadSource,
    /// A value out of the accepted range (a range literal too long, a bad constant argument).
    BadValue,
}

/// A semantic error in rule SQL. `Display` is `line:col: message (help)`; [`render`](Self::render)
/// adds the offending line with a caret, like [`ParseError::render`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    pub kind: CompileErrorKind,
    pub message: String,
    /// The offending token or expression.
    pub span: Span,
    /// A hint such as "did you mean `upper`?".
    pub help: Option<String>,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.span.start, self.message)?;
        if let Some(h) = &self.help {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl CompileError {
    fn new(kind: CompileErrorKind, message: impl Into<String>, span: Span) -> Self {
        CompileError {
            kind,
            message: message.into(),
            span,
            help: None,
        }
    }

    fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Moves the error into an enclosing file (see [`ParseError::offset_by`]).
    #[must_use]
    pub fn offset_by(mut self, line_offset: usize, col_offset: usize) -> Self {
        self.span = self.span.offset_by(line_offset, col_offset);
        self
    }

    /// The error with the offending line of `sql` and a caret under the span.
    pub fn render(&self, sql: &str) -> String {
        render_span(sql, self.span, &self.to_string())
    }
}

/// A parse or compile error: everything that can be wrong with a rule's SQL text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleSqlError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

impl RuleSqlError {
    pub fn span(&self) -> Span {
        match self {
            RuleSqlError::Parse(e) => e.span,
            RuleSqlError::Compile(e) => e.span,
        }
    }

    /// The error with its line and a caret.
    pub fn render(&self, sql: &str) -> String {
        match self {
            RuleSqlError::Parse(e) => e.render(sql),
            RuleSqlError::Compile(e) => e.render(sql),
        }
    }
}

/// `message` (which starts with its `line:col`), then the line of `sql` holding `span.start`
/// with carets under the span, in the layout of [`ParseError::render`].
pub fn render_span(sql: &str, span: Span, message: &str) -> String {
    let offset = floor_char_boundary(sql, span.start.offset);
    let line_start = sql[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = sql[offset..].find('\n').map_or(sql.len(), |i| offset + i);
    let line = sql[line_start..line_end].trim_end_matches('\r');
    let end = floor_char_boundary(sql, span.end.offset).clamp(offset, (line_start + line.len()).max(offset));
    let pad: String = sql[line_start..offset]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let carets = "^".repeat(sql[offset..end].chars().count().max(1));
    let number = span.start.line.max(1).to_string();
    let gutter = " ".repeat(number.len());
    format!("{message}\n{gutter} |\n{number} | {line}\n{gutter} | {pad}{carets}")
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

// ------------------------------------------------------------------------ host functions

/// A function supplied by the embedding application (jq, kv_store, getenv, Rhai scripts...):
/// it sees the arguments and the rule input. An `Err` fails the evaluation with that message.
pub trait HostFunction: Send + Sync {
    fn call(&self, args: &[Value], input: &super::eval::EvalInput) -> Result<Value, String>;
}

/// A named [`HostFunction`] with its arity.
#[derive(Clone)]
pub struct HostFn {
    /// Lowercase name, as called from SQL (lookup ignores case).
    pub name: Arc<str>,
    pub min_args: usize,
    /// `None`: any number from `min_args` up.
    pub max_args: Option<usize>,
    pub f: Arc<dyn HostFunction>,
}

impl fmt::Debug for HostFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFn")
            .field("name", &self.name)
            .field("min_args", &self.min_args)
            .field("max_args", &self.max_args)
            .finish()
    }
}

/// Options for [`compile_with`].
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Extra functions, looked up after the message accessors and the built-in library.
    pub host_functions: Vec<HostFn>,
}

impl CompileOptions {
    /// Adds a host function.
    pub fn register(&mut self, name: &str, min_args: usize, max_args: Option<usize>, f: Arc<dyn HostFunction>) {
        self.host_functions.push(HostFn {
            name: Arc::from(name.to_ascii_lowercase()),
            min_args,
            max_args,
            f,
        });
    }
}

// ------------------------------------------------------------------------ the plan

/// One `FROM` source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// An MQTT topic filter: the rule runs on `message.publish` for matching topics.
    Topic(String),
    /// An event (`$events/...`, wildcard event filters expanded).
    Event(EventKind),
    /// `$bridges/mqtt:<name>`: messages received by that MQTT bridge.
    Bridge(String),
}

/// A compiled rule: immutable, cheap to share (`Arc`), evaluated with
/// [`CompiledRule::eval`](super::eval).
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub(crate) sources: Vec<Source>,
    pub(crate) from_text: Vec<String>,
    pub(crate) plan: Plan,
    pub(crate) where_: Option<Node>,
    pub(crate) reads_payload: bool,
    /// The event columns the rule reads (the dispatcher builds only those).
    pub(crate) columns: ColumnSet,
    pub(crate) id: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per rule: boxing would only add indirection
pub(crate) enum Plan {
    Select {
        fields: Vec<FieldPlan>,
    },
    Foreach {
        /// The fields before the collection, evaluated in turn into the FOREACH-selected map.
        bindings: Vec<FieldPlan>,
        expr: Node,
        /// Where the collection goes in the FOREACH-selected map.
        key: OutKey,
        /// The name of the current element (`AS name`, else `item`).
        item: Arc<str>,
        /// The expression is the bare `payload`: iterate over the decoded payload.
        over_payload: bool,
        do_fields: Vec<FieldPlan>,
        incase: Option<Node>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum FieldPlan {
    Star,
    Expr { node: Node, key: OutKey },
}

/// Where a field's value goes in the output map.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutKey {
    Name(Arc<str>),
    /// A path alias (`AS a.b[1]`) or an unaliased path (`payload.x[2].y`): a nested put, as
    /// EMQX does.
    Path {
        root: Arc<str>,
        segs: Vec<KeySeg>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeySeg {
    Key(Arc<str>),
    /// 1-based, negative from the end; 0 puts the value in front of the list.
    Index(i64),
    /// `[-0]`: appends to the list.
    Append,
}

/// An expression node, with its span for error reports.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) span: Span,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Const(Value),
    Path {
        root: Arc<str>,
        /// `root` is `payload`: read the shared, lazily decoded payload.
        payload: bool,
        segs: Vec<Seg>,
    },
    Call {
        f: Callee,
        args: Vec<Node>,
    },
    Neg(Box<Node>),
    Not(Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    In {
        expr: Box<Node>,
        list: Vec<Node>,
        negated: bool,
    },
    Case {
        operand: Option<Box<Node>>,
        whens: Vec<(Node, Node)>,
        else_: Option<Box<Node>>,
    },
    List(Vec<Node>),
}

#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Key(Arc<str>),
    Index(i64),
    Range(i64, i64),
    /// `[name]`: the index is the value of a path, read when the path is.
    Dynamic(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    TopicMatch,
}

#[derive(Clone)]
pub(crate) enum Callee {
    Builtin(&'static FnDef),
    Context(ContextFn),
    Host(HostFn),
}

impl fmt::Debug for Callee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Callee::Builtin(d) => write!(f, "Builtin({})", d.name),
            Callee::Context(c) => write!(f, "Context({c:?})"),
            Callee::Host(h) => write!(f, "Host({})", h.name),
        }
    }
}

/// EMQX's message accessors (`emqx_rule_funcs`: `msgid/0` ... `payload/1`, `null/0`): they
/// read the event's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextFn {
    Msgid,
    Qos,
    Topic,
    Flags,
    Flag,
    Clientid,
    Username,
    Clientip,
    Peerhost,
    Payload,
    Null,
}

/// Name, arity range and accessor of every message accessor.
const CONTEXT_FNS: &[(&str, usize, usize, ContextFn)] = &[
    ("msgid", 0, 0, ContextFn::Msgid),
    ("qos", 0, 0, ContextFn::Qos),
    ("topic", 0, 1, ContextFn::Topic),
    ("flags", 0, 0, ContextFn::Flags),
    ("flag", 1, 1, ContextFn::Flag),
    ("clientid", 0, 0, ContextFn::Clientid),
    ("username", 0, 0, ContextFn::Username),
    ("clientip", 0, 0, ContextFn::Clientip),
    ("peerhost", 0, 0, ContextFn::Peerhost),
    ("payload", 0, 1, ContextFn::Payload),
    ("null", 0, 0, ContextFn::Null),
];

impl CompiledRule {
    /// The `FROM` sources, deduplicated, wildcard event filters expanded.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The `FROM` clause as written.
    pub fn from_text(&self) -> &[String] {
        &self.from_text
    }

    /// The MQTT topic filters the dispatcher indexes for `message.publish`.
    pub fn topic_filters(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s {
            Source::Topic(f) => Some(f.as_str()),
            _ => None,
        })
    }

    /// The events (other than `message.publish`) this rule runs on.
    pub fn events(&self) -> impl Iterator<Item = EventKind> + '_ {
        self.sources.iter().filter_map(|s| match s {
            Source::Event(k) => Some(*k),
            _ => None,
        })
    }

    /// The MQTT bridges this rule reads.
    pub fn bridges(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s {
            Source::Bridge(b) => Some(b.as_str()),
            _ => None,
        })
    }

    /// Whether `FROM` selects `topic_or_event`: an event topic (`$events/client_connected`
    /// or `$events/client/connected`), a bridge topic (`$bridges/mqtt:b`), or else an MQTT
    /// topic name, matched against the topic filters. (For an event known by kind, use
    /// [`matches`](Self::matches) with [`Trigger::Event`].)
    pub fn matches_from(&self, topic_or_event: &str) -> bool {
        if let Some(bridge) = topic_or_event.strip_prefix("$bridges/mqtt:") {
            return self.matches(&Trigger::Bridge(bridge));
        }
        if topic_or_event.starts_with(EVENT_TOPIC_PREFIX) {
            return match EventKind::from_topic(topic_or_event) {
                Some(k) => self.matches(&Trigger::Event(k)),
                None => false,
            };
        }
        self.matches(&Trigger::Publish(topic_or_event))
    }

    /// Whether `FROM` selects the input described by `trigger`.
    pub fn matches(&self, trigger: &Trigger<'_>) -> bool {
        self.sources.iter().any(|s| match (s, trigger) {
            (Source::Topic(f), Trigger::Publish(t)) => topic::matches(f, t),
            (Source::Event(k), Trigger::Event(e)) => k == e,
            (Source::Bridge(b), Trigger::Bridge(n)) => b == n,
            _ => false,
        })
    }

    /// Whether the rule reads into the payload (`payload.x`, `payload('x')`, `FOREACH payload`),
    /// so evaluating it decodes the payload as JSON (once per message, shared by every rule).
    /// The event columns the rule reads ([`ColumnSet::ALL`] for `SELECT *` and host functions).
    pub fn columns(&self) -> ColumnSet {
        self.columns
    }

    pub fn reads_payload(&self) -> bool {
        self.reads_payload
    }

    pub fn is_foreach(&self) -> bool {
        matches!(self.plan, Plan::Foreach { .. })
    }

    /// The rule id, shown to the SQL as `metadata.rule_id` (as EMQX adds it to the columns).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Sets the rule id (see [`id`](Self::id)).
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.id = Some(id.into());
        self
    }
}

// ------------------------------------------------------------------------ compiling

/// Compiles a parsed statement with the built-in functions only.
pub fn compile(stmt: &Statement) -> Result<CompiledRule, CompileError> {
    compile_with(stmt, &CompileOptions::default())
}

/// Parses and compiles `sql`.
pub fn compile_sql(sql: &str) -> Result<CompiledRule, RuleSqlError> {
    Ok(compile(&parse::parse(sql)?)?)
}

/// Compiles a parsed statement, resolving calls also against `opts.host_functions`.
pub fn compile_with(stmt: &Statement, opts: &CompileOptions) -> Result<CompiledRule, CompileError> {
    let mut c = Compiler {
        opts,
        reads_payload: false,
        columns: ColumnSet::NONE,
    };
    let (sources, from_text) = c.sources(&stmt.from)?;
    let plan = match &stmt.kind {
        StatementKind::Select { fields } => Plan::Select {
            fields: c.fields(fields)?,
        },
        StatementKind::Foreach {
            bindings,
            expr,
            alias,
            do_fields,
            incase,
        } => {
            let over_payload = matches!(expr, Expr::Path(p) if p.root.name == "payload" && p.segments.is_empty());
            if over_payload {
                c.reads_payload = true;
                c.columns.add("payload");
            }
            // The alias names each element, so it must be a plain name (EMQX would key the
            // elements by a path, which no expression can read).
            if let Some(a) = alias.as_ref().filter(|a| a.as_name().is_none()) {
                return Err(CompileError::new(
                    CompileErrorKind::BadValue,
                    format!("the FOREACH element's alias `{a}` must be a plain name, not a path"),
                    a.span,
                ));
            }
            let key = match alias {
                Some(a) => alias_key(a),
                None => out_key(expr),
            };
            Plan::Foreach {
                bindings: c.fields(bindings)?,
                expr: c.expr(expr)?,
                key,
                item: Arc::from(stmt.item_name().unwrap_or(super::ast::DEFAULT_ITEM_NAME)),
                over_payload,
                do_fields: c.fields(do_fields)?,
                incase: incase.as_ref().map(|e| c.expr(e)).transpose()?,
            }
        }
    };
    let where_ = stmt.where_.as_ref().map(|e| c.expr(e)).transpose()?;
    Ok(CompiledRule {
        sources,
        from_text,
        plan,
        where_,
        reads_payload: c.reads_payload,
        columns: c.columns,
        id: None,
    })
}

struct Compiler<'a> {
    opts: &'a CompileOptions,
    reads_payload: bool,
    columns: ColumnSet,
}

impl Compiler<'_> {
    fn sources(&mut self, from: &[FromSource]) -> Result<(Vec<Source>, Vec<String>), CompileError> {
        let mut out: Vec<Source> = Vec::new();
        for s in from {
            for src in source(s)? {
                if !out.contains(&src) {
                    out.push(src);
                }
            }
        }
        Ok((out, from.iter().map(|s| s.topic.clone()).collect()))
    }

    fn fields(&mut self, fields: &[Field]) -> Result<Vec<FieldPlan>, CompileError> {
        fields
            .iter()
            .map(|f| match f {
                Field::Star { .. } => {
                    self.columns = ColumnSet::ALL;
                    Ok(FieldPlan::Star)
                }
                Field::Expr { expr, alias, .. } => Ok(FieldPlan::Expr {
                    node: self.expr(expr)?,
                    key: match alias {
                        Some(a) => alias_key(a),
                        None => out_key(expr),
                    },
                }),
                #[allow(unreachable_patterns)] // `Field` is non_exhaustive
                other => Err(CompileError::new(
                    CompileErrorKind::BadValue,
                    "unsupported field",
                    other.span(),
                )),
            })
            .collect()
    }

    fn expr(&mut self, e: &Expr) -> Result<Node, CompileError> {
        let span = e.span();
        let kind = match e {
            Expr::Int { value, .. } => NodeKind::Const(Value::Int(*value)),
            Expr::Float { value, .. } => NodeKind::Const(Value::Float(*value)),
            Expr::Str { value, .. } => NodeKind::Const(Value::str(value.as_str())),
            Expr::Bool { value, .. } => NodeKind::Const(Value::Bool(*value)),
            Expr::Range { start, end, .. } => NodeKind::Const(range_literal(*start, *end, span)?),
            Expr::List { items, .. } => {
                let items = items.iter().map(|i| self.expr(i)).collect::<Result<Vec<_>, _>>()?;
                if items.iter().all(|n| matches!(n.kind, NodeKind::Const(_))) {
                    let values = items
                        .into_iter()
                        .map(|n| match n.kind {
                            NodeKind::Const(v) => v,
                            _ => Value::Null,
                        })
                        .collect();
                    NodeKind::Const(Value::Array(Arc::new(values)))
                } else {
                    NodeKind::List(items)
                }
            }
            Expr::Path(p) => self.path(p),
            Expr::Call { name, args, .. } => self.call(&name.name, name.span, args, span)?,
            Expr::Unary { op, operand, .. } => {
                let operand = Box::new(self.expr(operand)?);
                match op {
                    UnaryOp::Neg => NodeKind::Neg(operand),
                    UnaryOp::Not => NodeKind::Not(operand),
                    #[allow(unreachable_patterns)] // `UnaryOp` is non_exhaustive
                    _ => {
                        return Err(CompileError::new(
                            CompileErrorKind::BadValue,
                            "unsupported operator",
                            span,
                        ))
                    }
                }
            }
            Expr::Binary { op, left, right, .. } => {
                let l = Box::new(self.expr(left)?);
                let r = Box::new(self.expr(right)?);
                match op {
                    BinaryOp::Or => NodeKind::Or(l, r),
                    BinaryOp::And => NodeKind::And(l, r),
                    BinaryOp::Eq => NodeKind::Cmp(CmpOp::Eq, l, r),
                    BinaryOp::Ne => NodeKind::Cmp(CmpOp::Ne, l, r),
                    BinaryOp::Lt => NodeKind::Cmp(CmpOp::Lt, l, r),
                    BinaryOp::Le => NodeKind::Cmp(CmpOp::Le, l, r),
                    BinaryOp::Gt => NodeKind::Cmp(CmpOp::Gt, l, r),
                    BinaryOp::Ge => NodeKind::Cmp(CmpOp::Ge, l, r),
                    BinaryOp::TopicMatch => NodeKind::Cmp(CmpOp::TopicMatch, l, r),
                    BinaryOp::Add => NodeKind::Arith(ArithOp::Add, l, r),
                    BinaryOp::Sub => NodeKind::Arith(ArithOp::Sub, l, r),
                    BinaryOp::Mul => NodeKind::Arith(ArithOp::Mul, l, r),
                    BinaryOp::Div => NodeKind::Arith(ArithOp::Div, l, r),
                    BinaryOp::IntDiv | BinaryOp::Mod => {
                        let name = if *op == BinaryOp::IntDiv { "div" } else { "mod" };
                        let def = functions::lookup(name).ok_or_else(|| {
                            CompileError::new(CompileErrorKind::UnknownFunction, format!("no `{name}` function"), span)
                        })?;
                        NodeKind::Call {
                            f: Callee::Builtin(def),
                            args: vec![*l, *r],
                        }
                    }
                    #[allow(unreachable_patterns)] // `BinaryOp` is non_exhaustive
                    _ => {
                        return Err(CompileError::new(
                            CompileErrorKind::BadValue,
                            "unsupported operator",
                            span,
                        ))
                    }
                }
            }
            Expr::In {
                expr, list, negated, ..
            } => NodeKind::In {
                expr: Box::new(self.expr(expr)?),
                list: list.iter().map(|i| self.expr(i)).collect::<Result<_, _>>()?,
                negated: *negated,
            },
            Expr::Case {
                operand, whens, else_, ..
            } => NodeKind::Case {
                operand: operand.as_ref().map(|o| self.expr(o).map(Box::new)).transpose()?,
                whens: whens
                    .iter()
                    .map(|(w, t)| Ok((self.expr(w)?, self.expr(t)?)))
                    .collect::<Result<_, CompileError>>()?,
                else_: else_.as_ref().map(|e| self.expr(e).map(Box::new)).transpose()?,
            },
            #[allow(unreachable_patterns)] // `Expr` is non_exhaustive
            _ => {
                return Err(CompileError::new(
                    CompileErrorKind::BadValue,
                    "unsupported expression",
                    span,
                ))
            }
        };
        Ok(fold(Node { kind, span }))
    }

    fn path(&mut self, p: &Path) -> NodeKind {
        let payload = p.root.name == "payload";
        self.columns.add(&p.root.name);
        if payload && !p.segments.is_empty() {
            self.reads_payload = true;
        }
        NodeKind::Path {
            root: Arc::from(p.root.name.as_str()),
            payload,
            segs: p
                .segments
                .iter()
                .map(|s| match s {
                    PathSegment::Name(i) | PathSegment::Quoted(i) => Seg::Key(Arc::from(i.name.as_str())),
                    PathSegment::Index { index, .. } => Seg::Index(*index),
                    PathSegment::Range { start, end, .. } => Seg::Range(*start, *end),
                    PathSegment::Dynamic { index, .. } => Seg::Dynamic(Box::new(Node {
                        kind: self.path(index),
                        span: index.span,
                    })),
                })
                .collect(),
        }
    }

    fn call(&mut self, name: &str, name_span: Span, args: &[Expr], span: Span) -> Result<NodeKind, CompileError> {
        let lower = name.to_ascii_lowercase();
        let n = args.len();
        let arity_error = |min: usize, max: Option<usize>| {
            let expected = match max {
                Some(m) if m == min => format!("{m} argument{}", if m == 1 { "" } else { "s" }),
                Some(m) => format!("{min} to {m} arguments"),
                None => format!("at least {min} argument{}", if min == 1 { "" } else { "s" }),
            };
            CompileError::new(
                CompileErrorKind::Arity,
                format!("`{lower}` takes {expected}, got {n}"),
                span,
            )
        };
        let f = if let Some(&(_, min, max, cf)) = CONTEXT_FNS.iter().find(|(n, ..)| *n == lower) {
            if n < min || n > max {
                return Err(arity_error(min, Some(max)));
            }
            if cf == ContextFn::Payload && n == 1 {
                self.reads_payload = true;
            }
            self.columns.add(match cf {
                ContextFn::Msgid => "id",
                ContextFn::Qos => "qos",
                ContextFn::Topic => "topic",
                ContextFn::Flags | ContextFn::Flag => "flags",
                ContextFn::Clientid => "clientid",
                ContextFn::Username => "username",
                ContextFn::Clientip | ContextFn::Peerhost => "peerhost",
                ContextFn::Payload => "payload",
                ContextFn::Null => "",
            });
            Callee::Context(cf)
        } else if let Some(def) = functions::lookup(&lower) {
            if !def.accepts(n) {
                return Err(arity_error(def.min_args, def.max_args));
            }
            Callee::Builtin(def)
        } else if let Some(h) = self.opts.host_functions.iter().find(|h| *h.name == *lower) {
            if n < h.min_args || h.max_args.is_some_and(|m| n > m) {
                return Err(arity_error(h.min_args, h.max_args));
            }
            // A host function sees the whole input.
            self.columns = ColumnSet::ALL;
            Callee::Host(h.clone())
        } else {
            let candidates = CONTEXT_FNS
                .iter()
                .map(|(n, ..)| n.to_string())
                .chain(functions::all().iter().map(|d| d.name.to_string()))
                .chain(self.opts.host_functions.iter().map(|h| h.name.to_string()));
            let help = events::closest(&lower, candidates).map(|s| format!("did you mean `{s}`?"));
            return Err(CompileError::new(
                CompileErrorKind::UnknownFunction,
                format!("unknown function `{name}`"),
                name_span,
            )
            .with_help(help));
        };
        let args = args.iter().map(|a| self.expr(a)).collect::<Result<Vec<_>, _>>()?;
        Ok(NodeKind::Call { f, args })
    }
}

/// Validates one `FROM` source.
fn source(s: &FromSource) -> Result<Vec<Source>, CompileError> {
    let t = s.topic.as_str();
    let bad = |msg: String| CompileError::new(CompileErrorKind::BadSource, msg, s.span);
    if t.starts_with(EVENT_TOPIC_PREFIX) {
        if topic::has_wildcard(t) {
            topic::validate_filter(t, TopicLimits::default())
                .map_err(|e| bad(format!("invalid event filter \"{t}\": {e}")))?;
            let kinds = EventKind::matching_filter(t);
            if kinds.is_empty() {
                return Err(bad(format!("the event filter \"{t}\" matches no event")));
            }
            return Ok(kinds.into_iter().map(Source::Event).collect());
        }
        return match EventKind::from_topic(t) {
            Some(k) => Ok(vec![Source::Event(k)]),
            None if UNSUPPORTED_EVENT_TOPICS.contains(&t) => {
                Err(bad(format!("the EMQX event \"{t}\" is not supported by Junction")))
            }
            None if t == "$events/message_publish" => Err(bad(
                "`message.publish` is selected with a topic filter, e.g. FROM \"#\"".to_string(),
            )),
            None => {
                let candidates = events::EVENTS.iter().flat_map(|d| d.from_topics()).map(str::to_string);
                let help = events::closest(t, candidates).map(|s| format!("did you mean \"{s}\"?"));
                Err(bad(format!("unknown event \"{t}\"")).with_help(help))
            }
        };
    }
    if let Some(rest) = t.strip_prefix(BRIDGE_TOPIC_PREFIX) {
        let Some(name) = rest.strip_prefix("mqtt:") else {
            return Err(bad(format!(
                "unsupported bridge source \"{t}\": Junction has MQTT bridges only (\"$bridges/mqtt:<name>\")"
            )));
        };
        if name.is_empty() || name.contains(['+', '#', '/']) {
            return Err(bad(format!("invalid bridge name in \"{t}\"")));
        }
        return Ok(vec![Source::Bridge(name.to_string())]);
    }
    topic::validate_filter(t, TopicLimits::default()).map_err(|e| bad(format!("invalid topic filter \"{t}\": {e}")))?;
    match topic::parse_shared(t) {
        Ok(p) if p.group.is_none() => Ok(vec![Source::Topic(t.to_string())]),
        _ => Err(bad(format!("a shared subscription cannot be a rule source: \"{t}\""))),
    }
}

fn range_literal(start: i64, end: i64, span: Span) -> Result<Value, CompileError> {
    let len = i128::from(end) - i128::from(start) + 1;
    if len > i128::from(MAX_RANGE_LEN) {
        return Err(CompileError::new(
            CompileErrorKind::BadValue,
            format!("range [{start}..{end}] is longer than {MAX_RANGE_LEN} elements"),
            span,
        ));
    }
    // Erlang's lists:seq(B, E) is empty when E = B - 1 and an error below that; we give [].
    let items = if len > 0 {
        (start..=end).map(Value::Int).collect()
    } else {
        Vec::new()
    };
    Ok(Value::Array(Arc::new(items)))
}

/// The output key of `AS alias`: a name, or a nested put for a path.
fn alias_key(a: &Alias) -> OutKey {
    let root = Arc::from(a.root.name.as_str());
    if a.segments.is_empty() {
        return OutKey::Name(root);
    }
    let segs = a
        .segments
        .iter()
        .map(|s| match s {
            AliasSegment::Key(i) => KeySeg::Key(Arc::from(i.name.as_str())),
            AliasSegment::Index { index, .. } => KeySeg::Index(*index),
            AliasSegment::Append { .. } => KeySeg::Append,
        })
        .collect();
    OutKey::Path { root, segs }
}

/// The output key of an unaliased field (EMQX's `alias/2`): a path is a nested key (up to any
/// range), a string constant is its own text, anything else is keyed by its SQL text (EMQX
/// makes up an ephemeral `_v_..._<time>` name instead; a stable name is more useful).
fn out_key(e: &Expr) -> OutKey {
    match e {
        Expr::Path(p) => {
            let mut segs = Vec::new();
            for s in &p.segments {
                match s {
                    PathSegment::Name(i) | PathSegment::Quoted(i) => segs.push(KeySeg::Key(Arc::from(i.name.as_str()))),
                    PathSegment::Index { index, .. } => segs.push(KeySeg::Index(*index)),
                    _ => break,
                }
            }
            let root = Arc::from(p.root.name.as_str());
            if segs.is_empty() {
                OutKey::Name(root)
            } else {
                OutKey::Path { root, segs }
            }
        }
        Expr::Str { value, .. } => OutKey::Name(Arc::from(value.as_str())),
        other => OutKey::Name(Arc::from(other.to_string())),
    }
}

/// Constant folding: an operator whose operands are all constants is evaluated now. Calls are
/// never folded (some functions are impure: `now_timestamp()`, `random()`, `uuid_v4()`), and an
/// operator that fails is left for run time, where its error is reported per message.
fn fold(node: Node) -> Node {
    let foldable = match &node.kind {
        NodeKind::Neg(a) | NodeKind::Not(a) => is_const(a),
        NodeKind::Arith(_, a, b) | NodeKind::Cmp(_, a, b) | NodeKind::And(a, b) | NodeKind::Or(a, b) => {
            is_const(a) && is_const(b)
        }
        NodeKind::In { expr, list, .. } => is_const(expr) && list.iter().all(is_const),
        _ => false,
    };
    if !foldable {
        return node;
    }
    match super::eval::eval_const(&node) {
        Some(v) => Node {
            kind: NodeKind::Const(v),
            span: node.span,
        },
        None => node,
    }
}

fn is_const(n: &Node) -> bool {
    matches!(n.kind, NodeKind::Const(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse::parse;

    fn compiled(sql: &str) -> CompiledRule {
        compile_sql(sql).unwrap_or_else(|e| panic!("{}", e.render(sql)))
    }

    fn compile_err(sql: &str) -> CompileError {
        match compile(&parse(sql).unwrap()) {
            Err(e) => e,
            Ok(_) => panic!("{sql} compiled"),
        }
    }

    #[test]
    fn unknown_function_has_position_and_suggestion() {
        let sql = "SELECT uper(clientid) FROM \"t/#\"";
        let e = compile_err(sql);
        assert_eq!(e.kind, CompileErrorKind::UnknownFunction);
        assert_eq!((e.span.start.line, e.span.start.column), (1, 8));
        assert_eq!(e.to_string(), "1:8: unknown function `uper` (did you mean `upper`?)");
        assert_eq!(
            e.render(sql),
            "1:8: unknown function `uper` (did you mean `upper`?)\n  |\n1 | SELECT uper(clientid) FROM \"t/#\"\n  |        ^^^^"
        );
        let e = compile_err("SELECT\n  zzzzzz(1) FROM \"t\"");
        assert_eq!((e.span.start.line, e.span.start.column), (2, 3));
        assert_eq!(e.help, None);
    }

    #[test]
    fn arity_errors_point_at_the_call() {
        let e = compile_err("SELECT upper(a, b) FROM \"t\"");
        assert_eq!(e.kind, CompileErrorKind::Arity);
        assert_eq!(e.to_string(), "1:8: `upper` takes 1 argument, got 2");
        let e = compile_err("SELECT topic(1, 2) FROM \"t\"");
        assert_eq!(e.to_string(), "1:8: `topic` takes 0 to 1 arguments, got 2");
        let e = compile_err("SELECT sprintf() FROM \"t\"");
        assert_eq!(e.to_string(), "1:8: `sprintf` takes at least 1 argument, got 0");
    }

    #[test]
    fn sources_are_validated() {
        let r = compiled(
            "SELECT * FROM \"t/#\", \"$events/client_connected\", \"$events/client/connected\", \"$bridges/mqtt:b1\"",
        );
        assert_eq!(
            r.sources(),
            [
                Source::Topic("t/#".into()),
                Source::Event(EventKind::ClientConnected),
                Source::Bridge("b1".into())
            ]
        );
        assert!(r.matches_from("t/a"));
        assert!(r.matches_from("t"));
        assert!(!r.matches_from("u/a"));
        assert!(r.matches_from("$events/client/connected"));
        assert!(r.matches(&Trigger::Event(EventKind::ClientConnected)));
        assert!(!r.matches_from("$events/client_disconnected"));
        assert!(r.matches_from("$bridges/mqtt:b1"));
        assert!(!r.matches_from("$bridges/mqtt:b2"));

        let e = compile_err("SELECT * FROM \"t/#/x\"");
        assert_eq!(e.kind, CompileErrorKind::BadSource);
        assert_eq!((e.span.start.line, e.span.start.column), (1, 15));
        let e = compile_err("SELECT * FROM \"t\", \"$events/client_conected\"");
        assert_eq!(e.help.as_deref(), Some("did you mean \"$events/client_connected\"?"));
        assert_eq!((e.span.start.line, e.span.start.column), (1, 20));
        assert!(compile(&parse("SELECT * FROM \"$share/g/t\"").unwrap()).is_err());
        assert!(compile(&parse("SELECT * FROM \"$bridges/kafka:k\"").unwrap()).is_err());
        assert!(compile(&parse("SELECT * FROM \"$events/sys/alarm_activated\"").unwrap()).is_err());
        let r = compiled("SELECT * FROM \"$events/session/+\"");
        assert_eq!(r.events().count(), 2);
    }

    #[test]
    fn payload_reads_are_recorded() {
        assert!(!compiled("SELECT payload, clientid FROM \"t\"").reads_payload());
        assert!(!compiled("SELECT * FROM \"t\"").reads_payload());
        assert!(compiled("SELECT payload.x FROM \"t\"").reads_payload());
        assert!(compiled("SELECT 1 FROM \"t\" WHERE payload.a.b = 1").reads_payload());
        assert!(compiled("SELECT payload('a.b') AS x FROM \"t\"").reads_payload());
        assert!(compiled("FOREACH payload FROM \"t\"").reads_payload());
        assert!(compiled("FOREACH payload.s AS s FROM \"t\"").reads_payload());
    }

    #[test]
    fn constants_fold_and_keys_follow_emqx() {
        let r = compiled("SELECT 1 + 2 * 3, 'abc', [1..3] AS r, -(2), payload.x[2].y, upper(a) FROM \"t\"");
        let Plan::Select { fields } = &r.plan else { panic!() };
        let keys: Vec<&OutKey> = fields
            .iter()
            .map(|f| match f {
                FieldPlan::Expr { key, .. } => key,
                FieldPlan::Star => panic!(),
            })
            .collect();
        assert_eq!(keys[0], &OutKey::Name(Arc::from("1 + 2 * 3")));
        assert_eq!(keys[1], &OutKey::Name(Arc::from("abc")));
        assert_eq!(
            keys[4],
            &OutKey::Path {
                root: Arc::from("payload"),
                segs: vec![
                    KeySeg::Key(Arc::from("x")),
                    KeySeg::Index(2),
                    KeySeg::Key(Arc::from("y"))
                ]
            }
        );
        assert_eq!(keys[5], &OutKey::Name(Arc::from("upper(a)")));
        let FieldPlan::Expr { node, .. } = &fields[0] else {
            panic!()
        };
        assert!(matches!(node.kind, NodeKind::Const(Value::Int(7))));
        let FieldPlan::Expr { node, .. } = &fields[3] else {
            panic!()
        };
        assert!(matches!(node.kind, NodeKind::Const(Value::Int(-2))));
        // A failing constant operation is left for run time.
        let r = compiled("SELECT 1 / 0 AS x FROM \"t\"");
        let Plan::Select { fields } = &r.plan else { panic!() };
        let FieldPlan::Expr { node, .. } = &fields[0] else {
            panic!()
        };
        assert!(matches!(node.kind, NodeKind::Arith(..)));
    }

    #[test]
    fn huge_range_literals_are_refused() {
        let e = compile_err("SELECT [1..100000000] AS r FROM \"t\"");
        assert_eq!(e.kind, CompileErrorKind::BadValue);
    }

    #[test]
    fn host_functions_resolve_after_builtins() {
        struct Echo;
        impl HostFunction for Echo {
            fn call(&self, args: &[Value], _input: &crate::rules::eval::EvalInput) -> Result<Value, String> {
                Ok(args.first().cloned().unwrap_or_default())
            }
        }
        let mut opts = CompileOptions::default();
        opts.register("echo", 1, Some(1), Arc::new(Echo));
        let stmt = parse("SELECT echo(1) AS e FROM \"t\"").unwrap();
        assert!(compile(&stmt).is_err());
        assert!(compile_with(&stmt, &opts).is_ok());
        let stmt = parse("SELECT echo() AS e FROM \"t\"").unwrap();
        assert_eq!(compile_with(&stmt, &opts).unwrap_err().kind, CompileErrorKind::Arity);
    }
}

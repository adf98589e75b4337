//! Evaluating a [`CompiledRule`] against one input: EMQX's `emqx_rule_runtime` semantics.
//!
//! - `SELECT` builds one output map, field by field. A field sees the fields before it (EMQX
//!   looks names up in the output so far, then in the columns), so aliases work in later
//!   fields and in `WHERE`. `*` copies every column. An unaliased path, and a path alias, is
//!   a nested key (`SELECT payload.x` gives `{"payload": {"x": ...}}`, `SELECT 1 AS a.b[-0]`
//!   gives `{"a": {"b": [1]}}`; `[0]` prepends, `[-0]` appends, `[i]` replaces).
//! - `WHERE` false (or `null`) means no output.
//! - `FOREACH [fields,] expr [AS name] [DO fields] [INCASE cond]` yields one output per element
//!   of the array `expr` gives (a non-array gives none). The fields before `expr` are evaluated
//!   first, like SELECT fields, and are visible to everything after them. Without `DO`, each
//!   output is all the columns, the FOREACH fields and `name: element`; with `DO`, just the
//!   `DO` fields.
//! - The payload stays the raw string unless a path reads into it: then it is JSON-decoded,
//!   once per message, and the decoded value is shared by every rule evaluated on the same
//!   [`EvalInput`]. A payload that is not JSON fails such a rule (EMQX's `decode_json_failed`).
//! - Comparisons follow EMQX: `null` compared with anything but `null` is false; a number
//!   compared with a string converts the string to a number; other mixed types use Erlang's
//!   term order. `IN` and simple `CASE` use exact equality (`1` is not `1.0`). `NOT` of a
//!   non-boolean is false.
//!
//! Evaluation is synchronous, allocates only what the outputs need, never panics, and does
//! bounded work: the expression depth is bounded by the parser, FOREACH by
//! [`MAX_FOREACH_ITEMS`], ranges by the data, and each function by the function library.
//!
//! Deliberate differences from EMQX: a bare non-boolean value as a condition (`WHERE
//! payload.flag`) is accepted when it is a boolean and counts as false when it is `null`
//! (EMQX raises for any bare path); `topic(n)` past the last level is `null` (EMQX raises); the
//! message accessors (`clientid()`, `topic()`, ...) read the event in every clause (EMQX gives
//! `undefined` outside `SELECT`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

use super::ast::Span;
use super::compile::{
    ArithOp, Callee, CmpOp, CompiledRule, ContextFn, FieldPlan, KeySeg, Node, NodeKind, OutKey, Plan, Seg,
};
use super::events::{EventContext, EventKind};
use super::functions::{self, FnError};
use super::value::{Map, Value};
use crate::mqtt::events::BrokerEvent;

/// The most elements a FOREACH may iterate over; more fail the evaluation.
pub const MAX_FOREACH_ITEMS: usize = 10_000;

/// The clause being evaluated when an error happened (EMQX's `select_and_transform_error`,
/// `match_conditions_error`, `select_and_collect_error`, `match_incase_error`, `doeach_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Clause {
    Select,
    Where,
    Foreach,
    Do,
    Incase,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clause::Select => "SELECT",
            Clause::Where => "WHERE",
            Clause::Foreach => "FOREACH",
            Clause::Do => "DO",
            Clause::Incase => "INCASE",
        })
    }
}

/// What failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalErrorKind {
    /// A built-in function (or operator) refused its arguments.
    #[error(transparent)]
    Function(#[from] FnError),
    /// A host function failed.
    #[error("{function}: {message}")]
    Host { function: Arc<str>, message: String },
    /// The rule reads into the payload, which is not JSON.
    #[error("the payload is not valid JSON ({0})")]
    PayloadNotJson(Arc<str>),
    /// A number was compared with a string that is not a number.
    #[error("cannot compare a number with {0:?}: not a number")]
    NotANumber(String),
    /// `=~` needs two strings.
    #[error("`=~` needs a topic and a topic filter, got {0} and {1}")]
    TopicMatchTypes(&'static str, &'static str),
    /// Unary minus of a non-number.
    #[error("cannot negate {0}")]
    Negate(&'static str),
    /// A condition (`WHERE`, `AND`, `OR`, `INCASE`) that is not a boolean.
    #[error("the condition is {0}, expected a boolean")]
    NotBoolean(&'static str),
    /// `x[a..b]` of something that is not an array.
    #[error("range of {0}: expected an array")]
    RangeOfNonList(&'static str),
    /// `x[0..n]`: indexes are 1-based.
    #[error("index 0 in a range: indexes start at 1")]
    ZeroIndex,
    /// A bad argument to a message accessor (`topic(n)`, `flag(name)`, `payload(path)`).
    #[error("{function}: {message}")]
    Accessor { function: &'static str, message: String },
    /// FOREACH over more than [`MAX_FOREACH_ITEMS`] elements.
    #[error("FOREACH over {len} elements: the limit is {limit}")]
    TooManyItems { len: usize, limit: usize },
}

/// A rule evaluation failed (per message: counted and logged, never fatal to the rule).
/// `Display` is `line:col: CLAUSE: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {clause}: {kind}", span.start)]
pub struct EvalError {
    pub clause: Clause,
    /// The node that failed.
    pub span: Span,
    pub kind: EvalErrorKind,
}

impl EvalError {
    /// The error with the offending line of `sql` and a caret under the failing expression.
    pub fn render(&self, sql: &str) -> String {
        super::compile::render_span(sql, self.span, &self.to_string())
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The outputs, each a [`Value::Map`].
    pub outputs: Vec<Value>,
    /// Whether `WHERE` held (true when there is none). False means no output.
    pub matched: bool,
}

// ------------------------------------------------------------------------ input

/// One rule input: the event's columns and its payload, decoded at most once and shared by
/// every rule evaluated on this input (EMQX caches the decoded payload per rule instead).
#[derive(Debug)]
pub struct EvalInput {
    ctx: EventContext,
    decoded: OnceLock<Result<Value, Arc<str>>>,
}

impl EvalInput {
    pub fn new(ctx: EventContext) -> EvalInput {
        EvalInput {
            ctx,
            decoded: OnceLock::new(),
        }
    }

    /// The input for a broker event, or `None` when the event is no rule source.
    pub fn from_broker_event(event: &BrokerEvent, node: &str) -> Option<EvalInput> {
        EventContext::from_broker_event(event, node).map(EvalInput::new)
    }

    /// The input with only the columns in `want` (the union of what the rules read).
    pub fn from_broker_event_with(
        event: &BrokerEvent,
        node: &str,
        want: super::events::ColumnSet,
    ) -> Option<EvalInput> {
        EventContext::from_broker_event_with(event, node, want).map(EvalInput::new)
    }

    pub fn context(&self) -> &EventContext {
        &self.ctx
    }

    pub fn kind(&self) -> EventKind {
        self.ctx.kind
    }

    pub fn columns(&self) -> &Map {
        &self.ctx.columns
    }

    /// The payload decoded as JSON (decoded on the first call, then cached). A payload that
    /// is already structured (from a JSON test context) is returned as it is; a missing
    /// payload is `null`.
    pub fn decoded_payload(&self) -> Result<&Value, Arc<str>> {
        self.decoded
            .get_or_init(|| match self.ctx.columns.get("payload") {
                Some(Value::Str(s)) => decode_json(s.as_bytes()).map_err(Arc::from),
                Some(Value::Bytes(b)) => decode_json(b).map_err(Arc::from),
                Some(other) => Ok(other.clone()),
                None => Ok(Value::Null),
            })
            .as_ref()
            .map_err(Arc::clone)
    }

    /// Whether the payload has been decoded already.
    pub fn payload_decoded(&self) -> bool {
        self.decoded.get().is_some()
    }
}

impl From<EventContext> for EvalInput {
    fn from(ctx: EventContext) -> Self {
        EvalInput::new(ctx)
    }
}

// ------------------------------------------------------------------------ rules

impl CompiledRule {
    /// Evaluates the rule: the outputs, each a [`Value::Map`] (none when `WHERE` is false or
    /// FOREACH yields nothing). Does not check `FROM`: the dispatcher only hands a rule the
    /// inputs its `FROM` selects (see [`CompiledRule::matches`]).
    pub fn eval(&self, input: &EvalInput) -> Result<Vec<Value>, EvalError> {
        self.run(input).map(|o| o.outputs)
    }

    /// Like [`eval`](Self::eval), also telling whether `WHERE` held.
    pub fn run(&self, input: &EvalInput) -> Result<Outcome, EvalError> {
        let cx = Cx {
            input,
            rule_id: self.id.as_ref(),
        };
        match &self.plan {
            Plan::Select { fields } => {
                let out = cx.select(fields, Clause::Select, None, None)?;
                if !self.where_holds(&cx, Some(&out), None)? {
                    return Ok(Outcome {
                        outputs: Vec::new(),
                        matched: false,
                    });
                }
                Ok(Outcome {
                    outputs: vec![Value::Map(Arc::new(out))],
                    matched: true,
                })
            }
            Plan::Foreach {
                bindings,
                expr,
                key,
                item,
                over_payload,
                do_fields,
                incase,
            } => {
                // The fields before the collection, each seeing the ones before it.
                let mut selected = if bindings.is_empty() {
                    Map::default()
                } else {
                    cx.select(bindings, Clause::Foreach, None, None)?
                };
                let scope = Scope {
                    clause: Clause::Foreach,
                    action: Some(&selected),
                    item: None,
                    selected: None,
                };
                let coll = if *over_payload {
                    input
                        .decoded_payload()
                        .map_err(|m| cx.error(Clause::Foreach, expr.span, EvalErrorKind::PayloadNotJson(m)))?
                        .clone()
                } else {
                    cx.eval(expr, &scope)?
                };
                put(&mut selected, key, coll.clone(), input);
                if !self.where_holds(&cx, Some(&selected), None)? {
                    return Ok(Outcome {
                        outputs: Vec::new(),
                        matched: false,
                    });
                }
                let Value::Array(items) = coll else {
                    return Ok(Outcome {
                        outputs: Vec::new(),
                        matched: true,
                    });
                };
                if items.len() > MAX_FOREACH_ITEMS {
                    return Err(cx.error(
                        Clause::Foreach,
                        expr.span,
                        EvalErrorKind::TooManyItems {
                            len: items.len(),
                            limit: MAX_FOREACH_ITEMS,
                        },
                    ));
                }
                let mut outputs = Vec::with_capacity(items.len());
                for element in items.iter() {
                    let binding = Some((&**item, element));
                    if let Some(cond) = incase {
                        let scope = Scope {
                            clause: Clause::Incase,
                            action: None,
                            item: binding,
                            selected: Some(&selected),
                        };
                        let v = cx.eval(cond, &scope)?;
                        if !cx.truthy(&v, Clause::Incase, cond.span)? {
                            continue;
                        }
                    }
                    let out = if do_fields.is_empty() {
                        let mut out = cx.all_columns();
                        merge(&mut out, &selected);
                        out.insert(item.clone(), element.clone());
                        out
                    } else {
                        cx.select(do_fields, Clause::Do, binding, Some(&selected))?
                    };
                    outputs.push(Value::Map(Arc::new(out)));
                }
                Ok(Outcome { outputs, matched: true })
            }
        }
    }

    fn where_holds(&self, cx: &Cx<'_>, action: Option<&Map>, item: Option<(&str, &Value)>) -> Result<bool, EvalError> {
        let Some(cond) = &self.where_ else {
            return Ok(true);
        };
        let scope = Scope {
            clause: Clause::Where,
            action,
            item,
            selected: None,
        };
        let v = cx.eval(cond, &scope)?;
        cx.truthy(&v, Clause::Where, cond.span)
    }
}

/// Evaluates a constant operator node at compile time (`None` if it fails).
pub(crate) fn eval_const(node: &Node) -> Option<Value> {
    let input = EvalInput::new(EventContext {
        kind: EventKind::MessagePublish,
        columns: Map::default(),
    });
    let cx = Cx {
        input: &input,
        rule_id: None,
    };
    let scope = Scope {
        clause: Clause::Select,
        action: None,
        item: None,
        selected: None,
    };
    cx.eval(node, &scope).ok()
}

// ------------------------------------------------------------------------ evaluation

struct Cx<'a> {
    input: &'a EvalInput,
    rule_id: Option<&'a Arc<str>>,
}

/// Where names are looked up, in order: the output being built (`action`), the FOREACH
/// element, the FOREACH-selected map, then the event columns.
struct Scope<'s> {
    clause: Clause,
    action: Option<&'s Map>,
    item: Option<(&'s str, &'s Value)>,
    selected: Option<&'s Map>,
}

impl Cx<'_> {
    fn error(&self, clause: Clause, span: Span, kind: EvalErrorKind) -> EvalError {
        EvalError { clause, span, kind }
    }

    /// The columns, plus `metadata.rule_id` when the rule has an id (EMQX adds it to the
    /// columns, so `SELECT *` shows it).
    fn all_columns(&self) -> Map {
        let mut out = self.input.columns().clone();
        if let Some(m) = self.metadata() {
            out.entry(Arc::from("metadata")).or_insert(m);
        }
        out
    }

    fn metadata(&self) -> Option<Value> {
        let id = self.rule_id?;
        let mut m = Map::default();
        m.insert(Arc::from("rule_id"), Value::Str(id.clone()));
        Some(Value::Map(Arc::new(m)))
    }

    /// Builds an output map from `fields` (SELECT or DO).
    fn select(
        &self,
        fields: &[FieldPlan],
        clause: Clause,
        item: Option<(&str, &Value)>,
        selected: Option<&Map>,
    ) -> Result<Map, EvalError> {
        let mut out = Map::with_capacity_and_hasher(fields.len(), Default::default());
        for f in fields {
            match f {
                FieldPlan::Star => {
                    merge(&mut out, &self.all_columns());
                    if let Some(sel) = selected {
                        merge(&mut out, sel);
                    }
                    if let Some((name, v)) = item {
                        out.insert(Arc::from(name), v.clone());
                    }
                }
                FieldPlan::Expr { node, key } => {
                    let scope = Scope {
                        clause,
                        action: Some(&out),
                        item,
                        selected,
                    };
                    let v = self.eval(node, &scope)?;
                    put(&mut out, key, v, self.input);
                }
            }
        }
        Ok(out)
    }

    /// A condition's truth: `true`/`false`; `null` is false; anything else is an error.
    fn truthy(&self, v: &Value, clause: Clause, span: Span) -> Result<bool, EvalError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::Null => Ok(false),
            other => Err(self.error(clause, span, EvalErrorKind::NotBoolean(other.type_name()))),
        }
    }

    fn eval(&self, node: &Node, scope: &Scope<'_>) -> Result<Value, EvalError> {
        let err = |kind| self.error(scope.clause, node.span, kind);
        match &node.kind {
            NodeKind::Const(v) => Ok(v.clone()),
            NodeKind::Path { root, payload, segs } if segs.iter().any(|s| matches!(s, Seg::Dynamic(_))) => {
                // `a[i]`: read each index first. Only an integer indexes (EMQX's `getnth`
                // finds nothing for anything else), and 0 finds nothing.
                let mut resolved = Vec::with_capacity(segs.len());
                for s in segs {
                    resolved.push(match s {
                        Seg::Dynamic(index) => match self.eval(index, scope)? {
                            Value::Int(i) => Seg::Index(i),
                            _ => Seg::Index(0),
                        },
                        other => other.clone(),
                    });
                }
                self.path(root, *payload, &resolved, scope, node.span)
            }
            NodeKind::Path { root, payload, segs } => self.path(root, *payload, segs, scope, node.span),
            NodeKind::List(items) => {
                let values = items
                    .iter()
                    .map(|i| self.eval(i, scope))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Value::Array(Arc::new(values)))
            }
            NodeKind::Call { f, args } => {
                let mut values: SmallVec<[Value; 4]> = SmallVec::with_capacity(args.len());
                for a in args {
                    values.push(self.eval(a, scope)?);
                }
                match f {
                    Callee::Builtin(def) => (def.f)(&values).map_err(|e| err(EvalErrorKind::Function(e))),
                    Callee::Context(cf) => self.context_fn(*cf, &values).map_err(err),
                    Callee::Host(h) => h.f.call(&values, self.input).map_err(|message| {
                        err(EvalErrorKind::Host {
                            function: h.name.clone(),
                            message,
                        })
                    }),
                }
            }
            NodeKind::Neg(a) => match self.eval(a, scope)? {
                Value::Int(i) => Ok(i.checked_neg().map_or(Value::Float(-(i as f64)), Value::Int)),
                Value::Float(x) => Ok(Value::Float(-x)),
                other => Err(err(EvalErrorKind::Negate(other.type_name()))),
            },
            NodeKind::Not(a) => Ok(Value::Bool(match self.eval(a, scope)? {
                Value::Bool(b) => !b,
                _ => false,
            })),
            NodeKind::And(a, b) => {
                let l = self.eval(a, scope)?;
                if !self.truthy(&l, scope.clause, a.span)? {
                    return Ok(Value::Bool(false));
                }
                let r = self.eval(b, scope)?;
                Ok(Value::Bool(self.truthy(&r, scope.clause, b.span)?))
            }
            NodeKind::Or(a, b) => {
                let l = self.eval(a, scope)?;
                if self.truthy(&l, scope.clause, a.span)? {
                    return Ok(Value::Bool(true));
                }
                let r = self.eval(b, scope)?;
                Ok(Value::Bool(self.truthy(&r, scope.clause, b.span)?))
            }
            NodeKind::Arith(op, a, b) => {
                let l = self.eval(a, scope)?;
                let r = self.eval(b, scope)?;
                let res = match op {
                    ArithOp::Add => functions::add(&l, &r),
                    ArithOp::Sub => functions::sub(&l, &r),
                    ArithOp::Mul => functions::mul(&l, &r),
                    ArithOp::Div => functions::divide(&l, &r),
                };
                res.map_err(|e| err(EvalErrorKind::Function(e)))
            }
            NodeKind::Cmp(op, a, b) => {
                let l = self.eval(a, scope)?;
                let r = self.eval(b, scope)?;
                compare(*op, &l, &r).map(Value::Bool).map_err(err)
            }
            NodeKind::In { expr, list, negated } => {
                let v = self.eval(expr, scope)?;
                let mut found = false;
                for item in list {
                    if functions::exact_eq(&v, &self.eval(item, scope)?) {
                        found = true;
                        break;
                    }
                }
                Ok(Value::Bool(found != *negated))
            }
            NodeKind::Case { operand, whens, else_ } => {
                let on = operand.as_ref().map(|o| self.eval(o, scope)).transpose()?;
                for (when, then) in whens {
                    let w = self.eval(when, scope)?;
                    let hit = match &on {
                        Some(on) => functions::exact_eq(on, &w),
                        None => matches!(w, Value::Bool(true)),
                    };
                    if hit {
                        return self.eval(then, scope);
                    }
                }
                match else_ {
                    Some(e) => self.eval(e, scope),
                    None => Ok(Value::Null),
                }
            }
        }
    }

    /// A path: the root looked up in each scope layer in turn, the first non-null result wins
    /// (EMQX's `eval/2` over `[Selected, Columns]`).
    fn path(&self, root: &str, payload: bool, segs: &[Seg], scope: &Scope<'_>, span: Span) -> Result<Value, EvalError> {
        let err = |kind| self.error(scope.clause, span, kind);
        let layers = [
            scope.action.and_then(|m| m.get(root)),
            scope.item.filter(|(n, _)| *n == root).map(|(_, v)| v),
            scope.selected.and_then(|m| m.get(root)),
        ];
        for v in layers.into_iter().flatten() {
            let got = if !segs.is_empty() && is_column_payload(v, self.input) {
                // `SELECT payload, payload.x` or `SELECT payload AS p, p.x`: the value is the
                // raw payload, whose decoding is cached. Not JSON: an error for `payload.x`
                // (EMQX's decode_json_failed), `null` for another name (EMQX's nested_get).
                match self.input.decoded_payload() {
                    Ok(decoded) => traverse(decoded, segs).map_err(err)?,
                    Err(m) if payload => return Err(err(EvalErrorKind::PayloadNotJson(m))),
                    Err(_) => Value::Null,
                }
            } else {
                traverse(v, segs).map_err(err)?
            };
            if !got.is_null() {
                return Ok(got);
            }
        }
        if payload && !segs.is_empty() {
            if let Some(p) = self.input.columns().get("payload") {
                let base: &Value = if matches!(p, Value::Str(_) | Value::Bytes(_)) {
                    self.input
                        .decoded_payload()
                        .map_err(|m| err(EvalErrorKind::PayloadNotJson(m)))?
                } else {
                    p
                };
                return traverse(base, segs).map_err(err);
            }
        }
        match self.input.columns().get(root) {
            Some(v) => traverse(v, segs).map_err(err),
            None if root == "metadata" => match self.metadata() {
                Some(m) => traverse(&m, segs).map_err(err),
                None => Ok(Value::Null),
            },
            None => Ok(Value::Null),
        }
    }

    fn column(&self, name: &str) -> Value {
        self.input.columns().get(name).cloned().unwrap_or(Value::Null)
    }

    fn context_fn(&self, f: ContextFn, args: &[Value]) -> Result<Value, EvalErrorKind> {
        Ok(match f {
            ContextFn::Msgid => self.column("id"),
            ContextFn::Qos => self.column("qos"),
            ContextFn::Clientid => self.column("clientid"),
            ContextFn::Username => self.column("username"),
            ContextFn::Clientip | ContextFn::Peerhost => self.column("peerhost"),
            ContextFn::Null => Value::Null,
            ContextFn::Flags => match self.input.columns().get("flags") {
                Some(v) => v.clone(),
                None => Value::Map(Arc::new(Map::default())),
            },
            ContextFn::Flag => {
                let name = text_arg("flag", args.first())?;
                match self.input.columns().get("flags") {
                    Some(Value::Map(m)) => m.get(name.as_ref()).cloned().unwrap_or(Value::Null),
                    _ => Value::Null,
                }
            }
            ContextFn::Topic => {
                let topic = self.column("topic");
                match args.first() {
                    None => topic,
                    Some(Value::Int(n)) if *n >= 1 => match &topic {
                        Value::Null => Value::Null,
                        t => {
                            let bytes = functions::str_bytes(t);
                            usize::try_from(*n - 1)
                                .ok()
                                .and_then(|i| bytes.split(|b| *b == b'/').nth(i))
                                .map_or(Value::Null, |level| bin_value(level.to_vec()))
                        }
                    },
                    Some(other) => {
                        return Err(EvalErrorKind::Accessor {
                            function: "topic",
                            message: format!("expected a positive integer, got {}", functions_repr(other)),
                        })
                    }
                }
            }
            ContextFn::Payload => match args.first() {
                None => self.column("payload"),
                Some(path) => {
                    let path = text_arg("payload", Some(path))?;
                    match self.input.decoded_payload() {
                        Ok(decoded) => {
                            let segs: Vec<Seg> = path.split('.').map(|k| Seg::Key(Arc::from(k))).collect();
                            traverse(decoded, &segs)?
                        }
                        // EMQX: a payload that does not decode gives `undefined`.
                        Err(_) => Value::Null,
                    }
                }
            },
        })
    }
}

fn text_arg<'a>(function: &'static str, v: Option<&'a Value>) -> Result<Cow<'a, str>, EvalErrorKind> {
    match v {
        Some(Value::Str(s)) => Ok(Cow::Borrowed(s)),
        Some(Value::Bytes(b)) => Ok(String::from_utf8_lossy(b)),
        Some(other) => Err(EvalErrorKind::Accessor {
            function,
            message: format!("expected a string, got {}", other.type_name()),
        }),
        None => Err(EvalErrorKind::Accessor {
            function,
            message: "missing argument".into(),
        }),
    }
}

fn functions_repr(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("'{s}'"),
        other => other.type_name().to_string(),
    }
}

fn bin_value(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => Value::str(s),
        Err(e) => Value::Bytes(e.into_bytes().into()),
    }
}

// ------------------------------------------------------------------------ paths

/// EMQX's `nested_get`: keys into maps, 1-based (negative from the end) indexes into arrays,
/// ranges of arrays. A string on the way is decoded as JSON first (as EMQX does); a missing
/// step gives `null`.
fn traverse(v: &Value, segs: &[Seg]) -> Result<Value, EvalErrorKind> {
    let mut cur: Cow<'_, Value> = Cow::Borrowed(v);
    for (i, seg) in segs.iter().enumerate() {
        if cur.is_null() {
            // EMQX applies a range to whatever the path before it gives: `undefined` is an error.
            if segs[i..].iter().any(|s| matches!(s, Seg::Range(..))) {
                return Err(EvalErrorKind::RangeOfNonList("undefined"));
            }
            return Ok(Value::Null);
        }
        let next: Option<Cow<'_, Value>> = match seg {
            Seg::Key(k) => match cur {
                Cow::Borrowed(Value::Map(m)) => m.get(&**k).map(Cow::Borrowed),
                Cow::Owned(Value::Map(m)) => m.get(&**k).cloned().map(Cow::Owned),
                ref c => match decoded_text(c) {
                    Some(Value::Map(m)) => m.get(&**k).cloned().map(Cow::Owned),
                    _ => None,
                },
            },
            Seg::Index(i) => match cur {
                Cow::Borrowed(Value::Array(a)) => nth(a, *i).map(Cow::Borrowed),
                Cow::Owned(Value::Array(a)) => nth(&a, *i).cloned().map(Cow::Owned),
                ref c => match decoded_text(c) {
                    Some(Value::Array(a)) => nth(&a, *i).cloned().map(Cow::Owned),
                    _ => None,
                },
            },
            Seg::Range(b, e) => match &*cur {
                Value::Array(a) => Some(Cow::Owned(range_get(a, *b, *e)?)),
                other => return Err(EvalErrorKind::RangeOfNonList(other.type_name())),
            },
            // Resolved before the walk (`Cx::eval`); never indexes here.
            Seg::Dynamic(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => cur = Cow::Owned(Value::Null),
        }
    }
    Ok(cur.into_owned())
}

/// A string holding JSON, decoded (`None` for anything else).
fn decoded_text(v: &Value) -> Option<Value> {
    match v {
        Value::Str(s) => decode_json(s.as_bytes()).ok(),
        Value::Bytes(b) => decode_json(b).ok(),
        _ => None,
    }
}

/// EMQX's `getnth`: 1-based, negative counts from the end, 0 is not found.
fn nth(a: &[Value], i: i64) -> Option<&Value> {
    let len = a.len() as i64;
    let idx = match i {
        0 => return None,
        i if i > 0 => i - 1,
        i => len + i,
    };
    if (0..len).contains(&idx) {
        a.get(idx as usize)
    } else {
        None
    }
}

/// EMQX's `range_get`: elements `b..=e` (1-based; negative counts from the end).
fn range_get(a: &[Value], b: i64, e: i64) -> Result<Value, EvalErrorKind> {
    let len = a.len() as i64;
    let index = |i: i64| match i {
        0 => Err(EvalErrorKind::ZeroIndex),
        i if i > 0 => Ok(i),
        i => Ok(len + i + 1),
    };
    let (b, e) = (index(b)?.max(1), index(e)?.min(len));
    let items = if b <= e {
        a[(b - 1) as usize..e as usize].to_vec()
    } else {
        Vec::new()
    };
    Ok(Value::Array(Arc::new(items)))
}

/// Puts a field's value into an output map (EMQX's `nested_put`).
fn put(out: &mut Map, key: &OutKey, v: Value, input: &EvalInput) {
    match key {
        OutKey::Name(k) => {
            out.insert(k.clone(), v);
        }
        OutKey::Path { root, segs } => {
            let existing = out.shift_remove(&**root);
            let base = match existing {
                // Reading into the raw payload: reuse the shared decoded payload.
                Some(p) if &**root == "payload" && is_column_payload(&p, input) => {
                    input.decoded_payload().ok().cloned().unwrap_or(p)
                }
                other => other.unwrap_or(Value::Null),
            };
            let new = put_into(base, segs, v);
            out.insert(root.clone(), new);
        }
    }
}

/// Whether `v` is the input's own raw payload (same allocation), so its decoding is cached.
fn is_column_payload(v: &Value, input: &EvalInput) -> bool {
    match (v, input.columns().get("payload")) {
        (Value::Bytes(a), Some(Value::Bytes(b))) => a.as_ptr() == b.as_ptr() && a.len() == b.len(),
        (Value::Str(a), Some(Value::Str(b))) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

fn put_into(cur: Value, segs: &[KeySeg], v: Value) -> Value {
    let Some((seg, rest)) = segs.split_first() else {
        return v;
    };
    let cur = match cur {
        Value::Str(_) | Value::Bytes(_) => decoded_text(&cur).unwrap_or(Value::Null),
        other => other,
    };
    match seg {
        KeySeg::Key(k) => {
            let mut m = match cur {
                Value::Map(m) => Arc::unwrap_or_clone(m),
                _ => Map::default(),
            };
            let sub = m.get(&**k).cloned().unwrap_or(Value::Null);
            let new = put_into(sub, rest, v);
            m.insert(k.clone(), new);
            Value::Map(Arc::new(m))
        }
        KeySeg::Index(i) => match cur {
            // `[0]`: EMQX's `head`, in front of the list.
            Value::Array(a) if *i == 0 => {
                let mut a = Arc::unwrap_or_clone(a);
                a.insert(0, put_into(Value::Null, rest, v));
                Value::Array(Arc::new(a))
            }
            Value::Array(a) => {
                let mut a = Arc::unwrap_or_clone(a);
                let len = a.len() as i64;
                let idx = if *i > 0 { *i - 1 } else { len + *i };
                // Out of range: the list is left as it is (EMQX's `setnth`).
                if (0..len).contains(&idx) {
                    let slot = &mut a[idx as usize];
                    let old = std::mem::take(slot);
                    *slot = put_into(old, rest, v);
                }
                Value::Array(Arc::new(a))
            }
            // EMQX's `setnth` on a non-list: a one-element list.
            _ => Value::Array(Arc::new(vec![put_into(Value::Null, rest, v)])),
        },
        // `[-0]`: EMQX's `tail`, at the end of the list.
        KeySeg::Append => {
            let mut a = match cur {
                Value::Array(a) => Arc::unwrap_or_clone(a),
                _ => Vec::new(),
            };
            a.push(put_into(Value::Null, rest, v));
            Value::Array(Arc::new(a))
        }
    }
}

fn merge(out: &mut Map, from: &Map) {
    for (k, v) in from {
        out.insert(k.clone(), v.clone());
    }
}

// ------------------------------------------------------------------------ comparison

/// EMQX's `compare/3`.
fn compare(op: CmpOp, l: &Value, r: &Value) -> Result<bool, EvalErrorKind> {
    match (l, r) {
        (Value::Null, Value::Null) => {
            return Ok(matches!(op, CmpOp::Eq | CmpOp::Le | CmpOp::Ge));
        }
        (Value::Null, _) | (_, Value::Null) => return Ok(false),
        _ => {}
    }
    if op == CmpOp::TopicMatch {
        return match (functions_bin(l), functions_bin(r)) {
            (Some(t), Some(f)) => Ok(crate::mqtt::topic::matches(
                &String::from_utf8_lossy(f),
                &String::from_utf8_lossy(t),
            )),
            _ => Err(EvalErrorKind::TopicMatchTypes(l.type_name(), r.type_name())),
        };
    }
    let ord = match (l, r) {
        (Value::Int(_) | Value::Float(_), Value::Str(_) | Value::Bytes(_)) => term_cmp(l, &to_number(r)?),
        (Value::Str(_) | Value::Bytes(_), Value::Int(_) | Value::Float(_)) => term_cmp(&to_number(l)?, r),
        (Value::Bool(b), Value::Str(_) | Value::Bytes(_)) => {
            bytes_cmp(bool_text(*b).as_bytes(), functions_bin(r).unwrap_or(b""))
        }
        (Value::Str(_) | Value::Bytes(_), Value::Bool(b)) => {
            bytes_cmp(functions_bin(l).unwrap_or(b""), bool_text(*b).as_bytes())
        }
        _ => term_cmp(l, r),
    };
    Ok(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
        CmpOp::TopicMatch => false,
    })
}

fn functions_bin(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Str(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn bytes_cmp(a: &[u8], b: &[u8]) -> Ordering {
    a.cmp(b)
}

/// A string as a number (EMQX's `number/1`: integer first, then float).
fn to_number(v: &Value) -> Result<Value, EvalErrorKind> {
    let text = String::from_utf8_lossy(functions_bin(v).unwrap_or(b""));
    let t = text.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Ok(Value::Int(i));
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Value::Float(x)),
        _ => Err(EvalErrorKind::NotANumber(text.chars().take(40).collect())),
    }
}

/// Erlang's term order: number < atom (booleans, `undefined`) < map < list < binary.
fn term_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Int(_) | Value::Float(_) => 0,
            Value::Bool(_) | Value::Null => 1,
            Value::Map(_) => 2,
            Value::Array(_) => 3,
            Value::Str(_) | Value::Bytes(_) => 4,
        }
    }
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Int(i), Value::Float(f)) => int_float_cmp(*i, *f),
        (Value::Float(f), Value::Int(i)) => int_float_cmp(*i, *f).reverse(),
        (Value::Bool(_) | Value::Null, Value::Bool(_) | Value::Null) => atom_text(a).cmp(atom_text(b)),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let o = term_cmp(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Map(x), Value::Map(y)) => {
            // Erlang: by size, then by the sorted keys, then by the values in key order.
            let o = x.len().cmp(&y.len());
            if o != Ordering::Equal {
                return o;
            }
            let mut xk: Vec<&Arc<str>> = x.keys().collect();
            let mut yk: Vec<&Arc<str>> = y.keys().collect();
            xk.sort();
            yk.sort();
            let o = xk.cmp(&yk);
            if o != Ordering::Equal {
                return o;
            }
            for k in xk {
                let o = term_cmp(&x[&**k], &y[&**k]);
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        }
        _ => match (functions_bin(a), functions_bin(b)) {
            (Some(p), Some(q)) => p.cmp(q),
            _ => rank(a).cmp(&rank(b)),
        },
    }
}

fn atom_text(v: &Value) -> &'static str {
    match v {
        Value::Bool(b) => bool_text(*b),
        _ => "undefined",
    }
}

/// Exact comparison of an integer with a float (no rounding of large integers).
fn int_float_cmp(i: i64, f: f64) -> Ordering {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() {
        return Ordering::Equal;
    }
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - t)).unwrap_or(Ordering::Equal),
        o => o,
    }
}

// ------------------------------------------------------------------------ JSON

/// Decodes JSON straight into a [`Value`] (no intermediate `serde_json::Value`). Integers
/// that fit i64 stay integers, other numbers are floats. serde_json bounds the nesting (128).
pub fn decode_json(bytes: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = serde::de::Deserializer::deserialize_any(&mut de, ValueVisitor).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

struct ValueVisitor;

struct Seed;

impl<'de> serde::de::DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(Seed)? {
            items.push(v);
        }
        Ok(Value::Array(Arc::new(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::with_capacity_and_hasher(map.size_hint().unwrap_or(0).min(1024), Default::default());
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            let v = map.next_value_seed(Seed)?;
            m.insert(Arc::from(&*k), v);
        }
        Ok(Value::Map(Arc::new(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compile::compile_sql;

    fn input(topic: &str, payload: &str) -> EvalInput {
        EvalInput::new(EventContext::from_sample(
            topic,
            payload.to_string(),
            Some("c1"),
            Some("u1"),
            1,
        ))
    }

    fn run(sql: &str, inp: &EvalInput) -> Result<Vec<serde_json::Value>, EvalError> {
        let rule = compile_sql(sql).unwrap_or_else(|e| panic!("{}", e.render(sql)));
        rule.eval(inp).map(|o| o.iter().map(Value::to_json).collect())
    }

    fn one(sql: &str, payload: &str) -> serde_json::Value {
        let out = run(sql, &input("t/a", payload)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.len(), 1, "{out:?}");
        out.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn json_decoding_is_direct_and_exact() {
        let v = decode_json(br#"{"a":[1,2.5,"x",null,true],"b":18446744073709551615}"#).unwrap();
        assert_eq!(
            v.to_json(),
            serde_json::json!({"a": [1, 2.5, "x", null, true], "b": 18446744073709551615.0})
        );
        assert!(decode_json(b"{\"a\":").is_err());
        assert!(decode_json(b"1 2").is_err());
    }

    #[test]
    fn payload_is_decoded_once_and_shared() {
        let inp = input("t/a", r#"{"x": 5}"#);
        let a = compile_sql("SELECT payload.x AS x FROM \"t/#\"").unwrap();
        let b = compile_sql("SELECT payload FROM \"t/#\"").unwrap();
        b.eval(&inp).unwrap();
        assert!(!inp.payload_decoded());
        a.eval(&inp).unwrap();
        assert!(inp.payload_decoded());
        let first = inp.decoded_payload().unwrap() as *const Value;
        a.eval(&inp).unwrap();
        assert_eq!(first, inp.decoded_payload().unwrap() as *const Value);
    }

    #[test]
    fn comparisons_follow_emqx() {
        let t = |l: Value, op, r: Value| compare(op, &l, &r).unwrap();
        assert!(t(Value::Int(1), CmpOp::Eq, Value::Float(1.0)));
        assert!(t(Value::Int(2), CmpOp::Eq, Value::str("2")));
        assert!(t(Value::str("2.5"), CmpOp::Gt, Value::Int(2)));
        assert!(compare(CmpOp::Eq, &Value::Int(2), &Value::str("abc")).is_err());
        assert!(t(Value::Null, CmpOp::Eq, Value::Null));
        assert!(!t(Value::Null, CmpOp::Ne, Value::Int(1)));
        assert!(!t(Value::Null, CmpOp::Lt, Value::Int(1)));
        assert!(t(Value::Bool(true), CmpOp::Eq, Value::str("true")));
        assert!(t(Value::str("abc"), CmpOp::Lt, Value::str("abd")));
        assert!(t(Value::Int(i64::MAX), CmpOp::Lt, Value::Float(9.3e18)));
        assert!(t(Value::Int(3), CmpOp::Gt, Value::Float(2.5)));
        assert!(t(Value::Int(1), CmpOp::Lt, Value::Bool(false)));
        assert!(t(Value::str("t/a/b"), CmpOp::TopicMatch, Value::str("t/#")));
        assert!(!t(Value::str("t/a/b"), CmpOp::TopicMatch, Value::str("t/+")));
        assert!(compare(CmpOp::TopicMatch, &Value::Int(1), &Value::str("t/#")).is_err());
    }

    #[test]
    fn paths_index_range_and_decode_strings() {
        let p = r#"{"a":{"b":[10,20,30,40]},"s":"{\"in\":1}","User-Property":{"k":"v"}}"#;
        let o = one(
            "SELECT payload.a.b[1] AS first, payload.a.b[-1] AS last, payload.a.b[0] AS zero, \
             payload.a.b[2..3] AS mid, payload.a.b[-2..-1] AS tail, payload.s.in AS inner, \
             payload.'User-Property'.k AS up, payload.nope.x AS missing FROM \"t/#\"",
            p,
        );
        assert_eq!(
            o,
            serde_json::json!({"first": 10, "last": 40, "zero": null, "mid": [20, 30], "tail": [30, 40],
                               "inner": 1, "up": "v", "missing": null})
        );
        let err = run("SELECT payload.a[1..2] AS x FROM \"t\"", &input("t", r#"{"a":1}"#)).unwrap_err();
        assert_eq!(err.kind, EvalErrorKind::RangeOfNonList("integer"));
        assert_eq!(err.clause, Clause::Select);
        assert_eq!(err.span.start.column, 8);
    }

    #[test]
    fn bad_json_payload_fails_only_rules_that_read_it() {
        let inp = input("t", "not json");
        assert_eq!(
            run("SELECT payload FROM \"t\"", &inp).unwrap()[0]["payload"],
            "not json"
        );
        let e = run("SELECT payload.x FROM \"t\"", &inp).unwrap_err();
        assert!(matches!(e.kind, EvalErrorKind::PayloadNotJson(_)));
        assert!(
            e.to_string().starts_with("1:8: SELECT: the payload is not valid JSON"),
            "{e}"
        );
        // payload('x') gives undefined instead, as in EMQX.
        assert_eq!(
            run("SELECT payload('x') AS x FROM \"t\"", &inp).unwrap()[0]["x"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn logic_and_null_handling() {
        let o = one(
            "SELECT NOT a AS n1, NOT (1 = 1) AS n2, a = b AS nulls, a != 1 AS ne, \
             (1 = 1) AND (2 > 1) AS both, (1 = 2) OR a AS either FROM \"t\"",
            "{}",
        );
        assert_eq!(
            o,
            serde_json::json!({"n1": false, "n2": false, "nulls": true, "ne": false, "both": true, "either": false})
        );
        let e = run("SELECT 1 AS x FROM \"t\" WHERE clientid", &input("t", "{}")).unwrap_err();
        assert_eq!(e.kind, EvalErrorKind::NotBoolean("string"));
        assert_eq!(e.clause, Clause::Where);
    }

    #[test]
    fn arithmetic_and_functions() {
        let o = one(
            "SELECT payload.i + 1 AS a, payload.i * 2.5 AS b, 7 div 2 AS c, 7 mod 3 AS d, 1 / 2 AS e, \
             'x' + payload.i AS f, -payload.i AS g, upper(clientid) AS h FROM \"t\"",
            r#"{"i": 4}"#,
        );
        assert_eq!(
            o,
            serde_json::json!({"a": 5, "b": 10.0, "c": 3, "d": 1, "e": 0.5, "f": "x4", "g": -4, "h": "C1"})
        );
        let e = run("SELECT 1 / payload.z AS x FROM \"t\"", &input("t", r#"{"z":0}"#)).unwrap_err();
        assert!(matches!(e.kind, EvalErrorKind::Function(_)));
        let e = run("SELECT -clientid AS x FROM \"t\"", &input("t", "{}")).unwrap_err();
        assert_eq!(e.kind, EvalErrorKind::Negate("string"));
    }

    #[test]
    fn accessors_read_the_event() {
        let o = one(
            "SELECT clientid() AS c, username() AS u, topic() AS t, topic(2) AS t2, topic(9) AS t9, qos() AS q, \
             flags() AS f, flag('retain') AS r, peerhost() AS p, payload() AS raw, payload('a.b') AS ab, \
             null() AS n FROM \"t/#\"",
            r#"{"a":{"b":3}}"#,
        );
        assert_eq!(o["c"], "c1");
        assert_eq!(o["u"], "u1");
        assert_eq!(o["t"], "t/a");
        assert_eq!(o["t2"], "a");
        assert_eq!(o["t9"], serde_json::Value::Null);
        assert_eq!(o["q"], 1);
        assert_eq!(o["r"], false);
        assert_eq!(o["p"], "192.168.0.10");
        assert_eq!(o["raw"], r#"{"a":{"b":3}}"#);
        assert_eq!(o["ab"], 3);
        assert_eq!(o["n"], serde_json::Value::Null);
        assert!(run("SELECT topic('x') AS t FROM \"t\"", &input("t", "")).is_err());
    }

    #[test]
    fn nested_put_for_unaliased_paths() {
        let o = one("SELECT payload.x[2] FROM \"t\"", r#"{"x":[1,3,4]}"#);
        assert_eq!(o, serde_json::json!({"payload": {"x": [3]}}));
        let o = one("SELECT payload.x[2].y FROM \"t\"", r#"{"x":[1,{"y":3},4]}"#);
        assert_eq!(o, serde_json::json!({"payload": {"x": [{"y": 3}]}}));
        let o = one(
            "SELECT payload, payload.x[2].y FROM \"t\"",
            r#"{"x":[1,{"y":[1,2]},3],"z":0}"#,
        );
        assert_eq!(o, serde_json::json!({"payload": {"x": [1, {"y": [1, 2]}, 3], "z": 0}}));
        let o = one("SELECT payload.a[1..2] FROM \"t\"", r#"{"a":[0,1,2]}"#);
        assert_eq!(o, serde_json::json!({"payload": {"a": [0, 1]}}));
    }

    #[test]
    fn foreach_limits_and_errors() {
        let big = format!("[{}]", vec!["1"; MAX_FOREACH_ITEMS + 1].join(","));
        let e = run("FOREACH payload FROM \"t\"", &input("t", &big)).unwrap_err();
        assert!(matches!(e.kind, EvalErrorKind::TooManyItems { .. }));
        assert_eq!(e.clause, Clause::Foreach);
        let e = run("FOREACH payload.s FROM \"t\"", &input("t", "{bad")).unwrap_err();
        assert!(matches!(e.kind, EvalErrorKind::PayloadNotJson(_)));
        let e = run("FOREACH payload.s INCASE item FROM \"t\"", &input("t", r#"{"s":[1]}"#)).unwrap_err();
        assert_eq!(e.clause, Clause::Incase);
    }

    #[test]
    fn metadata_rule_id() {
        let rule = compile_sql("SELECT metadata.rule_id AS id FROM \"t\"")
            .unwrap()
            .with_id("r1");
        let out = rule.eval(&input("t", "")).unwrap();
        assert_eq!(out[0].to_json(), serde_json::json!({"id": "r1"}));
        let rule = compile_sql("SELECT * FROM \"t\"").unwrap().with_id("r1");
        let out = rule.eval(&input("t", "")).unwrap();
        assert_eq!(out[0].to_json()["metadata"], serde_json::json!({"rule_id": "r1"}));
    }
}

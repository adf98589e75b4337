//! Rule actions and the seam every action goes through.
//!
//! The dispatcher hands each output of a rule to each of its actions with
//! [`ActionQueue::submit`], which never waits: the queue is bounded
//! (`rule_engine.action_queue_len`) and, when it is full, the output is dropped and counted
//! (`actions.discarded`, `junction_rule_actions_discarded_total`). Behind the queue a worker
//! task runs the action. The built-in actions are here: `republish` (back into the broker,
//! with loop protection) and `console` (one line on stdout, behind a queue: a slow stdout
//! must not stall rules). `republish` is the one action run by the dispatcher itself:
//! publishing into the broker never waits, so a queue would only add a hop.
//!
//! Connector actions (`type = "webhook"`, ... with `connector = "<name>"`) are parsed and run
//! by `crate::connectors` through the [`ConnectorCatalog`] and [`ExternalAction`] traits, so
//! this module names no concrete connector: their outputs go to the connector runtime's own
//! queue ([`ActionSink`]), which outlives rule reloads.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;

use super::stats::RuleMetrics;
use super::template::Template;
use super::value::{Map, Value};
use crate::config::walk::{Fields, FileError};
use crate::mqtt::broker::Broker;
use crate::mqtt::codec::QoS;
use crate::mqtt::message::Message;
use crate::mqtt::topic;

/// The action types a rule file may name.
pub const ACTION_TYPES: &[&str] = &["republish", "console"];

/// A typed field that may also be a `${...}` template (QoS, retain).
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<T> {
    Fixed(T),
    Template(Template),
}

/// `republish`: publish the output back into the broker (EMQX's republish action).
#[derive(Debug, Clone, PartialEq)]
pub struct Republish {
    pub topic: Template,
    pub qos: Typed<u8>,
    pub retain: Typed<bool>,
    /// Default `${.}`: the whole output as JSON.
    pub payload: Template,
    /// MQTT 5 user properties: name -> value template, or one template that renders a map
    /// (EMQX's `${pub_props.'User-Property'}`).
    pub user_properties: UserProperties,
    pub content_type: Option<Template>,
    pub response_topic: Option<Template>,
    pub correlation_data: Option<Template>,
    pub message_expiry_interval: Option<Typed<u32>>,
    pub payload_format_indicator: Option<Typed<u8>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum UserProperties {
    #[default]
    None,
    Pairs(Vec<(String, Template)>),
    Template(Template),
}

/// Where a rule action's output goes when a connector runs it: the runtime's bounded queue.
pub trait ActionSink: Send + Sync {
    /// Queues `input` without waiting; returns whether it was queued without dropping
    /// anything (the runtime's policy decides what is dropped when full).
    fn submit(&self, input: ActionInput) -> bool;
}

/// A parsed connector action (the per-action settings of a connector type).
pub trait ExternalAction: Send + Sync + fmt::Debug {
    /// The action's `type` (the connector type, e.g. `webhook`).
    fn kind(&self) -> &str;
    /// The connector's name (its file stem).
    fn connector(&self) -> &str;
    /// What the action would send for `out` (rule test files, the rule-test API).
    fn preview(&self, out: &Map) -> serde_json::Value;
    /// The queue of the `index`th action of rule `rule_id`. The runtime behind it is kept
    /// across rule reloads (same rule, index and connector): its queue and metrics survive,
    /// and it sends with these settings from now on.
    fn start(&self, rule_id: &str, index: usize, metrics: Arc<RuleMetrics>) -> Arc<dyn ActionSink>;
}

/// The loaded connectors, as the rule loader sees them.
pub trait ConnectorCatalog: Send + Sync {
    /// The connector types an action may name.
    fn types(&self) -> Vec<&'static str>;
    /// Parses an action of connector type `ty` (its `connector` and per-action settings);
    /// `None` when `ty` is not a connector type.
    fn parse_action(&self, ty: &str, f: &mut Fields<'_, '_>) -> Option<Result<Arc<dyn ExternalAction>, FileError>>;
    /// After a rule reload: the connector actions still in use; the others drain and stop.
    fn retain_actions(&self, live: &[(Arc<str>, usize)]);
    /// Whether a rule may read `FROM "$bridges/mqtt:<name>"`: `Err` says why not (no such
    /// connector, another type, no ingress). The default accepts any name.
    fn check_bridge(&self, _name: &str) -> Result<(), String> {
        Ok(())
    }
    /// The folder of connector files a reload should watch, if any.
    fn watched(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// A reload begins: read the connector files again (rules are then parsed against
    /// them). `Err`: a bad connector file; the reload is refused.
    fn stage(&self) -> Result<(), Vec<FileError>> {
        Ok(())
    }
    /// The reload's rules are good: the staged connectors go live.
    fn commit(&self) {}
    /// The reload was refused: the staged connectors are dropped, the live ones keep running.
    fn abort(&self) {}
}

/// No connectors (tools that load rules without a running broker).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoConnectors;

impl ConnectorCatalog for NoConnectors {
    fn types(&self) -> Vec<&'static str> {
        Vec::new()
    }
    fn parse_action(&self, _: &str, _: &mut Fields<'_, '_>) -> Option<Result<Arc<dyn ExternalAction>, FileError>> {
        None
    }
    fn retain_actions(&self, _: &[(Arc<str>, usize)]) {}
}

/// A connector action in an [`ActionSpec`].
#[derive(Debug, Clone)]
pub struct External(pub Arc<dyn ExternalAction>);

impl PartialEq for External {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || format!("{:?}", self.0) == format!("{:?}", other.0)
    }
}

/// One action of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionSpec {
    Republish(Box<Republish>),
    Console,
    /// Run by a connector (`crate::connectors`).
    Connector(External),
}

impl ActionSpec {
    /// The action's `type`.
    pub fn kind(&self) -> &str {
        match self {
            ActionSpec::Republish(_) => "republish",
            ActionSpec::Console => "console",
            ActionSpec::Connector(c) => c.0.kind(),
        }
    }

    /// Reads one `[[rules.actions]]` table (no connector types).
    pub fn parse(f: Fields<'_, '_>) -> Result<ActionSpec, FileError> {
        Self::parse_with(f, &NoConnectors)
    }

    /// Reads one `[[rules.actions]]` table; connector types are parsed by `connectors`.
    pub fn parse_with(mut f: Fields<'_, '_>, connectors: &dyn ConnectorCatalog) -> Result<ActionSpec, FileError> {
        let ty = f.req_string("type")?;
        let spec = match ty.value.as_str() {
            "republish" => ActionSpec::Republish(Box::new(parse_republish(&mut f)?)),
            "console" => ActionSpec::Console,
            other => match connectors.parse_action(other, &mut f) {
                Some(r) => ActionSpec::Connector(External(r?)),
                None => {
                    let mut known: Vec<&str> = ACTION_TYPES.to_vec();
                    known.extend(connectors.types());
                    let prefix: String = other.chars().take(3).collect();
                    let hint = known
                        .iter()
                        .find(|t| t.starts_with(&prefix))
                        .map(|t| format!(" (did you mean `{t}`?)"))
                        .unwrap_or_default();
                    return Err(f.error(
                        "type",
                        format!("unknown action type `{other}`{hint}; known: {}", known.join(", ")),
                    ));
                }
            },
        };
        f.finish()?;
        Ok(spec)
    }

    /// What the action would do with `out`, as JSON (for rule test files and the
    /// rule-test API): the rendered topic, payload, ... of a republish; the output of a console.
    pub fn preview(&self, out: &Map) -> serde_json::Value {
        match self {
            ActionSpec::Console => json!({"type": "console", "output": Value::Map(Arc::new(out.clone())).to_json()}),
            ActionSpec::Connector(c) => c.0.preview(out),
            ActionSpec::Republish(r) => match r.render(out) {
                Ok(m) => {
                    let props: serde_json::Map<String, serde_json::Value> = m
                        .user_properties
                        .iter()
                        .map(|p| (p.0.clone(), serde_json::Value::String(p.1.clone())))
                        .collect();
                    json!({
                        "type": "republish",
                        "topic": &*m.topic,
                        "qos": m.qos as u8,
                        "retain": m.retain,
                        "payload": String::from_utf8_lossy(&m.payload),
                        "user_properties": props,
                    })
                }
                Err(e) => json!({"type": "republish", "error": e}),
            },
        }
    }
}

fn template(f: &Fields<'_, '_>, key: &str, text: &str) -> Result<Template, FileError> {
    Template::parse(text).map_err(|e| f.error(key, format!("bad template: {e} (at byte {} of the value)", e.offset)))
}

fn opt_template(f: &mut Fields<'_, '_>, key: &'static str) -> Result<Option<Template>, FileError> {
    match f.string(key)? {
        None => Ok(None),
        Some(s) => template(f, key, &s.value).map(Some),
    }
}

fn typed_int<T: TryFrom<i64>>(
    f: &mut Fields<'_, '_>,
    key: &'static str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<Typed<T>>, FileError> {
    match f.any(key)? {
        None => Ok(None),
        Some(toml_edit::Value::Integer(i)) => {
            let v = *i.value();
            match T::try_from(v) {
                Ok(t) if range.contains(&v) => Ok(Some(Typed::Fixed(t))),
                _ => Err(f.error(key, format!("{v} is out of range {range:?}"))),
            }
        }
        Some(toml_edit::Value::String(s)) => {
            let s = s.value().clone();
            template(f, key, &s).map(|t| Some(Typed::Template(t)))
        }
        Some(v) => Err(f.error(
            key,
            format!("expected an integer or a template, found {}", v.type_name()),
        )),
    }
}

/// Parses a `republish`-shaped action (topic, qos, retain, payload, properties); the MQTT
/// connector's egress action has the same keys.
pub fn parse_republish(f: &mut Fields<'_, '_>) -> Result<Republish, FileError> {
    let topic_s = f.req_string("topic")?;
    let topic = template(f, "topic", &topic_s.value)?;
    if topic.is_literal() {
        topic::validate_name(&topic_s.value, topic::TopicLimits::default())
            .map_err(|e| f.error("topic", format!("not a valid topic name: {e}")))?;
    }
    let qos = typed_int::<u8>(f, "qos", 0..=2)?.unwrap_or(Typed::Fixed(0));
    let retain = match f.any("retain")? {
        None => Typed::Fixed(false),
        Some(toml_edit::Value::Boolean(b)) => Typed::Fixed(*b.value()),
        Some(toml_edit::Value::String(s)) => {
            let s = s.value().clone();
            Typed::Template(template(f, "retain", &s)?)
        }
        Some(v) => {
            return Err(f.error(
                "retain",
                format!("expected true, false or a template, found {}", v.type_name()),
            ))
        }
    };
    let payload = match f.string("payload")? {
        Some(s) => template(f, "payload", &s.value)?,
        None => Template::parse("${.}").map_err(|e| f.error("payload", e))?,
    };
    let user_properties = match f.any("user_properties")? {
        None => UserProperties::None,
        Some(toml_edit::Value::String(s)) => {
            let s = s.value().clone();
            UserProperties::Template(template(f, "user_properties", &s)?)
        }
        Some(toml_edit::Value::InlineTable(_)) => {
            let mut pairs = Vec::new();
            if let Some(mut t) = f.table("user_properties")? {
                for (k, item, span) in t.entries() {
                    let Some(text) = item.as_str() else {
                        return Err(t
                            .doc
                            .error_span(span, format!("user_properties.{k}: expected a string template")));
                    };
                    let tpl = Template::parse(text).map_err(|e| {
                        t.doc
                            .error_span(span.clone(), format!("user_properties.{k}: bad template: {e}"))
                    })?;
                    pairs.push((k, tpl));
                }
            }
            UserProperties::Pairs(pairs)
        }
        Some(v) => {
            return Err(f.error(
                "user_properties",
                format!("expected a table or a template, found {}", v.type_name()),
            ))
        }
    };
    let mut content_type = None;
    let mut response_topic = None;
    let mut correlation_data = None;
    let mut message_expiry_interval = None;
    let mut payload_format_indicator = None;
    if let Some(mut p) = f.table("mqtt_properties")? {
        content_type = opt_template(&mut p, "content_type")?;
        response_topic = opt_template(&mut p, "response_topic")?;
        correlation_data = opt_template(&mut p, "correlation_data")?;
        message_expiry_interval = typed_int::<u32>(&mut p, "message_expiry_interval", 0..=i64::from(u32::MAX))?;
        payload_format_indicator = typed_int::<u8>(&mut p, "payload_format_indicator", 0..=1)?;
        p.finish()?;
    }
    Ok(Republish {
        topic,
        qos,
        retain,
        payload,
        user_properties,
        content_type,
        response_topic,
        correlation_data,
        message_expiry_interval,
        payload_format_indicator,
    })
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn render_int(t: &Typed<impl Copy + Into<i64>>, out: &Map) -> Option<i64> {
    match t {
        Typed::Fixed(v) => Some((*v).into()),
        Typed::Template(t) => as_int(&t.render_value(out)),
    }
}

impl Republish {
    /// The message this action publishes for `out`, or why it cannot.
    pub fn render(&self, out: &Map) -> Result<Message, String> {
        let topic = self.topic.render(out);
        topic::validate_name(&topic, topic::TopicLimits::default())
            .map_err(|e| format!("rendered topic {topic:?} is not a valid topic name: {e}"))?;
        let qos = render_int(&self.qos, out)
            .and_then(|q| u8::try_from(q).ok())
            .and_then(QoS::from_u8)
            .ok_or_else(|| "qos did not render to 0, 1 or 2".to_string())?;
        let retain = match &self.retain {
            Typed::Fixed(b) => *b,
            Typed::Template(t) => match t.render_value(out) {
                Value::Bool(b) => b,
                Value::Str(s) if &*s == "true" => true,
                Value::Str(s) if &*s == "false" => false,
                Value::Int(i) => i != 0,
                other => return Err(format!("retain did not render to a boolean: {other}")),
            },
        };
        let payload = Bytes::from(self.payload.render_bytes(out));
        let mut msg = Message::new(topic.into(), payload, qos, retain, None);
        msg.user_properties = match &self.user_properties {
            UserProperties::None => Vec::new(),
            UserProperties::Pairs(p) => p.iter().map(|(k, t)| (k.clone(), t.render(out))).collect(),
            UserProperties::Template(t) => match t.render_value(out) {
                Value::Map(m) => m
                    .iter()
                    .map(|(k, v)| {
                        let mut s = String::new();
                        super::template::push_text(&mut s, v);
                        (k.to_string(), s)
                    })
                    .collect(),
                _ => Vec::new(),
            },
        };
        msg.content_type = self.content_type.as_ref().map(|t| t.render(out));
        msg.response_topic = self.response_topic.as_ref().map(|t| t.render(out));
        msg.correlation_data = self.correlation_data.as_ref().map(|t| Bytes::from(t.render_bytes(out)));
        if let Some(e) = &self.message_expiry_interval {
            if let Some(secs) = render_int(e, out).filter(|s| *s > 0) {
                msg.expires_at_ms = Some(msg.received_at_ms + secs as u64 * 1000);
            }
        }
        if let Some(p) = &self.payload_format_indicator {
            msg.payload_format_indicator = render_int(p, out).and_then(|v| u8::try_from(v).ok());
        }
        Ok(msg)
    }
}

// ------------------------------------------------------------------------ the seam

/// One output on its way to an action.
#[derive(Debug, Clone)]
pub struct ActionInput {
    pub rule_id: Arc<str>,
    pub output: Arc<Map>,
    /// Republish depth of the message that triggered the rule (loop protection).
    pub depth: u8,
}

/// The bounded queue in front of one action of one rule.
#[derive(Clone)]
pub struct ActionQueue {
    to: QueueTo,
    metrics: Arc<RuleMetrics>,
}

#[derive(Clone)]
enum QueueTo {
    Builtin(mpsc::Sender<ActionInput>),
    Connector(Arc<dyn ActionSink>),
    /// `republish`: run by the dispatcher itself. Publishing into the broker never waits
    /// (subscriber queues are bounded with their own policy), so no queue is needed, and
    /// the message is routed with no extra hop.
    Inline(Arc<ActionSpec>, ActionEnv),
}

impl fmt::Debug for ActionQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.to {
            QueueTo::Builtin(_) => "ActionQueue(builtin)",
            QueueTo::Connector(_) => "ActionQueue(connector)",
            QueueTo::Inline(..) => "ActionQueue(inline)",
        })
    }
}

impl ActionQueue {
    /// Queues `input` without waiting. When a built-in action's queue is full the input is
    /// dropped and counted (`actions.discarded`); a connector's runtime applies its own
    /// policy (drop oldest). Returns whether nothing was dropped.
    pub fn submit(&self, input: ActionInput) -> bool {
        self.metrics.actions_total.inc();
        match &self.to {
            QueueTo::Builtin(tx) => {
                if tx.try_send(input).is_ok() {
                    true
                } else {
                    self.metrics.actions_discarded.inc();
                    false
                }
            }
            QueueTo::Connector(sink) => sink.submit(input),
            QueueTo::Inline(spec, env) => {
                finish(spec, &input, run(spec, env, &input), &self.metrics);
                true
            }
        }
    }
}

fn finish(spec: &ActionSpec, input: &ActionInput, r: Result<(), String>, m: &RuleMetrics) {
    match r {
        Ok(()) => m.actions_success.inc(),
        Err(e) => {
            m.actions_failed_unknown.inc();
            tracing::warn!(rule = %input.rule_id, action = spec.kind(), error = %e, "Rule action failed.");
        }
    }
}

/// What workers need from the broker.
#[derive(Clone)]
pub struct ActionEnv {
    pub broker: Arc<Broker>,
    /// The running rule set: a republished message no rule reads is published without its
    /// `message.publish` event (the engine would only match it against nothing).
    pub rules: Option<tokio::sync::watch::Receiver<Arc<super::engine::RuleSet>>>,
}

/// Starts the `index`th action of rule `rule_id`. A built-in action gets a worker behind a
/// queue of `capacity`; the worker ends when every [`ActionQueue`] clone is dropped and the
/// queue is drained, so a rule-set swap loses nothing already queued. A connector action
/// is handed to its connector's runtime, which keeps its queue across reloads.
pub fn start(
    spec: Arc<ActionSpec>,
    rule_id: &str,
    index: usize,
    env: &ActionEnv,
    metrics: Arc<RuleMetrics>,
    capacity: usize,
) -> ActionQueue {
    if let ActionSpec::Connector(c) = &*spec {
        let sink = c.0.start(rule_id, index, metrics.clone());
        return ActionQueue {
            to: QueueTo::Connector(sink),
            metrics,
        };
    }
    if let ActionSpec::Republish(_) = &*spec {
        return ActionQueue {
            to: QueueTo::Inline(spec, env.clone()),
            metrics,
        };
    }
    let (tx, mut rx) = mpsc::channel::<ActionInput>(capacity.max(1));
    let env = env.clone();
    let m = metrics.clone();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            for input in batch.drain(..) {
                finish(&spec, &input, run(&spec, &env, &input), &m);
            }
        }
    });
    ActionQueue {
        to: QueueTo::Builtin(tx),
        metrics,
    }
}

fn run(spec: &ActionSpec, env: &ActionEnv, input: &ActionInput) -> Result<(), String> {
    match spec {
        ActionSpec::Console => {
            let json = Value::Map(input.output.clone()).to_json();
            println!("[rule action] {} {json}", input.rule_id);
            Ok(())
        }
        ActionSpec::Republish(r) => {
            let mut msg = r.render(&input.output)?;
            msg.from = Some(input.rule_id.clone());
            msg.republished_by = Some(input.rule_id.clone());
            msg.rule_depth = input.depth.saturating_add(1);
            if let Some(rules) = &env.rules {
                msg.no_publish_event = !rules.borrow().reads_topic(&msg.topic);
            }
            env.broker.publish(msg);
            Ok(())
        }
        // Handed to the connector runtime in `start`; never run here.
        ActionSpec::Connector(c) => Err(format!("connector action `{}` has no runtime", c.0.kind())),
    }
}

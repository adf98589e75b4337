//! `junction rule test`: run one rule SQL against a sample message or event, without a broker.
//!
//! ```text
//! junction rule test --sql "<SQL>" [--topic T --payload P --clientid C --username U --qos N]
//!                                   [--event NAME --context JSON]
//! ```
//!
//! The input follows EMQX's rule tester (`emqx_rule_sqltester`): the event's example columns
//! (`rules::events`), with the `--context` object on top, then the message flags on top of
//! that. The event is `--event` (a name such as `client.connected`, an `event_type` such as
//! `client_connected`, or a `FROM` topic), else the context's `event_type` / `event`, else the
//! rule's first `FROM` source. For a message with no `--topic`, the topic is made from the
//! rule's first topic filter (`+` becomes `a`, `#` is dropped).
//!
//! Outputs go to stdout, one JSON object per line. When `FROM` or `WHERE` does not match there
//! is no output, a note on stderr and exit status 0. Bad SQL, an unknown event or bad context
//! JSON: the error (with a caret under the SQL position) on stderr, exit status 2. An
//! evaluation error (e.g. a payload that is not JSON while the rule reads `payload.x`): the
//! error on stderr, exit status 1.

use std::process::ExitCode;
use std::sync::Arc;

use super::compile::{compile_with, CompiledRule, RuleSqlError, Source};
use super::eval::EvalInput;
use super::events::{parse_event, EventContext, EventKind, DEFAULT_NODE};
use super::host_fns::HostEnv;
use super::parse;
use super::rhai_fns::ScriptFunctions;
use super::value::{Map, Value};

/// Arguments of `junction rule test` (a `clap` subcommand's arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RuleTestArgs {
    /// Rule files to test: a folder (every `*.toml` in it) or one file. Runs each rule's
    /// `[[rules.tests]]` and prints a pass/fail line each; exit status 1 if any fails.
    #[arg(value_name = "PATH", conflicts_with_all = ["sql", "topic", "payload", "event", "context"])]
    pub path: Option<std::path::PathBuf>,
    /// Folder of connector files the rules' actions may name.
    #[arg(long, default_value = "connectors")]
    pub connectors_dir: std::path::PathBuf,
    /// Folder of `*.rhai` functions the rules may call.
    #[arg(long, default_value = "functions")]
    pub functions_dir: std::path::PathBuf,
    /// The rule SQL, e.g. `SELECT payload.t AS t FROM "sensors/#" WHERE t > 30`.
    #[arg(long, default_value_t, required_unless_present = "path")]
    pub sql: String,
    /// Topic of the sample message (default: made from the rule's first topic filter).
    #[arg(long)]
    pub topic: Option<String>,
    /// Payload of the sample message (default: `{"msg": "hello"}`).
    #[arg(long)]
    pub payload: Option<String>,
    /// Client id of the sample message or event (default: EMQX's example).
    #[arg(long)]
    pub clientid: Option<String>,
    /// Username of the sample message or event.
    #[arg(long)]
    pub username: Option<String>,
    /// QoS of the sample message (0, 1 or 2).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// The event: `client.connected`, `client_connected`, `$events/client_connected`, ...
    #[arg(long)]
    pub event: Option<String>,
    /// A JSON object of columns overriding the event's examples (EMQX rule-test context).
    #[arg(long)]
    pub context: Option<String>,
}

/// What a test run printed and its exit status, so the CLI is testable in-process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Lines for stdout: one JSON object per output.
    pub stdout: Vec<String>,
    /// Text for stderr (errors and notes), possibly several lines.
    pub stderr: String,
    /// The process exit status.
    pub code: u8,
}

/// The CLI entry: runs the test and prints its report.
pub fn run(args: RuleTestArgs) -> ExitCode {
    if let Some(path) = &args.path {
        return super::testfile::run(path, &args.functions_dir, &args.connectors_dir);
    }
    let report = execute(&args);
    for line in &report.stdout {
        println!("{line}");
    }
    if !report.stderr.is_empty() {
        eprintln!("{}", report.stderr);
    }
    ExitCode::from(report.code)
}

/// Runs the test and returns what [`run`] would print.
pub fn execute(args: &RuleTestArgs) -> TestReport {
    let scripts = match ScriptFunctions::load(&args.functions_dir) {
        Ok(s) => s,
        Err(e) => return failure(2, e.to_string()),
    };
    let env = HostEnv {
        scripts: (!scripts.is_empty()).then(|| Arc::new(scripts)),
        ..HostEnv::default()
    };
    let compiled = parse::parse(&args.sql)
        .map_err(RuleSqlError::from)
        .and_then(|s| compile_with(&s, &env.compile_options()).map_err(RuleSqlError::from));
    let rule = match compiled {
        Ok(r) => r,
        Err(e) => return failure(2, e.render(&args.sql)),
    };
    match evaluate(&rule, args) {
        Evaluation::Outputs(outputs) => TestReport {
            stdout: outputs
                .iter()
                .map(|o| serde_json::to_string(&o.to_json()).unwrap_or_default())
                .collect(),
            stderr: String::new(),
            code: 0,
        },
        Evaluation::NoOutput(why) => note(format!("no output: {why}")),
        Evaluation::BadInput(msg) => failure(2, msg),
        Evaluation::Failed(e) => failure(1, format!("rule evaluation failed: {}", e.render(&args.sql))),
    }
}

/// The result of evaluating a compiled rule on a test input.
#[derive(Debug)]
pub enum Evaluation {
    /// The outputs (at least one), each a [`Value::Map`].
    Outputs(Vec<Value>),
    /// FROM or WHERE did not match, or FOREACH yielded nothing: why.
    NoOutput(String),
    /// The input could not be built (unknown event, bad context JSON).
    BadInput(String),
    /// The SQL failed to evaluate.
    Failed(super::eval::EvalError),
}

/// Evaluates `rule` on the input `args` describe (`args.sql` is not read): the CLI, rule
/// test files and `POST /api/v5/rule_test` share this.
pub fn evaluate(rule: &CompiledRule, args: &RuleTestArgs) -> Evaluation {
    let ctx = match build_context(args, rule) {
        Ok(c) => c,
        Err(msg) => return Evaluation::BadInput(msg),
    };
    if !rule.matches(&ctx.trigger()) {
        let what = match ctx.kind {
            EventKind::MessagePublish => format!(
                "topic \"{}\"",
                ctx.get("topic").map(ToString::to_string).unwrap_or_default()
            ),
            EventKind::BridgeMqtt => format!(
                "bridge source \"{}\"",
                ctx.get("event").map(ToString::to_string).unwrap_or_default()
            ),
            kind => format!("event {} ({})", kind.name(), kind.def().topic),
        };
        return Evaluation::NoOutput(format!(
            "FROM {} does not match the {what}",
            rule.from_text()
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let input = EvalInput::new(ctx);
    match rule.run(&input) {
        Err(e) => Evaluation::Failed(e),
        Ok(outcome) if !outcome.matched => Evaluation::NoOutput("the WHERE condition is not met".to_string()),
        Ok(outcome) if outcome.outputs.is_empty() => Evaluation::NoOutput(
            "FOREACH yielded no element (empty or not an array, or INCASE excluded all)".to_string(),
        ),
        Ok(outcome) => Evaluation::Outputs(outcome.outputs),
    }
}

fn failure(code: u8, stderr: String) -> TestReport {
    TestReport {
        stdout: Vec::new(),
        stderr,
        code,
    }
}

fn note(stderr: String) -> TestReport {
    TestReport {
        stdout: Vec::new(),
        stderr,
        code: 0,
    }
}

/// The input: examples of the event, overridden by `--context`, overridden by the flags.
fn build_context(args: &RuleTestArgs, rule: &CompiledRule) -> Result<EventContext, String> {
    let context: Option<serde_json::Map<String, serde_json::Value>> = match &args.context {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(o)) => Some(o),
            Ok(_) => return Err("--context: expected a JSON object".to_string()),
            Err(e) => return Err(format!("--context: invalid JSON: {e}")),
        },
    };
    let from_context = |key: &str| {
        context
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let event_name = args
        .event
        .clone()
        .or_else(|| from_context("event_type"))
        .or_else(|| from_context("event"));
    let (kind, bridge_event) = match &event_name {
        Some(name) => {
            let kind = parse_event(name).map_err(|e| format!("--event: {e}"))?;
            let bridge = name.starts_with("$bridges/").then(|| name.clone());
            (kind, bridge)
        }
        None => match rule.sources().first() {
            Some(Source::Event(k)) => (*k, None),
            Some(Source::Bridge(b)) => (EventKind::BridgeMqtt, Some(format!("$bridges/mqtt:{b}"))),
            _ => (EventKind::MessagePublish, None),
        },
    };

    let mut overrides = Map::default();
    if let Some(obj) = &context {
        for (k, v) in obj {
            if k != "event_type" && k != "event_topic" {
                overrides.insert(Arc::from(k.as_str()), Value::from_json(v));
            }
        }
    }
    if let Some(b) = bridge_event {
        overrides.insert(Arc::from("event"), Value::str(b));
    } else if kind != EventKind::BridgeMqtt {
        // `event` always names the kind being tested.
        overrides.insert(Arc::from("event"), Value::str(kind.name()));
    }
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            overrides.insert(Arc::from(k), v);
        }
    };
    set("topic", args.topic.as_deref().map(Value::str));
    set("payload", args.payload.as_deref().map(Value::str));
    set("clientid", args.clientid.as_deref().map(Value::str));
    set("username", args.username.as_deref().map(Value::str));
    set("qos", args.qos.map(|q| Value::Int(i64::from(q))));
    if kind == EventKind::MessagePublish && !overrides.contains_key("topic") {
        if let Some(filter) = rule.topic_filters().next() {
            overrides.insert(Arc::from("topic"), Value::str(topic_for(filter)));
        }
    }
    Ok(EventContext::with_overrides(kind, overrides, DEFAULT_NODE))
}

/// A topic name the filter matches: `+` levels become `a`, a trailing `#` is dropped.
fn topic_for(filter: &str) -> String {
    let levels: Vec<&str> = filter
        .split('/')
        .filter(|l| *l != "#")
        .map(|l| if l == "+" { "a" } else { l })
        .collect();
    let t = levels.join("/");
    if t.is_empty() {
        "t/a".to_string()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sql: &str) -> RuleTestArgs {
        RuleTestArgs {
            sql: sql.to_string(),
            ..RuleTestArgs::default()
        }
    }

    #[test]
    fn message_outputs_one_json_line() {
        let mut a = args("SELECT payload.temp AS t, clientid FROM \"sensors/+/temp\" WHERE t > 30");
        a.payload = Some(r#"{"temp": 31.5}"#.into());
        a.clientid = Some("dev1".into());
        let r = execute(&a);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, vec![r#"{"t":31.5,"clientid":"dev1"}"#.to_string()]);
        assert!(r.stderr.is_empty());
    }

    #[test]
    fn no_match_is_a_note_and_success() {
        let mut a = args("SELECT * FROM \"sensors/#\" WHERE payload.temp > 30");
        a.payload = Some(r#"{"temp": 3}"#.into());
        let r = execute(&a);
        assert_eq!((r.code, r.stdout.len()), (0, 0));
        assert!(r.stderr.contains("WHERE"), "{}", r.stderr);
        a.topic = Some("other/x".into());
        let r = execute(&a);
        assert_eq!((r.code, r.stdout.len()), (0, 0));
        assert!(
            r.stderr.contains("does not match the topic \"other/x\""),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn bad_sql_renders_a_caret_and_exits_2() {
        let r = execute(&args("SELECT FROM \"t\""));
        assert_eq!(r.code, 2);
        assert!(r.stderr.starts_with("1:8:"), "{}", r.stderr);
        assert!(r.stderr.contains('^'));
        let r = execute(&args("SELECT lowr(clientid) FROM \"t\""));
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("did you mean `lower`?"), "{}", r.stderr);
    }

    #[test]
    fn events_default_from_the_first_source() {
        let mut a = args("SELECT clientid, reason FROM \"$events/client_disconnected\"");
        a.clientid = Some("abc".into());
        let r = execute(&a);
        assert_eq!(r.stdout, vec![r#"{"clientid":"abc","reason":"normal"}"#.to_string()]);
        let mut a = args("SELECT clientid, reason FROM \"$events/client_disconnected\"");
        a.event = Some("client.disconnected".into());
        a.context = Some(r#"{"clientid": "c9", "reason": "kicked"}"#.into());
        assert_eq!(
            execute(&a).stdout,
            vec![r#"{"clientid":"c9","reason":"kicked"}"#.to_string()]
        );
        a.event = Some("client_connected".into());
        let r = execute(&a);
        assert_eq!((r.code, r.stdout.len()), (0, 0));
        assert!(r.stderr.contains("event client.connected"), "{}", r.stderr);
        a.event = Some("client_conected".into());
        assert_eq!(execute(&a).code, 2);
        a.event = None;
        a.context = Some("[1]".into());
        assert_eq!(execute(&a).code, 2);
    }

    #[test]
    fn eval_errors_exit_1() {
        let mut a = args("SELECT payload.x FROM \"t\"");
        a.payload = Some("not json".into());
        let r = execute(&a);
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("not valid JSON"), "{}", r.stderr);
    }

    #[test]
    fn parses_as_a_clap_subcommand() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: Cmd,
        }
        #[derive(clap::Subcommand)]
        enum Cmd {
            Test(RuleTestArgs),
        }
        let cli = Cli::try_parse_from([
            "junction",
            "test",
            "--sql",
            "SELECT * FROM \"t\"",
            "--qos",
            "2",
            "--topic",
            "t",
        ])
        .unwrap();
        let Cmd::Test(a) = cli.cmd;
        assert_eq!((a.qos, a.topic.as_deref()), (Some(2), Some("t")));
        assert!(Cli::try_parse_from(["junction", "test", "--sql", "x", "--qos", "3"]).is_err());
        assert!(Cli::try_parse_from(["junction", "test"]).is_err());
    }

    #[test]
    fn topics_from_filters() {
        assert_eq!(topic_for("sensors/+/temp"), "sensors/a/temp");
        assert_eq!(topic_for("t/#"), "t");
        assert_eq!(topic_for("#"), "t/a");
    }
}

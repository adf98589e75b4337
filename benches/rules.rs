//! Rule engine benchmarks: parse, compile and eval.
//!
//! `cargo bench --bench rules` (about a minute). Group and function names are cited in
//! BENCHMARKS.md: keep them stable. Under `cargo test --benches` each benchmark runs once
//! as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use junction::mqtt::codec::QoS;
use junction::mqtt::events::BrokerEvent;
use junction::mqtt::message::Message;
use junction::rules::compile::{compile, compile_sql, CompiledRule};
use junction::rules::eval::EvalInput;
use junction::rules::parse::parse;

const NODE: &str = "junction@127.0.0.1";

/// The rule of the issue.
const ISSUE_RULE: &str = r#"SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30"#;

const CASE_RULE: &str = r#"SELECT
    CASE WHEN payload.temp > 30 THEN 'hot'
         WHEN payload.temp < 10 THEN 'cold'
         ELSE 'ok' END AS level,
    CASE qos WHEN 0 THEN 'at-most-once' WHEN 1 THEN 'at-least-once' ELSE 'exactly-once' END AS delivery,
    clientid
FROM "sensors/#""#;

const FOREACH_RULE: &str = r#"FOREACH payload.sensors AS s
DO clientid, s.name AS name, s.idx AS idx
INCASE s.idx >= 1
FROM "t/#""#;

/// `SELECT payload.f0 AS a0, …, payload.f29 AS a29 FROM "t/#"`.
fn fields30_rule() -> String {
    let fields: Vec<String> = (0..30).map(|i| format!("payload.f{i} AS a{i}")).collect();
    format!("SELECT {} FROM \"t/#\"", fields.join(", "))
}

fn rules() -> Vec<(&'static str, String)> {
    vec![
        ("issue", ISSUE_RULE.to_string()),
        ("case", CASE_RULE.to_string()),
        ("foreach", FOREACH_RULE.to_string()),
        ("fields30", fields30_rule()),
    ]
}

/// A `message.publish` event as the broker emits it.
fn publish(topic: &str, payload: &str) -> BrokerEvent {
    let msg = Message::new(
        topic.into(),
        Bytes::copy_from_slice(payload.as_bytes()),
        QoS::AtLeastOnce,
        false,
        Some(Arc::from("sensor-1")),
    );
    BrokerEvent::Publish(Arc::new(msg))
}

/// The broker's path for one rule: input from the event, `FROM` match, eval.
/// What the dispatcher does for one rule once the topic index matched it: build the
/// columns the rule reads, eval.
fn run_one(rule: &CompiledRule, event: &BrokerEvent) -> usize {
    let input = EvalInput::from_broker_event_with(event, NODE, rule.columns()).expect("publish is a rule source");
    rule.eval(&input).expect("eval").len()
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, sql) in rules() {
        g.bench_function(name, |b| b.iter(|| parse(black_box(&sql)).expect("parse")));
    }
    g.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    for (name, sql) in rules() {
        let stmt = parse(&sql).expect("parse");
        g.bench_function(name, |b| b.iter(|| compile(black_box(&stmt)).expect("compile")));
    }
    g.finish();
}

fn bench_eval(c: &mut Criterion) {
    let mut g = c.benchmark_group("eval");

    // (a) The issue rule, fresh input per iteration: columns built, payload decoded, 1 output.
    let issue = compile_sql(ISSUE_RULE).expect("compile");
    let hot = publish("sensors/1/temp", r#"{"temp": 35, "hum": 50}"#);
    assert_eq!(run_one(&issue, &hot), 1);
    g.bench_function("issue_rule", |b| b.iter(|| run_one(&issue, black_box(&hot))));

    // (b) Same, WHERE false: no output, same work up to the WHERE.
    let cold = publish("sensors/1/temp", r#"{"temp": 20, "hum": 50}"#);
    assert_eq!(run_one(&issue, &cold), 0);
    g.bench_function("issue_rule_where_false", |b| {
        b.iter(|| run_one(&issue, black_box(&cold)))
    });

    // (c) SELECT *: every column copied out, the payload is never decoded.
    let star = compile_sql(r##"SELECT * FROM "#""##).expect("compile");
    {
        let input = EvalInput::from_broker_event(&hot, NODE).unwrap();
        assert_eq!(star.eval(&input).unwrap().len(), 1);
        assert!(!input.payload_decoded(), "SELECT * must not decode the payload");
    }
    g.bench_function("select_star", |b| b.iter(|| run_one(&star, black_box(&hot))));

    // (d) FOREACH over a 10-element array (9 pass INCASE), fresh input per iteration.
    let foreach = compile_sql(FOREACH_RULE).expect("compile");
    let sensors: Vec<String> = (0..10).map(|i| format!(r#"{{"name": "s{i}", "idx": {i}}}"#)).collect();
    let array = publish("t/1", &format!(r#"{{"sensors": [{}]}}"#, sensors.join(", ")));
    assert_eq!(run_one(&foreach, &array), 9);
    g.bench_function("foreach_10", |b| b.iter(|| run_one(&foreach, black_box(&array))));

    // (e) 10 rules that all read payload.x: one shared input (payload decoded once) versus an
    // input rebuilt for each rule (columns built and payload decoded 10 times).
    let ten: Vec<CompiledRule> = (0..10)
        .map(|i| {
            compile_sql(&format!(
                r#"SELECT payload.x * {i} AS y, clientid FROM "t/#" WHERE payload.x > 0"#
            ))
        })
        .collect::<Result<_, _>>()
        .expect("compile");
    let x = publish("t/x", r#"{"x": 7, "unit": "m"}"#);
    g.bench_function("ten_rules_shared_input", |b| {
        b.iter(|| {
            let input = EvalInput::from_broker_event(black_box(&x), NODE).unwrap();
            let trigger = input.context().trigger();
            let mut n = 0;
            for rule in &ten {
                if rule.matches(&trigger) {
                    n += rule.eval(&input).expect("eval").len();
                }
            }
            assert_eq!(n, 10);
            n
        })
    });
    g.bench_function("ten_rules_input_per_rule", |b| {
        b.iter(|| {
            let n: usize = ten.iter().map(|rule| run_one(rule, black_box(&x))).sum();
            assert_eq!(n, 10);
            n
        })
    });

    // (f) Building the input alone (the columns, no payload decode; dropped each iteration),
    // and with the decode.
    g.bench_function("build_input", |b| {
        b.iter(|| EvalInput::from_broker_event(black_box(&hot), NODE).unwrap())
    });
    g.bench_function("build_input_and_decode", |b| {
        b.iter(|| {
            let input = EvalInput::from_broker_event(black_box(&hot), NODE).unwrap();
            input.decoded_payload().is_ok()
        })
    });

    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_parse, bench_compile, bench_eval
}
criterion_main!(benches);

//! Rule SQL end to end (parse -> compile -> eval) on EMQX's own examples: the rule SQL
//! documentation (rule-sql-syntax.md, rule-sql-events-and-fields.md of emqx-docs 5.8) and the
//! `emqx_rule_sqltester:test/1` cases of `emqx_rule_engine_SUITE.erl`. Each case is named
//! after its origin.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use junction::mqtt::codec::{Protocol, QoS};
use junction::mqtt::events::{BrokerEvent, ClientInfo, DisconnectReason};
use junction::mqtt::message::Message;
use junction::rules::compile::{compile_sql, CompileErrorKind, RuleSqlError};
use junction::rules::eval::{Clause, EvalError, EvalErrorKind, EvalInput};
use junction::rules::events::{EventContext, EventKind};
use junction::rules::tester::{execute, RuleTestArgs};
use serde_json::{json, Value as Json};

/// EMQX's `emqx_rule_sqltester:test(#{sql, context})`: the context's keys over the example
/// columns of its `event` (default `message.publish`); `Ok(None)` when FROM or WHERE does not
/// match (EMQX's `{error, nomatch}`).
fn sqltest(sql: &str, context: Json) -> Result<Option<Vec<Json>>, EvalError> {
    let rule = compile_sql(sql).unwrap_or_else(|e| panic!("{}", e.render(sql)));
    let event = context
        .get("event")
        .and_then(Json::as_str)
        .unwrap_or("message.publish")
        .to_string();
    let ctx = EventContext::from_json(&event, context).expect("context");
    if !rule.matches(&ctx.trigger()) {
        return Ok(None);
    }
    let outcome = rule.run(&EvalInput::new(ctx))?;
    if !outcome.matched {
        return Ok(None);
    }
    Ok(Some(outcome.outputs.iter().map(|o| o.to_json()).collect()))
}

/// The single output of a SELECT.
fn select(sql: &str, context: Json) -> Json {
    let out = sqltest(sql, context)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("no match");
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap_or_default()
}

/// The outputs of a FOREACH.
fn foreach(sql: &str, context: Json) -> Vec<Json> {
    sqltest(sql, context)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("no match")
}

fn publish(topic: &str, payload: &str) -> Json {
    json!({"topic": topic, "payload": payload})
}

/// Picks `keys` of an output (EMQX's tests match maps partially).
fn pick(o: &Json, keys: &[&str]) -> Json {
    Json::Object(keys.iter().map(|k| (k.to_string(), o[*k].clone())).collect())
}

// ------------------------------------------------------------------ rule-sql-syntax.md

#[test]
fn docs_select_from_topics_with_alias() {
    let o = select(
        "SELECT clientid, payload.clientid as myclientid FROM \"t/#\", \"my/other/topic\"",
        json!({"topic": "my/other/topic", "clientid": "c1", "payload": "{\"clientid\": \"inner\"}"}),
    );
    assert_eq!(o, json!({"clientid": "c1", "myclientid": "inner"}));
}

#[test]
fn docs_select_by_event_with_where() {
    let sql = "SELECT peername as ip_port FROM \"$events/client_connected\" WHERE clientid = 'c1'";
    let o = select(
        sql,
        json!({"event": "client.connected", "clientid": "c1", "peername": "10.0.0.1:555"}),
    );
    assert_eq!(o, json!({"ip_port": "10.0.0.1:555"}));
    assert_eq!(
        sqltest(sql, json!({"event": "client.connected", "clientid": "c2"})).unwrap(),
        None
    );
}

#[test]
fn docs_select_star_where_username() {
    let sql = "SELECT * FROM \"t/#\" WHERE username = 'eric'";
    let o = select(sql, json!({"topic": "t/1", "username": "eric", "payload": "{\"x\":1}"}));
    // `*` gives every column, and the payload stays the raw string.
    assert_eq!(o["payload"], "{\"x\":1}");
    assert_eq!(o["username"], "eric");
    assert_eq!(o["topic"], "t/1");
    for col in [
        "id",
        "clientid",
        "qos",
        "flags",
        "pub_props",
        "timestamp",
        "node",
        "peerhost",
        "event",
    ] {
        assert!(o.get(col).is_some(), "{col} missing from {o}");
    }
    assert_eq!(sqltest(sql, json!({"topic": "t/1", "username": "bob"})).unwrap(), None);
}

#[test]
fn docs_expressions() {
    let o = select(
        "SELECT (upper(clientid) + '_UPPERCASE_LETTERS') as cid FROM \"t/#\"",
        json!({"topic": "t/a", "clientid": "abc"}),
    );
    assert_eq!(o, json!({"cid": "ABC_UPPERCASE_LETTERS"}));
    let o = select(
        "SELECT (payload.integer_field + 2) * 2 as num FROM \"t/#\"",
        publish("t/a", "{\"integer_field\": 5}"),
    );
    assert_eq!(o, json!({"num": 14}));
    let o = select(
        "SELECT payload.a.b.c.deep as my_field FROM \"t/#\"",
        publish("t/a", "{\"a\":{\"b\":{\"c\":{\"deep\":\"yes\"}}}}"),
    );
    assert_eq!(o, json!({"my_field": "yes"}));
}

#[test]
fn docs_where_on_nested_payload_and_alias() {
    let sql = "SELECT * FROM \"#\" WHERE payload.x.y = 1";
    assert!(
        sqltest(sql, publish("a/b", "{\"x\": {\"y\": 1}, \"other\": \"field\"}"))
            .unwrap()
            .is_some()
    );
    assert!(sqltest(sql, publish("a/b", "{\"x\": {\"y\": 2}}")).unwrap().is_none());
    // "The new alias for payload.x can also be used in the WHERE clause".
    let sql = "SELECT payload.x as x FROM \"tests/test_topic_1\" WHERE x = 1";
    assert_eq!(
        select(sql, publish("tests/test_topic_1", "{\"x\": 1}")),
        json!({"x": 1})
    );
    assert!(sqltest(sql, publish("tests/test_topic_1", "{\"x\": 2}"))
        .unwrap()
        .is_none());
}

#[test]
fn docs_session_subscribed_with_topic_match() {
    let sql = "SELECT clientid FROM \"$events/session_subscribed\" WHERE topic =~ 't/#' and qos = 1";
    let ev =
        |topic: &str, qos: i64| json!({"event": "session.subscribed", "clientid": "c", "topic": topic, "qos": qos});
    assert_eq!(select(sql, ev("t/a/b", 1)), json!({"clientid": "c"}));
    assert!(sqltest(sql, ev("u/a", 1)).unwrap().is_none());
    assert!(sqltest(sql, ev("t/a", 0)).unwrap().is_none());
    let sql = "SELECT clientid FROM \"$events/session_subscribed\" WHERE topic = 'my/topic' and qos = 1";
    assert_eq!(select(sql, ev("my/topic", 1)), json!({"clientid": "c"}));
}

#[test]
fn docs_user_property() {
    let o = select(
        "SELECT pub_props.'User-Property'.foo as foo FROM \"t/#\"",
        json!({"topic": "t/a", "pub_props": {"User-Property": {"foo": "bar"}}}),
    );
    assert_eq!(o, json!({"foo": "bar"}));
    // The example columns carry a User-Property too.
    assert_eq!(
        select(
            "SELECT pub_props.'User-Property'.foo as foo FROM \"t/#\"",
            json!({"topic": "t/a"})
        ),
        o
    );
}

#[test]
fn docs_case() {
    let sql = "SELECT CASE WHEN payload.x < 0 THEN 0 WHEN payload.x > 7 THEN 7 ELSE payload.x END as x FROM \"t/#\"";
    assert_eq!(select(sql, publish("t/a", "{\"x\": 8}")), json!({"x": 7}));
}

const SENSORS: &str =
    r#"{"date": "2020-04-24", "sensors": [{"name": "a", "idx":0}, {"name": "b", "idx":1}, {"name": "c", "idx":2}]}"#;

#[test]
fn docs_foreach_with_do_and_incase() {
    let out = foreach(
        "FOREACH payload.sensors as sensor DO timestamp, clientid, upper(sensor.name) as name, sensor.idx as idx \
         INCASE sensor.idx >= 1 FROM \"t/#\"",
        json!({"topic": "t/1", "clientid": "c_steve", "payload": SENSORS}),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(
        pick(&out[0], &["clientid", "name", "idx"]),
        json!({"clientid": "c_steve", "name": "B", "idx": 1})
    );
    assert_eq!(
        pick(&out[1], &["clientid", "name", "idx"]),
        json!({"clientid": "c_steve", "name": "C", "idx": 2})
    );
    assert!(out[0]["timestamp"].is_i64());
}

#[test]
fn docs_foreach_examples_1_to_3() {
    let ctx = json!({"topic": "t/1", "clientid": "c_steve", "payload": SENSORS});
    // Example 1: without DO, each output has the element as `item` (plus every column).
    let out = foreach("FOREACH payload.sensors FROM \"t/#\"", ctx.clone());
    assert_eq!(out.len(), 3);
    assert_eq!(out[2]["item"], json!({"name": "c", "idx": 2}));
    assert_eq!(out[2]["clientid"], "c_steve");
    // Example 2, with the default name and with `AS s`.
    for sql in [
        "FOREACH payload.sensors DO clientid, item.name as name, item.idx as idx INCASE item.idx >= 1 FROM \"t/#\"",
        "FOREACH payload.sensors as s DO clientid, s.name as name, s.idx as idx INCASE s.idx >= 1 FROM \"t/#\"",
    ] {
        assert_eq!(
            foreach(sql, ctx.clone()),
            vec![
                json!({"clientid": "c_steve", "name": "b", "idx": 1}),
                json!({"clientid": "c_steve", "name": "c", "idx": 2})
            ]
        );
    }
    // Example 3: functions in DO.
    let out = foreach(
        "FOREACH payload.sensors as s DO nth(2, tokens(clientid,'_')) as clientid, s.name as name, s.idx as idx \
         INCASE s.idx >= 1 FROM \"t/#\"",
        ctx,
    );
    assert_eq!(out[0], json!({"clientid": "steve", "name": "b", "idx": 1}));
}

#[test]
fn docs_foreach_multiple_expressions() {
    // "Multiple expressions can be placed in the FOREACH clause as long as the last expression
    // specifies the array to be traversed" (the documentation's example leaves out the comma,
    // which EMQX's grammar needs).
    let payload = r#"{"date": "2020-04-24", "data": {"sensors": [{"name": "a", "idx":0}, {"name": "b", "idx":1}, {"name": "c", "idx":2}]}}"#;
    let ctx = json!({"topic": "t/1", "clientid": "c_steve", "payload": payload});
    let two = foreach(
        "FOREACH payload.data as d, d.sensors as s DO s.name as name, s.idx as idx INCASE s.idx >= 1 FROM \"t/#\"",
        ctx.clone(),
    );
    let one = foreach(
        "FOREACH payload.data.sensors as s DO s.name as name, s.idx as idx INCASE s.idx >= 1 FROM \"t/#\"",
        ctx,
    );
    assert_eq!(two, one);
    assert_eq!(
        two,
        vec![json!({"name": "b", "idx": 1}), json!({"name": "c", "idx": 2})]
    );
}

// ------------------------------------------------------------------ rule-sql-events-and-fields.md

#[test]
fn docs_message_fields() {
    let o = select(
        "SELECT payload.msg as msg, clientid, username, payload, topic, qos FROM \"t/#\"",
        json!({"topic": "t/a", "payload": "{\"msg\":\"hello\"}", "clientid": "c_emqx", "username": "u_emqx", "qos": 1}),
    );
    assert_eq!(
        o,
        json!({"msg": "hello", "clientid": "c_emqx", "username": "u_emqx", "payload": "{\"msg\":\"hello\"}", "topic": "t/a", "qos": 1})
    );
}

#[test]
fn docs_event_fields_with_examples() {
    let cases = [
        (
            "SELECT from_clientid, from_username, topic, qos FROM \"$events/message_delivered\"",
            "message_delivered",
            json!({"from_clientid": "c_emqx_1", "from_username": "u_emqx_1", "topic": "t/a", "qos": 1}),
        ),
        (
            "SELECT from_clientid, from_username, topic, qos FROM \"$events/message_acked\"",
            "message_acked",
            json!({"from_clientid": "c_emqx_1", "from_username": "u_emqx_1", "topic": "t/a", "qos": 1}),
        ),
        (
            "SELECT reason, topic, qos FROM \"$events/message_dropped\"",
            "message_dropped",
            json!({"reason": "no_subscribers", "topic": "t/a", "qos": 1}),
        ),
        (
            "SELECT from_clientid, from_username, reason, topic, qos FROM \"$events/delivery_dropped\"",
            "delivery_dropped",
            json!({"from_clientid": "c_emqx_1", "from_username": "u_emqx_1", "reason": "queue_full", "topic": "t/a", "qos": 1}),
        ),
        (
            "SELECT clientid, username, keepalive, is_bridge FROM \"$events/client_connected\"",
            "client_connected",
            json!({"clientid": "c_emqx", "username": "u_emqx", "keepalive": 60, "is_bridge": false}),
        ),
        (
            "SELECT clientid, username, reason FROM \"$events/client_disconnected\"",
            "client_disconnected",
            json!({"clientid": "c_emqx", "username": "u_emqx", "reason": "normal"}),
        ),
        (
            "SELECT clientid, username, reason_code FROM \"$events/client_connack\"",
            "client_connack",
            json!({"clientid": "c_emqx", "username": "u_emqx", "reason_code": "success"}),
        ),
        (
            "SELECT clientid, username, topic, action, result, authz_source FROM \"$events/client_check_authz_complete\"",
            "client_check_authz_complete",
            json!({"clientid": "c_emqx", "username": "u_emqx", "topic": "t/a", "action": "publish", "result": "allow", "authz_source": "cache"}),
        ),
        (
            "SELECT clientid, username, reason_code, is_superuser, is_anonymous FROM \"$events/client_check_authn_complete\"",
            "client_check_authn_complete",
            json!({"clientid": "c_emqx", "username": "u_emqx", "reason_code": "success", "is_superuser": true, "is_anonymous": false}),
        ),
        (
            "SELECT clientid, username, topic, qos FROM \"$events/session_subscribed\"",
            "session_subscribed",
            json!({"clientid": "c_emqx", "username": "u_emqx", "topic": "t/a", "qos": 1}),
        ),
        (
            "SELECT clientid, username, topic, qos FROM \"$events/session_unsubscribed\"",
            "session_unsubscribed",
            json!({"clientid": "c_emqx", "username": "u_emqx", "topic": "t/a", "qos": 1}),
        ),
    ];
    for (sql, event_type, want) in cases {
        let rule = compile_sql(sql).unwrap();
        let ctx = EventContext::from_json(event_type, json!({"event_type": event_type})).unwrap();
        assert!(rule.matches(&ctx.trigger()), "{sql}");
        let out = rule.eval(&EvalInput::new(ctx)).unwrap();
        assert_eq!(out[0].to_json(), want, "{sql}");
        // The new-style topic selects the same event.
        let new_topic = EventKind::parse(event_type).unwrap().def().topic;
        let rule = compile_sql(&sql.replace(&format!("$events/{event_type}"), new_topic)).unwrap();
        let ctx = EventContext::from_json(event_type, json!({})).unwrap();
        assert!(rule.matches(&ctx.trigger()), "{new_topic}");
    }
    // node and timestamp are filled for every event.
    let o = select(
        "SELECT node, timestamp FROM \"$events/client/disconnected\"",
        json!({"event": "client.disconnected"}),
    );
    assert_eq!(o["node"], "junction@127.0.0.1");
    assert!(o["timestamp"].is_i64());
}

#[test]
fn docs_bridge_source() {
    let sql = "SELECT * FROM \"$bridges/mqtt:my_mqtt_bridge\"";
    let rule = compile_sql(sql).unwrap();
    let ctx = EventContext::from_json("$bridges/mqtt:my_mqtt_bridge", json!({"payload": "hello"})).unwrap();
    assert!(rule.matches(&ctx.trigger()));
    let o = rule.eval(&EvalInput::new(ctx)).unwrap()[0].to_json();
    assert_eq!(o["payload"], "hello");
    assert_eq!(o["server"], "192.168.0.10:1883");
    let other = EventContext::from_json("$bridges/mqtt:other", json!({})).unwrap();
    assert!(!rule.matches(&other.trigger()));
}

// ------------------------------------------------------------------ emqx_rule_engine_SUITE

#[test]
fn suite_sqlselect_0() {
    let ctx = publish("t/a", "{\"cmd\": {\"info\":\"tt\"}}");
    let o = select("select * from \"t/#\" where payload.cmd.info = 'tt'", ctx.clone());
    assert_eq!(o["payload"], "{\"cmd\": {\"info\":\"tt\"}}");
    let o = select(
        "select payload.cmd as cmd from \"t/#\" where cmd.info = 'tt'",
        ctx.clone(),
    );
    assert_eq!(o, json!({"cmd": {"info": "tt"}}));
    let o = select(
        "select payload.cmd as cmd, cmd.info as info from \"t/#\" where cmd.info = 'tt' and info = 'tt'",
        ctx,
    );
    assert_eq!(o, json!({"cmd": {"info": "tt"}, "info": "tt"}));
}

#[test]
fn suite_sqlselect_00_unary_and_arithmetic() {
    let ctx = publish("t/a", "");
    assert_eq!(select("select 1-1 as a from \"t/#\"", ctx.clone()), json!({"a": 0}));
    assert_eq!(select("select -1 + 1 as a from \"t/#\"", ctx.clone()), json!({"a": 0}));
    assert_eq!(select("select 1 + 1 as a from \"t/#\"", ctx.clone()), json!({"a": 2}));
    assert_eq!(select("select +1 as a from \"t/#\"", ctx), json!({"a": 1}));
}

#[test]
fn suite_sqlparse_event_1_2_3() {
    assert_eq!(
        select(
            "select topic as tp from \"$events/session_subscribed\"",
            json!({"topic": "t/tt", "event": "session.subscribed"})
        ),
        json!({"tp": "t/tt"})
    );
    assert_eq!(
        select(
            "select clientid from \"$events/client_connected\"",
            json!({"clientid": "abc", "event": "client.connected"})
        ),
        json!({"clientid": "abc"})
    );
    assert_eq!(
        select(
            "select clientid, topic as tp from \"t/tt\", \"$events/client_connected\"",
            json!({"clientid": "abc", "topic": "t/tt"})
        ),
        json!({"clientid": "abc", "tp": "t/tt"})
    );
}

#[test]
fn suite_sqlparse_foreach_1() {
    let ctx = publish("t/a", "{\"sensors\": [1, 2]}");
    let out = foreach("foreach payload.sensors as s from \"t/#\"", ctx.clone());
    assert_eq!((out[0]["s"].clone(), out[1]["s"].clone()), (json!(1), json!(2)));
    let out = foreach("foreach payload.sensors from \"t/#\"", ctx.clone());
    assert_eq!((out[0]["item"].clone(), out[1]["item"].clone()), (json!(1), json!(2)));
    // Sql5: the unaliased FOREACH path is put back, so `payload` becomes {"sensors": [...]}.
    assert_eq!(out[0]["payload"], json!({"sensors": [1, 2]}));
    let out = foreach(
        "foreach payload.sensors from \"t/#\"",
        json!({"topic": "t/a", "clientid": "c_a", "payload": "{\"sensors\": [{\"cmd\":\"1\"}, {\"cmd\":\"2\",\"name\":\"ct\"}]}"}),
    );
    assert_eq!(
        pick(&out[0], &["item", "clientid"]),
        json!({"item": {"cmd": "1"}, "clientid": "c_a"})
    );
    assert_eq!(
        pick(&out[1], &["item", "clientid"]),
        json!({"item": {"cmd": "2", "name": "ct"}, "clientid": "c_a"})
    );
}

#[test]
fn suite_sqlparse_foreach_2_3_4() {
    let cmds = publish("t/a", "{\"sensors\": [{\"cmd\":\"1\"}, {\"cmd\":\"2\"}]}");
    let want = vec![json!({"msg_type": "1"}), json!({"msg_type": "2"})];
    assert_eq!(
        foreach(
            "foreach payload.sensors as s do s.cmd as msg_type from \"t/#\"",
            cmds.clone()
        ),
        want
    );
    assert_eq!(
        foreach("foreach payload.sensors do item.cmd as msg_type from \"t/#\"", cmds),
        want
    );
    assert_eq!(
        foreach(
            "foreach payload.sensors do item as item from \"t/#\"",
            publish("t/a", "{\"sensors\": [1, 2]}")
        ),
        vec![json!({"item": 1}), json!({"item": 2})]
    );

    let ints = publish("t/a", "{\"sensors\": [{\"cmd\":1}, {\"cmd\":2}, {\"cmd\":3}]}");
    let out = foreach(
        "foreach payload.sensors as s incase s.cmd != 1 from \"t/#\"",
        ints.clone(),
    );
    assert_eq!(
        (out[0]["s"].clone(), out[1]["s"].clone()),
        (json!({"cmd": 2}), json!({"cmd": 3}))
    );
    let out = foreach("foreach payload.sensors incase item.cmd != 1 from \"t/#\"", ints);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["item"], json!({"cmd": 3}));

    let sql =
        "foreach payload.sensors as s do s.cmd as msg_type, s.name as name incase is_not_null(s.cmd) from \"t/#\"";
    assert_eq!(
        foreach(
            sql,
            publish(
                "t/a",
                "{\"sensors\": [{\"cmd\":\"1\", \"name\":\"n1\"}, {\"cmd\":\"2\"}, {\"name\":\"n3\"}]}"
            )
        ),
        vec![
            json!({"msg_type": "1", "name": "n1"}),
            json!({"msg_type": "2", "name": null})
        ]
    );
    assert!(foreach(sql, publish("t/a", "{\"sensors\": [1, 2]}")).is_empty());
}

#[test]
fn suite_sqlparse_foreach_5_empty_or_not_a_list() {
    let sql = "foreach payload.sensors as s do s.cmd as msg_type, s.name as name from \"t/#\"";
    assert!(foreach(sql, publish("t/a", "{\"sensors\": 1}")).is_empty());
    assert!(foreach(sql, publish("t/a", "{\"sensors\": []}")).is_empty());
    assert!(foreach(
        "foreach payload.sensors from \"t/#\"",
        publish("t/a", "{\"sensors\": 1}")
    )
    .is_empty());
}

#[test]
fn suite_sqlparse_foreach_6_9_10() {
    let out = foreach(
        "foreach json_decode(payload) do item.id as zid, timestamp as t from \"t/#\"",
        publish("t/a", "[{\"id\": 5},{\"id\": 15}]"),
    );
    assert_eq!((out[0]["zid"].clone(), out[1]["zid"].clone()), (json!(5), json!(15)));
    assert!(out[0]["t"].is_i64());
    let ctx = publish(
        "t/a",
        r#"[{"ts":1451649600512,"values":{"respiratoryrate":20,"heartrate":130,"systolic":50}}]"#,
    );
    let want = vec![json!({"ts": 1451649600512i64})];
    assert_eq!(
        foreach(
            "foreach json_decode(payload) as p do p.ts as ts from \"t/#\"",
            ctx.clone()
        ),
        want
    );
    // "also work if we don't decode it first"
    assert_eq!(foreach("foreach payload as p do p.ts as ts from \"t/#\"", ctx), want);
    assert_eq!(
        foreach(
            "foreach payload as item do item.data as next_data from \"t/#\"",
            publish("t/a", "[{\"data\": \"value1\"}, {\"data\": \"value2\"}]")
        ),
        vec![json!({"next_data": "value1"}), json!({"next_data": "value2"})]
    );
}

#[test]
fn suite_sqlparse_foreach_7_8_bindings() {
    // Several FOREACH fields: all but the last are bindings, visible to the later fields,
    // WHERE, INCASE and DO.
    let payload = r#"{"sensors": {"page": 2, "collection": {"info":[{"name":"cmd1", "cmd":"1"}, {"cmd":"2"}]}}}"#;
    let sql = "foreach json_decode(payload) as p, p.sensors as s, s.collection as c, c.info as info \
               do info.cmd as msg_type, info.name as name \
               incase is_not_null(info.cmd) from \"t/#\" where s.page = '2' ";
    assert_eq!(
        foreach(sql, publish("t/a", payload)),
        vec![
            json!({"msg_type": "1", "name": "cmd1"}),
            json!({"msg_type": "2", "name": null})
        ]
    );
    let sql2 = sql.replace("'2'", "'3'");
    assert_eq!(sqltest(&sql2, publish("t/a", payload)).unwrap(), None);

    let payload = r#"{"sensors": {"page": 2, "collection": {"info":["haha", {"name":"cmd1", "cmd":"1"}]}}}"#;
    let coll = json!({"info": ["haha", {"name": "cmd1", "cmd": "1"}]});
    let sql = "foreach json_decode(payload) as p, p.sensors as s, s.collection as c, c.info as info \
               do info.cmd as msg_type, info.name as name, s, c \
               incase is_map(info) from \"t/#\" where s.page = '2' ";
    assert_eq!(
        foreach(sql, publish("t/a", payload)),
        vec![json!({"msg_type": "1", "name": "cmd1", "s": {"page": 2, "collection": coll}, "c": coll})]
    );
    let sql3 = "foreach json_decode(payload) as p, p.sensors as s, s.collection as c, sublist(2,1,c.info) as info \
                do info.cmd as msg_type, info.name as name from \"t/#\" where s.page = '2' ";
    assert_eq!(
        foreach(sql3, publish("t/a", payload)),
        vec![json!({"msg_type": "1", "name": "cmd1"})]
    );
    // Without DO each output has the columns, every FOREACH field and the element.
    let out = foreach(
        "foreach payload.data as d, d.sensors as s from \"t/#\"",
        publish("t/a", r#"{"data": {"sensors": [1, 2]}}"#),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(
        pick(&out[1], &["d", "s", "topic"]),
        json!({"d": {"sensors": [1, 2]}, "s": 2, "topic": "t/a"})
    );
}

#[test]
fn foreach_element_alias_must_be_a_name() {
    let sql = "FOREACH payload.a AS x.y FROM \"t\"";
    let Err(RuleSqlError::Compile(e)) = compile_sql(sql) else {
        panic!("compiled")
    };
    assert_eq!(e.kind, CompileErrorKind::BadValue);
    assert_eq!(
        e.to_string(),
        "1:22: the FOREACH element's alias `x.y` must be a plain name, not a path"
    );
    // A binding may have a path alias.
    let out = foreach(
        "FOREACH payload.a AS x.y, x.y AS e FROM \"t\"",
        publish("t", r#"{"a": [7]}"#),
    );
    assert_eq!(pick(&out[0], &["x", "e"]), json!({"x": {"y": [7]}, "e": 7}));
}

#[test]
fn suite_sqlparse_both_string_types_in_from() {
    let sql = "select clientid, topic as tp from 't/tt', \"$events/client_connected\" ";
    assert_eq!(
        select(sql, json!({"topic": "t/tt", "clientid": "abc"})),
        json!({"clientid": "abc", "tp": "t/tt"})
    );
    let sql = "foreach payload.sensors from 't/#', \"$events/client_connected\" ";
    assert!(foreach(sql, publish("t/a", "{\"sensors\": 1}")).is_empty());
    // A bare word is a one-level topic (`select * from t` in emqx_rule_engine_api_2_SUITE).
    assert_eq!(
        select("select topic from t", json!({"topic": "t"})),
        json!({"topic": "t"})
    );
    assert_eq!(sqltest("select topic from t", json!({"topic": "t/a"})).unwrap(), None);
}

#[test]
fn suite_sqlselect_1_path_aliases_last_write_wins() {
    // t_json_payload_decoding's "last write wins" cases (EMQX matches the maps partially).
    let o = select(
        "select payload as p, payload.f as p.answer from \"some/topic\"",
        publish("some/topic", r#"{"f": 42, "keep": "that?"}"#),
    );
    assert_eq!(o["p"]["answer"], json!(42));
    let o = select(
        "select payload as p, payload.f as p.jsonlike.f from \"some/topic\"",
        publish("some/topic", r#"{"jsonlike": "{\"a\":0}", "f": "huh"}"#),
    );
    assert_eq!(o["p"]["jsonlike"]["f"], json!("huh"));
    let o = select(
        "select payload as p, 42 as p, payload.measurement as p.measurement, 51 as p from \"some/topic\"",
        publish("some/topic", r#"{"measurement": "temp", "data_type": "FLOAT"}"#),
    );
    assert_eq!(o, json!({"p": 51}));
    let o = select(
        "select json_decode(payload) as p, payload.a as p.z from \"some/topic\"",
        publish("some/topic", r#"{"a": 1, "b": "2"}"#),
    );
    assert_eq!(o, json!({"p": {"a": 1, "b": "2", "z": 1}}));
    // Cascaded AS: a path alias is visible to later fields and to WHERE.
    let sql = "select payload.cmd as cmd, cmd.info as meta.info from \"t/#\" \
               where cmd.info = 'tt' and meta.info = 'tt'";
    assert_eq!(
        select(sql, publish("t/a", r#"{"cmd": {"info": "tt"}}"#)),
        json!({"cmd": {"info": "tt"}, "meta": {"info": "tt"}})
    );
}

#[test]
fn suite_sqlparse_array_index_2_to_4_path_aliases() {
    let empty = publish("t/a", "");
    // `[-0]` appends, `[0]` prepends.
    assert_eq!(
        select(
            "select payload.x as b, 1 as c[-0], 2 as c[-0], b as c[0] from \"t/#\"",
            json!({"topic": "t/a", "payload": {"x": 0}})
        ),
        json!({"b": 0, "c": [0, 1, 2]})
    );
    assert_eq!(
        select(
            "select [] as c, 1 as c[-0], 2 as c[-0], 0 as c[0] from \"t/#\"",
            empty.clone()
        ),
        json!({"c": [0, 1, 2]})
    );
    assert_eq!(
        select(
            "select [payload.a, \"topic\", 'c'] as c, 1 as c[-0], 2 as c[-0], 0 as c[0] from \"t/#\"",
            publish("t/a", "{\"a\":11}")
        ),
        json!({"c": [0, 11, "t/a", "c", 1, 2]})
    );
    assert_eq!(
        select(
            "select [1..4] as c, 5 as c[-0], 6 as c[-0], 0 as c[0] from \"t/#\"",
            empty.clone()
        ),
        json!({"c": [0, 1, 2, 3, 4, 5, 6]})
    );
    // `[i]` replaces an element; out of range the list is left as it is.
    assert_eq!(
        select(
            "select [1, 2, 3] as c, 20 as c[2], 30 as c[-1], 99 as c[7] from \"t/#\"",
            empty.clone()
        ),
        json!({"c": [1, 20, 30]})
    );
    let ctx = publish("t/a", "{\"x\": [1,{\"y\": [1,2]},3]}");
    assert_eq!(
        select("select payload.x[2].y as b.c from \"t/#\"", ctx.clone()),
        json!({"b": {"c": [1, 2]}})
    );
    // Into a list that is not selected: a one-element list.
    assert_eq!(
        select("select 0 as payload.x[2].y from \"t/#\"", ctx.clone()),
        json!({"payload": {"x": [{"y": 0}]}})
    );
    assert_eq!(
        select("select payload.x, 0 as payload.x[2].y from \"t/#\"", ctx),
        json!({"payload": {"x": [1, {"y": 0}, 3]}})
    );
    // t_sqlparse_true_false and t_sqlparse_new_map.
    assert_eq!(
        select(
            "select true as a, false as b, false as x.y, true as c[-0] from \"t/#\"",
            empty.clone()
        ),
        json!({"a": true, "b": false, "x": {"y": false}, "c": [true]})
    );
    assert_eq!(
        select(
            "select map_new() as a, map_new() as b, map_new() as x.y, map_new() as c[-0] from \"t/#\"",
            empty
        ),
        json!({"a": {}, "b": {}, "x": {"y": {}}, "c": [{}]})
    );
}

#[test]
fn suite_sqlparse_payload_as() {
    // emqx/emqx#3866: a path alias into the selected payload keeps its other keys.
    let sql = "SELECT payload, map_get('engineWorkTime', payload.params, -1) as payload.params.engineWorkTime, \
               map_get('hydOilTem', payload.params, -1) as payload.params.hydOilTem FROM \"t/#\"";
    let o = select(
        sql,
        publish(
            "t/a",
            r#"{ "msgId": 1002, "params": { "convertTemp": 20, "engineSpeed": 42, "hydOilTem": 30 } }"#,
        ),
    );
    assert_eq!(
        o["payload"]["params"],
        json!({"convertTemp": 20, "engineSpeed": 42, "engineWorkTime": -1, "hydOilTem": 30})
    );
    let o = select(
        sql,
        publish(
            "t/a",
            r#"{ "msgId": 1002, "params": { "convertTemp": 20, "engineSpeed": 42 } }"#,
        ),
    );
    assert_eq!(
        o["payload"]["params"],
        json!({"convertTemp": 20, "engineSpeed": 42, "engineWorkTime": -1, "hydOilTem": -1})
    );
    assert_eq!(o["payload"]["msgId"], json!(1002));
}

#[test]
fn suite_sqlparse_case_when() {
    let sql = "select case when payload.x < 0 then 0 when payload.x > 7 then 7 else payload.x end as y from \"t/#\"";
    for (x, y) in [(1, 1), (0, 0), (-1, 0), (7, 7), (8, 7)] {
        assert_eq!(
            select(sql, publish("t/a", &format!("{{\"x\": {x}}}"))),
            json!({"y": y}),
            "x={x}"
        );
    }
    let sql = "select case payload.x when 1 then 2 when 2 then 3 else 4 end as y from \"t/#\"";
    for (x, y) in [(1, 2), (2, 3), (4, 4), (7, 4), (8, 4)] {
        assert_eq!(
            select(sql, publish("t/a", &format!("{{\"x\": {x}}}"))),
            json!({"y": y}),
            "x={x}"
        );
    }
    let sql = "select case when payload.x < 0 then 0 when payload.x > 7 then 7 end as y from \"t/#\"";
    for (x, y) in [
        (1, Json::Null),
        (5, Json::Null),
        (0, Json::Null),
        (-1, json!(0)),
        (7, Json::Null),
        (8, json!(7)),
    ] {
        assert_eq!(select(sql, publish("t/a", &format!("{{\"x\": {x}}}")))["y"], y, "x={x}");
    }
}

#[test]
fn suite_sqlparse_array_index() {
    let sql = "select json_decode(payload) as p, p[1] as a from \"t/#\"";
    assert_eq!(select(sql, publish("t/a", "[{\"x\": 1}]"))["a"], json!({"x": 1}));
    assert_eq!(select(sql, publish("t/a", "{\"x\": 1}"))["a"], Json::Null);
    let ctx = json!({"topic": "t/a", "payload": {"x": [1, {"y": 3}, 4]}});
    assert_eq!(
        select("select payload.x[2] from \"t/#\"", ctx.clone()),
        json!({"payload": {"x": [{"y": 3}]}})
    );
    assert_eq!(
        select("select payload.x[2].y from \"t/#\"", ctx.clone()),
        json!({"payload": {"x": [{"y": 3}]}})
    );
    assert_eq!(
        select("select payload.x[2].y as b from \"t/#\"", ctx.clone()),
        json!({"b": 3})
    );
    assert_eq!(select("select payload.x[-2].y as b from \"t/#\"", ctx), json!({"b": 3}));
    let ctx = publish("t/a", "{\"x\": [1,{\"y\": [1,2]},3]}");
    assert_eq!(
        select("select payload, payload.x[2].y from \"t/#\"", ctx.clone()),
        json!({"payload": {"x": [1, {"y": [1, 2]}, 3]}})
    );
    assert_eq!(
        select("select payload.x[2].y as b from \"t/#\"", ctx),
        json!({"b": [1, 2]})
    );
}

#[test]
fn index_read_from_a_name_or_path() {
    // rulesql's `index_ref -> '[' name_or_path_ref ']'`.
    let ctx = publish(
        "t/a",
        r#"{"list": [{"n": "a"}, {"n": "b"}, {"n": "c"}], "i": 2, "j": -1, "s": "x"}"#,
    );
    let o = select(
        "select payload.list[payload.i].n as b, payload.list[payload.j].n as c, 1 as k, payload.list[k] as first, \
         payload.list[payload.s] as by_string, payload.list[nothing] as by_null, payload.list[+3].n as plus \
         from \"t/#\"",
        ctx,
    );
    assert_eq!(
        o,
        json!({"b": "b", "c": "c", "k": 1, "first": {"n": "a"}, "by_string": null, "by_null": null, "plus": "c"})
    );
    // In FOREACH, the element can index too.
    let out = foreach(
        "foreach payload.idx as i do payload.names[i] as name from \"t/#\"",
        publish("t/a", r#"{"idx": [2, 1], "names": ["x", "y"]}"#),
    );
    assert_eq!(out, vec![json!({"name": "y"}), json!({"name": "x"})]);
}

#[test]
fn suite_sqlparse_arrays_and_ranges() {
    let empty = publish("t/a", "");
    let o = select("select [1,2,3,4] from \"t/#\"", empty.clone());
    assert!(o.as_object().unwrap().values().any(|v| *v == json!([1, 2, 3, 4])));
    let o = select(
        "select [21 + 21, abs(-abs(-2)), [1 + 1], 4] from \"t/#\"",
        empty.clone(),
    );
    assert!(o.as_object().unwrap().values().any(|v| *v == json!([42, 2, [2], 4])));
    let o = select("select [1..4] from \"t/#\"", empty);
    assert!(o.as_object().unwrap().values().any(|v| *v == json!([1, 2, 3, 4])));

    let ctx = publish("t/a", "{\"a\":[0,1,2,3,4,5]}");
    assert_eq!(
        select("select payload.a[1..4] as c from \"t/#\"", ctx.clone()),
        json!({"c": [0, 1, 2, 3]})
    );
    assert_eq!(
        select("select payload.a[1..4] from \"t/#\"", ctx),
        json!({"payload": {"a": [0, 1, 2, 3]}})
    );
    assert_eq!(
        select(
            "select a[2..4] from \"t/#\"",
            json!({"topic": "t/a", "a": [1, 2, 3, 4, 5]})
        ),
        json!({"a": [2, 3, 4]})
    );
    // "get a range from non-list data" is an error in the SELECT clause.
    let e = sqltest(
        "select payload.a[1..4] as c from \"t/#\"",
        publish("t/a", "{\"x\":[0,1,2,3,4,5]}"),
    )
    .unwrap_err();
    assert_eq!(
        (e.clause, e.kind),
        (Clause::Select, EvalErrorKind::RangeOfNonList("undefined"))
    );
}

#[test]
fn suite_sqlparse_true_false_undefined_new_map() {
    let empty = publish("t/a", "");
    assert_eq!(
        select("select true as a, false as b from \"t/#\"", empty.clone()),
        json!({"a": true, "b": false})
    );
    // undefined = undefined
    assert_eq!(
        select("select a, b from \"t/#\" where a = b", empty.clone()),
        json!({"a": null, "b": null})
    );
    // undefined compared with a value is false
    assert_eq!(
        sqltest("select a, b from \"t/#\" where a > b", publish("t/a", "{\"b\":1}")).unwrap(),
        None
    );
    assert_eq!(
        select("select a < b as c from \"t/#\"", publish("t/a", "{\"b\":1}")),
        json!({"c": false})
    );
    assert_eq!(
        select("select map_new() as a, map_new() as b from \"t/#\"", empty),
        json!({"a": {}, "b": {}})
    );
}

#[test]
fn suite_sqlparse_nested_get_and_invalid_json() {
    assert_eq!(
        select(
            "select payload as p, p.a.b as c from \"t/#\"",
            publish("t/1", "{\"a\": {\"b\": 0}}")
        )["c"],
        json!(0)
    );
    let e = sqltest(
        "select payload.a[1..4] as c from \"t/#\"",
        publish("t/a", "{\"x\":[0,1,2,3,}"),
    )
    .unwrap_err();
    assert_eq!(e.clause, Clause::Select);
    assert!(matches!(e.kind, EvalErrorKind::PayloadNotJson(_)));
    let e = sqltest(
        "foreach payload.sensors do item.cmd as msg_type from \"t/#\"",
        publish("t/a", "{\"sensors\": [{\"cmd\":\"1\"} {\"cmd\":}]}"),
    )
    .unwrap_err();
    assert_eq!(e.clause, Clause::Foreach);
    assert!(matches!(e.kind, EvalErrorKind::PayloadNotJson(_)));
}

#[test]
fn in_and_not_in() {
    let sql = "SELECT qos FROM \"t/#\" WHERE qos IN (1, 2) AND clientid NOT IN ('bad', 'worse')";
    assert!(sqltest(sql, json!({"topic": "t", "qos": 1, "clientid": "good"}))
        .unwrap()
        .is_some());
    assert!(sqltest(sql, json!({"topic": "t", "qos": 0, "clientid": "good"}))
        .unwrap()
        .is_none());
    assert!(sqltest(sql, json!({"topic": "t", "qos": 2, "clientid": "bad"}))
        .unwrap()
        .is_none());
    // IN is exact (Erlang lists:member): 1.0 is not 1.
    let o = select(
        "SELECT payload.x IN (1) AS a, payload.x = 1 AS b FROM \"t\"",
        publish("t", "{\"x\": 1.0}"),
    );
    assert_eq!(o, json!({"a": false, "b": true}));
}

#[test]
fn comparisons_across_types() {
    let o = select(
        "SELECT payload.i > 2.5 AS a, payload.s = 2 AS b, payload.s < payload.t AS c, topic =~ 't/+' AS d, \
         payload.b = 'true' AS e FROM \"t/#\"",
        publish("t/x", r#"{"i": 3, "s": "2", "t": "3", "b": true}"#),
    );
    assert_eq!(o, json!({"a": true, "b": true, "c": true, "d": true, "e": true}));
}

// ------------------------------------------------------------------ broker events end to end

fn client() -> ClientInfo {
    ClientInfo {
        client_id: Arc::from("dev-7"),
        username: Some("alice".into()),
        peer: "10.1.2.3:40000".parse::<SocketAddr>().unwrap(),
        protocol: Protocol::V4,
        keep_alive: 45,
        clean_start: false,
        expiry_interval: 0,
    }
}

#[test]
fn broker_disconnect_event_through_a_rule() {
    let rule = compile_sql("SELECT clientid, reason FROM \"$events/client_disconnected\"").unwrap();
    let ev = BrokerEvent::ClientDisconnected {
        client: client(),
        reason: DisconnectReason::TakenOver,
    };
    let input = EvalInput::from_broker_event(&ev, "n1").unwrap();
    assert!(rule.matches(&input.context().trigger()));
    assert!(rule.matches_from("$events/client/disconnected"));
    let out = rule.eval(&input).unwrap();
    assert_eq!(out[0].to_json(), json!({"clientid": "dev-7", "reason": "takenover"}));
}

#[test]
fn broker_publish_shares_one_decode_across_rules() {
    let msg = Message::new(
        "sensors/1/temp".into(),
        Bytes::from_static(b"{\"temp\": 35}"),
        QoS::AtLeastOnce,
        false,
        Some(Arc::from("s1")),
    );
    let input = EvalInput::from_broker_event(&BrokerEvent::Publish(Arc::new(msg)), "n1").unwrap();
    let hot = compile_sql("SELECT payload.temp AS t, clientid FROM \"sensors/+/temp\" WHERE t > 30").unwrap();
    let raw = compile_sql("SELECT payload FROM \"sensors/#\"").unwrap();
    let other = compile_sql("SELECT * FROM \"other/#\"").unwrap();
    assert!(hot.reads_payload() && !raw.reads_payload());
    assert!(!other.matches(&input.context().trigger()));
    assert_eq!(
        raw.eval(&input).unwrap()[0].to_json(),
        json!({"payload": "{\"temp\": 35}"})
    );
    assert!(!input.payload_decoded());
    assert_eq!(
        hot.eval(&input).unwrap()[0].to_json(),
        json!({"t": 35, "clientid": "s1"})
    );
    assert!(input.payload_decoded());
    assert_eq!(hot.topic_filters().collect::<Vec<_>>(), ["sensors/+/temp"]);
}

// ------------------------------------------------------------------ errors

#[test]
fn unknown_function_is_a_compile_error_with_line_and_column() {
    let sql = "SELECT\n  clientid,\n  uppr(username) AS u\nFROM \"t/#\"";
    let Err(RuleSqlError::Compile(e)) = compile_sql(sql) else {
        panic!("expected a compile error")
    };
    assert_eq!(e.kind, CompileErrorKind::UnknownFunction);
    assert_eq!((e.span.start.line, e.span.start.column), (3, 3));
    assert_eq!(
        e.render(sql),
        "3:3: unknown function `uppr` (did you mean `upper`?)\n  |\n3 |   uppr(username) AS u\n  |   ^^^^"
    );
}

#[test]
fn bad_sources_are_compile_errors() {
    for sql in [
        "SELECT * FROM \"$events/client_conected\"",
        "SELECT * FROM \"a/#/b\"",
        "SELECT * FROM \"$bridges/mqtt:\"",
    ] {
        assert!(matches!(compile_sql(sql), Err(RuleSqlError::Compile(_))), "{sql}");
    }
}

// ------------------------------------------------------------------ the CLI

fn cli(sql: &str) -> RuleTestArgs {
    RuleTestArgs {
        sql: sql.into(),
        ..RuleTestArgs::default()
    }
}

#[test]
fn cli_prints_outputs_as_json_lines() {
    let mut a = cli("FOREACH payload.sensors AS s DO s.name AS name INCASE s.idx >= 1 FROM \"t/#\"");
    a.topic = Some("t/1".into());
    a.payload = Some(SENSORS.into());
    let r = execute(&a);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        vec![r#"{"name":"b"}"#.to_string(), r#"{"name":"c"}"#.to_string()]
    );

    let mut a = cli("SELECT clientid, reason FROM \"$events/client_disconnected\"");
    a.event = Some("$events/client_disconnected".into());
    a.context = Some(r#"{"clientid": "c1", "reason": "keepalive_timeout"}"#.into());
    assert_eq!(
        execute(&a).stdout,
        vec![r#"{"clientid":"c1","reason":"keepalive_timeout"}"#.to_string()]
    );

    let mut a = cli("SELECT * FROM \"t/#\" WHERE payload.x > 1");
    a.payload = Some(r#"{"x": 1}"#.into());
    let r = execute(&a);
    assert_eq!((r.code, r.stdout.is_empty()), (0, true));
    assert!(!r.stderr.is_empty());

    let r = execute(&cli("SELECT * FRM \"t\""));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("^"), "{}", r.stderr);
}

//! Tests for `rules::parse` and the `Display` of `rules::ast` (round trips).

use proptest::prelude::*;

use super::{parse, ParseError, ParseErrorKind, MAX_EXPR_DEPTH, MAX_NESTING};
use crate::rules::ast::*;

// ------------------------------------------------------------------------ helpers

#[track_caller]
fn ok(sql: &str) -> Statement {
    match parse(sql) {
        Ok(s) => s,
        Err(e) => panic!("{sql:?} did not parse:\n{}", e.render(sql)),
    }
}

#[track_caller]
fn err(sql: &str) -> ParseError {
    match parse(sql) {
        Ok(s) => panic!("{sql:?} parsed, as {s}"),
        Err(e) => e,
    }
}

/// Parses, prints, parses again and checks both trees match; returns the printed SQL.
#[track_caller]
fn round_trip(sql: &str) -> String {
    let first = ok(sql);
    let printed = first.to_string();
    let second = ok(&printed);
    assert_eq!(
        first.without_spans(),
        second.without_spans(),
        "{sql:?} printed as {printed:?}"
    );
    printed
}

/// The span-free expression of `SELECT <expr> FROM "t"`.
#[track_caller]
fn expr(e: &str) -> Expr {
    let sql = format!("SELECT {e} FROM \"t\"");
    round_trip(&sql);
    match ok(&sql).without_spans().kind {
        StatementKind::Select { mut fields } if fields.len() == 1 => match fields.remove(0) {
            Field::Expr { expr, alias: None, .. } => expr,
            f => panic!("not a bare expression: {f:?}"),
        },
        k => panic!("not one field: {k:?}"),
    }
}

fn fields(s: &Statement) -> &[Field] {
    match &s.kind {
        StatementKind::Select { fields } => fields,
        k => panic!("not a SELECT: {k:?}"),
    }
}

fn d() -> Span {
    Span::default()
}

fn id(name: &str) -> Ident {
    Ident::new(name, d())
}

fn int(value: i64) -> Expr {
    Expr::Int { value, span: d() }
}

fn float(value: f64) -> Expr {
    Expr::Float { value, span: d() }
}

fn string(value: &str) -> Expr {
    Expr::Str {
        value: value.into(),
        span: d(),
    }
}

fn boolean(value: bool) -> Expr {
    Expr::Bool { value, span: d() }
}

fn key(name: &str) -> PathSegment {
    PathSegment::Name(id(name))
}

fn quoted(name: &str) -> PathSegment {
    PathSegment::Quoted(id(name))
}

fn index(index: i64) -> PathSegment {
    PathSegment::Index { index, span: d() }
}

fn path(root: &str, segments: Vec<PathSegment>) -> Expr {
    Expr::Path(Path {
        root: id(root),
        segments,
        span: d(),
    })
}

/// `a` or `a.b.c` (plain keys only).
fn p(dotted: &str) -> Expr {
    let mut parts = dotted.split('.');
    let root = parts.next().unwrap_or_default();
    path(root, parts.map(key).collect())
}

fn bin(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
        span: d(),
    }
}

fn not(operand: Expr) -> Expr {
    Expr::Unary {
        op: UnaryOp::Not,
        operand: Box::new(operand),
        span: d(),
    }
}

fn neg(operand: Expr) -> Expr {
    Expr::Unary {
        op: UnaryOp::Neg,
        operand: Box::new(operand),
        span: d(),
    }
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Call {
        name: id(name),
        args,
        span: d(),
    }
}

fn list(items: Vec<Expr>) -> Expr {
    Expr::List { items, span: d() }
}

fn field(expr: Expr, alias: Option<&str>) -> Field {
    Field::Expr {
        expr,
        alias: alias.map(|a| Alias::name(id(a))),
        span: d(),
    }
}

/// A path alias: `root` then its segments.
fn alias_path(root: &str, segments: Vec<AliasSegment>) -> Alias {
    Alias {
        root: id(root),
        segments,
        span: d(),
    }
}

fn akey(name: &str) -> AliasSegment {
    AliasSegment::Key(id(name))
}

fn aindex(index: i64) -> AliasSegment {
    AliasSegment::Index { index, span: d() }
}

fn append() -> AliasSegment {
    AliasSegment::Append { span: d() }
}

fn topics(s: &Statement) -> Vec<&str> {
    s.from.iter().map(|f| f.topic.as_str()).collect()
}

fn loc(line: usize, column: usize) -> (usize, usize) {
    (line, column)
}

fn at(l: Location) -> (usize, usize) {
    (l.line, l.column)
}

use BinaryOp::*;

// ------------------------------------------------------------------------ EMQX documentation examples

#[test]
fn select_star() {
    let s = ok(r#"SELECT * FROM "t/#""#);
    assert!(matches!(fields(&s), [Field::Star { .. }]));
    assert_eq!(topics(&s), ["t/#"]);
    assert!(s.where_.is_none());
    assert_eq!(round_trip(r#"SELECT * FROM "t/#""#), r#"SELECT * FROM "t/#""#);
}

#[test]
fn select_alias_and_where() {
    let s = ok(r#"SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30"#).without_spans();
    assert_eq!(
        fields(&s),
        [field(p("payload.temp"), Some("t")), field(p("clientid"), None)]
    );
    assert_eq!(topics(&s), ["sensors/+/temp"]);
    assert_eq!(s.where_, Some(bin(Gt, p("t"), int(30))));
}

#[test]
fn select_event() {
    let sql = r#"SELECT clientid, connected_at FROM "$events/client_connected" WHERE username = 'u1'"#;
    let s = ok(sql).without_spans();
    assert_eq!(fields(&s), [field(p("clientid"), None), field(p("connected_at"), None)]);
    assert_eq!(topics(&s), ["$events/client_connected"]);
    assert_eq!(s.where_, Some(bin(Eq, p("username"), string("u1"))));
    assert_eq!(round_trip(sql), sql);
}

#[test]
fn doc_select_examples_round_trip() {
    for sql in [
        r#"SELECT clientid, payload.clientid as myclientid FROM "t/#", "my/other/topic""#,
        r#"SELECT peername as ip_port FROM "$events/client_connected" WHERE clientid = 'c1'"#,
        r#"SELECT (upper(clientid) + '_UPPERCASE_LETTERS') as cid FROM "t/#""#,
        r#"SELECT (payload.integer_field + 2) * 2 as num FROM "t/#""#,
        r#"SELECT payload.a.b.c.deep as my_field FROM "t/#""#,
        r#"SELECT * FROM "t/#" WHERE payload.name = "sensor_1" and payload.temprature > 39"#,
        r#"SELECT * FROM "t/a","t/b""#,
        r##"SELECT username FROM "#" WHERE username='Steven'"##,
        r#"SELECT clientid FROM "$events/session_subscribed" WHERE topic = 'my/topic' and qos = 1"#,
        r#"SELECT clientid FROM "$events/session_subscribed" WHERE topic =~ 't/#' and qos = 1"#,
        r#"SELECT pub_props.'User-Property'.foo as foo FROM "t/#""#,
        r#"SELECT * FROM "topic1", "topic2" WHERE topic1.id = topic2.id"#,
    ] {
        round_trip(sql);
    }
}

#[test]
fn foreach_with_alias_do_incase() {
    let s = ok(r#"FOREACH payload.sensors as e DO e.name, e.idx INCASE e.idx >= 1 FROM "t/#""#).without_spans();
    assert_eq!(s.item_name(), Some("e"));
    assert_eq!(
        s.kind,
        StatementKind::Foreach {
            bindings: vec![],
            expr: p("payload.sensors"),
            alias: Some(Alias::name(id("e"))),
            do_fields: vec![field(p("e.name"), None), field(p("e.idx"), None)],
            incase: Some(bin(Ge, p("e.idx"), int(1))),
        }
    );
    assert_eq!(topics(&s), ["t/#"]);
}

#[test]
fn foreach_doc_examples() {
    let sql = "FOREACH\n    payload.sensors as sensor\nDO\n    timestamp,\n    clientid,\n    upper(sensor.name) as name,\n    sensor.idx as idx\nINCASE\n    sensor.idx >= 1\nFROM \"t/#\"";
    let s = ok(sql);
    let StatementKind::Foreach { do_fields, .. } = &s.without_spans().kind else {
        panic!("not FOREACH")
    };
    assert_eq!(do_fields[2], field(call("upper", vec![p("sensor.name")]), Some("name")));
    round_trip(sql);

    let bare = ok("FOREACH\n    payload.sensors\nFROM \"t/#\"");
    assert_eq!(bare.item_name(), Some(DEFAULT_ITEM_NAME));
    assert_eq!(DEFAULT_ITEM_NAME, "item");
    assert!(
        matches!(&bare.kind, StatementKind::Foreach { alias: None, do_fields, incase: None, .. } if do_fields.is_empty())
    );

    for sql in [
        "FOREACH jq('.', payload) as it\nDO it.field_1, it.field_2\nFROM \"t/#\"",
        "FOREACH jq('[.field_1, .field_2]', payload)\nDO item as value\nFROM \"t/#\"",
        "FOREACH payload.sensors\nDO clientid, item.name as name, item.idx as idx\nINCASE item.idx >= 1\nFROM \"t/#\"",
        "FOREACH payload.sensors as s\nDO nth(2, tokens(clientid,'_')) as clientid, s.name as name, s.idx as idx\nINCASE s.idx >= 1\nFROM \"t/#\"",
        "FOREACH payload.sensors s INCASE s.idx > 0 FROM \"t/#\" WHERE clientid = 'c1'",
        "FOREACH payload.sensors DO * FROM \"t/#\"",
    ] {
        round_trip(sql);
    }
    assert_eq!(ok(r#"SELECT a FROM "t""#).item_name(), None);
}

#[test]
fn case_forms() {
    let searched = expr("CASE WHEN payload.x < 0 THEN 0\n WHEN payload.x > 7 THEN 7\n ELSE payload.x\n END");
    assert_eq!(
        searched,
        Expr::Case {
            operand: None,
            whens: vec![
                (bin(Lt, p("payload.x"), int(0)), int(0)),
                (bin(Gt, p("payload.x"), int(7)), int(7))
            ],
            else_: Some(Box::new(p("payload.x"))),
            span: d(),
        }
    );
    let simple = expr("case payload.x when 1 then 'one' when 2 then 'two' end");
    assert_eq!(
        simple,
        Expr::Case {
            operand: Some(Box::new(p("payload.x"))),
            whens: vec![(int(1), string("one")), (int(2), string("two"))],
            else_: None,
            span: d(),
        }
    );
    let s = ok(r#"SELECT CASE WHEN a THEN 1 ELSE 2 END AS x, CASE WHEN b THEN 1 END y FROM "t""#).without_spans();
    assert!(matches!(&fields(&s)[0], Field::Expr { alias: Some(a), .. } if a.as_name() == Some("x")));
    assert!(matches!(&fields(&s)[1], Field::Expr { alias: Some(a), .. } if a.as_name() == Some("y")));
    // CASE nests in arguments and in arithmetic.
    round_trip(r#"SELECT str(CASE WHEN a THEN 1 ELSE CASE b WHEN 1 THEN 2 END END) + 'x' FROM "t""#);
    assert_eq!(err(r#"SELECT CASE END FROM "t""#).expected, ["WHEN", "an expression"]);
    assert_eq!(
        err(r#"SELECT CASE WHEN a THEN 1 FROM "t""#).message,
        "expected WHEN, ELSE, END, IN, an operator, AND or OR, found `FROM`"
    );
}

#[test]
fn in_and_not_in() {
    assert_eq!(
        expr("payload.x IN (1, 'a', b)"),
        Expr::In {
            expr: Box::new(p("payload.x")),
            list: vec![int(1), string("a"), p("b")],
            negated: false,
            span: d()
        }
    );
    assert_eq!(
        expr("x not in (1)"),
        Expr::In {
            expr: Box::new(p("x")),
            list: vec![int(1)],
            negated: true,
            span: d()
        }
    );
    // NOT binds looser than IN.
    assert_eq!(
        expr("NOT x IN (1)"),
        not(Expr::In {
            expr: Box::new(p("x")),
            list: vec![int(1)],
            negated: false,
            span: d()
        })
    );
    assert_eq!(
        expr("x + 1 IN (2)"),
        Expr::In {
            expr: Box::new(bin(Add, p("x"), int(1))),
            list: vec![int(2)],
            negated: false,
            span: d()
        }
    );
    assert!(err(r#"SELECT x IN () FROM "t""#)
        .expected
        .contains(&"an expression".to_owned()));
    assert_eq!(err(r#"SELECT x IN 1 FROM "t""#).expected, ["'('"]);
}

#[test]
fn comparisons() {
    for (text, op) in [
        ("=", Eq),
        ("!=", Ne),
        ("<>", Ne),
        ("<", Lt),
        ("<=", Le),
        (">", Gt),
        (">=", Ge),
        ("=~", TopicMatch),
    ] {
        assert_eq!(expr(&format!("a {text} b")), bin(op, p("a"), p("b")), "{text}");
        assert_eq!(expr(&format!("a{text}b")), bin(op, p("a"), p("b")), "{text}");
    }
    assert_eq!(expr("topic =~ 't/#'"), bin(TopicMatch, p("topic"), string("t/#")));
    // Non-associative, as in EMQX.
    assert_eq!(err(r#"SELECT a = b = c FROM "t""#).span.start.column, 14);
    assert_eq!(expr("(a = b) = c"), bin(Eq, bin(Eq, p("a"), p("b")), p("c")));
}

#[test]
fn precedence() {
    assert_eq!(expr("1 + 2 * 3"), bin(Add, int(1), bin(Mul, int(2), int(3))));
    assert_eq!(expr("(1 + 2) * 3"), bin(Mul, bin(Add, int(1), int(2)), int(3)));
    assert_eq!(expr("1 - 2 - 3"), bin(Sub, bin(Sub, int(1), int(2)), int(3)));
    assert_eq!(expr("1 - (2 - 3)"), bin(Sub, int(1), bin(Sub, int(2), int(3))));
    assert_eq!(
        expr("a / b div c mod d * e"),
        bin(
            Mul,
            bin(Mod, bin(IntDiv, bin(Div, p("a"), p("b")), p("c")), p("d")),
            p("e")
        )
    );
    assert_eq!(
        expr("NOT a = b AND c OR d"),
        bin(Or, bin(And, not(bin(Eq, p("a"), p("b"))), p("c")), p("d"))
    );
    assert_eq!(expr("a OR b AND c"), bin(Or, p("a"), bin(And, p("b"), p("c"))));
    assert_eq!(
        expr("a + 1 > b * 2"),
        bin(Gt, bin(Add, p("a"), int(1)), bin(Mul, p("b"), int(2)))
    );
    assert_eq!(expr("NOT NOT a"), not(not(p("a"))));
    assert_eq!(expr("-a * b"), bin(Mul, neg(p("a")), p("b")));
    assert_eq!(expr("-a.b[1]"), neg(path("a", vec![key("b"), index(1)])));
    assert_eq!(expr("+a"), p("a"));
    // NOT is not an arithmetic operand.
    assert_eq!(err(r#"SELECT 1 + NOT a FROM "t""#).span.start.column, 12);
    assert_eq!(expr("1 + (NOT a)"), bin(Add, int(1), not(p("a"))));
}

#[test]
fn div_and_mod() {
    assert_eq!(expr("7 div 2"), bin(IntDiv, int(7), int(2)));
    assert_eq!(
        expr("7 DIV 2 + 7 Mod 2"),
        bin(Add, bin(IntDiv, int(7), int(2)), bin(Mod, int(7), int(2)))
    );
    // Also functions, as in EMQX.
    assert_eq!(expr("div(7, 2)"), call("div", vec![int(7), int(2)]));
    assert_eq!(
        expr("mod(7, 2) mod 2"),
        bin(Mod, call("mod", vec![int(7), int(2)]), int(2))
    );
    assert_eq!(expr("a div(2)"), bin(IntDiv, p("a"), int(2)));
    assert!(parse(r#"SELECT div FROM "t""#).is_err());
    assert_eq!(expr("divide"), p("divide"));
}

#[test]
fn negative_numbers() {
    assert_eq!(expr("-1"), int(-1));
    assert_eq!(expr("- 1"), neg(int(1)));
    assert_eq!(expr("-(1)"), neg(int(1)));
    assert_eq!(expr("2 - -1"), bin(Sub, int(2), int(-1)));
    assert_eq!(expr("2-1"), bin(Sub, int(2), int(1)));
    assert_eq!(expr("a -1"), bin(Sub, p("a"), int(1)));
    assert_eq!(expr("2 * -3"), bin(Mul, int(2), int(-3)));
    assert_eq!(expr("-2.5e3"), float(-2500.0));
    assert_eq!(expr("- -x"), neg(neg(p("x"))));
    assert_eq!(expr("-9223372036854775808"), int(i64::MIN));
    assert_eq!(expr("9223372036854775807"), int(i64::MAX));
    // `--` is a comment, so `2--1` is just `2`.
    assert_eq!(
        fields(&ok("SELECT 2--1\nFROM \"t\"").without_spans()),
        [field(int(2), None)]
    );
}

#[test]
fn literals() {
    assert_eq!(expr("1.5"), float(1.5));
    assert_eq!(expr("1e3"), float(1000.0));
    assert_eq!(expr("1E-2"), float(0.01));
    assert_eq!(expr("0.000001"), float(0.000001));
    assert_eq!(expr("'it''s'"), string("it's"));
    assert_eq!(expr("''"), string(""));
    assert_eq!(expr("'a -- not a comment'"), string("a -- not a comment"));
    assert_eq!(expr("'héllo\nworld'"), string("héllo\nworld"));
    assert_eq!(expr("'\\n'"), string("\\n"));
    assert_eq!(expr("true"), boolean(true));
    assert_eq!(expr("FALSE"), boolean(false));
    assert_eq!(expr("True AND false"), bin(And, boolean(true), boolean(false)));
    // Quoted, `true` is a name.
    assert_eq!(expr("\"true\""), p("true"));
    assert_eq!(expr("[1, 'a', x]"), list(vec![int(1), string("a"), p("x")]));
    assert_eq!(expr("[]"), list(vec![]));
    assert_eq!(
        expr("[[1], [payload.a, f(x)], 1 + 2]"),
        list(vec![
            list(vec![int(1)]),
            list(vec![p("payload.a"), call("f", vec![p("x")])]),
            bin(Add, int(1), int(2)),
        ])
    );
    assert_eq!(
        expr("[1..3]"),
        Expr::Range {
            start: 1,
            end: 3,
            span: d()
        }
    );
    assert_eq!(
        expr("[-3..-1]"),
        Expr::Range {
            start: -3,
            end: -1,
            span: d()
        }
    );
}

#[test]
fn number_errors() {
    let e = err(r#"SELECT 9223372036854775808 FROM "t""#);
    assert_eq!(e.kind, ParseErrorKind::NumberOutOfRange);
    assert_eq!((at(e.span.start), at(e.span.end)), (loc(1, 8), loc(1, 27)));
    assert_eq!(
        err(r#"SELECT a[99999999999999999999] FROM "t""#).kind,
        ParseErrorKind::NumberOutOfRange
    );
    assert_eq!(err(r#"SELECT 1e999 FROM "t""#).kind, ParseErrorKind::NumberOutOfRange);
    // No hex literals: EMQX reads `0x1F` as `0` aliased `x1F`; we refuse it rather than guess.
    let hex = err(r#"SELECT 0x1F FROM "t""#);
    assert_eq!(hex.kind, ParseErrorKind::Syntax);
    assert_eq!(hex.message, "expected a field or '*', found `0x1F`");
    assert!(parse(r#"SELECT 1abc FROM "t""#).is_err());
    assert!(parse(r#"SELECT 1e FROM "t""#).is_err());
}

#[test]
fn paths() {
    assert_eq!(expr("payload.a.b"), p("payload.a.b"));
    assert_eq!(
        expr("payload.'User-Property'.a"),
        path("payload", vec![quoted("User-Property"), key("a")])
    );
    assert_eq!(expr("payload.\"x y\""), path("payload", vec![key("x y")]));
    assert_eq!(expr("payload . a"), p("payload.a"));
    assert_eq!(expr("a[1]"), path("a", vec![index(1)]));
    assert_eq!(expr("a[-1]"), path("a", vec![index(-1)]));
    assert_eq!(expr("a[ 0 ]"), path("a", vec![index(0)]));
    assert_eq!(
        expr("a[1..3]"),
        path(
            "a",
            vec![PathSegment::Range {
                start: 1,
                end: 3,
                span: d()
            }]
        )
    );
    assert_eq!(
        expr("a[2..-1]"),
        path(
            "a",
            vec![PathSegment::Range {
                start: 2,
                end: -1,
                span: d()
            }]
        )
    );
    assert_eq!(
        expr("payload.list[1].name[-1][2]"),
        path("payload", vec![key("list"), index(1), key("name"), index(-1), index(2)])
    );
    // Numeric keys (`a.1`) and keywords after a dot are keys.
    assert_eq!(expr("a.1.b"), path("a", vec![key("1"), key("b")]));
    assert_eq!(expr("payload.from.end"), path("payload", vec![key("from"), key("end")]));
    assert_eq!(expr("\"my var\".x"), path("my var", vec![key("x")]));
    assert_eq!(expr("a$b@c~d"), p("a$b@c~d"));
    assert_eq!(expr("_private"), p("_private"));
    // rulesql's `index_ref`: `[+1]`, and an index read from a name or a path.
    assert_eq!(expr("a[+1]"), path("a", vec![index(1)]));
    let dynamic = |index: Expr| {
        let Expr::Path(index) = index else { panic!("not a path") };
        PathSegment::Dynamic {
            index: Box::new(index),
            span: d(),
        }
    };
    assert_eq!(expr("a[e]"), path("a", vec![dynamic(p("e"))]));
    assert_eq!(
        expr("payload.list[payload.i].name"),
        path("payload", vec![key("list"), dynamic(p("payload.i")), key("name")])
    );
    assert_eq!(
        expr("a[1][2].b[c[1]]"),
        path(
            "a",
            vec![index(1), index(2), key("b"), dynamic(path("c", vec![index(1)]))]
        )
    );
    assert_eq!(expr("a [ e . f ]").to_string(), "a[e.f]");
    // Only names and paths: no expressions, no literals other than integers.
    assert!(parse(r#"SELECT a[1 + 1] FROM "t""#).is_err());
    assert!(parse(r#"SELECT a['k'] FROM "t""#).is_err());
    assert!(parse(r#"SELECT a[f(x)] FROM "t""#).is_err());
}

#[test]
fn calls() {
    assert_eq!(expr("now_timestamp()"), call("now_timestamp", vec![]));
    assert_eq!(expr("f(a, b)"), call("f", vec![p("a"), p("b")]));
    assert_eq!(
        expr("f(a > 1, g(h(x)), CASE WHEN a THEN b END)").to_string(),
        "f(a > 1, g(h(x)), CASE WHEN a THEN b END)"
    );
    assert_eq!(
        expr("upper(clientid) + '_x'"),
        bin(Add, call("upper", vec![p("clientid")]), string("_x"))
    );
    let s = ok("SELECT\n  lower( x ) FROM \"t\"");
    let [Field::Expr {
        expr: Expr::Call { name, span, .. },
        ..
    }] = fields(&s)
    else {
        panic!("not a call")
    };
    assert_eq!(
        (name.name.as_str(), at(name.span.start), at(name.span.end)),
        ("lower", loc(2, 3), loc(2, 8))
    );
    assert_eq!((at(span.start), at(span.end)), (loc(2, 3), loc(2, 13)));
}

#[test]
fn aliases() {
    let s = ok(r#"SELECT payload.t AS t, payload.h h, x as "my alias", 1 + 2 AS three FROM "t""#).without_spans();
    assert_eq!(
        fields(&s),
        [
            field(p("payload.t"), Some("t")),
            field(p("payload.h"), Some("h")),
            field(p("x"), Some("my alias")),
            field(bin(Add, int(1), int(2)), Some("three")),
        ]
    );
    assert_eq!(
        round_trip(r#"SELECT payload.t t, x "from" FROM "t""#),
        r#"SELECT payload.t AS t, x AS "from" FROM "t""#
    );
    // A keyword cannot be a bare alias.
    assert_eq!(err(r#"SELECT a AS FROM "t""#).expected, ["a name"]);
}

#[test]
fn path_aliases() {
    // EMQX's rulesql `AS name_or_path_ref`: emqx_rule_engine_SUITE's t_sqlselect_1 (`as
    // p.answer`, `as p.jsonlike.f`), t_sqlparse_array_index_2/3/4 (`as c[-0]`, `as c[0]`,
    // `as b.c`, `as payload.x[2].y`) and rulesql's maps_put tests (`e.f as c.d[1]`).
    let s = ok(r#"SELECT e AS c.d, e.f as c.d[1], 1 as c[-0], 2 c[0], 3 AS a.'b-c'."d e".1, 4 AS x[-2] FROM "t""#)
        .without_spans();
    let aliased = |expr: Expr, alias: Alias| Field::Expr {
        expr,
        alias: Some(alias),
        span: d(),
    };
    assert_eq!(
        fields(&s),
        [
            aliased(p("e"), alias_path("c", vec![akey("d")])),
            aliased(p("e.f"), alias_path("c", vec![akey("d"), aindex(1)])),
            aliased(int(1), alias_path("c", vec![append()])),
            aliased(int(2), alias_path("c", vec![aindex(0)])),
            aliased(int(3), alias_path("a", vec![akey("b-c"), akey("d e"), akey("1")])),
            aliased(int(4), alias_path("x", vec![aindex(-2)])),
        ]
    );
    assert_eq!(
        round_trip(r#"SELECT 0 as payload.x[2].y, 1 c[-0], 2 AS c[0], 3 AS a.'b-c'.from.1 FROM "t""#),
        r#"SELECT 0 AS payload.x[2].y, 1 AS c[-0], 2 AS c[0], 3 AS a."b-c".from."1" FROM "t""#
    );
    // The alias's span covers the whole path.
    let s = ok(r#"SELECT 1 AS a.b[2] FROM "t""#);
    let [Field::Expr { alias: Some(a), .. }] = fields(&s) else {
        panic!("no alias")
    };
    assert_eq!((at(a.span.start), at(a.span.end)), (loc(1, 13), loc(1, 19)));
    assert_eq!(a.as_name(), None);
    assert_eq!(a.to_string(), "a.b[2]");
    // CASE takes a path alias too.
    let s = ok(r#"SELECT CASE WHEN a THEN 1 END AS x.y FROM "t""#).without_spans();
    assert!(matches!(&fields(&s)[0], Field::Expr { alias: Some(a), .. } if a.to_string() == "x.y"));
    // Not a range, not an expression index, nothing after a dot but a key.
    assert_eq!(
        err(r#"SELECT 1 AS a[1..2] FROM "t""#).message,
        "expected ']', found `..`"
    );
    assert!(parse(r#"SELECT 1 AS a[b] FROM "t""#).is_err());
    assert_eq!(err(r#"SELECT 1 AS a., b FROM "t""#).expected, ["a name", "a key"]);
    // After a dot a keyword is a key, in aliases as in paths.
    assert_eq!(
        err(r#"SELECT 1 AS a. FROM "t""#).message,
        "expected FROM or ',', found `\"t\"`"
    );
    assert_eq!(err(r#"SELECT 1 AS a.[1] FROM "t""#).expected, ["a name", "a key"]);
    assert_eq!(
        err(r#"SELECT 1 AS a[99999999999999999999] FROM "t""#).kind,
        ParseErrorKind::NumberOutOfRange
    );
}

#[test]
fn foreach_bindings() {
    // "Multiple expressions can be placed in the FOREACH clause as long as the last expression
    // specifies the array to be traversed" (rule-sql-syntax.md); emqx_rule_engine_SUITE's
    // t_sqlparse_foreach_7/8.
    let sql = "foreach json_decode(payload) as p, p.sensors as s, s.collection as c, c.info as info \
               do info.cmd as msg_type, info.name as name incase is_not_null(info.cmd) from \"t/#\" \
               where s.page = '2'";
    let s = ok(sql).without_spans();
    let StatementKind::Foreach {
        bindings,
        expr,
        alias,
        do_fields,
        incase,
    } = &s.kind
    else {
        panic!("not FOREACH")
    };
    assert_eq!(
        bindings,
        &[
            field(call("json_decode", vec![p("payload")]), Some("p")),
            field(p("p.sensors"), Some("s")),
            field(p("s.collection"), Some("c")),
        ]
    );
    assert_eq!(expr, &p("c.info"));
    assert_eq!(alias.as_ref().and_then(Alias::as_name), Some("info"));
    assert_eq!(s.item_name(), Some("info"));
    assert_eq!(do_fields.len(), 2);
    assert!(incase.is_some());
    round_trip(sql);
    // Bindings need no alias; the last field names the element.
    let s = ok(r#"FOREACH payload.a, payload.b FROM "t""#).without_spans();
    assert!(matches!(&s.kind, StatementKind::Foreach { bindings, alias: None, .. } if bindings.len() == 1));
    assert_eq!(s.item_name(), Some(DEFAULT_ITEM_NAME));
    assert_eq!(
        round_trip(r#"foreach payload.d d, d.sensors s from "t""#),
        r#"FOREACH payload.d AS d, d.sensors AS s FROM "t""#
    );
    // `*` is no FOREACH field, and the list cannot end in a comma.
    assert_eq!(err(r#"FOREACH *, a FROM "t""#).expected, ["an expression"]);
    assert_eq!(err(r#"FOREACH a, FROM "t""#).expected, ["an expression"]);
    assert_eq!(
        err(r#"FOREACH a b c FROM "t""#).message,
        "expected FROM, DO, INCASE or ',', found `c`"
    );
}

#[test]
fn keywords_are_case_insensitive() {
    let a = ok("select a as b from \"t\" where x and y or not z in (1)").without_spans();
    let b = ok("SELECT a AS b FROM \"t\" WHERE x AND y OR NOT z IN (1)").without_spans();
    let c = ok("SeLeCt a aS b FrOm \"t\" wHeRe x AnD y oR nOt z In (1)").without_spans();
    assert_eq!(a, b);
    assert_eq!(b, c);
    let f = ok("foreach x AS i do i incase i FROM \"t\"").without_spans();
    assert_eq!(f, ok("FOREACH x as i DO i INCASE i from \"t\"").without_spans());
    round_trip("select case when a then 1 else 2 end from \"t\"");
    // A keyword prefix does not make a keyword.
    assert_eq!(expr("selected + fromage + ending + android + order + notes + info"), {
        let names = ["selected", "fromage", "ending", "android", "order", "notes", "info"];
        names[1..].iter().fold(p(names[0]), |acc, n| bin(Add, acc, p(n)))
    });
}

#[test]
fn comments() {
    let sql =
        "-- my rule\nSELECT a, -- first\n  b -- second\nFROM \"t\" -- the topic\nWHERE a > 1 -- no newline at the end";
    let s = ok(sql).without_spans();
    assert_eq!(fields(&s), [field(p("a"), None), field(p("b"), None)]);
    assert_eq!(s.where_, Some(bin(Gt, p("a"), int(1))));
    assert_eq!(expr("a --comment\n + b"), bin(Add, p("a"), p("b")));
}

#[test]
fn from_sources() {
    let sql = r#"SELECT * FROM "sensors/+/temp", "$events/client_connected","$events/client/connected" , "$bridges/mqtt:my_bridge""#;
    let s = ok(sql);
    assert_eq!(
        topics(&s),
        [
            "sensors/+/temp",
            "$events/client_connected",
            "$events/client/connected",
            "$bridges/mqtt:my_bridge"
        ]
    );
    let spans: Vec<_> = s.from.iter().map(|f| (at(f.span.start), at(f.span.end))).collect();
    assert_eq!(spans[0], (loc(1, 15), loc(1, 31)));
    assert_eq!(spans[1], (loc(1, 33), loc(1, 59)));
    assert_eq!(
        round_trip(sql),
        r#"SELECT * FROM "sensors/+/temp", "$events/client_connected", "$events/client/connected", "$bridges/mqtt:my_bridge""#
    );
    assert_eq!(topics(&ok(r#"SELECT * FROM "a""b""#)), ["a\"b"]);
    assert!(parse(r#"SELECT * FROM "a","#).is_err());
    assert!(parse(r#"SELECT * FROM"#).is_err());
}

#[test]
fn from_single_quoted_and_bare_topics() {
    // EMQX accepts topics in single quotes (emqx_rule_engine_SUITE's
    // t_sqlparse_both_string_types_in_from; the docs: "enclosed in double quotes or single
    // quotes") and bare words (`select * from t` in emqx_rule_engine_api_2_SUITE).
    let s = ok(r#"select clientid, topic as tp from 't/tt', "$events/client_connected" "#);
    assert_eq!(topics(&s), ["t/tt", "$events/client_connected"]);
    assert_eq!(
        (at(s.from[0].span.start), at(s.from[0].span.end)),
        (loc(1, 35), loc(1, 41))
    );
    let s = ok("foreach payload.sensors from 't/#', \"$events/client_connected\" ");
    assert_eq!(topics(&s), ["t/#", "$events/client_connected"]);
    assert_eq!(topics(&ok("SELECT * FROM 'it''s/#'")), ["it's/#"]);
    let s = ok("select * from t, topic_2 where x = 1");
    assert_eq!(topics(&s), ["t", "topic_2"]);
    assert_eq!(
        (at(s.from[1].span.start), at(s.from[1].span.end)),
        (loc(1, 18), loc(1, 25))
    );
    // Printed back in double quotes.
    assert_eq!(
        round_trip("SELECT * FROM 't/#', t, \"a\""),
        r#"SELECT * FROM "t/#", "t", "a""#
    );
    // A keyword is not a topic; a bare word cannot hold a `/`.
    let e = err("SELECT * FROM where");
    assert_eq!(e.message, "expected a topic filter in quotes, found `where`");
    assert_eq!(at(e.span.start), loc(1, 15));
    let e = err("SELECT * FROM t/a");
    assert_eq!(e.message, "expected WHERE, ',' or end of input, found `/`");
    assert_eq!(at(e.span.start), loc(1, 16));
    let e = err("SELECT * FROM 't/#");
    assert_eq!(
        (e.kind, e.to_string()),
        (
            ParseErrorKind::UnterminatedQuote,
            "1:15: unterminated string: no closing '".to_owned()
        )
    );
}

#[test]
fn whitespace_and_layout() {
    let s = ok("\n\n  SELECT\ta\r\n\tFROM \"t\"  \n");
    assert_eq!((at(s.span.start), at(s.span.end)), (loc(3, 3), loc(4, 10)));
    assert_eq!(fields(&s.without_spans()), [field(p("a"), None)]);
}

// ------------------------------------------------------------------------ spans

#[test]
fn spans_point_at_tokens() {
    let sql = "SELECT payload.temp AS t,\n       a + 1\nFROM \"t\"\nWHERE t > 30";
    let s = ok(sql);
    let [Field::Expr {
        expr: Expr::Path(path),
        alias: Some(alias),
        span,
    }, Field::Expr {
        expr: sum, span: span2, ..
    }] = fields(&s)
    else {
        panic!("unexpected fields")
    };
    assert_eq!((at(span.start), at(span.end)), (loc(1, 8), loc(1, 25)));
    assert_eq!((at(path.span.start), at(path.span.end)), (loc(1, 8), loc(1, 20)));
    assert_eq!(
        (at(path.root.span.start), at(path.root.span.end)),
        (loc(1, 8), loc(1, 15))
    );
    assert_eq!(at(path.segments[0].span().start), loc(1, 16));
    assert_eq!((at(alias.span.start), at(alias.span.end)), (loc(1, 24), loc(1, 25)));
    assert_eq!((at(sum.span().start), at(sum.span().end)), (loc(2, 8), loc(2, 13)));
    assert_eq!((at(span2.start), at(span2.end)), (loc(2, 8), loc(2, 13)));
    let Some(Expr::Binary { left, right, span, .. }) = &s.where_ else {
        panic!("no comparison")
    };
    assert_eq!((at(span.start), at(span.end)), (loc(4, 7), loc(4, 13)));
    assert_eq!(at(left.span().start), loc(4, 7));
    assert_eq!(
        (at(right.span().start), right.span().start.offset),
        (loc(4, 11), sql.len() - 2)
    );
    // Columns count characters, offsets count bytes.
    let s = ok("SELECT 'héé', x FROM \"t\"");
    let loc_x = fields(&s)[1].span().start;
    assert_eq!((loc_x.column, loc_x.offset), (15, 16));
    // Unary and CASE spans cover their keywords.
    let s = ok("SELECT NOT -x FROM \"t\"");
    let Field::Expr { expr: e, .. } = &fields(&s)[0] else {
        panic!("not an expression")
    };
    assert_eq!((at(e.span().start), at(e.span().end)), (loc(1, 8), loc(1, 14)));
    let s = ok("SELECT CASE WHEN a THEN b END  FROM \"t\"");
    let Field::Expr { expr: e, .. } = &fields(&s)[0] else {
        panic!("not an expression")
    };
    assert_eq!((at(e.span().start), at(e.span().end)), (loc(1, 8), loc(1, 30)));
}

// ------------------------------------------------------------------------ errors

#[test]
fn error_missing_fields() {
    let e = err(r#"SELECT FROM "t""#);
    assert_eq!(e.kind, ParseErrorKind::Syntax);
    assert_eq!((at(e.span.start), at(e.span.end)), (loc(1, 8), loc(1, 12)));
    assert_eq!(e.expected, ["a field or '*'"]);
    assert_eq!(e.to_string(), "1:8: expected a field or '*', found `FROM`");
    assert_eq!(
        e.render(r#"SELECT FROM "t""#),
        "1:8: expected a field or '*', found `FROM`\n  |\n1 | SELECT FROM \"t\"\n  |        ^^^^"
    );
}

#[test]
fn error_unterminated_string() {
    let sql = "SELECT a FROM \"t\" WHERE b = 'abc";
    let e = err(sql);
    assert_eq!(e.kind, ParseErrorKind::UnterminatedQuote);
    assert_eq!((at(e.span.start), at(e.span.end)), (loc(1, 29), loc(1, 33)));
    assert_eq!(e.to_string(), "1:29: unterminated string: no closing '");
    assert!(
        e.render(sql).ends_with("\n  |                             ^^^^"),
        "{}",
        e.render(sql)
    );
    let e = err("SELECT a FROM \"t/#");
    assert_eq!(
        (e.kind, at(e.span.start)),
        (ParseErrorKind::UnterminatedQuote, loc(1, 15))
    );
    // An earlier syntax error wins over a later open quote.
    let e = err("SELEC a FROM 't");
    assert_eq!((e.kind, at(e.span.start)), (ParseErrorKind::Syntax, loc(1, 1)));
    assert_eq!(e.expected, ["SELECT or FOREACH"]);
}

#[test]
fn error_missing_from() {
    let e = err("SELECT a WHERE x = 1");
    assert_eq!(at(e.span.start), loc(1, 10));
    assert_eq!(e.expected.first().map(String::as_str), Some("FROM"));
    assert!(e.message.starts_with("expected FROM, "), "{}", e.message);
    assert!(e.message.ends_with(", found `WHERE`"), "{}", e.message);
    let e = err("SELECT a");
    assert_eq!(
        (at(e.span.start), e.span.start.offset, e.span.end.offset),
        (loc(1, 9), 8, 8)
    );
    assert!(e.message.ends_with("found end of input"), "{}", e.message);
    assert_eq!(e.render("SELECT a"), format!("{e}\n  |\n1 | SELECT a\n  |         ^"));
}

#[test]
fn error_on_line_three() {
    let sql = "SELECT\n  a,\n  b c d\nFROM \"t\"";
    let e = err(sql);
    assert_eq!((at(e.span.start), at(e.span.end)), (loc(3, 7), loc(3, 8)));
    assert_eq!(e.render(sql), format!("{e}\n  |\n3 |   b c d\n  |       ^"));
    let sql = "SELECT a\nFROM \"t\"\nWHERE x = = 1";
    let e = err(sql);
    assert_eq!(e.to_string(), "3:11: expected an expression, found `=`");
    // Tabs in the line are kept so the caret lines up.
    let sql = "SELECT a\nFROM \"t\"\n\tWHERE\tx ==";
    let e = err(sql);
    assert!(
        e.render(sql).ends_with("3 | \tWHERE\tx ==\n  | \t     \t   ^"),
        "{}",
        e.render(sql)
    );
}

#[test]
fn error_offset_into_file() {
    // The SQL starts at line 4, column 8 of a rule file.
    let e = err("SELECT FROM \"t\"").offset_by(3, 7);
    assert_eq!((at(e.span.start), at(e.span.end)), (loc(4, 15), loc(4, 19)));
    assert_eq!(e.to_string(), "4:15: expected a field or '*', found `FROM`");
    // The caret still comes from the SQL text.
    assert!(e
        .render("SELECT FROM \"t\"")
        .ends_with("4 | SELECT FROM \"t\"\n  |        ^^^^"));
    let e = err("SELECT a\nFROM \"t\" WHERE").offset_by(3, 7);
    assert_eq!(at(e.span.start), loc(5, 15));
}

#[test]
fn error_other_shapes() {
    assert_eq!(err("").expected, ["SELECT or FOREACH"]);
    assert_eq!(
        err("   -- only a comment").message,
        "expected SELECT or FOREACH, found end of input"
    );
    assert_eq!(err(r#"SELECT a FROM "t" b"#).expected, ["WHERE", "','", "end of input"]);
    assert_eq!(
        err(r#"SELECT a FROM "t" WHERE"#).message,
        "expected an expression, found end of input"
    );
    assert_eq!(
        err(r#"SELECT f(a, FROM "t""#).message,
        "expected an expression, found `FROM`"
    );
    assert!(err(r#"SELECT f(a FROM "t""#).expected.contains(&"')'".to_owned()));
    assert!(err(r#"SELECT [1, 2 FROM "t""#).expected.contains(&"']'".to_owned()));
    assert_eq!(err(r#"FOREACH FROM "t""#).expected, ["an expression"]);
    assert_eq!(err(r#"FOREACH a DO FROM "t""#).expected, ["a field or '*'"]);
    assert_eq!(
        err(r#"SELECT a FROM "t"; "#).message,
        "expected WHERE, ',' or end of input, found `;`"
    );
    assert_eq!(
        err(r#"SELECT * FROM "t" WHERE a = 'x" "#).kind,
        ParseErrorKind::UnterminatedQuote
    );
    // `"ab FROM "` is a name, `t` its alias, and the last quote is never closed.
    let e = err(r#"SELECT "ab FROM "t""#);
    assert_eq!(
        (e.kind, at(e.span.start)),
        (ParseErrorKind::UnterminatedQuote, loc(1, 19))
    );
}

/// Golden syntax errors: the message (with the start of the span) and where the span ends,
/// for each kind of mistake. A change to any message or position shows up here.
#[test]
fn golden_syntax_errors() {
    let cases: &[(&str, &str, (usize, usize))] = &[
        ("SELECT", "1:7: expected a field or '*', found end of input", (1, 7)),
        (
            r#"SELECT FROM "t""#,
            "1:8: expected a field or '*', found `FROM`",
            (1, 12),
        ),
        (
            "SELECT a",
            "1:9: expected FROM, ',', '(', AS, IN, an operator, AND or OR, found end of input",
            (1, 9),
        ),
        (
            "SELECT a FROM",
            "1:14: expected a topic filter in quotes, found end of input",
            (1, 14),
        ),
        (
            r#"SELECT a FROM "t" WHERE"#,
            "1:24: expected an expression, found end of input",
            (1, 24),
        ),
        (
            r#"SELECT a, FROM "t""#,
            "1:11: expected a field or '*', found `FROM`",
            (1, 15),
        ),
        (
            r#"SELECT a b c FROM "t""#,
            "1:12: expected FROM or ',', found `c`",
            (1, 13),
        ),
        (
            r#"SELECT a AS FROM "t""#,
            "1:13: expected a name, found `FROM`",
            (1, 17),
        ),
        (
            r#"SELECT a AS b.[1] FROM "t""#,
            "1:15: expected a name or a key, found `[`",
            (1, 16),
        ),
        (
            r#"SELECT a AS b[1..2] FROM "t""#,
            "1:16: expected ']', found `..`",
            (1, 18),
        ),
        (
            r#"SELECT a AS b[x FROM "t""#,
            "1:15: expected an integer, found `x`",
            (1, 16),
        ),
        (
            "SELECT * FROM where",
            "1:15: expected a topic filter in quotes, found `where`",
            (1, 20),
        ),
        // A bare FROM word is one topic level.
        (
            "SELECT * FROM t/a",
            "1:16: expected WHERE, ',' or end of input, found `/`",
            (1, 17),
        ),
        (
            r#"SELECT * FROM "t","#,
            "1:19: expected a topic filter in quotes, found end of input",
            (1, 19),
        ),
        ("SELECT * FROM 't", "1:15: unterminated string: no closing '", (1, 17)),
        (
            r#"SELECT * FROM "t"#,
            r#"1:15: unterminated quoted name or topic: no closing ""#,
            (1, 17),
        ),
        (
            r#"SELECT 'abc FROM "t""#,
            "1:8: unterminated string: no closing '",
            (1, 21),
        ),
        (
            r#"SELECT "abc FROM t"#,
            r#"1:8: unterminated quoted name or topic: no closing ""#,
            (1, 19),
        ),
        (
            r#"SELECT f(a, FROM "t""#,
            "1:13: expected an expression, found `FROM`",
            (1, 17),
        ),
        (
            r#"SELECT f(a FROM "t""#,
            "1:12: expected ',', ')', '(', IN, an operator, AND or OR, found `FROM`",
            (1, 16),
        ),
        (
            r#"SELECT [1, 2 FROM "t""#,
            "1:14: expected ',', ']', IN, an operator, AND or OR, found `FROM`",
            (1, 18),
        ),
        (
            r#"SELECT (1 + 2 FROM "t""#,
            "1:15: expected ')', IN, an operator, AND or OR, found `FROM`",
            (1, 19),
        ),
        (
            r#"SELECT 1 + FROM "t""#,
            "1:12: expected an expression, found `FROM`",
            (1, 16),
        ),
        (
            r#"SELECT a = b = c FROM "t""#,
            "1:14: expected FROM, ',', '(', AS, an operator, AND or OR, found `=`",
            (1, 15),
        ),
        (
            r#"SELECT a == b FROM "t""#,
            "1:11: expected an expression, found `=`",
            (1, 12),
        ),
        (
            r#"SELECT 1 + NOT a FROM "t""#,
            "1:12: expected an expression, found `NOT`",
            (1, 15),
        ),
        (r#"SELECT x IN 1 FROM "t""#, "1:13: expected '(', found `1`", (1, 14)),
        (
            r#"SELECT x IN () FROM "t""#,
            "1:14: expected an expression, found `)`",
            (1, 15),
        ),
        (r#"SELECT x NOT 1 FROM "t""#, "1:14: expected IN, found `1`", (1, 15)),
        (
            r#"SELECT CASE END FROM "t""#,
            "1:13: expected WHEN or an expression, found `END`",
            (1, 16),
        ),
        (
            r#"SELECT CASE WHEN a THEN 1 FROM "t""#,
            "1:27: expected WHEN, ELSE, END, IN, an operator, AND or OR, found `FROM`",
            (1, 31),
        ),
        (
            r#"SELECT CASE WHEN a 1 END FROM "t""#,
            "1:20: expected THEN, '(', IN, an operator, AND or OR, found `1`",
            (1, 21),
        ),
        // After a dot a keyword is a key and `"t"` a quoted alias: `a.b.FROM AS "t"`.
        (
            r#"SELECT a.b. FROM "t""#,
            "1:21: expected FROM or ',', found end of input",
            (1, 21),
        ),
        (
            r#"SELECT a[ FROM "t""#,
            "1:11: expected an expression or an integer, found `FROM`",
            (1, 15),
        ),
        (r#"SELECT a[1 + 1] FROM "t""#, "1:12: expected ']', found `+`", (1, 13)),
        (
            r#"SELECT 9223372036854775808 FROM "t""#,
            "1:8: integer 9223372036854775808 does not fit in 64 bits",
            (1, 27),
        ),
        (
            r#"SELECT 1e999 FROM "t""#,
            "1:8: number 1e999 is out of range for a float",
            (1, 13),
        ),
        // No hex literals (EMQX reads `0x1F` as `0` aliased `x1F`).
        (
            r#"SELECT 0x1F FROM "t""#,
            "1:8: expected a field or '*', found `0x1F`",
            (1, 12),
        ),
        (
            r#"SELECT a FROM "t"; DROP"#,
            "1:18: expected WHERE, ',' or end of input, found `;`",
            (1, 19),
        ),
        (
            r#"SELECT a FROM "t" WHERE b = 'x' AND"#,
            "1:36: expected an expression, found end of input",
            (1, 36),
        ),
        (
            r#"FOREACH FROM "t""#,
            "1:9: expected an expression, found `FROM`",
            (1, 13),
        ),
        (
            r#"FOREACH a, FROM "t""#,
            "1:12: expected an expression, found `FROM`",
            (1, 16),
        ),
        (
            r#"FOREACH a DO FROM "t""#,
            "1:14: expected a field or '*', found `FROM`",
            (1, 18),
        ),
        (
            r#"FOREACH a INCASE FROM "t""#,
            "1:18: expected an expression, found `FROM`",
            (1, 22),
        ),
        (
            r#"FOREACH a b c FROM "t""#,
            "1:13: expected FROM, DO, INCASE or ',', found `c`",
            (1, 14),
        ),
        (
            r#"FOREACH *, a FROM "t""#,
            "1:9: expected an expression, found `*`",
            (1, 10),
        ),
        (
            r#"SELEC a FROM "t""#,
            "1:1: expected SELECT or FOREACH, found `SELEC`",
            (1, 6),
        ),
        (
            "UPDATE t SET a = 1",
            "1:1: expected SELECT or FOREACH, found `UPDATE`",
            (1, 7),
        ),
        (
            r#"SELECT a FROM "t" WHERE a = 1 GROUP BY a"#,
            "1:31: expected an operator, AND, OR or end of input, found `GROUP`",
            (1, 36),
        ),
        (
            concat!("SELECT a\n", "FROM \"t\"\n", "WHERE x = = 1"),
            "3:11: expected an expression, found `=`",
            (3, 12),
        ),
    ];
    let mut wrong = Vec::new();
    for (sql, message, end) in cases {
        let e = err(sql);
        let got = (e.to_string(), at(e.span.end));
        if got != (message.to_string(), *end) {
            wrong.push(format!("{sql:?}\n  want {message:?} ending at {end:?}\n  got  {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Rendered with the line and a caret under the span.
    let sql = "SELECT a,\n  b AS c[1..2]\nFROM \"t\"";
    assert_eq!(
        err(sql).render(sql),
        "2:11: expected ']', found `..`\n  |\n2 |   b AS c[1..2]\n  |           ^^"
    );
    let sql = "FOREACH payload.a AS x,\n        x.b AS y,\nFROM 't/#'";
    assert_eq!(
        err(sql).render(sql),
        "3:1: expected an expression, found `FROM`\n  |\n3 | FROM 't/#'\n  | ^^^^"
    );
}

#[test]
fn nesting_limits() {
    let nested = |n: usize| format!("SELECT {}1{} FROM \"t\"", "(".repeat(n), ")".repeat(n));
    assert_eq!(
        expr(&format!("{}1{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING))),
        int(1)
    );
    let e = err(&nested(MAX_NESTING + 1));
    assert_eq!(
        (e.kind, e.span.start.column),
        (ParseErrorKind::TooDeep, 8 + MAX_NESTING)
    );
    assert_eq!(err(&"(".repeat(5_000)).kind, ParseErrorKind::TooDeep);
    assert_eq!(
        err(&format!("SELECT {} FROM \"t\"", "[".repeat(5_000))).kind,
        ParseErrorKind::TooDeep
    );
    let cases = format!(
        "SELECT {}1{} FROM \"t\"",
        "CASE WHEN a THEN ".repeat(MAX_NESTING + 1),
        " END".repeat(MAX_NESTING + 1)
    );
    assert_eq!(err(&cases).kind, ParseErrorKind::TooDeep);
    let half = MAX_NESTING / 2;
    let cases = format!(
        "SELECT {}1{} FROM \"t\"",
        "CASE WHEN a THEN [".repeat(half),
        "] END".repeat(half)
    );
    ok(&cases);
    // Chains are as deep as they are long.
    let chain = |op: &str, n: usize| format!("SELECT 1{} FROM \"t\"", format!(" {op} 1").repeat(n));
    ok(&chain("+", MAX_EXPR_DEPTH - 10));
    for op in ["+", "*", "AND", "OR", "-"] {
        assert_eq!(err(&chain(op, 5_000)).kind, ParseErrorKind::TooDeep, "{op}");
    }
    assert_eq!(
        err(&format!("SELECT {}x FROM \"t\"", "NOT ".repeat(5_000))).kind,
        ParseErrorKind::TooDeep
    );
    assert_eq!(
        err(&format!("SELECT {}x FROM \"t\"", "- ".repeat(5_000))).kind,
        ParseErrorKind::TooDeep
    );
    let wide: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    ok(&format!(
        "SELECT x IN ({}), [{}] FROM \"t\"",
        wide.join(", "),
        wide.join(", ")
    ));
}

// ------------------------------------------------------------------------ Display

#[test]
fn display_adds_only_needed_parentheses() {
    let cases = [
        ("(a + b) * c", "(a + b) * c"),
        ("a + (b * c)", "a + b * c"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("(NOT a) = b", "(NOT a) = b"),
        ("NOT (a = b)", "NOT a = b"),
        ("(a OR b) AND c", "(a OR b) AND c"),
        ("-(1)", "-(1)"),
        ("-(-1)", "-(-1)"),
        ("-(a + b)", "-(a + b)"),
        ("- - a", "-(-a)"),
        ("(a IN (1)) = true", "(a IN (1)) = true"),
        ("a <> b", "a != b"),
        ("1.0", "1.0"),
        ("1e300", "1e300"),
        ("'it''s'", "'it''s'"),
        ("payload.\"a b\".'c''d'.e[1][2..3]", "payload.\"a b\".'c''d'.e[1][2..3]"),
        ("\"select\".from", "\"select\".from"),
        ("a.1", "a.\"1\""),
        ("DIV(4, 2)", "DIV(4, 2)"),
        ("\"my func\"(1)", "\"my func\"(1)"),
        ("case x when 1 then 2 end", "CASE x WHEN 1 THEN 2 END"),
        ("x not in (1, 2)", "x NOT IN (1, 2)"),
    ];
    for (input, printed) in cases {
        let e = expr(input);
        assert_eq!(e.to_string(), printed, "{input}");
    }
    assert_eq!(
        round_trip("foreach payload.s s do s.a a incase s.a > 1 from \"t/#\", \"x\" where true"),
        "FOREACH payload.s AS s DO s.a AS a INCASE s.a > 1 FROM \"t/#\", \"x\" WHERE true"
    );
}

// ------------------------------------------------------------------------ properties

fn name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z_][a-z0-9_]{0,5}",
        1 => Just("from".to_owned()),
        1 => Just("True".to_owned()),
        1 => Just("User-Property".to_owned()),
        1 => Just("1".to_owned()),
        1 => Just(String::new()),
        1 => Just("a\"b".to_owned()),
        1 => Just("é x".to_owned()),
        1 => Just("div".to_owned()),
    ]
}

fn ident_strategy() -> impl Strategy<Value = Ident> {
    name_strategy().prop_map(|n| Ident::new(n, Span::default()))
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop_oneof![4 => "\\PC{0,6}", 1 => Just("it's -- not".to_owned()), 1 => Just("\"'\n\t".to_owned())]
}

fn segment_strategy() -> impl Strategy<Value = PathSegment> {
    let simple = prop_oneof![
        3 => ident_strategy().prop_map(PathSegment::Name),
        1 => ident_strategy().prop_map(PathSegment::Quoted),
        1 => any::<i64>().prop_map(|index| PathSegment::Index { index, span: d() }),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(start, end)| PathSegment::Range { start, end, span: d() }),
    ];
    let dynamic = (ident_strategy(), prop::collection::vec(simple.clone(), 0..3)).prop_map(|(root, segments)| {
        PathSegment::Dynamic {
            index: Box::new(Path {
                root,
                segments,
                span: d(),
            }),
            span: d(),
        }
    });
    prop_oneof![6 => simple, 1 => dynamic]
}

fn leaf_strategy() -> impl Strategy<Value = Expr> {
    prop_oneof![
        1 => any::<i64>().prop_map(int),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(float),
        1 => text_strategy().prop_map(|s| string(&s)),
        1 => any::<bool>().prop_map(boolean),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(start, end)| Expr::Range { start, end, span: d() }),
        3 => (ident_strategy(), prop::collection::vec(segment_strategy(), 0..4))
            .prop_map(|(root, segments)| Expr::Path(Path { root, segments, span: d() })),
    ]
}

fn binary_op_strategy() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        Or, And, Eq, Ne, Lt, Le, Gt, Ge, TopicMatch, Add, Sub, Mul, Div, IntDiv, Mod,
    ])
}

fn expr_strategy() -> impl Strategy<Value = Expr> {
    leaf_strategy().prop_recursive(5, 48, 4, |inner| {
        let boxed = inner.clone().prop_map(Box::new);
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..4).prop_map(list),
            1 => (ident_strategy(), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(name, args)| Expr::Call { name, args, span: d() }),
            1 => (prop::sample::select(vec![UnaryOp::Neg, UnaryOp::Not]), boxed.clone())
                .prop_map(|(op, operand)| Expr::Unary { op, operand, span: d() }),
            3 => (binary_op_strategy(), boxed.clone(), boxed.clone())
                .prop_map(|(op, left, right)| Expr::Binary { op, left, right, span: d() }),
            1 => (boxed.clone(), prop::collection::vec(inner.clone(), 1..4), any::<bool>())
                .prop_map(|(expr, list, negated)| Expr::In { expr, list, negated, span: d() }),
            1 => (
                prop::option::of(boxed.clone()),
                prop::collection::vec((inner.clone(), inner.clone()), 1..3),
                prop::option::of(boxed),
            )
                .prop_map(|(operand, whens, else_)| Expr::Case { operand, whens, else_, span: d() }),
        ]
    })
}

fn alias_segment_strategy() -> impl Strategy<Value = AliasSegment> {
    prop_oneof![
        3 => ident_strategy().prop_map(AliasSegment::Key),
        1 => any::<i64>().prop_map(|index| AliasSegment::Index { index, span: d() }),
        1 => Just(AliasSegment::Append { span: d() }),
    ]
}

fn alias_strategy() -> impl Strategy<Value = Alias> {
    prop_oneof![
        3 => ident_strategy().prop_map(Alias::name),
        1 => (ident_strategy(), prop::collection::vec(alias_segment_strategy(), 1..4))
            .prop_map(|(root, segments)| Alias { root, segments, span: d() }),
    ]
}

fn expr_field_strategy() -> impl Strategy<Value = Field> {
    (expr_strategy(), prop::option::of(alias_strategy())).prop_map(|(expr, alias)| Field::Expr {
        expr,
        alias,
        span: d(),
    })
}

fn field_strategy() -> impl Strategy<Value = Field> {
    prop_oneof![
        1 => Just(Field::Star { span: d() }),
        5 => expr_field_strategy(),
    ]
}

fn statement_strategy() -> impl Strategy<Value = Statement> {
    let kind = prop_oneof![
        prop::collection::vec(field_strategy(), 1..4).prop_map(|fields| StatementKind::Select { fields }),
        (
            prop::collection::vec(expr_field_strategy(), 0..3),
            expr_strategy(),
            prop::option::of(alias_strategy()),
            prop::collection::vec(field_strategy(), 0..3),
            prop::option::of(expr_strategy()),
        )
            .prop_map(|(bindings, expr, alias, do_fields, incase)| StatementKind::Foreach {
                bindings,
                expr,
                alias,
                do_fields,
                incase
            }),
    ];
    let topic =
        prop_oneof!["[a-z0-9/+#$:_]{0,10}", Just("a\"b".to_owned())].prop_map(|topic| FromSource { topic, span: d() });
    (
        kind,
        prop::collection::vec(topic, 1..3),
        prop::option::of(expr_strategy()),
    )
        .prop_map(|(kind, from, where_)| Statement {
            kind,
            from,
            where_,
            span: d(),
        })
}

/// SQL-looking token soup: more likely than random text to get deep into the grammar.
fn soup_strategy() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "SELECT", "FOREACH", "FROM", "WHERE", "DO", "INCASE", "AS", "CASE", "WHEN", "THEN", "ELSE", "END", "AND", "OR",
        "NOT", "IN", "div", "mod", "true", "*", ",", "(", ")", "[", "]", ".", "..", "-", "+", "/", "=", "=~", "<>",
        "'s'", "'", "\"t/#\"", "\"", "a", "payload", "1", "-1", "1.5e3", "--", "\n", " ", "é", "0x1F",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(""))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_parses_back_to_the_same_tree(stmt in statement_strategy()) {
        let sql = stmt.to_string();
        let parsed = parse(&sql).map_err(|e| TestCaseError::fail(e.render(&sql)))?;
        prop_assert_eq!(parsed.without_spans(), stmt, "{}", sql);
    }

    #[test]
    fn random_text_never_panics(sql in "\\PC{0,80}") {
        if let Err(e) = parse(&sql) {
            let _ = e.render(&sql);
            prop_assert!(e.span.start.offset <= sql.len());
        }
    }

    #[test]
    fn token_soup_never_panics(body in soup_strategy(), prefix in prop::sample::select(vec!["", "SELECT ", "FOREACH "])) {
        let sql = format!("{prefix}{body}");
        match parse(&sql) {
            Ok(stmt) => {
                let printed = stmt.to_string();
                let again = parse(&printed).map_err(|e| TestCaseError::fail(e.render(&printed)))?;
                prop_assert_eq!(again.without_spans(), stmt.without_spans());
            }
            Err(e) => {
                let _ = e.render(&sql);
                let _ = e.clone().offset_by(10, 10).render(&sql);
            }
        }
    }
}

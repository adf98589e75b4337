//! `junction rule test rules/`: runs the test cases kept beside the rules
//! (`[[rules.tests]]` in the rule files, see [`super::file`]) and prints one line per case,
//! so users run their rule tests in CI:
//!
//! ```text
//! ok   rules/alerts.toml:14 hot_sensors: a hot reading
//! FAIL rules/alerts.toml:22 hot_sensors: a cold reading
//!      output 1: `t`: expected 20, got 10
//! 2 tests: 1 passed, 1 failed
//! ```
//!
//! Exit status 0 when every case passes, 1 when any fails, 2 when the files do not load.
//! An expected output or action is a *subset*: only the fields it names are compared, and a
//! string holding JSON (a payload) is compared as JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value as Json;

use super::actions::{ConnectorCatalog, NoConnectors};
use super::compile::CompileOptions;
use super::file::{self, RuleDef, RuleTestCase, TestInput};
use super::host_fns::HostEnv;
use super::rhai_fns::ScriptFunctions;
use super::tester::{evaluate, Evaluation, RuleTestArgs};
use super::value::Value;

/// What a run printed, and its exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
    pub passed: usize,
    pub failed: usize,
    pub code: u8,
}

/// The CLI entry: Rhai functions come from `functions_dir` (the broker's default folder
/// unless the config says otherwise), so rules calling them test as they run.
pub fn run(path: &Path, functions_dir: &Path, connectors_dir: &Path) -> ExitCode {
    let scripts = match ScriptFunctions::load(functions_dir) {
        Ok(s) => s,
        Err(e) => {
            println!("{e}");
            return ExitCode::from(2);
        }
    };
    let env = HostEnv {
        scripts: (!scripts.is_empty()).then(|| std::sync::Arc::new(scripts)),
        ..HostEnv::default()
    };
    // Connector files are read (rules may name them) but nothing connects.
    let connectors = match crate::connectors::runtime::ConnectorSet::load(
        connectors_dir,
        None,
        tokio_util::sync::CancellationToken::new(),
    ) {
        Ok(c) => c,
        Err(errors) => {
            for e in errors {
                println!("{e}");
            }
            return ExitCode::from(2);
        }
    };
    let r = run_path_with(path, &env.compile_options(), &connectors);
    for l in &r.lines {
        println!("{l}");
    }
    ExitCode::from(r.code)
}

/// Loads the rules at `path` (folder or file) and runs their tests.
pub fn run_path(path: &Path, opts: &CompileOptions) -> Report {
    run_path_with(path, opts, &NoConnectors)
}

/// [`run_path`] for rules that may name the connectors of `connectors`.
pub fn run_path_with(path: &Path, opts: &CompileOptions, connectors: &dyn ConnectorCatalog) -> Report {
    let loaded = if path.is_dir() {
        file::load_dir_with(path, opts, connectors)
    } else {
        file::load_files_with(&[PathBuf::from(path)], opts, connectors)
    };
    let rules = match loaded {
        Ok(r) => r,
        Err(errors) => {
            return Report {
                lines: errors.iter().map(ToString::to_string).collect(),
                code: 2,
                ..Report::default()
            }
        }
    };
    let mut r = Report::default();
    let mut untested = Vec::new();
    for rule in &rules {
        if rule.tests.is_empty() {
            untested.push(rule.id.to_string());
        }
        for case in &rule.tests {
            let place = format!("{}:{} {}: {}", rule.file.display(), case.line, rule.id, case.name);
            match check(rule, case) {
                Ok(()) => {
                    r.passed += 1;
                    r.lines.push(format!("ok   {place}"));
                }
                Err(why) => {
                    r.failed += 1;
                    r.lines.push(format!("FAIL {place}"));
                    r.lines.extend(why.lines().map(|l| format!("     {l}")));
                }
            }
        }
    }
    if !untested.is_empty() {
        r.lines.push(format!("no tests: {}", untested.join(", ")));
    }
    r.lines.push(format!(
        "{} tests: {} passed, {} failed",
        r.passed + r.failed,
        r.passed,
        r.failed
    ));
    r.code = u8::from(r.failed > 0);
    r
}

fn args_of(case: &RuleTestCase) -> RuleTestArgs {
    match &case.input {
        TestInput::Message {
            topic,
            payload,
            clientid,
            username,
            qos,
        } => RuleTestArgs {
            topic: topic.clone(),
            payload: payload.clone(),
            clientid: clientid.clone(),
            username: username.clone(),
            qos: *qos,
            ..RuleTestArgs::default()
        },
        TestInput::Event { event, context } => RuleTestArgs {
            event: Some(event.clone()),
            context: Some(context.to_string()),
            ..RuleTestArgs::default()
        },
    }
}

/// Runs one case: `Err` says what differed.
pub fn check(rule: &RuleDef, case: &RuleTestCase) -> Result<(), String> {
    let outputs = match evaluate(&rule.rule, &args_of(case)) {
        Evaluation::Outputs(o) => o,
        Evaluation::NoOutput(_) => Vec::new(),
        Evaluation::BadInput(m) => return Err(format!("bad test input: {m}")),
        Evaluation::Failed(e) => return Err(format!("evaluation failed: {e}")),
    };
    if let Some(expect) = &case.expect {
        let got: Vec<Json> = outputs.iter().map(Value::to_json).collect();
        compare_list("output", expect, &got)?;
    }
    if let Some(expect) = &case.expect_actions {
        let mut got = Vec::new();
        for out in &outputs {
            if let Value::Map(m) = out {
                for a in &rule.actions {
                    got.push(a.preview(m));
                }
            }
        }
        compare_list("action", expect, &got)?;
    }
    Ok(())
}

fn compare_list(what: &str, expect: &[Json], got: &[Json]) -> Result<(), String> {
    if expect.len() != got.len() {
        return Err(format!(
            "expected {} {what}(s), got {}:\n{}",
            expect.len(),
            got.len(),
            got.iter().map(Json::to_string).collect::<Vec<_>>().join("\n")
        ));
    }
    for (i, (e, g)) in expect.iter().zip(got).enumerate() {
        subset(e, g, "").map_err(|m| format!("{what} {}: {m}\n  got {g}", i + 1))?;
    }
    Ok(())
}

/// Whether `expect` is contained in `got`: objects by the keys `expect` names, strings
/// holding JSON as JSON, numbers by value.
fn subset(expect: &Json, got: &Json, path: &str) -> Result<(), String> {
    let here = if path.is_empty() {
        "the value".to_string()
    } else {
        format!("`{path}`")
    };
    match (expect, got) {
        (Json::Object(e), Json::Object(g)) => {
            for (k, ev) in e {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match g.get(k) {
                    Some(gv) => subset(ev, gv, &p)?,
                    None => return Err(format!("`{p}`: missing (expected {ev})")),
                }
            }
            Ok(())
        }
        (Json::Number(a), Json::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (Json::String(a), Json::String(b)) if a == b => Ok(()),
        (Json::String(a), Json::String(b)) => {
            match (serde_json::from_str::<Json>(a), serde_json::from_str::<Json>(b)) {
                (Ok(ea @ (Json::Object(_) | Json::Array(_))), Ok(gb)) => {
                    subset(&ea, &gb, path).map_err(|m| format!("{m} (comparing {here} as JSON)"))
                }
                _ => Err(format!("{here}: expected {expect}, got {got}")),
            }
        }
        (Json::String(a), g @ (Json::Object(_) | Json::Array(_))) => match serde_json::from_str::<Json>(a) {
            Ok(e) => subset(&e, g, path),
            Err(_) => Err(format!("{here}: expected {expect}, got {got}")),
        },
        (e @ (Json::Object(_) | Json::Array(_)), Json::String(g)) => match serde_json::from_str::<Json>(g) {
            Ok(gv) => subset(e, &gv, path),
            Err(_) => Err(format!("{here}: expected {expect}, got {got}")),
        },
        (Json::Array(e), Json::Array(g)) if e.len() == g.len() => {
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                subset(ev, gv, &format!("{path}[{}]", i + 1))?;
            }
            Ok(())
        }
        (e, g) if e == g => Ok(()),
        _ => Err(format!("{here}: expected {expect}, got {got}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[rules]]
id = "hot"
sql = 'SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30'
[[rules.actions]]
type = "republish"
topic = "alerts/${clientid}"
payload = '{"t": ${t}}'

[[rules.tests]]
name = "hot"
topic = "sensors/s1/temp"
payload = { temp = 35 }
clientid = "s1"
expect = [{ t = 35, clientid = "s1" }]
expect_actions = [{ type = "republish", topic = "alerts/s1", payload = { t = 35 } }]

[[rules.tests]]
name = "cold"
topic = "sensors/s1/temp"
payload = '{"temp": 3}'
expect = []

[[rules.tests]]
name = "wrong on purpose"
topic = "sensors/s1/temp"
payload = '{"temp": 40}'
clientid = "s2"
expect = [{ t = 41 }]

[[rules]]
id = "conn"
sql = 'SELECT clientid, reason FROM "$events/client_disconnected"'
[[rules.tests]]
event = "client.disconnected"
context = { clientid = "c9", reason = "kicked" }
expect = [{ clientid = "c9", reason = "kicked" }]
"#;

    #[test]
    fn runs_cases_with_pass_and_fail_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.toml"), RULES).unwrap();
        let r = run_path(dir.path(), &CompileOptions::default());
        assert_eq!((r.passed, r.failed, r.code), (3, 1, 1), "{:#?}", r.lines);
        assert!(
            r.lines[0].starts_with("ok   ") && r.lines[0].ends_with("hot: hot"),
            "{}",
            r.lines[0]
        );
        let fail = r.lines.iter().position(|l| l.starts_with("FAIL")).unwrap();
        assert!(
            r.lines[fail].contains("r.toml:24 hot: wrong on purpose"),
            "{}",
            r.lines[fail]
        );
        assert!(r.lines[fail + 1].contains("`t`: expected 41, got 40"), "{:#?}", r.lines);
        assert_eq!(r.lines.last().unwrap(), "4 tests: 3 passed, 1 failed");
    }

    #[test]
    fn load_errors_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("r.toml"), "[[rules]]\nid = 'x'\nsql = 'SELEC'\n").unwrap();
        let r = run_path(dir.path(), &CompileOptions::default());
        assert_eq!(r.code, 2);
        assert!(r.lines[0].contains("r.toml:3:"), "{:#?}", r.lines);
    }
}

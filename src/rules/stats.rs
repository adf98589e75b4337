//! Per-rule metrics with EMQX's names (`matched`, `passed`, `failed`, `failed.exception`,
//! `failed.no_result`, `actions.total`, `actions.success`, `actions.failed`, ...), kept by
//! rule id across reloads so the Prometheus counters never go backwards while a rule exists.

use std::fmt::Write as _;

use serde_json::json;

use crate::metrics::Counter;

/// The counters of one rule.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    /// The rule's FROM matched an input.
    pub matched: Counter,
    /// WHERE held and the rule produced its outputs.
    pub passed: Counter,
    /// The SQL failed to evaluate (a function error, a payload that is not JSON, ...).
    pub failed_exception: Counter,
    /// WHERE was false (EMQX counts this as `failed.no_result`).
    pub failed_no_result: Counter,
    /// Outputs handed to actions (one per output and action).
    pub actions_total: Counter,
    pub actions_success: Counter,
    /// The action ran and failed (bad rendered topic, server error, ...).
    pub actions_failed_unknown: Counter,
    /// The action's queue was full: the output was dropped (documented policy).
    pub actions_discarded: Counter,
    /// Inputs not evaluated because of republish loop protection.
    pub skipped_loop: Counter,
}

impl RuleMetrics {
    pub fn failed(&self) -> u64 {
        self.failed_exception.get() + self.failed_no_result.get()
    }

    /// EMQX's `actions.failed` (`out_of_service` + `unknown`); discards are counted apart.
    pub fn actions_failed(&self) -> u64 {
        self.actions_failed_unknown.get()
    }

    /// EMQX's `GET /api/v5/rules/{id}/metrics` `metrics` object.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "matched": self.matched.get(),
            "passed": self.passed.get(),
            "failed": self.failed(),
            "failed.exception": self.failed_exception.get(),
            "failed.no_result": self.failed_no_result.get(),
            "actions.total": self.actions_total.get(),
            "actions.success": self.actions_success.get(),
            "actions.failed": self.actions_failed(),
            "actions.failed.out_of_service": 0,
            "actions.failed.unknown": self.actions_failed_unknown.get(),
            "actions.discarded": self.actions_discarded.get(),
            "skipped.loop": self.skipped_loop.get(),
        })
    }

    fn samples(&self) -> [u64; 9] {
        [
            self.matched.get(),
            self.passed.get(),
            self.failed_exception.get(),
            self.failed_no_result.get(),
            self.actions_total.get(),
            self.actions_success.get(),
            self.actions_failed_unknown.get(),
            self.actions_discarded.get(),
            self.skipped_loop.get(),
        ]
    }
}

/// Appends the per-rule families to a Prometheus exposition: each family once, with a
/// `rule_id` label per rule.
pub fn render_prometheus<'a>(rules: &[(&'a str, &'a RuleMetrics)], out: &mut String) {
    const FAMILIES: [(&str, &str); 9] = [
        ("matched", "Inputs whose FROM matched the rule."),
        ("passed", "Evaluations whose WHERE held."),
        ("failed_exception", "Evaluations that failed with an error."),
        ("failed_no_result", "Evaluations whose WHERE was false."),
        ("actions_total", "Outputs handed to actions."),
        ("actions_success", "Actions that succeeded."),
        ("actions_failed", "Actions that failed."),
        (
            "actions_discarded",
            "Outputs dropped because the action queue was full.",
        ),
        (
            "skipped_loop",
            "Republished messages not evaluated again (loop protection).",
        ),
    ];
    let samples: Vec<(String, [u64; 9])> = rules
        .iter()
        .map(|(id, m)| (id.replace('\\', "\\\\").replace('"', "\\\""), m.samples()))
        .collect();
    for (i, (name, help)) in FAMILIES.iter().enumerate() {
        let _ = writeln!(out, "# HELP junction_rule_{name}_total {help}");
        let _ = writeln!(out, "# TYPE junction_rule_{name}_total counter");
        for (id, v) in &samples {
            let _ = writeln!(out, "junction_rule_{name}_total{{rule_id=\"{id}\"}} {}", v[i]);
        }
    }
}

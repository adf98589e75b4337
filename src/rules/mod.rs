//! The rule engine: EMQX rule SQL over every message and client event.
//!
//! - `value`, `ast`, `parse` (grammar in `grammar/rule_sql.pest`), `compile`, `eval`: the
//!   SQL, compiled once and evaluated per input.
//! - `events`: the event catalogue and the columns of each event; `functions`,
//!   `host_fns`, `rhai_fns`: the function library.
//! - `file`, `template`, `actions`, `engine`: rule files, action templates, the action seam
//!   (bounded queues), the dispatcher with its topic-filter index and hot reload; `stats`:
//!   per-rule metrics.
//! - `tester`, `testfile`: `junction rule test` and the rule test files.
//!
//! rules/ does no network IO of its own and names no concrete connector.

pub mod actions;
pub mod ast;
pub mod compile;
pub mod engine;
pub mod eval;
pub mod events;
pub mod file;
pub mod functions;
pub mod host_fns;
pub mod parse;
pub mod rhai_fns;
pub mod stats;
pub mod template;
pub mod tester;
pub mod testfile;
pub mod value;

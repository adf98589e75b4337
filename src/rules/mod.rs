//! The rule engine (issue 4, in progress): EMQX rule SQL over every message
//! and client event. So far: the value model, the parser (grammar in
//! `grammar/rule_sql.pest`) and the built-in function library. The compiler,
//! the evaluator, rule files and the dispatcher land next.
//!
//! rules/ does no network IO and names no concrete connector.

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

//! The rule engine (issue 4, in progress): EMQX rule SQL over every message
//! and client event. So far: the value model. The parser, the function
//! library, the evaluator and the dispatcher land next.
//!
//! rules/ does no network IO and names no concrete connector.

pub mod value;

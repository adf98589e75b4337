//! The one place connector types are listed. Adding a connector: its module, and one line
//! in [`TYPES`].

use super::{mqtt, redis, sql, webhook, ParseConnector};

/// Every connector type: its `type` name and its parser.
pub const TYPES: &[(&str, ParseConnector)] = &[
    ("webhook", webhook::parse),
    ("redis", redis::parse),
    ("postgres", sql::parse_postgres),
    ("timescaledb", sql::parse_timescaledb),
    ("mysql", sql::parse_mysql),
    ("mqtt", mqtt::parse),
];

/// The parser of connector type `ty`.
pub fn find(ty: &str) -> Option<(&'static str, ParseConnector)> {
    TYPES.iter().find(|(name, _)| *name == ty).copied()
}

/// The type names.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|(name, _)| *name).collect()
}

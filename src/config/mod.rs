//! Junction's configuration.
//!
//! Every key has a built-in default ([`Config::default()`] is a working
//! broker). A TOML file (`junction.toml` in the working directory, or an
//! explicit path) overrides the defaults, and `JUNCTION_*` environment
//! variables override the file:
//!
//! ```text
//! JUNCTION_MQTT__MAX_INFLIGHT=64                      # mqtt.max_inflight = 64
//! JUNCTION_LISTENERS__TCP__DEFAULT__BIND=127.0.0.1:1884
//! JUNCTION_LISTENERS__TCP__SECOND__BIND=1885          # a new listener "second"
//! ```
//!
//! The variable name is `JUNCTION_` + the key path in upper case with `__`
//! between levels; its value is read as a TOML value if it parses as one
//! (number, boolean, quoted string, array), otherwise as a plain string.
//!
//! Key names follow EMQX 5 where EMQX has the setting, and so do the value
//! syntaxes (see [`units`]): durations `"30s"`, sizes `"1MB"`, rates
//! `"1000/s"`, and the words `"infinity"` / `"disabled"` (modelled as `None`).
//!
//! Unknown keys and bad values are refused; [`load`] reports all problems at
//! once in a [`ConfigError`], each with its file position (or variable name)
//! and full dotted key:
//!
//! ```text
//! junction.toml:7:1: unknown key `mqtt.max_infligth` (did you mean `max_inflight`?)
//! junction.toml:3:19: mqtt.max_packet_size: invalid size "12XB" (expected e.g. 1MB, 512KB, 1024)
//! env JUNCTION_MQTT__MAX_INFLIGHT: invalid integer "abc"
//! ```

mod diag;
mod load;
mod schema;
pub mod units;
pub mod walk;

pub use diag::{ConfigError, Diagnostic, DiagnosticKind, Source};
pub use load::{load, load_from_str, process_env, DEFAULT_FILE, ENV_PREFIX};
pub use schema::*;
pub use units::Rate;

#[cfg(test)]
mod tests;

//! Value syntaxes shared by many keys, written the way EMQX writes them:
//! durations (`"30s"`, `"100ms"`, `"1h30m"`), sizes (`"1MB"`, `"64KB"`, `1024`),
//! rates (`"1000/s"`, `"1MB/s"`, `"100/10s"`), the words `"infinity"` and
//! `"disabled"`, and bind addresses (`"0.0.0.0:1883"` or a bare port `1883`).
//!
//! Each syntax has a plain parser (`parse_*`, returning the message shown to the
//! user on failure) and a serde `deserialize_with` helper used by the schema.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// An amount per period, e.g. `"1000/s"` (1000 messages per second) or
/// `"1MB/s"` (1 MiB per second). `period` is never zero and `amount` never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Messages, or bytes for byte rates.
    pub amount: u64,
    /// The window the amount applies to.
    pub period: Duration,
}

impl Rate {
    /// The rate scaled to one second (may be fractional, e.g. `"1/m"`).
    pub fn per_second(&self) -> f64 {
        self.amount as f64 / self.period.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.amount, format_duration(self.period))
    }
}

/// Formats a duration the way it would be written in the config (`"1h30m"`, `"100ms"`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

const DURATION_HINT: &str = "expected e.g. \"30s\", \"100ms\", \"2h\", \"1d\"";
const SIZE_HINT: &str = "expected e.g. 1MB, 512KB, 1024";

/// Parses an EMQX duration: one or more `<integer><unit>` groups with unit
/// `ms`, `s`, `m`, `h`, `d` or `w` (case-insensitive), e.g. `"30s"`, `"1h30m"`.
/// A bare number is refused: a duration must say its unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} ({DURATION_HINT})");
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(bad());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration {s:?}: a duration needs a unit ({DURATION_HINT})"
        ));
    }
    let mut rest = t.as_str();
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(ms_per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    Ok(Duration::from_millis(total))
}

/// Parses an EMQX byte size: an integer with an optional unit `B`, `KB`, `MB`,
/// `GB`, `TB` (or `K`, `M`, `G`, `T`; case-insensitive; powers of 1024).
/// A plain integer is a number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} ({SIZE_HINT})");
    let t = s.trim().to_ascii_uppercase();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let mult: u64 = match t[digits..].trim_start() {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        "T" | "TB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses `"<amount>/<period>"`; the period is a bare unit (`s`, `m`, `h`, ...)
/// or a duration (`10s`). With `bytes`, the amount is a size (`"1MB/s"`),
/// otherwise a plain count (`"1000/s"`).
pub fn parse_rate(s: &str, bytes: bool) -> Result<Rate, String> {
    let hint = if bytes {
        "expected e.g. \"1MB/s\", \"512KB/10s\" or \"infinity\""
    } else {
        "expected e.g. \"1000/s\", \"100/10s\", \"600/m\" or \"infinity\""
    };
    let bad = || format!("invalid rate {s:?} ({hint})");
    let (amount, period) = s.trim().split_once('/').ok_or_else(bad)?;
    let amount = if bytes {
        parse_size(amount).map_err(|_| bad())?
    } else {
        amount.trim().parse::<u64>().map_err(|_| bad())?
    };
    let period = period.trim();
    let period = if period.bytes().all(|b| b.is_ascii_alphabetic()) {
        parse_duration(&format!("1{period}"))
    } else {
        parse_duration(period)
    }
    .map_err(|_| bad())?;
    if amount == 0 || period.is_zero() {
        return Err(format!(
            "invalid rate {s:?}: must be positive (use \"infinity\" for no limit)"
        ));
    }
    Ok(Rate { amount, period })
}

/// Parses a listener address: `"IP:PORT"`, `"[IPv6]:PORT"`, `":PORT"` or a
/// bare port (`"1883"`), which listens on all IPv4 interfaces like EMQX.
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    let port_only = t.strip_prefix(':').unwrap_or(t);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    t.parse::<SocketAddr>()
        .map_err(|_| format!("invalid bind address {s:?} (expected IP:PORT such as \"0.0.0.0:1883\" or a port number)"))
}

// ---------------------------------------------------------------------------
// serde helpers

/// A scalar as written: a string or an integer. Other types are refused with
/// an "expected <what>" message.
enum Scalar {
    Str(String),
    Int(i128),
}

fn scalar<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<Scalar, D::Error> {
    struct V(&'static str);
    impl Visitor<'_> for V {
        type Value = Scalar;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
            Ok(Scalar::Str(v.to_owned()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
            Ok(Scalar::Int(v.into()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
            Ok(Scalar::Int(v.into()))
        }
    }
    d.deserialize_any(V(what))
}

fn is_word(s: &str, word: &str) -> bool {
    s.trim().eq_ignore_ascii_case(word)
}

fn int_message(s: &str) -> String {
    if s.trim().parse::<f64>().is_ok() {
        format!("invalid integer {s:?} (write numbers without quotes)")
    } else {
        format!("invalid integer {s:?}")
    }
}

fn check_range<T: TryFrom<i128>>(v: i128, min: i128, max: i128) -> Result<T, String> {
    if v < min || v > max {
        return Err(format!("{v} is out of range (allowed: {min}..={max})"));
    }
    T::try_from(v).map_err(|_| format!("{v} is out of range"))
}

/// An integer in `MIN..=MAX`.
pub(crate) fn int_in<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    match scalar(d, "an integer")? {
        Scalar::Int(v) => check_range(v, MIN.into(), MAX.into()).map_err(de::Error::custom),
        Scalar::Str(s) => Err(de::Error::custom(int_message(&s))),
    }
}

/// `"infinity"` (None) or an integer in `MIN..=MAX`.
pub(crate) fn int_or_infinity<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    match scalar(d, "an integer or \"infinity\"")? {
        Scalar::Int(v) => check_range(v, MIN.into(), MAX.into())
            .map(Some)
            .map_err(de::Error::custom),
        Scalar::Str(s) if is_word(&s, "infinity") => Ok(None),
        Scalar::Str(s) => Err(de::Error::custom(format!(
            "invalid value {s:?} (expected an integer or \"infinity\")"
        ))),
    }
}

/// `"disabled"` (None) or an integer in `MIN..=MAX`.
pub(crate) fn int_or_disabled<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    match scalar(d, "an integer or \"disabled\"")? {
        Scalar::Int(v) => check_range(v, MIN.into(), MAX.into())
            .map(Some)
            .map_err(de::Error::custom),
        Scalar::Str(s) if is_word(&s, "disabled") => Ok(None),
        Scalar::Str(s) => Err(de::Error::custom(format!(
            "invalid value {s:?} (expected an integer or \"disabled\")"
        ))),
    }
}

/// `mqtt.max_mqueue_len`: `"infinity"` or `0` (EMQX's "no limit") = None,
/// else a positive length.
pub(crate) fn mqueue_len<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    Ok(int_or_infinity::<D, usize, 0, { u32::MAX as i64 }>(d)?.filter(|n| *n > 0))
}

fn duration_from<E: de::Error>(v: Scalar) -> Result<Duration, E> {
    match v {
        Scalar::Str(s) => parse_duration(&s).map_err(E::custom),
        Scalar::Int(n) => Err(E::custom(format!(
            "invalid duration {n}: a duration needs a unit ({DURATION_HINT})"
        ))),
    }
}

/// A duration string such as `"30s"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_from(scalar(d, "a duration such as \"30s\"")?)
}

/// `"infinity"` (None) or a duration.
pub(crate) fn duration_or_infinity<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match scalar(d, "a duration such as \"30s\" or \"infinity\"")? {
        Scalar::Str(s) if is_word(&s, "infinity") => Ok(None),
        v => duration_from(v).map(Some),
    }
}

/// `"disabled"` (None) or a non-zero duration.
pub(crate) fn duration_or_disabled<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match scalar(d, "a duration such as \"30s\" or \"disabled\"")? {
        Scalar::Str(s) if is_word(&s, "disabled") => Ok(None),
        v => {
            let dur = duration_from(v)?;
            if dur.is_zero() {
                Err(de::Error::custom("a zero interval is not allowed (use \"disabled\")"))
            } else {
                Ok(Some(dur))
            }
        }
    }
}

/// A byte size in `MIN..=MAX` bytes: `"1MB"`, `"64KB"` or an integer.
pub(crate) fn size_in<'de, D, const MIN: u64, const MAX: u64>(d: D) -> Result<u64, D::Error>
where
    D: Deserializer<'de>,
{
    let n = match scalar(d, "a size such as \"1MB\"")? {
        Scalar::Str(s) => parse_size(&s).map_err(de::Error::custom)?,
        Scalar::Int(n) => u64::try_from(n).map_err(|_| de::Error::custom(format!("invalid size {n} ({SIZE_HINT})")))?,
    };
    if n < MIN || n > MAX {
        return Err(de::Error::custom(format!(
            "size {n} bytes is out of range (allowed: {MIN}..={MAX} bytes)"
        )));
    }
    Ok(n)
}

fn rate_or_infinity<'de, D: Deserializer<'de>>(d: D, bytes: bool) -> Result<Option<Rate>, D::Error> {
    match scalar(d, "a rate such as \"1000/s\" or \"infinity\"")? {
        Scalar::Str(s) if is_word(&s, "infinity") => Ok(None),
        Scalar::Str(s) => parse_rate(&s, bytes).map(Some).map_err(de::Error::custom),
        Scalar::Int(n) => Err(de::Error::custom(format!(
            "invalid rate {n}: a rate needs a period, e.g. \"{n}/s\""
        ))),
    }
}

/// `"infinity"` (None) or a message rate like `"1000/s"`.
pub(crate) fn message_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    rate_or_infinity(d, false)
}

/// `"infinity"` (None) or a byte rate like `"1MB/s"`.
pub(crate) fn byte_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    rate_or_infinity(d, true)
}

/// A socket address or a bare port number.
pub(crate) fn bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    match scalar(d, "an address such as \"0.0.0.0:1883\" or a port number")? {
        Scalar::Str(s) => parse_bind(&s).map_err(de::Error::custom),
        Scalar::Int(n) => u16::try_from(n)
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p))
            .map_err(|_| de::Error::custom(format!("invalid port {n} (allowed: 0..=65535)"))),
    }
}

/// An optional file path; an empty string means "not set".
pub(crate) fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<PathBuf>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a file path")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then(|| PathBuf::from(v)))
        }
    }
    d.deserialize_any(V)
}

/// A finite float greater than zero (integers are accepted).
pub(crate) fn positive_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &"a number greater than 0"))
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            self.visit_f64(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            Err(E::custom(format!("invalid number {v:?}")))
        }
    }
    d.deserialize_any(V)
}

/// A string that must start with `/` (an HTTP path).
pub(crate) fn http_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    if !s.starts_with('/') {
        return Err(de::Error::custom(format!("invalid path {s:?} (must start with \"/\")")));
    }
    Ok(s)
}

/// A non-empty string.
pub(crate) fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s: String = serde::Deserialize::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1W"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "30", "s", "30x", "3 0s", "1.5s", "-1s", "30s5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_millis(5_400_100)), "1h30m100ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MB"), Ok(1 << 20));
        assert_eq!(parse_size("64KB"), Ok(64 << 10));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10B"), Ok(10));
        for bad in ["", "MB", "12XB", "1.5MB", "-1", "99999999999TB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        let r = parse_rate("1000/s", false).unwrap();
        assert_eq!((r.amount, r.period), (1000, Duration::from_secs(1)));
        assert_eq!(parse_rate("600/m", false).unwrap().per_second(), 10.0);
        assert_eq!(parse_rate("100/10s", false).unwrap().period, Duration::from_secs(10));
        assert_eq!(parse_rate("1MB/s", true).unwrap().amount, 1 << 20);
        for bad in ["1000", "x/s", "1000/x", "0/s", "10/0s", "1MB/s"] {
            assert!(parse_rate(bad, false).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("1000/s", false).unwrap().to_string(), "1000/1s");
    }

    #[test]
    fn binds() {
        assert_eq!(parse_bind("1883").unwrap(), "0.0.0.0:1883".parse().unwrap());
        assert_eq!(parse_bind(":1883").unwrap(), "0.0.0.0:1883".parse().unwrap());
        assert_eq!(parse_bind("[::1]:1883").unwrap(), "[::1]:1883".parse().unwrap());
        assert!(parse_bind("localhost:1883").is_err());
        assert!(parse_bind("99999").is_err());
    }
}

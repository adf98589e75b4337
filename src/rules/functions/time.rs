//! Date and time functions (EMQX's `emqx_utils_calendar`).
//!
//! Units are 'second' (default), 'millisecond', 'microsecond', 'nanosecond'.
//! RFC 3339 output uses the machine's local offset, as EMQX does. Offsets are
//! an integer number of seconds, `undefined` (0), 'Z'/'z', 'local', or
//! `±HH:MM`, `±HH:MM:SS`, `±HHMM`. `format_date`/`date_to_unix_ts` patterns:
//! `%Y %m %d %H %M %S %N %3N %6N %z %:z %::z`; other characters are literal
//! (and, when parsing, skipped without being compared, as in EMQX).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, Local, NaiveDate, Offset, TimeZone, Timelike, Utc};

use super::{
    arg, arg_bin, arg_int, arg_time_unit, as_bin, bad_arg, err, short_repr, text_out, FnDef, FnError, TimeUnit,
};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "now_rfc3339",
        min_args: 0,
        max_args: Some(1),
        f: now_rfc3339,
    },
    FnDef {
        name: "unix_ts_to_rfc3339",
        min_args: 1,
        max_args: Some(2),
        f: unix_ts_to_rfc3339,
    },
    FnDef {
        name: "rfc3339_to_unix_ts",
        min_args: 1,
        max_args: Some(2),
        f: rfc3339_to_unix_ts,
    },
    FnDef {
        name: "now_timestamp",
        min_args: 0,
        max_args: Some(1),
        f: now_timestamp,
    },
    FnDef {
        name: "format_date",
        min_args: 3,
        max_args: Some(4),
        f: format_date,
    },
    FnDef {
        name: "date_to_unix_ts",
        min_args: 3,
        max_args: Some(4),
        f: date_to_unix_ts,
    },
    FnDef {
        name: "timezone_to_second",
        min_args: 1,
        max_args: Some(1),
        f: timezone_to_second,
    },
    FnDef {
        name: "timezone_to_offset_seconds",
        min_args: 1,
        max_args: Some(1),
        f: timezone_to_offset_seconds,
    },
];

const SECONDS_FROM_0_TO_1970: i64 = 719_528 * 86_400;
const SECONDS_FROM_1970_TO_10000: i64 = 2_932_897 * 86_400 - SECONDS_FROM_0_TO_1970;

fn unit_arg(function: &'static str, args: &[Value], i: usize) -> Result<TimeUnit, FnError> {
    if args.len() > i {
        arg_time_unit(function, args, i)
    } else {
        Ok(TimeUnit::Second)
    }
}

/// Now, in `unit` since the epoch.
pub(crate) fn now_in(unit: TimeUnit) -> i64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    nanos / (1_000_000_000 / unit.per_second())
}

/// Split a time in `unit` into whole seconds and nanoseconds (floored).
fn split_time(t: i64, unit: TimeUnit) -> (i64, u32) {
    let per = unit.per_second();
    let nanos_per = 1_000_000_000 / per;
    (t.div_euclid(per), (t.rem_euclid(per) * nanos_per) as u32)
}

fn out_of_range(function: &'static str) -> FnError {
    err(function, "time out of range")
}

/// The local offset (seconds east of UTC) at a UTC instant.
fn local_offset_at(secs: i64) -> i32 {
    let naive = DateTime::from_timestamp(secs, 0).unwrap_or_default().naive_utc();
    Local.offset_from_utc_datetime(&naive).fix().local_minus_utc()
}

/// `calendar:system_time_to_rfc3339/2` with the local offset, or `offset` if given ('Z' when `z`).
pub(crate) fn to_rfc3339(function: &'static str, t: i64, unit: TimeUnit, z: bool) -> Result<String, FnError> {
    let (secs, nanos) = split_time(t, unit);
    let offset = if z { 0 } else { local_offset_at(secs) };
    let local = secs
        .checked_add(i64::from(offset))
        .ok_or_else(|| out_of_range(function))?;
    let dt = DateTime::from_timestamp(local, nanos)
        .ok_or_else(|| out_of_range(function))?
        .naive_utc();
    if !(0..=9999).contains(&dt.year()) {
        return Err(out_of_range(function));
    }
    let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
    let digits = unit.digits();
    if digits > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(&frac[..digits]);
    }
    if z {
        s.push('Z');
    } else {
        s.push_str(&offset_text(i64::from(offset), Tz::Colon));
    }
    Ok(s)
}

#[derive(Clone, Copy)]
enum Tz {
    Plain,
    Colon,
    Seconds,
}

/// `+0800`, `+08:00` or `+08:00:00`.
fn offset_text(offset: i64, style: Tz) -> String {
    let sign = if offset >= 0 { '+' } else { '-' };
    let a = offset.unsigned_abs();
    let (h, m, s) = (a / 3600, a % 3600 / 60, a % 60);
    match style {
        Tz::Plain => format!("{sign}{h:02}{m:02}"),
        Tz::Colon => format!("{sign}{h:02}:{m:02}"),
        Tz::Seconds => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

fn now_rfc3339(args: &[Value]) -> Result<Value, FnError> {
    let unit = unit_arg("now_rfc3339", args, 0)?;
    Ok(text_out(to_rfc3339("now_rfc3339", now_in(unit), unit, false)?))
}

fn unix_ts_to_rfc3339(args: &[Value]) -> Result<Value, FnError> {
    let t = arg_int("unix_ts_to_rfc3339", args, 0)?;
    let unit = unit_arg("unix_ts_to_rfc3339", args, 1)?;
    Ok(text_out(to_rfc3339("unix_ts_to_rfc3339", t, unit, false)?))
}

fn now_timestamp(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(now_in(unit_arg("now_timestamp", args, 0)?)))
}

fn digits_value(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// `calendar:rfc3339_to_system_time/2`: `YYYY-MM-DD?HH:MM:SS[.frac](Z|z|±HH:MM)`.
fn rfc3339_to_unix_ts(args: &[Value]) -> Result<Value, FnError> {
    const F: &str = "rfc3339_to_unix_ts";
    let s = arg_bin(F, args, 0)?;
    let unit = unit_arg(F, args, 1)?;
    let bad = || err(F, format!("not an RFC 3339 date-time: {}", String::from_utf8_lossy(s)));
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return Err(bad());
    }
    let num = |a: usize, b: usize| digits_value(&s[a..b]).ok_or_else(bad);
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let date = NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32).ok_or_else(bad)?;
    if hour > 23 || min > 59 || sec > 59 {
        return Err(bad());
    }
    let rest = &s[19..];
    let split = rest
        .iter()
        .position(|c| matches!(c, b'Z' | b'z' | b'+' | b'-'))
        .ok_or_else(bad)?;
    let (frac, tz) = rest.split_at(split);
    let offset = match tz {
        b"Z" | b"z" => 0,
        [sign, h1, h2, b':', m1, m2] => {
            let h = digits_value(&[*h1, *h2]).ok_or_else(bad)?;
            let m = digits_value(&[*m1, *m2]).ok_or_else(bad)?;
            let o = h * 3600 + m * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(bad()),
    };
    let days = i64::from(date.num_days_from_ce()) - 719_163; // days since 1970-01-01
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    let per = unit.per_second();
    let mut total = secs.checked_mul(per).ok_or_else(|| out_of_range(F))?;
    if !frac.is_empty() {
        let digits = frac
            .strip_prefix(b".")
            .filter(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
            .ok_or_else(bad)?;
        // Truncate (or extend) the fraction to the unit's digits.
        let want = unit.digits();
        let mut text: Vec<u8> = digits.iter().copied().take(want).collect();
        text.resize(want, b'0');
        if want > 0 {
            total = total
                .checked_add(digits_value(&text).unwrap_or(0))
                .ok_or_else(|| out_of_range(F))?;
        }
    }
    Ok(Value::Int(total))
}

/// EMQX's `offset_second/1`.
pub(crate) fn offset_seconds(function: &'static str, v: &Value) -> Result<i64, FnError> {
    let bad = || err(function, format!("bad time offset {}", short_repr(v)));
    match v {
        Value::Int(n) => Ok(*n),
        Value::Null => Ok(0),
        Value::Str(_) | Value::Bytes(_) => {
            let s = as_bin(v).unwrap_or_default();
            match s {
                b"local" => return Ok(i64::from(local_offset_at(now_in(TimeUnit::Second)))),
                b"Z" | b"z" => return Ok(0),
                _ => {}
            }
            let (sign, hm) = match s.split_first() {
                Some((b'+', rest)) => (1, rest),
                Some((b'-', rest)) => (-1, rest),
                _ => return Err(bad()),
            };
            let parts: Vec<&[u8]> = hm.split(|c| *c == b':').filter(|p| !p.is_empty()).collect();
            let (h, m, sec): (&[u8], &[u8], &[u8]) = match parts.as_slice() {
                [h, m] => (h, m, b"0"),
                [h, m, sec] => (h, m, sec),
                [hhmm] if hhmm.len() == 4 => (&hhmm[..2], &hhmm[2..], b"0"),
                _ => return Err(bad()),
            };
            let (h, m, sec) = (
                to_integer(h).ok_or_else(bad)?,
                to_integer(m).ok_or_else(bad)?,
                to_integer(sec).ok_or_else(bad)?,
            );
            if h > 23 || m > 59 || sec > 59 {
                return Err(bad());
            }
            Ok(sign * (h * 3600 + m * 60 + sec))
        }
        _ => Err(bad_arg(function, 0, "an offset string or integer", v)),
    }
}

/// Erlang's `string:to_integer/1` with nothing left over: optional sign, digits.
fn to_integer(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    let n = digits_value(digits)?;
    Some(if neg { -n } else { n })
}

fn timezone_to_second(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(offset_seconds(
        "timezone_to_second",
        arg("timezone_to_second", args, 0)?,
    )?))
}

fn timezone_to_offset_seconds(args: &[Value]) -> Result<Value, FnError> {
    let v = arg("timezone_to_offset_seconds", args, 0)?;
    Ok(Value::Int(offset_seconds("timezone_to_offset_seconds", v)?))
}

// --- format_date / date_to_unix_ts ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Nano,
    Milli,
    Micro,
    Tz(u8),
    Literal(Vec<u8>),
}

fn formatter(fmt: &[u8]) -> Vec<Part> {
    const TOKENS: [(&[u8], Part); 12] = [
        (b"%Y", Part::Year),
        (b"%m", Part::Month),
        (b"%d", Part::Day),
        (b"%H", Part::Hour),
        (b"%M", Part::Minute),
        (b"%S", Part::Second),
        (b"%N", Part::Nano),
        (b"%3N", Part::Milli),
        (b"%6N", Part::Micro),
        (b"%z", Part::Tz(0)),
        (b"%:z", Part::Tz(1)),
        (b"%::z", Part::Tz(2)),
    ];
    let mut out = Vec::new();
    let mut k = 0;
    'outer: while k < fmt.len() {
        for (tok, part) in &TOKENS {
            if fmt[k..].starts_with(tok) {
                out.push(part.clone());
                k += tok.len();
                continue 'outer;
            }
        }
        if let Some(Part::Literal(l)) = out.last_mut() {
            l.push(fmt[k]);
        } else {
            out.push(Part::Literal(vec![fmt[k]]));
        }
        k += 1;
    }
    out
}

/// `format_date(Unit, Offset, Format[, Time])`: `Time` (default now) in `Unit`.
fn format_date(args: &[Value]) -> Result<Value, FnError> {
    const F: &str = "format_date";
    let unit = arg_time_unit(F, args, 0)?;
    let offset = offset_seconds(F, arg(F, args, 1)?)?;
    let fmt = arg_bin(F, args, 2)?;
    let t = if args.len() > 3 {
        arg_int(F, args, 3)?
    } else {
        now_in(unit)
    };
    let shift = offset.checked_mul(unit.per_second()).ok_or_else(|| out_of_range(F))?;
    let (secs, _) = split_time(t.checked_add(shift).ok_or_else(|| out_of_range(F))?, unit);
    let (_, nanos) = split_time(t, unit);
    let dt = DateTime::<Utc>::from_timestamp(secs, 0).ok_or_else(|| out_of_range(F))?;
    if dt.year() < 0 {
        return Err(out_of_range(F));
    }
    let mut out = String::new();
    for part in formatter(fmt) {
        let piece = match part {
            Part::Year => format!("{:04}", dt.year()),
            Part::Month => format!("{:02}", dt.month()),
            Part::Day => format!("{:02}", dt.day()),
            Part::Hour => format!("{:02}", dt.hour()),
            Part::Minute => format!("{:02}", dt.minute()),
            Part::Second => format!("{:02}", dt.second()),
            Part::Nano => format!("{nanos:09}"),
            Part::Milli => format!("{:03}", nanos / 1_000_000),
            Part::Micro => format!("{:06}", nanos / 1_000),
            Part::Tz(style) => {
                if offset.unsigned_abs() >= 86_400 {
                    return Err(err(F, "the offset must be less than a day"));
                }
                offset_text(offset, [Tz::Plain, Tz::Colon, Tz::Seconds][usize::from(style)])
            }
            Part::Literal(l) => String::from_utf8_lossy(&l).into_owned(),
        };
        out.push_str(&piece);
    }
    Ok(text_out(out))
}

/// `date_to_unix_ts(Unit, [Offset, ]Format, Date)`: the date read with the format
/// (year, month, day, hour, minute and second are required). `Offset` applies
/// when the date has none of its own (`%z`...), as EMQX documents (EMQX's code
/// subtracts both).
fn date_to_unix_ts(args: &[Value]) -> Result<Value, FnError> {
    const F: &str = "date_to_unix_ts";
    let unit = arg_time_unit(F, args, 0)?;
    let (offset, fmt_i) = if args.len() == 4 {
        (offset_seconds(F, arg(F, args, 1)?)?, 2)
    } else {
        (0, 1)
    };
    let fmt = arg_bin(F, args, fmt_i)?;
    let date = arg_bin(F, args, fmt_i + 1)?;
    let (t, had_offset) = parse_date(F, date, &formatter(fmt), unit)?;
    if had_offset {
        return Ok(Value::Int(t));
    }
    let delta = offset.checked_mul(unit.per_second()).ok_or_else(|| out_of_range(F))?;
    t.checked_sub(delta).map(Value::Int).ok_or_else(|| out_of_range(F))
}

/// The time, and whether the date carried its own offset.
fn parse_date(function: &'static str, mut date: &[u8], fmt: &[Part], unit: TimeUnit) -> Result<(i64, bool), FnError> {
    let bad = || err(function, "bad_formatter_or_date");
    let (mut year, mut month, mut day, mut hour, mut minute, mut second) = (None, None, None, None, None, None);
    let (mut milli, mut micro, mut nano, mut parsed_offset) = (None, None, None, None);
    for part in fmt {
        if date.is_empty() {
            break;
        }
        let size = match part {
            Part::Year => 4,
            Part::Month | Part::Day | Part::Hour | Part::Minute | Part::Second => 2,
            Part::Milli => 3,
            Part::Micro => 6,
            Part::Nano => 9,
            Part::Tz(0) => 5,
            Part::Tz(1) => 6,
            Part::Tz(_) => 9,
            Part::Literal(l) => l.len(),
        };
        if date.len() < size {
            return Err(bad());
        }
        let (chunk, tail) = date.split_at(size);
        date = tail;
        let value = || to_integer(chunk).ok_or_else(bad);
        match part {
            Part::Year => year = Some(value()?),
            Part::Month => month = Some(value()?),
            Part::Day => day = Some(value()?),
            Part::Hour => hour = Some(value()?),
            Part::Minute => minute = Some(value()?),
            Part::Second => second = Some(value()?),
            Part::Milli => milli = Some(value()?),
            Part::Micro => micro = Some(value()?),
            Part::Nano => nano = Some(value()?),
            Part::Tz(_) => {
                parsed_offset = Some(offset_seconds(
                    function,
                    &Value::Bytes(bytes::Bytes::copy_from_slice(chunk)),
                )?);
            }
            Part::Literal(_) => {}
        }
    }
    let need = |v: Option<i64>, name: &str| v.ok_or_else(|| err(function, format!("missing_date_part: {name}")));
    let (y, mo, d) = (need(year, "year")?, need(month, "month")?, need(day, "day")?);
    let (h, mi, s) = (need(hour, "hour")?, need(minute, "minute")?, need(second, "second")?);
    let date = i32::try_from(y)
        .ok()
        .zip(u32::try_from(mo).ok())
        .zip(u32::try_from(d).ok())
        .and_then(|((y, m), d)| NaiveDate::from_ymd_opt(y, m, d))
        .filter(|d| d.year() >= 0)
        .ok_or_else(|| err(function, "invalid date"))?;
    let days = i64::from(date.num_days_from_ce()) - 719_163;
    let secs = days * 86_400
        + h.saturating_mul(3600)
            .saturating_add(mi.saturating_mul(60))
            .saturating_add(s)
        - parsed_offset.unwrap_or(0);
    if !(-SECONDS_FROM_0_TO_1970..SECONDS_FROM_1970_TO_10000).contains(&secs) {
        return Err(err(function, "bad_format: the date is out of range"));
    }
    // Sum in the finest unit present, then convert to the requested one (flooring).
    let precision = if nano.is_some() {
        TimeUnit::Nanosecond
    } else if micro.is_some() {
        TimeUnit::Microsecond
    } else if milli.is_some() {
        TimeUnit::Millisecond
    } else {
        TimeUnit::Second
    };
    let p = i128::from(precision.per_second());
    let conv = |v: Option<i64>, per: i64| i128::from(v.unwrap_or(0)) * p / i128::from(per);
    let total = i128::from(secs) * p + conv(milli, 1_000) + conv(micro, 1_000_000) + conv(nano, 1_000_000_000);
    let result = (total * i128::from(unit.per_second())).div_euclid(p);
    let t = i64::try_from(result).map_err(|_| out_of_range(function))?;
    Ok((t, parsed_offset.is_some()))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn rfc(text: &str, unit: &str) -> i64 {
        match ok("rfc3339_to_unix_ts", vec![s(text), s(unit)]) {
            Value::Int(n) => n,
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn t_now() {
        let Value::Int(now) = ok("now_timestamp", vec![]) else {
            panic!()
        };
        assert!(now > 1_700_000_000);
        for (unit, scale) in [
            ("second", 1),
            ("millisecond", 1_000),
            ("microsecond", 1_000_000),
            ("nanosecond", 1_000_000_000),
        ] {
            let Value::Int(t) = ok("now_timestamp", vec![s(unit)]) else {
                panic!()
            };
            assert!((t / scale - now).abs() <= 2, "{unit}");
            let text = ok("now_rfc3339", vec![s(unit)]);
            assert!((rfc(&text.to_string(), "second") - now).abs() <= 2, "{text}");
        }
        let text = ok("now_rfc3339", vec![]).to_string();
        assert_eq!(text.len(), "2024-02-23T10:26:20+08:00".len(), "{text}");
        fails("now_timestamp", vec![s("minute")]);
        fails("now_rfc3339", vec![i(1)]);
    }

    #[test]
    fn t_unix_ts_to_rfc3339_round_trip() {
        for unit in ["second", "millisecond", "microsecond", "nanosecond"] {
            let epoch = ok("now_timestamp", vec![s(unit)]);
            let text = ok("unix_ts_to_rfc3339", vec![epoch.clone(), s(unit)]);
            assert_eq!(ok("rfc3339_to_unix_ts", vec![text, s(unit)]), epoch, "{unit}");
        }
        let text = ok("unix_ts_to_rfc3339", vec![i(1708671600766), s("millisecond")]).to_string();
        assert!(text.contains(".766"), "{text}");
        assert_eq!(rfc(&text, "millisecond"), 1708671600766);
        fails("unix_ts_to_rfc3339", vec![s("1708671600")]);
        fails("unix_ts_to_rfc3339", vec![i(1), s("hour")]);
        fails("unix_ts_to_rfc3339", vec![i(300_000_000_000)]);
    }

    #[test]
    fn t_rfc3339_to_unix_ts() {
        assert_eq!(ok("rfc3339_to_unix_ts", vec![s("2024-02-23T15:56:30Z")]), i(1708703790));
        assert_eq!(
            ok("rfc3339_to_unix_ts", vec![s("2024-02-23T15:56:30+08:00")]),
            i(1708674990)
        );
        assert_eq!(rfc("2024-02-23T15:56:30.87Z", "second"), 1708703790);
        assert_eq!(rfc("2024-02-23T15:56:30.87Z", "millisecond"), 1708703790870);
        assert_eq!(rfc("2024-02-23T15:56:30.87Z", "microsecond"), 1708703790870000);
        assert_eq!(rfc("2024-02-23T15:56:30.535904509Z", "nanosecond"), 1708703790535904509);
        assert_eq!(rfc("1969-12-31 23:59:59-00:00", "second"), -1);
        fails("rfc3339_to_unix_ts", vec![s("2024-02-23T15:56:30")]);
        fails("rfc3339_to_unix_ts", vec![s("2024-02-30T15:56:30Z")]);
        fails("rfc3339_to_unix_ts", vec![s("2024-02-23T25:56:30Z")]);
        fails("rfc3339_to_unix_ts", vec![s("yesterday")]);
        fails("rfc3339_to_unix_ts", vec![i(1)]);
    }

    #[test]
    fn t_timezone_to_offset_seconds() {
        for name in ["timezone_to_offset_seconds", "timezone_to_second"] {
            assert_eq!(ok(name, vec![s("+02:00:00")]), i(7200));
            assert_eq!(ok(name, vec![s("-02:00:00")]), i(-7200));
            assert_eq!(ok(name, vec![s("+00:01:42")]), i(102));
            assert_eq!(ok(name, vec![s("+08:00")]), i(28800));
            assert_eq!(ok(name, vec![s("-0530")]), i(-19800));
            assert_eq!(ok(name, vec![s("z")]), i(0));
            assert_eq!(ok(name, vec![s("Z")]), i(0));
            assert_eq!(ok(name, vec![i(42)]), i(42));
            assert_eq!(ok(name, vec![Value::Null]), i(0));
            assert!(matches!(ok(name, vec![s("local")]), Value::Int(_)));
            fails(name, vec![s("+24:00")]);
            fails(name, vec![s("+08:60")]);
            fails(name, vec![s("08:00")]);
            fails(name, vec![s("+08")]);
            fails(name, vec![f(1.5)]);
        }
    }

    #[test]
    fn t_format_date() {
        let ms = i(1708933353472);
        let fd = |off: Value, fmt: &str| ok("format_date", vec![s("millisecond"), off, s(fmt), ms.clone()]);
        assert_eq!(
            fd(s("+08:00"), "%Y-%m-%d %H:%M:%S.%6N%z"),
            s("2024-02-26 15:42:33.472000+0800")
        );
        assert_eq!(
            fd(s("+08:00"), "%Y-%m-%d %H:%M:%S.%6N%:z"),
            s("2024-02-26 15:42:33.472000+08:00")
        );
        assert_eq!(
            fd(s("+08:20:30"), "%Y-%m-%d %H:%M:%S.%3N%::z"),
            s("2024-02-26 16:03:03.472+08:20:30")
        );
        // (EMQX's docs print +08:00 for 'Z': a defect; the offset is +00:00.)
        assert_eq!(
            fd(s("Z"), "%Y-%m-%d %H:%M:%S.%3N%:z"),
            s("2024-02-26 07:42:33.472+00:00")
        );
        assert_eq!(
            fd(i(28800), "%Y-%m-%d %H:%M:%S.%3N%:z"),
            s("2024-02-26 15:42:33.472+08:00")
        );
        assert_eq!(fd(i(-3600), "%N|%z|100%"), s("472000000|-0100|100%"));
        assert!(matches!(
            ok("format_date", vec![s("second"), i(0), s("%Y")]),
            Value::Str(_)
        ));
        fails("format_date", vec![s("hour"), i(0), s("%Y"), i(0)]);
        fails("format_date", vec![s("second"), s("+25:00"), s("%Y"), i(0)]);
        fails("format_date", vec![s("second"), i(0), s("%Y"), f(1.5)]);
        fails("format_date", vec![s("second"), i(100_000), s("%z"), i(0)]);
    }

    #[test]
    fn t_format_date_round_trips() {
        let now = now_in(TimeUnit::Second);
        let nowms = now_in(TimeUnit::Millisecond);
        for t in [now, 0, 951_782_400, 4_107_588_271] {
            let args = [s("second"), s("+07:00"), s("%m--%d--%Y---%H:%M:%S%z")];
            let text = ok("format_date", [&args[..], &[i(t)]].concat());
            assert_eq!(ok("date_to_unix_ts", [&args[..], &[text]].concat()), i(t));
            let text = ok(
                "format_date",
                vec![s("second"), s("+08:00"), s("%Y-%m-%d-%H:%M:%S%z"), i(t)],
            );
            assert_eq!(
                ok("date_to_unix_ts", vec![s("second"), s("%Y-%m-%d-%H:%M:%S%z"), text]),
                i(t)
            );
            // No offset in the format: give it again when parsing.
            let text = ok(
                "format_date",
                vec![s("second"), s("+04:00"), s("--%m--%d--%Y---%H:%M:%S"), i(t)],
            );
            assert_eq!(
                ok(
                    "date_to_unix_ts",
                    vec![s("second"), s("+04:00"), s("--%m--%d--%Y---%H:%M:%S"), text]
                ),
                i(t)
            );
        }
        let fmt = s("--%m--%d--%Y---%H:%M:%S:%3N%z");
        let text = ok(
            "format_date",
            vec![s("millisecond"), s("+04:00"), fmt.clone(), i(nowms)],
        );
        assert_eq!(ok("date_to_unix_ts", vec![s("millisecond"), fmt, text]), i(nowms));
    }

    #[test]
    fn t_date_to_unix_ts() {
        let with_offset =
            |unit: &str, fmt: &str, date: &str| ok("date_to_unix_ts", vec![s(unit), s("+08:00"), s(fmt), s(date)]);
        assert_eq!(
            with_offset("second", "%Y-%m-%d %H-%M-%S", "2024-03-01 10:30:38"),
            i(rfc("2024-03-01T10:30:38+08:00", "second"))
        );
        assert_eq!(
            with_offset("second", "%Y-%m-%d %H-%M-%S.%3N", "2024-03-01 10:30:38.333"),
            i(rfc("2024-03-01T10:30:38.333+08:00", "second"))
        );
        for unit in ["millisecond", "microsecond", "nanosecond"] {
            assert_eq!(
                with_offset(unit, "%Y-%m-%d %H-%M-%S.%3N", "2024-03-01 10:30:38.333"),
                i(rfc("2024-03-01T10:30:38.333+08:00", unit)),
                "{unit}"
            );
        }
        assert_eq!(
            with_offset("microsecond", "%Y-%m-%d %H-%M-%S.%6N", "2024-03-01 10:30:38.333444"),
            i(rfc("2024-03-01T10:30:38.333444+08:00", "microsecond"))
        );
        let d3 = |fmt: &str, date: &str| call("date_to_unix_ts", vec![s("second"), s(fmt), s(date)]);
        assert_eq!(d3("%Y-%m-%d %H:%M:%S", "2022-05-26 10:40:12"), Ok(i(1653561612)));
        assert_eq!(d3("%Y-%m-%d %H-%M-%S", "2022-05-26 10:40:12"), Ok(i(1653561612)));
        assert_eq!(d3("%Y-%m-%d %H:%M:%S", "2022-05-26 10-40-12"), Ok(i(1653561612)));
        assert_eq!(d3("%Y-%m-%d %H:%M:%S", "2024-02-29 14:31:40"), Ok(i(1709217100)));
        assert_eq!(d3("%Y-%m-%d %H:%M:%S", "2024-03-01 12:44:31"), Ok(i(1709297071)));
        assert_eq!(d3("%Y-%m-%d %H:%M:%S", "2100-03-01 12:44:31"), Ok(i(4107588271)));
        assert_eq!(
            d3("%Y-%m-%d %H:%M:%S%:z", "2024-02-23 15:00:00+08:00"),
            Ok(i(1708671600))
        );
        assert_eq!(
            d3("%Y-%m-%d %H:%M:%S.%3N%:z", "2024-02-23 15:00:00.123+08:00"),
            Ok(i(rfc("2024-02-23T15:00:00.123+08:00", "second")))
        );
        let d4 = |off: Value, date: &str| {
            ok(
                "date_to_unix_ts",
                vec![s("second"), off, s("%Y-%m-%d %H:%M:%S%:z"), s(date)],
            )
        };
        assert_eq!(d4(s("+08:00"), "2024-02-29 14:31:40"), i(1709188300));
        assert_eq!(d4(s("+08:00"), "2024-02-23 15:00:00"), i(1708671600));
        assert_eq!(d4(s("Z"), "2024-02-23 07:00:00"), i(1708671600));
        assert_eq!(d4(i(14400), "2024-02-23 15:00:00"), i(1708686000));
        // Errors, as in the suite.
        let e = d3("%Y-%m-%d %H:%M:%S", "2022-059999-26 10:40:12").unwrap_err();
        assert_eq!(e.message, "bad_formatter_or_date");
        assert_eq!(
            d3("%y-%m-%d %H:%M:%S", "2022-05-26 10:40:12").unwrap_err().message,
            "bad_formatter_or_date"
        );
        assert!(d3("%Y-%d %H:%M:%S", "2022-32 10:40:12")
            .unwrap_err()
            .message
            .contains("month"));
        assert!(d3("%H:%M:%S", "10:40:12").unwrap_err().message.contains("year"));
        for bad in [
            "2022-05-32 10:40:12",
            "2023-02-29 10:40:12",
            "2024-02-30 10:40:12",
            "2024-02-3",
        ] {
            assert!(d3("%Y-%m-%d %H:%M:%S", bad).is_err(), "{bad}");
        }
        fails("date_to_unix_ts", vec![s("days"), s("%Y"), s("2024")]);
    }
}

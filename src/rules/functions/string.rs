//! String functions (EMQX 5's `emqx_variform_bif`, called from `emqx_rule_funcs`).
//!
//! Erlang's `string` module works on grapheme clusters: lengths, slices, padding,
//! reversal and trimming count clusters, and a pattern only matches on cluster
//! boundaries (so `"\r\n"` is one character and is not split by `"\n"`). Without a
//! Unicode segmentation table, clusters here are approximated: CR LF, a base
//! character followed by combining marks / variation selectors / emoji
//! modifiers / zero-width-joiner sequences, and regional-indicator pairs.
//!
//! Booleans are atoms in Erlang, so string functions accept them as text
//! (`upper(true)` is `'TRUE'`); `undefined` is a bad argument.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use regex::bytes::{Regex, RegexBuilder};

use super::convert::{float_compact, str_bytes};
use super::{
    arg, arg_array, arg_bin, arg_int, array_out, as_bin, bad_arg, bin_out, err, text_out, FnDef, FnError, MAX_OUTPUT,
};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "lower",
        min_args: 1,
        max_args: Some(1),
        f: lower,
    },
    FnDef {
        name: "upper",
        min_args: 1,
        max_args: Some(1),
        f: upper,
    },
    FnDef {
        name: "trim",
        min_args: 1,
        max_args: Some(1),
        f: trim,
    },
    FnDef {
        name: "ltrim",
        min_args: 1,
        max_args: Some(1),
        f: ltrim,
    },
    FnDef {
        name: "rtrim",
        min_args: 1,
        max_args: Some(2),
        f: rtrim,
    },
    FnDef {
        name: "rm_prefix",
        min_args: 2,
        max_args: Some(2),
        f: rm_prefix,
    },
    FnDef {
        name: "reverse",
        min_args: 1,
        max_args: Some(1),
        f: reverse,
    },
    FnDef {
        name: "strlen",
        min_args: 1,
        max_args: Some(1),
        f: strlen,
    },
    FnDef {
        name: "substr",
        min_args: 2,
        max_args: Some(3),
        f: substr,
    },
    FnDef {
        name: "split",
        min_args: 2,
        max_args: Some(3),
        f: split,
    },
    FnDef {
        name: "tokens",
        min_args: 2,
        max_args: Some(3),
        f: tokens,
    },
    FnDef {
        name: "concat",
        min_args: 1,
        max_args: Some(2),
        f: concat,
    },
    FnDef {
        name: "sprintf",
        min_args: 1,
        max_args: None,
        f: sprintf,
    },
    FnDef {
        name: "sprintf_s",
        min_args: 2,
        max_args: Some(2),
        f: sprintf_s,
    },
    FnDef {
        name: "pad",
        min_args: 2,
        max_args: Some(4),
        f: pad,
    },
    FnDef {
        name: "replace",
        min_args: 3,
        max_args: Some(4),
        f: replace,
    },
    FnDef {
        name: "regex_match",
        min_args: 2,
        max_args: Some(2),
        f: regex_match,
    },
    FnDef {
        name: "regex_replace",
        min_args: 3,
        max_args: Some(3),
        f: regex_replace,
    },
    FnDef {
        name: "regex_extract",
        min_args: 2,
        max_args: Some(2),
        f: regex_extract,
    },
    FnDef {
        name: "ascii",
        min_args: 1,
        max_args: Some(1),
        f: ascii,
    },
    FnDef {
        name: "find",
        min_args: 2,
        max_args: Some(3),
        f: find,
    },
    FnDef {
        name: "join_to_string",
        min_args: 1,
        max_args: Some(2),
        f: join_to_string,
    },
    FnDef {
        name: "unescape",
        min_args: 1,
        max_args: Some(1),
        f: unescape,
    },
    FnDef {
        name: "map_to_redis_hset_args",
        min_args: 1,
        max_args: Some(1),
        f: map_to_redis_hset_args,
    },
    FnDef {
        name: "join_to_sql_values_string",
        min_args: 1,
        max_args: Some(1),
        f: join_to_sql_values_string,
    },
];

// --- Arguments --------------------------------------------------------------------

/// The subject of a string function: text, or a boolean (an atom in Erlang).
fn subject<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a str, FnError> {
    match arg(function, args, i)? {
        Value::Bool(true) => Ok("true"),
        Value::Bool(false) => Ok("false"),
        Value::Null => Err(err(function, format!("argument {}: badarg (undefined)", i + 1))),
        _ => text(function, args, i),
    }
}

/// A text argument (string or bytes that are UTF-8).
fn text<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a str, FnError> {
    super::arg_text(function, args, i)
}

/// An option string such as 'leading'.
fn option<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a [u8], FnError> {
    arg_bin(function, args, i)
}

fn bad_option(function: &'static str, opt: &[u8]) -> FnError {
    err(function, format!("unknown option '{}'", String::from_utf8_lossy(opt)))
}

fn non_negative(function: &'static str, args: &[Value], i: usize) -> Result<usize, FnError> {
    let n = arg_int(function, args, i)?;
    usize::try_from(n).map_err(|_| err(function, format!("argument {}: must not be negative", i + 1)))
}

// --- Grapheme clusters (approximate) ----------------------------------------------------

fn is_extend(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A | 0x064B..=0x065F
        | 0x0E31 | 0x0E34..=0x0E3A | 0x0E47..=0x0E4E | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF
        | 0x200C | 0x20D0..=0x20FF | 0x302A..=0x302F | 0x3099 | 0x309A | 0xFE00..=0xFE0F
        | 0xFE20..=0xFE2F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F | 0xE0100..=0xE01EF)
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c as u32, 0x1F1E6..=0x1F1FF)
}

/// Byte offsets where clusters start, with `s.len()` last.
fn boundaries(s: &str) -> Vec<usize> {
    let mut out = Vec::with_capacity(s.len() + 1);
    let mut it = s.char_indices().peekable();
    while let Some((pos, c)) = it.next() {
        out.push(pos);
        if c == '\r' {
            if let Some(&(_, '\n')) = it.peek() {
                it.next();
            }
            continue;
        }
        if c == '\n' {
            continue;
        }
        if is_regional_indicator(c) && it.peek().is_some_and(|&(_, n)| is_regional_indicator(n)) {
            it.next();
        }
        while let Some(&(_, n)) = it.peek() {
            if is_extend(n) {
                it.next();
            } else if n == '\u{200D}' {
                it.next();
                if it.peek().is_some() {
                    it.next();
                }
            } else {
                break;
            }
        }
    }
    out.push(s.len());
    out
}

/// The clusters of `s`.
fn graphemes(s: &str) -> Vec<&str> {
    let b = boundaries(s);
    b.windows(2).filter_map(|w| s.get(w[0]..w[1])).collect()
}

fn is_boundary(bounds: &[usize], pos: usize) -> bool {
    bounds.binary_search(&pos).is_ok()
}

/// First match of `pat` at or after `from`, starting and ending on cluster boundaries.
fn find_from(s: &str, pat: &str, bounds: &[usize], mut from: usize) -> Option<usize> {
    loop {
        let pos = from + s.get(from..)?.find(pat)?;
        if is_boundary(bounds, pos) && is_boundary(bounds, pos + pat.len()) {
            return Some(pos);
        }
        from = pos + s.get(pos..)?.chars().next()?.len_utf8();
    }
}

/// Last match of `pat`, on cluster boundaries.
fn rfind(s: &str, pat: &str, bounds: &[usize]) -> Option<usize> {
    let mut end = s.len();
    loop {
        let pos = s.get(..end)?.rfind(pat)?;
        if is_boundary(bounds, pos) && is_boundary(bounds, pos + pat.len()) {
            return Some(pos);
        }
        end = pos + pat.len() - 1;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    All,
    Leading,
    Trailing,
}

/// Erlang's `string:split/3`.
fn split_where<'a>(s: &'a str, pat: &str, w: Where) -> Vec<&'a str> {
    if pat.is_empty() {
        return vec![s];
    }
    let bounds = boundaries(s);
    let cut = |pos: usize| (&s[..pos], &s[pos + pat.len()..]);
    match w {
        Where::Leading => match find_from(s, pat, &bounds, 0) {
            Some(pos) => {
                let (a, b) = cut(pos);
                vec![a, b]
            }
            None => vec![s],
        },
        Where::Trailing => match rfind(s, pat, &bounds) {
            Some(pos) => {
                let (a, b) = cut(pos);
                vec![a, b]
            }
            None => vec![s],
        },
        Where::All => {
            let mut out = Vec::new();
            let mut start = 0;
            while let Some(pos) = find_from(s, pat, &bounds, start) {
                out.push(&s[start..pos]);
                start = pos + pat.len();
            }
            out.push(&s[start..]);
            out
        }
    }
}

fn strs_out(parts: Vec<&str>) -> Value {
    array_out(parts.into_iter().map(text_out).collect())
}

// --- Case, trimming, length, slices -------------------------------------------------------

fn lower(args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(subject("lower", args, 0)?.to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(subject("upper", args, 0)?.to_uppercase()))
}

/// Erlang's default trim set: Unicode Pattern_White_Space (and CR LF).
fn is_whitespace_cluster(g: &str) -> bool {
    g == "\r\n"
        || matches!(
            g,
            "\t" | "\n"
                | "\u{0B}"
                | "\u{0C}"
                | "\r"
                | " "
                | "\u{85}"
                | "\u{200E}"
                | "\u{200F}"
                | "\u{2028}"
                | "\u{2029}"
        )
}

fn trim_clusters(s: &str, leading: bool, trailing: bool, is_sep: &dyn Fn(&str) -> bool) -> String {
    let gs = graphemes(s);
    let mut a = 0;
    let mut b = gs.len();
    if leading {
        while a < b && is_sep(gs[a]) {
            a += 1;
        }
    }
    if trailing {
        while b > a && is_sep(gs[b - 1]) {
            b -= 1;
        }
    }
    gs[a..b].concat()
}

fn trim(args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(trim_clusters(
        subject("trim", args, 0)?,
        true,
        true,
        &is_whitespace_cluster,
    )))
}

fn ltrim(args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(trim_clusters(
        subject("ltrim", args, 0)?,
        true,
        false,
        &is_whitespace_cluster,
    )))
}

/// `rtrim(S)`, or `rtrim(S, Chars)`: drop trailing characters found in `Chars`.
fn rtrim(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("rtrim", args, 0)?;
    if args.len() < 2 {
        return Ok(text_out(trim_clusters(s, false, true, &is_whitespace_cluster)));
    }
    let chars = graphemes(text("rtrim", args, 1)?);
    Ok(text_out(trim_clusters(s, false, true, &|g| chars.contains(&g))))
}

fn rm_prefix(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("rm_prefix", args, 0)?;
    let prefix = text("rm_prefix", args, 1)?;
    Ok(text_out(s.strip_prefix(prefix).unwrap_or(s)))
}

fn reverse(args: &[Value]) -> Result<Value, FnError> {
    let gs = graphemes(subject("reverse", args, 0)?);
    Ok(text_out(gs.into_iter().rev().collect::<String>()))
}

fn strlen(args: &[Value]) -> Result<Value, FnError> {
    let n = boundaries(subject("strlen", args, 0)?).len() - 1;
    Ok(Value::Int(n as i64))
}

/// `substr(S, Start[, Length])`: `Start` counts from 0, in characters.
fn substr(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("substr", args, 0)?;
    let start = non_negative("substr", args, 1)?;
    let len = if args.len() > 2 {
        Some(non_negative("substr", args, 2)?)
    } else {
        None
    };
    let b = boundaries(s);
    let clusters = b.len() - 1;
    let from = b[start.min(clusters)];
    let to = match len {
        Some(n) => b[start.saturating_add(n).min(clusters)],
        None => s.len(),
    };
    Ok(text_out(&s[from..to.max(from)]))
}

// --- Splitting and joining ------------------------------------------------------------------

/// `split(S, Sep)` drops empty parts; `split(S, Sep, Option)` with 'notrim',
/// 'leading', 'leading_notrim', 'trailing', 'trailing_notrim'.
fn split(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("split", args, 0)?;
    let pat = text("split", args, 1)?;
    let (w, keep_empty) = if args.len() < 3 {
        (Where::All, false)
    } else {
        match option("split", args, 2)? {
            b"notrim" => (Where::All, true),
            b"leading" => (Where::Leading, false),
            b"leading_notrim" => (Where::Leading, true),
            b"trailing" => (Where::Trailing, false),
            b"trailing_notrim" => (Where::Trailing, true),
            other => return Err(bad_option("split", other)),
        }
    };
    let mut parts = split_where(s, pat, w);
    if !keep_empty {
        parts.retain(|p| !p.is_empty());
    }
    Ok(strs_out(parts))
}

/// `tokens(S, SeparatorChars[, 'nocrlf'])`: split on any of the separator bytes,
/// dropping empty parts; 'nocrlf' also splits on CR, LF and CR LF. As in EMQX,
/// the subject and separators are taken byte by byte.
fn tokens(args: &[Value]) -> Result<Value, FnError> {
    let s: &[u8] = match arg("tokens", args, 0)? {
        Value::Bool(b) => {
            if *b {
                b"true"
            } else {
                b"false"
            }
        }
        Value::Null => return Err(err("tokens", "argument 1: badarg (undefined)")),
        _ => arg_bin("tokens", args, 0)?,
    };
    let seps = arg_bin("tokens", args, 1)?;
    let nocrlf = if args.len() > 2 {
        match option("tokens", args, 2)? {
            b"nocrlf" => true,
            other => return Err(bad_option("tokens", other)),
        }
    } else {
        false
    };
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut k = 0;
    while k < s.len() {
        // A CR LF pair is one character.
        let unit: &[u8] = if s[k] == b'\r' && s.get(k + 1) == Some(&b'\n') {
            &s[k..k + 2]
        } else {
            &s[k..k + 1]
        };
        let is_sep = if unit.len() == 2 {
            nocrlf
        } else {
            seps.contains(&unit[0]) || (nocrlf && (unit[0] == b'\r' || unit[0] == b'\n'))
        };
        if is_sep {
            if !cur.is_empty() {
                out.push(bin_out(std::mem::take(&mut cur)));
            }
        } else {
            cur.extend_from_slice(unit);
        }
        k += unit.len();
    }
    if !cur.is_empty() {
        out.push(bin_out(cur));
    }
    Ok(array_out(out))
}

/// `concat(A, B)` or `concat([A, B, ...])`: any values, turned into text as `str()` does.
fn concat(args: &[Value]) -> Result<Value, FnError> {
    let items: &[Value] = if args.len() == 1 {
        arg_array("concat", args, 0)?
    } else {
        args
    };
    let mut out = Vec::new();
    for v in items {
        out.extend_from_slice(&str_bytes(v));
        if out.len() > MAX_OUTPUT {
            return Err(err("concat", "result too large"));
        }
    }
    Ok(bin_out(out))
}

/// `join_to_string([Sep, ]Array)`: items as `str()` gives them, joined by `Sep` (default ", ").
fn join_to_string(args: &[Value]) -> Result<Value, FnError> {
    let (sep, list): (&[u8], _) = if args.len() == 1 {
        (b", ", arg_array("join_to_string", args, 0)?)
    } else {
        (
            arg_bin("join_to_string", args, 0)?,
            arg_array("join_to_string", args, 1)?,
        )
    };
    let mut out = Vec::new();
    for (k, v) in list.iter().enumerate() {
        if k > 0 {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(&str_bytes(v));
        if out.len() > MAX_OUTPUT {
            return Err(err("join_to_string", "result too large"));
        }
    }
    Ok(bin_out(out))
}

// --- Padding, replacing, finding ------------------------------------------------------------

/// `pad(S, Len[, 'trailing' | 'leading' | 'both'[, Char]])`: pad to `Len`
/// characters with spaces (or with `Char`, which counts as one character
/// whatever its length). With 'both' an odd count puts the extra one at the end.
fn pad(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("pad", args, 0)?;
    let len = arg_int("pad", args, 1)?;
    let (lead, trail) = match args.get(2) {
        None => (false, true),
        Some(_) => match option("pad", args, 2)? {
            b"trailing" => (false, true),
            b"leading" => (true, false),
            b"both" => (true, true),
            other => return Err(bad_option("pad", other)),
        },
    };
    let fill = if args.len() > 3 { text("pad", args, 3)? } else { " " };
    let have = (boundaries(s).len() - 1) as i64;
    let missing = usize::try_from(len.saturating_sub(have)).unwrap_or(0);
    if missing == 0 {
        return Ok(text_out(s));
    }
    if missing.saturating_mul(fill.len()).saturating_add(s.len()) > MAX_OUTPUT {
        return Err(err("pad", "result too large"));
    }
    let (left, right) = match (lead, trail) {
        (true, true) => (missing / 2, missing - missing / 2),
        (true, false) => (missing, 0),
        _ => (0, missing),
    };
    Ok(text_out(format!("{}{s}{}", fill.repeat(left), fill.repeat(right))))
}

/// `replace(S, Search, Replacement[, 'all' | 'leading' | 'trailing'])`.
fn replace(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("replace", args, 0)?;
    let pat = text("replace", args, 1)?;
    let rep = text("replace", args, 2)?;
    let w = match args.get(3) {
        None => Where::All,
        Some(_) => match option("replace", args, 3)? {
            b"all" => Where::All,
            b"leading" => Where::Leading,
            b"trailing" => Where::Trailing,
            other => return Err(bad_option("replace", other)),
        },
    };
    let parts = split_where(s, pat, w);
    let size = s.len().saturating_add(parts.len().saturating_mul(rep.len()));
    if size > MAX_OUTPUT {
        return Err(err("replace", "result too large"));
    }
    Ok(text_out(parts.join(rep)))
}

/// `find(S, Search[, 'leading' | 'trailing'])`: the rest of `S` from the first
/// (or last) occurrence of `Search`, or '' when there is none.
fn find(args: &[Value]) -> Result<Value, FnError> {
    let trailing = match args.get(2) {
        None => false,
        Some(_) => match option("find", args, 2)? {
            b"leading" => false,
            b"trailing" => true,
            other => return Err(bad_option("find", other)),
        },
    };
    let s = subject("find", args, 0)?;
    let pat = text("find", args, 1)?;
    if pat.is_empty() {
        return Ok(text_out(s));
    }
    let bounds = boundaries(s);
    let pos = if trailing {
        rfind(s, pat, &bounds)
    } else {
        find_from(s, pat, &bounds, 0)
    };
    Ok(text_out(pos.map_or("", |p| &s[p..])))
}

/// The code of the first byte.
fn ascii(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("ascii", args, 0)?;
    s.as_bytes()
        .first()
        .map(|c| Value::Int(i64::from(*c)))
        .ok_or_else(|| err("ascii", "empty string"))
}

// --- Regular expressions -----------------------------------------------------------------------

/// Compiled patterns, by source (bounded: cleared when full).
static REGEX_CACHE: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));
const REGEX_CACHE_MAX: usize = 256;

/// Compile as PCRE does without the `unicode` option: the subject is matched
/// byte by byte and `\w`, `\d`, `\s` are ASCII classes.
fn regex(function: &'static str, args: &[Value], i: usize) -> Result<Arc<Regex>, FnError> {
    let src = text(function, args, i)?;
    let mut cache = REGEX_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(src) {
        return Ok(re.clone());
    }
    let re = RegexBuilder::new(src)
        .unicode(false)
        .size_limit(1 << 20)
        .dfa_size_limit(2 << 20)
        .build()
        .map_err(|e| err(function, format!("bad regular expression: {e}")))?;
    let re = Arc::new(re);
    if cache.len() >= REGEX_CACHE_MAX {
        cache.clear();
    }
    cache.insert(src.to_owned(), re.clone());
    Ok(re)
}

fn regex_subject<'a>(function: &'static str, args: &'a [Value], i: usize) -> Result<&'a [u8], FnError> {
    match arg(function, args, i)? {
        Value::Bool(b) => Ok(if *b { b"true" } else { b"false" }),
        Value::Null => Err(err(function, format!("argument {}: badarg (undefined)", i + 1))),
        _ => arg_bin(function, args, i),
    }
}

fn regex_match(args: &[Value]) -> Result<Value, FnError> {
    let s = regex_subject("regex_match", args, 0)?;
    let re = regex("regex_match", args, 1)?;
    Ok(Value::Bool(re.is_match(s)))
}

/// `regex_replace(S, RE, Replacement)`, every match. In the replacement `&` is
/// the whole match, `\N`, `\gN`, `\g{N}` a group, `\&` and `\\` literal characters.
fn regex_replace(args: &[Value]) -> Result<Value, FnError> {
    let s = regex_subject("regex_replace", args, 0)?;
    let re = regex("regex_replace", args, 1)?;
    let rep = arg_bin("regex_replace", args, 2)?;
    let mut out = Vec::with_capacity(s.len());
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let Some(m) = caps.get(0) else { continue };
        out.extend_from_slice(&s[last..m.start()]);
        expand_replacement(rep, &caps, &mut out);
        last = m.end();
        if out.len() > MAX_OUTPUT {
            return Err(err("regex_replace", "result too large"));
        }
    }
    out.extend_from_slice(&s[last..]);
    Ok(bin_out(out))
}

fn expand_replacement(rep: &[u8], caps: &regex::bytes::Captures, out: &mut Vec<u8>) {
    let group = |n: usize, out: &mut Vec<u8>| {
        if let Some(g) = caps.get(n) {
            out.extend_from_slice(g.as_bytes());
        }
    };
    let digits = |from: usize| rep[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let number = |from: usize, n: usize| {
        std::str::from_utf8(&rep[from..from + n])
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    let mut k = 0;
    while k < rep.len() {
        match rep[k] {
            b'&' => {
                group(0, out);
                k += 1;
            }
            b'\\' if k + 1 < rep.len() => {
                let c = rep[k + 1];
                if c == b'&' || c == b'\\' {
                    out.push(c);
                    k += 2;
                } else if c.is_ascii_digit() {
                    let n = digits(k + 1);
                    group(number(k + 1, n), out);
                    k += 1 + n;
                } else if c == b'g' && rep.get(k + 2) == Some(&b'{') {
                    let n = digits(k + 3);
                    if n > 0 && rep.get(k + 3 + n) == Some(&b'}') {
                        group(number(k + 3, n), out);
                        k += 4 + n;
                    } else {
                        out.push(b'\\');
                        k += 1;
                    }
                } else if c == b'g' && digits(k + 2) > 0 {
                    let n = digits(k + 2);
                    group(number(k + 2, n), out);
                    k += 2 + n;
                } else {
                    out.push(b'\\');
                    k += 1;
                }
            }
            c => {
                out.push(c);
                k += 1;
            }
        }
    }
}

/// The groups of the first match (not the whole match); `[]` when there is no match.
fn regex_extract(args: &[Value]) -> Result<Value, FnError> {
    let s = regex_subject("regex_extract", args, 0)?;
    let re = regex("regex_extract", args, 1)?;
    let Some(caps) = re.captures(s) else {
        return Ok(array_out(Vec::new()));
    };
    let groups = (1..caps.len())
        .map(|n| bin_out(caps.get(n).map(|m| m.as_bytes().to_vec()).unwrap_or_default()))
        .collect();
    Ok(array_out(groups))
}

// --- unescape --------------------------------------------------------------------------------------

/// C escapes (`\n \t \r \b \f \v \' \" \\ \? \a`) and `\x` followed by hex
/// digits (a Unicode code point); anything else after a backslash is an error.
fn unescape(args: &[Value]) -> Result<Value, FnError> {
    let s = subject("unescape", args, 0)?;
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = it.peek() else {
            out.push('\\');
            break;
        };
        let simple = match e {
            '\\' => Some('\\'),
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'b' => Some('\u{08}'),
            'f' => Some('\u{0C}'),
            'v' => Some('\u{0B}'),
            '\'' => Some('\''),
            '"' => Some('"'),
            '?' => Some('?'),
            'a' => Some('\u{07}'),
            _ => None,
        };
        if let Some(r) = simple {
            it.next();
            out.push(r);
            continue;
        }
        if e == 'x' {
            it.next();
            let mut code: u32 = 0;
            let mut n = 0;
            while let Some(d) = it.peek().and_then(|d| d.to_digit(16)) {
                it.next();
                n += 1;
                code = code.saturating_mul(16).saturating_add(d);
            }
            if n == 0 {
                return Err(err("unescape", "unrecognized escape sequence \\x"));
            }
            let ch =
                char::from_u32(code).ok_or_else(|| err("unescape", format!("invalid unicode character {code:#x}")))?;
            out.push(ch);
            continue;
        }
        return Err(err("unescape", format!("unrecognized escape sequence \\{e}")));
    }
    Ok(text_out(out))
}

// --- Connector helpers -------------------------------------------------------------------------------

/// Map fields as Redis HSET arguments: `[k1, v1, k2, v2, ...]`, with string,
/// integer, float (6 decimals, compact) and boolean values; other fields are
/// dropped. A string is decoded as JSON first; anything that is not a map gives `[]`.
fn map_to_redis_hset_args(args: &[Value]) -> Result<Value, FnError> {
    let v = arg("map_to_redis_hset_args", args, 0)?;
    let decoded;
    let map = match v {
        Value::Map(m) => m,
        Value::Str(_) | Value::Bytes(_) => {
            decoded = serde_json::from_slice::<serde_json::Value>(as_bin(v).unwrap_or_default())
                .map(|j| Value::from_json(&j))
                .unwrap_or(Value::Null);
            match &decoded {
                Value::Map(m) => m,
                _ => return Ok(array_out(Vec::new())),
            }
        }
        _ => return Ok(array_out(Vec::new())),
    };
    let mut out = Vec::with_capacity(map.len() * 2);
    for (k, val) in map.iter() {
        let field = match val {
            Value::Str(_) | Value::Bytes(_) => val.clone(),
            Value::Int(n) => text_out(n.to_string()),
            Value::Float(x) => text_out(float_compact(*x, 6)),
            Value::Bool(b) => text_out(if *b { "true" } else { "false" }),
            _ => continue,
        };
        out.push(Value::Str(k.clone()));
        out.push(field);
    }
    Ok(array_out(out))
}

/// SQL values: strings (and booleans, maps, arrays as JSON) single-quoted with
/// `\` and `'` escaped by a backslash, numbers bare, `undefined` as NULL; joined by ", ".
fn join_to_sql_values_string(args: &[Value]) -> Result<Value, FnError> {
    let list = arg_array("join_to_sql_values_string", args, 0)?;
    let mut out = Vec::new();
    for (k, v) in list.iter().enumerate() {
        if k > 0 {
            out.extend_from_slice(b", ");
        }
        match v {
            Value::Null => out.extend_from_slice(b"NULL"),
            Value::Int(_) | Value::Float(_) => out.extend_from_slice(&str_bytes(v)),
            _ => {
                out.push(b'\'');
                for &c in str_bytes(v).iter() {
                    if c == b'\\' || c == b'\'' {
                        out.push(b'\\');
                    }
                    out.push(c);
                }
                out.push(b'\'');
            }
        }
        if out.len() > MAX_OUTPUT {
            return Err(err("join_to_sql_values_string", "result too large"));
        }
    }
    Ok(bin_out(out))
}

// --- sprintf ----------------------------------------------------------------------------------------

/// `sprintf(Format, Args...)`, Erlang's `io_lib:format`: control sequences
/// `~F.P.PadModC` with C one of `s p w d f c n ~ b B i` (field width `F`,
/// negative for left-adjusted, precision `P`, pad character, `t`/`l` modifiers).
fn sprintf(args: &[Value]) -> Result<Value, FnError> {
    let fmt = arg_bin("sprintf", args, 0)?;
    format_erlang("sprintf", fmt, args.get(1..).unwrap_or_default())
}

/// `sprintf_s(Format, ArgsArray)`.
fn sprintf_s(args: &[Value]) -> Result<Value, FnError> {
    let fmt = arg_bin("sprintf_s", args, 0)?;
    format_erlang("sprintf_s", fmt, arg_array("sprintf_s", args, 1)?)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Adjust {
    Left,
    Right,
}

fn format_erlang(function: &'static str, fmt: &[u8], args: &[Value]) -> Result<Value, FnError> {
    let mut out: Vec<u8> = Vec::with_capacity(fmt.len() + 16);
    let mut next = args.iter();
    let mut k = 0;
    let too_large = || err(function, "result too large");
    while k < fmt.len() {
        let c = fmt[k];
        k += 1;
        if c != b'~' {
            out.push(c);
            continue;
        }
        // Field width.
        let mut adj = Adjust::Right;
        let mut field: Option<usize> = None;
        if fmt.get(k) == Some(&b'-') {
            adj = Adjust::Left;
            k += 1;
        }
        if fmt.get(k) == Some(&b'*') {
            k += 1;
            let n = star_arg(function, next.next())?;
            if n < 0 {
                adj = Adjust::Left;
            }
            field = Some(n.unsigned_abs() as usize);
        } else {
            let n = fmt[k..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n > 0 {
                field = Some(parse_count(function, &fmt[k..k + n])?);
                k += n;
            }
        }
        // Precision and pad character.
        let mut precision: Option<usize> = None;
        let mut pad_char = ' ';
        if fmt.get(k) == Some(&b'.') {
            k += 1;
            if fmt.get(k) == Some(&b'*') {
                k += 1;
                let n = star_arg(function, next.next())?;
                precision = Some(usize::try_from(n).map_err(|_| err(function, "negative precision"))?);
            } else {
                let n = fmt[k..].iter().take_while(|c| c.is_ascii_digit()).count();
                if n > 0 {
                    precision = Some(parse_count(function, &fmt[k..k + n])?);
                    k += n;
                }
            }
            if fmt.get(k) == Some(&b'.') {
                k += 1;
                let rest = std::str::from_utf8(&fmt[k..]).unwrap_or("");
                match rest.chars().next() {
                    Some('*') => {
                        k += 1;
                        let n = star_arg(function, next.next())?;
                        pad_char = u32::try_from(n)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| err(function, "bad pad character"))?;
                    }
                    Some(ch) => {
                        pad_char = ch;
                        k += ch.len_utf8();
                    }
                    None => return Err(err(function, "format ends inside a control sequence")),
                }
            }
        }
        // Modifiers.
        while matches!(fmt.get(k), Some(b't' | b'l' | b'k' | b'K')) {
            k += 1;
        }
        let Some(&ctl) = fmt.get(k) else {
            return Err(err(function, "format ends inside a control sequence"));
        };
        k += 1;
        if field.unwrap_or(0) > MAX_OUTPUT || precision.unwrap_or(0) > MAX_OUTPUT {
            return Err(too_large());
        }
        let mut take = || {
            next.next()
                .ok_or_else(|| err(function, "too few arguments for the format"))
        };
        let piece: String = match ctl {
            b'~' => "~".repeat(field.unwrap_or(1).max(1)),
            b'n' => "\n".repeat(field.unwrap_or(1).max(1)),
            b'c' => {
                let v = take()?;
                let ch = match v {
                    Value::Int(n) => u32::try_from(*n).ok().and_then(char::from_u32),
                    _ => None,
                }
                .ok_or_else(|| bad_arg(function, 0, "a character code for ~c", v))?;
                let s = ch.to_string();
                match (field, precision) {
                    (None, None) => s,
                    (Some(f), None) => s.repeat(f),
                    (None, Some(p)) => s.repeat(p),
                    (Some(f), Some(p)) => adjust(&s.repeat(p.min(f)), f, adj, pad_char),
                }
            }
            b's' => {
                let v = take()?;
                let s = match v {
                    Value::Str(_) | Value::Bytes(_) | Value::Bool(_) | Value::Null => {
                        String::from_utf8_lossy(&str_bytes(v)).into_owned()
                    }
                    _ => return Err(bad_arg(function, 0, "a string for ~s", v)),
                };
                string_field(&s, field, adj, precision, pad_char)
            }
            b'p' | b'w' => term_field(&erlang_term(take()?), field, adj, precision, pad_char),
            b'd' => match take()? {
                Value::Int(n) => term_field(&n.to_string(), field, adj, precision, pad_char),
                v => return Err(bad_arg(function, 0, "an integer for ~d", v)),
            },
            b'b' | b'B' => match take()? {
                Value::Int(n) => {
                    let base = precision.unwrap_or(10);
                    if !(2..=36).contains(&base) {
                        return Err(err(function, "base must be between 2 and 36"));
                    }
                    let s = to_radix(*n, base as u32, ctl == b'b');
                    term_field(&s, field, adj, None, pad_char)
                }
                v => return Err(bad_arg(function, 0, "an integer for ~B", v)),
            },
            b'f' => match take()? {
                Value::Float(x) => {
                    let p = precision.unwrap_or(6).max(1);
                    term_field(&format!("{x:.p$}"), field, adj, field, pad_char)
                }
                v => return Err(bad_arg(function, 0, "a float for ~f", v)),
            },
            b'i' => {
                take()?;
                String::new()
            }
            other => {
                return Err(err(
                    function,
                    format!("unsupported control sequence ~{}", char::from(other)),
                ));
            }
        };
        out.extend_from_slice(piece.as_bytes());
        if out.len() > MAX_OUTPUT {
            return Err(too_large());
        }
    }
    if next.next().is_some() {
        return Err(err(function, "too many arguments for the format"));
    }
    Ok(bin_out(out))
}

fn star_arg(function: &'static str, v: Option<&Value>) -> Result<i64, FnError> {
    match v {
        Some(Value::Int(n)) => Ok(*n),
        Some(v) => Err(bad_arg(function, 0, "an integer for *", v)),
        None => Err(err(function, "too few arguments for the format")),
    }
}

fn parse_count(function: &'static str, digits: &[u8]) -> Result<usize, FnError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|n| *n <= MAX_OUTPUT)
        .ok_or_else(|| err(function, "result too large"))
}

fn to_radix(n: i64, base: u32, lower: bool) -> String {
    let mut v = n.unsigned_abs();
    let mut digits = Vec::new();
    loop {
        let d = (v % u64::from(base)) as u32;
        let ch = char::from_digit(d, base).unwrap_or('?');
        digits.push(if lower { ch } else { ch.to_ascii_uppercase() });
        v /= u64::from(base);
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push('-');
    }
    digits.iter().rev().collect()
}

fn adjust(s: &str, field: usize, adj: Adjust, pad: char) -> String {
    let n = s.chars().count();
    if n >= field {
        return s.to_owned();
    }
    let padding: String = std::iter::repeat_n(pad, field - n).collect();
    match adj {
        Adjust::Left => format!("{s}{padding}"),
        Adjust::Right => format!("{padding}{s}"),
    }
}

/// io_lib_format's `string/6`: truncate to the precision, pad to the field.
fn string_field(s: &str, field: Option<usize>, adj: Adjust, precision: Option<usize>, pad: char) -> String {
    let n = s.chars().count();
    let truncate = |len: usize| s.chars().take(len).collect::<String>();
    match (field, precision) {
        (None, None) => s.to_owned(),
        (Some(f), None) => {
            if n > f {
                truncate(f)
            } else {
                adjust(s, f, adj, pad)
            }
        }
        (None, Some(p)) => {
            if n > p {
                truncate(p)
            } else {
                adjust(s, p, Adjust::Left, pad)
            }
        }
        (Some(f), Some(p)) => {
            let p = p.min(f);
            let inner = if n > p {
                truncate(p)
            } else {
                adjust(s, p, Adjust::Left, pad)
            };
            adjust(&inner, f, adj, pad)
        }
    }
}

/// io_lib_format's `term/5`: too long for the field gives a row of `*`.
fn term_field(t: &str, field: Option<usize>, adj: Adjust, precision: Option<usize>, pad: char) -> String {
    let field = match (field, precision) {
        (None, None) => return t.to_owned(),
        (None, Some(p)) => p,
        (Some(f), _) => f,
    };
    let len = t.chars().count();
    let p = len.min(precision.map_or(field, |p| p.min(field)));
    if len > p {
        adjust(&"*".repeat(p), field, adj, pad)
    } else {
        adjust(t, field, adj, pad)
    }
}

/// A value written as Erlang writes the corresponding term (`~w`, `~p`).
fn erlang_term(v: &Value) -> String {
    match v {
        Value::Null => "undefined".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => erlang_float(*x),
        Value::Str(_) | Value::Bytes(_) => erlang_binary(as_bin(v).unwrap_or_default()),
        Value::Array(items) => format!("[{}]", items.iter().map(erlang_term).collect::<Vec<_>>().join(",")),
        Value::Map(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{} => {}",
                        erlang_binary(k.as_bytes()),
                        m.get(k).map(erlang_term).unwrap_or_default()
                    )
                })
                .collect();
            format!("#{{{}}}", fields.join(","))
        }
    }
}

fn erlang_binary(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        let printable =
            |c: char| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{0B}' | '\u{08}' | '\u{0C}' | '\u{1B}');
        if s.chars().all(printable) {
            let mut out = String::with_capacity(s.len() + 6);
            out.push_str("<<\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{0B}' => out.push_str("\\v"),
                    '\u{08}' => out.push_str("\\b"),
                    '\u{0C}' => out.push_str("\\f"),
                    '\u{1B}' => out.push_str("\\e"),
                    c => out.push(c),
                }
            }
            out.push_str(if s.is_ascii() { "\">>" } else { "\"/utf8>>" });
            return out;
        }
    }
    format!("<<{}>>", b.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
}

/// Erlang's shortest round-trip float text (`io_lib_format:fwrite_g/1`):
/// `2.0`, `0.1`, `1.0e20`, `1.5e-7`.
pub(crate) fn erlang_float(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let len = digits.len() as i64;
    let place = exp - (len - 1); // value = digits * 10^place
    let exp_l = (place + len - 1).to_string();
    let exp_cost = exp_l.len() as i64 + 2;
    let insert_exp = || {
        let (first, rest) = digits.split_at(1);
        if rest.is_empty() {
            format!("{first}.0e{exp_l}")
        } else {
            format!("{first}.{rest}e{exp_l}")
        }
    };
    let body = if place < 0 {
        if place + len > 0 {
            let (a, b) = digits.split_at((len + place) as usize);
            format!("{a}.{b}")
        } else if 2 - place - len <= exp_cost {
            format!("0.{}{digits}", "0".repeat((-place - len) as usize))
        } else {
            insert_exp()
        }
    } else {
        let dot = if len == 1 { 1 } else { 0 };
        if exp_cost + dot >= place + 2 && x.abs() < 9_007_199_254_740_992.0 {
            format!("{digits}{}.0", "0".repeat(place as usize))
        } else {
            insert_exp()
        }
    };
    if x < 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn t(x: bool) -> Value {
        Value::Bool(x)
    }

    #[test]
    fn t_lower_upper() {
        assert_eq!(ok("upper", vec![s("abc4")]), s("ABC4"));
        assert_eq!(ok("lower", vec![s("0ABC")]), s("0abc"));
        assert_eq!(ok("upper", vec![s("straße")]), s("STRASSE"));
        assert_eq!(ok("upper", vec![t(true)]), s("TRUE"));
        assert_eq!(ok("lower", vec![s("ÀB")]), s("àb"));
        assert_eq!(ok("lower", vec![t(false)]), s("false"));
        fails("lower", vec![Value::Null]);
        fails("upper", vec![i(1)]);
    }

    #[test]
    fn t_reverse_strlen() {
        assert_eq!(ok("reverse", vec![s("abcd")]), s("dcba"));
        assert_eq!(ok("reverse", vec![s("1234")]), s("4321"));
        assert_eq!(ok("reverse", vec![s("a\r\nb")]), s("b\r\na"));
        assert_eq!(ok("reverse", vec![s("e\u{301}x")]), s("xe\u{301}"));
        fails("reverse", vec![Value::Null]);
        assert_eq!(ok("strlen", vec![s("abcd")]), i(4));
        assert_eq!(ok("strlen", vec![s("你好")]), i(2));
        assert_eq!(ok("strlen", vec![s("hello\n")]), i(6));
        assert_eq!(ok("strlen", vec![s("a\r\n")]), i(2));
        assert_eq!(ok("strlen", vec![s("👍🏽🇫🇷")]), i(2));
        fails("strlen", vec![Value::Null]);
        fails("strlen", vec![i(5)]);
    }

    #[test]
    fn t_substr() {
        assert_eq!(ok("substr", vec![s(""), i(1)]), s(""));
        assert_eq!(ok("substr", vec![s("abc"), i(1)]), s("bc"));
        assert_eq!(ok("substr", vec![s("abcd"), i(1), i(2)]), s("bc"));
        assert_eq!(ok("substr", vec![s("hello"), i(0)]), s("hello"));
        assert_eq!(ok("substr", vec![s("hello world!"), i(6), i(5)]), s("world"));
        assert_eq!(ok("substr", vec![s("你好世界"), i(1), i(2)]), s("好世"));
        assert_eq!(ok("substr", vec![s("abc"), i(5), i(2)]), s(""));
        assert_eq!(ok("substr", vec![t(true), i(1), i(2)]), s("ru"));
        fails("substr", vec![s("abc"), i(-1)]);
        fails("substr", vec![s("abc"), i(0), i(-1)]);
        fails("substr", vec![Value::Null, i(1)]);
    }

    #[test]
    fn t_trim() {
        assert_eq!(ok("trim", vec![s("")]), s(""));
        assert_eq!(ok("ltrim", vec![s("")]), s(""));
        assert_eq!(ok("rtrim", vec![s("")]), s(""));
        assert_eq!(ok("trim", vec![s(" abc ")]), s("abc"));
        assert_eq!(ok("ltrim", vec![s(" abc ")]), s("abc "));
        assert_eq!(ok("rtrim", vec![s(" abc")]), s(" abc"));
        assert_eq!(ok("trim", vec![s("\t  hello \r\n")]), s("hello"));
        assert_eq!(ok("ltrim", vec![s("\t  hello  \n")]), s("hello  \n"));
        assert_eq!(ok("rtrim", vec![s("\t  hello  \n")]), s("\t  hello"));
        assert_eq!(ok("rtrim", vec![s("atomaa"), s("a")]), s("atom"));
        assert_eq!(ok("rtrim", vec![s("x.,;"), s(";,.")]), s("x"));
        fails("trim", vec![Value::Null]);
        fails("ltrim", vec![i(1)]);
        fails("rtrim", vec![Value::Null, s("a")]);
    }

    #[test]
    fn t_rm_prefix() {
        assert_eq!(ok("rm_prefix", vec![s("foo/bar"), s("foo/")]), s("bar"));
        assert_eq!(ok("rm_prefix", vec![s("foo/bar"), s("xxx/")]), s("foo/bar"));
        assert_eq!(ok("rm_prefix", vec![s("foo"), s("")]), s("foo"));
        fails("rm_prefix", vec![Value::Null, s("a")]);
    }

    #[test]
    fn t_split_all() {
        assert_eq!(ok("split", vec![s(""), s("/")]), strs(&[]));
        assert_eq!(ok("split", vec![s("/"), s("/")]), strs(&[]));
        assert_eq!(ok("split", vec![s("/a/b/c"), s("/")]), strs(&["a", "b", "c"]));
        assert_eq!(ok("split", vec![s("/a/b//c/"), s("/")]), strs(&["a", "b", "c"]));
        assert_eq!(ok("split", vec![s("a, b ,c"), s(",")]), strs(&["a", " b ", "c"]));
        assert_eq!(ok("split", vec![s("a,b,c\r\n"), s(",")]), strs(&["a", "b", "c\r\n"]));
        assert_eq!(ok("split", vec![s("a;;b;;c"), s(";")]), strs(&["a", "b", "c"]));
        assert_eq!(ok("split", vec![s("x\ny\r\nz"), s("\n")]), strs(&["x", "y\r\nz"]));
        fails("split", vec![Value::Null, s("a")]);
        fails("split", vec![s("a"), i(1)]);
    }

    #[test]
    fn t_split_options() {
        assert_eq!(ok("split", vec![s(""), s("/"), s("notrim")]), strs(&[""]));
        assert_eq!(ok("split", vec![s("/"), s("/"), s("notrim")]), strs(&["", ""]));
        assert_eq!(
            ok("split", vec![s("/a/b//c/"), s("/"), s("notrim")]),
            strs(&["", "a", "b", "", "c", ""])
        );
        assert_eq!(
            ok("split", vec![s("哈哈, 你好, 是的\r\n"), s(","), s("notrim")]),
            strs(&["哈哈", " 你好", " 是的\r\n"])
        );
        assert_eq!(ok("split", vec![s(""), s("/"), s("leading")]), strs(&[]));
        assert_eq!(ok("split", vec![s("/a/b/c"), s("/"), s("leading")]), strs(&["a/b/c"]));
        assert_eq!(
            ok("split", vec![s("a/b//c/"), s("/"), s("leading")]),
            strs(&["a", "b//c/"])
        );
        assert_eq!(
            ok("split", vec![s("/a/b/c"), s("/"), s("leading_notrim")]),
            strs(&["", "a/b/c"])
        );
        assert_eq!(ok("split", vec![s("/"), s("/"), s("leading_notrim")]), strs(&["", ""]));
        assert_eq!(
            ok("split", vec![s("/a/b/c"), s("/"), s("trailing")]),
            strs(&["/a/b", "c"])
        );
        assert_eq!(
            ok("split", vec![s("a/b//c/"), s("/"), s("trailing")]),
            strs(&["a/b//c"])
        );
        assert_eq!(
            ok("split", vec![s("a/b//c/"), s("/"), s("trailing_notrim")]),
            strs(&["a/b//c", ""])
        );
        assert_eq!(ok("split", vec![s(""), s("/"), s("trailing_notrim")]), strs(&[""]));
        assert_eq!(
            ok("split", vec![s("哈哈, 你好, 是的\r\n"), s(","), s("trailing")]),
            strs(&["哈哈, 你好", " 是的\r\n"])
        );
        fails("split", vec![s("a"), s("/"), s("sideways")]);
        fails("split", vec![Value::Null, s("a"), s("notrim")]);
    }

    #[test]
    fn t_tokens() {
        assert_eq!(ok("tokens", vec![s(""), s("/")]), strs(&[]));
        assert_eq!(ok("tokens", vec![s("/"), s("/")]), strs(&[]));
        assert_eq!(ok("tokens", vec![s("/a/b//c/"), s("/")]), strs(&["a", "b", "c"]));
        assert_eq!(ok("tokens", vec![s(" /a/ b /c"), s(" /")]), strs(&["a", "b", "c"]));
        assert_eq!(ok("tokens", vec![s("a ,\nb,c\n"), s(", ")]), strs(&["a", "\nb", "c\n"]));
        assert_eq!(ok("tokens", vec![s("a ,b,c\r\n"), s(", ")]), strs(&["a", "b", "c\r\n"]));
        assert_eq!(
            ok("tokens", vec![s("a,b, c\n"), s(", "), s("nocrlf")]),
            strs(&["a", "b", "c"])
        );
        assert_eq!(
            ok("tokens", vec![s("a,b\r\n,c\n"), s(","), s("nocrlf")]),
            strs(&["a", "b", "c"])
        );
        assert_eq!(ok("tokens", vec![s("\r\n"), s(","), s("nocrlf")]), strs(&[]));
        assert_eq!(
            ok("tokens", vec![s("哈哈, 你好, 是的\r\n"), s(", "), s("nocrlf")]),
            strs(&["哈哈", "你好", "是的"])
        );
        assert_eq!(
            ok("tokens", vec![s("a\rb\nc\r\nd"), s(";"), s("nocrlf")]),
            strs(&["a", "b", "c", "d"])
        );
        assert_eq!(ok("tokens", vec![s("a,b;c,d"), s(",;")]), strs(&["a", "b", "c", "d"]));
        fails("tokens", vec![Value::Null, s("a")]);
        fails("tokens", vec![s("a"), s("a"), s("crlf")]);
    }

    #[test]
    fn t_concat() {
        assert_eq!(ok("concat", vec![s("a"), s("b")]), s("ab"));
        assert_eq!(ok("concat", vec![s("哈哈"), s("你好")]), s("哈哈你好"));
        assert_eq!(ok("concat", vec![s(""), s("a")]), s("a"));
        assert_eq!(ok("concat", vec![s(""), s("")]), s(""));
        assert_eq!(ok("concat", vec![strs(&["a", "b", "c"])]), s("abc"));
        assert_eq!(ok("concat", vec![s("n="), i(1)]), s("n=1"));
        assert_eq!(ok("concat", vec![Value::Null, f(1.5)]), s("undefined1.5"));
        fails("concat", vec![s("a")]);
        fails("concat", vec![s("a"), s("b"), s("c")]);
    }

    #[test]
    fn t_sprintf() {
        assert_eq!(ok("sprintf", vec![s("Hello ~ts!"), s("Shawn")]), s("Hello Shawn!"));
        assert_eq!(
            ok("sprintf", vec![s("Name: ~ts, Count: ~p"), s("ABC"), i(2)]),
            s("Name: ABC, Count: 2")
        );
        assert_eq!(ok("sprintf", vec![s("hello, ~s!"), s("steve")]), s("hello, steve!"));
        assert_eq!(ok("sprintf", vec![s("count: ~p~n"), i(100)]), s("count: 100\n"));
        assert_eq!(
            ok(
                "sprintf",
                vec![s("~p ~w ~p"), s("a\"b"), f(2.0), json(r#"{"b":[1,2.5],"a":null}"#)]
            ),
            s(r#"<<"a\"b">> 2.0 #{<<"a">> => undefined,<<"b">> => [1,2.5]}"#)
        );
        assert_eq!(
            ok("sprintf", vec![s("[~5s|~-5s|~.2s]"), s("ab"), s("ab"), s("abc")]),
            s("[   ab|ab   |ab]")
        );
        assert_eq!(
            ok("sprintf", vec![s("~5.2.0f|~.3f|~f"), f(3.14659), f(2.0), f(0.5)]),
            s("03.15|2.000|0.500000")
        );
        assert_eq!(
            ok(
                "sprintf",
                vec![s("~3d|~-3d|~2d|~c~3c"), i(7), i(7), i(123), i(97), i(98)]
            ),
            s("  7|7  |**|abbb")
        );
        assert_eq!(
            ok("sprintf", vec![s("~.16B ~.2b ~~ ~i."), i(255), i(5), i(1)]),
            s("FF 101 ~ .")
        );
        assert_eq!(ok("sprintf_s", vec![s("~s-~s"), strs(&["a", "b"])]), s("a-b"));
        assert_eq!(ok("sprintf_s", vec![s("none"), strs(&[])]), s("none"));
        fails("sprintf_s", vec![s("~s"), s("a")]);
        fails("sprintf_s", vec![s("~s ~s"), strs(&["a"])]);
        fails("sprintf", vec![s("~d"), s("1")]);
        fails("sprintf", vec![s("~f"), i(1)]);
        fails("sprintf", vec![s("~s ~s"), s("a")]);
        fails("sprintf", vec![s("~s"), s("a"), s("b")]);
        fails("sprintf", vec![s("~q"), s("a")]);
        fails("sprintf", vec![s("~999999999s"), s("a")]);
        fails("sprintf", vec![s("~s"), i(1)]);
    }

    #[test]
    fn erlang_float_text() {
        for (x, want) in [
            (2.0, "2.0"),
            (0.1, "0.1"),
            (1.0e20, "1.0e20"),
            (123456.0, "123456.0"),
            (1.5e-7, "1.5e-7"),
            (0.001, "0.001"),
            (-2.5, "-2.5"),
            (1.0e16, "1.0e16"),
            (100.0, "100.0"),
            (0.0001, "1.0e-4"),
        ] {
            assert_eq!(erlang_float(x), want, "{x}");
        }
    }

    #[test]
    fn t_pad() {
        assert_eq!(ok("pad", vec![s("abc"), i(5)]), s("abc  "));
        assert_eq!(ok("pad", vec![s("abc"), i(0)]), s("abc"));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("trailing")]), s("abc  "));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("both")]), s(" abc "));
        assert_eq!(ok("pad", vec![s("hello"), i(8), s("both")]), s(" hello  "));
        assert_eq!(ok("pad", vec![s("abc"), i(0), s("both")]), s("abc"));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("leading")]), s("  abc"));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("trailing"), s("e")]), s("abcee"));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("trailing"), s("ex")]), s("abcexex"));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("both"), s("ex")]), s("exabcex"));
        assert_eq!(ok("pad", vec![s("abc"), i(5), s("leading"), s("ex")]), s("exexabc"));
        assert_eq!(
            ok("pad", vec![s("hello"), i(8), s("trailing"), s("\r\n")]),
            s("hello\r\n\r\n\r\n")
        );
        fails("pad", vec![s("abc"), i(5), s("middle")]);
        fails("pad", vec![Value::Null, i(1)]);
        fails("pad", vec![s("abc"), s("5")]);
        fails("pad", vec![s("abc"), i(i64::MAX)]);
    }

    #[test]
    fn t_replace() {
        assert_eq!(ok("replace", vec![s("ab c  "), s(" "), s("-")]), s("ab-c--"));
        assert_eq!(ok("replace", vec![s("ab c  "), s(" "), s("::")]), s("ab::c::::"));
        assert_eq!(ok("replace", vec![s("ab c  "), s(" "), s("-"), s("all")]), s("ab-c--"));
        assert_eq!(
            ok("replace", vec![s("ab c  "), s(" "), s("-"), s("leading")]),
            s("ab-c  ")
        );
        assert_eq!(
            ok("replace", vec![s("ab c  "), s(" "), s("-"), s("trailing")]),
            s("ab c -")
        );
        assert_eq!(ok("replace", vec![s("ab..cd..ef"), s(".."), s("")]), s("abcdef"));
        assert_eq!(ok("replace", vec![s("abc"), s(""), s("x")]), s("abc"));
        fails("replace", vec![Value::Null, s("a"), s("b")]);
        fails("replace", vec![s("a"), s("a"), s("b"), s("first")]);
    }

    #[test]
    fn t_find() {
        assert_eq!(ok("find", vec![s("acbcd"), s("c")]), s("cbcd"));
        assert_eq!(ok("find", vec![s("acbcd"), s("c"), s("leading")]), s("cbcd"));
        assert_eq!(ok("find", vec![s("acbcd"), s("e")]), s(""));
        assert_eq!(ok("find", vec![s(""), s("c")]), s(""));
        assert_eq!(ok("find", vec![s(""), s("")]), s(""));
        assert_eq!(ok("find", vec![s("acbcd"), s("c"), s("trailing")]), s("cd"));
        assert_eq!(ok("find", vec![s("acbcd"), s("e"), s("trailing")]), s(""));
        assert_eq!(
            ok("find", vec![s("Front, Middle, End"), s(", "), s("trailing")]),
            s(", End")
        );
        fails("find", vec![Value::Null, s("a")]);
        fails("find", vec![s("a"), s("a"), s("middle")]);
    }

    #[test]
    fn t_ascii() {
        assert_eq!(ok("ascii", vec![s("a")]), i(97));
        assert_eq!(ok("ascii", vec![s("ab")]), i(97));
        assert_eq!(ok("ascii", vec![t(true)]), i(116));
        fails("ascii", vec![s("")]);
        fails("ascii", vec![Value::Null]);
        fails("ascii", vec![i(97)]);
    }

    #[test]
    fn t_regex_match() {
        assert_eq!(ok("regex_match", vec![s("acbcd"), s("c")]), t(true));
        assert_eq!(ok("regex_match", vec![s("acbcd"), s("(ac)+")]), t(true));
        assert_eq!(ok("regex_match", vec![s("bcd"), s("(ac)+")]), t(false));
        assert_eq!(ok("regex_match", vec![s(""), s(".*")]), t(true));
        assert_eq!(ok("regex_match", vec![s(""), s("[a-z]+")]), t(false));
        assert_eq!(ok("regex_match", vec![s("exebd"), s("^[a-z]+$")]), t(true));
        assert_eq!(ok("regex_match", vec![s("e2xebd"), s("^[a-z]+$")]), t(false));
        assert_eq!(ok("regex_match", vec![s("123"), s(r"^\d+$")]), t(true));
        assert_eq!(ok("regex_match", vec![s("你好"), s("你")]), t(true));
        assert_eq!(ok("regex_match", vec![b(&[0xff, 0x01]), s(r"\x01")]), t(true));
        fails("regex_match", vec![s("a"), s("(")]);
        fails("regex_match", vec![Value::Null, s("a")]);
    }

    #[test]
    fn t_regex_replace() {
        assert_eq!(ok("regex_replace", vec![s(""), s("c.*"), s("e")]), s(""));
        assert_eq!(ok("regex_replace", vec![s("accbcd"), s("c+"), s("e")]), s("aebed"));
        assert_eq!(
            ok("regex_replace", vec![s("accbcd"), s("c+"), s("[&]")]),
            s("a[cc]b[c]d")
        );
        assert_eq!(
            ok("regex_replace", vec![s("hello 123"), s(r"\d+"), s("world")]),
            s("hello world")
        );
        assert_eq!(ok("regex_replace", vec![s("a;b; c"), s(r";\s*"), s(",")]), s("a,b,c"));
        assert_eq!(
            ok("regex_replace", vec![s("ab-cd"), s(r"(\w+)-(\w+)"), s(r"\2-\g{1}\&\\")]),
            s(r"cd-ab&\")
        );
        assert_eq!(ok("regex_replace", vec![s("abc"), s("x*"), s("-")]), s("-a-b-c-"));
        fails("regex_replace", vec![s("a"), s("["), s("b")]);
        fails("regex_replace", vec![Value::Null, s("a"), s("b")]);
    }

    #[test]
    fn t_regex_extract() {
        assert_eq!(
            ok("regex_extract", vec![s("Order number: 12345"), s(r"(\d+)")]),
            strs(&["12345"])
        );
        assert_eq!(
            ok("regex_extract", vec![s("Hello, world!"), s(r"(\w+).*\s(\w+)")]),
            strs(&["Hello", "world"])
        );
        assert_eq!(ok("regex_extract", vec![s("No numbers here!"), s(r"(\d+)")]), strs(&[]));
        assert_eq!(
            ok(
                "regex_extract",
                vec![s("Date: 2021-05-20"), s(r"(\d{4})-(\d{2})-(\d{2})")]
            ),
            strs(&["2021", "05", "20"])
        );
        assert_eq!(
            ok(
                "regex_extract",
                vec![s("Contact: john.doe@example.com"), s(r"([\w\.]+@[\w\.]+)")]
            ),
            strs(&["john.doe@example.com"])
        );
        assert_eq!(ok("regex_extract", vec![s("abc"), s("b")]), strs(&[]));
        assert_eq!(ok("regex_extract", vec![s(""), s(r"(\d+)")]), strs(&[]));
        fails("regex_extract", vec![Value::Null, s("(a)")]);
        fails("regex_extract", vec![s("a"), s("(?<=a)b")]);
    }

    #[test]
    fn t_unescape() {
        for (input, want) in [
            ("\\n", "\n"),
            ("\\t", "\t"),
            ("\\r", "\r"),
            ("\\b", "\u{8}"),
            ("\\f", "\u{c}"),
            ("\\v", "\u{b}"),
            ("\\'", "'"),
            ("\\\"", "\""),
            ("\\?", "?"),
            ("\\a", "\u{7}"),
            ("\\\\", "\\"),
            ("Hello, World!", "Hello, World!"),
            ("Hello,\\t World\\n!", "Hello,\t World\n!"),
            ("\\x0A", "\n"),
            ("hej\\x0Ahej", "hej\nhej"),
            ("\\x41\\x42\\x43", "ABC"),
            ("\\xFF", "\u{ff}"),
            ("Hello, \\x57orld!", "Hello, World!"),
            ("\\x0041", "A"),
            ("\\x20AC", "€"),
            ("\\x2764", "❤"),
            ("Hello, \\x00004E16\\x0000754C", "Hello, 世界"),
            ("trailing\\", "trailing\\"),
        ] {
            assert_eq!(ok("unescape", vec![s(input)]), s(want), "{input}");
        }
        let e = call("unescape", vec![s("\\L")]).unwrap_err();
        assert!(e.message.contains("unrecognized escape sequence \\L"), "{e}");
        let e = call("unescape", vec![s("\\xG1")]).unwrap_err();
        assert!(e.message.contains("\\x"), "{e}");
        fails("unescape", vec![s("\\x11000000")]);
        fails("unescape", vec![s("\\xD800")]);
        fails("unescape", vec![Value::Null]);
    }

    #[test]
    fn t_join_to_string() {
        assert_eq!(ok("join_to_string", vec![s(","), strs(&["a", "b", "c"])]), s("a,b,c"));
        assert_eq!(ok("join_to_string", vec![s(" "), strs(&["a", "b", "c"])]), s("a b c"));
        let mixed = arr(vec![
            i(1),
            s("a"),
            s("c"),
            json(r#"{"a":1}"#),
            json("[1,2,3]"),
            json(r#"[{"key":1,"value":2}]"#),
        ]);
        assert_eq!(
            ok("join_to_string", vec![s(", "), mixed]),
            s(r#"1, a, c, {"a":1}, [1,2,3], [{"key":1,"value":2}]"#)
        );
        assert_eq!(ok("join_to_string", vec![s(","), strs(&["a"])]), s("a"));
        assert_eq!(ok("join_to_string", vec![s(","), strs(&[])]), s(""));
        let m = json(r#"{"a":"a","b":1,"c":"c"}"#);
        assert_eq!(
            ok("join_to_string", vec![ok("map_keys", vec![m.clone()])]),
            s("a, b, c")
        );
        assert_eq!(ok("join_to_string", vec![ok("map_values", vec![m])]), s("a, 1, c"));
        fails("join_to_string", vec![s("abc")]);
        fails("join_to_string", vec![i(1), strs(&["a"])]);
    }

    #[test]
    fn t_join_to_sql_values_string() {
        assert_eq!(
            ok("join_to_sql_values_string", vec![strs(&["a", "b", "c"])]),
            s("'a', 'b', 'c'")
        );
        let mixed = arr(vec![
            i(1),
            s("a"),
            s("c"),
            json(r#"{"a":1}"#),
            json("[1,2,3]"),
            json("[97,98]"),
            json(r#"[{"key":1,"value":2}]"#),
        ]);
        assert_eq!(
            ok("join_to_sql_values_string", vec![mixed]),
            s(r#"1, 'a', 'c', '{"a":1}', '[1,2,3]', '[97,98]', '[{"key":1,"value":2}]'"#)
        );
        assert_eq!(ok("join_to_sql_values_string", vec![strs(&["a"])]), s("'a'"));
        assert_eq!(ok("join_to_sql_values_string", vec![strs(&[])]), s(""));
        assert_eq!(
            ok(
                "join_to_sql_values_string",
                vec![arr(vec![Value::Null, Value::Bool(true), f(1.5), s("it's \\")])]
            ),
            s(r"NULL, 'true', 1.5, 'it\'s \\'")
        );
        let m = json(r#"{"a":"a","b":1,"c":"c"}"#);
        assert_eq!(
            ok("join_to_sql_values_string", vec![ok("map_values", vec![m])]),
            s("'a', 1, 'c'")
        );
        fails("join_to_sql_values_string", vec![s("a")]);
    }

    #[test]
    fn t_map_to_redis_hset_args() {
        let run = |v: Value| ok("map_to_redis_hset_args", vec![v]);
        assert_eq!(run(json("{}")), strs(&[]));
        assert_eq!(run(json(r#"{"a":1}"#)), strs(&["a", "1"]));
        assert_eq!(run(json(r#"{"a":1.1}"#)), strs(&["a", "1.1"]));
        assert_eq!(run(json(r#"{"a":true}"#)), strs(&["a", "true"]));
        assert_eq!(run(json(r#"{"a":false}"#)), strs(&["a", "false"]));
        assert_eq!(run(json(r#"{"a":""}"#)), strs(&["a", ""]));
        assert_eq!(run(json(r#"{"a":"i j"}"#)), strs(&["a", "i j"]));
        assert_eq!(run(json(r#"{"a":1,"b":2}"#)), strs(&["a", "1", "b", "2"]));
        assert_eq!(run(json(r#"{"a":null,"b":[1],"c":{}}"#)), strs(&[]));
        assert_eq!(run(s(r#"{"a":1}"#)), strs(&["a", "1"]));
        assert_eq!(run(s("not json")), strs(&[]));
        assert_eq!(run(strs(&["not map", "not json either"])), strs(&[]));
    }
}

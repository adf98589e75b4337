//! Topic names and topic filters: validation, wildcard matching, and the
//! `$share/<group>/<filter>` / `$queue/<filter>` forms of shared subscriptions.
//!
//! Pure functions, no broker state. Matching follows MQTT 5 §4.7: `+` matches one
//! level, `#` the rest (including the parent level), and topics starting with `$`
//! are not matched by a filter whose first level is a wildcard.

use thiserror::Error;

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    #[error("empty topic")]
    Empty,
    #[error("topic longer than {0} bytes")]
    TooLong(usize),
    #[error("topic has more than {0} levels")]
    TooManyLevels(usize),
    #[error("wildcard in a topic name")]
    WildcardInName,
    #[error("`#` must be the last level and stand alone")]
    BadMultiLevel,
    #[error("`+` must stand alone in its level")]
    BadSingleLevel,
    #[error("NUL character in topic")]
    Nul,
    #[error("invalid shared subscription")]
    BadShare,
}

/// Limits applied to names and filters (from `mqtt.max_topic_levels` and `mqtt.max_topic_length`).
#[derive(Debug, Clone, Copy)]
pub struct TopicLimits {
    pub max_levels: usize,
    pub max_length: usize,
}

impl Default for TopicLimits {
    fn default() -> Self {
        TopicLimits {
            max_levels: 128,
            max_length: 65535,
        }
    }
}

fn check_common(t: &str, limits: TopicLimits) -> Result<(), TopicError> {
    if t.is_empty() {
        return Err(TopicError::Empty);
    }
    if t.len() > limits.max_length {
        return Err(TopicError::TooLong(limits.max_length));
    }
    // One pass over the bytes (this runs for every PUBLISH).
    let mut levels = 1;
    for &b in t.as_bytes() {
        match b {
            0 => return Err(TopicError::Nul),
            b'/' => levels += 1,
            _ => {}
        }
    }
    if levels > limits.max_levels {
        return Err(TopicError::TooManyLevels(limits.max_levels));
    }
    Ok(())
}

/// Validate a topic name used in PUBLISH (no wildcards).
pub fn validate_name(t: &str, limits: TopicLimits) -> Result<(), TopicError> {
    check_common(t, limits)?;
    if t.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Validate a topic filter (the plain filter, after any `$share/<group>/` prefix is removed).
pub fn validate_filter(f: &str, limits: TopicLimits) -> Result<(), TopicError> {
    check_common(f, limits)?;
    let mut levels = f.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::BadMultiLevel);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadSingleLevel);
        }
    }
    Ok(())
}

/// A subscription filter split into its share group (if any) and the plain filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    /// `Some(group)` for `$share/group/f`; `Some("$queue")` for `$queue/f`.
    pub group: Option<&'a str>,
    pub filter: &'a str,
}

/// Split `$share/<group>/<filter>` and `$queue/<filter>`; other filters pass through.
pub fn parse_shared(f: &str) -> Result<ParsedFilter<'_>, TopicError> {
    if let Some(rest) = f.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(TopicError::BadShare);
        }
        Ok(ParsedFilter {
            group: Some(group),
            filter,
        })
    } else if let Some(filter) = f.strip_prefix("$queue/") {
        if filter.is_empty() {
            return Err(TopicError::BadShare);
        }
        Ok(ParsedFilter {
            group: Some("$queue"),
            filter,
        })
    } else if f == "$share" || f == "$queue" {
        Err(TopicError::BadShare)
    } else {
        Ok(ParsedFilter { group: None, filter: f })
    }
}

/// Whether a filter contains a wildcard.
pub fn has_wildcard(f: &str) -> bool {
    f.contains(['+', '#'])
}

/// Does `filter` match `topic`? Both must already be valid.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_per_spec() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("sport/+", "sport/"));
        assert!(!matches("sport/+", "sport"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
    }

    #[test]
    fn validation() {
        let l = TopicLimits::default();
        assert!(validate_filter("sport/tennis/#", l).is_ok());
        assert!(validate_filter("sport/tennis#", l).is_err());
        assert!(validate_filter("sport/#/ranking", l).is_err());
        assert!(validate_filter("sport+", l).is_err());
        assert!(validate_filter("+/tennis/#", l).is_ok());
        assert!(validate_filter("", l).is_err());
        assert!(validate_name("a/+", l).is_err());
        assert!(validate_name("a/b", l).is_ok());
        let small = TopicLimits {
            max_levels: 2,
            max_length: 5,
        };
        assert_eq!(validate_name("a/b/c", small), Err(TopicError::TooManyLevels(2)));
        assert_eq!(validate_name("abcdef", small), Err(TopicError::TooLong(5)));
    }

    #[test]
    fn shared() {
        let p = parse_shared("$share/g1/a/+").unwrap();
        assert_eq!(p.group, Some("g1"));
        assert_eq!(p.filter, "a/+");
        assert_eq!(parse_shared("$queue/a").unwrap().group, Some("$queue"));
        assert!(parse_shared("$share/g").is_err());
        assert!(parse_shared("$share//a").is_err());
        assert_eq!(parse_shared("a/b").unwrap().group, None);
    }
}

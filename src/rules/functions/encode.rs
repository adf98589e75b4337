//! Base64 and JSON. (`term_encode`/`term_decode`, Erlang's external term
//! format, are not provided: Junction values are not Erlang terms.)

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::{arg, arg_bin, bin_out, err, text_out, FnDef, FnError, MAX_OUTPUT};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "base64_encode",
        min_args: 1,
        max_args: Some(3),
        f: base64_encode,
    },
    FnDef {
        name: "base64_decode",
        min_args: 1,
        max_args: Some(3),
        f: base64_decode,
    },
    FnDef {
        name: "json_encode",
        min_args: 1,
        max_args: Some(1),
        f: json_encode,
    },
    FnDef {
        name: "json_decode",
        min_args: 1,
        max_args: Some(1),
        f: json_decode,
    },
];

/// The base64 engine for the options after the data: 'urlsafe' (`-` and `_`),
/// 'no_padding' (encode without `=`; decode with or without it). Other options are ignored.
fn engine(args: &[Value]) -> GeneralPurpose {
    let mut urlsafe = false;
    let mut no_padding = false;
    for opt in args.iter().skip(1) {
        match opt {
            Value::Str(s) if &**s == "urlsafe" => urlsafe = true,
            Value::Str(s) if &**s == "no_padding" => no_padding = true,
            _ => {}
        }
    }
    let config = GeneralPurposeConfig::new()
        .with_encode_padding(!no_padding)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(if no_padding {
            DecodePaddingMode::Indifferent
        } else {
            DecodePaddingMode::RequireCanonical
        });
    GeneralPurpose::new(
        if urlsafe {
            &alphabet::URL_SAFE
        } else {
            &alphabet::STANDARD
        },
        config,
    )
}

fn base64_encode(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("base64_encode", args, 0)?;
    if data.len() / 3 * 4 > MAX_OUTPUT {
        return Err(err("base64_encode", "result too large"));
    }
    Ok(text_out(engine(args).encode(data)))
}

/// Whitespace in the input is skipped.
fn base64_decode(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("base64_decode", args, 0)?;
    let cleaned: Vec<u8>;
    let input = if data.iter().any(u8::is_ascii_whitespace) {
        cleaned = data.iter().copied().filter(|c| !c.is_ascii_whitespace()).collect();
        &cleaned[..]
    } else {
        data
    };
    engine(args)
        .decode(input)
        .map(bin_out)
        .map_err(|e| err("base64_decode", format!("invalid base64: {e}")))
}

fn json_encode(args: &[Value]) -> Result<Value, FnError> {
    Ok(text_out(arg("json_encode", args, 0)?.to_json().to_string()))
}

fn json_decode(args: &[Value]) -> Result<Value, FnError> {
    let data = arg_bin("json_decode", args, 0)?;
    let j: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| err("json_decode", format!("invalid JSON: {e}")))?;
    Ok(Value::from_json(&j))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn all_bytes() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..8).map(|n| (0..n).map(|k| (k * 37 + 250) as u8).collect()).collect();
        v.push((0..=255).collect());
        for t in [
            "hello",
            "test data",
            "a",
            "ab",
            "abc",
            "abcd",
            "test+data",
            "test/data",
            "test=data",
        ] {
            v.push(t.as_bytes().to_vec());
        }
        v
    }

    #[test]
    fn t_base64_encode() {
        assert_eq!(ok("base64_encode", vec![s("hello")]), s("aGVsbG8="));
        assert_eq!(ok("base64_encode", vec![b(&[0xcb, 0x48, 0xcd])]), s("y0jN"));
        assert_eq!(ok("base64_encode", vec![s("a"), s("no_padding")]), s("YQ"));
        assert_eq!(ok("base64_encode", vec![b(&[255, 255, 255]), s("urlsafe")]), s("____"));
        assert_eq!(ok("base64_encode", vec![b(&[251, 239])]), s("++8="));
        assert_eq!(ok("base64_encode", vec![b(&[251, 239]), s("urlsafe")]), s("--8="));
        // Option order does not matter; unknown options are ignored; duplicates are harmless.
        let td = s("test data");
        assert_eq!(
            ok("base64_encode", vec![td.clone(), s("no_padding"), s("urlsafe")]),
            ok("base64_encode", vec![td.clone(), s("urlsafe"), s("no_padding")])
        );
        assert_eq!(
            ok("base64_encode", vec![td.clone(), s("unknown_option")]),
            ok("base64_encode", vec![td.clone()])
        );
        assert_eq!(
            ok("base64_encode", vec![td.clone(), s("unknown"), s("urlsafe")]),
            ok("base64_encode", vec![td.clone(), s("urlsafe")])
        );
        assert_eq!(
            ok("base64_encode", vec![td.clone(), s("no_padding"), s("no_padding")]),
            ok("base64_encode", vec![td, s("no_padding")])
        );
        fails("base64_encode", vec![i(1)]);
        fails("base64_encode", vec![Value::Null]);
    }

    #[test]
    fn t_base64_decode() {
        assert_eq!(ok("base64_decode", vec![s("aGVsbG8=")]), s("hello"));
        assert_eq!(
            ok("bin2hexstr", vec![ok("base64_decode", vec![s("y0jN")])]),
            s("CB48CD")
        );
        assert_eq!(ok("base64_decode", vec![s("aGVs\r\nbG8=")]), s("hello"));
        assert_eq!(ok("base64_decode", vec![s("aGVsbG8"), s("no_padding")]), s("hello"));
        assert_eq!(ok("base64_decode", vec![s("aGVsbG8="), s("no_padding")]), s("hello"));
        assert_eq!(
            ok("base64_decode", vec![s("____"), s("urlsafe"), s("unknown")]),
            b(&[255, 255, 255])
        );
        fails("base64_decode", vec![s("aGVsbG8")]);
        fails("base64_decode", vec![s("____")]);
        fails("base64_decode", vec![s("a===")]);
        fails("base64_decode", vec![i(1)]);
    }

    #[test]
    fn base64_round_trips_with_every_option() {
        let opts: [&[&str]; 5] = [
            &[],
            &["no_padding"],
            &["urlsafe"],
            &["no_padding", "urlsafe"],
            &["urlsafe", "no_padding"],
        ];
        for data in all_bytes() {
            for o in opts {
                let mut args = vec![b(&data)];
                args.extend(o.iter().map(|x| s(x)));
                let encoded = ok("base64_encode", args);
                let Value::Str(e) = &encoded else { panic!() };
                if o.contains(&"urlsafe") {
                    assert!(!e.contains('+') && !e.contains('/'), "{e}");
                }
                if o.contains(&"no_padding") {
                    assert!(!e.contains('='), "{e}");
                }
                let mut dargs = vec![encoded.clone()];
                dargs.extend(o.iter().rev().map(|x| s(x)));
                assert_eq!(ok("base64_decode", dargs), b(&data));
            }
        }
    }

    #[test]
    fn t_json() {
        assert_eq!(ok("json_encode", vec![json("[1,2,3]")]), s("[1,2,3]"));
        assert_eq!(
            ok("json_encode", vec![json(r#"{"b":1,"a":[true,null,1.5,"x"]}"#)]),
            s(r#"{"b":1,"a":[true,null,1.5,"x"]}"#)
        );
        assert_eq!(ok("json_encode", vec![s("x")]), s("\"x\""));
        assert_eq!(
            ok("map_get", vec![s("a"), ok("json_decode", vec![s(r#"{"a": 1}"#)])]),
            i(1)
        );
        assert_eq!(ok("json_decode", vec![s("5")]), i(5));
        assert!(matches!(ok("json_decode", vec![s("1.0")]), Value::Float(x) if x == 1.0));
        assert_eq!(ok("json_decode", vec![s(r#"{"b": null}"#)]), json(r#"{"b":null}"#));
        fails("json_decode", vec![s("{bad")]);
        fails("json_decode", vec![s("")]);
        fails("json_decode", vec![json("{}")]);
    }
}

//! Bitwise operations on integers, and bit-level access to binaries
//! (`bitsize`, `bytesize`, `subbits`).
//!
//! Erlang integers are unbounded; here they are 64-bit, so a shift or an
//! extracted integer that does not fit is an error. Junction has no bitstring
//! value: `subbits(..., 'bits', ...)` of a length that is not a multiple of 8
//! gives the bits right-aligned in whole bytes (zero bits in front), which keeps
//! their value (`bin2hexstr` of the 6 bits 100111 is '27', as in EMQX).

use super::{arg, arg_bin, arg_int, bad_arg, err, FnDef, FnError};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "bitnot",
        min_args: 1,
        max_args: Some(1),
        f: bitnot,
    },
    FnDef {
        name: "bitand",
        min_args: 2,
        max_args: Some(2),
        f: bitand,
    },
    FnDef {
        name: "bitor",
        min_args: 2,
        max_args: Some(2),
        f: bitor,
    },
    FnDef {
        name: "bitxor",
        min_args: 2,
        max_args: Some(2),
        f: bitxor,
    },
    FnDef {
        name: "bitsl",
        min_args: 2,
        max_args: Some(2),
        f: bitsl,
    },
    FnDef {
        name: "bitsr",
        min_args: 2,
        max_args: Some(2),
        f: bitsr,
    },
    FnDef {
        name: "bitsize",
        min_args: 1,
        max_args: Some(1),
        f: bitsize,
    },
    FnDef {
        name: "bytesize",
        min_args: 1,
        max_args: Some(1),
        f: bytesize,
    },
    FnDef {
        name: "subbits",
        min_args: 2,
        max_args: Some(6),
        f: subbits,
    },
];

fn bitnot(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(!arg_int("bitnot", args, 0)?))
}

fn bitand(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(arg_int("bitand", args, 0)? & arg_int("bitand", args, 1)?))
}

fn bitor(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(arg_int("bitor", args, 0)? | arg_int("bitor", args, 1)?))
}

fn bitxor(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(arg_int("bitxor", args, 0)? ^ arg_int("bitxor", args, 1)?))
}

fn shift_left(function: &'static str, x: i64, n: u64) -> Result<Value, FnError> {
    if x == 0 {
        return Ok(Value::Int(0));
    }
    if n >= 64 {
        return Err(err(function, "the result does not fit a 64-bit integer"));
    }
    let wide = i128::from(x) << n;
    i64::try_from(wide)
        .map(Value::Int)
        .map_err(|_| err(function, "the result does not fit a 64-bit integer"))
}

fn shift_right(x: i64, n: u64) -> Value {
    Value::Int(x >> n.min(63))
}

/// `bitsl(X, N)`: `X * 2^N` (a negative `N` shifts right).
fn bitsl(args: &[Value]) -> Result<Value, FnError> {
    let (x, n) = (arg_int("bitsl", args, 0)?, arg_int("bitsl", args, 1)?);
    if n >= 0 {
        shift_left("bitsl", x, n.unsigned_abs())
    } else {
        Ok(shift_right(x, n.unsigned_abs()))
    }
}

/// `bitsr(X, N)`: arithmetic shift right (a negative `N` shifts left).
fn bitsr(args: &[Value]) -> Result<Value, FnError> {
    let (x, n) = (arg_int("bitsr", args, 0)?, arg_int("bitsr", args, 1)?);
    if n >= 0 {
        Ok(shift_right(x, n.unsigned_abs()))
    } else {
        shift_left("bitsr", x, n.unsigned_abs())
    }
}

fn bitsize(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Int(arg_bin("bitsize", args, 0)?.len() as i64 * 8))
}

/// Bytes of a binary, or of an iolist (an array of binaries, byte values and iolists).
fn bytesize(args: &[Value]) -> Result<Value, FnError> {
    fn size(v: &Value, depth: usize) -> Option<usize> {
        match v {
            Value::Str(s) => Some(s.len()),
            Value::Bytes(b) => Some(b.len()),
            Value::Int(0..=255) => Some(1),
            Value::Array(items) if depth < 64 => {
                items.iter().try_fold(0usize, |acc, x| Some(acc + size(x, depth + 1)?))
            }
            _ => None,
        }
    }
    let v = arg("bytesize", args, 0)?;
    size(v, 0)
        .map(|n| Value::Int(n as i64))
        .ok_or_else(|| bad_arg("bytesize", 0, "a binary or an iolist", v))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Float,
    Bits,
}

/// `subbits(Bin, Len)`, `subbits(Bin, Start, Len[, Type[, Signedness[, Endianness]]])`:
/// `Len` bits from bit `Start` (1-based), as an 'integer' (default), 'float' or
/// 'bits'; 'unsigned' (default) or 'signed'; 'big' (default) or 'little'.
/// Fewer bits than `Len` left: the rest is taken. `Start` past the end: undefined.
fn subbits(args: &[Value]) -> Result<Value, FnError> {
    const F: &str = "subbits";
    let bin = arg_bin(F, args, 0)?;
    let (start, len) = if args.len() == 2 {
        (1, arg_int(F, args, 1)?)
    } else {
        (arg_int(F, args, 1)?, arg_int(F, args, 2)?)
    };
    let opt = |i: usize, default: &'static [u8]| -> Result<&[u8], FnError> {
        if args.len() > i {
            arg_bin(F, args, i)
        } else {
            Ok(default)
        }
    };
    let (kind, signedness, endianness) = (opt(3, b"integer")?, opt(4, b"unsigned")?, opt(5, b"big")?);

    let total = bin.len() as u64 * 8;
    let begin = match u64::try_from(start.saturating_sub(1)) {
        Ok(b) if b < total => b,
        _ => return Ok(Value::Null),
    };
    let rest = total - begin;

    let kind = match kind {
        b"integer" => Kind::Integer,
        b"float" => Kind::Float,
        b"bits" => Kind::Bits,
        _ => return Err(err(F, "type must be 'integer', 'float' or 'bits'")),
    };
    let signed = match signedness {
        b"unsigned" => false,
        b"signed" => true,
        _ => return Err(err(F, "signedness must be 'signed' or 'unsigned'")),
    };
    let little = match endianness {
        b"big" => false,
        b"little" => true,
        _ => return Err(err(F, "endianness must be 'big' or 'little'")),
    };

    let seg = |n: u64| Segment {
        bin,
        begin,
        len: n,
        little,
    };
    if let Some(n) = u64::try_from(len).ok().filter(|n| *n <= rest) {
        if let Some(v) = extract(seg(n), kind, signed)? {
            return Ok(v);
        }
    }
    extract(seg(rest), kind, signed)?.ok_or_else(|| err(F, "the bits do not form a float of 16, 32 or 64 bits"))
}

struct Segment<'a> {
    bin: &'a [u8],
    begin: u64,
    len: u64,
    little: bool,
}

impl Segment<'_> {
    fn bit(&self, k: u64) -> u8 {
        let idx = self.begin + k;
        let byte = self.bin.get((idx / 8) as usize).copied().unwrap_or(0);
        (byte >> (7 - idx % 8)) & 1
    }

    /// The segment's bits, most significant first (a little-endian segment's
    /// bytes are reversed; its trailing partial byte holds the high bits).
    fn bits(&self) -> impl Iterator<Item = u8> + '_ {
        let full = self.len / 8;
        let order: Box<dyn Iterator<Item = u64>> = if self.little {
            Box::new((full * 8..self.len).chain((0..full).rev().flat_map(|b| b * 8..b * 8 + 8)))
        } else {
            Box::new(0..self.len)
        };
        order.map(move |k| self.bit(k))
    }
}

/// `None` when the bits cannot be read as asked (a float of another size, or NaN/infinity).
fn extract(seg: Segment, kind: Kind, signed: bool) -> Result<Option<Value>, FnError> {
    match kind {
        Kind::Integer => integer(&seg, signed).map(|n| Some(Value::Int(n))),
        Kind::Float => Ok(float(&seg).map(Value::Float)),
        Kind::Bits => {
            // Right-aligned in whole bytes.
            let pad = (8 - seg.len % 8) % 8;
            let mut out = vec![0u8; ((seg.len + pad) / 8) as usize];
            for (k, bit) in (0..seg.len).map(|k| seg.bit(k)).enumerate() {
                let pos = k as u64 + pad;
                if let Some(byte) = out.get_mut((pos / 8) as usize) {
                    *byte |= bit << (7 - pos % 8);
                }
            }
            Ok(Some(Value::Bytes(out.into())))
        }
    }
}

fn integer(seg: &Segment, signed: bool) -> Result<i64, FnError> {
    let too_big = || err("subbits", "the integer does not fit 64 bits");
    let mut bits = seg.bits().peekable();
    let sign = if signed { bits.peek().copied().unwrap_or(0) } else { 0 };
    // Skip leading bits equal to the sign (they carry no value), then accumulate.
    let mut acc: i128 = if sign == 1 { -1 } else { 0 };
    let mut significant = 0u32;
    for bit in bits {
        if significant == 0 && bit == sign {
            continue;
        }
        significant += 1;
        if significant > 64 {
            return Err(too_big());
        }
        acc = (acc << 1) | i128::from(bit);
    }
    i64::try_from(acc).map_err(|_| too_big())
}

fn float(seg: &Segment) -> Option<f64> {
    if !matches!(seg.len, 16 | 32 | 64) {
        return None;
    }
    let raw = seg.bits().fold(0u64, |acc, b| (acc << 1) | u64::from(b));
    let x = match seg.len {
        64 => f64::from_bits(raw),
        32 => f64::from(f32::from_bits(raw as u32)),
        _ => half_to_f64(raw as u16),
    };
    x.is_finite().then_some(x)
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    match exp {
        0 => sign * mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => sign * (1.0 + mant / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn xorshift(seed: &mut u64) -> i64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed as i64
    }

    #[test]
    fn t_bitnot_and_or_xor() {
        assert_eq!(ok("bitnot", vec![i(10)]), i(-11));
        assert_eq!(ok("bitnot", vec![i(-12)]), i(11));
        assert_eq!(ok("bitand", vec![i(10), i(8)]), i(8));
        assert_eq!(ok("bitand", vec![i(-10), i(-8)]), i(-16));
        assert_eq!(ok("bitor", vec![i(10), i(8)]), i(10));
        assert_eq!(ok("bitor", vec![i(-10), i(-8)]), i(-2));
        assert_eq!(ok("bitxor", vec![i(10), i(8)]), i(2));
        assert_eq!(ok("bitxor", vec![i(-10), i(-8)]), i(14));
        let mut seed = 0x9e3779b97f4a7c15;
        for _ in 0..200 {
            let (x, y) = (xorshift(&mut seed), xorshift(&mut seed));
            assert_eq!(ok("bitnot", vec![i(x)]), i(!x));
            assert_eq!(ok("bitand", vec![i(x), i(y)]), i(x & y));
            assert_eq!(ok("bitor", vec![i(x), i(y)]), i(x | y));
            assert_eq!(ok("bitxor", vec![i(x), i(y)]), i(x ^ y));
        }
        fails("bitnot", vec![f(1.0)]);
        fails("bitand", vec![i(1), s("1")]);
        fails("bitor", vec![Value::Null, i(1)]);
        fails("bitxor", vec![i(1), f(2.0)]);
    }

    #[test]
    fn t_bitsl_bitsr() {
        assert_eq!(ok("bitsl", vec![i(8), i(2)]), i(32));
        assert_eq!(ok("bitsl", vec![i(-8), i(2)]), i(-32));
        assert_eq!(ok("bitsl", vec![i(8), i(-2)]), i(2));
        assert_eq!(ok("bitsl", vec![i(0), i(1000)]), i(0));
        assert_eq!(ok("bitsr", vec![i(8), i(2)]), i(2));
        assert_eq!(ok("bitsr", vec![i(8), i(4)]), i(0));
        assert_eq!(ok("bitsr", vec![i(-8), i(2)]), i(-2));
        assert_eq!(ok("bitsr", vec![i(-8), i(6)]), i(-1));
        assert_eq!(ok("bitsr", vec![i(-8), i(1000)]), i(-1));
        assert_eq!(ok("bitsr", vec![i(1), i(-3)]), i(8));
        assert_eq!(ok("bitsl", vec![i(1), i(62)]), i(1 << 62));
        assert_eq!(ok("bitsl", vec![i(-1), i(63)]), i(i64::MIN));
        fails("bitsl", vec![i(1), i(63)]);
        fails("bitsl", vec![i(3), i(64)]);
        fails("bitsr", vec![i(1), i(-64)]);
        fails("bitsl", vec![s("1"), i(1)]);
    }

    #[test]
    fn t_bitsize_bytesize() {
        assert_eq!(ok("bitsize", vec![s("a")]), i(8));
        assert_eq!(ok("bitsize", vec![s("abc")]), i(24));
        assert_eq!(ok("bitsize", vec![s("你好")]), i(48));
        fails("bitsize", vec![i(1)]);
        assert_eq!(ok("bytesize", vec![s("a")]), i(1));
        assert_eq!(ok("bytesize", vec![s("")]), i(0));
        assert_eq!(ok("bytesize", vec![s("你好")]), i(6));
        assert_eq!(
            ok("bytesize", vec![arr(vec![s("ab"), i(1), arr(vec![b(&[1, 2])])])]),
            i(5)
        );
        fails("bytesize", vec![i(256)]);
        fails("bytesize", vec![Value::Null]);
    }

    #[test]
    fn t_subbits() {
        let ff = b(&[255]);
        for (n, want) in [(1, 1), (2, 3), (3, 7), (4, 15), (5, 31), (6, 63), (7, 127), (8, 255)] {
            assert_eq!(ok("subbits", vec![ff.clone(), i(n)]), i(want));
            assert_eq!(ok("subbits", vec![ff.clone(), i(1), i(n)]), i(want));
            assert_eq!(ok("subbits", vec![ff.clone(), i(2), i(n)]), i(want.min(127)));
        }
        let bin = ok("hexstr2bin", vec![s("9F4E58")]);
        assert_eq!(ok("subbits", vec![bin.clone(), i(8)]), i(159));
        assert_eq!(ok("subbits", vec![bin.clone(), i(16)]), i(40782));
        assert_eq!(ok("subbits", vec![bin.clone(), i(9), i(8)]), i(78));
        assert_eq!(
            ok("subbits", vec![ok("base64_decode", vec![s("n05Y")]), i(9), i(4)]),
            i(4)
        );
        assert_eq!(ok("subbits", vec![bin.clone(), i(25), i(8)]), Value::Null);
        assert_eq!(ok("subbits", vec![bin.clone(), i(0), i(8)]), Value::Null);
        assert_eq!(ok("subbits", vec![bin.clone(), i(17), i(100)]), i(0x58));
        fails("subbits", vec![s("a"), s("1")]);
        fails("subbits", vec![i(1), i(1)]);
    }

    #[test]
    fn t_subbits_typed() {
        let bin = ok("hexstr2bin", vec![s("9F4E58")]);
        let typed = |t: &str, sg: &str, e: &str| ok("subbits", vec![bin.clone(), i(1), i(16), s(t), s(sg), s(e)]);
        assert_eq!(typed("integer", "unsigned", "big"), i(40782));
        assert_eq!(typed("integer", "signed", "big"), i(-24754));
        assert_eq!(typed("integer", "unsigned", "little"), i(20127));
        assert_eq!(typed("float", "unsigned", "big"), f(-0.00713348388671875));
        assert_eq!(typed("float", "signed", "big"), f(-0.00713348388671875));
        let be32 = |n: i32| b(&n.to_be_bytes());
        let sub6 = |bin: Value, t: &str, sg: &str| ok("subbits", vec![bin, i(1), i(32), s(t), s(sg), s("big")]);
        assert_eq!(sub6(be32(456), "integer", "signed"), i(456));
        assert_eq!(sub6(be32(-456), "integer", "signed"), i(-456));
        assert_eq!(
            ok("subbits", vec![be32(456), i(1), i(32), s("integer"), s("unsigned")]),
            i(456)
        );
        let be64 = |x: f64| b(&x.to_be_bytes());
        assert_eq!(
            ok(
                "subbits",
                vec![be64(5.3), i(1), i(64), s("float"), s("unsigned"), s("big")]
            ),
            f(5.3)
        );
        assert_eq!(
            ok(
                "subbits",
                vec![be64(-5.3), i(1), i(64), s("float"), s("signed"), s("big")]
            ),
            f(-5.3)
        );
        assert_eq!(ok("subbits", vec![be64(5.3), i(1), i(64), s("float")]), f(5.3));
        assert_eq!(
            ok(
                "subbits",
                vec![
                    b(&1.5f32.to_le_bytes()),
                    i(1),
                    i(32),
                    s("float"),
                    s("unsigned"),
                    s("little")
                ]
            ),
            f(1.5)
        );
        // 12 little-endian bits: the partial byte holds the high bits.
        assert_eq!(
            ok(
                "subbits",
                vec![b(&[0xBC, 0xA0]), i(1), i(12), s("integer"), s("unsigned"), s("little")]
            ),
            i(0xABC)
        );
        fails("subbits", vec![bin.clone(), i(1), i(16), s("string")]);
        fails("subbits", vec![bin.clone(), i(1), i(16), s("integer"), s("maybe")]);
        fails(
            "subbits",
            vec![bin.clone(), i(1), i(16), s("integer"), s("signed"), s("middle")],
        );
        fails("subbits", vec![bin.clone(), i(1), i(12), s("float")]);
        fails("subbits", vec![b(&[0xff; 8]), i(1), i(64), s("float")]);
        fails("subbits", vec![b(&[0xff; 9]), i(1), i(72), s("integer"), s("unsigned")]);
        assert_eq!(
            ok("subbits", vec![b(&[0xff; 9]), i(1), i(72), s("integer"), s("signed")]),
            i(-1)
        );
        assert_eq!(
            ok("subbits", vec![b(&[0xff; 8]), i(1), i(64), s("integer"), s("signed")]),
            i(-1)
        );
        fails("subbits", vec![b(&[0xff; 8]), i(1), i(64)]);
    }

    #[test]
    fn t_subbits_bits() {
        let bin = ok("hexstr2bin", vec![s("9F4E58")]);
        let r = ok(
            "subbits",
            vec![bin.clone(), i(1), i(6), s("bits"), s("unsigned"), s("big")],
        );
        assert_eq!(ok("bin2hexstr", vec![r]), s("27"));
        let r = ok(
            "subbits",
            vec![bin.clone(), i(9), i(16), s("bits"), s("signed"), s("little")],
        );
        assert_eq!(ok("bin2hexstr", vec![r]), s("4E58"));
        let r = ok("subbits", vec![bin, i(5), i(8), s("bits")]);
        assert_eq!(ok("bin2hexstr", vec![r]), s("F4"));
    }
}

//! Mathematical functions, `random()`, and the arithmetic EMQX exposes as
//! functions (`div`, `mod`, `eq`; the operators `+ - * /` as helpers for the
//! evaluator).
//!
//! As in Erlang, arguments must be numbers (a numeric string is a bad
//! argument), and a result Erlang cannot represent (NaN, infinity: `sqrt(-1)`,
//! `log(0)`, `exp(1000)`) is an error (`badarith`).

use super::{arg, arg_num, bad_arg, err, str_bytes, FnDef, FnError};
use crate::rules::value::Value;

pub(super) const FUNCTIONS: &[FnDef] = &[
    FnDef {
        name: "abs",
        min_args: 1,
        max_args: Some(1),
        f: abs,
    },
    FnDef {
        name: "acos",
        min_args: 1,
        max_args: Some(1),
        f: acos,
    },
    FnDef {
        name: "acosh",
        min_args: 1,
        max_args: Some(1),
        f: acosh,
    },
    FnDef {
        name: "asin",
        min_args: 1,
        max_args: Some(1),
        f: asin,
    },
    FnDef {
        name: "asinh",
        min_args: 1,
        max_args: Some(1),
        f: asinh,
    },
    FnDef {
        name: "atan",
        min_args: 1,
        max_args: Some(1),
        f: atan,
    },
    FnDef {
        name: "atanh",
        min_args: 1,
        max_args: Some(1),
        f: atanh,
    },
    FnDef {
        name: "ceil",
        min_args: 1,
        max_args: Some(1),
        f: ceil,
    },
    FnDef {
        name: "cos",
        min_args: 1,
        max_args: Some(1),
        f: cos,
    },
    FnDef {
        name: "cosh",
        min_args: 1,
        max_args: Some(1),
        f: cosh,
    },
    FnDef {
        name: "exp",
        min_args: 1,
        max_args: Some(1),
        f: exp,
    },
    FnDef {
        name: "floor",
        min_args: 1,
        max_args: Some(1),
        f: floor,
    },
    FnDef {
        name: "fmod",
        min_args: 2,
        max_args: Some(2),
        f: fmod,
    },
    FnDef {
        name: "log",
        min_args: 1,
        max_args: Some(1),
        f: log,
    },
    FnDef {
        name: "log10",
        min_args: 1,
        max_args: Some(1),
        f: log10,
    },
    FnDef {
        name: "log2",
        min_args: 1,
        max_args: Some(1),
        f: log2,
    },
    FnDef {
        name: "power",
        min_args: 2,
        max_args: Some(2),
        f: power,
    },
    FnDef {
        name: "random",
        min_args: 0,
        max_args: Some(0),
        f: random,
    },
    FnDef {
        name: "round",
        min_args: 1,
        max_args: Some(1),
        f: round,
    },
    FnDef {
        name: "sin",
        min_args: 1,
        max_args: Some(1),
        f: sin,
    },
    FnDef {
        name: "sinh",
        min_args: 1,
        max_args: Some(1),
        f: sinh,
    },
    FnDef {
        name: "sqrt",
        min_args: 1,
        max_args: Some(1),
        f: sqrt,
    },
    FnDef {
        name: "tan",
        min_args: 1,
        max_args: Some(1),
        f: tan,
    },
    FnDef {
        name: "tanh",
        min_args: 1,
        max_args: Some(1),
        f: tanh,
    },
    FnDef {
        name: "div",
        min_args: 2,
        max_args: Some(2),
        f: int_div,
    },
    FnDef {
        name: "mod",
        min_args: 2,
        max_args: Some(2),
        f: int_mod,
    },
    FnDef {
        name: "eq",
        min_args: 2,
        max_args: Some(2),
        f: eq,
    },
];

/// A float result, or `badarith` when it is NaN or infinite (Erlang has neither).
fn finite(function: &'static str, x: f64) -> Result<Value, FnError> {
    if x.is_finite() {
        Ok(Value::Float(x))
    } else {
        Err(err(function, "bad arithmetic: the result is not a finite number"))
    }
}

fn unary(function: &'static str, args: &[Value], op: fn(f64) -> f64) -> Result<Value, FnError> {
    finite(function, op(arg_num(function, args, 0)?))
}

/// A float to an integer, as Erlang's `ceil`/`floor`/`round` do (error past i64).
fn float_to_int(function: &'static str, x: f64) -> Result<Value, FnError> {
    super::float_to_i64(x)
        .map(Value::Int)
        .ok_or_else(|| err(function, "the result does not fit a 64-bit integer"))
}

fn abs(args: &[Value]) -> Result<Value, FnError> {
    // EMQX's code only takes integers, but its documentation shows abs(-1.2) = 1.2: floats are accepted.
    match arg("abs", args, 0)? {
        Value::Int(n) => n
            .checked_abs()
            .map(Value::Int)
            .ok_or_else(|| err("abs", "integer overflow")),
        Value::Float(x) => Ok(Value::Float(x.abs())),
        v => Err(bad_arg("abs", 0, "a number", v)),
    }
}

fn acos(args: &[Value]) -> Result<Value, FnError> {
    unary("acos", args, f64::acos)
}
fn acosh(args: &[Value]) -> Result<Value, FnError> {
    unary("acosh", args, f64::acosh)
}
fn asin(args: &[Value]) -> Result<Value, FnError> {
    unary("asin", args, f64::asin)
}
fn asinh(args: &[Value]) -> Result<Value, FnError> {
    unary("asinh", args, f64::asinh)
}
fn atan(args: &[Value]) -> Result<Value, FnError> {
    unary("atan", args, f64::atan)
}
fn atanh(args: &[Value]) -> Result<Value, FnError> {
    unary("atanh", args, f64::atanh)
}
fn cos(args: &[Value]) -> Result<Value, FnError> {
    unary("cos", args, f64::cos)
}
fn cosh(args: &[Value]) -> Result<Value, FnError> {
    unary("cosh", args, f64::cosh)
}
fn exp(args: &[Value]) -> Result<Value, FnError> {
    unary("exp", args, f64::exp)
}
fn log(args: &[Value]) -> Result<Value, FnError> {
    unary("log", args, f64::ln)
}
fn log10(args: &[Value]) -> Result<Value, FnError> {
    unary("log10", args, f64::log10)
}
fn log2(args: &[Value]) -> Result<Value, FnError> {
    unary("log2", args, f64::log2)
}
fn sin(args: &[Value]) -> Result<Value, FnError> {
    unary("sin", args, f64::sin)
}
fn sinh(args: &[Value]) -> Result<Value, FnError> {
    unary("sinh", args, f64::sinh)
}
fn sqrt(args: &[Value]) -> Result<Value, FnError> {
    unary("sqrt", args, f64::sqrt)
}
fn tan(args: &[Value]) -> Result<Value, FnError> {
    unary("tan", args, f64::tan)
}
fn tanh(args: &[Value]) -> Result<Value, FnError> {
    unary("tanh", args, f64::tanh)
}

/// `ceil`, `floor`, `round`: integers stay as they are; floats become integers.
fn rounding(function: &'static str, args: &[Value], op: fn(f64) -> f64) -> Result<Value, FnError> {
    match arg(function, args, 0)? {
        Value::Int(n) => Ok(Value::Int(*n)),
        Value::Float(x) => float_to_int(function, op(*x)),
        v => Err(bad_arg(function, 0, "a number", v)),
    }
}

fn ceil(args: &[Value]) -> Result<Value, FnError> {
    rounding("ceil", args, f64::ceil)
}
fn floor(args: &[Value]) -> Result<Value, FnError> {
    rounding("floor", args, f64::floor)
}
/// Half away from zero, like Erlang's `round/1`.
fn round(args: &[Value]) -> Result<Value, FnError> {
    rounding("round", args, f64::round)
}

fn fmod(args: &[Value]) -> Result<Value, FnError> {
    let (x, y) = (arg_num("fmod", args, 0)?, arg_num("fmod", args, 1)?);
    finite("fmod", x % y)
}

fn power(args: &[Value]) -> Result<Value, FnError> {
    let (x, y) = (arg_num("power", args, 0)?, arg_num("power", args, 1)?);
    finite("power", x.powf(y))
}

/// A uniform float in [0, 1).
fn random(_args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Float(rand::random::<f64>()))
}

/// `div(X, Y)`: integer division truncating toward zero.
fn int_div(args: &[Value]) -> Result<Value, FnError> {
    let (x, y) = int_pair("div", args)?;
    if y == 0 {
        return Err(err("div", "division by zero"));
    }
    x.checked_div(y)
        .map(Value::Int)
        .ok_or_else(|| err("div", "integer overflow"))
}

/// `mod(X, Y)`: Erlang's `rem` (the result has the sign of X).
fn int_mod(args: &[Value]) -> Result<Value, FnError> {
    let (x, y) = int_pair("mod", args)?;
    if y == 0 {
        return Err(err("mod", "division by zero"));
    }
    Ok(Value::Int(x.checked_rem(y).unwrap_or(0)))
}

fn int_pair(function: &'static str, args: &[Value]) -> Result<(i64, i64), FnError> {
    match (arg(function, args, 0)?, arg(function, args, 1)?) {
        (Value::Int(x), Value::Int(y)) => Ok((*x, *y)),
        (Value::Int(_), v) => Err(bad_arg(function, 1, "an integer", v)),
        (v, _) => Err(bad_arg(function, 0, "an integer", v)),
    }
}

/// `eq(X, Y)`: Erlang `==` (1 equals 1.0).
fn eq(args: &[Value]) -> Result<Value, FnError> {
    Ok(Value::Bool(arg("eq", args, 0)? == arg("eq", args, 1)?))
}

// --- Operators, for the evaluator ------------------------------------------------

/// Integer arithmetic that overflows i64 falls back to floats (Erlang has big integers).
fn arith(
    function: &'static str,
    x: &Value,
    y: &Value,
    int_op: fn(i64, i64) -> Option<i64>,
    float_op: fn(f64, f64) -> f64,
) -> Result<Value, FnError> {
    match (x, y) {
        (Value::Int(a), Value::Int(b)) => match int_op(*a, *b) {
            Some(n) => Ok(Value::Int(n)),
            None => finite(function, float_op(*a as f64, *b as f64)),
        },
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            finite(function, float_op(num(x), num(y)))
        }
        (Value::Int(_) | Value::Float(_), v) => Err(bad_arg(function, 1, "a number", v)),
        (v, _) => Err(bad_arg(function, 0, "a number", v)),
    }
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Int(n) => *n as f64,
        Value::Float(x) => *x,
        _ => f64::NAN,
    }
}

/// `X + Y`: numbers add; if either side is a string both are turned into text and concatenated.
pub fn add(x: &Value, y: &Value) -> Result<Value, FnError> {
    if matches!(x, Value::Str(_) | Value::Bytes(_)) || matches!(y, Value::Str(_) | Value::Bytes(_)) {
        let mut out = str_bytes(x).into_owned();
        out.extend_from_slice(&str_bytes(y));
        return Ok(super::bin_out(out));
    }
    arith("+", x, y, i64::checked_add, |a, b| a + b)
}

/// `X - Y`.
pub fn sub(x: &Value, y: &Value) -> Result<Value, FnError> {
    arith("-", x, y, i64::checked_sub, |a, b| a - b)
}

/// `X * Y`.
pub fn mul(x: &Value, y: &Value) -> Result<Value, FnError> {
    arith("*", x, y, i64::checked_mul, |a, b| a * b)
}

/// `X / Y`: always a float, as Erlang's `/`; dividing by zero is an error.
pub fn divide(x: &Value, y: &Value) -> Result<Value, FnError> {
    let (a, b) = match (x, y) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => (num(x), num(y)),
        (Value::Int(_) | Value::Float(_), v) => return Err(bad_arg("/", 1, "a number", v)),
        (v, _) => return Err(bad_arg("/", 0, "a number", v)),
    };
    if b == 0.0 {
        return Err(err("/", "division by zero"));
    }
    finite("/", a / b)
}

#[cfg(test)]
#[allow(clippy::approx_constant)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn approx(v: Value, want: f64) {
        match v {
            Value::Float(x) => assert!((x - want).abs() < 1e-12, "{x} != {want}"),
            other => panic!("expected float, got {other:?}"),
        }
    }

    // Documented examples, plus the suite's property: each equals Erlang's math:F(X).
    #[test]
    fn trigonometry_and_hyperbolic() {
        approx(ok("acos", vec![f(0.5)]), 1.0471975511965976);
        approx(ok("asin", vec![f(0.5)]), 0.5235987755982988);
        approx(ok("atan", vec![f(0.5)]), 0.46364760900080615);
        approx(ok("acosh", vec![f(1.5)]), 0.9624236501192069);
        approx(ok("asinh", vec![f(0.5)]), 0.48121182505960347);
        approx(ok("atanh", vec![f(0.5)]), 0.5493061443340549);
        approx(ok("cos", vec![f(0.5)]), 0.8775825618903728);
        approx(ok("cosh", vec![f(0.5)]), 1.1276259652063807);
        approx(ok("sin", vec![f(0.5)]), 0.479425538604203);
        approx(ok("sinh", vec![f(0.5)]), 0.5210953054937474);
        approx(ok("tan", vec![f(0.5)]), 0.5463024898437905);
        approx(ok("tanh", vec![f(0.5)]), 0.46211715726000974);
        approx(ok("cos", vec![i(0)]), 1.0);
        // Out of domain: Erlang raises badarith.
        fails("acos", vec![i(2)]);
        fails("asin", vec![f(-1.5)]);
        fails("acosh", vec![f(0.5)]);
        fails("atanh", vec![i(1)]);
        // Not numbers.
        fails("sin", vec![s("0.5")]);
        fails("tan", vec![Value::Null]);
        fails("cosh", vec![i(1000)]);
    }

    /// The suite's property: each function equals Erlang's math:F(X) for positive integers.
    #[test]
    fn unary_functions_agree_with_libm_and_reject_non_numbers() {
        type Op = fn(f64) -> f64;
        let fns: [(&str, Op); 17] = [
            ("acos", f64::acos),
            ("acosh", f64::acosh),
            ("asin", f64::asin),
            ("asinh", f64::asinh),
            ("atan", f64::atan),
            ("atanh", f64::atanh),
            ("cos", f64::cos),
            ("cosh", f64::cosh),
            ("exp", f64::exp),
            ("log", f64::ln),
            ("log10", f64::log10),
            ("log2", f64::log2),
            ("sin", f64::sin),
            ("sinh", f64::sinh),
            ("sqrt", f64::sqrt),
            ("tan", f64::tan),
            ("tanh", f64::tanh),
        ];
        for (name, op) in fns {
            for x in [0.5, 1.0, 2.0, 3.0, 100.0, 709.0] {
                let want = op(x);
                match call(name, vec![f(x)]) {
                    Ok(Value::Float(got)) => assert_eq!(got, want, "{name}({x})"),
                    Ok(other) => panic!("{name}({x}) = {other:?}"),
                    Err(_) => assert!(!want.is_finite(), "{name}({x}) failed but is {want}"),
                }
            }
            fails(name, vec![s("1")]);
            fails(name, vec![Value::Null]);
            fails(name, vec![json("[1]")]);
        }
    }

    #[test]
    fn exp_log_power_sqrt() {
        approx(ok("exp", vec![i(1)]), std::f64::consts::E);
        approx(ok("log", vec![f(7.38905609893065)]), 2.0);
        approx(ok("log10", vec![i(100)]), 2.0);
        approx(ok("log2", vec![i(8)]), 3.0);
        approx(ok("log2", vec![f(8.5)]), 3.0874628412503395);
        approx(ok("power", vec![i(2), i(3)]), 8.0);
        approx(ok("sqrt", vec![i(9)]), 3.0);
        fails("exp", vec![i(710)]);
        fails("log", vec![i(0)]);
        fails("log10", vec![i(-1)]);
        fails("log2", vec![s("8")]);
        fails("sqrt", vec![i(-1)]);
        fails("power", vec![i(10), i(400)]);
        fails("power", vec![s("2"), i(3)]);
    }

    #[test]
    fn abs_ceil_floor_round_fmod() {
        assert_eq!(ok("abs", vec![i(-12)]), i(12));
        assert_eq!(ok("abs", vec![f(-1.2)]), f(1.2));
        fails("abs", vec![s("-1")]);
        fails("abs", vec![i(i64::MIN)]);
        assert!(matches!(ok("ceil", vec![f(0.8)]), Value::Int(1)));
        assert!(matches!(ok("ceil", vec![i(3)]), Value::Int(3)));
        assert!(matches!(ok("floor", vec![f(3.6)]), Value::Int(3)));
        assert!(matches!(ok("floor", vec![f(-3.2)]), Value::Int(-4)));
        assert!(matches!(ok("round", vec![f(4.5)]), Value::Int(5)));
        assert!(matches!(ok("round", vec![f(-4.5)]), Value::Int(-5)));
        fails("ceil", vec![s("1.5")]);
        fails("floor", vec![f(1e300)]);
        fails("round", vec![Value::Bool(true)]);
        approx(ok("fmod", vec![f(6.5), f(2.5)]), 1.5);
        approx(ok("fmod", vec![i(-7), i(3)]), -1.0);
        fails("fmod", vec![i(1), i(0)]);
        fails("fmod", vec![i(1)]);
    }

    #[test]
    fn random_is_in_unit_interval() {
        for _ in 0..100 {
            let Value::Float(x) = ok("random", vec![]) else {
                panic!("float expected")
            };
            assert!((0.0..1.0).contains(&x));
        }
        fails("random", vec![i(1)]);
    }

    #[test]
    fn div_mod_eq() {
        assert_eq!(ok("div", vec![i(7), i(2)]), i(3));
        assert_eq!(ok("div", vec![i(-7), i(2)]), i(-3));
        fails("div", vec![i(1), i(0)]);
        fails("div", vec![f(7.0), i(2)]);
        assert_eq!(ok("mod", vec![i(7), i(3)]), i(1));
        assert_eq!(ok("mod", vec![i(-7), i(3)]), i(-1));
        fails("mod", vec![i(7), i(0)]);
        assert_eq!(ok("eq", vec![i(1), f(1.0)]), Value::Bool(true));
        assert_eq!(ok("eq", vec![s("a"), s("b")]), Value::Bool(false));
        assert_eq!(ok("eq", vec![Value::Null, Value::Null]), Value::Bool(true));
    }

    #[test]
    fn operators() {
        assert!(matches!(add(&i(1), &i(2)), Ok(Value::Int(3))));
        assert_eq!(add(&i(1), &f(0.5)).unwrap(), f(1.5));
        assert_eq!(add(&s("a"), &s("b")).unwrap(), s("ab"));
        assert_eq!(add(&s("n="), &i(1)).unwrap(), s("n=1"));
        assert!(add(&i(1), &Value::Null).is_err());
        assert_eq!(sub(&i(1), &i(3)).unwrap(), i(-2));
        assert_eq!(mul(&f(1.5), &i(2)).unwrap(), f(3.0));
        assert!(matches!(divide(&i(4), &i(2)), Ok(Value::Float(x)) if x == 2.0));
        assert!(divide(&i(4), &i(0)).is_err());
        assert_eq!(add(&i(i64::MAX), &i(1)).unwrap(), f(i64::MAX as f64 + 1.0));
    }
}
